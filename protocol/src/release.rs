//! Signed releases of a site (`peerpage release`): which index is the
//! site's current one, signed by the site's key, so that visitors accept a
//! newer index only from the publisher, and never an older one.
//!
//! `peerpage.json` of a released folder is a [`SignedRelease`]: the record
//! (site key, `seq`, creation and expiry times, the address of the index)
//! and an Ed25519 signature over [`DOMAIN`] followed by the record's
//! canonical bytes ([`Release::signing_bytes`]: compact JSON, fields in a
//! fixed order, only integers and strings of fixed alphabets, so every
//! signer and verifier writes the same bytes). The index itself is content:
//! its bytes at `.peerpage/<address>.json`, its manifest at
//! `.peerpage/<address>`.

use serde::{Deserialize, Serialize};

use crate::ids::ContentId;

/// Record format version.
pub const VERSION: u8 = 1;
/// What the signature covers first: no signature made for anything else
/// with the same key can pass for a release.
pub const DOMAIN: &[u8] = b"peerpage release v1\0";
/// Largest signed record accepted, in bytes.
pub const MAX_RECORD_BYTES: usize = 4096;

/// The one text form of keys and signatures: base64url without padding.
pub mod text {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;

    /// `bytes` as base64url without padding.
    pub fn encode(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// Exactly `N` bytes from their base64url form.
    pub fn decode<const N: usize>(text: &str) -> Option<[u8; N]> {
        let bytes = URL_SAFE_NO_PAD.decode(text).ok()?;
        bytes.try_into().ok()
    }
}

/// A site's public key (Ed25519, 32 bytes), in [`text`] form on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SiteKey(pub [u8; 32]);

impl SiteKey {
    /// From its text form.
    pub fn parse(text: &str) -> Option<SiteKey> {
        text::decode::<32>(text).map(SiteKey)
    }
}

impl std::fmt::Display for SiteKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&text::encode(&self.0))
    }
}

impl Serialize for SiteKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for SiteKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        SiteKey::parse(&text)
            .ok_or_else(|| serde::de::Error::custom("a site key is 32 bytes in base64url"))
    }
}

/// What a release says. Field order is the canonical order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Release {
    /// The key that signs the site's releases.
    pub site: SiteKey,
    /// One more than the release before.
    pub seq: u64,
    /// When it was made, seconds since the Unix epoch.
    pub created: u64,
    /// After this (seconds since the Unix epoch) it is refused: a visitor
    /// cannot be kept on it for ever.
    pub expires: u64,
    /// The address of the site's index (see the module docs).
    pub index: ContentId,
}

impl Release {
    /// The bytes signed: [`DOMAIN`], then the compact JSON of the record.
    pub fn signing_bytes(&self) -> Vec<u8> {
        let mut bytes = DOMAIN.to_vec();
        bytes.extend(serde_json::to_vec(self).expect("a release always serializes"));
        bytes
    }
}

/// `peerpage.json` of a released folder.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedRelease {
    /// Format version, always [`VERSION`].
    pub v: u8,
    pub release: Release,
    /// Ed25519 signature of [`Release::signing_bytes`], in [`text`] form.
    pub signature: String,
}

/// Why a record was refused before its signature was checked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("the release record is {0} bytes, over the {MAX_RECORD_BYTES}-byte limit")]
    TooLarge(usize),
    #[error("the release record is not valid: {0}")]
    Invalid(String),
}

impl SignedRelease {
    /// Parses a record from an untrusted source (its signature is the
    /// caller's to check, against the key it follows).
    pub fn parse(bytes: &[u8]) -> Result<SignedRelease, RecordError> {
        if bytes.len() > MAX_RECORD_BYTES {
            return Err(RecordError::TooLarge(bytes.len()));
        }
        let record: SignedRelease =
            serde_json::from_slice(bytes).map_err(|e| RecordError::Invalid(e.to_string()))?;
        if record.v != VERSION {
            return Err(RecordError::Invalid(format!(
                "unsupported version {}",
                record.v
            )));
        }
        if record.signature_bytes().is_none() {
            return Err(RecordError::Invalid(
                "the signature is not 64 bytes in base64url".into(),
            ));
        }
        Ok(record)
    }

    /// The signature's 64 bytes.
    pub fn signature_bytes(&self) -> Option<[u8; 64]> {
        text::decode::<64>(&self.signature)
    }

    /// Whether this record is signed by the key it names (whether that is
    /// the key the caller follows is the caller's to check).
    #[cfg(feature = "verify")]
    pub fn verify(&self) -> Result<(), String> {
        use ed25519_dalek::{Signature, VerifyingKey};
        let key = VerifyingKey::from_bytes(&self.release.site.0)
            .map_err(|_| "the site key is not an Ed25519 key".to_owned())?;
        let signature = self
            .signature_bytes()
            .map(|b| Signature::from_bytes(&b))
            .ok_or("the signature is not 64 bytes")?;
        key.verify_strict(&self.release.signing_bytes(), &signature)
            .map_err(|_| "the release's signature does not verify for its site key".to_owned())
    }

    /// The file's bytes: pretty JSON and a newline, like the index.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = serde_json::to_vec_pretty(self).expect("a record always serializes");
        bytes.push(b'\n');
        bytes
    }
}

/// Where the index of release `index` lives under the published folder.
pub fn index_path(index: &ContentId) -> String {
    format!("{}/{index}.json", crate::site::MANIFEST_DIR)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn release() -> Release {
        Release {
            site: SiteKey([3; 32]),
            seq: 7,
            created: 1_700_000_000,
            expires: 1_800_000_000,
            index: ContentId([9; 32]),
        }
    }

    #[test]
    fn the_signed_bytes_are_fixed() {
        let expected = format!(
            "peerpage release v1\0{{\"site\":\"{}\",\"seq\":7,\"created\":1700000000,\"expires\":1800000000,\"index\":\"{}\"}}",
            "AwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwM",
            "09".repeat(32)
        );
        assert_eq!(
            String::from_utf8(release().signing_bytes()).unwrap(),
            expected
        );
    }

    #[test]
    fn records_round_trip_and_bad_ones_are_refused() {
        let signed = SignedRelease {
            v: VERSION,
            release: release(),
            signature: text::encode(&[1; 64]),
        };
        assert_eq!(SignedRelease::parse(&signed.to_bytes()), Ok(signed.clone()));
        let mut short = signed.clone();
        short.signature = text::encode(&[1; 63]);
        assert!(SignedRelease::parse(&short.to_bytes()).is_err());
        let mut v2 = signed.clone();
        v2.v = 2;
        assert!(SignedRelease::parse(&v2.to_bytes()).is_err());
        assert!(SignedRelease::parse(&vec![b' '; MAX_RECORD_BYTES + 1]).is_err());
        let extra = String::from_utf8(signed.to_bytes())
            .unwrap()
            .replacen('{', "{\"x\":1,", 1);
        assert!(SignedRelease::parse(extra.as_bytes()).is_err());
        assert!(SiteKey::parse("not a key").is_none());
    }
}
