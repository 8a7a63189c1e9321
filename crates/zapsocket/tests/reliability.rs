//! Rows of the reliability checklist (docs/RELIABILITY.md) through real sockets: slow and
//! stuck handshakes, handshake decisions, a peer that vanishes, backpressure, a handler
//! that panics, shutdown of a peer that never answers, redirects.

#![allow(clippy::unwrap_used)] // Test helpers: a failed step is a failed test.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use zapsocket::{Accept, Client, HttpResponse, Identity, Message, Server, WebSocket, WebSocketConfig};

use common::{RawPeer, echo_server, upgrade_request, url};

/// Everything the server sends until it ends the connection, and how long that took;
/// gives up (and says so with `None`) after `limit`.
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> (Vec<u8>, Option<Duration>) {
    let started = Instant::now();
    let mut out = Vec::new();
    let ended = zapsocket::time::timeout(limit, stream.read_to_end(&mut out)).await.is_ok();
    (out, ended.then(|| started.elapsed()))
}

/// A1: a client that connects and sends nothing gets 408 at the handshake deadline, and
/// the server ends the connection.
#[tokio::test]
async fn a_silent_connection_gets_408_and_is_closed_at_the_handshake_deadline() {
    let addr = echo_server(Server::builder().handshake_timeout(Duration::from_millis(300))).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let (bytes, ended) = read_until_closed(&mut stream, Duration::from_secs(5)).await;
    let took = ended.expect("the server ended the connection");
    assert!(String::from_utf8_lossy(&bytes).starts_with("HTTP/1.1 408 "), "{bytes:?}");
    assert!(took >= Duration::from_millis(250) && took < Duration::from_secs(3), "{took:?}");
}

/// A2: the deadline covers the whole head: a client trickling one byte every 20 ms (each
/// a sign of life) is still answered 408 and dropped at the deadline.
#[tokio::test]
async fn a_head_trickled_byte_by_byte_still_meets_the_deadline() {
    let addr = echo_server(Server::builder().handshake_timeout(Duration::from_millis(500))).await;
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let trickle = tokio::spawn(async move {
        let head = format!("GET / HTTP/1.1\r\nHost: x\r\nX-Slow: {}", "a".repeat(10_000));
        for byte in head.bytes() {
            if writer.write_all(&[byte]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    let started = Instant::now();
    let mut bytes = Vec::new();
    let _ = zapsocket::time::timeout(Duration::from_secs(5), reader.read_to_end(&mut bytes)).await;
    let took = started.elapsed();
    trickle.abort();
    assert!(String::from_utf8_lossy(&bytes).starts_with("HTTP/1.1 408 "), "{bytes:?}");
    assert!(took < Duration::from_secs(2), "dropped after {took:?}");
}

/// A3: a TLS ClientHello that never completes: the TCP connection is dropped at the
/// handshake deadline (the TLS handshake counts toward it).
#[tokio::test]
async fn a_tls_handshake_that_never_completes_is_dropped_at_the_deadline() {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap().self_signed(&key).unwrap();
    let identity = Identity::from_pem(cert.pem().as_bytes(), key.serialize_pem().as_bytes()).unwrap();
    let addr =
        echo_server(Server::builder().tls(identity).handshake_timeout(Duration::from_millis(300))).await;
    // Nothing at all, then the first bytes of a TLS record that never ends.
    for sent in [&b""[..], &[0x16, 0x03, 0x01, 0x02, 0x00, 0x01][..]] {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(sent).await.unwrap();
        let (_, ended) = read_until_closed(&mut stream, Duration::from_secs(5)).await;
        let took = ended.expect("the server dropped the connection");
        assert!(took >= Duration::from_millis(250) && took < Duration::from_secs(3), "{took:?}");
    }
}

/// B15: an `authorize` hook that never answers (a slow or dead auth backend) cannot hold
/// the handshake: past the handshake deadline the client gets 503.
#[tokio::test]
async fn a_slow_authorize_hook_gets_503_at_the_handshake_deadline() {
    let builder = Server::builder().handshake_timeout(Duration::from_millis(400)).authorize(|_| async {
        tokio::time::sleep(Duration::from_secs(60)).await;
        Ok::<_, HttpResponse>(Accept::new())
    });
    let addr = echo_server(builder).await;
    let started = Instant::now();
    let (mut peer, head) = RawPeer::request(addr, upgrade_request("/")).await;
    assert!(head.starts_with("HTTP/1.1 503 "), "{head}");
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
    let body = String::from_utf8(peer.read_to_end().await).unwrap();
    assert!(body.contains("not decided in time"), "{body}");
}

/// B21: a server answers only with a subprotocol the client offered: none of its own
/// offered gives a 101 without `Sec-WebSocket-Protocol`, and a selector that returns a
/// name the client did not offer is ignored.
#[tokio::test]
async fn a_subprotocol_the_client_did_not_offer_is_never_answered() {
    let offering = |names: &str| {
        upgrade_request("/").replace("\r\n\r\n", &format!("\r\nSec-WebSocket-Protocol: {names}\r\n\r\n"))
    };
    let listed = echo_server(Server::builder().subprotocol("chat.v2")).await;
    let picky = echo_server(Server::builder().select_subprotocol(|_, _| Some("evil".to_owned()))).await;
    for addr in [listed, picky] {
        let (_peer, head) = RawPeer::request(addr, offering("chat.v1, other")).await;
        assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
        assert!(!head.to_ascii_lowercase().contains("sec-websocket-protocol"), "{head}");
        let ws = Client::builder().protocol("chat.v1").connect(&url(addr, "/")).await.unwrap();
        assert_eq!(ws.protocol(), None);
    }
}

/// A server whose handler reports `recv()` results and the close frame it saw at the end.
async fn recording_server(
    builder: zapsocket::ServerBuilder,
) -> (SocketAddr, zapsocket::Clients, tokio::sync::mpsc::UnboundedReceiver<Report>) {
    let server = builder.bind().await.unwrap();
    let addr = server.local_addr();
    let clients = server.clients();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(server.serve(move |mut ws: WebSocket| {
        let tx = tx.clone();
        async move {
            let mut results = Vec::new();
            while let Some(result) = ws.recv().await {
                results.push(result.map_err(|e| e.protocol_error().cloned()));
            }
            let _ = tx.send(Report { results, close: ws.close_frame() });
        }
    }));
    (addr, clients, rx)
}

#[derive(Debug)]
struct Report {
    results: Vec<Result<Message, Option<zapsocket::proto::Error>>>,
    close: Option<zapsocket::CloseFrame>,
}

/// F6: a peer that drops TCP without a close frame: the handler gets one error (a reset,
/// which has no close code: nothing goes on the wire), then the end; no close frame was
/// received, which the realtime client and docs/PROTOCOL.md read as 1006; the connection
/// leaves the server's clients.
#[tokio::test]
async fn a_peer_that_drops_tcp_is_a_reset_for_the_handler_and_leaves_the_clients() {
    let (addr, clients, mut reports) = recording_server(Server::builder().no_heartbeat()).await;
    let mut peer = RawPeer::connect(addr, "/").await;
    peer.send_frame(0x81, b"last words").await;
    for _ in 0..500 {
        if clients.len() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(clients.len(), 1);
    drop(peer);
    let report = tokio::time::timeout(Duration::from_secs(5), reports.recv())
        .await
        .expect("the handler saw the end")
        .unwrap();
    assert_eq!(
        report.results,
        [Ok(Message::text("last words")), Err(Some(zapsocket::proto::Error::ConnectionReset))]
    );
    assert_eq!(report.close.as_ref().map_or(1006, |f| f.code.0), 1006, "{:?}", report.close);
    for _ in 0..100 {
        if clients.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(clients.is_empty(), "the connection left the server's clients");
}

/// What the handler of the backpressure test reports.
#[derive(Debug, PartialEq)]
enum Step {
    /// `try_send` refused: whether it said the queue was full, and the most ever queued.
    Full {
        queue_full: bool,
        most: usize,
    },
    Sent,
    Drained,
}

/// I2 and G4: a peer that never reads. `try_send` reports the full send queue instead of
/// growing it, `send()` waits (its memory stays bounded by the limit plus one message),
/// and once the peer reads, the waiting send completes and `buffered_amount` drains to 0.
#[tokio::test]
async fn a_full_send_queue_makes_send_wait_and_try_send_fail_until_the_peer_reads() {
    const LIMIT: usize = 64 * 1024;
    const MESSAGE: usize = 16 * 1024;
    let config = WebSocketConfig::default().max_send_queue(LIMIT);
    let server = Server::builder().config(config).no_heartbeat().bind().await.unwrap();
    let addr = server.local_addr();
    let (tx, mut steps) = tokio::sync::mpsc::unbounded_channel::<Step>();
    tokio::spawn(server.serve(move |ws: WebSocket| {
        let tx = tx.clone();
        async move {
            let payload = Bytes::from(vec![b'x'; MESSAGE]);
            let mut most = 0;
            let queue_full = loop {
                match ws.try_send(payload.clone()) {
                    Ok(()) => most = most.max(ws.buffered_amount()),
                    Err(e) => break e.is_queue_full(),
                }
                tokio::task::yield_now().await;
            };
            let _ = tx.send(Step::Full { queue_full, most });
            if ws.send(payload.clone()).await.is_ok() {
                let _ = tx.send(Step::Sent);
            }
            while ws.buffered_amount() > 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let _ = tx.send(Step::Drained);
            ws.closed().await;
        }
    }));
    let mut peer = RawPeer::connect(addr, "/").await;
    let next = async |steps: &mut tokio::sync::mpsc::UnboundedReceiver<Step>| {
        tokio::time::timeout(Duration::from_secs(20), steps.recv()).await.unwrap().unwrap()
    };
    match next(&mut steps).await {
        Step::Full { queue_full, most } => {
            assert!(queue_full, "try_send failed for another reason");
            assert!(most <= LIMIT + MESSAGE + 14, "queued {most} bytes");
        }
        other => panic!("{other:?}"),
    }
    // The peer still does not read: the waiting send does not complete.
    assert!(
        tokio::time::timeout(Duration::from_millis(500), steps.recv()).await.is_err(),
        "send did not wait"
    );
    // The peer reads everything: the send completes and the queue drains.
    let reader = tokio::spawn(async move {
        let mut buf = vec![0u8; 1 << 16];
        while let Ok(1..) = peer.stream.read(&mut buf).await {}
    });
    assert_eq!(next(&mut steps).await, Step::Sent);
    assert_eq!(next(&mut steps).await, Step::Drained);
    reader.abort();
}

/// I5: a large message sent as fragments holds one fragment at a time on the sending
/// side: each `send_fragment` resolves once its bytes are written, and the receiver gets
/// one message.
#[tokio::test]
async fn a_large_message_sent_in_fragments_holds_one_fragment_at_a_time() {
    const FRAGMENT: usize = 256 * 1024;
    const FRAGMENTS: usize = 96; // 24 MiB
    let server = Server::builder().no_heartbeat().bind().await.unwrap();
    let addr = server.local_addr();
    let (tx, mut lengths) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(server.serve(move |mut ws: WebSocket| {
        let tx = tx.clone();
        async move {
            while let Some(Ok(msg)) = ws.recv().await {
                if msg.is_data() {
                    let _ = tx.send(msg.len());
                }
            }
        }
    }));
    let ws = Client::builder().deflate(None).connect(&url(addr, "/")).await.unwrap();
    let chunk = Bytes::from(vec![b'z'; FRAGMENT]);
    let mut most = 0;
    for i in 0..FRAGMENTS {
        ws.send_fragment(Message::Binary(chunk.clone()), i + 1 == FRAGMENTS).await.unwrap();
        most = most.max(ws.buffered_amount());
    }
    assert_eq!(most, 0, "each fragment was written before the next was made");
    let got = tokio::time::timeout(Duration::from_secs(30), lengths.recv()).await.unwrap().unwrap();
    assert_eq!(got, FRAGMENT * FRAGMENTS);
}

/// J9, what holds today: a handler that panics does not take the server or the other
/// connections down.
#[tokio::test]
async fn a_handler_that_panics_leaves_the_server_and_other_connections_serving() {
    let addr = panicking_server().await;
    let mut healthy = Client::connect(&url(addr, "/")).await.unwrap();
    let doomed = Client::connect(&url(addr, "/")).await.unwrap();
    doomed.send("panic").await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    healthy.send("still there?").await.unwrap();
    let echo = tokio::time::timeout(Duration::from_secs(5), healthy.recv()).await.unwrap().unwrap().unwrap();
    assert_eq!(echo, Message::text("still there?"));
    let mut late = Client::connect(&url(addr, "/")).await.unwrap();
    late.send("new").await.unwrap();
    assert_eq!(late.recv().await.unwrap().unwrap(), Message::text("new"));
}

/// J9 (a defect, fixed): the connection whose handler panicked must end (ws and socket.io close it;
/// the checklist asks for 1011), and leave the server's clients.
#[tokio::test]
async fn a_handler_that_panics_closes_its_connection_with_1011() {
    let server = panicking_builder().bind().await.unwrap();
    let addr = server.local_addr();
    let clients = server.clients();
    tokio::spawn(server.serve(panicking_handler));
    let mut doomed = Client::connect(&url(addr, "/")).await.unwrap();
    doomed.send("panic").await.unwrap();
    let end = tokio::time::timeout(Duration::from_secs(3), doomed.recv()).await;
    assert!(matches!(end, Ok(None | Some(Err(_)))), "the connection stayed open: {end:?}");
    assert_eq!(doomed.close_frame().map(|f| f.code.0), Some(1011));
    for _ in 0..100 {
        if clients.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(clients.is_empty(), "{} connection(s) left in Server::clients", clients.len());
}

fn panicking_builder() -> zapsocket::ServerBuilder {
    Server::builder().no_heartbeat()
}

async fn panicking_handler(mut ws: WebSocket) {
    while let Some(Ok(msg)) = ws.recv().await {
        if msg.as_text() == Some("panic") {
            panic!("a bug in a handler");
        }
        if msg.is_data() && ws.send(msg).await.is_err() {
            break;
        }
    }
}

async fn panicking_server() -> SocketAddr {
    let server = panicking_builder().bind().await.unwrap();
    let addr = server.local_addr();
    tokio::spawn(server.serve(panicking_handler));
    addr
}

/// L1: graceful shutdown with a peer that never answers its 1001: the close frame goes
/// out, the server waits its shutdown timeout, then terminates the connection, and
/// `shutdown()` returns; the listener is closed meanwhile.
#[tokio::test]
async fn shutdown_terminates_a_peer_that_never_answers_its_1001_at_the_timeout() {
    let server =
        Server::builder().shutdown_timeout(Duration::from_millis(400)).no_heartbeat().bind().await.unwrap();
    let addr = server.local_addr();
    let clients = server.clients();
    let handle = server.shutdown_handle();
    tokio::spawn(server.serve(|ws: WebSocket| async move { ws.closed().await }));
    let mut peer = RawPeer::connect(addr, "/").await;
    for _ in 0..500 {
        if clients.len() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(5), handle.shutdown()).await.expect("shutdown returned");
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(350) && took < Duration::from_secs(3), "{took:?}");
    assert!(TcpStream::connect(addr).await.is_err(), "the listener is closed");
    let (bytes, ended) = read_until_closed(&mut peer.stream, Duration::from_secs(2)).await;
    assert!(ended.is_some(), "the connection was terminated");
    assert!(bytes.len() >= 4 && bytes[0] == 0x88, "{bytes:02x?}");
    assert_eq!(u16::from_be_bytes([bytes[2], bytes[3]]), 1001);
}

/// B19 for a `Server`: once shutdown has started, new connections are refused (the
/// listener is closed) and a handshake still under way (its request not complete) is
/// answered 503, as `ws` and Python's `websockets` do.
#[tokio::test]
async fn during_shutdown_new_connections_are_refused_and_a_handshake_under_way_gets_503() {
    let server =
        Server::builder().shutdown_timeout(Duration::from_secs(3)).no_heartbeat().bind().await.unwrap();
    let addr = server.local_addr();
    let handle = server.shutdown_handle();
    tokio::spawn(server.serve(|ws: WebSocket| async move { ws.closed().await }));
    let request = upgrade_request("/");
    let (first, rest) = request.split_at(20);
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(first.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let shutdown = tokio::spawn(async move { handle.shutdown().await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(TcpStream::connect(addr).await.is_err(), "new connections are refused");
    stream.write_all(rest.as_bytes()).await.unwrap();
    let mut peer = RawPeer { stream };
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8];
        peer.stream.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 503 "), "{}", String::from_utf8_lossy(&head));
    tokio::time::timeout(Duration::from_secs(2), shutdown).await.expect("the shutdown ended").unwrap();
}

/// B19 with another server (hyper): after shutdown the upgrade is answered 503.
#[tokio::test]
async fn after_shutdown_a_hyper_upgrade_is_answered_503() {
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let upgrader = Server::builder().build_upgrader();
    upgrader.shutdown_handle().shutdown().await;
    tokio::spawn(async move {
        while let Ok((stream, peer)) = listener.accept().await {
            let upgrader = upgrader.clone();
            let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let upgrader = upgrader.clone();
                async move {
                    let response = zapsocket::hyper::upgrade(&upgrader, req, peer, |_ws| async {}).await;
                    Ok::<_, std::convert::Infallible>(response)
                }
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .with_upgrades(),
            );
        }
    });
    let (_peer, head) = RawPeer::request(addr, upgrade_request("/")).await;
    assert!(head.starts_with("HTTP/1.1 503 "), "{head}");
}

/// B19 with `Upgrader::handle_upgrade` (a defect, fixed: the stream was dropped without
/// an HTTP answer, although the method's docs say a refused client gets one).
#[tokio::test]
async fn after_shutdown_handle_upgrade_answers_503() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let upgrader = Server::builder().build_upgrader();
    upgrader.shutdown_handle().shutdown().await;
    tokio::spawn(async move {
        while let Ok((stream, peer)) = listener.accept().await {
            let upgrader = upgrader.clone();
            tokio::spawn(async move { assert!(upgrader.handle_upgrade(stream, peer).await.is_err()) });
        }
    });
    let (_peer, head) = RawPeer::request(addr, upgrade_request("/")).await;
    assert!(head.starts_with("HTTP/1.1 503 "), "{head:?}");
}

/// M1: the client never follows a redirect (so it cannot carry `Authorization` or
/// cookies to another origin): a 3xx is an error with its status, and the target is never
/// contacted.
#[tokio::test]
async fn the_client_does_not_follow_a_redirect() {
    let target = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target_addr = target.local_addr().unwrap();
    let contacted = Arc::new(AtomicUsize::new(0));
    let count = contacted.clone();
    tokio::spawn(async move {
        while target.accept().await.is_ok() {
            count.fetch_add(1, Ordering::SeqCst);
        }
    });
    let redirector = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let redirector_addr = redirector.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = redirector.accept().await {
            let mut buf = vec![0u8; 4096];
            let _ = stream.read(&mut buf).await;
            let answer =
                format!("HTTP/1.1 302 Found\r\nLocation: ws://{target_addr}/\r\nContent-Length: 0\r\n\r\n");
            let _ = stream.write_all(answer.as_bytes()).await;
        }
    });
    let err = Client::builder()
        .header("Authorization", "Bearer secret")
        .connect(&url(redirector_addr, "/"))
        .await
        .unwrap_err();
    assert!(err.is_handshake(), "{err}");
    assert_eq!(err.status(), Some(302));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(contacted.load(Ordering::SeqCst), 0, "the redirect target was contacted");
}

/// G4: a peer that keeps sending (pings, so it looks alive) but never reads is terminated
/// once the socket has taken no byte for the write timeout: the waiting `send()` fails and
/// the server records 1008 "write timeout". A peer that reads slowly, but reads, is not.
/// (The slow reader's handshake response is read along with the data: it only counts
/// bytes.)
#[tokio::test]
async fn a_peer_that_takes_no_bytes_is_terminated_after_the_write_timeout_and_a_slow_reader_is_not() {
    const SLOW_READER_FOR: Duration = Duration::from_secs(4);
    let server =
        Server::builder().no_heartbeat().write_timeout(Some(Duration::from_secs(2))).bind().await.unwrap();
    let addr = server.local_addr();
    let (tx, mut ends) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(server.serve(move |ws: WebSocket| {
        let tx = tx.clone();
        async move {
            let payload = Bytes::from(vec![b'x'; 64 * 1024]);
            let started = Instant::now();
            let failed = loop {
                if ws.send(payload.clone()).await.is_err() {
                    break true;
                }
                if started.elapsed() > SLOW_READER_FOR {
                    break false;
                }
            };
            let _ = tx.send((
                ws.request().unwrap().path().to_owned(),
                failed,
                ws.close_frame(),
                started.elapsed(),
            ));
        }
    }));
    // The one that never reads, but sends a ping every 100 ms.
    let mut stuck = RawPeer::connect(addr, "/stuck").await;
    let pinger = tokio::spawn(async move {
        loop {
            stuck.send_frame(0x89, b"alive").await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let (path, failed, frame, after) =
        tokio::time::timeout(Duration::from_secs(30), ends.recv()).await.unwrap().unwrap();
    assert_eq!(path, "/stuck");
    assert!(failed, "send() did not fail");
    let frame = frame.expect("a recorded close frame");
    assert_eq!(
        (frame.code, frame.reason.as_str()),
        (zapsocket::CloseCode::POLICY_VIOLATION, "write timeout")
    );
    assert!(after >= Duration::from_secs(2), "terminated after {after:?}, before the timeout");
    pinger.abort();

    // The slow one: 64 KiB every 10 ms while the server sends 64 KiB messages as fast as it
    // can. (The kernel reports the server's socket writable again only once a third or so
    // of its send buffer, megabytes on loopback, is free: a reader much slower than that
    // per write timeout would count as stalled.) Its receive buffer is small, as on a slow
    // link, so that what it reads opens the TCP window at once.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(64 * 1024).unwrap();
    let mut slow = socket.connect(addr).await.unwrap();
    slow.write_all(upgrade_request("/slow").as_bytes()).await.unwrap();
    let reader = tokio::spawn(async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            if let Ok(0) | Err(_) = slow.read(&mut buf).await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    let (path, failed, frame, after) =
        tokio::time::timeout(Duration::from_secs(30), ends.recv()).await.unwrap().unwrap();
    assert_eq!(path, "/slow");
    assert!(!failed, "the slow reader was cut off after {after:?}: {frame:?}");
    reader.abort();
}
