/*
 * MCU browser client: one RTCPeerConnection per participant, sends the local camera
 * and microphone (when available) and receives the server's mixed video and audio.
 * Plain JavaScript, no build step, talks only to the server that served the page.
 *
 * Exposed for tests and debugging as `window.mcu`:
 *   mcu.pc                 the current RTCPeerConnection (null when not joined)
 *   mcu.state()            a snapshot:
 *     { joined, room, name, participantUrl, participantId,
 *       connectionState, iceConnectionState, iceGatheringState,
 *       participants: [{id, name, audio, video}], participantCount,
 *       recording,          // the room state's `recording` (null when not recording)
 *       speaker, layout, pin,  // the active speaker's id, "grid"/"speaker", the pinned id
 *       sending: {audio, video, screen},  // microphone/camera switched on, screen shared
 *       mediaNotice,        // text of the visible media message ("" when none)
 *       audioBlocked,       // true while the "Tap to unmute" button is shown
 *       local: {audio, video},  // which local tracks are being sent
 *       stats: {            // refreshed every second from pc.getStats()
 *         timestamp,
 *         video: {width, height, fps, framesDecoded, framesDropped,
 *                 packetsReceived, packetsLost, lossPercent, codec},
 *         audio: {packetsReceived, packetsLost, lossPercent, jitterMs, codec},
 *         receive: {codec, quality, auto} | null,  // what the server sends this page
 *         bitrateInKbps, bitrateOutKbps,  // null until the second sample
 *         rttMs } }
 *   mcu.join()             same as clicking Join (reads the form)
 *   mcu.leave()            same as clicking Leave
 *   mcu.setQuality(q)      same as choosing `q` (auto/high/medium/low) in the menu
 *   mcu.setLayout(l, pin)  same as the layout buttons / a participant's Pin button
 *   mcu.mute(id, bool)     same as a participant's Mute button (moderators)
 */
"use strict";

(() => {
  const ROOM_RE = /^[A-Za-z0-9_-]{1,64}$/;
  const TOKEN_KEY = "mcu.token";
  const NAME_KEY = "mcu.name";
  const RECONNECT_EVENTS_MS = 2000;
  const STATS_MS = 1000;

  const $ = (id) => document.getElementById(id);
  const el = {
    joinView: $("join-view"), callView: $("call-view"), form: $("join-form"),
    room: $("room"), name: $("name"), camera: $("camera"), microphone: $("microphone"),
    token: $("token"), advanced: $("advanced"), join: $("join"), joinError: $("join-error"),
    status: $("status"), roomLabel: $("room-label"),
    leave: $("leave"), copyLink: $("copy-link"), roomLink: $("room-link"), copyResult: $("copy-result"),
    notice: $("media-notice"), remoteVideo: $("remote-video"), remoteAudio: $("remote-audio"),
    unmute: $("unmute"), localVideo: $("local-video"), recIndicator: $("rec-indicator"),
    connState: $("conn-state"), iceState: $("ice-state"),
    count: $("participant-count"), participants: $("participants"),
    statResolution: $("stat-resolution"), statFps: $("stat-fps"), statFrames: $("stat-frames"),
    statLoss: $("stat-loss"), statAudio: $("stat-audio"), statIn: $("stat-in"), statOut: $("stat-out"),
    statRtt: $("stat-rtt"), statReceive: $("stat-receive"),
    codec: $("codec"), quality: $("quality"), qualityResult: $("quality-result"),
    recStart: $("rec-start"), recStop: $("rec-stop"), recStatus: $("rec-status"),
    recRefresh: $("rec-refresh"), recordings: $("recordings"), liveForm: $("live-form"), liveUrl: $("live-url"),
    liveStart: $("live-start"), liveStatus: $("live-status"), liveStreams: $("live-streams"),
    liveIndicator: $("live-indicator"),
    micToggle: $("mic-toggle"), camToggle: $("cam-toggle"), shareScreen: $("share-screen"),
    layoutGrid: $("layout-grid"), layoutSpeaker: $("layout-speaker"), controlResult: $("control-result"),
    micDevice: $("mic-device"), camDevice: $("cam-device"),
  };

  // Everything about the current call; reset by leave().
  let call = null;
  let joining = false;
  const emptyStats = () => window.mcuStats.empty();

  // ---------- helpers ----------

  function setStatus(text, kind) {
    el.status.textContent = text;
    el.status.className = "status" + (kind ? " " + kind : "");
  }

  function showJoinError(text) {
    el.joinError.textContent = text;
    el.joinError.hidden = !text;
  }

  function authHeaders(extra) {
    const headers = Object.assign({}, extra || {});
    const token = el.token.value.trim();
    if (token) headers.Authorization = "Bearer " + token;
    return headers;
  }

  function api(path, options) {
    const opts = Object.assign({}, options || {});
    opts.headers = authHeaders(opts.headers);
    return fetch(path, opts);
  }

  /** The `error` of a JSON error body, else the status line. */
  async function errorText(response) {
    let text = "";
    try { text = await response.text(); } catch (_) { /* ignore */ }
    try {
      const body = JSON.parse(text);
      if (body && typeof body.error === "string") return body.error + " (" + response.status + ")";
    } catch (_) { /* not JSON */ }
    return "HTTP " + response.status + (response.statusText ? " " + response.statusText : "") +
      (text && text.length < 200 ? ": " + text : "");
  }

  function roomLink(room) {
    return location.origin + "/?room=" + encodeURIComponent(room);
  }

  // ---------- form prefill ----------

  function prefill() {
    const params = new URLSearchParams(location.search);
    const room = params.get("room");
    if (room) el.room.value = room;
    let token = params.get("token");
    if (token) {
      try { localStorage.setItem(TOKEN_KEY, token); } catch (_) { /* storage disabled */ }
      // Don't leave the token in the address bar (or in copied links).
      params.delete("token");
      const qs = params.toString();
      history.replaceState(null, "", "/" + (qs ? "?" + qs : ""));
    } else {
      try { token = localStorage.getItem(TOKEN_KEY) || ""; } catch (_) { token = ""; }
    }
    el.token.value = token || "";
    if (token) el.advanced.open = true;
    try { el.name.value = localStorage.getItem(NAME_KEY) || ""; } catch (_) { /* ignore */ }
  }

  // ---------- media ----------

  async function fetchIceServers() {
    try {
      const r = await api("/ice-servers", { cache: "no-store" });
      if (!r.ok) return [];
      const body = await r.json();
      return Array.isArray(body.iceServers) ? body.iceServers : [];
    } catch (_) {
      return [];
    }
  }

  async function playAudio() {
    const audio = el.remoteAudio;
    if (!audio.srcObject) return;
    audio.muted = false;
    try {
      await audio.play();
      el.unmute.hidden = true;
    } catch (e) {
      // Autoplay with sound blocked until a user gesture.
      el.unmute.hidden = false;
    }
  }

  function playVideo() {
    const p = el.remoteVideo.play();
    if (p && p.catch) p.catch(() => { /* muted video autoplay is always allowed; ignore */ });
  }

  // ---------- join / leave ----------

  async function join() {
    if (joining || call) return;
    showJoinError("");
    const room = el.room.value.trim();
    if (!ROOM_RE.test(room)) {
      showJoinError('Room name must be 1–64 letters, digits, "-" or "_".');
      el.room.focus();
      return;
    }
    const name = el.name.value.trim();
    const token = el.token.value.trim();
    try {
      localStorage.setItem(NAME_KEY, name);
      if (token) localStorage.setItem(TOKEN_KEY, token); else localStorage.removeItem(TOKEN_KEY);
    } catch (_) { /* storage disabled */ }

    joining = true;
    el.join.disabled = true;
    setStatus("Joining…");
    let pc = null;
    let media = null;
    let c = null; // the call being set up; abandoned once `call` is no longer it
    const ensureCurrent = () => { if (call !== c) throw new Error("cancelled"); };
    try {
      const iceServers = await fetchIceServers();
      media = await window.mcuMedia.getLocalMedia(el.microphone.checked, el.camera.checked);
      pc = new RTCPeerConnection({ iceServers });
      const streams = media.stream ? [media.stream] : [];
      // Always receive both kinds; send what we have. Audio first, then video.
      pc.addTransceiver(media.audio || "audio", { direction: media.audio ? "sendrecv" : "recvonly", streams });
      const video = pc.addTransceiver(media.video || "video", { direction: media.video ? "sendrecv" : "recvonly", streams });
      if (el.codec.value) window.mcuQuality.preferCodec(video, el.codec.value);
      const quality = el.quality.value;

      c = call = {
        pc, room, name, media, url: null, id: null, participants: [], recording: null, roomError: "",
        speaker: null, layout: "grid", pin: null, events: null, screen: null, polling: false, stats: emptyStats(), prevStats: null, timers: [], audioStream: new MediaStream(),
        videoStream: new MediaStream(),
      };
      wirePeer(c);

      await pc.setLocalDescription(await pc.createOffer());
      ensureCurrent();
      await window.mcuMedia.waitIceGathering(pc);
      ensureCurrent();
      const params = new URLSearchParams();
      if (name) params.set("name", name);
      if (quality !== "auto") params.set("quality", quality);
      const q = params.toString() ? "?" + params.toString() : "";
      const r = await api("/rooms/" + encodeURIComponent(room) + "/join" + q, {
        method: "POST",
        headers: { "Content-Type": "application/sdp" },
        body: pc.localDescription.sdp,
      });
      const location_ = r.ok ? r.headers.get("Location") : null;
      if (location_) {
        // The server has the participant now: from here on teardown(true) DELETEs it.
        c.url = new URL(location_, window.location.href).pathname;
        c.id = c.url.split("/").pop();
        // Left (or page hidden) while the POST was in flight: teardown had no URL yet.
        if (call !== c) deleteParticipant(c.url, true);
      }
      ensureCurrent();
      if (!r.ok) throw new Error(await errorText(r));
      const answer = await r.text();
      ensureCurrent();
      await pc.setRemoteDescription({ type: "answer", sdp: answer });
      ensureCurrent();
    } catch (e) {
      joining = false;
      el.join.disabled = false;
      if (c && call !== c) return; // abandoned by leave() or pagehide, which cleaned up
      const msg = (e && e.message) || String(e);
      if (c) teardown(true); // also DELETEs the participant if the server accepted the join
      else closeLocal(pc, media); // failed before the call existed
      showJoinError("Could not join: " + msg);
      setStatus("Not connected");
      return;
    }
    joining = false;
    enterCallView(media);
  }

  function wirePeer(c) {
    const pc = c.pc;
    pc.addEventListener("track", (e) => {
      const track = e.track;
      if (track.kind === "video") {
        c.videoStream.getTracks().forEach((t) => c.videoStream.removeTrack(t));
        c.videoStream.addTrack(track);
        el.remoteVideo.srcObject = c.videoStream;
        playVideo();
      } else if (track.kind === "audio") {
        c.audioStream.getTracks().forEach((t) => c.audioStream.removeTrack(t));
        c.audioStream.addTrack(track);
        el.remoteAudio.srcObject = c.audioStream;
        playAudio();
      }
    });
    const update = () => {
      if (call !== c) return;
      el.connState.textContent = pc.connectionState;
      el.connState.className = "state-" + pc.connectionState;
      el.iceState.textContent = pc.iceConnectionState;
      el.iceState.className = "state-" + pc.iceConnectionState;
      if (pc.connectionState === "connected") setStatus("Connected", "ok");
      else if (pc.connectionState === "failed") setStatus("Connection failed: press Leave and join again", "bad");
      else if (pc.connectionState === "disconnected") setStatus("Connection interrupted, reconnecting…", "bad");
      else if (pc.connectionState === "connecting") setStatus("Connecting…");
    };
    pc.addEventListener("connectionstatechange", update);
    pc.addEventListener("iceconnectionstatechange", update);
    c.updateState = update;
  }

  function enterCallView(media) {
    const c = call;
    el.joinView.hidden = true;
    el.callView.hidden = false;
    el.join.disabled = false;
    el.roomLabel.textContent = "Room: " + c.room;
    el.roomLabel.hidden = false;
    history.replaceState(null, "", "/?room=" + encodeURIComponent(c.room));
    document.title = c.room + " – MCU conference";

    el.notice.textContent = media.notice;
    el.notice.hidden = !media.notice;
    if (media.video) {
      el.localVideo.srcObject = new MediaStream([media.video]);
      el.localVideo.hidden = false;
    } else {
      el.localVideo.hidden = true;
    }
    el.copyResult.textContent = "";
    el.roomLink.hidden = true;
    el.recStatus.textContent = "";
    el.recStop.disabled = true;
    c.updateState();
    if (c.pc.connectionState !== "connected") setStatus("Connecting…");

    for (const [b, track] of [[el.micToggle, media.audio], [el.camToggle, media.video]]) {
      b.disabled = !track;
      b.setAttribute("aria-pressed", String(!!track));
    }
    el.micToggle.textContent = "Microphone " + (media.audio ? "on" : "off");
    el.camToggle.textContent = "Camera " + (media.video ? "on" : "off");
    el.shareScreen.disabled = !media.video || !(navigator.mediaDevices && navigator.mediaDevices.getDisplayMedia);
    el.shareScreen.textContent = "Share screen";
    el.shareScreen.setAttribute("aria-pressed", "false");
    el.controlResult.textContent = "";
    controls.fillPickers(c);

    followRoom(c);
    recordings.load();
    c.timers.push(setInterval(collectStats, STATS_MS));
  }

  function deleteParticipant(url, keepalive) {
    api(url, { method: "DELETE", keepalive: !!keepalive }).catch(() => { /* best effort */ });
  }

  /** Close the peer connection and stop the camera and microphone (each when present). */
  function closeLocal(pc, media) {
    if (pc) { try { pc.close(); } catch (_) { /* ignore */ } }
    if (media && media.stream) media.stream.getTracks().forEach((t) => t.stop());
  }

  /** Close everything local; when `notify`, also DELETE the participant. */
  function teardown(notify, keepalive) {
    const c = call;
    call = null;
    if (!c) return;
    c.timers.forEach(clearInterval); // clears timeouts too
    if (c.events) c.events.close();
    if (c.screen) c.screen.stop();
    if (notify && c.url) deleteParticipant(c.url, keepalive);
    closeLocal(c.pc, c.media);
    el.remoteVideo.srcObject = null;
    el.remoteAudio.srcObject = null;
    el.localVideo.srcObject = null;
    el.unmute.hidden = true;
  }

  function leave() {
    if (!call) return;
    teardown(true);
    el.callView.hidden = true;
    el.joinView.hidden = false;
    el.roomLabel.hidden = true;
    el.notice.hidden = true;
    el.recIndicator.hidden = el.liveIndicator.hidden = true;
    el.count.textContent = "0";
    el.participants.replaceChildren();
    el.connState.textContent = "closed";
    el.iceState.textContent = "closed";
    resetStatsView();
    document.title = "MCU conference";
    setStatus("Left the room");
  }

  // ---------- room state ----------

  async function pollRoom() {
    const c = call;
    if (!c || c.polling) return; // one request at a time: an older answer can't win
    c.polling = true;
    let state = null;
    let error = "";
    try {
      const r = await api("/rooms/" + encodeURIComponent(c.room), { cache: "no-store" });
      if (r.ok) state = await r.json();
      else if (r.status !== 404) error = await errorText(r);
    } catch (e) {
      error = (e && e.message) || String(e);
    } finally {
      c.polling = false;
    }
    if (call !== c) return;
    c.roomError = error;
    if (!error) window.mcuRoom.apply(c, "state", state || {}); // on an error keep the last known state
    renderRoom(c);
  }

  /** Shows the room: participants (speaker marked), recording, layout buttons. */
  function renderRoom(c) {
    el.count.textContent = String(c.participants.length);
    const moderator = window.mcuRoom.canModerate(el.token.value.trim());
    const items = window.mcuRoom.render(el.participants, c, moderator, { pin: pinParticipant, mute: muteParticipant });
    if (c.roomError) {
      const li = document.createElement("li");
      li.className = "p-error";
      li.textContent = "Room state unavailable: " + c.roomError;
      items.push(li);
    }
    el.participants.replaceChildren(...items);
    el.recIndicator.hidden = !c.recording;
    el.recStop.disabled = !c.recording;
    live.render(c, window.mcuRoom.allows(el.token.value.trim(), "record"));
    el.layoutGrid.setAttribute("aria-pressed", String(c.layout === "grid"));
    el.layoutSpeaker.setAttribute("aria-pressed", String(c.layout === "speaker"));
    el.layoutGrid.disabled = el.layoutSpeaker.disabled = !moderator;
  }

  /** Follows the room's event stream; when it ends, reads the state once and reopens it. */
  function followRoom(c) {
    const path = "/rooms/" + encodeURIComponent(c.room) + "/events";
    c.events = window.mcuEvents.open(path, authHeaders(), (name, data) => {
      if (call !== c) return;
      window.mcuRoom.apply(c, name, data);
      c.roomError = "";
      renderRoom(c);
    }, () => {
      if (call !== c) return;
      pollRoom();
      c.timers.push(setTimeout(() => { if (call === c) followRoom(c); }, RECONNECT_EVENTS_MS));
    });
  }

  /** A moderator's request; its answer comes back through the event stream. */
  async function moderate(path, method, body) {
    el.controlResult.textContent = "";
    try {
      const r = await api(path, { method, headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
      if (!r.ok) el.controlResult.textContent = await errorText(r);
    } catch (e) {
      el.controlResult.textContent = (e && e.message) || String(e);
    }
  }

  function setLayout(layout, pin) {
    if (!call) return Promise.resolve();
    const body = layout === "speaker" ? { layout, pin: pin || null } : { layout };
    return moderate("/rooms/" + encodeURIComponent(call.room) + "/layout", "PUT", body);
  }

  function pinParticipant(id) { return setLayout("speaker", id); }

  function muteParticipant(id, muted) {
    if (!call) return Promise.resolve();
    const path = "/rooms/" + encodeURIComponent(call.room) + "/participants/" + encodeURIComponent(id) + "/mute";
    return moderate(path, "POST", { audio: muted });
  }

  const controls = window.mcuLocal.controls({ el, call: () => call });

  // ---------- stats ----------

  async function collectStats() {
    const c = call;
    if (!c || c.pc.signalingState === "closed") return;
    let report;
    try { report = await c.pc.getStats(); } catch (_) { return; }
    if (call !== c) return;
    const { stats, prev } = window.mcuStats.sample(report, c.prevStats, performance.now());
    const me = c.participants.find((p) => p.id === c.id);
    stats.receive = me && me.receive ? Object.assign({}, me.receive) : null;
    c.prevStats = prev;
    c.stats = stats;
    renderStats(stats);
  }

  function renderStats(s) {
    el.statResolution.textContent = s.video.width ? s.video.width + "×" + s.video.height +
      (s.video.codec ? " " + s.video.codec.replace(/^video\//, "") : "") : "–";
    el.statFps.textContent = s.video.fps ? s.video.fps.toFixed(1) + " fps" : "–";
    el.statFrames.textContent = String(s.video.framesDecoded);
    el.statLoss.textContent = s.video.packetsLost + " (" + s.video.lossPercent.toFixed(1) + " %)";
    el.statAudio.textContent = s.audio.packetsReceived + (s.audio.packetsLost ? " (" + s.audio.packetsLost + " lost)" : "");
    el.statIn.textContent = window.mcuFormat.formatKbps(s.bitrateInKbps);
    el.statOut.textContent = window.mcuFormat.formatKbps(s.bitrateOutKbps);
    el.statRtt.textContent = s.rttMs == null ? "–" : s.rttMs + " ms";
    el.statReceive.textContent = window.mcuStats.describeReceive(s.receive);
    if (s.receive && !s.receive.auto && document.activeElement !== el.quality) el.quality.value = s.receive.quality;
  }

  function resetStatsView() {
    for (const k of ["statResolution", "statReceive", "statFps", "statFrames", "statLoss", "statAudio", "statIn", "statOut", "statRtt"]) {
      el[k].textContent = "–";
    }
  }

  // ---------- recording ----------

  const recordings = window.mcuRecordings({ el, api, errorText, call: () => call, refresh: () => pollRoom() });
  const live = window.mcuLive({ el, api, errorText, call: () => call });

  // ---------- copy link ----------

  async function copyLink() {
    if (!call) return;
    const link = roomLink(call.room);
    try {
      await navigator.clipboard.writeText(link);
      el.copyResult.textContent = "Link copied.";
      el.roomLink.hidden = true;
    } catch (_) {
      // No clipboard API (e.g. plain HTTP): show the link selected for manual copy.
      el.roomLink.value = link;
      el.roomLink.hidden = false;
      el.roomLink.focus();
      el.roomLink.select();
      let ok = false;
      try { ok = document.execCommand("copy"); } catch (_) { ok = false; }
      el.copyResult.textContent = ok ? "Link copied." : "Copy the link above.";
    }
  }

  // ---------- quality ----------

  /** Asks the server for another tier (or `auto`) for this page. */
  async function changeQuality() {
    const wanted = el.quality.value;
    window.mcuQuality.remember(wanted);
    const c = call;
    if (!c || !c.url) return;
    el.qualityResult.textContent = "…";
    try {
      const receive = await window.mcuQuality.request(api, errorText, c.url, wanted);
      if (call !== c) return;
      el.qualityResult.textContent = "";
      const me = c.participants.find((p) => p.id === c.id);
      if (me) me.receive = receive;
    } catch (e) {
      if (call === c) el.qualityResult.textContent = "Could not change quality: " + ((e && e.message) || e);
    }
  }

  // ---------- wiring ----------

  el.form.addEventListener("submit", (e) => { e.preventDefault(); join(); });
  el.leave.addEventListener("click", leave);
  el.copyLink.addEventListener("click", copyLink);
  el.unmute.addEventListener("click", playAudio);
  el.recStart.addEventListener("click", recordings.start);
  el.recStop.addEventListener("click", recordings.stop);
  el.recRefresh.addEventListener("click", recordings.load);
  el.liveForm.addEventListener("submit", live.start);
  el.quality.addEventListener("change", changeQuality);
  el.micToggle.addEventListener("click", () => controls.toggle("audio"));
  el.camToggle.addEventListener("click", () => controls.toggle("video"));
  el.shareScreen.addEventListener("click", controls.toggleScreen);
  el.micDevice.addEventListener("change", () => controls.switchDevice("audio", el.micDevice));
  el.camDevice.addEventListener("change", () => controls.switchDevice("video", el.camDevice));
  el.layoutGrid.addEventListener("click", () => setLayout("grid"));
  el.layoutSpeaker.addEventListener("click", () => setLayout("speaker", call && call.pin));
  el.room.addEventListener("input", () => {
    el.room.setCustomValidity(el.room.value === "" || ROOM_RE.test(el.room.value.trim()) ? "" : "invalid room name");
  });
  window.addEventListener("pagehide", () => teardown(true, true));

  prefill();
  el.quality.value = window.mcuQuality.initial();

  window.mcu = {
    get pc() { return call ? call.pc : null; },
    state() {
      const c = call;
      const pc = c ? c.pc : null;
      return {
        joined: !!c,
        room: c ? c.room : null,
        name: c ? c.name : null,
        participantUrl: c ? c.url : null,
        participantId: c ? c.id : null,
        connectionState: pc ? pc.connectionState : "closed",
        iceConnectionState: pc ? pc.iceConnectionState : "closed",
        iceGatheringState: pc ? pc.iceGatheringState : "new",
        participants: c ? c.participants.map((p) => Object.assign({}, p)) : [],
        participantCount: c ? c.participants.length : 0,
        recording: c ? c.recording : null,
        speaker: c ? c.speaker : null,
        layout: c ? c.layout : null,
        pin: c ? c.pin : null,
        sending: {
          audio: !!(c && c.media && c.media.audio && c.media.audio.enabled),
          video: !!(c && c.media && c.media.video && c.media.video.enabled),
          screen: !!(c && c.screen),
          audioDevice: c && c.media && c.media.audio ? c.media.audio.getSettings().deviceId : null,
        },
        mediaNotice: el.notice.hidden ? "" : el.notice.textContent,
        audioBlocked: !el.unmute.hidden,
        local: { audio: !!(c && c.media && c.media.audio), video: !!(c && c.media && c.media.video) },
        stats: c ? JSON.parse(JSON.stringify(c.stats)) : emptyStats(),
      };
    },
    join,
    leave,
    setQuality(q) {
      el.quality.value = q;
      return changeQuality();
    },
    setLayout,
    mute: muteParticipant,
  };
})();
