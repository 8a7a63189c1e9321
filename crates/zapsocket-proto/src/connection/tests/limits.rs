//! Limits, exactly at the boundary and one past it.
//!
//! The accounting of `Config::max_message_size` (see `check_header` in read.rs): the
//! first frame of a message counts its payload; every continuation frame counts its
//! payload plus [`PART_OVERHEAD`] (16) bytes. A message of `n` frames with payloads
//! `p1..pn` has the size `p1 + ... + pn + 16 * (n - 1)`. Every frame is checked when its
//! header arrives, before its payload.

use super::*;
use crate::PART_OVERHEAD;

/// The header of a masked binary frame to a server, without its payload.
fn masked_header(b0: u8, len: usize) -> Vec<u8> {
    let mut frame = from_peer(Role::Server, b0, &vec![0; len]);
    frame.truncate(frame.len() - len);
    frame
}

#[test]
fn a_frame_of_exactly_max_frame_size_is_accepted() {
    let config = Config::default().max_frame_size(1000);
    let mut server = Connection::new(Role::Server, config);
    let data = vec![0xab; 1000];
    assert_eq!(feed_all(&mut server, &from_peer(Role::Server, 0x82, &data)), [binary(data)]);
}

#[test]
fn a_frame_one_byte_over_max_frame_size_is_refused_from_its_header() {
    let config = Config::default().max_frame_size(1000);
    let header = masked_header(0x82, 1001);
    assert_eq!(header.len(), 8, "the payload is not needed to refuse it");
    let error = Error::FrameTooLarge { size: 1001, max: 1000 };
    assert_fails(Role::Server, config, &header, error.clone());
    assert_eq!(error.close_code(), Some(CloseCode::MESSAGE_TOO_BIG));
}

#[test]
fn a_declared_length_of_2_pow_63_minus_1_is_refused_without_buffering() {
    let mut header = vec![0x82, 0x7f];
    header.extend_from_slice(&(u64::MAX >> 1).to_be_bytes());
    let error = Error::FrameTooLarge { size: u64::MAX >> 1, max: 16 << 20 };
    assert_fails(Role::Client, Config::default(), &header, error);
}

#[test]
fn the_frame_limit_applies_to_continuations() {
    let config = Config::default().max_frame_size(10);
    let mut bytes = from_peer(Role::Server, 0x02, &[1; 10]);
    bytes.extend(masked_header(0x80, 11));
    assert_fails(Role::Server, config, &bytes, Error::FrameTooLarge { size: 11, max: 10 });
}

#[test]
fn a_single_frame_message_of_exactly_max_message_size_is_accepted() {
    let config = Config::default().max_message_size(500);
    let mut server = Connection::new(Role::Server, config.clone());
    let data = vec![1; 500];
    assert_eq!(feed_all(&mut server, &from_peer(Role::Server, 0x82, &data)), [binary(data)]);

    let error = Error::MessageTooLarge { size: 501, max: 500 };
    assert_fails(Role::Server, config, &masked_header(0x82, 501), error);
}

/// Three fragments of 400, 300 and `last` bytes: `700 + last + 2 * PART_OVERHEAD`.
fn three_fragments(last: usize) -> Vec<u8> {
    let mut bytes = from_peer(Role::Server, 0x02, &[1; 400]);
    bytes.extend(from_peer(Role::Server, 0x00, &[2; 300]));
    bytes.extend(from_peer(Role::Server, 0x80, &vec![3; last]));
    bytes
}

#[test]
fn a_fragmented_message_of_exactly_max_message_size_is_accepted() {
    assert_eq!(PART_OVERHEAD, 16);
    // 400 + (300 + 16) + (268 + 16) = 1000.
    let config = Config::default().max_message_size(1000);
    let mut server = Connection::new(Role::Server, config);
    let events = feed_all(&mut server, &three_fragments(268));
    let mut expected = vec![1; 400];
    expected.extend([2; 300]);
    expected.extend([3; 268]);
    assert_eq!(events, [binary(expected)]);
}

#[test]
fn a_fragmented_message_one_byte_over_max_message_size_is_refused_at_the_last_header() {
    // 400 + (300 + 16) + (269 + 16) = 1001, refused before the last payload arrives.
    let config = Config::default().max_message_size(1000);
    let mut bytes = three_fragments(269);
    bytes.truncate(bytes.len() - 269);
    assert_fails(Role::Server, config, &bytes, Error::MessageTooLarge { size: 1001, max: 1000 });
}

#[test]
fn empty_fragments_are_not_free() {
    // 1 + 4 empty continuations at 16 bytes each = 65; the fifth makes 81.
    let config = Config::default().max_message_size(80);
    let mut bytes = wire(0x01, b"x", None);
    for _ in 0..4 {
        bytes.extend(wire(0x00, b"", None));
    }
    let mut client = Connection::new(Role::Client, config.clone());
    assert_eq!(feed_all(&mut client, &bytes), []);
    assert_eq!(
        feed_all(&mut client, &wire(0x80, b"", None)),
        [Err(Error::MessageTooLarge { size: 81, max: 80 })]
    );
}

#[test]
fn by_default_a_legal_message_is_never_refused_for_its_fragment_count() {
    // Autobahn 9.3.1: 4 MiB of text in 65,536 fragments of 64 bytes, well under the
    // default 64 MiB (4 MiB + 65,535 * 16 bytes of overhead = 5 MiB).
    let payload: Vec<u8> = (0..4 << 20).map(|i| b'a' + (i % 26) as u8).collect();
    let mut bytes = Vec::with_capacity(payload.len() * 2);
    let chunks: Vec<&[u8]> = payload.chunks(64).collect();
    assert_eq!(chunks.len(), 65_536);
    for (i, chunk) in chunks.iter().enumerate() {
        let opcode = if i == 0 { 0x01 } else { 0x00 };
        let fin = if i == chunks.len() - 1 { 0x80 } else { 0 };
        bytes.extend(from_peer(Role::Server, opcode | fin, chunk));
    }
    let mut server = Connection::new(Role::Server, Config::default());
    let events = feed_all(&mut server, &bytes);
    assert_eq!(events.len(), 1);
    assert!(matches!(&events[0], Ok(Event::Message(m)) if m.as_bytes() == payload.as_slice()));
}

#[test]
fn by_default_a_flood_of_empty_fragments_ends_at_the_size_limit() {
    // With no cap on parts, the overhead alone ends it: (1024 / 16) empty continuations
    // fill a 1 KiB message limit, the next one is refused.
    let config = Config::default().max_message_size(1024);
    assert_eq!(config.max_message_parts, usize::MAX);
    let mut bytes = wire(0x01, b"", None);
    for _ in 0..1024 / PART_OVERHEAD {
        bytes.extend(wire(0x00, b"", None));
    }
    let mut client = Connection::new(Role::Client, config.clone());
    assert_eq!(feed_all(&mut client, &bytes), []);
    bytes.extend(wire(0x00, b"", None));
    assert_fails(Role::Client, config, &bytes, Error::MessageTooLarge { size: 1040, max: 1024 });
}

#[test]
fn exactly_max_message_parts_frames_are_accepted_and_one_more_is_refused() {
    let config = Config::default().max_message_parts(4);
    let mut bytes = wire(0x01, b"a", None);
    bytes.extend(wire(0x00, b"b", None));
    bytes.extend(wire(0x00, b"c", None));
    let mut client = Connection::new(Role::Client, config.clone());
    assert_eq!(feed_all(&mut client, &bytes), []);
    assert_eq!(feed_all(&mut client, &wire(0x80, b"d", None)), [text("abcd")]);

    bytes.extend(wire(0x00, b"d", None));
    bytes.extend(wire(0x80, b"e", None));
    assert_fails(Role::Client, config, &bytes, Error::TooManyParts { max: 4 });
}

#[test]
fn control_frames_do_not_count_as_parts() {
    let config = Config::default().max_message_parts(2);
    let mut bytes = wire(0x01, b"a", None);
    bytes.extend(wire(0x89, b"", None));
    bytes.extend(wire(0x8a, b"", None));
    bytes.extend(wire(0x80, b"b", None));
    let mut client = Connection::new(Role::Client, config);
    let events = feed_all(&mut client, &bytes);
    assert_eq!(events, [Ok(Event::Ping(Bytes::new())), Ok(Event::Pong(Bytes::new())), text("ab")]);
}

#[test]
fn limits_start_again_with_each_message() {
    // Each message is 0 + (10 + 16) = 26 bytes in 2 parts: exactly at both limits.
    let config = Config::default().max_message_size(26).max_message_parts(2);
    let mut bytes = Vec::new();
    for _ in 0..3 {
        bytes.extend(wire(0x02, b"", None));
        bytes.extend(wire(0x80, &[0; 10], None));
    }
    let mut client = Connection::new(Role::Client, config);
    assert_eq!(feed_all(&mut client, &bytes).len(), 3);
}

#[test]
fn read_hint_reports_the_rest_of_the_frame() {
    let mut server = conn(Role::Server);
    let bytes = from_peer(Role::Server, 0x82, &[9; 300]);
    assert_eq!(server.read_hint(), 0);
    assert_eq!(feed_all(&mut server, &bytes[..10]), []);
    assert_eq!(server.read_hint(), bytes.len() - 10);
    assert_eq!(server.buffered_incoming(), 10);
    assert_eq!(feed_all(&mut server, &bytes[10..]).len(), 1);
    assert_eq!((server.read_hint(), server.buffered_incoming()), (0, 0));
}

/// A peer that pings and never reads: past `max_pong_backlog` bytes waiting to be sent,
/// pongs are held, one at most (for the latest ping), and go out once the queue drains.
#[test]
fn pongs_past_the_backlog_limit_are_held_and_only_the_latest_is_sent() {
    let mut server = Connection::new(Role::Server, Config::default().max_pong_backlog(100));
    for i in 0..10u8 {
        let events = feed_all(&mut server, &from_peer(Role::Server, 0x89, &[i; 20]));
        assert_eq!(events, [Ok(Event::Ping(Bytes::from(vec![i; 20])))]);
    }
    // Pongs of 22 bytes: five are queued (110 bytes, the fifth taking it past 100), the
    // rest held, each replacing the one before.
    assert_eq!(server.outbound().len(), 110);
    assert!(server.has_held_pong());
    assert!(!server.queue_held_pong(), "still over the limit");
    let answered: Vec<u8> = frames(&take_outbound(&mut server)).iter().map(|f| f.payload[0]).collect();
    assert_eq!(answered, [0, 1, 2, 3, 4]);
    assert!(server.queue_held_pong());
    assert!(!server.has_held_pong());
    assert_eq!(sent_frames(&mut server), [Frame { b0: 0x8a, masked: false, payload: vec![9; 20] }]);
    assert!(!server.queue_held_pong(), "one pong for the held pings");
}

/// A held pong is dropped when the connection ends without a close frame (the end of the
/// stream here; a keepalive timeout takes the same path): a closed connection writes
/// nothing more (found by the `connection` fuzz target).
#[test]
fn a_held_pong_is_dropped_when_the_stream_ends() {
    let mut server = Connection::new(Role::Server, Config::default().max_pong_backlog(10));
    for i in 0..2u8 {
        feed_all(&mut server, &from_peer(Role::Server, 0x89, &[i; 20]));
    }
    assert!(server.has_held_pong());
    let _ = server.feed_eof();
    assert!(server.is_closed());
    assert!(!server.has_held_pong());
    take_outbound(&mut server);
    assert!(!server.queue_held_pong());
    assert_eq!(take_outbound(&mut server), []);
}

/// Below the limit every ping gets its pong (Autobahn 2.10 expects all ten).
#[test]
fn pings_below_the_backlog_limit_are_each_answered() {
    let mut server = conn(Role::Server);
    let mut bytes = Vec::new();
    for i in 0..10u8 {
        bytes.extend(from_peer(Role::Server, 0x89, &[i; 125]));
    }
    assert_eq!(feed_all(&mut server, &bytes).len(), 10);
    let answered: Vec<u8> = sent_frames(&mut server).iter().map(|f| f.payload[0]).collect();
    assert_eq!(answered, (0..10).collect::<Vec<u8>>());
}

/// A held pong is never sent after our close frame.
#[test]
fn a_held_pong_is_dropped_when_we_close() {
    let mut server = Connection::new(Role::Server, Config::default().max_pong_backlog(10));
    feed_all(&mut server, &from_peer(Role::Server, 0x89, b"first ping"));
    feed_all(&mut server, &from_peer(Role::Server, 0x89, b"second"));
    assert!(server.has_held_pong());
    server.close(std::time::Instant::now(), CloseCode::NORMAL, "bye").unwrap();
    take_outbound(&mut server);
    assert!(!server.queue_held_pong());
    assert!(server.outbound().is_empty());
}

/// docs/RELIABILITY.md C10: a length written in a longer form than needed (5 bytes in the
/// 16-bit or the 64-bit form) is accepted, from either role: one policy, no panic. RFC 6455
/// §5.2 says the minimal form MUST be used but names no reaction; refusing would buy
/// nothing, since every form is bounded by the same limits.
#[test]
fn non_minimal_length_encodings_are_accepted() {
    let hello = b"Hello";
    let sixteen = [vec![0x81, 126], 5u16.to_be_bytes().to_vec()].concat();
    let sixty_four = [vec![0x81, 127], 5u64.to_be_bytes().to_vec()].concat();
    for header in [sixteen, sixty_four] {
        let mut to_client = header.clone();
        to_client.extend_from_slice(hello);
        assert_eq!(feed_all(&mut conn(Role::Client), &to_client), [text("Hello")]);
        let mut to_server = header;
        to_server[1] |= 0x80;
        to_server.extend_from_slice(&KEY);
        to_server.extend(hello.iter().enumerate().map(|(i, b)| b ^ KEY[i % 4]));
        assert_eq!(feed_all(&mut conn(Role::Server), &to_server), [text("Hello")]);
    }
    // And a control frame's 125-byte limit holds whatever the form.
    let long_ping = [vec![0x89, 126], 126u16.to_be_bytes().to_vec(), vec![0; 126]].concat();
    assert_fails(Role::Client, Config::default(), &long_ping, Error::ControlFrameTooLong);
}

/// docs/RELIABILITY.md D4: the per-message counters (size, parts, UTF-8 state) start over
/// with every message: a long-lived connection that sends a hundred thousand messages, each
/// exactly at both limits, is never closed for it.
#[test]
fn a_hundred_thousand_messages_at_the_limits_never_add_up() {
    let config = Config::default().max_message_size(26).max_message_parts(2);
    let mut one = wire(0x01, b"", None);
    one.extend(wire(0x80, b"0123456789", None));
    let mut client = Connection::new(Role::Client, config);
    let mut count = 0;
    for _ in 0..1000 {
        let burst = one.repeat(100);
        for event in feed_all(&mut client, &burst) {
            assert_eq!(event, text("0123456789"));
            count += 1;
        }
    }
    assert_eq!(count, 100_000);
    assert_eq!(client.state(), State::Open);
    assert_eq!(client.buffered_incoming(), 0);
}
