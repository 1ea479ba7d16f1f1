//! Voice activity: whether a publisher is speaking, from the level of its decoded
//! audio. A publisher who is not speaking leaves the mix (its background noise is not
//! summed into everyone's ear) and, having nothing of its own to subtract, hears the
//! room's shared full-mix encode instead of paying for a mix-minus encode of its own:
//! in a meeting of 50 where 3 talk, the mixer runs 4 Opus encodes, not 50.
//!
//! Pure: one call per 20 ms frame, so frames are the clock. The onset is immediate
//! (the first loud frame is mixed: no clipped first syllable) and the release waits
//! for a hangover of quiet frames (pauses between words keep the speaker in the mix).

/// Frames of quiet (20 ms each) after which a speaker leaves the mix: 1 s.
pub const HANGOVER_FRAMES: u32 = 50;

/// The level of a frame: RMS in dB relative to full scale (a full-scale square wave
/// is 0 dBFS); digital silence is `f64::NEG_INFINITY`.
pub fn level_dbfs(frame: &[i16]) -> f64 {
    if frame.is_empty() {
        return f64::NEG_INFINITY;
    }
    let energy: f64 = frame.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
    let mean_square = energy / frame.len() as f64;
    10.0 * (mean_square / (32768.0 * 32768.0)).log10()
}

/// One publisher's voice activity.
#[derive(Debug, Clone)]
pub struct VoiceActivity {
    threshold_dbfs: f64,
    hangover_frames: u32,
    /// Consecutive quiet frames so far (starts "long quiet": not speaking).
    quiet_frames: u32,
}

impl VoiceActivity {
    /// A detector counting frames at or above `threshold_dbfs` as voice, releasing
    /// after `hangover_frames` quiet ones.
    pub fn new(threshold_dbfs: f64, hangover_frames: u32) -> Self {
        Self { threshold_dbfs, hangover_frames, quiet_frames: hangover_frames }
    }

    /// Feeds this tick's frame; returns whether the publisher is speaking.
    pub fn update(&mut self, frame: &[i16]) -> bool {
        self.update_level(level_dbfs(frame))
    }

    /// Feeds this tick's frame by its level ([`level_dbfs`]); returns whether the
    /// publisher is speaking.
    pub fn update_level(&mut self, level_dbfs: f64) -> bool {
        if self.is_voice(level_dbfs) {
            self.quiet_frames = 0;
        } else {
            self.quiet()
        }
        self.speaking()
    }

    /// Whether a frame at `level_dbfs` is voice (at or above the threshold).
    pub fn is_voice(&self, level_dbfs: f64) -> bool {
        level_dbfs >= self.threshold_dbfs
    }

    /// A tick without a frame (nothing arrived): counts as quiet.
    pub fn quiet(&mut self) {
        self.quiet_frames = self.quiet_frames.saturating_add(1);
    }

    /// Whether the publisher is speaking (a voice frame within the hangover).
    pub fn speaking(&self) -> bool {
        self.quiet_frames < self.hangover_frames
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(amplitude: f64) -> Vec<i16> {
        (0..960).map(|i| ((i as f64 * 0.13).sin() * amplitude) as i16).collect()
    }

    #[test]
    fn levels_of_known_signals() {
        assert_eq!(level_dbfs(&[0; 960]), f64::NEG_INFINITY);
        assert!(level_dbfs(&[i16::MIN; 960]).abs() < 0.01);
        // A sine of amplitude A has RMS A/sqrt(2): full scale is -3 dBFS.
        assert!((level_dbfs(&tone(32767.0)) + 3.01).abs() < 0.1);
        // Amplitude 150 (the benchmark's talking tone): about -50 dBFS.
        assert!((level_dbfs(&tone(150.0)) + 49.8).abs() < 0.3, "{}", level_dbfs(&tone(150.0)));
    }

    #[test]
    fn onset_is_immediate_and_release_waits_for_the_hangover() {
        let mut v = VoiceActivity::new(-55.0, 3);
        assert!(!v.speaking(), "a new publisher is not speaking");
        assert!(!v.update(&tone(20.0)), "-64 dBFS is below the threshold");
        assert!(v.update(&tone(1000.0)), "the first loud frame counts");
        assert!(v.update(&tone(20.0)));
        assert!(v.update(&tone(20.0)));
        assert!(!v.update(&tone(20.0)), "released after 3 quiet frames");
        assert!(v.update(&tone(1000.0)));
    }

    #[test]
    fn a_pause_shorter_than_the_hangover_keeps_the_speaker() {
        let mut v = VoiceActivity::new(-55.0, HANGOVER_FRAMES);
        v.update(&tone(1000.0));
        for _ in 0..HANGOVER_FRAMES - 1 {
            v.quiet();
        }
        assert!(v.speaking());
        assert!(v.update(&tone(1000.0)));
        for _ in 0..HANGOVER_FRAMES {
            v.quiet();
        }
        assert!(!v.speaking());
    }

    #[test]
    fn silence_never_speaks() {
        let mut v = VoiceActivity::new(f64::NEG_INFINITY, 3);
        // With no threshold everything that arrives counts, even digital silence.
        assert!(v.update(&[0; 960]));
        let mut gate = VoiceActivity::new(-55.0, 3);
        for _ in 0..10 {
            assert!(!gate.update(&[0; 960]));
        }
    }
}
