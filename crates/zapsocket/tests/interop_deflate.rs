//! permessage-deflate with peers not written here, checked on the wire.
//!
//! Node `ws`, Python `websockets` and headless Chromium talk to `zap serve --deflate`
//! through a wire tap (tests/tap) that parses every frame itself: the tests assert that
//! the extension was agreed, that the server's replies carried RSV1 (compressed) and were
//! much smaller than the messages, and that the peers compressed too. The zapsocket client
//! talks to Node `ws` and Python `websockets` servers the same way.
//!
//! `zap serve` is the binary next to this test (built by `cargo test --workspace`) or
//! `$ZAPSOCKET_ZAP`; without it an in-process server with the same settings stands in (and
//! says so). Peers come from scripts/setup.sh; with `ZAPSOCKET_INTEROP=1` a missing peer
//! fails the test, without it the test says so and passes.

#![allow(clippy::unwrap_used)] // Test helpers: a failed step is a failed test.

mod common;
mod tap;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::peers::{Guard, peer, run_client, start_server};
use tap::{TapFrame, WireTap};
use zapsocket::{Client, CloseCode, DeflateConfig, HttpResponse, Message, Server, WebSocket};

/// A deflate-enabled echo server: `zap serve --deflate`, else an in-process stand-in.
struct DeflateServer {
    addr: SocketAddr,
    /// The echo path.
    path: &'static str,
    _child: Option<Guard>,
}

fn zap_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("ZAPSOCKET_ZAP") {
        return Some(PathBuf::from(path));
    }
    // target/debug/deps/THIS_TEST -> target/debug/zap
    let exe = std::env::current_exe().ok()?;
    Some(exe.parent()?.parent()?.join("zap")).filter(|p| p.exists())
}

async fn deflate_server() -> DeflateServer {
    if let Some(zap) = zap_binary() {
        let mut child = Command::new(&zap)
            .args(["serve", "--port", "0", "--deflate", "--ping-interval", "0"])
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn zap serve");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some((_, addr)) = line.split_once("listening on ws://") {
                    let _ = tx.send(addr.trim().to_owned());
                }
            }
        });
        let addr = rx.recv_timeout(Duration::from_secs(10)).expect("zap serve printed its address");
        return DeflateServer { addr: addr.parse().unwrap(), path: "/echo", _child: Some(Guard(child)) };
    }
    eprintln!("note: no zap binary next to the test; an in-process deflate server stands in");
    let server = Server::builder()
        .deflate(DeflateConfig::default())
        .http(|_| Some(HttpResponse::html("<!doctype html><title>interop</title>")))
        .bind()
        .await
        .unwrap();
    let addr = server.local_addr();
    tokio::spawn(server.serve(|mut ws: WebSocket| async move {
        while let Some(Ok(msg)) = ws.recv().await {
            if msg.is_data() && ws.send(msg).await.is_err() {
                break;
            }
        }
    }));
    DeflateServer { addr, path: "/echo", _child: None }
}

/// Runs a foreign client script to completion; returns its JSON summary line.
/// The frames with RSV1 among `frames`, and a check that they are compressed for real:
/// each well under `max_len` bytes on the wire.
fn compressed(frames: &[TapFrame], max_len: u64) -> usize {
    let rsv1: Vec<&TapFrame> = frames.iter().filter(|f| f.rsv1).collect();
    for f in &rsv1 {
        assert!(f.len < max_len, "a compressed frame of {} bytes: {frames:?}", f.len);
    }
    rsv1.len()
}

/// A foreign client against `zap serve --deflate`: the big echoes come back compressed.
async fn foreign_client_through_zap_serve(kind: &str, script: &str, big_messages: usize) {
    let Some(peer) = peer(kind, script) else { return };
    let server = deflate_server().await;
    let tap = WireTap::start(server.addr).await;
    let mut args = vec![format!("ws://{}{}", tap.addr(), server.path)];
    if kind == "browser" {
        // The page comes straight from the server (see echo_client.mjs), not through the tap.
        args.push(format!("http://{}/interop-page", server.addr));
    }
    let summary = run_client(peer, args).await;
    assert!(summary.contains("permessage-deflate"), "{kind} did not agree to compress: {summary}");
    let answer = &tap.server_heads()[0];
    assert!(answer.contains("Sec-WebSocket-Extensions: permessage-deflate"), "{answer}");
    let from_server = tap.server_data_frames();
    assert_eq!(compressed(&from_server, 16 * 1024), big_messages, "server frames {from_server:?}");
    assert!(from_server.iter().any(|f| !f.rsv1 && f.len == 5), "'hello' goes uncompressed: {from_server:?}");
    let from_client = tap.client_data_frames();
    assert!(compressed(&from_client, 16 * 1024) >= big_messages, "{kind} did not compress: {from_client:?}");
}

#[tokio::test]
async fn node_ws_client_talks_compressed_to_zap_serve() {
    // 64 KiB binary and 1 MiB text are compressed; "hello" and "" are under the threshold.
    foreign_client_through_zap_serve("node", "echo_client.mjs", 2).await;
}

#[tokio::test]
async fn python_websockets_client_talks_compressed_to_zap_serve() {
    foreign_client_through_zap_serve("python", "echo_client.py", 2).await;
}

#[tokio::test]
async fn chromium_talks_compressed_to_zap_serve() {
    // 64 KiB of JSON text, 64 KiB binary, 100 KiB of UTF-8 text.
    foreign_client_through_zap_serve("browser", "echo_client.mjs", 3).await;
}

async fn our_client_against_foreign_deflate_server(kind: &str, script: &str) {
    let Some(peer) = peer(kind, script) else { return };
    let (_guard, port, stdout) = start_server(&peer);
    // Keep draining what the server logs.
    std::thread::spawn(move || for _ in stdout.lines().map_while(Result::ok) {});
    let tap = WireTap::start(SocketAddr::from(([127, 0, 0, 1], port))).await;
    let mut ws = Client::connect(&format!("ws://{}/", tap.addr())).await.unwrap();
    let params = ws.deflate().unwrap_or_else(|| panic!("{kind} server did not agree to compress"));
    eprintln!("{kind}: agreed {}", params.to_header());
    let json = r#"{"user":"ada","room":"lobby","text":"hello there"},"#.repeat(2000);
    let messages = [
        Message::text("small"),
        Message::text(json.clone()),
        Message::binary(json.clone().into_bytes()),
        Message::text(json.clone()),
    ];
    for message in messages {
        ws.send(message.clone()).await.unwrap();
        let echo = tokio::time::timeout(Duration::from_secs(10), ws.recv()).await.unwrap().unwrap().unwrap();
        assert!(echo == message, "{kind}: the echo of a {} byte message differs", message.len());
    }
    ws.close(CloseCode(4000), "bye").await.unwrap();
    assert_eq!(compressed(&tap.client_data_frames(), 8 * 1024), 3, "{:?}", tap.client_data_frames());
    // The peers compress what they echo (ws above its 1 KiB threshold, websockets always).
    assert!(compressed(&tap.server_data_frames(), 8 * 1024) >= 3, "{:?}", tap.server_data_frames());
}

#[tokio::test]
async fn our_client_talks_compressed_to_a_node_ws_server() {
    our_client_against_foreign_deflate_server("node", "echo_server.mjs").await;
}

#[tokio::test]
async fn our_client_talks_compressed_to_a_python_websockets_server() {
    our_client_against_foreign_deflate_server("python", "echo_server.py").await;
}
