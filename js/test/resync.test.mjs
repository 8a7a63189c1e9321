// Protocol revision 2 on the client, against a scripted server (the `ws` package's
// WebSocketServer): `node` from `$hello`, and `$resync` (messages of some rooms lost for
// good): the client forgets those rooms' offsets (all of them under a new epoch), takes the
// epoch, and tells the application with a local `resync` event.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { WebSocket, WebSocketServer } from 'ws';
import { connect, Offsets } from '../zapsocket.js';

/** A server that sends `$hello`, then whatever `script(send)` sends. */
async function scripted(script) {
  const wss = new WebSocketServer({ port: 0, host: '127.0.0.1', handleProtocols: () => 'zap.v1' });
  await new Promise((r) => wss.once('listening', r));
  wss.on('connection', (ws) => {
    const send = (msg) => ws.send(JSON.stringify(msg));
    send({ event: '$hello', data: { version: 1, session: 's-1', epoch: 'e1', node: 'n-7', limits: { max_message: 1048576, max_rooms: 100, ack_timeout_ms: 10000 } } });
    script(send, ws);
  });
  return { url: `ws://127.0.0.1:${wss.address().port}/ws`, close: () => new Promise((r) => wss.close(r)) };
}

const next = (socket, event) => new Promise((resolve) => socket.once(event, resolve));

test('the client knows its node, and a $resync forgets what it names', { timeout: 10000 }, async () => {
  let sendLater;
  const server = await scripted((send) => {
    send({ event: 'chat', data: 1, epoch: 'e1', rooms: { lobby: 4, $all: 9 } });
    send({ event: 'chat', data: 2, epoch: 'e1', rooms: { games: 2 } });
    sendLater = send;
  });
  const socket = connect(server.url, { WebSocket, pingInterval: 0 });
  try {
    await socket.ready();
    assert.equal(socket.node, 'n-7');
    await new Promise((r) => setTimeout(r, 50));
    // Only rooms it tracks count: $all and its own room, and rooms it joined.
    assert.deepEqual(socket.offsets, { $all: 9 });

    const same = next(socket, 'resync');
    sendLater({ event: '$resync', data: { rooms: ['$all'], epoch: 'e1' } });
    assert.deepEqual(await same, { rooms: ['$all'], epoch: 'e1' });
    assert.deepEqual(socket.offsets, {}, 'the room it names is forgotten');
    assert.equal(socket.epoch, 'e1');

    sendLater({ event: 'chat', data: 3, epoch: 'e1', rooms: { $all: 10 } });
    await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(socket.offsets, { $all: 10 });
    const newer = next(socket, 'resync');
    sendLater({ event: '$resync', data: { rooms: ['lobby'], epoch: 'e2' } });
    assert.deepEqual(await newer, { rooms: ['lobby'], epoch: 'e2' });
    assert.equal(socket.epoch, 'e2', 'a new epoch is taken');
    assert.deepEqual(socket.offsets, {}, 'under a new epoch, every offset is forgotten');
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
