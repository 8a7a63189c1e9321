//! Malformed handshakes get the right HTTP status; the server keeps serving.

#![allow(clippy::unwrap_used)] // Test helpers: a failed step is a failed test.

mod common;

use std::time::Duration;

use zapsocket::proto::handshake::HandshakeLimits;
use zapsocket::{Client, HttpResponse, Message, Server};

use common::{RawPeer, echo_server, upgrade_request, url};

const KEY: &str = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";

async fn status_of(addr: std::net::SocketAddr, request: &str) -> String {
    let (_peer, head) = RawPeer::request(addr, request).await;
    head.lines().next().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn malformed_handshakes_get_their_status() {
    let addr = echo_server(Server::builder()).await;
    let base = "Host: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n";
    let cases = [
        (format!("POST / HTTP/1.1\r\n{base}{KEY}Sec-WebSocket-Version: 13\r\n\r\n"), "405"),
        (format!("GET / HTTP/1.1\r\n{base}{KEY}Sec-WebSocket-Version: 8\r\n\r\n"), "426"),
        (format!("GET / HTTP/1.1\r\n{base}{KEY}\r\n"), "426"),
        (
            format!(
                "GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\n{KEY}Sec-WebSocket-Version: 13\r\n\r\n"
            ),
            "426",
        ),
        (format!("GET / HTTP/1.1\r\n{base}Sec-WebSocket-Version: 13\r\n\r\n"), "400"),
        (
            format!("GET / HTTP/1.1\r\n{base}Sec-WebSocket-Key: short\r\nSec-WebSocket-Version: 13\r\n\r\n"),
            "400",
        ),
        (
            format!(
                "GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n{KEY}Sec-WebSocket-Version: 13\r\n\r\n"
            ),
            "400",
        ),
        (
            format!(
                "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n{KEY}Sec-WebSocket-Version: 13\r\n\r\n"
            ),
            "400",
        ),
        (format!("GET / HTTP/1.0\r\n{base}{KEY}Sec-WebSocket-Version: 13\r\n\r\n"), "400"),
        ("\x01\x02garbage\r\n\r\n".to_owned(), "400"),
        (format!("GET / HTTP/1.1\r\n{base}{KEY}{KEY}Sec-WebSocket-Version: 13\r\n\r\n"), "400"),
        // Bare LF line ends (as typed into `nc`) are accepted, not left to time out.
        (
            format!("GET / HTTP/1.1\r\n{base}{KEY}Sec-WebSocket-Version: 13\r\n\r\n").replace("\r\n", "\n"),
            "101",
        ),
    ];
    for (request, status) in cases {
        let line = status_of(addr, &request).await;
        assert!(line.starts_with(&format!("HTTP/1.1 {status}")), "{request:?} -> {line:?}");
    }
    // The version refusal says which version we speak.
    let (_p, head) =
        RawPeer::request(addr, &format!("GET / HTTP/1.1\r\n{base}{KEY}Sec-WebSocket-Version: 8\r\n\r\n"))
            .await;
    assert!(head.contains("Sec-WebSocket-Version: 13"), "{head}");
    // And the server still serves.
    let mut ws = Client::connect(&url(addr, "/")).await.unwrap();
    ws.send("still here").await.unwrap();
    assert_eq!(ws.recv().await.unwrap().unwrap(), Message::text("still here"));
}

#[tokio::test]
async fn oversized_heads_get_431() {
    let limits = HandshakeLimits::default().max_head_size(2048).max_headers(16);
    let addr = echo_server(Server::builder().handshake_limits(limits)).await;
    let long = format!("GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "a".repeat(4096));
    assert!(status_of(addr, &long).await.starts_with("HTTP/1.1 431"));
    let many: String = (0..40).map(|i| format!("X-H{i}: v\r\n")).collect();
    let many = format!("GET / HTTP/1.1\r\nHost: x\r\n{many}\r\n");
    assert!(status_of(addr, &many).await.starts_with("HTTP/1.1 431"));
}

#[tokio::test]
async fn a_slow_handshake_is_dropped_at_the_deadline() {
    let addr = echo_server(Server::builder().handshake_timeout(Duration::from_millis(300))).await;
    let (_peer, head) = RawPeer::request(addr, "GET / HTTP/1.1\r\nHost: x\r\n").await;
    assert!(head.starts_with("HTTP/1.1 408"), "{head}");
}

#[tokio::test]
async fn paths_plain_http_and_request_details() {
    let server = Server::builder()
        .path("/ws")
        .subprotocol("chat.v2")
        .http(|req| (req.path() == "/").then(|| HttpResponse::html("<h1>hi</h1>")))
        .bind()
        .await
        .unwrap();
    let addr = server.local_addr();
    tokio::spawn(server.serve(|ws| async move {
        let req = ws.request().unwrap();
        let summary = format!(
            "{} {} q={:?} c={:?} h={:?} ip={}",
            req.method(),
            req.path(),
            req.query_param("token"),
            req.cookie("session"),
            req.header("x-custom"),
            req.ip()
        );
        ws.send(summary).await.unwrap();
    }));
    assert!(status_of(addr, &upgrade_request("/other")).await.starts_with("HTTP/1.1 404"));
    let (mut peer, head) = RawPeer::request(addr, "GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(peer.read_to_end().await, b"<h1>hi</h1>");
    let mut ws = Client::builder()
        .header("Cookie", "a=1; session=abc")
        .header("X-Custom", "yes")
        .protocol("chat.v1")
        .protocol("chat.v2")
        .connect(&url(addr, "/ws?token=t%20k"))
        .await
        .unwrap();
    assert_eq!(ws.protocol(), Some("chat.v2"));
    let summary = ws.recv().await.unwrap().unwrap();
    assert_eq!(
        summary.as_text().unwrap(),
        "GET /ws q=Some(\"t k\") c=Some(\"abc\") h=Some(\"yes\") ip=127.0.0.1"
    );
}

#[tokio::test]
async fn the_client_reports_a_refused_handshake_with_its_status() {
    let server = Server::builder().path("/ws").bind().await.unwrap();
    let addr = server.local_addr();
    tokio::spawn(server.serve(|_ws| async {}));
    let err = Client::connect(&url(addr, "/nope")).await.unwrap_err();
    assert!(err.is_handshake());
    assert_eq!(err.status(), Some(404));
}

/// M5: a refusal's body reaches the client's error, bounded: up to its `Content-Length`
/// even when the server keeps the connection open (no wait for the end), at most
/// `MAX_REFUSAL_BODY` bytes of a long one.
#[tokio::test]
async fn the_client_keeps_the_start_of_a_refusals_body() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let long = "x".repeat(5000);
        let answers = [
            "HTTP/1.1 403 Forbidden\r\nContent-Length: 5\r\n\r\nnope!".to_owned(),
            format!("HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\n\r\n{long}"),
        ];
        let mut kept = Vec::new();
        for answer in answers {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf).await.unwrap();
            stream.write_all(answer.as_bytes()).await.unwrap();
            kept.push(stream); // Kept open: the client must not wait for the end.
        }
        tokio::time::sleep(Duration::from_secs(30)).await;
    });
    let started = std::time::Instant::now();
    let err = Client::connect(&url(addr, "/")).await.unwrap_err();
    assert_eq!((err.status(), err.body()), (Some(403), Some(&b"nope!"[..])));
    assert!(started.elapsed() < Duration::from_millis(900), "waited {:?}", started.elapsed());
    let err = Client::connect(&url(addr, "/")).await.unwrap_err();
    assert_eq!(err.status(), Some(503));
    assert_eq!(err.body().map(<[u8]>::len), Some(zapsocket::MAX_REFUSAL_BODY));
}
