//! `CertManager` over the directory store, with rcgen chains and the real `openssl` command.
// Test code: failing loudly is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use bmcert::store::{DirStore, Source};
use bmcert::topology::{Target, Topology};
use bmcert::{block_on, CertManager, ManagerError, TargetStatus};
use bmcert_test::fixtures::{openssl, Chain, ChainSpec};
use rustls_pki_types::UnixTime;

const TOPOLOGY: &str = r#"
default_domain = "example.test"
[system]
url = "https://mail.example.test"
names = ["autodiscover.example.test"]
[[domain]]
name = "acme.test"
url = "https://webmail.acme.test"
names = []
[[domain]]
name = "plain.test"
"#;

fn manager(dir: &Path) -> CertManager {
    let store = DirStore::open(dir).unwrap();
    CertManager::new(Arc::new(store), Topology::from_toml_str(TOPOLOGY).unwrap())
}

fn install(m: &CertManager, target: &Target, chain: &Chain) -> bmcert::InstallOutcome {
    block_on(m.install_files(
        target,
        chain.leaf.cert_pem.as_bytes(),
        chain.leaf.key_pem.as_bytes(),
        Some(chain.ca_pem().as_bytes()),
        UnixTime::now(),
    ))
    .unwrap()
}

/// Every file under `dir` with its bytes and mode.
fn snapshot(dir: &Path) -> BTreeMap<String, (Vec<u8>, u32)> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        let mode = entry.metadata().unwrap().permissions().mode();
        if path.is_dir() {
            out.insert(path.display().to_string(), (Vec::new(), mode));
            out.extend(snapshot(&path));
        } else {
            out.insert(
                path.display().to_string(),
                (std::fs::read(&path).unwrap(), mode),
            );
        }
    }
    out
}

#[test]
fn an_accepted_bundle_is_installed_listed_and_exported() {
    let tmp = tempfile::tempdir().unwrap();
    let m = manager(tmp.path());
    let now = time::OffsetDateTime::now_utc();
    let chain = ChainSpec::new(&["mail.example.test", "autodiscover.example.test"])
        .validity(
            now - time::Duration::days(1),
            now + time::Duration::days(90) + time::Duration::hours(1),
        )
        .build();
    let outcome = install(&m, &Target::System, &chain);
    assert!(outcome.report.is_valid(), "{}", outcome.report);
    assert!(
        outcome.report.bundle.is_none(),
        "the key is not left in the returned report"
    );
    let installed = outcome.installed.unwrap();
    assert_eq!(installed.version, 1);
    assert_eq!(installed.meta.source, Source::Files);
    assert!(installed
        .meta
        .names
        .contains(&"mail.example.test".to_owned()));

    let listed: Vec<TargetStatus> = block_on(m.list(UnixTime::now()))
        .unwrap()
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].target, Target::System);
    assert_eq!(listed[0].days_left, 90);
    let json = serde_json::to_value(&listed).unwrap();
    assert_eq!(json[0]["target"], "system");
    assert_eq!(json[0]["source"], "files");

    let exported = block_on(m.export(&Target::System)).unwrap();
    assert_eq!(exported.cert_pem.trim(), chain.leaf.cert_pem.trim());
    assert_eq!(exported.secret_key_pem.trim(), chain.leaf.key_pem.trim());
    assert!(exported.ca_pem.contains("BEGIN CERTIFICATE"));
    assert!(!format!("{exported:?}").contains(chain.leaf.key_pem.lines().nth(1).unwrap()));
}

#[test]
fn a_refused_bundle_leaves_the_installed_one_untouched_byte_for_byte() {
    let tmp = tempfile::tempdir().unwrap();
    let m = manager(tmp.path());
    let good = ChainSpec::new(&["mail.example.test"]).build();
    assert!(install(&m, &Target::System, &good).is_installed());
    let before = snapshot(tmp.path());

    let other = ChainSpec::new(&["mail.example.test"]).build();
    // The certificate of one chain with the key of another: key_mismatch.
    let outcome = block_on(m.install_files(
        &Target::System,
        other.leaf.cert_pem.as_bytes(),
        good.leaf.key_pem.as_bytes(),
        Some(other.ca_pem().as_bytes()),
        UnixTime::now(),
    ))
    .unwrap();
    assert!(!outcome.is_installed());
    assert_eq!(outcome.report.problems[0].code.as_str(), "key_mismatch");
    // Unreadable input too.
    let outcome =
        block_on(m.install_files(&Target::System, b"junk", b"junk", None, UnixTime::now()))
            .unwrap();
    assert!(!outcome.is_installed());
    assert_eq!(
        snapshot(tmp.path()),
        before,
        "a refused bundle changed the store"
    );
    let current = block_on(m.export(&Target::System)).unwrap();
    assert_eq!(current.cert_pem.trim(), good.leaf.cert_pem.trim());
}

#[test]
fn disabling_the_system_certificate_is_refused_and_a_domain_falls_back() {
    let tmp = tempfile::tempdir().unwrap();
    let m = manager(tmp.path());
    let domain: Target = "domain:acme.test".parse().unwrap();
    install(
        &m,
        &Target::System,
        &ChainSpec::new(&["mail.example.test"]).build(),
    );
    let outcome = install(&m, &domain, &ChainSpec::new(&["webmail.acme.test"]).build());
    assert!(outcome.is_installed(), "{}", outcome.report);
    assert_eq!(
        outcome.report.host.as_ref().unwrap().to_string(),
        "webmail.acme.test"
    );

    let err = block_on(m.disable(&Target::System)).unwrap_err();
    assert_eq!(err, ManagerError::SystemCannotBeDisabled);
    assert!(err.to_string().contains("install a replacement"), "{err}");
    assert!(
        block_on(bmcert::store::Store::current(&**m.store(), &Target::System))
            .unwrap()
            .is_some()
    );

    assert!(block_on(m.disable(&domain)).unwrap().is_some());
    let targets: Vec<Target> = block_on(m.list(UnixTime::now()))
        .unwrap()
        .into_iter()
        .map(|s| s.unwrap().target)
        .collect();
    assert_eq!(targets, vec![Target::System]);
    assert_eq!(block_on(m.disable(&domain)).unwrap(), None);
    assert!(matches!(
        block_on(m.export(&domain)),
        Err(ManagerError::NothingInstalled(_))
    ));

    let unknown: Target = "domain:unknown.test".parse().unwrap();
    let err = block_on(m.install_files(&unknown, b"", b"", None, UnixTime::now())).unwrap_err();
    assert!(matches!(err, ManagerError::Topology(_)));
    assert!(err.to_string().contains("[[domain]]"), "{err}");
}

#[test]
fn a_domain_without_url_is_refused_before_anything_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let m = manager(tmp.path());
    let before = snapshot(tmp.path());
    let plain: Target = "domain:plain.test".parse().unwrap();
    let chain = ChainSpec::new(&["mail.example.test"]).build();
    let err = block_on(m.install_files(
        &plain,
        chain.leaf.cert_pem.as_bytes(),
        chain.leaf.key_pem.as_bytes(),
        Some(chain.ca_pem().as_bytes()),
        UnixTime::now(),
    ))
    .unwrap_err();
    assert_eq!(err.code(), Some("domain_without_url"));
    assert!(
        err.to_string().contains("set the domain's external URL"),
        "{err}"
    );
    // Refused before the PKCS#12 is even read.
    let err = block_on(m.install_p12(&plain, b"any bytes", "pw", UnixTime::now())).unwrap_err();
    assert_eq!(err.code(), Some("domain_without_url"));
    assert_eq!(snapshot(tmp.path()), before, "nothing was written");
}

#[test]
fn disable_deletes_the_certificate_its_versions_and_records() {
    let tmp = tempfile::tempdir().unwrap();
    let m = manager(tmp.path());
    let domain: Target = "domain:acme.test".parse().unwrap();
    let chains: Vec<Chain> = (0..3)
        .map(|_| ChainSpec::new(&["webmail.acme.test"]).build())
        .collect();
    for c in &chains {
        assert!(install(&m, &domain, c).is_installed());
    }
    let store = m.store().clone();
    for prefix in ["renewal", "warning", "contact"] {
        let key = bmcert::store::keys::target_key(prefix, &domain).unwrap();
        block_on(store.put(&key, b"{}", &bmcert::store::Condition::none())).unwrap();
    }
    assert!(block_on(m.disable(&domain)).unwrap().is_some());

    // No file of the store holds any of the domain's keys any more.
    let files = snapshot(tmp.path());
    for c in &chains {
        let body = c.leaf.key_pem.lines().nth(1).unwrap();
        assert!(
            !files
                .values()
                .any(|(bytes, _)| String::from_utf8_lossy(bytes).contains(body)),
            "a private key of the disabled domain is still stored"
        );
    }
    for prefix in ["renewal", "warning", "contact"] {
        let key = bmcert::store::keys::target_key(prefix, &domain).unwrap();
        assert!(block_on(store.get(&key)).unwrap().is_none(), "{prefix}");
    }
    let err = block_on(m.rollback(&domain)).unwrap_err();
    assert_eq!(err, ManagerError::NothingInstalled(domain.clone()));
    assert_eq!(err.code(), Some("nothing_installed"));
    assert!(matches!(
        block_on(m.export(&domain)),
        Err(ManagerError::NothingInstalled(_))
    ));
}

#[test]
fn rollback_restores_the_previous_certificate() {
    let tmp = tempfile::tempdir().unwrap();
    let m = manager(tmp.path());
    let first = ChainSpec::new(&["mail.example.test"]).build();
    let second = ChainSpec::new(&["mail.example.test"]).build();
    install(&m, &Target::System, &first);
    install(&m, &Target::System, &second);
    let back = block_on(m.rollback(&Target::System)).unwrap();
    assert_eq!(back.version, 1);
    let exported = block_on(m.export(&Target::System)).unwrap();
    assert_eq!(exported.cert_pem.trim(), first.leaf.cert_pem.trim());
}

#[test]
fn a_pkcs12_file_made_by_openssl_is_installed() {
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("work");
    std::fs::create_dir(&work).unwrap();
    let chain = ChainSpec::new(&["mail.example.test"]).build();
    std::fs::write(work.join("cert.pem"), &chain.leaf.cert_pem).unwrap();
    std::fs::write(work.join("key.pem"), &chain.leaf.key_pem).unwrap();
    std::fs::write(work.join("ca.pem"), chain.ca_pem()).unwrap();
    openssl(
        &work,
        &[
            "pkcs12",
            "-export",
            "-in",
            "cert.pem",
            "-inkey",
            "key.pem",
            "-certfile",
            "ca.pem",
            "-out",
            "bundle.p12",
            "-passout",
            "pass:s3cret",
        ],
    );
    let p12 = std::fs::read(work.join("bundle.p12")).unwrap();
    let m = manager(&tmp.path().join("store"));
    let wrong = block_on(m.install_p12(&Target::System, &p12, "wrong", UnixTime::now())).unwrap();
    assert!(!wrong.is_installed());
    assert_eq!(wrong.report.problems[0].code.as_str(), "p12_bad_password");
    let outcome =
        block_on(m.install_p12(&Target::System, &p12, "s3cret", UnixTime::now())).unwrap();
    assert!(outcome.is_installed(), "{}", outcome.report);
    let exported = block_on(m.export(&Target::System)).unwrap();
    assert_eq!(exported.cert_pem.trim(), chain.leaf.cert_pem.trim());
    let key_body: String = chain
        .leaf
        .key_pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let exported_body: String = exported
        .secret_key_pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    assert_eq!(exported_body, key_body);
    assert!(!format!("{outcome:?}").contains(&key_body[..40]));
}

#[test]
fn a_certificate_for_another_host_is_refused_by_the_name_check() {
    let tmp = tempfile::tempdir().unwrap();
    let m = manager(tmp.path());
    let domain: Target = "domain:acme.test".parse().unwrap();
    // Valid for the system URL, not for the domain's own URL.
    let outcome = install(&m, &domain, &ChainSpec::new(&["mail.example.test"]).build());
    assert!(!outcome.is_installed());
    let codes: Vec<&str> = outcome
        .report
        .problems
        .iter()
        .map(|p| p.code.as_str())
        .collect();
    assert!(codes.contains(&"name_mismatch"), "{codes:?}");
    assert!(block_on(m.list(UnixTime::now())).unwrap().is_empty());
}

#[test]
fn a_chain_without_its_root_needs_the_platform_roots() {
    let tmp = tempfile::tempdir().unwrap();
    let chain = ChainSpec::new(&["mail.example.test"]).build();
    let intermediate = chain.intermediate.as_ref().unwrap();
    let install_without_root = |m: &CertManager| {
        block_on(m.install_files(
            &Target::System,
            chain.leaf.cert_pem.as_bytes(),
            chain.leaf.key_pem.as_bytes(),
            Some(intermediate.cert_pem.as_bytes()),
            UnixTime::now(),
        ))
        .unwrap()
    };
    let m = manager(&tmp.path().join("a"));
    assert!(!install_without_root(&m).is_installed());
    let root = rustls_pki_types::CertificateDer::from(chain.root.cert_der.clone());
    let m = manager(&tmp.path().join("b")).with_platform_roots(vec![root]);
    let outcome = install_without_root(&m);
    assert!(outcome.is_installed(), "{}", outcome.report);
}

#[test]
fn bootstrap_makes_a_self_signed_system_certificate_through_the_gate_once() {
    let tmp = tempfile::tempdir().unwrap();
    let m = manager(tmp.path());
    let now = UnixTime::now();
    let made = block_on(m.bootstrap(now)).unwrap().expect("made");
    let installed = made.installed.unwrap();
    assert_eq!(installed.meta.source, Source::Bootstrap);
    assert_eq!(
        installed.meta.names,
        ["mail.example.test", "autodiscover.example.test"]
    );
    assert_eq!(
        made.report.host.as_ref().unwrap().to_string(),
        "mail.example.test"
    );
    let rows: Vec<TargetStatus> = block_on(m.list(now))
        .unwrap()
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(rows[0].source, Source::Bootstrap);
    assert!(rows[0].warning.unwrap().contains("browsers"));
    assert!(rows[0].days_left >= 364);
    // Served: the resolver loads it and it names the system host.
    let current = block_on(m.store().current(&Target::System))
        .unwrap()
        .unwrap();
    let key = current.bundle.secret_key().secret_private_key_der();
    bmcert_resolve_key(current.bundle.chain().to_vec(), &key);
    // Once only.
    assert!(block_on(m.bootstrap(now)).unwrap().is_none());
    // An upload replaces it.
    install(
        &m,
        &Target::System,
        &ChainSpec::new(&["mail.example.test"]).build(),
    );
    assert_eq!(
        block_on(m.list(now)).unwrap()[0].as_ref().unwrap().source,
        Source::Files
    );
}

fn bmcert_resolve_key(
    chain: Vec<rustls_pki_types::CertificateDer<'static>>,
    key: &rustls_pki_types::PrivateKeyDer<'_>,
) {
    bmcert::resolve::certified_key(chain, key).unwrap();
}

#[test]
fn the_gate_refuses_a_bundle_checked_for_another_host() {
    let tmp = tempfile::tempdir().unwrap();
    let m = manager(tmp.path());
    let before = snapshot(tmp.path());
    let chain = ChainSpec::new(&["mail.example.test"]).build();
    let system_host = bmcert::topology::Host::parse("https://mail.example.test").unwrap();
    let checked = bmcert::bundle::BundleCheck::files(
        chain.leaf.cert_pem.as_bytes(),
        chain.leaf.key_pem.as_bytes(),
        Some(chain.ca_pem().as_bytes()),
    )
    .check_for(system_host, UnixTime::now())
    .unwrap();
    let domain: Target = "domain:acme.test".parse().unwrap();
    let err = block_on(m.install_checked(&domain, checked, Source::Files, None)).unwrap_err();
    assert!(
        matches!(err, ManagerError::CheckedForAnotherHost { ref current, .. } if current.to_string() == "webmail.acme.test"),
        "{err}"
    );
    assert_eq!(err.code(), Some("checked_for_another_host"));
    assert_eq!(snapshot(tmp.path()), before, "nothing was written");
}
