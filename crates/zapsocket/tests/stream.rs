//! A WebSocket as a byte stream (`WebSocket::into_stream`) through real sockets: an echo
//! through `tokio::io::copy`, lines through `Framed`, the end of the stream, errors as
//! `io::Error`, shutdown, partial reads, the message size limit and backpressure.

#![allow(clippy::unwrap_used)] // Test helpers: a failed step is a failed test.

mod common;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::time::timeout;
use tokio_util::codec::{Framed, LinesCodec};
use zapsocket::{Client, CloseCode, Message, Server, WebSocket, WebSocketConfig, WebSocketStream};

use common::{RawPeer, url};

const LONG: Duration = Duration::from_secs(20);

/// A server on port 0 whose handler gets each connection as a stream.
async fn stream_server<F, Fut>(handler: F) -> SocketAddr
where
    F: Fn(WebSocketStream) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let server = Server::builder().no_heartbeat().bind().await.unwrap();
    let addr = server.local_addr();
    tokio::spawn(server.serve(move |ws: WebSocket| handler(ws.into_stream())));
    addr
}

/// A server whose handler reports the messages it received and the close code it saw.
async fn recording_server() -> (SocketAddr, mpsc::UnboundedReceiver<(Vec<Message>, Option<u16>)>) {
    let server = Server::builder().no_heartbeat().bind().await.unwrap();
    let addr = server.local_addr();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(server.serve(move |mut ws: WebSocket| {
        let tx = tx.clone();
        async move {
            let mut messages = Vec::new();
            while let Some(Ok(message)) = ws.recv().await {
                messages.push(message);
            }
            let _ = tx.send((messages, ws.close_frame().map(|f| f.code.0)));
        }
    }));
    (addr, rx)
}

/// What a stream read until its end or an error: the bytes, and the error's kind and
/// the protocol error inside it.
type ReadReport = (Vec<u8>, Option<(io::ErrorKind, Option<zapsocket::proto::Error>)>);

/// A server that reads each connection as a stream until its end or an error.
async fn reading_server() -> (SocketAddr, mpsc::UnboundedReceiver<ReadReport>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let addr = stream_server(move |mut stream| {
        let tx = tx.clone();
        async move {
            let mut data = Vec::new();
            let mut buf = [0u8; 4096];
            let error = loop {
                match stream.read(&mut buf).await {
                    Ok(0) => break None,
                    Ok(n) => data.extend_from_slice(&buf[..n]),
                    Err(e) => {
                        let inner = e.get_ref().and_then(|e| e.downcast_ref::<zapsocket::Error>());
                        break Some((e.kind(), inner.and_then(|e| e.protocol_error().cloned())));
                    }
                }
            };
            let _ = tx.send((data, error));
        }
    })
    .await;
    (addr, rx)
}

async fn connect(addr: SocketAddr) -> WebSocketStream {
    Client::connect(&url(addr, "/")).await.unwrap().into_stream()
}

/// `len` bytes that differ from their neighbours, so that a byte out of place shows.
fn pattern(len: usize) -> Vec<u8> {
    let mut x: u32 = 0x9e37_79b9;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

#[tokio::test]
async fn megabytes_written_in_odd_chunks_come_back_byte_exact_through_an_io_copy_echo() {
    let addr = stream_server(|stream| async move {
        let (mut reader, mut writer) = tokio::io::split(stream);
        let _ = tokio::io::copy(&mut reader, &mut writer).await;
    })
    .await;
    let (mut reader, mut writer) = tokio::io::split(connect(addr).await);
    let data = pattern((3 << 20) + 12_345);
    let sent = data.clone();
    let writing = tokio::spawn(async move {
        let mut rest = &sent[..];
        for size in [1, 7, 1000, 65_537, 3, 300_001, 4093, 1 << 20].into_iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (chunk, tail) = rest.split_at(size.min(rest.len()));
            writer.write_all(chunk).await.unwrap();
            rest = tail;
        }
        writer.flush().await.unwrap();
        writer
    });
    let mut echoed = vec![0u8; data.len()];
    timeout(LONG, reader.read_exact(&mut echoed)).await.unwrap().unwrap();
    assert!(echoed == data, "the echo differs from what was sent");
    let mut stream = reader.unsplit(writing.await.unwrap());
    timeout(LONG, stream.shutdown()).await.unwrap().unwrap();
    assert_eq!(stream.read(&mut [0u8; 16]).await.unwrap(), 0, "the end after the close");
    assert_eq!(stream.close_frame().unwrap().code, CloseCode::NORMAL);
}

#[tokio::test]
async fn lines_codec_framed_reads_lines_split_across_messages_and_writes_lines() {
    let addr = stream_server(|stream| async move {
        let mut lines = Framed::new(stream, LinesCodec::new());
        while let Some(Ok(line)) = lines.next().await {
            if lines.send(format!("got {line}")).await.is_err() {
                break;
            }
        }
    })
    .await;
    let mut lines = Framed::new(connect(addr).await, LinesCodec::new());
    // Three messages, lines across them.
    for piece in [&b"hel"[..], b"lo\nwor", b"ld\n\n"] {
        lines.get_mut().write_all(piece).await.unwrap();
    }
    lines.send("and through the codec").await.unwrap();
    for expected in ["got hello", "got world", "got ", "got and through the codec"] {
        let line = timeout(LONG, lines.next()).await.unwrap().unwrap().unwrap();
        assert_eq!(line, expected);
    }
    timeout(LONG, SinkExt::<&str>::close(&mut lines)).await.unwrap().unwrap();
    assert!(lines.next().await.is_none(), "the end after the close");
}

#[tokio::test]
async fn text_and_binary_are_read_as_bytes_pings_are_not_data_and_the_peers_close_is_the_end() {
    let server = Server::builder().no_heartbeat().bind().await.unwrap();
    let addr = server.local_addr();
    tokio::spawn(server.serve(|ws: WebSocket| async move {
        ws.send(Message::text("héllo ")).await.unwrap();
        ws.ping(&b"not data"[..]).await.unwrap();
        ws.send(Message::binary(vec![0u8, 1, 255])).await.unwrap();
        ws.send(Message::text("")).await.unwrap();
        ws.close(CloseCode(4000), "bye").await.unwrap();
    }));
    let mut stream = connect(addr).await;
    let mut data = Vec::new();
    timeout(LONG, stream.read_to_end(&mut data)).await.unwrap().unwrap();
    assert_eq!(data, ["héllo ".as_bytes(), &[0, 1, 255]].concat());
    let close = stream.close_frame().unwrap();
    assert_eq!((close.code, close.reason.as_str()), (CloseCode(4000), "bye"));
}

#[tokio::test]
async fn a_connection_dropped_without_a_close_is_an_unexpected_eof_carrying_the_librarys_error() {
    let (addr, mut reports) = reading_server().await;
    let mut peer = RawPeer::connect(addr, "/").await;
    peer.send_frame(0x82, b"before the cut").await;
    drop(peer);
    let (data, error) = timeout(LONG, reports.recv()).await.unwrap().unwrap();
    assert_eq!(data, b"before the cut");
    assert_eq!(error, Some((io::ErrorKind::UnexpectedEof, Some(zapsocket::proto::Error::ConnectionReset))));
}

#[tokio::test]
async fn a_protocol_violation_is_invalid_data_and_the_peer_gets_1002() {
    let (addr, mut reports) = reading_server().await;
    let mut peer = RawPeer::connect(addr, "/").await;
    peer.send_frame(0x82, b"fine").await;
    peer.send_raw(&[0x82, 0x01, b'x']).await; // unmasked, from a client (RFC 6455 §5.1)
    assert_eq!(peer.read_close_code().await, Some(1002));
    let (data, error) = timeout(LONG, reports.recv()).await.unwrap().unwrap();
    assert_eq!(data, b"fine");
    assert_eq!(error, Some((io::ErrorKind::InvalidData, Some(zapsocket::proto::Error::BadMasking))));
}

#[tokio::test]
async fn shutdown_closes_with_1000_and_a_later_write_is_a_broken_pipe() {
    let (addr, mut reports) = recording_server().await;
    let mut stream = connect(addr).await;
    stream.write_all(b"last words").await.unwrap();
    timeout(LONG, stream.shutdown()).await.unwrap().unwrap();
    let error = stream.write(b"more").await.unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::BrokenPipe);
    assert!(error.get_ref().unwrap().downcast_ref::<zapsocket::Error>().unwrap().is_closed());
    let (messages, code) = timeout(LONG, reports.recv()).await.unwrap().unwrap();
    assert_eq!(messages, [Message::binary(&b"last words"[..])]);
    assert_eq!(code, Some(1000));
    // A second shutdown sends nothing more and returns at once.
    timeout(LONG, stream.shutdown()).await.unwrap().unwrap();
}

#[tokio::test]
async fn a_large_message_is_read_in_pieces_through_a_small_buffer() {
    let data = Bytes::from(pattern(1 << 20));
    let sent = data.clone();
    let server = Server::builder().no_heartbeat().bind().await.unwrap();
    let addr = server.local_addr();
    tokio::spawn(server.serve(move |ws: WebSocket| {
        let sent = sent.clone();
        async move {
            ws.send(sent).await.unwrap();
            ws.close(CloseCode::NORMAL, "").await.unwrap();
        }
    }));
    let mut stream = connect(addr).await;
    let (mut read, mut sizes) = (Vec::new(), Vec::new());
    let mut buf = [0u8; 1000];
    loop {
        let n = timeout(LONG, stream.read(&mut buf)).await.unwrap().unwrap();
        if n == 0 {
            break;
        }
        sizes.push(n);
        read.extend_from_slice(&buf[..n]);
    }
    assert!(read == data, "the pieces differ from the message");
    assert_eq!(sizes.len(), (1 << 20) / 1000 + 1);
    assert!(sizes[..sizes.len() - 1].iter().all(|&n| n == 1000), "every read but the last fills the buffer");
}

#[tokio::test]
async fn a_write_larger_than_the_message_size_limit_sends_its_start_as_one_message() {
    let (addr, mut reports) = recording_server().await;
    let config = WebSocketConfig::default().max_message_size(64 * 1024);
    let ws = Client::builder().config(config).connect(&url(addr, "/")).await.unwrap();
    let mut stream = ws.into_stream();
    let data = pattern(200_000);
    assert_eq!(stream.write(&data).await.unwrap(), 64 * 1024);
    timeout(LONG, stream.shutdown()).await.unwrap().unwrap();
    let (messages, code) = timeout(LONG, reports.recv()).await.unwrap().unwrap();
    assert_eq!(messages, [Message::binary(data[..64 * 1024].to_vec())]);
    assert_eq!(code, Some(1000));
}

/// A peer that reads nothing holds the writer back: its send queue fills (after the TCP
/// buffers), then a write waits; once the peer reads, the write completes and every byte
/// arrives.
#[tokio::test]
async fn a_write_waits_while_the_peer_reads_nothing_and_completes_once_it_reads() {
    const CHUNK: usize = 64 * 1024;
    let start_reading = Arc::new(tokio::sync::Notify::new());
    let (tx, mut received) = mpsc::unbounded_channel();
    let addr = stream_server({
        let start_reading = start_reading.clone();
        move |mut stream| {
            let (start_reading, tx) = (start_reading.clone(), tx.clone());
            async move {
                start_reading.notified().await;
                let _ = tx.send(tokio::io::copy(&mut stream, &mut tokio::io::sink()).await.unwrap());
            }
        }
    })
    .await;
    let mut stream = connect(addr).await;
    let chunk = pattern(CHUNK);
    let mut written = 0;
    while let Ok(result) = timeout(Duration::from_millis(500), stream.write_all(&chunk)).await {
        result.unwrap();
        written += CHUNK;
        assert!(written < 256 << 20, "{written} bytes written to a peer that reads nothing");
    }
    assert!(written > 0);
    start_reading.notify_one();
    timeout(LONG, stream.write_all(&chunk)).await.expect("the write completes once the peer reads").unwrap();
    written += CHUNK;
    timeout(LONG, stream.shutdown()).await.unwrap().unwrap();
    let total = timeout(LONG, received.recv()).await.unwrap().unwrap();
    assert_eq!(total, written as u64);
}
