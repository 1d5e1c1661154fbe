//! Relays only, through a real coturn. With `?relay` the app sets
//! `iceTransportPolicy: "relay"`, so content can only move through a TURN
//! server, authenticated with the credentials the broker mints from the
//! secret it shares with coturn (`use-auth-secret`). Then a broker with the
//! wrong secret: coturn refuses its peers and the content never arrives.
//!
//! The proof that the content went through TURN is coturn's own account:
//! when a browser releases an allocation, coturn logs its `peer usage`,
//! the bytes it relayed, under the allocation's username
//! (`<expiry>:<peer id>`). B's allocations must have relayed at least the
//! text to B, and A's must have relayed it from A. This is counted by the
//! server that did the relaying, needs no access to the page's
//! `RTCPeerConnection`s (the peer keeps them to itself), and also shows
//! whose credentials carried the bytes, which a "relay" candidate type
//! alone would not.
//!
//! Needs `/usr/bin/turnserver` (Debian's coturn, see `.ci/setup`),
//! `target/debug/broker` and `www/pkg`, like `share_flow`.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use tests::text::random_text;
use tests::turn::PeerUsage;
use tests::{is_content_path, Broker, ChromeDriver, TurnServer, Visitor, PAGE_TIMEOUT};

/// veth0's address in the test namespace (see `tests::netns`): TURN must
/// listen and relay on a non-loopback address that Chromium uses.
const TURN_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);

/// Far more than the signaling and TURN control traffic of one fetch.
const TEXT_BYTES: usize = 40 * 1024;

/// How long B gets to (not) receive with a broker holding the wrong secret:
/// the download gives up on a holder after 10 s without a connection
/// (`protocol::download::CONNECT_TIMEOUT_MS`), so this covers a whole
/// failed attempt.
const REFUSED_WATCH: Duration = Duration::from_secs(25);

#[tokio::test]
async fn turn_relay() {
    if !tests::netns::enter_or_reexec("turn_relay") {
        return;
    }
    let started = Instant::now();
    let step = |what: &str| println!("[{:>6.1} s] {what}", started.elapsed().as_secs_f64());

    let www = tests::www_dir().expect("app files");
    let turn = TurnServer::start(TURN_IP, false).expect("coturn");
    let driver = ChromeDriver::start().expect("chromedriver");
    step(&format!("coturn at {}", turn.url()));

    relays_with_the_brokers_credentials(&www, &turn, &driver, &step).await;
    wrong_secret_gets_nothing(&www, &turn, &driver, &step).await;
    step("done");
}

async fn relays_with_the_brokers_credentials(
    www: &std::path::Path,
    turn: &TurnServer,
    driver: &ChromeDriver,
    step: &impl Fn(&str),
) {
    let turn_url = turn.url();
    let args = ["--turn-url", &turn_url, "--turn-secret", turn.secret()];
    let broker = Broker::start_with(www, "127.0.0.1:0", true, &args).expect("broker");
    let text = random_text(TEXT_BYTES);
    let len = text.len() as u64;

    step("A opens /?relay and shares the text");
    let (a, link) = share(driver, &broker, "A", &text).await;
    let a_id = peer_id(&a).await;

    step("B opens the link, relay forced too");
    let b = Visitor::new(driver, "B").await.expect("visitor B");
    b.goto(&link).await;
    b.wait_state(&["verified", "holding"]).await;
    b.wait_text("#viewer", &text).await;
    let b_id = peer_id(&b).await;
    let b_stats = b.peer_stats().await;
    assert!(
        b_stats.bytes_from_peers >= len,
        "B received only {} bytes over data channels for a {len}-byte text",
        b_stats.bytes_from_peers
    );

    // coturn accepted usernames of the broker's scheme for both peers: the
    // passwords were right, i.e. derived from the shared secret.
    let allocated = turn.allocated();
    for (who, id) in [("A", &a_id), ("B", &b_id)] {
        let user = allocated
            .iter()
            .find(|u| u.ends_with(&format!(":{id}")))
            .unwrap_or_else(|| {
                panic!("coturn allocated nothing for {who} ({id}); allocated: {allocated:?}")
            });
        check_expiry(user);
    }

    step("both pages close their peers, releasing their TURN allocations");
    b.js("window.peer.close()", vec![]).await;
    a.js("window.peer.close()", vec![]).await;
    let (to_b, from_a) = turn
        .wait_for(
            &format!("the relayed bytes of A ({a_id}) and B ({b_id})"),
            PAGE_TIMEOUT,
            |t| {
                let usage = t.peer_usage();
                let mine = |id: &String, u: &&PeerUsage| u.username.ends_with(id.as_str());
                let to_b: u64 = usage
                    .iter()
                    .filter(|u| mine(&b_id, u))
                    .map(|u| u.received)
                    .sum();
                let from_a: u64 = usage
                    .iter()
                    .filter(|u| mine(&a_id, u))
                    .map(|u| u.sent)
                    .sum();
                (to_b >= len && from_a >= len).then_some((to_b, from_a))
            },
        )
        .await;
    step(&format!(
        "coturn relayed {from_a} bytes from A and {to_b} bytes to B for a {len}-byte text"
    ));
    a.close().await;
    b.close().await;
}

async fn wrong_secret_gets_nothing(
    www: &std::path::Path,
    turn: &TurnServer,
    driver: &ChromeDriver,
    step: &impl Fn(&str),
) {
    let turn_url = turn.url();
    let wrong = format!("not-{}", turn.secret());
    let args = ["--turn-url", &turn_url, "--turn-secret", &wrong];
    let broker = Broker::start_with(www, "127.0.0.1:0", true, &args).expect("broker");
    let text = random_text(TEXT_BYTES);

    step("with a broker holding the wrong secret: A shares, B opens the link");
    let (a, link) = share(driver, &broker, "A2", &text).await;
    let b = Visitor::new(driver, "B2").await.expect("visitor B2");
    b.goto(&link).await;
    let b_id = peer_id(&b).await;
    turn.wait_for(
        &format!("coturn to refuse B2's credentials ({b_id})"),
        PAGE_TIMEOUT,
        |t| t.refused().iter().any(|u| u.ends_with(&b_id)).then_some(()),
    )
    .await;

    step("coturn refused B2; B2 must not receive anything");
    let watch = Instant::now();
    let mut seen: Vec<String> = Vec::new();
    while watch.elapsed() < REFUSED_WATCH {
        let state = b.state().await.unwrap_or_default();
        assert!(
            !["receiving", "verified", "holding"].contains(&state.as_str()),
            "B2 reached {state:?} although coturn refused its credentials: content moved \
             without the relay; page: {}",
            b.describe().await
        );
        if seen.last() != Some(&state) {
            seen.push(state);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let stats = b.peer_stats().await;
    assert_eq!(stats.bytes_from_peers, 0, "B2 received data: {stats:?}");
    assert_eq!(b.text("#viewer").await.as_deref(), Some(""));
    let allocated = turn.allocated();
    assert!(
        !allocated.iter().any(|u| u.ends_with(&b_id)),
        "coturn allocated a relay for B2 ({b_id}) with credentials from the wrong secret: \
         {allocated:?}"
    );
    let status = b.text("#status").await.unwrap_or_default();
    let log = b.text("#log").await.unwrap_or_default();
    // The page says why: the attempt timed out, and relays are forced.
    for says in ["could not connect", "TURN server"] {
        assert!(
            log.contains(says),
            "B2's log should mention {says:?} after a failed relay-only attempt; it has {log:?}"
        );
    }
    step(&format!(
        "B2 went through {seen:?}; it shows {status:?}; its log: {log:?}"
    ));
    a.close().await;
    b.close().await;
}

/// A new visitor `name` opens `/?relay` and shares `text`; returns it and
/// the share link its address bar then shows (with `?relay`).
async fn share(
    driver: &ChromeDriver,
    broker: &Broker,
    name: &str,
    text: &str,
) -> (Visitor, String) {
    let v = Visitor::new(driver, name).await.expect("visitor");
    v.goto(&broker.url("/?relay")).await;
    v.type_text("#editor", text).await;
    v.click("#share").await;
    v.wait_state(&["holding"]).await;
    let path = v.path().await;
    assert!(
        is_content_path(&path),
        "{name}: after Share the path should be /<64 lowercase hex>, got {path:?}"
    );
    let link = v.url().await;
    assert!(
        link.ends_with(&format!("{path}?relay")),
        "{name}: the share link should keep ?relay, got {link}"
    );
    (v, link)
}

/// `window.peer.id`, once the broker welcomed the page.
async fn peer_id(v: &Visitor) -> String {
    v.poll(
        "the broker to give the page an id",
        PAGE_TIMEOUT,
        "return window.peer && window.peer.id",
        vec![],
        |id: &Value| id.as_str().map(str::to_owned),
    )
    .await
}

/// `user` is `<expiry>:<peer id>` with an expiry ahead, within the
/// broker's default TTL of a day.
fn check_expiry(user: &str) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    let expiry: u64 = user
        .split_once(':')
        .and_then(|(e, _)| e.parse().ok())
        .unwrap_or_else(|| panic!("TURN username {user:?} is not <expiry>:<peer id>"));
    assert!(
        expiry > now && expiry <= now + 86_400 + 60,
        "TURN username {user:?} should expire within a day from now ({now})"
    );
}
