//! Server metrics (`ServerBuilder::metrics`) through real sockets: handshakes by
//! status, open connections, messages and bytes each way with their sizes, close codes
//! both ways, why connections ended, and the OpenMetrics text.

#![allow(clippy::unwrap_used)] // Test helpers: a failed step is a failed test.

mod common;

use std::time::Duration;

use common::{RawPeer, url};
use zapsocket::{Client, CloseCode, Message, Metrics, Server, WebSocket};

/// An echo server on `/ws` with metrics; "die" makes it terminate the connection.
async fn server(metrics: &Metrics, builder: zapsocket::ServerBuilder) -> std::net::SocketAddr {
    let server = builder.path("/ws").metrics(metrics).bind().await.unwrap();
    let addr = server.local_addr();
    tokio::spawn(server.serve(|mut ws: WebSocket| async move {
        while let Some(Ok(message)) = ws.recv().await {
            if message.as_text() == Some("die") {
                ws.terminate();
                return;
            }
            if message.is_data() && ws.send(message).await.is_err() {
                return;
            }
        }
    }));
    addr
}

async fn eventually(what: &str, check: impl Fn() -> bool) {
    for _ in 0..500 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("not within 5 s: {what}");
}

#[tokio::test]
async fn handshakes_messages_close_codes_and_endings_are_counted() {
    let metrics = Metrics::new();
    let addr = server(&metrics, Server::builder()).await;
    assert!(Client::connect(&url(addr, "/elsewhere")).await.is_err(), "404");

    let mut ws = Client::connect(&url(addr, "/ws")).await.unwrap();
    for len in [10, 1000, 100_000] {
        ws.send(Message::binary(vec![7u8; len])).await.unwrap();
        assert_eq!(ws.recv().await.unwrap().unwrap().len(), len);
    }
    // While open: its counts are in the snapshot.
    let live = metrics.snapshot();
    assert_eq!(live.open, 1);
    assert_eq!((live.counts.messages_in, live.counts.bytes_in), (3, 101_010));
    assert_eq!((live.counts.messages_out, live.counts.bytes_out), (3, 101_010));
    assert_eq!(live.counts.sizes_in, [1, 0, 1, 0, 1, 0, 0]);
    ws.close(CloseCode(4000), "bye").await.unwrap();

    let mut doomed = Client::connect(&url(addr, "/ws")).await.unwrap();
    doomed.send("die").await.unwrap();
    assert!(doomed.recv().await.is_none_or(|r| r.is_err()));

    eventually("both ended", || metrics.snapshot().ended.values().sum::<u64>() == 2).await;
    let m = metrics.snapshot();
    assert_eq!(m.open, 0);
    assert_eq!(m.handshakes.get(&101), Some(&2));
    assert_eq!(m.handshakes.get(&404), Some(&1));
    assert_eq!((m.counts.messages_in, m.counts.messages_out), (4, 3), "the ended ones' counts stay");
    assert_eq!(m.close_received.get(&4000), Some(&1));
    assert_eq!(m.close_sent.get(&4000), Some(&1), "the echo");
    assert_eq!(m.ended.get("closed"), Some(&1));
    assert_eq!(m.ended.get("terminated"), Some(&1));
    assert_eq!(m.send_queue_bytes, 0);

    let text = metrics.to_prometheus();
    for line in [
        "# HELP zapsocket_ws_handshakes Opening handshakes answered, by HTTP status.",
        "# TYPE zapsocket_ws_handshakes counter",
        "zapsocket_ws_handshakes_total{status=\"101\"} 2",
        "zapsocket_ws_handshakes_total{status=\"404\"} 1",
        "# TYPE zapsocket_ws_connections gauge",
        "zapsocket_ws_connections 0",
        "# TYPE zapsocket_ws_messages_received counter",
        "zapsocket_ws_messages_received_total 4",
        "zapsocket_ws_message_size_bytes_received_bucket{le=\"64.0\"} 2",
        "zapsocket_ws_message_size_bytes_received_bucket{le=\"+Inf\"} 4",
        "zapsocket_ws_message_size_bytes_received_count 4",
        "zapsocket_ws_close_codes_received_total{code=\"4000\"} 1",
        "zapsocket_ws_close_codes_sent_total{code=\"4000\"} 1",
        "zapsocket_ws_connections_ended_total{cause=\"terminated\"} 1",
        "# TYPE zapsocket_ws_message_size_bytes_received histogram",
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line:?} in:\n{text}");
    }
    // The bounds are SIZE_BUCKETS', each bucket cumulative, and one `# EOF`, at the end.
    let le: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("zapsocket_ws_message_size_bytes_received_bucket{le=\""))
        .filter_map(|l| l.split_once('"').map(|(le, _)| le))
        .collect();
    assert_eq!(le, ["64.0", "512.0", "4096.0", "32768.0", "262144.0", "2097152.0", "+Inf"], "{text}");
    assert!(text.ends_with("\n# EOF\n") && text.matches("# EOF").count() == 1, "{text}");
}

#[tokio::test]
async fn a_peer_that_never_answers_pings_ends_as_heartbeat() {
    let metrics = Metrics::new();
    let config = zapsocket::WebSocketConfig::default()
        .heartbeat(Duration::from_millis(100), Duration::from_millis(100));
    let addr = server(&metrics, Server::builder().config(config)).await;
    let mut silent = RawPeer::connect(addr, "/ws").await; // reads nothing, answers nothing
    eventually("ended", || metrics.snapshot().ended.get("heartbeat") == Some(&1)).await;
    let _ = silent.read_to_end().await;
    assert_eq!(metrics.snapshot().open, 0);
}
