//! Upgrades taken from another server, through real sockets: axum (JSON route and
//! WebSocket route on one port), hyper 1, and any stream (`handle_upgrade`).

#![allow(clippy::unwrap_used)] // Test helpers: a failed step is a failed test.

mod common;

use std::net::SocketAddr;

use axum::routing::get;
use axum::{Extension, Json, Router};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use zapsocket::axum::WebSocketUpgrade;
use zapsocket::{Accept, Client, HttpResponse, Server, Upgrader};

use common::{RawPeer, upgrade_request, url};

struct User(String);

async fn ws_route(ws: WebSocketUpgrade) -> axum::response::Response {
    ws.on_upgrade(|mut socket| async move {
        let user = socket.data::<User>().map_or("anonymous".to_owned(), |u| u.0.clone());
        let _ = socket.send(format!("hello {user}")).await;
        while let Some(Ok(msg)) = socket.recv().await {
            if msg.is_data() && socket.send(msg).await.is_err() {
                break;
            }
        }
    })
}

async fn axum_app(upgrader: Upgrader) -> SocketAddr {
    let app = Router::new()
        .route("/api/status", get(|| async { Json(serde_json_value()) }))
        .route("/ws", get(ws_route))
        .layer(Extension(upgrader));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await.unwrap();
    });
    addr
}

fn serde_json_value() -> std::collections::BTreeMap<&'static str, &'static str> {
    [("status", "ok")].into_iter().collect()
}

async fn http_get(addr: SocketAddr, path: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut out = String::new();
    stream.read_to_string(&mut out).await.unwrap();
    out
}

#[tokio::test]
async fn axum_serves_http_and_websocket_on_one_port() {
    let upgrader = Server::builder()
        .allowed_origin("https://app.example")
        .authorize(|request| async move {
            match request.query_param("access_token").as_deref() {
                Some("good") => Ok(Accept::new().data(User(request.ip().to_string()))),
                _ => Err(HttpResponse::text(401, "access_token required")
                    .with_header("WWW-Authenticate", "Bearer")),
            }
        })
        .build_upgrader();
    let addr = axum_app(upgrader.clone()).await;

    let json = http_get(addr, "/api/status").await;
    assert!(json.starts_with("HTTP/1.1 200"), "{json}");
    assert!(json.ends_with(r#"{"status":"ok"}"#), "{json}");

    let mut ws = Client::connect(&url(addr, "/ws?access_token=good")).await.unwrap();
    assert_eq!(ws.recv().await.unwrap().unwrap().as_text(), Some("hello 127.0.0.1"));
    ws.send("echo me").await.unwrap();
    assert_eq!(ws.recv().await.unwrap().unwrap().as_text(), Some("echo me"));
    assert_eq!(upgrader.clients().len(), 1);

    let err = Client::connect(&url(addr, "/ws?access_token=bad")).await.unwrap_err();
    assert_eq!(err.status(), Some(401));
    let (_p, head) = RawPeer::request(addr, upgrade_request("/ws")).await;
    assert!(head.to_ascii_lowercase().contains("\r\nwww-authenticate: bearer\r\n"), "{head}");
    let evil = upgrade_request("/ws?access_token=good")
        .replace("Host: localhost\r\n", "Host: x\r\nOrigin: https://evil.example\r\n");
    let (_p, head) = RawPeer::request(addr, evil).await;
    assert!(head.starts_with("HTTP/1.1 403"), "{head}");
    let plain = http_get(addr, "/ws").await;
    assert!(plain.starts_with("HTTP/1.1 4"), "a plain GET is not an upgrade: {plain}");
}

#[tokio::test]
async fn hyper_upgrade_serves_routes_and_websockets() {
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let upgrader = Server::builder().subprotocol("chat").build_upgrader();
    tokio::spawn(async move {
        loop {
            let (stream, peer) = listener.accept().await.unwrap();
            let upgrader = upgrader.clone();
            let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let upgrader = upgrader.clone();
                async move {
                    if req.uri().path() != "/ws" {
                        return Ok::<_, std::convert::Infallible>(hyper::Response::new(
                            "plain http".to_owned(),
                        ));
                    }
                    Ok(zapsocket::hyper::upgrade(&upgrader, req, peer, |mut ws| async move {
                        while let Some(Ok(msg)) = ws.recv().await {
                            if msg.is_data() && ws.send(msg).await.is_err() {
                                break;
                            }
                        }
                    })
                    .await)
                }
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .with_upgrades(),
            );
        }
    });
    assert!(http_get(addr, "/").await.ends_with("plain http"));
    let mut ws = Client::builder().protocol("chat").connect(&url(addr, "/ws")).await.unwrap();
    assert_eq!(ws.protocol(), Some("chat"));
    ws.send("via hyper").await.unwrap();
    assert_eq!(ws.recv().await.unwrap().unwrap().as_text(), Some("via hyper"));
}

#[tokio::test]
async fn handle_upgrade_takes_any_stream() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let upgrader = Server::builder().path("/ws").build_upgrader();
    tokio::spawn(async move {
        loop {
            let (stream, peer) = listener.accept().await.unwrap();
            let upgrader = upgrader.clone();
            tokio::spawn(async move {
                if let Ok(ws) = upgrader.handle_upgrade(stream, peer).await {
                    let _ = ws.send("upgraded by hand").await;
                }
            });
        }
    });
    let mut ws = Client::connect(&url(addr, "/ws")).await.unwrap();
    assert_eq!(ws.recv().await.unwrap().unwrap().as_text(), Some("upgraded by hand"));
    let (_p, head) = RawPeer::request(addr, upgrade_request("/elsewhere")).await;
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");
}

/// An HTTP/2 cleartext client (prior knowledge) that opens a WebSocket on `path` with
/// an extended CONNECT (RFC 8441); returns its first text message after the echo of
/// "over h2" was checked.
async fn websocket_over_h2c(addr: SocketAddr, path: &str) -> String {
    use bytes::{Buf, BufMut, Bytes, BytesMut};
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (send, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let mut send = send.ready().await.unwrap();
    for _ in 0..200 {
        if send.is_extended_connect_protocol_enabled() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(send.is_extended_connect_protocol_enabled(), "the server allows extended CONNECT");
    let mut request = http::Request::builder()
        .method(http::Method::CONNECT)
        .uri(format!("http://{addr}{path}"))
        .header("sec-websocket-version", "13")
        .body(())
        .unwrap();
    request.extensions_mut().insert(h2::ext::Protocol::from("websocket"));
    let (response, mut stream) = send.send_request(request, false).unwrap();
    let response = response.await.unwrap();
    assert_eq!(response.status(), 200, "RFC 8441: 200, not 101");
    assert!(response.headers().get("sec-websocket-accept").is_none());
    let mut body = response.into_body();
    let mut buffered = BytesMut::new();
    let mut next_text = async || loop {
        if buffered.len() >= 2 && buffered.len() >= 2 + usize::from(buffered[1]) {
            let len = usize::from(buffered[1]);
            buffered.advance(2);
            return String::from_utf8(buffered.split_to(len).to_vec()).unwrap();
        }
        let data = body.data().await.unwrap().unwrap();
        let _ = body.flow_control().release_capacity(data.len());
        buffered.extend_from_slice(&data);
    };
    let first = next_text().await;
    let mut frame = BytesMut::new();
    frame.put_slice(&[0x81, 0x80 | 7, 1, 2, 3, 4]);
    frame.extend(b"over h2".iter().enumerate().map(|(i, b)| b ^ [1, 2, 3, 4][i % 4]));
    stream.send_data(Bytes::from(frame), false).unwrap();
    assert_eq!(next_text().await, "over h2");
    first
}

/// axum served over HTTP/2 (cleartext, as `axum::serve` does): the extractor takes the
/// extended CONNECT (route with `any`, CONNECT is not GET) and the WebSocket runs on the
/// stream.
#[tokio::test]
async fn axum_takes_websockets_over_http2() {
    let app = Router::new().route("/ws", axum::routing::any(ws_route));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    assert_eq!(websocket_over_h2c(addr, "/ws").await, "hello anonymous");
}

/// hyper's HTTP/2 server with extended CONNECT on: `zapsocket::hyper::upgrade` answers
/// 200 and runs the WebSocket on the stream.
#[tokio::test]
async fn hyper_takes_websockets_over_http2() {
    use hyper::service::service_fn;
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let upgrader = Upgrader::default();
    tokio::spawn(async move {
        let (tcp, peer) = listener.accept().await.unwrap();
        let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
            let upgrader = upgrader.clone();
            async move {
                Ok::<_, std::convert::Infallible>(
                    zapsocket::hyper::upgrade(&upgrader, req, peer, |mut ws| async move {
                        let how = if ws.request().is_some_and(|r| r.is_http2()) { "h2" } else { "h1" };
                        let _ = ws.send(how).await;
                        while let Some(Ok(msg)) = ws.recv().await {
                            if msg.is_data() && ws.send(msg).await.is_err() {
                                break;
                            }
                        }
                    })
                    .await,
                )
            }
        });
        let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
        builder.enable_connect_protocol();
        let _ = builder.serve_connection(TokioIo::new(tcp), service).await;
    });
    assert_eq!(websocket_over_h2c(addr, "/").await, "h2");
}
