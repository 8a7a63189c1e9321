//! Arbitrary bytes into connections with permessage-deflate on (every combination of
//! context takeover), and as a server's `Sec-WebSocket-Extensions` answer: inflating
//! must never panic nor grow past the message limit, and errors are peer violations.
#![no_main]

use libfuzzer_sys::fuzz_target;
use zapsocket_proto::deflate::{DeflateConfig, DeflateParams};
use zapsocket_proto::{Config, Connection, Role};

fuzz_target!(|data: &[u8]| {
    let Some((&piece, data)) = data.split_first() else { return };
    let _ = DeflateConfig::default().check_response([data]);
    let config = Config::default().max_frame_size(1 << 16).max_message_size(1 << 18);
    let params = DeflateParams {
        server_no_context_takeover: piece & 1 != 0,
        client_no_context_takeover: piece & 2 != 0,
        server_max_window_bits: (piece & 4 != 0).then_some(9),
        client_max_window_bits: (piece & 8 != 0).then_some(10),
    };
    for role in [Role::Server, Role::Client] {
        let mut conn = Connection::new(role, config.clone());
        conn.set_deflate(params, &DeflateConfig::default());
        for chunk in data.chunks(usize::from(piece >> 4).max(1) * 16) {
            conn.feed(chunk);
            while let Some(event) = conn.poll_event() {
                if let Err(e) = event {
                    assert!(e.close_code().is_some_and(|c| c.is_sendable()), "{e:?}");
                }
            }
        }
        let _ = conn.feed_eof();
    }
});
