//! A peer that writes whatever RTP and RTCP its test makes: payloads, SSRCs and rates
//! no encoder would produce. It joins like any client (one VP8 sendrecv m-line) and
//! sends its packets through the real SRTP session.

use std::any::Any;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use webrtc::peer_connection::RTCPeerConnection;
use webrtc::peer_connection::configuration::RTCConfiguration;
use webrtc::peer_connection::peer_connection_state::RTCPeerConnectionState;
use webrtc::rtp::packet::Packet;
use webrtc::rtp_transceiver::RTCRtpTransceiverInit;
use webrtc::rtp_transceiver::rtp_codec::{RTCRtpCodecCapability, RTCRtpCodecParameters, RTPCodecType};
use webrtc::rtp_transceiver::rtp_transceiver_direction::RTCRtpTransceiverDirection;
use webrtc::track::track_local::{TrackLocal, TrackLocalContext, TrackLocalWriter};

/// A video track handing its test the negotiated writer, payload type and SSRC, and
/// leaving every header field as the test wrote it.
#[derive(Default)]
struct RawTrack {
    bound: Mutex<Option<Binding>>,
}

#[derive(Clone)]
struct Binding {
    writer: Arc<dyn TrackLocalWriter + Send + Sync>,
    payload_type: u8,
    ssrc: u32,
}

#[async_trait::async_trait]
impl TrackLocal for RawTrack {
    async fn bind(&self, t: &TrackLocalContext) -> webrtc::error::Result<RTCRtpCodecParameters> {
        let codec = t
            .codec_parameters()
            .iter()
            .find(|c| c.capability.mime_type.eq_ignore_ascii_case("video/VP8"))
            .cloned()
            .ok_or(webrtc::Error::ErrUnsupportedCodec)?;
        *self.bound.lock().unwrap() =
            Some(Binding { writer: t.write_stream(), payload_type: codec.payload_type, ssrc: t.ssrc() });
        Ok(codec)
    }

    async fn unbind(&self, _: &TrackLocalContext) -> webrtc::error::Result<()> {
        *self.bound.lock().unwrap() = None;
        Ok(())
    }

    fn id(&self) -> &str {
        "raw"
    }

    fn rid(&self) -> Option<&str> {
        None
    }

    fn stream_id(&self) -> &str {
        "raw"
    }

    fn kind(&self) -> RTPCodecType {
        RTPCodecType::Video
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// A connected peer sending raw packets.
pub struct RawPeer {
    pc: Arc<RTCPeerConnection>,
    track: Arc<RawTrack>,
    /// SSRC of the composite the server sends this peer.
    pub server_video_ssrc: Option<u32>,
}

impl RawPeer {
    /// Joins `room` through `POST {path}` (e.g. `/rooms/r/join` or `/whip/r`) and waits
    /// until connected.
    pub async fn join(base_url: &str, path: &str) -> Result<Self, String> {
        mcu::media::init().map_err(|e| e.to_string())?;
        let api = mcu_bench::client::new_api(true).map_err(|e| e.to_string())?;
        let pc = Arc::new(api.new_peer_connection(RTCConfiguration::default()).await.map_err(|e| e.to_string())?);
        let track = Arc::new(RawTrack::default());
        let init = RTCRtpTransceiverInit { direction: RTCRtpTransceiverDirection::Sendrecv, send_encodings: vec![] };
        let transceiver = pc
            .add_transceiver_from_track(Arc::clone(&track) as Arc<dyn TrackLocal + Send + Sync>, Some(init))
            .await
            .map_err(|e| e.to_string())?;
        let vp8 = RTCRtpCodecParameters {
            capability: RTCRtpCodecCapability {
                mime_type: "video/VP8".into(),
                clock_rate: 90_000,
                ..Default::default()
            },
            payload_type: 96,
            ..Default::default()
        };
        transceiver.set_codec_preferences(vec![vp8]).await.map_err(|e| e.to_string())?;
        let offer = pc.create_offer(None).await.map_err(|e| e.to_string())?;
        let mut gathered = pc.gathering_complete_promise().await;
        pc.set_local_description(offer).await.map_err(|e| e.to_string())?;
        let _ = tokio::time::timeout(Duration::from_secs(10), gathered.recv()).await;
        let offer = pc.local_description().await.map(|d| d.sdp).unwrap_or_default();
        let response = reqwest::Client::new()
            .post(format!("{base_url}{path}"))
            .header("content-type", "application/sdp")
            .body(offer)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        let answer = response.text().await.map_err(|e| e.to_string())?;
        if status != 201 {
            return Err(format!("{status}: {answer}"));
        }
        mcu_bench::client::apply_answer(&pc, &answer).await.map_err(|e| e.to_string())?;
        for _ in 0..100 {
            if pc.connection_state() == RTCPeerConnectionState::Connected && track.bound.lock().unwrap().is_some() {
                return Ok(Self { pc, track, server_video_ssrc: first_ssrc(&answer) });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(format!("not connected: {}", pc.connection_state()))
    }

    /// The negotiated VP8 payload type and this peer's SSRC.
    pub fn negotiated(&self) -> (u8, u32) {
        let bound = self.track.bound.lock().unwrap();
        let b = bound.as_ref().expect("bound");
        (b.payload_type, b.ssrc)
    }

    /// Sends one RTP packet as it is (SSRC and payload type included).
    pub async fn send_rtp(&self, packet: &Packet) -> Result<(), String> {
        let writer = self.track.bound.lock().unwrap().as_ref().map(|b| Arc::clone(&b.writer));
        let writer = writer.ok_or("unbound")?;
        writer.write_rtp(packet).await.map(|_| ()).map_err(|e| e.to_string())
    }

    /// Sends RTCP packets in one compound packet.
    pub async fn send_rtcp(
        &self,
        packets: &[Box<dyn webrtc::rtcp::packet::Packet + Send + Sync>],
    ) -> Result<(), String> {
        self.pc.write_rtcp(packets).await.map(|_| ()).map_err(|e| e.to_string())
    }

    /// The peer connection's state.
    pub fn state(&self) -> RTCPeerConnectionState {
        self.pc.connection_state()
    }

    /// Closes the peer connection.
    pub async fn close(self) {
        let _ = self.pc.close().await;
    }
}

/// The first `a=ssrc:` of the answer's video section.
fn first_ssrc(answer: &str) -> Option<u32> {
    let video = &answer[answer.find("m=video")?..];
    let line = video.lines().find(|l| l.starts_with("a=ssrc:"))?;
    line["a=ssrc:".len()..].split_whitespace().next()?.parse().ok()
}
