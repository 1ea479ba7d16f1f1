/*
 * Reception statistics from RTCPeerConnection.getStats(), for the stats panel and
 * for `mcu.state().stats`. Loaded before app.js; exposes `window.mcuStats`.
 */
"use strict";

window.mcuStats = (() => {
  const empty = () => ({
    timestamp: 0,
    video: { width: 0, height: 0, fps: 0, framesDecoded: 0, framesDropped: 0, packetsReceived: 0, packetsLost: 0, lossPercent: 0, codec: "" },
    audio: { packetsReceived: 0, packetsLost: 0, lossPercent: 0, jitterMs: 0, codec: "" },
    // What the server says this page receives: {codec, quality, auto}, or null.
    receive: null,
    bitrateInKbps: null, bitrateOutKbps: null, rttMs: null, // null until two samples exist
  });

  /**
   * One sample: the figures of `report` (a getStats() result); rates come from the
   * difference with `prev` ({at, bytesIn, bytesOut, framesDecoded}, or null).
   * Returns {stats, prev} where `prev` is what the next sample compares with.
   */
  function sample(report, prev, now) {
    const s = empty();
    s.timestamp = Date.now();
    let bytesIn = 0, bytesOut = 0;
    const codecs = new Map();
    report.forEach((r) => { if (r.type === "codec") codecs.set(r.id, r.mimeType || ""); });
    report.forEach((r) => {
      if (r.type === "inbound-rtp") {
        bytesIn += r.bytesReceived || 0;
        const kind = r.kind || r.mediaType;
        if (kind === "video") {
          s.video.width = r.frameWidth || 0;
          s.video.height = r.frameHeight || 0;
          s.video.framesDecoded = r.framesDecoded || 0;
          s.video.framesDropped = r.framesDropped || 0;
          s.video.packetsReceived = r.packetsReceived || 0;
          s.video.packetsLost = r.packetsLost || 0;
          s.video.fps = r.framesPerSecond || 0;
          s.video.codec = codecs.get(r.codecId) || "";
        } else if (kind === "audio") {
          s.audio.packetsReceived = r.packetsReceived || 0;
          s.audio.packetsLost = r.packetsLost || 0;
          s.audio.jitterMs = Math.round((r.jitter || 0) * 1000);
          s.audio.codec = codecs.get(r.codecId) || "";
        }
      } else if (r.type === "outbound-rtp") {
        bytesOut += r.bytesSent || 0;
      } else if (r.type === "candidate-pair" && r.nominated && r.state === "succeeded") {
        if (Number.isFinite(r.currentRoundTripTime)) s.rttMs = Math.round(r.currentRoundTripTime * 1000);
      }
    });
    const loss = (lost, got) => (lost + got > 0 ? (100 * Math.max(lost, 0)) / (lost + got) : 0);
    s.video.lossPercent = loss(s.video.packetsLost, s.video.packetsReceived);
    s.audio.lossPercent = loss(s.audio.packetsLost, s.audio.packetsReceived);
    if (prev) {
      const dt = (now - prev.at) / 1000;
      if (dt > 0) {
        s.bitrateInKbps = Math.max(0, ((bytesIn - prev.bytesIn) * 8) / dt / 1000);
        s.bitrateOutKbps = Math.max(0, ((bytesOut - prev.bytesOut) * 8) / dt / 1000);
        if (!s.video.fps) s.video.fps = Math.max(0, (s.video.framesDecoded - prev.framesDecoded) / dt);
      }
    }
    return { stats: s, prev: { at: now, bytesIn, bytesOut, framesDecoded: s.video.framesDecoded } };
  }

  /** "H264 · medium (auto)" from the room state's `receive`; "–" without one. */
  function describeReceive(receive) {
    if (!receive) return "–";
    return receive.codec + " · " + receive.quality + (receive.auto ? " (auto)" : "");
  }

  return { empty, sample, describeReceive };
})();

/** Figures as people read them. */
window.mcuFormat = (() => {
  function formatBytes(n) {
    if (!Number.isFinite(n)) return "?";
    if (n < 1024) return n + " B";
    if (n < 1024 * 1024) return (n / 1024).toFixed(1) + " KiB";
    return (n / (1024 * 1024)).toFixed(1) + " MiB";
  }

  function formatKbps(k) {
    if (!Number.isFinite(k)) return "–";
    return k >= 1000 ? (k / 1000).toFixed(2) + " Mbit/s" : Math.round(k) + " kbit/s";
  }

  function formatDuration(ms) {
    if (!Number.isFinite(ms)) return "?";
    const s = Math.round(ms / 1000);
    return Math.floor(s / 60) + ":" + String(s % 60).padStart(2, "0");
  }

  return { formatBytes, formatKbps, formatDuration };
})();
