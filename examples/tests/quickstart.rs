//! Runs the quickstart example as a process, as `cargo run --example quickstart` does, and
//! checks its table: the README's first command cannot silently break.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// `target/<profile>/examples/quickstart`, built by `cargo test` (which builds the examples);
/// built here with the same cargo when it is missing (`cargo test --test quickstart`).
fn quickstart_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().unwrap().parent().unwrap();
    let bin = profile_dir
        .join("examples")
        .join(format!("quickstart{}", std::env::consts::EXE_SUFFIX));
    if !bin.exists() {
        let status = Command::new(env!("CARGO"))
            .args(["build", "-p", "bmcert-examples", "--example", "quickstart"])
            .status()
            .unwrap();
        assert!(status.success(), "cannot build the quickstart example");
    }
    assert!(bin.exists(), "{} missing", bin.display());
    bin
}

/// Runs the binary to completion, killing it after 60 s (it normally ends in well under one).
fn run_bounded(bin: &PathBuf) -> (bool, String, String) {
    let mut child = Command::new(bin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("the quickstart did not end by itself within 60 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

/// The table row for `name` and `service`, split into its columns.
fn row<'a>(stdout: &'a str, name: &str, service: &str) -> Vec<&'a str> {
    let rows: Vec<Vec<&str>> = stdout
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|cols| cols.len() >= 6 && cols[0] == name && cols[1] == service)
        .collect();
    assert_eq!(rows.len(), 1, "one row for {name} {service} in:\n{stdout}");
    rows.into_iter().next().unwrap()
}

#[test]
fn quickstart_prints_the_expected_table() {
    let (ok, stdout, stderr) = run_bounded(&quickstart_binary());
    assert!(ok, "quickstart failed:\n{stdout}\n{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");

    // Installs through the checks, and the refused bundle with its report.
    assert!(stdout.contains("Installed system: version 1"), "{stdout}");
    assert!(
        stdout.contains("Installed domain:acme.test: version 1"),
        "{stdout}"
    );
    assert!(
        stdout.contains("Refused domain:beta.test (certificate for www.other.test), problem codes: name_mismatch"),
        "{stdout}"
    );
    assert!(
        stdout.contains("| Reference host: mail.beta.test"),
        "{stdout}"
    );

    // Columns: name, service, target, (names), sha256 prefix, why, client check...
    let system = row(&stdout, "mail.example.test", "https");
    assert_eq!(system[2..4], ["system", "(mail.example.test)"]);
    assert_eq!(system[5..], ["system-name", "ok"]);
    let system_fp = system[4];
    assert_eq!(system_fp.len(), 8, "{system:?}");
    assert!(
        system_fp.bytes().all(|b| b.is_ascii_hexdigit()),
        "{system:?}"
    );

    let acme = row(&stdout, "webmail.acme.test", "https");
    assert_eq!(acme[2..4], ["domain:acme.test", "(webmail.acme.test)"]);
    assert_eq!(acme[5..], ["dedicated", "ok"]);
    assert_ne!(acme[4], system_fp, "the domain gets its own certificate");

    let beta = row(&stdout, "mail.beta.test", "https");
    assert_eq!(beta[2..5], ["system", "(mail.example.test)", system_fp]);
    assert_eq!(beta[5], "fallback-to-system");
    assert_eq!(beta[6..].join(" "), "fails: does not name this host");

    let mail = row(&stdout, "mail.example.test", "imap");
    assert_eq!(
        mail[2..],
        [
            "system",
            "(mail.example.test)",
            system_fp,
            "mail-always-system",
            "ok"
        ]
    );
    let mail_acme = row(&stdout, "webmail.acme.test", "imap");
    assert_eq!(
        mail_acme[2..6],
        [
            "system",
            "(mail.example.test)",
            system_fp,
            "mail-always-system"
        ]
    );
    assert_eq!(mail_acme[6..].join(" "), "fails: does not name this host");
    let smtp = row(&stdout, "mail.example.test", "smtp");
    assert_eq!(
        smtp[2..],
        [
            "system",
            "(mail.example.test)",
            system_fp,
            "mail-always-system",
            "ok"
        ]
    );

    // The temporary store is gone once the process ended.
    let store = stdout
        .lines()
        .find_map(|l| l.strip_prefix("Store: "))
        .and_then(|l| l.strip_suffix(" (directory store)"))
        .unwrap();
    assert!(!std::path::Path::new(store).exists(), "{store} left behind");
}
