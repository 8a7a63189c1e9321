//! The driver task of one connection: moves bytes between the socket and the protocol
//! state machine, runs the timers, and ends the transport.
//!
//! Decoding happens in `recv()`, on the reader's task: the driver only reads bytes into
//! the connection's buffer (up to `max_read_buffer`, plus the frame in progress) and
//! writes what is queued, coalescing every queued frame into one vectored write.

use std::future::Future;
use std::io::IoSlice;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncWrite};
use zapsocket_proto::{CloseCode, Role};

use crate::error::Error;
use crate::shared::{Inner, Shared};
use crate::time::Sleep;

/// The waker the socket's reads register: it notes that readiness changed, so a driver
/// woken for something else does not ask an empty socket again (a read that returns
/// `Pending` costs as much as the rest of a small message's work).
#[derive(Default)]
struct ReadFlag {
    woken: AtomicBool,
    waker: Mutex<Option<Waker>>,
}

impl Wake for ReadFlag {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::SeqCst);
        // Woken under the lock, without a clone: a waker only schedules, it never polls
        // (so it cannot come back to this lock).
        if let Some(waker) = &*self.waker.lock().unwrap_or_else(|p| p.into_inner()) {
            waker.wake_by_ref();
        }
    }
}

/// The most slices in one vectored write.
const MAX_IO_SLICES: usize = 64;
/// Reads are at least this large (when the frame in progress needs more, up to
/// `MAX_READ`).
const MIN_READ: usize = 4 * 1024;
const MAX_READ: usize = 256 * 1024;

pub(crate) struct Driver<S> {
    shared: Arc<Shared>,
    io: Io<S>,
    on_done: Option<Box<dyn FnOnce() + Send>>,
}

/// The driver's own state, apart from what it shares with the handles.
struct Io<S> {
    stream: S,
    sleep: Option<Sleep>,
    sleep_at: Option<Instant>,
    /// The socket's write side was shut down.
    shut_down: bool,
    /// When a closed client stops waiting for the server to end the TCP connection.
    linger_until: Option<Instant>,
    /// Data was read since the last timer tick: keep the buffers for reuse.
    active: bool,
    /// The last read returned `Pending`: the socket has our read waker.
    read_pending: bool,
    read_flag: Arc<ReadFlag>,
    read_waker: Waker,
    /// The server's heartbeat thread runs the keepalive timer of this open connection.
    external_keepalive: bool,
    /// The handler runs in the same task (see `joined.rs`): after a read that drained
    /// the socket, let it decode before reading again.
    yield_after_read: bool,
    /// A frame larger than a minimum read arrived on this connection.
    large_frames: bool,
}

impl<S> Driver<S> {
    pub(crate) fn new(stream: S, shared: Arc<Shared>) -> Self {
        let read_flag = Arc::new(ReadFlag::default());
        let io = Io {
            stream,
            sleep: None,
            sleep_at: None,
            shut_down: false,
            linger_until: None,
            active: false,
            read_pending: false,
            read_waker: Waker::from(read_flag.clone()),
            read_flag,
            external_keepalive: false,
            yield_after_read: false,
            large_frames: false,
        };
        Driver { shared, io, on_done: None }
    }

    /// Leaves the keepalive timer of the open connection to the server's heartbeat
    /// thread (see `heartbeat.rs`); the driver still runs the close timers.
    pub(crate) fn external_keepalive(mut self) -> Self {
        self.io.external_keepalive = true;
        self
    }

    /// For a driver polled with its handler in one task (`joined.rs`): once a read has
    /// emptied the socket, the driver returns (woken again at once) so the handler decodes
    /// and answers first; the next poll writes the answer, then reads. This saves a read
    /// attempt and a round per message. Elsewhere a self-wake goes through the scheduler,
    /// so it stays off.
    pub(crate) fn yield_after_read(mut self) -> Self {
        self.io.yield_after_read = true;
        self
    }

    /// Runs `f` when the connection is finished (e.g. to leave a registry).
    pub(crate) fn on_done(mut self, f: impl FnOnce() + Send + 'static) -> Self {
        self.on_done = Some(Box::new(f));
        self
    }
}

/// What a read attempt got.
#[derive(PartialEq, Eq)]
enum Read {
    /// Nothing (the socket had nothing, or reading is paused or over).
    Nothing,
    /// Data, or the end of the stream.
    Data,
    /// Data, and the socket has no more for now.
    Drained,
}

enum Step {
    /// Something changed: go round again.
    Progress,
    /// Data was read: return, woken again at once (see `Driver::yield_after_read`).
    Yield,
    /// Nothing to do until woken.
    Idle,
    /// The connection is over.
    Done,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Future for Driver<S> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        let mut inner = this.shared.lock();
        match &inner.driver_waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => inner.driver_waker = Some(cx.waker().clone()),
        }
        // Bounded rounds keep one busy connection from starving the others.
        for _ in 0..32 {
            match this.io.step(cx, &this.shared, &mut inner) {
                Step::Progress => continue,
                Step::Idle => return Poll::Pending,
                Step::Yield => break,
                Step::Done => {
                    inner.set_done();
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

impl<S: AsyncRead + AsyncWrite + Unpin> Io<S> {
    fn step(&mut self, cx: &mut Context<'_>, shared: &Shared, inner: &mut Inner) -> Step {
        if inner.terminate {
            inner.set_local_close(CloseCode::ABNORMAL, "terminated");
            return Step::Done;
        }
        if shared.handles() == 0 && inner.conn.state() == zapsocket_proto::State::Open {
            // Every handle was dropped: close politely.
            let _ = inner.conn.close(Instant::now(), CloseCode::NORMAL, "");
        }
        // A write only wakes the writers: it gives the driver itself nothing new to do.
        let mut progress = false;
        if let Err(e) = self.write(cx, inner) {
            return fail(inner, e);
        }
        match self.read(cx, inner) {
            Ok(Read::Drained) if self.yield_after_read => return Step::Yield,
            Ok(read) => progress |= read != Read::Nothing,
            Err(e) => return fail(inner, e),
        }
        progress |= inner.drain();
        match self.timers(cx, inner) {
            Ok(fired) => progress |= fired,
            Err(e) => return fail(inner, e),
        }
        if let Some(step) = self.finish(cx, inner) {
            return step;
        }
        if progress { Step::Progress } else { Step::Idle }
    }

    /// Writes everything queued, as few syscalls as the socket allows.
    fn write(&mut self, cx: &mut Context<'_>, inner: &mut Inner) -> Result<bool, Error> {
        let mut wrote = false;
        while !inner.conn.outbound().is_empty() && !self.shut_down {
            let outbound = inner.conn.outbound();
            // One chunk goes out with a plain write (`send`), cheaper than `writev`.
            let result = if outbound.chunk_count() > 1 && self.stream.is_write_vectored() {
                let mut slices = [IoSlice::new(&[]); MAX_IO_SLICES];
                let n = outbound.io_slices(&mut slices);
                Pin::new(&mut self.stream).poll_write_vectored(cx, &slices[..n])
            } else {
                Pin::new(&mut self.stream).poll_write(cx, outbound.first_chunk())
            };
            match result {
                Poll::Ready(Ok(0)) => return Err(std::io::Error::from(std::io::ErrorKind::WriteZero).into()),
                Poll::Ready(Ok(n)) => {
                    outbound.advance(n);
                    wrote = true;
                }
                Poll::Ready(Err(e)) => return Err(e.into()),
                Poll::Pending => break,
            }
        }
        if wrote {
            if let Poll::Ready(Err(e)) = Pin::new(&mut self.stream).poll_flush(cx) {
                return Err(e.into());
            }
            inner.wake_written();
        }
        Ok(wrote)
    }

    /// Reads what the socket has, unless the read buffer is full.
    fn read(&mut self, cx: &mut Context<'_>, inner: &mut Inner) -> Result<Read, Error> {
        if inner.eof {
            return Ok(Read::Nothing);
        }
        if !inner.below_read_limit() {
            inner.read_paused = true;
            return Ok(Read::Nothing);
        }
        inner.read_paused = false;
        let hint = inner.conn.read_hint();
        self.large_frames |= hint > MIN_READ;
        let want = hint.clamp(MIN_READ, MAX_READ);
        let buf = inner.conn.read_buffer();
        if self.large_frames && buf.is_empty() {
            // Start again at the front of the allocation when no message still holds
            // part of it (free now; later, a frame that ran past its end would have to
            // be moved there: a copy of all of it, once per large message). Small
            // frames never get there: a reserve with nothing buffered does the same.
            let _ = buf.try_reclaim(buf.capacity() + 1);
        }
        if buf.capacity() - buf.len() < MIN_READ {
            buf.reserve(want);
        }
        if self.read_pending && !self.read_flag.woken.swap(false, Ordering::SeqCst) {
            // Still registered and no readiness news: the socket has nothing for us.
            return Ok(Read::Nothing);
        }
        let room = buf.capacity() - buf.len();
        {
            let mut waker = self.read_flag.waker.lock().unwrap_or_else(|p| p.into_inner());
            if !waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                *waker = Some(cx.waker().clone());
            }
        }
        let result = tokio_util::io::poll_read_buf(
            Pin::new(&mut self.stream),
            &mut Context::from_waker(&self.read_waker),
            buf,
        );
        self.read_pending = result.is_pending();
        match result {
            Poll::Ready(Ok(0)) => {
                inner.eof = true;
                inner.wake_recv();
                Ok(Read::Data)
            }
            Poll::Ready(Ok(n)) => {
                self.active = true;
                inner.conn.note_received();
                if inner.conn.is_closed() {
                    // Closed: what follows is discarded.
                    inner.conn.read_buffer().clear();
                }
                inner.wake_recv();
                // A read that did not fill the room took all the socket had.
                Ok(if n < room { Read::Drained } else { Read::Data })
            }
            Poll::Ready(Err(e)) => Err(e.into()),
            Poll::Pending => {
                // A connection that has not been active since the last timer tick
                // holds no buffers while it waits.
                if !self.active && inner.conn.read_buffer().is_empty() {
                    inner.conn.release_buffers();
                }
                Ok(Read::Nothing)
            }
        }
    }

    /// Runs the protocol timers; arms a sleep for the next deadline.
    fn timers(&mut self, cx: &mut Context<'_>, inner: &mut Inner) -> Result<bool, Error> {
        if self.external_keepalive && inner.conn.state() == zapsocket_proto::State::Open {
            // Only keepalive deadlines exist while open: the heartbeat thread has them.
            return Ok(false);
        }
        let mut deadline = inner.conn.poll_timeout();
        if let Some(linger) = self.linger_until {
            deadline = Some(deadline.map_or(linger, |d| d.min(linger)));
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
            if !self.active && inner.conn.read_buffer().is_empty() && inner.conn.outbound().is_empty() {
                inner.conn.release_buffers();
            }
            self.active = false;
            let before = inner.conn.outbound().len();
            inner.conn.handle_timeout(now)?;
            if self.linger_until.is_some_and(|l| l <= now) {
                inner.eof = true;
            }
            return Ok(inner.conn.outbound().len() != before || inner.eof);
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
        if inner.eof && !inner.conn.is_closed() && inner.conn.read_buffer().is_empty() {
            // The stream ended with nothing left to decode: no close handshake.
            if let Err(e) = inner.conn.feed_eof() {
                inner.set_error(e.into());
                inner.wake_recv();
            }
        }
        if !inner.conn.is_closed() || !inner.conn.outbound().is_empty() {
            return None;
        }
        if inner.conn.role() == Role::Client && !inner.eof {
            if self.linger_until.is_none() {
                self.linger_until = Some(Instant::now() + inner.conn.config().close_timeout);
                return Some(Step::Progress);
            }
            return None;
        }
        if !self.shut_down {
            match Pin::new(&mut self.stream).poll_shutdown(cx) {
                Poll::Pending => return Some(Step::Idle),
                Poll::Ready(_) => self.shut_down = true,
            }
        }
        Some(Step::Done)
    }
}

fn fail(inner: &mut Inner, error: Error) -> Step {
    if error.is_timeout() {
        inner.set_local_close(CloseCode::ABNORMAL, &error.to_string());
    }
    inner.set_error(error);
    Step::Done
}
