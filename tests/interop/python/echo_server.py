#!/usr/bin/env python3
"""Echo server on Python `websockets`, a foreign peer for zapsocket's interop tests.

Usage: python echo_server.py [--no-compression] PORT

Listens on 127.0.0.1:PORT (PORT 0 picks a free port) on any path and:
  - echoes every text message as text and every binary message as binary;
  - answers the text message "close-me" by closing with 4001 "server bye";
  - answers pings with pongs (websockets does this itself; it sends no pings of its own).
Stdout, one line each: `listening PORT` (the real port) once it accepts
connections, then a JSON line {"close": CODE, "reason": "..."} for every
connection that ends (the close code and reason received from the peer;
1005 = close frame without a code, 1006 = no close frame at all). Accepts
messages up to 64 MiB; permessage-deflate is accepted unless --no-compression
is given. Exits 0 on SIGTERM or SIGINT.
Needs websockets >= 14 (tests/interop/python/requirements.txt).
"""
import asyncio
import json
import signal
import sys

from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed


def log_close(ws):
    received = ws.protocol.close_rcvd
    if received is None:
        line = {"close": 1006, "reason": ""}
    else:
        line = {"close": int(received.code), "reason": received.reason}
    print(json.dumps(line, separators=(",", ":")), flush=True)


async def echo(ws):
    try:
        async for message in ws:
            if message == "close-me":
                await ws.close(code=4001, reason="server bye")
                break
            await ws.send(message)
    except ConnectionClosed:
        pass
    await ws.wait_closed()
    log_close(ws)


async def run(port, compression):
    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
    async with serve(
        echo,
        "127.0.0.1",
        port,
        compression="deflate" if compression else None,
        max_size=64 << 20,
        ping_interval=None,
        close_timeout=1,
    ) as server:
        bound = server.sockets[0].getsockname()[1]
        print(f"listening {bound}", flush=True)
        await stop  # leaving `async with` closes open connections with 1001 (1 s at most)


def main(argv):
    args = argv[1:]
    compression = "--no-compression" not in args
    ports = [a for a in args if not a.startswith("--")]
    if len(ports) != 1 or not ports[0].isdigit() or int(ports[0]) > 65535:
        print("usage: python echo_server.py [--no-compression] PORT", file=sys.stderr)
        return 2
    try:
        asyncio.run(run(int(ports[0]), compression))
    except OSError as exc:
        print(f"echo_server (python): {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
