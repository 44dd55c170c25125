//! Any text as a domain name, a target (`--target`), a host or URL (`--url`, topology
//! URLs): never a panic, and whatever is accepted is canonical (lower-case ASCII A-labels)
//! and prints back to text that parses to the same value; whatever is refused is explained
//! in a message that repeats no control character (NUL, ESC, ...) of the input and stays
//! short.
#![no_main]

use bmcert_topology::{is_unsafe_char, DomainName, Host, Target, ECHO_LIMIT};
use libfuzzer_sys::fuzz_target;

fn canonical(name: &str) {
    assert!(name.is_ascii(), "{name:?}");
    assert!(!name.bytes().any(|b| b.is_ascii_uppercase()), "{name:?}");
    assert!(!name.is_empty() && name.len() <= 253, "{name:?}");
}

/// An error message is plain: no control or bidi character, bounded whatever the input.
fn plain(message: &str) {
    assert!(!message.chars().any(is_unsafe_char), "{message:?}");
    assert!(message.chars().count() < 4 * ECHO_LIMIT + 400, "{message:?}");
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for message in [
        DomainName::new(text).err().map(|e| e.to_string()),
        text.parse::<Target>().err().map(|e| e.to_string()),
        Host::parse(text).err().map(|e| e.to_string()),
    ]
    .into_iter()
    .flatten()
    {
        plain(&message);
    }
    if let Ok(name) = DomainName::new(text) {
        canonical(name.as_str());
        assert_eq!(DomainName::new(name.as_str()).as_ref(), Ok(&name));
        assert_eq!(name.to_string().parse::<DomainName>().as_ref(), Ok(&name));
    }
    if let Ok(target) = text.parse::<Target>() {
        if let Some(name) = target.domain() {
            canonical(name.as_str());
        }
        assert_eq!(target.to_string().parse::<Target>().as_ref(), Ok(&target));
    }
    if let Ok(host) = Host::parse(text) {
        if let Host::Dns(name) = &host {
            canonical(name.as_str());
        }
        assert_eq!(Host::parse(&host.to_string()).as_ref(), Ok(&host), "{text:?}");
    }
});
