// zapsocket.js: the JavaScript client of the zapsocket realtime protocol, version 1
// (docs/PROTOCOL.md). One ES module, no dependencies, for browsers and Node.
//
// Reading order: envelopes (pure) → requests (ack bookkeeping) → offsets (recovery state)
// → the connection manager (one WebSocket at a time; reconnection policy, issue 6)
// → the Socket (the API object) → connect().

/** The protocol version this client speaks. */
export const PROTOCOL_VERSION = 1;
/** The WebSocket subprotocol offered. */
export const SUBPROTOCOL = 'zap.v1';

/** Limits assumed until `$hello` tells the server's (PROTOCOL.md "Limits"). */
export const DEFAULT_LIMITS = Object.freeze({ max_message: 1 << 20, max_rooms: 100, ack_timeout_ms: 10000 });

/** Names of the events the client itself emits; an application event cannot use them. */
export const LOCAL_EVENTS = Object.freeze([
  'connect', 'connect_error', 'disconnect', 'error', 'joined', 'left',
  'reconnecting', 'reconnect', 'reconnect_failed',
]);
const LOCAL = new Set(LOCAL_EVENTS);
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
const isObject = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);

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

// ---- the connection manager: one WebSocket at a time -----------------------------------

/** Builds the URL: relative URLs against the page, http(s) → ws(s), query parameters added. */
export function buildUrl(url, query) {
  const page = typeof location !== 'undefined' ? location.href : undefined;
  const u = new URL(url ?? '/ws', page);
  if (u.protocol === 'http:') u.protocol = 'ws:';
  if (u.protocol === 'https:') u.protocol = 'wss:';
  const q = typeof query === 'function' ? query() : query;
  for (const [k, v] of Object.entries(q || {})) if (v !== undefined && v !== null) u.searchParams.set(k, String(v));
  return u.toString();
}

/**
 * Opens WebSockets, reports what happens on the current one to its owner (`hooks`), and
 * after an unwanted close dials again with backoff. Knows nothing of envelopes. Hooks:
 * `open()`, `text(string)`, `binary()`, `closed({code, reason, willReconnect})`,
 * `reconnecting({attempt, delay})`.
 */
class Connection {
  #ws = null;
  #timer = null;
  #retry = null;

  constructor(opts, hooks) {
    this.opts = opts;
    this.hooks = hooks;
    this.attempt = 0; // reconnection attempts since the last good connection
    this.stopped = true;
  }

  get isOpen() {
    return this.#ws !== null && this.#ws.readyState === 1;
  }

  /** Starts dialing (idempotent while active). */
  open() {
    if (!this.stopped) return;
    this.stopped = false;
    this.attempt = 0;
    this.#dial();
  }

  /** The owner got `$hello`: the connection is good; the timeout and attempt count reset. */
  established() {
    clearTimeout(this.#timer);
    this.attempt = 0;
  }

  send(text) {
    this.#ws.send(text);
  }

  /** A deliberate close: no reconnection. Reports `closed` at once. */
  close(code = 1000, reason = '') {
    if (this.stopped) return;
    this.stopped = true;
    clearTimeout(this.#retry);
    clearTimeout(this.#timer);
    const ws = this.#ws;
    this.#ws = null;
    if (ws?.close) {
      try {
        ws.close(code, reason);
      } catch {
        ws.close();
      }
    }
    this.hooks.closed({ code, reason: reason || 'closed by the client', willReconnect: false, deliberate: true });
  }

  /**
   * Drops the current WebSocket as if the network failed (reported as 1006), then
   * reconnects as usual. Node's `ws` cuts the TCP connection (no close frame); a browser
   * closes with 4100.
   */
  drop(reason = 'dropped by the client') {
    const ws = this.#ws;
    if (!ws) return;
    try {
      if (typeof ws.terminate === 'function') ws.terminate();
      else ws.close(4100, reason.slice(0, 100));
    } catch {
      /* already closing */
    }
    this.#closed(1006, reason);
  }

  #dial() {
    const { WebSocket: WS, url, query, wsOptions, timeout } = this.opts;
    let ws;
    try {
      const target = buildUrl(url, query);
      ws = wsOptions ? new WS(target, [SUBPROTOCOL], wsOptions) : new WS(target, [SUBPROTOCOL]);
    } catch (e) {
      this.#ws = {}; // a placeholder, so that #closed has a current socket to end
      queueMicrotask(() => this.#closed(1006, `cannot open: ${e.message}`));
      return;
    }
    this.#ws = ws;
    ws.binaryType = 'arraybuffer';
    const current = () => this.#ws === ws;
    ws.onopen = () => current() && this.hooks.open(ws.protocol);
    ws.onmessage = (ev) => current() && (typeof ev.data === 'string' ? this.hooks.text(ev.data) : this.hooks.binary());
    ws.onerror = (ev) => {
      if (current()) this.lastError = ev?.error?.message || ev?.message || 'WebSocket error';
    };
    ws.onclose = (ev) => current() && this.#closed(ev.code, ev.reason || this.lastError || '');
    if (timeout > 0 && Number.isFinite(timeout)) {
      this.#timer = setTimeout(() => current() && this.drop(`no $hello within ${timeout} ms`), timeout);
    }
  }

  #closed(code, reason) {
    if (this.#ws === null) return;
    this.#ws = null;
    this.lastError = undefined;
    clearTimeout(this.#timer);
    const { reconnection, reconnectionAttempts } = this.opts;
    const willReconnect = !this.stopped && reconnection && shouldReconnect(code) && this.attempt < reconnectionAttempts;
    if (!willReconnect) this.stopped = true;
    this.hooks.closed({ code, reason, willReconnect });
    if (willReconnect && !this.stopped) this.#schedule(code);
  }

  // Reconnection (issue 6): the next attempt after a backoff delay; overload (1013) starts slower.
  #schedule(code) {
    this.attempt++;
    const delay = backoffDelay(this.attempt + (code === 1013 ? 3 : 0), {
      delay: this.opts.reconnectionDelay,
      maxDelay: this.opts.reconnectionDelayMax,
      jitter: this.opts.jitter,
    });
    this.hooks.reconnecting({ attempt: this.attempt, delay });
    this.#retry = setTimeout(() => !this.stopped && this.#dial(), delay);
  }
}

// ---- the Socket: the API object ---------------------------------------------------------

const DEFAULTS = {
  url: undefined,
  WebSocket: undefined,
  wsOptions: undefined,
  query: undefined,
  autoConnect: true,
  ackTimeout: undefined, // default: the server's ack_timeout_ms
  timeout: 20000, // to open and get $hello
  maxPending: 1024,
  maxBuffered: 1000,
  reconnection: true,
  reconnectionAttempts: Infinity,
  reconnectionDelay: 500,
  reconnectionDelayMax: 10000,
  jitter: 0.5,
  recovery: true,
};

/** A realtime connection: events, acks, procedure calls, rooms and presence. See README.md. */
export class Socket {
  #listeners = new Map();
  #requests;
  #offsets = new Offsets();
  #rooms = new Set(); // joined with $join (rejoined after a reconnection)
  #buffer = []; // {text, id} waiting for a connection
  #conn;
  #gen = 0; // counts WebSockets, so that work for an old one is dropped
  #hello = null; // the last $hello's data
  #everConnected = false;
  #waiters = [];

  constructor(url, opts = {}) {
    this.opts = { ...DEFAULTS, ...opts, url: url ?? opts.url };
    this.opts.WebSocket ??= globalThis.WebSocket;
    if (typeof this.opts.WebSocket !== 'function') {
      throw new TypeError('no WebSocket here: pass one, e.g. connect(url, { WebSocket: (await import("ws")).WebSocket })');
    }
    /** `connecting`, `connected`, `reconnecting` or `disconnected`. */
    this.state = 'disconnected';
    /** The session id (from `$hello`, or the resumed one). */
    this.session = null;
    /** The limits the server announced (defaults until then). */
    this.limits = { ...DEFAULT_LIMITS };
    /** The subprotocol the server selected (`zap.v1`, or '' from a server that ignored it). */
    this.protocol = undefined;
    this.#requests = new Requests({ max: this.opts.maxPending });
    this.#conn = new Connection(this.opts, {
      open: (protocol) => (this.protocol = protocol),
      text: (text) => this.#onText(text),
      binary: () => this.#emitLocal('error', new ZapError('unsupported', 'a binary frame (reserved in version 1)')),
      closed: (info) => this.#onClosed(info),
      reconnecting: (info) => this.#emitLocal('reconnecting', info),
    });
    if (this.opts.autoConnect) this.open();
  }

  get connected() {
    return this.state === 'connected';
  }

  /** The epoch of the server's history (from `$hello` and room messages). */
  get epoch() {
    return this.#offsets.epoch;
  }

  /** The rooms joined with `join()`, rejoined after a reconnection. */
  get rooms() {
    return [...this.#rooms];
  }

  /** `{room: offset}`: the highest offset seen per room. */
  get offsets() {
    return this.#offsets.snapshot();
  }

  /** Connects (again, after `close()`). */
  open() {
    if (this.state !== 'disconnected') return this;
    this.state = 'connecting';
    this.#conn.open();
    return this;
  }

  /** Closes for good (no reconnection); pending and buffered requests fail with `disconnected`. */
  close(code = 1000, reason = '') {
    this.#conn.close(code, reason);
    return this;
  }

  /** Resolves when connected (at once if connected); rejects if the socket stops first. */
  ready() {
    if (this.connected) return Promise.resolve();
    if (this.state === 'disconnected') return Promise.reject(new ZapError('disconnected', 'the socket is closed'));
    return new Promise((resolve, reject) => this.#waiters.push({ resolve, reject }));
  }

  on(event, fn) {
    if (typeof fn !== 'function') throw new TypeError('a listener must be a function');
    const list = this.#listeners.get(event);
    if (list) list.push(fn);
    else this.#listeners.set(event, [fn]);
    return this;
  }

  once(event, fn) {
    const wrapper = (...args) => {
      this.off(event, wrapper);
      return fn.apply(this, args);
    };
    wrapper.listener = fn;
    return this.on(event, wrapper);
  }

  /** Removes `fn` from `event`; all of `event`'s listeners without `fn`; all without arguments. */
  off(event, fn) {
    if (event === undefined) this.#listeners.clear();
    else if (fn === undefined) this.#listeners.delete(event);
    else {
      const list = (this.#listeners.get(event) || []).filter((f) => f !== fn && f.listener !== fn);
      if (list.length) this.#listeners.set(event, list);
      else this.#listeners.delete(event);
    }
    return this;
  }

  listeners(event) {
    return [...(this.#listeners.get(event) || [])];
  }

  /**
   * Sends an event. Returns true when sent or buffered (while connecting or reconnecting);
   * false when the socket is closed or the offline buffer is full. Throws for a bad name.
   */
  emit(event, data) {
    const problem = nameProblem(event);
    if (problem) throw problem;
    return this.#send({ event, data: data ?? null }, 0, (e) => this.#emitLocal('error', e));
  }

  /** Sends an event asking for an ack; resolves with the reply's data. */
  emitWithAck(event, data, { timeout } = {}) {
    const problem = nameProblem(event);
    if (problem) return Promise.reject(problem);
    return this.#request((ack) => ({ event, data: data ?? null, ack }), `event '${event}'`, timeout);
  }

  /** Calls a procedure; resolves with its output. */
  call(procedure, input, { timeout } = {}) {
    const problem = nameProblem(procedure, 'procedure');
    if (problem) return Promise.reject(problem);
    return this.#request((ack) => ({ call: procedure, data: input ?? null, ack }), `call '${procedure}'`, timeout);
  }

  /** Joins a room; resolves with its members (`[{id, data}]`), this socket included. */
  async join(room, { timeout } = {}) {
    const problem = nameProblem(room, 'room');
    if (problem) throw problem;
    if (!this.#rooms.has(room) && this.#rooms.size >= this.limits.max_rooms) {
      throw new ZapError('limit', `already in ${this.#rooms.size} rooms (max_rooms)`);
    }
    const reply = await this.#request((ack) => ({ event: '$join', data: { room }, ack }), `$join '${room}'`, timeout);
    this.#rooms.add(room);
    return reply?.members ?? [];
  }

  /** Leaves a room. */
  async leave(room, { timeout } = {}) {
    const problem = nameProblem(room, 'room');
    if (problem) throw problem;
    const wasIn = this.#rooms.delete(room); // not rejoined even if the reply is lost
    try {
      await this.#request((ack) => ({ event: '$leave', data: { room }, ack }), `$leave '${room}'`, timeout);
    } catch (e) {
      if (wasIn && e.code !== 'disconnected' && e.code !== 'timeout') this.#rooms.add(room);
      throw e;
    }
    this.#offsets.forget(room);
  }

  /** The members of a room (`[{id, data}]`). */
  async members(room, { timeout } = {}) {
    const problem = nameProblem(room, 'room');
    if (problem) throw problem;
    const reply = await this.#request((ack) => ({ event: '$members', data: { room }, ack }), `$members '${room}'`, timeout);
    return reply?.members ?? [];
  }

  /** Drops the WebSocket as a network failure would (reconnection follows): for tests and demos. */
  simulateDrop() {
    this.#conn.drop();
    return this;
  }

  // -- sending ------------------------------------------------------------------------------

  #request(build, label, timeout, direct = false) {
    const ms = timeout ?? this.opts.ackTimeout ?? this.limits.ack_timeout_ms;
    const { id, promise } = this.#requests.open(ms, label);
    if (id) this.#send(build(id), id, (e) => this.#requests.fail(id, e), direct);
    return promise;
  }

  /** Encodes, checks the size, then writes (connected, or `direct`) or buffers. */
  #send(envelope, id, fail, direct = false) {
    let text;
    try {
      text = JSON.stringify(envelope);
    } catch (e) {
      return fail(new ZapError('bad_payload', `cannot encode as JSON: ${e.message}`)), false;
    }
    const max = this.limits.max_message;
    if (utf8Over(text, max)) return fail(new ZapError('too_large', `envelope over max_message (${max} bytes)`)), false;
    if (this.state === 'connected' || (direct && this.#conn.isOpen)) return this.#write(text, id, fail);
    if (this.state === 'disconnected') return fail(new ZapError('disconnected', 'the socket is closed')), false;
    if (this.#buffer.length >= this.opts.maxBuffered) this.#buffer = this.#buffer.filter((b) => !b.id || this.#requests.has(b.id));
    if (this.#buffer.length >= this.opts.maxBuffered) {
      return fail(new ZapError('limit', `offline buffer full (${this.opts.maxBuffered} messages)`)), false;
    }
    this.#buffer.push({ text, id, fail });
    return true;
  }

  #write(text, id, fail) {
    try {
      this.#conn.send(text);
    } catch (e) {
      fail(new ZapError('disconnected', `cannot send: ${e.message}`));
      return false;
    }
    if (id) this.#requests.markSent(id);
    return true;
  }

  #flush() {
    const queued = this.#buffer;
    this.#buffer = [];
    for (const { text, id, fail } of queued) if (!id || this.#requests.has(id)) this.#write(text, id, fail);
  }

  // -- receiving ----------------------------------------------------------------------------

  #onText(text) {
    let env;
    try {
      env = parseEnvelope(text);
    } catch (e) {
      return this.#emitLocal('error', e);
    }
    if (env.kind === 'reply') this.#requests.resolve(env.id, env.data);
    else if (env.kind === 'error') this.#requests.fail(env.id, env.error);
    else this.#onEvent(env);
  }

  #onEvent(env) {
    if (env.rooms && !this.#offsets.observe(env.epoch, env.rooms, (r) => this.#tracks(r))) return;
    const meta = { event: env.event };
    if (env.rooms) Object.assign(meta, { epoch: env.epoch, rooms: env.rooms });
    if (env.event[0] === '$') return this.#onReserved(env, meta);
    if (LOCAL.has(env.event)) {
      const e = new ZapError('reserved', `the server sent '${env.event}', a client event name`);
      if (env.ack) this.#reply(env.ack, this.#gen, null, e);
      return this.#emitLocal('error', e);
    }
    const listeners = this.listeners(env.event);
    if (env.ack) return this.#answer(env, listeners, meta);
    for (const fn of listeners) this.#invoke(fn, env.data, meta);
  }

  #onReserved(env, meta) {
    const d = isObject(env.data) ? env.data : {};
    switch (env.event) {
      case '$hello':
        return this.#onHello(d);
      case '$error':
        return this.#emitLocal('error', new ZapError(String(d.code ?? 'error'), String(d.message ?? '')));
      case '$joined':
        return this.#emitLocal('joined', { room: d.room, member: d.member }, meta);
      case '$left':
        if (d.member?.id === this.session && this.#rooms.delete(d.room)) this.#offsets.forget(d.room);
        return this.#emitLocal('left', { room: d.room, member: d.member }, meta);
      default:
        if (env.ack) this.#reply(env.ack, this.#gen, null, new ZapError('unknown_event', `no handler for event "${env.event}"`));
    }
  }

  /** A server's request: the first listener result other than undefined (awaited) is the reply. */
  async #answer(env, listeners, meta) {
    const gen = this.#gen;
    if (listeners.length === 0) {
      return this.#reply(env.ack, gen, null, new ZapError('unknown_event', `no handler for event "${env.event}"`));
    }
    let result;
    try {
      for (const fn of listeners) {
        const r = fn.call(this, env.data, meta);
        if (result === undefined) result = r;
      }
      result = await result;
    } catch (e) {
      return this.#reply(env.ack, gen, null, e);
    }
    this.#reply(env.ack, gen, result);
  }

  #reply(id, gen, data, error) {
    if (gen !== this.#gen || !this.#conn.isOpen) return; // the asking connection is gone
    let text;
    try {
      text = error ? null : JSON.stringify({ reply: id, data: data ?? null });
    } catch (e) {
      error = new ZapError('handler_error', `reply is not JSON: ${e.message}`);
    }
    if (error) {
      const code = error instanceof ZapError ? error.code : 'handler_error';
      text = JSON.stringify({ reply: id, error: { code, message: String(error?.message ?? error) } });
    }
    this.#write(text, 0, () => {});
  }

  #invoke(fn, data, meta) {
    try {
      const r = fn.call(this, data, meta);
      if (r && typeof r.then === 'function') r.then(undefined, (e) => this.#listenerFailed(e));
    } catch (e) {
      this.#listenerFailed(e);
    }
  }

  #listenerFailed(e) {
    const err = e instanceof ZapError ? e : Object.assign(new ZapError('handler_error', String(e?.message ?? e)), { cause: e });
    if (this.#listeners.has('error')) this.#emitLocal('error', err);
    else setTimeout(() => { throw e; }); // as an EventEmitter would: do not swallow it
  }

  #emitLocal(event, ...args) {
    for (const fn of this.listeners(event)) {
      try {
        fn.apply(this, args);
      } catch (e) {
        if (event === 'error') setTimeout(() => { throw e; });
        else this.#listenerFailed(e);
      }
    }
  }

  /** Rooms whose offsets count for recovery: joined ones, `$all` and the private room. */
  #tracks(room) {
    return this.#rooms.has(room) || room === '$all' || room.startsWith('$s:');
  }

  // -- connection lifecycle -----------------------------------------------------------------

  #onHello(hello) {
    if (hello.version !== PROTOCOL_VERSION) {
      this.#emitLocal('error', new ZapError('unsupported', `the server speaks version ${hello.version}, not ${PROTOCOL_VERSION}`));
      return this.close(1000, 'unsupported version');
    }
    this.limits = { ...DEFAULT_LIMITS, ...(isObject(hello.limits) ? hello.limits : {}) };
    const previous = this.#everConnected ? { session: this.session, epoch: this.#offsets.epoch } : null;
    this.#hello = hello;
    if (!previous) {
      this.session = hello.session;
      this.#offsets.reset(hello.epoch);
      return this.#established({});
    }
    this.#reestablish(hello, previous);
  }

  // Reconnection (issue 6): resume the session, or rejoin the rooms under a new one.
  async #reestablish(hello, previous) {
    const gen = this.#gen;
    const attempt = this.#conn.attempt;
    let recovered = false;
    let replayed = 0;
    if (this.opts.recovery && previous.session && previous.epoch) {
      const keep = (r) => this.#rooms.has(r) || r === '$all' || r === `$s:${previous.session}`;
      const data = { session: previous.session, epoch: previous.epoch, offsets: this.#offsets.snapshot(keep) };
      try {
        const reply = await this.#request((ack) => ({ event: '$resume', data, ack }), '$resume', undefined, true);
        recovered = reply?.recovered === true;
        replayed = Number(reply?.replayed ?? 0);
      } catch (e) {
        if (gen !== this.#gen) return;
        if (e.code !== 'recovery_unavailable') this.#emitLocal('error', e);
      }
      if (gen !== this.#gen) return;
    }
    const members = {};
    if (!recovered) {
      this.session = hello.session;
      this.#offsets.reset(hello.epoch);
      await Promise.all(this.rooms.map(async (room) => {
        try {
          const reply = await this.#request((ack) => ({ event: '$join', data: { room }, ack }), `$join '${room}'`, undefined, true);
          members[room] = reply?.members ?? [];
        } catch (e) {
          if (gen !== this.#gen) return;
          this.#rooms.delete(room);
          this.#emitLocal('error', e);
        }
      }));
      if (gen !== this.#gen) return;
    }
    this.#established({ reconnect: { attempt, recovered, replayed, members } });
  }

  #established({ reconnect }) {
    this.#conn.established();
    this.state = 'connected';
    this.#everConnected = true;
    this.#flush();
    const waiters = this.#waiters.splice(0);
    for (const w of waiters) w.resolve();
    this.#emitLocal('connect', { session: this.session, recovered: reconnect?.recovered ?? false });
    if (reconnect) this.#emitLocal('reconnect', reconnect);
  }

  #onClosed({ code, reason, willReconnect, deliberate = false }) {
    const was = this.state;
    this.#gen++;
    const lost = new ZapError('disconnected', `connection closed (${code}${reason ? `: ${reason}` : ''})`);
    this.#requests.failSent(lost);
    if (willReconnect) this.state = this.#everConnected ? 'reconnecting' : 'connecting';
    else {
      this.state = 'disconnected';
      const buffered = this.#buffer.splice(0);
      for (const { fail } of buffered) fail(lost);
      this.#requests.failAll(lost);
      for (const w of this.#waiters.splice(0)) w.reject(lost);
      // The session ends here: open() starts a new one.
      this.#everConnected = false;
      this.#rooms.clear();
    }
    const info = { code, reason, willReconnect };
    if (was === 'connected') this.#emitLocal('disconnect', info);
    else if (!deliberate) this.#emitLocal('connect_error', info);
    if (!willReconnect && !deliberate && this.#conn.attempt > 0) this.#emitLocal('reconnect_failed', info);
  }
}

/**
 * Opens a realtime connection: `connect(url, opts)`. In a browser `url` may be relative
 * (default `/ws`); in Node 20 pass `{WebSocket}` from the `ws` package.
 */
export function connect(url, opts) {
  if (isObject(url) && opts === undefined) return new Socket(undefined, url);
  return new Socket(url, opts);
}

export default connect;
