//! The default adapter: one node, everything in memory ([`MemoryAdapter`]).
//!
//! Ordering is per room: a publication locks the logs of its rooms (in name order, so
//! that two publications never wait for each other in a circle), takes each room's next
//! offset, records itself and is delivered before the locks are released. Messages to
//! different rooms never wait for each other.
//!
//! Lock order: the map of logs (alone, briefly), then room logs in name order, then the
//! hub's registry and a socket's lock (during delivery). Presence, interest and sessions
//! each have their own lock, taken alone.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::{Duration, Instant};

use crate::broker::{
    AdapterError, Answers, BoxFuture, Broker, BrokerMetrics, Deliver, Delivery, Entry, History, NodeInfo,
    Presence, Publication, SessionRecord,
};
use crate::config::{HistoryLimits, HubConfig};
use crate::expiring::Expiring;
use crate::protocol::Member;

/// How often the logs of rooms nobody is in are swept: after this many publications or
/// this much time.
const SWEEP_EVERY: (u64, Duration) = (4_096, Duration::from_secs(10));

/// The default [`Broker`] and [`History`]: one node, each room's history in memory
/// (bounded by [`HistoryLimits`]: messages, bytes, age), presence and sessions in memory.
/// A new one has a new random epoch and node id.
pub struct MemoryAdapter {
    node: String,
    epoch: Arc<str>,
    limits: HistoryLimits,
    max_detached: usize,
    logs: Mutex<HashMap<String, Arc<Mutex<Log>>>>,
    seq: AtomicU64,
    interest: Mutex<HashMap<String, usize>>,
    presence: Mutex<HashMap<String, HashMap<String, Member>>>,
    /// Sessions by id; the detached ones expire at the end of their window.
    sessions: Mutex<Expiring<String, Stored>>,
    hub: OnceLock<Weak<dyn Deliver>>,
    sweep: Mutex<(u64, Instant)>,
}

#[derive(Default)]
struct Log {
    /// The last offset given.
    last: u64,
    entries: VecDeque<(u64, Arc<Recorded>)>,
    bytes: usize,
}

struct Recorded {
    entry: Entry,
    at: Instant,
    size: usize,
}

/// A session; detached when its entry has a deadline.
struct Stored {
    /// The session as it detached; `None` while attached (its socket holds it).
    record: Option<Box<SessionRecord>>,
    node: String,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn ready<'a, T: Send + 'a>(value: T) -> BoxFuture<'a, T> {
    Box::pin(std::future::ready(value))
}

impl MemoryAdapter {
    /// An empty adapter with the history limits and session bounds of `config`.
    pub fn new(config: &HubConfig) -> Self {
        MemoryAdapter {
            node: crate::random_id("n"),
            epoch: crate::random_id("e").into(),
            limits: config.history.clone(),
            max_detached: config.max_detached_sessions,
            logs: Mutex::default(),
            seq: AtomicU64::new(0),
            interest: Mutex::default(),
            presence: Mutex::default(),
            sessions: Mutex::default(),
            hub: OnceLock::new(),
            sweep: Mutex::new((0, Instant::now())),
        }
    }

    fn log(&self, room: &str) -> Arc<Mutex<Log>> {
        lock(&self.logs).entry(room.to_owned()).or_default().clone()
    }

    /// Forgets the logs of rooms nobody is in whose messages all left the window (their
    /// offsets may then start over), now and then.
    fn maybe_sweep(&self, seq: u64, now: Instant) {
        {
            let mut last = lock(&self.sweep);
            // (Another publication may have swept at a later `seq` than ours.)
            if seq.saturating_sub(last.0) < SWEEP_EVERY.0
                && now.saturating_duration_since(last.1) < SWEEP_EVERY.1
            {
                return;
            }
            *last = (seq, now);
        }
        self.sweep_logs(now);
    }

    /// Prunes every room's log to the limits and forgets the empty logs of rooms nobody
    /// is in.
    fn sweep_logs(&self, now: Instant) {
        let interest = lock(&self.interest).clone();
        let mut logs = lock(&self.logs);
        logs.retain(|room, log| {
            let Ok(mut log) = log.try_lock() else { return true };
            log.prune(&self.limits, now);
            if log.entries.is_empty() {
                log.entries.shrink_to_fit();
            }
            !log.entries.is_empty() || interest.contains_key(room)
        });
        let len = logs.len();
        if logs.capacity() > 64 && len < logs.capacity() / 4 {
            logs.shrink_to(len * 2);
        }
    }

    fn presence(&self, room: &str, max: usize, changed: bool) -> Presence {
        let presence = lock(&self.presence);
        let members = presence.get(room);
        let count = members.map_or(0, HashMap::len);
        let listed = match members {
            Some(m) if count <= max => m.values().cloned().collect(),
            _ => Vec::new(),
        };
        drop(presence);
        let offset = lock(&self.logs).get(room).map_or(0, |log| lock(log).last);
        Presence { count, members: listed, offset, changed }
    }
}

impl std::fmt::Debug for MemoryAdapter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryAdapter").field("node", &self.node).field("epoch", &self.epoch).finish()
    }
}

impl Log {
    fn prune(&mut self, limits: &HistoryLimits, now: Instant) {
        while let Some((_, front)) = self.entries.front() {
            let old = now.saturating_duration_since(front.at) > limits.max_age;
            if !old && self.entries.len() <= limits.max_messages && self.bytes <= limits.max_bytes {
                break;
            }
            self.bytes -= front.size;
            self.entries.pop_front();
        }
    }

    /// The oldest offset that can still be replayed.
    fn first(&self) -> u64 {
        self.entries.front().map_or(self.last + 1, |(offset, _)| *offset)
    }
}

impl Broker for MemoryAdapter {
    fn node(&self) -> &str {
        &self.node
    }

    fn attach(&self, hub: Weak<dyn Deliver>, _: &HubConfig) {
        let _ = self.hub.set(hub);
    }

    fn publish_volatile(&self, publication: Publication) -> Result<(), AdapterError> {
        if let Some(hub) = self.hub.get().and_then(Weak::upgrade) {
            hub.deliver_volatile(&publication);
        }
        Ok(())
    }

    fn publish(&self, publication: Publication) -> Result<(), AdapterError> {
        let publication = Arc::new(publication);
        let rooms = publication.rooms();
        let mut order: Vec<usize> = (0..rooms.len()).collect();
        order.sort_by(|a, b| rooms[*a].cmp(&rooms[*b]));
        let logs: Vec<Arc<Mutex<Log>>> = order.iter().map(|i| self.log(&rooms[*i])).collect();
        let mut guards: Vec<MutexGuard<'_, Log>> = logs.iter().map(|log| lock(log)).collect();
        let mut offsets = vec![0; rooms.len()];
        for (i, guard) in order.iter().zip(&guards) {
            offsets[*i] = guard.last + 1;
        }
        let seq = self.seq.fetch_add(1, Relaxed) + 1;
        let size = publication.len() + 16 * rooms.len();
        let entry = Entry { seq, offsets: offsets.clone(), publication: publication.clone() };
        let recorded = Arc::new(Recorded { entry, at: Instant::now(), size });
        for (i, guard) in order.iter().zip(guards.iter_mut()) {
            guard.last = offsets[*i];
            guard.bytes += size;
            guard.entries.push_back((offsets[*i], recorded.clone()));
            guard.prune(&self.limits, recorded.at);
        }
        if let Some(hub) = self.hub.get().and_then(Weak::upgrade) {
            let delivery = Delivery {
                publication: &publication,
                epoch: &self.epoch,
                seq,
                offsets: &offsets,
                fresh: None,
            };
            hub.deliver(&delivery);
        }
        drop(guards);
        self.maybe_sweep(seq, Instant::now());
        Ok(())
    }

    fn subscribe<'a>(&'a self, room: &'a str) -> BoxFuture<'a, Result<(), AdapterError>> {
        *lock(&self.interest).entry(room.to_owned()).or_default() += 1;
        ready(Ok(()))
    }

    fn unsubscribe(&self, room: &str) {
        let mut interest = lock(&self.interest);
        if let Some(count) = interest.get_mut(room) {
            *count -= 1;
            if *count == 0 {
                interest.remove(room);
            }
        }
    }

    fn join<'a>(
        &'a self,
        room: &'a str,
        member: &'a Member,
        max_listed: usize,
    ) -> BoxFuture<'a, Result<Presence, AdapterError>> {
        let added = lock(&self.presence)
            .entry(room.to_owned())
            .or_default()
            .insert(member.id.clone(), member.clone());
        ready(Ok(self.presence(room, max_listed, added.is_none())))
    }

    fn leave<'a>(&'a self, room: &'a str, sid: &'a str) -> BoxFuture<'a, Result<Presence, AdapterError>> {
        let removed = {
            let mut presence = lock(&self.presence);
            let removed = presence.get_mut(room).and_then(|m| m.remove(sid)).is_some();
            if presence.get(room).is_some_and(HashMap::is_empty) {
                presence.remove(room);
            }
            removed
        };
        ready(Ok(self.presence(room, 0, removed)))
    }

    fn members<'a>(
        &'a self,
        room: &'a str,
        max_listed: usize,
    ) -> BoxFuture<'a, Result<Presence, AdapterError>> {
        ready(Ok(self.presence(room, max_listed, false)))
    }

    fn nodes(&self) -> BoxFuture<'_, Result<Vec<NodeInfo>, AdapterError>> {
        ready(Ok(vec![NodeInfo { id: self.node.clone(), lease_until_ms: u64::MAX }]))
    }

    fn request<'a>(&'a self, node: Option<&'a str>, _: &'a str, _: Duration) -> BoxFuture<'a, Answers> {
        // One node: there is nobody else to ask.
        let missing = node.filter(|n| *n != self.node).map(str::to_owned).into_iter().collect();
        ready(Answers { answers: Vec::new(), missing })
    }

    fn metrics(&self) -> BrokerMetrics {
        BrokerMetrics { published: self.seq.load(Relaxed), connected: 1, ..BrokerMetrics::default() }
    }
}

impl History for MemoryAdapter {
    fn epoch(&self) -> Arc<str> {
        self.epoch.clone()
    }

    fn replay<'a>(
        &'a self,
        room: &'a str,
        after: u64,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<Entry>, AdapterError>> {
        let Some(log) = lock(&self.logs).get(room).cloned() else {
            let result = if after == 0 { Ok(Vec::new()) } else { Err(gone(room, after)) };
            return ready(result);
        };
        let mut log = lock(&log);
        log.prune(&self.limits, Instant::now());
        if after > log.last || after + 1 < log.first() {
            return ready(Err(gone(room, after)));
        }
        let entries = log
            .entries
            .iter()
            .filter(|(offset, _)| *offset > after)
            .take(limit)
            .map(|(_, r)| r.entry.clone());
        ready(Ok(entries.collect()))
    }

    fn last_offsets<'a>(&'a self, rooms: &'a [&'a str]) -> BoxFuture<'a, Result<Vec<u64>, AdapterError>> {
        let logs = lock(&self.logs);
        ready(Ok(rooms.iter().map(|room| logs.get(*room).map_or(0, |log| lock(log).last)).collect()))
    }

    fn save_session<'a>(
        &'a self,
        session: &'a SessionRecord,
        node: &'a str,
    ) -> BoxFuture<'a, Result<(), AdapterError>> {
        // Attached: the live socket holds the session; only where it is attached is kept.
        let stored = Stored { record: None, node: node.to_owned() };
        lock(&self.sessions).insert(session.id.clone(), stored, None);
        ready(Ok(()))
    }

    fn detach_session<'a>(
        &'a self,
        session: &'a SessionRecord,
        window: Duration,
    ) -> BoxFuture<'a, Result<(), AdapterError>> {
        let now = Instant::now();
        let mut sessions = lock(&self.sessions);
        sessions.expire(now);
        // This session is no longer attached: it takes a place among the detached.
        sessions.remove(session.id.as_str());
        while sessions.timed() >= self.max_detached.max(1) {
            // The oldest is forgotten.
            sessions.remove_soonest();
        }
        let stored = Stored { record: Some(Box::new(session.clone())), node: self.node.clone() };
        sessions.insert(session.id.clone(), stored, Some(now + window));
        ready(Ok(()))
    }

    fn take_session<'a>(
        &'a self,
        id: &'a str,
        node: &'a str,
    ) -> BoxFuture<'a, Result<SessionRecord, AdapterError>> {
        let mut sessions = lock(&self.sessions);
        let result = match sessions.get_mut(id) {
            None => Err(AdapterError::Gone("unknown or expired session".into())),
            Some((None, s)) => Err(AdapterError::Attached { node: s.node.clone() }),
            Some((Some(until), _)) if until <= Instant::now() => {
                sessions.remove(id);
                Err(AdapterError::Gone("the recovery window has passed".into()))
            }
            Some((Some(_), s)) => match s.record.take() {
                Some(record) => {
                    s.node = node.to_owned();
                    sessions.set_deadline(&record.id, None);
                    Ok(*record)
                }
                None => Err(AdapterError::Gone("unknown or expired session".into())),
            },
        };
        ready(result)
    }

    fn drop_session<'a>(&'a self, id: &'a str) -> BoxFuture<'a, ()> {
        lock(&self.sessions).remove(id);
        ready(())
    }

    /// Forgets the detached sessions past their window and, at least every
    /// `SWEEP_EVERY` even without publications, the messages past the history's age.
    fn sweep(&self, now: Instant) {
        lock(&self.sessions).expire(now);
        self.maybe_sweep(self.seq.load(Relaxed), now);
    }
}

fn gone(room: &str, after: u64) -> AdapterError {
    AdapterError::Gone(format!("room {room:?} has no history after offset {after}"))
}

#[cfg(test)]
mod tests {
    use futures_util::FutureExt;

    use super::*;

    fn adapter(limits: HistoryLimits) -> MemoryAdapter {
        MemoryAdapter::new(&HubConfig { history: limits, ..HubConfig::default() })
    }

    fn publish(a: &MemoryAdapter, rooms: &[&str], size: usize) {
        let rooms = rooms.iter().map(|r| (*r).to_owned()).collect();
        a.publish(Publication::new(rooms, vec![], "e", &format!("\"{}\"", "x".repeat(size)))).unwrap();
    }

    fn offsets(a: &MemoryAdapter, room: &str, after: u64) -> Result<Vec<u64>, AdapterError> {
        let entries = futures_util::FutureExt::now_or_never(a.replay(room, after, 100)).unwrap()?;
        Ok(entries.iter().map(|e| e.offset_in(room).unwrap()).collect())
    }

    #[test]
    fn offsets_count_per_room() {
        let a = adapter(HistoryLimits::default());
        publish(&a, &["a"], 1);
        publish(&a, &["b", "a"], 1);
        publish(&a, &["b"], 1);
        assert_eq!(offsets(&a, "a", 0).unwrap(), [1, 2]);
        assert_eq!(offsets(&a, "b", 0).unwrap(), [1, 2]);
        assert_eq!(offsets(&a, "b", 2).unwrap(), Vec::<u64>::new());
        assert!(offsets(&a, "b", 3).is_err(), "an offset from the future");
        assert_eq!(offsets(&a, "nope", 0).unwrap(), Vec::<u64>::new());
        assert!(offsets(&a, "nope", 4).is_err());
        let entries = futures_util::FutureExt::now_or_never(a.replay("a", 0, 1)).unwrap().unwrap();
        assert_eq!(entries.len(), 1, "the limit holds");
    }

    #[test]
    fn history_is_bounded_by_count_and_bytes() {
        let limits = HistoryLimits { max_messages: 3, max_bytes: 1 << 20, max_age: Duration::from_secs(60) };
        let a = adapter(limits);
        for _ in 0..5 {
            publish(&a, &["r"], 10);
        }
        assert!(offsets(&a, "r", 1).is_err());
        assert_eq!(offsets(&a, "r", 2).unwrap(), [3, 4, 5]);
        let limits = HistoryLimits { max_messages: 100, max_bytes: 200, max_age: Duration::from_secs(60) };
        let a = adapter(limits);
        for _ in 0..5 {
            publish(&a, &["r"], 40);
        }
        assert_eq!(offsets(&a, "r", 3).unwrap(), [4, 5], "two publications of about 80 bytes fit in 200");
        assert!(offsets(&a, "r", 2).is_err());
    }

    #[test]
    fn a_session_is_taken_once_and_only_when_detached() {
        let a = adapter(HistoryLimits::default());
        let record = SessionRecord { id: "s-1".into(), ..SessionRecord::default() };
        let take = |id, node| futures_util::FutureExt::now_or_never(a.take_session(id, node)).unwrap();
        assert!(matches!(take("s-1", "n"), Err(AdapterError::Gone(_))));
        futures_util::FutureExt::now_or_never(a.save_session(&record, "n-a")).unwrap().unwrap();
        assert_eq!(take("s-1", "n-b"), Err(AdapterError::Attached { node: "n-a".into() }));
        futures_util::FutureExt::now_or_never(a.detach_session(&record, Duration::from_secs(9)))
            .unwrap()
            .unwrap();
        assert_eq!(take("s-1", "n-b"), Ok(record));
        assert_eq!(take("s-1", "n-c"), Err(AdapterError::Attached { node: "n-b".into() }));
    }

    #[test]
    fn detached_sessions_are_bounded_and_forgotten_by_the_sweep() {
        let config = HubConfig { max_detached_sessions: 3, ..HubConfig::default() };
        let a = MemoryAdapter::new(&config);
        let record = |i: usize| SessionRecord { id: format!("s-{i}"), ..SessionRecord::default() };
        for i in 0..5 {
            a.save_session(&record(i), "n").now_or_never().unwrap().unwrap();
            a.detach_session(&record(i), Duration::from_secs(60 + i as u64)).now_or_never().unwrap().unwrap();
        }
        let take = |i: usize| a.take_session(&format!("s-{i}"), "n").now_or_never().unwrap();
        // The two oldest made room for the last three.
        assert!(matches!(take(0), Err(AdapterError::Gone(_))));
        assert!(matches!(take(1), Err(AdapterError::Gone(_))));
        assert_eq!(take(2), Ok(record(2)));
        // Still there, until a sweep after their window: nothing else touches the store.
        assert_eq!(lock(&a.sessions).len(), 3);
        a.sweep(Instant::now() + Duration::from_secs(63));
        assert_eq!(lock(&a.sessions).len(), 2, "s-2 is attached again, s-3 expired, s-4 not yet");
        assert!(matches!(take(3), Err(AdapterError::Gone(_))));
        a.sweep(Instant::now() + Duration::from_secs(65));
        assert_eq!(lock(&a.sessions).len(), 1, "only the attached one is left");
    }

    #[test]
    fn the_sweep_forgets_messages_past_their_age_without_a_publication() {
        let limits = HistoryLimits { max_messages: 100, max_bytes: 1 << 20, max_age: Duration::from_secs(5) };
        let a = adapter(limits);
        publish(&a, &["r"], 10);
        assert_eq!(lock(&a.logs).len(), 1);
        a.sweep(Instant::now() + Duration::from_secs(1));
        assert_eq!(lock(&a.logs).len(), 1, "within its age");
        a.sweep(Instant::now() + Duration::from_secs(30));
        assert_eq!(lock(&a.logs).len(), 0, "past its age, in a room nobody is in");
    }
}
