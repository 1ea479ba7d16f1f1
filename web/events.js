/*
 * The room's event stream (GET /rooms/{room}/events, Server-Sent Events), read with
 * fetch rather than EventSource so it can carry the Authorization header.
 * Loaded before app.js; exposes `window.mcuEvents`.
 */
"use strict";

window.mcuEvents = (() => {
  /**
   * Opens `path` and calls `onEvent(name, data)` for every event (data parsed as
   * JSON; keep-alive comments skipped) and `onEnd()` once when the stream ends by
   * itself (not after `close()`). Returns `{ close() }`.
   */
  function open(path, headers, onEvent, onEnd) {
    const abort = new AbortController();
    let closed = false;
    (async () => {
      try {
        const r = await fetch(path, {
          headers: Object.assign({ Accept: "text/event-stream" }, headers),
          signal: abort.signal,
          cache: "no-store",
        });
        if (!r.ok || !r.body) throw new Error("HTTP " + r.status);
        const reader = r.body.getReader();
        const decoder = new TextDecoder();
        let buffer = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += decoder.decode(value, { stream: true });
          let end;
          while ((end = buffer.indexOf("\n\n")) >= 0) {
            const block = buffer.slice(0, end);
            buffer = buffer.slice(end + 2);
            let name = "message";
            let data = "";
            for (const line of block.split("\n")) {
              if (line.startsWith("event:")) name = line.slice(6).trim();
              else if (line.startsWith("data:")) data += line.slice(5).trim();
            }
            if (!data) continue; // a keep-alive comment
            let parsed;
            try { parsed = JSON.parse(data); } catch (_) { continue; }
            if (!closed) onEvent(name, parsed);
          }
        }
      } catch (_) { /* ended: network, HTTP error or abort */ }
      if (!closed) onEnd();
    })();
    return { close() { closed = true; abort.abort(); } };
  }

  return { open };
})();
