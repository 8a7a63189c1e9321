//! The realtime side of `zap serve`: the hub at `/ws` (docs/PROTOCOL.md, *zap serve's
//! built-in chat*), the demo chat page at `/`, the JS client at `/zapsocket.js` (with
//! the two modules it imports, under `/zapsocket/`) and the metrics at `/metrics`
//! (Prometheus text format: the hub's, the WebSocket layer's, the memory budget's).

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
    server: &zapsocket::Metrics,
    request: &Request,
) -> Option<HttpResponse> {
    if let Some((_, module)) = CLIENT_JS.iter().find(|(path, _)| *path == request.path()) {
        return Some(HttpResponse::bytes("text/javascript; charset=utf-8", *module));
    }
    match request.path() {
        "/" => Some(HttpResponse::html(DEMO_HTML)),
        "/metrics" => {
            let mut text = hub.metrics().to_prometheus();
            text.push_str(&server.to_prometheus());
            if let Some(budget) = budget {
                text.push_str(&budget_metrics(budget));
            }
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                let tasks = runtime.metrics().num_alive_tasks() as u64;
                let help = "Tasks alive in the server's runtime now.";
                write_metric(&mut text, "runtime_alive_tasks", "gauge", help, tasks);
            }
            text.push_str(&allocator_metrics());
            Some(HttpResponse::bytes("text/plain; version=0.0.4; charset=utf-8", text))
        }
        _ => None,
    }
}

/// What the allocator holds, in Prometheus text format: with jemalloc (the `jemalloc`
/// feature), the bytes the program has allocated and not freed, and the bytes of memory
/// jemalloc keeps for them (resident: in RAM; retained: mapped but given back to the
/// system). A heap that stays level while RSS grows is the allocator's, not a leak.
#[cfg(feature = "jemalloc")]
fn allocator_metrics() -> String {
    use tikv_jemalloc_ctl::{epoch, stats};
    // The statistics are a snapshot taken when the epoch advances.
    if epoch::advance().is_err() {
        return String::new();
    }
    let rows = [
        ("allocated", "Bytes the program has allocated and not yet freed.", stats::allocated::read()),
        ("active", "Bytes in the allocator's pages that hold allocations.", stats::active::read()),
        (
            "resident",
            "Bytes of the allocator's memory in RAM, its own metadata included.",
            stats::resident::read(),
        ),
        (
            "retained",
            "Bytes the allocator keeps mapped but has given back to the system.",
            stats::retained::read(),
        ),
    ];
    let mut text = String::new();
    for (name, help, value) in rows {
        let Ok(value) = value else { continue };
        write_metric(&mut text, &format!("allocator_{name}_bytes"), "gauge", help, value as u64);
    }
    text
}

/// Without jemalloc, the system's allocator has no statistics to show.
#[cfg(not(feature = "jemalloc"))]
fn allocator_metrics() -> String {
    String::new()
}

/// The memory budget for incoming data, in Prometheus text format.
fn budget_metrics(budget: &MemoryBudget) -> String {
    let rows = [
        (
            "incoming_budget_bytes",
            "gauge",
            "The limit on incoming data held across connections.",
            budget.limit() as u64,
        ),
        (
            "incoming_budget_used_bytes",
            "gauge",
            "Incoming data charged to the budget now.",
            budget.used() as u64,
        ),
        (
            "incoming_budget_paused_connections",
            "gauge",
            "Connections not being read now because the budget is spent.",
            budget.paused_connections() as u64,
        ),
        (
            "incoming_budget_pauses_total",
            "counter",
            "Times a connection was paused for the budget.",
            budget.pauses(),
        ),
        (
            "incoming_budget_refused_total",
            "counter",
            "Connections failed with 1013 after waiting for the budget.",
            budget.refused_connections(),
        ),
    ];
    let mut text = String::new();
    for (name, kind, help, value) in rows {
        write_metric(&mut text, name, kind, help, value);
    }
    text
}

/// Appends one metric, `zapsocket_NAME`, in Prometheus text format.
fn write_metric(text: &mut String, name: &str, kind: &str, help: &str, value: u64) {
    use std::fmt::Write;
    let _ = write!(
        text,
        "# HELP zapsocket_{name} {help}\n# TYPE zapsocket_{name} {kind}\nzapsocket_{name} {value}\n"
    );
}
