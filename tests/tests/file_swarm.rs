//! Files end to end, one Chromium process per visitor: big files move
//! browser to browser chunk by chunk, verified; several holders serve one
//! download; holders that vanish or lie cost nothing but time; a swarm
//! that lacks part of a file says so and resumes when it comes back.
//!
//! Needs `target/debug/broker`, `www/pkg` (`just build-wasm`) and, for the
//! dishonest holder, `target/test-www` (`just build-wasm-test-hooks`).

use std::time::{Duration, Instant};

use tests::files::{self, wait_held, wait_progress, TestFile, Via, FILE_TIMEOUT};
use tests::run::start;
use tests::{Broker, ChromeDriver, Visitor};

const MIB: usize = 1 << 20;

/// Waits until the page has its file and checks what its download link
/// saves against `expected` (SHA-256 hex).
async fn assert_saved(v: &Visitor, expected: &str) {
    wait_held(v).await;
    let got = files::saved_sha256(v).await;
    assert_eq!(
        got,
        expected,
        "{}: the saved bytes differ from the original",
        v.name()
    );
}

/// Payload bytes `v` sent to other browsers so far.
async fn sent(v: &Visitor) -> u64 {
    v.peer_stats().await.bytes_to_peers
}

#[tokio::test]
async fn a_64_mib_file_goes_from_a_to_b_and_is_saved_intact() {
    let Some(run) = start("a_64_mib_file_goes_from_a_to_b_and_is_saved_intact") else {
        return;
    };
    let file = TestFile {
        seed: 64,
        len: 64 * MIB,
        name: "random.bin",
    };
    let (len, expected) = (file.len, file.sha256());
    let broker = Broker::start(&tests::www_dir().unwrap(), false).unwrap();
    let driver = ChromeDriver::start().unwrap();

    run.step("A picks a 64 MiB file on / and shares it");
    let a = Visitor::new(&driver, "A").await.unwrap();
    a.goto(&broker.url("/")).await;
    let path = file.share(&a, Via::Picker).await;
    // A serves a copy in its disk store, not the picked file.
    let copied = files::bytes_on_disk(&a).await;
    run.step(&format!("A's disk store holds a copy: {copied} bytes"));
    assert!(
        copied >= (len - 4 * MIB) as u64 && copied <= len as u64,
        "A copied {copied} bytes of {len} to disk"
    );

    run.step("B opens the link: name, size and type first, then progress");
    let downloads = std::env::temp_dir().join(format!("peerpage-dl-{}", std::process::id()));
    std::fs::create_dir_all(&downloads).unwrap();
    let b = Visitor::with_downloads(&driver, "B", &downloads)
        .await
        .unwrap();
    b.goto(&broker.url(&path)).await;
    b.wait_visible("#file-info").await;
    let info = files::file_info(&b).await;
    assert_eq!(
        info,
        (
            "random.bin".into(),
            len as u64,
            "application/octet-stream".into()
        )
    );
    // Shown while bytes are still arriving.
    assert!(files::progress(&b).await < 1.0);
    wait_held(&b).await;
    let status = b.text("#status").await.unwrap_or_default();
    run.step(&format!("B holds it: {status}"));
    // Content this big lives on disk, save the batch or two gathered
    // before the store opened.
    let on_disk = files::bytes_on_disk(&b).await;
    run.step(&format!("B's disk store holds {on_disk} bytes"));
    assert!(
        on_disk >= (len - 8 * MIB) as u64 && on_disk <= len as u64,
        "B keeps {on_disk} bytes of {len} on disk"
    );

    run.step("B saves it with its original name");
    let saved = downloads.join("random.bin");
    b.click("#download").await;
    let deadline = Instant::now() + FILE_TIMEOUT;
    while std::fs::metadata(&saved).map(|m| m.len()).unwrap_or(0) < len as u64 {
        assert!(
            Instant::now() < deadline,
            "B never saved {}",
            saved.display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Chromium writes to a temporary name and renames when done.
    let bytes = std::fs::read(&saved).unwrap();
    assert_eq!(
        files::sha256_hex(&bytes),
        expected,
        "the saved file differs"
    );
    let _ = std::fs::remove_dir_all(&downloads);
    let (a_sent, b_stats) = (sent(&a).await, b.peer_stats().await);
    let b_got = b_stats.bytes_from_peers;
    assert!(
        a_sent >= len as u64 && b_got >= len as u64,
        "A sent {a_sent}, B got {b_got}"
    );
    // A is the only holder and the file is big: B drew it over two
    // connections to A.
    assert_eq!(
        b_stats.channels_opened, 2,
        "B opened {} data channels to the lone holder",
        b_stats.channels_opened
    );
    a.close().await;
    b.close().await;
    run.step("done");
}

#[tokio::test]
async fn two_holders_both_serve_a_third_browser() {
    let Some(run) = start("two_holders_both_serve_a_third_browser") else {
        return;
    };
    let file = TestFile {
        seed: 2,
        len: 32 * MIB,
        name: "two.bin",
    };
    let (len, expected) = (file.len, file.sha256());
    let broker = Broker::start(&tests::www_dir().unwrap(), false).unwrap();
    let driver = ChromeDriver::start().unwrap();

    run.step("A drops a 32 MiB file on the page; B gets it from A");
    let a = Visitor::new(&driver, "A").await.unwrap();
    a.goto(&broker.url("/")).await;
    let path = file.share(&a, Via::Drop).await;
    let b = Visitor::new(&driver, "B").await.unwrap();
    b.goto(&broker.url(&path)).await;
    assert_saved(&b, &expected).await;
    b.wait_holders(2).await;

    run.step("C downloads from both");
    let (a_before, b_before) = (sent(&a).await, sent(&b).await);
    let c = Visitor::new(&driver, "C").await.unwrap();
    c.goto(&broker.url(&path)).await;
    assert_saved(&c, &expected).await;
    let (from_a, from_b) = (sent(&a).await - a_before, sent(&b).await - b_before);
    run.step(&format!(
        "C served by A: {from_a} bytes, by B: {from_b} bytes"
    ));
    // Each holder served a real share (several chunks), not a stray one.
    let share_min = len as u64 / 8;
    assert!(
        from_a >= share_min && from_b >= share_min,
        "A {from_a}, B {from_b}"
    );
    assert!(from_a + from_b >= len as u64);
    for v in [a, b, c] {
        v.close().await;
    }
    run.step("done");
}

#[tokio::test]
async fn a_holder_killed_mid_transfer_costs_only_time() {
    let Some(run) = start("a_holder_killed_mid_transfer_costs_only_time") else {
        return;
    };
    let file = TestFile {
        seed: 3,
        len: 48 * MIB,
        name: "three.bin",
    };
    let expected = file.sha256();
    let broker = Broker::start(&tests::www_dir().unwrap(), false).unwrap();
    let driver = ChromeDriver::start().unwrap();

    let a = Visitor::new(&driver, "A").await.unwrap();
    a.goto(&broker.url("/")).await;
    let path = file.share(&a, Via::Picker).await;
    let b = Visitor::new(&driver, "B").await.unwrap();
    b.goto(&broker.url(&path)).await;
    assert_saved(&b, &expected).await;
    b.wait_holders(2).await;

    run.step("C starts downloading from A and B; A quits mid-transfer");
    let c = Visitor::new(&driver, "C").await.unwrap();
    c.goto(&broker.url(&path)).await;
    wait_progress(&c, 0.15).await;
    let at = files::progress(&c).await;
    a.close().await;
    run.step(&format!("A gone with C at {:.0}%", at * 100.0));
    assert!(
        at < 0.9,
        "C was nearly done ({at}) before A left: not mid-transfer"
    );
    let b_before = sent(&b).await;
    assert_saved(&c, &expected).await;
    let from_b = sent(&b).await - b_before;
    run.step(&format!("C completed; B sent {from_b} bytes after A left"));
    assert!(from_b > 0);
    b.close().await;
    c.close().await;
    run.step("done");
}

#[tokio::test]
async fn a_holder_that_corrupts_a_chunk_is_dropped_and_the_file_still_arrives_intact() {
    let Some(run) =
        start("a_holder_that_corrupts_a_chunk_is_dropped_and_the_file_still_arrives_intact")
    else {
        return;
    };
    let file = TestFile {
        seed: 4,
        len: 16 * MIB,
        name: "four.bin",
    };
    let expected = file.sha256();
    // The app with the peer's test hooks, so that M can lie.
    let broker = Broker::start(&tests::test_www_dir().unwrap(), false).unwrap();
    let driver = ChromeDriver::start().unwrap();

    run.step("A shares; M shares the same file but corrupts what it serves");
    let a = Visitor::new(&driver, "A").await.unwrap();
    a.goto(&broker.url("/")).await;
    let path = file.share(&a, Via::Picker).await;
    let m = Visitor::new(&driver, "M").await.unwrap();
    m.goto(&broker.url("/")).await;
    m.call_peer("corruptServedChunks", vec![serde_json::json!(true)])
        .await;
    assert_eq!(file.share(&m, Via::Picker).await, path);

    run.step("C downloads: M (never introduced yet, so first) lies and is dropped");
    let c = Visitor::new(&driver, "C").await.unwrap();
    c.goto(&broker.url(&path)).await;
    assert_saved(&c, &expected).await;
    let log = c.text("#log").await.unwrap_or_default();
    run.step(&format!("C's log: {log}"));
    assert!(
        log.contains("failed verification"),
        "C should say it dropped a holder for a bad chunk; log: {log:?}"
    );
    assert!(
        sent(&m).await > 0,
        "M never served anything: the lie went untested"
    );
    for v in [a, m, c] {
        v.close().await;
    }
    run.step("done");
}

#[tokio::test]
async fn a_swarm_missing_a_part_says_so_and_resumes_when_a_holder_returns() {
    let Some(run) = start("a_swarm_missing_a_part_says_so_and_resumes_when_a_holder_returns")
    else {
        return;
    };
    let file = TestFile {
        seed: 5,
        len: 48 * MIB,
        name: "five.bin",
    };
    let expected = file.sha256();
    let broker = Broker::start(&tests::www_dir().unwrap(), false).unwrap();
    let driver = ChromeDriver::start().unwrap();

    run.step("A shares; B gets part of it, then A quits");
    let a = Visitor::new(&driver, "A").await.unwrap();
    a.goto(&broker.url("/")).await;
    let path = file.share(&a, Via::Picker).await;
    let b = Visitor::new(&driver, "B").await.unwrap();
    b.goto(&broker.url(&path)).await;
    wait_progress(&b, 0.2).await;
    a.close().await;
    b.wait_state(&["missing"]).await;
    let at = files::progress(&b).await;
    run.step(&format!(
        "B has {:.0}% and says: {}",
        at * 100.0,
        b.text("#status").await.unwrap_or_default()
    ));
    assert!(at < 0.95, "B was done ({at}) before A left");

    run.step("C opens the link: gets B's part, then is told what is missing");
    let c = Visitor::new(&driver, "C").await.unwrap();
    c.goto(&broker.url(&path)).await;
    c.poll(
        "C to say what is missing",
        FILE_TIMEOUT,
        "const s = document.querySelector('#status');
         return [s.getAttribute('data-state'), s.textContent];",
        vec![],
        |v| (v[0] == "missing").then(|| v[1].as_str().unwrap_or_default().to_owned()),
    )
    .await;
    let said = c.text("#status").await.unwrap_or_default();
    run.step(&format!("C says: {said}"));
    assert!(
        said.contains("MiB") && said.contains("resumes by itself"),
        "{said:?}"
    );
    let c_had = files::progress(&c).await;
    assert!(c_had > 0.1, "C should have B's part ({c_had})");
    c.js("window.__sameDocument = true", vec![]).await;

    run.step("A2 shares the same file again: both resume and complete");
    let a2 = Visitor::new(&driver, "A2").await.unwrap();
    a2.goto(&broker.url("/")).await;
    let again = file.share(&a2, Via::Picker).await;
    assert_eq!(again, path, "the same file must get the same address");
    assert_saved(&c, &expected).await;
    assert_saved(&b, &expected).await;
    assert_eq!(
        c.js("return window.__sameDocument === true", vec![]).await,
        serde_json::json!(true),
        "C's page was reloaded"
    );
    for v in [a2, b, c] {
        v.close().await;
    }
    run.step("done");
}
