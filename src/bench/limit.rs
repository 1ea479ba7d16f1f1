//! The reference: a plain `gst-launch-1.0` pipeline doing the server's media work on
//! the same input files in real time — N VP8 decodes, the grid composite at the
//! server's canvas, the server's VP8 encoder settings, plus N Opus decodes, one audio
//! mix and N Opus encodes — with no WebRTC, RTP, jitter buffers or HTTP. Its CPU is
//! the physical limit of this design on this machine.

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::media::{self, BenchMedia};
use super::sys::CpuWindow;
use crate::config::MediaConfig;
use crate::layout;
use crate::media::template::{self, render};

/// The `gst-launch-1.0` description for `n` participants.
pub fn description(media: &BenchMedia, config: &MediaConfig, n: usize) -> Result<String, String> {
    let values = HashMap::from([
        ("bitrate_bps", config.video_bitrate_bps.to_string()),
        ("keyframe_max_dist", (config.fps * 10).to_string()),
    ]);
    let encoder = render(template::VIDEO_ENCODE_VP8, &values).map_err(|e| e.to_string())?;
    let (w, h) = (config.width, config.height);
    let mut pads = String::new();
    for (i, cell) in layout::grid_cells(w, h, n).into_iter().enumerate() {
        pads.push_str(&format!(
            " sink_{i}::xpos={} sink_{i}::ypos={} sink_{i}::width={} sink_{i}::height={} sink_{i}::sizing-policy=keep-aspect-ratio",
            cell.x, cell.y, cell.width, cell.height
        ));
    }
    let mut d = format!(
        "compositor name=c background=black{pads} \
         ! video/x-raw,format=I420,width={w},height={h},framerate={fps}/1,pixel-aspect-ratio=1/1 \
         ! queue max-size-buffers=2 max-size-bytes=0 max-size-time=0 ! {encoder} ! fakesink sync=true \
         audiomixer name=m ! audio/x-raw,rate=48000,channels=1 ! tee name=t",
        fps = config.fps
    );
    for i in 0..n {
        d.push_str(&format!(
            " filesrc location={v} ! matroskademux ! vp8dec ! queue max-size-buffers=3 ! c.sink_{i} \
              filesrc location={a} ! matroskademux ! opusdec ! audioconvert ! audioresample ! queue ! m. \
              t. ! queue ! opusenc bitrate={ab} frame-size=20 ! fakesink sync=true",
            v = media.video_file.display(),
            a = media.audio_file.display(),
            ab = config.audio_bitrate_bps,
        ));
    }
    Ok(d)
}

/// Runs the reference for `n` participants: `warmup` then `secs` measured; returns
/// its CPU in cores.
pub async fn measure(
    media: &BenchMedia,
    config: &MediaConfig,
    n: usize,
    warmup: f64,
    secs: f64,
) -> Result<f64, String> {
    if warmup + secs > (media::VIDEO_FRAMES as f64 / f64::from(media::FPS)) - 1.0 {
        return Err("reference run longer than the media files".into());
    }
    let mut child = Command::new("gst-launch-1.0")
        .arg("-q")
        // gst-launch-1.0 quotes an argument with spaces: one token per argument.
        .args(description(media, config, n)?.split_whitespace())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start gst-launch-1.0: {e}"))?;
    let pid = child.id();
    tokio::time::sleep(Duration::from_secs_f64(warmup)).await;
    if let Ok(Some(status)) = child.try_wait() {
        let mut err = String::new();
        if let Some(mut s) = child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut s, &mut err);
        }
        return Err(format!("reference pipeline exited early ({status}): {err}"));
    }
    let window = CpuWindow::start(&[Some(pid)]);
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    let (cpu, _) = window.stop();
    let _ = child.kill();
    let _ = child.wait();
    Ok(cpu[0])
}
