//! The memory budget for incoming data: peers that each send most of a large message
//! cannot make the server hold more than the budget (plus one read each), small messages
//! are still answered meanwhile, a connection that waits too long is failed with 1013,
//! and legal messages under the budget arrive as before.

#![allow(clippy::unwrap_used)] // Test helpers: a failed step is a failed test.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use zapsocket::{Client, MemoryBudget, Message, Server, WebSocket, WebSocketConfig};

use common::RawPeer;

const MIB: usize = 1 << 20;
/// The most a connection reads at once (transport.rs): the budget may be passed by one
/// read per connection.
const MAX_READ: usize = 256 * 1024;

async fn echo_server(budget: &MemoryBudget) -> SocketAddr {
    let config = WebSocketConfig::default().max_message_size(64 * MIB).memory_budget(Some(budget.clone()));
    common::echo_server(Server::builder().config(config).no_heartbeat()).await
}

/// The header of a masked binary frame of `len` bytes, FIN set; the payload follows
/// (masked with an all-zero key, so its bytes go on the wire as they are).
fn big_frame_header(len: u64) -> Vec<u8> {
    let mut out = vec![0x82, 0x80 | 127];
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&[0; 4]);
    out
}

/// Opens `n` connections that each start a frame of `frame` bytes and send as much of
/// its first `send` bytes as the server lets them (without blocking the test).
async fn hogs(
    addr: SocketAddr,
    n: usize,
    frame: usize,
    send: usize,
) -> Vec<tokio::task::JoinHandle<RawPeer>> {
    let mut tasks = Vec::new();
    for _ in 0..n {
        let mut peer = RawPeer::connect(addr, "/").await;
        tasks.push(tokio::spawn(async move {
            peer.send_raw(&big_frame_header(frame as u64)).await;
            let chunk = vec![0x5a; 64 * 1024];
            let mut sent = 0;
            while sent < send {
                if peer.stream.write_all(&chunk).await.is_err() {
                    break;
                }
                sent += chunk.len();
            }
            peer
        }));
    }
    tasks
}

async fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < timeout, "{what}: not within {timeout:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_peers_holding_large_partial_messages_stay_within_the_budget_and_small_echoes_go_on() {
    const LIMIT: usize = 8 * MIB;
    const PEERS: usize = 12;
    let budget = MemoryBudget::with_wait(LIMIT, Duration::from_secs(3));
    let addr = echo_server(&budget).await;
    // 12 peers each sending 6 MiB of a 7 MiB frame: 72 MiB if nothing stopped them.
    let tasks = hogs(addr, PEERS, 7 * MIB, 6 * MIB).await;
    wait_for("the budget is spent", Duration::from_secs(20), || budget.used() >= LIMIT).await;
    wait_for("connections paused", Duration::from_secs(5), || budget.paused_connections() > 0).await;
    // While they push, the total never passes the budget by more than a read each.
    let mut most = 0;
    for _ in 0..25 {
        most = most.max(budget.used());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(most <= LIMIT + PEERS * MAX_READ, "held {most} bytes, budget {LIMIT}");
    assert!(budget.pauses() > 0);

    // A small client is still answered at once: it holds no more than its free share.
    let mut small = Client::connect(&common::url(addr, "/")).await.unwrap();
    for i in 0..20 {
        let start = Instant::now();
        small.send(Message::text(format!("hello {i}"))).await.unwrap();
        let echo =
            tokio::time::timeout(Duration::from_secs(1), small.recv()).await.unwrap().unwrap().unwrap();
        assert_eq!(echo, Message::text(format!("hello {i}")));
        assert!(start.elapsed() < Duration::from_secs(1));
    }

    // When the peers go, what they held is released: at once for those being read, and
    // for those paused (not read, so their end is not seen) when they are failed after
    // waiting 3 s.
    for task in tasks {
        task.abort();
    }
    wait_for("the budget released", Duration::from_secs(10), || budget.used() == 0).await;
    assert_eq!(budget.paused_connections(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_waits_too_long_for_the_budget_is_failed_with_1013() {
    const LIMIT: usize = 2 * MIB;
    let budget = MemoryBudget::with_wait(LIMIT, Duration::from_millis(500));
    let addr = echo_server(&budget).await;
    let tasks = hogs(addr, 2, 4 * MIB, 3 * MIB).await;
    let refused_at = Instant::now();
    wait_for("a paused connection refused", Duration::from_secs(20), || budget.refused_connections() >= 1)
        .await;
    assert!(refused_at.elapsed() >= Duration::from_millis(500));
    // The refused peer reads a close frame with 1013 and a reason, then the end.
    let mut codes = Vec::new();
    for task in tasks {
        let mut peer = task.await.unwrap();
        let bytes = peer.read_to_end().await;
        if bytes.len() >= 4 && bytes[0] == 0x88 {
            codes.push(u16::from_be_bytes([bytes[2], bytes[3]]));
            let reason = String::from_utf8_lossy(&bytes[4..2 + usize::from(bytes[1] & 0x7f)]).into_owned();
            assert!(reason.contains("memory budget"), "{reason}");
        }
    }
    assert!(codes.contains(&1013), "close codes seen: {codes:?}");
    wait_for("the budget released", Duration::from_secs(10), || budget.used() == 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_under_the_budget_arrive_whole_and_release_what_they_held() {
    let budget = MemoryBudget::with_wait(32 * MIB, Duration::from_secs(60));
    let addr = echo_server(&budget).await;
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(Client::connect(&common::url(addr, "/")).await.unwrap());
    }
    // Three 8 MiB messages at once: 24 MiB of the 32.
    let payloads: Vec<Vec<u8>> = (0..3u8).map(|k| (0..8 * MIB).map(|i| (i as u8) ^ k).collect()).collect();
    let mut tasks = Vec::new();
    for (mut ws, payload) in clients.into_iter().zip(payloads.clone()) {
        tasks.push(tokio::spawn(async move {
            ws.send(Message::binary(payload)).await.unwrap();
            let echo = ws.recv().await.unwrap().unwrap();
            (ws, echo)
        }));
    }
    for (task, payload) in tasks.into_iter().zip(payloads) {
        let (_ws, echo) = tokio::time::timeout(Duration::from_secs(30), task).await.unwrap().unwrap();
        assert_eq!(echo.as_bytes(), payload.as_slice());
    }
    assert_eq!(budget.pauses(), 0, "nothing waited");
    wait_for("the budget released", Duration::from_secs(5), || budget.used() == 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_budget_nothing_is_charged_and_by_default_the_process_budget_is_used() {
    assert_eq!(WebSocketConfig::default().memory_budget, Some(MemoryBudget::process()));
    assert_eq!(MemoryBudget::process().limit(), zapsocket::DEFAULT_MEMORY_BUDGET);
    let config = WebSocketConfig::default().memory_budget(None);
    let addr = common::echo_server(Server::builder().config(config).no_heartbeat()).await;
    let mut ws: WebSocket = Client::connect(&common::url(addr, "/")).await.unwrap();
    let payload = vec![7u8; 4 * MIB];
    ws.send(Message::binary(payload.clone())).await.unwrap();
    assert_eq!(ws.recv().await.unwrap().unwrap().as_bytes(), payload.as_slice());
}
