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
