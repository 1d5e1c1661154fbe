//! Connecting: the welcome, id assignment and ICE servers.

mod common;

use std::collections::HashSet;

use common::{Broker, Client};
use protocol::IceServer;
use serde_json::json;
use uuid::Uuid;

#[tokio::test]
async fn welcome_comes_first_with_unique_uuid_v4_ids() {
    let broker = Broker::start().await;
    let mut ids = HashSet::new();
    let mut clients = Vec::new();
    for _ in 0..50 {
        // Client::connect panics unless the very first frame is a welcome.
        let client = broker.client().await;
        assert_eq!(
            client.welcome,
            json!({"welcome": {"id": client.id, "ice_servers": []}}),
            "welcome has exactly id and ice_servers"
        );
        let uuid = Uuid::parse_str(&client.id).unwrap_or_else(|e| panic!("{}: {e}", client.id));
        assert_eq!(uuid.get_version_num(), 4, "{} is not a v4 UUID", client.id);
        // The hyphenated lowercase form, as browsers will compare it.
        assert_eq!(client.id, uuid.hyphenated().to_string());
        assert!(
            ids.insert(client.id.clone()),
            "id {} assigned twice",
            client.id
        );
        // Keep them all connected so ids are unique among live peers too.
        clients.push(client);
    }
    assert_eq!(ids.len(), 50);
    assert_eq!(broker.metric("broker_peers").await, 50);
}

#[tokio::test]
async fn nothing_else_arrives_after_the_welcome() {
    let broker = Broker::start().await;
    let mut client = broker.client().await;
    client.expect_nothing(common::QUIET).await;
}

#[tokio::test]
async fn a_client_cannot_choose_its_id() {
    let broker = Broker::start().await;
    let wished = Uuid::new_v4().to_string();
    let client = broker
        .connect(&format!("/ws?id={wished}&from={wished}&peer={wished}"))
        .await;
    assert_ne!(client.id, wished);
    assert_eq!(Uuid::parse_str(&client.id).unwrap().get_version_num(), 4);
}

#[tokio::test]
async fn ice_servers_from_config_are_passed_through() {
    let ice_servers = vec![
        IceServer {
            urls: vec!["stun:stun.example.org:3478".into()],
            username: None,
            credential: None,
        },
        IceServer {
            urls: vec![
                "turn:turn.example.org:3478?transport=udp".into(),
                "turns:turn.example.org:5349".into(),
            ],
            username: Some("alice".into()),
            credential: Some("s3cret".into()),
        },
    ];
    let broker = Broker::start_with(|c| c.ice_servers = ice_servers).await;
    for _ in 0..2 {
        let client = broker.client().await;
        assert_eq!(
            client.welcome,
            json!({"welcome": {
                "id": client.id,
                "ice_servers": [
                    {"urls": ["stun:stun.example.org:3478"]},
                    {
                        "urls": ["turn:turn.example.org:3478?transport=udp", "turns:turn.example.org:5349"],
                        "username": "alice",
                        "credential": "s3cret"
                    }
                ]
            }}),
        );
    }
}

#[tokio::test]
async fn welcome_is_first_even_with_a_want_in_the_url() {
    let broker = Broker::start().await;
    let content = common::fresh_address();
    // Client::connect asserts the welcome comes first; the want's reply follows.
    let mut client = Client::connect(&broker.url(&format!("/ws?want={content}"))).await;
    client.expect_holders(&content, 0).await;
}

#[tokio::test]
async fn turn_credentials_are_minted_per_peer_and_the_secret_stays_home() {
    use std::time::{Duration, SystemTime, UNIX_EPOCH};
    let secret = "correct horse battery staple";
    let broker = Broker::start_with(|c| {
        c.turn = Some(broker::turn::Turn {
            urls: vec!["turn:192.0.2.1:3478?transport=udp".into()],
            secret: secret.into(),
            ttl: Duration::from_secs(3600),
        })
    })
    .await;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let (a, b) = (broker.client().await, broker.client().await);
    let mut usernames = Vec::new();
    for client in [&a, &b] {
        let text = client.welcome.to_string();
        assert!(!text.contains(secret), "the secret left the broker: {text}");
        let server = &client.welcome["welcome"]["ice_servers"][0];
        assert_eq!(server["urls"][0], "turn:192.0.2.1:3478?transport=udp");
        let username = server["username"].as_str().unwrap();
        let (expiry, peer) = username.split_once(':').unwrap();
        assert_eq!(peer, client.id, "the username names the peer");
        let expiry: u64 = expiry.parse().unwrap();
        assert!(
            (now + 3590..=now + 3610).contains(&expiry),
            "expiry {expiry} is not an hour from {now}"
        );
        let (_, expected) = broker::turn::credentials(
            secret,
            client.id.parse().unwrap(),
            Duration::from_secs(expiry),
        );
        assert_eq!(server["credential"], expected.as_str());
        usernames.push(username.to_owned());
    }
    assert_ne!(usernames[0], usernames[1]);
}
