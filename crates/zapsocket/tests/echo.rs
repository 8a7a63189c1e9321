//! Echo through real sockets: every message kind and size, fragments, ping/pong, close.

#![allow(clippy::unwrap_used)] // Test helpers: a failed step is a failed test.

mod common;

use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use zapsocket::{Client, CloseCode, Message, ReadyState, Server, WebSocketConfig};

use common::{echo_server, url};

async fn echo_addr() -> std::net::SocketAddr {
    echo_server(Server::builder()).await
}

#[tokio::test]
async fn echoes_text_binary_and_empty_messages() {
    let addr = echo_addr().await;
    let mut ws = Client::connect(&url(addr, "/")).await.unwrap();
    assert_eq!(ws.ready_state(), ReadyState::Open);
    for msg in [
        Message::text("hello"),
        Message::binary(vec![0u8, 1, 2, 255]),
        Message::text(""),
        Message::binary(Vec::new()),
        Message::text("κόσμε 𝄞"),
    ] {
        ws.send(msg.clone()).await.unwrap();
        assert_eq!(ws.recv().await.unwrap().unwrap(), msg);
    }
    ws.close(CloseCode::NORMAL, "done").await.unwrap();
    assert_eq!(ws.ready_state(), ReadyState::Closed);
    assert_eq!(ws.close_frame().unwrap().code, CloseCode::NORMAL);
}

#[tokio::test]
async fn echoes_a_16_mib_message() {
    let addr = echo_addr().await;
    let mut ws = Client::connect(&url(addr, "/")).await.unwrap();
    let big: Vec<u8> = (0..16 << 20).map(|i: u32| (i % 251) as u8).collect();
    let big = Bytes::from(big);
    ws.send(Message::Binary(big.clone())).await.unwrap();
    match ws.recv().await.unwrap().unwrap() {
        Message::Binary(b) => assert!(b == big, "16 MiB echo differs"),
        other => panic!("unexpected {other:?}"),
    }
    let text = "ü".repeat(8 << 20);
    ws.send(text.clone()).await.unwrap();
    assert_eq!(ws.recv().await.unwrap().unwrap().as_text(), Some(text.as_str()));
}

/// Sizes around the read sizes (a 4 KiB minimum read, 256 KiB maximum, and a minimum read
/// to start the message after a frame larger than that), sent back to back so that each
/// read finds the next message already there: all arrive whole and in order.
#[tokio::test]
async fn large_and_small_messages_back_to_back_arrive_whole_and_in_order() {
    let addr = echo_addr().await;
    let ws = Client::connect(&url(addr, "/")).await.unwrap();
    let sizes = [1 << 20, 16, (256 << 10) + 1, 4095, 0, 1 << 20, 4097, 3 << 20, 1, 256 << 10, 5];
    let messages: Vec<Message> = sizes
        .iter()
        .enumerate()
        .map(|(n, &size)| Message::binary((0..size).map(|i| ((i * 7 + n) % 253) as u8).collect::<Vec<u8>>()))
        .collect();
    let (tx, mut rx) = ws.split();
    let sending = tokio::spawn({
        let messages = messages.clone();
        async move {
            for m in messages {
                tx.queue(m).await.unwrap();
            }
        }
    });
    for (expected, size) in messages.iter().zip(sizes) {
        let got = rx.recv().await.unwrap().unwrap();
        assert!(&got == expected, "the message of {size} bytes differs");
    }
    sending.await.unwrap();
}

#[tokio::test]
async fn fragmented_sends_arrive_as_one_message() {
    let addr = echo_addr().await;
    let mut ws = Client::connect(&url(addr, "/")).await.unwrap();
    ws.send_fragment("frag", false).await.unwrap();
    ws.send_fragment("men", false).await.unwrap();
    ws.send_fragment("ted", true).await.unwrap();
    assert_eq!(ws.recv().await.unwrap().unwrap(), Message::text("fragmented"));
    // Binary fragments, and a message between fragments is refused.
    ws.send_fragment(vec![1u8, 2], false).await.unwrap();
    assert!(ws.send("interleaved").await.unwrap_err().is_invalid());
    ws.send_fragment(vec![3u8], true).await.unwrap();
    assert_eq!(ws.recv().await.unwrap().unwrap(), Message::binary(vec![1u8, 2, 3]));
}

#[tokio::test]
async fn ping_gets_a_pong_with_the_same_payload() {
    let addr = echo_addr().await;
    let mut ws = Client::connect(&url(addr, "/")).await.unwrap();
    ws.ping("are you there").await.unwrap();
    let reply = tokio::time::timeout(Duration::from_secs(5), ws.recv()).await.unwrap().unwrap().unwrap();
    assert_eq!(reply, Message::Pong(Bytes::from_static(b"are you there")));
    assert!(ws.ping(vec![0u8; 126]).await.unwrap_err().is_invalid());
}

#[tokio::test]
async fn the_server_sees_the_clients_close_code_and_reason() {
    let server = Server::builder().bind().await.unwrap();
    let addr = server.local_addr();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(server.serve(move |mut ws| {
        let tx = tx.clone();
        async move {
            while ws.recv().await.is_some() {}
            let _ = tx.send(ws.close_frame());
        }
    }));
    let ws = Client::connect(&url(addr, "/")).await.unwrap();
    ws.close(CloseCode(4000), "client bye").await.unwrap();
    let seen = rx.recv().await.unwrap().unwrap();
    assert_eq!((seen.code, seen.reason.as_str()), (CloseCode(4000), "client bye"));
}

#[tokio::test]
async fn the_client_sees_the_servers_close_code_and_reason() {
    let server = Server::builder().bind().await.unwrap();
    let addr = server.local_addr();
    tokio::spawn(server.serve(|ws| async move {
        ws.close(CloseCode(4001), "server bye").await.unwrap();
    }));
    let mut ws = Client::connect(&url(addr, "/")).await.unwrap();
    assert!(ws.recv().await.is_none(), "a clean close ends the stream without error");
    let frame = ws.close_frame().unwrap();
    assert_eq!((frame.code, frame.reason.as_str()), (CloseCode(4001), "server bye"));
    assert!(ws.send("late").await.unwrap_err().is_closed());
}

#[tokio::test]
async fn sink_and_stream_coalesce_and_deliver_in_order() {
    let addr = echo_addr().await;
    let ws = Client::connect(&url(addr, "/")).await.unwrap();
    let (mut tx, mut rx) = ws.split();
    for i in 0..1000 {
        tx.feed(Message::text(format!("m{i}"))).await.unwrap();
    }
    tx.flush().await.unwrap();
    for i in 0..1000 {
        let msg = rx.next().await.unwrap().unwrap();
        assert_eq!(msg.as_text(), Some(format!("m{i}").as_str()));
    }
}

#[tokio::test]
async fn messages_over_the_limit_close_with_1009() {
    let addr = echo_server(Server::builder().max_message_size(1024)).await;
    let mut ws = Client::connect(&url(addr, "/")).await.unwrap();
    ws.send(vec![7u8; 1024]).await.unwrap();
    assert_eq!(ws.recv().await.unwrap().unwrap().len(), 1024);
    ws.send(vec![7u8; 1025]).await.unwrap();
    assert!(ws.recv().await.is_none());
    assert_eq!(ws.close_frame().unwrap().code, CloseCode::MESSAGE_TOO_BIG);
}

#[tokio::test]
async fn terminate_ends_the_connection_without_a_handshake() {
    let addr = echo_addr().await;
    let ws = Client::builder().config(WebSocketConfig::default()).connect(&url(addr, "/")).await.unwrap();
    ws.terminate();
    ws.closed().await;
    assert_eq!(ws.ready_state(), ReadyState::Closed);
    assert_eq!(ws.close_frame().unwrap().code, CloseCode::ABNORMAL);
}

#[tokio::test]
async fn buffered_amount_drains_to_zero() {
    let addr = echo_addr().await;
    let ws = Client::connect(&url(addr, "/")).await.unwrap();
    ws.try_send(vec![0u8; 200_000]).unwrap();
    let mut waited = 0;
    while ws.buffered_amount() > 0 && waited < 500 {
        tokio::time::sleep(Duration::from_millis(10)).await;
        waited += 1;
    }
    assert_eq!(ws.buffered_amount(), 0);
}

#[tokio::test]
async fn a_message_in_65536_fragments_is_reassembled() {
    // Regression: assembled fragments counted against the read-ahead limit stalled
    // reading once a fragmented message passed 64 KiB (Autobahn 9.3.1).
    let addr = echo_addr().await;
    let ws = Client::connect(&url(addr, "/")).await.unwrap();
    let (mut tx, mut rx) = ws.split();
    let chunk = vec![b'a'; 64];
    for i in 0..65536 {
        let fin = i == 65535;
        tx.send_fragment(Message::binary(chunk.clone()), fin).await.unwrap();
    }
    tx.flush().await.unwrap();
    let msg = tokio::time::timeout(Duration::from_secs(20), rx.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(msg.len(), 4 << 20);
}

#[tokio::test]
async fn queue_returns_before_the_write_and_keeps_order() {
    let addr = echo_addr().await;
    let mut ws = Client::connect(&url(addr, "/")).await.unwrap();
    for i in 0..500 {
        ws.queue(format!("q{i}")).await.unwrap();
    }
    for i in 0..500 {
        assert_eq!(ws.recv().await.unwrap().unwrap().as_text(), Some(format!("q{i}").as_str()));
    }
    ws.close(CloseCode::NORMAL, "").await.unwrap();
    assert!(ws.queue("late").await.unwrap_err().is_closed());
}

/// A handler that never reads and only waits for the end (`ws.closed()`): pings are still
/// answered and the peer's close is seen and answered at once, with nothing it sent lost.
#[tokio::test]
async fn a_handler_waiting_in_closed_answers_pings_and_the_close() {
    let server = Server::builder().bind().await.unwrap();
    let addr = server.local_addr();
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(server.serve(move |mut ws: zapsocket::WebSocket| {
        let done_tx = done_tx.clone();
        async move {
            ws.closed().await;
            // What arrived before the close is still there for recv().
            let mut kept = Vec::new();
            while let Some(Ok(msg)) = ws.recv().await {
                kept.push(msg);
            }
            let _ = done_tx.send((kept, ws.close_frame()));
        }
    }));
    let mut ws = Client::connect(&url(addr, "/")).await.unwrap();
    ws.send("kept for later").await.unwrap();
    ws.ping(Bytes::from_static(b"are you there")).await.unwrap();
    let pong = tokio::time::timeout(Duration::from_secs(5), ws.recv()).await.unwrap().unwrap().unwrap();
    assert_eq!(pong, Message::Pong(Bytes::from_static(b"are you there")));
    ws.close(CloseCode(4000), "bye").await.unwrap();
    // Well before the 5 s close timeout: the server answered the close.
    let end = tokio::time::timeout(Duration::from_secs(2), ws.recv()).await.unwrap();
    assert!(end.is_none());
    assert_eq!(ws.close_frame().unwrap().code, CloseCode(4000));
    let (kept, frame) = tokio::time::timeout(Duration::from_secs(2), done_rx.recv()).await.unwrap().unwrap();
    assert_eq!(
        kept,
        vec![Message::text("kept for later"), Message::Ping(Bytes::from_static(b"are you there"))]
    );
    assert_eq!(frame.unwrap().reason, "bye");
}

/// `recv()` reads the socket on the handler's task; a `recv()` dropped while waiting
/// (a `select!` that took another branch) hands reading back to the driver, so the peer
/// going away is still seen while the handler does something else.
#[tokio::test]
async fn a_cancelled_recv_hands_reading_back_to_the_driver() {
    let server = Server::builder().no_heartbeat().bind().await.unwrap();
    let addr = server.local_addr();
    let (state_tx, mut state_rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(server.serve(move |mut ws: zapsocket::WebSocket| {
        let state_tx = state_tx.clone();
        async move {
            let got = tokio::time::timeout(Duration::from_millis(100), ws.recv()).await;
            assert!(got.is_err(), "nothing was sent yet");
            // Busy elsewhere, never reading again: only the driver can see the end.
            for _ in 0..150 {
                if ws.ready_state() == ReadyState::Closed {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let _ = state_tx.send(ws.ready_state());
        }
    }));
    let peer = common::RawPeer::connect(addr, "/").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(peer); // The TCP connection ends, without a close frame.
    let state = tokio::time::timeout(Duration::from_secs(5), state_rx.recv()).await.unwrap().unwrap();
    assert_eq!(state, ReadyState::Closed);
}
