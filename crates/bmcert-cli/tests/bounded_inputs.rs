//! Files named on the command line are read with a bound: a device, a FIFO without a writer
//! and an oversized file are refused at once with exit status 2 and a message naming the
//! file, instead of reading until memory runs out or waiting forever (issue 13).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Runs `bmcert check` with `--cert` replaced; kills it if it has not ended after 20 s (a
/// bound for the test, not a timing assertion: the command must not block at all).
fn check_with_cert(dir: &Path, cert: &Path) -> Output {
    let chain = bmcert_test::fixtures::ChainSpec::new(&["mail.example.test"]).build();
    std::fs::write(dir.join("key.pem"), chain.leaf.key_pem.as_bytes()).unwrap();
    std::fs::write(dir.join("ca.pem"), chain.ca_pem()).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_bmcert"))
        .arg("check")
        .arg("--cert")
        .arg(cert)
        .arg("--key")
        .arg(dir.join("key.pem"))
        .arg("--ca")
        .arg(dir.join("ca.pem"))
        .args(["--url", "https://mail.example.test"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(20) {
            child.kill().unwrap();
            panic!(
                "bmcert check --cert {} did not end: it blocked",
                cert.display()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn assert_refused(out: &Output, path: &Path, why: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    assert!(
        stderr.contains(&format!("certificate file `{}`", path.display())) && stderr.contains(why),
        "stderr: {stderr}"
    );
}

#[test]
fn a_device_is_refused_without_being_read() {
    let dir = tempfile::tempdir().unwrap();
    let out = check_with_cert(dir.path(), Path::new("/dev/zero"));
    assert_refused(
        &out,
        Path::new("/dev/zero"),
        "it is a device, not a regular file",
    );
}

#[cfg(unix)]
#[test]
fn a_fifo_without_a_writer_is_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("cert.pem");
    let status = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(status.success());
    let out = check_with_cert(dir.path(), &fifo);
    assert_refused(&out, &fifo, "it is a FIFO (named pipe)");
}

#[test]
fn a_file_over_one_mebibyte_is_refused_from_its_size() {
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("cert.pem");
    // Sparse: 1 GiB on the file system costs nothing, and is not read.
    let file = std::fs::File::create(&big).unwrap();
    file.set_len(1 << 30).unwrap();
    let out = check_with_cert(dir.path(), &big);
    assert_refused(
        &out,
        &big,
        "it is 1073741824 bytes, more than the 1048576 bytes",
    );
}
