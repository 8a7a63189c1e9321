#!/usr/bin/env node
// Scripted echo client on Node `ws`, a foreign peer for zapsocket's interop tests.
//
// Usage: node echo_client.mjs [--no-compression] URL
//
// Connects to URL (an echo server: text back as text, binary as binary) and runs,
// one step after another:
//   text     "hello"                              -> expects the same text back
//   binary   64 KiB (byte i = (i * 31 + 7) & 0xff) -> expects the same binary back
//   empty    ""                                   -> expects an empty text back
//   utf8     1 MiB of text with 1- to 4-byte UTF-8 characters -> same text back
//   ping     ping with payload "zap-ping"         -> expects a pong with that payload
//   close    close(4000, "bye")                   -> expects the server to answer 4000
// Prints one JSON line on stdout: {"ok": true|false, "peer": "node-ws", "steps": [...],
// "close": {...}, "error": "..."}. Exit 0 when every step passed, 1 on any mismatch,
// error or the 10 s overall timeout (the reason is also printed on stderr), 2 on bad usage.
// The client offers permessage-deflate unless --no-compression is given.
import { WebSocket } from 'ws';

const TIMEOUT_MS = 10_000;
const args = process.argv.slice(2);
const compression = !args.includes('--no-compression');
const url = args.find((a) => !a.startsWith('--'));
if (!url) {
  process.stderr.write('usage: node echo_client.mjs [--no-compression] URL\n');
  process.exit(2);
}

const summary = { ok: false, peer: 'node-ws', url, compression, steps: [] };

function finish(ok, error) {
  summary.ok = ok;
  if (error) summary.error = error;
  process.stdout.write(JSON.stringify(summary) + '\n');
  if (!ok) process.stderr.write(`echo_client (node): FAILED: ${error}\n`);
  process.exit(ok ? 0 : 1);
}

function binaryPayload(len) {
  const buf = Buffer.alloc(len);
  for (let i = 0; i < len; i++) buf[i] = (i * 31 + 7) & 0xff;
  return buf;
}

// Exactly 1 MiB of UTF-8: "a" (1 byte), "é" (2), "€" (3), "😀" (4), then padding.
function utf8Payload() {
  const text = 'aé€😀'.repeat(104857) + 'é€a';
  if (Buffer.byteLength(text) !== 1 << 20) throw new Error('utf8 payload is not 1 MiB');
  return text;
}

function describe(data, isBinary) {
  return `${isBinary ? 'binary' : 'text'} of ${data.length} bytes`;
}

// Resolves with the next event of the connection: a message, a pong, a close or an error.
function nextEvent(ws) {
  return new Promise((resolve) => {
    const done = (event) => {
      ws.off('message', onMessage);
      ws.off('pong', onPong);
      ws.off('close', onClose);
      ws.off('error', onError);
      resolve(event);
    };
    const onMessage = (data, isBinary) => done({ kind: 'message', data, isBinary });
    const onPong = (data) => done({ kind: 'pong', data });
    const onClose = (code, reason) => done({ kind: 'close', code, reason: reason.toString() });
    const onError = (err) => done({ kind: 'error', error: err.message });
    ws.on('message', onMessage);
    ws.on('pong', onPong);
    ws.on('close', onClose);
    ws.on('error', onError);
  });
}

function unexpected(event, wanted) {
  if (event.kind === 'message') return `wanted ${wanted}, got ${describe(event.data, event.isBinary)}`;
  if (event.kind === 'close') return `wanted ${wanted}, connection closed (${event.code} ${JSON.stringify(event.reason)})`;
  if (event.kind === 'error') return `wanted ${wanted}, error: ${event.error}`;
  return `wanted ${wanted}, got a ${event.kind}`;
}

async function echoStep(ws, name, payload, binary) {
  const started = Date.now();
  const reply = nextEvent(ws);
  ws.send(payload, { binary });
  const event = await reply;
  const wanted = `${binary ? 'binary' : 'text'} echo of ${Buffer.byteLength(payload)} bytes`;
  if (event.kind !== 'message') throw new Error(`${name}: ${unexpected(event, wanted)}`);
  if (event.isBinary !== binary) throw new Error(`${name}: ${unexpected(event, wanted)}`);
  const expected = Buffer.isBuffer(payload) ? payload : Buffer.from(payload, 'utf8');
  if (!expected.equals(event.data)) {
    throw new Error(`${name}: echo differs (${describe(event.data, event.isBinary)}, wanted ${expected.length} bytes)`);
  }
  summary.steps.push({ step: name, ok: true, bytes: expected.length, ms: Date.now() - started });
}

async function pingStep(ws) {
  const started = Date.now();
  const payload = Buffer.from('zap-ping');
  const reply = nextEvent(ws);
  ws.ping(payload);
  const event = await reply;
  if (event.kind !== 'pong') throw new Error(`ping: ${unexpected(event, 'a pong')}`);
  if (!payload.equals(event.data)) {
    throw new Error(`ping: pong payload ${JSON.stringify(event.data.toString())}, wanted "zap-ping"`);
  }
  summary.steps.push({ step: 'ping', ok: true, bytes: payload.length, ms: Date.now() - started });
}

async function closeStep(ws) {
  const started = Date.now();
  const reply = nextEvent(ws);
  ws.close(4000, 'bye');
  const event = await reply;
  if (event.kind !== 'close') throw new Error(`close: ${unexpected(event, 'the close answer')}`);
  summary.close = { code: event.code, reason: event.reason };
  if (event.code !== 4000) throw new Error(`close: server answered code ${event.code}, wanted 4000`);
  summary.steps.push({ step: 'close', ok: true, ms: Date.now() - started });
}

async function run() {
  const ws = new WebSocket(url, { perMessageDeflate: compression, maxPayload: 64 << 20 });
  const opened = await new Promise((resolve) => {
    ws.once('open', () => resolve(null));
    ws.once('error', (err) => resolve(err.message));
    ws.once('unexpected-response', (_req, res) => resolve(`handshake answered HTTP ${res.statusCode}`));
  });
  if (opened) throw new Error(`connect: ${opened}`);
  ws.on('error', () => {}); // errors are reported by the step that is waiting (nextEvent)
  summary.extensions = ws.extensions;
  await echoStep(ws, 'text', 'hello', false);
  await echoStep(ws, 'binary', binaryPayload(64 * 1024), true);
  await echoStep(ws, 'empty', '', false);
  await echoStep(ws, 'utf8', utf8Payload(), false);
  await pingStep(ws);
  await closeStep(ws);
}

setTimeout(() => finish(false, `timeout: not done after ${TIMEOUT_MS / 1000} s`), TIMEOUT_MS);
run().then(() => finish(true), (err) => finish(false, err.message));
