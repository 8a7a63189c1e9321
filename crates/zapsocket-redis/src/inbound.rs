//! What arrives from Redis on the push connection: room messages, delivered in order
//! with every gap repaired from the history (or reported), and requests and answers
//! between nodes; and which rooms this node follows.
//!
//! Every room this node has members in is *tracked*, with the last offset delivered.
//! A message whose offset in a tracked room skips ahead shows a gap: delivery stops (what
//! arrives is held, bounded), the missing range is read from the room's stream and
//! delivered, then what was held. A range the stream no longer has is reported to the
//! room's members (`$resync`). The baseline of a room is read on the push connection
//! right after subscribing, so that it is ordered with the messages themselves.
//!
//! Lock order: the inbound state, then (while delivering) the hub's registry and a
//! socket's lock. Deliveries happen under the inbound lock, so that pushes and repairs
//! never interleave.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use redis::aio::MultiplexedConnection;
use redis::{PushInfo, PushKind, Value};
use zapsocket_realtime::{AdapterError, Delivery, Publication};

use crate::{Inner, failed, unreachable};

/// Bytes counted per held message besides its publication.
const HELD_OVERHEAD: usize = 128;

/// Entries read from a stream per request during a repair.
const REPAIR_PAGE: usize = 1_000;

/// A room message as published: `m<SEQ> <EPOCH> <OFFSET>...\n<publication>`.
#[derive(Debug)]
pub(crate) struct RoomMessage {
    pub(crate) seq: u64,
    pub(crate) epoch: String,
    pub(crate) offsets: Vec<u64>,
    pub(crate) publication: Publication,
}

impl RoomMessage {
    pub(crate) fn parse(bytes: &[u8]) -> Result<Self, String> {
        let bytes = bytes.strip_prefix(b"m").ok_or("not a room message")?;
        let split = bytes.iter().position(|b| *b == b'\n').ok_or("no head line")?;
        let head = std::str::from_utf8(&bytes[..split]).map_err(|e| e.to_string())?;
        let mut parts = head.split(' ');
        let seq = parts.next().and_then(|s| s.parse().ok()).ok_or("no sequence number")?;
        let epoch = parts.next().ok_or("no epoch")?.to_owned();
        let offsets: Vec<u64> =
            parts.map(|p| p.parse().map_err(|_| "a bad offset")).collect::<Result<_, _>>()?;
        let publication = Publication::from_bytes(&bytes[split + 1..])?;
        if offsets.len() != publication.rooms().len() {
            return Err("offsets do not match the rooms".into());
        }
        Ok(RoomMessage { seq, epoch, offsets, publication })
    }

    fn cost(&self) -> usize {
        self.publication.len() + HELD_OVERHEAD + 8 * self.offsets.len()
    }
}

/// A range of a room's offsets this node has not delivered: `after + 1 ..= to`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Gap {
    pub(crate) room: String,
    pub(crate) after: u64,
    pub(crate) to: u64,
}

/// Which rooms this node follows, and the delivery state.
#[derive(Default)]
pub(crate) struct Inbound {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    rooms: HashMap<String, Track>,
    /// A repair runs: what arrives is held.
    repairing: bool,
    held: VecDeque<RoomMessage>,
    held_bytes: usize,
    /// More arrived than could be held: dropped, and every room is checked afterwards.
    overflowed: bool,
    /// Gaps found while a repair ran, for it to do next.
    pending: Vec<Gap>,
}

#[derive(Debug, Default)]
struct Track {
    /// Members of this node in the room.
    interest: usize,
    /// Whether the node receives the room's messages.
    subscribed: bool,
    /// The last offset delivered (or the baseline).
    last: Option<u64>,
}

impl Inbound {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl State {
    /// Whether `message` is new in each of its rooms, and the rooms' new last offsets;
    /// or the gaps it shows (then nothing changes).
    fn apply(&mut self, message: &RoomMessage) -> Result<Vec<bool>, Vec<Gap>> {
        let mut fresh = Vec::with_capacity(message.offsets.len());
        let mut gaps = Vec::new();
        for (room, offset) in message.publication.rooms().iter().zip(&message.offsets) {
            let last = self.rooms.get(room).filter(|t| t.interest > 0).and_then(|t| t.last);
            match last {
                Some(last) if *offset <= last => fresh.push(false),
                Some(last) if *offset > last + 1 => {
                    gaps.push(Gap { room: room.clone(), after: last, to: offset - 1 });
                    fresh.push(true);
                }
                _ => fresh.push(true),
            }
        }
        if !gaps.is_empty() {
            return Err(gaps);
        }
        for (room, offset) in message.publication.rooms().iter().zip(&message.offsets) {
            if let Some(track) = self.rooms.get_mut(room).filter(|t| t.interest > 0) {
                track.last = Some(track.last.unwrap_or(0).max(*offset));
            }
        }
        Ok(fresh)
    }

    fn hold(&mut self, message: RoomMessage, max: usize) {
        if self.overflowed {
            return;
        }
        let cost = message.cost();
        if self.held_bytes + cost > max {
            self.held.clear();
            self.held_bytes = 0;
            self.overflowed = true;
            return;
        }
        self.held_bytes += cost;
        self.held.push_back(message);
    }
}

/// Hands a message to the hub (under the inbound lock).
fn deliver(inner: &Inner, message: &RoomMessage, fresh: &[bool]) {
    if let Some(hub) = inner.hub() {
        let delivery = Delivery {
            publication: &message.publication,
            epoch: &message.epoch,
            seq: message.seq,
            offsets: &message.offsets,
            fresh: Some(fresh),
        };
        hub.deliver(&delivery);
    }
}

/// What the push connection calls for each push (on its reading task: never blocks).
pub(crate) fn on_push(weak: &Weak<Inner>, generation: u64, info: PushInfo) {
    let Some(inner) = weak.upgrade() else { return };
    if inner.generation.load(Relaxed) != generation {
        return; // a connection of a link that was replaced
    }
    match info.kind {
        PushKind::Message => {
            let Some(Value::BulkString(payload)) = info.data.get(1) else { return };
            match payload.first() {
                Some(b'm') => on_room_message(&inner, generation, payload),
                Some(b'v') => on_volatile(&inner, &payload[1..]),
                Some(b'q') => crate::nodes::on_request(&inner, &payload[1..]),
                Some(b'a') => crate::nodes::on_answer(&inner, &payload[1..]),
                _ => tracing::warn!("a message of no known kind on a zapsocket channel"),
            }
        }
        PushKind::Disconnection => {
            inner.counters.disconnects.fetch_add(1, Relaxed);
            inner.break_link(generation);
        }
        _ => {}
    }
}

fn on_room_message(inner: &Arc<Inner>, generation: u64, payload: &[u8]) {
    let message = match RoomMessage::parse(payload) {
        Ok(message) => message,
        Err(error) => return tracing::warn!(%error, "a room message that does not read"),
    };
    inner.counters.received.fetch_add(1, Relaxed);
    if *message.epoch != *inner.epoch() {
        // Published under another epoch: Redis started over. Making the link again
        // adopts the new epoch and tells the members (`$resync`).
        inner.break_link(generation);
        return;
    }
    let mut state = inner.inbound.lock();
    if state.repairing {
        state.hold(message, inner.config.max_repair_buffer);
        return;
    }
    match state.apply(&message) {
        Ok(fresh) => deliver(inner, &message, &fresh),
        Err(gaps) => {
            state.hold(message, inner.config.max_repair_buffer);
            start_repair(inner, &mut state, gaps);
        }
    }
}

/// A volatile message (not recorded, no offsets): to this node's members at once, apart
/// from the ordered delivery of room messages.
fn on_volatile(inner: &Inner, payload: &[u8]) {
    match Publication::from_bytes(payload) {
        Ok(publication) => {
            inner.counters.received.fetch_add(1, Relaxed);
            if let Some(hub) = inner.hub() {
                hub.deliver_volatile(&publication);
            }
        }
        Err(error) => tracing::warn!(%error, "a volatile message that does not read"),
    }
}

/// Starts repairing `gaps` (or hands them to the repair under way).
fn start_repair(inner: &Arc<Inner>, state: &mut State, gaps: Vec<Gap>) {
    inner.counters.gaps.fetch_add(gaps.len() as u64, Relaxed);
    if state.repairing {
        state.pending.extend(gaps);
        return;
    }
    state.repairing = true;
    let generation = inner.generation.load(Relaxed);
    tokio::spawn(repair(Arc::downgrade(inner), gaps, generation));
}

/// Repairs gaps from the streams, then delivers what was held, until nothing is held.
async fn repair(weak: Weak<Inner>, mut gaps: Vec<Gap>, generation: u64) {
    loop {
        let Some(inner) = weak.upgrade() else { return };
        let mut found = Vec::new();
        let mut lost = Vec::new();
        for gap in &gaps {
            match read_range(&inner, gap).await {
                Ok(messages) => found.extend(messages),
                Err(AdapterError::Gone(_)) => lost.push(gap.clone()),
                Err(_) => {
                    // The link is in trouble: the next link checks every room again.
                    inner.break_link(generation);
                    return;
                }
            }
        }
        if inner.generation.load(Relaxed) != generation {
            return;
        }
        found.sort_by_key(|m| m.seq);
        found.dedup_by_key(|m| m.seq);
        {
            let mut state = inner.inbound.lock();
            for gap in &lost {
                if let Some(track) = state.rooms.get_mut(&gap.room) {
                    track.last = Some(track.last.unwrap_or(0).max(gap.to));
                }
            }
            let mut found = found.into_iter();
            while let Some(message) = found.next() {
                match state.apply(&message) {
                    Ok(fresh) => deliver(&inner, &message, &fresh),
                    Err(more) => {
                        // A repaired message shows a gap in another of its rooms: that gap
                        // first; this message and the rest wait, ahead of what was held.
                        for waiting in
                            std::iter::once(message).chain(found).collect::<Vec<_>>().into_iter().rev()
                        {
                            state.held_bytes += waiting.cost();
                            state.held.push_front(waiting);
                        }
                        inner.counters.gaps.fetch_add(more.len() as u64, Relaxed);
                        state.pending.extend(more);
                        break;
                    }
                }
            }
        }
        inner.counters.repaired.fetch_add((gaps.len() - lost.len()) as u64, Relaxed);
        report_lost(&inner, &lost);
        gaps = match drain_held(&inner, generation).await {
            Some(next) => next,
            None => return,
        };
    }
}

/// Delivers the held messages; returns the next gaps to repair, or `None` when done
/// (delivery is live again).
async fn drain_held(inner: &Arc<Inner>, generation: u64) -> Option<Vec<Gap>> {
    loop {
        if inner.generation.load(Relaxed) != generation {
            return None;
        }
        let check_all = {
            let mut state = inner.inbound.lock();
            if !state.pending.is_empty() {
                return Some(std::mem::take(&mut state.pending));
            }
            if state.overflowed {
                state.overflowed = false;
                true
            } else {
                let Some(message) = state.held.pop_front() else {
                    state.repairing = false;
                    return None;
                };
                state.held_bytes -= message.cost().min(state.held_bytes);
                match state.apply(&message) {
                    Ok(fresh) => deliver(inner, &message, &fresh),
                    Err(gaps) => {
                        state.held.push_front(message);
                        return Some(gaps);
                    }
                }
                false
            }
        };
        if check_all {
            // Held messages were dropped: every room is compared with Redis.
            let Ok(mut sub) = inner.sub() else { return None };
            match gaps_against_redis(inner, &mut sub).await {
                Ok(gaps) if !gaps.is_empty() => return Some(gaps),
                Ok(_) => {}
                Err(_) => {
                    inner.break_link(generation);
                    return None;
                }
            }
        }
    }
}

/// The messages of a gap, read from the room's stream page by page.
async fn read_range(inner: &Inner, gap: &Gap) -> Result<Vec<RoomMessage>, AdapterError> {
    let mut out = Vec::new();
    let mut after = gap.after;
    while after < gap.to {
        let page = crate::ops::read_room(inner, &gap.room, after, REPAIR_PAGE).await?;
        let Some(last) = page
            .last()
            .and_then(|m| m.offsets.get(m.publication.rooms().iter().position(|r| *r == gap.room)?).copied())
        else {
            break;
        };
        after = last;
        out.extend(page);
    }
    Ok(out)
}

/// Tells the members of rooms whose gap left the history.
fn report_lost(inner: &Inner, lost: &[Gap]) {
    if lost.is_empty() {
        return;
    }
    inner.counters.lost.fetch_add(lost.len() as u64, Relaxed);
    let mut rooms: Vec<String> = lost.iter().map(|g| g.room.clone()).collect();
    rooms.dedup();
    tracing::warn!(
        ?rooms,
        "room messages lost for this node and gone from the history: members told to resync"
    );
    if let Some(hub) = inner.hub() {
        hub.lost(&rooms, &inner.epoch());
    }
}

/// Compares each tracked room's last offset with Redis (on the push connection, so in
/// order with the messages): the gaps. Rooms without a baseline take Redis's.
async fn gaps_against_redis(
    inner: &Inner,
    sub: &mut MultiplexedConnection,
) -> Result<Vec<Gap>, AdapterError> {
    let rooms: Vec<String> =
        inner.inbound.lock().rooms.iter().filter(|(_, t)| t.interest > 0).map(|(r, _)| r.clone()).collect();
    if rooms.is_empty() {
        return Ok(Vec::new());
    }
    let keys: Vec<String> = rooms.iter().map(|r| inner.keys.offset(r)).collect();
    let values: Vec<Option<u64>> = redis::cmd("MGET").arg(&keys).query_async(sub).await.map_err(failed)?;
    let mut state = inner.inbound.lock();
    let mut gaps = Vec::new();
    for (room, value) in rooms.into_iter().zip(values) {
        let now = value.unwrap_or(0);
        let Some(track) = state.rooms.get_mut(&room) else { continue };
        match track.last {
            Some(last) if now > last => gaps.push(Gap { room, after: last, to: now }),
            Some(_) => {}
            None => track.last = Some(now),
        }
    }
    Ok(gaps)
}

/// This node has one more member in `room`: subscribes when it is the first, and
/// resolves once the room's messages reach this node.
pub(crate) async fn subscribe(inner: &Arc<Inner>, room: &str) -> Result<(), AdapterError> {
    {
        let mut state = inner.inbound.lock();
        let track = state.rooms.entry(room.to_owned()).or_default();
        track.interest += 1;
        if track.subscribed {
            return Ok(());
        }
    }
    // On an error the interest stays: the next link subscribes the room (the caller
    // unsubscribes when it gives up on the member).
    subscribe_room(inner, room).await
}

async fn subscribe_room(inner: &Inner, room: &str) -> Result<(), AdapterError> {
    let _guard = inner.subscriptions.lock().await;
    if inner.inbound.lock().rooms.get(room).is_some_and(|t| t.subscribed) {
        return Ok(());
    }
    if !inner.up.load(Relaxed) {
        return Err(unreachable());
    }
    let mut sub = inner.sub()?;
    if let Some(channel) = inner.keys.channel(room) {
        sub.subscribe(&channel).await.map_err(failed)?;
    }
    let baseline: Option<u64> =
        redis::cmd("GET").arg(inner.keys.offset(room)).query_async(&mut sub).await.map_err(failed)?;
    let mut state = inner.inbound.lock();
    if let Some(track) = state.rooms.get_mut(room) {
        track.subscribed = true;
        track.last = Some(track.last.unwrap_or(0).max(baseline.unwrap_or(0)));
    }
    Ok(())
}

/// This node has one member fewer in `room`: unsubscribes when it was the last.
pub(crate) fn unsubscribe(inner: &Arc<Inner>, room: &str) {
    {
        let mut state = inner.inbound.lock();
        let Some(track) = state.rooms.get_mut(room) else { return };
        track.interest = track.interest.saturating_sub(1);
        if track.interest > 0 {
            return;
        }
    }
    let weak = Arc::downgrade(inner);
    let room = room.to_owned();
    tokio::spawn(async move {
        let Some(inner) = weak.upgrade() else { return };
        let _guard = inner.subscriptions.lock().await;
        let subscribed = {
            let mut state = inner.inbound.lock();
            match state.rooms.get(&room) {
                Some(track) if track.interest == 0 => state.rooms.remove(&room).is_some_and(|t| t.subscribed),
                _ => return,
            }
        };
        if let (true, Some(channel), Ok(mut sub)) = (subscribed, inner.keys.channel(&room), inner.sub())
            && let Err(error) = sub.unsubscribe(&channel).await
        {
            tracing::debug!(%room, %error, "not unsubscribed (the next link will not subscribe it)");
        }
    });
}

/// After a new link: subscribes to everything this node follows on the new push
/// connection, then compares every room with Redis and repairs (or, under a new epoch,
/// starts every room over from Redis's offsets and reports them lost).
pub(crate) async fn resubscribe(
    inner: &Arc<Inner>,
    sub: &mut MultiplexedConnection,
    new_epoch: bool,
) -> Result<(), AdapterError> {
    let _guard = inner.subscriptions.lock().await;
    let rooms: Vec<String> = {
        let mut state = inner.inbound.lock();
        state.rooms.retain(|_, t| t.interest > 0);
        state.repairing = false;
        state.held.clear();
        state.held_bytes = 0;
        state.overflowed = false;
        state.pending.clear();
        for track in state.rooms.values_mut() {
            track.subscribed = false;
            if new_epoch {
                track.last = None;
            }
        }
        state.rooms.keys().cloned().collect()
    };
    let mut channels = vec![inner.keys.requests(), inner.keys.inbox(&inner.node)];
    channels.extend(rooms.iter().filter_map(|r| inner.keys.channel(r)));
    sub.subscribe(&channels).await.map_err(failed)?;
    inner.inbound.lock().rooms.values_mut().for_each(|t| t.subscribed = true);
    let gaps = gaps_against_redis(inner, sub).await?;
    if new_epoch {
        report_lost(
            inner,
            &rooms.iter().map(|room| Gap { room: room.clone(), after: 0, to: 0 }).collect::<Vec<_>>(),
        );
    } else if !gaps.is_empty() {
        let mut state = inner.inbound.lock();
        start_repair(inner, &mut state, gaps);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(seq: u64, rooms: &[(&str, u64)]) -> RoomMessage {
        let publication =
            Publication::new(rooms.iter().map(|(r, _)| (*r).to_owned()).collect(), vec![], "e", "1");
        let head =
            format!("m{seq} e1 {}\n", rooms.iter().map(|(_, o)| o.to_string()).collect::<Vec<_>>().join(" "));
        RoomMessage::parse(&[head.as_bytes(), &publication.to_bytes()].concat()).unwrap()
    }

    fn tracked(rooms: &[(&str, Option<u64>)]) -> State {
        let mut state = State::default();
        for (room, last) in rooms {
            state.rooms.insert((*room).to_owned(), Track { interest: 1, subscribed: true, last: *last });
        }
        state
    }

    #[test]
    fn room_messages_read_back() {
        let m = message(7, &[("a", 3), ("b", 9)]);
        assert_eq!((m.seq, m.epoch.as_str(), m.offsets.as_slice()), (7, "e1", &[3, 9][..]));
        assert!(
            RoomMessage::parse(b"m1 e1 1 2\n{\"rooms\":[\"a\"]}\n{\"event\":\"x\"").is_err(),
            "two offsets, one room"
        );
        assert!(RoomMessage::parse(b"q{}").is_err());
        assert!(RoomMessage::parse(b"mx e1 1\n").is_err());
    }

    #[test]
    fn offsets_tell_new_repeated_and_missing_messages() {
        let mut state = tracked(&[("a", Some(3)), ("b", Some(9)), ("c", None)]);
        assert_eq!(state.apply(&message(1, &[("a", 4)])), Ok(vec![true]));
        assert_eq!(
            state.apply(&message(2, &[("a", 4), ("b", 10)])),
            Ok(vec![false, true]),
            "a copy: new in b only"
        );
        assert_eq!(
            state.apply(&message(3, &[("c", 50)])),
            Ok(vec![true]),
            "no baseline yet: taken as it comes"
        );
        assert_eq!(state.rooms["c"].last, Some(50));
        let gaps = state.apply(&message(4, &[("a", 7), ("b", 11)])).unwrap_err();
        assert_eq!(gaps, [Gap { room: "a".into(), after: 4, to: 6 }]);
        assert_eq!(state.rooms["b"].last, Some(10), "nothing changes on a gap");
        assert_eq!(state.apply(&message(5, &[("untracked", 99)])), Ok(vec![true]));
    }

    #[test]
    fn held_messages_are_bounded_in_bytes() {
        let mut state = State::default();
        let one = message(1, &[("a", 1)]).cost();
        for seq in 1..=3 {
            state.hold(message(seq, &[("a", seq)]), one * 2 + 1);
        }
        assert!(
            state.overflowed && state.held.is_empty(),
            "the third did not fit: all dropped, to be read again"
        );
    }
}
