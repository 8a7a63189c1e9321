//! Connection state recovery (docs/PROTOCOL.md, *Offsets and recovery*): sessions kept
//! after their connection ends, and `$resume`, which replays what a session missed.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::error::{ErrorCode, ReplyError};
use crate::hub::Hub;
use crate::presence::PresenceEvent;
use crate::socket::SocketInner;

/// Sessions whose connection ended, kept for the recovery window.
#[derive(Default)]
pub(crate) struct Detached {
    sessions: HashMap<Arc<str>, Session>,
}

struct Session {
    socket: Arc<SocketInner>,
    rooms: Vec<String>,
    at: Instant,
}

#[derive(Deserialize)]
struct ResumeRequest {
    session: String,
    epoch: String,
    #[serde(default)]
    offsets: HashMap<String, u64>,
}

/// The reply to a `$resume` that succeeded.
#[derive(Serialize)]
pub(crate) struct Resumed {
    recovered: bool,
    replayed: usize,
}

fn unavailable(message: &str) -> ReplyError {
    ReplyError::new(ErrorCode::RECOVERY_UNAVAILABLE, format!("{message}: resync"))
}

impl Hub {
    /// Keeps a disconnected session (its data and rooms) for the recovery window.
    pub(crate) fn detach(&self, socket: Arc<SocketInner>, rooms: Vec<String>) {
        let config = self.config();
        if config.recovery_window.is_zero() || config.max_detached_sessions == 0 {
            return;
        }
        let mut detached = self.inner.detached.lock().unwrap_or_else(|p| p.into_inner());
        let window = config.recovery_window;
        detached.sessions.retain(|_, s| s.at.elapsed() <= window);
        if detached.sessions.len() >= config.max_detached_sessions {
            let oldest = detached.sessions.iter().min_by_key(|(_, s)| s.at).map(|(sid, _)| sid.clone());
            if let Some(sid) = oldest {
                detached.sessions.remove(&sid);
            }
        }
        let sid = socket.sid.clone();
        detached.sessions.insert(sid, Session { socket, rooms, at: Instant::now() });
    }

    /// Resumes a session on the connection of `current`: replays what the session's
    /// rooms recorded after the client's offsets, in order and once each, then makes
    /// the connection that session again (rooms, data). Returns the socket that takes
    /// over and the reply.
    pub(crate) fn resume(
        &self,
        current: &Arc<SocketInner>,
        data: &str,
    ) -> Result<(Arc<SocketInner>, Resumed), ReplyError> {
        let request: ResumeRequest =
            serde_json::from_str(data).map_err(|e| ReplyError::bad_payload(e.to_string()))?;
        if request.epoch != self.epoch() {
            return Err(unavailable("the history epoch changed"));
        }
        if !current.rooms.lock().unwrap_or_else(|p| p.into_inner()).is_empty() {
            return Err(unavailable("$resume must come before any $join"));
        }
        let session = self.take_session(&request.session)?;
        let socket = Arc::new(SocketInner::resumed(&session.socket, current.sender.clone()));
        let replayed = {
            let _order = self.inner.order.lock().unwrap_or_else(|p| p.into_inner());
            let replayed = self.replay(&socket, &session.rooms, &request.offsets)?;
            self.reattach(current, &socket, &session.rooms);
            replayed
        };
        self.announce_return(&socket, &session.rooms);
        Ok((socket, Resumed { recovered: true, replayed }))
    }

    fn take_session(&self, sid: &str) -> Result<Session, ReplyError> {
        let mut detached = self.inner.detached.lock().unwrap_or_else(|p| p.into_inner());
        let session =
            detached.sessions.remove(sid).ok_or_else(|| unavailable("unknown or expired session"))?;
        if session.at.elapsed() > self.config().recovery_window {
            return Err(unavailable("the recovery window has passed"));
        }
        Ok(session)
    }

    /// Sends every recorded message of the session's rooms after the offsets it has
    /// (or after the offset at which it joined), merged in send order, each once.
    /// Called under the order lock, so no live message can come in between.
    fn replay(
        &self,
        socket: &SocketInner,
        rooms: &[String],
        offsets: &HashMap<String, u64>,
    ) -> Result<usize, ReplyError> {
        let joined_at = socket.joined_at.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let all = [crate::ALL_ROOM.to_owned(), socket.room.clone()];
        let mut entries = Vec::new();
        for room in all.iter().chain(rooms) {
            let after =
                offsets.get(room).copied().unwrap_or(0).max(joined_at.get(room).copied().unwrap_or(0));
            let found = self.inner.adapter.replay(room, after).map_err(|_| {
                unavailable(&format!("room {room:?} has no history after offset {after} any more"))
            })?;
            entries.extend(found.into_iter().map(|(_, recorded)| recorded));
        }
        entries.sort_by_key(|r| r.seq);
        entries.dedup_by_key(|r| r.seq);
        let excepted = |e: &String| *e == socket.room || e == crate::ALL_ROOM || rooms.contains(e);
        entries.retain(|r| !r.except.iter().any(excepted));
        for recorded in &entries {
            let queued = socket.sender.send_encoded(&recorded.frame).unwrap_or(false);
            self.inner.counters.sent(u64::from(queued), recorded.frame.len(), u64::from(!queued));
        }
        Ok(entries.len())
    }

    /// Puts the resumed socket in place of the connection's fresh one, in its rooms.
    fn reattach(&self, current: &SocketInner, socket: &Arc<SocketInner>, rooms: &[String]) {
        let mut state = self.write_state();
        state.sockets.remove(&current.sid);
        state.sockets.insert(socket.sid.clone(), socket.clone());
        for room in rooms {
            state.rooms.entry(room.clone()).or_default().insert(socket.sid.clone(), socket.clone());
        }
        *socket.rooms.lock().unwrap_or_else(|p| p.into_inner()) =
            rooms.iter().cloned().collect::<BTreeSet<_>>();
    }

    /// `$joined` to the rooms within the presence limit (they heard `$left` when the
    /// connection ended).
    fn announce_return(&self, socket: &SocketInner, rooms: &[String]) {
        for room in rooms {
            let count = self.read_state().rooms.get(room).map_or(0, |m| m.len());
            if count <= self.config().max_presence {
                let event = PresenceEvent { room: room.clone(), member: socket.member() };
                self.emit_reserved(&[room.as_str()], &[socket.room.as_str()], "$joined", &event);
            }
        }
    }
}
