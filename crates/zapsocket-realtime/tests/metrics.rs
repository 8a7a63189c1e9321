//! Metrics: connections, rooms, messages and bytes both ways, drops.

#![allow(clippy::unwrap_used)] // test helpers below panic on purpose

mod common;

use std::time::Duration;

use common::{Recorder, serve};
use zapsocket::{SlowConsumer, WebSocketConfig};
use zapsocket_realtime::{Hub, SUBPROTOCOL};

#[tokio::test]
async fn counts_messages_and_bytes_both_ways() {
    let hub = Hub::new();
    let url = serve(&hub).await;
    let mut a = Recorder::connect(&url).await;
    a.client.join("r").await.unwrap();
    let before = hub.metrics();
    a.client.send_raw(r#"{"event":"nope"}"#).await.unwrap();
    assert_eq!(a.next().await.0, "$error");
    let after = hub.metrics();
    assert_eq!(after.messages_in - before.messages_in, 1);
    assert_eq!(after.bytes_in - before.bytes_in, 16);
    assert_eq!(after.errors_out - before.errors_out, 1);
    assert_eq!(after.messages_out - before.messages_out, 1);
    assert!(after.bytes_out > before.bytes_out);
    let text = after.to_prometheus();
    assert!(text.contains("zapsocket_connections 1\n"), "{text}");
    assert!(text.contains("zapsocket_rooms 1\n"), "{text}");
}

#[tokio::test]
async fn a_consumer_that_does_not_read_is_counted_as_drops() {
    let hub = Hub::new();
    let config = WebSocketConfig::default().max_send_queue(4096).slow_consumer(SlowConsumer::DropMessage);
    let server = zapsocket::Server::builder().subprotocol(SUBPROTOCOL).config(config).bind().await.unwrap();
    let url = format!("ws://{}/", server.local_addr());
    let h = hub.clone();
    tokio::spawn(server.serve(move |ws| h.clone().handle(ws)));
    // A raw client that never reads after connecting: its queue fills up.
    let _silent = zapsocket::Client::builder().protocol(SUBPROTOCOL).connect(&url).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let big = "x".repeat(64 * 1024);
    let before = hub.metrics();
    for _ in 0..200 {
        hub.emit("big", &big).unwrap();
    }
    let m = hub.metrics();
    assert!(m.drops > 0, "{m:?}");
    let queued = m.messages_out - before.messages_out;
    assert_eq!(m.drops - before.drops + queued, 200, "each message is queued or counted as a drop: {m:?}");
}
