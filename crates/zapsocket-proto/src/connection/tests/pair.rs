//! An in-memory client and server talking through [`Pair`].

use std::time::Instant;

use super::*;
use crate::EncodedFrame;

const SIZES: [usize; 7] = [0, 1, 125, 126, 65535, 65536, 1 << 20];

/// Text of exactly `len` bytes, with multi-byte code points where they fit.
fn text_of(len: usize) -> String {
    let mut s = String::with_capacity(len);
    let mut i = 0;
    while s.len() < len {
        let c = ['a', 'κ', '€', '𝄞'][i % 4];
        s.push(if s.len() + c.len_utf8() <= len { c } else { 'z' });
        i += 1;
    }
    s
}

/// The server answers every message it received with the same message.
fn echo(pair: &mut Pair) {
    for event in pair.server_received() {
        match event {
            Ok(Event::Message(m)) => pair.server.send(m).unwrap(),
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// Every message of [`SIZES`], text and binary.
fn messages() -> Vec<Message> {
    let mut rng = Rng::new(7);
    let mut all = Vec::new();
    for len in SIZES {
        all.push(Message::text(text_of(len)));
        all.push(Message::binary(rng.bytes(len)));
    }
    all
}

fn echo_all(mut pair: Pair) {
    let messages = messages();
    for message in &messages {
        pair.client.send(message.clone()).unwrap();
    }
    echo(&mut pair);
    let expected: Vec<_> = messages.into_iter().map(|m| Ok(Event::Message(m))).collect();
    assert_eq!(pair.client_received(), expected);
    close_cleanly(&mut pair);
}

/// The full close handshake, started by the client; both ends end closed and drained.
fn close_cleanly(pair: &mut Pair) {
    pair.client.close(Instant::now(), CloseCode::NORMAL, "done").unwrap();
    assert_eq!(pair.server_received(), [closed(CloseCode::NORMAL, "done")]);
    assert_eq!(pair.client_received(), [closed(CloseCode::NORMAL, "done")]);
    for conn in [&mut pair.client, &mut pair.server] {
        assert_eq!(conn.state(), State::Closed);
        assert!(conn.outbound().is_empty());
        assert_eq!(conn.feed_eof(), Ok(()));
    }
}

#[test]
fn messages_of_every_size_echo_in_one_piece() {
    echo_all(Pair::new(Config::default()));
}

#[test]
fn messages_of_every_size_echo_in_random_chunks() {
    echo_all(Pair::chunked(Config::default(), 4096, 1));
}

#[test]
fn messages_echo_one_to_seven_bytes_at_a_time() {
    let mut pair = Pair::chunked(Config::default(), 7, 2);
    let messages: Vec<Message> = [0, 1, 125, 126, 1000]
        .into_iter()
        .flat_map(|len| [Message::text(text_of(len)), Message::binary(vec![0x5a; len])])
        .collect();
    for message in &messages {
        pair.client.send(message.clone()).unwrap();
    }
    echo(&mut pair);
    let expected: Vec<_> = messages.into_iter().map(|m| Ok(Event::Message(m))).collect();
    assert_eq!(pair.client_received(), expected);
    close_cleanly(&mut pair);
}

#[test]
fn many_random_messages_survive_random_chunking_both_ways() {
    let mut pair = Pair::chunked(Config::default(), 300, 3);
    let mut rng = Rng::new(99);
    let mut expected = Vec::new();
    for _ in 0..500 {
        let len = [0, 1, 2, 125, 126, 127, 1023, 1024, 1025, 5000][rng.below(10)];
        let message =
            if rng.below(2) == 0 { Message::text(text_of(len)) } else { Message::binary(rng.bytes(len)) };
        pair.client.send(message.clone()).unwrap();
        pair.server.send(message.clone()).unwrap();
        expected.push(Ok(Event::Message(message)));
    }
    pair.drive();
    assert_eq!(pair.server_events, expected);
    assert_eq!(pair.client_events, expected);
}

#[test]
fn fragmented_sends_are_reassembled() {
    let mut pair = Pair::chunked(Config::default(), 5, 4);
    let euro = "€".as_bytes();
    pair.client.send_fragment(true, Bytes::from_static(b"Hel"), false).unwrap();
    pair.client.ping(b"between").unwrap();
    pair.client.send_fragment(true, Bytes::from_static(b"lo "), false).unwrap();
    // A code point split between two fragments.
    pair.client.send_fragment(true, Bytes::copy_from_slice(&euro[..1]), false).unwrap();
    pair.client.send_fragment(true, Bytes::copy_from_slice(&euro[1..]), true).unwrap();
    pair.client.send_fragment(false, Bytes::from(vec![1; 2000]), false).unwrap();
    pair.client.send_fragment(false, Bytes::new(), false).unwrap();
    pair.client.send_fragment(false, Bytes::from(vec![2; 10]), true).unwrap();
    let mut binary_payload = vec![1; 2000];
    binary_payload.extend([2; 10]);
    let events = pair.server_received();
    let ping = Ok(Event::Ping(Bytes::from_static(b"between")));
    assert_eq!(events, [ping, text("Hello €"), binary(binary_payload)]);
    assert_eq!(pair.client_received(), [Ok(Event::Pong(Bytes::from_static(b"between")))]);

    pair.server.send_fragment(false, Bytes::from(vec![3; 70000]), false).unwrap();
    pair.server.send_fragment(false, Bytes::from_static(b"end"), true).unwrap();
    let mut big = vec![3; 70000];
    big.extend_from_slice(b"end");
    assert_eq!(pair.client_received(), [binary(big)]);
    close_cleanly(&mut pair);
}

#[test]
fn a_server_broadcast_frame_is_queued_as_is() {
    let mut server = conn(Role::Server);
    for frame in [EncodedFrame::text("hi"), EncodedFrame::binary(&[7; 5000])] {
        server.send_encoded(&frame).unwrap();
        assert_eq!(take_outbound(&mut server), frame.as_bytes().to_vec());
    }
}

#[test]
fn broadcast_frames_reach_the_peer_from_either_role() {
    let frames = [
        (EncodedFrame::text("to all"), text("to all")),
        (EncodedFrame::binary(&[]), binary(Bytes::new())),
        (EncodedFrame::binary(&[9; 70000]), binary(vec![9; 70000])),
        (EncodedFrame::new(crate::OpCode::Text, "κ".as_bytes()), text("κ")),
    ];
    let mut pair = Pair::chunked(Config::default(), 1000, 5);
    let mut expected = Vec::new();
    for (frame, event) in &frames {
        // One encoding shared by many server connections...
        pair.server.send_encoded(frame).unwrap();
        // ...and re-masked when a client sends it (RFC 6455 §5.3).
        pair.client.send_encoded(frame).unwrap();
        expected.push(event.clone());
    }
    pair.drive();
    assert_eq!(pair.client_events, expected);
    assert_eq!(pair.server_events, expected);
    assert_eq!(frames[0].0.len(), 8);
    assert!(!frames[0].0.is_empty());
}

#[test]
fn a_server_closes_and_the_client_answers() {
    let mut pair = Pair::chunked(Config::default(), 3, 6);
    pair.server.send(Message::text("last words")).unwrap();
    pair.server.close(Instant::now(), CloseCode::GOING_AWAY, "restart").unwrap();
    assert_eq!(pair.server.state(), State::CloseSent);
    assert_eq!(pair.client_received(), [text("last words"), closed(CloseCode::GOING_AWAY, "restart")]);
    assert_eq!(pair.server_received(), [closed(CloseCode::GOING_AWAY, "restart")]);
    assert!(pair.client.is_closed() && pair.server.is_closed());
}

#[test]
fn both_ends_closing_at_once_end_closed() {
    let mut pair = Pair::new(Config::default());
    pair.client.close(Instant::now(), CloseCode::NORMAL, "client").unwrap();
    pair.server.close(Instant::now(), CloseCode::GOING_AWAY, "server").unwrap();
    pair.drive();
    assert_eq!(pair.server_events, [closed(CloseCode::NORMAL, "client")]);
    assert_eq!(pair.client_events, [closed(CloseCode::GOING_AWAY, "server")]);
    assert!(pair.client.is_closed() && pair.server.is_closed());
    assert!(pair.client.outbound().is_empty() && pair.server.outbound().is_empty());
}

#[test]
fn outbound_offsets_count_every_byte() {
    let mut client = conn(Role::Client);
    client.send(Message::binary(vec![0; 2000])).unwrap();
    let queued = client.outbound().queued_offset();
    assert_eq!(queued, 2000 + 8);
    take_outbound(&mut client);
    assert_eq!(client.outbound().written_offset(), queued);
    client.release_buffers();
    assert!(client.outbound().is_empty());
}
