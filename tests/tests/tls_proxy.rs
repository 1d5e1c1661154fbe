//! The broker behind nginx terminating TLS, configured with the operators'
//! file `deploy/nginx/peerpage.conf` (see `tests::nginx`): the share flow
//! over https and wss, and idle WebSockets kept open through nginx's read
//! timeout by the broker's pings.
//!
//! Needs `target/debug/broker` (`cargo build -p broker`), `www/pkg`
//! (`just build-wasm`), nginx and openssl (`.ci/setup`).

use std::time::Duration;

use serde_json::json;
use tests::text::random_text;
use tests::visitor::assert_peer_to_peer;
use tests::{is_content_path, Broker, ChromeDriver, Nginx, Visitor};

/// Much more than the signaling of one fetch, so that the broker's byte
/// counters can tell whether the content went through it.
const TEXT_BYTES: usize = 40 * 1024;

/// States in which `#viewer` must hold the verified content.
const DONE: &[&str] = &["verified", "holding"];

/// The test certificate is self-signed.
const CHROME_ARGS: &[&str] = &["--ignore-certificate-errors"];

/// As the systemd unit starts it: nginx on this host gives the client
/// address.
const TRUSTED_PROXY: &[&str] = &["--trusted-proxy", "127.0.0.1"];

#[tokio::test]
async fn share_over_tls_proxy() {
    if !tests::netns::enter_or_reexec("share_over_tls_proxy") {
        return;
    }
    let www = tests::www_dir().expect("app files");
    let broker = Broker::start_with(&www, "127.0.0.1:0", true, TRUSTED_PROXY).expect("broker");
    let nginx = Nginx::start(broker.addr(), "").expect("nginx with deploy/nginx/peerpage.conf");
    let driver = ChromeDriver::start().expect("chromedriver");
    let text = random_text(TEXT_BYTES);
    let len = text.len() as u64;

    let (status, _) = tests::http::get(nginx.http_addr(), "/").expect("GET / over plain http");
    assert_eq!(status, 301, "plain http should redirect to https");

    let a = Visitor::with_args(&driver, "A", CHROME_ARGS)
        .await
        .expect("visitor A");
    a.goto(&nginx.url("/")).await;
    a.type_text("#editor", &text).await;
    a.click("#share").await;
    a.wait_state(&["holding"]).await;
    let path = a.path().await;
    assert!(
        is_content_path(&path),
        "after Share the path should be /<64 lowercase hex>, got {path:?}"
    );
    a.wait_holders(1).await;
    let link = nginx.url(&path);
    println!("A holds {link}");

    let ws_before = broker.ws_bytes().expect("metrics");
    let b = Visitor::with_args(&driver, "B", CHROME_ARGS)
        .await
        .expect("visitor B");
    b.goto(&link).await;
    assert_eq!(
        b.js("return location.href", vec![]).await,
        json!(link),
        "B should be on the share link over https, not on an error page"
    );
    b.wait_state(DONE).await;
    b.wait_text("#viewer", &text).await;
    b.wait_holders(2).await;
    a.wait_holders(2).await;
    let ws_delta = broker.ws_bytes().expect("metrics") - ws_before;
    let (a_stats, b_stats) = (a.peer_stats().await, b.peer_stats().await);
    println!("B got {len} bytes; B {b_stats:?}; A {a_stats:?}; broker WebSocket bytes: {ws_delta}");
    assert_peer_to_peer(len, a_stats, b_stats, ws_delta);
    assert_eq!(
        broker.metric("broker_ready_offers_total").expect("metrics"),
        1.0,
        "B should have answered A's ready offer"
    );

    // nginx logs a WebSocket when it closes: with both pages gone, each
    // page's socket shows as an https upgrade (101) of /ws.
    a.close().await;
    b.close().await;
    let nginx = &nginx;
    let upgrades = wait_for(Duration::from_secs(30), || async move {
        let n = nginx
            .access_log()
            .lines()
            .filter(|l| *l == "https GET /ws 101")
            .count();
        (n >= 2).then_some(n)
    })
    .await
    .unwrap_or_else(|| {
        panic!(
            "nginx's access log should show both pages' /ws upgrades over https \
             (`https GET /ws 101`):\n{}",
            nginx.access_log()
        )
    });
    println!("nginx upgraded {upgrades} WebSockets over https");
}

/// The client is a plain `WebSocket` in a page of nginx's origin: a real
/// browser over real TLS, so the tests crate needs no TLS stack of its own.
#[tokio::test]
async fn idle_socket_through_tls_proxy() {
    if !tests::netns::enter_or_reexec("idle_socket_through_tls_proxy") {
        return;
    }
    let www = tests::www_dir().expect("app files");
    let driver = ChromeDriver::start().expect("chromedriver");
    let v = Visitor::with_args(&driver, "idle", CHROME_ARGS)
        .await
        .expect("visitor");

    // A ping every second: nginx never waits 3 s for the broker.
    let kept = idle_socket(&v, &www, &["--ping-interval", "1"]).await;
    println!("pings every 1 s: {kept:?}");
    assert_eq!(
        kept.closed_after, None,
        "with pings every second the socket should survive {IDLE:?} idle behind a 3 s \
         proxy_read_timeout: {kept:?}"
    );
    assert!(
        kept.answered,
        "the socket was open but the broker did not answer after the idle time: {kept:?}"
    );
    assert!(
        !kept.proxy_timed_out,
        "nginx logged an upstream timeout despite the pings: {kept:?}"
    );
    assert_eq!(
        (kept.broker_peers, kept.broker_idle_drops),
        (1.0, 0.0),
        "the broker should still count the one idle peer: {kept:?}"
    );

    // No ping before a minute: the same idle time is more than nginx waits.
    let cut = idle_socket(
        &v,
        &www,
        &["--ping-interval", "60", "--idle-timeout", "120"],
    )
    .await;
    println!("pings every 60 s: {cut:?}");
    let after = cut.closed_after.unwrap_or_else(|| {
        panic!("without pings nginx should close the socket idle for 3 s, it stayed open: {cut:?}")
    });
    assert!(
        (2.5..IDLE.as_secs_f64()).contains(&after),
        "nginx should close the socket after its 3 s read timeout, it closed after {after} s: \
         {cut:?}"
    );
    assert!(
        cut.proxy_timed_out,
        "the socket closed, but nginx did not log an upstream timeout: {cut:?}"
    );
    // 1006: no close frame, the connection was cut; not the broker's doing.
    assert_eq!(
        (cut.close_code, cut.broker_idle_drops),
        (Some(1006), 0.0),
        "nginx, not the broker, should have cut the socket: {cut:?}"
    );
    v.close().await;
}

/// How long the socket stays idle: well past nginx's 3 s read timeout.
const IDLE: Duration = Duration::from_secs(8);

/// What became of a WebSocket left idle for [`IDLE`] behind nginx.
#[derive(Debug)]
struct Idle {
    /// Seconds from the broker's welcome to the close, if it closed.
    closed_after: Option<f64>,
    /// The close code the page saw.
    close_code: Option<u64>,
    /// Whether the broker answered a message sent after the idle time.
    answered: bool,
    /// Whether nginx's error log says the broker timed out.
    proxy_timed_out: bool,
    /// Peers the broker had after the idle time.
    broker_peers: f64,
    /// Peers the broker dropped for silence: never expected here, where the
    /// page answers every ping.
    broker_idle_drops: f64,
}

/// Starts a broker with `flags` behind nginx with a 3 s
/// `proxy_read_timeout`, opens a WebSocket to it from a page of the same
/// origin, waits for the welcome, leaves the socket idle for [`IDLE`] and
/// then sends a message the broker answers (with an error, which is enough).
async fn idle_socket(v: &Visitor, www: &std::path::Path, flags: &[&str]) -> Idle {
    let flags = [TRUSTED_PROXY, flags].concat();
    let broker = Broker::start_with(www, "127.0.0.1:0", true, &flags).expect("broker");
    let nginx = Nginx::start(broker.addr(), "proxy_read_timeout 3s;").expect("nginx");
    // Any page of nginx's origin, so the broker accepts the socket's Origin.
    v.goto(&nginx.url("/healthz")).await;
    v.js(
        "const s = window.idle = { messages: [] };
         const ws = s.ws = new WebSocket(`wss://${location.host}/ws`);
         ws.onmessage = (e) => {
           const msg = JSON.parse(e.data);
           if (msg.welcome) s.welcomed = performance.now();
           s.messages.push(msg);
         };
         ws.onclose = (e) => { s.closed = performance.now(); s.code = e.code; };",
        vec![],
    )
    .await;
    v.poll(
        "the broker's welcome over wss",
        tests::PAGE_TIMEOUT,
        "return !!window.idle.welcomed",
        vec![],
        |v| v.as_bool().filter(|b| *b),
    )
    .await;
    tokio::time::sleep(IDLE).await;
    let state = v
        .js(
            "const s = window.idle;
             return { open: s.ws.readyState === WebSocket.OPEN,
                      after: s.closed && (s.closed - s.welcomed) / 1000, code: s.code };",
            vec![],
        )
        .await;
    let open = state["open"] == json!(true);
    let broker_peers = broker.metric("broker_peers").expect("metrics");
    let answered = open && {
        v.js("window.idle.ws.send('{}')", vec![]).await;
        wait_for(Duration::from_secs(10), || async move {
            let got = v
                .js(
                    "return window.idle.messages.some((m) => m.error !== undefined)",
                    vec![],
                )
                .await;
            (got == json!(true)).then_some(())
        })
        .await
        .is_some()
    };
    Idle {
        closed_after: state["after"].as_f64(),
        close_code: state["code"].as_u64(),
        answered,
        broker_peers,
        proxy_timed_out: nginx.error_log().contains("upstream timed out"),
        broker_idle_drops: broker.metric("broker_idle_drops_total").expect("metrics"),
    }
}

/// Polls `check` every [`tests::POLL`] until it returns `Some`, for at most
/// `timeout`.
async fn wait_for<T, F: std::future::Future<Output = Option<T>>>(
    timeout: Duration,
    mut check: impl FnMut() -> F,
) -> Option<T> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(t) = check().await {
            return Some(t);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(tests::POLL).await;
    }
}
