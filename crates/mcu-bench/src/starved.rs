//! What a receiver sees when the machine is starved (`mcu-bench all --only starved`).
//!
//! The case comes from a report: four publishers each sending a photograph panned one
//! pixel a frame, one receiver comparing each cell with its source, and four more
//! clients decoding the 720p composite on the same two cores as the server; the
//! receiver saw far worse pictures than on a quiet machine, and whether the server's
//! input, its output or the receiver lost the packets was not known. Here the same
//! room is measured quiet, beside four more receivers, and beside four more
//! receivers and a busy loop on every core, and each row says where packets went
//! missing: at the server's input (its jitter buffers gave up on them), in front of
//! its encoders (frames dropped), in its forwarders (a receiver skipped to a
//! keyframe), in the kernel (full UDP receive buffers) or at the receiver (its jitter
//! buffer gave up on them).

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::received::{Load, ReceivedRow, Setup, measure_room, scenes};
use crate::server::Server;
use crate::viewer::ViewerKind;
use crate::webrtcbin::LossHandling;
use mcu::config::MediaConfig;

/// Receivers decoding the composite beside the measured one, starving the machine.
pub const BYSTANDERS: usize = 4;

/// One measured room.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StarvedRow {
    /// The server build measured.
    #[serde(alias = "encoder")]
    pub server: String,
    /// Receivers decoding the composite beside the measured one.
    pub bystanders: usize,
    /// Whether a busy loop ran on every core besides.
    #[serde(default)]
    pub hog: bool,
    /// The measured receiver's client.
    #[serde(default = "webrtc_rs")]
    pub viewer: String,
    /// What the measured receiver saw, and the server's cores.
    pub row: ReceivedRow,
}

impl StarvedRow {
    /// Markdown table header.
    pub fn header() -> &'static str {
        "| server | receiver | machine | machine busy (of 2 cores) | fps received | PSNR-Y | SSIM-Y | worst cell SSIM | cells frozen | lost at the server's input | frames dropped before encoding | receiver skipped to a keyframe | UDP buffer drops | lost at the receiver (late) | keyframes the receiver asked for |\n\
         | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    }

    /// One Markdown row.
    pub fn line(&self) -> String {
        let machine = match (self.bystanders, self.hog) {
            (0, false) => "quiet".to_owned(),
            (n, false) => format!("{n} more receivers decoding"),
            (n, true) => format!("{n} more receivers + a busy loop per core"),
        };
        let count = |c: Option<i64>| c.map_or_else(|| "not counted".to_owned(), |c| c.to_string());
        let (r, l) = (&self.row, &self.row.losses);
        format!(
            "| {} | {} | {machine} | {:.2} | {:.1} | {:.1} dB | {:.3} | {:.3} | {:.1} % | {} | {} | {} | {} | {} ({}) | {} |",
            self.server,
            self.viewer,
            l.machine_cores,
            r.fps,
            r.psnr_db,
            r.ssim,
            r.worst_ssim,
            l.frozen_share * 100.0,
            count(l.server_input_lost),
            count(l.encode_frames_dropped),
            count(l.receiver_resyncs),
            l.udp_buffer_drops,
            l.receiver.lost,
            l.receiver.late,
            l.receiver.keyframe_requests,
        )
    }
}

fn webrtc_rs() -> String {
    ViewerKind::WebrtcRs.label().to_owned()
}

const QUIET: Load = Load { bystanders: 0, hog: false };
const BESIDE_RECEIVERS: Load = Load { bystanders: BYSTANDERS, hog: false };
const STARVED: Load = Load { bystanders: BYSTANDERS, hog: true };

/// The (viewer, machine state) pairs measured: this project's client in each state,
/// and GStreamer's webrtcbin with each way of handling loss, quiet and starved.
const CASES: [(ViewerKind, Load); 7] = [
    (ViewerKind::WebrtcRs, QUIET),
    (ViewerKind::WebrtcRs, BESIDE_RECEIVERS),
    (ViewerKind::WebrtcRs, STARVED),
    (ViewerKind::Webrtcbin(LossHandling::DecodeThrough), QUIET),
    (ViewerKind::Webrtcbin(LossHandling::DecodeThrough), STARVED),
    (ViewerKind::Webrtcbin(LossHandling::WaitForKeyframe), QUIET),
    (ViewerKind::Webrtcbin(LossHandling::WaitForKeyframe), STARVED),
];

/// Measures the photographs at `high` under each load, on a server started here
/// (under `work`) without name labels. `MCU_BIN` picks another build of the server
/// to compare (its label is `server`).
pub async fn measure(work: &Path, photos: &Path, server: &str) -> Result<Vec<StarvedRow>, String> {
    let photographs = {
        let photos = photos.to_path_buf();
        tokio::task::spawn_blocking(move || scenes(&photos)).await.map_err(|e| e.to_string())??
    }
    .into_iter()
    .find(|s| s.label == "photographs")
    .ok_or("no photographs (scripts/bench-photos.sh extracts them)")?;
    let high = MediaConfig::default().tiers().into_iter().next().ok_or("no tiers")?;
    let mut rows = Vec::new();
    let process = Server::start_configured(work, "[media]\nlabels = false\n")?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    for (index, (viewer, load)) in CASES.into_iter().enumerate() {
        let room = format!("starved-{index}");
        let setup = Setup { load, viewer, ..Setup::new(&photographs, &high) };
        let row = measure_room(&process.url, process.pid(), &room, setup).await?;
        let (bystanders, hog, viewer) = (load.bystanders, load.hog, viewer.label().to_owned());
        let row = StarvedRow { server: server.to_owned(), bystanders, hog, viewer, row };
        eprintln!("bench:   {}", row.line());
        rows.push(row);
    }
    Ok(rows)
}

/// The section of BENCHMARKS.md.
pub fn markdown(rows: &[StarvedRow], date: &str) -> String {
    let mut s = format!(
        "### 4g. What a receiver sees on a starved machine\n\n\
         The photographs of 4f at `high` (four publishers at 640x360, 2 Mb/s), on a quiet machine, beside \
         {BYSTANDERS} more receivers decoding the 720p composite on the same two cores, and beside those and a \
         busy loop on every core. The measured receiver is this project's webrtc-rs client (it NACKs, and after \
         a gap waits for the keyframe it asks for), or GStreamer's webrtcbin over WHEP, with GStreamer's defaults \
         (no NACK, frames after a gap decoded as they come, no keyframe asked for) or waiting for a keyframe. \
         \"cells frozen\": cells showing the view of the frame before (the pictures pan a pixel a frame). The \
         loss columns count, over the measured seconds, what went missing where it can: the server's input jitter \
         buffers (publishers' packets given up on), the queue in front of its encoders, its forwarders (a \
         receiver behind its encode skips to a keyframe), the kernel's UDP receive buffers (every process on the \
         machine) and the receiver's own jitter buffer. Rows of an earlier build (`MCU_BIN`, \
         `MCU_BENCH_SERVER`) measure it with the same clients; it counted nothing itself. Measured on {date} with \
         `mcu-bench all --only starved`.\n\n{}\n",
        StarvedRow::header()
    );
    for row in rows {
        s.push_str(&row.line());
        s.push('\n');
    }
    s
}
