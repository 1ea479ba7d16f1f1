//! The registry of live rooms: finds a room's task or starts one, and routes requests
//! to it. A room leaves the registry only when it has no participant **and** no join
//! in flight, decided under the registry's lock, so a join never lands in a room that
//! is closing.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::budget::{self, RoomLoad};
use super::live::{StreamError, StreamInfo};
use super::task::{RoomCommand, RoomEvent, RoomTask};
use super::{
    JoinAnswer, JoinError, JoinRequest, LeaveError, ParticipantId, RecordingError, RecordingStarted, RecordingStopped,
    RoomName, RoomState, RoomSummary,
};
use crate::config::Config;
use crate::media::codec::VideoCodec;
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
    /// This node's cluster membership (`None`: a single node).
    pub cluster: Option<Arc<crate::cluster::Cluster>>,
}

/// A running room's mailbox and what the registry reads without asking it.
struct RoomHandle {
    commands: mpsc::Sender<RoomCommand>,
    events: mpsc::UnboundedSender<RoomEvent>,
    /// Distinguishes a room from a later one of the same name.
    generation: u64,
    /// Joins that hold this room open (counted under the registry lock).
    pending: Arc<AtomicUsize>,
    /// The room's participant count and recording flag, kept current by the room,
    /// so listing rooms never waits on a busy room.
    summary: Arc<Mutex<RoomSummary>>,
    task: tokio::task::JoinHandle<()>,
}

/// What a room task is given about itself by the registry.
pub(super) struct RoomSlot {
    /// Its name.
    pub name: RoomName,
    /// Its generation (see [`Rooms::close_if_idle`]).
    pub generation: u64,
    /// Where it publishes its summary.
    pub summary: Arc<Mutex<RoomSummary>>,
}

/// All live rooms.
pub struct Rooms {
    ctx: Arc<ServerContext>,
    rooms: Mutex<HashMap<RoomName, RoomHandle>>,
    next_generation: AtomicU64,
    shutting_down: AtomicBool,
    /// Cores promised to joins in flight (thousandths), not yet in any room's load.
    reserved: Arc<AtomicU64>,
    /// Itself, for tasks that outlive a call (the cluster release).
    me: std::sync::Weak<Rooms>,
}

/// Cores promised to one join in flight; given back when dropped (by then the room's
/// own load counts it).
pub(super) struct BudgetHold {
    reserved: Arc<AtomicU64>,
    millicores: u64,
}

impl Drop for BudgetHold {
    fn drop(&mut self) {
        self.reserved.fetch_sub(self.millicores, Ordering::SeqCst);
    }
}

/// A join in flight: keeps its room open until dropped. Dropping it tells the room,
/// which then closes if nothing else holds it.
pub(super) struct PendingJoin {
    /// The room's mailbox.
    pub commands: mpsc::Sender<RoomCommand>,
    events: mpsc::UnboundedSender<RoomEvent>,
    pending: Arc<AtomicUsize>,
    /// The participant id reserved for this join, once the room gave one.
    pub reserved: Option<ParticipantId>,
}

impl Drop for PendingJoin {
    fn drop(&mut self) {
        // Decrement first: the room re-checks the count when the event arrives.
        self.pending.fetch_sub(1, Ordering::SeqCst);
        let _ = self.events.send(RoomEvent::JoinEnded(self.reserved.take()));
    }
}

impl Rooms {
    /// An empty registry.
    pub fn new(ctx: Arc<ServerContext>) -> Arc<Self> {
        Arc::new_cyclic(|me| Self {
            ctx,
            rooms: Mutex::new(HashMap::new()),
            next_generation: AtomicU64::new(1),
            shutting_down: AtomicBool::new(false),
            reserved: Arc::new(AtomicU64::new(0)),
            me: me.clone(),
        })
    }

    /// The CPU budget in cores (`None`: no limit).
    pub fn cpu_budget(&self) -> Option<f64> {
        self.ctx.config.server.cpu_budget()
    }

    /// Estimated cores used by what runs, plus what joins in flight were promised.
    pub fn estimated_cores(&self) -> f64 {
        let running: f64 =
            self.lock().values().map(|h| h.summary.lock().unwrap_or_else(|p| p.into_inner()).load.cores()).sum();
        running + self.reserved.load(Ordering::SeqCst) as f64 / 1000.0
    }

    /// What runs in `room`, if it exists.
    pub(super) fn room_load(&self, room: &RoomName) -> Option<RoomLoad> {
        self.lock().get(room).map(|h| h.summary.lock().unwrap_or_else(|p| p.into_inner()).load.clone())
    }

    /// Promises `needed` cores to a join if the budget has them.
    pub(super) fn admit(&self, needed: f64) -> Result<BudgetHold, budget::OverBudget> {
        let millicores = (needed * 1000.0).ceil() as u64;
        budget::admit(needed, self.estimated_cores(), self.cpu_budget())?;
        // Two joins may pass the check together and overshoot by one join's cost: the
        // estimate is coarse anyway, and a lock here would serialise every join.
        self.reserved.fetch_add(millicores, Ordering::SeqCst);
        Ok(BudgetHold { reserved: Arc::clone(&self.reserved), millicores })
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

    /// Joins `room`, creating it if needed: the offer is checked, negotiated outside
    /// the room and the negotiated peer handed to the room (see `join.rs`).
    pub async fn join(self: &Arc<Self>, room: &RoomName, request: JoinRequest) -> Result<JoinAnswer, JoinError> {
        super::join::join(self, room, request).await
    }

    /// Holds `room` open for one join, starting the room when it does not exist
    /// (unless `create` is false: a viewer's room must exist).
    pub(super) fn hold_for_join(self: &Arc<Self>, room: &RoomName, create: bool) -> Result<PendingJoin, JoinError> {
        let mut rooms = self.lock();
        // Checked under the lock that `shutdown` drains the rooms with: a room created
        // after the drain would never be closed.
        if self.shutting_down.load(Ordering::SeqCst) {
            return Err(JoinError::ShuttingDown);
        }
        if let Some(handle) = rooms.get(room)
            && !handle.commands.is_closed()
        {
            handle.pending.fetch_add(1, Ordering::SeqCst);
            return Ok(PendingJoin {
                commands: handle.commands.clone(),
                events: handle.events.clone(),
                pending: Arc::clone(&handle.pending),
                reserved: None,
            });
        }
        rooms.remove(room);
        if !create {
            return Err(JoinError::UnknownRoom);
        }
        let max = self.ctx.config.server.max_rooms;
        if rooms.len() >= max {
            return Err(JoinError::ServerFull(max));
        }
        let generation = self.next_generation.fetch_add(1, Ordering::Relaxed);
        let (commands, commands_rx) = mpsc::channel(64);
        let (events, events_rx) = mpsc::unbounded_channel();
        let summary = Arc::new(Mutex::new(RoomSummary {
            room: room.to_string(),
            participants: 0,
            viewers: 0,
            recording: false,
            load: RoomLoad::default(),
        }));
        let pending = Arc::new(AtomicUsize::new(1));
        let slot = RoomSlot { name: room.clone(), generation, summary: Arc::clone(&summary) };
        let task = RoomTask::spawn(slot, Arc::clone(self), commands_rx, events.clone(), events_rx);
        rooms.insert(
            room.clone(),
            RoomHandle {
                commands: commands.clone(),
                events: events.clone(),
                generation,
                pending: Arc::clone(&pending),
                summary,
                task,
            },
        );
        crate::metrics::ROOMS_CREATED.inc();
        tracing::info!(room = %room, "room created");
        Ok(PendingJoin { commands, events, pending, reserved: None })
    }

    /// Called by a room with no participant and no reservation: forgets it and
    /// returns true unless a join holds it (or a newer room took the name). A room
    /// that gets `false` keeps running; the join's end wakes it again.
    pub(super) fn close_if_idle(&self, room: &RoomName, generation: u64) -> bool {
        let mut rooms = self.lock();
        match rooms.get(room) {
            Some(h) if h.generation == generation => {
                if h.pending.load(Ordering::SeqCst) > 0 && !self.shutting_down.load(Ordering::SeqCst) {
                    return false;
                }
                rooms.remove(room);
                self.release_in_cluster(room);
                true
            }
            // Already gone (shutdown drained it) or replaced.
            _ => true,
        }
    }

    /// Forgets a room whose task ended without closing normally (a panic), unless a
    /// newer room already took its name.
    pub(super) fn forget(&self, room: &RoomName, generation: u64) {
        let mut rooms = self.lock();
        if rooms.get(room).is_some_and(|h| h.generation == generation) {
            rooms.remove(room);
            self.release_in_cluster(room);
        }
    }

    /// A room closed here: the cluster may place it anew. Should a join have started
    /// the room here again meanwhile, it is claimed back at once (else a join through
    /// another node could start it there before the next refresh).
    fn release_in_cluster(&self, room: &RoomName) {
        let Some(cluster) = self.ctx.cluster.clone() else { return };
        let (room, me) = (room.clone(), self.me.clone());
        tokio::spawn(async move {
            if let Err(e) = cluster.release(&[room.to_string()]).await {
                tracing::warn!(room = %room, error = %e, "cannot release a room in the cluster store (its lease runs out in 10 s)");
            }
            let again = me.upgrade().is_some_and(|rooms| rooms.lock().contains_key(&room));
            if again && !matches!(cluster.accept(room.as_str()).await, Ok(true)) {
                tracing::warn!(room = %room, "a room started here again is owned elsewhere in the cluster");
            }
        });
    }

    /// Every room this node holds, including one whose first join is negotiating.
    pub fn names(&self) -> Vec<String> {
        self.lock().keys().map(|r| r.to_string()).collect()
    }

    /// Test builds only: makes the room's task panic; false when there is no such room.
    #[cfg(feature = "fault-injection")]
    pub async fn inject_panic(&self, room: &RoomName) -> bool {
        match self.sender(room) {
            Some(sender) => sender.send(RoomCommand::Panic).await.is_ok(),
            None => false,
        }
    }

    fn sender(&self, room: &RoomName) -> Option<mpsc::Sender<RoomCommand>> {
        self.lock().get(room).map(|h| h.commands.clone())
    }

    /// Sends a command to `room` and waits for its reply; `None` when the room does
    /// not exist or closed meanwhile.
    async fn ask<T>(&self, room: &RoomName, command: impl FnOnce(oneshot::Sender<T>) -> RoomCommand) -> Option<T> {
        let sender = self.sender(room)?;
        let (reply, rx) = oneshot::channel();
        sender.send(command(reply)).await.ok()?;
        rx.await.ok()
    }

    /// Removes a participant; `by` is the identity asking, `None` for anyone allowed
    /// to remove anybody (open server, admin).
    pub async fn leave(&self, room: &RoomName, id: ParticipantId, by: Option<String>) -> Result<(), LeaveError> {
        self.ask(room, |reply| RoomCommand::Leave { id, by, reply })
            .await
            .unwrap_or(Err(LeaveError::UnknownParticipant))
    }

    /// Changes what a participant receives; `by` as for [`Self::leave`].
    pub async fn set_quality(
        &self,
        room: &RoomName,
        id: ParticipantId,
        by: Option<String>,
        quality: crate::media::tier::Quality,
    ) -> Result<super::ParticipantInfo, super::UpdateError> {
        self.ask(room, |reply| RoomCommand::SetQuality { id, by, quality, reply })
            .await
            .unwrap_or(Err(super::UpdateError::UnknownParticipant))
    }

    /// Sets a room's layout; replies with its state.
    pub async fn set_layout(
        &self,
        room: &RoomName,
        layout: super::core::LayoutChoice,
    ) -> Result<RoomState, super::core::LayoutError> {
        self.ask(room, |reply| RoomCommand::SetLayout { layout, reply })
            .await
            .unwrap_or(Err(super::core::LayoutError::UnknownRoom))
    }

    /// A moderator mutes or unmutes a participant (`None`: unchanged).
    pub async fn mute(
        &self,
        room: &RoomName,
        id: ParticipantId,
        audio: Option<bool>,
        video: Option<bool>,
    ) -> Result<super::ParticipantInfo, super::UpdateError> {
        self.ask(room, |reply| RoomCommand::Mute { id, audio, video, reply })
            .await
            .unwrap_or(Err(super::UpdateError::UnknownParticipant))
    }

    /// Subscribes to a room's events, `None` if it does not exist.
    pub async fn subscribe(&self, room: &RoomName) -> Option<super::notice::Subscription> {
        self.ask(room, |reply| RoomCommand::Subscribe { reply }).await.flatten()
    }

    /// A room's state, `None` if it does not exist.
    pub async fn state(&self, room: &RoomName) -> Option<RoomState> {
        self.ask(room, |reply| RoomCommand::State { reply }).await.flatten()
    }

    /// Starts recording a room's mix in `container`.
    pub async fn start_recording(
        &self,
        room: &RoomName,
        container: crate::media::recorder::Container,
    ) -> Result<RecordingStarted, RecordingError> {
        // A recording of a room with video needs the first tier's encode in its codec;
        // it costs something only when no receiver has it running already.
        let load = self.room_load(room).ok_or(RecordingError::UnknownRoom)?;
        let encode = self.ctx.config.media.tiers().first().map(|t| budget::EncodeLoad::of(container.video_codec(), t));
        let needed = match encode {
            Some(encode) if load.video && !load.encodes.contains(&encode) => encode.cores(),
            _ => 0.0,
        };
        let _hold = self.admit(needed)?;
        self.ask(room, |reply| RoomCommand::StartRecording { container, reply })
            .await
            .unwrap_or(Err(RecordingError::UnknownRoom))
    }

    /// Stops a room's recording and finalizes the file.
    pub async fn stop_recording(&self, room: &RoomName) -> Result<RecordingStopped, RecordingError> {
        self.ask(room, |reply| RoomCommand::StopRecording { reply }).await.unwrap_or(Err(RecordingError::NotRecording))
    }

    /// Checks that a participant or viewer is in the room and `by` may act on it
    /// (as for [`Self::leave`]).
    pub async fn check_member(
        &self,
        room: &RoomName,
        id: &ParticipantId,
        by: Option<String>,
    ) -> Result<(), LeaveError> {
        let id = id.clone();
        self.ask(room, |reply| RoomCommand::CheckMember { id, by, reply })
            .await
            .unwrap_or(Err(LeaveError::UnknownParticipant))
    }

    /// Starts a live stream of the room's mix to an RTMP `url`.
    pub async fn start_stream(&self, room: &RoomName, url: String) -> Result<StreamInfo, StreamError> {
        // Like an MP4 recording, a stream needs the first tier's H.264 encode.
        let load = self.room_load(room).ok_or(StreamError::UnknownRoom)?;
        let encode = self.ctx.config.media.tiers().first().map(|t| budget::EncodeLoad::of(VideoCodec::H264, t));
        let needed = match encode {
            Some(encode) if load.video && !load.encodes.contains(&encode) => encode.cores(),
            _ => 0.0,
        };
        let _hold = self.admit(needed).map_err(StreamError::OverBudget)?;
        self.ask(room, |reply| RoomCommand::StartStream { url, reply }).await.unwrap_or(Err(StreamError::UnknownRoom))
    }

    /// Stops a live stream.
    pub async fn stop_stream(&self, room: &RoomName, id: String) -> Result<StreamInfo, StreamError> {
        self.ask(room, |reply| RoomCommand::StopStream { id, reply }).await.unwrap_or(Err(StreamError::UnknownStream))
    }

    /// Every room with participants, by name. Never waits on a room.
    pub fn list(&self) -> Vec<RoomSummary> {
        let mut out: Vec<RoomSummary> = self
            .lock()
            .values()
            .map(|h| h.summary.lock().unwrap_or_else(|p| p.into_inner()).clone())
            .filter(|s| s.participants > 0)
            .collect();
        out.sort_by(|a, b| a.room.cmp(&b.room));
        out
    }

    /// Rooms and participants, for metrics.
    pub fn counts(&self) -> (usize, usize) {
        let rooms = self.list();
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
