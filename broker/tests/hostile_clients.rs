//! Clients that attack other peers through the broker: what they send
//! costs them, never the peer they aim at. Each attack is answered with
//! an error that says what was wrong, and honest peers lose nothing.

mod common;

use std::time::Duration;

use common::{fresh_address, hold, release, signal, Broker, Client, QUIET};
use futures_util::SinkExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

/// Reads until `wait` passes with nothing new; returns what came.
async fn drain(client: &mut Client, wait: Duration) -> Vec<Value> {
    let mut got = Vec::new();
    while let Some(msg) = client.try_recv(wait).await {
        got.push(msg);
    }
    got
}

fn candidate(n: usize) -> Value {
    json!({"kind": "candidate", "side": "fetch", "lane": 0,
           "candidate": format!("candidate:{n} 1 udp 2122260223 192.0.2.7 {} typ host", 40_000 + n % 20_000),
           "sdp_mid": "0", "sdp_m_line_index": 0})
}

fn signals_from<'a>(got: &'a [Value], from: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
    got.iter()
        .filter(move |m| m["signal"]["from"].as_str() == Some(from))
}

fn errors<'a>(got: &'a [Value], code: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
    got.iter()
        .filter(move |m| m["error"]["code"].as_str() == Some(code))
}

/// The flood that once got the recipient disconnected ("too slow:
/// outbound queue full"): every candidate either reaches the holder or is
/// refused to the sender, the holder stays, and an honest peer's signals
/// sent during the flood all arrive.
#[tokio::test]
async fn a_signal_flood_costs_the_senders_and_never_the_recipient() {
    let broker = Broker::start().await;
    let mut holder = broker.client().await;
    let mut honest = broker.client().await;
    let mut attackers = Vec::new();
    for _ in 0..4 {
        attackers.push(broker.client().await);
    }
    const EACH: usize = 1_900;
    for n in (0..EACH).step_by(100) {
        for a in attackers.iter_mut() {
            a.send_batch((n..n + 100).map(|n| signal(&holder.id, candidate(n))))
                .await;
        }
        honest.send_json(&signal(&holder.id, candidate(n))).await;
    }
    let got = drain(&mut holder, QUIET * 5).await;
    for a in attackers.iter_mut() {
        let answers = drain(a, QUIET).await;
        let busy = errors(&answers, "peer_busy").count();
        let delivered = signals_from(&got, &a.id).count();
        println!("attacker {}: {delivered} delivered, {busy} refused", a.id);
        assert_eq!(
            delivered + busy,
            EACH,
            "every signal is delivered or refused to its sender ({delivered} + {busy})"
        );
        if let Some(e) = errors(&answers, "peer_busy").next() {
            let message = e["error"]["message"].as_str().unwrap();
            assert!(message.contains("Wait for its replies"), "{message}");
            assert_eq!(e["error"]["peer"], holder.id.as_str());
        }
        assert_eq!(answers.len(), busy, "attackers hear only refusals");
    }
    assert_eq!(
        signals_from(&got, &honest.id).count(),
        EACH.div_ceil(100),
        "an honest peer's signals during the flood all arrive"
    );
    assert_eq!(broker.metric("broker_queue_drops_total").await, 0);
    holder.assert_usable().await;
}

/// Toggling `hold`/`release` from many connections once fanned holder
/// counts out until the honest holder's queue overflowed. Counts are
/// coalesced: the honest holder stays and ends with the true count.
#[tokio::test]
async fn toggled_holdings_cannot_get_a_holder_disconnected() {
    let broker = Broker::start().await;
    let content = fresh_address();
    let mut honest = broker.client().await;
    honest.send_json(&hold(&content)).await;
    honest.expect_holders(&content, 1).await;
    let mut togglers = Vec::new();
    for _ in 0..100 {
        togglers.push(broker.client().await);
    }
    for _ in 0..10 {
        for t in togglers.iter_mut() {
            t.send_json(&hold(&content)).await;
            t.send_json(&release(&content)).await;
        }
    }
    // One toggler keeps holding: the last count must say 2.
    togglers[0].send_json(&hold(&content)).await;
    let got = drain(&mut honest, QUIET * 5).await;
    let counts: Vec<u64> = got
        .iter()
        .filter_map(|m| m["holders"]["count"].as_u64())
        .collect();
    println!("{} counts reached the honest holder", counts.len());
    assert_eq!(counts.last(), Some(&2), "the newest count arrives last");
    assert!(
        counts.len() < 100 * 10 * 2,
        "queued counts of one address are coalesced ({} arrived)",
        counts.len()
    );
    assert_eq!(broker.metric("broker_queue_drops_total").await, 0);
    honest.assert_usable().await;
}

/// Junk offers from a third peer once pushed a real pending offer out of
/// the answerer's reach. Offers are remembered per offerer: the junk
/// crowds out only its own, and past a few to one answerer it is refused.
#[tokio::test]
async fn junk_offers_cannot_evict_a_real_one() {
    let broker = Broker::start().await;
    let mut answerer = broker.client().await;
    let mut offerer = broker.client().await;
    let mut junk = broker.client().await;
    let content = fresh_address();
    let offer = json!({"kind": "offer", "sdp": "v=0\r\n", "content": content});
    offerer
        .send_json(&signal(&answerer.id, offer.clone()))
        .await;
    answerer.recv().await;
    let mut refused = 0;
    for _ in 0..64 {
        junk.send_json(&signal(&answerer.id, json!({"kind": "offer"})))
            .await;
    }
    for msg in drain(&mut junk, QUIET).await {
        assert_eq!(msg["error"]["code"], "limit", "{msg}");
        let message = msg["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("has not answered your last 4 offers"),
            "{message}"
        );
        refused += 1;
    }
    assert_eq!(
        refused, 60,
        "four open offers to one answerer, the rest refused"
    );
    assert_eq!(drain(&mut answerer, QUIET).await.len(), 4);
    answerer
        .send_json(&signal(
            &offerer.id,
            json!({"kind": "answer", "sdp": "v=0\r\n"}),
        ))
        .await;
    let got = offerer.recv().await;
    assert_eq!(got["signal"]["from"], answerer.id.as_str(), "{got}");
    assert_eq!(got["signal"]["data"]["kind"], "answer");
}

/// A second `kind` once let an answer pass as a candidate, around the
/// answer-once rule; payloads that are not one tagged object are refused.
#[tokio::test]
async fn ambiguous_or_oversized_signals_are_refused() {
    let broker = Broker::start().await;
    let mut a = broker.client().await;
    let mut b = broker.client().await;
    for data in [
        r#"{"kind":"candidate","kind":"answer","sdp":"v=0"}"#,
        r#"{"kind":"answer","sdp":"v=0","kind":"candidate"}"#,
        r#"{"sdp":"v=0"}"#,
        r#"["answer"]"#,
        "null",
    ] {
        a.send_text(format!(r#"{{"signal":{{"to":"{}","data":{data}}}}}"#, b.id))
            .await;
        let e = a.expect_error("bad_message").await;
        let message = e["message"].as_str().unwrap();
        assert!(
            message.contains("exactly one string `kind`"),
            "{data}: {message}"
        );
    }
    let big = json!({"kind": "candidate", "candidate": "x".repeat(20_000)});
    a.send_json(&signal(&b.id, big)).await;
    let e = a.expect_error("too_large").await;
    assert!(
        e["message"].as_str().unwrap().contains("16384-byte limit"),
        "{e}"
    );
    b.expect_nothing(QUIET).await;
    a.assert_usable().await;
}

/// Pings once skipped the rate limit: hundreds of thousands cost the
/// broker seconds of CPU and the connection stayed. They count now.
#[tokio::test]
async fn a_ping_flood_is_disconnected() {
    let broker = Broker::start_with(|c| {
        c.message_rate = 10;
        c.message_burst = 50;
    })
    .await;
    let mut bystander = broker.client().await;
    let mut ws = broker.client().await.into_inner();
    let mut sent = 0;
    // Stops at the first failed write: the broker has closed.
    while sent < 10_000 && ws.feed(Message::Ping(Default::default())).await.is_ok() {
        sent += 1;
        if sent % 50 == 0 && ws.flush().await.is_err() {
            break;
        }
    }
    let _ = ws.flush().await;
    let mut flooder = Client::wrap(ws);
    let close = flooder.expect_close().await;
    let (code, reason) = close.expect("a close frame with a reason");
    assert_eq!(code, 1008);
    assert!(reason.contains("pings count too"), "{reason}");
    assert_eq!(broker.metric("broker_flood_drops_total").await, 1);
    bystander.assert_usable().await;
}

/// Holdings and wants cost the broker memory; all the pages of one
/// address share one budget, and giving one back frees room.
#[tokio::test]
async fn registrations_are_budgeted_per_address() {
    let broker = Broker::start_with(|c| c.max_registrations_per_address = 10).await;
    let mut a = broker.client().await;
    let mut b = broker.client().await;
    let addresses: Vec<String> = (0..11).map(|_| fresh_address()).collect();
    for x in &addresses[..6] {
        a.send_json(&hold(x)).await;
        a.expect_holders(x, 1).await;
    }
    for x in &addresses[6..10] {
        b.send_json(&json!({"want": {"content": x}})).await;
        b.expect_holders(x, 0).await;
    }
    b.send_json(&hold(&addresses[10])).await;
    let e = b.expect_error("limit").await;
    let message = e["message"].as_str().unwrap();
    assert!(message.contains("the pages at your address"), "{message}");
    // Holding what one wants costs nothing more.
    b.send_json(&hold(&addresses[6])).await;
    b.expect_holders(&addresses[6], 1).await;
    a.send_json(&release(&addresses[0])).await;
    // The reply to a later message of a's proves the release was handled.
    a.send_json(&signal(&a.id.clone(), json!({"kind": "bye"})))
        .await;
    a.expect_error("bad_message").await;
    b.send_json(&hold(&addresses[10])).await;
    b.expect_holders(&addresses[10], 1).await;
    // A closed page gives back everything it had.
    a.close().await;
    let mut c = broker.client().await;
    for x in &addresses[..5] {
        c.send_json(&hold(x)).await;
        c.expect_holders(x, 1).await;
    }
}

/// TURN credentials are short-lived: a connected peer gets fresh ones
/// before those of its welcome expire.
#[tokio::test]
async fn turn_credentials_are_renewed_before_they_expire() {
    let broker = Broker::start_with(|c| {
        c.turn = Some(broker::turn::Turn {
            urls: vec!["turn:192.0.2.1:3478".into()],
            secret: "north".into(),
            ttl: Duration::from_secs(2),
        });
        c.ping_interval = Duration::from_millis(250);
    })
    .await;
    let mut peer = broker.client().await;
    let expiry = |servers: &Value| -> u64 {
        let user = servers[0]["username"].as_str().expect("a TURN username");
        let (expiry, id) = user.split_once(':').unwrap();
        assert!(!id.is_empty());
        expiry.parse().unwrap()
    };
    let first = expiry(&peer.welcome["welcome"]["ice_servers"]);
    // Renewed at the first ping after 1 s.
    let renewed = peer.recv().await;
    let servers = &renewed["ice_servers"]["ice_servers"];
    let next = expiry(servers);
    assert!(next > first, "the renewal expires later: {first} -> {next}");
    let (user, pass) = (
        servers[0]["username"].as_str().unwrap(),
        servers[0]["credential"].as_str().unwrap(),
    );
    let id: uuid::Uuid = peer.id.parse().unwrap();
    let expected =
        broker::turn::credentials("north", protocol::PeerId(id), Duration::from_secs(next));
    assert_eq!((user, pass), (expected.0.as_str(), expected.1.as_str()));
}
