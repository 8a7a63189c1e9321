//! The close handshake (RFC 6455 §5.5.1, §7), usage errors around it, and the end of the
//! stream.

use std::time::{Duration, Instant};

use super::*;

#[test]
fn control_frames_interleaved_in_a_fragmented_message_are_handled_at_once() {
    let mut server = conn(Role::Server);
    let mut bytes = from_peer(Role::Server, 0x01, b"Hel");
    bytes.extend(from_peer(Role::Server, 0x89, b"ping"));
    bytes.extend(from_peer(Role::Server, 0x8a, b"pong"));
    bytes.extend(from_peer(Role::Server, 0x80, b"lo"));
    let events = feed_all(&mut server, &bytes);
    let ping = Ok(Event::Ping(Bytes::from_static(b"ping")));
    assert_eq!(events, [ping, Ok(Event::Pong(Bytes::from_static(b"pong"))), text("Hello")]);
    assert_eq!(sent_frames(&mut server), [Frame { b0: 0x8a, masked: false, payload: b"ping".to_vec() }]);
}

#[test]
fn a_close_inside_a_fragmented_message_ends_it() {
    let mut client = conn(Role::Client);
    let mut bytes = wire(0x01, b"Hel", None);
    bytes.extend(wire(0x88, &close_payload(1001, ""), None));
    bytes.extend(wire(0x80, b"lo", None));
    assert_eq!(feed_all(&mut client, &bytes), [closed(CloseCode::GOING_AWAY, "")]);
    assert_eq!(client.state(), State::Closed);
}

#[test]
fn the_initiator_gets_the_echo_as_a_close_event() {
    let t0 = Instant::now();
    let mut pair = Pair::new(Config::default());
    pair.client.close(t0, CloseCode::NORMAL, "bye").unwrap();
    assert_eq!(pair.client.state(), State::CloseSent);
    assert_eq!(pair.server_received(), [closed(CloseCode::NORMAL, "bye")]);
    assert_eq!(pair.server.state(), State::Closed);
    assert_eq!(pair.server.close_frame(), Some(&crate::CloseFrame::new(CloseCode::NORMAL, "bye")));
    // The responder echoes the code (RFC 6455 §5.5.1) and, as `ws` does, the reason.
    assert_eq!(pair.client_received(), [closed(CloseCode::NORMAL, "bye")]);
    assert_eq!(pair.client.state(), State::Closed);
    assert!(pair.client.is_closed() && pair.server.is_closed());
    assert_eq!(pair.client.poll_timeout(), None, "no close timeout once closed");
    assert_eq!(pair.client.feed_eof(), Ok(()));
    assert_eq!(pair.server.feed_eof(), Ok(()));
}

#[test]
fn the_responder_echoes_the_peers_code() {
    let mut server = conn(Role::Server);
    let events = feed_all(&mut server, &from_peer(Role::Server, 0x88, &close_payload(4001, "app")));
    assert_eq!(events, [closed(CloseCode(4001), "app")]);
    let echo = sent_frames(&mut server);
    assert_eq!(echo, [Frame { b0: 0x88, masked: false, payload: close_payload(4001, "app") }]);
    assert_eq!(server.send(Message::text("late")), Err(Error::AlreadyClosed));
}

#[test]
fn a_close_without_status_is_echoed_without_status() {
    let mut client = conn(Role::Client);
    assert_eq!(feed_all(&mut client, &wire(0x88, b"", None)), [Ok(Event::Close(None))]);
    assert_eq!(client.close_frame(), Some(&crate::CloseFrame::new(CloseCode::NO_STATUS, "")));
    assert_eq!(sent_frames(&mut client), [Frame { b0: 0x88, masked: true, payload: vec![] }]);
}

#[test]
fn closing_with_no_status_sends_an_empty_close_payload() {
    let mut server = conn(Role::Server);
    server.close(Instant::now(), CloseCode::NO_STATUS, "ignored").unwrap();
    assert_eq!(take_outbound(&mut server), [0x88, 0x00]);
}

#[test]
fn a_close_reason_of_123_bytes_is_sent_and_124_refused() {
    let mut server = conn(Role::Server);
    let reason = "r".repeat(123);
    assert_eq!(
        server.close(Instant::now(), CloseCode::NORMAL, &(reason.clone() + "r")),
        Err(Error::ControlPayloadTooLong)
    );
    server.close(Instant::now(), CloseCode::NORMAL, &reason).unwrap();
    let sent = sent_frames(&mut server);
    assert_eq!(sent, [Frame { b0: 0x88, masked: false, payload: close_payload(1000, &reason) }]);
}

#[test]
fn unsendable_close_codes_are_refused() {
    let mut client = conn(Role::Client);
    for code in [0, 999, 1004, 1006, 1015, 2000, 5000] {
        let got = client.close(Instant::now(), CloseCode(code), "");
        assert_eq!(got, Err(Error::UnsendableCloseCode(code)));
    }
    assert_eq!(client.state(), State::Open);
    assert!(client.outbound().is_empty());
}

#[test]
fn sending_after_close_is_refused() {
    let mut client = conn(Role::Client);
    client.close(Instant::now(), CloseCode::GOING_AWAY, "").unwrap();
    assert_eq!(client.send(Message::text("x")), Err(Error::AlreadyClosed));
    assert_eq!(client.send_fragment(false, Bytes::new(), true), Err(Error::AlreadyClosed));
    assert_eq!(client.send_encoded(&crate::EncodedFrame::text("x")), Err(Error::AlreadyClosed));
    assert_eq!(client.ping(b""), Err(Error::AlreadyClosed));
    assert_eq!(client.pong(b""), Err(Error::AlreadyClosed));
}

#[test]
fn closing_twice_is_a_no_op() {
    let t0 = Instant::now();
    let mut server = conn(Role::Server);
    server.close(t0, CloseCode::NORMAL, "once").unwrap();
    let deadline = server.poll_timeout();
    server.close(t0 + Duration::from_secs(3), CloseCode::GOING_AWAY, "twice").unwrap();
    assert_eq!(server.poll_timeout(), deadline, "the deadline is not moved");
    let sent = sent_frames(&mut server);
    assert_eq!(sent, [Frame { b0: 0x88, masked: false, payload: close_payload(1000, "once") }]);
    // After the handshake completed, too.
    feed_all(&mut server, &from_peer(Role::Server, 0x88, &close_payload(1000, "")));
    assert_eq!(server.close(t0, CloseCode::NORMAL, ""), Ok(()));
    assert!(server.outbound().is_empty());
}

#[test]
fn messages_still_arrive_while_our_close_is_in_flight() {
    let mut pair = Pair::new(Config::default());
    pair.server.close(Instant::now(), CloseCode::GOING_AWAY, "shutdown").unwrap();
    // The client sent this before it saw the server's close.
    pair.client.send(Message::text("in flight")).unwrap();
    pair.drive();
    assert_eq!(pair.server_events, [text("in flight"), closed(CloseCode::GOING_AWAY, "shutdown")]);
    assert_eq!(pair.client_events, [closed(CloseCode::GOING_AWAY, "shutdown")]);
}

#[test]
fn no_pong_is_sent_once_our_close_is_sent() {
    let mut server = conn(Role::Server);
    server.close(Instant::now(), CloseCode::NORMAL, "").unwrap();
    take_outbound(&mut server);
    let events = feed_all(&mut server, &from_peer(Role::Server, 0x89, b"p"));
    assert_eq!(events, [Ok(Event::Ping(Bytes::from_static(b"p")))]);
    assert!(server.outbound().is_empty());
}

#[test]
fn bytes_after_the_peers_close_are_ignored() {
    let mut client = conn(Role::Client);
    let mut bytes = wire(0x88, &close_payload(1000, ""), None);
    bytes.extend(wire(0x81, b"after", None));
    bytes.extend([0xff, 0xff]);
    assert_eq!(feed_all(&mut client, &bytes), [closed(CloseCode::NORMAL, "")]);
    assert_eq!(client.buffered_incoming(), 0);
}

#[test]
fn the_close_timeout_ends_a_connection_whose_peer_does_not_answer() {
    let t0 = Instant::now();
    let config = Config::default().close_timeout(Duration::from_secs(5));
    let mut client = Connection::new(Role::Client, config);
    client.close(t0, CloseCode::NORMAL, "").unwrap();
    assert_eq!(client.poll_timeout(), Some(t0 + Duration::from_secs(5)));
    assert_eq!(client.handle_timeout(t0 + Duration::from_millis(4999)), Ok(()));
    assert_eq!(client.state(), State::CloseSent);
    assert_eq!(client.handle_timeout(t0 + Duration::from_secs(5)), Err(Error::CloseTimeout));
    assert_eq!(client.state(), State::Closed);
    assert_eq!(client.poll_timeout(), None);
    assert_eq!(client.handle_timeout(t0 + Duration::from_secs(6)), Ok(()), "reported once");
}

#[test]
fn eof_before_close_is_a_reset() {
    let mut server = conn(Role::Server);
    assert_eq!(server.feed_eof(), Err(Error::ConnectionReset));
    assert_eq!(server.state(), State::Closed);
    assert_eq!(server.feed_eof(), Ok(()), "reported once");

    let mut client = conn(Role::Client);
    client.close(Instant::now(), CloseCode::NORMAL, "").unwrap();
    assert_eq!(client.feed_eof(), Err(Error::ConnectionReset), "our close was not answered");
}

#[test]
fn eof_in_the_middle_of_a_frame_is_a_reset() {
    let mut client = conn(Role::Client);
    assert_eq!(feed_all(&mut client, &[0x81, 0x05, b'H']), []);
    assert_eq!(client.feed_eof(), Err(Error::ConnectionReset));
    assert_eq!(client.buffered_incoming(), 0);
    assert_eq!(client.poll_event(), None);
}

#[test]
fn usage_errors_leave_the_connection_open() {
    let mut client = conn(Role::Client);
    assert_eq!(client.ping(&[0; 126]), Err(Error::ControlPayloadTooLong));
    assert_eq!(client.pong(&[0; 126]), Err(Error::ControlPayloadTooLong));
    client.send_fragment(true, Bytes::from_static(b"a"), false).unwrap();
    assert_eq!(client.send(Message::text("b")), Err(Error::FragmentOrder));
    assert_eq!(client.send_encoded(&crate::EncodedFrame::text("b")), Err(Error::FragmentOrder));
    assert_eq!(client.send_fragment(false, Bytes::from_static(b"b"), true), Err(Error::FragmentOrder));
    client.ping(&[1; 125]).unwrap();
    client.send_fragment(true, Bytes::from_static(b"c"), true).unwrap();
    assert_eq!(client.state(), State::Open);
    let b0s: Vec<u8> = sent_frames(&mut client).iter().map(|f| f.b0).collect();
    assert_eq!(b0s, [0x01, 0x89, 0x80]);
}

#[test]
fn failing_the_connection_sends_the_code_drops_what_was_buffered_and_closes_at_once() {
    let mut server = conn(Role::Server);
    let mut bytes = from_peer(Role::Server, 0x02, &[7; 300]);
    bytes.extend(from_peer(Role::Server, 0x00, &[8; 200]));
    // Half of a third fragment: its header and 50 of its 100 bytes.
    let third = from_peer(Role::Server, 0x00, &[9; 100]);
    bytes.extend(&third[..third.len() - 50]);
    assert_eq!(feed_all(&mut server, &bytes), []);
    // 300 + 200 assembled, and the third frame's 6-byte header and 50 bytes undecoded.
    assert_eq!(server.buffered_incoming(), 556);

    server.fail_connection(CloseCode::TRY_AGAIN_LATER, "busy").unwrap();
    assert!(server.is_closed());
    assert_eq!(server.buffered_incoming(), 0);
    let sent = sent_frames(&mut server);
    assert_eq!(sent.len(), 1);
    assert_eq!((sent[0].b0, sent[0].payload.clone()), (0x88, close_payload(1013, "busy")));
    // Nothing more is decoded, and failing again is a no-op.
    assert_eq!(feed_all(&mut server, &third[third.len() - 50..]), []);
    server.fail_connection(CloseCode::TRY_AGAIN_LATER, "busy").unwrap();
    assert_eq!(take_outbound(&mut server), []);
}

#[test]
fn failing_the_connection_refuses_codes_the_wire_cannot_carry() {
    let mut server = conn(Role::Server);
    assert_eq!(server.fail_connection(CloseCode::ABNORMAL, ""), Err(Error::UnsendableCloseCode(1006)));
    assert_eq!(
        server.fail_connection(CloseCode::TRY_AGAIN_LATER, &"x".repeat(124)),
        Err(Error::ControlPayloadTooLong)
    );
    assert!(!server.is_closed());
}
