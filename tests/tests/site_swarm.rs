//! A site's files through its visitors, with Debian's nginx as the origin
//! (the operators' `deploy/nginx/site.conf`), the page on another origin
//! and the broker on a third: a second visitor takes the file from the
//! first; a holder that leaves or lies mid-fetch is made up for by the
//! origin; an origin that ignores ranges, or whose file changed since its
//! manifest, and an abort.

use serde_json::{json, Value};
use tests::files::sha256_hex;
use tests::site_fetch::{fetch_url, finish, received, start, warnings};
use tests::site_origin::{address_of, noise, publish, setup};

const BIG: usize = 32 << 20;

/// The wasm package with its test hooks (a holder can lie or tarpit).
fn test_pkg() -> std::path::PathBuf {
    tests::test_www_dir().unwrap().join("pkg")
}

fn none() -> Value {
    json!({})
}

#[tokio::test]
async fn a_second_visitor_takes_the_file_from_the_first() {
    let Some(run) = tests::run::start("a_second_visitor_takes_the_file_from_the_first") else {
        return;
    };
    let big = noise(BIG, 1);
    let site = publish(&[("big.bin", &big)]);
    let s = setup(&site, &test_pkg(), "", 2).await;
    let url = s.origin.site_url("/big.bin");
    let (a, b) = (&s.visitors[0], &s.visitors[1]);

    run.step("the first visitor: nobody holds it, all from the origin");
    let first = fetch_url(a, &url, none()).await;
    assert_eq!(first["hash"], sha256_hex(&big), "{first}");
    assert_eq!(first["fromOrigin"], BIG as u64, "{first}");
    let (sent_before, _) = s.origin.sent("/big.bin");
    assert!(sent_before >= BIG as u64, "{}", s.origin.access_log());

    run.step("the second visitor: from the first");
    let second = fetch_url(b, &url, none()).await;
    assert_eq!(second["hash"], sha256_hex(&big), "{second}");
    let from_peers = second["fromPeers"].as_u64().unwrap();
    let from_origin = second["fromOrigin"].as_u64().unwrap();
    let events = b
        .js(
            "return JSON.stringify(window.events.filter((e) => e.type !== 'holders')
               .map((e) => [e.type, e.state, e.sources, e.sending, e.received, e.fromOrigin, e.message]))",
            vec![],
        )
        .await;
    assert!(
        from_peers as f64 >= 0.95 * BIG as f64,
        "at least 95% from peers: {second}\nevents: {events}"
    );
    // The origin's own log agrees: it sent little of the file the second time.
    let (sent_after, _) = s.origin.sent("/big.bin");
    let sent = sent_after - sent_before;
    assert!(sent as f64 <= 0.05 * BIG as f64, "the origin sent {sent} B");
    assert!(sent >= from_origin, "{sent} B sent, {from_origin} B taken");
    let address = address_of(&site, "big.bin");
    assert_eq!(received(b, &address).await, (from_peers, from_origin));
    let _ = std::fs::remove_dir_all(&site);
}

#[tokio::test]
async fn a_holder_that_leaves_or_lies_mid_fetch_is_made_up_for_by_the_origin() {
    let Some(run) =
        tests::run::start("a_holder_that_leaves_or_lies_mid_fetch_is_made_up_for_by_the_origin")
    else {
        return;
    };
    let big = noise(BIG, 2);
    let other = noise(BIG / 2, 3);
    let site = publish(&[("big.bin", &big), ("other.bin", &other)]);
    let mut s = setup(&site, &test_pkg(), "", 3).await;
    let (url, other_url) = (
        s.origin.site_url("/big.bin"),
        s.origin.site_url("/other.bin"),
    );

    run.step("a liar holds other.bin");
    let liar = &s.visitors[2];
    assert_eq!(
        fetch_url(liar, &other_url, none()).await["hash"],
        sha256_hex(&other)
    );
    liar.call_peer("corruptServedChunks", vec![json!(true)])
        .await;
    let fetched = fetch_url(&s.visitors[1], &other_url, none()).await;
    assert_eq!(fetched["hash"], sha256_hex(&other), "{fetched}");
    let said = warnings(&s.visitors[1]).await;
    assert!(
        said.iter().any(|w| w.contains("failed verification")),
        "the liar was dropped: {said:?}"
    );

    run.step("a slow holder of big.bin leaves mid-fetch");
    let holder = &s.visitors[0];
    assert_eq!(
        fetch_url(holder, &url, none()).await["hash"],
        sha256_hex(&big)
    );
    holder
        .call_peer("tarpitServedChunks", vec![json!("trickle")])
        .await;
    let b = &s.visitors[1];
    start(b, "big", &url, none()).await;
    let address = address_of(&site, "big.bin");
    b.poll(
        "bytes from the holder",
        tests::PAGE_TIMEOUT,
        "const last = (window.events || []).filter((e) => e.type === 'status'
           && e.address === arguments[0] && e.fromPeers !== undefined).pop();
         return last ? last.fromPeers : 0;",
        vec![json!(address)],
        |v| (v.as_u64().unwrap_or(0) > 0).then_some(()),
    )
    .await;
    s.visitors.remove(0).close().await;
    let got = finish(&s.visitors[0], "big").await;
    assert_eq!(got["hash"], sha256_hex(&big), "{got}");
    let (from_peers, from_origin) = received(&s.visitors[0], &address).await;
    assert!(
        from_peers > 0 && from_origin > 0,
        "{from_peers} {from_origin}"
    );
    let _ = std::fs::remove_dir_all(&site);
}

#[tokio::test]
async fn an_origin_without_ranges_still_serves_verified_and_a_changed_file_is_refused() {
    let Some(run) = tests::run::start(
        "an_origin_without_ranges_still_serves_verified_and_a_changed_file_is_refused",
    ) else {
        return;
    };
    let big = noise(BIG / 4, 4);
    let changed = noise(BIG / 8, 5);
    let site = publish(&[("big.bin", &big), ("changed.bin", &changed)]);
    let mut edited = changed.clone();
    edited[BIG / 16] ^= 1;
    std::fs::write(site.join("changed.bin"), &edited).unwrap();
    // nginx answers every range request with the whole file (200).
    let s = setup(&site, &test_pkg(), "max_ranges 0;", 1).await;
    let v = &s.visitors[0];

    run.step("ranges ignored: 200s, skipped to what was asked");
    let got = fetch_url(v, &s.origin.site_url("/big.bin"), none()).await;
    assert_eq!(got["hash"], sha256_hex(&big), "{got}");
    let log = s.origin.access_log();
    assert!(log.lines().any(|l| l.contains("/big.bin 200")), "{log}");

    run.step("a file changed since its manifest");
    let bad = fetch_url(v, &s.origin.site_url("/changed.bin"), none()).await;
    assert_eq!(bad["hash"], Value::Null, "{bad}");
    let error = bad["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("changed.bin") && error.contains("peerpage manifest"),
        "{bad}"
    );
    let _ = std::fs::remove_dir_all(&site);
}

#[tokio::test]
async fn a_file_that_changes_on_the_origin_mid_fetch_is_refused() {
    let Some(run) = tests::run::start("a_file_that_changes_on_the_origin_mid_fetch_is_refused")
    else {
        return;
    };
    let big = noise(BIG / 2, 7);
    let site = publish(&[("big.bin", &big)]);
    // Slow enough to change the file between two range requests.
    let s = setup(&site, &test_pkg(), "limit_rate 1m;", 1).await;
    let v = &s.visitors[0];

    run.step("the file is replaced after the first range answered");
    start(v, "big", &s.origin.site_url("/big.bin"), none()).await;
    let address = address_of(&site, "big.bin");
    v.poll(
        "the first bytes",
        tests::PAGE_TIMEOUT,
        "const last = (window.events || []).filter((e) => e.type === 'status'
           && e.address === arguments[0] && e.fromOrigin !== undefined).pop();
         return last ? last.fromOrigin : 0;",
        vec![json!(address)],
        |v| (v.as_u64().unwrap_or(0) > 0).then_some(()),
    )
    .await;
    // A new file under the same name: nginx's ETag changes with it.
    let mut other = big.clone();
    other[0] ^= 1;
    let tmp = site.join("big.bin.new");
    std::fs::write(&tmp, &other).unwrap();
    std::fs::rename(&tmp, site.join("big.bin")).unwrap();
    let got = finish(v, "big").await;
    assert_eq!(got["hash"], Value::Null, "{got}");
    let error = got["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("big.bin")
            && error.contains("changed")
            && error.contains("peerpage manifest"),
        "{got}"
    );
    let log = s.origin.access_log();
    assert!(log.lines().any(|l| l.contains("/big.bin 412")), "{log}");
    let _ = std::fs::remove_dir_all(&site);
}

#[tokio::test]
async fn a_released_sites_files_come_through_its_release() {
    let Some(run) = tests::run::start("a_released_sites_files_come_through_its_release") else {
        return;
    };
    let big = noise(BIG / 4, 8);
    let site = publish(&[("big.bin", &big)]);
    let keys = tests::site_origin::fresh_folder("keys");
    let public = tests::site_origin::release_folder(&site, &keys);
    assert_eq!(public.len(), 43, "{public}");
    let s = setup(&site, &test_pkg(), "", 1).await;

    run.step("peerpage.json is a signed record; the index comes from its address");
    let got = fetch_url(&s.visitors[0], &s.origin.site_url("/big.bin"), none()).await;
    assert_eq!(got["hash"], sha256_hex(&big), "{got}");
    assert_eq!(
        got["fromOrigin"],
        (BIG / 4) as u64,
        "through the peer: {got}"
    );
    let _ = std::fs::remove_dir_all(&site);
    let _ = std::fs::remove_dir_all(&keys);
}

#[tokio::test]
async fn an_aborted_fetch_stops() {
    let Some(run) = tests::run::start("an_aborted_fetch_stops") else {
        return;
    };
    let big = noise(BIG, 6);
    let site = publish(&[("big.bin", &big)]);
    // A loaded origin: 8 MB/s in all over two connections.
    let s = setup(&site, &test_pkg(), "limit_rate 4m;", 1).await;
    let v = &s.visitors[0];

    run.step("abort after the first megabyte");
    let got = fetch_url(
        v,
        &s.origin.site_url("/big.bin"),
        json!({ "abortAfter": 1 << 20 }),
    )
    .await;
    assert_eq!(got["errorName"], "AbortError", "{got}");
    assert_eq!(got["hash"], Value::Null, "{got}");
    let at_abort = got["fromOrigin"].as_u64().unwrap();
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let later = v
        .js("return window.peer.stats().bytesFromOrigin", vec![])
        .await;
    assert!(
        later.as_u64().unwrap() <= at_abort + (1 << 20),
        "nothing more is fetched: {at_abort} then {later}"
    );
    let _ = std::fs::remove_dir_all(&site);
}

/// `peer.followSite(url, key)`: `{ok: {seq, …}}` or `{error: message}`.
async fn follow(v: &tests::Visitor, url: &str, key: &str) -> Value {
    v.client()
        .execute_async(
            "const [url, key, done] = arguments;
             (async () => {
               while (!window.peer) await new Promise((ok) => setTimeout(ok, 20));
               return { ok: await window.peer.followSite(url, key) };
             })().then(done, (e) => done({ error: String(e && e.message || e) }));",
            vec![json!(url), json!(key)],
        )
        .await
        .unwrap()
}

/// Gives `path` a modification time of its own: nginx's ETag is made of
/// the time (in seconds) and the size, and records of the same size
/// written within a second would look alike to the browser's cache.
fn bump(path: &std::path::Path) {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1_000_000_000);
    let at = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let touched = std::process::Command::new("touch")
        .arg("-d")
        .arg(format!("@{at}"))
        .arg(path)
        .status()
        .unwrap();
    assert!(touched.success());
}

fn peerpage(args: &[&std::ffi::OsStr]) {
    let bin = tests::broker::workspace_bin("peerpage", "PEERPAGE_BIN").unwrap();
    let out = std::process::Command::new(bin).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn a_followed_sites_releases_are_checked_before_they_are_used() {
    let Some(run) = tests::run::start("a_followed_sites_releases_are_checked_before_they_are_used")
    else {
        return;
    };
    let (a, b1, b2) = (
        noise(600 << 10, 31),
        noise(300 << 10, 32),
        noise(300 << 10, 33),
    );
    let site = publish(&[("a.bin", &a), ("b.bin", &b1)]);
    let keys = tests::site_origin::fresh_folder("keys");
    let key = tests::site_origin::release_folder(&site, &keys);
    let s = setup(&site, &test_pkg(), "", 1).await;
    let v = &s.visitors[0];
    let record_url = s.origin.site_url("/peerpage.json");
    let release = |expires: &str| {
        peerpage(&[
            "release".as_ref(),
            site.as_os_str(),
            "--key".as_ref(),
            keys.join("site.key").as_os_str(),
            "--expires".as_ref(),
            expires.as_ref(),
        ]);
        let _ = std::process::Command::new("chmod")
            .args(["-R", "a+rX"])
            .arg(&site)
            .status();
        bump(&site.join("peerpage.json"));
    };
    let events = |kind: &'static str| async move {
        v.js(
            "return window.events.filter((e) => e.type === arguments[0] && e.site)",
            vec![json!(kind)],
        )
        .await
    };

    run.step("release 1 followed, its files fetched through it");
    let first = follow(v, &record_url, &key).await;
    assert_eq!(first["ok"]["seq"], 1, "{first}");
    let got = fetch_url(v, &s.origin.site_url("/a.bin"), none()).await;
    assert_eq!(got["hash"], sha256_hex(&a), "{got}");
    let released = events("release").await;
    assert_eq!(
        released[0]["changed"],
        json!(["a.bin", "b.bin"]),
        "{released}"
    );
    let release_1 = std::fs::read(site.join("peerpage.json")).unwrap();

    run.step("release 2 changes b.bin");
    std::fs::write(site.join("b.bin"), &b2).unwrap();
    release("30d");
    let second = follow(v, &record_url, &key).await;
    assert_eq!(second["ok"]["seq"], 2, "{second}");
    let released = events("release").await;
    assert_eq!(released[1]["changed"], json!(["b.bin"]), "{released}");
    let release_2 = std::fs::read(site.join("peerpage.json")).unwrap();

    let refused = |said: Value, what: &str| {
        let error = said["error"].as_str().unwrap_or_default().to_owned();
        assert!(error.contains(what), "expected {what:?}: {said}");
    };
    run.step("a rolled-back record is refused, also after a reload");
    std::fs::write(site.join("peerpage.json"), &release_1).unwrap();
    bump(&site.join("peerpage.json"));
    refused(follow(v, &record_url, &key).await, "older than release 2");
    v.goto(&s.origin.page_url(&format!(
        "/page.html?broker={}",
        v.js("return new URLSearchParams(location.search).get('broker')", vec![])
            .await
            .as_str()
            .unwrap()
    )))
    .await;
    refused(follow(v, &record_url, &key).await, "older than release 2");

    run.step("a forged record is refused");
    let other_keys = tests::site_origin::fresh_folder("other-keys");
    let copy = publish(&[("a.bin", &a)]);
    let other = tests::site_origin::release_folder(&copy, &other_keys);
    let forged = String::from_utf8(std::fs::read(copy.join("peerpage.json")).unwrap())
        .unwrap()
        .replace(&other, &key);
    std::fs::write(site.join("peerpage.json"), forged).unwrap();
    bump(&site.join("peerpage.json"));
    refused(follow(v, &record_url, &key).await, "does not verify");

    run.step("an expired record is refused");
    std::fs::write(site.join("peerpage.json"), &release_2).unwrap();
    bump(&site.join("peerpage.json"));
    release("1s");
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    refused(follow(v, &record_url, &key).await, "expired");

    run.step("a record whose index was tampered with is refused");
    release("30d");
    let record: Value =
        serde_json::from_slice(&std::fs::read(site.join("peerpage.json")).unwrap()).unwrap();
    let index_file = site.join(".peerpage").join(format!(
        "{}.json",
        record["release"]["index"].as_str().unwrap()
    ));
    let tampered = String::from_utf8(std::fs::read(&index_file).unwrap())
        .unwrap()
        .replacen("octet-stream", "octet-strean", 1);
    std::fs::write(&index_file, tampered).unwrap();
    bump(&index_file);
    refused(follow(v, &record_url, &key).await, "does not match");
    let warnings = events("warning").await;
    assert!(warnings.as_array().unwrap().len() >= 4, "{warnings}");

    run.step("the release in use is still release 2's");
    let got = fetch_url(v, &s.origin.site_url("/b.bin"), none()).await;
    assert_eq!(got["hash"], sha256_hex(&b2), "{got}");
    for dir in [&site, &keys, &other_keys, &copy] {
        let _ = std::fs::remove_dir_all(dir);
    }
}

#[tokio::test]
async fn an_announced_release_reaches_followers_through_the_broker() {
    let Some(run) = tests::run::start("an_announced_release_reaches_followers_through_the_broker")
    else {
        return;
    };
    let (a1, a2) = (noise(300 << 10, 41), noise(300 << 10, 42));
    let site = publish(&[("a.bin", &a1)]);
    let keys = tests::site_origin::fresh_folder("keys");
    let key = tests::site_origin::release_folder(&site, &keys);
    let s = setup(&site, &test_pkg(), "", 2).await;
    let (follower, publisher) = (&s.visitors[0], &s.visitors[1]);
    let record_url = s.origin.site_url("/peerpage.json");
    assert_eq!(follow(follower, &record_url, &key).await["ok"]["seq"], 1);

    run.step("release 2, announced to the broker");
    std::fs::write(site.join("a.bin"), &a2).unwrap();
    tests::site_origin::release_folder(&site, &keys);
    let record: Value =
        serde_json::from_slice(&std::fs::read(site.join("peerpage.json")).unwrap()).unwrap();
    // Any client may announce: the broker checks the signature.
    let sent = publisher
        .client()
        .execute_async(
            "const [record, done] = arguments;
             const broker = new URLSearchParams(location.search).get('broker');
             const ws = new WebSocket(broker);
             ws.onopen = () => { ws.send(JSON.stringify({ announce: { record } })); done(true); };
             ws.onerror = () => done(false);",
            vec![record],
        )
        .await
        .unwrap();
    assert_eq!(sent, true);
    let seq = follower
        .poll(
            "the release event",
            std::time::Duration::from_secs(5),
            "const r = window.events.filter((e) => e.type === 'release').pop();
             return r ? r.seq : 0;",
            vec![],
            |v| (v.as_u64() == Some(2)).then_some(2),
        )
        .await;
    assert_eq!(seq, 2);
    // Its files now come from release 2, without following again.
    let got = fetch_url(follower, &s.origin.site_url("/a.bin"), none()).await;
    assert_eq!(got["hash"], sha256_hex(&a2), "{got}");
    let _ = std::fs::remove_dir_all(&site);
    let _ = std::fs::remove_dir_all(&keys);
}
