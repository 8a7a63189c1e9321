//! Runs a connection's driver and its handler in one task.
//!
//! The handler and the driver wake each other for every message (data read, frame
//! queued, frame written). In one task with a shared waker, those wakes only set a flag
//! while the task is being polled, and the poll loops until neither has more to do: no
//! trip through the scheduler per message.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

/// The most rounds in one poll before yielding to other tasks.
const MAX_ROUNDS: usize = 32;

/// The waker both inner futures see.
#[derive(Default)]
struct Flag {
    polling: AtomicBool,
    woken: AtomicBool,
    task: Mutex<Option<Waker>>,
}

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::SeqCst);
        if !self.polling.load(Ordering::SeqCst) {
            let task = self.task.lock().unwrap_or_else(|p| p.into_inner()).clone();
            if let Some(task) = task {
                task.wake();
            }
        }
    }
}

/// Polls `driver` and `handler` together; ready when both are.
pub(crate) struct Joined<D, H> {
    driver: Option<D>,
    handler: Option<Pin<Box<H>>>,
    flag: Arc<Flag>,
    waker: Waker,
}

impl<D, H> Joined<D, H> {
    pub(crate) fn new(driver: D, handler: H) -> Self {
        let flag = Arc::new(Flag::default());
        let waker = Waker::from(flag.clone());
        Joined { driver: Some(driver), handler: Some(Box::pin(handler)), flag, waker }
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
        {
            let mut task = this.flag.task.lock().unwrap_or_else(|p| p.into_inner());
            if !task.as_ref().is_some_and(|t| t.will_wake(cx.waker())) {
                *task = Some(cx.waker().clone());
            }
        }
        this.flag.polling.store(true, Ordering::SeqCst);
        let mut inner_cx = Context::from_waker(&this.waker);
        for _ in 0..MAX_ROUNDS {
            this.flag.woken.store(false, Ordering::SeqCst);
            if let Some(driver) = &mut this.driver {
                if Pin::new(driver).poll(&mut inner_cx).is_ready() {
                    this.driver = None;
                }
            }
            if let Some(handler) = &mut this.handler {
                if handler.as_mut().poll(&mut inner_cx).is_ready() {
                    this.handler = None;
                }
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
