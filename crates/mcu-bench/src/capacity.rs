//! Capacity: the largest single room and the most 4-person rooms this machine holds
//! at >= 29 fps with gap-free audio, per content class, with the load generator on
//! the same cores. The counts are searched, not stepped through a fixed list: the
//! step doubles while every step passes, then bisects between the largest pass and
//! the smallest fail.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::content::Content;
use super::load::{Shape, Window};
use super::media::BenchMedia;
use super::run::{Server, Timing, passes, window_on};

/// Largest single room tried.
const MAX_PARTICIPANTS: usize = 64;
/// Most rooms of 4 tried.
const MAX_ROOMS: usize = 32;
/// Participants per room in the rooms search.
pub const ROOM_SIZE: usize = 4;

/// One capacity step.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CapRow {
    /// What the senders' video showed.
    #[serde(default)]
    pub content: Content,
    /// Rooms.
    pub rooms: usize,
    /// Participants per room.
    pub per_room: usize,
    /// What the load saw.
    pub window: Window,
    /// Probe >= 29 fps and no audio gap.
    pub pass: bool,
}

impl CapRow {
    /// Server CPU per room (cores).
    pub fn cpu_per_room(&self) -> Option<f64> {
        self.window.server_cpu.map(|c| c / self.rooms.max(1) as f64)
    }
}

/// The next count to measure, given the counts measured so far and whether each
/// passed: `start` first, then doubling while everything passes (up to `cap`), then
/// halfway between the largest pass and the smallest fail above it, until the two
/// are at most `resolution` apart (`None`: the search is done).
pub fn next_step(done: &[(usize, bool)], start: usize, resolution: usize, cap: usize) -> Option<usize> {
    let largest_pass = done.iter().filter(|(_, pass)| *pass).map(|(n, _)| *n).max().unwrap_or(0);
    let smallest_fail = done.iter().filter(|(n, pass)| !pass && *n > largest_pass).map(|(n, _)| *n).min();
    let next = match smallest_fail {
        None if largest_pass == 0 => start,
        None => (largest_pass * 2).min(cap),
        Some(fail) if fail - largest_pass <= resolution.max(1) => return None,
        Some(fail) => (largest_pass + fail) / 2,
    };
    (next > largest_pass && !done.iter().any(|(n, _)| *n == next)).then_some(next)
}

/// The largest count that passed (0 when none did).
pub fn largest_pass<'a>(rows: impl IntoIterator<Item = &'a CapRow>, count: impl Fn(&CapRow) -> usize) -> usize {
    rows.into_iter().filter(|r| r.pass).map(count).max().unwrap_or(0)
}

/// Searches the largest single room and the most rooms of [`ROOM_SIZE`] for the
/// senders' `media` on a fresh server. `known` are single-room steps already measured
/// with the same media (the mixing runs), so they are not measured twice. Returns
/// (single-room steps, rooms-of-4 steps), each sorted by size.
pub async fn search(
    work: &std::path::Path,
    media: &Arc<BenchMedia>,
    timing: Timing,
    known: Vec<CapRow>,
) -> Result<(Vec<CapRow>, Vec<CapRow>), String> {
    let content = media.content;
    let server = Server::start(work)?;
    let mut single = known;
    loop {
        let done: Vec<(usize, bool)> = single.iter().map(|r| (r.per_room, r.pass)).collect();
        let Some(n) = next_step(&done, ROOM_SIZE, 2, MAX_PARTICIPANTS) else { break };
        let w = step(&server, media, 1, n, timing).await?;
        single.push(row(content, 1, n, w));
    }
    single.sort_by_key(|c| c.per_room);
    let mut rooms: Vec<CapRow> = single.iter().filter(|c| c.per_room == ROOM_SIZE).cloned().collect();
    loop {
        let done: Vec<(usize, bool)> = rooms.iter().map(|r| (r.rooms, r.pass)).collect();
        let Some(k) = next_step(&done, 1, 1, MAX_ROOMS) else { break };
        let w = step(&server, media, k, ROOM_SIZE, timing).await?;
        rooms.push(row(content, k, ROOM_SIZE, w));
    }
    rooms.sort_by_key(|c| c.rooms);
    eprintln!(
        "bench:   {}: largest room {}, rooms of {ROOM_SIZE}: {}",
        content.label(),
        largest_pass(&single, |r| r.per_room),
        largest_pass(&rooms, |r| r.rooms)
    );
    Ok((single, rooms))
}

fn row(content: Content, rooms: usize, per_room: usize, window: Window) -> CapRow {
    let pass = passes(&window);
    eprintln!(
        "bench:   {} {rooms} x {per_room}: {} {}",
        content.label(),
        if pass { "PASS" } else { "FAIL" },
        window.summary()
    );
    CapRow { content, rooms, per_room, window, pass }
}

async fn step(
    server: &Server,
    media: &Arc<BenchMedia>,
    rooms: usize,
    per_room: usize,
    timing: Timing,
) -> Result<Window, String> {
    let shape = Shape::talking(rooms, per_room, true);
    let tag = media.content.slug();
    window_on(
        |i| server.target(format!("cap-{tag}-{rooms}x{per_room}-{i}")),
        server.pid(),
        shape,
        media,
        timing.warmup,
        timing.capacity,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the search against a machine that holds `limit`.
    fn searched(limit: usize, start: usize, resolution: usize, cap: usize) -> Vec<usize> {
        let mut done = Vec::new();
        while let Some(n) = next_step(&done, start, resolution, cap) {
            done.push((n, n <= limit));
            assert!(done.len() < 20, "search does not end: {done:?}");
        }
        done.iter().map(|(n, _)| *n).collect()
    }

    #[test]
    fn rooms_search_finds_the_exact_count() {
        assert_eq!(searched(1, 1, 1, 32), vec![1, 2]);
        assert_eq!(searched(0, 1, 1, 32), vec![1]);
        assert_eq!(searched(5, 1, 1, 32), vec![1, 2, 4, 8, 6, 5]);
        assert_eq!(searched(7, 1, 1, 32), vec![1, 2, 4, 8, 6, 7]);
    }

    #[test]
    fn search_stops_at_the_cap() {
        assert_eq!(searched(100, 1, 1, 32), vec![1, 2, 4, 8, 16, 32]);
    }

    #[test]
    fn single_room_search_reuses_known_steps_and_stops_at_resolution() {
        let mut done = vec![(4, true), (9, true), (16, true)];
        let mut tried = Vec::new();
        while let Some(n) = next_step(&done, 4, 2, 64) {
            tried.push(n);
            done.push((n, n <= 21));
        }
        assert_eq!(tried, vec![32, 24, 20, 22]);
    }

    #[test]
    fn a_fail_below_a_pass_does_not_stop_the_search() {
        // Noise: 6 failed once, 8 passed later; the search goes on above 8.
        assert_eq!(next_step(&[(4, true), (6, false), (8, true)], 4, 2, 64), Some(16));
    }
}
