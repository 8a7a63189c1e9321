// The demo page of `zap serve` (`/`, built on js/zapsocket.js) in headless Chromium, two
// pages: both join a room, one sends, the other sees the message and both names in the
// members list; one leaves and the other sees it.
//
// Needs Debian's chromium at /usr/bin/chromium (scripts/setup.sh installs it) or
// $ZAPSOCKET_CHROMIUM; driven by playwright-core.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { startServer } from '../testing/server.mjs';

const CHROMIUM = process.env.ZAPSOCKET_CHROMIUM || '/usr/bin/chromium';
const ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];

let server;
let browser;
let profile;

before(async () => {
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing: run scripts/setup.sh (apt-get install chromium)`);
  server = await startServer();
  // A fresh profile: launchPersistentContext is how Playwright takes --user-data-dir.
  profile = mkdtempSync(path.join(tmpdir(), 'zap-chromium-'));
  browser = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    args: ARGS,
    headless: true,
    timeout: 30000,
  });
});

after(async () => {
  await browser?.close();
  await server?.stop();
  if (profile) rmSync(profile, { recursive: true, force: true });
});

/** Opens the demo as `name` and joins `room`. */
async function openChat(name, room) {
  const page = await browser.newPage();
  page.on('pageerror', (e) => console.error(`[${name}] page error: ${e.message}`));
  await page.goto(server.url + '/');
  const status = page.getByTestId('status');
  await waitForText(status, (t) => t === 'connected', `${name}: status connected`);
  await page.getByTestId('name').fill(name);
  await page.getByTestId('room').fill(room);
  await page.getByTestId('join').click();
  await waitForText(page.getByTestId('members'), (t) => t.includes(name), `${name} in the members list`);
  return page;
}

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

const childTexts = (page, testid) =>
  page.getByTestId(testid).evaluate((el) => [...el.children].map((c) => c.textContent));

test('two pages chat in one room, see each other in the members list, and see a leave', async () => {
  const room = `browser-${process.pid}`;
  const ada = await openChat('ada', room);
  const bob = await openChat('bob', room);

  for (const [who, page] of [['ada', ada], ['bob', bob]]) {
    await waitForText(page.getByTestId('members'), (t) => t.includes('ada') && t.includes('bob'), `${who} sees both members`);
    const members = await childTexts(page, 'members');
    assert.equal(members.length, 2, `${who}'s members: ${JSON.stringify(members)}`);
  }

  await ada.getByTestId('message').fill('hello from ada');
  await ada.getByTestId('send').click();
  await waitForText(bob.getByTestId('messages'), (t) => t.includes('hello from ada'), 'bob sees the message');
  const seen = await childTexts(bob, 'messages');
  assert.equal(seen.length, 1, JSON.stringify(seen));
  assert.ok(seen[0].includes('ada') && seen[0].includes('hello from ada'), seen[0]);
  await waitForText(ada.getByTestId('messages'), (t) => t.includes('hello from ada'), 'ada sees her own message');

  await bob.close();
  await waitForText(ada.getByTestId('members'), (t) => !t.includes('bob'), 'ada sees bob leave');
  assert.deepEqual(await childTexts(ada, 'members'), ['ada']);
  await ada.close();
});

test('zap serve restarts: both pages show reconnecting, then connected, and chat again without a reload', async () => {
  const room = `restart-${process.pid}`;
  const ada = await openChat('ada', room);
  const bob = await openChat('bob', room);
  await waitForText(ada.getByTestId('members'), (t) => t.includes('bob'), 'ada sees bob');

  await server.stop();
  for (const [who, page] of [['ada', ada], ['bob', bob]]) {
    await waitForText(page.getByTestId('status'), (t) => t === 'reconnecting', `${who}: reconnecting`);
  }
  await server.restart();
  for (const [who, page] of [['ada', ada], ['bob', bob]]) {
    await waitForText(page.getByTestId('status'), (t) => t === 'connected', `${who}: connected again`, 20000);
    await waitForText(page.getByTestId('members'), (t) => t.includes('ada') && t.includes('bob'), `${who} sees both after rejoining`);
  }

  await bob.getByTestId('message').fill('still here after the restart');
  await bob.getByTestId('send').click();
  await waitForText(ada.getByTestId('messages'), (t) => t.includes('still here after the restart'), 'ada gets the new message');
  const last = (await childTexts(ada, 'messages')).at(-1);
  assert.ok(last.includes('bob') && last.includes('still here after the restart'), last);
  await ada.close();
  await bob.close();
});
