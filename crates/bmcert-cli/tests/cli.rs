//! The `bmcert` binary as administrators and scripts run it: exit status, readable and JSON
//! reports, every problem code, usage and I/O errors, and the `p12` split.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::path::{Path, PathBuf};
use std::process::Command;

use bmcert_test::fixtures::{openssl, ChainSpec, KeyType};
use bmcert_test::openssl_files::{export_p12, self_signed};

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn bmcert(dir: &Path, args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_bmcert"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    let run = Run {
        code: out.status.code().expect("exited, not killed"),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    };
    assert!(!run.stderr.contains("panicked"), "panic: {}", run.stderr);
    assert!(!run.stderr.contains("RUST_BACKTRACE"), "{}", run.stderr);
    run
}

fn json(run: &Run) -> serde_json::Value {
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {}", run.stdout))
}

fn samples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../samples")
}

/// A directory with cert.pem, key.pem, ca.pem of a fresh chain.
fn bundle_dir(kt: KeyType) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let c = ChainSpec::new(&["mail.example.test"])
        .leaf_key(kt)
        .validity(
            time::macros::datetime!(2030-01-01 0:00 UTC),
            time::macros::datetime!(2031-01-01 0:00 UTC),
        )
        .build();
    std::fs::write(dir.path().join("cert.pem"), &c.leaf.cert_pem).unwrap();
    std::fs::write(dir.path().join("key.pem"), &c.leaf.key_pem).unwrap();
    std::fs::write(dir.path().join("ca.pem"), c.ca_pem()).unwrap();
    std::fs::write(
        dir.path().join("inter.pem"),
        &c.intermediate.unwrap().cert_pem,
    )
    .unwrap();
    std::fs::write(dir.path().join("root.pem"), &c.root.cert_pem).unwrap();
    std::fs::write(dir.path().join("other-key.pem"), &c.root.key_pem).unwrap();
    dir
}

const FILES: [&str; 7] = [
    "check", "--cert", "cert.pem", "--key", "key.pem", "--ca", "ca.pem",
];
const URL: [&str; 2] = ["--url", "https://Mail.Example.test:443/webmail/"];
const IN_2030: [&str; 2] = ["--at", "2030-06-01T00:00:00Z"];

fn check(dir: &Path, extra: &[&str]) -> Run {
    bmcert(dir, &[&FILES[..], &URL[..], extra].concat())
}

fn assert_code(run: &Run, exit: i32, code: &str, file: &str) {
    assert_eq!(run.code, exit, "{}{}", run.stdout, run.stderr);
    let v = json(run);
    let list = if exit == 0 {
        &v["warnings"]
    } else {
        &v["problems"]
    };
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .any(|p| p["code"] == code && p["file"] == file),
        "expected {code}/{file} in {v:#}"
    );
}

#[test]
fn readme_command_accepts_the_samples() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    // The command exactly as README.md and samples/README.md give it.
    let prefix = "cargo run -p bmcert-cli -- ";
    let command = |file: &str| -> Vec<String> {
        let text = std::fs::read_to_string(root.join(file)).unwrap();
        let line = text
            .lines()
            .map(str::trim)
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("{file} has no `{prefix}...` line"));
        line[prefix.len()..]
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    };
    let args = command("README.md");
    assert_eq!(
        args,
        command("samples/README.md"),
        "README.md and samples/README.md differ"
    );
    assert_eq!(args[0], "check");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = bmcert(&root, &args);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.starts_with("cert file: samples/cert.pem\nkey file: samples/key.pem\nca file: samples/ca.pem\nBundle accepted"), "{}", run.stdout);
    assert!(run.stdout.contains("CN=mail.example.test"));
    assert!(run.stdout.contains("DNS:mail.example.test"));
    assert!(run.stdout.contains("Reference host: mail.example.test"));

    let run = bmcert(
        &samples(),
        &[
            "check",
            "--cert",
            "cert.pem",
            "--key",
            "key.pem",
            "--ca",
            "ca.pem",
            "--url",
            "mail.example.test",
            "--json",
        ],
    );
    let v = json(&run);
    assert_eq!(v["valid"], true);
    assert_eq!(v["problems"], serde_json::json!([]));
    assert_eq!(v["warnings"], serde_json::json!([]));
    assert_eq!(v["leaf"]["subject"], "CN=mail.example.test");
    assert_eq!(v["leaf"]["sans"][0], "DNS:mail.example.test");
    assert_eq!(v["chain"].as_array().unwrap().len(), 2);
    assert_eq!(v["host"], "mail.example.test");
    assert_eq!(v["files"]["cert"], "cert.pem");
    assert_eq!(v["files"]["ca"], "ca.pem");
}

#[test]
fn valid_bundle_and_date_codes() {
    let dir = bundle_dir(KeyType::EcdsaP256);
    let d = dir.path();
    let run = check(d, &[&IN_2030[..], &["--json"]].concat());
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert_eq!(json(&run)["valid"], true);
    assert_eq!(json(&run)["checked_at"], "2030-06-01T00:00:00Z");

    let run = check(d, &["--at", "2031-02-01T00:00:00Z", "--json"]);
    assert_code(&run, 1, "expired", "cert");
    let run = check(d, &["--at", "2029-12-31T00:00:00Z", "--json"]);
    assert_code(&run, 1, "not_yet_valid", "cert");
    let run = check(d, &["--at", "2030-12-20T00:00:00+01:00", "--json"]);
    assert_code(&run, 0, "expires_soon", "cert");
    // Readable output names the code, the file and the fix.
    let run = check(d, &["--at", "2031-02-01T00:00:00Z"]);
    assert_eq!(run.code, 1);
    assert!(run.stdout.contains("Bundle refused"), "{}", run.stdout);
    assert!(run.stdout.contains("expired (cert file)"), "{}", run.stdout);
    assert!(run.stdout.contains("Renew"), "{}", run.stdout);
}

#[test]
fn unreadable_mismatch_and_chain_codes() {
    let dir = bundle_dir(KeyType::Rsa2048);
    let d = dir.path();
    std::fs::write(d.join("garbage"), b"this is not a certificate\n").unwrap();
    let base = |cert: &str, key: &str, ca: &str| {
        bmcert(
            d,
            &[
                "check", "--cert", cert, "--key", key, "--ca", ca, "--json", IN_2030[0],
                IN_2030[1], URL[0], URL[1],
            ],
        )
    };
    assert_code(
        &base("garbage", "key.pem", "ca.pem"),
        1,
        "cert_unreadable",
        "cert",
    );
    let run = base("cert.pem", "cert.pem", "ca.pem");
    assert_code(&run, 1, "key_unreadable", "key");
    assert!(
        run.stdout
            .contains("holds a certificate, not a private key"),
        "{}",
        run.stdout
    );
    assert_code(
        &base("cert.pem", "key.pem", "garbage"),
        1,
        "ca_unreadable",
        "ca",
    );
    assert_code(
        &base("cert.pem", "other-key.pem", "ca.pem"),
        1,
        "key_mismatch",
        "key",
    );

    // Intermediate and leaf in the cert file: accepted with a warning.
    let mut both = std::fs::read(d.join("inter.pem")).unwrap();
    both.extend(std::fs::read(d.join("cert.pem")).unwrap());
    std::fs::write(d.join("both.pem"), both).unwrap();
    let run = base("both.pem", "key.pem", "root.pem");
    assert_code(&run, 0, "chain_in_cert_file", "cert");
    assert_eq!(json(&run)["chain"].as_array().unwrap().len(), 2);
}

#[test]
fn encrypted_key_with_and_without_password_file() {
    let dir = bundle_dir(KeyType::EcdsaP256);
    let d = dir.path();
    openssl(
        d,
        &[
            "pkcs8",
            "-topk8",
            "-in",
            "key.pem",
            "-out",
            "enc.pem",
            "-passout",
            "pass:s3cret",
        ],
    );
    std::fs::write(d.join("pw"), "s3cret\n").unwrap();
    std::fs::write(d.join("bad-pw"), "nope\n").unwrap();
    let args = |extra: &[&'static str]| -> Vec<&'static str> {
        [
            &[
                "check", "--cert", "cert.pem", "--key", "enc.pem", "--ca", "ca.pem", "--json",
            ][..],
            &IN_2030[..],
            &URL[..],
            extra,
        ]
        .concat()
    };
    let run = bmcert(d, &args(&[]));
    assert_code(&run, 1, "key_encrypted", "key");
    assert!(
        run.stdout.contains("openssl pkey -in enc.pem -out"),
        "{}",
        run.stdout
    );
    let run = bmcert(d, &args(&["--key-password-file", "pw"]));
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert_code(
        &bmcert(d, &args(&["--key-password-file", "bad-pw"])),
        1,
        "key_encrypted",
        "key",
    );
}

#[test]
fn weak_key_from_openssl() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    self_signed(d, "rsa:1024", 30);
    let run = bmcert(
        d,
        &[
            "check",
            "--cert",
            "c.pem",
            "--key",
            "k.pem",
            "--ca",
            "c.pem",
            "--url",
            "mail.example.test",
            "--json",
        ],
    );
    assert_code(&run, 1, "weak_key", "key");
    assert_code(&run, 1, "weak_key", "cert");
}

#[test]
fn pkcs12_check_and_split() {
    let dir = bundle_dir(KeyType::Rsa2048);
    let d = dir.path();
    std::fs::write(d.join("pw"), "pw\n").unwrap();
    std::fs::write(d.join("empty"), "").unwrap();
    std::fs::write(d.join("wrong"), "wrong").unwrap();
    std::fs::write(d.join("garbage.p12"), "garbage").unwrap();
    export_p12(d, "modern.p12", "pass:pw", &[]);
    export_p12(d, "legacy.p12", "pass:pw", &["-legacy"]);
    export_p12(d, "nopass.p12", "pass:", &[]);

    let p12check = |file: &str, pw: &str| {
        bmcert(
            d,
            &[
                &["check", "--p12", file, "--password-file", pw, "--json"][..],
                &IN_2030[..],
                &URL[..],
            ]
            .concat(),
        )
    };
    for file in ["modern.p12", "legacy.p12"] {
        let run = p12check(file, "pw");
        assert_eq!(run.code, 0, "{file}: {}", run.stdout);
        assert_eq!(json(&run)["leaf"]["subject"], "CN=mail.example.test");
        assert_code(&p12check(file, "wrong"), 1, "p12_bad_password", "p12");
    }
    assert_eq!(p12check("nopass.p12", "empty").code, 0);
    assert_code(&p12check("garbage.p12", "pw"), 1, "p12_unreadable", "p12");

    // Split, then check the written files.
    for (file, pw) in [
        ("modern.p12", "pw"),
        ("legacy.p12", "pw"),
        ("nopass.p12", "empty"),
    ] {
        let out = d.join(format!("out-{file}"));
        let run = bmcert(
            d,
            &[
                "p12",
                "--p12",
                file,
                "--password-file",
                pw,
                "--out-dir",
                out.to_str().unwrap(),
            ],
        );
        assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(out.join("key.pem"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert_eq!(
            std::fs::read_to_string(out.join("cert.pem")).unwrap(),
            std::fs::read_to_string(d.join("cert.pem")).unwrap()
        );
        let run = bmcert(&out, &[&FILES[..], &IN_2030[..], &URL[..]].concat());
        assert_eq!(run.code, 0, "{}", run.stdout);
        // openssl agrees with the split key.
        openssl(&out, &["pkey", "-in", "key.pem", "-noout"]);
    }
    // A wrong password writes nothing and exits 1.
    let out = d.join("out-wrong");
    let run = bmcert(
        d,
        &[
            "p12",
            "--p12",
            "modern.p12",
            "--password-file",
            "wrong",
            "--out-dir",
            out.to_str().unwrap(),
        ],
    );
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("p12_bad_password"), "{}", run.stderr);
    assert!(!out.join("key.pem").exists());
}

#[test]
fn usage_and_io_errors_exit_2_without_panic() {
    let dir = bundle_dir(KeyType::EcdsaP256);
    let d = dir.path();
    std::fs::create_dir(d.join("adir")).unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec![
                "check",
                "--cert",
                "missing.pem",
                "--key",
                "key.pem",
                "--url",
                "x.test",
            ],
            "does not exist",
        ),
        (
            vec![
                "check", "--cert", "adir", "--key", "key.pem", "--url", "x.test",
            ],
            "is a directory",
        ),
        (
            vec![
                "check", "--cert", "cert.pem", "--key", "adir", "--url", "x.test",
            ],
            "is a directory",
        ),
        (
            vec![
                "check", "--cert", "cert.pem", "--key", "key.pem", "--ca", "nope", "--url",
                "x.test",
            ],
            "CA file",
        ),
        (
            vec![
                "check",
                "--cert",
                "cert.pem",
                "--key",
                "key.pem",
                "--url",
                "https://bad host/",
            ],
            "--url",
        ),
        (
            vec![
                "check",
                "--cert",
                "cert.pem",
                "--key",
                "key.pem",
                "--url",
                "x.test",
                "--at",
                "yesterday",
            ],
            "RFC 3339",
        ),
        (
            vec!["check", "--cert", "cert.pem", "--url", "x.test"],
            "--key",
        ),
        (
            vec!["check", "--cert", "cert.pem", "--key", "key.pem"],
            "--url",
        ),
        (
            vec!["check", "--p12", "x.p12", "--url", "x.test"],
            "--password-file",
        ),
        (
            vec![
                "check",
                "--p12",
                "adir",
                "--password-file",
                "adir",
                "--url",
                "x.test",
            ],
            "is a directory",
        ),
        (
            vec![
                "p12",
                "--p12",
                "missing.p12",
                "--password-file",
                "adir",
                "--out-dir",
                "o",
            ],
            "does not exist",
        ),
        (vec!["frobnicate"], "unrecognized subcommand"),
        (vec![], "Usage"),
    ];
    for (args, needle) in cases {
        let run = bmcert(d, &args);
        assert_eq!(run.code, 2, "{args:?}: {}{}", run.stdout, run.stderr);
        assert!(run.stderr.contains(needle), "{args:?}: {}", run.stderr);
    }
}

#[test]
fn private_key_never_printed() {
    let dir = bundle_dir(KeyType::Rsa2048);
    let d = dir.path();
    let key = std::fs::read_to_string(d.join("key.pem")).unwrap();
    let other = std::fs::read_to_string(d.join("other-key.pem")).unwrap();
    let secret_lines: Vec<&str> = key
        .lines()
        .chain(other.lines())
        .filter(|l| !l.starts_with("-----") && l.len() > 20)
        .collect();
    assert!(secret_lines.len() > 5);
    let runs = [
        check(d, &IN_2030),
        check(d, &[&IN_2030[..], &["--json"]].concat()),
        bmcert(
            d,
            &[
                "check",
                "--cert",
                "cert.pem",
                "--key",
                "other-key.pem",
                "--url",
                "x.test",
                "--json",
            ],
        ),
        bmcert(
            d,
            &[
                "check", "--cert", "key.pem", "--key", "key.pem", "--url", "x.test",
            ],
        ),
        bmcert(
            d,
            &[
                "check", "--cert", "cert.pem", "--key", "cert.pem", "--ca", "key.pem", "--url",
                "x.test",
            ],
        ),
    ];
    for run in &runs {
        for line in &secret_lines {
            assert!(
                !run.stdout.contains(line) && !run.stderr.contains(line),
                "key printed"
            );
        }
    }
}

/// `bmcert` with extra environment variables.
fn bmcert_env(dir: &Path, env: &[(&str, &Path)], args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_bmcert"))
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_os_str())))
        .current_dir(dir)
        .output()
        .unwrap();
    Run {
        code: out.status.code().expect("exited, not killed"),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

/// Runs `bmcert ARGS` (with `env`) with `--json` and without. In JSON, `code` is listed for
/// `file`, among the problems with exit status 1, or among the warnings with exit status 0
/// and no problem at all; the readable report exits the same way and shows the code with the
/// same plain-words line under its heading. Returns the JSON run.
fn assert_code_in_json_and_text(
    dir: &Path,
    env: &[(&str, &Path)],
    args: &[&str],
    exit: i32,
    code: &str,
    file: &str,
) -> Run {
    let run = bmcert_env(dir, env, &[args, &["--json"]].concat());
    assert!(!run.stderr.contains("panicked"), "panic: {}", run.stderr);
    assert_code(&run, exit, code, file);
    let v = json(&run);
    if exit == 0 {
        assert_eq!(v["valid"], true, "{code}: {v:#}");
        assert_eq!(v["problems"], serde_json::json!([]), "{code}: {v:#}");
    }
    let list = if exit == 0 { "warnings" } else { "problems" };
    let finding = v[list]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["code"] == code && p["file"] == file)
        .unwrap();
    let message = finding["message"].as_str().unwrap();
    assert!(!message.is_empty(), "{code}: no plain words");

    let text = bmcert_env(dir, env, args);
    assert!(!text.stderr.contains("panicked"), "panic: {}", text.stderr);
    assert_eq!(text.code, exit, "{code}: {}{}", text.stdout, text.stderr);
    let line = format!("  - {code} ({file} file): {message}");
    let (heading, verdict) = if exit == 0 {
        ("\nWarnings:\n", "Bundle accepted")
    } else {
        ("\nProblems:\n", "Bundle refused")
    };
    assert!(text.stdout.contains(verdict), "{code}: {}", text.stdout);
    let section = text
        .stdout
        .split_once(heading)
        .unwrap_or_else(|| panic!("{code}: no {heading:?} in {}", text.stdout))
        .1;
    let section = section.split("\n\n").next().unwrap();
    assert!(
        section.lines().any(|l| l == line),
        "{code}: {line:?} not under {heading:?} in {}",
        text.stdout
    );
    run
}

#[test]
fn chain_and_name_codes_through_the_binary() {
    let dir = bundle_dir(KeyType::EcdsaP256);
    let d = dir.path();
    let url = "https://mail.example.test/";
    let args = |ca: &'static str, url: &'static str| {
        [
            "check", "--cert", "cert.pem", "--key", "key.pem", "--ca", ca, "--url", url,
            IN_2030[0], IN_2030[1],
        ]
    };

    // The CA file stops at the intermediate: name the root to append.
    let run =
        assert_code_in_json_and_text(d, &[], &args("inter.pem", url), 1, "root_missing", "ca");
    assert!(
        run.stdout.contains("bmcert Test Root CA"),
        "names the missing root: {}",
        run.stdout
    );

    // The root alone: the intermediate is missing, named by subject.
    let run =
        assert_code_in_json_and_text(d, &[], &args("root.pem", url), 1, "chain_incomplete", "ca");
    assert!(
        run.stdout.contains("bmcert Test Intermediate CA"),
        "{}",
        run.stdout
    );

    // Root first, then the intermediate: accepted, order fixed.
    let mut reversed = std::fs::read(d.join("root.pem")).unwrap();
    reversed.extend(std::fs::read(d.join("inter.pem")).unwrap());
    std::fs::write(d.join("reversed.pem"), reversed).unwrap();
    assert_code_in_json_and_text(
        d,
        &[],
        &args("reversed.pem", url),
        0,
        "chain_reordered",
        "ca",
    );

    // Another host: refused, and the report says which names the certificate covers.
    let run = assert_code_in_json_and_text(
        d,
        &[],
        &args("ca.pem", "https://webmail.other.test/"),
        1,
        "name_mismatch",
        "cert",
    );
    assert!(run.stdout.contains("mail.example.test"), "{}", run.stdout);

    // A root missing from the CA file but present in the platform store (rustls-native-certs
    // reads SSL_CERT_FILE): accepted with a warning; without it, root_missing as above.
    assert_code_in_json_and_text(
        d,
        &[("SSL_CERT_FILE", &d.join("root.pem"))],
        &args("inter.pem", url),
        0,
        "root_from_platform",
        "ca",
    );
}

/// The other chain and name codes of issue 3 through the real binary, each on its own
/// generated upload (`bmcert_test::verdicts`), in JSON and in text (see
/// [`assert_code_in_json_and_text`]).
#[test]
fn every_other_chain_code_through_the_binary_in_text_and_json() {
    use bmcert_test::verdicts::{upload, Code, URL};
    // (code, the file the finding names)
    let table = [
        (Code::ChainSignatureInvalid, "ca"),
        (Code::CaExpired, "ca"),
        (Code::LeafIsCa, "cert"),
        (Code::NotServerAuth, "cert"),
        (Code::WeakSignature, "cert"),
        (Code::ExtraCertificates, "ca"),
        (Code::ChainInCertFile, "cert"),
        (Code::CnOnly, "cert"),
    ];
    assert_eq!(
        table.len(),
        Code::ALL.len(),
        "every code of the helper is checked"
    );
    for (code, file) in table {
        let u = upload(code);
        let dir = tempfile::tempdir().unwrap();
        u.write(dir.path()).unwrap();
        let args = [
            "check", "--cert", "cert.pem", "--key", "key.pem", "--ca", "ca.pem", "--url", URL,
            "--at", &u.at,
        ];
        let exit = if u.problem { 1 } else { 0 };
        assert_code_in_json_and_text(dir.path(), &[], &args, exit, code.as_str(), file);
    }
}

#[test]
fn output_into_a_closed_pipe_does_not_panic() {
    use std::io::Read;
    use std::process::Stdio;
    let dir = bundle_dir(KeyType::EcdsaP256);
    let mut child = Command::new(env!("CARGO_BIN_EXE_bmcert"))
        .args([&FILES[..], &URL[..], &IN_2030[..]].concat())
        .current_dir(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Close the reading end before the report is written, as `| head -0` would.
    drop(child.stdout.take());
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(!stderr.contains("panicked"), "{stderr}");
    // Either the report fitted in the pipe buffer before it closed (exit 0) or SIGPIPE
    // ended the process; never the panic exit status 101.
    assert_ne!(status.code(), Some(101), "{stderr}");
}
