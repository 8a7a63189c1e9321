//! The link to Redis, kept up by one task: connect (two connections: commands, and
//! pushes), load the scripts, agree on the epoch, take a lease, subscribe again and
//! repair, write this node's sessions and presence again; then renew the lease until
//! something breaks; then start over with backoff. While the link is down, what needs
//! Redis fails at once with `unavailable`.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use redis::AsyncConnectionConfig;
use redis::aio::MultiplexedConnection;
use std::collections::HashMap;

use zapsocket_realtime::{AdapterError, Member, PresenceEvent, Publication, SessionRecord};

use crate::{Inner, failed};

/// The longest pause between two connection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

pub(crate) async fn supervise(weak: Weak<Inner>) {
    let mut attempt = 0u32;
    // Since when the link is down, while publications wait for it.
    let mut down_since: Option<Instant> = None;
    loop {
        let Some(inner) = weak.upgrade() else { return };
        let generation = inner.generation.fetch_add(1, Relaxed) + 1;
        match connect(&inner, generation).await {
            Ok(()) => {
                if attempt > 0 {
                    tracing::info!(node = %inner.node, "redis link back");
                }
                attempt = 0;
                drop(inner);
                let reason = keep(&weak).await;
                let Some(inner) = weak.upgrade() else { return };
                tracing::warn!(node = %inner.node, %reason, "redis link lost");
                down(&inner, &reason);
                down_since = Some(Instant::now());
            }
            Err(error) => {
                tracing::debug!(node = %inner.node, %error, attempt, "redis link not made");
                down(&inner, &error.to_string());
                if down_since.get_or_insert_with(Instant::now).elapsed() >= inner.config.timeout {
                    drop_queued(&inner);
                }
            }
        }
        attempt = attempt.saturating_add(1);
        let pause = Duration::from_millis(50 << attempt.min(5)).min(MAX_BACKOFF);
        tokio::time::sleep(pause.mul_f64(0.5 + rand::random::<f64>() / 2.0)).await;
    }
}

/// Marks the link down. What waits to be published stays queued (new emits fail at
/// once): a link made again within `timeout` sends it, in order.
fn down(inner: &Inner, reason: &str) {
    inner.up.store(false, Relaxed);
    *inner.cmd.write().unwrap_or_else(|p| p.into_inner()) = None;
    *inner.sub.write().unwrap_or_else(|p| p.into_inner()) = None;
    *inner.up_since.lock().unwrap_or_else(|p| p.into_inner()) = None;
    *inner.last_error.lock().unwrap_or_else(|p| p.into_inner()) = reason.to_owned();
}

/// The link stayed down past `timeout`: what waits to be published is dropped (counted).
fn drop_queued(inner: &Inner) {
    let dropped = inner.outbound.clear() as u64;
    if dropped > 0 {
        inner.counters.publish_failures.fetch_add(dropped, Relaxed);
        tracing::warn!(dropped, "publications dropped: redis out of reach");
    }
}

fn config(inner: &Inner) -> AsyncConnectionConfig {
    AsyncConnectionConfig::new()
        .set_connection_timeout(Some(inner.config.timeout))
        .set_response_timeout(Some(inner.config.timeout))
}

/// Makes the link and brings this node back in step with Redis.
async fn connect(inner: &Arc<Inner>, generation: u64) -> Result<(), AdapterError> {
    let mut cmd =
        inner.commands.get_multiplexed_async_connection_with_config(&config(inner)).await.map_err(failed)?;
    let weak = Arc::downgrade(inner);
    let pushes = config(inner).set_push_sender(move |info| {
        crate::inbound::on_push(&weak, generation, info);
        Ok::<(), std::convert::Infallible>(())
    });
    let mut sub = inner.pushes.get_multiplexed_async_connection_with_config(&pushes).await.map_err(failed)?;
    let mut load = redis::pipe();
    for source in inner.scripts.sources() {
        load.cmd("SCRIPT").arg("LOAD").arg(source).ignore();
    }
    load.query_async::<()>(&mut cmd).await.map_err(failed)?;
    let new_epoch = agree_on_epoch(inner, &mut cmd).await?;
    *inner.cmd.write().unwrap_or_else(|p| p.into_inner()) = Some(cmd);
    *inner.sub.write().unwrap_or_else(|p| p.into_inner()) = Some(sub.clone());
    inner.up.store(true, Relaxed);
    crate::nodes::renew(inner).await?;
    crate::inbound::resubscribe(inner, &mut sub, new_epoch).await?;
    tokio::spawn(crate::outbound::run(Arc::downgrade(inner), generation));
    reassert(inner).await;
    *inner.up_since.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
    Ok(())
}

/// Reads the epoch, creating it when Redis has none (new, or restarted empty). Returns
/// whether it differs from the one this node had.
async fn agree_on_epoch(inner: &Inner, cmd: &mut MultiplexedConnection) -> Result<bool, AdapterError> {
    let fresh = format!("e-{:016x}", rand::random::<u64>());
    let (epoch,): (String,) = redis::pipe()
        .cmd("SET")
        .arg(inner.keys.epoch())
        .arg(fresh)
        .arg("NX")
        .ignore()
        .cmd("GET")
        .arg(inner.keys.epoch())
        .query_async(cmd)
        .await
        .map_err(failed)?;
    let mut current = inner.epoch.write().unwrap_or_else(|p| p.into_inner());
    let changed = !current.is_empty() && **current != *epoch;
    if changed {
        tracing::warn!(old = %current, new = %epoch, "redis history started over: a new epoch");
    }
    *current = epoch.into();
    Ok(changed)
}

/// Writes this node's sessions and presence again (Redis may have lost them, or taken
/// this node for dead); members that were missing from a room are announced (`$joined`).
async fn reassert(inner: &Arc<Inner>) {
    let Some(hub) = inner.hub() else { return };
    let sessions = hub.sessions();
    if let Err(error) = forget_ended(inner, &sessions).await {
        return tracing::debug!(%error, "ended sessions not cleaned");
    }
    let max_presence = inner.max_presence();
    for session in sessions {
        match crate::ops::save(inner, &session, &inner.node).await {
            Ok(true) => {}
            Ok(false) => tracing::warn!(session = %session.id, "session attached on another node now"),
            Err(error) => return tracing::debug!(%error, "sessions not written again"),
        }
        let member = Member { id: session.id.clone(), data: session.data.clone() };
        for room in &session.rooms {
            match crate::ops::join(inner, room, &member, 0).await {
                Ok(presence) if presence.changed && presence.count <= max_presence => {
                    let event = PresenceEvent { room: room.clone(), member: member.clone() };
                    let data = serde_json::to_string(&event).unwrap_or_default();
                    let joined = Publication::new(
                        vec![room.clone()],
                        vec![format!("$s:{}", session.id)],
                        "$joined",
                        &data,
                    );
                    let _ = crate::outbound::publish(inner, joined);
                }
                Ok(_) => {}
                Err(error) => return tracing::debug!(%error, "presence not written again"),
            }
        }
    }
}

/// What this node wrote for sockets that ended while Redis was out of reach (their leave
/// and detach could not be written): their presence entries go (with `$left`), their
/// sessions are detached, resumable for the recovery window.
async fn forget_ended(inner: &Arc<Inner>, sessions: &[SessionRecord]) -> Result<(), AdapterError> {
    let mut conn = inner.cmd()?;
    let (listed, entries): (Vec<String>, Vec<String>) = redis::pipe()
        .smembers(inner.keys.node_sessions(&inner.node))
        .smembers(inner.keys.node_members(&inner.node))
        .query_async(&mut conn)
        .await
        .map_err(failed)?;
    let live: HashMap<&str, &SessionRecord> = sessions.iter().map(|s| (s.id.as_str(), s)).collect();
    let window = inner.hub.get().map_or(Duration::from_secs(120), |l| l.recovery_window);
    for sid in listed.iter().filter(|sid| !live.contains_key(sid.as_str())) {
        crate::ops::detach(inner, None, sid, &inner.node, window).await?;
    }
    for entry in &entries {
        let Some((room, sid)) = entry.split_once('\0') else { continue };
        if live.get(sid).is_some_and(|s| s.rooms.iter().any(|r| r == room)) {
            continue;
        }
        let (left, presence) = crate::ops::leave(inner, room, sid, &inner.node).await?;
        if let Some(member) = left.filter(|_| presence.count < inner.max_presence()) {
            let data = format!(
                "{{\"room\":{},\"member\":{member}}}",
                serde_json::to_string(room).unwrap_or_default()
            );
            let _ = crate::outbound::publish(
                inner,
                Publication::new(vec![room.to_owned()], vec![format!("$s:{sid}")], "$left", &data),
            );
        }
    }
    Ok(())
}

/// Renews the lease while the link holds; returns why it broke.
async fn keep(weak: &Weak<Inner>) -> String {
    loop {
        let Some(inner) = weak.upgrade() else { return "the adapter was dropped".into() };
        let every = inner.config.lease_ttl / 5;
        let broken = inner.broken.notified();
        tokio::pin!(broken);
        let woke = tokio::select! {
            () = &mut broken => Some("a connection failed, or redis started over".to_owned()),
            () = tokio::time::sleep(every) => None,
        };
        if let Some(reason) = woke {
            return reason;
        }
        match crate::nodes::renew(&inner).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(node = %inner.node, "this node was taken for dead: writing its presence again");
                reassert(&inner).await;
            }
            Err(error) => return error.to_string(),
        }
    }
}
