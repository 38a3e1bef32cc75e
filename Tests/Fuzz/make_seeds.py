#!/usr/bin/env python3
"""Writes the seed corpora of Lifeline's fuzz targets (Tests/Fuzz/<target>/corpus/).

Deterministic: running it again gives the same files. The SSE seeds are the WHATWG
format cases of Tests/SSETests/SSEParserSpecTests.swift; the flag-file seeds are flag files in
the style of Lifeline's own; the HTTP/2 seeds are hand-built client sessions. The input layouts
are described at the top of each target's Swift file and in docs/reliability.md.

    python3 Tests/Fuzz/make_seeds.py      # rewrites the seed files (a merged corpus keeps its extras)
"""
import hashlib
import os
import struct

ROOT = os.path.dirname(os.path.abspath(__file__))


def write(target, name, data):
    directory = os.path.join(ROOT, target, "corpus")
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "seed-" + name), "wb") as f:
        f.write(data)


# ---- sse-parser ------------------------------------------------------------------------------

BOM = b"\xef\xbb\xbf"
LONG = b"x" * 2048

# (name, streams, maxEventSize) — streams are joined with a startNewStream point between them.
SSE_CASES = [
    ("format-bom", [BOM + b"data:1\n\n" + BOM + b"data:2\n\ndata:3\n\n\n"], None),
    ("format-bom-2", [BOM + BOM + b"data:1\n\ndata:2\n\ndata:3\n\n\n"], None),
    ("format-comments", [b"data:1\r:\0\n:\r\ndata:2\n:" + LONG + b"\rdata:3\n:data:fail\r:" + LONG + b"\ndata:4\n\n"], None),
    ("format-data-before-final-empty-line", [b"retry:1000\ndata:test1\n\nid:test\ndata:test2\n"], None),
    ("format-field-data", [b"data:\n\ndata\ndata\n\ndata:test\n\n\n"], None),
    ("format-field-event", [b"event:test\ndata:x\n\ndata:x\n\n\n"], None),
    ("format-field-event-empty", [b"event: \ndata:data\n\n\n"], None),
    ("format-field-id", ["id: \u2026\nretry: 200\ndata: hello\n\n".encode(), "data: \u2026\n\n".encode()], None),
    ("format-field-id-3", [b"id: 1\ndata: 1\n\ndata: 2\n\nid: 2\ndata:3\n\ndata:4\n\n"], None),
    ("format-field-id-reset", [b"id: 1\ndata: 1\n\nid:\ndata:2\n\ndata:3\n\n"], None),
    ("format-field-id-reset-nocolon", [b"id: 1\ndata: 1\n\nid\ndata:2\n\ndata:3\n\n"], None),
    ("format-field-parsing", [b"data:\0\ndata:  2\rData:1\ndata\0:2\ndata:1\r\0data:4\nda-ta:3\rdata_5\ndata:3\rdata:\r\n data:32\ndata:4\n\n"], None),
    ("format-field-retry", [b"retry:03000\ndata:x\n\n\n"], None),
    ("format-field-retry-bogus", [b"retry:3000\nretry:1000x\ndata:x\n\n\n"], None),
    ("format-field-retry-empty", [b"retry\ndata:test\n\n\n"], None),
    ("format-field-unknown", [b"data:test\n data\ndata\nfoobar:xxx\njustsometext\n:thisisacommentyay\ndata:test\n\n\n"], None),
    ("format-leading-space", [b"data:\ttest\rdata: \ndata:test\n\n\n"], None),
    ("format-newlines", [b"data:test\r\ndata\ndata:test\r\n\r\n"], None),
    ("format-null-character", [b"data:\0\n\n\n\n"], None),
    ("format-utf-8", ["data:ok\u2026\n\n\n".encode()], None),
    ("format-field-id-null", [b"id: x\0x\nretry: 200\ndata: hello\n\n"], None),
    ("invalid-utf8", [b"data:a\xffb\n\ndata:\xe2\x82\ndata:\x82\xac\n\ndata:\xed\xa0\x80\xc0\xaf\n\n"], None),
    ("invalid-utf8-id-type", [b"id:\xff\nevent:\xc3\ndata:x\n\n"], None),
    ("multibyte", ["id: \u00fc\nevent: \u00f1\ndata: h\u00e9llo \U0001F30D \u3053\u3093\n\n".encode()], None),
    ("terminators", [b"data:a\r\rdata:b\r\rdata:a\n\r\ndata:c\r\n\ndata:d\n\rdata:e\n\n\n\r\n\r\r\n"], None),
    ("fields", [b"data:  a: b \n\nDATA:x\nId:1\nEvent:e\n\nevent:a\nevent:b\ndata:x\n\nevent:a\n\ndata::x\n\n:hi\n\n"], None),
    ("ids", [b"id: 1\nid: 2\0\ndata:x\n\nid: 7\n\nid\n\nevent: ping\nid: 8\n\nevent: ping\n\nretry: 10\n\n"], None),
    ("retry", [b"retry:0\nretry: 9223372036854775807\nretry: 9223372036854775808\nretry: " + b"9" * 100 + b"\nretry: 12 \nretry:  5\nretry: -1\nretry: +1\nretry: 1.5\nretry:0x10\nretry:\ndata:x\nretry:5\n\n"], None),
    ("unterminated", [b"data:x\n\nretry: 5"], None),
    ("partial-bom", [b"\xef\xbbdata:x\n\ndata:y\n\n"], None),
    ("lone-ef", [b"\xefdata:x\n\n"], None),
    ("bom-per-stream", [BOM + b"data:a\n\n", BOM + b"data:b\n\n"], None),
    ("new-stream-discards", [b"data:a\n\ndata:b\nid: 9\ndata:c", b"\ndata:d\n\n"], None),
    ("cr-at-stream-end", [b"data:a\n\ndata:b\r", b"\ndata:c\n\n"], None),
    ("id-carries-over", [b"id: 1\ndata:a\n\n", b"data:b\n\n"], None),
    ("limit-at", [b"data:0123456789\n\n"], 16),
    ("limit-over", [b"data:0123456789A\n\n"], 16),
    ("limit-crlf", [b"data:0123\r\ndata:\r\n\r\n"], 16),
    ("limit-lines-add-up", [b"data:012345\ndata:\n\n"], 16),
    ("limit-restarts", [b"data:0123456789\n\n" * 5], 16),
    ("limit-outputs-before-error", [b"data:a\n\nretry:1\ndata:0123456789ABCDEF\n\n"], 16),
    ("limit-comments", [b"data:a\n" + b":0123456789abcd\n" * 20 + b"data:b\n\n"], 16),
    ("limit-comment-line", [b":0123456789abcdef\n\n"], 16),
    ("limit-unterminated", [b"data:0123456789AB"], 16),
    ("limit-bom", [BOM + b"data:0123456789\n\n"], 16),
    ("limit-skip-event", [b"id: 5\ndata:0123456789ABCDEF\n\n", b"data:x\n\n"], 16),
]

CHUNKINGS = [[], [1], [3, 1, 7], [0, 2], [5], [2, 0, 11, 1]]


def sse_seed(index, streams, max_event_size):
    size_byte = 0xFF if max_event_size is None else max_event_size - 1
    lengths = CHUNKINGS[index % len(CHUNKINGS)]
    flags = len(lengths)
    if index % 3 == 1:
        flags |= 0x40  # ByteBuffer API
    if index % 5 == 2:
        flags |= 0x20  # starting lastEventID
    data = b"".join(streams)
    restart = b""
    if len(streams) > 1:
        flags |= 0x10
        restart = struct.pack(">H", len(streams[0]))
        if "skip" in SSE_CASES[index][0]:
            flags |= 0x80
    return bytes([size_byte, flags]) + bytes(lengths) + restart + data


for i, (name, streams, limit) in enumerate(SSE_CASES):
    write("sse-parser", name, sse_seed(i, streams, limit))


# ---- flag-file -------------------------------------------------------------------------------

SEP = b"\n%%%\n"
FLAG_SEEDS = {
    "basic": b"# Lifeline\n--listen=127.0.0.1:8080\n--heartbeat=15s\n--max-event-size=1MiB\n--check\n",
    "every-kind": (b"--listen=[::1]:8080\n--listen=:9090\n--route=/events=http://origin:8000/sse\n--route=/b=x\n"
                   b"--upstream=http://127.0.0.1:8001\n--heartbeat=1m30s\n--heartbeat-comment=ping # not a comment\n"
                   b"--client-retry=1.5s\n--upstream-head-timeout=250ms\n--max-request-head=64KiB\n"
                   b"--replay-events=0\n--h2-max-streams=100000\n--offset=-42\n--log-format=json\n--log-level=debug\n"
                   b"--verbose=false\n--delay=1h\n--delay=500us\n--size=4GiB\n--size=1000\n"),
    "errors": (b"--heartbeat=30\n--heartbeat=-1s\n--heartbeat=5x\n--max-event-size=1.5MiB\n--max-event-size=4kb\n"
               b"--replay-events=-1\n--h2-max-streams=0\n--offset=99999999999999999999\n--log-format=xml\n"
               b"--check=yes\n--heartbeet=1s\n--no-check\n-x\nheartbeat=1s\n--listen 8080\n--upstream\n--flagfile=\n"
               b"--listen=localhost\n--listen=[::1\n--listen=::1:80\n--listen=h:99999\n--upstream-head-timeout=0\n"),
    "whitespace-bom-crlf": "\ufeff  --heartbeat=5s   \t\r\n\t# indented comment\r\n--name=edge\r--check\n\n--offset= 7\n".encode(),
    "includes": (b"--heartbeat=1s\n--flagfile=b.flags\n--flagfile=sub/c.flags\n--threads=2\n" + SEP +
                 b"--route=/a=x\n--flagfile=/etc/lifeline/abs.flags\n" + SEP +
                 b"--heartbeat=7s\n--flagfile=../b.flags\n" + SEP + b"--log-level=error\n"),
    "include-cycle": b"--check\n--flagfile=main.flags\n--flagfile=./b.flags\n" + SEP + b"--flagfile=../conf/main.flags\n",
    "include-missing": b"--flagfile=missing.flags\n--flagfile=sub/../sub/c.flags\n" + SEP + SEP + b"--flagfile=../sub/c.flags\n",
    "durations": b"--heartbeat=0\n--heartbeat=1h30m\n--heartbeat=1.000000000000000000001s\n--heartbeat=2562047h47m16.854775807s\n--heartbeat=2562048h\n--heartbeat=1\xc2\xb5s\n--heartbeat=3\xce\xbcs\n--heartbeat=1.s\n--heartbeat=.5s\n",
    "sizes": b"--max-event-size=0\n--max-event-size=9223372036854775807\n--max-event-size=9223372036854775807B\n--max-event-size=8388608TiB\n--max-event-size=\xd9\xa3\n--size=1TB\n",
    "unicode": "--heartbeat-comment=h\u00e9llo \u2028 w\u00f6rld\n--upstream=\u0661\u0662\n--listen=\u0661:80\n--route=/\u00e9=\u2026\n--log-level=\u0131nfo\n--log-level==\u0301\n".encode(),
    "invalid-utf8": b"--heartbeat-comment=\xff\xfe\n--route=/\xc3=\xc3\n--\xff=1\n\xef\xbb\xbf--check\n",
    "empty": b"",
    "listen-addresses": (b"--listen=127.0.0.1:0\n--listen=[fe80::1%eth0]:443\n--listen=localhost:65535\n--listen=:65536\n"
                         b"--listen=http://x:1\n--listen=[::1]\n--listen=[::1]x\n--listen=[zz]:1\n--listen=a b:1\n--listen=h:\n--listen=h:+1\n"),
    "booleans-and-choices": b"--check=true\n--check=false\n--check=TRUE\n--verbose\n--verbose=\n--log-format=text\n--log-level=\n--log-level=info \n",
    "repeated": b"--delay=1s\n--delay=2s\n--delay=bad\n--size=1KiB\n--size=1KiB\n--route=/=u\n--route=/a=\n--route=a=b\n--route=/x\n",
    "no-value-forms": b"--heartbeat\n--heartbeat=\n--=1\n--\n---heartbeat=1s\n-- heartbeat=1s\n--heart beat=1s\n--heartbeat =1s\n--flagfile\n",
    "long-name": b"--" + b"heartbeat" * 300 + b"=1s\n--" + b"h" * 2000 + b"\n--no-verbose\n--heartbea=1s\n--hearbteat=1s\n",
    "integers": b"--offset=+7\n--offset=-0\n--offset=9223372036854775807\n--offset=-9223372036854775808\n--offset=--1\n--replay-events=1_000\n--h2-max-streams=100001\n--offset=\xd9\xa3\n",
}
for name, data in FLAG_SEEDS.items():
    write("flag-file", name, data)


# ---- h2-server -------------------------------------------------------------------------------

def frame(kind, flags, stream, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream & 0x7FFFFFFF) + payload


def settings(entries=(), ack=False):
    return frame(4, 1 if ack else 0, 0, b"".join(struct.pack(">HI", k, v) for k, v in entries))


def hpack_string(b):
    assert len(b) < 127
    return bytes([len(b)]) + b


def headers_block(fields):
    out = b""
    for name, value in fields:
        out += b"\x00" + hpack_string(name.encode()) + hpack_string(value.encode())
    return out


def request(stream, path, method="GET", extra=(), end_stream=True, indexed=False):
    if indexed:
        # :method GET (2), :scheme http (6), :path / (4) from the static table; :authority literal.
        block = b"\x82\x86\x84" + b"\x41" + hpack_string(b"localhost")
        if path != "/":
            block = b"\x82\x86\x44" + hpack_string(path.encode()) + b"\x41" + hpack_string(b"localhost")
        block += headers_block(extra)
    else:
        block = headers_block([(":method", method), (":scheme", "http"), (":path", path), (":authority", "localhost")] + list(extra))
    return frame(1, 0x4 | (0x1 if end_stream else 0), stream, block)


def data(stream, payload, end_stream=False, pad=None):
    if pad is not None:
        return frame(0, 0x8 | (0x1 if end_stream else 0), stream, bytes([pad]) + payload + b"\0" * pad)
    return frame(0, 0x1 if end_stream else 0, stream, payload)


def rst(stream, code=8):
    return frame(3, 0, stream, struct.pack(">I", code))


def window_update(stream, increment):
    return frame(8, 0, stream, struct.pack(">I", increment))


def ping(opaque=0, ack=False):
    return frame(6, 1 if ack else 0, 0, struct.pack(">Q", opaque))


def goaway(last=0, code=0):
    return frame(7, 0, 0, struct.pack(">II", last, code))


HANDSHAKE = settings() + settings(ack=True)
LIFELINE_PING = 0x4C49_4645_4C49_4E45

H2_SEEDS = {
    "sse": (0, [], HANDSHAKE + request(1, "/sse/a", extra=[("last-event-id", "42"), ("cookie", "a=1"), ("cookie", "b=2")])),
    "plain-and-sse": (0, [], HANDSHAKE + request(1, "/plain") + request(3, "/sse") + request(5, "/empty") + request(7, "/nothing")),
    "indexed": (0, [], HANDSHAKE + request(1, "/", indexed=True) + request(3, "/sse", indexed=True)),
    "echo-upload": (0, [], HANDSHAKE + request(1, "/echo", method="POST", end_stream=False) + data(1, b"hello") +
                    data(1, b"world", pad=3) + data(1, b"", end_stream=True)),
    "big-window": (0, [], settings([(4, 10)]) + settings(ack=True) + request(1, "/big") + window_update(1, 100) +
                   window_update(0, 1 << 20) + window_update(1, 1 << 20)),
    "reset-and-rapid-reset": (0x20, [], HANDSHAKE + request(1, "/sse") + rst(1) + request(3, "/reset") + request(5, "/sse") + rst(5) +
                              request(7, "/sse") + rst(7) + request(9, "/sse") + rst(9) + request(11, "/sse") + rst(11)),
    "ping-flood": (0x20, [], HANDSHAKE + b"".join(ping(i) for i in range(8)) + settings() * 3),
    "graceful-shutdown": (0x40, [2, 30, 200], HANDSHAKE + request(1, "/sse") + request(3, "/late") + ping(LIFELINE_PING, ack=True) + goaway(0)),
    "blocked-writes": (0x80 | 0x02, [9, 0, 40], HANDSHAKE + request(1, "/sse") + request(3, "/big") + window_update(0, 1 << 16)),
    # Before the client acknowledges the server's SETTINGS, streams over the limit are refused;
    # after, exceeding it is a connection error (nghttp2).
    "max-streams": (0x01, [], settings() + request(1, "/sse") + request(3, "/sse") + request(5, "/sse") + request(7, "/plain")),
    "max-streams-acked": (0x01, [], HANDSHAKE + request(1, "/sse") + request(3, "/sse") + request(5, "/sse")),
    "header-list-too-large": (0x04, [], HANDSHAKE + request(1, "/sse", extra=[("x-big", "y" * 120), ("x-big2", "z" * 100)]) + request(3, "/plain")),
    "small-window": (0x08 | 0x10, [], HANDSHAKE + request(1, "/echo", method="POST", end_stream=False) + data(1, b"0123456789abcdef0123")),
    "continuation": (0, [], HANDSHAKE + frame(1, 0x1, 1, headers_block([(":method", "GET"), (":scheme", "https")])) +
                     frame(9, 0x4, 1, headers_block([(":path", "/sse"), (":authority", "h")]))),
    "trailers": (0, [], HANDSHAKE + request(1, "/echo", method="POST", end_stream=False) + data(1, b"x") +
                 frame(1, 0x5, 1, headers_block([("x-trailer", "1")]))),
    "twice": (0x02 | 0x10, [], HANDSHAKE + request(1, "/twice") + request(3, "/sse") + request(5, "/sse")),
    "priority-and-unknown": (0, [], HANDSHAKE + frame(2, 0, 1, struct.pack(">IB", 0, 16)) + frame(0xA, 0, 0, b"ext") +
                             request(1, "/sse") + frame(1, 0x24, 3, struct.pack(">IB", 1, 200) + headers_block([(":method", "GET"), (":scheme", "http"), (":path", "/plain"), (":authority", "h")]))),
    "protocol-error": (0, [], HANDSHAKE + request(2, "/even") + data(1, b"x")),
    "bad-preface-rest": (0, [1], b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
    "split-everything": (0x10, [1], HANDSHAKE + request(1, "/sse") + request(3, "/plain") + ping(7) + window_update(0, 1000)),
    "remove-handler": (0, [20, 40, 7], HANDSHAKE + request(1, "/sse") + request(3, "/late") + request(5, "/big") + ping(1)),
    "error-half-way": (0, [30, 30], HANDSHAKE + request(1, "/sse") + request(3, "/late")),
    "paused-upload": (0x08, [40, 9], HANDSHAKE + request(1, "/upload", method="POST", end_stream=False) + data(1, b"a" * 10) +
                      data(1, b"b" * 6) + window_update(1, 100) + request(3, "/upload", method="POST", end_stream=False) +
                      data(3, b"c" * 16) + rst(3) + request(5, "/upload", method="POST", end_stream=False) + data(5, b"d", end_stream=True)),
    "end-streams": (0, [], HANDSHAKE + request(1, "/sse") + request(3, "/late") + request(5, "/sse")),
}
H2_FLAGS = {"remove-handler": 0x80, "error-half-way": 0x40, "end-streams": 0x20 | 0x10, "split-everything": 0x10,
            "graceful-shutdown": 0x10}
for name, (config, lengths, body) in H2_SEEDS.items():
    flags = len(lengths) | H2_FLAGS.get(name, 0)
    write("h2-server", name, bytes([config, flags]) + bytes(lengths) + body)
