//! Issue 13 through the real binary: the hostile look-alike CA file, URLs read as browsers
//! read them, and control characters of the input never written raw to the terminal.

// Test code: a failed fixture step should stop the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::{Command, Output};

use bmcert_test::chains::{leaf_params, look_alikes, Alg, Chain3, Node, TEST_TIME};

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn bmcert(dir: &Path, args: &[&str]) -> Run {
    let out: Output = Command::new(env!("CARGO_BIN_EXE_bmcert"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn pem(der: &[u8]) -> String {
    bmcert_bundle::pem_encode("CERTIFICATE", der)
}

/// cert.pem, key.pem and a ca.pem of `n` look-alikes, then the intermediate and the root.
fn write_hostile(dir: &Path, chain: &Chain3, leaf: &Node, n: usize) {
    let mut ca = String::new();
    for der in look_alikes(&chain.intermediate, &chain.root, n) {
        ca.push_str(&pem(&der));
    }
    ca.push_str(&chain.intermediate.pem);
    ca.push_str(&chain.root.pem);
    std::fs::write(dir.join("ca.pem"), ca).unwrap();
    std::fs::write(dir.join("cert.pem"), &leaf.pem).unwrap();
    std::fs::write(dir.join("key.pem"), leaf.key.serialize_pem()).unwrap();
}

fn at() -> String {
    // The CLI's --at takes RFC 3339; TEST_TIME is 2026-06-01.
    assert_eq!(TEST_TIME, 1_780_272_000);
    "2026-06-01T00:00:00Z".to_owned()
}

fn check(dir: &Path, url: &str, json: bool) -> Run {
    let at = at();
    let mut args = vec![
        "check", "--cert", "cert.pem", "--key", "key.pem", "--ca", "ca.pem", "--url", url, "--at",
        &at,
    ];
    if json {
        args.push("--json");
    }
    bmcert(dir, &args)
}

fn codes(run: &Run, kind: &str) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}{}", run.stdout, run.stderr));
    v[kind]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            format!(
                "{}/{}",
                f["code"].as_str().unwrap(),
                f["file"].as_str().unwrap()
            )
        })
        .collect()
}

#[test]
fn the_ten_thousand_look_alike_ca_file_is_accepted_with_a_short_report() {
    let dir = tempfile::tempdir().unwrap();
    let chain = Chain3::new(Alg::P256, &["mail.example.test"]);
    write_hostile(dir.path(), &chain, &chain.leaf, 10_000);
    let run = check(dir.path(), "https://mail.example.test/", false);
    assert_eq!(
        run.code,
        Some(0),
        "{}{}",
        &run.stdout[..run.stdout.len().min(2000)],
        run.stderr
    );
    assert!(
        run.stdout.len() < 20_000,
        "{} bytes of output",
        run.stdout.len()
    );
    assert!(
        run.stdout
            .contains("10000 certificates of the ca file are unrelated"),
        "{}",
        &run.stdout[..run.stdout.len().min(2000)]
    );
}

#[test]
fn too_many_look_alikes_without_key_identifiers_are_refused_as_look_alikes() {
    let dir = tempfile::tempdir().unwrap();
    let chain = Chain3::new(Alg::P256, &["mail.example.test"]);
    let mut params = leaf_params(&["mail.example.test"]);
    params.use_authority_key_identifier_extension = false;
    let leaf = chain.intermediate.issue(params, Alg::P256.key());
    write_hostile(dir.path(), &chain, &leaf, 1_500);
    let run = check(dir.path(), "https://mail.example.test/", true);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert_eq!(codes(&run, "problems"), vec!["look_alikes/ca"]);
}

#[test]
fn the_url_host_is_the_one_a_browser_connects_to() {
    let dir = tempfile::tempdir().unwrap();
    let chain = Chain3::new(Alg::P256, &["mail.example.test"]);
    write_hostile(dir.path(), &chain, &chain.leaf, 0);
    let run = check(dir.path(), "https://evil.test\\@mail.example.test/", true);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert_eq!(codes(&run, "problems"), vec!["name_mismatch/cert"]);
    assert!(
        run.stdout.contains("evil.test is not covered"),
        "{}",
        run.stdout
    );
    for bad in [
        "https://mail.example.test:99999/",
        "https://mail.example.test:abc/",
    ] {
        let run = check(dir.path(), bad, false);
        assert_eq!(run.code, Some(2), "{bad}: {}{}", run.stdout, run.stderr);
        assert!(run.stderr.contains("invalid port"), "{}", run.stderr);
    }
}

#[test]
fn control_characters_from_the_topology_file_and_the_target_are_escaped() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("topology.toml"),
        "[system]\nurl = \"https://mail.example.test\"\n[[domain]]\nname = \"x\\u001b]0;pwned\\u0007\\u0000.test\"\n",
    )
    .unwrap();
    let run = bmcert(
        d,
        &["list", "--store", "store", "--topology", "topology.toml"],
    );
    assert_eq!(run.code, Some(2), "{}{}", run.stdout, run.stderr);
    for c in ['\u{1b}', '\u{7}', '\u{0}'] {
        assert!(
            !run.stderr.contains(c) && !run.stdout.contains(c),
            "{:?}",
            run.stderr
        );
    }
    assert!(run.stderr.contains("\\u{1b}"), "{:?}", run.stderr);

    std::fs::write(
        d.join("topology.toml"),
        "[system]\nurl = \"https://mail.example.test\"\n",
    )
    .unwrap();
    let run = bmcert(
        d,
        &[
            "rollback",
            "--store",
            "store",
            "--topology",
            "topology.toml",
            "--target",
            "domain:x\u{1b}[2J.test",
        ],
    );
    assert_eq!(run.code, Some(2), "{}{}", run.stdout, run.stderr);
    // The library's explanation and the command's own `--target` prefix escape the name:
    // no raw ESC reaches the terminal.
    assert!(
        run.stderr
            .contains("`x\\u{1b}[2J.test` is not a valid domain name"),
        "{:?}",
        run.stderr
    );
    assert!(
        run.stderr.contains("--target `domain:x\\u{1b}[2J.test`"),
        "{:?}",
        run.stderr
    );
    assert!(!run.stderr.contains('\u{1b}'), "{:?}", run.stderr);

    // The same for `check --url`.
    let run = bmcert(
        d,
        &[
            "check",
            "--cert",
            "c",
            "--key",
            "k",
            "--url",
            "https://x\u{1b}[2J.test/",
        ],
    );
    assert_eq!(run.code, Some(2), "{}{}", run.stdout, run.stderr);
    assert!(!run.stderr.contains('\u{1b}'), "{:?}", run.stderr);
    assert!(run.stderr.contains("\\u{1b}"), "{:?}", run.stderr);
}
