//! Active speaker: who has the floor, from the publishers' voice levels.
//!
//! Contract: the publisher whose voice is loudest, once it has been the loudest for
//! about 1 s; silence keeps the last speaker; never more than one switch a second.
//! Jitsi's dominant speaker identification scores speech over short, medium and long
//! windows so a cough or a word does not take the floor; the same effect comes here
//! from two simpler rules on smoothed levels: a challenger must stay among the loudest
//! *speakers* (voice activity, not noise; within [`MARGIN_DB`] of the loudest) for
//! [`TAKE_FLOOR`], and it must beat the current speaker by [`MARGIN_DB`] while the
//! current one is still talking, so two people at the same level neither trade the
//! floor on every breath nor keep each other from taking it.
//!
//! Pure: levels and `now` in, decisions out; the room calls it when the mixer reports.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// How long a challenger must be the loudest before it takes the floor.
pub const TAKE_FLOOR: Duration = Duration::from_secs(1);
/// Smallest time between two switches.
pub const MIN_SWITCH_INTERVAL: Duration = Duration::from_secs(1);
/// How much louder (dB) than a still-talking speaker a challenger must be.
pub const MARGIN_DB: f64 = 3.0;
/// Weight of a new report in a publisher's smoothed level (reports come every 200 ms:
/// about a second of memory). Speech and beeps swing by 30 dB from one 200 ms window
/// to the next; comparing raw reports would hand the floor to whoever peaked last.
pub const SMOOTHING: f64 = 0.25;

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
    /// Each publisher's smoothed level, as power (silence pulls it down).
    power: HashMap<K, f64>,
}

impl<K> Default for SpeakerDetector<K> {
    fn default() -> Self {
        Self { current: None, challenger: None, last_switch: None, power: HashMap::new() }
    }
}

fn to_power(dbfs: f64) -> f64 {
    10f64.powf(dbfs / 10.0)
}

fn to_dbfs(power: f64) -> f64 {
    10.0 * power.max(1e-13).log10()
}

impl<K: Clone + Eq + Hash> SpeakerDetector<K> {
    /// The active speaker.
    pub fn current(&self) -> Option<&K> {
        self.current.as_ref()
    }

    /// Feeds the levels of one report at `now`; returns the new speaker when the
    /// floor changes hands.
    pub fn update(&mut self, now: Instant, levels: &[VoiceLevel<K>]) -> Option<K> {
        for l in levels {
            let power = l.speaking_dbfs.map_or(0.0, to_power);
            let smoothed = self.power.entry(l.id.clone()).or_insert(power);
            *smoothed = SMOOTHING * power + (1.0 - SMOOTHING) * *smoothed;
        }
        self.power.retain(|id, _| levels.iter().any(|l| &l.id == id));
        // Who is speaking now, at their smoothed level.
        let power = &self.power;
        let level_of = |id: &K| {
            let l = levels.iter().find(|l| &l.id == id)?;
            l.speaking_dbfs.and_then(|_| power.get(id).copied().map(to_dbfs))
        };
        let speaking = levels.iter().filter_map(|l| level_of(&l.id).map(|db| (&l.id, db)));
        let Some((loudest, loudest_db)) = speaking.fold(None, |best: Option<(&K, f64)>, (id, db)| match best {
            Some((_, b)) if b >= db => best,
            _ => Some((id, db)),
        }) else {
            // Silence keeps the last speaker; nobody is challenging.
            self.challenger = None;
            return None;
        };
        // A speaker who still talks keeps the floor unless someone is clearly louder.
        if let Some(current_db) = self.current.as_ref().and_then(level_of)
            && loudest_db < current_db + MARGIN_DB
        {
            self.challenger = None;
            return None;
        }
        // A challenger keeps its claim while it talks within the margin of the loudest:
        // two people at the same level do not reset each other's second.
        let since = match &self.challenger {
            Some((id, since)) if level_of(id).is_some_and(|db| db >= loudest_db - MARGIN_DB) => *since,
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
        let (speaker, _) = self.challenger.take()?;
        self.current = Some(speaker);
        self.last_switch = Some(now);
        self.current.clone()
    }

    /// A publisher left (or stopped publishing audio): it loses the floor; returns
    /// whether it had it (the room then has no speaker until someone takes it).
    pub fn remove(&mut self, id: &K) -> bool {
        self.power.remove(id);
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
    fn two_at_the_same_level_do_not_keep_each_other_off_the_floor() {
        let mut d = SpeakerDetector::default();
        let t0 = Instant::now();
        let mut switches = Vec::new();
        // Equal levels, reported in an order that changes every time (a map's order).
        for (i, t) in (0..3000).step_by(100).enumerate() {
            let spec: [(&'static str, Option<f64>); 2] = if i % 2 == 0 {
                [("ann", Some(-30.0)), ("bob", Some(-30.0))]
            } else {
                [("bob", Some(-30.0)), ("ann", Some(-30.0))]
            };
            if let Some(s) = d.update(t0 + Duration::from_millis(t), &levels(&spec)) {
                switches.push((t, s));
            }
        }
        assert_eq!(switches.len(), 1, "one of them takes the floor after a second: {switches:?}");
        assert_eq!(switches[0].0, 1000);
    }

    #[test]
    fn levels_that_swing_from_report_to_report_are_compared_smoothed() {
        // Chromium's fake microphone (a beep every half second) and speech swing by
        // 30 dB between 200 ms reports; the louder one on average takes the floor and
        // keeps it.
        let ann = [-18.0, -45.0, -45.0, -34.0, -54.0];
        let bob = [-37.0, -37.0, -28.0, -48.0, -49.0];
        let mut d = SpeakerDetector::default();
        let t0 = Instant::now();
        let mut switches = Vec::new();
        for (i, t) in (0..6000).step_by(200).enumerate() {
            let spec = [("ann", Some(ann[i % 5])), ("bob", Some(bob[(i + 2) % 5]))];
            if let Some(s) = d.update(t0 + Duration::from_millis(t), &levels(&spec)) {
                switches.push((t, s));
            }
        }
        assert_eq!(switches, vec![(1000, "ann")]);
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
