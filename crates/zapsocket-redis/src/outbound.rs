//! Publications on their way to Redis: one bounded queue, emptied in order by one task,
//! many publications per round trip (a pipeline of the publish script). One queue and
//! one task keep every sender's order; the bound keeps a slow Redis from growing memory.

use std::collections::VecDeque;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Instant;

use redis::Value;
use zapsocket_realtime::{AdapterError, Publication};

use crate::scripts::evalsha;
use crate::{Inner, unreachable};

/// Bytes counted per queued publication besides its own.
const OVERHEAD: usize = 64;
/// The most publications sent in one round trip.
const BATCH: usize = 256;
/// The most bytes sent in one round trip (at least one publication goes).
const BATCH_BYTES: usize = 1 << 20;

/// The publications waiting for Redis.
#[derive(Default)]
pub(crate) struct Queue {
    state: Mutex<State>,
    /// Shared with the sending task, which waits on it without holding the adapter.
    pub(crate) ready: Arc<tokio::sync::Notify>,
}

#[derive(Default)]
struct State {
    items: VecDeque<Outgoing>,
    bytes: usize,
}

/// A publication waiting for Redis.
struct Outgoing {
    publication: Publication,
    /// Volatile: published to every node as it is, not recorded (see
    /// `Broker::publish_volatile`).
    volatile: bool,
    /// When it was queued, for the publish latency.
    queued_at: Instant,
}

impl Outgoing {
    fn cost(&self) -> usize {
        self.publication.len() + OVERHEAD
    }
}

impl Queue {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Bytes waiting now.
    pub(crate) fn bytes(&self) -> usize {
        self.lock().bytes
    }

    /// Drops what waits (the link stayed down past `timeout`); returns how many.
    pub(crate) fn clear(&self) -> usize {
        let mut state = self.lock();
        state.bytes = 0;
        std::mem::take(&mut state.items).len()
    }

    /// Puts a batch that was never sent back in front of what waits, in its order.
    fn put_back(&self, batch: Vec<Outgoing>) {
        let mut state = self.lock();
        for item in batch.into_iter().rev() {
            state.bytes += item.cost();
            state.items.push_front(item);
        }
    }

    fn take_batch(&self) -> Vec<Outgoing> {
        let mut state = self.lock();
        let mut batch = Vec::new();
        let mut bytes = 0;
        while let Some(front) = state.items.front() {
            let cost = front.cost();
            if !batch.is_empty() && (batch.len() >= BATCH || bytes + cost > BATCH_BYTES) {
                break;
            }
            bytes += cost;
            state.bytes -= cost.min(state.bytes);
            batch.extend(state.items.pop_front());
        }
        batch
    }
}

/// Queues a publication; fails at once while Redis is out of reach or the queue is full.
pub(crate) fn publish(inner: &Inner, publication: Publication) -> Result<(), AdapterError> {
    queue(inner, Outgoing { publication, volatile: false, queued_at: Instant::now() })
}

/// Queues a volatile publication, for every node (on the requests channel, which they
/// all follow): in order with this node's other publications, not recorded.
pub(crate) fn publish_volatile(inner: &Inner, publication: Publication) -> Result<(), AdapterError> {
    queue(inner, Outgoing { publication, volatile: true, queued_at: Instant::now() })
}

fn queue(inner: &Inner, item: Outgoing) -> Result<(), AdapterError> {
    if !inner.up.load(Relaxed) {
        inner.counters.publish_failures.fetch_add(1, Relaxed);
        return Err(unreachable());
    }
    let cost = item.cost();
    {
        let mut state = inner.outbound.lock();
        if state.bytes + cost > inner.config.max_publish_queue {
            drop(state);
            inner.counters.publish_failures.fetch_add(1, Relaxed);
            return Err(AdapterError::Unavailable(format!(
                "{} bytes already wait for redis (max_publish_queue)",
                inner.config.max_publish_queue
            )));
        }
        state.bytes += cost;
        state.items.push_back(item);
    }
    inner.outbound.ready.notify_one();
    Ok(())
}

/// The task that sends what is queued, while the link it was started for lasts. What
/// it has not sent when the link goes down stays queued for the next link's task.
pub(crate) async fn run(weak: Weak<Inner>, generation: u64) {
    loop {
        let Some(inner) = weak.upgrade() else { return };
        if inner.generation.load(Relaxed) != generation || !inner.up.load(Relaxed) {
            // A newer link has its own task: pass on a wake-up this one may have taken.
            inner.outbound.ready.notify_one();
            return;
        }
        let batch = inner.outbound.take_batch();
        if batch.is_empty() {
            // Wait for more without keeping the adapter alive (dropping it wakes us).
            let ready = inner.outbound.ready.clone();
            let notified = ready.notified();
            drop(inner);
            notified.await;
            continue;
        }
        send(&inner, batch, generation).await;
    }
}

/// One round trip for a batch: each publication one call of the publish script.
async fn send(inner: &Arc<Inner>, batch: Vec<Outgoing>, generation: u64) {
    let count = batch.len() as u64;
    let Ok(mut conn) = inner.cmd() else {
        // The link went down before anything was sent: the next link sends it.
        inner.outbound.put_back(batch);
        return;
    };
    let mut pipe = redis::pipe();
    pipe.ignore_errors();
    for item in &batch {
        match item.volatile {
            false => pipe.add_command(command(inner, &item.publication)),
            true => pipe.add_command(volatile_command(inner, &item.publication)),
        };
    }
    match pipe.query_async::<Vec<redis::RedisResult<Value>>>(&mut conn).await {
        Ok(results) => {
            let failures = results.iter().filter(|r| r.is_err()).count() as u64;
            inner.counters.published.fetch_add(count - failures, Relaxed);
            let now = Instant::now();
            for (item, result) in batch.iter().zip(&results) {
                if result.is_ok() {
                    let us = now.duration_since(item.queued_at).as_micros();
                    inner.counters.published_after(u64::try_from(us).unwrap_or(u64::MAX));
                }
            }
            if let Some(Err(first)) = results.iter().find(|r| r.is_err()) {
                inner.counters.publish_failures.fetch_add(failures, Relaxed);
                tracing::warn!(failures, error = %first, "publications refused by redis");
                // An epoch that changed or scripts that are gone: Redis started over.
                inner.break_link(generation);
            }
        }
        Err(error) => {
            inner.counters.publish_failures.fetch_add(count, Relaxed);
            tracing::warn!(%error, count, "publications not sent (their outcome is unknown)");
            inner.break_link(generation);
        }
    }
}

/// `PUBLISH` of a volatile publication: `v` and its wire form, to every node.
fn volatile_command(inner: &Inner, publication: &Publication) -> redis::Cmd {
    let mut payload = vec![b'v'];
    payload.extend(publication.to_bytes());
    let mut cmd = redis::cmd("PUBLISH");
    cmd.arg(inner.keys.requests()).arg(payload);
    cmd
}

fn command(inner: &Inner, publication: &Publication) -> redis::Cmd {
    let k = &inner.keys;
    let (start, end) = k.node_parts();
    let link = inner.hub.get();
    let max_messages = link.map_or(1_000, |l| l.history_messages).max(1);
    let max_age = link.map_or(120_000, |l| l.history_age.as_millis() as u64).max(1);
    let mut keys = vec![k.epoch(), k.seq()];
    let mut channels = Vec::new();
    for room in publication.rooms() {
        keys.push(k.offset(room));
        keys.push(k.stream(room));
        match room.strip_prefix("$s:") {
            Some(sid) => keys.push(k.session(sid)),
            None => keys.push(k.offset(room)),
        }
        channels.push(k.channel(room).unwrap_or_default());
    }
    let mut args: Vec<Vec<u8>> = vec![
        inner.epoch().as_bytes().to_vec(),
        max_messages.to_string().into_bytes(),
        max_age.to_string().into_bytes(),
        (inner.config.room_ttl.as_millis() as u64).max(1).to_string().into_bytes(),
        publication.to_bytes(),
        start.into_bytes(),
        format!("{end}i").into_bytes(),
    ];
    args.extend(channels.into_iter().map(String::into_bytes));
    evalsha(&inner.scripts.publish, &keys, &args)
}
