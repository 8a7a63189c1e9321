//! Message counters of one connection: what [`Connection::count_messages`] turns on.
//!
//! [`Connection::count_messages`]: crate::Connection::count_messages

/// The upper bounds (inclusive, in bytes) of the message-size histogram's buckets; a
/// last bucket takes the larger messages.
pub const SIZE_BUCKETS: [u64; 6] = [64, 512, 4 << 10, 32 << 10, 256 << 10, 2 << 20];

/// Data messages and their payload bytes (before compression) each way, and how the
/// sizes of those received spread over [`SIZE_BUCKETS`]. (Sent ones have no histogram:
/// a broadcast queues one frame on thousands of connections, and each addition counts
/// there; the application knows what it sends.)
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Data messages received.
    pub messages_in: u64,
    /// Their payload bytes (inflated, when compressed).
    pub bytes_in: u64,
    /// Data messages queued to send (a fragmented one counts when its last part is).
    pub messages_out: u64,
    /// Their payload bytes (before compression).
    pub bytes_out: u64,
    /// Data messages the I/O layer did not queue (a full send queue with a policy that
    /// drops), counted by it.
    pub dropped_out: u64,
    /// Received messages per size bucket: `sizes_in[i]` counts those of at most
    /// `SIZE_BUCKETS[i]` bytes and more than the bucket before; the last, the rest.
    pub sizes_in: [u64; SIZE_BUCKETS.len() + 1],
}

/// The bucket of a message of `len` bytes: the bounds are 64 times powers of 8, so the
/// bit length of `len - 1` gives it without a search (a few instructions per message).
#[inline]
fn bucket(len: u64) -> usize {
    let bits = 64 - len.saturating_sub(1).leading_zeros() as usize; // 65..=512 -> 7..=9
    if bits <= 6 { 0 } else { ((bits - 7) / 3 + 1).min(SIZE_BUCKETS.len()) }
}

impl Counts {
    pub(crate) fn received(&mut self, len: usize) {
        self.messages_in += 1;
        self.bytes_in += len as u64;
        self.sizes_in[bucket(len as u64)] += 1;
    }

    /// A whole message of `len` bytes queued.
    #[inline]
    pub(crate) fn sent(&mut self, len: usize) {
        self.messages_out += 1;
        self.bytes_out += len as u64;
    }

    /// `len` more bytes of a fragmented message; `fin` ends it.
    pub(crate) fn sent_part(&mut self, len: usize, fin: bool) {
        self.bytes_out += len as u64;
        self.messages_out += u64::from(fin);
    }

    /// Adds `other`'s counts to these.
    pub fn add(&mut self, other: &Counts) {
        self.messages_in += other.messages_in;
        self.bytes_in += other.bytes_in;
        self.messages_out += other.messages_out;
        self.bytes_out += other.bytes_out;
        self.dropped_out += other.dropped_out;
        for (a, b) in self.sizes_in.iter_mut().zip(&other.sizes_in) {
            *a += b;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_arithmetic_matches_the_bounds() {
        let search = |len: u64| SIZE_BUCKETS.iter().position(|max| len <= *max).unwrap_or(SIZE_BUCKETS.len());
        for len in (0..70_000).chain([262_143, 262_144, 262_145, 2 << 20, (2 << 20) + 1, u64::MAX]) {
            assert_eq!(bucket(len), search(len), "{len}");
        }
    }

    #[test]
    fn sizes_fall_in_their_bucket_bounds_included() {
        assert_eq!(
            [0, 64, 65, 512, 4096, 4097, 2 << 20, (2 << 20) + 1].map(bucket),
            [0, 0, 1, 1, 2, 3, 5, 6]
        );
    }
}
