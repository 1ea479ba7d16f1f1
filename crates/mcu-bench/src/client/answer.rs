//! Applying the server's answer so that a webrtc-rs offerer always connects.
//!
//! webrtc-rs 0.17 starts DTLS only when its ICE transport's state is no longer
//! `new`, and that state is recorded by a task that also hands gathered candidates to
//! the application. When ICE connects before that task has run (a busy machine, a
//! server on loopback answering checks in microseconds, or a slow `on_ice_candidate`
//! handler), DTLS is never started and the connection stays `connecting` for ever
//! with ICE `connected`. The answer is therefore applied in two steps: without its
//! candidates first, and with them (as trickled candidates) once the ICE transport
//! reports `checking`, so no candidate pair can succeed before the state is recorded.

use std::time::Duration;

use webrtc::ice_transport::ice_candidate::RTCIceCandidateInit;
use webrtc::ice_transport::ice_transport_state::RTCIceTransportState;
use webrtc::peer_connection::RTCPeerConnection;
use webrtc::peer_connection::sdp::session_description::RTCSessionDescription;

/// How long the ICE transport may take to record `checking` (its task is starved or
/// stalled); the candidates are applied after it in any case.
const CHECKING_WAIT: Duration = Duration::from_secs(10);

/// The candidate lines of an SDP (`a=candidate:...`) with the `a=mid` and m-line
/// index of their section, and the SDP without them.
pub fn split_candidates(sdp: &str) -> (String, Vec<RTCIceCandidateInit>) {
    let mut without = String::with_capacity(sdp.len());
    let mut candidates = Vec::new();
    let mut mline: Option<u16> = None;
    let mut mid: Option<String> = None;
    let mut pending: Vec<(String, Option<u16>)> = Vec::new();
    let mut flush = |pending: &mut Vec<(String, Option<u16>)>, mid: &Option<String>| {
        for (candidate, index) in pending.drain(..) {
            candidates.push(RTCIceCandidateInit {
                candidate,
                sdp_mid: mid.clone(),
                sdp_mline_index: index,
                username_fragment: None,
            });
        }
    };
    for line in sdp.split_inclusive('\n') {
        let text = line.trim_end();
        if text.starts_with("m=") {
            flush(&mut pending, &mid);
            mline = Some(mline.map_or(0, |i| i + 1));
            mid = None;
        } else if let Some(value) = text.strip_prefix("a=mid:") {
            mid = Some(value.to_owned());
        }
        if let Some(candidate) = text.strip_prefix("a=") {
            if candidate.starts_with("candidate:") {
                pending.push((candidate.to_owned(), mline));
                continue;
            }
            if candidate == "end-of-candidates" {
                continue;
            }
        }
        without.push_str(line);
    }
    flush(&mut pending, &mid);
    (without, candidates)
}

/// Applies the server's SDP answer to `pc` (see the module documentation).
pub async fn apply_answer(pc: &RTCPeerConnection, answer: &str) -> Result<(), webrtc::Error> {
    let (without_candidates, candidates) = split_candidates(answer);
    pc.set_remote_description(RTCSessionDescription::answer(without_candidates)?).await?;
    let dtls = pc.sctp().transport();
    let ice = dtls.ice_transport();
    let deadline = tokio::time::Instant::now() + CHECKING_WAIT;
    while ice.state() == RTCIceTransportState::New && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    for candidate in candidates {
        pc.add_ice_candidate(candidate).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_are_taken_out_with_their_section() {
        let sdp = "v=0\r\no=- 1 2 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n\
                   m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host\r\na=end-of-candidates\r\n\
                   m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\na=candidate:2 1 udp 2130706431 127.0.0.1 5001 typ host\r\n";
        let (without, candidates) = split_candidates(sdp);
        assert!(!without.contains("candidate"), "{without}");
        assert!(without.contains("a=mid:1\r\n") && without.ends_with("a=mid:1\r\n"));
        let found: Vec<(String, Option<String>, Option<u16>)> =
            candidates.into_iter().map(|c| (c.candidate, c.sdp_mid, c.sdp_mline_index)).collect();
        assert_eq!(
            found,
            [
                ("candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host".to_owned(), Some("0".to_owned()), Some(0)),
                ("candidate:2 1 udp 2130706431 127.0.0.1 5001 typ host".to_owned(), Some("1".to_owned()), Some(1)),
            ]
        );
    }
}
