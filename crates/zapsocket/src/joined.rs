//! Runs a connection's driver and its handler in one task.
//!
//! The handler does the hot path's I/O itself (see `shared/mod.rs`), so the task is polled
//! for it: the handler gets the task's waker and runs on every poll. The driver has a
//! waker of its own that sets a flag: it runs only when woken (a write to finish, a burst
//! of answers to coalesce, the heartbeat, the close), and a wake from the handler while
//! the task is being polled costs no trip through the scheduler.
//!
//! A handler that panics ends there: its connection is closed with 1011 (internal error)
//! and the driver finishes the close as usual, so the peer is told, the server's client
//! list forgets it, and the process and the other connections go on.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

use crate::driver::Driver;

/// The most rounds in one poll before yielding to other tasks.
const MAX_ROUNDS: usize = 32;

/// The driver's waker: it sets a flag, and wakes the task unless the task is being
/// polled (then the poll loop sees the flag).
#[derive(Default)]
struct DriverFlag {
    woken: AtomicBool,
    polling: AtomicBool,
    task: Mutex<Option<Waker>>,
}

impl Wake for DriverFlag {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::SeqCst);
        if !self.polling.load(Ordering::SeqCst)
            && let Some(waker) = &*self.task.lock().unwrap_or_else(|p| p.into_inner())
        {
            // Under the lock, without a clone: a waker only schedules the task.
            waker.wake_by_ref();
        }
    }
}

/// Polls `driver` and `handler` together; ready when both are.
pub(crate) struct Joined<H> {
    driver: Option<Driver>,
    handler: Option<Pin<Box<H>>>,
    flag: Arc<DriverFlag>,
    driver_waker: Waker,
    /// The task waker last handed to `flag`, to compare without locking.
    last_task_waker: Option<Waker>,
}

impl<H> Joined<H> {
    pub(crate) fn new(driver: Driver, handler: H) -> Self {
        let flag = Arc::new(DriverFlag::default());
        // The driver runs on the first poll.
        flag.woken.store(true, Ordering::Relaxed);
        Joined {
            driver: Some(driver),
            handler: Some(Box::pin(handler)),
            driver_waker: Waker::from(flag.clone()),
            flag,
            last_task_waker: None,
        }
    }
}

impl<H> Future for Joined<H>
where
    H: Future<Output = ()>,
{
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if !this.last_task_waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            // Locked only when the task's waker changes (rarely: it is the same task).
            *this.flag.task.lock().unwrap_or_else(|p| p.into_inner()) = Some(cx.waker().clone());
            this.last_task_waker = Some(cx.waker().clone());
        }
        this.flag.polling.store(true, Ordering::SeqCst);
        // The handler has the task's own waker: it runs on every poll of the task (its
        // wakes are the socket's readiness, passed on by `recv()`, and the ones it
        // waits for itself), and a wake while the task runs polls it again after.
        if let Some(handler) = &mut this.handler {
            match std::panic::catch_unwind(AssertUnwindSafe(|| handler.as_mut().poll(cx))) {
                Ok(Poll::Pending) => {}
                Ok(Poll::Ready(())) => this.handler = None,
                Err(panic) => {
                    let what = panic
                        .downcast_ref::<&str>()
                        .copied()
                        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
                        .unwrap_or("a panic");
                    tracing::error!(panic = what, "a connection's handler panicked: closing it with 1011");
                    // Dropping it drops its handles (a panicking Drop is ignored too).
                    let handler = this.handler.take();
                    let _ = std::panic::catch_unwind(AssertUnwindSafe(move || drop(handler)));
                    if let Some(driver) = &this.driver {
                        driver.handler_panicked();
                    }
                    this.flag.woken.store(true, Ordering::SeqCst);
                }
            }
        }
        for _ in 0..MAX_ROUNDS {
            // After the handler: on the first poll it runs before the driver writes the
            // 101 (see `handshake::open`), and what it queued is written here.
            if this.flag.woken.swap(false, Ordering::SeqCst)
                && let Some(driver) = &mut this.driver
                && Pin::new(driver).poll(&mut Context::from_waker(&this.driver_waker)).is_ready()
            {
                this.driver = None;
            }
            if this.driver.is_none() && this.handler.is_none() {
                return Poll::Ready(());
            }
            if !this.flag.woken.load(Ordering::SeqCst) {
                this.flag.polling.store(false, Ordering::SeqCst);
                if !this.flag.woken.load(Ordering::SeqCst) {
                    return Poll::Pending;
                }
                this.flag.polling.store(true, Ordering::SeqCst);
            }
        }
        this.flag.polling.store(false, Ordering::SeqCst);
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}
