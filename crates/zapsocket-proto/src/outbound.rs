//! The queue of encoded bytes waiting to be written.

use std::collections::VecDeque;
use std::io::IoSlice;

use bytes::{Buf, Bytes, BytesMut};

/// Payloads up to this size are copied next to their header; larger ones are queued as
/// their own chunk and written with a vectored write, without a copy.
const COPY_THRESHOLD: usize = 1024;

/// The smallest tail buffer made for a frame when none is at hand: a lone small frame
/// (a realtime event to a mostly idle socket) keeps no more until the queue is released
/// when idle; a burst grows it as it comes.
const MIN_TAIL: usize = 512;
/// The largest tail made for small shared frames queued behind others (a burst to a slow
/// reader).
const BURST_TAIL: usize = 4096;

/// What each chunk queued by reference costs besides its bytes (its `Bytes` handle in
/// the queue and the shared buffer's header), as [`Outbound::cost`] counts it.
pub const CHUNK_OVERHEAD: usize = 64;

/// Encoded frames waiting for the transport, as a list of chunks for vectored writes.
///
/// Small frames are appended to one contiguous tail buffer, large payloads and shared
/// broadcast frames are queued by reference. Offsets count every byte ever queued and
/// written, so a sender can wait until its own frame is on the wire.
#[derive(Debug, Default)]
pub struct Outbound {
    chunks: VecDeque<Bytes>,
    tail: BytesMut,
    len: usize,
    queued_total: u64,
    written_total: u64,
}

impl Outbound {
    /// Bytes waiting to be written.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// What the queue holds for send-queue limits: the bytes waiting plus
    /// [`CHUNK_OVERHEAD`] per chunk queued by reference (small frames are copied into one
    /// buffer and cost their bytes alone).
    #[inline]
    pub fn cost(&self) -> usize {
        self.len + self.chunks.len() * CHUNK_OVERHEAD
    }

    /// Whether nothing waits to be written.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The total number of bytes ever queued: the offset at which the last queued frame
    /// ends.
    #[inline]
    pub fn queued_offset(&self) -> u64 {
        self.queued_total
    }

    /// The total number of bytes ever written.
    #[inline]
    pub fn written_offset(&self) -> u64 {
        self.written_total
    }

    /// Queues a shared chunk without copying it (large ones) or copies it into the tail.
    pub fn push(&mut self, bytes: Bytes) {
        if self.copy_into_tail(&bytes) {
            return;
        }
        self.seal_tail();
        self.chunks.push_back(bytes);
    }

    /// [`Outbound::push`] of a chunk shared with others (a broadcast frame): the small
    /// ones are copied without touching the chunk's reference count.
    pub fn push_shared(&mut self, bytes: &Bytes) {
        if self.copy_into_tail(bytes) {
            return;
        }
        self.seal_tail();
        self.chunks.push_back(bytes.clone());
    }

    /// Counts `bytes` as queued, and copies them into the tail when they are small:
    /// returns false when they are to be queued by reference (the caller does).
    #[inline]
    fn copy_into_tail(&mut self, bytes: &[u8]) -> bool {
        if bytes.is_empty() {
            return true;
        }
        let others = self.len > 0;
        self.len += bytes.len();
        self.queued_total += bytes.len() as u64;
        let spare = self.tail.capacity() - self.tail.len();
        if bytes.len() > COPY_THRESHOLD / 4 || (spare < bytes.len() && !others) {
            // Large, or alone in the queue with no buffer at hand: by reference (no
            // allocation for one write).
            return false;
        }
        // Small frames queued behind others (a burst of short broadcasts to a slow
        // reader) share one buffer: a chunk each would cost more in bookkeeping than in
        // bytes.
        if spare < bytes.len() {
            self.seal_tail();
            // Sized to the backlog: a frame behind a lone one (a socket's first message
            // behind the 101 response) takes 1 KiB, a burst up to 4 KiB.
            let size = self.len.next_power_of_two().clamp(BURST_TAIL / 4, BURST_TAIL);
            self.tail = BytesMut::with_capacity(size);
        }
        self.tail.extend_from_slice(bytes);
        true
    }

    /// The tail buffer to encode a small frame into; call [`Outbound::commit`] after.
    #[inline]
    pub(crate) fn tail(&mut self, additional: usize) -> &mut BytesMut {
        if self.tail.is_empty() && self.tail.capacity() < additional {
            self.tail = BytesMut::with_capacity(additional.max(MIN_TAIL));
        } else {
            self.tail.reserve(additional);
        }
        &mut self.tail
    }

    /// Records `n` bytes just appended to the tail.
    #[inline]
    pub(crate) fn commit(&mut self, n: usize) {
        self.len += n;
        self.queued_total += n as u64;
    }

    /// Whether a payload of `len` bytes is copied rather than queued by reference.
    pub(crate) fn copies(len: usize) -> bool {
        len <= COPY_THRESHOLD
    }

    #[inline]
    fn seal_tail(&mut self) {
        if !self.tail.is_empty() {
            let sealed = self.tail.split().freeze();
            self.chunks.push_back(sealed);
        }
    }

    /// Fills `slices` with the queued chunks in order; returns how many were filled.
    pub fn io_slices<'a>(&'a self, slices: &mut [IoSlice<'a>]) -> usize {
        let mut n = 0;
        let tail = (!self.tail.is_empty()).then_some(&self.tail[..]);
        for chunk in self.chunks.iter().map(|c| &c[..]).chain(tail) {
            if n == slices.len() {
                break;
            }
            slices[n] = IoSlice::new(chunk);
            n += 1;
        }
        n
    }

    /// How many chunks are queued (a vectored write is worth it above one).
    #[inline]
    pub fn chunk_count(&self) -> usize {
        self.chunks.len() + usize::from(!self.tail.is_empty())
    }

    /// The first queued chunk, for transports without vectored writes.
    #[inline]
    pub fn first_chunk(&self) -> &[u8] {
        match self.chunks.front() {
            Some(c) => c,
            None => &self.tail,
        }
    }

    /// Marks `n` bytes as written.
    #[inline]
    pub fn advance(&mut self, n: usize) {
        let n = n.min(self.len);
        self.len -= n;
        self.written_total += n as u64;
        if self.len == 0 && self.chunks.is_empty() && self.tail.capacity() <= 64 * 1024 {
            // The common case, everything written from the tail: reuse it from its start.
            self.tail.clear();
        } else {
            self.consume(n);
        }
    }

    /// Drops the first `n` written bytes from the chunks and the tail (already counted).
    #[inline(never)]
    fn consume(&mut self, mut n: usize) {
        if self.len == 0 {
            // All written: the tail is reused from its start, unless it grew large.
            self.chunks.clear();
            if self.tail.capacity() > 64 * 1024 {
                self.tail = BytesMut::new();
            } else {
                self.tail.clear();
            }
            return;
        }
        while n > 0 {
            let Some(front) = self.chunks.front_mut() else { break };
            if n >= front.len() {
                n -= front.len();
                self.chunks.pop_front();
            } else {
                front.advance(n);
                return;
            }
        }
        if n > 0 {
            self.tail.advance(n);
        }
    }

    /// Drops everything queued (the connection is gone).
    pub fn clear(&mut self) {
        self.chunks.clear();
        self.tail = BytesMut::new();
        self.len = 0;
    }

    /// Releases the buffers of an idle queue.
    pub fn shrink(&mut self) {
        if self.len == 0 {
            self.tail = BytesMut::new();
            self.chunks = VecDeque::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(out: &mut Outbound) -> Vec<u8> {
        let mut all = Vec::new();
        while !out.is_empty() {
            let chunk = out.first_chunk().to_vec();
            // Write in odd-sized pieces to exercise partial advances.
            let n = chunk.len().min(7);
            all.extend_from_slice(&chunk[..n]);
            out.advance(n);
        }
        all
    }

    #[test]
    fn chunks_come_out_in_order_across_partial_writes() {
        let mut out = Outbound::default();
        out.push(Bytes::from_static(b"abc"));
        out.push(Bytes::from(vec![b'x'; 2000]));
        let tail = out.tail(3);
        tail.extend_from_slice(b"def");
        out.commit(3);
        out.push(Bytes::from_static(b"ghi"));
        assert_eq!(out.queued_offset(), 2009);
        let all = drain(&mut out);
        let mut expected = b"abc".to_vec();
        expected.extend(std::iter::repeat_n(b'x', 2000));
        expected.extend_from_slice(b"defghi");
        assert_eq!(all, expected);
        assert_eq!(out.written_offset(), 2009);
    }

    #[test]
    fn small_shared_frames_are_copied_into_few_buffers_in_order() {
        let mut out = Outbound::default();
        let mut expected = Vec::new();
        for i in 0..10_000u32 {
            let frame = Bytes::from(i.to_be_bytes().repeat(3));
            expected.extend_from_slice(&frame);
            out.push(frame);
        }
        assert_eq!(out.len(), 120_000);
        assert!(out.chunk_count() <= 120_000 / 4096 + 3, "{} chunks", out.chunk_count());
        assert!(out.cost() < out.len() + 32 * CHUNK_OVERHEAD);
        assert_eq!(drain(&mut out), expected);
    }

    #[test]
    fn chunks_queued_by_reference_count_their_overhead() {
        let mut out = Outbound::default();
        out.push(Bytes::from(vec![1; 2000]));
        out.push(Bytes::from(vec![2; 2000]));
        assert_eq!(out.len(), 4000);
        assert_eq!(out.cost(), 4000 + 2 * CHUNK_OVERHEAD);
    }
}
