//! The name table: DNS names to slots, looked up with the name exactly as the client sent it.
//!
//! A `hashbrown::HashMap` of the lower-case names with foldhash, the fastest maintained
//! general-purpose map and hasher (hashbrown's own default). The table is filled from the
//! topology (administrator input) and only *looked up* with client input, so a client cannot
//! build long probe chains: a seeded non-cryptographic hash is enough, and std's SipHash
//! would only cost time. A name sent with upper-case letters (rare: clients send the host
//! as typed, and browsers lower-case it) is lower-cased into a stack buffer first.
//!
//! This replaced a hand-written table (`hashbrown::HashTable` with a multiply-rotate hash
//! that folded the case while hashing, in one pass over the name): measured uniformly over
//! every domain it was 1.15x / 1.96x / 2.49x the time of this plain map at 1k / 10k / 100k
//! domains (docs/benchmarks.md, "Lookup against foldhash"), so the simpler code wins.

use hashbrown::HashMap;

/// The longest DNS name (RFC 1035, without the trailing dot); longer names cannot be known.
pub(crate) const MAX_NAME: usize = 253;

/// DNS names (lower-case A-labels) to slot numbers.
pub(crate) struct NameTable {
    map: HashMap<Box<str>, u32, foldhash::fast::RandomState>,
}

impl NameTable {
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        Self {
            map: HashMap::with_capacity_and_hasher(
                capacity,
                foldhash::fast::RandomState::default(),
            ),
        }
    }

    /// Maps `name` (lower case, as [`bmcert_topology::DomainName`] holds it) to `slot`,
    /// unless it is already mapped: then the slot that keeps it is returned.
    pub(crate) fn insert(&mut self, name: &str, slot: u32) -> Result<(), u32> {
        match self.map.entry(name.to_ascii_lowercase().into_boxed_str()) {
            hashbrown::hash_map::Entry::Occupied(kept) => Err(*kept.get()),
            hashbrown::hash_map::Entry::Vacant(free) => {
                free.insert(slot);
                Ok(())
            }
        }
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
        let bytes = name.as_bytes();
        if !bytes.iter().any(u8::is_ascii_uppercase) {
            // Not ASCII: no stored name is equal to it either (they are all ASCII).
            return self.map.get(name).copied();
        }
        if !name.is_ascii() {
            return None;
        }
        let mut buf = [0u8; MAX_NAME];
        let lower = &mut buf[..bytes.len()];
        lower.copy_from_slice(bytes);
        lower.make_ascii_lowercase();
        let lower = core::str::from_utf8(lower).ok()?;
        self.map.get(lower).copied()
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

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
