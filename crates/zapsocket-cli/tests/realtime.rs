//! `zap serve`'s realtime side, run for real: the hub at `/ws` (chat with names and
//! rooms), `/metrics`, the demo page and the JS module over plain HTTP, and `/` still
//! echoing for WebSocket upgrades.

use serde_json::{Value, json};
use tokio::sync::mpsc as channel;
use zapsocket_realtime::client::Client;

mod common;
use common::{PATIENCE, Serve, http_get};

/// A client on `/ws` named `name`, with a channel of the `chat` events it receives.
async fn chatter(serve: &Serve, name: &str) -> (Client, channel::UnboundedReceiver<Value>) {
    let url = format!("ws://{}/ws?name={name}", serve.addr);
    let client =
        tokio::time::timeout(PATIENCE, Client::connect(&url)).await.expect("in time").expect("connect");
    let (tx, rx) = channel::unbounded_channel();
    client.on("chat", move |msg: Value| {
        let _ = tx.send(msg);
    });
    (client, rx)
}

async fn next(rx: &mut channel::UnboundedReceiver<Value>) -> Value {
    tokio::time::timeout(PATIENCE, rx.recv()).await.expect("a chat in time").expect("open")
}

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
    assert!(metrics.contains("text/plain; version=0.0.4"), "{metrics}");
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
