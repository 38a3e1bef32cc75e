/// The page at `/`: what a newcomer sees in the browser when they open the gateway.
///
/// Two columns side by side: the browser's plain `EventSource` straight to the demo origin, and
/// `LifelineEventSource` (the gateway's client, `/_lifeline/client.js`) through Lifeline. Both
/// count what they receive and what they miss (ticks are numbered, so a gap is visible), and
/// persist their counts across a reload. Two buttons make the trouble the cures exist for: a
/// network cut (the page's connections go silent without closing, through `DemoNetworkPath`) and
/// leaving the page for a few seconds.
///
/// Below them, a chat panel: a prompt answered by `POST /demo/chat` (`DemoChat`) through Lifeline,
/// read with `lifelineFetchEvents` and `persist`, so that a reload mid-answer continues the same
/// generation (the page keeps the text so far to repaint it) and the origin is asked once.
///
/// Self-contained (no external scripts, styles or fonts). Element ids (`plain-*`, `lifeline-*`,
/// `chat-*`, `cut`, `away`) are stable for browser tests.
enum DemoPage {
    /// What the page needs to know about where it runs.
    struct Settings: Sendable {
        var tickMillis: Int64
        var dropEverySeconds: Int?
        /// Ports of the cuttable paths to the origin and to the gateway, when the demo runs
        /// inside a gateway (`lifeline --demo`); without them both columns use `/events`.
        var directPort: Int?
        var lifelinePort: Int?
    }

    static func html(_ settings: Settings) -> String {
        func json(_ value: Int?) -> String { value.map(String.init) ?? "null" }
        let config = "{\"tickMs\":\(settings.tickMillis),\"dropEvery\":\(json(settings.dropEverySeconds)),"
            + "\"directPort\":\(json(settings.directPort)),\"lifelinePort\":\(json(settings.lifelinePort))}"
        return head + "<script>const DEMO = \(config);</script>\n" + body
    }

    private static let head = #"""
        <!doctype html>
        <html lang="en">
        <head>
        <meta charset="utf-8">
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <title>Lifeline demo</title>
        <link rel="icon" href="data:,">
        <style>
        body { font: 15px/1.45 system-ui, sans-serif; margin: 1.5rem auto; max-width: 60rem; padding: 0 1rem; color: #1d232a; }
        h1 { margin: 0 0 .3rem; font-size: 1.6rem; }
        .lead { margin: 0 0 1rem; color: #46505a; }
        .controls { display: flex; gap: .6rem; flex-wrap: wrap; align-items: center; margin-bottom: 1rem; }
        button { font: inherit; padding: .4rem .9rem; border-radius: .4rem; border: 1px solid #8894a0; background: #fff; cursor: pointer; }
        button:hover { background: #eef2f6; }
        button:disabled { opacity: .5; cursor: default; }
        #notice { color: #46505a; }
        .columns { display: grid; grid-template-columns: 1fr 1fr; gap: 1rem; }
        @media (max-width: 44rem) { .columns { grid-template-columns: 1fr; } }
        section { border: 1px solid #d3d9df; border-radius: .6rem; padding: .8rem 1rem; }
        section h2 { font-size: 1.05rem; margin: 0; }
        section .how { margin: .1rem 0 .6rem; color: #5c6670; font-size: .9rem; }
        .figures { display: grid; grid-template-columns: repeat(4, 1fr); gap: .4rem; margin-bottom: .6rem; }
        .figure { background: #f4f6f8; border-radius: .4rem; padding: .3rem .5rem; }
        .figure b { display: block; font-size: 1.35rem; font-variant-numeric: tabular-nums; }
        .figure span { font-size: .78rem; color: #5c6670; }
        .bad b { color: #b3261e; }
        .good b { color: #1b7a3a; }
        .state { font-weight: 600; }
        .state.open { color: #1b7a3a; } .state.waiting { color: #9a5b00; } .state.dead { color: #b3261e; }
        ul.log { list-style: none; padding: 0; margin: 0; height: 17rem; overflow: hidden; font: .85rem/1.4 ui-monospace, monospace; }
        ul.log li.note { color: #9a5b00; font-family: system-ui, sans-serif; }
        ul.log li.bad { color: #b3261e; font-family: system-ui, sans-serif; }
        ul.log li.good { color: #1b7a3a; font-family: system-ui, sans-serif; }
        #chat { margin-top: 1rem; }
        #chat-form { display: flex; gap: .6rem; margin-bottom: .6rem; }
        #chat-prompt { flex: 1; font: inherit; padding: .4rem .6rem; border: 1px solid #8894a0; border-radius: .4rem; }
        #chat-answer { white-space: pre-wrap; min-height: 5rem; background: #f4f6f8; border-radius: .4rem; padding: .5rem .7rem; }
        #away { position: fixed; inset: 0; background: rgba(255,255,255,.92); display: none; align-items: center; justify-content: center; font-size: 1.4rem; }
        </style>
        </head>
        <body>

        """#

    private static let body = #"""
        <h1>Lifeline demo</h1>
        <p class="lead">The demo origin sends a numbered tick every second and drops its connection now and then.
        Left, the browser's own <code>EventSource</code> reads it directly; right, <code>LifelineEventSource</code>
        (served by the gateway at <code>/_lifeline/client.js</code>) reads it through Lifeline.
        Cut the network or leave the page, and count the ticks each side misses.</p>
        <div class="controls">
        <button id="cut">Cut the network</button>
        <button id="away-button">Leave the page for 3 s</button>
        <button id="reset">Reset counters</button>
        <span id="notice"></span>
        </div>
        <div class="columns">
        <section id="plain">
        <h2>EventSource &rarr; origin</h2>
        <p class="how">Sees every drop of the origin, forgets its place when the page is left, gives up on errors
        and never notices a dead connection.</p>
        <div class="figures">
        <div class="figure"><b id="plain-received">0</b><span>received</span></div>
        <div class="figure" id="plain-missed-box"><b id="plain-missed">0</b><span>missed</span></div>
        <div class="figure"><b id="plain-drops">0</b><span>connections lost</span></div>
        <div class="figure"><b id="plain-last">&ndash;</b><span>last tick</span></div>
        </div>
        <p>State: <span class="state" id="plain-state">connecting</span></p>
        <ul class="log" id="plain-log"></ul>
        </section>
        <section id="lifeline">
        <h2>LifelineEventSource &rarr; Lifeline &rarr; origin</h2>
        <p class="how">Lifeline hides the origin's drops and keeps the connection warm with heartbeats; the client
        notices a dead connection from their absence and resumes where the page left off.</p>
        <div class="figures">
        <div class="figure"><b id="lifeline-received">0</b><span>received</span></div>
        <div class="figure" id="lifeline-missed-box"><b id="lifeline-missed">0</b><span>missed</span></div>
        <div class="figure"><b id="lifeline-drops">0</b><span>connections lost</span></div>
        <div class="figure"><b id="lifeline-last">&ndash;</b><span>last tick</span></div>
        </div>
        <p>State: <span class="state" id="lifeline-state">connecting</span></p>
        <ul class="log" id="lifeline-log"></ul>
        </section>
        </div>
        <section id="chat">
        <h2>Chat: a POST stream &rarr; Lifeline &rarr; origin</h2>
        <p class="how">The demo origin answers <code>POST /demo/chat</code> the way an LLM API does: token by token,
        with a few seconds of thinking in the middle (Lifeline fills them with heartbeats). The page reads the answer
        with <code>lifelineFetchEvents</code>. Reload the page mid-answer: the same answer continues, the origin was
        asked once.</p>
        <form id="chat-form">
        <input id="chat-prompt" aria-label="Prompt" maxlength="2000">
        <button id="chat-send" type="submit">Send</button>
        </form>
        <div class="figures">
        <div class="figure"><b id="chat-posts">&ndash;</b><span>chat POSTs the origin received</span></div>
        <div class="figure"><b id="chat-resumes">0</b><span>resumed after a reload</span></div>
        <div class="figure"><b id="chat-tokens">0</b><span>tokens</span></div>
        </div>
        <p>State: <span class="state" id="chat-state">idle</span></p>
        <div id="chat-answer"></div>
        </section>
        <div id="away">Away from the page&hellip;</div>
        <script>
        "use strict";
        const $ = (id) => document.getElementById(id);
        // Paths that the page can cut exist only on http: (a page over https may not fetch http:).
        const cuttable = location.protocol === "http:" && DEMO.directPort && DEMO.lifelinePort;
        // Tick ids count seconds since 1970: their last digits are enough to follow them.
        const clock = (d) => d.toTimeString().slice(0, 8) + (DEMO.tickMs < 1000 ? "." + String(d.getMilliseconds()).padStart(3, "0") : "");
        const short = (n) => "\u2026" + String(n).slice(-4);
        const via = (port) => cuttable ? location.protocol + "//" + location.hostname + ":" + port + "/events" : "/events";

        // One column: its counts (kept in sessionStorage across reloads), its figures and its log.
        function column(name) {
          const key = "lifeline-demo:" + name;
          let saved = null;
          try { saved = JSON.parse(sessionStorage.getItem(key)); } catch (e) {}
          const c = Object.assign({ received: 0, missed: 0, drops: 0, last: null }, saved || {});
          c.seenAt = Date.now();
          c.save = () => sessionStorage.setItem(key, JSON.stringify({ received: c.received, missed: c.missed, drops: c.drops, last: c.last }));
          c.note = (text, kind) => {
            const li = document.createElement("li");
            li.textContent = clock(new Date()) + "  " + text;
            li.className = kind || "note";
            const log = $(name + "-log");
            log.prepend(li);
            while (log.children.length > 60) log.lastElementChild.remove();
          };
          c.state = (text, kind) => { const s = $(name + "-state"); s.textContent = text; s.className = "state " + kind; };
          c.tick = (id, data) => {
            const n = Number(id);
            c.seenAt = Date.now();
            if (c.last !== null && n <= c.last) return;  // not counted twice
            if (c.last !== null && n > c.last + 1) {
              const lost = n - c.last - 1;
              c.missed += lost;
              c.note("missed " + lost + " tick" + (lost > 1 ? "s" : "") + " (" + short(c.last + 1) + (lost > 1 ? " to " + short(n - 1) : "") + ")", "bad");
            }
            c.received += 1;
            c.last = n;
            c.save();
            let time = "";
            try { time = clock(new Date(JSON.parse(data).time)); } catch (e) {}
            const li = document.createElement("li");
            li.textContent = "tick " + short(n) + "  " + time;
            const log = $(name + "-log");
            log.prepend(li);
            while (log.children.length > 60) log.lastElementChild.remove();
          };
          return c;
        }
        const plain = column("plain"), lifeline = column("lifeline");

        // Figures, once a second: a silent column is behind by the ticks the other one has seen.
        function render() {
          const newest = Math.max(plain.last || 0, lifeline.last || 0);
          for (const [name, c] of [["plain", plain], ["lifeline", lifeline]]) {
            const silent = Date.now() - c.seenAt;
            const behind = c.last !== null && silent > 2.5 * DEMO.tickMs ? Math.max(0, newest - c.last) : 0;
            const missed = c.missed + behind;
            $(name + "-received").textContent = c.received;
            $(name + "-missed").textContent = missed;
            $(name + "-missed-box").className = "figure " + (missed ? "bad" : "good");
            $(name + "-drops").textContent = c.drops;
            $(name + "-last").textContent = c.last === null ? "\u2013" : short(c.last);
            if (c.open) {
              if (behind) c.state("open, but nothing for " + Math.round(silent / 1000) + " s" + (name === "plain" ? ": EventSource never notices" : ""), "dead");
              else c.state("open", "open");
            }
          }
        }
        setInterval(render, 500);

        // Left: the platform's EventSource.
        const es = new EventSource(via(DEMO.directPort));
        es.onopen = () => { plain.open = true; plain.state("open", "open"); };
        es.onmessage = (e) => plain.tick(e.lastEventId, e.data);
        es.onerror = () => {
          if (plain.open) { plain.drops += 1; plain.save(); plain.note("connection lost; EventSource retries in a few seconds"); }
          plain.open = false;
          if (es.readyState === EventSource.CLOSED) {
            plain.state("closed for good", "dead");
            plain.note("EventSource gave up (an error while opening ends it)", "bad");
          } else {
            plain.state("reconnecting", "waiting");
          }
        };

        // Right: the gateway's client.
        let ll = null;
        function startLifeline() {
          if (typeof LifelineEventSource !== "function") {
            lifeline.state("client.js not loaded: open this page through Lifeline", "dead");
            return;
          }
          ll = new LifelineEventSource(via(DEMO.lifelinePort));
          let resumed = ll.lastEventId;
          ll.onopen = () => {
            lifeline.open = true;
            lifeline.state("open", "open");
            if (resumed) lifeline.note("resumed after " + short(resumed) + ": the gateway replays what was missed", "good");
            resumed = "";
          };
          ll.onmessage = (e) => lifeline.tick(e.lastEventId, e.data);
          ll.onerror = (e) => {
            if (lifeline.open) { lifeline.drops += 1; lifeline.save(); }
            lifeline.open = false;
            if (ll.readyState === LifelineEventSource.CLOSED) lifeline.state("stopped" + (e.status ? ": HTTP " + e.status : ""), "dead");
          };
          ll.addEventListener("lifeline:reconnecting", (e) => {
            const d = e.detail;
            lifeline.state("reconnecting in " + (d.delay / 1000).toFixed(1) + " s", "waiting");
            const why = { watchdog: "no byte within 2.5 heartbeats: the connection is dead", network: "network error",
                          end: "the response ended", http: "HTTP " + d.status, online: "back online" }[d.reason] || d.reason;
            lifeline.note(why + "; reconnecting with Last-Event-ID " + short(ll.lastEventId));
            resumed = ll.lastEventId;
          });
          ll.addEventListener("lifeline:gap", () => lifeline.note("the gateway no longer had the missed events", "bad"));
        }

        $("cut").onclick = async () => {
          $("cut").disabled = true;
          try {
            const answer = await fetch("/demo/cut", { method: "POST" });
            const cut = answer.ok ? (await answer.json()).cut : 0;
            $("notice").textContent = "Network cut: " + cut + " open connections went silent (no close, no reset).";
            plain.note("network cut", "bad");
            lifeline.note("network cut", "bad");
          } catch (e) {
            $("notice").textContent = "Could not cut the network: " + e;
          }
          setTimeout(() => { $("cut").disabled = false; }, 2000);
        };
        $("away-button").onclick = () => {
          es.close();
          if (ll) ll.close();
          $("away").style.display = "flex";
          setTimeout(() => location.reload(), 3000);
        };
        $("reset").onclick = () => {
          for (const c of [plain, lifeline]) { c.received = c.missed = c.drops = 0; c.save(); }
          render();
        };
        if (!cuttable) {
          $("cut").disabled = true;
          $("notice").textContent = "Open this page through lifeline --demo over http: to cut the network.";
        }

        // The chat panel. With persist, the helper keeps its place in the generation in
        // sessionStorage; the page keeps the text so far next to it (saved with each token, in the
        // same turn as the helper's place), so that after a reload it repaints the text and the
        // same call continues the answer instead of sending the prompt again.
        const chat = { id: "", prompt: "", text: "", tokens: 0, resumes: 0, state: "idle", error: "", seenAt: 0 };
        try { Object.assign(chat, JSON.parse(sessionStorage.getItem("lifeline-demo:chat"))); } catch (e) {}
        const chatSave = () => sessionStorage.setItem("lifeline-demo:chat", JSON.stringify(chat));
        function chatShow() {
          $("chat-answer").textContent = chat.text;
          $("chat-tokens").textContent = chat.tokens;
          $("chat-resumes").textContent = chat.resumes;
          const thinking = chat.state === "answering" && chat.tokens && Date.now() - chat.seenAt > 1500;
          $("chat-state").textContent = thinking ? "thinking: the origin is silent, Lifeline sends heartbeats"
            : chat.error ? chat.state + ": " + chat.error : chat.state;
          $("chat-state").className = "state " + ({ answering: "waiting", done: "open", failed: "dead" }[chat.state] || "");
          $("chat-send").disabled = chat.state === "answering" || typeof lifelineFetchEvents !== "function";
        }
        setInterval(chatShow, 500);
        async function chatStats() {
          try { $("chat-posts").textContent = (await (await fetch("/demo/stats", { cache: "no-store" })).json()).chatRequests; } catch (e) {}
        }
        async function chatAnswer() {
          let first = true;
          chatShow();
          try {
            // The same call after a reload: the helper finds its place under this persist name and resumes.
            const events = lifelineFetchEvents("/demo/chat", {
              method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ prompt: chat.prompt }),
            }, { persist: "demo-chat:" + chat.id });
            for await (const e of events) {
              // No break at [DONE]: the stream ends right after it, and then the helper forgets its place.
              if (e.data === "[DONE]") continue;
              chat.text += JSON.parse(e.data).choices[0].delta.content || "";
              chat.tokens += 1;
              chat.seenAt = Date.now();
              chatSave();
              chatShow();
              if (first) { first = false; chatStats(); }
            }
            chat.state = "done";
          } catch (e) {
            chat.state = "failed";
            chat.error = e.message || String(e);
          }
          chatSave();
          chatShow();
          chatStats();
        }
        $("chat-form").onsubmit = (ev) => {
          ev.preventDefault();
          if (chat.state === "answering" || typeof lifelineFetchEvents !== "function") return;
          // A new name for each answer: a place left behind by a failed one is never resumed.
          Object.assign(chat, { id: Date.now().toString(36), prompt: $("chat-prompt").value, text: "", tokens: 0, resumes: 0, state: "answering", error: "" });
          chatSave();
          chatAnswer();
        };
        function startChat() {
          $("chat-prompt").value = chat.prompt || "Why do long answers die behind load balancers?";
          chatShow();
          chatStats();
          if (typeof lifelineFetchEvents !== "function") {
            // Not saved: an answer in progress is picked up when the page is opened through Lifeline.
            Object.assign(chat, { state: "unavailable", error: "client.js not loaded: open this page through Lifeline" });
            chatShow();
          } else if (chat.state === "answering") {
            chat.resumes += 1;
            chatSave();
            chatAnswer();
          }
        }

        window.demo = { plain, lifeline, chat, get lifelineSource() { return ll; }, plainSource: es };
        </script>
        <script src="/_lifeline/client.js" onload="startLifeline(); startChat()" onerror="startLifeline(); startChat()"></script>
        </body>
        </html>

        """#
}
