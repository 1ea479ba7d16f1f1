//! The receiver a quality measurement watches through: this project's webrtc-rs
//! client, or GStreamer's `webrtcbin` over WHEP (an outside client, with GStreamer's
//! own jitter buffer and loss handling).

use std::sync::mpsc::Receiver;

use crate::client::{Client, ClientOptions, DecodedFrame, VideoLosses};
use crate::webrtcbin::{LossHandling, WebrtcbinSession};

/// Which client watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ViewerKind {
    /// The webrtc-rs client (`POST /rooms/{room}/join`): NACKs every loss, and after
    /// a gap shows nothing until the keyframe it asks for.
    WebrtcRs,
    /// `webrtcbin` (`POST /whep/{room}`, the `high` tier), losses handled as given.
    Webrtcbin(LossHandling),
}

impl ViewerKind {
    /// Its name in the tables.
    pub fn label(self) -> &'static str {
        match self {
            ViewerKind::WebrtcRs => "webrtc-rs",
            ViewerKind::Webrtcbin(LossHandling::DecodeThrough) => "webrtcbin, GStreamer's defaults",
            ViewerKind::Webrtcbin(LossHandling::WaitForKeyframe) => "webrtcbin, waits for a keyframe",
        }
    }
}

/// A joined viewer.
pub enum Viewer {
    /// See [`ViewerKind::WebrtcRs`].
    WebrtcRs(Client),
    /// See [`ViewerKind::Webrtcbin`].
    Webrtcbin(WebrtcbinSession),
}

impl Viewer {
    /// Joins `room` on `base` as `kind`; `options` are the webrtc-rs client's.
    pub async fn join(base: &str, room: &str, kind: ViewerKind, options: ClientOptions) -> Result<Self, String> {
        match kind {
            ViewerKind::WebrtcRs => {
                Ok(Viewer::WebrtcRs(Client::join(base, room, options).await.map_err(|e| e.to_string())?))
            }
            ViewerKind::Webrtcbin(losses) => {
                let (base, room) = (base.to_owned(), room.to_owned());
                let session = tokio::task::spawn_blocking(move || WebrtcbinSession::view_with(&base, &room, losses))
                    .await
                    .map_err(|e| e.to_string())??;
                Ok(Viewer::Webrtcbin(session))
            }
        }
    }

    /// Every frame it decodes from now on (up to `backlog` waiting).
    pub fn observe_frames(&self, backlog: usize) -> Receiver<DecodedFrame> {
        match self {
            Viewer::WebrtcRs(c) => c.received.observe_frames(backlog),
            Viewer::Webrtcbin(s) => s.video.observe(backlog),
        }
    }

    /// Stops sending frames to the watcher.
    pub fn stop_observing(&self) {
        match self {
            Viewer::WebrtcRs(c) => c.received.stop_observing(),
            Viewer::Webrtcbin(s) => s.video.stop_observing(),
        }
    }

    /// What its jitter buffer counted so far.
    pub fn video_losses(&self) -> Option<VideoLosses> {
        match self {
            Viewer::WebrtcRs(c) => c.received.video_losses(),
            Viewer::Webrtcbin(s) => s.video_losses(),
        }
    }

    /// Leaves (a WHEP session by `DELETE` of its resource on `base`).
    pub async fn close(self, base: &str) {
        match self {
            Viewer::WebrtcRs(c) => c.close().await,
            Viewer::Webrtcbin(s) => {
                let _ = reqwest::Client::new().delete(format!("{base}{}", s.location)).send().await;
                // Its pipeline stops on drop, which blocks briefly.
                let _ = tokio::task::spawn_blocking(move || drop(s)).await;
            }
        }
    }
}
