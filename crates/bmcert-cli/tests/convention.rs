//! The conventions every `bmcert` command follows: global `--store`/`--topology` (from the
//! command line, the environment or the configuration file, in that order), the exit status
//! (0 done, 1 refused, 2 usage or I/O error) of every subcommand, logs on standard error
//! (`RUST_LOG`, `-v`), and shell completions and the manual page generated from the same
//! definitions.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use bmcert_test::peers::{Pebble, PebbleInstance};
use common::{repo, Setup};

/// Every subcommand, as `bmcert --help` lists them.
const SUBCOMMANDS: [&str; 13] = [
    "check",
    "p12",
    "acme",
    "install",
    "disable",
    "list",
    "rollback",
    "export",
    "status",
    "renew",
    "config",
    "completions",
    "man",
];

#[test]
fn store_and_topology_are_accepted_by_every_command() {
    let s = Setup::new();
    assert_eq!(s.install("store", "system", "system").code, 0);
    let both = ["--store", "store", "--topology", "topology.toml"];
    // `status` ignores the topology, and says so by accepting it.
    let run = s.run(&[&["status"][..], &both, &["--json"]].concat());
    assert_eq!(run.code, 0, "{}", run.context());
    assert_eq!(run.json()[0]["target"], "system");
    // Before the subcommand too.
    let run = s.run(&[&both[..], &["list", "--json"]].concat());
    assert_eq!(run.code, 0, "{}", run.context());
    assert_eq!(run.json()[0]["target"], "system");
    // Even where neither is used.
    let run = s.run(&[&both[..], &["completions", "bash"]].concat());
    assert_eq!(run.code, 0, "{}", run.context());
    let help = s.run(&["acme", "accept", "--help"]);
    assert!(
        help.stdout.contains("--topology") && help.stdout.contains("--store"),
        "{}",
        help.context()
    );
}

#[test]
fn the_environment_names_the_store_and_topology_and_options_win() {
    let s = Setup::new();
    assert_eq!(s.install("store", "system", "system").code, 0);
    let store = s.path("store");
    let topology = s.path("topology.toml");
    let env = [
        ("BMCERT_STORE", store.to_str().unwrap()),
        ("BMCERT_TOPOLOGY", topology.to_str().unwrap()),
    ];
    let run = s.run_env(&["list"], &env);
    assert_eq!(run.code, 0, "{}", run.context());
    assert!(run.stdout.starts_with("system\tfiles"), "{}", run.context());
    // An option wins over the variable: an empty store elsewhere.
    let run = s.run_env(&["list", "--store", "other"], &env);
    assert_eq!(run.code, 0, "{}", run.context());
    assert!(
        run.stdout.contains("No certificate installed"),
        "{}",
        run.context()
    );
    // Neither: the message says the three ways to give it, exit 2.
    let run = s.run(&["list"]);
    assert_eq!(run.code, 2, "{}", run.context());
    assert!(
        run.stderr.contains("--store")
            && run.stderr.contains("BMCERT_STORE")
            && run.stderr.contains("configuration file"),
        "{}",
        run.context()
    );
}

#[test]
fn the_configuration_file_comes_last_and_config_says_where_each_setting_came_from() {
    let s = Setup::new();
    assert_eq!(s.install("store", "system", "system").code, 0);
    // Relative paths in the file are relative to the file.
    std::fs::create_dir(s.path("etc")).unwrap();
    let file = s.path("etc/bmcert.toml");
    std::fs::write(
        &file,
        "store = \"../store\"\ntopology = \"../topology.toml\"\n\
         [etcd]\nuser = \"bm\"\npassword = \"file-secret\"\n\
         [acme]\ndirectory = \"staging\"\ncontact = \"admin@example.test\"\n\
         [smtp]\nhost = \"smtp.example.test\"\nsecurity = \"tls\"\npassword = \"smtp-secret\"\nto = [\"ops@example.test\"]\n",
    )
    .unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let file_env = [("BMCERT_CONFIG", file.to_str().unwrap())];
    let run = s.run_env(&["list"], &file_env);
    assert_eq!(run.code, 0, "{}", run.context());
    assert!(run.stdout.starts_with("system\tfiles"), "{}", run.context());

    let topology = s.path("topology.toml");
    let mut env = file_env.to_vec();
    env.push(("BMCERT_TOPOLOGY", topology.to_str().unwrap()));
    let run = s.run_env(&["config", "--store", "flag-store", "--json"], &env);
    assert_eq!(run.code, 0, "{}", run.context());
    let doc = run.json();
    let from = |key: &str| doc[key]["from"].as_str().unwrap_or("(unset)").to_owned();
    let value = |key: &str| doc[key]["value"].as_str().unwrap_or("(unset)").to_owned();
    assert_eq!(
        (value("store"), from("store")),
        ("flag-store".into(), "--store".into())
    );
    assert_eq!(from("topology"), "BMCERT_TOPOLOGY");
    assert_eq!(from("config"), "BMCERT_CONFIG");
    assert!(
        from("acme.directory").starts_with("acme.directory in "),
        "{doc:#}"
    );
    assert_eq!(value("acme.contact"), "admin@example.test");
    assert_eq!(value("smtp.port"), "465");
    assert_eq!(value("smtp.to"), "ops@example.test");
    assert_eq!(from("etcd.cacert"), "(unset)");
    // Secrets: `(set)`, never the value, in JSON and in text.
    assert_eq!(value("etcd.password"), "(set)");
    assert_eq!(value("smtp.password"), "(set)");
    let text = s.run_env(&["config"], &env);
    assert_eq!(text.code, 0, "{}", text.context());
    for out in [&run.stdout, &text.stdout, &text.stderr] {
        assert!(
            !out.contains("file-secret") && !out.contains("smtp-secret"),
            "{out}"
        );
    }
    assert!(
        text.stdout.lines().any(|l| {
            let mut words = l.split_whitespace();
            words.next() == Some("etcd.password") && words.next() == Some("(set)")
        }),
        "{}",
        text.context()
    );

    // The environment over the file.
    let mut env = file_env.to_vec();
    env.push(("BMCERT_STORE", "env-store"));
    let doc = s.run_env(&["config", "--json"], &env).json();
    assert_eq!(
        (
            doc["store"]["value"].as_str(),
            doc["store"]["from"].as_str()
        ),
        (Some("env-store"), Some("BMCERT_STORE"))
    );

    // A mistake in the file: the file, the line and the reason; exit 2.
    std::fs::write(&file, "store = \"x\"\n[etcd]\ncacrt = \"ca.pem\"\n").unwrap();
    let run = s.run_env(&["list"], &file_env);
    assert_eq!(run.code, 2, "{}", run.context());
    assert!(
        run.stderr.contains("bmcert.toml")
            && run.stderr.contains("line 3")
            && run.stderr.contains("cacrt"),
        "{}",
        run.context()
    );
}

#[test]
fn exit_status_of_every_subcommand() {
    let s = Setup::new();
    std::fs::write(s.path("pw"), "pw\n").unwrap();
    bmcert_test::fixtures::openssl(
        s.dir.path(),
        &[
            "pkcs12",
            "-export",
            "-in",
            "system-cert.pem",
            "-inkey",
            "system-key.pem",
            "-passout",
            "pass:pw",
            "-out",
            "b.p12",
        ],
    );
    let st = ["--store", "store", "--topology", "topology.toml"];
    let with = |args: &[&'static str]| -> Vec<&'static str> { [&st[..], args].concat() };
    let files = |name: &'static str| -> Vec<&'static str> {
        match name {
            "system" => vec![
                "--cert",
                "system-cert.pem",
                "--key",
                "system-key.pem",
                "--ca",
                "system-ca.pem",
            ],
            _ => vec![
                "--cert",
                "acme-cert.pem",
                "--key",
                "acme-key.pem",
                "--ca",
                "acme-ca.pem",
            ],
        }
    };
    // (command, exit status, arguments), in an order where each sees the store as left
    // by the ones before.
    let cases: Vec<(&str, i32, Vec<&'static str>)> = vec![
        (
            "check",
            0,
            [
                &["check", "--url", "mail.example.test"][..],
                &files("system"),
            ]
            .concat(),
        ),
        (
            "check",
            1,
            [
                &["check", "--url", "webmail.acme.test"][..],
                &files("system"),
            ]
            .concat(),
        ),
        (
            "check",
            2,
            vec![
                "check",
                "--cert",
                "missing.pem",
                "--key",
                "system-key.pem",
                "--url",
                "mail.example.test",
            ],
        ),
        (
            "p12",
            0,
            vec![
                "p12",
                "--p12",
                "b.p12",
                "--password-file",
                "pw",
                "--out-dir",
                "split",
            ],
        ),
        (
            "p12",
            1,
            vec![
                "p12",
                "--p12",
                "b.p12",
                "--password-file",
                "system-key.pem",
                "--out-dir",
                "split2",
            ],
        ),
        (
            "p12",
            2,
            vec![
                "p12",
                "--p12",
                "missing.p12",
                "--password-file",
                "pw",
                "--out-dir",
                "split3",
            ],
        ),
        (
            "install",
            0,
            [with(&["install", "--target", "system"]), files("system")].concat(),
        ),
        (
            "install",
            1,
            [
                with(&["install", "--target", "domain:acme.test"]),
                files("system"),
            ]
            .concat(),
        ),
        (
            "install",
            2,
            [
                vec!["install", "--store", "store", "--target", "system"],
                files("system"),
            ]
            .concat(),
        ),
        ("list", 0, with(&["list"])),
        (
            "list",
            2,
            vec!["list", "--store", "store", "--topology", "missing.toml"],
        ),
        ("status", 0, with(&["status"])),
        ("status", 2, vec!["status", "--store", "etcdx://h:1"]),
        ("rollback", 1, with(&["rollback", "--target", "system"])),
        (
            "install",
            0,
            [with(&["install", "--target", "system"]), files("system")].concat(),
        ),
        ("rollback", 0, with(&["rollback", "--target", "system"])),
        ("rollback", 2, with(&["rollback", "--target", "nonsense:x"])),
        (
            "export",
            0,
            with(&["export", "--target", "system", "--out-dir", "backup"]),
        ),
        (
            "export",
            1,
            with(&[
                "export",
                "--target",
                "domain:acme.test",
                "--out-dir",
                "backup2",
            ]),
        ),
        (
            "export",
            2,
            with(&["export", "--target", "system", "--out-dir", "topology.toml"]),
        ),
        (
            "install",
            0,
            [
                with(&["install", "--target", "domain:acme.test"]),
                files("acme"),
            ]
            .concat(),
        ),
        (
            "disable",
            0,
            with(&["disable", "--target", "domain:acme.test"]),
        ),
        ("disable", 1, with(&["disable", "--target", "system"])),
        ("disable", 2, with(&["disable"])),
        ("renew", 1, with(&["renew", "--target", "domain:acme.test"])),
        (
            "renew",
            2,
            with(&[
                "renew",
                "--target",
                "system",
                "--directory",
                "http://plain.example",
            ]),
        ),
        (
            "acme",
            2,
            with(&["acme", "terms", "--directory", "ftp://x"]),
        ),
        ("acme", 2, with(&["acme", "frobnicate"])),
        ("config", 0, with(&["config"])),
        ("config", 2, vec!["config", "--config", "missing.toml"]),
        ("completions", 0, vec!["completions", "zsh"]),
        ("completions", 2, vec!["completions", "cmd.exe"]),
        ("man", 0, vec!["man"]),
        ("man", 2, vec!["man", "--no-such-option"]),
    ];
    let mut covered: Vec<(&str, i32)> = Vec::new();
    for (command, exit, args) in &cases {
        let run = s.run(args);
        assert_eq!(
            run.code,
            *exit,
            "bmcert {}: {}",
            args.join(" "),
            run.context()
        );
        if *exit == 1 {
            assert!(
                run.stderr.contains("refused") || run.stdout.contains("refused"),
                "{}",
                run.context()
            );
        }
        covered.push((command, *exit));
    }
    // ACME refusals (exit 1) need the CA: below, and in tests/acme.rs.
    for command in SUBCOMMANDS {
        for exit in [0, 2] {
            let needs_ca = exit == 0 && (command == "acme" || command == "renew");
            assert!(
                needs_ca || covered.contains(&(command, exit)),
                "no case of `bmcert {command}` with exit {exit}"
            );
        }
    }
}

#[test]
fn acme_refusals_exit_1_and_accept_takes_the_global_options() {
    let pebble = match Pebble::try_from_env(PebbleInstance::Main) {
        Ok(p) => p,
        Err(missing) => {
            assert!(
                std::env::var_os(bmcert_test::peers::REQUIRE_PEERS).is_none(),
                "needs pebble: {missing}"
            );
            eprintln!("SKIPPED: {missing}");
            return;
        }
    };
    let s = Setup::new();
    let ca = pebble.ca_path.to_str().unwrap();
    let common = [
        "--store",
        "store",
        "--topology",
        "topology.toml",
        "--directory",
        &pebble.directory,
        "--directory-ca",
        ca,
    ];
    let issue = s.run(&[&["acme", "issue", "--target", "system"][..], &common].concat());
    assert_eq!(issue.code, 1, "{}", issue.context());
    assert!(
        issue.stderr.contains("refused") && issue.stderr.contains("bmcert acme accept"),
        "{}",
        issue.context()
    );
    let accept = s.run(&[&["acme", "accept"][..], &common].concat());
    assert_eq!(accept.code, 0, "{}", accept.context());
    assert!(
        accept.stdout.contains("accepted the terms of service"),
        "{}",
        accept.context()
    );
    // The CA's directory in the configuration file instead of options.
    std::fs::write(
        s.path("ca.toml"),
        format!(
            "store = \"store\"\n[acme]\ndirectory = \"{}\"\ndirectory_ca = \"{ca}\"\n",
            pebble.directory
        ),
    )
    .unwrap();
    let terms = s.run(&["acme", "terms", "--config", "ca.toml"]);
    assert_eq!(terms.code, 0, "{}", terms.context());
    assert!(
        terms.stdout.starts_with("data:") || terms.stdout.contains("http"),
        "{}",
        terms.context()
    );
}

#[test]
fn rust_log_and_verbose_show_the_store_warnings_on_stderr() {
    let s = Setup::new();
    assert_eq!(s.install("store", "system", "system").code, 0);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let open = |p: &std::path::Path| {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap()
        };
        // Someone opened the store to other users: the store repairs it and warns.
        open(&s.path("store"));
        let list = ["list", "--store", "store", "--topology", "topology.toml"];
        let run = s.run(&list);
        assert_eq!(run.code, 0, "{}", run.context());
        assert!(
            run.stderr.contains("WARN") && run.stderr.contains("permissions repaired"),
            "{}",
            run.context()
        );
        // Standard output stays the listing alone.
        assert!(!run.stdout.contains("permissions"), "{}", run.context());
        // RUST_LOG chooses: nothing below error from the store...
        open(&s.path("store"));
        let quiet = s.run_env(&list, &[("RUST_LOG", "error")]);
        assert_eq!(quiet.code, 0, "{}", quiet.context());
        assert!(
            !quiet.stderr.contains("permissions repaired"),
            "{}",
            quiet.context()
        );
    }
    // ...and -v adds the info level, RUST_LOG=debug the debug one.
    let verbose = s.run(&[
        "-vv",
        "list",
        "--store",
        "store",
        "--topology",
        "topology.toml",
    ]);
    assert_eq!(verbose.code, 0, "{}", verbose.context());
    assert!(
        verbose.stderr.contains("DEBUG") || verbose.stderr.contains("INFO"),
        "{}",
        verbose.context()
    );
    let plain = s.run(&["list", "--store", "store", "--topology", "topology.toml"]);
    assert!(
        !plain.stderr.contains("DEBUG") && !plain.stderr.contains("INFO"),
        "{}",
        plain.context()
    );
}

#[test]
fn completions_and_manual_page_name_every_subcommand() {
    let s = Setup::new();
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let run = s.run(&["completions", shell]);
        assert_eq!(run.code, 0, "{shell}: {}", run.context());
        for sub in SUBCOMMANDS.iter().chain(&["terms", "accept", "issue"]) {
            assert!(
                run.stdout.contains(sub),
                "the {shell} completions do not mention `{sub}`"
            );
        }
        for option in ["store", "topology", "etcd-cacert", "json", "config"] {
            assert!(
                run.stdout.contains(option),
                "the {shell} completions do not mention `--{option}`"
            );
        }
    }
    let man = s.run(&["man"]);
    assert_eq!(man.code, 0, "{}", man.context());
    assert!(
        man.stdout.starts_with(".ie") || man.stdout.contains(".TH bmcert"),
        "{}",
        &man.stdout[..200.min(man.stdout.len())]
    );
    for sub in SUBCOMMANDS {
        assert!(
            man.stdout.contains(&format!("bmcert\\-{sub}")) || man.stdout.contains(sub),
            "the manual page does not mention `{sub}`"
        );
    }
    assert!(
        man.stdout.contains("Exit status"),
        "the manual page lacks the exit status"
    );
    // The exit status is documented once in the guide, with the same three codes.
    let guide = std::fs::read_to_string(repo().join("docs/admin-guide.md")).unwrap();
    assert!(
        guide.contains("## Exit status"),
        "docs/admin-guide.md has no exit status section"
    );
}
