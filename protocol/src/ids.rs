//! Identifier newtypes and their text forms.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// A connected peer. Always assigned by the broker, never chosen by a client.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PeerId(pub Uuid);

impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for PeerId {
    type Err = uuid::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s).map(PeerId)
    }
}

/// A content address: the SHA-256 of the content's manifest bytes, written as
/// 64 lowercase hex characters. The manifest lists every chunk's hash, so the
/// address commits to every byte of the content.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContentId(pub [u8; 32]);

impl ContentId {
    /// The address of a manifest given as its exact bytes.
    pub fn of_manifest_bytes(bytes: &[u8]) -> Self {
        ContentId(Sha256::digest(bytes).into())
    }
}

/// Why a string is not a content address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed address {shown:?}: an address is 64 lowercase hex characters (the SHA-256 of the content's manifest)")]
pub struct BadAddress {
    /// The offending input, shortened so an error never echoes a huge string.
    pub shown: String,
}

impl FromStr for ContentId {
    type Err = BadAddress;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BadAddress {
            shown: s.chars().take(80).collect(),
        };
        if s.len() != 64 || !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(bad());
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(|_| bad())?;
        Ok(ContentId(out))
    }
}

impl fmt::Display for ContentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for ContentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ContentId({self})")
    }
}

impl Serialize for ContentId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ContentId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The SHA-256 of one chunk of content.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChunkHash(pub [u8; 32]);

impl ChunkHash {
    /// Hashes a chunk's bytes.
    pub fn of(bytes: &[u8]) -> Self {
        ChunkHash(Sha256::digest(bytes).into())
    }
}

impl fmt::Debug for ChunkHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChunkHash({})", hex::encode(self.0))
    }
}

impl Serialize for ChunkHash {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&hex::encode(self.0))
    }
}

impl<'de> Deserialize<'de> for ChunkHash {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        let mut out = [0u8; 32];
        hex::decode_to_slice(s.as_bytes(), &mut out)
            .map_err(|_| serde::de::Error::custom("chunk hash must be 64 hex characters"))?;
        Ok(ChunkHash(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_id_round_trips_as_lowercase_hex() {
        let id = ContentId::of_manifest_bytes(b"hello");
        let text = id.to_string();
        assert_eq!(text.len(), 64);
        assert_eq!(text.parse::<ContentId>().unwrap(), id);
        assert_eq!(serde_json::to_string(&id).unwrap(), format!("\"{text}\""));
    }

    #[test]
    fn content_id_rejects_uppercase_short_and_non_hex() {
        let id = ContentId::of_manifest_bytes(b"x").to_string();
        assert!(id.to_uppercase().parse::<ContentId>().is_err());
        assert!(id[..63].parse::<ContentId>().is_err());
        assert!(format!("{}g", &id[..63]).parse::<ContentId>().is_err());
        let err = "nope".parse::<ContentId>().unwrap_err().to_string();
        assert!(err.contains("malformed address"), "{err}");
    }
}
