#!/usr/bin/env node
// Echo server on Node `ws`, a foreign peer for zapsocket's interop tests.
//
// Usage: node echo_server.mjs [--no-compression] PORT
//
// Listens on 127.0.0.1:PORT (PORT 0 picks a free port) on any path and:
//   - echoes every text message as text and every binary message as binary;
//   - answers the text message "close-me" by closing with 4001 "server bye";
//   - answers pings with pongs (ws does this itself).
// Stdout, one line each: `listening PORT` (the real port) once it accepts
// connections, then a JSON line {"close": CODE, "reason": "..."} for every
// connection that ends (the close code and reason received from the peer;
// 1005 = close frame without a code, 1006 = no close frame at all).
// Accepts messages up to 64 MiB; permessage-deflate is offered unless
// --no-compression is given. Exits 0 on SIGTERM or SIGINT.
import { WebSocketServer } from 'ws';

const args = process.argv.slice(2);
const compression = !args.includes('--no-compression');
const portArg = args.find((a) => !a.startsWith('--'));
const port = Number(portArg);
if (portArg === undefined || !Number.isInteger(port) || port < 0 || port > 65535) {
  process.stderr.write('usage: node echo_server.mjs [--no-compression] PORT\n');
  process.exit(2);
}

const wss = new WebSocketServer({
  host: '127.0.0.1',
  port,
  perMessageDeflate: compression,
  maxPayload: 64 << 20,
});

wss.on('connection', (ws) => {
  ws.on('error', (err) => process.stderr.write(`echo_server (node): connection error: ${err.message}\n`));
  ws.on('message', (data, isBinary) => {
    if (!isBinary && data.length === 8 && data.toString() === 'close-me') {
      ws.close(4001, 'server bye');
      return;
    }
    ws.send(data, { binary: isBinary });
  });
  ws.on('close', (code, reason) => {
    process.stdout.write(JSON.stringify({ close: code, reason: reason.toString() }) + '\n');
  });
});

wss.on('listening', () => {
  process.stdout.write(`listening ${wss.address().port}\n`);
});

wss.on('error', (err) => {
  process.stderr.write(`echo_server (node): ${err.message}\n`);
  process.exit(1);
});

// A test peer: stop at once, dropping whatever connections are open.
process.on('SIGTERM', () => process.exit(0));
process.on('SIGINT', () => process.exit(0));
