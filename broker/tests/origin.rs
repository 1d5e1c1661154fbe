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
