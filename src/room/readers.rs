//! Tasks reading a publisher's tracks into the room's media.

use std::sync::Arc;

use webrtc::track::track_remote::TrackRemote;
use webrtc::util::{Marshal, MarshalSize};

use crate::media::audio::AudioCommand;
use crate::media::input_rate::InputRate;
use crate::media::video::VideoInput;
use crate::metrics::{self, GaugeGuard};

/// Most an audio track may send: twice Opus's highest bitrate, headers included.
const AUDIO_INPUT_LIMIT_BPS: u64 = 1_000_000;

/// What a publisher's input may be; a track beyond them ends its reader and `refused`
/// says why (the room removes the publisher).
pub(super) struct InputLimits {
    pub max_pixels: u64,
    pub max_video_bps: u64,
    pub refused: Box<dyn FnOnce(String) + Send>,
}

/// Forwards a publisher's video RTP into its decode branch. A keyframe declaring a
/// picture larger than `max_pixels`, or a rate above `max_video_bps`, ends the reader
/// before it reaches the decoder.
pub(super) async fn read_video(track: Arc<TrackRemote>, input: VideoInput, limits: InputLimits) {
    let _live = GaugeGuard::new(&metrics::TRACK_READERS);
    let h264 = track.codec().capability.mime_type.eq_ignore_ascii_case("video/h264");
    let mut rate = InputRate::new(limits.max_video_bps);
    let max_pixels = limits.max_pixels;
    while let Ok((packet, _)) = track.read_rtp().await {
        let size = packet.marshal_size();
        if let Some(bps) = rate.record(std::time::Instant::now(), size) {
            let limit = limits.max_video_bps;
            (limits.refused)(format!(
                "its video arrives at {:.1} Mb/s, more than media.max_input_bitrate_bps ({limit})",
                bps as f64 / 1e6
            ));
            return;
        }
        if let Some((width, height)) = crate::media::frame_size::declared_size(h264, &packet.payload)
            && u64::from(width) * u64::from(height) > max_pixels
        {
            (limits.refused)(format!(
                "its keyframe declares {width}x{height}, more than media.max_input_pixels ({max_pixels})"
            ));
            return;
        }
        input.push_rtp(size, |buf| packet.marshal_to(buf).unwrap_or(0));
    }
}

/// Forwards a publisher's Opus payloads to the mixer, with the level the client
/// measured when it sends the RFC 6464 header. A rate above `AUDIO_INPUT_LIMIT_BPS`
/// ends the reader and `refused` says why.
pub(super) async fn read_audio(
    track: Arc<TrackRemote>,
    source: Arc<str>,
    mixer: crate::media::audio::PacketSender,
    refused: Box<dyn FnOnce(String) + Send>,
) {
    let _live = GaugeGuard::new(&metrics::TRACK_READERS);
    // The extension's id is negotiated: the track knows it once media flows.
    let mut level_id: Option<u8> = None;
    let mut rate = InputRate::new(AUDIO_INPUT_LIMIT_BPS);
    while let Ok((packet, _)) = track.read_rtp().await {
        if let Some(bps) = rate.record(std::time::Instant::now(), packet.marshal_size()) {
            refused(format!(
                "its audio arrives at {:.1} Mb/s, more than the {AUDIO_INPUT_LIMIT_BPS} b/s any Opus stream needs",
                bps as f64 / 1e6
            ));
            return;
        }
        if packet.payload.is_empty() {
            continue;
        }
        if level_id.is_none() && packet.header.extension {
            level_id = audio_level_id(&track);
        }
        let client_level =
            level_id.and_then(|id| packet.header.get_extension(id)).and_then(|raw| parse_audio_level(&raw));
        let command = AudioCommand::Packet {
            source: Arc::clone(&source),
            seq: packet.header.sequence_number,
            payload: packet.payload,
            client_level,
        };
        if !mixer.send_packet(command) {
            break;
        }
    }
}

/// The negotiated id of the `ssrc-audio-level` extension on this track.
fn audio_level_id(track: &TrackRemote) -> Option<u8> {
    let params = track.params();
    let ext = params.header_extensions.iter().find(|e| e.uri == crate::rtc::codecs::AUDIO_LEVEL_URI)?;
    u8::try_from(ext.id).ok()
}

/// The level (dBov, 0 loudest to -127) of an RFC 6464 extension element (one or two
/// bytes: V flag and level, then padding); `None` when it is empty.
pub(crate) fn parse_audio_level(raw: &[u8]) -> Option<i8> {
    let level = raw.first()? & 0x7f;
    Some(-(level as i8))
}

#[cfg(test)]
mod tests {
    use super::parse_audio_level;

    #[test]
    fn audio_level_elements_are_read_as_dbov() {
        assert_eq!(parse_audio_level(&[0x80 | 30]), Some(-30), "voice flag set");
        assert_eq!(parse_audio_level(&[30, 0]), Some(-30), "two-byte form, padded");
        assert_eq!(parse_audio_level(&[127]), Some(-127), "silence");
        assert_eq!(parse_audio_level(&[0]), Some(0));
        assert_eq!(parse_audio_level(&[]), None);
    }
}
