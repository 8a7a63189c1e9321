//! Counters of a hub and of its broker, and their OpenMetrics text (with
//! `zapsocket::openmetrics`, on prometheus-client).

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use zapsocket::openmetrics::{
    self, Families,
    Value::{self, Counter, Gauge},
};

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
    /// Sockets connected since the hub started (`zapsocket_connections_opened_total` in
    /// the OpenMetrics text: the `zapsocket_connections` family is the gauge above).
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
    /// The OpenMetrics text format (what Prometheus scrapes; serve it with
    /// [`zapsocket::openmetrics::CONTENT_TYPE`]), for `/metrics`, ending with `# EOF`.
    /// To serve it with other families in one response (`zap serve` adds the WebSocket
    /// layer's), give it (a prometheus-client [`Collector`]) to
    /// [`zapsocket::openmetrics::encode`] with them.
    pub fn to_prometheus(&self) -> String {
        openmetrics::encode(vec![Box::new(*self)])
    }
}

/// The `zapsocket_*` families of the hub and `zapsocket_broker_*` of its broker.
impl Collector for Metrics {
    fn encode(&self, encoder: DescriptorEncoder<'_>) -> fmt::Result {
        let b = &self.broker;
        // Counter families are named without `_total`, which their samples get.
        let rows: [(&str, &str, Value); 25] = [
            ("zapsocket_connections", "Sockets connected now.", Gauge(self.connections)),
            // Not `zapsocket_connections`: the gauge above has that family name.
            (
                "zapsocket_connections_opened",
                "Sockets connected since start.",
                Counter(self.connections_total),
            ),
            ("zapsocket_rooms", "Rooms with members on this node now.", Gauge(self.rooms)),
            ("zapsocket_messages_received", "Text messages received.", Counter(self.messages_in)),
            ("zapsocket_received_bytes", "Bytes of text messages received.", Counter(self.bytes_in)),
            ("zapsocket_messages_sent", "Messages queued to sockets.", Counter(self.messages_out)),
            ("zapsocket_sent_bytes", "Bytes queued to sockets.", Counter(self.bytes_out)),
            ("zapsocket_drops", "Messages dropped: full send queue or closing.", Counter(self.drops)),
            (
                "zapsocket_volatile_dropped",
                "Volatile messages dropped: the socket's send queue was not empty.",
                Counter(self.volatile_dropped),
            ),
            ("zapsocket_errors_sent", "Error replies and $error events sent.", Counter(self.errors_out)),
            ("zapsocket_broadcasts", "Room messages published (once each).", Counter(self.broadcasts)),
            ("zapsocket_resumed", "Sessions resumed on this node.", Counter(self.resumed)),
            ("zapsocket_resyncs", "Sockets told to resync after a loss.", Counter(self.resyncs)),
            (
                "zapsocket_violation_closes",
                "Sockets closed with 1008 for too many malformed messages.",
                Counter(self.violation_closes),
            ),
            (
                "zapsocket_rate_limited",
                "Messages that waited for the message rate.",
                Counter(self.rate_limited),
            ),
            ("zapsocket_broker_published", "Publications sent to the broker.", Counter(b.published)),
            (
                "zapsocket_broker_publish_failures",
                "Publications failed or unknown.",
                Counter(b.publish_failures),
            ),
            (
                "zapsocket_broker_queued_bytes",
                "Bytes waiting to go to the broker's store.",
                Gauge(b.queued_bytes),
            ),
            ("zapsocket_broker_received", "Room messages received from the store.", Counter(b.received)),
            ("zapsocket_broker_gaps", "Gaps found in what was received.", Counter(b.gaps)),
            ("zapsocket_broker_repaired", "Gaps repaired from the history.", Counter(b.repaired)),
            ("zapsocket_broker_lost", "Gaps that could not be repaired.", Counter(b.lost)),
            ("zapsocket_broker_disconnects", "Times the link to the store was lost.", Counter(b.disconnects)),
            (
                "zapsocket_broker_connected",
                "Whether the store is reachable (1) or not (0).",
                Gauge(b.connected),
            ),
            ("zapsocket_broker_reaped_nodes", "Dead nodes removed from presence.", Counter(b.reaped_nodes)),
        ];
        let mut out = Families::new(encoder);
        for (name, help, value) in rows {
            out.value(name, help, value)?;
        }
        out.histogram(
            "zapsocket_broker_publish_latency_seconds",
            "From publish until the broker's store took the publication.",
            &crate::PUBLISH_LATENCY_BUCKETS_US.map(|us| us as f64 / 1e6),
            &b.publish_latency,
            b.publish_latency_sum_us as f64 / 1e6,
        )
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn renders_openmetrics_text() {
        let mut m = super::Metrics { connections: 3, connections_total: 5, drops: 1, ..Default::default() };
        m.broker.publish_latency[1] = 2;
        m.broker.publish_latency_sum_us = 1_500;
        let text = m.to_prometheus();
        assert!(
            text.starts_with(
                "# HELP zapsocket_connections Sockets connected now.\n\
                 # TYPE zapsocket_connections gauge\nzapsocket_connections 3\n\
                 # HELP zapsocket_connections_opened Sockets connected since start.\n\
                 # TYPE zapsocket_connections_opened counter\nzapsocket_connections_opened_total 5\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "# HELP zapsocket_drops Messages dropped: full send queue or closing.\n\
                 # TYPE zapsocket_drops counter\nzapsocket_drops_total 1\n"
            ),
            "{text}"
        );
        assert_eq!(
            text.lines().filter(|l| !l.starts_with('#')).count(),
            25 + 11,
            "and the latency histogram: {text}"
        );
        assert!(
            text.ends_with(
                "# HELP zapsocket_broker_publish_latency_seconds From publish until the broker's store took the publication.\n\
                 # TYPE zapsocket_broker_publish_latency_seconds histogram\n\
                 zapsocket_broker_publish_latency_seconds_sum 0.0015\n\
                 zapsocket_broker_publish_latency_seconds_count 2\n\
                 zapsocket_broker_publish_latency_seconds_bucket{le=\"0.00025\"} 0\n\
                 zapsocket_broker_publish_latency_seconds_bucket{le=\"0.001\"} 2\n\
                 zapsocket_broker_publish_latency_seconds_bucket{le=\"0.0025\"} 2\n\
                 zapsocket_broker_publish_latency_seconds_bucket{le=\"0.01\"} 2\n\
                 zapsocket_broker_publish_latency_seconds_bucket{le=\"0.025\"} 2\n\
                 zapsocket_broker_publish_latency_seconds_bucket{le=\"0.1\"} 2\n\
                 zapsocket_broker_publish_latency_seconds_bucket{le=\"0.25\"} 2\n\
                 zapsocket_broker_publish_latency_seconds_bucket{le=\"1.0\"} 2\n\
                 zapsocket_broker_publish_latency_seconds_bucket{le=\"+Inf\"} 2\n\
                 # EOF\n"
            ),
            "{text}"
        );
        assert_eq!(text.matches("# EOF").count(), 1);
    }
}
