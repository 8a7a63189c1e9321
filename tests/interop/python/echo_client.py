#!/usr/bin/env python3
"""Scripted echo client on Python `websockets`, a foreign peer for zapsocket's interop tests.

Usage: python echo_client.py [--no-compression] URL

Connects to URL (an echo server: text back as text, binary as binary) and runs,
one step after another:
  text     "hello"                              -> expects the same text back
  binary   64 KiB (byte i = (i * 31 + 7) & 0xff) -> expects the same binary back
  empty    ""                                   -> expects an empty text back
  utf8     1 MiB of text with 1- to 4-byte UTF-8 characters -> same text back
  ping     ping with payload "zap-ping"         -> expects a pong with that payload
  close    close(4000, "bye")                   -> expects the server to answer 4000
Prints one JSON line on stdout: {"ok": true|false, "peer": "python-websockets",
"steps": [...], "close": {...}, "error": "..."}. Exit 0 when every step passed, 1 on
any mismatch, error or the 10 s overall timeout (the reason is also printed on
stderr), 2 on bad usage. Offers permessage-deflate unless --no-compression is given.
Needs websockets >= 14 (tests/interop/python/requirements.txt).
"""
import asyncio
import json
import sys
import time

from websockets.asyncio.client import connect

TIMEOUT_S = 10.0
PING_PAYLOAD = b"zap-ping"


class StepFailed(Exception):
    pass


def binary_payload(length):
    return bytes((i * 31 + 7) & 0xFF for i in range(length))


def utf8_payload():
    """Exactly 1 MiB of UTF-8: "a" (1 byte), "é" (2), "€" (3), "😀" (4), then padding."""
    text = "aé€😀" * 104857 + "é€a"
    if len(text.encode("utf-8")) != 1 << 20:
        raise AssertionError("utf8 payload is not 1 MiB")
    return text


def describe(message):
    if isinstance(message, bytes):
        return f"binary of {len(message)} bytes"
    return f"text of {len(message.encode('utf-8'))} bytes"


async def echo_step(ws, summary, name, payload):
    started = time.monotonic()
    await ws.send(payload)
    reply = await ws.recv()
    kind = "binary" if isinstance(payload, bytes) else "text"
    size = len(payload) if isinstance(payload, bytes) else len(payload.encode("utf-8"))
    if type(reply) is not type(payload):
        raise StepFailed(f"{name}: wanted {kind} echo of {size} bytes, got {describe(reply)}")
    if reply != payload:
        raise StepFailed(f"{name}: echo differs ({describe(reply)}, wanted {size} bytes)")
    summary["steps"].append(
        {"step": name, "ok": True, "bytes": size, "ms": round((time.monotonic() - started) * 1000)}
    )


async def ping_step(ws, summary):
    started = time.monotonic()
    # websockets resolves the waiter only for a pong that carries this exact payload.
    waiter = await ws.ping(PING_PAYLOAD)
    try:
        await asyncio.wait_for(waiter, timeout=5)
    except asyncio.TimeoutError:
        raise StepFailed(f"ping: no pong with payload {PING_PAYLOAD!r} within 5 s") from None
    summary["steps"].append(
        {
            "step": "ping",
            "ok": True,
            "bytes": len(PING_PAYLOAD),
            "ms": round((time.monotonic() - started) * 1000),
        }
    )


async def close_step(ws, summary):
    started = time.monotonic()
    await ws.close(code=4000, reason="bye")
    received = ws.protocol.close_rcvd
    if received is None:
        raise StepFailed("close: the server sent no close frame")
    summary["close"] = {"code": int(received.code), "reason": received.reason}
    if received.code != 4000:
        raise StepFailed(f"close: server answered code {received.code}, wanted 4000")
    summary["steps"].append(
        {"step": "close", "ok": True, "ms": round((time.monotonic() - started) * 1000)}
    )


async def run(url, compression, summary):
    try:
        ws = await connect(
            url,
            compression="deflate" if compression else None,
            max_size=64 << 20,
            ping_interval=None,
            open_timeout=TIMEOUT_S,
        )
    except Exception as exc:  # any failure to open is the verdict of this step
        raise StepFailed(f"connect: {exc}") from None
    summary["extensions"] = ", ".join(e.name for e in ws.protocol.extensions)
    await echo_step(ws, summary, "text", "hello")
    await echo_step(ws, summary, "binary", binary_payload(64 * 1024))
    await echo_step(ws, summary, "empty", "")
    await echo_step(ws, summary, "utf8", utf8_payload())
    await ping_step(ws, summary)
    await close_step(ws, summary)


def main(argv):
    args = argv[1:]
    compression = "--no-compression" not in args
    urls = [a for a in args if not a.startswith("--")]
    if len(urls) != 1:
        print("usage: python echo_client.py [--no-compression] URL", file=sys.stderr)
        return 2
    summary = {
        "ok": False,
        "peer": "python-websockets",
        "url": urls[0],
        "compression": compression,
        "steps": [],
    }
    error = None
    try:
        asyncio.run(asyncio.wait_for(run(urls[0], compression, summary), TIMEOUT_S))
    except asyncio.TimeoutError:
        error = f"timeout: not done after {TIMEOUT_S:g} s"
    except StepFailed as exc:
        error = str(exc)
    except Exception as exc:  # ConnectionClosed and friends: report, don't trace back
        step = ["text", "binary", "empty", "utf8", "ping", "close"][len(summary["steps"]) :][:1]
        error = f"{step[0] if step else 'run'}: {type(exc).__name__}: {exc}"
    summary["ok"] = error is None
    if error:
        summary["error"] = error
    print(json.dumps(summary, separators=(",", ":")), flush=True)
    if error:
        print(f"echo_client (python): FAILED: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
