//! A pebble of a test's own (with its DNS server, pebble-challtestsrv) on free loopback
//! ports: its log holds only that test's orders, its HTTP-01 validation port is the test's
//! choice, and its configuration (certificate lifetime) too. Used by agent_cluster.rs and
//! acme_lifetimes.rs.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bmcert_test::fixtures::ChainSpec;

use super::agent::{read, within};

/// `name` on this machine, or `None` after saying why the test is skipped (a failure under
/// the test command, `BMCERT_REQUIRE_PEERS`).
pub(crate) fn binary(name: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        let why = format!("{name} is not installed; scripts/test-all installs it");
        if std::env::var_os(bmcert_test::peers::REQUIRE_PEERS).is_some_and(|v| !v.is_empty()) {
            panic!("{} is set and {why}", bmcert_test::peers::REQUIRE_PEERS);
        }
        eprintln!("SKIPPED: {why}");
    }
    found
}
/// A pebble and its DNS server (pebble-challtestsrv, every name is 127.0.0.1) of the test's
/// own, stopped when dropped.
pub(crate) struct OwnPebble {
    pub(crate) children: Vec<Child>,
    /// The ACME directory URL.
    pub(crate) directory: String,
    /// The CA of pebble's HTTPS certificate (for `--directory-ca`).
    pub(crate) listener_ca: PathBuf,
    /// Pebble's root of the certificates it issues (for `--chain-ca`).
    pub(crate) root: PathBuf,
    pub(crate) log: PathBuf,
}

impl OwnPebble {
    /// Starts them in `dir`; pebble's validator connects to `http01_port` for HTTP-01. The
    /// free ports are found by binding and releasing them, so another process may take one
    /// before pebble binds it: a start that fails is retried (three times, fresh ports).
    pub(crate) fn start(dir: &Path, pebble: &Path, challtestsrv: &Path, http01_port: u16) -> Self {
        Self::start_with(
            dir,
            pebble,
            challtestsrv,
            http01_port,
            serde_json::json!({}),
        )
    }

    /// [`OwnPebble::start`] with `settings` added to pebble's configuration (an object, for
    /// instance `certificateValidityPeriod` in seconds, or `externalAccountBindingRequired`
    /// with `externalAccountMACKeys`).
    pub(crate) fn start_with(
        dir: &Path,
        pebble: &Path,
        challtestsrv: &Path,
        http01_port: u16,
        settings: serde_json::Value,
    ) -> Self {
        let mut failures = Vec::new();
        for attempt in 1..=3 {
            let dir = dir.join(format!("attempt-{attempt}"));
            match Self::try_start(&dir, pebble, challtestsrv, http01_port, &settings) {
                Ok(started) => return started,
                Err(why) => failures.push(why),
            }
        }
        panic!(
            "pebble did not start, three times:\n{}",
            failures.join("\n---\n")
        );
    }

    fn try_start(
        dir: &Path,
        pebble: &Path,
        challtestsrv: &Path,
        http01_port: u16,
        extra: &serde_json::Value,
    ) -> Result<Self, String> {
        std::fs::create_dir_all(dir).unwrap();
        let port = bmcert_test::peers::free_port;
        let (listen, management, dns, dns_management, tls) =
            (port(), port(), port(), port(), port());
        // Pebble's HTTPS certificate, for 127.0.0.1.
        let chain = ChainSpec::new(&["127.0.0.1", "localhost"])
            .without_intermediate()
            .build();
        let (cert, key, listener_ca) = (
            dir.join("listener-cert.pem"),
            dir.join("listener-key.pem"),
            dir.join("listener-ca.pem"),
        );
        std::fs::write(&cert, &chain.leaf.cert_pem).unwrap();
        std::fs::write(&key, &chain.leaf.key_pem).unwrap();
        std::fs::write(&listener_ca, &chain.root.cert_pem).unwrap();
        let config = dir.join("pebble.json");
        let mut settings = serde_json::json!({
            "pebble": {
                "listenAddress": format!("127.0.0.1:{listen}"),
                "managementListenAddress": format!("127.0.0.1:{management}"),
                "certificate": cert,
                "privateKey": key,
                "httpPort": http01_port,
                "tlsPort": tls,
                "ocspResponderURL": "",
                "externalAccountBindingRequired": false,
            }
        });
        if let (Some(pebble), Some(extra)) = (settings["pebble"].as_object_mut(), extra.as_object())
        {
            pebble.extend(extra.clone());
        }
        std::fs::write(&config, settings.to_string()).unwrap();
        let log = dir.join("pebble.log");
        let output = |name: &str| {
            let file = std::fs::File::create(dir.join(name)).unwrap();
            (Stdio::from(file.try_clone().unwrap()), Stdio::from(file))
        };
        let mut children = Vec::new();
        let (out, err) = output("challtestsrv.log");
        children.push(
            Command::new(challtestsrv)
                .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
                .args(["-dns01", &format!("127.0.0.1:{dns}")])
                .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
                .args(["-management", &format!("127.0.0.1:{dns_management}")])
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err)
                .spawn()
                .expect("run pebble-challtestsrv"),
        );
        let (out, err) = output("pebble.log");
        children.push(
            Command::new(pebble)
                .arg("-config")
                .arg(&config)
                .args(["-dnsserver", &format!("127.0.0.1:{dns}")])
                // No random validation delay, no rejected nonces, no authorization reused:
                // every order is validated through the gate.
                .env("PEBBLE_VA_NOSLEEP", "1")
                .env("PEBBLE_WFE_NONCEREJECT", "0")
                .env("PEBBLE_AUTHZREUSE", "0")
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err)
                .spawn()
                .expect("run pebble"),
        );
        let mut pebble = Self {
            children,
            directory: format!("https://127.0.0.1:{listen}/dir"),
            listener_ca,
            root: dir.join("pebble-root.pem"),
            log,
        };
        let curl = |url: &str, to: &Path| {
            Command::new("curl")
                .args(["-fs", "--max-time", "5", "--cacert"])
                .arg(&pebble.listener_ca)
                .arg("-o")
                .arg(to)
                .arg(url)
                .status()
                .expect("run curl")
                .success()
        };
        let up = within(Duration::from_secs(30), || {
            curl(&pebble.directory, &dir.join("dir.json"))
                && curl(
                    &format!("https://127.0.0.1:{management}/roots/0"),
                    &pebble.root,
                )
        });
        let alive = pebble
            .children
            .iter_mut()
            .all(|c| c.try_wait().ok().flatten().is_none());
        if !(up && alive) {
            // Dropping `pebble` stops both processes.
            return Err(format!(
                "pebble did not start on 127.0.0.1:{listen}:\n{}\n{}",
                read(&pebble.log),
                read(&dir.join("challtestsrv.log"))
            ));
        }
        Ok(pebble)
    }

    /// How many orders pebble received (`There are now N orders in the db`, one line per
    /// new order).
    pub(crate) fn orders(&self) -> usize {
        read(&self.log)
            .lines()
            .filter(|l| l.contains("There are now") && l.contains("orders in the db"))
            .count()
    }

    /// The serials (lowercase hex, no leading zeros) of the certificates pebble issued.
    pub(crate) fn issued(&self) -> Vec<String> {
        read(&self.log)
            .lines()
            .filter_map(|l| {
                let rest = l.split("Issued certificate serial ").nth(1)?;
                Some(serial(rest.split_whitespace().next()?))
            })
            .collect()
    }
}

impl Drop for OwnPebble {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A hexadecimal serial, lowercase without leading zeros.
pub(crate) fn serial(hex: &str) -> String {
    let s = hex.trim().to_ascii_lowercase();
    let s = s.trim_start_matches('0');
    if s.is_empty() {
        "0".into()
    } else {
        s.to_owned()
    }
}

/// An installation on an [`OwnPebble`]: a store and a one-host topology in `dir`, and the
/// `bmcert acme` commands against that pebble (answering HTTP-01 on its validation port).
pub(crate) struct OwnSite<'a> {
    pebble: &'a OwnPebble,
    http01: u16,
    pub(crate) store: PathBuf,
    pub(crate) topology: PathBuf,
}

impl<'a> OwnSite<'a> {
    /// The site of `host` (the system URL), with `default_domain = "example.test"`.
    pub(crate) fn new(pebble: &'a OwnPebble, dir: &Path, host: &str, http01: u16) -> Self {
        let topology = dir.join("topology.toml");
        std::fs::write(
            &topology,
            format!("default_domain = \"example.test\"\n[system]\nurl = \"https://{host}\"\n"),
        )
        .unwrap();
        Self {
            pebble,
            http01,
            store: dir.join("store"),
            topology,
        }
    }

    /// `bmcert acme SUB --store ... --directory ... --directory-ca ...`, then `extra`.
    pub(crate) fn acme(&self, sub: &str, extra: &[&str]) -> std::process::Output {
        let (store, ca) = (
            self.store.display().to_string(),
            self.pebble.listener_ca.display().to_string(),
        );
        let mut args = vec![
            "acme",
            sub,
            "--store",
            &store,
            "--directory",
            &self.pebble.directory,
            "--directory-ca",
            &ca,
        ];
        args.extend_from_slice(extra);
        super::acme_site::bmcert(&args, &[])
    }

    /// `bmcert acme issue` of the system target, answering HTTP-01 itself, then `extra`.
    pub(crate) fn issue(&self, extra: &[&str]) -> std::process::Output {
        let (topology, root, listen) = (
            self.topology.display().to_string(),
            self.pebble.root.display().to_string(),
            format!("127.0.0.1:{}", self.http01),
        );
        let mut args = vec![
            "--topology",
            &topology,
            "--target",
            "system",
            "--chain-ca",
            &root,
            "--http01-listen",
            &listen,
        ];
        args.extend_from_slice(extra);
        self.acme("issue", &args)
    }
}
