/*
 * What this page sends, changed during a call without renegotiating: the microphone
 * and the camera switched off and on (`track.enabled`: the peer keeps sending, silence
 * and black), and the screen shared in place of the camera (`replaceTrack`, and back
 * when sharing stops). Loaded before app.js; exposes `window.mcuLocal`.
 */
"use strict";

window.mcuLocal = (() => {
  /** The sender of the call's camera (null without a camera). */
  function videoSender(c) {
    if (!c.media || !c.media.video) return null;
    return c.pc.getSenders().find((s) => s.track && s.track.kind === "video") || null;
  }

  /** Switches a local track on or off; returns whether it is on now (null: no such track). */
  function toggle(track) {
    if (!track) return null;
    track.enabled = !track.enabled;
    return track.enabled;
  }

  /**
   * Shares the screen instead of the camera, or stops sharing. Calls `onChange(sharing)`
   * whenever it changes (also when the browser's own "stop sharing" ends it).
   */
  async function toggleScreen(c, onChange) {
    const sender = videoSender(c);
    if (!sender) throw new Error("screen sharing needs a camera track to replace");
    if (c.screen) {
      const screen = c.screen;
      c.screen = null;
      screen.stop();
      await sender.replaceTrack(c.media.video);
      onChange(false);
      return;
    }
    const stream = await navigator.mediaDevices.getDisplayMedia({ video: true, audio: false });
    const screen = stream.getVideoTracks()[0];
    c.screen = screen;
    await sender.replaceTrack(screen);
    screen.addEventListener("ended", () => {
      if (c.screen !== screen) return;
      c.screen = null;
      sender.replaceTrack(c.media.video).catch(() => { /* the call is gone */ });
      onChange(false);
    });
    onChange(true);
  }

  return { toggle, toggleScreen };
})();
