//! The compositor pipeline's bus, read on a thread of its own: errors are logged,
//! latency is recomputed when it changes, and a branch that fails (a publisher's
//! decoder fed frames it cannot decode, an encode of the composite whose encoder
//! errors) is restarted at once rather than left dead, or given up when it keeps
//! failing. The rest of the pipeline never sees the failure: a decode branch feeds
//! the compositor one pad among others, an encode branch tells the tee every push
//! went well (`encode.rs`).

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

/// What happened to a failed branch (a publisher's decode, an encode).
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

/// Called on the bus thread with the encode's key when its branch fails.
pub type OutputFailed = InputFailed;

/// Shared by the mixer and its bus thread: who is told of a failed branch (set after
/// the pipeline starts), and a lock that keeps a restart and a removal of the same
/// branch apart (a restart between a removal's stop and its free would bring the
/// branch back to PLAYING and free it running).
#[derive(Default)]
pub(super) struct BranchWatch {
    pub handler: Mutex<Option<InputFailed>>,
    pub output_handler: Mutex<Option<OutputFailed>>,
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

/// The branch an element belongs to: a decode branch (`in-{key}`) or an encode
/// (`out-{key}`), by its bin's name.
fn failed_branch(element: &gst::Object) -> Option<(String, gst::Bin)> {
    let mut current = Some(element.clone());
    while let Some(object) = current {
        let name = object.name();
        if (name.starts_with("in-") || name.starts_with("out-"))
            && let Ok(bin) = object.clone().downcast::<gst::Bin>()
        {
            return Some((name.to_string(), bin));
        }
        current = object.parent();
    }
    None
}

/// Takes a failed branch down and, when `up`, up again: a decode branch's decoder,
/// depayloader and jitter buffer start afresh (waiting for a keyframe), the same
/// appsrc keeps taking packets; an encoder starts afresh with a keyframe, into the
/// same appsink. A branch being removed (locked state, or already out of the
/// pipeline) is left alone; the removal waits on `changes` meanwhile.
fn restart(bin: &gst::Bin, up: bool, changes: &Mutex<()>) -> bool {
    let _apart = changes.lock().unwrap_or_else(|p| p.into_inner());
    if bin.is_locked_state() || bin.parent().is_none() {
        return false;
    }
    // While an encode is down the tee skips it: a stopped pad answers the tee's push
    // with FLUSHING, which would stop the compositor and every other encode. Given
    // up, it stays skipped until the encode is removed.
    let tee_pad = bin.static_pad("sink").and_then(|sink| sink.peer());
    let skip = tee_pad.as_ref().and_then(|pad| {
        pad.add_probe(gst::PadProbeType::BUFFER | gst::PadProbeType::BUFFER_LIST, |_, _| gst::PadProbeReturn::Drop)
    });
    let _ = bin.set_state(gst::State::Null);
    let restarted = up && bin.sync_state_with_parent().is_ok();
    if restarted && let (Some(pad), Some(skip)) = (tee_pad, skip) {
        pad.remove_probe(skip);
    }
    restarted
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
                        let Some((branch, bin)) = e.src().and_then(failed_branch) else { continue };
                        match handled.get(&branch) {
                            Some(None) => continue,
                            Some(Some(from)) if msg.seqnum() < *from => continue,
                            _ => {}
                        }
                        let verdict = budget.judge(&branch, Instant::now());
                        let restarted = restart(&bin, verdict == Verdict::Restart, &watch.changes);
                        handled.insert(branch.clone(), restarted.then(gst::Seqnum::next));
                        let (handler, key) = match branch.strip_prefix("in-") {
                            Some(key) => (&watch.handler, key),
                            None => (&watch.output_handler, branch.trim_start_matches("out-")),
                        };
                        let handle = handler.lock().unwrap_or_else(|p| p.into_inner()).clone();
                        if let Some(handle) = handle {
                            handle(key, InputFailure { error: e.error().to_string(), restarted });
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

    /// An encoder that fails as real ones do (an element error, then `GST_FLOW_ERROR`
    /// for the frame) is restarted and its frames go on from a keyframe; the encode
    /// beside it on the same compositor never stops. (Before, the error went up the
    /// tee and the compositor's output stopped for good: every encode of the room and
    /// its recording froze.)
    #[test]
    fn a_failed_encoder_is_restarted_and_the_other_encodes_never_stop() {
        use std::sync::atomic::{AtomicBool, Ordering};

        use crate::config::MediaConfig;
        use crate::media::codec::VideoCodec;
        use crate::media::encode::EncodeSpec;
        use crate::media::video::VideoMixer;

        crate::media::init().unwrap();
        let config = MediaConfig { width: 160, height: 90, fps: 30, ..Default::default() };
        let mut mixer = VideoMixer::start(&config, "encode-failure").unwrap();
        let failures = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&failures);
        mixer.on_output_failed(Arc::new(move |key: &str, f: InputFailure| {
            seen.lock().unwrap().push((key.to_owned(), f.restarted))
        }));
        let steady = Arc::new(Mutex::new(Vec::new()));
        let broken = Arc::new(Mutex::new(Vec::new()));
        for (key, frames) in [("steady", &steady), ("broken", &broken)] {
            let frames = Arc::clone(frames);
            let spec = EncodeSpec { codec: VideoCodec::Vp8, width: 160, height: 90, fps: 30, bitrate_bps: 100_000 };
            let sink =
                move |f: crate::media::encode::EncodedFrame| frames.lock().unwrap().push((Instant::now(), f.keyframe));
            mixer.add_output(key, &spec, Arc::new(sink)).unwrap();
        }
        std::thread::sleep(Duration::from_secs(1));
        let bin = mixer.pipeline.by_name("out-broken").unwrap().downcast::<gst::Bin>().unwrap();
        let encoder = bin.iterate_elements().into_iter().flatten().find(|e| e.name().starts_with("vp8enc")).unwrap();
        // Three failures a second apart, then a fourth at once: restarted three
        // times, then given up.
        let fail_next = Arc::new(AtomicBool::new(false));
        let armed = Arc::clone(&fail_next);
        let weak = encoder.downgrade();
        encoder.static_pad("src").unwrap().add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            if !armed.swap(false, Ordering::SeqCst) {
                return gst::PadProbeReturn::Ok;
            }
            if let Some(encoder) = weak.upgrade() {
                gst::element_error!(encoder, gst::LibraryError::Encode, ["injected encoder failure"]);
            }
            info.flow_res = Err(gst::FlowError::Error);
            gst::PadProbeReturn::Handled
        });
        let mut failed_at = Vec::new();
        for _ in 0..3 {
            failed_at.push(Instant::now());
            fail_next.store(true, Ordering::SeqCst);
            std::thread::sleep(Duration::from_secs(1));
        }
        assert_eq!(*failures.lock().unwrap(), vec![("broken".to_owned(), true); 3]);
        // After each failure the broken encode resumes with a keyframe.
        let frames = broken.lock().unwrap().clone();
        for at in &failed_at {
            let next = frames.iter().find(|(t, _)| t > at);
            assert!(
                next.is_some_and(|(t, key)| *key && t.duration_since(*at) < Duration::from_millis(500)),
                "{next:?}"
            );
        }
        // The steady encode never paused.
        let frames = steady.lock().unwrap().clone();
        let longest = frames.windows(2).map(|w| w[1].0 - w[0].0).max().unwrap();
        assert!(longest < Duration::from_millis(500), "the other encode paused {longest:?}");
        fail_next.store(true, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(500));
        assert_eq!(failures.lock().unwrap().last(), Some(&("broken".to_owned(), false)), "a fourth failure in 10 s");
        let before = steady.lock().unwrap().len();
        std::thread::sleep(Duration::from_millis(500));
        assert!(steady.lock().unwrap().len() >= before + 10, "the steady encode goes on after the other is given up");
        mixer.remove_output("broken").unwrap();
        mixer.remove_output("steady").unwrap();
    }
}
