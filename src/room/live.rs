//! Live streams out (RTMP): what the API shows of one, and the pure rules of its
//! life: connecting, live, retried with backoff after a failure, failed for good
//! after too many attempts in a row that never went live.

use std::time::{Duration, Instant};

use serde::Serialize;

/// First wait before a retry; doubled after each failed attempt.
const FIRST_RETRY: Duration = Duration::from_secs(1);
/// Longest wait between attempts.
const MAX_RETRY: Duration = Duration::from_secs(30);
/// Attempts in a row that never went live before the stream is given up.
pub const MAX_ATTEMPTS: u32 = 6;

/// Where a stream is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StreamState {
    /// Connecting to the RTMP server (first attempt or a retry).
    Connecting,
    /// The server takes the stream.
    Live,
    /// The last attempt failed; another follows after a backoff.
    Retrying,
    /// Given up: the last [`MAX_ATTEMPTS`] attempts all failed.
    Failed,
}

/// A stream's state, its last error and when it tries again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Supervisor {
    state: StreamState,
    /// Failed attempts since the stream was last live.
    failures: u32,
    last_error: Option<String>,
    retry_at: Option<Instant>,
}

impl Default for Supervisor {
    fn default() -> Self {
        Self::new()
    }
}

impl Supervisor {
    /// A stream making its first attempt.
    pub fn new() -> Self {
        Self { state: StreamState::Connecting, failures: 0, last_error: None, retry_at: None }
    }

    /// Its state.
    pub fn state(&self) -> StreamState {
        self.state
    }

    /// Why the last attempt failed, if one did.
    pub fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }

    /// When the next attempt is due, while retrying.
    pub fn retry_at(&self) -> Option<Instant> {
        self.retry_at
    }

    /// The RTMP server took the stream: failures are forgiven.
    pub fn went_live(&mut self) {
        if self.state == StreamState::Connecting {
            self.state = StreamState::Live;
            self.failures = 0;
        }
    }

    /// The attempt failed at `now`: returns when to try again, or `None` when the
    /// stream is given up.
    pub fn failed(&mut self, now: Instant, error: String) -> Option<Instant> {
        if matches!(self.state, StreamState::Failed | StreamState::Retrying) {
            return self.retry_at;
        }
        self.failures += 1;
        self.last_error = Some(error);
        if self.failures >= MAX_ATTEMPTS {
            self.state = StreamState::Failed;
            self.retry_at = None;
            return None;
        }
        self.state = StreamState::Retrying;
        let retry_at = now + retry_delay(self.failures);
        self.retry_at = Some(retry_at);
        Some(retry_at)
    }

    /// Whether a retry is due at `now`; when it is, the stream is connecting again.
    pub fn retry_due(&mut self, now: Instant) -> bool {
        match self.retry_at {
            Some(at) if self.state == StreamState::Retrying && now >= at => {
                self.state = StreamState::Connecting;
                self.retry_at = None;
                true
            }
            _ => false,
        }
    }
}

/// The wait after the `failures`-th failure in a row: 1 s, 2 s, 4 s, ... at most 30 s.
pub fn retry_delay(failures: u32) -> Duration {
    FIRST_RETRY.saturating_mul(1 << failures.saturating_sub(1).min(16)).min(MAX_RETRY)
}

/// What `GET /rooms/{room}` and the events show of a stream.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct StreamInfo {
    /// Its id, as in `DELETE /rooms/{room}/streams/{id}`.
    pub id: String,
    /// The RTMP URL; in the room state its stream key is masked.
    pub url: String,
    /// Where it is in its life.
    pub state: StreamState,
    /// Why the last attempt failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Why a stream could not be started or stopped.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum StreamError {
    /// No such room.
    #[error("unknown room")]
    UnknownRoom,
    /// No such stream in that room.
    #[error("unknown stream")]
    UnknownStream,
    /// The URL is not `rtmp://` or `rtmps://` with a host.
    #[error("stream URL must be rtmp://host/app/key or rtmps://host/app/key")]
    BadUrl,
    /// The room already has its maximum of streams.
    #[error("the room already has {0} streams")]
    TooMany(usize),
    /// Its encode would take the server past its CPU budget.
    #[error(transparent)]
    OverBudget(super::budget::OverBudget),
}

/// Checks a stream URL: `rtmp://` or `rtmps://`, a host, and a path.
pub fn check_url(url: &str) -> Result<(), StreamError> {
    let rest = url.strip_prefix("rtmp://").or_else(|| url.strip_prefix("rtmps://")).ok_or(StreamError::BadUrl)?;
    let (host, path) = rest.split_once('/').ok_or(StreamError::BadUrl)?;
    let usable = |s: &str| !s.is_empty() && !s.chars().any(|c| c.is_whitespace() || c.is_control());
    if usable(host) && usable(path) { Ok(()) } else { Err(StreamError::BadUrl) }
}

/// The URL with its stream key (the last path segment) masked: the room state is seen
/// by every participant, the key lets anyone broadcast on the channel.
pub fn masked_url(url: &str) -> String {
    match url.rsplit_once('/') {
        Some((base, key)) if !key.is_empty() && base.matches('/').count() >= 3 => format!("{base}/****"),
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_retries_with_doubling_backoff_then_gives_up() {
        let now = Instant::now();
        let mut s = Supervisor::new();
        assert_eq!(s.state(), StreamState::Connecting);
        let mut waits = Vec::new();
        let mut t = now;
        while let Some(at) = s.failed(t, "connection refused".into()) {
            assert_eq!(s.state(), StreamState::Retrying);
            assert!(!s.retry_due(at - Duration::from_millis(1)), "not before its time");
            assert!(s.retry_due(at));
            assert_eq!(s.state(), StreamState::Connecting);
            waits.push((at - t).as_secs());
            t = at;
        }
        assert_eq!(waits, vec![1, 2, 4, 8, 16]);
        assert_eq!(s.state(), StreamState::Failed);
        assert_eq!(s.last_error(), Some("connection refused"));
        assert!(!s.retry_due(t + Duration::from_secs(3600)), "a failed stream stays failed");
    }

    #[test]
    fn going_live_forgives_earlier_failures() {
        let now = Instant::now();
        let mut s = Supervisor::new();
        for _ in 0..MAX_ATTEMPTS - 1 {
            let at = s.failed(now, "refused".into()).unwrap();
            assert!(s.retry_due(at));
        }
        s.went_live();
        assert_eq!(s.state(), StreamState::Live);
        // The server drops it later: a fresh series of retries, starting at 1 s.
        assert_eq!(s.failed(now, "connection reset".into()), Some(now + Duration::from_secs(1)));
    }

    #[test]
    fn a_second_failure_report_of_the_same_attempt_is_ignored() {
        let now = Instant::now();
        let mut s = Supervisor::new();
        let at = s.failed(now, "first".into());
        assert_eq!(s.failed(now + Duration::from_millis(5), "second".into()), at);
        assert_eq!(s.last_error(), Some("first"));
    }

    #[test]
    fn backoff_is_capped() {
        assert_eq!(retry_delay(1), Duration::from_secs(1));
        assert_eq!(retry_delay(5), Duration::from_secs(16));
        assert_eq!(retry_delay(6), Duration::from_secs(30));
        assert_eq!(retry_delay(u32::MAX), Duration::from_secs(30));
    }

    #[test]
    fn only_rtmp_urls_with_a_host_and_a_path_are_taken() {
        for ok in ["rtmp://a.example/live/key", "rtmps://live.example:443/app/k-1", "rtmp://127.0.0.1:1935/live/x"] {
            assert_eq!(check_url(ok), Ok(()), "{ok}");
        }
        for bad in ["http://a/live/key", "rtmp://", "rtmp:///live", "rtmp://host", "file:///etc/passwd", "rtmp://h /a"]
        {
            assert_eq!(check_url(bad), Err(StreamError::BadUrl), "{bad}");
        }
    }

    #[test]
    fn the_stream_key_is_masked() {
        assert_eq!(masked_url("rtmp://a.example/live/secret"), "rtmp://a.example/live/****");
        assert_eq!(masked_url("rtmp://a.example/live"), "rtmp://a.example/live", "no key to mask");
    }
}
