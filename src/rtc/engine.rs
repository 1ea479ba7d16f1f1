//! The one webrtc-rs `API` of the process (composition root): codecs, interceptors
//! (NACK, RTCP reports), and the transport settings — one UDP port for all media
//! (ICE UDP mux) and the IP advertised in candidates.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use webrtc::api::API;
use webrtc::api::APIBuilder;
use webrtc::api::interceptor_registry::register_default_interceptors;
use webrtc::api::media_engine::{MIME_TYPE_OPUS, MIME_TYPE_VP8, MediaEngine};
use webrtc::api::setting_engine::SettingEngine;
use webrtc::ice::network_type::NetworkType;
use webrtc::ice::udp_network::UDPNetwork;
use webrtc::ice_transport::ice_candidate_type::RTCIceCandidateType;
use webrtc::interceptor::registry::Registry;
use webrtc::rtp_transceiver::RTCPFeedback;
use webrtc::rtp_transceiver::rtp_codec::{RTCRtpCodecCapability, RTCRtpCodecParameters, RTPCodecType};

use crate::config::RtcConfig;

/// Payload type the server uses for Opus (remapped per peer to the offer's).
pub const OPUS_PAYLOAD_TYPE: u8 = 111;
/// Payload type the server uses for VP8.
pub const VP8_PAYLOAD_TYPE: u8 = 96;

/// The codec the mixed audio is sent in.
pub fn opus_capability() -> RTCRtpCodecCapability {
    RTCRtpCodecCapability {
        mime_type: MIME_TYPE_OPUS.to_owned(),
        clock_rate: 48_000,
        channels: 2,
        sdp_fmtp_line: "minptime=10;useinbandfec=1".to_owned(),
        rtcp_feedback: vec![],
    }
}

/// The codec the composite is sent in.
pub fn vp8_capability() -> RTCRtpCodecCapability {
    RTCRtpCodecCapability {
        mime_type: MIME_TYPE_VP8.to_owned(),
        clock_rate: 90_000,
        channels: 0,
        sdp_fmtp_line: String::new(),
        rtcp_feedback: vec![
            RTCPFeedback { typ: "ccm".to_owned(), parameter: "fir".to_owned() },
            RTCPFeedback { typ: "goog-remb".to_owned(), parameter: String::new() },
        ],
    }
}

/// Why the WebRTC stack could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The media UDP port could not be bound.
    #[error("cannot bind media UDP port {port}: {reason}")]
    Bind {
        /// The port asked for.
        port: u16,
        /// The OS error.
        reason: String,
    },
    /// webrtc-rs refused the codec or interceptor setup.
    #[error("WebRTC setup failed: {0}")]
    Setup(String),
}

/// The shared WebRTC stack and the port it listens on.
pub struct RtcEngine {
    /// Builds every peer connection.
    pub api: API,
    /// The media UDP port actually bound (useful when configured as 0).
    pub udp_port: u16,
}

impl RtcEngine {
    /// Binds the media port and builds the API.
    pub async fn build(config: &RtcConfig) -> Result<Self, EngineError> {
        let mut media = MediaEngine::default();
        let setup = |e: webrtc::Error| EngineError::Setup(e.to_string());
        media
            .register_codec(
                RTCRtpCodecParameters {
                    capability: opus_capability(),
                    payload_type: OPUS_PAYLOAD_TYPE,
                    ..Default::default()
                },
                RTPCodecType::Audio,
            )
            .map_err(setup)?;
        media
            .register_codec(
                RTCRtpCodecParameters {
                    capability: vp8_capability(),
                    payload_type: VP8_PAYLOAD_TYPE,
                    ..Default::default()
                },
                RTPCodecType::Video,
            )
            .map_err(setup)?;
        let registry = register_default_interceptors(Registry::new(), &mut media).map_err(setup)?;

        let bind_addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), config.udp_port);
        let socket = tokio::net::UdpSocket::bind(bind_addr)
            .await
            .map_err(|e| EngineError::Bind { port: config.udp_port, reason: e.to_string() })?;
        let udp_port =
            socket.local_addr().map_err(|e| EngineError::Bind { port: config.udp_port, reason: e.to_string() })?.port();
        let mux = super::udp_mux::MediaPortMux::new(socket);

        let mut settings = SettingEngine::default();
        settings.set_udp_network(UDPNetwork::Muxed(mux));
        settings.set_network_types(vec![NetworkType::Udp4]);
        settings.set_include_loopback_candidate(config.include_loopback);
        if !config.interfaces.is_empty() {
            let allowed = config.interfaces.clone();
            settings.set_interface_filter(Box::new(move |name: &str| allowed.iter().any(|a| a == name)));
        }
        if let Some(ip) = config.public_ip {
            settings.set_nat_1to1_ips(vec![ip.to_string()], RTCIceCandidateType::Host);
        }
        settings.set_lite(true);
        settings.set_ice_timeouts(
            Some(Duration::from_millis(config.ice_disconnected_timeout_ms)),
            Some(Duration::from_millis(config.ice_failed_timeout_ms)),
            Some(Duration::from_millis(config.ice_keepalive_ms)),
        );

        let api = APIBuilder::new()
            .with_media_engine(media)
            .with_interceptor_registry(registry)
            .with_setting_engine(settings)
            .build();
        tracing::info!(udp_port, public_ip = ?config.public_ip, "WebRTC media on one UDP port");
        Ok(Self { api, udp_port })
    }
}

/// Shared handle.
pub type SharedEngine = Arc<RtcEngine>;
