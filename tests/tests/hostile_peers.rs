//! Hostile peers against real browsers, one Chromium process per visitor:
//! a peer that offers connections on every lane cannot exhaust a holder's
//! tab, and a holder that tarpits (frames without payload, or bytes at a
//! trickle) cannot stall a download that other holders can serve.
//!
//! Needs `target/debug/broker`, `www/pkg` (`just build-wasm`) and, for
//! the tarpits, `target/test-www` (`just build-wasm-test-hooks`).

use tests::files::{held_sha256, wait_held, TestFile, Via};
use tests::hostile::{flood_offers, link_stats};
use tests::run::{start, Run};
use tests::{Broker, ChromeDriver, Visitor};

const MIB: usize = 1 << 20;
/// Bytes of one chunk as the app shares files.
const CHUNK: u64 = 256 << 10;
/// Serving connections one peer may have made per minute
/// (`protocol::links::MAX_SERVING_PER_PEER`).
const MAX_SERVING_PER_PEER: usize = 8;
/// Peers of the flood that offer on lanes 0 and 1, and again on lane 0.
const REPEATERS: usize = 16;
/// Most JavaScript heap a fetcher of a 24 MiB file may use while a
/// tarpit floods it with frames: about five times the file.
const MAX_HEAP: u64 = 128 * MIB as u64;

/// Waits until `v` holds `address` and checks its bytes against
/// `expected` (SHA-256 hex).
async fn assert_holds(v: &Visitor, address: &str, expected: &str) {
    wait_held(v).await;
    let got = held_sha256(v, address).await;
    assert_eq!(got, expected, "{}: the bytes it holds differ", v.name());
}

async fn log(v: &Visitor) -> String {
    v.text("#log").await.unwrap_or_default()
}

#[tokio::test]
async fn offers_on_every_lane_cost_the_holder_no_connections_and_it_still_serves() {
    let Some(run) =
        start("offers_on_every_lane_cost_the_holder_no_connections_and_it_still_serves")
    else {
        return;
    };
    let file = TestFile {
        seed: 8,
        len: 2 * MIB,
        name: "eight.bin",
    };
    let expected = file.sha256();
    let broker = Broker::start(&tests::www_dir().unwrap(), false).unwrap();
    let driver = ChromeDriver::start().unwrap();

    run.step("V shares a file");
    let v = Visitor::new(&driver, "V").await.unwrap();
    v.goto(&broker.url("/")).await;
    let path = file.share(&v, Via::Picker).await;
    let address = path.trim_start_matches('/');
    let before = link_stats(&v).await;

    run.step("X, as 68 peers, offers V connections on lanes 0 to 255, and lane 0 again and again");
    let x = Visitor::new(&driver, "X").await.unwrap();
    x.goto(&broker.url("/")).await;
    // The broker relays at most 4 unanswered offers per pair, so the lanes
    // past the second are spread over many peers; 16 of them offer on
    // lanes 0 and 1, and then on lane 0 again, past their allowance. The
    // first, which wants the file, is not one of them: V's ready offer it
    // takes is charged to its allowance.
    let mut rest = 2..=255u8;
    let repeats = |k: usize| (1..=REPEATERS).contains(&k);
    let plan: Vec<Vec<u8>> = (0..68)
        .map(|k| {
            let mut lanes = Vec::new();
            if repeats(k) {
                lanes.extend([0, 1]);
                lanes.extend([0; MAX_SERVING_PER_PEER - 1]);
            }
            let unanswered = if repeats(k) { 3 } else { 4 };
            lanes.extend(rest.by_ref().take(unanswered));
            lanes
        })
        .collect();
    assert_eq!(rest.next(), None, "the plan leaves lanes out");
    let replies = flood_offers(&x, address, &plan).await;
    let v_id = v.js("return window.peer.id", vec![]).await;
    assert_eq!(
        v_id,
        serde_json::json!(replies.victim),
        "X flooded someone else"
    );
    run.step(&format!(
        "V answered {} offers, refused {}; broker errors to X: {:?}",
        replies.answered.len(),
        replies.byes.len(),
        replies.errors
    ));
    // Every lane past the second is refused by name, and none answered.
    for lane in 2..=255u8 {
        let said = replies.byes.iter().find(|(l, _)| *l == lane);
        let Some((_, reason)) = said else {
            panic!("no bye for lane {lane}: {:?}", replies.byes)
        };
        assert!(
            reason.contains(&format!("lane {lane} does not exist")),
            "lane {lane}: {reason:?}"
        );
    }
    assert!(
        replies.answered.iter().all(|&l| l < 2),
        "answered {:?}",
        replies.answered
    );
    // Offering again and again on lane 0 is refused once over the
    // allowance, saying what to do: once for each peer that did.
    let too_often = replies
        .byes
        .iter()
        .filter(|(l, r)| *l == 0 && r.contains("wait a minute"))
        .count();
    assert_eq!(too_often, REPEATERS, "byes: {:?}", replies.byes);

    let after = link_stats(&v).await;
    run.step(&format!("V before {before:?}, after {after:?}"));
    // Connections: at most each peer's allowance, plus the ready offers V
    // makes for the next wanter (X took one).
    let made = after.connections_made - before.connections_made;
    let allowance = (REPEATERS * MAX_SERVING_PER_PEER) as u64;
    assert!(
        made <= allowance + 2,
        "V made {made} connections for the flood (allowance {allowance})"
    );
    let refused = after.offers_refused - before.offers_refused;
    assert!(
        refused >= 254 + too_often as u64,
        "V refused only {refused} offers"
    );
    // Two at most per peer (lanes 0 and 1), and the ready offer X took.
    let most = 2 * REPEATERS as u64 + 1;
    assert!(
        after.serving_links <= most,
        "V serves {} links",
        after.serving_links
    );

    run.step("W, a fresh wanter, gets the file from V");
    let w = Visitor::new(&driver, "W").await.unwrap();
    w.goto(&broker.url(&path)).await;
    assert_holds(&w, address, &expected).await;
    assert!(
        !log(&v).await.contains("PeerConnection"),
        "V: {}",
        log(&v).await
    );
    for p in [v, x, w] {
        p.close().await;
    }
    run.step("done");
}

/// A shares `file`, T shares it too and serves it as a tarpit of `mode`,
/// then C opens the link (T, shared last and never introduced, first).
async fn tarpit_beside_an_honest_holder(
    run: &Run,
    file: TestFile,
    mode: &str,
) -> (Broker, ChromeDriver, [Visitor; 3], String) {
    let broker = Broker::start(&tests::test_www_dir().unwrap(), false).unwrap();
    let driver = ChromeDriver::start().unwrap();
    run.step(&format!(
        "A shares; T shares the same file as a tarpit ({mode})"
    ));
    let a = Visitor::new(&driver, "A").await.unwrap();
    a.goto(&broker.url("/")).await;
    let path = file.share(&a, Via::Picker).await;
    let t = Visitor::new(&driver, "T").await.unwrap();
    t.goto(&broker.url("/")).await;
    t.call_peer("tarpitServedChunks", vec![serde_json::json!(mode)])
        .await;
    assert_eq!(file.share(&t, Via::Picker).await, path);
    run.step("C opens the link");
    let c = Visitor::new(&driver, "C").await.unwrap();
    c.goto(&broker.url(&path)).await;
    (broker, driver, [a, t, c], path)
}

#[tokio::test]
async fn a_holder_sending_frames_without_payload_is_dropped_and_the_file_arrives() {
    let Some(run) =
        start("a_holder_sending_frames_without_payload_is_dropped_and_the_file_arrives")
    else {
        return;
    };
    let file = TestFile {
        seed: 9,
        len: 24 * MIB,
        name: "nine.bin",
    };
    let expected = file.sha256();
    let (_broker, _driver, [a, t, c], path) =
        tarpit_beside_an_honest_holder(&run, file, "empty").await;
    assert_holds(&c, path.trim_start_matches('/'), &expected).await;
    let log = log(&c).await;
    run.step(&format!("C's log: {log}"));
    assert!(
        log.contains("no payload"),
        "C should say it dropped T for frames without payload; log: {log:?}"
    );
    let heap = c
        .js("return performance.memory.usedJSHeapSize", vec![])
        .await;
    run.step(&format!("C's JavaScript heap: {heap} bytes"));
    // The frames T sent are dropped as they come, never kept: the heap
    // holds the file at most a few times over (the chunks as they arrived,
    // the assembled blob's parts), not T's flood of frames on top.
    let heap = heap.as_f64().expect("a heap size") as u64;
    assert!(
        heap < MAX_HEAP,
        "C's JavaScript heap is {} MiB for a 24 MiB file",
        heap >> 20
    );
    for v in [a, t, c] {
        v.close().await;
    }
    run.step("done");
}

#[tokio::test]
async fn chunks_a_trickling_holder_owes_come_from_another_and_the_file_arrives() {
    let Some(run) = start("chunks_a_trickling_holder_owes_come_from_another_and_the_file_arrives")
    else {
        return;
    };
    let file = TestFile {
        seed: 10,
        len: 24 * MIB,
        name: "ten.bin",
    };
    let expected = file.sha256();
    let (_broker, _driver, [a, t, c], path) =
        tarpit_beside_an_honest_holder(&run, file, "trickle").await;
    assert_holds(&c, path.trim_start_matches('/'), &expected).await;
    let trickled = t.peer_stats().await.bytes_to_peers;
    let from_a = a.peer_stats().await.bytes_to_peers;
    let log = log(&c).await;
    run.step(&format!(
        "C holds it; T trickled {trickled} bytes, A sent {from_a}; C's log: {log}"
    ));
    // T was asked for chunks and sent some; C did not wait for them: every
    // chunk but those T managed to send whole came from A.
    assert!(trickled > 0, "T was never asked for anything");
    let whole_from_t = trickled / CHUNK * CHUNK;
    assert!(
        from_a >= file.len as u64 - whole_from_t,
        "A sent only {from_a} and T {trickled}: C waited for chunks T owed"
    );
    // T is slow, not dishonest: it passes the minimum rate and is not
    // dropped for stalling.
    assert!(!log.contains("stalled"), "C's log: {log:?}");
    for v in [a, t, c] {
        v.close().await;
    }
    run.step("done");
}
