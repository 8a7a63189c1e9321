//! A Rust client for the protocol: connect (subprotocol `zap.v1`), emit, typed `on`,
//! acks both ways, procedure calls, rooms and presence; reconnection with backoff,
//! session recovery (`$resume`) or rejoin, and an offline buffer.
//!
//! ```no_run
//! use zapsocket_realtime::client::Client;
//! use zapsocket_realtime::PresenceEvent;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let client = Client::connect("ws://127.0.0.1:8080/ws?name=ada").await?;
//! client.on("$joined", |event: PresenceEvent| println!("{} joined", event.member.id));
//! client.on("chat", |msg: serde_json::Value| println!("chat: {msg}"));
//! let members = client.join("lobby").await?;
//! client.emit("chat", &serde_json::json!({"text": "hi"})).await?;
//! let sum: f64 = client.call("add", &serde_json::json!({"a": 2, "b": 3})).await?;
//! # drop((members, sum)); Ok(()) }
//! ```
//!
//! One driver task owns the receiving half of the WebSocket and dispatches what
//! arrives (replies to pending requests, events to handlers, offsets per room); the
//! [`Client`] handle is cheap to clone. When the connection drops with a close code that
//! allows it (docs/PROTOCOL.md, *Close codes*), the driver reconnects with exponential
//! backoff and jitter, presents its session and offsets with `$resume` (the server
//! replays what was missed), or, when the server cannot, joins the client's rooms again.
//! Emits made meanwhile wait in a bounded buffer and go out in order; requests that were
//! already sent fail with `disconnected`. A connection that dies without a close (a
//! suspended server, a network gone) is found by the heartbeat: WebSocket pings every
//! 25 s, lost when nothing arrives within 20 s of one ([`ClientBuilder::heartbeat`]).

mod driver;
mod link;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::envelope;
use crate::error::{ErrorCode, ReplyError};
use crate::handler::HandlerOutput;
use crate::protocol::{MembersReply, RoomRequest};

pub use driver::{Hello, HelloLimits};
use link::{Handler, Shared};

/// Why [`Client::connect`] failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum ConnectError {
    /// The WebSocket connection or handshake failed.
    WebSocket(zapsocket::Error),
    /// The server refused the connection (a connect middleware): its `$error`.
    Refused(ReplyError),
    /// The server did not start with `$hello`, or closed first.
    Protocol(String),
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectError::WebSocket(e) => write!(f, "cannot connect: {e}"),
            ConnectError::Refused(e) => write!(f, "refused: {e}"),
            ConnectError::Protocol(m) => write!(f, "protocol error: {m}"),
        }
    }
}

impl std::error::Error for ConnectError {}

/// Where a [`Client`] stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnState {
    /// Connected: emits go out at once.
    Connected,
    /// The connection dropped; this is the attempt under way (1, 2, ...). Emits wait in
    /// the offline buffer.
    Reconnecting {
        /// The attempt number.
        attempt: u32,
    },
    /// Closed for good: by [`Client::close`], a close code that forbids reconnecting, a
    /// refusal, or the attempts running out.
    Closed,
}

/// How a [`Client`] reconnects: exponential backoff from `initial_delay`, doubling up to
/// `max_delay`, each delay shortened by up to `jitter` (a fraction) at random.
///
/// A refusal ends it (the client goes [`ConnState::Closed`]): a connect middleware's
/// `$error`, or an HTTP 4xx answer to the upgrade (401 expired token, 403, 404) or to a
/// proxy's `CONNECT` (407), except 408 and 429; 5xx answers (a node shutting down answers
/// 503, a proxy that cannot reach it 502) are retried.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Reconnect {
    /// The first delay. Default: 500 ms.
    pub initial_delay: Duration,
    /// The longest delay. Default: 10 s.
    pub max_delay: Duration,
    /// Up to this fraction of each delay is taken off at random. Default: 0.5. Spreads
    /// the reconnections of many clients after a server restart.
    pub jitter: f64,
    /// Attempts before giving up; `None` (default): no limit.
    pub max_attempts: Option<u32>,
}

impl Default for Reconnect {
    fn default() -> Self {
        Reconnect {
            initial_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(10),
            jitter: 0.5,
            max_attempts: None,
        }
    }
}

/// Settings of a [`Client`].
#[derive(Clone, Debug)]
pub struct ClientBuilder {
    settings: Settings,
}

#[derive(Clone, Debug)]
pub(crate) struct Settings {
    url: String,
    headers: Vec<(String, String)>,
    ack_timeout: Option<Duration>,
    max_pending: usize,
    max_buffered: usize,
    hello_timeout: Duration,
    reconnect: Option<Reconnect>,
    recovery: bool,
    /// WebSocket pings: (interval, how long the server may stay silent after one).
    heartbeat: Option<(Duration, Duration)>,
    /// For `wss://`: roots to trust besides the system's.
    roots: Vec<zapsocket::Certificate>,
    /// For `wss://`: the application's own rustls configuration.
    tls_config: Option<Arc<zapsocket::rustls::ClientConfig>>,
    /// For `wss://`: no certificate check at all.
    accept_invalid_certs: bool,
    /// The first connection retries with the reconnection's backoff.
    retry_first: bool,
    /// The HTTP proxy every connection goes through.
    proxy: ProxySetting,
}

/// Which HTTP proxy the WebSocket client uses; its `Debug` hides the URL, which may
/// hold credentials.
#[derive(Clone, Default)]
enum ProxySetting {
    /// The environment's (`HTTPS_PROXY`…), as [`zapsocket::ClientBuilder::proxy`] says.
    #[default]
    Environment,
    /// None.
    Direct,
    /// This URL's.
    Url(String),
}

impl std::fmt::Debug for ProxySetting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProxySetting::Environment => f.write_str("Environment"),
            ProxySetting::Direct => f.write_str("Direct"),
            ProxySetting::Url(_) => f.write_str("Url(..)"),
        }
    }
}

impl Settings {
    /// The WebSocket client these settings make (subprotocols, heartbeat, headers, TLS).
    pub(super) fn websocket(&self) -> zapsocket::ClientBuilder {
        let mut builder =
            zapsocket::Client::builder().protocol(crate::SUBPROTOCOL_V2).protocol(crate::SUBPROTOCOL);
        if let Some((interval, timeout)) = self.heartbeat {
            let mut config = zapsocket::WebSocketConfig::default();
            config.protocol = config.protocol.ping_interval(Some(interval)).pong_timeout(timeout);
            builder = builder.config(config);
        }
        for (name, value) in &self.headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        for root in &self.roots {
            builder = builder.add_root_certificate(root.clone());
        }
        if let Some(config) = &self.tls_config {
            builder = builder.tls_config(config.clone());
        }
        builder = match &self.proxy {
            ProxySetting::Environment => builder,
            ProxySetting::Direct => builder.no_proxy(),
            ProxySetting::Url(url) => builder.proxy(url),
        };
        builder.danger_accept_invalid_certs(self.accept_invalid_certs)
    }
}

impl Default for ClientBuilder {
    fn default() -> Self {
        ClientBuilder {
            settings: Settings {
                url: String::new(),
                headers: Vec::new(),
                ack_timeout: None,
                max_pending: 1_024,
                max_buffered: 1_000,
                hello_timeout: Duration::from_secs(10),
                reconnect: Some(Reconnect::default()),
                recovery: true,
                heartbeat: Some((Duration::from_secs(25), Duration::from_secs(20))),
                roots: Vec::new(),
                tls_config: None,
                accept_invalid_certs: false,
                retry_first: false,
                proxy: ProxySetting::Environment,
            },
        }
    }
}

impl ClientBuilder {
    /// Adds a header to the upgrade request (e.g. `Authorization`).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.settings.headers.push((name.into(), value.into()));
        self
    }

    /// How long requests wait for their reply. Default: the server's `ack_timeout_ms`
    /// from `$hello`.
    pub fn ack_timeout(mut self, timeout: Duration) -> Self {
        self.settings.ack_timeout = Some(timeout);
        self
    }

    /// The most requests pending at once; past it a request fails with `limit`.
    /// Default: 1,024.
    pub fn max_pending(mut self, max: usize) -> Self {
        self.settings.max_pending = max;
        self
    }

    /// The most envelopes kept while reconnecting; past it an emit fails with `limit`
    /// (the newest is refused, what is buffered keeps its order). Default: 1,000.
    pub fn max_buffered(mut self, max: usize) -> Self {
        self.settings.max_buffered = max;
        self
    }

    /// How to reconnect; `None` turns reconnection off. Default: [`Reconnect::default`].
    pub fn reconnect(mut self, reconnect: Option<Reconnect>) -> Self {
        self.settings.reconnect = reconnect;
        self
    }

    /// Whether to `$resume` the session after reconnecting (else rooms are rejoined).
    /// Default: true.
    pub fn recovery(mut self, recovery: bool) -> Self {
        self.settings.recovery = recovery;
        self
    }

    /// Pings the server every `interval` (WebSocket pings) and counts the connection as
    /// lost (then reconnects) when nothing at all arrives within `timeout` after one: a
    /// server or network that died without a close. Default: every 25 s, 20 s timeout.
    pub fn heartbeat(mut self, interval: Duration, timeout: Duration) -> Self {
        self.settings.heartbeat = Some((interval, timeout));
        self
    }

    /// Turns the heartbeat off: a connection that dies without a close is noticed only
    /// when the operating system gives up on it.
    pub fn no_heartbeat(mut self) -> Self {
        self.settings.heartbeat = None;
        self
    }

    /// For `wss://`: trusts `cert` (your own CA) besides the system's roots, as
    /// [`zapsocket::ClientBuilder::add_root_certificate`].
    pub fn add_root_certificate(mut self, cert: zapsocket::Certificate) -> Self {
        self.settings.roots.push(cert);
        self
    }

    /// For `wss://`: the application's own rustls configuration (client certificates
    /// for mutual TLS, one's own verification), as [`zapsocket::ClientBuilder::tls_config`].
    pub fn tls_config(mut self, config: Arc<zapsocket::rustls::ClientConfig>) -> Self {
        self.settings.tls_config = Some(config);
        self
    }

    /// **Dangerous**: for `wss://`, accepts any server certificate, as
    /// [`zapsocket::ClientBuilder::danger_accept_invalid_certs`]. Default: false.
    pub fn danger_accept_invalid_certs(mut self, accept: bool) -> Self {
        self.settings.accept_invalid_certs = accept;
        self
    }

    /// Connects (and reconnects) through the HTTP proxy at `url`,
    /// `http://[user:password@]host[:port]`, as [`zapsocket::ClientBuilder::proxy`] does;
    /// a proxy's refusal (407 for bad credentials, 403) ends the client like a server's
    /// 4xx. Default: the proxy the environment names (`HTTPS_PROXY` for `wss://`,
    /// `HTTP_PROXY` for `ws://`, `ALL_PROXY`, `NO_PROXY`), read at each connection.
    /// Replaces [`ClientBuilder::no_proxy`].
    pub fn proxy(mut self, url: &str) -> Self {
        self.settings.proxy = ProxySetting::Url(url.to_owned());
        self
    }

    /// Connects directly, whatever the environment says, as
    /// [`zapsocket::ClientBuilder::no_proxy`]. Replaces [`ClientBuilder::proxy`].
    pub fn no_proxy(mut self) -> Self {
        self.settings.proxy = ProxySetting::Direct;
        self
    }

    /// Whether the first connection, too, is tried again with the reconnection's backoff
    /// ([`ClientBuilder::reconnect`]) when it fails (the server is not up yet, a 503 while
    /// it restarts), instead of failing at once. A refusal still fails at once (a
    /// connect middleware's `$error`, or a 4xx other than 408 and 429), and so does the
    /// last attempt when `max_attempts` run out. Default: false.
    pub fn retry_first_connect(mut self, retry: bool) -> Self {
        self.settings.retry_first = retry;
        self
    }

    /// Connects to `url` (`ws://host/path` or `wss://`), offering `zap.v2` and `zap.v1`,
    /// and waits for `$hello`.
    pub async fn connect(mut self, url: &str) -> Result<Client, ConnectError> {
        self.settings.url = url.to_owned();
        let (sender, rx, hello) = driver::open_first(&self.settings).await?;
        let shared = Arc::new(Shared::new(self.settings, hello, sender));
        tokio::spawn(driver::run(shared.clone(), rx));
        Ok(Client { _guard: Arc::new(CloseOnDrop(Arc::downgrade(&shared))), shared })
    }
}

/// A connection to a realtime server, cheap to clone. Dropping the last clone closes it.
#[derive(Clone)]
pub struct Client {
    shared: Arc<Shared>,
    _guard: Arc<CloseOnDrop>,
}

impl Client {
    /// Connects with the defaults. See [`ClientBuilder::connect`].
    pub async fn connect(url: &str) -> Result<Client, ConnectError> {
        ClientBuilder::default().connect(url).await
    }

    /// A builder for headers, timeouts, reconnection.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// What the server said in `$hello` (of the session in use): session id, epoch,
    /// limits.
    pub fn hello(&self) -> Hello {
        self.shared.hello()
    }

    /// The session id.
    pub fn session(&self) -> String {
        self.shared.hello().session
    }

    /// Where the client stands.
    pub fn state(&self) -> ConnState {
        *self.shared.state.borrow()
    }

    /// Changes of [`Client::state`], as a watch channel.
    pub fn state_changes(&self) -> tokio::sync::watch::Receiver<ConnState> {
        self.shared.state.subscribe()
    }

    /// The highest offset seen in each room (with `$all` and `$s:SID`): what a `$resume`
    /// presents.
    pub fn offsets(&self) -> HashMap<String, u64> {
        self.shared.offsets().clone()
    }

    /// Handles the server event `event`, its data decoded as `T` (a decoding failure is
    /// answered with `bad_payload` when the server asked for an ack, else logged). When
    /// the server asked for an ack, the handler's result is the reply. Handlers run on the
    /// driver task: keep them short (send work to a channel). Reserved events can be
    /// handled too: `$joined`, `$left`, `$error`.
    pub fn on<T, F, O>(&self, event: &str, handler: F)
    where
        T: DeserializeOwned + 'static,
        F: Fn(T) -> O + Send + Sync + 'static,
        O: HandlerOutput,
    {
        let handler: Handler = Arc::new(move |data: &str, bins: &[bytes::Bytes]| {
            match crate::binary::from_json::<T>(data, bins) {
                Ok(value) => Some(handler(value).into_reply()),
                Err(e) => Some(Err(ReplyError::bad_payload(e.to_string()))),
            }
        });
        self.shared.handlers.write().unwrap_or_else(|p| p.into_inner()).insert(event.to_owned(), handler);
    }

    /// Sees every event (after its handler), with its name and raw JSON data.
    pub fn on_any<F: Fn(&str, &str) + Send + Sync + 'static>(&self, handler: F) {
        self.shared.any.write().unwrap_or_else(|p| p.into_inner()).push(Arc::new(handler));
    }

    /// Removes every listener added with [`Client::on_any`].
    pub fn off_any(&self) {
        self.shared.any.write().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// Sends an event; resolves once queued on the connection, or kept in the offline
    /// buffer while reconnecting. Fails with `disconnected` once closed, `limit` when the
    /// buffer is full.
    pub async fn emit<T: Serialize + ?Sized>(&self, event: &str, data: &T) -> Result<(), ReplyError> {
        let data = crate::binary::to_json(data).map_err(|e| ReplyError::bad_payload(e.to_string()))?;
        self.shared.send(None, data.wrap(|data| envelope::event(event, data, None))).await
    }

    /// Sends an event asking for an ack; resolves with the reply's data as `R`.
    pub async fn emit_with_ack<T, R>(&self, event: &str, data: &T) -> Result<R, ReplyError>
    where
        T: Serialize + ?Sized,
        R: DeserializeOwned,
    {
        let data = crate::binary::to_json(data).map_err(|e| ReplyError::bad_payload(e.to_string()))?;
        self.request(data, |id, data| envelope::event(event, data, Some(id))).await
    }

    /// Calls a procedure: `client.call::<In, Out>("add", &input)`.
    pub async fn call<I, O>(&self, name: &str, input: &I) -> Result<O, ReplyError>
    where
        I: Serialize + ?Sized,
        O: DeserializeOwned,
    {
        let data = crate::binary::to_json(input).map_err(|e| ReplyError::bad_payload(e.to_string()))?;
        self.request(data, |id, data| envelope::call(name, data, id)).await
    }

    /// Joins a room; returns its members (this client included) and their count. The
    /// room is joined again after a reconnection that could not resume the session.
    pub async fn join(&self, room: &str) -> Result<MembersReply, ReplyError> {
        let reply = self.emit_with_ack("$join", &RoomRequest { room: room.to_owned() }).await?;
        self.shared.rooms().insert(room.to_owned());
        Ok(reply)
    }

    /// Leaves a room.
    pub async fn leave(&self, room: &str) -> Result<(), ReplyError> {
        self.shared.rooms().remove(room);
        self.emit_with_ack::<_, RoomRequest>("$leave", &RoomRequest { room: room.to_owned() }).await.map(drop)
    }

    /// The members of a room and their count.
    pub async fn members(&self, room: &str) -> Result<MembersReply, ReplyError> {
        self.emit_with_ack("$members", &RoomRequest { room: room.to_owned() }).await
    }

    /// Sends raw text (for tests of what a server does with malformed input).
    pub async fn send_raw(&self, text: &str) -> Result<(), ReplyError> {
        self.shared.send(None, crate::binary::Json::plain(text.to_owned())).await
    }

    /// Closes the connection (1000) for good and waits until it is closed.
    pub async fn close(&self) {
        close(&self.shared).await;
        self.closed().await;
    }

    /// Waits until the client is closed for good.
    pub async fn closed(&self) {
        let mut state = self.shared.state.subscribe();
        let _ = state.wait_for(|s| *s == ConnState::Closed).await;
    }

    async fn request<R: DeserializeOwned>(
        &self,
        data: crate::binary::Json,
        envelope: impl FnOnce(u64, &str) -> String,
    ) -> Result<R, ReplyError> {
        let (id, rx) = self.shared.register()?;
        if let Err(e) = self.shared.send(Some(id), data.wrap(|data| envelope(id, data))).await {
            self.shared.forget(id);
            return Err(e);
        }
        let timeout = self.shared.ack_timeout();
        let reply = match zapsocket::time::timeout(timeout, rx).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(_)) => Err(link::disconnected()),
            Err(_) => {
                self.shared.forget(id);
                Err(ReplyError::new(ErrorCode::TIMEOUT, format!("no reply within {timeout:?}")))
            }
        }?;
        crate::binary::from_json(&reply.text, &reply.bins)
            .map_err(|e| ReplyError::bad_payload(format!("reply: {e}")))
    }
}

/// Stops reconnecting and closes the connection in use.
async fn close(shared: &Shared) {
    shared.closing.store(true, Relaxed);
    shared.wake.notify_one();
    let sender = shared.link.lock().await.sender.clone();
    match sender {
        Some(sender) => {
            let _ = sender.close(zapsocket::CloseCode::NORMAL, "").await;
        }
        None => shared.finish().await,
    }
}

/// Closes the client when the last [`Client`] clone is dropped (the driver task holds
/// the shared state too, so it is told to stop).
struct CloseOnDrop(std::sync::Weak<Shared>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        let Some(shared) = self.0.upgrade() else { return };
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move { close(&shared).await });
        }
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("session", &self.session()).field("state", &self.state()).finish()
    }
}
