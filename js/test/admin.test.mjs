// `zap serve --admin-token TOKEN`: the admin page in headless Chromium (nodes,
// connections, rooms with member counts, live rates, recent disconnects), and its
// answers without the token (401) and without the option (404).
//
// Needs Debian's chromium (scripts/setup.sh installs it) or $ZAPSOCKET_CHROMIUM.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from '../zapsocket.js';
import { startServer, WebSocket, sleep } from '../testing/server.mjs';
import { launchBrowser, waitForText } from '../testing/browser.mjs';

const TOKEN = `t-${process.pid}`;
let server;
let plain;
let browser;
const sockets = [];

before(async () => {
  server = await startServer({ args: ['--admin-token', TOKEN] });
  plain = await startServer();
  browser = await launchBrowser();
});

after(async () => {
  for (const s of sockets) s.close();
  await browser?.close();
  await server?.stop();
  await plain?.stop();
});

async function client(name) {
  const socket = connect(server.wsUrl, { WebSocket, query: { name } });
  sockets.push(socket);
  await socket.ready();
  return socket;
}

test('without the token the page and its data answer 401; without the option, 404', async () => {
  for (const path of ['/admin', `/admin?token=wrong`, '/admin/data', `/admin/data?token=${TOKEN}x`]) {
    const res = await fetch(server.url + path);
    assert.equal(res.status, 401, path);
    assert.match(await res.text(), /token/);
  }
  const ok = await fetch(`${server.url}/admin?token=${TOKEN}`);
  assert.equal(ok.status, 200);
  assert.match(ok.headers.get('content-type'), /text\/html/);
  const bearer = await fetch(`${server.url}/admin/data`, { headers: { authorization: `Bearer ${TOKEN}` } });
  assert.equal(bearer.status, 200);
  const data = await bearer.json();
  for (const key of ['node', 'connections', 'nodes', 'rooms', 'messages_in', 'bytes_out', 'disconnects']) assert.ok(key in data, key);
  assert.equal((await fetch(`${plain.url}/admin?token=${TOKEN}`)).status, 404);
  assert.equal((await fetch(`${plain.url}/admin/data?token=${TOKEN}`)).status, 404);
});

test('the page shows connections, rooms with their members, live rates and disconnect reasons', async () => {
  const page = await browser.newPage();
  await page.setViewportSize({ width: 1280, height: 900 });
  await page.goto(`${server.url}/admin?token=${TOKEN}`);
  await waitForText(page.getByTestId('admin-status'), (t) => t === 'live', 'the page gets data');
  const ada = await client('ada');
  const bob = await client('bob');
  const cy = await client('cy');
  await ada.join('lobby');
  await bob.join('lobby');
  await cy.join('games');
  await waitForText(page.getByTestId('admin-connections'), (t) => t === '3', 'three connections');
  await waitForText(page.getByTestId('admin-rooms'), (t) => t.includes('lobby2') && t.includes('games1'), 'rooms and counts');
  const rooms = await page.getByTestId('admin-rooms').evaluate((el) => [...el.children].map((li) => li.textContent));
  assert.deepEqual(rooms, ['lobby2', 'games1'], 'largest first');
  assert.match(await page.getByTestId('admin-nodes').textContent(), /this one/);

  // Traffic: the charts draw the rates.
  for (let i = 0; i < 40; i++) {
    ada.emit('chat', { text: `hello ${i}`, room: 'lobby' });
    await sleep(50);
  }
  await waitForText(page.locator('#rate-messages-in'), (t) => Number(t) > 0 || /k|M/.test(t), 'a message rate');
  const points = await page.getByTestId('admin-chart-messages').evaluate((el) => Number(el.dataset.points));
  assert.ok(points >= 2, `chart points: ${points}`);
  const polylines = await page.getByTestId('admin-chart-messages').locator('polyline').count();
  assert.equal(polylines, 2, 'in and out');

  // A close with a code and reason is listed.
  cy.close(4000, 'bye from cy');
  await waitForText(page.getByTestId('admin-connections'), (t) => t === '2', 'two connections');
  await waitForText(page.getByTestId('admin-disconnects'), (t) => t.includes('4000') && t.includes('bye from cy'), 'the reason');
  await waitForText(page.getByTestId('admin-rooms'), (t) => !t.includes('games'), 'games is gone');
  if (process.env.ZAPSOCKET_SCREENSHOT) await page.screenshot({ path: process.env.ZAPSOCKET_SCREENSHOT, fullPage: true });
  await page.close();
});
