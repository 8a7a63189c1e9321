//! What crosses nodes: the [`Broker`] and [`History`] traits, the messages they carry
//! ([`Publication`], [`Entry`]) and the hub's side of the link ([`Deliver`]).
//!
//! A hub talks to other nodes only through an [`Adapter`]: a broker and a history that
//! come as a pair, sharing one store. The default is in memory
//! ([`MemoryAdapter`](crate::MemoryAdapter): one node); `zapsocket-redis` implements the
//! pair over a Redis server, so that many nodes behave as one server.
//!
//! ```text
//!  emit ─▶ Publication (encoded once) ─▶ Broker::publish ──▶ store: offsets, history, fan-out
//!                                                                        │ (every node with members)
//!  sockets ◀── one frame, queued on each ◀── Deliver::deliver ◀──────────┘
//!  $resume ─▶ History::take_session, History::replay (from any node)
//! ```
//!
//! Offsets and fan-out order are decided in one step, by the broker's `publish`: a
//! message's offsets must be given where the order in which nodes see messages is
//! decided, or two publishers could take offsets 5 and 6 and be seen as 6, 5. So the
//! broker records each publication in its history; the [`History`] trait is the reading
//! side (replay, epochs) and the sessions.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::binary::Json;
use crate::config::HubConfig;
use crate::protocol::Member;

/// A boxed future, as the adapter traits return them (they are used as trait objects).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why an adapter operation failed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AdapterError {
    /// The shared store cannot be reached, or is too far behind to take more: the
    /// operation was not done, or its outcome is unknown. Reported to clients as
    /// `unavailable`.
    Unavailable(String),
    /// What was asked for is gone: a session expired or unknown, history trimmed past the
    /// offset, or a new epoch.
    Gone(String),
    /// The session is attached to a connection on this node or another (named): it must
    /// be released before it can be resumed.
    Attached {
        /// The node that holds it.
        node: String,
    },
}

impl std::fmt::Display for AdapterError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AdapterError::Unavailable(m) => write!(f, "unavailable: {m}"),
            AdapterError::Gone(m) => write!(f, "gone: {m}"),
            AdapterError::Attached { node } => write!(f, "the session is attached on node {node}"),
        }
    }
}

impl std::error::Error for AdapterError {}

/// A room message as it crosses nodes: its target rooms, the rooms whose members must
/// not get it, and the envelope, serialized once, with the byte arrays its data holds
/// (version 2). Each node that delivers it adds the epoch and the offsets
/// ([`Publication::text`]) and encodes one frame for all its recipients (one per
/// protocol version when it has byte arrays).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Publication {
    rooms: Vec<String>,
    except: Vec<String>,
    /// `{"event":NAME,"data":DATA` — the envelope without its end.
    body: String,
    /// The byte arrays `body`'s placeholders `{"$bin": I}` point to.
    attachments: Vec<Bytes>,
}

#[derive(Serialize, Deserialize)]
struct Header {
    rooms: Vec<String>,
    #[serde(default)]
    except: Vec<String>,
    /// The lengths of the attachments, which follow the body.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    attachments: Vec<usize>,
}

impl Publication {
    /// A message `event` with `data` (JSON text) to the members of `rooms` but not those of
    /// `except`. Rooms are deduplicated, in order.
    pub fn new(rooms: Vec<String>, except: Vec<String>, event: &str, data: &str) -> Self {
        let mut unique: Vec<String> = Vec::with_capacity(rooms.len());
        for room in rooms {
            if !unique.contains(&room) {
                unique.push(room);
            }
        }
        Publication {
            rooms: unique,
            except,
            body: crate::envelope::event_body(event, data),
            attachments: Vec::new(),
        }
    }

    /// The same message with byte arrays: `data`'s placeholders `{"$bin": I}` point to
    /// `attachments[I]` (docs/PROTOCOL.md, *Version 2*).
    pub fn with_attachments(mut self, attachments: Vec<Bytes>) -> Self {
        self.attachments = attachments;
        self
    }

    /// The target rooms, in order: the offsets of [`Entry`] and [`Delivery`] follow it.
    pub fn rooms(&self) -> &[String] {
        &self.rooms
    }

    /// The rooms (`$s:SID` for a socket) whose members do not get it.
    pub fn except(&self) -> &[String] {
        &self.except
    }

    /// The byte arrays its data's placeholders point to.
    pub fn attachments(&self) -> &[Bytes] {
        &self.attachments
    }

    /// The envelope's JSON a client receives, with `epoch` and each room's offset
    /// (docs/PROTOCOL.md, *Offsets and recovery*); byte arrays are placeholders in it.
    pub fn text(&self, epoch: &str, offsets: &[u64]) -> String {
        crate::envelope::room_event_from_body(&self.body, epoch, &self.rooms, offsets)
    }

    /// The envelope with its byte arrays, ready to be framed for either version.
    pub(crate) fn envelope(&self, epoch: &str, offsets: &[u64]) -> Json {
        Json { text: self.text(epoch, offsets), bins: self.attachments.clone() }
    }

    /// The envelope of a volatile message: no epoch, no offsets (it is not recorded).
    pub fn volatile_text(&self) -> String {
        let mut text = String::with_capacity(self.body.len() + 1);
        text.push_str(&self.body);
        text.push('}');
        text
    }

    /// [`Publication::volatile_text`] with its byte arrays.
    pub(crate) fn volatile_envelope(&self) -> Json {
        Json { text: self.volatile_text(), bins: self.attachments.clone() }
    }

    /// Its size in bytes, as a queue counts it.
    pub fn len(&self) -> usize {
        self.body.len()
            + self.rooms.iter().chain(&self.except).map(|r| r.len() + 8).sum::<usize>()
            + self.attachments.iter().map(|a| a.len() + 8).sum::<usize>()
    }

    /// Whether it is empty (never: an envelope has an event).
    pub fn is_empty(&self) -> bool {
        self.body.is_empty()
    }

    /// Its wire form, for a broker to carry: a JSON header line, then the body, then
    /// the attachments (their lengths are in the header).
    pub fn to_bytes(&self) -> Vec<u8> {
        let header = Header {
            rooms: self.rooms.clone(),
            except: self.except.clone(),
            attachments: self.attachments.iter().map(Bytes::len).collect(),
        };
        let mut out = serde_json::to_vec(&header).unwrap_or_default();
        out.push(b'\n');
        out.extend_from_slice(self.body.as_bytes());
        for attachment in &self.attachments {
            out.extend_from_slice(attachment);
        }
        out
    }

    /// Reads the wire form of [`Publication::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, String> {
        let split = bytes.iter().position(|b| *b == b'\n').ok_or("no header line")?;
        let header: Header = serde_json::from_slice(&bytes[..split]).map_err(|e| format!("header: {e}"))?;
        let rest = &bytes[split + 1..];
        let attached = header.attachments.iter().try_fold(0usize, |sum, len| sum.checked_add(*len));
        let body_len = attached.and_then(|a| rest.len().checked_sub(a)).ok_or("attachments past the end")?;
        let body = std::str::from_utf8(&rest[..body_len]).map_err(|e| format!("body: {e}"))?;
        if header.rooms.is_empty() || !body.starts_with("{\"event\":") {
            return Err("not a publication".into());
        }
        let mut at = body_len;
        let attachments = header
            .attachments
            .iter()
            .map(|len| {
                at += len;
                Bytes::copy_from_slice(&rest[at - len..at])
            })
            .collect();
        Ok(Publication { rooms: header.rooms, except: header.except, body: body.to_owned(), attachments })
    }
}

/// A recorded publication, as a history replays it.
#[derive(Clone, Debug)]
pub struct Entry {
    /// Orders messages across rooms: a replay of several rooms merges by it.
    pub seq: u64,
    /// The offset in each of the publication's rooms, in the same order.
    pub offsets: Vec<u64>,
    /// The message.
    pub publication: Arc<Publication>,
}

impl Entry {
    /// Its offset in `room`, if it was sent there.
    pub fn offset_in(&self, room: &str) -> Option<u64> {
        let i = self.publication.rooms.iter().position(|r| r == room)?;
        self.offsets.get(i).copied()
    }
}

/// A session as the history keeps it, so that it can be resumed on any node: written
/// when it connects and whenever its rooms or public data change.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// The session id.
    pub id: String,
    /// Its public data.
    #[serde(default)]
    pub data: serde_json::Value,
    /// Its named rooms.
    #[serde(default)]
    pub rooms: Vec<String>,
    /// Per room (with `$all` and its own), the room's last offset when it joined: a
    /// replay starts there when the client has no offset of its own.
    #[serde(default)]
    pub joined_at: Vec<(String, u64)>,
}

impl SessionRecord {
    /// The offset `room` had when the session joined it (0 if unknown).
    pub fn joined_at(&self, room: &str) -> u64 {
        self.joined_at.iter().find(|(r, _)| r == room).map_or(0, |(_, o)| *o)
    }
}

/// A room's presence: how many members it has and, while they are at most the limit
/// asked for, who they are.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Presence {
    /// Members of the room, on every node.
    pub count: usize,
    /// Their list (empty past the limit).
    pub members: Vec<Member>,
    /// The room's last offset (for `joined_at`).
    pub offset: u64,
    /// Whether this call changed the presence (a join that added the member, a leave
    /// that removed it).
    pub changed: bool,
}

/// A live node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// Its id.
    pub id: String,
    /// Until when its lease runs, in milliseconds since the Unix epoch (store time).
    pub lease_until_ms: u64,
}

/// What the other nodes answered to a request.
#[derive(Clone, Debug, Default)]
pub struct Answers {
    /// (node, answer) for each node that answered in time.
    pub answers: Vec<(String, String)>,
    /// The live nodes that did not answer in time (or could not be asked).
    pub missing: Vec<String>,
}

/// A room message for this node's sockets, from the broker.
#[derive(Debug)]
pub struct Delivery<'a> {
    /// The message.
    pub publication: &'a Publication,
    /// The epoch it was recorded under.
    pub epoch: &'a str,
    /// Its sequence number.
    pub seq: u64,
    /// Its offset in each of its rooms.
    pub offsets: &'a [u64],
    /// For each room, whether this node had not delivered it there yet. `None`: new in
    /// every room. A room where it is not new keeps its members from getting it again.
    pub fresh: Option<&'a [bool]>,
}

/// The hub's side of the link: what a broker calls on this node.
pub trait Deliver: Send + Sync + 'static {
    /// Delivers a room message to this node's members of its rooms (each once), in the
    /// order of calls. Never blocks: each socket has a bounded queue.
    fn deliver(&self, delivery: &Delivery<'_>);

    /// Delivers a volatile message (not recorded, no offsets) to this node's members of
    /// its rooms whose send queue is empty, each once; the others do not get it.
    fn deliver_volatile(&self, publication: &Publication);

    /// Messages of `rooms` were lost for this node and cannot be replayed (a lost
    /// subscription whose gap left the history, or a new epoch): their members are told
    /// to resync (`$resync`).
    fn lost(&self, rooms: &[String], epoch: &str);

    /// A request from another node (`from`); resolves to the answer.
    fn answer(&self, from: &str, request: &str) -> BoxFuture<'static, String>;

    /// This node's sessions as they stand, to write again into a store that lost them.
    fn sessions(&self) -> Vec<SessionRecord>;
}

/// The sending side of the cross-node link: publish, membership and presence, node
/// liveness and requests between nodes.
pub trait Broker: Send + Sync + 'static {
    /// This node's id.
    fn node(&self) -> &str;

    /// Connects the broker to its hub, whose limits it follows (presence limit, recovery
    /// window); called once when the hub is built.
    fn attach(&self, hub: Weak<dyn Deliver>, config: &HubConfig);

    /// Records `publication` in the history (each room's next offset, one sequence
    /// number) and delivers it to every node with members in its rooms, in the same order
    /// everywhere. Does not wait: fails at once when the store is known to be out of
    /// reach or the queue to it is full; a failure later is counted in the metrics.
    fn publish(&self, publication: Publication) -> Result<(), AdapterError>;

    /// Delivers a volatile `publication` to every node (each calls
    /// [`Deliver::deliver_volatile`]), after this node's earlier publications: not
    /// recorded, no offsets, and lost rather than queued when the store is out of reach.
    fn publish_volatile(&self, publication: Publication) -> Result<(), AdapterError>;

    /// This node has one more member in `room` (every room, `$all` and `$s:SID` too):
    /// resolves once the node receives the room's messages. The member counts even when
    /// this fails (the store is out of reach: the room is subscribed when it is back);
    /// each call is matched by one [`Broker::unsubscribe`].
    fn subscribe<'a>(&'a self, room: &'a str) -> BoxFuture<'a, Result<(), AdapterError>>;

    /// This node has one member fewer in `room`.
    fn unsubscribe(&self, room: &str);

    /// Adds `member` to the presence of `room`; lists the members while they are at most
    /// `max_listed`.
    fn join<'a>(
        &'a self,
        room: &'a str,
        member: &'a Member,
        max_listed: usize,
    ) -> BoxFuture<'a, Result<Presence, AdapterError>>;

    /// Removes session `sid` from the presence of `room`.
    fn leave<'a>(&'a self, room: &'a str, sid: &'a str) -> BoxFuture<'a, Result<Presence, AdapterError>>;

    /// The presence of `room`.
    fn members<'a>(
        &'a self,
        room: &'a str,
        max_listed: usize,
    ) -> BoxFuture<'a, Result<Presence, AdapterError>>;

    /// The live nodes, this one included.
    fn nodes(&self) -> BoxFuture<'_, Result<Vec<NodeInfo>, AdapterError>>;

    /// Sends `request` to the other live nodes (or to `node` alone) and collects their
    /// answers until `timeout`; never waits longer, never counts a dead node.
    fn request<'a>(
        &'a self,
        node: Option<&'a str>,
        request: &'a str,
        timeout: Duration,
    ) -> BoxFuture<'a, Answers>;

    /// The broker's counters, for `/metrics`.
    fn metrics(&self) -> BrokerMetrics {
        BrokerMetrics::default()
    }
}

/// The reading side of the record: epochs, replay and sessions.
pub trait History: Send + Sync + 'static {
    /// The epoch: names the history; a new one means it started over.
    fn epoch(&self) -> Arc<str>;

    /// Up to `limit` entries of `room` after offset `after`, oldest first; `Gone` when
    /// some of them have left the window (or `after` is ahead of the room).
    fn replay<'a>(
        &'a self,
        room: &'a str,
        after: u64,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<Entry>, AdapterError>>;

    /// The last offset of each room (0 for a room without messages).
    fn last_offsets<'a>(&'a self, rooms: &'a [&'a str]) -> BoxFuture<'a, Result<Vec<u64>, AdapterError>>;

    /// Writes a connected session (at connect, join, leave, new public data) for `node`.
    fn save_session<'a>(
        &'a self,
        session: &'a SessionRecord,
        node: &'a str,
    ) -> BoxFuture<'a, Result<(), AdapterError>>;

    /// The session's connection ended: keep it resumable for `window`.
    fn detach_session<'a>(
        &'a self,
        session: &'a SessionRecord,
        window: Duration,
    ) -> BoxFuture<'a, Result<(), AdapterError>>;

    /// Attaches a detached session to `node` and returns it: `Gone` when unknown or
    /// expired, `Attached` when a connection still holds it (on a live node).
    fn take_session<'a>(
        &'a self,
        id: &'a str,
        node: &'a str,
    ) -> BoxFuture<'a, Result<SessionRecord, AdapterError>>;

    /// Forgets a session (it ended for good).
    fn drop_session<'a>(&'a self, id: &'a str) -> BoxFuture<'a, ()>;

    /// Called about once a second by each hub that uses this history, on a thread of its
    /// own (keep it short, never block on the network): forget what expired by `now`, so
    /// that a server gone quiet gives back the memory of sessions and messages past
    /// their window. The default does nothing (a store that expires its own keys, like
    /// Redis, needs nothing here).
    fn sweep(&self, now: Instant) {
        let _ = now;
    }
}

/// Counters of a broker and its link to the store.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BrokerMetrics {
    /// Publications recorded and sent.
    pub published: u64,
    /// Publications that failed or whose outcome is unknown (store out of reach, queue
    /// full, timeout).
    pub publish_failures: u64,
    /// Bytes waiting to be sent to the store now.
    pub queued_bytes: u64,
    /// Room messages received from the store.
    pub received: u64,
    /// Gaps found in what was received (a lost subscription, a dropped connection).
    pub gaps: u64,
    /// Gaps repaired from the history.
    pub repaired: u64,
    /// Gaps that could not be repaired: their rooms' members were told to resync.
    pub lost: u64,
    /// Times the link to the store was lost.
    pub disconnects: u64,
    /// Whether the store is reachable now (1) or not (0).
    pub connected: u64,
    /// Dead nodes whose members this node removed from presence.
    pub reaped_nodes: u64,
    /// How long publications took from `publish` until the store took them, per bucket
    /// of [`PUBLISH_LATENCY_BUCKETS_US`] (`[i]` counts those of at most that many
    /// microseconds and more than the bucket before; the last, the rest). Zero for a
    /// broker without a store (the memory adapter delivers at once).
    pub publish_latency: [u64; PUBLISH_LATENCY_BUCKETS_US.len() + 1],
    /// Their sum, in microseconds.
    pub publish_latency_sum_us: u64,
}

/// The upper bounds (microseconds, inclusive) of [`BrokerMetrics::publish_latency`]'s
/// buckets; a last bucket takes the slower publications.
pub const PUBLISH_LATENCY_BUCKETS_US: [u64; 8] =
    [250, 1_000, 2_500, 10_000, 25_000, 100_000, 250_000, 1_000_000];

/// A broker and its history, sharing one store: what [`HubBuilder::adapter`](crate::HubBuilder::adapter)
/// takes.
#[derive(Clone)]
pub struct Adapter {
    pub(crate) broker: Arc<dyn Broker>,
    pub(crate) history: Arc<dyn History>,
}

impl Adapter {
    /// An adapter from one value that is both (as `MemoryAdapter` and `zapsocket-redis`'s
    /// adapter are).
    pub fn new<T: Broker + History>(both: Arc<T>) -> Self {
        Adapter { broker: both.clone(), history: both }
    }

    /// An adapter from a broker and the history it records into.
    pub fn from_parts(broker: Arc<dyn Broker>, history: Arc<dyn History>) -> Self {
        Adapter { broker, history }
    }
}

impl std::fmt::Debug for Adapter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Adapter").field("node", &self.broker.node()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_publication_crosses_the_wire_unchanged() {
        let p = Publication::new(
            vec!["a\nb".into(), "c".into(), "a\nb".into()],
            vec!["$s:x".into()],
            "chat",
            r#"{"text":"hi\nthere"}"#,
        );
        assert_eq!(p.rooms(), ["a\nb", "c"], "deduplicated");
        let back = Publication::from_bytes(&p.to_bytes()).unwrap();
        assert_eq!(back, p);
        assert_eq!(
            p.text("e1", &[4, 9]),
            r#"{"event":"chat","data":{"text":"hi\nthere"},"epoch":"e1","rooms":{"a\nb":4,"c":9}}"#
        );
        assert!(Publication::from_bytes(b"{\"rooms\":[]}\n{\"event\":1").is_err());
        assert!(Publication::from_bytes(b"no newline").is_err());
        assert!(Publication::from_bytes(b"{\"rooms\":[\"a\"]}\n\xff").is_err());
    }

    #[test]
    fn a_publication_with_byte_arrays_crosses_the_wire_unchanged() {
        let bins = vec![Bytes::from_static(b"\n{\"event\":"), Bytes::new(), Bytes::from_static(&[0, 255])];
        let p = Publication::new(vec!["r".into()], vec![], "f", r#"[{"$bin":0},{"$bin":1},{"$bin":2}]"#)
            .with_attachments(bins.clone());
        let back = Publication::from_bytes(&p.to_bytes()).unwrap();
        assert_eq!((back.attachments(), &back), (&bins[..], &p));
        assert_eq!(
            p.len(),
            Publication::new(vec!["r".into()], vec![], "f", r#"[{"$bin":0},{"$bin":1},{"$bin":2}]"#).len()
                + 12
                + 3 * 8
        );
        let mut cut = p.to_bytes();
        cut.truncate(cut.iter().position(|b| *b == b'\n').unwrap() + 6);
        assert!(Publication::from_bytes(&cut).is_err(), "attachments longer than what is left");
    }
}
