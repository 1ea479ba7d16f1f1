//! `mcu-bench all --only labels`: what the name labels cost. Rasterising one label,
//! redrawing every label of a 16-cell composite (a layout change), and the
//! compositor's CPU at 30 fps with 16 labels on it against none.
//!
//! The compositor here is the server's own ([`VideoMixer`]), with no publishers and
//! no encode: what differs between the two CPU windows is the labels alone.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::sys;
use mcu::config::MediaConfig;
use mcu::layout::{Rect, grid_cells, speaker_cells};
use mcu::media::label::LabelFont;
use mcu::media::video::VideoMixer;

/// Labels on the composite measured.
const CELLS: usize = 16;
/// Seconds of each CPU window.
const WINDOW_S: u64 = 10;

/// The figures.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct LabelCost {
    /// Microseconds to rasterise one label (mean over names and cell sizes).
    pub render_us: f64,
    /// Milliseconds to redraw all 16 labels (grid to speaker layout: every size changes).
    pub redraw_16_ms: f64,
    /// Milliseconds to move all 16 labels (cells moved, sizes kept).
    pub move_16_ms: f64,
    /// Compositor cores at 30 fps, 1280x720, no labels.
    pub cores_without: f64,
    /// Same, 16 labels drawn.
    pub cores_with: f64,
    /// When (UTC).
    pub date: String,
}

const NAMES: [&str; 8] = ["Alice", "Bob", "Chidi Anagonye", "Dmitri", "Eleanor Shellstrop", "Fei", "Gómez", "Hana"];

/// Measures everything above.
pub fn measure(date: String) -> Result<LabelCost, String> {
    let font = LabelFont::embedded();
    let sizes = [(640, 360), (320, 180), (256, 144), (1280, 540)];
    let rounds = 200;
    let start = Instant::now();
    let mut drawn = 0usize;
    for _ in 0..rounds {
        for (w, h) in sizes {
            for name in NAMES {
                let cell = Rect { x: 0, y: 0, width: w, height: h };
                drawn += usize::from(font.render(name, cell).is_some());
            }
        }
    }
    let render_us = start.elapsed().as_secs_f64() * 1e6 / drawn.max(1) as f64;

    let config = MediaConfig::default();
    let names: Vec<String> = (0..CELLS).map(|i| format!("{} {i}", NAMES[i % NAMES.len()])).collect();
    let keys: Vec<String> = (0..CELLS).map(|i| format!("p{i}")).collect();
    let place = |cells: &[Rect]| -> Vec<(String, Rect, String)> {
        keys.iter().zip(cells).zip(&names).map(|((k, c), n)| (k.clone(), *c, n.clone())).collect()
    };
    let apply = |mixer: &mut VideoMixer, placed: &[(String, Rect, String)]| {
        let borrowed: Vec<(&str, Rect, &str)> = placed.iter().map(|(k, c, n)| (k.as_str(), *c, n.as_str())).collect();
        let start = Instant::now();
        mixer.set_layout(&borrowed);
        start.elapsed().as_secs_f64() * 1000.0
    };
    let grid = place(&grid_cells(1280, 720, CELLS));
    let speaker = place(&speaker_cells(1280, 720, CELLS, 0));
    // The strip's cells shifted one to the right: the same sizes, new places.
    let shifted: Vec<(String, Rect, String)> = speaker
        .iter()
        .map(|(k, c, n)| {
            let moved = if c.y == 0 { *c } else { Rect { x: (c.x + c.width) % 1280, ..*c } };
            (k.clone(), moved, n.clone())
        })
        .collect();

    let mut with = VideoMixer::start(&config, "labels-bench").map_err(|e| e.to_string())?;
    apply(&mut with, &grid);
    let redraw_16_ms = apply(&mut with, &speaker);
    let move_16_ms = apply(&mut with, &shifted);
    let cores_with = cpu_window();
    drop(with);

    let plain = MediaConfig { labels: false, ..MediaConfig::default() };
    let mut without = VideoMixer::start(&plain, "labels-bench-off").map_err(|e| e.to_string())?;
    apply(&mut without, &shifted);
    let cores_without = cpu_window();
    drop(without);
    Ok(LabelCost { render_us, redraw_16_ms, move_16_ms, cores_without, cores_with, date })
}

/// Cores this process uses over the window (the compositor is its only work).
fn cpu_window() -> f64 {
    std::thread::sleep(Duration::from_secs(1));
    let window = sys::CpuWindow::start(&[None]);
    std::thread::sleep(Duration::from_secs(WINDOW_S));
    window.stop().0.first().copied().unwrap_or(0.0)
}

/// The BENCHMARKS.md section.
pub fn markdown(cost: &LabelCost) -> String {
    format!(
        "### 4d. Name labels\n\n\
         Each publisher's name is rasterised once into a small I420 picture when its name or cell size changes, \
         and drawn by the compositor on its own pad (`src/media/label.rs`, `src/media/name_tags.rs`). Measured \
         {} with `mcu-bench all --only labels`, in the benchmark's process, on the server's compositor \
         (1280x720, 30 fps, no publishers, no encode, so the labels are the only difference).\n\n\
         | what | cost |\n| --- | --- |\n\
         | rasterise one label (names of 3-18 letters, cells 256x144 to 1280x540) | {:.0} µs |\n\
         | redraw all {CELLS} labels (grid -> speaker layout: every cell changes size) | {:.1} ms |\n\
         | move all {CELLS} labels (same sizes, new places) | {:.2} ms |\n\
         | compositor, no labels | {:.3} cores |\n\
         | compositor, {CELLS} labels drawn every frame | {:.3} cores (+{:.3}) |\n",
        cost.date,
        cost.render_us,
        cost.redraw_16_ms,
        cost.move_16_ms,
        cost.cores_without,
        cost.cores_with,
        cost.cores_with - cost.cores_without,
    )
}
