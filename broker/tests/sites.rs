//! Sites' signed releases through the broker: kept if they verify and are
//! newer, passed on to followers at once, handed to late followers; bad
//! ones refused with a reason. Real WebSocket clients.

mod common;

use common::Broker;
use ed25519_dalek::{Signer as _, SigningKey};
use protocol::release::{text, Release, SignedRelease, SiteKey, VERSION};
use protocol::ContentId;
use serde_json::{json, Value};

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn signed(key: &SigningKey, seq: u64, index: u8, expires: u64) -> SignedRelease {
    let release = Release {
        site: SiteKey(key.verifying_key().to_bytes()),
        seq,
        created: now(),
        expires,
        index: ContentId([index; 32]),
    };
    let signature = key.sign(&release.signing_bytes());
    SignedRelease {
        v: VERSION,
        release,
        signature: text::encode(&signature.to_bytes()),
    }
}

fn announce(record: &SignedRelease) -> Value {
    json!({ "announce": { "record": record } })
}

fn follow(site: &SiteKey) -> Value {
    json!({ "follow": { "site": site.to_string() } })
}

fn seq_of(msg: &Value) -> u64 {
    msg["site_release"]["record"]["release"]["seq"]
        .as_u64()
        .unwrap_or_else(|| panic!("not a site release: {msg}"))
}

#[tokio::test]
async fn releases_reach_followers_at_once_and_late_followers_on_following() {
    let broker = Broker::start().await;
    let key = SigningKey::from_bytes(&[7; 32]);
    let site = SiteKey(key.verifying_key().to_bytes());
    let mut early = broker.client().await;
    early.send_json(&follow(&site)).await;
    let mut publisher = broker.client().await;
    publisher
        .send_json(&announce(&signed(&key, 1, 1, now() + 3600)))
        .await;
    assert_eq!(seq_of(&early.recv().await), 1);
    // The publisher does not follow: nothing comes back to it.
    publisher
        .expect_nothing(std::time::Duration::from_millis(200))
        .await;

    let mut late = broker.client().await;
    late.send_json(&follow(&site)).await;
    assert_eq!(seq_of(&late.recv().await), 1, "the kept release, at once");

    let newer = signed(&key, 2, 2, now() + 3600);
    publisher.send_json(&announce(&newer)).await;
    assert_eq!(seq_of(&early.recv().await), 2);
    assert_eq!(seq_of(&late.recv().await), 2);
    // The same record again changes nothing and tells nobody.
    publisher.send_json(&announce(&newer)).await;
    early
        .expect_nothing(std::time::Duration::from_millis(200))
        .await;
    publisher.assert_usable().await;
}

#[tokio::test]
async fn bad_releases_are_refused_with_a_reason_and_change_nothing() {
    let broker = Broker::start().await;
    let key = SigningKey::from_bytes(&[8; 32]);
    let site = SiteKey(key.verifying_key().to_bytes());
    let mut follower = broker.client().await;
    follower.send_json(&follow(&site)).await;
    let mut publisher = broker.client().await;
    publisher
        .send_json(&announce(&signed(&key, 5, 1, now() + 3600)))
        .await;
    assert_eq!(seq_of(&follower.recv().await), 5);

    let mut cases: Vec<(SignedRelease, &str)> = Vec::new();
    // Signed by another key under this site's name.
    let mut forged = signed(&SigningKey::from_bytes(&[9; 32]), 6, 2, now() + 3600);
    forged.release.site = site;
    cases.push((forged, "does not verify"));
    cases.push((signed(&key, 4, 3, now() + 3600), "older than release 5"));
    cases.push((signed(&key, 5, 4, now() + 3600), "other contents"));
    cases.push((signed(&key, 6, 5, now().saturating_sub(1)), "expired"));
    for (record, reason) in cases {
        publisher.send_json(&announce(&record)).await;
        let error = publisher.expect_error("bad_release").await;
        let message = error["message"].as_str().unwrap_or_default();
        assert!(message.contains(reason), "{reason}: {error}");
    }
    follower
        .expect_nothing(std::time::Duration::from_millis(200))
        .await;
    // A follower arriving now still gets release 5.
    let mut late = broker.client().await;
    late.send_json(&follow(&site)).await;
    assert_eq!(seq_of(&late.recv().await), 5);
}

#[tokio::test]
async fn a_peer_follows_a_bounded_number_of_sites() {
    let broker = Broker::start().await;
    let mut peer = broker.client().await;
    for i in 0..broker::sites::MAX_FOLLOWS_PER_PEER {
        let key = SigningKey::from_bytes(&[i as u8 + 1; 32]);
        peer.send_json(&follow(&SiteKey(key.verifying_key().to_bytes())))
            .await;
    }
    let one_more = SigningKey::from_bytes(&[200; 32]);
    peer.send_json(&follow(&SiteKey(one_more.verifying_key().to_bytes())))
        .await;
    let error = peer.expect_error("limit").await;
    assert!(error.to_string().contains("at most"), "{error}");
    peer.assert_usable().await;
}
