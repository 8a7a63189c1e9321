//! Connection state recovery (docs/PROTOCOL.md, *Offsets and recovery*): a session kept
//! after its connection ends, and `$resume`, which replays what it missed from the
//! history (any node's: the history is the adapter's), then goes live.
//!
//! The switch from replay to live messages is exact without any lock held across it:
//! the resumed socket joins its rooms first and *holds* the room messages it gets
//! (bounded), the history is read after that, and the held messages follow the replay,
//! each skipped when the replay (or the client) already had it — offsets say so.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::broker::{AdapterError, Entry, SessionRecord};
use crate::core::Core;
use crate::error::{ErrorCode, ReplyError};
use crate::protocol::PresenceEvent;
use crate::state::SocketState;

/// Entries read per room and request.
const PAGE: usize = 256;
/// How long a replay keeps catching up with messages that arrive meanwhile (reading the
/// history again when more arrived than could be held); then the last held ones are
/// queued at once and the socket goes live, or, when some were dropped, the resume fails
/// (`recovery_unavailable`). Under the clients' 10 s ack timeout.
const CATCH_UP: Duration = Duration::from_secs(5);

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

fn unavailable(message: impl std::fmt::Display) -> ReplyError {
    ReplyError::new(ErrorCode::RECOVERY_UNAVAILABLE, format!("{message}: resync"))
}

impl Core {
    /// Keeps a disconnected session resumable for the recovery window.
    pub(crate) async fn detach(&self, socket: &SocketState, record: SessionRecord) {
        let window = self.config.recovery_window;
        if window.is_zero() || self.config.max_detached_sessions == 0 {
            self.history.drop_session(&record.id).await;
            return;
        }
        self.park(socket);
        if let Err(error) = self.history.detach_session(&record, window).await {
            tracing::debug!(session = %record.id, %error, "session not detached");
        }
    }

    /// Keeps the socket's private data for the window (it cannot leave this node).
    fn park(&self, socket: &SocketState) {
        let private = socket.take_private();
        let mut parked = self.parked.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        parked.expire(now);
        if private.is_empty() {
            return;
        }
        parked.remove(&*socket.sid);
        while parked.len() >= self.config.max_detached_sessions.max(1) {
            // The oldest is forgotten.
            parked.remove_soonest();
        }
        parked.insert(socket.sid.clone(), private, Some(now + self.config.recovery_window));
    }

    /// Resumes a session on the connection of `current`: replays what the session's
    /// rooms recorded after the client's offsets, in order and once each, then makes the
    /// connection that session (rooms, data). Returns the socket that takes over.
    pub(crate) async fn resume(
        &self,
        current: &Arc<SocketState>,
        data: &str,
    ) -> Result<(Arc<SocketState>, Resumed), ReplyError> {
        let request: ResumeRequest =
            serde_json::from_str(data).map_err(|e| ReplyError::bad_payload(e.to_string()))?;
        if self.config.recovery_window.is_zero() {
            return Err(unavailable("recovery is off on this server"));
        }
        if *request.epoch != *self.epoch() {
            return Err(unavailable("the history epoch changed"));
        }
        if !current.rooms().is_empty() {
            return Err(unavailable("$resume must come before any $join"));
        }
        if *request.session == *current.sid {
            return Err(unavailable("this connection is that session already"));
        }
        let record = self.take_session(&request.session).await?;
        let socket = Arc::new(SocketState::with_sid(
            record.id.as_str().into(),
            current.sender.clone(),
            current.binary,
        ));
        socket.restore(&record);
        if let Some(private) =
            self.parked.lock().unwrap_or_else(|p| p.into_inner()).remove(record.id.as_str())
        {
            socket.put_private(private);
        }
        socket.hold();
        let attached = self.attach_resumed(current, &socket, &record.rooms).await;
        let replayed = match attached {
            Ok(()) => self.replay(&socket, &record, &request.offsets).await,
            Err(error) => Err(error),
        };
        let replayed = match replayed {
            Ok(replayed) => replayed,
            Err(error) => {
                self.detach_resumed(current, &socket, &record).await;
                return Err(error);
            }
        };
        self.announce_return(&socket, &record.rooms).await;
        self.save_session(&socket).await;
        self.history.drop_session(&current.sid).await;
        self.counters.resumed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok((socket, Resumed { recovered: true, replayed }))
    }

    /// Takes the session from the history, first releasing it where a connection still
    /// holds it: here (that connection is ended), or on another node (asked to end it;
    /// a node that does not answer is dead, and its lease runs out within the bound).
    async fn take_session(&self, sid: &str) -> Result<SessionRecord, ReplyError> {
        let node = self.broker.node().to_owned();
        let deadline = Instant::now() + self.config.takeover_timeout;
        loop {
            let holder = match self.history.take_session(sid, &node).await {
                Ok(record) => return Ok(record),
                Err(AdapterError::Attached { node }) => node,
                Err(AdapterError::Gone(m)) => return Err(unavailable(m)),
                Err(AdapterError::Unavailable(m)) => {
                    return Err(unavailable(format!("history unavailable: {m}")));
                }
            };
            if Instant::now() >= deadline {
                return Err(unavailable(format!("the session is still held on node {holder}")));
            }
            if holder == node {
                if let Some(old) = self.registry.socket(sid) {
                    old.sender.terminate();
                }
            } else {
                let release = crate::cluster::release_request(sid);
                let timeout = Duration::from_secs(1).min(self.config.takeover_timeout);
                self.broker.request(Some(&holder), &release, timeout).await;
            }
            zapsocket::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Puts the resumed socket in place of the connection's fresh one, in its rooms.
    async fn attach_resumed(
        &self,
        current: &Arc<SocketState>,
        socket: &Arc<SocketState>,
        rooms: &[String],
    ) -> Result<(), ReplyError> {
        if self.registry.remove_socket(current, &[]) {
            self.broker.unsubscribe(crate::ALL_ROOM);
            self.broker.unsubscribe(&current.room);
        }
        self.registry.add_socket(socket);
        // Every room counts, even when subscribing fails: undoing unsubscribes them all.
        let mut failed = None;
        for room in [crate::ALL_ROOM, &*socket.room].into_iter().chain(rooms.iter().map(String::as_str)) {
            if let Err(error) = self.broker.subscribe(room).await {
                failed.get_or_insert(error);
            }
            if !room.starts_with('$') {
                self.registry.add_member(room, socket);
            }
        }
        failed.map_or(Ok(()), |e| Err(unavailable(e)))
    }

    /// Undoes [`Core::attach_resumed`] after a failed resume: the connection is its
    /// fresh session again, and the resumed one is detached as it was.
    async fn detach_resumed(
        &self,
        current: &Arc<SocketState>,
        socket: &Arc<SocketState>,
        record: &SessionRecord,
    ) {
        let rooms = socket.take_rooms();
        self.registry.remove_socket(socket, &rooms);
        for room in [crate::ALL_ROOM, &*socket.room].into_iter().chain(rooms.iter().map(String::as_str)) {
            self.broker.unsubscribe(room);
        }
        socket.release_held(|_| false);
        self.registry.add_socket(current);
        // As at connect: a failure leaves the interest; the next link subscribes.
        let _ = self.broker.subscribe(crate::ALL_ROOM).await;
        let _ = self.broker.subscribe(&current.room).await;
        if let Err(error) = self.history.detach_session(record, self.config.recovery_window).await {
            tracing::debug!(session = %record.id, %error, "session not detached again");
        }
    }

    /// Sends what the session missed: the history after the client's offsets (or where
    /// the session joined), merged across rooms in send order, each once, waiting for room
    /// in the send queue as it goes; then the messages held meanwhile. Returns how many.
    async fn replay(
        &self,
        socket: &SocketState,
        record: &SessionRecord,
        offsets: &HashMap<String, u64>,
    ) -> Result<usize, ReplyError> {
        let rooms: Vec<String> = [crate::ALL_ROOM.to_owned(), socket.room.to_string()]
            .into_iter()
            .chain(record.rooms.iter().cloned())
            .collect();
        let mut cursor = Cursor::new(&rooms, offsets, record);
        let mut sent = 0;
        let deadline = Instant::now() + CATCH_UP;
        loop {
            sent += self.replay_history(socket, &rooms, &mut cursor).await?;
            loop {
                if Instant::now() >= deadline {
                    // Still arriving: the last held ones go at once, and the socket is live.
                    return match socket.release_held(|m| cursor.fresh(&m.offsets)) {
                        true => Ok(sent),
                        false => Err(unavailable("too many messages arrived during the replay")),
                    };
                }
                let Some(held) = socket.take_held() else { return Ok(sent) };
                if held.overflowed {
                    break; // some were dropped: they are in the history, read it again
                }
                for message in &held.messages {
                    if cursor.take(&message.offsets) {
                        socket.sender.queue_encoded(&message.frame).await.map_err(unavailable)?;
                        sent += 1;
                    }
                }
            }
        }
    }

    /// Sends the history after the cursor until it is caught up.
    async fn replay_history(
        &self,
        socket: &SocketState,
        rooms: &[String],
        cursor: &mut Cursor,
    ) -> Result<usize, ReplyError> {
        let epoch = self.epoch();
        let mut sent = 0;
        loop {
            let mut entries: Vec<Entry> = Vec::new();
            let mut horizon = u64::MAX;
            for room in rooms {
                let after = cursor.start(room);
                let page = self.history.replay(room, after, PAGE).await.map_err(|e| match e {
                    AdapterError::Gone(_) => {
                        unavailable(format!("room {room:?} has no history after offset {after} any more"))
                    }
                    other => unavailable(other),
                })?;
                if page.len() >= PAGE {
                    horizon = horizon.min(page.last().map_or(u64::MAX, |e| e.seq));
                }
                entries.extend(page);
            }
            if entries.is_empty() {
                return Ok(sent);
            }
            entries.sort_by_key(|e| e.seq);
            entries.dedup_by_key(|e| e.seq);
            for entry in entries.iter().filter(|e| e.seq <= horizon) {
                let offsets: Vec<(String, u64)> =
                    entry.publication.rooms().iter().cloned().zip(entry.offsets.iter().copied()).collect();
                let excepted = entry.publication.except().iter().any(|e| rooms.contains(e));
                if cursor.take(&offsets) && !excepted {
                    let envelope = entry.publication.envelope(&epoch, &entry.offsets);
                    let frame = zapsocket::encode(envelope.into_message(socket.binary));
                    socket.sender.queue_encoded(&frame).await.map_err(unavailable)?;
                    sent += 1;
                }
            }
        }
    }

    /// `$joined` to the rooms where the session was not a member any more (they heard
    /// `$left` when its connection ended), within the presence limit.
    async fn announce_return(&self, socket: &SocketState, rooms: &[String]) {
        let member = socket.member();
        for room in rooms {
            match self.broker.join(room, &member, self.config.max_presence).await {
                Ok(presence) if presence.changed && presence.count <= self.config.max_presence => {
                    let event = PresenceEvent { room: room.clone(), member: member.clone() };
                    self.publish_reserved(room, &socket.room, "$joined", &event);
                }
                Ok(_) => {}
                Err(error) => tracing::debug!(%room, %error, "presence not restored"),
            }
        }
    }
}

/// Where a replay stands in each of the session's rooms: what the client saw, and
/// where the replay starts (after what it saw, never before the session joined).
struct Cursor {
    seen: HashMap<String, u64>,
    start: HashMap<String, u64>,
}

impl Cursor {
    fn new(rooms: &[String], offsets: &HashMap<String, u64>, record: &SessionRecord) -> Self {
        let seen: HashMap<String, u64> =
            rooms.iter().map(|r| (r.clone(), offsets.get(r).copied().unwrap_or(0))).collect();
        let start = rooms.iter().map(|r| (r.clone(), seen[r].max(record.joined_at(r)))).collect();
        Cursor { seen, start }
    }

    fn start(&self, room: &str) -> u64 {
        self.start.get(room).copied().unwrap_or(0)
    }

    /// Whether a message with these offsets is one the session has not had: new in one of
    /// its rooms and seen in none.
    fn fresh(&self, offsets: &[(String, u64)]) -> bool {
        let mut new = false;
        for (room, offset) in offsets {
            if self.seen.get(room).is_some_and(|seen| seen >= offset) {
                return false;
            }
            if self.start.get(room).is_some_and(|start| offset > start) {
                new = true;
            }
        }
        new
    }

    /// [`Cursor::fresh`]; either way the replay moves past it.
    fn take(&mut self, offsets: &[(String, u64)]) -> bool {
        let fresh = self.fresh(offsets);
        for (room, offset) in offsets {
            if let Some(start) = self.start.get_mut(room) {
                *start = (*start).max(*offset);
            }
            if let (true, Some(seen)) = (fresh, self.seen.get_mut(room)) {
                *seen = (*seen).max(*offset);
            }
        }
        fresh
    }
}
