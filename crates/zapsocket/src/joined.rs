//! Runs a connection's driver and its handler in one task.
//!
//! The handler and the driver wake each other for every message (data read, frame
//! queued, frame written). Here each gets its own waker: while the task is being polled
//! a wake only sets that future's flag, and the poll loops, polling just the futures
//! that were woken, until neither has more to do. No trip through the scheduler per
//! message, and no poll of a future that has nothing to do.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

/// The most rounds in one poll before yielding to other tasks.
const MAX_ROUNDS: usize = 32;

/// What both wakers share: the task to wake and whether it is being polled.
#[derive(Default)]
struct Task {
    polling: AtomicBool,
    waker: Mutex<Option<Waker>>,
}

/// One inner future's waker.
struct Flag {
    woken: AtomicBool,
    task: Arc<Task>,
}

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::SeqCst);
        if !self.task.polling.load(Ordering::SeqCst)
            && let Some(waker) = &*self.task.waker.lock().unwrap_or_else(|p| p.into_inner())
        {
            // Under the lock, without a clone: a waker only schedules the task.
            waker.wake_by_ref();
        }
    }
}

impl Flag {
    fn new(task: &Arc<Task>) -> Arc<Flag> {
        // Both futures run on the first poll.
        Arc::new(Flag { woken: AtomicBool::new(true), task: task.clone() })
    }

    fn take(&self) -> bool {
        self.woken.swap(false, Ordering::SeqCst)
    }

    fn is_set(&self) -> bool {
        self.woken.load(Ordering::SeqCst)
    }
}

/// Polls `driver` and `handler` together; ready when both are.
pub(crate) struct Joined<D, H> {
    driver: Option<D>,
    handler: Option<Pin<Box<H>>>,
    task: Arc<Task>,
    driver_flag: Arc<Flag>,
    handler_flag: Arc<Flag>,
    driver_waker: Waker,
    handler_waker: Waker,
    /// The task waker last handed to `task`, to compare without locking.
    last_task_waker: Option<Waker>,
}

impl<D, H> Joined<D, H> {
    pub(crate) fn new(driver: D, handler: H) -> Self {
        let task = Arc::new(Task::default());
        let driver_flag = Flag::new(&task);
        let handler_flag = Flag::new(&task);
        Joined {
            driver: Some(driver),
            handler: Some(Box::pin(handler)),
            driver_waker: Waker::from(driver_flag.clone()),
            handler_waker: Waker::from(handler_flag.clone()),
            task,
            driver_flag,
            handler_flag,
            last_task_waker: None,
        }
    }
}

impl<D, H> Future for Joined<D, H>
where
    D: Future<Output = ()> + Unpin,
    H: Future<Output = ()>,
{
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if !this.last_task_waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            // Locked only when the task's waker changes (rarely: it is the same task).
            *this.task.waker.lock().unwrap_or_else(|p| p.into_inner()) = Some(cx.waker().clone());
            this.last_task_waker = Some(cx.waker().clone());
        }
        this.task.polling.store(true, Ordering::SeqCst);
        for _ in 0..MAX_ROUNDS {
            // The handler goes first: on the first round it runs before the driver
            // writes the 101 (see `handshake::open`), and what it queues is written by
            // the driver poll just below.
            if this.handler_flag.take()
                && let Some(handler) = &mut this.handler
                && handler.as_mut().poll(&mut Context::from_waker(&this.handler_waker)).is_ready()
            {
                this.handler = None;
            }
            if this.driver_flag.take()
                && let Some(driver) = &mut this.driver
                && Pin::new(driver).poll(&mut Context::from_waker(&this.driver_waker)).is_ready()
            {
                this.driver = None;
            }
            if this.driver.is_none() && this.handler.is_none() {
                return Poll::Ready(());
            }
            if !this.driver_flag.is_set() && !this.handler_flag.is_set() {
                this.task.polling.store(false, Ordering::SeqCst);
                if !this.driver_flag.is_set() && !this.handler_flag.is_set() {
                    return Poll::Pending;
                }
                this.task.polling.store(true, Ordering::SeqCst);
            }
        }
        this.task.polling.store(false, Ordering::SeqCst);
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}
