// Test support (not a test file): headless Chromium for the browser tests, driven by
// playwright-core: Debian's chromium at /usr/bin/chromium (scripts/setup.sh installs it)
// or $ZAPSOCKET_CHROMIUM, with the flags this machine's closed network needs.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';

const CHROMIUM = process.env.ZAPSOCKET_CHROMIUM || '/usr/bin/chromium';
const ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];

/**
 * Starts Chromium with a fresh profile (and `args` besides this machine's flags);
 * `close()` ends it and removes the profile.
 */
export async function launchBrowser({ args = [] } = {}) {
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing: run scripts/setup.sh (apt-get install chromium)`);
  // A fresh profile: launchPersistentContext is how Playwright takes --user-data-dir.
  const profile = mkdtempSync(path.join(tmpdir(), 'zap-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    args: [...ARGS, ...args],
    headless: true,
    timeout: 30000,
  });
  return {
    newPage: () => context.newPage(),
    close: async () => {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

/** Polls a locator's text until `ok(text)`. */
export async function waitForText(locator, ok, what, ms = 10000) {
  const deadline = Date.now() + ms;
  let text = '';
  while (Date.now() < deadline) {
    text = (await locator.textContent({ timeout: ms }).catch(() => '')) ?? '';
    if (ok(text)) return text;
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.fail(`timed out waiting for ${what}; text was: ${JSON.stringify(text)}`);
}

/** Opens the demo page at `baseUrl` as `name`, joins `room`, waits to be in its members. */
export async function openChat(browser, baseUrl, name, room) {
  const page = await browser.newPage();
  page.on('pageerror', (e) => console.error(`[${name}] page error: ${e.message}`));
  await page.goto(baseUrl + '/');
  await waitForText(page.getByTestId('status'), (t) => t === 'connected', `${name}: status connected`);
  await page.getByTestId('name').fill(name);
  await page.getByTestId('room').fill(room);
  await page.getByTestId('join').click();
  await waitForText(page.getByTestId('members'), (t) => t.includes(name), `${name} in the members list`);
  return page;
}
