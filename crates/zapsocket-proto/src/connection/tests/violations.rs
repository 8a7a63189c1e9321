//! Every protocol violation: its exact error, its close code on the wire, and a closed
//! connection after it.

use super::*;

const BOTH: [Role; 2] = [Role::Server, Role::Client];

#[test]
fn reserved_bits_fail_with_1002() {
    for role in BOTH {
        for b0 in [0xc1, 0xa1, 0x91, 0xf1, 0xc2, 0xc9] {
            assert_fails(role, Config::default(), &from_peer(role, b0, b"x"), Error::ReservedBits);
        }
    }
    assert_eq!(Error::ReservedBits.close_code(), Some(CloseCode::PROTOCOL_ERROR));
}

#[test]
fn rsv1_is_accepted_only_when_permessage_deflate_is_on() {
    // RFC 7692 §7.2.3.1: "Hello", compressed, in one frame.
    let hello = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
    let mut server = conn(Role::Server);
    server.set_deflate(Default::default(), &Default::default());
    assert_eq!(feed_all(&mut server, &from_peer(Role::Server, 0xc1, &hello)), [text("Hello")]);
    assert_fails(
        Role::Server,
        Config::default(),
        &from_peer(Role::Server, 0xc1, &hello),
        Error::ReservedBits,
    );
}

#[test]
fn reserved_opcodes_fail_with_1002() {
    for role in BOTH {
        for opcode in (0x3..=0x7).chain(0xb..=0xf) {
            let bytes = from_peer(role, 0x80 | opcode, b"");
            assert_fails(role, Config::default(), &bytes, Error::ReservedOpcode(opcode));
        }
    }
}

#[test]
fn unmasked_frame_to_a_server_fails_with_1002() {
    let bytes = wire(0x81, b"Hello", None);
    assert_fails(Role::Server, Config::default(), &bytes, Error::BadMasking);
    assert_eq!(Error::BadMasking.close_code(), Some(CloseCode::PROTOCOL_ERROR));
}

#[test]
fn masked_frame_to_a_client_fails_with_1002() {
    let bytes = wire(0x81, b"Hello", Some(KEY));
    assert_fails(Role::Client, Config::default(), &bytes, Error::BadMasking);
}

#[test]
fn unmasked_control_frame_to_a_server_fails() {
    assert_fails(Role::Server, Config::default(), &wire(0x89, b"", None), Error::BadMasking);
}

#[test]
fn fragmented_control_frames_fail_with_1002() {
    for role in BOTH {
        for b0 in [0x08, 0x09, 0x0a] {
            let bytes = from_peer(role, b0, b"");
            assert_fails(role, Config::default(), &bytes, Error::FragmentedControlFrame);
        }
    }
}

#[test]
fn control_frames_over_125_bytes_fail_with_1002() {
    for role in BOTH {
        for b0 in [0x88, 0x89, 0x8a] {
            let mut payload = vec![b'a'; 126];
            payload[..2].copy_from_slice(&1000u16.to_be_bytes());
            let bytes = from_peer(role, b0, &payload);
            assert_fails(role, Config::default(), &bytes, Error::ControlFrameTooLong);
        }
    }
}

#[test]
fn control_frames_of_exactly_125_bytes_are_accepted() {
    let payload = vec![7u8; 125];
    let mut server = conn(Role::Server);
    let events = feed_all(&mut server, &from_peer(Role::Server, 0x89, &payload));
    assert_eq!(events, [Ok(Event::Ping(Bytes::from(payload.clone())))]);
    assert_eq!(sent_frames(&mut server), [Frame { b0: 0x8a, masked: false, payload }]);
}

#[test]
fn a_continuation_without_a_message_fails_with_1002() {
    for role in BOTH {
        for b0 in [0x80, 0x00] {
            let bytes = from_peer(role, b0, b"lo");
            assert_fails(role, Config::default(), &bytes, Error::UnexpectedContinuation);
        }
    }
}

#[test]
fn a_continuation_after_a_complete_message_fails() {
    let mut bytes = from_peer(Role::Server, 0x81, b"Hel");
    bytes.extend(from_peer(Role::Server, 0x80, b"lo"));
    let events = assert_fails(Role::Server, Config::default(), &bytes, Error::UnexpectedContinuation);
    assert_eq!(events, [Event::Message(Message::text("Hel"))]);
}

#[test]
fn a_new_data_frame_inside_a_fragmented_message_fails_with_1002() {
    for role in BOTH {
        for (first, second) in [(0x01, 0x81), (0x01, 0x02), (0x02, 0x82), (0x02, 0x01)] {
            let mut bytes = from_peer(role, first, b"a");
            bytes.extend(from_peer(role, second, b"b"));
            assert_fails(role, Config::default(), &bytes, Error::ExpectedContinuation);
        }
    }
}

#[test]
fn a_one_byte_close_payload_fails_with_1002() {
    for role in BOTH {
        let bytes = from_peer(role, 0x88, &[0x03]);
        assert_fails(role, Config::default(), &bytes, Error::InvalidClosePayload);
    }
}

#[test]
fn invalid_close_codes_fail_with_1002() {
    for code in [0u16, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535] {
        for role in BOTH {
            let bytes = from_peer(role, 0x88, &close_payload(code, ""));
            assert_fails(role, Config::default(), &bytes, Error::InvalidCloseCode(code));
        }
    }
}

#[test]
fn valid_close_codes_are_reported_and_echoed() {
    let valid = (1000..=1003).chain(1007..=1014).chain([3000, 3999, 4000, 4999]);
    for code in valid {
        for role in BOTH {
            let mut conn = conn(role);
            let events = feed_all(&mut conn, &from_peer(role, 0x88, &close_payload(code, "why")));
            assert_eq!(events, [closed(CloseCode(code), "why")], "code {code}");
            assert_eq!(conn.state(), State::Closed);
            let echo = sent_frames(&mut conn);
            assert_eq!(echo.len(), 1);
            assert_eq!((echo[0].b0, &echo[0].payload[..]), (0x88, &close_payload(code, "why")[..]));
        }
    }
}

#[test]
fn invalid_utf8_text_fails_with_1007() {
    for role in BOTH {
        for bad in [&b"\xff"[..], b"Hello\xc0\xafworld", b"\xed\xa0\x80", b"ok\xe2\x82"] {
            let bytes = from_peer(role, 0x81, bad);
            assert_fails(role, Config::default(), &bytes, Error::InvalidUtf8);
        }
    }
    assert_eq!(Error::InvalidUtf8.close_code(), Some(CloseCode::INVALID_PAYLOAD));
}

#[test]
fn invalid_utf8_in_a_close_reason_fails_with_1007() {
    for role in BOTH {
        let mut payload = close_payload(1000, "bye");
        payload.extend_from_slice(b"\xce");
        let bytes = from_peer(role, 0x88, &payload);
        assert_fails(role, Config::default(), &bytes, Error::InvalidUtf8);
    }
}

#[test]
fn a_64_bit_length_with_the_top_bit_set_fails_with_1002() {
    let to_client = [0x82, 0x7f, 0x80, 0, 0, 0, 0, 0, 0, 0];
    assert_fails(Role::Client, Config::default(), &to_client, Error::InvalidLength);
    let to_server = [0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 1];
    assert_fails(Role::Server, Config::default(), &to_server, Error::InvalidLength);
}

#[test]
fn binary_payloads_are_not_checked_for_utf8() {
    let mut client = conn(Role::Client);
    assert_eq!(feed_all(&mut client, &wire(0x82, b"\xff\xfe", None)), [binary(&b"\xff\xfe"[..])]);
}

#[test]
fn a_violation_after_messages_keeps_the_earlier_events() {
    let mut bytes = from_peer(Role::Server, 0x81, b"first");
    bytes.extend(from_peer(Role::Server, 0x89, b"p"));
    bytes.extend(from_peer(Role::Server, 0x83, b""));
    bytes.extend(from_peer(Role::Server, 0x81, b"never seen"));
    let events = assert_fails(Role::Server, Config::default(), &bytes, Error::ReservedOpcode(3));
    assert_eq!(events, [Event::Message(Message::text("first")), Event::Ping(Bytes::from_static(b"p"))]);
}

#[test]
fn a_violation_after_our_close_queues_no_second_close_frame() {
    let mut server = conn(Role::Server);
    server.close(std::time::Instant::now(), CloseCode::NORMAL, "").unwrap();
    let events = feed_all(&mut server, &from_peer(Role::Server, 0x83, b""));
    assert_eq!(events, [Err(Error::ReservedOpcode(3))]);
    let sent = sent_frames(&mut server);
    assert_eq!(sent, [Frame { b0: 0x88, masked: false, payload: close_payload(1000, "") }]);
    assert_eq!(server.state(), State::Closed);
}

#[test]
fn the_error_to_close_code_map_is_complete() {
    use Error::*;
    let protocol = [
        ReservedBits,
        ReservedOpcode(3),
        BadMasking,
        FragmentedControlFrame,
        ControlFrameTooLong,
        InvalidLength,
        UnexpectedContinuation,
        ExpectedContinuation,
        InvalidClosePayload,
        InvalidCloseCode(0),
        DataAfterClose,
    ];
    for e in protocol {
        assert_eq!(e.close_code(), Some(CloseCode::PROTOCOL_ERROR), "{e}");
        assert!(e.is_protocol_violation());
    }
    for e in [FrameTooLarge { size: 2, max: 1 }, MessageTooLarge { size: 2, max: 1 }, TooManyParts { max: 1 }]
    {
        assert_eq!(e.close_code(), Some(CloseCode::MESSAGE_TOO_BIG), "{e}");
    }
    let silent = [
        KeepaliveTimeout,
        CloseTimeout,
        ConnectionReset,
        AlreadyClosed,
        ControlPayloadTooLong,
        UnsendableCloseCode(1005),
        FragmentOrder,
    ];
    for e in silent {
        assert_eq!(e.close_code(), None, "{e}");
        assert!(!e.is_protocol_violation());
        assert!(e.reason().len() <= crate::MAX_CLOSE_REASON);
    }
}
