//! zapsocket on a tokio runtime built without tokio's timer (`enable_io()` alone, as `zap
//! serve` runs): every deadline still fires, through `zapsocket::time`.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{RawPeer, echo_server, url};
use zapsocket::{Client, CloseCode, Message, Server, WebSocket, WebSocketConfig};

fn io_only<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_io().build().unwrap().block_on(f)
}

#[test]
fn the_handshake_deadline_fires() {
    io_only(async {
        let addr = echo_server(Server::builder().handshake_timeout(Duration::from_millis(200))).await;
        let (_peer, head) = RawPeer::request(addr, "GET / HTTP/1.1\r\nHost: x\r\n").await;
        assert!(head.starts_with("HTTP/1.1 408"), "{head}");
    });
}

#[test]
fn the_close_timeout_ends_a_peer_that_never_answers_the_close() {
    io_only(async {
        let server = Server::builder()
            .config(WebSocketConfig::default().close_timeout(Duration::from_millis(200)))
            .bind()
            .await
            .unwrap();
        let addr = server.local_addr();
        tokio::spawn(server.serve(|ws: WebSocket| async move {
            let _ = ws.close(CloseCode::NORMAL, "bye").await;
            ws.closed().await;
        }));
        let mut peer = RawPeer::connect(addr, "/").await;
        let start = Instant::now();
        // The close frame, then nothing from us: the server gives up after its timeout.
        let rest = peer.read_to_end().await;
        assert_eq!(rest.first(), Some(&0x88), "a close frame first");
        // `read_to_end` gives up after 5 s: an end before that is the server's.
        let waited = start.elapsed();
        assert!(waited >= Duration::from_millis(150) && waited < Duration::from_secs(4), "{waited:?}");
    });
}

#[test]
fn a_client_keepalive_pings_and_connect_times_out() {
    io_only(async {
        let addr = echo_server(Server::builder()).await;
        let config = WebSocketConfig::default().heartbeat(Duration::from_millis(50), Duration::from_secs(5));
        let mut ws = Client::builder().config(config).connect(&url(addr, "/")).await.unwrap();
        let pong = zapsocket::time::timeout(Duration::from_secs(5), ws.recv()).await;
        assert!(matches!(pong, Ok(Some(Ok(Message::Pong(_))))), "{pong:?}");

        // A listener that never completes the handshake.
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let silent_url = url(silent.local_addr().unwrap(), "/");
        let start = Instant::now();
        let result = Client::builder().connect_timeout(Duration::from_millis(200)).connect(&silent_url).await;
        assert!(result.unwrap_err().to_string().contains("connect"), "timed out in connect");
        assert!(start.elapsed() < Duration::from_secs(5));
    });
}
