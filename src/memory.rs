//! Giving memory the server freed back to the system.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Returns the free memory of every malloc arena to the system.
///
/// glibc keeps what a thread frees in that thread's arena for reuse. A closing room
/// frees tens of MiB (GStreamer buffers, decoders, encoders, SRTP contexts) across the
/// many threads that allocated them, and without a trim an idle server stays at the
/// resident size of its busiest moment: the soak test measured 58 MiB idle after a
/// warm-up and 191 MiB idle again after two more minutes of rooms opening and closing.
/// Walks every arena, each under its lock (other threads' allocations wait a moment),
/// so it runs at most every [`MIN_INTERVAL`]: call it off the async runtime. A call
/// within the interval is not dropped but done once at its end (on a thread of its
/// own): the last of several rooms closing together has its memory returned too
/// (else an idle server kept up to 70 MiB it had freed, depending on timing).
pub fn release_freed_memory() {
    static LAST: Mutex<Option<Instant>> = Mutex::new(None);
    static PENDING: AtomicBool = AtomicBool::new(false);
    let mut last = LAST.lock().unwrap_or_else(|p| p.into_inner());
    let now = Instant::now();
    if let Some(at) = *last
        && now.duration_since(at) < MIN_INTERVAL
    {
        if !PENDING.swap(true, Ordering::SeqCst) {
            let wait = MIN_INTERVAL - now.duration_since(at);
            let deferred = std::thread::Builder::new().name("mem-trim".into()).spawn(move || {
                std::thread::sleep(wait);
                PENDING.store(false, Ordering::SeqCst);
                release_freed_memory();
            });
            if deferred.is_err() {
                PENDING.store(false, Ordering::SeqCst);
            }
        }
        return;
    }
    *last = Some(now);
    drop(last);
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only takes the allocator's own locks; 0 keeps no padding.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Shortest time between two trims.
const MIN_INTERVAL: Duration = Duration::from_secs(5);
