//! Test helpers: servers on port 0, raw TCP peers.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

pub mod descriptors;
pub mod peers;
pub mod proxy;

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use zapsocket::WebSocket;

/// Starts an echo server (text as text, binary as binary) with `builder` settings;
/// returns its address.
pub async fn echo_server(builder: zapsocket::ServerBuilder) -> SocketAddr {
    let server = builder.bind().await.unwrap();
    let addr = server.local_addr();
    tokio::spawn(server.serve(|mut ws: WebSocket| async move {
        while let Some(Ok(msg)) = ws.recv().await {
            if msg.is_data() && ws.send(msg).await.is_err() {
                break;
            }
        }
    }));
    addr
}

pub fn url(addr: SocketAddr, path: &str) -> String {
    format!("ws://{addr}{path}")
}

/// A raw TCP peer that performed a handshake by hand.
pub struct RawPeer {
    pub stream: TcpStream,
}

impl RawPeer {
    /// Opens a TCP connection and sends `request` verbatim; returns the peer and the
    /// response head.
    pub async fn request(addr: SocketAddr, request: impl AsRef<[u8]>) -> (RawPeer, String) {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(request.as_ref()).await.unwrap();
        let head = read_head(&mut stream).await;
        (RawPeer { stream }, head)
    }

    /// Performs a valid handshake on `path`.
    pub async fn connect(addr: SocketAddr, path: &str) -> RawPeer {
        let (peer, head) = RawPeer::request(addr, upgrade_request(path)).await;
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        peer
    }

    /// Sends raw bytes.
    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    /// Sends a masked frame.
    pub async fn send_frame(&mut self, first_byte: u8, payload: &[u8]) {
        self.send_raw(&masked_frame(first_byte, payload)).await;
    }

    /// Reads until the server ends the connection (or 5 s pass); returns all bytes.
    pub async fn read_to_end(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        let _ = zapsocket::time::timeout(Duration::from_secs(5), self.stream.read_to_end(&mut out)).await;
        out
    }

    /// Reads one unmasked server frame: (first byte, payload).
    pub async fn read_frame(&mut self) -> (u8, Vec<u8>) {
        let mut head = [0u8; 2];
        self.stream.read_exact(&mut head).await.unwrap();
        let len = match head[1] & 0x7f {
            126 => {
                let mut b = [0u8; 2];
                self.stream.read_exact(&mut b).await.unwrap();
                u16::from_be_bytes(b) as usize
            }
            127 => {
                let mut b = [0u8; 8];
                self.stream.read_exact(&mut b).await.unwrap();
                u64::from_be_bytes(b) as usize
            }
            n => n as usize,
        };
        let mut payload = vec![0u8; len];
        self.stream.read_exact(&mut payload).await.unwrap();
        (head[0], payload)
    }

    /// Reads frames until a close frame; returns its code (None if empty).
    pub async fn read_close_code(&mut self) -> Option<u16> {
        loop {
            let (b0, payload) =
                zapsocket::time::timeout(Duration::from_secs(5), self.read_frame()).await.unwrap();
            if b0 & 0x0f == 0x8 {
                return (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]));
            }
        }
    }
}

pub fn upgrade_request(path: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
}

/// The code of the masked close frame (a client's) at the start of `received`.
pub fn masked_close_code(received: &[u8]) -> u16 {
    assert!(received.len() >= 8 && received[0] == 0x88, "no close frame: {received:02x?}");
    let key = &received[2..6];
    u16::from_be_bytes([received[6] ^ key[0], received[7] ^ key[1]])
}

/// A masked client frame with the given first byte (FIN/RSV/opcode).
pub fn masked_frame(first_byte: u8, payload: &[u8]) -> Vec<u8> {
    let key = [0x11, 0x22, 0x33, 0x44];
    let mut out = vec![first_byte];
    match payload.len() {
        n @ 0..=125 => out.push(0x80 | n as u8),
        n @ 126..=0xffff => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&key);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    out
}

async fn read_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match zapsocket::time::timeout(Duration::from_secs(5), stream.read(&mut byte)).await {
            Ok(Ok(1)) => head.push(byte[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}
