/*
 * What this page sends, changed during a call without renegotiating: the microphone
 * and the camera switched off and on (`track.enabled`: the peer keeps sending, silence
 * and black), another microphone or camera picked (`replaceTrack`), and the screen
 * shared in place of the camera (`replaceTrack`, and back when sharing stops).
 * Loaded before app.js; exposes `window.mcuLocal`.
 */
"use strict";

window.mcuLocal = (() => {
  /** The sender of the call's camera (null without a camera). */
  function videoSender(c) {
    if (!c.media || !c.media.video) return null;
    return c.pc.getSenders().find((s) => s.track && s.track.kind === "video") || null;
  }

  /** Switches a local track on or off; returns whether it is on now (null: no such track). */
  function toggleTrack(track) {
    if (!track) return null;
    track.enabled = !track.enabled;
    return track.enabled;
  }

  /**
   * Shares the screen instead of the camera, or stops sharing. Calls `onChange(sharing)`
   * whenever it changes (also when the browser's own "stop sharing" ends it).
   */
  async function toggleScreenOf(c, onChange) {
    const sender = videoSender(c);
    if (!sender) throw new Error("screen sharing needs a camera track to replace");
    // `c.screen` and the button change together, once the sender has the track:
    // whoever reads one (the page's state, a test) finds the other agreeing.
    if (c.screen) {
      const screen = c.screen;
      await sender.replaceTrack(c.media.video);
      c.screen = null;
      screen.stop();
      onChange(false);
      return;
    }
    const stream = await navigator.mediaDevices.getDisplayMedia({ video: true, audio: false });
    const screen = stream.getVideoTracks()[0];
    try {
      await sender.replaceTrack(screen);
    } catch (e) {
      screen.stop();
      throw e;
    }
    c.screen = screen;
    screen.addEventListener("ended", () => {
      if (c.screen !== screen) return;
      c.screen = null;
      sender.replaceTrack(c.media.video).catch(() => { /* the call is gone */ });
      onChange(false);
    });
    onChange(true);
  }

  /**
   * Lists the browser's devices of `kind` ("audio" or "video") in `select`, the one of
   * `track` selected; disabled when there is no track or nothing to choose from.
   */
  async function fillPicker(select, kind, track) {
    let devices = [];
    try {
      devices = (await navigator.mediaDevices.enumerateDevices()).filter((d) => d.kind === kind + "input");
    } catch (_) { /* no device list: leave the picker empty */ }
    const current = track && track.getSettings ? track.getSettings().deviceId : "";
    select.replaceChildren(...devices.map((d, i) => {
      const o = document.createElement("option");
      o.value = d.deviceId;
      o.textContent = d.label || (kind === "audio" ? "Microphone " : "Camera ") + (i + 1);
      o.selected = d.deviceId === current;
      return o;
    }));
    select.disabled = !track || devices.length < 2;
  }

  /**
   * Switches the call's microphone or camera to `deviceId` without renegotiating.
   * While the screen is shared the new camera waits for the share to end.
   */
  async function switchDeviceOf(c, kind, deviceId) {
    const old = kind === "audio" ? c.media.audio : c.media.video;
    if (!old) throw new Error("no " + (kind === "audio" ? "microphone" : "camera") + " to switch");
    const stream = await navigator.mediaDevices.getUserMedia({ [kind]: { deviceId: { exact: deviceId } } });
    const track = kind === "audio" ? stream.getAudioTracks()[0] : stream.getVideoTracks()[0];
    track.enabled = old.enabled;
    const sender = c.pc.getSenders().find((s) => s.track === old);
    if (sender) await sender.replaceTrack(track);
    if (c.media.stream) {
      c.media.stream.removeTrack(old);
      c.media.stream.addTrack(track);
    }
    old.stop();
    if (kind === "audio") c.media.audio = track;
    else c.media.video = track;
    return track;
  }

  /**
   * The call toolbar's local controls for the page's elements `ctx.el` and the
   * current call `ctx.call()`: `toggle(kind)`, `toggleScreen()`, `fillPickers(c)`,
   * `switchDevice(kind, select)`.
   */
  function controls(ctx) {
    const el = ctx.el;
    /** The microphone and camera switches and screen sharing (no renegotiation). */
    function toggle(kind) {
      const c = ctx.call();
      if (!c || !c.media) return;
      const on = toggleTrack(kind === "audio" ? c.media.audio : c.media.video);
      if (on === null) return;
      const b = kind === "audio" ? el.micToggle : el.camToggle;
      b.setAttribute("aria-pressed", String(on));
      b.textContent = (kind === "audio" ? "Microphone " : "Camera ") + (on ? "on" : "off");
    }

    function fillPickers(c) {
      fillPicker(el.micDevice, "audio", c.media.audio);
      fillPicker(el.camDevice, "video", c.media.video);
    }

    /** Another microphone or camera, chosen in its picker. */
    async function switchDevice(kind, select) {
      const c = ctx.call();
      if (!c || !c.media) return;
      el.controlResult.textContent = "";
      try {
        const track = await switchDeviceOf(c, kind, select.value);
        if (kind === "video" && ctx.call() === c) el.localVideo.srcObject = new MediaStream([track]);
      } catch (e) {
        el.controlResult.textContent = "Could not switch: " + ((e && e.message) || e);
      }
      if (ctx.call() === c) fillPickers(c);
    }

    async function toggleScreen() {
      const c = ctx.call();
      if (!c) return;
      el.controlResult.textContent = "";
      try {
        await toggleScreenOf(c, (sharing) => {
          el.shareScreen.setAttribute("aria-pressed", String(sharing));
          el.shareScreen.textContent = sharing ? "Stop sharing" : "Share screen";
        });
      } catch (e) {
        el.controlResult.textContent = "Screen sharing: " + ((e && e.message) || e);
      }
    }

    return { toggle, toggleScreen, fillPickers, switchDevice };
  }

  return { controls };
})();
