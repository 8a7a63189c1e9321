//! Server-wide metrics of the WebSocket layer, for `/metrics` (Prometheus text format):
//! handshakes by status, connections, data messages and bytes each way with their
//! sizes, close codes sent and received, why connections ended (heartbeat, slow
//! consumer, write timeout...), messages dropped, bytes waiting in send queues.
//!
//! Opt-in ([`ServerBuilder::metrics`](crate::ServerBuilder::metrics)): each connection
//! then counts its own messages in the protocol's state, under the lock it already
//! holds (no shared counter on the hot path); a connection adds its counts to the
//! totals when it ends, and a snapshot adds the live ones.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use zapsocket_proto::{Counts, SIZE_BUCKETS};

use crate::shared::{Inner as Conn, Shared};

/// The metrics of one or more servers (clone it to share). Give it to
/// [`ServerBuilder::metrics`](crate::ServerBuilder::metrics) (and to an
/// [`Upgrader`](crate::Upgrader) the same way), then read [`Metrics::snapshot`] or serve
/// [`Metrics::to_prometheus`].
///
/// ```no_run
/// # async fn f() -> zapsocket::Result<()> {
/// let metrics = zapsocket::Metrics::new();
/// let m = metrics.clone();
/// let server = zapsocket::Server::builder()
///     .metrics(&metrics)
///     .http(move |request| (request.path() == "/metrics").then(|| zapsocket::HttpResponse::bytes(
///         "text/plain; version=0.0.4", m.to_prometheus())))
///     .bind()
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Default)]
pub struct Metrics {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Inner {
    /// Open connections, by id, for the live part of a snapshot.
    live: Mutex<HashMap<u64, Weak<Shared>>>,
    /// What handshakes and ended connections added.
    totals: Mutex<MetricsSnapshot>,
}

/// What a [`Metrics`] counted, at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct MetricsSnapshot {
    /// Opening handshakes answered, by HTTP status: 101 for an upgrade, else the
    /// refusal's status (400, 403, 404, 408, 429, 503...).
    pub handshakes: BTreeMap<u16, u64>,
    /// Connections open now.
    pub open: u64,
    /// Data messages and payload bytes each way (with the received ones' sizes), of every connection
    /// (open or ended), and the messages dropped by the slow-consumer policy.
    pub counts: Counts,
    /// Close codes received from peers (1005 for a close frame without one).
    pub close_received: BTreeMap<u16, u64>,
    /// Close codes this server sent (its own, or the echo of the peer's).
    pub close_sent: BTreeMap<u16, u64>,
    /// Why connections ended: `closed` (a close handshake), `connection_lost` (the
    /// stream ended without one), `heartbeat` (no pong in time), `write_timeout` (the
    /// peer took no bytes), `slow_consumer` (send queue full), `memory_budget`,
    /// `terminated` (`terminate()`), `handler_panic`, `close_timeout`, `error`.
    pub ended: BTreeMap<&'static str, u64>,
    /// Bytes waiting in the send queues of open connections now.
    pub send_queue_bytes: u64,
}

impl Metrics {
    /// Metrics with nothing counted yet.
    pub fn new() -> Self {
        Metrics::default()
    }

    fn totals(&self) -> MutexGuard<'_, MetricsSnapshot> {
        self.inner.totals.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts an opening handshake answered with `status`.
    pub(crate) fn handshake(&self, status: u16) {
        *self.totals().handshakes.entry(status).or_default() += 1;
    }

    /// A connection opened (its 101 counted).
    pub(crate) fn opened(&self, shared: &Arc<Shared>) {
        self.handshake(101);
        let mut live = self.inner.live.lock().unwrap_or_else(|p| p.into_inner());
        live.insert(shared.id, Arc::downgrade(shared));
    }

    /// A connection ended: its counts and how it ended go into the totals.
    pub(crate) fn ended(&self, id: u64, conn: &Conn) {
        self.inner.live.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
        let mut totals = self.totals();
        if let Some(counts) = conn.conn.counts() {
            totals.counts.add(counts);
        }
        if let Some(frame) = conn.conn.close_frame() {
            *totals.close_received.entry(frame.code.0).or_default() += 1;
        }
        if let Some(code) = conn.conn.sent_close_code() {
            *totals.close_sent.entry(code.0).or_default() += 1;
        }
        *totals.ended.entry(conn.cause()).or_default() += 1;
    }

    /// The totals so far, with the open connections' counts.
    pub fn snapshot(&self) -> MetricsSnapshot {
        let live: Vec<Arc<Shared>> = {
            let live = self.inner.live.lock().unwrap_or_else(|p| p.into_inner());
            live.values().filter_map(Weak::upgrade).collect()
        };
        let mut snapshot = self.totals().clone();
        for shared in live {
            let mut conn = shared.lock();
            if conn.is_done() {
                continue; // counted in the totals (or about to be)
            }
            snapshot.open += 1;
            snapshot.send_queue_bytes += conn.conn.outbound().len() as u64;
            if let Some(counts) = conn.conn.counts() {
                snapshot.counts.add(counts);
            }
        }
        snapshot
    }

    /// The snapshot in the Prometheus text exposition format (version 0.0.4), every
    /// name starting with `zapsocket_ws_`.
    pub fn to_prometheus(&self) -> String {
        self.snapshot().to_prometheus()
    }
}

impl MetricsSnapshot {
    /// This snapshot in the Prometheus text exposition format (version 0.0.4).
    pub fn to_prometheus(&self) -> String {
        let mut out = String::new();
        let c = &self.counts;
        family(&mut out, "handshakes_total", "counter", "Opening handshakes answered, by HTTP status.");
        for (status, n) in &self.handshakes {
            let _ = writeln!(out, "zapsocket_ws_handshakes_total{{status=\"{status}\"}} {n}");
        }
        single(&mut out, "connections", "gauge", "WebSocket connections open now.", self.open);
        let flows = [
            ("messages_received_total", "counter", "Data messages received.", c.messages_in),
            ("received_bytes_total", "counter", "Payload bytes of the data messages received.", c.bytes_in),
            ("messages_sent_total", "counter", "Data messages queued to send.", c.messages_out),
            (
                "sent_bytes_total",
                "counter",
                "Payload bytes of the data messages queued to send.",
                c.bytes_out,
            ),
            (
                "messages_dropped_total",
                "counter",
                "Data messages not queued: a full send queue with the drop policy.",
                c.dropped_out,
            ),
            ("send_queue_bytes", "gauge", "Bytes waiting in send queues now.", self.send_queue_bytes),
        ];
        for (name, kind, help, value) in flows {
            single(&mut out, name, kind, help, value);
        }
        let name = "message_size_bytes_received";
        family(&mut out, name, "histogram", "Sizes of the data messages received.");
        let mut cumulative = 0;
        for (i, n) in c.sizes_in.iter().enumerate() {
            cumulative += n;
            let le = SIZE_BUCKETS.get(i).map_or("+Inf".to_owned(), u64::to_string);
            let _ = writeln!(out, "zapsocket_ws_{name}_bucket{{le=\"{le}\"}} {cumulative}");
        }
        let sum = c.bytes_in;
        let _ = writeln!(out, "zapsocket_ws_{name}_sum {sum}\nzapsocket_ws_{name}_count {cumulative}");
        for (name, help, codes) in [
            ("close_codes_received_total", "Close codes received from peers.", &self.close_received),
            ("close_codes_sent_total", "Close codes sent.", &self.close_sent),
        ] {
            family(&mut out, name, "counter", help);
            for (code, n) in codes {
                let _ = writeln!(out, "zapsocket_ws_{name}{{code=\"{code}\"}} {n}");
            }
        }
        family(&mut out, "connections_ended_total", "counter", "Connections ended, by cause.");
        for (cause, n) in &self.ended {
            let _ = writeln!(out, "zapsocket_ws_connections_ended_total{{cause=\"{cause}\"}} {n}");
        }
        out
    }
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP zapsocket_ws_{name} {help}\n# TYPE zapsocket_ws_{name} {kind}");
}

fn single(out: &mut String, name: &str, kind: &str, help: &str, value: u64) {
    family(out, name, kind, help);
    let _ = writeln!(out, "zapsocket_ws_{name} {value}");
}
