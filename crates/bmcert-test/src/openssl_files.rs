//! Files the real `openssl` command makes in a test's directory, as administrators make
//! them: PKCS#12 exports of a chain and `req -x509` self-signed certificates. The bundle
//! library tests and the `bmcert` binary tests use the same commands.

use std::path::Path;

use crate::fixtures::openssl;

/// `openssl pkcs12 -export` in `dir` of its cert.pem, key.pem and ca.pem (the layout the
/// tests write a chain in) into `out`, protected by `passout` (openssl's form: `pass:pw`,
/// `pass:` for an empty password), with the `extra` options (`-legacy`, ...) before `-out`.
pub fn export_p12(dir: &Path, out: &str, passout: &str, extra: &[&str]) {
    let base = [
        "pkcs12",
        "-export",
        "-in",
        "cert.pem",
        "-inkey",
        "key.pem",
        "-certfile",
        "ca.pem",
        "-passout",
        passout,
    ];
    openssl(dir, &[&base[..], extra, &["-out", out]].concat());
}

/// `openssl req -x509` in `dir`: a new unencrypted key of `newkey` (`rsa:1024`, ...) in
/// k.pem and a self-signed certificate for `CN=mail.example.test`, valid `days` days, in
/// c.pem.
pub fn self_signed(dir: &Path, newkey: &str, days: u32) {
    let days = days.to_string();
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            newkey,
            "-noenc",
            "-keyout",
            "k.pem",
            "-out",
            "c.pem",
            "-subj",
            "/CN=mail.example.test",
            "-days",
            &days,
        ],
    );
}
