//! Timers that need nothing from the runtime: [`sleep`], [`sleep_until`], [`timeout`],
//! [`timeout_at`].
//!
//! zapsocket's own deadlines (the handshake timeout, the close timeout, a client's
//! keepalive) use these, so it runs on a tokio runtime built with `enable_io()` alone.
//! That runtime parks for less: with tokio's timer enabled every park reads the clock and
//! scans the timer wheel, even with no timer armed, which costs about 440 instructions per
//! message on a connection that waits for each message (`zap serve` measures this; see
//! docs/BENCHMARKS.md). The deadlines live on one process-wide thread
//! (`zapsocket-timer`) that sleeps until the earliest one and wakes its task: an armed
//! timer costs one lock to arm and one to disarm, nothing per park.
//!
//! They are coarse-grained like any OS timer (the thread may wake a little late), and
//! `tokio::time::pause` does not affect them.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use std::time::Duration;
//! let slow = zapsocket::time::sleep(Duration::from_secs(60));
//! assert!(zapsocket::time::timeout(Duration::from_millis(10), slow).await.is_err());
//! # }
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::task::{Context, Poll, Waker};
use std::thread;
use std::time::{Duration, Instant};

/// Waits for `duration`.
pub fn sleep(duration: Duration) -> Sleep {
    sleep_until(Instant::now() + duration)
}

/// Waits until `deadline`.
pub fn sleep_until(deadline: Instant) -> Sleep {
    Sleep { deadline, armed: None }
}

/// Runs `future` for at most `duration`: its output, or [`Elapsed`] if the time ran out
/// first (the future is then dropped).
pub fn timeout<F: Future>(duration: Duration, future: F) -> Timeout<F> {
    timeout_at(Instant::now() + duration, future)
}

/// Runs `future` until `deadline` at most. See [`timeout`].
pub fn timeout_at<F: Future>(deadline: Instant, future: F) -> Timeout<F> {
    Timeout { future: Box::pin(future), sleep: sleep_until(deadline) }
}

/// The future of [`sleep`] and [`sleep_until`]: ready once its deadline has passed.
#[derive(Debug)]
#[must_use = "a Sleep does nothing unless awaited"]
pub struct Sleep {
    deadline: Instant,
    /// The timer thread's entry, once polled before the deadline.
    armed: Option<(Key, Arc<Slot>)>,
}

/// The future of [`timeout`] and [`timeout_at`].
#[derive(Debug)]
#[must_use = "a Timeout does nothing unless awaited"]
pub struct Timeout<F> {
    future: Pin<Box<F>>,
    sleep: Sleep,
}

/// The error of a [`Timeout`] whose deadline passed first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Elapsed(());

impl fmt::Display for Elapsed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("deadline has elapsed")
    }
}

impl std::error::Error for Elapsed {}

impl From<Elapsed> for std::io::Error {
    fn from(_: Elapsed) -> Self {
        std::io::ErrorKind::TimedOut.into()
    }
}

impl Sleep {
    /// When this sleep ends.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Whether the deadline has passed. Once armed (polled before its deadline) this
    /// reads a flag the timer thread sets, not the clock.
    pub fn is_elapsed(&self) -> bool {
        match &self.armed {
            Some((_, slot)) => slot.fired.load(Ordering::Acquire),
            None => Instant::now() >= self.deadline,
        }
    }

    /// Moves the deadline; the next poll arms the new one.
    pub fn reset(&mut self, deadline: Instant) {
        self.disarm();
        self.deadline = deadline;
    }

    fn disarm(&mut self) {
        if let Some((key, slot)) = self.armed.take()
            && !slot.fired.load(Ordering::Acquire)
        {
            timer().lock().remove(&key);
        }
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if let Some((_, slot)) = &this.armed {
            if slot.fired.load(Ordering::Acquire) {
                return Poll::Ready(());
            }
            let mut waker = slot.waker.lock().unwrap_or_else(|p| p.into_inner());
            if !waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                *waker = Some(cx.waker().clone());
            }
            drop(waker);
            // The thread sets the flag before it takes the waker: seen here, or it wakes
            // the waker just stored.
            return if slot.fired.load(Ordering::Acquire) { Poll::Ready(()) } else { Poll::Pending };
        }
        if Instant::now() >= this.deadline {
            return Poll::Ready(());
        }
        let slot =
            Arc::new(Slot { fired: AtomicBool::new(false), waker: Mutex::new(Some(cx.waker().clone())) });
        let key = (this.deadline, NEXT_ID.fetch_add(1, Ordering::Relaxed));
        timer().arm(key, slot.clone());
        this.armed = Some((key, slot));
        Poll::Pending
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        self.disarm();
    }
}

impl<F: Future> Future for Timeout<F> {
    type Output = Result<F::Output, Elapsed>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Poll::Ready(output) = self.future.as_mut().poll(cx) {
            return Poll::Ready(Ok(output));
        }
        Pin::new(&mut self.sleep).poll(cx).map(|()| Err(Elapsed(())))
    }
}

/// A deadline, and a number that makes equal deadlines distinct.
type Key = (Instant, u64);

static NEXT_ID: AtomicU64 = AtomicU64::new(0);

/// What an armed sleep shares with the timer thread.
#[derive(Debug)]
struct Slot {
    fired: AtomicBool,
    waker: Mutex<Option<Waker>>,
}

/// The armed deadlines, earliest first, and the thread that fires them.
struct Timer {
    armed: Mutex<BTreeMap<Key, Arc<Slot>>>,
    /// Signalled when a new earliest deadline is armed.
    changed: Condvar,
}

fn timer() -> &'static Timer {
    static TIMER: OnceLock<Timer> = OnceLock::new();
    TIMER.get_or_init(|| {
        let spawned = thread::Builder::new().name("zapsocket-timer".into()).spawn(|| timer().run());
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the timer thread; timeouts will not fire");
        }
        Timer { armed: Mutex::new(BTreeMap::new()), changed: Condvar::new() }
    })
}

impl Timer {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<Key, Arc<Slot>>> {
        self.armed.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn arm(&self, key: Key, slot: Arc<Slot>) {
        let mut armed = self.lock();
        let earliest = armed.first_key_value().is_none_or(|(first, _)| key < *first);
        armed.insert(key, slot);
        drop(armed);
        if earliest {
            self.changed.notify_one();
        }
    }

    fn run(&self) {
        let mut due = Vec::new();
        let mut armed = self.lock();
        loop {
            let now = Instant::now();
            while let Some(entry) = armed.first_entry() {
                if entry.key().0 > now {
                    break;
                }
                due.push(entry.remove());
            }
            if !due.is_empty() {
                drop(armed);
                for slot in due.drain(..) {
                    slot.fired.store(true, Ordering::Release);
                    let waker = slot.waker.lock().unwrap_or_else(|p| p.into_inner()).take();
                    if let Some(waker) = waker {
                        waker.wake();
                    }
                }
                armed = self.lock();
                continue;
            }
            armed = match armed.first_key_value() {
                Some((key, _)) => {
                    let wait = key.0.saturating_duration_since(now);
                    self.changed.wait_timeout(armed, wait).unwrap_or_else(|p| p.into_inner()).0
                }
                None => self.changed.wait(armed).unwrap_or_else(|p| p.into_inner()),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sleeps_at_least_its_duration() {
        let start = Instant::now();
        sleep(Duration::from_millis(30)).await;
        assert!(start.elapsed() >= Duration::from_millis(30));
    }

    #[tokio::test]
    async fn an_earlier_deadline_armed_later_fires_first() {
        let long = tokio::spawn(sleep(Duration::from_secs(30)));
        tokio::task::yield_now().await;
        let start = Instant::now();
        sleep(Duration::from_millis(20)).await;
        assert!(start.elapsed() < Duration::from_secs(5), "the thread waited for the later deadline");
        long.abort();
    }

    #[tokio::test]
    async fn timeout_passes_output_or_elapses() {
        assert_eq!(timeout(Duration::from_secs(5), async { 7 }).await, Ok(7));
        let never = std::future::pending::<()>();
        assert_eq!(timeout(Duration::from_millis(10), never).await, Err(Elapsed(())));
    }

    #[test]
    fn runs_without_tokio_timers() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_io().build().unwrap();
        let woke = rt.block_on(async {
            let start = Instant::now();
            timeout(Duration::from_millis(20), std::future::pending::<()>()).await.unwrap_err();
            start.elapsed()
        });
        assert!(woke >= Duration::from_millis(20));
    }

    #[tokio::test]
    async fn a_dropped_sleep_is_disarmed() {
        let s = armed_sleep().await;
        let key = s.armed.as_ref().unwrap().0;
        assert!(timer().lock().contains_key(&key));
        drop(s);
        assert!(!timer().lock().contains_key(&key));
    }

    #[tokio::test]
    async fn reset_moves_the_deadline() {
        let mut s = armed_sleep().await;
        let start = Instant::now();
        s.reset(Instant::now() + Duration::from_millis(10));
        (&mut s).await;
        assert!(start.elapsed() < Duration::from_secs(5));
        assert!(s.is_elapsed());
    }

    /// A sleep of a minute, polled once: armed on the timer thread.
    async fn armed_sleep() -> Sleep {
        let mut s = sleep(Duration::from_secs(60));
        let polled = std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut s).poll(cx))).await;
        assert!(polled.is_pending());
        s
    }
}
