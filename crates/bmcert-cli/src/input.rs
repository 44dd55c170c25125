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

/// The most bytes read from a certificate, key, PKCS#12, password, etcd or configuration
/// file: the library's limit for such files ([`bmcert_bundle::limits::FILE`], 1 MiB), so
/// that a file the CLI reads is never refused again by the parser.
pub(crate) const FILE_LIMIT: u64 = bmcert_bundle::limits::FILE as u64;

/// The most bytes read from a CA file (`--ca`, `--chain-ca`, `--directory-ca`): the
/// library's CA file limit ([`bmcert_bundle::limits::CERTIFICATE_FILE`], 16 MiB).
pub(crate) const CA_FILE_LIMIT: u64 = bmcert_bundle::limits::CERTIFICATE_FILE as u64;

/// The most bytes read from the topology file: the library's
/// [`bmcert_topology::Topology::MAX_BYTES`] (4 MiB).
pub(crate) const TOPOLOGY_LIMIT: u64 = bmcert_topology::Topology::MAX_BYTES as u64;

/// Reads a whole input file of at most [`FILE_LIMIT`] bytes; `what` names it in messages
/// ("certificate file").
pub(crate) fn read(path: &Path, what: &str) -> Result<Vec<u8>, UsageError> {
    read_up_to(path, what, FILE_LIMIT)
}

/// Reads a whole input file of at most `limit` bytes.
///
/// Only a regular file (or `/dev/null`, read as empty) is read: a FIFO, a device
/// (`/dev/zero`), a socket or a directory is
/// refused at once, without a byte read and without waiting for a writer (the file is opened
/// non-blocking and checked through the open handle, so a path swapped in between cannot make
/// the command hang). A file over the limit is refused from its size, and a file that grows
/// while it is read stops at the limit.
pub(crate) fn read_up_to(path: &Path, what: &str, limit: u64) -> Result<Vec<u8>, UsageError> {
    use std::io::Read as _;
    let cannot = |why: String| {
        UsageError(format!(
            "cannot read the {what} `{}`: {why}",
            path.display()
        ))
    };
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        // A FIFO without a writer would block in open(2) itself.
        options.custom_flags(libc::O_NONBLOCK);
    }
    let mut file = options.open(path).map_err(|e| cannot(describe(&e)))?;
    let meta = file.metadata().map_err(|e| cannot(describe(&e)))?;
    if path == Path::new("/dev/null") {
        // The usual way to say "no file" (`BMCERT_CONFIG=/dev/null`): empty, ends at once.
        return Ok(Vec::new());
    }
    if !meta.is_file() {
        return Err(cannot(format!(
            "it is {}, not a regular file; give the path of the file itself",
            kind_of(&meta)
        )));
    }
    if meta.len() > limit {
        return Err(cannot(format!(
            "it is {} bytes, more than the {} bytes a {what} may have; check that the path \
             names the right file",
            meta.len(),
            limit
        )));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.by_ref()
        .take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| cannot(describe(&e)))?;
    if bytes.len() as u64 > limit {
        return Err(cannot(format!(
            "it grew past the {limit} bytes a {what} may have while it was read"
        )));
    }
    Ok(bytes)
}

/// What a non-regular file is, for messages.
fn kind_of(meta: &std::fs::Metadata) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt as _;
        let t = meta.file_type();
        if t.is_fifo() {
            return "a FIFO (named pipe)";
        }
        if t.is_char_device() || t.is_block_device() {
            return "a device";
        }
        if t.is_socket() {
            return "a socket";
        }
    }
    if meta.is_dir() {
        "a directory"
    } else {
        "not a regular file"
    }
}

/// Reads and parses the topology file (`--topology`).
pub(crate) fn read_topology(path: &Path) -> Result<bmcert::topology::Topology, UsageError> {
    let text =
        String::from_utf8(read_up_to(path, "topology file", TOPOLOGY_LIMIT)?).map_err(|_| {
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
    let bytes = read_up_to(path, what, CA_FILE_LIMIT)?;
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
    fn only_regular_files_within_the_limit_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let at_limit = dir.path().join("at-limit");
        std::fs::write(&at_limit, vec![b'a'; 64]).unwrap();
        assert_eq!(
            read_up_to(&at_limit, "certificate file", 64).unwrap().len(),
            64
        );
        let err = read_up_to(&at_limit, "certificate file", 63).unwrap_err().0;
        assert!(err.contains("64 bytes, more than the 63 bytes"), "{err}");

        let err = read(Path::new("/dev/zero"), "certificate file")
            .unwrap_err()
            .0;
        assert!(err.contains("`/dev/zero`: it is a device"), "{err}");
        let err = read(dir.path(), "key file").unwrap_err().0;
        assert!(err.contains("it is a directory"), "{err}");

        #[cfg(unix)]
        {
            // A FIFO nobody writes to: refused at once instead of waiting for a writer.
            let fifo = dir.path().join("fifo");
            let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
            // SAFETY: a valid NUL-terminated path; mkfifo only creates the node.
            assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
            let err = read(&fifo, "CA file").unwrap_err().0;
            assert!(
                err.contains("it is a FIFO (named pipe), not a regular file"),
                "{err}"
            );
        }
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
