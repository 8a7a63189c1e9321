//! One loop: its listening socket, its connections, its topics and its inbox.
//!
//! A pass of the loop: wait for readiness (or the next tick); accept what is pending;
//! for each readable socket read up to 1 MiB (256 KiB at a time), decode and call the
//! handler for each message (its sends only queue bytes); deliver what the handlers
//! published; take the inbox; then write every connection that has something queued,
//! once (the `dirty` list), and end those that are done. A tick (a quarter of the shortest timeout, 10 ms
//! to 1 s) runs the protocol's timers (heartbeat, close timeout), the write and
//! handshake timeouts, and frees the buffers of connections idle since the last tick.
//!
//! Sockets are registered once, edge-triggered, for reading and writing. A read that
//! returns less than asked drained the socket (the next bytes bring a new edge); a read
//! that fills the buffer 4 times in a turn leaves the rest for the next pass (the
//! `again` list), so one busy peer cannot starve the others.
//!
//! The parts: `handshake.rs` (the request head, the decision, the 101), `socket.rs`
//! (what a callback gets), `topics.rs` (pub/sub on this loop), `inbox.rs` (what other
//! threads post to it), `wire.rs` (reads and writes, straight or through TLS) and
//! `ending.rs` (timers, shutdown, the end of a connection).

mod ending;
mod handle;
mod handshake;
mod inbox;
mod socket;
mod topics;
mod wire;

use std::collections::HashMap;
use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use rustls::ServerConnection;
use slab::Slab;
use zapsocket_proto::deflate::DeflateParams;
use zapsocket_proto::handshake::{RequestParser, ServerResponse, error_response};
use zapsocket_proto::{CloseCode, Connection, EncodedFrame, Event, Role, State};

use super::{Handler, MAX_INBOX_BYTES, Sent, Settings, Shared};
use crate::config::SlowConsumer;
use crate::message::Message;
use crate::request::Request;
use crate::shared::ReadyState;

use handle::Link;
pub use handle::{Fanout, Handle};
pub(crate) use inbox::{Command, Remote, Target};
pub use socket::Socket;
use topics::{Topics, deliver, deliver_published};
pub(crate) use wire::listen;
use wire::read_plain;

const LISTENER: Token = Token(0);
const WAKER: Token = Token(1);
/// A connection's token is its key in the slab plus this.
const FIRST: usize = 2;
/// The loop's read buffer.
const SCRATCH: usize = 256 * 1024;
/// Full reads of one socket in one pass before the others get their turn (1 MiB).
const MAX_READS: usize = 4;
/// The most a connection's read buffer grows at once for a frame it knows the size of
/// (a declared length is not trusted for more).
const MAX_RESERVE: usize = 4 << 20;
/// How long a refused client has to read its answer before the socket is closed.
const LINGER: Duration = Duration::from_secs(2);

// `Open::flags`.
/// In the `dirty` list: to be written at the end of the pass.
const DIRTY: u8 = 1;
/// Not read: its own sends filled its send queue.
const PAUSED: u8 = 2;
/// Read since the last tick (an idle one gives its buffers back).
const ACTIVE: u8 = 4;
/// To end without a close handshake, at the end of the pass (`Open::ending` says why).
const TERMINATE: u8 = 8;
/// Not read, and what was read not decoded: its handler paused it ([`Socket::pause`]).
const HELD: u8 = 16;
/// Resumed after [`HELD`]: what was read before the pause is decoded before reading.
const RESUMED: u8 = 32;

/// A loop before its thread starts.
#[derive(Debug)]
pub(crate) struct Loop {
    poll: Poll,
    listener: TcpListener,
}

impl Loop {
    pub(crate) fn new(mut listener: TcpListener) -> io::Result<(Loop, Remote)> {
        let poll = Poll::new()?;
        poll.registry().register(&mut listener, LISTENER, Interest::READABLE)?;
        let waker = Waker::new(poll.registry(), WAKER)?;
        let remote = Remote::new(waker);
        Ok((Loop { poll, listener }, remote))
    }

    /// Runs the loop on this thread until it shut down and its last connection ended.
    pub(crate) fn run<H: Handler>(self, index: usize, handler: H, shared: Arc<Shared>) {
        let tick = tick_interval(&shared.settings);
        let mut worker = Worker {
            poll: self.poll,
            listener: Some(self.listener),
            handler,
            conns: Slab::new(),
            cx: Cx {
                index,
                shared,
                now: Instant::now(),
                scratch: vec![0; SCRATCH].into_boxed_slice(),
                dirty: Vec::new(),
                again: Vec::new(),
                topics: Topics::default(),
                published: Vec::new(),
                inbox: Vec::new(),
                shutdown: None,
                tls: None,
            },
        };
        worker.cx.shared.remotes[index].enter();
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| worker.run(tick)));
        // Stopped (shut down, a failed poll, or a handler's panic): what it held is gone.
        let remote = &worker.cx.shared.remotes[index];
        remote.stop();
        let open = worker.conns.iter().filter(|(_, c)| matches!(c.phase, Phase::Open(_))).count();
        for (_, conn) in worker.conns.iter() {
            if let Phase::Open(open) = &conn.phase
                && let Some(link) = &open.link
            {
                // Its handles' waits end; their sends do nothing.
                link.ended();
            }
        }
        worker.cx.shared.connections.fetch_sub(open, Ordering::AcqRel);
        if let Err(panic) = outcome {
            tracing::error!(
                loop_index = index,
                connections = open,
                "reactor loop: a handler panicked; the loop stops"
            );
            std::panic::resume_unwind(panic);
        }
    }
}

/// `now + wait`, or a date too far to matter when that is not representable
/// (`Duration::MAX` as "no timeout").
fn after(now: Instant, wait: Duration) -> Instant {
    now.checked_add(wait).unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 24 * 3600))
}

/// How often the timers are looked at: a quarter of the shortest, 10 ms to 1 s.
fn tick_interval(settings: &Settings) -> Duration {
    let config = &settings.config;
    let mut shortest =
        settings.handshake_timeout.min(config.protocol.close_timeout).min(settings.shutdown_timeout);
    if let Some(interval) = config.protocol.ping_interval {
        shortest = shortest.min(interval).min(config.protocol.pong_timeout);
    }
    if let Some(timeout) = config.write_timeout {
        shortest = shortest.min(timeout);
    }
    (shortest / 4).clamp(Duration::from_millis(10), Duration::from_secs(1))
}

/// One accepted socket.
struct Conn<S> {
    stream: TcpStream,
    /// TLS (`ReactorBuilder::tls`): what is read and written goes through it.
    tls: Option<Box<ServerConnection>>,
    phase: Phase<S>,
}

enum Phase<S> {
    /// Reading the request head, or answering a refusal.
    Handshake(Box<Handshake>),
    /// A WebSocket connection.
    Open(Box<Open<S>>),
}

struct Handshake {
    parser: RequestParser,
    deadline: Instant,
    /// The refusal being written, and how much of it was.
    refusal: Option<(Vec<u8>, usize)>,
    /// The refusal is written and our side shut: reading until the client closes (so
    /// that closing does not reset the connection before it read the answer).
    lingering: bool,
}

/// An open connection: the protocol state machine and the rest of the connection
/// ([`Live`]), and the handler's state.
pub(super) struct Open<S> {
    live: Live,
    state: S,
}

impl<S> std::ops::Deref for Open<S> {
    type Target = Live;

    fn deref(&self) -> &Live {
        &self.live
    }
}

impl<S> std::ops::DerefMut for Open<S> {
    fn deref_mut(&mut self) -> &mut Live {
        &mut self.live
    }
}

/// An open connection but for the handler's state: what a [`Socket`] works on, whatever
/// state it is given ([`Socket::map`]).
pub(super) struct Live {
    ws: Connection,
    flags: u8,
    /// The subprotocol agreed on.
    protocol: Option<Box<str>>,
    /// The topics subscribed to (ids in the loop's [`Topics`]).
    topics: Vec<u32>,
    /// Since when queued bytes wait without the peer taking any.
    stalled: Option<Instant>,
    /// Why we end it, when we do (a violation, a timeout, a full queue, `terminate`).
    ending: Option<Box<(CloseCode, String)>>,
    /// What its [`Handle`]s share with it, once one was made.
    link: Option<Arc<Link>>,
}

impl Live {
    /// Puts it in `dirty` (the connections to write at the end of the pass), once.
    fn mark(&mut self, dirty: &mut Vec<usize>, key: usize) {
        if self.flags & DIRTY == 0 {
            self.flags |= DIRTY;
            dirty.push(key);
        }
    }

    fn end(&mut self, code: CloseCode, reason: impl Into<String>) {
        self.ending.get_or_insert_with(|| Box::new((code, reason.into())));
        self.flags |= TERMINATE;
    }
}

/// A message a handler published on this loop, delivered after its callback.
struct Publish {
    target: Target,
    frame: EncodedFrame,
    except: Option<usize>,
}

/// What the callbacks of a loop reach besides their own connection.
pub(super) struct Cx {
    index: usize,
    shared: Arc<Shared>,
    /// The time at the start of this pass.
    now: Instant,
    scratch: Box<[u8]>,
    /// Connections with bytes to write (or to end) at the end of the pass.
    dirty: Vec<usize>,
    /// Connections with more to read than one pass takes.
    again: Vec<usize>,
    topics: Topics,
    published: Vec<Publish>,
    inbox: Vec<Command>,
    /// Shutting down: until when clients may take to answer the 1001.
    shutdown: Option<Instant>,
    /// The TLS configuration last taken from the identity, and the same without `h2`
    /// (no HTTP/2 here): (what the identity gave, what sessions use).
    tls: Option<(Arc<rustls::ServerConfig>, Arc<rustls::ServerConfig>)>,
}

impl Cx {
    /// The configuration for a new TLS session, if the server has TLS: the identity's
    /// now (it may have been replaced), offering `http/1.1` only.
    fn tls_config(&mut self) -> Option<Arc<rustls::ServerConfig>> {
        let current = self.shared.settings.tls.as_ref()?.current();
        match &self.tls {
            Some((seen, ours)) if Arc::ptr_eq(seen, &current) => Some(ours.clone()),
            _ => {
                let mut config = (*current).clone();
                config.alpn_protocols.retain(|p| p.as_slice() != b"h2");
                let ours = Arc::new(config);
                self.tls = Some((current, ours.clone()));
                Some(ours)
            }
        }
    }

    fn mark(&mut self, open: &mut Live, key: usize) {
        open.mark(&mut self.dirty, key);
    }

    /// Publishes from a callback: to this loop after the callback, to the others now.
    fn publish(&mut self, target: Target, frame: EncodedFrame, except: Option<usize>) {
        for index in 0..self.shared.remotes.len() {
            if index != self.index {
                let command = Command::Publish { target: target.clone(), frame: frame.clone(), except: None };
                self.shared.post(index, command);
            }
        }
        self.published.push(Publish { target, frame, except });
    }
}

/// The loop on its thread.
struct Worker<H: Handler> {
    poll: Poll,
    listener: Option<TcpListener>,
    handler: H,
    conns: Slab<Conn<H::State>>,
    cx: Cx,
}

impl<H: Handler> Worker<H> {
    fn run(&mut self, tick: Duration) {
        let mut events = Events::with_capacity(1024);
        let mut next_tick = Instant::now() + tick;
        loop {
            let posted = self.cx.shared.remotes[self.cx.index].has_posts();
            let timeout = if self.cx.again.is_empty() && !posted {
                next_tick.saturating_duration_since(Instant::now())
            } else {
                Duration::ZERO
            };
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                tracing::error!(error = %e, "reactor loop: poll failed; the loop stops");
                return;
            }
            self.cx.now = Instant::now();
            // Sockets with more to read than their last turn took: after this pass's events.
            let again = std::mem::take(&mut self.cx.again);
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept(),
                    WAKER => self.take_inbox(),
                    Token(token) => {
                        let key = token - FIRST;
                        if event.is_read_closed() || event.is_error() {
                            // The end (or an error) came with the data: read up to it.
                            self.peer_ended(key);
                            self.readable(key, true);
                        } else if event.is_readable() {
                            self.readable(key, false);
                        }
                        if event.is_writable() {
                            self.writable(key);
                        }
                    }
                }
            }
            for key in again {
                self.readable(key, true);
            }
            // What the callbacks of this pass posted through handles.
            if self.cx.shared.remotes[self.cx.index].has_posts() {
                self.take_inbox();
            }
            self.flush();
            if self.cx.now >= next_tick {
                self.tick();
                self.flush();
                next_tick = self.cx.now + tick;
            }
            if self.cx.shutdown.is_some() && self.conns.is_empty() {
                return;
            }
        }
    }

    fn accept(&mut self) {
        loop {
            let Some(listener) = &self.listener else { return };
            match listener.accept() {
                Ok((mut stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    let entry = self.conns.vacant_entry();
                    let token = Token(entry.key() + FIRST);
                    // Registering reports what is ready already (a request sent at once).
                    if self
                        .poll
                        .registry()
                        .register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)
                        .is_err()
                    {
                        continue;
                    }
                    let settings = &self.cx.shared.settings;
                    let handshake = Handshake {
                        parser: RequestParser::new(settings.limits.clone()),
                        deadline: after(self.cx.now, settings.handshake_timeout),
                        refusal: None,
                        lingering: false,
                    };
                    let tls = match self.cx.tls_config() {
                        Some(config) => match ServerConnection::new(config) {
                            Ok(tls) => Some(Box::new(tls)),
                            Err(e) => {
                                tracing::warn!(error = %e, "reactor: TLS session not created");
                                continue;
                            }
                        },
                        None => None,
                    };
                    entry.insert(Conn { stream, tls, phase: Phase::Handshake(Box::new(handshake)) });
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e)
                    if matches!(e.kind(), io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted) => {}
                Err(e) => {
                    // Out of descriptors, say: the next connection brings a new edge.
                    tracing::warn!(error = %e, "reactor loop: accept failed");
                    return;
                }
            }
        }
    }

    fn take_inbox(&mut self) {
        let mut inbox = std::mem::take(&mut self.cx.inbox);
        self.cx.shared.remotes[self.cx.index].take(&mut inbox);
        for command in inbox.drain(..) {
            match command {
                Command::Publish { target, frame, except } => {
                    deliver(&mut self.conns, &mut self.cx, &target, &frame, except);
                }
                Command::Shutdown => self.begin_shutdown(),
                Command::Socket { link, op, .. } => self.handle_op(&link, op),
                Command::Fanout { frame, links, .. } => self.handle_fanout(&frame, &links),
            }
        }
        self.cx.inbox = inbox;
    }

    /// Reads `key`; with `to_end`, until the socket has nothing (a short read is not
    /// taken to mean that: the end of the stream may wait behind the data).
    fn readable(&mut self, key: usize, to_end: bool) {
        match self.conns.get(key).map(|c| &c.phase) {
            Some(Phase::Handshake(_)) => self.read_handshake(key),
            Some(Phase::Open(_)) => self.read_open(key, to_end),
            None => {}
        }
    }

    /// The peer closed (or the socket failed): a connection its handler paused is not
    /// read, so this is the only news of it; it ends now (what the peer sent after the
    /// pause is not read).
    fn peer_ended(&mut self, key: usize) {
        if let Some(Conn { phase: Phase::Open(open), .. }) = self.conns.get_mut(key)
            && open.flags & HELD != 0
        {
            open.end(CloseCode::ABNORMAL, "the peer closed the connection while it was paused");
            self.cx.mark(open, key);
        }
    }

    fn writable(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else { return };
        let tls_pending = conn.tls.as_ref().is_some_and(|tls| tls.wants_write());
        match &mut conn.phase {
            Phase::Open(open) => {
                if !open.ws.outbound().is_empty() || tls_pending {
                    self.cx.mark(open, key);
                }
            }
            Phase::Handshake(h) => {
                if h.refusal.is_some() || tls_pending {
                    self.cx.dirty.push(key);
                }
            }
        }
    }

    fn read_open(&mut self, key: usize, to_end: bool) {
        if let Some(Conn { phase: Phase::Open(open), .. }) = self.conns.get_mut(key)
            && open.flags & RESUMED != 0
        {
            open.flags &= !RESUMED;
            self.process(key);
        }
        for _ in 0..MAX_READS {
            let Some(conn) = self.conns.get_mut(key) else { return };
            let Phase::Open(open) = &mut conn.phase else { return };
            if open.flags & (PAUSED | HELD | TERMINATE) != 0 || open.ws.is_closed() {
                return;
            }
            let read = read_plain(&conn.stream, conn.tls.as_deref_mut(), &mut self.cx.scratch);
            if conn.tls.as_ref().is_some_and(|tls| tls.wants_write()) {
                // TLS has records of its own to send (a key update, an alert).
                self.cx.mark(open, key);
            }
            match read {
                Ok(0) => {
                    // Decode what came before the end, then end.
                    self.process(key);
                    if let Some(Phase::Open(open)) = self.conns.get_mut(key).map(|c| &mut c.phase)
                        && open.ws.feed_eof().is_err()
                    {
                        open.end(CloseCode::ABNORMAL, "connection closed without a close frame");
                    }
                    self.finish(key);
                    return;
                }
                Ok(n) => {
                    // A large frame's remaining bytes, known from its header: room for
                    // them at once rather than a buffer doubling (and copied) as they come.
                    let hint = open.ws.read_hint();
                    if hint > n {
                        open.ws.read_buffer().reserve(hint.min(MAX_RESERVE));
                    }
                    open.ws.feed(&self.cx.scratch[..n]);
                    open.flags |= ACTIVE;
                    let tls = conn.tls.is_some();
                    self.process(key);
                    // (Through TLS, a short read says nothing of the socket.)
                    if n < SCRATCH && !to_end && !tls {
                        // Drained: the next bytes (or the end) bring a new edge.
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    open.end(CloseCode::ABNORMAL, e.to_string());
                    self.cx.mark(open, key);
                    return;
                }
            }
        }
        self.cx.again.push(key);
    }

    /// Decodes what `key` received and calls the handler for each message, then
    /// delivers what the callbacks published.
    fn process(&mut self, key: usize) {
        let Worker { conns, handler, cx, .. } = self;
        let Some(Conn { stream, phase: Phase::Open(open), .. }) = conns.get_mut(key) else { return };
        let open: &mut Open<H::State> = open;
        while open.flags & (TERMINATE | HELD) == 0 {
            let message = match open.ws.poll_event() {
                None => break,
                Some(Ok(Event::Message(message))) => Message::from(message),
                Some(Ok(Event::Ping(payload))) => Message::Ping(payload),
                Some(Ok(Event::Pong(payload))) => Message::Pong(payload),
                // The peer's close: the echo is queued, and the connection is closed.
                Some(Ok(Event::Close(_))) => break,
                Some(Err(e)) => {
                    // The close frame for the violation is queued; the connection is closed.
                    let code = open.ws.sent_close_code().unwrap_or(CloseCode::PROTOCOL_ERROR);
                    open.end_after_write(code, e.to_string());
                    break;
                }
            };
            handler.message(&mut Socket::of(open, key, stream, cx), message);
        }
        if !open.ws.outbound().is_empty() || open.ws.is_closed() || open.flags & TERMINATE != 0 {
            cx.mark(open, key);
        }
        if !cx.published.is_empty() {
            deliver_published(conns, cx);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What every idle connection keeps (docs/BENCHMARKS.md, "The reactor server"):
    /// its slab entry and its boxed state. A guard, so that a field added here is a
    /// decision.
    #[test]
    fn idle_state() {
        let (conn, open) = (size_of::<Conn<()>>(), size_of::<Open<()>>());
        eprintln!("Conn {conn} B, Open {open} B");
        // 32 in release: mio's stream carries a registration check in debug builds.
        assert!(conn <= 40, "Conn is {conn} bytes");
        assert!(open <= 432, "Open is {open} bytes");
    }

    /// A link's fields that a send and a fan-out touch are, with the `Arc`'s two counts,
    /// in its first 64 bytes (its allocation, 128 bytes, is aligned to them).
    #[test]
    fn a_links_hot_fields_share_a_cache_line() {
        let shared = std::mem::offset_of!(handle::Link, shared);
        assert!(16 + shared + size_of::<Arc<Shared>>() <= 64, "shared at {shared}");
        assert!(size_of::<handle::Link>() + 16 <= 128, "{} bytes", size_of::<handle::Link>());
    }
}
