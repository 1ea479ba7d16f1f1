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

use crate::client::{Client, ClientOptions, RgbFrame};
use crate::picture::PannedPicture;
use crate::sys;
use mcu::config::MediaConfig;
use mcu::media::quality::{self, Plane};

/// Each publisher's camera.
pub const VIEW: (u32, u32) = (640, 360);
/// Each publisher's bitrate.
const PUBLISHER_BPS: u32 = 2_000_000;
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
}

impl ReceivedRow {
    /// Markdown table header.
    pub fn header() -> &'static str {
        "| content | tier | fps received | PSNR-Y | SSIM-Y | worst cell SSIM | without the server: PSNR-Y, SSIM-Y | server cores (room of 4 + receiver) |\n\
         | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"
    }

    /// One Markdown row.
    pub fn line(&self) -> String {
        format!(
            "| {} | {} {} | {:.1} | {:.1} dB | {:.3} | {:.3} | {:.1} dB, {:.3} | {:.2} |",
            self.content,
            self.tier,
            self.size,
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
struct Scene {
    label: &'static str,
    pictures: Vec<Arc<PannedPicture>>,
}

fn scenes(photos: &Path) -> Result<Vec<Scene>, String> {
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

    /// The view `seen` matches best (SAD over eight rows), and its PSNR and SSIM.
    fn judge(&self, seen: &[u8]) -> (f64, f64) {
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
        let Some(best) = self.views.iter().min_by_key(|v| sad(v)) else { return (0.0, 0.0) };
        let (best, seen) = (
            Plane { data: best, width: w, height: h, stride: w },
            Plane { data: seen, width: w, height: h, stride: w },
        );
        let psnr = quality::psnr(&best, &seen).unwrap_or(0.0);
        let ssim = quality::ssim(&best, &seen).unwrap_or(0.0);
        (psnr, ssim)
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
        let direct = {
            let pictures = scene.pictures.clone();
            tokio::task::spawn_blocking(move || direct_quality(&pictures)).await.map_err(|e| e.to_string())??
        };
        for tier in &tiers {
            let room = format!("quality-{index}-{}", tier.name);
            let row = ReceivedRow { direct, ..measure_room(base, pid, &room, scene, tier).await? };
            eprintln!("bench:   {}", row.line());
            rows.push(row);
        }
    }
    Ok(rows)
}

async fn measure_room(
    base: &str,
    pid: u32,
    room: &str,
    scene: &Scene,
    tier: &mcu::media::tier::Tier,
) -> Result<ReceivedRow, String> {
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
            video_bitrate_bps: Some(PUBLISHER_BPS),
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
    let receiver = Client::join(base, room, options).await.map_err(|e| e.to_string())?;
    // Every publisher's picture in its cell, and the encoders settled.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let frames = receiver.received.observe_frames(4 * 30);
    let cpu = sys::cpu_seconds(Some(pid)).unwrap_or(0.0);
    let started = std::time::Instant::now();
    let collected =
        tokio::task::spawn_blocking(move || collect_cells(&frames, cell)).await.map_err(|e| e.to_string())?;
    let elapsed = started.elapsed().as_secs_f64();
    let server_cores = (sys::cpu_seconds(Some(pid)).unwrap_or(0.0) - cpu) / elapsed;
    receiver.received.stop_observing();
    receiver.close().await;
    for p in publishers {
        p.close().await;
    }
    // Judged once the room is gone, so that judging takes no CPU from the call.
    let frames = collected.len();
    let scores: Vec<(f64, f64)> = tokio::task::spawn_blocking(move || {
        collected
            .iter()
            .flat_map(|cells| cells.iter().zip(&expected).map(|(luma, expected)| expected.judge(luma)))
            .collect()
    })
    .await
    .map_err(|e| e.to_string())?;
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
    })
}

/// What the pictures look like sent straight to a receiver: 5 s of each encoded as
/// a publisher does (VP8, real time, [`PUBLISHER_BPS`]) and decoded, against its
/// frames; the mean over the pictures.
fn direct_quality(pictures: &[Arc<PannedPicture>]) -> Result<(f64, f64), String> {
    gstreamer::init().map_err(|e| e.to_string())?;
    let encode = format!(
        "appsrc name=src format=time ! vp8enc deadline=1 cpu-used=8 end-usage=cbr target-bitrate={PUBLISHER_BPS} \
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
fn collect_cells(frames: &std::sync::mpsc::Receiver<RgbFrame>, (cw, ch): (u32, u32)) -> Vec<Vec<Vec<u8>>> {
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
        let (psnr, ssim) = expected.judge(&seen);
        assert_eq!(psnr, quality::PSNR_IDENTICAL);
        assert!(ssim > 0.999, "{ssim}");
    }
}
