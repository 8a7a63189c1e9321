//! The same bytes, however they are cut: a stream fed in two pieces at every possible
//! offset, or one byte at a time, gives exactly the events, errors and replies of one read
//! (docs/RELIABILITY.md C11).

use std::time::Instant;

use super::*;
use crate::deflate::{DeflateConfig, DeflateParams};

/// What a connection did with some input: its events and every byte it queued.
type Outcome = (Vec<Result<Event, Error>>, Vec<u8>, State);

/// Feeds `pieces` one after the other to a fresh server connection, polling after each.
fn run(pieces: &[&[u8]], deflate: bool) -> Outcome {
    let mut server = conn(Role::Server);
    if deflate {
        server.set_deflate(DeflateParams::default(), &DeflateConfig::default());
    }
    let mut events = Vec::new();
    for piece in pieces {
        events.extend(feed_all(&mut server, piece));
    }
    (events, take_outbound(&mut server), server.state())
}

/// Checks every two-piece cut and the byte-by-byte feed of `bytes` against one read.
fn assert_cut_invariant(bytes: &[u8], deflate: bool) -> Outcome {
    let whole = run(&[bytes], deflate);
    for cut in 0..=bytes.len() {
        let (a, b) = bytes.split_at(cut);
        assert_eq!(run(&[a, b], deflate), whole, "cut at {cut} of {}", bytes.len());
    }
    let bytes_one_by_one: Vec<&[u8]> = bytes.chunks(1).collect();
    assert_eq!(run(&bytes_one_by_one, deflate), whole, "one byte at a time");
    whole
}

/// A client's stream with every kind of frame: lengths in each encoding, a fragmented text
/// message with a code point split between fragments and a ping inside it, empty frames,
/// a pong, and a close.
fn mixed_stream() -> Vec<u8> {
    let euro = "€".as_bytes();
    let mut bytes = from_peer(Role::Server, 0x81, b"Hello");
    bytes.extend(from_peer(Role::Server, 0x01, &[b'a', euro[0]]));
    bytes.extend(from_peer(Role::Server, 0x89, b"are you there"));
    bytes.extend(from_peer(Role::Server, 0x00, &euro[1..]));
    bytes.extend(from_peer(Role::Server, 0x00, b""));
    bytes.extend(from_peer(Role::Server, 0x80, "κόσμε".as_bytes()));
    bytes.extend(from_peer(Role::Server, 0x82, &[7; 300]));
    bytes.extend(from_peer(Role::Server, 0x82, b""));
    bytes.extend(from_peer(Role::Server, 0x8a, b"unsolicited"));
    bytes.extend(from_peer(Role::Server, 0x88, &close_payload(1000, "bye")));
    bytes
}

#[test]
fn a_stream_cut_at_every_offset_gives_the_events_of_one_read() {
    let (events, sent, state) = assert_cut_invariant(&mixed_stream(), false);
    assert_eq!(
        events,
        [
            text("Hello"),
            Ok(Event::Ping(Bytes::from_static(b"are you there"))),
            text("a€κόσμε"),
            binary(vec![7; 300]),
            binary(Bytes::new()),
            Ok(Event::Pong(Bytes::from_static(b"unsolicited"))),
            closed(CloseCode::NORMAL, "bye"),
        ]
    );
    let replies: Vec<(u8, Vec<u8>)> = frames(&sent).into_iter().map(|f| (f.b0, f.payload)).collect();
    assert_eq!(replies, [(0x8a, b"are you there".to_vec()), (0x88, close_payload(1000, "bye"))]);
    assert_eq!(state, State::Closed);
}

#[test]
fn a_violation_is_found_at_the_same_frame_wherever_the_stream_is_cut() {
    // Valid messages, then invalid UTF-8 inside a fragmented message (found while the
    // fragment is still arriving), then bytes that must never be looked at.
    let mut bytes = from_peer(Role::Server, 0x81, b"first");
    bytes.extend(from_peer(Role::Server, 0x01, b"ok"));
    bytes.extend(from_peer(Role::Server, 0x80, b"still ok, then \xff and more"));
    bytes.extend(from_peer(Role::Server, 0x83, b"reserved opcode, never decoded"));
    let (events, sent, state) = assert_cut_invariant(&bytes, false);
    assert_eq!(events, [text("first"), Err(Error::InvalidUtf8)]);
    assert_eq!(frames(&sent).pop().map(|f| f.payload), Some(close_payload(1007, "invalid UTF-8")));
    assert_eq!(state, State::Closed);
}

#[test]
fn a_compressed_stream_cut_at_every_offset_gives_the_events_of_one_read() {
    let mut client = conn(Role::Client);
    client.set_deflate(DeflateParams::default(), &DeflateConfig::default().threshold(0));
    let texts = ["compressed once", "compressed twice, with the context of the first", "x"];
    for t in texts {
        client.send(Message::text(t)).unwrap();
    }
    client.send_fragment(true, Bytes::from_static("frag".as_bytes()), false).unwrap();
    client.send_fragment(true, Bytes::from_static("mented".as_bytes()), true).unwrap();
    client.close(Instant::now(), CloseCode::GOING_AWAY, "").unwrap();
    let bytes = take_outbound(&mut client);
    let (events, _, _) = assert_cut_invariant(&bytes, true);
    let mut expected: Vec<_> = texts.iter().map(|t| Ok(Event::Message(Message::text(*t)))).collect();
    expected.push(text("fragmented"));
    expected.push(closed(CloseCode::GOING_AWAY, ""));
    assert_eq!(events, expected);
}
