// zapsocket/protocol.js: the pure parts of the zapsocket.js client (docs/PROTOCOL.md,
// versions 1 and 2): constants, envelopes (text frames, and binary frames with byte
// arrays), ack bookkeeping, recovery offsets and the reconnection policy. No I/O;
// re-exported by ../zapsocket.js.
//
// Reading order: envelopes → binary frames → requests (acks) → offsets (recovery) →
// reconnection policy.

/** The newest protocol version this client speaks (it speaks 1 too). */
export const PROTOCOL_VERSION = 2;
/** The version 1 subprotocol (kept for compatibility: the client offers `SUBPROTOCOLS`). */
export const SUBPROTOCOL = 'zap.v1';
/** The WebSocket subprotocols offered, the preferred first. */
export const SUBPROTOCOLS = Object.freeze(['zap.v2', SUBPROTOCOL]);
/** The first byte of a version 2 binary frame (an envelope with attachments). */
export const BINARY_FORMAT = 0x02;
/** The most byte arrays (attachments) one message may carry. */
export const MAX_ATTACHMENTS = 64;

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
 * (In a text frame `{"$bin": 0}` is plain data.)
 */
export function parseEnvelope(text) {
  return envelopeOf(parseJson(text));
}

function parseJson(text) {
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new ZapError('bad_json', `not JSON: ${e.message}`);
  }
}

/** The envelope of a parsed JSON value (see `parseEnvelope`). */
function envelopeOf(v) {
  if (!isObject(v) || isBytes(v)) throw new ZapError('bad_json', 'an envelope must be a JSON object');
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

// ---- binary frames: envelopes with byte arrays (version 2; pure) -------------------------
//
// 0x02, u32 (big-endian) N, N bytes of JSON with each byte array replaced by {"$bin": I},
// then per attachment I = 0..K-1: u32 (big-endian) length, the bytes (PROTOCOL.md
// "Version 2: binary payloads").

const tag = (v) => Object.prototype.toString.call(v);

/**
 * Is `v` a byte array: an ArrayBuffer (or SharedArrayBuffer) or any view on one (a
 * Uint8Array, a Node Buffer, another typed array, a DataView)?
 */
export function isBytes(v) {
  if (ArrayBuffer.isView(v)) return true;
  if (v === null || typeof v !== 'object') return false;
  const t = tag(v);
  return t === '[object ArrayBuffer]' || t === '[object SharedArrayBuffer]';
}

/** The bytes of a byte array, as a Uint8Array on the same memory (no copy). */
export function bytesOf(v) {
  return ArrayBuffer.isView(v) ? new Uint8Array(v.buffer, v.byteOffset, v.byteLength) : new Uint8Array(v);
}

/** An object made by `{}` or `Object.create(null)` (of any realm), not a class instance. */
function isPlain(v) {
  const proto = Object.getPrototypeOf(v);
  return proto === null || Object.getPrototypeOf(proto) === null;
}

/** An object that reads as a placeholder: exactly one member, `$bin`. */
function looksLikePlaceholder(v) {
  let count = 0;
  for (const key in v) if (Object.hasOwn(v, key) && ++count > 1) return false;
  return count === 1 && Object.hasOwn(v, '$bin');
}

/**
 * `value` with each byte array in it (itself, or in arrays and plain objects, recursively;
 * not inside other objects) replaced by a placeholder `{"$bin": I}`, its bytes pushed to
 * `parts` as attachment I. Copies only the arrays and objects on the way to a byte array:
 * returns `value` itself when it holds none. `walk.lookalike` is set when a plain object
 * already reads as a placeholder.
 */
function takeBytes(value, parts, walk) {
  if (isBytes(value)) {
    parts.push(bytesOf(value));
    return { $bin: parts.length - 1 };
  }
  if (value === null || typeof value !== 'object' || walk.path.has(value)) return value; // a cycle: JSON.stringify refuses it
  const array = Array.isArray(value);
  if (!array && !isPlain(value)) return value;
  if (!array && looksLikePlaceholder(value)) walk.lookalike = true;
  walk.path.add(value);
  let copy = null;
  const keys = array ? value.keys() : Object.keys(value);
  for (const key of keys) {
    const item = value[key];
    const taken = takeBytes(item, parts, walk);
    if (taken !== item) {
      copy ??= array ? [...value] : { ...value };
      copy[key] = taken;
    }
  }
  walk.path.delete(value);
  return copy ?? value;
}

/**
 * Encodes an envelope to send: `{text, parts}`, its JSON and the byte arrays found in its
 * `data` (each a Uint8Array on the caller's memory; placeholders `{"$bin": I}` in `text`).
 * No parts: a text frame as in version 1; else `frameOf` makes the frame. Throws a
 * ZapError: `bad_payload` (not JSON; a plain object that reads as a placeholder next to
 * byte arrays) or `limit` (more than `MAX_ATTACHMENTS` byte arrays).
 */
export function encodeEnvelope(envelope) {
  const parts = [];
  const walk = { path: new Set(), lookalike: false };
  let data;
  try {
    data = takeBytes(envelope.data, parts, walk);
  } catch (e) {
    throw new ZapError('bad_payload', `cannot encode: ${e.message}`); // nested too deep
  }
  if (parts.length > MAX_ATTACHMENTS) {
    throw new ZapError('limit', `${parts.length} byte arrays in one message (at most ${MAX_ATTACHMENTS})`);
  }
  if (parts.length && walk.lookalike) {
    throw new ZapError('bad_payload', 'an object whose only member is "$bin" cannot be sent with byte arrays (it would read as one)');
  }
  let text;
  try {
    text = JSON.stringify(parts.length ? { ...envelope, data } : envelope);
  } catch (e) {
    throw new ZapError('bad_payload', `cannot encode as JSON: ${e.message}`);
  }
  return { text, parts };
}

// The placeholders encodeEnvelope writes. Outside strings (where quotes are escaped) only
// they match: a plain object of the same shape is refused when there are parts.
const PLACEHOLDER = /\{"\$bin":(\d+)\}/g;

/**
 * The frame of an encoded envelope on a connection that speaks `version`, checked
 * against `max` bytes (the whole frame): its text; with parts on version 2 a binary frame
 * (a new Uint8Array); with parts on version 1 a text in which each byte array is an array
 * of numbers. Throws a ZapError `too_large` when over `max`.
 */
export function frameOf({ text, parts }, version = PROTOCOL_VERSION, max = Infinity) {
  const tooLarge = () => new ZapError('too_large', `envelope over max_message (${max} bytes)`);
  if (parts.length === 0) {
    if (utf8Over(text, max)) throw tooLarge();
    return text;
  }
  if (version < 2) {
    // Each byte takes a digit and a comma at least: refuse what cannot fit before spelling it out.
    if (parts.reduce((n, p) => n + 2 * p.length - 11, text.length) > max) throw tooLarge();
    const spelled = text.replace(PLACEHOLDER, (_, i) => `[${parts[i].join(',')}]`);
    if (utf8Over(spelled, max)) throw tooLarge();
    return spelled;
  }
  const json = encoder.encode(text);
  const size = parts.reduce((n, p) => n + 4 + p.length, 5 + json.length);
  if (size > max) throw tooLarge();
  const frame = new Uint8Array(size);
  const view = new DataView(frame.buffer);
  frame[0] = BINARY_FORMAT;
  view.setUint32(1, json.length);
  frame.set(json, 5);
  let at = 5 + json.length;
  for (const p of parts) {
    view.setUint32(at, p.length);
    frame.set(p, at + 4);
    at += 4 + p.length;
  }
  return frame;
}

const decoder = new TextDecoder('utf-8', { fatal: true });
const malformed = (message) => new ZapError('bad_envelope', `binary frame: ${message}`);

/**
 * Parses one binary frame from a server (an ArrayBuffer or a view) into an envelope, as
 * `parseEnvelope` does a text frame: each placeholder `{"$bin": I}` becomes attachment I,
 * a Uint8Array view on the frame's memory (no copy). Throws a ZapError: `unsupported`
 * (another format than 0x02), `bad_envelope` (lengths that do not add up, trailing bytes,
 * more than 64 attachments, a bad, missing or repeated index; or as a text envelope),
 * `bad_json`.
 */
export function parseFrame(frame) {
  if (!isBytes(frame)) throw new ZapError('unsupported', `a binary frame as ${tag(frame)} (expected an ArrayBuffer)`);
  const bytes = bytesOf(frame);
  if (bytes.length < 5) throw malformed(`${bytes.length} bytes, shorter than its header (5)`);
  if (bytes[0] !== BINARY_FORMAT) {
    throw new ZapError('unsupported', `binary frame format 0x${bytes[0].toString(16).padStart(2, '0')} (this client reads 0x02)`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n = view.getUint32(1);
  if (n > bytes.length - 5) throw malformed(`its JSON (${n} bytes) goes past the end of the frame (${bytes.length} bytes)`);
  let text;
  try {
    text = decoder.decode(bytes.subarray(5, 5 + n));
  } catch {
    throw new ZapError('bad_json', 'binary frame: its JSON is not UTF-8');
  }
  const parts = readAttachments(bytes, view, 5 + n);
  const used = new Array(parts.length).fill(false);
  const value = putBytes(parseJson(text), parts, used);
  const missing = used.indexOf(false);
  if (missing >= 0) throw malformed(`attachment ${missing} is not referenced`);
  return envelopeOf(value);
}

/** The attachments of a frame, from `at` to its end: views on it. */
function readAttachments(bytes, view, at) {
  const parts = [];
  while (at < bytes.length) {
    if (parts.length === MAX_ATTACHMENTS) throw malformed(`more than ${MAX_ATTACHMENTS} attachments`);
    if (bytes.length - at < 4) throw malformed(`${bytes.length - at} trailing bytes`);
    const length = view.getUint32(at);
    at += 4;
    if (length > bytes.length - at) throw malformed(`attachment ${parts.length} (${length} bytes) goes past the end of the frame`);
    parts.push(bytes.subarray(at, at + length));
    at += length;
  }
  return parts;
}

/** Replaces, in place, each placeholder of a parsed JSON value by its attachment. */
function putBytes(value, parts, used) {
  if (value === null || typeof value !== 'object') return value;
  if (!Array.isArray(value) && looksLikePlaceholder(value)) {
    const i = value.$bin;
    if (!(Number.isInteger(i) && i >= 0 && i < parts.length)) throw malformed(`bad attachment index ${JSON.stringify(i)} (${parts.length} attachments)`);
    if (used[i]) throw malformed(`attachment ${i} is referenced twice`);
    used[i] = true;
    return parts[i];
  }
  for (const key of Array.isArray(value) ? value.keys() : Object.keys(value)) value[key] = putBytes(value[key], parts, used);
  return value;
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
