//! Unique random text to share, without a random-number crate.

use std::time::{SystemTime, UNIX_EPOCH};

/// xorshift64*: plenty for test data, never for secrets.
pub struct XorShift(u64);

impl XorShift {
    /// Seeded from the clock and the process id, so every run differs.
    pub fn from_time() -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Self::new(nanos ^ (u64::from(std::process::id()) << 32))
    }

    /// A fixed seed (0 is replaced, xorshift would stay at 0).
    pub fn new(seed: u64) -> Self {
        Self(if seed == 0 {
            0x9e37_79b9_7f4a_7c15
        } else {
            seed
        })
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform-enough in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

const SYLLABLES: &[&str] = &[
    "ka", "lo", "mi", "ren", "ta", "shu", "vo", "el", "dri", "pan", "qu", "ox", "zi", "bem", "sa",
    "tor", "ne", "wy", "fa", "gul",
];
/// Multi-byte UTF-8 (2, 3 and 4 bytes) to catch encoding mistakes.
const EXOTIC: &[&str] = &["café", "straße", "naïve", "→", "日本語", "Ωmega", "😀", "½"];

/// Random prose of at least `min_bytes` UTF-8 bytes, starting with a unique
/// header line and ending with an ASCII letter. Lines are separated by `\n`
/// only (a textarea would normalize `\r\n`).
pub fn random_text(min_bytes: usize) -> String {
    let mut rng = XorShift::from_time();
    let mut text = format!("shared text {:016x}\n", rng.next_u64());
    while text.len() < min_bytes {
        if rng.below(40) == 0 {
            text.push_str(rng.pick(EXOTIC));
        } else {
            for _ in 0..=rng.below(3) {
                text.push_str(rng.pick(SYLLABLES));
            }
        }
        text.push_str(match rng.below(60) {
            0..=3 => ". ",
            4..=6 => ", ",
            7..=9 => "\n",
            10 => "\n\n",
            11 => "\t",
            _ => " ",
        });
    }
    text.push_str("fin");
    text
}

#[cfg(test)]
mod unit {
    #[test]
    fn random_text_is_long_unique_and_ends_in_a_letter() {
        let a = super::random_text(40 * 1024);
        let b = super::random_text(40 * 1024);
        assert!(a.len() >= 40 * 1024 && a.len() < 41 * 1024);
        assert_ne!(a, b);
        assert!(a.ends_with("fin"));
        assert!(!a.contains('\r'));
    }
}
