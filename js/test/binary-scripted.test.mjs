// Version 2 (byte arrays as binary frames) in the Socket, against a scripted server (the
// `ws` package's WebSocketServer) that selects zap.v2 or zap.v1: what goes on the wire
// each way, the v1 fallback (arrays of numbers), server requests answered with bytes, the
// offline buffer, malformed frames and the local limits. js/test/binary.test.mjs runs the
// same against a real `zap serve`.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { WebSocket, WebSocketServer } from 'ws';
import { connect, frameOf, encodeEnvelope, ZapError } from '../zapsocket.js';

const LIMITS = { max_message: 1048576, max_rooms: 100, ack_timeout_ms: 10000 };

/**
 * A server that selects `protocol` from what the client offers, sends `$hello` with
 * `version`, and records every frame it gets in `received` as `{binary, json, attachments}`
 * (binary frames split by hand). `sendText(obj)` and `sendBinary(bytes)` send on the
 * newest connection.
 */
async function scripted({ protocol = 'zap.v2', version = 2, limits = LIMITS, hello = true } = {}) {
  const server = { offered: null, received: [], sendText: null, sendBinary: null, connections: 0, sayHello: null };
  const wss = new WebSocketServer({
    port: 0,
    host: '127.0.0.1',
    handleProtocols: (offered) => {
      server.offered = [...offered];
      return offered.has(protocol) ? protocol : false;
    },
  });
  await new Promise((r) => wss.once('listening', r));
  server.url = `ws://127.0.0.1:${wss.address().port}/ws`;
  server.close = () => new Promise((r) => {
    for (const ws of wss.clients) ws.terminate();
    wss.close(r);
  });
  wss.on('connection', (ws) => {
    server.connections++;
    server.sendText = (msg) => ws.send(JSON.stringify(msg));
    server.sendBinary = (bytes) => ws.send(bytes, { binary: true });
    ws.on('message', (data, isBinary) => {
      const msg = isBinary ? { binary: true, ...split(data) } : { binary: false, json: JSON.parse(String(data)) };
      server.received.push(msg);
      if (msg.json.event === '$join') server.sendText({ reply: msg.json.ack, data: { room: msg.json.data.room, members: [], count: 0 } });
    });
    server.sayHello = () => server.sendText({ event: '$hello', data: { version, session: 's-1', epoch: 'e1', node: 'n-1', limits } });
    if (hello) server.sayHello();
  });
  return server;
}

/** A binary frame's JSON and attachments (plain arrays of numbers). */
function split(buf) {
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  assert.equal(buf[0], 2, 'format byte 0x02');
  const n = view.getUint32(1);
  const json = JSON.parse(buf.subarray(5, 5 + n).toString('utf8'));
  const attachments = [];
  for (let at = 5 + n; at < buf.length;) {
    const len = view.getUint32(at);
    attachments.push([...buf.subarray(at + 4, at + 4 + len)]);
    at += 4 + len;
  }
  return { json, attachments };
}

/** The frame a server would send: the client's own encoder makes the same format. */
const serverFrame = (envelope) => frameOf(encodeEnvelope(envelope), 2);
const settle = () => new Promise((r) => setTimeout(r, 50));
const next = (socket, event) => new Promise((resolve) => socket.once(event, (...args) => resolve(args)));
const until = async (predicate, what) => {
  for (let i = 0; i < 200 && !predicate(); i++) await settle();
  assert.ok(predicate(), `timed out waiting for ${what}`);
};

test('v2: offers zap.v2 then zap.v1; bytes go as one binary frame, the rest as text', { timeout: 10000 }, async () => {
  const server = await scripted();
  const socket = connect(server.url, { WebSocket, pingInterval: 0 });
  try {
    await socket.ready();
    assert.deepEqual(server.offered, ['zap.v2', 'zap.v1']);
    assert.equal(socket.protocol, 'zap.v2');
    socket.emit('plain', { n: 1 });
    socket.emit('upload', { file: { name: 'a', bytes: Uint8Array.of(1, 2, 3) }, more: [Buffer.from('hi'), new ArrayBuffer(2)] });
    socket.emit('top', Uint8Array.of(7));
    await until(() => server.received.length === 3, 'three frames');
    const [plain, upload, top] = server.received;
    assert.deepEqual(plain, { binary: false, json: { event: 'plain', data: { n: 1 } } });
    assert.equal(upload.binary, true);
    assert.deepEqual(upload.json, { event: 'upload', data: { file: { name: 'a', bytes: { $bin: 0 } }, more: [{ $bin: 1 }, { $bin: 2 }] } });
    assert.deepEqual(upload.attachments, [[1, 2, 3], [0x68, 0x69], [0, 0]]);
    assert.deepEqual(top, { binary: true, json: { event: 'top', data: { $bin: 0 } }, attachments: [[7]] });
  } finally {
    socket.close();
    await server.close();
  }
});

test('v2: binary frames from the server: events (room offsets), replies, requests answered with bytes', { timeout: 10000 }, async () => {
  const server = await scripted();
  const socket = connect(server.url, { WebSocket, pingInterval: 0 });
  try {
    await socket.ready();
    await socket.join('lobby');
    // A room event carrying bytes: a Uint8Array view, and the offsets move as for text.
    const got = next(socket, 'file');
    server.sendBinary(serverFrame({ event: 'file', data: { name: 'x', bytes: Uint8Array.of(5, 6) }, epoch: 'e1', rooms: { lobby: 3 } }));
    const [data, meta] = await got;
    assert.ok(data.bytes instanceof Uint8Array);
    assert.deepEqual([...data.bytes], [5, 6]);
    assert.ok(data.bytes.buffer instanceof ArrayBuffer && data.bytes.buffer.byteLength > 2, 'a view on the whole frame');
    assert.deepEqual(meta, { event: 'file', epoch: 'e1', rooms: { lobby: 3 } });
    assert.equal(socket.offsets.lobby, 3);
    // A duplicate (same offsets) is dropped, as for text.
    let dups = 0;
    socket.on('file', () => dups++);
    server.sendBinary(serverFrame({ event: 'file', data: Uint8Array.of(1), epoch: 'e1', rooms: { lobby: 3 } }));
    // A reply with bytes resolves a request.
    const asked = socket.emitWithAck('get', null);
    await until(() => server.received.some((m) => m.json.event === 'get'), 'the request');
    const ack = server.received.find((m) => m.json.event === 'get').json.ack;
    server.sendBinary(serverFrame({ reply: ack, data: [Uint8Array.of(1), { b: Uint8Array.of(2) }] }));
    const reply = await asked;
    assert.deepEqual([[...reply[0]], [...reply[1].b]], [[1], [2]]);
    assert.equal(dups, 0, 'the duplicate was dropped');
    // A server request: the listener's bytes go back as a binary reply.
    socket.on('question', (q) => ({ echoed: q, more: new Uint16Array([1]) }));
    const from = server.received.length;
    server.sendBinary(serverFrame({ event: 'question', data: Uint8Array.of(4, 2), ack: 9 }));
    await until(() => server.received.length > from, 'the reply');
    assert.deepEqual(server.received[from], {
      binary: true,
      json: { reply: 9, data: { echoed: { $bin: 0 }, more: { $bin: 1 } } },
      attachments: [[4, 2], [...new Uint8Array(new Uint16Array([1]).buffer)]],
    });
  } finally {
    socket.close();
    await server.close();
  }
});

test('v2: a malformed binary frame is an error event, as a malformed text one; the connection stays', { timeout: 10000 }, async () => {
  const server = await scripted();
  const socket = connect(server.url, { WebSocket, pingInterval: 0 });
  try {
    await socket.ready();
    const errors = [];
    socket.on('error', (e) => errors.push(e));
    server.sendText('{nope'); // sendText stringifies: a JSON string, not an envelope
    server.sendBinary(Uint8Array.of(1, 0, 0, 0, 0)); // another format
    const twice = serverFrame({ event: 'x', data: Uint8Array.of(1) });
    server.sendBinary(Buffer.concat([twice, Buffer.from([0, 0])])); // trailing bytes
    await until(() => errors.length === 3, 'three errors');
    assert.ok(errors.every((e) => e instanceof ZapError));
    assert.deepEqual(errors.map((e) => e.code), ['bad_json', 'unsupported', 'bad_envelope']);
    assert.equal(socket.state, 'connected');
  } finally {
    socket.close();
    await server.close();
  }
});

test('v1: the server selects zap.v1: bytes go as arrays of numbers, in text frames', { timeout: 10000 }, async () => {
  const server = await scripted({ protocol: 'zap.v1', version: 1 });
  const socket = connect(server.url, { WebSocket, pingInterval: 0 });
  try {
    await socket.ready();
    assert.equal(socket.protocol, 'zap.v1');
    socket.emit('upload', { file: { name: 'a', bytes: Uint8Array.of(1, 2, 3) }, more: [Buffer.from([255]), new DataView(new ArrayBuffer(1))] });
    socket.on('question', () => Uint8Array.of(9, 8));
    server.sendText({ event: 'question', data: null, ack: 4 });
    await until(() => server.received.length === 2, 'two frames');
    assert.deepEqual(server.received[0], { binary: false, json: { event: 'upload', data: { file: { name: 'a', bytes: [1, 2, 3] }, more: [[255], [0]] } } });
    assert.deepEqual(server.received[1], { binary: false, json: { reply: 4, data: [9, 8] } });
  } finally {
    socket.close();
    await server.close();
  }
});

test('offline buffer: bytes emitted before $hello are copied, then framed for the version the server chose', { timeout: 10000 }, async () => {
  for (const [protocol, version] of [['zap.v2', 2], ['zap.v1', 1]]) {
    const server = await scripted({ protocol, version, hello: false });
    const socket = connect(server.url, { WebSocket, pingInterval: 0 });
    try {
      const bytes = Uint8Array.of(1, 2, 3);
      assert.equal(socket.emit('early', { bytes }), true);
      const acked = socket.emitWithAck('early_ack', [bytes, 'x']);
      bytes[0] = 99; // after the emit: not what was sent
      await until(() => server.sayHello !== null, 'the connection');
      server.sayHello();
      await until(() => server.received.length === 2, 'the buffered frames');
      const [a, b] = server.received;
      if (version === 2) {
        assert.deepEqual(a, { binary: true, json: { event: 'early', data: { bytes: { $bin: 0 } } }, attachments: [[1, 2, 3]] });
        assert.deepEqual(b.attachments, [[1, 2, 3]]);
        assert.deepEqual(b.json.data, [{ $bin: 0 }, 'x']);
      } else {
        assert.deepEqual(a, { binary: false, json: { event: 'early', data: { bytes: [1, 2, 3] } } });
        assert.deepEqual(b.json.data, [[1, 2, 3], 'x']);
      }
      server.sendText({ reply: b.json.ack, data: 'ok' });
      assert.equal(await acked, 'ok');
    } finally {
      socket.close();
      await server.close();
    }
  }
});

test('limits: over 64 byte arrays or over max_message (the whole frame) is refused locally, nothing sent', { timeout: 10000 }, async () => {
  const limits = { ...LIMITS, max_message: 1000 };
  const server = await scripted({ limits });
  const socket = connect(server.url, { WebSocket, pingInterval: 0 });
  try {
    await socket.ready();
    const many = Array.from({ length: 65 }, () => Uint8Array.of(1));
    await assert.rejects(socket.emitWithAck('x', many), { code: 'limit' });
    await assert.rejects(socket.call('p', { many }), { code: 'limit' });
    const error = next(socket, 'error');
    assert.equal(socket.emit('x', many), false);
    assert.equal((await error)[0].code, 'limit');
    // 1000 bytes in all: 5 of header, the JSON, 4 of length, the attachment.
    const json = '{"event":"x","data":{"$bin":0}}';
    assert.equal(socket.emit('x', new Uint8Array(1000 - 5 - json.length - 4)), true);
    await assert.rejects(socket.emitWithAck('x', new Uint8Array(1000 - 5 - json.length - 4)), { code: 'too_large' });
    assert.equal(socket.emit('x', new Uint8Array(1000 - 5 - json.length - 3)), false);
    await until(() => server.received.length === 1, 'the one that fits');
    await settle();
    assert.equal(server.received.length, 1);
    assert.equal(server.received[0].attachments[0].length, 1000 - 5 - json.length - 4);
    // A server request answered with too much: an error reply instead.
    socket.on('question', () => new Uint8Array(2000));
    server.sendText({ event: 'question', data: null, ack: 5 });
    await until(() => server.received.length === 2, 'the error reply');
    assert.deepEqual(server.received[1].json, { reply: 5, error: { code: 'too_large', message: 'envelope over max_message (1000 bytes)' } });
  } finally {
    socket.close();
    await server.close();
  }
});
