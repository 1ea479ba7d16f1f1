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
use crate::cluster::{Cluster, ClusterError, Placement};

/// Marks a request one node forwarded to another: it is answered where it lands,
/// never forwarded again.
const FORWARDED: &str = "x-mcu-forwarded";

/// Largest body forwarded (an offer is at most 64 KiB; the owner applies its own
/// limits).
const FORWARDED_BODY_LIMIT: u64 = 1 << 20;

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

/// Forwards requests for rooms owned elsewhere; rejects (so the local routes answer)
/// everything else.
pub(super) fn forward(cluster: Arc<Cluster>) -> BoxedFilter<(Response,)> {
    let http = reqwest::Client::builder().connect_timeout(Duration::from_secs(2)).build().unwrap_or_default();
    let decide = {
        let cluster = Arc::clone(&cluster);
        move |path: warp::path::FullPath, method: Method, headers: HeaderMap| {
            let cluster = Arc::clone(&cluster);
            async move {
                let not_ours = || Err(warp::reject::not_found());
                if headers.contains_key(FORWARDED) {
                    return not_ours();
                }
                // Bad names are refused here, as a single node would.
                let Some((room, create)) =
                    room_of(path.as_str(), &method).filter(|(room, _)| crate::room::RoomName::parse(room).is_ok())
                else {
                    return not_ours();
                };
                match cluster.place(&room, create).await {
                    Ok(Placement::Local) => not_ours(),
                    Ok(Placement::Remote { url, .. }) => Ok(Ok(url)),
                    Err(ClusterError::Store(e)) => {
                        tracing::warn!(room, error = %e, "cluster store unavailable: answering here");
                        not_ours()
                    }
                    // Not answered here either: a room created here would split it.
                    Err(e) => Ok(Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()).retry_after(2))),
                }
            }
        }
    };
    warp::path::full()
        .and(warp::method())
        .and(warp::header::headers_cloned())
        .and_then(decide)
        .and(warp::path::full())
        .and(warp::method())
        .and(warp::header::headers_cloned())
        .and(warp::query::raw().or(warp::any().map(String::new)).unify())
        .and(super::body_stream())
        .then(
            move |owner: Result<String, ApiError>,
                  path: warp::path::FullPath,
                  method,
                  headers,
                  query: String,
                  body: super::BodyStream| {
                let (http, node) = (http.clone(), cluster.id().to_owned());
                async move {
                    let url = match owner {
                        Ok(url) => url,
                        Err(refused) => return refused.into_response(),
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
                    super::reply(relay(&http, &node, method, &target, headers, body).await)
                }
            },
        )
        .boxed()
}

async fn relay(
    http: &reqwest::Client,
    node: &str,
    method: Method,
    target: &str,
    headers: HeaderMap,
    body: bytes::Bytes,
) -> Result<Response, ApiError> {
    let mut request = http.request(method, target).body(body);
    for (name, value) in &headers {
        if name != header::HOST && name != header::CONTENT_LENGTH && name != header::CONNECTION {
            request = request.header(name, value);
        }
    }
    let upstream = request
        .header(FORWARDED, node)
        .send()
        .await
        .map_err(|e| ApiError::new(StatusCode::BAD_GATEWAY, format!("the room's node did not answer: {e}")))?;
    let status = upstream.status();
    let upstream_headers = upstream.headers().clone();
    // Streamed through a channel: the reply's body must be Sync, reqwest's is not.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(16);
    tokio::spawn(async move {
        let mut chunks = upstream.bytes_stream();
        while let Some(chunk) = chunks.next().await {
            if tx.send(chunk.map_err(std::io::Error::other)).await.is_err() {
                return;
            }
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) });
    let mut response = warp::reply::stream(stream).into_response();
    *response.status_mut() = status;
    for (name, value) in &upstream_headers {
        // Hop-by-hop headers stay; CORS headers are this node's own layer's to add.
        let hop = name == header::CONNECTION || name == header::TRANSFER_ENCODING || name == header::CONTENT_LENGTH;
        if !hop && !name.as_str().starts_with("access-control-") {
            response.headers_mut().append(name, value.clone());
        }
    }
    Ok(response)
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
    let nodes = cluster.nodes().await.unwrap_or_default();
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
