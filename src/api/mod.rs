//! The HTTP API (contract v1): warp routes, request validation, and responses.

mod error;
mod web;

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;

use bytes::Buf;
use futures::{Stream, StreamExt};
use warp::Filter;
use warp::http::{StatusCode, header};
use warp::reply::{Reply, Response};

pub use error::ApiError;

use crate::metrics;
use crate::room::{JoinRequest, ParticipantId, RoomName, Rooms};

/// Longest display name accepted.
const MAX_NAME_CHARS: usize = 64;

/// Every route of the API, with JSON errors.
pub fn routes(rooms: Arc<Rooms>) -> impl Filter<Extract = (impl Reply,), Error = Infallible> + Clone {
    let web_dir = rooms.context().config.server.web_dir.clone();
    let recordings_dir = rooms.context().recordings.dir().to_owned();
    let with_rooms = warp::any().map(move || Arc::clone(&rooms));

    // Paths before methods, so an unknown path is 404 and a known one 405.
    let join = warp::path!("rooms" / String / "join")
        .and(warp::post())
        .and(warp::query::<HashMap<String, String>>())
        .and(warp::header::optional::<String>("content-type"))
        .and(warp::header::optional::<u64>("content-length"))
        .and(warp::body::stream())
        .and(with_rooms.clone())
        .then(join)
        .boxed();
    let leave = warp::path!("rooms" / String / "participants" / String)
        .and(warp::delete())
        .and(with_rooms.clone())
        .then(leave)
        .boxed();
    let list = warp::path!("rooms").and(warp::get()).and(with_rooms.clone()).then(list_rooms).boxed();
    let state = warp::path!("rooms" / String).and(warp::get()).and(with_rooms.clone()).then(room_state).boxed();
    let health = warp::path!("healthz")
        .and(warp::get())
        .map(|| warp::reply::json(&serde_json::json!({"status": "ok"})).into_response())
        .boxed();
    let recording = warp::path!("rooms" / String / "recording");
    let start_recording = recording.and(warp::post()).and(with_rooms.clone()).then(start_recording).boxed();
    let stop_recording = recording.and(warp::delete()).and(with_rooms.clone()).then(stop_recording).boxed();
    let list_recordings =
        warp::path!("recordings").and(warp::get()).and(with_rooms.clone()).then(list_recordings).boxed();
    let download = warp::path("recordings")
        .and(warp::path::peek())
        .and_then(|tail: warp::path::Peek| async move {
            if crate::recordings::is_recording_name(tail.as_str()) {
                Ok(())
            } else {
                Err(error::rejection(ApiError::new(StatusCode::BAD_REQUEST, "invalid recording file name")))
            }
        })
        .untuple_one()
        .and(warp::fs::dir(recordings_dir))
        .map(Reply::into_response)
        .boxed();
    let metrics = warp::path!("metrics").and(warp::get()).and(with_rooms).then(metrics_text).boxed();

    let conference = join.or(leave).unify().or(list).unify().or(state).unify().boxed();
    let recordings =
        start_recording.or(stop_recording).unify().or(list_recordings).unify().or(download).unify().boxed();
    let operations = health.or(metrics).unify().boxed();
    conference
        .or(recordings)
        .unify()
        .or(operations)
        .unify()
        .or(web::routes(web_dir))
        .unify()
        .recover(error::recover)
        .unify()
        .with(warp::trace::request())
}

fn room_name(room: &str) -> Result<RoomName, ApiError> {
    RoomName::parse(room).map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.to_string()))
}

fn reply(result: Result<Response, ApiError>) -> Response {
    result.unwrap_or_else(Reply::into_response)
}

async fn join(
    room: String,
    query: HashMap<String, String>,
    content_type: Option<String>,
    content_length: Option<u64>,
    body: impl Stream<Item = Result<impl Buf, warp::Error>> + Unpin,
    rooms: Arc<Rooms>,
) -> Response {
    reply(join_inner(room, query, content_type, content_length, body, rooms).await)
}

async fn join_inner(
    room: String,
    query: HashMap<String, String>,
    content_type: Option<String>,
    content_length: Option<u64>,
    body: impl Stream<Item = Result<impl Buf, warp::Error>> + Unpin,
    rooms: Arc<Rooms>,
) -> Result<Response, ApiError> {
    let room = room_name(&room)?;
    let mime = content_type.as_deref().and_then(|c| c.split(';').next()).map(|m| m.trim().to_ascii_lowercase());
    if mime.as_deref() != Some("application/sdp") {
        return Err(ApiError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "Content-Type must be application/sdp"));
    }
    let limit = rooms.context().config.server.max_sdp_bytes;
    if content_length.is_some_and(|len| len > limit) {
        return Err(ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, format!("SDP offer larger than {limit} bytes")));
    }
    let offer = read_limited(body, limit).await?;
    let name = match query.get("name").map(|n| n.trim()) {
        Some(n) if n.chars().count() > MAX_NAME_CHARS => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("name longer than {MAX_NAME_CHARS} characters"),
            ));
        }
        Some(n) if n.chars().any(char::is_control) => {
            return Err(ApiError::new(StatusCode::BAD_REQUEST, "name contains control characters"));
        }
        Some("") | None => None,
        Some(n) => Some(n.to_owned()),
    };
    let answer = rooms.join(&room, JoinRequest { offer, name }).await?;
    let location = format!("/rooms/{room}/participants/{}", answer.id);
    let response = warp::http::Response::builder()
        .status(StatusCode::CREATED)
        .header(header::CONTENT_TYPE, "application/sdp")
        .header(header::LOCATION, location)
        .body(answer.answer.into())
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(response)
}

/// Reads a body of at most `limit` bytes as UTF-8, whatever its transfer encoding.
async fn read_limited(
    mut body: impl Stream<Item = Result<impl Buf, warp::Error>> + Unpin,
    limit: u64,
) -> Result<String, ApiError> {
    let mut data = Vec::new();
    while let Some(chunk) = body.next().await {
        let mut chunk = chunk.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("cannot read body: {e}")))?;
        if (data.len() + chunk.remaining()) as u64 > limit {
            return Err(ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, format!("SDP offer larger than {limit} bytes")));
        }
        while chunk.has_remaining() {
            let part = chunk.chunk();
            data.extend_from_slice(part);
            let n = part.len();
            chunk.advance(n);
        }
    }
    String::from_utf8(data).map_err(|_| ApiError::new(StatusCode::BAD_REQUEST, "SDP offer is not UTF-8"))
}

async fn leave(room: String, id: String, rooms: Arc<Rooms>) -> Response {
    reply(
        async {
            let room = room_name(&room)?;
            rooms.leave(&room, ParticipantId::from_path(&id)).await?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        .await,
    )
}

async fn list_rooms(rooms: Arc<Rooms>) -> Response {
    warp::reply::json(&rooms.list().await).into_response()
}

async fn room_state(room: String, rooms: Arc<Rooms>) -> Response {
    reply(
        async {
            let room = room_name(&room)?;
            let state = rooms.state(&room).await.ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "unknown room"))?;
            Ok(warp::reply::json(&state).into_response())
        }
        .await,
    )
}

async fn start_recording(room: String, rooms: Arc<Rooms>) -> Response {
    reply(
        async {
            let room = room_name(&room)?;
            let started = rooms.start_recording(&room).await?;
            Ok(warp::reply::with_status(warp::reply::json(&started), StatusCode::CREATED).into_response())
        }
        .await,
    )
}

async fn stop_recording(room: String, rooms: Arc<Rooms>) -> Response {
    reply(
        async {
            let room = room_name(&room)?;
            let stopped = rooms.stop_recording(&room).await?;
            Ok(warp::reply::json(&stopped).into_response())
        }
        .await,
    )
}

async fn list_recordings(rooms: Arc<Rooms>) -> Response {
    let store = rooms.context().recordings.clone();
    let listed = tokio::task::spawn_blocking(move || store.list()).await;
    match listed {
        Ok(Ok(files)) => warp::reply::json(&files).into_response(),
        Ok(Err(e)) => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
        Err(_) => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "listing failed").into_response(),
    }
}

async fn metrics_text(rooms: Arc<Rooms>) -> Response {
    let (room_count, participants) = rooms.counts().await;
    warp::reply::with_header(
        metrics::render(room_count, participants),
        header::CONTENT_TYPE,
        "text/plain; version=0.0.4",
    )
    .into_response()
}
