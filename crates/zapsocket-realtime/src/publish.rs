//! Room messages: a [`Publication`] serialized once and handed to the broker (which
//! gives offsets and decides the order), and the way back: what the broker delivers to
//! this node, encoded once into one frame that every local recipient shares.

use std::collections::HashSet;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, OnceLock};

use serde::Serialize;
use zapsocket::EncodedFrame;

use crate::binary::Json;
use crate::broker::{AdapterError, Delivery, Publication};
use crate::core::Core;
use crate::envelope;
use crate::error::ReplyError;
use crate::protocol::Resync;
use crate::registry::Rooms;
use crate::sender::Deliveries;
use crate::state::{HeldMessage, SocketState};

/// An adapter error as clients see it.
pub(crate) fn reply_error(error: AdapterError) -> ReplyError {
    match error {
        AdapterError::Unavailable(m) => ReplyError::unavailable(m),
        AdapterError::Gone(m) => ReplyError::new(crate::ErrorCode::RECOVERY_UNAVAILABLE, m),
        AdapterError::Attached { node } => {
            ReplyError::unavailable(format!("the session is still attached on node {node}"))
        }
    }
}

impl Core {
    /// Publishes `event` with `data` (JSON and byte arrays) to `rooms`, not to the
    /// members of `except`.
    pub(crate) fn publish(
        &self,
        rooms: Vec<String>,
        except: Vec<String>,
        event: &str,
        data: Json,
    ) -> Result<(), ReplyError> {
        let publication = Publication::new(rooms, except, event, &data.text).with_attachments(data.bins);
        self.broker.publish(publication).map_err(reply_error)?;
        self.counters.broadcasts.fetch_add(1, Relaxed);
        Ok(())
    }

    /// Publishes a volatile `event` (see [`crate::Operator::volatile`]): never an error
    /// for a broker that cannot take it (counted as dropped).
    pub(crate) fn publish_volatile(&self, rooms: Vec<String>, except: Vec<String>, event: &str, data: Json) {
        let publication = Publication::new(rooms, except, event, &data.text).with_attachments(data.bins);
        match self.broker.publish_volatile(publication) {
            Ok(()) => _ = self.counters.broadcasts.fetch_add(1, Relaxed),
            Err(error) => {
                tracing::debug!(%event, %error, "volatile message dropped");
                self.counters.volatile_dropped.fetch_add(1, Relaxed);
            }
        }
    }

    /// Queues a volatile message on this node's members of its rooms, each once, when
    /// their send queue is empty; the others do not get it (counted).
    pub(crate) fn deliver_volatile(&self, publication: &Publication) {
        let (frames, len) = Frames::new(publication.volatile_envelope());
        let (queued, dropped) =
            self.fan_out(publication.rooms(), publication.except(), None, |socket, out| {
                socket.deliver_volatile(frames.get(socket.binary), out)
            });
        self.counters.sent(queued, len, 0);
        self.counters.volatile_dropped.fetch_add(dropped, Relaxed);
    }

    /// Publishes a protocol event (`$joined`, `$left`); a failure is only logged (the
    /// broker counts it).
    pub(crate) fn publish_reserved<T: Serialize>(&self, room: &str, except: &str, event: &str, data: &T) {
        let data = Json::plain(envelope::to_json(data));
        let result = self.publish(vec![room.to_owned()], vec![except.to_owned()], event, data);
        if let Err(error) = result {
            tracing::debug!(%room, %event, %error, "not published");
        }
    }

    /// Queues a delivered room message on this node's members of its rooms, each once.
    pub(crate) fn deliver(&self, d: &Delivery<'_>) {
        let rooms = d.publication.rooms();
        let (frames, len) = Frames::new(d.publication.envelope(d.epoch, d.offsets));
        let max_held = self.config.max_resume_buffer;
        let (queued, dropped) = self.fan_out(rooms, d.publication.except(), d.fresh, |socket, out| {
            let frame = frames.get(socket.binary);
            let held = || HeldMessage {
                offsets: rooms.iter().cloned().zip(d.offsets.iter().copied()).collect(),
                frame: frame.clone(),
            };
            socket.deliver(frame, &held, max_held, out)
        });
        self.counters.sent(queued, len, dropped);
    }

    /// Calls `deliver` for each of this node's members of `rooms`, each once, leaving
    /// out the members of `except` and of the rooms that `fresh` marks as delivered
    /// already; returns how many it queued and dropped (`deliver` says which, and a
    /// loop's full inbox may refuse some of what it gathered).
    ///
    /// What `deliver` gathers is posted before the registry's lock is released: a
    /// socket leaving a room (which takes the lock to write) then has its answer queued
    /// after the room's messages it was still sent, as on `Server`, where each is queued
    /// during the walk.
    fn fan_out(
        &self,
        rooms: &[String],
        except: &[String],
        fresh: Option<&[bool]>,
        mut deliver: impl FnMut(&SocketState, &mut Deliveries) -> bool,
    ) -> (u64, u64) {
        let registry = self.registry.read();
        let Some(skip) = Skip::new(except, rooms, fresh) else { return (0, 0) };
        let mut seen: HashSet<*const SocketState> = HashSet::new();
        let dedupe = rooms.len() > 1;
        let (mut queued, mut dropped) = (0u64, 0u64);
        let mut out = Deliveries::default();
        for (i, room) in rooms.iter().enumerate() {
            if fresh.is_some_and(|fresh| !fresh.get(i).copied().unwrap_or(true)) {
                continue;
            }
            registry.for_each_member(room, |socket| {
                if skip.skips(&registry, socket) || (dedupe && !seen.insert(Arc::as_ptr(socket))) {
                    return;
                }
                if deliver(socket, &mut out) {
                    queued += 1;
                } else {
                    dropped += 1;
                }
            });
        }
        // Counted as queued when gathered: at most `queued`.
        let refused = out.post();
        drop(registry);
        (queued - refused, dropped + refused)
    }

    /// Tells the members of `rooms` that messages of those rooms were lost for them
    /// (`$resync`, docs/PROTOCOL.md): each gets the lost rooms it is in.
    pub(crate) fn lost(&self, rooms: &[String], epoch: &str) {
        let registry = self.registry.read();
        let mut told: HashSet<*const SocketState> = HashSet::new();
        for room in rooms {
            registry.for_each_member(room, |socket| {
                if !told.insert(Arc::as_ptr(socket)) {
                    return;
                }
                let mine = rooms.iter().filter(|r| registry.contains(r, &socket.sid)).cloned().collect();
                let data = envelope::to_json(&Resync { rooms: mine, epoch: epoch.to_owned() });
                self.send_direct(socket, Json::plain(envelope::event("$resync", &data, None)));
            });
        }
        self.counters.resyncs.fetch_add(told.len() as u64, Relaxed);
    }
}

/// A message's frames, each encoded once for all its recipients. Without byte arrays,
/// one text frame for every version; with them, one binary frame for version 2 sockets
/// and one (base64) text frame for version 1 sockets, each made when a recipient first
/// needs it.
enum Frames {
    Plain(EncodedFrame),
    Bytes { envelope: Json, binary: OnceLock<EncodedFrame>, text: OnceLock<EncodedFrame> },
}

impl Frames {
    /// The frames and the message's size as metrics count it (the version 2 form).
    fn new(envelope: Json) -> (Self, usize) {
        let len = envelope.len();
        let frames = if envelope.bins.is_empty() {
            Frames::Plain(zapsocket::encode(envelope.into_message(true)))
        } else {
            Frames::Bytes { envelope, binary: OnceLock::new(), text: OnceLock::new() }
        };
        (frames, len)
    }

    fn get(&self, binary: bool) -> &EncodedFrame {
        match self {
            Frames::Plain(frame) => frame,
            Frames::Bytes { envelope, binary: v2, text: v1 } => {
                let cell = if binary { v2 } else { v1 };
                cell.get_or_init(|| zapsocket::encode(envelope.clone().into_message(binary)))
            }
        }
    }
}

/// Who a delivery leaves out: members of the except rooms, and of the rooms where this
/// node already delivered it.
struct Skip<'a> {
    sids: Vec<&'a str>,
    rooms: Vec<&'a str>,
}

impl<'a> Skip<'a> {
    /// `None` when nobody gets it (`$all` is excepted).
    fn new(except: &'a [String], targets: &'a [String], fresh: Option<&[bool]>) -> Option<Self> {
        let mut skip = Skip { sids: Vec::new(), rooms: Vec::new() };
        for room in except {
            if room == crate::ALL_ROOM {
                return None;
            }
            match room.strip_prefix("$s:") {
                Some(sid) => skip.sids.push(sid),
                None => skip.rooms.push(room),
            }
        }
        if let Some(fresh) = fresh {
            let stale =
                targets.iter().zip(fresh).filter(|(_, fresh)| !**fresh).map(|(room, _)| room.as_str());
            skip.rooms.extend(stale);
        }
        Some(skip)
    }

    fn skips(&self, registry: &Rooms, socket: &SocketState) -> bool {
        self.sids.iter().any(|sid| **sid == *socket.sid)
            || self.rooms.iter().any(|room| registry.contains(room, &socket.sid))
    }
}
