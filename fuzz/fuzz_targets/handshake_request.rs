//! Arbitrary bytes as a client's request head, fed in pieces of a size the first byte
//! picks, to a parser with the default or with tight limits. Checked: the head ends at
//! the first empty line and within the limits, the rest is kept as leftover, a refusal
//! has a 400 or 431 status, a valid upgrade gets the accept value of its key, and the
//! server's permessage-deflate answer to the offers reads back the same on a client.
#![no_main]

use libfuzzer_sys::fuzz_target;
use zapsocket_proto::deflate::DeflateConfig;
use zapsocket_proto::handshake::{HandshakeLimits, Request, RequestParser, ServerResponse, accept_key};

fuzz_target!(|data: &[u8]| {
    let Some((&how, data)) = data.split_first() else { return };
    let limits = match how & 1 {
        0 => HandshakeLimits::default(),
        _ => HandshakeLimits::default().max_head_size(512).max_headers(8),
    };
    let piece = match usize::from(how >> 2) {
        0 => data.len().max(1),
        n => n,
    };
    let mut parser = RequestParser::new(limits.clone());
    let mut request = None;
    for chunk in data.chunks(piece) {
        match parser.feed(chunk) {
            Ok(None) => {}
            Ok(Some(r)) => {
                assert!(request.is_none(), "a second request from one parser");
                request = Some(r);
            }
            Err(e) => {
                assert!(request.is_none());
                assert!(matches!(e.status(), 400 | 431), "{e:?}");
                assert_eq!(e.close_code(), None);
                assert!(e.to_response().starts_with(format!("HTTP/1.1 {} ", e.status()).as_bytes()));
                return;
            }
        }
    }
    let Some(request) = request else {
        assert!(
            head_end(data).is_none() && data.len() <= limits.max_head_size,
            "a head was neither parsed nor refused"
        );
        return;
    };
    let leftover = parser.take_leftover();
    assert!(data.ends_with(&leftover));
    let head_len = data.len() - leftover.len();
    assert_eq!(head_end(data), Some(head_len), "the head ends at the first empty line");
    assert!(head_len <= limits.max_head_size);
    assert!(request.headers().count() <= limits.max_headers);
    assert!(request.target().starts_with(request.path()));
    check_upgrade(&request, how & 2 != 0);
});

fn check_upgrade(request: &Request, context_takeover_allowed: bool) {
    let accept = match request.validate_upgrade() {
        Ok(accept) => accept,
        Err(e) => {
            assert!(matches!(e.status(), 400 | 405 | 426), "{e:?}");
            return;
        }
    };
    assert_eq!(request.method(), "GET");
    let key = request.header_bytes("sec-websocket-key").expect("a validated request has a key");
    assert_eq!(accept, accept_key(key.trim_ascii()));
    for config in [
        DeflateConfig::default(),
        DeflateConfig::default()
            .server_no_context_takeover(true)
            .server_max_window_bits(10)
            .client_max_window_bits(9),
    ] {
        let Some(params) = config.accept(request, context_takeover_allowed) else { continue };
        assert!(params.server_max_window_bits.unwrap_or(15) <= config.server_max_window_bits);
        assert!(params.client_max_window_bits.is_none_or(|b| b <= config.client_max_window_bits));
        assert!(
            params.server_no_context_takeover
                || (context_takeover_allowed && !config.server_no_context_takeover)
        );
        let header = params.to_header();
        let read_back = DeflateConfig::default().check_response([header.as_bytes()]);
        assert_eq!(read_back, Ok(Some(params)), "{header}");
        let protocol = request.subprotocols().first().map(|p| (*p).to_owned());
        let response =
            ServerResponse { protocol, extensions: Some(header), headers: Vec::new() }.encode(&accept);
        let mut headers = [httparse::EMPTY_HEADER; 8];
        let mut parsed = httparse::Response::new(&mut headers);
        assert!(matches!(parsed.parse(&response), Ok(httparse::Status::Complete(n)) if n == response.len()));
        assert_eq!(parsed.code, Some(101));
    }
}

/// The length of the head: up to its first empty line (LF LF or LF CR LF).
fn head_end(data: &[u8]) -> Option<usize> {
    (0..data.len()).find_map(|i| match &data[i..] {
        [b'\n', b'\n', ..] => Some(i + 2),
        [b'\n', b'\r', b'\n', ..] => Some(i + 3),
        _ => None,
    })
}
