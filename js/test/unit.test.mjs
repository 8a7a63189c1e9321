// The pure parts of zapsocket.js, without a server: envelopes, binary frames (version 2),
// names, ack bookkeeping, offsets, the reconnection policy, URLs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  parseEnvelope, nameProblem, utf8Over, Requests, Offsets, shouldReconnect, backoffDelay, buildUrl,
  ZapError, connect, encodeEnvelope, frameOf, parseFrame, isBytes, SUBPROTOCOL, SUBPROTOCOLS,
  PROTOCOL_VERSION, BINARY_FORMAT, MAX_ATTACHMENTS,
} from '../zapsocket.js';

const code = (fn) => {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof ZapError, `a ZapError, not ${e}`);
    return e.code;
  }
  assert.fail('did not throw');
};

test('parseEnvelope: events, with ack and recovery fields', () => {
  assert.deepEqual(parseEnvelope('{"event":"chat","data":{"text":"hi"}}'), { kind: 'event', event: 'chat', data: { text: 'hi' } });
  assert.deepEqual(parseEnvelope('{"event":"x"}'), { kind: 'event', event: 'x', data: null });
  assert.deepEqual(parseEnvelope('{"event":"q","data":1,"ack":7}'), { kind: 'event', event: 'q', data: 1, ack: 7 });
  assert.deepEqual(parseEnvelope('{"event":"chat","data":2,"epoch":"e1","rooms":{"lobby":41,"games":7},"extra":true}'), {
    kind: 'event', event: 'chat', data: 2, epoch: 'e1', rooms: { lobby: 41, games: 7 },
  });
});

test('parseEnvelope: replies and error replies', () => {
  assert.deepEqual(parseEnvelope('{"reply":3,"data":5}'), { kind: 'reply', id: 3, data: 5 });
  assert.deepEqual(parseEnvelope('{"reply":3}'), { kind: 'reply', id: 3, data: null });
  const e = parseEnvelope('{"reply":4,"error":{"code":"bad_payload","message":"missing field `a`"}}');
  assert.equal(e.kind, 'error');
  assert.equal(e.id, 4);
  assert.equal(e.error.code, 'bad_payload');
  assert.equal(e.error.message, 'missing field `a`');
});

test('parseEnvelope: malformed input is bad_json or bad_envelope', () => {
  assert.equal(code(() => parseEnvelope('{nope')), 'bad_json');
  assert.equal(code(() => parseEnvelope('[1,2]')), 'bad_json');
  assert.equal(code(() => parseEnvelope('"text"')), 'bad_json');
  assert.equal(code(() => parseEnvelope('null')), 'bad_json');
  for (const bad of [
    '{}', '{"data":1}', '{"event":"a","reply":1}', '{"event":""}', '{"event":3}', '{"event":"a","ack":1.5}',
    '{"event":"a","ack":0}', '{"event":"a","ack":"1"}', '{"reply":-1}', '{"reply":9007199254740992}',
    '{"reply":1,"error":"boom"}', '{"call":"add","data":1,"ack":1}',
  ]) {
    assert.equal(code(() => parseEnvelope(bad)), 'bad_envelope', bad);
  }
});

test('names: length in bytes, reserved prefixes and local event names', () => {
  assert.equal(nameProblem('chat'), null);
  assert.equal(nameProblem('x'.repeat(128)), null);
  assert.equal(nameProblem('x'.repeat(129)).code, 'bad_envelope');
  assert.equal(nameProblem('é'.repeat(64)), null); // 128 bytes
  assert.equal(nameProblem('é'.repeat(65)).code, 'bad_envelope'); // 130 bytes
  assert.equal(nameProblem('').code, 'bad_envelope');
  assert.equal(nameProblem(5).code, 'bad_envelope');
  assert.equal(nameProblem('$join').code, 'reserved');
  assert.equal(nameProblem('connect').code, 'reserved');
  assert.equal(nameProblem('connect', 'room'), null);
  assert.equal(nameProblem('$all', 'room').code, 'reserved');
});

test('utf8Over counts bytes, not UTF-16 units', () => {
  assert.equal(utf8Over('abc', 3), false);
  assert.equal(utf8Over('abcd', 3), true);
  assert.equal(utf8Over('€', 3), false);
  assert.equal(utf8Over('€€', 5), true);
  assert.equal(utf8Over('😀', 4), false);
  assert.equal(utf8Over('😀', 3), true);
});

test('Requests: ids count up, replies settle once, late replies are ignored', async () => {
  const r = new Requests();
  const a = r.open(0, 'a');
  const b = r.open(0, 'b');
  assert.deepEqual([a.id, b.id], [1, 2]);
  assert.equal(r.size, 2);
  assert.equal(r.resolve(1, 'one'), true);
  assert.equal(r.resolve(1, 'again'), false);
  assert.equal(await a.promise, 'one');
  assert.equal(r.fail(2, new ZapError('forbidden', 'no')), true);
  await assert.rejects(b.promise, { code: 'forbidden', message: 'no' });
  assert.equal(r.size, 0);
  assert.equal(r.open(0).id, 3, 'ids are not reused');
});

test('Requests: a local timeout rejects with code timeout; the reply after it is ignored', async () => {
  const r = new Requests();
  const { id, promise } = r.open(20, "call 'slow'");
  const started = Date.now();
  await assert.rejects(promise, (e) => e.code === 'timeout' && /call 'slow'/.test(e.message));
  assert.ok(Date.now() - started >= 15);
  assert.equal(r.resolve(id, 'late'), false);
  assert.equal(r.size, 0);
});

test('Requests: the pending bound, failSent and failAll', async () => {
  const r = new Requests({ max: 2 });
  const a = r.open(0);
  const b = r.open(0);
  await assert.rejects(r.open(0).promise, { code: 'limit' });
  r.markSent(a.id);
  r.failSent(new ZapError('disconnected', 'gone'));
  await assert.rejects(a.promise, { code: 'disconnected' });
  assert.equal(r.has(b.id), true, 'an unsent request survives failSent');
  r.failAll(new ZapError('disconnected', 'closed'));
  await assert.rejects(b.promise, { code: 'disconnected' });
  assert.equal(r.size, 0);
});

test('Offsets: highest offset per room, duplicates dropped, epoch change starts over', () => {
  const o = new Offsets();
  o.reset('e1');
  assert.equal(o.observe('e1', { lobby: 1 }), true);
  assert.equal(o.observe('e1', { lobby: 2, games: 7 }), true);
  assert.equal(o.observe('e1', { lobby: 2 }), false, 'a replayed duplicate');
  assert.equal(o.observe('e1', { lobby: 1, games: 7 }), false);
  assert.equal(o.observe('e1', { lobby: 2, games: 8 }), true, 'new in one of its rooms');
  assert.deepEqual(o.snapshot(), { lobby: 2, games: 8 });
  assert.equal(o.observe('e1', { other: 5 }, (room) => room !== 'other'), true, 'untracked rooms are not recorded');
  assert.deepEqual(o.snapshot((room) => room === 'lobby'), { lobby: 2 });
  o.forget('lobby');
  assert.deepEqual(o.snapshot(), { games: 8 });
  assert.equal(o.observe('e2', { games: 1 }), true);
  assert.equal(o.epoch, 'e2');
  assert.deepEqual(o.snapshot(), { games: 1 });
});

test('reconnection policy follows PROTOCOL.md "Close codes"', () => {
  for (const c of [1001, 1006, 1011, 1012, 1013, 4100, 4999]) assert.equal(shouldReconnect(c), true, String(c));
  for (const c of [1000, 1008, 1009, 4000, 4099]) assert.equal(shouldReconnect(c), false, String(c));
});

test('backoff: exponential, capped, jitter only shortens', () => {
  const none = { delay: 100, maxDelay: 1000, jitter: 0.5, random: () => 0 };
  assert.deepEqual([1, 2, 3, 4, 5, 10, 100].map((n) => backoffDelay(n, none)), [100, 200, 400, 800, 1000, 1000, 1000]);
  const most = { ...none, random: () => 1 };
  assert.deepEqual([1, 2, 5].map((n) => backoffDelay(n, most)), [50, 100, 500]);
  for (let i = 0; i < 100; i++) {
    const d = backoffDelay(3, { delay: 100, maxDelay: 1000, jitter: 0.5 });
    assert.ok(d >= 200 && d <= 400, String(d));
  }
});

test('buildUrl: http to ws, query parameters, a function for query', () => {
  assert.equal(buildUrl('ws://h:1/ws'), 'ws://h:1/ws');
  assert.equal(buildUrl('http://h:1/ws', { name: 'ada lovelace', skip: undefined }), 'ws://h:1/ws?name=ada+lovelace');
  assert.equal(buildUrl('https://h/ws?x=1', () => ({ name: 'é' })), 'wss://h/ws?x=1&name=%C3%A9');
});

test('connect: needs a WebSocket constructor (none in Node 20 without a flag)', () => {
  const saved = globalThis.WebSocket;
  try {
    globalThis.WebSocket = undefined;
    assert.throws(() => connect('ws://127.0.0.1:9/ws', { autoConnect: false }), /pass one/);
  } finally {
    globalThis.WebSocket = saved;
  }
});

test('a socket that is not open refuses with disconnected, and emit checks names', async () => {
  class Never {}
  const socket = connect('ws://127.0.0.1:9/ws', { WebSocket: Never, autoConnect: false });
  assert.equal(socket.state, 'disconnected');
  assert.throws(() => socket.emit('$join', {}), { code: 'reserved' });
  assert.throws(() => socket.emit('disconnect', {}), { code: 'reserved' });
  assert.equal(socket.emit('chat', { text: 'hi' }), false);
  await assert.rejects(socket.call('add', { a: 1, b: 2 }), { code: 'disconnected' });
  await assert.rejects(socket.join('$all'), { code: 'reserved' });
  await assert.rejects(socket.ready(), { code: 'disconnected' });
});

// ---- version 2: binary frames ------------------------------------------------------------

/** A binary frame by hand: 0x02, u32 N, the JSON, then per attachment u32 L and its bytes. */
function frame(json, attachments = [], { format = BINARY_FORMAT, jsonLength } = {}) {
  const text = new TextEncoder().encode(typeof json === 'string' ? json : JSON.stringify(json));
  const parts = [Uint8Array.of(format), u32(jsonLength ?? text.length), text];
  for (const a of attachments) parts.push(u32(a.length), Uint8Array.from(a));
  return concat(parts);
}
const u32 = (n) => {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, n);
  return b;
};
const concat = (parts) => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
};
/** What a v2 frame made by the client holds: `{json, attachments}`. */
function split(bin) {
  assert.ok(bin instanceof Uint8Array, 'a binary frame');
  const view = new DataView(bin.buffer, bin.byteOffset, bin.byteLength);
  assert.equal(bin[0], 2, 'format byte');
  const n = view.getUint32(1);
  const json = JSON.parse(new TextDecoder().decode(bin.subarray(5, 5 + n)));
  const attachments = [];
  for (let at = 5 + n; at < bin.length;) {
    const len = view.getUint32(at);
    attachments.push([...bin.subarray(at + 4, at + 4 + len)]);
    at += 4 + len;
  }
  return { json, attachments };
}
const bytes = (...b) => Uint8Array.from(b);
const plain = (u8) => [...u8];

test('constants: v2 is offered first, SUBPROTOCOL stays zap.v1', () => {
  assert.deepEqual([...SUBPROTOCOLS], ['zap.v2', 'zap.v1']);
  assert.equal(SUBPROTOCOL, 'zap.v1');
  assert.equal(PROTOCOL_VERSION, 2);
  assert.equal(BINARY_FORMAT, 2);
  assert.equal(MAX_ATTACHMENTS, 64);
});

test('isBytes: ArrayBuffer and every view, not arrays or other objects', () => {
  for (const b of [new Uint8Array(1), Buffer.from('a'), new ArrayBuffer(2), new Int16Array(2), new Float64Array(1), new DataView(new ArrayBuffer(3)), new Uint8ClampedArray(1), new SharedArrayBuffer(1)]) {
    assert.equal(isBytes(b), true, Object.prototype.toString.call(b));
  }
  for (const v of [null, undefined, 1, 'abc', [1, 2], {}, { buffer: new ArrayBuffer(1) }, new Date(), new Map()]) assert.equal(isBytes(v), false, String(v));
});

test('encodeEnvelope: without byte arrays, the text frame of version 1 (placeholder lookalikes are data)', () => {
  const env = { event: 'chat', data: { text: 'hi', n: [1, 2], $bin: 0 } };
  assert.deepEqual(encodeEnvelope(env), { text: JSON.stringify(env), parts: [] });
  const lookalike = { event: 'x', data: { $bin: 0 } };
  assert.deepEqual(encodeEnvelope(lookalike), { text: '{"event":"x","data":{"$bin":0}}', parts: [] });
  assert.equal(frameOf(encodeEnvelope(lookalike), 2), '{"event":"x","data":{"$bin":0}}', 'a text frame, as in v1');
});

test('binary round trip: top-level bytes, frame layout byte by byte', () => {
  const msg = encodeEnvelope({ event: 'echo', data: bytes(1, 2, 3), ack: 7 });
  assert.equal(msg.text, '{"event":"echo","data":{"$bin":0},"ack":7}');
  assert.deepEqual(msg.parts.map(plain), [[1, 2, 3]]);
  const bin = frameOf(msg, 2);
  const json = '{"event":"echo","data":{"$bin":0},"ack":7}';
  assert.deepEqual(plain(bin), plain(frame(json, [[1, 2, 3]])));
  assert.equal(bin.length, 1 + 4 + json.length + 4 + 3);
  // What the server would send back: the same shape as a reply.
  const env = parseFrame(frame({ reply: 7, data: { $bin: 0 } }, [[1, 2, 3]]).buffer);
  assert.equal(env.kind, 'reply');
  assert.ok(env.data instanceof Uint8Array);
  assert.deepEqual(plain(env.data), [1, 2, 3]);
});

test('binary round trip: nested in objects and arrays, in order, other data untouched', () => {
  const data = {
    file: { name: 'a.bin', bytes: bytes(9, 8) },
    list: [bytes(), 'text', [bytes(255)], { deep: { er: bytes(0, 1) } }],
    n: 1.5,
    none: null,
  };
  const msg = encodeEnvelope({ event: 'upload', data });
  assert.equal(msg.parts.length, 4);
  const { json, attachments } = split(frameOf(msg, 2));
  assert.deepEqual(json.data, {
    file: { name: 'a.bin', bytes: { $bin: 0 } },
    list: [{ $bin: 1 }, 'text', [{ $bin: 2 }], { deep: { er: { $bin: 3 } } }],
    n: 1.5,
    none: null,
  });
  assert.deepEqual(attachments, [[9, 8], [], [255], [0, 1]]);
  assert.equal(data.file.bytes instanceof Uint8Array, true, 'the caller\'s data is not changed');
  // And back: the client reads its own frame as a server's (an event).
  const env = parseFrame(frameOf(msg, 2));
  assert.equal(env.event, 'upload');
  assert.deepEqual(env.data.file.name, 'a.bin');
  assert.deepEqual(plain(env.data.file.bytes), [9, 8]);
  assert.deepEqual(plain(env.data.list[0]), []);
  assert.deepEqual(plain(env.data.list[2][0]), [255]);
  assert.deepEqual(plain(env.data.list[3].deep.er), [0, 1]);
  assert.equal(env.data.list[1], 'text');
});

test('encodeEnvelope: Buffer, ArrayBuffer, other typed arrays and DataView send their bytes', () => {
  const backing = new Uint8Array([0, 1, 2, 3, 4, 5, 6, 7]).buffer;
  const data = [
    Buffer.from('hé'), // 68 c3 a9; a Buffer's toJSON is not used
    backing,
    new Uint8Array(backing, 2, 3), // a view with an offset: only its bytes
    new Uint16Array([0x0102]), // its memory, in the platform's byte order
    new DataView(backing, 6, 2),
  ];
  const { json, attachments } = split(frameOf(encodeEnvelope({ event: 'x', data }), 2));
  assert.deepEqual(json.data, [0, 1, 2, 3, 4].map((i) => ({ $bin: i })));
  assert.deepEqual(attachments[0], [0x68, 0xc3, 0xa9]);
  assert.deepEqual(attachments[1], [0, 1, 2, 3, 4, 5, 6, 7]);
  assert.deepEqual(attachments[2], [2, 3, 4]);
  assert.deepEqual(attachments[3], plain(new Uint8Array(new Uint16Array([0x0102]).buffer)));
  assert.deepEqual(attachments[4], [6, 7]);
});

test('encodeEnvelope: bytes inside class instances are not walked; cycles are bad_payload', () => {
  class Holder {
    constructor() {
      this.bytes = bytes(1);
    }
  }
  const msg = encodeEnvelope({ event: 'x', data: { h: new Holder(), d: new Date(0) } });
  assert.deepEqual(msg.parts, []);
  assert.deepEqual(JSON.parse(msg.text).data, { h: { bytes: { 0: 1 } }, d: '1970-01-01T00:00:00.000Z' });
  const cyclic = { b: bytes(1) };
  cyclic.self = cyclic;
  assert.throws(() => encodeEnvelope({ event: 'x', data: cyclic }), { code: 'bad_payload' });
  const nullProto = Object.assign(Object.create(null), { b: bytes(5) });
  assert.equal(encodeEnvelope({ event: 'x', data: nullProto }).parts.length, 1, 'null-prototype objects are plain');
});

test('encodeEnvelope: at most 64 byte arrays; a placeholder lookalike next to bytes is refused', () => {
  assert.equal(encodeEnvelope({ event: 'x', data: Array.from({ length: 64 }, () => bytes(1)) }).parts.length, 64);
  const many = Array.from({ length: 65 }, () => bytes(1));
  assert.throws(() => encodeEnvelope({ event: 'x', data: many }), (e) => e.code === 'limit' && /65 byte arrays.*at most 64/.test(e.message));
  assert.throws(() => encodeEnvelope({ event: 'x', data: [{ $bin: 0 }, bytes(1)] }), { code: 'bad_payload' });
  assert.equal(encodeEnvelope({ event: 'x', data: [{ $bin: 0, other: 1 }, bytes(1)] }).parts.length, 1);
});

test('frameOf on version 1: byte arrays become arrays of numbers, in a text frame', () => {
  const msg = encodeEnvelope({ event: 'echo', data: { a: bytes(1, 2), b: [new ArrayBuffer(2), 'x'], c: bytes(), s: '{"$bin":0}' }, ack: 1 });
  const text = frameOf(msg, 1);
  assert.equal(typeof text, 'string');
  assert.deepEqual(JSON.parse(text), { event: 'echo', data: { a: [1, 2], b: [[0, 0], 'x'], c: [], s: '{"$bin":0}' }, ack: 1 });
  const top = frameOf(encodeEnvelope({ reply: 3, data: Buffer.from([7, 255]) }), 1);
  assert.equal(top, '{"reply":3,"data":[7,255]}');
});

test('frameOf: max_message counts the whole frame (header, JSON, 4 bytes per attachment)', () => {
  const msg = encodeEnvelope({ event: 'e', data: [bytes(1, 2, 3), bytes(4)] });
  const size = 1 + 4 + msg.text.length + 4 + 3 + 4 + 1;
  assert.equal(frameOf(msg, 2, size).length, size);
  assert.throws(() => frameOf(msg, 2, size - 1), { code: 'too_large' });
  const spelled = frameOf(msg, 1);
  assert.equal(frameOf(msg, 1, spelled.length), spelled);
  assert.throws(() => frameOf(msg, 1, spelled.length - 1), { code: 'too_large' });
  const big = encodeEnvelope({ event: 'e', data: new Uint8Array(300 * 1024).fill(255) });
  assert.ok(frameOf(big, 2, 1 << 20).length < 301 * 1024, '300 KiB fit in 1 MiB as binary');
  assert.throws(() => frameOf(big, 1, 1 << 20), { code: 'too_large' }, 'but not as numbers ("255," each)');
  assert.throws(() => frameOf(encodeEnvelope({ event: 'e', data: 'x'.repeat(10) }), 2, 5), { code: 'too_large' });
});

test('parseFrame: attachments are views on the received buffer (no copy)', () => {
  const bin = frame({ event: 'file', data: { name: 'n', parts: [{ $bin: 1 }, { $bin: 0 }] }, epoch: 'e1', rooms: { lobby: 4 } }, [[1, 2, 3], [4, 5]]);
  const buffer = bin.buffer;
  const env = parseFrame(buffer);
  assert.deepEqual({ ...env, data: undefined }, { kind: 'event', event: 'file', data: undefined, epoch: 'e1', rooms: { lobby: 4 } });
  const [a, b] = env.data.parts;
  assert.ok(a instanceof Uint8Array && b instanceof Uint8Array);
  assert.equal(a.buffer, buffer, 'a view on the frame');
  assert.equal(b.buffer, buffer);
  assert.deepEqual(plain(a), [4, 5], 'index 1 is the second attachment');
  assert.deepEqual(plain(b), [1, 2, 3]);
  new Uint8Array(buffer)[a.byteOffset] = 42;
  assert.equal(a[0], 42, 'same memory');
  // A view given (a Node Buffer), and a reply carrying bytes at the top level.
  const top = parseFrame(Buffer.from(frame({ reply: 2, data: { $bin: 0 } }, [[9]])));
  assert.deepEqual({ ...top, data: plain(top.data) }, { kind: 'reply', id: 2, data: [9] });
  assert.equal(Object.getPrototypeOf(top.data), Uint8Array.prototype, 'a Uint8Array, not a Buffer');
  // Zero attachments, an event with an ack, a placeholder-like object with more members.
  assert.deepEqual(parseFrame(frame({ event: 'q', data: { $bin: 0, x: 1 }, ack: 3 })), { kind: 'event', event: 'q', data: { $bin: 0, x: 1 }, ack: 3 });
  assert.deepEqual(parseFrame(frame({ event: 'q', data: 'é' })).data, 'é');
});

test('parseFrame: 64 attachments are fine, 65 are not', () => {
  const ok = frame({ event: 'x', data: Array.from({ length: 64 }, (_, i) => ({ $bin: i })) }, Array.from({ length: 64 }, (_, i) => [i]));
  assert.deepEqual(parseFrame(ok).data.map((u) => u[0]), Array.from({ length: 64 }, (_, i) => i));
  const bad = frame({ event: 'x', data: Array.from({ length: 65 }, (_, i) => ({ $bin: i })) }, Array.from({ length: 65 }, (_, i) => [i]));
  assert.throws(() => parseFrame(bad), (e) => e.code === 'bad_envelope' && /more than 64/.test(e.message));
});

test('parseFrame: every malformed frame is a ZapError (unsupported, bad_envelope or bad_json)', () => {
  const ev = (data) => ({ event: 'x', data });
  const cases = [
    ['empty', new Uint8Array(0), 'bad_envelope'],
    ['shorter than the header', Uint8Array.of(2, 0, 0), 'bad_envelope'],
    ['format byte 0x01', frame(ev(1), [], { format: 1 }), 'unsupported'],
    ['format byte 0x7b ("{")', new TextEncoder().encode('{"event":"x"}'), 'unsupported'],
    ['N past the end', frame(ev(1), [], { jsonLength: 1000 }), 'bad_envelope'],
    ['N too short: the rest reads as attachments past the end', frame(ev(1), [], { jsonLength: 5 }), 'bad_envelope'],
    ['trailing bytes (fewer than a length)', concat([frame(ev({ $bin: 0 }), [[1]]), Uint8Array.of(0, 0)]), 'bad_envelope'],
    ['attachment past the end', concat([frame(ev({ $bin: 0 }), []), u32(10), Uint8Array.of(1, 2)]), 'bad_envelope'],
    ['an attachment not referenced', frame(ev(null), [[1]]), 'bad_envelope'],
    ['one of two not referenced', frame(ev([{ $bin: 1 }]), [[1], [2]]), 'bad_envelope'],
    ['an index referenced twice', frame(ev([{ $bin: 0 }, { $bin: 0 }]), [[1]]), 'bad_envelope'],
    ['an index out of range', frame(ev({ $bin: 1 }), [[1]]), 'bad_envelope'],
    ['a placeholder without attachments', frame(ev({ $bin: 0 }), []), 'bad_envelope'],
    ['a negative index', frame(ev({ $bin: -1 }), [[1]]), 'bad_envelope'],
    ['a fractional index', frame(ev({ $bin: 0.5 }), [[1]]), 'bad_envelope'],
    ['a string index', frame(ev({ $bin: '0' }), [[1]]), 'bad_envelope'],
    ['not JSON', frame('{nope', []), 'bad_json'],
    ['not UTF-8', concat([Uint8Array.of(2), u32(3), Uint8Array.of(0xff, 0xfe, 0xfd)]), 'bad_json'],
    ['JSON not an object', frame('[1]', []), 'bad_json'],
    ['the envelope a placeholder', frame({ $bin: 0 }, [[1]]), 'bad_json'],
    ['not an envelope', frame({ data: { $bin: 0 } }, [[1]]), 'bad_envelope'],
  ];
  for (const [what, bin, expected] of cases) {
    assert.throws(() => parseFrame(bin.buffer.slice(bin.byteOffset, bin.byteOffset + bin.byteLength)), (e) => {
      assert.ok(e instanceof ZapError, `${what}: a ZapError, not ${e}`);
      assert.equal(e.code, expected, `${what}: ${e.message}`);
      return true;
    }, what);
  }
  assert.throws(() => parseFrame('text'), { code: 'unsupported' });
});

test('placeholders are read only in binary frames', () => {
  assert.deepEqual(parseEnvelope('{"event":"x","data":{"$bin":0}}').data, { $bin: 0 });
});
