//! Security headers: the app's content security policy (with the hash of
//! the page's own inline script), nosniff, no referrer, and a cache policy
//! that pairs a page only with scripts and wasm of its own release: the
//! page revalidates, its release's files are cached for good.

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

/// The release folder the page's references point into: `/r/<release>/`.
fn release_of(page: &str) -> String {
    let at = page.find("\"/r/").expect("a reference into a release") + 1;
    let end = at + "/r/".len() + 16 + 1;
    page[at..end].to_owned()
}

#[tokio::test]
async fn every_app_response_carries_the_policy_with_the_pages_script_hash() {
    let broker = Broker::start_with(|c| app_files(&c.www, &index_html())).await;
    let mut conn = connect_from("127.0.0.1", broker.addr).await;
    let page = request(&mut conn, "GET", "/", &[]).await;
    let page = String::from_utf8(page.body).unwrap();
    // The page as served: its references (in the inline script too) point
    // into its release, and the hash is of that text.
    let hash = script_hash(&page);
    let release = release_of(&page);
    let share_link = format!("/{}", address("x"));
    let released: Vec<String> = [
        "app.js",
        "style.css",
        "pkg/peer_wasm.js",
        "pkg/peer_wasm_bg.wasm",
    ]
    .iter()
    .map(|f| format!("{release}{f}"))
    .collect();
    let mut paths = vec![
        "/",
        "/index.html",
        share_link.as_str(),
        "/app.js",
        "/style.css",
        "/pkg/peer_wasm.js",
        "/pkg/peer_wasm_bg.wasm",
    ];
    paths.extend(released.iter().map(String::as_str));
    for path in paths {
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
    }
}

#[tokio::test]
async fn a_page_is_paired_only_with_its_own_release_which_is_cached_for_good() {
    let broker = Broker::start_with(|c| app_files(&c.www, &index_html())).await;
    let mut conn = connect_from("127.0.0.1", broker.addr).await;

    // The page revalidates on every open: a 304 while the release is the same.
    let first = request(&mut conn, "GET", "/", &[]).await;
    assert_eq!(first.header("cache-control"), Some("no-cache"));
    let etag = first.header("etag").expect("an ETag").to_owned();
    let again = request(&mut conn, "GET", "/", &[("if-none-match", &etag)]).await;
    assert_eq!(again.status, 304, "{again:?}");
    assert!(again.body.is_empty());
    let page = String::from_utf8(first.body).unwrap();
    let release = release_of(&page);
    for file in [
        "app.js",
        "style.css",
        "pkg/peer_wasm.js",
        "pkg/peer_wasm_bg.wasm",
    ] {
        assert!(
            page.contains(&format!("\"{release}{file}\"")),
            "{file}: {page}"
        );
        assert!(!page.contains(&format!("\"/{file}\"")), "{file}: {page}");
    }

    // Released files are the files on disk, cached without revalidation.
    for file in [
        "app.js",
        "style.css",
        "pkg/peer_wasm.js",
        "pkg/peer_wasm_bg.wasm",
    ] {
        let res = request(&mut conn, "GET", &format!("{release}{file}"), &[]).await;
        assert_eq!(res.status, 200, "{file}: {res:?}");
        assert_eq!(
            res.body,
            std::fs::read(broker.www.join(file)).unwrap(),
            "{file}"
        );
        let cache = res.header("cache-control").unwrap_or_default();
        assert!(
            cache.contains("immutable") && cache.contains("max-age=31536000"),
            "{file}: {cache}"
        );
    }
    let wasm = request(
        &mut conn,
        "GET",
        &format!("{release}pkg/peer_wasm_bg.wasm"),
        &[],
    )
    .await;
    // Instantiating wasm from a fetch needs its type.
    assert_eq!(wasm.header("content-type"), Some("application/wasm"));
    let module = request(&mut conn, "GET", &format!("{release}app.js"), &[]).await;
    assert!(module
        .header("content-type")
        .unwrap_or_default()
        .contains("javascript"));

    // Under their own names files revalidate, cheaply (304 without a body).
    let plain = request(&mut conn, "GET", "/pkg/peer_wasm_bg.wasm", &[]).await;
    assert_eq!(plain.header("cache-control"), Some("no-cache"));
    assert_eq!(plain.header("content-type"), Some("application/wasm"));
    let since = plain
        .header("last-modified")
        .expect("Last-Modified")
        .to_owned();
    let again = request(
        &mut conn,
        "GET",
        "/pkg/peer_wasm_bg.wasm",
        &[("if-modified-since", &since)],
    )
    .await;
    assert_eq!(again.status, 304, "{again:?}");
    assert_eq!(again.header("cache-control"), Some("no-cache"));

    // A new build is a new release: the old release's files are gone, with
    // a reason, never replaced by the new build's under the old name.
    let rebuilt = Broker::start_with(|c| {
        app_files(&c.www, &index_html());
        std::fs::write(c.www.join("pkg/peer_wasm_bg.wasm"), b"\0asm\x01\0\0\0\0").unwrap();
    })
    .await;
    let mut conn = connect_from("127.0.0.1", rebuilt.addr).await;
    let new_page = request(&mut conn, "GET", "/", &[("if-none-match", &etag)]).await;
    assert_eq!(
        new_page.status, 200,
        "the old page is not current: {new_page:?}"
    );
    let new_release = release_of(&String::from_utf8(new_page.body).unwrap());
    assert_ne!(new_release, release);
    let stale = request(
        &mut conn,
        "GET",
        &format!("{release}pkg/peer_wasm_bg.wasm"),
        &[],
    )
    .await;
    assert_eq!(stale.status, 404, "{stale:?}");
    assert_ne!(
        stale.header("cache-control"),
        Some("public, max-age=31536000, immutable")
    );
    assert!(
        String::from_utf8_lossy(&stale.body).contains("reload the page"),
        "{stale:?}"
    );
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
