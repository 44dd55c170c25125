//! `bmcert acme` against the real pebble started by `scripts/test-all`; skipped (with a
//! message) without its `BMCERT_PEBBLE_*` variables. One test function: pebble's validator
//! connects to fixed ports, so the scenarios run in sequence.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers outside #[test] fns

use std::path::Path;
use std::process::{Command, Output};

use bmcert_test::peers::Pebble;

fn bmcert(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bmcert"))
        .args(args)
        .output()
        .expect("run bmcert")
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn acme_terms_accept_and_issue_through_the_cli() {
    let Some(pebble) = Pebble::from_env() else {
        return;
    };
    let (directory, ca) = (&pebble.directory, pebble.ca_path.to_str().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let store = store.to_str().unwrap();
    // Pebble's issuing root, from its management interface, with curl.
    let root = pebble.root_with_curl(&dir.path().join("root.pem"));
    let tag = format!("{}-{}", std::process::id(), nanos());
    let host = format!("cli-{tag}.example.test");
    let topo = dir.path().join("topology.toml");
    std::fs::write(
        &topo,
        format!("default_domain = \"example.test\"\n[system]\nurl = \"https://{host}\"\nnames = [\"auto-{tag}.example.test\"]\n"),
    )
    .unwrap();
    let ca_args = [
        "--store",
        store,
        "--directory",
        directory,
        "--directory-ca",
        ca,
    ];
    let listen = pebble.http01_listen();
    let issue = |extra: &[&str]| {
        let mut args = vec!["acme", "issue"];
        args.extend_from_slice(&ca_args);
        args.extend_from_slice(&[
            "--topology",
            topo.to_str().unwrap(),
            "--target",
            "system",
            "--chain-ca",
            root.to_str().unwrap(),
        ]);
        args.extend_from_slice(extra);
        bmcert(&args)
    };

    let terms = bmcert(&[&["acme", "terms"][..], &ca_args].concat());
    assert_eq!(terms.status.code(), Some(0), "{}", text(&terms));
    assert!(String::from_utf8_lossy(&terms.stdout).starts_with("data:text/plain"));

    // Not accepted yet: refused (exit 1) before any account exists, the URL in the message.
    let early = issue(&["--http01-listen", &listen]);
    assert_eq!(early.status.code(), Some(1), "{}", text(&early));
    assert!(String::from_utf8_lossy(&early.stderr).contains("bmcert acme accept"));

    let accept = bmcert(&[&["acme", "accept"][..], &ca_args].concat());
    assert_eq!(accept.status.code(), Some(0), "{}", text(&accept));

    let ok = issue(&[
        "--http01-listen",
        &listen,
        "--name",
        &format!("www-{tag}.example.test"),
    ]);
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok));
    let out = String::from_utf8_lossy(&ok.stdout);
    assert!(
        out.contains("acme: order placed") && out.contains("acme: certificate installed"),
        "{out}"
    );
    assert!(
        out.contains(&host) && out.contains(&format!("auto-{tag}.example.test")),
        "{out}"
    );
    let installed = current_files(Path::new(store));

    // Nobody answers the challenge: refused by the CA, exit 1, installed bundle unchanged.
    let refused = issue(&["--name", &format!("nobody-{tag}.example.test")]);
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("port 80"),
        "{}",
        text(&refused)
    );
    assert_eq!(current_files(Path::new(store)), installed);

    // Usage errors: exit 2.
    let bad = issue(&["--target", "nonsense"]);
    assert_eq!(bad.status.code(), Some(2), "{}", text(&bad));
}

fn nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
        % 1_000_000_000
}

/// Every file of the store except the journal, records and revision counters: the installed
/// bundles, byte for byte.
fn current_files(root: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![root.join("targets")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push((p.display().to_string(), std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    assert!(
        !out.is_empty(),
        "an installed bundle under {}",
        root.display()
    );
    out
}
