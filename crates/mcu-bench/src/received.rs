//! What a receiver sees, beside what its room costs (`mcu-bench all --only received`).
//!
//! Four publishers each send a known picture panned one pixel a frame at 640x360 (a
//! 2x2 composite, so nothing is scaled at `high`), encoded at 2 Mb/s (a good camera
//! uplink). One receiver asks for one tier and decodes the composite; every cell of
//! every frame it decodes is compared with the view its publisher sent, found again
//! in the picture and brought to the cell's size by a box filter: luma PSNR and
//! SSIM end to end (the publisher's encode, the server's decode, composite, scale and
//! encode, the receiver's decode). The server's CPU over the same seconds is the
//! room's cost. Content: a zone plate panned whole (detail everywhere, all of it
//! moving), the same with only its middle third moving (a talking head before a still
//! background), and natural photographs (scikit-image's, from Debian's
//! `python3-skimage`, extracted by `scripts/install-deps.sh bench`).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::client::{Client, ClientOptions, DecodedFrame, VideoLosses};
use crate::picture::PannedPicture;
use crate::sys;
use crate::viewer::{Viewer, ViewerKind};
use mcu::config::MediaConfig;
use mcu::media::quality::{self, Plane};

/// Each publisher's camera.
pub const VIEW: (u32, u32) = (640, 360);
/// Each publisher's bitrate.
pub const PUBLISHER_BPS: u32 = 2_000_000;
/// A publisher bitrate equal to what one cell of the 2x2 composite gets of the `high`
/// tier's 1.5 Mb/s: with it, the server's re-encode has as many bits per pixel as the
/// publishers had, and what it costs is the second generation alone.
pub const EQUAL_SHARE_BPS: u32 = 375_000;
/// Seconds measured per row (after the composite has reached every cell).
const SECONDS: u64 = 8;
/// The photographs, in the publishers' order (files in the photo directory).
pub const PHOTOS: [&str; 4] = ["motorcycle_left.png", "coffee.png", "chelsea.png", "astronaut.png"];

/// One row of the table.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReceivedRow {
    /// Content class.
    pub content: String,
    /// Tier name.
    pub tier: String,
    /// Canvas and frame rate.
    pub size: String,
    /// Frames the receiver decoded per second.
    pub fps: f64,
    /// Mean luma PSNR over every cell of every frame (dB).
    pub psnr_db: f64,
    /// Mean luma SSIM.
    pub ssim: f64,
    /// Lowest SSIM of one cell in one frame.
    pub worst_ssim: f64,
    /// The server's CPU (cores) for this one room.
    pub server_cores: f64,
    /// The same pictures sent straight from publisher to receiver (the publisher's
    /// encode, decoded, at the publisher's size): mean luma PSNR (dB) and SSIM, the
    /// reference the server's share is measured against.
    #[serde(default)]
    pub direct: (f64, f64),
    /// Where packets went missing over the measured seconds.
    #[serde(default)]
    pub losses: Losses,
    /// Each publisher's video bitrate.
    #[serde(default = "publisher_bps")]
    pub publisher_bps: u32,
}

fn publisher_bps() -> u32 {
    PUBLISHER_BPS
}

/// What a measured room is made of.
#[derive(Clone, Copy)]
pub(crate) struct Setup<'a> {
    /// The publishers' pictures.
    pub scene: &'a Scene,
    /// The tier the measured receiver asks for.
    pub tier: &'a mcu::media::tier::Tier,
    /// What else loads the machine.
    pub load: Load,
    /// Who watches.
    pub viewer: ViewerKind,
    /// Each publisher's video bitrate.
    pub publisher_bps: u32,
}

impl<'a> Setup<'a> {
    /// `scene` at `tier`, quiet, watched by the webrtc-rs client, publishers at
    /// [`PUBLISHER_BPS`].
    pub fn new(scene: &'a Scene, tier: &'a mcu::media::tier::Tier) -> Self {
        Self { scene, tier, load: Load::default(), viewer: ViewerKind::WebrtcRs, publisher_bps: PUBLISHER_BPS }
    }
}

/// The section of BENCHMARKS.md.
pub fn markdown(rows: &[ReceivedRow], date: &str) -> String {
    let mut s = format!(
        "### 4f. What a receiver sees, beside what its room costs\n\n\
         Four publishers each send a picture panned one pixel a frame at 640x360 (VP8 at {} kb/s, a good camera \
         uplink; once more at {} kb/s, what one cell of the 2x2 `high` composite gets of its 1.5 Mb/s), one receiver \
         asks for one tier; every cell of every frame it decodes is compared with the view its publisher sent, \
         brought to the cell's size by a box filter (luma PSNR, SSIM over 8x8 windows, on the decoder's own I420: \
         no colour conversion, whose 8-bit RGB round trip alone would cap natural pictures near 40 dB): end to end, \
         the publisher's encode included. \"without the server\": the same pictures encoded as the publishers do \
         and decoded, at their own size. \"talking head\": only the middle third of each picture moves. \
         Photographs: scikit-image's motorcycle, coffee, cat and astronaut (Debian's python3-skimage). Name labels \
         off (no source has them). Server cores: the room of 4 and its one receiver over the same seconds. Measured \
         on {date} with `mcu-bench all --only received`.\n\n{}\n",
        PUBLISHER_BPS / 1000,
        EQUAL_SHARE_BPS / 1000,
        ReceivedRow::header()
    );
    for row in rows {
        s.push_str(&row.line());
        s.push('\n');
    }
    s
}

/// What loads the machine while a room is measured.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Load {
    /// More receivers of the measured tier decoding the composite beside the measured
    /// one (the way several participants' own devices would load one host).
    pub bystanders: usize,
    /// A busy loop on every core besides.
    pub hog: bool,
}

/// Where a receiver's picture could have lost packets, over the measured seconds:
/// the server's input, its encoders, its forwarders, the kernel's socket buffers,
/// and the receiver's own jitter buffer.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Losses {
    /// Cores busy on the whole machine.
    pub machine_cores: f64,
    /// Publishers' packets the server's input jitter buffers gave up on (`None`: the
    /// server does not count them).
    pub server_input_lost: Option<i64>,
    /// Composite frames dropped in front of the server's encoders.
    pub encode_frames_dropped: Option<i64>,
    /// Times a receiver's forwarder fell behind and skipped to a keyframe.
    pub receiver_resyncs: Option<i64>,
    /// Video packets the server resent to receivers.
    pub resent: Option<i64>,
    /// UDP datagrams the kernel dropped for full receive buffers (whole machine).
    pub udp_buffer_drops: u64,
    /// The measured receiver's jitter buffer and decoder.
    pub receiver: VideoLosses,
    /// Share of cells that showed the same view as in the frame before (frozen).
    pub frozen_share: f64,
}

/// The server's counters (`GET /metrics`), by name.
async fn server_counters(base: &str) -> std::collections::HashMap<String, i64> {
    let Ok(response) = reqwest::get(format!("{base}/metrics")).await else { return Default::default() };
    let text = response.text().await.unwrap_or_default();
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once(' '))
        .filter_map(|(name, value)| Some((name.to_owned(), value.trim().parse::<f64>().ok()? as i64)))
        .collect()
}

/// How much `name` grew from `before` to `after`; `None` when the server lacks it.
fn grew(
    before: &std::collections::HashMap<String, i64>,
    after: &std::collections::HashMap<String, i64>,
    name: &str,
) -> Option<i64> {
    Some(after.get(name)? - before.get(name).copied().unwrap_or(0))
}

impl ReceivedRow {
    /// Markdown table header.
    pub fn header() -> &'static str {
        "| content | tier | publishers send | fps received | PSNR-Y | SSIM-Y | worst cell SSIM | without the server: PSNR-Y, SSIM-Y | server cores (room of 4 + receiver) |\n\
         | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    }

    /// One Markdown row.
    pub fn line(&self) -> String {
        format!(
            "| {} | {} {} | {} kb/s | {:.1} | {:.1} dB | {:.3} | {:.3} | {:.1} dB, {:.3} | {:.2} |",
            self.content,
            self.tier,
            self.size,
            self.publisher_bps / 1000,
            self.fps,
            self.psnr_db,
            self.ssim,
            self.worst_ssim,
            self.direct.0,
            self.direct.1,
            self.server_cores
        )
    }
}

/// A content class: the four publishers' pictures.
pub(crate) struct Scene {
    pub(crate) label: &'static str,
    pictures: Vec<Arc<PannedPicture>>,
}

pub(crate) fn scenes(photos: &Path) -> Result<Vec<Scene>, String> {
    let zone_plate = || {
        PannedPicture::from_source(
            "videotestsrc pattern=zone-plate kx2=20 ky2=20 num-buffers=1",
            &format!("width={},height={}", VIEW.0 + 320, VIEW.1),
        )
    };
    let plate = Arc::new(zone_plate()?);
    let (w, h) = VIEW;
    let talking = Arc::new(zone_plate()?.moving_only([w / 3, h / 4, w / 3, h / 2]));
    let mut scenes = vec![
        Scene { label: "zone plate", pictures: vec![Arc::clone(&plate); 4] },
        Scene { label: "talking head", pictures: vec![Arc::clone(&talking); 4] },
    ];
    if PHOTOS.iter().all(|p| photos.join(p).exists()) {
        let pictures = PHOTOS
            .iter()
            .map(|p| PannedPicture::from_file(&photos.join(p), VIEW.0 + 160).map(Arc::new))
            .collect::<Result<Vec<_>, _>>()?;
        scenes.push(Scene { label: "photographs", pictures });
    } else {
        eprintln!("bench:   no photographs in {} (scripts/install-deps.sh bench extracts them)", photos.display());
    }
    Ok(scenes)
}

/// Every view of a picture, brought to a cell's size: what a receiver should see.
struct Expected {
    cell: (u32, u32),
    views: Vec<Vec<u8>>,
}

impl Expected {
    fn new(picture: &PannedPicture, cell: (u32, u32)) -> Self {
        let factor = (VIEW.0 / cell.0).max(1) as usize;
        let views = (0..picture.positions(VIEW.0))
            .map(|x| box_downscale(&picture.luma_view(x, VIEW), VIEW.0 as usize, factor))
            .collect();
        Self { cell, views }
    }

    /// The view `seen` matches best (SAD over eight rows): its position, and the
    /// PSNR and SSIM of `seen` against it.
    fn judge(&self, seen: &[u8]) -> (usize, f64, f64) {
        let (w, h) = (self.cell.0 as usize, self.cell.1 as usize);
        let rows: Vec<usize> = (0..8).map(|i| h * (2 * i + 1) / 16).collect();
        let sad = |view: &Vec<u8>| -> u64 {
            rows.iter()
                .map(|&r| {
                    view[r * w..][..w]
                        .iter()
                        .zip(&seen[r * w..][..w])
                        .map(|(a, b)| u64::from(a.abs_diff(*b)))
                        .sum::<u64>()
                })
                .sum()
        };
        let Some((position, best)) = self.views.iter().enumerate().min_by_key(|(_, v)| sad(v)) else {
            return (0, 0.0, 0.0);
        };
        let (best, seen) = (
            Plane { data: best, width: w, height: h, stride: w },
            Plane { data: seen, width: w, height: h, stride: w },
        );
        let psnr = quality::psnr(&best, &seen).unwrap_or(0.0);
        let ssim = quality::ssim(&best, &seen).unwrap_or(0.0);
        (position, psnr, ssim)
    }
}

/// Averages `factor` x `factor` blocks of a `width`-wide plane.
fn box_downscale(luma: &[u8], width: usize, factor: usize) -> Vec<u8> {
    if factor == 1 {
        return luma.to_vec();
    }
    let height = luma.len() / width;
    let (w, h) = (width / factor, height / factor);
    let area = (factor * factor) as u32;
    let mut out = Vec::with_capacity(w * h);
    for y in 0..h {
        for x in 0..w {
            let mut sum = 0u32;
            for dy in 0..factor {
                let row = &luma[(y * factor + dy) * width + x * factor..][..factor];
                sum += row.iter().map(|&v| u32::from(v)).sum::<u32>();
            }
            out.push(((sum + area / 2) / area) as u8);
        }
    }
    out
}

/// Measures every content class at every default tier, one room at a time on the
/// server at `base` (process `pid`).
pub async fn measure(base: &str, pid: u32, photos: &Path) -> Result<Vec<ReceivedRow>, String> {
    let scenes = tokio::task::spawn_blocking({
        let photos = photos.to_path_buf();
        move || scenes(&photos)
    })
    .await
    .map_err(|e| e.to_string())??;
    let tiers = MediaConfig::default().tiers();
    let mut rows = Vec::new();
    for (index, scene) in scenes.iter().enumerate() {
        let mut setups: Vec<Setup> = tiers.iter().map(|tier| Setup::new(scene, tier)).collect();
        // The photographs once more at `high`, with the server's bits per pixel.
        if scene.label == "photographs"
            && let Some(high) = tiers.first()
        {
            setups.push(Setup { publisher_bps: EQUAL_SHARE_BPS, ..Setup::new(scene, high) });
        }
        for (n, setup) in setups.into_iter().enumerate() {
            let direct = {
                let (pictures, bps) = (scene.pictures.clone(), setup.publisher_bps);
                tokio::task::spawn_blocking(move || direct_quality(&pictures, bps))
                    .await
                    .map_err(|e| e.to_string())??
            };
            let room = format!("quality-{index}-{n}");
            let row = ReceivedRow { direct, ..measure_room(base, pid, &room, setup).await? };
            eprintln!("bench:   {}", row.line());
            rows.push(row);
        }
    }
    Ok(rows)
}

/// One room as `setup` says: the scene's four publishers and the measured receiver.
pub(crate) async fn measure_room(base: &str, pid: u32, room: &str, setup: Setup<'_>) -> Result<ReceivedRow, String> {
    let Setup { scene, tier, load, viewer, publisher_bps } = setup;
    let cell = (tier.width / 2, tier.height / 2);
    let expected: Vec<Arc<Expected>> = {
        let pictures = scene.pictures.clone();
        tokio::task::spawn_blocking(move || pictures.iter().map(|p| Arc::new(Expected::new(p, cell))).collect())
            .await
            .map_err(|e| e.to_string())?
    };
    let mut publishers = Vec::new();
    for (i, picture) in scene.pictures.iter().enumerate() {
        let options = ClientOptions {
            name: Some(format!("p{i}")),
            video_picture: Some(Arc::clone(picture)),
            video_size: (VIEW.0, VIEW.1, 30),
            video_bitrate_bps: Some(publisher_bps),
            // Send-only: the room encodes the measured tier and nothing else.
            receive: false,
            ..Default::default()
        };
        publishers.push(Client::join(base, room, options).await.map_err(|e| e.to_string())?);
    }
    let options = ClientOptions {
        name: Some("viewer".into()),
        video_color: None,
        tone_hz: None,
        quality: Some(tier.name.clone()),
        ..Default::default()
    };
    let receiver = Viewer::join(base, room, viewer, options.clone()).await?;
    let mut others = Vec::new();
    for i in 0..load.bystanders {
        let options = ClientOptions { name: Some(format!("bystander{i}")), ..options.clone() };
        others.push(Client::join(base, room, options).await.map_err(|e| e.to_string())?);
    }
    // Every publisher's picture in its cell, and the encoders settled.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let hog = load.hog.then(crate::connect::CpuHog::start);
    let frames = receiver.observe_frames(4 * 30);
    let (counters, udp_drops, received_losses) =
        (server_counters(base).await, sys::udp_receive_buffer_drops(), receiver.video_losses());
    let window = sys::CpuWindow::start(&[Some(pid)]);
    let collected =
        tokio::task::spawn_blocking(move || collect_cells(&frames, cell)).await.map_err(|e| e.to_string())?;
    let machine_cores = window.machine();
    let (cores, elapsed) = window.stop();
    drop(hog);
    let server_cores = cores[0];
    let after = server_counters(base).await;
    let mut losses = Losses {
        machine_cores,
        server_input_lost: grew(&counters, &after, "mcu_video_input_packets_lost_total"),
        encode_frames_dropped: grew(&counters, &after, "mcu_video_encode_frames_dropped_total"),
        receiver_resyncs: grew(&counters, &after, "mcu_video_receiver_resyncs_total"),
        resent: grew(&counters, &after, "mcu_video_packets_resent_total"),
        udp_buffer_drops: sys::udp_receive_buffer_drops().saturating_sub(udp_drops),
        receiver: receiver.video_losses().unwrap_or_default().since(received_losses.unwrap_or_default()),
        frozen_share: 0.0,
    };
    receiver.stop_observing();
    receiver.close(base).await;
    for p in others.into_iter().chain(publishers) {
        p.close().await;
    }
    // Judged once the room is gone, so that judging takes no CPU from the call.
    let frames = collected.len();
    let judged: Vec<Vec<(usize, f64, f64)>> = tokio::task::spawn_blocking(move || {
        collected
            .iter()
            .map(|cells| cells.iter().zip(&expected).map(|(luma, expected)| expected.judge(luma)).collect())
            .collect()
    })
    .await
    .map_err(|e| e.to_string())?;
    losses.frozen_share = frozen_share(&judged);
    let scores: Vec<(f64, f64)> = judged.iter().flatten().map(|&(_, psnr, ssim)| (psnr, ssim)).collect();
    tokio::time::sleep(Duration::from_secs(1)).await;
    if scores.is_empty() {
        return Err(format!("{room}: the receiver decoded no frame"));
    }
    let mean = |f: fn(&(f64, f64)) -> f64| scores.iter().map(f).sum::<f64>() / scores.len() as f64;
    Ok(ReceivedRow {
        content: scene.label.to_owned(),
        tier: tier.name.clone(),
        size: format!("{}x{}@{}", tier.width, tier.height, tier.fps),
        fps: frames as f64 / elapsed,
        psnr_db: mean(|s| s.0),
        ssim: mean(|s| s.1),
        worst_ssim: scores.iter().map(|s| s.1).fold(1.0, f64::min),
        server_cores,
        direct: (0.0, 0.0),
        losses,
        publisher_bps,
    })
}

/// Share of cells showing the view they showed in the frame before (the picture pans
/// a pixel a frame: a cell that did not move is frozen), over frames judged in order.
fn frozen_share(frames: &[Vec<(usize, f64, f64)>]) -> f64 {
    let pairs = frames.windows(2).flat_map(|w| w[0].iter().zip(&w[1]).map(|(a, b)| a.0 == b.0));
    let (frozen, all) = pairs.fold((0usize, 0usize), |(f, n), same| (f + usize::from(same), n + 1));
    if all == 0 { 0.0 } else { frozen as f64 / all as f64 }
}

/// What the pictures look like sent straight to a receiver: 5 s of each encoded as
/// a publisher does (VP8, real time, at `bps`) and decoded, against its frames; the
/// mean over the pictures.
fn direct_quality(pictures: &[Arc<PannedPicture>], bps: u32) -> Result<(f64, f64), String> {
    gstreamer::init().map_err(|e| e.to_string())?;
    let encode = format!(
        "appsrc name=src format=time ! vp8enc deadline=1 cpu-used=8 end-usage=cbr target-bitrate={bps} \
         keyframe-max-dist=120 lag-in-frames=0 error-resilient=default ! vp8dec ! video/x-raw,format=I420 \
         ! appsink name=out sync=false"
    );
    let (mut psnr, mut ssim) = (0.0, 0.0);
    for picture in pictures {
        let frames = (0..150u64).map(|k| {
            let mut frame = vec![0u8; (VIEW.0 * VIEW.1 * 3 / 2) as usize];
            picture.write_frame(k, VIEW, &mut frame);
            frame
        });
        let raw = crate::encode::raw_samples((VIEW.0, VIEW.1, 30), frames);
        let decoded = crate::encode::run(&encode, &raw)?;
        let (p, s) = crate::encode::compare(&raw, &decoded)?;
        psnr += p;
        ssim += s;
    }
    let n = pictures.len().max(1) as f64;
    Ok((psnr / n, ssim / n))
}

/// The four cells' luma of every frame arriving for [`SECONDS`].
fn collect_cells(frames: &std::sync::mpsc::Receiver<DecodedFrame>, (cw, ch): (u32, u32)) -> Vec<Vec<Vec<u8>>> {
    let end = std::time::Instant::now() + Duration::from_secs(SECONDS);
    let mut collected = Vec::new();
    while let Some(left) = end.checked_duration_since(std::time::Instant::now()) {
        let Ok(frame) = frames.recv_timeout(left) else { break };
        let cells: Option<Vec<Vec<u8>>> =
            (0..4u32).map(|i| frame.luma_block((i % 2) * cw, (i / 2) * ch, cw, ch)).collect();
        collected.extend(cells);
    }
    collected
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cell_showing_the_same_view_twice_is_frozen() {
        let cell = |position| (position, 40.0, 0.99);
        // Two cells over four frames: the first moves every frame, the second stops once.
        let frames = [vec![cell(0), cell(5)], vec![cell(1), cell(6)], vec![cell(2), cell(6)], vec![cell(3), cell(7)]];
        assert!((frozen_share(&frames) - 1.0 / 6.0).abs() < 1e-9);
        assert_eq!(frozen_share(&frames[..1]), 0.0);
    }

    #[test]
    fn box_downscale_averages_blocks() {
        let luma = [10, 20, 30, 40, 10, 20, 30, 40];
        assert_eq!(box_downscale(&luma, 4, 2), vec![15, 35]);
        assert_eq!(box_downscale(&luma, 4, 1), luma.to_vec());
    }

    #[test]
    fn a_view_is_judged_against_itself_as_identical() {
        let picture = PannedPicture::generated(VIEW.0 + 40, VIEW.1, 2);
        let expected = Expected::new(&picture, (320, 180));
        let seen = box_downscale(&picture.luma_view(17, VIEW), VIEW.0 as usize, 2);
        let (position, psnr, ssim) = expected.judge(&seen);
        assert_eq!(position, 17);
        assert_eq!(psnr, quality::PSNR_IDENTICAL);
        assert!(ssim > 0.999, "{ssim}");
    }
}
