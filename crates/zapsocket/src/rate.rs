//! Token buckets: the rate limits of the server's handshakes and of the layers above
//! (the realtime hub's message rate and violations).

use std::time::{Duration, Instant};

/// A token bucket: up to `burst` at once, then `per_second` on average.
///
/// The bucket starts full; each message (or violation) takes a token; tokens come back
/// continuously at `per_second`, never more than `burst`.
///
/// Used by [`ServerBuilder::max_handshake_rate`](crate::ServerBuilder::max_handshake_rate)
/// and the realtime hub's `HubConfig::max_message_rate` and `max_violations`.
///
/// ```
/// use zapsocket::RateLimit;
/// // 20 a second on average, 50 at once.
/// let limit = RateLimit::new(20.0, 50);
/// // 10 in all, one forgiven every 6 s.
/// let strict = RateLimit::new(1.0 / 6.0, 10);
/// # drop((limit, strict));
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RateLimit {
    /// Tokens back each second. Zero (or less, or NaN): none ever come back, so `burst`
    /// is the allowance for the whole connection.
    pub per_second: f64,
    /// Tokens at once: the bucket's size, and what it holds at the start. Zero: the
    /// bucket never holds a token.
    pub burst: u32,
}

impl RateLimit {
    /// `per_second` on average, up to `burst` at once.
    pub fn new(per_second: f64, burst: u32) -> Self {
        RateLimit { per_second, burst }
    }

    /// Tokens back per second, as a usable number (0 for "never").
    fn refill(&self) -> f64 {
        if self.per_second > 0.0 { self.per_second } else { 0.0 }
    }
}

/// The tokens left of a [`RateLimit`], and when they were counted: one per limited thing
/// (a socket, an address). Time is an argument, so it is plain data.
///
/// ```
/// use std::time::{Duration, Instant};
/// use zapsocket::{RateLimit, TokenBucket};
///
/// let start = Instant::now();
/// let mut bucket = TokenBucket::full(RateLimit::new(2.0, 1), start);
/// assert!(bucket.take(start));
/// assert!(!bucket.take(start));
/// assert_eq!(bucket.wait(start), Some(Duration::from_millis(500)));
/// assert!(bucket.take(start + Duration::from_millis(500)));
/// ```
#[derive(Clone, Copy, Debug)]
pub struct TokenBucket {
    limit: RateLimit,
    tokens: f64,
    at: Instant,
}

impl TokenBucket {
    /// A full bucket at `now`.
    pub fn full(limit: RateLimit, now: Instant) -> Self {
        TokenBucket { limit, tokens: f64::from(limit.burst), at: now }
    }

    /// Takes a token if one is there; `false` when the bucket is empty.
    pub fn take(&mut self, now: Instant) -> bool {
        self.refill(now);
        if self.tokens < 1.0 {
            return false;
        }
        self.tokens -= 1.0;
        true
    }

    /// How long until a token is there: zero if one is, `None` if none ever will (a
    /// burst of 0, no refill, or a wait too long to count).
    pub fn wait(&mut self, now: Instant) -> Option<Duration> {
        self.refill(now);
        if self.tokens >= 1.0 {
            return Some(Duration::ZERO);
        }
        if self.limit.burst == 0 {
            return None;
        }
        Duration::try_from_secs_f64((1.0 - self.tokens) / self.limit.refill()).ok()
    }

    /// Whether the bucket is full again (nothing taken lately): its state can be forgotten.
    pub fn is_full(&mut self, now: Instant) -> bool {
        self.refill(now);
        self.tokens >= f64::from(self.limit.burst)
    }

    fn refill(&mut self, now: Instant) {
        let earned = now.saturating_duration_since(self.at).as_secs_f64() * self.limit.refill();
        // `min` also turns an infinite rate's NaN (0 s × ∞) into a full bucket.
        self.tokens = (self.tokens + earned).min(f64::from(self.limit.burst));
        self.at = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn a_burst_then_the_average_rate() {
        let start = Instant::now();
        let mut bucket = TokenBucket::full(RateLimit::new(2.0, 3), start);
        assert!((0..3).all(|_| bucket.take(start)), "the burst is there at once");
        assert!(!bucket.take(start));
        assert_eq!(bucket.wait(start), Some(secs(0.5)));
        assert!(!bucket.take(start + secs(0.4)));
        assert!(bucket.take(start + secs(0.5)), "one token back after 1 / rate");
        assert!(!bucket.take(start + secs(0.5)));
        // A long quiet time fills the bucket up to the burst, never more.
        let later = start + secs(100.0);
        assert_eq!(bucket.wait(later), Some(Duration::ZERO));
        assert!((0..3).all(|_| bucket.take(later)));
        assert!(!bucket.take(later));
    }

    #[test]
    fn no_refill_makes_the_burst_an_allowance_for_the_connection() {
        let start = Instant::now();
        for per_second in [0.0, -1.0, f64::NAN] {
            let mut bucket = TokenBucket::full(RateLimit::new(per_second, 2), start);
            assert!(bucket.take(start) && bucket.take(start));
            assert!(!bucket.take(start + secs(1e6)), "{per_second}");
            assert_eq!(bucket.wait(start + secs(1e6)), None, "{per_second}");
        }
        let mut empty = TokenBucket::full(RateLimit::new(10.0, 0), start);
        assert!(!empty.take(start + secs(10.0)), "a burst of 0 holds no token");
        assert_eq!(empty.wait(start + secs(10.0)), None);
    }

    #[test]
    fn an_infinite_rate_never_runs_out() {
        let start = Instant::now();
        let mut bucket = TokenBucket::full(RateLimit::new(f64::INFINITY, 1), start);
        assert!(bucket.take(start));
        assert!(bucket.take(start), "0 s at an infinite rate refills");
        assert!(bucket.take(start + secs(1.0)));
    }
}
