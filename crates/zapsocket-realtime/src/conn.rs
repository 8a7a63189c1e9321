//! A session on the async server: one task per connection, running the steps of
//! `session` (start, every envelope it sends, end).
//!
//! Handlers of one socket run concurrently, started in arrival order. Room requests
//! (`$join`, `$leave`, `$members`) and `$resume` are done before the next envelope is
//! read, so that what a client sends after a join sees it joined.
//!
//! Two token buckets per socket (`zapsocket::TokenBucket`): past `HubConfig::max_message_rate` a
//! message waits for its token before it is handled, and the socket is not read
//! meanwhile; past `HubConfig::max_violations` the socket is closed with 1008.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use zapsocket::{CloseCode, Message, TokenBucket, WebSocket, WebSocketReceiver};

use crate::core::{Core, Ctx};
use crate::handler::BoxFuture;
use crate::sender::Sender;
use crate::session::{
    NO_CLOSE_FRAME, Received, TOO_MANY_VIOLATIONS, Tasks, arrive, count_violation_close, depart, receive,
    serve_reserved,
};
use crate::state::SocketState;

impl Tasks for Running {
    fn answers(&self, ack: Option<u64>) -> bool {
        Running::answers(self, ack)
    }

    fn push(&mut self, ack: Option<u64>, task: BoxFuture<Option<u64>>) {
        Running::push(self, ack, task);
    }
}

/// The handlers running for a socket, each answering its ack id (if any) when it ends,
/// and the ids they will answer: a client that reuses an id still in use gets
/// `bad_envelope` for the second request (docs/RELIABILITY.md J5). Made at the first
/// handler: an idle socket keeps no task set (it allocates), and its session's future no
/// room for one.
#[derive(Default)]
struct Running(Option<Box<TaskSet>>);

struct TaskSet {
    futures: FuturesUnordered<BoxFuture<Option<u64>>>,
    acks: HashSet<u64>,
}

impl Running {
    fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |tasks| tasks.futures.len())
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn push(&mut self, ack: Option<u64>, task: BoxFuture<Option<u64>>) {
        let tasks = self.0.get_or_insert_with(|| {
            Box::new(TaskSet { futures: FuturesUnordered::new(), acks: HashSet::new() })
        });
        if let Some(ack) = ack {
            tasks.acks.insert(ack);
        }
        tasks.futures.push(task);
    }

    /// Waits for a handler to end; `None` when none runs.
    async fn next(&mut self) -> Option<()> {
        let tasks = self.0.as_mut()?;
        let ack = tasks.futures.next().await?;
        if let Some(ack) = ack {
            tasks.acks.remove(&ack);
        }
        Some(())
    }

    /// Whether a running handler will answer `ack`.
    fn answers(&self, ack: Option<u64>) -> bool {
        ack.is_some_and(|ack| self.0.as_ref().is_some_and(|tasks| tasks.acks.contains(&ack)))
    }
}

pub(crate) async fn run(core: Arc<Core>, ws: WebSocket) {
    let binary = ws.protocol() == Some(crate::SUBPROTOCOL_V2);
    let (sender, mut rx) = ws.split();
    let state = Arc::new(SocketState::new(Sender::Task(sender), binary));
    let mut ctx = Ctx { core: core.clone(), state, ack: None, request: None };
    // The steps of a connection's start and end, and the rare requests, are boxed: a
    // future is as large as its largest branch, and this one lives as long as the session.
    if !Box::pin(arrive(&ctx)).await {
        return;
    }
    let mut running = Running::default();
    let violated = read(&mut ctx, &mut rx, &mut running).await;
    if violated {
        count_violation_close(&ctx);
    }
    let (code, reason) = match (violated, rx.close_frame()) {
        (true, _) => (Some(CloseCode::POLICY_VIOLATION.0), TOO_MANY_VIOLATIONS.to_owned()),
        (false, Some(frame)) => (Some(frame.code.0), frame.reason.to_string()),
        (false, None) => (None, NO_CLOSE_FRAME.to_owned()),
    };
    Box::pin(depart(&ctx, code, reason)).await;
    if !running.is_empty() {
        // Handlers still running finish on their own; their replies go nowhere.
        tokio::spawn(async move { while running.next().await.is_some() {} });
    }
    if violated {
        // After the error reply queued for the last violation.
        ctx.state.sender.close(CloseCode::POLICY_VIOLATION, TOO_MANY_VIOLATIONS).await;
    }
}

/// Reads and handles the socket's messages until its connection ends (`false`) or it
/// has broken the protocol more than `HubConfig::max_violations` allows (`true`).
async fn read(ctx: &mut Ctx, rx: &mut WebSocketReceiver, running: &mut Running) -> bool {
    let config = &ctx.core.config;
    let max_running = config.max_pending_acks.max(1);
    let now = Instant::now();
    let mut rate = config.max_message_rate.map(|limit| TokenBucket::full(limit, now));
    let mut violations = config.max_violations.map(|limit| TokenBucket::full(limit, now));
    loop {
        tokio::select! {
            biased;
            Some(()) = running.next(), if !running.is_empty() => {}
            message = rx.recv(), if running.len() < max_running => match message {
                Some(Ok(message)) => {
                    // What may wait is boxed (a future is as large as its largest
                    // branch, and this one lives as long as the session): the message
                    // rate's wait, and the protocol's own requests.
                    let data = matches!(message, Message::Text(_) | Message::Binary(_));
                    if data && rate.as_mut().is_some_and(|bucket| !bucket.take(Instant::now())) {
                        Box::pin(pace(&mut rate, ctx, running)).await;
                    }
                    let received = match receive(ctx, &message, running) {
                        Received::Reserved { name, data, ack } => {
                            Box::pin(receive_reserved(ctx, &name, data, ack, running)).await;
                            Received::Handled
                        }
                        received => received,
                    };
                    let now = Instant::now();
                    if matches!(received, Received::Violation) && violations.as_mut().is_some_and(|b| !b.take(now)) {
                        return true;
                    }
                }
                Some(Err(e)) => {
                    tracing::debug!(session = %ctx.state.sid, error = %e, "connection failed");
                    return false;
                }
                None => return false,
            },
        }
    }
}

/// The message rate had no token for the message just read: waits for one while the
/// socket's handlers go on and the socket is not read (TCP backpressure). If the
/// connection ends meanwhile, stops pacing: what it had sent is read at once (bounded by
/// the WebSocket layer's read-ahead).
async fn pace(rate: &mut Option<TokenBucket>, ctx: &Ctx, running: &mut Running) {
    let Some(bucket) = rate else { return };
    ctx.core.counters.rate_limited.fetch_add(1, Relaxed);
    loop {
        let wait = bucket.wait(Instant::now());
        if inline(Box::pin(token_or_end(wait, &ctx.state.sender)), running).await {
            *rate = None;
            return;
        }
        if bucket.take(Instant::now()) {
            return;
        }
    }
}

/// Waits `wait` (forever if `None`); `true` if the connection ended first. On
/// zapsocket's timer: `zap serve` runs without tokio's.
async fn token_or_end(wait: Option<Duration>, sender: &Sender) -> bool {
    let deadline = wait.and_then(|wait| Instant::now().checked_add(wait));
    let token = async {
        match deadline {
            Some(deadline) => zapsocket::time::sleep_until(deadline).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        () = token => false,
        () = sender.closed() => true,
    }
}

/// Drives `fut` to its end while the socket's running handlers go on.
async fn inline<T>(fut: impl Future<Output = T>, running: &mut Running) -> T {
    tokio::pin!(fut);
    loop {
        tokio::select! {
            biased;
            out = &mut fut => return out,
            Some(()) = running.next(), if !running.is_empty() => {}
        }
    }
}

/// Serves a request of the protocol itself (`$resume`, `$join`...), which
/// [`receive`] found valid, while the socket's handlers go on.
async fn receive_reserved(ctx: &mut Ctx, name: &str, data: &str, ack: Option<u64>, running: &mut Running) {
    if let Some(resumed) = inline(Box::pin(serve_reserved(ctx, name, data, ack)), running).await {
        ctx.state = resumed;
    }
}
