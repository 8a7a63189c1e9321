//! Codec benchmarks: decode and unmask (server role), encode, UTF-8 validation, and the
//! masking kernel against its byte-at-a-time reference.
//!
//! `cargo bench -p zapsocket-proto`; quick run: `-- --warm-up-time 1 --measurement-time 2`.

#![allow(missing_docs, reason = "criterion's macros generate undocumented items")]
#![allow(clippy::unwrap_used, reason = "a benchmark's own setup; a failure should stop it loudly")]

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use zapsocket_proto::{
    Config, Connection, Event, Message, OpCode, Role, Utf8Validator, apply_mask, apply_mask_reference,
    encode_frame,
};

const SIZES: [(usize, &str); 4] = [(16, "16B"), (1 << 10, "1KiB"), (64 << 10, "64KiB"), (1 << 20, "1MiB")];
const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| b'a' + (i % 26) as u8).collect()
}

/// A masked binary frame as a client sends it, copied into a server's read buffer (as a
/// socket read would) and decoded and unmasked.
fn decode_masked(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode_masked");
    for (len, name) in SIZES {
        let mut wire = BytesMut::new();
        encode_frame(&mut wire, OpCode::Binary, true, &payload(len), Some(KEY));
        let mut server = Connection::new(Role::Server, Config::default());
        group.throughput(Throughput::Bytes(len as u64));
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| {
                server.read_buffer().extend_from_slice(&wire);
                match server.poll_event() {
                    Some(Ok(Event::Message(m))) => black_box(m),
                    other => panic!("unexpected {other:?}"),
                }
            })
        });
    }
    group.finish();
}

/// Text frames also go through UTF-8 validation on the way in.
fn decode_masked_text(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode_masked_text");
    for (len, name) in SIZES {
        let mut wire = BytesMut::new();
        encode_frame(&mut wire, OpCode::Text, true, &payload(len), Some(KEY));
        let mut server = Connection::new(Role::Server, Config::default());
        group.throughput(Throughput::Bytes(len as u64));
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| {
                server.read_buffer().extend_from_slice(&wire);
                black_box(server.poll_event())
            })
        });
    }
    group.finish();
}

/// A server encoding a binary message and the I/O layer taking the bytes out.
fn encode_server(c: &mut Criterion) {
    let mut group = c.benchmark_group("encode_server");
    for (len, name) in SIZES {
        let data = Bytes::from(payload(len));
        let mut server = Connection::new(Role::Server, Config::default());
        group.throughput(Throughput::Bytes(len as u64));
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| {
                server.send(Message::Binary(data.clone())).unwrap();
                let out = server.outbound();
                let n = out.len();
                black_box(out.first_chunk());
                out.advance(n);
            })
        });
    }
    group.finish();
}

/// A client encoding (and masking) a binary message.
fn encode_client(c: &mut Criterion) {
    let mut group = c.benchmark_group("encode_client");
    for (len, name) in SIZES {
        let data = Bytes::from(payload(len));
        let mut client = Connection::new(Role::Client, Config::default());
        group.throughput(Throughput::Bytes(len as u64));
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| {
                client.send(Message::Binary(data.clone())).unwrap();
                let out = client.outbound();
                let n = out.len();
                black_box(out.first_chunk());
                out.advance(n);
            })
        });
    }
    group.finish();
}

fn utf8(c: &mut Criterion) {
    let text = "ascii and κόσμε and 𝄞 ".repeat((1 << 20) / 32);
    let mut end = 1 << 20;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let bytes = &text.as_bytes()[..end];
    let mut group = c.benchmark_group("utf8_1MiB");
    group.throughput(Throughput::Bytes(bytes.len() as u64));
    group.bench_function("validator_64KiB_pieces", |b| {
        b.iter(|| {
            let mut v = Utf8Validator::new();
            for piece in bytes.chunks(64 << 10) {
                v.feed(black_box(piece)).unwrap();
            }
            v.finish().unwrap();
        })
    });
    group.bench_function("std_from_utf8", |b| b.iter(|| std::str::from_utf8(black_box(bytes)).is_ok()));
    let message = zapsocket_proto::Utf8Bytes::from_bytes(Bytes::copy_from_slice(bytes)).unwrap();
    group.bench_function("utf8_bytes_as_str", |b| b.iter(|| black_box(&message).as_str().len()));
    group.finish();
}

/// The masking kernel at a 16-byte boundary and 14 bytes past one (where a payload
/// after a 64-bit-length header starts in a read buffer), against the reference.
fn mask(c: &mut Criterion) {
    let mut group = c.benchmark_group("mask");
    for size in [16, 1024, 64 * 1024, 1 << 20] {
        let mut buf = payload(size + 32);
        group.throughput(Throughput::Bytes(size as u64));
        for start in [0, 14] {
            let head = buf.as_ptr().align_offset(16);
            let slice = head + start..head + start + size;
            group.bench_function(format!("apply_mask/{size}/start{start}"), |b| {
                b.iter(|| apply_mask(black_box(&mut buf[slice.clone()]), KEY, 1))
            });
        }
        if size <= 64 * 1024 {
            group.bench_function(format!("apply_mask_reference/{size}"), |b| {
                b.iter(|| apply_mask_reference(black_box(&mut buf[..size]), KEY, 1))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, decode_masked, decode_masked_text, encode_server, encode_client, utf8, mask);
criterion_main!(benches);
