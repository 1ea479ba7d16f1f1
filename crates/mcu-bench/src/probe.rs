//! The probe: the one load participant that decodes what it receives. It reads every
//! sender's barcode from the decoded composite (the grid layout says where each
//! picture is) and the click from the decoded mix, and turns them into latencies
//! against the send times the senders logged.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_video as gst_video;
use gstreamer_video::prelude::*;
use webrtc::peer_connection::RTCPeerConnection;
use webrtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use webrtc::util::{Marshal, MarshalSize};

use super::media::{self, BLOCK, BLOCKS, FRAME_SAMPLES};
use super::peer::{SendLog, now_ns};
use mcu::layout;

const CLICK_THRESHOLD: i16 = 12_000;

/// What the probe has seen.
#[derive(Default)]
pub struct Probe {
    /// Composite frames decoded.
    pub frames: AtomicU64,
    /// When the first composite frame was decoded (ns), 0 before.
    pub first_frame_ns: AtomicU64,
    /// Latencies are only collected while this is set.
    pub measuring: AtomicBool,
    /// The video senders' logs in the room's grid order.
    pub senders: Mutex<Vec<Arc<SendLog>>>,
    /// The log of the one sender that clicks, and where its click starts in a frame
    /// (samples into the frame index `click_offset / 960`).
    pub clicker: Mutex<Option<(Arc<SendLog>, usize)>>,
    /// Video: stamp first seen at the probe − stamp sent, minus the probe's own
    /// depacketise + decode time (ms).
    pub video_latency_ms: Mutex<Vec<f64>>,
    /// The probe's own depacketise + decode time per frame (ms).
    pub probe_decode_ms: Mutex<Vec<f64>>,
    /// Audio: click heard − click sent (ms).
    pub audio_latency_ms: Mutex<Vec<f64>>,
    /// Barcodes read / unreadable while measuring.
    pub stamps_read: AtomicU64,
    /// Barcodes that did not decode.
    pub stamps_failed: AtomicU64,
    last_stamps: Mutex<Vec<Option<u32>>>,
    last_click_ns: AtomicU64,
    pipelines: Mutex<Vec<gst::Pipeline>>,
}

impl Drop for Probe {
    fn drop(&mut self) {
        if let Ok(p) = self.pipelines.lock() {
            for p in p.iter() {
                let _ = p.set_state(gst::State::Null);
            }
        }
    }
}

/// Where received video RTP goes (the probe's decoder).
pub struct VideoSink {
    appsrc: gst_app::AppSrc,
}

impl VideoSink {
    /// Pushes one RTP packet.
    pub fn push(&mut self, packet: &webrtc::rtp::packet::Packet) {
        let len = packet.marshal_size();
        if let Ok(mut buffer) = gst::Buffer::with_size(len) {
            if let Some(b) = buffer.get_mut()
                && let Ok(mut map) = b.map_writable()
            {
                let _ = packet.marshal_to(map.as_mut_slice());
            }
            let _ = self.appsrc.push_buffer(buffer);
        }
    }
}

/// Reads every sender's barcode from an I420 composite (`y` plane).
fn read_stamps(y: &[u8], stride: usize, width: u32, height: u32, n: usize) -> Vec<Option<u32>> {
    layout::grid_cells(width, height, n)
        .into_iter()
        .map(|cell| {
            let pic = layout::fit_in_cell(cell, media::WIDTH, media::HEIGHT);
            let block_px = (BLOCK * pic.width / media::WIDTH).max(1);
            let r = (block_px / 4).clamp(0, 4);
            let mut luma = [0u8; BLOCKS as usize];
            for (j, l) in luma.iter_mut().enumerate() {
                let cx = pic.x + (j as u32 * BLOCK + BLOCK / 2) * pic.width / media::WIDTH;
                let cy = pic.y + (BLOCK / 2) * pic.height / media::HEIGHT;
                let (mut sum, mut count) = (0u32, 0u32);
                for yy in cy.saturating_sub(r)..=(cy + r).min(height - 1) {
                    for xx in cx.saturating_sub(r)..=(cx + r).min(width - 1) {
                        sum += u32::from(y[yy as usize * stride + xx as usize]);
                        count += 1;
                    }
                }
                *l = (sum / count.max(1)) as u8;
            }
            media::barcode_read(&luma)
        })
        .collect()
}

impl Probe {
    /// Starts the probe's composite decoder for the track `ssrc`; its keyframe
    /// requests become PLIs on `pc`.
    pub fn video_sink(
        self: &Arc<Self>,
        ssrc: u32,
        pc: std::sync::Weak<RTCPeerConnection>,
    ) -> Result<VideoSink, String> {
        let pipeline = gst::parse::launch(
            "appsrc name=rtp_in is-live=true format=time do-timestamp=true block=false max-bytes=4000000 \
               caps=application/x-rtp,media=video,encoding-name=VP8,clock-rate=90000 \
             ! rtpvp8depay request-keyframe=true wait-for-keyframe=true ! vp8dec \
             ! video/x-raw,format=I420 ! appsink name=decoded sync=false max-buffers=4 drop=false",
        )
        .map_err(|e| e.to_string())?
        .downcast::<gst::Pipeline>()
        .map_err(|_| "not a pipeline".to_owned())?;
        let appsrc = pipeline.by_name("rtp_in").and_then(|e| e.downcast::<gst_app::AppSrc>().ok()).ok_or("appsrc")?;
        let appsink =
            pipeline.by_name("decoded").and_then(|e| e.downcast::<gst_app::AppSink>().ok()).ok_or("appsink")?;
        let probe = Arc::downgrade(self);
        appsink.set_callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |sink| {
                    let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                    let now = now_ns();
                    let decode_ns = match (sink.current_running_time(), sample.buffer().and_then(|b| b.pts())) {
                        (Some(rt), Some(pts)) if rt > pts => (rt - pts).nseconds(),
                        _ => 0,
                    };
                    if let Some(probe) = probe.upgrade() {
                        probe.frame_decoded(&sample, now, decode_ns);
                    }
                    Ok(gst::FlowSuccess::Ok)
                })
                .build(),
        );
        let (pli_tx, mut pli_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
        if let Some(pad) = appsrc.static_pad("src") {
            pad.add_probe(gst::PadProbeType::EVENT_UPSTREAM, move |_, info| {
                if info.event().is_some_and(|e| gst_video::UpstreamForceKeyUnitEvent::parse(e).is_ok()) {
                    let _ = pli_tx.send(());
                }
                gst::PadProbeReturn::Ok
            });
        }
        tokio::spawn(async move {
            while pli_rx.recv().await.is_some() {
                let Some(pc) = pc.upgrade() else { break };
                let _ = pc.write_rtcp(&[Box::new(PictureLossIndication { sender_ssrc: 0, media_ssrc: ssrc })]).await;
            }
        });
        pipeline.set_state(gst::State::Playing).map_err(|e| e.to_string())?;
        if let Ok(mut p) = self.pipelines.lock() {
            p.push(pipeline);
        }
        Ok(VideoSink { appsrc })
    }

    fn frame_decoded(&self, sample: &gst::Sample, now: u64, decode_ns: u64) {
        self.frames.fetch_add(1, Ordering::Relaxed);
        let _ = self.first_frame_ns.compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed);
        if !self.measuring.load(Ordering::Relaxed) {
            return;
        }
        let senders = match self.senders.lock() {
            Ok(s) => s.clone(),
            Err(_) => return,
        };
        let (Some(buffer), Some(caps)) = (sample.buffer(), sample.caps()) else { return };
        let Ok(info) = gst_video::VideoInfo::from_caps(caps) else { return };
        let Ok(frame) = gst_video::VideoFrameRef::from_buffer_ref_readable(buffer, &info) else { return };
        let Ok(y) = frame.plane_data(0) else { return };
        let stride = frame.plane_stride()[0] as usize;
        let stamps = read_stamps(y, stride, info.width(), info.height(), senders.len());
        if let Ok(mut d) = self.probe_decode_ms.lock() {
            d.push(decode_ns as f64 / 1e6);
        }
        let mut last = match self.last_stamps.lock() {
            Ok(l) => l,
            Err(_) => return,
        };
        last.resize(senders.len(), None);
        let mut latencies = Vec::new();
        for (i, stamp) in stamps.into_iter().enumerate() {
            let Some(stamp) = stamp else {
                self.stamps_failed.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            self.stamps_read.fetch_add(1, Ordering::Relaxed);
            if last[i] == Some(stamp) {
                continue; // the same picture again: not a new frame
            }
            last[i] = Some(stamp);
            let Some(sent) = senders[i].video.get(stamp as usize).map(|s| s.load(Ordering::Relaxed)) else { continue };
            if sent == 0 || sent > now {
                continue;
            }
            let ms = (now - sent - decode_ns.min(now - sent)) as f64 / 1e6;
            if ms < 3000.0 {
                latencies.push(ms);
            }
        }
        if let Ok(mut l) = self.video_latency_ms.lock() {
            l.extend(latencies);
        }
    }

    /// A decoded audio packet of the mix, arrived at `now`.
    pub fn audio_decoded(&self, pcm: &[i16], now: u64) {
        if !self.measuring.load(Ordering::Relaxed) {
            return;
        }
        let Some(offset) = media::onset(pcm, 0, CLICK_THRESHOLD) else { return };
        // Media time of the onset: the packet ends at `now`.
        let heard = now.saturating_sub((pcm.len() - offset) as u64 * 1_000_000_000 / 48_000);
        // Refractory period: one click per second.
        if heard.saturating_sub(self.last_click_ns.load(Ordering::Relaxed)) < 500_000_000 {
            return;
        }
        self.last_click_ns.store(heard, Ordering::Relaxed);
        let Ok(clicker) = self.clicker.lock() else { return };
        let Some((log, click_offset)) = clicker.as_ref() else { return };
        let (frame, within) = (click_offset / FRAME_SAMPLES, click_offset % FRAME_SAMPLES);
        // Media time of each click sent: its packet was sent at the end of its 20 ms.
        let best = (frame..log.audio.len())
            .step_by(media::CLICK_EVERY)
            .filter_map(|i| {
                let sent = log.audio[i].load(Ordering::Relaxed);
                (sent != 0).then(|| sent.saturating_sub((FRAME_SAMPLES - within) as u64 * 1_000_000_000 / 48_000))
            })
            .filter(|&t| t <= heard)
            .max();
        if let Some(sent) = best {
            let ms = (heard - sent) as f64 / 1e6;
            if ms < 2000.0
                && let Ok(mut l) = self.audio_latency_ms.lock()
            {
                l.push(ms);
            }
        }
    }

    /// Forgets collected latencies (start of a measurement window).
    pub fn reset(&self) {
        for v in [&self.video_latency_ms, &self.audio_latency_ms, &self.probe_decode_ms] {
            if let Ok(mut v) = v.lock() {
                v.clear();
            }
        }
        self.stamps_read.store(0, Ordering::Relaxed);
        self.stamps_failed.store(0, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_stamps_from_a_painted_grid() {
        let (w, h) = (1280u32, 720u32);
        let n = 9;
        let mut y = vec![0u8; (w * h) as usize];
        for (i, cell) in layout::grid_cells(w, h, n).into_iter().enumerate() {
            let pic = layout::fit_in_cell(cell, media::WIDTH, media::HEIGHT);
            let bits = media::barcode_bits(100 + i as u32);
            for (j, bit) in bits.iter().enumerate() {
                let x0 = pic.x + j as u32 * BLOCK * pic.width / media::WIDTH;
                let x1 = pic.x + (j as u32 + 1) * BLOCK * pic.width / media::WIDTH;
                for yy in pic.y..pic.y + BLOCK * pic.height / media::HEIGHT {
                    for xx in x0..x1 {
                        y[(yy * w + xx) as usize] = if *bit { 235 } else { 16 };
                    }
                }
            }
        }
        let stamps = read_stamps(&y, w as usize, w, h, n);
        assert_eq!(stamps, (0..n as u32).map(|i| Some(100 + i)).collect::<Vec<_>>());
    }
}
