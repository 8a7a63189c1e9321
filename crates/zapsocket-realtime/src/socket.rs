//! [`Socket`]: the server's handle on one connected client.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use zapsocket::CloseCode;

use crate::core::{Core, Ctx};
use crate::emit::{Operator, RoomName, check_event};
use crate::envelope;
use crate::error::{ErrorCode, ReplyError};
use crate::protocol::{Member, MembersReply};
use crate::state::SocketState;

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
    pub(crate) state: Arc<SocketState>,
    pub(crate) core: Arc<Core>,
    /// The ack of the request being handled, if it asked for one.
    pub(crate) ack: Option<u64>,
    /// The timeout of `emit_with_ack`, when not the hub's.
    pub(crate) timeout: Option<Duration>,
    /// The upgrade request, when the connection does not keep it (see [`Socket::request`]).
    pub(crate) request: Option<Arc<zapsocket::Request>>,
}

impl From<Ctx> for Socket {
    fn from(ctx: Ctx) -> Self {
        Socket { state: ctx.state, core: ctx.core, ack: ctx.ack, timeout: None, request: ctx.request }
    }
}

impl From<&Socket> for RoomName {
    fn from(socket: &Socket) -> Self {
        RoomName(socket.state.room.to_string())
    }
}

impl Socket {
    /// The session id (`SID` of docs/PROTOCOL.md).
    pub fn id(&self) -> &str {
        &self.state.sid
    }

    /// The node this socket is connected to.
    pub fn node(&self) -> &str {
        self.core.broker.node()
    }

    /// The upgrade request: headers, query parameters, cookies, peer address.
    ///
    /// On the async [`zapsocket::Server`], always. On the reactor
    /// ([`Hub::reactor_handler`](crate::Hub::reactor_handler)), in the connect middlewares
    /// (and what they keep of their `Socket`), and after them only with
    /// [`HubHandler::keep_requests`](crate::HubHandler::keep_requests): a request head
    /// (a browser's, with its cookies, is often 1 KiB) is most of an idle session there.
    /// Keep what the handlers need in the socket's data at connect.
    pub fn request(&self) -> Option<&zapsocket::Request> {
        self.request.as_deref().or_else(|| self.state.sender.request())
    }

    /// The public data: what other members see in presence (`MEMBER.data`). Default: null.
    pub fn public_data(&self) -> serde_json::Value {
        self.state.public()
    }

    /// Sets the public data (e.g. `json!({"name": "ada"})`): presence in the socket's rooms
    /// (on every node) and its session say so from now on; presence events already sent
    /// are not changed. Set it in a connect middleware to have it from the start.
    pub fn set_public_data(&self, data: serde_json::Value) {
        self.state.set_public(data);
        if self.state.rooms().is_empty() {
            return;
        }
        let (core, state) = (self.core.clone(), self.state.clone());
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move { core.update_member(&state).await });
        }
    }

    /// Private per-socket data of type `T` (one value per type), never sent anywhere
    /// and kept on this node only (a session resumed on another node does not have it).
    pub fn data<T: Clone + Send + Sync + 'static>(&self) -> Option<T> {
        self.state.private::<T>()
    }

    /// Sets the private data of type `T`.
    pub fn set_data<T: Send + Sync + 'static>(&self, value: T) {
        self.state.set_private(value);
    }

    /// This socket as a room member: its id and public data.
    pub fn member(&self) -> Member {
        self.state.member()
    }

    /// The named rooms this socket is in (not `$all` nor its own room), in name order.
    pub fn rooms(&self) -> Vec<String> {
        self.state.rooms()
    }

    /// Joins `room`; the room's other members, on every node, get `$joined` (within the
    /// presence limit). Returns the members, this socket included (see [`MembersReply`]).
    /// Fails with `reserved` for a `$` name, `bad_envelope` for a name too long, `limit`
    /// past [`HubConfig::max_rooms`](crate::HubConfig::max_rooms), `unavailable` when the
    /// broker is out of reach.
    pub async fn join(&self, room: &str) -> Result<MembersReply, ReplyError> {
        self.core.join(&self.state, room).await
    }

    /// Leaves `room`; the remaining members get `$left`. Leaving a room one is not in
    /// does nothing.
    pub async fn leave(&self, room: &str) -> Result<(), ReplyError> {
        self.core.leave(&self.state, room).await
    }

    /// Sends `event` to this socket (through its room `$s:SID`, so it is recorded and
    /// recoverable).
    pub fn emit<T: Serialize + ?Sized>(&self, event: &str, data: &T) -> Result<(), ReplyError> {
        Operator::new(self.core.clone(), RoomName::from(self)).emit(event, data)
    }

    /// A volatile emit to this socket (socket.io's `socket.volatile.emit`): sent only if
    /// nothing waits in its send queue, else dropped and counted; see
    /// [`Operator::volatile`].
    pub fn volatile(&self) -> Operator {
        Operator::new(self.core.clone(), RoomName::from(self)).volatile()
    }

    /// Bytes queued on this socket's connection and not yet written (`ws`'s
    /// `bufferedAmount`).
    pub fn buffered_amount(&self) -> usize {
        self.state.sender.buffered_amount()
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
        check_event(event)?;
        let data = crate::binary::to_json(data).map_err(|e| ReplyError::bad_payload(e.to_string()))?;
        let (id, rx) = self.state.add_pending(self.core.config.max_pending_acks)?;
        self.send_direct(data.wrap(|data| envelope::event(event, data, Some(id))));
        let timeout = self.timeout.unwrap_or(self.core.config.ack_timeout);
        let reply = match zapsocket::time::timeout(timeout, rx).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(_)) => Err(ReplyError::new(ErrorCode::DISCONNECTED, "the connection closed")),
            Err(_) => {
                self.state.forget_pending(id);
                Err(ReplyError::new(ErrorCode::TIMEOUT, format!("no ack for {event:?} within {timeout:?}")))
            }
        }?;
        crate::binary::from_json(&reply.text, &reply.bins)
            .map_err(|e| ReplyError::bad_payload(format!("ack of {event:?}: {e}")))
    }

    /// Whether the request being handled asked for an ack (so its result is the reply).
    pub fn ack_requested(&self) -> bool {
        self.ack.is_some()
    }

    /// Every socket but this one, on every node.
    pub fn broadcast(&self) -> Operator {
        Operator::new(self.core.clone(), RoomName(crate::ALL_ROOM.into())).except(self)
    }

    /// The members of `room` but this one (socket.io's `socket.to(room)`).
    pub fn to(&self, room: impl Into<RoomName>) -> Operator {
        Operator::new(self.core.clone(), room.into()).except(self)
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
        self.state.sender.close(code, reason).await;
    }

    /// Sends a message that is not recorded (a reply, an error, `$hello`).
    pub(crate) fn send_direct(&self, json: crate::binary::Json) {
        self.core.send_direct(&self.state, json);
    }
}

impl std::fmt::Debug for Socket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Socket").field("id", &self.id()).field("rooms", &self.rooms()).finish()
    }
}
