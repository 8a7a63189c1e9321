//! Server-wide metrics of the WebSocket layer, for `/metrics` (OpenMetrics text format):
//! handshakes by status, connections, data messages and bytes each way with their
//! sizes, close codes sent and received, why connections ended (heartbeat, slow
//! consumer, write timeout...), messages dropped, bytes waiting in send queues.
//!
//! Opt-in ([`ServerBuilder::metrics`](crate::ServerBuilder::metrics)): each connection
//! then counts its own messages in the protocol's state, under the lock it already
//! holds (no shared counter on the hot path); a connection adds its counts to the
//! totals when it ends, and a snapshot adds the live ones.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use zapsocket_proto::{Counts, SIZE_BUCKETS};

use crate::openmetrics::{
    self, Families,
    Value::{Counter, Gauge},
};
use crate::shared::{Inner as Conn, Shared};

/// The metrics of one or more servers (clone it to share). Give it to
/// [`ServerBuilder::metrics`](crate::ServerBuilder::metrics) (and to an
/// [`Upgrader`](crate::Upgrader) the same way), then read [`Metrics::snapshot`] or serve
/// [`Metrics::to_prometheus`] (the OpenMetrics text, written with prometheus-client; it
/// is a [`Collector`] too).
///
/// ```no_run
/// # async fn f() -> zapsocket::Result<()> {
/// let metrics = zapsocket::Metrics::new();
/// let m = metrics.clone();
/// let server = zapsocket::Server::builder()
///     .metrics(&metrics)
///     .http(move |request| (request.path() == "/metrics").then(|| zapsocket::HttpResponse::bytes(
///         zapsocket::openmetrics::CONTENT_TYPE, m.to_prometheus())))
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
    /// Opening handshakes answered, by HTTP status: 101 for an upgrade (200 for an
    /// extended CONNECT over HTTP/2), else the refusal's status (400, 403, 404, 408,
    /// 429, 503...).
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

    /// A connection opened, its handshake answered with `status` (counted): 101 over
    /// HTTP/1.1, 200 for an extended CONNECT over HTTP/2.
    pub(crate) fn opened(&self, shared: &Arc<Shared>, status: u16) {
        self.handshake(status);
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

    /// The snapshot in the OpenMetrics text format (what Prometheus scrapes; serve it with
    /// [`openmetrics::CONTENT_TYPE`]), every name starting with `zapsocket_ws_`, ending
    /// with `# EOF`. To serve it with other families in one response, give a snapshot (or
    /// this, which takes one at each scrape: both are prometheus-client
    /// [`Collector`]s) to [`openmetrics::encode`] or to your own `Registry`.
    pub fn to_prometheus(&self) -> String {
        self.snapshot().to_prometheus()
    }
}

/// Takes a [`Metrics::snapshot`] at each scrape.
impl Collector for Metrics {
    fn encode(&self, encoder: DescriptorEncoder<'_>) -> fmt::Result {
        self.snapshot().encode(encoder)
    }
}

impl MetricsSnapshot {
    /// This snapshot in the OpenMetrics text format, ending with `# EOF` (see
    /// [`Metrics::to_prometheus`]).
    pub fn to_prometheus(&self) -> String {
        openmetrics::encode(vec![Box::new(self.clone())])
    }
}

/// The `zapsocket_ws_*` families.
impl Collector for MetricsSnapshot {
    fn encode(&self, encoder: DescriptorEncoder<'_>) -> fmt::Result {
        let mut out = Families::new(encoder);
        let c = &self.counts;
        let handshakes = self.handshakes.iter().map(|(status, n)| (*status, *n));
        let help = "Opening handshakes answered, by HTTP status.";
        out.labelled_counters("zapsocket_ws_handshakes", help, "status", handshakes)?;
        out.gauge("zapsocket_ws_connections", "WebSocket connections open now.", self.open)?;
        let flows = [
            ("zapsocket_ws_messages_received", "Data messages received.", Counter(c.messages_in)),
            (
                "zapsocket_ws_received_bytes",
                "Payload bytes of the data messages received.",
                Counter(c.bytes_in),
            ),
            ("zapsocket_ws_messages_sent", "Data messages queued to send.", Counter(c.messages_out)),
            (
                "zapsocket_ws_sent_bytes",
                "Payload bytes of the data messages queued to send.",
                Counter(c.bytes_out),
            ),
            (
                "zapsocket_ws_messages_dropped",
                "Data messages not queued: a full send queue with the drop policy.",
                Counter(c.dropped_out),
            ),
            (
                "zapsocket_ws_send_queue_bytes",
                "Bytes waiting in send queues now.",
                Gauge(self.send_queue_bytes),
            ),
        ];
        for (name, help, value) in flows {
            out.value(name, help, value)?;
        }
        out.histogram(
            "zapsocket_ws_message_size_bytes_received",
            "Sizes of the data messages received.",
            &SIZE_BUCKETS.map(|bytes| bytes as f64),
            &c.sizes_in,
            c.bytes_in as f64,
        )?;
        for (name, help, codes) in [
            ("zapsocket_ws_close_codes_received", "Close codes received from peers.", &self.close_received),
            ("zapsocket_ws_close_codes_sent", "Close codes sent.", &self.close_sent),
        ] {
            out.labelled_counters(name, help, "code", codes.iter().map(|(code, n)| (*code, *n)))?;
        }
        let ended = self.ended.iter().map(|(cause, n)| (*cause, *n));
        out.labelled_counters(
            "zapsocket_ws_connections_ended",
            "Connections ended, by cause.",
            "cause",
            ended,
        )
    }
}
