// Node `ws` echo server with permessage-deflate on, for scripts/bench-deflate.sh.
// Usage: node bench-deflate-ws-server.cjs PORT   (NODE_PATH must hold `ws`: the script uses
// ../shared/bench/peers/node-ws/node_modules, ws 8.23.0 with bufferutil).
// "/" echoes every message with its type. perMessageDeflate: true takes ws's defaults:
// threshold 1024, context takeover both ways, zlib level 6 / memLevel 8 / 15-bit windows.
'use strict';
const { WebSocketServer } = require('ws');

const port = Number(process.argv[2] || 9002);
const wss = new WebSocketServer({
  host: '127.0.0.1',
  port,
  backlog: 2048,
  clientTracking: false,
  perMessageDeflate: true,
  maxPayload: 256 * 1024 * 1024,
});
wss.on('connection', (ws) => {
  ws.on('error', () => {});
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
});
wss.on('listening', () => {
  console.log(`node ws ${require('ws/package.json').version} (perMessageDeflate) listening on 127.0.0.1:${wss.address().port}`);
});
