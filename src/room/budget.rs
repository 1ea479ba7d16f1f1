//! Admission control: what the server's work costs in CPU cores, estimated from
//! what runs, so a join that would overload the machine is refused (503) before
//! anything degrades. Pure: figures in, decisions out.
//!
//! The figures come from `make bench` on the reference 2-core machine
//! (BENCHMARKS.md): a room of 4 publishers costs 0.63 cores and each further one
//! ~0.05 (1. Mixing overhead: its decode, scaling into the composite, audio and
//! RTP); one encode of the composite costs, per million pixels a second, 0.011-0.012
//! cores in VP8 and 0.005 in H.264 (4c, zone plate: the worst case). A room's
//! compositor and mixer are what is left of the 4-publisher room, ~0.08 cores.
//!
//! The model is deliberately the cost of a room alone: with many rooms the measured
//! cost per room falls (5 rooms of 4 ran on 1.73 cores, 0.35 each), so a budget of
//! the machine's cores admits fewer rooms than fit (3 of 4-person rooms on 2 cores
//! where 5 ran at 30 fps), never more.

use serde::Serialize;

use crate::media::codec::VideoCodec;
use crate::media::tier::Tier;

/// A room's compositor, mixer and their threads, with video.
pub const ROOM_VIDEO_CORES: f64 = 0.08;
/// A room without video (mixer only).
pub const ROOM_AUDIO_CORES: f64 = 0.01;
/// Each participant: audio decode/mix/encode, RTP and DTLS.
pub const PARTICIPANT_CORES: f64 = 0.01;
/// Each video publisher besides: its decode and scaling into the composite.
pub const VIDEO_PUBLISHER_CORES: f64 = 0.04;
/// VP8 encode, cores per million pixels a second.
pub const VP8_CORES_PER_MPX_S: f64 = 0.012;
/// H.264 encode, cores per million pixels a second.
pub const H264_CORES_PER_MPX_S: f64 = 0.0055;

/// One encode of the composite, by its size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct EncodeLoad {
    /// Its codec.
    pub codec: VideoCodec,
    /// Canvas width.
    pub width: u32,
    /// Canvas height.
    pub height: u32,
    /// Frames per second.
    pub fps: u32,
}

impl EncodeLoad {
    /// An encode of `tier` in `codec`.
    pub fn of(codec: VideoCodec, tier: &Tier) -> Self {
        Self { codec, width: tier.width, height: tier.height, fps: tier.fps }
    }

    /// Its estimated cost, cores.
    pub fn cores(&self) -> f64 {
        let mpx_s = f64::from(self.width) * f64::from(self.height) * f64::from(self.fps) / 1e6;
        mpx_s
            * match self.codec {
                VideoCodec::Vp8 => VP8_CORES_PER_MPX_S,
                VideoCodec::H264 => H264_CORES_PER_MPX_S,
            }
    }
}

/// What runs in one room, for its cost.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RoomLoad {
    /// Whether the room composites video.
    pub video: bool,
    /// Participants.
    pub participants: usize,
    /// Participants publishing video.
    pub video_publishers: usize,
    /// The encodes running.
    pub encodes: Vec<EncodeLoad>,
}

impl RoomLoad {
    /// Its estimated cost, cores.
    pub fn cores(&self) -> f64 {
        if self.participants == 0 && self.encodes.is_empty() {
            return 0.0;
        }
        let base = if self.video { ROOM_VIDEO_CORES } else { ROOM_AUDIO_CORES };
        base + self.participants as f64 * PARTICIPANT_CORES
            + self.video_publishers as f64 * VIDEO_PUBLISHER_CORES
            + self.encodes.iter().map(EncodeLoad::cores).sum::<f64>()
    }

    /// What a join adds to this room (`None`: a new room): a participant, its video
    /// decode when it publishes video, the encode it receives when none of that
    /// codec runs yet (at `first_tier`, where a receiver starts), and the room's
    /// compositor when the room had no video.
    pub fn join_cores(room: Option<&RoomLoad>, publishes_video: bool, receives: Option<EncodeLoad>) -> f64 {
        let empty = RoomLoad::default();
        let room = room.unwrap_or(&empty);
        let mut cores = PARTICIPANT_CORES;
        if room.participants == 0 && room.encodes.is_empty() {
            cores += if publishes_video || receives.is_some() { ROOM_VIDEO_CORES } else { ROOM_AUDIO_CORES };
        } else if !room.video && (publishes_video || receives.is_some()) {
            cores += ROOM_VIDEO_CORES - ROOM_AUDIO_CORES;
        }
        if publishes_video {
            cores += VIDEO_PUBLISHER_CORES;
        }
        if let Some(encode) = receives
            && !room.encodes.iter().any(|e| e.codec == encode.codec)
        {
            cores += encode.cores();
        }
        cores
    }
}

/// A join refused for lack of CPU.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
#[error("CPU budget exhausted: this needs ~{needed:.2} cores and {used:.2} of {budget:.2} are in use")]
pub struct OverBudget {
    /// What the join would add.
    pub needed: f64,
    /// What runs (and is being joined) now.
    pub used: f64,
    /// The budget.
    pub budget: f64,
}

/// Admits `needed` cores on top of `used` within `budget` (`None`: no limit).
pub fn admit(needed: f64, used: f64, budget: Option<f64>) -> Result<(), OverBudget> {
    match budget {
        Some(budget) if used + needed > budget => Err(OverBudget { needed, used, budget }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HIGH_VP8: EncodeLoad = EncodeLoad { codec: VideoCodec::Vp8, width: 1280, height: 720, fps: 30 };
    const HIGH_H264: EncodeLoad = EncodeLoad { codec: VideoCodec::H264, width: 1280, height: 720, fps: 30 };

    fn room_of(publishers: usize, encodes: Vec<EncodeLoad>) -> RoomLoad {
        RoomLoad { video: true, participants: publishers, video_publishers: publishers, encodes }
    }

    #[test]
    fn a_room_of_four_costs_what_the_benchmark_measured() {
        // BENCHMARKS.md: 0.63 cores for 4 publishers with one 720p VP8 encode.
        let cost = room_of(4, vec![HIGH_VP8]).cores();
        assert!((cost - 0.63).abs() < 0.05, "{cost}");
        // 16 publishers: 1.17 measured.
        let cost = room_of(16, vec![HIGH_VP8]).cores();
        assert!((cost - 1.17).abs() < 0.15, "{cost}");
    }

    #[test]
    fn an_empty_room_costs_nothing() {
        assert_eq!(RoomLoad::default().cores(), 0.0);
    }

    #[test]
    fn a_join_pays_for_an_encode_only_when_its_codec_is_not_running() {
        let room = room_of(2, vec![HIGH_VP8]);
        let same = RoomLoad::join_cores(Some(&room), true, Some(HIGH_VP8));
        let other = RoomLoad::join_cores(Some(&room), true, Some(HIGH_H264));
        assert!((same - (PARTICIPANT_CORES + VIDEO_PUBLISHER_CORES)).abs() < 1e-9, "{same}");
        assert!((other - same - HIGH_H264.cores()).abs() < 1e-9, "{other}");
    }

    #[test]
    fn the_first_join_pays_for_the_room() {
        let first = RoomLoad::join_cores(None, true, Some(HIGH_VP8));
        let expected = ROOM_VIDEO_CORES + PARTICIPANT_CORES + VIDEO_PUBLISHER_CORES + HIGH_VP8.cores();
        assert!((first - expected).abs() < 1e-9);
        let audio_only = RoomLoad::join_cores(None, false, None);
        assert!((audio_only - ROOM_AUDIO_CORES - PARTICIPANT_CORES).abs() < 1e-9);
    }

    #[test]
    fn admission_refuses_what_would_overflow() {
        assert!(admit(0.5, 1.4, Some(2.0)).is_ok());
        let refused = admit(0.7, 1.4, Some(2.0)).unwrap_err();
        assert_eq!(refused, OverBudget { needed: 0.7, used: 1.4, budget: 2.0 });
        assert!(refused.to_string().contains("1.40 of 2.00"), "{refused}");
        assert!(admit(100.0, 100.0, None).is_ok(), "no budget: no limit");
    }
}
