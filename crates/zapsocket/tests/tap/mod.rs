//! A wire tap: a TCP proxy between a WebSocket client and server that records, for each
//! direction, the HTTP head and the header of every frame (FIN, RSV1, opcode, payload
//! length). It parses the bytes itself, independently of zapsocket, so a test can check
//! what really went over the wire: that permessage-deflate was agreed and that frames were
//! sent compressed (RSV1).

#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// One frame header seen on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TapFrame {
    /// Sent by the server (else by the client).
    pub from_server: bool,
    pub fin: bool,
    pub rsv1: bool,
    pub opcode: u8,
    /// The payload length as sent (compressed, for a compressed frame).
    pub len: u64,
}

impl TapFrame {
    /// A text or binary frame (the first of a message).
    pub fn is_data(&self) -> bool {
        matches!(self.opcode, 1 | 2)
    }
}

#[derive(Default)]
struct Record {
    frames: Vec<TapFrame>,
    heads: Vec<(bool, String)>,
}

/// The proxy; it runs until the test's runtime ends.
pub struct WireTap {
    addr: SocketAddr,
    record: Arc<Mutex<Record>>,
}

impl WireTap {
    /// Listens on a free loopback port and forwards every connection to `upstream`.
    pub async fn start(upstream: SocketAddr) -> WireTap {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let record = Arc::new(Mutex::new(Record::default()));
        let rec = record.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(upstream).await else { continue };
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                tokio::spawn(pipe(client_read, server_write, false, rec.clone()));
                tokio::spawn(pipe(server_read, client_write, true, rec.clone()));
            }
        });
        WireTap { addr, record }
    }

    /// The address to connect to instead of the server.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every frame seen so far, in order per direction.
    pub fn frames(&self) -> Vec<TapFrame> {
        self.record.lock().unwrap().frames.clone()
    }

    /// The data frames the server sent.
    pub fn server_data_frames(&self) -> Vec<TapFrame> {
        self.frames().into_iter().filter(|f| f.from_server && f.is_data()).collect()
    }

    /// The data frames the client sent.
    pub fn client_data_frames(&self) -> Vec<TapFrame> {
        self.frames().into_iter().filter(|f| !f.from_server && f.is_data()).collect()
    }

    /// The HTTP heads the server sent (the 101 answers).
    pub fn server_heads(&self) -> Vec<String> {
        self.record.lock().unwrap().heads.iter().filter(|(s, _)| *s).map(|(_, h)| h.clone()).collect()
    }

    /// The HTTP heads the client sent (the upgrade requests).
    pub fn client_heads(&self) -> Vec<String> {
        self.record.lock().unwrap().heads.iter().filter(|(s, _)| !*s).map(|(_, h)| h.clone()).collect()
    }
}

/// Copies one direction and parses it as it goes.
async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    from_server: bool,
    record: Arc<Mutex<Record>>,
) {
    let mut parser = Parser { from_server, head: Some(Vec::new()), pending: Vec::new(), skip: 0 };
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        parser.feed(&buf[..n], &record);
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

struct Parser {
    from_server: bool,
    /// The HTTP head until it is complete.
    head: Option<Vec<u8>>,
    /// Bytes of a frame header not yet complete.
    pending: Vec<u8>,
    /// Payload bytes still to skip.
    skip: u64,
}

impl Parser {
    fn feed(&mut self, mut data: &[u8], record: &Mutex<Record>) {
        if let Some(head) = &mut self.head {
            head.extend_from_slice(data);
            let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") else { return };
            let rest = head.split_off(end + 4);
            let text = String::from_utf8_lossy(head).into_owned();
            record.lock().unwrap().heads.push((self.from_server, text));
            self.head = None;
            self.pending = rest;
            data = &[];
        }
        self.pending.extend_from_slice(data);
        let mut bytes = std::mem::take(&mut self.pending);
        let mut at = 0;
        loop {
            if self.skip > 0 {
                let n = self.skip.min((bytes.len() - at) as u64);
                self.skip -= n;
                at += n as usize;
                if self.skip > 0 {
                    break;
                }
            }
            let Some((frame, header_len)) = decode(&bytes[at..], self.from_server) else { break };
            record.lock().unwrap().frames.push(frame);
            at += header_len;
            self.skip = frame.len;
        }
        self.pending = bytes.split_off(at);
    }
}

/// Decodes a frame header (RFC 6455 §5.2), if complete.
fn decode(b: &[u8], from_server: bool) -> Option<(TapFrame, usize)> {
    let (&b0, &b1) = (b.first()?, b.get(1)?);
    let (len, mut n) = match b1 & 0x7f {
        126 => (u64::from(u16::from_be_bytes(b.get(2..4)?.try_into().ok()?)), 4),
        127 => (u64::from_be_bytes(b.get(2..10)?.try_into().ok()?), 10),
        len => (u64::from(len), 2),
    };
    if b1 & 0x80 != 0 {
        n += 4;
    }
    if b.len() < n {
        return None;
    }
    let frame = TapFrame { from_server, fin: b0 & 0x80 != 0, rsv1: b0 & 0x40 != 0, opcode: b0 & 0x0f, len };
    Some((frame, n))
}
