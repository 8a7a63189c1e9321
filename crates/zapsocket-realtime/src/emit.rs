//! Emit operators: to rooms, except rooms or sockets; one encoding per message.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;
use zapsocket::{EncodedFrame, Message};

use crate::adapter::Recorded;
use crate::envelope;
use crate::error::{ErrorCode, ReplyError};
use crate::hub::{Hub, State};
use crate::socket::Socket;

/// A room to send to or to leave out: a room name, `$all`, or a socket (its own room
/// `$s:SID`). Made from `&str`, `String` or `&Socket`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RoomName(pub String);

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

impl From<&Socket> for RoomName {
    fn from(socket: &Socket) -> Self {
        RoomName(socket.inner.room.clone())
    }
}

impl RoomName {
    pub(crate) fn into_operator(self, hub: &Hub) -> Operator {
        Operator { hub: hub.clone(), rooms: vec![self.0], except: Vec::new() }
    }
}

/// Where a message goes: the union of some rooms, minus the members of others. Built
/// by [`Hub::to`], [`Socket::to`], [`Socket::broadcast`]; ends with [`Operator::emit`].
///
/// ```no_run
/// # fn f(hub: zapsocket_realtime::Hub, socket: zapsocket_realtime::Socket) -> Result<(), zapsocket_realtime::ReplyError> {
/// hub.to("red").to("blue").emit("score", &3)?;             // each member once
/// hub.to("lobby").except(&socket).emit("moved", &"left")?; // all in lobby but socket
/// hub.to("$all").except("muted").emit("news", &"hi")?;     // everyone not in "muted"
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
#[must_use = "an operator does nothing until `emit`"]
pub struct Operator {
    hub: Hub,
    rooms: Vec<String>,
    except: Vec<String>,
}

impl Operator {
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

    /// Sends `event` with `data` to every socket in the rooms but not in the excepted
    /// ones, each once. The message is serialized and encoded once, recorded in each
    /// target room's history with that room's next offset (`rooms` and `epoch` fields),
    /// and the same bytes are queued on every recipient without waiting. Returns the
    /// number of sockets it was queued on. Fails with `reserved` for a `$` event name,
    /// `bad_payload` when `data` cannot be serialized.
    pub fn emit<T: Serialize + ?Sized>(&self, event: &str, data: &T) -> Result<usize, ReplyError> {
        check_event(event)?;
        let data = serde_json::to_string(data).map_err(|e| ReplyError::bad_payload(e.to_string()))?;
        let rooms: Vec<&str> = self.rooms.iter().map(String::as_str).collect();
        let except: Vec<&str> = self.except.iter().map(String::as_str).collect();
        Ok(self.hub.publish(&rooms, &except, event, &data))
    }
}

/// Application events cannot use `$` names (docs/PROTOCOL.md, *Envelopes*).
pub(crate) fn check_event(event: &str) -> Result<(), ReplyError> {
    if event.starts_with('$') {
        return Err(ReplyError::new(ErrorCode::RESERVED, format!("event {event:?} is reserved")));
    }
    envelope::check_name(event, usize::MAX).map_err(|m| ReplyError::new(ErrorCode::BAD_ENVELOPE, m))
}

impl Hub {
    /// Records and delivers a room message (`data` is JSON). Holds the hub's order lock
    /// from the offsets to the last queued copy, so that every socket sees each room's
    /// offsets in increasing order.
    pub(crate) fn publish(&self, rooms: &[&str], except: &[&str], event: &str, data: &str) -> usize {
        let inner = &self.inner;
        let _order = inner.order.lock().unwrap_or_else(|p| p.into_inner());
        let epoch = inner.adapter.epoch();
        let recorded = inner.adapter.append(rooms, &mut |offsets| {
            let pairs: Vec<(&str, u64)> = rooms.iter().copied().zip(offsets.iter().copied()).collect();
            let json = envelope::room_event(event, data, epoch, &pairs);
            Recorded {
                seq: inner.appends.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1,
                frame: zapsocket::encode(Message::from(json)),
                except: except.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>().into(),
                at: Instant::now(),
            }
        });
        let state = self.read_state();
        let (queued, dropped) = deliver(&state, rooms, except, &recorded.frame);
        inner.counters.sent(queued as u64, recorded.frame.len(), dropped);
        inner.counters.broadcasts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.maybe_sweep(&state);
        queued
    }

    /// Emits a protocol event (`$joined`, `$left`) to rooms.
    pub(crate) fn emit_reserved<T: Serialize>(&self, rooms: &[&str], except: &[&str], event: &str, data: &T) {
        self.publish(rooms, except, event, &envelope::to_json(data));
    }
}

/// Queues `frame` on every member of `rooms` not in `except`, each once. Returns
/// (queued, dropped).
fn deliver(state: &State, rooms: &[&str], except: &[&str], frame: &EncodedFrame) -> (usize, u64) {
    let mut excluded: HashSet<&str> = HashSet::new();
    for room in except {
        if *room == crate::ALL_ROOM {
            return (0, 0);
        }
        state.for_each_member(room, |sid, _| {
            excluded.insert(sid);
        });
    }
    let mut seen: HashSet<*const crate::socket::SocketInner> = HashSet::new();
    let dedupe = rooms.len() > 1;
    let (mut queued, mut dropped) = (0, 0);
    for room in rooms {
        state.for_each_member(room, |sid, socket| {
            let skip = (!excluded.is_empty() && excluded.contains(sid))
                || (dedupe && !seen.insert(Arc::as_ptr(socket)));
            if skip {
                return;
            }
            match socket.sender.send_encoded(frame) {
                Ok(true) => queued += 1,
                _ => dropped += 1,
            }
        });
    }
    (queued, dropped)
}
