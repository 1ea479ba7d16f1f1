//! The browser client: static files embedded in the binary, so `make run` serves a
//! working page with nothing else installed and no network beyond this server.

use std::path::PathBuf;

use warp::Filter;
use warp::http::header;
use warp::reply::{Reply, Response};

/// One embedded file of `web/`.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static str,
}

/// Every file of the page. Adding a file to `web/` means adding it here.
const ASSETS: &[Asset] = &[
    Asset { path: "index.html", content_type: "text/html; charset=utf-8", body: include_str!("../../web/index.html") },
    Asset { path: "app.js", content_type: "text/javascript; charset=utf-8", body: include_str!("../../web/app.js") },
    Asset {
        path: "stats.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../../web/stats.js"),
    },
    Asset {
        path: "media.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../../web/media.js"),
    },
    Asset {
        path: "quality.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../../web/quality.js"),
    },
    Asset {
        path: "events.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../../web/events.js"),
    },
    Asset { path: "room.js", content_type: "text/javascript; charset=utf-8", body: include_str!("../../web/room.js") },
    Asset {
        path: "local.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../../web/local.js"),
    },
    Asset {
        path: "recordings.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../../web/recordings.js"),
    },
    Asset { path: "live.js", content_type: "text/javascript; charset=utf-8", body: include_str!("../../web/live.js") },
    Asset { path: "style.css", content_type: "text/css; charset=utf-8", body: include_str!("../../web/style.css") },
    Asset { path: "favicon.svg", content_type: "image/svg+xml", body: include_str!("../../web/favicon.svg") },
];

/// `GET /` and `GET /{file}` for the page's files. With `web_dir` set, the files are
/// read from disk on every request instead (for working on the page).
pub fn routes(web_dir: Option<PathBuf>) -> warp::filters::BoxedFilter<(Response,)> {
    match web_dir {
        Some(dir) => {
            let index = warp::path::end().and(warp::get()).and(warp::fs::file(dir.join("index.html")));
            index.or(warp::get().and(warp::fs::dir(dir))).unify().map(Reply::into_response).boxed()
        }
        None => {
            let index = warp::path::end().and(warp::get()).map(|| embedded("index.html"));
            let file = warp::path::param::<String>().and(warp::path::end()).and(warp::get()).and_then(
                |name: String| async move {
                    if ASSETS.iter().any(|a| a.path == name) {
                        Ok(embedded(&name))
                    } else {
                        Err(warp::reject::not_found())
                    }
                },
            );
            index.or(file).unify().boxed()
        }
    }
}

fn embedded(name: &str) -> Response {
    let asset = ASSETS.iter().find(|a| a.path == name).expect("asset listed in ASSETS");
    let mut response = warp::reply::with_header(asset.body, header::CONTENT_TYPE, asset.content_type).into_response();
    let headers = response.headers_mut();
    // The page is tied to this server's API version: always revalidate.
    headers.insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-cache"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, header::HeaderValue::from_static("nosniff"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_is_non_empty_and_typed() {
        for asset in ASSETS {
            assert!(!asset.body.is_empty(), "{} is empty", asset.path);
            assert!(asset.content_type.contains('/'), "{} has no MIME type", asset.path);
        }
    }

    #[test]
    fn page_loads_nothing_from_other_hosts() {
        for asset in ASSETS {
            for needle in ["http://", "https://", "//cdn", "@import url("] {
                let outside = asset.body.match_indices(needle).any(|(i, _)| {
                    let rest = &asset.body[i..];
                    // SVG namespaces are identifiers, not fetches.
                    !rest.starts_with("http://www.w3.org/")
                });
                assert!(!outside, "{} references another host ({needle})", asset.path);
            }
        }
    }
}
