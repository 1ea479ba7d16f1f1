//! The room's audio: a dedicated thread that every 20 ms pulls one frame from each
//! source's jitter buffer, decodes it, sums the room, and encodes a mix-minus for each
//! listener who publishes audio plus one shared full mix for everyone else
//! (watch-only viewers, video-only publishers, recordings).
//!
//! Buffers are allocated once per source/listener and reused every tick.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::MediaError;
use super::jitter::{JitterBuffer, Playout};
use super::mix;
use crate::metrics::{self, GaugeGuard};

/// Samples per channel in one 20 ms frame at 48 kHz.
pub const FRAME_SAMPLES: usize = 960;
/// The mixer's frame period.
pub const FRAME_DURATION: Duration = Duration::from_millis(20);
/// Largest Opus packet duration (120 ms) in samples, for decode buffers.
const MAX_PACKET_SAMPLES: usize = 5760;
/// Largest encoded frame we produce; generous for 20 ms at any sane bitrate.
const MAX_ENCODED_BYTES: usize = 1500;

/// Receives a listener's encoded Opus frames (20 ms each). Called on the mixer thread.
pub trait AudioOutput: Send {
    /// Sends one encoded frame.
    fn send(&mut self, frame: Bytes);
}

impl<F: FnMut(Bytes) + Send> AudioOutput for F {
    fn send(&mut self, frame: Bytes) {
        self(frame)
    }
}

/// What the room tells the mixer.
pub enum AudioCommand {
    /// A participant publishes audio (gets a decoder and, as a listener, a mix-minus).
    AddSource(Arc<str>),
    /// One RTP packet's Opus payload from a source.
    Packet {
        /// The source.
        source: Arc<str>,
        /// RTP sequence number, for reordering.
        seq: u16,
        /// The Opus payload.
        payload: Bytes,
    },
    /// The participant stopped publishing or left.
    RemoveSource(Arc<str>),
    /// A participant receives audio: its own mix-minus if it is a source, else the
    /// shared full mix written to `output`.
    AddListener(Arc<str>, Box<dyn AudioOutput>),
    /// The participant left.
    RemoveListener(Arc<str>),
}

/// Configuration of a mixer.
#[derive(Debug, Clone)]
pub struct AudioMixerConfig {
    /// Opus bitrate of every encode.
    pub bitrate_bps: i32,
    /// Jitter buffer depth, in 20 ms packets.
    pub jitter_packets: usize,
}

/// Handle to a room's mixer thread; dropping it stops the thread.
pub struct AudioMixer {
    tx: Option<mpsc::Sender<AudioCommand>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl AudioMixer {
    /// Starts the mixer thread.
    pub fn start(name: &str, config: AudioMixerConfig) -> Result<Self, MediaError> {
        // Fail early (in the caller) if Opus rejects the settings.
        new_encoder(config.bitrate_bps)?;
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name(format!("mix-{name}"))
            .spawn(move || {
                let _live = GaugeGuard::new(&metrics::AUDIO_MIXERS);
                MixerState::new(config).run(rx);
            })
            .map_err(|e| MediaError::Pipeline(format!("cannot spawn mixer thread: {e}")))?;
        Ok(Self { tx: Some(tx), thread: Some(thread) })
    }

    /// Sends a command; never blocks.
    pub fn send(&self, command: AudioCommand) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(command);
        }
    }

    /// A cloneable sender for track readers.
    pub fn sender(&self) -> Option<mpsc::Sender<AudioCommand>> {
        self.tx.clone()
    }
}

impl Drop for AudioMixer {
    fn drop(&mut self) {
        // Closing our sender ends the thread once readers' clones are gone too; the
        // room stops its readers first. Join without waiting forever on a straggler.
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let deadline = Instant::now() + Duration::from_secs(2);
            while !t.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            if t.is_finished() {
                let _ = t.join();
            }
        }
    }
}

struct Source {
    jitter: JitterBuffer<Bytes>,
    decoder: opus::Decoder,
    /// Decoded samples waiting to be mixed (packets may be longer than 20 ms).
    fifo: VecDeque<i16>,
    /// This tick's frame, and whether it carries anything.
    frame: Vec<i16>,
    contributing: bool,
    decode_buf: Vec<i16>,
    _live: GaugeGuard,
}

struct Listener {
    output: Box<dyn AudioOutput>,
    /// Personal encoder for mix-minus; `None` for listeners fed the shared mix.
    encoder: Option<opus::Encoder>,
}

struct MixerState {
    config: AudioMixerConfig,
    sources: HashMap<Arc<str>, Source>,
    listeners: HashMap<Arc<str>, Listener>,
    shared_encoder: opus::Encoder,
    acc: Vec<i32>,
    pcm_out: Vec<i16>,
    encoded: Vec<u8>,
}

fn new_encoder(bitrate_bps: i32) -> Result<opus::Encoder, MediaError> {
    let mut enc = opus::Encoder::new(48_000, opus::Channels::Mono, opus::Application::Voip)
        .map_err(|e| MediaError::Opus(e.to_string()))?;
    enc.set_bitrate(opus::Bitrate::Bits(bitrate_bps)).map_err(|e| MediaError::Opus(e.to_string()))?;
    enc.set_inband_fec(true).map_err(|e| MediaError::Opus(e.to_string()))?;
    enc.set_packet_loss_perc(5).map_err(|e| MediaError::Opus(e.to_string()))?;
    Ok(enc)
}

impl MixerState {
    fn new(config: AudioMixerConfig) -> Self {
        let shared_encoder = new_encoder(config.bitrate_bps).expect("checked in AudioMixer::start");
        Self {
            config,
            sources: HashMap::new(),
            listeners: HashMap::new(),
            shared_encoder,
            acc: vec![0; FRAME_SAMPLES],
            pcm_out: vec![0; FRAME_SAMPLES],
            encoded: vec![0; MAX_ENCODED_BYTES],
        }
    }

    fn run(mut self, rx: mpsc::Receiver<AudioCommand>) {
        let mut next_tick = Instant::now() + FRAME_DURATION;
        loop {
            let now = Instant::now();
            if now >= next_tick {
                self.tick();
                next_tick += FRAME_DURATION;
                if now > next_tick + 5 * FRAME_DURATION {
                    // We were starved of CPU: resume from now instead of bursting.
                    next_tick = now + FRAME_DURATION;
                }
                continue;
            }
            match rx.recv_timeout(next_tick - now) {
                Ok(cmd) => self.handle(cmd),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
    }

    fn handle(&mut self, cmd: AudioCommand) {
        match cmd {
            AudioCommand::Packet { source, seq, payload } => {
                if let Some(s) = self.sources.get_mut(&source) {
                    s.jitter.push(seq, payload);
                }
            }
            AudioCommand::AddSource(id) => match opus::Decoder::new(48_000, opus::Channels::Mono) {
                Ok(decoder) => {
                    let depth = self.config.jitter_packets;
                    self.sources.insert(
                        Arc::clone(&id),
                        Source {
                            jitter: JitterBuffer::new(depth, depth * 4 + 5),
                            decoder,
                            fifo: VecDeque::with_capacity(MAX_PACKET_SAMPLES * 2),
                            frame: vec![0; FRAME_SAMPLES],
                            contributing: false,
                            decode_buf: vec![0; MAX_PACKET_SAMPLES],
                            _live: GaugeGuard::new(&metrics::AUDIO_SOURCES),
                        },
                    );
                    // A listener added before its source switches to mix-minus.
                    if let Some(l) = self.listeners.get_mut(&id) {
                        l.encoder = new_encoder(self.config.bitrate_bps).ok();
                    }
                }
                Err(e) => tracing::error!(source = %id, error = %e, "cannot create Opus decoder"),
            },
            AudioCommand::RemoveSource(id) => {
                self.sources.remove(&id);
            }
            AudioCommand::AddListener(id, output) => {
                let encoder =
                    if self.sources.contains_key(&id) { new_encoder(self.config.bitrate_bps).ok() } else { None };
                self.listeners.insert(id, Listener { output, encoder });
            }
            AudioCommand::RemoveListener(id) => {
                self.listeners.remove(&id);
            }
        }
    }

    /// One 20 ms step: pull, decode, sum, encode, send.
    fn tick(&mut self) {
        self.acc.fill(0);
        for source in self.sources.values_mut() {
            source.pull_frame();
            if source.contributing {
                mix::accumulate(&mut self.acc, &source.frame);
            }
        }
        let mut shared_frame: Option<Bytes> = None;
        for (id, listener) in &mut self.listeners {
            let own = self.sources.get(id).filter(|s| s.contributing);
            let frame = match (&mut listener.encoder, own) {
                (Some(encoder), Some(source)) => {
                    mix::mix_minus(&self.acc, &source.frame, &mut self.pcm_out);
                    encode(encoder, &self.pcm_out, &mut self.encoded)
                }
                (Some(encoder), None) => {
                    // A publisher that is silent this tick still hears everyone, from
                    // its own encoder so the stream it decodes stays continuous.
                    mix::full_mix(&self.acc, &mut self.pcm_out);
                    encode(encoder, &self.pcm_out, &mut self.encoded)
                }
                (None, _) => {
                    if shared_frame.is_none() {
                        mix::full_mix(&self.acc, &mut self.pcm_out);
                        shared_frame = encode(&mut self.shared_encoder, &self.pcm_out, &mut self.encoded);
                    }
                    shared_frame.clone()
                }
            };
            if let Some(frame) = frame {
                listener.output.send(frame);
            }
        }
    }
}

fn encode(encoder: &mut opus::Encoder, pcm: &[i16], out: &mut [u8]) -> Option<Bytes> {
    match encoder.encode(pcm, out) {
        Ok(n) => Some(Bytes::copy_from_slice(&out[..n])),
        Err(e) => {
            tracing::warn!(error = %e, "Opus encode failed");
            None
        }
    }
}

impl Source {
    /// Fills `frame` with the next 20 ms, decoding or concealing packets as needed.
    fn pull_frame(&mut self) {
        while self.fifo.len() < FRAME_SAMPLES {
            let decoded = match self.jitter.pop() {
                Playout::Packet(payload) => self.decoder.decode(&payload, &mut self.decode_buf, false),
                Playout::Lost => self.decoder.decode(&[], &mut self.decode_buf[..FRAME_SAMPLES], false),
                Playout::Silent => break,
            };
            match decoded {
                Ok(n) => self.fifo.extend(&self.decode_buf[..n]),
                Err(e) => tracing::debug!(error = %e, "Opus decode failed; frame skipped"),
            }
        }
        if self.fifo.len() >= FRAME_SAMPLES {
            for (dst, src) in self.frame.iter_mut().zip(self.fifo.drain(..FRAME_SAMPLES)) {
                *dst = src;
            }
            self.contributing = true;
        } else {
            // Ran dry: a partial frame is dropped rather than played with a hole.
            self.fifo.clear();
            self.contributing = false;
        }
    }
}
