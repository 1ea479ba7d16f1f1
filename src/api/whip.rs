//! WHIP ingest and WHEP playback (RFC 9725 and the WHEP draft): a publisher or a
//! viewer set up by one HTTP `POST` of an SDP offer, its session a resource that
//! `DELETE` ends. Both are joins of the room under a [`Role`]; everything a join
//! checks (auth, rate, size, codecs, room and server limits) applies unchanged.

use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::{StatusCode, header};
use warp::reply::{Reply, Response};

use super::{ApiError, Authorization, BodyStream, JoinHttp, Shared, body_stream, reply, room_name};
use crate::auth::{Access, Permission};
use crate::room::{JoinRequest, ParticipantId, Role};

/// The media type of a trickle `PATCH` (RFC 8840).
const TRICKLE_SDPFRAG: &str = "application/trickle-ice-sdpfrag";
/// Longest trickle body read (and ignored).
const MAX_SDPFRAG_BYTES: u64 = 16 * 1024;

/// The two endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Endpoint {
    /// `/whip/{room}`: publishers.
    Whip,
    /// `/whep/{room}`: viewers.
    Whep,
}

impl Endpoint {
    fn path(self) -> &'static str {
        match self {
            Self::Whip => "whip",
            Self::Whep => "whep",
        }
    }

    fn role(self) -> Role {
        match self {
            Self::Whip => Role::Publisher,
            Self::Whep => Role::Viewer,
        }
    }

    fn permission(self) -> Permission {
        match self {
            Self::Whip => Permission::Publish,
            Self::Whep => Permission::Subscribe,
        }
    }
}

/// Every route of both endpoints: `POST` and `OPTIONS` on `/{whip,whep}/{room}`,
/// `DELETE` and `PATCH` on the session resources.
pub(super) fn routes(
    with_api: impl Filter<Extract = (Shared,), Error = std::convert::Infallible> + Clone + Send + Sync + 'static,
) -> BoxedFilter<(Response,)> {
    let whip = endpoint_routes(Endpoint::Whip, with_api.clone());
    let whep = endpoint_routes(Endpoint::Whep, with_api);
    whip.or(whep).unify().boxed()
}

fn endpoint_routes(
    endpoint: Endpoint,
    with_api: impl Filter<Extract = (Shared,), Error = std::convert::Infallible> + Clone + Send + Sync + 'static,
) -> BoxedFilter<(Response,)> {
    let bearer = || warp::header::optional::<String>("authorization");
    let base = warp::path(endpoint.path()).and(warp::path::param::<String>());
    let post =
        base.and(warp::path::end()).and(warp::post()).and(super::offer_parts()).and(with_api.clone()).then(
            move |room,
                  query,
                  content_type,
                  content_length,
                  authorization,
                  remote: super::Caller,
                  body,
                  api: Shared| async move {
                let request = JoinHttp { room, query, content_type, content_length, authorization, remote };
                reply(super::counted(create(endpoint, request, body, api).await))
            },
        );
    let options = base
        .and(warp::path::end())
        .and(warp::options())
        .and(bearer())
        .and(with_api.clone())
        .then(move |room, authorization, api: Shared| async move { reply(options(room, authorization, &api)) });
    let delete = base
        .and(warp::path::param::<String>())
        .and(warp::path::end())
        .and(warp::delete())
        .and(bearer())
        .and(with_api.clone())
        .then(move |room, id, authorization, api: Shared| async move {
            reply(end_session(room, id, authorization, &api).await)
        });
    let patch = base
        .and(warp::path::param::<String>())
        .and(warp::path::end())
        .and(warp::patch())
        .and(warp::header::optional::<String>("content-type"))
        .and(warp::header::optional::<String>("if-match"))
        .and(bearer())
        .and(body_stream())
        .and(with_api)
        .then(move |room, id, content_type, if_match, authorization, body, api: Shared| async move {
            let request = Trickle { room, id, content_type, if_match, authorization };
            reply(trickle(request, body, &api).await)
        });
    post.or(options).unify().or(delete).unify().or(patch).unify().boxed()
}

/// `POST`: the offer joins the room as a publisher (WHIP) or a viewer (WHEP).
async fn create(endpoint: Endpoint, request: JoinHttp, body: BodyStream, api: Shared) -> Result<Response, ApiError> {
    let (room, access, offer) = super::read_offer(&request, body, &api).await?;
    // The offer is inspected (and its directions checked for the role) by the join.
    access.require(Some(room.as_str()), &[endpoint.permission()])?;
    let name = super::display_name(&request.query)?;
    let quality = super::participants::quality_param(&request.query, &api.rooms.context().config.media.tiers())?;
    let owner = match &access {
        Access::Open => None,
        Access::Token(claims) => Some(claims.sub.clone()),
    };
    let role = endpoint.role();
    let answer = api.rooms.join(&room, JoinRequest { offer, name, owner, quality, role }).await?;
    let mut response = warp::http::Response::builder()
        .status(StatusCode::CREATED)
        .header(header::CONTENT_TYPE, "application/sdp")
        .header(header::LOCATION, format!("/{}/{room}/{}", endpoint.path(), answer.id))
        .header(header::ETAG, etag(&answer.id));
    // RFC 9725 §4.4: the ICE servers also come with the answer.
    for link in ice_server_links(&access, &api) {
        response = response.header(header::LINK, link);
    }
    response.body(answer.answer.into()).map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

/// `OPTIONS` on an endpoint: what it accepts, and the ICE servers for a client that
/// may use them (any valid token; everyone on an open server). Without credentials
/// the answer has no `Link`: TURN credentials are not handed to strangers.
fn options(room: String, authorization: Authorization, api: &Shared) -> Result<Response, ApiError> {
    let room = room_name(&room)?;
    let mut response = warp::http::Response::builder()
        .status(StatusCode::NO_CONTENT)
        .header("accept-post", "application/sdp")
        .header(header::ALLOW, "OPTIONS, POST");
    if let Ok(access) = api.authorize(authorization.as_deref(), Some(room.as_str()), &[]) {
        for link in ice_server_links(&access, api) {
            response = response.header(header::LINK, link);
        }
    }
    response.body(Vec::new().into()).map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

fn ice_server_links(access: &Access, api: &Shared) -> Vec<String> {
    let turn = &api.rooms.context().config.turn;
    crate::turn::link_headers(&crate::turn::ice_servers(turn, access.identity(), crate::auth::unix_now()))
}

/// The entity tag of a session: it never changes (no ICE restart), so its id.
fn etag(id: &ParticipantId) -> String {
    format!("\"{id}\"")
}

/// Who may act on a session: its own identity, a moderator or an admin (as for a
/// participant's `DELETE`).
fn session_owner(room: &str, authorization: Authorization, api: &Shared) -> Result<Option<String>, ApiError> {
    Ok(match api.authorize(authorization.as_deref(), Some(room), &[])? {
        Access::Token(claims) if !claims.allows(Permission::Moderate) => Some(claims.sub),
        _ => None,
    })
}

/// `DELETE` on a session: the publisher or viewer leaves.
async fn end_session(
    room: String,
    id: String,
    authorization: Authorization,
    api: &Shared,
) -> Result<Response, ApiError> {
    let room = room_name(&room)?;
    let by = session_owner(room.as_str(), authorization, api)?;
    api.rooms.leave(&room, ParticipantId::from_path(&id), by).await?;
    Ok(StatusCode::OK.into_response())
}

/// The parts of a trickle `PATCH` besides its body.
struct Trickle {
    room: String,
    id: String,
    content_type: Option<String>,
    if_match: Option<String>,
    authorization: Authorization,
}

/// `PATCH` on a session: trickled candidates. The answer already held every server
/// candidate and the offer's own are enough, so they are read and ignored.
async fn trickle(request: Trickle, body: BodyStream, api: &Shared) -> Result<Response, ApiError> {
    let room = room_name(&request.room)?;
    let by = session_owner(room.as_str(), request.authorization, api)?;
    let id = ParticipantId::from_path(&request.id);
    api.rooms.check_member(&room, &id, by).await?;
    let mime = request.content_type.as_deref().and_then(|c| c.split(';').next()).map(|m| m.trim().to_ascii_lowercase());
    if mime.as_deref() != Some(TRICKLE_SDPFRAG) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("Content-Type must be {TRICKLE_SDPFRAG}"),
        ));
    }
    if let Some(tag) = request.if_match.as_deref().map(str::trim)
        && tag != "*"
        && tag != etag(&id)
    {
        return Err(ApiError::new(StatusCode::PRECONDITION_FAILED, "If-Match does not name this session"));
    }
    super::read_body(body, MAX_SDPFRAG_BYTES, "trickle body").await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
