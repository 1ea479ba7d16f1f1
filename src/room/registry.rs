//! The registry of live rooms: finds a room's task or starts one, and routes requests
//! to it. A room removes itself from here when its last participant leaves.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::task::{JoinOutcome, RoomCommand, RoomTask};
use super::{
    JoinAnswer, JoinError, JoinRequest, LeaveError, ParticipantId, RecordingError, RecordingStarted, RecordingStopped,
    RoomName, RoomState, RoomSummary,
};
use crate::config::Config;
use crate::recordings::RecordingStore;
use crate::rtc::engine::RtcEngine;

/// What every room shares: configuration and the WebRTC stack.
pub struct ServerContext {
    /// The configuration the server started with.
    pub config: Config,
    /// The one WebRTC API.
    pub engine: RtcEngine,
    /// Where recordings are written.
    pub recordings: RecordingStore,
}

/// A running room's mailbox.
struct RoomHandle {
    commands: mpsc::Sender<RoomCommand>,
    /// Distinguishes a room from a later one of the same name.
    generation: u64,
    task: tokio::task::JoinHandle<()>,
}

/// All live rooms.
pub struct Rooms {
    ctx: Arc<ServerContext>,
    rooms: Mutex<HashMap<RoomName, RoomHandle>>,
    next_generation: AtomicU64,
    shutting_down: AtomicBool,
}

impl Rooms {
    /// An empty registry.
    pub fn new(ctx: Arc<ServerContext>) -> Arc<Self> {
        Arc::new(Self {
            ctx,
            rooms: Mutex::new(HashMap::new()),
            next_generation: AtomicU64::new(1),
            shutting_down: AtomicBool::new(false),
        })
    }

    /// The server context.
    pub fn context(&self) -> &Arc<ServerContext> {
        &self.ctx
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<RoomName, RoomHandle>> {
        // A panic while holding this lock cannot leave the map inconsistent (single
        // inserts/removes), so a poisoned lock is still usable.
        self.rooms.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Joins `room`, creating it if needed.
    pub async fn join(self: &Arc<Self>, room: &RoomName, request: JoinRequest) -> Result<JoinAnswer, JoinError> {
        let mut request = Some(request);
        // A room that closes between lookup and delivery answers RoomClosed; the
        // second attempt then creates a fresh room.
        for _ in 0..3 {
            let sender = self.room_for_join(room)?;
            let (reply, answer) = oneshot::channel();
            let req = request.take().ok_or(JoinError::RoomClosed)?;
            if let Err(mpsc::error::SendError(RoomCommand::Join { request: req, .. })) =
                sender.send(RoomCommand::Join { request: req, reply }).await
            {
                request = Some(req);
                continue;
            }
            match answer.await {
                Ok(JoinOutcome::Done(result)) => return result,
                Ok(JoinOutcome::Retry(req)) => request = Some(req),
                Err(_) => return Err(JoinError::RoomClosed),
            }
        }
        Err(JoinError::RoomClosed)
    }

    fn room_for_join(self: &Arc<Self>, room: &RoomName) -> Result<mpsc::Sender<RoomCommand>, JoinError> {
        if self.shutting_down.load(Ordering::SeqCst) {
            return Err(JoinError::ShuttingDown);
        }
        let mut rooms = self.lock();
        if let Some(handle) = rooms.get(room) {
            if !handle.commands.is_closed() {
                return Ok(handle.commands.clone());
            }
            rooms.remove(room);
        }
        let max = self.ctx.config.server.max_rooms;
        if rooms.len() >= max {
            return Err(JoinError::ServerFull(max));
        }
        let generation = self.next_generation.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(64);
        let task = RoomTask::spawn(room.clone(), generation, Arc::clone(self), rx);
        rooms.insert(room.clone(), RoomHandle { commands: tx.clone(), generation, task });
        tracing::info!(room = %room, "room created");
        Ok(tx)
    }

    /// Called by a room task that is closing: forget it unless a newer room took the
    /// name already.
    pub(super) fn remove_if_current(&self, room: &RoomName, generation: u64) {
        let mut rooms = self.lock();
        if rooms.get(room).is_some_and(|h| h.generation == generation) {
            rooms.remove(room);
        }
    }

    fn sender(&self, room: &RoomName) -> Option<mpsc::Sender<RoomCommand>> {
        self.lock().get(room).map(|h| h.commands.clone())
    }

    /// Removes a participant; `by` is the identity asking, `None` for anyone allowed
    /// to remove anybody (open server, admin).
    pub async fn leave(&self, room: &RoomName, id: ParticipantId, by: Option<String>) -> Result<(), LeaveError> {
        let sender = self.sender(room).ok_or(LeaveError::UnknownParticipant)?;
        let (reply, rx) = oneshot::channel();
        sender.send(RoomCommand::Leave { id, by, reply }).await.map_err(|_| LeaveError::UnknownParticipant)?;
        rx.await.unwrap_or(Err(LeaveError::UnknownParticipant))
    }

    /// A room's state, `None` if it does not exist.
    pub async fn state(&self, room: &RoomName) -> Option<RoomState> {
        let sender = self.sender(room)?;
        let (reply, rx) = oneshot::channel();
        sender.send(RoomCommand::State { reply }).await.ok()?;
        rx.await.ok()
    }

    /// Starts recording a room's mix.
    pub async fn start_recording(&self, room: &RoomName) -> Result<RecordingStarted, RecordingError> {
        let sender = self.sender(room).ok_or(RecordingError::UnknownRoom)?;
        let (reply, rx) = oneshot::channel();
        sender.send(RoomCommand::StartRecording { reply }).await.map_err(|_| RecordingError::UnknownRoom)?;
        rx.await.unwrap_or(Err(RecordingError::UnknownRoom))
    }

    /// Stops a room's recording and finalizes the file.
    pub async fn stop_recording(&self, room: &RoomName) -> Result<RecordingStopped, RecordingError> {
        let sender = self.sender(room).ok_or(RecordingError::NotRecording)?;
        let (reply, rx) = oneshot::channel();
        sender.send(RoomCommand::StopRecording { reply }).await.map_err(|_| RecordingError::NotRecording)?;
        rx.await.unwrap_or(Err(RecordingError::NotRecording))
    }

    /// Every room, by name.
    pub async fn list(&self) -> Vec<RoomSummary> {
        let names: Vec<RoomName> = {
            let rooms = self.lock();
            let mut names: Vec<RoomName> = rooms.keys().cloned().collect();
            names.sort();
            names
        };
        let mut out = Vec::with_capacity(names.len());
        for name in names {
            if let Some(state) = self.state(&name).await {
                out.push(RoomSummary {
                    room: state.room,
                    participants: state.participants.len(),
                    recording: state.recording.is_some(),
                });
            }
        }
        out
    }

    /// Rooms and participants, for metrics.
    pub async fn counts(&self) -> (usize, usize) {
        let rooms = self.list().await;
        (rooms.len(), rooms.iter().map(|r| r.participants).sum())
    }

    /// Stops accepting joins, closes every room (peers closed, media freed) and waits
    /// up to `timeout` for them.
    pub async fn shutdown(&self, timeout: Duration) {
        self.shutting_down.store(true, Ordering::SeqCst);
        let handles: Vec<RoomHandle> = self.lock().drain().map(|(_, h)| h).collect();
        let mut tasks = Vec::new();
        for h in handles {
            let _ = h.commands.send(RoomCommand::Close).await;
            tasks.push(h.task);
        }
        let all = futures::future::join_all(tasks);
        if tokio::time::timeout(timeout, all).await.is_err() {
            tracing::warn!("some rooms did not close in time");
        }
    }
}
