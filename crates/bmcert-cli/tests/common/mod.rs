//! Running the built `bmcert` the way an administrator's shell does, isolated from the
//! machine's own settings: no `BMCERT_*` variable is inherited and the configuration file
//! is an empty one (never /etc/bmcert/bmcert.toml), unless a test sets them.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

pub(crate) mod acme_site;
pub(crate) mod agent;
pub(crate) mod own_pebble;

use std::path::{Path, PathBuf};
use std::process::Command;

use bmcert_test::fixtures::ChainSpec;

/// One run of the binary.
pub(crate) struct Run {
    pub(crate) code: i32,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl Run {
    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("{e}: {}", self.context()))
    }
    pub(crate) fn context(&self) -> String {
        format!(
            "exit {}\nstdout:\n{}\nstderr:\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// A working directory with a topology, a bundle for each target and an empty
/// configuration file.
pub(crate) struct Setup {
    pub(crate) dir: tempfile::TempDir,
}

impl Setup {
    pub(crate) fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        std::fs::write(
            p.join("topology.toml"),
            "default_domain = \"example.test\"\n[system]\nurl = \"https://mail.example.test\"\n\
             [[domain]]\nname = \"acme.test\"\nurl = \"https://webmail.acme.test\"\n",
        )
        .unwrap();
        for (name, host) in [
            ("system", "mail.example.test"),
            ("acme", "webmail.acme.test"),
        ] {
            let c = ChainSpec::new(&[host]).build();
            std::fs::write(p.join(format!("{name}-cert.pem")), &c.leaf.cert_pem).unwrap();
            std::fs::write(p.join(format!("{name}-key.pem")), &c.leaf.key_pem).unwrap();
            std::fs::write(p.join(format!("{name}-ca.pem")), c.ca_pem()).unwrap();
        }
        std::fs::write(p.join("empty.toml"), "").unwrap();
        Self { dir }
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub(crate) fn run(&self, args: &[&str]) -> Run {
        self.run_env(args, &[])
    }

    /// Runs `bmcert ARGS` in the directory with `env` added.
    pub(crate) fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_bmcert"));
        cmd.args(args).current_dir(self.dir.path());
        for (k, _) in std::env::vars() {
            if k.starts_with("BMCERT_") || k == "RUST_LOG" {
                cmd.env_remove(k);
            }
        }
        cmd.env("BMCERT_CONFIG", self.path("empty.toml"));
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        let run = Run {
            code: out.status.code().expect("exited, not killed"),
            stdout: String::from_utf8(out.stdout).unwrap(),
            stderr: String::from_utf8(out.stderr).unwrap(),
        };
        assert!(!run.stderr.contains("panicked"), "{}", run.context());
        run
    }

    /// `install --target TARGET` of the bundle `name` (`system` or `acme`).
    pub(crate) fn install(&self, store: &str, target: &str, name: &str) -> Run {
        let (cert, key, ca) = (
            format!("{name}-cert.pem"),
            format!("{name}-key.pem"),
            format!("{name}-ca.pem"),
        );
        self.run(&[
            "install",
            "--store",
            store,
            "--topology",
            "topology.toml",
            "--target",
            target,
            "--cert",
            &cert,
            "--key",
            &key,
            "--ca",
            &ca,
        ])
    }
}

pub(crate) fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}
