//! Arbitrary bytes as a client's request head and as a server's response head, fed in
//! two pieces split where the first byte says.
#![no_main]

use libfuzzer_sys::fuzz_target;
use zapsocket_proto::handshake::{ClientHandshake, RequestParser};

fuzz_target!(|data: &[u8]| {
    let Some((&split, data)) = data.split_first() else { return };
    let (a, b) = data.split_at(usize::from(split).min(data.len()));
    let mut parser = RequestParser::default();
    for piece in [a, b] {
        if let Ok(Some(request)) = parser.feed(piece) {
            let _ = (request.validate_upgrade(), request.subprotocols(), request.path());
        }
    }
    let _ = parser.take_leftover();
    let mut client = ClientHandshake::new("example.com", "/", &[], &["chat".into()]);
    for piece in [a, b] {
        let _ = client.feed(piece);
    }
});
