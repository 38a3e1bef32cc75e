"""Fixtures for Lifeline's end-to-end tests.

- `lifeline_bin`: the binary under test (env LIFELINE_BIN, else .build/debug/lifeline).
- `processes`: starts child processes, waits for their "... listening on URL" line(s), and kills
  them all at teardown (their stderr is attached to the report when a test fails).
- `demo_origin` / `gateway`: start `lifeline demo-origin` / `lifeline` through `processes`.
  With `--tls-listen`, `gateway` waits for both lines (http and https): `proc.url` stays the
  first (plaintext) one, `proc.url_for("https")` / `proc.port_for("https")` give the TLS one.
- `browser` (session): Debian's chromium through Playwright, headless; never downloads a browser.
- `new_page`: a page in a fresh browser context; console messages are attached on failure.

Everything listens on 127.0.0.1 with port 0 and reads the port back.
"""

from __future__ import annotations

import os
import queue
import re
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

# Never let Playwright fetch its own browsers: the tests use the system's chromium.
os.environ["PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD"] = "1"

REPO = Path(__file__).resolve().parents[2]
LISTENING_RE = re.compile(r"listening on (?P<url>(?P<scheme>https?)://(?P<host>\[[^\]]+\]|[^\s:/]+):(?P<port>\d+))")
STDERR_TAIL_BYTES = 8000


# --------------------------------------------------------------------------------------------
# The binary


@pytest.fixture(scope="session")
def lifeline_bin() -> str:
    env = os.environ.get("LIFELINE_BIN")
    path = Path(env) if env else REPO / ".build" / "debug" / "lifeline"
    if not path.is_absolute():
        path = (REPO / path).resolve()
    if not (path.is_file() and os.access(path, os.X_OK)):
        how = "LIFELINE_BIN" if env else "the default path"
        pytest.fail(
            f"lifeline binary not found or not executable at {path} (from {how}).\n"
            f"Build it first with `swift build` (or run scripts/test), "
            f"or point LIFELINE_BIN at a built binary.",
            pytrace=False,
        )
    return str(path)


# --------------------------------------------------------------------------------------------
# Processes


@dataclass
class Proc:
    name: str
    argv: list[str]
    popen: subprocess.Popen
    stderr_path: Path
    stdout_lines: list[str] = field(default_factory=list)
    url: str = ""      # the first "listening on" URL
    host: str = ""
    port: int = 0
    urls: dict[str, str] = field(default_factory=dict)  # scheme -> first URL seen with that scheme

    def url_for(self, scheme: str) -> str:
        """The first "listening on" URL with this scheme (`http` or `https`)."""
        if scheme not in self.urls:
            raise AssertionError(f"{self.name} printed no 'listening on {scheme}://' line; it printed {self.urls}")
        return self.urls[scheme]

    def port_for(self, scheme: str) -> int:
        m = LISTENING_RE.search("listening on " + self.url_for(scheme))
        assert m is not None
        return int(m.group("port"))

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def kill(self, sig: int = signal.SIGKILL, wait: float = 5.0) -> None:
        """Send `sig` to the process's group and wait for the process to exit. The group is
        signalled even when the process itself has exited: what it started (the new process of an
        in-place upgrade) is still in it."""
        try:
            os.killpg(self.popen.pid, sig)
        except ProcessLookupError:
            pass
        try:
            self.popen.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            if sig != signal.SIGKILL:
                self.kill(signal.SIGKILL, wait)
            else:
                raise

    def stderr_tail(self, limit: int = STDERR_TAIL_BYTES) -> str:
        try:
            data = self.stderr_path.read_bytes()
        except OSError as e:
            return f"<cannot read {self.stderr_path}: {e}>"
        text = data[-limit:].decode("utf-8", "replace")
        return ("...\n" if len(data) > limit else "") + text

    def admin_url(self, timeout: float = 10) -> str:
        """The URL of the `admin listening on URL` line (printed after the gateway's own)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.stdout_lines):
                if m := re.search(r"admin listening on (http://\S+)", line):
                    return m.group(1)
            time.sleep(0.05)
        raise AssertionError(f"{self.name} printed no 'admin listening on' line: {self.stdout_lines}")

    def describe(self) -> str:
        rc = self.popen.poll()
        state = "running" if rc is None else f"exited with {rc}"
        return f"{self.name} (pid {self.pid}, {state}): {' '.join(self.argv)}"


class Processes:
    """Starts processes, waits until they listen, and always kills them at the end."""

    def __init__(self, log_dir: Path):
        self.log_dir = log_dir
        self.procs: list[Proc] = []

    def start(self, name: str, argv: list[str], ready_timeout: float = 15.0, env: dict | None = None,
              schemes: tuple[str, ...] = ()) -> Proc:
        """Starts `argv` and returns once it has printed a "listening on" line.

        `schemes` (e.g. `("http", "https")`): wait until there is a "listening on" line for each of
        them, in any order; by default the first such line is enough.
        """
        n = sum(1 for p in self.procs if p.name == name)
        stderr_path = self.log_dir / f"{name}-{n}.stderr"
        stderr_file = open(stderr_path, "wb")
        try:
            popen = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=stderr_file,
                cwd=REPO,
                env={**os.environ, **(env or {})},
                start_new_session=True,  # own process group: killpg reaches its children too
            )
        except OSError as e:
            pytest.fail(f"cannot start {name}: {' '.join(argv)}: {e}", pytrace=False)
        finally:
            stderr_file.close()
        proc = Proc(name=name, argv=list(argv), popen=popen, stderr_path=stderr_path)
        self.procs.append(proc)

        # Read stdout on a thread (so the pipe never fills up) and hand lines to us via a queue.
        lines: queue.Queue[str | None] = queue.Queue()

        def pump() -> None:
            assert popen.stdout is not None
            for raw in popen.stdout:
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                proc.stdout_lines.append(line)
                lines.put(line)
            lines.put(None)

        threading.Thread(target=pump, name=f"stdout-{name}", daemon=True).start()

        wanted = " and ".join(f"'listening on {s}://'" for s in schemes) or "'listening on'"
        deadline = time.monotonic() + ready_timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                proc.kill()
                self._fail_start(proc, f"did not print {wanted} line(s) within {ready_timeout:g} s")
            try:
                line = lines.get(timeout=min(remaining, 0.5))
            except queue.Empty:
                continue
            if line is None:  # stdout closed: the process exited (or closed stdout) before listening
                try:
                    popen.wait(timeout=2)
                except subprocess.TimeoutExpired:
                    proc.kill()
                self._fail_start(proc, f"closed stdout before printing {wanted} line(s)")
            m = LISTENING_RE.search(line)
            if m:
                if not proc.url:
                    proc.url = m.group("url")
                    proc.host = m.group("host")
                    proc.port = int(m.group("port"))
                proc.urls.setdefault(m.group("scheme"), m.group("url"))
                if all(s in proc.urls for s in schemes):
                    return proc

    def _fail_start(self, proc: Proc, why: str) -> None:
        stdout = "\n".join(proc.stdout_lines[-20:]) or "<empty>"
        pytest.fail(
            f"{proc.describe()}\n{why}.\n"
            f"--- stdout ---\n{stdout}\n--- stderr ({proc.stderr_path}) ---\n{proc.stderr_tail()}",
            pytrace=False,
        )

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            try:
                proc.kill(signal.SIGTERM, wait=2.0)  # falls back to SIGKILL
                # Whatever is left of its group (e.g. a process that took over in an upgrade).
                os.killpg(proc.popen.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            except Exception:  # noqa: BLE001 - keep killing the others
                pass


_PROCS_KEY = pytest.StashKey[Processes]()
_CONSOLE_KEY = pytest.StashKey[list]()


def read_event_ids(response, count: int) -> list[int]:
    """The numeric ids of the first `count` events of an open event-stream response."""
    ids = []
    while len(ids) < count:
        line = response.readline().decode()
        assert line, "the stream ended"
        if line.startswith("id:"):
            ids.append(int(line[3:].strip()))
    return ids


@pytest.fixture
def processes(request, tmp_path) -> Processes:
    procs = Processes(tmp_path)
    request.node.stash[_PROCS_KEY] = procs
    try:
        yield procs
    finally:
        procs.stop_all()


@pytest.fixture
def demo_origin(processes, lifeline_bin):
    """`start(port=0, tick="100ms", drop_every=0, *extra)` starts `lifeline demo-origin`.

    Restarting on the same port: `start(port=old.port)` (the demo origin uses SO_REUSEADDR).
    """

    def start(port: int = 0, tick: str = "100ms", drop_every: int = 0, extra: tuple[str, ...] = ()) -> Proc:
        argv = [lifeline_bin, "demo-origin", f"--listen=127.0.0.1:{port}", f"--tick={tick}", f"--drop-every={drop_every}", *extra]
        proc = processes.start("demo-origin", argv)
        if port:
            assert proc.port == port, f"demo-origin asked for port {port} but listens on {proc.port}"
        return proc

    return start


@pytest.fixture
def gateway(processes, lifeline_bin):
    """`start(*flags)` starts `lifeline --listen=127.0.0.1:0 FLAGS...` and returns its Proc.

    With a `--tls-listen` flag it waits for both the http:// and the https:// "listening on" lines.
    """

    def start(*flags: str) -> Proc:
        schemes = ("http", "https") if any(f.startswith("--tls-listen") for f in flags) else ()
        return processes.start("lifeline", [lifeline_bin, "--listen=127.0.0.1:0", *flags], schemes=schemes)

    return start


# --------------------------------------------------------------------------------------------
# The browser


def chromium_path() -> str:
    for candidate in (os.environ.get("LIFELINE_E2E_CHROMIUM"), shutil.which("chromium"), "/usr/bin/chromium"):
        if candidate and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    pytest.fail(
        "chromium not found (looked at $LIFELINE_E2E_CHROMIUM, PATH, /usr/bin/chromium); "
        "install it with scripts/setup (Debian package `chromium`)",
        pytrace=False,
    )


def chromium_args() -> list[str]:
    # /dev/shm is tiny in containers; chromium's sandbox does not work as root (nor in many
    # containers): LIFELINE_E2E_NO_SANDBOX=1 forces --no-sandbox for non-root users.
    args = ["--disable-dev-shm-usage", "--disable-gpu", "--no-first-run", "--no-default-browser-check"]
    if os.geteuid() == 0 or os.environ.get("LIFELINE_E2E_NO_SANDBOX") == "1":
        args.append("--no-sandbox")
    return args


@pytest.fixture(scope="session")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("Python package `playwright` is missing: run scripts/setup", pytrace=False)
    executable = chromium_path()
    pw = sync_playwright().start()
    try:
        try:
            b = pw.chromium.launch(executable_path=executable, headless=True, args=chromium_args(), timeout=30_000)
        except Exception as e:  # noqa: BLE001
            pytest.fail(f"cannot launch {executable} with {chromium_args()}: {e}", pytrace=False)
        try:
            yield b
        finally:
            b.close()
    finally:
        pw.stop()


@pytest.fixture
def new_page(request, browser):
    """`new_page(**context_options)` opens a page in a fresh context (e.g. ignore_https_errors=True)."""
    contexts = []
    console: list[str] = []
    request.node.stash[_CONSOLE_KEY] = console

    def make(**context_options):
        ctx = browser.new_context(**context_options)
        contexts.append(ctx)
        page = ctx.new_page()
        page.set_default_timeout(10_000)
        page.on("console", lambda m: console.append(f"[{m.type}] {m.text}"))
        page.on("pageerror", lambda e: console.append(f"[pageerror] {e}"))
        return page

    try:
        yield make
    finally:
        for ctx in contexts:
            try:
                ctx.close()
            except Exception:  # noqa: BLE001
                pass


# --------------------------------------------------------------------------------------------
# Reporting: on failure, attach each process's stderr and the browser console.


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when not in ("call", "setup") or not report.failed:
        return
    procs = item.stash.get(_PROCS_KEY, None)
    if procs is not None:
        for proc in procs.procs:
            report.sections.append((f"{proc.name} pid {proc.pid} stderr", f"{proc.describe()}\n{proc.stderr_tail()}"))
    console = item.stash.get(_CONSOLE_KEY, None)
    if console:
        report.sections.append(("browser console", "\n".join(console[-100:])))
