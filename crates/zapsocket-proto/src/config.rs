//! Limits and timers of a connection.

use std::time::Duration;

/// The limits and timers of one connection. Every limit bounds memory that a peer can
/// make us spend; each field documents its default and the attack it stops.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// The largest frame payload accepted, in bytes. Default: 16 MiB.
    ///
    /// Stops a peer from declaring a huge frame; the header alone is enough to refuse it
    /// (close 1009) before any payload is buffered.
    pub max_frame_size: usize,
    /// The largest message accepted, in bytes, counting [`PART_OVERHEAD`] bytes per
    /// fragment on top of the payload. Default: 64 MiB.
    ///
    /// Bounds what a fragmented message can make us buffer (close 1009).
    pub max_message_size: usize,
    /// The most frames one message may have, a cap of its own besides the size. Default:
    /// none (`usize::MAX`).
    ///
    /// A flood of tiny or empty fragments is already bounded without it: each fragment
    /// counts [`PART_OVERHEAD`] bytes toward [`Config::max_message_size`], so the default
    /// 64 MiB allows at most 4 Mi fragments, and every fragment costs the peer at least
    /// 2 bytes on the wire (6 from a client). A cap of its own refuses legal messages
    /// within the size limit (Autobahn 9.3.1 and 9.4.1 send 4 MiB in 64-byte fragments);
    /// set it only to be stricter than the size (close 1009).
    pub max_message_parts: usize,
    /// Send a ping when this much time has passed since the last one. Default: `None`
    /// (no keepalive at this layer; servers turn it on).
    pub ping_interval: Option<Duration>,
    /// How long the peer may stay silent after a ping before it is considered dead and
    /// the connection is ended without a close handshake. Any bytes received count as a
    /// sign of life. Default: 20 s.
    pub pong_timeout: Duration,
    /// How long to wait for the peer's close frame after sending ours. Default: 5 s.
    ///
    /// Stops a peer from holding a closing connection open forever.
    pub close_timeout: Duration,
    /// The most bytes waiting to be sent under which a received ping is answered at once.
    /// Default: 1 MiB.
    ///
    /// Past it, the pong is held back, one at most: a newer ping replaces the held pong
    /// (RFC 6455 §5.5.3 allows answering only the most recent ping), and it is queued once
    /// the backlog falls below the limit ([`Connection::queue_held_pong`]). Stops a peer
    /// that sends pings and never reads from growing our send queue without bound.
    ///
    /// [`Connection::queue_held_pong`]: crate::Connection::queue_held_pong
    pub max_pong_backlog: usize,
}

/// The bytes each fragment adds to a message's size for [`Config::max_message_size`]: the
/// bookkeeping cost of a part, so that empty fragments are not free.
pub const PART_OVERHEAD: usize = 16;

impl Default for Config {
    fn default() -> Self {
        Config {
            max_frame_size: 16 << 20,
            max_message_size: 64 << 20,
            max_message_parts: usize::MAX,
            ping_interval: None,
            pong_timeout: Duration::from_secs(20),
            close_timeout: Duration::from_secs(5),
            max_pong_backlog: 1 << 20,
        }
    }
}

impl Config {
    /// Sets [`Config::max_frame_size`].
    pub fn max_frame_size(mut self, bytes: usize) -> Self {
        self.max_frame_size = bytes;
        self
    }

    /// Sets [`Config::max_message_size`].
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = bytes;
        self
    }

    /// Sets [`Config::max_message_parts`].
    pub fn max_message_parts(mut self, parts: usize) -> Self {
        self.max_message_parts = parts;
        self
    }

    /// Sets [`Config::ping_interval`].
    pub fn ping_interval(mut self, interval: Option<Duration>) -> Self {
        self.ping_interval = interval;
        self
    }

    /// Sets [`Config::pong_timeout`].
    pub fn pong_timeout(mut self, timeout: Duration) -> Self {
        self.pong_timeout = timeout;
        self
    }

    /// Sets [`Config::close_timeout`].
    pub fn close_timeout(mut self, timeout: Duration) -> Self {
        self.close_timeout = timeout;
        self
    }

    /// Sets [`Config::max_pong_backlog`].
    pub fn max_pong_backlog(mut self, bytes: usize) -> Self {
        self.max_pong_backlog = bytes;
        self
    }
}
