//! The client's shared state: the current connection (or none while reconnecting), the
//! offline buffer, pending requests, the session, rooms and offsets.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{Notify, oneshot, watch};
use zapsocket::{Message, WebSocketSender};

use super::{ConnState, Hello, Settings};
use crate::binary::Json;
use crate::error::{ErrorCode, ReplyError};
use crate::handler::Reply;

pub(super) type Handler = Arc<dyn Fn(&str, &[Bytes]) -> Option<Reply> + Send + Sync>;
pub(super) type AnyHandler = Arc<dyn Fn(&str, &str) + Send + Sync>;

/// A request awaiting its reply; `sent` once it went out on a connection (a request
/// still in the offline buffer survives a reconnection, a sent one fails).
pub(super) struct Pending {
    tx: oneshot::Sender<Reply>,
    sent: bool,
}

/// The connection in use and the envelopes waiting for one.
#[derive(Default)]
pub(super) struct Link {
    pub(super) sender: Option<WebSocketSender>,
    /// Envelopes emitted while reconnecting, with their request id if any.
    /// They are framed when sent, for the protocol version of the connection then.
    pub(super) buffer: VecDeque<(Option<u64>, Json)>,
}

pub(crate) struct Shared {
    pub(super) settings: Settings,
    /// Held while sending, so that the buffer is flushed before anything newer.
    pub(super) link: tokio::sync::Mutex<Link>,
    /// The connection the driver answers on (set before the link is, during a resume).
    pub(super) answer: RwLock<Option<WebSocketSender>>,
    pub(super) hello: RwLock<Hello>,
    pub(super) pending: Mutex<HashMap<u64, Pending>>,
    pub(super) next_id: AtomicU64,
    pub(super) handlers: RwLock<HashMap<String, Handler>>,
    pub(super) any: RwLock<Vec<AnyHandler>>,
    pub(super) offsets: Mutex<HashMap<String, u64>>,
    /// Rooms joined with `join` (rejoined after a reconnection that did not resume).
    pub(super) rooms: Mutex<BTreeSet<String>>,
    pub(super) state: watch::Sender<ConnState>,
    pub(super) closing: AtomicBool,
    pub(super) wake: Notify,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

pub(super) fn disconnected() -> ReplyError {
    ReplyError::new(ErrorCode::DISCONNECTED, "the connection closed")
}

impl Shared {
    pub(super) fn new(settings: Settings, hello: Hello, sender: WebSocketSender) -> Self {
        Shared {
            settings,
            link: tokio::sync::Mutex::new(Link { sender: Some(sender.clone()), buffer: VecDeque::new() }),
            answer: RwLock::new(Some(sender)),
            hello: RwLock::new(hello),
            pending: Mutex::default(),
            next_id: AtomicU64::new(1),
            handlers: RwLock::default(),
            any: RwLock::default(),
            offsets: Mutex::default(),
            rooms: Mutex::default(),
            state: watch::Sender::new(ConnState::Connected),
            closing: AtomicBool::new(false),
            wake: Notify::new(),
        }
    }

    /// Whether the connection speaks version 2: byte arrays go as bytes.
    pub(super) fn binary(&self) -> bool {
        self.hello.read().unwrap_or_else(|p| p.into_inner()).version >= 2
    }

    pub(super) fn hello(&self) -> Hello {
        self.hello.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub(super) fn ack_timeout(&self) -> Duration {
        let server =
            Duration::from_millis(self.hello.read().unwrap_or_else(|p| p.into_inner()).limits.ack_timeout_ms);
        self.settings.ack_timeout.unwrap_or(server)
    }

    pub(super) fn offsets(&self) -> MutexGuard<'_, HashMap<String, u64>> {
        lock(&self.offsets)
    }

    pub(super) fn rooms(&self) -> MutexGuard<'_, BTreeSet<String>> {
        lock(&self.rooms)
    }

    /// Registers a request; fails with `limit` past the bound.
    pub(super) fn register(&self) -> Result<(u64, oneshot::Receiver<Reply>), ReplyError> {
        let mut pending = lock(&self.pending);
        if pending.len() >= self.settings.max_pending {
            return Err(ReplyError::new(ErrorCode::LIMIT, "too many requests pending"));
        }
        let id = self.next_id.fetch_add(1, Relaxed);
        let (tx, rx) = oneshot::channel();
        pending.insert(id, Pending { tx, sent: false });
        Ok((id, rx))
    }

    pub(super) fn forget(&self, id: u64) {
        lock(&self.pending).remove(&id);
    }

    pub(super) fn resolve(&self, id: u64, reply: Reply) {
        if let Some(pending) = lock(&self.pending).remove(&id) {
            let _ = pending.tx.send(reply);
        }
    }

    fn mark_sent(&self, id: Option<u64>) {
        if let Some(id) = id
            && let Some(pending) = lock(&self.pending).get_mut(&id)
        {
            pending.sent = true;
        }
    }

    /// Fails the requests that went out on a connection that ended.
    pub(super) fn fail_sent(&self) {
        let mut pending = lock(&self.pending);
        let sent: Vec<u64> = pending.iter().filter(|(_, p)| p.sent).map(|(id, _)| *id).collect();
        for id in sent {
            if let Some(p) = pending.remove(&id) {
                let _ = p.tx.send(Err(disconnected()));
            }
        }
    }

    /// Fails every request: the client is closed for good.
    pub(super) fn fail_all(&self) {
        for (_, p) in lock(&self.pending).drain() {
            let _ = p.tx.send(Err(disconnected()));
        }
    }

    /// Sends an envelope now, or keeps it in the offline buffer while reconnecting.
    /// Fails with `disconnected` once closed, `limit` when the buffer is full.
    pub(super) async fn send(&self, id: Option<u64>, json: Json) -> Result<(), ReplyError> {
        let mut link = self.link.lock().await;
        if let Some(sender) = &link.sender {
            self.mark_sent(id);
            return queue(sender, json.into_message(self.binary())).await;
        }
        if *self.state.borrow() == ConnState::Closed {
            return Err(disconnected());
        }
        if link.buffer.len() >= self.settings.max_buffered {
            let max = self.settings.max_buffered;
            return Err(ReplyError::new(ErrorCode::LIMIT, format!("offline buffer full ({max} envelopes)")));
        }
        link.buffer.push_back((id, json));
        Ok(())
    }

    /// Makes `sender` the connection in use: sends the offline buffer first, in order.
    pub(super) async fn attach(&self, sender: WebSocketSender) {
        let mut link = self.link.lock().await;
        while let Some((id, json)) = link.buffer.pop_front() {
            self.mark_sent(id);
            if queue(&sender, json.into_message(self.binary())).await.is_err() {
                break;
            }
        }
        link.sender = Some(sender);
        self.state.send_replace(ConnState::Connected);
    }

    /// The connection ended: no sender until the driver attaches a new one.
    pub(super) async fn detach(&self) {
        self.link.lock().await.sender = None;
        *self.answer.write().unwrap_or_else(|p| p.into_inner()) = None;
        self.fail_sent();
    }

    /// Closed for good: fail everything, empty the buffer.
    pub(super) async fn finish(&self) {
        let mut link = self.link.lock().await;
        link.sender = None;
        link.buffer.clear();
        drop(link);
        self.fail_all();
        self.state.send_replace(ConnState::Closed);
    }

    /// Queues an answer to the server without waiting (on the driver's task).
    pub(super) fn answer(&self, json: Json) {
        let sender = self.answer.read().unwrap_or_else(|p| p.into_inner()).clone();
        match sender.map(|s| s.try_send(json.into_message(self.binary()))) {
            Some(Ok(())) => {}
            Some(Err(e)) => tracing::debug!(error = %e, "could not queue an answer"),
            None => tracing::debug!("no connection to answer on"),
        }
    }
}

/// Queues without waiting; waits for room only when the send queue is full.
async fn queue(sender: &WebSocketSender, message: Message) -> Result<(), ReplyError> {
    match sender.try_send(message.clone()) {
        Ok(()) => Ok(()),
        Err(e) if e.is_queue_full() => sender.send(message).await.map_err(|_| disconnected()),
        Err(_) => Err(disconnected()),
    }
}
