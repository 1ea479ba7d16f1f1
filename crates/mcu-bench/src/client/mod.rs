//! A synthetic participant: a real webrtc-rs peer that joins through the HTTP API,
//! sends a generated camera (VP8, GStreamer `videotestsrc`) and a sine tone (Opus),
//! and decodes what it receives. Used by the integration tests and the load
//! generator; it is a client of the contract, not of the server's internals.

mod answer;
mod receive;
mod send;

use std::sync::Arc;
use std::time::Duration;

use webrtc::api::APIBuilder;
use webrtc::api::interceptor_registry::register_default_interceptors;
use webrtc::api::media_engine::MediaEngine;
use webrtc::api::setting_engine::SettingEngine;
use webrtc::ice::network_type::NetworkType;
use webrtc::ice_transport::ice_server::RTCIceServer;
use webrtc::interceptor::registry::Registry;
use webrtc::peer_connection::RTCPeerConnection;
use webrtc::peer_connection::configuration::RTCConfiguration;
use webrtc::peer_connection::peer_connection_state::RTCPeerConnectionState;
use webrtc::peer_connection::policy::ice_transport_policy::RTCIceTransportPolicy;
use webrtc::rtp_transceiver::RTCRtpTransceiverInit;
use webrtc::rtp_transceiver::rtp_codec::{RTCRtpCodecParameters, RTPCodecType};
use webrtc::rtp_transceiver::rtp_transceiver_direction::RTCRtpTransceiverDirection;
use webrtc::track::track_local::TrackLocal;
use webrtc::track::track_local::track_local_static_sample::TrackLocalStaticSample;

pub use answer::{apply_answer, split_candidates};
pub(crate) use receive::jitter_counts;
pub use receive::{DecodedFrame, FrameTap, Received, VideoLosses};

use mcu::media::codec::VideoCodec;
use mcu::rtc::codecs::{VP8_PAYLOAD_TYPE, h264_fmtp, opus_capability, video_capability};

/// Payload type of the H.264 line this project's clients offer (as registered by the
/// server's codec table, Constrained Baseline 42e01f).
const CLIENT_H264_PAYLOAD_TYPE: u8 = 102;

/// The video line a synthetic participant offers for `codec`.
fn client_video_capability(codec: VideoCodec) -> webrtc::rtp_transceiver::rtp_codec::RTCRtpCodecCapability {
    match codec {
        VideoCodec::Vp8 => video_capability(codec, ""),
        VideoCodec::H264 => video_capability(codec, &h264_fmtp("42e01f")),
    }
}

/// What a synthetic participant sends and wants.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Display name (`?name=`).
    pub name: Option<String>,
    /// Camera colour as 0xRRGGBB (a solid picture), or `None` to send no video.
    pub video_color: Option<u32>,
    /// Camera size and rate.
    pub video_size: (u32, u32, u32),
    /// Sine tone frequency in Hz, or `None` to send no audio.
    pub tone_hz: Option<f32>,
    /// Receive the mix (decode video, decode audio) or only send.
    pub receive: bool,
    /// Only use loopback candidates (tests on one machine).
    pub loopback_only: bool,
    /// Bearer token for servers that require one.
    pub token: Option<String>,
    /// STUN/TURN servers (e.g. from `GET /ice-servers`).
    pub ice_servers: Vec<RTCIceServer>,
    /// Use relayed (TURN) candidates only, like `iceTransportPolicy: "relay"`.
    pub relay_only: bool,
    /// Start with the tone muted (see [`Client::cue`]).
    pub start_muted: bool,
    /// Negotiate no video at all (no video m-line), like an audio-only phone client.
    pub audio_only: bool,
    /// The one video codec offered (sent and received), like a browser after
    /// `setCodecPreferences`.
    pub video_codec: VideoCodec,
    /// `?quality=` of the join (`None`: the server's default, `auto`).
    pub quality: Option<String>,
    /// Where the offer goes: the conference join, WHIP or WHEP.
    pub endpoint: Endpoint,
    /// Decode the composite it receives (else only count its frames: load tests).
    pub decode_video: bool,
    /// The camera's `videotestsrc` pattern (and any further `videotestsrc`
    /// properties): `solid-color` (in `video_color`) by default; moving content such
    /// as `smpte horizontal-speed=4` keeps an encoder near its bitrate.
    pub video_pattern: String,
    /// A picture panned one pixel a frame instead of the test pattern (content whose
    /// every frame a receiver can find again: quality measurements).
    pub video_picture: Option<Arc<crate::picture::PannedPicture>>,
    /// The camera encoder's bitrate (`None`: 300 kb/s, a thin uplink).
    pub video_bitrate_bps: Option<u32>,
    /// The RFC 6464 audio level (0..=127, -dBov) put in every audio packet instead of
    /// the one measured on the tone, to tell what the server reads from the header
    /// apart from what it decodes. `None`: the measured level, as browsers send.
    pub claimed_audio_level: Option<u8>,
    /// Opus in-band FEC in the sent audio (VoIP mode, as browsers send speech),
    /// so a receiver can rebuild a lost packet from the next one.
    pub audio_fec: bool,
    /// Rewrites the offer before it is sent and the answer before it is applied
    /// (e.g. to route the media through an impairing relay).
    pub sdp_rewrite: Option<SdpRewrite>,
}

/// Whether the SDP being rewritten is the client's offer or the server's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SdpKind {
    /// The client's offer.
    Offer,
    /// The server's answer.
    Answer,
}

/// A function rewriting an SDP.
pub type RewriteFn = dyn Fn(SdpKind, &str) -> String + Send + Sync;

/// A rewrite of the offer and the answer, see [`ClientOptions::sdp_rewrite`].
#[derive(Clone)]
pub struct SdpRewrite(pub Arc<RewriteFn>);

impl std::fmt::Debug for SdpRewrite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SdpRewrite")
    }
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            name: None,
            video_color: Some(0xff0000),
            video_size: (320, 240, 30),
            tone_hz: Some(440.0),
            receive: true,
            loopback_only: true,
            token: None,
            ice_servers: Vec::new(),
            relay_only: false,
            start_muted: false,
            audio_only: false,
            video_codec: VideoCodec::Vp8,
            quality: None,
            endpoint: Endpoint::Join,
            decode_video: true,
            video_pattern: "solid-color".into(),
            video_picture: None,
            video_bitrate_bps: None,
            claimed_audio_level: None,
            audio_fec: false,
            sdp_rewrite: None,
        }
    }
}

/// The endpoint a synthetic peer posts its offer to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Endpoint {
    /// `POST /rooms/{room}/join`: a conference participant.
    #[default]
    Join,
    /// `POST /whip/{room}`: a WHIP publisher.
    Whip,
    /// `POST /whep/{room}`: a WHEP viewer.
    Whep,
}

/// Why a synthetic participant could not join.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// webrtc-rs failed.
    #[error("webrtc: {0}")]
    WebRtc(#[from] webrtc::Error),
    /// The HTTP request failed.
    #[error("http: {0}")]
    Http(#[from] reqwest::Error),
    /// The server refused the join.
    #[error("join refused: {status} {body}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// Response body.
        body: String,
    },
    /// GStreamer or Opus failed.
    #[error("media: {0}")]
    Media(String),
}

/// A joined synthetic participant.
pub struct Client {
    /// Its peer connection.
    pub pc: Arc<RTCPeerConnection>,
    /// `Location` of the participant resource (for DELETE).
    pub location: String,
    /// What it has received and decoded so far.
    pub received: Arc<Received>,
    /// The SDP answer exactly as the server sent it.
    pub answer: String,
    base_url: String,
    senders: Vec<send::SenderHandle>,
    token: Option<String>,
}

impl Client {
    /// Joins `room` on the server at `base_url` (e.g. `http://127.0.0.1:8080`).
    pub async fn join(base_url: &str, room: &str, options: ClientOptions) -> Result<Self, ClientError> {
        mcu::media::init().map_err(|e| ClientError::Media(e.to_string()))?;
        let rtc_config = RTCConfiguration {
            ice_servers: options.ice_servers.clone(),
            ice_transport_policy: if options.relay_only {
                RTCIceTransportPolicy::Relay
            } else {
                RTCIceTransportPolicy::All
            },
            ..Default::default()
        };
        let pc = Arc::new(new_api(options.loopback_only)?.new_peer_connection(rtc_config).await?);
        let received = Arc::new(Received::default());
        let direction =
            if options.receive { RTCRtpTransceiverDirection::Sendrecv } else { RTCRtpTransceiverDirection::Sendonly };
        let mut senders = Vec::new();

        let media_lines =
            [(RTPCodecType::Audio, options.tone_hz.is_some()), (RTPCodecType::Video, options.video_color.is_some())];
        let mut audio_out = None;
        let mut video_out = None;
        for (kind, sends) in media_lines {
            if options.audio_only && kind == RTPCodecType::Video {
                continue;
            }
            let capability = match kind {
                RTPCodecType::Audio => opus_capability(),
                _ => client_video_capability(options.video_codec),
            };
            let transceiver = if sends {
                let track =
                    Arc::new(TrackLocalStaticSample::new(capability.clone(), format!("{kind}"), "synthetic".into()));
                let t = pc
                    .add_transceiver_from_track(
                        Arc::clone(&track) as Arc<dyn TrackLocal + Send + Sync>,
                        Some(RTCRtpTransceiverInit { direction, send_encodings: vec![] }),
                    )
                    .await?;
                let slot = if kind == RTPCodecType::Audio { &mut audio_out } else { &mut video_out };
                *slot = Some((track, t.sender().await));
                t
            } else if options.receive {
                let init =
                    RTCRtpTransceiverInit { direction: RTCRtpTransceiverDirection::Recvonly, send_encodings: vec![] };
                pc.add_transceiver_from_kind(kind, Some(init)).await?
            } else {
                continue;
            };
            if kind == RTPCodecType::Video {
                let payload_type = match options.video_codec {
                    VideoCodec::Vp8 => VP8_PAYLOAD_TYPE,
                    VideoCodec::H264 => CLIENT_H264_PAYLOAD_TYPE,
                };
                let preferred = RTCRtpCodecParameters { capability, payload_type, ..Default::default() };
                transceiver.set_codec_preferences(vec![preferred]).await?;
            }
        }
        if options.receive {
            receive::attach(&pc, Arc::clone(&received), options.decode_video);
        }

        let offer = pc.create_offer(None).await?;
        let mut gathered = pc.gathering_complete_promise().await;
        pc.set_local_description(offer).await?;
        // An offer without candidates cannot connect (there is no trickle): fail
        // here rather than join with it.
        if tokio::time::timeout(Duration::from_secs(10), gathered.recv()).await.is_err() {
            let _ = pc.close().await;
            return Err(ClientError::Media("ICE gathering did not complete within 10 s".into()));
        }
        let mut offer_sdp = pc.local_description().await.map(|d| d.sdp).unwrap_or_default();
        if let Some(SdpRewrite(rewrite)) = &options.sdp_rewrite {
            offer_sdp = rewrite(SdpKind::Offer, &offer_sdp);
        }

        let mut query = Vec::new();
        if let Some(name) = &options.name {
            query.push(format!("name={name}"));
        }
        if let Some(quality) = &options.quality {
            query.push(format!("quality={quality}"));
        }
        let mut url = match options.endpoint {
            Endpoint::Join => format!("{base_url}/rooms/{room}/join"),
            Endpoint::Whip => format!("{base_url}/whip/{room}"),
            Endpoint::Whep => format!("{base_url}/whep/{room}"),
        };
        if !query.is_empty() {
            url.push_str(&format!("?{}", query.join("&")));
        }
        let mut request = reqwest::Client::new().post(url).header("content-type", "application/sdp").body(offer_sdp);
        if let Some(token) = &options.token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        let location = response.headers().get("location").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        let mut body = response.text().await?;
        if status != 201 {
            let _ = pc.close().await;
            return Err(ClientError::Refused { status, body });
        }
        if let Some(SdpRewrite(rewrite)) = &options.sdp_rewrite {
            body = rewrite(SdpKind::Answer, &body);
        }
        apply_answer(&pc, &body).await?;

        if let (Some(color), Some((track, sender))) = (options.video_color, video_out) {
            let camera = send::Camera {
                color,
                size: options.video_size,
                codec: options.video_codec,
                pattern: &options.video_pattern,
                picture: options.video_picture.clone(),
                bitrate_bps: options.video_bitrate_bps.unwrap_or(300_000),
            };
            senders.push(send::start_video(track, sender, camera)?);
        }
        if let (Some(hz), Some((track, _))) = (options.tone_hz, audio_out) {
            let tone = send::Tone {
                muted: options.start_muted,
                claimed_level: options.claimed_audio_level,
                fec: options.audio_fec,
            };
            senders.push(send::start_tone(track, hz, tone)?);
        }
        Ok(Self { pc, location, received, answer: body, base_url: base_url.to_owned(), senders, token: options.token })
    }

    /// Waits until the peer connection is connected.
    pub async fn wait_connected(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while tokio::time::Instant::now() < deadline {
            if self.pc.connection_state() == RTCPeerConnectionState::Connected {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    /// Leaves with `DELETE` and closes the connection; returns the DELETE status.
    pub async fn leave(self) -> Result<u16, ClientError> {
        let mut request = reqwest::Client::new().delete(format!("{}{}", self.base_url, self.location));
        if let Some(token) = &self.token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let status = request.send().await?.status();
        self.close().await;
        Ok(status.as_u16())
    }

    /// At one instant, switches the camera to `color` and unmutes the tone: a cue to
    /// find in both media downstream (audio/video sync checks).
    pub fn cue(&self, color: u32) {
        for s in &self.senders {
            s.set_color(color);
            s.set_muted(false);
        }
    }

    /// Stops sending video (the track stays negotiated, packets stop: a stalled camera).
    pub fn stop_video(&mut self) {
        self.senders.retain(|s| !matches!(s, send::SenderHandle::Video(_)));
    }

    /// Asks the server for a keyframe of the composite (RTCP PLI on the received
    /// video track); returns false before the track arrived.
    pub async fn request_keyframe(&self) -> bool {
        let Some(ssrc) = self.received.video_ssrc() else { return false };
        let pli = webrtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication {
            sender_ssrc: 0,
            media_ssrc: ssrc,
        };
        self.pc.write_rtcp(&[Box::new(pli)]).await.is_ok()
    }

    /// Closes the connection without telling the server (like a vanished client
    /// that still sends a DTLS close).
    pub async fn close(self) {
        drop(self.senders);
        let _ = self.pc.close().await;
    }
}

/// A client-side webrtc-rs API: the same codecs as the server, default interceptors;
/// loopback candidates only when `loopback_only`. Shared with the load generator.
pub fn new_api(loopback_only: bool) -> Result<webrtc::api::API, ClientError> {
    let mut media = MediaEngine::default();
    mcu::rtc::codecs::register(&mut media)?;
    let registry = register_default_interceptors(Registry::new(), &mut media)?;
    let mut settings = SettingEngine::default();
    settings.set_network_types(vec![NetworkType::Udp4]);
    if loopback_only {
        settings.set_include_loopback_candidate(true);
        settings.set_interface_filter(Box::new(|name: &str| name == "lo"));
    }
    Ok(APIBuilder::new()
        .with_media_engine(media)
        .with_interceptor_registry(registry)
        .with_setting_engine(settings)
        .build())
}
