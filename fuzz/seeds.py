#!/usr/bin/env python3
"""seeds.py - writes the seed corpora of the fuzz targets into fuzz/corpus/TARGET/.

Usage: python3 fuzz/seeds.py [--check]

Every seed is a real input in the target's own layout: frames from RFC 6455 §5.7 and
RFC 7692 §7.2.3 (and made here, masked and compressed with zlib), handshakes as browsers
and servers send them, envelopes of docs/PROTOCOL.md, and scripts for the `connection`
target that play whole conversations. The seeds are small and named for what they hold;
the fuzzer starts from them (scripts/test.sh copies them to a scratch folder first).
--check only compares what would be written with what is in fuzz/corpus (exit 1 when they
differ). docs/FUZZING.md says how to add seeds.
"""

import os
import struct
import sys
import zlib

ROOT = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(ROOT, "corpus")
SEEDS = {}


def seed(target, name, data):
    if isinstance(data, str):
        data = data.encode()
    assert name not in SEEDS.setdefault(target, {}), (target, name)
    SEEDS[target][name] = bytes(data)


# ---- frames (RFC 6455 §5.2) ---------------------------------------------------------------

def mask(payload, key):
    return bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def frame(opcode, payload=b"", fin=True, rsv1=False, key=None):
    if isinstance(payload, str):
        payload = payload.encode()
    head = bytes([(0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode])
    bit = 0x80 if key else 0
    n = len(payload)
    if n < 126:
        head += bytes([bit | n])
    elif n < 1 << 16:
        head += bytes([bit | 126]) + struct.pack(">H", n)
    else:
        head += bytes([bit | 127]) + struct.pack(">Q", n)
    if key:
        return head + bytes(key) + mask(payload, key)
    return head + payload


def deflate(payload, bits=15, level=6):
    """A message compressed as RFC 7692 §7.2.1 says: raw deflate, sync flush, tail cut."""
    c = zlib.compressobj(level, zlib.DEFLATED, -bits)
    out = c.compress(payload) + c.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]


KEY = b"\x37\xfa\x21\x3d"  # RFC 6455 §5.7
TEXT = "Hello κόσμε € 𝄞".encode()
RFC_FRAMES = {
    "rfc-unmasked-text-hello": b"\x81\x05Hello",
    "rfc-masked-text-hello": b"\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58",
    "rfc-fragmented-text": b"\x01\x03Hel\x80\x02lo",
    "rfc-ping-hello": b"\x89\x05Hello",
    "rfc-masked-pong-hello": b"\x8a\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58",
    "rfc-binary-256-header": b"\x82\x7e\x01\x00" + bytes(range(256)),
    "rfc-binary-64k-header": b"\x82\x7f\x00\x00\x00\x00\x00\x01\x00\x00" + bytes(64),
}
# RFC 7692 §7.2.3: "Hello" compressed, with and without context, in one and two frames.
RFC_DEFLATE = {
    "rfc7692-hello": b"\xc1\x07\xf2\x48\xcd\xc9\xc9\x07\x00",
    "rfc7692-hello-twice-context-takeover": b"\xc1\x07\xf2\x48\xcd\xc9\xc9\x07\x00\xc1\x05\xf2\x00\x11\x00\x00",
    "rfc7692-stored-block": b"\xc1\x0b\x00\x05\x00\xfa\xff\x48\x65\x6c\x6c\x6f\x00",
    "rfc7692-fragmented": b"\x41\x03\xf2\x48\xcd\x80\x04\xc9\xc9\x07\x00",
    "rfc7692-bfinal": b"\xc1\x08\xf3\x48\xcd\xc9\xc9\x07\x00\x00",
    "rfc7692-two-blocks": b"\xc1\x0d\xf2\x48\x05\x00\x00\x00\xff\xff\xca\xc9\xc9\x07\x00",
}


def made_frames(key):
    """A conversation of one role: masked with `key` (client) or not (server)."""
    f = lambda *a, **k: frame(*a, key=key, **k)
    return {
        "text-utf8": f(1, TEXT),
        "binary-and-close": f(2, bytes(range(40))) + f(8, struct.pack(">H", 1000) + b"bye"),
        "fragments-split-code-point": f(1, TEXT[:7], fin=False) + f(9, b"mid") + f(0, TEXT[7:], fin=False)
        + f(0, b"", fin=True),
        "close-no-status": f(8),
        "close-going-away": f(8, struct.pack(">H", 1001) + "au revoir, κόσμε".encode()),
        "ping-pong-empty": f(9) + f(10),
        "text-300": f(1, b"x" * 300),
    }


for name, data in RFC_FRAMES.items():
    seed("frames", name, b"\x00" + data)
for role, key in (("server", KEY), ("client", None)):  # frames a server / a client receives
    for name, data in made_frames(key).items():
        seed("frames", f"{role}-gets-{name}", b"\x07" + data)
seed("frames", "invalid-utf8-then-close", b"\x03" + frame(1, b"\xce\xba\xff") + frame(8, b"\x03\xe8"))
seed("frames", "reserved-opcode", b"\x01" + b"\x83\x00")

# deflate: the first byte's low bits choose the parameters, its high bits the piece size; the
# bytes are also read as a Sec-WebSocket-Extensions answer.
for name, data in RFC_DEFLATE.items():
    seed("deflate", name, b"\x10" + data)
for bits, piece in ((15, 0x20), (10, 0x33), (9, 0x8c)):
    msgs = deflate(TEXT * 3, bits) , deflate(b"abc" * 100, bits), deflate(b"", bits)
    stream = b"".join(frame(1 if i != 1 else 2, m, rsv1=True) for i, m in enumerate(msgs))
    seed("deflate", f"server-sends-three-window-{bits}", bytes([piece]) + stream)
    masked = b"".join(frame(1, m, rsv1=True, key=KEY) for m in msgs)
    seed("deflate", f"client-sends-three-window-{bits}", bytes([piece | 0x40]) + masked)
seed("deflate", "bomb-ish-zeros", b"\x40" + frame(2, deflate(bytes(200000)), rsv1=True))
seed("deflate", "answer-header", b"\x00permessage-deflate; server_no_context_takeover; client_max_window_bits=10")

# mask: key (4), offset, start alignment, data.
for name, (offset, start, n) in {
    "empty": (0, 0, 0), "one": (1, 3, 1), "word": (0, 0, 8), "unaligned": (3, 5, 37),
    "long": (2, 1, 300),
}.items():
    seed("mask", name, KEY + bytes([offset, start]) + bytes((i * 7) & 0xFF for i in range(n)))


# ---- handshakes (RFC 6455 §4) -------------------------------------------------------------

RFC_KEY = "dGhlIHNhbXBsZSBub25jZQ=="
RFC_ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def request(target="/chat", extra=(), method="GET", version="1.1", eol="\r\n", key=RFC_KEY):
    lines = [f"{method} {target} HTTP/{version}", "Host: server.example.com", "Upgrade: websocket",
             "Connection: Upgrade", f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13", *extra]
    return eol.join(lines) + eol + eol


CHROME = ("Origin: http://example.com", "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits",
          "User-Agent: Mozilla/5.0", "Accept-Encoding: gzip, deflate, br", "Cookie: session=abc")
REQUESTS = {
    "rfc-sample": request(extra=("Origin: http://example.com", "Sec-WebSocket-Protocol: chat, superchat")),
    "chrome-deflate": request("/socket?room=1&x=%20", CHROME),
    "zap-subprotocol": request("/", ("Sec-WebSocket-Protocol: zap.v1",)),
    "deflate-offers-fallback": request("/", (
        "Sec-WebSocket-Extensions: permessage-deflate; client_no_context_takeover; server_max_window_bits=10, "
        "permessage-deflate; client_max_window_bits",
        "Sec-WebSocket-Extensions: x-webkit-deflate-frame")),
    "deflate-quoted-and-8-bits": request("/", (
        'Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits="8"; server_no_context_takeover',)),
    "deflate-invalid-params": request("/", (
        "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=16, permessage-deflate; foo",)),
    "bare-lf": request("/", eol="\n"),
    "with-frame-after": request("/") + frame(1, "hi", key=KEY).decode("latin-1"),
    "post": request(method="POST"),
    "http-1.0": request(version="1.0"),
    "bad-key": request(key="c2hvcnQ="),
    "two-keys": request(extra=(f"Sec-WebSocket-Key: {RFC_KEY}",)),
    "version-8": request().replace("Version: 13", "Version: 8"),
    "no-upgrade": request().replace("Upgrade: websocket\r\n", ""),
}
for name, text in REQUESTS.items():
    seed("handshake_request", name, b"\x00" + text.encode("latin-1"))
seed("handshake_request", "chrome-deflate-in-pieces", b"\x16" + request("/", CHROME).encode())
seed("handshake_request", "tight-limits-many-headers", b"\x01" + request("/", [f"X-H{i}: {i}" for i in range(12)]).encode())


def response(extra=(), status="101 Switching Protocols", accept=RFC_ACCEPT, eol="\r\n"):
    lines = [f"HTTP/1.1 {status}", "Upgrade: websocket", "Connection: Upgrade", f"Sec-WebSocket-Accept: {accept}",
             *extra]
    return eol.join(lines) + eol + eol


# The first byte: deflate settings of the client (0 none, 1 default, 2 and 3 others), piece size.
RESPONSES = {
    "rfc-sample-chat": (0, response(("Sec-WebSocket-Protocol: chat",))),
    "deflate-default": (1, response(("Sec-WebSocket-Extensions: permessage-deflate",))),
    "deflate-all-params": (1, response((
        "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
        "server_max_window_bits=10; client_max_window_bits=9",))),
    "deflate-asked-window": (2, response((
        "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=10; client_no_context_takeover",))),
    "deflate-too-wide": (2, response(("Sec-WebSocket-Extensions: permessage-deflate",))),
    "deflate-asked-no-context": (3, response((
        "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; client_max_window_bits=9",))),
    "deflate-twice": (1, response(("Sec-WebSocket-Extensions: permessage-deflate, permessage-deflate",))),
    "extension-not-offered": (0, response(("Sec-WebSocket-Extensions: permessage-deflate",))),
    "protocol-not-offered": (0, response(("Sec-WebSocket-Protocol: superchat",))),
    "two-accepts": (0, response((f"Sec-WebSocket-Accept: {RFC_ACCEPT}",))),
    "wrong-accept": (0, response(accept="x3JJHMbDL1EzLkh9GBhXDw==")),
    "bare-lf-with-frame-after": (1, response(eol="\n") + "\x81\x05Hello"),
    "not-found": (0, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"),
    "upgrade-required": (0, "HTTP/1.1 426 Upgrade Required\r\nSec-WebSocket-Version: 13\r\n\r\n"),
}
for name, (how, text) in RESPONSES.items():
    seed("handshake_response", name, bytes([how]) + text.encode("latin-1"))
seed("handshake_response", "deflate-in-pieces", bytes([1 | 5 << 2]) + response((
    "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits=12",)).encode())


# ---- envelopes (docs/PROTOCOL.md) ---------------------------------------------------------

ENVELOPES = {
    "event": '{"event":"chat","data":{"text":"hi κόσμε","n":[1,2.5,null,true]}}',
    "event-no-data": '{"event":"ping"}',
    "event-ack": '{"event":"save","data":"x","ack":9007199254740991}',
    "join": '{"event":"$join","data":{"room":"lobby"},"ack":1}',
    "call": '{"call":"add","data":{"a":1,"b":2},"ack":7}',
    "reply": '{"reply":7,"data":{"sum":3}}',
    "reply-error": '{"reply":3,"error":{"code":"bad_payload","message":"expected a number"}}',
    "room-event": '{"event":"chat","data":{},"epoch":"e1","rooms":{"lobby":4,"$all":9}}',
    "escaped-name": '{"event":"a\\"b\\u00e9\\ud83d\\ude00","data":"\\n"}',
    "whitespace": ' \n{ "event" : "x" , "data" : [ ] , "ack" : 2 }\t',
    "two-kinds": '{"event":"a","call":"b","ack":4}',
    "ack-zero": '{"event":"a","ack":0}',
    "ack-float": '{"call":"f","ack":1.0}',
    "duplicate-field": '{"event":"a","event":"b"}',
    "not-an-object": '[{"event":"a"}]',
    "truncated": '{"event":"a","data":{"x":',
}
for name, text in ENVELOPES.items():
    seed("envelope", name, b"\x80" + text.encode())  # max_name 128, the default
seed("envelope", "long-name-max-4", b"\x04" + b'{"event":"toolong"}')


# ---- connection scripts (fuzz_targets/connection.rs) -----------------------------------

class Script:
    """Assembles a script for the connection target; the methods mirror its steps."""

    def __init__(self, setup, limits=0x3F, deflate=0x06):
        self.out = bytearray([setup, limits, deflate])

    def b(self, *bs):
        self.out += bytes(bs)
        return self

    @staticmethod
    def payload(data, repeat=None):
        """A payload step: a length byte and a 16-byte pattern (repeated to the length)."""
        data = data.encode() if isinstance(data, str) else data
        n = len(data) if repeat is None else repeat
        assert n < 200 or (n % 2048 == 0 and n // 2048 < 56)
        pattern = (data * 16)[:16] if data else bytes(16)
        return bytes([n if n < 200 else 200 + n // 2048]) + pattern

    def send(self, peer, data, binary=False, how=3, repeat=None):
        return self.b(1 if peer else 9, (how << 1) | binary).b(*self.payload(data, repeat))

    def fragment(self, peer, data, fin, binary=False, cut=3):
        self.b(2 if peer else 10, (2 if fin else 0) | binary).b(*self.payload(data))
        return self if fin or binary else self.b(cut)

    def control(self, peer, payload=b"", pong=False):
        return self.b(3 if peer else 11, (len(payload) << 1) | pong).b(*payload)

    def close(self, peer, pick=0, reason=b""):
        return self.b(4 if peer else 12, pick, len(reason)).b(*reason)

    def deliver(self, n=0):  # the peer's bytes to conn (0: all)
        return self.b(5, n << 1)

    def write(self, n=0, vectored=False):  # conn's bytes to the peer (0: all)
        return self.b(7, (n << 1) | vectored)

    def raw(self, data):
        return self.b(0, len(data)).b(*data).b(0)

    def time(self, ms):
        return self.b(13, ms // 50)

    def fail(self, pick=6, reason=b""):
        return self.b(14, pick, len(reason)).b(*reason)

    def misc(self, what):  # 0 end of stream, 1 release buffers, 2 read hint
        return self.b(15, what)


SERVER, CLIENT = 0, 1
KEEPALIVE = 32
for role_name, role in (("server", SERVER), ("client", CLIENT)):
    peer_key = KEY if role == SERVER else None  # what the peer would send
    scripts = {
        "echo-and-close": Script(role).send(True, "hello").deliver().send(False, "hello").write()
        .close(False, 0, b"bye").write().deliver(),
        "no-context-takeover": Script(role | 6, deflate=0x81).send(True, TEXT * 4).deliver()
        .send(False, b"abc" * 60, binary=True).write().send(True, "again").deliver(4).deliver(),
        "window-bits": Script(role | 24, deflate=0x29).send(True, "x", repeat=4096).deliver(32).deliver()
        .send(False, "y", repeat=4096).write(100, True).write(),
        "fragments-both-ways": Script(role).fragment(True, "κόσμε", False).fragment(True, "€𝄞", False, cut=2)
        .fragment(True, "end", True).deliver(3).deliver().fragment(False, b"\x01\x02", False, binary=True)
        .control(False, b"mid").fragment(False, b"\x03", True, binary=True).write(),
        "ping-pong": Script(role).control(True, b"are you there").deliver().write().control(False, b"x", pong=True)
        .write().deliver(),
        "keepalive-timeout": Script(role | KEEPALIVE).time(0).time(1000).write().time(2000).time(3000)
        .write().misc(0),
        "keepalive-answered": Script(role | KEEPALIVE).time(0).time(1000).write().deliver().time(2500).write(),
        "close-timeout": Script(role).close(False, 1, b"going").write().time(5000).misc(0),
        "peer-closes": Script(role).send(False, "late", how=1).close(True, 1, b"bye").deliver().write().misc(0),
        "too-large": Script(role, limits=0x00).send(True, "z", repeat=2048).deliver().write(),
        "too-many-parts": Script(role, limits=0x7F).fragment(True, b"a", False, binary=True)
        .fragment(True, b"b", False, binary=True).fragment(True, b"c", False, binary=True)
        .fragment(True, b"d", False, binary=True).fragment(True, b"e", True, binary=True).deliver().write(),
        "held-pong": Script(role, limits=0xBF).send(False, "q", repeat=2048).control(True, b"p1")
        .control(True, b"p2").deliver().write(10).write(),
        "fail-connection": Script(role).send(True, "in flight").fail(6, b"internal").deliver().write(),
        "raw-frames": Script(role).raw(frame(1, "raw", key=peer_key)).raw(frame(9, b"", key=peer_key))
        .write().raw(frame(8, struct.pack(">H", 1000), key=peer_key)).write(),
        "raw-violation": Script(role).raw(frame(1, b"\xff", key=peer_key)).write(),
        "usage-errors": Script(role).control(False, bytes(126)).close(False, 7).fail(8).fail(0, bytes(124))
        .fragment(False, "a", False).send(False, "b").fragment(False, b"c", True, binary=True)
        .close(False, 3).send(False, "after").misc(1).misc(2).write(),
    }
    for name, script in scripts.items():
        seed("connection", f"{role_name}-{name}", script.out)


# ---- writing ------------------------------------------------------------------------------

def main():
    check = "--check" in sys.argv[1:]
    differ = []
    for target, seeds in sorted(SEEDS.items()):
        folder = os.path.join(CORPUS, target)
        present = set(os.listdir(folder)) if os.path.isdir(folder) else set()
        for name, data in seeds.items():
            path = os.path.join(folder, name)
            old = open(path, "rb").read() if name in present else None
            if old != data:
                differ.append(path)
                if not check:
                    os.makedirs(folder, exist_ok=True)
                    with open(path, "wb") as f:
                        f.write(data)
        for name in sorted(present - set(seeds)):
            differ.append(os.path.join(folder, name) + " (not made by seeds.py)")
    total = sum(len(d) for s in SEEDS.values() for d in s.values())
    counts = ", ".join(f"{t} {len(s)}" for t, s in sorted(SEEDS.items()))
    print(f"seeds.py: {sum(map(len, SEEDS.values()))} seeds, {total} bytes ({counts})")
    if differ:
        print(("differ from fuzz/corpus:\n  " if check else "written:\n  ") + "\n  ".join(
            os.path.relpath(p, ROOT) for p in differ))
    return 1 if check and differ else 0


if __name__ == "__main__":
    sys.exit(main())
