//! Live streams from the room task: each stream is a consumer of the room's H.264
//! `high` encode (shared with receivers and an MP4 recording) and of the full mix,
//! pushed to its RTMP server by a pipeline of its own. A failing server costs the
//! room nothing: the attempt's pipeline is dropped off the room's thread and the
//! stream tries again later (see [`crate::room::live::Supervisor`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::super::core::{EncodeKey, Input};
use super::super::live::{self, StreamError, StreamInfo, Supervisor};
use super::super::media::Tap;
use super::{RoomEvent, RoomTask};
use crate::media::codec::VideoCodec;
use crate::media::recorder::{Recorder, VideoFormat};

/// How often a running attempt is checked for going live or failing.
const WATCH_INTERVAL: Duration = Duration::from_millis(250);
/// Keyframes of a streamed encode at least this often: RTMP services want a
/// keyframe every 2 s (players join at one), while the WebRTC encodes only make one
/// every 10 s unless asked.
const STREAM_KEYFRAME_INTERVAL: Duration = Duration::from_secs(2);
/// Bytes sent beyond which the server took the stream (connect and publish commands
/// are a few hundred bytes; a second of AAC alone is 16 KB).
const LIVE_AFTER_BYTES: u64 = 8 * 1024;

/// One live stream of the room.
pub(in crate::room) struct LiveStream {
    pub id: String,
    pub url: String,
    pub supervisor: Supervisor,
    /// Counts the attempts, so that reports of an old attempt are ignored.
    attempt: u64,
    /// The encode it streams (while the room has video).
    encode: Option<EncodeKey>,
    /// The running attempt.
    tap: Option<Tap>,
}

impl LiveStream {
    /// What the API shows; `masked` hides the stream key (room state and events).
    pub fn info(&self, masked: bool) -> StreamInfo {
        StreamInfo {
            id: self.id.clone(),
            url: if masked { live::masked_url(&self.url) } else { self.url.clone() },
            state: self.supervisor.state(),
            error: self.supervisor.last_error().map(str::to_owned),
        }
    }
}

/// What happens to a stream, reported to the room.
pub(in crate::room) enum StreamEvent {
    /// The attempt's server takes the stream.
    Live { id: String, attempt: u64 },
    /// The attempt failed.
    Failed { id: String, attempt: u64, error: String },
    /// A backoff ended.
    RetryDue { id: String },
}

impl RoomTask {
    /// `POST /rooms/{room}/streams`.
    pub(super) fn start_stream(&mut self, url: String) -> Result<StreamInfo, StreamError> {
        live::check_url(&url)?;
        if self.media.is_none() {
            return Err(StreamError::UnknownRoom);
        }
        let max = self.ctx.config.recording.max_streams_per_room;
        if self.streams.len() >= max {
            return Err(StreamError::TooMany(max));
        }
        let id = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
        let encode =
            self.media.as_ref().and_then(|m| m.video.as_ref()).map(|_| EncodeKey { codec: VideoCodec::H264, tier: 0 });
        if let Some(key) = encode {
            self.core.handle(Instant::now(), Input::Consumer(key, true));
            self.perform_actions();
        }
        tracing::info!(room = %self.slot.name, stream = id, url = live::masked_url(&url), "live stream starting");
        self.streams.push(LiveStream {
            id: id.clone(),
            url,
            supervisor: Supervisor::new(),
            attempt: 0,
            encode,
            tap: None,
        });
        self.attempt_stream(&id);
        let stream = self.streams.iter().find(|s| s.id == id).ok_or(StreamError::UnknownStream)?;
        let info = stream.info(false);
        self.notify_stream(&id);
        Ok(info)
    }

    /// `DELETE /rooms/{room}/streams/{id}`: ends it (the server sees the stream end).
    pub(super) fn stop_stream(&mut self, id: &str) -> Result<StreamInfo, StreamError> {
        let index = self.streams.iter().position(|s| s.id == id).ok_or(StreamError::UnknownStream)?;
        let mut stream = self.streams.remove(index);
        self.end_attempt(&mut stream, true);
        if let Some(key) = stream.encode {
            self.core.handle(Instant::now(), Input::Consumer(key, false));
            self.perform_actions();
        }
        tracing::info!(room = %self.slot.name, stream = id, "live stream stopped");
        self.notices.send("stream", || serde_json::json!({ "stream": stream.info(true), "stopped": true }));
        Ok(stream.info(false))
    }

    /// Ends every stream (the room closes).
    pub(super) fn stop_all_streams(&mut self) {
        let ids: Vec<String> = self.streams.iter().map(|s| s.id.clone()).collect();
        for id in ids {
            let _ = self.stop_stream(&id);
        }
    }

    pub(super) fn handle_stream_event(&mut self, event: StreamEvent) {
        let now = Instant::now();
        match event {
            StreamEvent::Live { id, attempt } => {
                let Some(stream) = self.streams.iter_mut().find(|s| s.id == id && s.attempt == attempt) else { return };
                stream.supervisor.went_live();
                tracing::info!(room = %self.slot.name, stream = id, "live stream is live");
                self.notify_stream(&id);
            }
            StreamEvent::Failed { id, attempt, error } => {
                let Some(index) = self.streams.iter().position(|s| s.id == id && s.attempt == attempt) else {
                    return;
                };
                let mut stream = self.streams.remove(index);
                self.end_attempt(&mut stream, false);
                let retry_at = stream.supervisor.failed(now, error.clone());
                tracing::warn!(room = %self.slot.name, stream = id, error, state = ?stream.supervisor.state(), "live stream attempt failed");
                match retry_at {
                    Some(at) => self.schedule_retry(&id, at - now),
                    None => {
                        // Given up: the encode it held is released (the stream stays
                        // listed, failed, until it is deleted).
                        if let Some(key) = stream.encode.take() {
                            self.core.handle(now, Input::Consumer(key, false));
                            self.perform_actions();
                        }
                    }
                }
                self.streams.insert(index, stream);
                self.notify_stream(&id);
            }
            StreamEvent::RetryDue { id } => {
                let Some(stream) = self.streams.iter_mut().find(|s| s.id == id) else { return };
                if stream.supervisor.retry_due(now) {
                    self.attempt_stream(&id);
                    self.notify_stream(&id);
                }
            }
        }
    }

    /// Starts an attempt: a pipeline to the server, fed from the encode and the mix.
    fn attempt_stream(&mut self, id: &str) {
        let tier = self.core.tiers().first().cloned();
        let Some(stream) = self.streams.iter_mut().find(|s| s.id == id) else { return };
        stream.attempt += 1;
        let attempt = stream.attempt;
        let format = tier.filter(|_| stream.encode.is_some()).map(|t| VideoFormat {
            width: t.width,
            height: t.height,
            fps: t.fps,
        });
        let started = tokio::task::block_in_place(|| Recorder::start_stream(&stream.url, format));
        let recorder = match started {
            Ok(recorder) => Arc::new(recorder),
            Err(e) => {
                let event = StreamEvent::Failed { id: id.to_owned(), attempt, error: e.to_string() };
                let _ = self.events.send(RoomEvent::Stream(event));
                return;
            }
        };
        let tap = Tap::new(Arc::clone(&recorder), stream.encode, format!("*stream-{id}"));
        let encode = stream.encode;
        if let Some(media) = self.media.as_mut() {
            media.attach(&tap, &self.ctx.config.media);
        }
        stream.tap = Some(tap);
        // The stream starts at a keyframe: ask for one now.
        if let Some(key) = encode {
            self.core.handle(Instant::now(), Input::EncodeNeedsKeyframe(key));
            self.perform_actions();
        }
        self.watch_attempt(id.to_owned(), attempt, Arc::downgrade(&recorder), encode);
    }

    /// Ends the running attempt, if any: `flush` sends what is queued and the end of
    /// stream first (a deliberate stop); otherwise the pipeline is simply dropped.
    pub(super) fn end_attempt(&mut self, stream: &mut LiveStream, flush: bool) {
        let Some(tap) = stream.tap.take() else { return };
        if let Some(media) = self.media.as_mut() {
            media.detach(&tap);
        }
        let recorder = tap.into_recorder();
        // Stopped here, off the room's thread: the audio mixer may hold the last
        // reference a moment longer, and must not be the one to tear it down.
        tokio::task::spawn_blocking(move || {
            if flush {
                let _ = recorder.finish();
            } else {
                recorder.abort();
            }
        });
    }

    /// Reports the attempt going live or failing, and asks for the stream's regular
    /// keyframes; ends with the attempt.
    fn watch_attempt(&self, id: String, attempt: u64, recorder: std::sync::Weak<Recorder>, encode: Option<EncodeKey>) {
        let events = self.events.clone();
        tokio::spawn(async move {
            let mut live = false;
            let mut last_keyframe = tokio::time::Instant::now();
            loop {
                tokio::time::sleep(WATCH_INTERVAL).await;
                let Some(recorder) = recorder.upgrade() else { return };
                if let Some(key) = encode
                    && last_keyframe.elapsed() >= STREAM_KEYFRAME_INTERVAL
                {
                    last_keyframe = tokio::time::Instant::now();
                    let _ = events.send(RoomEvent::EncodeNeedsKeyframe(key));
                }
                if let Some(error) = recorder.failure() {
                    let _ = events.send(RoomEvent::Stream(StreamEvent::Failed { id, attempt, error }));
                    return;
                }
                if !live && recorder.sent_bytes() > LIVE_AFTER_BYTES {
                    live = true;
                    if events.send(RoomEvent::Stream(StreamEvent::Live { id: id.clone(), attempt })).is_err() {
                        return;
                    }
                }
            }
        });
    }

    fn schedule_retry(&self, id: &str, after: Duration) {
        let (events, id) = (self.events.clone(), id.to_owned());
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            let _ = events.send(RoomEvent::Stream(StreamEvent::RetryDue { id }));
        });
    }

    fn notify_stream(&self, id: &str) {
        if let Some(stream) = self.streams.iter().find(|s| s.id == id) {
            self.notices.send("stream", || serde_json::json!({ "stream": stream.info(true) }));
        }
    }

    /// The streams as `GET /rooms/{room}` shows them.
    pub(super) fn stream_infos(&self) -> Vec<StreamInfo> {
        self.streams.iter().map(|s| s.info(true)).collect()
    }
}
