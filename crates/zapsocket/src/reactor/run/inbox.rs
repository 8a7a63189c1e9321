//! What other threads post to a loop: its inbox, bounded in bytes, and its waker.

use super::handle::{Link, Member, Op};
use super::*;

/// What another thread asks of a loop.
#[derive(Debug)]
pub(crate) enum Command {
    /// Deliver a frame (to a topic's subscribers, or to every open socket).
    Publish { target: Target, frame: EncodedFrame, except: Option<usize> },
    /// Stop accepting and close every connection with 1001.
    Shutdown,
    /// What a [`Handle`](super::Handle) asks of its connection; `cost` is what it counts
    /// for in the inbox, decided when it was posted ([`Remote::post_op`]).
    Socket { link: Arc<Link>, op: Op, cost: usize },
    /// A frame for several of its connections ([`Fanout`](super::handle::Fanout)).
    Fanout { frame: EncodedFrame, links: Vec<Member>, cost: usize },
}

/// Who gets a published frame.
#[derive(Clone, Debug)]
pub(crate) enum Target {
    Topic(Arc<str>),
    All,
}

impl Command {
    fn cost(&self) -> usize {
        match self {
            Command::Publish { frame, .. } => crate::reactor::inbox_cost(frame),
            Command::Shutdown => 0,
            Command::Socket { cost, .. } | Command::Fanout { cost, .. } => *cost,
        }
    }
}

thread_local! {
    /// The address of the inbox whose loop runs on this thread (0 on other threads).
    static CURRENT: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// A loop's inbox, as other threads see it.
#[derive(Debug)]
pub(crate) struct Remote {
    inbox: Mutex<Vec<Command>>,
    /// Bytes in the inbox, as [`Command::cost`] counts them.
    queued: AtomicUsize,
    /// The shared bytes of the last frame a handle posted: the same frame posted again
    /// right after (a room's members on this loop) counts its entry, not its bytes again.
    last_frame: AtomicUsize,
    /// A wake is on its way (so a burst of posts wakes the loop once).
    woken: AtomicBool,
    /// The loop stopped: nothing is posted any more.
    dead: AtomicBool,
    waker: Waker,
}

impl Remote {
    pub(super) fn new(waker: Waker) -> Self {
        Remote {
            inbox: Mutex::new(Vec::new()),
            queued: AtomicUsize::new(0),
            last_frame: AtomicUsize::new(0),
            woken: AtomicBool::new(false),
            dead: AtomicBool::new(false),
            waker,
        }
    }

    /// The loop stopped: posts are refused from now on.
    pub(super) fn stop(&self) {
        self.dead.store(true, Ordering::Release);
    }

    /// Queues `command`; false when it was a publish and the inbox is full. Posted from
    /// the loop's own thread (a callback), it is taken at the end of the pass without a
    /// wake.
    pub(crate) fn post(&self, command: Command) -> bool {
        self.try_post(command).is_ok()
    }

    /// [`Remote::post`], handing back what was refused.
    pub(crate) fn try_post(&self, command: Command) -> Result<(), Command> {
        if self.dead.load(Ordering::Acquire) {
            return match command {
                Command::Shutdown => Ok(()),
                refused => Err(refused),
            };
        }
        let cost = command.cost();
        if cost > 0 && self.queued.fetch_add(cost, Ordering::AcqRel) + cost > MAX_INBOX_BYTES {
            self.queued.fetch_sub(cost, Ordering::AcqRel);
            return Err(command);
        }
        self.inbox.lock().unwrap_or_else(|e| e.into_inner()).push(command);
        if !self.woken.swap(true, Ordering::AcqRel) && !self.is_current() {
            let _ = self.waker.wake();
        }
        Ok(())
    }

    /// Posts what a handle asks; false when it is a send and the inbox is full.
    pub(super) fn post_op(&self, link: Arc<Link>, op: Op) -> bool {
        let cost = match &op {
            Op::Send(frame) => {
                let shared = frame.as_bytes().as_ptr() as usize;
                if self.last_frame.swap(shared, Ordering::Relaxed) == shared {
                    crate::reactor::INBOX_OVERHEAD
                } else {
                    crate::reactor::inbox_cost(frame)
                }
            }
            // At most one of each per connection is in an inbox (`Link::posted_ops`).
            Op::Close(..) | Op::Terminate | Op::Wake => 0,
        };
        self.post(Command::Socket { link, op, cost })
    }

    /// This thread is this inbox's loop.
    fn is_current(&self) -> bool {
        CURRENT.with(|current| current.get() == std::ptr::from_ref(self) as usize)
    }

    /// This thread runs this inbox's loop from now on.
    pub(super) fn enter(&self) {
        CURRENT.with(|current| current.set(std::ptr::from_ref(self) as usize));
    }

    /// Whether something was posted since the last [`Remote::take`].
    pub(super) fn has_posts(&self) -> bool {
        self.woken.load(Ordering::Acquire)
    }

    pub(super) fn take(&self, into: &mut Vec<Command>) {
        self.woken.store(false, Ordering::Release);
        std::mem::swap(&mut *self.inbox.lock().unwrap_or_else(|e| e.into_inner()), into);
        let cost: usize = into.iter().map(Command::cost).sum();
        self.queued.fetch_sub(cost, Ordering::AcqRel);
    }
}
