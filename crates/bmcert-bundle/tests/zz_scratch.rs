#![allow(clippy::unwrap_used)]
use bmcert_bundle::pem_encode;
use bmcert_test::chains::{look_alikes, Alg, Chain3};
#[test]
#[ignore]
fn write_files() {
    let chain = Chain3::new(Alg::P256, &["mail.example.test"]);
    let mut ca = String::new();
    for d in look_alikes(&chain.intermediate, &chain.root, 10_000) {
        ca.push_str(&pem_encode("CERTIFICATE", &d));
    }
    ca.push_str(&chain.intermediate.pem);
    ca.push_str(&chain.root.pem);
    std::fs::write("/tmp/verify-scratch/ca10000.pem", ca).unwrap();
    std::fs::write("/tmp/verify-scratch/cert.pem", &chain.leaf.pem).unwrap();
    std::fs::write(
        "/tmp/verify-scratch/key.pem",
        chain.leaf.key.serialize_pem(),
    )
    .unwrap();
}
