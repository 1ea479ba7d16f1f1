//! One participant's peer connection: answer its offer with the server's tracks on
//! the offer's own m-lines, and report what happens on it as [`PeerEvent`]s. The
//! callbacks here do nothing but forward events; the room decides.

use std::sync::Arc;
use std::time::Duration;

use webrtc::ice_transport::ice_transport_state::RTCIceTransportState;
use webrtc::peer_connection::RTCPeerConnection;
use webrtc::peer_connection::configuration::RTCConfiguration;
use webrtc::peer_connection::peer_connection_state::RTCPeerConnectionState;
use webrtc::peer_connection::sdp::session_description::RTCSessionDescription;
use webrtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use webrtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use webrtc::rtp_transceiver::RTCRtpTransceiverInit;
use webrtc::rtp_transceiver::rtp_codec::RTPCodecType;
use webrtc::rtp_transceiver::rtp_sender::RTCRtpSender;
use webrtc::rtp_transceiver::rtp_transceiver_direction::RTCRtpTransceiverDirection;
use webrtc::track::track_local::TrackLocal;
use webrtc::track::track_local::track_local_static_sample::TrackLocalStaticSample;
use webrtc::track::track_remote::TrackRemote;

use super::engine::RtcEngine;
use super::offer::{Direction, OfferSummary};
use crate::metrics::{self, GaugeGuard};

/// What happens on a peer connection, forwarded to the room.
pub enum PeerEvent {
    /// The participant's media arrived on a track.
    Track(Arc<TrackRemote>),
    /// The connection changed state (failed/closed means the participant is gone).
    State(RTCPeerConnectionState),
    /// The participant asked for a keyframe of the composite (PLI or FIR).
    KeyframeRequest,
}

/// The server's outgoing tracks for this participant.
pub struct OutgoingTracks {
    /// The participant's audio mix (mix-minus or shared full mix).
    pub audio: Arc<TrackLocalStaticSample>,
    /// The shared composite.
    pub video: Arc<TrackLocalStaticSample>,
}

/// Why negotiation failed.
#[derive(Debug, thiserror::Error)]
pub enum NegotiationError {
    /// webrtc-rs rejected the offer or failed to answer.
    #[error("cannot negotiate: {0}")]
    WebRtc(#[from] webrtc::Error),
    /// ICE gathering did not complete in time (milliseconds waited).
    #[error("ICE gathering did not complete within {0} ms")]
    GatheringTimeout(u128),
    /// Gathering completed without a single candidate: the answer would be
    /// unusable (a client would wait for a connection that cannot happen).
    #[error("no local ICE candidate")]
    NoCandidates,
}

/// A negotiated peer connection.
pub struct Peer {
    /// The connection.
    pub connection: Arc<RTCPeerConnection>,
    /// The SDP answer, with the server's candidates.
    pub answer: String,
    _live: GaugeGuard,
}

impl Peer {
    /// Closes the connection (sends DTLS close, stops ICE).
    pub async fn close(&self) {
        if let Err(e) = self.connection.close().await {
            tracing::debug!(error = %e, "closing peer connection");
        }
    }
}

/// Builds a peer connection answering `offer`. `on_event` is called from webrtc-rs
/// callbacks and the RTCP reader tasks; it must only forward.
pub async fn answer_offer(
    engine: &RtcEngine,
    offer: String,
    summary: OfferSummary,
    tracks: OutgoingTracks,
    gather_timeout: Duration,
    on_event: Arc<dyn Fn(PeerEvent) + Send + Sync>,
) -> Result<Peer, NegotiationError> {
    let connection = Arc::new(engine.api.new_peer_connection(RTCConfiguration::default()).await?);
    let live = GaugeGuard::new(&metrics::PEER_CONNECTIONS);
    let result = negotiate(&connection, offer, summary, tracks, gather_timeout, on_event).await;
    match result {
        Ok(answer) => Ok(Peer { connection, answer, _live: live }),
        Err(e) => {
            let _ = connection.close().await;
            Err(e)
        }
    }
}

async fn negotiate(
    pc: &Arc<RTCPeerConnection>,
    offer: String,
    summary: OfferSummary,
    tracks: OutgoingTracks,
    gather_timeout: Duration,
    on_event: Arc<dyn Fn(PeerEvent) + Send + Sync>,
) -> Result<String, NegotiationError> {
    let ev = on_event.clone();
    pc.on_track(Box::new(move |track, _receiver, _transceiver| {
        ev(PeerEvent::Track(track));
        Box::pin(async {})
    }));
    let ev = on_event.clone();
    pc.on_peer_connection_state_change(Box::new(move |state| {
        ev(PeerEvent::State(state));
        Box::pin(async {})
    }));

    // Transceivers created before the offer is applied are matched to its m-lines by
    // kind and direction, so the mix goes back on the participant's own m-line.
    let mut senders = Vec::new();
    let lines: [(Option<Direction>, RTPCodecType, Arc<TrackLocalStaticSample>); 2] =
        [(summary.audio, RTPCodecType::Audio, tracks.audio), (summary.video, RTPCodecType::Video, tracks.video)];
    for (direction, kind, track) in lines {
        let Some(direction) = direction else { continue };
        if direction.receives() {
            let local = if direction.publishes() {
                RTCRtpTransceiverDirection::Sendrecv
            } else {
                RTCRtpTransceiverDirection::Sendonly
            };
            let t = pc
                .add_transceiver_from_track(
                    track as Arc<dyn TrackLocal + Send + Sync>,
                    Some(RTCRtpTransceiverInit { direction: local, send_encodings: vec![] }),
                )
                .await?;
            senders.push(t.sender().await);
        } else {
            pc.add_transceiver_from_kind(
                kind,
                Some(RTCRtpTransceiverInit { direction: RTCRtpTransceiverDirection::Recvonly, send_encodings: vec![] }),
            )
            .await?;
        }
    }

    pc.set_remote_description(RTCSessionDescription::offer(offer)?).await?;
    let answer = pc.create_answer(None).await?;
    let mut gathered = pc.gathering_complete_promise().await;
    pc.set_local_description(answer).await?;
    let timed_out = || NegotiationError::GatheringTimeout(gather_timeout.as_millis());
    tokio::time::timeout(gather_timeout, gathered.recv()).await.map_err(|_| timed_out())?;
    let local = pc.local_description().await.ok_or_else(timed_out)?;
    if !local.sdp.contains("\na=candidate:") {
        return Err(NegotiationError::NoCandidates);
    }
    // webrtc-rs starts DTLS only once the ICE transport's state has left `new`, a
    // state recorded by a separate task: the answer goes out only after it is, so no
    // client check can complete ICE before it (see `client::apply_answer` for the
    // same race on the offering side).
    let dtls = pc.sctp().transport();
    let ice = dtls.ice_transport();
    let deadline = tokio::time::Instant::now() + gather_timeout;
    while ice.state() == RTCIceTransportState::New {
        if tokio::time::Instant::now() >= deadline {
            return Err(timed_out());
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }

    for sender in senders {
        spawn_rtcp_reader(sender, on_event.clone());
    }
    Ok(local.sdp)
}

/// Reads RTCP arriving for one of our senders: this drives the NACK responder and
/// report interceptors, and turns PLI/FIR into keyframe requests. Ends when the
/// sender stops.
fn spawn_rtcp_reader(sender: Arc<RTCRtpSender>, on_event: Arc<dyn Fn(PeerEvent) + Send + Sync>) {
    tokio::spawn(async move {
        while let Ok((packets, _)) = sender.read_rtcp().await {
            let wants_keyframe = packets.iter().any(|p| {
                let any = p.as_any();
                any.downcast_ref::<PictureLossIndication>().is_some()
                    || any.downcast_ref::<FullIntraRequest>().is_some()
            });
            if wants_keyframe {
                on_event(PeerEvent::KeyframeRequest);
            }
        }
    });
}

/// Asks a publisher for a keyframe (RTCP PLI on its track's SSRC).
pub async fn request_keyframe(pc: &RTCPeerConnection, media_ssrc: u32) {
    let pli = PictureLossIndication { sender_ssrc: 0, media_ssrc };
    if let Err(e) = pc.write_rtcp(&[Box::new(pli)]).await {
        tracing::debug!(error = %e, "cannot send PLI");
    }
}
