//! Invalid frames get the right close code while the server keeps serving others.

#![allow(clippy::unwrap_used)] // Test helpers: a failed step is a failed test.

mod common;

use zapsocket::{Client, Message, Server};

use common::{RawPeer, echo_server, url};

#[tokio::test]
async fn each_violation_gets_its_close_code() {
    let addr = echo_server(Server::builder().max_message_size(1 << 16)).await;
    // A healthy client stays connected throughout.
    let mut healthy = Client::connect(&url(addr, "/")).await.unwrap();
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("RSV1 without extension", common::masked_frame(0xc1, b"x"), 1002),
        ("reserved opcode", common::masked_frame(0x83, b""), 1002),
        ("unmasked client frame", vec![0x81, 0x01, b'x'], 1002),
        ("fragmented ping", common::masked_frame(0x09, b""), 1002),
        ("continuation without start", common::masked_frame(0x80, b"x"), 1002),
        ("invalid UTF-8 text", common::masked_frame(0x81, b"\xff\xfe"), 1007),
        ("invalid close code", common::masked_frame(0x88, &999u16.to_be_bytes()), 1002),
        ("one-byte close", common::masked_frame(0x88, b"x"), 1002),
        ("message over the limit", common::masked_frame(0x82, &vec![0u8; (1 << 16) + 1]), 1009),
    ];
    for (what, bytes, code) in cases {
        let mut peer = RawPeer::connect(addr, "/").await;
        peer.send_raw(&bytes).await;
        assert_eq!(peer.read_close_code().await, Some(code), "{what}");
        healthy.send(what).await.unwrap();
        assert_eq!(healthy.recv().await.unwrap().unwrap(), Message::text(what));
    }
}

#[tokio::test]
async fn a_valid_message_before_a_bad_frame_is_still_echoed() {
    let addr = echo_server(Server::builder()).await;
    let mut peer = RawPeer::connect(addr, "/").await;
    let mut bytes = common::masked_frame(0x81, b"first");
    bytes.extend(common::masked_frame(0x83, b""));
    peer.send_raw(&bytes).await;
    assert_eq!(peer.read_frame().await, (0x81, b"first".to_vec()));
    assert_eq!(peer.read_close_code().await, Some(1002));
}

#[tokio::test]
async fn frames_after_the_handshake_in_the_same_packet_are_read() {
    let addr = echo_server(Server::builder()).await;
    let mut request = common::upgrade_request("/").into_bytes();
    request.extend(common::masked_frame(0x81, b"early"));
    let (mut peer, head) = RawPeer::request(addr, &request).await;
    assert!(head.starts_with("HTTP/1.1 101"));
    assert_eq!(peer.read_frame().await, (0x81, b"early".to_vec()));
}

/// A raw server on a thread: answers the handshake with `frames` in the same write, then
/// returns all it receives until the client's end. The client runs on a runtime of its
/// own, `client` returns without yielding, and the runtime (the connection's driver with
/// it) is dropped at once, as when a program exits.
fn raw_server_sees<F: Future<Output = ()>>(frames: &[u8], client: impl FnOnce(String) -> F) -> Vec<u8> {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let frames = frames.to_vec();
    let server = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8];
        while !head.ends_with(b"\r\n\r\n") {
            stream.read_exact(&mut byte).unwrap();
            head.push(byte[0]);
        }
        let head = String::from_utf8(head).unwrap();
        let key = head.lines().find_map(|l| l.strip_prefix("Sec-WebSocket-Key: ")).unwrap();
        let accept = zapsocket::proto::handshake::accept_key(key.trim().as_bytes());
        let mut reply = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
        )
        .into_bytes();
        reply.extend_from_slice(&frames);
        stream.write_all(&reply).unwrap();
        let mut received = Vec::new();
        stream.read_to_end(&mut received).unwrap();
        received
    });
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(client(url(addr, "/")));
    drop(runtime);
    server.join().unwrap()
}

/// A client that meets a bad frame has sent its close (1002) by the time `recv()` returns
/// the error: a program that then exits still tells the server why.
#[test]
fn the_close_for_a_violation_is_sent_before_recv_returns_it() {
    // Servers must not mask.
    let received = raw_server_sees(&common::masked_frame(0x81, b"hi"), |url| async move {
        let mut ws = Client::connect(&url).await.unwrap();
        let error = ws.recv().await.unwrap().unwrap_err();
        assert_eq!(error.close_code().map(|c| c.0), Some(1002), "{error}");
    });
    assert_eq!(common::masked_close_code(&received), 1002);
}

/// Likewise the answer to a server's close is sent by the time `recv()` ends the stream:
/// the server sees its close handshake complete, not an abnormal end.
#[test]
fn the_answer_to_a_close_is_sent_before_recv_ends() {
    let close = [0x88, 0x05, 0x03, 0xe8, b'b', b'y', b'e'];
    let received = raw_server_sees(&close, |url| async move {
        let mut ws = Client::connect(&url).await.unwrap();
        assert!(ws.recv().await.is_none());
        assert_eq!(ws.close_frame().map(|f| (f.code.0, f.reason.to_string())), Some((1000, "bye".into())));
    });
    assert_eq!(common::masked_close_code(&received), 1000);
}
