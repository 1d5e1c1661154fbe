//! The content index: hold, want, introductions and holder counts.

mod common;

use std::collections::{HashMap, HashSet};

use common::{
    fresh_address, hold, introduced_holder, release, unwant, want, want_n, Broker, Client, QUIET,
};
use serde_json::json;

/// A client that holds `content` (and has read its own count update).
async fn holder(broker: &Broker, content: &str, count_after: u32) -> Client {
    let mut client = broker.client().await;
    client.send_json(&hold(content)).await;
    client.expect_holders(content, count_after).await;
    client
}

#[tokio::test]
async fn want_with_a_holder_online_gets_count_then_introduction() {
    let broker = Broker::start().await;
    let content = fresh_address();
    let mut h = holder(&broker, &content, 1).await;
    let mut w = broker.client().await;
    w.send_json(&want(&content)).await;
    assert_eq!(
        w.recv().await,
        json!({"holders": {"content": content, "count": 1}})
    );
    assert_eq!(
        w.recv().await,
        json!({"introduce": {"content": content, "holder": h.id}})
    );
    w.expect_nothing(QUIET).await;
    // The holder is not told: the wanter makes the offer.
    h.expect_nothing(QUIET).await;
    assert_eq!(broker.metric("broker_introductions_total").await, 1);
}

#[tokio::test]
async fn wants_spread_evenly_across_holders() {
    let broker = Broker::start().await;
    let content = fresh_address();
    let mut holders = Vec::new();
    for i in 1..=3 {
        let h = holder(&broker, &content, i).await;
        // Earlier holders see the count grow.
        for earlier in &mut holders {
            let earlier: &mut Client = earlier;
            earlier.expect_holders(&content, i).await;
        }
        holders.push(h);
    }

    let mut introduced: HashMap<String, usize> = HashMap::new();
    let mut order = Vec::new();
    let mut wanters = Vec::new();
    for _ in 0..30 {
        let mut w = broker.client().await;
        w.send_json(&want(&content)).await;
        w.expect_holders(&content, 3).await;
        let h = w.expect_introduce(&content).await;
        *introduced.entry(h.clone()).or_default() += 1;
        order.push(h);
        wanters.push(w);
    }
    for h in &holders {
        assert_eq!(
            introduced.get(&h.id),
            Some(&10),
            "each of 3 holders is introduced exactly 10 times in 30 wants: {introduced:?}"
        );
    }
    // Least recently introduced goes next: a strict rotation.
    for (i, h) in order.iter().enumerate().skip(3) {
        assert_eq!(h, &order[i - 3], "rotation broke at want {i}: {order:?}");
    }
    // Wants do not disturb holders.
    for h in &mut holders {
        h.expect_nothing(QUIET).await;
    }
}

#[tokio::test]
async fn repeated_wants_from_one_peer_also_rotate() {
    let broker = Broker::start().await;
    let content = fresh_address();
    let mut a = holder(&broker, &content, 1).await;
    let b = holder(&broker, &content, 2).await;
    a.expect_holders(&content, 2).await;
    let mut w = broker.client().await;
    let mut seen = Vec::new();
    for _ in 0..4 {
        w.send_json(&want(&content)).await;
        w.expect_holders(&content, 2).await;
        seen.push(w.expect_introduce(&content).await);
    }
    assert_ne!(seen[0], seen[1]);
    assert_eq!(seen[0], seen[2]);
    assert_eq!(seen[1], seen[3]);
    assert!(seen.contains(&a.id) && seen.contains(&b.id));
}

#[tokio::test]
async fn want_several_holders_introduces_distinct_holders() {
    let broker = Broker::start().await;
    let content = fresh_address();
    let mut ids = HashSet::new();
    let mut holders = Vec::new();
    for i in 1..=4 {
        let h = holder(&broker, &content, i).await;
        for earlier in &mut holders {
            let earlier: &mut Client = earlier;
            earlier.expect_holders(&content, i).await;
        }
        ids.insert(h.id.clone());
        holders.push(h);
    }
    let mut w = broker.client().await;
    w.send_json(&want_n(&content, 3)).await;
    w.expect_holders(&content, 4).await;
    let mut got = HashSet::new();
    for _ in 0..3 {
        let h = w.expect_introduce(&content).await;
        assert!(
            ids.contains(&h),
            "introduced {h}, who does not hold {content}"
        );
        assert!(got.insert(h.clone()), "{h} introduced twice");
    }
    w.expect_nothing(QUIET).await;

    // A want for more than exist introduces everyone once, then waits for
    // more holders: the fifth arrives and is introduced at once.
    let mut w2 = broker.client().await;
    w2.send_json(&want_n(&content, 8)).await;
    w2.expect_holders(&content, 4).await;
    let mut got = HashSet::new();
    for _ in 0..4 {
        got.insert(w2.expect_introduce(&content).await);
    }
    assert_eq!(got, ids);
    w2.expect_nothing(QUIET).await;
    let fifth = holder(&broker, &content, 5).await;
    let msgs = w2.recv_n(2).await;
    assert!(
        msgs.contains(&json!({"introduce": {"content": content, "holder": fifth.id}})),
        "{msgs:?}"
    );
    assert!(
        msgs.contains(&json!({"holders": {"content": content, "count": 5}})),
        "{msgs:?}"
    );
}

#[tokio::test]
async fn want_never_introduces_the_wanter_to_itself() {
    let broker = Broker::start().await;
    let content = fresh_address();
    let mut both = holder(&broker, &content, 1).await;
    both.send_json(&want(&content)).await;
    both.expect_holders(&content, 1).await;
    both.expect_nothing(QUIET).await;
}

#[tokio::test]
async fn a_waiting_wanter_is_introduced_as_soon_as_a_holder_appears() {
    let broker = Broker::start().await;
    let content = fresh_address();
    let mut w = broker.client().await;
    w.send_json(&want(&content)).await;
    w.expect_holders(&content, 0).await;
    w.expect_nothing(QUIET).await;

    let h = holder(&broker, &content, 1).await;
    // Both arrive; the introduction is what the wanter acts on.
    let msgs = w.recv_n(2).await;
    assert_eq!(
        msgs,
        vec![
            json!({"introduce": {"content": content, "holder": h.id}}),
            json!({"holders": {"content": content, "count": 1}}),
        ]
    );
    // It wanted one holder and got it: a second holder is only counted.
    let _h2 = holder(&broker, &content, 2).await;
    w.expect_holders(&content, 2).await;
    w.expect_nothing(QUIET).await;
}

#[tokio::test]
async fn an_unwanted_address_is_not_introduced_later() {
    let broker = Broker::start().await;
    let content = fresh_address();
    let mut w = broker.client().await;
    w.send_json(&want(&content)).await;
    w.expect_holders(&content, 0).await;
    w.send_json(&unwant(&content)).await;
    // unwant has no reply; prove it was processed before the hold below.
    w.assert_usable().await;
    let _h = holder(&broker, &content, 1).await;
    w.expect_nothing(QUIET).await;
}

#[tokio::test]
async fn want_in_the_upgrade_url_acts_like_a_want_after_welcome() {
    let broker = Broker::start().await;
    let content = fresh_address();
    let mut h = holder(&broker, &content, 1).await;
    let mut w = broker.connect(&format!("/ws?want={content}")).await;
    w.expect_holders(&content, 1).await;
    assert_eq!(w.expect_introduce(&content).await, h.id);
    w.expect_nothing(QUIET).await;
    h.expect_nothing(QUIET).await;

    // It stays subscribed to the count like any want.
    let h2 = holder(&broker, &content, 2).await;
    w.expect_holders(&content, 2).await;
    h.expect_holders(&content, 2).await;
    drop(h2);
}

#[tokio::test]
async fn want_in_the_url_waits_for_a_holder_like_any_want() {
    let broker = Broker::start().await;
    let content = fresh_address();
    let mut w = broker.connect(&format!("/ws?want={content}")).await;
    w.expect_holders(&content, 0).await;
    let h = holder(&broker, &content, 1).await;
    let msgs = w.recv_n(2).await;
    assert!(
        msgs.iter()
            .any(|m| introduced_holder(m, &content).as_deref() == Some(h.id.as_str())),
        "{msgs:?}"
    );
}

#[tokio::test]
async fn an_invalid_want_in_the_url_is_a_bad_address_error_after_welcome() {
    let broker = Broker::start().await;
    let valid = fresh_address();
    for bad in [
        "nope".to_owned(),
        valid.to_uppercase(),
        valid[..63].to_owned(),
        format!("{}g", &valid[..63]),
        String::new(),
    ] {
        // Client::connect has already checked that the welcome came first.
        let mut w = broker.connect(&format!("/ws?want={bad}")).await;
        let err = w.expect_error("bad_address").await;
        assert!(
            err["message"]
                .as_str()
                .unwrap()
                .contains("64 lowercase hex"),
            "{err}"
        );
        w.assert_usable().await;
    }
}

#[tokio::test]
async fn holder_counts_follow_hold_release_and_disconnect() {
    let broker = Broker::start().await;
    let content = fresh_address();
    let mut w = broker.client().await;
    w.send_json(&want(&content)).await;
    w.expect_holders(&content, 0).await;

    // hold: holder and wanter learn the new count.
    let mut a = holder(&broker, &content, 1).await;
    assert_eq!(w.expect_introduce(&content).await, a.id);
    w.expect_holders(&content, 1).await;
    let mut b = holder(&broker, &content, 2).await;
    a.expect_holders(&content, 2).await;
    w.expect_holders(&content, 2).await;

    // Holding twice changes nothing.
    b.send_json(&hold(&content)).await;
    b.expect_nothing(QUIET).await;

    // release: the remaining holder and the wanter learn it.
    b.send_json(&release(&content)).await;
    a.expect_holders(&content, 1).await;
    w.expect_holders(&content, 1).await;
    // Releasing what you do not hold changes nothing.
    b.send_json(&release(&content)).await;
    b.assert_usable().await;

    // Holding again counts again.
    b.send_json(&hold(&content)).await;
    b.expect_holders(&content, 2).await;
    a.expect_holders(&content, 2).await;
    w.expect_holders(&content, 2).await;

    // disconnect (with a close handshake).
    b.close().await;
    a.expect_holders(&content, 1).await;
    w.expect_holders(&content, 1).await;

    // A wanter leaving changes no count.
    w.close().await;
    a.expect_nothing(QUIET).await;
}

#[tokio::test]
async fn a_dropped_holder_connection_updates_counts_at_once() {
    let broker = Broker::start().await;
    let content = fresh_address();
    let other = fresh_address();
    let mut w = broker.client().await;
    let mut a = holder(&broker, &content, 1).await;
    let mut b = holder(&broker, &content, 2).await;
    a.expect_holders(&content, 2).await;
    b.send_json(&hold(&other)).await;
    b.expect_holders(&other, 1).await;
    w.send_json(&want(&content)).await;
    w.expect_holders(&content, 2).await;
    w.expect_introduce(&content).await;
    w.send_json(&want(&other)).await;
    w.expect_holders(&other, 1).await;
    assert_eq!(w.expect_introduce(&other).await, b.id);
    assert_eq!(broker.metric("broker_addresses").await, 2);

    // b vanishes without a close frame; everything it held goes at once.
    b.drop_connection();
    let msgs = w.recv_n(2).await;
    assert!(
        msgs.contains(&json!({"holders": {"content": content, "count": 1}})),
        "{msgs:?}"
    );
    assert!(
        msgs.contains(&json!({"holders": {"content": other, "count": 0}})),
        "{msgs:?}"
    );
    a.expect_holders(&content, 1).await;
    assert_eq!(broker.metric("broker_addresses").await, 1);

    // The next wanter is only ever introduced to the holder that is left.
    let mut w2 = broker.client().await;
    w2.send_json(&want_n(&content, 2)).await;
    w2.expect_holders(&content, 1).await;
    assert_eq!(w2.expect_introduce(&content).await, a.id);
    w2.expect_nothing(QUIET).await;
}

#[tokio::test]
async fn holding_what_you_wanted_replaces_the_want() {
    let broker = Broker::start().await;
    let content = fresh_address();
    let mut a = broker.client().await;
    a.send_json(&want(&content)).await;
    a.expect_holders(&content, 0).await;
    a.send_json(&hold(&content)).await;
    a.expect_holders(&content, 1).await;
    // A's want is gone: a new holder does not introduce itself to A.
    let _b = holder(&broker, &content, 2).await;
    a.expect_holders(&content, 2).await;
    a.expect_nothing(QUIET).await;
}

#[tokio::test]
async fn per_peer_limits_from_config_are_enforced() {
    let broker = Broker::start_with(|c| {
        c.max_holdings = 2;
        c.max_wants = 1;
    })
    .await;
    let mut c = broker.client().await;
    let (x, y, z) = (fresh_address(), fresh_address(), fresh_address());
    c.send_json(&hold(&x)).await;
    c.expect_holders(&x, 1).await;
    c.send_json(&hold(&y)).await;
    c.expect_holders(&y, 1).await;
    c.send_json(&hold(&z)).await;
    let err = c.expect_error("limit").await;
    assert!(
        err["message"].as_str().unwrap().contains("release"),
        "{err}"
    );
    // Room again after a release.
    c.send_json(&release(&x)).await;
    c.send_json(&hold(&z)).await;
    c.expect_holders(&z, 1).await;

    c.send_json(&want(&x)).await;
    c.expect_holders(&x, 0).await;
    c.send_json(&want(&y)).await;
    let err = c.expect_error("limit").await;
    assert!(err["message"].as_str().unwrap().contains("unwant"), "{err}");
    // Wanting the same address again is not a new want.
    c.send_json(&want(&x)).await;
    c.expect_holders(&x, 0).await;
}

#[tokio::test]
async fn the_introduction_is_not_held_back_behind_the_count() {
    // A want with a holder online yields two messages at once. They must
    // leave together: written and flushed one by one, the introduction (the
    // message the opener acts on) waited ~40 ms for the wanter's delayed ACK
    // of the count (Nagle's algorithm). 10 wants: ~0.4 s before, ~0 after;
    // the bound leaves a wide margin for a loaded machine.
    let broker = Broker::start().await;
    let content = fresh_address();
    let _h = holder(&broker, &content, 1).await;
    let mut held_back = std::time::Duration::ZERO;
    for _ in 0..10 {
        let mut w = broker.client().await;
        w.send_json(&want(&content)).await;
        w.expect_holders(&content, 1).await;
        let counted = std::time::Instant::now();
        w.expect_introduce(&content).await;
        held_back += counted.elapsed();
    }
    assert!(
        held_back < std::time::Duration::from_millis(150),
        "introductions arrived {held_back:?} after their counts (over 10 wants)"
    );
}
