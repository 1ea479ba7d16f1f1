//! Recording the mixed session: files checked by independent tools (ffprobe,
//! gst-discoverer-1.0, ffmpeg decoding frames and audio), crash safety, errors.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Server, color_matches, publisher, tone_levels};
use mcu::layout::grid_cells;
use mcu_bench::client::ClientOptions;
use serde_json::Value;

const RED: u32 = 0xff0000;
const GREEN: u32 = 0x00ff00;
const BLUE: u32 = 0x0000ff;
const BLACK: u32 = 0x000000;

fn recordings_dir(tag: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("rec-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn server_recording_to(dir: &Path, extra: &str) -> Server {
    Server::start(&format!("[recording]\ndir = {:?}\n{extra}", dir.display().to_string()))
}

async fn request(method: reqwest::Method, url: String) -> (u16, Value) {
    let r = reqwest::Client::new().request(method, url).send().await.expect("request");
    let status = r.status().as_u16();
    (status, serde_json::from_str(&r.text().await.unwrap_or_default()).unwrap_or(Value::Null))
}

/// `ffprobe`'s view of a file: its streams and format.
fn ffprobe(path: &Path, count_frames: bool) -> Value {
    let mut cmd = Command::new("ffprobe");
    cmd.args(["-v", "error", "-of", "json", "-show_streams", "-show_format"]);
    if count_frames {
        cmd.arg("-count_frames");
    }
    let out = cmd.arg(path).output().expect("run ffprobe");
    assert!(out.status.success(), "ffprobe failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("ffprobe json")
}

/// The frame shown at `seconds`, decoded by ffmpeg to RGB from the start of the file
/// (every frame up to it decodes, not just the one after a seek).
fn frame_at(path: &Path, seconds: f64, width: u32, height: u32) -> Vec<u8> {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-xerror", "-i"])
        .arg(path)
        .args(["-ss", &format!("{seconds:.3}"), "-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
        .output()
        .expect("run ffmpeg");
    assert!(out.status.success(), "ffmpeg failed: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.stdout.len(), (width * height * 3) as usize, "frame at {seconds}s has the canvas size");
    out.stdout
}

/// The whole audio track decoded by ffmpeg to mono 48 kHz samples, placed by their
/// timestamps from the file's start (gaps become silence): sample `i` is at
/// `i / 48000` s.
fn audio_of(path: &Path) -> Vec<i16> {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(path)
        .args(["-vn", "-af", "aresample=async=1:min_hard_comp=0.005:first_pts=0", "-ac", "1", "-ar", "48000"])
        .args(["-f", "s16le", "-"])
        .output()
        .expect("run ffmpeg");
    assert!(out.status.success(), "ffmpeg audio decode failed: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout.chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]])).collect()
}

fn rgb(frame: &[u8], width: u32, x: u32, y: u32) -> [u8; 3] {
    let i = ((y * width + x) * 3) as usize;
    [frame[i], frame[i + 1], frame[i + 2]]
}

/// Checks the cell centres of an `n`-publisher grid against `colors` (black after).
fn assert_grid(frame: &[u8], colors: &[u32], cells: usize, when: &str) {
    for (i, cell) in grid_cells(1280, 720, cells).iter().enumerate() {
        let (x, y) = cell.center();
        let want = colors.get(i).copied().unwrap_or(BLACK);
        let got = rgb(frame, 1280, x, y);
        assert!(color_matches(got, want), "{when}: cell {i} at ({x},{y}) is {got:?}, expected #{want:06x}");
    }
}

fn stream<'a>(probe: &'a Value, kind: &str) -> Option<&'a Value> {
    probe["streams"].as_array()?.iter().find(|s| s["codec_type"] == kind)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_recorded_session_with_a_join_and_a_leave_plays_back_with_the_grid() {
    let dir = recordings_dir("session");
    let server = server_recording_to(&dir, "");
    let red = server.join("rec", publisher("red", RED, 440.0)).await;
    let green = server.join("rec", publisher("green", GREEN, 660.0)).await;
    for c in [&red, &green] {
        assert!(c.wait_connected(Duration::from_secs(10)).await);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;

    let (status, started) = request(reqwest::Method::POST, format!("{}/rooms/rec/recording", server.url)).await;
    let started_at = Instant::now();
    assert_eq!(status, 201, "{started}");
    let file = started["file"].as_str().expect("file name").to_owned();
    assert!(file.ends_with(".webm") && started["id"].is_string(), "{started}");
    let (_, state) = server.get_json("/rooms/rec").await;
    assert_eq!(state["recording"]["file"], file.as_str(), "room state shows the recording: {state}");

    tokio::time::sleep(Duration::from_secs(2)).await;
    let blue = server.join("rec", publisher("blue", BLUE, 880.0)).await;
    assert!(blue.wait_connected(Duration::from_secs(10)).await);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(red.leave().await.expect("leave"), 204);
    tokio::time::sleep(Duration::from_secs(2)).await;

    let (status, stopped) = request(reqwest::Method::DELETE, format!("{}/rooms/rec/recording", server.url)).await;
    let wall = started_at.elapsed();
    assert_eq!(status, 200, "{stopped}");
    assert_eq!(stopped["file"], file.as_str());
    let duration_ms = stopped["duration_ms"].as_u64().expect("duration_ms");
    let bytes = stopped["bytes"].as_u64().expect("bytes");
    let wall_ms = wall.as_millis() as f64;
    eprintln!("recorded {file}: {duration_ms} ms for {wall_ms} ms of wall time, {bytes} bytes");
    assert!(
        (duration_ms as f64 - wall_ms).abs() <= wall_ms * 0.02 + 40.0,
        "duration {duration_ms} ms vs wall {wall_ms} ms"
    );

    let path = dir.join(&file);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), bytes);
    let (status, listed) = server.get_json("/recordings").await;
    assert_eq!(status, 200);
    assert!(listed.as_array().unwrap().iter().any(|f| f["file"] == file.as_str() && f["bytes"] == bytes), "{listed}");
    let download = reqwest::get(format!("{}/recordings/{file}", server.url)).await.unwrap();
    assert_eq!(download.status(), 200);
    assert_eq!(download.headers()["content-type"], "video/webm");
    assert_eq!(download.bytes().await.unwrap().len() as u64, bytes);

    // An independent demuxer sees VP8 1280x720 + Opus and the right duration.
    let probe = ffprobe(&path, false);
    let video = stream(&probe, "video").expect("video stream");
    assert_eq!(video["codec_name"], "vp8");
    assert_eq!((video["width"].as_u64(), video["height"].as_u64()), (Some(1280), Some(720)));
    let audio = stream(&probe, "audio").expect("audio stream");
    assert_eq!(audio["codec_name"], "opus");
    let probed: f64 = probe["format"]["duration"].as_str().expect("duration written").parse().unwrap();
    eprintln!("ffprobe duration {probed:.3} s");
    assert!(
        (probed * 1000.0 - wall_ms).abs() <= wall_ms * 0.02 + 40.0,
        "ffprobe duration {probed} s vs wall {wall_ms} ms"
    );
    let discoverer = Command::new("gst-discoverer-1.0").arg(&path).output().expect("run gst-discoverer-1.0");
    let report = String::from_utf8_lossy(&discoverer.stdout);
    assert!(discoverer.status.success() && report.contains("VP8") && report.contains("Opus"), "{report}");

    // Start (red, green), middle (red, green, blue), end (green, blue).
    let start = frame_at(&path, 0.3, 1280, 720);
    assert_grid(&start, &[RED, GREEN], 2, "start");
    let middle = frame_at(&path, 3.2, 1280, 720);
    assert_grid(&middle, &[RED, GREEN, BLUE], 3, "middle");
    let end = frame_at(&path, probed - 0.3, 1280, 720);
    assert_grid(&end, &[GREEN, BLUE], 2, "end");

    // The full mix (not a mix-minus): every tone present mid-recording.
    let pcm = audio_of(&path);
    assert!(pcm.len() as f64 >= probed * 48_000.0 * 0.95, "audio covers the recording");
    let mid = &pcm[(3.0 * 48_000.0) as usize..(3.5 * 48_000.0) as usize];
    let levels = tone_levels(mid, &[440.0, 660.0, 880.0]);
    eprintln!("tone levels mid-recording: {levels:?}");
    assert!(levels.iter().all(|&l| l > 0.2), "all three tones in the recorded mix: {levels:?}");
    green.close().await;
    blue.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_recording_cut_by_sigkill_still_plays() {
    let dir = recordings_dir("kill");
    let server = server_recording_to(&dir, "");
    let red = server.join("crash", publisher("red", RED, 440.0)).await;
    assert!(red.wait_connected(Duration::from_secs(10)).await);
    let (status, started) = request(reqwest::Method::POST, format!("{}/rooms/crash/recording", server.url)).await;
    assert_eq!(status, 201, "{started}");
    tokio::time::sleep(Duration::from_secs(4)).await;
    let killed = Command::new("kill").args(["-KILL", &server.pid().to_string()]).status().unwrap();
    assert!(killed.success());
    tokio::time::sleep(Duration::from_millis(300)).await;

    let path = dir.join(started["file"].as_str().unwrap());
    let probe = ffprobe(&path, true);
    let frames: u64 =
        stream(&probe, "video").expect("video stream")["nb_read_frames"].as_str().unwrap().parse().unwrap();
    let audio: u64 =
        stream(&probe, "audio").expect("audio stream")["nb_read_frames"].as_str().unwrap().parse().unwrap();
    eprintln!("after SIGKILL at ~4 s: {frames} video frames, {audio} audio frames decodable");
    assert!(frames >= 60, "at least 2 s of video survive: {frames} frames");
    assert!(audio >= 100, "at least 2 s of audio survive: {audio} frames");
    let first = frame_at(&path, 0.5, 1280, 720);
    assert_grid(&first, &[RED], 1, "truncated file");
    red.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn recording_errors_are_clear() {
    let dir = recordings_dir("errors");
    let server = server_recording_to(&dir, "");
    let url = |p: &str| format!("{}{p}", server.url);
    let (status, body) = request(reqwest::Method::POST, url("/rooms/nobody/recording")).await;
    assert_eq!((status, body["error"].is_string()), (404, true), "{body}");
    let (status, _) = request(reqwest::Method::DELETE, url("/rooms/nobody/recording")).await;
    assert_eq!(status, 404);

    let viewer = server.join("errs", ClientOptions { video_color: None, tone_hz: None, ..Default::default() }).await;
    assert!(viewer.wait_connected(Duration::from_secs(10)).await);
    let (status, body) = request(reqwest::Method::DELETE, url("/rooms/errs/recording")).await;
    assert_eq!(status, 404, "stop when not recording: {body}");
    let (status, _) = request(reqwest::Method::POST, url("/rooms/errs/recording")).await;
    assert_eq!(status, 201);
    let (status, body) = request(reqwest::Method::POST, url("/rooms/errs/recording")).await;
    assert_eq!(status, 409, "recording twice: {body}");
    let (status, _) = request(reqwest::Method::DELETE, url("/rooms/errs/recording")).await;
    assert_eq!(status, 200);

    for path in [
        "/recordings/unknown.webm",
        "/recordings/..%2F..%2FCargo.toml",
        "/recordings/..%2Fetc%2Fpasswd",
        "/recordings/%2E%2E%2FCargo.toml",
        "/recordings/a/../../Cargo.toml",
        "/recordings/.hidden.webm",
        "/recordings/Cargo.toml",
    ] {
        let r = reqwest::get(url(path)).await.unwrap();
        let status = r.status().as_u16();
        let body: Value = serde_json::from_str(&r.text().await.unwrap()).unwrap_or(Value::Null);
        assert!(status == 404 && body["error"].is_string(), "{path}: {status} {body}");
    }
    viewer.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unwritable_directory_fails_the_recording_not_the_conference() {
    let blocker = recordings_dir("blocked");
    std::fs::write(&blocker, b"a file where the directory should be").unwrap();
    let server = server_recording_to(&blocker, "");
    let red = server.join("blocked", publisher("red", RED, 440.0)).await;
    let viewer = server.join("blocked", ClientOptions { video_color: None, tone_hz: None, ..Default::default() }).await;
    assert!(viewer.wait_connected(Duration::from_secs(10)).await);
    let (status, body) = request(reqwest::Method::POST, format!("{}/rooms/blocked/recording", server.url)).await;
    assert_eq!(status, 500, "{body}");
    assert!(body["error"].as_str().unwrap().contains("not writable"), "{body}");
    let (_, state) = server.get_json("/rooms/blocked").await;
    assert_eq!(state["participants"].as_array().map(Vec::len), Some(2), "the conference goes on: {state}");
    // The composite keeps coming (how fast is the benchmark's business, not this test's).
    let before = viewer.received.frames_decoded();
    let goes_on = common::eventually(Duration::from_secs(5), || async {
        let now = viewer.received.frames_decoded();
        if now > before + 15 { Ok(()) } else { Err(format!("{} frames decoded since", now - before)) }
    })
    .await;
    assert!(goes_on.is_ok(), "the viewer still gets the composite: {goes_on:?}");
    std::fs::remove_file(&blocker).unwrap();
    red.close().await;
    viewer.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn auto_recording_of_an_audio_only_room_is_finalized_when_it_empties() {
    let dir = recordings_dir("auto");
    let server = server_recording_to(&dir, "auto = true\n");
    let talker = server
        .join("talk", ClientOptions { video_color: None, tone_hz: Some(440.0), audio_only: true, ..Default::default() })
        .await;
    assert!(talker.wait_connected(Duration::from_secs(10)).await);
    let (_, state) = server.get_json("/rooms/talk").await;
    assert_eq!(state["recording"]["video"], false, "recording from the first join, audio only: {state}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(talker.leave().await.unwrap(), 204);

    // The room empties and closes; the file is then final.
    common::eventually(Duration::from_secs(10), || async {
        match server.get_json("/rooms/talk").await.0 {
            404 => Ok(()),
            s => Err(format!("room still there ({s})")),
        }
    })
    .await
    .expect("room closes");
    let (_, listed) = server.get_json("/recordings").await;
    let file = listed[0]["file"].as_str().expect("one recording listed").to_owned();
    let probe = ffprobe(&dir.join(&file), false);
    assert!(stream(&probe, "video").is_none(), "no video track in an audio-only recording");
    assert_eq!(stream(&probe, "audio").expect("audio")["codec_name"], "opus");
    let seconds: f64 = probe["format"]["duration"].as_str().expect("finalized with a duration").parse().unwrap();
    assert!((2.5..4.5).contains(&seconds), "about 3 s recorded: {seconds}");
}

/// Times (seconds from the file's start) at which the picture's centre turns bright,
/// from ffmpeg's own frame timestamps.
fn video_brightening(path: &Path) -> Option<f64> {
    let out = Command::new("ffmpeg")
        .args(["-v", "info", "-i"])
        .arg(path)
        .args(["-map", "0:v", "-vf", "crop=64:64:608:328,showinfo", "-f", "null", "-"])
        .output()
        .expect("run ffmpeg");
    let log = String::from_utf8_lossy(&out.stderr);
    log.lines().filter(|l| l.contains("Parsed_showinfo")).find_map(|l| {
        let pts: f64 = l.split("pts_time:").nth(1)?.split_whitespace().next()?.parse().ok()?;
        let mean: f64 = l.split("mean:[").nth(1)?.split_whitespace().next()?.parse().ok()?;
        (mean > 128.0).then_some(pts)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn recorded_audio_and_video_are_in_sync() {
    let dir = recordings_dir("sync");
    let server = server_recording_to(&dir, "");
    let options = ClientOptions { start_muted: true, ..publisher("cue", 0x000080, 440.0) };
    let sender = server.join("sync", options).await;
    assert!(sender.wait_connected(Duration::from_secs(10)).await);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (status, started) = request(reqwest::Method::POST, format!("{}/rooms/sync/recording", server.url)).await;
    assert_eq!(status, 201);
    tokio::time::sleep(Duration::from_secs(2)).await;
    // Camera turns white and the tone starts at the same instant.
    sender.cue(0xffffff);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (status, _) = request(reqwest::Method::DELETE, format!("{}/rooms/sync/recording", server.url)).await;
    assert_eq!(status, 200);

    let path = dir.join(started["file"].as_str().unwrap());
    let video_onset = video_brightening(&path).expect("the picture turns white in the recording");
    let pcm = audio_of(&path);
    let window = 240; // 5 ms
    let audio_onset = pcm
        .chunks(window)
        .position(|w| (w.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / w.len() as f64).sqrt() > 1000.0)
        .map(|i| (i * window) as f64 / 48_000.0)
        .expect("the tone starts in the recording");
    let skew_ms = (audio_onset - video_onset) * 1000.0;
    eprintln!(
        "cue in the recording: video at {video_onset:.3} s, audio at {audio_onset:.3} s, audio - video = {skew_ms:.0} ms"
    );
    assert!(skew_ms.abs() <= 80.0, "audio/video skew {skew_ms:.0} ms exceeds 80 ms");
    sender.close().await;
}

/// Starts a recording with a JSON body.
async fn start_with(server: &Server, room: &str, body: &str) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(format!("{}/rooms/{room}/recording", server.url))
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .expect("request");
    let status = r.status().as_u16();
    (status, serde_json::from_str(&r.text().await.unwrap_or_default()).unwrap_or(Value::Null))
}

/// `{"format": "mp4"}`: H.264 + Opus in fragmented MP4, decodable by independent
/// tools, served as `video/mp4`; one cut by SIGKILL still plays.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_mp4_recording_holds_h264_and_opus_and_survives_a_crash() {
    let dir = recordings_dir("mp4");
    let mut server = server_recording_to(&dir, "");
    let red = server.join("mp4", publisher("red", RED, 440.0)).await;
    let green = server.join("mp4", publisher("green", GREEN, 660.0)).await;
    for c in [&red, &green] {
        assert!(c.wait_connected(Duration::from_secs(10)).await);
    }
    let (status, body) = start_with(&server, "mp4", r#"{"format": "avi"}"#).await;
    assert_eq!(status, 400, "{body}");
    let (status, started) = start_with(&server, "mp4", r#"{"format": "mp4"}"#).await;
    assert_eq!(status, 201, "{started}");
    let file = started["file"].as_str().unwrap().to_owned();
    assert!(file.ends_with(".mp4"), "{file}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (status, stopped) = request(reqwest::Method::DELETE, format!("{}/rooms/mp4/recording", server.url)).await;
    assert_eq!(status, 200, "{stopped}");

    let path = dir.join(&file);
    let probe = ffprobe(&path, false);
    let video = stream(&probe, "video").expect("video stream");
    assert_eq!(video["codec_name"], "h264");
    assert_eq!(video["profile"], "Constrained Baseline");
    assert_eq!((video["width"].as_u64(), video["height"].as_u64()), (Some(1280), Some(720)));
    assert_eq!(stream(&probe, "audio").expect("audio stream")["codec_name"], "opus");
    let discoverer = Command::new("gst-discoverer-1.0").arg(&path).output().expect("run gst-discoverer-1.0");
    let report = String::from_utf8_lossy(&discoverer.stdout);
    assert!(
        discoverer.status.success() && report.contains("H.264") && report.contains("Opus"),
        "{report}\n{}",
        String::from_utf8_lossy(&discoverer.stderr)
    );
    assert_grid(&frame_at(&path, 1.5, 1280, 720), &[RED, GREEN], 2, "mp4");
    let pcm = audio_of(&path);
    let levels = tone_levels(&pcm[48_000..(48_000 + 24_000).min(pcm.len())], &[440.0, 660.0]);
    assert!(levels.iter().all(|&l| l > 0.2), "both tones in the MP4's full mix: {levels:?}");
    let download = reqwest::get(format!("{}/recordings/{file}", server.url)).await.unwrap();
    assert_eq!(download.status(), 200);
    assert_eq!(download.headers()["content-type"], "video/mp4");

    // A second one, cut short by SIGKILL.
    let (status, started) = start_with(&server, "mp4", r#"{"format": "mp4"}"#).await;
    assert_eq!(status, 201, "{started}");
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(Command::new("kill").args(["-KILL", &server.pid().to_string()]).status().unwrap().success());
    let _ = tokio::task::block_in_place(|| server.wait_exit(Duration::from_secs(5)));
    let path = dir.join(started["file"].as_str().unwrap());
    let probe = ffprobe(&path, true);
    let frames: u64 = stream(&probe, "video").expect("video")["nb_read_frames"].as_str().unwrap().parse().unwrap();
    eprintln!("MP4 after SIGKILL at ~4 s: {frames} video frames decodable");
    assert!(frames >= 60, "at least 2 s of video survive: {frames} frames");
    assert_grid(&frame_at(&path, 0.5, 1280, 720), &[RED, GREEN], 2, "truncated mp4");
    red.close().await;
    green.close().await;
}
