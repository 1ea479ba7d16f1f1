/*
 * The room as this page sees it: the state and events from the server applied to the
 * call (participants, active speaker, layout, pin, recording, live streams), the participant list
 * with the speaker highlighted, and what a moderator can do (layout, pin, mute).
 * Loaded before app.js; exposes `window.mcuRoom`.
 */
"use strict";

window.mcuRoom = (() => {
  /** Applies one event of the room's stream to the call `c`. */
  function apply(c, name, data) {
    const replace = (p) => {
      c.participants = c.participants.map((q) => (q.id === p.id ? p : q));
    };
    switch (name) {
      case "state":
        c.participants = Array.isArray(data.participants) ? data.participants : [];
        c.recording = data.recording || null;
        c.streams = Array.isArray(data.streams) ? data.streams : [];
        c.speaker = data.speaker || null;
        c.layout = data.layout || "grid";
        c.pin = data.pin || null;
        break;
      case "joined":
        if (!c.participants.some((p) => p.id === data.participant.id)) c.participants.push(data.participant);
        break;
      case "left":
        c.participants = c.participants.filter((p) => p.id !== data.participant.id);
        break;
      case "muted":
        replace(data.participant);
        break;
      case "quality":
        c.participants.forEach((p) => {
          if (p.id === data.participant && p.receive) p.receive.quality = data.quality;
        });
        break;
      case "speaker":
        c.speaker = data.speaker || null;
        break;
      case "layout":
        c.layout = data.layout;
        c.pin = data.pin || null;
        break;
      case "recording":
        c.recording = data.recording || null;
        break;
      case "stream":
        c.streams = (c.streams || []).filter((s) => s.id !== data.stream.id);
        if (!data.stopped) c.streams.push(data.stream);
        break;
      default:
        break;
    }
  }

  /** Whether this page has `perm`: the server is open (no token), or the token carries it or `admin`. */
  function allows(token, perm) {
    if (!token) return true;
    try {
      const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
      const perms = JSON.parse(atob(part)).perms || [];
      return perms.includes(perm) || perms.includes("admin");
    } catch (_) {
      return false;
    }
  }

  /** Whether this page may moderate. */
  function canModerate(token) {
    return allows(token, "moderate");
  }

  function button(text, label, onClick) {
    const b = document.createElement("button");
    b.type = "button";
    b.className = "small";
    b.textContent = text;
    b.setAttribute("aria-label", label);
    b.addEventListener("click", onClick);
    return b;
  }

  /**
   * Renders the participant list into `list`: names, what each publishes, the active
   * speaker marked, and for a moderator a pin and a mute button on everyone else.
   * `act` holds the moderator's actions: `pin(id | null)`, `mute(id, bool)`.
   */
  function render(list, c, moderator, act) {
    return c.participants.map((p) => {
      const li = document.createElement("li");
      const speaking = p.id === c.speaker;
      li.className = speaking ? "speaking" : "";
      const n = document.createElement("span");
      n.className = "p-name";
      const name = p.name || p.id;
      n.textContent = name + (p.id === c.id ? " (you)" : "") + (speaking ? " · speaking" : "");
      n.title = p.id;
      const flags = document.createElement("span");
      flags.className = "p-flags";
      const muted = p.muted || {};
      const a = document.createElement("span");
      a.textContent = muted.audio ? "muted" : "audio";
      a.className = p.audio && !muted.audio ? "" : "flag-off";
      const v = document.createElement("span");
      v.textContent = "video";
      v.className = p.video && !muted.video ? "" : "flag-off";
      flags.append(a, " ", v);
      li.append(n, flags);
      if (moderator && p.video) {
        const pinned = c.layout === "speaker" && c.pin === p.id;
        li.append(button(pinned ? "Unpin" : "Pin", (pinned ? "Unpin " : "Pin ") + name, () => act.pin(pinned ? null : p.id)));
      }
      if (moderator && p.audio && p.id !== c.id) {
        const m = !!muted.audio;
        li.append(button(m ? "Unmute" : "Mute", (m ? "Unmute " : "Mute ") + name, () => act.mute(p.id, !m)));
      }
      return li;
    });
  }

  return { apply, allows, canModerate, render };
})();
