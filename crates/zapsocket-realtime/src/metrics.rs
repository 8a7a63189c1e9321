//! Counters of a hub and of its broker, and their Prometheus text rendering.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::broker::BrokerMetrics;

/// A hub's counters. Read them with [`Hub::metrics`](crate::Hub::metrics).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) connections: AtomicU64,
    pub(crate) connections_total: AtomicU64,
    pub(crate) messages_in: AtomicU64,
    pub(crate) bytes_in: AtomicU64,
    pub(crate) messages_out: AtomicU64,
    pub(crate) bytes_out: AtomicU64,
    pub(crate) drops: AtomicU64,
    pub(crate) errors_out: AtomicU64,
    pub(crate) broadcasts: AtomicU64,
    pub(crate) resumed: AtomicU64,
    pub(crate) resyncs: AtomicU64,
    pub(crate) violation_closes: AtomicU64,
    pub(crate) rate_limited: AtomicU64,
    pub(crate) volatile_dropped: AtomicU64,
}

impl Counters {
    pub(crate) fn received(&self, bytes: usize) {
        self.messages_in.fetch_add(1, Relaxed);
        self.bytes_in.fetch_add(bytes as u64, Relaxed);
    }

    /// Counts `count` deliveries of a frame of `bytes`, and `dropped` refusals.
    pub(crate) fn sent(&self, count: u64, bytes: usize, dropped: u64) {
        self.messages_out.fetch_add(count, Relaxed);
        self.bytes_out.fetch_add(count * bytes as u64, Relaxed);
        if dropped > 0 {
            self.drops.fetch_add(dropped, Relaxed);
        }
    }

    pub(crate) fn snapshot(&self, rooms: usize, broker: BrokerMetrics) -> Metrics {
        Metrics {
            connections: self.connections.load(Relaxed),
            connections_total: self.connections_total.load(Relaxed),
            rooms: rooms as u64,
            messages_in: self.messages_in.load(Relaxed),
            bytes_in: self.bytes_in.load(Relaxed),
            messages_out: self.messages_out.load(Relaxed),
            bytes_out: self.bytes_out.load(Relaxed),
            drops: self.drops.load(Relaxed),
            errors_out: self.errors_out.load(Relaxed),
            broadcasts: self.broadcasts.load(Relaxed),
            resumed: self.resumed.load(Relaxed),
            resyncs: self.resyncs.load(Relaxed),
            violation_closes: self.violation_closes.load(Relaxed),
            rate_limited: self.rate_limited.load(Relaxed),
            volatile_dropped: self.volatile_dropped.load(Relaxed),
            broker,
        }
    }
}

/// A snapshot of a hub's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Metrics {
    /// Sockets connected to this node now.
    pub connections: u64,
    /// Sockets connected since the hub started.
    pub connections_total: u64,
    /// Rooms with at least one member on this node now (not counting `$all` and
    /// sockets' own rooms).
    pub rooms: u64,
    /// Text messages received.
    pub messages_in: u64,
    /// Bytes of the text messages received (payload).
    pub bytes_in: u64,
    /// Messages queued to sockets (a broadcast counts once per recipient).
    pub messages_out: u64,
    /// Bytes queued to sockets (encoded frames, once per recipient).
    pub bytes_out: u64,
    /// Messages not delivered because the recipient's send queue was full (see
    /// `zapsocket::SlowConsumer`) or it was closing.
    pub drops: u64,
    /// Error replies and `$error` events sent.
    pub errors_out: u64,
    /// Room messages published by this node (each counts once, whatever the number of
    /// recipients).
    pub broadcasts: u64,
    /// Sessions resumed on this node.
    pub resumed: u64,
    /// Sockets told to resync (`$resync`) because messages of their rooms were lost.
    pub resyncs: u64,
    /// Sockets closed with 1008 for too many protocol violations
    /// ([`HubConfig::max_violations`](crate::HubConfig::max_violations)).
    pub violation_closes: u64,
    /// Messages that waited for their token of
    /// [`HubConfig::max_message_rate`](crate::HubConfig::max_message_rate) (the socket
    /// was not read meanwhile).
    pub rate_limited: u64,
    /// Volatile messages not sent to a socket because something was already waiting in
    /// its send queue, it was catching up on missed messages, or the broker could not
    /// take them ([`Operator::volatile`](crate::Operator::volatile)).
    pub volatile_dropped: u64,
    /// The broker's counters (the link to other nodes).
    pub broker: BrokerMetrics,
}

impl Metrics {
    /// The Prometheus text exposition format (version 0.0.4), for `/metrics`.
    pub fn to_prometheus(&self) -> String {
        let b = &self.broker;
        let rows: [(&str, &str, &str, u64); 25] = [
            ("zapsocket_connections", "gauge", "Sockets connected now.", self.connections),
            (
                "zapsocket_connections_total",
                "counter",
                "Sockets connected since start.",
                self.connections_total,
            ),
            ("zapsocket_rooms", "gauge", "Rooms with members on this node now.", self.rooms),
            ("zapsocket_messages_received_total", "counter", "Text messages received.", self.messages_in),
            ("zapsocket_received_bytes_total", "counter", "Bytes of text messages received.", self.bytes_in),
            ("zapsocket_messages_sent_total", "counter", "Messages queued to sockets.", self.messages_out),
            ("zapsocket_sent_bytes_total", "counter", "Bytes queued to sockets.", self.bytes_out),
            ("zapsocket_drops_total", "counter", "Messages dropped: full send queue or closing.", self.drops),
            (
                "zapsocket_volatile_dropped_total",
                "counter",
                "Volatile messages dropped: the socket's send queue was not empty.",
                self.volatile_dropped,
            ),
            (
                "zapsocket_errors_sent_total",
                "counter",
                "Error replies and $error events sent.",
                self.errors_out,
            ),
            (
                "zapsocket_broadcasts_total",
                "counter",
                "Room messages published (once each).",
                self.broadcasts,
            ),
            ("zapsocket_resumed_total", "counter", "Sessions resumed on this node.", self.resumed),
            ("zapsocket_resyncs_total", "counter", "Sockets told to resync after a loss.", self.resyncs),
            (
                "zapsocket_violation_closes_total",
                "counter",
                "Sockets closed with 1008 for too many malformed messages.",
                self.violation_closes,
            ),
            (
                "zapsocket_rate_limited_total",
                "counter",
                "Messages that waited for the message rate.",
                self.rate_limited,
            ),
            ("zapsocket_broker_published_total", "counter", "Publications sent to the broker.", b.published),
            (
                "zapsocket_broker_publish_failures_total",
                "counter",
                "Publications failed or unknown.",
                b.publish_failures,
            ),
            (
                "zapsocket_broker_queued_bytes",
                "gauge",
                "Bytes waiting to go to the broker's store.",
                b.queued_bytes,
            ),
            (
                "zapsocket_broker_received_total",
                "counter",
                "Room messages received from the store.",
                b.received,
            ),
            ("zapsocket_broker_gaps_total", "counter", "Gaps found in what was received.", b.gaps),
            ("zapsocket_broker_repaired_total", "counter", "Gaps repaired from the history.", b.repaired),
            ("zapsocket_broker_lost_total", "counter", "Gaps that could not be repaired.", b.lost),
            (
                "zapsocket_broker_disconnects_total",
                "counter",
                "Times the link to the store was lost.",
                b.disconnects,
            ),
            (
                "zapsocket_broker_connected",
                "gauge",
                "Whether the store is reachable (1) or not (0).",
                b.connected,
            ),
            (
                "zapsocket_broker_reaped_nodes_total",
                "counter",
                "Dead nodes removed from presence.",
                b.reaped_nodes,
            ),
        ];
        let mut out = String::new();
        for (name, kind, help, value) in rows {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
        }
        let name = "zapsocket_broker_publish_latency_seconds";
        let help = "From publish until the broker's store took the publication.";
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (i, n) in b.publish_latency.iter().enumerate() {
            cumulative += n;
            let le = crate::PUBLISH_LATENCY_BUCKETS_US
                .get(i)
                .map_or("+Inf".to_owned(), |us| (*us as f64 / 1e6).to_string());
            let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {cumulative}");
        }
        let sum = b.publish_latency_sum_us as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {cumulative}");
        out
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn renders_prometheus_text() {
        let m = super::Metrics { connections: 3, drops: 1, ..Default::default() };
        let text = m.to_prometheus();
        assert!(text.contains("# TYPE zapsocket_connections gauge\nzapsocket_connections 3\n"));
        assert!(text.contains("zapsocket_drops_total 1\n"));
        assert_eq!(
            text.lines().filter(|l| !l.starts_with('#')).count(),
            25 + 11,
            "and the latency histogram"
        );
        assert!(
            text.contains("zapsocket_broker_publish_latency_seconds_bucket{le=\"0.00025\"} 0\n"),
            "{text}"
        );
    }
}
