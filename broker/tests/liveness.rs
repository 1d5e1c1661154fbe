//! Pings find dead and half-open connections; the message rate is bounded.

mod common;

use std::time::Duration;

use common::{fresh_address, want, Broker};

async fn quick_pings() -> Broker {
    Broker::start_with(|c| {
        c.ping_interval = Duration::from_millis(100);
        c.idle_timeout = Duration::from_millis(350);
    })
    .await
}

#[tokio::test]
async fn a_peer_that_answers_no_pings_is_dropped_within_the_timeout() {
    let broker = quick_pings().await;
    // Connected, then silent: a client that never reads never answers the
    // broker's pings, like a browser whose network vanished.
    let silent = broker.client().await;
    assert_eq!(broker.metric("broker_peers").await, 1);
    tokio::time::sleep(Duration::from_millis(600)).await;
    broker.wait_metric("broker_peers", 0).await;
    assert_eq!(broker.metric("broker_idle_drops_total").await, 1);
    drop(silent);
}

#[tokio::test]
async fn a_live_peer_answers_pings_and_stays() {
    let broker = quick_pings().await;
    let mut live = broker.client().await;
    // Reading answers pings (the client library sends the pongs); nothing
    // else arrives.
    live.expect_nothing(Duration::from_millis(1_000)).await;
    live.assert_usable().await;
    assert_eq!(broker.metric("broker_idle_drops_total").await, 0);
}

#[tokio::test]
async fn messages_past_the_rate_are_refused_and_the_connection_stays() {
    let broker = Broker::start_with(|c| {
        c.message_rate = 10;
        c.message_burst = 5;
    })
    .await;
    let mut client = broker.client().await;
    let addresses: Vec<String> = (0..6).map(|_| fresh_address()).collect();
    for a in &addresses {
        client.send_json(&want(a)).await;
    }
    for a in &addresses[..5] {
        client.expect_holders(a, 0).await;
    }
    let err = client.expect_error("rate_limited").await;
    let message = err["message"].as_str().unwrap();
    assert!(message.contains("10 per second"), "{message}");
    // After a pause the budget is back.
    tokio::time::sleep(Duration::from_millis(500)).await;
    client.assert_usable().await;
    assert_eq!(
        broker
            .metric("broker_errors_total{code=\"rate_limited\"}")
            .await,
        1
    );
}

#[tokio::test]
async fn a_flood_is_disconnected_with_a_reason() {
    let broker = Broker::start_with(|c| {
        c.message_rate = 10;
        c.message_burst = 5;
    })
    .await;
    let mut flooder = broker.client().await;
    for _ in 0..20 {
        flooder.send_json(&want(&fresh_address())).await;
    }
    let (code, reason) = flooder
        .expect_close_ignoring(|_| true)
        .await
        .expect("a close frame");
    assert_eq!(code, 1008);
    assert!(reason.contains("flood"), "{reason}");
    broker.wait_metric("broker_peers", 0).await;
    assert_eq!(broker.metric("broker_flood_drops_total").await, 1);
}
