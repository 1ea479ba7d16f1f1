//! `mcu-bench connect`: how reliably and how fast joins connect. Each join is a real
//! webrtc-rs peer offering audio and video (send and receive, like a browser); it
//! times offer-to-answer (the HTTP join), answer-to-ICE-connected and
//! answer-to-DTLS-connected (peer connection `connected`), then leaves. Joins run
//! `concurrency` at a time, spread over rooms of `room_size`. An optional CPU hog
//! (busy loops on every core) shows the figures on a starved machine.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use webrtc::ice_transport::ice_connection_state::RTCIceConnectionState;
use webrtc::peer_connection::configuration::RTCConfiguration;
use webrtc::peer_connection::peer_connection_state::RTCPeerConnectionState;
use webrtc::rtp_transceiver::RTCRtpTransceiverInit;
use webrtc::rtp_transceiver::rtp_codec::RTPCodecType;
use webrtc::rtp_transceiver::rtp_transceiver_direction::RTCRtpTransceiverDirection;

use super::sys::percentile;

/// What to run.
#[derive(Debug, Clone)]
pub struct ConnectPlan {
    /// Server base URL.
    pub url: String,
    /// Joins in all.
    pub joins: usize,
    /// Joins in flight at once.
    pub concurrency: usize,
    /// Joins per room (rooms are `{room}-0`, `{room}-1`, ...).
    pub room_size: usize,
    /// Room name prefix.
    pub room: String,
    /// A join not connected this long after its answer counts as failed.
    pub timeout: Duration,
    /// Offer audio only (no video m-line).
    pub audio_only: bool,
}

/// One join's outcome. Times are from the moment the offer was posted / the answer
/// arrived; `None` where that step was never reached.
#[derive(Debug, Clone)]
pub struct JoinTiming {
    /// Sequence number of the join.
    pub index: usize,
    /// HTTP join round trip (offer posted to answer received), ms.
    pub offer_to_answer_ms: Option<f64>,
    /// Answer received to ICE `connected`, ms.
    pub answer_to_ice_ms: Option<f64>,
    /// Answer received to peer connection `connected` (DTLS done), ms.
    pub answer_to_connected_ms: Option<f64>,
    /// Why it failed, if it did.
    pub error: Option<String>,
}

/// A hog of every core: busy loops until dropped.
pub struct CpuHog {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl CpuHog {
    /// Starts one busy thread per core.
    pub fn start() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..cores)
            .map(|_| {
                let stop = Arc::clone(&stop);
                std::thread::spawn(move || {
                    let mut x = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        for _ in 0..10_000 {
                            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
                        }
                    }
                })
            })
            .collect();
        Self { stop, threads }
    }
}

impl Drop for CpuHog {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Runs the plan; returns every join's timing in join order.
pub async fn run(plan: &ConnectPlan) -> Vec<JoinTiming> {
    let loopback = is_loopback(&plan.url);
    let api = match crate::client::new_api(loopback) {
        Ok(api) => Arc::new(api),
        Err(e) => {
            return (0..plan.joins)
                .map(|index| JoinTiming {
                    index,
                    offer_to_answer_ms: None,
                    answer_to_ice_ms: None,
                    answer_to_connected_ms: None,
                    error: Some(e.to_string()),
                })
                .collect();
        }
    };
    let http = reqwest::Client::new();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..plan.concurrency.max(1) {
        let (api, http, next, plan) = (Arc::clone(&api), http.clone(), Arc::clone(&next), plan.clone());
        workers.push(tokio::spawn(async move {
            let mut done = Vec::new();
            loop {
                let index = next.fetch_add(1, Ordering::SeqCst);
                if index >= plan.joins {
                    return done;
                }
                let room = format!("{}-{}", plan.room, index / plan.room_size.max(1));
                done.push(join_once(&api, &http, &plan, &room, index).await);
            }
        }));
    }
    let mut all = Vec::new();
    for w in workers {
        if let Ok(done) = w.await {
            all.extend(done);
        }
    }
    all.sort_by_key(|t| t.index);
    all
}

fn is_loopback(url: &str) -> bool {
    let host = url.split("://").nth(1).unwrap_or(url).split(['/', ':']).next().unwrap_or("");
    host == "localhost" || host.starts_with("127.")
}

async fn join_once(
    api: &webrtc::api::API,
    http: &reqwest::Client,
    plan: &ConnectPlan,
    room: &str,
    index: usize,
) -> JoinTiming {
    let mut timing = JoinTiming {
        index,
        offer_to_answer_ms: None,
        answer_to_ice_ms: None,
        answer_to_connected_ms: None,
        error: None,
    };
    let pc = match api.new_peer_connection(RTCConfiguration::default()).await {
        Ok(pc) => Arc::new(pc),
        Err(e) => {
            timing.error = Some(format!("peer connection: {e}"));
            return timing;
        }
    };
    let (ice_tx, mut ice_rx) = watch::channel(RTCIceConnectionState::New);
    pc.on_ice_connection_state_change(Box::new(move |s| {
        let _ = ice_tx.send(s);
        Box::pin(async {})
    }));
    let (pc_tx, mut pc_rx) = watch::channel(RTCPeerConnectionState::New);
    pc.on_peer_connection_state_change(Box::new(move |s| {
        let _ = pc_tx.send(s);
        Box::pin(async {})
    }));
    let result = negotiate_and_wait(&pc, http, plan, room, &mut timing, &mut ice_rx, &mut pc_rx).await;
    if let Err(e) = result {
        timing.error = Some(e);
    }
    let _ = pc.close().await;
    timing
}

async fn negotiate_and_wait(
    pc: &Arc<webrtc::peer_connection::RTCPeerConnection>,
    http: &reqwest::Client,
    plan: &ConnectPlan,
    room: &str,
    timing: &mut JoinTiming,
    ice: &mut watch::Receiver<RTCIceConnectionState>,
    state: &mut watch::Receiver<RTCPeerConnectionState>,
) -> Result<(), String> {
    let kinds: &[RTPCodecType] =
        if plan.audio_only { &[RTPCodecType::Audio] } else { &[RTPCodecType::Audio, RTPCodecType::Video] };
    for &kind in kinds {
        let init = RTCRtpTransceiverInit { direction: RTCRtpTransceiverDirection::Sendrecv, send_encodings: vec![] };
        pc.add_transceiver_from_kind(kind, Some(init)).await.map_err(|e| format!("transceiver: {e}"))?;
    }
    let offer = pc.create_offer(None).await.map_err(|e| format!("create offer: {e}"))?;
    let mut gathered = pc.gathering_complete_promise().await;
    pc.set_local_description(offer).await.map_err(|e| format!("set local: {e}"))?;
    if tokio::time::timeout(Duration::from_secs(10), gathered.recv()).await.is_err() {
        return Err("client ICE gathering did not complete in 10 s".into());
    }
    let offer_sdp = pc.local_description().await.map(|d| d.sdp).ok_or("no local description")?;

    let posted = Instant::now();
    let response = http
        .post(format!("{}/rooms/{room}/join?name=connect-{}", plan.url, timing.index))
        .header("content-type", "application/sdp")
        .body(offer_sdp)
        .send()
        .await
        .map_err(|e| format!("POST join: {e}"))?;
    let status = response.status().as_u16();
    let location = response.headers().get("location").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let body = response.text().await.map_err(|e| format!("join body: {e}"))?;
    let answered = Instant::now();
    timing.offer_to_answer_ms = Some(ms(answered - posted));
    if status != 201 {
        return Err(format!("join answered {status}: {body}"));
    }
    crate::client::apply_answer(pc, &body).await.map_err(|e| format!("applying the answer: {e}"))?;

    let deadline = tokio::time::Instant::now() + plan.timeout;
    let waited = async {
        loop {
            if timing.answer_to_ice_ms.is_none()
                && matches!(*ice.borrow(), RTCIceConnectionState::Connected | RTCIceConnectionState::Completed)
            {
                timing.answer_to_ice_ms = Some(ms(answered.elapsed()));
            }
            match *state.borrow() {
                RTCPeerConnectionState::Connected => {
                    timing.answer_to_connected_ms = Some(ms(answered.elapsed()));
                    return Ok(());
                }
                RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed => {
                    return Err(format!("peer connection {}", *state.borrow()));
                }
                _ => {}
            }
            tokio::select! {
                _ = ice.changed() => {}
                _ = state.changed() => {}
            }
        }
    };
    let outcome = match tokio::time::timeout_at(deadline, waited).await {
        Ok(r) => r,
        Err(_) => Err(format!(
            "not connected {} s after the answer (ICE {}, peer {})",
            plan.timeout.as_secs(),
            *ice.borrow(),
            *state.borrow()
        )),
    };
    if let Some(location) = location {
        let _ = http.delete(format!("{}{location}", plan.url)).send().await;
    }
    outcome
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Summary figures of a run.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ConnectSummary {
    /// Joins attempted.
    pub joins: usize,
    /// Joins in flight at once.
    pub concurrency: usize,
    /// Whether the CPU hog ran.
    pub hog: bool,
    /// Joins that reached `connected`.
    pub connected: usize,
    /// p50, p90, p99, max of offer-to-answer (ms).
    pub offer_to_answer_ms: [f64; 4],
    /// p50, p90, p99, max of answer-to-ICE-connected (ms).
    pub answer_to_ice_ms: [f64; 4],
    /// p50, p90, p99, max of answer-to-connected (ms).
    pub answer_to_connected_ms: [f64; 4],
    /// The first few failures.
    pub failures: Vec<String>,
}

impl ConnectSummary {
    /// Summarises `timings`.
    pub fn of(timings: &[JoinTiming], concurrency: usize, hog: bool) -> Self {
        let stats = |pick: fn(&JoinTiming) -> Option<f64>| {
            let values: Vec<f64> = timings.iter().filter_map(pick).collect();
            [
                percentile(&values, 50.0),
                percentile(&values, 90.0),
                percentile(&values, 99.0),
                values.iter().copied().fold(0.0, f64::max),
            ]
        };
        Self {
            joins: timings.len(),
            concurrency,
            hog,
            connected: timings.iter().filter(|t| t.answer_to_connected_ms.is_some()).count(),
            offer_to_answer_ms: stats(|t| t.offer_to_answer_ms),
            answer_to_ice_ms: stats(|t| t.answer_to_ice_ms),
            answer_to_connected_ms: stats(|t| t.answer_to_connected_ms),
            failures: timings
                .iter()
                .filter_map(|t| t.error.as_ref().map(|e| format!("join {}: {e}", t.index)))
                .take(10)
                .collect(),
        }
    }

    /// One table row (Markdown).
    pub fn row(&self) -> String {
        let f = |v: [f64; 4]| format!("{:.0} / {:.0} / {:.0} / {:.0}", v[0], v[1], v[2], v[3]);
        format!(
            "| {} | {} | {} | {}/{} ({:.1} %) | {} | {} | {} |",
            self.joins,
            self.concurrency,
            if self.hog { "yes" } else { "no" },
            self.connected,
            self.joins,
            100.0 * self.connected as f64 / self.joins.max(1) as f64,
            f(self.offer_to_answer_ms),
            f(self.answer_to_ice_ms),
            f(self.answer_to_connected_ms),
        )
    }

    /// The header of [`Self::row`]'s table.
    pub fn header() -> &'static str {
        "| joins | at once | CPU hog | connected | offer→answer ms (p50/p90/p99/max) | answer→ICE connected ms | answer→connected (DTLS) ms |\n\
         | --- | --- | --- | --- | --- | --- | --- |"
    }
}

/// A real offer (audio and video, send and receive, loopback candidates) from a
/// webrtc-rs peer that is closed right after: for tests that only need the SDP.
pub async fn sample_offer() -> String {
    let Ok(api) = crate::client::new_api(true) else { return String::new() };
    let Ok(pc) = api.new_peer_connection(RTCConfiguration::default()).await else { return String::new() };
    for kind in [RTPCodecType::Audio, RTPCodecType::Video] {
        let init = RTCRtpTransceiverInit { direction: RTCRtpTransceiverDirection::Sendrecv, send_encodings: vec![] };
        let _ = pc.add_transceiver_from_kind(kind, Some(init)).await;
    }
    let mut sdp = String::new();
    if let Ok(offer) = pc.create_offer(None).await {
        let mut gathered = pc.gathering_complete_promise().await;
        if pc.set_local_description(offer).await.is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(10), gathered.recv()).await;
            sdp = pc.local_description().await.map(|d| d.sdp).unwrap_or_default();
        }
    }
    let _ = pc.close().await;
    sdp
}

/// The benchmark's join runs against `url`: 1000 joins one after another and 200
/// with 50 at once, each without and with a CPU hog.
pub async fn bench_rows(url: &str) -> Vec<ConnectSummary> {
    let mut rows = Vec::new();
    for (joins, concurrency) in [(1000, 1), (200, 50)] {
        for hog in [false, true] {
            let plan = ConnectPlan {
                url: url.to_owned(),
                joins,
                concurrency,
                room_size: 10,
                room: format!("connect-{joins}x{concurrency}-{}", if hog { "hog" } else { "quiet" }),
                timeout: Duration::from_secs(10),
                audio_only: false,
            };
            let cpu_hog = hog.then(CpuHog::start);
            let timings = run(&plan).await;
            drop(cpu_hog);
            let summary = ConnectSummary::of(&timings, concurrency, hog);
            eprintln!("bench:   {}", summary.row());
            for f in &summary.failures {
                eprintln!("bench:     failed: {f}");
            }
            rows.push(summary);
        }
    }
    rows
}
