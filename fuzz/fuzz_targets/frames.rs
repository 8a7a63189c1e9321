//! Arbitrary bytes into a server and a client connection, in pieces whose size the
//! first byte picks: decoding must never panic, and errors are peer violations.
#![no_main]

use libfuzzer_sys::fuzz_target;
use zapsocket_proto::{Config, Connection, Role};

fuzz_target!(|data: &[u8]| {
    let Some((&piece, data)) = data.split_first() else { return };
    let config = Config::default().max_frame_size(1 << 16).max_message_size(1 << 18);
    for role in [Role::Server, Role::Client] {
        let mut conn = Connection::new(role, config.clone());
        for chunk in data.chunks(usize::from(piece).max(1)) {
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
