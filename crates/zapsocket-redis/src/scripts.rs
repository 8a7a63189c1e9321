//! The Lua scripts: each operation that must be atomic is one script, so one round
//! trip. Times come from Redis (`TIME`), never from a node's clock, so that nodes whose
//! clocks disagree still agree on leases and windows.
//!
//! A room message, as published and as kept in a room's stream (field `m`), is
//! `m<SEQ> <EPOCH> <OFFSET>...\n<publication>`: the sequence number, the epoch and one
//! offset per room of the publication, then its wire form (`Publication::to_bytes`).

use redis::{Cmd, Script};

/// Publishes one message: checks the epoch, takes the next sequence number and each
/// room's next offset, appends to each room's stream (capped, with an age), and
/// publishes once per distinct channel (a socket's room: its node's inbox).
///
/// KEYS: epoch, seq, then per room: offset, stream, session (a socket's room) or offset.
/// ARGV: epoch, max messages, max age ms, room ttl ms, publication, inbox start, inbox
/// end, then per room its channel ("" for a socket's room).
const PUBLISH: &str = r"
local epoch = redis.call('GET', KEYS[1])
if epoch ~= ARGV[1] then return redis.error_reply('EPOCH ' .. tostring(epoch)) end
local n = (#KEYS - 2) / 3
local seq = redis.call('INCR', KEYS[2])
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local offsets = {}
for i = 1, n do
  offsets[i] = redis.call('INCR', KEYS[3 * i])
  redis.call('PEXPIRE', KEYS[3 * i], ARGV[4])
end
local msg = 'm' .. seq .. ' ' .. ARGV[1] .. ' ' .. table.concat(offsets, ' ') .. '\n' .. ARGV[5]
local sent = {}
for i = 1, n do
  local stream = KEYS[3 * i + 1]
  redis.call('XADD', stream, 'MAXLEN', ARGV[2], offsets[i] .. '-0', 'm', msg, 't', now)
  redis.call('PEXPIRE', stream, ARGV[3])
  local channel = ARGV[7 + i]
  if channel == '' then
    local node = redis.call('HGET', KEYS[3 * i + 2], 'node')
    if node and node ~= '' then channel = ARGV[6] .. node .. ARGV[7] else channel = nil end
  end
  if channel and not sent[channel] then
    sent[channel] = true
    redis.call('PUBLISH', channel, msg)
  end
end
return seq
";

/// Up to ARGV[2] entries of a room's stream after offset ARGV[1], or an error GONE when
/// some of them left the window (trimmed, expired, older than ARGV[3] ms) or the offset
/// is ahead of the room.
///
/// KEYS: stream, offset.
const REPLAY: &str = r"
local last = tonumber(redis.call('GET', KEYS[2]) or '0')
local after = tonumber(ARGV[1])
if after > last then return redis.error_reply('GONE the offset is ahead of the room') end
if after == last then return {} end
local first = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)
if #first == 0 or tonumber(string.match(first[1][1], '^(%d+)')) > after + 1 then
  return redis.error_reply('GONE trimmed')
end
local entries = redis.call('XRANGE', KEYS[1], '(' .. after .. '-0', '+', 'COUNT', ARGV[2])
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
if #entries > 0 and now - tonumber(entries[1][2][4]) > tonumber(ARGV[3]) then
  return redis.error_reply('GONE too old')
end
local out = {}
for i, e in ipairs(entries) do out[i] = e[2][2] end
return out
";

/// Adds a member to a room's presence (or updates its data), attributed to this node.
/// Returns {added, count, offset, members (when count <= ARGV[4])}.
///
/// KEYS: presence, presence nodes, offset, this node's members.
/// ARGV: sid, member JSON, node, max listed, room, node keys start, end.
const JOIN: &str = r"
local added = redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
local entry = ARGV[5] .. '\0' .. ARGV[1]
local old = redis.call('HGET', KEYS[2], ARGV[1])
if old and old ~= ARGV[3] then redis.call('SREM', ARGV[6] .. old .. ARGV[7] .. 'm', entry) end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
redis.call('SADD', KEYS[4], entry)
local count = redis.call('HLEN', KEYS[1])
local members = {}
if count <= tonumber(ARGV[4]) then members = redis.call('HVALS', KEYS[1]) end
return {added, count, tonumber(redis.call('GET', KEYS[3]) or '0'), members}
";

/// Removes a member from a room's presence if node ARGV[2] holds it. Returns {removed
/// member JSON or false, count, offset}.
///
/// KEYS: presence, presence nodes, offset, that node's members. ARGV: sid, node, room.
const LEAVE: &str = r"
local removed = false
if redis.call('HGET', KEYS[2], ARGV[1]) == ARGV[2] then
  removed = redis.call('HGET', KEYS[1], ARGV[1])
  redis.call('HDEL', KEYS[1], ARGV[1])
  redis.call('HDEL', KEYS[2], ARGV[1])
end
redis.call('SREM', KEYS[4], ARGV[3] .. '\0' .. ARGV[1])
return {removed, redis.call('HLEN', KEYS[1]), tonumber(redis.call('GET', KEYS[3]) or '0')}
";

/// A room's presence: {count, offset, members (when count <= ARGV[1])}.
///
/// KEYS: presence, offset.
const MEMBERS: &str = r"
local count = redis.call('HLEN', KEYS[1])
local members = {}
if count <= tonumber(ARGV[1]) then members = redis.call('HVALS', KEYS[1]) end
return {count, tonumber(redis.call('GET', KEYS[2]) or '0'), members}
";

/// Writes an attached session for node ARGV[1], unless another live attachment holds
/// it. Returns 1, or 0 when it is attached elsewhere.
///
/// KEYS: session, this node's sessions. ARGV: node, record JSON, sid, node keys start, end.
const SAVE: &str = r"
local holder = redis.call('HGET', KEYS[1], 'node')
if holder and holder ~= '' and holder ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'node', ARGV[1], 'rec', ARGV[2], 'until', '0')
redis.call('PERSIST', KEYS[1])
redis.call('SADD', KEYS[2], ARGV[3])
return 1
";

/// Detaches a session held by node ARGV[1] (or by nobody): resumable for ARGV[3] ms.
///
/// KEYS: session, that node's sessions. ARGV: node, record JSON, window ms, sid.
const DETACH: &str = r"
local holder = redis.call('HGET', KEYS[1], 'node')
if holder and holder ~= '' and holder ~= ARGV[1] then return 0 end
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
if ARGV[2] ~= '' then redis.call('HSET', KEYS[1], 'rec', ARGV[2]) end
redis.call('HSET', KEYS[1], 'node', '', 'until', now + tonumber(ARGV[3]))
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('SREM', KEYS[2], ARGV[4])
return 1
";

/// Attaches a session to node ARGV[1]: {'ok', record}, {'attached', holder} while a live
/// node holds it, or {'gone'}. A session held by a node whose lease ran out is taken.
///
/// KEYS: session, nodes, this node's sessions. ARGV: node, sid, node keys start, end.
const TAKE: &str = r"
local h = redis.call('HMGET', KEYS[1], 'node', 'rec', 'until')
if not h[2] then return {'gone'} end
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local holder = h[1]
if holder and holder ~= '' then
  if holder == ARGV[1] then return {'attached', holder} end
  local lease = redis.call('ZSCORE', KEYS[2], holder)
  if lease and tonumber(lease) > now then return {'attached', holder} end
  redis.call('SREM', ARGV[3] .. holder .. ARGV[4] .. 's', ARGV[2])
elseif tonumber(h[3] or '0') < now then
  redis.call('DEL', KEYS[1])
  return {'gone'}
end
redis.call('HSET', KEYS[1], 'node', ARGV[1], 'until', '0')
redis.call('PERSIST', KEYS[1])
redis.call('SADD', KEYS[3], ARGV[2])
return {'ok', h[2]}
";

/// Renews this node's lease for ARGV[2] ms. Returns {1 if it held one, now ms, live
/// nodes with their lease ends (flat)}.
///
/// KEYS: nodes. ARGV: node, ttl ms.
const LEASE: &str = r"
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local held = redis.call('ZSCORE', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
local live = redis.call('ZRANGEBYSCORE', KEYS[1], now, '+inf', 'WITHSCORES')
local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. now)
return {held and 1 or 0, now, live, dead}
";

/// Claims dead node ARGV[1] (its lease ended before now): removes it and returns {its
/// presence entries, its sessions}, or false when it is alive or already claimed.
///
/// KEYS: nodes, its members, its sessions.
const REAP: &str = r"
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local lease = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not lease or tonumber(lease) >= now then return false end
redis.call('ZREM', KEYS[1], ARGV[1])
local members = redis.call('SMEMBERS', KEYS[2])
local sessions = redis.call('SMEMBERS', KEYS[3])
redis.call('DEL', KEYS[2], KEYS[3])
return {members, sessions}
";

/// The scripts, with their SHA1 sums.
pub(crate) struct Scripts {
    pub(crate) publish: Script,
    pub(crate) replay: Script,
    pub(crate) join: Script,
    pub(crate) leave: Script,
    pub(crate) members: Script,
    pub(crate) save: Script,
    pub(crate) detach: Script,
    pub(crate) take: Script,
    pub(crate) lease: Script,
    pub(crate) reap: Script,
}

impl Scripts {
    pub(crate) fn new() -> Self {
        Scripts {
            publish: Script::new(PUBLISH),
            replay: Script::new(REPLAY),
            join: Script::new(JOIN),
            leave: Script::new(LEAVE),
            members: Script::new(MEMBERS),
            save: Script::new(SAVE),
            detach: Script::new(DETACH),
            take: Script::new(TAKE),
            lease: Script::new(LEASE),
            reap: Script::new(REAP),
        }
    }

    /// The source of every script, to load them all at once.
    pub(crate) fn sources(&self) -> [&'static str; 10] {
        [PUBLISH, REPLAY, JOIN, LEAVE, MEMBERS, SAVE, DETACH, TAKE, LEASE, REAP]
    }
}

/// `EVALSHA` of `script` with `keys` and `args`, as one command (for pipelines).
pub(crate) fn evalsha<K: redis::ToRedisArgs, A: redis::ToRedisArgs>(
    script: &Script,
    keys: &[K],
    args: &[A],
) -> Cmd {
    let mut cmd = redis::cmd("EVALSHA");
    cmd.arg(script.get_hash()).arg(keys.len());
    for key in keys {
        cmd.arg(key);
    }
    for arg in args {
        cmd.arg(arg);
    }
    cmd
}
