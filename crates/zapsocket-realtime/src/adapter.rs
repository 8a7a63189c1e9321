//! Where room messages are recorded with their offsets: the [`Adapter`] trait and its
//! in-memory default (docs/PROTOCOL.md, *Offsets and recovery*).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use zapsocket::EncodedFrame;

use crate::config::HistoryLimits;

/// A message as it was sent to its rooms: the frame (shared with every recipient and
/// with every room it was recorded in), and whom it skipped.
#[derive(Clone, Debug)]
pub struct Recorded {
    /// The hub's sequence number of the message: orders messages across rooms (a
    /// replay merges several rooms' histories by it).
    pub seq: u64,
    /// The encoded frame, `rooms` and `epoch` included.
    pub frame: EncodedFrame,
    /// The rooms (`$s:SID` for a socket) whose members did not get it.
    pub except: Arc<[String]>,
    /// When it was recorded.
    pub at: Instant,
}

/// The answer to a replay that cannot be served: the epoch changed or the messages after
/// the offset left the window. The client must resync.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unavailable;

/// Records room messages with their offsets and replays them.
///
/// The hub calls `append` for every room message, one at a time and in the order in
/// which the messages are delivered (it holds its own lock around the call and the
/// delivery), so offsets are delivered in increasing order in every room. A multi-node
/// adapter (Redis) keeps the same promise with a shared counter per room.
pub trait Adapter: Send + Sync + 'static {
    /// The epoch: names this history; it changes when the history starts over.
    fn epoch(&self) -> &str;

    /// Gives each of `rooms` its next offset, lets `encode` build the message with them
    /// (same order as `rooms`), records it in every room and returns it.
    fn append(&self, rooms: &[&str], encode: &mut dyn FnMut(&[u64]) -> Recorded) -> Arc<Recorded>;

    /// The last offset given in `room` (0 if none).
    fn last_offset(&self, room: &str) -> u64;

    /// The messages of `room` after offset `after`, oldest first, or [`Unavailable`] when
    /// some of them have left the window.
    fn replay(&self, room: &str, after: u64) -> Result<Vec<(u64, Arc<Recorded>)>, Unavailable>;

    /// Drops what is older than the window; forgets rooms that are empty and for which
    /// `occupied` is false (their offsets may then start over).
    fn sweep(&self, occupied: &dyn Fn(&str) -> bool);
}

/// The default [`Adapter`]: each room's history in memory, bounded by [`HistoryLimits`]
/// (messages, bytes, age). A new one has a new random epoch.
#[derive(Debug)]
pub struct MemoryAdapter {
    epoch: String,
    limits: HistoryLimits,
    rooms: Mutex<HashMap<String, History>>,
}

#[derive(Debug, Default)]
struct History {
    /// The last offset given.
    last: u64,
    entries: VecDeque<(u64, Arc<Recorded>)>,
    bytes: usize,
}

impl MemoryAdapter {
    /// An empty history with these limits.
    pub fn new(limits: HistoryLimits) -> Self {
        MemoryAdapter { epoch: crate::random_id("e"), limits, rooms: Mutex::new(HashMap::new()) }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, History>> {
        self.rooms.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl History {
    fn prune(&mut self, limits: &HistoryLimits, now: Instant) {
        while let Some((_, front)) = self.entries.front() {
            let old = now.saturating_duration_since(front.at) > limits.max_age;
            if !old && self.entries.len() <= limits.max_messages && self.bytes <= limits.max_bytes {
                break;
            }
            self.bytes -= front.frame.len();
            self.entries.pop_front();
        }
    }

    /// The oldest offset that can still be replayed.
    fn first(&self) -> u64 {
        self.entries.front().map_or(self.last + 1, |(offset, _)| *offset)
    }
}

impl Adapter for MemoryAdapter {
    fn epoch(&self) -> &str {
        &self.epoch
    }

    fn append(&self, rooms: &[&str], encode: &mut dyn FnMut(&[u64]) -> Recorded) -> Arc<Recorded> {
        let mut map = self.lock();
        let offsets: Vec<u64> = rooms.iter().map(|r| map.get(*r).map_or(1, |h| h.last + 1)).collect();
        let recorded = Arc::new(encode(&offsets));
        let now = recorded.at;
        for (room, offset) in rooms.iter().zip(offsets) {
            let history = map.entry((*room).to_owned()).or_default();
            history.last = offset;
            history.bytes += recorded.frame.len();
            history.entries.push_back((offset, recorded.clone()));
            history.prune(&self.limits, now);
        }
        recorded
    }

    fn last_offset(&self, room: &str) -> u64 {
        self.lock().get(room).map_or(0, |h| h.last)
    }

    fn replay(&self, room: &str, after: u64) -> Result<Vec<(u64, Arc<Recorded>)>, Unavailable> {
        let mut map = self.lock();
        let Some(history) = map.get_mut(room) else {
            return if after == 0 { Ok(Vec::new()) } else { Err(Unavailable) };
        };
        history.prune(&self.limits, Instant::now());
        if after > history.last || after + 1 < history.first() {
            return Err(Unavailable);
        }
        Ok(history.entries.iter().filter(|(offset, _)| *offset > after).cloned().collect())
    }

    fn sweep(&self, occupied: &dyn Fn(&str) -> bool) {
        let now = Instant::now();
        let limits = &self.limits;
        self.lock().retain(|room, history| {
            history.prune(limits, now);
            !history.entries.is_empty() || occupied(room)
        });
    }
}

/// How often the hub sweeps: after this many appends or this much time.
pub(crate) const SWEEP_EVERY: (u64, Duration) = (4_096, Duration::from_secs(10));

#[cfg(test)]
mod tests {
    use super::*;

    fn append(a: &MemoryAdapter, rooms: &[&str], size: usize) -> Vec<u64> {
        let mut got = Vec::new();
        a.append(rooms, &mut |offsets| {
            got = offsets.to_vec();
            Recorded {
                seq: 0,
                frame: EncodedFrame::text(&"x".repeat(size)),
                except: Arc::new([]),
                at: Instant::now(),
            }
        });
        got
    }

    #[test]
    fn offsets_count_per_room() {
        let a = MemoryAdapter::new(HistoryLimits::default());
        assert_eq!(append(&a, &["a"], 1), [1]);
        assert_eq!(append(&a, &["a", "b"], 1), [2, 1]);
        assert_eq!(append(&a, &["b"], 1), [2]);
        assert_eq!(a.replay("a", 0).unwrap().iter().map(|e| e.0).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(a.replay("b", 1).unwrap().len(), 1);
        assert_eq!(a.replay("b", 2).unwrap().len(), 0);
        assert!(a.replay("b", 3).is_err(), "an offset from the future");
        assert_eq!(a.replay("nope", 0).unwrap().len(), 0);
        assert!(a.replay("nope", 4).is_err());
    }

    #[test]
    fn history_is_bounded_by_count_and_bytes() {
        let limits = HistoryLimits { max_messages: 3, max_bytes: 1 << 20, max_age: Duration::from_secs(60) };
        let a = MemoryAdapter::new(limits);
        for _ in 0..5 {
            append(&a, &["r"], 10);
        }
        assert!(a.replay("r", 1).is_err());
        assert_eq!(a.replay("r", 2).unwrap().len(), 3);
        let limits = HistoryLimits { max_messages: 100, max_bytes: 100, max_age: Duration::from_secs(60) };
        let a = MemoryAdapter::new(limits);
        for _ in 0..5 {
            append(&a, &["r"], 40);
        }
        assert_eq!(a.replay("r", 3).unwrap().len(), 2, "two 42-byte frames fit in 100 bytes");
        assert!(a.replay("r", 2).is_err());
    }

    #[test]
    fn sweep_forgets_old_empty_rooms() {
        let limits = HistoryLimits { max_messages: 10, max_bytes: 1000, max_age: Duration::ZERO };
        let a = MemoryAdapter::new(limits);
        append(&a, &["gone", "kept"], 1);
        std::thread::sleep(Duration::from_millis(2));
        a.sweep(&|room| room == "kept");
        assert_eq!(append(&a, &["gone", "kept"], 1), [1, 2]);
    }
}
