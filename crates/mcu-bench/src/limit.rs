//! The reference: a plain `gst-launch-1.0` pipeline doing the server's media work on
//! the same input files in real time — N VP8 decodes, the grid composite at the
//! server's canvas, the server's VP8 encoder settings, plus N Opus decodes, one audio
//! mix and N Opus encodes — with no WebRTC, RTP, jitter buffers or HTTP. Its CPU is
//! the physical limit of this design on this machine.

use std::process::{Command, Stdio};
use std::time::Duration;

use super::media::{self, BenchMedia};
use super::sys::CpuWindow;
use mcu::config::MediaConfig;
use mcu::layout;
use mcu::media::codec::VideoCodec;
use mcu::media::encode::{EncodeSpec, encoder_description};

/// The `gst-launch-1.0` description for `n` participants.
pub fn description(media: &BenchMedia, config: &MediaConfig, n: usize) -> Result<String, String> {
    // The server's own VP8 encode of its high tier (same template, threads, bitrate).
    let spec = EncodeSpec {
        codec: VideoCodec::Vp8,
        width: config.width,
        height: config.height,
        fps: config.fps,
        bitrate_bps: config.video_bitrate_bps,
    };
    let encoder = encoder_description(config, &spec).map_err(|e| e.to_string())?;
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
         ! queue max-size-buffers=2 max-size-bytes=0 max-size-time=0 ! {encoder} \
         ! fpsdisplaysink video-sink=fakesink text-overlay=false sync=true fps-update-interval=1000 \
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
/// its CPU in cores and the encoded frame rate it kept (fpsdisplaysink's count).
pub async fn measure(
    media: &BenchMedia,
    config: &MediaConfig,
    n: usize,
    warmup: f64,
    secs: f64,
) -> Result<(f64, Option<f64>), String> {
    if warmup + secs > (media::VIDEO_FRAMES as f64 / f64::from(media::FPS)) - 1.0 {
        return Err("reference run longer than the media files".into());
    }
    let mut child = Command::new("gst-launch-1.0")
        .arg("-v")
        // gst-launch-1.0 quotes an argument with spaces: one token per argument.
        .args(description(media, config, n)?.split_whitespace())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start gst-launch-1.0: {e}"))?;
    let pid = child.id();
    // fpsdisplaysink reports "... current: 29.97, average: 29.95" once a second.
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let last_fps = std::sync::Arc::new(std::sync::Mutex::new(None::<(f64, f64)>));
    let reader_fps = std::sync::Arc::clone(&last_fps);
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            let (Some(rendered), Some(current)) = (field(&line, "rendered: "), field(&line, "current: ")) else {
                continue;
            };
            if let Ok(mut f) = reader_fps.lock() {
                *f = Some((rendered, current));
            }
        }
    });
    tokio::time::sleep(Duration::from_secs_f64(warmup)).await;
    if let Ok(Some(status)) = child.try_wait() {
        let mut err = String::new();
        if let Some(mut s) = child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut s, &mut err);
        }
        return Err(format!("reference pipeline exited early ({status}): {err}"));
    }
    let rendered0 = last_fps.lock().ok().and_then(|f| *f).map(|f| f.0);
    let window = CpuWindow::start(&[Some(pid)]);
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    let (cpu, wall) = window.stop();
    let rendered1 = last_fps.lock().ok().and_then(|f| *f).map(|f| f.0);
    let _ = child.kill();
    let _ = child.wait();
    let _ = reader.join();
    let fps = match (rendered0, rendered1) {
        (Some(a), Some(b)) if b > a => Some((b - a) / wall),
        _ => None,
    };
    Ok((cpu[0], fps))
}

/// The number after `key` in `line` (up to a comma or space).
fn field(line: &str, key: &str) -> Option<f64> {
    let rest = &line[line.find(key)? + key.len()..];
    rest.split([',', ' ', '"']).next()?.parse().ok()
}
