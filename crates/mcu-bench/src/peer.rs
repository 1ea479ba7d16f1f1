//! A cheap synthetic participant for load: a real webrtc-rs peer that sends the
//! pre-encoded media at real time (answering PLI by skipping to the next keyframe) and
//! only counts what it receives (RTP packets, frames by marker bit, sequence gaps,
//! late audio). One participant per run is the probe: it also decodes the composite
//! and the mix and reads the senders' stamps (see [`super::probe`]).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use webrtc::media::Sample;
use webrtc::peer_connection::RTCPeerConnection;
use webrtc::peer_connection::configuration::RTCConfiguration;
use webrtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use webrtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use webrtc::rtp_transceiver::RTCRtpTransceiverInit;
use webrtc::rtp_transceiver::rtp_codec::RTPCodecType;
use webrtc::rtp_transceiver::rtp_sender::RTCRtpSender;
use webrtc::rtp_transceiver::rtp_transceiver_direction::RTCRtpTransceiverDirection;
use webrtc::track::track_local::TrackLocal;
use webrtc::track::track_local::track_local_static_sample::TrackLocalStaticSample;
use webrtc::track::track_remote::TrackRemote;

use super::media::{self, BenchMedia, Voice};
use super::probe::Probe;
use mcu::rtc::engine::{opus_capability, vp8_capability};

/// Nanoseconds since the first call in this process (a shared monotonic clock for
/// send and receive stamps).
pub fn now_ns() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

fn http() -> &'static reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT.get_or_init(reqwest::Client::new)
}

/// When each frame of the loops was last sent (ns, [`now_ns`]); 0 = never.
pub struct SendLog {
    /// Per video frame index.
    pub video: Vec<AtomicU64>,
    /// Per audio frame index.
    pub audio: Vec<AtomicU64>,
}

impl SendLog {
    fn new(media: &BenchMedia) -> Self {
        Self {
            video: (0..media.video.len()).map(|_| AtomicU64::new(0)).collect(),
            audio: (0..media.audio.len()).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

/// Counters of one received RTP stream.
#[derive(Default)]
pub struct StreamStats {
    /// Packets received.
    pub packets: AtomicU64,
    /// Packets with the marker bit (video: frames).
    pub frames: AtomicU64,
    /// Sequence numbers skipped (lost or not yet retransmitted).
    pub lost: AtomicU64,
    /// Inter-arrival times above 60 ms (audio).
    pub late: AtomicU64,
    /// Longest inter-arrival time since the last reset, in µs.
    pub max_gap_us: AtomicU64,
    /// When the first packet arrived (ns), 0 before.
    pub first_ns: AtomicU64,
}

/// A plain copy of [`StreamStats`] counters (for differences over a window).
#[derive(Debug, Clone, Copy, Default)]
pub struct Counts {
    /// Packets.
    pub packets: u64,
    /// Marker-bit packets.
    pub frames: u64,
    /// Skipped sequence numbers.
    pub lost: u64,
    /// Late (> 60 ms) arrivals.
    pub late: u64,
}

impl StreamStats {
    /// The counters now.
    pub fn counts(&self) -> Counts {
        Counts {
            packets: self.packets.load(Ordering::Relaxed),
            frames: self.frames.load(Ordering::Relaxed),
            lost: self.lost.load(Ordering::Relaxed),
            late: self.late.load(Ordering::Relaxed),
        }
    }
}

impl std::ops::Sub for Counts {
    type Output = Counts;
    fn sub(self, o: Counts) -> Counts {
        Counts {
            packets: self.packets - o.packets,
            frames: self.frames - o.frames,
            lost: self.lost - o.lost,
            late: self.late - o.late,
        }
    }
}

impl std::ops::Add for Counts {
    type Output = Counts;
    fn add(self, o: Counts) -> Counts {
        Counts {
            packets: self.packets + o.packets,
            frames: self.frames + o.frames,
            lost: self.lost + o.lost,
            late: self.late + o.late,
        }
    }
}

/// What a participant receives.
#[derive(Default)]
pub struct RecvStats {
    /// The composite.
    pub video: StreamStats,
    /// The mix.
    pub audio: StreamStats,
}

/// Where a participant joins.
#[derive(Clone, Debug)]
pub enum Target {
    /// This MCU: `POST {base}/rooms/{room}/join`.
    Mcu {
        /// `http://host:port`
        base: String,
        /// Room name.
        room: String,
    },
    /// A Janus AudioBridge room over the Janus HTTP API.
    Janus {
        /// `http://host:port/janus`
        base: String,
        /// AudioBridge room id.
        room: u64,
    },
}

/// What a participant sends and does.
#[derive(Clone)]
pub struct Spec {
    /// Send the VP8 loop.
    pub video: bool,
    /// Send the Opus loop.
    pub audio: bool,
    /// What its Opus loop carries.
    pub voice: Voice,
    /// Decode and analyse what comes back.
    pub probe: Option<Arc<Probe>>,
    /// Name shown in the room.
    pub name: String,
}

/// A joined load participant.
pub struct Participant {
    /// Its peer connection.
    pub pc: Arc<RTCPeerConnection>,
    /// Receive counters.
    pub stats: Arc<RecvStats>,
    /// Send times.
    pub log: Arc<SendLog>,
    /// When the offer was sent (ns).
    pub offer_sent_ns: u64,
    leave: Leave,
    stop: Arc<AtomicBool>,
}

enum Leave {
    Mcu(String),
    Janus(String),
}

/// A webrtc-rs API with the server's codecs, on loopback only (`loopback`) or on
/// every interface (Janus gathers no loopback candidates; traffic to the machine's
/// own address stays local all the same).
fn new_api(loopback: bool) -> Result<webrtc::api::API, String> {
    crate::client::new_api(loopback).map_err(|e| e.to_string())
}

impl Participant {
    /// Joins `target` sending and receiving what `spec` says.
    pub async fn join(target: &Target, spec: Spec, media: Arc<BenchMedia>) -> Result<Self, String> {
        let pc = Arc::new(
            new_api(matches!(target, Target::Mcu { .. }))?
                .new_peer_connection(RTCConfiguration::default())
                .await
                .map_err(|e| e.to_string())?,
        );
        let stats = Arc::new(RecvStats::default());
        let log = Arc::new(SendLog::new(&media));
        let mut tracks: [Option<(Arc<TrackLocalStaticSample>, Arc<RTCRtpSender>)>; 2] = [None, None];
        for (slot, kind, sends) in [(0, RTPCodecType::Audio, spec.audio), (1, RTPCodecType::Video, spec.video)] {
            if !sends {
                continue;
            }
            let capability = if kind == RTPCodecType::Audio { opus_capability() } else { vp8_capability() };
            let track = Arc::new(TrackLocalStaticSample::new(capability, format!("{kind}"), "bench".into()));
            let t = pc
                .add_transceiver_from_track(
                    Arc::clone(&track) as Arc<dyn TrackLocal + Send + Sync>,
                    Some(RTCRtpTransceiverInit {
                        direction: RTCRtpTransceiverDirection::Sendrecv,
                        send_encodings: vec![],
                    }),
                )
                .await
                .map_err(|e| e.to_string())?;
            tracks[slot] = Some((track, t.sender().await));
        }
        {
            let stats = Arc::clone(&stats);
            let probe = spec.probe.clone();
            let weak_pc = Arc::downgrade(&pc);
            pc.on_track(Box::new(move |track, _, _| {
                tokio::spawn(receive(track, Arc::clone(&stats), probe.clone(), weak_pc.clone()));
                Box::pin(async {})
            }));
        }
        let offer = pc.create_offer(None).await.map_err(|e| e.to_string())?;
        let mut gathered = pc.gathering_complete_promise().await;
        pc.set_local_description(offer).await.map_err(|e| e.to_string())?;
        if tokio::time::timeout(Duration::from_secs(10), gathered.recv()).await.is_err() {
            let _ = pc.close().await;
            return Err("ICE gathering did not complete within 10 s".into());
        }
        let offer_sdp = pc.local_description().await.map(|d| d.sdp).unwrap_or_default();
        let offer_sent_ns = now_ns();
        let signalled = match target {
            Target::Mcu { base, room } => join_mcu(base, room, &spec.name, offer_sdp).await,
            Target::Janus { base, room } => join_janus(base, *room, &spec.name, offer_sdp).await,
        };
        let (answer, leave) = match signalled {
            Ok(x) => x,
            Err(e) => {
                let _ = pc.close().await;
                return Err(e);
            }
        };
        crate::client::apply_answer(&pc, &answer).await.map_err(|e| e.to_string())?;
        let stop = Arc::new(AtomicBool::new(false));
        let [audio, video] = tracks;
        if let Some((_, sender)) = &audio {
            tokio::spawn(drain_rtcp(Arc::clone(sender), None));
        }
        let pli = Arc::new(AtomicBool::new(false));
        if let Some((_, sender)) = &video {
            tokio::spawn(drain_rtcp(Arc::clone(sender), Some(Arc::clone(&pli))));
        }
        tokio::spawn(send_loop(
            media,
            video.map(|(t, _)| t),
            audio.map(|(t, _)| t),
            spec.voice,
            Arc::clone(&log),
            pli,
            Arc::clone(&stop),
        ));
        Ok(Self { pc, stats, log, offer_sent_ns, leave, stop })
    }

    /// Leaves (DELETE, or destroying the Janus session) and closes the peer.
    pub async fn leave(self) {
        self.stop.store(true, Ordering::SeqCst);
        match &self.leave {
            Leave::Mcu(url) => {
                let _ = http().delete(url).send().await;
            }
            Leave::Janus(session_url) => {
                let _ = http()
                    .post(session_url)
                    .body(serde_json::json!({"janus": "destroy", "transaction": "bye"}).to_string())
                    .send()
                    .await;
            }
        }
        let _ = self.pc.close().await;
    }
}

async fn join_mcu(base: &str, room: &str, name: &str, offer: String) -> Result<(String, Leave), String> {
    let response = http()
        .post(format!("{base}/rooms/{room}/join?name={name}"))
        .header("content-type", "application/sdp")
        .body(offer)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let location = response.headers().get("location").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let body = response.text().await.map_err(|e| e.to_string())?;
    if status != 201 {
        return Err(format!("join refused: {status} {body}"));
    }
    Ok((body, Leave::Mcu(format!("{base}{location}"))))
}

/// One Janus API request; returns the JSON response.
pub async fn janus_post(url: &str, body: serde_json::Value) -> Result<serde_json::Value, String> {
    let text = http()
        .post(url)
        .body(body.to_string())
        .send()
        .await
        .map_err(|e| e.to_string())?
        .text()
        .await
        .map_err(|e| e.to_string())?;
    serde_json::from_str(&text).map_err(|e| format!("janus: {e}: {text}"))
}

/// Creates a Janus session with an AudioBridge handle: `(session url, handle url)`.
pub async fn janus_attach(base: &str) -> Result<(String, String), String> {
    let created = janus_post(base, serde_json::json!({"janus": "create", "transaction": "c"})).await?;
    let session = created["data"]["id"].as_u64().ok_or_else(|| format!("janus create: {created}"))?;
    let session_url = format!("{base}/{session}");
    let attached = janus_post(
        &session_url,
        serde_json::json!({"janus": "attach", "plugin": "janus.plugin.audiobridge", "transaction": "a"}),
    )
    .await?;
    let handle = attached["data"]["id"].as_u64().ok_or_else(|| format!("janus attach: {attached}"))?;
    Ok((session_url.clone(), format!("{session_url}/{handle}")))
}

async fn join_janus(base: &str, room: u64, name: &str, offer: String) -> Result<(String, Leave), String> {
    let (session_url, handle_url) = janus_attach(base).await?;
    let sent = janus_post(
        &handle_url,
        serde_json::json!({
            "janus": "message", "transaction": "j",
            "body": {"request": "join", "room": room, "display": name},
            "jsep": {"type": "offer", "sdp": offer},
        }),
    )
    .await?;
    if sent["janus"] != "ack" {
        return Err(format!("janus join: {sent}"));
    }
    // Every candidate is in the offer: tell Janus not to wait for trickled ones.
    janus_post(
        &handle_url,
        serde_json::json!({"janus": "trickle", "transaction": "t", "candidate": {"completed": true}}),
    )
    .await?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let text = http()
            .get(format!("{session_url}?maxev=5"))
            .send()
            .await
            .map_err(|e| e.to_string())?
            .text()
            .await
            .map_err(|e| e.to_string())?;
        let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
        let events = if value.is_array() { value.as_array().cloned().unwrap_or_default() } else { vec![value] };
        for event in events {
            if let Some(sdp) = event["jsep"]["sdp"].as_str() {
                if std::env::var_os("MCU_BENCH_DEBUG").is_some() {
                    eprintln!("janus answer:\n{sdp}");
                }
                return Ok((sdp.to_owned(), Leave::Janus(session_url)));
            }
            if event["plugindata"]["data"]["error"].is_string() {
                return Err(format!("janus join: {event}"));
            }
        }
    }
    Err("janus join: no answer within 10 s".into())
}

/// Reads RTCP from a sender (the interceptors need it read); flags PLI/FIR.
async fn drain_rtcp(sender: Arc<RTCRtpSender>, pli: Option<Arc<AtomicBool>>) {
    while let Ok((packets, _)) = sender.read_rtcp().await {
        if let Some(pli) = &pli
            && packets.iter().any(|p| {
                p.as_any().downcast_ref::<PictureLossIndication>().is_some()
                    || p.as_any().downcast_ref::<FullIntraRequest>().is_some()
            })
        {
            pli.store(true, Ordering::Relaxed);
        }
    }
}

/// Sends the loops at real time until `stop`.
async fn send_loop(
    media: Arc<BenchMedia>,
    video: Option<Arc<TrackLocalStaticSample>>,
    audio: Option<Arc<TrackLocalStaticSample>>,
    voice: Voice,
    log: Arc<SendLog>,
    pli: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
) {
    let frame_period = Duration::from_nanos(1_000_000_000 / u64::from(media::FPS));
    let mut video_tick = tokio::time::interval(frame_period);
    let mut audio_tick = tokio::time::interval(Duration::from_millis(20));
    let audio_loop = match voice {
        Voice::Talking => &media.audio,
        Voice::Clicking => &media.audio_click,
        Voice::Silent => &media.audio_silent,
    };
    let (mut vi, mut ai) = (0usize, 0usize);
    while !stop.load(Ordering::Relaxed) {
        tokio::select! {
            _ = video_tick.tick(), if video.is_some() => {
                let Some(track) = &video else { continue };
                if pli.swap(false, Ordering::Relaxed) && !media.video[vi].keyframe {
                    // Answer a keyframe request with the next keyframe of the loop.
                    while !media.video[vi].keyframe {
                        vi = (vi + 1) % media.video.len();
                    }
                }
                log.video[vi].store(now_ns(), Ordering::Relaxed);
                let sample = Sample { data: media.video[vi].data.clone(), duration: frame_period, ..Default::default() };
                if track.write_sample(&sample).await.is_err() {
                    break;
                }
                vi = (vi + 1) % media.video.len();
            }
            _ = audio_tick.tick(), if audio.is_some() => {
                let Some(track) = &audio else { continue };
                log.audio[ai].store(now_ns(), Ordering::Relaxed);
                let sample =
                    Sample { data: audio_loop[ai].clone(), duration: Duration::from_millis(20), ..Default::default() };
                if track.write_sample(&sample).await.is_err() {
                    break;
                }
                ai = (ai + 1) % audio_loop.len();
            }
        }
    }
}

/// Counts a received track; the probe also decodes it.
async fn receive(
    track: Arc<TrackRemote>,
    stats: Arc<RecvStats>,
    probe: Option<Arc<Probe>>,
    pc: std::sync::Weak<RTCPeerConnection>,
) {
    let kind = track.kind();
    let s = if kind == RTPCodecType::Video { &stats.video } else { &stats.audio };
    let mut sink = match (&probe, kind) {
        (Some(p), RTPCodecType::Video) => p.video_sink(track.ssrc(), pc).ok(),
        _ => None,
    };
    let mut audio_decoder = match (&probe, kind) {
        (Some(_), RTPCodecType::Audio) => opus::Decoder::new(48_000, opus::Channels::Mono).ok(),
        _ => None,
    };
    let mut pcm = vec![0i16; 5760];
    let mut last_seq: Option<u16> = None;
    let mut last_ns = 0u64;
    while let Ok((packet, _)) = track.read_rtp().await {
        let now = now_ns();
        s.packets.fetch_add(1, Ordering::Relaxed);
        if packet.header.marker {
            s.frames.fetch_add(1, Ordering::Relaxed);
        }
        let seq = packet.header.sequence_number;
        if let Some(last) = last_seq {
            let delta = seq.wrapping_sub(last);
            if (1..0x8000).contains(&delta) {
                s.lost.fetch_add(u64::from(delta - 1), Ordering::Relaxed);
                last_seq = Some(seq);
            }
        } else {
            last_seq = Some(seq);
            s.first_ns.store(now, Ordering::Relaxed);
        }
        if last_ns != 0 {
            let gap_us = (now - last_ns) / 1000;
            s.max_gap_us.fetch_max(gap_us, Ordering::Relaxed);
            if kind == RTPCodecType::Audio && gap_us > 60_000 {
                s.late.fetch_add(1, Ordering::Relaxed);
            }
        }
        last_ns = now;
        if let Some(sink) = &mut sink {
            sink.push(&packet);
        }
        if let (Some(decoder), Some(p)) = (&mut audio_decoder, &probe)
            && let Ok(n) = decoder.decode(&packet.payload, &mut pcm, false)
        {
            p.audio_decoded(&pcm[..n], now);
        }
    }
}
