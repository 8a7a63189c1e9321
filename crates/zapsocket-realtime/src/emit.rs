//! Operators: to rooms, except rooms or sockets; emit (one encoding per message), and
//! socket.io's server API on the sockets they select, on every node.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::cluster::{NodeResults, RemoteSocket, Request};
use crate::core::Core;
use crate::envelope;
use crate::error::{ErrorCode, ReplyError};

/// A room to send to or to leave out: a room name, `$all`, or a socket (its own room
/// `$s:SID`). Made from `&str`, `String` or `&Socket`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RoomName(pub String);

impl RoomName {
    /// The room of the socket with session id `id` (`$s:ID`): to send to one socket on
    /// whatever node it is.
    pub fn socket(id: &str) -> RoomName {
        RoomName(format!("$s:{id}"))
    }
}

impl From<&str> for RoomName {
    fn from(room: &str) -> Self {
        RoomName(room.to_owned())
    }
}

impl From<String> for RoomName {
    fn from(room: String) -> Self {
        RoomName(room)
    }
}

impl From<&String> for RoomName {
    fn from(room: &String) -> Self {
        RoomName(room.clone())
    }
}

/// Where a message goes: the union of some rooms, minus the members of others, on every
/// node. Built by [`Hub::to`](crate::Hub::to), [`Socket::to`](crate::Socket::to),
/// [`Socket::broadcast`](crate::Socket::broadcast); ends with [`Operator::emit`] or one
/// of the cross-node operations.
///
/// ```no_run
/// # async fn f(hub: zapsocket_realtime::Hub, socket: zapsocket_realtime::Socket) -> Result<(), zapsocket_realtime::ReplyError> {
/// hub.to("red").to("blue").emit("score", &3)?;             // each member once
/// hub.to("lobby").except(&socket).emit("moved", &"left")?; // all in lobby but socket
/// hub.to("$all").except("muted").emit("news", &"hi")?;     // everyone not in "muted"
/// let found = hub.to("lobby").fetch_sockets().await;       // on every node
/// hub.to("lobby").sockets_join("game").await?;             // all of lobby joins game
/// # Ok(()) }
/// ```
#[derive(Clone)]
#[must_use = "an operator does nothing until `emit` or another operation"]
pub struct Operator {
    core: Arc<Core>,
    rooms: Vec<String>,
    except: Vec<String>,
    timeout: Option<Duration>,
    volatile: bool,
}

impl std::fmt::Debug for Operator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Operator").field("rooms", &self.rooms).field("except", &self.except).finish()
    }
}

impl Operator {
    pub(crate) fn new(core: Arc<Core>, room: RoomName) -> Self {
        Operator { core, rooms: vec![room.0], except: Vec::new(), timeout: None, volatile: false }
    }

    /// Adds a room (or a socket) to send to.
    pub fn to(mut self, room: impl Into<RoomName>) -> Self {
        let room = room.into().0;
        if !self.rooms.contains(&room) {
            self.rooms.push(room);
        }
        self
    }

    /// Leaves out the members of a room, or a socket.
    pub fn except(mut self, room: impl Into<RoomName>) -> Self {
        self.except.push(room.into().0);
        self
    }

    /// How long the cross-node operations wait for other nodes. Default:
    /// [`HubConfig::request_timeout`](crate::HubConfig::request_timeout).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Makes [`Operator::emit`] volatile, as socket.io's `volatile`: for messages that
    /// may be lost and must not pile up (a cursor position, a game tick). A socket gets
    /// it only if nothing waits in its send queue (and it is not catching up after a
    /// reconnection); otherwise it is dropped, never queued, and counted
    /// ([`Metrics::volatile_dropped`](crate::Metrics::volatile_dropped)). It is not
    /// recorded: no offsets, never replayed to a resuming client. With Redis it goes to
    /// every node over one channel (each delivers to its members), and an emit while
    /// Redis is out of reach is dropped rather than refused.
    ///
    /// ```no_run
    /// # fn f(hub: zapsocket_realtime::Hub) -> Result<(), zapsocket_realtime::ReplyError> {
    /// hub.to("game").volatile().emit("tick", &42)?;
    /// # Ok(()) }
    /// ```
    pub fn volatile(mut self) -> Self {
        self.volatile = true;
        self
    }

    /// Sends `event` with `data` to every socket in the rooms but not in the excepted
    /// ones, each once, on every node. The message is serialized once; each node that
    /// has recipients encodes one frame with the offsets the broker gave it (`rooms` and
    /// `epoch` fields) and queues the same bytes on each of them, without waiting.
    /// Byte arrays in `data` ([`Binary`](crate::Binary)) go as bytes to version 2
    /// clients (one binary frame per node) and as base64 to version 1 clients.
    /// Fails with `reserved` for a `$` event name, `bad_payload` when `data` cannot be
    /// serialized, `unavailable` when the broker cannot take it (Redis out of reach).
    pub fn emit<T: Serialize + ?Sized>(&self, event: &str, data: &T) -> Result<(), ReplyError> {
        check_event(event)?;
        let data = crate::binary::to_json(data).map_err(|e| ReplyError::bad_payload(e.to_string()))?;
        if self.volatile {
            self.core.publish_volatile(self.rooms.clone(), self.except.clone(), event, data);
            return Ok(());
        }
        self.core.publish(self.rooms.clone(), self.except.clone(), event, data)
    }

    fn wait(&self) -> Duration {
        self.timeout.unwrap_or(self.core.config.request_timeout)
    }

    /// The sockets selected, on every node (socket.io's `fetchSockets`): ids, nodes,
    /// public data and rooms, with the live nodes that did not answer in time.
    pub async fn fetch_sockets(&self) -> NodeResults<Vec<RemoteSocket>> {
        self.core.fetch_sockets(self.rooms.clone(), self.except.clone(), self.wait()).await
    }

    /// Makes the sockets selected join `room`, on every node (socket.io's
    /// `socketsJoin`); returns how many joined.
    pub async fn sockets_join(&self, room: &str) -> Result<NodeResults<usize>, ReplyError> {
        self.core.check_room(room)?;
        let request =
            Request::Join { rooms: self.rooms.clone(), except: self.except.clone(), room: room.into() };
        Ok(self.core.change_sockets(request, self.wait()).await)
    }

    /// Makes the sockets selected leave `room`, on every node (socket.io's
    /// `socketsLeave`); returns how many left.
    pub async fn sockets_leave(&self, room: &str) -> Result<NodeResults<usize>, ReplyError> {
        self.core.check_room(room)?;
        let request =
            Request::Leave { rooms: self.rooms.clone(), except: self.except.clone(), room: room.into() };
        Ok(self.core.change_sockets(request, self.wait()).await)
    }

    /// Closes the connections of the sockets selected with 1000 (their clients do not
    /// reconnect), on every node (socket.io's `disconnectSockets(true)`); returns how many.
    pub async fn disconnect_sockets(&self) -> NodeResults<usize> {
        let request = Request::Disconnect { rooms: self.rooms.clone(), except: self.except.clone() };
        self.core.change_sockets(request, self.wait()).await
    }
}

/// Application events cannot use `$` names (docs/PROTOCOL.md, *Envelopes*).
pub(crate) fn check_event(event: &str) -> Result<(), ReplyError> {
    if event.starts_with('$') {
        return Err(ReplyError::new(ErrorCode::RESERVED, format!("event {event:?} is reserved")));
    }
    envelope::check_name(event, usize::MAX).map_err(|m| ReplyError::new(ErrorCode::BAD_ENVELOPE, m))
}
