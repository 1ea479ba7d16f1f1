//! One configuration tree. `Default` is the only source of defaults; a TOML file
//! (`--config` / `MCU_CONFIG`) overrides them, the contract's `MCU_*` environment
//! variables override the file, and command-line flags override everything.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Everything the server can be told.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// HTTP server and limits.
    pub server: ServerConfig,
    /// The shared composite and the audio mix.
    pub media: MediaConfig,
    /// WebRTC transport: UDP port, advertised address, ICE timeouts.
    pub rtc: RtcConfig,
    /// Where recordings go.
    pub recording: RecordingConfig,
}

/// HTTP listener and per-server limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// HTTP listen address (`MCU_LISTEN`, `--listen`).
    pub listen: SocketAddr,
    /// Rooms this server hosts at once; the next new room gets 503.
    pub max_rooms: usize,
    /// Participants per room; the next join gets 503.
    pub max_participants_per_room: usize,
    /// Largest SDP offer accepted, in bytes (the contract caps it at 64 KiB).
    pub max_sdp_bytes: u64,
    /// How long a join may take to negotiate before it fails, in milliseconds.
    pub join_timeout_ms: u64,
}

/// The mixed output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MediaConfig {
    /// Composite canvas width in pixels.
    pub width: u32,
    /// Composite canvas height in pixels.
    pub height: u32,
    /// Composite frame rate.
    pub fps: u32,
    /// Target bitrate of the shared VP8 encode.
    pub video_bitrate_bps: u32,
    /// Target bitrate of each Opus encode.
    pub audio_bitrate_bps: i32,
    /// Latency of the video jitter buffer: how long a late packet is waited for.
    pub video_jitter_ms: u32,
    /// Audio jitter buffer depth before playout, in milliseconds (20 ms packets).
    pub audio_jitter_ms: u32,
    /// Extra time the compositor waits for inputs before emitting a frame without them.
    /// Must cover the video jitter buffer plus decoding, or inputs arrive too late.
    pub compositor_latency_ms: u32,
    /// Minimum spacing of forced keyframes (shared encode) and of PLIs sent to one
    /// publisher. Must stay below 1000 so a PLI is answered within 1 s.
    pub keyframe_min_interval_ms: u64,
    /// GStreamer description of the video encoder (between the compositor and the
    /// payloader), replacing the embedded `pipelines/video-encode-vp8.pipeline`.
    /// Placeholders: `{bitrate_bps}`, `{fps}`.
    pub video_encoder: Option<String>,
}

/// WebRTC transport.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RtcConfig {
    /// The one UDP port all media uses (`MCU_UDP_PORT`); 0 picks a free one.
    pub udp_port: u16,
    /// IP advertised in ICE candidates instead of the interfaces' (`MCU_PUBLIC_IP`).
    pub public_ip: Option<IpAddr>,
    /// Network interfaces to gather candidates on; empty means all.
    pub interfaces: Vec<String>,
    /// Offer loopback candidates (useful for local testing only).
    pub include_loopback: bool,
    /// ICE: no traffic for this long marks a peer disconnected.
    pub ice_disconnected_timeout_ms: u64,
    /// ICE: no traffic for this long fails the peer and removes the participant.
    pub ice_failed_timeout_ms: u64,
    /// ICE keepalive interval.
    pub ice_keepalive_ms: u64,
}

/// Recordings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RecordingConfig {
    /// Directory recordings are written to (`MCU_RECORDINGS_DIR`).
    pub dir: PathBuf,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            max_rooms: 64,
            max_participants_per_room: 16,
            max_sdp_bytes: 64 * 1024,
            join_timeout_ms: 10_000,
        }
    }
}

impl Default for MediaConfig {
    fn default() -> Self {
        Self {
            width: 1280,
            height: 720,
            fps: 30,
            video_bitrate_bps: 1_500_000,
            audio_bitrate_bps: 32_000,
            video_jitter_ms: 50,
            audio_jitter_ms: 60,
            compositor_latency_ms: 100,
            keyframe_min_interval_ms: 500,
            video_encoder: None,
        }
    }
}

impl Default for RtcConfig {
    fn default() -> Self {
        Self {
            udp_port: 0,
            public_ip: None,
            interfaces: Vec::new(),
            include_loopback: false,
            ice_disconnected_timeout_ms: 5_000,
            ice_failed_timeout_ms: 10_000,
            ice_keepalive_ms: 2_000,
        }
    }
}

impl Default for RecordingConfig {
    fn default() -> Self {
        Self { dir: PathBuf::from("./recordings") }
    }
}

#[allow(clippy::derivable_impls)]
impl Default for Config {
    fn default() -> Self {
        Self {
            server: ServerConfig::default(),
            media: MediaConfig::default(),
            rtc: RtcConfig::default(),
            recording: RecordingConfig::default(),
        }
    }
}

/// Why a configuration could not be used.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {reason}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        reason: String,
    },
    /// The file is not valid TOML for this tree.
    #[error("invalid config file {path}: {reason}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        reason: String,
    },
    /// An environment variable holds a value of the wrong type.
    #[error("invalid value {value:?} for {name}: {reason}")]
    Env {
        /// The variable.
        name: &'static str,
        /// Its value.
        value: String,
        /// Why it was rejected.
        reason: String,
    },
    /// A value is out of range.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl Config {
    /// Parses a TOML document over the defaults.
    pub fn from_toml(text: &str, path: &Path) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse { path: path.to_owned(), reason: e.to_string() })
    }

    /// Reads a TOML file over the defaults.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::Read { path: path.to_owned(), reason: e.to_string() })?;
        Self::from_toml(&text, path)
    }

    /// Applies the contract's environment variables, read through `get` (so tests can
    /// pass a map instead of the process environment).
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        fn parse<T: std::str::FromStr>(name: &'static str, value: String) -> Result<T, ConfigError>
        where
            T::Err: std::fmt::Display,
        {
            value.trim().parse().map_err(|e: T::Err| ConfigError::Env { name, value, reason: e.to_string() })
        }
        if let Some(v) = get("MCU_LISTEN") {
            self.server.listen = parse("MCU_LISTEN", v)?;
        }
        if let Some(v) = get("MCU_UDP_PORT") {
            self.rtc.udp_port = parse("MCU_UDP_PORT", v)?;
        }
        if let Some(v) = get("MCU_PUBLIC_IP") {
            self.rtc.public_ip = if v.trim().is_empty() { None } else { Some(parse("MCU_PUBLIC_IP", v)?) };
        }
        if let Some(v) = get("MCU_RECORDINGS_DIR") {
            self.recording.dir = PathBuf::from(v);
        }
        Ok(())
    }

    /// Checks ranges that serde cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let m = &self.media;
        let invalid = |s: &str| Err(ConfigError::Invalid(s.to_owned()));
        if !(16..=3840).contains(&m.width) || !(16..=2160).contains(&m.height) {
            return invalid("media.width/height must be within 16x16 .. 3840x2160");
        }
        if !m.width.is_multiple_of(2) || !m.height.is_multiple_of(2) {
            return invalid("media.width and media.height must be even (4:2:0 video)");
        }
        if !(1..=60).contains(&m.fps) {
            return invalid("media.fps must be within 1 .. 60");
        }
        if !(6_000..=510_000).contains(&m.audio_bitrate_bps) {
            return invalid("media.audio_bitrate_bps must be within 6000 .. 510000 (Opus)");
        }
        if m.video_bitrate_bps < 50_000 {
            return invalid("media.video_bitrate_bps must be at least 50000");
        }
        if m.audio_jitter_ms < 20 || m.audio_jitter_ms > 1000 {
            return invalid("media.audio_jitter_ms must be within 20 .. 1000");
        }
        if m.keyframe_min_interval_ms >= 1000 {
            return invalid("media.keyframe_min_interval_ms must be below 1000 (PLI answered within 1 s)");
        }
        let s = &self.server;
        if s.max_rooms == 0 || s.max_participants_per_room == 0 {
            return invalid("server.max_rooms and server.max_participants_per_room must be positive");
        }
        if s.max_sdp_bytes == 0 || s.max_sdp_bytes > 64 * 1024 {
            return invalid("server.max_sdp_bytes must be within 1 .. 65536");
        }
        let r = &self.rtc;
        if r.ice_failed_timeout_ms < r.ice_disconnected_timeout_ms {
            return invalid("rtc.ice_failed_timeout_ms must not be below rtc.ice_disconnected_timeout_ms");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn defaults_match_the_contract_and_validate() {
        let c = Config::default();
        assert_eq!(c.server.listen.to_string(), "0.0.0.0:8080");
        assert_eq!((c.media.width, c.media.height, c.media.fps), (1280, 720, 30));
        assert_eq!(c.recording.dir, PathBuf::from("./recordings"));
        c.validate().unwrap();
    }

    #[test]
    fn file_overrides_defaults_and_env_overrides_file() {
        let mut c = Config::from_toml(
            "[server]\nlisten = \"127.0.0.1:9000\"\n[media]\nwidth = 640\nheight = 360\n",
            Path::new("x.toml"),
        )
        .unwrap();
        assert_eq!(c.media.width, 640);
        assert_eq!(c.media.fps, 30, "unset keys keep their defaults");
        let env: HashMap<&str, &str> =
            [("MCU_LISTEN", "127.0.0.1:9100"), ("MCU_UDP_PORT", "40000"), ("MCU_PUBLIC_IP", "203.0.113.7")].into();
        c.apply_env(|k| env.get(k).map(|v| v.to_string())).unwrap();
        assert_eq!(c.server.listen.to_string(), "127.0.0.1:9100");
        assert_eq!(c.rtc.udp_port, 40000);
        assert_eq!(c.rtc.public_ip, Some("203.0.113.7".parse().unwrap()));
    }

    #[test]
    fn unknown_keys_and_bad_values_are_rejected() {
        assert!(matches!(Config::from_toml("[media]\nwidht = 3\n", Path::new("x")), Err(ConfigError::Parse { .. })));
        let mut c = Config::default();
        let err = c.apply_env(|k| (k == "MCU_UDP_PORT").then(|| "seventy".to_owned())).unwrap_err();
        assert!(matches!(err, ConfigError::Env { name: "MCU_UDP_PORT", .. }));
        let mut c = Config::default();
        c.media.width = 1281;
        assert!(c.validate().is_err());
        let mut c = Config::default();
        c.media.keyframe_min_interval_ms = 1500;
        assert!(c.validate().is_err());
    }
}
