//! Quality tiers and the choice of a receiver's tier from its bandwidth. Pure: every
//! decision takes `now`.
//!
//! A receiver on `auto` follows an estimate of what its link carries:
//! - the receiver's own estimate (RTCP REMB, from browsers), but only when it has
//!   fallen below what is being sent: a browser caps its estimate near 1.5x what
//!   arrives and raises it by a few percent a second, so with an encoder sending
//!   less than its target (simple content, a busy machine), or just after a move up,
//!   a REMB under the tier's bitrate says nothing about the link. A browser lowers
//!   its estimate only on overuse (to ~0.85x what arrives): a REMB that dropped from
//!   its recent peak and sits under what is sent is congestion;
//! - loss in its receiver reports: above 10 % lost, the link carries about what was
//!   sent times the fraction that arrived (a bottleneck queue drops the rest).
//!
//! Down: as soon as a report shows heavy loss, or once the estimate has stayed below
//! what the tier needs for [`DOWN_AFTER`], the receiver moves to the best tier the
//! estimate carries (the contract allows 5 s). Up: after [`UP_AFTER`] without loss or
//! congestion, one tier up (a REMB cannot show room for a tier never sent, so the
//! move is a probe). A move up that brings loss or congestion within [`PROBATION`] is
//! undone and the next attempt waits twice as long (up to [`UP_AFTER_MAX`]), so a
//! link at the edge of a tier does not flap.

use std::time::{Duration, Instant};

/// A quality tier: one canvas size, frame rate and bitrate of the composite.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tier {
    /// Name used in the API (`high`, `medium`, `low`, ...).
    pub name: String,
    /// Canvas width.
    pub width: u32,
    /// Canvas height.
    pub height: u32,
    /// Frames per second.
    pub fps: u32,
    /// Target video bitrate.
    pub bitrate_bps: u32,
}

/// What a receiver asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quality {
    /// Follow the bandwidth estimate.
    Auto,
    /// Stay on this tier (index into the tier list, highest first).
    Pinned(usize),
}

/// Parses `auto` or a tier name against `tiers`; `None` for anything else.
pub fn parse_quality(text: &str, tiers: &[Tier]) -> Option<Quality> {
    if text == "auto" {
        return Some(Quality::Auto);
    }
    tiers.iter().position(|t| t.name == text).map(Quality::Pinned)
}

/// A sustained low estimate moves a receiver down after this long.
pub const DOWN_AFTER: Duration = Duration::from_millis(1500);
/// Loss-free time before trying the next tier up.
pub const UP_AFTER: Duration = Duration::from_secs(10);
/// The longest wait before another try after failed ones.
pub const UP_AFTER_MAX: Duration = Duration::from_secs(80);
/// After moving up, loss within this time undoes the move.
pub const PROBATION: Duration = Duration::from_secs(6);
/// A report losing more than this is congestion.
pub const HEAVY_LOSS: f64 = 0.10;
/// A report losing less than this is clean.
pub const LIGHT_LOSS: f64 = 0.02;
/// A tier needs its bitrate times this (packet headers, retransmissions).
pub const OVERHEAD: f64 = 1.1;
/// A REMB below what is sent times this, and below its recent peak times this, is
/// congestion.
pub const REMB_CONGESTED: f64 = 0.9;
/// How long a REMB peak counts as recent.
const REMB_PEAK_WINDOW: Duration = Duration::from_secs(3);

/// What a receiver's RTCP said in one report.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Feedback {
    /// Fraction of packets lost since its previous report (RTCP RR), 0..=1.
    pub loss: Option<f64>,
    /// The receiver's own bandwidth estimate (RTCP REMB), bits/s.
    pub remb_bps: Option<u64>,
}

/// The tier policy of one receiver on `auto`.
#[derive(Debug, Clone)]
pub struct TierPolicy {
    /// Bitrate of each allowed tier, highest first.
    bitrates: Vec<u32>,
    current: usize,
    /// The link's estimated capacity, bits/s, when something told us.
    estimate_bps: Option<f64>,
    /// The highest recent REMB and when it came.
    remb_peak: Option<(u64, Instant)>,
    below_since: Option<Instant>,
    clean_since: Instant,
    up_wait: Duration,
    probation_until: Option<Instant>,
}

impl TierPolicy {
    /// A policy over `bitrates` (highest tier first) starting on tier `start`.
    pub fn new(bitrates: Vec<u32>, start: usize, now: Instant) -> Self {
        let current = start.min(bitrates.len().saturating_sub(1));
        Self {
            bitrates,
            current,
            estimate_bps: None,
            remb_peak: None,
            below_since: None,
            clean_since: now,
            up_wait: UP_AFTER,
            probation_until: None,
        }
    }

    /// The starting tier for an offer capped at `cap_bps` (`b=AS`/`b=TIAS`): the best
    /// one whose bitrate fits, else the lowest.
    pub fn start_tier(bitrates: &[u32], cap_bps: Option<u64>) -> usize {
        match cap_bps {
            None => 0,
            Some(cap) => bitrates.iter().position(|&b| u64::from(b) <= cap).unwrap_or(bitrates.len().saturating_sub(1)),
        }
    }

    /// The tier the receiver is on.
    pub fn current(&self) -> usize {
        self.current
    }

    /// The current estimate, bits/s.
    pub fn estimate_bps(&self) -> Option<f64> {
        self.estimate_bps
    }

    fn need(&self, tier: usize) -> f64 {
        f64::from(self.bitrates[tier]) * OVERHEAD
    }

    /// The best tier `bps` carries (the lowest when none does).
    fn best_for(&self, bps: f64) -> usize {
        (0..self.bitrates.len()).find(|&t| self.need(t) <= bps).unwrap_or(self.bitrates.len() - 1)
    }

    /// Takes one report; `sent_bps` is what was sent to this receiver lately. Returns
    /// the tier to move to, if it should move.
    pub fn on_feedback(&mut self, now: Instant, feedback: Feedback, sent_bps: f64) -> Option<usize> {
        if let Some(remb) = feedback.remb_bps {
            let peak = match self.remb_peak {
                Some((peak, at)) if peak > remb && now.duration_since(at) < REMB_PEAK_WINDOW => peak,
                _ => {
                    self.remb_peak = Some((remb, now));
                    remb
                }
            };
            let fallen = (remb as f64) < peak as f64 * REMB_CONGESTED;
            if fallen && (remb as f64) < sent_bps * REMB_CONGESTED {
                self.estimate_bps = Some(remb as f64);
                self.clean_since = now;
            } else {
                // Application-limited or ramping up: the link carries what is sent.
                self.estimate_bps = None;
            }
        }
        let mut heavy = false;
        if let Some(loss) = feedback.loss {
            if loss > HEAVY_LOSS && sent_bps > 0.0 {
                heavy = true;
                let delivered = sent_bps * (1.0 - loss);
                self.estimate_bps = Some(self.estimate_bps.map_or(delivered, |e| e.min(delivered)));
            }
            if loss >= LIGHT_LOSS {
                self.clean_since = now;
            }
        }
        let on_probation = self.probation_until.is_some_and(|until| now < until);
        if heavy && on_probation {
            // The last move up did not hold: back down, and wait longer next time.
            return self.undo_move_up(now);
        }
        let Some(estimate) = self.estimate_bps.filter(|e| *e < self.need(self.current)) else {
            self.below_since = None;
            return None;
        };
        let since = *self.below_since.get_or_insert(now);
        if on_probation && now.duration_since(since) >= DOWN_AFTER {
            return self.undo_move_up(now);
        }
        if heavy || now.duration_since(since) >= DOWN_AFTER {
            let target = self.best_for(estimate).max(self.current + 1).min(self.bitrates.len() - 1);
            return self.move_to(target, now);
        }
        None
    }

    fn undo_move_up(&mut self, now: Instant) -> Option<usize> {
        self.probation_until = None;
        self.up_wait = (self.up_wait * 2).min(UP_AFTER_MAX);
        self.move_to(self.current + 1, now)
    }

    /// Time passing without reports: moves up after a clean stretch. Returns the tier
    /// to move to, if it should move.
    pub fn on_tick(&mut self, now: Instant) -> Option<usize> {
        if self.probation_until.is_some_and(|until| now >= until) {
            // The last move up held.
            self.probation_until = None;
            self.up_wait = UP_AFTER;
        }
        if self.current == 0 || now.duration_since(self.clean_since) < self.up_wait {
            return None;
        }
        // Clean on the current tier: what we knew of the link no longer caps it.
        self.estimate_bps = None;
        self.probation_until = Some(now + PROBATION);
        self.move_to(self.current - 1, now)
    }

    /// When [`Self::on_tick`] next has something to decide.
    pub fn next_tick(&self) -> Option<Instant> {
        let up = (self.current > 0).then(|| self.clean_since + self.up_wait);
        [up, self.probation_until].into_iter().flatten().min()
    }

    fn move_to(&mut self, tier: usize, now: Instant) -> Option<usize> {
        let tier = tier.min(self.bitrates.len() - 1);
        if tier == self.current {
            return None;
        }
        self.current = tier;
        self.below_since = None;
        self.clean_since = now;
        Some(tier)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIERS: [u32; 3] = [1_500_000, 600_000, 150_000];

    fn policy(now: Instant) -> TierPolicy {
        TierPolicy::new(TIERS.to_vec(), 0, now)
    }

    fn loss(fraction: f64) -> Feedback {
        Feedback { loss: Some(fraction), remb_bps: None }
    }

    #[test]
    fn heavy_loss_on_a_thin_link_drops_to_the_tier_it_carries_at_once() {
        let t0 = Instant::now();
        let mut p = policy(t0);
        // 300 kbit/s link, 1.6 Mbit/s sent: ~80 % lost.
        assert_eq!(p.on_feedback(t0 + Duration::from_secs(1), loss(0.8), 1_600_000.0), Some(2));
        assert_eq!(p.current(), 2);
    }

    #[test]
    fn moderate_loss_goes_down_one_tier_at_least() {
        let t0 = Instant::now();
        let mut p = policy(t0);
        // 1.3 Mbit/s delivered of 1.6: below high's need, above medium's.
        assert_eq!(p.on_feedback(t0, loss(0.2), 1_600_000.0), Some(1));
    }

    #[test]
    fn light_loss_changes_nothing() {
        let t0 = Instant::now();
        let mut p = policy(t0);
        for s in 1..30 {
            assert_eq!(p.on_feedback(t0 + Duration::from_secs(s), loss(0.01), 1_600_000.0), None);
        }
        assert_eq!(p.on_tick(t0 + Duration::from_secs(30)), None, "already on the top tier");
    }

    #[test]
    fn a_low_remb_moves_down_only_once_it_lasts() {
        let t0 = Instant::now();
        let mut p = policy(t0);
        let remb = |bps| Feedback { loss: Some(0.0), remb_bps: Some(bps) };
        assert_eq!(p.on_feedback(t0, remb(2_000_000), 1_600_000.0), None);
        assert_eq!(p.on_feedback(t0 + Duration::from_millis(200), remb(700_000), 1_600_000.0), None, "a dip");
        assert_eq!(p.on_feedback(t0 + Duration::from_secs(1), remb(2_000_000), 1_600_000.0), None, "recovered");
        assert_eq!(p.on_feedback(t0 + Duration::from_secs(2), remb(700_000), 1_600_000.0), None);
        assert_eq!(p.on_feedback(t0 + Duration::from_millis(3600), remb(700_000), 1_600_000.0), Some(1));
    }

    #[test]
    fn up_one_tier_after_ten_clean_seconds() {
        let t0 = Instant::now();
        let mut p = policy(t0);
        p.on_feedback(t0, loss(0.8), 1_600_000.0);
        assert_eq!(p.current(), 2);
        for s in 1..10 {
            p.on_feedback(t0 + Duration::from_secs(s), loss(0.0), 160_000.0);
            assert_eq!(p.on_tick(t0 + Duration::from_secs(s)), None, "at {s} s");
        }
        assert_eq!(p.next_tick(), Some(t0 + UP_AFTER));
        assert_eq!(p.on_tick(t0 + UP_AFTER), Some(1));
        // The probation passes, then another ten clean seconds: back on top.
        for s in 11..20 {
            p.on_feedback(t0 + Duration::from_secs(s), loss(0.0), 660_000.0);
            assert_eq!(p.on_tick(t0 + Duration::from_secs(s)), None, "at {s} s");
        }
        assert_eq!(p.on_tick(t0 + Duration::from_secs(20)), Some(0));
    }

    #[test]
    fn a_move_up_that_brings_loss_is_undone_and_the_next_try_waits_longer() {
        let t0 = Instant::now();
        let mut p = TierPolicy::new(TIERS.to_vec(), 1, t0);
        assert_eq!(p.on_tick(t0 + UP_AFTER), Some(0));
        // The link carries ~700 kbit/s: high loses half.
        assert_eq!(p.on_feedback(t0 + UP_AFTER + Duration::from_secs(1), loss(0.5), 1_600_000.0), Some(1));
        let back = t0 + UP_AFTER + Duration::from_secs(1);
        assert_eq!(p.on_tick(back + UP_AFTER), None, "not after the usual 10 s");
        assert_eq!(p.on_tick(back + UP_AFTER * 2), Some(0), "after twice as long");
    }

    fn remb(bps: u64) -> Feedback {
        Feedback { loss: None, remb_bps: Some(bps) }
    }

    #[test]
    fn an_application_limited_remb_below_the_tier_moves_nothing() {
        // Simple content or a busy encoder sends 300 kbit/s on the 1.5 Mbit/s tier;
        // the browser's estimate follows what arrives (~1.5x), far under the tier.
        let t0 = Instant::now();
        let mut p = policy(t0);
        for s in 0..20 {
            assert_eq!(p.on_feedback(t0 + Duration::from_secs(s), remb(450_000), 300_000.0), None, "at {s} s");
        }
        assert_eq!(p.current(), 0);
    }

    #[test]
    fn an_application_limited_remb_does_not_hold_the_move_up() {
        let t0 = Instant::now();
        let mut p = TierPolicy::new(TIERS.to_vec(), 2, t0);
        for s in 0..10 {
            p.on_feedback(t0 + Duration::from_secs(s), remb(200_000), 140_000.0);
        }
        assert_eq!(p.on_tick(t0 + UP_AFTER), Some(1));
    }

    #[test]
    fn congestion_after_a_move_up_undoes_it_and_the_next_try_waits_longer() {
        let t0 = Instant::now();
        let mut p = TierPolicy::new(TIERS.to_vec(), 1, t0);
        assert_eq!(p.on_tick(t0 + UP_AFTER), Some(0));
        // The link carries ~900 kbit/s: the browser's estimate drops under what is sent.
        let up = t0 + UP_AFTER;
        assert_eq!(p.on_feedback(up + Duration::from_millis(500), remb(1_700_000), 1_500_000.0), None);
        assert_eq!(p.on_feedback(up + Duration::from_secs(1), remb(800_000), 1_500_000.0), None);
        assert_eq!(p.on_feedback(up + Duration::from_millis(2600), remb(780_000), 1_500_000.0), Some(1));
        let back = up + Duration::from_millis(2600);
        assert_eq!(p.on_tick(back + UP_AFTER), None, "not after the usual 10 s");
        assert_eq!(p.on_tick(back + UP_AFTER * 2), Some(0), "after twice as long");
    }

    #[test]
    fn a_remb_ramping_up_after_a_move_up_is_not_congestion() {
        let t0 = Instant::now();
        let mut p = TierPolicy::new(TIERS.to_vec(), 1, t0);
        p.on_feedback(t0, remb(900_000), 600_000.0);
        assert_eq!(p.on_tick(t0 + UP_AFTER), Some(0));
        // 1.5 Mbit/s now sent; the browser's estimate climbs ~8 % a second.
        let mut estimate = 900_000.0;
        for tenth in 1..=60 {
            estimate *= 1.008;
            let at = t0 + UP_AFTER + Duration::from_millis(100 * tenth);
            assert_eq!(p.on_feedback(at, remb(estimate as u64), 1_500_000.0), None, "at +{tenth}00 ms");
        }
        assert_eq!(p.current(), 0);
    }

    #[test]
    fn a_congested_remb_holds_the_move_up() {
        let t0 = Instant::now();
        let mut p = TierPolicy::new(TIERS.to_vec(), 1, t0);
        // The encoder overshoots medium (800 kbit/s sent); the estimate stays under
        // what is sent but carries medium's need.
        assert_eq!(p.on_feedback(t0 + Duration::from_millis(8500), remb(900_000), 800_000.0), None);
        assert_eq!(p.on_feedback(t0 + Duration::from_secs(9), remb(680_000), 800_000.0), None);
        assert_eq!(p.on_tick(t0 + Duration::from_secs(11)), None);
        assert_eq!(p.on_tick(t0 + Duration::from_secs(19)), Some(0));
    }

    #[test]
    fn an_offer_cap_picks_the_starting_tier() {
        assert_eq!(TierPolicy::start_tier(&TIERS, None), 0);
        assert_eq!(TierPolicy::start_tier(&TIERS, Some(2_000_000)), 0);
        assert_eq!(TierPolicy::start_tier(&TIERS, Some(800_000)), 1);
        assert_eq!(TierPolicy::start_tier(&TIERS, Some(100_000)), 2);
    }

    #[test]
    fn qualities_parse_against_the_tier_list() {
        let tiers: Vec<Tier> = ["high", "medium", "low"]
            .iter()
            .map(|n| Tier { name: (*n).into(), width: 2, height: 2, fps: 1, bitrate_bps: 1 })
            .collect();
        assert_eq!(parse_quality("auto", &tiers), Some(Quality::Auto));
        assert_eq!(parse_quality("medium", &tiers), Some(Quality::Pinned(1)));
        assert_eq!(parse_quality("ultra", &tiers), None);
        assert_eq!(parse_quality("", &tiers), None);
    }
}
