//! A Rust client for the protocol: connect (subprotocol `zap.v1`), emit, typed `on`,
//! acks both ways, procedure calls, rooms and presence.
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
//! [`Client`] handle is cheap to clone. Reconnection (issue 6) belongs in that driver:
//! it keeps the session id, the epoch and the offsets it needs to `$resume`.

mod driver;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::{oneshot, watch};
use zapsocket::{CloseCode, Message, WebSocketSender};

use crate::envelope;
use crate::error::{ErrorCode, ReplyError};
use crate::handler::{HandlerOutput, Reply};
use crate::presence::{MembersReply, RoomRequest};

pub use driver::Hello;

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

/// Settings of a [`Client`].
#[derive(Clone, Debug)]
pub struct ClientBuilder {
    headers: Vec<(String, String)>,
    ack_timeout: Option<Duration>,
    max_pending: usize,
    hello_timeout: Duration,
}

impl Default for ClientBuilder {
    fn default() -> Self {
        ClientBuilder {
            headers: Vec::new(),
            ack_timeout: None,
            max_pending: 1_024,
            hello_timeout: Duration::from_secs(10),
        }
    }
}

impl ClientBuilder {
    /// Adds a header to the upgrade request (e.g. `Authorization`).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// How long requests wait for their reply. Default: the server's `ack_timeout_ms`
    /// from `$hello`.
    pub fn ack_timeout(mut self, timeout: Duration) -> Self {
        self.ack_timeout = Some(timeout);
        self
    }

    /// The most requests pending at once; past it a request fails with `limit`.
    /// Default: 1,024.
    pub fn max_pending(mut self, max: usize) -> Self {
        self.max_pending = max;
        self
    }

    /// Connects to `url` (`ws://host/path`), offering `zap.v1`, and waits for `$hello`.
    pub async fn connect(self, url: &str) -> Result<Client, ConnectError> {
        let mut builder = zapsocket::Client::builder().protocol(crate::SUBPROTOCOL);
        for (name, value) in &self.headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        let ws = builder.connect(url).await.map_err(ConnectError::WebSocket)?;
        let (sender, mut rx) = ws.split();
        let hello = tokio::time::timeout(self.hello_timeout, driver::read_hello(&mut rx))
            .await
            .map_err(|_| ConnectError::Protocol("no $hello in time".into()))??;
        let ack_timeout = self.ack_timeout.unwrap_or(Duration::from_millis(hello.limits.ack_timeout_ms));
        let (closed_tx, closed) = watch::channel(false);
        let shared = Arc::new(Shared {
            sender: sender.clone(),
            hello,
            ack_timeout,
            max_pending: self.max_pending,
            pending: Mutex::default(),
            next_id: AtomicU64::new(1),
            handlers: RwLock::default(),
            any: RwLock::default(),
            offsets: Mutex::default(),
            closed,
        });
        tokio::spawn(driver::run(shared.clone(), rx, closed_tx));
        Ok(Client { shared, _guard: Arc::new(CloseOnDrop(sender)) })
    }
}

/// A connection to a realtime server, cheap to clone. Dropping the last clone closes it.
#[derive(Clone)]
pub struct Client {
    shared: Arc<Shared>,
    _guard: Arc<CloseOnDrop>,
}

type Handler = Arc<dyn Fn(&str) -> Option<Reply> + Send + Sync>;
type AnyHandler = Arc<dyn Fn(&str, &str) + Send + Sync>;

pub(crate) struct Shared {
    sender: WebSocketSender,
    hello: Hello,
    ack_timeout: Duration,
    max_pending: usize,
    pending: Mutex<HashMap<u64, oneshot::Sender<Reply>>>,
    next_id: AtomicU64,
    handlers: RwLock<HashMap<String, Handler>>,
    any: RwLock<Vec<AnyHandler>>,
    offsets: Mutex<HashMap<String, u64>>,
    closed: watch::Receiver<bool>,
}

impl Shared {
    fn lock_pending(&self) -> MutexGuard<'_, HashMap<u64, oneshot::Sender<Reply>>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Client {
    /// Connects with the defaults. See [`ClientBuilder::connect`].
    pub async fn connect(url: &str) -> Result<Client, ConnectError> {
        ClientBuilder::default().connect(url).await
    }

    /// A builder for headers and timeouts.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// What the server said in `$hello`: session id, epoch, limits.
    pub fn hello(&self) -> &Hello {
        &self.shared.hello
    }

    /// The session id.
    pub fn session(&self) -> &str {
        &self.shared.hello.session
    }

    /// The highest offset seen in each room (with `$all` and `$s:SID`): what a `$resume`
    /// presents.
    pub fn offsets(&self) -> HashMap<String, u64> {
        self.shared.offsets.lock().unwrap_or_else(|p| p.into_inner()).clone()
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
        let handler: Handler = Arc::new(move |data: &str| match serde_json::from_str::<T>(data) {
            Ok(value) => Some(handler(value).into_reply()),
            Err(e) => Some(Err(ReplyError::bad_payload(e.to_string()))),
        });
        self.shared.handlers.write().unwrap_or_else(|p| p.into_inner()).insert(event.to_owned(), handler);
    }

    /// Sees every event (after its handler), with its name and raw JSON data.
    pub fn on_any<F: Fn(&str, &str) + Send + Sync + 'static>(&self, handler: F) {
        self.shared.any.write().unwrap_or_else(|p| p.into_inner()).push(Arc::new(handler));
    }

    /// Sends an event; resolves once written. Fails with `disconnected`.
    pub async fn emit<T: Serialize + ?Sized>(&self, event: &str, data: &T) -> Result<(), ReplyError> {
        let data = serde_json::to_string(data).map_err(|e| ReplyError::bad_payload(e.to_string()))?;
        self.send(envelope::event(event, &data, None)).await
    }

    /// Sends an event asking for an ack; resolves with the reply's data as `R`.
    pub async fn emit_with_ack<T, R>(&self, event: &str, data: &T) -> Result<R, ReplyError>
    where
        T: Serialize + ?Sized,
        R: DeserializeOwned,
    {
        let data = serde_json::to_string(data).map_err(|e| ReplyError::bad_payload(e.to_string()))?;
        self.request(|id| envelope::event(event, &data, Some(id))).await
    }

    /// Calls a procedure: `client.call::<In, Out>("add", &input)`.
    pub async fn call<I, O>(&self, name: &str, input: &I) -> Result<O, ReplyError>
    where
        I: Serialize + ?Sized,
        O: DeserializeOwned,
    {
        let data = serde_json::to_string(input).map_err(|e| ReplyError::bad_payload(e.to_string()))?;
        self.request(|id| envelope::call(name, &data, id)).await
    }

    /// Joins a room; returns its members (this client included) and their count.
    pub async fn join(&self, room: &str) -> Result<MembersReply, ReplyError> {
        self.emit_with_ack("$join", &RoomRequest { room: room.to_owned() }).await
    }

    /// Leaves a room.
    pub async fn leave(&self, room: &str) -> Result<(), ReplyError> {
        self.emit_with_ack::<_, RoomRequest>("$leave", &RoomRequest { room: room.to_owned() }).await.map(drop)
    }

    /// The members of a room and their count.
    pub async fn members(&self, room: &str) -> Result<MembersReply, ReplyError> {
        self.emit_with_ack("$members", &RoomRequest { room: room.to_owned() }).await
    }

    /// Sends raw text (for tests of what a server does with malformed input).
    pub async fn send_raw(&self, text: &str) -> Result<(), ReplyError> {
        self.send(text.to_owned()).await
    }

    /// Closes the connection (1000) and waits until it is closed.
    pub async fn close(&self) {
        let _ = self.shared.sender.close(CloseCode::NORMAL, "").await;
    }

    /// Waits until the connection is closed (by either side).
    pub async fn closed(&self) {
        let mut closed = self.shared.closed.clone();
        let _ = closed.wait_for(|c| *c).await;
    }

    /// The server's close frame, once closed.
    pub fn close_frame(&self) -> Option<zapsocket::CloseFrame> {
        self.shared.sender.close_frame()
    }

    async fn send(&self, json: String) -> Result<(), ReplyError> {
        self.shared.sender.send(Message::from(json)).await.map_err(|e| disconnected(&e))
    }

    async fn request<R: DeserializeOwned>(
        &self,
        envelope: impl FnOnce(u64) -> String,
    ) -> Result<R, ReplyError> {
        let (id, rx) = {
            let mut pending = self.shared.lock_pending();
            if pending.len() >= self.shared.max_pending {
                return Err(ReplyError::new(ErrorCode::LIMIT, "too many requests pending"));
            }
            let id = self.shared.next_id.fetch_add(1, Relaxed);
            let (tx, rx) = oneshot::channel();
            pending.insert(id, tx);
            (id, rx)
        };
        if let Err(e) = self.send(envelope(id)).await {
            self.shared.lock_pending().remove(&id);
            return Err(e);
        }
        let timeout = self.shared.ack_timeout;
        let reply = match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(_)) => Err(ReplyError::new(ErrorCode::DISCONNECTED, "the connection closed")),
            Err(_) => {
                self.shared.lock_pending().remove(&id);
                Err(ReplyError::new(ErrorCode::TIMEOUT, format!("no reply within {timeout:?}")))
            }
        }?;
        serde_json::from_str(&reply).map_err(|e| ReplyError::bad_payload(format!("reply: {e}")))
    }
}

fn disconnected(e: &zapsocket::Error) -> ReplyError {
    ReplyError::new(ErrorCode::DISCONNECTED, e.to_string())
}

/// Closes the connection when the last [`Client`] clone is dropped.
struct CloseOnDrop(WebSocketSender);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        let sender = self.0.clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = sender.close(CloseCode::NORMAL, "").await;
            });
        }
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("session", &self.session()).finish()
    }
}
