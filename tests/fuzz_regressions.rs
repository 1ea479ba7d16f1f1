//! Replays every input kept in `fuzz/regressions/<target>/` (past findings and small
//! seeds) through the harness its fuzz target runs, on stable Rust: a parser that
//! panics again on an input it once panicked on fails this test. `make fuzz` finds
//! new inputs; see `scripts/fuzz.sh`.

use std::path::Path;

/// Runs every file of `fuzz/regressions/<target>/` through `harness`; the directory
/// must hold at least one (an emptied corpus would otherwise pass silently).
fn replay(target: &str, harness: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions").join(target);
    let mut inputs: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.is_file())
        .collect();
    inputs.sort();
    assert!(!inputs.is_empty(), "{} holds no regression input", dir.display());
    for path in inputs {
        let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        eprintln!("{target}: {}", path.display());
        harness(&data);
    }
}

#[test]
fn sdp_offer() {
    replay("sdp_offer", mcu::fuzzing::sdp_offer);
}

#[test]
fn api_json() {
    replay("api_json", mcu::fuzzing::api_json);
}

#[test]
fn jitter_buffer() {
    replay("jitter_buffer", mcu::fuzzing::jitter_buffer);
}

#[test]
fn keyframe() {
    replay("keyframe", mcu::fuzzing::keyframe);
}

#[test]
fn token() {
    replay("token", mcu::fuzzing::token);
}
