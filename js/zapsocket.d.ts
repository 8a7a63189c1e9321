// Type declarations for zapsocket.js, the client of the zapsocket realtime protocol
// (versions 1 and 2: byte arrays in data).
//
// Typing an application: pass the maps that `zapsocket-realtime` generates from the Rust
// types (js/types.generated.d.ts, see docs/PROTOCOL.md "TypeScript declarations"):
//
//   import { connect } from './zapsocket.js';
//   import type { ClientEvents, ServerEvents, Procedures } from './types.generated';
//   type Api = { ClientEvents: ClientEvents; ServerEvents: ServerEvents; Procedures: Procedures };
//   const socket = connect<Api>('/ws');
//   const sum = await socket.call('add', { a: 2, b: 3 });   // number
//   socket.on('chat', (msg) => msg.text);                   // msg: ChatRelay
//
// Without a type argument every name and payload is accepted (`any`).
//
// Byte arrays: what is sent may hold `Uint8Array`s (a Node `Buffer` is one), `ArrayBuffer`s
// and other views (typed arrays, DataView) anywhere in arrays and plain objects; where a
// type says `Uint8Array` (the generated type of a Rust `Binary`), any of them is accepted.
// What is received holds `Uint8Array`s (views on the received frame).

/** The shape of an API description; every part is optional. */
export interface ApiShape {
  /** Client → server events: name → `{ data, reply }` (`reply`: an ack's data). */
  ClientEvents?: object;
  /** Server → client events: name → data. `$joined`'s member data types presence. */
  ServerEvents?: object;
  /** Procedures: name → `{ input, output }`. */
  Procedures?: object;
  /** Members' public data (in `join()`, `members()`, `joined`/`left`); else from `ServerEvents['$joined']`. */
  Member?: unknown;
}

/** No type argument: anything goes. */
export interface AnyApi {
  ClientEvents: { [event: string]: { data: any; reply: any } };
  ServerEvents: { [event: string]: any };
  Procedures: { [procedure: string]: { input: any; output: any } };
  Member: any;
}

type Part<A, K extends keyof AnyApi> = A extends { [P in K]: infer T } ? T : AnyApi[K];
type ClientEventsOf<A> = Part<A, 'ClientEvents'>;
type ServerEventsOf<A> = Part<A, 'ServerEvents'>;
type ProceduresOf<A> = Part<A, 'Procedures'>;
/** The member data type of an API. */
export type MemberOf<A> = A extends { Member: infer M }
  ? M
  : ServerEventsOf<A> extends { $joined: { member: { data: infer D } } }
    ? D
    : any;

/** Names the client emits itself; an application event cannot use them. */
export type LocalEventName =
  | 'connect' | 'connect_error' | 'disconnect' | 'error' | 'joined' | 'left'
  | 'reconnecting' | 'reconnect' | 'reconnect_failed' | 'resync';

/** Application event names of a map: not `$…` (protocol) and not a local event name. */
export type AppEventName<M> = Exclude<Extract<keyof M, string>, `$${string}` | LocalEventName>;

type DataOf<T> = T extends { data: infer D } ? D : any;
type ReplyOf<T> = T extends { reply: infer R } ? R : unknown;
type InputOf<T> = T extends { input: infer I } ? I : any;
type OutputOf<T> = T extends { output: infer O } ? O : unknown;
/** A byte array the client can send: an `ArrayBuffer` or any view (Uint8Array, Buffer, DataView...). */
export type BytesInput = ArrayBufferLike | ArrayBufferView;
type Shallower = [never, 0, 1, 2, 3, 4, 5, 6, 7];
/**
 * What may be sent where `T` is expected: each `Uint8Array` in `T` (in arrays and objects,
 * down to 8 levels; recursive types such as JSON values stop there) may be any `BytesInput`.
 */
export type Sendable<T, Depth extends number = 8> = 0 extends 1 & T
  ? T
  : [Depth] extends [never]
    ? T
    : T extends Uint8Array
      ? BytesInput
      : T extends (...args: any[]) => any
        ? T
        : T extends object
          ? { [K in keyof T]: Sendable<T[K], Shallower[Depth]> }
          : T;
/** `data` may be left out when its type accepts null. */
type DataArgs<D> = [null] extends [D] ? [data?: D] : [undefined] extends [D] ? [data?: D] : [data: D];

/** Error codes of PROTOCOL.md "Errors", plus local ones. */
export type ErrorCode =
  | 'bad_json' | 'bad_envelope' | 'bad_payload' | 'unknown_event' | 'unknown_procedure'
  | 'reserved' | 'forbidden' | 'too_large' | 'limit' | 'timeout' | 'disconnected'
  | 'handler_error' | 'unsupported' | 'recovery_unavailable' | (string & {});

/** An error with a protocol error code. A listener may throw one to choose its error reply's code. */
export class ZapError extends Error {
  constructor(code: ErrorCode, message?: string);
  readonly name: 'ZapError';
  code: ErrorCode;
}

/** A room member: its session id and the public data the server publishes for it. */
export interface Member<D = any> {
  id: string;
  data: D;
}

/** Presence (`joined` / `left` events). */
export interface Presence<D = any> {
  room: string;
  member: Member<D>;
}

/** What comes with every received event. */
export interface EventMeta {
  event: string;
  /** Room messages only: the server's epoch and the message's offset in each room. */
  epoch?: string;
  rooms?: Record<string, number>;
}

export interface CloseInfo {
  code: number;
  reason: string;
  /** Whether the client is about to reconnect (PROTOCOL.md "Close codes"). */
  willReconnect: boolean;
}

export interface ReconnectInfo<D = any> {
  /** Attempts it took. */
  attempt: number;
  /** true: `$resume` succeeded and the missed messages were replayed before this event. */
  recovered: boolean;
  /** How many messages were replayed. */
  replayed: number;
  /** When not recovered: the rooms rejoined, with their members now. Resync what you show. */
  members: Record<string, Member<D>[]>;
}

export interface Limits {
  max_message: number;
  max_rooms: number;
  ack_timeout_ms: number;
  [limit: string]: number;
}

/** The client's own events. */
export interface LocalEvents<D = any> {
  /** Connected and `$hello` received (again after each reconnection, after rejoin/resume). */
  connect: (info: { session: string; recovered: boolean }) => void;
  /** An attempt to connect failed (closed before `$hello`). */
  connect_error: (info: CloseInfo) => void;
  /** A connection that was up ended. */
  disconnect: (info: CloseInfo) => void;
  /** `$error` from the server, a malformed message, a listener that threw, a failed rejoin. */
  error: (error: ZapError) => void;
  /** Someone joined a room this socket is in (not sent for this socket's own join). */
  joined: (presence: Presence<D>, meta: EventMeta) => void;
  /** Someone left a room this socket is in (or disconnected). */
  left: (presence: Presence<D>, meta: EventMeta) => void;
  /** The next attempt starts in `delay` ms. */
  reconnecting: (info: { attempt: number; delay: number }) => void;
  /** Connected again (after `connect`). */
  reconnect: (info: ReconnectInfo<D>) => void;
  /** Gave up (a close code that says so, or `reconnectionAttempts` reached). */
  reconnect_failed: (info: CloseInfo) => void;
  /**
   * Messages of these rooms were lost for this socket and cannot be replayed (the
   * server's history started over under a new epoch, or a gap left its window): fetch
   * their state again, as after a `connect` with `recovered: false`. The connection stays.
   */
  resync: (info: { rooms: string[]; epoch: string | null }) => void;
}

export type SocketState = 'connecting' | 'connected' | 'reconnecting' | 'disconnected';

/** The WebSocket constructor the client uses (the browser's, Node 22's, or `ws`'s). */
export interface WebSocketConstructor {
  new (url: string, protocols?: string | string[], options?: any): any;
}

export interface ConnectOptions {
  /** Default: `globalThis.WebSocket`. In Node 20: `(await import('ws')).WebSocket`. */
  WebSocket?: WebSocketConstructor;
  /** A third argument to the constructor (`ws`'s options: headers, agent...). Node only. */
  wsOptions?: object;
  /** Query parameters added to the URL; a function is called before each attempt. */
  query?: Record<string, string | number | boolean | null | undefined> | (() => Record<string, string | number | boolean | null | undefined>);
  /** Connect at once. Default true; else call `open()`. */
  autoConnect?: boolean;
  /** Default timeout of `emitWithAck`, `call`, `join`... in ms. Default: the server's `ack_timeout_ms` (10 s). */
  ackTimeout?: number;
  /** Time to open a connection and get `$hello`, in ms. Default 20000. */
  timeout?: number;
  /** Requests pending at once (past it: `limit`). Default 1024. */
  maxPending?: number;
  /** Envelopes buffered while not connected (past it the new one is refused: `limit`). Default 1000. */
  maxBuffered?: number;
  /** Reconnect after an unwanted close. Default true. */
  reconnection?: boolean;
  /** Attempts before giving up. Default Infinity. */
  reconnectionAttempts?: number;
  /** First backoff delay in ms, doubled per attempt. Default 500. */
  reconnectionDelay?: number;
  /** Backoff cap in ms. Default 10000. */
  reconnectionDelayMax?: number;
  /** Up to this fraction of each delay is taken off at random. Default 0.5. */
  jitter?: number;
  /** Send `$resume` after a reconnection. Default true. */
  recovery?: boolean;
  /** Silence (no message received) in ms before the client sends `$ping`. Default 25000; 0: no heartbeat. */
  pingInterval?: number;
  /** After a `$ping`, no message at all within this many ms: the connection is dropped and the client reconnects. Default 20000. */
  pingTimeout?: number;
}

export interface AckOptions {
  /** In ms; 0 or Infinity: none. Default: `ackTimeout`. */
  timeout?: number;
}

type ListenerResult<R> = R | Promise<R> | void | Promise<void>;

export class Socket<A extends ApiShape = AnyApi> {
  constructor(url?: string, options?: ConnectOptions);
  readonly opts: ConnectOptions & { url?: string };
  state: SocketState;
  readonly connected: boolean;
  /** Session id (from `$hello`; kept when a session is resumed). */
  session: string | null;
  /** The server's history epoch. */
  readonly epoch: string | null;
  /** The server node this connection is on (from `$hello`; null before it, or from a server that does not say). */
  readonly node: string | null;
  /** The rooms joined (and rejoined after a reconnection). */
  readonly rooms: string[];
  /** `{room: offset}`: the highest offset seen in each room. */
  readonly offsets: Record<string, number>;
  limits: Limits;
  /** The subprotocol the server selected: `'zap.v2'` (byte arrays go as binary frames), `'zap.v1'` (as arrays of numbers). */
  protocol: string | undefined;

  open(): this;
  /** Closes for good; no reconnection. */
  close(code?: number, reason?: string): this;
  /** Resolves when connected; rejects if the socket closes for good first. */
  ready(): Promise<void>;

  on<K extends LocalEventName>(event: K, listener: LocalEvents<MemberOf<A>>[K]): this;
  /** An application event; when the server asks for an ack, the first listener's result (awaited) is the reply, a throw an error reply. */
  on<K extends AppEventName<ServerEventsOf<A>>>(
    event: K,
    listener: (data: ServerEventsOf<A>[K], meta: EventMeta) => ListenerResult<unknown>,
  ): this;
  once<K extends LocalEventName>(event: K, listener: LocalEvents<MemberOf<A>>[K]): this;
  once<K extends AppEventName<ServerEventsOf<A>>>(
    event: K,
    listener: (data: ServerEventsOf<A>[K], meta: EventMeta) => ListenerResult<unknown>,
  ): this;
  off(event?: string, listener?: (...args: any[]) => any): this;
  listeners(event: string): Array<(...args: any[]) => any>;

  /**
   * A catch-all listener (socket.io's `onAny`): every application event the server sends,
   * before the event's own listeners. It only listens: replies come from the event's own listener.
   */
  onAny(listener: (event: string, data: unknown, meta: EventMeta) => unknown): this;
  /** Like `onAny`, first among the catch-all listeners. */
  prependAny(listener: (event: string, data: unknown, meta: EventMeta) => unknown): this;
  /** Removes one catch-all listener, or all of them. */
  offAny(listener?: (...args: any[]) => any): this;
  listenersAny(): Array<(...args: any[]) => any>;

  /** Fire and forget. true: sent or buffered; false: closed, or the buffer is full. Throws for a bad name. */
  emit<K extends AppEventName<ClientEventsOf<A>>>(event: K, ...data: DataArgs<Sendable<DataOf<ClientEventsOf<A>[K]>>>): boolean;
  /** Resolves with the server's ack data; rejects with a ZapError. */
  emitWithAck<K extends AppEventName<ClientEventsOf<A>>>(
    event: K,
    data: Sendable<DataOf<ClientEventsOf<A>[K]>>,
    options?: AckOptions,
  ): Promise<ReplyOf<ClientEventsOf<A>[K]>>;
  /** Calls a procedure: resolves with its output; rejects with a ZapError. */
  call<K extends Extract<keyof ProceduresOf<A>, string>>(
    procedure: K,
    input: Sendable<InputOf<ProceduresOf<A>[K]>>,
    options?: AckOptions,
  ): Promise<OutputOf<ProceduresOf<A>[K]>>;

  /** Joins a room: resolves with its members, this socket included. */
  join(room: string, options?: AckOptions): Promise<Member<MemberOf<A>>[]>;
  leave(room: string, options?: AckOptions): Promise<void>;
  members(room: string, options?: AckOptions): Promise<Member<MemberOf<A>>[]>;
  /** Cuts the connection as a network failure would; reconnection follows. For tests and demos. */
  simulateDrop(): this;
}

/** Opens a connection. In a browser `url` may be relative (default `/ws`). */
export function connect<A extends ApiShape = AnyApi>(url?: string, options?: ConnectOptions): Socket<A>;
export function connect<A extends ApiShape = AnyApi>(options: ConnectOptions & { url?: string }): Socket<A>;
export default connect;

// ---- lower level, exported for tests and other transports -------------------------------

/** The newest protocol version the client speaks (it speaks 1 too). */
export const PROTOCOL_VERSION: 2;
/** The version 1 subprotocol (the client offers `SUBPROTOCOLS`). */
export const SUBPROTOCOL: 'zap.v1';
/** The subprotocols the client offers, the preferred first. */
export const SUBPROTOCOLS: readonly ['zap.v2', 'zap.v1'];
/** The first byte of a version 2 binary frame. */
export const BINARY_FORMAT: 0x02;
/** The most byte arrays one message may carry. */
export const MAX_ATTACHMENTS: 64;
export const DEFAULT_LIMITS: Readonly<Limits>;
export const LOCAL_EVENTS: readonly LocalEventName[];

export type Envelope =
  | { kind: 'event'; event: string; data: unknown; ack?: number; epoch?: string; rooms?: Record<string, number> }
  | { kind: 'reply'; id: number; data: unknown }
  | { kind: 'error'; id: number; error: ZapError };

/** Parses a server's text frame; throws a ZapError `bad_json` or `bad_envelope`. */
export function parseEnvelope(text: string): Envelope;
/**
 * Parses a server's binary frame (version 2): placeholders become Uint8Array views on it.
 * Throws a ZapError `unsupported` (another format), `bad_envelope` or `bad_json`.
 */
export function parseFrame(frame: ArrayBufferLike | ArrayBufferView): Envelope;
/** An envelope to send: its JSON (byte arrays as `{"$bin": I}`) and the byte arrays. Throws `bad_payload` or `limit`. */
export function encodeEnvelope(envelope: object): { text: string; parts: Uint8Array[] };
/**
 * The frame of an encoded envelope for a connection of `version` (default 2): a string,
 * or a binary frame on version 2 when it has parts (on version 1 they become arrays of
 * numbers). Throws a ZapError `too_large` when over `max` bytes.
 */
export function frameOf(message: { text: string; parts: Uint8Array[] }, version?: number, max?: number): string | Uint8Array;
/** Whether a value is sent as bytes (an ArrayBuffer or a view on one). */
export function isBytes(value: unknown): value is BytesInput;
/** Why a name is not usable (`bad_envelope`, `reserved`), or null. */
export function nameProblem(name: unknown, what?: string): ZapError | null;
/** Is the UTF-8 encoding of `text` over `limit` bytes? */
export function utf8Over(text: string, limit: number): boolean;
export function buildUrl(url: string | undefined, query?: ConnectOptions['query']): string;
/** Whether a close code means "reconnect" (PROTOCOL.md "Close codes"). */
export function shouldReconnect(code: number): boolean;
export function backoffDelay(
  attempt: number,
  options?: { delay?: number; maxDelay?: number; jitter?: number; random?: () => number },
): number;

/** Pending requests: ids, promises, timeouts. */
export class Requests {
  constructor(options?: { max?: number });
  readonly size: number;
  open(timeoutMs: number, label?: string): { id: number; promise: Promise<any> };
  has(id: number): boolean;
  markSent(id: number): void;
  resolve(id: number, data: unknown): boolean;
  fail(id: number, error: Error): boolean;
  failSent(error: Error): void;
  failAll(error: Error): void;
}

/** Epoch and per-room offsets; drops duplicates. */
export class Offsets {
  epoch: string | null;
  rooms: Map<string, number>;
  reset(epoch?: string | null): void;
  observe(epoch: string | undefined, rooms: Record<string, number>, tracked?: (room: string) => boolean): boolean;
  forget(room: string): void;
  /** `$resync`: forgets `rooms` under the same epoch; under another, starts over under it. */
  resync(epoch: string | null, rooms: string[]): void;
  snapshot(keep?: (room: string) => boolean): Record<string, number>;
}
