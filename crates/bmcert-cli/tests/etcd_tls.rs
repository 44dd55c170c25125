//! `--store etcds://...` with the etcdctl-style options against a real etcd of its own
//! (`BMCERT_ETCD_BIN`, set by scripts/peers/etcd.sh): one member serving HTTPS with a
//! certificate from a test CA, requiring client certificates (`--client-cert-auth`), with
//! authentication on and a user whose role is limited to the store's prefix. `bmcert install`
//! then `bmcert list` go through it; a wrong password, a missing client certificate, a CA the
//! server is not signed by and a plain `etcd://` address to the TLS port each fail with a
//! message that says what to fix and never shows a password.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use bmcert_test::etcd::{issue_loopback, start_tls_member, test_ca};

const PREFIX: &str = "/bmcert-tls/";
const USER: &str = "bluemind";
const PASSWORD: &str = "Pw-7Kq2-etcd-tls";
const WRONG: &str = "Wrong-9Zr4-attempt";

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Runs `bmcert` with `args` and exactly the `BMCERT_ETCD_*`/`SSL_CERT_*` variables in
/// `env`; killed (and the test failed) after 60 s.
fn bmcert(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_bmcert"));
    command.args(args);
    for var in [
        "BMCERT_ETCD_CACERT",
        "BMCERT_ETCD_CERT",
        "BMCERT_ETCD_KEY",
        "BMCERT_ETCD_USER",
        "BMCERT_ETCD_PASSWORD",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
    ] {
        command.env_remove(var);
    }
    command.envs(env.iter().copied());
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "bmcert {args:?} did not end within 60 s: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Asserts a usage error (status 2) whose message holds every `needle` and no password.
fn assert_refused(out: &Output, needles: &[&str]) {
    let all = text(out);
    // Shown with --nocapture: the messages an administrator would read.
    eprintln!("--- refused as expected:\n{all}");
    assert_eq!(out.status.code(), Some(2), "{all}");
    for needle in needles {
        assert!(all.contains(needle), "expected `{needle}` in:\n{all}");
    }
    for secret in [PASSWORD, WRONG] {
        assert!(!all.contains(secret), "a password shows in:\n{all}");
    }
}

/// Waits (at most 30 s) until etcd answers over TLS, then creates the root user, a user
/// whose role may read and write the store's prefix only, and turns authentication on,
/// with etcd's own client.
fn set_up_auth(port: u16, ca_pem: &str, client_cert: &Path, client_key: &Path) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let identity = etcd_client::Identity::from_pem(
            std::fs::read(client_cert).unwrap(),
            std::fs::read(client_key).unwrap(),
        );
        let tls = etcd_client::TlsOptions::new()
            .ca_certificate(etcd_client::Certificate::from_pem(ca_pem))
            .identity(identity);
        let options = etcd_client::ConnectOptions::new()
            .with_tls(tls)
            .with_connect_timeout(Duration::from_secs(2))
            .with_timeout(Duration::from_secs(5));
        let endpoint = format!("https://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut client = loop {
            let attempt = async {
                let mut c =
                    etcd_client::Client::connect([endpoint.as_str()], Some(options.clone()))
                        .await?;
                c.status().await?;
                Ok::<_, etcd_client::Error>(c)
            };
            match attempt.await {
                Ok(c) => break c,
                Err(e) => {
                    assert!(
                        Instant::now() < deadline,
                        "etcd over TLS never answered: {e}"
                    );
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        };
        client
            .user_add("root", "root-pw-unused", None)
            .await
            .unwrap();
        client.user_grant_role("root", "root").await.unwrap();
        client.role_add("bmcert").await.unwrap();
        client
            .role_grant_permission(
                "bmcert",
                etcd_client::Permission::read_write(PREFIX).with_prefix(),
            )
            .await
            .unwrap();
        client.user_add(USER, PASSWORD, None).await.unwrap();
        client.user_grant_role(USER, "bmcert").await.unwrap();
        client.auth_enable().await.unwrap();
    });
}

#[test]
fn install_and_list_over_etcds_with_client_certificate_and_password() {
    let Some(bin) = bmcert_test::peers::etcd_bin() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let root = test_ca("bmcert cli etcd tls test CA");
    let ca_path = d.join("etcd-ca.pem");
    std::fs::write(&ca_path, root.pem()).unwrap();
    let (server_cert, server_key) = issue_loopback(&root, Some("etcd"), d, "server");
    let (client_cert, client_key) = issue_loopback(&root, Some("bmcert-client"), d, "client");
    let other_ca = d.join("other-ca.pem");
    std::fs::write(&other_ca, test_ca("some other CA").pem()).unwrap();
    let topology = d.join("topology.toml");
    std::fs::write(&topology, "[system]\nurl = \"https://mail.example.test\"\n").unwrap();
    let samples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../samples");

    let member = start_tls_member(
        Path::new(&bin),
        d,
        &server_cert,
        &server_key,
        Some(&ca_path),
    );
    let client_port = member.client_port();
    set_up_auth(client_port, &root.pem(), &client_cert, &client_key);

    let etcds = format!("etcds://127.0.0.1:{client_port}{PREFIX}");
    let tls_flags = [
        "--etcd-cacert",
        s(&ca_path),
        "--etcd-cert",
        s(&client_cert),
        "--etcd-key",
        s(&client_key),
    ];
    let with = |first: &[&str], flags: &[&str]| -> Vec<String> {
        first.iter().chain(flags).map(|a| (*a).to_owned()).collect()
    };
    let run = |args: &[String], env: &[(&str, &str)]| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        bmcert(&args, env)
    };
    // `list` of `store` (with the test's topology), then `extra`, then `flags`.
    let list_args = |store: &str, extra: &[&str], flags: &[&str]| -> Vec<String> {
        let first = [
            &["list", "--store", store, "--topology", s(&topology)][..],
            extra,
        ]
        .concat();
        with(&first, flags)
    };

    // Install: TLS options as flags, the user as a flag, the password from the environment.
    let install = with(
        &[
            "install",
            "--store",
            &etcds,
            "--topology",
            s(&topology),
            "--target",
            "system",
            "--cert",
            s(&samples.join("cert.pem")),
            "--key",
            s(&samples.join("key.pem")),
            "--ca",
            s(&samples.join("ca.pem")),
            "--etcd-user",
            USER,
        ],
        &tls_flags,
    );
    let out = run(&install, &[("BMCERT_ETCD_PASSWORD", PASSWORD)]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(!text(&out).contains(PASSWORD));

    // List: every setting from the environment, the user as etcdctl's USER:PASSWORD.
    let user_and_password = format!("{USER}:{PASSWORD}");
    let out = run(
        &with(
            &[
                "list",
                "--json",
                "--store",
                &etcds,
                "--topology",
                s(&topology),
            ],
            &[],
        ),
        &[
            ("BMCERT_ETCD_CACERT", s(&ca_path)),
            ("BMCERT_ETCD_CERT", s(&client_cert)),
            ("BMCERT_ETCD_KEY", s(&client_key)),
            ("BMCERT_ETCD_USER", &user_and_password),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed[0]["target"], "system", "{listed}");
    assert_eq!(listed[0]["version"], 1, "{listed}");
    assert_eq!(listed[0]["source"], "files", "{listed}");
    assert!(
        listed[0].to_string().contains("mail.example.test"),
        "{listed}"
    );

    // `status` (the renewal commands' flattened options) reads the same store.
    let out = run(
        &with(
            &["status", "--json", "--store", &etcds, "--etcd-user", USER],
            &tls_flags,
        ),
        &[("BMCERT_ETCD_PASSWORD", PASSWORD)],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows[0]["target"], "system", "{rows}");
    assert_eq!(rows[0]["source"], "uploaded", "{rows}");

    // Without --etcd-cacert the system's CA certificates are trusted: pointed (through
    // SSL_CERT_FILE) at the test CA, the same list works; at another CA, it is refused.
    let list = list_args(
        &etcds,
        &[
            "--etcd-cert",
            s(&client_cert),
            "--etcd-key",
            s(&client_key),
            "--etcd-user",
            &user_and_password,
        ],
        &[],
    );
    let out = run(&list, &[("SSL_CERT_FILE", s(&ca_path))]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("mail.example.test"));
    let out = run(&list, &[("SSL_CERT_FILE", s(&other_ca))]);
    assert_refused(&out, &[&etcds, "UnknownIssuer", "give --etcd-cacert FILE"]);

    // The wrong password: etcd's refusal, said with the user, and neither password shown.
    let out = run(
        &list_args(&etcds, &["--etcd-user", USER], &tls_flags),
        &[("BMCERT_ETCD_PASSWORD", WRONG)],
    );
    assert_refused(&out, &[&etcds, "authentication failed", "--etcd-user"]);

    // No user while etcd has authentication on: the hint names the user option.
    let out = run(&list_args(&etcds, &[], &tls_flags), &[]);
    assert_refused(
        &out,
        &[&etcds, "permission denied", "give --etcd-user USER"],
    );

    // etcd requires a client certificate: without one the handshake is refused.
    let out = run(
        &list_args(
            &etcds,
            &[
                "--etcd-cacert",
                s(&ca_path),
                "--etcd-user",
                &user_and_password,
            ],
            &[],
        ),
        &[],
    );
    assert_refused(&out, &[&etcds, "--etcd-cert and --etcd-key"]);

    // A plain etcd:// address to the TLS port: refused, pointing at etcds://.
    let plain = format!("etcd://127.0.0.1:{client_port}{PREFIX}");
    let out = run(
        &list_args(&plain, &["--etcd-user", USER], &[]),
        &[("BMCERT_ETCD_PASSWORD", PASSWORD)],
    );
    assert_refused(
        &out,
        &[&plain, &format!("etcds://127.0.0.1:{client_port}{PREFIX}")],
    );

    // The TLS options with that plain address: refused before connecting.
    let out = run(&list_args(&plain, &[], &tls_flags), &[]);
    assert_refused(&out, &["--etcd-cacert", "plain etcd://", "etcds://"]);

    // An unreadable CA file: the option and the path.
    let missing = d.join("no-such-ca.pem");
    let out = run(
        &list_args(&etcds, &["--etcd-cacert", s(&missing)], &[]),
        &[],
    );
    assert_refused(&out, &["--etcd-cacert", s(&missing), "does not exist"]);
}
