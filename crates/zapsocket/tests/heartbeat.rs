//! The heartbeat terminates silent peers and keeps live ones.

#![allow(clippy::unwrap_used)] // Test helpers: a failed step is a failed test.

mod common;

use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;
use zapsocket::{Client, CloseCode, Server, WebSocket};

use common::{RawPeer, echo_server, url};

#[tokio::test]
async fn the_heartbeat_terminates_a_silent_peer_and_keeps_a_live_one() {
    let server = Server::builder()
        .heartbeat(Duration::from_millis(100), Duration::from_millis(150))
        .bind()
        .await
        .unwrap();
    let addr = server.local_addr();
    let (tx, mut closed) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(server.serve(move |mut ws: WebSocket| {
        let tx = tx.clone();
        async move {
            while ws.recv().await.is_some() {}
            let _ = tx.send(ws.close_frame());
        }
    }));

    // A live client reads (and so answers pings) for a while.
    let mut live = Client::connect(&url(addr, "/")).await.unwrap();
    let live_task = tokio::spawn(async move {
        let mut pings = 0;
        let deadline = tokio::time::Instant::now() + Duration::from_millis(900);
        while let Ok(Some(Ok(msg))) = tokio::time::timeout_at(deadline, live.recv()).await {
            pings += usize::from(matches!(msg, zapsocket::Message::Ping(_)));
        }
        (live, pings)
    });

    // A silent peer completes the handshake, then never answers: it only drains the
    // socket so that TCP itself stays healthy.
    let mut silent = RawPeer::connect(addr, "/").await;
    let started = Instant::now();
    let mut sink = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(3), silent.stream.read_to_end(&mut sink)).await;
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(2), "silent peer kept for {elapsed:?}");
    assert!(sink.len() >= 2 && sink[0] == 0x89, "it was pinged first");
    let record = closed.recv().await.unwrap().unwrap();
    assert_eq!(record.code, CloseCode::ABNORMAL);

    let (live, pings) = live_task.await.unwrap();
    assert!(pings >= 3, "only {pings} pings in 900 ms");
    assert_eq!(live.ready_state(), zapsocket::ReadyState::Open, "the live client survived several intervals");
}

/// A client that only waits for the end (`closed()`), without reading, still answers a
/// server's heartbeat, and the pings wait for it in order when it does read.
#[tokio::test]
async fn a_client_waiting_in_closed_answers_the_heartbeat() {
    let heartbeat = Server::builder().heartbeat(Duration::from_millis(100), Duration::from_millis(150));
    let addr = echo_server(heartbeat).await;
    let mut ws = Client::connect(&url(addr, "/")).await.unwrap();
    let waited = tokio::time::timeout(Duration::from_millis(900), ws.closed()).await;
    assert!(waited.is_err(), "the connection ended while the client waited");
    assert_eq!(ws.ready_state(), zapsocket::ReadyState::Open, "terminated while not reading");
    ws.send("still here").await.unwrap();
    let mut pings = 0;
    loop {
        match tokio::time::timeout(Duration::from_secs(2), ws.recv()).await.unwrap().unwrap().unwrap() {
            zapsocket::Message::Ping(_) => pings += 1,
            msg => {
                assert_eq!(msg, zapsocket::Message::text("still here"));
                break;
            }
        }
    }
    assert!(pings >= 3, "only {pings} pings kept in 900 ms");
}

/// A handler busy elsewhere (not calling `recv()`) still has its peer's pings answered
/// (after a grace of 100 ms), and the messages that arrived meanwhile wait for it, in
/// order.
#[tokio::test]
async fn pings_are_answered_while_the_handler_is_busy() {
    // The default heartbeat on: its thread runs the keepalive timer, the driver the grace.
    let server = Server::builder().bind().await.unwrap();
    let addr = server.local_addr();
    let (busy_done, mut until_busy_done) = tokio::sync::mpsc::unbounded_channel::<()>();
    tokio::spawn(server.serve(move |mut ws: WebSocket| {
        let busy_done = busy_done.clone();
        async move {
            // Busy: not reading for a while.
            zapsocket::time::sleep(Duration::from_millis(1500)).await;
            let _ = busy_done.send(());
            while let Some(Ok(msg)) = ws.recv().await {
                if msg.is_data() && ws.send(msg).await.is_err() {
                    break;
                }
            }
        }
    }));
    let mut peer = RawPeer::connect(addr, "/").await;
    peer.send_frame(0x81, b"a").await;
    peer.send_frame(0x89, b"are you there").await;
    peer.send_frame(0x81, b"b").await;
    let (b0, payload) =
        zapsocket::time::timeout(Duration::from_secs(1), peer.read_frame()).await.expect("a pong while busy");
    assert_eq!((b0, payload.as_slice()), (0x8a, &b"are you there"[..]));
    assert!(until_busy_done.try_recv().is_err(), "answered before the handler read anything");
    for echo in [b"a", b"b"] {
        let frame = zapsocket::time::timeout(Duration::from_secs(5), peer.read_frame()).await.unwrap();
        assert_eq!(frame, (0x81, echo.to_vec()));
    }
}
