//! A whole sans-IO connection, driven by a script read from the input, in the call order
//! of `Connection`'s docs, permessage-deflate on.
//!
//! The connection under test (`conn`, its role from the first byte) talks to a peer of
//! the other role with the same deflate parameters. The script interleaves: arbitrary
//! bytes fed to `conn`; messages, fragments, pings and closes sent by either end; the
//! peer's bytes delivered to `conn` and `conn`'s bytes written to the peer, in pieces;
//! time passing; the end of the stream; `fail_connection`. Checked throughout:
//!
//! - nothing panics; every error `poll_event` returns carries a sendable close code and
//!   leaves the connection closed; commands fail exactly when the docs say;
//! - what `conn` writes walks as frames of its role (masked iff client), control frames
//!   whole and short, no frame after its close frame, nothing queued once it is closed;
//!   the peer decodes all of it without error, and receives exactly the messages `conn`
//!   sent, and the close frame `conn` chose;
//! - until arbitrary bytes are fed, `conn` receives exactly what the peer sent (or fails
//!   with a limit error);
//! - text is valid UTF-8, messages and control payloads are within their limits, and after
//!   decoding what it can, `conn` buffers at most one partial frame plus one message;
//! - all of the above holds when `conn` lends its data frames out
//!   (`poll_event_lending`, chosen by the first byte), and nothing is decoded while one
//!   is out.
#![no_main]

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use zapsocket_proto::deflate::{DeflateConfig, DeflateParams};
use zapsocket_proto::{
    CloseCode, CloseFrame, Config, Connection, Decoded, EncodedFrame, Error, Event, FrameHeader,
    MAX_HEADER_LEN, Message, OpCode, Outbound, Role, State,
};

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    let mut run = Run::new(input.byte(), input.byte(), input.byte());
    while !input.0.is_empty() {
        run.step(&mut input);
    }
    run.finish();
});

/// Whether to print each step (`FUZZ_TRACE=1 cargo fuzz run connection FILE`).
fn trace() -> bool {
    static TRACE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *TRACE.get_or_init(|| std::env::var_os("FUZZ_TRACE").is_some())
}

/// The fuzzer's bytes, read front to back; zeros once exhausted.
struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    fn byte(&mut self) -> u8 {
        let Some((&b, rest)) = self.0.split_first() else { return 0 };
        self.0 = rest;
        b
    }

    fn take(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.0.split_at(n.min(self.0.len()));
        self.0 = rest;
        head
    }

    /// A payload: up to 16 bytes of input repeated to a length that can reach past
    /// the 16-bit frame length (0 to 199 bytes, or (L - 200) × 2 KiB).
    fn payload(&mut self) -> Vec<u8> {
        let len = match self.byte() {
            l @ 0..200 => usize::from(l),
            l => usize::from(l - 200) * 2048,
        };
        let pattern = self.take(16);
        if pattern.is_empty() {
            return vec![0; len];
        }
        pattern.iter().copied().cycle().take(len).collect()
    }

    /// Valid UTF-8 made of a payload.
    fn text(&mut self) -> String {
        String::from_utf8_lossy(&self.payload()).into_owned()
    }

    /// A short string (up to 130 bytes: past the 123 a close reason may have).
    fn short_text(&mut self) -> String {
        let n = usize::from(self.byte() % 131);
        let mut s = String::from_utf8_lossy(self.take(n)).into_owned();
        while s.len() > 130 {
            s.pop();
        }
        s
    }

    fn close_code(&mut self) -> CloseCode {
        const CODES: [u16; 12] = [1000, 1001, 1002, 1005, 1006, 1009, 1011, 1015, 2999, 3000, 4999, 5000];
        let pick = self.byte();
        match CODES.get(usize::from(pick)) {
            Some(&code) => CloseCode(code),
            None => CloseCode(u16::from_be_bytes([pick, self.byte()])),
        }
    }
}

/// One end and what the script made it send.
struct End {
    conn: Connection,
    /// The messages it sent, not yet received by the other end.
    sent: VecDeque<Message>,
    /// A fragmented message being sent: text?, its bytes so far, and for text the end of
    /// the last string (held back so that fragments may split a code point while the
    /// whole message stays valid UTF-8).
    fragmented: Option<(bool, Vec<u8>, Vec<u8>)>,
    /// The close frame its first close carried (`None` for 1005), once it sent one.
    close: Option<Option<CloseFrame>>,
}

impl End {
    fn new(role: Role, config: Config, params: DeflateParams, deflate: &DeflateConfig) -> Self {
        let mut conn = Connection::new(role, config);
        conn.set_deflate(params, deflate);
        End { conn, sent: VecDeque::new(), fragmented: None, close: None }
    }

    fn open(&self) -> bool {
        self.conn.state() == State::Open
    }

    /// A command that fails, by the docs, on a connection that is not open.
    fn expect_open(&self, result: Result<(), Error>, was_open: bool) {
        if was_open {
            assert_eq!(result, Ok(()));
        } else {
            assert_eq!(result, Err(Error::AlreadyClosed));
        }
    }

    /// `send`, `send_uncompressed` or `send_encoded` of a whole message.
    fn send(&mut self, input: &mut Input<'_>) {
        let how = input.byte();
        let message =
            if how & 1 == 0 { Message::text(input.text()) } else { Message::binary(input.payload()) };
        let ready = self.open() && self.fragmented.is_none();
        let result = match (how >> 1) & 3 {
            0 => self.conn.send_uncompressed(message.clone()),
            1 => self.conn.send_encoded(&match &message {
                Message::Text(t) => EncodedFrame::text(t),
                Message::Binary(b) => EncodedFrame::binary(b),
            }),
            _ => self.conn.send(message.clone()),
        };
        match result {
            Ok(()) => {
                assert!(ready, "sent while not ready: {:?}", self.conn.state());
                self.sent.push_back(message);
            }
            Err(Error::AlreadyClosed) => assert!(!self.open()),
            Err(Error::FragmentOrder) => assert!(self.open() && self.fragmented.is_some()),
            Err(e) => panic!("send: {e:?}"),
        }
    }

    /// `send_fragment`: text fragments split the strings anywhere, yet the whole message
    /// is valid UTF-8.
    fn send_fragment(&mut self, input: &mut Input<'_>) {
        let how = input.byte();
        let (text, fin) = (how & 1 == 0, how & 2 != 0);
        let (payload, held) = if text {
            let s = input.text().into_bytes();
            let held = self.fragmented.as_ref().map_or(&[][..], |f| &f.2[..]);
            let cut = if fin { s.len() } else { usize::from(input.byte()) * 7 % (s.len() + 1) };
            ([held, &s[..cut]].concat(), s[cut..].to_vec())
        } else {
            (input.payload(), Vec::new())
        };
        let was_open = self.open();
        let result = self.conn.send_fragment(text, Bytes::from(payload.clone()), fin);
        match (&mut self.fragmented, result) {
            (_, Err(Error::AlreadyClosed)) => assert!(!was_open),
            (Some((t, _, _)), Err(Error::FragmentOrder)) => assert!(was_open && *t != text),
            (_, Err(e)) => panic!("send_fragment: {e:?}"),
            (Some((t, _, _)), Ok(())) if *t != text => panic!("a fragment of the other kind was accepted"),
            (state, Ok(())) => {
                assert!(was_open);
                let (_, so_far, tail) = state.get_or_insert_with(|| (text, Vec::new(), Vec::new()));
                so_far.extend_from_slice(&payload);
                *tail = held;
                if fin {
                    let (_, bytes, _) = state.take().unwrap_or_default();
                    self.sent.push_back(if text {
                        Message::text(String::from_utf8(bytes).expect("fragments of valid strings"))
                    } else {
                        Message::binary(bytes)
                    });
                }
            }
        }
    }

    /// `ping` or `pong`, with payloads up to 130 bytes (over 125 must be refused).
    fn control(&mut self, input: &mut Input<'_>) {
        let how = input.byte();
        let payload = input.take(usize::from(how >> 1) % 131).to_vec();
        let was_open = self.open();
        let result = if how & 1 == 0 { self.conn.ping(&payload) } else { self.conn.pong(&payload) };
        if was_open && payload.len() > 125 {
            assert_eq!(result, Err(Error::ControlPayloadTooLong));
        } else {
            self.expect_open(result, was_open);
        }
    }

    /// `close(now, code, reason)`.
    fn close(&mut self, input: &mut Input<'_>, now: Instant) {
        let (code, reason) = (input.close_code(), input.short_text());
        let was_open = self.open();
        let result = self.conn.close(now, code, &reason);
        if code != CloseCode::NO_STATUS && !code.is_sendable() {
            assert_eq!(result, Err(Error::UnsendableCloseCode(code.0)));
        } else if reason.len() > 123 {
            assert_eq!(result, Err(Error::ControlPayloadTooLong));
        } else {
            assert_eq!(result, Ok(()));
            if was_open {
                assert_eq!(self.conn.state(), State::CloseSent);
                self.close = Some((code != CloseCode::NO_STATUS).then(|| CloseFrame::new(code, reason)));
            }
        }
    }

    /// Bytes of the outbound queue: up to `n` (all when `n` is 0), through
    /// `first_chunk` or `io_slices`, then `advance` and `queue_held_pong`.
    fn write(&mut self, n: usize, vectored: bool) -> Vec<u8> {
        let out = self.conn.outbound();
        assert_eq!(out.queued_offset() - out.written_offset(), out.len() as u64);
        let (queued, gathered) = (out.len(), gather(out));
        assert!(gathered.len() == queued || out.chunk_count() > 8, "io_slices must hold the whole queue");
        let wanted = if n == 0 { queued } else { n.min(queued) };
        let mut written = Vec::with_capacity(wanted);
        while written.len() < wanted {
            let chunk = if vectored { gather(out) } else { out.first_chunk().to_vec() };
            assert!(!chunk.is_empty(), "{} bytes queued, none to write", out.len());
            let take = chunk.len().min(wanted - written.len());
            written.extend_from_slice(&chunk[..take]);
            out.advance(take);
        }
        self.conn.queue_held_pong();
        written
    }
}

/// What `io_slices` offers to write at once (up to 8 chunks).
fn gather(out: &Outbound) -> Vec<u8> {
    let mut slices = [std::io::IoSlice::new(&[]); 8];
    let filled = out.io_slices(&mut slices);
    slices[..filled].iter().flat_map(|s| s.iter().copied()).collect()
}

/// Checks frame by frame what one end writes (headers only: the payload is the peer's
/// to check).
struct Walker {
    role: Role,
    deflate: bool,
    buf: Vec<u8>,
    closed: bool,
}

impl Walker {
    fn feed(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
        loop {
            let (header, len) = match FrameHeader::decode(&self.buf, self.deflate) {
                Ok(Some(h)) => h,
                Ok(None) => return,
                Err(e) => panic!("{:?} wrote an invalid frame header: {e:?}", self.role),
            };
            assert_eq!(header.mask.is_some(), self.role == Role::Client, "masking of {:?}", header);
            assert!(!self.closed, "{:?} wrote {:?} after its close frame", self.role, header.opcode);
            let end = len as u64 + header.payload_len;
            if (self.buf.len() as u64) < end {
                return;
            }
            if header.opcode == OpCode::Close {
                self.closed = true;
            }
            self.buf.drain(..end as usize);
        }
    }
}

struct Run {
    conn: End,
    peer: End,
    walker: Walker,
    limits: Config,
    now: Instant,
    /// No arbitrary bytes were fed to `conn` yet: it receives exactly what the peer sent.
    pristine: bool,
    /// `conn`'s queued offset when it became closed: nothing may be queued after.
    closed_at: Option<u64>,
    /// `conn` decodes with `poll_event_lending(min)`: data frames lent out, checked to
    /// block decoding while out, then run and taken back. `None`: `poll_event`.
    lend: Option<usize>,
}

impl Run {
    fn new(setup: u8, limits: u8, deflate: u8) -> Self {
        let role = if setup & 1 == 0 { Role::Server } else { Role::Client };
        let params = DeflateParams {
            server_no_context_takeover: setup & 2 != 0,
            client_no_context_takeover: setup & 4 != 0,
            server_max_window_bits: (setup & 8 != 0).then_some(8 + (deflate >> 4) % 8),
            client_max_window_bits: (setup & 16 != 0).then_some(8 + (deflate >> 4) % 8),
        };
        let deflate = DeflateConfig::default().level(u32::from(deflate % 10)).threshold(match deflate >> 7 {
            0 => 0,
            _ => 64,
        });
        let mut config = Config::default()
            .max_frame_size(64 << (limits & 7))
            .max_message_size(128 << ((limits >> 3) & 7))
            .ping_interval((setup & 32 != 0).then_some(Duration::from_secs(1)))
            .pong_timeout(Duration::from_secs(2))
            .close_timeout(Duration::from_secs(3));
        if limits & 64 != 0 {
            config = config.max_message_parts(4);
        }
        if limits & 128 != 0 {
            config = config.max_pong_backlog(64);
        }
        let other = if role == Role::Server { Role::Client } else { Role::Server };
        Run {
            conn: End::new(role, config.clone(), params, &deflate),
            peer: End::new(other, Config::default(), params, &deflate),
            walker: Walker { role, deflate: true, buf: Vec::new(), closed: false },
            limits: config,
            now: Instant::now(),
            pristine: true,
            closed_at: None,
            lend: match setup >> 6 {
                0 => None,
                1 => Some(0),
                2 => Some(64),
                _ => Some(1024),
            },
        }
    }

    fn step(&mut self, input: &mut Input<'_>) {
        let op = input.byte() % 16;
        if trace() {
            eprintln!(
                "op {op:2}, next {:?}; conn {:?}, peer {:?}",
                &input.0[..input.0.len().min(4)],
                self.conn.conn.state(),
                self.peer.conn.state()
            );
        }
        match op {
            0 => {
                let n = usize::from(input.byte());
                let bytes = input.take(n);
                self.pristine = false;
                if input.byte() & 1 == 0 {
                    self.conn.conn.feed(bytes);
                } else {
                    self.conn.conn.read_buffer().extend_from_slice(bytes);
                    self.conn.conn.note_received();
                }
                self.poll_conn();
            }
            1 => self.peer.send(input),
            2 => self.peer.send_fragment(input),
            3 => self.peer.control(input),
            4 => self.peer.close(input, self.now),
            5 | 6 => {
                let how = input.byte();
                let bytes = self.peer.write(usize::from(how >> 1) * 4, how & 1 != 0);
                self.conn.conn.feed(&bytes);
                self.poll_conn();
            }
            7 | 8 => {
                let how = input.byte();
                self.write_conn(usize::from(how >> 1) * 4, how & 1 != 0);
            }
            9 => self.conn.send(input),
            10 => self.conn.send_fragment(input),
            11 => self.conn.control(input),
            12 => self.conn.close(input, self.now),
            13 => {
                self.now += Duration::from_millis(u64::from(input.byte()) * 50);
                self.tick();
            }
            14 => self.fail(input),
            _ => match input.byte() % 4 {
                0 => {
                    let was_closed = self.conn.conn.is_closed();
                    let result = self.conn.conn.feed_eof();
                    assert_eq!(result, if was_closed { Ok(()) } else { Err(Error::ConnectionReset) });
                    assert!(self.conn.conn.is_closed());
                    self.poll_conn();
                }
                1 => self.conn.conn.release_buffers(),
                _ => {
                    let hint = self.conn.conn.read_hint();
                    assert!(hint <= MAX_HEADER_LEN + self.limits.max_frame_size, "read_hint {hint}");
                }
            },
        }
        self.check_closed();
    }

    /// Decodes what `conn` has, checking every event and the buffers after.
    /// The next event `conn` decodes, lending data frames when the run says so.
    fn next_event(&mut self) -> Option<Result<Event, Error>> {
        let Some(min) = self.lend else { return self.conn.conn.poll_event() };
        loop {
            return match self.conn.conn.poll_event_lending(min)? {
                Ok(Decoded::Event(event)) => Some(Ok(event)),
                Err(e) => Some(Err(e)),
                Ok(Decoded::Lent(mut lent)) => {
                    assert!(self.conn.conn.lending());
                    assert_eq!(self.conn.conn.poll_event(), None, "decoded while a frame was lent");
                    lent.run();
                    match self.conn.conn.take_back(lent) {
                        Some(event) => Some(event),
                        None => continue, // a fragment
                    }
                }
            };
        }
    }

    fn poll_conn(&mut self) {
        while let Some(event) = self.next_event() {
            match event {
                Ok(Event::Message(m)) => {
                    assert!(m.len() <= self.limits.max_message_size, "message of {}", m.len());
                    if let Message::Text(t) = &m {
                        assert!(std::str::from_utf8(t.as_bytes()).is_ok(), "text is not UTF-8");
                    }
                    if self.pristine {
                        assert_eq!(Some(m), self.peer.sent.pop_front(), "conn received another message");
                    }
                }
                Ok(Event::Ping(p) | Event::Pong(p)) => assert!(p.len() <= 125),
                Ok(Event::Close(frame)) => {
                    assert!(self.conn.conn.is_closed());
                    let expected = frame.clone().unwrap_or(CloseFrame::new(CloseCode::NO_STATUS, ""));
                    assert_eq!(self.conn.conn.close_frame(), Some(&expected));
                    if let Some(f) = &frame {
                        assert!(f.code.is_sendable() && f.reason.len() <= 123, "{f:?}");
                    }
                    if self.pristine
                        && let Some(sent) = &self.peer.close
                    {
                        assert_eq!(&frame, sent);
                    }
                }
                Err(e) => {
                    assert!(e.close_code().is_some_and(CloseCode::is_sendable), "{e:?}");
                    assert!(self.conn.conn.is_closed(), "{e:?} left the connection open");
                    let limit = matches!(
                        e,
                        Error::FrameTooLarge { .. }
                            | Error::MessageTooLarge { .. }
                            | Error::TooManyParts { .. }
                    );
                    assert!(!self.pristine || limit, "{e:?} from the peer's valid frames");
                }
            }
        }
        if !self.conn.conn.is_closed() {
            let (undecoded, buffered) = (self.conn.conn.undecoded_len(), self.conn.conn.buffered_incoming());
            assert!(undecoded <= MAX_HEADER_LEN + self.limits.max_frame_size, "{undecoded} undecoded");
            assert!(buffered - undecoded <= self.limits.max_message_size, "{buffered} buffered");
        }
    }

    /// Writes `conn`'s bytes to the walker and the peer; the peer must decode them all.
    fn write_conn(&mut self, n: usize, vectored: bool) {
        let bytes = self.conn.write(n, vectored);
        self.walker.feed(&bytes);
        self.peer.conn.feed(&bytes);
        while let Some(event) = self.peer.conn.poll_event() {
            match event {
                Ok(Event::Message(m)) => assert_eq!(Some(m), self.conn.sent.pop_front(), "peer received"),
                Ok(Event::Close(frame)) => {
                    if let Some(f) = &frame {
                        assert!(f.code.is_sendable(), "{f:?}");
                    }
                    if let Some(sent) = &self.conn.close {
                        assert_eq!(&frame, sent, "conn's close frame");
                    }
                }
                Ok(Event::Ping(_) | Event::Pong(_)) => {}
                Err(e) => panic!("the peer cannot decode conn's output: {e:?}"),
            }
        }
    }

    fn tick(&mut self) {
        let was_closed = self.conn.conn.is_closed();
        if was_closed {
            assert_eq!(self.conn.conn.poll_timeout(), None);
        }
        match self.conn.conn.handle_timeout(self.now) {
            Ok(()) => {}
            Err(e @ (Error::CloseTimeout | Error::KeepaliveTimeout)) => {
                assert!(!was_closed && self.conn.conn.is_closed(), "{e:?}");
                assert_eq!(e.close_code(), None);
            }
            Err(e) => panic!("handle_timeout: {e:?}"),
        }
    }

    fn fail(&mut self, input: &mut Input<'_>) {
        let (code, reason) = (input.close_code(), input.short_text());
        let was_open = self.conn.open();
        let result = self.conn.conn.fail_connection(code, &reason);
        if !code.is_sendable() {
            assert_eq!(result, Err(Error::UnsendableCloseCode(code.0)));
        } else if reason.len() > 123 {
            assert_eq!(result, Err(Error::ControlPayloadTooLong));
        } else {
            assert_eq!(result, Ok(()));
            assert!(self.conn.conn.is_closed());
            if was_open {
                self.conn.close = Some(Some(CloseFrame::new(code, reason)));
            }
        }
    }

    /// Once `conn` is closed, it queues nothing more.
    fn check_closed(&mut self) {
        let queued = self.conn.conn.outbound().queued_offset();
        match self.closed_at {
            Some(at) => assert_eq!(queued, at, "conn queued bytes after it was closed"),
            None if self.conn.conn.is_closed() => self.closed_at = Some(queued),
            None => {}
        }
        if self.conn.conn.is_closed() {
            assert!(!self.conn.conn.has_held_pong(), "a pong is held back on a closed connection");
        }
    }

    /// Writes out whatever is queued both ways; the peer then has every message `conn`
    /// sent.
    fn finish(mut self) {
        for _ in 0..3 {
            self.write_conn(0, false);
            let bytes = self.peer.write(0, false);
            self.conn.conn.feed(&bytes);
            self.poll_conn();
            self.check_closed();
        }
        assert!(self.conn.sent.is_empty(), "sent but never received: {:?}", self.conn.sent.front());
    }
}
