//! Keeps `docs/embedding.md` true: every code line of its ```rust snippets must appear, in
//! the same order, in `examples/embedding.rs` (which `cargo build --examples` compiles), and
//! that example is run as a process and its output checked.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// One code line of a snippet of the guide.
#[derive(Clone, Debug)]
struct SnippetLine {
    /// 1-based number of the snippet in the guide.
    snippet: usize,
    /// 1-based line number in the guide.
    line_no: usize,
    /// The line, trimmed.
    text: String,
}

/// The non-empty, non-comment lines of each ```rust block of `guide`, trimmed, in order.
fn snippet_lines(guide: &str) -> Vec<SnippetLine> {
    let mut out = Vec::new();
    let mut snippet = 0;
    let mut inside = false;
    for (i, line) in guide.lines().enumerate() {
        let trimmed = line.trim();
        if !inside {
            if trimmed.starts_with("```rust") {
                inside = true;
                snippet += 1;
            }
            continue;
        }
        if trimmed.starts_with("```") {
            inside = false;
            continue;
        }
        if trimmed.is_empty() || trimmed.starts_with("//") {
            continue;
        }
        out.push(SnippetLine {
            snippet,
            line_no: i + 1,
            text: trimmed.to_owned(),
        });
    }
    assert!(!inside, "docs/embedding.md: a ```rust block is not closed");
    out
}

/// Finds each snippet line, in order, among the trimmed lines of `example`; returns one
/// message per line that is missing (after the line where the previous one was found).
fn missing_lines(snippets: &[SnippetLine], example: &str) -> Vec<String> {
    let lines: Vec<&str> = example.lines().map(str::trim).collect();
    let mut next = 0; // index in `lines` where the search for the next snippet line starts
    let mut missing = Vec::new();
    for s in snippets {
        match lines[next..].iter().position(|l| *l == s.text) {
            Some(offset) => next += offset + 1,
            None => {
                let anywhere = lines.iter().position(|l| *l == s.text);
                let whereabouts = match anywhere {
                    Some(i) => format!(
                        "it is at line {} of the example, before the previous snippet line \
                         (line {}): the order differs",
                        i + 1,
                        next
                    ),
                    None => format!("it is nowhere in the example (searched after line {next})"),
                };
                missing.push(format!(
                    "docs/embedding.md:{} (snippet {}): `{}` is missing from \
                     examples/embedding.rs; {whereabouts}",
                    s.line_no, s.snippet, s.text
                ));
            }
        }
    }
    missing
}

#[test]
fn every_snippet_line_of_the_guide_is_in_the_example_in_order() {
    let guide = std::fs::read_to_string(root().join("docs/embedding.md")).unwrap();
    let example = std::fs::read_to_string(root().join("examples/embedding.rs")).unwrap();
    let snippets = snippet_lines(&guide);
    let count = snippets.last().map_or(0, |s| s.snippet);
    // The guide had five Rust snippets when this test was written (store and topology,
    // HTTPS, IMAP, CertManager, ACME and the renewer); none may be empty.
    assert!(
        count >= 5,
        "only {count} ```rust snippets found in docs/embedding.md"
    );
    for n in 1..=count {
        assert!(
            snippets.iter().any(|s| s.snippet == n),
            "docs/embedding.md: snippet {n} has no code line"
        );
    }
    let missing = missing_lines(&snippets, &example);
    assert!(
        missing.is_empty(),
        "the embedding guide and its compiled example differ; update docs/embedding.md and \
         examples/embedding.rs together (lines are compared trimmed):\n{}",
        missing.join("\n")
    );
}

/// The check above must be able to fail: a changed line and a swapped pair are reported.
#[test]
fn the_order_check_reports_a_changed_or_moved_line() {
    let guide = "intro\n```rust\nlet a = 1;\n// comment\n\nlet b = a;\n```\ntext\n```rust\nuse x::Y;\n```\n";
    let snippets = snippet_lines(guide);
    let texts: Vec<&str> = snippets.iter().map(|s| s.text.as_str()).collect();
    assert_eq!(texts, ["let a = 1;", "let b = a;", "use x::Y;"]);
    assert_eq!(snippets[2].snippet, 2);
    assert_eq!(snippets[2].line_no, 10);

    let good = "use x::Y; // unrelated\nfn f() {\n    let a = 1;\n    other();\n    let b = a;\n}\nuse x::Y;\n";
    assert_eq!(missing_lines(&snippets, good), Vec::<String>::new());

    let changed = good.replace("let b = a;", "let b = a + 1;");
    let report = missing_lines(&snippets, &changed);
    assert_eq!(report.len(), 1, "{report:?}");
    assert!(
        report[0].contains("docs/embedding.md:6 (snippet 1): `let b = a;`"),
        "{report:?}"
    );
    assert!(report[0].contains("nowhere"), "{report:?}");

    let swapped = "fn f() {\n    let b = a;\n    let a = 1;\n}\nuse x::Y;\n";
    let report = missing_lines(&snippets, swapped);
    assert_eq!(report.len(), 1, "{report:?}");
    assert!(report[0].contains("`let b = a;`"), "{report:?}");
    assert!(report[0].contains("the order differs"), "{report:?}");
}

/// `target/<profile>/examples/embedding`, (re)built with the same cargo so that a binary
/// left from an older build is never run; a no-op when `cargo test` just built it.
fn embedding_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().unwrap().parent().unwrap();
    let profile = profile_dir.file_name().unwrap().to_str().unwrap();
    let profile = if profile == "debug" { "dev" } else { profile };
    let mut child = Command::new(env!("CARGO"))
        .args(["build", "--profile", profile, "-p", "bmcert-examples"])
        // The example needs the etcd store (its `required-features`), as this test does.
        .args(["--example", "embedding", "--features", "etcd"])
        .spawn()
        .unwrap();
    let status = wait_bounded(&mut child, Duration::from_secs(600), "building the example");
    assert!(status.success(), "cannot build the embedding example");
    let bin = profile_dir
        .join("examples")
        .join(format!("embedding{}", std::env::consts::EXE_SUFFIX));
    assert!(bin.exists(), "{} missing", bin.display());
    bin
}

fn wait_bounded(
    child: &mut std::process::Child,
    limit: Duration,
    what: &str,
) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            let _ = child.wait();
            panic!("{what} did not end within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs the example to completion (killed after 120 s; it takes a few seconds, pebble
/// included) and returns its stdout; fails with both streams when it fails.
fn run_example() -> String {
    let mut child = Command::new(embedding_binary())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The pipes are read after the end: the output is a few kilobytes, far below a pipe's
    // capacity, so the child never blocks on a full pipe.
    let status = wait_bounded(
        &mut child,
        Duration::from_secs(120),
        "the embedding example",
    );
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        status.success(),
        "the embedding example failed:\n{stdout}\n{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    stdout
}

/// The lines of `stdout` starting with `prefix`.
fn lines_with<'a>(stdout: &'a str, prefix: &str) -> Vec<&'a str> {
    stdout.lines().filter(|l| l.starts_with(prefix)).collect()
}

/// The value of `key=` in `line`.
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
}

#[test]
fn the_example_runs_the_snippets_and_serves_what_it_installed() {
    let stdout = run_example();
    let etcd = std::env::var("BMCERT_ETCD_ENDPOINTS").is_ok_and(|v| !v.trim().is_empty());
    let pebble = std::env::var("BMCERT_PEBBLE_DIRECTORY").is_ok();
    let stores = if etcd { 2 } else { 1 };

    // Snippet 1: the directory store, removed with the temporary folder at the end.
    let store = stdout
        .lines()
        .find_map(|l| l.strip_prefix("Store: "))
        .and_then(|l| l.strip_suffix(" (directory store)"))
        .unwrap_or_else(|| panic!("no directory store line in:\n{stdout}"));
    assert!(!Path::new(store).exists(), "{store} left behind");
    assert!(
        stdout.contains("Done: the temporary store is removed."),
        "{stdout}"
    );

    // Snippet 4 on each store: the wrong name refused with its report, then the right
    // upload installed as version 1 with its root taken from the platform roots.
    assert_eq!(
        lines_with(&stdout, "problem codes: name_mismatch").len(),
        stores,
        "{stdout}"
    );
    assert_eq!(lines_with(&stdout, "refused:").len(), stores, "{stdout}");
    assert!(stdout.contains("www.other.test"), "{stdout}");
    let installed = lines_with(&stdout, "installed version 1, sha256 ");
    assert_eq!(installed.len(), stores, "{stdout}");
    assert_eq!(
        lines_with(&stdout, "warning codes: ")
            .iter()
            .filter(|l| l.contains("root_from_platform"))
            .count(),
        stores,
        "{stdout}"
    );
    // Snippet 2: the follower applied the install with no restart.
    assert_eq!(
        lines_with(&stdout, "The follower applied version 1 within ").len(),
        stores,
        "{stdout}"
    );

    // Snippets 2, 3 and 5: each listener served the installed certificate, which the client
    // checked for the name, with the reason the index gives.
    let fingerprint = installed[0]
        .strip_prefix("installed version 1, sha256 ")
        .unwrap();
    assert_eq!(fingerprint.len(), 64, "{fingerprint}");
    for (listener, reason) in [
        ("https", "system-name"),
        ("imap", "mail-always-system"),
        ("https+acme", "system-name"),
    ] {
        let served: Vec<&str> = lines_with(&stdout, &format!("served {listener} "))
            .into_iter()
            .filter(|l| !l.contains("pebble's root"))
            .collect();
        assert_eq!(served.len(), stores, "{listener} in:\n{stdout}");
        let first = served[0];
        assert!(first.contains(" mail.example.test "), "{first}");
        assert!(
            first.contains(&format!("sha256 {} ", &fingerprint[..8])),
            "{first}"
        );
        assert!(first.contains("client check ok"), "{first}");
        assert_eq!(field(first, "target"), Some("system"), "{first}");
        assert_eq!(field(first, "reason"), Some(reason), "{first}");
    }
    // The domain without a certificate falls back to the system one.
    let explain = lines_with(&stdout, "explain https webmail.acme.test: ");
    assert_eq!(explain.len(), stores, "{stdout}");
    assert_eq!(
        field(explain[0], "reason"),
        Some("fallback-to-system"),
        "{stdout}"
    );
    assert_eq!(
        field(explain[0], "name-of"),
        Some("domain:acme.test"),
        "{stdout}"
    );
    // Snippet 5's HTTP-01 answer for a token nobody published.
    assert_eq!(
        lines_with(
            &stdout,
            "HTTP-01 GET /.well-known/acme-challenge/no-such-token: HTTP/1.1 404 Not Found"
        )
        .len(),
        stores,
        "{stdout}"
    );

    if etcd {
        let line = stdout
            .lines()
            .find(|l| l.starts_with("Store: etcd://") && l.ends_with(" (etcd store)"))
            .unwrap_or_else(|| panic!("no etcd store line in:\n{stdout}"));
        assert!(line.contains("/bmcert-embedding-"), "{line}");
    } else {
        assert!(stdout.contains("etcd: skipped"), "{stdout}");
    }

    if pebble {
        // Snippet 5's lifecycle: the uploaded certificate renewed by hand through pebble,
        // then served (checked against pebble's root) on the next handshake.
        let status = lines_with(&stdout, "status: system ");
        assert_eq!(status.len(), 1, "{stdout}");
        assert_eq!(field(status[0], "source"), Some("acme"), "{stdout}");
        assert_eq!(
            field(status[0], "names"),
            Some("mail.example.test"),
            "{stdout}"
        );
        assert_ne!(field(status[0], "next_renewal"), Some("-"), "{stdout}");
        assert!(
            stdout.contains("The follower applied the renewed certificate within "),
            "{stdout}"
        );
        let renewed: Vec<&str> = stdout
            .lines()
            .filter(|l| l.starts_with("served ") && l.contains("client check ok (pebble's root)"))
            .collect();
        assert_eq!(renewed.len(), 2, "{stdout}");
        for line in renewed {
            assert!(
                !line.contains(&fingerprint[..8]),
                "still the upload: {line}"
            );
            assert_eq!(field(line, "target"), Some("system"), "{line}");
        }
    } else {
        assert!(
            stdout.contains("but not started (BMCERT_PEBBLE_DIRECTORY is not set"),
            "{stdout}"
        );
    }
}
