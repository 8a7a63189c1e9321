//! The state a connection's handles share with its driver task. This file: the state,
//! the handles' I/O, sends and wakers; `inbound.rs`: decoding and what is decoded ahead
//! of `recv()`; `ending.rs`: how a connection ends, and why.
//!
//! The handles do the hot path's I/O themselves, under the lock: `recv()` reads the
//! socket when nothing is buffered and decodes on its own task, and a send writes at
//! once when nothing else is queued and no received data waits to be handled (so a
//! burst of answers still goes out in one write). The driver writes what is left,
//! reads when no `recv()` is waiting, runs the timers and ends the transport. An echo
//! is one poll of one task: no wake of the driver, no second round.
//!
//! Who touches the socket, and when (always under this lock; the stream itself, its
//! buffers and readiness are `transport.rs`'s, which knows nothing of this state):
//!
//! | who | reads | writes |
//! |---|---|---|
//! | `recv()` (the reader's task) | when nothing decoded waits for it; parks its waker on the read flag | the close it answers or sends for a violation, at once; a pong it queues wakes the driver |
//! | a send (any task) | never | when the queue was empty, nothing received waits to be handled, and the driver has polled once (`write_through`, with the driver's waker: a write that cannot finish is the driver's) |
//! | the driver (the connection's task on a server, a spawned task on a client) | when no `recv()` waits (reading ahead, up to `max_read_buffer`), and while closing | whatever is left queued; it alone shuts the stream down |
//! | the heartbeat thread | never | never: it queues a ping and wakes the driver, and frees the buffers of a connection idle since its last tick |
//!
//! Readiness: reads register the read flag's waker whoever reads, and the flag hands a
//! wake to a parked `recv()` or else to the driver; writes register the driver's waker.
//!
//! Decoding is done under the lock, except the costly work of a large data frame
//! (unmasking, UTF-8 validation, inflating: from 16 KiB of payload, or 256 bytes
//! compressed; `inbound::LEND_MIN`): the protocol lends that frame out
//! (`Connection::poll_event_lending`), whoever decodes (`recv()`, or the driver) does
//! the work after releasing the lock and hands it back. Nothing else is decoded while a
//! frame is out, so messages keep their order, and sends, the heartbeat and the driver's
//! writes never wait for an inflate. Compressing is done before the lock is taken when
//! the connection compresses each message on its own (a server with
//! `server_no_context_takeover`, the default): a large message, or a frame shared by a
//! broadcast, is compressed by its sender (`WebSocketSender::prepare`,
//! `EncodedFrame::prepare_compressed`); with context takeover the compressor's state is
//! the connection's, and compressing stays under its lock.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use zapsocket_proto::deflate::DeflateParams;
use zapsocket_proto::{CloseCode, CloseFrame, Connection, EncodedFrame, State};

use crate::budget::Account;
use crate::config::{SlowConsumer, WebSocketConfig};
use crate::error::{Error, Kind, Result};
use crate::message::Message;
use crate::request::Request;
use crate::transport::{Socket, Transport};

mod ending;
mod inbound;

pub(crate) use ending::Ending;

/// Where a connection stands, like the browser's and `ws`'s `readyState`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReadyState {
    /// The handshake is in progress.
    Connecting,
    /// Messages flow both ways.
    Open,
    /// The close handshake has started; nothing more can be sent.
    Closing,
    /// The connection is closed and the transport released.
    Closed,
}

/// What a read attempt got.
#[derive(PartialEq, Eq)]
pub(crate) enum Read {
    /// Nothing (the socket had nothing, or reading is paused or over).
    Nothing,
    /// Data, or the end of the stream.
    Data,
}

/// Whether a connection's socket is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reading {
    /// As data comes.
    On,
    /// Not now: the read buffer is full (`max_read_buffer`, plus the frame in progress).
    Paused,
    /// The transport reached its end (reported to the protocol when what is buffered
    /// is decoded).
    Ended,
}

/// How far a connection is from its end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Life {
    /// The driver runs.
    Running,
    /// To end at once, without a close handshake: `terminate()`, the slow-consumer
    /// policy, the write timeout or a keepalive that failed. The driver ends it.
    Terminating,
    /// The driver finished; the transport is gone.
    Done,
}

/// A task waiting on a connection. The three kinds share one list: they are rare, and an
/// idle connection keeps a single empty `Vec`.
#[derive(Debug)]
enum Waiter {
    /// For everything up to this offset of the send queue to be written.
    Written(u64, Waker),
    /// For room in the send queue.
    Space(Waker),
    /// For the connection's end.
    Done(Waker),
}

impl Waiter {
    fn wake(self) {
        match self {
            Waiter::Written(_, waker) | Waiter::Space(waker) | Waiter::Done(waker) => waker.wake(),
        }
    }
}

/// One connection's shared state: the protocol state machine, wakers, and counters.
#[derive(Debug)]
pub(crate) struct Shared {
    inner: Mutex<Inner>,
    /// User handles alive (`WebSocket`, senders, receiver). At zero the driver closes.
    handles: AtomicUsize,
    pub(crate) id: u64,
    /// What the handshake settled, read without the lock.
    pub(crate) info: Info,
}

/// What is known about a connection besides its state, settled by the handshake.
#[derive(Debug)]
pub(crate) struct Info {
    pub(crate) request: Option<Request>,
    pub(crate) protocol: Option<String>,
    pub(crate) peer_addr: Option<SocketAddr>,
    pub(crate) deflate: Option<DeflateParams>,
    /// What the server's `authorize` hook attached.
    pub(crate) extensions: crate::Extensions,
    /// How the connection compresses a message on its own, when it does: large
    /// messages are then compressed before the connection's lock is taken.
    pub(crate) alone: Option<zapsocket_proto::CompressAlone>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) conn: Connection,
    pub(crate) max_send_queue: usize,
    pub(crate) slow_consumer: SlowConsumer,
    pub(crate) max_read_buffer: usize,
    pub(crate) driver_waker: Option<Waker>,
    /// The waker of the last `recv()` that waited (kept to compare without cloning).
    recv_waker: Option<Waker>,
    /// A `recv()` waits: `wake_recv` wakes it.
    pub(crate) recv_waiting: bool,
    /// Counts `recv()` polls: the driver sees from it whether the handler came back for
    /// data within `BUSY_GRACE` (see `driver.rs`).
    pub(crate) recv_calls: u64,
    /// The stream, read and written under this lock.
    pub(crate) socket: Socket,
    /// An I/O error met outside the driver, for the driver to end the connection with.
    pub(crate) io_error: Option<Error>,
    /// Tasks waiting for a write, for room in the send queue, or for the end.
    waiters: Vec<Waiter>,
    /// Whether the socket is read: on, paused for the read limit, or at its end.
    pub(crate) reading: Reading,
    /// Running, terminating, or done.
    pub(crate) life: Life,
    /// Terminal error for `recv()` to report once.
    error: Option<Error>,
    /// The receiving handle is alive; if not, the driver decodes and discards.
    pub(crate) receiver_alive: bool,
    /// Our own record of why the connection ended, when no close frame was exchanged.
    local_close: Option<Box<CloseFrame>>,
    /// Messages the driver decoded for `recv()` (see `Inner::drain`).
    inbound: VecDeque<Result<Message>>,
    inbound_bytes: usize,
    /// This connection's account with the memory budget (see `budget.rs`).
    pub(crate) account: Account,
    /// The server's metrics, when it keeps them: told when the connection ends.
    pub(crate) metrics: Option<crate::Metrics>,
    /// Why the connection is ending, when this end decided it (for the metrics).
    pub(crate) ending: Option<Ending>,
}

impl Shared {
    pub(crate) fn new(
        id: u64,
        conn: Connection,
        config: &WebSocketConfig,
        stream: impl Transport,
        info: Info,
    ) -> Arc<Self> {
        Arc::new(Shared {
            inner: Mutex::new(Inner {
                conn,
                max_send_queue: config.max_send_queue,
                slow_consumer: config.slow_consumer,
                max_read_buffer: config.max_read_buffer,
                driver_waker: None,
                recv_waker: None,
                recv_waiting: false,
                recv_calls: 0,
                socket: Socket::new(stream),
                io_error: None,
                waiters: Vec::new(),
                reading: Reading::On,
                life: Life::Running,
                error: None,
                receiver_alive: true,
                local_close: None,
                inbound: VecDeque::new(),
                inbound_bytes: 0,
                account: Account::new(config.memory_budget.clone(), config.max_read_buffer),
                metrics: None,
                ending: None,
            }),
            handles: AtomicUsize::new(0),
            id,
            info,
        })
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn acquire(&self) {
        self.handles.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn release(&self) {
        if self.handles.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.lock().wake_driver();
        }
    }

    pub(crate) fn handles(&self) -> usize {
        self.handles.load(Ordering::Acquire)
    }

    /// Queues with `f` once the send queue has room; returns the offset at which the
    /// queued bytes end. With `through`, writes at once when it can (see `enqueue`).
    pub(crate) fn poll_enqueue(
        &self,
        cx: &mut Context<'_>,
        f: &mut Option<impl FnOnce(&mut Connection) -> Result<(), zapsocket_proto::Error>>,
        through: bool,
    ) -> Poll<Result<u64>> {
        let mut inner = self.lock();
        inner.check_open()?;
        let queued = inner.conn.outbound().cost();
        if queued > 0 && queued >= inner.max_send_queue {
            inner.waiters.push(Waiter::Space(cx.waker().clone()));
            return Poll::Pending;
        }
        let Some(f) = f.take() else { return Poll::Ready(Err(Error::new(Kind::Closed))) };
        Poll::Ready(inner.enqueue(f, through))
    }

    /// Queues with `f` without waiting: `QueueFull` when the queue is over its limit.
    pub(crate) fn try_enqueue(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<(), zapsocket_proto::Error>,
    ) -> Result<u64> {
        let mut inner = self.lock();
        inner.check_open()?;
        if inner.conn.outbound().cost() >= inner.max_send_queue {
            return Err(Error::new(Kind::QueueFull));
        }
        inner.enqueue(f, false)
    }

    /// Queues a shared frame without waiting, applying the slow-consumer policy when the
    /// queue is full. Returns whether the frame was queued.
    pub(crate) fn send_encoded(&self, frame: &EncodedFrame) -> Result<bool> {
        let mut inner = self.lock();
        inner.check_open()?;
        let queued = inner.conn.outbound().cost();
        if queued > 0 && queued + frame.len() > inner.max_send_queue {
            return match inner.slow_consumer {
                SlowConsumer::DropMessage => {
                    if let Some(counts) = inner.conn.counts_mut() {
                        counts.dropped_out += 1;
                    }
                    Ok(false)
                }
                _ => {
                    inner.local_close =
                        Some(Box::new(CloseFrame::new(CloseCode::POLICY_VIOLATION, "send queue full")));
                    inner.ending.get_or_insert(Ending::SlowConsumer);
                    inner.terminate();
                    Err(Error::new(Kind::Terminated))
                }
            };
        }
        inner.enqueue(|c| c.send_encoded(frame), false)?;
        Ok(true)
    }

    /// Ready once everything up to `offset` is written.
    pub(crate) fn poll_written(&self, cx: &mut Context<'_>, offset: u64) -> Poll<Result<()>> {
        let mut inner = self.lock();
        if inner.conn.outbound().written_offset() >= offset {
            return Poll::Ready(Ok(()));
        }
        if inner.is_done() {
            return Poll::Ready(Err(inner.terminal_error()));
        }
        inner.waiters.push(Waiter::Written(offset, cx.waker().clone()));
        Poll::Pending
    }

    /// Ready once the driver has finished and the transport is gone. While someone waits
    /// here the driver decodes what arrives (see `Inner::drain`), so the close is seen
    /// even if nobody reads.
    pub(crate) fn poll_done(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut inner = self.lock();
        if inner.is_done() {
            return Poll::Ready(());
        }
        let known = inner.waiters.iter().any(|w| matches!(w, Waiter::Done(d) if d.will_wake(cx.waker())));
        if !known {
            inner.waiters.push(Waiter::Done(cx.waker().clone()));
            inner.socket.set_driver_wants(true);
            inner.wake_driver();
        }
        Poll::Pending
    }

    /// The next message for `recv()`: decoded from what is buffered, or read from the
    /// socket here, on the reader's task.
    pub(crate) fn poll_recv(&self, cx: &mut Context<'_>) -> Poll<Option<Result<Message>>> {
        let mut inner = self.lock();
        // Here already: reads below need not wake this task.
        inner.recv_waiting = false;
        inner.recv_calls = inner.recv_calls.wrapping_add(1);
        loop {
            match inner.next_message() {
                Some(inbound::Next::Ready(item)) => {
                    inner.socket.unpark_recv();
                    return Poll::Ready(Some(item));
                }
                Some(inbound::Next::Lent(mut lent)) => {
                    // A large frame: unmasked, inflated and validated without the lock
                    // (nothing else is decoded meanwhile), then handed back.
                    drop(inner);
                    lent.run();
                    inner = self.lock();
                    if let Some(item) = inner.take_back(lent) {
                        inner.socket.unpark_recv();
                        return Poll::Ready(Some(item));
                    }
                    continue;
                }
                None => {}
            }
            if inner.conn.is_closed() || inner.is_done() {
                inner.socket.unpark_recv();
                return Poll::Ready(inner.error.take().map(Err));
            }
            if inner.io_error.is_some() {
                break;
            }
            match inner.read_socket() {
                Ok(Read::Nothing) => break,
                Ok(_) => {}
                Err(e) => {
                    // The driver ends the connection with it.
                    inner.io_error = Some(e);
                    inner.wake_driver();
                    break;
                }
            }
        }
        inner.park_recv(cx.waker());
        if inner.reading == Reading::Paused && inner.below_read_limit() {
            inner.wake_driver();
        }
        Poll::Pending
    }

    /// A `recv()` that waited was dropped before it got a message: the driver reads
    /// again (see `WebSocketReceiver::recv`).
    pub(crate) fn cancel_recv(&self) {
        let mut inner = self.lock();
        if inner.recv_waiting {
            inner.recv_waiting = false;
            inner.socket.unpark_recv();
            inner.wake_driver();
        }
    }

    pub(crate) fn ready_state(&self) -> ReadyState {
        let inner = self.lock();
        match (inner.is_done(), inner.conn.state()) {
            (true, _) => ReadyState::Closed,
            (false, State::Open) => ReadyState::Open,
            (false, _) => ReadyState::Closing,
        }
    }
}

impl Inner {
    /// The driver finished; the transport is gone.
    pub(crate) fn is_done(&self) -> bool {
        self.life == Life::Done
    }

    /// The transport reached its end.
    pub(crate) fn eof(&self) -> bool {
        self.reading == Reading::Ended
    }

    /// At a timer's tick (the driver's, or the heartbeat thread's while it runs the
    /// keepalive): see [`Socket::release_if_idle`].
    pub(crate) fn release_if_idle(&mut self) {
        self.socket.release_if_idle(&mut self.conn);
    }

    /// Reads what the socket has into the connection's buffer, unless the buffer is
    /// full (up to `max_read_buffer`, plus the frame in progress) or the memory budget
    /// says wait.
    pub(crate) fn read_socket(&mut self) -> Result<Read> {
        if self.reading == Reading::Ended {
            return Ok(Read::Nothing);
        }
        if !self.below_read_limit() {
            self.reading = Reading::Paused;
            return Ok(Read::Nothing);
        }
        self.reading = Reading::On;
        if !self.budget_allows_read() {
            // The driver looks again on a timer (see `driver.rs`).
            return Ok(Read::Nothing);
        }
        match self.socket.read_into(&mut self.conn) {
            Poll::Ready(Ok(0)) => {
                self.reading = Reading::Ended;
                self.wake_recv();
                self.wake_driver();
                Ok(Read::Data)
            }
            Poll::Ready(Ok(_)) => {
                if self.conn.is_closed() {
                    // Closed: what follows is discarded.
                    self.conn.read_buffer().clear();
                }
                self.settle_budget();
                self.wake_recv();
                Ok(Read::Data)
            }
            Poll::Ready(Err(e)) => Err(e.into()),
            Poll::Pending => Ok(Read::Nothing),
        }
    }

    /// Writes everything queued, in as few syscalls as the socket allows; a write that
    /// cannot finish registers `cx`. Returns whether anything was written.
    pub(crate) fn write_socket(&mut self, cx: &mut Context<'_>) -> Result<bool> {
        let wrote = self.socket.write_from(&mut self.conn, cx)?;
        if wrote {
            self.wake_written();
        }
        Ok(wrote)
    }

    fn check_open(&self) -> Result<()> {
        if self.life == Life::Running { Ok(()) } else { Err(Error::new(Kind::Closed)) }
    }

    /// Queues with `f`. With `through`, when nothing else was queued and no received
    /// data waits to be handled, writes at once on this task (registering the driver's
    /// waker if the socket is full); otherwise (or if the write does not finish) the
    /// driver writes, everything queued in one write.
    fn enqueue(
        &mut self,
        f: impl FnOnce(&mut Connection) -> Result<(), zapsocket_proto::Error>,
        through: bool,
    ) -> Result<u64> {
        let was_empty = self.conn.outbound().is_empty();
        f(&mut self.conn)?;
        let offset = self.conn.outbound().queued_offset();
        if was_empty {
            if through
                && self.conn.read_buffer().is_empty()
                && self.inbound.is_empty()
                && self.io_error.is_none()
            {
                self.write_through();
            }
            if !self.conn.outbound().is_empty() || self.io_error.is_some() {
                self.wake_driver();
            }
        }
        Ok(offset)
    }

    /// Writes what is queued now, with the driver's waker (before the driver's first
    /// poll there is none, and the driver writes).
    fn write_through(&mut self) {
        let Some(waker) = self.driver_waker.take() else { return };
        if let Err(e) = self.write_socket(&mut Context::from_waker(&waker)) {
            self.io_error = Some(e);
        }
        self.driver_waker = Some(waker);
    }

    /// Writes what is queued now, even before the driver's first poll (a write that
    /// cannot finish is then left to it); nothing after an I/O error.
    fn write_now(&mut self) {
        if self.io_error.is_some() {
            return;
        }
        if self.driver_waker.is_some() {
            self.write_through();
        } else if let Err(e) = self.write_socket(&mut Context::from_waker(Waker::noop())) {
            self.io_error = Some(e);
        }
    }

    pub(crate) fn wake_driver(&mut self) {
        if let Some(w) = &self.driver_waker {
            w.wake_by_ref();
        }
    }

    pub(crate) fn wake_recv(&mut self) {
        if self.recv_waiting {
            self.recv_waiting = false;
            if let Some(w) = &self.recv_waker {
                w.wake_by_ref();
            }
        }
    }

    /// A `recv()` waits for data with `waker`: readiness goes to it.
    fn park_recv(&mut self, waker: &Waker) {
        self.recv_waiting = true;
        let changed = !self.recv_waker.as_ref().is_some_and(|w| w.will_wake(waker));
        if changed {
            self.recv_waker = Some(waker.clone());
        }
        let driver_wants = self.drain_wanted();
        self.socket.park_recv(waker, changed, driver_wants);
    }

    pub(crate) fn wake_written(&mut self) {
        if self.waiters.is_empty() {
            return;
        }
        let written = self.conn.outbound().written_offset();
        let room = self.conn.outbound().cost() < self.max_send_queue;
        self.waiters.retain(|w| match w {
            Waiter::Written(offset, waker) if *offset <= written => {
                waker.wake_by_ref();
                false
            }
            Waiter::Space(waker) if room => {
                waker.wake_by_ref();
                false
            }
            _ => true,
        });
    }

    /// Whether a task waits for the end (`closed()`): the driver then decodes what
    /// arrives (see `drain`).
    pub(crate) fn waits_for_end(&self) -> bool {
        self.waiters.iter().any(|w| matches!(w, Waiter::Done(_)))
    }
}
