//! Library tests: every format administrators upload (fixtures from rcgen and the real
//! `openssl` command), every code, secrecy of the key, and proptest properties.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::path::Path;
use std::time::Duration;

use bmcert_bundle::{
    parse_certificates, parse_pkcs12, parse_private_key, BundleCheck, Code, FileKind, KeyAlgorithm,
    KeyFormat, Report,
};
use bmcert_test::fixtures::{openssl, Chain, ChainSpec, KeyType};
use bmcert_test::openssl_files::{export_p12, self_signed};
use bmcert_verify::ChainCode as VerifyCode;
use proptest::prelude::*;
use rustls_pki_types::UnixTime;
use time::OffsetDateTime;

fn now() -> UnixTime {
    UnixTime::now()
}

fn at(t: OffsetDateTime) -> UnixTime {
    UnixTime::since_unix_epoch(Duration::from_secs(t.unix_timestamp() as u64))
}

fn chain(kt: KeyType) -> Chain {
    ChainSpec::new(&["mail.example.test"]).leaf_key(kt).build()
}

fn check(cert: &[u8], key: &[u8], ca: &[u8]) -> Report {
    BundleCheck::files(cert, key, Some(ca)).check(now())
}

/// Checks the chain's own PEM certificate, key and CA files.
fn check_chain(c: &Chain) -> Report {
    check(
        c.leaf.cert_pem.as_bytes(),
        c.leaf.key_pem.as_bytes(),
        c.ca_pem().as_bytes(),
    )
}

/// Checks the chain's certificate and CA with `key`, decrypted with `password`.
fn check_with_password(c: &Chain, key: &[u8], password: &[u8]) -> Report {
    BundleCheck::files(c.leaf.cert_pem.as_bytes(), key, Some(c.ca_pem().as_bytes()))
        .key_password(password)
        .check(now())
}

fn assert_valid(r: &Report) {
    assert!(r.is_valid(), "expected valid, got {:#?}", r.problems);
}

fn assert_problem(r: &Report, code: Code, file: FileKind) {
    assert!(
        r.problems.iter().any(|p| p.code == code && p.file == file),
        "expected {code} on {file}, got {:#?}",
        r.problems
    );
    assert!(!r.is_valid());
}

/// Writes the chain's files into `dir` as cert.pem, key.pem, ca.pem.
fn write_chain(dir: &Path, c: &Chain) {
    std::fs::write(dir.join("cert.pem"), &c.leaf.cert_pem).unwrap();
    std::fs::write(dir.join("key.pem"), &c.leaf.key_pem).unwrap();
    std::fs::write(dir.join("ca.pem"), c.ca_pem()).unwrap();
}

/// `openssl` with `args` writing `out` encrypted with the password `s3cret`.
fn encrypt_key(dir: &Path, args: &[&str], out: &str) {
    openssl(
        dir,
        &[args, &["-out", out, "-passout", "pass:s3cret"]].concat(),
    );
}

#[test]
fn every_key_type_passes_in_pem_and_is_summarized() {
    for kt in [
        KeyType::Rsa2048,
        KeyType::EcdsaP256,
        KeyType::EcdsaP384,
        KeyType::Ed25519,
    ] {
        let c = chain(kt);
        let r = check_chain(&c);
        assert_valid(&r);
        assert!(r.warnings.is_empty(), "{:?}", r.warnings);
        let leaf = r.leaf.as_ref().unwrap();
        assert_eq!(leaf.subject, "CN=mail.example.test");
        assert_eq!(leaf.issuer, "CN=bmcert Test Intermediate CA,O=bmcert tests");
        assert_eq!(leaf.sans, vec!["DNS:mail.example.test".to_owned()]);
        let (alg, bits) = match kt {
            KeyType::Rsa2048 => (KeyAlgorithm::Rsa, 2048),
            KeyType::EcdsaP256 => (KeyAlgorithm::EcdsaP256, 256),
            KeyType::EcdsaP384 => (KeyAlgorithm::EcdsaP384, 384),
            _ => (KeyAlgorithm::Ed25519, 256),
        };
        assert_eq!((leaf.key_algorithm, leaf.key_bits), (alg, Some(bits)));
        assert_eq!(
            leaf.sha256_fingerprint,
            bmcert_bundle::sha256_fingerprint(&c.leaf.cert_der)
        );
        assert_eq!(leaf.sha256_fingerprint.len(), 32 * 3 - 1);
        assert_eq!(r.chain.len(), 2);
        assert!(r.chain[1].self_issued);
        let bundle = r.bundle.as_ref().unwrap();
        assert_eq!(bundle.leaf.as_ref(), &c.leaf.cert_der[..]);
        assert_eq!(bundle.chain.len(), 2);
        assert_eq!(bundle.key.algorithm(), alg);
        assert_eq!(bundle.key.bits(), Some(bits));
    }
}

#[test]
fn openssl_fingerprint_and_dates_agree() {
    let dir = tempfile::tempdir().unwrap();
    let c = chain(KeyType::EcdsaP256);
    write_chain(dir.path(), &c);
    let out = openssl(
        dir.path(),
        &[
            "x509",
            "-in",
            "cert.pem",
            "-noout",
            "-fingerprint",
            "-sha256",
        ],
    );
    let out = String::from_utf8(out).unwrap();
    let r = check_chain(&c);
    let fp = out.trim().rsplit('=').next().unwrap();
    assert_eq!(r.leaf.unwrap().sha256_fingerprint, fp);
}

#[test]
fn openssl_traditional_sec1_and_der_encodings() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let rsa = chain(KeyType::Rsa2048);
    write_chain(d, &rsa);
    // PKCS#1 PEM ("RSA PRIVATE KEY") and DER.
    openssl(
        d,
        &["pkey", "-in", "key.pem", "-traditional", "-out", "rsa1.pem"],
    );
    openssl(
        d,
        &[
            "rsa",
            "-in",
            "key.pem",
            "-traditional",
            "-outform",
            "DER",
            "-out",
            "rsa1.der",
        ],
    );
    openssl(
        d,
        &[
            "pkcs8", "-topk8", "-nocrypt", "-in", "key.pem", "-outform", "DER", "-out", "pk8.der",
        ],
    );
    openssl(
        d,
        &[
            "pkey", "-in", "key.pem", "-outform", "DER", "-out", "pkey.der",
        ],
    );
    openssl(
        d,
        &[
            "x509", "-in", "cert.pem", "-outform", "DER", "-out", "cert.der",
        ],
    );
    let ca = rsa.ca_pem();
    let pkcs1 = std::fs::read(d.join("rsa1.pem")).unwrap();
    assert!(pkcs1.starts_with(b"-----BEGIN RSA PRIVATE KEY-----"));
    for (cert, key, format) in [
        ("cert.pem", "rsa1.pem", KeyFormat::Pkcs1),
        ("cert.der", "rsa1.der", KeyFormat::Pkcs1),
        ("cert.der", "pk8.der", KeyFormat::Pkcs8),
        ("cert.der", "pkey.der", KeyFormat::Pkcs1),
    ] {
        let r = check(
            &std::fs::read(d.join(cert)).unwrap(),
            &std::fs::read(d.join(key)).unwrap(),
            ca.as_bytes(),
        );
        assert_valid(&r);
        let k = &r.bundle.as_ref().unwrap().key;
        assert_eq!(
            (k.format(), k.algorithm(), k.bits()),
            (format, KeyAlgorithm::Rsa, Some(2048)),
            "{key}"
        );
    }

    // SEC1 ("EC PRIVATE KEY") from a P-384 PKCS#8 key, PEM and DER.
    let ec = chain(KeyType::EcdsaP384);
    write_chain(d, &ec);
    openssl(d, &["ec", "-in", "key.pem", "-out", "sec1.pem"]);
    openssl(
        d,
        &[
            "ec", "-in", "key.pem", "-outform", "DER", "-out", "sec1.der",
        ],
    );
    for key in ["sec1.pem", "sec1.der"] {
        let r = check(
            ec.leaf.cert_pem.as_bytes(),
            &std::fs::read(d.join(key)).unwrap(),
            ec.ca_pem().as_bytes(),
        );
        assert_valid(&r);
        let k = &r.bundle.as_ref().unwrap().key;
        assert_eq!(
            (k.format(), k.algorithm()),
            (KeyFormat::Sec1, KeyAlgorithm::EcdsaP384),
            "{key}"
        );
    }

    // `openssl ecparam -genkey` writes an EC PARAMETERS block before the key.
    openssl(
        d,
        &[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-out",
            "ecp.pem",
        ],
    );
    let ecp = std::fs::read(d.join("ecp.pem")).unwrap();
    assert!(ecp.starts_with(b"-----BEGIN EC PARAMETERS-----"));
    openssl(
        d,
        &[
            "req",
            "-x509",
            "-key",
            "ecp.pem",
            "-subj",
            "/CN=mail.example.test",
            "-days",
            "90",
            "-out",
            "ecp-cert.pem",
        ],
    );
    let r = BundleCheck::files(&std::fs::read(d.join("ecp-cert.pem")).unwrap(), &ecp, None)
        .check(now());
    // A self-signed `req -x509` certificate is an authority, not a server certificate, so
    // the chain checks refuse it; the key itself must read and match.
    assert!(
        !r.has(Code::KeyUnreadable) && !r.has(Code::KeyMismatch),
        "{r:#?}"
    );
    assert!(r.has(Code::Chain(VerifyCode::LeafIsCa)), "{r:#?}");
    assert_eq!(r.bundle.unwrap().key.algorithm(), KeyAlgorithm::EcdsaP256);
}

#[test]
fn bom_crlf_and_bag_attributes_from_openssl_pkcs12() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let c = chain(KeyType::EcdsaP256);
    write_chain(d, &c);
    export_p12(d, "b.p12", "pass:pw", &[]);
    let certs = openssl(
        d,
        &[
            "pkcs12", "-in", "b.p12", "-passin", "pass:pw", "-nokeys", "-clcerts",
        ],
    );
    let cas = openssl(
        d,
        &[
            "pkcs12", "-in", "b.p12", "-passin", "pass:pw", "-nokeys", "-cacerts",
        ],
    );
    let key = openssl(
        d,
        &[
            "pkcs12", "-in", "b.p12", "-passin", "pass:pw", "-nocerts", "-noenc",
        ],
    );
    assert!(String::from_utf8_lossy(&certs).starts_with("Bag Attributes"));
    assert!(String::from_utf8_lossy(&key).starts_with("Bag Attributes"));
    let r = check(&certs, &key, &cas);
    assert_valid(&r);
    assert_eq!(r.chain.len(), 2);

    // The same files as a Windows editor saves them: BOM and CRLF.
    let windows = |b: &[u8]| {
        let mut v = b"\xEF\xBB\xBF".to_vec();
        v.extend(
            String::from_utf8_lossy(b)
                .replace('\n', "\r\n")
                .into_bytes(),
        );
        v
    };
    let r = check(&windows(&certs), &windows(&key), &windows(&cas));
    assert_valid(&r);
    assert_eq!(r.chain.len(), 2);
}

#[test]
fn encrypted_keys() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let c = chain(KeyType::Rsa2048);
    write_chain(d, &c);
    encrypt_key(d, &["pkcs8", "-topk8", "-in", "key.pem"], "enc.pem");
    encrypt_key(
        d,
        &["pkcs8", "-topk8", "-in", "key.pem", "-outform", "DER"],
        "enc.der",
    );
    encrypt_key(
        d,
        &["rsa", "-in", "key.pem", "-aes128", "-traditional"],
        "legacy.pem",
    );
    let ca = c.ca_pem();
    for file in ["enc.pem", "enc.der", "legacy.pem"] {
        let key = std::fs::read(d.join(file)).unwrap();
        let r = check(c.leaf.cert_pem.as_bytes(), &key, ca.as_bytes());
        assert_problem(&r, Code::KeyEncrypted, FileKind::Key);
        assert!(
            r.problems[0].message.contains("openssl pkey -in"),
            "{}",
            r.problems[0].message
        );
    }
    for file in ["enc.pem", "enc.der"] {
        let key = std::fs::read(d.join(file)).unwrap();
        assert_valid(&check_with_password(&c, &key, b"s3cret"));
        let r = check_with_password(&c, &key, b"wrong");
        assert_problem(&r, Code::KeyEncrypted, FileKind::Key);
        assert!(r.problems[0]
            .message
            .contains("password given does not decrypt"));
    }
    // The legacy encryption is not decrypted even with the password: the message says how.
    let key = std::fs::read(d.join("legacy.pem")).unwrap();
    let r = check_with_password(&c, &key, b"s3cret");
    assert_problem(&r, Code::KeyEncrypted, FileKind::Key);
    assert!(r.problems[0].message.contains("Proc-Type"));
}

#[test]
fn pkcs12_modern_legacy_and_bad_password() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for kt in [KeyType::Rsa2048, KeyType::EcdsaP256] {
        let c = chain(kt);
        write_chain(d, &c);
        export_p12(d, "modern.p12", "pass:pw", &[]);
        export_p12(d, "legacy.p12", "pass:pw", &["-legacy"]);
        export_p12(
            d,
            "des.p12",
            "pass:pw",
            &["-descert", "-certpbe", "PBE-SHA1-3DES"],
        );
        for file in ["modern.p12", "legacy.p12", "des.p12"] {
            let p12 = std::fs::read(d.join(file)).unwrap();
            let r = BundleCheck::pkcs12(&p12, "pw").check(now());
            assert_valid(&r);
            let b = r.bundle.as_ref().unwrap();
            assert_eq!(b.leaf.as_ref(), &c.leaf.cert_der[..], "{file}");
            assert_eq!(b.chain.len(), 2, "{file}");
            assert_eq!(r.leaf.as_ref().unwrap().subject, "CN=mail.example.test");
            let r = BundleCheck::pkcs12(&p12, "wrong").check(now());
            assert_problem(&r, Code::P12BadPassword, FileKind::P12);
            assert_eq!(r.problems.len(), 1);
            assert!(r.bundle.is_none());
        }
    }
    // An empty password (openssl `-passout pass:`).
    let c = chain(KeyType::EcdsaP256);
    write_chain(d, &c);
    export_p12(d, "nopass.p12", "pass:", &[]);
    let p12 = std::fs::read(d.join("nopass.p12")).unwrap();
    assert_valid(&BundleCheck::pkcs12(&p12, "").check(now()));
    let contents = parse_pkcs12(&p12, "").unwrap();
    assert_eq!(contents.certs.len(), 3);
    assert!(!format!("{contents:?}").contains(&hex(&c.leaf.key_der[40..56])));
}

#[test]
fn pkcs12_unreadable() {
    for bytes in [
        &b""[..],
        b"garbage",
        b"\x30\x03\x02\x01\x03",
        b"-----BEGIN CERTIFICATE-----\n",
    ] {
        let r = BundleCheck::pkcs12(bytes, "pw").check(now());
        assert_problem(&r, Code::P12Unreadable, FileKind::P12);
    }
}

#[test]
fn swapped_and_unreadable_files() {
    let c = chain(KeyType::EcdsaP256);
    let ca = c.ca_pem();
    // Certificate and key swapped.
    let r = check(
        c.leaf.key_pem.as_bytes(),
        c.leaf.cert_pem.as_bytes(),
        ca.as_bytes(),
    );
    assert_problem(&r, Code::CertUnreadable, FileKind::Cert);
    assert_problem(&r, Code::KeyUnreadable, FileKind::Key);
    let key_msg = &r
        .problems
        .iter()
        .find(|p| p.code == Code::KeyUnreadable)
        .unwrap()
        .message;
    assert!(key_msg.contains("holds a certificate"), "{key_msg}");
    // DER certificate as key, DER key as certificate.
    let r = check(&c.leaf.key_der, &c.leaf.cert_der, ca.as_bytes());
    assert_problem(&r, Code::CertUnreadable, FileKind::Cert);
    assert!(
        r.problems[0].message.contains("private key"),
        "{}",
        r.problems[0].message
    );
    assert_problem(&r, Code::KeyUnreadable, FileKind::Key);
    // Empty and garbage files.
    let r = check(b"", b"hello", ca.as_bytes());
    assert!(r.problems[0].message.contains("empty"));
    assert_problem(&r, Code::CertUnreadable, FileKind::Cert);
    assert_problem(&r, Code::KeyUnreadable, FileKind::Key);
    // A truncated certificate.
    let truncated = &c.leaf.cert_pem[..c.leaf.cert_pem.len() - 30];
    let r = check(
        truncated.as_bytes(),
        c.leaf.key_pem.as_bytes(),
        ca.as_bytes(),
    );
    assert_problem(&r, Code::CertUnreadable, FileKind::Cert);
    assert!(
        r.problems[0].message.contains("truncated"),
        "{}",
        r.problems[0].message
    );
    // A damaged certificate (valid base64, not X.509).
    let damaged = bmcert_bundle::pem_encode("CERTIFICATE", b"\x30\x03\x02\x01\x01");
    let r = check(damaged.as_bytes(), c.leaf.key_pem.as_bytes(), ca.as_bytes());
    assert_problem(&r, Code::CertUnreadable, FileKind::Cert);
    assert!(r.problems[0].message.contains("not a valid X.509"));
    // CA file unreadable: garbage, or a key.
    for bad in [&b"nothing here"[..], c.leaf.key_pem.as_bytes()] {
        let r = check(c.leaf.cert_pem.as_bytes(), c.leaf.key_pem.as_bytes(), bad);
        assert_problem(&r, Code::CaUnreadable, FileKind::Ca);
        assert_eq!(r.problems.len(), 1, "{:?}", r.problems);
    }
    // Two keys in the key file.
    let two = format!("{}{}", c.leaf.key_pem, c.root.key_pem);
    let r = check(c.leaf.cert_pem.as_bytes(), two.as_bytes(), ca.as_bytes());
    assert_problem(&r, Code::KeyUnreadable, FileKind::Key);
}

#[test]
fn key_mismatch_and_corrupted_private_part() {
    let a = chain(KeyType::EcdsaP256);
    let b = chain(KeyType::EcdsaP256);
    let r = check(
        a.leaf.cert_pem.as_bytes(),
        b.leaf.key_pem.as_bytes(),
        a.ca_pem().as_bytes(),
    );
    assert_problem(&r, Code::KeyMismatch, FileKind::Key);
    // Different algorithms.
    let rsa = chain(KeyType::Rsa2048);
    let r = check(
        a.leaf.cert_pem.as_bytes(),
        rsa.leaf.key_pem.as_bytes(),
        a.ca_pem().as_bytes(),
    );
    assert_problem(&r, Code::KeyMismatch, FileKind::Key);
    assert!(!bmcert_bundle::key_matches(
        &parse_private_key(rsa.leaf.key_pem.as_bytes(), None).unwrap(),
        &a.leaf.cert_der.clone().into()
    ));

    // A SEC1 key whose public half still matches the certificate but whose private
    // scalar is damaged: comparing public keys would accept it, the signature does not.
    let dir = tempfile::tempdir().unwrap();
    write_chain(dir.path(), &a);
    let mut sec1 = openssl(dir.path(), &["ec", "-in", "key.pem", "-outform", "DER"]);
    // ECPrivateKey: 30 len 02 01 01 04 20 <32-byte scalar> ...
    assert_eq!(&sec1[2..7], b"\x02\x01\x01\x04\x20");
    sec1[7 + 10] ^= 0x55;
    let r = check(a.leaf.cert_pem.as_bytes(), &sec1, a.ca_pem().as_bytes());
    assert!(
        r.has(Code::KeyMismatch) || r.has(Code::KeyUnreadable),
        "{:?}",
        r.problems
    );
    assert!(!r.is_valid());
}

#[test]
fn validity_codes_at_chosen_times() {
    let nb = time::macros::datetime!(2030-01-01 0:00 UTC);
    let na = time::macros::datetime!(2031-01-01 0:00 UTC);
    let c = ChainSpec::new(&["mail.example.test"])
        .validity(nb, na)
        .build();
    let (cert, key, ca) = (
        c.leaf.cert_pem.as_bytes(),
        c.leaf.key_pem.as_bytes(),
        c.ca_pem(),
    );
    let run = |t: OffsetDateTime| BundleCheck::files(cert, key, Some(ca.as_bytes())).check(at(t));

    let r = run(nb - time::Duration::days(1));
    assert_problem(&r, Code::NotYetValid, FileKind::Cert);
    assert_eq!(r.codes(), vec![Code::NotYetValid]);

    let r = run(na + time::Duration::seconds(1));
    assert_problem(&r, Code::Expired, FileKind::Cert);
    assert!(r.problems[0].message.contains("2031-01-01T00:00:00Z"));
    assert_eq!(r.codes(), vec![Code::Expired]);

    let r = run(na - time::Duration::days(10));
    assert_valid(&r);
    assert_eq!(r.codes(), vec![Code::ExpiresSoon]);
    assert_eq!(r.warnings[0].file, FileKind::Cert);

    let r = run(na - time::Duration::days(31));
    assert_valid(&r);
    assert!(r.warnings.is_empty());
    assert_eq!(r.checked_at, "2030-12-01T00:00:00Z");

    // An expired authority on the path is `ca_expired`, reported on the CA file.
    let r = BundleCheck::files(cert, key, Some(ca.as_bytes())).check(at(
        OffsetDateTime::now_utc() + time::Duration::days(365 * 35)
    ));
    assert_problem(&r, Code::Chain(VerifyCode::CaExpired), FileKind::Ca);
}

#[test]
fn weak_rsa_key_from_openssl() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    self_signed(d, "rsa:1024", 90);
    let r = BundleCheck::files(
        &std::fs::read(d.join("c.pem")).unwrap(),
        &std::fs::read(d.join("k.pem")).unwrap(),
        None,
    )
    .check(now());
    assert_problem(&r, Code::WeakKey, FileKind::Key);
    assert_problem(&r, Code::WeakKey, FileKind::Cert);
    assert!(!r.has(Code::KeyMismatch), "{:?}", r.problems);
    assert!(!r.has(Code::KeyUnreadable), "{:?}", r.problems);
    assert!(r.problems[0].message.contains("1024 bits"));
    assert_eq!(r.leaf.unwrap().key_bits, Some(1024));
}

#[test]
fn several_certificates_in_the_cert_file() {
    let c = chain(KeyType::EcdsaP256);
    let inter = c.intermediate.as_ref().unwrap();
    // Intermediate first, leaf second: the leaf is found by the key.
    let cert_file = format!("{}{}", inter.cert_pem, c.leaf.cert_pem);
    let r = check(
        cert_file.as_bytes(),
        c.leaf.key_pem.as_bytes(),
        c.root.cert_pem.as_bytes(),
    );
    assert_valid(&r);
    assert_eq!(r.codes(), vec![Code::ChainInCertFile]);
    let b = r.bundle.as_ref().unwrap();
    assert_eq!(b.leaf.as_ref(), &c.leaf.cert_der[..]);
    assert_eq!(b.chain[0].as_ref(), &inter.cert_der[..]);
    assert_eq!(b.chain[1].as_ref(), &c.root.cert_der[..]);
    assert_eq!(
        r.chain[0].subject,
        "CN=bmcert Test Intermediate CA,O=bmcert tests"
    );
}

#[test]
fn private_key_never_leaks() {
    let dir = tempfile::tempdir().unwrap();
    let c = chain(KeyType::Rsa2048);
    write_chain(dir.path(), &c);
    // Several encodings of the same key; none of their bytes may appear.
    let pkcs1 = openssl(
        dir.path(),
        &["rsa", "-in", "key.pem", "-traditional", "-outform", "DER"],
    );
    let body_lines: Vec<&str> = c
        .leaf
        .key_pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let r = check_chain(&c);
    assert_valid(&r);
    let key = &r.bundle.as_ref().unwrap().key;
    assert_eq!(key.secret_der().secret_der(), &c.leaf.key_der[..]);
    let outputs = [
        format!("{r:?}"),
        format!("{r}"),
        serde_json::to_string(&r).unwrap(),
        format!("{key:?}"),
        format!("{:?}", r.bundle),
    ];
    for out in &outputs {
        for line in &body_lines[1..body_lines.len() - 1] {
            assert!(!out.contains(line), "key text leaked into {out}");
        }
        for der in [&c.leaf.key_der[..], &pkcs1[..]] {
            for window in der[20..].chunks(16).take(10) {
                assert!(!out.contains(&hex(window)), "key hex leaked");
                assert!(!out.to_uppercase().contains(&hex(window).to_uppercase()));
            }
        }
    }
    // Errors about keys do not quote the key either.
    let mut broken = c.leaf.key_pem.clone().into_bytes();
    let n = broken.len();
    broken.truncate(n - 40);
    let err = parse_private_key(&broken, None).unwrap_err().to_string();
    for line in &body_lines {
        assert!(!err.contains(line));
    }
    // The secret PEM round-trips.
    assert_eq!(
        key.to_secret_pem().as_str(),
        c.leaf.key_pem.replace("\r\n", "\n")
    );
}

#[test]
fn json_shape() {
    let c = chain(KeyType::EcdsaP256);
    let host = bmcert_topology::Host::parse("https://Mail.Example.test:443/webmail").unwrap();
    let r = BundleCheck::files(
        c.leaf.cert_pem.as_bytes(),
        c.root.key_pem.as_bytes(),
        Some(c.ca_pem().as_bytes()),
    )
    .host(host)
    .check(now());
    let v: serde_json::Value = serde_json::to_value(&r).unwrap();
    assert_eq!(v["valid"], false);
    assert_eq!(v["problems"][0]["code"], "key_mismatch");
    assert_eq!(v["problems"][0]["file"], "key");
    assert!(v["problems"][0]["message"].as_str().unwrap().len() > 20);
    assert_eq!(v["warnings"], serde_json::json!([]));
    assert_eq!(v["host"], "mail.example.test");
    assert_eq!(v["leaf"]["subject"], "CN=mail.example.test");
    assert_eq!(v["leaf"]["key_algorithm"], "ECDSA P-256");
    assert_eq!(v["chain"].as_array().unwrap().len(), 2);
    assert!(v.get("bundle").is_none() && v.get("key").is_none());
}

#[test]
fn codes_are_stable_and_documented() {
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/problem-codes.md"
    ))
    .unwrap();
    let chain_codes: Vec<Code> = VerifyCode::ALL.iter().map(|c| Code::Chain(*c)).collect();
    for code in Code::ALL.iter().chain(&chain_codes) {
        let s = code.as_str();
        assert!(
            s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
            "{s}"
        );
        assert!(
            doc.contains(&format!("## `{s}`")),
            "docs/problem-codes.md lacks {s}"
        );
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn sample_certs() -> &'static [Vec<u8>] {
    static CERTS: std::sync::OnceLock<Vec<Vec<u8>>> = std::sync::OnceLock::new();
    CERTS.get_or_init(|| {
        let c = chain(KeyType::EcdsaP256);
        let mut v = c.ca_ders();
        v.push(c.leaf.cert_der);
        v
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = parse_certificates(&bytes);
        let _ = parse_private_key(&bytes, None);
        let _ = parse_private_key(&bytes, Some(b"pw"));
        let _ = parse_pkcs12(&bytes, "pw");
        let r = BundleCheck::files(&bytes, &bytes, Some(&bytes)).check(now());
        prop_assert!(!r.is_valid());
    }

    #[test]
    fn arbitrary_text_around_pem_never_panics(
        prefix in "[ -~\r\n]{0,200}",
        body in "[A-Za-z0-9+/=\r\n -]{0,400}",
        label in prop::sample::select(vec!["CERTIFICATE", "PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY", "ENCRYPTED PRIVATE KEY", "EC PARAMETERS"]),
    ) {
        let text = format!("{prefix}-----BEGIN {label}-----\n{body}\n-----END {label}-----\n");
        let _ = parse_certificates(text.as_bytes());
        let _ = parse_private_key(text.as_bytes(), None);
    }

    #[test]
    fn pem_written_then_parsed_gives_the_same_der(
        picks in proptest::collection::vec(0usize..3, 1..4),
        noise in proptest::collection::vec("[a-zA-Z0-9 =:,]{0,60}", 4),
        crlf in any::<bool>(),
        bom in any::<bool>(),
    ) {
        let certs = sample_certs();
        let mut text = String::new();
        if bom { text.push('\u{feff}'); }
        for (i, &p) in picks.iter().enumerate() {
            text.push_str(&noise[i % noise.len()]);
            text.push('\n');
            text.push_str(&bmcert_bundle::pem_encode("CERTIFICATE", &certs[p]));
        }
        text.push_str(&noise[3]);
        if crlf { text = text.replace('\n', "\r\n"); }
        let parsed = parse_certificates(text.as_bytes()).unwrap();
        let expected: Vec<&[u8]> = picks.iter().map(|&p| &certs[p][..]).collect();
        let got: Vec<&[u8]> = parsed.iter().map(|c| c.as_ref()).collect();
        prop_assert_eq!(got, expected);
    }
}
