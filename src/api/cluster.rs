//! The API in a cluster: a request for a room another node owns is forwarded to that
//! node and its answer relayed (streamed, so the event stream works too), and the
//! cluster-wide listings (`GET /rooms` with `"node"`, `GET /nodes`).

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::{HeaderMap, Method, StatusCode, header};
use warp::reply::{Reply, Response};

use super::{ApiError, Shared};
use crate::cluster::placement::ClusterRoom;
use crate::cluster::{Cluster, ClusterError, Placement, signature};

/// Largest body forwarded (an offer is at most 64 KiB; the owner applies its own
/// limits).
const FORWARDED_BODY_LIMIT: u64 = 1 << 20;
/// How long a forwarded request's upstream may go silent: longer than the event
/// stream's 15 s keep-alive, shorter than forever (a node lost without a reset).
const UPSTREAM_SILENCE: Duration = Duration::from_secs(45);

/// The room a path is about and whether the request may create it (a join or a WHIP
/// publish); `None` for paths that are not about one room.
fn room_of(path: &str, method: &Method) -> Option<(String, bool)> {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match segments.as_slice() {
        ["rooms", room, "join"] => Some((room.to_string(), method == Method::POST)),
        ["rooms", room, ..] if !room.is_empty() => Some((room.to_string(), false)),
        ["whip", room] => Some((room.to_string(), method == Method::POST)),
        ["whip" | "whep", room, ..] if !room.is_empty() => Some((room.to_string(), false)),
        _ => None,
    }
}

/// What the forwarding filter decided for a request that is not answered here.
enum Route {
    /// Relay it to the owner at this base URL.
    To(String),
    /// Answer with this error (a room that cannot be placed right now).
    Refuse(ApiError),
}

/// Decides where a request is answered; rejects (so the local routes answer it)
/// when that is here.
async fn decide(
    api: Shared,
    cluster: Arc<Cluster>,
    path: warp::path::FullPath,
    method: Method,
    headers: HeaderMap,
) -> Result<Route, warp::Rejection> {
    let here = || Err(warp::reject::not_found());
    // Bad names are refused here, as a single node would.
    let Some((room, create)) =
        room_of(path.as_str(), &method).filter(|(room, _)| crate::room::RoomName::parse(room).is_ok())
    else {
        return here();
    };
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    // Forwarded by another node of the cluster: answered here, never forwarded again.
    // A new room placed here is claimed first (the placement may be stale).
    if header(signature::HEADER).and_then(|v| cluster.verify(v)).is_some() {
        return match create {
            true => match cluster.accept(&room).await {
                Ok(false) => Ok(Route::Refuse(
                    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the room moved to another node; try again")
                        .retry_after(1),
                )),
                _ => here(),
            },
            false => here(),
        };
    }
    // Redis away: answer where the request lands, without waiting on it.
    if !cluster.reachable() {
        return here();
    }
    // A new room is placed only for a caller who may join it (the local routes
    // answer the others with their 401/403/415).
    if create {
        let authorized = api.authorize(header("authorization"), Some(&room), &[]).is_ok();
        let sdp = header("content-type").is_some_and(|c| c.trim().to_ascii_lowercase().starts_with("application/sdp"));
        if !authorized || !sdp {
            return here();
        }
    }
    match cluster.place(&room, create).await {
        Ok(Placement::Local) => here(),
        Ok(Placement::Remote { url, .. }) => Ok(Route::To(url)),
        Err(ClusterError::Store(e)) => {
            tracing::warn!(room, error = %e, "cluster store unavailable: answering here");
            here()
        }
        Err(e) => Ok(Route::Refuse(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()).retry_after(2))),
    }
}

/// Forwards requests for rooms owned elsewhere; rejects (so the local routes answer)
/// everything else.
pub(super) fn forward(api: Shared, cluster: Arc<Cluster>) -> BoxedFilter<(Response,)> {
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(2))
        .read_timeout(UPSTREAM_SILENCE)
        .no_proxy()
        .build()
        .unwrap_or_default();
    let join_timeout =
        Duration::from_millis(api.rooms.context().config.server.join_timeout_ms) + Duration::from_secs(5);
    let deciding = {
        let cluster = Arc::clone(&cluster);
        move |path, method, headers| decide(Arc::clone(&api), Arc::clone(&cluster), path, method, headers)
    };
    warp::path::full()
        .and(warp::method())
        .and(warp::header::headers_cloned())
        .and_then(deciding)
        .and(warp::path::full())
        .and(warp::method())
        .and(warp::header::headers_cloned())
        .and(warp::query::raw().or(warp::any().map(String::new)).unify())
        .and(warp::ext::optional::<super::http_server::ClientAddr>())
        .and(super::body_stream())
        .then(
            move |route: Route,
                  path: warp::path::FullPath,
                  method,
                  headers,
                  query: String,
                  client: Option<super::http_server::ClientAddr>,
                  body: super::BodyStream| {
                let (http, cluster) = (http.clone(), Arc::clone(&cluster));
                async move {
                    let url = match route {
                        Route::To(url) => url,
                        Route::Refuse(refused) => return refused.into_response(),
                    };
                    let target = if query.is_empty() {
                        format!("{url}{}", path.as_str())
                    } else {
                        format!("{url}{}?{query}", path.as_str())
                    };
                    let body = match super::read_body(body, FORWARDED_BODY_LIMIT, "request body").await {
                        Ok(body) => bytes::Bytes::from(body),
                        Err(e) => return e.into_response(),
                    };
                    let Some(signed) = cluster.sign(client.map(|c| c.0.ip())) else {
                        return ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the cluster is starting; try again")
                            .retry_after(2)
                            .into_response();
                    };
                    let upstream = Upstream { method, target: &target, headers, body, signed, timeout: join_timeout };
                    super::reply(relay(&http, upstream).await)
                }
            },
        )
        .boxed()
}

/// A request on its way to the room's node.
struct Upstream<'a> {
    method: Method,
    target: &'a str,
    headers: HeaderMap,
    body: bytes::Bytes,
    /// This node's signed forwarding header.
    signed: String,
    /// How long the owner may take to answer (a join negotiates).
    timeout: Duration,
}

async fn relay(http: &reqwest::Client, upstream: Upstream<'_>) -> Result<Response, ApiError> {
    let mut request = http.request(upstream.method, upstream.target).body(upstream.body);
    for (name, value) in &upstream.headers {
        let hop = name == header::HOST || name == header::CONTENT_LENGTH || name == header::CONNECTION;
        if !hop && name.as_str() != signature::HEADER {
            request = request.header(name, value);
        }
    }
    let sent = tokio::time::timeout(upstream.timeout, request.header(signature::HEADER, upstream.signed).send()).await;
    let response = match sent {
        Ok(Ok(response)) => response,
        Ok(Err(e)) => {
            tracing::warn!(target = upstream.target, error = %e, "forwarding to the room's node failed");
            return Err(ApiError::new(StatusCode::BAD_GATEWAY, "the room's node did not answer"));
        }
        Err(_) => {
            tracing::warn!(target = upstream.target, "the room's node did not answer in time");
            return Err(ApiError::new(StatusCode::GATEWAY_TIMEOUT, "the room's node did not answer in time"));
        }
    };
    let status = response.status();
    let upstream_headers = response.headers().clone();
    // Streamed through a channel (the reply's body must be Sync, reqwest's is not);
    // the pump ends when the client goes away, not only at the next chunk.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(16);
    tokio::spawn(async move {
        let mut chunks = response.bytes_stream();
        loop {
            let chunk = tokio::select! {
                chunk = chunks.next() => chunk,
                _ = tx.closed() => return,
            };
            let Some(chunk) = chunk else { return };
            if tx.send(chunk.map_err(std::io::Error::other)).await.is_err() {
                return;
            }
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) });
    let mut reply = warp::reply::stream(stream).into_response();
    *reply.status_mut() = status;
    for (name, value) in &upstream_headers {
        // Hop-by-hop headers stay; CORS headers are this node's own layer's to add.
        let hop = name == header::CONNECTION || name == header::TRANSFER_ENCODING || name == header::CONTENT_LENGTH;
        if !hop && !name.as_str().starts_with("access-control-") {
            reply.headers_mut().append(name, value.clone());
        }
    }
    Ok(reply)
}

/// `GET /rooms` in a cluster: every node's rooms, each with its `"node"` (this node's
/// own as they are now, the others' as of their last refresh, at most 2 s old).
pub(super) async fn list_rooms(api: &Shared, cluster: &Cluster) -> Response {
    #[derive(serde::Serialize)]
    struct Listed<'a> {
        #[serde(flatten)]
        room: &'a ClusterRoom,
        node: &'a str,
    }
    let local: Vec<ClusterRoom> = api
        .rooms
        .list()
        .into_iter()
        .map(|r| ClusterRoom { room: r.room, participants: r.participants, recording: r.recording })
        .collect();
    let nodes = match cluster.nodes().await {
        Ok(nodes) => nodes,
        Err(e) => return ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()).retry_after(2).into_response(),
    };
    let mut rooms: Vec<Listed> = local.iter().map(|room| Listed { room, node: cluster.id() }).collect();
    for node in nodes.iter().filter(|n| n.node != cluster.id()) {
        rooms.extend(node.room_list.iter().map(|room| Listed { room, node: &node.node }));
    }
    rooms.sort_by(|a, b| a.room.room.cmp(&b.room.room));
    warp::reply::json(&rooms).into_response()
}

/// `GET /nodes`: the live nodes.
pub(super) async fn list_nodes(cluster: &Cluster) -> Result<Response, ApiError> {
    #[derive(serde::Serialize)]
    struct Node<'a> {
        node: &'a str,
        url: &'a str,
        rooms: usize,
        participants: usize,
        load: f64,
    }
    let nodes = cluster.nodes().await.map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    let listed: Vec<Node> = nodes
        .iter()
        .map(|n| Node { node: &n.node, url: &n.url, rooms: n.rooms, participants: n.participants, load: n.load })
        .collect();
    Ok(warp::reply::json(&listed).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_room_of_a_path_and_whether_it_may_create_it() {
        assert_eq!(room_of("/rooms/a/join", &Method::POST), Some(("a".into(), true)));
        assert_eq!(room_of("/rooms/a", &Method::GET), Some(("a".into(), false)));
        assert_eq!(room_of("/rooms/a/participants/x", &Method::DELETE), Some(("a".into(), false)));
        assert_eq!(room_of("/whip/a", &Method::POST), Some(("a".into(), true)));
        assert_eq!(room_of("/whep/a", &Method::POST), Some(("a".into(), false)), "a viewer needs a room");
        assert_eq!(room_of("/whip/a/res", &Method::DELETE), Some(("a".into(), false)));
        assert_eq!(room_of("/rooms", &Method::GET), None);
        assert_eq!(room_of("/nodes", &Method::GET), None);
        assert_eq!(room_of("/recordings/x.webm", &Method::GET), None);
    }
}
