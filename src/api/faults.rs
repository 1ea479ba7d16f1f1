//! Test builds only (feature `fault-injection`): `POST /rooms/{room}/faults/panic`
//! makes the room's task panic, so a test can check that a room's fault frees what it
//! held and touches nothing else. A production build has no such route.

use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::{Reply, Response};

use super::{ApiError, Shared, reply, room_name};
use crate::auth::Permission;

/// The fault routes.
pub(super) fn routes(
    with_api: impl Filter<Extract = (Shared,), Error = std::convert::Infallible> + Clone + Send + Sync + 'static,
) -> BoxedFilter<(Response,)> {
    warp::path!("rooms" / String / "faults" / "panic")
        .and(warp::post())
        .and(warp::header::optional::<String>("authorization"))
        .and(with_api)
        .then(|room: String, authorization: Option<String>, api: Shared| async move {
            reply(panic_room(room, authorization, api).await)
        })
        .boxed()
}

async fn panic_room(room: String, authorization: Option<String>, api: Shared) -> Result<Response, ApiError> {
    let room = room_name(&room)?;
    api.authorize(authorization.as_deref(), None, &[Permission::Admin])?;
    if api.rooms.inject_panic(&room).await {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::new(StatusCode::NOT_FOUND, "unknown room"))
    }
}
