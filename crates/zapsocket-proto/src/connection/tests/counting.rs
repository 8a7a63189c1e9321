//! `count_messages`: data messages and payload bytes each way, sizes in buckets, the
//! close code sent; off by default.

use std::time::Instant;

use super::*;
use crate::deflate::{DeflateConfig, DeflateParams};
use crate::{Counts, EncodedFrame};

#[test]
fn data_messages_are_counted_both_ways_with_their_sizes() {
    let mut pair = Pair::new(Config::default());
    pair.client.set_deflate(DeflateParams::default(), &DeflateConfig::default());
    pair.server.set_deflate(DeflateParams::default(), &DeflateConfig::default());
    assert_eq!(pair.client.counts(), None, "off by default");
    pair.client.count_messages();
    pair.server.count_messages();
    pair.client.send(Message::text("x".repeat(10))).unwrap();
    pair.client.send(Message::binary(vec![0; 1000])).unwrap(); // compressed on the wire
    for (i, part) in ["aaa", "bbbb", "c"].iter().enumerate() {
        pair.client.send_fragment(true, Bytes::from_static(part.as_bytes()), i == 2).unwrap();
    }
    pair.client.send_encoded(&EncodedFrame::binary(&[1; 70])).unwrap();
    pair.client.ping(b"not a message").unwrap();
    let received = pair.server_received();
    assert_eq!(received.len(), 5, "{received:?}");
    let expected = Counts { messages_out: 4, bytes_out: 1088, ..Counts::default() };
    assert_eq!(pair.client.counts(), Some(&expected));
    let server = pair.server.counts().unwrap();
    // 10 and 8 bytes, 70, 1000.
    assert_eq!((server.messages_in, server.bytes_in, server.sizes_in), (4, 1088, [2, 1, 1, 0, 0, 0, 0]));
    assert_eq!((server.messages_out, server.bytes_out), (0, 0));

    pair.client.close(Instant::now(), CloseCode(4001), "bye").unwrap();
    pair.drive();
    assert_eq!(pair.client.sent_close_code(), Some(CloseCode(4001)));
    assert_eq!(pair.server.sent_close_code(), Some(CloseCode(4001)), "the echo");

    let mut total = Counts::default();
    total.add(pair.client.counts().unwrap());
    total.add(pair.server.counts().unwrap());
    assert_eq!((total.messages_in, total.messages_out, total.sizes_in[2]), (4, 4, 1));
}
