/*
 * Going live from the page: start a stream of the room's mix to an RTMP server
 * (YouTube, Twitch, ...), see each stream's state as the room's events report it,
 * stop it. Loaded before app.js; `window.mcuLive(ctx)` returns `{ start, render }`
 * for the page's elements and API helpers in `ctx` ({ el, api, errorText, call() }).
 */
"use strict";

window.mcuLive = (ctx) => {
  const el = ctx.el;
  const STATES = { connecting: "Connecting…", live: "Live", retrying: "Retrying", failed: "Failed" };

  async function start(e) {
    if (e) e.preventDefault();
    const c = ctx.call();
    const url = el.liveUrl.value.trim();
    if (!c || !url) return;
    el.liveStart.disabled = true;
    el.liveStatus.textContent = "Starting…";
    try {
      const r = await ctx.api("/rooms/" + encodeURIComponent(c.room) + "/streams", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ url }),
      });
      if (!r.ok) throw new Error(await ctx.errorText(r));
      el.liveUrl.value = "";
      el.liveStatus.textContent = "";
    } catch (err) {
      el.liveStatus.textContent = "Could not go live: " + err.message;
    } finally {
      el.liveStart.disabled = false;
    }
  }

  async function stop(id) {
    const c = ctx.call();
    if (!c) return;
    try {
      const r = await ctx.api("/rooms/" + encodeURIComponent(c.room) + "/streams/" + encodeURIComponent(id), {
        method: "DELETE",
      });
      if (!r.ok) throw new Error(await ctx.errorText(r));
    } catch (err) {
      el.liveStatus.textContent = "Could not stop the stream: " + err.message;
    }
  }

  /** Lists the call's streams; `allowed`: this page may start and stop them. */
  function render(c, allowed) {
    el.liveStart.disabled = !allowed;
    el.liveUrl.disabled = !allowed;
    const streams = Array.isArray(c.streams) ? c.streams : [];
    el.liveIndicator.hidden = !streams.some((s) => s.state === "live");
    el.liveStreams.replaceChildren(...streams.map((s) => {
      const li = document.createElement("li");
      const url = document.createElement("span");
      url.textContent = s.url;
      const state = document.createElement("span");
      state.className = "stream-" + s.state;
      state.textContent = (STATES[s.state] || s.state) + (s.error ? ": " + s.error : "");
      li.append(url, " ", state);
      if (allowed) {
        const b = document.createElement("button");
        b.type = "button";
        b.className = "small";
        b.textContent = "Stop";
        b.setAttribute("aria-label", "Stop the stream to " + s.url);
        b.addEventListener("click", () => stop(s.id));
        li.append(" ", b);
      }
      return li;
    }));
  }

  return { start, render };
};
