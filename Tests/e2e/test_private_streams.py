"""Event streams that answer requests other than a shared GET (POST to chat and LLM APIs): private
generations with heartbeats in the pauses, never requested again (issue 17, first part).

`TokenOrigin` is an OpenAI-like origin: `POST /v1/chat` answers `text/event-stream` with tokens and
long pauses, counts its POSTs, and can break off mid-generation.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


class TokenOrigin:
    def __init__(self, tokens=("Hel", "lo", ", ", "wor", "ld"), pauses=None, break_after=None, ids=True, head_delay=0.0):
        self.head_delay = head_delay
        self.tokens = tokens
        self.pauses = pauses or {}          # token index -> seconds to wait before it
        self.break_after = break_after      # close the connection after this many tokens, no end
        self.ids = ids
        self.posts = 0
        self.bodies: list[bytes] = []
        origin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                # A page for the browser tests, on the gateway's origin (the route is "/").
                page = b"<!doctype html><title>chat</title><p>chat</p>"
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(page)))
                self.end_headers()
                self.wfile.write(page)

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                origin.posts += 1
                origin.bodies.append(body)
                time.sleep(origin.head_delay)
                if self.path.startswith("/v1/chat/completions") or self.path.startswith("/v1/messages"):
                    return self.sdk_stream()
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Transfer-Encoding", "chunked")
                self.send_header("X-Request-Id", f"req-{origin.posts}")
                self.send_header("Set-Cookie", "session=abc; Path=/")
                self.end_headers()
                for n, token in enumerate(origin.tokens):
                    if origin.break_after is not None and n == origin.break_after:
                        self.wfile.flush()
                        self.connection.shutdown(socket.SHUT_RDWR)
                        return
                    time.sleep(origin.pauses.get(n, 0.05))
                    lines = (f"id: {n + 1}\n" if origin.ids else "") + "data: " + json.dumps({"token": token}) + "\n\n"
                    data = lines.encode()
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                    self.wfile.flush()
                done = b"data: [DONE]\n\n"
                self.wfile.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(done), done))
                self.wfile.flush()

            def send_event(self, text: str):
                data = text.encode()
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                self.wfile.flush()

            def sdk_stream(self):
                # The shapes the OpenAI and Anthropic APIs stream, with the origin's pauses.
                openai_shape = self.path.startswith("/v1/chat/completions")
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream; charset=utf-8")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                if not openai_shape:
                    self.send_event("event: message_start\ndata: " + json.dumps({"type": "message_start", "message": {
                        "id": "msg_1", "type": "message", "role": "assistant", "content": [], "model": "test",
                        "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 1, "output_tokens": 0}}}) + "\n\n")
                    self.send_event("event: content_block_start\ndata: " + json.dumps({
                        "type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}) + "\n\n")
                for n, token in enumerate(origin.tokens):
                    time.sleep(origin.pauses.get(n, 0.02))
                    if openai_shape:
                        chunk = {"id": "c1", "object": "chat.completion.chunk", "created": 0, "model": "test",
                                 "choices": [{"index": 0, "delta": {"content": token}, "finish_reason": None}]}
                        self.send_event("data: " + json.dumps(chunk) + "\n\n")
                    else:
                        self.send_event("event: content_block_delta\ndata: " + json.dumps({
                            "type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": token}}) + "\n\n")
                if openai_shape:
                    self.send_event("data: [DONE]\n\n")
                else:
                    self.send_event("event: content_block_stop\ndata: " + json.dumps({"type": "content_block_stop", "index": 0}) + "\n\n")
                    self.send_event("event: message_delta\ndata: " + json.dumps({
                        "type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                        "usage": {"output_tokens": len(origin.tokens)}}) + "\n\n")
                    self.send_event("event: message_stop\ndata: " + json.dumps({"type": "message_stop"}) + "\n\n")
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def token_origin():
    origins = []

    def make(**kwargs) -> TokenOrigin:
        origin = TokenOrigin(**kwargs)
        origins.append(origin)
        return origin

    yield make
    for origin in origins:
        origin.close()


def _exchange(port: int, request: bytes, read_tokens: int | None = None, read_for: float = 20,
              drop: bool = False) -> tuple[str, bytes, list[tuple[float, bytes]]]:
    """Sends `request` and reads the answer: to its end (the terminating chunk, a complete
    Content-Length body, or the connection closing), or until `read_tokens` tokens came.

    Returns the head, the body as received (still chunked), and (time, bytes) per read. With `drop`
    the connection is reset afterwards (SO_LINGER 0), as a client that vanishes."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=read_for)
    sock.sendall(request)
    raw, arrivals, t0 = b"", [], time.monotonic()
    while time.monotonic() - t0 < read_for:
        try:
            data = sock.recv(65536)
        except (ConnectionResetError, socket.timeout):
            break
        if not data:
            break
        raw += data
        arrivals.append((time.monotonic() - t0, data))
        head, _, rest = raw.partition(b"\r\n\r\n")
        if read_tokens is not None and len(_tokens(_dechunk(rest)[0].decode(errors="replace"))) >= read_tokens:
            break
        length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
        if raw.endswith(b"\r\n0\r\n\r\n") or (b"\r\n\r\n" in raw and length and len(rest) >= int(length.group(1))):
            break
    if drop:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    sock.close()
    head, _, rest = raw.partition(b"\r\n\r\n")
    return head.decode("latin-1"), rest, arrivals


def _dechunk(rest: bytes) -> tuple[bytes, bool]:
    """A chunked body's bytes so far, and whether it ended with the terminating chunk."""
    body = b""
    while rest:
        size_line, _, rest = rest.partition(b"\r\n")
        if not size_line:
            break
        try:
            size = int(size_line, 16)
        except ValueError:
            break
        if size == 0:
            return body, True
        body += rest[:size]
        rest = rest[size + 2:]
    return body, False


def _post_request(body: bytes, headers: dict[str, str] | None = None, path: str = "/v1/chat") -> bytes:
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {"Accept": "application/json"}).items()).encode()
    return (b"POST " + path.encode() + b" HTTP/1.1\r\nHost: gw\r\n" + extra
            + b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))


def _post(port: int, body: bytes, timeout: float = 20) -> tuple[str, bytes, list[tuple[float, bytes]], bool]:
    """POSTs like an SDK (Accept: application/json) and reads the whole answer: the head, the
    de-chunked body, the reads as they came, and whether it ended cleanly (terminating chunk)."""
    head, rest, arrivals = _exchange(port, _post_request(body), read_for=timeout)
    body_bytes, clean = _dechunk(rest)
    return head, body_bytes, arrivals, clean


def test_a_post_stream_gets_heartbeats_in_its_pauses_and_ends_as_the_origin_did(token_origin, gateway):
    origin = token_origin(pauses={2: 2.5, 4: 2.5})
    gw = gateway(f"--route=/=http://127.0.0.1:{origin.port}", "--heartbeat=1s")
    request = json.dumps({"model": "test", "stream": True, "messages": [{"role": "user", "content": "hi"}]}).encode()
    head, body, arrivals, clean = _post(gw.port, request)
    assert head.startswith("HTTP/1.1 200"), head
    assert "text/event-stream" in head.lower()
    assert "x-request-id: req-1" in head.lower(), "the origin's own headers reach its client"
    assert "set-cookie: session=abc" in head.lower(), "its cookies too: the answer is this client's alone"
    text = body.decode()
    tokens = [json.loads(line[6:])["token"] for line in text.split("\n") if line.startswith("data: {")]
    assert "".join(tokens) == "Hello, world"
    assert text.count(":heartbeat") + text.count(": heartbeat") >= 4, f"heartbeats in the two 2.5 s pauses: {text!r}"
    assert "data: [DONE]" in text
    assert clean, "the origin ended its response cleanly, and so did the gateway"
    assert origin.posts == 1 and origin.bodies == [request], "sent once, body as it was"


def test_an_origin_that_breaks_off_breaks_the_clients_response_and_is_not_asked_again(token_origin, gateway):
    origin = token_origin(break_after=2)
    gw = gateway(f"--route=/=http://127.0.0.1:{origin.port}", "--heartbeat=1s", "--reconnect-min=50ms")
    head, body, _, clean = _post(gw.port, b"{}")
    assert head.startswith("HTTP/1.1 200"), head
    assert b'"Hel"' in body and b'"lo"' in body and b"[DONE]" not in body
    assert not clean, "no clean end for a generation that broke off"
    time.sleep(1)
    assert origin.posts == 1, "a POST is never sent twice"


def test_without_ids_and_with_every_flag_that_adds_to_a_stream_the_events_are_intact(token_origin, gateway):
    origin = token_origin(ids=False, pauses={1: 1.5})
    gw = gateway(f"--route=/=http://127.0.0.1:{origin.port}", "--heartbeat=500ms", "--client-retry=3s",
                 "--assign-ids", "--opening-comment=hello")
    _, body, _, clean = _post(gw.port, b"{}")
    text = body.decode()
    tokens = [json.loads(line[6:])["token"] for line in text.split("\n") if line.startswith("data: {")]
    assert "".join(tokens) == "Hello, world" and clean


def _resume(port: int, path: str, headers: dict[str, str], read_for: float = 10) -> tuple[str, str, bool]:
    """GETs a resume path; returns the head, the de-chunked text and whether it ended cleanly."""
    extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    head, rest, _ = _exchange(port, f"GET {path} HTTP/1.1\r\nHost: gw\r\n{extra}\r\n".encode(), read_for=read_for)
    text, clean = _dechunk(rest) if "chunked" in head.lower() else (rest, False)
    return head, text.decode(), clean

def _tokens(text: str) -> list[str]:
    return [json.loads(line[6:])["token"] for line in text.split("\n") if line.startswith("data: {")]


def _header(head: str, name: str) -> str | None:
    for line in head.split("\r\n")[1:]:
        key, _, value = line.partition(":")
        if key.strip().lower() == name.lower():
            return value.strip()
    return None


def _post_and_drop(port: int, after_tokens: int, auth: str = "Bearer k1") -> tuple[str, list[str]]:
    """POSTs, reads until `after_tokens` tokens arrived, then drops the connection (RST)."""
    head, rest, _ = _exchange(port, _post_request(b"{}", {"Authorization": auth}), read_tokens=after_tokens, drop=True)
    return head, _tokens(_dechunk(rest)[0].decode(errors="replace"))

def test_a_dropped_generation_resumes_by_id_and_by_count_without_a_second_post(token_origin, gateway):
    origin = token_origin(tokens=tuple(f"t{n}" for n in range(12)), pauses={n: 0.15 for n in range(12)})
    gw = gateway(f"--route=/=http://127.0.0.1:{origin.port}", "--heartbeat=1s")
    head, got = _post_and_drop(gw.port, after_tokens=3)
    resume = _header(head, "Lifeline-Resume")
    assert resume and resume.startswith("/_lifeline/resume/") and len(resume) == len("/_lifeline/resume/") + 32, head
    assert "Lifeline-Resume" in (_header(head, "Access-Control-Expose-Headers") or "")
    # By id: the events after the last one it got, then the live rest, then the clean end.
    rhead, text, clean = _resume(gw.port, resume, {"Authorization": "Bearer k1", "Last-Event-ID": str(len(got))})
    assert rhead.startswith("HTTP/1.1 200"), rhead
    assert _header(rhead, "Lifeline-Replay") == "hit"
    assert got + _tokens(text) == [f"t{n}" for n in range(12)], (got, _tokens(text))
    assert clean and "[DONE]" in text
    # By count, after the generation ended (kept for --resume-window): what followed, then the end.
    rhead, text, clean = _resume(gw.port, resume, {"Authorization": "Bearer k1", "Lifeline-Resume-From": "5"})
    assert _header(rhead, "Lifeline-Replay") == "hit", rhead
    assert _tokens(text) == [f"t{n}" for n in range(5, 12)] and clean
    assert origin.posts == 1, "the generation ran once"


def test_resume_tokens_are_bound_to_the_caller_and_not_guessable(token_origin, gateway):
    origin = token_origin(tokens=("a", "b", "c"), pauses={1: 0.5})
    gw = gateway(f"--route=/=http://127.0.0.1:{origin.port}")
    head, _ = _post_and_drop(gw.port, after_tokens=1, auth="Bearer mine")
    resume = _header(head, "Lifeline-Resume")
    for headers in ({"Authorization": "Bearer yours"}, {}, {"Authorization": "Bearer mine, x"}):
        rhead, body, _ = _resume(gw.port, resume, headers, read_for=3)
        assert rhead.startswith("HTTP/1.1 404"), (headers, rhead)
    for path in ("/_lifeline/resume/" + "0" * 32, "/_lifeline/resume/nope", resume[:-1] + ("0" if resume[-1] != "0" else "1")):
        rhead, body, _ = _resume(gw.port, path, {"Authorization": "Bearer mine"}, read_for=3)
        assert rhead.startswith("HTTP/1.1 404"), (path, rhead)
    # The right caller still gets it.
    rhead, text, clean = _resume(gw.port, resume, {"Authorization": "Bearer mine", "Lifeline-Resume-From": "1"})
    assert rhead.startswith("HTTP/1.1 200") and _tokens(text) == ["b", "c"] and clean


def test_a_generation_is_forgotten_after_the_resume_window(token_origin, gateway):
    origin = token_origin(tokens=("a", "b"))
    gw = gateway(f"--route=/=http://127.0.0.1:{origin.port}", "--resume-window=1s")
    head, _, _, clean = _post(gw.port, b"{}")
    assert clean
    resume = _header(head, "Lifeline-Resume")
    rhead, text, _ = _resume(gw.port, resume, {"Lifeline-Resume-From": "0"}, read_for=3)
    assert rhead.startswith("HTTP/1.1 200") and _tokens(text) == ["a", "b"]
    time.sleep(1.5)
    rhead, _, _ = _resume(gw.port, resume, {"Lifeline-Resume-From": "0"}, read_for=3)
    assert rhead.startswith("HTTP/1.1 404"), rhead


def test_memory_bounds_per_generation_and_for_all_kept_ones(token_origin, gateway):
    long_tokens = tuple("x" * 100 + str(n) for n in range(40))  # ~5 KB of events
    origin = token_origin(tokens=long_tokens, pauses={n: 0.01 for n in range(40)})
    gw = gateway(f"--route=/=http://127.0.0.1:{origin.port}", "--private-stream-bytes=2KiB",
                 "--private-streams-memory=3KiB")
    head, _, _, clean = _post(gw.port, b"{}")
    assert clean
    first = _header(head, "Lifeline-Resume")
    # Only the last ~2 KiB are kept: a resume from the start is a miss, one from near the end a hit.
    rhead, text, _ = _resume(gw.port, first, {"Lifeline-Resume-From": "0"}, read_for=3)
    assert _header(rhead, "Lifeline-Replay") == "miss", rhead
    rhead, text, _ = _resume(gw.port, first, {"Lifeline-Resume-From": "38"}, read_for=3)
    assert _header(rhead, "Lifeline-Replay") == "hit" and len(_tokens(text)) == 2, (rhead, text)
    # Two more ended generations: with 3 KiB for all, the one that ended first is forgotten.
    second = _header(_post(gw.port, b"{}")[0], "Lifeline-Resume")
    third = _header(_post(gw.port, b"{}")[0], "Lifeline-Resume")
    time.sleep(0.3)
    assert _resume(gw.port, first, {"Lifeline-Resume-From": "38"}, read_for=3)[0].startswith("HTTP/1.1 404")
    assert _resume(gw.port, third, {"Lifeline-Resume-From": "38"}, read_for=3)[0].startswith("HTTP/1.1 200")
    assert second != third and origin.posts == 3


def _raw_post(port: int, body: bytes, headers: dict[str, str], read_tokens: int | None = None, read_for: float = 10):
    """POSTs with these headers; reads `read_tokens` tokens then drops, or reads to the end."""
    head, rest, _ = _exchange(port, _post_request(body, headers), read_tokens=read_tokens, read_for=read_for,
                              drop=read_tokens is not None)
    return head, _dechunk(rest)[0].decode(errors="replace") if "chunked" in head.lower() else rest.decode(errors="replace")

def test_an_idempotent_retry_joins_the_first_generation_and_another_body_is_refused(token_origin, gateway):
    origin = token_origin(tokens=tuple(f"t{n}" for n in range(8)), pauses={n: 0.1 for n in range(8)})
    gw = gateway(f"--route=/=http://127.0.0.1:{origin.port}")
    body = b'{"messages":[{"role":"user","content":"hi"}]}'
    key = {"Authorization": "Bearer k", "Idempotency-Key": "retry-1"}
    head, first = _raw_post(gw.port, body, key, read_tokens=2)
    assert head.startswith("HTTP/1.1 200") and len(_tokens(first)) >= 2
    # The SDK retries after the connection error: same key, same body.
    head, again = _raw_post(gw.port, body, key)
    assert head.startswith("HTTP/1.1 200"), head
    assert _tokens(again) == [f"t{n}" for n in range(8)], "the first generation, from its start"
    assert origin.posts == 1, "no second request to the origin"
    # Another body with the same key: refused.
    head, _ = _raw_post(gw.port, b'{"other":1}', key)
    assert head.startswith("HTTP/1.1 422"), head
    # Another caller's key is its own.
    head, theirs = _raw_post(gw.port, body, {"Authorization": "Bearer other", "Idempotency-Key": "retry-1"})
    assert head.startswith("HTTP/1.1 200") and len(_tokens(theirs)) == 8
    assert origin.posts == 2


def test_a_retry_while_the_first_waits_for_its_answer_is_a_conflict(token_origin, gateway):
    origin = token_origin(tokens=("a", "b"), head_delay=1.5)
    gw = gateway(f"--route=/=http://127.0.0.1:{origin.port}")
    key = {"Idempotency-Key": "k2"}
    result = {}
    first = threading.Thread(target=lambda: result.setdefault("first", _raw_post(gw.port, b"{}", key)))
    first.start()
    time.sleep(0.5)
    head, _ = _raw_post(gw.port, b"{}", key, read_for=3)
    assert head.startswith("HTTP/1.1 409"), head
    first.join(10)
    assert result["first"][0].startswith("HTTP/1.1 200")
    assert origin.posts == 1


EVERY_ADDITION = ("--heartbeat=200ms", "--client-retry=3s", "--assign-ids", "--opening-comment=hello")


@pytest.mark.parametrize("flags", [("--heartbeat=200ms",), EVERY_ADDITION], ids=["heartbeats", "every-addition"])
def test_the_openai_sdk_reads_a_stream_through_the_gateway_as_from_the_origin(token_origin, gateway, flags):
    openai = pytest.importorskip("openai")
    origin = token_origin(tokens=("Hel", "lo", " wor", "ld"), pauses={1: 1.0, 3: 1.0})
    gw = gateway(f"--route=/=http://127.0.0.1:{origin.port}", *flags)
    client = openai.OpenAI(api_key="sk-test", base_url=f"http://127.0.0.1:{gw.port}/v1", max_retries=0)
    stream = client.chat.completions.create(model="test", messages=[{"role": "user", "content": "hi"}], stream=True)
    pieces = [chunk.choices[0].delta.content for chunk in stream if chunk.choices and chunk.choices[0].delta.content]
    assert pieces == ["Hel", "lo", " wor", "ld"]
    assert origin.posts == 1


@pytest.mark.parametrize("flags", [("--heartbeat=200ms",), EVERY_ADDITION], ids=["heartbeats", "every-addition"])
def test_the_anthropic_sdk_reads_a_stream_through_the_gateway_as_from_the_origin(token_origin, gateway, flags):
    anthropic = pytest.importorskip("anthropic")
    origin = token_origin(tokens=("Hel", "lo", " wor", "ld"), pauses={1: 1.0, 3: 1.0})
    gw = gateway(f"--route=/=http://127.0.0.1:{origin.port}", *flags)
    client = anthropic.Anthropic(api_key="sk-test", base_url=f"http://127.0.0.1:{gw.port}", max_retries=0)
    with client.messages.stream(model="test", max_tokens=16, messages=[{"role": "user", "content": "hi"}]) as stream:
        text = "".join(stream.text_stream)
    assert text == "Hello world"
    assert origin.posts == 1


@pytest.mark.parametrize("ids", [True, False], ids=["with-ids", "without-ids"])
def test_httpx_sse_sees_only_the_origins_events(token_origin, gateway, ids):
    httpx = pytest.importorskip("httpx")
    httpx_sse = pytest.importorskip("httpx_sse")
    origin = token_origin(ids=ids, pauses={1: 1.0})
    gw = gateway(f"--route=/=http://127.0.0.1:{origin.port}", *EVERY_ADDITION)
    with httpx.Client(timeout=10) as client:
        with httpx_sse.connect_sse(client, "POST", f"http://127.0.0.1:{gw.port}/v1/chat", json={}) as source:
            events = [(sse.event, sse.data) for sse in source.iter_sse()]
    datas = [data for _, data in events]
    assert datas[:-1] == [json.dumps({"token": t}) for t in ("Hel", "lo", ", ", "wor", "ld")], events
    assert datas[-1] == "[DONE]" and all(kind == "message" for kind, _ in events)


def test_one_generation_has_at_most_eight_readers(token_origin, gateway):
    origin = token_origin(tokens=("a", "b"), pauses={1: 3.0})
    gw = gateway(f"--route=/=http://127.0.0.1:{origin.port}")
    head, _ = _raw_post(gw.port, b"{}", {}, read_tokens=1)
    resume = _header(head, "Lifeline-Resume")
    readers = []
    for _ in range(8):
        sock = socket.create_connection(("127.0.0.1", gw.port), timeout=5)
        sock.sendall(f"GET {resume} HTTP/1.1\r\nHost: gw\r\nLifeline-Resume-From: 0\r\n\r\n".encode())
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")
        readers.append(sock)
    rhead, _, _ = _resume(gw.port, resume, {"Lifeline-Resume-From": "0"}, read_for=2)
    assert rhead.startswith("HTTP/1.1 429"), rhead
    readers.pop().close()
    time.sleep(0.2)
    rhead, _, _ = _resume(gw.port, resume, {"Lifeline-Resume-From": "0"}, read_for=5)
    assert rhead.startswith("HTTP/1.1 200"), "room again once one left"
    for sock in readers:
        sock.close()


def test_a_flood_of_generations_never_resumed_leaves_nothing_behind(token_origin, gateway):
    """10,000 POST streams, none resumed: once --resume-window has passed, no generation is kept and
    the process's memory is back near where it was before the flood."""
    import concurrent.futures
    import re
    import urllib.request
    origin = token_origin(tokens=("x" * 200, "y" * 200, "z" * 200), pauses={0: 0, 1: 0.01, 2: 0.01})
    gw = gateway(f"--route=/=http://127.0.0.1:{origin.port}", "--resume-window=5s", "--admin-listen=127.0.0.1:0")
    admin = None
    end = time.monotonic() + 5
    while admin is None and time.monotonic() < end:
        for line in list(gw.stdout_lines):
            m = re.search(r"admin listening on (http://\S+)", line)
            admin = m.group(1) if m else admin
        time.sleep(0.05)

    def status():
        with urllib.request.urlopen(admin + "/status.json", timeout=5) as answer:
            return json.loads(answer.read())

    _post(gw.port, b"{}")  # warm up
    time.sleep(2.5)
    before = status()["process"]["residentBytes"]
    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(max_workers=24) as pool:
        results = list(pool.map(lambda _: _post(gw.port, b"{}")[3], range(10_000)))
    took = time.monotonic() - started
    assert all(results), "every generation ended cleanly"
    during = status()
    assert during["streamCount"] > 0, "ended generations are kept for resumes meanwhile"
    # The window passes; the heap trimmer gives the freed memory back a few seconds later.
    deadline = time.monotonic() + 30
    after = status()
    while time.monotonic() < deadline and (after["streamCount"] or after["process"]["residentBytes"] - before >= 16 << 20):
        time.sleep(1)
        after = status()
    assert after["streamCount"] == 0, after["streamCount"]
    grown = after["process"]["residentBytes"] - before
    print(f"10,000 POSTs in {took:.1f} s; RSS before {before / 2**20:.1f} MiB, with the kept generations {during['process']['residentBytes'] / 2**20:.1f} MiB, "
          f"after the window {after['process']['residentBytes'] / 2**20:.1f} MiB")
    assert grown < 16 << 20, f"RSS grew {grown / 2**20:.1f} MiB after 10,000 generations were forgotten"
    assert origin.posts == 10_001



# --------------------------------------------------------------------------------------------
# The browser helper: lifelineFetchEvents


@pytest.fixture
def stall_proxy():
    """`start(target_port)` puts a StallProxy (stall_proxy.py) in front of 127.0.0.1:target_port."""
    from stall_proxy import StallProxy
    proxies = []

    def start(target_port: int):
        proxy = StallProxy(target_port)
        proxies.append(proxy)
        return proxy

    yield start
    for proxy in proxies:
        proxy.close()

_START_JS = """
([persist]) => {
  window.__got = window.__got || [];
  window.__errors = [];
  window.__finished = false;
  (async () => {
    try {
      for await (const e of lifelineFetchEvents('/v1/chat', { method: 'POST', body: '{}',
          headers: { 'Content-Type': 'application/json' } }, { persist })) {
        if (e.data !== '[DONE]') window.__got.push(JSON.parse(e.data).token);
      }
      window.__finished = true;
    } catch (err) { window.__errors.push(String(err)); }
  })();
}
"""


def _browser_state(page):
    return page.evaluate("() => ({ got: window.__got || [], errors: window.__errors || [], finished: !!window.__finished })")


def _wait_browser(page, condition, timeout, what):
    end = time.monotonic() + timeout
    state = None
    while time.monotonic() < end:
        state = _browser_state(page)
        if condition(state):
            return state
        time.sleep(0.05)
    raise AssertionError(f"{what}: {state}")


def _cut_after_three_tokens(token_origin, gateway, stall_proxy, new_page, script, *args):
    """A page behind a proxy that can silence its connections runs `script` on a ten-token generation;
    after three tokens every open connection goes silent. Returns the page, the tokens and the origin."""
    tokens = tuple(f"t{n}" for n in range(10))
    origin = token_origin(tokens=tokens, pauses={n: 0.2 for n in range(10)})
    gw = gateway(f"--route=/=http://127.0.0.1:{origin.port}", "--heartbeat=1s")
    proxy = stall_proxy(gw.port)
    page = new_page()
    page.goto(f"{proxy.url}/")
    page.add_script_tag(url="/_lifeline/client.js")
    page.evaluate(script, *args)
    _wait_browser(page, lambda s: len(s["got"]) >= 3, 10, "three tokens")
    proxy.cut()
    return page, tokens, origin


def test_the_browser_helper_resumes_a_post_stream_after_the_connection_is_cut(token_origin, gateway, stall_proxy, new_page):
    page, tokens, origin = _cut_after_three_tokens(token_origin, gateway, stall_proxy, new_page, _START_JS, [None])
    state = _wait_browser(page, lambda s: s["finished"] or s["errors"], 15, "the rest of the generation")
    assert state["errors"] == [], state
    assert state["got"] == list(tokens), "every token once, in order, across the cut"
    assert origin.posts == 1, "resumed, not run again"


def test_the_browser_helper_resumes_a_post_stream_after_a_page_reload(token_origin, gateway, new_page):
    tokens = tuple(f"t{n}" for n in range(10))
    # The model "thinks" for 2 s after the third token: the page reloads in that pause.
    origin = token_origin(tokens=tokens, pauses={**{n: 0.1 for n in range(10)}, 3: 2.0})
    gw = gateway(f"--route=/=http://127.0.0.1:{origin.port}", "--heartbeat=1s")
    page = new_page()
    page.goto(f"http://127.0.0.1:{gw.port}/")
    page.add_script_tag(url="/_lifeline/client.js")
    page.evaluate(_START_JS, ["chat-1"])
    before = _wait_browser(page, lambda s: len(s["got"]) >= 3, 10, "three tokens")["got"]
    page.reload()
    page.add_script_tag(url="/_lifeline/client.js")
    page.evaluate(_START_JS, ["chat-1"])
    after = _wait_browser(page, lambda s: s["finished"] or s["errors"], 15, "the rest after the reload")
    assert after["errors"] == [], after
    # What the first page had yielded when it went, then exactly the rest.
    assert before == ["t0", "t1", "t2"], before
    assert after["got"] == list(tokens[3:]), after
    assert origin.posts == 1, "the reload resumed the generation instead of sending the POST again"
    # Done: the saved position is gone, so the next call is a new POST.
    assert page.evaluate("() => sessionStorage.getItem('lifeline:generation:chat-1')") is None


# As the AI SDK and the OpenAI/Anthropic JS SDKs read a stream through the `fetch` they are given:
# the body's bytes with a parser of their own, after checking the status.
_FETCH_JS = """
() => {
  window.__got = []; window.__errors = []; window.__finished = false;
  (async () => {
    try {
      const res = await lifelineFetch('/v1/chat', { method: 'POST', body: '{}', headers: { 'Content-Type': 'application/json' } });
      window.__status = res.status + ' ' + res.headers.get('content-type') + ' ' + res.headers.get('x-request-id');
      const reader = res.body.getReader(), dec = new TextDecoder();
      let text = '';
      for (;;) {
        const r = await reader.read();
        if (r.done) break;
        text += dec.decode(r.value, { stream: true });
        let cut;
        while ((cut = text.indexOf('\\n\\n')) >= 0) {
          const block = text.slice(0, cut); text = text.slice(cut + 2);
          for (const line of block.split('\\n')) {
            if (line.startsWith('data: {')) window.__got.push(JSON.parse(line.slice(6)).token);
            else if (!/^(data: \\[DONE\\]|id: \\d+)$/.test(line)) window.__errors.push('unexpected line ' + JSON.stringify(line));
          }
        }
      }
      window.__finished = true;
    } catch (err) { window.__errors.push(String(err)); }
  })();
}
"""


def test_lifeline_fetch_hands_an_sdk_a_body_that_resumes_across_a_cut(token_origin, gateway, stall_proxy, new_page):
    page, tokens, origin = _cut_after_three_tokens(token_origin, gateway, stall_proxy, new_page, _FETCH_JS)
    assert page.evaluate("() => window.__status") == "200 text/event-stream req-1", "the origin's head, as fetch gives it"
    state = _wait_browser(page, lambda s: s["finished"] or s["errors"], 15, "the rest of the generation")
    assert state["errors"] == [], state
    assert state["got"] == list(tokens), "every token once, in order, across the cut; no heartbeat in the body"
    assert origin.posts == 1, "resumed, not run again"
    # An answer that is no event stream comes back as it is.
    other = page.evaluate("""async () => { const r = await lifelineFetch('/page', { method: 'GET' });
                                            return r.status + ' ' + r.headers.get('content-type') + ' ' + (await r.text()).length; }""")
    assert other.startswith("200 text/html "), other


def test_a_third_party_origin_sse_starlette_gets_heartbeats_and_resumes(processes, gateway):
    """sse-starlette's EventSourceResponse under uvicorn, code nobody here wrote."""
    pytest.importorskip("sse_starlette")
    pytest.importorskip("uvicorn")
    import sys
    import urllib.request
    from pathlib import Path
    script = Path(__file__).with_name("starlette_origin.py")
    origin = processes.start("starlette-origin", [sys.executable, str(script)])
    gw = gateway(f"--route=/=http://127.0.0.1:{origin.port}", "--heartbeat=1s")
    head, body, _, clean = _post(gw.port, b'{"messages": []}')
    text = body.decode()
    assert head.startswith("HTTP/1.1 200") and clean, head
    assert "".join(_tokens(text)) == "The answer is forty-two."
    assert text.count(":heartbeat\n") >= 2, f"heartbeats in the 2.5 s pause: {text!r}"
    # Dropped after the first token, resumed by count: the rest of the same generation.
    head, got = _post_and_drop(gw.port, after_tokens=1)
    rhead, rest, clean = _resume(gw.port, _header(head, "Lifeline-Resume"),
                                 {"Authorization": "Bearer k1", "Lifeline-Resume-From": str(len(got))})
    assert _header(rhead, "Lifeline-Replay") == "hit" and clean, rhead
    assert "".join(got + _tokens(rest)) == "The answer is forty-two."
    with urllib.request.urlopen(f"http://127.0.0.1:{origin.port}/stats", timeout=5) as answer:
        assert json.loads(answer.read())["posts"] == 2, "one POST per generation"
