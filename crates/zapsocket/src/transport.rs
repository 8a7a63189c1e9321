//! The byte stream of a connection and the state of its reads and writes: how much to
//! read into the protocol's buffer, vectored writes of its queue, and the waker that
//! passes read readiness on. It works on the protocol's [`Connection`] alone; who calls
//! it, and when, is `shared/mod.rs`'s business (its module documentation has the table).
//!
//! One waker, the [`ReadFlag`]'s, is registered for read readiness whoever reads, so
//! the stream's registration never flips between tasks; the flag passes readiness on
//! to a `recv()` that waits for data, or to the driver. Writes register the driver's
//! waker: a write that cannot finish at once is the driver's to finish.

use std::io::IoSlice;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

use bytes::{BufMut, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite};

use zapsocket_proto::Connection;

/// What a connection runs on: TCP, TLS, or an upgraded hyper connection.
pub(crate) trait Transport: AsyncRead + AsyncWrite + Send + Unpin + 'static {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Transport for T {}

/// The most slices in one vectored write.
const MAX_IO_SLICES: usize = 64;
/// Reads are at least this large (when the frame in progress needs more, up to
/// `MAX_READ`).
const MIN_READ: usize = 4 * 1024;
const MAX_READ: usize = 256 * 1024;

/// The waker the stream's reads register. It notes that readiness changed, so a read
/// attempt with no news can be skipped (a read that returns `Pending` costs as much as
/// the rest of a small message's work), and it wakes a `recv()` that waits for data
/// (the hot path: that task reads, decodes and answers in one poll) or else the driver.
#[derive(Default)]
pub(crate) struct ReadFlag {
    woken: AtomicBool,
    /// A `recv()` waits for data: readiness goes to it.
    recv_parked: AtomicBool,
    /// The driver waits for data too (it decodes while closing, or for `closed()`).
    driver_wants: AtomicBool,
    wakers: Mutex<Wakers>,
}

#[derive(Default)]
struct Wakers {
    driver: Option<Waker>,
    recv: Option<Waker>,
}

impl Wake for ReadFlag {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        // No ordering beyond release/acquire is needed: a wake that misses a `recv()`
        // parking at the same moment goes to the driver, which reads and wakes it
        // (under the connection's lock, where the park is recorded).
        self.woken.store(true, Ordering::Release);
        let recv = self.recv_parked.swap(false, Ordering::AcqRel);
        let driver = !recv || self.driver_wants.load(Ordering::Acquire);
        // Woken under the lock, without a clone: a waker only schedules, it never polls
        // (so it cannot come back to this lock).
        let wakers = self.wakers.lock().unwrap_or_else(|p| p.into_inner());
        if recv && let Some(w) = &wakers.recv {
            w.wake_by_ref();
        }
        if driver && let Some(w) = &wakers.driver {
            w.wake_by_ref();
        }
    }
}

impl ReadFlag {
    fn set(&self, driver: bool, waker: &Waker) {
        let mut wakers = self.wakers.lock().unwrap_or_else(|p| p.into_inner());
        let slot = if driver { &mut wakers.driver } else { &mut wakers.recv };
        *slot = Some(waker.clone());
    }
}

/// The stream and the state of its reads and writes.
pub(crate) struct Socket {
    stream: Box<dyn Transport>,
    flag: Arc<ReadFlag>,
    read_waker: Waker,
    /// The last read returned `Pending`: the stream has the flag's waker.
    read_pending: bool,
    /// A frame larger than a minimum read arrived on this connection.
    large_frames: bool,
    /// A frame needed more than a maximum read: the read that starts the next message
    /// is a minimum one (see `read_first_after_huge`).
    huge_frame: bool,
    /// Data was read since the driver's last timer tick: keep the buffers for reuse.
    pub(crate) active: bool,
    /// The write side was shut down.
    pub(crate) shut_down: bool,
    /// A flush returned `Pending` (TLS records still buffered): flush again when writable.
    needs_flush: bool,
}

impl std::fmt::Debug for Socket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Socket").field("shut_down", &self.shut_down).finish_non_exhaustive()
    }
}

impl Socket {
    pub(crate) fn new(stream: impl Transport) -> Socket {
        let flag = Arc::new(ReadFlag::default());
        Socket {
            stream: Box::new(stream),
            read_waker: Waker::from(flag.clone()),
            flag,
            read_pending: false,
            large_frames: false,
            huge_frame: false,
            active: false,
            shut_down: false,
            needs_flush: false,
        }
    }

    /// The driver's waker changed: readiness it should see goes to the new one.
    pub(crate) fn set_driver_waker(&self, waker: &Waker) {
        self.flag.set(true, waker);
    }

    /// A `recv()` waits for data with `waker` (`changed`: not the waker it had last).
    pub(crate) fn park_recv(&self, waker: &Waker, changed: bool, driver_wants: bool) {
        if changed {
            self.flag.set(false, waker);
        }
        self.flag.driver_wants.store(driver_wants, Ordering::Release);
        self.flag.recv_parked.store(true, Ordering::Release);
    }

    /// No `recv()` waits any more: readiness goes to the driver.
    pub(crate) fn unpark_recv(&self) {
        self.flag.recv_parked.store(false, Ordering::Release);
    }

    /// Whether the driver is woken by readiness even while a `recv()` waits.
    pub(crate) fn set_driver_wants(&self, wants: bool) {
        self.flag.driver_wants.store(wants, Ordering::Release);
    }

    /// The first read of a message after a frame of more than a maximum read: a minimum
    /// read (the next frame's header first, as fastwebsockets reads), not all that has
    /// arrived. Measured (docs/BENCHMARKS.md): echoing 1 MiB messages, 7–9% less server
    /// CPU per message (one read more, and less work in the kernel's side of the
    /// exchange); after 64 KiB frames the extra read cost 3%, hence only past
    /// `MAX_READ`.
    #[cold]
    #[inline(never)]
    fn read_first_after_huge(&mut self, buf: &mut BytesMut) -> Poll<std::io::Result<usize>> {
        let result = tokio_util::io::poll_read_buf(
            Pin::new(&mut self.stream),
            &mut Context::from_waker(&self.read_waker),
            &mut buf.limit(MIN_READ),
        );
        self.huge_frame = result.is_pending();
        result
    }

    pub(crate) fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

impl Socket {
    /// At a timer's tick: a connection that received nothing since the last tick and
    /// has nothing buffered gives its buffers back, so that an idle connection costs no
    /// buffer memory.
    pub(crate) fn release_if_idle(&mut self, conn: &mut Connection) {
        if !self.active && conn.read_buffer().is_empty() && conn.outbound().is_empty() {
            conn.release_buffers();
        }
        self.active = false;
    }

    /// Reads what the stream has into the connection's read buffer (sized for the frame
    /// in progress, between a minimum and a maximum read). `Pending` when there was
    /// nothing, including when readiness had not changed since the last empty read.
    pub(crate) fn read_into(&mut self, conn: &mut Connection) -> Poll<std::io::Result<usize>> {
        if self.read_pending && !self.flag.woken.swap(false, Ordering::AcqRel) {
            // Still registered and no readiness news: the socket has nothing for us.
            return Poll::Pending;
        }
        let hint = conn.read_hint();
        if hint > MIN_READ {
            self.large_frames = true;
            self.huge_frame |= hint > MAX_READ;
        }
        let want = hint.clamp(MIN_READ, MAX_READ);
        let buf = conn.read_buffer();
        let mut first_after_huge = false;
        if self.large_frames && buf.is_empty() {
            // Start again at the front of the allocation when no message still holds
            // part of it (free now; later, a frame that ran past its end would have to
            // be moved there: a copy of all of it, once per large message). Small
            // frames never get there: a reserve with nothing buffered does the same.
            let _ = buf.try_reclaim(buf.capacity() + 1);
            first_after_huge = self.huge_frame;
        }
        // Room for the frame in progress, or at least a quarter of a minimum read (a
        // reserve per read would cost more than a small message's decoding: after each
        // message the buffer starts further in, and is reclaimed once it runs low).
        let spare = buf.capacity() - buf.len();
        if spare < MIN_READ / 4 || hint > spare {
            buf.reserve(want);
        }
        // (No reserve above when `spare` is over a maximum read.)
        let capped = spare > MAX_READ;
        let result = if first_after_huge {
            self.read_first_after_huge(buf)
        } else if capped {
            // One read adds at most `MAX_READ` to what the connection holds, whatever
            // room its buffer has (the memory budget's documented overshoot).
            tokio_util::io::poll_read_buf(
                Pin::new(&mut self.stream),
                &mut Context::from_waker(&self.read_waker),
                &mut buf.limit(MAX_READ),
            )
        } else {
            tokio_util::io::poll_read_buf(
                Pin::new(&mut self.stream),
                &mut Context::from_waker(&self.read_waker),
                buf,
            )
        };
        self.read_pending = result.is_pending();
        match result {
            Poll::Ready(Ok(n)) if n > 0 => {
                self.active = true;
                conn.note_received();
            }
            Poll::Pending if !self.active && conn.read_buffer().is_empty() => {
                // A connection that has not been active since the last timer tick
                // holds no buffers while it waits.
                conn.release_buffers();
            }
            _ => {}
        }
        result
    }

    /// Writes everything the connection has queued, in as few syscalls as the stream
    /// allows; a write that cannot finish registers `cx`. Returns whether anything was
    /// written.
    pub(crate) fn write_from(
        &mut self,
        conn: &mut Connection,
        cx: &mut Context<'_>,
    ) -> std::io::Result<bool> {
        let mut wrote = false;
        while !conn.outbound().is_empty() && !self.shut_down {
            let outbound = conn.outbound();
            // One chunk goes out with a plain write (`send`), cheaper than `writev`.
            let result = if outbound.chunk_count() > 1 && self.stream.is_write_vectored() {
                let mut slices = [IoSlice::new(&[]); MAX_IO_SLICES];
                let n = outbound.io_slices(&mut slices);
                Pin::new(&mut self.stream).poll_write_vectored(cx, &slices[..n])
            } else {
                Pin::new(&mut self.stream).poll_write(cx, outbound.first_chunk())
            };
            match result {
                Poll::Ready(Ok(0)) => return Err(std::io::Error::from(std::io::ErrorKind::WriteZero)),
                Poll::Ready(Ok(n)) => {
                    outbound.advance(n);
                    wrote = true;
                }
                Poll::Ready(Err(e)) => return Err(e),
                Poll::Pending => break,
            }
            // A pong held while the queue was over its limit goes out once below it.
            conn.queue_held_pong();
        }
        if wrote || self.needs_flush {
            // A no-op on TCP; TLS may keep records when the socket is full, and they
            // must go out even if nothing else is ever queued.
            match Pin::new(&mut self.stream).poll_flush(cx) {
                Poll::Ready(Ok(())) => self.needs_flush = false,
                Poll::Ready(Err(e)) => return Err(e),
                Poll::Pending => self.needs_flush = true,
            }
        }
        Ok(wrote)
    }
}
