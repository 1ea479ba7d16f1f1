//! Video codecs the server decodes and encodes, and what an offer's format line says
//! about them. Pure: no GStreamer, no WebRTC.
//!
//! H.264 is accepted as the contract puts it: `packetization-mode=1` (FU-A/STAP-A, what
//! every browser sends) in the Baseline family, that is `profile-level-id` `42e0xx`
//! (Constrained Baseline, Chrome/Firefox/Safari), `42c0xx` or `4200xx` (Baseline,
//! Chrome); what the server sends is Constrained Baseline, which every Baseline decoder
//! plays. The level caps the picture size a receiver is sent.

use std::fmt;

use serde::Serialize;

/// A video codec the server speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum VideoCodec {
    /// VP8 (RFC 7741).
    #[serde(rename = "VP8")]
    Vp8,
    /// H.264 Constrained Baseline, packetization-mode 1 (RFC 6184).
    #[serde(rename = "H264")]
    H264,
}

impl VideoCodec {
    /// Every codec, in the server's own order of preference.
    pub const ALL: [VideoCodec; 2] = [VideoCodec::Vp8, VideoCodec::H264];

    /// The name used in the API and in SDP (`VP8`, `H264`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Vp8 => "VP8",
            Self::H264 => "H264",
        }
    }

    /// The codec of an `a=rtpmap` encoding name (case-insensitive), if the server
    /// speaks it.
    pub fn from_encoding_name(name: &str) -> Option<Self> {
        match name.to_ascii_uppercase().as_str() {
            "VP8" => Some(Self::Vp8),
            "H264" => Some(Self::H264),
            _ => None,
        }
    }
}

impl fmt::Display for VideoCodec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One video format of an offer that the server accepts: the codec with the offer's
/// payload type and format parameters (answered as they are).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoFormat {
    /// The codec.
    pub codec: VideoCodec,
    /// The offer's payload type for it.
    pub payload_type: u8,
    /// The offer's `a=fmtp` parameters (empty for VP8).
    pub fmtp: String,
}

impl VideoFormat {
    /// Whether a format with this codec and these parameters is one the server takes;
    /// `None` when not.
    pub fn accept(codec: VideoCodec, payload_type: u8, fmtp: &str) -> Option<Self> {
        match codec {
            VideoCodec::Vp8 => Some(Self { codec, payload_type, fmtp: String::new() }),
            VideoCodec::H264 => {
                let params = H264Params::parse(fmtp)?;
                (params.packetization_mode == 1 && params.is_baseline_family()).then(|| Self {
                    codec,
                    payload_type,
                    fmtp: fmtp.to_owned(),
                })
            }
        }
    }

    /// The largest frame (in 16x16 macroblocks) and macroblock rate the receiver of
    /// this format decodes: its H.264 level; unlimited for VP8.
    pub fn decoder_limits(&self) -> Option<(u32, u32)> {
        match self.codec {
            VideoCodec::Vp8 => None,
            VideoCodec::H264 => H264Params::parse(&self.fmtp).and_then(|p| level_limits(p.level_idc, p.profile_iop)),
        }
    }

    /// Whether a `width x height` picture at `fps` fits what this receiver decodes.
    pub fn fits(&self, width: u32, height: u32, fps: u32) -> bool {
        match self.decoder_limits() {
            None => true,
            Some((max_fs, max_mbps)) => {
                let frame = width.div_ceil(16) * height.div_ceil(16);
                frame <= max_fs && frame * fps <= max_mbps
            }
        }
    }
}

/// The H.264 parameters of an `a=fmtp` line that matter here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct H264Params {
    profile_idc: u8,
    profile_iop: u8,
    level_idc: u8,
    packetization_mode: u8,
}

impl H264Params {
    /// Parses `key=value;...`. A line without `packetization-mode` is mode 0 (RFC
    /// 6184). One without `profile-level-id` is refused: the WebRTC stack cannot match
    /// it against the server's formats.
    fn parse(fmtp: &str) -> Option<Self> {
        let mut params = Self { profile_idc: 0, profile_iop: 0, level_idc: 0, packetization_mode: 0 };
        for pair in fmtp.split(';') {
            let Some((key, value)) = pair.split_once('=') else { continue };
            match key.trim().to_ascii_lowercase().as_str() {
                "profile-level-id" => {
                    let value = value.trim();
                    if value.len() != 6 || !value.is_ascii() {
                        return None;
                    }
                    let byte = |i: usize| u8::from_str_radix(&value[i..i + 2], 16).ok();
                    params.profile_idc = byte(0)?;
                    params.profile_iop = byte(2)?;
                    params.level_idc = byte(4)?;
                }
                "packetization-mode" => params.packetization_mode = value.trim().parse().ok()?,
                _ => {}
            }
        }
        (params.profile_idc != 0).then_some(params)
    }

    /// Baseline (`42`) with the constraint flags of Constrained Baseline or none
    /// (`e0`, `c0`, `00`): the variants the server registers.
    fn is_baseline_family(&self) -> bool {
        self.profile_idc == 0x42 && matches!(self.profile_iop, 0xe0 | 0xc0 | 0x00)
    }
}

/// Max frame size (macroblocks) and max macroblocks per second of an H.264 level
/// (ITU-T H.264 Table A-1). `level_idc` 11 with constraint_set3 is level 1b.
fn level_limits(level_idc: u8, profile_iop: u8) -> Option<(u32, u32)> {
    let level_1b = level_idc == 11 && profile_iop & 0x10 != 0;
    Some(match level_idc {
        _ if level_1b => (99, 1_485),
        9 | 10 => (99, 1_485),
        11 => (396, 3_000),
        12 => (396, 6_000),
        13 | 20 => (396, 11_880),
        21 => (792, 19_800),
        22 => (1_620, 20_250),
        30 => (1_620, 40_500),
        31 => (3_600, 108_000),
        32 => (5_120, 216_000),
        40 | 41 => (8_192, 245_760),
        42 => (8_704, 522_240),
        50 => (22_080, 589_824),
        51 => (36_864, 983_040),
        52 => (36_864, 2_073_600),
        // Levels above 5.2 decode anything the server sends.
        l if l > 52 => (u32::MAX / 64, u32::MAX / 64),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn browser_h264_lines_are_accepted_in_packetization_mode_1_only() {
        let chrome = "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f";
        let chrome_baseline = "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f";
        let firefox = "profile-level-id=42e01f;level-asymmetry-allowed=1;packetization-mode=1";
        for fmtp in [chrome, chrome_baseline, firefox] {
            assert!(VideoFormat::accept(VideoCodec::H264, 102, fmtp).is_some(), "{fmtp}");
        }
        let mode0 = "level-asymmetry-allowed=1;packetization-mode=0;profile-level-id=42e01f";
        let main = "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=4d001f";
        let high = "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=640c1f";
        for fmtp in [mode0, main, high, "", "packetization-mode=1", "profile-level-id=zz", "packetization-mode=x"] {
            assert!(VideoFormat::accept(VideoCodec::H264, 102, fmtp).is_none(), "{fmtp}");
        }
        assert!(VideoFormat::accept(VideoCodec::Vp8, 96, "").is_some());
    }

    #[test]
    fn the_level_caps_the_picture_a_receiver_gets() {
        let level = |plid: &str| {
            VideoFormat::accept(VideoCodec::H264, 102, &format!("packetization-mode=1;profile-level-id={plid}"))
                .unwrap()
        };
        let l31 = level("42e01f");
        assert!(l31.fits(1280, 720, 30) && l31.fits(320, 180, 15));
        let l30 = level("42e01e");
        assert!(!l30.fits(1280, 720, 30) && l30.fits(640, 360, 30));
        let l12 = level("42e00c");
        assert!(!l12.fits(640, 360, 30) && l12.fits(320, 180, 15));
        let vp8 = VideoFormat::accept(VideoCodec::Vp8, 96, "").unwrap();
        assert!(vp8.fits(3840, 2160, 60));
    }

    #[test]
    fn codec_names_round_trip() {
        for codec in VideoCodec::ALL {
            assert_eq!(VideoCodec::from_encoding_name(&codec.name().to_lowercase()), Some(codec));
        }
        assert_eq!(VideoCodec::from_encoding_name("VP9"), None);
    }
}
