//! A recording whose disk fills up: recordings go to a 1 MiB tmpfs mounted by the test
//! (as root; skipped with a message otherwise). The recording stops with its error in
//! the room state and a `recording` event, what it wrote plays, and the conference
//! goes on.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::sse::EventStream;
use common::{Server, publisher};
use mcu_bench::client::ClientOptions;

/// A tmpfs mounted for the test, unmounted when dropped.
struct SmallDisk(PathBuf);

impl SmallDisk {
    fn mount(dir: &Path, size: &str) -> Result<Self, String> {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_owned());
        }
        Ok(Self(dir.to_owned()))
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// Video frames ffprobe decodes from a file.
fn decoded_frames(path: &Path) -> Result<u64, String> {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-select_streams", "v:0"])
        .args(["-show_entries", "stream=nb_read_frames", "-of", "csv=p=0"])
        .arg(path)
        .output()
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim()
        .trim_end_matches(',')
        .parse()
        .map_err(|_| format!("ffprobe: {text} {}", String::from_utf8_lossy(&out.stderr)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_recording_that_fills_its_disk_stops_with_an_error_and_the_call_goes_on() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("disk-full-{}", std::process::id()));
    let disk = match SmallDisk::mount(&dir, "1m") {
        Ok(disk) => disk,
        Err(why) => {
            eprintln!("SKIPPED: cannot mount a small tmpfs here (needs root): {why}");
            return;
        }
    };
    let dir_env = disk.0.display().to_string();
    let server = Server::start_with(None, &[("MCU_RECORDINGS_DIR", dir_env.as_str())]);
    // Moving content keeps the composite's encoder near its 1.5 Mb/s: 1 MiB lasts ~5 s.
    let options =
        ClientOptions { video_pattern: "smpte horizontal-speed=4".into(), ..publisher("ann", 0xff0000, 440.0) };
    let ann = server.join("full", options).await;
    assert!(ann.wait_connected(Duration::from_secs(10)).await);
    let mut events = EventStream::open(&server, "full").await.expect("events");

    let response = reqwest::Client::new().post(format!("{}/rooms/full/recording", server.url)).send().await.unwrap();
    assert_eq!(response.status(), 201);
    let started = Instant::now();
    let body: serde_json::Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    let file = body["file"].as_str().unwrap().to_owned();

    // The `recording` event of the start, then the one of the failure.
    let first = events.until("recording", Duration::from_secs(5)).await;
    assert!(first["recording"].is_object(), "{first}");
    let failed = events.until("recording", Duration::from_secs(30)).await;
    let stopped_after = started.elapsed();
    eprintln!("recording failed after {stopped_after:?}: {failed}");
    assert!(failed["recording"].is_null(), "{failed}");
    assert_eq!(failed["file"], file.as_str());
    assert!(failed["error"].as_str().is_some_and(|e| !e.is_empty()), "{failed}");

    // The room state says what happened once the file is finalized.
    let summary = common::eventually(Duration::from_secs(10), || async {
        let (_, state) = server.get_json("/rooms/full").await;
        match &state["recording_failed"] {
            v if v.is_object() => Ok(()),
            _ => Err(format!("{state}")),
        }
    })
    .await;
    assert!(summary.is_ok(), "{summary:?}");
    let (_, state) = server.get_json("/rooms/full").await;
    assert!(state["recording"].is_null(), "{state}");
    let failure = &state["recording_failed"];
    assert_eq!(failure["file"], file.as_str());
    assert!(
        failure["error"].as_str().is_some_and(|e| !e.is_empty()) && failure["bytes"].as_u64() > Some(500_000),
        "{failure}"
    );
    // Stopping it again: nothing is recording.
    let response = reqwest::Client::new().delete(format!("{}/rooms/full/recording", server.url)).send().await.unwrap();
    assert_eq!(response.status(), 404);

    // What was written plays: at least two seconds of the 30 fps composite.
    let frames = decoded_frames(&disk.0.join(&file)).unwrap();
    eprintln!("{frames} frames decoded from the truncated file");
    assert!(frames >= 60, "{frames} frames");

    // The conference never noticed.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let fps = ann.received.media_fps(30).unwrap_or(0.0);
    assert!(fps >= 25.0, "the participant still receives the composite: {fps:.1} fps");
    assert_eq!(state["participants"].as_array().map(Vec::len), Some(1));
    assert!(server.alarms().is_empty(), "{:?}", server.alarms());
    drop(server);
}
