/// The page at `/`: what a newcomer sees in the browser when they open the gateway.
///
/// Self-contained (no external scripts, styles or fonts) so it works offline and behind any proxy.
/// It uses a relative `/events` URL so that, served through the gateway, the stream goes through
/// the gateway too. Element ids (`state`, `count`, `opens`, `log`) are stable for browser tests.
enum DemoPage {
    static let html = """
        <!doctype html>
        <html lang="en">
        <head>
        <meta charset="utf-8">
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <title>Lifeline demo</title>
        <style>
        body { font: 15px/1.5 system-ui, sans-serif; margin: 2rem auto; max-width: 42rem; padding: 0 1rem; }
        #log { list-style: none; padding: 0; font-family: ui-monospace, monospace; }
        #log li.note { color: #9a5b00; }
        </style>
        </head>
        <body>
        <h1>Lifeline demo</h1>
        <p>Ticks from the demo origin, newest first. Connection: <b id="state">connecting</b>
        &middot; events received: <b id="count">0</b> &middot; connections opened: <b id="opens">0</b></p>
        <ul id="log"></ul>
        <script>
        const log = document.getElementById("log");
        const state = document.getElementById("state");
        const count = document.getElementById("count");
        const opens = document.getElementById("opens");
        let received = 0, opened = 0;
        function line(text, note) {
          const li = document.createElement("li");
          li.textContent = text;
          if (note) li.className = "note";
          log.prepend(li);
          while (log.children.length > 200) log.lastElementChild.remove();
        }
        const source = new EventSource("/events");
        source.onopen = () => {
          opened += 1;
          opens.textContent = opened;
          state.textContent = "open";
          if (opened > 1) line("connection reopened at " + new Date().toLocaleTimeString(), true);
        };
        source.onerror = () => {
          state.textContent = source.readyState === EventSource.CLOSED ? "closed" : "reconnecting";
        };
        source.onmessage = (event) => {
          received += 1;
          count.textContent = received;
          let time = event.data;
          try { time = JSON.parse(event.data).time; } catch (e) {}
          line("#" + event.lastEventId + "  " + time);
        };
        </script>
        </body>
        </html>

        """
}
