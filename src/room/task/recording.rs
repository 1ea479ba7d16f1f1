//! Recording a room from its task: the recorded encode is a consumer the room core
//! keeps running, whoever else receives it.

use super::super::core::{EncodeKey, Input};
use super::super::media::{RoomMedia, finalize};
use super::super::{RecordingError, RecordingStarted};
use std::sync::Arc;
use std::time::Duration;

use super::{RoomEvent, RoomTask};
use crate::media::recorder::Container;

/// How often a running recording is checked for a write failure.
const FAILURE_POLL: Duration = Duration::from_millis(250);

impl RoomTask {
    pub(super) fn start_recording(&mut self, container: Container) -> Result<RecordingStarted, RecordingError> {
        let Some(media) = self.media.as_ref() else { return Err(RecordingError::UnknownRoom) };
        // The recording has video when the room has a composite (someone negotiated
        // video, even only to watch: cameras may come later); it records the top
        // tier's encode in the container's codec, started for it if nobody receives
        // that.
        let encode = media.video.as_ref().map(|_| EncodeKey { codec: container.video_codec(), tier: 0 });
        if let Some(key) = encode {
            self.core.handle(std::time::Instant::now(), Input::Consumer(key, true));
            self.perform_actions();
        }
        let tier = self.core.tiers().first().cloned();
        let media = self.media.as_mut().ok_or(RecordingError::UnknownRoom)?;
        let result = media.start_recording(
            self.slot.name.as_str(),
            container,
            tier.as_ref(),
            encode,
            &self.ctx.config.media,
            &self.ctx.recordings,
        );
        if result.is_ok()
            && let Some(active) = self.media.as_ref().and_then(|m| m.recording.as_ref())
        {
            self.recording_failed = None;
            self.notices
                .send("recording", || serde_json::json!({ "recording": super::super::media::recording_state(active) }));
        }
        // The file starts at a keyframe: ask for one at once, and again each second
        // until one arrives (a file without one would have no video at all).
        match (&result, encode) {
            (Ok(_), Some(key)) => self.core.handle(std::time::Instant::now(), Input::EncodeNeedsKeyframe(key)),
            (Err(_), Some(key)) => self.core.handle(std::time::Instant::now(), Input::Consumer(key, false)),
            _ => {}
        }
        if let Ok(started) = &result {
            self.watch_recording(started.id.clone(), encode);
        }
        result
    }

    /// Watches the running recording until it ends: asks for its keyframe again each
    /// second until its file starts, and tells the room when it fails to write.
    fn watch_recording(&self, id: String, key: Option<EncodeKey>) {
        let Some(recorder) =
            self.media.as_ref().and_then(|m| m.recording.as_ref()).map(|r| Arc::downgrade(&r.recorder))
        else {
            return;
        };
        let (events, room) = (self.events.clone(), self.slot.name.clone());
        tokio::spawn(async move {
            let mut since_ask = Duration::ZERO;
            loop {
                tokio::time::sleep(FAILURE_POLL).await;
                since_ask += FAILURE_POLL;
                let Some(recorder) = recorder.upgrade() else { return };
                if recorder.failure().is_some() {
                    let _ = events.send(RoomEvent::RecordingFailed(id));
                    return;
                }
                if let Some(key) = key.filter(|_| !recorder.started() && since_ask >= Duration::from_secs(1)) {
                    since_ask = Duration::ZERO;
                    tracing::warn!(room = %room, "the recording has no video keyframe after a second: asking again");
                    if events.send(RoomEvent::EncodeNeedsKeyframe(key)).is_err() {
                        return;
                    }
                }
            }
        });
    }

    /// Stops a recording that can no longer write (disk full, file removed): what it
    /// wrote is finalized as far as it goes, the room state and a `recording` event say
    /// why, and the room goes on.
    pub(super) fn stop_failed_recording(&mut self, id: &str) {
        let running = self.media.as_ref().and_then(|m| m.recording.as_ref());
        if running.is_none_or(|r| r.started.id != id) {
            return;
        }
        let Some(active) = self.media.as_mut().and_then(RoomMedia::detach_recording) else { return };
        let error = active.recorder.failure().unwrap_or_default();
        let file = active.started.file.clone();
        tracing::error!(room = %self.slot.name, file, error, "recording failed: stopped");
        self.notices.send("recording", || serde_json::json!({ "recording": null, "file": file, "error": error }));
        if let Some(key) = active.encode() {
            self.core.handle(std::time::Instant::now(), Input::Consumer(key, false));
        }
        let events = self.events.clone();
        tokio::spawn(async move {
            let _ = events.send(RoomEvent::RecordingFinalized(finalize(active).await));
        });
    }

    pub(super) fn maybe_start_auto_recording(&mut self) {
        if !self.ctx.config.recording.auto || self.auto_recording_tried {
            return;
        }
        self.auto_recording_tried = true;
        if let Err(e) = self.start_recording(Container::Webm) {
            tracing::error!(room = %self.slot.name, error = %e, "cannot start automatic recording");
        }
    }
}
