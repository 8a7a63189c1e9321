//! [`Socket`]: the server's handle on one connected client.

use std::any::{Any, TypeId};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::oneshot;
use zapsocket::{CloseCode, Message, WebSocketSender};

use crate::emit::{Operator, RoomName};
use crate::envelope;
use crate::error::{ErrorCode, ReplyError};
use crate::handler::Reply;
use crate::hub::Hub;
use crate::presence::{Member, MembersReply};

/// How many unknown event names a socket is warned about once each; past it, each
/// unknown event gets its `$error` (the set stays bounded, nothing is silent).
const MAX_WARNED: usize = 64;

/// One connected client, as handlers see it: cheap to clone.
///
/// It has a session id ([`Socket::id`]), the upgrade request, per-socket data (public
/// data shown in presence, and private typed data), its rooms, and emit operators.
///
/// ```no_run
/// # fn f(socket: zapsocket_realtime::Socket) -> Result<(), zapsocket_realtime::ReplyError> {
/// socket.emit("welcome", &"hello")?;                  // to this socket alone
/// socket.to("lobby").emit("news", &"someone spoke")?; // to the room, but not this socket
/// socket.broadcast().emit("news", &"to all others")?; // to every socket but this one
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Socket {
    pub(crate) inner: Arc<SocketInner>,
    pub(crate) hub: Hub,
    /// The ack of the request being handled, if it asked for one.
    pub(crate) ack: Option<u64>,
    /// The timeout of `emit_with_ack`, when not the hub's.
    pub(crate) timeout: Option<Duration>,
}

pub(crate) struct SocketInner {
    pub(crate) sid: Arc<str>,
    /// `$s:SID`.
    pub(crate) room: String,
    pub(crate) sender: WebSocketSender,
    public: RwLock<serde_json::Value>,
    private: Mutex<HashMap<TypeId, Box<dyn Any + Send + Sync>>>,
    /// The named rooms it joined.
    pub(crate) rooms: Mutex<BTreeSet<String>>,
    pending: Mutex<HashMap<u64, oneshot::Sender<Reply>>>,
    /// Per room (with `$all` and its own), the room's last offset when it joined: a
    /// `$resume` replays from there when the client has no offset for the room.
    pub(crate) joined_at: Mutex<HashMap<String, u64>>,
    next_ack: AtomicU64,
    warned: Mutex<HashSet<String>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl SocketInner {
    pub(crate) fn new(sender: WebSocketSender) -> Self {
        Self::with_sid(crate::random_id("s").into(), sender)
    }

    /// A socket taking over session `old` (a `$resume`), with its data.
    pub(crate) fn resumed(old: &SocketInner, sender: WebSocketSender) -> Self {
        let socket = Self::with_sid(old.sid.clone(), sender);
        let public = old.public.read().unwrap_or_else(|p| p.into_inner()).clone();
        *socket.public.write().unwrap_or_else(|p| p.into_inner()) = public;
        *lock(&socket.private) = std::mem::take(&mut *lock(&old.private));
        *lock(&socket.joined_at) = lock(&old.joined_at).clone();
        socket
    }

    fn with_sid(sid: Arc<str>, sender: WebSocketSender) -> Self {
        SocketInner {
            room: format!("$s:{sid}"),
            sid,
            sender,
            public: RwLock::new(serde_json::Value::Null),
            private: Mutex::new(HashMap::new()),
            rooms: Mutex::new(BTreeSet::new()),
            pending: Mutex::new(HashMap::new()),
            joined_at: Mutex::new(HashMap::new()),
            next_ack: AtomicU64::new(1),
            warned: Mutex::new(HashSet::new()),
        }
    }

    pub(crate) fn member(&self) -> Member {
        let data = self.public.read().unwrap_or_else(|p| p.into_inner()).clone();
        Member { id: self.sid.to_string(), data }
    }

    /// Resolves a pending server request with the client's reply; a late or unknown
    /// reply is ignored (docs/PROTOCOL.md, *Envelopes*).
    pub(crate) fn resolve(&self, id: u64, reply: Reply) {
        if let Some(tx) = lock(&self.pending).remove(&id) {
            let _ = tx.send(reply);
        }
    }

    /// Fails every pending request: the connection is gone.
    pub(crate) fn fail_pending(&self) {
        for (_, tx) in lock(&self.pending).drain() {
            let _ = tx.send(Err(ReplyError::new(ErrorCode::DISCONNECTED, "the connection closed")));
        }
    }

    /// Whether an unknown event name should get its `$error` (once per name).
    pub(crate) fn warn_unknown(&self, name: &str) -> bool {
        let mut warned = lock(&self.warned);
        if warned.contains(name) {
            return false;
        }
        if warned.len() < MAX_WARNED {
            warned.insert(name.to_owned());
        }
        true
    }
}

impl Socket {
    /// The session id (`SID` of docs/PROTOCOL.md).
    pub fn id(&self) -> &str {
        &self.inner.sid
    }

    /// The upgrade request: headers, query parameters, cookies, peer address.
    pub fn request(&self) -> Option<&zapsocket::Request> {
        self.inner.sender.request()
    }

    /// The hub this socket belongs to.
    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    /// The public data: what other members see in presence (`MEMBER.data`). Default: null.
    pub fn public_data(&self) -> serde_json::Value {
        self.inner.public.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Sets the public data (e.g. `json!({"name": "ada"})`). Already sent presence events
    /// are not changed.
    pub fn set_public_data(&self, data: serde_json::Value) {
        *self.inner.public.write().unwrap_or_else(|p| p.into_inner()) = data;
    }

    /// Private per-socket data of type `T` (one value per type), never sent anywhere.
    pub fn data<T: Clone + Send + Sync + 'static>(&self) -> Option<T> {
        lock(&self.inner.private).get(&TypeId::of::<T>()).and_then(|v| v.downcast_ref::<T>()).cloned()
    }

    /// Sets the private data of type `T`.
    pub fn set_data<T: Send + Sync + 'static>(&self, value: T) {
        lock(&self.inner.private).insert(TypeId::of::<T>(), Box::new(value));
    }

    /// This socket as a room member: its id and public data.
    pub fn member(&self) -> Member {
        self.inner.member()
    }

    /// The named rooms this socket is in (not `$all` nor its own room), in name order.
    pub fn rooms(&self) -> Vec<String> {
        lock(&self.inner.rooms).iter().cloned().collect()
    }

    /// Joins `room`; the room's other members get `$joined` (within the presence limit).
    /// Returns the members, this socket included (see [`MembersReply`]). Fails with
    /// `reserved` for a `$` name, `bad_envelope` for a name too long, `limit` past
    /// [`HubConfig::max_rooms`](crate::HubConfig::max_rooms).
    pub fn join(&self, room: &str) -> Result<MembersReply, ReplyError> {
        self.hub.join(&self.inner, room)
    }

    /// Leaves `room`; the remaining members get `$left`. Leaving a room one is not in
    /// does nothing.
    pub fn leave(&self, room: &str) -> Result<(), ReplyError> {
        self.hub.leave(&self.inner, room)
    }

    /// Sends `event` to this socket (through its room `$s:SID`, so it is recorded and
    /// recoverable). Returns whether it was queued.
    pub fn emit<T: Serialize + ?Sized>(&self, event: &str, data: &T) -> Result<bool, ReplyError> {
        Ok(RoomName::from(self).into_operator(&self.hub).emit(event, data)? > 0)
    }

    /// A socket whose [`Socket::emit_with_ack`] waits `timeout` instead of the hub's
    /// [`HubConfig::ack_timeout`](crate::HubConfig::ack_timeout).
    pub fn timeout(&self, timeout: Duration) -> Socket {
        Socket { timeout: Some(timeout), ..self.clone() }
    }

    /// Sends `event` asking for an ack and waits for the client's reply data, decoded as
    /// `R`. Fails with the client's error reply, `timeout` (local), `limit` (too many
    /// pending), `disconnected`, or `bad_payload` when the reply is not an `R`.
    pub async fn emit_with_ack<T, R>(&self, event: &str, data: &T) -> Result<R, ReplyError>
    where
        T: Serialize + ?Sized,
        R: DeserializeOwned,
    {
        crate::emit::check_event(event)?;
        let data = serde_json::to_string(data).map_err(|e| ReplyError::bad_payload(e.to_string()))?;
        let (id, rx) = self.register_pending()?;
        self.send_direct(envelope::event(event, &data, Some(id)));
        let timeout = self.timeout.unwrap_or(self.hub.config().ack_timeout);
        let reply = match zapsocket::time::timeout(timeout, rx).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(_)) => Err(ReplyError::new(ErrorCode::DISCONNECTED, "the connection closed")),
            Err(_) => {
                lock(&self.inner.pending).remove(&id);
                Err(ReplyError::new(ErrorCode::TIMEOUT, format!("no ack for {event:?} within {timeout:?}")))
            }
        }?;
        serde_json::from_str(&reply).map_err(|e| ReplyError::bad_payload(format!("ack of {event:?}: {e}")))
    }

    fn register_pending(&self) -> Result<(u64, oneshot::Receiver<Reply>), ReplyError> {
        let mut pending = lock(&self.inner.pending);
        let max = self.hub.config().max_pending_acks;
        if pending.len() >= max {
            return Err(ReplyError::new(ErrorCode::LIMIT, format!("{max} acks already pending")));
        }
        let id = self.inner.next_ack.fetch_add(1, Relaxed);
        let (tx, rx) = oneshot::channel();
        pending.insert(id, tx);
        Ok((id, rx))
    }

    /// Whether the request being handled asked for an ack (so its result is the reply).
    pub fn ack_requested(&self) -> bool {
        self.ack.is_some()
    }

    /// Every socket but this one.
    pub fn broadcast(&self) -> Operator {
        self.hub.to(crate::ALL_ROOM).except(self)
    }

    /// The members of `room` but this one (socket.io's `socket.to(room)`).
    pub fn to(&self, room: impl Into<RoomName>) -> Operator {
        self.hub.to(room).except(self)
    }

    /// Closes the connection (1000: the client does not reconnect); the socket leaves
    /// its rooms.
    pub async fn disconnect(&self) {
        self.close(CloseCode::NORMAL, "").await;
    }

    /// Closes the connection with `code` and `reason` (at most 123 bytes); the code
    /// tells the client whether to reconnect (docs/PROTOCOL.md, *Close codes*: 1012 or
    /// 4100–4999 reconnect, 1008 or 4000–4099 do not). Waits until closed.
    pub async fn close(&self, code: CloseCode, reason: &str) {
        let _ = self.inner.sender.close(code, reason).await;
    }

    /// Sends a message that is not recorded (a reply, an error, `$hello`).
    pub(crate) fn send_direct(&self, json: String) {
        self.hub.send_direct(&self.inner, json);
    }
}

impl std::fmt::Debug for Socket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Socket").field("id", &self.id()).field("rooms", &self.rooms()).finish()
    }
}

/// Queues `json` on one connection without recording it; returns whether it was queued.
pub(crate) fn send_frame(sender: &WebSocketSender, json: String) -> bool {
    sender.send_encoded(&zapsocket::encode(Message::from(json))).unwrap_or(false)
}
