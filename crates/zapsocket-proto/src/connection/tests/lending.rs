//! Lending a data frame's work out ([`Connection::poll_event_lending`]): the events and
//! the bytes queued are exactly those of [`Connection::poll_event`], for every message
//! shape, compressed or not, valid or not; and nothing is decoded while a frame is out.

use std::time::Instant;

use super::*;
use crate::Decoded;
use crate::deflate::{DeflateConfig, DeflateParams};

/// Polls until nothing more is decoded, lending frames of at least `min` bytes: each
/// lent frame is checked to block decoding, then run and taken back. Returns the events
/// and how many frames were lent.
fn poll_all_lending(conn: &mut Connection, min: usize) -> (Vec<Result<Event, Error>>, usize) {
    let mut events = Vec::new();
    let mut lent_count = 0;
    loop {
        match conn.poll_event_lending(min) {
            None => return (events, lent_count),
            Some(Ok(Decoded::Event(event))) => events.push(Ok(event)),
            Some(Err(e)) => events.push(Err(e)),
            Some(Ok(Decoded::Lent(mut lent))) => {
                lent_count += 1;
                assert!(conn.lending());
                assert_eq!(conn.poll_event(), None, "nothing is decoded while a frame is out");
                assert!(conn.poll_event_lending(min).is_none());
                lent.run();
                events.extend(conn.take_back(lent));
                assert!(!conn.lending());
            }
        }
    }
}

/// Feeds `wire` to two servers in the same random chunks, one decoding with
/// `poll_event`, one lending at `min`: same events, same bytes queued, same state.
/// Returns how many frames were lent.
fn same_as_poll_event(wire: &[u8], min: usize, deflate: Option<DeflateParams>, config: Config) -> usize {
    let mut plain = Connection::new(Role::Server, config.clone());
    let mut lending = Connection::new(Role::Server, config);
    if let Some(params) = deflate {
        plain.set_deflate(params, &DeflateConfig::default());
        lending.set_deflate(params, &DeflateConfig::default());
    }
    let mut rng = Rng::new(min as u64 + 1);
    let mut at = 0;
    let mut lent = 0;
    while at < wire.len() {
        let n = (1 + rng.below(70_000)).min(wire.len() - at);
        plain.feed(&wire[at..at + n]);
        lending.feed(&wire[at..at + n]);
        at += n;
        let expected = poll_all(&mut plain);
        let (got, count) = poll_all_lending(&mut lending, min);
        lent += count;
        assert_eq!(got, expected, "min {min}, after {at} bytes");
        assert_eq!(take_outbound(&mut lending), take_outbound(&mut plain), "min {min}");
        assert_eq!(lending.state(), plain.state());
    }
    lent
}

/// What a client sends: texts and binaries of many sizes, fragmented messages, pings
/// between fragments, then a close.
fn client_traffic(deflate: Option<DeflateParams>) -> Vec<u8> {
    let mut client = Connection::new(Role::Client, Config::default());
    if let Some(params) = deflate {
        client.set_deflate(params, &DeflateConfig::default());
    }
    let mut rng = Rng::new(11);
    let record = r#"{"user":"ada","room":"lobby","text":"hello there €"},"#;
    for len in [0, 1, 125, 126, 5_000, 65_535, 65_536, 300_000] {
        let text = record.repeat(len / record.len() + 1);
        let cut = (0..=len).rev().find(|&i| text.is_char_boundary(i)).unwrap_or(0);
        client.send(Message::text(text[..cut].to_owned())).unwrap();
        client.send(Message::binary(rng.bytes(len))).unwrap();
        client.send(Message::binary(vec![7u8; len])).unwrap();
    }
    for parts in [2, 5] {
        for part in 0..parts {
            client.send_fragment(true, Bytes::from(record.repeat(2_000)), part + 1 == parts).unwrap();
            client.ping(b"between").unwrap();
        }
        for part in 0..parts {
            client.send_fragment(false, Bytes::from(rng.bytes(70_000)), part + 1 == parts).unwrap();
        }
    }
    client.close(Instant::now(), CloseCode::NORMAL, "bye").unwrap();
    take_outbound(&mut client)
}

#[test]
fn lending_decodes_exactly_what_poll_event_decodes() {
    let takeover = DeflateParams::default();
    let alone = DeflateParams { client_no_context_takeover: true, ..DeflateParams::default() };
    for deflate in [None, Some(takeover), Some(alone)] {
        let wire = client_traffic(deflate);
        let mut lent = Vec::new();
        for min in [0, 1, 4_096, 65_536, 1 << 30] {
            lent.push(same_as_poll_event(&wire, min, deflate, Config::default()));
        }
        // 24 whole messages and 14 fragments: at 0 every data frame is lent (a server's
        // are all masked).
        assert_eq!(lent[0], 38, "{deflate:?}");
        assert!(lent[2] > 0 && lent[2] < 38, "{deflate:?}: {lent:?}");
        assert_eq!(lent[4], 0, "none past the largest frame");
    }
}

#[test]
fn a_lent_frame_that_breaks_the_protocol_fails_the_connection_as_poll_event_would() {
    let big = "é".repeat(40_000);
    let mut bad_text = big.clone().into_bytes();
    bad_text[50_000] = 0xff;
    let cases: Vec<(Vec<u8>, Option<DeflateParams>, Config)> = vec![
        // Invalid UTF-8 in a whole text frame, and in the last part of a fragmented one.
        (from_peer(Role::Server, 0x81, &bad_text), None, Config::default()),
        (
            [from_peer(Role::Server, 0x01, big.as_bytes()), from_peer(Role::Server, 0x80, &bad_text)]
                .concat(),
            None,
            Config::default(),
        ),
        // Not a deflate stream.
        (
            from_peer(Role::Server, 0xc2, &vec![0xff; 5_000]),
            Some(DeflateParams::default()),
            Config::default(),
        ),
        // Inflates past max_message_size.
        (
            {
                let mut client = Connection::new(Role::Client, Config::default());
                client.set_deflate(DeflateParams::default(), &DeflateConfig::default());
                client.send(Message::binary(vec![0u8; 2 << 20])).unwrap();
                take_outbound(&mut client)
            },
            Some(DeflateParams::default()),
            Config::default().max_message_size(1 << 20),
        ),
    ];
    for (wire, deflate, config) in cases {
        // One chunk: the error surfaces from the lent frame, not from a partial check.
        let mut plain = Connection::new(Role::Server, config.clone());
        let mut lending = Connection::new(Role::Server, config);
        if let Some(params) = deflate {
            plain.set_deflate(params, &DeflateConfig::default());
            lending.set_deflate(params, &DeflateConfig::default());
        }
        plain.feed(&wire);
        lending.feed(&wire);
        let expected = poll_all(&mut plain);
        let (got, lent) = poll_all_lending(&mut lending, 1_000);
        assert!(lent >= 1);
        assert!(matches!(got.last(), Some(Err(_))), "{got:?}");
        assert_eq!(got, expected);
        assert_eq!(lending.state(), State::Closed);
        let close = take_outbound(&mut lending);
        assert_eq!(close, take_outbound(&mut plain), "the same close frame, with the error's code");
        assert!(!close.is_empty());
    }
}

#[test]
fn a_frame_lent_when_the_connection_closes_is_dropped_with_it() {
    let mut server = conn(Role::Server);
    server.feed(&from_peer(Role::Server, 0x82, &[1; 100_000]));
    server.feed(&from_peer(Role::Server, 0x82, &[2; 10]));
    let Some(Ok(Decoded::Lent(mut lent))) = server.poll_event_lending(1_000) else { panic!("not lent") };
    assert_eq!(lent.len(), 100_000);
    assert_eq!(server.feed_eof(), Err(Error::ConnectionReset));
    lent.run();
    assert_eq!(server.take_back(lent), None);
    assert_eq!(server.poll_event(), None);
    assert!(server.is_closed() && !server.lending());
}

#[test]
fn only_frames_with_work_are_lent() {
    // A client receives unmasked frames: binary has nothing to do; text is validated.
    let mut client = conn(Role::Client);
    client.feed(&from_peer(Role::Client, 0x82, &[1; 100_000]));
    assert!(matches!(client.poll_event_lending(1_000), Some(Ok(Decoded::Event(Event::Message(_))))));
    client.feed(&from_peer(Role::Client, 0x81, &[b'a'; 100_000]));
    assert!(matches!(client.poll_event_lending(1_000), Some(Ok(Decoded::Lent(_)))));
    // Control frames never are.
    let mut server = conn(Role::Server);
    server.feed(&from_peer(Role::Server, 0x89, &[1; 125]));
    assert!(matches!(server.poll_event_lending(0), Some(Ok(Decoded::Event(Event::Ping(_))))));
}

#[test]
fn what_decoding_returns_stays_small() {
    // Every decoded event goes back through several calls: a lent frame is boxed so
    // that it does not make every return as large as itself.
    let decoded = std::mem::size_of::<Option<Result<Decoded, Error>>>();
    let event = std::mem::size_of::<Option<Result<Event, Error>>>();
    assert_eq!(decoded, event, "Decoded is no larger than Event");
    assert!(event <= 56, "{event} bytes");
}
