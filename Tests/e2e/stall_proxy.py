"""A TCP proxy for the end-to-end tests that can make its open connections go silent.

`StallProxy(target_port)` listens on 127.0.0.1 (port 0, read back) and forwards every connection
to 127.0.0.1:target_port, two threads per connection. `stall()` stops forwarding, in both
directions, on every connection open at that moment, without closing anything: the way a path
looks after a network change or an expired NAT entry (nothing arrives, nothing fails). Bytes that
arrive on a stalled connection are never delivered. Connections accepted later pass normally.

`cut()` resets every open connection instead (RST to the browser, as a broken path often ends).

`close()` (the fixture's teardown) closes the listener and every socket and joins every thread.
"""

from __future__ import annotations

import select
import socket
import struct
import threading
import time
from dataclasses import dataclass, field


@dataclass
class Connection:
    index: int
    accepted_at: float                 # time.monotonic()
    client: socket.socket
    upstream: socket.socket
    lock: threading.Lock = field(default_factory=threading.Lock)
    stalled: bool = False
    stalled_at: float | None = None
    bytes_down: int = 0                # upstream -> client, forwarded
    bytes_up: int = 0                  # client -> upstream, forwarded
    closed: bool = False
    directions_done: int = 0


@dataclass(frozen=True)
class ConnectionInfo:
    index: int
    accepted_at: float
    stalled: bool
    bytes_down: int
    bytes_up: int
    closed: bool


class StallProxy:
    def __init__(self, target_port: int, target_host: str = "127.0.0.1"):
        self.target = (target_host, target_port)
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self._listener.settimeout(0.1)
        self.port = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._lock = threading.Lock()
        self._conns: list[Connection] = []
        self._threads: list[threading.Thread] = []
        self._closing = threading.Event()
        self._accept_thread = threading.Thread(target=self._accept_loop, name="stall-proxy-accept", daemon=True)
        self._accept_thread.start()

    # ---------------------------------------------------------------------------------------
    # Commands

    def stall(self) -> float:
        """Stops forwarding on every open connection; returns time.monotonic() once that holds.

        When it returns, no further byte is forwarded on those connections (a send in progress
        finishes first)."""
        with self._lock:
            conns = [c for c in self._conns if not c.closed]
        for c in conns:
            with c.lock:
                c.stalled = True
                c.stalled_at = time.monotonic()
        return time.monotonic()

    def cut(self) -> float:
        """Resets every open connection (RST to the browser, close to the target); returns
        time.monotonic() once done. Connections accepted later pass normally."""
        with self._lock:
            conns = [c for c in self._conns if not c.closed]
        for c in conns:
            with c.lock:
                try:
                    c.client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                except OSError:
                    pass
            self._close_conn(c, shutdown=False)
        return time.monotonic()

    def connections(self) -> list[ConnectionInfo]:
        with self._lock:
            conns = list(self._conns)
        return [ConnectionInfo(c.index, c.accepted_at, c.stalled, c.bytes_down, c.bytes_up, c.closed) for c in conns]

    def close(self) -> None:
        self._closing.set()
        self._accept_thread.join(timeout=5)
        try:
            self._listener.close()
        except OSError:
            pass
        with self._lock:
            conns = list(self._conns)
            threads = list(self._threads)
        for c in conns:
            self._close_conn(c)
        for t in threads:
            t.join(timeout=5)

    # ---------------------------------------------------------------------------------------
    # Forwarding

    def _accept_loop(self) -> None:
        while not self._closing.is_set():
            try:
                client, _ = self._listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            for s in (client, upstream):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                s.settimeout(None)  # sends block (close() shuts the sockets down); reads wait in select
            with self._lock:
                conn = Connection(index=len(self._conns), accepted_at=time.monotonic(), client=client, upstream=upstream)
                self._conns.append(conn)
                pumps = [
                    threading.Thread(target=self._pump, args=(conn, client, upstream, "up"),
                                     name=f"stall-proxy-{conn.index}-up", daemon=True),
                    threading.Thread(target=self._pump, args=(conn, upstream, client, "down"),
                                     name=f"stall-proxy-{conn.index}-down", daemon=True),
                ]
                self._threads.extend(pumps)
            for t in pumps:
                t.start()

    def _pump(self, conn: Connection, src: socket.socket, dst: socket.socket, direction: str) -> None:
        while not self._closing.is_set():
            if conn.stalled:
                # Read nothing more and send nothing more; keep both sockets open until close().
                self._closing.wait()
                return
            try:
                readable, _, _ = select.select([src], [], [], 0.1)
                if not readable:
                    continue
                data = src.recv(65536)
            except (OSError, ValueError):
                data = b""
            with conn.lock:
                if conn.stalled:
                    continue  # swallowed: a stalled path delivers nothing
                if data:
                    try:
                        dst.sendall(data)
                    except OSError:
                        data = b""
                    else:
                        if direction == "down":
                            conn.bytes_down += len(data)
                        else:
                            conn.bytes_up += len(data)
                        continue
                # The sender finished (or a socket failed): pass the end on; once both
                # directions are done the connection is closed.
                try:
                    dst.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                conn.directions_done += 1
                both_done = conn.directions_done == 2
            if both_done:
                self._close_conn(conn)
            return

    def _close_conn(self, conn: Connection, shutdown: bool = True) -> None:
        conn.closed = True
        for s in (conn.client, conn.upstream):
            if shutdown:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            try:
                s.close()
            except OSError:
                pass
