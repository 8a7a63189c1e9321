//! Interop with peers not written here: Node's `ws` and Python's `websockets`, as
//! clients of a zapsocket server and as servers for the zapsocket client.
//!
//! The peers live in `tests/interop/` and are installed by `scripts/setup.sh` (run by
//! `scripts/test.sh`). With `ZAPSOCKET_INTEROP=1` a missing peer fails the test; without
//! it, a test whose peer is not installed says so and passes.

#![allow(clippy::unwrap_used)] // Test helpers: a failed step is a failed test.

mod common;

use std::io::BufRead;
use std::time::Duration;

use bytes::Bytes;
use zapsocket::{Client, CloseCode, Message, Server, WebSocket};

use common::peers::{peer, run_client, start_server};

/// A zapsocket echo server that reports the close frames it sees.
async fn echo_server()
-> (std::net::SocketAddr, tokio::sync::mpsc::UnboundedReceiver<Option<zapsocket::CloseFrame>>) {
    let server = Server::builder().bind().await.unwrap();
    let addr = server.local_addr();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(server.serve(move |mut ws: WebSocket| {
        let tx = tx.clone();
        async move {
            while let Some(Ok(msg)) = ws.recv().await {
                if msg.is_data() && ws.send(msg).await.is_err() {
                    break;
                }
            }
            let _ = tx.send(ws.close_frame());
        }
    }));
    (addr, rx)
}

async fn foreign_client_against_our_server(kind: &str, script: &str) {
    let Some(peer) = peer(kind, script) else { return };
    let (addr, mut closes) = echo_server().await;
    run_client(peer, vec![format!("ws://{addr}/")]).await;
    let close = tokio::time::timeout(Duration::from_secs(5), closes.recv()).await.unwrap().unwrap().unwrap();
    assert_eq!((close.code, close.reason.as_str()), (CloseCode(4000), "bye"));
}

#[tokio::test]
async fn node_ws_client_talks_to_our_server() {
    foreign_client_against_our_server("node", "echo_client.mjs").await;
}

#[tokio::test]
async fn python_websockets_client_talks_to_our_server() {
    foreign_client_against_our_server("python", "echo_client.py").await;
}

/// The same echo on the reactor server (`zapsocket::reactor`), reporting each close.
struct ReactorEcho(tokio::sync::mpsc::UnboundedSender<(CloseCode, String)>);

impl zapsocket::reactor::Handler for ReactorEcho {
    type State = ();
    fn upgrade(&mut self, _request: &zapsocket::Request) -> Result<(), zapsocket::HttpResponse> {
        Ok(())
    }
    fn message(&mut self, ws: &mut zapsocket::reactor::Socket<'_, ()>, message: Message) {
        if message.is_data() {
            let _ = ws.send(message);
        }
    }
    fn close(&mut self, _state: (), code: CloseCode, reason: &str) {
        let _ = self.0.send((code, reason.to_owned()));
    }
}

async fn foreign_client_against_our_reactor(kind: &str, script: &str) {
    let Some(peer) = peer(kind, script) else { return };
    let (tx, mut closes) = tokio::sync::mpsc::unbounded_channel();
    let running = zapsocket::reactor::Reactor::builder()
        .port(0)
        .threads(1)
        .deflate(zapsocket::DeflateConfig::default())
        .start(|_| ReactorEcho(tx.clone()))
        .unwrap();
    run_client(peer, vec![format!("ws://{}/", running.local_addr())]).await;
    let (code, reason) = tokio::time::timeout(Duration::from_secs(5), closes.recv()).await.unwrap().unwrap();
    assert_eq!((code, reason.as_str()), (CloseCode(4000), "bye"));
}

#[tokio::test]
async fn node_ws_client_talks_to_our_reactor_server() {
    foreign_client_against_our_reactor("node", "echo_client.mjs").await;
}

#[tokio::test]
async fn python_websockets_client_talks_to_our_reactor_server() {
    foreign_client_against_our_reactor("python", "echo_client.py").await;
}

#[tokio::test]
async fn chromium_talks_to_our_reactor_server() {
    // The page is the reactor's answer to a plain GET (426): any loopback page will do.
    foreign_client_against_our_reactor("browser", "echo_client.mjs").await;
}

async fn our_client_against_foreign_server(kind: &str, script: &str) {
    let Some(peer) = peer(kind, script) else { return };
    let (_guard, port, stdout) = start_server(&peer);
    let url = format!("ws://127.0.0.1:{port}/");
    let mut ws = Client::connect(&url).await.unwrap();
    let binary: Vec<u8> = (0..65536u32).map(|i| (i * 31 + 7) as u8).collect();
    let text = "aé€𝄞".repeat(100_000);
    for msg in [
        Message::text("hello"),
        Message::binary(binary),
        Message::text(""),
        Message::text(text),
        Message::binary(Bytes::new()),
    ] {
        ws.send(msg.clone()).await.unwrap();
        let echo = tokio::time::timeout(Duration::from_secs(10), ws.recv()).await.unwrap().unwrap().unwrap();
        assert!(echo == msg, "{kind}: echo of a {} byte message differs", msg.len());
    }
    ws.ping("zap-ping").await.unwrap();
    loop {
        match ws.recv().await.unwrap().unwrap() {
            Message::Pong(p) => {
                assert_eq!(&p[..], b"zap-ping");
                break;
            }
            other => assert!(matches!(other, Message::Ping(_)), "unexpected {other:?}"),
        }
    }
    ws.close(CloseCode(4000), "bye").await.unwrap();
    assert_eq!(ws.close_frame().unwrap().code, CloseCode(4000), "{kind} echoed our close code");

    // The server logs the close it saw, as a JSON line.
    let seen = tokio::task::spawn_blocking(move || {
        let mut lines = stdout.lines();
        lines.find_map(|l| l.ok().filter(|l| l.contains("close")))
    })
    .await
    .unwrap()
    .expect("close line");
    assert!(seen.contains("4000") && seen.contains("bye"), "{seen}");

    // The server closes with its own code.
    let mut ws = Client::connect(&url).await.unwrap();
    ws.send("close-me").await.unwrap();
    while let Some(item) = tokio::time::timeout(Duration::from_secs(5), ws.recv()).await.unwrap() {
        item.unwrap();
    }
    let frame = ws.close_frame().unwrap();
    assert_eq!((frame.code, frame.reason.as_str()), (CloseCode(4001), "server bye"));
}

#[tokio::test]
async fn our_client_talks_to_a_node_ws_server() {
    our_client_against_foreign_server("node", "echo_server.mjs").await;
}

#[tokio::test]
async fn our_client_talks_to_a_python_websockets_server() {
    our_client_against_foreign_server("python", "echo_server.py").await;
}
