//! Presence and history in Redis: each operation one script (one round trip).

use std::sync::Arc;
use std::time::Duration;

use redis::Value;
use zapsocket_realtime::{AdapterError, Entry, Member, Presence, SessionRecord};

use crate::inbound::RoomMessage;
use crate::{Inner, failed};

/// Reads a script's integer.
fn int(value: &Value) -> u64 {
    match value {
        Value::Int(n) => u64::try_from(*n).unwrap_or(0),
        Value::BulkString(b) => std::str::from_utf8(b).ok().and_then(|s| s.parse().ok()).unwrap_or(0),
        _ => 0,
    }
}

/// Reads a script's string (or `None` for nil / false).
pub(crate) fn text(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

/// Reads a script's array.
pub(crate) fn array(value: &Value) -> &[Value] {
    match value {
        Value::Array(items) => items,
        _ => &[],
    }
}

/// Members from their JSON (entries that do not read are skipped).
fn read_members(values: &[Value]) -> Vec<Member> {
    values.iter().filter_map(|v| serde_json::from_str(&text(v)?).ok()).collect()
}

pub(crate) async fn join(
    inner: &Inner,
    room: &str,
    member: &Member,
    max_listed: usize,
) -> Result<Presence, AdapterError> {
    let mut conn = inner.cmd()?;
    let k = &inner.keys;
    let (start, end) = k.node_parts();
    let json = serde_json::to_string(member).unwrap_or_default();
    let reply: Value = inner
        .scripts
        .join
        .key(k.presence(room))
        .key(k.presence_nodes(room))
        .key(k.offset(room))
        .key(k.node_members(&inner.node))
        .arg(&member.id)
        .arg(json)
        .arg(&inner.node)
        .arg(max_listed)
        .arg(room)
        .arg(start)
        .arg(end)
        .invoke_async(&mut conn)
        .await
        .map_err(failed)?;
    let r = array(&reply);
    let get = |i: usize| r.get(i).map_or(0, int);
    Ok(Presence {
        changed: get(0) > 0,
        count: get(1) as usize,
        offset: get(2),
        members: r.get(3).map(|v| read_members(array(v))).unwrap_or_default(),
    })
}

/// Removes `sid` from `room` if `node` holds it there. Returns the member's JSON when it
/// was removed, and the presence after.
pub(crate) async fn leave(
    inner: &Inner,
    room: &str,
    sid: &str,
    node: &str,
) -> Result<(Option<String>, Presence), AdapterError> {
    let mut conn = inner.cmd()?;
    let k = &inner.keys;
    let reply: Value = inner
        .scripts
        .leave
        .key(k.presence(room))
        .key(k.presence_nodes(room))
        .key(k.offset(room))
        .key(k.node_members(node))
        .arg(sid)
        .arg(node)
        .arg(room)
        .invoke_async(&mut conn)
        .await
        .map_err(failed)?;
    let r = array(&reply);
    let removed = r.first().and_then(text);
    let presence = Presence {
        count: r.get(1).map_or(0, int) as usize,
        offset: r.get(2).map_or(0, int),
        ..Presence::default()
    };
    Ok((removed, presence))
}

pub(crate) async fn members(inner: &Inner, room: &str, max_listed: usize) -> Result<Presence, AdapterError> {
    let mut conn = inner.cmd()?;
    let k = &inner.keys;
    let reply: Value = inner
        .scripts
        .members
        .key(k.presence(room))
        .key(k.offset(room))
        .arg(max_listed)
        .invoke_async(&mut conn)
        .await
        .map_err(failed)?;
    let r = array(&reply);
    Ok(Presence {
        count: r.first().map_or(0, int) as usize,
        offset: r.get(1).map_or(0, int),
        members: r.get(2).map(|v| read_members(array(v))).unwrap_or_default(),
        changed: false,
    })
}

/// Up to `limit` entries of `room` after `after` (room messages as published).
pub(crate) async fn read_room(
    inner: &Inner,
    room: &str,
    after: u64,
    limit: usize,
) -> Result<Vec<RoomMessage>, AdapterError> {
    let mut conn = inner.cmd()?;
    let max_age = inner.hub.get().map_or(Duration::from_secs(120), |l| l.history_age);
    let reply: Result<Value, _> = inner
        .scripts
        .replay
        .key(inner.keys.stream(room))
        .key(inner.keys.offset(room))
        .arg(after)
        .arg(limit.max(1))
        .arg(max_age.as_millis() as u64)
        .invoke_async(&mut conn)
        .await;
    let reply = match reply {
        Ok(reply) => reply,
        Err(e) if e.code() == Some("GONE") => {
            return Err(AdapterError::Gone(format!(
                "room {room:?} after offset {after}: {}",
                e.detail().unwrap_or("")
            )));
        }
        Err(e) => return Err(failed(e)),
    };
    let mut out = Vec::new();
    for value in array(&reply) {
        if let Value::BulkString(bytes) = value {
            match RoomMessage::parse(bytes) {
                Ok(message) => out.push(message),
                Err(error) => tracing::warn!(%room, %error, "a history entry that does not read"),
            }
        }
    }
    Ok(out)
}

pub(crate) async fn replay(
    inner: &Inner,
    room: &str,
    after: u64,
    limit: usize,
) -> Result<Vec<Entry>, AdapterError> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    let messages = read_room(inner, room, after, limit).await?;
    let epoch = inner.epoch();
    Ok(messages
        .into_iter()
        .filter(|m| *m.epoch == *epoch)
        .map(|m| Entry { seq: m.seq, offsets: m.offsets, publication: Arc::new(m.publication) })
        .collect())
}

pub(crate) async fn last_offsets(inner: &Inner, rooms: &[&str]) -> Result<Vec<u64>, AdapterError> {
    let mut conn = inner.cmd()?;
    let keys: Vec<String> = rooms.iter().map(|r| inner.keys.offset(r)).collect();
    let values: Vec<Option<u64>> =
        redis::cmd("MGET").arg(&keys).query_async(&mut conn).await.map_err(failed)?;
    Ok(values.into_iter().map(Option::unwrap_or_default).collect())
}

/// Writes an attached session for `node`; false when another node holds it.
pub(crate) async fn save(inner: &Inner, session: &SessionRecord, node: &str) -> Result<bool, AdapterError> {
    let mut conn = inner.cmd()?;
    let k = &inner.keys;
    let (start, end) = k.node_parts();
    let saved: u64 = inner
        .scripts
        .save
        .key(k.session(&session.id))
        .key(k.node_sessions(node))
        .arg(node)
        .arg(serde_json::to_string(session).unwrap_or_default())
        .arg(&session.id)
        .arg(start)
        .arg(end)
        .invoke_async(&mut conn)
        .await
        .map_err(failed)?;
    Ok(saved == 1)
}

/// Detaches session `sid` held by `node` (its record replaced when given).
pub(crate) async fn detach(
    inner: &Inner,
    session: Option<&SessionRecord>,
    sid: &str,
    node: &str,
    window: Duration,
) -> Result<(), AdapterError> {
    let mut conn = inner.cmd()?;
    let record = session.map(|s| serde_json::to_string(s).unwrap_or_default()).unwrap_or_default();
    let _: u64 = inner
        .scripts
        .detach
        .key(inner.keys.session(sid))
        .key(inner.keys.node_sessions(node))
        .arg(node)
        .arg(record)
        .arg(window.as_millis().max(1) as u64)
        .arg(sid)
        .invoke_async(&mut conn)
        .await
        .map_err(failed)?;
    Ok(())
}

pub(crate) async fn take(inner: &Inner, sid: &str, node: &str) -> Result<SessionRecord, AdapterError> {
    let mut conn = inner.cmd()?;
    let k = &inner.keys;
    let (start, end) = k.node_parts();
    let reply: Value = inner
        .scripts
        .take
        .key(k.session(sid))
        .key(k.nodes())
        .key(k.node_sessions(node))
        .arg(node)
        .arg(sid)
        .arg(start)
        .arg(end)
        .invoke_async(&mut conn)
        .await
        .map_err(failed)?;
    let r = array(&reply);
    match r.first().and_then(text).as_deref() {
        Some("ok") => {
            let json = r.get(1).and_then(text).unwrap_or_default();
            serde_json::from_str(&json)
                .map_err(|e| AdapterError::Gone(format!("a session record that does not read: {e}")))
        }
        Some("attached") => Err(AdapterError::Attached { node: r.get(1).and_then(text).unwrap_or_default() }),
        _ => Err(AdapterError::Gone("unknown or expired session".into())),
    }
}

pub(crate) async fn drop_session(inner: &Inner, sid: &str) {
    let Ok(mut conn) = inner.cmd() else { return };
    let mut pipe = redis::pipe();
    pipe.del(inner.keys.session(sid)).ignore().srem(inner.keys.node_sessions(&inner.node), sid).ignore();
    if let Err(error) = pipe.query_async::<()>(&mut conn).await {
        tracing::debug!(session = sid, %error, "session not dropped");
    }
}
