//! Active speaker: who has the floor, from the publishers' voice levels.
//!
//! Contract: the publisher whose voice is loudest, once it has been the loudest for
//! about 1 s; silence keeps the last speaker; never more than one switch a second.
//! Jitsi's dominant speaker identification scores speech over short, medium and long
//! windows so a cough or a word does not take the floor; the same effect comes here
//! from two simpler rules on smoothed levels: a challenger must be the loudest *speaker*
//! (voice activity, not noise) continuously for [`TAKE_FLOOR`], and it must beat the
//! current speaker by [`MARGIN_DB`] while the current one is still talking, so two
//! people at the same level do not trade the floor on every breath.
//!
//! Pure: levels and `now` in, decisions out; the room calls it when the mixer reports.

use std::time::{Duration, Instant};

/// How long a challenger must be the loudest before it takes the floor.
pub const TAKE_FLOOR: Duration = Duration::from_secs(1);
/// Smallest time between two switches.
pub const MIN_SWITCH_INTERVAL: Duration = Duration::from_secs(1);
/// How much louder (dB) than a still-talking speaker a challenger must be.
pub const MARGIN_DB: f64 = 3.0;

/// One publisher's voice over the last report interval.
#[derive(Debug, Clone, PartialEq)]
pub struct VoiceLevel<K> {
    /// The publisher.
    pub id: K,
    /// Mean level (dBFS) while speaking; `None` when not speaking (silent, muted, or
    /// nothing arrived).
    pub speaking_dbfs: Option<f64>,
}

/// The floor: who has it and who is challenging for it.
#[derive(Debug, Clone)]
pub struct SpeakerDetector<K> {
    current: Option<K>,
    challenger: Option<(K, Instant)>,
    last_switch: Option<Instant>,
}

impl<K> Default for SpeakerDetector<K> {
    fn default() -> Self {
        Self { current: None, challenger: None, last_switch: None }
    }
}

impl<K: Clone + PartialEq> SpeakerDetector<K> {
    /// The active speaker.
    pub fn current(&self) -> Option<&K> {
        self.current.as_ref()
    }

    /// Feeds the levels of one report at `now`; returns the new speaker when the
    /// floor changes hands.
    pub fn update(&mut self, now: Instant, levels: &[VoiceLevel<K>]) -> Option<K> {
        let speaking = levels.iter().filter_map(|l| l.speaking_dbfs.map(|db| (&l.id, db)));
        let Some((loudest, loudest_db)) = speaking.fold(None, |best: Option<(&K, f64)>, (id, db)| match best {
            Some((_, b)) if b >= db => best,
            _ => Some((id, db)),
        }) else {
            // Silence keeps the last speaker; nobody is challenging.
            self.challenger = None;
            return None;
        };
        if self.current.as_ref() == Some(loudest) {
            self.challenger = None;
            return None;
        }
        let current_db = levels.iter().find(|l| Some(&l.id) == self.current.as_ref()).and_then(|l| l.speaking_dbfs);
        if current_db.is_some_and(|db| loudest_db < db + MARGIN_DB) {
            // Not clearly louder than a speaker who is still talking.
            self.challenger = None;
            return None;
        }
        let since = match &self.challenger {
            Some((id, since)) if id == loudest => *since,
            _ => {
                self.challenger = Some((loudest.clone(), now));
                now
            }
        };
        let held = now.saturating_duration_since(since) >= TAKE_FLOOR;
        let rested = self.last_switch.is_none_or(|t| now.saturating_duration_since(t) >= MIN_SWITCH_INTERVAL);
        if !(held && rested) {
            return None;
        }
        self.current = Some(loudest.clone());
        self.challenger = None;
        self.last_switch = Some(now);
        self.current.clone()
    }

    /// A publisher left (or stopped publishing audio): it loses the floor; returns
    /// whether it had it (the room then has no speaker until someone takes it).
    pub fn remove(&mut self, id: &K) -> bool {
        if self.challenger.as_ref().is_some_and(|(c, _)| c == id) {
            self.challenger = None;
        }
        if self.current.as_ref() == Some(id) {
            self.current = None;
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn levels(spec: &[(&'static str, Option<f64>)]) -> Vec<VoiceLevel<&'static str>> {
        spec.iter().map(|&(id, speaking_dbfs)| VoiceLevel { id, speaking_dbfs }).collect()
    }

    /// Feeds the same levels every 100 ms from `from` for `ms`; returns every switch
    /// with its time (ms since `t0`).
    fn feed(
        d: &mut SpeakerDetector<&'static str>,
        t0: Instant,
        from: u64,
        ms: u64,
        spec: &[(&'static str, Option<f64>)],
    ) -> Vec<(u64, &'static str)> {
        let mut switches = Vec::new();
        for t in (from..from + ms).step_by(100) {
            if let Some(s) = d.update(t0 + Duration::from_millis(t), &levels(spec)) {
                switches.push((t, s));
            }
        }
        switches
    }

    #[test]
    fn the_first_speaker_takes_the_floor_after_about_a_second() {
        let mut d = SpeakerDetector::default();
        let t0 = Instant::now();
        let switches = feed(&mut d, t0, 0, 3000, &[("ann", Some(-30.0)), ("bob", None)]);
        assert_eq!(switches, vec![(1000, "ann")]);
        assert_eq!(d.current(), Some(&"ann"));
    }

    #[test]
    fn silence_keeps_the_last_speaker() {
        let mut d = SpeakerDetector::default();
        let t0 = Instant::now();
        feed(&mut d, t0, 0, 2000, &[("ann", Some(-30.0))]);
        assert!(feed(&mut d, t0, 2000, 10_000, &[("ann", None), ("bob", None)]).is_empty());
        assert_eq!(d.current(), Some(&"ann"));
    }

    #[test]
    fn a_word_or_a_cough_does_not_take_the_floor() {
        let mut d = SpeakerDetector::default();
        let t0 = Instant::now();
        feed(&mut d, t0, 0, 2000, &[("ann", Some(-30.0)), ("bob", None)]);
        // Bob says something for 600 ms while Ann pauses, then Ann goes on.
        assert!(feed(&mut d, t0, 2000, 600, &[("ann", None), ("bob", Some(-25.0))]).is_empty());
        assert!(feed(&mut d, t0, 2600, 3000, &[("ann", Some(-30.0)), ("bob", None)]).is_empty());
        assert_eq!(d.current(), Some(&"ann"));
    }

    #[test]
    fn a_louder_challenger_takes_over_but_not_a_level_one() {
        let mut d = SpeakerDetector::default();
        let t0 = Instant::now();
        feed(&mut d, t0, 0, 2000, &[("ann", Some(-30.0)), ("bob", None)]);
        // Both talk at nearly the same level: Ann keeps the floor.
        assert!(feed(&mut d, t0, 2000, 3000, &[("ann", Some(-30.0)), ("bob", Some(-29.0))]).is_empty());
        // Bob is clearly louder: he takes it a second later.
        let switches = feed(&mut d, t0, 5000, 3000, &[("ann", Some(-30.0)), ("bob", Some(-20.0))]);
        assert_eq!(switches, vec![(6000, "bob")]);
        // Ann stops and Carl talks: he takes it after his second.
        let switches = feed(&mut d, t0, 8000, 3000, &[("ann", None), ("bob", None), ("carl", Some(-40.0))]);
        assert_eq!(switches, vec![(9000, "carl")]);
    }

    #[test]
    fn never_more_than_one_switch_a_second() {
        let mut d = SpeakerDetector::default();
        let t0 = Instant::now();
        let mut switches = Vec::new();
        // Whoever talks alternates every 1.2 s, each louder than the last.
        for (i, who) in ["a", "b", "a", "b", "a", "b", "a", "b"].iter().enumerate() {
            let level = -40.0 + i as f64 * 4.0;
            let spec: Vec<(&'static str, Option<f64>)> =
                ["a", "b"].iter().map(|&p| (p, (p == *who).then_some(level))).collect();
            switches.extend(feed(&mut d, t0, i as u64 * 1200, 1200, &spec));
        }
        assert!(!switches.is_empty());
        for pair in switches.windows(2) {
            assert!(pair[1].0 - pair[0].0 >= 1000, "switches too close: {switches:?}");
        }
    }

    #[test]
    fn the_speaker_leaving_frees_the_floor() {
        let mut d = SpeakerDetector::default();
        let t0 = Instant::now();
        feed(&mut d, t0, 0, 2000, &[("ann", Some(-30.0))]);
        assert!(!d.remove(&"bob"));
        assert!(d.remove(&"ann"));
        assert_eq!(d.current(), None);
        let switches = feed(&mut d, t0, 2000, 2000, &[("bob", Some(-35.0))]);
        assert_eq!(switches, vec![(3000, "bob")]);
    }
}
