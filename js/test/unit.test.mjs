// The pure parts of zapsocket.js, without a server: envelopes, names, ack bookkeeping,
// offsets, the reconnection policy, URLs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  parseEnvelope, nameProblem, utf8Over, Requests, Offsets, shouldReconnect, backoffDelay, buildUrl,
  ZapError, connect,
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
