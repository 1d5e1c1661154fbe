//! Security headers: the app's content security policy (with the hash of
//! the page's own inline script), nosniff, no referrer, and a cache policy
//! that revalidates every file, so a cached script never meets a newer wasm.

mod common;
mod raw;

use std::path::{Path, PathBuf};

use base64::Engine as _;
use common::{address, Broker};
use raw::{connect_from, request};
use sha2::{Digest, Sha256};

/// The real app page.
fn index_html() -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../www/index.html");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The CSP source for the inline script of `html`, found independently of
/// the broker's own parser: the text between `<script>` and `</script>`.
fn script_hash(html: &str) -> String {
    let start = html.find("<script>").expect("an inline <script>") + "<script>".len();
    let end = start + html[start..].find("</script>").expect("</script>");
    let digest = Sha256::digest(&html.as_bytes()[start..end]);
    format!(
        "'sha256-{}'",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

/// A www folder like the built app's: the page given, a script, a style
/// sheet and a wasm package.
fn app_files(www: &Path, index: &str) {
    std::fs::write(www.join("index.html"), index).unwrap();
    std::fs::write(www.join("app.js"), "export {};\n").unwrap();
    std::fs::write(www.join("style.css"), "body {}\n").unwrap();
    std::fs::create_dir_all(www.join("pkg")).unwrap();
    std::fs::write(www.join("pkg/peer_wasm.js"), "export default 1;\n").unwrap();
    std::fs::write(www.join("pkg/peer_wasm_bg.wasm"), b"\0asm\x01\0\0\0").unwrap();
}

#[tokio::test]
async fn every_app_response_carries_the_policy_with_the_pages_script_hash() {
    let index = index_html();
    let hash = script_hash(&index);
    let broker = Broker::start_with(|c| app_files(&c.www, &index)).await;
    let mut conn = connect_from("127.0.0.1", broker.addr).await;
    let share_link = format!("/{}", address("x"));
    for path in [
        "/",
        share_link.as_str(),
        "/app.js",
        "/style.css",
        "/pkg/peer_wasm.js",
        "/pkg/peer_wasm_bg.wasm",
    ] {
        let res = request(&mut conn, "GET", path, &[]).await;
        assert_eq!(res.status, 200, "{path}: {res:?}");
        let csp = res.header("content-security-policy").unwrap_or_default();
        for directive in [
            "default-src 'none'",
            &format!("script-src 'self' 'wasm-unsafe-eval' {hash}"),
            "connect-src 'self' blob:",
            "worker-src blob:",
            "frame-ancestors 'none'",
            "object-src 'none'",
            "base-uri 'none'",
        ] {
            assert!(
                csp.split(';').any(|d| d.trim() == directive),
                "{path}: no `{directive}` in {csp:?}"
            );
        }
        assert_eq!(
            res.header("x-content-type-options"),
            Some("nosniff"),
            "{path}"
        );
        assert_eq!(res.header("referrer-policy"), Some("no-referrer"), "{path}");
        assert_eq!(res.header("cache-control"), Some("no-cache"), "{path}");
        assert!(res.header("last-modified").is_some(), "{path}: {res:?}");
    }
    // Instantiating wasm from a fetch needs its type.
    let wasm = request(&mut conn, "GET", "/pkg/peer_wasm_bg.wasm", &[]).await;
    assert_eq!(wasm.header("content-type"), Some("application/wasm"));
    // Revalidation is cheap: unchanged files answer 304 without a body.
    let since = wasm.header("last-modified").unwrap().to_owned();
    let again = request(
        &mut conn,
        "GET",
        "/pkg/peer_wasm_bg.wasm",
        &[("if-modified-since", &since)],
    )
    .await;
    assert_eq!(again.status, 304, "{again:?}");
    assert_eq!(again.header("cache-control"), Some("no-cache"));
}

#[tokio::test]
async fn the_hash_follows_the_page() {
    let page = "<!doctype html><script>console.log(\"v2\")</script>\n";
    let broker = Broker::start_with(|c| app_files(&c.www, page)).await;
    let res = broker.get("/").await;
    let csp = res.header("content-security-policy").unwrap_or_default();
    assert!(csp.contains(&script_hash(page)), "{csp}");
    assert!(!csp.contains(&script_hash(&index_html())), "{csp}");
}

#[tokio::test]
async fn other_responses_and_errors_are_nosniff_too() {
    let broker = Broker::start().await;
    for (path, status) in [
        ("/healthz", 200),
        ("/metrics", 200),
        ("/missing.js", 404),
        ("/ws", 400),
    ] {
        let res = broker.get(path).await;
        assert_eq!(res.status, status, "{path}: {res:?}");
        assert_eq!(
            res.header("x-content-type-options"),
            Some("nosniff"),
            "{path}"
        );
        assert_eq!(res.header("referrer-policy"), Some("no-referrer"), "{path}");
    }
}
