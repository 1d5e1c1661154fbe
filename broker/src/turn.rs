//! TURN REST credentials (coturn's `use-auth-secret`): each peer gets a
//! username `<expiry unix time>:<peer id>` and the password
//! base64(HMAC-SHA1(secret, username)). The TURN server recomputes the
//! password from the shared secret, so nothing is stored per peer and the
//! secret itself never leaves the broker.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use hmac::{Hmac, Mac};
use protocol::{IceServer, PeerId};
use sha1::Sha1;

/// TURN servers sharing one secret with the broker.
#[derive(Clone)]
pub struct Turn {
    /// `turn:` / `turns:` URLs.
    pub urls: Vec<String>,
    /// The secret configured in coturn as `static-auth-secret`.
    pub secret: String,
    /// How long minted credentials stay valid.
    pub ttl: Duration,
}

impl std::fmt::Debug for Turn {
    // Never print the secret, not even in debug logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Turn")
            .field("urls", &self.urls)
            .field("secret", &"<redacted>")
            .field("ttl", &self.ttl)
            .finish()
    }
}

impl Turn {
    /// How often a connected peer gets fresh credentials: at half their
    /// lifetime, at the first ping after (the session checks at its pings,
    /// so the ping interval must stay under a quarter of the lifetime), so
    /// a link set up just before the renewal still finds them valid. TURN
    /// servers check a credential when an allocation is made, so relayed
    /// links outlive it.
    pub fn renew_every(&self) -> Duration {
        self.ttl / 2
    }

    /// The ICE server entry for `peer`, valid for `ttl` from now.
    pub fn ice_server(&self, peer: PeerId) -> IceServer {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let (username, credential) = credentials(&self.secret, peer, now + self.ttl);
        IceServer {
            urls: self.urls.clone(),
            username: Some(username),
            credential: Some(credential),
        }
    }
}

/// Username and password for `peer`, expiring at `expiry` (since the Unix
/// epoch).
pub fn credentials(secret: &str, peer: PeerId, expiry: Duration) -> (String, String) {
    let username = format!("{}:{peer}", expiry.as_secs());
    let mut mac =
        Hmac::<Sha1>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(username.as_bytes());
    let password = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    (username, password)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_coturn_rest_scheme() {
        // Computed independently: base64(hmac_sha1("north", username)).
        let (user, pass) = credentials(
            "north",
            PeerId(uuid::Uuid::nil()),
            Duration::from_secs(1_700_003_600),
        );
        assert_eq!(user, "1700003600:00000000-0000-0000-0000-000000000000");
        assert_eq!(pass, "1K3ZLI10Z+wIAQMXk2t2uZPMmVU=");
    }

    #[test]
    fn debug_output_hides_the_secret() {
        let turn = Turn {
            urls: vec!["turn:t.example".into()],
            secret: "hunter2".into(),
            ttl: Duration::from_secs(60),
        };
        assert!(!format!("{turn:?}").contains("hunter2"));
    }
}
