//! The browser client: served by the server itself with the right types, and driven
//! end to end in headless Chromium (tests/browser/e2e.mjs, playwright-core).

mod common;

use std::path::Path;
use std::process::Command;

use common::Server;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_is_served_embedded_with_its_content_types() {
    let server = Server::start("");
    for (path, content_type) in [
        ("/", "text/html; charset=utf-8"),
        ("/index.html", "text/html; charset=utf-8"),
        ("/app.js", "text/javascript; charset=utf-8"),
        ("/stats.js", "text/javascript; charset=utf-8"),
        ("/media.js", "text/javascript; charset=utf-8"),
        ("/quality.js", "text/javascript; charset=utf-8"),
        ("/style.css", "text/css; charset=utf-8"),
        ("/favicon.svg", "image/svg+xml"),
    ] {
        let r = reqwest::get(format!("{}{path}", server.url)).await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(r.headers()["content-type"], content_type, "{path}");
        assert_eq!(r.headers()["x-content-type-options"], "nosniff", "{path}");
        assert!(!r.text().await.unwrap().is_empty(), "{path}");
    }
    let page = reqwest::get(format!("{}/", server.url)).await.unwrap().text().await.unwrap();
    for reference in ["/app.js", "/stats.js", "/media.js", "/quality.js", "/style.css"] {
        assert!(page.contains(reference), "the page loads {reference}");
    }
    let r = reqwest::get(format!("{}/missing.js", server.url)).await.unwrap();
    assert_eq!(r.status(), 404);
}

/// Two Chromium pages join through the UI, see the composite and hear the mix; one
/// leaves; a receive-only page still watches; nothing is fetched from other hosts.
/// The screenshot of the call is kept in `target/test-artifacts/browser/call.png`.
#[test]
fn browsers_join_watch_and_leave_through_the_page() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let e2e = root.join("tests/browser");
    assert!(
        e2e.join("node_modules/playwright-core").is_dir(),
        "playwright-core is not installed: run `make deps` (npm ci in tests/browser)"
    );
    assert!(Path::new("/usr/bin/chromium").exists(), "Chromium is not installed: run `make deps`");
    let artifacts = root.join("target/test-artifacts/browser");
    let _ = std::fs::remove_dir_all(&artifacts);
    std::fs::create_dir_all(&artifacts).unwrap();

    // A 640x360 composite keeps two Chromium pages (each encoding a fake camera and
    // decoding the mix) and the server real-time on a 2-core machine.
    let server = Server::start("[media]\nwidth = 640\nheight = 360\n");
    let status = Command::new("node")
        .arg("e2e.mjs")
        .arg(&server.url)
        .arg(&artifacts)
        .arg("640x360")
        .current_dir(&e2e)
        .status()
        .expect("run node");
    assert!(status.success(), "browser end-to-end check failed (screenshots in {})", artifacts.display());
    let shot = std::fs::metadata(artifacts.join("call.png")).expect("screenshot of the call");
    assert!(shot.len() > 10_000, "screenshot is a real picture ({} bytes)", shot.len());
}
