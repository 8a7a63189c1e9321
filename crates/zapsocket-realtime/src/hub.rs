//! [`Hub`]: the connections, rooms, handlers and procedures of a realtime server.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Instant;

use serde::de::DeserializeOwned;
use ts_rs::TS;
use zapsocket::WebSocket;

use crate::adapter::{Adapter, MemoryAdapter, SWEEP_EVERY};
use crate::config::HubConfig;
use crate::emit::{Operator, RoomName};
use crate::error::ReplyError;
use crate::handler::{ConnectMiddleware, Erased, EventMiddleware, HandlerOutput, Typed};
use crate::metrics::{Counters, Metrics};
use crate::presence::Members;
use crate::socket::{Socket, SocketInner, send_frame};
use crate::typescript::Types;

/// The realtime server's state, cheap to clone: connected sockets, rooms, handlers,
/// procedures, middlewares, the room history ([`Adapter`]) and counters.
///
/// Register handlers, then give it each WebSocket of a [`zapsocket::Server`]:
///
/// ```no_run
/// use serde::Deserialize;
/// use zapsocket_realtime::{Hub, Socket, ts_rs::TS};
///
/// #[derive(Deserialize, TS)]
/// struct Chat { text: String }
///
/// # async fn run() -> zapsocket::Result<()> {
/// let hub = Hub::new();
/// hub.on("chat", |socket: Socket, msg: Chat| async move {
///     socket.broadcast().emit("chat", &msg.text)?;
///     Ok::<_, zapsocket_realtime::ReplyError>(())
/// });
/// let server = zapsocket::Server::builder().port(8080).subprotocol(zapsocket_realtime::SUBPROTOCOL).bind().await?;
/// server.serve(move |ws| hub.clone().handle(ws)).await
/// # }
/// ```
#[derive(Clone)]
pub struct Hub {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) config: HubConfig,
    pub(crate) adapter: Arc<dyn Adapter>,
    pub(crate) state: RwLock<State>,
    /// Held from a room message's offsets to its last queued copy.
    pub(crate) order: Mutex<()>,
    pub(crate) handlers: RwLock<HashMap<String, Arc<dyn Erased>>>,
    pub(crate) procedures: RwLock<HashMap<String, Arc<dyn Erased>>>,
    pub(crate) on_connect: RwLock<Vec<Arc<ConnectMiddleware>>>,
    pub(crate) on_event: RwLock<Vec<Arc<EventMiddleware>>>,
    pub(crate) on_disconnect: RwLock<Vec<DisconnectHook>>,
    pub(crate) counters: Counters,
    pub(crate) types: Mutex<Types>,
    sweep: Mutex<(u64, Instant)>,
    /// Room messages recorded so far: the last `Recorded::seq`.
    pub(crate) appends: AtomicU64,
    /// Sessions kept for recovery after their connection ended.
    pub(crate) detached: Mutex<crate::recovery::Detached>,
}

/// A function run when a socket disconnects.
pub(crate) type DisconnectHook = Arc<dyn Fn(&Socket) + Send + Sync>;

/// Sockets by session id, and the members of each named room.
#[derive(Default)]
pub(crate) struct State {
    pub(crate) sockets: Members,
    pub(crate) rooms: HashMap<String, Members>,
}

impl State {
    /// Calls `f` for each member of `room`: `$all`, `$s:SID`, or a named room.
    pub(crate) fn for_each_member<'a>(
        &'a self,
        room: &str,
        mut f: impl FnMut(&'a str, &'a Arc<SocketInner>),
    ) {
        if room == crate::ALL_ROOM {
            self.sockets.iter().for_each(|(sid, s)| f(sid, s));
        } else if let Some(sid) = room.strip_prefix("$s:") {
            if let Some((sid, s)) = self.sockets.get_key_value(sid) {
                f(sid, s);
            }
        } else if let Some(members) = self.rooms.get(room) {
            members.iter().for_each(|(sid, s)| f(sid, s));
        }
    }

    fn occupied(&self, room: &str) -> bool {
        room == crate::ALL_ROOM
            || self.rooms.contains_key(room)
            || room.strip_prefix("$s:").is_some_and(|sid| self.sockets.contains_key(sid))
    }
}

/// Builds a [`Hub`] with a configuration and an adapter.
#[derive(Default)]
pub struct HubBuilder {
    config: HubConfig,
    adapter: Option<Arc<dyn Adapter>>,
}

impl HubBuilder {
    /// The limits. Default: [`HubConfig::default`].
    pub fn config(mut self, config: HubConfig) -> Self {
        self.config = config;
        self
    }

    /// Where room messages are recorded. Default: a [`MemoryAdapter`] with the
    /// configuration's history limits.
    pub fn adapter(mut self, adapter: Arc<dyn Adapter>) -> Self {
        self.adapter = Some(adapter);
        self
    }

    /// The hub.
    pub fn build(self) -> Hub {
        let adapter =
            self.adapter.unwrap_or_else(|| Arc::new(MemoryAdapter::new(self.config.history.clone())));
        let inner = Inner {
            config: self.config,
            adapter,
            state: RwLock::default(),
            order: Mutex::new(()),
            handlers: RwLock::default(),
            procedures: RwLock::default(),
            on_connect: RwLock::default(),
            on_event: RwLock::default(),
            on_disconnect: RwLock::default(),
            counters: Counters::default(),
            types: Mutex::new(Types::default()),
            sweep: Mutex::new((0, Instant::now())),
            appends: AtomicU64::new(0),
            detached: Mutex::default(),
        };
        Hub { inner: Arc::new(inner) }
    }
}

impl Default for Hub {
    fn default() -> Self {
        Hub::new()
    }
}

impl Hub {
    /// A hub with the default limits and the in-memory history.
    pub fn new() -> Self {
        HubBuilder::default().build()
    }

    /// A builder, to set limits or an adapter.
    pub fn builder() -> HubBuilder {
        HubBuilder::default()
    }

    /// The limits in force.
    pub fn config(&self) -> &HubConfig {
        &self.inner.config
    }

    /// The history's epoch (sent to clients in `$hello` and with room messages).
    pub fn epoch(&self) -> &str {
        self.inner.adapter.epoch()
    }

    /// Handles the client event `event`: its `data` is decoded as `T` (or the client
    /// gets `bad_payload` with serde's message), then `handler` runs. When the event
    /// asked for an ack, the handler's result is the reply (see [`HandlerOutput`]).
    /// Handlers of one socket run concurrently, started in arrival order.
    ///
    /// # Panics
    /// If `event` starts with `$` (reserved for the protocol).
    pub fn on<T, F, Fut, O>(&self, event: &str, handler: F) -> &Self
    where
        T: DeserializeOwned + TS + 'static,
        F: Fn(Socket, T) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = O> + Send + 'static,
        O: HandlerOutput,
    {
        assert!(!event.starts_with('$'), "event names starting with '$' are reserved: {event:?}");
        self.lock_types().client_event::<T, O::Data>(event);
        let erased: Arc<dyn Erased> = Arc::new(Typed::new(handler));
        write(&self.inner.handlers).insert(event.to_owned(), erased);
        self
    }

    /// Declares a procedure (a typed request → response, like tRPC): `input` is decoded
    /// as `I`, the handler returns `Result<O, E>` whose `Ok` is the reply's data and
    /// whose `Err` is a `handler_error` (or a [`ReplyError`] as it is). Both types go
    /// into the TypeScript declarations ([`Hub::typescript`]).
    ///
    /// # Panics
    /// If `name` starts with `$`.
    pub fn procedure<I, F, Fut, R>(&self, name: &str, handler: F) -> &Self
    where
        I: DeserializeOwned + TS + 'static,
        F: Fn(Socket, I) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = R> + Send + 'static,
        R: HandlerOutput,
    {
        assert!(!name.starts_with('$'), "procedure names starting with '$' are reserved: {name:?}");
        self.lock_types().procedure::<I, R::Data>(name);
        let erased: Arc<dyn Erased> = Arc::new(Typed::new(handler));
        write(&self.inner.procedures).insert(name.to_owned(), erased);
        self
    }

    /// Declares an event the server sends, with its data type, for the TypeScript
    /// declarations only.
    pub fn declare_event<T: TS + 'static>(&self, event: &str) -> &Self {
        self.lock_types().server_event::<T>(event);
        self
    }

    /// Runs `middleware` when a socket connects, before `$hello`: it may read the
    /// request and set the socket's data, or refuse with an error; the client then gets
    /// `$error` (`forbidden`, with the message) and the connection closes with 1008.
    pub fn use_connect<F, Fut>(&self, middleware: F) -> &Self
    where
        F: Fn(Socket) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), ReplyError>> + Send + 'static,
    {
        let boxed: ConnectMiddleware = Box::new(move |socket| Box::pin(middleware(socket)));
        write(&self.inner.on_connect).push(Arc::new(boxed));
        self
    }

    /// Runs `middleware` before every event, call and room request (`$join`, `$leave`,
    /// `$members`) of every socket, with the name and the raw JSON data; an error is the
    /// answer instead (use [`ReplyError::forbidden`]).
    pub fn use_event<F>(&self, middleware: F) -> &Self
    where
        F: Fn(&Socket, &str, &str) -> Result<(), ReplyError> + Send + Sync + 'static,
    {
        write(&self.inner.on_event).push(Arc::new(Box::new(middleware)));
        self
    }

    /// Runs `f` when a socket disconnects, after it left its rooms.
    pub fn on_disconnect<F: Fn(&Socket) + Send + Sync + 'static>(&self, f: F) -> &Self {
        write(&self.inner.on_disconnect).push(Arc::new(f));
        self
    }

    /// Sends to every socket.
    pub fn emit<T: serde::Serialize + ?Sized>(&self, event: &str, data: &T) -> Result<usize, ReplyError> {
        self.to(crate::ALL_ROOM).emit(event, data)
    }

    /// An operator that sends to `room` (add rooms with [`Operator::to`]).
    pub fn to(&self, room: impl Into<RoomName>) -> Operator {
        room.into().into_operator(self)
    }

    /// The socket with this session id, if connected.
    pub fn socket(&self, id: &str) -> Option<Socket> {
        let inner = self.read_state().sockets.get(id)?.clone();
        Some(Socket { inner, hub: self.clone(), ack: None, timeout: None })
    }

    /// The counters: connections, rooms, messages and bytes in and out, drops.
    pub fn metrics(&self) -> Metrics {
        let rooms = self.read_state().rooms.len();
        self.inner.counters.snapshot(rooms)
    }

    /// TypeScript declarations of every event and procedure registered, from their Rust
    /// types (see docs/PROTOCOL.md, *TypeScript declarations*).
    pub fn typescript(&self) -> String {
        self.lock_types().render()
    }

    /// Serves one WebSocket until it closes: `$hello`, then every envelope it sends.
    /// Made to be given to [`zapsocket::Server::serve`].
    pub fn handle(self, ws: WebSocket) -> impl Future<Output = ()> + Send + 'static {
        crate::conn::run(self, ws)
    }

    pub(crate) fn read_state(&self) -> RwLockReadGuard<'_, State> {
        self.inner.state.read().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn write_state(&self) -> RwLockWriteGuard<'_, State> {
        self.inner.state.write().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_types(&self) -> std::sync::MutexGuard<'_, Types> {
        self.inner.types.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues an unrecorded message on one socket, counted in the metrics.
    pub(crate) fn send_direct(&self, socket: &SocketInner, json: String) {
        let len = json.len();
        let queued = send_frame(&socket.sender, json);
        self.inner.counters.sent(u64::from(queued), len, u64::from(!queued));
    }

    /// Sweeps the history now and then (called under the order lock).
    pub(crate) fn maybe_sweep(&self, state: &State) {
        let count = self.inner.appends.load(Relaxed);
        let mut last = self.inner.sweep.lock().unwrap_or_else(|p| p.into_inner());
        if count - last.0 < SWEEP_EVERY.0 && last.1.elapsed() < SWEEP_EVERY.1 {
            return;
        }
        *last = (count, Instant::now());
        self.inner.adapter.sweep(&|room| state.occupied(room));
    }
}

fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|p| p.into_inner())
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub").field("epoch", &self.epoch()).field("metrics", &self.metrics()).finish()
    }
}
