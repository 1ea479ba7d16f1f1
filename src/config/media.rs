//! The media part of the configuration: the composite, its quality tiers, the codecs'
//! pipeline templates, the audio mix.

use serde::{Deserialize, Serialize};

use super::ConfigError;
use crate::media::tier::Tier;

/// The mixed output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MediaConfig {
    /// Width of the `high` tier (the composite canvas) when `tiers` is unset.
    pub width: u32,
    /// Height of the `high` tier when `tiers` is unset.
    pub height: u32,
    /// Frame rate of the `high` tier (and of the compositor) when `tiers` is unset.
    pub fps: u32,
    /// Video bitrate of the `high` tier when `tiers` is unset.
    pub video_bitrate_bps: u32,
    /// The quality tiers, highest first. Unset: `high` from `width`, `height`, `fps`
    /// and `video_bitrate_bps`; `medium` half its size at 40 % of its bitrate; `low` a
    /// quarter of its size at half its frame rate and 10 % of its bitrate. From the
    /// defaults that is the contract's 1280x720/30/1.5 Mb/s, 640x360/30/600 kb/s,
    /// 320x180/15/150 kb/s.
    pub tiers: Option<Vec<TierConfig>>,
    /// Target bitrate of each Opus encode.
    pub audio_bitrate_bps: i32,
    /// Latency of the video jitter buffer: how long a late packet is waited for.
    pub video_jitter_ms: u32,
    /// Audio jitter buffer depth before playout, in milliseconds (20 ms packets).
    pub audio_jitter_ms: u32,
    /// Voice activity threshold (RMS dBFS of a 20 ms frame): a publisher below it for
    /// a second leaves the mix and shares the full-mix encode instead of having its
    /// own mix-minus encode. -55 lets quiet speech through (a normal voice is -20 to
    /// -35 dBFS) and gates the hiss of a silent microphone; -127 mixes everyone who
    /// sends anything but digital silence.
    pub voice_threshold_dbfs: f64,
    /// Extra time the compositor waits for inputs before emitting a frame without them.
    /// Must cover the video jitter buffer plus decoding, or inputs arrive too late.
    pub compositor_latency_ms: u32,
    /// Minimum spacing of forced keyframes (per encode) and of PLIs sent to one
    /// publisher. Must stay below 1000 so a PLI is answered within 1 s.
    pub keyframe_min_interval_ms: u64,
    /// GStreamer description of the VP8 encoder, replacing the embedded
    /// `pipelines/video-encode-vp8.pipeline`. Placeholders: `{bitrate_bps}`,
    /// `{bitrate_kbps}`, `{fps}`, `{keyframe_max_dist}`, `{threads}`.
    pub video_encoder: Option<String>,
    /// GStreamer description of the H.264 encoder (e.g. `openh264enc` or a hardware
    /// encoder), replacing `pipelines/video-encode-h264.pipeline`; it must output
    /// Constrained Baseline. Same placeholders as `video_encoder`.
    pub h264_encoder: Option<String>,
    /// GStreamer description of the H.264 decoder of a publisher's video, replacing
    /// `avdec_h264` (e.g. `openh264dec` or a hardware decoder).
    pub h264_decoder: Option<String>,
    /// Threads of each encode of a canvas of 640x360 or more (the `{threads}`
    /// placeholder; smaller canvases always use 1). 1 by default: a second libvpx
    /// thread makes a 720p VP8 encode cost about 40 % more CPU in all (BENCHMARKS.md
    /// 4c) for a frame a few milliseconds sooner, and a server runs many encodes at
    /// once, so one thread each gets the most rooms out of the machine. Raise it on a
    /// many-core machine hosting one large meeting where each millisecond counts.
    pub encoder_threads: u32,
    /// Whether each publisher's display name is drawn in its cell's bottom-left
    /// corner (contract: "Names").
    pub labels: bool,
    /// A TrueType/OpenType font for the labels, replacing the embedded DejaVu Sans
    /// Bold (e.g. a Noto CJK font for names the embedded one has no glyphs for).
    pub label_font: Option<std::path::PathBuf>,
    /// Largest picture (width x height) a publisher's keyframes may declare; a
    /// publisher sending larger ones is removed before a decoder allocates for them.
    pub max_input_pixels: u64,
    /// Highest rate (bits per second, RTP headers included) a publisher's video track
    /// may send over any second; a publisher sending more is removed (0: no limit).
    /// Its audio track may send at most 1 Mb/s (twice Opus's highest bitrate).
    pub max_input_bitrate_bps: u64,
}

/// One quality tier in the configuration file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierConfig {
    /// Name used in the API (`?quality=`), e.g. `high`.
    pub name: String,
    /// Canvas width.
    pub width: u32,
    /// Canvas height.
    pub height: u32,
    /// Frames per second.
    pub fps: u32,
    /// Target video bitrate.
    pub video_bitrate_bps: u32,
}

impl Default for MediaConfig {
    fn default() -> Self {
        Self {
            width: 1280,
            height: 720,
            fps: 30,
            video_bitrate_bps: 1_500_000,
            tiers: None,
            audio_bitrate_bps: 32_000,
            video_jitter_ms: 50,
            audio_jitter_ms: 60,
            voice_threshold_dbfs: -55.0,
            compositor_latency_ms: 100,
            keyframe_min_interval_ms: 500,
            video_encoder: None,
            h264_encoder: None,
            h264_decoder: None,
            encoder_threads: 1,
            labels: true,
            label_font: None,
            max_input_pixels: 1920 * 1088,
            max_input_bitrate_bps: 12_000_000,
        }
    }
}

impl MediaConfig {
    /// The quality tiers, highest first.
    pub fn tiers(&self) -> Vec<Tier> {
        match &self.tiers {
            Some(list) => list
                .iter()
                .map(|t| Tier {
                    name: t.name.clone(),
                    width: t.width,
                    height: t.height,
                    fps: t.fps,
                    bitrate_bps: t.video_bitrate_bps,
                })
                .collect(),
            None => {
                // Even sizes (4:2:0), never below the 16x16 minimum.
                let scaled = |v: u32, by: u32| ((v / by) & !1).max(16);
                let high = Tier {
                    name: "high".into(),
                    width: self.width,
                    height: self.height,
                    fps: self.fps,
                    bitrate_bps: self.video_bitrate_bps,
                };
                let medium = Tier {
                    name: "medium".into(),
                    width: scaled(self.width, 2),
                    height: scaled(self.height, 2),
                    fps: self.fps,
                    bitrate_bps: (self.video_bitrate_bps / 5 * 2).max(50_000),
                };
                let low = Tier {
                    name: "low".into(),
                    width: scaled(self.width, 4),
                    height: scaled(self.height, 4),
                    fps: self.fps.div_ceil(2),
                    bitrate_bps: (self.video_bitrate_bps / 10).max(50_000),
                };
                vec![high, medium, low]
            }
        }
    }

    /// The composite's canvas and frame rate: the largest tier's size, the highest
    /// frame rate (every tier is scaled down from it).
    pub fn canvas(&self) -> (u32, u32, u32) {
        let tiers = self.tiers();
        let largest = tiers.iter().max_by_key(|t| u64::from(t.width) * u64::from(t.height));
        let fps = tiers.iter().map(|t| t.fps).max().unwrap_or(self.fps);
        largest.map_or((self.width, self.height, fps), |t| (t.width, t.height, fps))
    }

    /// Checks ranges that serde cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |s: String| Err(ConfigError::Invalid(s));
        if !(6_000..=510_000).contains(&self.audio_bitrate_bps) {
            return invalid("media.audio_bitrate_bps must be within 6000 .. 510000 (Opus)".into());
        }
        if self.audio_jitter_ms < 20 || self.audio_jitter_ms > 1000 {
            return invalid("media.audio_jitter_ms must be within 20 .. 1000".into());
        }
        if !(-127.0..=0.0).contains(&self.voice_threshold_dbfs) {
            return invalid("media.voice_threshold_dbfs must be within -127 .. 0".into());
        }
        if !(1..=16).contains(&self.encoder_threads) {
            return invalid("media.encoder_threads must be within 1 .. 16".into());
        }
        if let Err(e) = crate::media::name_tags::font_for(self) {
            return invalid(format!("media.label_font: {e}"));
        }
        if self.keyframe_min_interval_ms >= 1000 {
            return invalid("media.keyframe_min_interval_ms must be below 1000 (PLI answered within 1 s)".into());
        }
        let tiers = self.tiers();
        if tiers.is_empty() {
            return invalid("media.tiers must list at least one tier".into());
        }
        let (canvas_w, canvas_h, _) = self.canvas();
        for (i, t) in tiers.iter().enumerate() {
            let what = if self.tiers.is_some() { format!("media.tiers[{i}] ({})", t.name) } else { "media".into() };
            let valid_name = !t.name.is_empty()
                && t.name != "auto"
                && t.name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
            if !valid_name {
                return invalid(format!("{what}: a tier name is lowercase letters, digits, '-' or '_', not \"auto\""));
            }
            if tiers[..i].iter().any(|o| o.name == t.name) {
                return invalid(format!("{what}: tier names must be unique"));
            }
            if !(16..=3840).contains(&t.width) || !(16..=2160).contains(&t.height) {
                return invalid(format!("{what}: width/height must be within 16x16 .. 3840x2160"));
            }
            if !t.width.is_multiple_of(2) || !t.height.is_multiple_of(2) {
                return invalid(format!("{what}: width and height must be even (4:2:0 video)"));
            }
            if !(1..=60).contains(&t.fps) {
                return invalid(format!("{what}: fps must be within 1 .. 60"));
            }
            if t.bitrate_bps < 50_000 {
                return invalid(format!("{what}: the video bitrate must be at least 50000"));
            }
            // Every tier is the composite scaled: the same shape (within the rounding
            // of small even sizes), or cells distort.
            let skew = (u64::from(t.width) * u64::from(canvas_h)).abs_diff(u64::from(t.height) * u64::from(canvas_w));
            if skew * 20 > u64::from(canvas_w) * u64::from(t.height) {
                return invalid(format!("{what}: every tier needs the canvas's aspect ratio ({canvas_w}x{canvas_h})"));
            }
            if i > 0 && (t.bitrate_bps > tiers[i - 1].bitrate_bps || t.width > tiers[i - 1].width) {
                return invalid(format!("{what}: tiers are listed highest first"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_tiers_are_the_contracts() {
        let m = MediaConfig::default();
        let tiers: Vec<(String, u32, u32, u32, u32)> =
            m.tiers().into_iter().map(|t| (t.name, t.width, t.height, t.fps, t.bitrate_bps)).collect();
        assert_eq!(
            tiers,
            [
                ("high".into(), 1280, 720, 30, 1_500_000),
                ("medium".into(), 640, 360, 30, 600_000),
                ("low".into(), 320, 180, 15, 150_000),
            ]
        );
        assert_eq!(m.canvas(), (1280, 720, 30));
        m.validate().unwrap();
    }

    #[test]
    fn v1_keys_configure_high() {
        let m = MediaConfig { width: 640, height: 360, fps: 25, video_bitrate_bps: 800_000, ..Default::default() };
        let tiers: Vec<(u32, u32, u32, u32)> =
            m.tiers().into_iter().map(|t| (t.width, t.height, t.fps, t.bitrate_bps)).collect();
        assert_eq!(tiers, [(640, 360, 25, 800_000), (320, 180, 25, 320_000), (160, 90, 13, 80_000)]);
        assert_eq!(m.canvas(), (640, 360, 25));
        m.validate().unwrap();
    }

    #[test]
    fn a_label_font_that_does_not_load_is_refused() {
        let bad = MediaConfig { label_font: Some("/nonexistent/font.ttf".into()), ..Default::default() };
        let error = bad.validate().unwrap_err().to_string();
        assert!(error.contains("media.label_font") && error.contains("/nonexistent/font.ttf"), "{error}");
        // Labels off: the font is never needed.
        MediaConfig { labels: false, ..bad }.validate().unwrap();
    }

    #[test]
    fn a_tier_list_is_checked() {
        let tier = |name: &str, width, height, bitrate| TierConfig {
            name: name.into(),
            width,
            height,
            fps: 30,
            video_bitrate_bps: bitrate,
        };
        let with = |tiers| MediaConfig { tiers: Some(tiers), ..Default::default() };
        with(vec![tier("hd", 1920, 1080, 3_000_000), tier("sd", 960, 540, 900_000)]).validate().unwrap();
        assert_eq!(with(vec![tier("hd", 1920, 1080, 3_000_000)]).canvas(), (1920, 1080, 30));
        for bad in [
            vec![],
            vec![tier("auto", 640, 360, 600_000)],
            vec![tier("Big", 640, 360, 600_000)],
            vec![tier("a", 640, 360, 600_000), tier("a", 320, 180, 150_000)],
            vec![tier("a", 640, 480, 600_000), tier("b", 320, 180, 150_000)],
            vec![tier("a", 320, 180, 150_000), tier("b", 640, 360, 600_000)],
            vec![tier("a", 641, 360, 600_000)],
        ] {
            assert!(with(bad.clone()).validate().is_err(), "{bad:?}");
        }
    }
}
