// zapsocket/protocol.js: the pure parts of the zapsocket.js client (docs/PROTOCOL.md,
// version 1): constants, envelopes, ack bookkeeping, recovery offsets and the
// reconnection policy. No I/O; re-exported by ../zapsocket.js.
//
// Reading order: envelopes → requests (acks) → offsets (recovery) → reconnection policy.

/** The protocol version this client speaks. */
export const PROTOCOL_VERSION = 1;
/** The WebSocket subprotocol offered. */
export const SUBPROTOCOL = 'zap.v1';

/** Limits assumed until `$hello` tells the server's (PROTOCOL.md "Limits"). */
export const DEFAULT_LIMITS = Object.freeze({ max_message: 1 << 20, max_rooms: 100, ack_timeout_ms: 10000 });

/** Names of the events the client itself emits; an application event cannot use them. */
export const LOCAL_EVENTS = Object.freeze([
  'connect', 'connect_error', 'disconnect', 'error', 'joined', 'left',
  'reconnecting', 'reconnect', 'reconnect_failed', 'resync',
]);
/** @internal The local event names, as a set. */
export const LOCAL = new Set(LOCAL_EVENTS);
const MAX_NAME_BYTES = 128;

/** An error with a protocol error code (`bad_payload`, `timeout`, `disconnected`, ...). */
export class ZapError extends Error {
  constructor(code, message) {
    super(message || code);
    this.name = 'ZapError';
    this.code = code;
  }
}

// ---- envelopes (pure) -----------------------------------------------------------------

const encoder = new TextEncoder();
/** Is the UTF-8 encoding of `text` over `limit` bytes? (Encodes only when it may be.) */
export function utf8Over(text, limit) {
  if (text.length > limit) return true;
  return text.length * 3 > limit && encoder.encode(text).length > limit;
}
const isId = (v) => Number.isSafeInteger(v) && v >= 1;
/** @internal */
export const isObject = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);

/** Why `name` cannot be an application event, procedure or room name; null when it can. */
export function nameProblem(name, what = 'event') {
  if (typeof name !== 'string' || name.length === 0) return new ZapError('bad_envelope', `${what} name must be a non-empty string`);
  if (utf8Over(name, MAX_NAME_BYTES)) {
    return new ZapError('bad_envelope', `${what} name is over ${MAX_NAME_BYTES} bytes`);
  }
  if (name[0] === '$') return new ZapError('reserved', `${what} names starting with '$' are reserved`);
  if (what === 'event' && LOCAL.has(name)) return new ZapError('reserved', `'${name}' is a client event name`);
  return null;
}

/**
 * Parses one text frame from a server into an envelope:
 * `{kind: 'event', event, data, ack?, epoch?, rooms?}`, `{kind: 'reply', id, data}` or
 * `{kind: 'error', id, error: ZapError}`. Throws a ZapError `bad_json` or `bad_envelope`.
 */
export function parseEnvelope(text) {
  let v;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new ZapError('bad_json', `not JSON: ${e.message}`);
  }
  if (!isObject(v)) throw new ZapError('bad_json', 'an envelope must be a JSON object');
  const kinds = ['event', 'reply', 'call'].filter((k) => v[k] !== undefined);
  if (kinds.length !== 1) throw new ZapError('bad_envelope', kinds.length ? `both ${kinds.join(' and ')}` : 'no event or reply');
  const data = v.data === undefined ? null : v.data;
  if (v.reply !== undefined) {
    if (!isId(v.reply)) throw new ZapError('bad_envelope', 'reply must be an integer id >= 1');
    if (v.error === undefined) return { kind: 'reply', id: v.reply, data };
    if (!isObject(v.error) || typeof v.error.code !== 'string') throw new ZapError('bad_envelope', 'error must be {code, message}');
    const message = typeof v.error.message === 'string' ? v.error.message : v.error.code;
    return { kind: 'error', id: v.reply, error: new ZapError(v.error.code, message) };
  }
  if (v.call !== undefined) throw new ZapError('bad_envelope', 'a server does not send calls');
  if (typeof v.event !== 'string' || v.event.length === 0) throw new ZapError('bad_envelope', 'event must be a non-empty string');
  if (v.ack !== undefined && !isId(v.ack)) throw new ZapError('bad_envelope', 'ack must be an integer id >= 1');
  const env = { kind: 'event', event: v.event, data };
  if (v.ack !== undefined) env.ack = v.ack;
  if (isObject(v.rooms) && typeof v.epoch === 'string') {
    env.epoch = v.epoch;
    env.rooms = {};
    for (const [room, offset] of Object.entries(v.rooms)) if (Number.isSafeInteger(offset)) env.rooms[room] = offset;
  }
  return env;
}

// ---- requests: ack bookkeeping (pure but for timers) ----------------------------------

/**
 * This side's pending requests (events with `ack`, calls, `$join`...): ids, promises and
 * timeouts. Ids count up from 1 and are never reused by one instance; a late reply finds
 * nothing and is ignored.
 */
export class Requests {
  constructor({ max = 1024 } = {}) {
    this.max = max;
    this.nextId = 1;
    this.pending = new Map();
  }

  get size() {
    return this.pending.size;
  }

  /** A new request: `{id, promise}`. Its timer starts now (0 or Infinity: none). */
  open(timeoutMs, label = 'request') {
    if (this.pending.size >= this.max) {
      return { id: 0, promise: Promise.reject(new ZapError('limit', `${this.max} requests are already pending`)) };
    }
    const id = this.nextId++;
    const entry = { sent: false, timer: null, label };
    const promise = new Promise((resolve, reject) => Object.assign(entry, { resolve, reject }));
    if (timeoutMs > 0 && Number.isFinite(timeoutMs)) {
      entry.timer = setTimeout(() => this.fail(id, new ZapError('timeout', `no reply to ${label} within ${timeoutMs} ms`)), timeoutMs);
    }
    this.pending.set(id, entry);
    return { id, promise };
  }

  has(id) {
    return this.pending.has(id);
  }

  /** Marks a request as written to a connection (so that losing it fails the request). */
  markSent(id) {
    const entry = this.pending.get(id);
    if (entry) entry.sent = true;
  }

  /** Settles a request with a reply; false when it is not pending (late or unknown). */
  resolve(id, data) {
    return this.#settle(id, (e) => e.resolve(data));
  }

  fail(id, error) {
    return this.#settle(id, (e) => e.reject(error));
  }

  /** Fails every request that was sent (the connection that carried it is gone). */
  failSent(error) {
    for (const [id, e] of this.pending) if (e.sent) this.fail(id, error);
  }

  failAll(error) {
    for (const id of [...this.pending.keys()]) this.fail(id, error);
  }

  #settle(id, how) {
    const entry = this.pending.get(id);
    if (!entry) return false;
    this.pending.delete(id);
    clearTimeout(entry.timer);
    how(entry);
    return true;
  }
}

// ---- offsets: what recovery needs (pure) ----------------------------------------------

/**
 * The epoch and, per room, the highest offset seen (PROTOCOL.md "Offsets and recovery").
 * `observe` also drops a message seen before: one whose every tracked room offset is not
 * above the one recorded.
 */
export class Offsets {
  constructor() {
    this.epoch = null;
    this.rooms = new Map();
  }

  /** Starts over under `epoch` (a new session, or a history that started over). */
  reset(epoch) {
    this.epoch = epoch ?? null;
    this.rooms.clear();
  }

  /** Records a room message; returns false for a duplicate. `tracked(room)`: is the socket in it? */
  observe(epoch, rooms, tracked = () => true) {
    if (epoch !== this.epoch) this.reset(epoch);
    let known = 0;
    let fresh = false;
    for (const [room, offset] of Object.entries(rooms)) {
      if (!tracked(room)) continue;
      const seen = this.rooms.get(room);
      if (seen !== undefined) known++;
      if (seen === undefined || offset > seen) {
        this.rooms.set(room, offset);
        fresh = true;
      }
    }
    return fresh || known === 0;
  }

  forget(room) {
    this.rooms.delete(room);
  }

  /** `$resync`: `rooms` lost messages for good; under a new epoch, every room did. */
  resync(epoch, rooms) {
    if (epoch !== this.epoch) return this.reset(epoch);
    for (const room of rooms) this.rooms.delete(room);
  }

  /** `{room: offset}` for the rooms that `keep(room)` accepts. */
  snapshot(keep = () => true) {
    const out = {};
    for (const [room, offset] of this.rooms) if (keep(room)) out[room] = offset;
    return out;
  }
}

// ---- reconnection policy (issue 6; pure) ----------------------------------------------

/** Close codes after which the client does not reconnect (PROTOCOL.md "Close codes"). */
export function shouldReconnect(code) {
  if (code === 1000 || code === 1008 || code === 1009) return false;
  return !(code >= 4000 && code <= 4099);
}

/**
 * The delay before reconnection attempt `attempt` (1, 2, ...): exponential from `delay`,
 * capped at `maxDelay`, minus up to `jitter` of it at random (so clients spread out).
 */
export function backoffDelay(attempt, { delay = 500, maxDelay = 10000, jitter = 0.5, random = Math.random } = {}) {
  const full = Math.min(maxDelay, delay * 2 ** Math.min(Math.max(attempt - 1, 0), 30));
  return Math.round(full * (1 - jitter * random()));
}
