//! `bmcert status` and `bmcert renew` through the binary.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::path::Path;
use std::process::Command;

use bmcert::store::{
    block_on, Bundle, BundleMeta, Condition, DirStore, Fingerprint, KeyFormat, SecretKey, Source,
    Store,
};
use bmcert::topology::Target;
use bmcert_test::fixtures::ChainSpec;
use bmcert_test::peers::Pebble;
use time::{Duration, OffsetDateTime};

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn bmcert(args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_bmcert"))
        .args(args)
        .output()
        .unwrap();
    let run = Run {
        code: out.status.code().expect("exited, not killed"),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    };
    assert!(!run.stderr.contains("panicked"), "panic: {}", run.stderr);
    run
}

fn install(store: &Path, target: &Target, name: &str, source: Source, days_left: i64) -> Vec<u8> {
    let now = OffsetDateTime::now_utc();
    let (nb, na) = (
        now - Duration::days(90 - days_left),
        now + Duration::days(days_left),
    );
    let chain = ChainSpec::new(&[name]).validity(nb, na).build();
    let leaf = chain.leaf.cert_der.clone();
    let meta = BundleMeta {
        source,
        names: vec![name.to_owned()],
        not_after: na.replace_nanosecond(0).unwrap(),
        not_before: Some(nb.replace_nanosecond(0).unwrap()),
        installed_at: nb,
        fingerprint: Fingerprint::of(&leaf),
    };
    let bundle = Bundle::new(
        vec![leaf.clone().into()],
        SecretKey::new(KeyFormat::Pkcs8, chain.leaf.key_der.clone()),
        meta,
    )
    .unwrap();
    let store = DirStore::open(store).unwrap();
    block_on(store.install(target, &bundle, &Condition::none())).unwrap();
    leaf
}

#[test]
fn status_table_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let s = store.to_str().unwrap();
    let empty = bmcert(&["status", "--store", s]);
    assert_eq!(empty.code, 0, "{}", empty.stderr);
    assert!(empty.stdout.contains("No certificate installed"));

    install(
        &store,
        &Target::System,
        "mail.example.test",
        Source::Acme,
        50,
    );
    let domain = Target::Domain("acme.test".parse().unwrap());
    install(&store, &domain, "webmail.acme.test", Source::Files, 20);

    let table = bmcert(&["status", "--store", s]);
    assert_eq!(table.code, 0, "{}", table.stderr);
    let lines: Vec<&str> = table.stdout.lines().collect();
    assert!(
        lines[0].starts_with("TARGET") && lines[0].contains("NEXT RENEWAL"),
        "{}",
        table.stdout
    );
    let system = lines.iter().find(|l| l.starts_with("system")).unwrap();
    assert!(
        system.contains("acme") && system.contains("mail.example.test"),
        "{system}"
    );
    let dom = lines
        .iter()
        .find(|l| l.starts_with("domain:acme.test"))
        .unwrap();
    assert!(
        dom.contains("uploaded") && dom.contains("never (uploaded)"),
        "{dom}"
    );

    let json = bmcert(&["status", "--store", s, "--json"]);
    assert_eq!(json.code, 0, "{}", json.stderr);
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    let rows = v.as_array().unwrap();
    assert_eq!(rows.len(), 2);
    let sys = rows.iter().find(|r| r["target"] == "system").unwrap();
    assert_eq!(sys["source"], "acme");
    assert_eq!(sys["names"][0], "mail.example.test");
    assert!(sys["next_renewal"].is_string(), "{sys}");
    assert!(sys["last_error"].is_null());
    let up = rows
        .iter()
        .find(|r| r["target"] == "domain:acme.test")
        .unwrap();
    assert!(up["next_renewal"].is_null(), "{up}");

    let bad = bmcert(&["status"]);
    assert_eq!(bad.code, 2);
}

#[test]
fn renew_by_hand_against_pebble() {
    let Some(pebble) = Pebble::from_env() else {
        return;
    };
    let (directory, ca) = (&pebble.directory, pebble.ca_path.to_str().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let s = store.to_str().unwrap();
    let root = pebble.root_with_curl(&dir.path().join("root.pem"));
    let host = format!(
        "renew-cli-{}-{}.example.test",
        std::process::id(),
        OffsetDateTime::now_utc().unix_timestamp_nanos() % 1_000_000_000
    );
    let topology = dir.path().join("topology.toml");
    std::fs::write(
        &topology,
        format!("default_domain = \"example.test\"\n[system]\nurl = \"https://{host}\"\n"),
    )
    .unwrap();
    let old = install(&store, &Target::System, &host, Source::Acme, 50);
    let accept = bmcert(&[
        "acme",
        "accept",
        "--store",
        s,
        "--directory",
        directory,
        "--directory-ca",
        ca,
    ]);
    assert_eq!(accept.code, 0, "{}", accept.stderr);
    let run = bmcert(&[
        "renew",
        "--store",
        s,
        "--topology",
        topology.to_str().unwrap(),
        "--target",
        "system",
        "--directory",
        directory,
        "--directory-ca",
        ca,
        "--chain-ca",
        root.to_str().unwrap(),
        "--http01-listen",
        &pebble.http01_listen(),
    ]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("renewed system"), "{}", run.stdout);
    let now = block_on(DirStore::open(&store).unwrap().current(&Target::System))
        .unwrap()
        .unwrap();
    assert_ne!(
        now.bundle.leaf().as_ref(),
        old.as_slice(),
        "a new certificate is installed"
    );
    let status = bmcert(&["status", "--store", s, "--json"]);
    let v: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    assert!(
        v[0]["last_attempt"].is_string() && v[0]["last_error"].is_null(),
        "{v}"
    );
}
