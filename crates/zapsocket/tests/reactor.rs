//! The reactor server (`zapsocket::reactor`) through real sockets: echo, admission, close
//! both ways, violations, limits, pub/sub across loops, backpressure, the slow-consumer
//! policy, heartbeat, handshake timeout, compression and shutdown.

#![allow(clippy::unwrap_used)] // Test helpers: a failed step is a failed test.

mod common;

use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
use zapsocket::reactor::{Fanout, Handle, Handler, Reactor, ReactorBuilder, Running, Sent, Socket};
use zapsocket::{
    Client, CloseCode, DeflateConfig, HttpResponse, Message, ReadyState, Request, SlowConsumer,
    WebSocketConfig,
};

use common::proxy::test_pki;
use common::{RawPeer, upgrade_request, url};

/// What the handler saw, in order.
#[derive(Debug, Clone, PartialEq)]
enum Seen {
    Open(String),
    Ping(Bytes),
    Sent(Vec<Sent>),
    Drain,
    Woken,
    Closed(u16, String),
}

struct App {
    events: UnboundedSender<Seen>,
    /// The handles the "handle" message asks for.
    handles: UnboundedSender<Handle>,
}

struct Conn {
    path: String,
    count: usize,
    user: Option<String>,
}

impl Handler for App {
    type State = Conn;

    fn upgrade(&mut self, request: &Request) -> Result<Conn, HttpResponse> {
        if request.query_param("token").as_deref() == Some("bad") {
            return Err(HttpResponse::text(401, "bad token"));
        }
        Ok(Conn { path: request.path().into(), count: 0, user: request.cookie("user").map(String::from) })
    }

    fn http(&mut self, request: &Request) -> Option<HttpResponse> {
        (request.path() == "/hello").then(|| HttpResponse::text(200, "hello there"))
    }

    fn open(&mut self, ws: &mut Socket<'_, Conn>) {
        let path = ws.state().path.clone();
        match path.as_str() {
            "/room" => assert!(ws.subscribe("room")),
            "/greet" => {
                let user = ws.state().user.clone().unwrap_or_default();
                let ip = ws.peer_addr().unwrap().ip();
                let greeting = format!("hi {user} from {ip}, {:?}", ws.ready_state());
                assert_eq!(ws.send(greeting), Sent::Queued);
            }
            _ => {}
        }
        self.events.send(Seen::Open(path)).unwrap();
    }

    fn message(&mut self, ws: &mut Socket<'_, Conn>, message: Message) {
        ws.state().count += 1;
        let text = message.as_text().map(str::to_owned);
        match text.as_deref() {
            Some("count") => {
                let count = ws.state().count.to_string();
                let _ = ws.send(count);
            }
            Some("close") => ws.close(CloseCode(4001), "asked").unwrap(),
            Some("terminate") => ws.terminate(),
            Some("panic") => panic!("the test asked this handler to panic"),
            Some("later") => {
                // Work on another thread: reading waits for it, its answer comes through
                // the handle, and the wake resumes reading.
                ws.pause();
                assert!(ws.is_paused());
                let handle = ws.handle();
                std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_millis(100));
                    assert!(handle.send("done later"));
                    handle.wake();
                });
            }
            Some("handle") => {
                let _ = self.handles.send(ws.handle());
            }
            Some("hold") => ws.pause(), // and never resumed
            // Blocks the loop (what a callback must not do): what is posted meanwhile
            // waits in its inbox.
            Some("nap") => std::thread::sleep(Duration::from_millis(300)),
            Some("leave") => {
                assert!(ws.unsubscribe("room"));
                assert!(!ws.is_subscribed("room"));
                let _ = ws.send("left");
            }
            Some("flood") => {
                let sent = (0..64u8).map(|i| ws.send(vec![i; 64 * 1024])).collect();
                self.events.send(Seen::Sent(sent)).unwrap();
            }
            Some(t) if t.starts_with("others ") => ws.publish_except_self("room", &t[7..]),
            Some(t) if t.starts_with("all ") => ws.publish("room", &t[4..]),
            _ => match message {
                Message::Ping(payload) => self.events.send(Seen::Ping(payload)).unwrap(),
                Message::Pong(_) => {}
                data => {
                    let _ = ws.send(data);
                }
            },
        }
    }

    fn drain(&mut self, _ws: &mut Socket<'_, Conn>) {
        self.events.send(Seen::Drain).unwrap();
    }

    fn wake(&mut self, ws: &mut Socket<'_, Conn>) {
        ws.resume();
        assert!(!ws.is_paused());
        let _ = ws.send("woken");
        self.events.send(Seen::Woken).unwrap();
    }

    fn close(&mut self, _state: Conn, code: CloseCode, reason: &str) {
        let _ = self.events.send(Seen::Closed(code.0, reason.into()));
    }
}

fn start(builder: ReactorBuilder) -> (Running, UnboundedReceiver<Seen>) {
    let (running, events, _) = start_with_handles(builder);
    (running, events)
}

fn start_with_handles(
    builder: ReactorBuilder,
) -> (Running, UnboundedReceiver<Seen>, UnboundedReceiver<Handle>) {
    let (tx, rx) = unbounded_channel();
    let (handles, handles_rx) = unbounded_channel();
    let running = builder.port(0).start(|_| App { events: tx.clone(), handles: handles.clone() }).unwrap();
    (running, rx, handles_rx)
}

async fn next(events: &mut UnboundedReceiver<Seen>) -> Seen {
    zapsocket::time::timeout(Duration::from_secs(5), events.recv()).await.expect("no event in 5 s").unwrap()
}

/// The next event that is not an `Open`.
async fn next_not_open(events: &mut UnboundedReceiver<Seen>) -> Seen {
    loop {
        match next(events).await {
            Seen::Open(_) => {}
            other => return other,
        }
    }
}

async fn recv(ws: &mut zapsocket::WebSocket) -> Message {
    zapsocket::time::timeout(Duration::from_secs(5), ws.recv())
        .await
        .expect("no message in 5 s")
        .unwrap()
        .unwrap()
}

async fn recv_text(ws: &mut zapsocket::WebSocket) -> String {
    recv(ws).await.as_text().expect("a text message").to_owned()
}

#[tokio::test]
async fn echoes_every_kind_keeps_state_and_answers_pings() {
    let (running, mut events) = start(Reactor::builder().threads(1));
    let mut ws = Client::connect(&url(running.local_addr(), "/")).await.unwrap();
    assert_eq!(next(&mut events).await, Seen::Open("/".into()));
    for message in [
        Message::text("hello"),
        Message::binary(vec![0u8, 1, 2, 255]),
        Message::text(""),
        Message::binary(Vec::new()),
        Message::text("κόσμε 𝄞"),
    ] {
        ws.send(message.clone()).await.unwrap();
        assert_eq!(recv(&mut ws).await, message);
    }
    ws.send("count").await.unwrap();
    assert_eq!(recv_text(&mut ws).await, "6", "the state counted every message");
    ws.ping(Bytes::from_static(b"are you there")).await.unwrap();
    assert_eq!(recv(&mut ws).await, Message::Pong(Bytes::from_static(b"are you there")));
    assert_eq!(next(&mut events).await, Seen::Ping(Bytes::from_static(b"are you there")));
    assert_eq!(running.connections(), 1);
    ws.close(CloseCode(4000), "bye").await.unwrap();
    assert_eq!(ws.close_frame().unwrap().code, CloseCode(4000));
    assert_eq!(next(&mut events).await, Seen::Closed(4000, "bye".into()));
    assert_eq!(running.connections(), 0);
}

#[tokio::test]
async fn echoes_large_fragmented_and_pipelined_messages() {
    let (running, _events) = start(Reactor::builder().threads(1));
    let mut ws = Client::connect(&url(running.local_addr(), "/")).await.unwrap();
    let big: Bytes = (0..8u32 << 20).map(|i| (i % 251) as u8).collect::<Vec<u8>>().into();
    ws.send(Message::Binary(big.clone())).await.unwrap();
    assert!(recv(&mut ws).await == Message::Binary(big), "8 MiB echo differs");
    ws.send_fragment("frag", false).await.unwrap();
    ws.send_fragment("ment", false).await.unwrap();
    ws.send_fragment("ed", true).await.unwrap();
    assert_eq!(recv_text(&mut ws).await, "fragmented");
    // Many small messages at once: each read holds many, answered in one write.
    let (tx, mut rx) = ws.split();
    let sender = tokio::spawn(async move {
        for i in 0..5000 {
            tx.queue(format!("m{i}")).await.unwrap();
        }
        tx
    });
    for i in 0..5000 {
        let message =
            zapsocket::time::timeout(Duration::from_secs(5), rx.recv()).await.unwrap().unwrap().unwrap();
        assert_eq!(message.as_text(), Some(format!("m{i}").as_str()));
    }
    sender.await.unwrap();
}

#[tokio::test]
async fn admission_answers_each_refusal_with_its_status() {
    let (running, mut events) = start(
        Reactor::builder()
            .threads(1)
            .path("/")
            .path("/greet")
            .allowed_origin("https://good.example")
            .subprotocol("a")
            .subprotocol("b")
            .header("X-Server", "reactor")
            .max_connections(1),
    );
    let addr = running.local_addr();
    let (_, head) = RawPeer::request(addr, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let (_, head) = RawPeer::request(addr, "GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(head.starts_with("HTTP/1.1 426"), "{head}");
    let (_, head) = RawPeer::request(addr, upgrade_request("/nope")).await;
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");
    let bad_origin = upgrade_request("/")
        .replace("Host: localhost\r\n", "Host: localhost\r\nOrigin: https://evil.example\r\n");
    let (_, head) = RawPeer::request(addr, bad_origin).await;
    assert!(head.starts_with("HTTP/1.1 403"), "{head}");
    let refused = Client::connect(&url(addr, "/?token=bad")).await.unwrap_err();
    assert_eq!(refused.status(), Some(401));
    assert_eq!(refused.body(), Some(&b"bad token"[..]));

    let good = Client::builder()
        .protocol("b")
        .header("Cookie", "user=alice")
        .header("Origin", "https://good.example")
        .connect(&url(addr, "/greet"))
        .await;
    let mut ws = good.unwrap();
    assert_eq!(ws.protocol(), Some("b"));
    assert_eq!(recv_text(&mut ws).await, "hi alice from 127.0.0.1, Open");
    assert_eq!(next(&mut events).await, Seen::Open("/greet".into()));
    let full = Client::connect(&url(addr, "/")).await.unwrap_err();
    assert_eq!(full.status(), Some(503), "one connection at most");
    ws.close(CloseCode::NORMAL, "").await.unwrap();
    assert!(matches!(next(&mut events).await, Seen::Closed(1000, _)));
    let mut again = Client::connect(&url(addr, "/")).await.expect("room again once the first closed");
    again.send("x").await.unwrap();
    assert_eq!(recv_text(&mut again).await, "x");
}

#[tokio::test]
async fn closes_both_ways_and_terminates() {
    let (running, mut events) = start(Reactor::builder().threads(1));
    let addr = running.local_addr();
    let mut ws = Client::connect(&url(addr, "/")).await.unwrap();
    ws.send("close").await.unwrap();
    assert!(zapsocket::time::timeout(Duration::from_secs(5), ws.recv()).await.unwrap().is_none());
    let frame = ws.close_frame().unwrap();
    assert_eq!((frame.code, frame.reason.as_str()), (CloseCode(4001), "asked"));
    assert_eq!(next_not_open(&mut events).await, Seen::Closed(4001, "asked".into()));

    let mut ws = Client::connect(&url(addr, "/")).await.unwrap();
    ws.send("terminate").await.unwrap();
    let end = zapsocket::time::timeout(Duration::from_secs(5), ws.recv()).await.unwrap();
    assert!(!matches!(end, Some(Ok(_))), "no message after a terminate: {end:?}");
    assert_eq!(ws.close_frame(), None, "no close frame: the TCP connection just ended");
    assert_eq!(next_not_open(&mut events).await, Seen::Closed(1006, "terminated".into()));
}

#[tokio::test]
async fn a_violation_gets_its_close_code() {
    let (running, mut events) = start(
        Reactor::builder()
            .threads(1)
            .config(WebSocketConfig::default().max_message_size(1024).max_frame_size(1024)),
    );
    let addr = running.local_addr();
    // An unmasked client frame: 1002.
    let mut peer = RawPeer::connect(addr, "/").await;
    peer.send_raw(&[0x81, 0x02, b'h', b'i']).await;
    assert_eq!(peer.read_close_code().await, Some(1002));
    assert!(matches!(next_not_open(&mut events).await, Seen::Closed(1002, _)));
    // Invalid UTF-8 in a text frame: 1007.
    let mut peer = RawPeer::connect(addr, "/").await;
    peer.send_frame(0x81, &[0xff, 0xfe]).await;
    assert_eq!(peer.read_close_code().await, Some(1007));
    assert!(matches!(next_not_open(&mut events).await, Seen::Closed(1007, _)));
    // Over the size limit: 1009.
    let mut peer = RawPeer::connect(addr, "/").await;
    peer.send_frame(0x82, &[7; 2000]).await;
    assert_eq!(peer.read_close_code().await, Some(1009));
    assert!(matches!(next_not_open(&mut events).await, Seen::Closed(1009, _)));
    // A request head that is not HTTP: 400, and the loop goes on.
    let (_, head) = RawPeer::request(addr, "\x16\x03\x01 not http\r\n\r\n").await;
    assert!(head.starts_with("HTTP/1.1 400"), "{head}");
    let mut ws = Client::connect(&url(addr, "/")).await.unwrap();
    ws.send("still here").await.unwrap();
    assert_eq!(recv_text(&mut ws).await, "still here");
}

#[tokio::test]
async fn publishes_to_subscribers_on_every_loop() {
    let (running, mut events) = start(Reactor::builder().threads(2));
    let addr = running.local_addr();
    let mut clients = Vec::new();
    for _ in 0..8 {
        clients.push(Client::connect(&url(addr, "/room")).await.unwrap());
    }
    let mut plain = Client::connect(&url(addr, "/")).await.unwrap();
    for _ in 0..9 {
        assert!(matches!(next(&mut events).await, Seen::Open(_)));
    }
    assert_eq!(running.connections(), 9);

    clients[0].send("others hello").await.unwrap();
    clients[0].send("mark").await.unwrap();
    assert_eq!(recv_text(&mut clients[0]).await, "mark", "the sender does not get its own publish");
    for ws in &mut clients[1..] {
        assert_eq!(recv_text(ws).await, "hello");
    }
    clients[1].send("all to everyone").await.unwrap();
    for ws in &mut clients {
        assert_eq!(recv_text(ws).await, "to everyone");
    }

    clients[2].send("leave").await.unwrap();
    assert_eq!(recv_text(&mut clients[2]).await, "left");
    let publisher = running.publisher();
    publisher.publish("room", "from outside");
    for (i, ws) in clients.iter_mut().enumerate() {
        if i != 2 {
            assert_eq!(recv_text(ws).await, "from outside");
        }
    }
    publisher.broadcast(Message::binary(&b"to all"[..]));
    for ws in clients.iter_mut().chain([&mut plain]) {
        assert_eq!(recv(ws).await, Message::binary(&b"to all"[..]));
    }
    // The one that left got the broadcast but not the topic's message: the next thing it
    // gets is the echo of what it sends now.
    clients[2].send("after").await.unwrap();
    assert_eq!(recv_text(&mut clients[2]).await, "after");
    assert_eq!(running.dropped_publishes(), 0);
}

#[tokio::test]
async fn backpressure_pauses_reading_and_drain_resumes_it() {
    let config = WebSocketConfig::default().max_send_queue(256 * 1024);
    let (running, mut events) = start(Reactor::builder().threads(1).config(config));
    let mut peer = RawPeer::connect(running.local_addr(), "/").await;
    assert!(matches!(next(&mut events).await, Seen::Open(_)));
    peer.send_frame(0x81, b"flood").await;
    let Seen::Sent(sent) = next(&mut events).await else { panic!("no send report") };
    assert_eq!(sent[0], Sent::Queued);
    let full = sent.iter().position(|s| *s == Sent::Backpressure).expect("the queue filled");
    assert!(full <= 4, "full after 256 KiB plus what the socket took at once: {full}");
    // Nothing was dropped: all 64 messages arrive whole and in order once the peer reads.
    for i in 0..64u8 {
        let (b0, payload) =
            zapsocket::time::timeout(Duration::from_secs(5), peer.read_frame()).await.unwrap();
        assert_eq!(b0, 0x82);
        assert!(payload.len() == 64 * 1024 && payload.iter().all(|&b| b == i), "message {i}");
    }
    assert_eq!(next(&mut events).await, Seen::Drain);
    // Reading resumed: a message sent now is echoed.
    peer.send_frame(0x81, b"again").await;
    assert_eq!(peer.read_frame().await, (0x81, b"again".to_vec()));
}

#[tokio::test]
async fn a_subscriber_that_does_not_read_is_terminated_with_1008() {
    let config = WebSocketConfig::default().max_send_queue(64 * 1024);
    let (running, mut events) = start(Reactor::builder().threads(1).config(config));
    let addr = running.local_addr();
    let _stalled = RawPeer::connect(addr, "/room").await;
    assert!(matches!(next(&mut events).await, Seen::Open(_)));
    // More than the kernel's buffers take (several MiB on loopback), then the queue.
    let publisher = running.publisher();
    let payload = "x".repeat(32 * 1024);
    for _ in 0..1000 {
        publisher.publish("room", payload.as_str());
    }
    assert_eq!(next(&mut events).await, Seen::Closed(1008, "send queue full".into()));
    assert_eq!(running.connections(), 0);
}

#[tokio::test]
async fn the_heartbeat_drops_a_silent_peer_and_keeps_a_live_one() {
    // A pong timeout with room for a loaded machine (CI runs tests side by side).
    let config = WebSocketConfig::default().heartbeat(Duration::from_millis(100), Duration::from_millis(300));
    let (running, mut events) = start(Reactor::builder().threads(1).config(config));
    let addr = running.local_addr();
    let mut live = Client::connect(&url(addr, "/")).await.unwrap();
    let mut silent = RawPeer::connect(addr, "/").await;
    let received = zapsocket::time::timeout(Duration::from_secs(3), silent.read_to_end()).await.unwrap();
    assert_eq!(received.first(), Some(&0x89), "pinged before being dropped: {received:02x?}");
    assert!(matches!(next_not_open(&mut events).await, Seen::Closed(1006, _)));
    // The client answers the pings it reads: still open after three rounds of them.
    let _ = zapsocket::time::timeout(Duration::from_millis(300), async {
        while let Some(Ok(Message::Ping(_))) = live.recv().await {}
    })
    .await;
    live.send("alive").await.unwrap();
    loop {
        match recv(&mut live).await {
            Message::Ping(_) => {}
            other => break assert_eq!(other.as_text(), Some("alive")),
        }
    }
}

#[tokio::test]
async fn a_slow_request_head_gets_408() {
    let (running, _events) =
        start(Reactor::builder().threads(1).handshake_timeout(Duration::from_millis(200)));
    let started = std::time::Instant::now();
    let mut stream = tokio::net::TcpStream::connect(running.local_addr()).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut stream, b"GET / HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let mut peer = RawPeer { stream };
    let answer = String::from_utf8_lossy(&peer.read_to_end().await).into_owned();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn compresses_with_permessage_deflate() {
    let (running, _events) = start(Reactor::builder().threads(1).deflate(DeflateConfig::default()));
    let mut ws = Client::connect(&url(running.local_addr(), "/")).await.unwrap();
    assert!(ws.deflate().is_some(), "negotiated");
    let text = "compress me ".repeat(2000);
    ws.send(text.as_str()).await.unwrap();
    assert_eq!(recv_text(&mut ws).await, text);
    let no = Client::builder().deflate(None).connect(&url(running.local_addr(), "/")).await.unwrap();
    assert!(no.deflate().is_none());
}

#[tokio::test]
async fn shutdown_closes_every_client_with_1001_and_stops() {
    let (running, mut events) = start(Reactor::builder().threads(2));
    let addr = running.local_addr();
    let mut clients = Vec::new();
    for _ in 0..4 {
        clients.push(Client::connect(&url(addr, "/")).await.unwrap());
    }
    for _ in 0..4 {
        assert!(matches!(next(&mut events).await, Seen::Open(_)));
    }
    running.shutdown();
    for ws in &mut clients {
        assert!(zapsocket::time::timeout(Duration::from_secs(5), ws.recv()).await.unwrap().is_none());
        assert_eq!(ws.close_frame().unwrap().code, CloseCode::GOING_AWAY);
    }
    for _ in 0..4 {
        assert!(matches!(next(&mut events).await, Seen::Closed(1001, _)));
    }
    let running = std::sync::Arc::new(running);
    let joined = tokio::task::spawn_blocking({
        let running = running.clone();
        move || running.join()
    });
    zapsocket::time::timeout(Duration::from_secs(5), joined).await.expect("the loops stopped").unwrap();
    assert!(Client::connect(&url(addr, "/")).await.is_err(), "no longer listening");
    assert_eq!(ReadyState::Closed, clients[0].ready_state());
}

#[tokio::test]
async fn a_message_then_the_end_of_the_stream_is_handled_then_closed() {
    // No heartbeat: nothing but the end of the stream can end this connection.
    let config = WebSocketConfig::default();
    let (running, mut events) = start(Reactor::builder().threads(1).config(config));
    let mut peer = RawPeer::connect(running.local_addr(), "/").await;
    assert!(matches!(next(&mut events).await, Seen::Open(_)));
    // The message and the FIN in one go: one readiness event carries both.
    let mut bytes = common::masked_frame(0x81, b"last words");
    bytes.extend(common::masked_frame(0x89, b"ping"));
    peer.send_raw(&bytes).await;
    tokio::io::AsyncWriteExt::shutdown(&mut peer.stream).await.unwrap();
    assert_eq!(next(&mut events).await, Seen::Ping(Bytes::from_static(b"ping")));
    assert!(matches!(next(&mut events).await, Seen::Closed(1006, _)));
    assert_eq!(running.connections(), 0);
}

#[tokio::test]
async fn the_close_for_a_violation_reaches_a_peer_that_is_still_sending() {
    let config = WebSocketConfig::default().max_message_size(1024).max_frame_size(1024);
    let (running, mut events) = start(Reactor::builder().threads(1).config(config));
    let peer = RawPeer::connect(running.local_addr(), "/").await;
    let (mut reader, mut writer) = peer.stream.into_split();
    // A 4 MiB frame where 1 KiB is the limit: refused at its header, while the peer goes
    // on sending its payload (more than the server will ever read).
    let sending = tokio::spawn(async move {
        let mut head = vec![0x82, 0x80 | 127];
        head.extend_from_slice(&(4u64 << 20).to_be_bytes());
        head.extend_from_slice(&[1, 2, 3, 4]);
        let _ = tokio::io::AsyncWriteExt::write_all(&mut writer, &head).await;
        let chunk = vec![0u8; 64 * 1024];
        for _ in 0..64 {
            if tokio::io::AsyncWriteExt::write_all(&mut writer, &chunk).await.is_err() {
                break;
            }
        }
        writer
    });
    let mut received = Vec::new();
    let _ = zapsocket::time::timeout(
        Duration::from_secs(5),
        tokio::io::AsyncReadExt::read_to_end(&mut reader, &mut received),
    )
    .await;
    assert!(received.len() >= 4 && received[0] == 0x88, "a close frame: {received:02x?}");
    assert_eq!(u16::from_be_bytes([received[2], received[3]]), 1009);
    assert!(matches!(next_not_open(&mut events).await, Seen::Closed(1009, _)));
    drop(sending);
}

#[tokio::test]
async fn a_handler_that_panics_stops_its_loop_and_join_says_so() {
    let (running, mut events) = start(Reactor::builder().threads(1));
    let mut ws = Client::connect(&url(running.local_addr(), "/")).await.unwrap();
    assert!(matches!(next(&mut events).await, Seen::Open(_)));
    ws.send("panic").await.unwrap();
    let end = zapsocket::time::timeout(Duration::from_secs(5), ws.recv()).await.unwrap();
    assert!(!matches!(end, Some(Ok(_))), "the connection dropped: {end:?}");
    assert_eq!(running.connections(), 0, "the loop's connections left the count");
    let joined = tokio::task::spawn_blocking(move || {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| running.join()))
    });
    let outcome = zapsocket::time::timeout(Duration::from_secs(5), joined).await.unwrap().unwrap();
    assert!(outcome.is_err(), "join passes the panic on");
}

#[tokio::test]
async fn a_port_in_use_is_an_error_with_one_loop_or_many() {
    // Held by a plain listener, and by another reactor of many loops (whose sockets
    // share their port with any socket that asks to: a stale instance must not).
    let plain = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let (tx, _rx) = unbounded_channel();
    let stale = Reactor::builder()
        .port(0)
        .threads(2)
        .start(|_| App { events: tx.clone(), handles: unbounded_channel().0 })
        .unwrap();
    for port in [plain.local_addr().unwrap().port(), stale.local_addr().port()] {
        for threads in [1, 2] {
            let result = Reactor::builder()
                .port(port)
                .threads(threads)
                .start(|_| App { events: tx.clone(), handles: unbounded_channel().0 });
            let error = result.expect_err("the port is taken");
            assert_eq!(error.kind(), std::io::ErrorKind::AddrInUse, "{threads} loops: {error}");
        }
    }
}

fn tls_client(ca: &str) -> zapsocket::ClientBuilder {
    Client::builder().add_root_certificate(zapsocket::Certificate::from_pem(ca.as_bytes()).unwrap())
}

#[tokio::test]
async fn wss_echoes_refuses_and_closes_through_the_loop() {
    let (ca, cert, key) = test_pki();
    let identity = zapsocket::Identity::from_pem(cert.as_bytes(), key.as_bytes()).unwrap();
    let (running, mut events) = start(Reactor::builder().threads(1).tls(identity));
    let port = running.local_addr().port();
    let mut ws = tls_client(&ca).connect(&format!("wss://localhost:{port}/greet")).await.unwrap();
    assert_eq!(recv_text(&mut ws).await, "hi  from 127.0.0.1, Open");
    assert_eq!(next(&mut events).await, Seen::Open("/greet".into()));
    // Larger than a TLS record and than the socket takes at once, both ways.
    let big = "x".repeat(300_000);
    ws.send(big.as_str()).await.unwrap();
    ws.send("over TLS").await.unwrap();
    assert_eq!(recv_text(&mut ws).await, big);
    assert_eq!(recv_text(&mut ws).await, "over TLS");
    ws.ping(Bytes::from_static(b"tls ping")).await.unwrap();
    assert_eq!(recv(&mut ws).await, Message::Pong(Bytes::from_static(b"tls ping")));
    assert_eq!(next(&mut events).await, Seen::Ping(Bytes::from_static(b"tls ping")));
    ws.close(CloseCode(4000), "bye").await.unwrap();
    assert_eq!(ws.close_frame().unwrap().code, CloseCode(4000));
    assert_eq!(next_not_open(&mut events).await, Seen::Closed(4000, "bye".into()));
    // A refusal travels through TLS too.
    let refused = tls_client(&ca).connect(&format!("wss://localhost:{port}/?token=bad")).await.unwrap_err();
    assert_eq!(refused.status(), Some(401));
    assert_eq!(refused.body(), Some(&b"bad token"[..]));
    // Plain ws:// to a TLS port: no answer that parses, and the loop goes on.
    assert!(Client::connect(&format!("ws://127.0.0.1:{port}/")).await.is_err());
    let mut again = tls_client(&ca).connect(&format!("wss://127.0.0.1:{port}/")).await.unwrap();
    again.send("still here").await.unwrap();
    assert_eq!(recv_text(&mut again).await, "still here");
}

#[tokio::test]
async fn a_tls_handshake_that_never_completes_is_dropped_at_the_deadline() {
    let (_, cert, key) = test_pki();
    let identity = zapsocket::Identity::from_pem(cert.as_bytes(), key.as_bytes()).unwrap();
    let (running, _events) =
        start(Reactor::builder().threads(1).tls(identity).handshake_timeout(Duration::from_millis(200)));
    let started = std::time::Instant::now();
    // Half a TLS record, then nothing.
    let stream = tokio::net::TcpStream::connect(running.local_addr()).await.unwrap();
    let mut peer = RawPeer { stream };
    peer.send_raw(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01]).await;
    let _ = peer.read_to_end().await;
    let took = started.elapsed();
    assert!(took < Duration::from_millis(1500), "dropped after {took:?}");
}

#[tokio::test]
async fn a_paused_socket_waits_for_work_on_another_thread_and_its_wake() {
    let (running, mut events) = start(Reactor::builder().threads(1));
    let mut ws = Client::connect(&url(running.local_addr(), "/")).await.unwrap();
    ws.send("later").await.unwrap();
    // Sent at once, but not read until the wake resumes the socket.
    ws.send("after").await.unwrap();
    assert_eq!(recv_text(&mut ws).await, "done later");
    assert_eq!(recv_text(&mut ws).await, "woken");
    assert_eq!(recv_text(&mut ws).await, "after");
    assert_eq!(next_not_open(&mut events).await, Seen::Woken);
    ws.send("count").await.unwrap();
    assert_eq!(recv_text(&mut ws).await, "3");

    // Both messages in one segment: the second, read with the first, waits decoded
    // until the wake, then comes in order with what arrives after it.
    let mut peer = RawPeer::connect(running.local_addr(), "/").await;
    let mut both = common::masked_frame(0x81, b"later");
    both.extend(common::masked_frame(0x81, b"second"));
    peer.send_raw(&both).await;
    peer.send_frame(0x81, b"third").await;
    for expected in ["done later", "woken", "second", "third"] {
        let frame = zapsocket::time::timeout(Duration::from_secs(5), peer.read_frame()).await.unwrap();
        assert_eq!(frame, (0x81, expected.as_bytes().to_vec()));
    }
}

#[tokio::test]
async fn a_handle_sends_closes_and_outlives_its_connection_harmlessly() {
    let (running, mut events, mut handles) = start_with_handles(Reactor::builder().threads(2));
    let mut ws = Client::connect(&url(running.local_addr(), "/")).await.unwrap();
    ws.send("handle").await.unwrap();
    let handle = zapsocket::time::timeout(Duration::from_secs(5), handles.recv()).await.unwrap().unwrap();
    // From this (non-loop) thread, in order.
    for i in 0..100 {
        assert!(handle.send(format!("m{i}")));
    }
    for i in 0..100 {
        assert_eq!(recv_text(&mut ws).await, format!("m{i}"));
    }
    assert!(!handle.send(Message::Ping(Bytes::new())), "control frames are not sent through a handle");
    handle.close(CloseCode(4002), "from afar");
    handle.close(CloseCode(4003), "twice");
    let end = zapsocket::time::timeout(Duration::from_secs(5), ws.recv()).await.unwrap();
    assert!(end.is_none(), "closed: {end:?}");
    assert_eq!(ws.close_frame().map(|f| f.code.0), Some(4002));
    assert_eq!(next_not_open(&mut events).await, Seen::Closed(4002, "from afar".into()));
    assert!(handle.is_closed());
    assert!(!handle.send("too late"));
    handle.wake();
    handle.terminate();
    // The slot may be taken by a new connection: the old handle does not reach it.
    let mut again = Client::connect(&url(running.local_addr(), "/")).await.unwrap();
    assert!(!handle.send("stray"));
    again.send("count").await.unwrap();
    assert_eq!(recv_text(&mut again).await, "1");
}

#[tokio::test]
async fn a_handle_waits_for_room_instead_of_meeting_the_slow_consumer_policy() {
    let config = WebSocketConfig::default().max_send_queue(64 * 1024);
    let (running, mut events, mut handles) = start_with_handles(Reactor::builder().threads(1).config(config));
    let mut peer = RawPeer::connect(running.local_addr(), "/").await;
    peer.send_frame(0x81, b"handle").await;
    let handle = zapsocket::time::timeout(Duration::from_secs(5), handles.recv()).await.unwrap().unwrap();
    // 16 MiB, more than the kernel's buffers and the queue, while the peer does not read.
    let sender = tokio::spawn(async move {
        for i in 0..256u32 {
            handle.writable().await;
            assert!(!handle.is_closed(), "terminated at message {i}");
            assert!(handle.send(vec![(i % 251) as u8; 64 * 1024]));
        }
        handle
    });
    zapsocket::time::sleep(Duration::from_millis(300)).await;
    assert!(!sender.is_finished(), "the sender waits for the peer");
    for i in 0..256u32 {
        let (b0, payload) =
            zapsocket::time::timeout(Duration::from_secs(5), peer.read_frame()).await.unwrap();
        assert_eq!(b0, 0x82);
        assert!(payload.len() == 64 * 1024 && payload.iter().all(|&b| b == (i % 251) as u8), "message {i}");
    }
    let handle = sender.await.unwrap();
    assert!(!handle.is_closed());
    assert!(matches!(next(&mut events).await, Seen::Open(_)));
    assert!(events.try_recv().is_err(), "not closed: {:?}", events.try_recv());
}

/// Greets each connection with the client's address as the request gives it.
struct WhoAmI;

impl Handler for WhoAmI {
    type State = String;

    fn upgrade(&mut self, request: &Request) -> Result<String, HttpResponse> {
        Ok(request.ip().to_string())
    }

    fn open(&mut self, ws: &mut Socket<'_, String>) {
        let ip = ws.state().clone();
        let _ = ws.send(ip);
    }

    fn message(&mut self, _ws: &mut Socket<'_, String>, _message: Message) {}
}

#[tokio::test]
async fn the_client_address_comes_from_trusted_proxies_only() {
    let forwarded = upgrade_request("/").replace("\r\n\r\n", "\r\nX-Forwarded-For: 203.0.113.7\r\n\r\n");
    let trusting = Reactor::builder().port(0).threads(1).trusted_proxy("127.0.0.1".parse().unwrap());
    let distrusting = Reactor::builder().port(0).threads(1).trusted_proxy("10.0.0.0/8".parse().unwrap());
    for (builder, seen) in [(trusting, "203.0.113.7"), (distrusting, "127.0.0.1")] {
        let running = builder.start(|_| WhoAmI).unwrap();
        let (mut peer, head) = RawPeer::request(running.local_addr(), &forwarded).await;
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        assert_eq!(peer.read_frame().await, (0x81, seen.as_bytes().to_vec()));
        running.shutdown();
    }
}

#[tokio::test]
async fn a_paused_socket_whose_peer_leaves_ends_at_once() {
    let (running, mut events) = start(Reactor::builder().threads(1));
    let mut peer = RawPeer::connect(running.local_addr(), "/").await;
    assert!(matches!(next(&mut events).await, Seen::Open(_)));
    peer.send_frame(0x81, b"hold").await;
    peer.send_frame(0x81, b"never read").await;
    zapsocket::time::sleep(Duration::from_millis(50)).await;
    drop(peer);
    let closed = Seen::Closed(1006, "the peer closed the connection while it was paused".into());
    assert_eq!(next(&mut events).await, closed);
    assert_eq!(running.connections(), 0);
}

/// One large frame sent through the handles of many connections of a loop counts once
/// in the loop's inbox (its bytes are shared), not once per connection.
#[tokio::test]
async fn one_frame_to_many_handles_counts_once_in_the_inbox() {
    let (running, _events, mut handles) = start_with_handles(Reactor::builder().threads(1));
    let mut peers = Vec::new();
    let mut links = Vec::new();
    for _ in 0..80 {
        let mut peer = RawPeer::connect(running.local_addr(), "/").await;
        peer.send_frame(0x81, b"handle").await;
        links.push(zapsocket::time::timeout(Duration::from_secs(5), handles.recv()).await.unwrap().unwrap());
        peers.push(peer);
    }
    // 80 MiB if each send counted the frame: past the 64 MiB inbox. Posted while the
    // loop naps, so that all of it is in the inbox at once.
    peers[0].send_frame(0x81, b"nap").await;
    zapsocket::time::sleep(Duration::from_millis(50)).await;
    let frame = zapsocket::encode(Message::Binary(Bytes::from(vec![7u8; 1 << 20])));
    assert!(links.iter().all(|handle| handle.send_encoded(&frame)), "a send was dropped");
    for peer in &mut peers {
        let (b0, payload) =
            zapsocket::time::timeout(Duration::from_secs(10), peer.read_frame()).await.unwrap();
        assert!(b0 == 0x82 && payload.len() == 1 << 20, "{b0:#x} {}", payload.len());
    }
    assert_eq!(running.dropped_publishes(), 0);
}

/// Connects `n` raw peers and takes each one's handle.
async fn peers_with_handles(
    running: &Running,
    handles: &mut UnboundedReceiver<Handle>,
    n: usize,
) -> (Vec<RawPeer>, Vec<Handle>) {
    let (mut peers, mut links) = (Vec::new(), Vec::new());
    for _ in 0..n {
        let mut peer = RawPeer::connect(running.local_addr(), "/").await;
        peer.send_frame(0x81, b"handle").await;
        links.push(zapsocket::time::timeout(Duration::from_secs(5), handles.recv()).await.unwrap().unwrap());
        peers.push(peer);
    }
    (peers, links)
}

async fn read_text(peer: &mut RawPeer) -> String {
    let (b0, payload) = zapsocket::time::timeout(Duration::from_secs(10), peer.read_frame()).await.unwrap();
    assert_eq!(b0, 0x81);
    String::from_utf8(payload).unwrap()
}

/// A fan-out reaches connections on every loop, once each, in order with what their
/// handles sent before and after it; a connection that ended is left out.
#[tokio::test]
async fn a_fanout_reaches_each_connection_once_in_order_on_every_loop() {
    let (running, _events, mut handles) = start_with_handles(Reactor::builder().threads(2));
    let (mut peers, links) = peers_with_handles(&running, &mut handles, 20).await;
    let (mut gone, gone_handle) = {
        let (mut peers, mut links) = peers_with_handles(&running, &mut handles, 1).await;
        (peers.pop().unwrap(), links.pop().unwrap())
    };
    gone.send_frame(0x88, &1000u16.to_be_bytes()).await;
    assert_eq!(gone.read_frame().await.0, 0x88);
    for _ in 0..100 {
        if gone_handle.is_closed() {
            break;
        }
        zapsocket::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(gone_handle.is_closed());
    let frame = zapsocket::encode(Message::Text("to all".into()));
    for round in 0..3 {
        let mut fanout = Fanout::new(&frame);
        for handle in &links {
            assert!(handle.send(format!("before {round}")));
            assert!(fanout.add(handle));
            assert!(handle.buffered_amount() >= frame.len(), "counted when added");
        }
        assert!(!fanout.add(&gone_handle), "an ended connection is left out");
        assert_eq!(fanout.post(), 0);
        for handle in &links {
            assert!(handle.send(format!("after {round}")));
        }
    }
    for peer in &mut peers {
        for round in 0..3 {
            assert_eq!(read_text(peer).await, format!("before {round}"));
            assert_eq!(read_text(peer).await, "to all");
            assert_eq!(read_text(peer).await, format!("after {round}"));
        }
    }
    assert_eq!(running.dropped_publishes(), 0);
}

/// A fan-out that finds its loop's inbox full is refused whole: counted, returned by
/// `post`, and no longer in the connections' buffered amounts.
#[tokio::test]
async fn a_fanout_past_a_full_inbox_is_refused_and_counted() {
    let config =
        WebSocketConfig::default().max_send_queue(256 << 20).slow_consumer(SlowConsumer::DropMessage);
    let (running, _events, mut handles) = start_with_handles(Reactor::builder().threads(1).config(config));
    let (mut peers, links) = peers_with_handles(&running, &mut handles, 2).await;
    let frame = zapsocket::encode(Message::Text("x".repeat(1 << 20).into()));
    // While the loop naps, 70 MiB is posted to its 64 MiB inbox.
    peers[0].send_frame(0x81, b"nap").await;
    zapsocket::time::sleep(Duration::from_millis(50)).await;
    let mut refused = 0;
    for _ in 0..70 {
        let mut fanout = Fanout::new(&frame);
        assert!(links.iter().all(|handle| fanout.add(handle)));
        refused += fanout.post();
    }
    assert!(refused > 0 && refused % 2 == 0, "refused {refused}");
    assert_eq!(running.dropped_publishes(), refused as u64);
    let accepted = 70 - refused / 2;
    for handle in &links {
        assert!(handle.send("end"));
    }
    for peer in &mut peers {
        for _ in 0..accepted {
            assert_eq!(read_text(peer).await.len(), 1 << 20);
        }
        assert_eq!(read_text(peer).await, "end", "nothing else came");
    }
    for _ in 0..100 {
        if links.iter().all(|handle| handle.buffered_amount() == 0) {
            break;
        }
        zapsocket::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(links.iter().all(|handle| handle.buffered_amount() == 0), "a refused frame still counted");
}
