"""The demo page's chat panel (`lifeline --demo`, Sources/DemoOrigin/DemoPage.swift and DemoChat.swift):
a canned LLM-style answer to `POST /demo/chat`, read with lifelineFetchEvents through the gateway,
survives reloads of the page with one origin POST; through the gateway its thinking pause gets
heartbeats, and the generation can be resumed by count."""

from __future__ import annotations

import http.client
import json
import re
import time
import urllib.request

from sse_page import Deadline

# DemoChat.answer: the text the tokens add up to, whatever the prompt.
ANSWER = (
    "This answer is canned, but it travels like a real one. Your prompt went to Lifeline as a POST, "
    "and Lifeline passed it on to the demo origin, once. The origin streams its reply token by token, "
    "in the shape of an OpenAI chat-completions stream, and Lifeline keeps every event of this "
    "generation. Now the origin goes quiet for a few seconds, the way a model does while it thinks\u2026"
    "\n\nWhile it was silent, Lifeline sent heartbeat comments, so that no proxy on the way took the "
    "connection for dead. If you reloaded the page meanwhile, the page did not send your prompt again: "
    "it asked Lifeline for the rest of the same generation with its resume token and the number of "
    "events it already had, and the text went on where it stopped. The origin was asked once \u2014 "
    "see the count of chat POSTs it received."
)
# Each token is a word with the whitespace before it; the pause comes before the second paragraph.
TOKENS = re.findall(r"\s*\S+", ANSWER)
PAUSE_BEFORE = next(i for i, t in enumerate(TOKENS) if t.startswith("\n\n"))

_STATE_JS = """() => ({
  text: demo.chat.text, tokens: demo.chat.tokens, resumes: demo.chat.resumes, state: demo.chat.state,
  error: demo.chat.error, shown: document.getElementById('chat-answer').textContent,
  posts: document.getElementById('chat-posts').textContent,
  label: document.getElementById('chat-state').textContent,
})"""


def _state(page) -> dict:
    try:
        return page.evaluate(_STATE_JS)
    except Exception as e:  # noqa: BLE001 - the page is reloading: its context comes and goes
        return {"error": f"no page: {e}"}


def _wait(page, predicate, timeout: float, what: str) -> dict:
    end = time.monotonic() + timeout
    while True:
        state = _state(page)
        if "text" in state and predicate(state):
            return state
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout:.1f} s waiting for {what}: {state}")
        time.sleep(0.05)


def _stats(gw) -> dict:
    with urllib.request.urlopen(f"{gw.url}/demo/stats", timeout=2) as answer:
        return json.loads(answer.read())


def test_chat_answer_survives_reloads_with_one_origin_post(gateway, new_page):
    deadline = Deadline(75)
    gw = gateway("--demo", "--demo-drop-every=0")
    page = new_page()
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{gw.url}/")
    page.wait_for_function("() => !document.getElementById('chat-send').disabled", timeout=deadline.left(10) * 1000)
    assert _stats(gw)["chatRequests"] == 0
    page.fill("#chat-prompt", "Will this answer survive a reload?")
    page.click("#chat-send")

    # First reload while tokens stream.
    before = _wait(page, lambda s: s["tokens"] >= 10, deadline.left(10), "the first tokens")
    assert before["state"] == "answering" and ANSWER.startswith(before["text"]), before
    page.reload()
    repainted = _state(page)
    assert repainted.get("shown", "").startswith(before["text"]), (
        f"the text so far is not repainted after the reload: {repainted} (before: {before})")
    assert len(repainted["shown"]) < len(ANSWER), f"the reload came too late to be mid-answer: {repainted}"

    # Second reload in the thinking pause: the origin is silent, the gateway sends heartbeats.
    thinking = _wait(page, lambda s: s["tokens"] == PAUSE_BEFORE, deadline.left(15), "the thinking pause")
    assert thinking["text"] == "".join(TOKENS[:PAUSE_BEFORE]), thinking
    page.reload()
    repainted = _state(page)
    assert repainted.get("shown") == thinking["text"], repainted

    done = _wait(page, lambda s: s["state"] != "answering", deadline.left(30), "the answer to complete")
    assert done["state"] == "done", done
    # The whole canned text exactly once: no token lost or repeated across the two reloads.
    assert done["text"] == ANSWER, f"got {done['text']!r}"
    assert done["shown"] == ANSWER
    assert done["tokens"] == len(TOKENS), done
    assert done["resumes"] == 2, done
    stats = _stats(gw)
    assert stats["chatRequests"] == 1, f"the origin was asked more than once: {stats}"
    assert stats["openChats"] == 0, stats
    page.wait_for_function("() => document.getElementById('chat-posts').textContent === '1'",
                           timeout=deadline.left(5) * 1000)

    # A later reload does not pick the finished answer up again.
    page.reload()
    after = _wait(page, lambda s: s["posts"] == "1", deadline.left(5), "the figures after a reload")
    assert after["state"] == "done" and after["shown"] == ANSWER and after["resumes"] == 2, after
    time.sleep(0.5)
    assert _stats(gw)["chatRequests"] == 1
    assert not errors, errors


def _read_exchange(conn: http.client.HTTPConnection, timeout: float) -> tuple[http.client.HTTPResponse, list[tuple[float, str]]]:
    """The response and its body's lines (without line ends), each with when it arrived."""
    conn.sock.settimeout(timeout)
    response = conn.getresponse()
    start = time.monotonic()
    lines = []
    while True:
        line = response.readline()
        if not line:
            return response, lines
        lines.append((time.monotonic() - start, line.decode("utf-8").rstrip("\n")))


def _contents(lines: list[tuple[float, str]]) -> list[tuple[float, str]]:
    """The `content` of each data line, `[DONE]` as is."""
    out = []
    for at, line in lines:
        if line.startswith("data: "):
            data = line[len("data: "):]
            out.append((at, data if data == "[DONE]" else json.loads(data)["choices"][0]["delta"]["content"]))
    return out


def test_chat_through_the_gateway_gets_heartbeats_in_its_pause_and_resumes_by_count(gateway):
    deadline = Deadline(50)
    # The demo's own heartbeat (2 s): the 6 s pause must show some.
    gw = gateway("--demo", "--demo-drop-every=0")
    conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=5)
    conn.request("POST", "/demo/chat", body=json.dumps({"prompt": "hello"}), headers={"Content-Type": "application/json"})
    response, lines = _read_exchange(conn, timeout=deadline.left(10))
    assert response.status == 200 and response.getheader("Content-Type") == "text/event-stream", response.getheaders()
    assert response.getheader("Lifeline-Heartbeat") == "2000", response.getheaders()
    resume = response.getheader("Lifeline-Resume")
    assert resume and re.fullmatch(r"/_lifeline/resume/[0-9a-f]{32}", resume), response.getheaders()
    conn.close()

    contents = _contents(lines)
    assert [c for _, c in contents] == TOKENS + ["[DONE]"]
    assert not any(line.startswith("id:") for _, line in lines), "the answer has no ids"
    # Heartbeat comments come in the thinking pause, and nothing else does.
    pause_from, pause_to = contents[PAUSE_BEFORE - 1][0], contents[PAUSE_BEFORE][0]
    assert pause_to - pause_from >= 5, (pause_from, pause_to)
    beats = [at for at, line in lines if line.startswith(":") and pause_from < at < pause_to]
    assert len(beats) >= 2, f"heartbeats in the {pause_to - pause_from:.1f} s pause: {beats}"
    assert 15 <= contents[-1][0] <= 30, f"the answer took {contents[-1][0]:.1f} s"

    # The generation is kept: a GET of its resume path by count gives the rest, with no POST.
    conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=5)
    conn.request("GET", resume, headers={"Lifeline-Resume-From": "100"})
    response, lines = _read_exchange(conn, timeout=deadline.left(10))
    conn.close()
    assert response.status == 200, response.status
    assert [c for _, c in _contents(lines)] == TOKENS[100:] + ["[DONE]"]
    stats = _stats(gw)
    assert stats["chatRequests"] == 1 and stats["openChats"] == 0, stats
