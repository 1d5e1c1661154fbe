//! Cleanup when peers leave, the registry's own bookkeeping, and graceful
//! shutdown.

mod common;

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use broker::metrics::Metrics;
use broker::registry::{Inbox, LocalRegistry, Mailbox, Outbound, Registry, RegistryError};
use common::{fresh_address, hold, want, Broker, QUIET};
use protocol::{ContentId, PeerId};
use serde_json::{json, Value};
use tokio::time::Instant;
use uuid::Uuid;

/// The client address group of the registry tests' peers.
fn home() -> broker::admission::AddressGroup {
    broker::admission::AddressGroup::of(std::net::Ipv4Addr::LOCALHOST.into())
}

/// Two holders (one of two addresses), a wanter of each (one via the URL),
/// everybody connected and settled. Returns them and the addresses.
async fn populate(broker: &Broker) -> (Vec<common::Client>, String, String) {
    let (x, y) = (fresh_address(), fresh_address());
    let mut h1 = broker.client().await;
    h1.send_json(&hold(&x)).await;
    h1.expect_holders(&x, 1).await;
    let mut h2 = broker.client().await;
    h2.send_json(&hold(&x)).await;
    h2.expect_holders(&x, 2).await;
    h1.expect_holders(&x, 2).await;
    h2.send_json(&hold(&y)).await;
    h2.expect_holders(&y, 1).await;
    let mut w1 = broker.client().await;
    w1.send_json(&want(&x)).await;
    w1.expect_holders(&x, 2).await;
    w1.expect_introduce(&x).await;
    let mut w2 = broker.connect(&format!("/ws?want={y}")).await;
    w2.expect_holders(&y, 1).await;
    assert_eq!(w2.expect_introduce(&y).await, h2.id);
    // A want nobody can serve stays registered too.
    w2.send_json(&want(&fresh_address())).await;
    w2.recv().await;
    // A ready offer nobody took yet.
    h1.send_json(&serde_json::json!({"ready": {"data": {"kind": "ready", "sdp": "o"}}}))
        .await;
    h1.assert_usable().await;
    (vec![h1, h2, w1, w2], x, y)
}

#[tokio::test]
async fn metrics_return_to_zero_after_everyone_leaves() {
    let broker = Broker::start().await;
    assert_eq!(broker.metric("broker_peers").await, 0);
    let (clients, _, _) = populate(&broker).await;
    assert_eq!(broker.metric("broker_peers").await, 4);
    assert_eq!(broker.metric("broker_addresses").await, 2);

    // Half leave politely, half just vanish.
    for (i, client) in clients.into_iter().enumerate() {
        if i % 2 == 0 {
            client.close().await;
        } else {
            client.drop_connection();
        }
    }
    broker.wait_metric("broker_peers", 0).await;
    assert_eq!(broker.metric("broker_addresses").await, 0);
}

#[tokio::test]
async fn the_registry_is_empty_after_everyone_disconnects() {
    let metrics = Arc::new(Metrics::default());
    let registry = Arc::new(LocalRegistry::new(metrics.clone()));
    let broker = Broker::start_with_registry(registry.clone(), metrics.clone()).await;
    let (clients, x, y) = populate(&broker).await;
    let x: ContentId = x.parse().unwrap();
    let y: ContentId = y.parse().unwrap();
    assert_eq!(registry.holder_count(&x), 2);
    assert_eq!(registry.holder_count(&y), 1);
    assert!(!registry.is_empty());

    for (i, client) in clients.into_iter().enumerate() {
        if i % 2 == 1 {
            client.close().await;
        } else {
            client.drop_connection();
        }
    }
    broker.wait_metric("broker_peers", 0).await;
    assert!(registry.is_empty(), "a departed peer left state behind");
    assert_eq!(registry.holder_count(&x), 0);
    assert_eq!(metrics.addresses.load(Relaxed), 0);
}

fn mailbox(capacity: usize) -> (Mailbox, Inbox) {
    Mailbox::new(capacity)
}

/// Everything queued in `rx` right now, parsed.
fn drain(rx: &Inbox) -> Vec<Value> {
    let mut out = Vec::new();
    while let Some(msg) = rx.try_recv() {
        match msg {
            Outbound::Text(text) => out.push(serde_json::from_str(&text).unwrap()),
            Outbound::Ping => panic!("the registry never pings"),
        }
    }
    out
}

#[tokio::test]
async fn local_registry_forgets_a_peer_entirely_on_disconnect() {
    let metrics = Arc::new(Metrics::default());
    let reg = LocalRegistry::new(metrics.clone());
    let (a, b) = (PeerId(Uuid::new_v4()), PeerId(Uuid::new_v4()));
    let (mb_a, rx_a) = mailbox(16);
    let (mb_b, rx_b) = mailbox(16);
    reg.connect(a, mb_a, home()).await;
    reg.connect(b, mb_b, home()).await;
    let x = ContentId::of_manifest_bytes(b"x");
    let y = ContentId::of_manifest_bytes(b"y");
    let (xs, ys) = (x.to_string(), y.to_string());

    reg.hold(a, x).await.unwrap();
    reg.hold(a, y).await.unwrap();
    reg.want(b, x, 1).await.unwrap();
    reg.want(b, ContentId::of_manifest_bytes(b"z"), 2)
        .await
        .unwrap();
    assert_eq!(
        drain(&rx_a),
        vec![
            json!({"holders": {"content": xs, "count": 1}}),
            json!({"holders": {"content": ys, "count": 1}}),
        ]
    );
    assert_eq!(drain(&rx_b).len(), 3, "count + introduction, count");
    assert_eq!(metrics.addresses.load(Relaxed), 2);
    assert_eq!(metrics.introductions.load(Relaxed), 1);

    reg.disconnect(a).await;
    assert_eq!(
        drain(&rx_b),
        vec![json!({"holders": {"content": xs, "count": 0}})]
    );
    assert_eq!(reg.holder_count(&x), 0);
    assert_eq!(metrics.addresses.load(Relaxed), 0);
    assert!(!reg.is_empty(), "b still wants x and z");
    assert!(matches!(
        reg.publish(b, a, "{}".into()).await,
        Err(RegistryError::UnknownPeer(p)) if p == a
    ));

    reg.disconnect(b).await;
    assert!(reg.is_empty());
    // Disconnecting twice is harmless.
    reg.disconnect(b).await;
    assert!(reg.is_empty());
}

#[tokio::test]
async fn local_registry_cleans_up_after_release_and_unwant() {
    let reg = LocalRegistry::new(Arc::new(Metrics::default()));
    let a = PeerId(Uuid::new_v4());
    let (mb, _rx) = mailbox(16);
    reg.connect(a, mb, home()).await;
    let x = ContentId::of_manifest_bytes(b"x");
    reg.hold(a, x).await.unwrap();
    reg.want(a, ContentId::of_manifest_bytes(b"y"), 1)
        .await
        .unwrap();
    reg.release(a, x).await;
    reg.unwant(a, ContentId::of_manifest_bytes(b"y")).await;
    // Only the topic is left; it goes with the connection.
    assert!(!reg.is_empty());
    reg.disconnect(a).await;
    assert!(reg.is_empty());
}

#[tokio::test]
async fn local_registry_refuses_relays_past_the_recipients_queue_and_keeps_it() {
    let metrics = Arc::new(Metrics::default());
    let reg = LocalRegistry::new(metrics.clone());
    let (slow, sender) = (PeerId(Uuid::new_v4()), PeerId(Uuid::new_v4()));
    let (mb, rx) = mailbox(1);
    reg.connect(slow, mb, home()).await;
    reg.publish(sender, slow, "1".into()).await.unwrap();
    // The second does not fit: the sender is refused, the recipient stays.
    assert!(matches!(
        reg.publish(sender, slow, "2".into()).await,
        Err(RegistryError::Busy(m)) if m.contains("has not yet read 1 signals of yours")
    ));
    assert!(
        !rx.killed(),
        "others' signals must not get a peer disconnected"
    );
    assert_eq!(metrics.queue_drops.load(Relaxed), 0);
    assert_eq!(metrics.refused_relays.load(Relaxed), 1);
    assert!(matches!(rx.try_recv(), Some(Outbound::Text(t)) if &*t == "1"));
    assert!(rx.try_recv().is_none());
}

#[tokio::test]
async fn graceful_shutdown_closes_every_connection_with_1012() {
    let mut broker = Broker::start().await;
    let addr = broker.addr;
    let (mut clients, _, _) = populate(&broker).await;
    let [a, b, c, d] = &mut clients[..] else {
        unreachable!()
    };

    // Sessions end one after another, so a peer may still hear the holder
    // count drop as the others leave before its own close frame arrives.
    let count = |msg: &Value| msg.get("holders").is_some();
    let started = Instant::now();
    let (_, ca, cb, cc, cd) = tokio::join!(
        broker.shutdown(),
        a.expect_close_ignoring(count),
        b.expect_close_ignoring(count),
        c.expect_close_ignoring(count),
        d.expect_close_ignoring(count),
    );
    for close in [ca, cb, cc, cd] {
        let (code, reason) = close.expect("a close frame, not just a dropped connection");
        assert_eq!(code, 1012, "service restart (reason {reason:?})");
        assert!(reason.contains("reconnect"), "{reason:?}");
    }
    // run returned on its own, well before its 5 s fallback for stuck peers.
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "shutdown took {:?}",
        started.elapsed()
    );
    // The listener is gone.
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn shutdown_with_no_peers_returns_at_once() {
    let mut broker = Broker::start().await;
    let c = broker.client().await;
    c.close().await;
    broker.wait_metric("broker_peers", 0).await;
    let started = Instant::now();
    broker.shutdown().await;
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_client_that_leaves_is_not_sent_anything_more() {
    // Disconnecting with queued-up interest (a pending want) must not leave
    // deliveries aimed at the departed peer; the remaining peers see only
    // the count change.
    let broker = Broker::start().await;
    let content = fresh_address();
    let mut w = broker.client().await;
    w.send_json(&want(&content)).await;
    w.expect_holders(&content, 0).await;
    w.close().await;
    let mut h = broker.client().await;
    h.send_json(&hold(&content)).await;
    h.expect_holders(&content, 1).await;
    h.expect_nothing(QUIET).await;
    assert_eq!(broker.metric("broker_introductions_total").await, 0);
}
