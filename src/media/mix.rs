//! Mix-minus summing: every listener hears the sum of every *other* source.
//!
//! The room's full mix is summed once in 32-bit; a listener who contributed to this
//! frame gets `full - own` (exact, since the sum is integer), everyone else gets the
//! full mix. Clipping to 16 bits happens only at the end, per output.

/// Adds `source` into the 32-bit accumulator `acc` (same length).
pub fn accumulate(acc: &mut [i32], source: &[i16]) {
    for (a, &s) in acc.iter_mut().zip(source) {
        *a += i32::from(s);
    }
}

/// Writes `full - own` into `out`, saturated to 16 bits: the mix-minus for a listener
/// whose own contribution this frame was `own`.
pub fn mix_minus(full: &[i32], own: &[i16], out: &mut [i16]) {
    for ((o, &f), &s) in out.iter_mut().zip(full).zip(own) {
        *o = saturate(f - i32::from(s));
    }
}

/// Writes the full mix into `out`, saturated to 16 bits (recordings, watch-only viewers,
/// listeners who sent nothing this frame).
pub fn full_mix(full: &[i32], out: &mut [i16]) {
    for (o, &f) in out.iter_mut().zip(full) {
        *o = saturate(f);
    }
}

fn saturate(v: i32) -> i16 {
    v.clamp(i32::from(i16::MIN), i32::from(i16::MAX)) as i16
}

/// True when the frame carries no signal (all zero samples), used to skip encoding
/// work and to report who is sending audio.
pub fn is_silent(frame: &[i16]) -> bool {
    frame.iter().all(|&s| s == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum_of(sources: &[&[i16]]) -> Vec<i32> {
        let mut acc = vec![0i32; sources[0].len()];
        for s in sources {
            accumulate(&mut acc, s);
        }
        acc
    }

    #[test]
    fn each_listener_hears_everyone_but_itself() {
        let a: &[i16] = &[100, -200, 300];
        let b: &[i16] = &[10, 20, 30];
        let c: &[i16] = &[1, 2, 3];
        let full = sum_of(&[a, b, c]);
        let mut out = [0i16; 3];
        mix_minus(&full, a, &mut out);
        assert_eq!(out, [11, 22, 33]);
        mix_minus(&full, b, &mut out);
        assert_eq!(out, [101, -198, 303]);
        mix_minus(&full, c, &mut out);
        assert_eq!(out, [110, -180, 330]);
        full_mix(&full, &mut out);
        assert_eq!(out, [111, -178, 333]);
    }

    #[test]
    fn a_lone_speaker_hears_silence() {
        let a: &[i16] = &[i16::MAX, i16::MIN, 5];
        let full = sum_of(&[a]);
        let mut out = [1i16; 3];
        mix_minus(&full, a, &mut out);
        assert_eq!(out, [0, 0, 0]);
        assert!(is_silent(&out));
    }

    #[test]
    fn clipping_happens_after_subtraction_not_before() {
        // Two loud sources overflow 16 bits together, but each one's mix-minus is the
        // other source exactly: the intermediate sum must not have been clipped.
        let a: &[i16] = &[30000, -30000];
        let b: &[i16] = &[30000, -30000];
        let full = sum_of(&[a, b]);
        let mut out = [0i16; 2];
        mix_minus(&full, a, &mut out);
        assert_eq!(out, [30000, -30000]);
        full_mix(&full, &mut out);
        assert_eq!(out, [i16::MAX, i16::MIN]);
    }
}
