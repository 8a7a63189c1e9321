//! Peers that flood: what they can make the server hold stays bounded, and nothing the
//! handler should see is lost.

#![allow(clippy::unwrap_used)] // Test helpers: a failed step is a failed test.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::sync::Notify;
use zapsocket::{Server, WebSocket, WebSocketConfig};

use common::{RawPeer, masked_frame};

/// A peer that floods pings and never reads cannot grow the send queue past
/// `max_pong_backlog`: past it the pong for the latest ping is held (one at most) and
/// sent once the peer reads. Every ping still reaches the handler.
#[tokio::test]
async fn a_ping_flood_from_a_peer_that_never_reads_keeps_the_send_queue_bounded() {
    const LIMIT: usize = 64 * 1024;
    // 16 MiB of pings: far more than the sockets' kernel buffers hold.
    const PINGS: u64 = 128 * 1024;
    let mut config = WebSocketConfig::default();
    config.protocol = config.protocol.max_pong_backlog(LIMIT);
    let server = Server::builder().config(config).no_heartbeat().bind().await.unwrap();
    let addr = server.local_addr();
    let (tx, mut report) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(server.serve(move |mut ws: WebSocket| {
        let tx = tx.clone();
        async move {
            let (mut pings, mut most) = (0u64, 0usize);
            while let Some(Ok(msg)) = ws.recv().await {
                pings += u64::from(matches!(msg, zapsocket::Message::Ping(_)));
                most = most.max(ws.buffered_amount());
            }
            let _ = tx.send((pings, most));
        }
    }));

    let mut peer = RawPeer::connect(addr, "/").await;
    let mut flood = Vec::new();
    for i in 0..PINGS {
        let mut payload = [0u8; 125];
        payload[..8].copy_from_slice(&i.to_be_bytes());
        flood.extend(masked_frame(0x89, &payload));
    }
    zapsocket::time::timeout(Duration::from_secs(30), peer.send_raw(&flood))
        .await
        .expect("the server kept reading");

    // Now the peer reads: pongs, the last one for the last ping, far fewer than pings.
    let mut pongs = 0u64;
    loop {
        let (b0, payload) =
            zapsocket::time::timeout(Duration::from_secs(10), peer.read_frame()).await.unwrap();
        assert_eq!(b0, 0x8a);
        pongs += 1;
        if u64::from_be_bytes(payload[..8].try_into().unwrap()) == PINGS - 1 {
            break;
        }
    }
    assert!(pongs < PINGS, "{pongs} pongs: none was held");
    peer.send_frame(0x88, &1000u16.to_be_bytes()).await;
    assert_eq!(peer.read_close_code().await, Some(1000));
    let (pings, most) = report.recv().await.unwrap();
    assert_eq!(pings, PINGS, "every ping reached the handler");
    assert!(most <= LIMIT + 127, "send queue reached {most} bytes");
}

/// Empty messages sent at a handler that waits in `closed()` without reading: each
/// counts against `max_read_buffer` with its queue entry, so decoding stops, reading
/// pauses and the peer's writes stall (TCP backpressure) instead of the queue growing.
/// Once the handler reads, every message is there.
#[tokio::test]
async fn empty_messages_at_a_handler_that_does_not_read_stall_the_peer() {
    // 10,922 empty binary frames of 6 bytes: 64 KiB, whole frames only.
    const FRAMES_PER_CHUNK: u64 = 10_922;
    // 256 MiB: far more than the kernel's socket buffers (tens of MiB at most) plus the
    // server's limits.
    const CAP: u64 = (256 << 20) / (6 * FRAMES_PER_CHUNK);
    let server = Server::builder().no_heartbeat().bind().await.unwrap();
    let addr = server.local_addr();
    let read_now = Arc::new(Notify::new());
    let (tx, mut report) = tokio::sync::mpsc::unbounded_channel();
    let notify = read_now.clone();
    tokio::spawn(server.serve(move |mut ws: WebSocket| {
        let (tx, notify) = (tx.clone(), notify.clone());
        async move {
            // Waits in `closed()` (the driver decodes meanwhile) until told to read.
            {
                let told = notify.notified();
                let closed = ws.closed();
                futures_util::pin_mut!(told, closed);
                futures_util::future::select(told, closed).await;
            }
            let mut empty = 0u64;
            while let Some(Ok(msg)) = ws.recv().await {
                empty += u64::from(msg.is_data() && msg.is_empty());
            }
            let _ = tx.send(empty);
        }
    }));

    let peer = RawPeer::connect(addr, "/").await;
    let chunks = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = tokio::spawn({
        let (chunks, stop) = (chunks.clone(), stop.clone());
        async move {
            let mut peer = peer;
            let frame = masked_frame(0x82, &[]);
            let chunk: Vec<u8> =
                frame.iter().copied().cycle().take(frame.len() * FRAMES_PER_CHUNK as usize).collect();
            while !stop.load(Ordering::SeqCst) && chunks.load(Ordering::SeqCst) < CAP {
                peer.stream.write_all(&chunk).await.unwrap();
                chunks.fetch_add(1, Ordering::SeqCst);
            }
            peer.send_frame(0x88, &1000u16.to_be_bytes()).await;
            peer.read_close_code().await
        }
    });
    // Wait until the writer stops making progress for 2 s (or reaches the cap).
    let mut last = u64::MAX;
    loop {
        zapsocket::time::sleep(Duration::from_secs(2)).await;
        let now = chunks.load(Ordering::SeqCst);
        if now == last || now >= CAP {
            break;
        }
        last = now;
    }
    let stalled_at = chunks.load(Ordering::SeqCst);
    assert!(
        stalled_at < CAP,
        "the server took all {stalled_at} chunks of empty messages without reading them"
    );

    // The handler reads now: the stalled write completes and nothing was dropped.
    stop.store(true, Ordering::SeqCst);
    read_now.notify_one();
    let close = zapsocket::time::timeout(Duration::from_secs(120), writer).await.unwrap().unwrap();
    assert_eq!(close, Some(1000));
    let empty = report.recv().await.unwrap();
    assert_eq!(empty, chunks.load(Ordering::SeqCst) * FRAMES_PER_CHUNK, "every empty message arrived");
}
