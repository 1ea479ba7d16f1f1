/*
 * The local side of a call: camera and microphone (whatever of them the browser
 * grants) and ICE gathering. Loaded before app.js; exposes `window.mcuMedia`.
 */
"use strict";

window.mcuMedia = (() => {
  const ICE_GATHER_TIMEOUT_MS = 2000;

  async function getLocalMedia(wantAudio, wantVideo) {
    const result = { stream: null, audio: null, video: null, notice: "" };
    if (!wantAudio && !wantVideo) {
      result.notice = "Camera and microphone off: joining receive-only (you watch and listen).";
      return result;
    }
    const md = navigator.mediaDevices;
    let stream = null;
    let firstError = null;
    if (md && md.getUserMedia) {
      try {
        stream = await md.getUserMedia({ audio: wantAudio, video: wantVideo });
      } catch (e) {
        firstError = e;
        // Both asked for and one is missing or denied: try each alone.
        if (wantAudio && wantVideo) {
          for (const c of [{ audio: true }, { video: true }]) {
            try { stream = await md.getUserMedia(c); break; } catch (_) { /* next */ }
          }
        }
      }
    } else {
      firstError = new Error("media devices unavailable (the page needs HTTPS or localhost)");
    }
    if (stream) {
      result.stream = stream;
      result.audio = stream.getAudioTracks()[0] || null;
      result.video = stream.getVideoTracks()[0] || null;
    }
    const gotA = !!result.audio, gotV = !!result.video;
    const why = firstError ? " (" + (firstError.message || firstError.name) + ")" : "";
    if (!gotA && !gotV) {
      result.notice = (wantVideo && wantAudio ? "No camera or microphone" : wantVideo ? "No camera" : "No microphone") +
        why + ": joining receive-only (you watch and listen).";
    } else if (!gotV) {
      result.notice = (wantVideo ? "No camera" + why : "Camera off") + ": joining with audio only.";
    } else if (!gotA) {
      result.notice = (wantAudio ? "No microphone" + why : "Microphone off") + ": joining with video only.";
    }
    return result;
  }

  function waitIceGathering(pc) {
    if (pc.iceGatheringState === "complete") return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        pc.removeEventListener("icegatheringstatechange", check);
        pc.removeEventListener("icecandidate", onCandidate);
        resolve();
      };
      const check = () => { if (pc.iceGatheringState === "complete") done(); };
      const onCandidate = (e) => { if (!e.candidate) done(); };
      const timer = setTimeout(done, ICE_GATHER_TIMEOUT_MS);
      pc.addEventListener("icegatheringstatechange", check);
      pc.addEventListener("icecandidate", onCandidate);
    });
  }

  return { getLocalMedia, waitIceGathering };
})();
