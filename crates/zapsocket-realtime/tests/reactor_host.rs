//! What is particular to the hub on the reactor (`Hub::reactor_handler`): the upgrade
//! request kept or not after the connect middlewares, a panicking handler that ends its
//! connection (not its loop), handlers that wait running beside the loop, in order and
//! within `max_pending_acks`. (Every other realtime test runs on the reactor too, with
//! `ZAP_HUB_HOST=reactor`.)

#![allow(clippy::unwrap_used)] // test helpers panic on purpose

mod common;

use std::time::Duration;

use common::{exchange, raw, recv_json, serve_reactor};
use serde_json::{Value, json};
use zapsocket_realtime::{Hub, HubConfig, ReplyError, SUBPROTOCOL, Socket};

/// A hub whose connect middleware and `whoami` handler report the `name` query
/// parameter as they see it.
fn hub() -> Hub {
    let hub = Hub::new();
    hub.use_connect(|socket: Socket| async move {
        let name = socket.request().and_then(|r| r.query_param("name")).unwrap_or_default();
        socket.set_public_data(json!({ "name": name }));
        Ok(())
    });
    hub.on("whoami", |socket: Socket, _: Value| async move {
        let name = socket.request().and_then(|r| r.query_param("name"));
        Ok::<_, ReplyError>(json!({ "request": name, "data": socket.public_data() }))
    });
    hub
}

#[tokio::test]
async fn the_request_is_seen_at_connect_and_after_it_only_when_kept() {
    let hub = hub();
    let ask = r#"{"event":"whoami","data":null,"ack":1}"#;
    let (_dropped, url) = serve_reactor(hub.reactor_handler(tokio::runtime::Handle::current()));
    let (mut ws, _) = raw(&format!("{url}?name=ada")).await;
    let reply = exchange(&mut ws, ask).await;
    assert_eq!(reply["data"], json!({ "request": null, "data": { "name": "ada" } }));

    let (_kept, url) =
        serve_reactor(hub.reactor_handler(tokio::runtime::Handle::current()).keep_requests(true));
    let (mut ws, _) = raw(&format!("{url}?name=bob")).await;
    let reply = exchange(&mut ws, ask).await;
    assert_eq!(reply["data"], json!({ "request": "bob", "data": { "name": "bob" } }));
}

#[tokio::test]
async fn a_panicking_handler_ends_its_connection_with_1011_and_the_loop_goes_on() {
    let hub = hub();
    hub.on("boom", |_: Socket, _: Value| -> std::future::Ready<Result<(), ReplyError>> {
        panic!("the test asked for it")
    });
    let (running, url) =
        serve_reactor(hub.reactor_handler(tokio::runtime::Handle::current()).keep_requests(true));
    let (mut ws, _) = raw(&url).await;
    ws.send(r#"{"event":"boom","data":null}"#).await.unwrap();
    let end = tokio::time::timeout(Duration::from_secs(5), ws.recv()).await.unwrap();
    assert!(end.is_none(), "{end:?}");
    assert_eq!(ws.close_frame().map(|f| f.code.0), Some(1011));
    common::eventually(|| hub.metrics().connections == 0).await;
    // The loops go on serving.
    let mut clients = Vec::new();
    for _ in 0..4 {
        let (mut ws, _) = raw(&format!("{url}?name=eve")).await;
        let reply = exchange(&mut ws, r#"{"event":"whoami","data":null,"ack":7}"#).await;
        assert_eq!(reply["data"]["request"], "eve");
        clients.push(ws);
    }
    assert_eq!(running.connections(), 4);
}

#[tokio::test]
async fn handlers_that_wait_run_beside_the_loop_within_max_pending_acks() {
    let mut config = HubConfig::default();
    config.max_pending_acks = 2;
    let hub = Hub::builder().config(config).build();
    hub.on("wait", |_: Socket, ms: u64| async move {
        zapsocket::time::sleep(Duration::from_millis(ms)).await;
        Ok::<_, ReplyError>(ms)
    });
    hub.on("now", |_: Socket, n: u64| async move { Ok::<_, ReplyError>(n) });
    let (_running, url) = serve_reactor(hub.reactor_handler(tokio::runtime::Handle::current()));
    let (mut ws, _) = raw(&url).await;
    let started = std::time::Instant::now();
    // Two handlers that wait fill the socket's allowance: the third message is not
    // handled before one of them ends; the one that ends first answers first.
    ws.send(r#"{"event":"wait","data":300,"ack":1}"#).await.unwrap();
    ws.send(r#"{"event":"wait","data":100,"ack":2}"#).await.unwrap();
    ws.send(r#"{"event":"now","data":3,"ack":3}"#).await.unwrap();
    assert_eq!(recv_json(&mut ws).await, json!({"reply": 2, "data": 100}));
    assert_eq!(recv_json(&mut ws).await, json!({"reply": 3, "data": 3}));
    assert!(started.elapsed() >= Duration::from_millis(95), "{:?}", started.elapsed());
    assert_eq!(recv_json(&mut ws).await, json!({"reply": 1, "data": 300}));
    // A request that does not wait is answered from the loop, at once.
    assert_eq!(exchange(&mut ws, r#"{"event":"now","data":4,"ack":4}"#).await["data"], 4);
}

/// While a session cannot handle messages (here its connect middleware waits), it keeps
/// at most `max_message` bytes of them, then stops reading: the client's writes stall
/// (TCP pushes back) instead of the server buffering them all. Nothing is lost: once the
/// middleware lets it in, every message is answered, in order.
#[tokio::test]
async fn a_session_that_waits_keeps_at_most_max_message_then_stops_reading() {
    let mut config = HubConfig::default();
    config.max_message = 4096;
    let hub = Hub::builder().config(config).build();
    let gate = std::sync::Arc::new(tokio::sync::Notify::new());
    let opened = gate.clone();
    hub.use_connect(move |_: Socket| {
        let gate = opened.clone();
        async move {
            gate.notified().await;
            Ok(())
        }
    });
    hub.on("n", |_: Socket, n: u64| async move { Ok::<_, ReplyError>(n) });
    let (_running, url) = serve_reactor(hub.reactor_handler(tokio::runtime::Handle::current()));
    let mut ws = zapsocket::Client::builder().protocol(SUBPROTOCOL).connect(&url).await.unwrap();
    let pad = "x".repeat(1000);
    let mut sent = 0u64;
    let stalled = loop {
        let ack = sent + 1;
        let message = format!(r#"{{"event":"n","data":{sent},"ack":{ack},"pad":"{pad}"}}"#);
        match tokio::time::timeout(Duration::from_millis(500), ws.send(message)).await {
            Ok(result) => {
                result.unwrap();
                sent += 1;
                if sent == 64 * 1024 {
                    break false;
                }
            }
            Err(_) => break true,
        }
    };
    assert!(stalled, "64 MiB taken while the session could not handle any of it");
    assert!(sent > 4, "a few were taken: {sent}");
    gate.notify_one();
    assert_eq!(recv_json(&mut ws).await["event"], "$hello");
    // Every message sent (and the one whose send was cut short, if it went), in order.
    let mut answered = 0;
    while answered < sent {
        assert_eq!(recv_json(&mut ws).await, json!({"reply": answered + 1, "data": answered}));
        answered += 1;
    }
}
