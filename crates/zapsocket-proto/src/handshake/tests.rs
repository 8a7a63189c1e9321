//! Opening handshake tests (RFC 6455 §4): bytes in, a request or a status out.

use super::*;

mod client;

/// The request of RFC 6455 §1.3, with its sample key.
const HEADERS: [(&str, &str); 6] = [
    ("Host", "server.example.com"),
    ("Upgrade", "websocket"),
    ("Connection", "Upgrade"),
    ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ("Origin", "http://example.com"),
    ("Sec-WebSocket-Version", "13"),
];

/// A request head: `request_line`, the sample headers with `replace` swapped in (an
/// empty value drops the header), then `\r\n\r\n`.
fn head(request_line: &str, replace: &[(&str, &str)]) -> Vec<u8> {
    let mut out = format!("{request_line}\r\n");
    for (name, value) in HEADERS {
        let value = replace.iter().find(|(n, _)| *n == name).map_or(value, |(_, v)| *v);
        if !value.is_empty() {
            out.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    out.push_str("\r\n");
    out.into_bytes()
}

fn sample() -> Vec<u8> {
    head("GET /chat?room=1 HTTP/1.1", &[])
}

/// Parses a whole head at once.
fn parse(bytes: &[u8]) -> Result<Option<Request>, HandshakeError> {
    RequestParser::default().feed(bytes)
}

/// The status a server answers to `bytes`: 101 if the upgrade is valid.
fn status(bytes: &[u8]) -> u16 {
    match parse(bytes) {
        Ok(Some(request)) => request.validate_upgrade().map_or_else(|e| e.status(), |_| 101),
        Ok(None) => panic!("incomplete head"),
        Err(e) => e.status(),
    }
}

#[test]
fn the_accept_key_matches_rfc_6455_section_1_3() {
    assert_eq!(accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

#[test]
fn the_sample_request_is_valid_and_parsed() {
    let request = parse(&sample()).unwrap().unwrap();
    assert_eq!(request.method(), "GET");
    assert_eq!(request.target(), "/chat?room=1");
    assert_eq!((request.path(), request.query()), ("/chat", Some("room=1")));
    assert_eq!(request.header("HOST"), Some("server.example.com"));
    assert_eq!(request.header("origin"), Some("http://example.com"));
    assert_eq!(request.headers().count(), 6);
    assert!(request.is_upgrade());
    assert_eq!(request.validate_upgrade(), Ok("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=".to_owned()));
}

#[test]
fn a_request_fed_byte_by_byte_is_parsed_once_complete() {
    let bytes = sample();
    let mut parser = RequestParser::default();
    for &byte in &bytes[..bytes.len() - 1] {
        assert_eq!(parser.feed(&[byte]), Ok(None));
    }
    let request = parser.feed(&bytes[bytes.len() - 1..]).unwrap().unwrap();
    assert_eq!(request, parse(&bytes).unwrap().unwrap());
    assert_eq!(parser.take_leftover(), b"");
}

#[test]
fn bytes_after_the_head_are_kept_for_the_connection() {
    let mut bytes = sample();
    let frame = [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58];
    bytes.extend_from_slice(&frame);
    let mut parser = RequestParser::default();
    let split = bytes.len() - 20;
    assert_eq!(parser.feed(&bytes[..split]), Ok(None));
    assert!(parser.feed(&bytes[split..]).unwrap().is_some());
    assert_eq!(parser.take_leftover(), frame);
    assert_eq!(parser.take_leftover(), b"", "taken once");
}

#[test]
fn bytes_fed_after_the_head_join_the_leftover() {
    let mut parser = RequestParser::default();
    let bytes = sample();
    // In two pieces, so that the parser has scanned part of the head before.
    assert_eq!(parser.feed(&bytes[..40]), Ok(None));
    assert!(parser.feed(&bytes[40..]).unwrap().is_some());
    assert_eq!(parser.feed(b"\x81"), Ok(None));
    assert_eq!(parser.feed(b"\x80"), Ok(None));
    assert_eq!(parser.take_leftover(), b"\x81\x80");
}

#[test]
fn only_get_is_accepted() {
    assert_eq!(status(&head("POST /chat HTTP/1.1", &[])), 405);
    let error = parse(&head("PUT / HTTP/1.1", &[])).unwrap().unwrap().validate_upgrade().unwrap_err();
    assert!(String::from_utf8(error.to_response()).unwrap().contains("\r\nAllow: GET\r\n"));
}

#[test]
fn missing_or_bad_headers_are_400() {
    assert_eq!(status(&head("GET / HTTP/1.1", &[("Host", "")])), 400);
    assert_eq!(status(&head("GET / HTTP/1.1", &[("Connection", "")])), 400);
    assert_eq!(status(&head("GET / HTTP/1.1", &[("Connection", "keep-alive")])), 400);
    assert_eq!(status(&head("GET / HTTP/1.1", &[("Sec-WebSocket-Key", "")])), 400);
    for bad_key in ["not base64!", "dGhlIHNhbXBsZQ==", "dGhlIHNhbXBsZSBub25jZSBub25jZQ=="] {
        assert_eq!(status(&head("GET / HTTP/1.1", &[("Sec-WebSocket-Key", bad_key)])), 400, "{bad_key}");
    }
}

#[test]
fn a_second_key_is_400() {
    let sample = String::from_utf8(sample()).unwrap();
    let twice = sample.replace("Origin:", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nOrigin:");
    assert_eq!(status(sample.as_bytes()), 101);
    let error = parse(twice.as_bytes()).unwrap().unwrap().validate_upgrade().unwrap_err();
    assert_eq!((error.status(), error.reason()), (400, "more than one Sec-WebSocket-Key"));
}

#[test]
fn a_head_with_bare_lf_line_ends_is_parsed_when_its_empty_line_arrives() {
    let crlf = String::from_utf8(sample()).unwrap();
    let lf = crlf.replace("\r\n", "\n");
    let mixed = crlf.replacen("\r\n", "\n", 3);
    for text in [&lf, &mixed, &format!("{}\r\n", &lf[..lf.len() - 1])] {
        // Byte by byte: nothing until the last byte, then the same request as with CRLF.
        let mut parser = RequestParser::default();
        let (last, rest) = text.as_bytes().split_last().unwrap();
        for byte in rest {
            assert_eq!(parser.feed(std::slice::from_ref(byte)), Ok(None), "{text:?}");
        }
        let request = parser.feed(&[*last]).unwrap().unwrap();
        assert_eq!(request.validate_upgrade(), parse(crlf.as_bytes()).unwrap().unwrap().validate_upgrade());
        assert_eq!(request.header("origin"), Some("http://example.com"));
    }
    // A lone CR is no line end: the head is still incomplete.
    assert_eq!(parse(b"GET / HTTP/1.1\rHost: a\r\r"), Ok(None));
}

#[test]
fn header_tokens_are_case_insensitive_lists() {
    let replace = [("Connection", "keep-alive, UPGRADE"), ("Upgrade", "WebSocket")];
    assert_eq!(status(&head("GET / HTTP/1.1", &replace)), 101);
}

#[test]
fn a_missing_upgrade_is_426() {
    assert_eq!(status(&head("GET / HTTP/1.1", &[("Upgrade", "")])), 426);
    assert_eq!(status(&head("GET / HTTP/1.1", &[("Upgrade", "h2c")])), 426);
}

#[test]
fn an_unsupported_version_is_426_and_names_version_13() {
    for version in ["8", "", "13, 8"] {
        let request = parse(&head("GET / HTTP/1.1", &[("Sec-WebSocket-Version", version)])).unwrap().unwrap();
        let error = request.validate_upgrade().unwrap_err();
        assert_eq!(error.status(), 426, "version {version:?}");
        let response = String::from_utf8(error.to_response()).unwrap();
        assert!(response.starts_with("HTTP/1.1 426 Upgrade Required\r\n"), "{response}");
        assert!(response.contains("\r\nSec-WebSocket-Version: 13\r\n"), "{response}");
    }
}

#[test]
fn http_1_0_and_garbage_are_400() {
    assert_eq!(status(&head("GET / HTTP/1.0", &[])), 400);
    assert_eq!(status(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n"), 400);
    assert_eq!(status(b"GET\r\n\r\n"), 400);
    assert_eq!(status(b"GET / HTTP/1.1\r\nno colon here\r\n\r\n"), 400);
}

#[test]
fn a_head_over_max_head_size_is_431() {
    let limits = HandshakeLimits { max_head_size: 200, ..HandshakeLimits::default() };
    // Exactly at the limit: accepted.
    let mut parser = RequestParser::new(limits.clone());
    assert!(parser.feed(&head_of_len(200)).unwrap().is_some());
    // One byte more: refused, whole or in pieces.
    let over = head_of_len(201);
    assert_eq!(RequestParser::new(limits.clone()).feed(&over).unwrap_err().status(), 431);
    let mut parser = RequestParser::new(limits);
    assert_eq!(parser.feed(&over[..150]), Ok(None));
    assert_eq!(parser.feed(&over[150..]).unwrap_err().status(), 431);
}

/// A valid request head of exactly `len` bytes (padded in the Origin header).
fn head_of_len(len: usize) -> Vec<u8> {
    let base = head("GET / HTTP/1.1", &[("Origin", "o")]);
    let origin = "o".repeat(1 + len - base.len());
    let out = head("GET / HTTP/1.1", &[("Origin", &origin)]);
    assert_eq!(out.len(), len);
    out
}

#[test]
fn a_head_that_never_ends_is_431_once_past_the_limit() {
    let limits = HandshakeLimits { max_head_size: 1024, ..HandshakeLimits::default() };
    let mut parser = RequestParser::new(limits);
    assert_eq!(parser.feed(b"GET / HTTP/1.1\r\nX-Long: "), Ok(None));
    let mut fed = 24;
    let result = loop {
        match parser.feed(&[b'a'; 100]) {
            Ok(None) => fed += 100,
            other => break other,
        }
    };
    assert_eq!(result.unwrap_err().status(), 431);
    assert!(fed <= 1024 && fed + 100 > 1024, "refused after {fed} bytes");
}

#[test]
fn the_default_limits_refuse_an_endless_head() {
    let mut parser = RequestParser::default();
    let mut result = parser.feed(b"GET / HTTP/1.1\r\n");
    let mut fed = 0;
    while let Ok(None) = result {
        result = parser.feed(&[b'x'; 1000]);
        fed += 1000;
        assert!(fed < 32 * 1024, "never refused");
    }
    assert_eq!(result.unwrap_err().status(), 431);
}

#[test]
fn more_than_max_headers_is_431() {
    let limits = HandshakeLimits { max_headers: 8, ..HandshakeLimits::default() };
    let with = |extra: usize| {
        let mut bytes = head("GET / HTTP/1.1", &[]);
        bytes.truncate(bytes.len() - 2);
        for i in 0..extra {
            bytes.extend_from_slice(format!("X-Extra-{i}: {i}\r\n").as_bytes());
        }
        bytes.extend_from_slice(b"\r\n");
        RequestParser::new(limits.clone()).feed(&bytes)
    };
    // Six sample headers plus two: exactly eight.
    assert!(with(2).unwrap().is_some());
    assert_eq!(with(3).unwrap_err().status(), 431);
}

#[test]
fn sixteen_kib_fed_one_byte_at_a_time_is_parsed_incrementally() {
    let mut bytes = head("GET / HTTP/1.1", &[]);
    bytes.truncate(bytes.len() - 2);
    let filler = 16 * 1024 - bytes.len() - "X-Fill: \r\n\r\n".len();
    bytes.extend_from_slice(format!("X-Fill: {}\r\n\r\n", "f".repeat(filler)).as_bytes());
    assert_eq!(bytes.len(), 16 * 1024);
    let mut parser = RequestParser::default();
    let mut parsed = None;
    for (i, byte) in bytes.iter().enumerate() {
        match parser.feed(std::slice::from_ref(byte)).unwrap() {
            Some(request) => {
                assert_eq!(i, bytes.len() - 1);
                parsed = Some(request);
            }
            None => assert!(i < bytes.len() - 1),
        }
    }
    let request = parsed.unwrap();
    assert_eq!(request.header("x-fill").map(str::len), Some(filler));
    assert!(request.validate_upgrade().is_ok());
}

#[test]
fn subprotocols_are_listed_in_order() {
    let mut bytes = sample();
    bytes.truncate(bytes.len() - 2);
    bytes.extend_from_slice(
        b"Sec-WebSocket-Protocol: chat.v2, chat.v1\r\nSec-WebSocket-Protocol: raw\r\n\r\n",
    );
    let request = parse(&bytes).unwrap().unwrap();
    assert_eq!(request.subprotocols(), ["chat.v2", "chat.v1", "raw"]);
}

#[test]
fn error_responses_are_complete_http() {
    let response = String::from_utf8(HandshakeError::new(400, "bad").to_response()).unwrap();
    assert_eq!(
        response,
        "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 3\r\nConnection: close\r\n\r\nbad"
    );
}

// Reliability checklist (docs/RELIABILITY.md): rows B4, B8, B10, B12, B18, B20.

#[test]
fn a_missing_or_wrong_upgrade_is_426_and_names_websocket() {
    // B4: RFC 6455 §4.2.2 and RFC 9110 §15.5.22: a 426 says which protocol to upgrade to.
    for upgrade in ["", "h2c", "websocket2"] {
        let request = parse(&head("GET / HTTP/1.1", &[("Upgrade", upgrade)])).unwrap().unwrap();
        let error = request.validate_upgrade().unwrap_err();
        assert_eq!(error.status(), 426, "Upgrade: {upgrade:?}");
        let response = String::from_utf8(error.to_response()).unwrap();
        assert!(response.starts_with("HTTP/1.1 426 Upgrade Required\r\n"), "{response}");
        assert!(response.contains("\r\nUpgrade: websocket\r\n"), "{response}");
        assert!(response.contains("\r\nConnection: close\r\n"), "{response}");
    }
}

#[test]
fn a_request_line_over_the_head_limit_is_431() {
    // B8: there is no separate URI limit (no 414): the request line counts toward
    // `max_head_size`, and a head that does not fit is refused with 431, whole or in pieces,
    // before its end arrives.
    let limits = HandshakeLimits::default().max_head_size(1024);
    let long = format!("GET /{} HTTP/1.1", "a".repeat(2000));
    let bytes = head(&long, &[]);
    assert_eq!(RequestParser::new(limits.clone()).feed(&bytes).unwrap_err().status(), 431);
    // The request line alone, never finished: refused once past the limit.
    let mut parser = RequestParser::new(limits);
    let mut result = parser.feed(b"GET /");
    let mut fed = 5;
    while let Ok(None) = result {
        result = parser.feed(&[b'a'; 64]);
        fed += 64;
        assert!(fed < 4096, "never refused");
    }
    assert_eq!(result.unwrap_err().status(), 431);
    assert!(fed <= 1024 + 64, "refused after {fed} bytes");
}

#[test]
fn a_subprotocol_header_of_commas_spaces_and_odd_tokens_is_parsed_and_never_refused() {
    // B10: a head full of list separators and thousands of tokens (up to the 16 KiB head
    // limit) parses in one linear pass; tokens are not checked for syntax (no 400), they are
    // only compared with the server's own names, so an odd one is never echoed.
    let mut bytes = sample();
    bytes.truncate(bytes.len() - 2);
    let noise = " ,".repeat(3000);
    bytes.extend_from_slice(format!("Sec-WebSocket-Protocol: {noise}\r\n").as_bytes());
    let tokens: Vec<String> = (0..1000).map(|i| format!("p{i}")).collect();
    bytes.extend_from_slice(format!("Sec-WebSocket-Protocol: {}\r\n", tokens.join(",")).as_bytes());
    bytes.extend_from_slice("Sec-WebSocket-Protocol: a b, \"q\", é, chat.v1\r\n\r\n".as_bytes());
    assert!(bytes.len() < 16 * 1024, "{}", bytes.len());
    let request = parse(&bytes).unwrap().unwrap();
    assert!(request.validate_upgrade().is_ok());
    let offered = request.subprotocols();
    assert_eq!(offered.len(), 1000 + 4, "empty list elements are skipped");
    assert_eq!(&offered[..2], ["p0", "p1"]);
    assert_eq!(&offered[1000..], ["a b", "\"q\"", "é", "chat.v1"]);
    // Over the head limit, the same header is refused with 431, not parsed.
    let mut huge = sample();
    huge.truncate(huge.len() - 2);
    huge.extend_from_slice(format!("Sec-WebSocket-Protocol: {}\r\n\r\n", ",".repeat(20_000)).as_bytes());
    assert_eq!(parse(&huge).unwrap_err().status(), 431);
}

#[test]
fn nul_obs_fold_and_bad_header_names_are_400_and_non_ascii_values_are_kept_as_bytes() {
    // B12: what httparse refuses is a 400, never a panic.
    let with_line = |line: &[u8]| {
        let mut bytes = sample();
        bytes.truncate(bytes.len() - 2);
        bytes.extend_from_slice(line);
        bytes.extend_from_slice(b"\r\n");
        bytes
    };
    let refused: [&[u8]; 6] = [
        b"X-Nul: a\0b\r\n",
        b"X-Fold: a\r\n folded\r\n",
        b"X-Tab-Fold: a\r\n\tfolded\r\n",
        b"X Space: a\r\n",
        b"X-\xc3\xa9: a\r\n",
        b"X-Cr: a\rb\r\n",
    ];
    for line in refused {
        assert_eq!(status(&with_line(line)), 400, "{:?}", String::from_utf8_lossy(line));
    }
    // obs-text (RFC 9110 §5.5) in a value is kept as sent: bytes, and text only if UTF-8.
    let request = parse(&with_line(b"X-Latin1: caf\xe9\r\nX-Utf8: caf\xc3\xa9\r\n")).unwrap().unwrap();
    assert!(request.validate_upgrade().is_ok());
    assert_eq!(request.header_bytes("x-latin1"), Some(&b"caf\xe9"[..]));
    assert_eq!(request.header("x-latin1"), None);
    assert_eq!(request.header("x-utf8"), Some("café"));
}

#[test]
fn an_upgrade_request_with_a_body_is_400() {
    for framing in ["Content-Length: 5", "Transfer-Encoding: chunked"] {
        let mut bytes = sample();
        bytes.truncate(bytes.len() - 2);
        bytes.extend_from_slice(format!("{framing}\r\n\r\nhello").as_bytes());
        let mut parser = RequestParser::default();
        let request = parser.feed(&bytes).unwrap().unwrap();
        let verdict = request.validate_upgrade().map_err(|e| e.status());
        assert_eq!(
            verdict,
            Err(400),
            "{framing}: the body {:?} would be read as frames",
            parser.take_leftover()
        );
    }
}

#[test]
fn an_http2_preface_is_400() {
    // B20: no HTTP/2 (RFC 8441 extended CONNECT is not supported): a client that speaks
    // h2 with prior knowledge gets a 400 from the HTTP/1.1 parser.
    assert_eq!(status(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), 400);
    let connect = "CONNECT /chat HTTP/1.1\r\nHost: a\r\n:protocol: websocket\r\n\r\n";
    assert_eq!(status(connect.as_bytes()), 400);
    assert_eq!(status(&head("CONNECT /chat HTTP/1.1", &[])), 405);
}

#[test]
fn a_256_kib_head_fed_byte_by_byte_is_parsed_in_linear_time() {
    // A2 (tungstenite CVE-2023-43669): each feed scans only the new bytes for the end of
    // the head, so a head trickled one byte per read costs what one read would. Were the
    // whole buffer scanned again on every feed, this would take 2^35 byte comparisons
    // (minutes); linear, it takes milliseconds.
    let limits = HandshakeLimits::default().max_head_size(256 * 1024).max_headers(1024);
    let mut bytes = sample();
    bytes.truncate(bytes.len() - 2);
    while bytes.len() < 255 * 1024 {
        bytes.extend_from_slice(format!("X-Fill-{}: {}\r\n", bytes.len(), "f".repeat(1000)).as_bytes());
    }
    bytes.extend_from_slice(b"\r\n");
    let started = std::time::Instant::now();
    let mut parser = RequestParser::new(limits);
    let (last, rest) = bytes.split_last().unwrap();
    for byte in rest {
        assert_eq!(parser.feed(std::slice::from_ref(byte)), Ok(None));
    }
    let request = parser.feed(&[*last]).unwrap().unwrap();
    assert!(request.validate_upgrade().is_ok());
    assert!(started.elapsed() < std::time::Duration::from_secs(5), "{:?}", started.elapsed());
}

#[test]
fn requests_are_equal_by_method_target_and_headers_not_by_their_bytes() {
    let crlf = parse(b"GET /a?x=1 HTTP/1.1\r\nHost: h\r\nX-Y:  v\r\n\r\n").unwrap().unwrap();
    let lf = parse(b"GET /a?x=1 HTTP/1.1\nHost: h\nX-Y: v\n\n").unwrap().unwrap();
    assert_eq!(crlf, lf);
    assert_eq!(crlf.header("x-y"), Some("v"));
    assert_eq!(crlf.headers().collect::<Vec<_>>(), [("Host", &b"h"[..]), ("X-Y", &b"v"[..])]);
    let other = parse(b"GET /a?x=2 HTTP/1.1\r\nHost: h\r\nX-Y: v\r\n\r\n").unwrap().unwrap();
    assert_ne!(crlf, other);
    // An empty value is a value.
    let empty = parse(b"GET / HTTP/1.1\r\nHost: h\r\nX-Empty:\r\n\r\n").unwrap().unwrap();
    assert_eq!(empty.header_bytes("x-empty"), Some(&b""[..]));
}
