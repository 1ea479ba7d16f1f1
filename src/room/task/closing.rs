//! How a room ends. A normal close removes everyone through the room core, finalizes
//! the recording and frees the media off the runtime. A room whose task panicked
//! cannot trust its own state any more: it is abandoned, letting go of everything it
//! holds outside the process (peers, pipelines, threads, the recording's file)
//! without consulting the core, so one room's fault never touches the others or the
//! server.

use std::sync::Arc;

use tokio::sync::mpsc;

use super::super::live::StreamError;
use super::super::media::{RoomMedia, finalize};
use super::super::{JoinError, LayoutError, LeaveError, RecordingError, UpdateError};
use super::{RoomCommand, RoomTask};
use crate::rtc::peer::Peer;

impl RoomTask {
    /// The normal end: the registry no longer routes to this room.
    pub(super) async fn close(&mut self, commands: mpsc::Receiver<RoomCommand>) {
        refuse_queued(commands).await;
        self.stop_all_streams();
        self.finalize_recording().await;
        while !self.participants.is_empty() {
            self.remove_participant(0, "room closing");
        }
        self.free_media().await;
        self.publish_summary();
        self.notices.send("closed", || serde_json::json!({}));
        tracing::info!(room = %self.slot.name, "room closed");
    }

    /// The end after a panic in the room's loop (`panic` is its message).
    pub(super) async fn abandon(&mut self, commands: mpsc::Receiver<RoomCommand>, panic: String) {
        tracing::error!(room = %self.slot.name, panic, "the room's task panicked: closing the room");
        self.rooms.forget(&self.slot.name, self.slot.generation);
        refuse_queued(commands).await;
        for mut stream in std::mem::take(&mut self.streams) {
            self.end_attempt(&mut stream, true);
        }
        self.finalize_recording().await;
        self.reserved.clear();
        self.disconnect_everyone();
        self.free_media().await;
        self.forget_summary();
        self.notices.send("closed", || serde_json::json!({ "error": "internal error" }));
    }

    /// The recording is finalized before anything else goes: it is the one thing
    /// that outlives the room.
    async fn finalize_recording(&mut self) {
        if let Some(active) = self.media.as_mut().and_then(RoomMedia::detach_recording) {
            let stopped = finalize(active).await;
            tracing::info!(room = %self.slot.name, file = stopped.file, duration_ms = stopped.duration_ms, "recording finalized");
        }
    }

    /// Pipeline and mixer teardown block on GStreamer state changes: done on a
    /// blocking thread, never on a runtime worker.
    async fn free_media(&mut self) {
        if let Some(media) = self.media.take() {
            let _ = tokio::task::spawn_blocking(move || {
                drop(media);
                crate::memory::release_freed_memory();
            })
            .await;
        }
    }

    /// Ends every participant's reading tasks and closes its connection, without the
    /// room core.
    fn disconnect_everyone(&mut self) {
        for p in self.participants.drain(..) {
            for reader in &p.readers {
                reader.abort();
            }
            let peer = Arc::clone(&p.peer);
            tokio::spawn(async move { peer.close().await });
        }
    }

    /// The room's line in `GET /rooms` and the load figures: nothing left.
    fn forget_summary(&self) {
        let mut summary = self.slot.summary.lock().unwrap_or_else(|p| p.into_inner());
        summary.participants = 0;
        summary.viewers = 0;
        summary.recording = false;
        summary.load = Default::default();
    }
}

impl Drop for RoomTask {
    /// A safety net: normally everything is gone by now. Should closing itself panic,
    /// what is left is still let go, off the runtime's threads.
    fn drop(&mut self) {
        if self.participants.is_empty() && self.media.is_none() {
            return;
        }
        tracing::error!(room = %self.slot.name, "a room ended without closing: freeing what it held");
        self.rooms.forget(&self.slot.name, self.slot.generation);
        if tokio::runtime::Handle::try_current().is_ok() {
            self.disconnect_everyone();
        }
        if let Some(media) = self.media.take() {
            let _ = std::thread::Builder::new().name("room-free".into()).spawn(move || drop(media));
        }
    }
}

/// The text of a caught panic.
pub(super) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".to_owned())
}

/// Answers what is queued once the room stops taking commands.
async fn refuse_queued(mut commands: mpsc::Receiver<RoomCommand>) {
    commands.close();
    while let Some(cmd) = commands.recv().await {
        refuse(cmd);
    }
}

/// Answers a command that arrived while the room closes.
fn refuse(cmd: RoomCommand) {
    match cmd {
        RoomCommand::Reserve { reply, .. } => {
            let _ = reply.send(Err(JoinError::ShuttingDown));
        }
        RoomCommand::Admit { admission, reply } => {
            close_peer(admission.peer);
            let _ = reply.send(Err(JoinError::ShuttingDown));
        }
        RoomCommand::Leave { reply, .. } => {
            let _ = reply.send(Err(LeaveError::UnknownParticipant));
        }
        RoomCommand::SetQuality { reply, .. } => {
            let _ = reply.send(Err(UpdateError::UnknownParticipant));
        }
        RoomCommand::State { reply } => {
            let _ = reply.send(None);
        }
        RoomCommand::Subscribe { reply } => {
            let _ = reply.send(None);
        }
        RoomCommand::Mute { reply, .. } => {
            let _ = reply.send(Err(UpdateError::UnknownParticipant));
        }
        RoomCommand::SetLayout { reply, .. } => {
            let _ = reply.send(Err(LayoutError::UnknownRoom));
        }
        RoomCommand::StartRecording { reply, .. } => {
            let _ = reply.send(Err(RecordingError::UnknownRoom));
        }
        RoomCommand::StopRecording { reply } => {
            let _ = reply.send(Err(RecordingError::NotRecording));
        }
        RoomCommand::CheckMember { reply, .. } => {
            let _ = reply.send(Err(LeaveError::UnknownParticipant));
        }
        RoomCommand::StartStream { reply, .. } => {
            let _ = reply.send(Err(StreamError::UnknownRoom));
        }
        RoomCommand::StopStream { reply, .. } => {
            let _ = reply.send(Err(StreamError::UnknownStream));
        }
        RoomCommand::Close => {}
        #[cfg(feature = "fault-injection")]
        RoomCommand::Panic => {}
    }
}

/// Closes a peer that never became a participant.
pub(super) fn close_peer(peer: Peer) {
    tokio::spawn(async move { peer.close().await });
}
