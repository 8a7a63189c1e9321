//! The examples of RFC 6455 §5.7, byte for byte.

use super::*;

const MASKED_HELLO: [u8; 11] = [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58];

#[test]
fn single_frame_unmasked_text_is_decoded_by_a_client() {
    let mut client = conn(Role::Client);
    let events = feed_all(&mut client, &[0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
    assert_eq!(events, [text("Hello")]);
    assert!(client.outbound().is_empty());
    assert_eq!(client.state(), State::Open);
}

#[test]
fn single_frame_masked_text_is_decoded_by_a_server() {
    let mut server = conn(Role::Server);
    assert_eq!(feed_all(&mut server, &MASKED_HELLO), [text("Hello")]);
}

#[test]
fn masked_text_fed_one_byte_at_a_time_is_decoded_once_complete() {
    let mut server = conn(Role::Server);
    for &byte in &MASKED_HELLO[..10] {
        assert_eq!(feed_all(&mut server, &[byte]), []);
    }
    assert_eq!(feed_all(&mut server, &MASKED_HELLO[10..]), [text("Hello")]);
}

#[test]
fn fragmented_unmasked_text_is_reassembled() {
    let mut client = conn(Role::Client);
    assert_eq!(feed_all(&mut client, &[0x01, 0x03, 0x48, 0x65, 0x6c]), []);
    assert_eq!(feed_all(&mut client, &[0x80, 0x02, 0x6c, 0x6f]), [text("Hello")]);
}

#[test]
fn unmasked_ping_is_reported_and_answered_with_a_masked_pong() {
    let mut client = conn(Role::Client);
    let events = feed_all(&mut client, &[0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
    assert_eq!(events, [Ok(Event::Ping(Bytes::from_static(b"Hello")))]);
    let pong = sent_frames(&mut client);
    assert_eq!(pong, [Frame { b0: 0x8a, masked: true, payload: b"Hello".to_vec() }]);
}

#[test]
fn masked_pong_is_decoded_by_a_server() {
    let mut server = conn(Role::Server);
    let pong = [0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58];
    assert_eq!(feed_all(&mut server, &pong), [Ok(Event::Pong(Bytes::from_static(b"Hello")))]);
    assert!(server.outbound().is_empty(), "a pong is not answered");
}

/// Payload bytes that are not all equal, so that misplaced bytes show.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 + i / 256) as u8).collect()
}

#[test]
fn binary_256_bytes_uses_the_16_bit_length() {
    let data = pattern(256);
    let mut bytes = vec![0x82, 0x7e, 0x01, 0x00];
    bytes.extend_from_slice(&data);
    let mut client = conn(Role::Client);
    assert_eq!(feed_all(&mut client, &bytes), [binary(data.clone())]);

    let mut server = conn(Role::Server);
    server.send(Message::binary(data)).unwrap();
    assert_eq!(take_outbound(&mut server), bytes);
}

#[test]
fn binary_64_kib_uses_the_64_bit_length() {
    let data = pattern(65536);
    let mut bytes = vec![0x82, 0x7f, 0, 0, 0, 0, 0, 0x01, 0x00, 0x00];
    bytes.extend_from_slice(&data);
    let mut client = conn(Role::Client);
    assert_eq!(feed_all(&mut client, &bytes), [binary(data.clone())]);

    let mut server = conn(Role::Server);
    server.send(Message::binary(data)).unwrap();
    assert_eq!(take_outbound(&mut server), bytes);
}

#[test]
fn server_text_hello_is_encoded_byte_for_byte() {
    let mut server = conn(Role::Server);
    server.send(Message::text("Hello")).unwrap();
    assert_eq!(take_outbound(&mut server), [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
}

#[test]
fn client_text_hello_is_masked_and_decodes_to_hello() {
    let mut client = conn(Role::Client);
    client.send(Message::text("Hello")).unwrap();
    let sent = sent_frames(&mut client);
    assert_eq!(sent, [Frame { b0: 0x81, masked: true, payload: b"Hello".to_vec() }]);
}

#[test]
fn several_frames_in_one_read_come_out_one_event_per_poll() {
    let mut client = conn(Role::Client);
    let mut bytes = wire(0x81, b"one", None);
    bytes.extend(wire(0x89, b"", None));
    bytes.extend(wire(0x82, b"two", None));
    client.feed(&bytes);
    assert_eq!(client.poll_event(), Some(text("one")));
    assert_eq!(client.poll_event(), Some(Ok(Event::Ping(Bytes::new()))));
    assert_eq!(client.poll_event(), Some(binary(&b"two"[..])));
    assert_eq!(client.poll_event(), None);
}

#[test]
fn empty_messages_of_both_kinds_are_delivered() {
    let mut server = conn(Role::Server);
    let mut bytes = from_peer(Role::Server, 0x81, b"");
    bytes.extend(from_peer(Role::Server, 0x82, b""));
    assert_eq!(feed_all(&mut server, &bytes), [text(""), binary(Bytes::new())]);
}
