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

/// Where the bus thread finds the room's handler (set after the pipeline starts).
pub(super) type FailureHandler = Arc<Mutex<Option<InputFailed>>>;

/// Errors of one branch this close together are one failure (a decoder's error is
/// followed by its source's and its queue's as the flow error travels upstream).
const SAME_FAILURE: Duration = Duration::from_millis(500);

/// What to do about a branch's error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Restart the branch.
    Restart,
    /// Another message of a failure already handled: nothing.
    Ignore,
    /// It failed too often: stop it for good.
    GiveUp,
}

/// Counts each branch's recent restarts.
#[derive(Debug, Default)]
pub struct RestartBudget {
    recent: HashMap<String, VecDeque<Instant>>,
}

impl RestartBudget {
    /// Judges an error of input `key` at `now`, counting a restart when it allows one.
    pub fn judge(&mut self, key: &str, now: Instant) -> Verdict {
        let times = self.recent.entry(key.to_owned()).or_default();
        if times.back().is_some_and(|&t| now.saturating_duration_since(t) < SAME_FAILURE) {
            return Verdict::Ignore;
        }
        while times.front().is_some_and(|&t| now.saturating_duration_since(t) > RESTART_WINDOW) {
            times.pop_front();
        }
        // A branch given up stays counted (its later messages are ignored above).
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

/// Takes a failed branch down and up again: decoder, depayloader and jitter buffer
/// start afresh (waiting for a keyframe), the same appsrc keeps taking packets. A
/// branch being removed (locked state) is left alone.
fn restart(bin: &gst::Bin) -> bool {
    if bin.is_locked_state() {
        return false;
    }
    let _ = bin.set_state(gst::State::Null);
    bin.sync_state_with_parent().is_ok()
}

/// Starts the bus thread of the pipeline of room `room`; it ends on the
/// `mcu-stop` application message.
pub(super) fn spawn(
    pipeline: &gst::Pipeline,
    room: &str,
    handler: FailureHandler,
) -> Result<std::thread::JoinHandle<()>, MediaError> {
    let bus = pipeline.bus().ok_or_else(|| MediaError::Pipeline("pipeline has no bus".into()))?;
    let weak = pipeline.downgrade();
    let room = room.to_owned();
    std::thread::Builder::new()
        .name(format!("bus-{room}"))
        .spawn(move || {
            let mut budget = RestartBudget::default();
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
                        let restarted = match budget.judge(&key, Instant::now()) {
                            Verdict::Ignore => continue,
                            Verdict::Restart => restart(&bin),
                            Verdict::GiveUp => false,
                        };
                        if !restarted {
                            let _ = bin.set_state(gst::State::Null);
                        }
                        let handle = handler.lock().unwrap_or_else(|p| p.into_inner()).clone();
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
        assert_eq!(budget.judge("a", at(100)), Verdict::Ignore, "the same failure's next message");
        assert_eq!(budget.judge("a", at(1000)), Verdict::Restart);
        assert_eq!(budget.judge("a", at(2000)), Verdict::Restart);
        assert_eq!(budget.judge("b", at(2500)), Verdict::Restart, "each branch has its own budget");
        assert_eq!(budget.judge("a", at(3000)), Verdict::GiveUp, "a fourth failure within 10 s");
        assert_eq!(budget.judge("a", at(3100)), Verdict::Ignore);
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
