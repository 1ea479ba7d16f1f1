//! What a room tells the clients of its event stream (`GET /rooms/{room}/events`):
//! `joined`, `left`, `speaker`, `layout`, `quality`, `recording`, `closed`, each with
//! its JSON data as the contract gives it. The room broadcasts them; every subscriber
//! has a bounded buffer of [`NOTICE_BUFFER`] and one that falls that far behind is
//! dropped (it reconnects and gets the state again), so a slow or vanished client
//! never holds up the room.

use std::sync::Arc;

use tokio::sync::broadcast;

use super::RoomState;

/// Notices a subscriber may fall behind by before it is dropped.
pub const NOTICE_BUFFER: usize = 64;

/// One event of the stream.
#[derive(Debug, Clone)]
pub struct RoomNotice {
    /// The event name.
    pub event: &'static str,
    /// Its data.
    pub data: Arc<serde_json::Value>,
}

/// A new subscriber: the room's state when it subscribed, then every notice after it.
#[derive(Debug)]
pub struct Subscription {
    /// The state at the moment of subscribing (the stream's first event).
    pub state: RoomState,
    /// What happens next.
    pub notices: broadcast::Receiver<RoomNotice>,
}

/// The room's side of the stream.
#[derive(Debug)]
pub(super) struct Notices(broadcast::Sender<RoomNotice>);

impl Notices {
    pub(super) fn new() -> Self {
        Self(broadcast::channel(NOTICE_BUFFER).0)
    }

    /// Sends `event` to every subscriber; `data` is only built when someone listens.
    pub(super) fn send(&self, event: &'static str, data: impl FnOnce() -> serde_json::Value) {
        if self.0.receiver_count() > 0 {
            let _ = self.0.send(RoomNotice { event, data: Arc::new(data()) });
        }
    }

    pub(super) fn subscribe(&self) -> broadcast::Receiver<RoomNotice> {
        self.0.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn nobody_listening_costs_nothing_and_a_laggard_is_told() {
        let notices = Notices::new();
        notices.send("joined", || unreachable!("no subscriber: the data is never built"));
        let mut rx = notices.subscribe();
        for i in 0..NOTICE_BUFFER + 5 {
            notices.send("speaker", || serde_json::json!({ "speaker": i }));
        }
        assert!(matches!(rx.recv().await, Err(broadcast::error::RecvError::Lagged(5))));
    }
}
