//! When to force a keyframe: a small state machine with `now` passed in.
//!
//! Receivers send PLI/FIR when they join or lose packets; with many receivers the
//! requests arrive in bursts. Each keyframe of a shared encode costs every receiver
//! bandwidth, so requests are coalesced: one keyframe at once, then at most one per
//! `min_interval`, and a request inside that window is served when it ends (so every
//! request is answered within `min_interval`, which the contract caps at 1 s).
//! The same policy throttles the PLIs the server sends to a publisher.

use std::time::{Duration, Instant};

/// Coalesces keyframe requests.
#[derive(Debug, Clone)]
pub struct KeyframePolicy {
    min_interval: Duration,
    last_forced: Option<Instant>,
    pending: bool,
}

impl KeyframePolicy {
    /// A policy forcing at most one keyframe per `min_interval`.
    pub fn new(min_interval: Duration) -> Self {
        Self { min_interval, last_forced: None, pending: false }
    }

    /// Records a request at `now`; returns true when a keyframe should be forced now.
    pub fn request(&mut self, now: Instant) -> bool {
        match self.last_forced {
            Some(last) if now.duration_since(last) < self.min_interval => {
                self.pending = true;
                false
            }
            _ => {
                self.last_forced = Some(now);
                self.pending = false;
                true
            }
        }
    }

    /// Records a keyframe forced at `now` whatever the window (a new consumer that
    /// cannot start without one); it also serves any deferred request.
    pub fn force(&mut self, now: Instant) {
        self.last_forced = Some(now);
        self.pending = false;
    }

    /// When a deferred request is due, if any (the owner sleeps until then).
    pub fn deadline(&self) -> Option<Instant> {
        match (self.pending, self.last_forced) {
            (true, Some(last)) => Some(last + self.min_interval),
            _ => None,
        }
    }

    /// Called at or after [`deadline`](Self::deadline): true when the deferred
    /// request should be served now.
    pub fn poll(&mut self, now: Instant) -> bool {
        match self.deadline() {
            Some(due) if now >= due => {
                self.pending = false;
                self.last_forced = Some(now);
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn first_request_is_served_at_once() {
        let t0 = Instant::now();
        let mut p = KeyframePolicy::new(500 * MS);
        assert!(p.request(t0));
        assert_eq!(p.deadline(), None);
    }

    #[test]
    fn a_burst_yields_one_immediate_and_one_deferred_keyframe() {
        let t0 = Instant::now();
        let mut p = KeyframePolicy::new(500 * MS);
        assert!(p.request(t0));
        for i in 1..10 {
            assert!(!p.request(t0 + i * 10 * MS));
        }
        assert_eq!(p.deadline(), Some(t0 + 500 * MS));
        assert!(!p.poll(t0 + 499 * MS));
        assert!(p.poll(t0 + 500 * MS));
        assert_eq!(p.deadline(), None);
        assert!(!p.poll(t0 + 900 * MS));
    }

    #[test]
    fn every_request_is_answered_within_the_interval() {
        let t0 = Instant::now();
        let mut p = KeyframePolicy::new(500 * MS);
        p.request(t0);
        let asked = t0 + 499 * MS;
        assert!(!p.request(asked));
        let due = p.deadline().expect("deferred");
        assert!(due.duration_since(asked) <= 500 * MS);
    }

    #[test]
    fn a_forced_keyframe_serves_the_deferred_request_and_starts_a_window() {
        let t0 = Instant::now();
        let mut p = KeyframePolicy::new(500 * MS);
        assert!(p.request(t0));
        assert!(!p.request(t0 + 100 * MS), "deferred");
        p.force(t0 + 200 * MS);
        assert_eq!(p.deadline(), None, "the forced keyframe answered it");
        assert!(!p.request(t0 + 300 * MS), "a new window from the forced one");
        assert_eq!(p.deadline(), Some(t0 + 700 * MS));
    }

    #[test]
    fn requests_spaced_out_are_each_served_immediately() {
        let t0 = Instant::now();
        let mut p = KeyframePolicy::new(500 * MS);
        assert!(p.request(t0));
        assert!(p.request(t0 + 600 * MS));
        assert!(p.request(t0 + 1200 * MS));
    }
}
