//! `GET /rooms/{room}/events`: the room as Server-Sent Events. The first event is
//! `state` (the room state), then what the room broadcasts (`joined`, `left`,
//! `speaker`, `layout`, `quality`, `recording`, `closed`). A comment every 15 s keeps
//! proxies from closing an idle stream. A client that falls behind the room's buffer
//! is dropped rather than allowed to hold the room up; it reconnects for a fresh
//! state.

use std::convert::Infallible;
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::broadcast::error::RecvError;
use warp::http::StatusCode;
use warp::reply::{Reply, Response};
use warp::sse::Event;

use super::{ApiError, Shared, room_name};
use crate::room::notice::RoomNotice;

/// Longest silence on the stream (the contract asks for at least one line every 15 s).
const KEEP_ALIVE: Duration = Duration::from_secs(15);

fn event(name: &str, data: &serde_json::Value) -> Event {
    Event::default().event(name).data(data.to_string())
}

/// `GET /rooms/{room}/events` (same rights as `GET /rooms/{room}`).
pub(super) async fn stream(room: String, authorization: Option<String>, api: Shared) -> Result<Response, ApiError> {
    let room = room_name(&room)?;
    api.authorize(authorization.as_deref(), Some(room.as_str()), &[])?;
    let subscription =
        api.rooms.subscribe(&room).await.ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "unknown room"))?;
    let state = serde_json::to_value(&subscription.state).unwrap_or_default();
    let first = futures::stream::once(async move { Ok::<_, Infallible>(event("state", &state)) });
    let rest = futures::stream::unfold(Some(subscription.notices), |notices| async move {
        let mut notices = notices?;
        match notices.recv().await {
            Ok(RoomNotice { event: name, data }) => {
                // `closed` is the last word; the room's sender goes with it.
                let next = (name != "closed").then_some(notices);
                Some((Ok(event(name, &data)), next))
            }
            // Fell behind (dropped) or the room is gone.
            Err(RecvError::Lagged(_) | RecvError::Closed) => None,
        }
    });
    let events = first.chain(rest);
    Ok(warp::sse::reply(warp::sse::keep_alive().interval(KEEP_ALIVE).stream(events)).into_response())
}
