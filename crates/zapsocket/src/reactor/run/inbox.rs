//! What other threads post to a loop: its inbox, bounded in bytes, and its waker.

use super::*;

/// What another thread asks of a loop.
#[derive(Debug)]
pub(crate) enum Command {
    /// Deliver a frame (to a topic's subscribers, or to every open socket).
    Publish { target: Target, frame: EncodedFrame, except: Option<usize> },
    /// Stop accepting and close every connection with 1001.
    Shutdown,
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
        }
    }
}

/// A loop's inbox, as other threads see it.
#[derive(Debug)]
pub(crate) struct Remote {
    inbox: Mutex<Vec<Command>>,
    /// Bytes in the inbox, as [`Command::cost`] counts them.
    queued: AtomicUsize,
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
            woken: AtomicBool::new(false),
            dead: AtomicBool::new(false),
            waker,
        }
    }

    /// The loop stopped: posts are refused from now on.
    pub(super) fn stop(&self) {
        self.dead.store(true, Ordering::Release);
    }

    /// Queues `command`; false when it was a publish and the inbox is full.
    pub(crate) fn post(&self, command: Command) -> bool {
        if self.dead.load(Ordering::Acquire) {
            return matches!(command, Command::Shutdown);
        }
        let cost = command.cost();
        if cost > 0 && self.queued.fetch_add(cost, Ordering::AcqRel) + cost > MAX_INBOX_BYTES {
            self.queued.fetch_sub(cost, Ordering::AcqRel);
            return false;
        }
        self.inbox.lock().unwrap_or_else(|e| e.into_inner()).push(command);
        if !self.woken.swap(true, Ordering::AcqRel) {
            let _ = self.waker.wake();
        }
        true
    }

    pub(super) fn take(&self, into: &mut Vec<Command>) {
        self.woken.store(false, Ordering::Release);
        std::mem::swap(&mut *self.inbox.lock().unwrap_or_else(|e| e.into_inner()), into);
        let cost: usize = into.iter().map(Command::cost).sum();
        self.queued.fetch_sub(cost, Ordering::AcqRel);
    }
}
