//! Arbitrary bytes as the server's answer to a client's opening handshake, fed in pieces
//! of a size the first byte picks; the client offers subprotocols and, per the first byte,
//! permessage-deflate with one of a few settings. The client's key is random, so the
//! `Sec-WebSocket-Accept` value of RFC 6455's example (`s3pPLMBiTxaQ9kYGzzhZRbK+xOo=`)
//! stands for the right one wherever it appears. Checked: a refusal over the extensions
//! carries close 1010; an accepted response chose an offered subprotocol, has exactly one
//! right accept value, agreed deflate parameters within what was asked, and its head ends at
//! the first empty line with the rest kept as leftover.
#![no_main]

use libfuzzer_sys::fuzz_target;
use zapsocket_proto::CloseCode;
use zapsocket_proto::deflate::DeflateConfig;
use zapsocket_proto::handshake::{ClientHandshake, RequestParser, accept_key};

const RFC_ACCEPT: &[u8] = b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

fuzz_target!(|data: &[u8]| {
    let Some((&how, data)) = data.split_first() else { return };
    let deflate = match how & 3 {
        0 => None,
        1 => Some(DeflateConfig::default()),
        2 => Some(DeflateConfig::default().client_no_context_takeover(true).server_max_window_bits(10)),
        _ => Some(DeflateConfig::default().server_no_context_takeover(true).client_max_window_bits(9)),
    };
    let piece = match usize::from(how >> 2) {
        0 => data.len().max(1),
        n => n,
    };
    let protocols = ["chat".to_owned(), "zap.v1".to_owned()];
    let mut client = ClientHandshake::new("example.com", "/", &[], &protocols);
    if let Some(config) = &deflate {
        client = client.deflate(config.clone());
    }
    let accept = {
        let request =
            RequestParser::default().feed(client.request()).ok().flatten().expect("our own request parses");
        accept_key(request.header_bytes("sec-websocket-key").expect("our request has a key"))
    };
    let mut data = data.to_vec();
    for i in 0..data.len().saturating_sub(RFC_ACCEPT.len() - 1) {
        if data[i..].starts_with(RFC_ACCEPT) {
            data[i..i + RFC_ACCEPT.len()].copy_from_slice(accept.as_bytes());
        }
    }
    let mut response = None;
    for chunk in data.chunks(piece) {
        match client.feed(chunk) {
            Ok(None) => {}
            Ok(Some(r)) => {
                assert!(response.is_none(), "a second response");
                response = Some(r);
            }
            Err(e) => {
                assert!(response.is_none());
                if let Some(code) = e.close_code() {
                    assert_eq!((code, e.status()), (CloseCode::MANDATORY_EXTENSION, 101), "{e:?}");
                    assert!(deflate.is_some() || e.reason().contains("not offered"), "{e:?}");
                }
                return;
            }
        }
    }
    let Some(response) = response else { return };
    let leftover = client.take_leftover();
    assert!(data.ends_with(&leftover));
    let head_len = data.len() - leftover.len();
    assert_eq!(head_end(&data), Some(head_len), "the head ends at the first empty line");
    if let Some(p) = &response.protocol {
        assert!(protocols.contains(p), "chose {p:?}");
    }
    let accepts: Vec<_> =
        response.headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case("sec-websocket-accept")).collect();
    assert!(matches!(&accepts[..], [(_, v)] if v.trim_ascii() == accept.as_bytes()));
    match (&deflate, response.deflate) {
        (None, Some(p)) => panic!("deflate agreed without an offer: {p:?}"),
        (_, None) => {}
        (Some(config), Some(p)) => {
            assert!(!config.server_no_context_takeover || p.server_no_context_takeover);
            assert!(!config.client_no_context_takeover || p.client_no_context_takeover);
            assert!(config.server_max_window_bits == 15 || p.server_max_window_bits.is_some());
            assert!(p.server_max_window_bits.unwrap_or(15) <= config.server_max_window_bits);
            assert!(p.client_max_window_bits.unwrap_or(15) <= config.client_max_window_bits);
            assert!(p.server_max_window_bits.is_none_or(|b| (8..=15).contains(&b)));
            assert!(p.client_max_window_bits.is_none_or(|b| (8..=15).contains(&b)));
        }
    }
});

/// The length of the head: up to its first empty line (LF LF or LF CR LF).
fn head_end(data: &[u8]) -> Option<usize> {
    (0..data.len()).find_map(|i| match &data[i..] {
        [b'\n', b'\n', ..] => Some(i + 2),
        [b'\n', b'\r', b'\n', ..] => Some(i + 3),
        _ => None,
    })
}
