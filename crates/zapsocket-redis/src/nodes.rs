//! Nodes: leases (who is alive), the reaper (what a dead node leaves behind), and
//! requests between nodes with their answers.
//!
//! Requests go to the nodes that hold a lease (as the last renewal saw them), through
//! the requests channel (every node) or a node's inbox (one node); answers come back to
//! the asker's inbox. A request waits for every expected node until its timeout, and
//! names those that did not answer: a dead node is never waited for past its lease,
//! and never counted as having answered.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use redis::Value;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use zapsocket_realtime::{AdapterError, Answers, NodeInfo, Publication};

use crate::ops::{array, text};
use crate::{Inner, failed};

/// Requests waiting for answers.
#[derive(Default)]
pub(crate) struct Requests {
    next: AtomicU64,
    pending: Mutex<HashMap<u64, Pending>>,
    incoming: AtomicUsize,
}

struct Pending {
    expected: HashSet<String>,
    answers: Vec<(String, String)>,
    done: Option<oneshot::Sender<()>>,
}

/// A request or an answer, as it travels (after its kind byte, `q` or `a`).
#[derive(Serialize, Deserialize)]
struct Envelope {
    id: u64,
    from: String,
    #[serde(default)]
    to: Option<String>,
    body: String,
}

impl Requests {
    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Pending>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn cached_live(inner: &Inner) -> Vec<String> {
    inner.live.lock().unwrap_or_else(|p| p.into_inner()).iter().map(|n| n.id.clone()).collect()
}

/// Sends `body` to `node`, or to every other live node, and gathers their answers.
pub(crate) async fn request(
    inner: &Arc<Inner>,
    node: Option<&str>,
    body: &str,
    timeout: Duration,
) -> Answers {
    // The live nodes as Redis sees them now (one round trip); out of reach: the last seen.
    let live = match tokio::time::timeout(timeout, self::live(inner)).await {
        Ok(Ok(nodes)) => nodes.into_iter().map(|n| n.id).collect(),
        _ => cached_live(inner),
    };
    let expected: Vec<String> = match node {
        Some(node) if live.iter().any(|n| n == node) => vec![node.to_owned()],
        Some(node) => return Answers { answers: Vec::new(), missing: vec![node.to_owned()] },
        None => live.into_iter().filter(|n| *n != inner.node).collect(),
    };
    if expected.is_empty() {
        return Answers::default();
    }
    let all_missing = |expected: Vec<String>| Answers { answers: Vec::new(), missing: expected };
    let Ok(mut conn) = inner.cmd() else { return all_missing(expected) };
    let id = inner.requests.next.fetch_add(1, Relaxed);
    let (tx, rx) = oneshot::channel();
    {
        let mut pending = inner.requests.lock();
        if pending.len() >= inner.config.max_pending_requests {
            return all_missing(expected);
        }
        let expected = expected.iter().cloned().collect();
        pending.insert(id, Pending { expected, answers: Vec::new(), done: Some(tx) });
    }
    let envelope =
        Envelope { id, from: inner.node.clone(), to: node.map(str::to_owned), body: body.to_owned() };
    let channel = node.map_or_else(|| inner.keys.requests(), |n| inner.keys.inbox(n));
    let payload = kind_and_json(b'q', &envelope);
    let sent: Result<(), _> = redis::cmd("PUBLISH").arg(channel).arg(payload).query_async(&mut conn).await;
    if let Err(error) = sent {
        tracing::debug!(%error, "request not sent");
        inner.requests.lock().remove(&id);
        return all_missing(expected);
    }
    let _ = tokio::time::timeout(timeout, rx).await;
    let pending = inner.requests.lock().remove(&id);
    let answers = pending.map(|p| p.answers).unwrap_or_default();
    let missing = expected.into_iter().filter(|n| !answers.iter().any(|(from, _)| from == n)).collect();
    Answers { answers, missing }
}

fn kind_and_json(kind: u8, envelope: &Envelope) -> Vec<u8> {
    let mut out = vec![kind];
    out.extend(serde_json::to_vec(envelope).unwrap_or_default());
    out
}

/// A request from another node (on the push connection's task: the work is spawned).
pub(crate) fn on_request(inner: &Arc<Inner>, bytes: &[u8]) {
    let Ok(request) = serde_json::from_slice::<Envelope>(bytes) else {
        return tracing::warn!("a request that does not read");
    };
    if request.from == inner.node || request.to.as_ref().is_some_and(|to| *to != inner.node) {
        return;
    }
    if inner.requests.incoming.fetch_add(1, Relaxed) >= inner.config.max_incoming_requests {
        inner.requests.incoming.fetch_sub(1, Relaxed);
        return tracing::warn!(from = %request.from, "too many requests at once: one left unanswered");
    }
    let Some(hub) = inner.hub() else { return };
    let inner = inner.clone();
    tokio::spawn(async move {
        let body = hub.answer(&request.from, &request.body).await;
        let answer =
            Envelope { id: request.id, from: inner.node.clone(), to: Some(request.from.clone()), body };
        if let Ok(mut conn) = inner.cmd() {
            let sent: Result<(), _> = redis::cmd("PUBLISH")
                .arg(inner.keys.inbox(&request.from))
                .arg(kind_and_json(b'a', &answer))
                .query_async(&mut conn)
                .await;
            if let Err(error) = sent {
                tracing::debug!(%error, "answer not sent");
            }
        }
        inner.requests.incoming.fetch_sub(1, Relaxed);
    });
}

/// An answer to one of this node's requests.
pub(crate) fn on_answer(inner: &Inner, bytes: &[u8]) {
    let Ok(answer) = serde_json::from_slice::<Envelope>(bytes) else {
        return tracing::warn!("an answer that does not read");
    };
    let mut pending = inner.requests.lock();
    let Some(request) = pending.get_mut(&answer.id) else { return };
    if !request.expected.contains(&answer.from) || request.answers.iter().any(|(n, _)| *n == answer.from) {
        return;
    }
    request.answers.push((answer.from, answer.body));
    if request.answers.len() == request.expected.len()
        && let Some(done) = request.done.take()
    {
        let _ = done.send(());
    }
}

/// The live nodes, read from Redis now.
pub(crate) async fn live(inner: &Inner) -> Result<Vec<NodeInfo>, AdapterError> {
    let mut conn = inner.cmd()?;
    let (time, nodes): ((u64, u64), Vec<(String, f64)>) = redis::pipe()
        .cmd("TIME")
        .cmd("ZRANGE")
        .arg(inner.keys.nodes())
        .arg(0)
        .arg(-1)
        .arg("WITHSCORES")
        .query_async(&mut conn)
        .await
        .map_err(failed)?;
    let now = time.0 * 1000 + time.1 / 1000;
    Ok(nodes
        .into_iter()
        .filter(|(_, until)| *until as u64 >= now)
        .map(|(id, until)| NodeInfo { id, lease_until_ms: until as u64 })
        .collect())
}

/// Renews this node's lease and reaps the dead. Returns whether this node still held a
/// lease (false: it was taken for dead, and must write its presence again).
pub(crate) async fn renew(inner: &Arc<Inner>) -> Result<bool, AdapterError> {
    let mut conn = inner.cmd()?;
    let ttl = inner.config.lease_ttl.as_millis().max(1) as u64;
    let reply: Value = inner
        .scripts
        .lease
        .key(inner.keys.nodes())
        .arg(&inner.node)
        .arg(ttl)
        .invoke_async(&mut conn)
        .await
        .map_err(failed)?;
    let r = array(&reply);
    let held = matches!(r.first(), Some(Value::Int(1)));
    let live = array(r.get(2).unwrap_or(&Value::Nil));
    let nodes = live
        .chunks(2)
        .filter_map(|pair| {
            let id = text(pair.first()?)?;
            let until = text(pair.get(1)?)?.parse::<f64>().ok()? as u64;
            Some(NodeInfo { id, lease_until_ms: until })
        })
        .collect();
    *inner.live.lock().unwrap_or_else(|p| p.into_inner()) = nodes;
    let settled = inner
        .up_since
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .is_some_and(|at| at.elapsed() >= inner.config.lease_ttl);
    if settled {
        for dead in array(r.get(3).unwrap_or(&Value::Nil)).iter().filter_map(text) {
            if dead != inner.node {
                reap(inner, &dead).await;
            }
        }
    }
    Ok(held)
}

/// Claims a dead node (one node wins the claim) and cleans up after it: its members
/// leave presence (`$left`, within the presence limit), its sessions become resumable
/// elsewhere for the recovery window.
async fn reap(inner: &Arc<Inner>, node: &str) {
    let Ok(mut conn) = inner.cmd() else { return };
    let k = &inner.keys;
    let claimed: Result<Value, _> = inner
        .scripts
        .reap
        .key(k.nodes())
        .key(k.node_members(node))
        .key(k.node_sessions(node))
        .arg(node)
        .invoke_async(&mut conn)
        .await;
    let claimed = match claimed {
        Ok(value @ Value::Array(_)) => value,
        Ok(_) => return,
        Err(error) => return tracing::debug!(%node, %error, "reap failed"),
    };
    let parts = array(&claimed);
    let members: Vec<String> =
        parts.first().map(|v| array(v).iter().filter_map(text).collect()).unwrap_or_default();
    let sessions: Vec<String> =
        parts.get(1).map(|v| array(v).iter().filter_map(text).collect()).unwrap_or_default();
    tracing::info!(%node, members = members.len(), sessions = sessions.len(), "a dead node reaped");
    inner.counters.reaped.fetch_add(1, Relaxed);
    let started = Instant::now();
    for entry in &members {
        let Some((room, sid)) = entry.split_once('\0') else { continue };
        match crate::ops::leave(inner, room, sid, node).await {
            Ok((Some(member), presence)) if presence.count < inner.max_presence() => {
                let data = format!(
                    "{{\"room\":{},\"member\":{member}}}",
                    serde_json::to_string(room).unwrap_or_default()
                );
                let left = Publication::new(vec![room.to_owned()], vec![format!("$s:{sid}")], "$left", &data);
                if let Err(error) = crate::outbound::publish(inner, left) {
                    tracing::debug!(%room, %error, "$left not published");
                }
            }
            Ok(_) => {}
            Err(error) => tracing::debug!(%room, %error, "presence not cleaned"),
        }
    }
    let window = inner.hub.get().map_or(Duration::from_secs(120), |l| l.recovery_window);
    for sid in &sessions {
        if let Err(error) = crate::ops::detach(inner, None, sid, node, window).await {
            tracing::debug!(session = %sid, %error, "session not detached");
        }
    }
    tracing::debug!(%node, elapsed = ?started.elapsed(), "reaped");
}
