//! A WHIP publisher and a WHEP viewer built on GStreamer's `webrtcbin` (libnice,
//! GStreamer's own DTLS/SRTP and RTP stack): a WebRTC implementation independent of
//! the server's webrtc-rs, speaking to it only through SDP over HTTP.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_sdp as gst_sdp;
use gstreamer_webrtc as gst_webrtc;

use crate::client::{DecodedFrame, FrameTap, VideoLosses};

const VP8_CAPS: &str = "application/x-rtp,media=video,encoding-name=VP8,payload=96,clock-rate=90000";
const OPUS_CAPS: &str =
    "application/x-rtp,media=audio,encoding-name=OPUS,payload=111,clock-rate=48000,encoding-params=(string)2";

/// How a viewer depayloads its video: what it does about a packet it never got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LossHandling {
    /// GStreamer's defaults: the frames after a gap are decoded as they are (against
    /// a reference that lacks what was lost), and no keyframe is asked for.
    DecodeThrough,
    /// `wait-for-keyframe` and `request-keyframe`: after a gap nothing is shown until
    /// the keyframe the viewer asks for (PLI), as browsers do.
    WaitForKeyframe,
}

/// A `webrtcbin` session set up over WHIP or WHEP.
pub struct WebrtcbinSession {
    pipeline: gst::Pipeline,
    /// The session resource (the `Location` of the `POST`).
    pub location: String,
    /// The decoded composite (I420), for a viewer.
    pub video: Arc<FrameTap>,
    /// Keyframes the viewer's depayloader asked for.
    keyframe_requests: Arc<AtomicU64>,
    /// Decoded audio (48 kHz mono), for a viewer.
    pub audio: Arc<Mutex<Vec<i16>>>,
}

impl WebrtcbinSession {
    /// Publishes a solid `color` (0xRRGGBB) at 320x240 in VP8 and a `tone_hz` sine in
    /// Opus to `{base}/whip/{room}`. Blocking.
    pub fn publish(base: &str, room: &str, color: u32, tone_hz: u32) -> Result<Self, String> {
        Self::publish_cameras(base, room, &[color], tone_hz)
    }

    /// Publishes one 320x240 VP8 m-line per colour of `colors` (a peer with several
    /// cameras) and a tone. Blocking.
    pub fn publish_cameras(base: &str, room: &str, colors: &[u32], tone_hz: u32) -> Result<Self, String> {
        let cameras: Vec<(u32, u32, u32)> = colors.iter().map(|&c| (c, 320, 240)).collect();
        Self::publish_sized(base, room, &cameras, tone_hz)
    }

    /// Publishes one VP8 m-line per `(colour, width, height)` and a tone. Blocking.
    pub fn publish_sized(base: &str, room: &str, cameras: &[(u32, u32, u32)], tone_hz: u32) -> Result<Self, String> {
        let mut description = String::from("webrtcbin name=rtc bundle-policy=max-bundle ");
        for &(color, width, height) in cameras {
            description.push_str(&format!(
                "videotestsrc is-live=true pattern=solid-color foreground-color={:#010x} \
                   ! video/x-raw,width={width},height={height},framerate=30/1 ! videoconvert \
                   ! vp8enc deadline=1 target-bitrate=600000 keyframe-max-dist=30 ! rtpvp8pay pt=96 \
                   ! {VP8_CAPS} ! rtc. ",
                0xff00_0000u32 | color
            ));
        }
        description.push_str(&format!(
            "audiotestsrc is-live=true wave=sine freq={tone_hz} volume=0.5 ! audioconvert ! audioresample \
               ! audio/x-raw,rate=48000,channels=1 ! opusenc ! rtpopuspay pt=111 ! {OPUS_CAPS} ! rtc."
        ));
        let pipeline = launch(&description)?;
        let rtc = pipeline.by_name("rtc").ok_or("no webrtcbin")?;
        pipeline.set_state(gst::State::Playing).map_err(|e| format!("cannot play: {e}"))?;
        // The offer declares each stream's SSRC only once its payloader has fixed its
        // caps (the server has no other way to tell the bundled streams apart).
        let deadline = Instant::now() + Duration::from_secs(5);
        while !rtc
            .sink_pads()
            .iter()
            .all(|pad| pad.current_caps().and_then(|c| c.structure(0).map(|s| s.has_field("ssrc"))).unwrap_or(false))
        {
            if Instant::now() > deadline {
                return Err("the payloaders did not negotiate their caps in 5 s".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // Linked sources make send-recv transceivers: a WHIP offer only sends.
        for index in 0..=cameras.len() as u32 {
            let transceiver =
                rtc.emit_by_name::<Option<gst_webrtc::WebRTCRTPTransceiver>>("get-transceiver", &[&(index as i32)]);
            if let Some(t) = transceiver {
                t.set_property("direction", gst_webrtc::WebRTCRTPTransceiverDirection::Sendonly);
            }
        }
        Self::negotiate(pipeline, &rtc, &format!("{base}/whip/{room}"))
    }

    /// Watches `{base}/whep/{room}` with GStreamer's defaults: decodes the composite
    /// and the mix to PCM. Blocking.
    pub fn view(base: &str, room: &str) -> Result<Self, String> {
        Self::view_with(base, room, LossHandling::DecodeThrough)
    }

    /// Watches `{base}/whep/{room}`, handling lost video packets as `losses` says.
    /// Blocking.
    pub fn view_with(base: &str, room: &str, losses: LossHandling) -> Result<Self, String> {
        gst::init().map_err(|e| e.to_string())?;
        let pipeline = gst::Pipeline::new();
        let rtc = gst::ElementFactory::make("webrtcbin")
            .property_from_str("bundle-policy", "max-bundle")
            .build()
            .map_err(|e| e.to_string())?;
        pipeline.add(&rtc).map_err(|e| e.to_string())?;
        for caps in [VP8_CAPS, OPUS_CAPS] {
            let caps = caps.parse::<gst::Caps>().map_err(|e| e.to_string())?;
            rtc.emit_by_name::<gst_webrtc::WebRTCRTPTransceiver>(
                "add-transceiver",
                &[&gst_webrtc::WebRTCRTPTransceiverDirection::Recvonly, &caps],
            );
        }
        let sinks = Sinks {
            video: Arc::new(FrameTap::default()),
            keyframe_requests: Arc::new(AtomicU64::new(0)),
            audio: Arc::new(Mutex::new(Vec::new())),
        };
        let (pad_sinks, bin) = (sinks.clone(), pipeline.clone());
        rtc.connect_pad_added(move |_, pad| {
            if pad.direction() != gst::PadDirection::Src {
                return;
            }
            if let Err(e) = decode_into(&bin, pad, &pad_sinks, losses) {
                eprintln!("webrtcbin viewer: {e}");
            }
        });
        pipeline.set_state(gst::State::Playing).map_err(|e| format!("cannot play: {e}"))?;
        let mut session = Self::negotiate(pipeline, &rtc, &format!("{base}/whep/{room}"))?;
        session.video = sinks.video;
        session.keyframe_requests = sinks.keyframe_requests;
        session.audio = sinks.audio;
        Ok(session)
    }

    /// What the video jitter buffer of this viewer's RTP stack counted, and the
    /// keyframes it asked for.
    pub fn video_losses(&self) -> Option<VideoLosses> {
        let jitter = self.pipeline.iterate_recurse().into_iter().flatten().find(|e| {
            e.factory().is_some_and(|f| f.name() == "rtpjitterbuffer")
                && e.static_pad("src")
                    .and_then(|p| p.current_caps())
                    .and_then(|c| c.structure(0).and_then(|s| s.get::<String>("media").ok()))
                    .is_some_and(|m| m == "video")
        })?;
        let (lost, late) = crate::client::jitter_counts(&jitter);
        Some(VideoLosses { lost, late, keyframe_requests: self.keyframe_requests.load(Ordering::Relaxed) })
    }

    /// Offer, gather every candidate (the server takes no trickle), `POST`, answer.
    fn negotiate(pipeline: gst::Pipeline, rtc: &gst::Element, url: &str) -> Result<Self, String> {
        // Gather on loopback only, like the server under test (libnice skips loopback
        // when other interfaces exist).
        let ice = rtc.property::<gst::glib::Object>("ice-agent");
        if !ice.emit_by_name::<bool>("add-local-ip-address", &[&"127.0.0.1"]) {
            return Err("webrtcbin refused the loopback address".into());
        }
        let promise = gst::Promise::new();
        rtc.emit_by_name::<()>("create-offer", &[&None::<gst::Structure>, &promise]);
        promise.wait();
        let offer = promise
            .get_reply()
            .ok_or("no reply to create-offer")?
            .get::<gst_webrtc::WebRTCSessionDescription>("offer")
            .map_err(|e| format!("create-offer: {e}"))?;
        rtc.emit_by_name::<()>("set-local-description", &[&offer, &None::<gst::Promise>]);
        let deadline = Instant::now() + Duration::from_secs(10);
        while rtc.property::<gst_webrtc::WebRTCICEGatheringState>("ice-gathering-state")
            != gst_webrtc::WebRTCICEGatheringState::Complete
        {
            if Instant::now() > deadline {
                return Err("ICE gathering did not complete in 10 s".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let local = rtc
            .property::<Option<gst_webrtc::WebRTCSessionDescription>>("local-description")
            .ok_or("no local description")?;
        let sdp = local.sdp().as_text().map_err(|e| e.to_string())?;
        let (status, location, answer) = post_offer(url, sdp)?;
        if status != 201 {
            let _ = pipeline.set_state(gst::State::Null);
            return Err(format!("POST {url}: {status} {answer}"));
        }
        let message = gst_sdp::SDPMessage::parse_buffer(answer.as_bytes()).map_err(|e| e.to_string())?;
        let answer = gst_webrtc::WebRTCSessionDescription::new(gst_webrtc::WebRTCSDPType::Answer, message);
        rtc.emit_by_name::<()>("set-remote-description", &[&answer, &None::<gst::Promise>]);
        Ok(Self { pipeline, location, video: Arc::default(), keyframe_requests: Arc::default(), audio: Arc::default() })
    }

    /// The colour at `(x, y)` of the latest picture (averaged over 9x9 pixels).
    pub fn rgb_at(&self, x: u32, y: u32) -> Option<[u8; 3]> {
        self.video.latest().and_then(|f: DecodedFrame| f.rgb_at(x, y))
    }
}

impl Drop for WebrtcbinSession {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

fn launch(description: &str) -> Result<gst::Pipeline, String> {
    gst::init().map_err(|e| e.to_string())?;
    gst::parse::launch(description)
        .map_err(|e| format!("{description}: {e}"))?
        .downcast::<gst::Pipeline>()
        .map_err(|_| "not a pipeline".to_owned())
}

/// Where a viewer's decoded streams go.
#[derive(Clone)]
struct Sinks {
    video: Arc<FrameTap>,
    keyframe_requests: Arc<AtomicU64>,
    audio: Arc<Mutex<Vec<i16>>>,
}

/// A received stream, decoded into the viewer's sinks.
fn decode_into(pipeline: &gst::Pipeline, pad: &gst::Pad, sinks: &Sinks, losses: LossHandling) -> Result<(), String> {
    let caps = pad.current_caps().or_else(|| Some(pad.query_caps(None))).ok_or("no caps")?;
    let media = caps.structure(0).and_then(|s| s.get::<String>("media").ok()).unwrap_or_default();
    let description = match (media == "video", losses) {
        (true, LossHandling::DecodeThrough) => {
            "rtpvp8depay name=depay ! vp8dec ! videoconvert ! video/x-raw,format=I420 \
             ! appsink name=sink sync=false max-buffers=2 drop=true"
        }
        (true, LossHandling::WaitForKeyframe) => {
            "rtpvp8depay name=depay wait-for-keyframe=true request-keyframe=true ! vp8dec ! videoconvert \
             ! video/x-raw,format=I420 ! appsink name=sink sync=false max-buffers=2 drop=true"
        }
        (false, _) => {
            "rtpopusdepay ! opusdec ! audioconvert ! audioresample ! audio/x-raw,format=S16LE,rate=48000,channels=1 \
             ! appsink name=sink sync=false"
        }
    };
    let bin = gst::parse::bin_from_description(description, true).map_err(|e| e.to_string())?;
    let sink = bin.by_name("sink").and_then(|s| s.downcast::<gst_app::AppSink>().ok()).ok_or("no appsink")?;
    if media == "video" {
        let video = Arc::clone(&sinks.video);
        sink.set_callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |sink| {
                    video.push(sink.pull_sample().map_err(|_| gst::FlowError::Eos)?);
                    Ok(gst::FlowSuccess::Ok)
                })
                .build(),
        );
        if let Some(depay_sink) = bin.by_name("depay").and_then(|d| d.static_pad("sink")) {
            let requests = Arc::clone(&sinks.keyframe_requests);
            depay_sink.add_probe(gst::PadProbeType::EVENT_UPSTREAM, move |_, info| {
                if info.event().is_some_and(|e| gstreamer_video::UpstreamForceKeyUnitEvent::parse(e).is_ok()) {
                    requests.fetch_add(1, Ordering::Relaxed);
                }
                gst::PadProbeReturn::Ok
            });
        }
    } else {
        let audio = Arc::clone(&sinks.audio);
        sink.set_callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |sink| {
                    let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                    let buffer = sample.buffer().ok_or(gst::FlowError::Error)?;
                    let map = buffer.map_readable().map_err(|_| gst::FlowError::Error)?;
                    let mut pcm = audio.lock().unwrap_or_else(|p| p.into_inner());
                    pcm.extend(map.chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]])));
                    // Keep the last few seconds.
                    let excess = pcm.len().saturating_sub(48_000 * 4);
                    pcm.drain(..excess);
                    Ok(gst::FlowSuccess::Ok)
                })
                .build(),
        );
    }
    pipeline.add(&bin).map_err(|e| e.to_string())?;
    bin.sync_state_with_parent().map_err(|e| e.to_string())?;
    let sink_pad = bin.static_pad("sink").ok_or("bin has no sink pad")?;
    pad.link(&sink_pad).map_err(|e| format!("cannot link the received stream: {e:?}"))?;
    Ok(())
}

/// `POST`s an SDP offer; status, `Location` and body.
fn post_offer(url: &str, sdp: String) -> Result<(u16, String, String), String> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let response = reqwest::Client::new()
            .post(url)
            .header("content-type", "application/sdp")
            .body(sdp)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        let location = response.headers().get("location").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        Ok((status, location, response.text().await.map_err(|e| e.to_string())?))
    })
}
