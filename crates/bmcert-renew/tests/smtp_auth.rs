//! Issue 7, "optional authentication" of the SMTP notifier, against a real aiosmtpd started by
//! this test with authentication required (`tests/support/auth_smtpd.py`): once on a plain
//! connection (AUTH allowed without TLS) and once behind STARTTLS (aiosmtpd's default: AUTH
//! only after TLS). The right credentials deliver the warning; a wrong password, and no
//! credentials at all, fail with a typed error that names the server and says what to check,
//! and never contains a password.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration as StdDuration;

use bmcert_renew::*;
use bmcert_topology::Target;
use support::{refused_port, Child, Smtp};
use time::{Duration, OffsetDateTime};
use zeroize::Zeroizing;

const USER: &str = "bmcert-warnings";
const PASSWORD: &str = "Corr3ct-h0rse-b4ttery";
const WRONG: &str = "Wr0ng-st4ple-guess";

/// Starts `auth_smtpd.py` on a free loopback port; `tls` is (certificate, key) PEM files.
fn auth_smtpd(dir: &Path, tls: Option<(&Path, &Path)>) -> (Child, u16) {
    let port = refused_port();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/auth_smtpd.py");
    let mut cmd = Command::new("/usr/bin/python3");
    cmd.arg(script)
        .arg(port.to_string())
        .arg(dir.join("mail"))
        .arg(dir.join("auth.log"))
        .env("BMCERT_TEST_SMTP_USER", USER)
        .env("BMCERT_TEST_SMTP_PASSWORD", PASSWORD)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if let Some((cert, key)) = tls {
        cmd.arg(cert).arg(key);
    }
    let mut child = Child(
        cmd.spawn()
            .expect("run /usr/bin/python3 (python3-aiosmtpd)"),
    );
    let stdout = child.0.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx
        .recv_timeout(StdDuration::from_secs(30))
        .expect("auth_smtpd.py did not start within 30 s");
    assert_eq!(line.trim(), "ready", "auth_smtpd.py: {line}");
    (child, port)
}

fn delivered(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir.join("mail")).unwrap() {
        let path = e.unwrap().path();
        if path.extension().is_some_and(|x| x == "eml") {
            out.push(std::fs::read_to_string(path).unwrap());
        }
    }
    out
}

fn auth_log(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("auth.log")).unwrap_or_default()
}

fn warning() -> Warning {
    Warning {
        to: "admin@example.test".into(),
        target: Target::System,
        names: vec!["mail.example.test".into()],
        not_after: OffsetDateTime::now_utc() + Duration::days(3),
        last_error: Some("the ACME directory could not be reached".into()),
        fix: None,
        uploaded: false,
        day: "2026-01-01".into(),
    }
}

/// A CA and a certificate for 127.0.0.1 it signed, as PEM files in `dir`; returns the CA PEM.
fn tls_files(dir: &Path) -> (Vec<u8>, std::path::PathBuf, std::path::PathBuf) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "bmcert smtp auth test CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, leaf_cert.pem()).unwrap();
    std::fs::write(&key, leaf_key.serialize_pem()).unwrap();
    (ca_cert.pem().into_bytes(), cert, key)
}

/// The error of a send that must fail: typed, naming the server, pointing at the
/// credentials, quoting the server's `code`, and free of any password.
fn assert_refused(e: &NotifyError, port: u16, code: &str, mode: &str) {
    assert!(matches!(e, NotifyError::Smtp { .. }), "{mode}: {e:?}");
    let text = e.to_string();
    let debug = format!("{e:?}");
    eprintln!("{mode}, expecting {code}: {text}");
    assert!(
        text.contains(&format!("127.0.0.1:{port}")),
        "{mode}: {text}"
    );
    assert!(
        text.contains("credentials"),
        "{mode}: says what to check: {text}"
    );
    assert!(
        text.contains(code),
        "{mode}: the server's answer {code}: {text}"
    );
    for secret in [PASSWORD, WRONG] {
        assert!(
            !text.contains(secret) && !debug.contains(secret),
            "{mode}: a password in the error: {text} / {debug}"
        );
    }
}

async fn check(
    mode: &str,
    security: SmtpSecurity,
    tls: Option<&(Vec<u8>, std::path::PathBuf, std::path::PathBuf)>,
) {
    let dir = tempfile::tempdir().unwrap();
    let (_server, port) = auth_smtpd(dir.path(), tls.map(|(_, c, k)| (c.as_path(), k.as_path())));
    let config = |credentials: Option<&str>| {
        let mut c = SmtpConfig::new("127.0.0.1", port, security, "bmcert@example.test");
        c.timeout = StdDuration::from_secs(10);
        c.credentials = credentials.map(|p| (USER.to_owned(), Zeroizing::new(p.to_owned())));
        if let Some((ca, _, _)) = tls {
            c.extra_roots_pem = vec![ca.clone()];
        }
        SmtpNotifier::new(c).unwrap()
    };
    let w = warning();
    let now = OffsetDateTime::now_utc();

    // The right credentials: delivered, after an accepted authentication.
    config(Some(PASSWORD)).send(&w, now).await.unwrap();
    let mails = delivered(dir.path());
    assert_eq!(mails.len(), 1, "{mode}");
    assert!(
        mails[0].starts_with("X-Envelope-To: admin@example.test"),
        "{}",
        mails[0]
    );
    assert!(
        mails[0].contains("the ACME directory could not be reached"),
        "{}",
        mails[0]
    );
    let log = auth_log(dir.path());
    assert!(
        log.lines().any(|l| l.ends_with(&format!(" ok {USER}"))),
        "{mode}: {log}"
    );

    // A wrong password: refused by the server (535), nothing delivered.
    let e = config(Some(WRONG)).send(&w, now).await.unwrap_err();
    assert_refused(&e, port, "535", mode);
    let log = auth_log(dir.path());
    assert!(
        log.lines()
            .any(|l| l.ends_with(&format!(" refused {USER}"))),
        "{mode}: {log}"
    );

    // No credentials: the server requires them (530), nothing delivered.
    let e = config(None).send(&w, now).await.unwrap_err();
    assert_refused(&e, port, "530", mode);
    assert_eq!(
        delivered(dir.path()).len(),
        1,
        "{mode}: only the authenticated send"
    );
}

#[tokio::test]
async fn smtp_authentication_against_a_real_aiosmtpd_that_requires_it() {
    // aiosmtpd is installed by scripts/peers/smtp.sh, which exports BMCERT_SMTP_PORT.
    if Smtp::from_env().is_none() {
        return;
    }
    check("plain", SmtpSecurity::Plain, None).await;
    let dir = tempfile::tempdir().unwrap();
    let tls = tls_files(dir.path());
    check("starttls", SmtpSecurity::StartTls, Some(&tls)).await;
}
