// Version 2 (byte arrays as binary frames, PROTOCOL.md "Version 2: binary payloads")
// against a real `zap serve`: its `echo` returns what it got (the ack's reply, or an `echo`
// event), so bytes make the round trip through the server's decoder and encoder. Also: a
// raw peer offering only zap.v1 is served version 1, a raw v2 peer sees the frames byte by
// byte, the history replays a binary message, and a page in headless Chromium (the JS
// client of this folder, not the copy built into the binary) sends and gets bytes.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { connect } from '../zapsocket.js';
import { startServer, WebSocket, next, until } from '../testing/server.mjs';
import { launchBrowser } from '../testing/browser.mjs';

const JS = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

let server;
const sockets = [];
/** A connected client (closed after the suite). */
async function client(opts = {}) {
  const socket = connect(server.wsUrl, { WebSocket, ...opts });
  sockets.push(socket);
  await socket.ready();
  return socket;
}

before(async () => {
  server = await startServer();
});
after(async () => {
  for (const s of sockets) s.close();
  await server?.stop();
});

const u8 = (...b) => Uint8Array.from(b);
/** A Uint8Array (not a Buffer, not an array) with these bytes. */
function assertBytes(actual, expected, what = 'bytes') {
  assert.equal(Object.prototype.toString.call(actual), '[object Uint8Array]', `${what}: a Uint8Array, not ${Object.prototype.toString.call(actual)} ${JSON.stringify(actual)?.slice(0, 80)}`);
  assert.equal(actual.length, expected.length, `${what}: length`);
  assert.ok(Buffer.from(actual.buffer, actual.byteOffset, actual.byteLength).equals(Buffer.from(expected)), `${what}: content`);
}

// ---- raw peers: frames as they are on the wire ----------------------------------------------

/** A binary frame by hand: 0x02, u32 N, the JSON, then per attachment u32 length and bytes. */
function frame(json, attachments) {
  const text = Buffer.from(JSON.stringify(json));
  const head = Buffer.alloc(5);
  head[0] = 2;
  head.writeUInt32BE(text.length, 1);
  const parts = [head, text];
  for (const a of attachments) {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(a.length);
    parts.push(len, Buffer.from(a));
  }
  return Buffer.concat(parts);
}

/** A received frame: `{binary, json, attachments, raw}` (binary frames split by hand; throws on a bad one). */
function readFrame(data, isBinary) {
  if (!isBinary) return { binary: false, json: JSON.parse(data.toString()), raw: data.toString() };
  assert.equal(data[0], 2, `format byte of ${data.toString('hex').slice(0, 64)}`);
  const n = data.readUInt32BE(1);
  const json = JSON.parse(data.subarray(5, 5 + n).toString());
  const attachments = [];
  let at = 5 + n;
  while (at < data.length) {
    const len = data.readUInt32BE(at);
    attachments.push([...data.subarray(at + 4, at + 4 + len)]);
    at += 4 + len;
  }
  assert.equal(at, data.length, 'the attachments fill the frame');
  return { binary: true, json, attachments, raw: data.toString('hex') };
}

/** A raw `ws` peer offering `protocols`, with what it received (after `$hello`). */
async function raw(protocols, url = server.wsUrl) {
  const ws = new WebSocket(url, protocols);
  const received = [];
  ws.on('message', (data, isBinary) => received.push(readFrame(data, isBinary)));
  await new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
  });
  await until(() => received.length > 0, 5000, '$hello');
  const nextFrame = async (what) => {
    const from = received.length;
    await until(() => received.length > from, 5000, what);
    return received[from];
  };
  return { ws, received, hello: received[0].json.data, nextFrame };
}

test('negotiation: the client gets zap.v2 and $hello version 2', async () => {
  const socket = await client();
  assert.equal(socket.protocol, 'zap.v2');
  const { ws, hello } = await raw(['zap.v2', 'zap.v1']);
  assert.equal(ws.protocol, 'zap.v2');
  assert.equal(hello.version, 2);
  ws.close();
});

test('emitWithAck: a Uint8Array comes back as a Uint8Array with the same bytes', async () => {
  const socket = await client();
  const reply = await socket.emitWithAck('echo', u8(1, 2, 3));
  assertBytes(reply, [1, 2, 3]);
  assertBytes(await socket.emitWithAck('echo', new Uint8Array(0)), [], 'empty');
});

test('200 KiB nested in an object make the round trip (too large in version 1)', async () => {
  const socket = await client();
  const bytes = new Uint8Array(200 * 1024);
  for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 7 + 3) & 0xff;
  const reply = await socket.emitWithAck('echo', { file: { name: 'a', bytes } });
  assert.equal(reply.file.name, 'a');
  assertBytes(reply.file.bytes, bytes);
  assert.ok(JSON.stringify({ event: 'echo', data: { file: { name: 'a', bytes } } }).length > socket.limits.max_message, 'as JSON it would not fit');
});

test('several attachments in arrays and objects, with other data around them', async () => {
  const socket = await client();
  const data = { list: [u8(1), 'two', [u8(3, 3), { deep: u8(4, 4, 4) }], null, 5.5], last: u8(255, 0) };
  const reply = await socket.emitWithAck('echo', data);
  assertBytes(reply.list[0], [1], 'list[0]');
  assert.equal(reply.list[1], 'two');
  assertBytes(reply.list[2][0], [3, 3], 'list[2][0]');
  assertBytes(reply.list[2][1].deep, [4, 4, 4], 'deep');
  assert.deepEqual(reply.list.slice(3), [null, 5.5]);
  assertBytes(reply.last, [255, 0], 'last');
  const many = Array.from({ length: 64 }, (_, i) => u8(i));
  const back = await socket.emitWithAck('echo', many);
  back.forEach((b, i) => assertBytes(b, [i], `#${i}`));
  await assert.rejects(socket.emitWithAck('echo', [...many, u8(64)]), { code: 'limit' });
});

test('Buffer, ArrayBuffer and other views go as their bytes and come back as Uint8Arrays', async () => {
  const socket = await client();
  const ab = new Uint8Array([9, 8, 7]).buffer;
  const reply = await socket.emitWithAck('echo', {
    buffer: Buffer.from('héllo'),
    arrayBuffer: ab,
    view: new Uint8Array(ab, 1, 2),
    dataView: new DataView(ab, 2, 1),
  });
  assertBytes(reply.buffer, [...Buffer.from('héllo')], 'Buffer');
  assertBytes(reply.arrayBuffer, [9, 8, 7], 'ArrayBuffer');
  assertBytes(reply.view, [8, 7], 'offset view');
  assertBytes(reply.dataView, [7], 'DataView');
  assertBytes(await socket.emitWithAck('echo', Buffer.from([1, 2])), [1, 2], 'a top-level Buffer');
});

test('echo without an ack comes back as an echo event with the bytes, a room message', async () => {
  const socket = await client();
  const got = next(socket, 'echo');
  assert.equal(socket.emit('echo', { tag: 'no-ack', bytes: u8(4, 5, 6) }), true);
  const [data, meta] = await got;
  assert.equal(data.tag, 'no-ack');
  assertBytes(data.bytes, [4, 5, 6]);
  const room = `$s:${socket.session}`;
  assert.ok(Number.isInteger(meta.rooms?.[room]), `offset in ${room}: ${JSON.stringify(meta)}`);
  assert.equal(meta.epoch, socket.epoch);
  assert.equal(socket.offsets[room], meta.rooms[room]);
});

test('call: bytes in a procedure\'s input and output (the echo procedure; add ignores an extra member)', async () => {
  const socket = await client();
  const out = await socket.call('echo', { name: 'x', parts: [u8(1, 2), Buffer.from([3])] });
  assert.equal(out.name, 'x');
  assertBytes(out.parts[0], [1, 2], 'parts[0]');
  assertBytes(out.parts[1], [3], 'parts[1]');
  assertBytes(await socket.call('echo', u8(9)), [9], 'top level');
  assert.equal(await socket.call('add', { a: 2, b: 3, pad: u8(1, 2, 3) }), 5);
});

test('the server asks (ask): bytes go to the client, its reply with bytes goes back', async () => {
  const socket = await client();
  let got;
  socket.on('question', (data) => {
    got = data;
    return { answer: u8(42, 43), len: data.bytes.length };
  });
  const reply = await socket.emitWithAck('ask', { event: 'question', data: { bytes: u8(7, 7, 7) } });
  assertBytes(got?.bytes, [7, 7, 7], 'the request\'s bytes');
  assertBytes(reply.answer, [42, 43], 'the reply\'s bytes');
  assert.equal(reply.len, 3);
});

test('limits: max_message counts the whole frame; a larger one is refused locally', async () => {
  const socket = await client();
  const max = socket.limits.max_message;
  await assert.rejects(socket.emitWithAck('echo', new Uint8Array(max)), { code: 'too_large' });
  // Just under: the JSON of {"event":"echo","data":{"$bin":0},"ack":N} and 9 bytes of framing.
  const fits = new Uint8Array(max - 100);
  assertBytes(await socket.emitWithAck('echo', fits), fits, 'max_message - 100 bytes');
});

test('a v1 socket (offering only zap.v1) sends bytes as arrays of numbers and gets them back so', async () => {
  class V1 extends WebSocket {
    constructor(url, _protocols, opts) {
      super(url, ['zap.v1'], opts);
    }
  }
  const socket = await client({ WebSocket: V1 });
  assert.equal(socket.protocol, 'zap.v1');
  assert.deepEqual(await socket.emitWithAck('echo', { bytes: u8(1, 2, 3) }), { bytes: [1, 2, 3] });
});

test('raw peer offering only zap.v1: version 1, text frames', async () => {
  const { ws, hello, nextFrame } = await raw(['zap.v1']);
  assert.equal(ws.protocol, 'zap.v1');
  assert.equal(hello.version, 1);
  ws.send('{"event":"echo","data":[1,2],"ack":1}');
  const reply = await nextFrame('the reply');
  assert.equal(reply.binary, false, `a text frame: ${reply.raw}`);
  assert.deepEqual(reply.json, { reply: 1, data: [1, 2] });
  ws.send(frame({ event: 'echo', data: { $bin: 0 }, ack: 2 }, [[1]]));
  const refused = await nextFrame('the answer to a binary frame');
  assert.equal(refused.binary, false);
  assert.equal(refused.json.error?.code ?? refused.json.data?.code, 'unsupported', JSON.stringify(refused.json));
  ws.close();
});

test('raw v2 peer: the frames byte by byte; malformed binary frames get bad_envelope', async () => {
  const { ws, nextFrame } = await raw(['zap.v2']);
  ws.send(frame({ event: 'echo', data: { a: { $bin: 1 }, b: [{ $bin: 0 }] }, ack: 1 }, [[1, 2], [3]]));
  const reply = await nextFrame('the reply');
  assert.equal(reply.binary, true, `a binary frame: ${reply.raw}`);
  assert.equal(reply.json.reply, 1);
  const byIndex = (p) => reply.attachments[p.$bin];
  assert.deepEqual([byIndex(reply.json.data.a), byIndex(reply.json.data.b[0])], [[3], [1, 2]]);
  ws.send('{"event":"echo","data":{"$bin":0},"ack":2}');
  const text = await nextFrame('the text reply');
  assert.deepEqual([text.binary, text.json], [false, { reply: 2, data: { $bin: 0 } }], 'in a text frame a placeholder is data');
  const bad = [
    ['not referenced', frame({ event: 'echo', data: null, ack: 3 }, [[1]])],
    ['referenced twice', frame({ event: 'echo', data: [{ $bin: 0 }, { $bin: 0 }], ack: 4 }, [[1]])],
    ['index out of range', frame({ event: 'echo', data: { $bin: 1 }, ack: 5 }, [[1]])],
    ['trailing bytes', Buffer.concat([frame({ event: 'echo', data: { $bin: 0 }, ack: 6 }, [[1]]), Buffer.from([0])])],
  ];
  for (const [what, bytes] of bad) {
    ws.send(bytes);
    const answer = await nextFrame(what);
    const code = answer.json.error?.code ?? answer.json.data?.code;
    // PROTOCOL.md: bad_envelope; lengths that do not add up may also read as too_large.
    const expected = what === 'trailing bytes' ? ['bad_envelope', 'too_large'] : ['bad_envelope'];
    assert.ok(expected.includes(code), `${what}: ${JSON.stringify(answer.json)}`);
  }
  ws.close();
});

test('history: a binary room message is replayed as a binary frame after $resume', async () => {
  const first = await raw(['zap.v2']);
  const { session, epoch } = first.hello;
  first.ws.send(frame({ event: 'echo', data: { bytes: { $bin: 0 } } }, [[10, 20, 30]]));
  const live = await first.nextFrame('the echo event');
  assert.equal(live.binary, true, `a binary frame: ${live.raw}`);
  const room = `$s:${session}`;
  const offset = live.json.rooms?.[room];
  assert.ok(Number.isInteger(offset), JSON.stringify(live.json));
  first.ws.close();
  await new Promise((r) => first.ws.once('close', r));

  const second = await raw(['zap.v2']);
  second.ws.send(JSON.stringify({ event: '$resume', data: { session, epoch, offsets: { [room]: offset - 1 } }, ack: 1 }));
  await until(() => second.received.some((m) => m.json.reply === 1), 10000, 'the $resume reply');
  const resumed = second.received.find((m) => m.json.reply === 1).json;
  assert.equal(resumed.data?.recovered, true, JSON.stringify(resumed));
  const replayed = second.received.find((m) => m.json.event === 'echo');
  assert.ok(replayed, `replayed: ${JSON.stringify(second.received.map((m) => m.json))}`);
  assert.equal(replayed.binary, true);
  assert.deepEqual(replayed.json.rooms?.[room], offset);
  assert.deepEqual(replayed.attachments[replayed.json.data.bytes.$bin], [10, 20, 30]);
  second.ws.close();
});

test('browser: a page sends and gets back bytes (headless Chromium)', async () => {
  const browser = await launchBrowser();
  try {
    const page = await browser.newPage();
    // This folder's client, not the copy built into the zap binary.
    await page.route(/\/zapsocket(\/[a-z]+)?\.js$/, async (route) => {
      const file = path.join(JS, new URL(route.request().url()).pathname);
      await route.fulfill({ body: await readFile(file, 'utf8'), contentType: 'text/javascript' });
    });
    const errors = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(server.url + '/');
    const result = await page.evaluate(async () => {
      const { connect } = await import('/zapsocket.js');
      const socket = connect('/ws');
      await socket.ready();
      const sent = new Uint8Array(300);
      for (let i = 0; i < sent.length; i++) sent[i] = i & 0xff;
      const reply = await socket.emitWithAck('echo', { bytes: sent, name: 'from the page' });
      const fromBuffer = await socket.emitWithAck('echo', { bytes: new Uint8Array([5, 4]).buffer });
      socket.close();
      return {
        protocol: socket.protocol,
        isUint8Array: reply.bytes instanceof Uint8Array,
        bytes: Array.from(reply.bytes),
        name: reply.name,
        isView: reply.bytes.buffer.byteLength > reply.bytes.byteLength,
        fromBuffer: fromBuffer.bytes instanceof Uint8Array ? Array.from(fromBuffer.bytes) : fromBuffer.bytes,
      };
    });
    assert.deepEqual(result, {
      protocol: 'zap.v2',
      isUint8Array: true,
      bytes: Array.from({ length: 300 }, (_, i) => i & 0xff),
      name: 'from the page',
      isView: true,
      fromBuffer: [5, 4],
    });
    assert.deepEqual(errors, []);
  } finally {
    await browser.close();
  }
});
