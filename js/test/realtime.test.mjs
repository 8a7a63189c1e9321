// The JS client against a real `zap serve` (its /ws endpoint, PROTOCOL.md including
// "zap serve's built-in chat"): events, acks both ways, procedures, rooms, presence, errors.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { connect, ZapError } from '../zapsocket.js';
import { startServer, WebSocket, next, until, collect, sleep } from '../testing/server.mjs';

let server;
const sockets = [];
/** A connected client (closed after the suite). */
async function client(query, opts = {}) {
  const socket = connect(server.wsUrl, { WebSocket, query, ...opts });
  sockets.push(socket);
  await socket.ready();
  return socket;
}
/** A raw `ws` connection and the envelopes it receives, for what the client never sends. */
async function raw() {
  const ws = new WebSocket(server.wsUrl, ['zap.v1']);
  const received = [];
  ws.on('message', (data) => received.push(JSON.parse(data.toString())));
  await new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
  });
  await until(() => received.length > 0, 5000, '$hello');
  return { ws, received };
}

before(async () => {
  server = await startServer();
});
after(async () => {
  for (const s of sockets) s.close();
  await server?.stop();
});

test('connect: $hello gives session, epoch and limits; subprotocol zap.v2; states', async () => {
  const socket = connect(server.wsUrl, { WebSocket });
  sockets.push(socket);
  assert.equal(socket.state, 'connecting');
  const info = await next(socket, 'connect');
  assert.equal(socket.state, 'connected');
  assert.equal(socket.connected, true);
  assert.equal(socket.protocol, 'zap.v2');
  assert.equal(typeof socket.session, 'string');
  assert.equal(info.session, socket.session);
  assert.equal(info.recovered, false);
  assert.equal(typeof socket.epoch, 'string');
  for (const k of ['max_message', 'max_rooms', 'ack_timeout_ms']) assert.equal(typeof socket.limits[k], 'number', k);
  const bye = next(socket, 'disconnect');
  socket.close();
  assert.equal(socket.state, 'disconnected');
  assert.deepEqual(await bye, { code: 1000, reason: 'closed by the client', willReconnect: false });
});

test('emits made while connecting are buffered and sent in order', async () => {
  const socket = connect(server.wsUrl, { WebSocket });
  sockets.push(socket);
  const echoes = collect(socket, 'echo');
  assert.equal(socket.emit('echo', 1), true);
  assert.equal(socket.emit('echo', 2), true);
  const three = socket.emitWithAck('echo', 3);
  assert.equal(socket.state, 'connecting');
  assert.equal(await three, 3);
  await until(() => echoes.length === 2, 5000, 'two echoes');
  assert.deepEqual(echoes, [1, 2]);
});

test('emitWithAck: the reply carries the data; emit: a private room message with epoch and offset', async () => {
  const socket = await client();
  const data = { nested: [1, 'two', { three: null }], text: 'héllo ✓' };
  assert.deepEqual(await socket.emitWithAck('echo', data), data);
  const got = next(socket, 'echo');
  socket.emit('echo', { n: 1 });
  const [payload, meta] = await got;
  assert.deepEqual(payload, { n: 1 });
  assert.equal(meta.event, 'echo');
  assert.equal(meta.epoch, socket.epoch);
  const room = `$s:${socket.session}`;
  assert.ok(Number.isInteger(meta.rooms[room]), `offset in ${room}: ${JSON.stringify(meta.rooms)}`);
  assert.equal(socket.offsets[room], meta.rooms[room]);
  const again = next(socket, 'echo');
  socket.emit('echo', { n: 2 });
  const [, meta2] = await again;
  assert.equal(meta2.rooms[room], meta.rooms[room] + 1, 'offsets count up by one');
});

test('call: results, bad_payload, unknown_procedure, handler_error', async () => {
  const socket = await client();
  assert.equal(await socket.call('add', { a: 2, b: 3 }), 5);
  assert.equal(await socket.call('add', { a: 0.5, b: -2 }), -1.5);
  await assert.rejects(socket.call('add', { a: 'two', b: 3 }), (e) => e instanceof ZapError && e.code === 'bad_payload' && e.message.length > 0);
  await assert.rejects(socket.call('add'), { code: 'bad_payload' });
  await assert.rejects(socket.call('nope', {}), { code: 'unknown_procedure' });
  await assert.rejects(socket.call('fail', { message: 'it broke' }), { code: 'handler_error', message: 'it broke' });
  const calls = await Promise.all(Array.from({ length: 50 }, (_, i) => socket.call('add', { a: i, b: i })));
  assert.deepEqual(calls, Array.from({ length: 50 }, (_, i) => 2 * i), 'replies matched to their requests');
});

test('a local timeout rejects with code timeout; the late reply is ignored', async () => {
  const socket = await client();
  // The reply comes after 600 ms: a rejection with `timeout` means the local timer won.
  await assert.rejects(socket.call('sleep', { ms: 600 }, { timeout: 100 }), { code: 'timeout' });
  await sleep(700); // the late reply arrives now and finds nothing
  assert.equal(await socket.call('add', { a: 1, b: 1 }), 2);
  assert.equal(await socket.call('sleep', { ms: 50 }, { timeout: 2000 }), null);
});

test('unknown events: an error reply when asked for an ack, else an $error event', async () => {
  const socket = await client();
  await assert.rejects(socket.emitWithAck('nope', 1), { code: 'unknown_event' });
  const error = next(socket, 'error');
  socket.emit('nope_either', 1);
  const e = await error;
  assert.ok(e instanceof ZapError);
  assert.equal(e.code, 'unknown_event');
});

test('server-initiated acks: a listener result (or promise) is the reply; a throw, an error reply', async () => {
  const socket = await client();
  socket.on('question', (data) => ({ answer: data.n * 2 }));
  assert.deepEqual(await socket.emitWithAck('ask', { event: 'question', data: { n: 21 } }), { answer: 42 });
  socket.on('slow_question', async (data) => {
    await sleep(50);
    return `later ${data}`;
  });
  assert.equal(await socket.emitWithAck('ask', { event: 'slow_question', data: 'x' }), 'later x');
  socket.on('bad_question', () => {
    throw new Error('no answer');
  });
  await assert.rejects(socket.emitWithAck('ask', { event: 'bad_question', data: null }), { code: 'handler_error', message: 'no answer' });
  socket.on('refused', async () => {
    throw new ZapError('forbidden', 'not you');
  });
  await assert.rejects(socket.emitWithAck('ask', { event: 'refused' }), { code: 'forbidden', message: 'not you' });
  await assert.rejects(socket.emitWithAck('ask', { event: 'nobody_listens' }), { code: 'unknown_event' });
  socket.on('never', () => new Promise(() => {}));
  await assert.rejects(socket.emitWithAck('ask', { event: 'never', timeout_ms: 200 }), { code: 'timeout' });
});

test('onAny sees every application event first, never $ or local ones; offAny removes it', async () => {
  const socket = await client();
  const seen = [];
  const order = [];
  const any = (event, data, meta) => {
    seen.push([event, data, meta.event]);
    order.push('any');
  };
  socket.onAny(any);
  socket.prependAny((event) => order.push(`first ${event}`));
  socket.on('echo', () => order.push('echo'));
  assert.equal(socket.listenersAny().length, 2);
  const echoed = next(socket, 'echo');
  socket.emit('echo', { n: 1 });
  await echoed;
  assert.deepEqual(seen, [['echo', { n: 1 }, 'echo']]);
  assert.deepEqual(order, ['first echo', 'any', 'echo'], 'catch-all listeners first, in order');
  // A server request: seen by onAny, answered by the event's own listener only.
  socket.on('question', (data) => data * 2);
  assert.equal(await socket.emitWithAck('ask', { event: 'question', data: 21 }), 42);
  await assert.rejects(socket.emitWithAck('ask', { event: 'no_listener', data: 1, timeout_ms: 2000 }), { code: 'unknown_event' });
  assert.deepEqual(seen.slice(1).map(([e, d]) => [e, d]), [['question', 21], ['no_listener', 1]]);
  // Presence ($joined) and errors are not application events.
  await socket.join('any-room');
  const error = next(socket, 'error');
  socket.emit('nope', 1);
  await error;
  assert.equal(seen.length, 3, JSON.stringify(seen));
  socket.offAny(any);
  assert.equal(socket.listenersAny().length, 1);
  socket.offAny();
  assert.equal(socket.listenersAny().length, 0);
  const again = next(socket, 'echo');
  socket.emit('echo', 2);
  await again;
  assert.equal(seen.length, 3, 'removed listeners hear nothing');
});

test('rooms: join returns members; presence; chat reaches exactly the room; leave and close', async () => {
  const ada = await client({ name: 'ada' });
  const bob = await client({ name: 'bob' });
  const eve = await client({ name: 'eve' });
  const room = `lobby-${Date.now()}`;
  const adaMembers = await ada.join(room);
  assert.deepEqual(adaMembers, [{ id: ada.session, data: { name: 'ada' } }]);
  assert.deepEqual(ada.rooms, [room]);

  const joined = next(ada, 'joined');
  const bobMembers = await bob.join(room);
  assert.deepEqual(bobMembers.map((m) => m.data.name).sort(), ['ada', 'bob']);
  const [presence, meta] = await joined;
  assert.deepEqual(presence, { room, member: { id: bob.session, data: { name: 'bob' } } });
  assert.ok(Number.isInteger(meta.rooms[room]), 'presence is a room message');
  assert.deepEqual((await eve.members(room)).map((m) => m.id).sort(), [ada.session, bob.session].sort());

  const adaChat = collect(ada, 'chat');
  const bobChat = collect(bob, 'chat');
  const eveChat = collect(eve, 'chat');
  assert.deepEqual(await bob.emitWithAck('chat', { text: 'hi' }), { rooms: [room] });
  await until(() => adaChat.length === 1 && bobChat.length === 1, 5000, 'chat delivered');
  assert.deepEqual(adaChat[0], { from: 'bob', text: 'hi', room });
  assert.deepEqual(bobChat[0], adaChat[0], 'the sender gets its message too');
  await assert.rejects(eve.emitWithAck('chat', { text: 'not in a room' }), { code: 'forbidden' });
  await assert.rejects(eve.emitWithAck('chat', { text: 'x', room }), { code: 'forbidden' });
  await assert.rejects(bob.emitWithAck('chat', { text: '' }), { code: 'bad_payload' });
  assert.equal(eveChat.length, 0, 'eve is in no room');

  const left = next(ada, 'left');
  await bob.leave(room);
  assert.deepEqual(bob.rooms, []);
  assert.deepEqual(await left, [{ room, member: { id: bob.session, data: { name: 'bob' } } }, (await left)[1]]);
  await eve.join(room);
  const gone = next(ada, 'left');
  eve.close();
  assert.equal((await gone)[0].member.id, eve.session, 'a disconnect is a leave');
  assert.deepEqual((await ada.members(room)).map((m) => m.data.name), ['ada']);
});

test('several rooms: a socket in two rooms gets each room message once, with that room', async () => {
  const a = await client({ name: 'a' });
  const b = await client({ name: 'b' });
  const red = `red-${Date.now()}`;
  const blue = `blue-${Date.now()}`;
  await a.join(red);
  await a.join(blue);
  await b.join(blue);
  const aChat = collect(a, 'chat');
  const bChat = collect(b, 'chat');
  assert.deepEqual((await a.emitWithAck('chat', { text: 'to both' })).rooms.sort(), [blue, red].sort());
  assert.deepEqual(await a.emitWithAck('chat', { text: 'red only', room: red }), { rooms: [red] });
  await b.emitWithAck('chat', { text: 'from b' });
  await until(() => aChat.length === 4 && bChat.length === 2, 5000, 'deliveries');
  await sleep(50);
  assert.deepEqual(
    aChat.map((m) => `${m.room}:${m.text}`).sort(),
    [`${blue}:to both`, `${red}:to both`, `${red}:red only`, `${blue}:from b`].sort(),
  );
  assert.deepEqual(bChat.map((m) => `${m.room}:${m.text}`), [`${blue}:to both`, `${blue}:from b`]);
  assert.ok(a.offsets[red] >= 2 && a.offsets[blue] >= 2, JSON.stringify(a.offsets));
});

test('names: the name query parameter, set_name, guest names', async () => {
  const guest = await client();
  const room = `names-${Date.now()}`;
  const [me] = await guest.join(room);
  assert.match(me.data.name, /^guest-/);
  assert.deepEqual(await guest.emitWithAck('set_name', { name: 'grace' }), { name: 'grace' });
  await assert.rejects(guest.emitWithAck('set_name', { name: '' }), { code: 'bad_payload' });
  await assert.rejects(guest.emitWithAck('set_name', { name: 'x'.repeat(33) }), { code: 'bad_payload' });
  const chat = next(guest, 'chat');
  guest.emit('chat', { text: 'named' });
  assert.equal((await chat)[0].from, 'grace');
  const fancy = await client({ name: 'Zoë ✓' });
  assert.equal((await fancy.join(room)).find((m) => m.id === fancy.session).data.name, 'Zoë ✓');
});

test('limits: an envelope over max_message is refused locally with too_large', async () => {
  const socket = await client();
  const big = 'x'.repeat(socket.limits.max_message);
  await assert.rejects(socket.emitWithAck('echo', big), { code: 'too_large' });
  await assert.rejects(socket.call('add', { a: 1, b: 2, pad: big }), { code: 'too_large' });
  const error = next(socket, 'error');
  assert.equal(socket.emit('echo', big), false);
  assert.equal((await error).code, 'too_large');
  assert.equal(await socket.call('add', { a: 1, b: 2 }), 3, 'still connected');
});

test('malformed input from a raw peer: bad_json, bad_envelope, reserved, unsupported, too_large', async () => {
  const { ws, received } = await raw();
  assert.equal(received[0].event, '$hello');
  assert.equal(received[0].data.version, 1);
  const max = received[0].data.limits.max_message;
  const expect = async (send, check, what) => {
    const from = received.length;
    send();
    await until(() => received.length > from, 5000, what);
    check(received[from]);
  };
  await expect(() => ws.send('{not json'), (m) => assert.equal(m.data.code, 'bad_json'), 'bad_json');
  await expect(() => ws.send('[1]'), (m) => assert.equal(m.data.code, 'bad_json'), 'bad_json (array)');
  await expect(() => ws.send('{"event":"echo","call":"add","ack":1}'), (m) => assert.deepEqual([m.reply, m.error?.code], [1, 'bad_envelope']), 'both');
  await expect(() => ws.send('{"event":"echo","ack":1.5}'), (m) => assert.equal(m.data?.code ?? m.error?.code, 'bad_envelope'), 'ack');
  await expect(() => ws.send('{"event":"$hello","data":{},"ack":2}'), (m) => assert.deepEqual([m.reply, m.error?.code], [2, 'reserved']), 'reserved');
  await expect(() => ws.send(Buffer.from([1, 2, 3]), { binary: true }), (m) => assert.equal(m.data.code, 'unsupported'), 'binary');
  await expect(() => ws.send(JSON.stringify({ event: 'echo', data: 'y'.repeat(max), ack: 3 })),
    (m) => assert.equal(m.error?.code ?? m.data?.code, 'too_large'), 'too_large');
  ws.close();
});
