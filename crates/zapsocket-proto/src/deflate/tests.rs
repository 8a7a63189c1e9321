//! Negotiation tables (RFC 7692 §5, §7.1) and the codec against the RFC's own bytes.

use super::codec::{Compressor, Decompressor, Inflated};
use super::negotiate::parse_extensions;
use super::*;

/// The server's answer (as a header) to these header lines, context takeover allowed.
fn answer(config: &DeflateConfig, lines: &[&str]) -> Option<String> {
    config.accept_values(lines.iter().map(|l| l.as_bytes()), true).map(|p| p.to_header())
}

#[test]
fn extension_lists_parse_with_quotes_spaces_and_empty_elements() {
    let list =
        parse_extensions(b" , foo; a=1 ;b=\"2\", permessage-deflate;client_max_window_bits,,").unwrap();
    let names: Vec<_> = list.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["foo", "permessage-deflate"]);
    assert_eq!(list[0].params, [("a".into(), Some("1".into())), ("b".into(), Some("2".into()))]);
    assert_eq!(list[1].params, [("client_max_window_bits".into(), None)]);
    for bad in ["foo;", "foo bar", "foo; a=\"1", "foo; a=\"x y\"", "; a", "foo; =1", "foo; a="] {
        assert!(parse_extensions(bad.as_bytes()).is_err(), "{bad:?} parsed");
    }
}

#[test]
fn a_browser_offer_gets_no_context_takeover_from_a_default_server() {
    // What Chrome and Firefox send. The default server keeps no compressor per connection.
    let config = DeflateConfig::default();
    let request = [b"permessage-deflate; client_max_window_bits".as_slice()];
    let params = config.accept_values(request, false).unwrap();
    assert_eq!(params.to_header(), "permessage-deflate; server_no_context_takeover");
    // Under the context-takeover limit the answer is plain.
    assert_eq!(
        answer(&config, &["permessage-deflate; client_max_window_bits"]).unwrap(),
        "permessage-deflate"
    );
}

#[test]
fn each_parameter_of_an_offer_is_answered() {
    let config = DeflateConfig::default();
    let cases = [
        ("permessage-deflate", "permessage-deflate"),
        ("permessage-deflate; server_no_context_takeover", "permessage-deflate; server_no_context_takeover"),
        ("permessage-deflate; client_no_context_takeover", "permessage-deflate; client_no_context_takeover"),
        ("permessage-deflate; server_max_window_bits=10", "permessage-deflate; server_max_window_bits=10"),
        (
            "permessage-deflate; server_max_window_bits=\"12\"",
            "permessage-deflate; server_max_window_bits=12",
        ),
        // Offered with a value: the answer confirms it.
        ("permessage-deflate; client_max_window_bits=11", "permessage-deflate; client_max_window_bits=11"),
        // 8 bits is accepted: the server then sends uncompressed (zlib cannot use 8).
        ("permessage-deflate; server_max_window_bits=8", "permessage-deflate; server_max_window_bits=8"),
    ];
    for (offer, expected) in cases {
        assert_eq!(answer(&config, &[offer]).as_deref(), Some(expected), "{offer}");
    }
}

#[test]
fn the_server_config_lowers_windows_and_asks_for_no_context_takeover() {
    let config = DeflateConfig::default()
        .server_max_window_bits(10)
        .client_max_window_bits(12)
        .client_no_context_takeover(true)
        .server_no_context_takeover(true);
    let both = "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
                server_max_window_bits=10; client_max_window_bits=12";
    assert_eq!(answer(&config, &["permessage-deflate; client_max_window_bits"]).unwrap(), both);
    // A client that asks for less than the config gets its own value.
    let offer = "permessage-deflate; client_max_window_bits=9; server_max_window_bits=9";
    assert!(
        answer(&config, &[offer]).unwrap().ends_with("server_max_window_bits=9; client_max_window_bits=9")
    );
    // Without client_max_window_bits in the offer, the answer must not have it (§7.1.2.2).
    assert!(!answer(&config, &["permessage-deflate"]).unwrap().contains("client_max_window_bits"));
}

#[test]
fn invalid_offers_are_declined_and_the_next_one_is_taken() {
    let config = DeflateConfig::default();
    let invalid = [
        "permessage-deflate; unknown_param",
        "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
        "permessage-deflate; server_no_context_takeover=1",
        "permessage-deflate; server_max_window_bits",
        "permessage-deflate; server_max_window_bits=7",
        "permessage-deflate; server_max_window_bits=16",
        "permessage-deflate; server_max_window_bits=010",
        "permessage-deflate; client_max_window_bits=abc",
    ];
    for offer in invalid {
        assert_eq!(answer(&config, &[offer]), None, "{offer}");
        let fallback = format!("{offer}, permessage-deflate; client_no_context_takeover");
        assert_eq!(
            answer(&config, &[&fallback]).as_deref(),
            Some("permessage-deflate; client_no_context_takeover"),
            "{fallback}"
        );
    }
}

#[test]
fn offers_are_tried_in_order_across_header_lines() {
    let config = DeflateConfig::default();
    let lines = [
        "x-webkit-deflate-frame",
        "permessage-deflate; server_max_window_bits=99",
        "not a valid line;;",
        "permessage-deflate; server_max_window_bits=9, permessage-deflate",
    ];
    assert_eq!(answer(&config, &lines).unwrap(), "permessage-deflate; server_max_window_bits=9");
    assert_eq!(answer(&config, &["x-webkit-deflate-frame", "foo"]), None);
    assert_eq!(answer(&config, &[]), None);
}

#[test]
fn the_client_offer_states_its_config() {
    assert_eq!(DeflateConfig::default().offer(), "permessage-deflate; client_max_window_bits");
    let config = DeflateConfig::default()
        .server_no_context_takeover(true)
        .client_no_context_takeover(true)
        .server_max_window_bits(10)
        .client_max_window_bits(11);
    assert_eq!(
        config.offer(),
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
         server_max_window_bits=10; client_max_window_bits=11"
    );
}

fn check(config: &DeflateConfig, lines: &[&str]) -> Result<Option<DeflateParams>, String> {
    config.check_response(lines.iter().map(|l| l.as_bytes()))
}

#[test]
fn the_client_accepts_valid_answers() {
    let config = DeflateConfig::default();
    assert_eq!(check(&config, &[]), Ok(None));
    let all = "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
               server_max_window_bits=9; client_max_window_bits=10";
    let params = check(&config, &[all]).unwrap().unwrap();
    assert_eq!(
        params,
        DeflateParams {
            server_no_context_takeover: true,
            client_no_context_takeover: true,
            server_max_window_bits: Some(9),
            client_max_window_bits: Some(10),
        }
    );
    // What was offered holds even when the answer leaves it out.
    let config = DeflateConfig::default().client_no_context_takeover(true).client_max_window_bits(12);
    let params = check(&config, &["permessage-deflate"]).unwrap().unwrap();
    assert!(params.client_no_context_takeover);
    assert_eq!(params.client_max_window_bits, Some(12));
}

#[test]
fn the_client_refuses_invalid_answers() {
    let config = DeflateConfig::default().server_no_context_takeover(true).server_max_window_bits(10);
    let ok = "permessage-deflate; server_no_context_takeover; server_max_window_bits=10";
    assert!(check(&config, &[ok]).unwrap().is_some());
    let bad = [
        "permessage-deflate; server_max_window_bits=10", // snct missing
        "permessage-deflate; server_no_context_takeover", // window missing
        "permessage-deflate; server_no_context_takeover; server_max_window_bits=11", // looser
        "permessage-deflate; server_no_context_takeover; server_max_window_bits=10; foo", // unknown
        "permessage-deflate; server_no_context_takeover; server_max_window_bits=10; client_max_window_bits",
        "x-webkit-deflate-frame",
        "permessage-deflate; server_no_context_takeover; server_max_window_bits=10, permessage-deflate",
        "permessage-deflate;",
    ];
    for answer in bad {
        assert!(check(&config, &[answer]).is_err(), "{answer} was accepted");
    }
    let lowered = DeflateConfig::default().client_max_window_bits(10);
    assert!(check(&lowered, &["permessage-deflate; client_max_window_bits=11"]).is_err());
}

/// Inflates a whole message (the RFC 7692 §7.2.3 examples) with a fresh decompressor.
fn inflate(decompressor: &mut Decompressor, frames: &[&[u8]]) -> Result<Vec<u8>, Inflated> {
    let mut out = Vec::new();
    for (i, frame) in frames.iter().enumerate() {
        decompressor.inflate(frame, i + 1 == frames.len(), &mut out, 1 << 20)?;
    }
    Ok(out)
}

#[test]
fn the_rfc_7692_examples_inflate_to_hello() {
    let mut d = Decompressor::take(15);
    // §7.2.3.1 one frame, §7.2.3.1 two fragments.
    assert_eq!(inflate(&mut d, &[&[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]]).unwrap(), b"Hello");
    assert_eq!(inflate(&mut d, &[&[0xf2, 0x48, 0xcd], &[0xc9, 0xc9, 0x07, 0x00]]).unwrap(), b"Hello");
    // §7.2.3.2: the second message refers back to the first (context takeover).
    assert_eq!(inflate(&mut d, &[&[0xf2, 0x00, 0x11, 0x00, 0x00]]).unwrap(), b"Hello");
    // §7.2.3.3 a stored block, §7.2.3.4 a final block, §7.2.3.5 two blocks.
    let mut d = Decompressor::take(15);
    let stored = [0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00];
    assert_eq!(inflate(&mut d, &[&stored]).unwrap(), b"Hello");
    assert_eq!(inflate(&mut d, &[&[0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00]]).unwrap(), b"Hello");
    let two = [0xf2, 0x48, 0x05, 0x00, 0x00, 0x00, 0xff, 0xff, 0xca, 0xc9, 0xc9, 0x07, 0x00];
    assert_eq!(inflate(&mut d, &[&two]).unwrap(), b"Hello");
    assert_eq!(inflate(&mut d, &[&[0xff, 0xff, 0xff]]), Err(Inflated::Corrupt));
}

#[test]
fn compressing_hello_gives_what_the_rfc_inflates() {
    let mut c = Compressor::take(6, 15);
    let first = c.compress(b"Hello", true);
    let second = c.compress(b"Hello", true);
    assert!(second.len() < first.len(), "context takeover: {first:02x?} then {second:02x?}");
    let mut d = Decompressor::take(15);
    assert_eq!(inflate(&mut d, &[&first]).unwrap(), b"Hello");
    assert_eq!(inflate(&mut d, &[&second]).unwrap(), b"Hello");
    c.give_back();
}

#[test]
fn inflating_stops_at_the_limit_without_growing_past_it() {
    let mut c = Compressor::take(6, 15);
    let zeros = c.compress(&vec![0u8; 1 << 20], true);
    for limit in [0, 1, 4096, (1 << 20) - 1] {
        let mut d = Decompressor::take(15);
        let mut out = Vec::new();
        assert_eq!(d.inflate(&zeros, true, &mut out, limit), Err(Inflated::TooLarge), "limit {limit}");
        assert!(out.capacity() <= limit, "capacity {} over the limit {limit}", out.capacity());
    }
    let mut d = Decompressor::take(15);
    let mut out = Vec::new();
    assert_eq!(d.inflate(&zeros, true, &mut out, 1 << 20), Ok(()));
    assert_eq!((out.len(), out.capacity()), (1 << 20, 1 << 20));
}

#[test]
fn thousands_of_offers_and_garbage_params_are_declined_in_one_pass_until_a_valid_one() {
    // docs/RELIABILITY.md B11: many offers, duplicate parameters, absurd window bits: each
    // invalid offer is declined (never a panic, never a refusal of the handshake), the first
    // valid one is answered, and with none valid the server answers without the extension.
    let config = DeflateConfig::default();
    let mut bad: Vec<String> = Vec::new();
    for i in 0..2000 {
        bad.push(match i % 5 {
            0 => "permessage-deflate; server_max_window_bits=99".into(),
            1 => "permessage-deflate; client_no_context_takeover; client_no_context_takeover".into(),
            2 => format!("permessage-deflate; x{i}=1"),
            3 => "permessage-deflate; client_max_window_bits=4294967296".into(),
            _ => format!("x-other-{i}; a=b"),
        });
    }
    let all_bad = bad.join(", ");
    assert_eq!(answer(&config, &[&all_bad]), None);
    let with_good = format!("{all_bad}, permessage-deflate; server_max_window_bits=12");
    assert_eq!(
        answer(&config, &[&with_good]).as_deref(),
        Some("permessage-deflate; server_max_window_bits=12")
    );
    // A malformed line is skipped as a whole; the next line is still read.
    let lines = [";;;,,,\"".repeat(1000), "permessage-deflate".into()];
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    assert_eq!(answer(&config, &lines).as_deref(), Some("permessage-deflate"));
}

#[test]
fn a_client_window_of_8_bits_is_answered_and_never_given_to_zlib() {
    // docs/RELIABILITY.md H5: `client_max_window_bits=8` is valid (RFC 7692 §7.1.2.2); the
    // server confirms it and inflates with a 9-bit window (zlib's smallest, a superset);
    // the values zlib cannot take are declined.
    let config = DeflateConfig::default();
    let answered = answer(&config, &["permessage-deflate; client_max_window_bits=8"]).unwrap();
    assert_eq!(answered, "permessage-deflate; client_max_window_bits=8");
    for bad in ["0", "7", "16", "08", "-9", "9.5", ""] {
        let offer = format!("permessage-deflate; client_max_window_bits={bad}");
        assert_eq!(answer(&config, &[&offer]), None, "{offer}");
    }
    let mut c = Compressor::take(6, 9);
    let payload: Vec<u8> = (0..20_000u32).map(|i| (i % 97) as u8).collect();
    let compressed = c.compress(&payload, true);
    let mut d = Decompressor::take(8);
    let mut out = Vec::new();
    assert_eq!(d.inflate(&compressed, true, &mut out, 1 << 20), Ok(()));
    assert_eq!(out, payload);
}
