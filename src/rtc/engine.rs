//! The one webrtc-rs `API` of the process (composition root): codecs, interceptors
//! (NACK, RTCP reports), and the transport settings — one UDP port for all media
//! (ICE UDP mux) and the IP advertised in candidates.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use webrtc::api::API;
use webrtc::api::APIBuilder;
use webrtc::api::interceptor_registry::{configure_rtcp_reports, configure_twcc_receiver_only};
use webrtc::api::media_engine::MediaEngine;
use webrtc::api::setting_engine::SettingEngine;
use webrtc::ice::network_type::NetworkType;
use webrtc::ice::udp_network::UDPNetwork;
use webrtc::ice_transport::ice_candidate_type::RTCIceCandidateType;
use webrtc::interceptor::registry::Registry;

use super::candidate_address::{self, LocalAddress};
use crate::config::RtcConfig;

pub use super::codecs::{OPUS_PAYLOAD_TYPE, VP8_PAYLOAD_TYPE, opus_capability, vp8_capability};

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
        super::codecs::register(&mut media).map_err(setup)?;
        let registry = interceptors(&mut media).map_err(setup)?;

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
        // One address only (see `candidate_address`).
        let found = candidate_address::local_addresses();
        let default_route = candidate_address::default_route_interface();
        match candidate_address::pick(&found, &config.interfaces, config.include_loopback, default_route.as_deref()) {
            Some(chosen) => {
                let others = found.iter().filter(|a| a.ip != chosen.ip && !a.ip.is_loopback()).count();
                tracing::info!(interface = chosen.interface, ip = %chosen.ip, other_addresses = others, "ICE candidates on one address");
                let LocalAddress { interface, ip } = chosen;
                settings.set_interface_filter(Box::new(move |name: &str| name == interface));
                settings.set_ip_filter(Box::new(move |candidate: IpAddr| candidate == ip));
            }
            None => tracing::warn!(
                interfaces = ?config.interfaces,
                "no usable IPv4 address for ICE candidates: joins fail until one exists"
            ),
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

/// How often the server asks publishers for what it lost (webrtc-rs's default is
/// 100 ms). A packet resent after the video jitter buffer's wait (`media.video_jitter_ms`,
/// 50 ms by default) comes too late: the cell then holds its last picture until a
/// keyframe. At 100 ms that was every loss (2 % loss froze a cell in 21 % of its
/// frames, once for 2.3 s); at 20 ms a link's round trip decides.
const NACK_INTERVAL: std::time::Duration = std::time::Duration::from_millis(20);

/// The server's interceptors: webrtc-rs's defaults but for the NACK responder (each
/// receiver's forwarder answers NACKs itself, see `rtc::forward`): the NACK generator
/// (the server asks publishers to resend), sender and receiver reports, and
/// transport-wide congestion control feedback to publishers.
fn interceptors(media: &mut MediaEngine) -> Result<Registry, webrtc::Error> {
    use webrtc::interceptor::nack::generator::Generator;
    use webrtc::rtp_transceiver::RTCPFeedback;
    use webrtc::rtp_transceiver::rtp_codec::RTPCodecType;
    for parameter in ["", "pli"] {
        media.register_feedback(RTCPFeedback { typ: "nack".into(), parameter: parameter.into() }, RTPCodecType::Video);
    }
    let mut registry = Registry::new();
    registry.add(Box::new(Generator::builder().with_interval(NACK_INTERVAL)));
    registry = configure_rtcp_reports(registry);
    configure_twcc_receiver_only(registry, media)
}

/// Shared handle.
pub type SharedEngine = Arc<RtcEngine>;
