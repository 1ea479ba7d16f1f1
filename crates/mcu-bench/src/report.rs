//! Renders the results: `BENCHMARKS.md` (also printed) and SVG plots.

use std::fmt::Write as _;
use std::path::Path;

use plotters::prelude::*;

use super::capacity::CapRow;
use super::content::Content;
use super::load::Window;
use super::run::Results;
use super::sys::percentile;

fn f2(v: Option<f64>) -> String {
    v.map_or("–".into(), |v| format!("{v:.2}"))
}

fn ms3(v: &[f64]) -> String {
    if v.is_empty() {
        return "–".into();
    }
    format!(
        "{:.0} / {:.0} / {:.0}",
        percentile(v, 50.0),
        percentile(v, 95.0),
        v.iter().cloned().fold(f64::MIN, f64::max)
    )
}

fn gaps(w: &Window) -> String {
    format!(
        "{} ({} lost, {} late, max {:.0} ms)",
        if w.audio_gap_free() { "yes" } else { "**no**" },
        w.audio_lost,
        w.audio_late,
        w.max_audio_gap_ms
    )
}

fn other(w: &Window) -> f64 {
    (w.machine_cpu - w.server_cpu.unwrap_or(0.0) - w.loadgen_cpu).max(0.0)
}

/// The headline numbers (for the README and the console).
pub fn headline(r: &Results) -> String {
    let mut s = String::new();
    if let Some(m) = r.mixing.iter().find(|m| m.n == 16).or(r.mixing.last())
        && let (Some(server), Some(limit)) = (m.window.server_cpu, m.limit_cpu)
    {
        let _ = writeln!(
            s,
            "- {} participants in one room: the server uses {server:.2} cores, a plain GStreamer pipeline doing the same decode + composite + encode {limit:.2} cores ({:.2}x).",
            m.n,
            server / limit
        );
    }
    let per_class: Vec<String> = Content::ALL
        .into_iter()
        .map(|c| format!("{}: one room of {}, {} room(s) of 4", c.label(), r.max_single(c), r.max_rooms(c)))
        .collect();
    let _ = writeln!(
        s,
        "- Capacity on this machine at >= 29 fps with gap-free audio (load generator on the same cores): {}.",
        per_class.join("; ")
    );
    if let Some(m) = r.mixing.first() {
        let _ = writeln!(
            s,
            "- Server-added latency at N = {}: video p50 {:.0} ms / p95 {:.0} ms, audio p50 {:.0} ms / p95 {:.0} ms; join to first frame p50 {:.0} ms.",
            m.n,
            percentile(&m.window.video_latency_ms, 50.0),
            percentile(&m.window.video_latency_ms, 95.0),
            percentile(&m.window.audio_latency_ms, 50.0),
            percentile(&m.window.audio_latency_ms, 95.0),
            percentile(&r.join_ms, 50.0)
        );
    }
    let _ = writeln!(
        s,
        "- Memory: {:.0} MiB idle, about {:.1} MiB per added participant.",
        r.idle_rss_mib, r.rss_per_participant_mib
    );
    if !r.connect.is_empty() {
        let joins: usize = r.connect.iter().map(|c| c.joins).sum();
        let connected: usize = r.connect.iter().map(|c| c.connected).sum();
        let worst_quiet = r.connect.iter().filter(|c| !c.hog).map(|c| c.answer_to_connected_ms[2]).fold(0.0, f64::max);
        let _ = writeln!(
            s,
            "- Joins: {connected} of {joins} connected (one after another and 50 at once, with and without a CPU hog); \
             p99 answer to connected {worst_quiet:.0} ms at worst without the hog."
        );
    }
    if !r.encode.is_empty() {
        use super::encode::Encoder;
        let cost = |tier: &str, encoder: Encoder| {
            r.encode.iter().find(|e| e.content == Content::ZonePlate && e.tier == tier && e.encoder == encoder)
        };
        let tiers: Vec<String> = ["high", "medium", "low"]
            .iter()
            .filter_map(|t| {
                let (v, h) = (cost(t, Encoder::Vp8)?, cost(t, Encoder::X264Superfast)?);
                Some(format!(
                    "{t} VP8 {:.3} / H.264 {:.3} cores ({:.1} / {:.1} dB)",
                    v.cores, h.cores, v.psnr_db, h.psnr_db
                ))
            })
            .collect();
        let _ = writeln!(s, "- One encode of the composite (zone plate), per tier: {}.", tiers.join("; "));
    }
    if let Some(a) = r.audio_only.last()
        && let (Some(m), Some(j)) = (&a.mcu, &a.janus)
    {
        let _ = writeln!(
            s,
            "- Audio-only room of {}: this server {:.2} cores, Janus AudioBridge {:.2} cores.",
            a.n,
            m.server_cpu.unwrap_or(f64::NAN),
            j.server_cpu.unwrap_or(f64::NAN)
        );
    }
    s
}

/// The results section (tables), printed and written into `BENCHMARKS.md`.
pub fn tables(r: &Results) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "### 1. Mixing overhead against the limit\n");
    let _ = writeln!(
        s,
        "| N | server CPU (cores) | reference pipeline CPU | ratio | load generator CPU | other processes | probe fps | reference fps | audio gap-free |"
    );
    let _ = writeln!(s, "|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    for m in &r.mixing {
        let w = &m.window;
        let ratio = match (w.server_cpu, m.limit_cpu) {
            (Some(a), Some(b)) if b > 0.0 => format!("{:.2}x", a / b),
            _ => "–".into(),
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {:.2} | {:.2} | {:.1} | {} | {} |",
            m.n,
            f2(w.server_cpu),
            f2(m.limit_cpu),
            ratio,
            w.loadgen_cpu,
            other(w),
            w.probe_fps,
            m.limit_fps.map_or("–".into(), |f| format!("{f:.1}")),
            gaps(w)
        );
    }
    let _ = writeln!(s, "\n![CPU vs participants](docs/bench/cpu.svg)\n");

    let _ = writeln!(s, "### 2. Capacity\n");
    let _ = writeln!(
        s,
        "What fits, per content class of the senders' video (\"talking head\": a still pinwheel with a moving zone plate in its middle third). A step passes when the probe receives >= 29 fps and no participant's audio has a gap; counts are searched (doubling, then bisecting).\n"
    );
    let _ = writeln!(
        s,
        "| content | largest single room | rooms of 4 | server CPU per room of 4 | audio p50 / p95 (ms) at the largest passing room |"
    );
    let _ = writeln!(s, "|---|---:|---:|---:|---|");
    for content in Content::ALL {
        let one_of_four = r.capacity_rooms.iter().find(|c| c.content == content && c.rooms == 1);
        let largest = r.capacity_single.iter().filter(|c| c.content == content && c.pass).max_by_key(|c| c.per_room);
        let _ = writeln!(
            s,
            "| {} | **{}** | **{}** | {} | {} |",
            content.label(),
            r.max_single(content),
            r.max_rooms(content),
            f2(one_of_four.and_then(CapRow::cpu_per_room)),
            largest.map_or("–".into(), |c| format!(
                "{:.0} / {:.0}",
                percentile(&c.window.audio_latency_ms, 50.0),
                percentile(&c.window.audio_latency_ms, 95.0)
            ))
        );
    }
    let _ = writeln!(
        s,
        "\n| content | rooms x participants | result | probe fps | server CPU | load generator CPU | other processes | audio gap-free | latency p50 video / audio (ms) |"
    );
    let _ = writeln!(s, "|---|---|---|---:|---:|---:|---:|---|---|");
    for c in r.capacity_single.iter().chain(r.capacity_rooms.iter().filter(|c| c.rooms > 1)) {
        let w = &c.window;
        let _ = writeln!(
            s,
            "| {} | {} x {} | {} | {:.1} | {} | {:.2} | {:.2} | {} | {:.0} / {:.0} |",
            c.content.label(),
            c.rooms,
            c.per_room,
            if c.pass { "pass" } else { "**fail**" },
            w.probe_fps,
            f2(w.server_cpu),
            w.loadgen_cpu,
            other(w),
            gaps(w),
            percentile(&w.video_latency_ms, 50.0),
            percentile(&w.audio_latency_ms, 50.0)
        );
    }

    let _ = writeln!(s, "\n### 3. Added latency (ms, p50 / p95 / max)\n");
    let _ = writeln!(
        s,
        "| N | video (barcode) | samples | audio (click) | samples | probe's own decode (subtracted) | barcodes read |"
    );
    let _ = writeln!(s, "|---:|---|---:|---|---:|---|---:|");
    for m in &r.mixing {
        let w = &m.window;
        let total = w.stamps_read + w.stamps_failed;
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {:.1} % |",
            m.n,
            ms3(&w.video_latency_ms),
            w.video_latency_ms.len(),
            ms3(&w.audio_latency_ms),
            w.audio_latency_ms.len(),
            ms3(&w.probe_decode_ms),
            100.0 * w.stamps_read as f64 / total.max(1) as f64
        );
    }
    let _ = writeln!(s, "\n![Latency distribution](docs/bench/latency.svg)\n");

    let _ = writeln!(s, "### 4. Join time\n");
    let _ = writeln!(
        s,
        "Offer sent to first decoded composite frame, joining a room of 3: p50 **{:.0} ms**, p95 **{:.0} ms** ({} joins).\n",
        percentile(&r.join_ms, 50.0),
        percentile(&r.join_ms, 95.0),
        r.join_ms.len()
    );

    if !r.connect.is_empty() {
        let _ = writeln!(s, "### 4b. Joins connect\n");
        let _ = writeln!(
            s,
            "Real webrtc-rs peers join (audio + video, send and receive, like a browser), wait for `connected` and \
             leave; \"at once\" joins are in flight together, in rooms of 10. Times from the client: offer posted to \
             answer, answer to ICE `connected`, answer to peer connection `connected` (DTLS done). The CPU hog is a \
             busy loop on every core beside the server and the peers. Measured on {} (same machine) with \
             `make stress-connect`.\n",
            r.connect_date
        );
        let _ = writeln!(s, "{}", super::connect::ConnectSummary::header());
        for c in &r.connect {
            let _ = writeln!(s, "{}", c.row());
        }
        let _ = writeln!(s);
    }

    if !r.encode.is_empty() {
        let _ = writeln!(s, "### 4c. One encode per tier, codec and encoder\n");
        let _ = writeln!(
            s,
            "What one (codec, tier) encode of the composite costs and what its receivers see. {} s of each picture \
             are made first and kept in memory, then encoded alone as fast as the machine goes (CPU seconds over \
             media seconds = cores one real-time encode takes, with the server's settings: same templates, threads \
             and bitrates); the frames are then decoded and compared with their sources (luma PSNR, SSIM over 8x8 \
             windows). \"talking head\" is a still pinwheel with a moving zone plate in its middle third; \
             \"photographs\" are the four of table 4f panned in a 2x2 composite (as the server composes them; the \
             default encoders only), so their PSNR is the server's encode against its raw composite. Measured on {} \
             with `mcu-bench all --only encode`.\n",
            super::encode::SECONDS,
            r.encode_date
        );
        let _ = writeln!(s, "{}", super::encode::EncodeRow::header());
        for row in &r.encode {
            let _ = writeln!(s, "{}", row.line());
        }
        let _ = writeln!(s);
    }

    if let Some(labels) = &r.labels {
        let _ = writeln!(s, "{}", super::labels::markdown(labels));
    }
    if let Some(whep) = &r.whep {
        let _ = writeln!(s, "{}", super::whep::markdown(whep));
    }
    if !r.received.is_empty() {
        let _ = writeln!(s, "{}", super::received::markdown(&r.received, &r.received_date));
    }
    if !r.starved.is_empty() {
        let _ = writeln!(s, "{}", super::starved::markdown(&r.starved, &r.starved_date));
    }

    let _ = writeln!(s, "### 5. Memory\n");
    let _ = writeln!(s, "| state | server RSS (MiB) |");
    let _ = writeln!(s, "|---|---:|");
    let _ = writeln!(s, "| idle (no room) | {:.0} |", r.idle_rss_mib);
    for m in &r.mixing {
        let _ = writeln!(
            s,
            "| one room of {} | {} |",
            m.n,
            m.window.server_rss_mib.map_or("–".into(), |v| format!("{v:.0}"))
        );
    }
    let _ = writeln!(s, "| **per added participant** (slope) | **{:.1}** |\n", r.rss_per_participant_mib);

    let _ = writeln!(s, "### 6. Audio only: this server vs Janus AudioBridge\n");
    let _ = writeln!(
        s,
        "One room of N audio-only participants where {} talk at once and everyone else listens with an open microphone (hiss at about -75 dBFS), the same load against both servers.\n",
        super::run::AUDIO_ONLY_TALKERS
    );
    let _ = writeln!(
        s,
        "| N | this server CPU | gap-free | Janus CPU | gap-free | audio latency p50 (mcu / janus, ms) | server RSS (mcu / janus, MiB) | load generator CPU (mcu / janus) |"
    );
    let _ = writeln!(s, "|---:|---:|---|---:|---|---|---|---|");
    for a in &r.audio_only {
        let cpu = |w: &Option<Window>| w.as_ref().and_then(|w| w.server_cpu);
        let g = |w: &Option<Window>| w.as_ref().map_or("–".into(), gaps);
        let lg = |w: &Option<Window>| w.as_ref().map_or("–".into(), |w| format!("{:.2}", w.loadgen_cpu));
        let lat = |w: &Option<Window>| {
            w.as_ref().map_or("–".into(), |w| format!("{:.0}", percentile(&w.audio_latency_ms, 50.0)))
        };
        let rss =
            |w: &Option<Window>| w.as_ref().and_then(|w| w.server_rss_mib).map_or("–".into(), |v| format!("{v:.0}"));
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} / {} | {} / {} | {} / {} |",
            a.n,
            f2(cpu(&a.mcu)),
            g(&a.mcu),
            f2(cpu(&a.janus)),
            a.janus_error.as_ref().map_or_else(|| g(&a.janus), |e| format!("failed: {e}")),
            lat(&a.mcu),
            lat(&a.janus),
            rss(&a.mcu),
            rss(&a.janus),
            lg(&a.mcu),
            lg(&a.janus)
        );
    }
    if let Some(p) = &r.profile {
        let _ = writeln!(s, "\n### Profile of the server at N = 16 (`perf record -e cpu-clock -g`, 10 s)\n");
        let _ = writeln!(s, "```\n{p}\n```");
    }
    s
}

/// Writes `BENCHMARKS.md` at `out` and the plots into `plots`; `analysis` is the
/// hand-written interpretation kept in `docs/bench/analysis.md`.
pub fn write(r: &Results, out: &Path, plots: &Path, command: &str) -> Result<(), String> {
    std::fs::create_dir_all(plots).map_err(|e| e.to_string())?;
    plot_cpu(r, &plots.join("cpu.svg"))?;
    plot_latency(r, &plots.join("latency.svg"))?;
    std::fs::write(plots.join("results.json"), serde_json::to_string(r).map_err(|e| e.to_string())?)
        .map_err(|e| e.to_string())?;
    let analysis = std::fs::read_to_string(plots.join("analysis.md")).unwrap_or_default();
    let mut md = String::new();
    let _ = writeln!(md, "# Benchmarks\n");
    let _ = writeln!(
        md,
        "Everything below was produced by one command, `{command}` (see [Method](#method)), on {}. \
         The numbers are the ones it printed; raw figures are in [`docs/bench/results.json`](docs/bench/results.json).\n",
        r.date
    );
    let _ = writeln!(md, "## Headline\n\n{}", headline(r));
    let _ = writeln!(md, "## Machine\n\n| | |\n|---|---|");
    for (k, v) in &r.machine {
        let _ = writeln!(md, "| {k} | {v} |");
    }
    let _ = writeln!(
        md,
        "| Sender media | 640x360 30 fps VP8 at {:.0} kbit/s + Opus 32 kbit/s 20 ms per participant |\n",
        r.video_bitrate / 1000.0
    );
    let _ = writeln!(md, "## Results\n\n{}", tables(r));
    if !analysis.trim().is_empty() {
        let _ = writeln!(md, "\n{}", analysis.trim_end());
    }
    let _ = writeln!(md, "\n## Method\n\n{}", METHOD.trim());
    std::fs::write(out, md).map_err(|e| e.to_string())
}

const METHOD: &str = r#"
`make bench` builds the release binary, installs what is missing (`scripts/install-deps.sh bench`:
GStreamer tools, `janus`, `linux-perf`) and runs `mcu-bench all`, which starts its own servers on
loopback and writes this file, `docs/bench/*.svg` and `docs/bench/results.json`. The interpretation
in "Where the time goes" is kept in `docs/bench/analysis.md` and included as is.
`mcu-bench all --quick` is a shorter smoke run, `--only mixing,join,profile,limit,capacity,audio`
runs some parts, `--render-only` re-renders this file and the plots from `results.json`.

- **Load generator** (`mcu-bench load --url URL --room R -n N --duration S` runs it alone against
  any server): N real webrtc-rs peers join through `POST /rooms/{room}/join`, each sending the same
  pre-encoded media at real time with `TrackLocalStaticSample`: 30 s of a moving zone plate
  (`videotestsrc pattern=zone-plate kt=2`, hard to compress; `--content talkinghead`: a still
  pinwheel with a moving zone plate in its middle third), 640x360 30 fps VP8 CBR ~500 kbit/s, a
  keyframe every second, and 30 s of Opus (a talker: quiet tone + noise at about -48 dBFS; with
  `--talkers K` only the first K of a room talk and the others send an open microphone's hiss at
  about -75 dBFS; 32 kbit/s, 20 ms), generated once with GStreamer and cached in
  `target/bench-media/`. A PLI from the server makes the sender skip to the
  next keyframe of the loop. Receivers only count RTP packets, frames (marker bit), sequence gaps and
  audio inter-arrival times. One participant, the *probe*, also decodes the composite and the mix.
- **CPU** is user+system time from `/proc/PID/stat` over the window divided by wall time (1.00 = one
  core). The load generator runs on the same 2 cores; its own CPU (`/proc/self/stat`) and that of
  every other process on the machine (`/proc/stat` minus server and generator) are shown next to the
  server's, because the machine is shared.
- **Mixing overhead**: one room of N, 5 s warm-up then a 20 s window. The *reference pipeline* is a
  separate `gst-launch-1.0` doing the same media work on the same files in real time
  (`fakesink sync=true`): N `matroskademux ! vp8dec` into a `compositor` grid at 1280x720 30 fps, the
  server's own `vp8enc` template (rendered from `pipelines/video-encode-vp8.pipeline`), N
  `opusdec` into an `audiomixer` and N Opus encodes (one per listener, like mix-minus) — no WebRTC,
  RTP, SRTP, jitter buffers or HTTP. It is the physical limit of this design on this machine.
- **Capacity**: a step passes when the probe decodes at least 29 composite frames per second and no
  receiver loses an audio packet or waits more than 60 ms between two; 5 s warm-up, 10 s windows,
  a fresh server per content class. The largest single room and the most rooms of 4 are searched
  (`src/bench/capacity.rs`): the count doubles while every step passes, then bisects between the
  largest pass and the smallest fail (to 1 room, to 2 participants); the zone plate's mixing runs
  count as its first single-room steps. Everyone in these rooms talks.
- **Latency**: every sender's frame number is stamped into its picture as a 16-block barcode
  (white and black references, 13 bits, parity) along the top edge; the probe finds each sender's
  picture in the decoded composite from the grid layout (`layout::grid_cells`/`fit_in_cell`), reads
  the barcodes and takes, per new stamp, decode time − send time of that frame, minus the probe's own
  depacketise + decode time (measured per frame, shown separately). This includes loopback
  transport and RTP packetisation, and the composite's frame sampling (up to one frame, 33 ms). One
  sender's audio has a 5 ms 1 kHz click every second; the probe detects the onset in the decoded mix
  and compares its media time with the click's send time (Opus look-ahead of the sender's encode is
  calibrated out; the server's decode + mix + encode and its jitter buffer are in).
- **Join time**: a probe joins a room of 3 ten times: offer sent to first decoded composite frame
  (includes ICE, DTLS, the server's keyframe).
- **Memory**: server VmRSS idle and at the end of each mixing window; per participant = slope.
- **Janus**: `janus` 1.1.2 from Debian, started with configuration files the benchmark writes
  (HTTP transport on 127.0.0.1:18088, AudioBridge only), a 48 kHz room created over the HTTP API;
  the same audio-only participants join with `join` + JSEP offer. Janus gathers no loopback
  candidates, so its peers use the machine's own address (delivered locally by the kernel just the
  same). Both servers run with their defaults otherwise. 3 s warm-up, 15 s windows, a fresh server
  for each N.
"#;

fn plot_cpu(r: &Results, path: &Path) -> Result<(), String> {
    let root = SVGBackend::new(path, (720, 420)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let max_n = r.mixing.iter().map(|m| m.n).max().unwrap_or(16) as f64 + 1.0;
    let max_cpu = r
        .mixing
        .iter()
        .flat_map(|m| [m.window.server_cpu.unwrap_or(0.0), m.limit_cpu.unwrap_or(0.0), m.window.loadgen_cpu])
        .fold(0.5, f64::max)
        * 1.15;
    let mut chart = ChartBuilder::on(&root)
        .caption("CPU vs participants (one room)", ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(0f64..max_n, 0f64..max_cpu)
        .map_err(|e| e.to_string())?;
    chart.configure_mesh().x_desc("participants").y_desc("CPU (cores)").draw().map_err(|e| e.to_string())?;
    type Pick = fn(&super::run::MixRow) -> Option<f64>;
    let series: [(&str, RGBColor, Pick); 3] = [
        ("MCU server", RED, |m| m.window.server_cpu),
        ("reference pipeline (limit)", BLUE, |m| m.limit_cpu),
        ("load generator", RGBColor(120, 120, 120), |m| Some(m.window.loadgen_cpu)),
    ];
    for (name, color, pick) in series {
        let pts: Vec<(f64, f64)> = r.mixing.iter().filter_map(|m| pick(m).map(|c| (m.n as f64, c))).collect();
        chart
            .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
            .map_err(|e| e.to_string())?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
        chart.draw_series(pts.into_iter().map(|p| Circle::new(p, 4, color.filled()))).map_err(|e| e.to_string())?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| e.to_string())?;
    root.present().map_err(|e| e.to_string())
}

fn plot_latency(r: &Results, path: &Path) -> Result<(), String> {
    let root = SVGBackend::new(path, (720, 420)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let all_max = r
        .mixing
        .iter()
        .flat_map(|m| m.window.video_latency_ms.iter().chain(&m.window.audio_latency_ms))
        .copied()
        .fold(50.0, f64::max);
    let x_max = (all_max * 1.05).min(1000.0);
    let mut chart = ChartBuilder::on(&root)
        .caption("Server-added latency (CDF)", ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(0f64..x_max, 0f64..1.0)
        .map_err(|e| e.to_string())?;
    chart.configure_mesh().x_desc("latency (ms)").y_desc("fraction of samples").draw().map_err(|e| e.to_string())?;
    let video_colors = [RGBColor(255, 150, 150), RGBColor(220, 40, 40), RGBColor(120, 0, 0)];
    let audio_colors = [RGBColor(150, 150, 255), RGBColor(40, 40, 220), RGBColor(0, 0, 120)];
    for (i, m) in r.mixing.iter().enumerate() {
        for (kind, values, color) in [
            ("video", &m.window.video_latency_ms, video_colors[i % 3]),
            ("audio", &m.window.audio_latency_ms, audio_colors[i % 3]),
        ] {
            if values.is_empty() {
                continue;
            }
            let mut v = values.clone();
            v.sort_by(|a, b| a.total_cmp(b));
            let n = v.len() as f64;
            let pts: Vec<(f64, f64)> = v.iter().enumerate().map(|(k, x)| (x.min(x_max), (k + 1) as f64 / n)).collect();
            chart
                .draw_series(LineSeries::new(pts, color.stroke_width(2)))
                .map_err(|e| e.to_string())?
                .label(format!("{kind}, N = {}", m.n))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| e.to_string())?;
    root.present().map_err(|e| e.to_string())
}
