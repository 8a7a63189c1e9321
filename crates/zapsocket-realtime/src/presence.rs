//! Rooms and presence: joining, leaving, members on every node, `$joined` and `$left`.
//!
//! A join subscribes this node to the room (if it was not) before the socket counts as a
//! member, adds it to the room's presence in the broker (every node sees it), writes the
//! session through to the history (so that it is resumable from any node), then
//! announces it. One socket's room operations run one at a time (`SocketState::ops`).

use std::sync::Arc;

use crate::broker::Presence;
use crate::core::Core;
use crate::envelope::check_name;
use crate::error::{ErrorCode, ReplyError};
use crate::protocol::{MembersReply, PresenceEvent};
use crate::publish::reply_error;
use crate::state::SocketState;

impl Core {
    /// Checks a room name that a socket may join (not `$all` or `$s:…`).
    pub(crate) fn check_room(&self, room: &str) -> Result<(), ReplyError> {
        check_name(room, self.config.max_name).map_err(|m| ReplyError::new(ErrorCode::BAD_ENVELOPE, m))?;
        if room.starts_with('$') {
            return Err(ReplyError::new(ErrorCode::RESERVED, format!("room {room:?} is reserved")));
        }
        Ok(())
    }

    /// Puts `socket` in `room`; its other members (on every node) get `$joined` within the
    /// presence limit. Returns the members.
    pub(crate) async fn join(
        &self,
        socket: &Arc<SocketState>,
        room: &str,
    ) -> Result<MembersReply, ReplyError> {
        self.check_room(room)?;
        let closed = socket.ops.lock().await;
        if *closed {
            return Err(ReplyError::new(ErrorCode::DISCONNECTED, "the socket is disconnected"));
        }
        if !socket.add_room(room, self.config.max_rooms)? {
            return self.members(room).await;
        }
        if let Err(error) = self.broker.subscribe(room).await {
            self.broker.unsubscribe(room);
            socket.remove_room(room);
            return Err(reply_error(error));
        }
        self.registry.add_member(room, socket);
        let member = socket.member();
        let presence = match self.broker.join(room, &member, self.config.max_presence).await {
            Ok(presence) => presence,
            Err(error) => {
                socket.remove_room(room);
                self.registry.remove_member(room, socket);
                self.broker.unsubscribe(room);
                return Err(reply_error(error));
            }
        };
        drop(closed);
        socket.set_joined_at(room, presence.offset);
        self.save_session(socket).await;
        if presence.changed && presence.count <= self.config.max_presence {
            let event = PresenceEvent { room: room.to_owned(), member };
            self.publish_reserved(room, &socket.room, "$joined", &event);
        }
        Ok(self.members_reply(room, presence))
    }

    /// Takes `socket` out of `room`; the remaining members get `$left`. Leaving a room one
    /// is not in does nothing.
    pub(crate) async fn leave(&self, socket: &Arc<SocketState>, room: &str) -> Result<(), ReplyError> {
        self.check_room(room)?;
        let _ops = socket.ops.lock().await;
        if socket.remove_room(room) {
            self.registry.remove_member(room, socket);
            self.broker.unsubscribe(room);
            self.leave_presence(socket, room).await;
            self.save_session(socket).await;
        }
        Ok(())
    }

    /// Removes a disconnected socket: from this node, from every room's presence (with
    /// `$left`). Returns its session as it was, with its rooms.
    pub(crate) async fn remove(&self, socket: &Arc<SocketState>) -> crate::broker::SessionRecord {
        let mut closed = socket.ops.lock().await;
        *closed = true;
        let record = socket.record();
        let rooms = socket.take_rooms();
        if self.registry.remove_socket(socket, &rooms) {
            self.broker.unsubscribe(crate::ALL_ROOM);
            self.broker.unsubscribe(&socket.room);
        }
        let leaves = rooms.iter().map(|room| {
            self.broker.unsubscribe(room);
            self.leave_presence(socket, room)
        });
        futures_util::future::join_all(leaves).await;
        socket.fail_pending();
        record
    }

    async fn leave_presence(&self, socket: &SocketState, room: &str) {
        match self.broker.leave(room, &socket.sid).await {
            Ok(presence) if presence.changed && presence.count < self.config.max_presence => {
                let event = PresenceEvent { room: room.to_owned(), member: socket.member() };
                self.publish_reserved(room, &socket.room, "$left", &event);
            }
            Ok(_) => {}
            Err(error) => tracing::debug!(%room, %error, "presence not updated"),
        }
    }

    /// The members of `room` on every node (listed within the presence limit).
    pub(crate) async fn members(&self, room: &str) -> Result<MembersReply, ReplyError> {
        self.check_room(room)?;
        let presence = self.broker.members(room, self.config.max_presence).await.map_err(reply_error)?;
        Ok(self.members_reply(room, presence))
    }

    fn members_reply(&self, room: &str, presence: Presence) -> MembersReply {
        let members = if presence.count <= self.config.max_presence { presence.members } else { Vec::new() };
        MembersReply { room: room.to_owned(), members, count: presence.count }
    }

    /// Writes the socket's session through to the history (a failure is only logged:
    /// the session is written again when the store comes back).
    pub(crate) async fn save_session(&self, socket: &SocketState) {
        let record = socket.record();
        if let Err(error) = self.history.save_session(&record, self.broker.node()).await {
            tracing::debug!(session = %socket.sid, %error, "session not saved");
        }
    }

    /// New public data: presence in the socket's rooms and its session say so.
    pub(crate) async fn update_member(&self, socket: &SocketState) {
        let member = socket.member();
        for room in socket.rooms() {
            if let Err(error) = self.broker.join(&room, &member, 0).await {
                tracing::debug!(%room, %error, "presence not updated");
            }
        }
        self.save_session(socket).await;
    }
}
