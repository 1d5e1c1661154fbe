//! Which chunks of a piece of content a peer holds.
//!
//! Holders tell the peers they serve what they have (`Reply::Has`) and then
//! each chunk they gain (`Reply::Got`), BitTorrent-style, over the data
//! channel: the broker never carries availability. On the wire a partial
//! set is a hex bitfield, most significant bit first (chunk 0 is the high
//! bit of the first byte): 1 KiB of text for a 1 GiB file.

use serde::{Deserialize, Serialize};

/// A set of chunk indices out of `len`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Availability {
    bits: Vec<u8>,
    len: u32,
    count: u32,
}

/// Wire form of an [`Availability`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Have {
    /// Every chunk.
    All,
    /// The chunks whose bits are set.
    Some(String),
}

/// Why a bitfield was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad availability bitfield: {0}")]
pub struct HaveError(String);

impl Availability {
    /// No chunk of `len`.
    pub fn none(len: u32) -> Self {
        Availability {
            bits: vec![0; (len as usize).div_ceil(8)],
            len,
            count: 0,
        }
    }

    /// Every chunk of `len`.
    pub fn all(len: u32) -> Self {
        let mut a = Self::none(len);
        for i in 0..len {
            a.insert(i);
        }
        a
    }

    /// Number of chunks the set is out of.
    pub fn len(&self) -> u32 {
        self.len
    }

    /// Number of chunks in the set.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Whether every chunk is in the set.
    pub fn is_full(&self) -> bool {
        self.count == self.len
    }

    /// Whether chunk `i` is in the set.
    pub fn contains(&self, i: u32) -> bool {
        i < self.len && self.bits[i as usize / 8] & (0x80 >> (i % 8)) != 0
    }

    /// Adds chunk `i`; false if it is out of range.
    pub fn insert(&mut self, i: u32) -> bool {
        if i >= self.len {
            return false;
        }
        let (byte, bit) = (i as usize / 8, 0x80u8 >> (i % 8));
        if self.bits[byte] & bit == 0 {
            self.bits[byte] |= bit;
            self.count += 1;
        }
        true
    }

    /// The wire form.
    pub fn to_have(&self) -> Have {
        if self.is_full() {
            Have::All
        } else {
            Have::Some(hex::encode(&self.bits))
        }
    }

    /// Parses the wire form for content of `len` chunks.
    pub fn from_have(have: &Have, len: u32) -> Result<Self, HaveError> {
        match have {
            Have::All => Ok(Self::all(len)),
            Have::Some(text) => {
                let bits = hex::decode(text).map_err(|e| HaveError(e.to_string()))?;
                let mut a = Self::none(len);
                if bits.len() != a.bits.len() {
                    return Err(HaveError(format!(
                        "{} bytes for {len} chunks, expected {}",
                        bits.len(),
                        a.bits.len()
                    )));
                }
                // Bits past the last chunk must be clear.
                let spare = (a.bits.len() * 8) as u32 - len;
                if spare > 0 && bits.last().is_some_and(|b| b & ((1u8 << spare) - 1) != 0) {
                    return Err(HaveError("bits set past the last chunk".into()));
                }
                a.count = bits.iter().map(|b| b.count_ones()).sum();
                a.bits = bits;
                Ok(a)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_the_wire_form() {
        let mut a = Availability::none(13);
        for i in [0, 7, 8, 12] {
            assert!(a.insert(i));
        }
        assert!(!a.insert(13));
        assert_eq!(a.count(), 4);
        let have = a.to_have();
        assert_eq!(have, Have::Some("8188".into()));
        let b = Availability::from_have(&have, 13).unwrap();
        assert_eq!(a, b);
        assert!(b.contains(12) && !b.contains(11) && !b.contains(13));
    }

    #[test]
    fn full_sets_are_sent_as_all() {
        let a = Availability::all(9);
        assert!(a.is_full());
        assert_eq!(a.to_have(), Have::All);
        assert_eq!(Availability::from_have(&Have::All, 9).unwrap(), a);
        assert_eq!(Availability::none(0).to_have(), Have::All);
    }

    #[test]
    fn refuses_bitfields_that_do_not_fit() {
        assert!(Availability::from_have(&Have::Some("ff".into()), 13).is_err());
        assert!(Availability::from_have(&Have::Some("zz".into()), 8).is_err());
        // 13 chunks leave 3 spare bits in the second byte.
        assert!(Availability::from_have(&Have::Some("0001".into()), 13).is_err());
        assert!(Availability::from_have(&Have::Some("0008".into()), 13).is_ok());
    }
}
