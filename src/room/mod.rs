//! Rooms: each one a task owning its participants, its mixers and its layout; the
//! registry finds or creates them. Everything else talks to a room by message.

pub mod budget;
mod core;
mod join;
pub mod live;
mod media;
pub mod notice;
mod participant;
mod readers;
mod registry;
mod task;

pub use core::{EncodeKey, LayoutChoice, LayoutError};
pub use registry::{Rooms, ServerContext};

use std::fmt;
use std::sync::Arc;

use serde::Serialize;

use crate::rtc::offer::OfferSummary;

/// A validated room name (`^[A-Za-z0-9_-]{1,64}$`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RoomName(String);

/// A room name did not match the contract's pattern.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("room names are 1 to 64 characters of A-Z, a-z, 0-9, '_' and '-'")]
pub struct InvalidRoomName;

impl RoomName {
    /// Validates `name`.
    pub fn parse(name: &str) -> Result<Self, InvalidRoomName> {
        let valid =
            (1..=64).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if valid { Ok(Self(name.to_owned())) } else { Err(InvalidRoomName) }
    }
    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RoomName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A participant's id: opaque, unique, cheap to clone (it tags every audio packet).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ParticipantId(Arc<str>);

impl ParticipantId {
    fn new() -> Self {
        Self(Arc::from(uuid::Uuid::new_v4().simple().to_string()))
    }
    /// Wraps an id taken from a URL.
    pub fn from_path(id: &str) -> Self {
        Self(Arc::from(id))
    }
    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
    fn shared(&self) -> Arc<str> {
        Arc::clone(&self.0)
    }
    /// The id the mixer knows a source by.
    fn from_shared(id: Arc<str>) -> Self {
        Self(id)
    }
}

impl fmt::Display for ParticipantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What `GET /rooms/{room}` shows of a participant.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ParticipantInfo {
    /// Id, as in the join's `Location`.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Publishes audio.
    pub audio: bool,
    /// Publishes video.
    pub video: bool,
    /// The codec of the video it publishes, if it does.
    pub video_codec: Option<crate::media::codec::VideoCodec>,
    /// What it receives of the composite, `None` when it receives no video.
    pub receive: Option<ReceiveInfo>,
    /// What a moderator muted.
    pub muted: Muted,
}

/// What a moderator muted of a participant (`POST .../mute`).
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct Muted {
    /// Its audio is in no mix.
    pub audio: bool,
    /// Its cell is black.
    pub video: bool,
}

/// The video a participant receives.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ReceiveInfo {
    /// The codec.
    pub codec: crate::media::codec::VideoCodec,
    /// The tier's name.
    pub quality: String,
    /// Whether the tier follows the receiver's bandwidth.
    pub auto: bool,
}

/// What `GET /rooms/{room}` shows.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RoomState {
    /// Room name.
    pub room: String,
    /// Layout name (`grid` or `speaker`).
    pub layout: &'static str,
    /// The participant the speaker layout features instead of the active speaker.
    pub pin: Option<String>,
    /// The active speaker.
    pub speaker: Option<String>,
    /// The running recording, if any.
    pub recording: Option<serde_json::Value>,
    /// The last recording, when it stopped because it could not write (disk full):
    /// its file, duration, size and error. Gone when another recording starts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recording_failed: Option<RecordingStopped>,
    /// Participants in join order (WHEP viewers are not participants).
    pub participants: Vec<ParticipantInfo>,
    /// WHEP viewers watching.
    pub viewers: usize,
    /// Live streams out (RTMP), their keys masked.
    pub streams: Vec<live::StreamInfo>,
}

/// What `GET /rooms` shows of a room.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RoomSummary {
    /// Room name.
    pub room: String,
    /// Participant count.
    pub participants: usize,
    /// WHEP viewer count (not listed: `GET /rooms` keeps the contract's shape).
    #[serde(skip)]
    pub viewers: usize,
    /// Whether it is being recorded.
    pub recording: bool,
    /// What runs in it, for admission control.
    #[serde(skip)]
    pub load: budget::RoomLoad,
}

/// A join request, validated by the API.
#[derive(Debug)]
pub struct JoinRequest {
    /// The SDP offer.
    pub offer: String,
    /// Display name, if given.
    pub name: Option<String>,
    /// Identity of the token that joined (auth on), who alone may remove it again
    /// besides an admin.
    pub owner: Option<String>,
    /// The quality asked for (`?quality=`).
    pub quality: crate::media::tier::Quality,
    /// How it takes part.
    pub role: Role,
}

/// How a peer takes part in a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A conference participant (`/rooms/{room}/join`): each m-line's direction as
    /// offered.
    Participant,
    /// A WHIP publisher: a cell and a voice, receiving nothing.
    Publisher,
    /// A WHEP viewer: the composite and the full mix; no cell, not listed among the
    /// participants, and the room must exist already.
    Viewer,
}

impl Role {
    /// The offer as this role uses it (see [`OfferSummary::publish_only`]).
    pub fn restrict(self, offer: OfferSummary) -> Result<OfferSummary, crate::rtc::offer::OfferError> {
        match self {
            Self::Participant => Ok(offer),
            Self::Publisher => offer.publish_only(),
            Self::Viewer => offer.receive_only(),
        }
    }
}

/// A successful join.
#[derive(Debug)]
pub struct JoinAnswer {
    /// The new participant.
    pub id: ParticipantId,
    /// The SDP answer.
    pub answer: String,
}

/// Why a join failed.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    /// The offer is unusable.
    #[error(transparent)]
    Offer(#[from] crate::rtc::offer::OfferError),
    /// The WebRTC stack could not negotiate the offer (a fault of the offer).
    #[error("cannot negotiate the offer: {0}")]
    Negotiation(String),
    /// The room has `max_participants_per_room` participants.
    #[error("room is full ({0} participants)")]
    RoomFull(usize),
    /// The server hosts `max_rooms` rooms.
    #[error("server is full ({0} rooms)")]
    ServerFull(usize),
    /// The server is shutting down.
    #[error("server is shutting down")]
    ShuttingDown,
    /// The join would take the server past its CPU budget.
    #[error(transparent)]
    OverBudget(#[from] budget::OverBudget),
    /// A viewer asked for a room that does not exist.
    #[error("unknown room")]
    UnknownRoom,
    /// The room has `max_viewers_per_room` viewers.
    #[error("room has its maximum of {0} viewers")]
    ViewersFull(usize),
    /// The room's media could not be set up.
    #[error("media setup failed: {0}")]
    Media(String),
    /// A fault of the server's own (gathering timed out, a lost reservation).
    #[error("{0}")]
    Internal(String),
}

impl JoinError {
    /// Why, in a word (the `reason` of `mcu_join_failures_total`).
    pub fn reason(&self) -> &'static str {
        match self {
            JoinError::Offer(e) => e.reason(),
            JoinError::Negotiation(_) => "negotiation",
            JoinError::RoomFull(_) => "room_full",
            JoinError::ViewersFull(_) => "viewers_full",
            JoinError::ServerFull(_) => "server_full",
            JoinError::OverBudget(_) => "cpu_budget",
            JoinError::ShuttingDown => "shutting_down",
            JoinError::UnknownRoom => "unknown_room",
            JoinError::Media(_) => "media",
            JoinError::Internal(_) => "internal",
        }
    }
}

/// A recording that just started.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RecordingStarted {
    /// Recording id.
    pub id: String,
    /// File name in the recordings directory.
    pub file: String,
    /// The room recorded.
    pub room: String,
    /// Whether it has video (an audio-only room records audio only).
    pub video: bool,
    /// Start, Unix milliseconds.
    pub started_at_ms: u64,
}

/// A recording that just ended.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RecordingStopped {
    /// File name in the recordings directory.
    pub file: String,
    /// Media duration written.
    pub duration_ms: u64,
    /// File size.
    pub bytes: u64,
    /// Why writing stopped early, if it did (e.g. disk full).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Why a recording could not be started or stopped.
#[derive(Debug, thiserror::Error)]
pub enum RecordingError {
    /// No such room.
    #[error("unknown room")]
    UnknownRoom,
    /// The room is being recorded already.
    #[error("room is already being recorded")]
    AlreadyRecording,
    /// The room is not being recorded.
    #[error("room is not being recorded")]
    NotRecording,
    /// The recordings directory is unusable.
    #[error(transparent)]
    Store(#[from] crate::recordings::StoreError),
    /// The recording pipeline failed.
    #[error("recording failed: {0}")]
    Media(String),
    /// Its encode would take the server past its CPU budget.
    #[error(transparent)]
    OverBudget(#[from] budget::OverBudget),
}

/// Why a participant could not be changed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UpdateError {
    /// No such participant in that room (or no such room).
    #[error("unknown participant")]
    UnknownParticipant,
    /// The participant joined under another identity.
    #[error("participant belongs to another identity")]
    NotYours,
    /// The participant receives no video: it has no quality.
    #[error("the participant receives no video")]
    NoVideo,
}

/// Why a leave failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LeaveError {
    /// No such participant in that room (or no such room).
    #[error("unknown participant")]
    UnknownParticipant,
    /// The participant joined under another identity.
    #[error("participant belongs to another identity")]
    NotYours,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_names_follow_the_contract() {
        for ok in ["a", "Room_1", "x-y-z", &"a".repeat(64)] {
            assert!(RoomName::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", "has space", "dot.dot", "../etc", "é", &"a".repeat(65), "a/b"] {
            assert_eq!(RoomName::parse(bad), Err(InvalidRoomName), "{bad}");
        }
    }
}
