/*
 * Recording from the page: start and stop the room's recording, list the files and
 * download them (through fetch when a bearer token is needed). Loaded before app.js;
 * `window.mcuRecordings(ctx)` returns `{ start, stop, load }` for the page's
 * elements and API helpers in `ctx` ({ el, api, errorText, call(), refresh() }).
 */
"use strict";

window.mcuRecordings = (ctx) => {
  const el = ctx.el;

  async function start() {
    const c = ctx.call();
    if (!c) return;
    el.recStart.disabled = true;
    el.recStatus.textContent = "Starting…";
    try {
      const r = await ctx.api("/rooms/" + encodeURIComponent(c.room) + "/recording", { method: "POST" });
      if (!r.ok) throw new Error(await ctx.errorText(r));
      const body = await r.json().catch(() => ({}));
      el.recStatus.textContent = "Recording" + (body.file ? " to " + body.file : "") + ".";
      ctx.refresh();
    } catch (e) {
      el.recStatus.textContent = "Could not start recording: " + e.message;
    } finally {
      el.recStart.disabled = false;
    }
  }

  async function stop() {
    const c = ctx.call();
    if (!c) return;
    el.recStop.disabled = true;
    el.recStatus.textContent = "Stopping…";
    try {
      const r = await ctx.api("/rooms/" + encodeURIComponent(c.room) + "/recording", { method: "DELETE" });
      if (!r.ok) throw new Error(await ctx.errorText(r));
      const body = await r.json().catch(() => ({}));
      el.recStatus.textContent = "Saved " + (body.file || "recording") + ": " +
        window.mcuFormat.formatDuration(body.duration_ms) + ", " + window.mcuFormat.formatBytes(body.bytes) + ".";
      ctx.refresh();
      load();
    } catch (e) {
      el.recStatus.textContent = "Could not stop recording: " + e.message;
      ctx.refresh();
    }
  }

  async function load() {
    const list = el.recordings;
    try {
      const r = await ctx.api("/recordings", { cache: "no-store" });
      if (!r.ok) throw new Error(await ctx.errorText(r));
      const files = await r.json();
      if (!Array.isArray(files) || files.length === 0) {
        const li = document.createElement("li");
        li.className = "muted";
        li.textContent = "No recordings yet.";
        list.replaceChildren(li);
        return;
      }
      list.replaceChildren(...files.map((f) => {
        const li = document.createElement("li");
        const a = document.createElement("a");
        a.href = "/recordings/" + encodeURIComponent(f.file);
        a.textContent = f.file;
        a.download = f.file;
        a.addEventListener("click", downloadWithToken);
        const size = document.createElement("span");
        size.className = "muted";
        size.textContent = window.mcuFormat.formatBytes(f.bytes);
        li.append(a, size);
        return li;
      }));
    } catch (e) {
      const li = document.createElement("li");
      li.className = "muted";
      li.textContent = "Recordings unavailable: " + e.message;
      list.replaceChildren(li);
    }
  }

  /** Links can't carry a bearer token: with one set, download through fetch. */
  async function downloadWithToken(e) {
    if (!el.token.value.trim()) return;
    e.preventDefault();
    const a = e.currentTarget;
    try {
      const r = await ctx.api(a.getAttribute("href"));
      if (!r.ok) throw new Error(await ctx.errorText(r));
      const url = URL.createObjectURL(await r.blob());
      const tmp = document.createElement("a");
      tmp.href = url;
      tmp.download = a.download;
      document.body.append(tmp);
      tmp.click();
      tmp.remove();
      setTimeout(() => URL.revokeObjectURL(url), 60000);
    } catch (err) {
      el.recStatus.textContent = "Download failed: " + err.message;
    }
  }

  return { start, stop, load };
};
