//! Per-connection settings of the I/O layer.

use std::time::Duration;

pub use zapsocket_proto::Config as ProtocolConfig;

use crate::budget::MemoryBudget;

/// What happens to a connection whose send queue is full when a message is queued
/// without waiting (a broadcast, `try_send`).
///
/// A client that does not read fills its TCP window, then its send queue. Waiting for it
/// would stall everyone sharing the broadcast; buffering without bound would let it grow
/// the server's memory. So a full queue applies this policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum SlowConsumer {
    /// Terminate the connection (default). The peer is not reading, so a close frame
    /// could not reach it in time; it sees the TCP connection end (1006), the server
    /// records close code 1008 "send queue full". Nothing is silently lost: the client
    /// knows it was cut off and can reconnect and resync.
    #[default]
    Terminate,
    /// Drop the message for this connection only and keep it open. Lossy: use it for
    /// data where only the latest value matters (positions, prices).
    DropMessage,
}

/// The default of [`WebSocketConfig::write_timeout`]: 30 s.
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// Settings of one WebSocket connection (server or client side).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct WebSocketConfig {
    /// Protocol limits and timers: frame, message and fragment limits, keepalive, close
    /// timeout. See [`ProtocolConfig`] for each default.
    pub protocol: ProtocolConfig,
    /// The most bytes queued for sending before the queue counts as full. Default: 1 MiB.
    /// Counted as [`Outbound::cost`](zapsocket_proto::Outbound::cost): the bytes, plus
    /// [`CHUNK_OVERHEAD`](zapsocket_proto::CHUNK_OVERHEAD) per large or shared frame queued
    /// by reference (small ones are copied into one buffer).
    ///
    /// A waiting send (`send().await`) waits for room (a message larger than the limit is
    /// accepted when the queue is empty); a non-waiting one (broadcast, `try_send`)
    /// applies [`WebSocketConfig::slow_consumer`]. Bounds the memory a slow reader costs.
    pub max_send_queue: usize,
    /// What a full send queue does to non-waiting sends. Default: terminate.
    pub slow_consumer: SlowConsumer,
    /// The most received bytes buffered before they are read by `recv()`, beyond the
    /// frame in progress. Default: 64 KiB. Past it, reading from the socket pauses (TCP
    /// backpressure), so a peer cannot grow our memory faster than we consume. It bounds
    /// both the undecoded bytes and the messages decoded while a task waits in `closed()`
    /// without reading (each counted as its payload plus its queue entry, so that empty
    /// messages are not free): at most twice this, plus one message.
    pub max_read_buffer: usize,
    /// The budget that bounds the incoming data held across connections. Default: the
    /// process-wide [`MemoryBudget::process`] (256 MiB, shared by every connection of the
    /// process); `None` for no bound beyond this connection's own limits.
    ///
    /// Each connection holds up to `max_read_buffer` for free; beyond that, what it holds
    /// of messages still arriving (and of decoded messages not yet read) is charged to the
    /// budget. When the budget is spent, connections holding more than their free share
    /// stop being read (TCP backpressure) until it frees up; one that waits longer than
    /// [`MemoryBudget::wait`] (10 s) is failed with close code 1013 (try again later).
    /// Without a budget, many peers each sending most of a maximum-size message could
    /// make the server hold connections × `max_message_size` bytes.
    pub memory_budget: Option<MemoryBudget>,
    /// How long bytes may wait in the send queue without the peer taking any of them before
    /// the connection is terminated. Default: 30 s. **Server connections only** (the
    /// server's heartbeat thread checks it, with or without a heartbeat); `None` for no
    /// limit.
    ///
    /// A peer that stops reading fills its TCP window, then the send queue; a waiting
    /// `send().await` then waits for it. The heartbeat does not end such a peer if it keeps
    /// sending (anything it sends counts as alive), so without this a task could wait in
    /// `send()` for as long as the peer likes. A peer that reads slowly is not affected:
    /// the clock restarts whenever the socket takes bytes. (The kernel takes them in
    /// batches of about a third of the socket's send buffer, up to 4 MiB on Linux, so a
    /// peer reading slower than that per timeout, about 45 KB/s for 30 s, counts as
    /// stalled while data keeps waiting for it.) The connection ends as with
    /// [`SlowConsumer::Terminate`]: the peer sees the TCP connection end (1006), the
    /// server records close code 1008 "write timeout", and waiting sends fail.
    pub write_timeout: Option<Duration>,
}

impl Default for WebSocketConfig {
    fn default() -> Self {
        WebSocketConfig {
            protocol: ProtocolConfig::default(),
            max_send_queue: 1 << 20,
            slow_consumer: SlowConsumer::Terminate,
            max_read_buffer: 64 * 1024,
            memory_budget: Some(MemoryBudget::process()),
            write_timeout: Some(DEFAULT_WRITE_TIMEOUT),
        }
    }
}

impl WebSocketConfig {
    /// Sets the largest message accepted (and the largest frame, if smaller).
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.protocol.max_message_size = bytes;
        self.protocol.max_frame_size = self.protocol.max_frame_size.min(bytes);
        self
    }

    /// Sets the largest frame accepted.
    pub fn max_frame_size(mut self, bytes: usize) -> Self {
        self.protocol.max_frame_size = bytes;
        self
    }

    /// Sets the most frames per message. Default: no cap besides the message size, which
    /// counts 16 bytes per frame ([`zapsocket_proto::PART_OVERHEAD`]).
    pub fn max_message_parts(mut self, parts: usize) -> Self {
        self.protocol.max_message_parts = parts;
        self
    }

    /// Turns the heartbeat on: a ping every `interval`; a peer silent for `timeout`
    /// after a ping is terminated.
    pub fn heartbeat(mut self, interval: Duration, timeout: Duration) -> Self {
        self.protocol.ping_interval = Some(interval);
        self.protocol.pong_timeout = timeout;
        self
    }

    /// Turns the heartbeat off.
    pub fn no_heartbeat(mut self) -> Self {
        self.protocol.ping_interval = None;
        self
    }

    /// Sets how long a close handshake may take.
    pub fn close_timeout(mut self, timeout: Duration) -> Self {
        self.protocol.close_timeout = timeout;
        self
    }

    /// Sets [`WebSocketConfig::max_send_queue`].
    pub fn max_send_queue(mut self, bytes: usize) -> Self {
        self.max_send_queue = bytes;
        self
    }

    /// Sets [`WebSocketConfig::slow_consumer`].
    pub fn slow_consumer(mut self, policy: SlowConsumer) -> Self {
        self.slow_consumer = policy;
        self
    }

    /// Sets [`WebSocketConfig::memory_budget`].
    pub fn memory_budget(mut self, budget: Option<MemoryBudget>) -> Self {
        self.memory_budget = budget;
        self
    }

    /// Sets [`WebSocketConfig::write_timeout`].
    pub fn write_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.write_timeout = timeout;
        self
    }

    /// Sets [`WebSocketConfig::max_read_buffer`].
    pub fn max_read_buffer(mut self, bytes: usize) -> Self {
        self.max_read_buffer = bytes;
        self
    }
}

/// The server's default: heartbeat every 30 s, 30 s to answer.
pub(crate) fn server_default() -> WebSocketConfig {
    WebSocketConfig::default().heartbeat(Duration::from_secs(30), Duration::from_secs(30))
}
