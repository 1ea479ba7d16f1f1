//! The compositor pipeline's bus, read on a thread of its own: errors are logged,
//! latency is recomputed when it changes, and a publisher's decode branch that fails
//! (a decoder fed frames it cannot decode, a flow error) is restarted at once rather
//! than left dead, or given up when it keeps failing.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer::prelude::*;

use super::MediaError;

/// Restarts of one branch within [`RESTART_WINDOW`] before it is given up.
pub const RESTARTS_ALLOWED: usize = 3;
/// See [`RESTARTS_ALLOWED`].
pub const RESTART_WINDOW: Duration = Duration::from_secs(10);

/// What happened to a failed decode branch.
#[derive(Debug, Clone)]
pub struct InputFailure {
    /// The error GStreamer reported.
    pub error: String,
    /// Whether the branch was restarted (else it failed too often and is left
    /// stopped: the publisher's video should be dropped).
    pub restarted: bool,
}

/// Called on the bus thread with the input's key when its branch fails.
pub type InputFailed = Arc<dyn Fn(&str, InputFailure) + Send + Sync>;

/// Shared by the mixer and its bus thread: who is told of a failed branch (set after
/// the pipeline starts), and a lock that keeps a restart and a removal of the same
/// branch apart (a restart between a removal's stop and its free would bring the
/// branch back to PLAYING and free it running).
#[derive(Default)]
pub(super) struct BranchWatch {
    pub handler: Mutex<Option<InputFailed>>,
    pub changes: Mutex<()>,
}

/// What to do about a branch's failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Restart the branch.
    Restart,
    /// It failed too often: stop it for good.
    GiveUp,
}

/// Counts each branch's recent failures.
#[derive(Debug, Default)]
pub struct RestartBudget {
    recent: HashMap<String, VecDeque<Instant>>,
}

impl RestartBudget {
    /// Judges a failure of input `key` at `now` (each failure once: the messages of
    /// one failure are told apart by the caller).
    pub fn judge(&mut self, key: &str, now: Instant) -> Verdict {
        let times = self.recent.entry(key.to_owned()).or_default();
        while times.front().is_some_and(|&t| now.saturating_duration_since(t) > RESTART_WINDOW) {
            times.pop_front();
        }
        times.push_back(now);
        if times.len() > RESTARTS_ALLOWED { Verdict::GiveUp } else { Verdict::Restart }
    }
}

/// The decode branch (`in-{key}`) an element belongs to, with its key.
fn input_branch(element: &gst::Object) -> Option<(String, gst::Bin)> {
    let mut current = Some(element.clone());
    while let Some(object) = current {
        if let Some(key) = object.name().strip_prefix("in-")
            && let Ok(bin) = object.clone().downcast::<gst::Bin>()
        {
            return Some((key.to_owned(), bin));
        }
        current = object.parent();
    }
    None
}

/// Takes a failed branch down and, when `up`, up again: decoder, depayloader and
/// jitter buffer start afresh (waiting for a keyframe), the same appsrc keeps taking
/// packets. A branch being removed (locked state, or already out of the pipeline) is
/// left alone; the removal waits on `changes` meanwhile.
fn restart(bin: &gst::Bin, up: bool, changes: &Mutex<()>) -> bool {
    let _apart = changes.lock().unwrap_or_else(|p| p.into_inner());
    if bin.is_locked_state() || bin.parent().is_none() {
        return false;
    }
    let _ = bin.set_state(gst::State::Null);
    up && bin.sync_state_with_parent().is_ok()
}

/// Starts the bus thread of the pipeline of room `room`; it ends on the
/// `mcu-stop` application message.
pub(super) fn spawn(
    pipeline: &gst::Pipeline,
    room: &str,
    watch: Arc<BranchWatch>,
) -> Result<std::thread::JoinHandle<()>, MediaError> {
    let bus = pipeline.bus().ok_or_else(|| MediaError::Pipeline("pipeline has no bus".into()))?;
    let weak = pipeline.downgrade();
    let room = room.to_owned();
    std::thread::Builder::new()
        .name(format!("bus-{room}"))
        .spawn(move || {
            let mut budget = RestartBudget::default();
            // Per branch, the first message that can be of a new failure: those created
            // before its restart (the rest of one failure's cascade: the decoder's
            // error, then its source's and its queue's) are not. A branch given up
            // ignores everything after.
            let mut handled: HashMap<String, Option<gst::Seqnum>> = HashMap::new();
            for msg in bus.iter_timed(gst::ClockTime::NONE) {
                use gst::MessageView;
                match msg.view() {
                    MessageView::Application(a) if a.structure().is_some_and(|s| s.name() == "mcu-stop") => break,
                    MessageView::Error(e) => {
                        tracing::error!(
                            room,
                            source = ?e.src().map(|s| s.path_string()),
                            error = %e.error(),
                            debug = ?e.debug(),
                            "video pipeline error"
                        );
                        let Some((key, bin)) = e.src().and_then(input_branch) else { continue };
                        match handled.get(&key) {
                            Some(None) => continue,
                            Some(Some(from)) if msg.seqnum() < *from => continue,
                            _ => {}
                        }
                        let verdict = budget.judge(&key, Instant::now());
                        let restarted = restart(&bin, verdict == Verdict::Restart, &watch.changes);
                        handled.insert(key.clone(), restarted.then(gst::Seqnum::next));
                        let handle = watch.handler.lock().unwrap_or_else(|p| p.into_inner()).clone();
                        if let Some(handle) = handle {
                            handle(&key, InputFailure { error: e.error().to_string(), restarted });
                        }
                    }
                    MessageView::Warning(w) => tracing::debug!(
                        room,
                        source = ?w.src().map(|s| s.path_string()),
                        warning = %w.error(),
                        "video pipeline warning"
                    ),
                    MessageView::Latency(_) => {
                        if let Some(p) = weak.upgrade() {
                            let _ = p.recalculate_latency();
                        }
                    }
                    _ => {}
                }
            }
        })
        .map_err(|e| MediaError::Pipeline(format!("cannot spawn bus thread: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_branch_is_restarted_three_times_in_ten_seconds_then_given_up() {
        let mut budget = RestartBudget::default();
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        assert_eq!(budget.judge("a", at(0)), Verdict::Restart);
        assert_eq!(budget.judge("a", at(1000)), Verdict::Restart);
        assert_eq!(budget.judge("a", at(2000)), Verdict::Restart);
        assert_eq!(budget.judge("b", at(2500)), Verdict::Restart, "each branch has its own budget");
        assert_eq!(budget.judge("a", at(3000)), Verdict::GiveUp, "a fourth failure within 10 s");
    }

    #[test]
    fn failures_further_apart_than_the_window_are_always_restarted() {
        let mut budget = RestartBudget::default();
        let t0 = Instant::now();
        for i in 0..10 {
            assert_eq!(budget.judge("a", t0 + RESTART_WINDOW * i / 2), Verdict::Restart, "failure {i}");
        }
    }
}
