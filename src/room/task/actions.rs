//! Performing the room core's actions with GStreamer and webrtc-rs.

use super::{RoomTask, send_pli, tag};
use crate::room::core::Action;

impl RoomTask {
    /// Performs what the core decided.
    pub(super) fn perform_actions(&mut self) {
        let room = self.slot.name.as_str();
        let config = &self.ctx.config.media;
        let tiers = self.core.tiers().to_vec();
        while let Some(action) = self.core.poll_action() {
            let Some(media) = self.media.as_mut() else { continue };
            match action {
                Action::StartEncode(key) => {
                    let encode = crate::room::media::encode_label(key, &tiers);
                    match media.start_encode(room, config, key, &tiers) {
                        Ok(()) => tracing::debug!(room, encode, "encode started"),
                        Err(e) => tracing::error!(room, encode, error = %e, "cannot start an encode"),
                    }
                }
                Action::StopEncode(key) => {
                    if let Err(e) = media.stop_encode(key, &tiers) {
                        tracing::error!(room, error = %e, "cannot stop an encode");
                    }
                }
                Action::ForceKeyframe(key) => media.force_keyframe(key, &tiers),
                Action::Route(id, key) => {
                    let feed = media.feed(key);
                    let forwarder = self.participants.iter().find(|p| p.id == id).and_then(|p| p.forwarder.as_ref());
                    if let (Some(feed), Some(forwarder)) = (feed, forwarder) {
                        forwarder.switch(tag(key), feed);
                    }
                }
                Action::Layout(cells) => {
                    if let Some(video) = &mut media.video {
                        let participants = &self.participants;
                        let name_of = |id: &str| {
                            participants.iter().find(|p| p.id.as_str() == id).map_or("", |p| p.name.as_str())
                        };
                        let placed: Vec<(&str, crate::layout::Rect, &str)> =
                            cells.iter().map(|(id, rect)| (id.as_str(), *rect, name_of(id.as_str()))).collect();
                        // New name tags start and old ones stop: brief blocking calls.
                        tokio::task::block_in_place(|| video.set_layout(&placed));
                    }
                }
                Action::Pli(id) => {
                    if let Some(p) = self.participants.iter().find(|p| p.id == id) {
                        send_pli(p);
                    }
                }
                Action::TierChanged(id, tier) => {
                    let name = tiers.get(tier).map_or("?", |t| t.name.as_str());
                    tracing::info!(room, participant = %id, quality = name, "receives another tier");
                    self.notices.send("quality", || serde_json::json!({ "participant": id.as_str(), "quality": name }));
                }
                Action::Speaker(id) => {
                    tracing::info!(room, speaker = id.as_ref().map_or("none", |id| id.as_str()), "active speaker");
                    self.notices
                        .send("speaker", || serde_json::json!({ "speaker": id.as_ref().map(|id| id.as_str()) }));
                }
            }
        }
    }
}
