/*
 * What this page asks the server to send: the video codec it prefers (through
 * setCodecPreferences, so the offer lists it first) and the quality tier.
 * Loaded before app.js; exposes `window.mcuQuality`.
 */
"use strict";

window.mcuQuality = (() => {
  const QUALITY_KEY = "mcu.quality";
  const QUALITIES = ["auto", "high", "medium", "low"];
  // Phones and other small screens always start on `auto`: their link and decoder are
  // the likeliest to need a lower tier, and a remembered `high` could stall them.
  const SMALL_SCREEN = "(max-width: 600px), (max-height: 480px)";

  /** Is this a phone-sized screen? */
  function smallScreen() {
    return !!(window.matchMedia && window.matchMedia(SMALL_SCREEN).matches);
  }

  /** The tier to join with: `auto` on a small screen, else the last one chosen. */
  function initial() {
    if (smallScreen()) return "auto";
    let saved = "";
    try { saved = localStorage.getItem(QUALITY_KEY) || ""; } catch (_) { /* storage disabled */ }
    return QUALITIES.includes(saved) ? saved : "auto";
  }

  function remember(quality) {
    try { localStorage.setItem(QUALITY_KEY, quality); } catch (_) { /* storage disabled */ }
  }

  /**
   * Puts the codecs of `mime` ("video/H264", "video/VP8") first in the transceiver's
   * preferences, keeping every other one after them. Returns false when the browser
   * cannot (no setCodecPreferences, or no such codec).
   */
  function preferCodec(transceiver, mime) {
    if (!mime || !transceiver.setCodecPreferences || !window.RTCRtpReceiver || !RTCRtpReceiver.getCapabilities) {
      return false;
    }
    const caps = RTCRtpReceiver.getCapabilities("video");
    if (!caps) return false;
    const wanted = mime.toLowerCase();
    let first = caps.codecs.filter((c) => c.mimeType.toLowerCase() === wanted);
    if (!first.length) return false;
    if (wanted === "video/h264") {
      // Constrained baseline with packetization-mode=1 first: what every decoder takes.
      const rank = (c) => {
        const f = (c.sdpFmtpLine || "").toLowerCase();
        return (f.includes("packetization-mode=1") ? 0 : 2) + (/profile-level-id=42e0/.test(f) ? 0 : 1);
      };
      first = first.slice().sort((a, b) => rank(a) - rank(b));
    }
    const rest = caps.codecs.filter((c) => c.mimeType.toLowerCase() !== wanted);
    transceiver.setCodecPreferences(first.concat(rest));
    return true;
  }

  /**
   * Asks the server for `quality` for the participant at `url` (PATCH, through
   * `api`, which adds the token); resolves to what it now receives, or throws with
   * the server's reason (from `errorText`).
   */
  async function request(api, errorText, url, quality) {
    const r = await api(url, {
      method: "PATCH",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ quality }),
    });
    if (!r.ok) throw new Error(await errorText(r));
    return (await r.json()).receive;
  }

  return { QUALITIES, initial, remember, preferCodec, smallScreen, request };
})();
