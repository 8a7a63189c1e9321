//! A quick, deterministic fuzz smoke test: a few thousand pseudo-random byte strings, fed
//! to both roles in random pieces, must never panic, and every error must be a peer
//! violation with a close code that may be sent. The real fuzzing lives in `fuzz/`.

use std::time::{Duration, Instant};

use super::*;

/// A byte string that is mostly frames: plausible first bytes, lengths at the encoding
/// boundaries, masked or not, with junk mixed in.
fn frame_soup(rng: &mut Rng) -> Vec<u8> {
    let mut out = Vec::new();
    for _ in 0..1 + rng.below(6) {
        if rng.below(8) == 0 {
            let junk = rng.below(20);
            out.extend(rng.bytes(junk));
            continue;
        }
        const FIRST: [u8; 12] = [0x81, 0x82, 0x01, 0x02, 0x00, 0x80, 0x88, 0x89, 0x8a, 0xc1, 0x83, 0x09];
        let b0 = FIRST[rng.below(FIRST.len())];
        let len = [0, 1, 2, 5, 125, 126, 127, 300][rng.below(8)];
        let mut payload = rng.bytes(len);
        if rng.below(2) == 0 {
            // Mostly ASCII with the odd high byte, so text is sometimes valid.
            payload.iter_mut().for_each(|b| *b &= if rng.below(16) == 0 { 0xff } else { 0x7f });
        }
        if b0 == 0x88 && len >= 2 && rng.below(2) == 0 {
            let code = [1000u16, 1001, 1005, 1015, 3000, 4999, 999][rng.below(7)];
            payload[..2].copy_from_slice(&code.to_be_bytes());
        }
        let mask = (rng.below(4) != 0).then(|| [rng.next() as u8, 1, 2, 3]);
        out.extend(wire(b0, &payload, mask));
    }
    out
}

fn check(role: Role, input: &[u8], rng: &mut Rng) {
    let config = Config::default().max_frame_size(1 << 12).max_message_size(1 << 13).max_message_parts(8);
    let mut conn = Connection::new(role, config);
    let t0 = Instant::now();
    let mut rest = input;
    let mut failed = false;
    while !rest.is_empty() {
        let n = (1 + rng.below(rest.len().min(64))).min(rest.len());
        conn.feed(&rest[..n]);
        rest = &rest[n..];
        for event in poll_all(&mut conn) {
            assert!(!failed, "an event after an error: {input:02x?}");
            if let Err(e) = event {
                failed = true;
                let code = e.close_code().unwrap_or_else(|| panic!("{e:?} from the peer has no close code"));
                assert!(code.is_sendable(), "{e:?} maps to {code:?}");
                assert_eq!(conn.state(), State::Closed);
            }
        }
        if rng.below(8) == 0 {
            let _ = conn.send(Message::text("reply"));
        }
    }
    let _ = conn.handle_timeout(t0 + Duration::from_secs(60));
    let sent = take_outbound(&mut conn);
    for frame in frames(&sent) {
        assert_eq!(frame.masked, role == Role::Client);
    }
    let _ = conn.feed_eof();
    assert_eq!(conn.poll_event(), None);
}

#[test]
fn random_bytes_never_panic_either_role() {
    let mut rng = Rng::new(0x2545_f491);
    for i in 0..4000 {
        let input = if i % 2 == 0 {
            frame_soup(&mut rng)
        } else {
            let len = rng.below(200);
            rng.bytes(len)
        };
        check(Role::Server, &input, &mut rng);
        check(Role::Client, &input, &mut rng);
    }
}
