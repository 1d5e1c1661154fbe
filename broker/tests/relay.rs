//! Relaying WebRTC handshake payloads: verbatim delivery, sender stamping,
//! unknown and departed peers.

mod common;

use common::{fresh_address, hold, release, signal, want, Broker, Client, QUIET};
use serde_json::json;

/// Sends `data` (raw JSON text, sent byte for byte) from `from` to `to` and
/// checks that `to` receives exactly `{"signal":{"from":<from>,"data":<data>}}`.
async fn relay_verbatim(from: &mut common::Client, to: &mut common::Client, data: &str) {
    from.send_text(format!(
        r#"{{"signal":{{"to":"{}","data":{data}}}}}"#,
        to.id
    ))
    .await;
    let got = to.recv_text().await;
    assert_eq!(
        got,
        format!(r#"{{"signal":{{"from":"{}","data":{data}}}}}"#, from.id),
        "the payload must arrive byte for byte, stamped with the real sender"
    );
}

#[tokio::test]
async fn offer_answer_and_candidates_arrive_verbatim() {
    let broker = Broker::start().await;
    let mut wanter = broker.client().await;
    let mut holder = broker.client().await;
    let content = fresh_address();

    // Odd spacing, key order, escapes and number forms that a parse and
    // re-serialize would change: the broker must not touch any of it.
    let offer = format!(
        r#"{{ "kind" : "offer", "sdp":"v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\na=group:BUNDLE 0\r\n", "content":"{content}", "x":1.50, "u":"\u00e9\ud83d\ude00" }}"#
    );
    relay_verbatim(&mut wanter, &mut holder, &offer).await;

    let answer = r#"{"sdp":"v=0\r\no=- 1 2 IN IP4 0.0.0.0\r\n","kind":"answer"}"#;
    relay_verbatim(&mut holder, &mut wanter, answer).await;

    for (from_wanter, candidate) in [
        (
            true,
            r#"{"kind":"candidate","side":"fetch","candidate":"candidate:842163049 1 udp 1677729535 192.0.2.3 54321 typ srflx raddr 0.0.0.0 rport 0 generation 0","sdp_mid":"0","sdp_m_line_index":0}"#,
        ),
        (
            false,
            r#"{"kind":"candidate","side":"serve","candidate":"candidate:1 1 udp 2122260223 10.0.0.2 50000 typ host","sdp_mid":null,"sdp_m_line_index":null}"#,
        ),
        (
            true,
            r#"{"kind":"candidate","side":"fetch","candidate":""}"#,
        ),
    ] {
        if from_wanter {
            relay_verbatim(&mut wanter, &mut holder, candidate).await;
        } else {
            relay_verbatim(&mut holder, &mut wanter, candidate).await;
        }
    }

    // Beyond its one `kind`, an object is opaque to the broker.
    for data in [
        r#"{"kind":"bye"}"#,
        r#"{"kind":"x-other","n":null}"#,
        r#"{"a":[1,[2,[3]]],"kind":"42"}"#,
        r#"{"kind":"candidate","nested":{"kind":"answer"}}"#,
        r#"{ "kind" :"\u0063andidate"}"#,
    ] {
        relay_verbatim(&mut wanter, &mut holder, data).await;
    }

    // Nobody received anything extra (no echo to the sender).
    wanter.expect_nothing(QUIET).await;
    holder.expect_nothing(QUIET).await;
    assert_eq!(broker.metric("broker_relayed_total").await, 10);
    assert_eq!(
        broker
            .metric("broker_messages_total{type=\"signal\"}")
            .await,
        10
    );
    assert_eq!(
        broker.metric("broker_messages_total{type=\"hold\"}").await,
        0
    );
}

#[tokio::test]
async fn the_sender_is_stamped_and_cannot_be_spoofed_through_the_payload() {
    let broker = Broker::start().await;
    let mut mallory = broker.client().await;
    let mut bob = broker.client().await;
    let mut alice = broker.client().await;

    // Payloads that claim to come from alice, at every depth.
    for data in [
        json!({"from": alice.id, "kind": "candidate", "candidate": "x"}),
        json!({"kind": "x", "signal": {"from": alice.id, "data": {"kind": "bye", "reason": "x"}}}),
        json!({"kind": "x", "from": [{"from": alice.id}]}),
    ] {
        mallory.send_json(&signal(&bob.id, data.clone())).await;
        assert_eq!(
            bob.recv().await,
            json!({"signal": {"from": mallory.id, "data": data}}),
            "the broker stamps the real sender; the payload stays opaque"
        );
    }
    alice.expect_nothing(QUIET).await;
}

#[tokio::test]
async fn a_from_field_in_a_client_message_is_rejected() {
    let broker = Broker::start().await;
    let mut mallory = broker.client().await;
    let mut bob = broker.client().await;
    let mut alice = broker.client().await;
    let data = json!({"kind": "candidate", "candidate": "x"});

    // Inside the signal: an unknown field (deny_unknown_fields).
    mallory
        .send_json(&json!({"signal": {"to": bob.id, "from": alice.id, "data": data}}))
        .await;
    let err = mallory.expect_error("bad_message").await;
    let text = err["message"].as_str().unwrap();
    assert!(
        text.contains("from"),
        "the error names the offending field: {text}"
    );
    mallory.assert_usable().await;

    // Beside the signal, as a second key: a message has exactly one key.
    mallory
        .send_text(format!(
            r#"{{"from":"{}","signal":{{"to":"{}","data":{data}}}}}"#,
            alice.id, bob.id
        ))
        .await;
    mallory.expect_error("bad_message").await;
    mallory.assert_usable().await;

    // After the signal: the same.
    mallory
        .send_text(format!(
            r#"{{"signal":{{"to":"{}","data":{data}}},"from":"{}"}}"#,
            bob.id, alice.id
        ))
        .await;
    mallory.expect_error("bad_message").await;
    mallory.assert_usable().await;

    // None of it was relayed, and the connection still relays properly.
    bob.expect_nothing(QUIET).await;
    alice.expect_nothing(QUIET).await;
    mallory.send_json(&signal(&bob.id, data.clone())).await;
    assert_eq!(
        bob.recv().await,
        json!({"signal": {"from": mallory.id, "data": data}})
    );
}

#[tokio::test]
async fn signal_to_an_unknown_peer_names_it() {
    let broker = Broker::start().await;
    let mut client = broker.client().await;
    let nobody = uuid::Uuid::new_v4().to_string();
    client
        .send_json(&signal(&nobody, json!({"kind": "bye", "reason": "x"})))
        .await;
    let err = client.expect_error("unknown_peer").await;
    assert_eq!(err["peer"], nobody.as_str(), "{err}");
    assert!(err["message"].as_str().unwrap().contains(&nobody), "{err}");
    client.assert_usable().await;
}

/// A wanter introduced to a holder of fresh content; returns the wanter,
/// the holder and the content. When the holder leaves, the wanter's count
/// drops to 0 exactly when the broker has forgotten the holder.
async fn introduced_pair(broker: &Broker) -> (Client, Client, String) {
    let mut sender = broker.client().await;
    let content = fresh_address();
    let mut holder = broker.client().await;
    holder.send_json(&hold(&content)).await;
    holder.expect_holders(&content, 1).await;
    sender.send_json(&want(&content)).await;
    sender.expect_holders(&content, 1).await;
    assert_eq!(sender.expect_introduce(&content).await, holder.id);
    (sender, holder, content)
}

#[tokio::test]
async fn signal_to_a_departed_peer_is_unknown_peer() {
    let broker = Broker::start().await;
    let (mut sender, gone, content) = introduced_pair(&broker).await;
    let gone_id = gone.id.clone();
    gone.close().await;
    sender.expect_holders(&content, 0).await;

    sender
        .send_json(&signal(&gone_id, json!({"kind": "answer", "sdp": "x"})))
        .await;
    let err = sender.expect_error("unknown_peer").await;
    assert_eq!(err["peer"], gone_id.as_str(), "{err}");
    sender.assert_usable().await;
}

#[tokio::test]
async fn signal_to_a_peer_whose_connection_dropped_is_unknown_peer() {
    let broker = Broker::start().await;
    let (mut sender, gone, content) = introduced_pair(&broker).await;
    let gone_id = gone.id.clone();
    // No close handshake: the TCP connection just goes away.
    gone.drop_connection();
    sender.expect_holders(&content, 0).await;

    sender
        .send_json(&signal(&gone_id, json!({"kind": "bye"})))
        .await;
    let err = sender.expect_error("unknown_peer").await;
    assert_eq!(err["peer"], gone_id.as_str(), "{err}");
}

#[tokio::test]
async fn signal_to_yourself_is_refused() {
    let broker = Broker::start().await;
    let mut client = broker.client().await;
    let own = client.id.clone();
    client
        .send_json(&signal(&own, json!({"kind": "answer", "sdp": "x"})))
        .await;
    let err = client.expect_error("bad_message").await;
    assert!(
        err["message"].as_str().unwrap().contains("yourself"),
        "{err}"
    );
    // Nothing was relayed back to the sender.
    client.expect_nothing(QUIET).await;
    client.assert_usable().await;
    assert_eq!(broker.metric("broker_relayed_total").await, 0);
}

#[tokio::test]
async fn releasing_does_not_stop_relaying() {
    // Signals go peer to peer by id, independent of the content index.
    let broker = Broker::start().await;
    let mut a = broker.client().await;
    let mut b = broker.client().await;
    let content = fresh_address();
    b.send_json(&hold(&content)).await;
    b.expect_holders(&content, 1).await;
    b.send_json(&release(&content)).await;
    a.send_json(&signal(&b.id, json!({"kind": "bye"}))).await;
    assert_eq!(
        b.recv().await,
        json!({"signal": {"from": a.id, "data": {"kind": "bye"}}})
    );
}

#[tokio::test]
async fn an_answer_to_a_peer_that_made_no_offer_is_refused() {
    let broker = Broker::start().await;
    let mut a = broker.client().await;
    let mut b = broker.client().await;
    let answer = json!({"kind": "answer", "sdp": "v=0\r\n"});

    // B answers A, who never offered anything: refused, A hears nothing.
    b.send_json(&signal(&a.id, answer.clone())).await;
    let err = b.expect_error("unexpected_answer").await;
    assert_eq!(err["peer"], json!(a.id));
    let text = err["message"].as_str().unwrap();
    assert!(text.contains("made you no offer"), "{text}");
    a.expect_nothing(QUIET).await;

    // Once A offers, B's answer goes through, exactly once.
    a.send_json(&signal(
        &b.id,
        json!({"kind": "offer", "sdp": "v=0\r\n", "content": fresh_address()}),
    ))
    .await;
    assert_eq!(b.recv().await["signal"]["from"], json!(a.id));
    b.send_json(&signal(&a.id, answer.clone())).await;
    assert_eq!(a.recv().await["signal"]["data"]["kind"], "answer");
    b.send_json(&signal(&a.id, answer)).await;
    b.expect_error("unexpected_answer").await;
    a.expect_nothing(QUIET).await;

    // A third peer cannot answer an offer made to B.
    let mut c = broker.client().await;
    a.send_json(&signal(
        &b.id,
        json!({"kind": "offer", "sdp": "v=0\r\n", "content": fresh_address()}),
    ))
    .await;
    b.recv().await;
    c.send_json(&signal(
        &a.id,
        json!({"kind": "ready_answer", "sdp": "v=0\r\n"}),
    ))
    .await;
    c.expect_error("unexpected_answer").await;
    a.expect_nothing(QUIET).await;
    c.assert_usable().await;
    assert_eq!(
        broker
            .metric("broker_errors_total{code=\"unexpected_answer\"}")
            .await,
        3
    );
}
