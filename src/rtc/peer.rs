//! One participant's peer connection: answer its offer with the server's tracks on
//! the offer's own m-lines, in the video format the offer prefers, and report what
//! happens on it as [`PeerEvent`]s. The callbacks here do nothing but forward events;
//! the room decides.

use std::sync::Arc;
use std::time::{Duration, Instant};

use webrtc::ice_transport::ice_transport_state::RTCIceTransportState;
use webrtc::peer_connection::RTCPeerConnection;
use webrtc::peer_connection::configuration::RTCConfiguration;
use webrtc::peer_connection::peer_connection_state::RTCPeerConnectionState;
use webrtc::peer_connection::sdp::session_description::RTCSessionDescription;
use webrtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use webrtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use webrtc::rtcp::payload_feedbacks::receiver_estimated_maximum_bitrate::ReceiverEstimatedMaximumBitrate;
use webrtc::rtcp::receiver_report::ReceiverReport;
use webrtc::rtcp::reception_report::ReceptionReport;
use webrtc::rtcp::sender_report::SenderReport;
use webrtc::rtcp::transport_feedbacks::transport_layer_nack::TransportLayerNack;
use webrtc::rtp_transceiver::rtp_codec::RTPCodecType;
use webrtc::rtp_transceiver::rtp_sender::RTCRtpSender;
use webrtc::rtp_transceiver::rtp_transceiver_direction::RTCRtpTransceiverDirection;
use webrtc::rtp_transceiver::{RTCRtpTransceiver, RTCRtpTransceiverInit};
use webrtc::track::track_local::TrackLocal;
use webrtc::track::track_local::track_local_static_rtp::TrackLocalStaticRTP;
use webrtc::track::track_local::track_local_static_sample::TrackLocalStaticSample;
use webrtc::track::track_remote::TrackRemote;

use super::codecs::negotiated_parameters;
use super::engine::RtcEngine;
use super::forward::NackSink;
use super::offer::{Direction, OfferSummary};
use crate::media::tier::Feedback;
use crate::metrics::{self, GaugeGuard};

/// What happens on a peer connection, forwarded to the room.
pub enum PeerEvent {
    /// The participant's media arrived on a track.
    Track(Arc<TrackRemote>),
    /// The connection changed state (failed/closed means the participant is gone).
    State(RTCPeerConnectionState),
    /// The participant asked for a keyframe of the video it receives (PLI or FIR).
    KeyframeRequest,
    /// The participant reported on the video it receives (loss, its estimate).
    Feedback(Feedback),
}

/// Where a peer's events go (called from webrtc-rs callbacks; must only forward).
pub type EventSink = Arc<dyn Fn(PeerEvent) + Send + Sync>;

/// The server's outgoing tracks for this participant.
pub struct OutgoingTracks {
    /// The participant's audio mix (mix-minus or shared full mix).
    pub audio: Arc<TrackLocalStaticSample>,
    /// Its own video track, fed by its forwarder from the encode it receives, and
    /// where its NACKs go (the forwarder answers them).
    pub video: Option<(Arc<TrackLocalStaticRTP>, NackSink)>,
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
    summary: &OfferSummary,
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

/// Adds the transceiver of one m-line: sending `track` when the offerer receives on
/// it, receiving only otherwise. Transceivers created before the offer is applied are
/// matched to its m-lines by kind and direction, so the mix goes back on the
/// participant's own m-line.
async fn add_line(
    pc: &RTCPeerConnection,
    kind: RTPCodecType,
    direction: Direction,
    track: Option<Arc<dyn TrackLocal + Send + Sync>>,
) -> Result<(Arc<RTCRtpTransceiver>, Option<Arc<RTCRtpSender>>), webrtc::Error> {
    match track.filter(|_| direction.receives()) {
        Some(track) => {
            let local = if direction.publishes() {
                RTCRtpTransceiverDirection::Sendrecv
            } else {
                RTCRtpTransceiverDirection::Sendonly
            };
            let t = pc
                .add_transceiver_from_track(
                    track,
                    Some(RTCRtpTransceiverInit { direction: local, send_encodings: vec![] }),
                )
                .await?;
            let sender = t.sender().await;
            Ok((t, Some(sender)))
        }
        None => {
            let init =
                RTCRtpTransceiverInit { direction: RTCRtpTransceiverDirection::Recvonly, send_encodings: vec![] };
            Ok((pc.add_transceiver_from_kind(kind, Some(init)).await?, None))
        }
    }
}

async fn negotiate(
    pc: &Arc<RTCPeerConnection>,
    offer: String,
    summary: &OfferSummary,
    tracks: OutgoingTracks,
    gather_timeout: Duration,
    on_event: Arc<dyn Fn(PeerEvent) + Send + Sync>,
) -> Result<String, NegotiationError> {
    let ev = on_event.clone();
    pc.on_peer_connection_state_change(Box::new(move |state| {
        ev(PeerEvent::State(state));
        Box::pin(async {})
    }));

    let mut audio_sender = None;
    let mut read_lines = Vec::new();
    if let Some(direction) = summary.audio {
        let track = Arc::clone(&tracks.audio) as Arc<dyn TrackLocal + Send + Sync>;
        let (transceiver, sender) = add_line(pc, RTPCodecType::Audio, direction, Some(track)).await?;
        audio_sender = sender;
        read_lines.push(transceiver);
    }
    let mut video = None;
    if let Some(line) = &summary.video {
        let track = tracks.video.as_ref().map(|(t, _)| Arc::clone(t) as Arc<dyn TrackLocal + Send + Sync>);
        let added = add_line(pc, RTPCodecType::Video, line.direction, track).await?;
        read_lines.push(Arc::clone(&added.0));
        video = Some((added, &line.format));
    }
    // Only the transceivers added above (the offer's first m-line of each kind) carry
    // the participant's media; the stack makes its own for any further m-line (a
    // second camera), whose tracks are left unread whichever starts first.
    let ev = on_event.clone();
    pc.on_track(Box::new(move |track, _receiver, transceiver| {
        if read_lines.iter().any(|ours| Arc::ptr_eq(ours, &transceiver)) {
            ev(PeerEvent::Track(track));
        } else {
            tracing::warn!(kind = %track.kind(), ssrc = track.ssrc(), "ignoring a track of an extra m-line");
        }
        Box::pin(async {})
    }));

    pc.set_remote_description(RTCSessionDescription::offer(offer)?).await?;
    if let Some(((transceiver, _), format)) = &video {
        // The answer holds exactly the offer's preferred format the server speaks:
        // the participant sends in it and receives in it.
        transceiver.set_codec_preferences(vec![negotiated_parameters(format)]).await?;
    }
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

    if let Some(sender) = audio_sender {
        spawn_rtcp_reader(sender, None);
    }
    if let (Some(((_, Some(sender)), _)), Some((_, nacks))) = (video, tracks.video) {
        spawn_rtcp_reader(sender, Some((on_event, nacks)));
    }
    Ok(local.sdp)
}

/// Shortest time between two keyframe-request or two feedback events of one peer.
const EVENT_INTERVAL: Duration = Duration::from_millis(100);

/// Reads RTCP arriving for one of our senders: this drives the report interceptors;
/// for video it hands NACKs to the forwarder, and turns PLI/FIR into keyframe requests
/// and receiver reports and REMB into feedback. Ends when the sender stops.
fn spawn_rtcp_reader(sender: Arc<RTCRtpSender>, video: Option<(EventSink, NackSink)>) {
    tokio::spawn(async move {
        let ssrc = sender.get_parameters().await.encodings.first().map(|e| e.ssrc);
        // Events reach the room at most every EVENT_INTERVAL (a flood of RTCP must not
        // become a flood of room events): keyframe requests in between are one request
        // (the room coalesces them over longer anyway), feedback keeps its latest values.
        let mut last_keyframe: Option<Instant> = None;
        let mut last_feedback: Option<Instant> = None;
        let mut feedback = Feedback::default();
        let mut wants_keyframe = false;
        while let Ok((packets, _)) = sender.read_rtcp().await {
            let Some((on_event, nacks)) = &video else { continue };
            for packet in &packets {
                let any = packet.as_any();
                if any.downcast_ref::<PictureLossIndication>().is_some()
                    || any.downcast_ref::<FullIntraRequest>().is_some()
                {
                    wants_keyframe = true;
                } else if let Some(nack) = any.downcast_ref::<TransportLayerNack>() {
                    nacks(nack.nacks.iter().flat_map(|pair| pair.packet_list()).collect());
                } else if let Some(block) = report_block(any, ssrc) {
                    // A receiver that also sends puts its report in its sender report.
                    feedback.loss = Some(f64::from(block.fraction_lost) / 256.0);
                } else if let Some(remb) = any.downcast_ref::<ReceiverEstimatedMaximumBitrate>() {
                    feedback.remb_bps = Some(remb.bitrate as u64);
                }
            }
            let now = Instant::now();
            let due = |last: Option<Instant>| last.is_none_or(|at| now.duration_since(at) >= EVENT_INTERVAL);
            if wants_keyframe && due(last_keyframe) {
                on_event(PeerEvent::KeyframeRequest);
                (wants_keyframe, last_keyframe) = (false, Some(now));
            }
            if feedback != Feedback::default() && due(last_feedback) {
                on_event(PeerEvent::Feedback(std::mem::take(&mut feedback)));
                last_feedback = Some(now);
            }
        }
    });
}

/// The report block about `ssrc` in a receiver or sender report.
fn report_block(packet: &dyn std::any::Any, ssrc: Option<u32>) -> Option<&ReceptionReport> {
    let reports = match (packet.downcast_ref::<ReceiverReport>(), packet.downcast_ref::<SenderReport>()) {
        (Some(rr), _) => &rr.reports,
        (_, Some(sr)) => &sr.reports,
        _ => return None,
    };
    reports.iter().find(|r| Some(r.ssrc) == ssrc)
}

/// Asks a publisher for a keyframe (RTCP PLI on its track's SSRC).
pub async fn request_keyframe(pc: &RTCPeerConnection, media_ssrc: u32) {
    let pli = PictureLossIndication { sender_ssrc: 0, media_ssrc };
    if let Err(e) = pc.write_rtcp(&[Box::new(pli)]).await {
        tracing::debug!(error = %e, "cannot send PLI");
    }
}
