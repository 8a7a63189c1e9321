//! Client-side handshake tests: a client's request answered by this crate's server, and
//! the answers a client must refuse.

use super::*;

/// A client handshake answered by a server built from this crate.
fn answer(client: &ClientHandshake, response: &ServerResponse) -> Vec<u8> {
    let request = parse(client.request()).unwrap().unwrap();
    response.encode(&request.validate_upgrade().unwrap())
}

#[test]
fn a_client_request_is_accepted_by_the_server_and_the_answer_by_the_client() {
    let headers = [("Origin".to_owned(), "https://app.example".to_owned())];
    let mut client = ClientHandshake::new("example.com:8080", "/ws?x=1", &headers, &[]);
    let request = parse(client.request()).unwrap().unwrap();
    assert_eq!(request.target(), "/ws?x=1");
    assert_eq!(request.header("host"), Some("example.com:8080"));
    assert_eq!(request.header("origin"), Some("https://app.example"));
    assert_eq!(request.subprotocols(), Vec::<&str>::new());
    let accept = request.validate_upgrade().unwrap();
    let mut bytes = ServerResponse::default().encode(&accept);
    bytes.extend_from_slice(&[0x81, 0x00]);
    let response = client.feed(&bytes).unwrap().unwrap();
    assert_eq!(response.protocol, None);
    assert_eq!(response.header("sec-websocket-accept"), Some(accept.as_str()));
    assert_eq!(client.take_leftover(), [0x81, 0x00]);
}

#[test]
fn the_client_reads_the_answer_byte_by_byte() {
    let mut client = ClientHandshake::new("h", "/", &[], &[]);
    let bytes = answer(&client, &ServerResponse::default());
    for &byte in &bytes[..bytes.len() - 1] {
        assert_eq!(client.feed(&[byte]), Ok(None));
    }
    assert!(client.feed(&bytes[bytes.len() - 1..]).unwrap().is_some());
}

#[test]
fn the_chosen_subprotocol_is_reported() {
    let offered = ["chat.v2".to_owned(), "chat.v1".to_owned()];
    let mut client = ClientHandshake::new("h", "/", &[], &offered);
    let request = parse(client.request()).unwrap().unwrap();
    assert_eq!(request.subprotocols(), ["chat.v2", "chat.v1"]);
    let chosen = ServerResponse { protocol: Some("chat.v1".into()), ..ServerResponse::default() };
    let bytes = answer(&client, &chosen);
    assert_eq!(client.feed(&bytes).unwrap().unwrap().protocol.as_deref(), Some("chat.v1"));
}

#[test]
fn an_unrequested_subprotocol_is_refused() {
    for offered in [vec![], vec!["chat.v1".to_owned()]] {
        let mut client = ClientHandshake::new("h", "/", &[], &offered);
        let chosen = ServerResponse { protocol: Some("other".into()), ..ServerResponse::default() };
        let bytes = answer(&client, &chosen);
        assert!(client.feed(&bytes).unwrap_err().reason().contains("not offered"));
    }
}

#[test]
fn an_unrequested_extension_is_refused() {
    let mut client = ClientHandshake::new("h", "/", &[], &[]);
    let deflate =
        ServerResponse { extensions: Some("permessage-deflate".into()), ..ServerResponse::default() };
    let bytes = answer(&client, &deflate);
    assert!(client.feed(&bytes).unwrap_err().reason().contains("extension"));
}

#[test]
fn an_offered_deflate_round_trips_through_the_server_answer() {
    use crate::deflate::{DeflateConfig, DeflateParams};
    let mut client = ClientHandshake::new("h", "/", &[], &[]).deflate(DeflateConfig::default());
    let request = parse(client.request()).unwrap().unwrap();
    let params = DeflateConfig::default().accept(&request, false).unwrap();
    let answered = ServerResponse { extensions: Some(params.to_header()), ..ServerResponse::default() };
    let response = client.feed(&answer(&client, &answered)).unwrap().unwrap();
    let expected = DeflateParams { server_no_context_takeover: true, ..DeflateParams::default() };
    assert_eq!(response.deflate, Some(expected));
    // A server that declines answers nothing: no compression, no error.
    let mut client = ClientHandshake::new("h", "/", &[], &[]).deflate(DeflateConfig::default());
    assert_eq!(client.feed(&answer(&client, &ServerResponse::default())).unwrap().unwrap().deflate, None);
}

#[test]
fn an_invalid_deflate_answer_fails_the_client_with_1010() {
    let config = crate::deflate::DeflateConfig::default();
    for bad in ["permessage-deflate; bogus", "permessage-deflate; client_max_window_bits", "x-foo"] {
        let mut client = ClientHandshake::new("h", "/", &[], &[]).deflate(config.clone());
        let answered = ServerResponse { extensions: Some(bad.into()), ..ServerResponse::default() };
        let error = client.feed(&answer(&client, &answered)).unwrap_err();
        assert_eq!(error.close_code(), Some(crate::CloseCode::MANDATORY_EXTENSION), "{bad}: {error}");
    }
}

#[test]
fn a_wrong_accept_is_refused() {
    let mut client = ClientHandshake::new("h", "/", &[], &[]);
    let bytes = ServerResponse::default().encode("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    let error = client.feed(&bytes).unwrap_err();
    assert_eq!(error.reason(), "wrong Sec-WebSocket-Accept");
}

#[test]
fn a_second_accept_is_refused() {
    for same in [true, false] {
        let mut client = ClientHandshake::new("h", "/", &[], &[]);
        let good = String::from_utf8(answer(&client, &ServerResponse::default())).unwrap();
        let accept = good.lines().find(|l| l.starts_with("Sec-WebSocket-Accept")).unwrap();
        let second = if same { accept } else { "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" };
        let twice = good.replace(accept, &format!("{accept}\r\n{second}"));
        assert_ne!(twice, good);
        assert_eq!(client.feed(twice.as_bytes()).unwrap_err().reason(), "more than one Sec-WebSocket-Accept");
    }
}

#[test]
fn a_response_without_upgrade_headers_is_refused() {
    let client = ClientHandshake::new("h", "/", &[], &[]);
    let good = String::from_utf8(answer(&client, &ServerResponse::default())).unwrap();
    for (from, to) in [("Upgrade: websocket", "Upgrade: h2c"), ("Connection: Upgrade", "Connection: close")] {
        let mut client = ClientHandshake::new("h", "/", &[], &[]);
        let bytes = answer(&client, &ServerResponse::default());
        let bad = String::from_utf8(bytes).unwrap().replace(from, to);
        assert_ne!(bad, good);
        assert!(client.feed(bad.as_bytes()).is_err(), "{to}");
    }
}

#[test]
fn a_status_other_than_101_is_refused_with_that_status() {
    let mut client = ClientHandshake::new("h", "/", &[], &[]);
    let bytes = b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n";
    assert_eq!(client.feed(bytes).unwrap_err().status(), 403);
    let mut client = ClientHandshake::new("h", "/", &[], &[]);
    assert_eq!(client.feed(b"HTTP/1.1 200 OK\r\n\r\n").unwrap_err().status(), 200);
    let mut client = ClientHandshake::new("h", "/", &[], &[]);
    assert_eq!(client.feed(b"SSH-2.0-OpenSSH\r\n\r\n").unwrap_err().status(), 400);
}

#[test]
fn a_redirect_keeps_its_location() {
    let mut client = ClientHandshake::new("h", "/", &[], &[]);
    let bytes = b"HTTP/1.1 301 Moved Permanently\r\nLocation:  /elsewhere?x=1 \r\nContent-Length: 0\r\n\r\n";
    let error = client.feed(bytes).unwrap_err();
    assert_eq!((error.status(), error.location()), (301, Some("/elsewhere?x=1")));
    assert!(error.is_refusal());
    let mut client = ClientHandshake::new("h", "/", &[], &[]);
    let error = client.feed(b"HTTP/1.1 302 Found\r\n\r\n").unwrap_err();
    assert_eq!((error.status(), error.location()), (302, None));
    let mut client = ClientHandshake::new("h", "/", &[], &[]);
    let error = client.feed(b"HTTP/1.1 201 Created\r\nLocation: /new\r\n\r\n").unwrap_err();
    assert_eq!(error.location(), None, "only a redirect's Location is kept");
}

#[test]
fn header_injection_is_not_possible() {
    let headers = [("X-Evil".to_owned(), "a\r\nInjected: yes".to_owned())];
    let client = ClientHandshake::new("h", "/", &headers, &[]);
    assert!(!String::from_utf8_lossy(client.request()).contains("Injected"));
    let response = ServerResponse { headers: headers.to_vec(), ..ServerResponse::default() };
    assert!(!String::from_utf8(response.encode("k")).unwrap().contains("Injected"));
}

#[test]
fn each_client_uses_a_fresh_key() {
    let key = |c: &ClientHandshake| {
        parse(c.request()).unwrap().unwrap().header("sec-websocket-key").map(str::to_owned)
    };
    let a = ClientHandshake::new("h", "/", &[], &[]);
    let b = ClientHandshake::new("h", "/", &[], &[]);
    assert_ne!(key(&a), key(&b));
}

#[test]
fn client_bytes_fed_after_the_answer_join_the_leftover() {
    let mut client = ClientHandshake::new("h", "/", &[], &[]);
    let bytes = answer(&client, &ServerResponse::default());
    assert_eq!(client.feed(&bytes[..10]), Ok(None));
    assert!(client.feed(&bytes[10..]).unwrap().is_some());
    assert_eq!(client.feed(&[0x81]), Ok(None), "the response is returned once");
    assert_eq!(client.feed(&[0x00]), Ok(None));
    assert_eq!(client.take_leftover(), [0x81, 0x00]);
}

#[test]
fn a_refused_head_stays_refused() {
    let limits = HandshakeLimits { max_head_size: 64, ..HandshakeLimits::default() };
    let mut parser = RequestParser::new(limits);
    assert_eq!(parser.feed(&[b'a'; 65]).unwrap_err().status(), 431);
    for _ in 0..3 {
        assert_eq!(parser.feed(b"\r\n\r\n").unwrap_err().status(), 431);
    }
    let mut parser = RequestParser::default();
    assert_eq!(parser.feed(b"garbage\r\n\r\n").unwrap_err().status(), 400);
    assert_eq!(parser.feed(b"more").unwrap_err().status(), 400);
}
