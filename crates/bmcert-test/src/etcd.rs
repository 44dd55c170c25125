//! An etcd of a test's own, serving TLS: a one-member cluster started from `BMCERT_ETCD_BIN`
//! ([`crate::peers::etcd_bin`]) on two free loopback ports, with a server certificate from a
//! test CA, killed and reaped when the [`EtcdMember`] guard drops. The certificates come from
//! [`test_ca`] and [`issue_loopback`], written as PEM files etcd reads.
//!
//! ```
//! let dir = tempfile::tempdir().unwrap();
//! let root = bmcert_test::etcd::test_ca("doc test CA");
//! let (cert, key) = bmcert_test::etcd::issue_loopback(&root, Some("etcd"), dir.path(), "server");
//! assert!(std::fs::read_to_string(cert).unwrap().starts_with("-----BEGIN CERTIFICATE-----"));
//! assert!(key.ends_with("server.key"));
//! ```

// Test helpers fail loudly: a certificate that cannot be made or an etcd that cannot start is
// a broken test set-up.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair, SanType};

use crate::peers::free_port;

/// An etcd member this test started: killed and reaped when dropped, however the test ends.
#[derive(Debug)]
pub struct EtcdMember {
    child: Child,
    client_port: u16,
}

impl EtcdMember {
    /// Guards `child`, an etcd serving clients on 127.0.0.1:`client_port`.
    pub fn new(child: Child, client_port: u16) -> Self {
        Self { child, client_port }
    }

    /// The port it serves clients on, on 127.0.0.1.
    pub fn client_port(&self) -> u16 {
        self.client_port
    }
}

impl Drop for EtcdMember {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A self-signed CA certificate and key, with `name` as its common name and no path length
/// limit.
pub fn test_ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

/// Writes a certificate for `localhost` and 127.0.0.1 signed by `issuer` to
/// `dir/<stem>.pem` and its new key to `dir/<stem>.key`, and returns both paths. The subject's
/// common name is `cn`, or rcgen's default one with `None`.
pub fn issue_loopback(
    issuer: &CertifiedIssuer<'static, KeyPair>,
    cn: Option<&str>,
    dir: &Path,
    stem: &str,
) -> (PathBuf, PathBuf) {
    let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    params
        .subject_alt_names
        .push(SanType::IpAddress([127, 0, 0, 1].into()));
    if let Some(cn) = cn {
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
    }
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, issuer).unwrap();
    let (cert_path, key_path) = (
        dir.join(format!("{stem}.pem")),
        dir.join(format!("{stem}.key")),
    );
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    (cert_path, key_path)
}

/// Starts `bin` as a one-member cluster named `tls` serving clients over HTTPS on a free
/// loopback port with `server_cert` and `server_key` (its peer port plain HTTP, unused), its
/// data in `dir/data` and its output in `dir/etcd.log`. With `client_ca`, it requires client
/// certificates signed by that CA (`--client-cert-auth --trusted-ca-file`).
///
/// Returns once the process is started, not once it answers: the caller waits for it with
/// its own client and deadline.
pub fn start_tls_member(
    bin: &Path,
    dir: &Path,
    server_cert: &Path,
    server_key: &Path,
    client_ca: Option<&Path>,
) -> EtcdMember {
    let (client_port, peer_port) = (free_port(), free_port());
    let client_url = format!("https://127.0.0.1:{client_port}");
    let peer_url = format!("http://127.0.0.1:{peer_port}");
    let log = std::fs::File::create(dir.join("etcd.log")).unwrap();
    let mut command = Command::new(bin);
    command
        .args(["--name", "tls", "--data-dir"])
        .arg(dir.join("data"))
        .args(["--listen-client-urls", &client_url])
        .args(["--advertise-client-urls", &client_url])
        .args(["--listen-peer-urls", &peer_url])
        .args(["--initial-advertise-peer-urls", &peer_url])
        .args(["--initial-cluster", &format!("tls={peer_url}")])
        .arg("--cert-file")
        .arg(server_cert)
        .arg("--key-file")
        .arg(server_key);
    if let Some(ca) = client_ca {
        command
            .arg("--client-cert-auth")
            .arg("--trusted-ca-file")
            .arg(ca);
    }
    let child = command
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start etcd {}: {e}", bin.display()));
    EtcdMember::new(child, client_port)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_certificates_chain_to_the_test_ca_and_name_loopback() {
        let dir = tempfile::tempdir().unwrap();
        let root = test_ca("bmcert etcd helper test CA");
        let (cert, key) = issue_loopback(&root, Some("etcd"), dir.path(), "server");
        assert_eq!(
            (cert.file_name().unwrap(), key.file_name().unwrap()),
            ("server.pem".as_ref(), "server.key".as_ref())
        );
        assert!(std::fs::read_to_string(&key)
            .unwrap()
            .contains("PRIVATE KEY"));
        // openssl, a real peer, checks the chain and the loopback names.
        let root_path = dir.path().join("ca.pem");
        std::fs::write(&root_path, root.pem()).unwrap();
        let verify = Command::new("openssl")
            .args(["verify", "-CAfile"])
            .arg(&root_path)
            .args(["-verify_ip", "127.0.0.1"])
            .arg(&cert)
            .output()
            .expect("the openssl command is installed (scripts/test-all installs it)");
        assert!(
            verify.status.success(),
            "{}",
            String::from_utf8_lossy(&verify.stderr)
        );
        let other = test_ca("some other CA");
        std::fs::write(&root_path, other.pem()).unwrap();
        let refused = Command::new("openssl")
            .args(["verify", "-CAfile"])
            .arg(&root_path)
            .arg(&cert)
            .output()
            .unwrap();
        assert!(!refused.status.success());
        let text = Command::new("openssl")
            .args(["x509", "-noout", "-subject", "-in"])
            .arg(&cert)
            .output()
            .unwrap();
        let subject = String::from_utf8_lossy(&text.stdout).replace(' ', "");
        assert!(subject.contains("CN=etcd"), "{subject}");
    }

    #[test]
    fn a_member_is_killed_when_its_guard_drops() {
        let child = Command::new("sleep").arg("60").spawn().unwrap();
        let pid = child.id();
        drop(EtcdMember::new(child, 1));
        // Reaped: no process of that id is left (not even a zombie).
        assert!(!Path::new(&format!("/proc/{pid}")).exists());
    }
}
