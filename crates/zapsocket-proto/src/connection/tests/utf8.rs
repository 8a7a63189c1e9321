//! UTF-8 across fragments and partial frames: valid splits pass, invalid text fails at
//! the first bad byte that arrives, not when the message completes (RFC 6455 §8.1).

use super::*;

#[test]
fn a_code_point_split_across_fragments_is_accepted() {
    let euro = "€".as_bytes();
    for cut in 0..=euro.len() {
        let mut client = conn(Role::Client);
        assert_eq!(feed_all(&mut client, &wire(0x01, &euro[..cut], None)), []);
        assert_eq!(feed_all(&mut client, &wire(0x80, &euro[cut..], None)), [text("€")], "cut {cut}");
    }
}

#[test]
fn a_four_byte_code_point_split_over_four_fragments_is_accepted() {
    let clef = "a𝄞b".as_bytes();
    let mut server = conn(Role::Server);
    let mut events = feed_all(&mut server, &from_peer(Role::Server, 0x01, &clef[..2]));
    for (i, byte) in clef[2..].iter().enumerate() {
        let b0 = if i == clef.len() - 3 { 0x80 } else { 0x00 };
        events.extend(feed_all(&mut server, &from_peer(Role::Server, b0, &[*byte])));
    }
    assert_eq!(events, [text("a𝄞b")]);
}

#[test]
fn invalid_utf8_fails_at_the_bad_fragment_before_the_final_one() {
    // 0xce starts a two-byte sequence; 'A' cannot continue it.
    let mut client = conn(Role::Client);
    assert_eq!(feed_all(&mut client, &wire(0x01, b"ok\xce", None)), []);
    assert_eq!(feed_all(&mut client, &wire(0x00, b"A", None)), [Err(Error::InvalidUtf8)]);
    assert_eq!(client.state(), State::Closed);
    let close = sent_frames(&mut client).pop().unwrap();
    assert_eq!(close.payload[..2], 1007u16.to_be_bytes());
    // The final fragment is never looked at.
    assert_eq!(feed_all(&mut client, &wire(0x80, b"end", None)), []);
}

#[test]
fn a_code_point_above_u10ffff_fails_at_its_second_byte() {
    // 0xf4 0x90 can only start a code point above U+10FFFF.
    let mut server = conn(Role::Server);
    assert_eq!(feed_all(&mut server, &from_peer(Role::Server, 0x01, b"\xf4")), []);
    let events = feed_all(&mut server, &from_peer(Role::Server, 0x00, b"\x90"));
    assert_eq!(events, [Err(Error::InvalidUtf8)]);
}

#[test]
fn a_bad_first_fragment_fails_at_once() {
    let mut client = conn(Role::Client);
    assert_eq!(feed_all(&mut client, &wire(0x01, b"\xc0\xaf", None)), [Err(Error::InvalidUtf8)]);
}

#[test]
fn a_message_ending_inside_a_code_point_fails() {
    let mut client = conn(Role::Client);
    assert_eq!(feed_all(&mut client, &wire(0x01, b"ok", None)), []);
    assert_eq!(feed_all(&mut client, &wire(0x80, b"\xe2\x82", None)), [Err(Error::InvalidUtf8)]);
}

#[test]
fn invalid_utf8_in_a_partial_single_frame_fails_before_the_frame_completes() {
    for role in [Role::Server, Role::Client] {
        let payload = b"valid text, then \xff and more text after it";
        let bytes = from_peer(role, 0x81, payload);
        let bad_at = bytes.len() - payload.len() + 17;
        let mut conn = conn(role);
        for (i, byte) in bytes.iter().enumerate() {
            let events = feed_all(&mut conn, &[*byte]);
            if i < bad_at {
                assert_eq!(events, [], "{role:?} byte {i}");
            } else {
                assert_eq!(events, [Err(Error::InvalidUtf8)], "{role:?} byte {i}");
                break;
            }
        }
        assert_eq!(conn.state(), State::Closed);
    }
}

#[test]
fn invalid_utf8_in_a_partial_continuation_fails_before_it_completes() {
    let mut server = conn(Role::Server);
    assert_eq!(feed_all(&mut server, &from_peer(Role::Server, 0x01, b"abc")), []);
    let bytes = from_peer(Role::Server, 0x80, b"de\xffgh");
    let header_len = 6;
    assert_eq!(feed_all(&mut server, &bytes[..header_len + 2]), []);
    assert_eq!(feed_all(&mut server, &bytes[header_len + 2..header_len + 3]), [Err(Error::InvalidUtf8)]);
}

#[test]
fn valid_text_fed_one_byte_at_a_time_is_delivered_intact() {
    let message = "κόσμε — 𝄞 — ok";
    for role in [Role::Server, Role::Client] {
        let mut bytes = from_peer(role, 0x01, &message.as_bytes()[..5]);
        bytes.extend(from_peer(role, 0x80, &message.as_bytes()[5..]));
        let mut conn = conn(role);
        let mut events = Vec::new();
        for byte in bytes {
            events.extend(feed_all(&mut conn, &[byte]));
        }
        assert_eq!(events, [Ok(Event::Message(Message::text(message)))]);
    }
}

#[test]
fn binary_fragments_are_not_checked_and_text_after_them_is() {
    let mut client = conn(Role::Client);
    let mut bytes = wire(0x02, b"\xff", None);
    bytes.extend(wire(0x80, b"\xce", None));
    bytes.extend(wire(0x81, b"\xce\xba", None));
    assert_eq!(feed_all(&mut client, &bytes), [binary(&b"\xff\xce"[..]), text("κ")]);
}

#[test]
fn utf8_state_is_reset_between_messages() {
    // A text message that failed cannot leak a partial code point into the next one,
    // and a message that ended cleanly leaves nothing behind.
    let mut client = conn(Role::Client);
    let mut bytes = wire(0x81, "κ".as_bytes(), None);
    bytes.extend(wire(0x01, b"a", None));
    bytes.extend(wire(0x80, "€".as_bytes(), None));
    assert_eq!(feed_all(&mut client, &bytes), [text("κ"), text("a€")]);
}
