//! The room's audio: a dedicated thread that every 20 ms pulls one frame from each
//! source's jitter buffer, decodes it, sums the sources that are speaking
//! ([`super::voice`]), and encodes a mix-minus for each speaker plus one shared full
//! mix for everyone else (silent publishers, watch-only viewers, video-only
//! publishers, recordings): the encodes follow who talks, not who is in the room.
//!
//! Buffers are allocated once per source/listener and reused every tick.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

pub use super::audio_queue::PacketSender;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::MediaError;
use super::jitter::{JitterBuffer, Playout};
use super::mix;
use super::voice::{HANGOVER_FRAMES, VoiceActivity, level_dbfs};
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

/// Receives the sources' voice levels every [`LEVEL_REPORT_TICKS`] ticks, on the
/// mixer thread: each source with the mean level (dBFS) of the frames it spoke in
/// that interval (the last such level through a pause within the voice hangover), or
/// `None` when it is not speaking.
pub type LevelSink = Box<dyn FnMut(Vec<(Arc<str>, Option<f64>)>) + Send>;

/// Ticks between two level reports (200 ms).
pub const LEVEL_REPORT_TICKS: u32 = 10;

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
        /// The level (dBov) the client measured for it (RFC 6464), when it says.
        client_level: Option<i8>,
    },
    /// The participant stopped publishing or left.
    RemoveSource(Arc<str>),
    /// A moderator muted (or unmuted) a source: muted, it is in no mix and never
    /// counts as speaking.
    SetMuted(Arc<str>, bool),
    /// A participant receives audio: its own mix-minus if it is a source, else the
    /// shared full mix written to `output`.
    AddListener(Arc<str>, Box<dyn AudioOutput>),
    /// The participant left.
    RemoveListener(Arc<str>),
    /// The room is done: the thread ends now, whoever still holds a sender (a
    /// straggling track reader must not keep it, nor its dropper, waiting).
    Stop,
}

/// Configuration of a mixer.
#[derive(Debug, Clone)]
pub struct AudioMixerConfig {
    /// Opus bitrate of every encode.
    pub bitrate_bps: i32,
    /// Jitter buffer depth, in 20 ms packets.
    pub jitter_packets: usize,
    /// Level (dBFS) at or above which a source's frame counts as voice; a source
    /// quiet for [`HANGOVER_FRAMES`] leaves the mix (`f64::NEG_INFINITY`: never).
    pub voice_threshold_dbfs: f64,
}

/// Handle to a room's mixer thread; dropping it stops the thread.
pub struct AudioMixer {
    tx: Option<mpsc::Sender<AudioCommand>>,
    queued: Arc<AtomicUsize>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl AudioMixer {
    /// Starts the mixer thread; `levels` gets the voice levels (active speaker).
    pub fn start(name: &str, config: AudioMixerConfig, levels: Option<LevelSink>) -> Result<Self, MediaError> {
        // Fail early (in the caller) if Opus rejects the settings.
        new_encoder(config.bitrate_bps)?;
        let (tx, rx) = mpsc::channel();
        let queued = Arc::new(AtomicUsize::new(0));
        let waiting = Arc::clone(&queued);
        let thread = std::thread::Builder::new()
            .name(format!("mix-{name}"))
            .spawn(move || {
                let _live = GaugeGuard::new(&metrics::AUDIO_MIXERS);
                let mut state = MixerState::new(config);
                state.levels = levels;
                state.run(rx, &waiting);
            })
            .map_err(|e| MediaError::Pipeline(format!("cannot spawn mixer thread: {e}")))?;
        Ok(Self { tx: Some(tx), queued, thread: Some(thread) })
    }

    /// Sends a command; never blocks.
    pub fn send(&self, command: AudioCommand) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(command);
        }
    }

    /// A cloneable sender for track readers.
    pub fn sender(&self) -> Option<PacketSender> {
        self.tx.clone().map(|tx| PacketSender::new(tx, Arc::clone(&self.queued)))
    }
}

impl Drop for AudioMixer {
    fn drop(&mut self) {
        // Stop ends the thread at its next wait (within a tick), even while a
        // reader's sender lives on; join without waiting forever all the same.
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(AudioCommand::Stop);
        }
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
    /// This tick's frame, and whether it is in the mix (a frame arrived and the
    /// source is speaking).
    frame: Vec<i16>,
    contributing: bool,
    voice: VoiceActivity,
    muted: bool,
    /// Counted on [`metrics::AUDIO_SPEAKERS`] while the source is speaking.
    speaking: Option<GaugeGuard>,
    /// Sum of the levels (dBFS) of the frames it spoke in since the last report, and
    /// how many.
    level_sum_db: f64,
    level_frames: u32,
    /// The level of its last report with voice in it: reported again through pauses
    /// shorter than the hangover, so a speaker between two words keeps its place.
    last_level_db: f64,
    /// Sum and count of the voiced levels the client put in its packets since the
    /// last report (RFC 6464): measured before its encoder, they rank speakers
    /// when present; whether it speaks is still decided on the decoded audio.
    client_level_sum_db: f64,
    client_levels: u32,
    decode_buf: Vec<i16>,
    _live: GaugeGuard,
}

struct Listener {
    output: Box<dyn AudioOutput>,
    /// Personal encoder for mix-minus, used while its source speaks; `None` for
    /// listeners who publish no audio (always fed the shared mix).
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
    levels: Option<LevelSink>,
    ticks: u32,
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
            levels: None,
            ticks: 0,
        }
    }

    fn run(mut self, rx: mpsc::Receiver<AudioCommand>, queued: &AtomicUsize) {
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
                Ok(AudioCommand::Stop) => return,
                Ok(cmd) => {
                    if matches!(cmd, AudioCommand::Packet { .. }) {
                        queued.fetch_sub(1, Ordering::Relaxed);
                    }
                    self.handle(cmd)
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
    }

    fn handle(&mut self, cmd: AudioCommand) {
        match cmd {
            AudioCommand::Packet { source, seq, payload, client_level } => {
                if let Some(s) = self.sources.get_mut(&source) {
                    s.jitter.push(seq, payload);
                    // Only levels of voice count, as for the decoded level.
                    if let Some(level) = client_level.map(f64::from).filter(|&l| s.voice.is_voice(l)) {
                        s.client_level_sum_db += level;
                        s.client_levels += 1;
                    }
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
                            voice: VoiceActivity::new(self.config.voice_threshold_dbfs, HANGOVER_FRAMES),
                            speaking: None,
                            muted: false,
                            level_sum_db: 0.0,
                            level_frames: 0,
                            last_level_db: f64::NEG_INFINITY,
                            client_level_sum_db: 0.0,
                            client_levels: 0,
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
            AudioCommand::SetMuted(id, muted) => {
                if let Some(s) = self.sources.get_mut(&id) {
                    s.muted = muted;
                }
            }
            AudioCommand::AddListener(id, output) => {
                let encoder =
                    if self.sources.contains_key(&id) { new_encoder(self.config.bitrate_bps).ok() } else { None };
                self.listeners.insert(id, Listener { output, encoder });
            }
            AudioCommand::RemoveListener(id) => {
                self.listeners.remove(&id);
            }
            AudioCommand::Stop => {}
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
                // Not in the mix this tick (silent, or nothing arrived): the full mix
                // is exactly its mix-minus, so it shares that encode. Its decoder
                // sees packets of another encoder from here on; Opus frames decode
                // on their own, and the switch happens while it is not talking.
                _ => {
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
        self.ticks = self.ticks.wrapping_add(1);
        if self.ticks.is_multiple_of(LEVEL_REPORT_TICKS) {
            self.report_levels();
        }
    }

    /// Hands the sources' levels since the last report to the sink, and restarts them.
    fn report_levels(&mut self) {
        let Some(sink) = self.levels.as_mut() else { return };
        if self.sources.is_empty() {
            return;
        }
        let report = self
            .sources
            .iter_mut()
            .map(|(id, s)| {
                if s.client_levels > 0 {
                    s.last_level_db = s.client_level_sum_db / f64::from(s.client_levels);
                } else if s.level_frames > 0 {
                    s.last_level_db = s.level_sum_db / f64::from(s.level_frames);
                }
                let spoke = s.voice.speaking().then_some(s.last_level_db);
                s.level_sum_db = 0.0;
                s.level_frames = 0;
                s.client_level_sum_db = 0.0;
                s.client_levels = 0;
                (Arc::clone(id), spoke)
            })
            .collect();
        sink(report);
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
                // The packet after a lost one usually carries the lost frame again at
                // a lower bitrate (Opus in-band FEC, negotiated with `useinbandfec=1`);
                // without it the decoder conceals the gap.
                Playout::Lost => match self.jitter.peek() {
                    Some(next) => self.decoder.decode(next, &mut self.decode_buf[..FRAME_SAMPLES], true),
                    None => self.decoder.decode(&[], &mut self.decode_buf[..FRAME_SAMPLES], false),
                },
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
            // Muted: the frame is decoded (the stream stays continuous) and dropped.
            let level = level_dbfs(&self.frame);
            self.contributing = if self.muted {
                self.voice.quiet();
                false
            } else {
                self.voice.update_level(level)
            };
            // The speaker's level counts its voiced frames, not the pauses between.
            if self.contributing && self.voice.is_voice(level) {
                self.level_sum_db += level;
                self.level_frames += 1;
            }
        } else {
            // Ran dry: a partial frame is dropped rather than played with a hole.
            self.fifo.clear();
            self.voice.quiet();
            self.contributing = false;
        }
        if self.voice.speaking() != self.speaking.is_some() {
            self.speaking = self.voice.speaking().then(|| GaugeGuard::new(&metrics::AUDIO_SPEAKERS));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    #[test]
    fn dropping_the_mixer_ends_its_thread_while_a_reader_still_holds_a_sender() {
        let config = AudioMixerConfig { bitrate_bps: 32_000, jitter_packets: 3, voice_threshold_dbfs: -55.0 };
        let mixer = AudioMixer::start("straggler", config, None).unwrap();
        let reader = mixer.sender().unwrap();
        drop(mixer);
        let packet = AudioCommand::Packet { source: Arc::from("a"), seq: 0, payload: Bytes::new(), client_level: None };
        assert!(!reader.send_packet(packet), "the mixer thread is gone: its receiver with it");
    }

    type Received = Arc<Mutex<Vec<Bytes>>>;

    fn listener(state: &mut MixerState, id: &str) -> Received {
        let received: Received = Arc::default();
        let sink = Arc::clone(&received);
        let output = move |frame: Bytes| sink.lock().unwrap().push(frame);
        state.handle(AudioCommand::AddListener(id.into(), Box::new(output)));
        received
    }

    /// A 20 ms Opus packet of a 440 Hz tone at `amplitude` (0: digital silence).
    fn packet(encoder: &mut opus::Encoder, amplitude: f64, tick: usize) -> Bytes {
        let pcm: Vec<i16> = (0..FRAME_SAMPLES)
            .map(|i| {
                let t = (tick * FRAME_SAMPLES + i) as f64 / 48_000.0;
                ((std::f64::consts::TAU * 440.0 * t).sin() * amplitude) as i16
            })
            .collect();
        Bytes::from(encoder.encode_vec(&pcm, MAX_ENCODED_BYTES).unwrap())
    }

    fn peak(frame: &Bytes) -> i16 {
        let mut decoder = opus::Decoder::new(48_000, opus::Channels::Mono).unwrap();
        let mut pcm = vec![0i16; MAX_PACKET_SAMPLES];
        let n = decoder.decode(frame, &mut pcm, false).unwrap();
        pcm[..n].iter().map(|s| s.saturating_abs()).max().unwrap_or(0)
    }

    fn last(r: &Received) -> Bytes {
        r.lock().unwrap().last().cloned().expect("a frame")
    }

    /// Runs `ticks` mixer steps with one packet per source at the given amplitudes.
    fn run(state: &mut MixerState, encoders: &mut [(&str, opus::Encoder, f64)], ticks: usize, from: usize) {
        for tick in from..from + ticks {
            for (id, encoder, amplitude) in encoders.iter_mut() {
                let payload = packet(encoder, *amplitude, tick);
                state.handle(AudioCommand::Packet {
                    source: (*id).into(),
                    seq: tick as u16,
                    payload,
                    client_level: None,
                });
            }
            state.tick();
        }
    }

    #[test]
    fn silent_publishers_share_the_full_mix_and_speakers_get_their_own() {
        let config = AudioMixerConfig { bitrate_bps: 32_000, jitter_packets: 1, voice_threshold_dbfs: -55.0 };
        let mut state = MixerState::new(config);
        let ids = ["speaker", "quiet-1", "quiet-2"];
        let received: Vec<Received> = ids
            .iter()
            .map(|id| {
                state.handle(AudioCommand::AddSource((*id).into()));
                listener(&mut state, id)
            })
            .collect();
        let new = || opus::Encoder::new(48_000, opus::Channels::Mono, opus::Application::Voip).unwrap();
        let mut senders = [("speaker", new(), 8000.0), ("quiet-1", new(), 0.0), ("quiet-2", new(), 3.0)];
        run(&mut state, &mut senders, 20, 0);

        let (speaker, quiet_1, quiet_2) = (last(&received[0]), last(&received[1]), last(&received[2]));
        assert_eq!(quiet_1.as_ptr(), quiet_2.as_ptr(), "the silent ones share one encode");
        assert_ne!(speaker.as_ptr(), quiet_1.as_ptr(), "the speaker has its own");
        assert!(peak(&quiet_1) > 2000, "the silent ones hear the speaker: peak {}", peak(&quiet_1));
        assert!(peak(&speaker) < 200, "the speaker does not hear herself: peak {}", peak(&speaker));

        // The speaker stops: after the hangover she shares the full mix too.
        senders[0].2 = 0.0;
        run(&mut state, &mut senders, HANGOVER_FRAMES as usize + 2, 20);
        let (speaker, quiet_1) = (last(&received[0]), last(&received[1]));
        assert_eq!(speaker.as_ptr(), quiet_1.as_ptr(), "nobody talks: one encode for all");
        assert!(received.iter().all(|r| r.lock().unwrap().len() >= 20 + HANGOVER_FRAMES as usize));
    }

    /// Every level report the mixer made.
    type Reports = Arc<Mutex<Vec<Vec<(Arc<str>, Option<f64>)>>>>;

    #[test]
    fn levels_are_reported_for_speakers_through_short_pauses() {
        let config = AudioMixerConfig { bitrate_bps: 32_000, jitter_packets: 1, voice_threshold_dbfs: -55.0 };
        let mut state = MixerState::new(config);
        let reports: Reports = Arc::default();
        let sink = Arc::clone(&reports);
        state.levels = Some(Box::new(move |r| sink.lock().unwrap().push(r)));
        for id in ["talker", "quiet"] {
            state.handle(AudioCommand::AddSource(id.into()));
        }
        let new = || opus::Encoder::new(48_000, opus::Channels::Mono, opus::Application::Voip).unwrap();
        let mut senders = [("talker", new(), 8000.0), ("quiet", new(), 0.0)];
        let level_of = |reports: &Reports, who: &str| {
            let last = reports.lock().unwrap().last().cloned().expect("a report");
            last.into_iter().find(|(id, _)| &**id == who).and_then(|(_, l)| l)
        };
        run(&mut state, &mut senders, 20, 0);
        let talking = level_of(&reports, "talker").expect("the talker is reported");
        assert!((-20.0..-12.0).contains(&talking), "an 8000-amplitude tone is about -15 dBFS: {talking}");
        assert_eq!(level_of(&reports, "quiet"), None);
        // A 400 ms pause: still speaking, at the level of her last voiced frames (the
        // decoder's tail of the tone included), not dragged down by the silence.
        senders[0].2 = 0.0;
        run(&mut state, &mut senders, 20, 20);
        let paused = level_of(&reports, "talker").expect("still speaking in a pause");
        assert!(paused > -40.0 && paused <= talking + 0.5, "{paused} after {talking}");
        // Past the hangover: not speaking.
        run(&mut state, &mut senders, HANGOVER_FRAMES as usize, 40);
        assert_eq!(level_of(&reports, "talker"), None);
    }

    #[test]
    fn the_clients_own_level_ranks_a_speaker_when_it_sends_one() {
        let config = AudioMixerConfig { bitrate_bps: 32_000, jitter_packets: 1, voice_threshold_dbfs: -55.0 };
        let mut state = MixerState::new(config);
        let reports: Reports = Arc::default();
        let sink = Arc::clone(&reports);
        state.levels = Some(Box::new(move |r| sink.lock().unwrap().push(r)));
        for id in ["header", "plain"] {
            state.handle(AudioCommand::AddSource(id.into()));
        }
        let new = || opus::Encoder::new(48_000, opus::Channels::Mono, opus::Application::Voip).unwrap();
        let (mut a, mut b) = (new(), new());
        // The same tone from both; "header" says -9 dBov in every packet but the
        // last few, which say silence (127): those do not count.
        for tick in 0..20usize {
            let claimed = if tick < 16 { -9 } else { -127 };
            for (id, encoder, level) in [("header", &mut a, Some(claimed)), ("plain", &mut b, None)] {
                let payload = packet(encoder, 8000.0, tick);
                state.handle(AudioCommand::Packet {
                    source: id.into(),
                    seq: tick as u16,
                    payload,
                    client_level: level,
                });
            }
            state.tick();
        }
        let last = reports.lock().unwrap().last().cloned().expect("a report");
        let level = |who: &str| last.iter().find(|(id, _)| &**id == who).and_then(|(_, l)| *l);
        assert_eq!(level("header"), Some(-9.0), "the client's voiced levels");
        let decoded = level("plain").expect("speaking");
        assert!((-20.0..-12.0).contains(&decoded), "the decoded level without a header: {decoded}");
    }
}
