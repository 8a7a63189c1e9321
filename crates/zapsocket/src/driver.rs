//! The driver task of one connection: writes what the handles left queued, reads when
//! no `recv()` is waiting, runs the timers, and ends the transport.
//!
//! The hot path's I/O is the handles' own (see `shared/mod.rs`); the driver is woken for what
//! remains: a write that did not finish, a burst of answers to coalesce, the heartbeat,
//! the close handshake, reading ahead while the handler is busy elsewhere.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use zapsocket_proto::{CloseCode, Lent, Role};

use crate::budget::RECHECK;
use crate::error::Error;
use crate::shared::{Ending, Inner, Life, Read, Reading, Shared};
use crate::time::Sleep;

pub(crate) struct Driver {
    shared: Arc<Shared>,
    io: Io,
    on_done: Option<Box<dyn FnOnce() + Send>>,
}

/// The driver's own state, apart from what it shares with the handles.
struct Io {
    sleep: Option<Sleep>,
    sleep_at: Option<Instant>,
    /// When a closed client stops waiting for the server to end the TCP connection.
    linger_until: Option<Instant>,
    /// The server's heartbeat thread runs the keepalive timer of this open connection.
    external_keepalive: bool,
    /// Whether the handler is busy elsewhere, with data waiting for it.
    busy: Busy,
}

/// What the driver knows of a handler that does not call `recv()`; `calls` is its
/// `recv()` count when this began, so any call since ends it.
#[derive(Clone, Copy)]
enum Busy {
    /// No data waits for it (or a `recv()` waits for data).
    No,
    /// Data waits: at `deadline` the handler counts as busy.
    Watching { deadline: Instant, calls: u64 },
    /// Busy: the driver decodes what arrives, until `recv()` is called again.
    Ahead { calls: u64 },
}

/// How long received data may wait for a handler that does not call `recv()` before the
/// driver decodes it (answering pings, seeing a close). Shorter would hand a handler's
/// messages over behind a protocol error in a later frame while it is still answering
/// the one before (Autobahn's cases 3.2, 4.x, 5.15 for clients).
const BUSY_GRACE: std::time::Duration = std::time::Duration::from_millis(100);

impl Driver {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        let io =
            Io { sleep: None, sleep_at: None, linger_until: None, external_keepalive: false, busy: Busy::No };
        Driver { shared, io, on_done: None }
    }

    /// Leaves the keepalive timer of the open connection to the server's heartbeat
    /// thread (see `heartbeat.rs`); the driver still runs the close timers.
    pub(crate) fn external_keepalive(mut self) -> Self {
        self.io.external_keepalive = true;
        self
    }

    /// The handler panicked: close with 1011 (the driver finishes the close).
    pub(crate) fn handler_panicked(&self) {
        let mut inner = self.shared.lock();
        let _ = inner.conn.close(Instant::now(), CloseCode::INTERNAL_ERROR, "internal error");
        inner.set_local_close(CloseCode::INTERNAL_ERROR, "the handler panicked");
        inner.ending.get_or_insert(Ending::HandlerPanic);
        inner.wake_driver();
    }

    /// Runs `f` when the connection is finished (e.g. to leave a registry).
    pub(crate) fn on_done(mut self, f: impl FnOnce() + Send + 'static) -> Self {
        self.on_done = Some(Box::new(f));
        self
    }
}

enum Step {
    /// Something changed: go round again.
    Progress,
    /// Nothing to do until woken.
    Idle,
    /// The connection is over.
    Done,
    /// A large frame to decode outside the lock, then hand back.
    Lent(Lent),
}

impl Future for Driver {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        let mut inner = this.shared.lock();
        if !inner.driver_waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            inner.driver_waker = Some(cx.waker().clone());
            inner.socket.set_driver_waker(cx.waker());
        }
        // Bounded rounds keep one busy connection from starving the others.
        for _ in 0..32 {
            match this.io.step(cx, &this.shared, &mut inner) {
                Step::Progress => continue,
                Step::Lent(mut lent) => {
                    // Unmasked, inflated and validated without the lock, which sends and
                    // the heartbeat need (nothing else is decoded meanwhile).
                    drop(inner);
                    lent.run();
                    inner = this.shared.lock();
                    inner.take_back_ahead(lent);
                }
                Step::Idle => return Poll::Pending,
                Step::Done => {
                    inner.set_done();
                    if let Some(metrics) = inner.metrics.take() {
                        metrics.ended(this.shared.id, &inner);
                    }
                    drop(inner);
                    if let Some(f) = this.on_done.take() {
                        f();
                    }
                    return Poll::Ready(());
                }
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

impl Io {
    fn step(&mut self, cx: &mut Context<'_>, shared: &Shared, inner: &mut Inner) -> Step {
        if let Some(e) = inner.io_error.take() {
            return fail(inner, e);
        }
        if inner.life == Life::Terminating {
            inner.set_local_close(CloseCode::ABNORMAL, "terminated");
            inner.ending.get_or_insert(Ending::Terminated);
            return Step::Done;
        }
        if shared.handles() == 0 && inner.conn.state() == zapsocket_proto::State::Open {
            // Every handle was dropped: close politely.
            let _ = inner.conn.close(Instant::now(), CloseCode::NORMAL, "");
        }
        // A write only wakes the writers: it gives the driver itself nothing new to do.
        let mut progress = false;
        if let Err(e) = inner.write_socket(cx) {
            return fail(inner, e);
        }
        let wants = inner.drain_wanted();
        inner.socket.set_driver_wants(wants);
        match inner.read_socket() {
            Ok(read) => progress |= read != Read::Nothing,
            Err(e) => return fail(inner, e),
        }
        let mut wake_at = self.busy(inner);
        let (decoded, lent) = inner.drain(matches!(self.busy, Busy::Ahead { .. }));
        progress |= decoded;
        if let Some(lent) = lent {
            return Step::Lent(lent);
        }
        if let Some(give_up_at) = inner.account.give_up_at() {
            // Paused for the memory budget: look again soon, fail it at its deadline.
            let now = Instant::now();
            if give_up_at <= now {
                progress |= inner.give_up_on_budget(now);
            } else {
                let at = give_up_at.min(now + RECHECK);
                wake_at = Some(wake_at.map_or(at, |w| w.min(at)));
            }
        }
        match self.timers(cx, inner, wake_at) {
            Ok(fired) => progress |= fired,
            Err(e) => return fail(inner, e),
        }
        if let Some(step) = self.finish(cx, inner) {
            return step;
        }
        if progress { Step::Progress } else { Step::Idle }
    }

    /// Watches for a handler busy elsewhere: data waits, no `recv()` waits, and none is
    /// called for `BUSY_GRACE`; then `drain` decodes ahead until `recv()` is called.
    /// Returns the deadline to wake at while watching. (Runs only when the driver does:
    /// not on the hot path.)
    #[inline(never)]
    fn busy(&mut self, inner: &Inner) -> Option<Instant> {
        let calls = inner.recv_calls;
        if matches!(self.busy, Busy::Ahead { calls: c } if c == calls) {
            return None;
        }
        // (When `drain` decodes anyway, closing or for `closed()`, there is nothing to watch.)
        let waiting = inner.conn.undecoded_len() != 0 && !inner.recv_waiting && !inner.drain_wanted();
        if !waiting {
            self.busy = Busy::No;
            return None;
        }
        match self.busy {
            Busy::Watching { deadline, calls: c } if c == calls => {
                if Instant::now() < deadline {
                    return Some(deadline);
                }
                self.busy = Busy::Ahead { calls };
                None
            }
            _ => {
                let deadline = Instant::now() + BUSY_GRACE;
                self.busy = Busy::Watching { deadline, calls };
                Some(deadline)
            }
        }
    }

    /// Runs the protocol timers; arms a sleep for the next deadline (`busy_until` too:
    /// the end of `BUSY_GRACE`, or the next look at the memory budget).
    fn timers(
        &mut self,
        cx: &mut Context<'_>,
        inner: &mut Inner,
        busy_until: Option<Instant>,
    ) -> Result<bool, Error> {
        // Only keepalive deadlines exist while open: the heartbeat thread has them.
        let keepalive_elsewhere =
            self.external_keepalive && inner.conn.state() == zapsocket_proto::State::Open;
        if keepalive_elsewhere && busy_until.is_none() {
            return Ok(false);
        }
        let mut deadline = if keepalive_elsewhere { None } else { inner.conn.poll_timeout() };
        if let Some(linger) = self.linger_until {
            deadline = Some(deadline.map_or(linger, |d| d.min(linger)));
        }
        if let Some(busy) = busy_until {
            deadline = Some(deadline.map_or(busy, |d| d.min(busy)));
        }
        let Some(deadline) = deadline else {
            if inner.conn.config().ping_interval.is_some() && !inner.conn.is_closed() {
                // Start the keepalive clock.
                inner.conn.handle_timeout(Instant::now())?;
                return Ok(true);
            }
            self.sleep = None;
            return Ok(false);
        };
        if self.sleep_at == Some(deadline) && self.sleep.as_ref().is_some_and(|s| !s.is_elapsed()) {
            // Armed, not due, and registered with this task's waker: no clock read.
            return Ok(false);
        }
        let now = Instant::now();
        if deadline <= now {
            inner.release_if_idle();
            let before = inner.conn.outbound().len();
            inner.conn.handle_timeout(now)?;
            if self.linger_until.is_some_and(|l| l <= now) {
                inner.reading = Reading::Ended;
            }
            return Ok(inner.conn.outbound().len() != before || inner.eof());
        }
        if self.sleep_at == Some(deadline) {
            // Armed and registered with this task's waker, which does not change.
            return Ok(false);
        }
        let sleep = match &mut self.sleep {
            Some(s) => {
                s.reset(deadline);
                s
            }
            None => self.sleep.insert(crate::time::sleep_until(deadline)),
        };
        self.sleep_at = Some(deadline);
        if Pin::new(sleep).poll(cx).is_ready() {
            self.sleep_at = None;
            return Ok(true);
        }
        Ok(false)
    }

    /// Ends the transport once the protocol is closed and everything is written: a
    /// server shuts its write side at once (RFC 6455 §7.1.1), a client waits for the
    /// server to end the connection, up to the close timeout.
    fn finish(&mut self, cx: &mut Context<'_>, inner: &mut Inner) -> Option<Step> {
        if inner.eof()
            && !inner.conn.is_closed()
            && inner.conn.read_buffer().is_empty()
            && !inner.conn.lending()
        {
            // The stream ended with nothing left to decode: no close handshake. (A
            // frame the reader decodes outside the lock comes first: then the reader
            // reports the end.)
            if let Err(e) = inner.conn.feed_eof() {
                inner.set_error(e.into());
                inner.wake_recv();
            }
        }
        if !inner.conn.is_closed() || !inner.conn.outbound().is_empty() {
            return None;
        }
        if inner.conn.role() == Role::Client && !inner.eof() {
            if self.linger_until.is_none() {
                self.linger_until = Some(Instant::now() + inner.conn.config().close_timeout);
                return Some(Step::Progress);
            }
            return None;
        }
        if !inner.socket.shut_down {
            match inner.socket.poll_shutdown(cx) {
                Poll::Pending => return Some(Step::Idle),
                Poll::Ready(_) => inner.socket.shut_down = true,
            }
        }
        Some(Step::Done)
    }
}

fn fail(inner: &mut Inner, error: Error) -> Step {
    if error.is_timeout() {
        inner.set_local_close(CloseCode::ABNORMAL, &error.to_string());
    }
    let cause = match error.protocol_error() {
        Some(zapsocket_proto::Error::KeepaliveTimeout) => Ending::Heartbeat,
        Some(zapsocket_proto::Error::CloseTimeout) => Ending::CloseTimeout,
        _ if error.is_timeout() => Ending::WriteTimeout,
        _ if error.is_io() => Ending::ConnectionLost,
        _ => Ending::Error,
    };
    inner.ending.get_or_insert(cause);
    inner.set_error(error);
    Step::Done
}
