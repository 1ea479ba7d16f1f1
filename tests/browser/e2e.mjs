#!/usr/bin/env node
// End-to-end check of the browser client against a running MCU server, in headless
// Chromium with fake camera/microphone devices.
//
//   node tests/browser/e2e.mjs <server-base-url> <artifacts-dir> [WxH]
//
// WxH (or env MCU_E2E_SIZE) is the server's composite size, default 1280x720.
// Env MCU_E2E_TOKEN: an access token typed into the page (and sent by this script)
// when the server requires one. Env CHROMIUM: the browser binary (/usr/bin/chromium).
// Exit 0 when every check passed; otherwise non-zero with the failed check on stderr
// and screenshots of the open pages in the artifacts directory.

import { chromium } from "playwright-core";
import fs from "node:fs/promises";
import path from "node:path";

const REJOINS = Number(process.env.MCU_E2E_REJOINS ?? 20); // joins in a row that must all connect
const TIME_LIMIT_MS = Number(process.env.MCU_E2E_TIME_LIMIT_MS || 90_000 + REJOINS * 4_000);
const MIN_FRAMES_IN_3S = Number(process.env.MCU_E2E_MIN_FRAMES || 30);
const MEDIA_ATTEMPTS = 2; // 3 s frame-count windows tried per page before failing

const [baseArg, artifactsArg, sizeArg] = process.argv.slice(2);
if (!baseArg || !artifactsArg) {
  console.error("usage: node e2e.mjs <server-base-url> <artifacts-dir> [WxH]");
  process.exit(64);
}
const base = baseArg.replace(/\/+$/, "");
const origin = new URL(base).origin;
const artifacts = path.resolve(artifactsArg);
const sizeText = sizeArg || process.env.MCU_E2E_SIZE || "1280x720";
const sizeMatch = /^(\d+)x(\d+)$/.exec(sizeText);
if (!sizeMatch) {
  console.error(`bad size ${JSON.stringify(sizeText)}: expected WxH, e.g. 1280x720`);
  process.exit(64);
}
const [W, H] = [Number(sizeMatch[1]), Number(sizeMatch[2])];
const token = process.env.MCU_E2E_TOKEN || "";

const started = Date.now();
const log = (msg) => console.log(`[${((Date.now() - started) / 1000).toFixed(1).padStart(5)}s] ${msg}`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

class CheckFailed extends Error {}
function check(cond, msg) {
  if (!cond) throw new CheckFailed(msg);
}

/** Polls `fn` until it returns a truthy value; fails with `what` (and the last value). */
async function waitFor(what, fn, timeoutMs = 10_000, intervalMs = 200) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    last = await fn();
    if (last && last.ok !== false) return last;
    if (Date.now() > deadline) {
      const detail = last && last.detail !== undefined ? last.detail : last;
      throw new CheckFailed(`${what}: not reached within ${timeoutMs / 1000} s (last: ${JSON.stringify(detail)})`);
    }
    await sleep(intervalMs);
  }
}

const apiHeaders = token ? { Authorization: `Bearer ${token}` } : {};
async function roomState(room) {
  const r = await fetch(`${base}/rooms/${encodeURIComponent(room)}`, { headers: apiHeaders });
  const text = await r.text();
  let body = null;
  try { body = JSON.parse(text); } catch { body = text; }
  return { status: r.status, body };
}

// ---------------------------------------------------------------------------------

let browser = null;
const pages = [];
const externalRequests = [];
const pageErrors = [];

const watchdog = setTimeout(async () => {
  console.error(`FAIL: overall time limit of ${TIME_LIMIT_MS / 1000} s exceeded`);
  await screenshotsOnFailure().catch(() => {});
  await leaveAll().catch(() => {});
  await browser?.close().catch(() => {});
  process.exit(3);
}, TIME_LIMIT_MS);

async function screenshotsOnFailure() {
  for (const p of pages) {
    if (p.page.isClosed()) continue;
    const file = path.join(artifacts, `failure-${p.label}.png`);
    await p.page.screenshot({ path: file, fullPage: true, timeout: 5000 }).catch(() => {});
    console.error(`  screenshot: ${file}`);
  }
}

/** After a failure: leave cleanly so the server drops the test room at once. */
async function leaveAll() {
  for (const p of pages) {
    if (p.page.isClosed()) continue;
    await Promise.race([p.page.evaluate(() => window.mcu && window.mcu.leave()).catch(() => {}), sleep(2000)]);
  }
}

async function checkStaticFiles() {
  const expected = [
    ["/", ["text/html"]],
    ["/app.js", ["text/javascript", "application/javascript"]],
    ["/events.js", ["text/javascript", "application/javascript"]],
    ["/room.js", ["text/javascript", "application/javascript"]],
    ["/local.js", ["text/javascript", "application/javascript"]],
    ["/recordings.js", ["text/javascript", "application/javascript"]],
    ["/live.js", ["text/javascript", "application/javascript"]],
    ["/style.css", ["text/css"]],
    ["/favicon.svg", ["image/svg+xml"]],
  ];
  for (const [p, types] of expected) {
    const r = await fetch(base + p);
    const body = await r.text();
    const ct = (r.headers.get("content-type") || "").toLowerCase();
    check(r.status === 200, `GET ${p}: status ${r.status}, expected 200`);
    check(types.some((t) => ct.startsWith(t)), `GET ${p}: Content-Type ${JSON.stringify(ct)}, expected ${types.join(" or ")}`);
    check(body.length > 0, `GET ${p}: empty body`);
    log(`GET ${p}: 200 ${ct} (${body.length} bytes)`);
  }
}

async function openParticipant(label, viewport = { width: 1280, height: 900 }) {
  const ctx = await browser.newContext({ viewport });
  await ctx.grantPermissions(["camera", "microphone"], { origin });
  await ctx.route("**/*", (route) => {
    const url = route.request().url();
    let reqOrigin = null;
    try { reqOrigin = new URL(url).origin; } catch { /* unparsable */ }
    if (reqOrigin === origin) return route.continue();
    externalRequests.push(`${label}: ${route.request().method()} ${url}`);
    return route.abort("blockedbyclient");
  });
  const page = await ctx.newPage();
  page.on("pageerror", (e) => pageErrors.push(`${label}: ${e.message}`));
  page.on("console", (m) => {
    if (m.type() === "error" && !/Failed to load resource/.test(m.text())) log(`${label} console error: ${m.text()}`);
  });
  const p = { label, ctx, page };
  pages.push(p);
  const resp = await page.goto(base + "/", { waitUntil: "load" });
  check(resp && resp.status() === 200, `${label}: GET / returned ${resp && resp.status()}`);
  await page.waitForFunction(() => typeof window.mcu === "object" && typeof window.mcu.state === "function", null, { timeout: 5000 });
  return p;
}

const state = (p) => p.page.evaluate(() => window.mcu.state());

async function joinViaUi(p, room, name, { camera, microphone, codec = "", quality = "" }) {
  const { page, label } = p;
  await page.fill("#room", room);
  await page.fill("#name", name);
  await page.setChecked("#camera", camera);
  await page.setChecked("#microphone", microphone);
  if (token || codec) await page.evaluate(() => { document.getElementById("advanced").open = true; });
  if (token) await page.fill("#token", token);
  if (codec) await page.selectOption("#codec", codec);
  else await page.evaluate(() => { document.getElementById("codec").value = ""; });
  if (quality) await page.evaluate((q) => { document.getElementById("quality").value = q; }, quality);
  await page.click("#join");
  const t = Date.now();
  await waitFor(`${label}: peer connection connected`, async () => {
    const err = await page.evaluate(() => {
      const e = document.getElementById("join-error");
      return e && !e.hidden ? e.textContent : "";
    });
    if (err) throw new CheckFailed(`${label}: join failed: ${err}`);
    const s = await state(p);
    return { ok: s.connectionState === "connected", detail: { connectionState: s.connectionState, ice: s.iceConnectionState } };
  }, 20_000);
  const s = await state(p);
  log(`${label} (${name}) joined ${room} and connected in ${Date.now() - t} ms; participant ${s.participantUrl}`);
  check(s.participantUrl && s.participantUrl.startsWith(`/rooms/${room}/participants/`), `${label}: unexpected Location ${s.participantUrl}`);
  check(new URL(page.url()).search === `?room=${room}`, `${label}: URL is ${page.url()}, expected /?room=${room}`);
  check(await page.isVisible("#copy-link"), `${label}: no "copy room link" button`);
}

/** Inbound media straight from getStats() plus the <video> element's size. */
function inbound(p) {
  return p.page.evaluate(async () => {
    const pc = window.mcu.pc;
    const out = { framesDecoded: 0, framesReceived: 0, framesDropped: 0, frameWidth: 0, frameHeight: 0, videoPacketsLost: 0, audioPackets: 0, videoWidth: 0, videoHeight: 0 };
    const v = document.getElementById("remote-video");
    out.videoWidth = v.videoWidth;
    out.videoHeight = v.videoHeight;
    if (!pc) return out;
    (await pc.getStats()).forEach((r) => {
      if (r.type !== "inbound-rtp") return;
      if (r.kind === "video") {
        out.framesDecoded = r.framesDecoded || 0;
        out.framesReceived = r.framesReceived || 0;
        out.framesDropped = r.framesDropped || 0;
        out.frameWidth = r.frameWidth || 0;
        out.frameHeight = r.frameHeight || 0;
        out.videoPacketsLost = r.packetsLost || 0;
      } else if (r.kind === "audio") {
        out.audioPackets = r.packetsReceived || 0;
      }
    });
    return out;
  });
}

/** Mixed video at W x H with frames flowing, and audio packets flowing. */
async function checkMedia(p) {
  const { label } = p;
  await waitFor(`${label}: received video is ${W}x${H}`, async () => {
    const m = await inbound(p);
    return { ok: m.videoWidth === W && m.videoHeight === H, detail: `${m.videoWidth}x${m.videoHeight}` };
  }, 15_000);
  await sleep(1000); // past the decoder's start-up
  // A 3 s window; on a busy machine one more window before calling it a failure.
  let a, b, frames, audio;
  for (let attempt = 1; ; attempt++) {
    a = await inbound(p);
    await sleep(3000);
    b = await inbound(p);
    frames = b.framesDecoded - a.framesDecoded;
    audio = b.audioPackets - a.audioPackets;
    log(`${label}: video ${b.videoWidth}x${b.videoHeight} (decoder ${b.frameWidth}x${b.frameHeight}), ` +
      `framesDecoded ${a.framesDecoded} -> ${b.framesDecoded} (+${frames} in 3 s, ${(frames / 3).toFixed(1)} fps; ` +
      `received +${b.framesReceived - a.framesReceived}, dropped +${b.framesDropped - a.framesDropped}), ` +
      `video packets lost ${b.videoPacketsLost}, audio packets ${a.audioPackets} -> ${b.audioPackets} (+${audio})`);
    if (frames >= MIN_FRAMES_IN_3S || attempt >= MEDIA_ATTEMPTS) break;
    log(`${label}: fewer than ${MIN_FRAMES_IN_3S} frames in 3 s (busy machine?), measuring again`);
  }
  check(b.videoWidth === W && b.videoHeight === H, `${label}: video is ${b.videoWidth}x${b.videoHeight}, expected ${W}x${H}`);
  check(frames >= MIN_FRAMES_IN_3S, `${label}: only ${frames} frames decoded in 3 s (need >= ${MIN_FRAMES_IN_3S})`);
  check(b.audioPackets > 0, `${label}: no audio packets received`);
  check(audio > 0, `${label}: audio packets not rising (${a.audioPackets} -> ${b.audioPackets})`);
  const s = (await state(p)).stats;
  log(`${label}: page stats: ${s.video.width}x${s.video.height} ${s.video.fps.toFixed(1)} fps ${s.video.codec}, ` +
    `in ${Math.round(s.bitrateInKbps)} kbit/s, out ${Math.round(s.bitrateOutKbps)} kbit/s, rtt ${s.rttMs} ms`);
  check(s.video.width === W && s.video.height === H, `${label}: stats panel shows ${s.video.width}x${s.video.height}`);
  check(s.video.framesDecoded > 0 && s.audio.packetsReceived > 0 && s.bitrateInKbps > 0, `${label}: stats panel is empty: ${JSON.stringify(s)}`);
}

/** Page 1 took the browser's codec (VP8), page 2 asked for H.264 in the advanced menu. */
async function checkCodecs(room, p1, p2) {
  const [s1, s2] = [(await state(p1)).stats, (await state(p2)).stats];
  check(s1.video.codec === "video/VP8", `page1 decodes ${s1.video.codec}, expected video/VP8`);
  check(s2.video.codec === "video/H264", `page2 decodes ${s2.video.codec}, expected video/H264`);
  const body = (await roomState(room)).body;
  const by = (name) => body.participants.find((x) => x.name === name) || {};
  const [alice, bob] = [by("Alice"), by("Bob")];
  check(alice.video_codec === "VP8" && alice.receive && alice.receive.codec === "VP8", `Alice in the room state: ${JSON.stringify(alice)}`);
  check(bob.video_codec === "H264" && bob.receive && bob.receive.codec === "H264", `Bob in the room state: ${JSON.stringify(bob)}`);
  await waitFor("page2: stats panel names H264 and its tier", async () => {
    const text = await p2.page.textContent("#stat-receive");
    return { ok: text === "H264 · high (auto)", detail: text };
  }, 5000);
  log(`page1 receives VP8, page2 H.264 (publishes ${bob.video_codec}); page2 panel: ${await p2.page.textContent("#stat-receive")}`);
}

/** The quality menu moves the page between tiers; the panel shows which. */
async function checkQualityMenu(p) {
  const [w, h] = [W / 2, H / 2];
  await p.page.selectOption("#quality", "medium");
  await waitFor(`${p.label}: video is ${w}x${h} after choosing medium`, async () => {
    const m = await inbound(p);
    const text = await p.page.textContent("#stat-receive");
    return { ok: m.videoWidth === w && m.videoHeight === h && text === "VP8 · medium", detail: `${m.videoWidth}x${m.videoHeight}, panel ${text}` };
  }, 10_000);
  await p.page.selectOption("#quality", "auto");
  await waitFor(`${p.label}: panel shows auto`, async () => {
    const text = await p.page.textContent("#stat-receive");
    return { ok: /\(auto\)$/.test(text), detail: text };
  }, 5000);
  // `auto` starts where the page is and climbs once the link shows room; pin high
  // to get back at once, then hand it back to auto.
  await p.page.selectOption("#quality", "high");
  await waitFor(`${p.label}: video is ${W}x${H} after choosing high`, async () => {
    const m = await inbound(p);
    return { ok: m.videoWidth === W && m.videoHeight === H, detail: `${m.videoWidth}x${m.videoHeight}` };
  }, 10_000);
  await p.page.selectOption("#quality", "auto");
  log(`${p.label}: quality menu: medium gave ${w}x${h}, high gave ${W}x${H}`);
}

/** A phone-sized screen starts on auto, whatever was chosen before in this browser. */
async function checkPhoneStartsOnAuto(p) {
  await p.page.evaluate(() => localStorage.setItem("mcu.quality", "low"));
  await p.page.reload({ waitUntil: "load" });
  await p.page.waitForFunction(() => typeof window.mcu === "object", null, { timeout: 5000 });
  const q = await p.page.inputValue("#quality");
  check(q === "auto", `${p.label}: a phone-sized page starts on ${q}, expected auto`);
}

async function pageCount(p) {
  return p.page.evaluate(() => document.getElementById("participant-count").textContent.trim());
}

async function waitRoomParticipants(room, n, what) {
  const r = await waitFor(what, async () => {
    const s = await roomState(room);
    const ok = s.status === 200 && Array.isArray(s.body.participants) && s.body.participants.length === n;
    return { ok, detail: s, s };
  }, 10_000, 250);
  return r.s.body;
}

async function leaveViaUi(p) {
  await p.page.click("#leave");
  await waitFor(`${p.label}: back at the join form`, async () => {
    const s = await state(p);
    return !s.joined && (await p.page.isVisible("#join-view")) && !(await p.page.isVisible("#call-view"));
  }, 5000);
  log(`${p.label}: left`);
}

/** Joins and leaves REJOINS times in a row through the page: every join must connect. */
async function rejoinInARow(p, room) {
  const times = [];
  for (let i = 1; i <= REJOINS; i++) {
    const t = Date.now();
    await joinViaUi(p, room, `Again${i}`, { camera: true, microphone: true });
    times.push(Date.now() - t);
    await leaveViaUi(p);
  }
  if (times.length === 0) return;
  times.sort((a, b) => a - b);
  log(`${REJOINS} joins in a row all connected: click-to-connected p50 ${times[Math.floor(times.length / 2)]} ms, max ${times[times.length - 1]} ms`);
}

/**
 * The brightest channel at each point (fractions of the width and height) of the
 * picture `p` receives, drawn from its remote <video> into a canvas.
 */
async function receivedPicture(p, points) {
  return p.page.evaluate((points) => {
    const v = document.getElementById("remote-video");
    const c = document.createElement("canvas");
    c.width = v.videoWidth;
    c.height = v.videoHeight;
    const g = c.getContext("2d");
    g.drawImage(v, 0, 0);
    return points.map(([x, y]) => {
      const d = g.getImageData(Math.round(x * (c.width - 1)), Math.round(y * (c.height - 1)), 1, 1).data;
      return Math.max(d[0], d[1], d[2]);
    });
  }, points);
}

/** The loudest 20 ms RMS of what `p` hears over `ms` (Web Audio on the mix it plays). */
async function receivedLoudness(p, ms) {
  return p.page.evaluate(async (ms) => {
    const stream = document.getElementById("remote-audio").srcObject;
    const ctx = new AudioContext();
    const analyser = ctx.createAnalyser();
    analyser.fftSize = 1024;
    ctx.createMediaStreamSource(stream).connect(analyser);
    const buf = new Float32Array(analyser.fftSize);
    let loudest = 0;
    const end = performance.now() + ms;
    while (performance.now() < end) {
      analyser.getFloatTimeDomainData(buf);
      let sum = 0;
      for (const v of buf) sum += v * v;
      loudest = Math.max(loudest, Math.sqrt(sum / buf.length));
      await new Promise((r) => setTimeout(r, 20));
    }
    await ctx.close();
    return loudest;
  }, ms);
}

/**
 * The room's controls, as a moderator on an open server uses them: the layout
 * buttons (also from the keyboard), the active speaker marked in the list (both pages
 * send Chromium's fake beep), muting someone else, and the page's own microphone
 * switch. Every button has an accessible name.
 */
async function checkRoomControls(room, p1, p2) {
  const unnamed = await p1.page.evaluate(() => [...document.querySelectorAll("#call-view button")]
    .filter((b) => !b.hidden && !(b.getAttribute("aria-label") || b.textContent).trim()).map((b) => b.outerHTML));
  check(unnamed.length === 0, `buttons without an accessible name: ${unnamed.join(" ")}`);

  // A point left of the middle: inside the left picture of a grid of two, on the
  // black bar beside the featured picture of the speaker layout (16:9 or 4:3).
  const side = [[0.06, 0.5]];
  await waitFor("page1: the grid arrives (left picture lit)", async () => {
    const lit = await receivedPicture(p1, side);
    return { ok: lit[0] > 40, detail: lit };
  }, 10_000);
  await p1.page.click("#layout-speaker");
  await waitFor("room state: speaker layout", async () => (await roomState(room)).body.layout === "speaker", 5000);
  await waitFor("page1: the received picture changes to the speaker layout", async () => {
    const [bar, main] = await receivedPicture(p1, [side[0], [0.5, 0.375]]);
    return { ok: bar < 30 && main > 40, detail: { bar, main } };
  }, 10_000);
  const speakerShot = path.join(artifacts, "speaker-layout.png");
  await p1.page.screenshot({ path: speakerShot, fullPage: true });
  log(`screenshot ${speakerShot}`);
  await waitFor("page1: the speaker layout arrives by the event stream",
    async () => (await state(p1)).layout === "speaker", 5000);
  check(await p1.page.getAttribute("#layout-speaker", "aria-pressed") === "true", "Speaker button not pressed");

  const speaker = await waitFor("page1: an active speaker", async () => {
    const s = await state(p1);
    return { ok: !!s.speaker, detail: s.speaker, id: s.speaker };
  }, 10_000);
  const marked = await p1.page.locator("#participants li.speaking").count();
  check(marked === 1, `${marked} participants marked as speaking, expected 1`);
  log(`active speaker ${speaker.id}, layout speaker`);

  // Alice mutes Bob.
  const bob = (await state(p2)).participantId;
  await p1.page.getByRole("button", { name: "Mute Bob" }).click();
  await waitFor("room state: Bob's audio muted", async () => {
    const b = (await roomState(room)).body.participants.find((x) => x.id === bob);
    return { ok: b && b.muted && b.muted.audio, detail: b };
  }, 5000);
  await waitFor("page1: an Unmute Bob button",
    async () => (await p1.page.getByRole("button", { name: "Unmute Bob" }).count()) === 1, 5000);
  await p1.page.getByRole("button", { name: "Unmute Bob" }).click();
  await waitFor("room state: Bob's audio back", async () => {
    const b = (await roomState(room)).body.participants.find((x) => x.id === bob);
    return { ok: b && b.muted && !b.muted.audio, detail: b };
  }, 5000);

  // Bob switches his microphone off and on: no renegotiation, the call goes on, and
  // Alice (who hears only Bob: mix-minus) hears his fake microphone's beeps drop.
  const before = await receivedLoudness(p1, 2500);
  await p2.page.click("#mic-toggle");
  let s2 = await state(p2);
  check(!s2.sending.audio && await p2.page.getAttribute("#mic-toggle", "aria-pressed") === "false",
    `microphone still on after the switch: ${JSON.stringify(s2.sending)}`);
  await new Promise((r) => setTimeout(r, 500));
  const muted = await receivedLoudness(p1, 2500);
  check(before > 0.01 && muted < before / 5,
    `page1's received audio did not drop when page2 switched its microphone off: ${before.toFixed(4)} -> ${muted.toFixed(4)}`);
  log(`page1 hears page2 at ${before.toFixed(3)} RMS, ${muted.toFixed(4)} with its microphone off`);
  await p2.page.click("#mic-toggle");
  s2 = await state(p2);
  check(s2.sending.audio && s2.connectionState === "connected", `microphone not back on: ${JSON.stringify(s2.sending)}`);

  // Bob shares his screen (Chromium's fake display capture) in place of his camera,
  // then stops: the call stays connected, no renegotiation.
  await p2.page.click("#share-screen");
  await waitFor("page2: sharing its screen", async () => {
    const s = await state(p2);
    return { ok: s.sending.screen && s.connectionState === "connected", detail: s.sending };
  }, 10_000);
  check(await p2.page.getAttribute("#share-screen", "aria-pressed") === "true", "Share screen button not pressed");
  await p2.page.click("#share-screen");
  await waitFor("page2: back to its camera", async () => {
    const s = await state(p2);
    return { ok: !s.sending.screen && s.connectionState === "connected", detail: s.sending };
  }, 5000);
  log("page2 shared its screen and stopped");

  // Bob picks another microphone: the track is replaced, the call goes on.
  const mics = await p2.page.$$eval("#mic-device option", (os) => os.map((o) => o.value));
  check(mics.length >= 1, "page2: no microphone in the picker");
  if (mics.length >= 2) {
    const other = mics.find((m) => m !== s2.sending.audioDevice);
    await p2.page.selectOption("#mic-device", other);
    await waitFor("page2: the other microphone is sent", async () => {
      const s = await state(p2);
      return { ok: s.sending.audioDevice === other && s.sending.audio, detail: s.sending };
    }, 5000);
    check((await state(p2)).connectionState === "connected", "page2 disconnected after switching microphones");
    log(`page2 switched microphone (${mics.length} listed)`);
  }

  // Alice goes live to an RTMP server that is not there: the stream is listed and
  // retried (its state arrives by the event stream), and her Stop button ends it.
  await p1.page.fill("#live-url", "rtmp://127.0.0.1:1/live/e2e");
  await p1.page.getByRole("button", { name: "Go live" }).click();
  await waitFor("page1: the stream is listed, retrying", async () => {
    const text = await p1.page.textContent("#live-streams");
    return { ok: /Retrying|Failed/.test(text) && text.includes("/live/****"), detail: text };
  }, 10_000);
  await p1.page.getByRole("button", { name: "Stop the stream to rtmp://127.0.0.1:1/live/****" }).click();
  await waitFor("page1: the stream is gone", async () =>
    (await p1.page.locator("#live-streams li").count()) === 0 && (await roomState(room)).body.streams.length === 0, 5000);
  log("page1 went live to a dead RTMP server and stopped it");

  // Back to the grid from the keyboard.
  await p1.page.focus("#layout-grid");
  await p1.page.keyboard.press("Enter");
  await waitFor("room state: grid layout again", async () => (await roomState(room)).body.layout === "grid", 5000);
  log("room controls: layout, speaker, mute, microphone switch, keyboard");
}

async function main() {
  await fs.mkdir(artifacts, { recursive: true });
  log(`server ${base}, expecting ${W}x${H}, artifacts in ${artifacts}`);
  await checkStaticFiles();

  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: [
      "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
      "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
      "--autoplay-policy=no-user-gesture-required",
    ],
  });
  log(`chromium ${browser.version()} launched`);

  const room = `e2e-${Date.now()}`;
  const [p1, p2] = await Promise.all([openParticipant("page1"), openParticipant("page2")]);

  // Two publishers.
  // Page 1 asks for the top tier, its picture size being checked: on a busy 2-core
  // machine Chrome's delay-based estimate (REMB) may briefly fall while the second page
  // starts its camera, which would rightly move an `auto` page down a tier. Page 2
  // stays on `auto` (its panel is checked to say so).
  await joinViaUi(p1, room, "Alice", { camera: true, microphone: true, quality: "high" });
  await joinViaUi(p2, room, "Bob", { camera: true, microphone: true, codec: "video/H264" });
  await Promise.all([checkMedia(p1), checkMedia(p2)]);
  await checkCodecs(room, p1, p2);
  await checkQualityMenu(p1);

  const two = await waitRoomParticipants(room, 2, "room state lists 2 participants");
  const names = two.participants.map((x) => x.name).sort();
  log(`GET /rooms/${room}: ${two.participants.length} participants: ${JSON.stringify(two.participants)}`);
  check(JSON.stringify(names) === JSON.stringify(["Alice", "Bob"]), `room state names ${JSON.stringify(names)}, expected Alice and Bob`);
  check(two.participants.every((x) => x.audio && x.video), `both should publish audio and video: ${JSON.stringify(two.participants)}`);
  for (const p of [p1, p2]) {
    await waitFor(`${p.label}: #participant-count shows 2`, async () => (await pageCount(p)) === "2", 5000);
  }
  log(`page1 and page2 #participant-count: 2`);
  const s1 = await state(p1);
  check(s1.participants.length === 2, `page1 mcu.state().participants has ${s1.participants.length}`);
  check(!s1.audioBlocked, `page1 shows "Tap to unmute" although autoplay is allowed`);

  if (!token) await checkRoomControls(room, p1, p2);

  const shot = path.join(artifacts, "call.png");
  await p1.page.screenshot({ path: shot, fullPage: true });
  log(`screenshot ${shot}`);

  // Page 2 leaves.
  await leaveViaUi(p2);
  await waitFor("page1: #participant-count shows 1 after page2 left", async () => {
    const c = await pageCount(p1);
    return { ok: c === "1", detail: c };
  }, 10_000);
  log(`page1 #participant-count: 1`);
  const one = await waitRoomParticipants(room, 1, "room state lists 1 participant after page2 left");
  log(`GET /rooms/${room}: ${one.participants.length} participant (${one.participants[0].name})`);
  check(one.participants[0].name === "Alice", `remaining participant is ${one.participants[0].name}, expected Alice`);

  // A receive-only viewer on a phone-sized screen while page 1 is still in the room.
  const p3 = await openParticipant("page3", { width: 390, height: 844 });
  await checkPhoneStartsOnAuto(p3);
  await joinViaUi(p3, room, "Viewer", { camera: false, microphone: false });
  const notice = await p3.page.evaluate(() => {
    const n = document.getElementById("media-notice");
    return n && !n.hidden ? n.textContent : "";
  });
  log(`page3 notice: ${JSON.stringify(notice)}`);
  check(/receive-only/i.test(notice), `page3: no visible "receive-only" message (got ${JSON.stringify(notice)})`);
  await checkMedia(p3);
  const withViewer = await waitRoomParticipants(room, 2, "room state lists 2 with the viewer");
  const viewer = withViewer.participants.find((x) => x.name === "Viewer");
  check(viewer && !viewer.audio && !viewer.video, `viewer should publish nothing: ${JSON.stringify(withViewer.participants)}`);
  log(`GET /rooms/${room} with viewer: ${JSON.stringify(withViewer.participants)}`);
  await leaveViaUi(p3);
  await waitRoomParticipants(room, 1, "room state lists 1 after the viewer left");

  // Last one out: the room disappears.
  await leaveViaUi(p1);
  await waitFor(`GET /rooms/${room} is 404 after everyone left`, async () => {
    const s = await roomState(room);
    return { ok: s.status === 404, detail: s.status };
  }, 10_000, 250);
  log(`GET /rooms/${room}: 404`);

  await rejoinInARow(p1, `${room}-rejoin`);

  check(pageErrors.length === 0, `uncaught page errors:\n  ${pageErrors.join("\n  ")}`);
  check(externalRequests.length === 0, `requests to other hosts:\n  ${externalRequests.join("\n  ")}`);
  log("no requests to other hosts, no page errors");

  await browser.close();
  browser = null;
  log(`PASS in ${((Date.now() - started) / 1000).toFixed(1)} s`);
}

main().then(
  () => {
    clearTimeout(watchdog);
    process.exit(0);
  },
  async (e) => {
    clearTimeout(watchdog);
    const reason = e instanceof CheckFailed ? e.message
      : e instanceof TypeError && e.message === "fetch failed" ? `cannot reach the server at ${base}: ${e.cause?.code || e.cause?.message || e.cause}`
      : e && e.stack ? e.stack : e;
    console.error(`FAIL: ${reason}`);
    await screenshotsOnFailure().catch(() => {});
    await leaveAll();
    await browser?.close().catch(() => {});
    process.exit(1);
  },
);
