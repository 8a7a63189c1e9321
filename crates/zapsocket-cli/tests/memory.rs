//! `zap serve` under peers that each send most of one huge frame (every byte legal, no
//! message complete): its memory budget for incoming data keeps the process small, and a
//! small client's echo is still answered within a second.
//!
//! Linux only (reads the server's RSS from /proc).

#![cfg(target_os = "linux")]

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use zapsocket::{Client, Message};

mod common;
use common::{PATIENCE, Serve};

const MIB: u64 = 1 << 20;

/// The resident memory of process `pid`, in bytes.
fn rss(pid: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc/PID/status");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/PID/status");
    kib * 1024
}

/// A raw client: handshake, then the header of a masked binary frame of `frame` bytes
/// (all-zero key, so the payload goes out as it is), then up to `send` bytes of it until
/// `until`. Returns the bytes sent.
async fn hog(addr: String, frame: u64, send: u64, until: Instant) -> u64 {
    let mut stream = TcpStream::connect(&addr).await.expect("connect");
    let request = format!(
        "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.expect("send the handshake");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).await.expect("read the handshake answer");
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&head));
    let mut header = vec![0x82, 0x80 | 127];
    header.extend_from_slice(&frame.to_be_bytes());
    header.extend_from_slice(&[0; 4]);
    stream.write_all(&header).await.expect("send the frame header");
    let chunk = vec![0x5a; 64 * 1024];
    let mut sent = 0;
    while sent < send {
        let left = until.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.write_all(&chunk)).await {
            Ok(Ok(())) => sent += chunk.len() as u64,
            _ => break,
        }
    }
    // Keep the connection (and what the server holds of it) until the test is done.
    tokio::time::sleep(until.saturating_duration_since(Instant::now())).await;
    sent
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_peers_each_sending_48_mib_of_a_60_mib_frame_stay_within_the_budget() {
    const PEERS: usize = 64;
    let serve = Serve::start(&[]);
    let pid = serve.pid();
    // Warm up the allocator and the echo path, then take the baseline.
    let mut small = tokio::time::timeout(PATIENCE, Client::connect(&serve.url("/"))).await.unwrap().unwrap();
    small.send(Message::text("warm up")).await.unwrap();
    small.recv().await.unwrap().unwrap();
    let baseline = rss(&pid);

    let until = Instant::now() + Duration::from_secs(8);
    let hogs: Vec<_> =
        (0..PEERS).map(|_| tokio::spawn(hog(serve.addr.clone(), 60 * MIB, 48 * MIB, until))).collect();

    let mut peak = baseline;
    let mut slowest = Duration::ZERO;
    let mut echoes = 0;
    while Instant::now() < until {
        peak = peak.max(rss(&pid));
        let start = Instant::now();
        small.send(Message::text(format!("ping {echoes}"))).await.unwrap();
        let echo = tokio::time::timeout(Duration::from_secs(1), small.recv())
            .await
            .expect("the small client's echo within a second")
            .unwrap()
            .unwrap();
        assert_eq!(echo, Message::text(format!("ping {echoes}")));
        slowest = slowest.max(start.elapsed());
        echoes += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    peak = peak.max(rss(&pid));
    let mut sent = 0;
    for hog in hogs {
        sent += hog.await.unwrap();
    }
    let growth = peak.saturating_sub(baseline);
    eprintln!(
        "{PEERS} peers sent {} MiB in all; zap serve grew by {} MiB (baseline {} MiB); {echoes} echoes, \
         slowest {slowest:?}",
        sent / MIB,
        growth / MIB,
        baseline / MIB
    );
    // The peers pushed far more than the budget (256 MiB)...
    assert!(sent > 384 * MIB, "the peers sent only {} MiB", sent / MIB);
    // ...and the server held no more than the budget, one read per connection and its
    // buffers' slack.
    assert!(growth < 512 * MIB, "zap serve grew by {} MiB", growth / MIB);
    assert!(echoes >= 20, "{echoes} echoes");
}

/// Idle connections give their buffers back: 20 connections that each echoed a 1 MiB
/// message hold their 1 MiB read buffers while busy, and once idle `zap serve` is back near
/// where it started within half a minute (the buffers are released a second or two after
/// the last message; jemalloc, `zap`'s allocator, returns freed pages after about 10 s).
/// Before the heartbeat thread released the buffers of idle connections, each kept its
/// 1 MiB for as long as it lived.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_give_back_their_buffers() {
    const CONNECTIONS: usize = 20;
    let serve = Serve::start(&[]);
    let pid = serve.pid();
    let url = serve.url("/echo");
    let mut warm = tokio::time::timeout(PATIENCE, Client::connect(&url)).await.unwrap().unwrap();
    warm.send(Message::text("warm up")).await.unwrap();
    warm.recv().await.unwrap().unwrap();
    let baseline = rss(&pid);
    let big = Message::binary(vec![0x5a; MIB as usize]);
    let mut open = Vec::with_capacity(CONNECTIONS);
    for _ in 0..CONNECTIONS {
        let mut ws = tokio::time::timeout(PATIENCE, Client::connect(&url)).await.unwrap().unwrap();
        ws.send(big.clone()).await.unwrap();
        assert_eq!(ws.recv().await.unwrap().unwrap().len(), big.len());
        open.push(ws);
    }
    let busy = rss(&pid).saturating_sub(baseline);
    assert!(busy >= 10 * MIB, "the echoes grew zap serve by only {} MiB: nothing to give back", busy / MIB);
    let mut idle = busy;
    for _ in 0..150 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        idle = rss(&pid).saturating_sub(baseline);
        if idle < 4 * MIB {
            break;
        }
    }
    eprintln!(
        "{CONNECTIONS} connections after a 1 MiB echo each: +{} MiB busy, +{} MiB idle",
        busy / MIB,
        idle / MIB
    );
    assert!(idle < 4 * MIB, "still {} MiB over the baseline after 30 s idle", idle / MIB);
    drop(open);
}

/// The server's bytes per idle connection, as `zap bench connect` measures them.
fn bytes_per_idle_connection(serve: &Serve, path: &str, extra: &[&str]) -> f64 {
    let output = std::process::Command::new(common::ZAP)
        .args(["bench", "connect", &serve.url(path), "-c", "2000", "--hold", "1", "--json", "-q"])
        .args(["--server-pid", &serve.pid()])
        .args(extra)
        .output()
        .expect("run zap bench");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).expect("JSON summary");
    report["server_bytes_per_connection"].as_f64().expect("a figure")
}

/// docs/BENCHMARKS.md, "Memory per idle connection" (release build, 10,000 connections:
/// 2.8 KB per echo connection, 5.7 KB per realtime session 4 s after they opened, on
/// 2026-12-06). This test's build is unoptimized and holds 2,000 for a second (3.8 and
/// 7.0 KB here); the bounds catch what was taken out on 2026-12-05 (6.9 and 14.2 KB in a
/// release build before).
#[test]
fn idle_connections_cost_under_4_5_kib_and_realtime_sessions_under_9_kib() {
    let serve = Serve::start(&[]);
    let echo = bytes_per_idle_connection(&serve, "/", &[]);
    assert!(echo > 0.0 && echo < 4608.0, "{echo} bytes per idle echo connection");
    let serve = Serve::start(&[]);
    let realtime = bytes_per_idle_connection(&serve, "/ws", &["--protocol", "zapsocket.v1"]);
    eprintln!("bytes per idle connection: echo {echo:.0}, realtime session {realtime:.0}");
    assert!(realtime > 0.0 && realtime < 9216.0, "{realtime} bytes per idle realtime session");
}
