"""A scripted origin for the end-to-end tests: answers each stream request as the test says.

`ScriptedOrigin` listens on 127.0.0.1 (port 0, read back) in a thread of its own. Requests for
`/events` (and `/events/...`) take the next answer from the script given to `answer(...)`; once
the script is used up they get `then` (by default a `Stream`). `/` is a small HTML page for the
browser to load (same origin as the gateway), anything else is a 404. Every request is recorded
(method, path, headers, arrival time) so that a test can check what reached the origin.

Answers:
- `Plain(status, headers, body)`: a complete response, then the connection is closed.
- `Stream(interval)`: `200 text/event-stream`, chunked, one event every `interval` s with
  `id: N` and data `{"tick": N, "auth": <the request's Authorization or null>}`, N counting from
  the request's Last-Event-ID + 1 (or from 1), until the client goes or the origin is closed.

`close()` (the fixture's teardown) ends every stream, stops the server and joins its threads.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PAGE_HTML = b"<!doctype html><html><head><title>scripted origin</title></head><body>scripted origin</body></html>"


@dataclass(frozen=True)
class Plain:
    status: int
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""


@dataclass(frozen=True)
class Stream:
    interval: float = 0.1


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]       # lower-case names; repeated headers joined with ", "
    at: float                     # time.monotonic() when the request head was read
    answer: object = None         # the Plain or Stream it got

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


@dataclass
class _State:
    lock: threading.Lock = field(default_factory=threading.Lock)
    changed: threading.Condition = None  # type: ignore[assignment]
    script: deque = field(default_factory=deque)
    then: object = field(default_factory=Stream)
    requests: list = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    sockets: set = field(default_factory=set)

    def __post_init__(self):
        self.changed = threading.Condition(self.lock)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 10  # a connection that sends no complete request in 10 s is dropped
    server_version = "scripted-origin"

    def log_message(self, format, *args):  # noqa: A002 - keep pytest's output clean
        pass

    @property
    def state(self) -> _State:
        return self.server.state  # type: ignore[attr-defined]

    def setup(self):
        super().setup()
        with self.state.lock:
            self.state.sockets.add(self.connection)

    def finish(self):
        try:
            super().finish()
        finally:
            with self.state.lock:
                self.state.sockets.discard(self.connection)

    def do_GET(self):  # noqa: N802 - http.server's naming
        path = self.path.split("?", 1)[0]
        headers: dict[str, str] = {}
        for name, value in self.headers.items():
            key = name.lower()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        record = RecordedRequest(method="GET", path=self.path, headers=headers, at=time.monotonic())
        if path == "/events" or path.startswith("/events/"):
            with self.state.lock:
                answer = self.state.script.popleft() if self.state.script else self.state.then
                record.answer = answer
                self.state.requests.append(record)
                self.state.changed.notify_all()
        else:
            answer = Plain(200, (("Content-Type", "text/html; charset=utf-8"),), PAGE_HTML) if path == "/" else \
                Plain(404, (("Content-Type", "text/plain"),), b"not found\n")
            record.answer = answer
            with self.state.lock:
                self.state.requests.append(record)
                self.state.changed.notify_all()
        if isinstance(answer, Stream):
            self._stream(answer, record)
        else:
            self._plain(answer)

    def _plain(self, answer: Plain) -> None:
        self.send_response(answer.status)
        names = {n.lower() for n, _ in answer.headers}
        for name, value in answer.headers:
            self.send_header(name, value)
        if answer.status != 204 and answer.status >= 200 and "content-length" not in names:
            self.send_header("Content-Length", str(len(answer.body)))
        self.send_header("Connection", "close")
        self.end_headers()
        if answer.body and answer.status != 204:
            self.wfile.write(answer.body)
        self.wfile.flush()
        self.close_connection = True

    def _stream(self, answer: Stream, record: RecordedRequest) -> None:
        self.close_connection = True
        last = record.header("last-event-id")
        tick = int(last) + 1 if last and last.isdigit() else 1
        auth = record.header("authorization")
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            self._chunk(b": scripted origin\n\n")
            while not self.state.stop.is_set():
                data = json.dumps({"tick": tick, "auth": auth}, separators=(",", ":"))
                self._chunk(f"id: {tick}\ndata: {data}\n\n".encode())
                tick += 1
                if self.state.stop.wait(answer.interval):
                    break
        except OSError:
            pass  # the gateway went away

    def _chunk(self, payload: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(payload), payload))
        self.wfile.flush()


class _Server(ThreadingHTTPServer):
    daemon_threads = False
    block_on_close = True  # server_close() joins the handler threads
    allow_reuse_address = True


class ScriptedOrigin:
    def __init__(self):
        self.state = _State()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.state = self.state  # type: ignore[attr-defined]
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="scripted-origin", daemon=True)
        self._thread.start()

    def answer(self, *answers, then=None) -> None:
        """The next /events requests get `answers` in order, and after them `then` (default Stream())."""
        with self.state.lock:
            self.state.script = deque(answers)
            self.state.then = then if then is not None else Stream()

    def requests(self, path_prefix: str = "/events") -> list[RecordedRequest]:
        with self.state.lock:
            return [r for r in self.state.requests if r.path.split("?", 1)[0].startswith(path_prefix)]

    def wait_requests(self, n: int, timeout: float, path_prefix: str = "/events") -> list[RecordedRequest]:
        """Waits until at least `n` requests for `path_prefix` arrived; returns them all."""
        end = time.monotonic() + timeout
        with self.state.changed:
            while True:
                got = [r for r in self.state.requests if r.path.split("?", 1)[0].startswith(path_prefix)]
                left = end - time.monotonic()
                if len(got) >= n or left <= 0:
                    break
                self.state.changed.wait(left)
        if len(got) < n:
            raise AssertionError(f"the origin got {len(got)} {path_prefix} requests within {timeout:.1f} s, "
                                 f"expected {n}: {[(r.path, r.answer) for r in got]}")
        return got

    def close(self) -> None:
        self.state.stop.set()
        self._server.shutdown()
        with self.state.lock:
            socks = list(self.state.sockets)
        for s in socks:  # wake handlers blocked reading a request
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._server.server_close()  # joins the handler threads
        self._thread.join(timeout=5)
