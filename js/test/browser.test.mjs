// The demo page of `zap serve` (`/`, built on js/zapsocket.js) in headless Chromium, two
// pages: both join a room, one sends, the other sees the message and both names in the
// members list; one leaves and the other sees it.
//
// Needs Debian's chromium at /usr/bin/chromium (scripts/setup.sh installs it) or
// $ZAPSOCKET_CHROMIUM; driven by playwright-core.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer } from '../testing/server.mjs';
import { launchBrowser, openChat as open, waitForText } from '../testing/browser.mjs';

let server;
let browser;

before(async () => {
  server = await startServer();
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

const openChat = (name, room) => open(browser, server.url, name, room);

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
