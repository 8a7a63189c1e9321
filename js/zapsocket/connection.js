// zapsocket/connection.js: the connection manager of the zapsocket.js client: one
// WebSocket at a time, reconnection with backoff (issue 6). Knows nothing of envelopes.

import { SUBPROTOCOLS, backoffDelay, shouldReconnect } from './protocol.js';

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
 * `open(protocol)`, `text(string)`, `binary(ArrayBuffer)`,
 * `closed({code, reason, willReconnect})`, `reconnecting({attempt, delay})`.
 */
export class Connection {
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

  /** Sends a text frame (a string) or a binary frame (a Uint8Array). */
  send(frame) {
    this.#ws.send(frame);
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
      const protocols = [...SUBPROTOCOLS];
      ws = wsOptions ? new WS(target, protocols, wsOptions) : new WS(target, protocols);
    } catch (e) {
      this.#ws = {}; // a placeholder, so that #closed has a current socket to end
      queueMicrotask(() => this.#closed(1006, `cannot open: ${e.message}`));
      return;
    }
    this.#ws = ws;
    ws.binaryType = 'arraybuffer'; // binary frames arrive as one ArrayBuffer each
    const current = () => this.#ws === ws;
    ws.onopen = () => current() && this.hooks.open(ws.protocol);
    ws.onmessage = (ev) => current() && (typeof ev.data === 'string' ? this.hooks.text(ev.data) : this.hooks.binary(ev.data));
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
