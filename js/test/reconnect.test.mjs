// Issue 6 in the JS client, against a real `zap serve`: reconnection with backoff after a
// server restart (rejoin, presence), recovery of missed messages after a cut connection,
// the offline buffer (bound and order), and pending acks across a drop.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from '../zapsocket.js';
import { startServer, WebSocket, next, until, collect, sleep } from '../testing/server.mjs';

let server;
const sockets = [];
async function client(name, opts = {}) {
  const socket = connect(server.wsUrl, {
    WebSocket,
    query: { name },
    reconnectionDelay: 100,
    reconnectionDelayMax: 1000,
    ...opts,
  });
  sockets.push(socket);
  await socket.ready();
  return socket;
}
const names = (members) => members.map((m) => m.data.name).sort();

before(async () => {
  server = await startServer();
});
after(async () => {
  for (const s of sockets) s.close();
  await server?.stop();
});

test('a cut connection is recovered: exactly the missed messages, in order, then live ones', async () => {
  const ada = await client('ada');
  const bob = await client('bob', { reconnectionDelay: 400, reconnectionDelayMax: 400, jitter: 0 });
  const room = `recover-${Date.now()}`;
  await ada.join(room);
  await bob.join(room);
  const got = collect(bob, 'chat');
  await ada.emitWithAck('chat', { text: 'before 1' });
  await ada.emitWithAck('chat', { text: 'before 2' });
  await until(() => got.length === 2, 5000, 'messages before the cut');
  const session = bob.session;

  const states = collect(bob, 'reconnecting');
  const dropped = next(bob, 'disconnect');
  bob.simulateDrop();
  assert.equal((await dropped).willReconnect, true);
  assert.equal(bob.state, 'reconnecting');
  for (let i = 1; i <= 5; i++) await ada.emitWithAck('chat', { text: `missed ${i}` });
  const info = await next(bob, 'reconnect', 10000);
  assert.equal(states.length, 1);
  assert.equal(info.recovered, true, 'the session is resumed');
  // Those sent before bob was back are replayed, the rest arrive live: the sequence below
  // counts them all either way.
  assert.ok(Number.isInteger(info.replayed), `replayed ${info.replayed}`);
  assert.equal(bob.session, session, 'same session');
  assert.equal(bob.state, 'connected');
  await ada.emitWithAck('chat', { text: 'live' });
  await until(() => got.length === 8, 5000, 'all messages');
  await sleep(100);
  assert.deepEqual(got.map((m) => m.text), ['before 1', 'before 2', 'missed 1', 'missed 2', 'missed 3', 'missed 4', 'missed 5', 'live']);
  assert.deepEqual(names(await ada.members(room)), ['ada', 'bob'], 'bob is still a member');
});

test('recovery across several rooms: each missed message once, in send order', async () => {
  const ada = await client('ada');
  const bob = await client('bob', { reconnectionDelay: 400, reconnectionDelayMax: 400, jitter: 0 });
  const red = `red-${Date.now()}`;
  const blue = `blue-${Date.now()}`;
  for (const s of [ada, bob]) {
    await s.join(red);
    await s.join(blue);
  }
  const got = collect(bob, 'chat');
  const echoes = collect(bob, 'echo');
  bob.simulateDrop();
  const sent = [];
  for (let i = 0; i < 6; i++) {
    const room = i % 2 ? red : blue;
    await ada.emitWithAck('chat', { text: `m${i}`, room });
    sent.push(`${room}:m${i}`);
  }
  await ada.emitWithAck('chat', { text: 'both' }); // one message per room
  sent.push(`${red}:both`, `${blue}:both`);
  const info = await next(bob, 'reconnect', 10000);
  assert.equal(info.recovered, true);
  bob.emit('echo', 'private'); // its private room still works, with the resumed session
  await until(() => got.length === sent.length && echoes.length === 1, 5000, 'replay and echo');
  await sleep(100);
  const seen = got.map((m) => `${m.room}:${m.text}`);
  assert.deepEqual(seen.slice(0, 6), sent.slice(0, 6), 'in send order');
  assert.deepEqual(seen.slice(6).sort(), sent.slice(6).sort());
  assert.equal(new Set(seen).size, seen.length, 'no duplicates');
  assert.ok(bob.offsets[`$s:${bob.session}`] >= 1);
});

test('the offline buffer keeps order, refuses past its bound; acks in flight fail with disconnected', async () => {
  const ada = await client('ada', { maxBuffered: 3, reconnectionDelay: 300, reconnectionDelayMax: 300, jitter: 0 });
  const inFlight = ada.call('sleep', { ms: 2000 });
  await sleep(50);
  ada.simulateDrop();
  await assert.rejects(inFlight, { code: 'disconnected' });
  const echoes = collect(ada, 'echo');
  assert.equal(ada.emit('echo', 'first'), true);
  const second = ada.emitWithAck('echo', 'second');
  assert.equal(ada.emit('echo', 'third'), true);
  assert.equal(ada.emit('echo', 'fourth'), false, 'over the bound: refused');
  await assert.rejects(ada.emitWithAck('echo', 'fifth'), { code: 'limit' });
  assert.equal(await second, 'second');
  await until(() => echoes.length === 2, 5000, 'buffered emits');
  assert.deepEqual(echoes, ['first', 'third']);
  assert.equal(await ada.emitWithAck('echo', 'after'), 'after');
});

test('server restart on the same port: backoff while down, then reconnect and rejoin', async () => {
  const ada = await client('ada');
  const bob = await client('bob');
  const room = `restart-${Date.now()}`;
  await ada.join(room);
  await bob.join(room);
  const oldEpoch = ada.epoch;
  const adaDown = next(ada, 'disconnect');
  const bobDown = next(bob, 'disconnect');
  const attempts = collect(ada, 'reconnecting');
  await server.stop();
  assert.equal((await adaDown).willReconnect, true);
  await bobDown;
  await until(() => attempts.length >= 3, 10000, 'three attempts');
  assert.equal(ada.state, 'reconnecting');
  assert.deepEqual(attempts.slice(0, 3).map((a) => a.attempt), [1, 2, 3]);
  assert.ok(attempts[2].delay >= attempts[0].delay, JSON.stringify(attempts));
  assert.ok(attempts.every((a) => a.delay <= 1000), 'capped');

  const adaBack = next(ada, 'reconnect', 15000);
  const bobBack = next(bob, 'reconnect', 15000);
  await server.restart();
  const [a, b] = await Promise.all([adaBack, bobBack]);
  assert.equal(ada.state, 'connected');
  assert.equal(a.recovered, false, 'a restarted server has a new history');
  assert.notEqual(ada.epoch, oldEpoch);
  assert.deepEqual(ada.rooms, [room]);
  assert.deepEqual(b.members[room] && names(b.members[room]).includes('bob'), true);
  await until(async () => names(await ada.members(room)).join() === 'ada,bob', 5000, 'both rejoined');
  const got = collect(ada, 'chat');
  await bob.emitWithAck('chat', { text: 'after the restart' });
  await until(() => got.length === 1, 5000, 'chat after restart');
  assert.deepEqual(got[0], { from: 'bob', text: 'after the restart', room });
});

test('a deliberate close does not reconnect', async () => {
  const ada = await client('ada');
  const reconnecting = collect(ada, 'reconnecting');
  ada.close();
  await sleep(300);
  assert.equal(ada.state, 'disconnected');
  assert.equal(reconnecting.length, 0);
  assert.equal(ada.emit('echo', 1), false);
});

test('a server that goes silent without closing is found out by the heartbeat, then reconnected to', async () => {
  const silent = await startServer();
  try {
    const ada = connect(silent.wsUrl, {
      WebSocket,
      query: { name: 'ada' },
      pingInterval: 200,
      pingTimeout: 300,
      timeout: 1000,
      reconnectionDelay: 100,
      reconnectionDelayMax: 300,
    });
    sockets.push(ada);
    await ada.ready();
    // Idle but healthy: each $ping is answered, nothing drops.
    const drops = collect(ada, 'disconnect');
    await sleep(1000);
    assert.equal(drops.length, 0, 'answered $pings keep an idle connection');
    // The server stops answering anything without closing, as a dead network looks.
    silent.proc.kill('SIGSTOP');
    const info = await next(ada, 'disconnect', 3000);
    assert.equal(info.willReconnect, true);
    assert.match(info.reason, /\$ping/);
    assert.equal(ada.state, 'reconnecting');
    silent.proc.kill('SIGCONT');
    await next(ada, 'reconnect', 20000);
    assert.equal(ada.state, 'connected');
    assert.deepEqual(names(await ada.join(`heartbeat-${Date.now()}`)), ['ada'], 'the new connection serves requests');
  } finally {
    silent.proc.kill('SIGCONT');
    await silent.stop();
  }
});

