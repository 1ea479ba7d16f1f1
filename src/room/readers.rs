//! Tasks reading a publisher's tracks into the room's media.

use std::sync::Arc;

use webrtc::track::track_remote::TrackRemote;
use webrtc::util::{Marshal, MarshalSize};

use crate::media::audio::AudioCommand;
use crate::media::video::VideoInput;
use crate::metrics::{self, GaugeGuard};

/// Forwards a publisher's video RTP into its decode branch.
pub(super) async fn read_video(track: Arc<TrackRemote>, input: VideoInput) {
    let _live = GaugeGuard::new(&metrics::TRACK_READERS);
    while let Ok((packet, _)) = track.read_rtp().await {
        input.push_rtp(packet.marshal_size(), |buf| packet.marshal_to(buf).unwrap_or(0));
    }
}

/// Forwards a publisher's Opus payloads to the mixer.
pub(super) async fn read_audio(
    track: Arc<TrackRemote>,
    source: Arc<str>,
    mixer: std::sync::mpsc::Sender<AudioCommand>,
) {
    let _live = GaugeGuard::new(&metrics::TRACK_READERS);
    while let Ok((packet, _)) = track.read_rtp().await {
        if packet.payload.is_empty() {
            continue;
        }
        let command = AudioCommand::Packet {
            source: Arc::clone(&source),
            seq: packet.header.sequence_number,
            payload: packet.payload,
        };
        if mixer.send(command).is_err() {
            break;
        }
    }
}
