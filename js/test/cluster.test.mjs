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
import { createServer, connect } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startServer } from '../testing/server.mjs';
import { launchBrowser, openChat, waitForText } from '../testing/browser.mjs';

let redis;
let nodes = [];
let browser;

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
  redis = await startRedis();
  nodes = [
    await startServer({ args: ['--redis', redis.url, '--node-id', 'node-one'] }),
    await startServer({ args: ['--redis', redis.url, '--node-id', 'node-two'] }),
  ];
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  for (const node of nodes) await node.stop();
  redis?.stop();
});

test('two tabs on two nodes chat in one room and each shows its node', async () => {
  const room = `cluster-${process.pid}`;
  const ada = await openChat(browser, nodes[0].url, 'ada', room);
  const bob = await openChat(browser, nodes[1].url, 'bob', room);
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
