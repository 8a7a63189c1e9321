//! The compressor and decompressor of permessage-deflate (RFC 7692 §7.2), over flate2 with
//! the zlib-rs backend, and a small per-thread cache of them for messages compressed on
//! their own (no context takeover).

use std::cell::RefCell;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// What a sync flush ends with, removed from the end of a compressed message and put back
/// before inflating it (RFC 7692 §7.2.1, §7.2.2).
pub(crate) const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// The most codecs of each kind a thread keeps for reuse (one per setting).
const CACHE_PER_THREAD: usize = 4;

/// Output grows by at least this much at a time while inflating.
const INFLATE_STEP: usize = 16 * 1024;

/// A raw-deflate compressor for one setting (level, window bits).
pub(crate) struct Compressor {
    inner: Compress,
    level: u32,
    window_bits: u8,
}

impl std::fmt::Debug for Compressor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Compressor(level {}, {} bits)", self.level, self.window_bits)
    }
}

impl Compressor {
    /// A compressor from this thread's cache, or a new one. `window_bits` is 9 to 15.
    pub(crate) fn take(level: u32, window_bits: u8) -> Compressor {
        let cached = COMPRESSORS.with_borrow_mut(|cache| {
            let i = cache.iter().position(|c| c.level == level && c.window_bits == window_bits)?;
            Some(cache.swap_remove(i))
        });
        cached.unwrap_or_else(|| Compressor {
            inner: Compress::new_with_window_bits(Compression::new(level), false, window_bits),
            level,
            window_bits,
        })
    }

    /// Resets the compressor and returns it to this thread's cache (unless the cache already
    /// has one for this setting, or is full).
    pub(crate) fn give_back(mut self) {
        self.inner.reset();
        COMPRESSORS.with_borrow_mut(|cache| {
            let known = cache.iter().any(|c| c.level == self.level && c.window_bits == self.window_bits);
            if !known && cache.len() < CACHE_PER_THREAD {
                cache.push(self);
            }
        });
    }

    /// Compresses one frame's worth of a message with a sync flush. At the end of the message
    /// (`fin`) the flush's `00 00 ff ff` is removed (RFC 7692 §7.2.1).
    pub(crate) fn compress(&mut self, input: &[u8], fin: bool) -> Vec<u8> {
        let mut out = Vec::with_capacity(input.len() / 2 + 64);
        let mut rest = input;
        loop {
            if out.capacity() - out.len() < 64 {
                out.reserve(out.capacity().max(1024));
            }
            let before = self.inner.total_in();
            // A raw deflate stream fed from memory cannot fail: the result is only
            // "need more room", which the loop gives.
            let _ = self.inner.compress_vec(rest, &mut out, FlushCompress::Sync);
            let consumed = (self.inner.total_in() - before) as usize;
            rest = &rest[consumed.min(rest.len())..];
            // The flush is complete once input is used up and room is left over.
            if rest.is_empty() && out.len() < out.capacity() {
                break;
            }
        }
        if fin && out.ends_with(&TAIL) {
            out.truncate(out.len() - TAIL.len());
        }
        if fin && out.is_empty() {
            // Nothing new since the last flush (an empty message, or an empty last
            // fragment): RFC 7692 §7.2.3.6 asks for a single 0x00, so that the
            // receiver's appended 00 00 FF FF reads as an empty stored block.
            out.push(0x00);
        }
        out
    }
}

/// Why inflating a message failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Inflated {
    /// The decompressed message would exceed the limit.
    TooLarge,
    /// The data is not a valid deflate stream.
    Corrupt,
}

/// A raw-deflate decompressor for the window the peer agreed to compress with.
pub(crate) struct Decompressor {
    inner: Decompress,
    window_bits: u8,
    /// The stream ended with a final block (BFINAL): reset before the next message.
    ended: bool,
}

impl std::fmt::Debug for Decompressor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Decompressor")
    }
}

impl Decompressor {
    /// A decompressor for `window_bits` (8 is taken as 9: zlib's compressors never use a
    /// 256-byte window, they use 512 bytes) from this thread's cache, or a new one.
    pub(crate) fn take(window_bits: u8) -> Decompressor {
        let window_bits = window_bits.clamp(9, 15);
        let cached = DECOMPRESSORS.with_borrow_mut(|cache| {
            let i = cache.iter().position(|d| d.window_bits == window_bits)?;
            Some(cache.swap_remove(i))
        });
        cached.unwrap_or_else(|| Decompressor {
            inner: Decompress::new_with_window_bits(false, window_bits),
            window_bits,
            ended: false,
        })
    }

    /// Resets the decompressor and returns it to this thread's cache (unless the cache
    /// already has one for its window, or is full).
    pub(crate) fn give_back(mut self) {
        self.reset();
        DECOMPRESSORS.with_borrow_mut(|cache| {
            let known = cache.iter().any(|d| d.window_bits == self.window_bits);
            if !known && cache.len() < CACHE_PER_THREAD {
                cache.push(self);
            }
        });
    }

    fn reset(&mut self) {
        self.inner.reset(false);
        self.ended = false;
    }

    /// Inflates one frame of a compressed message, appending to `out`, which never grows
    /// past `limit` bytes. At the end of the message (`fin`) the `00 00 ff ff` tail is
    /// inflated too (RFC 7692 §7.2.2).
    pub(crate) fn inflate(
        &mut self,
        input: &[u8],
        fin: bool,
        out: &mut Vec<u8>,
        limit: usize,
    ) -> Result<(), Inflated> {
        self.inflate_part(input, out, limit)?;
        if fin {
            self.inflate_part(&TAIL, out, limit)?;
            if self.ended {
                // A final block ends the stream; the next message starts a new one.
                self.reset();
            }
        }
        Ok(())
    }

    fn inflate_part(&mut self, mut input: &[u8], out: &mut Vec<u8>, limit: usize) -> Result<(), Inflated> {
        while !self.ended {
            if out.len() == out.capacity() {
                if out.len() >= limit {
                    return self.check_nothing_left(input);
                }
                let target = (out.len() * 2).max(out.len() + INFLATE_STEP).min(limit);
                out.reserve_exact(target - out.len());
            }
            let (before_in, before_out) = (self.inner.total_in(), self.inner.total_out());
            let status = self
                .inner
                .decompress_vec(input, out, FlushDecompress::Sync)
                .map_err(|_| Inflated::Corrupt)?;
            let consumed = (self.inner.total_in() - before_in) as usize;
            let produced = self.inner.total_out() - before_out;
            input = &input[consumed.min(input.len())..];
            if status == Status::StreamEnd {
                self.ended = true;
            }
            // Done when the input is used up and the output was not cut short by room.
            let room_left = out.len() < out.capacity();
            if (input.is_empty() && room_left) || (consumed == 0 && produced == 0 && room_left) {
                break;
            }
        }
        Ok(())
    }

    /// At the limit: the message is too large if inflating yields even one more byte.
    fn check_nothing_left(&mut self, mut input: &[u8]) -> Result<(), Inflated> {
        let mut probe = [0u8; 1];
        loop {
            let (before_in, before_out) = (self.inner.total_in(), self.inner.total_out());
            let status = self
                .inner
                .decompress(input, &mut probe, FlushDecompress::Sync)
                .map_err(|_| Inflated::Corrupt)?;
            if self.inner.total_out() > before_out {
                return Err(Inflated::TooLarge);
            }
            let consumed = (self.inner.total_in() - before_in) as usize;
            input = &input[consumed.min(input.len())..];
            if status == Status::StreamEnd {
                self.ended = true;
                return Ok(());
            }
            if consumed == 0 {
                return Ok(());
            }
        }
    }
}

thread_local! {
    static COMPRESSORS: RefCell<Vec<Compressor>> = const { RefCell::new(Vec::new()) };
    static DECOMPRESSORS: RefCell<Vec<Decompressor>> = const { RefCell::new(Vec::new()) };
}
