//! The HTTP API (contract v1): warp routes, request validation, access control and
//! responses. Every error is the contract's JSON `{"error": ...}`.

mod cluster;
mod error;
mod events;
#[cfg(feature = "fault-injection")]
mod faults;
pub mod http_server;
pub(crate) mod layout;
mod limit;
pub(crate) mod participants;
pub(crate) mod recordings;
pub(crate) mod streams;
mod unread_body;
mod web;
mod whip;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Buf;
use futures::{Stream, StreamExt};
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::{StatusCode, header};
use warp::reply::{Reply, Response};

pub use error::ApiError;

use crate::auth::{Access, Authenticator, Permission};
use crate::metrics;
use crate::room::{JoinRequest, ParticipantId, Role, RoomName, Rooms};
use crate::rtc::offer::inspect_offer;

/// Longest display name accepted.
const MAX_NAME_CHARS: usize = 64;

/// What every handler shares.
pub(crate) struct Api {
    pub(crate) rooms: Arc<Rooms>,
    auth: Authenticator,
    joins: limit::JoinLimiter,
}

impl Api {
    /// Verifies the `Authorization` header and requires `perms` for `room`.
    pub(crate) fn authorize(
        &self,
        authorization: Option<&str>,
        room: Option<&str>,
        perms: &[Permission],
    ) -> Result<Access, ApiError> {
        let access = self.auth.check(authorization)?;
        access.require(room, perms)?;
        Ok(access)
    }
}

pub(crate) type Shared = Arc<Api>;
pub(crate) type Authorization = Option<String>;

/// Every route of the API, with JSON errors and, when configured, CORS.
pub fn routes(rooms: Arc<Rooms>) -> impl Filter<Extract = (impl Reply,), Error = Infallible> + Clone {
    let config = &rooms.context().config;
    let web_dir = config.server.web_dir.clone();
    let recordings_dir = rooms.context().recordings.dir().to_owned();
    let cors_origins = config.auth.cors_origins.clone();
    let api = Arc::new(Api {
        auth: Authenticator::new(config.auth.secret.as_deref()),
        joins: limit::JoinLimiter::new(config.server.join_rate_per_min),
        rooms,
    });
    let cluster_of_api = api.rooms.context().cluster.clone();
    let api_for_cluster = Arc::clone(&api);
    let with_api = warp::any().map(move || Arc::clone(&api));
    let bearer = || warp::header::optional::<String>("authorization");

    // Paths before methods, so an unknown path is 404 and a known one 405.
    let join = warp::path!("rooms" / String / "join")
        .and(warp::post())
        .and(offer_parts())
        .and(with_api.clone())
        .then(|room, query, content_type, content_length, authorization, remote, body, api: Shared| async move {
            let request = JoinHttp { room, query, content_type, content_length, authorization, remote };
            reply(counted(join(request, body, api).await))
        })
        .boxed();
    let leave = warp::path!("rooms" / String / "participants" / String)
        .and(warp::delete())
        .and(bearer())
        .and(with_api.clone())
        .then(|room, id, authorization, api| async move { reply(leave(room, id, authorization, api).await) })
        .boxed();
    let update = warp::path!("rooms" / String / "participants" / String)
        .and(warp::patch())
        .and(warp::header::optional::<String>("content-type"))
        .and(bearer())
        .and(body_stream())
        .and(with_api.clone())
        .then(|room, id, content_type, authorization, body, api: Shared| async move {
            reply(participants::update(room, id, content_type, authorization, body, &api).await)
        })
        .boxed();
    let set_layout = warp::path!("rooms" / String / "layout")
        .and(warp::put())
        .and(warp::header::optional::<String>("content-type"))
        .and(bearer())
        .and(body_stream())
        .and(with_api.clone())
        .then(|room, content_type, authorization, body, api: Shared| async move {
            reply(layout::put(room, content_type, authorization, body, &api).await)
        })
        .boxed();
    let mute = warp::path!("rooms" / String / "participants" / String / "mute")
        .and(warp::post())
        .and(warp::header::optional::<String>("content-type"))
        .and(bearer())
        .and(body_stream())
        .and(with_api.clone())
        .then(|room, id, content_type, authorization, body, api: Shared| async move {
            reply(participants::mute(room, id, content_type, authorization, body, &api).await)
        })
        .boxed();
    let events = warp::path!("rooms" / String / "events")
        .and(warp::get())
        .and(bearer())
        .and(with_api.clone())
        .then(|room, authorization, api| async move { reply(events::stream(room, authorization, api).await) })
        .boxed();
    let list = warp::path!("rooms")
        .and(warp::get())
        .and(bearer())
        .and(with_api.clone())
        .then(|authorization, api| async move { reply(list_rooms(authorization, api).await) })
        .boxed();
    let state = warp::path!("rooms" / String)
        .and(warp::get())
        .and(bearer())
        .and(with_api.clone())
        .then(|room, authorization, api| async move { reply(room_state(room, authorization, api).await) })
        .boxed();
    #[cfg(feature = "fault-injection")]
    let with_api_faults = with_api.clone();
    let with_api_nodes = with_api.clone();
    let recordings = recordings::routes(with_api.clone(), recordings_dir);
    let streams = streams::routes(with_api.clone());
    let whip = whip::routes(with_api.clone());
    let ice_servers = warp::path!("ice-servers")
        .and(warp::get())
        .and(bearer())
        .and(with_api.clone())
        .then(|authorization, api| async move { reply(ice_servers(authorization, api)) })
        .boxed();
    let health = warp::path!("healthz")
        .and(warp::get())
        .map(|| warp::reply::json(&serde_json::json!({"status": "ok"})).into_response())
        .boxed();
    let metrics = warp::path!("metrics")
        .and(warp::get())
        .and(bearer())
        .and(with_api)
        .then(|authorization, api| async move { reply(metrics_text(authorization, api).await) })
        .boxed();

    let conference = join
        .or(leave)
        .unify()
        .or(update)
        .unify()
        .or(set_layout)
        .unify()
        .or(mute)
        .unify()
        .or(events)
        .unify()
        .or(list)
        .unify()
        .or(state)
        .unify()
        .boxed();
    let operations = ice_servers.or(health).unify().or(metrics).unify().boxed();
    let media = recordings.or(streams).unify().or(whip).unify().boxed();
    #[cfg(feature = "fault-injection")]
    let operations = operations.or(faults::routes(with_api_faults)).unify().boxed();
    let nodes = warp::path!("nodes")
        .and(warp::get())
        .and(bearer())
        .and(with_api_nodes)
        .then(|authorization, api| async move { reply(list_nodes(authorization, api).await) })
        .boxed();
    let operations = operations.or(nodes).unify().boxed();
    let all: BoxedFilter<(Response,)> =
        conference.or(media).unify().or(operations).unify().or(web::routes(web_dir)).unify().boxed();
    // In a cluster, requests for rooms another node owns go there first.
    let all = match cluster_of_api {
        Some(cluster) => cluster::forward(Arc::clone(&api_for_cluster), cluster).or(all).unify().boxed(),
        None => all,
    };
    // Without configured origins there is no CORS layer at all: same-origin pages
    // (which send an Origin header on POST too) must not be refused.
    let all = match cors(&cors_origins) {
        Some(cors) => all.with(cors).map(Reply::into_response).boxed(),
        None => all,
    };
    all.recover(error::recover).unify().with(warp::trace::request())
}

/// Cross-origin access for browsers on the listed origins (none: same-origin only).
fn cors(origins: &[String]) -> Option<warp::cors::Builder> {
    if origins.is_empty() {
        return None;
    }
    let builder = warp::cors()
        .allow_methods(["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
        .allow_headers(["content-type", "authorization", "if-match"])
        // What WHIP/WHEP client libraries read from a POST's answer.
        .expose_headers(["location", "etag", "link", "accept-post"])
        .max_age(600);
    Some(if origins.iter().any(|o| o == "*") {
        builder.allow_any_origin()
    } else {
        builder.allow_origins(origins.iter().map(String::as_str))
    })
}

pub(crate) fn room_name(room: &str) -> Result<RoomName, ApiError> {
    RoomName::parse(room).map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.to_string()))
}

pub(crate) fn reply(result: Result<Response, ApiError>) -> Response {
    result.unwrap_or_else(Reply::into_response)
}

/// Counts a failed join (join, WHIP, WHEP) in `mcu_join_failures_total{reason}`.
pub(crate) fn counted(result: Result<Response, ApiError>) -> Result<Response, ApiError> {
    if let Err(e) = &result {
        metrics::join_failed(e.reason);
    }
    result
}

/// See [`offer_parts`].
type OfferParts = (HashMap<String, String>, Option<String>, Option<u64>, Authorization, Caller, BodyStream);

/// Who sent a request: its TCP peer, and the cluster's forwarding header if any (see
/// [`Caller::ip`]).
pub(crate) struct Caller {
    addr: Option<SocketAddr>,
    forwarded: Option<String>,
}

impl Caller {
    /// The client's address: for a request another node of the cluster forwarded
    /// (its signed header verifies), the client that node named; else the TCP peer.
    fn ip(&self, api: &Api) -> Option<std::net::IpAddr> {
        let cluster = api.rooms.context().cluster.as_ref();
        match self.forwarded.as_deref().zip(cluster).and_then(|(value, cluster)| cluster.verify(value)) {
            Some(forwarded) => forwarded.client,
            None => self.addr.map(|a| a.ip()),
        }
    }
}

/// What an offer `POST` (join, WHIP, WHEP) carries besides its path: the query, the
/// content type and length, the token, the client's address, the body.
fn offer_parts() -> impl Filter<Extract = OfferParts, Error = warp::Rejection> + Clone {
    warp::query::<HashMap<String, String>>()
        .and(warp::header::optional::<String>("content-type"))
        .and(warp::header::optional::<u64>("content-length"))
        .and(warp::header::optional::<String>("authorization"))
        .and(
            warp::ext::optional::<http_server::ClientAddr>()
                .and(warp::header::optional::<String>(crate::cluster::signature::HEADER))
                .map(|addr: Option<http_server::ClientAddr>, forwarded| Caller { addr: addr.map(|c| c.0), forwarded }),
        )
        .and(body_stream())
}

/// The parts of a join request besides its body.
struct JoinHttp {
    room: String,
    query: HashMap<String, String>,
    content_type: Option<String>,
    content_length: Option<u64>,
    authorization: Authorization,
    remote: Caller,
}

/// What every offer `POST` (join, WHIP, WHEP) checks before the offer itself: the
/// room name, a valid token for the room, the client's join rate, the content type
/// and size. Returns the room, the caller's access and the offer.
async fn read_offer(
    request: &JoinHttp,
    body: BodyStream,
    api: &Shared,
) -> Result<(RoomName, Access, String), ApiError> {
    let room = room_name(&request.room)?;
    let access = api.authorize(request.authorization.as_deref(), Some(room.as_str()), &[])?;
    if let Some(ip) = request.remote.ip(api) {
        api.joins.check(ip)?;
    }
    let mime = request.content_type.as_deref().and_then(|c| c.split(';').next()).map(|m| m.trim().to_ascii_lowercase());
    if mime.as_deref() != Some("application/sdp") {
        return Err(ApiError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "Content-Type must be application/sdp"));
    }
    let limit = api.rooms.context().config.server.max_sdp_bytes;
    if request.content_length.is_some_and(|len| len > limit) {
        return Err(ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, format!("SDP offer larger than {limit} bytes")));
    }
    let offer = read_body(body, limit, "SDP offer").await?;
    let offer =
        String::from_utf8(offer).map_err(|_| ApiError::new(StatusCode::BAD_REQUEST, "SDP offer is not UTF-8"))?;
    Ok((room, access, offer))
}

async fn join(request: JoinHttp, body: BodyStream, api: Shared) -> Result<Response, ApiError> {
    let (room, access, offer) = read_offer(&request, body, &api).await?;
    // Sending needs `publish`, receiving `subscribe`.
    let summary = inspect_offer(&offer).map_err(|e| ApiError::from(crate::room::JoinError::Offer(e)))?;
    let directions = [summary.audio, summary.video_direction()];
    let mut needed = Vec::new();
    if directions.iter().flatten().any(|d| d.publishes()) {
        needed.push(Permission::Publish);
    }
    // Receiving, or being in the room at all (an all-inactive offer), needs
    // `subscribe`.
    if directions.iter().flatten().any(|d| d.receives()) || needed.is_empty() {
        needed.push(Permission::Subscribe);
    }
    access.require(Some(room.as_str()), &needed)?;
    let name = display_name(&request.query)?;
    let quality = participants::quality_param(&request.query, &api.rooms.context().config.media.tiers())?;
    let owner = match access {
        Access::Open => None,
        Access::Token(claims) => Some(claims.sub),
    };
    let answer = api.rooms.join(&room, JoinRequest { offer, name, owner, quality, role: Role::Participant }).await?;
    let location = format!("/rooms/{room}/participants/{}", answer.id);
    warp::http::Response::builder()
        .status(StatusCode::CREATED)
        .header(header::CONTENT_TYPE, "application/sdp")
        .header(header::LOCATION, location)
        .body(answer.answer.into())
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

/// The optional `?name=`, trimmed and checked.
pub(crate) fn display_name(query: &HashMap<String, String>) -> Result<Option<String>, ApiError> {
    match query.get("name").map(|n| n.trim()) {
        Some(n) if n.chars().count() > MAX_NAME_CHARS => {
            Err(ApiError::new(StatusCode::BAD_REQUEST, format!("name longer than {MAX_NAME_CHARS} characters")))
        }
        Some(n) if n.chars().any(char::is_control) => {
            Err(ApiError::new(StatusCode::BAD_REQUEST, "name contains control characters"))
        }
        Some("") | None => Ok(None),
        Some(n) => Ok(Some(n.to_owned())),
    }
}

/// A request body read whole, at most a limit (chunked or not).
pub(crate) type BodyStream = std::pin::Pin<Box<dyn Stream<Item = Result<bytes::Bytes, warp::Error>> + Send>>;

/// The body of a request as a stream (for [`read_body`]).
pub(crate) fn body_stream() -> impl Filter<Extract = (BodyStream,), Error = warp::Rejection> + Clone {
    fn boxed<S, B>(body: S) -> BodyStream
    where
        S: Stream<Item = Result<B, warp::Error>> + Send + 'static,
        B: Buf,
    {
        Box::pin(body.map(|chunk| {
            chunk.map(|mut b| {
                let n = b.remaining();
                b.copy_to_bytes(n)
            })
        }))
    }
    warp::body::stream().map(boxed)
}

/// Reads a body of at most `limit` bytes, whatever its transfer encoding; `what` names
/// it in errors ("SDP offer", "JSON body").
/// Reads a small JSON request body (at most 16 KiB); `415` unless it is declared
/// `application/json`.
/// Parses a JSON request body; `400` naming what is wrong.
pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("invalid JSON body: {e}")))
}

pub(crate) async fn read_json(content_type: Option<&str>, body: BodyStream) -> Result<Vec<u8>, ApiError> {
    let json = content_type.and_then(|c| c.split(';').next()).is_some_and(|m| m.trim() == "application/json");
    if !json {
        return Err(ApiError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "Content-Type must be application/json"));
    }
    read_body(body, 16 * 1024, "JSON body").await
}

pub(crate) async fn read_body(mut body: BodyStream, limit: u64, what: &str) -> Result<Vec<u8>, ApiError> {
    let mut data = Vec::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("cannot read body: {e}")))?;
        if (data.len() + chunk.len()) as u64 > limit {
            return Err(ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, format!("{what} larger than {limit} bytes")));
        }
        data.extend_from_slice(&chunk);
    }
    Ok(data)
}

async fn leave(room: String, id: String, authorization: Authorization, api: Shared) -> Result<Response, ApiError> {
    let room = room_name(&room)?;
    // A participant removes itself (same token identity); a moderator or an admin
    // removes anyone.
    let by = match api.authorize(authorization.as_deref(), Some(room.as_str()), &[])? {
        Access::Token(claims) if !claims.allows(Permission::Moderate) => Some(claims.sub),
        _ => None,
    };
    api.rooms.leave(&room, ParticipantId::from_path(&id), by).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn list_rooms(authorization: Authorization, api: Shared) -> Result<Response, ApiError> {
    api.authorize(authorization.as_deref(), None, &[Permission::Admin])?;
    match api.rooms.context().cluster.clone() {
        Some(cluster) => Ok(cluster::list_rooms(&api, &cluster).await),
        None => Ok(warp::reply::json(&api.rooms.list()).into_response()),
    }
}

/// `GET /nodes` (admin): the cluster's live nodes; a single node without Redis.
async fn list_nodes(authorization: Authorization, api: Shared) -> Result<Response, ApiError> {
    api.authorize(authorization.as_deref(), None, &[Permission::Admin])?;
    match api.rooms.context().cluster.clone() {
        Some(cluster) => cluster::list_nodes(&cluster).await,
        None => Err(ApiError::new(StatusCode::NOT_FOUND, "not a cluster (no MCU_REDIS_URL)")),
    }
}

async fn room_state(room: String, authorization: Authorization, api: Shared) -> Result<Response, ApiError> {
    let room = room_name(&room)?;
    api.authorize(authorization.as_deref(), Some(room.as_str()), &[])?;
    let state = api.rooms.state(&room).await.ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "unknown room"))?;
    Ok(warp::reply::json(&state).into_response())
}

fn ice_servers(authorization: Authorization, api: Shared) -> Result<Response, ApiError> {
    let access = api.authorize(authorization.as_deref(), None, &[])?;
    let turn = &api.rooms.context().config.turn;
    let doc = crate::turn::ice_servers(turn, access.identity(), crate::auth::unix_now());
    let mut response = warp::reply::json(&doc).into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-store"));
    Ok(response)
}

async fn metrics_text(authorization: Authorization, api: Shared) -> Result<Response, ApiError> {
    api.authorize(authorization.as_deref(), None, &[Permission::Admin])?;
    let (room_count, participants) = api.rooms.counts();
    Ok(warp::reply::with_header(
        metrics::render(
            room_count,
            participants,
            metrics::CpuLoad { budget: api.rooms.cpu_budget(), estimated: api.rooms.estimated_cores() },
        ),
        header::CONTENT_TYPE,
        "text/plain; version=0.0.4",
    )
    .into_response())
}
