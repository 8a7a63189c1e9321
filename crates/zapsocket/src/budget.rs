//! One memory budget for incoming data, shared by many connections.
//!
//! Every connection may hold up to its own `max_read_buffer` (64 KiB by default) of
//! incoming data for free: small messages never touch the budget. What it holds beyond
//! that (the rest of a large message being received, fragments assembled, messages
//! decoded and not yet taken by `recv()`) is charged to the budget it is configured with.
//! When the budget is spent, a connection that holds more than its free share stops being
//! read (the peer sees TCP backpressure) until the total falls below the limit again;
//! one that has waited `wait` in vain is failed with close code 1013 (try again later),
//! which frees what it held. Connections holding no more than their free share go on as
//! before, so small messages are still answered while large ones wait.
//!
//! The total held can pass the limit by at most one read (256 KiB) per connection that
//! was under it: a read is charged when it has happened.

use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// The default limit of the process-wide budget: 256 MiB.
pub const DEFAULT_MEMORY_BUDGET: usize = 256 << 20;
/// The default time a connection may wait for the budget before it is failed: 10 s.
pub const DEFAULT_BUDGET_WAIT: Duration = Duration::from_secs(10);

/// A limit on the bytes of incoming data held across connections: the partly received
/// messages and the decoded messages not yet read (see
/// [`WebSocketConfig::memory_budget`](crate::WebSocketConfig::memory_budget)).
///
/// Cheap to clone: clones share one budget. By default every connection of the process
/// shares [`MemoryBudget::process`] (256 MiB, 10 s wait); give a server its own with
/// [`WebSocketConfig::memory_budget`](crate::WebSocketConfig::memory_budget).
///
/// ```
/// use zapsocket::{MemoryBudget, WebSocketConfig};
///
/// let budget = MemoryBudget::new(512 << 20);
/// let config = WebSocketConfig::default().memory_budget(Some(budget.clone()));
/// assert_eq!(budget.used(), 0);
/// # let _ = config;
/// ```
#[derive(Clone)]
pub struct MemoryBudget(Arc<Inner>);

struct Inner {
    limit: usize,
    wait: Duration,
    used: AtomicUsize,
    /// Connections not being read because the budget is spent, now.
    paused: AtomicUsize,
    /// Times a connection was paused.
    pauses: AtomicU64,
    /// Connections failed with 1013 after waiting `wait`.
    refused: AtomicU64,
}

impl MemoryBudget {
    /// A budget of `limit` bytes, with the default wait (10 s) before a paused connection
    /// is failed.
    pub fn new(limit: usize) -> Self {
        Self::with_wait(limit, DEFAULT_BUDGET_WAIT)
    }

    /// A budget of `limit` bytes; a connection paused for `wait` is failed with 1013.
    pub fn with_wait(limit: usize, wait: Duration) -> Self {
        MemoryBudget(Arc::new(Inner {
            limit,
            wait,
            used: AtomicUsize::new(0),
            paused: AtomicUsize::new(0),
            pauses: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        }))
    }

    /// The budget every connection of this process shares unless configured otherwise:
    /// [`DEFAULT_MEMORY_BUDGET`] (256 MiB), [`DEFAULT_BUDGET_WAIT`] (10 s).
    pub fn process() -> Self {
        static PROCESS: OnceLock<MemoryBudget> = OnceLock::new();
        PROCESS.get_or_init(|| MemoryBudget::new(DEFAULT_MEMORY_BUDGET)).clone()
    }

    /// The limit, in bytes.
    pub fn limit(&self) -> usize {
        self.0.limit
    }

    /// How long a paused connection waits before it is failed with 1013.
    pub fn wait(&self) -> Duration {
        self.0.wait
    }

    /// The bytes charged now (what connections hold beyond their free share).
    pub fn used(&self) -> usize {
        self.0.used.load(Ordering::Relaxed)
    }

    /// The connections not being read now because the budget is spent.
    pub fn paused_connections(&self) -> usize {
        self.0.paused.load(Ordering::Relaxed)
    }

    /// How many times a connection was paused for the budget, since it was made.
    pub fn pauses(&self) -> u64 {
        self.0.pauses.load(Ordering::Relaxed)
    }

    /// How many connections were failed with 1013 after waiting in vain.
    pub fn refused_connections(&self) -> u64 {
        self.0.refused.load(Ordering::Relaxed)
    }

    pub(crate) fn is_spent(&self) -> bool {
        self.used() >= self.0.limit
    }

    fn charge(&self, bytes: usize) {
        self.0.used.fetch_add(bytes, Ordering::Relaxed);
    }

    fn release(&self, bytes: usize) {
        self.0.used.fetch_sub(bytes, Ordering::Relaxed);
    }
}

impl PartialEq for MemoryBudget {
    /// Two handles are equal when they share one budget.
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for MemoryBudget {}

impl fmt::Debug for MemoryBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryBudget")
            .field("limit", &self.0.limit)
            .field("used", &self.used())
            .field("paused", &self.paused_connections())
            .finish()
    }
}

/// One connection's account with a budget (or with none: then nothing is ever charged).
///
/// The hot path (a connection holding no more than its free share) is two comparisons:
/// [`Account::settle`] sees nothing to charge, [`Account::may_read`] sees nothing charged.
#[derive(Debug)]
pub(crate) struct Account {
    budget: Option<MemoryBudget>,
    /// What the connection holds for free (`usize::MAX` without a budget).
    free: usize,
    /// What is charged to the budget now.
    charged: usize,
    /// Since when the connection is paused, waiting for the budget.
    paused_since: Option<std::time::Instant>,
    /// A pause started and the driver has not been told.
    pause_started: bool,
}

impl Account {
    pub(crate) fn new(budget: Option<MemoryBudget>, free: usize) -> Self {
        let free = if budget.is_some() { free } else { usize::MAX };
        Account { budget, free, charged: 0, paused_since: None, pause_started: false }
    }

    /// The connection now holds `held` bytes of incoming data: charge or release the
    /// difference.
    #[inline]
    pub(crate) fn settle(&mut self, held: usize) {
        let want = held.saturating_sub(self.free);
        if want != self.charged {
            self.settle_slow(want);
        }
    }

    #[cold]
    #[inline(never)]
    fn settle_slow(&mut self, want: usize) {
        let Some(budget) = &self.budget else { return };
        if want > self.charged {
            budget.charge(want - self.charged);
        } else {
            budget.release(self.charged - want);
        }
        self.charged = want;
        if want == 0 {
            self.resume();
        }
    }

    /// Whether the connection may read more: always while nothing is charged (it holds
    /// no more than its free share), else only while the budget is not spent. Records
    /// the pause and its end.
    #[inline]
    pub(crate) fn may_read(&mut self) -> bool {
        self.charged == 0 || self.may_read_charged()
    }

    #[cold]
    #[inline(never)]
    fn may_read_charged(&mut self) -> bool {
        let Some(budget) = &self.budget else { return true };
        if !budget.is_spent() {
            self.resume();
            return true;
        }
        if self.paused_since.is_none() {
            self.paused_since = Some(std::time::Instant::now());
            self.pause_started = true;
            budget.0.paused.fetch_add(1, Ordering::Relaxed);
            budget.0.pauses.fetch_add(1, Ordering::Relaxed);
        }
        false
    }

    /// Whether a pause started since the last call (the driver must be told, once).
    pub(crate) fn take_pause_started(&mut self) -> bool {
        std::mem::take(&mut self.pause_started)
    }

    fn resume(&mut self) {
        if self.paused_since.take().is_some()
            && let Some(budget) = &self.budget
        {
            budget.0.paused.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// When a paused connection is to be failed.
    pub(crate) fn give_up_at(&self) -> Option<std::time::Instant> {
        let budget = self.budget.as_ref()?;
        self.paused_since.map(|since| since + budget.0.wait)
    }

    /// The connection is failed for the budget (counted) or is over: it holds nothing.
    pub(crate) fn close(&mut self, refused: bool) {
        if refused && let Some(budget) = &self.budget {
            budget.0.refused.fetch_add(1, Ordering::Relaxed);
        }
        self.resume();
        if self.charged != 0 {
            self.settle_slow(0);
        }
    }
}

impl Drop for Account {
    fn drop(&mut self) {
        self.close(false);
    }
}

/// How often a paused connection looks at the budget again.
pub(crate) const RECHECK: Duration = Duration::from_millis(20);
