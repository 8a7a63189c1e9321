//! The adapter's settings, each with its default and what it bounds.

use std::time::Duration;

/// Settings of a [`RedisAdapter`](crate::RedisAdapter). Change them on a
/// `RedisConfig::default()`.
///
/// ```
/// let mut config = zapsocket_redis::RedisConfig::default();
/// config.prefix = "chat".into();
/// # drop(config);
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct RedisConfig {
    /// The start of every key and channel, so that several applications can share one
    /// Redis. Default: `zap`.
    pub prefix: String,
    /// This node's id. Default: `n-` and 16 random hex digits, new at each start.
    pub node_id: Option<String>,
    /// How long a node's lease runs; it is renewed every fifth of it. A node whose lease
    /// ran out is dead: another node removes its members from presence (with `$left`) and
    /// makes its sessions resumable elsewhere. Default: 5 s, so a dead node's members
    /// leave within about 6 s.
    pub lease_ttl: Duration,
    /// How long a connection attempt or a command may take before Redis counts as out of
    /// reach (a stopped or partitioned Redis is noticed within it). Default: 2 s.
    pub timeout: Duration,
    /// The most bytes of publications waiting to go to Redis (each counted with 64 bytes
    /// of overhead). Default: 8 MiB. Past it, emits fail with `unavailable` at once: a
    /// slow Redis never grows a node's memory without bound. What waits when the link
    /// drops is sent by the next link if it is made within `timeout`, else dropped
    /// (counted in `publish_failures`).
    pub max_publish_queue: usize,
    /// The most bytes of room messages held while a gap is repaired from the history
    /// (each counted with its overhead). Default: 8 MiB. Past it the held messages are
    /// dropped and every room is checked against Redis once the repair is done (what
    /// was dropped is in the history); what left the history is reported (`$resync`).
    pub max_repair_buffer: usize,
    /// How long a room's offset counter is kept after its last message or join. Default:
    /// 24 hours. A room idle for longer starts its offsets over (a client that still
    /// holds older ones is told to resync when it resumes).
    pub room_ttl: Duration,
    /// The most requests to other nodes waiting for answers at once; more get no
    /// answer (every node counted as missing). Default: 1,024.
    pub max_pending_requests: usize,
    /// The most requests from other nodes handled at once; more are not answered (the
    /// asker counts this node as missing). Default: 64.
    pub max_incoming_requests: usize,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            prefix: "zap".into(),
            node_id: None,
            lease_ttl: Duration::from_secs(5),
            timeout: Duration::from_secs(2),
            max_publish_queue: 8 << 20,
            max_repair_buffer: 8 << 20,
            room_ttl: Duration::from_secs(24 * 3600),
            max_pending_requests: 1_024,
            max_incoming_requests: 64,
        }
    }
}
