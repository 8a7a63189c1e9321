//! The realtime side of `zap serve`: the hub at `/ws` (docs/PROTOCOL.md, *zap serve's
//! built-in chat*), the demo chat page at `/`, the JS client at `/zapsocket.js` (with
//! the two modules it imports, under `/zapsocket/`) and the metrics at `/metrics`
//! (OpenMetrics text format, with prometheus-client: the hub's, the WebSocket layer's,
//! the memory budget's, the runtime's and the allocator's).

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use zapsocket::openmetrics::{
    self, Families,
    Value::{self, Counter, Gauge},
};
use zapsocket::{HttpResponse, MemoryBudget, Request};
use zapsocket_realtime::{Adapter, Hub, HubConfig, RateLimit, demo};

/// The demo chat page (written by the JS side, built on `js/`).
const DEMO_HTML: &str = include_str!("../assets/demo.html");

/// The JavaScript client, imported by the demo page, and the modules it imports (by
/// relative paths, so they are served at the same places as in `js/`).
const CLIENT_JS: [(&str, &str); 3] = [
    ("/zapsocket.js", include_str!("../../../js/zapsocket.js")),
    ("/zapsocket/protocol.js", include_str!("../../../js/zapsocket/protocol.js")),
    ("/zapsocket/connection.js", include_str!("../../../js/zapsocket/connection.js")),
];

/// The WebSocket path of the realtime endpoint.
pub(crate) const PATH: &str = "/ws";

/// The hub of `/ws`: the built-in chat and test helpers. Envelopes are limited to the
/// smaller of the protocol's default (1 MiB) and `--max-message`, each socket's messages
/// to `--max-message-rate`. With an adapter (Redis), it is one node of many.
pub(crate) fn hub(max_message: usize, max_message_rate: Option<RateLimit>, adapter: Option<Adapter>) -> Hub {
    let mut config = HubConfig::default();
    config.max_message = config.max_message.min(max_message);
    config.max_message_rate = max_message_rate;
    let mut builder = Hub::builder().config(config);
    if let Some(adapter) = adapter {
        builder = builder.adapter(adapter);
    }
    demo::hub(builder.build())
}

/// The Redis adapter of `--redis URL` (waits for the first connection).
pub(crate) async fn redis(
    url: &str,
    node_id: Option<String>,
) -> Result<Adapter, zapsocket_redis::ConnectError> {
    let mut config = zapsocket_redis::RedisConfig::default();
    config.node_id = node_id;
    let redis = zapsocket_redis::RedisAdapter::connect(url, config).await?;
    Ok(redis.adapter())
}

/// Plain HTTP: the demo page on `/`, the client module, the metrics; `None` (404)
/// elsewhere.
pub(crate) fn http(
    hub: &Hub,
    budget: Option<&MemoryBudget>,
    server: Option<&zapsocket::Metrics>,
    request: &Request,
) -> Option<HttpResponse> {
    if let Some((_, module)) = CLIENT_JS.iter().find(|(path, _)| *path == request.path()) {
        return Some(HttpResponse::bytes("text/javascript; charset=utf-8", *module));
    }
    match request.path() {
        "/" => Some(HttpResponse::html(DEMO_HTML)),
        "/metrics" => {
            // One exposition (one `# EOF`): the hub's, the WebSocket layer's, then zap serve's.
            let mut parts: Vec<Box<dyn Collector>> = vec![Box::new(hub.metrics())];
            if let Some(server) = server {
                parts.push(Box::new(server.snapshot()));
            }
            parts.push(Box::new(ServeMetrics::read(budget)));
            let text = openmetrics::encode(parts);
            Some(HttpResponse::bytes(openmetrics::CONTENT_TYPE, text))
        }
        _ => None,
    }
}

/// zap serve's own families, read at one scrape: the memory budget for incoming data,
/// the runtime's tasks, the allocator's figures.
#[derive(Debug, Default)]
struct ServeMetrics {
    rows: Vec<(&'static str, &'static str, Value)>,
}

impl ServeMetrics {
    fn read(budget: Option<&MemoryBudget>) -> ServeMetrics {
        let mut metrics = ServeMetrics::default();
        if let Some(budget) = budget {
            metrics.budget(budget);
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let tasks = runtime.metrics().num_alive_tasks() as u64;
            let help = "Tasks alive in the server's runtime now.";
            metrics.rows.push(("zapsocket_runtime_alive_tasks", help, Gauge(tasks)));
        }
        metrics.allocator();
        metrics
    }

    /// The memory budget for incoming data.
    fn budget(&mut self, budget: &MemoryBudget) {
        self.rows.extend([
            (
                "zapsocket_incoming_budget_bytes",
                "The limit on incoming data held across connections.",
                Gauge(budget.limit() as u64),
            ),
            (
                "zapsocket_incoming_budget_used_bytes",
                "Incoming data charged to the budget now.",
                Gauge(budget.used() as u64),
            ),
            (
                "zapsocket_incoming_budget_paused_connections",
                "Connections not being read now because the budget is spent.",
                Gauge(budget.paused_connections() as u64),
            ),
            (
                "zapsocket_incoming_budget_pauses",
                "Times a connection was paused for the budget.",
                Counter(budget.pauses()),
            ),
            (
                "zapsocket_incoming_budget_refused",
                "Connections failed with 1013 after waiting for the budget.",
                Counter(budget.refused_connections()),
            ),
        ]);
    }

    /// What the allocator holds: with jemalloc (the `jemalloc` feature), the bytes the
    /// program has allocated and not freed, and the bytes of memory jemalloc keeps for
    /// them (resident: in RAM; retained: mapped but given back to the system). A heap that
    /// stays level while RSS grows is the allocator's, not a leak.
    #[cfg(feature = "jemalloc")]
    fn allocator(&mut self) {
        use tikv_jemalloc_ctl::{epoch, stats};
        // The statistics are a snapshot taken when the epoch advances.
        if epoch::advance().is_err() {
            return;
        }
        let rows = [
            (
                "zapsocket_allocator_allocated_bytes",
                "Bytes the program has allocated and not yet freed.",
                stats::allocated::read(),
            ),
            (
                "zapsocket_allocator_active_bytes",
                "Bytes in the allocator's pages that hold allocations.",
                stats::active::read(),
            ),
            (
                "zapsocket_allocator_resident_bytes",
                "Bytes of the allocator's memory in RAM, its own metadata included.",
                stats::resident::read(),
            ),
            (
                "zapsocket_allocator_retained_bytes",
                "Bytes the allocator keeps mapped but has given back to the system.",
                stats::retained::read(),
            ),
        ];
        for (name, help, value) in rows {
            let Ok(value) = value else { continue };
            self.rows.push((name, help, Gauge(value as u64)));
        }
    }

    /// Without jemalloc, the system's allocator has no statistics to show.
    #[cfg(not(feature = "jemalloc"))]
    fn allocator(&mut self) {}
}

impl Collector for ServeMetrics {
    fn encode(&self, encoder: DescriptorEncoder<'_>) -> std::fmt::Result {
        let mut out = Families::new(encoder);
        for (name, help, value) in &self.rows {
            out.value(name, help, *value)?;
        }
        Ok(())
    }
}
