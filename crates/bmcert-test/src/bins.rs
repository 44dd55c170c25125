//! Example programs that tests run as separate processes.

// Test helpers fail loudly: a program that cannot be built is a broken test set-up.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

/// `target/<profile>/examples/<example>` of `package`, (re)built now with the cargo and the
/// profile of the running test, so that a binary left by an older build is never run (a
/// no-op when the test build just made it). `features` are passed as `--features`. The
/// build is bounded (10 minutes) so that a lock held elsewhere cannot hang the test.
///
/// Call it from an integration test only: the profile is read from the test's own path
/// (`target/<profile>/deps/<test>-<hash>`).
pub fn example_binary(package: &str, example: &str, features: &[&str]) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(|deps| deps.parent()).unwrap();
    let profile = profile_dir.file_name().unwrap().to_str().unwrap();
    let profile = if profile == "debug" { "dev" } else { profile };
    let mut command = Command::new(env!("CARGO"));
    command.args([
        "build",
        "--profile",
        profile,
        "-p",
        package,
        "--example",
        example,
    ]);
    if !features.is_empty() {
        command.args(["--features", &features.join(",")]);
    }
    let mut child = command.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(600);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("building the {example} example of {package} took over 10 minutes");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        status.success(),
        "cannot build the {example} example of {package}"
    );
    let bin = profile_dir
        .join("examples")
        .join(format!("{example}{}", std::env::consts::EXE_SUFFIX));
    assert!(bin.exists(), "{} is missing", bin.display());
    bin
}
