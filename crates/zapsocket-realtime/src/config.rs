//! The hub's limits, with the defaults of docs/PROTOCOL.md (*Limits*).

use std::time::Duration;

use zapsocket::RateLimit;

/// Limits and timeouts of a [`Hub`](crate::Hub). Each field says its default and what it
/// protects against; change them on a `HubConfig::default()`.
///
/// ```
/// let mut config = zapsocket_realtime::HubConfig::default();
/// config.max_rooms = 10;
/// let hub = zapsocket_realtime::Hub::builder().config(config).build();
/// # drop(hub);
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct HubConfig {
    /// The largest envelope accepted, in bytes: for a binary frame (protocol version 2),
    /// the whole frame, JSON and byte arrays. Default: 1 MiB. Larger ones get
    /// `too_large` without being parsed, so a peer cannot make the server parse huge
    /// JSON. (The WebSocket server's own message limit closes with 1009 past it: set it
    /// at or above this one.)
    pub max_message: usize,
    /// The longest event, procedure or room name, in bytes. Default: 128. Bounds the keys
    /// a peer can make the server store and look up.
    pub max_name: usize,
    /// The most rooms one socket can be in (not counting `$all` and its own room).
    /// Default: 100. Past it `$join` fails with `limit`: stops one socket from creating
    /// rooms without end.
    pub max_rooms: usize,
    /// The largest room with presence. Default: 1,000. While a room has at most this
    /// many members, joins and leaves send `$joined`/`$left` to it and `$join`/`$members`
    /// replies list the members; past it only the count is given. Presence costs one
    /// delivery per member per join: unbounded, filling a room of N costs N²/2.
    pub max_presence: usize,
    /// The most requests pending in each direction per socket: acks the server awaits,
    /// and client requests (acks and calls) being handled. Default: 1,024. Past it a
    /// server request fails with `limit` and the server stops reading the socket until
    /// one finishes (TCP backpressure).
    pub max_pending_acks: usize,
    /// How many protocol violations a socket may commit before it is closed with
    /// **1008** ("too many malformed messages"), as a token bucket: each violation takes
    /// a token, and the one that finds none left closes the socket (after its error
    /// reply). Default: 100 at once, 10 a second back (`RateLimit::new(10.0, 100)`, about
    /// 100 per 10 s): a buggy but honest client that sends a bad message now and then is
    /// never cut off; a peer that sends nothing but garbage is closed after 100 of them
    /// (plus 10 a second). Stops a peer from making the server parse and answer garbage
    /// without end. Clients do not reconnect after 1008 (docs/PROTOCOL.md, *Close
    /// codes*): they would send the same again.
    ///
    /// Counted, a message that breaks the protocol: a binary frame on a version 1
    /// connection (`unsupported`) or a malformed one (`bad_envelope`), an envelope over [`max_message`](Self::max_message)
    /// (`too_large`), text that is not an envelope (`bad_json`; `bad_envelope`, which
    /// includes a request reusing an ack id still in use), an event name starting with
    /// `$` that the protocol does not define (`reserved`). Not counted, what the
    /// application or the data decides: `bad_payload`, `unknown_event`,
    /// `unknown_procedure`, `forbidden`, `limit`, `handler_error`, and room names refused
    /// by `$join`, `$leave` or `$members` (a user may type those); such errors are
    /// answered, however many.
    ///
    /// `None`: no limit, every violation is answered and the socket stays open. A
    /// `burst` of 0 closes at the first violation; a `per_second` of 0 makes `burst` the
    /// allowance for the whole connection.
    pub max_violations: Option<RateLimit>,
    /// How many messages a socket may send, as a token bucket: every text or binary
    /// message takes a token (events, calls, replies, malformed ones; not pings and
    /// pongs). When none is left the server stops reading the socket until one is back
    /// (TCP backpressure, as past [`max_pending_acks`](Self::max_pending_acks)): nothing
    /// is refused, dropped or reordered, the client's sends wait. Limits the work one
    /// socket can make its handlers do (e.g. writes to a database, broadcasts).
    ///
    /// Default: `None`, no limit. socket.io and `ws` have none, and the right rate
    /// depends on the application (a chat sends a message a second, a game 60 updates a
    /// second); what one message can cost is bounded already ([`max_message`](Self::max_message),
    /// [`max_pending_acks`](Self::max_pending_acks) handlers at once, the WebSocket
    /// layer's memory budget).
    ///
    /// Why waiting rather than refusing: nothing an honest client sends is lost (the Rust
    /// and JS clients send what they kept while offline in one burst when they reconnect;
    /// a refused event without an ack would vanish behind a `$error`, a refused reply
    /// would fail the server's own `emit_with_ack` with `timeout`), clients need no new
    /// error code, and a peer over its rate costs the server nothing while it waits (it
    /// is not read; the WebSocket layer bounds what it has read ahead). The price: the
    /// client is not told, its requests just take longer (its own ack timeouts may fire
    /// if it keeps sending faster than the rate). A `burst` of 0, or a spent bucket with
    /// a `per_second` of 0, is never read again (the socket ends with its connection).
    pub max_message_rate: Option<RateLimit>,
    /// How long the server waits for a client's ack. Default: 10 s. Told to clients in
    /// `$hello` as their default too.
    pub ack_timeout: Duration,
    /// Each room's history, kept so that offsets can be replayed (recovery).
    pub history: HistoryLimits,
    /// How long a disconnected session (its rooms and data) is kept for recovery
    /// (`$resume`). Default: 2 minutes. Zero turns recovery off.
    pub recovery_window: Duration,
    /// The most disconnected sessions kept at once; past it the oldest is forgotten.
    /// Default: 10,000. Bounds the memory that clients which connect and vanish cost.
    pub max_detached_sessions: usize,
    /// The most bytes of room messages held for one socket while its `$resume` replays
    /// the history (each counted with 96 bytes of overhead). Default: 1 MiB. Past it the
    /// held messages are dropped and the history is read again from where the replay
    /// got to (they are in it); a replay still catching up after 5 s goes live with what
    /// it holds, or gets `recovery_unavailable` when some were dropped. Bounds what a busy
    /// room costs during a slow replay.
    pub max_resume_buffer: usize,
    /// How long a `$resume` waits for the connection that still holds the session to let
    /// it go (on this node: it is ended; on another: that node is asked, and a dead node's
    /// lease runs out). Default: 8 s (under the clients' 10 s ack timeout).
    pub takeover_timeout: Duration,
    /// How long requests to other nodes wait for their answers
    /// ([`Operator::fetch_sockets`](crate::Operator::fetch_sockets),
    /// [`Hub::server_side_emit`](crate::Hub::server_side_emit), ...). Default: 5 s.
    /// Nodes that did not answer by then are named in the result.
    pub request_timeout: Duration,
}

/// Bounds of one room's history: whichever is reached first evicts the oldest messages.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct HistoryLimits {
    /// Messages per room. Default: 1,000.
    pub max_messages: usize,
    /// Encoded bytes per room. Default: 1 MiB.
    pub max_bytes: usize,
    /// Age of the oldest message kept. Default: 2 minutes.
    pub max_age: Duration,
}

impl Default for HistoryLimits {
    fn default() -> Self {
        HistoryLimits { max_messages: 1_000, max_bytes: 1 << 20, max_age: Duration::from_secs(120) }
    }
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            max_message: 1 << 20,
            max_name: 128,
            max_rooms: 100,
            max_presence: 1_000,
            max_pending_acks: 1_024,
            max_violations: Some(RateLimit::new(10.0, 100)),
            max_message_rate: None,
            ack_timeout: Duration::from_secs(10),
            history: HistoryLimits::default(),
            recovery_window: Duration::from_secs(120),
            max_detached_sessions: 10_000,
            max_resume_buffer: 1 << 20,
            takeover_timeout: Duration::from_secs(8),
            request_timeout: Duration::from_secs(5),
        }
    }
}
