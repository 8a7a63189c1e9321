//! # zapsocket-redis
//!
//! Many nodes behaving as one realtime server: a [`Broker`] and [`History`] for
//! [`zapsocket_realtime`] over a Redis server (7.0 or later), on the `redis` crate.
//!
//! ```no_run
//! use zapsocket_realtime::Hub;
//! use zapsocket_redis::{RedisAdapter, RedisConfig};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let redis = RedisAdapter::connect("redis://127.0.0.1:6379", RedisConfig::default()).await?;
//! let hub = Hub::builder().adapter(redis.adapter()).build();
//! // ... register handlers, serve: every node started like this is one server.
//! # drop(hub); Ok(()) }
//! ```
//!
//! ## What each node does
//!
//! - **Publish**: one script per message (one round trip, whatever the recipients):
//!   the next sequence number and room offsets, an append to each room's stream (capped
//!   by the history limits), one `PUBLISH` per room channel. Publications leave in order
//!   from one queue, so a sender's messages keep their order everywhere.
//! - **Receive**: a node subscribes to a room's channel only while it has members there,
//!   so it never reads traffic it does not deliver. Messages to one socket go to the
//!   inbox of the node its session is on. Every message carries its offsets: a node that
//!   sees one skipped (a lost subscription, a dropped connection) repairs the gap from the
//!   room's stream before going on, or, when the stream no longer has it, tells the
//!   room's members to resync (`$resync`). Never silent.
//! - **Presence and sessions** live in Redis, written through at connect, join and leave,
//!   so that `$members` lists every node's members and a session can be resumed on any
//!   node, also after its node was killed.
//! - **Leases**: each node renews a lease every fifth of [`RedisConfig::lease_ttl`]; a node
//!   whose lease runs out is dead: the first node to see it removes its members from
//!   presence (with `$left`) and makes its sessions resumable elsewhere.
//! - **Requests** between nodes (socket.io's `fetchSockets`, `serverSideEmit`) go to the
//!   nodes that hold a lease, and each result names the live nodes that did not answer.
//! - **Redis trouble**: while Redis is out of reach, clients stay connected and local work
//!   goes on; what must cross nodes fails at once with `unavailable`; nothing queues
//!   without bound. The node reconnects by itself, subscribes again, repairs what it
//!   missed from the streams, writes its sessions and presence again; a Redis that came
//!   back empty has a new epoch (resuming clients are told `recovery_unavailable`,
//!   connected ones `$resync`).
//!
//! The key layout is in the `keys` module's documentation; the scripts in `scripts`.
//! What is and is not guaranteed is in docs/GUARANTEES.md.

#![forbid(unsafe_code)]

mod config;
mod inbound;
mod keys;
mod link;
mod nodes;
mod ops;
mod outbound;
mod scripts;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock, RwLock, Weak};
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use zapsocket_realtime::{
    Adapter, AdapterError, Answers, BoxFuture, Broker, BrokerMetrics, Deliver, Entry, History, HubConfig,
    Member, NodeInfo, Presence, Publication, SessionRecord,
};

pub use config::RedisConfig;

use keys::Keys;
use scripts::Scripts;

/// Why [`RedisAdapter::connect`] failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum ConnectError {
    /// The URL is not a Redis URL.
    Url(String),
    /// No connection could be made within three times [`RedisConfig::timeout`]: the
    /// last error.
    Unreachable(String),
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectError::Url(m) => write!(f, "not a redis URL: {m}"),
            ConnectError::Unreachable(m) => write!(f, "redis is out of reach: {m}"),
        }
    }
}

impl std::error::Error for ConnectError {}

/// A broker and history on Redis: give [`RedisAdapter::adapter`] to
/// [`HubBuilder::adapter`](zapsocket_realtime::HubBuilder::adapter). Cheap to clone; one
/// per hub.
#[derive(Clone)]
pub struct RedisAdapter {
    inner: Arc<Inner>,
}

/// What the hub told the broker when it attached.
pub(crate) struct HubLink {
    pub(crate) hub: Weak<dyn Deliver>,
    pub(crate) max_presence: usize,
    pub(crate) recovery_window: Duration,
    /// Messages kept per room's stream.
    pub(crate) history_messages: usize,
    /// How long a message stays replayable.
    pub(crate) history_age: Duration,
}

/// The adapter's state, shared by its tasks (which hold it weakly: they end when the
/// hub is dropped).
pub(crate) struct Inner {
    pub(crate) config: RedisConfig,
    pub(crate) keys: Keys,
    pub(crate) scripts: Scripts,
    pub(crate) node: String,
    pub(crate) commands: redis::Client,
    pub(crate) pushes: redis::Client,
    /// The connection for commands, while Redis is reachable.
    pub(crate) cmd: RwLock<Option<MultiplexedConnection>>,
    /// The connection that receives room messages and requests (RESP3 pushes).
    pub(crate) sub: RwLock<Option<MultiplexedConnection>>,
    pub(crate) up: AtomicBool,
    /// Set when the link must be made again (a lost subscription, a failed command).
    pub(crate) broken: tokio::sync::Notify,
    /// Bumped at each new link: tasks of an older one stop.
    pub(crate) generation: AtomicU64,
    pub(crate) epoch: RwLock<Arc<str>>,
    pub(crate) hub: OnceLock<HubLink>,
    pub(crate) inbound: inbound::Inbound,
    pub(crate) outbound: outbound::Queue,
    pub(crate) requests: nodes::Requests,
    pub(crate) counters: Counters,
    /// Live nodes as the last lease renewal saw them.
    pub(crate) live: Mutex<Vec<NodeInfo>>,
    /// When the current link came up (the reaper waits a lease after it).
    pub(crate) up_since: Mutex<Option<Instant>>,
    /// Serializes subscription changes.
    pub(crate) subscriptions: tokio::sync::Mutex<()>,
    /// The last error, for [`RedisAdapter::connect`].
    pub(crate) last_error: Mutex<String>,
}

/// The broker's counters.
#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) published: AtomicU64,
    pub(crate) publish_failures: AtomicU64,
    pub(crate) received: AtomicU64,
    pub(crate) gaps: AtomicU64,
    pub(crate) repaired: AtomicU64,
    pub(crate) lost: AtomicU64,
    pub(crate) disconnects: AtomicU64,
    pub(crate) reaped: AtomicU64,
    /// Publish latencies per bucket of `PUBLISH_LATENCY_BUCKETS_US`, and their sum (µs).
    pub(crate) latency: [AtomicU64; zapsocket_realtime::PUBLISH_LATENCY_BUCKETS_US.len() + 1],
    pub(crate) latency_sum_us: AtomicU64,
}

impl Counters {
    /// A publication the store took `us` microseconds after it was queued.
    pub(crate) fn published_after(&self, us: u64) {
        let buckets = &zapsocket_realtime::PUBLISH_LATENCY_BUCKETS_US;
        let i = buckets.iter().position(|max| us <= *max).unwrap_or(buckets.len());
        self.latency[i].fetch_add(1, Relaxed);
        self.latency_sum_us.fetch_add(us, Relaxed);
    }
}

impl RedisAdapter {
    /// Connects to the Redis at `url` (`redis://[user:password@]host:port[/db]`) and
    /// starts the node: waits until the first connection is made (at most three times
    /// [`RedisConfig::timeout`]), then keeps it up by itself, reconnecting after any
    /// trouble.
    pub async fn connect(url: &str, config: RedisConfig) -> Result<RedisAdapter, ConnectError> {
        let inner = Arc::new(Inner::new(url, config)?);
        tokio::spawn(link::supervise(Arc::downgrade(&inner)));
        let deadline = Instant::now() + inner.config.timeout * 3;
        while !inner.up.load(Relaxed) {
            if Instant::now() >= deadline {
                let error = inner.last_error.lock().unwrap_or_else(|p| p.into_inner()).clone();
                return Err(ConnectError::Unreachable(error));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(RedisAdapter { inner })
    }

    /// The adapter to build a hub with.
    pub fn adapter(&self) -> Adapter {
        Adapter::new(Arc::new(self.clone()))
    }

    /// This node's id.
    pub fn node(&self) -> &str {
        &self.inner.node
    }

    /// Whether Redis is reachable now.
    pub fn is_connected(&self) -> bool {
        self.inner.up.load(Relaxed)
    }
}

impl Inner {
    fn new(url: &str, config: RedisConfig) -> Result<Self, ConnectError> {
        use redis::IntoConnectionInfo;
        let info = url.into_connection_info().map_err(|e| ConnectError::Url(e.to_string()))?;
        let resp3 = info.redis_settings().clone().set_protocol(redis::ProtocolVersion::RESP3);
        let commands = redis::Client::open(info.clone()).map_err(|e| ConnectError::Url(e.to_string()))?;
        let pushes = redis::Client::open(info.set_redis_settings(resp3))
            .map_err(|e| ConnectError::Url(e.to_string()))?;
        let node = config.node_id.clone().unwrap_or_else(|| format!("n-{:016x}", rand::random::<u64>()));
        Ok(Inner {
            keys: Keys::new(&config.prefix),
            scripts: Scripts::new(),
            node,
            commands,
            pushes,
            cmd: RwLock::new(None),
            sub: RwLock::new(None),
            up: AtomicBool::new(false),
            broken: tokio::sync::Notify::new(),
            generation: AtomicU64::new(0),
            epoch: RwLock::new(Arc::from("")),
            hub: OnceLock::new(),
            inbound: inbound::Inbound::default(),
            outbound: outbound::Queue::default(),
            requests: nodes::Requests::default(),
            counters: Counters::default(),
            live: Mutex::default(),
            up_since: Mutex::default(),
            subscriptions: tokio::sync::Mutex::new(()),
            last_error: Mutex::new("not connected yet".into()),
            config,
        })
    }

    /// The command connection, or `Unavailable` while Redis is out of reach.
    pub(crate) fn cmd(&self) -> Result<MultiplexedConnection, AdapterError> {
        match (self.up.load(Relaxed), self.cmd.read().unwrap_or_else(|p| p.into_inner()).clone()) {
            (true, Some(conn)) => Ok(conn),
            _ => Err(unreachable()),
        }
    }

    /// The push connection (also while the link is being made).
    pub(crate) fn sub(&self) -> Result<MultiplexedConnection, AdapterError> {
        self.sub.read().unwrap_or_else(|p| p.into_inner()).clone().ok_or_else(unreachable)
    }

    pub(crate) fn epoch(&self) -> Arc<str> {
        self.epoch.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub(crate) fn hub(&self) -> Option<Arc<dyn Deliver>> {
        self.hub.get().and_then(|link| link.hub.upgrade())
    }

    /// Asks for the link to be made again, when `generation` is still the current link
    /// (a task of a link already replaced has nothing to report).
    pub(crate) fn break_link(&self, generation: u64) {
        if self.generation.load(Relaxed) == generation {
            self.broken.notify_one();
        }
    }

    pub(crate) fn max_presence(&self) -> usize {
        self.hub.get().map_or(1_000, |link| link.max_presence)
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Wakes the sending task, which then finds the adapter gone and ends.
        self.outbound.ready.notify_waiters();
    }
}

/// The error of anything tried while Redis is out of reach.
pub(crate) fn unreachable() -> AdapterError {
    AdapterError::Unavailable("redis is out of reach".into())
}

/// A Redis error as an adapter error.
pub(crate) fn failed(error: redis::RedisError) -> AdapterError {
    AdapterError::Unavailable(format!("redis: {error}"))
}

impl Broker for RedisAdapter {
    fn node(&self) -> &str {
        &self.inner.node
    }

    fn attach(&self, hub: Weak<dyn Deliver>, config: &HubConfig) {
        let link = HubLink {
            hub,
            max_presence: config.max_presence,
            recovery_window: config.recovery_window,
            history_messages: config.history.max_messages,
            history_age: config.history.max_age,
        };
        let _ = self.inner.hub.set(link);
    }

    fn publish(&self, publication: Publication) -> Result<(), AdapterError> {
        outbound::publish(&self.inner, publication)
    }

    fn publish_volatile(&self, publication: Publication) -> Result<(), AdapterError> {
        outbound::publish_volatile(&self.inner, publication)
    }

    fn subscribe<'a>(&'a self, room: &'a str) -> BoxFuture<'a, Result<(), AdapterError>> {
        Box::pin(inbound::subscribe(&self.inner, room))
    }

    fn unsubscribe(&self, room: &str) {
        inbound::unsubscribe(&self.inner, room);
    }

    fn join<'a>(
        &'a self,
        room: &'a str,
        member: &'a Member,
        max_listed: usize,
    ) -> BoxFuture<'a, Result<Presence, AdapterError>> {
        Box::pin(ops::join(&self.inner, room, member, max_listed))
    }

    fn leave<'a>(&'a self, room: &'a str, sid: &'a str) -> BoxFuture<'a, Result<Presence, AdapterError>> {
        Box::pin(async move {
            let (left, presence) = ops::leave(&self.inner, room, sid, &self.inner.node).await?;
            Ok(Presence { changed: left.is_some(), ..presence })
        })
    }

    fn members<'a>(
        &'a self,
        room: &'a str,
        max_listed: usize,
    ) -> BoxFuture<'a, Result<Presence, AdapterError>> {
        Box::pin(ops::members(&self.inner, room, max_listed))
    }

    fn nodes(&self) -> BoxFuture<'_, Result<Vec<NodeInfo>, AdapterError>> {
        Box::pin(nodes::live(&self.inner))
    }

    fn request<'a>(
        &'a self,
        node: Option<&'a str>,
        request: &'a str,
        timeout: Duration,
    ) -> BoxFuture<'a, Answers> {
        Box::pin(nodes::request(&self.inner, node, request, timeout))
    }

    fn metrics(&self) -> BrokerMetrics {
        let c = &self.inner.counters;
        let mut m = BrokerMetrics::default();
        m.published = c.published.load(Relaxed);
        m.publish_failures = c.publish_failures.load(Relaxed);
        m.queued_bytes = self.inner.outbound.bytes() as u64;
        m.received = c.received.load(Relaxed);
        m.gaps = c.gaps.load(Relaxed);
        m.repaired = c.repaired.load(Relaxed);
        m.lost = c.lost.load(Relaxed);
        m.disconnects = c.disconnects.load(Relaxed);
        m.connected = u64::from(self.inner.up.load(Relaxed));
        m.reaped_nodes = c.reaped.load(Relaxed);
        for (slot, n) in m.publish_latency.iter_mut().zip(&c.latency) {
            *slot = n.load(Relaxed);
        }
        m.publish_latency_sum_us = c.latency_sum_us.load(Relaxed);
        m
    }
}

impl History for RedisAdapter {
    fn epoch(&self) -> Arc<str> {
        self.inner.epoch()
    }

    fn replay<'a>(
        &'a self,
        room: &'a str,
        after: u64,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<Entry>, AdapterError>> {
        Box::pin(ops::replay(&self.inner, room, after, limit))
    }

    fn last_offsets<'a>(&'a self, rooms: &'a [&'a str]) -> BoxFuture<'a, Result<Vec<u64>, AdapterError>> {
        Box::pin(ops::last_offsets(&self.inner, rooms))
    }

    fn save_session<'a>(
        &'a self,
        session: &'a SessionRecord,
        node: &'a str,
    ) -> BoxFuture<'a, Result<(), AdapterError>> {
        Box::pin(async move { ops::save(&self.inner, session, node).await.map(drop) })
    }

    fn detach_session<'a>(
        &'a self,
        session: &'a SessionRecord,
        window: Duration,
    ) -> BoxFuture<'a, Result<(), AdapterError>> {
        Box::pin(ops::detach(&self.inner, Some(session), &session.id, &self.inner.node, window))
    }

    fn take_session<'a>(
        &'a self,
        id: &'a str,
        node: &'a str,
    ) -> BoxFuture<'a, Result<SessionRecord, AdapterError>> {
        Box::pin(ops::take(&self.inner, id, node))
    }

    fn drop_session<'a>(&'a self, id: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(ops::drop_session(&self.inner, id))
    }
}

impl std::fmt::Debug for RedisAdapter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisAdapter")
            .field("node", &self.inner.node)
            .field("connected", &self.is_connected())
            .finish()
    }
}
