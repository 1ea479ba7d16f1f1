//! The load generator's pre-encoded media, generated once with GStreamer and cached:
//! 30 s of 640x360 30 fps VP8 (one [`Content`]: by default a moving zone plate, hard
//! to compress; ~500 kbit/s, a keyframe every second) with the frame number stamped
//! as a barcode, and 30 s of Opus (20 ms frames of a quiet tone plus noise; a variant
//! with a click every second).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use bytes::Bytes;
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

use super::content::Content;

/// Sender picture width.
pub const WIDTH: u32 = 640;
/// Sender picture height.
pub const HEIGHT: u32 = 360;
/// Sender frame rate.
pub const FPS: u32 = 30;
/// Frames in the video loop (30 s).
pub const VIDEO_FRAMES: usize = 900;
/// A keyframe every this many frames.
pub const KEYFRAME_EVERY: u32 = 30;
/// Sender video bitrate.
pub const VIDEO_BITRATE: u32 = 500_000;
/// 20 ms Opus frames in the audio loop (30 s).
pub const AUDIO_FRAMES: usize = 1500;
/// The click variant clicks every this many audio frames (1 s).
pub const CLICK_EVERY: usize = 50;
/// Samples per 20 ms frame at 48 kHz.
pub const FRAME_SAMPLES: usize = 960;

/// Barcode: blocks of this many pixels (source picture) in a row along the top edge.
pub const BLOCK: u32 = 40;
/// Barcode blocks: white and black references, 13 number bits, 1 parity bit.
pub const BLOCKS: u32 = 16;
const NUMBER_BITS: u32 = 13;
const Y_WHITE: u8 = 235;
const Y_BLACK: u8 = 16;

/// One pre-encoded VP8 frame.
#[derive(Clone)]
pub struct VideoFrame {
    /// The VP8 frame.
    pub data: Bytes,
    /// Whether it is a keyframe.
    pub keyframe: bool,
}

/// All the pre-encoded media, shared by every synthetic sender.
pub struct BenchMedia {
    /// The VP8 loop; frame `i` carries the barcode `i`.
    pub video: Vec<VideoFrame>,
    /// The Opus loop (tone + noise).
    pub audio: Vec<Bytes>,
    /// The same with a click in every [`CLICK_EVERY`]th frame.
    pub audio_click: Vec<Bytes>,
    /// An open microphone nobody talks into.
    pub audio_silent: Vec<Bytes>,
    /// Where, in the decoded click loop, the first click starts (samples from the
    /// start of the stream; the encoder's look-ahead shifts it).
    pub click_offset_samples: usize,
    /// The VP8 loop as a WebM file (for the reference pipeline).
    pub video_file: PathBuf,
    /// The Opus loop as a WebM file (for the reference pipeline).
    pub audio_file: PathBuf,
    /// Measured video bitrate (bit/s).
    pub video_bitrate: f64,
    /// What the video shows.
    pub content: Content,
}

/// The bits stamped for frame `n`: white, black, 13 bits of `n` (MSB first), parity.
pub fn barcode_bits(n: u32) -> [bool; BLOCKS as usize] {
    let mut bits = [false; BLOCKS as usize];
    bits[0] = true;
    let mut parity = false;
    for b in 0..NUMBER_BITS {
        let bit = (n >> (NUMBER_BITS - 1 - b)) & 1 == 1;
        bits[2 + b as usize] = bit;
        parity ^= bit;
    }
    bits[BLOCKS as usize - 1] = parity;
    bits
}

/// Decodes barcode luminances (one per block); `None` when the references are not
/// distinct or the parity is wrong.
pub fn barcode_read(luma: &[u8; BLOCKS as usize]) -> Option<u32> {
    let (white, black) = (i32::from(luma[0]), i32::from(luma[1]));
    if white - black < 60 {
        return None;
    }
    let mid = (white + black) / 2;
    let bit = |i: usize| i32::from(luma[i]) > mid;
    let mut n = 0;
    let mut parity = false;
    for b in 0..NUMBER_BITS as usize {
        let v = bit(2 + b);
        n = (n << 1) | u32::from(v);
        parity ^= v;
    }
    (parity == bit(BLOCKS as usize - 1)).then_some(n)
}

/// Paints the barcode of `n` into an I420 frame (`y` plane with `stride`; chroma
/// planes set neutral where the barcode is).
fn stamp_i420(data: &mut [u8], n: u32) {
    let (w, h) = (WIDTH as usize, HEIGHT as usize);
    let bits = barcode_bits(n);
    for (i, &bit) in bits.iter().enumerate() {
        let value = if bit { Y_WHITE } else { Y_BLACK };
        for y in 0..BLOCK as usize {
            let row = &mut data[y * w..(y + 1) * w];
            row[i * BLOCK as usize..(i + 1) * BLOCK as usize].fill(value);
        }
    }
    let (cw, ch) = (w / 2, h / 2);
    let u_start = w * h;
    let v_start = u_start + cw * ch;
    for plane in [u_start, v_start] {
        for y in 0..(BLOCK as usize / 2) {
            data[plane + y * cw..plane + y * cw + (BLOCKS * BLOCK) as usize / 2].fill(128);
        }
    }
}

/// What a synthetic participant's microphone picks up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Voice {
    /// Talking: a quiet 330 Hz tone plus noise (about -48 dBFS: above the server's
    /// voice threshold, and 25 talkers summed stay below the click detector's).
    Talking,
    /// Talking, with a 5 ms loud 1 kHz click at the start of every [`CLICK_EVERY`]th
    /// frame (the audio latency probe).
    Clicking,
    /// An open microphone nobody talks into: faint hiss (about -75 dBFS).
    Silent,
}

/// The bench's synthetic PCM for `voice` (tone plus noise: not silence, not
/// trivially compressible).
pub fn pcm(voice: Voice) -> Vec<i16> {
    let mut out = Vec::with_capacity(AUDIO_FRAMES * FRAME_SAMPLES);
    let mut seed = 0x2545_f491_u32;
    for i in 0..AUDIO_FRAMES * FRAME_SAMPLES {
        seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        let noise = f64::from((seed >> 16) as i16) / 32768.0;
        let tone = (std::f64::consts::TAU * 330.0 * i as f64 / 48_000.0).sin();
        let frame = i / FRAME_SAMPLES;
        let in_frame = i % FRAME_SAMPLES;
        let v = if voice == Voice::Silent {
            noise * 10.0
        } else if voice == Voice::Clicking && frame.is_multiple_of(CLICK_EVERY) && in_frame < 240 {
            // 5 ms of 1 kHz at near full scale: survives 32 kbit/s Opus.
            (std::f64::consts::TAU * 1000.0 * in_frame as f64 / 48_000.0).sin() * 28_000.0
        } else {
            (tone + noise) * 150.0
        };
        out.push(v as i16);
    }
    out
}

/// First sample at or after `from` whose magnitude exceeds `threshold`.
pub fn onset(pcm: &[i16], from: usize, threshold: i16) -> Option<usize> {
    pcm.iter().skip(from).position(|s| s.unsigned_abs() > threshold.unsigned_abs()).map(|p| p + from)
}

/// Loads the cached media with `content` as its video from `dir`, generating it
/// first when missing.
pub fn prepare(dir: &Path, content: Content) -> Result<Arc<BenchMedia>, String> {
    mcu::media::init().map_err(|e| e.to_string())?;
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let video_file = match content {
        // The name the zone plate loop has always had, so caches stay valid.
        Content::ZonePlate => dir.join("video-640x360-vp8.webm"),
        other => dir.join(format!("video-640x360-vp8-{}.webm", other.slug())),
    };
    let audio_file = dir.join("audio-opus.webm");
    let click_file = dir.join("audio-opus-click2.webm");
    let silent_file = dir.join("audio-opus-silent.webm");
    if !video_file.exists() {
        eprintln!("bench: encoding {} ({} frames)...", video_file.display(), VIDEO_FRAMES);
        generate_video(&video_file, content)?;
    }
    for (file, voice) in [(&audio_file, Voice::Talking), (&click_file, Voice::Clicking), (&silent_file, Voice::Silent)]
    {
        if !file.exists() {
            eprintln!("bench: encoding {}...", file.display());
            generate_audio(file, voice)?;
        }
    }
    let video: Vec<VideoFrame> = demux(&video_file)?
        .into_iter()
        .map(|data| VideoFrame { keyframe: data.first().is_some_and(|b| b & 1 == 0), data })
        .collect();
    let audio = demux(&audio_file)?;
    let audio_click = demux(&click_file)?;
    let audio_silent = demux(&silent_file)?;
    if video.len() < VIDEO_FRAMES / 2
        || audio.len() < AUDIO_FRAMES / 2
        || audio_click.is_empty()
        || audio_silent.is_empty()
    {
        return Err(format!("bench media in {} is incomplete; delete it to regenerate", dir.display()));
    }
    if !video[0].keyframe {
        return Err("bench video does not start with a keyframe".into());
    }
    // Where the first click lands after an Opus encode/decode round trip.
    let mut decoder = opus::Decoder::new(48_000, opus::Channels::Mono).map_err(|e| e.to_string())?;
    let mut decoded = Vec::new();
    let mut buf = vec![0i16; 5760];
    for frame in audio_click.iter().take(10) {
        let n = decoder.decode(frame, &mut buf, false).map_err(|e| e.to_string())?;
        decoded.extend_from_slice(&buf[..n]);
    }
    let click_offset_samples = onset(&decoded, 0, 10_000).ok_or("no click in the decoded click loop")?;
    let bytes: usize = video.iter().map(|f| f.data.len()).sum();
    let video_bitrate = bytes as f64 * 8.0 / (video.len() as f64 / f64::from(FPS));
    Ok(Arc::new(BenchMedia {
        video,
        audio,
        audio_click,
        audio_silent,
        click_offset_samples,
        video_file,
        audio_file,
        video_bitrate,
        content,
    }))
}

fn run_to_eos(pipeline: &gst::Pipeline) -> Result<(), String> {
    pipeline.set_state(gst::State::Playing).map_err(|e| e.to_string())?;
    let bus = pipeline.bus().ok_or("no bus")?;
    let result = loop {
        let Some(msg) = bus
            .timed_pop_filtered(gst::ClockTime::from_seconds(300), &[gst::MessageType::Eos, gst::MessageType::Error])
        else {
            break Err("timeout".to_owned());
        };
        match msg.view() {
            gst::MessageView::Eos(_) => break Ok(()),
            gst::MessageView::Error(e) => break Err(format!("{} ({:?})", e.error(), e.debug())),
            _ => {}
        }
    };
    let _ = pipeline.set_state(gst::State::Null);
    result
}

fn launch(description: &str) -> Result<gst::Pipeline, String> {
    gst::parse::launch(description)
        .map_err(|e| e.to_string())?
        .downcast::<gst::Pipeline>()
        .map_err(|_| "not a pipeline".to_owned())
}

fn generate_video(path: &Path, content: Content) -> Result<(), String> {
    let tmp = path.with_extension("tmp");
    let tail = format!(
        "identity name=stamp \
         ! vp8enc deadline=1 cpu-used=4 end-usage=cbr target-bitrate={VIDEO_BITRATE} \
           keyframe-max-dist={KEYFRAME_EVERY} lag-in-frames=0 auto-alt-ref=false \
         ! webmmux ! filesink location={}",
        tmp.display()
    );
    let description = content
        .source(WIDTH, HEIGHT, FPS, VIDEO_FRAMES as u32, 2, &tail)
        .ok_or("no pre-encoded media of photographs")?;
    let pipeline = launch(&description)?;
    let stamp = pipeline.by_name("stamp").ok_or("no stamp element")?;
    let counter = AtomicU32::new(0);
    stamp.static_pad("src").ok_or("no src pad")?.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
        if let Some(gst::PadProbeData::Buffer(buffer)) = info.data.as_mut() {
            let n = counter.fetch_add(1, Ordering::Relaxed);
            let buffer = buffer.make_mut();
            if let Ok(mut map) = buffer.map_writable()
                && map.len() >= (WIDTH * HEIGHT * 3 / 2) as usize
            {
                stamp_i420(map.as_mut_slice(), n);
            }
        }
        gst::PadProbeReturn::Ok
    });
    run_to_eos(&pipeline)?;
    std::fs::rename(&tmp, path).map_err(|e| e.to_string())
}

fn generate_audio(path: &Path, voice: Voice) -> Result<(), String> {
    let tmp = path.with_extension("tmp");
    let description = format!(
        "appsrc name=pcm format=time caps=audio/x-raw,format=S16LE,rate=48000,channels=1,layout=interleaved \
         ! opusenc bitrate=32000 frame-size=20 \
         ! webmmux ! filesink location={}",
        tmp.display()
    );
    let pipeline = launch(&description)?;
    let appsrc = pipeline.by_name("pcm").and_then(|e| e.downcast::<gst_app::AppSrc>().ok()).ok_or("no appsrc")?;
    let samples = pcm(voice);
    for (i, chunk) in samples.chunks(FRAME_SAMPLES).enumerate() {
        let mut buffer = gst::Buffer::with_size(chunk.len() * 2).map_err(|e| e.to_string())?;
        {
            let b = buffer.get_mut().ok_or("buffer")?;
            b.set_pts(gst::ClockTime::from_mseconds(i as u64 * 20));
            b.set_duration(gst::ClockTime::from_mseconds(20));
            let mut map = b.map_writable().map_err(|e| e.to_string())?;
            for (dst, s) in map.as_mut_slice().chunks_exact_mut(2).zip(chunk) {
                dst.copy_from_slice(&s.to_le_bytes());
            }
        }
        appsrc.push_buffer(buffer).map_err(|e| e.to_string())?;
    }
    appsrc.end_of_stream().map_err(|e| e.to_string())?;
    run_to_eos(&pipeline)?;
    std::fs::rename(&tmp, path).map_err(|e| e.to_string())
}

/// Every frame of the single stream in a WebM file.
fn demux(path: &Path) -> Result<Vec<Bytes>, String> {
    let description =
        format!("filesrc location={} ! matroskademux ! appsink name=out sync=false max-buffers=0", path.display());
    let pipeline = launch(&description)?;
    let sink = pipeline.by_name("out").and_then(|e| e.downcast::<gst_app::AppSink>().ok()).ok_or("no appsink")?;
    pipeline.set_state(gst::State::Playing).map_err(|e| e.to_string())?;
    let mut frames = Vec::new();
    while let Ok(sample) = sink.pull_sample() {
        if let Some(buffer) = sample.buffer()
            && let Ok(map) = buffer.map_readable()
        {
            frames.push(Bytes::copy_from_slice(map.as_slice()));
        }
    }
    let _ = pipeline.set_state(gst::State::Null);
    Ok(frames)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn barcode_round_trip() {
        for n in [0, 1, 2, 899, 4095, 8191] {
            let luma = barcode_bits(n).map(|b| if b { 200 } else { 30 });
            assert_eq!(barcode_read(&luma), Some(n));
        }
    }

    #[test]
    fn barcode_rejects_flat_and_bad_parity() {
        assert_eq!(barcode_read(&[120; 16]), None);
        let mut luma = barcode_bits(77).map(|b| if b { 200 } else { 30 });
        luma[5] = if luma[5] > 100 { 30 } else { 200 };
        assert_eq!(barcode_read(&luma), None);
    }

    #[test]
    fn clicks_only_in_the_click_variant() {
        let quiet = pcm(Voice::Talking);
        assert!(onset(&quiet, 0, 10_000).is_none());
        let clicks = pcm(Voice::Clicking);
        let first = onset(&clicks, 0, 10_000).unwrap();
        assert!(first < 48);
        assert_eq!(onset(&clicks, 480, 10_000), Some(CLICK_EVERY * FRAME_SAMPLES + first));
    }

    #[test]
    fn talkers_are_above_the_servers_voice_threshold_and_silence_below() {
        use mcu::media::voice::level_dbfs;
        let threshold = mcu::config::MediaConfig::default().voice_threshold_dbfs;
        let frames = |v| pcm(v).chunks(FRAME_SAMPLES).map(level_dbfs).collect::<Vec<f64>>();
        assert!(frames(Voice::Talking).iter().all(|&l| l > threshold + 5.0));
        assert!(frames(Voice::Silent).iter().all(|&l| l < threshold - 15.0));
    }
}
