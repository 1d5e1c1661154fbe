//! `peer.fetchUrl`: a site's listed files, verified, from the origin when
//! no peer holds them (a lone visitor); unlisted files are a plain fetch;
//! a file changed on the origin since its manifest is refused with a
//! message that says what to do.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};
use tests::files::sha256_hex;
use tests::site_fetch::fetch_url;
use tests::site_origin::{fresh_folder, index_folder, noise};
use tests::{Broker, ChromeDriver, Visitor};

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// The site's index is not at the origin's root here.
fn index() -> Value {
    json!({ "peerpageIndex": "/site/peerpage.json" })
}

#[tokio::test]
async fn a_lone_visitor_gets_a_sites_files_from_the_origin_verified() {
    let Some(run) = tests::run::start("a_lone_visitor_gets_a_sites_files_from_the_origin_verified")
    else {
        return;
    };
    let www = fresh_folder("delivery");
    copy_dir(&tests::test_www_dir().unwrap(), &www);
    let site = www.join("site");
    std::fs::create_dir_all(&site).unwrap();
    let big = noise(3 * 1024 * 1024 + 1234, 7);
    std::fs::write(site.join("big.bin"), &big).unwrap();
    let tampered = noise(600 * 1024, 9);
    std::fs::write(site.join("tampered.bin"), &tampered).unwrap();
    index_folder(&site);
    // Changed on the origin after it was indexed; and a file not listed.
    let mut changed = tampered.clone();
    changed[300 * 1024] ^= 1;
    std::fs::write(site.join("tampered.bin"), &changed).unwrap();
    std::fs::write(site.join("unlisted.txt"), b"plain").unwrap();

    let broker = Broker::start(&www, false).unwrap();
    let driver = ChromeDriver::start().unwrap();
    let visitor = Visitor::new(&driver, "visitor").await.unwrap();
    visitor.goto(&broker.url("/")).await;

    run.step("a listed file, nobody else holding it");
    let got = fetch_url(&visitor, "/site/big.bin", index()).await;
    assert_eq!(got["status"], 200, "{got}");
    assert_eq!(got["type"], "application/octet-stream", "{got}");
    assert_eq!(got["length"], big.len().to_string(), "{got}");
    assert_eq!(got["hash"], sha256_hex(&big), "{got}");
    assert_eq!(
        got["fromOrigin"],
        big.len() as u64,
        "every byte from the origin, once: {got}"
    );
    assert_eq!(got["fromPeers"], 0, "{got}");

    run.step("an unlisted file: a plain fetch");
    let plain = fetch_url(&visitor, "/site/unlisted.txt", index()).await;
    assert_eq!(plain["status"], 200, "{plain}");
    assert_eq!(plain["hash"], sha256_hex(b"plain"), "{plain}");
    assert_eq!(
        plain["fromOrigin"], got["fromOrigin"],
        "not through the peer: {plain}"
    );

    run.step("a file changed on the origin since its manifest");
    let bad = fetch_url(&visitor, "/site/tampered.bin", index()).await;
    assert_eq!(
        bad["hash"],
        Value::Null,
        "nothing unverified is handed out: {bad}"
    );
    let error = bad["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("tampered.bin") && error.contains("peerpage manifest"),
        "{bad}"
    );
    let _ = std::fs::remove_dir_all(&www);
}

#[tokio::test]
async fn the_demo_shows_its_files_and_a_second_visitor_takes_them_from_the_first() {
    let Some(run) = tests::run::start(
        "the_demo_shows_its_files_and_a_second_visitor_takes_them_from_the_first",
    ) else {
        return;
    };
    let www = fresh_folder("demo");
    copy_dir(&tests::test_www_dir().unwrap(), &www);
    let demo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../www/demo");
    let files = www.join("demo/files");
    std::fs::create_dir_all(&files).unwrap();
    for f in ["index.html", "demo.js", "demo.css"] {
        std::fs::copy(demo.join(f), www.join("demo").join(f)).unwrap();
    }
    // The files `just demo` makes, the download smaller.
    let made = Command::new("python3")
        .arg(demo.join("make_photo.py"))
        .arg(files.join("photo.png"))
        .status()
        .unwrap();
    assert!(made.success());
    let big = noise(12 << 20, 11);
    std::fs::write(files.join("big.bin"), &big).unwrap();
    index_folder(&files);
    let total = std::fs::metadata(files.join("photo.png")).unwrap().len() + big.len() as u64;

    let broker = Broker::start(&www, false).unwrap();
    let driver = ChromeDriver::start().unwrap();
    let mut results = Vec::new();
    for name in ["first", "second"] {
        run.step(&format!("the {name} visitor opens the demo"));
        let v = Visitor::new(&driver, name).await.unwrap();
        v.goto(&broker.url("/demo/")).await;
        // Both files shown: the image decoded, the download offered.
        v.wait_selector("#shown img").await;
        v.wait_selector("#files a[download]").await;
        let width = v
            .js(
                "return document.querySelector('#shown img').naturalWidth",
                vec![],
            )
            .await;
        assert_eq!(width, 1024, "the verified image is shown");
        let error = v.text("#error").await.unwrap_or_default();
        assert!(error.is_empty(), "{error}");
        let stats = v.js("return window.peer.stats()", vec![]).await;
        results.push((v, stats));
    }
    let (first, second) = (&results[0].1, &results[1].1);
    assert_eq!(first["bytesFromOrigin"], total, "{first}");
    let from_peers = second["bytesFromPeers"].as_u64().unwrap();
    assert!(
        from_peers as f64 >= 0.9 * total as f64,
        "the second visitor's files came from the first: {second}"
    );
    let totals = results[1].0.text("#totals").await.unwrap_or_default();
    assert!(totals.contains("from other visitors"), "{totals}");
    let _ = std::fs::remove_dir_all(&www);
}
