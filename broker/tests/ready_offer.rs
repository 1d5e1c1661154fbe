//! Ready offers: a holder's pre-made offer rides on the next introduction.

mod common;

use common::{fresh_address, hold, signal, want, Broker, Client, QUIET};
use serde_json::{json, Value};

fn ready(sdp: &str) -> Value {
    json!({"ready": {"data": {"kind": "ready", "sdp": sdp}}})
}

async fn holder_with_offer(broker: &Broker, content: &str, sdp: &str) -> Client {
    let mut h = broker.client().await;
    h.send_json(&ready(sdp)).await;
    h.send_json(&hold(content)).await;
    h.expect_holders(content, 1).await;
    h
}

#[tokio::test]
async fn introduction_carries_the_ready_offer_once_and_tells_the_holder() {
    let broker = Broker::start().await;
    let content = fresh_address();
    let mut h = holder_with_offer(&broker, &content, "offer-1").await;

    let mut w1 = broker.client().await;
    w1.send_json(&want(&content)).await;
    w1.expect_holders(&content, 1).await;
    assert_eq!(
        w1.recv().await,
        json!({"introduce": {"content": content, "holder": h.id,
                             "offer": {"kind": "ready", "sdp": "offer-1"}}})
    );
    assert_eq!(h.recv().await, json!({"offer_taken": {"by": w1.id}}));

    // Handed out once: the next wanter makes its own offer.
    let mut w2 = broker.client().await;
    w2.send_json(&want(&content)).await;
    w2.expect_holders(&content, 1).await;
    assert_eq!(
        w2.recv().await,
        json!({"introduce": {"content": content, "holder": h.id}})
    );
    h.expect_nothing(QUIET).await;

    // A fresh ready offer goes to the wanter after that.
    h.send_json(&ready("offer-2")).await;
    let mut w3 = broker.client().await;
    w3.send_json(&want(&content)).await;
    w3.expect_holders(&content, 1).await;
    assert_eq!(
        w3.recv().await["introduce"]["offer"]["sdp"],
        json!("offer-2")
    );
    assert_eq!(h.recv().await, json!({"offer_taken": {"by": w3.id}}));
    assert_eq!(broker.metric("broker_ready_offers_total").await, 2);
    assert_eq!(broker.metric("broker_introductions_total").await, 3);
}

#[tokio::test]
async fn a_newer_ready_offer_replaces_the_older_one() {
    let broker = Broker::start().await;
    let content = fresh_address();
    let mut h = holder_with_offer(&broker, &content, "old").await;
    h.send_json(&ready("new")).await;
    let mut w = broker.client().await;
    w.send_json(&want(&content)).await;
    w.expect_holders(&content, 1).await;
    assert_eq!(w.recv().await["introduce"]["offer"]["sdp"], json!("new"));
}

#[tokio::test]
async fn a_waiting_wanter_gets_the_offer_when_the_holder_appears() {
    let broker = Broker::start().await;
    let content = fresh_address();
    let mut w = broker.client().await;
    w.send_json(&want(&content)).await;
    w.expect_holders(&content, 0).await;

    let mut h = broker.client().await;
    h.send_json(&ready("early")).await;
    h.send_json(&hold(&content)).await;
    assert_eq!(h.recv().await, json!({"offer_taken": {"by": w.id}}));
    let msgs = w.recv_n(2).await;
    assert!(
        msgs.contains(&json!({"introduce": {"content": content, "holder": h.id,
                                            "offer": {"kind": "ready", "sdp": "early"}}})),
        "{msgs:?}"
    );
}

#[tokio::test]
async fn the_answer_reaches_the_holder_stamped_with_the_wanter() {
    let broker = Broker::start().await;
    let content = fresh_address();
    let mut h = holder_with_offer(&broker, &content, "o").await;
    let mut w = broker.client().await;
    w.send_json(&want(&content)).await;
    w.recv_n(2).await;
    assert_eq!(h.recv().await, json!({"offer_taken": {"by": w.id}}));
    let answer = json!({"kind": "ready_answer", "sdp": "a",
                        "request": {"manifest": {"content": content, "prefetch": 4}}});
    w.send_json(&signal(&h.id, answer.clone())).await;
    assert_eq!(
        h.recv().await,
        json!({"signal": {"from": w.id, "data": answer}})
    );
}

#[tokio::test]
async fn an_oversized_ready_offer_is_refused_and_the_connection_stays() {
    let broker = Broker::start().await;
    let mut h = broker.client().await;
    h.send_json(&ready(&"x".repeat(9 * 1024))).await;
    let err = h.expect_error("too_large").await;
    assert!(
        err["message"].as_str().unwrap().contains("8192-byte limit"),
        "{err}"
    );
    h.assert_usable().await;

    // Nothing was kept: a wanter gets a plain introduction.
    let content = fresh_address();
    h.send_json(&hold(&content)).await;
    h.expect_holders(&content, 1).await;
    let mut w = broker.client().await;
    w.send_json(&want(&content)).await;
    w.expect_holders(&content, 1).await;
    assert_eq!(
        w.recv().await,
        json!({"introduce": {"content": content, "holder": h.id}})
    );
}
