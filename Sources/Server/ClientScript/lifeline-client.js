// LifelineEventSource: a drop-in EventSource for Lifeline gateways (docs/client.md). Classic script.
(function (G) {
"use strict";
const CONNECTING = 0, OPEN = 1, CLOSED = 2;

// WHATWG event stream parsing of one response's decoded text: at each blank line onEvent(id,
// event or null), at each valid retry onRetry(ms). Tests use it as LifelineEventSource._Parser.
class Parser {
  constructor(id, onEvent, onRetry) {
    Object.assign(this, { id, onEvent, onRetry, buf: "", data: "", type: "", cr: false, bom: true });
  }
  feed(t) {
    if (!t) return;
    if (this.bom) { this.bom = false; if (t[0] === "\uFEFF") t = t.slice(1); }
    if (this.cr && t[0] === "\n") t = t.slice(1); // the LF of a CRLF split across chunks
    this.cr = false;
    const s = this.buf + t, re = /\r\n?|\n/g;
    let i = 0, m;
    while ((m = re.exec(s))) {
      this.line(s.slice(i, m.index));
      i = re.lastIndex;
      this.cr = m[0] === "\r" && i === s.length;
    }
    this.buf = s.slice(i);
  }
  line(l) {
    const c = l.indexOf(":"), f = c < 0 ? l : l.slice(0, c); // a comment has field ""
    let v = c < 0 ? "" : l.slice(c + 1);
    if (v[0] === " ") v = v.slice(1);
    if (!l) {
      const d = this.data, type = this.type || "message";
      this.data = this.type = "";
      this.onEvent(this.id, d ? { type, data: d.slice(0, -1), lastEventId: this.id } : null);
    } else if (f === "data") this.data += v + "\n";
    else if (f === "event") this.type = v;
    else if (f === "id") { if (!v.includes("\0")) this.id = v; }
    else if (f === "retry" && /^[0-9]+$/.test(v)) this.onRetry(+v);
  }
}

function store(method, key, value) {
  try { return G.sessionStorage[method](key, value); } catch (e) { return null; }
}

class LifelineEventSource extends EventTarget {
  constructor(url, options) {
    super();
    const o = this._o = { minDelay: 1000, maxDelay: 30000, persist: true };
    for (const k in options) if (options[k] != null) o[k] = options[k];
    this.url = new URL(url, G.location && G.location.href).href;
    this.withCredentials = !!o.withCredentials;
    this.readyState = CONNECTING;
    this._key = "lifeline:" + this.url;
    this.lastEventId = (o.persist && store("getItem", this._key)) || "";
    Object.assign(this, { _h: {}, _gen: 0, _attempt: 0, _quick: 0, _retry: -1, _hb: 0, _paused: true, _on: () => this._online(), _v: () => this._visible() });
    if (G.addEventListener) G.addEventListener("online", this._on);
    if (o.pauseWhenHidden && G.document) G.document.addEventListener("visibilitychange", this._v);
    this._timer = setTimeout(this._v, 0); // connects once the caller has added its listeners
  }

  close() {
    this.readyState = CLOSED;
    this._clear();
    if (G.removeEventListener) G.removeEventListener("online", this._on);
    if (G.document) G.document.removeEventListener("visibilitychange", this._v);
  }

  // Ends the current attempt at any stage: every await checks _gen.
  _clear() {
    this._gen++;
    clearTimeout(this._timer);
    clearTimeout(this._dog);
    this._timer = this._dog = 0;
    if (this._ctl) this._ctl.abort();
    this._ctl = null;
  }

  async _connect() {
    this._clear();
    const gen = this._gen, o = this._o, id = this.lastEventId, ctl = this._ctl = new AbortController();
    // Also covers a request that gets no response. Right after a dead path the request may go out
    // on a pooled connection that died with it: the gateway answers at once, so a second without
    // a head means try another.
    this._watch(gen, this._quick ? 1000 : 0);
    try {
      const u = new URL(this.url);
      const h = new Headers((typeof o.headers === "function" ? await o.headers() : o.headers) || {});
      if (gen !== this._gen) return;
      if (!h.has("accept")) h.set("Accept", "text/event-stream");
      if (id && o.lastEventIdParam) u.searchParams.set(o.lastEventIdParam, id);
      else if (id) h.set("Last-Event-ID", id);
      const res = await fetch(u, { headers: h, credentials: this.withCredentials ? "include" : "same-origin", cache: "no-store", signal: ctl.signal });
      if (gen !== this._gen) return;
      const get = (n) => res.headers.get(n) || "", status = res.status;
      if (status === 204 || (status >= 400 && status < 500 && status !== 408 && status !== 429)) {
        this.close();
        return this.dispatchEvent(Object.assign(new Event("error"), { status }));
      }
      if (status !== 200) {
        const ra = get("retry-after"), ms = /^[0-9]+$/.test(ra) ? ra * 1000 : Date.parse(ra) - Date.now();
        return this._fail("http", status, ms >= 0 ? ms : ms < 0 ? 0 : null);
      }
      if (!/^text\/event-stream[ \t]*(;|$)/i.test(get("content-type"))) return this._fail("content-type", status);
      const origin = new URL(res.url || u).origin, reader = res.body.getReader();
      const dec = new TextDecoder("utf-8", { ignoreBOM: true });
      const p = new Parser(id, (i, e) => {
        if (gen !== this._gen) return;
        if (i !== this.lastEventId && o.persist) store("setItem", this._key, i);
        this.lastEventId = i;
        if (e) this.dispatchEvent(new MessageEvent(e.type, { data: e.data, lastEventId: i, origin }));
      }, (r) => { this._retry = r; });
      this._hb = +get("lifeline-heartbeat") || 0;
      this._quick = 0;
      this.readyState = OPEN;
      this._opened = Date.now();
      this.dispatchEvent(new Event("open"));
      if (gen === this._gen && id && get("lifeline-replay") === "miss") {
        this.dispatchEvent(new CustomEvent("lifeline:gap", { detail: { lastEventId: id } }));
      }
      if (gen !== this._gen) return;
      this._watch(gen);
      for (;;) {
        const r = await reader.read();
        if (gen !== this._gen) return;
        if (r.done) return this._fail("end");
        this._seen = Date.now();
        p.feed(dec.decode(r.value, { stream: true }));
        if (gen !== this._gen) return;
      }
    } catch (e) {
      if (gen === this._gen) this._fail("network");
    }
  }

  // No byte for 2.5 heartbeats (Lifeline-Heartbeat or the watchdog option): a dead path. `cap`
  // shortens it (a request after a dead path).
  _watch(gen, cap) {
    const w = this._o.watchdog;
    let ms = (w != null ? +w : this._hb) * 2.5;
    if (cap && (ms <= 0 || cap < ms)) ms = cap;
    const tick = () => {
      const left = this._seen + ms - Date.now();
      if (gen !== this._gen) return;
      if (left > 0) this._dog = setTimeout(tick, left);
      else this._fail("watchdog");
    };
    this._seen = Date.now();
    clearTimeout(this._dog);
    if (ms > 0) this._dog = setTimeout(tick, ms);
  }

  // error, lifeline:reconnecting, a wait (given, or backoff with full jitter), a new request.
  _fail(reason, status, wait) {
    const o = this._o, wasOpen = this.readyState === OPEN;
    this._clear();
    if (this.readyState === CLOSED) return;
    if (wasOpen && Date.now() - this._opened >= 30000) this._attempt = 0;
    this.readyState = CONNECTING;
    // A silent path is not an overloaded server: the next request goes at once, and the one after
    // it too if that one hangs on a dead pooled connection; the backoff is for what fails again.
    if (reason === "watchdog" && this._quick < 3 && wait == null) { this._quick++; wait = 0; this._attempt = Math.max(0, this._attempt - 1); }
    else this._quick = 0;
    const gen = this._gen, n = ++this._attempt;
    if (wait == null) {
      const lo = this._retry >= 0 ? this._retry : +o.minDelay;
      wait = lo + Math.random() * Math.max(0, Math.min(+o.maxDelay, Math.max(lo, +o.minDelay, 50) * 2 ** n) - lo);
    }
    wait = Math.min(Math.round(wait), 2147483647);
    this.dispatchEvent(Object.assign(new Event("error"), status ? { status } : {}));
    if (gen !== this._gen) return;
    this.dispatchEvent(new CustomEvent("lifeline:reconnecting", { detail: { attempt: n, delay: wait, reason, status } }));
    if (gen === this._gen) this._timer = setTimeout(() => this._connect(), wait);
  }

  // Back online: a new request now, on a fresh network path.
  _online() {
    if (this.readyState === CLOSED || this._paused) return;
    this._attempt = 0;
    if (this._timer) this._connect();
    else this._fail("online", undefined, 0);
  }

  _visible() {
    const hide = !!(this._o.pauseWhenHidden && G.document && G.document.hidden);
    if (this.readyState === CLOSED || hide === this._paused) return;
    this._clear();
    this._paused = hide;
    this.readyState = CONNECTING;
    if (!hide) { this._attempt = 0; this._connect(); }
  }
}

// lifelineFetchEvents(url, init, options): the events of a fetch-style event stream (a POST to a
// chat or LLM API through Lifeline) as an async iterator of { type, data, lastEventId }. On a
// network error, a silent path (2.5 × Lifeline-Heartbeat) or, with options.persist, a page reload,
// it resumes the same generation through its Lifeline-Resume path from the last event it yielded
// (Lifeline-Resume-From: count): no gap, no duplicate, one origin request. A resume answered 404
// or 410 throws (the generation is gone); so does an answer that is not 200 text/event-stream.
async function* lifelineFetchEvents(url, init, options) {
  const o = Object.assign({ maxAttempts: 8, minDelay: 250, maxDelay: 5000, persist: null }, options);
  init = init || {};
  const base = new URL(url, G.location && G.location.href), key = o.persist ? "lifeline:generation:" + o.persist : null;
  let resume = null, count = 0, id = "", attempt = 0;
  const saved = key && store("getItem", key);
  if (saved) { try { ({ resume, count, id } = JSON.parse(saved)); } catch (e) { resume = null; } }
  const save = () => { if (key) store("setItem", key, JSON.stringify({ resume, count, id })); };
  for (;;) {
    const ctl = new AbortController();
    let dog = 0, hb = 0, events = [], done = false;
    const watch = () => { clearTimeout(dog); if (hb > 0) dog = setTimeout(() => ctl.abort(), hb * 2.5); };
    try {
      let res;
      if (resume) {
        const h = new Headers(init.headers || {});
        for (const n of ["content-type", "content-length", "idempotency-key"]) h.delete(n);
        h.set("Lifeline-Resume-From", String(count));
        if (id) h.set("Last-Event-ID", id);
        hb = 5000; watch(); // until the gateway says its heartbeat
        res = await fetch(new URL(resume, base), { method: "GET", headers: h, credentials: init.credentials || "same-origin", cache: "no-store", signal: ctl.signal });
        if (res.status === 404 || res.status === 410) {
          if (key) store("removeItem", key);
          throw Object.assign(new Error("lifeline: the generation is gone (" + res.status + ")"), { status: res.status, final: true });
        }
      } else {
        res = await fetch(base, Object.assign({}, init, { signal: ctl.signal }));
        resume = res.headers.get("lifeline-resume");
        save();
        // lifelineFetch takes an answer that is no event stream as it is.
        if (o.onAnswer && o.onAnswer(res) === false) { done = true; if (key) store("removeItem", key); return; }
      }
      if (res.status !== 200 || !/^text\/event-stream[ \t]*(;|$)/i.test(res.headers.get("content-type") || "")) {
        throw Object.assign(new Error("lifeline: answered " + res.status + " " + (res.headers.get("content-type") || "")), { status: res.status, final: true });
      }
      if (o.onAnswer) o.onAnswer(res);
      hb = +res.headers.get("lifeline-heartbeat") || 0;
      watch();
      attempt = 0;
      const reader = res.body.getReader(), dec = new TextDecoder("utf-8", { ignoreBOM: true });
      const p = new Parser(id, (i, e) => { id = i; if (e) events.push(e); }, () => {});
      for (;;) {
        const r = await reader.read();
        if (r.done) { done = true; break; }
        watch();
        p.feed(dec.decode(r.value, { stream: true }));
        while (events.length) {
          const e = events.shift();
          count++;
          save();
          yield e;
        }
      }
      clearTimeout(dog);
      if (key) store("removeItem", key);
      return;
    } catch (e) {
      clearTimeout(dog);
      if (e && e.final) throw e;
      if (!resume || ++attempt > o.maxAttempts) throw e;
      const wait = attempt === 1 ? 0 : Math.min(+o.maxDelay, +o.minDelay * 2 ** (attempt - 2)) * Math.random();
      await new Promise((r) => setTimeout(r, wait));
    } finally {
      // Also when the caller stops iterating early: the request goes with it.
      clearTimeout(dog);
      if (!done) ctl.abort();
    }
  }
}

// lifelineFetch(url, init, options): a fetch for libraries that take one (the AI SDK's `fetch`
// option, the OpenAI and Anthropic JS SDKs' `fetch`). An event-stream answer comes back as a
// Response whose body is its events, resumed by lifelineFetchEvents after a drop (no gap, no
// duplicate, heartbeats left out); any other answer comes back as it is.
function lifelineFetch(url, init, options) {
  const isStream = (res) => res.status === 200 && /^text\/event-stream[ \t]*(;|$)/i.test(res.headers.get("content-type") || "");
  let answered = false, settle, fail;
  const head = new Promise((resolve, reject) => { settle = resolve; fail = reject; });
  const it = lifelineFetchEvents(url, init, Object.assign({}, options, {
    onAnswer(res) {
      if (answered) return true;
      if (!isStream(res)) { answered = true; settle(res); return false; }
      answered = true;
      settle(new Response(body, { status: 200, statusText: res.statusText, headers: res.headers }));
      return true;
    },
  }));
  const enc = new TextEncoder();
  let next = it.next(), id = "";
  next.catch((e) => { if (!answered) { answered = true; fail(e); } });
  const body = new ReadableStream({
    async pull(c) {
      let r;
      try { r = await next; } catch (e) { c.error(e); return; }
      if (r.done) { c.close(); return; }
      next = it.next();
      next.catch(() => {}); // seen by the next pull
      const e = r.value;
      let text = e.lastEventId !== id ? "id: " + e.lastEventId + "\n" : "";
      id = e.lastEventId;
      if (e.type !== "message") text += "event: " + e.type + "\n";
      c.enqueue(enc.encode(text + e.data.split("\n").map((l) => "data: " + l + "\n").join("") + "\n"));
    },
    cancel() { return it.return(); },
  });
  return head;
}

const C = { CONNECTING, OPEN, CLOSED }, P = LifelineEventSource.prototype;
Object.assign(LifelineEventSource, C, { LifelineEventSource, lifelineFetchEvents, lifelineFetch, _Parser: Parser });
Object.assign(P, C);
for (const t of ["open", "message", "error"]) {
  Object.defineProperty(P, "on" + t, {
    get() { return this._h[t] || null; },
    set(f) {
      if (!(t in this._h)) this.addEventListener(t, (e) => { if (this._h[t]) this._h[t].call(this, e); });
      this._h[t] = typeof f === "function" ? f : null;
    },
  });
}
G.LifelineEventSource = LifelineEventSource;
G.lifelineFetchEvents = lifelineFetchEvents;
G.lifelineFetch = lifelineFetch;
if (typeof module === "object" && module && module.exports) module.exports = LifelineEventSource;
})(typeof globalThis !== "undefined" ? globalThis : self);
