//! The hub on the reactor ([`zapsocket::reactor`]): a session is a state machine on its
//! connection's loop, not a task.
//!
//! The loop hands each message to [`session::receive`] in place. A handler's future is
//! polled once there; only one that waits is spawned on the tokio runtime (with its
//! state). What must finish before the next message is handled (the connect
//! middlewares and the socket's registration, the protocol's own requests such as
//! `$join` and `$resume`, a wait for the message rate's token) runs on the runtime
//! and wakes the connection when done ([`Handle::wake`]); a socket at its limit of
//! running handlers waits for one to end. Meanwhile the messages read wait in the
//! session, in order, up to [`HubConfig::max_message`](crate::HubConfig::max_message)
//! bytes (plus [`QUEUED_OVERHEAD`] each); past that the connection is not read
//! ([`Socket::pause`]) and TCP pushes the client back. So a close from the client is
//! still seen while a session waits, as on the async server; what waited is then
//! handled before the session leaves. Everything the hub sends goes through the
//! connection's [`Handle`], in order.
//!
//! An idle session keeps its connection's protocol state, this [`Session`] and the
//! hub's [`SocketState`], with its entries in the registry and the rooms: no task, no
//! future, no waker of its own (docs/BENCHMARKS.md).

use std::collections::VecDeque;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::task::{Context, Waker};
use std::time::Instant;

use futures_util::FutureExt;
use tokio::runtime::Handle as Runtime;
use tokio::sync::oneshot;
use zapsocket::reactor::{Handle, Handler, Socket};
use zapsocket::{CloseCode, HttpResponse, Message, Request, TokenBucket};

use crate::core::{Core, Ctx};
use crate::handler::BoxFuture;
use crate::sender::Sender;
use crate::session::{self, Received, Tasks};
use crate::state::SocketState;

/// Serves a [`Hub`](crate::Hub) on a [`zapsocket::reactor`] server: one per loop (it is
/// `Clone`), made by [`Hub::reactor_handler`](crate::Hub::reactor_handler).
///
/// ```no_run
/// use zapsocket::reactor::Reactor;
/// use zapsocket_realtime::{Hub, SUBPROTOCOL, SUBPROTOCOL_V2};
///
/// # async fn run() -> std::io::Result<()> {
/// let hub = Hub::new();
/// hub.on("chat", |socket, text: String| async move { socket.to("lobby").emit("chat", &text) });
/// let handler = hub.reactor_handler(tokio::runtime::Handle::current());
/// let running = Reactor::builder()
///     .port(8080)
///     .path("/ws")
///     .subprotocol(SUBPROTOCOL_V2)
///     .subprotocol(SUBPROTOCOL)
///     .start(move |_| handler.clone())?;
/// # drop(running);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct HubHandler {
    core: Arc<Core>,
    runtime: Runtime,
    keep_requests: bool,
}

impl std::fmt::Debug for HubHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubHandler").field("node", &self.core.broker.node()).finish()
    }
}

impl HubHandler {
    pub(crate) fn new(core: Arc<Core>, runtime: Runtime) -> Self {
        HubHandler { core, runtime, keep_requests: false }
    }

    /// Keeps each socket's upgrade request for its whole life, so that
    /// [`Socket::request`](crate::Socket::request) answers in every handler, not only in
    /// the connect middlewares. Default: not kept (it is the largest part of an idle
    /// session: a few hundred bytes, a KiB and more with a browser's cookies).
    pub fn keep_requests(mut self, keep: bool) -> Self {
        self.keep_requests = keep;
        self
    }
}

/// One connection's session on its loop ([`Handler::State`] of [`HubHandler`]).
pub struct Session {
    /// The upgrade request, until the connection opens (then the socket keeps it).
    request: Option<Arc<Request>>,
    /// The socket, from the open on (a `$resume` puts another in its place).
    state: Option<Arc<SocketState>>,
    phase: Phase,
    /// What runs on the runtime before the next message: its outcome.
    busy: Option<oneshot::Receiver<Done>>,
    /// Messages read that wait their turn; made at the first.
    queue: Option<Box<Queue>>,
    /// Its message rate and violations, made when first needed (a bucket made then is
    /// as full as one made at the start would be by then).
    limits: Option<Box<Limits>>,
    /// The handlers that wait, running on the runtime; made at the first.
    running: Option<Arc<Mutex<Running>>>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let id = self.state.as_ref().map(|state| state.sid.clone());
        f.debug_struct("Session").field("id", &id).field("phase", &self.phase).finish()
    }
}

/// A session's token buckets ([`HubConfig::max_message_rate`](crate::HubConfig) and
/// `max_violations`).
struct Limits {
    rate: Option<TokenBucket>,
    violations: Option<TokenBucket>,
}

impl Session {
    fn limits(&mut self, core: &Core) -> &mut Limits {
        self.limits.get_or_insert_with(|| {
            let now = Instant::now();
            let config = &core.config;
            Box::new(Limits {
                rate: config.max_message_rate.map(|limit| TokenBucket::full(limit, now)),
                violations: config.max_violations.map(|limit| TokenBucket::full(limit, now)),
            })
        })
    }
}

/// What a waiting message counts for besides its payload, in a session's queue.
pub const QUEUED_OVERHEAD: usize = 64;

/// Messages read while the session could not handle them yet.
#[derive(Default)]
struct Queue {
    messages: VecDeque<Message>,
    bytes: usize,
}

impl Queue {
    fn cost(message: &Message) -> usize {
        message.len() + QUEUED_OVERHEAD
    }

    fn push_back(&mut self, message: Message) {
        self.bytes += Queue::cost(&message);
        self.messages.push_back(message);
    }

    fn push_front(&mut self, message: Message) {
        self.bytes += Queue::cost(&message);
        self.messages.push_front(message);
    }

    fn pop(&mut self) -> Option<Message> {
        let message = self.messages.pop_front()?;
        self.bytes -= Queue::cost(&message);
        Some(message)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// The connect middlewares and the registration run.
    Connecting,
    /// Messages are handled.
    Ready,
    /// Refused by a connect middleware (closing, never registered).
    Refused,
    /// Closing for too many violations.
    Violated,
    /// Closing after a panic in the application's code.
    Failed,
}

/// What a session waited for.
enum Done {
    /// The start: whether the socket was accepted and registered.
    Arrived(bool),
    /// A request of the protocol itself; a `$resume` that succeeded gives the socket
    /// that takes over.
    Reserved(Option<Arc<SocketState>>),
    /// The message rate's token (or the connection's end).
    Token,
}

/// The handlers of a socket that are running on the runtime.
#[derive(Default)]
struct Running {
    count: usize,
    acks: std::collections::HashSet<u64>,
    /// The session waits for one of them to end (at its limit): the next to end wakes it.
    waited: bool,
}

/// [`Tasks`] for [`session::receive`]: polls a handler's future once in place, and spawns
/// it only if it waits.
struct LoopTasks<'a> {
    runtime: &'a Runtime,
    running: &'a mut Option<Arc<Mutex<Running>>>,
    handle: &'a Handle,
}

impl Tasks for LoopTasks<'_> {
    fn answers(&self, ack: Option<u64>) -> bool {
        let (Some(ack), Some(running)) = (ack, self.running.as_ref()) else { return false };
        lock(running).acks.contains(&ack)
    }

    fn push(&mut self, ack: Option<u64>, mut task: BoxFuture<Option<u64>>) {
        let polled = {
            let _runtime = self.runtime.enter();
            task.as_mut().poll(&mut Context::from_waker(Waker::noop()))
        };
        if polled.is_ready() {
            return;
        }
        let running = self.running.get_or_insert_with(Default::default).clone();
        {
            let mut running = lock(&running);
            running.count += 1;
            running.acks.extend(ack);
        }
        let ended = Ended { running, ack, handle: self.handle.clone() };
        self.runtime.spawn(async move {
            let _ended = ended;
            task.await;
        });
    }
}

/// Counts a spawned handler out when it ends, or panics.
struct Ended {
    running: Arc<Mutex<Running>>,
    ack: Option<u64>,
    handle: Handle,
}

impl Drop for Ended {
    fn drop(&mut self) {
        let mut running = lock(&self.running);
        running.count -= 1;
        if let Some(ack) = self.ack {
            running.acks.remove(&ack);
        }
        if std::mem::take(&mut running.waited) {
            self.handle.wake();
        }
    }
}

/// Wakes a connection when dropped: after its work's outcome was sent, or when the
/// work panicked.
struct WakeOnDrop(Handle);

impl Drop for WakeOnDrop {
    fn drop(&mut self) {
        self.0.wake();
    }
}

fn lock(running: &Mutex<Running>) -> std::sync::MutexGuard<'_, Running> {
    running.lock().unwrap_or_else(|p| p.into_inner())
}

impl HubHandler {
    fn ctx(&self, state: &Arc<SocketState>) -> Ctx {
        Ctx { core: self.core.clone(), state: state.clone(), ack: None, request: None }
    }

    /// Runs `work` on the runtime before the next message; it wakes the connection
    /// when done (or when it panicked).
    fn wait_for(&self, ws: &mut Socket<'_, Session>, work: impl Future<Output = Done> + Send + 'static) {
        let wake = WakeOnDrop(ws.handle());
        let (tx, rx) = oneshot::channel();
        self.runtime.spawn(async move {
            let _wake = wake;
            let _ = tx.send(work.await);
        });
        ws.state().busy = Some(rx);
    }

    /// Handles what waits, then `incoming`, in order, as far as the session can now;
    /// keeps the rest. Reads the connection while what waits is under its bound.
    fn pump(&self, ws: &mut Socket<'_, Session>, mut incoming: Option<Message>) {
        let max_running = self.core.config.max_pending_acks.max(1);
        if let Some(queue) = ws.state().queue.as_mut().filter(|queue| !queue.messages.is_empty())
            && let Some(message) = incoming.take()
        {
            queue.push_back(message);
        }
        while ws.state().phase == Phase::Ready && ws.state().busy.is_none() {
            let session = ws.state();
            if let Some(running) = &session.running {
                let mut running = lock(running);
                if running.count >= max_running {
                    running.waited = true;
                    break;
                }
            }
            let next = match session.queue.as_mut().and_then(|queue| queue.pop()) {
                Some(message) => message,
                None => match incoming.take() {
                    Some(message) => message,
                    None => break,
                },
            };
            let data = matches!(next, Message::Text(_) | Message::Binary(_));
            let paced = data && self.core.config.max_message_rate.is_some();
            if let Some(bucket) = paced.then(|| session.limits(&self.core).rate.as_mut()).flatten()
                && !bucket.take(Instant::now())
            {
                self.core.counters.rate_limited.fetch_add(1, Relaxed);
                let wait = bucket.wait(Instant::now());
                session.queue.get_or_insert_default().push_front(next);
                let handle = ws.handle();
                self.wait_for(ws, async move {
                    let token = async {
                        match wait {
                            Some(wait) => zapsocket::time::sleep(wait).await,
                            None => std::future::pending().await,
                        }
                    };
                    // Or the connection's end, so that its session leaves now.
                    tokio::select! {
                        () = token => {}
                        () = handle.closed() => {}
                    }
                    Done::Token
                });
                break;
            }
            self.handle_message(ws, &next);
        }
        let session = ws.state();
        // A session that is closing keeps nothing and goes on reading, for the client's
        // close (what else comes is dropped).
        let stopped = matches!(session.phase, Phase::Refused | Phase::Violated | Phase::Failed);
        if let Some(message) = incoming.filter(|_| !stopped) {
            session.queue.get_or_insert_default().push_back(message);
        }
        let bytes = session.queue.as_ref().map_or(0, |queue| queue.bytes);
        if bytes == 0 || stopped {
            session.queue = None;
        }
        if !stopped && bytes >= self.core.config.max_message {
            ws.pause();
        } else {
            ws.resume();
        }
    }

    /// Handles a message in place (its rate's token taken).
    fn handle_message(&self, ws: &mut Socket<'_, Session>, message: &Message) {
        let session = ws.state();
        let Some(state) = session.state.clone() else { return };
        // The connection's own, kept by its socket (every socket here is on a loop).
        let Some(handle) = state.sender.handle() else { return };
        let ctx = self.ctx(&state);
        let mut tasks = LoopTasks { runtime: &self.runtime, running: &mut session.running, handle };
        match session::receive(&ctx, message, &mut tasks) {
            Received::Handled => {}
            Received::Reserved { name, data, ack } => {
                let (name, data) = (name.into_owned(), data.to_owned());
                self.wait_for(ws, async move {
                    Done::Reserved(session::serve_reserved(&ctx, &name, &data, ack).await)
                });
            }
            Received::Violation => {
                let violations = &mut session.limits(&self.core).violations;
                if violations.as_mut().is_some_and(|bucket| !bucket.take(Instant::now())) {
                    // After the error reply, through the same handle.
                    session.phase = Phase::Violated;
                    session.queue = None;
                    session::count_violation_close(&ctx);
                    handle.close(CloseCode::POLICY_VIOLATION, session::TOO_MANY_VIOLATIONS);
                }
            }
        }
    }

    /// A panic in the application's code (a handler, a middleware) ends this connection
    /// with 1011, not the loop.
    fn guarded(&self, ws: &mut Socket<'_, Session>, f: impl FnOnce(&Self, &mut Socket<'_, Session>)) {
        if std::panic::catch_unwind(AssertUnwindSafe(|| f(self, &mut *ws))).is_err() {
            tracing::error!("realtime: a handler panicked; its connection is closed with 1011");
            self.stop(ws);
        }
    }

    /// Ends the connection with 1011 after a panic.
    fn stop(&self, ws: &mut Socket<'_, Session>) {
        let session = ws.state();
        session.phase = match session.phase {
            Phase::Connecting | Phase::Refused => Phase::Refused,
            Phase::Ready | Phase::Violated | Phase::Failed => Phase::Failed,
        };
        session.queue = None;
        ws.resume();
        ws.handle().close(CloseCode::INTERNAL_ERROR, "internal error");
    }
}

impl Handler for HubHandler {
    type State = Session;

    fn upgrade(&mut self, request: &Request) -> Result<Session, HttpResponse> {
        Ok(Session {
            request: Some(Arc::new(request.clone())),
            state: None,
            phase: Phase::Connecting,
            busy: None,
            queue: None,
            limits: None,
            running: None,
        })
    }

    fn open(&mut self, ws: &mut Socket<'_, Session>) {
        let binary = ws.protocol() == Some(crate::SUBPROTOCOL_V2);
        let handle = ws.handle();
        let Some(request) = ws.state().request.take() else { return };
        let kept = self.keep_requests.then(|| request.clone());
        let state = Arc::new(SocketState::new(Sender::Loop { handle, request: kept }, binary));
        ws.state().state = Some(state.clone());
        // The connect middlewares see the request either way.
        let ctx = Ctx { request: Some(request), ..self.ctx(&state) };
        self.wait_for(ws, async move { Done::Arrived(session::arrive(&ctx).await) });
    }

    fn message(&mut self, ws: &mut Socket<'_, Session>, message: Message) {
        if matches!(ws.state().phase, Phase::Refused | Phase::Violated | Phase::Failed) {
            return;
        }
        self.guarded(ws, |this, ws| this.pump(ws, Some(message)));
    }

    fn wake(&mut self, ws: &mut Socket<'_, Session>) {
        let session = ws.state();
        if let Some(busy) = &mut session.busy {
            let outcome = match busy.try_recv() {
                Err(oneshot::error::TryRecvError::Empty) => return,
                outcome => outcome,
            };
            session.busy = None;
            match outcome {
                Ok(Done::Arrived(true)) if session.phase == Phase::Connecting => session.phase = Phase::Ready,
                Ok(Done::Arrived(_)) => session.phase = Phase::Refused,
                Ok(Done::Reserved(Some(resumed))) => session.state = Some(resumed),
                Ok(Done::Reserved(None) | Done::Token) => {}
                // It panicked (a middleware, say): this connection ends.
                Err(_) => {
                    tracing::error!("realtime: a connection's step panicked; it is closed with 1011");
                    self.stop(ws);
                    return;
                }
            }
        }
        self.guarded(ws, |this, ws| this.pump(ws, None));
    }

    fn close(&mut self, session: Session, code: CloseCode, reason: &str) {
        let Session { state, phase, busy, queue, running, .. } = session;
        let Some(state) = state else { return };
        if phase == Phase::Refused {
            return;
        }
        let (code, reason) = match code {
            CloseCode::ABNORMAL => (None, session::NO_CLOSE_FRAME.to_owned()),
            code => (Some(code.0), reason.to_owned()),
        };
        let (code, reason) = match phase {
            Phase::Violated => (Some(CloseCode::POLICY_VIOLATION.0), session::TOO_MANY_VIOLATIONS.to_owned()),
            _ => (code, reason),
        };
        let runtime = self.runtime.clone();
        let core = self.core.clone();
        self.runtime.spawn(async move {
            let mut ctx = Ctx { core, state, ack: None, request: None };
            // What was running when it ended (its start, a `$join`...) finishes first.
            if let Some(busy) = busy {
                match busy.await {
                    Ok(Done::Arrived(true)) => {}
                    Ok(Done::Arrived(false)) | Err(_) if phase == Phase::Connecting => return,
                    Ok(Done::Reserved(Some(resumed))) => ctx.state = resumed,
                    _ => {}
                }
            }
            // What it had sent is handled, as the async server does once the
            // connection ended (without the message rate); replies go nowhere.
            // A panic in the application's code there is logged; the session still departs.
            let sender = ctx.state.sender.clone();
            if let (Some(queue), Some(handle)) = (queue, sender.handle()) {
                let mut running = running;
                for message in queue.messages {
                    let mut tasks = LoopTasks { runtime: &runtime, running: &mut running, handle };
                    let received = std::panic::catch_unwind(AssertUnwindSafe(|| {
                        session::receive(&ctx, &message, &mut tasks)
                    }));
                    let Ok(received) = received else {
                        tracing::error!("realtime: a handler panicked after its connection ended");
                        continue;
                    };
                    if let Received::Reserved { name, data, ack } = received {
                        let served =
                            AssertUnwindSafe(session::serve_reserved(&ctx, &name, data, ack)).catch_unwind();
                        if let Ok(Some(resumed)) = served.await {
                            ctx.state = resumed;
                        }
                    }
                }
            }
            session::depart(&ctx, code, reason).await;
        });
    }
}

#[cfg(test)]
mod tests {
    /// What an idle session keeps besides the connection (docs/BENCHMARKS.md): a guard,
    /// so that a field added is a decision. The session is inline in the reactor's
    /// connection (432 bytes with it fit jemalloc's 512 class); the socket's state is
    /// an `Arc` (16 bytes more: 448, a class of its own).
    #[test]
    fn idle_session_sizes() {
        let (session, state) = (size_of::<super::Session>(), size_of::<crate::state::SocketState>());
        eprintln!("Session {session} B, SocketState {state} B");
        assert!(session <= 64, "Session is {session} bytes");
        assert!(state <= 432, "SocketState is {state} bytes");
        // A room's delivery reads these: with the `Arc`'s counts, in the first 64 bytes.
        let hot = std::mem::offset_of!(crate::state::SocketState, binary);
        assert!(16 + hot < 64, "binary at {hot}");
    }
}
