//! The `mcu-bench` command line: `load`, `connect` and `all`.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::{connect, content, load, media, peer, report, run};

/// `mcu-bench ...`
#[derive(clap::Parser, Debug)]
#[command(name = "mcu-bench", version, about = "Load generator and benchmarks of the mcu server")]
pub struct BenchArgs {
    #[command(subcommand)]
    command: BenchCommand,
}

#[derive(clap::Subcommand, Debug)]
enum BenchCommand {
    /// Join N synthetic participants to a running server and print what they get.
    Load(LoadArgs),
    /// Join real peers one after another or many at once and report how many
    /// connect and how fast (offer to answer, answer to ICE and DTLS connected).
    Connect(ConnectArgs),
    /// Run every benchmark against servers started here; print the figures and write
    /// BENCHMARKS.md and docs/bench/*.svg.
    All(AllArgs),
}

#[derive(clap::Args, Debug)]
struct AllArgs {
    /// The Markdown report.
    #[arg(long, default_value = "BENCHMARKS.md")]
    out: PathBuf,
    /// Where plots, raw results and the analysis note live.
    #[arg(long, default_value = "docs/bench")]
    plots: PathBuf,
    /// Where the pre-encoded media is cached.
    #[arg(long, default_value = "target/bench-media")]
    media_dir: PathBuf,
    /// Shorter windows (a smoke run; the figures are noisier).
    #[arg(long)]
    quick: bool,
    /// Only these parts (comma-separated: connect, encode, labels, whep, received, starved, mixing, join,
    /// profile, limit, capacity, audio); the others keep their figures from docs/bench/results.json.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Keep the work directory (server and Janus configuration, Janus log).
    #[arg(long)]
    keep: bool,
    /// Only re-render BENCHMARKS.md and the plots from docs/bench/results.json.
    #[arg(long)]
    render_only: bool,
}

#[derive(clap::Args, Debug)]
struct ConnectArgs {
    /// Server base URL, e.g. http://127.0.0.1:8080
    #[arg(long)]
    url: String,
    /// Joins in all.
    #[arg(short, long, default_value_t = 100)]
    n: usize,
    /// Joins in flight at once.
    #[arg(long, default_value_t = 1)]
    concurrency: usize,
    /// Joins per room (rooms are ROOM-0, ROOM-1, ...).
    #[arg(long, default_value_t = 10)]
    room_size: usize,
    /// Room name prefix.
    #[arg(long, default_value = "connect")]
    room: String,
    /// Seconds after the answer before a join that has not connected counts as failed.
    #[arg(long, default_value_t = 10)]
    timeout: u64,
    /// Offer audio only.
    #[arg(long)]
    audio_only: bool,
    /// Run busy loops on every core meanwhile (a starved machine).
    #[arg(long)]
    hog: bool,
    /// Print every join's timings.
    #[arg(long)]
    each: bool,
}

#[derive(clap::Args, Debug)]
struct LoadArgs {
    /// Server base URL, e.g. http://127.0.0.1:8080
    #[arg(long)]
    url: String,
    /// Room name (with --rooms > 1: a prefix, rooms are ROOM-0, ROOM-1, ...).
    #[arg(long, default_value = "bench")]
    room: String,
    /// Participants per room.
    #[arg(short, long, default_value_t = 4)]
    n: usize,
    /// Number of rooms.
    #[arg(long, default_value_t = 1)]
    rooms: usize,
    /// Measurement seconds (after everyone receives).
    #[arg(long, default_value_t = 20.0)]
    duration: f64,
    /// Send audio only.
    #[arg(long)]
    audio_only: bool,
    /// Participants per room who talk; the others send an open microphone's hiss
    /// (default: everyone talks).
    #[arg(long)]
    talkers: Option<usize>,
    /// PID of the server, to report its CPU and memory.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Where the pre-encoded media is cached.
    #[arg(long, default_value = "target/bench-media")]
    media_dir: PathBuf,
    /// What the senders' video shows: `zoneplate` (detail everywhere, all moving) or
    /// `talkinghead` (a still picture with a moving middle third).
    #[arg(long, default_value = "zoneplate", value_parser = parse_content)]
    content: content::Content,
}

fn parse_content(s: &str) -> Result<content::Content, String> {
    content::Content::from_slug(s).ok_or_else(|| format!("unknown content {s:?} (zoneplate, talkinghead)"))
}

/// Runs `mcu-bench`.
pub fn main(args: BenchArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match args.command {
            BenchCommand::Load(a) => run_load(a).await,
            BenchCommand::Connect(a) => run_connect(a).await,
            BenchCommand::All(a) => run_all(a).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run_load(a: LoadArgs) -> Result<(), String> {
    let media = media::prepare(&a.media_dir, a.content)?;
    eprintln!(
        "bench: media ready: {} VP8 frames ({:.0} kbit/s), {} Opus frames",
        media.video.len(),
        media.video_bitrate / 1000.0,
        media.audio.len()
    );
    let url = a.url.trim_end_matches('/').to_owned();
    let shape = load::Shape { rooms: a.rooms, per_room: a.n, video: !a.audio_only, talkers: a.talkers };
    let room = a.room.clone();
    let rooms = a.rooms;
    let target = move |r: usize| peer::Target::Mcu {
        base: url.clone(),
        room: if rooms == 1 { room.clone() } else { format!("{room}-{r}") },
    };
    let t0 = std::time::Instant::now();
    let load = load::start(target, shape, &media).await?;
    eprintln!("bench: {} participants joined in {} ms", a.n * a.rooms, t0.elapsed().as_millis());
    if !load.wait_flowing(shape.video, std::time::Duration::from_secs(15)).await {
        eprintln!("bench: warning: not every participant receives media yet");
    }
    let window = load.measure(a.server_pid, a.duration).await;
    println!("{}", window.summary());
    load.stop().await;
    Ok(())
}

async fn run_connect(a: ConnectArgs) -> Result<(), String> {
    let plan = connect::ConnectPlan {
        url: a.url.trim_end_matches('/').to_owned(),
        joins: a.n,
        concurrency: a.concurrency,
        room_size: a.room_size,
        room: a.room,
        timeout: std::time::Duration::from_secs(a.timeout),
        audio_only: a.audio_only,
    };
    let hog = a.hog.then(connect::CpuHog::start);
    let timings = connect::run(&plan).await;
    drop(hog);
    if a.each {
        for t in &timings {
            println!("{t:?}");
        }
    }
    let summary = connect::ConnectSummary::of(&timings, plan.concurrency, a.hog);
    println!("{}\n{}", connect::ConnectSummary::header(), summary.row());
    for f in &summary.failures {
        println!("failed: {f}");
    }
    if summary.connected == summary.joins {
        Ok(())
    } else {
        Err(format!("{} joins did not connect", summary.joins - summary.connected))
    }
}

async fn run_all(a: AllArgs) -> Result<(), String> {
    let command = "make bench";
    let results: run::Results = if a.render_only {
        let text = std::fs::read_to_string(a.plots.join("results.json")).map_err(|e| e.to_string())?;
        serde_json::from_str(&text).map_err(|e| e.to_string())?
    } else {
        let timing = if a.quick {
            run::Timing { warmup: 2.0, mixing: 6.0, capacity: 5.0, audio: 5.0, joins: 4 }
        } else {
            run::Timing { warmup: 5.0, mixing: 20.0, capacity: 10.0, audio: 15.0, joins: 10 }
        };
        let work = std::env::temp_dir().join(format!("mcu-bench-{}", std::process::id()));
        std::fs::create_dir_all(&work).map_err(|e| e.to_string())?;
        let started = std::time::Instant::now();
        let mut results = run::all(&a.media_dir, &work, timing, &a.only).await?;
        if !a.only.is_empty()
            && let Ok(text) = std::fs::read_to_string(a.plots.join("results.json"))
            && let Ok(earlier) = serde_json::from_str::<run::Results>(&text)
        {
            results.keep_unmeasured(earlier, |part| a.only.iter().any(|o| o == part));
        }
        if a.keep {
            eprintln!("bench: work directory kept: {}", work.display());
        } else {
            let _ = std::fs::remove_dir_all(&work);
        }
        eprintln!("bench: done in {:.0} s", started.elapsed().as_secs_f64());
        results
    };
    println!("## Headline\n\n{}\n{}", report::headline(&results), report::tables(&results));
    report::write(&results, &a.out, &a.plots, command)?;
    eprintln!("bench: wrote {} and {}/", a.out.display(), a.plots.display());
    Ok(())
}
