//! How fast a publisher sends, against its budget.
//!
//! A peer can send far more than any camera or microphone produces (a flood of RTP at
//! tens of Mb/s). Everything it sends is decrypted, parsed and queued before a decoder
//! can drop it, so the reader measures each track's rate and the room removes a
//! publisher whose track stays over `media.max_input_bitrate_bps` for a whole second.
//! A second is long enough that a large keyframe (a burst of a few hundred kilobits)
//! never trips it and short enough that a flood costs the server at most that second.

use std::time::{Duration, Instant};

/// The span over which a rate is measured.
const WINDOW: Duration = Duration::from_secs(1);

/// Counts one track's bytes in windows of one second.
#[derive(Debug)]
pub struct InputRate {
    limit_bps: u64,
    window_start: Option<Instant>,
    window_bytes: u64,
}

impl InputRate {
    /// A meter refusing more than `limit_bps` bits per second (0: no limit).
    pub fn new(limit_bps: u64) -> Self {
        Self { limit_bps, window_start: None, window_bytes: 0 }
    }

    /// Counts a packet of `bytes` received at `now`. Returns the measured rate in bits
    /// per second when the window it closes was over the budget. A window's bytes are
    /// also judged before it ends, once they alone exceed a full second's budget, so a
    /// flood is stopped within its first second.
    pub fn record(&mut self, now: Instant, bytes: usize) -> Option<u64> {
        if self.limit_bps == 0 {
            return None;
        }
        let start = *self.window_start.get_or_insert(now);
        let elapsed = now.saturating_duration_since(start);
        if elapsed >= WINDOW {
            let rate = self.window_bytes * 8 * 1000 / elapsed.as_millis().max(1) as u64;
            self.window_start = Some(now);
            self.window_bytes = bytes as u64;
            return (rate > self.limit_bps).then_some(rate);
        }
        self.window_bytes += bytes as u64;
        let budget_bytes = self.limit_bps / 8;
        (self.window_bytes > budget_bytes)
            .then(|| self.window_bytes * 8 * 1000 / elapsed.as_millis().max(WINDOW.as_millis() / 10) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(meter: &mut InputRate, start: Instant, bps: u64, for_ms: u64) -> Option<(u64, u64)> {
        // One packet every millisecond of `bps / 8000` bytes.
        let bytes = (bps / 8000) as usize;
        (0..for_ms).find_map(|ms| meter.record(start + Duration::from_millis(ms), bytes).map(|rate| (ms, rate)))
    }

    #[test]
    fn a_sender_within_its_budget_is_never_refused() {
        let mut meter = InputRate::new(2_000_000);
        assert_eq!(feed(&mut meter, Instant::now(), 1_900_000, 10_000), None);
    }

    #[test]
    fn a_flood_is_refused_within_its_first_second_with_its_rate() {
        let mut meter = InputRate::new(2_000_000);
        let (at_ms, rate) = feed(&mut meter, Instant::now(), 50_000_000, 10_000).expect("refused");
        assert!(at_ms < 100, "refused after {at_ms} ms");
        assert!(rate > 15_000_000, "reported {rate} b/s");
    }

    #[test]
    fn a_keyframe_burst_within_a_second_of_budget_passes() {
        let mut meter = InputRate::new(2_000_000);
        let start = Instant::now();
        // 100 kB at once (0.8 Mb), then 1 Mb/s: 1.8 Mb in the first second.
        assert_eq!(meter.record(start, 100_000), None);
        assert_eq!(feed(&mut meter, start + Duration::from_millis(1), 1_000_000, 5_000), None);
    }

    #[test]
    fn a_sender_slightly_over_is_refused_when_the_window_closes() {
        let mut meter = InputRate::new(2_000_000);
        let (at_ms, rate) = feed(&mut meter, Instant::now(), 2_400_000, 10_000).expect("refused");
        assert!((800..=1000).contains(&at_ms), "refused after {at_ms} ms");
        assert!((2_200_000..2_600_000).contains(&rate), "reported {rate} b/s");
    }

    #[test]
    fn zero_means_no_limit() {
        let mut meter = InputRate::new(0);
        assert_eq!(feed(&mut meter, Instant::now(), 100_000_000, 3_000), None);
    }
}
