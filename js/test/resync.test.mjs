// Protocol revision 2 on the client, against a scripted server (the `ws` package's
// WebSocketServer): `node` from `$hello`, and `$resync` (messages of some rooms lost for
// good): the client forgets those rooms' offsets (all of them under a new epoch), takes the
// epoch, and tells the application with a local `resync` event.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { WebSocket, WebSocketServer } from 'ws';
import { connect, Offsets } from '../zapsocket.js';

const LIMITS = { max_message: 1048576, max_rooms: 100, ack_timeout_ms: 10000 };

/**
 * A server that sends `$hello` (node `n-1` on the first connection, `n-2` on the next...),
 * answers `$join` and `$resume` (recovered) and records what the client sent in
 * `received`. `send(msg)` sends on the newest connection.
 */
async function scripted() {
  const wss = new WebSocketServer({ port: 0, host: '127.0.0.1', handleProtocols: () => 'zap.v1' });
  await new Promise((r) => wss.once('listening', r));
  const server = {
    url: `ws://127.0.0.1:${wss.address().port}/ws`,
    received: [],
    send: null,
    close: () => new Promise((r) => {
      for (const ws of wss.clients) ws.terminate();
      wss.close(r);
    }),
  };
  let connections = 0;
  wss.on('connection', (ws) => {
    const send = (msg) => ws.send(JSON.stringify(msg));
    server.send = send;
    ws.on('message', (text) => {
      const msg = JSON.parse(String(text));
      server.received.push(msg);
      if (msg.event === '$join') send({ reply: msg.ack, data: { room: msg.data.room, members: [], count: 0 } });
      if (msg.event === '$resume') send({ reply: msg.ack, data: { recovered: true, replayed: 0 } });
    });
    send({ event: '$hello', data: { version: 1, session: 's-1', epoch: 'e1', node: `n-${++connections}`, limits: LIMITS } });
  });
  return server;
}

const next = (socket, event) => new Promise((resolve) => socket.once(event, resolve));
const settle = () => new Promise((r) => setTimeout(r, 50)); // frames sent before it have arrived

test('the client knows its node, and a $resync forgets what it names', { timeout: 10000 }, async () => {
  const server = await scripted();
  const socket = connect(server.url, { WebSocket, pingInterval: 0 });
  try {
    await socket.ready();
    assert.equal(socket.node, 'n-1');
    await socket.join('lobby');
    await socket.join('games');
    server.send({ event: 'chat', data: 1, epoch: 'e1', rooms: { lobby: 4, $all: 9 } });
    server.send({ event: 'chat', data: 2, epoch: 'e1', rooms: { games: 2, other: 5 } });
    await settle();
    // Only rooms it tracks count: $all and its own room, and rooms it joined.
    assert.deepEqual(socket.offsets, { lobby: 4, $all: 9, games: 2 });

    const same = next(socket, 'resync');
    server.send({ event: '$resync', data: { rooms: ['lobby', '$all'], epoch: 'e1' } });
    assert.deepEqual(await same, { rooms: ['lobby', '$all'], epoch: 'e1' });
    assert.deepEqual(socket.offsets, { games: 2 }, 'the rooms it names are forgotten, the others kept');
    assert.equal(socket.epoch, 'e1');

    server.send({ event: 'chat', data: 3, epoch: 'e1', rooms: { $all: 10 } });
    await settle();
    assert.deepEqual(socket.offsets, { games: 2, $all: 10 });
    const newer = next(socket, 'resync');
    server.send({ event: '$resync', data: { rooms: ['lobby'], epoch: 'e2' } });
    assert.deepEqual(await newer, { rooms: ['lobby'], epoch: 'e2' });
    assert.equal(socket.epoch, 'e2', 'a new epoch is taken');
    assert.deepEqual(socket.offsets, {}, 'under a new epoch, every offset is forgotten');
    assert.deepEqual(socket.rooms, ['lobby', 'games'], 'a resync leaves the rooms joined');
  } finally {
    socket.close();
    await server.close();
  }
});

test('after a $resync, $resume claims no forgotten offset and no old epoch; node follows the connection', { timeout: 10000 }, async () => {
  const server = await scripted();
  const socket = connect(server.url, { WebSocket, pingInterval: 0, reconnectionDelay: 10, jitter: 0 });
  /** Cuts the connection; resolves with the `$resume` data the client sent on the next one. */
  const reconnect = async () => {
    server.received.length = 0;
    const back = next(socket, 'reconnect');
    socket.simulateDrop();
    assert.equal((await back).recovered, true);
    return server.received.find((m) => m.event === '$resume')?.data;
  };
  try {
    await socket.ready();
    await socket.join('lobby');
    await socket.join('games');
    server.send({ event: 'chat', data: 1, epoch: 'e1', rooms: { lobby: 4, games: 2, $all: 9 } });
    server.send({ event: '$resync', data: { rooms: ['lobby'], epoch: 'e1' } });
    await settle();

    assert.deepEqual(await reconnect(), { session: 's-1', epoch: 'e1', offsets: { games: 2, $all: 9 } });
    assert.equal(socket.node, 'n-2', 'the node of the new connection');

    server.send({ event: '$resync', data: { rooms: ['games'], epoch: 'e2' } });
    await settle();
    assert.deepEqual(await reconnect(), { session: 's-1', epoch: 'e2', offsets: {} });
    assert.equal(socket.node, 'n-3');
  } finally {
    socket.close();
    await server.close();
  }
});

test('Offsets.resync: named rooms go under the same epoch, all under a new one', () => {
  const offsets = new Offsets();
  offsets.reset('e1');
  offsets.observe('e1', { a: 1, b: 2, c: 3 });
  offsets.resync('e1', ['a', 'c']);
  assert.deepEqual(offsets.snapshot(), { b: 2 });
  offsets.resync('e2', ['zzz']);
  assert.deepEqual(offsets.snapshot(), {});
  assert.equal(offsets.epoch, 'e2');
});
