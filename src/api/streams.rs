//! Live streaming routes: `POST /rooms/{room}/streams {"url": "rtmp://..."}` starts
//! pushing the room's mix to an RTMP server, `DELETE /rooms/{room}/streams/{id}`
//! stops it. Both need `record`: a stream is a recording that leaves the server.

use serde::Deserialize;
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::{Reply, Response};

use super::{ApiError, Authorization, BodyStream, Shared, body_stream, reply, room_name};
use crate::auth::Permission;
use crate::room::live::StreamError;

/// The JSON body of a start.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Start {
    url: String,
}

/// Both stream routes.
pub(super) fn routes(
    with_api: impl Filter<Extract = (Shared,), Error = std::convert::Infallible> + Clone + Send + Sync + 'static,
) -> BoxedFilter<(Response,)> {
    let bearer = || warp::header::optional::<String>("authorization");
    let start = warp::path!("rooms" / String / "streams")
        .and(warp::post())
        .and(warp::header::optional::<String>("content-type"))
        .and(bearer())
        .and(body_stream())
        .and(with_api.clone())
        .then(|room, content_type, authorization, body, api| async move {
            reply(start(room, content_type, authorization, body, api).await)
        })
        .boxed();
    let stop = warp::path!("rooms" / String / "streams" / String)
        .and(warp::delete())
        .and(bearer())
        .and(with_api)
        .then(|room, id, authorization, api| async move { reply(stop(room, id, authorization, api).await) })
        .boxed();
    start.or(stop).unify().boxed()
}

/// The URL a start body names, checked (400 naming what is wrong).
pub(crate) fn parse_start(body: &[u8]) -> Result<String, ApiError> {
    let start: Start = super::parse_json(body)?;
    crate::room::live::check_url(&start.url)?;
    Ok(start.url)
}

async fn start(
    room: String,
    content_type: Option<String>,
    authorization: Authorization,
    body: BodyStream,
    api: Shared,
) -> Result<Response, ApiError> {
    let room = room_name(&room)?;
    api.authorize(authorization.as_deref(), Some(room.as_str()), &[Permission::Record])?;
    // A bad URL is refused before the room is asked (also for an unknown room).
    let url = parse_start(&super::read_json(content_type.as_deref(), body).await?)?;
    let stream = api.rooms.start_stream(&room, url).await?;
    Ok(warp::reply::with_status(warp::reply::json(&stream), StatusCode::CREATED).into_response())
}

async fn stop(room: String, id: String, authorization: Authorization, api: Shared) -> Result<Response, ApiError> {
    let room = room_name(&room)?;
    api.authorize(authorization.as_deref(), Some(room.as_str()), &[Permission::Record])?;
    let stream = api.rooms.stop_stream(&room, id).await?;
    Ok(warp::reply::json(&stream).into_response())
}

impl From<StreamError> for ApiError {
    fn from(e: StreamError) -> Self {
        let status = match e {
            StreamError::UnknownRoom | StreamError::UnknownStream => StatusCode::NOT_FOUND,
            StreamError::BadUrl => StatusCode::BAD_REQUEST,
            StreamError::TooMany(_) => StatusCode::CONFLICT,
            StreamError::OverBudget(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        let error = ApiError::new(status, e.to_string());
        if status == StatusCode::SERVICE_UNAVAILABLE { error.retry_after(30) } else { error }
    }
}
