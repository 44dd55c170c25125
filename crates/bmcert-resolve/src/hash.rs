//! The name table: DNS names to slots, looked up with the name exactly as the client sent it.
//!
//! A lookup is on the path of every handshake, so the name is read once: one pass over it,
//! eight bytes at a time, checks that it is ASCII, folds upper case to lower case (in
//! registers: no copy of the name) and hashes it. The table is a `hashbrown::HashTable`, the
//! table behind std's `HashMap`, used directly because std's map can only hash a key it
//! is given whole, which would need the name lower-cased into a buffer and read twice
//! more (check, copy, hash).
//!
//! The hash is not std's SipHash-1-3, which is built to resist hash flooding of
//! *insertions*. The table is filled from the topology (administrator input) and only
//! *looked up* with client input: a client cannot add entries, so it cannot build long
//! probe chains, and a lookup costs at most the longest chain the administrator's names
//! produce. A multiply-rotate hash in the style of FxHash, seeded per process from std's
//! `RandomState` so chain layout is not predictable across processes, is then enough, and a
//! few times faster on 10-30 byte names.

use core::hash::BuildHasher;
use std::collections::hash_map::RandomState;

use hashbrown::HashTable;

/// The longest DNS name (RFC 1035, without the trailing dot); longer names cannot be known.
pub(crate) const MAX_NAME: usize = 253;

const K: u64 = 0xf135_7aea_2e62_a9c5;
/// The top bit of every byte.
const HI: u64 = 0x8080_8080_8080_8080;
/// Added to an ASCII byte, sets its top bit when the byte is `A` (0x41) or above.
const FROM_A: u64 = 0x3f3f_3f3f_3f3f_3f3f;
/// Added to an ASCII byte, sets its top bit when the byte is above `Z` (0x5a).
const PAST_Z: u64 = 0x2525_2525_2525_2525;

struct Entry {
    /// Lower case, no trailing dot.
    name: Box<str>,
    slot: u32,
}

/// DNS names (lower-case A-labels) to slot numbers.
pub(crate) struct NameTable {
    seed: u64,
    table: HashTable<Entry>,
}

/// What one pass over a name found.
struct Scan {
    hash: u64,
    /// The name has upper-case letters (folded for the hash).
    folded: bool,
}

impl NameTable {
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        Self {
            seed: RandomState::new().hash_one(0x6263_6572_745f_7265_u64),
            table: HashTable::with_capacity(capacity),
        }
    }

    /// Maps `name` (lower case, as [`bmcert_topology::DomainName`] holds it) to `slot`,
    /// unless it is already mapped: then the slot that keeps it is returned.
    pub(crate) fn insert(&mut self, name: &str, slot: u32) -> Result<(), u32> {
        let hash = hash_stored(self.seed, name);
        if let Some(kept) = self.table.find(hash, |e| e.name.eq_ignore_ascii_case(name)) {
            return Err(kept.slot);
        }
        let seed = self.seed;
        self.table.insert_unique(
            hash,
            Entry {
                name: name.to_ascii_lowercase().into_boxed_str(),
                slot,
            },
            |e| hash_stored(seed, &e.name),
        );
        Ok(())
    }

    /// The slot of `name`, compared without regard to ASCII case and without one trailing
    /// dot. `None` for names that cannot be in the table: empty, longer than a DNS name, or
    /// not ASCII (the table holds A-labels only; an SNI value is ASCII by RFC 6066).
    #[inline]
    pub(crate) fn get(&self, name: &str) -> Option<u32> {
        let name = name.strip_suffix('.').unwrap_or(name);
        if name.is_empty() || name.len() > MAX_NAME {
            return None;
        }
        let scan = scan(self.seed, name.as_bytes())?;
        let entry = if scan.folded {
            // Entries are lower case, so this is equality with the folded name.
            self.table
                .find(scan.hash, |e| e.name.eq_ignore_ascii_case(name))
        } else {
            self.table.find(scan.hash, |e| *e.name == *name)
        }?;
        Some(entry.slot)
    }

    pub(crate) fn len(&self) -> usize {
        self.table.len()
    }
}

fn hash_stored(seed: u64, name: &str) -> u64 {
    // Every stored name went through `DomainName`, so it is ASCII: the scan cannot fail.
    scan(seed, name.as_bytes()).map_or(seed, |s| s.hash)
}

#[inline(always)]
fn mix(h: u64, word: u64) -> u64 {
    (h.rotate_left(26) ^ word).wrapping_mul(K)
}

/// Checks one word of ASCII and folds its upper-case letters: `(folded word, non-ASCII
/// bits, upper-case bits)`. The upper-case bits are only meaningful when the word is ASCII
/// (no byte then carries into the next).
#[inline(always)]
fn fold(w: u64) -> (u64, u64, u64) {
    let upper = w.wrapping_add(FROM_A) & !w.wrapping_add(PAST_Z) & HI;
    // 0x80 >> 2 is 0x20, the case bit.
    (w | (upper >> 2), w & HI, upper)
}

#[inline(always)]
fn load(bytes: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(w)
}

/// One pass over `bytes`: `None` when not ASCII, else the hash of the lower-cased name.
#[inline]
fn scan(seed: u64, bytes: &[u8]) -> Option<Scan> {
    let len = bytes.len();
    let mut h = seed;
    let mut non_ascii = 0u64;
    let mut upper = 0u64;
    let mut step = |w: u64| {
        let (w, n, u) = fold(w);
        non_ascii |= n;
        upper |= u;
        h = mix(h, w);
    };
    if len >= 8 {
        let mut at = 0;
        while at + 8 <= len {
            step(load(bytes, at));
            at += 8;
        }
        if at < len {
            // The last 8 bytes, overlapping the previous word: no copy of the tail.
            step(load(bytes, len - 8));
        }
    } else {
        let mut w = 0u64;
        for (i, b) in bytes.iter().enumerate() {
            w |= u64::from(*b) << (8 * i);
        }
        step(w);
    }
    if non_ascii != 0 {
        return None;
    }
    // The length goes in too, so "ab" and "ab\0" differ.
    let x = mix(h, len as u64);
    // hashbrown takes its 7 control bits from the top: fold the high bits down and up.
    let hash = (x ^ (x >> 29)).wrapping_mul(0xbf58_476d_1ce4_e5b9) ^ (x >> 32);
    Some(Scan {
        hash,
        folded: upper != 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{HashMap, HashSet};

    #[test]
    fn spreads_similar_names() {
        let seed = 0x1234_5678_9abc_def0;
        let hashes: HashSet<u64> = (0..100_000)
            .map(|i| hash_stored(seed, &format!("w{i}.bench.test")))
            .collect();
        assert_eq!(hashes.len(), 100_000);
        // The top 7 bits (hashbrown's control byte) take all 128 values.
        let tops: HashSet<u64> = hashes.iter().map(|h| h >> 57).collect();
        assert_eq!(tops.len(), 128);
    }

    #[test]
    fn length_matters() {
        assert_ne!(hash_stored(7, "ab"), hash_stored(7, "ab\0"));
    }

    #[test]
    fn folds_exactly_the_upper_case_letters() {
        for b in 0u8..0x80 {
            let (w, non_ascii, upper) = fold(u64::from(b) << 24);
            assert_eq!(non_ascii, 0);
            assert_eq!(upper != 0, b.is_ascii_uppercase(), "byte {b:#x}");
            assert_eq!(w, u64::from(b.to_ascii_lowercase()) << 24, "byte {b:#x}");
        }
        for b in 0x80u8..=0xff {
            assert_ne!(fold(u64::from(b)).1, 0, "byte {b:#x}");
        }
    }

    fn table(names: &[&str]) -> NameTable {
        let mut t = NameTable::with_capacity(names.len());
        for (slot, name) in names.iter().enumerate() {
            t.insert(name, u32::try_from(slot).unwrap()).unwrap();
        }
        t
    }

    #[test]
    fn looks_up_case_insensitively_without_one_trailing_dot() {
        let mut t = table(&["webmail.acme.test", "a.", "x", "mail.example.test"]);
        assert_eq!(t.get("WebMail.Acme.TEST."), Some(0));
        assert_eq!(t.get("webmail.acme.test"), Some(0));
        assert_eq!(t.get("webmail.acme.test.."), None);
        assert_eq!(t.get("a.."), Some(1));
        assert_eq!(t.get("X"), Some(2));
        assert_eq!(t.get(""), None);
        assert_eq!(t.get("."), None);
        assert_eq!(t.get("bücher.test"), None);
        assert_eq!(t.get("MAIL.EXAMPLE.TEST"), Some(3));
        assert_eq!(t.get("mail.example.tes"), None);
        assert_eq!(t.insert("Mail.Example.Test", 9), Err(3));
        assert_eq!(t.len(), 4);
        let max = "a".repeat(MAX_NAME);
        let t = table(&[&max]);
        assert_eq!(t.get(&max.to_ascii_uppercase()), Some(0));
        assert_eq!(t.get(&"a".repeat(MAX_NAME + 1)), None);
    }

    proptest::proptest! {
        /// Same answers as a `HashMap` of the lower-cased names, asked with the normalized
        /// name, for any text and any case of a stored name.
        #[test]
        fn agrees_with_a_map_of_normalized_names(
            stored in proptest::collection::vec("[a-z0-9.-]{0,40}", 0..20),
            asked in "\\PC{0,300}",
            pick in 0usize..20,
            flip in proptest::collection::vec(proptest::bool::ANY, 40),
        ) {
            let mut t = NameTable::with_capacity(stored.len());
            let mut reference = HashMap::new();
            for (slot, name) in stored.iter().enumerate() {
                let slot = u32::try_from(slot).unwrap();
                let kept = reference.get(name.as_str()).copied();
                proptest::prop_assert_eq!(t.insert(name, slot).err(), kept);
                reference.entry(name.clone()).or_insert(slot);
            }
            let normalized = |s: &str| {
                let s = s.strip_suffix('.').unwrap_or(s);
                (!s.is_empty() && s.len() <= MAX_NAME && s.is_ascii())
                    .then(|| s.to_ascii_lowercase())
            };
            let expect = |s: &str| normalized(s).and_then(|n| reference.get(&n).copied());
            proptest::prop_assert_eq!(t.get(&asked), expect(&asked));
            if let Some(name) = stored.get(pick) {
                let mixed: String = name
                    .chars()
                    .zip(flip.iter().cycle())
                    .map(|(c, up)| if *up { c.to_ascii_uppercase() } else { c })
                    .collect();
                proptest::prop_assert_eq!(t.get(&mixed), expect(&mixed));
                let dotted = format!("{mixed}.");
                proptest::prop_assert_eq!(t.get(&dotted), expect(&dotted));
            }
        }
    }
}
