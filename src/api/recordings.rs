//! Recording routes: start (`{"format": "webm"|"mp4"}`, WebM when there is no body) and
//! stop a room's recording, list the recordings, download one.

use std::path::PathBuf;

use serde::Deserialize;
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::{Reply, Response};

use super::{ApiError, Authorization, BodyStream, Shared, body_stream, error, read_body, reply, room_name};
use crate::auth::Permission;
use crate::media::recorder::Container;

/// The optional JSON body of a start.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Start {
    format: Option<String>,
}

/// Every recording route.
pub(super) fn routes(
    with_api: impl Filter<Extract = (Shared,), Error = std::convert::Infallible> + Clone + Send + Sync + 'static,
    dir: PathBuf,
) -> BoxedFilter<(Response,)> {
    let bearer = || warp::header::optional::<String>("authorization");
    let recording = warp::path!("rooms" / String / "recording");
    let start = recording
        .and(warp::post())
        .and(bearer())
        .and(body_stream())
        .and(with_api.clone())
        .then(|room, authorization, body, api| async move { reply(start(room, authorization, body, api).await) })
        .boxed();
    let stop = recording
        .and(warp::delete())
        .and(bearer())
        .and(with_api.clone())
        .then(|room, authorization, api| async move { reply(stop(room, authorization, api).await) })
        .boxed();
    let list = warp::path!("recordings")
        .and(warp::get())
        .and(bearer())
        .and(with_api.clone())
        .then(|authorization, api| async move { reply(list(authorization, api).await) })
        .boxed();
    let download = warp::path("recordings")
        .and(warp::get())
        .and(warp::path::peek())
        .and(bearer())
        .and(with_api)
        .and_then(|tail: warp::path::Peek, authorization: Authorization, api: Shared| async move {
            check_download(tail.as_str(), authorization.as_deref(), &api).map_err(error::rejection)
        })
        .untuple_one()
        .and(warp::fs::dir(dir))
        .map(Reply::into_response)
        .boxed();
    start.or(stop).unify().or(list).unify().or(download).unify().boxed()
}

/// The container a start asks for: its body's `format`, WebM without one.
pub(crate) fn container(body: &[u8]) -> Result<Container, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Container::Webm);
    }
    let start: Start = super::parse_json(body)?;
    match start.format.as_deref() {
        None | Some("webm") => Ok(Container::Webm),
        Some("mp4") => Ok(Container::Mp4),
        Some(other) => Err(ApiError::new(StatusCode::BAD_REQUEST, format!("unknown format {other:?} (webm or mp4)"))),
    }
}

async fn start(
    room: String,
    authorization: Authorization,
    body: BodyStream,
    api: Shared,
) -> Result<Response, ApiError> {
    let room = room_name(&room)?;
    api.authorize(authorization.as_deref(), Some(room.as_str()), &[Permission::Record])?;
    let container = container(&read_body(body, 4 * 1024, "JSON body").await?)?;
    let started = api.rooms.start_recording(&room, container).await?;
    Ok(warp::reply::with_status(warp::reply::json(&started), StatusCode::CREATED).into_response())
}

async fn stop(room: String, authorization: Authorization, api: Shared) -> Result<Response, ApiError> {
    let room = room_name(&room)?;
    api.authorize(authorization.as_deref(), Some(room.as_str()), &[Permission::Record])?;
    let stopped = api.rooms.stop_recording(&room).await?;
    Ok(warp::reply::json(&stopped).into_response())
}

async fn list(authorization: Authorization, api: Shared) -> Result<Response, ApiError> {
    api.authorize(authorization.as_deref(), None, &[Permission::Admin])?;
    let store = api.rooms.context().recordings.clone();
    match tokio::task::spawn_blocking(move || store.list()).await {
        Ok(Ok(files)) => Ok(warp::reply::json(&files).into_response()),
        Ok(Err(e)) => Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
        Err(_) => Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "listing failed")),
    }
}

/// Allows a download of a plain recording name by an admin; anything else (another
/// extension, a path, `..`) is not a recording: 404, never a file outside.
fn check_download(name: &str, authorization: Option<&str>, api: &Shared) -> Result<(), ApiError> {
    api.authorize(authorization, None, &[Permission::Admin])?;
    if crate::recordings::is_recording_name(name) {
        Ok(())
    } else {
        Err(ApiError::new(StatusCode::NOT_FOUND, "no such recording"))
    }
}
