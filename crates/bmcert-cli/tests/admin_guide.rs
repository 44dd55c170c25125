//! Runs the commands of `docs/admin-guide.md`, in the order the guide gives them, through the
//! built `bmcert` binary against a temporary store, and checks each exit status and the key
//! line of its output: the guide cannot drift from the tool.
//!
//! The commands are the lines starting with `bmcert ` in the guide's ```sh blocks; the
//! topology is the guide's ```toml block. The guide's paths (`/var/lib/bmcert/store`,
//! `/etc/bmcert/topology.toml`) become the temporary directory's; the bundle files are
//! generated here (rcgen, and the `openssl` CLI for the PKCS#12 file). The Let's Encrypt
//! commands run against the pebble that `scripts/test-all` starts (`--directory` and
//! `--chain-ca` added, port 80 replaced by pebble's HTTP-01 port); without its
//! `BMCERT_PEBBLE_*` variables they are skipped with a message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::path::{Path, PathBuf};
use std::process::Command;

use bmcert_test::chains::{ca_params, leaf_params, Alg, Node};
use bmcert_test::fixtures::openssl;
use bmcert_test::peers::{Missing, Pebble, PebbleInstance};

const STORE: &str = "/var/lib/bmcert/store";
const TOPOLOGY: &str = "/etc/bmcert/topology.toml";

fn guide() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/admin-guide.md");
    std::fs::read_to_string(path).unwrap()
}

/// The contents of the guide's fenced blocks of language `lang`, in order.
fn blocks(text: &str, lang: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        match &mut current {
            None if line.trim_end() == format!("```{lang}") => current = Some(String::new()),
            Some(body) if line.trim_end() == "```" => {
                out.push(std::mem::take(body));
                current = None;
            }
            Some(body) => {
                body.push_str(line);
                body.push('\n');
            }
            None => {}
        }
    }
    assert!(current.is_none(), "unclosed ```{lang} block");
    out
}

/// The `bmcert` command lines of the ```sh blocks (continuation lines joined), as arguments.
fn commands(text: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for block in blocks(text, "sh") {
        let joined = block.replace("\\\n", " ");
        for line in joined.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let words: Vec<String> = line.split_whitespace().map(str::to_owned).collect();
            assert_eq!(
                words[0], "bmcert",
                "a ```sh line that is not a bmcert command: {line}"
            );
            out.push(words[1..].to_vec());
        }
    }
    out
}

/// What the test expects of the guide's commands, in order: the command's first words, the
/// exit status, and text that must appear in its standard output (or error, for refusals).
const EXPECTED: &[(&str, i32, &[&str])] = &[
    (
        "config --store",
        0,
        &["store ", "(from --store)", "topology ", "(from --topology)"],
    ),
    (
        "check --cert cert.pem",
        0,
        &["Bundle accepted", "Reference host: mail.example.test"],
    ),
    (
        "check --cert cert.pem",
        1,
        &[
            "Bundle refused: 1 problem(s)",
            "name_mismatch (cert file): webmail.acme.test is not covered",
        ],
    ),
    (
        "check --p12 acme.p12",
        0,
        &["Bundle accepted", "Reference host: webmail.acme.test"],
    ),
    ("p12 --p12 acme.p12", 0, &[]),
    (
        "install --store",
        0,
        &["Bundle accepted", "Installed for system as version 1"],
    ),
    (
        "install --store",
        0,
        &["Installed for domain:acme.test as version 1"],
    ),
    (
        "list --store",
        0,
        &[
            "system\tfiles",
            "domain:acme.test\tfiles",
            "webmail.acme.test",
        ],
    ),
    (
        "status --store",
        0,
        &["TARGET", "never (uploaded)", "mail.example.test"],
    ),
    ("install --store", 0, &["Installed for system as version 2"]),
    ("rollback --store", 0, &["Rolled system back to version 1"]),
    ("export --store", 0, &["of system:", "key.pem"]),
    (
        "disable --store",
        0,
        &["Disabled the certificate of domain:acme.test"],
    ),
    (
        "disable --store",
        1,
        &["the system certificate cannot be disabled"],
    ),
    ("acme terms", 0, &[]),
    ("acme accept", 0, &["accepted the terms of service"]),
    (
        "acme issue",
        0,
        &[
            "acme: certificate installed",
            "webmail.acme.test",
            "acme.test",
        ],
    ),
    ("renew --store", 0, &[]),
    ("status --store", 0, &["acme", "domain:acme.test"]),
];

/// The index of the first Let's Encrypt command: it and all after it need pebble.
const FIRST_ACME: usize = 14;

/// What the Let's Encrypt commands get added: pebble, and its root fetched with curl.
struct Acme {
    pebble: Pebble,
    root: PathBuf,
}

fn lets_encrypt(dir: &Path) -> Result<Acme, Missing> {
    let pebble = Pebble::try_from_env(PebbleInstance::Main)?;
    // Pebble's issuing root, from its management interface, with curl.
    let root = pebble.root_with_curl(&dir.join("pebble-root.pem"));
    Ok(Acme { pebble, root })
}

/// The bundle files the guide's commands name, generated in `dir`.
fn fixtures(dir: &Path) {
    let root = Node::self_signed(ca_params("Guide Root CA"), Alg::P256.key());
    let inter = root.issue(ca_params("Guide Intermediate CA"), Alg::P256.key());
    let system = inter.issue(leaf_params(&["mail.example.test"]), Alg::P256.key());
    let renewed = inter.issue(leaf_params(&["mail.example.test"]), Alg::P256.key());
    let acme = inter.issue(leaf_params(&["webmail.acme.test"]), Alg::P256.key());
    let write = |name: &str, text: &str| std::fs::write(dir.join(name), text).unwrap();
    write("ca.pem", &format!("{}{}", inter.pem, root.pem));
    write("cert.pem", &system.pem);
    write("key.pem", &system.key.serialize_pem());
    write("new-cert.pem", &renewed.pem);
    write("new-key.pem", &renewed.key.serialize_pem());
    write("acme-cert.pem", &acme.pem);
    write("acme-key.pem", &acme.key.serialize_pem());
    write("acme.pass", "guide-secret\n");
    // A real-world PKCS#12 file, as OpenSSL 3 writes it (AES-256, PBKDF2).
    openssl(
        dir,
        &[
            "pkcs12",
            "-export",
            "-in",
            "acme-cert.pem",
            "-inkey",
            "acme-key.pem",
            "-certfile",
            "ca.pem",
            "-passout",
            "file:acme.pass",
            "-out",
            "acme.p12",
        ],
    );
}

#[test]
fn the_admin_guide_commands_run_in_order() {
    let text = guide();
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path();
    let store = work.join("store");
    let topology = work.join("topology.toml");

    let toml = blocks(&text, "toml");
    assert_eq!(toml.len(), 1, "the guide has one topology block");
    std::fs::write(&topology, &toml[0]).unwrap();
    fixtures(work);
    let acme = lets_encrypt(work);

    let commands = commands(&text);
    assert_eq!(
        commands.len(),
        EXPECTED.len(),
        "the guide has {} commands, this test expects {}: update EXPECTED with the guide",
        commands.len(),
        EXPECTED.len()
    );
    for (i, (args, (start, status, needles))) in commands.iter().zip(EXPECTED).enumerate() {
        let shown = args.join(" ");
        assert!(
            shown.starts_with(start),
            "command {i} `{shown}` is not `{start} ...`"
        );
        let is_acme = i >= FIRST_ACME;
        assert_eq!(
            is_acme,
            args[0] == "acme" || args[0] == "renew" || i == EXPECTED.len() - 1,
            "command {i}: the Let's Encrypt commands come last"
        );
        let mut args: Vec<String> = args
            .iter()
            .map(|a| match a.as_str() {
                STORE => store.to_str().unwrap().to_owned(),
                TOPOLOGY => topology.to_str().unwrap().to_owned(),
                _ => a.clone(),
            })
            .collect();
        if is_acme {
            let p = match &acme {
                Ok(p) => p,
                Err(missing) => {
                    assert!(
                        std::env::var_os(bmcert_test::peers::REQUIRE_PEERS).is_none(),
                        "the admin guide's ACME commands need pebble: {missing}"
                    );
                    eprintln!("SKIPPED `bmcert {shown}` and the rest: {missing}");
                    return;
                }
            };
            for a in &mut args {
                if a == "0.0.0.0:80" {
                    *a = p.pebble.http01_listen();
                }
            }
            if args[0] != "status" {
                args.extend(["--directory".into(), p.pebble.directory.clone()]);
                args.extend([
                    "--directory-ca".into(),
                    p.pebble.ca_path.to_str().unwrap().to_owned(),
                ]);
            }
            if args.get(1).map(String::as_str) == Some("issue") || args[0] == "renew" {
                args.extend(["--chain-ca".into(), p.root.to_str().unwrap().to_owned()]);
            }
        }
        let out = Command::new(env!("CARGO_BIN_EXE_bmcert"))
            .args(&args)
            .current_dir(work)
            // Not the machine's /etc/bmcert/bmcert.toml: the guide's options alone.
            .env("BMCERT_CONFIG", "/dev/null")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let context = format!("command {i} `bmcert {shown}`\nstdout:\n{stdout}\nstderr:\n{stderr}");
        assert_eq!(out.status.code(), Some(*status), "{context}");
        assert!(!stderr.contains("panicked"), "{context}");
        for needle in *needles {
            assert!(
                stdout.contains(needle) || stderr.contains(needle),
                "`{needle}` missing from {context}"
            );
        }
        // What some commands leave behind.
        match i {
            4 => {
                for f in ["cert.pem", "key.pem", "ca.pem"] {
                    assert!(work.join("acme").join(f).is_file(), "p12 wrote no acme/{f}");
                }
            }
            11 => {
                let cert = std::fs::read_to_string(work.join("backup/cert.pem")).unwrap();
                let original = std::fs::read_to_string(work.join("cert.pem")).unwrap();
                assert_eq!(
                    cert.trim(),
                    original.trim(),
                    "the rollback made version 1 current"
                );
            }
            14 => assert!(
                stdout.trim().starts_with("data:") || stdout.contains("http"),
                "{context}"
            ),
            _ => {}
        }
    }
}

#[test]
fn the_admin_guide_lists_every_problem_code() {
    let text = guide();
    let codes_page = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/problem-codes.md"),
    )
    .unwrap();
    let codes: Vec<&str> = codes_page
        .lines()
        .filter_map(|l| l.strip_prefix("## `")?.strip_suffix('`'))
        .collect();
    assert!(codes.len() >= 29, "{codes:?}");
    for code in codes {
        assert!(
            text.contains(&format!("| `{code}` |")),
            "docs/admin-guide.md has no table row for `{code}`"
        );
    }
}
