//! Per-address connection limits, and trusted proxies naming the client.

mod common;

use common::Broker;
/// Opens `/ws` claiming to come through a proxy for `forwarded_for`.
async fn open_as(broker: &Broker, forwarded_for: &str) -> Result<common::Ws, (u16, String)> {
    broker.upgrade_with("x-forwarded-for", forwarded_for).await
}

#[tokio::test]
async fn behind_a_trusted_proxy_each_client_address_has_its_own_limit() {
    let broker = Broker::start_with(|c| {
        c.max_connections_per_address = 2;
        c.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()];
    })
    .await;
    let _a1 = open_as(&broker, "203.0.113.5").await.unwrap();
    let _a2 = open_as(&broker, "203.0.113.5").await.unwrap();
    let (status, body) = open_as(&broker, "203.0.113.5").await.unwrap_err();
    assert_eq!(status, 429);
    assert!(
        body.contains("203.0.113.5") && body.contains("2 broker connections"),
        "{body}"
    );
    // Another client behind the same proxy is not affected...
    let _b = open_as(&broker, "198.51.100.1").await.unwrap();
    // ...nor is one that spoofs an extra hop in front of the real one.
    let _c = open_as(&broker, "203.0.113.5, 198.51.100.2").await.unwrap();
    assert_eq!(
        broker
            .metric("broker_refused_upgrades_total{reason=\"per_address\"}")
            .await,
        1
    );
    // A place comes back when its connection ends.
    drop(_a1);
    broker.wait_metric("broker_peers", 3).await;
    let _a3 = open_as(&broker, "203.0.113.5").await.unwrap();
}

#[tokio::test]
async fn forwarding_headers_from_untrusted_peers_are_ignored() {
    // No trusted proxy: every connection here comes from 127.0.0.1,
    // whatever its headers claim.
    let broker = Broker::start_with(|c| c.max_connections_per_address = 2).await;
    let _a = open_as(&broker, "203.0.113.5").await.unwrap();
    let _b = open_as(&broker, "203.0.113.6").await.unwrap();
    let (status, body) = open_as(&broker, "203.0.113.7").await.unwrap_err();
    assert_eq!(status, 429);
    assert!(body.contains("127.0.0.1"), "{body}");
}

#[tokio::test]
async fn an_ipv6_slash_64_counts_as_one_address_and_mapped_ipv4_as_its_ipv4() {
    let broker = Broker::start_with(|c| {
        c.max_connections_per_address = 2;
        c.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()];
    })
    .await;
    let _a1 = open_as(&broker, "2001:db8::1").await.unwrap();
    let _a2 = open_as(&broker, "2001:db8::2").await.unwrap();
    let (status, body) = open_as(&broker, "2001:db8::ffff:3").await.unwrap_err();
    assert_eq!(status, 429);
    assert!(
        body.contains("2001:db8::/64 already has 2 broker connections"),
        "{body}"
    );
    // The next /64 is someone else.
    let _b = open_as(&broker, "2001:db8:0:1::1").await.unwrap();
    // An IPv4 address written as IPv6 is still that IPv4 address.
    let _m1 = open_as(&broker, "::ffff:203.0.113.9").await.unwrap();
    let _m2 = open_as(&broker, "203.0.113.9").await.unwrap();
    let (status, body) = open_as(&broker, "::ffff:203.0.113.9").await.unwrap_err();
    assert_eq!(status, 429);
    assert!(body.contains("203.0.113.9 already has 2"), "{body}");
}
