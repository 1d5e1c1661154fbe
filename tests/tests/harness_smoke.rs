//! Checks the plumbing without the app: the namespace, chromedriver, one
//! Chromium per visitor, and a WebRTC data channel between two Chromium
//! processes (handshake relayed by the test itself instead of a broker).

use serde_json::json;
use tests::{ChromeDriver, Visitor};

const PAGE: &str = "data:text/html,<title>smoke</title><p>smoke</p>";

/// Resolves (via the async-script callback) with the local SDP once ICE
/// gathering is complete, so no candidates need trickling.
const GATHERED: &str = "const gathered = (pc) => new Promise((ok) => {
    if (pc.iceGatheringState === 'complete') return ok();
    pc.addEventListener('icegatheringstatechange', () => {
      if (pc.iceGatheringState === 'complete') ok();
    });
  }).then(() => pc.localDescription.sdp);";

#[tokio::test]
async fn harness_smoke() {
    if !tests::netns::enter_or_reexec("harness_smoke") {
        return;
    }
    let ip = std::process::Command::new("ip")
        .args(["-o", "-4", "addr", "show", "dev", "veth0"])
        .output()
        .expect("ip");
    let ip = String::from_utf8_lossy(&ip.stdout);
    assert!(ip.contains("192.0.2.2/24"), "veth0 not set up: {ip:?}");

    let driver = ChromeDriver::start().expect("chromedriver");
    let a = Visitor::new(&driver, "A").await.expect("visitor A");
    let b = Visitor::new(&driver, "B").await.expect("visitor B");
    a.goto(PAGE).await;
    b.goto(PAGE).await;
    let ua = a.js("return navigator.userAgent", vec![]).await;
    println!("user agent: {ua}");
    assert!(ua.as_str().unwrap_or_default().contains("Chrome"), "{ua}");
    let browsers = browser_processes();
    assert_eq!(
        browsers.len(),
        2,
        "expected one Chromium per visitor: {browsers:#?}"
    );

    let offer = a
        .client()
        .execute_async(
            &format!(
                "{GATHERED}
                 const done = arguments[0];
                 const pc = new RTCPeerConnection();
                 const ch = pc.createDataChannel('smoke');
                 window.pc = pc; window.ch = ch; window.got = null;
                 ch.onmessage = (e) => {{ window.got = e.data; }};
                 pc.createOffer().then((o) => pc.setLocalDescription(o))
                   .then(() => gathered(pc)).then(done, (e) => done('ERROR ' + e));"
            ),
            vec![],
        )
        .await
        .expect("offer");
    let offer = offer.as_str().expect("offer sdp").to_owned();
    println!(
        "A's candidates:\n{}",
        offer
            .lines()
            .filter(|l| l.starts_with("a=candidate"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        offer.contains("a=candidate") && !offer.starts_with("ERROR"),
        "A gathered no ICE candidate: {offer}"
    );
    let answer = b
        .client()
        .execute_async(
            &format!(
                "{GATHERED}
                 const [offer, done] = arguments;
                 const pc = new RTCPeerConnection();
                 window.pc = pc; window.got = null;
                 pc.ondatachannel = (e) => {{
                   window.ch = e.channel;
                   e.channel.onmessage = (m) => {{
                     window.got = m.data; e.channel.send('pong:' + m.data);
                   }};
                 }};
                 pc.setRemoteDescription({{ type: 'offer', sdp: offer }})
                   .then(() => pc.createAnswer()).then((a) => pc.setLocalDescription(a))
                   .then(() => gathered(pc)).then(done, (e) => done('ERROR ' + e));"
            ),
            vec![json!(offer)],
        )
        .await
        .expect("answer");
    let answer = answer.as_str().expect("answer sdp").to_owned();
    assert!(!answer.starts_with("ERROR"), "{answer}");
    a.js(
        "return window.pc.setRemoteDescription({ type: 'answer', sdp: arguments[0] }).then(() => true)",
        vec![json!(answer)],
    )
    .await;
    a.poll(
        "the data channel to open",
        tests::PAGE_TIMEOUT,
        "return window.ch.readyState",
        vec![],
        |v| (v == "open").then_some(()),
    )
    .await;
    a.js("window.ch.send('ping')", vec![]).await;
    b.poll(
        "ping from A",
        tests::PAGE_TIMEOUT,
        "return window.got",
        vec![],
        |v| (v == "ping").then_some(()),
    )
    .await;
    a.poll(
        "pong from B",
        tests::PAGE_TIMEOUT,
        "return window.got",
        vec![],
        |v| (v == "pong:ping").then_some(()),
    )
    .await;
    a.close().await;
    b.close().await;
}

/// Command lines of Chromium browser (not helper) processes. Our pid
/// namespace has its own `/proc`, so only this test's processes show.
fn browser_processes() -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains("--user-data-dir=") && !cmdline.contains("--type=") {
            found.push(cmdline);
        }
    }
    found
}
