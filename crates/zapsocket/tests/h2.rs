//! WebSockets over HTTP/2 (RFC 8441), through real sockets: an HTTP/2 client (the h2
//! crate over rustls, ALPN `h2`) opens WebSockets with extended CONNECT on streams of one
//! connection, beside plain HTTP requests on the same connection; refusals and bad input
//! get their status or a stream error.

#![cfg(feature = "http2")]
#![allow(clippy::unwrap_used)] // Test helpers: a failed step is a failed test.

use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use rcgen::{CertificateParams, KeyPair};
use zapsocket::rustls::{self, pki_types::CertificateDer, pki_types::ServerName, pki_types::pem::PemObject};
use zapsocket::{HttpResponse, Identity, Server, ServerBuilder, WebSocket};

/// A server with a self-signed certificate for localhost; returns its port and the
/// certificate (PEM) to trust.
async fn server(builder: ServerBuilder) -> (u16, String) {
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["localhost".into()]).unwrap().self_signed(&key).unwrap();
    let identity = Identity::from_pem(cert.pem().as_bytes(), key.serialize_pem().as_bytes()).unwrap();
    let server = builder
        .tls(identity)
        .subprotocol("chat")
        .http(|request| (request.path() == "/hello").then(|| HttpResponse::text(200, "hello over h2")))
        .bind()
        .await
        .unwrap();
    let port = server.local_addr().port();
    tokio::spawn(server.serve(|mut ws: WebSocket| async move {
        let how = if ws.request().is_some_and(|r| r.is_http2()) { "h2" } else { "h1" };
        let _ = ws.send(how).await;
        while let Some(Ok(msg)) = ws.recv().await {
            if msg.is_data() && ws.send(msg).await.is_err() {
                break;
            }
        }
    }));
    (port, cert.pem())
}

/// An HTTP/2 connection to the server (ALPN h2), ready, with extended CONNECT allowed.
async fn h2_client(port: u16, cert: &str) -> h2::client::SendRequest<Bytes> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(cert.as_bytes()).unwrap()).unwrap();
    let mut config =
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp).await.unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]), "the server chose HTTP/2");
    let (send, connection) = h2::client::handshake(tls).await.unwrap();
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let send = send.ready().await.unwrap();
    // The server's SETTINGS arrive on the connection's task.
    for _ in 0..200 {
        if send.is_extended_connect_protocol_enabled() {
            return send;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("no SETTINGS_ENABLE_CONNECT_PROTOCOL = 1 from the server");
}

/// An extended CONNECT for a WebSocket on `path`.
fn connect_request(port: u16, path: &str, protocol: Option<&str>) -> http::Request<()> {
    let mut request = http::Request::builder()
        .method(http::Method::CONNECT)
        .uri(format!("https://localhost:{port}{path}"))
        .header("sec-websocket-version", "13")
        .header("sec-websocket-protocol", "chat")
        .body(())
        .unwrap();
    if let Some(protocol) = protocol {
        request.extensions_mut().insert(h2::ext::Protocol::from(protocol));
    }
    request
}

/// A masked client text frame (RFC 6455 §5.2).
fn client_text(text: &str) -> Bytes {
    let mask = [0x12u8, 0x34, 0x56, 0x78];
    let mut frame = BytesMut::new();
    frame.put_u8(0x81);
    assert!(text.len() < 126);
    frame.put_u8(0x80 | text.len() as u8);
    frame.put_slice(&mask);
    frame.extend(text.bytes().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame.freeze()
}

/// Reads one short unmasked server text frame from the stream.
async fn server_text(body: &mut h2::RecvStream, buffered: &mut BytesMut) -> String {
    loop {
        if buffered.len() >= 2 && buffered.len() >= 2 + usize::from(buffered[1] & 0x7f) {
            assert_eq!(buffered[0], 0x81, "a final text frame");
            let len = usize::from(buffered[1]);
            assert!(len < 126, "unmasked and short");
            buffered.advance(2);
            let text = buffered.split_to(len);
            return String::from_utf8(text.to_vec()).unwrap();
        }
        let data = body.data().await.expect("the stream is open").unwrap();
        let _ = body.flow_control().release_capacity(data.len());
        buffered.extend_from_slice(&data);
    }
}

#[tokio::test]
async fn websockets_and_http_share_one_http2_connection() {
    let (port, cert) = server(Server::builder()).await;
    let mut send = h2_client(port, &cert).await;
    let mut sockets = Vec::new();
    for _ in 0..3 {
        let (response, stream) =
            send.send_request(connect_request(port, "/echo", Some("websocket")), false).unwrap();
        let response = response.await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["sec-websocket-protocol"], "chat");
        sockets.push((stream, response.into_body(), BytesMut::new()));
    }
    // A page on the same connection, meanwhile.
    let get = http::Request::builder().uri(format!("https://localhost:{port}/hello")).body(()).unwrap();
    let (page, _) = send.send_request(get, true).unwrap();
    let mut page = page.await.unwrap();
    assert_eq!(page.status(), 200);
    let body = page.body_mut().data().await.unwrap().unwrap();
    assert_eq!(&body[..], b"hello over h2");

    for (i, (stream, body, buffered)) in sockets.iter_mut().enumerate() {
        assert_eq!(server_text(body, buffered).await, "h2", "Request::is_http2");
        stream.send_data(client_text(&format!("over stream {i}")), false).unwrap();
        assert_eq!(server_text(body, buffered).await, format!("over stream {i}"));
    }
}

#[tokio::test]
async fn refusals_keep_their_status_and_bad_connects_get_a_stream_error() {
    let (port, cert) = server(Server::builder().path("/echo").allowed_origin("https://good.example")).await;
    let mut send = h2_client(port, &cert).await;
    let mut status = |request| {
        let (response, stream) = send.send_request(request, false).unwrap();
        async move {
            let status = response.await.map(|r| r.status().as_u16());
            drop(stream);
            status
        }
    };
    assert_eq!(status(connect_request(port, "/elsewhere", Some("websocket"))).await.unwrap(), 404);
    let mut foreign = connect_request(port, "/echo", Some("websocket"));
    foreign.headers_mut().insert("origin", "https://evil.example".parse().unwrap());
    assert_eq!(status(foreign).await.unwrap(), 403);
    let mut no_version = connect_request(port, "/echo", Some("websocket"));
    no_version.headers_mut().remove("sec-websocket-version");
    assert!(matches!(status(no_version).await.unwrap(), 400 | 426));
    // CONNECT with another protocol: a stream error, and the connection goes on.
    let error = status(connect_request(port, "/echo", Some("webtransport"))).await.unwrap_err();
    assert_eq!(error.reason(), Some(h2::Reason::PROTOCOL_ERROR), "{error}");
    let ok = connect_request(port, "/echo", Some("websocket"));
    assert_eq!(status(ok).await.unwrap(), 200, "the connection still serves");
}

#[tokio::test]
async fn http2_streams_count_against_the_connection_caps() {
    let (port, cert) = server(Server::builder().max_connections(1)).await;
    let mut send = h2_client(port, &cert).await;
    let (first, _held) = send.send_request(connect_request(port, "/", Some("websocket")), false).unwrap();
    let first = first.await.unwrap();
    assert_eq!(first.status(), 200);
    let (second, _stream) = send.send_request(connect_request(port, "/", Some("websocket")), false).unwrap();
    assert_eq!(second.await.unwrap().status(), 503, "one WebSocket at a time, whatever the transport");
}

/// An HTTP/1.1 client still gets HTTP/1.1 from the same server (ALPN http/1.1).
#[tokio::test]
async fn http1_clients_are_served_as_before() {
    let (port, cert) = server(Server::builder()).await;
    let mut ws = zapsocket::Client::builder()
        .add_root_certificate(zapsocket::Certificate::from_pem(cert.as_bytes()).unwrap())
        .connect(&format!("wss://localhost:{port}/"))
        .await
        .unwrap();
    assert_eq!(ws.recv().await.unwrap().unwrap().as_text(), Some("h1"));
}

/// Hostile HTTP/2 input ends that connection, never the server: a CONTINUATION flood (a
/// header block that never ends, far past the header list limit), and a stream opened
/// past the concurrent-stream limit; a new connection is served after both.
#[tokio::test]
async fn a_continuation_flood_and_too_many_streams_end_the_connection_not_the_server() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (port, cert) = server(Server::builder()).await;
    let raw = async || {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(CertificateDer::from_pem_slice(cert.as_bytes()).unwrap()).unwrap();
        let mut config =
            rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth();
        config.alpn_protocols = vec![b"h2".to_vec()];
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp).await.unwrap();
        tls.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0").await.unwrap(); // preface, SETTINGS
        tls
    };
    let frame = |kind: u8, flags: u8, stream: u32, payload: &[u8]| {
        let mut out = (payload.len() as u32).to_be_bytes()[1..].to_vec();
        out.extend_from_slice(&[kind, flags]);
        out.extend_from_slice(&stream.to_be_bytes());
        out.extend_from_slice(payload);
        out
    };
    // Reads until the server closes; true if it did within 10 s (a GOAWAY, then EOF).
    let closed = async |tls: &mut tokio_rustls::client::TlsStream<tokio::net::TcpStream>| {
        let mut buf = vec![0u8; 65536];
        tokio::time::timeout(std::time::Duration::from_secs(10), async {
            loop {
                match tls.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await
        .is_ok()
    };

    let mut flood = raw().await;
    // HEADERS without END_HEADERS, then CONTINUATION frames of literal headers, never ended.
    let mut burst = frame(1, 0, 1, &[0x00, 0x01, b'a', 0x01, b'b']);
    for _ in 0..4000 {
        burst.extend(frame(9, 0, 1, &[0x00, 0x01, b'x', 0x01, b'y']));
    }
    let _ = flood.write_all(&burst).await;
    assert!(closed(&mut flood).await, "the flood's connection was closed");

    let mut streams = raw().await;
    // Streams past the limit: HEADERS (GET /hello) on 300 streams without reading.
    let get = [0x82u8, 0x87, 0x84, 0x41, 0x09, b'l', b'o', b'c', b'a', b'l', b'h', b'o', b's', b't'];
    let mut burst = Vec::new();
    for i in 0..300u32 {
        burst.extend(frame(1, 0x04, 2 * i + 1, &get)); // END_HEADERS, no END_STREAM
    }
    let _ = streams.write_all(&burst).await;
    // The server refuses the streams past its limit: RST_STREAM (REFUSED_STREAM, or
    // PROTOCOL_ERROR) or a GOAWAY, read as frames.
    let mut read = Vec::new();
    let mut buf = vec![0u8; 65536];
    let refused = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        loop {
            let n = streams.read(&mut buf).await.unwrap_or(0);
            if n == 0 {
                return false;
            }
            read.extend_from_slice(&buf[..n]);
            let mut at = 0;
            while at + 9 <= read.len() {
                let len =
                    usize::from(read[at]) << 16 | usize::from(read[at + 1]) << 8 | usize::from(read[at + 2]);
                let kind = read[at + 3];
                if at + 9 + len > read.len() {
                    break;
                }
                if kind == 3 || kind == 7 {
                    return true;
                }
                at += 9 + len;
            }
        }
    })
    .await;
    assert_eq!(refused, Ok(true), "a RST_STREAM or GOAWAY for the streams past the limit");
    drop(streams);

    let mut send = h2_client(port, &cert).await;
    let (response, _stream) =
        send.send_request(connect_request(port, "/echo", Some("websocket")), false).unwrap();
    assert_eq!(response.await.unwrap().status(), 200, "the server serves on");
}
