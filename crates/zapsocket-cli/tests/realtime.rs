//! `zap serve`'s realtime side, run for real: the hub at `/ws` (chat with names and
//! rooms), `/metrics`, the demo page and the JS module over plain HTTP, and `/` still
//! echoing for WebSocket upgrades.

use serde_json::{Value, json};

mod common;
use common::{PATIENCE, Serve, chatter, http_get, next};

#[tokio::test]
async fn chat_on_ws_reaches_the_room_with_names_and_metrics_count_it() {
    let serve = Serve::start(&[]);
    let (ada, mut ada_rx) = chatter(&serve, "ada").await;
    let (bob, mut bob_rx) = chatter(&serve, "bob").await;
    ada.join("lobby").await.expect("join");
    let joined = bob.join("lobby").await.expect("join");
    let mut names: Vec<&str> = joined.members.iter().filter_map(|m| m.data["name"].as_str()).collect();
    names.sort();
    assert_eq!(names, ["ada", "bob"]);
    let reply: Value = bob.emit_with_ack("chat", &json!({"text": "hi"})).await.expect("chat");
    assert_eq!(reply, json!({"rooms": ["lobby"]}));
    assert_eq!(next(&mut ada_rx).await, json!({"from": "bob", "text": "hi", "room": "lobby"}));
    assert_eq!(next(&mut bob_rx).await["from"], "bob");
    assert_eq!(ada.call::<_, f64>("add", &json!({"a": 1, "b": 2})).await.expect("add"), 3.0);

    let metrics = http_get(&serve.addr, "/metrics");
    assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
    assert!(
        metrics.contains("\r\nContent-Type: application/openmetrics-text; version=1.0.0; charset=utf-8\r\n"),
        "{metrics}"
    );
    assert!(metrics.ends_with("\n# EOF\n") && metrics.matches("# EOF").count() == 1, "{metrics}");
    assert!(metrics.contains("\nzapsocket_connections 2\n"), "{metrics}");
    assert!(metrics.contains("\nzapsocket_rooms 1\n"), "{metrics}");
    // The WebSocket layer's: both realtime connections, and what they sent.
    assert!(metrics.contains("\nzapsocket_ws_connections 2\n"), "{metrics}");
    assert!(metrics.contains("\nzapsocket_ws_handshakes_total{status=\"101\"} 2\n"), "{metrics}");
    let received = metrics
        .lines()
        .find_map(|line| line.strip_prefix("zapsocket_ws_messages_received_total "))
        .and_then(|value| value.trim().parse::<u64>().ok());
    assert!(received.is_some_and(|n| n >= 4), "joins, chat and add: {metrics}");
    // `zap` is built with jemalloc by default: its heap is shown, and is not empty.
    if cfg!(feature = "jemalloc") {
        let heap = metrics
            .lines()
            .find_map(|line| line.strip_prefix("zapsocket_allocator_allocated_bytes "))
            .and_then(|value| value.trim().parse::<u64>().ok());
        assert!(heap.is_some_and(|bytes| bytes > 0), "{metrics}");
    }
}

/// The whole `/metrics` of `zap serve` (the hub's, the WebSocket layer's, the memory
/// budget's, the runtime's and the allocator's, in one exposition), read by the reference
/// OpenMetrics parser: Python's `prometheus_client` (tests/interop/python/openmetrics_parse.py).
#[tokio::test]
async fn metrics_are_one_exposition_that_the_reference_openmetrics_parser_reads() {
    let Some((python, scripts)) = common::python_with("prometheus_client") else { return };
    let serve = Serve::start(&[]);
    let (ada, _ada_rx) = chatter(&serve, "ada").await;
    ada.join("lobby").await.expect("join");
    // A connection closed with a code, for the labelled families of close codes and causes.
    let mut ws = zapsocket::Client::connect(&serve.url("/")).await.expect("connect");
    ws.close(zapsocket::CloseCode(4000), "bye").await.expect("close");
    while let Ok(Some(_)) = tokio::time::timeout(PATIENCE, ws.recv()).await {}
    let mut response = String::new();
    for _ in 0..200 {
        response = http_get(&serve.addr, "/metrics");
        if response.contains("\nzapsocket_ws_connections_ended_total{cause=\"closed\"} 1\n") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let (head, body) = response.split_once("\r\n\r\n").expect("a head and a body");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.contains("\r\nContent-Type: application/openmetrics-text; version=1.0.0; charset=utf-8\r\n"),
        "{head}"
    );

    let output = {
        use std::io::Write;
        use std::process::{Command, Stdio};
        let mut child = Command::new(&python)
            .arg(scripts.join("openmetrics_parse.py"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn python");
        child.stdin.take().expect("stdin").write_all(body.as_bytes()).expect("write the text");
        child.wait_with_output().expect("python ran")
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout} {}\n{body}", String::from_utf8_lossy(&output.stderr));
    let parsed: Value = serde_json::from_str(&stdout).expect("json");
    assert_eq!(parsed["ok"], true, "{parsed}");
    let families = parsed["families"].as_object().expect("families");

    let mut expected: Vec<(&str, &str)> = [
        "zapsocket_connections_opened",
        "zapsocket_messages_received",
        "zapsocket_received_bytes",
        "zapsocket_messages_sent",
        "zapsocket_sent_bytes",
        "zapsocket_drops",
        "zapsocket_volatile_dropped",
        "zapsocket_errors_sent",
        "zapsocket_broadcasts",
        "zapsocket_resumed",
        "zapsocket_resyncs",
        "zapsocket_violation_closes",
        "zapsocket_rate_limited",
        "zapsocket_broker_published",
        "zapsocket_broker_publish_failures",
        "zapsocket_broker_received",
        "zapsocket_broker_gaps",
        "zapsocket_broker_repaired",
        "zapsocket_broker_lost",
        "zapsocket_broker_disconnects",
        "zapsocket_broker_reaped_nodes",
        "zapsocket_ws_handshakes",
        "zapsocket_ws_messages_received",
        "zapsocket_ws_received_bytes",
        "zapsocket_ws_messages_sent",
        "zapsocket_ws_sent_bytes",
        "zapsocket_ws_messages_dropped",
        "zapsocket_ws_close_codes_received",
        "zapsocket_ws_close_codes_sent",
        "zapsocket_ws_connections_ended",
        "zapsocket_incoming_budget_pauses",
        "zapsocket_incoming_budget_refused",
    ]
    .map(|name| (name, "counter"))
    .into();
    let gauges = [
        "zapsocket_connections",
        "zapsocket_rooms",
        "zapsocket_broker_queued_bytes",
        "zapsocket_broker_connected",
        "zapsocket_ws_connections",
        "zapsocket_ws_send_queue_bytes",
        "zapsocket_incoming_budget_bytes",
        "zapsocket_incoming_budget_used_bytes",
        "zapsocket_incoming_budget_paused_connections",
        "zapsocket_runtime_alive_tasks",
    ];
    expected.extend(gauges.map(|name| (name, "gauge")));
    if cfg!(feature = "jemalloc") {
        let allocator = [
            "zapsocket_allocator_allocated_bytes",
            "zapsocket_allocator_active_bytes",
            "zapsocket_allocator_resident_bytes",
            "zapsocket_allocator_retained_bytes",
        ];
        expected.extend(allocator.map(|name| (name, "gauge")));
    }
    expected.push(("zapsocket_broker_publish_latency_seconds", "histogram"));
    expected.push(("zapsocket_ws_message_size_bytes_received", "histogram"));
    let mut found: Vec<(&str, &str)> = families
        .iter()
        .map(|(name, family)| (name.as_str(), family["type"].as_str().unwrap_or("?")))
        .collect();
    expected.sort();
    found.sort();
    assert_eq!(found, expected, "{body}");
    assert_eq!(families["zapsocket_ws_handshakes"]["help"], "Opening handshakes answered, by HTTP status.");

    // Some values, as the parser read them: [sample name, labels, value].
    let samples = |family: &str| families[family]["samples"].as_array().expect("samples").clone();
    assert_eq!(samples("zapsocket_connections"), [json!(["zapsocket_connections", {}, 1])]);
    assert_eq!(
        samples("zapsocket_connections_opened"),
        [json!(["zapsocket_connections_opened_total", {}, 1])]
    );
    assert_eq!(samples("zapsocket_rooms"), [json!(["zapsocket_rooms", {}, 1])]);
    assert_eq!(
        samples("zapsocket_ws_handshakes"),
        [json!(["zapsocket_ws_handshakes_total", {"status": "101"}, 2])]
    );
    assert_eq!(
        samples("zapsocket_ws_close_codes_received"),
        [json!(["zapsocket_ws_close_codes_received_total", {"code": "4000"}, 1])]
    );
    assert_eq!(
        samples("zapsocket_ws_connections_ended"),
        [json!(["zapsocket_ws_connections_ended_total", {"cause": "closed"}, 1])]
    );
    let budget = samples("zapsocket_incoming_budget_bytes");
    assert_eq!(budget, [json!(["zapsocket_incoming_budget_bytes", {}, zapsocket::DEFAULT_MEMORY_BUDGET])]);
    // The histograms: bounds as before (bytes; seconds from microseconds), cumulative.
    let buckets = |family: &str| -> Vec<(String, f64)> {
        samples(family)
            .iter()
            .filter(|s| s[0].as_str().is_some_and(|n| n.ends_with("_bucket")))
            .map(|s| (s[1]["le"].as_str().unwrap_or("?").to_owned(), s[2].as_f64().unwrap_or(-1.0)))
            .collect()
    };
    let bounds = |buckets: &[(String, f64)]| -> Vec<f64> {
        assert_eq!(buckets.last().map(|(le, _)| le.as_str()), Some("+Inf"), "{buckets:?}");
        assert!(buckets.windows(2).all(|w| w[0].1 <= w[1].1), "cumulative: {buckets:?}");
        buckets[..buckets.len() - 1].iter().map(|(le, _)| le.parse().expect("a number")).collect()
    };
    let sizes = buckets("zapsocket_ws_message_size_bytes_received");
    let size_bounds = zapsocket::proto::SIZE_BUCKETS.map(|bytes| bytes as f64);
    assert_eq!(bounds(&sizes), size_bounds, "{sizes:?}");
    assert!(sizes.last().is_some_and(|(_, n)| *n >= 1.0), "the ws messages received: {sizes:?}");
    let latency = buckets("zapsocket_broker_publish_latency_seconds");
    let latency_bounds = zapsocket_realtime::PUBLISH_LATENCY_BUCKETS_US.map(|us| us as f64 / 1e6);
    assert_eq!(bounds(&latency), latency_bounds, "{latency:?}");
}

#[tokio::test]
async fn plain_http_serves_the_demo_page_and_the_client_module() {
    let serve = Serve::start(&[]);
    let page = http_get(&serve.addr, "/");
    assert!(page.contains("data-testid=\"members\""), "{page:.300}");
    assert!(page.contains("/zapsocket.js"), "the page imports the client");
    let module = http_get(&serve.addr, "/zapsocket.js");
    assert!(module.starts_with("HTTP/1.1 200"), "{module:.200}");
    assert!(module.to_ascii_lowercase().contains("content-type: text/javascript"), "{module:.200}");
    assert!(module.contains("export function connect"), "{module:.400}");
    // The modules it imports by relative path are served where the browser looks.
    for import in ["./zapsocket/protocol.js", "./zapsocket/connection.js"] {
        assert!(module.contains(import), "{import}");
        let path = import.trim_start_matches('.');
        let served = http_get(&serve.addr, path);
        assert!(served.starts_with("HTTP/1.1 200"), "{path}: {served:.200}");
        assert!(served.contains("export "), "{path}: {served:.200}");
    }
}

#[tokio::test]
async fn root_still_echoes_websocket_upgrades_without_a_subprotocol() {
    let serve = Serve::start(&[]);
    let mut ws = zapsocket::Client::connect(&format!("ws://{}/", serve.addr)).await.expect("connect");
    assert_eq!(ws.protocol(), None);
    ws.send("ping").await.expect("send");
    let echoed =
        tokio::time::timeout(PATIENCE, ws.recv()).await.expect("in time").expect("open").expect("ok");
    assert_eq!(echoed.as_text(), Some("ping"));
}

/// `--max-message-rate 1:2`: two messages at once, then one a second; the third is
/// answered no sooner than a second after the first was sent.
#[tokio::test]
async fn max_message_rate_paces_each_realtime_socket() {
    let serve = Serve::start(&["--max-message-rate", "1:2"]);
    let mut ws = zapsocket::Client::builder()
        .protocol(zapsocket_realtime::SUBPROTOCOL)
        .connect(&format!("ws://{}/ws", serve.addr))
        .await
        .expect("connect");
    assert_eq!(next_json(&mut ws).await["event"], "$hello");
    let sent = std::time::Instant::now();
    for id in 1..=3 {
        ws.send(format!(r#"{{"event":"$ping","ack":{id}}}"#)).await.expect("send");
    }
    for id in 1..=3 {
        assert_eq!(next_json(&mut ws).await, json!({"reply": id, "data": null}));
    }
    assert!(sent.elapsed() >= std::time::Duration::from_millis(950), "{:?}", sent.elapsed());
    let metrics = http_get(&serve.addr, "/metrics");
    assert!(metrics.contains("\nzapsocket_rate_limited_total "), "{metrics}");
}

/// The next text message of `ws`, as JSON.
async fn next_json(ws: &mut zapsocket::WebSocket) -> Value {
    loop {
        let message = tokio::time::timeout(PATIENCE, ws.recv()).await.expect("in time").expect("open");
        if let Some(text) = message.expect("ok").as_text() {
            return serde_json::from_str(text).expect("json");
        }
    }
}
