//! One configuration tree. `Default` is the only source of defaults; a TOML file
//! (`--config` / `MCU_CONFIG`) overrides them, the contract's `MCU_*` environment
//! variables override the file, and command-line flags override everything.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

mod cluster;
mod media;

pub use cluster::ClusterConfig;
pub use media::{MediaConfig, TierConfig};

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
    /// Access control: tokens and browser origins.
    pub auth: AuthConfig,
    /// TURN servers handed to clients.
    pub turn: TurnConfig,
    /// Many nodes over Redis (off by default).
    pub cluster: ClusterConfig,
}

/// Every environment variable the server reads (the contract's and this server's
/// own); the deployment files must use exactly these.
pub const ENV_VARS: &[&str] = &[
    "MCU_LISTEN",
    "MCU_CONFIG",
    "MCU_UDP_PORT",
    "MCU_PUBLIC_IP",
    "MCU_RECORDINGS_DIR",
    "MCU_RECORD_ALL",
    "MCU_AUTH_SECRET",
    "MCU_TURN_URLS",
    "MCU_TURN_SECRET",
    "MCU_TURN_TTL",
    "MCU_CORS_ORIGINS",
    "MCU_MAX_ROOMS",
    "MCU_MAX_PARTICIPANTS",
    "MCU_JOIN_RATE_PER_MIN",
    "MCU_MAX_CPU_CORES",
    "MCU_REDIS_URL",
    "MCU_NODE_URL",
    "MCU_NODE_ID",
];

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
    /// WHEP viewers per room (besides its participants); the next gets 503.
    pub max_viewers_per_room: usize,
    /// Largest SDP offer accepted, in bytes (the contract caps it at 64 KiB).
    pub max_sdp_bytes: u64,
    /// How long a join may take to negotiate before it fails, in milliseconds.
    pub join_timeout_ms: u64,
    /// Joins one client IP may make per minute (`MCU_JOIN_RATE_PER_MIN`); 0 disables
    /// the limit.
    pub join_rate_per_min: u32,
    /// Serve the web client from this directory instead of the copy embedded in the
    /// binary: edit the page and reload, without rebuilding.
    pub web_dir: Option<PathBuf>,
    /// CPU cores the server's media may use (`MCU_MAX_CPU_CORES`): a join whose
    /// estimated cost would exceed it gets 503. Unset: the cores the machine has;
    /// 0: no limit.
    pub max_cpu_cores: Option<f64>,
    /// Time a client has to send a request's headers, in milliseconds; a slower
    /// one (a slow-loris client holding the connection) is disconnected.
    pub header_timeout_ms: u64,
    /// HTTP connections open at once; one more gets `503` and is closed.
    pub max_connections: usize,
    /// HTTP connections open at once from one IP address (event streams count).
    pub max_connections_per_ip: usize,
}

impl ServerConfig {
    /// The CPU budget in cores, `None` for no limit.
    pub fn cpu_budget(&self) -> Option<f64> {
        match self.max_cpu_cores {
            Some(0.0) => None,
            Some(cores) => Some(cores),
            None => Some(std::thread::available_parallelism().map_or(1.0, |n| n.get() as f64)),
        }
    }
}

/// WebRTC transport.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RtcConfig {
    /// The one UDP port all media uses (`MCU_UDP_PORT`); 0 picks a free one.
    pub udp_port: u16,
    /// IP advertised in ICE candidates instead of the interfaces' (`MCU_PUBLIC_IP`).
    pub public_ip: Option<IpAddr>,
    /// Network interfaces in order of preference: the one ICE candidate is gathered
    /// on the first one's address; empty: the default route's interface (see
    /// `rtc::candidate_address`).
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
    /// Record every room from its first join until it empties (`MCU_RECORD_ALL`).
    pub auto: bool,
    /// Live streams out (RTMP) a room may run at once; the next gets 409.
    pub max_streams_per_room: usize,
}

/// Access control.
#[derive(Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// HS256 secret of join and management tokens (`MCU_AUTH_SECRET`); unset means
    /// the server is open to anyone who can reach it.
    pub secret: Option<String>,
    /// Origins allowed to call the API from other sites' pages (`MCU_CORS_ORIGINS`,
    /// comma-separated; `*` for any). Empty: same-origin only.
    pub cors_origins: Vec<String>,
}

/// TURN (RFC 8656) servers for clients behind restrictive NATs.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TurnConfig {
    /// `turn:`, `turns:` and `stun:` URIs handed to clients (`MCU_TURN_URLS`).
    pub urls: Vec<String>,
    /// Secret shared with the TURN server's `static-auth-secret` (`MCU_TURN_SECRET`).
    pub secret: Option<String>,
    /// Lifetime of the credentials handed out, in seconds (`MCU_TURN_TTL`).
    pub ttl_s: u64,
}

/// Secrets never appear in logs or debug output.
fn redacted(secret: &Option<String>) -> &'static str {
    if secret.is_some() { "Some(<redacted>)" } else { "None" }
}

impl std::fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthConfig")
            .field("secret", &redacted(&self.secret))
            .field("cors_origins", &self.cors_origins)
            .finish()
    }
}

impl std::fmt::Debug for TurnConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TurnConfig")
            .field("urls", &self.urls)
            .field("secret", &redacted(&self.secret))
            .field("ttl_s", &self.ttl_s)
            .finish()
    }
}

impl Default for TurnConfig {
    fn default() -> Self {
        Self { urls: Vec::new(), secret: None, ttl_s: 86_400 }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            max_rooms: 64,
            max_participants_per_room: 16,
            max_viewers_per_room: 200,
            header_timeout_ms: 10_000,
            max_connections: 1000,
            max_connections_per_ip: 100,
            max_sdp_bytes: 64 * 1024,
            join_timeout_ms: 10_000,
            join_rate_per_min: 30,
            web_dir: None,
            max_cpu_cores: None,
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
        Self { dir: PathBuf::from("./recordings"), auto: false, max_streams_per_room: 3 }
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
            auth: AuthConfig::default(),
            turn: TurnConfig::default(),
            cluster: ClusterConfig::default(),
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
    /// An empty variable counts as unset (compose files pass `VAR=` for optional
    /// settings).
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        let get = |name: &str| get(name).filter(|v| !v.trim().is_empty());
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
        if let Some(v) = get("MCU_RECORD_ALL") {
            self.recording.auto = parse_bool("MCU_RECORD_ALL", v)?;
        }
        if let Some(v) = get("MCU_AUTH_SECRET") {
            self.auth.secret = non_empty(v);
        }
        if let Some(v) = get("MCU_CORS_ORIGINS") {
            self.auth.cors_origins = comma_list(&v);
        }
        if let Some(v) = get("MCU_TURN_URLS") {
            self.turn.urls = comma_list(&v);
        }
        if let Some(v) = get("MCU_TURN_SECRET") {
            self.turn.secret = non_empty(v);
        }
        if let Some(v) = get("MCU_TURN_TTL") {
            self.turn.ttl_s = parse("MCU_TURN_TTL", v)?;
        }
        if let Some(v) = get("MCU_MAX_ROOMS") {
            self.server.max_rooms = parse("MCU_MAX_ROOMS", v)?;
        }
        if let Some(v) = get("MCU_MAX_PARTICIPANTS") {
            self.server.max_participants_per_room = parse("MCU_MAX_PARTICIPANTS", v)?;
        }
        if let Some(v) = get("MCU_JOIN_RATE_PER_MIN") {
            self.server.join_rate_per_min = parse("MCU_JOIN_RATE_PER_MIN", v)?;
        }
        if let Some(v) = get("MCU_MAX_CPU_CORES") {
            self.server.max_cpu_cores = Some(parse("MCU_MAX_CPU_CORES", v)?);
        }
        let optional = |v: String| if v.trim().is_empty() { None } else { Some(v) };
        if let Some(v) = get("MCU_REDIS_URL") {
            self.cluster.redis_url = optional(v);
        }
        if let Some(v) = get("MCU_NODE_URL") {
            self.cluster.node_url = optional(v);
        }
        if let Some(v) = get("MCU_NODE_ID") {
            self.cluster.node_id = optional(v);
        }
        Ok(())
    }

    /// The configuration as TOML with secrets replaced, for `mcu config`.
    pub fn to_redacted_toml(&self) -> String {
        let mut shown = self.clone();
        let hide = |s: &mut Option<String>| {
            if s.is_some() {
                *s = Some("<redacted>".into());
            }
        };
        hide(&mut shown.auth.secret);
        hide(&mut shown.turn.secret);
        hide(&mut shown.cluster.redis_url);
        toml::to_string_pretty(&shown).unwrap_or_else(|e| format!("# cannot render config: {e}\n"))
    }

    /// Checks ranges that serde cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.media.validate()?;
        let invalid = |s: &str| Err(ConfigError::Invalid(s.to_owned()));
        if self.cluster.enabled() && self.cluster.node_url.as_deref().is_none_or(|u| !u.starts_with("http")) {
            return invalid(
                "cluster.redis_url (MCU_REDIS_URL) needs cluster.node_url (MCU_NODE_URL), this node's http(s) base URL",
            );
        }
        let s = &self.server;
        if s.max_rooms == 0 || s.max_participants_per_room == 0 {
            return invalid("server.max_rooms and server.max_participants_per_room must be positive");
        }
        if s.max_cpu_cores.is_some_and(|c| !c.is_finite() || c < 0.0) {
            return invalid("server.max_cpu_cores must be 0 (no limit) or a positive number of cores");
        }
        if s.max_sdp_bytes == 0 || s.max_sdp_bytes > 64 * 1024 {
            return invalid("server.max_sdp_bytes must be within 1 .. 65536");
        }
        for url in &self.turn.urls {
            if !["turn:", "turns:", "stun:"].iter().any(|scheme| url.starts_with(scheme)) {
                return Err(ConfigError::Invalid(format!("turn.urls: {url:?} is not a turn:, turns: or stun: URI")));
            }
        }
        if self.turn.urls.iter().any(|u| !u.starts_with("stun:")) && self.turn.secret.is_none() {
            return invalid("turn.urls has TURN servers but turn.secret (MCU_TURN_SECRET) is not set");
        }
        if self.turn.ttl_s == 0 {
            return invalid("turn.ttl_s must be positive");
        }
        let r = &self.rtc;
        if r.ice_failed_timeout_ms < r.ice_disconnected_timeout_ms {
            return invalid("rtc.ice_failed_timeout_ms must not be below rtc.ice_disconnected_timeout_ms");
        }
        Ok(())
    }
}

fn parse_bool(name: &'static str, value: String) -> Result<bool, ConfigError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" | "" => Ok(false),
        _ => Err(ConfigError::Env { name, value, reason: "expected true or false".into() }),
    }
}

fn non_empty(value: String) -> Option<String> {
    if value.trim().is_empty() { None } else { Some(value) }
}

fn comma_list(value: &str) -> Vec<String> {
    value.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect()
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

    #[test]
    fn operation_variables_are_read() {
        let env: HashMap<&str, &str> = [
            ("MCU_RECORD_ALL", "true"),
            ("MCU_AUTH_SECRET", "s3cret"),
            ("MCU_CORS_ORIGINS", "https://a.example, https://b.example"),
            ("MCU_TURN_URLS", "turn:203.0.113.7:3478?transport=udp,stun:203.0.113.7:3478"),
            ("MCU_TURN_SECRET", "turnsecret"),
            ("MCU_TURN_TTL", "600"),
            ("MCU_MAX_ROOMS", "3"),
            ("MCU_MAX_PARTICIPANTS", "5"),
            ("MCU_JOIN_RATE_PER_MIN", "7"),
        ]
        .into();
        let mut c = Config::default();
        c.apply_env(|k| env.get(k).map(|v| v.to_string())).unwrap();
        c.validate().unwrap();
        assert!(c.recording.auto);
        assert_eq!(c.auth.secret.as_deref(), Some("s3cret"));
        assert_eq!(c.auth.cors_origins, ["https://a.example", "https://b.example"]);
        assert_eq!(c.turn.urls.len(), 2);
        assert_eq!((c.turn.ttl_s, c.server.max_rooms, c.server.max_participants_per_room), (600, 3, 5));
        assert_eq!(c.server.join_rate_per_min, 7);
        let shown = c.to_redacted_toml();
        assert!(!shown.contains("s3cret") && !shown.contains("turnsecret"), "{shown}");
        assert!(!format!("{c:?}").contains("s3cret"));
        // An empty variable is unset: it changes nothing.
        c.apply_env(|k| (k == "MCU_AUTH_SECRET" || k == "MCU_TURN_TTL").then(String::new)).unwrap();
        assert_eq!((c.auth.secret.as_deref(), c.turn.ttl_s), (Some("s3cret"), 600));
        // TURN without its secret cannot hand out credentials.
        c.turn.secret = None;
        assert!(c.validate().is_err());
    }
}
