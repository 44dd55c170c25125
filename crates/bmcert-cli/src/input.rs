//! Reading the files named on the command line, with messages that say what went wrong.

use std::fmt;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

/// A usage or I/O error: the command prints it and exits with status 2.
#[derive(Debug)]
pub(crate) struct UsageError(pub(crate) String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn describe(e: &std::io::Error) -> String {
    match e.kind() {
        ErrorKind::NotFound => "it does not exist; check the path".to_owned(),
        ErrorKind::PermissionDenied => {
            "permission denied; run as a user that may read it, or fix its permissions".to_owned()
        }
        ErrorKind::IsADirectory => "it is a directory, not a file".to_owned(),
        _ => e.to_string(),
    }
}

/// Reads a whole input file; `what` names it in messages ("certificate file").
pub(crate) fn read(path: &Path, what: &str) -> Result<Vec<u8>, UsageError> {
    if path.is_dir() {
        return Err(UsageError(format!(
            "cannot read the {what} `{}`: it is a directory, not a file",
            path.display()
        )));
    }
    std::fs::read(path).map_err(|e| {
        UsageError(format!(
            "cannot read the {what} `{}`: {}",
            path.display(),
            describe(&e)
        ))
    })
}

/// Reads and parses the topology file (`--topology`).
pub(crate) fn read_topology(path: &Path) -> Result<bmcert::topology::Topology, UsageError> {
    let text = String::from_utf8(read(path, "topology file")?).map_err(|_| {
        UsageError(format!(
            "the topology file `{}` is not UTF-8 text",
            path.display()
        ))
    })?;
    bmcert::topology::Topology::from_toml_str(&text)
        .map_err(|e| UsageError(format!("the topology file `{}`: {e}", path.display())))
}

/// Reads a PEM file of certificates (`--directory-ca`, `--chain-ca`).
pub(crate) fn read_certs(
    path: &Path,
    what: &str,
) -> Result<Vec<rustls_pki_types::CertificateDer<'static>>, UsageError> {
    let bytes = read(path, what)?;
    bmcert::acme::AcmeConfig::certificates_from_pem(
        &bytes,
        &format!("the {what} `{}`", path.display()),
    )
    .map_err(|e| UsageError(e.to_string()))
}

/// Reads a password file: one trailing newline (`\n` or `\r\n`) is dropped; an empty file
/// means no password.
pub(crate) fn read_password(path: &Path, what: &str) -> Result<Zeroizing<String>, UsageError> {
    let bytes = Zeroizing::new(read(path, what)?);
    let mut text =
        Zeroizing::new(String::from_utf8(bytes.to_vec()).map_err(|_| {
            UsageError(format!("the {what} `{}` is not UTF-8 text", path.display()))
        })?);
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    Ok(text)
}

/// Creates the output directory if needed.
pub(crate) fn ensure_dir(path: &PathBuf) -> Result<(), UsageError> {
    if path.exists() && !path.is_dir() {
        return Err(UsageError(format!(
            "the output directory `{}` is a file, not a directory",
            path.display()
        )));
    }
    std::fs::create_dir_all(path).map_err(|e| {
        UsageError(format!(
            "cannot create the output directory `{}`: {}",
            path.display(),
            describe(&e)
        ))
    })
}

/// Writes `contents` to `path`, replacing any existing file; with `secret`, the new file is
/// created with mode 0600 (owner only) before any byte is written.
pub(crate) fn write(path: &Path, contents: &[u8], secret: bool) -> Result<(), UsageError> {
    use std::io::Write as _;
    let err = |e: std::io::Error| {
        UsageError(format!(
            "cannot write `{}`: {}",
            path.display(),
            describe(&e)
        ))
    };
    if path.is_dir() {
        return Err(UsageError(format!(
            "cannot write `{}`: it is a directory",
            path.display()
        )));
    }
    // Remove first so an existing file's wider permissions or a planted link are not reused.
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(err(e)),
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(if secret { 0o600 } else { 0o644 });
    }
    let mut file = options.open(path).map_err(err)?;
    file.write_all(contents).map_err(err)?;
    file.sync_all().map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_file_loses_one_trailing_newline_only() {
        let dir = tempfile::tempdir().unwrap();
        for (content, expected) in [
            ("", ""),
            ("\n", ""),
            ("\r\n", ""),
            ("pw", "pw"),
            ("pw\n", "pw"),
            ("pw\r\n", "pw"),
            ("pw\n\n", "pw\n"),
            (" pw \n", " pw "),
        ] {
            let path = dir.path().join("pw");
            std::fs::write(&path, content).unwrap();
            assert_eq!(
                read_password(&path, "password file").unwrap().as_str(),
                expected
            );
        }
        std::fs::write(dir.path().join("bin"), b"\xff\xfe").unwrap();
        let err = read_password(&dir.path().join("bin"), "password file").unwrap_err();
        assert!(err.0.contains("not UTF-8"));
    }

    #[test]
    fn secret_files_are_created_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.pem");
        std::fs::write(&path, "old").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
            write(&path, b"new", true).unwrap();
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        assert!(write(dir.path(), b"x", false).is_err());
    }
}
