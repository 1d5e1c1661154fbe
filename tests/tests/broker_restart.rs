//! The broker restarts (SIGTERM, then a new process on the same address)
//! while a browser holds a page: the holder reconnects and re-announces on
//! its own, and the page is reachable again within seconds, nothing lost.

use std::time::{Duration, Instant};

use tests::text::random_text;
use tests::{Broker, ChromeDriver, Visitor};

#[tokio::test]
async fn broker_restart() {
    if !tests::netns::enter_or_reexec("broker_restart") {
        return;
    }
    let www = tests::www_dir().expect("app files");
    let broker = Broker::start(&www, true).expect("broker");
    let addr = broker.addr();
    let driver = ChromeDriver::start().expect("chromedriver");
    let text = random_text(10 * 1024);

    let a = Visitor::new(&driver, "A").await.expect("visitor A");
    a.goto(&broker.url("/")).await;
    a.type_text("#editor", &text).await;
    a.click("#share").await;
    a.wait_state(&["holding"]).await;
    a.wait_holders(1).await;
    let link = broker.url(&a.path().await);

    let status = broker.stop().expect("stop the broker");
    assert!(
        status.success(),
        "the broker exits cleanly on SIGTERM: {status}"
    );
    let restarted = Instant::now();
    let broker = Broker::start_at(&www, &addr.to_string(), true).expect("restart the broker");

    // A re-announces what it holds once it has reconnected.
    loop {
        if broker.metric("broker_addresses").unwrap_or(0.0) == 1.0 {
            break;
        }
        assert!(
            restarted.elapsed() < Duration::from_secs(15),
            "the holder did not re-announce its page within 15 s of the restart"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "holder re-announced {:?} after the restart",
        restarted.elapsed()
    );

    let b = Visitor::new(&driver, "B").await.expect("visitor B");
    b.goto(&link).await;
    b.wait_state(&["verified", "holding"]).await;
    b.wait_text("#viewer", &text).await;
    b.wait_holders(2).await;
    a.wait_holders(2).await;
    a.close().await;
    b.close().await;
}
