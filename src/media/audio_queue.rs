//! The bounded way from a track reader into the audio mixer thread.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;

use super::audio::AudioCommand;
use crate::metrics;

/// Received packets that may wait for the mixer thread at once (about a second of
/// 20 sources); more are dropped at the reader.
const MAX_QUEUED_PACKETS: usize = 1000;

/// A track reader's way into the mixer: a packet is dropped (and counted) rather than
/// queued when [`MAX_QUEUED_PACKETS`] already wait, so neither a stalled mixer nor a
/// flooding peer grows the queue without bound.
#[derive(Clone)]
pub struct PacketSender {
    tx: mpsc::Sender<AudioCommand>,
    queued: Arc<AtomicUsize>,
}

impl PacketSender {
    /// A sender into `tx`, sharing the count of waiting packets with the mixer (which
    /// decrements it for every packet it takes).
    pub(super) fn new(tx: mpsc::Sender<AudioCommand>, queued: Arc<AtomicUsize>) -> Self {
        Self { tx, queued }
    }

    /// Queues a received packet (an [`AudioCommand::Packet`]); `false` once the mixer
    /// is gone.
    pub fn send_packet(&self, packet: AudioCommand) -> bool {
        if self.queued.load(Ordering::Relaxed) >= MAX_QUEUED_PACKETS {
            metrics::AUDIO_PACKETS_DROPPED.inc();
            return true;
        }
        self.queued.fetch_add(1, Ordering::Relaxed);
        self.tx.send(packet).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet() -> AudioCommand {
        AudioCommand::Packet { source: Arc::from("a"), seq: 0, payload: bytes::Bytes::new(), client_level: None }
    }

    #[test]
    fn a_stalled_mixer_queues_a_bounded_number_of_packets() {
        let (tx, rx) = mpsc::channel();
        let queued = Arc::new(AtomicUsize::new(0));
        let sender = PacketSender::new(tx, Arc::clone(&queued));
        let dropped = metrics::AUDIO_PACKETS_DROPPED.get();
        for _ in 0..MAX_QUEUED_PACKETS + 500 {
            assert!(sender.send_packet(packet()));
        }
        assert_eq!(rx.try_iter().count(), MAX_QUEUED_PACKETS, "what waits is bounded");
        assert!(metrics::AUDIO_PACKETS_DROPPED.get() >= dropped + 500, "the rest is counted as dropped");
        drop(rx);
        queued.store(0, Ordering::Relaxed);
        assert!(!sender.send_packet(packet()), "a gone mixer ends the reader");
    }
}
