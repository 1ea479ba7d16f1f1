//! What a receiver sees and hears over time: a cell's colour sampled, gaps in a tone.

use std::time::{Duration, Instant};

use mcu_bench::client::Received;

use super::color_matches;

/// Samples the picture at `at` every 20 ms for `span`: the share of samples showing
/// `color`, and the longest time it did not.
pub async fn watch_cell(received: &Received, at: (u32, u32), color: u32, span: Duration) -> (f64, Duration) {
    let (mut good, mut total) = (0u32, 0u32);
    let (mut longest, mut wrong_since) = (Duration::ZERO, None::<Instant>);
    let end = Instant::now() + span;
    while Instant::now() < end {
        let rgb = received.frame().and_then(|f| f.rgb_at(at.0, at.1));
        total += 1;
        if rgb.is_some_and(|rgb| color_matches(rgb, color)) {
            good += 1;
            wrong_since = None;
        } else {
            let since = *wrong_since.get_or_insert_with(Instant::now);
            longest = longest.max(since.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (f64::from(good) / f64::from(total.max(1)), longest)
}

/// The longest stretch, in ms, of the last `seconds` of received audio whose 10 ms
/// windows fall below a third of the median level (a gap in the tone).
pub fn longest_audio_gap_ms(received: &Received, seconds: usize) -> f64 {
    let pcm = received.recent_audio(48_000 * seconds);
    let rms: Vec<f64> = pcm
        .chunks(480)
        .map(|w| (w.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / w.len() as f64).sqrt())
        .collect();
    let mut sorted = rms.clone();
    sorted.sort_by(f64::total_cmp);
    let threshold = sorted.get(sorted.len() / 2).copied().unwrap_or(0.0) / 3.0;
    let (mut run, mut longest) = (0usize, 0usize);
    for level in rms {
        run = if level < threshold { run + 1 } else { 0 };
        longest = longest.max(run);
    }
    longest as f64 * 10.0
}
