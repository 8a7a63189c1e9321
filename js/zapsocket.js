// zapsocket.js: the JavaScript client of the zapsocket realtime protocol, versions 1 and
// 2 (docs/PROTOCOL.md; 2 adds byte arrays in data, sent as binary frames). ES modules, no
// dependencies, for browsers and Node.
//
// Reading order: zapsocket/protocol.js (envelopes, binary frames, acks, offsets,
// reconnection policy; pure) → zapsocket/connection.js (one WebSocket at a time,
// reconnection) → the Socket here (the API object) → connect().

import {
  DEFAULT_LIMITS, LOCAL, Offsets, PROTOCOL_VERSION, Requests, ZapError,
  encodeEnvelope, frameOf, isObject, nameProblem, parseEnvelope, parseFrame,
} from './zapsocket/protocol.js';
import { Connection } from './zapsocket/connection.js';

export {
  BINARY_FORMAT, DEFAULT_LIMITS, LOCAL_EVENTS, MAX_ATTACHMENTS, Offsets, PROTOCOL_VERSION, Requests,
  SUBPROTOCOL, SUBPROTOCOLS, ZapError, backoffDelay, encodeEnvelope, frameOf, isBytes, nameProblem,
  parseEnvelope, parseFrame, shouldReconnect, utf8Over,
} from './zapsocket/protocol.js';
export { buildUrl } from './zapsocket/connection.js';

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
  pingInterval: 25000, // silence before a $ping; 0: no heartbeat
  pingTimeout: 20000, // then, no message at all within this: the connection is dead
};

/** A realtime connection: events, acks, procedure calls, rooms and presence. See README.md. */
export class Socket {
  #listeners = new Map();
  #any = []; // catch-all listeners (onAny)
  #requests;
  #offsets = new Offsets();
  #rooms = new Set(); // joined with $join (rejoined after a reconnection)
  #buffer = []; // {message, id, fail} waiting for a connection (message: encodeEnvelope's)
  #conn;
  #gen = 0; // counts WebSockets, so that work for an old one is dropped
  #hello = null; // the last $hello's data
  #version = PROTOCOL_VERSION; // of the connection (its $hello); before the first, the newest
  #everConnected = false;
  #waiters = [];
  #lastHeard = 0; // Date.now() of the last message received
  #beat = null; // the heartbeat's timer

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
    /** The subprotocol the server selected (`zap.v2`, `zap.v1`, or '' from a server that ignored it). */
    this.protocol = undefined;
    this.#requests = new Requests({ max: this.opts.maxPending });
    this.#conn = new Connection(this.opts, {
      open: (protocol) => (this.protocol = protocol),
      text: (text) => this.#onFrame(parseEnvelope, text),
      binary: (frame) => this.#onFrame(parseFrame, frame),
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

  /** The server node this connection is on (from `$hello`; many nodes can form one server). */
  get node() {
    return this.#hello?.node ?? null;
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
   * Adds a catch-all listener, as socket.io's `onAny`: `fn(event, data, meta)` for every
   * application event the server sends (not `$` events nor local ones such as `error`),
   * before that event's own listeners. It only listens: a request's reply comes from the
   * event's own listener (without one the server gets `unknown_event`).
   */
  onAny(fn) {
    if (typeof fn !== 'function') throw new TypeError('a listener must be a function');
    this.#any.push(fn);
    return this;
  }

  /** Like `onAny`, but `fn` runs before the catch-all listeners added so far. */
  prependAny(fn) {
    if (typeof fn !== 'function') throw new TypeError('a listener must be a function');
    this.#any.unshift(fn);
    return this;
  }

  /** Removes the catch-all listener `fn`; all of them without an argument. */
  offAny(fn) {
    this.#any = fn === undefined ? [] : this.#any.filter((f) => f !== fn);
    return this;
  }

  /** The catch-all listeners. */
  listenersAny() {
    return [...this.#any];
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

  /**
   * The heartbeat, for a connection that died without a close (a laptop put to sleep, a
   * network switched): browsers answer the server's WebSocket pings but cannot see them.
   * After `pingInterval` ms without a message the client sends `$ping`; when nothing at
   * all arrives within `pingTimeout` ms after it, the connection is dropped and the
   * client reconnects.
   */
  #startHeartbeat() {
    clearTimeout(this.#beat);
    const { pingInterval, pingTimeout } = this.opts;
    if (!(pingInterval > 0 && Number.isFinite(pingInterval))) return;
    const gen = this.#gen;
    this.#lastHeard = Date.now();
    const check = () => {
      if (gen !== this.#gen) return;
      const silent = Date.now() - this.#lastHeard;
      if (silent < pingInterval) {
        this.#beat = setTimeout(check, pingInterval - silent);
        return;
      }
      const sentAt = Date.now();
      // Any reply (an error from a server without $ping too) or other message will do.
      this.#request((ack) => ({ event: '$ping', data: null, ack }), '$ping', pingTimeout, true).catch(() => {});
      this.#beat = setTimeout(() => {
        if (gen !== this.#gen) return;
        if (this.#lastHeard >= sentAt) check();
        else this.#conn.drop(`no message within ${pingTimeout} ms of a $ping`);
      }, pingTimeout);
    };
    this.#beat = setTimeout(check, pingInterval);
  }

  /**
   * Encodes (byte arrays in `data`: a binary frame, see `#frame`), checks the size, then
   * writes (connected, or `direct`) or buffers.
   */
  #send(envelope, id, fail, direct = false) {
    let message;
    try {
      message = encodeEnvelope(envelope);
    } catch (e) {
      return fail(e), false;
    }
    const frame = this.#frame(message, fail);
    if (frame === null) return false;
    if (this.state === 'connected' || (direct && this.#conn.isOpen)) return this.#write(frame, id, fail);
    if (this.state === 'disconnected') return fail(new ZapError('disconnected', 'the socket is closed')), false;
    if (this.#buffer.length >= this.opts.maxBuffered) this.#buffer = this.#buffer.filter((b) => !b.id || this.#requests.has(b.id));
    if (this.#buffer.length >= this.opts.maxBuffered) {
      return fail(new ZapError('limit', `offline buffer full (${this.opts.maxBuffered} messages)`)), false;
    }
    // Its frame is made again once connected, for that connection's version: the bytes
    // are copied now, as the JSON was made now.
    if (message.parts.length) message = { text: message.text, parts: message.parts.map((p) => p.slice()) };
    this.#buffer.push({ message, id, fail });
    return true;
  }

  /**
   * The frame of an encoded message for the current connection (before any, the newest
   * version): a string, or a binary frame when it has byte arrays on version 2 (on version 1
   * they are arrays of numbers). null when over `max_message` (the whole frame), after `fail`.
   */
  #frame(message, fail) {
    try {
      return frameOf(message, this.#version, this.limits.max_message);
    } catch (e) {
      fail(e);
      return null;
    }
  }

  #write(frame, id, fail) {
    try {
      this.#conn.send(frame);
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
    for (const { message, id, fail } of queued) {
      if (id && !this.#requests.has(id)) continue;
      const frame = message.parts.length ? this.#frame(message, fail) : message.text;
      if (frame !== null) this.#write(frame, id, fail);
    }
  }

  // -- receiving ----------------------------------------------------------------------------

  /** A frame from the server, text or binary, parsed by `parse`; a malformed one is an `error`. */
  #onFrame(parse, frame) {
    this.#lastHeard = Date.now();
    let env;
    try {
      env = parse(frame);
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
    for (const fn of [...this.#any]) this.#invoke((data, m) => fn.call(this, env.event, data, m), env.data, meta);
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
      case '$resync': {
        // Messages of these rooms were lost and cannot be replayed: their offsets go (so a
        // later $resume does not claim them), and the application fetches their state again.
        const rooms = Array.isArray(d.rooms) ? d.rooms.filter((r) => typeof r === 'string') : [];
        this.#offsets.resync(typeof d.epoch === 'string' ? d.epoch : this.#offsets.epoch, rooms);
        return this.#emitLocal('resync', { rooms, epoch: this.#offsets.epoch });
      }
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

  /** Answers a server's request; a reply that cannot be sent becomes an error reply. */
  #reply(id, gen, data, error) {
    if (gen !== this.#gen || !this.#conn.isOpen) return; // the asking connection is gone
    let frame = null;
    if (!error) {
      try {
        frame = this.#frame(encodeEnvelope({ reply: id, data: data ?? null }), (e) => (error = e));
      } catch (e) {
        error = e.code === 'bad_payload' ? new ZapError('handler_error', `reply is not JSON: ${e.message}`) : e;
      }
    }
    if (error) {
      const code = error instanceof ZapError ? error.code : 'handler_error';
      frame = JSON.stringify({ reply: id, error: { code, message: String(error?.message ?? error) } });
    }
    this.#write(frame, 0, () => {});
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
    if (hello.version !== 1 && hello.version !== 2) {
      this.#emitLocal('error', new ZapError('unsupported', `the server speaks version ${hello.version}, not 1 or 2`));
      return this.close(1000, 'unsupported version');
    }
    // Byte arrays go as binary frames on version 2: the server selected zap.v2 (or nothing,
    // if the subprotocol could not be offered) and says so.
    this.#version = hello.version === 2 && this.protocol !== 'zap.v1' ? 2 : 1;
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
    this.#startHeartbeat();
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
    clearTimeout(this.#beat);
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
