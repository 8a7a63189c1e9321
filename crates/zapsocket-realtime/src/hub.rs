//! [`Hub`]: the public face of a realtime server. Its methods are here, each a few lines
//! that hand the work to the part that does it (`core` and the modules that extend it).

use std::future::Future;
use std::sync::{Arc, Mutex, Weak};

use serde::Serialize;
use serde::de::DeserializeOwned;
use ts_rs::TS;
use zapsocket::WebSocket;

use crate::broker::{Adapter, BoxFuture as AdapterFuture, Deliver, Delivery, NodeInfo, SessionRecord};
use crate::cluster::NodeResults;
use crate::config::HubConfig;
use crate::core::{
    AnyHook, ConnectHook, Core, Ctx, DisconnectHook, EventHook, Route, Routes, ServerRoute, update,
};
use crate::emit::{Operator, RoomName};
use crate::error::ReplyError;
use crate::expiring::Sweep;
use crate::handler::{BoxFuture, HandlerOutput, Reply};
use crate::memory::MemoryAdapter;
use crate::metrics::{Counters, Metrics};
use crate::protocol::Member;
use crate::publish::reply_error;
use crate::registry::Registry;
use crate::socket::Socket;
use crate::typescript::Types;

/// The realtime server's state, cheap to clone: connected sockets, rooms, handlers,
/// procedures, middlewares, the adapter that links it to other nodes, and counters.
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
///
/// What a hub keeps for a while (disconnected sessions for the recovery window, each
/// room's history up to its age) is forgotten on time even when nothing else happens: a
/// process-wide thread (`zapsocket-sweep`) sweeps every live hub once a second, so the
/// memory of a server gone quiet goes back to what its open connections hold.
#[derive(Clone)]
pub struct Hub {
    core: Arc<Core>,
}

/// Builds a [`Hub`] with a configuration and an adapter.
#[derive(Default)]
pub struct HubBuilder {
    config: HubConfig,
    adapter: Option<Adapter>,
}

impl HubBuilder {
    /// The limits. Default: [`HubConfig::default`].
    pub fn config(mut self, config: HubConfig) -> Self {
        self.config = config;
        self
    }

    /// What links this hub to other nodes (broker and history). Default: a
    /// [`MemoryAdapter`] with the configuration's history limits (one node). For many
    /// nodes on Redis, `zapsocket-redis`.
    pub fn adapter(mut self, adapter: Adapter) -> Self {
        self.adapter = Some(adapter);
        self
    }

    /// The hub.
    pub fn build(self) -> Hub {
        let config = self.config;
        let adapter = self.adapter.unwrap_or_else(|| Adapter::new(Arc::new(MemoryAdapter::new(&config))));
        let core = Arc::new_cyclic(|weak: &Weak<Core>| Core {
            config,
            registry: Registry::default(),
            broker: adapter.broker,
            history: adapter.history,
            routes: Routes::default(),
            counters: Counters::default(),
            types: Mutex::new(Types::default()),
            parked: Mutex::default(),
            disconnects: Mutex::default(),
            link: Arc::new(Link(weak.clone())),
        });
        core.broker.attach(Arc::downgrade(&core.link), &core.config);
        let weak: Weak<dyn Sweep> = Arc::downgrade(&core) as Weak<dyn Sweep>;
        crate::expiring::register(weak);
        Hub { core }
    }
}

impl Default for Hub {
    fn default() -> Self {
        Hub::new()
    }
}

impl Hub {
    /// A hub with the default limits and the in-memory adapter (one node).
    pub fn new() -> Self {
        HubBuilder::default().build()
    }

    /// A builder, to set limits or an adapter.
    pub fn builder() -> HubBuilder {
        HubBuilder::default()
    }

    /// The limits in force.
    pub fn config(&self) -> &HubConfig {
        &self.core.config
    }

    /// The history's epoch now (sent to clients in `$hello` and with room messages).
    pub fn epoch(&self) -> String {
        self.core.epoch().to_string()
    }

    /// This node's id (in `$hello`, and in [`RemoteSocket`](crate::RemoteSocket)s).
    pub fn node(&self) -> &str {
        self.core.broker.node()
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
        update(&self.core.routes.handlers, |h| _ = h.insert(event.to_owned(), route(handler)));
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
        update(&self.core.routes.procedures, |p| _ = p.insert(name.to_owned(), route(handler)));
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
        let hook: ConnectHook = Arc::new(move |ctx: Ctx| Box::pin(middleware(Socket::from(ctx))));
        update(&self.core.routes.on_connect, |hooks| hooks.push(hook));
        self
    }

    /// Runs `middleware` before every event, call and room request (`$join`, `$leave`,
    /// `$members`, `$resume`) of every socket, with the name and the raw JSON data; an
    /// error is the answer instead (use [`ReplyError::forbidden`]). Middlewares run in
    /// the order they were added, with those of [`Hub::use_event_async`].
    pub fn use_event<F>(&self, middleware: F) -> &Self
    where
        F: Fn(&Socket, &str, &str) -> Result<(), ReplyError> + Send + Sync + 'static,
    {
        let hook = EventHook::Now(Arc::new(move |ctx: &Ctx, name: &str, data: &str| {
            middleware(&Socket::from(ctx.clone()), name, data)
        }));
        update(&self.core.routes.on_event, |hooks| hooks.push(hook));
        self
    }

    /// Like [`Hub::use_event`], with a middleware that may wait (look a token up, ask a
    /// database): socket.io's `socket.use`. An event's handler starts once its
    /// middlewares are done, so with one of these, handlers of one socket may start out
    /// of arrival order; room requests still complete before the next message is read.
    ///
    /// ```
    /// # let hub = zapsocket_realtime::Hub::new();
    /// use zapsocket_realtime::{ReplyError, Socket};
    /// hub.use_event_async(|socket: Socket, event: String, _data: String| async move {
    ///     let allowed = event != "admin" || socket.data::<String>().as_deref() == Some("root");
    ///     if allowed { Ok(()) } else { Err(ReplyError::forbidden("admins only")) }
    /// });
    /// ```
    pub fn use_event_async<F, Fut>(&self, middleware: F) -> &Self
    where
        F: Fn(Socket, String, String) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), ReplyError>> + Send + 'static,
    {
        let hook = EventHook::Later(Arc::new(move |ctx: Ctx, name: String, data: String| {
            Box::pin(middleware(Socket::from(ctx), name, data))
        }));
        update(&self.core.routes.on_event, |hooks| hooks.push(hook));
        self
    }

    /// Adds a catch-all listener of the events clients send (socket.io's
    /// `socket.onAny`): `f(socket, event, data)` with the raw JSON data, for every
    /// application event (not `$` requests nor procedure calls) that passed the
    /// middlewares, before its handler. It only listens: an event without a handler gets
    /// no `unknown_event` warning when a catch-all listener saw it, but a request that
    /// asked for an ack still needs a handler to answer it.
    pub fn on_any<F: Fn(&Socket, &str, &str) + Send + Sync + 'static>(&self, f: F) -> &Self {
        let hook: AnyHook =
            Arc::new(move |ctx: &Ctx, name: &str, data: &str| f(&Socket::from(ctx.clone()), name, data));
        update(&self.core.routes.on_any, |hooks| hooks.push(hook));
        self
    }

    /// Runs `f` when a socket is about to disconnect (socket.io's `disconnecting`): its
    /// connection is over, but it is still in its rooms ([`Socket::rooms`]) and still
    /// counted in presence.
    pub fn on_disconnecting<F: Fn(&Socket) + Send + Sync + 'static>(&self, f: F) -> &Self {
        let hook: DisconnectHook = Arc::new(move |ctx: &Ctx| f(&Socket::from(ctx.clone())));
        update(&self.core.routes.on_disconnecting, |hooks| hooks.push(hook));
        self
    }

    /// Runs `f` when a socket disconnects, after it left its rooms (its session is kept
    /// for [`HubConfig::recovery_window`](crate::HubConfig::recovery_window)).
    pub fn on_disconnect<F: Fn(&Socket) + Send + Sync + 'static>(&self, f: F) -> &Self {
        let hook: DisconnectHook = Arc::new(move |ctx: &Ctx| f(&Socket::from(ctx.clone())));
        update(&self.core.routes.on_disconnect, |hooks| hooks.push(hook));
        self
    }

    /// Handles `event` sent by other nodes with [`Hub::server_side_emit`] (socket.io's
    /// `io.on(event)` for server-side events): `data` is decoded as `T`; the handler gets
    /// the sending node's id and the data, and its result is the answer.
    pub fn on_server_event<T, F, Fut, O>(&self, event: &str, handler: F) -> &Self
    where
        T: DeserializeOwned + 'static,
        F: Fn(String, T) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = O> + Send + 'static,
        O: HandlerOutput,
    {
        let route: ServerRoute = Arc::new(move |node: String, data: &str| {
            let input: T = serde_json::from_str(data).map_err(|e| ReplyError::bad_payload(e.to_string()))?;
            let future = handler(node, input);
            Ok(Box::pin(async move { future.await.into_reply() }) as BoxFuture<Reply>)
        });
        update(&self.core.routes.server_events, |r| _ = r.insert(event.to_owned(), route));
        self
    }

    /// Sends `event` with `data` to the other nodes' [`Hub::on_server_event`] handlers
    /// (socket.io's `serverSideEmitWithAck`) and waits for their answers, decoded as `R`,
    /// up to [`HubConfig::request_timeout`]: each node's answer, and the live nodes that
    /// did not answer in time.
    pub async fn server_side_emit<T, R>(
        &self,
        event: &str,
        data: &T,
    ) -> Result<NodeResults<Vec<(String, Result<R, ReplyError>)>>, ReplyError>
    where
        T: Serialize + ?Sized,
        R: DeserializeOwned,
    {
        let data =
            serde_json::value::to_raw_value(data).map_err(|e| ReplyError::bad_payload(e.to_string()))?;
        let answers = self.core.server_emit(event, data, self.core.config.request_timeout).await;
        let decode = |reply: Result<String, ReplyError>| {
            reply.and_then(|json| {
                serde_json::from_str(&json).map_err(|e| ReplyError::bad_payload(e.to_string()))
            })
        };
        let results = answers.results.into_iter().map(|(node, reply)| (node, decode(reply))).collect();
        Ok(NodeResults { results, missing: answers.missing })
    }

    /// Sends to every socket, on every node.
    pub fn emit<T: Serialize + ?Sized>(&self, event: &str, data: &T) -> Result<(), ReplyError> {
        self.to(crate::ALL_ROOM).emit(event, data)
    }

    /// An operator that sends to `room` (add rooms with [`Operator::to`]), or runs the
    /// cross-node server API on its sockets.
    pub fn to(&self, room: impl Into<RoomName>) -> Operator {
        Operator::new(self.core.clone(), room.into())
    }

    /// The socket with this session id, if it is connected to this node.
    pub fn socket(&self, id: &str) -> Option<Socket> {
        let state = self.core.registry.socket(id)?;
        Some(Socket { state, core: self.core.clone(), ack: None, timeout: None, request: None })
    }

    /// Every member of `room` on every node, whatever its size.
    pub async fn members(&self, room: &str) -> Result<Vec<Member>, ReplyError> {
        let presence = self.core.broker.members(room, usize::MAX).await.map_err(reply_error)?;
        Ok(presence.members)
    }

    /// The live nodes (with a current lease), this one included.
    pub async fn nodes(&self) -> Result<Vec<NodeInfo>, ReplyError> {
        self.core.broker.nodes().await.map_err(reply_error)
    }

    /// The named rooms with members on this node, each with how many (not `$all` nor
    /// sockets' own rooms), by name. For a room's members on every node, see
    /// [`Hub::members`].
    pub fn rooms(&self) -> Vec<(String, usize)> {
        self.core.registry.room_sizes()
    }

    /// The last 32 disconnects on this node, oldest first: session, close code and
    /// reason (or what ended the connection), time.
    pub fn recent_disconnects(&self) -> Vec<crate::Disconnect> {
        self.core.disconnects.lock().unwrap_or_else(|p| p.into_inner()).iter().cloned().collect()
    }

    /// The counters: connections, rooms, messages and bytes in and out, drops, and the
    /// broker's.
    pub fn metrics(&self) -> Metrics {
        self.core.counters.snapshot(self.core.registry.room_count(), self.core.broker.metrics())
    }

    /// TypeScript declarations of every event and procedure registered, from their Rust
    /// types (see docs/PROTOCOL.md, *TypeScript declarations*).
    pub fn typescript(&self) -> String {
        self.lock_types().render()
    }

    /// Writes [`Hub::typescript`] to `path` when the file differs (or is missing), for
    /// the JS client's typing (`connect<Api>(…)`, js/README.md); returns whether it
    /// wrote. Any hub's declarations, from the program that builds it: call it where the
    /// hub is set up (a build step, a `--write-types` flag), or from a test that also
    /// fails when the committed file was out of date:
    ///
    /// ```no_run
    /// # fn my_hub() -> zapsocket_realtime::Hub { zapsocket_realtime::Hub::new() }
    /// #[test]
    /// fn typescript_declarations_are_up_to_date() {
    ///     let wrote = my_hub().write_typescript("web/api.generated.d.ts").unwrap();
    ///     assert!(!wrote, "web/api.generated.d.ts was out of date: commit the new one");
    /// }
    /// ```
    pub fn write_typescript(&self, path: impl AsRef<std::path::Path>) -> std::io::Result<bool> {
        let path = path.as_ref();
        let generated = self.typescript();
        match std::fs::read_to_string(path) {
            Ok(current) if current == generated => Ok(false),
            _ => std::fs::write(path, generated).map(|()| true),
        }
    }

    /// Serves one WebSocket until it closes: `$hello`, then every envelope it sends.
    /// Made to be given to [`zapsocket::Server::serve`].
    pub fn handle(self, ws: WebSocket) -> impl Future<Output = ()> + Send + 'static {
        crate::conn::run(self.core, ws)
    }

    /// Serves this hub on a [`zapsocket::reactor`] server instead of the async
    /// [`zapsocket::Server`]: give each loop a clone (`start(move |_| handler.clone())`).
    /// Sessions are state machines on their connection's loop: 1.7 KB each when idle,
    /// against 4.5 KB on the server (docs/BENCHMARKS.md). Handlers that wait,
    /// middlewares and the adapter run on `runtime`. The upgrade request is the connect
    /// middlewares' only, unless [`HubHandler::keep_requests`](crate::HubHandler::keep_requests). Offer both protocol versions on the reactor
    /// (`.subprotocol(SUBPROTOCOL_V2).subprotocol(SUBPROTOCOL)`), as on the server.
    pub fn reactor_handler(&self, runtime: tokio::runtime::Handle) -> crate::HubHandler {
        crate::HubHandler::new(self.core.clone(), runtime)
    }

    fn lock_types(&self) -> std::sync::MutexGuard<'_, Types> {
        self.core.types.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Socket {
    /// The hub this socket belongs to.
    pub fn hub(&self) -> Hub {
        Hub { core: self.core.clone() }
    }
}

/// A typed handler as a route: decodes the data, then starts the handler.
fn route<T, F, Fut, O>(handler: F) -> Route
where
    T: DeserializeOwned + 'static,
    F: Fn(Socket, T) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = O> + Send + 'static,
    O: HandlerOutput,
{
    Arc::new(move |ctx: Ctx, data: &str, bins: &[bytes::Bytes]| {
        let input: T =
            crate::binary::from_json(data, bins).map_err(|e| ReplyError::bad_payload(e.to_string()))?;
        let future = handler(Socket::from(ctx), input);
        Ok(Box::pin(async move { future.await.into_reply() }) as BoxFuture<Reply>)
    })
}

/// What the broker calls on this node: the hub's side of the link.
struct Link(Weak<Core>);

impl Deliver for Link {
    fn deliver(&self, delivery: &Delivery<'_>) {
        if let Some(core) = self.0.upgrade() {
            core.deliver(delivery);
        }
    }

    fn deliver_volatile(&self, publication: &crate::broker::Publication) {
        if let Some(core) = self.0.upgrade() {
            core.deliver_volatile(publication);
        }
    }

    fn lost(&self, rooms: &[String], epoch: &str) {
        if let Some(core) = self.0.upgrade() {
            core.lost(rooms, epoch);
        }
    }

    fn answer(&self, from: &str, request: &str) -> AdapterFuture<'static, String> {
        match self.0.upgrade() {
            Some(core) => core.answer_json(from, request),
            None => Box::pin(std::future::ready(String::new())),
        }
    }

    fn sessions(&self) -> Vec<SessionRecord> {
        self.0
            .upgrade()
            .map(|core| core.registry.sockets().iter().map(|s| s.record()).collect())
            .unwrap_or_default()
    }
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub").field("node", &self.node()).field("epoch", &self.epoch()).finish()
    }
}
