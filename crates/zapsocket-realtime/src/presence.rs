//! Rooms and presence: joining, leaving, members, `$joined` and `$left`.

use std::collections::HashMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use ts_rs::TS;

use crate::envelope::check_name;
use crate::error::{ErrorCode, ReplyError};
use crate::hub::{Hub, State};
use crate::socket::SocketInner;

/// A room member as presence shows it: its session id and public data.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, TS)]
pub struct Member {
    /// The member's session id.
    pub id: String,
    /// Its public per-socket data (e.g. `{"name": "ada"}`).
    pub data: serde_json::Value,
}

/// The data of `$joined` and `$left`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, TS)]
pub struct PresenceEvent {
    /// The room.
    pub room: String,
    /// Who joined or left.
    pub member: Member,
}

/// The data of `$join`, `$leave` and `$members` requests.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, TS)]
pub struct RoomRequest {
    /// The room.
    pub room: String,
}

/// The reply to `$join` and `$members`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, TS)]
pub struct MembersReply {
    /// The room.
    pub room: String,
    /// Its members, in no particular order; empty when the room has more than
    /// [`HubConfig::max_presence`](crate::HubConfig::max_presence) members.
    pub members: Vec<Member>,
    /// How many members the room has.
    #[serde(default)]
    pub count: usize,
}

/// A room's members by session id.
pub(crate) type Members = HashMap<Arc<str>, Arc<SocketInner>>;

impl Hub {
    /// Checks a room name that a socket may join (not `$all` or `$s:…`).
    pub(crate) fn check_room(&self, room: &str) -> Result<(), ReplyError> {
        check_name(room, self.config().max_name).map_err(|m| ReplyError::new(ErrorCode::BAD_ENVELOPE, m))?;
        if room.starts_with('$') {
            return Err(ReplyError::new(ErrorCode::RESERVED, format!("room {room:?} is reserved")));
        }
        Ok(())
    }

    pub(crate) fn join(&self, socket: &Arc<SocketInner>, room: &str) -> Result<MembersReply, ReplyError> {
        self.check_room(room)?;
        let max = self.config().max_rooms;
        let (members, joined) = {
            let mut state = self.write_state();
            let mut rooms = socket.rooms.lock().unwrap_or_else(|p| p.into_inner());
            let joined = !rooms.contains(room);
            if joined {
                if rooms.len() >= max {
                    return Err(ReplyError::new(ErrorCode::LIMIT, format!("already in {max} rooms")));
                }
                if !state.sockets.contains_key(&socket.sid) {
                    return Err(ReplyError::new(ErrorCode::DISCONNECTED, "the socket is disconnected"));
                }
                rooms.insert(room.to_owned());
                let last = self.inner.adapter.last_offset(room);
                socket.joined_at.lock().unwrap_or_else(|p| p.into_inner()).insert(room.to_owned(), last);
                state.rooms.entry(room.to_owned()).or_default().insert(socket.sid.clone(), socket.clone());
            }
            (self.presence_of(&state, room), joined)
        };
        if joined && members.count <= self.config().max_presence {
            let event = PresenceEvent { room: room.to_owned(), member: socket.member() };
            self.emit_reserved(&[room], &[socket.room.as_str()], "$joined", &event);
        }
        Ok(members)
    }

    pub(crate) fn leave(&self, socket: &Arc<SocketInner>, room: &str) -> Result<(), ReplyError> {
        self.check_room(room)?;
        let left = {
            let mut state = self.write_state();
            let left = socket.rooms.lock().unwrap_or_else(|p| p.into_inner()).remove(room);
            left && self.remove_member(&mut state, room, &socket.sid)
        };
        if left {
            let event = PresenceEvent { room: room.to_owned(), member: socket.member() };
            self.emit_reserved(&[room], &[socket.room.as_str()], "$left", &event);
        }
        Ok(())
    }

    /// Removes a disconnected socket: from the hub, from its rooms (with `$left`).
    /// Returns the rooms it was in.
    pub(crate) fn remove(&self, socket: &Arc<SocketInner>) -> Vec<String> {
        let rooms: Vec<(String, bool)> = {
            let mut state = self.write_state();
            state.sockets.remove(&socket.sid);
            let rooms = std::mem::take(&mut *socket.rooms.lock().unwrap_or_else(|p| p.into_inner()));
            let announce = |room: String| {
                let announce = self.remove_member(&mut state, &room, &socket.sid);
                (room, announce)
            };
            rooms.into_iter().map(announce).collect()
        };
        let member = socket.member();
        for (room, announce) in &rooms {
            if *announce {
                let event = PresenceEvent { room: room.clone(), member: member.clone() };
                self.emit_reserved(&[room.as_str()], &[socket.room.as_str()], "$left", &event);
            }
        }
        socket.fail_pending();
        rooms.into_iter().map(|(room, _)| room).collect()
    }

    /// Every member of `room`, whatever its size.
    pub fn members(&self, room: &str) -> Vec<Member> {
        let state = self.read_state();
        state.rooms.get(room).map(|m| m.values().map(|s| s.member()).collect()).unwrap_or_default()
    }

    /// The `$join`/`$members` reply: the members while the room is within the presence
    /// limit, the count always.
    pub(crate) fn presence_of(&self, state: &State, room: &str) -> MembersReply {
        let members = state.rooms.get(room);
        let count = members.map_or(0, |m| m.len());
        let members = match members {
            Some(m) if count <= self.config().max_presence => m.values().map(|s| s.member()).collect(),
            _ => Vec::new(),
        };
        MembersReply { room: room.to_owned(), members, count }
    }

    /// Removes a member; returns whether the room should hear `$left` (it was a member
    /// of a room within the presence limit).
    fn remove_member(&self, state: &mut State, room: &str, sid: &str) -> bool {
        let Some(members) = state.rooms.get_mut(room) else { return false };
        let was_member = members.remove(sid).is_some();
        let announce = was_member && members.len() < self.config().max_presence;
        if members.is_empty() {
            state.rooms.remove(room);
        }
        announce
    }
}
