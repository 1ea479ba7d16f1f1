//! RTP time of an encode's frames, derived from their presentation times.
//!
//! Each frame's RTP timestamp is `round((pts - first_pts) * clock)` after the first
//! frame's, computed afresh for every frame: no rounding error accumulates (stepping
//! by a rounded per-frame duration drifts: 33.33 ms is 2999.7 ticks), and a frame the
//! encoder dropped leaves its gap in RTP time as it does in presentation time.

use std::time::Duration;

/// Turns presentation times into RTP ticks since the first frame.
#[derive(Debug, Clone)]
pub struct RtpClock {
    clock_rate: u32,
    /// Used when a frame has no presentation time: one period after the previous.
    nominal_period: Duration,
    first: Option<Duration>,
    last: Option<u64>,
}

impl RtpClock {
    /// A clock of `clock_rate` Hz for frames nominally `nominal_period` apart.
    pub fn new(clock_rate: u32, nominal_period: Duration) -> Self {
        Self { clock_rate, nominal_period, first: None, last: None }
    }

    /// The RTP ticks (since the first frame) of the next frame, presented at `pts`.
    /// Strictly increasing: a frame never shares or goes back on an earlier one's
    /// timestamp (a receiver would take both for one frame).
    pub fn ticks(&mut self, pts: Option<Duration>) -> u64 {
        let ticks = match (pts, self.first, self.last) {
            (Some(pts), Some(first), _) => self.to_ticks(pts.saturating_sub(first)),
            (Some(pts), None, _) => {
                self.first = Some(pts);
                0
            }
            (None, _, Some(last)) => last + self.to_ticks(self.nominal_period),
            (None, _, None) => 0,
        };
        let ticks = match self.last {
            Some(last) if ticks <= last => last + 1,
            _ => ticks,
        };
        self.last = Some(ticks);
        ticks
    }

    fn to_ticks(&self, d: Duration) -> u64 {
        // Integer arithmetic: exact for any duration a stream lasts.
        ((d.as_nanos() * u128::from(self.clock_rate) + 500_000_000) / 1_000_000_000) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn thirty_frames_a_second_for_an_hour_do_not_drift() {
        let mut clock = RtpClock::new(90_000, Duration::from_nanos(33_333_333));
        let start = Duration::from_secs(5);
        let mut last = 0;
        let frames = 30 * 3600;
        for n in 0..=frames {
            // Presentation times as an encoder at 30/1 stamps them (rounded down to ns).
            let pts = start + Duration::from_nanos(n * 1_000_000_000 / 30);
            last = clock.ticks(Some(pts));
        }
        assert_eq!(last, 3600 * 90_000, "an hour of frames is exactly an hour of RTP time");
    }

    #[test]
    fn a_dropped_frame_leaves_its_gap_and_odd_durations_do_not_accumulate() {
        let mut clock = RtpClock::new(90_000, Duration::from_nanos(33_333_333));
        let ticks: Vec<u64> =
            [0, 33, 100, 133, 166].iter().map(|&ms| clock.ticks(Some(Duration::from_nanos(ms * MS)))).collect();
        assert_eq!(ticks, vec![0, 2970, 9000, 11_970, 14_940]);
    }

    #[test]
    fn timestamps_only_move_forward() {
        let mut clock = RtpClock::new(90_000, Duration::from_nanos(33_333_333));
        assert_eq!(clock.ticks(Some(Duration::from_secs(1))), 0);
        assert_eq!(clock.ticks(Some(Duration::from_secs(1))), 1, "a repeated PTS still gets a new timestamp");
        assert_eq!(clock.ticks(Some(Duration::from_millis(900))), 2, "a PTS going back does not go back in RTP time");
        assert_eq!(clock.ticks(None), 3002, "no PTS: one nominal period later");
    }
}
