//! Protocol tests: bytes in, events and bytes out, no socket and no clock.
//!
//! Frames fed to a connection are built by [`wire`], and frames it queues are read back
//! by [`frames`]: both written here, independently of the crate's own encoder and
//! decoder, so that a bug shared by both cannot hide. [`Pair`] moves bytes between an
//! in-memory client and server.

mod close;
mod counting;
mod deflate;
mod keepalive;
mod lending;
mod limits;
mod pair;
mod rfc_examples;
mod smoke;
mod splits;
mod utf8;
mod violations;

use bytes::Bytes;

use super::{Connection, Role, State};
use crate::{CloseCode, Config, Error, Event, Message};

/// The masking key of the RFC 6455 §5.7 examples.
const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// One frame as a peer puts it on the wire: first byte `b0` (FIN, RSV, opcode), the
/// shortest length form, then the key and the masked payload when `mask` is given.
fn wire(b0: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut out = vec![b0];
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    match payload.len() {
        n @ 0..=125 => out.push(mask_bit | n as u8),
        n @ 126..=0xffff => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    match mask {
        Some(key) => {
            out.extend_from_slice(&key);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        }
        None => out.extend_from_slice(payload),
    }
    out
}

/// A frame as the peer of a `role` connection sends it: masked towards a server,
/// unmasked towards a client (RFC 6455 §5.1).
fn from_peer(role: Role, b0: u8, payload: &[u8]) -> Vec<u8> {
    wire(b0, payload, (role == Role::Server).then_some(KEY))
}

/// A connection with the default configuration.
fn conn(role: Role) -> Connection {
    Connection::new(role, Config::default())
}

/// Feeds `bytes`, then polls every event.
fn feed_all(conn: &mut Connection, bytes: &[u8]) -> Vec<Result<Event, Error>> {
    conn.feed(bytes);
    poll_all(conn)
}

/// Polls until `poll_event` returns `None`.
fn poll_all(conn: &mut Connection) -> Vec<Result<Event, Error>> {
    let mut events = Vec::new();
    while let Some(event) = conn.poll_event() {
        events.push(event);
    }
    events
}

/// Takes every byte queued for the peer.
fn take_outbound(conn: &mut Connection) -> Vec<u8> {
    let out = conn.outbound();
    let mut all = Vec::new();
    while !out.is_empty() {
        let chunk = out.first_chunk().to_vec();
        out.advance(chunk.len());
        all.extend_from_slice(&chunk);
    }
    all
}

/// A frame read back from a connection's output.
#[derive(Debug, PartialEq, Eq)]
struct Frame {
    /// FIN, RSV and opcode.
    b0: u8,
    masked: bool,
    /// Unmasked.
    payload: Vec<u8>,
}

/// Splits bytes into frames, unmasking them. Panics on a truncated frame.
fn frames(mut bytes: &[u8]) -> Vec<Frame> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let (b0, b1) = (bytes[0], bytes[1]);
        let (len, mut at) = match b1 & 0x7f {
            126 => (u16::from_be_bytes([bytes[2], bytes[3]]) as usize, 4),
            127 => (u64::from_be_bytes(bytes[2..10].try_into().unwrap()) as usize, 10),
            n => (n as usize, 2),
        };
        let masked = b1 & 0x80 != 0;
        let key = masked.then(|| {
            at += 4;
            [bytes[at - 4], bytes[at - 3], bytes[at - 2], bytes[at - 1]]
        });
        let mut payload = bytes[at..at + len].to_vec();
        if let Some(key) = key {
            payload.iter_mut().enumerate().for_each(|(i, b)| *b ^= key[i % 4]);
        }
        out.push(Frame { b0, masked, payload });
        bytes = &bytes[at + len..];
    }
    out
}

/// The frames `conn` queued, checking that a client masks them and a server does not.
fn sent_frames(conn: &mut Connection) -> Vec<Frame> {
    let role = conn.role();
    let frames = frames(&take_outbound(conn));
    for frame in &frames {
        assert_eq!(frame.masked, role == Role::Client, "masking of {frame:?} sent by a {role:?}");
    }
    frames
}

/// A close frame's payload: the code, big-endian, then the reason.
fn close_payload(code: u16, reason: &str) -> Vec<u8> {
    let mut payload = code.to_be_bytes().to_vec();
    payload.extend_from_slice(reason.as_bytes());
    payload
}

/// Feeds `bytes` to a fresh connection and checks that it fails with exactly `error`:
/// the error is the last event and is returned once, the connection is closed, and the
/// close frame it queued last carries the error's code and reason. Returns the events
/// before the error.
fn assert_fails(role: Role, config: Config, bytes: &[u8], error: Error) -> Vec<Event> {
    let mut conn = Connection::new(role, config);
    let mut events = feed_all(&mut conn, bytes);
    assert_eq!(events.pop(), Some(Err(error.clone())), "{role:?} fed {bytes:02x?}");
    assert_eq!(conn.poll_event(), None);
    assert_eq!(conn.state(), State::Closed);
    assert_eq!(conn.send(Message::text("late")), Err(Error::AlreadyClosed));
    let code = error.close_code().expect("a peer violation has a close code");
    let last = sent_frames(&mut conn).pop().expect("a close frame is queued");
    assert_eq!(last.b0, 0x88);
    assert_eq!(last.payload, close_payload(code.0, error.reason()));
    events.into_iter().map(|e| e.expect("events before the error are fine")).collect()
}

/// A text message event.
fn text(s: &'static str) -> Result<Event, Error> {
    Ok(Event::Message(Message::text(s)))
}

/// A binary message event.
fn binary(data: impl Into<Bytes>) -> Result<Event, Error> {
    Ok(Event::Message(Message::binary(data)))
}

/// A close event with a status code and reason.
fn closed(code: CloseCode, reason: &str) -> Result<Event, Error> {
    Ok(Event::Close(Some(crate::CloseFrame::new(code, reason))))
}

/// A deterministic xorshift64* generator, so that "random" tests replay exactly.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n` (`n > 0`).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

/// An in-memory client and server, like quinn's test `Pair`: moves each side's output
/// to the other side, in chunks of random size when `max_chunk` is small, and collects
/// the events each side decodes.
struct Pair {
    client: Connection,
    server: Connection,
    client_events: Vec<Result<Event, Error>>,
    server_events: Vec<Result<Event, Error>>,
    rng: Rng,
    /// The largest number of bytes moved at once.
    max_chunk: usize,
}

impl Pair {
    fn new(config: Config) -> Self {
        Pair {
            client: Connection::new(Role::Client, config.clone()),
            server: Connection::new(Role::Server, config),
            client_events: Vec::new(),
            server_events: Vec::new(),
            rng: Rng::new(0x5eed),
            max_chunk: usize::MAX,
        }
    }

    /// A pair that moves bytes in chunks of 1 to `max_chunk` bytes.
    fn chunked(config: Config, max_chunk: usize, seed: u64) -> Self {
        Pair { rng: Rng::new(seed), max_chunk, ..Pair::new(config) }
    }

    /// Moves bytes both ways until neither side has anything to write.
    fn drive(&mut self) {
        while !self.client.outbound().is_empty() || !self.server.outbound().is_empty() {
            transfer(
                &mut self.client,
                &mut self.server,
                &mut self.server_events,
                &mut self.rng,
                self.max_chunk,
            );
            transfer(
                &mut self.server,
                &mut self.client,
                &mut self.client_events,
                &mut self.rng,
                self.max_chunk,
            );
        }
    }

    /// Drives, then takes what the server decoded.
    fn server_received(&mut self) -> Vec<Result<Event, Error>> {
        self.drive();
        std::mem::take(&mut self.server_events)
    }

    /// Drives, then takes what the client decoded.
    fn client_received(&mut self) -> Vec<Result<Event, Error>> {
        self.drive();
        std::mem::take(&mut self.client_events)
    }
}

/// Moves everything `from` has queued to `to`, polling `to` after each chunk.
fn transfer(
    from: &mut Connection,
    to: &mut Connection,
    events: &mut Vec<Result<Event, Error>>,
    rng: &mut Rng,
    max_chunk: usize,
) {
    while !from.outbound().is_empty() {
        let chunk = from.outbound().first_chunk();
        let n =
            if max_chunk == usize::MAX { chunk.len() } else { (1 + rng.below(max_chunk)).min(chunk.len()) };
        to.feed(&chunk[..n]);
        from.outbound().advance(n);
        events.extend(poll_all(to));
    }
}
