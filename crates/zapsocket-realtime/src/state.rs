//! One connection's state, as the hub's parts share it: its session id, sender, data,
//! rooms, pending requests, and whether room messages go out at once or wait for a
//! replay to finish (recovery).
//!
//! Locks: `public` and `inner` are each taken alone, never while holding the other.

use std::any::{Any, TypeId};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use tokio::sync::oneshot;
use zapsocket::EncodedFrame;

use crate::broker::SessionRecord;
use crate::error::{ErrorCode, ReplyError};
use crate::handler::Reply;
use crate::protocol::Member;
use crate::sender::{Deliveries, Sender};

/// How many unknown event names a socket is warned about once each; past it, each
/// unknown event gets its `$error` (the set stays bounded, nothing is silent).
const MAX_WARNED: usize = 64;

/// Bytes counted per buffered message besides its frame (the entry and its offsets).
const BUFFERED_OVERHEAD: usize = 96;

/// One connected socket.
#[repr(C)] // What a room's delivery reads first: with the `Arc`'s counts, one cache line.
pub(crate) struct SocketState {
    pub(crate) sid: Arc<str>,
    pub(crate) sender: Sender,
    /// Set while a replay runs: room messages then wait in `Inner::held`.
    holding: AtomicBool,
    /// It speaks version 2 (`zap.v2`): byte arrays go to it in binary frames.
    pub(crate) binary: bool,
    /// `$s:SID`.
    pub(crate) room: Box<str>,
    /// Its public data: mostly sent (presence, session records), and a one-key object
    /// as a `Value` is a 600-byte map node kept by every socket.
    public: RwLock<Public>,
    inner: Mutex<Inner>,
    next_ack: AtomicU64,
    /// Held by room operations (join, leave, the final leave at disconnect), so that one
    /// socket's rooms change one operation at a time; `true` once it disconnected.
    pub(crate) ops: tokio::sync::Mutex<bool>,
}

/// A socket's public data: as JSON text when it reads back the same, else as it was given.
#[derive(Debug)]
enum Public {
    Text(Box<str>),
    Value(serde_json::Value),
}

impl Public {
    fn new(data: serde_json::Value) -> Public {
        let text = data.to_string();
        // As text only when it reads back the same (not data nested past serde_json's
        // recursion limit, nor a float that does not round-trip).
        match serde_json::from_str::<serde_json::Value>(&text) {
            Ok(back) if back == data => Public::Text(text.into_boxed_str()),
            _ => Public::Value(data),
        }
    }

    fn get(&self) -> serde_json::Value {
        match self {
            // Checked to parse back to the same value when it was set.
            Public::Text(text) => serde_json::from_str(text).unwrap_or_default(),
            Public::Value(value) => value.clone(),
        }
    }
}

/// Private per-socket data, one value per type.
pub(crate) type Private = HashMap<TypeId, Box<dyn Any + Send + Sync>>;

#[derive(Default)]
struct Inner {
    private: Private,
    /// The named rooms it joined.
    rooms: BTreeSet<String>,
    /// Per named room, the room's last offset when it joined.
    joined_at: HashMap<String, u64>,
    /// The same for `$all` and its own room, which every socket has (0: unknown).
    all_at: u64,
    own_at: u64,
    pending: HashMap<u64, oneshot::Sender<Reply>>,
    /// The unknown event names it was warned about; made at the first. Boxed: an empty
    /// set is 48 bytes inline in every socket's state, a `None` is 8.
    #[allow(clippy::box_collection)]
    warned: Option<Box<HashSet<String>>>,
    held: Held,
}

/// Room messages that arrived during a replay, sent after it.
#[derive(Default)]
pub(crate) struct Held {
    pub(crate) messages: Vec<HeldMessage>,
    bytes: usize,
    /// More arrived than the limit allowed: they were dropped, and the replay must read
    /// the history again from where it got to.
    pub(crate) overflowed: bool,
}

/// A room message held during a replay.
pub(crate) struct HeldMessage {
    /// (room, offset) for its rooms.
    pub(crate) offsets: Vec<(String, u64)>,
    pub(crate) frame: EncodedFrame,
}

impl SocketState {
    pub(crate) fn new(sender: Sender, binary: bool) -> Self {
        Self::with_sid(crate::random_id("s").into(), sender, binary)
    }

    pub(crate) fn with_sid(sid: Arc<str>, sender: Sender, binary: bool) -> Self {
        SocketState {
            binary,
            room: format!("$s:{sid}").into_boxed_str(),
            sid,
            sender,
            public: RwLock::new(Public::Text("null".into())),
            holding: AtomicBool::new(false),
            inner: Mutex::new(Inner::default()),
            next_ack: AtomicU64::new(1),
            ops: tokio::sync::Mutex::new(false),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn public(&self) -> serde_json::Value {
        self.public.read().unwrap_or_else(|p| p.into_inner()).get()
    }

    pub(crate) fn set_public(&self, data: serde_json::Value) {
        *self.public.write().unwrap_or_else(|p| p.into_inner()) = Public::new(data);
    }

    pub(crate) fn member(&self) -> Member {
        Member { id: self.sid.to_string(), data: self.public() }
    }

    pub(crate) fn private<T: Clone + 'static>(&self) -> Option<T> {
        self.lock().private.get(&TypeId::of::<T>()).and_then(|v| v.downcast_ref::<T>()).cloned()
    }

    pub(crate) fn set_private<T: Send + Sync + 'static>(&self, value: T) {
        self.lock().private.insert(TypeId::of::<T>(), Box::new(value));
    }

    /// Takes the private data out (the session is parked for recovery).
    pub(crate) fn take_private(&self) -> Private {
        std::mem::take(&mut self.lock().private)
    }

    /// Puts back the private data of a resumed session.
    pub(crate) fn put_private(&self, private: Private) {
        self.lock().private.extend(private);
    }

    pub(crate) fn rooms(&self) -> Vec<String> {
        self.lock().rooms.iter().cloned().collect()
    }

    pub(crate) fn in_room(&self, room: &str) -> bool {
        self.lock().rooms.contains(room)
    }

    /// Adds a named room; false when already in it. Fails past `max` rooms.
    pub(crate) fn add_room(&self, room: &str, max: usize) -> Result<bool, ReplyError> {
        let mut inner = self.lock();
        if inner.rooms.contains(room) {
            return Ok(false);
        }
        if inner.rooms.len() >= max {
            return Err(ReplyError::new(ErrorCode::LIMIT, format!("already in {max} rooms")));
        }
        inner.rooms.insert(room.to_owned());
        Ok(true)
    }

    pub(crate) fn remove_room(&self, room: &str) -> bool {
        let mut inner = self.lock();
        inner.joined_at.remove(room);
        inner.rooms.remove(room)
    }

    /// Takes every named room (the socket is leaving them all).
    pub(crate) fn take_rooms(&self) -> Vec<String> {
        std::mem::take(&mut self.lock().rooms).into_iter().collect()
    }

    pub(crate) fn set_joined_at(&self, room: &str, offset: u64) {
        let mut inner = self.lock();
        if room == crate::ALL_ROOM {
            inner.all_at = offset;
        } else if room == &*self.room {
            inner.own_at = offset;
        } else {
            inner.joined_at.insert(room.to_owned(), offset);
        }
    }

    /// The session as the history keeps it.
    pub(crate) fn record(&self) -> SessionRecord {
        let data = self.public();
        let inner = self.lock();
        SessionRecord {
            id: self.sid.to_string(),
            data,
            rooms: inner.rooms.iter().cloned().collect(),
            joined_at: [(crate::ALL_ROOM, inner.all_at), (&*self.room, inner.own_at)]
                .into_iter()
                .filter(|(_, offset)| *offset > 0)
                .map(|(room, offset)| (room.to_owned(), offset))
                .chain(inner.joined_at.iter().map(|(r, o)| (r.clone(), *o)))
                .collect(),
        }
    }

    /// Takes the rooms and offsets of a resumed session.
    pub(crate) fn restore(&self, record: &SessionRecord) {
        self.set_public(record.data.clone());
        let mut inner = self.lock();
        inner.rooms = record.rooms.iter().cloned().collect();
        inner.joined_at.clear();
        drop(inner);
        for (room, offset) in &record.joined_at {
            self.set_joined_at(room, *offset);
        }
    }

    /// Registers a request to the client; fails past `max` pending.
    pub(crate) fn add_pending(&self, max: usize) -> Result<(u64, oneshot::Receiver<Reply>), ReplyError> {
        let mut inner = self.lock();
        if inner.pending.len() >= max {
            return Err(ReplyError::new(ErrorCode::LIMIT, format!("{max} acks already pending")));
        }
        let id = self.next_ack.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        inner.pending.insert(id, tx);
        Ok((id, rx))
    }

    pub(crate) fn forget_pending(&self, id: u64) {
        self.lock().pending.remove(&id);
    }

    /// Resolves a pending request with the client's reply; a late or unknown reply is
    /// ignored (docs/PROTOCOL.md, *Envelopes*).
    pub(crate) fn resolve(&self, id: u64, reply: Reply) {
        if let Some(tx) = self.lock().pending.remove(&id) {
            let _ = tx.send(reply);
        }
    }

    /// Fails every pending request: the connection is gone.
    pub(crate) fn fail_pending(&self) {
        for (_, tx) in self.lock().pending.drain() {
            let _ = tx.send(Err(ReplyError::new(ErrorCode::DISCONNECTED, "the connection closed")));
        }
    }

    /// Whether an unknown event name should get its `$error` (once per name).
    pub(crate) fn warn_unknown(&self, name: &str) -> bool {
        let mut inner = self.lock();
        let warned = inner.warned.get_or_insert_default();
        if warned.contains(name) {
            return false;
        }
        if warned.len() < MAX_WARNED {
            warned.insert(name.to_owned());
        }
        true
    }

    /// Queues a room message, or holds it while a replay runs. Returns whether it was
    /// queued (or held).
    pub(crate) fn deliver(
        &self,
        frame: &EncodedFrame,
        held: &dyn Fn() -> HeldMessage,
        max: usize,
        out: &mut Deliveries,
    ) -> bool {
        if self.holding.load(Ordering::Acquire) {
            let mut inner = self.lock();
            if self.holding.load(Ordering::Acquire) {
                inner.held.push(held(), max);
                return true;
            }
        }
        out.send(&self.sender, frame)
    }

    /// Queues a volatile message when nothing waits in the send queue and no replay
    /// runs; returns whether it did.
    pub(crate) fn deliver_volatile(&self, frame: &EncodedFrame, out: &mut Deliveries) -> bool {
        if self.holding.load(Ordering::Acquire) || self.sender.buffered_amount() > 0 {
            return false;
        }
        out.send(&self.sender, frame)
    }

    /// From now on room messages are held (a replay starts).
    pub(crate) fn hold(&self) {
        let _guard = self.lock();
        self.holding.store(true, Ordering::Release);
    }

    /// Takes what was held; when nothing was, room messages go out at once again
    /// (`None`). The lock makes the switch exact: a message is either in what was
    /// taken or queued after it.
    pub(crate) fn take_held(&self) -> Option<Held> {
        let mut inner = self.lock();
        if inner.held.messages.is_empty() && !inner.held.overflowed {
            self.holding.store(false, Ordering::Release);
            return None;
        }
        Some(std::mem::take(&mut inner.held))
    }

    /// Queues what was held for which `keep` is true, without waiting (the send queue's
    /// slow-consumer policy applies), and goes back to queuing room messages at once.
    /// Returns whether nothing was dropped on the way (no overflow).
    pub(crate) fn release_held(&self, keep: impl Fn(&HeldMessage) -> bool) -> bool {
        let mut inner = self.lock();
        let held = std::mem::take(&mut inner.held);
        for message in held.messages.iter().filter(|m| keep(m)) {
            let _ = self.sender.send_encoded(&message.frame);
        }
        self.holding.store(false, Ordering::Release);
        !held.overflowed
    }
}

impl Held {
    fn push(&mut self, message: HeldMessage, max: usize) {
        if self.overflowed {
            return;
        }
        let cost = message.frame.len() + BUFFERED_OVERHEAD + message.offsets.len() * 32;
        if self.bytes + cost > max {
            self.messages = Vec::new();
            self.bytes = 0;
            self.overflowed = true;
            return;
        }
        self.bytes += cost;
        self.messages.push(message);
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::Public;

    #[test]
    fn public_data_reads_back_as_it_was_set() {
        let name = json!({ "name": "ada", "score": 0.1, "tags": ["a", "b"] });
        let stored = Public::new(name.clone());
        assert!(matches!(stored, Public::Text(_)), "{stored:?}");
        assert_eq!(stored.get(), name);
        // Deeper than serde_json parses back: kept as given, not turned into null.
        let mut deep = json!(1);
        for _ in 0..200 {
            deep = Value::Array(vec![deep]);
        }
        let stored = Public::new(deep.clone());
        assert!(matches!(stored, Public::Value(_)));
        assert_eq!(stored.get(), deep);
    }
}
