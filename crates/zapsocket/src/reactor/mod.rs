//! A WebSocket server whose connections are owned by one event loop per core, with
//! callback handlers: the shape of uWebSockets, on the same sans-IO core
//! ([`zapsocket_proto::Connection`]) as the async [`Server`](crate::Server).
//!
//! The async server gives each connection a tokio task, a future for its handler and a
//! state shared between them; that is what makes `ws.recv().await` possible, and it
//! costs about 2.8 KB per idle connection and a task wake per message. Here a loop
//! thread owns its connections outright: it reads every socket that is ready, decodes
//! and calls [`Handler::message`] in place, and writes each connection's answers (and
//! what was published to it) in one write at the end of the pass. No task, no lock, no
//! waker per connection: an idle connection costs its protocol state and what the
//! handler keeps ([`Handler::State`]): 627 bytes in `examples/reactor_server.rs`
//! (docs/BENCHMARKS.md).
//!
//! Use it for the hot paths (echo, fan-out, game or market feeds) where a callback is
//! enough, over `ws://` or `wss://` ([`ReactorBuilder::tls`]), and for the realtime hub
//! (`zapsocket_realtime::Hub::reactor_handler`); use the async
//! [`Server`](crate::Server) for what needs `await` in the handler, or HTTP/2.
//!
//! # Work elsewhere
//!
//! A callback must not wait; what must (a database, a computation) runs on another
//! thread or a tokio task and comes back through the connection's [`Handle`]
//! ([`Socket::handle`]): it sends, closes and asks the loop to call [`Handler::wake`] for
//! the connection, from any thread, in order. [`Socket::pause`] stops handing the
//! connection's messages to the handler meanwhile (and reading it), [`Socket::resume`]
//! goes on. [`Socket::map`] gives another handler the connection with a part of the state
//! as its own, to serve a handler per path from one reactor.
//!
//! ```no_run
//! use zapsocket::reactor::{Handler, Reactor, Socket};
//! use zapsocket::{HttpResponse, Message, Request};
//!
//! struct Echo;
//!
//! impl Handler for Echo {
//!     type State = ();
//!     fn upgrade(&mut self, _request: &Request) -> Result<(), HttpResponse> {
//!         Ok(())
//!     }
//!     fn message(&mut self, ws: &mut Socket<'_, ()>, message: Message) {
//!         if message.is_data() {
//!             let _ = ws.send(message); // `Sent::Backpressure` pauses reading by itself
//!         }
//!     }
//! }
//!
//! let running = Reactor::builder().port(8080).start(|_| Echo)?;
//! println!("listening on {}", running.local_addr());
//! running.join();
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! # Threads and sockets
//!
//! [`ReactorBuilder::threads`] loops (default: one per core the process may run on), each
//! with its own listening socket on the same port (`SO_REUSEPORT`: the kernel spreads
//! new connections among them; a port in use is still an error) and its own
//! [`Handler`], made by the factory given to
//! [`ReactorBuilder::start`]. A connection stays on the loop that accepted it; its
//! callbacks run on that thread, one at a time, so a handler needs no lock for its own
//! state. A callback must not block: it holds up every connection of its loop.
//!
//! # Pub/sub
//!
//! A socket subscribes to topics ([`Socket::subscribe`]); [`Socket::publish`] and
//! [`Publisher::publish`] send a message to every subscriber on every loop, encoded once
//! (one frame, shared by reference by every recipient's send queue). Each loop keeps
//! its own subscriber lists; a message for the other loops goes through their inboxes.
//!
//! A set of connections that is not a topic (a room another layer keeps, as the realtime
//! hub does) gets one frame through a [`Fanout`]: one inbox entry per loop, however
//! many of its connections are in it, rather than a [`Handle::send_encoded`] each.
//!
//! # Limits
//!
//! - A connection's send queue counts as full past [`WebSocketConfig::max_send_queue`]
//!   (1 MiB). A socket whose own answers fill it is not read until it is half empty (its
//!   peer is pushed back through TCP); a published message that finds it full gets the
//!   [`SlowConsumer`](crate::SlowConsumer) policy (default: terminate, recorded as 1008).
//! - What a peer sends is bounded by the protocol's limits
//!   ([`ProtocolConfig`](crate::ProtocolConfig): frame and message size), and is read at
//!   most 1 MiB at a time per connection before the other ready sockets get their
//!   turn. Messages are handled as they are decoded, so nothing decoded waits. The
//!   process-wide [`MemoryBudget`](crate::MemoryBudget) of the async server is not
//!   applied here: a connection may hold up to one message in progress
//!   (`max_message_size`).
//! - Each loop's inbox (what other threads publish to it, and what [`Handle`]s send)
//!   holds at most [`MAX_INBOX_BYTES`] (64 MiB, counting each message's frame plus
//!   [`INBOX_OVERHEAD`] bytes); past it, a publish or a handle's send to that loop is
//!   dropped and counted ([`Running::dropped_publishes`]; the handle's `send` returns
//!   `false`). One frame sent through the handles of several connections of a loop in a
//!   row (a room's members) counts its bytes once, then [`INBOX_OVERHEAD`] for each; a
//!   [`Fanout`] counts its frame and [`INBOX_OVERHEAD`] once per loop, plus 16 bytes
//!   per connection (its key and link), and is refused whole when it does not fit. A
//!   handle's close, terminate and wake are posted at most once each until the loop took
//!   them. A handle's send that finds the connection's send queue full
//!   gets the slow-consumer policy, as a publish does; [`Handle::writable`] waits for
//!   room instead.
//! - The request head: [`HandshakeLimits`] (16 KiB, 64 headers); it must arrive within
//!   [`ReactorBuilder::handshake_timeout`] (10 s) or gets 408.
//! - Bytes that wait in the send queue for [`WebSocketConfig::write_timeout`] (30 s)
//!   without the peer taking any end the connection (1008, "write timeout"); the
//!   heartbeat ([`WebSocketConfig::heartbeat`], 30 s) pings idle peers and drops silent
//!   ones. After the close frame we send for a violation, the socket is shut for writing
//!   and read for up to 2 s until the peer closes it, so that a reset does not destroy
//!   the frame before the peer reads it.
//! - A handler that panics stops its loop (its connections are dropped) and
//!   [`Running::join`] passes the panic on; the other loops go on.

mod run;

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use zapsocket_proto::handshake::HandshakeLimits;
use zapsocket_proto::{CloseCode, EncodedFrame};

use crate::config::WebSocketConfig;
use crate::message::Message;
use crate::request::Request;
use crate::server::HttpResponse;
use zapsocket_proto::deflate::DeflateConfig;

pub use run::{Fanout, Handle, Socket};

/// The most bytes a loop's inbox holds: messages other threads published to it and it
/// did not take yet (each counted as its frame plus [`INBOX_OVERHEAD`]).
pub const MAX_INBOX_BYTES: usize = 64 << 20;

/// What one message in a loop's inbox counts for besides its frame: the entry, the
/// topic's name and the frame's shared header.
pub const INBOX_OVERHEAD: usize = 128;

/// What a loop does for its connections: the callbacks of a connection's life.
///
/// Each loop has its own handler (made by the factory given to
/// [`ReactorBuilder::start`]), so `&mut self` needs no lock; what the loops share
/// (counters, a map of users) is the handler's to share, behind an `Arc`.
pub trait Handler: Send + 'static {
    /// What the handler keeps for each connection, made by [`Handler::upgrade`] and given
    /// back to [`Handler::close`]: `ws`'s `ws.userData`.
    type State: 'static;

    /// Decides on an upgrade request that passed the server's own checks (path, a valid
    /// upgrade, origin, connection cap): the connection's state, or the HTTP answer
    /// that refuses it (401, 403...). The request (IP, headers, query, cookies) is not
    /// kept: keep in the state what the connection needs of it.
    fn upgrade(&mut self, request: &Request) -> Result<Self::State, HttpResponse>;

    /// A plain HTTP request (not an upgrade): its answer, or `None` for the default
    /// (426 Upgrade Required).
    fn http(&mut self, request: &Request) -> Option<HttpResponse> {
        let _ = request;
        None
    }

    /// The connection is open; what is sent here goes right after the 101 answer.
    fn open(&mut self, ws: &mut Socket<'_, Self::State>) {
        let _ = ws;
    }

    /// A message arrived: text or binary, or a ping (already answered) or a pong.
    fn message(&mut self, ws: &mut Socket<'_, Self::State>, message: Message);

    /// The send queue, full after this socket's own sends ([`Sent::Backpressure`]), is
    /// half empty again: reading resumed. (`ws`'s `drain`.)
    fn drain(&mut self, ws: &mut Socket<'_, Self::State>) {
        let _ = ws;
    }

    /// A [`Handle`] of this connection asked for it ([`Handle::wake`]): work done
    /// elsewhere is ready for the connection (resume it, take a result from its state).
    fn wake(&mut self, ws: &mut Socket<'_, Self::State>) {
        let _ = ws;
    }

    /// The connection ended: the peer's close code and reason (1005 when its close frame
    /// had no code); else why we ended it: the code of the close we sent for a violation
    /// (1002, 1007, 1009...), 1008 for a full send queue or a write timeout, 1001 when the
    /// shutdown's wait ran out, 1006 with the cause otherwise (the connection dropped,
    /// the heartbeat or close timed out, [`Socket::terminate`]). Its subscriptions are
    /// gone already.
    fn close(&mut self, state: Self::State, code: CloseCode, reason: &str) {
        let _ = (state, code, reason);
    }
}

/// What a send did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use = "a send can find the queue full or the connection closed"]
pub enum Sent {
    /// Queued; the queue is under its limit.
    Queued,
    /// Queued, and the queue is now over [`WebSocketConfig::max_send_queue`]: the
    /// socket is not read until it is half empty, and [`Handler::drain`] then says so.
    Backpressure,
    /// Not sent: the connection is closing or closed.
    Closed,
}

/// The entry point: [`Reactor::builder`].
#[derive(Debug)]
pub struct Reactor(());

impl Reactor {
    /// A server with the defaults: `127.0.0.1:8080`, every path, a loop per core.
    pub fn builder() -> ReactorBuilder {
        ReactorBuilder::default()
    }
}

/// Settings of a [`Reactor`] server, then [`ReactorBuilder::start`].
#[derive(Debug)]
pub struct ReactorBuilder {
    host: String,
    port: u16,
    threads: Option<usize>,
    settings: Settings,
}

/// What the loops read: the admission rules and the connections' configuration.
#[derive(Debug)]
pub(crate) struct Settings {
    pub(crate) paths: Vec<String>,
    pub(crate) subprotocols: Vec<String>,
    pub(crate) allowed_origins: Vec<String>,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) max_connections: Option<usize>,
    pub(crate) config: WebSocketConfig,
    pub(crate) deflate: Option<DeflateConfig>,
    pub(crate) limits: HandshakeLimits,
    pub(crate) handshake_timeout: Duration,
    pub(crate) shutdown_timeout: Duration,
    pub(crate) tls: Option<crate::tls::Identity>,
    pub(crate) trusted_proxies: Vec<crate::IpNet>,
}

impl Default for ReactorBuilder {
    fn default() -> Self {
        ReactorBuilder {
            host: "127.0.0.1".into(),
            port: 8080,
            threads: None,
            settings: Settings {
                paths: Vec::new(),
                subprotocols: Vec::new(),
                allowed_origins: Vec::new(),
                headers: Vec::new(),
                max_connections: None,
                config: crate::config::server_default(),
                deflate: None,
                limits: HandshakeLimits::default(),
                handshake_timeout: Duration::from_secs(10),
                shutdown_timeout: Duration::from_secs(10),
                tls: None,
                trusted_proxies: Vec::new(),
            },
        }
    }
}

impl ReactorBuilder {
    /// The host or IP address to listen on. Default: `127.0.0.1`.
    pub fn host(mut self, host: impl Into<String>) -> Self {
        self.host = host.into();
        self
    }

    /// The port (0: any free port, see [`Running::local_addr`]). Default: 8080.
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// The number of loops (threads). Default: the cores this process may run on
    /// ([`std::thread::available_parallelism`], which honours CPU affinity).
    pub fn threads(mut self, threads: usize) -> Self {
        self.threads = Some(threads.max(1));
        self
    }

    /// Accepts WebSocket upgrades on this path only (repeatable); other paths get 404.
    /// Default: any path.
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.settings.paths.push(path.into());
        self
    }

    /// A subprotocol to accept when the client offers it (repeatable, in order of
    /// preference). See [`Socket::protocol`].
    pub fn subprotocol(mut self, name: impl Into<String>) -> Self {
        self.settings.subprotocols.push(name.into());
        self
    }

    /// Accepts browsers only from this `Origin` (repeatable; `*` for any); others get
    /// 403. Requests without an `Origin` (not from a browser) are accepted.
    pub fn allowed_origin(mut self, origin: impl Into<String>) -> Self {
        self.settings.allowed_origins.push(origin.into());
        self
    }

    /// Trusts the reverse proxies at this address or network (repeatable): for their
    /// connections, [`Request::ip`] is the client's address they forwarded (`Forwarded`,
    /// else `X-Forwarded-For`), as with
    /// [`ServerBuilder::trusted_proxy`](crate::ServerBuilder::trusted_proxy). Default:
    /// none (the headers are ignored: anyone can write them).
    pub fn trusted_proxy(mut self, net: crate::IpNet) -> Self {
        self.settings.trusted_proxies.push(net);
        self
    }

    /// A header added to every 101 answer.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.settings.headers.push((name.into(), value.into()));
        self
    }

    /// The most connections open at once, all loops together; more get 503.
    pub fn max_connections(mut self, max: usize) -> Self {
        self.settings.max_connections = Some(max);
        self
    }

    /// The connections' limits (`protocol`: frame and message size, close timeout,
    /// heartbeat), `max_send_queue`, `slow_consumer` and `write_timeout`. Default: the
    /// async server's, with a heartbeat every 30 s; note that
    /// `WebSocketConfig::default()` has no heartbeat (add
    /// [`WebSocketConfig::heartbeat`]). `memory_budget` and `max_read_buffer` are not
    /// used here: messages are handled as they are decoded.
    pub fn config(mut self, config: WebSocketConfig) -> Self {
        self.settings.config = config;
        self
    }

    /// Accepts permessage-deflate (RFC 7692) from clients that offer it, compressing each
    /// message on its own (`server_no_context_takeover`: no compressor kept per
    /// connection; a published message is compressed once for all its recipients).
    pub fn deflate(mut self, config: DeflateConfig) -> Self {
        self.settings.deflate = Some(config);
        self
    }

    /// Serves `wss://` with this identity (rustls): the TLS handshake runs in the loop,
    /// under [`ReactorBuilder::handshake_timeout`], and ALPN offers `http/1.1` only. A
    /// client certificate (mutual TLS, with [`Identity::from_config`](crate::Identity::from_config))
    /// is in [`Request::peer_certificates`] for [`Handler::upgrade`]. The identity is
    /// read at each handshake, so [`Identity::replace`](crate::Identity::replace) renews
    /// the certificate without a restart.
    pub fn tls(mut self, identity: crate::tls::Identity) -> Self {
        self.settings.tls = Some(identity);
        self
    }

    /// The request head's limits (size, header count); past them 431.
    pub fn handshake_limits(mut self, limits: HandshakeLimits) -> Self {
        self.settings.limits = limits;
        self
    }

    /// How long a client may take to send its request head. Default: 10 s (then 408).
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.settings.handshake_timeout = timeout;
        self
    }

    /// How long [`Running::shutdown`] waits for clients to answer its 1001 close before
    /// it drops them. Default: 10 s.
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.settings.shutdown_timeout = timeout;
        self
    }

    /// Binds the listening sockets and starts the loops, each with the handler
    /// `make(loop_index)` returns.
    pub fn start<H, F>(self, mut make: F) -> io::Result<Running>
    where
        H: Handler,
        F: FnMut(usize) -> H,
    {
        let threads = self
            .threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get));
        let addr = (self.host.as_str(), self.port)
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "the host resolves to no address"))?;
        let mut listeners = Vec::with_capacity(threads);
        let mut local_addr = addr;
        if threads > 1 {
            // The loops share the port (SO_REUSEPORT), which would also let them share it
            // with another server that does (a stale instance): a plain bind first makes a
            // port in use an error, as it is with one loop.
            local_addr = std::net::TcpListener::bind(addr)?.local_addr()?;
        }
        for _ in 0..threads {
            let listener = run::listen(local_addr, threads > 1)?;
            local_addr = listener.local_addr()?;
            listeners.push(listener);
        }
        let mut loops = Vec::with_capacity(threads);
        let mut remotes = Vec::with_capacity(threads);
        for listener in listeners {
            let (event_loop, remote) = run::Loop::new(listener)?;
            loops.push(event_loop);
            remotes.push(remote);
        }
        let protocol = Arc::new(self.settings.config.protocol.clone());
        let shared = Arc::new(Shared {
            settings: self.settings,
            remotes,
            connections: AtomicUsize::new(0),
            dropped: AtomicU64::new(0),
            protocol,
        });
        let mut handles = Vec::with_capacity(threads);
        for (index, event_loop) in loops.into_iter().enumerate() {
            let handler = make(index);
            let shared = shared.clone();
            let handle = std::thread::Builder::new()
                .name(format!("zapsocket-loop-{index}"))
                .spawn(move || event_loop.run(index, handler, shared))?;
            handles.push(handle);
        }
        Ok(Running { local_addr, shared, threads: Mutex::new(handles) })
    }
}

/// What the loops share: the settings, each loop's inbox, the counts.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) settings: Settings,
    pub(crate) remotes: Vec<run::Remote>,
    pub(crate) connections: AtomicUsize,
    pub(crate) dropped: AtomicU64,
    /// The protocol's limits, one copy for every connection.
    pub(crate) protocol: Arc<zapsocket_proto::Config>,
}

impl Shared {
    /// Sends `command` to loop `index`'s inbox (dropping a publish past
    /// [`MAX_INBOX_BYTES`]).
    pub(crate) fn post(&self, index: usize, command: run::Command) {
        if !self.remotes[index].post(command) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A running [`Reactor`] server: its address, a [`Publisher`], and its shutdown.
#[derive(Debug)]
pub struct Running {
    local_addr: SocketAddr,
    shared: Arc<Shared>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Running {
    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// A handle that publishes from any thread.
    pub fn publisher(&self) -> Publisher {
        Publisher { shared: self.shared.clone() }
    }

    /// The WebSocket connections open now, all loops together.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::Relaxed)
    }

    /// Publishes dropped because a loop's inbox was full ([`MAX_INBOX_BYTES`]).
    pub fn dropped_publishes(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Starts a graceful shutdown: the loops stop accepting, send every client 1001
    /// ("server shutting down") after what is queued for it, and stop once all are
    /// closed or after [`ReactorBuilder::shutdown_timeout`]. Returns at once; see
    /// [`Running::join`].
    pub fn shutdown(&self) {
        for index in 0..self.shared.remotes.len() {
            self.shared.post(index, run::Command::Shutdown);
        }
    }

    /// Waits for the loops to stop (after [`Running::shutdown`]; otherwise they run
    /// forever).
    pub fn join(&self) {
        let handles = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|e| e.into_inner()));
        for handle in handles {
            if let Err(panic) = handle.join() {
                std::panic::resume_unwind(panic);
            }
        }
    }
}

/// Publishes to topics from any thread: a clonable handle of a [`Running`] server.
#[derive(Clone, Debug)]
pub struct Publisher {
    shared: Arc<Shared>,
}

impl Publisher {
    /// Sends `message` to every socket subscribed to `topic`, on every loop, encoded
    /// once. A ping or pong is not published.
    pub fn publish(&self, topic: &str, message: impl Into<Message>) {
        let message = message.into();
        if !message.is_data() {
            return;
        }
        let topic: Arc<str> = topic.into();
        let frame = crate::clients::encode(message);
        for index in 0..self.shared.remotes.len() {
            let target = run::Target::Topic(topic.clone());
            self.shared.post(index, run::Command::Publish { target, frame: frame.clone(), except: None });
        }
    }

    /// Sends `message` to every open socket, on every loop, encoded once.
    pub fn broadcast(&self, message: impl Into<Message>) {
        let message = message.into();
        if !message.is_data() {
            return;
        }
        let frame = crate::clients::encode(message);
        for index in 0..self.shared.remotes.len() {
            self.shared.post(
                index,
                run::Command::Publish { target: run::Target::All, frame: frame.clone(), except: None },
            );
        }
    }
}

/// The bytes a published frame counts for in an inbox.
pub(crate) fn inbox_cost(frame: &EncodedFrame) -> usize {
    frame.len() + INBOX_OVERHEAD
}
