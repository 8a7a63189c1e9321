//! permessage-deflate benchmarks: a server compressing a message as it queues it (each
//! message on its own, the server's default), and decoding a compressed client frame
//! (inflate and UTF-8), for compressible JSON and incompressible bytes.
//!
//! `cargo bench -p zapsocket-proto --bench deflate`; quick run:
//! `-- --warm-up-time 1 --measurement-time 2`.

#![allow(missing_docs, reason = "criterion's macros generate undocumented items")]
#![allow(clippy::unwrap_used, reason = "a benchmark's own setup; a failure should stop it loudly")]

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use zapsocket_proto::deflate::{DeflateConfig, DeflateParams};
use zapsocket_proto::{Config, Connection, Event, Message, Role};

const SIZE: usize = 16 * 1024;

fn json() -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 0u64;
    while out.len() < SIZE {
        i = i.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        out.extend_from_slice(
            format!(
                "{{\"id\":{},\"user\":\"user{}\",\"room\":\"lobby\",\"text\":\"message {}\"}},",
                i % 100_000,
                i % 97,
                i % 1000
            )
            .as_bytes(),
        );
    }
    out.truncate(SIZE);
    out
}

fn random() -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    (0..SIZE)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn params() -> DeflateParams {
    DeflateParams { server_no_context_takeover: true, ..DeflateParams::default() }
}

fn take_all(conn: &mut Connection) -> Vec<u8> {
    let mut all = Vec::new();
    while !conn.outbound().is_empty() {
        let chunk = conn.outbound().first_chunk().to_vec();
        conn.outbound().advance(chunk.len());
        all.extend(chunk);
    }
    all
}

/// The server queues a 16 KiB message: compressed (levels 1 and 6) or not.
fn send(c: &mut Criterion) {
    let mut group = c.benchmark_group("deflate_send_16KiB");
    group.throughput(Throughput::Bytes(SIZE as u64));
    for (kind, data) in [("json", json()), ("random", random())] {
        for level in [None, Some(1), Some(6)] {
            let mut server = Connection::new(Role::Server, Config::default());
            if let Some(level) = level {
                server.set_deflate(params(), &DeflateConfig::default().level(level));
            }
            let message = Message::binary(data.clone());
            let name = format!("{kind}/{}", level.map_or("plain".to_owned(), |l| format!("level{l}")));
            group.bench_function(BenchmarkId::from_parameter(name), |b| {
                b.iter(|| {
                    server.send(black_box(message.clone())).unwrap();
                    let n = server.outbound().len();
                    server.outbound().advance(n);
                })
            });
        }
    }
    group.finish();
}

/// The server decodes a compressed, masked 16 KiB text message from a client.
fn receive(c: &mut Criterion) {
    let mut group = c.benchmark_group("deflate_receive_16KiB");
    group.throughput(Throughput::Bytes(SIZE as u64));
    let alone = DeflateParams { client_no_context_takeover: true, ..params() };
    let mut client = Connection::new(Role::Client, Config::default());
    client.set_deflate(alone, &DeflateConfig::default());
    client.send(Message::text(String::from_utf8(json()).unwrap())).unwrap();
    let wire = take_all(&mut client);
    let mut server = Connection::new(Role::Server, Config::default());
    server.set_deflate(alone, &DeflateConfig::default());
    group.bench_function(
        BenchmarkId::from_parameter(format!("json_text_{}B_on_the_wire", wire.len())),
        |b| {
            b.iter(|| {
                server.read_buffer().extend_from_slice(&wire);
                match server.poll_event() {
                    Some(Ok(Event::Message(m))) => black_box(m),
                    other => panic!("unexpected {other:?}"),
                }
            })
        },
    );
    group.finish();
}

criterion_group!(benches, send, receive);
criterion_main!(benches);
