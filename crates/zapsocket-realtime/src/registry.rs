//! Which of this node's sockets is in which room: plain data behind one read-write lock.
//!
//! `$all` holds every socket and `$s:SID` its socket; named rooms are kept here.
//!
//! Lock order: the registry's lock, then a socket's own lock ([`SocketState`]); a broker
//! may hold its own locks (the memory adapter's room logs) while it reads the registry.

use std::collections::HashMap;

use indexmap::IndexMap;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::state::SocketState;

/// A room's members by session id, in a dense list (in about the order they came):
/// a room's delivery walks it, and its sockets' memory, in that order rather than a
/// hash's, which the CPU prefetches (measured: docs/BENCHMARKS.md).
pub(crate) type Members = IndexMap<Arc<str>, Arc<SocketState>>;

/// This node's sockets and rooms.
#[derive(Default)]
pub(crate) struct Registry {
    inner: RwLock<Rooms>,
}

/// The registry's data, as a reader sees it.
#[derive(Default)]
pub(crate) struct Rooms {
    sockets: Members,
    rooms: HashMap<String, Members>,
}

impl Registry {
    pub(crate) fn read(&self) -> RwLockReadGuard<'_, Rooms> {
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Rooms> {
        self.inner.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a connected socket (in `$all` and its own room).
    pub(crate) fn add_socket(&self, socket: &Arc<SocketState>) {
        self.write().sockets.insert(socket.sid.clone(), socket.clone());
    }

    /// Removes `socket` (if it is still the one under its id) from the sockets and from
    /// `rooms`.
    pub(crate) fn remove_socket(&self, socket: &Arc<SocketState>, rooms: &[String]) -> bool {
        let mut state = self.write();
        let current = state.sockets.get(&socket.sid).is_some_and(|s| Arc::ptr_eq(s, socket));
        if current {
            state.sockets.swap_remove(&socket.sid);
        }
        for room in rooms {
            state.remove_member(room, socket);
        }
        current
    }

    /// Puts `socket` in `room`.
    pub(crate) fn add_member(&self, room: &str, socket: &Arc<SocketState>) {
        self.write().rooms.entry(room.to_owned()).or_default().insert(socket.sid.clone(), socket.clone());
    }

    /// Takes `socket` out of `room`.
    pub(crate) fn remove_member(&self, room: &str, socket: &Arc<SocketState>) {
        self.write().remove_member(room, socket);
    }

    /// The socket with this session id.
    pub(crate) fn socket(&self, sid: &str) -> Option<Arc<SocketState>> {
        self.read().sockets.get(sid).cloned()
    }

    /// Every socket.
    pub(crate) fn sockets(&self) -> Vec<Arc<SocketState>> {
        self.read().sockets.values().cloned().collect()
    }

    /// Named rooms with members on this node, with how many, by name.
    pub(crate) fn room_sizes(&self) -> Vec<(String, usize)> {
        let mut rooms: Vec<(String, usize)> =
            self.read().rooms.iter().map(|(room, members)| (room.clone(), members.len())).collect();
        rooms.sort();
        rooms
    }

    /// Named rooms with members on this node.
    pub(crate) fn room_count(&self) -> usize {
        self.read().rooms.len()
    }
}

impl Rooms {
    /// Calls `f` for each member of `room`: `$all`, `$s:SID`, or a named room.
    pub(crate) fn for_each_member<'a>(&'a self, room: &str, mut f: impl FnMut(&'a Arc<SocketState>)) {
        if room == crate::ALL_ROOM {
            self.sockets.values().for_each(f);
        } else if let Some(sid) = room.strip_prefix("$s:") {
            if let Some(s) = self.sockets.get(sid) {
                f(s);
            }
        } else if let Some(members) = self.rooms.get(room) {
            members.values().for_each(f);
        }
    }

    /// Whether `socket` is a member of `room`.
    pub(crate) fn contains(&self, room: &str, sid: &str) -> bool {
        if room == crate::ALL_ROOM {
            self.sockets.contains_key(sid)
        } else if let Some(own) = room.strip_prefix("$s:") {
            own == sid && self.sockets.contains_key(sid)
        } else {
            self.rooms.get(room).is_some_and(|m| m.contains_key(sid))
        }
    }

    fn remove_member(&mut self, room: &str, socket: &Arc<SocketState>) {
        let Some(members) = self.rooms.get_mut(room) else { return };
        if members.get(&socket.sid).is_some_and(|s| Arc::ptr_eq(s, socket)) {
            members.swap_remove(&socket.sid);
        }
        if members.is_empty() {
            self.rooms.remove(room);
        }
    }
}
