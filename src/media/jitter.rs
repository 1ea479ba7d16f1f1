//! Audio jitter buffer: reorders RTP packets by sequence number and hands the mixer
//! one packet per playout step, telling it when a packet is lost (so the decoder can
//! conceal it) and when the stream has run dry (so the source is silent).
//!
//! Pure logic: the mixer's 20 ms tick is the only clock. The buffer fills to
//! `target_depth` packets before playing (absorbing network jitter), re-buffers after
//! an underrun, and drops the oldest packets when the sender's clock runs faster than
//! ours and the depth creeps above `max_depth`.
//!
//! Between those, latency must not drift: a burst (a stalled mixer tick, a network
//! hiccup) leaves extra packets that would otherwise stay queued for the rest of the
//! call. Over every [`DRIFT_WINDOW`] playout steps the buffer notes its smallest
//! depth just before playing a packet; when even that stayed above the target,
//! nothing needed the extra packets, and about half the excess is shed (oldest
//! first, at least one packet) so latency returns to the target in a few windows
//! without a long audible skip. The comparison is with the target itself, not the
//! target plus one: a stream that started with one packet more than the target (a
//! start-up burst, the common case) would otherwise stay 20 ms late for the whole
//! call.

use std::collections::BTreeMap;

/// What the mixer gets for one playout step.
#[derive(Debug, PartialEq, Eq)]
pub enum Playout<T> {
    /// The next packet in sequence.
    Packet(T),
    /// The next packet is missing but later ones arrived: conceal one frame.
    Lost,
    /// Nothing to play (not started yet, or ran dry): the source is silent.
    Silent,
}

/// Reordering buffer keyed by extended (unwrapped) RTP sequence number.
#[derive(Debug)]
pub struct JitterBuffer<T> {
    packets: BTreeMap<u64, T>,
    /// Extended sequence number the next playout step wants; `None` before the
    /// first packet.
    next_seq: Option<u64>,
    /// Highest extended sequence number seen; the reference for unwrapping.
    highest: Option<u64>,
    /// Packets buffered before playout starts (and restarts after an underrun).
    target_depth: usize,
    /// Depth above which the oldest packets are dropped (sender clock drift, bursts).
    max_depth: usize,
    playing: bool,
    /// Smallest depth seen in the current drift window, and steps in it.
    window_min: usize,
    window_steps: usize,
    /// Packets shed so far to bring latency back to the target.
    shed: u64,
}

/// Playout steps over which the smallest depth is watched (1 s of 20 ms packets).
pub const DRIFT_WINDOW: usize = 50;

impl<T> JitterBuffer<T> {
    /// A buffer that starts playing at `target_depth` packets and never holds more
    /// than `max_depth`.
    pub fn new(target_depth: usize, max_depth: usize) -> Self {
        let target_depth = target_depth.max(1);
        Self {
            packets: BTreeMap::new(),
            next_seq: None,
            highest: None,
            target_depth,
            max_depth: max_depth.max(target_depth + 1),
            playing: false,
            window_min: usize::MAX,
            window_steps: 0,
            shed: 0,
        }
    }

    /// Packets shed so far because latency had drifted above the target.
    pub fn shed(&self) -> u64 {
        self.shed
    }

    /// Watches the depth at one playout step; at the end of a window whose smallest
    /// depth stayed above the target, sheds about half the excess.
    fn watch_drift(&mut self) {
        self.window_min = self.window_min.min(self.packets.len());
        self.window_steps += 1;
        if self.window_steps < DRIFT_WINDOW {
            return;
        }
        let excess = self.window_min.saturating_sub(self.target_depth);
        for _ in 0..excess.div_ceil(2) {
            self.packets.pop_first();
            self.shed += 1;
        }
        if excess > 0 {
            self.next_seq = self.packets.keys().next().copied();
        }
        self.window_min = usize::MAX;
        self.window_steps = 0;
    }

    /// Number of packets waiting.
    pub fn depth(&self) -> usize {
        self.packets.len()
    }

    /// Inserts a packet. Late packets (already played or concealed) and duplicates are
    /// dropped; returns whether the packet was kept.
    pub fn push(&mut self, seq: u16, packet: T) -> bool {
        let ext = self.unwrap_seq(seq);
        if self.next_seq.is_some_and(|next| ext < next) || self.packets.contains_key(&ext) {
            return false;
        }
        self.highest = Some(self.highest.map_or(ext, |h| h.max(ext)));
        self.packets.insert(ext, packet);
        while self.packets.len() > self.max_depth {
            // Drift or a burst: drop the oldest until back at the target depth.
            while self.packets.len() > self.target_depth {
                self.packets.pop_first();
            }
            self.next_seq = self.packets.keys().next().copied();
        }
        true
    }

    /// The next playout step.
    pub fn pop(&mut self) -> Playout<T> {
        if !self.playing {
            if self.packets.len() < self.target_depth {
                return Playout::Silent;
            }
            self.playing = true;
            if self.next_seq.is_none_or(|next| self.packets.keys().next().is_some_and(|&k| k > next)) {
                // Fresh start or a long outage: start at the oldest buffered packet
                // rather than concealing the whole gap.
                self.next_seq = self.packets.keys().next().copied();
            }
        }
        self.watch_drift();
        let Some(next) = self.next_seq else {
            return Playout::Silent;
        };
        if let Some(packet) = self.packets.remove(&next) {
            self.next_seq = Some(next + 1);
            return Playout::Packet(packet);
        }
        if self.packets.is_empty() {
            // Underrun: go quiet and re-buffer; the gap is not concealed forever.
            self.playing = false;
            self.window_min = usize::MAX;
            self.window_steps = 0;
            return Playout::Silent;
        }
        self.next_seq = Some(next + 1);
        Playout::Lost
    }

    /// The packet the next playout step would play, if it is here. After a
    /// [`Playout::Lost`], this is the packet right after the lost one, whose Opus
    /// in-band FEC may carry the lost frame.
    pub fn peek(&self) -> Option<&T> {
        self.packets.get(&self.next_seq?)
    }

    /// Maps a 16-bit sequence number to the 64-bit one closest to the highest seen.
    fn unwrap_seq(&self, seq: u16) -> u64 {
        let Some(highest) = self.highest else {
            // Start away from zero so that early reordering cannot underflow.
            return (1 << 32) + u64::from(seq);
        };
        let base = highest & !0xffff;
        let candidates = [base.wrapping_sub(0x1_0000), base, base + 0x1_0000];
        candidates
            .into_iter()
            .map(|b| b + u64::from(seq))
            .min_by_key(|&c| c.abs_diff(highest))
            .unwrap_or(base + u64::from(seq))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(jb: &mut JitterBuffer<u16>, steps: usize) -> Vec<Playout<u16>> {
        (0..steps).map(|_| jb.pop()).collect()
    }

    #[test]
    fn buffers_to_target_depth_then_plays_in_order() {
        let mut jb = JitterBuffer::new(3, 10);
        jb.push(10, 10);
        assert_eq!(jb.pop(), Playout::Silent);
        jb.push(12, 12);
        jb.push(11, 11);
        assert_eq!(
            drain(&mut jb, 4),
            vec![Playout::Packet(10), Playout::Packet(11), Playout::Packet(12), Playout::Silent]
        );
    }

    #[test]
    fn a_missing_packet_is_reported_lost_when_later_ones_wait() {
        let mut jb = JitterBuffer::new(2, 10);
        for s in [1u16, 2, 4, 5] {
            jb.push(s, s);
        }
        assert_eq!(
            drain(&mut jb, 5),
            vec![Playout::Packet(1), Playout::Packet(2), Playout::Lost, Playout::Packet(4), Playout::Packet(5)]
        );
    }

    #[test]
    fn late_and_duplicate_packets_are_dropped() {
        let mut jb = JitterBuffer::new(1, 10);
        assert!(jb.push(5, 5));
        assert!(!jb.push(5, 5));
        assert_eq!(jb.pop(), Playout::Packet(5));
        assert!(!jb.push(4, 4), "already played past 4");
        assert!(jb.push(6, 6));
    }

    #[test]
    fn sequence_numbers_wrap() {
        let mut jb = JitterBuffer::new(2, 10);
        for s in [65534u16, 65535, 0, 1] {
            jb.push(s, s);
        }
        assert_eq!(
            drain(&mut jb, 4),
            vec![Playout::Packet(65534), Playout::Packet(65535), Playout::Packet(0), Playout::Packet(1)]
        );
    }

    #[test]
    fn underrun_rebuffers_and_resumes_at_the_oldest_packet() {
        let mut jb = JitterBuffer::new(2, 10);
        jb.push(1, 1);
        jb.push(2, 2);
        assert_eq!(drain(&mut jb, 3), vec![Playout::Packet(1), Playout::Packet(2), Playout::Silent]);
        // Sender resumes after a pause of 50 packets: no 50 frames of concealment.
        jb.push(53, 53);
        assert_eq!(jb.pop(), Playout::Silent);
        jb.push(54, 54);
        assert_eq!(drain(&mut jb, 2), vec![Playout::Packet(53), Playout::Packet(54)]);
    }

    #[test]
    fn depth_is_bounded_when_the_sender_runs_fast() {
        let mut jb = JitterBuffer::new(2, 5);
        for s in 0u16..20 {
            jb.push(s, s);
            assert!(jb.depth() <= 5);
        }
        // Playout continues from the newest packets kept.
        let first = jb.pop();
        assert!(matches!(first, Playout::Packet(s) if s >= 15), "{first:?}");
    }

    #[test]
    fn latency_left_by_a_burst_shrinks_back_to_the_target() {
        // Target 3 packets; a 2-second stall delivers 100 packets at once, then the
        // sender goes on at one packet per step.
        let mut jb = JitterBuffer::new(3, 200);
        let mut seq = 0u16;
        for _ in 0..3 {
            jb.push(seq, seq);
            seq += 1;
        }
        for _ in 0..100 {
            jb.push(seq, seq);
            seq += 1;
        }
        let mut played = Vec::new();
        for _ in 0..(12 * DRIFT_WINDOW) {
            jb.push(seq, seq);
            seq += 1;
            played.push(jb.pop());
        }
        assert!(jb.depth() <= 5, "depth back near the target after 12 s: {}", jb.depth());
        assert!(played.iter().all(|p| matches!(p, Playout::Packet(_))), "no loss or silence while shrinking");
        // Played in order, never more than a small jump at a time.
        let seqs: Vec<u16> =
            played.iter().filter_map(|p| if let Playout::Packet(s) = p { Some(*s) } else { None }).collect();
        let biggest_jump = seqs.windows(2).map(|w| w[1].wrapping_sub(w[0])).max().unwrap();
        assert!(biggest_jump <= 52, "at most about half of 100 packets shed at once: {biggest_jump}");
        assert!(jb.shed() >= 95, "shed {}", jb.shed());
    }

    #[test]
    fn a_jittery_stream_at_its_target_is_never_shed() {
        // Packets arrive in pairs every other step: the depth before each playout
        // step alternates between the target and one above, so every packet held is
        // needed to ride out the step without an arrival.
        let mut jb = JitterBuffer::new(3, 20);
        let mut seq = 0u16;
        for _ in 0..3 {
            jb.push(seq, seq);
            seq += 1;
        }
        for step in 0..(10 * DRIFT_WINDOW) {
            if step % 2 == 1 {
                jb.push(seq, seq);
                jb.push(seq + 1, seq + 1);
                seq += 2;
            }
            assert!(matches!(jb.pop(), Playout::Packet(_)), "step {step}");
        }
        assert_eq!(jb.shed(), 0);
    }

    #[test]
    fn a_start_up_burst_settles_at_the_target_not_one_above() {
        // The sender's first packets arrive two at once before the mixer's first
        // tick: five packets queued where the target is three, then one per step.
        let mut jb = JitterBuffer::new(3, 20);
        let mut seq = 0u16;
        for _ in 0..5 {
            jb.push(seq, seq);
            seq += 1;
        }
        for step in 0..(4 * DRIFT_WINDOW) {
            if step > 0 {
                jb.push(seq, seq);
                seq += 1;
            }
            assert!(matches!(jb.pop(), Playout::Packet(_)), "step {step}");
        }
        jb.push(seq, seq);
        assert_eq!(jb.depth(), 3, "60 ms queued before a playout step, not 80 ms");
        assert_eq!(jb.shed(), 2);
    }

    #[test]
    fn after_a_loss_the_next_packet_can_be_looked_at_for_its_fec() {
        let mut jb = JitterBuffer::new(2, 10);
        for seq in [1u16, 2, 4, 5] {
            jb.push(seq, seq);
        }
        assert_eq!(drain(&mut jb, 2), vec![Playout::Packet(1), Playout::Packet(2)]);
        assert_eq!(jb.pop(), Playout::Lost);
        assert_eq!(jb.peek(), Some(&4), "the packet after the lost one");
        assert_eq!(jb.pop(), Playout::Packet(4), "peeking takes nothing");
    }
}
