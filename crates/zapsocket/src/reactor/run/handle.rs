//! A connection reached from any thread: [`Handle`], and what its loop does with what a
//! handle posts.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64};
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
///
/// `repr(C)`, the fields a send and the loop touch first: with the `Arc`'s counts they
/// fill one cache line (a fan-out to 10,000 members touches 10,000 links).
#[derive(Debug)]
#[repr(C)]
pub(crate) struct Link {
    /// Frame bytes posted by handles that the loop has not queued yet.
    posted: AtomicUsize,
    /// The connection's send queue in bytes, as the loop last saw it.
    queued: AtomicUsize,
    /// The same as the queue's limit counts it (with each frame's overhead), plus what
    /// handles posted (each frame counted as a chunk).
    cost: AtomicUsize,
    /// How many frames `posted` is.
    posted_frames: AtomicU32,
    /// The connection's key in its loop's slab (`u32::MAX` past it: never found).
    key: u32,
    /// Its loop's index.
    index: u32,
    closed: AtomicBool,
    /// Some task waits in `waiters` (so the loop takes their lock only then).
    waited: AtomicBool,
    posted_ops: AtomicU8,
    pub(super) shared: Arc<Shared>,
    /// Tasks waiting for room in the send queue ([`Handle::writable`]) or for the end
    /// ([`Handle::closed`]); each wakes and looks again.
    waiters: Mutex<Vec<(u64, TaskWaker)>>,
    /// The id of the next wait (a wait's entry in `waiters` is its own).
    next_wait: AtomicU64,
}

impl Link {
    pub(super) fn new(shared: Arc<Shared>, index: usize, key: usize) -> Self {
        Link {
            posted: AtomicUsize::new(0),
            queued: AtomicUsize::new(0),
            cost: AtomicUsize::new(0),
            posted_frames: AtomicU32::new(0),
            key: u32::try_from(key).unwrap_or(u32::MAX),
            index: u32::try_from(index).unwrap_or(u32::MAX),
            closed: AtomicBool::new(false),
            waited: AtomicBool::new(false),
            posted_ops: AtomicU8::new(0),
            shared,
            waiters: Mutex::new(Vec::new()),
            next_wait: AtomicU64::new(0),
        }
    }

    fn key(&self) -> usize {
        self.key as usize
    }

    fn remote(&self) -> &Remote {
        &self.shared.remotes[self.index as usize]
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
        let frames = self.posted_frames.load(Ordering::Acquire) as usize;
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
        self.wake_fenced();
    }

    /// [`Link::wake_waiters`] after the fence (one fence serves a whole fan-out).
    fn wake_fenced(&self) {
        // A load first: nobody waits, most of the time.
        if !self.waited.load(Ordering::SeqCst) || !self.waited.swap(false, Ordering::SeqCst) {
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
        self.remote().post_op(self.clone(), op)
    }

    /// Counts a frame of `len` bytes as on its way to the loop; false (and nothing
    /// counted) when the connection ended.
    fn will_post(&self, len: usize) -> bool {
        if self.closed.load(Ordering::Acquire) {
            return false;
        }
        self.posted.fetch_add(len, Ordering::AcqRel);
        self.posted_frames.fetch_add(1, Ordering::AcqRel);
        true
    }

    /// A frame counted by [`Link::will_post`] was refused by a full inbox: it no longer
    /// counts, and the refusal is counted.
    fn refused(&self, len: usize) {
        self.unpost(len);
        self.wake_if_room();
        self.shared.dropped.fetch_add(1, Ordering::Relaxed);
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
        if !self.0.will_post(frame.len()) {
            return false;
        }
        if self.0.post(Op::Send(frame.clone())) {
            return true;
        }
        self.0.refused(frame.len());
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

/// A connection in a fan-out: its key in its loop's slab, and its link.
pub(crate) type Member = (usize, Arc<Link>);

/// One frame for many connections, posted to each of their loops once: a room's
/// fan-out, in place of a [`Handle::send_encoded`] per member (one inbox entry, lock and
/// wake per loop rather than per connection).
///
/// [`Fanout::add`] counts the frame in each connection's
/// [`buffered_amount`](Handle::buffered_amount) at once; [`Fanout::post`] hands the
/// connections to their loops (dropping the fan-out posts what it holds). What it holds
/// counts against a loop's inbox as the frame, [`INBOX_OVERHEAD`](crate::reactor::INBOX_OVERHEAD)
/// and 16 bytes per connection. Each connection gets the frame as from
/// [`Handle::send_encoded`], in the order of the handles' other posts before and after
/// the fan-out's post.
#[derive(Debug)]
pub struct Fanout {
    frame: EncodedFrame,
    /// The connections, by loop (a loop's inbox is its reactor's `remotes[index]`).
    groups: Vec<Vec<Member>>,
}

impl Fanout {
    /// A fan-out of `frame` (encoded once, [`crate::encode`]).
    pub fn new(frame: &EncodedFrame) -> Self {
        Fanout { frame: frame.clone(), groups: Vec::new() }
    }

    /// The frame it sends.
    pub fn frame(&self) -> &EncodedFrame {
        &self.frame
    }

    /// Adds `handle`'s connection; false when it ended.
    pub fn add(&mut self, handle: &Handle) -> bool {
        let link = &handle.0;
        if !link.will_post(self.frame.len()) {
            return false;
        }
        let same_loop = |group: &Vec<Member>| {
            group.first().is_some_and(|(_, first)| {
                first.index == link.index && Arc::ptr_eq(&first.shared, &link.shared)
            })
        };
        // Most fan-outs have one or two loops; the last one used is the likeliest.
        match self.groups.iter_mut().rev().find(|group| same_loop(group)) {
            Some(group) => group.push((link.key(), link.clone())),
            None => self.groups.push(vec![(link.key(), link.clone())]),
        }
        true
    }

    /// Posts to each loop; returns how many connections did not get it because their
    /// loop's inbox was full ([`MAX_INBOX_BYTES`](crate::reactor::MAX_INBOX_BYTES)),
    /// each counted in [`Running::dropped_publishes`](crate::reactor::Running::dropped_publishes).
    pub fn post(mut self) -> usize {
        self.post_groups()
    }

    fn post_groups(&mut self) -> usize {
        let mut refused = 0;
        for links in std::mem::take(&mut self.groups) {
            let Some((_, first)) = links.first() else { continue };
            let first = first.clone();
            let cost = crate::reactor::inbox_cost(&self.frame) + links.len() * size_of::<Member>();
            let command = Command::Fanout { frame: self.frame.clone(), links, cost };
            if let Err(Command::Fanout { links, .. }) = first.remote().try_post(command) {
                links.iter().for_each(|(_, link)| link.refused(self.frame.len()));
                refused += links.len();
            }
        }
        refused
    }
}

impl Drop for Fanout {
    fn drop(&mut self) {
        self.post_groups();
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

    /// Queues a fan-out's frame for each of its connections still there (as
    /// [`Worker::handle_op`] a send), then wakes those waiting for room behind one fence.
    pub(super) fn handle_fanout(&mut self, frame: &EncodedFrame, links: &[Member]) {
        let Worker { conns, cx, .. } = self;
        // The key travels beside the link: the connection is looked up without waiting
        // for the link's cache line.
        for (key, link) in links {
            if let Some(Conn { phase: Phase::Open(open), .. }) = conns.get_mut(*key)
                && open.link.as_ref().is_some_and(|mine| Arc::ptr_eq(mine, link))
                && send_posted(open, link, frame, cx)
            {
                cx.mark(open, *key);
            }
        }
        // Apart from the sends: a locked instruction waits for the stores before it, so
        // one per send would stop the sends' cache misses from overlapping.
        for (_, link) in links {
            link.unpost(frame.len());
        }
        std::sync::atomic::fence(Ordering::SeqCst);
        for (_, link) in links.iter().filter(|(_, link)| link.waited.load(Ordering::SeqCst)) {
            if link.has_room() {
                link.wake_fenced();
            }
        }
    }

    fn apply_op(&mut self, link: &Arc<Link>, op: Op) {
        let Worker { conns, handler, cx, .. } = self;
        let key = link.key();
        let Some(Conn { stream, phase: Phase::Open(open), .. }) = conns.get_mut(key) else { return };
        if !open.link.as_ref().is_some_and(|mine| Arc::ptr_eq(mine, link)) {
            return;
        }
        let open: &mut Open<H::State> = open;
        match op {
            Op::Send(frame) => {
                if !send_posted(open, link, &frame, cx) {
                    return;
                }
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

/// Queues a frame a handle posted (the slow-consumer policy applies); false when the
/// connection is ending and nothing changed.
fn send_posted(open: &mut Live, link: &Link, frame: &EncodedFrame, cx: &Cx) -> bool {
    let config = &cx.shared.settings.config;
    if open.flags & TERMINATE != 0 || open.ws.state() != State::Open {
        return false;
    }
    if open.ws.outbound().cost() >= config.max_send_queue {
        if matches!(config.slow_consumer, SlowConsumer::DropMessage) {
            cx.shared.dropped.fetch_add(1, Ordering::Relaxed);
        } else {
            open.end(CloseCode::POLICY_VIOLATION, "send queue full");
        }
    } else if open.ws.send_encoded(frame).is_err() {
        return false;
    }
    link.note_queue(open.ws.outbound());
    true
}
