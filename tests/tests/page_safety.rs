//! What the page shows of what peers say, and what it downloads without
//! asking, one Chromium process per visitor: names made to look like
//! something else are shown with their hidden characters made visible
//! (in a file's line, its download name and a collection's entries, which
//! are labelled as the sharer's claims); content bigger than the page's
//! threshold waits for a yes, with no more than its first chunk fetched,
//! then arrives verified; a no cancels it.
//!
//! Needs `target/debug/broker` and `www/pkg` (`just build-wasm`).

use std::time::Duration;

use serde_json::json;
use tests::files::{self, wait_held, TestFile, Via};
use tests::run::{start, Run};
use tests::{Broker, ChromeDriver, Visitor};

const MIB: usize = 1 << 20;
/// What may arrive before the user's yes: the first chunk (256 KiB, as the
/// page shares files) and the manifest (a few KiB for 8 MiB).
const BEFORE_YES: u64 = 256 * 1024 + 16 * 1024;
/// The threshold the downloaders' pages are opened with.
const CONFIRM_ABOVE: usize = 4 * MIB;

/// Payload bytes `v` received from other browsers so far.
async fn received(v: &Visitor) -> u64 {
    v.peer_stats().await.bytes_from_peers
}

/// Waits a moment in which a download that had not stopped would go on
/// (a loaded 2-core machine moves several MiB per second), then checks
/// that `v` still has no more than [`BEFORE_YES`].
async fn assert_nothing_more_arrives(v: &Visitor, run: &Run) {
    let before = received(v).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = received(v).await;
    run.step(&format!(
        "{} received {before}, then {after} bytes",
        v.name()
    ));
    assert!(
        after <= BEFORE_YES,
        "{} received {after} bytes before saying yes (at most {BEFORE_YES})",
        v.name()
    );
}

#[tokio::test]
async fn a_big_file_waits_for_a_yes_then_arrives_and_a_no_cancels_it() {
    let Some(run) = start("a_big_file_waits_for_a_yes_then_arrives_and_a_no_cancels_it") else {
        return;
    };
    let file = TestFile {
        seed: 81,
        len: 8 * MIB,
        name: "big.bin",
    };
    let expected = file.sha256();
    let broker = Broker::start(&tests::www_dir().unwrap(), false).unwrap();
    let driver = ChromeDriver::start().unwrap();

    run.step("A shares an 8 MiB file");
    let a = Visitor::new(&driver, "A").await.unwrap();
    a.goto(&broker.url("/")).await;
    let path = file.share(&a, Via::Picker).await;
    let link = format!("{path}?confirm-above={CONFIRM_ABOVE}");

    run.step("B opens it with a 4 MiB threshold: asked first, with the size");
    let b = Visitor::new(&driver, "B").await.unwrap();
    b.goto(&broker.url(&link)).await;
    b.wait_state(&["confirm"]).await;
    let question = b.text("#status").await.unwrap_or_default();
    run.step(&format!("B asks: {question}"));
    assert!(
        question.contains("8.0 MiB") && question.contains("big.bin"),
        "B's question: {question}"
    );
    b.wait_visible("#confirm-yes").await;
    assert_nothing_more_arrives(&b, &run).await;
    assert_eq!(b.state().await.as_deref(), Some("confirm"));

    run.step("B says yes: the file arrives and verifies");
    b.click("#confirm-yes").await;
    wait_held(&b).await;
    assert_eq!(
        files::held_sha256(&b, path.trim_start_matches('/')).await,
        expected,
        "B holds other bytes"
    );
    assert!(received(&b).await >= file.len as u64);

    run.step("C opens it too and says no: nothing more arrives, C holds nothing");
    let c = Visitor::new(&driver, "C").await.unwrap();
    c.goto(&broker.url(&link)).await;
    c.wait_state(&["confirm"]).await;
    // C holds (the manifest) from its verification on.
    a.wait_holders(3).await;
    c.click("#confirm-no").await;
    c.wait_state(&["declined"]).await;
    assert_nothing_more_arrives(&c, &run).await;
    // The no takes that back.
    a.wait_holders(2).await;
    let held = c
        .js(
            "return window.peer.manifest(location.pathname.slice(1)) === undefined;",
            vec![],
        )
        .await;
    assert_eq!(held, json!(true), "C still holds part of the file");
    for v in [a, b, c] {
        v.close().await;
    }
    run.step("done");
}

#[tokio::test]
async fn names_that_hide_their_extension_are_shown_with_the_trick_visible() {
    let Some(run) = start("names_that_hide_their_extension_are_shown_with_the_trick_visible")
    else {
        return;
    };
    // Read left to right it is "invoice" + RLO + "fdp.exe": shown as is,
    // the override makes it look like "invoiceexe.pdf".
    let spoof = "invoice\u{202E}fdp.exe";
    let shown = "invoice\u{FFFD}fdp.exe";
    let broker = Broker::start(&tests::www_dir().unwrap(), false).unwrap();
    let driver = ChromeDriver::start().unwrap();

    run.step("A shares a file with a spoofing name, and a collection listing it");
    let a = Visitor::new(&driver, "A").await.unwrap();
    a.goto(&broker.url("/")).await;
    let file = files::share(&a, 5, 4096, spoof, "application/pdf", Via::Picker).await;
    let collection = files::share_collection(
        &a,
        json!([
            { "address": &file[1..], "name": spoof, "size": 4096, "type": "application/pdf\u{200B}" },
            { "address": "ab".repeat(32), "name": "a\u{2066}\u{200D}b\u{2069}\n\u{0007}\u{3164}\u{FE0F}\u{E0100}.txt", "size": 1 },
        ]),
    )
    .await;

    run.step("B opens the collection: entries made safe and labelled");
    let b = Visitor::new(&driver, "B").await.unwrap();
    b.goto(&broker.url(&collection)).await;
    b.wait_visible("#collection a").await;
    let entries = b
        .js(
            "return [...document.querySelectorAll('#collection li')].map((li) => li.textContent);",
            vec![],
        )
        .await;
    run.step(&format!("B lists {entries}"));
    assert_eq!(
        entries,
        json!([
            format!("{shown} — 4.0 KiB, application/pdf\u{FFFD}"),
            "a\u{FFFD}\u{FFFD}b\u{FFFD}\u{FFFD}\u{FFFD}\u{FFFD}\u{FFFD}\u{FFFD}.txt — 1 B",
        ])
    );
    b.wait_visible("#collection-note").await;
    let note = b.text("#collection-note").await.unwrap_or_default();
    assert!(note.contains("given by the sharer"), "{note}");

    run.step("B opens the file: its line and its download name are made safe");
    b.click("#collection a").await;
    wait_held(&b).await;
    let (name, size, _) = files::file_info(&b).await;
    assert_eq!((name.as_str(), size), (shown, 4096));
    let line = b.text("#file-info").await.unwrap_or_default();
    assert!(line.starts_with(shown), "{line}");
    assert_eq!(
        b.attr("#download", "download").await.as_deref(),
        Some(shown)
    );
    // Nothing of the page's text or attributes (titles, download names,
    // data) holds a hidden character of any kind `safe_text` replaces.
    let hidden = b.js(HIDDEN_ON_PAGE, vec![]).await;
    assert_eq!(hidden, json!([]), "hidden characters on the page");
    a.close().await;
    b.close().await;
    run.step("done");
}

/// Page script: every attribute value (`title`, `download`, `data-*` and
/// the rest) and text node holding a character `protocol::display`
/// hides: controls, format and default-ignorable characters, line and
/// paragraph separators (text nodes may hold the page source's own line
/// breaks and tabs). Resolves with what it found, as `[where, escaped]`.
const HIDDEN_ON_PAGE: &str = r#"
const hidden = /[\p{Cc}\p{Cf}\p{Default_Ignorable_Code_Point}\u2028\u2029]/u;
const inText = /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f\p{Cf}\p{Default_Ignorable_Code_Point}\u2028\u2029]/u;
const escape = (s) => [...s].map((c) => c.charCodeAt(0) < 0x20 || c.codePointAt(0) > 0x7e ? `U+${c.codePointAt(0).toString(16)}` : c).join("");
const found = [];
for (const el of document.querySelectorAll("*")) {
  for (const a of el.attributes) {
    if (hidden.test(a.value)) found.push([`${el.tagName}[${a.name}]`, escape(a.value)]);
  }
}
const walk = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
while (walk.nextNode()) {
  const t = walk.currentNode.data;
  if (inText.test(t)) found.push([walk.currentNode.parentElement.tagName, escape(t)]);
}
return found;
"#;
