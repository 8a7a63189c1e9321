//! permessage-deflate through real sockets: negotiation, compressed frames on the wire (seen
//! by an independent wire tap), the per-message opt-out, the context-takeover bound, a
//! compression bomb, and an invalid server answer.

#![allow(clippy::unwrap_used)] // Test helpers: a failed step is a failed test.

mod common;
mod tap;

use std::time::Duration;

use common::{RawPeer, echo_server, masked_frame, url};
use tap::WireTap;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use zapsocket::{Client, CloseCode, DeflateConfig, DeflateParams, Message, Server, WebSocket};

fn json_of(len: usize) -> String {
    let record = r#"{"user":"ada","room":"lobby","text":"hello there"},"#;
    record.repeat(len / record.len() + 1)[..len].to_owned()
}

async fn recv(ws: &mut WebSocket) -> Message {
    tokio::time::timeout(Duration::from_secs(10), ws.recv()).await.unwrap().unwrap().unwrap()
}

#[tokio::test]
async fn a_deflate_server_and_our_client_talk_compressed_on_the_wire() {
    let addr = echo_server(Server::builder().deflate(DeflateConfig::default())).await;
    let tap = WireTap::start(addr).await;
    let mut ws = Client::connect(&url(tap.addr(), "/")).await.unwrap();
    let expected = DeflateParams { server_no_context_takeover: true, ..Default::default() };
    assert_eq!(ws.deflate(), Some(expected));
    let big = Message::text(json_of(64 * 1024));
    for message in [Message::text("small"), big.clone(), Message::binary(vec![7u8; 5000])] {
        ws.send(message.clone()).await.unwrap();
        assert_eq!(recv(&mut ws).await, message);
    }
    ws.close(CloseCode::NORMAL, "").await.unwrap();
    assert!(
        tap.client_heads()[0]
            .contains("Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits")
    );
    assert!(
        tap.server_heads()[0]
            .contains("Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover")
    );
    for frames in [tap.client_data_frames(), tap.server_data_frames()] {
        let rsv1: Vec<(bool, u64)> = frames.iter().map(|f| (f.rsv1, f.len)).collect();
        assert_eq!(rsv1.len(), 3, "{rsv1:?}");
        assert_eq!(
            (rsv1[0].0, rsv1[1].0, rsv1[2].0),
            (false, true, true),
            "5 bytes plain, the rest compressed"
        );
        assert!(rsv1[1].1 < 4 * 1024, "64 KiB of JSON went out as {} bytes", rsv1[1].1);
    }
}

#[tokio::test]
async fn deflate_is_off_by_default_on_the_server() {
    let addr = echo_server(Server::builder()).await;
    let tap = WireTap::start(addr).await;
    let mut ws = Client::connect(&url(tap.addr(), "/")).await.unwrap();
    assert_eq!(ws.deflate(), None);
    ws.send(json_of(10_000)).await.unwrap();
    assert_eq!(recv(&mut ws).await.len(), 10_000);
    assert!(!tap.server_heads()[0].contains("Sec-WebSocket-Extensions"));
    assert!(tap.frames().iter().all(|f| !f.rsv1));
}

#[tokio::test]
async fn a_client_can_turn_deflate_off() {
    let addr = echo_server(Server::builder().deflate(DeflateConfig::default())).await;
    let tap = WireTap::start(addr).await;
    let ws = Client::builder().deflate(None).connect(&url(tap.addr(), "/")).await.unwrap();
    assert_eq!(ws.deflate(), None);
    assert!(!tap.client_heads()[0].contains("Sec-WebSocket-Extensions"));
}

#[tokio::test]
async fn send_uncompressed_skips_compression_for_one_message() {
    let server = Server::builder().deflate(DeflateConfig::default()).bind().await.unwrap();
    let tap = WireTap::start(server.local_addr()).await;
    tokio::spawn(server.serve(|ws: WebSocket| async move {
        ws.send_uncompressed(json_of(8000)).await.unwrap();
        ws.send(json_of(8000)).await.unwrap();
        ws.closed().await;
    }));
    let mut ws = Client::connect(&url(tap.addr(), "/")).await.unwrap();
    assert_eq!(recv(&mut ws).await, recv(&mut ws).await);
    let rsv1: Vec<bool> = tap.server_data_frames().iter().map(|f| f.rsv1).collect();
    assert_eq!(rsv1, [false, true]);
}

#[tokio::test]
async fn context_takeover_is_bounded_by_max_context_takeover_connections() {
    let config = DeflateConfig::default().max_context_takeover_connections(1);
    let addr = echo_server(Server::builder().deflate(config)).await;
    let first = Client::connect(&url(addr, "/")).await.unwrap();
    let second = Client::connect(&url(addr, "/")).await.unwrap();
    assert!(!first.deflate().unwrap().server_no_context_takeover, "the first keeps a compressor");
    assert!(second.deflate().unwrap().server_no_context_takeover, "the second is past the limit");
    // A client that asks for no context takeover takes no place.
    let polite = Client::builder()
        .deflate(Some(DeflateConfig::default().server_no_context_takeover(true)))
        .connect(&url(addr, "/"))
        .await
        .unwrap();
    assert!(polite.deflate().unwrap().server_no_context_takeover);
    first.close(CloseCode::NORMAL, "").await.unwrap();
    // The place is given back once the server has seen the connection end.
    let mut third = None;
    for _ in 0..50 {
        let ws = Client::connect(&url(addr, "/")).await.unwrap();
        if !ws.deflate().unwrap().server_no_context_takeover {
            third = Some(ws);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(third.is_some(), "the first connection's place was not given back");
}

#[tokio::test]
async fn a_compression_bomb_gets_1009() {
    let addr =
        echo_server(Server::builder().deflate(DeflateConfig::default()).max_message_size(1 << 20)).await;
    let request = common::upgrade_request("/")
        .replace("\r\n\r\n", "\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n");
    let (mut peer, head) = RawPeer::request(addr, request).await;
    assert!(head.contains("permessage-deflate"), "{head}");
    // 256 MiB of zeros: one 1 MiB chunk, compressed once, repeated (sync-flushed chunks
    // concatenate into one stream).
    let chunk = compress(&vec![0u8; 1 << 20]);
    let bomb = chunk.repeat(256);
    assert!(bomb.len() < 1 << 20, "{} bytes on the wire", bomb.len());
    peer.send_raw(&masked_frame(0xc2, &bomb)).await;
    assert_eq!(peer.read_close_code().await, Some(1009));
}

/// A thread that calls `ready_state()` on an open connection (it takes the connection's
/// lock, as every send does) every 200 µs, timing each call, until stopped.
struct LockWatcher {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<(Duration, u32)>,
}

impl LockWatcher {
    fn start(sender: zapsocket::WebSocketSender) -> Self {
        use std::sync::atomic::Ordering::Relaxed;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let (mut worst, mut calls) = (Duration::ZERO, 0u32);
            while !flag.load(Relaxed) {
                let start = std::time::Instant::now();
                assert_eq!(sender.ready_state(), zapsocket::ReadyState::Open);
                worst = worst.max(start.elapsed());
                calls += 1;
                std::thread::sleep(Duration::from_micros(200));
            }
            (worst, calls)
        });
        LockWatcher { stop, thread }
    }

    /// Stops it: the longest call, and how many calls there were.
    fn stop(self) -> (Duration, u32) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.join().unwrap()
    }
}

/// A large compressed message is inflated outside the connection's lock, by the reader
/// (a `recv()` that waited for it) and by the driver (decoding while the handler waits
/// in `closed()`): meanwhile, calls on the same connection from other threads (here
/// `ready_state()`, which takes that lock, as every send does) are not held up by it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inflating_a_large_message_holds_up_no_other_task_on_the_connection() {
    use std::sync::{Arc, Mutex};
    use std::time::Instant;

    let server = Server::builder().deflate(DeflateConfig::default()).bind().await.unwrap();
    let addr = server.local_addr();
    let (done, result) = tokio::sync::oneshot::channel();
    let done = Arc::new(Mutex::new(Some(done)));
    let first_in = Arc::new(tokio::sync::Notify::new());
    let first_seen = first_in.clone();
    tokio::spawn(server.serve(move |mut ws: WebSocket| {
        let (done, first_in) = (done.clone(), first_in.clone());
        async move {
            let watcher = LockWatcher::start(ws.sender());
            // The first message: inflated by this task's `recv()`.
            let start = Instant::now();
            let first = ws.recv().await.unwrap().unwrap();
            let took = start.elapsed();
            first_in.notify_one();
            // The second arrives while this handler waits in `closed()`, without
            // reading: the driver decodes it, then `recv()` finds it ready.
            let _ = tokio::time::timeout(took * 3 + Duration::from_millis(300), ws.closed()).await;
            let start = Instant::now();
            let second = ws.recv().await.unwrap().expect("the second message");
            let ready_in = start.elapsed();
            let (worst, calls) = watcher.stop();
            let sizes = (first.len(), second.len());
            let _ = done.lock().unwrap().take().unwrap().send((sizes, took, ready_in, worst, calls));
        }
    }));
    // Each message on its own (`compress` gives a whole message's stream, with its end).
    let request = common::upgrade_request("/").replace(
        "\r\n\r\n",
        "\r\nSec-WebSocket-Extensions: permessage-deflate; client_no_context_takeover\r\n\r\n",
    );
    let (mut peer, head) = RawPeer::request(addr, request).await;
    assert!(head.contains("client_no_context_takeover"), "{head}");
    // 60 MiB of zeros (under the default 64 MiB limit), in a frame of a few KiB.
    let payload = compress(&vec![0u8; 1 << 20]).repeat(60);
    let frame = masked_frame(0xc2, &payload);
    peer.send_raw(&frame).await;
    first_seen.notified().await;
    peer.send_raw(&frame).await;
    let (sizes, took, ready_in, worst, calls) =
        tokio::time::timeout(Duration::from_secs(60), result).await.unwrap().unwrap();
    assert_eq!(sizes, (60 << 20, 60 << 20));
    eprintln!(
        "inflating took {took:?}; the second was ready in {ready_in:?}; \
         the longest wait for the lock meanwhile: {worst:?} ({calls} calls)"
    );
    assert!(ready_in * 4 < took, "the driver had inflated the second ahead");
    assert!(calls >= 5, "the watcher ran during the inflates ({calls} calls; one took {took:?})");
    assert!(worst * 4 < took, "a call waited {worst:?} while a message took {took:?} to inflate");
}

/// A large message a server compresses on its own (`server_no_context_takeover`, the
/// default) is compressed before the connection's lock is taken, for a send and for a
/// frame encoded once for many connections: meanwhile, calls on the connection from
/// other threads are not held up by it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressing_a_large_message_holds_up_no_other_task_on_the_connection() {
    use std::sync::{Arc, Mutex};
    use std::time::Instant;

    let server = Server::builder().deflate(DeflateConfig::default()).bind().await.unwrap();
    let addr = server.local_addr();
    let (done, result) = tokio::sync::oneshot::channel();
    let done = Arc::new(Mutex::new(Some(done)));
    tokio::spawn(server.serve(move |mut ws: WebSocket| {
        let done = done.clone();
        async move {
            assert!(ws.deflate().is_some_and(|d| d.server_no_context_takeover));
            assert_eq!(ws.recv().await.unwrap().unwrap(), Message::text("go"));
            let sender = ws.sender();
            let watcher = LockWatcher::start(sender.clone());
            // Compressed before it is queued (then written while the client reads).
            let start = Instant::now();
            sender.send(Message::binary(vec![0u8; 16 << 20])).await.unwrap();
            let queued = start.elapsed();
            let frame = zapsocket::EncodedFrame::binary(&vec![1u8; 16 << 20]);
            let start = Instant::now();
            assert!(sender.send_encoded(&frame).unwrap());
            let encoded = start.elapsed();
            let (worst, calls) = watcher.stop();
            let _ = done.lock().unwrap().take().unwrap().send((queued, encoded, worst, calls));
            ws.closed().await;
        }
    }));
    let mut client = Client::connect(&url(addr, "/")).await.unwrap();
    client.send("go").await.unwrap();
    for fill in [0u8, 1] {
        let got =
            tokio::time::timeout(Duration::from_secs(60), client.recv()).await.unwrap().unwrap().unwrap();
        assert_eq!(got, Message::binary(vec![fill; 16 << 20]));
    }
    let (queued, encoded, worst, calls) =
        tokio::time::timeout(Duration::from_secs(60), result).await.unwrap().unwrap();
    eprintln!(
        "compressing took {queued:?} and {encoded:?}; the longest wait for the lock: {worst:?} ({calls} calls)"
    );
    assert!(calls >= 5, "the watcher ran ({calls} calls)");
    let took = queued.min(encoded);
    assert!(worst * 4 < took, "a call waited {worst:?} while a message took {took:?} to compress");
}

/// Raw deflate of `data` with a sync flush at the end (what a peer puts in a frame,
/// before it strips the flush), via our own client's compression: a client sending
/// through a tap would do, but the proto crate's transformer is the shortest way.
fn compress(data: &[u8]) -> Vec<u8> {
    use zapsocket::proto::{Config, Connection, Event, Message, Role};
    let mut client = Connection::new(Role::Client, Config::default().max_message_size(1 << 30));
    let alone = DeflateParams { client_no_context_takeover: true, ..Default::default() };
    client.set_deflate(alone, &DeflateConfig::default().level(9));
    client.send(Message::binary(data.to_vec())).unwrap();
    let mut wire = Vec::new();
    while !client.outbound().is_empty() {
        let chunk = client.outbound().first_chunk().to_vec();
        client.outbound().advance(chunk.len());
        wire.extend(chunk);
    }
    // Decode our own frame to get the payload back (it must say RSV1).
    let mut server = Connection::new(Role::Server, Config::default());
    server.set_deflate(alone, &DeflateConfig::default());
    server.feed(&wire);
    assert!(matches!(server.poll_event(), Some(Ok(Event::Message(_)))));
    let (len, at) = match wire[1] & 0x7f {
        126 => (u16::from_be_bytes([wire[2], wire[3]]) as usize, 4),
        127 => (u64::from_be_bytes(wire[2..10].try_into().unwrap()) as usize, 10),
        n => (n as usize, 2),
    };
    assert_eq!(wire[0], 0xc2);
    let key = [wire[at], wire[at + 1], wire[at + 2], wire[at + 3]];
    let mut payload: Vec<u8> =
        wire[at + 4..at + 4 + len].iter().enumerate().map(|(i, b)| b ^ key[i % 4]).collect();
    payload.extend_from_slice(&[0, 0, 0xff, 0xff]);
    payload
}

#[tokio::test]
async fn an_invalid_extension_answer_fails_the_client_with_1010() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut buf = vec![0u8; 4096];
        let n = stream.read(&mut buf).await.unwrap();
        let request = String::from_utf8_lossy(&buf[..n]).into_owned();
        let key =
            request.lines().find_map(|l| l.strip_prefix("Sec-WebSocket-Key: ")).unwrap().trim().to_owned();
        let accept = zapsocket::proto::handshake::accept_key(key.as_bytes());
        let answer = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {accept}\r\nSec-WebSocket-Extensions: permessage-deflate; bogus=1\r\n\r\n"
        );
        stream.write_all(answer.as_bytes()).await.unwrap();
        let mut rest = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut rest)).await;
        rest
    });
    let error = Client::connect(&url(addr, "/")).await.unwrap_err();
    assert!(error.is_handshake(), "{error}");
    let rest = server.await.unwrap();
    assert_eq!(common::masked_close_code(&rest), 1010);
}

#[tokio::test]
async fn a_broadcast_reaches_compressed_and_plain_clients() {
    let server = Server::builder().deflate(DeflateConfig::default()).bind().await.unwrap();
    let clients = server.clients();
    let tap = WireTap::start(server.local_addr()).await;
    tokio::spawn(server.serve(|ws: WebSocket| async move { ws.closed().await }));
    let mut compressed = Vec::new();
    for _ in 0..3 {
        compressed.push(Client::connect(&url(tap.addr(), "/")).await.unwrap());
    }
    let mut plain = Client::builder().deflate(None).connect(&url(tap.addr(), "/")).await.unwrap();
    while clients.len() < 4 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let message = json_of(20_000);
    assert_eq!(clients.broadcast(message.clone()), 4);
    for ws in compressed.iter_mut().chain([&mut plain]) {
        assert_eq!(recv(ws).await, Message::text(message.clone()));
    }
    let frames = tap.server_data_frames();
    assert_eq!(frames.iter().filter(|f| f.rsv1).count(), 3, "{frames:?}");
    assert_eq!(frames.iter().filter(|f| !f.rsv1 && f.len == 20_000).count(), 1, "{frames:?}");
}

/// H8: the `authorize` hook declines compression for one request (here by its
/// `User-Agent`); other clients of the same server still get it.
#[tokio::test]
async fn the_authorize_hook_can_decline_compression_for_one_request() {
    let builder =
        Server::builder().deflate(DeflateConfig::default()).authorize(|request| {
            let old = request.header("user-agent").is_some_and(|ua| ua.contains("OldBrowser"));
            async move {
                Ok(if old { zapsocket::Accept::new().no_compression() } else { zapsocket::Accept::new() })
            }
        });
    let addr = echo_server(builder).await;
    let tap = WireTap::start(addr).await;
    let mut old = Client::builder()
        .header("User-Agent", "OldBrowser/1.0")
        .connect(&url(tap.addr(), "/"))
        .await
        .unwrap();
    assert_eq!(old.deflate(), None);
    assert!(tap.client_heads()[0].contains("permessage-deflate"), "the client offered it");
    assert!(!tap.server_heads()[0].contains("Sec-WebSocket-Extensions"), "{}", tap.server_heads()[0]);
    old.send(json_of(10_000)).await.unwrap();
    assert_eq!(recv(&mut old).await.len(), 10_000);
    assert!(tap.frames().iter().all(|f| !f.rsv1));
    let new = Client::builder()
        .header("User-Agent", "NewBrowser/2.0")
        .connect(&url(tap.addr(), "/"))
        .await
        .unwrap();
    assert!(new.deflate().is_some());
}
