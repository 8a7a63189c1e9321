#!/usr/bin/env node
// Headless Chromium as an echo client, a foreign peer for zapsocket's interop tests.
//
// Usage: node echo_client.mjs URL [PAGE_URL]
//
// Launches Debian's Chromium (/usr/bin/chromium, or $CHROMIUM) through playwright-core with
// a fresh profile, opens PAGE_URL (any http:// page on the loopback, whatever its status:
// Chromium keeps a public page such as about:blank from reaching loopback addresses;
// default: URL's host over http, path /) and, inside the page, connects a browser
// WebSocket to URL (an echo server: text back as text, binary as binary). The browser offers
// permessage-deflate on its own, as every browser does. Steps, one after another:
//   text-small  "hello"                                  -> same text back
//   text-json   64 KiB of repetitive JSON text            -> same text back
//   binary      64 KiB of compressible bytes              -> same bytes back
//   utf8        100 KiB of text with 1- to 4-byte chars   -> same text back
//   close       close(4000, "bye")                        -> close event with 4000
// Prints one JSON line on stdout: {"ok": true|false, "peer": "chromium", "extensions": the
// negotiated Sec-WebSocket-Extensions (ws.extensions), "steps": [...], "error": "..."}.
// Exit 0 when every step passed, 1 otherwise (the reason is also on stderr), 2 on bad
// usage. The whole run is bounded by a 30 s timeout.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const TIMEOUT_MS = 30_000;
const url = process.argv[2];
if (!url) {
  process.stderr.write('usage: node echo_client.mjs URL [PAGE_URL]\n');
  process.exit(2);
}
const pageUrl = process.argv[3] || url.replace(/^ws/, 'http').replace(/^(https?:\/\/[^/]+).*$/, '$1/');

// Runs in the page: every step against the server, returns the summary.
async function inPage(url) {
  const summary = { steps: [] };
  const ws = new WebSocket(url);
  ws.binaryType = 'arraybuffer';
  const queue = [];
  let waiter = null;
  const push = (event) => (waiter ? (waiter(event), (waiter = null)) : queue.push(event));
  const next = () => (queue.length ? Promise.resolve(queue.shift()) : new Promise((r) => (waiter = r)));
  ws.onmessage = (e) => push({ kind: 'message', data: e.data });
  ws.onclose = (e) => push({ kind: 'close', code: e.code, reason: e.reason });
  ws.onerror = () => push({ kind: 'error' });
  await new Promise((resolve, reject) => {
    ws.onopen = resolve;
    setTimeout(() => reject(new Error('not open after 5 s')), 5000);
  });
  summary.extensions = ws.extensions;
  const json = JSON.stringify(Array.from({ length: 2000 }, (_, i) => ({ id: i % 50, room: 'lobby', text: 'hello there' })));
  const bytes = new Uint8Array(64 * 1024).map((_, i) => (i % 256 < 128 ? i % 7 : 0));
  const utf8 = 'aé€😀'.repeat(10240);
  const steps = [
    ['text-small', 'hello'],
    ['text-json', json.slice(0, 64 * 1024)],
    ['binary', bytes.buffer],
    ['utf8', utf8],
  ];
  for (const [name, payload] of steps) {
    ws.send(payload);
    const event = await next();
    if (event.kind !== 'message') throw new Error(`${name}: wanted an echo, got ${JSON.stringify(event)}`);
    const same =
      typeof payload === 'string'
        ? event.data === payload
        : event.data instanceof ArrayBuffer &&
          event.data.byteLength === payload.byteLength &&
          new Uint8Array(event.data).every((b, i) => b === bytes[i]);
    if (!same) throw new Error(`${name}: the echo differs`);
    const size = typeof payload === 'string' ? new TextEncoder().encode(payload).length : payload.byteLength;
    summary.steps.push({ step: name, ok: true, bytes: size });
  }
  ws.close(4000, 'bye');
  const closed = await next();
  if (closed.kind !== 'close' || closed.code !== 4000) throw new Error(`close: got ${JSON.stringify(closed)}`);
  summary.steps.push({ step: 'close', ok: true });
  return summary;
}

async function main() {
  const profile = mkdtempSync(join(tmpdir(), 'zapsocket-chromium-'));
  let context;
  try {
    // A fresh profile each run (launchPersistentContext is how playwright takes one).
    context = await chromium.launchPersistentContext(profile, {
      executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
      headless: true,
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
      timeout: 20_000,
    });
    const page = context.pages()[0] ?? (await context.newPage());
    await page.goto(pageUrl);
    return await page.evaluate(inPage, url);
  } finally {
    if (context) await context.close().catch(() => {});
    rmSync(profile, { recursive: true, force: true });
  }
}

function finish(summary) {
  process.stdout.write(JSON.stringify({ peer: 'chromium', url, page: pageUrl, ...summary }) + '\n');
  if (!summary.ok) process.stderr.write(`echo_client (chromium): FAILED: ${summary.error}\n`);
  process.exit(summary.ok ? 0 : 1);
}

setTimeout(() => finish({ ok: false, error: `timeout: not done after ${TIMEOUT_MS / 1000} s` }), TIMEOUT_MS).unref();
main().then(
  (summary) => finish({ ok: true, ...summary }),
  (err) => finish({ ok: false, error: err.message }),
);
