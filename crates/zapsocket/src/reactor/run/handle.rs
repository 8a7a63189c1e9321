//! A connection reached from any thread: [`Handle`], and what its loop does with what a
//! handle posts.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, AtomicU64};
use std::task::{Context, Poll as TaskPoll, Waker as TaskWaker};

use super::*;

// `Link::posted_ops`: what is on its way to the loop already (posted at most once each).
/// A `Wake` is in the inbox.
const WAKE_POSTED: u8 = 1;
/// A `Close` is in the inbox.
const CLOSE_POSTED: u8 = 2;
/// A `Terminate` is in the inbox.
const TERMINATE_POSTED: u8 = 4;

/// What a connection and its handles share. Made at the first [`Socket::handle`]: a
/// connection that never hands one out keeps no more than a `None`.
#[derive(Debug)]
pub(crate) struct Link {
    shared: Arc<Shared>,
    index: usize,
    key: usize,
    /// Frame bytes posted by handles that the loop has not queued yet.
    posted: AtomicUsize,
    /// How many frames those are.
    posted_frames: AtomicUsize,
    /// The connection's send queue in bytes, as the loop last saw it.
    queued: AtomicUsize,
    /// The same as the queue's limit counts it (with each frame's overhead), plus what
    /// handles posted (each frame counted as a chunk).
    cost: AtomicUsize,
    closed: AtomicBool,
    /// Some task waits in `waiters` (so the loop takes their lock only then).
    waited: AtomicBool,
    posted_ops: AtomicU8,
    /// Tasks waiting for room in the send queue ([`Handle::writable`]) or for the end
    /// ([`Handle::closed`]); each wakes and looks again.
    waiters: Mutex<Vec<(u64, TaskWaker)>>,
    /// The id of the next wait (a wait's entry in `waiters` is its own).
    next_wait: AtomicU64,
}

impl Link {
    pub(super) fn new(shared: Arc<Shared>, index: usize, key: usize) -> Self {
        Link {
            shared,
            index,
            key,
            posted: AtomicUsize::new(0),
            posted_frames: AtomicUsize::new(0),
            queued: AtomicUsize::new(0),
            cost: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
            waited: AtomicBool::new(false),
            posted_ops: AtomicU8::new(0),
            waiters: Mutex::new(Vec::new()),
            next_wait: AtomicU64::new(0),
        }
    }

    /// The loop saw the send queue: a task waiting for room hears when there is some.
    pub(super) fn saw_queue(&self, queue: &zapsocket_proto::Outbound) {
        self.note_queue(queue);
        self.wake_if_room();
    }

    /// [`Link::saw_queue`] without the wake (one follows).
    fn note_queue(&self, queue: &zapsocket_proto::Outbound) {
        self.queued.store(queue.len(), Ordering::Release);
        self.cost.store(queue.cost(), Ordering::Release);
    }

    fn wake_if_room(&self) {
        if self.has_room() {
            self.wake_waiters();
        }
    }

    /// Whether the send queue, with what is on its way, is under its limit.
    fn has_room(&self) -> bool {
        let posted = self.posted.load(Ordering::Acquire);
        let frames = self.posted_frames.load(Ordering::Acquire);
        self.cost.load(Ordering::Acquire) + posted + frames * zapsocket_proto::CHUNK_OVERHEAD
            < self.shared.settings.config.max_send_queue
    }

    /// The connection ended.
    pub(super) fn ended(&self) {
        self.closed.store(true, Ordering::Release);
        self.wake_waiters();
    }

    fn wake_waiters(&self) {
        // Against the waiter's store then look (`wait`): one of the two sees the other.
        std::sync::atomic::fence(Ordering::SeqCst);
        if !self.waited.swap(false, Ordering::SeqCst) {
            return;
        }
        let waiters = std::mem::take(&mut *self.waiters.lock().unwrap_or_else(|e| e.into_inner()));
        waiters.into_iter().for_each(|(_, waker)| waker.wake());
    }

    /// Ready when `done`; else registers `waker` as wait `id`'s (in place of the one it
    /// left before) and looks again (the loop may have changed things between the look
    /// and the registration).
    fn wait(&self, id: u64, waker: &TaskWaker, done: impl Fn() -> bool) -> TaskPoll<()> {
        if done() {
            return TaskPoll::Ready(());
        }
        let mut waiters = self.waiters.lock().unwrap_or_else(|e| e.into_inner());
        match waiters.iter_mut().find(|(mine, _)| *mine == id) {
            Some((_, left)) => left.clone_from(waker),
            None => waiters.push((id, waker.clone())),
        }
        self.waited.store(true, Ordering::SeqCst);
        drop(waiters);
        std::sync::atomic::fence(Ordering::SeqCst);
        if done() { TaskPoll::Ready(()) } else { TaskPoll::Pending }
    }

    fn post(self: &Arc<Self>, op: Op) -> bool {
        self.shared.remotes[self.index].post_op(self.clone(), op)
    }

    /// A frame posted was queued or dropped: it no longer counts as on its way.
    fn unpost(&self, len: usize) {
        self.posted.fetch_sub(len, Ordering::AcqRel);
        self.posted_frames.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What a handle asks of its connection's loop.
#[derive(Debug)]
pub(crate) enum Op {
    Send(EncodedFrame),
    Close(CloseCode, Box<str>),
    Terminate,
    Wake,
}

/// One connection, from any thread: send to it, close it, or have its loop call
/// [`Handler::wake`] for it. Made by [`Socket::handle`]; clonable, `Send` and `Sync`.
///
/// What a handle does goes through the loop's inbox, in the order it was done, and takes
/// effect on the loop's next pass (at the end of the current pass, from a callback of
/// the same loop). A handle outliving its connection does nothing: its sends return
/// `false`. A frame sent through a handle counts against the loop's inbox
/// ([`MAX_INBOX_BYTES`](crate::reactor::MAX_INBOX_BYTES)) on its way, then against the
/// connection's send queue, where a full queue gets the
/// [`SlowConsumer`](crate::SlowConsumer) policy as a published message does.
#[derive(Clone, Debug)]
pub struct Handle(pub(super) Arc<Link>);

impl Handle {
    /// Queues a text or binary message (a ping or pong is not sent); false when the
    /// connection ended or the loop's inbox is full.
    pub fn send(&self, message: impl Into<Message>) -> bool {
        let message = message.into();
        message.is_data() && self.send_encoded(&crate::clients::encode(message))
    }

    /// Queues a frame encoded once for many ([`crate::encode`]); false when the
    /// connection ended or the loop's inbox is full.
    pub fn send_encoded(&self, frame: &EncodedFrame) -> bool {
        if self.is_closed() {
            return false;
        }
        let len = frame.len();
        self.0.posted.fetch_add(len, Ordering::AcqRel);
        self.0.posted_frames.fetch_add(1, Ordering::AcqRel);
        if self.0.post(Op::Send(frame.clone())) {
            return true;
        }
        self.0.unpost(len);
        self.0.wake_if_room();
        self.0.shared.dropped.fetch_add(1, Ordering::Relaxed);
        false
    }

    /// Starts the close handshake (see [`Socket::close`]); a code that may not be sent
    /// or a reason over 123 bytes closes with 1000 and no reason. Closing twice does
    /// nothing.
    pub fn close(&self, code: CloseCode, reason: &str) {
        if self.0.posted_ops.fetch_or(CLOSE_POSTED, Ordering::AcqRel) & CLOSE_POSTED == 0 {
            self.0.post(Op::Close(code, reason.into()));
        }
    }

    /// Ends the connection without a close handshake (see [`Socket::terminate`]).
    pub fn terminate(&self) {
        if self.0.posted_ops.fetch_or(TERMINATE_POSTED, Ordering::AcqRel) & TERMINATE_POSTED == 0 {
            self.0.post(Op::Terminate);
        }
    }

    /// Has the loop call [`Handler::wake`] for this connection (once, however many
    /// wakes come before it runs): how work done on another thread gets back to the
    /// connection's state.
    pub fn wake(&self) {
        if self.0.posted_ops.fetch_or(WAKE_POSTED, Ordering::AcqRel) & WAKE_POSTED == 0 {
            self.0.post(Op::Wake);
        }
    }

    /// The bytes waiting to be written: what the send queue held when the loop last
    /// looked, plus what handles posted since.
    pub fn buffered_amount(&self) -> usize {
        self.0.queued.load(Ordering::Acquire) + self.0.posted.load(Ordering::Acquire)
    }

    /// Whether the connection ended (its [`Handler::close`] ran, or is about to).
    pub fn is_closed(&self) -> bool {
        self.0.closed.load(Ordering::Acquire)
    }

    /// Waits until the send queue is under
    /// [`WebSocketConfig::max_send_queue`](crate::WebSocketConfig::max_send_queue) (or
    /// the connection ended): for a sender with much to send (a replay, a file) that
    /// should wait for the peer rather than meet the slow-consumer policy.
    pub fn writable(&self) -> impl Future<Output = ()> + Send + '_ {
        Wait::new(&self.0, Until::Room)
    }

    /// Waits until the connection ended.
    pub fn closed(&self) -> impl Future<Output = ()> + Send + '_ {
        Wait::new(&self.0, Until::Closed)
    }
}

enum Until {
    Room,
    Closed,
}

struct Wait<'a> {
    link: &'a Link,
    until: Until,
    /// Its entry in the link's `waiters`.
    id: u64,
    /// It left a waker there, taken back when it is dropped first (a `select!` that
    /// chose another branch), so that waits that end otherwise leave nothing behind.
    registered: bool,
}

impl<'a> Wait<'a> {
    fn new(link: &'a Link, until: Until) -> Self {
        Wait { link, until, id: link.next_wait.fetch_add(1, Ordering::Relaxed), registered: false }
    }
}

impl Drop for Wait<'_> {
    fn drop(&mut self) {
        if self.registered {
            let mut waiters = self.link.waiters.lock().unwrap_or_else(|e| e.into_inner());
            waiters.retain(|(id, _)| *id != self.id);
        }
    }
}

impl Future for Wait<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> TaskPoll<()> {
        let this = self.get_mut();
        let link = this.link;
        let closed = || link.closed.load(Ordering::Acquire);
        let polled = match this.until {
            Until::Closed => link.wait(this.id, cx.waker(), closed),
            Until::Room => link.wait(this.id, cx.waker(), || closed() || link.has_room()),
        };
        this.registered |= polled.is_pending();
        polled
    }
}

impl<H: Handler> Worker<H> {
    /// Does what a handle posted, if its connection is still the one it was made for.
    pub(super) fn handle_op(&mut self, link: &Arc<Link>, op: Op) {
        let sent = match &op {
            Op::Send(frame) => Some(frame.len()),
            _ => None,
        };
        self.apply_op(link, op);
        // After the frame is in the queue's count (`saw_queue`), so that no one sees
        // room that is not there.
        if let Some(len) = sent {
            link.unpost(len);
            link.wake_if_room();
        }
    }

    fn apply_op(&mut self, link: &Arc<Link>, op: Op) {
        let Worker { conns, handler, cx, .. } = self;
        let key = link.key;
        let Some(Conn { stream, phase: Phase::Open(open), .. }) = conns.get_mut(key) else { return };
        if !open.link.as_ref().is_some_and(|mine| Arc::ptr_eq(mine, link)) {
            return;
        }
        let open: &mut Open<H::State> = open;
        match op {
            Op::Send(frame) => {
                let config = &cx.shared.settings.config;
                if open.flags & TERMINATE != 0 || open.ws.state() != State::Open {
                    return;
                }
                if open.ws.outbound().cost() >= config.max_send_queue {
                    if matches!(config.slow_consumer, SlowConsumer::DropMessage) {
                        cx.shared.dropped.fetch_add(1, Ordering::Relaxed);
                    } else {
                        open.end(CloseCode::POLICY_VIOLATION, "send queue full");
                    }
                } else if open.ws.send_encoded(&frame).is_err() {
                    return;
                }
                link.note_queue(open.ws.outbound());
            }
            Op::Close(code, reason) => {
                link.posted_ops.fetch_and(!CLOSE_POSTED, Ordering::AcqRel);
                if open.ws.close(cx.now, code, &reason).is_err() {
                    let _ = open.ws.close(cx.now, CloseCode::NORMAL, "");
                }
            }
            Op::Terminate => {
                link.posted_ops.fetch_and(!TERMINATE_POSTED, Ordering::AcqRel);
                open.end(CloseCode::ABNORMAL, "terminated");
            }
            Op::Wake => {
                link.posted_ops.fetch_and(!WAKE_POSTED, Ordering::AcqRel);
                handler.wake(&mut Socket::of(open, key, stream, cx));
            }
        }
        if !open.ws.outbound().is_empty() || open.ws.is_closed() || open.flags & TERMINATE != 0 {
            cx.mark(open, key);
        }
        if !cx.published.is_empty() {
            deliver_published(conns, cx);
        }
    }
}
