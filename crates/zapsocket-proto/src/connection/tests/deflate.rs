//! permessage-deflate through the connection: RSV1 on the wire exactly per RFC 7692, the
//! threshold and the per-message opt-out, context takeover, broadcast copies, and the
//! decompression limit.

use super::*;
use crate::EncodedFrame;
use crate::deflate::{DeflateConfig, DeflateParams};

/// A pair with permessage-deflate agreed with `params`; both ends use `config`.
fn deflate_pair(params: DeflateParams, config: DeflateConfig) -> Pair {
    let mut pair = Pair::new(Config::default());
    pair.client.set_deflate(params, &config);
    pair.server.set_deflate(params, &config);
    pair
}

/// Compressible text of `len` bytes (a repeated JSON-like record).
fn json_of(len: usize) -> String {
    let record = r#"{"user":"ada","room":"lobby","text":"hello there"},"#;
    record.repeat(len / record.len() + 1)[..len].to_owned()
}

/// The server echoes what it received; returns the frames it wrote.
fn echo_frames(pair: &mut Pair) -> Vec<Frame> {
    for event in pair.server_received() {
        match event {
            Ok(Event::Message(m)) => pair.server.send(m).unwrap(),
            other => panic!("unexpected {other:?}"),
        }
    }
    sent_frames(&mut pair.server)
}

#[test]
fn messages_at_or_over_the_threshold_are_compressed_both_ways() {
    for params in [
        DeflateParams::default(),
        DeflateParams {
            server_no_context_takeover: true,
            client_no_context_takeover: true,
            ..Default::default()
        },
        DeflateParams {
            server_max_window_bits: Some(9),
            client_max_window_bits: Some(10),
            ..Default::default()
        },
    ] {
        let mut pair = deflate_pair(params, DeflateConfig::default());
        for len in [0, 1023, 1024, 5000, 1 << 20] {
            let message = Message::text(json_of(len));
            pair.client.send(message.clone()).unwrap();
            let wire = sent_frames(&mut pair.client);
            let compressed = len >= 1024;
            assert_eq!(wire[0].b0 & 0x40 != 0, compressed, "RSV1 of a {len} byte message from the client");
            if compressed {
                assert!(
                    wire[0].payload.len() < len / 4,
                    "{len} bytes compressed to {}",
                    wire[0].payload.len()
                );
            }
            for frame in &wire {
                pair.server.feed(&wire_of(frame, true));
            }
            let received = poll_all(&mut pair.server);
            assert_eq!(received, [Ok(Event::Message(message.clone()))], "{params:?}");
            pair.server.send(message.clone()).unwrap();
            let back = sent_frames(&mut pair.server);
            assert_eq!(back[0].b0 & 0x40 != 0, compressed, "RSV1 of a {len} byte message from the server");
            for frame in &back {
                pair.client.feed(&wire_of(frame, false));
            }
            assert_eq!(poll_all(&mut pair.client), [Ok(Event::Message(message))]);
        }
    }
}

/// A frame back on the wire (masked when it goes to a server).
fn wire_of(frame: &Frame, to_server: bool) -> Vec<u8> {
    wire(frame.b0, &frame.payload, to_server.then_some(KEY))
}

#[test]
fn send_uncompressed_skips_compression_and_the_threshold_is_configurable() {
    let mut pair = deflate_pair(DeflateParams::default(), DeflateConfig::default().threshold(0));
    pair.server.send_uncompressed(Message::text(json_of(4096))).unwrap();
    pair.server.send(Message::text("tiny")).unwrap();
    let frames = sent_frames(&mut pair.server);
    assert_eq!(frames.iter().map(|f| f.b0).collect::<Vec<_>>(), [0x81, 0xc1]);
}

#[test]
fn context_takeover_shrinks_repeated_messages_and_no_context_takeover_does_not() {
    let message = Message::text(json_of(2000) + "a unique tail that repeats");
    for (alone, shrinks) in [(false, true), (true, false)] {
        let params = DeflateParams { server_no_context_takeover: alone, ..Default::default() };
        let mut pair = deflate_pair(params, DeflateConfig::default());
        for _ in 0..3 {
            pair.server.send(message.clone()).unwrap();
        }
        let sizes: Vec<usize> = sent_frames(&mut pair.server).iter().map(|f| f.payload.len()).collect();
        assert_eq!(sizes[2] < sizes[0] / 2, shrinks, "server_no_context_takeover {alone}: {sizes:?}");
        if !shrinks {
            assert!(sizes.iter().all(|&s| s == sizes[0]), "{sizes:?}");
        }
    }
}

#[test]
fn fragmented_messages_are_compressed_with_rsv1_on_the_first_frame_only() {
    let mut pair = deflate_pair(DeflateParams::default(), DeflateConfig::default());
    let parts = ["héllo ", "wörld ", "", "again and again and again"];
    for (i, part) in parts.iter().enumerate() {
        pair.client.send_fragment(true, Bytes::from(part.as_bytes().to_vec()), i + 1 == parts.len()).unwrap();
    }
    let frames = sent_frames(&mut pair.client);
    assert_eq!(frames.iter().map(|f| f.b0).collect::<Vec<_>>(), [0x41, 0x00, 0x00, 0x80]);
    for frame in &frames {
        pair.server.feed(&wire_of(frame, true));
    }
    assert_eq!(poll_all(&mut pair.server), [Ok(Event::Message(Message::text(parts.concat())))]);
}

#[test]
fn a_compressed_message_may_arrive_in_fragments_of_any_size() {
    let mut pair = Pair::chunked(Config::default(), 7, 42);
    pair.client.set_deflate(DeflateParams::default(), &DeflateConfig::default());
    pair.server.set_deflate(DeflateParams::default(), &DeflateConfig::default());
    let mut compressor = crate::deflate::compress_alone(json_of(3000).as_bytes(), 6, 15).to_vec();
    // Split the compressed payload across a text frame and two continuations.
    let tail = compressor.split_off(compressor.len() * 2 / 3);
    let middle = compressor.split_off(compressor.len() / 2);
    let mut bytes = from_peer(Role::Server, 0x41, &compressor);
    bytes.extend(from_peer(Role::Server, 0x00, &middle));
    bytes.extend(from_peer(Role::Server, 0x80, &tail));
    assert_eq!(feed_all(&mut pair.server, &bytes), [Ok(Event::Message(Message::text(json_of(3000))))]);
}

#[test]
fn rsv1_on_a_continuation_or_a_control_frame_fails_with_1002() {
    let hello = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
    for bytes in [
        [from_peer(Role::Server, 0x01, b"a"), from_peer(Role::Server, 0xc0, &hello)].concat(),
        [from_peer(Role::Server, 0x41, &hello[..3]), from_peer(Role::Server, 0xc0, &hello[3..])].concat(),
        from_peer(Role::Server, 0xc9, b""),
        from_peer(Role::Server, 0xc8, &1000u16.to_be_bytes()),
    ] {
        let mut server = conn(Role::Server);
        server.set_deflate(DeflateParams::default(), &DeflateConfig::default());
        let events = feed_all(&mut server, &bytes);
        assert_eq!(events.last(), Some(&Err(Error::ReservedBits)), "{bytes:02x?}");
        assert_eq!(sent_frames(&mut server).pop().unwrap().payload, close_payload(1002, "reserved bits set"));
    }
}

#[test]
fn corrupt_data_and_bad_utf8_after_inflating_fail_with_1007() {
    let bad_utf8 = crate::deflate::compress_alone(b"ok \xff\xfe not utf-8", 6, 15);
    for (payload, error) in
        [(&[0xff, 0xff, 0xff][..], Error::InvalidCompressedData), (&bad_utf8[..], Error::InvalidUtf8)]
    {
        let mut server = conn(Role::Server);
        server.set_deflate(DeflateParams::default(), &DeflateConfig::default());
        let events = feed_all(&mut server, &from_peer(Role::Server, 0xc1, payload));
        assert_eq!(events, [Err(error.clone())]);
        let close = sent_frames(&mut server).pop().unwrap();
        assert_eq!(close.payload, close_payload(1007, error.reason()));
    }
}

#[test]
fn a_compression_bomb_gets_1009_at_the_decompressed_limit() {
    // 64 MiB of zeros in about 64 KiB: a 1 MiB chunk compressed once, repeated (each
    // chunk ends on a sync flush, so the copies concatenate into one valid stream).
    let chunk = crate::deflate::compress_alone(&vec![0u8; 1 << 20], 9, 15).to_vec();
    let mut chunk_flushed = chunk.clone();
    chunk_flushed.extend_from_slice(&[0x00, 0x00, 0xff, 0xff]);
    let bomb = chunk_flushed.repeat(64);
    assert!(bomb.len() < 128 * 1024, "{} bytes", bomb.len());
    let config = Config::default().max_message_size(1 << 20);
    let mut server = Connection::new(Role::Server, config);
    server.set_deflate(DeflateParams::default(), &DeflateConfig::default());
    let events = feed_all(&mut server, &from_peer(Role::Server, 0xc2, &bomb));
    let error = Error::MessageTooLarge { size: (1 << 20) + 1, max: 1 << 20 };
    assert_eq!(events, [Err(error.clone())]);
    assert_eq!(sent_frames(&mut server).pop().unwrap().payload, close_payload(1009, error.reason()));
    // Exactly at the limit it is accepted: one chunk is 1 MiB.
    let mut server = Connection::new(Role::Server, Config::default().max_message_size(1 << 20));
    server.set_deflate(DeflateParams::default(), &DeflateConfig::default());
    let events = feed_all(&mut server, &from_peer(Role::Server, 0xc2, &chunk));
    assert_eq!(events, [binary(vec![0u8; 1 << 20])]);
}

#[test]
fn a_fragmented_bomb_counts_every_fragment_against_the_limit() {
    let chunk = crate::deflate::compress_alone(&vec![b'z'; 600 * 1024], 6, 15).to_vec();
    let mut flushed = chunk.clone();
    flushed.extend_from_slice(&[0x00, 0x00, 0xff, 0xff]);
    let mut server = Connection::new(Role::Server, Config::default().max_message_size(1 << 20));
    server.set_deflate(DeflateParams::default(), &DeflateConfig::default());
    let mut bytes = from_peer(Role::Server, 0x42, &flushed);
    bytes.extend(from_peer(Role::Server, 0x80, &chunk));
    let events = feed_all(&mut server, &bytes);
    assert_eq!(events, [Err(Error::MessageTooLarge { size: (1 << 20) + 1, max: 1 << 20 })]);
}

#[test]
fn a_server_window_of_8_bits_is_honoured_by_sending_uncompressed() {
    let params = DeflateParams { server_max_window_bits: Some(8), ..Default::default() };
    let mut pair = deflate_pair(params, DeflateConfig::default());
    pair.client.send(Message::text(json_of(4096))).unwrap();
    let frames = echo_frames(&mut pair);
    assert_eq!(frames[0].b0, 0x81, "the server cannot compress with 256-byte windows");
    let events = feed_all(&mut pair.client, &wire_of(&frames[0], false));
    assert!(events == [Ok(Event::Message(Message::text(json_of(4096))))]);
}

#[test]
fn a_broadcast_is_compressed_once_per_setting_for_connections_without_context_takeover() {
    let alone = DeflateParams { server_no_context_takeover: true, ..Default::default() };
    let config = DeflateConfig::default();
    let frame = EncodedFrame::text(&json_of(8192));
    let mut servers: Vec<Connection> = (0..4).map(|_| conn(Role::Server)).collect();
    for server in &mut servers {
        server.set_deflate(alone, &config);
    }
    let mut narrow = conn(Role::Server);
    narrow.set_deflate(DeflateParams { server_max_window_bits: Some(10), ..alone }, &config);
    let mut keeps_context = conn(Role::Server);
    keeps_context.set_deflate(DeflateParams::default(), &config);
    let mut plain = conn(Role::Server);
    for server in servers.iter_mut().chain([&mut narrow, &mut keeps_context, &mut plain]) {
        server.send_encoded(&frame).unwrap();
    }
    assert_eq!(frame.compressed_copies(), 2, "one copy for 15 bits, one for 10");
    let first = take_outbound(&mut servers[0]);
    assert_eq!(first[0], 0xc1);
    for server in &mut servers[1..] {
        assert_eq!(take_outbound(server), first, "the same compressed bytes");
    }
    assert_eq!(take_outbound(&mut plain), frame.as_bytes().to_vec());
    // Every variant inflates to the message.
    for bytes in [first, take_outbound(&mut narrow), take_outbound(&mut keeps_context)] {
        let mut client = conn(Role::Client);
        client.set_deflate(DeflateParams::default(), &config);
        assert_eq!(feed_all(&mut client, &bytes), [Ok(Event::Message(Message::text(json_of(8192))))]);
    }
}

#[test]
fn compressed_traffic_survives_random_chunking_and_a_clean_close() {
    for seed in 1..4 {
        let mut pair = Pair::chunked(Config::default(), 1 + seed as usize * 50, seed);
        let params = DeflateParams { client_no_context_takeover: seed == 2, ..Default::default() };
        pair.client.set_deflate(params, &DeflateConfig::default().threshold(16));
        pair.server.set_deflate(params, &DeflateConfig::default().threshold(16));
        let mut rng = Rng::new(seed);
        let messages: Vec<Message> = (0..40)
            .map(|i| match i % 3 {
                0 => Message::text(json_of(rng.below(10_000))),
                1 => {
                    let len = rng.below(3000);
                    Message::binary(rng.bytes(len))
                }
                _ => Message::text(""),
            })
            .collect();
        for m in &messages {
            pair.client.send(m.clone()).unwrap();
        }
        for event in pair.server_received() {
            match event {
                Ok(Event::Message(m)) => pair.server.send(m).unwrap(),
                other => panic!("unexpected {other:?}"),
            }
        }
        let expected: Vec<_> = messages.iter().cloned().map(|m| Ok(Event::Message(m))).collect();
        assert_eq!(pair.client_received(), expected, "seed {seed}");
        pair.client.close(std::time::Instant::now(), CloseCode::NORMAL, "").unwrap();
        assert_eq!(pair.server_received(), [closed(CloseCode::NORMAL, "")]);
    }
}

/// The frames a client with permessage-deflate (context takeover both ways) sends for
/// `steps`, and what a server decodes from them.
fn client_to_server(
    config: DeflateConfig,
    steps: &[(&'static [u8], bool, bool)],
) -> (Vec<Frame>, Vec<Result<Event, Error>>) {
    let mut client = conn(Role::Client);
    client.set_deflate(DeflateParams::default(), &config);
    for &(payload, fragment, fin) in steps {
        if fragment {
            client.send_fragment(false, Bytes::from_static(payload), fin).unwrap();
        } else {
            client.send(Message::binary(payload)).unwrap();
        }
    }
    let bytes = take_outbound(&mut client);
    let mut server = conn(Role::Server);
    server.set_deflate(DeflateParams::default(), &config);
    (frames(&bytes), feed_all(&mut server, &bytes))
}

/// docs/RELIABILITY.md H4 (a defect, fixed): RFC 7692 §7.2.1 has the sender end every compressed
/// message with an empty stored block (then drop its last four octets), so a message's
/// payload is never empty: an empty message is the single octet 0x00 (§7.2.3.6). With
/// context takeover (or inside a fragmented message) the compressor has already flushed,
/// zlib emits nothing for no input, and the payload goes out empty. The receiver appends
/// `00 00 ff ff` to it (§7.2.2), which, byte-aligned, is read as a stored block of 65,280
/// bytes: the messages after it are corrupted (binary: garbage delivered; text: 1007).
#[test]
fn an_empty_message_or_last_fragment_with_context_takeover_keeps_the_stream_in_step() {
    let zeros: &'static [u8] = &[0u8; 2000];
    // An empty message after another one (compression of small messages on).
    let (sent, got) = client_to_server(
        DeflateConfig::default().threshold(0),
        &[(b"a", false, true), (b"", false, true), (b"", false, true), (zeros, false, true)],
    );
    assert_eq!(got, [binary(&b"a"[..]), binary(Bytes::new()), binary(Bytes::new()), binary(zeros)]);
    assert_eq!(sent[1].payload, [0x00], "an empty message is one empty stored block");
    // The default config: a fragmented message whose last fragment is empty (as
    // `ws.send(data, { fin: false })` then `ws.send('', { fin: true })` makes), then a
    // message over the threshold.
    let (sent, got) = client_to_server(
        DeflateConfig::default(),
        &[(b"frag", true, false), (b"", true, true), (zeros, false, true)],
    );
    assert_eq!(got, [binary(&b"frag"[..]), binary(zeros)]);
    assert_eq!(sent[1].payload, [0x00]);
}

#[test]
fn a_server_that_compresses_each_message_alone_can_have_its_copy_made_ahead() {
    let alone = DeflateParams { server_no_context_takeover: true, ..DeflateParams::default() };
    let pair = deflate_pair(alone, DeflateConfig::default());
    assert_eq!(pair.client.compress_alone(), None, "a client masks: nothing to make ahead");
    let takeover = deflate_pair(DeflateParams::default(), DeflateConfig::default());
    assert_eq!(takeover.server.compress_alone(), None, "its output depends on what it sent before");
    let mut server = pair.server;
    let setting = server.compress_alone().unwrap();
    assert!(setting.compresses(1024) && !setting.compresses(10), "the threshold");
    let small = EncodedFrame::text("tiny");
    small.prepare_compressed(setting);
    assert_eq!(small.compressed_copies(), 0, "under the threshold: nothing to make");
    let frame = EncodedFrame::text(&json_of(64 * 1024));
    frame.prepare_compressed(setting);
    assert_eq!(frame.compressed_copies(), 1, "made ahead, outside the connection");
    server.send_encoded(&frame).unwrap();
    assert_eq!(frame.compressed_copies(), 1, "queued as made");
    let sent = sent_frames(&mut server);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].b0, 0xc1, "FIN, RSV1, text");
    assert!(sent[0].payload.len() < 4 * 1024);
}
