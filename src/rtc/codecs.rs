//! The codecs as webrtc-rs sees them: what the media engine registers (and so what an
//! answer may contain) and the capability of a track sending a negotiated format.

use webrtc::api::media_engine::{MIME_TYPE_H264, MIME_TYPE_OPUS, MIME_TYPE_VP8, MediaEngine};
use webrtc::rtp_transceiver::RTCPFeedback;
use webrtc::rtp_transceiver::rtp_codec::{RTCRtpCodecCapability, RTCRtpCodecParameters, RTPCodecType};

use crate::media::codec::{VideoCodec, VideoFormat};

/// Payload type the server uses for Opus (remapped per peer to the offer's).
pub const OPUS_PAYLOAD_TYPE: u8 = 111;
/// Payload type the server uses for VP8 in its own offers (clients of this project).
pub const VP8_PAYLOAD_TYPE: u8 = 96;
/// Payload types of the H.264 variants the server registers, in [`H264_PROFILES`]
/// order.
const H264_PAYLOAD_TYPES: [u8; 3] = [102, 104, 106];
/// The H.264 `profile-level-id`s accepted (see [`crate::media::codec`]): webrtc-rs
/// matches an offer's line against these on profile and constraint bytes.
pub const H264_PROFILES: [&str; 3] = ["42e01f", "42001f", "42c01f"];

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

/// Feedback the server asks for on video it sends and receives: NACK, PLI, FIR, REMB
/// (a receiver's own bandwidth estimate, which drives `auto` quality; browsers send it
/// for the server's video, which carries no transport-wide sequence numbers) and
/// transport-cc (feedback the server sends publishers, for their send-side estimate).
fn video_feedback() -> Vec<RTCPFeedback> {
    [("goog-remb", ""), ("transport-cc", ""), ("ccm", "fir"), ("nack", ""), ("nack", "pli")]
        .into_iter()
        .map(|(typ, parameter)| RTCPFeedback { typ: typ.to_owned(), parameter: parameter.to_owned() })
        .collect()
}

/// The capability of a track sending `codec` with format parameters `fmtp`.
pub fn video_capability(codec: VideoCodec, fmtp: &str) -> RTCRtpCodecCapability {
    let mime_type = match codec {
        VideoCodec::Vp8 => MIME_TYPE_VP8,
        VideoCodec::H264 => MIME_TYPE_H264,
    };
    RTCRtpCodecCapability {
        mime_type: mime_type.to_owned(),
        clock_rate: 90_000,
        channels: 0,
        sdp_fmtp_line: fmtp.to_owned(),
        rtcp_feedback: video_feedback(),
    }
}

/// The codec parameters of a negotiated format, with the offer's payload type: what a
/// transceiver is restricted to so the answer holds exactly this format.
pub fn negotiated_parameters(format: &VideoFormat) -> RTCRtpCodecParameters {
    RTCRtpCodecParameters {
        capability: video_capability(format.codec, &format.fmtp),
        payload_type: format.payload_type,
        ..Default::default()
    }
}

/// The VP8 capability of this project's own clients.
pub fn vp8_capability() -> RTCRtpCodecCapability {
    video_capability(VideoCodec::Vp8, "")
}

/// The H.264 line of this project's own clients (Constrained Baseline, mode 1).
pub fn h264_fmtp(profile_level_id: &str) -> String {
    format!("level-asymmetry-allowed=1;packetization-mode=1;profile-level-id={profile_level_id}")
}

/// RFC 6464: the level of each audio packet, measured by the client before encoding.
pub const AUDIO_LEVEL_URI: &str = "urn:ietf:params:rtp-hdrext:ssrc-audio-level";

/// Registers Opus, VP8 and the H.264 variants, and the audio level header extension
/// (answered when offered: its levels rank the active speaker).
pub fn register(media: &mut MediaEngine) -> Result<(), webrtc::Error> {
    media.register_header_extension(
        webrtc::rtp_transceiver::rtp_codec::RTCRtpHeaderExtensionCapability { uri: AUDIO_LEVEL_URI.to_owned() },
        RTPCodecType::Audio,
        None,
    )?;
    media.register_codec(
        RTCRtpCodecParameters { capability: opus_capability(), payload_type: OPUS_PAYLOAD_TYPE, ..Default::default() },
        RTPCodecType::Audio,
    )?;
    media.register_codec(
        RTCRtpCodecParameters { capability: vp8_capability(), payload_type: VP8_PAYLOAD_TYPE, ..Default::default() },
        RTPCodecType::Video,
    )?;
    for (profile, payload_type) in H264_PROFILES.iter().zip(H264_PAYLOAD_TYPES) {
        media.register_codec(
            RTCRtpCodecParameters {
                capability: video_capability(VideoCodec::H264, &h264_fmtp(profile)),
                payload_type,
                ..Default::default()
            },
            RTPCodecType::Video,
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_registered_h264_line_is_one_the_offer_inspection_accepts() {
        for profile in H264_PROFILES {
            assert!(VideoFormat::accept(VideoCodec::H264, 102, &h264_fmtp(profile)).is_some(), "{profile}");
        }
    }
}
