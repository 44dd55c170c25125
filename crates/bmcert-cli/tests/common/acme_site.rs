//! The ACME scenarios' harness (acme_profiles.rs, acme_proxy.rs, acme_revoke.rs): the built
//! `bmcert` run under `timeout` with no proxy variable inherited, and a site (store, topology,
//! pebble's root) in a test's directory.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use bmcert_test::peers::Pebble;

pub(crate) const PROXY_VARS: [&str; 8] = [
    "HTTPS_PROXY",
    "https_proxy",
    "ALL_PROXY",
    "all_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "NO_PROXY",
    "no_proxy",
];

pub(crate) fn bmcert(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new("timeout");
    cmd.args(["-k", "5", "180"])
        .arg(env!("CARGO_BIN_EXE_bmcert"))
        .args(args)
        .stdin(Stdio::null());
    for var in PROXY_VARS {
        cmd.env_remove(var);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run bmcert")
}

pub(crate) fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

pub(crate) struct Site<'a> {
    pub(crate) pebble: &'a Pebble,
    pub(crate) store: String,
    pub(crate) topology: String,
    pub(crate) root: String,
}

impl Site<'_> {
    pub(crate) fn acme(&self, sub: &str, extra: &[&str], env: &[(&str, &str)]) -> Output {
        let ca = self.pebble.ca_path.display().to_string();
        let mut args = vec![
            "acme",
            sub,
            "--store",
            &self.store,
            "--directory",
            &self.pebble.directory,
            "--directory-ca",
            &ca,
        ];
        args.extend_from_slice(extra);
        bmcert(&args, env)
    }

    pub(crate) fn issue(&self, target: &str, extra: &[&str], env: &[(&str, &str)]) -> Output {
        let listen = self.pebble.http01_listen();
        let mut args = vec![
            "--topology",
            &self.topology,
            "--target",
            target,
            "--chain-ca",
            &self.root,
            "--http01-listen",
            &listen,
        ];
        args.extend_from_slice(extra);
        self.acme("issue", &args, env)
    }
}

pub(crate) fn site<'a>(pebble: &'a Pebble, dir: &Path, topology: &str) -> Site<'a> {
    let root = pebble.root_with_curl(&dir.join("root.pem"));
    let topology_path = dir.join("topology.toml");
    std::fs::write(&topology_path, topology).unwrap();
    Site {
        pebble,
        store: dir.join("store").display().to_string(),
        topology: topology_path.display().to_string(),
        root: root.display().to_string(),
    }
}
