// Many nodes, one server, in the browser: two `zap serve --redis` on one real
// redis-server, the demo page of each open in headless Chromium. Each page says which
// node it is on; both join one room, see each other in the members list, and chat across
// the nodes; a leave on one node is seen on the other.
//
// Needs redis-server and Debian's chromium (scripts/setup.sh installs both); driven by
// playwright-core.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer, connect } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { startServer } from '../testing/server.mjs';

const CHROMIUM = process.env.ZAPSOCKET_CHROMIUM || '/usr/bin/chromium';
const ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];

let redis;
let nodes = [];
let browser;
let profile;

/** A port nobody listens on now. */
function freePort() {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.on('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address();
      probe.close(() => resolve(port));
    });
  });
}

/** Starts redis-server on a free port (no persistence); resolves once it accepts. */
async function startRedis() {
  const port = await freePort();
  const proc = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], {
    stdio: 'ignore',
  });
  const failed = new Promise((_, reject) => proc.on('error', (e) => reject(new Error(`redis-server: ${e.message} (scripts/setup.sh installs it)`))));
  const up = (async () => {
    for (let i = 0; i < 200; i++) {
      const ok = await new Promise((resolve) => {
        const s = connect(port, '127.0.0.1', () => { s.end(); resolve(true); });
        s.on('error', () => resolve(false));
      });
      if (ok) return;
      await new Promise((r) => setTimeout(r, 25));
    }
    throw new Error(`redis-server did not start on ${port}`);
  })();
  await Promise.race([up, failed]);
  return { url: `redis://127.0.0.1:${port}`, stop: () => proc.kill('SIGKILL') };
}

before(async () => {
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing: run scripts/setup.sh (apt-get install chromium)`);
  redis = await startRedis();
  nodes = [
    await startServer({ args: ['--redis', redis.url, '--node-id', 'node-one'] }),
    await startServer({ args: ['--redis', redis.url, '--node-id', 'node-two'] }),
  ];
  profile = mkdtempSync(path.join(tmpdir(), 'zap-chromium-'));
  browser = await chromium.launchPersistentContext(profile, { executablePath: CHROMIUM, args: ARGS, headless: true, timeout: 30000 });
});

after(async () => {
  await browser?.close();
  for (const node of nodes) await node.stop();
  redis?.stop();
  if (profile) rmSync(profile, { recursive: true, force: true });
});

/** Polls a locator's text until `ok(text)`. */
async function waitForText(locator, ok, what, ms = 10000) {
  const deadline = Date.now() + ms;
  let text = '';
  while (Date.now() < deadline) {
    text = (await locator.textContent({ timeout: ms }).catch(() => '')) ?? '';
    if (ok(text)) return text;
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.fail(`timed out waiting for ${what}; text was: ${JSON.stringify(text)}`);
}

/** Opens the demo of `node` as `name` and joins `room`. */
async function openChat(node, name, room) {
  const page = await browser.newPage();
  page.on('pageerror', (e) => console.error(`[${name}] page error: ${e.message}`));
  await page.goto(node.url + '/');
  await waitForText(page.getByTestId('status'), (t) => t === 'connected', `${name}: connected`);
  await page.getByTestId('name').fill(name);
  await page.getByTestId('room').fill(room);
  await page.getByTestId('join').click();
  await waitForText(page.getByTestId('members'), (t) => t.includes(name), `${name} in the members list`);
  return page;
}

test('two tabs on two nodes chat in one room and each shows its node', async () => {
  const room = `cluster-${process.pid}`;
  const ada = await openChat(nodes[0], 'ada', room);
  const bob = await openChat(nodes[1], 'bob', room);
  await waitForText(ada.getByTestId('node'), (t) => t.includes('node-one'), 'ada sees her node');
  await waitForText(bob.getByTestId('node'), (t) => t.includes('node-two'), 'bob sees his node');

  for (const [who, page] of [['ada', ada], ['bob', bob]]) {
    await waitForText(page.getByTestId('members'), (t) => t.includes('ada') && t.includes('bob'), `${who} sees both members, across nodes`);
  }
  await ada.getByTestId('message').fill('hello from node one');
  await ada.getByTestId('send').click();
  await waitForText(bob.getByTestId('messages'), (t) => t.includes('hello from node one'), 'bob gets it on node two');
  await bob.getByTestId('message').fill('and back from node two');
  await bob.getByTestId('send').click();
  await waitForText(ada.getByTestId('messages'), (t) => t.includes('and back from node two'), 'ada gets it on node one');

  await bob.close();
  await waitForText(ada.getByTestId('members'), (t) => !t.includes('bob'), 'ada sees bob leave from the other node');
  await ada.screenshot({ path: path.join(tmpdir(), 'zap-cluster-demo.png') });
  await ada.close();
});
