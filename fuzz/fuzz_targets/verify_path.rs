//! Path building over arbitrary certificate lists: `verify` must return a verdict, never panic.
#![no_main]

use bmcert_verify::{verify, ChainInput};
use libfuzzer_sys::fuzz_target;
use rustls_pki_types::{CertificateDer, UnixTime};

fuzz_target!(|data: &[u8]| {
    // Split the input into certificates at 0xfe bytes; the first is the leaf,
    // every third of the rest goes to the certificate file, the others to the CA file.
    let mut parts = data
        .split(|b| *b == 0xfe)
        .map(|p| CertificateDer::from(p.to_vec()));
    let Some(leaf) = parts.next() else { return };
    let (mut extras, mut ca) = (Vec::new(), Vec::new());
    for (i, p) in parts.enumerate() {
        if i % 3 == 0 {
            extras.push(p)
        } else {
            ca.push(p)
        }
    }
    let host = bmcert_topology::Host::parse("mail.example.test").ok();
    let verdict = verify(&ChainInput {
        leaf: &leaf,
        cert_file_extras: &extras,
        ca_file: &ca,
        platform_roots: &[],
        reference: host.as_ref(),
        time: UnixTime::since_unix_epoch(core::time::Duration::from_secs(1_780_272_000)),
    });
    let _ = verdict.is_valid();
});
