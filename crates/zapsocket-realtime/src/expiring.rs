//! What the hub keeps for a while and must forget on time, even on a server gone quiet:
//! [`Expiring`], a map whose entries may have a deadline, and the process-wide thread
//! that sweeps them ([`register`]).
//!
//! The entries with a deadline are also kept in deadline order, so forgetting the expired
//! ones and finding the oldest cost O(log n) each, not a scan of the map (which, done at
//! each disconnect of a busy hub, grew with the sessions kept). A map that shrank to a
//! quarter of its capacity gives the rest back.

use std::borrow::Borrow;
use std::collections::{BTreeSet, HashMap};
use std::hash::Hash;
use std::sync::{Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

/// How often the sweeping thread runs.
pub(crate) const SWEEP_PERIOD: Duration = Duration::from_secs(1);

/// A map whose entries may carry a deadline (`None`: kept until removed).
pub(crate) struct Expiring<K, V> {
    map: HashMap<K, (Option<Instant>, V)>,
    /// The entries with a deadline, soonest first.
    order: BTreeSet<(Instant, K)>,
}

impl<K, V> Default for Expiring<K, V> {
    fn default() -> Self {
        Expiring { map: HashMap::new(), order: BTreeSet::new() }
    }
}

impl<K: Hash + Eq + Ord + Clone, V> Expiring<K, V> {
    /// How many entries, with a deadline or not.
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// How many entries have a deadline.
    pub(crate) fn timed(&self) -> usize {
        self.order.len()
    }

    /// Inserts (or replaces) `key`, with a deadline or none.
    pub(crate) fn insert(&mut self, key: K, value: V, until: Option<Instant>) {
        if let Some(at) = until {
            self.order.insert((at, key.clone()));
        }
        if let Some((Some(old), _)) = self.map.insert(key.clone(), (until, value))
            && Some(old) != until
        {
            self.order.remove(&(old, key));
        }
    }

    /// The entry of `key` with its deadline.
    pub(crate) fn get_mut<Q>(&mut self, key: &Q) -> Option<(Option<Instant>, &mut V)>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.map.get_mut(key).map(|(until, value)| (*until, value))
    }

    /// Sets (or clears) the deadline of `key`; false when there is no such entry.
    pub(crate) fn set_deadline(&mut self, key: &K, until: Option<Instant>) -> bool {
        let Some((old, _)) = self.map.get_mut(key) else { return false };
        let old = std::mem::replace(old, until);
        if old != until {
            if let Some(at) = old {
                self.order.remove(&(at, key.clone()));
            }
            if let Some(at) = until {
                self.order.insert((at, key.clone()));
            }
        }
        true
    }

    /// Removes `key` and returns its value.
    pub(crate) fn remove<Q>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let (key, (until, value)) = self.map.remove_entry(key)?;
        if let Some(at) = until {
            self.order.remove(&(at, key));
        }
        self.shrink();
        Some(value)
    }

    /// Removes the entry with the soonest deadline.
    pub(crate) fn remove_soonest(&mut self) -> Option<(K, V)> {
        let (_, key) = self.order.pop_first()?;
        let (_, value) = self.map.remove(&key)?;
        self.shrink();
        Some((key, value))
    }

    /// Removes the entries whose deadline is `now` or past; returns how many.
    pub(crate) fn expire(&mut self, now: Instant) -> usize {
        let mut n = 0;
        while let Some((at, _)) = self.order.first()
            && *at <= now
        {
            if let Some((_, key)) = self.order.pop_first() {
                self.map.remove(&key);
                n += 1;
            }
        }
        if n > 0 {
            self.shrink();
        }
        n
    }

    /// Gives back most of the map's capacity once it is three quarters empty.
    fn shrink(&mut self) {
        if self.map.capacity() > 64 && self.map.len() < self.map.capacity() / 4 {
            self.map.shrink_to(self.map.len() * 2);
        }
    }
}

/// What the sweeping thread calls about once a second ([`SWEEP_PERIOD`]).
pub(crate) trait Sweep: Send + Sync {
    /// Forgets what expired by `now`.
    fn sweep(&self, now: Instant);
}

/// Has `item` swept about once a second for as long as it lives (it is held weakly), on
/// one process-wide thread (`zapsocket-sweep`) started with the first registration.
pub(crate) fn register(item: Weak<dyn Sweep>) {
    static ITEMS: OnceLock<Mutex<Vec<Weak<dyn Sweep>>>> = OnceLock::new();
    let mut started = false;
    let items = ITEMS.get_or_init(|| {
        started = true;
        Mutex::new(Vec::new())
    });
    items.lock().unwrap_or_else(|p| p.into_inner()).push(item);
    if !started {
        return;
    }
    let spawned = std::thread::Builder::new().name("zapsocket-sweep".into()).spawn(move || {
        loop {
            std::thread::sleep(SWEEP_PERIOD);
            let live: Vec<_> = {
                let mut items = items.lock().unwrap_or_else(|p| p.into_inner());
                items.retain(|item| item.strong_count() > 0);
                items.iter().filter_map(Weak::upgrade).collect()
            };
            let now = Instant::now();
            for item in live {
                // A panicking sweep must not stop the others' (its lock is poisoned, and
                // the locks here all recover from poisoning).
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| item.sweep(now)));
            }
        }
    });
    if let Err(e) = spawned {
        tracing::error!(
            "cannot start the sweeping thread ({e}): expired sessions are forgotten only as new ones come"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(t0: Instant, secs: u64) -> Option<Instant> {
        Some(t0 + Duration::from_secs(secs))
    }

    #[test]
    fn expire_removes_what_is_due_and_keeps_the_rest() {
        let t0 = Instant::now();
        let mut m: Expiring<String, u32> = Expiring::default();
        m.insert("a".into(), 1, at(t0, 1));
        m.insert("b".into(), 2, at(t0, 3));
        m.insert("c".into(), 3, None);
        assert_eq!(m.expire(t0), 0);
        assert_eq!(m.expire(t0 + Duration::from_secs(2)), 1);
        assert!(m.get_mut("a").is_none());
        assert_eq!((m.len(), m.timed()), (2, 1));
        assert_eq!(m.expire(t0 + Duration::from_secs(60)), 1);
        assert_eq!(m.get_mut("c").map(|(until, v)| (until, *v)), Some((None, 3)));
    }

    #[test]
    fn a_new_deadline_replaces_the_old_one_in_the_order() {
        let t0 = Instant::now();
        let mut m: Expiring<String, u32> = Expiring::default();
        m.insert("a".into(), 1, at(t0, 1));
        m.insert("b".into(), 2, at(t0, 2));
        // Re-inserted later, then cleared, then set again: one place in the order each time.
        m.insert("a".into(), 10, at(t0, 5));
        assert_eq!(m.timed(), 2);
        assert!(m.set_deadline(&"b".to_string(), None));
        assert_eq!(m.timed(), 1);
        assert_eq!(m.expire(t0 + Duration::from_secs(3)), 0, "a's old deadline is gone");
        assert!(m.set_deadline(&"b".to_string(), at(t0, 4)));
        assert_eq!(m.remove_soonest(), Some(("b".to_string(), 2)));
        assert_eq!(m.remove("a"), Some(10));
        assert_eq!((m.len(), m.timed()), (0, 0));
        assert!(!m.set_deadline(&"a".to_string(), None));
    }

    #[test]
    fn a_map_that_empties_gives_its_capacity_back() {
        let t0 = Instant::now();
        let mut m: Expiring<u32, [u8; 64]> = Expiring::default();
        for i in 0..10_000 {
            m.insert(i, [0; 64], at(t0, u64::from(i % 10)));
        }
        let full = m.map.capacity();
        assert!(full >= 10_000);
        m.expire(t0 + Duration::from_secs(8));
        assert_eq!(m.len(), 1_000);
        assert!(m.map.capacity() <= full / 4, "capacity {} of {full}", m.map.capacity());
    }

    #[test]
    fn registered_items_are_swept_while_they_live() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicUsize, Ordering};
        struct Count(AtomicUsize);
        impl Sweep for Count {
            fn sweep(&self, _: Instant) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let item = Arc::new(Count(AtomicUsize::new(0)));
        let weak: Weak<dyn Sweep> = Arc::downgrade(&item) as Weak<dyn Sweep>;
        register(weak);
        let deadline = Instant::now() + Duration::from_secs(10);
        while item.0.load(Ordering::SeqCst) < 2 {
            assert!(Instant::now() < deadline, "not swept twice in 10 s");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
