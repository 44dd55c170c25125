//! The hasher of the name map: seeded, word-at-a-time, cheap for short DNS names.
//!
//! std's default SipHash-1-3 is built to resist hash flooding of *insertions*. The name map
//! is filled from the topology (administrator input) and only *looked up* with client
//! input: a client cannot add entries, so it cannot build long probe chains, and a lookup
//! costs at most the longest chain the administrator's names produce. A multiply-rotate
//! hash in the style of FxHash, seeded per process from std's `RandomState` so chain layout
//! is not predictable across processes, is then enough, and a few times faster on 10-30
//! byte names. (The `foldhash` crate does the same; it is not a dependency for 40 lines.)

use core::hash::{BuildHasher, Hasher};
use std::collections::hash_map::RandomState;

const K: u64 = 0xf135_7aea_2e62_a9c5;

/// Builds [`NameHasher`]s with a per-process random seed.
#[derive(Clone, Debug)]
pub(crate) struct NameHashBuilder {
    seed: u64,
}

impl NameHashBuilder {
    pub(crate) fn new() -> Self {
        Self {
            seed: RandomState::new().hash_one(0x6263_6572_745f_7265_u64),
        }
    }
}

impl BuildHasher for NameHashBuilder {
    type Hasher = NameHasher;
    fn build_hasher(&self) -> NameHasher {
        NameHasher { h: self.seed }
    }
}

#[inline]
fn word(bytes: &[u8]) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&bytes[..8]);
    u64::from_le_bytes(w)
}

/// See the module documentation.
pub(crate) struct NameHasher {
    h: u64,
}

impl NameHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.h = (self.h.rotate_left(26) ^ word).wrapping_mul(K);
    }
}

impl Hasher for NameHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let len = bytes.len();
        if len >= 8 {
            let mut chunks = bytes.chunks_exact(8);
            for chunk in &mut chunks {
                self.add(word(chunk));
            }
            if !chunks.remainder().is_empty() {
                // The last 8 bytes, overlapping the previous word: no copy of the tail.
                self.add(word(&bytes[len - 8..]));
            }
        } else {
            let mut w = 0u64;
            for (i, b) in bytes.iter().enumerate() {
                w |= u64::from(*b) << (8 * i);
            }
            self.add(w);
        }
        // The length goes in too, so "ab" and "ab\0" differ.
        self.add(len as u64);
    }

    #[inline]
    fn write_u8(&mut self, byte: u8) {
        self.add(u64::from(byte));
    }

    #[inline]
    fn finish(&self) -> u64 {
        // hashbrown takes its 7 control bits from the top: fold the high bits down and up.
        let x = self.h;
        (x ^ (x >> 29)).wrapping_mul(0xbf58_476d_1ce4_e5b9) ^ (x >> 32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn spreads_similar_names() {
        let build = NameHashBuilder::new();
        let hashes: HashSet<u64> = (0..100_000)
            .map(|i| build.hash_one(format!("w{i}.bench.test").as_str()))
            .collect();
        assert_eq!(hashes.len(), 100_000);
        // The top 7 bits (hashbrown's control byte) take all 128 values.
        let tops: HashSet<u64> = hashes.iter().map(|h| h >> 57).collect();
        assert_eq!(tops.len(), 128);
    }

    #[test]
    fn length_matters() {
        let build = NameHashBuilder::new();
        assert_ne!(build.hash_one(&b"ab"[..]), build.hash_one(&b"ab\0"[..]));
    }
}
