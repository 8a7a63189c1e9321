// WebSockets over HTTP/2 (RFC 8441) in headless Chromium: `zap serve` with TLS offers
// ALPN h2 and SETTINGS_ENABLE_CONNECT_PROTOCOL; Chromium, which loaded the page over
// HTTP/2, opens its WebSocket as an extended CONNECT on that connection. The server's
// handshake metrics tell: an HTTP/2 WebSocket is answered 200, an HTTP/1.1 one 101.
//
// Needs Debian's chromium (scripts/setup.sh) and openssl (a certificate for localhost).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startServer } from '../testing/server.mjs';
import { launchBrowser } from '../testing/browser.mjs';

let dir;
let server;
let browser;

before(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'zap-h2-'));
  const [key, cert] = [path.join(dir, 'key.pem'), path.join(dir, 'cert.pem')];
  execFileSync('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=localhost',
    '-addext', 'subjectAltName=DNS:localhost',
  ], { stdio: 'ignore' });
  server = await startServer({ args: ['--tls-cert', cert, '--tls-key', key] });
  // The certificate is self-signed: Chromium is told to accept it.
  browser = await launchBrowser({ args: ['--ignore-certificate-errors'] });
});

after(async () => {
  await browser?.close();
  await server?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** The count of `zapsocket_ws_handshakes{status}` in the metrics text. */
function handshakes(metrics, status) {
  const m = new RegExp(`^zapsocket_ws_handshakes(?:_total)?\\{status="${status}"\\} (\\d+)`, 'm').exec(metrics);
  return m ? Number(m[1]) : 0;
}

test('Chromium opens its WebSocket on the page\'s HTTP/2 connection', async () => {
  const page = await browser.newPage();
  const origin = `https://localhost:${server.port}`;
  await page.goto(`${origin}/`);
  const protocol = await page.evaluate(() => performance.getEntriesByType('navigation')[0].nextHopProtocol);
  assert.equal(protocol, 'h2', 'the page came over HTTP/2');
  const before = handshakes(await page.evaluate(async () => (await fetch('/metrics')).text()), 200);
  const echoed = await page.evaluate(async (url) => {
    const ws = new WebSocket(url);
    ws.binaryType = 'arraybuffer';
    await new Promise((resolve, reject) => { ws.onopen = resolve; ws.onerror = () => reject(new Error('ws error')); });
    const reply = new Promise((resolve) => { ws.onmessage = (e) => resolve(e.data); });
    ws.send('over h2');
    const data = await reply;
    ws.close();
    return data;
  }, `wss://localhost:${server.port}/echo`);
  assert.equal(echoed, 'over h2');
  const metrics = await page.evaluate(async () => (await fetch('/metrics')).text());
  assert.ok(handshakes(metrics, 200) > before, `an HTTP/2 WebSocket (200) was counted:\n${metrics.split('\n').filter((l) => l.includes('handshakes')).join('\n')}`);
  await page.close();
});
