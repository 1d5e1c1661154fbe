//! The Origin allowlist on WebSocket upgrades.

mod common;

use common::Broker;
/// Tries an upgrade with this Origin; returns the HTTP status (101 when
/// the upgrade went through) and the refusal's body.
async fn upgrade_from(broker: &Broker, origin: &str) -> (u16, String) {
    match broker.upgrade_with("origin", origin).await {
        Ok(_) => (101, String::new()),
        Err(refusal) => refusal,
    }
}

#[tokio::test]
async fn own_pages_connect_and_other_origins_are_refused_with_a_reason() {
    let broker = Broker::start().await;
    let own = format!("http://{}", broker.addr);
    assert_eq!(upgrade_from(&broker, &own).await.0, 101);
    let (status, body) = upgrade_from(&broker, "https://evil.example").await;
    assert_eq!(status, 403);
    assert!(
        body.contains("https://evil.example") && body.contains("--allow-origin"),
        "{body}"
    );
    assert_eq!(
        broker
            .metric("broker_refused_upgrades_total{reason=\"origin\"}")
            .await,
        1
    );
    // Clients without an Origin (not browsers) are not affected.
    broker.client().await.assert_usable().await;
}

#[tokio::test]
async fn the_allowlist_admits_listed_origins_only() {
    let broker =
        Broker::start_with(|c| c.allowed_origins = vec!["https://app.example".into()]).await;
    assert_eq!(upgrade_from(&broker, "https://app.example").await.0, 101);
    assert_eq!(upgrade_from(&broker, "https://other.example").await.0, 403);
    let open = Broker::start_with(|c| c.allowed_origins = vec!["*".into()]).await;
    assert_eq!(upgrade_from(&open, "https://other.example").await.0, 101);
}

/// Tries an upgrade with this Origin and Host.
async fn upgrade_as(broker: &Broker, origin: &str, host: &str) -> (u16, String) {
    let headers = [("origin", origin), ("host", host)];
    match broker.upgrade_with_headers(&headers).await {
        Ok(_) => (101, String::new()),
        Err(refusal) => refusal,
    }
}

#[tokio::test]
async fn with_a_public_origin_only_it_passes_whatever_host_says() {
    let broker = Broker::start_with(|c| {
        c.public_origin = Some("https://share.example".parse().unwrap());
    })
    .await;
    // Host matches, scheme does not: a plain-http page of the same name.
    let (status, body) = upgrade_as(&broker, "http://share.example", "share.example").await;
    assert_eq!(status, 403);
    assert!(
        body.contains("pages from http://share.example")
            && body.contains("serves pages from https://share.example")
            && body.contains("--allow-origin"),
        "{body}"
    );
    // DNS rebinding: the attacker's page, sent with the attacker's Host.
    let (status, body) = upgrade_as(&broker, "http://attacker.example", "attacker.example").await;
    assert_eq!(status, 403);
    assert!(body.contains("http://attacker.example"), "{body}");
    // The public origin passes whatever Host the proxy sends.
    assert_eq!(
        upgrade_as(&broker, "https://share.example", "10.0.0.7:8080")
            .await
            .0,
        101
    );
    assert_eq!(
        upgrade_as(&broker, "https://Share.Example", "share.example")
            .await
            .0,
        101
    );
    assert_eq!(
        upgrade_as(&broker, "https://share.example:8443", "share.example:8443")
            .await
            .0,
        403
    );
}

#[tokio::test]
async fn without_a_public_origin_a_domain_name_host_is_not_trusted() {
    let broker = Broker::start().await;
    // DNS rebinding: Origin and Host agree, and both are the attacker's.
    let (status, body) = upgrade_as(&broker, "http://attacker.example", "attacker.example").await;
    assert_eq!(status, 403);
    assert!(
        body.contains("http://attacker.example")
            && body.contains("DNS-rebinding")
            && body.contains("--public-origin"),
        "{body}"
    );
    // The scheme counts: the broker itself speaks plain HTTP.
    let host = broker.addr.to_string();
    let (status, body) = upgrade_as(&broker, &format!("https://{host}"), &host).await;
    assert_eq!(status, 403);
    assert!(
        body.contains(&format!("its own pages (http://{host})")),
        "{body}"
    );
    assert_eq!(
        upgrade_as(&broker, &format!("http://{host}"), &host)
            .await
            .0,
        101
    );
    // localhost cannot be rebound.
    let local = format!("localhost:{}", broker.addr.port());
    assert_eq!(
        upgrade_as(&broker, &format!("http://{local}"), &local)
            .await
            .0,
        101
    );
}

#[tokio::test]
async fn only_a_trusted_proxy_says_the_page_came_over_https() {
    let trusted =
        Broker::start_with(|c| c.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()]).await;
    let untrusted = Broker::start().await;
    for (broker, expected) in [(&trusted, 101), (&untrusted, 403)] {
        let host = broker.addr.to_string();
        let origin = format!("https://{host}");
        let headers = [
            ("origin", origin.as_str()),
            ("host", host.as_str()),
            ("x-forwarded-proto", "https"),
        ];
        let status = match broker.upgrade_with_headers(&headers).await {
            Ok(_) => 101,
            Err((status, _)) => status,
        };
        assert_eq!(
            status,
            expected,
            "trusted: {}",
            std::ptr::eq(broker, &trusted)
        );
    }
}
