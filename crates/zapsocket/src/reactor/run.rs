//! One loop: its listening socket, its connections, its topics and its inbox.
//!
//! A pass of the loop: wait for readiness (or the next tick); accept what is pending;
//! for each readable socket read up to 1 MiB (256 KiB at a time), decode and call the
//! handler for each message (its sends only queue bytes); deliver what the handlers
//! published; take the inbox; then write every connection that has something queued, once (the `dirty`
//! list), and end those that are done. A tick (a quarter of the shortest timeout, 10 ms
//! to 1 s) runs the protocol's timers (heartbeat, close timeout), the write and
//! handshake timeouts, and frees the buffers of connections idle since the last tick.
//!
//! Sockets are registered once, edge-triggered, for reading and writing. A read that
//! returns less than asked drained the socket (the next bytes bring a new edge); a read
//! that fills the buffer 4 times in a turn leaves the rest for the next pass (the
//! `again` list), so one busy peer cannot starve the others.

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

/// Binds a listening socket; with `shared_port`, one of several loops' on one port.
pub(crate) fn listen(addr: SocketAddr, shared_port: bool) -> io::Result<TcpListener> {
    let socket = socket2::Socket::new(socket2::Domain::for_address(addr), socket2::Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    #[cfg(unix)]
    if shared_port {
        socket.set_reuse_port(true)?;
    }
    #[cfg(not(unix))]
    let _ = shared_port;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(TcpListener::from_std(socket.into()))
}

/// What another thread asks of a loop.
#[derive(Debug)]
pub(crate) enum Command {
    /// Deliver a frame (to a topic's subscribers, or to every open socket).
    Publish { target: Target, frame: EncodedFrame, except: Option<usize> },
    /// Stop accepting and close every connection with 1001.
    Shutdown,
}

/// Who gets a published frame.
#[derive(Clone, Debug)]
pub(crate) enum Target {
    Topic(Arc<str>),
    All,
}

impl Command {
    fn cost(&self) -> usize {
        match self {
            Command::Publish { frame, .. } => super::inbox_cost(frame),
            Command::Shutdown => 0,
        }
    }
}

/// A loop's inbox, as other threads see it.
#[derive(Debug)]
pub(crate) struct Remote {
    inbox: Mutex<Vec<Command>>,
    /// Bytes in the inbox, as [`Command::cost`] counts them.
    queued: AtomicUsize,
    /// A wake is on its way (so a burst of posts wakes the loop once).
    woken: AtomicBool,
    /// The loop stopped: nothing is posted any more.
    dead: AtomicBool,
    waker: Waker,
}

impl Remote {
    /// Queues `command`; false when it was a publish and the inbox is full.
    pub(crate) fn post(&self, command: Command) -> bool {
        if self.dead.load(Ordering::Acquire) {
            return matches!(command, Command::Shutdown);
        }
        let cost = command.cost();
        if cost > 0 && self.queued.fetch_add(cost, Ordering::AcqRel) + cost > MAX_INBOX_BYTES {
            self.queued.fetch_sub(cost, Ordering::AcqRel);
            return false;
        }
        self.inbox.lock().unwrap_or_else(|e| e.into_inner()).push(command);
        if !self.woken.swap(true, Ordering::AcqRel) {
            let _ = self.waker.wake();
        }
        true
    }

    fn take(&self, into: &mut Vec<Command>) {
        self.woken.store(false, Ordering::Release);
        std::mem::swap(&mut *self.inbox.lock().unwrap_or_else(|e| e.into_inner()), into);
        let cost: usize = into.iter().map(Command::cost).sum();
        self.queued.fetch_sub(cost, Ordering::AcqRel);
    }
}

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
        let remote = Remote {
            inbox: Mutex::new(Vec::new()),
            queued: AtomicUsize::new(0),
            woken: AtomicBool::new(false),
            dead: AtomicBool::new(false),
            waker,
        };
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
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| worker.run(tick)));
        // Stopped (shut down, a failed poll, or a handler's panic): what it held is gone.
        let remote = &worker.cx.shared.remotes[index];
        remote.dead.store(true, Ordering::Release);
        let open = worker.conns.iter().filter(|(_, c)| matches!(c.phase, Phase::Open(_))).count();
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

/// An open connection: the protocol state machine and the handler's state.
pub(super) struct Open<S> {
    ws: Connection,
    state: S,
    flags: u8,
    /// The subprotocol agreed on.
    protocol: Option<Box<str>>,
    /// The topics subscribed to (ids in the loop's [`Topics`]).
    topics: Vec<u32>,
    /// Since when queued bytes wait without the peer taking any.
    stalled: Option<Instant>,
    /// Why we end it, when we do (a violation, a timeout, a full queue, `terminate`).
    ending: Option<Box<(CloseCode, String)>>,
}

impl<S> Open<S> {
    fn end(&mut self, code: CloseCode, reason: impl Into<String>) {
        self.ending.get_or_insert_with(|| Box::new((code, reason.into())));
        self.flags |= TERMINATE;
    }
}

/// A topic's subscribers on this loop.
struct Topic {
    name: Arc<str>,
    members: Vec<usize>,
}

/// The loop's topics: ids for names, members for ids.
#[derive(Default)]
struct Topics {
    ids: HashMap<Arc<str>, u32>,
    list: Vec<Topic>,
    free: Vec<u32>,
}

impl Topics {
    fn subscribe(&mut self, key: usize, mine: &mut Vec<u32>, name: &str) -> bool {
        let id = match self.ids.get(name) {
            Some(&id) => id,
            None => {
                let name: Arc<str> = name.into();
                let topic = Topic { name: name.clone(), members: Vec::new() };
                let id = match self.free.pop() {
                    Some(id) => {
                        self.list[id as usize] = topic;
                        id
                    }
                    None => {
                        self.list.push(topic);
                        (self.list.len() - 1) as u32
                    }
                };
                self.ids.insert(name, id);
                id
            }
        };
        if mine.contains(&id) {
            return false;
        }
        mine.push(id);
        self.list[id as usize].members.push(key);
        true
    }

    fn unsubscribe(&mut self, key: usize, mine: &mut Vec<u32>, name: &str) -> bool {
        let Some(&id) = self.ids.get(name) else { return false };
        let Some(at) = mine.iter().position(|&t| t == id) else { return false };
        mine.swap_remove(at);
        self.leave(id, key);
        true
    }

    fn leave(&mut self, id: u32, key: usize) {
        let topic = &mut self.list[id as usize];
        if let Some(at) = topic.members.iter().position(|&m| m == key) {
            topic.members.swap_remove(at);
        }
        if topic.members.is_empty() {
            self.ids.remove(&topic.name);
            topic.members = Vec::new();
            self.free.push(id);
        }
    }

    fn members(&self, name: &str) -> &[usize] {
        match self.ids.get(name) {
            Some(&id) => &self.list[id as usize].members,
            None => &[],
        }
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

    fn mark<S>(&mut self, open: &mut Open<S>, key: usize) {
        if open.flags & DIRTY == 0 {
            open.flags |= DIRTY;
            self.dirty.push(key);
        }
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

/// A connection as its callbacks see it: send, close, subscribe, publish, its state.
pub struct Socket<'a, S> {
    open: &'a mut Open<S>,
    key: usize,
    stream: &'a TcpStream,
    cx: &'a mut Cx,
}

impl<S> std::fmt::Debug for Socket<'_, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Socket").field("key", &self.key).field("state", &self.ready_state()).finish()
    }
}

impl<S> Socket<'_, S> {
    /// What [`Handler::upgrade`] made for this connection.
    pub fn state(&mut self) -> &mut S {
        &mut self.open.state
    }

    /// Queues a message (written at the end of the loop's pass, with whatever else is
    /// queued for this connection). A ping or pong payload is cut to 125 bytes.
    pub fn send(&mut self, message: impl Into<Message>) -> Sent {
        if self.open.flags & TERMINATE != 0 {
            return Sent::Closed;
        }
        let ws = &mut self.open.ws;
        let control = |payload: &[u8]| payload.len().min(125);
        let result = match message.into() {
            Message::Text(text) => ws.send(zapsocket_proto::Message::Text(text)),
            Message::Binary(data) => ws.send(zapsocket_proto::Message::Binary(data)),
            Message::Ping(payload) => ws.ping(&payload[..control(&payload)]),
            Message::Pong(payload) => ws.pong(&payload[..control(&payload)]),
        };
        if result.is_err() {
            return Sent::Closed;
        }
        self.cx.mark(self.open, self.key);
        if self.open.ws.outbound().cost() > self.cx.shared.settings.config.max_send_queue {
            self.open.flags |= PAUSED;
            Sent::Backpressure
        } else {
            Sent::Queued
        }
    }

    /// Starts the close handshake with `code` and `reason` (at most 123 bytes): the
    /// connection ends when the peer answers, or after the close timeout. Closing twice
    /// does nothing. [`CloseCode::NO_STATUS`] (1005) sends a close frame without a code
    /// (and no reason); another code that may not be sent (1006, 1015, under 1000...) or
    /// a longer reason is an error.
    pub fn close(&mut self, code: CloseCode, reason: &str) -> crate::Result<()> {
        self.open.ws.close(self.cx.now, code, reason)?;
        self.cx.mark(self.open, self.key);
        Ok(())
    }

    /// Ends the connection at once, without a close handshake (`ws.terminate()`); the
    /// close callback gets 1006.
    pub fn terminate(&mut self) {
        self.open.end(CloseCode::ABNORMAL, "terminated");
        self.cx.mark(self.open, self.key);
    }

    /// Where the connection stands.
    pub fn ready_state(&self) -> ReadyState {
        if self.open.flags & TERMINATE != 0 {
            return ReadyState::Closing;
        }
        match self.open.ws.state() {
            State::Open => ReadyState::Open,
            State::CloseSent => ReadyState::Closing,
            State::Closed => ReadyState::Closed,
        }
    }

    /// The bytes queued and not yet written (`ws`'s `bufferedAmount`).
    pub fn buffered_amount(&mut self) -> usize {
        self.open.ws.outbound().len()
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.stream.peer_addr().ok()
    }

    /// The subprotocol agreed on in the handshake.
    pub fn protocol(&self) -> Option<&str> {
        self.open.protocol.as_deref()
    }

    /// Subscribes to `topic`; false if it was already.
    pub fn subscribe(&mut self, topic: &str) -> bool {
        self.cx.topics.subscribe(self.key, &mut self.open.topics, topic)
    }

    /// Unsubscribes from `topic`; false if it was not subscribed.
    pub fn unsubscribe(&mut self, topic: &str) -> bool {
        self.cx.topics.unsubscribe(self.key, &mut self.open.topics, topic)
    }

    /// Whether this socket is subscribed to `topic`.
    pub fn is_subscribed(&self, topic: &str) -> bool {
        self.cx.topics.ids.get(topic).is_some_and(|id| self.open.topics.contains(id))
    }

    /// Sends `message` to every subscriber of `topic` on every loop, this socket
    /// included if it is one, encoded once. A ping or pong is not published.
    pub fn publish(&mut self, topic: &str, message: impl Into<Message>) {
        self.publish_to(Target::Topic(topic.into()), message.into(), None);
    }

    /// [`Socket::publish`] to every subscriber but this socket (uWebSockets'
    /// `ws.publish`).
    pub fn publish_except_self(&mut self, topic: &str, message: impl Into<Message>) {
        self.publish_to(Target::Topic(topic.into()), message.into(), Some(self.key));
    }

    /// Sends `message` to every open socket on every loop, this one included, encoded
    /// once.
    pub fn broadcast(&mut self, message: impl Into<Message>) {
        self.publish_to(Target::All, message.into(), None);
    }

    /// [`Socket::broadcast`] to every open socket but this one.
    pub fn broadcast_except_self(&mut self, message: impl Into<Message>) {
        self.publish_to(Target::All, message.into(), Some(self.key));
    }

    fn publish_to(&mut self, target: Target, message: Message, except: Option<usize>) {
        if message.is_data() {
            self.cx.publish(target, crate::clients::encode(message), except);
        }
    }

    /// A handle that publishes from any thread (see [`super::Publisher`]).
    pub fn publisher(&self) -> super::Publisher {
        super::Publisher { shared: self.cx.shared.clone() }
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
            let timeout = if self.cx.again.is_empty() {
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
        for _ in 0..MAX_READS {
            let Some(conn) = self.conns.get_mut(key) else { return };
            let Phase::Open(open) = &mut conn.phase else { return };
            if open.flags & (PAUSED | TERMINATE) != 0 || open.ws.is_closed() {
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
        while open.flags & TERMINATE == 0 {
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
            handler.message(&mut Socket { open: &mut *open, key, stream: &*stream, cx: &mut *cx }, message);
        }
        if !open.ws.outbound().is_empty() || open.ws.is_closed() || open.flags & TERMINATE != 0 {
            cx.mark(open, key);
        }
        if !cx.published.is_empty() {
            deliver_published(conns, cx);
        }
    }

    fn read_handshake(&mut self, key: usize) {
        for _ in 0..MAX_READS {
            let Some(conn) = self.conns.get_mut(key) else { return };
            let Phase::Handshake(h) = &mut conn.phase else { return };
            if h.refusal.is_some() {
                return;
            }
            let read = read_plain(&conn.stream, conn.tls.as_deref_mut(), &mut self.cx.scratch);
            if conn.tls.as_ref().is_some_and(|tls| tls.wants_write()) {
                // The TLS handshake's answer.
                self.cx.dirty.push(key);
            }
            match read {
                Ok(0) => {
                    self.finish(key);
                    return;
                }
                Ok(_) if h.lingering => {}
                Ok(n) => match h.parser.feed(&self.cx.scratch[..n]) {
                    Ok(None) => {}
                    Ok(Some(request)) => {
                        let leftover = h.parser.take_leftover();
                        self.upgrade(key, request, &leftover);
                        // More may wait behind what this read took: no new edge for it.
                        self.cx.again.push(key);
                        return;
                    }
                    Err(e) => {
                        tracing::debug!(
                            status = e.status(),
                            reason = e.reason(),
                            "reactor: handshake refused"
                        );
                        self.refuse(key, e.to_response());
                        return;
                    }
                },
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.finish(key);
                    return;
                }
            }
        }
        self.cx.again.push(key);
    }

    fn refuse(&mut self, key: usize, response: Vec<u8>) {
        let Some(Conn { phase: Phase::Handshake(h), .. }) = self.conns.get_mut(key) else { return };
        h.refusal = Some((response, 0));
        h.deadline = self.cx.now + LINGER;
        self.cx.dirty.push(key);
    }

    fn upgrade(&mut self, key: usize, request: zapsocket_proto::handshake::Request, leftover: &[u8]) {
        let Some(conn) = self.conns.get_mut(key) else { return };
        let Ok(peer) = conn.stream.peer_addr() else {
            self.finish(key);
            return;
        };
        let certificates = conn
            .tls
            .as_ref()
            .and_then(|tls| tls.peer_certificates())
            .map(|certs| certs.iter().map(|c| c.clone().into_owned()).collect::<Vec<_>>().into());
        let request = Request::new(request, peer, &[]).with_peer_certificates(certificates);
        let admitted = match admit(&request, &self.cx, &mut self.handler) {
            Ok(admitted) => admitted,
            Err(response) => {
                self.refuse(key, response);
                return;
            }
        };
        let shared = &self.cx.shared;
        let mut ws = Connection::with_shared_config(Role::Server, shared.protocol.clone());
        if let (Some(params), Some(config)) = (admitted.deflate, &shared.settings.deflate) {
            ws.set_deflate(params, config);
        }
        ws.outbound().push(admitted.response.into());
        // Starts the heartbeat's clock.
        let _ = ws.handle_timeout(self.cx.now);
        ws.feed(leftover);
        let open = Open {
            ws,
            state: admitted.state,
            flags: ACTIVE,
            protocol: admitted.protocol.map(String::into_boxed_str),
            topics: Vec::new(),
            stalled: None,
            ending: None,
        };
        conn.phase = Phase::Open(Box::new(open));
        let Worker { conns, handler, cx, .. } = self;
        if let Some(Conn { stream, phase: Phase::Open(open), .. }) = conns.get_mut(key) {
            cx.mark(open, key);
            handler.open(&mut Socket { open: &mut **open, key, stream: &*stream, cx: &mut *cx });
        }
        if !self.cx.published.is_empty() {
            deliver_published(&mut self.conns, &mut self.cx);
        }
        self.process(key);
    }

    /// Writes what every dirty connection has queued, and ends those that are done.
    fn flush(&mut self) {
        while !self.cx.dirty.is_empty() {
            let mut dirty = std::mem::take(&mut self.cx.dirty);
            for &key in &dirty {
                self.flush_one(key);
            }
            dirty.clear();
            if self.cx.dirty.is_empty() {
                self.cx.dirty = dirty;
            }
        }
    }

    fn flush_one(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else { return };
        let open = match &mut conn.phase {
            Phase::Open(open) => open,
            Phase::Handshake(h) => {
                match write_refusal(&conn.stream, conn.tls.as_deref_mut(), h) {
                    Ok(false) => {}
                    Ok(true) if conn.tls.is_some() => {
                        // Through TLS: its close_notify says the end; no lingering.
                        if let Some(tls) = conn.tls.as_deref_mut() {
                            tls.send_close_notify();
                            let _ = tls.write_tls(&mut &conn.stream);
                        }
                        self.finish(key);
                    }
                    Ok(true) => {
                        let _ = conn.stream.shutdown(Shutdown::Write);
                        h.lingering = true;
                        h.refusal = None;
                        // Whatever the client sent after its head is read and dropped.
                        self.read_handshake(key);
                    }
                    Err(_) => self.finish(key),
                }
                return;
            }
        };
        open.flags &= !DIRTY;
        if open.flags & TERMINATE != 0 {
            self.finish(key);
            return;
        }
        let max = self.cx.shared.settings.config.max_send_queue;
        match write_out(&conn.stream, conn.tls.as_deref_mut(), &mut open.ws) {
            Err(e) => {
                open.end(CloseCode::ABNORMAL, e.to_string());
                self.finish(key);
                return;
            }
            Ok(Written { progressed, done }) => {
                if done {
                    open.stalled = None;
                    if open.ws.is_closed() {
                        // Our close for a violation went out, and the peer may still be
                        // sending: closing now could reset the connection before it reads
                        // the close frame.
                        let linger = open.ws.close_frame().is_none();
                        self.end(key, linger);
                        return;
                    }
                } else if progressed || open.stalled.is_none() {
                    open.stalled = Some(self.cx.now);
                }
                if progressed && open.flags & PAUSED != 0 {
                    // Not read while paused, so its pongs are not seen; taking our bytes
                    // shows it alive.
                    open.ws.note_received();
                }
            }
        }
        if open.flags & PAUSED != 0 && open.ws.outbound().cost() <= max / 2 {
            open.flags &= !PAUSED;
            self.cx.again.push(key);
            let Worker { conns, handler, cx, .. } = self;
            if let Some(Conn { stream, phase: Phase::Open(open), .. }) = conns.get_mut(key) {
                handler.drain(&mut Socket { open: &mut **open, key, stream: &*stream, cx: &mut *cx });
                if !open.ws.outbound().is_empty() {
                    cx.mark(open, key);
                }
            }
            if !self.cx.published.is_empty() {
                deliver_published(&mut self.conns, &mut self.cx);
            }
        }
    }

    /// Runs the timers of every connection, and accepts what a failed accept (out of
    /// descriptors) left waiting: no new edge comes for it.
    fn tick(&mut self) {
        self.accept();
        let now = self.cx.now;
        let config = &self.cx.shared.settings.config;
        let shutdown_over = self.cx.shutdown.is_some_and(|deadline| now >= deadline);
        let mut ended = Vec::new();
        for (key, conn) in self.conns.iter_mut() {
            let open = match &mut conn.phase {
                Phase::Open(open) => open,
                Phase::Handshake(h) => {
                    // A TLS handshake not done by then cannot carry a 408: dropped.
                    let tls_pending = conn.tls.as_ref().is_some_and(|tls| tls.is_handshaking());
                    if now >= h.deadline || shutdown_over {
                        if h.refusal.is_none() && !h.lingering && !shutdown_over && !tls_pending {
                            let response = error_response(408, &[], "request head not received in time");
                            h.refusal = Some((response, 0));
                            h.deadline = now + LINGER;
                            self.cx.dirty.push(key);
                        } else {
                            ended.push(key);
                        }
                    }
                    continue;
                }
            };
            if shutdown_over {
                open.end(CloseCode::GOING_AWAY, "server shut down");
            }
            if open.ws.poll_timeout().is_some_and(|at| at <= now)
                && let Err(e) = open.ws.handle_timeout(now)
            {
                open.end(CloseCode::ABNORMAL, e.to_string());
            }
            if let (Some(since), Some(limit)) = (open.stalled, config.write_timeout)
                && now.duration_since(since) >= limit
            {
                open.end(CloseCode::POLICY_VIOLATION, "write timeout");
            }
            if open.ws.is_closed()
                && open
                    .stalled
                    .is_some_and(|since| now.duration_since(since) >= config.protocol.close_timeout)
            {
                // Over, and its last bytes (a close frame) not taken within the close timeout.
                open.end(CloseCode::ABNORMAL, "close frame not taken in time");
            }
            if open.flags & ACTIVE == 0 {
                if open.ws.outbound().is_empty() {
                    open.ws.release_buffers();
                }
            } else {
                open.flags &= !ACTIVE;
            }
            if (!open.ws.outbound().is_empty() || open.flags & TERMINATE != 0) && open.flags & DIRTY == 0 {
                open.flags |= DIRTY;
                self.cx.dirty.push(key);
            }
        }
        for key in ended {
            self.finish(key);
        }
    }

    fn begin_shutdown(&mut self) {
        if self.cx.shutdown.is_some() {
            return;
        }
        self.cx.shutdown = Some(after(self.cx.now, self.cx.shared.settings.shutdown_timeout));
        if let Some(mut listener) = self.listener.take() {
            let _ = self.poll.registry().deregister(&mut listener);
        }
        let mut ended = Vec::new();
        for (key, conn) in self.conns.iter_mut() {
            match &mut conn.phase {
                Phase::Handshake(_) => ended.push(key),
                Phase::Open(open) => {
                    let _ = open.ws.close(self.cx.now, CloseCode::GOING_AWAY, "server shutting down");
                    self.cx.mark(open, key);
                }
            }
        }
        for key in ended {
            self.finish(key);
        }
    }

    /// Ends connection `key`: closes the socket, leaves its topics, and tells the
    /// handler.
    fn finish(&mut self, key: usize) {
        self.end(key, false);
    }

    /// [`Worker::finish`]; with `linger`, the socket is only shut for writing and read
    /// until the peer closes it (or [`LINGER`] passes).
    fn end(&mut self, key: usize, linger: bool) {
        if let Some(conn) = self.conns.get_mut(key)
            && let Some(tls) = conn.tls.as_deref_mut()
        {
            // Through TLS: close_notify, best effort, and no lingering (the peer's TLS
            // stack reads our records before any reset).
            tls.send_close_notify();
            let _ = tls.write_tls(&mut &conn.stream);
        }
        let linger = linger && self.conns.get(key).is_some_and(|conn| conn.tls.is_none());
        if linger && let Some(conn) = self.conns.get_mut(key) {
            let lingering = Handshake {
                parser: RequestParser::new(self.cx.shared.settings.limits.clone()),
                deadline: after(self.cx.now, LINGER),
                refusal: None,
                lingering: true,
            };
            if let Phase::Open(open) =
                std::mem::replace(&mut conn.phase, Phase::Handshake(Box::new(lingering)))
            {
                let _ = conn.stream.shutdown(Shutdown::Write);
                self.cx.again.push(key);
                self.closed(key, *open);
                return;
            }
        }
        let Some(conn) = self.conns.try_remove(key) else { return };
        let Phase::Open(open) = conn.phase else { return };
        drop(conn.stream);
        self.closed(key, *open);
    }

    /// A connection is over: it leaves its topics and the count, and the handler hears.
    fn closed(&mut self, key: usize, open: Open<H::State>) {
        let Open { ws, state, topics, ending, .. } = open;
        for id in topics {
            self.cx.topics.leave(id, key);
        }
        self.cx.shared.connections.fetch_sub(1, Ordering::AcqRel);
        let (code, reason) = match (ws.close_frame(), ending) {
            (Some(frame), _) => (frame.code, frame.reason.to_string()),
            (None, Some(ending)) => *ending,
            (None, None) => (CloseCode::ABNORMAL, String::new()),
        };
        self.handler.close(state, code, &reason);
    }
}

impl<S> Open<S> {
    /// Ends the connection once what is queued (the close frame for a violation) is
    /// written.
    fn end_after_write(&mut self, code: CloseCode, reason: String) {
        self.ending.get_or_insert_with(|| Box::new((code, reason)));
    }
}

/// What [`admit`] lets in with.
struct Admitted<S> {
    state: S,
    response: Vec<u8>,
    deflate: Option<DeflateParams>,
    protocol: Option<String>,
}

/// Decides on a request, in order: plain HTTP, shutting down (503), path (404), validity
/// (400, 426...), origin (403), the connection cap (503), the handler's `upgrade`; then
/// the subprotocol and compression. A refusal is the HTTP answer's bytes.
fn admit<H: Handler>(request: &Request, cx: &Cx, handler: &mut H) -> Result<Admitted<H::State>, Vec<u8>> {
    let settings = &cx.shared.settings;
    let text = |status: u16, body: &str| crate::HttpResponse::text(status, body).encode();
    if !request.as_proto().is_upgrade()
        && let Some(response) = handler.http(request)
    {
        return Err(response.encode());
    }
    if cx.shutdown.is_some() {
        return Err(text(503, "server is shutting down"));
    }
    if !settings.paths.is_empty() && !settings.paths.iter().any(|p| p == request.path()) {
        return Err(text(404, "no WebSocket endpoint at this path"));
    }
    let accept = request.as_proto().validate_upgrade().map_err(|e| e.to_response())?;
    if !crate::server::origin_allowed(request, &settings.allowed_origins) {
        return Err(text(403, "origin not allowed"));
    }
    let max = settings.max_connections.unwrap_or(usize::MAX);
    if cx
        .shared
        .connections
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < max).then_some(n + 1))
        .is_err()
    {
        return Err(text(503, "too many connections"));
    }
    let state = match handler.upgrade(request) {
        Ok(state) => state,
        Err(response) => {
            cx.shared.connections.fetch_sub(1, Ordering::AcqRel);
            return Err(response.encode());
        }
    };
    let offered = request.subprotocols();
    let protocol = settings.subprotocols.iter().find(|p| offered.contains(&p.as_str())).cloned();
    let deflate = settings.deflate.as_ref().and_then(|config| config.accept(request.as_proto(), false));
    let response = ServerResponse {
        protocol: protocol.clone(),
        extensions: deflate.map(|p| p.to_header()),
        headers: settings.headers.clone(),
    };
    Ok(Admitted { state, response: response.encode(&accept), deflate, protocol })
}

/// Delivers what the callbacks published on this loop.
fn deliver_published<S>(conns: &mut Slab<Conn<S>>, cx: &mut Cx) {
    let mut published = std::mem::take(&mut cx.published);
    for p in published.drain(..) {
        deliver(conns, cx, &p.target, &p.frame, p.except);
    }
    cx.published = published;
}

/// Queues `frame` for its target's sockets on this loop.
fn deliver<S>(
    conns: &mut Slab<Conn<S>>,
    cx: &mut Cx,
    target: &Target,
    frame: &EncodedFrame,
    except: Option<usize>,
) {
    let config = &cx.shared.settings.config;
    let (max, policy) = (config.max_send_queue, config.slow_consumer);
    let dirty = &mut cx.dirty;
    let mut to = |key: usize, conn: &mut Conn<S>| {
        if Some(key) == except {
            return;
        }
        let Phase::Open(open) = &mut conn.phase else { return };
        if open.flags & TERMINATE != 0 || open.ws.state() != State::Open {
            return;
        }
        if open.ws.outbound().cost() >= max {
            match policy {
                SlowConsumer::DropMessage => return,
                _ => open.end(CloseCode::POLICY_VIOLATION, "send queue full"),
            }
        } else if open.ws.send_encoded(frame).is_err() {
            return;
        }
        if open.flags & DIRTY == 0 {
            open.flags |= DIRTY;
            dirty.push(key);
        }
    };
    match target {
        Target::Topic(name) => {
            for &key in cx.topics.members(name) {
                if let Some(conn) = conns.get_mut(key) {
                    to(key, conn);
                }
            }
        }
        Target::All => {
            for (key, conn) in conns.iter_mut() {
                to(key, conn);
            }
        }
    }
}

/// What a write did.
struct Written {
    /// Some bytes were written.
    progressed: bool,
    /// Nothing is left queued.
    done: bool,
}

/// Reads plaintext: from the socket, or through TLS (what the peer sent decrypted, after
/// the TLS handshake's own messages). `Ok(0)` is the end: TCP's, or TLS' close_notify.
fn read_plain(stream: &TcpStream, tls: Option<&mut ServerConnection>, buf: &mut [u8]) -> io::Result<usize> {
    let Some(tls) = tls else { return (&*stream).read(buf) };
    loop {
        match tls.reader().read(buf) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
        match tls.read_tls(&mut &*stream) {
            Ok(0) => return Ok(0),
            Ok(_) => {
                if let Err(e) = tls.process_new_packets() {
                    // The alert rustls queued for it goes out before the socket closes.
                    let _ = tls.write_tls(&mut &*stream);
                    return Err(io::Error::new(io::ErrorKind::InvalidData, e));
                }
            }
            Err(e) => return Err(e),
        }
    }
}

/// Writes what `ws` has queued, until done or the socket is full: straight, or through
/// TLS (plaintext into its records, up to its buffer limit, then the records out).
fn write_out(
    stream: &TcpStream,
    tls: Option<&mut ServerConnection>,
    ws: &mut Connection,
) -> io::Result<Written> {
    let Some(tls) = tls else { return write_plain(stream, ws) };
    let mut progressed = false;
    loop {
        let out = ws.outbound();
        while !out.is_empty() {
            let n = tls.writer().write(out.first_chunk())?;
            if n == 0 {
                break;
            }
            out.advance(n);
        }
        ws.queue_held_pong();
        if !tls.wants_write() {
            let done = ws.outbound().is_empty();
            if done {
                return Ok(Written { progressed, done });
            }
            // Pong queued just now: into the records too.
            continue;
        }
        match tls.write_tls(&mut &*stream) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(_) => progressed = true,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                return Ok(Written { progressed, done: false });
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// [`write_out`] without TLS.
fn write_plain(stream: &TcpStream, ws: &mut Connection) -> io::Result<Written> {
    let mut progressed = false;
    loop {
        let out = ws.outbound();
        if out.is_empty() {
            return Ok(Written { progressed, done: true });
        }
        let mut slices = [IoSlice::new(&[]); 64];
        let count = out.io_slices(&mut slices);
        // One chunk (the usual case): `send`, lighter in the kernel than `writev`.
        let written = match count {
            1 => (&*stream).write(&slices[0]),
            _ => (&*stream).write_vectored(&slices[..count]),
        };
        match written {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                out.advance(n);
                progressed = true;
                ws.queue_held_pong();
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                return Ok(Written { progressed, done: false });
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Writes a refusal (and, through TLS, what its handshake has to send); true once the
/// refusal is all written.
fn write_refusal(
    stream: &TcpStream,
    tls: Option<&mut ServerConnection>,
    h: &mut Handshake,
) -> io::Result<bool> {
    if let Some(tls) = tls {
        if let Some((bytes, written)) = &mut h.refusal {
            while *written < bytes.len() {
                match tls.writer().write(&bytes[*written..])? {
                    0 => break,
                    n => *written += n,
                }
            }
        }
        while tls.wants_write() {
            match tls.write_tls(&mut &*stream) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        // Written once rustls holds nothing more and took it all (before the TLS
        // handshake ends, it holds the plaintext back).
        return Ok(h.refusal.as_ref().is_some_and(|(bytes, written)| *written == bytes.len())
            && !tls.is_handshaking());
    }
    let Some((bytes, written)) = &mut h.refusal else { return Ok(false) };
    while *written < bytes.len() {
        match (&*stream).write(&bytes[*written..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => *written += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
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
}
