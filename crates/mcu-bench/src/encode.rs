//! `mcu-bench all --only encode`: what one encode of the composite costs at each
//! tier, per codec and encoder setting, and what a receiver sees from it.
//!
//! The raw pictures are made first and kept in memory, so the timed run is the
//! encoder alone (appsrc pushing ready buffers costs next to nothing): CPU seconds
//! of this process over media seconds = cores one encode takes at real time. The
//! encoded frames are then decoded (untimed) and each compared with its source:
//! luma PSNR and SSIM ([`mcu::media::quality`]).

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_video as gst_video;
use gstreamer_video::prelude::*;
use serde::{Deserialize, Serialize};

use super::content::Content;
use super::sys;
use crate::picture::PannedPicture;
use mcu::config::MediaConfig;
use mcu::media::codec::VideoCodec;
use mcu::media::encode::{EncodeSpec, encoder_description};
use mcu::media::quality::{self, Plane};
use mcu::media::tier::Tier;

/// openh264 at low complexity, as a `media.h264_encoder` value.
const OPENH264: &str = "openh264enc bitrate={bitrate_bps} rate-control=bitrate complexity=low usage-type=camera \
    gop-size={keyframe_max_dist} multi-thread={threads} ! video/x-h264,profile=constrained-baseline \
    ! h264parse config-interval=-1 ! video/x-h264,stream-format=byte-stream,alignment=au";

/// The speed setting of the embedded VP8 template (`cpu-used=N`).
pub fn vp8_speed() -> &'static str {
    mcu::media::template::VIDEO_ENCODE_VP8
        .split_whitespace()
        .find(|t| t.starts_with("cpu-used="))
        .unwrap_or("cpu-used=?")
}

/// Seconds of media encoded per measurement.
pub const SECONDS: u32 = 5;

/// An encoder setting under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Encoder {
    /// The embedded VP8 template (`pipelines/video-encode-vp8.pipeline`).
    Vp8,
    /// The VP8 template with two threads (the default before `media.encoder_threads`).
    Vp8Threads2,
    /// The VP8 template skipping macroblocks whose residual is below a threshold
    /// (`static-threshold`).
    Vp8StaticThreshold(u32),
    /// The VP8 template at libvpx's fastest real-time speed (`cpu-used=-16`).
    Vp8Speed16,
    /// The VP8 template at another `cpu-used`: a negative one fixes libvpx's speed;
    /// 0..=16 lets libvpx choose it, raising it while frames take longer than
    /// (16 - cpu-used)/16 of their interval (so its cost and picture follow the load).
    Vp8Speed(i8),
    /// The embedded H.264 template with x264 `ultrafast`.
    X264Ultrafast,
    /// The embedded H.264 template: x264 `superfast`.
    X264Superfast,
    /// Cisco's openh264 (`openh264enc`, low complexity).
    OpenH264,
}

impl Encoder {
    /// Every setting measured.
    pub const ALL: [Encoder; 11] = [
        Encoder::Vp8,
        Encoder::Vp8Speed(8),
        Encoder::Vp8Speed(-4),
        Encoder::Vp8Speed(-8),
        Encoder::Vp8Threads2,
        Encoder::Vp8StaticThreshold(300),
        Encoder::Vp8StaticThreshold(3000),
        Encoder::Vp8Speed16,
        Encoder::X264Ultrafast,
        Encoder::X264Superfast,
        Encoder::OpenH264,
    ];

    /// Its name in the tables.
    pub fn label(self) -> String {
        match self {
            Encoder::Vp8 => format!("VP8 (vp8enc {}, 1 thread, default)", vp8_speed()),
            Encoder::Vp8Threads2 => format!("VP8 (vp8enc {}, 2 threads)", vp8_speed()),
            Encoder::Vp8StaticThreshold(t) => format!("VP8 (vp8enc {}, static-threshold={t})", vp8_speed()),
            Encoder::Vp8Speed16 => "VP8 (vp8enc cpu-used=-16)".into(),
            Encoder::Vp8Speed(n) if n >= 0 => format!("VP8 (vp8enc cpu-used={n}: automatic speed)"),
            Encoder::Vp8Speed(n) => format!("VP8 (vp8enc cpu-used={n})"),
            Encoder::X264Ultrafast => "H.264 (x264 ultrafast)".into(),
            Encoder::X264Superfast => "H.264 (x264 superfast, default)".into(),
            Encoder::OpenH264 => "H.264 (openh264, low)".into(),
        }
    }

    fn codec(self) -> VideoCodec {
        match self {
            Encoder::Vp8
            | Encoder::Vp8Threads2
            | Encoder::Vp8StaticThreshold(_)
            | Encoder::Vp8Speed16
            | Encoder::Vp8Speed(_) => VideoCodec::Vp8,
            Encoder::X264Ultrafast | Encoder::X264Superfast | Encoder::OpenH264 => VideoCodec::H264,
        }
    }

    /// The encoder as the server would run it: openh264 goes through
    /// `media.h264_encoder`, as an operator would configure it, so it gets the same
    /// placeholders (threads, keyframe distance, bitrate) as the embedded templates.
    fn description(self, spec: &EncodeSpec) -> Result<String, String> {
        let config = match self {
            Encoder::OpenH264 => MediaConfig { h264_encoder: Some(OPENH264.into()), ..MediaConfig::default() },
            Encoder::Vp8Threads2 => MediaConfig { encoder_threads: 2, ..MediaConfig::default() },
            _ => MediaConfig::default(),
        };
        let embedded = encoder_description(&config, spec).map_err(|e| e.to_string())?;
        Ok(match self {
            Encoder::X264Ultrafast => embedded.replace("speed-preset=superfast", "speed-preset=ultrafast"),
            Encoder::Vp8Speed16 => embedded.replace(vp8_speed(), "cpu-used=-16"),
            Encoder::Vp8Speed(n) => embedded.replace(vp8_speed(), &format!("cpu-used={n}")),
            Encoder::Vp8StaticThreshold(t) => {
                embedded.replace(vp8_speed(), &format!("{} static-threshold={t}", vp8_speed()))
            }
            Encoder::Vp8 | Encoder::Vp8Threads2 | Encoder::X264Superfast | Encoder::OpenH264 => embedded,
        })
    }

    fn decoder(self) -> &'static str {
        if self.codec() == VideoCodec::Vp8 { "vp8dec" } else { "h264parse ! avdec_h264" }
    }
}

/// One measured (content, tier, encoder).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EncodeRow {
    /// The picture.
    pub content: Content,
    /// Tier name.
    pub tier: String,
    /// `WxH@fps`.
    pub size: String,
    /// The setting.
    pub encoder: Encoder,
    /// Cores one real-time encode takes (CPU seconds / media seconds).
    pub cores: f64,
    /// Bitrate produced, bit/s.
    pub bitrate_bps: f64,
    /// The tier's target bitrate, bit/s.
    pub target_bps: f64,
    /// Frames per second of the tier.
    pub fps: f64,
    /// Mean luma PSNR of the decoded frames against their sources, dB.
    pub psnr_db: f64,
    /// Mean luma SSIM.
    pub ssim: f64,
}

impl EncodeRow {
    /// The table header.
    pub fn header() -> &'static str {
        "| content | tier | encoder | cores per encode | ms per frame | bitrate (of target) | PSNR-Y | SSIM-Y |\n| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |"
    }

    /// The row in the table.
    pub fn line(&self) -> String {
        format!(
            "| {} | {} {} | {} | {:.3} | {:.1} | {:.0} kb/s ({:.0} %) | {:.1} dB | {:.3} |",
            self.content.label(),
            self.tier,
            self.size,
            self.encoder.label(),
            self.cores,
            self.cores * 1000.0 / self.fps,
            self.bitrate_bps / 1000.0,
            100.0 * self.bitrate_bps / self.target_bps,
            self.psnr_db,
            self.ssim
        )
    }
}

/// Measures every encoder at every default tier on both kinds of picture, and the
/// default encoders on four photographs panned in a 2x2 composite (when `photos`
/// holds them): what the server's encode alone costs against its raw composite.
pub fn measure_all(photos: &std::path::Path) -> Result<Vec<EncodeRow>, String> {
    gst::init().map_err(|e| e.to_string())?;
    let tiers = MediaConfig::default().tiers();
    let mut rows = Vec::new();
    for content in Content::ALL {
        for tier in &tiers {
            let frames = tier.fps * SECONDS;
            let raw = pictures(content, tier, frames)?;
            for encoder in Encoder::ALL {
                let row = measure(content, tier, encoder, &raw)?;
                eprintln!("bench:   {}", row.line());
                rows.push(row);
            }
        }
    }
    if crate::received::PHOTOS.iter().all(|p| photos.join(p).exists()) {
        let pictures = crate::received::PHOTOS
            .iter()
            .map(|p| PannedPicture::from_file(&photos.join(p), crate::received::VIEW.0 + 160))
            .collect::<Result<Vec<_>, _>>()?;
        for tier in &tiers {
            let raw = photo_pictures(&pictures, tier, tier.fps * SECONDS)?;
            let vp8 = [Encoder::Vp8, Encoder::Vp8Speed(8), Encoder::Vp8Speed(-4), Encoder::Vp8Speed(-8)];
            for encoder in vp8.into_iter().chain([Encoder::X264Superfast]) {
                let row = measure(Content::Photographs, tier, encoder, &raw)?;
                eprintln!("bench:   {}", row.line());
                rows.push(row);
            }
        }
    }
    Ok(rows)
}

/// Four pictures panned in a 2x2 composite of 640x360 views (as the server composes
/// them), scaled to `tier`'s size, at its rate.
fn photo_pictures(pictures: &[PannedPicture], tier: &Tier, frames: u32) -> Result<Vec<gst::Sample>, String> {
    let view = crate::received::VIEW;
    let (w, h) = (view.0 * 2, view.1 * 2);
    let mut cell = vec![0u8; (view.0 * view.1 * 3 / 2) as usize];
    let composites = (0..frames).map(|k| {
        let mut composite = vec![0u8; (w * h * 3 / 2) as usize];
        for (i, picture) in pictures.iter().enumerate() {
            picture.write_view(picture.offset(u64::from(k), view.0), view, &mut cell);
            let (cx, cy) = ((i as u32 % 2) * view.0, (i as u32 / 2) * view.1);
            place(&cell, view, &mut composite, (w, h), (cx, cy));
        }
        composite
    });
    let input = raw_samples((w, h, tier.fps), composites);
    run(
        &format!(
            "appsrc name=src format=time ! videoscale ! video/x-raw,width={},height={} ! appsink name=out sync=false",
            tier.width, tier.height
        ),
        &input,
    )
}

/// I420 frames of `width` x `height` as samples stamped one `fps` period apart.
pub(crate) fn raw_samples(
    (width, height, fps): (u32, u32, u32),
    frames: impl IntoIterator<Item = Vec<u8>>,
) -> Vec<gst::Sample> {
    let caps = gst::Caps::builder("video/x-raw")
        .field("format", "I420")
        .field("width", width as i32)
        .field("height", height as i32)
        .field("framerate", gst::Fraction::new(fps as i32, 1))
        .build();
    frames
        .into_iter()
        .zip(0u64..)
        .map(|(frame, k)| {
            let mut buffer = gst::Buffer::from_mut_slice(frame);
            if let Some(b) = buffer.get_mut() {
                b.set_pts(gst::ClockTime::from_nseconds(k * 1_000_000_000 / u64::from(fps.max(1))));
            }
            gst::Sample::builder().buffer(&buffer).caps(&caps).build()
        })
        .collect()
}

/// Copies an I420 `cell` into an I420 `frame` at `(x, y)` (even).
fn place(cell: &[u8], (cw, ch): (u32, u32), frame: &mut [u8], (fw, fh): (u32, u32), (x, y): (u32, u32)) {
    let (cw, ch, fw, fh, x, y) = (cw as usize, ch as usize, fw as usize, fh as usize, x as usize, y as usize);
    let planes = [(0, 0, cw, ch, fw, x, y), (cw * ch, fw * fh, cw / 2, ch / 2, fw / 2, x / 2, y / 2)];
    let chroma = (cw * ch + cw * ch / 4, fw * fh + fw * fh / 4, cw / 2, ch / 2, fw / 2, x / 2, y / 2);
    for (from, to, w, h, stride, left, top) in planes.into_iter().chain([chroma]) {
        for row in 0..h {
            let src = from + row * w;
            let dst = to + (top + row) * stride + left;
            frame[dst..dst + w].copy_from_slice(&cell[src..src + w]);
        }
    }
}

fn measure(content: Content, tier: &Tier, encoder: Encoder, raw: &[gst::Sample]) -> Result<EncodeRow, String> {
    let spec = EncodeSpec {
        codec: encoder.codec(),
        width: tier.width,
        height: tier.height,
        fps: tier.fps,
        bitrate_bps: tier.bitrate_bps,
    };
    let encode = format!("appsrc name=src format=time ! {} ! appsink name=out sync=false", encoder.description(&spec)?);
    let before = sys::cpu_seconds(None).unwrap_or(0.0);
    let encoded = run(&encode, raw)?;
    let cores = (sys::cpu_seconds(None).unwrap_or(0.0) - before) / f64::from(SECONDS);
    let bytes: usize = encoded.iter().filter_map(|s| s.buffer().map(|b| b.size())).sum();
    let decode = format!(
        "appsrc name=src format=time ! {} ! video/x-raw,format=I420 ! appsink name=out sync=false",
        encoder.decoder()
    );
    let decoded = run(&decode, &encoded)?;
    let (psnr_db, ssim) = compare(raw, &decoded)?;
    Ok(EncodeRow {
        content,
        tier: tier.name.clone(),
        size: format!("{}x{}@{}", tier.width, tier.height, tier.fps),
        encoder,
        cores,
        bitrate_bps: bytes as f64 * 8.0 / f64::from(SECONDS),
        target_bps: f64::from(tier.bitrate_bps),
        fps: f64::from(tier.fps),
        psnr_db,
        ssim,
    })
}

/// The raw pictures of `content` at `tier`'s size and rate.
fn pictures(content: Content, tier: &Tier, frames: u32) -> Result<Vec<gst::Sample>, String> {
    let description = content.source(tier.width, tier.height, tier.fps, frames, 1, "appsink name=raw sync=false");
    let description = description.ok_or("photographs have no description")?;
    let pipeline = gst::parse::launch(&description)
        .map_err(|e| format!("raw pictures: {e}"))?
        .downcast::<gst::Pipeline>()
        .map_err(|_| "raw pictures: not a pipeline".to_owned())?;
    drain(&pipeline, None)
}

/// Runs `description` (an `appsrc name=src` ... `appsink name=out`) over `input`.
pub(crate) fn run(description: &str, input: &[gst::Sample]) -> Result<Vec<gst::Sample>, String> {
    let pipeline = gst::parse::launch(description)
        .map_err(|e| format!("{description}: {e}"))?
        .downcast::<gst::Pipeline>()
        .map_err(|_| "not a pipeline".to_owned())?;
    drain(&pipeline, Some(input))
}

/// Plays `pipeline` to its end, pushing `input` into `src` when given, and returns
/// what reached its appsink (`raw` or `out`).
fn drain(pipeline: &gst::Pipeline, input: Option<&[gst::Sample]>) -> Result<Vec<gst::Sample>, String> {
    let sink = pipeline
        .by_name("out")
        .or_else(|| pipeline.by_name("raw"))
        .and_then(|e| e.downcast::<gst_app::AppSink>().ok())
        .ok_or("no appsink")?;
    sink.set_property("max-buffers", 0u32);
    pipeline.set_state(gst::State::Playing).map_err(|e| e.to_string())?;
    let feeder = input.map(|samples| {
        let src = pipeline.by_name("src").and_then(|e| e.downcast::<gst_app::AppSrc>().ok());
        let samples = samples.to_vec();
        std::thread::spawn(move || {
            let Some(src) = src else { return };
            if let Some(caps) = samples.first().and_then(|s| s.caps_owned()) {
                src.set_caps(Some(&caps));
            }
            for sample in samples {
                if let Some(buffer) = sample.buffer_owned()
                    && src.push_buffer(buffer).is_err()
                {
                    break;
                }
            }
            let _ = src.end_of_stream();
        })
    });
    let mut out = Vec::new();
    let result = loop {
        match sink.pull_sample() {
            Ok(sample) => out.push(sample),
            Err(_) if sink.is_eos() => break Ok(()),
            Err(_) => break Err(bus_error(pipeline).unwrap_or_else(|| "pipeline stopped".into())),
        }
    };
    if let Some(feeder) = feeder {
        let _ = feeder.join();
    }
    let _ = pipeline.set_state(gst::State::Null);
    result.map(|()| out)
}

fn bus_error(pipeline: &gst::Pipeline) -> Option<String> {
    let bus = pipeline.bus()?;
    while let Some(msg) = bus.pop() {
        if let gst::MessageView::Error(e) = msg.view() {
            return Some(format!("{} ({:?})", e.error(), e.debug()));
        }
    }
    None
}

/// Mean luma PSNR and SSIM of `decoded` against `raw`, each decoded frame against
/// the source frame of the same timestamp (x264 shifts every timestamp by a
/// constant, so timestamps count from the first frame).
pub(crate) fn compare(raw: &[gst::Sample], decoded: &[gst::Sample]) -> Result<(f64, f64), String> {
    let pts = |s: &gst::Sample| s.buffer().and_then(|b| b.pts()).map(|t| t.nseconds());
    let first = |samples: &[gst::Sample]| samples.first().and_then(pts).unwrap_or(0);
    let (raw_start, decoded_start) = (first(raw), first(decoded));
    let sources: std::collections::HashMap<u64, &gst::Sample> =
        raw.iter().filter_map(|s| Some((pts(s)? - raw_start, s))).collect();
    let (mut psnr, mut ssim, mut n) = (0.0, 0.0, 0usize);
    for picture in decoded {
        let at = pts(picture).and_then(|t| t.checked_sub(decoded_start));
        let Some(source) = at.and_then(|t| sources.get(&t)) else { continue };
        let (a, b) = (luma(source)?, luma(picture)?);
        let (pa, pb) = (a.plane(), b.plane());
        psnr += quality::psnr(&pa, &pb).map_err(|e| e.to_string())?;
        ssim += quality::ssim(&pa, &pb).map_err(|e| e.to_string())?;
        n += 1;
    }
    if n * 10 < raw.len() * 9 {
        return Err(format!("{n} of {} frames decoded and matched by timestamp", raw.len()));
    }
    Ok((psnr / n as f64, ssim / n as f64))
}

/// A mapped I420 frame.
struct Luma(gst_video::VideoFrame<gst_video::video_frame::Readable>);

impl Luma {
    fn plane(&self) -> Plane<'_> {
        let info = self.0.info();
        Plane {
            data: self.0.plane_data(0).unwrap_or(&[]),
            width: info.width() as usize,
            height: info.height() as usize,
            stride: info.stride()[0] as usize,
        }
    }
}

fn luma(sample: &gst::Sample) -> Result<Luma, String> {
    let caps = sample.caps().ok_or("a frame without caps")?;
    let info = gst_video::VideoInfo::from_caps(caps).map_err(|e| e.to_string())?;
    let buffer = sample.buffer_owned().ok_or("a sample without a buffer")?;
    gst_video::VideoFrame::from_buffer_readable(buffer, &info).map(Luma).map_err(|_| "cannot map a frame".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_samples_are_stamped_one_period_apart() {
        gst::init().unwrap();
        let samples = raw_samples((4, 2, 15), (0..3).map(|_| vec![0u8; 12]));
        let pts: Vec<u64> = samples.iter().filter_map(|s| s.buffer()?.pts()).map(|t| t.mseconds()).collect();
        assert_eq!(pts, [0, 66, 133]);
        let info = gst_video::VideoInfo::from_caps(samples[0].caps().unwrap()).unwrap();
        assert_eq!((info.width(), info.height(), info.fps()), (4, 2, gst::Fraction::new(15, 1)));
    }
}
