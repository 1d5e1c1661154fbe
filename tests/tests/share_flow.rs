//! The user story, end to end, with one Chromium process per visitor:
//! share a page, open the link elsewhere, the page survives its author,
//! disappears with its last holder, and comes back when anyone shares the
//! same text again.
//!
//! Needs `target/debug/broker` (`cargo build -p broker`) and `www/pkg`
//! (`just build-wasm`).

use std::time::Instant;

use serde_json::json;
use tests::text::random_text;
use tests::visitor::assert_peer_to_peer;
use tests::{is_content_path, Broker, ChromeDriver, Visitor};

/// Much more than the signaling of one fetch, so that the broker's byte
/// counters can tell whether the content went through it.
const TEXT_BYTES: usize = 40 * 1024;

/// States in which `#viewer` must hold the verified content.
const DONE: &[&str] = &["verified", "holding"];

#[tokio::test]
async fn share_flow() {
    if !tests::netns::enter_or_reexec("share_flow") {
        return;
    }
    let started = Instant::now();
    let step = |what: &str| println!("[{:>6.1} s] {what}", started.elapsed().as_secs_f64());

    let www = tests::www_dir().expect("app files");
    let broker = Broker::start(&www, true).expect("broker");
    let driver = ChromeDriver::start().expect("chromedriver");
    let text = random_text(TEXT_BYTES);
    let len = text.len() as u64;
    let home = broker.url("/");

    step("A opens / and shares the text");
    let a = Visitor::new(&driver, "A").await.expect("visitor A");
    a.goto(&home).await;
    a.type_text("#editor", &text).await;
    a.click("#share").await;
    a.wait_state(&["holding"]).await;
    let path = a.path().await;
    assert!(
        is_content_path(&path),
        "after Share the path should be /<64 lowercase hex>, got {path:?}"
    );
    a.wait_text("#viewer", &text).await;
    a.wait_holders(1).await;
    let link = broker.url(&path);
    step(&format!("A holds {link}"));

    step("B opens the link");
    let ws_before = broker.ws_bytes().expect("metrics");
    let b = Visitor::new(&driver, "B").await.expect("visitor B");
    b.goto(&link).await;
    b.wait_state(DONE).await;
    b.wait_text("#viewer", &text).await;
    b.wait_holders(2).await;
    a.wait_holders(2).await;
    let ws_delta = broker.ws_bytes().expect("metrics") - ws_before;
    let (a_stats, b_stats) = (a.peer_stats().await, b.peer_stats().await);
    step(&format!(
        "B got it: {len} bytes of text; B {b_stats:?}; A {a_stats:?}; \
         broker WebSocket bytes in+out during B's load: {ws_delta}"
    ));
    assert_peer_to_peer(len, a_stats, b_stats, ws_delta);
    // A prepared an offer while waiting; B answered it instead of offering.
    assert_eq!(metric(&broker, "broker_ready_offers_total"), 1.0);

    step("A leaves");
    a.close().await;
    b.wait_holders(1).await;

    step("C opens the link and gets it from B");
    let c = Visitor::new(&driver, "C").await.expect("visitor C");
    c.goto(&link).await;
    c.wait_state(DONE).await;
    c.wait_text("#viewer", &text).await;
    c.wait_holders(2).await;
    b.wait_holders(2).await;
    let (b_stats, c_stats) = (b.peer_stats().await, c.peer_stats().await);
    assert!(
        c_stats.bytes_from_peers >= len,
        "C: {c_stats:?} for {len} bytes"
    );
    assert!(
        b_stats.bytes_to_peers >= len,
        "B should have served C: {b_stats:?}"
    );

    step("B and C leave; D opens the link and finds it gone");
    b.close().await;
    c.close().await;
    let d = Visitor::new(&driver, "D").await.expect("visitor D");
    d.goto(&link).await;
    d.wait_state(&["gone"]).await;
    assert_eq!(d.text("#viewer").await.as_deref(), Some(""));
    d.js("window.__sameDocument = true", vec![]).await;

    step("E shares the same text again; D gets it without reloading");
    let e = Visitor::new(&driver, "E").await.expect("visitor E");
    e.goto(&home).await;
    e.type_text("#editor", &text).await;
    e.click("#share").await;
    e.wait_state(&["holding"]).await;
    assert_eq!(
        e.path().await,
        path,
        "the same text must get the same address"
    );
    d.wait_state(DONE).await;
    d.wait_text("#viewer", &text).await;
    assert_eq!(
        d.js("return window.__sameDocument === true", vec![]).await,
        json!(true),
        "D's page was reloaded"
    );
    d.wait_holders(2).await;
    e.wait_holders(2).await;
    let d_stats = d.peer_stats().await;
    assert!(
        d_stats.bytes_from_peers >= len,
        "D: {d_stats:?} for {len} bytes"
    );

    // E announced its page before its ready offer existed: D, already
    // waiting, made its own offer.
    let introductions = metric(&broker, "broker_introductions_total");
    let ready = metric(&broker, "broker_ready_offers_total");
    assert!(
        introductions > ready,
        "every introduction carried a ready offer ({ready} of {introductions}); \
         the plain offer path went untested"
    );

    d.close().await;
    e.close().await;
    step("done");
}

fn metric(broker: &Broker, name: &str) -> f64 {
    broker
        .metric(name)
        .unwrap_or_else(|e| panic!("metric {name}: {e}"))
}
