//! The `bmcert agent` process of the agent tests (agent.rs, agent_cluster.rs): started
//! isolated from the machine's settings, its ready line and logs read, its `/metrics` and
//! `/healthz` fetched with the real curl, stopped by SIGTERM (or killed when dropped).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::Setup;

/// The agent, started in `setup`'s directory with `args` after `agent`.
pub(crate) struct AgentProcess {
    child: Child,
    lines: mpsc::Receiver<String>,
    /// `host:port` of /metrics and /healthz.
    pub(crate) metrics: String,
    /// `host:port` where it answers HTTP-01 (empty without `--http01-listen`).
    pub(crate) http01: String,
    stderr: PathBuf,
}

impl AgentProcess {
    pub(crate) fn start(setup: &Setup, args: &[&str]) -> Self {
        Self::start_named(setup, &format!("agent-{}", std::process::id()), args)
    }

    /// [`AgentProcess::start`] with its standard error in `NAME.err` (several agents in one
    /// directory).
    pub(crate) fn start_named(setup: &Setup, name: &str, args: &[&str]) -> Self {
        let stderr = setup.path(&format!("{name}.err"));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_bmcert"));
        cmd.arg("agent")
            .args(args)
            .current_dir(setup.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).unwrap());
        for (k, _) in std::env::vars() {
            if k.starts_with("BMCERT_") || k == "RUST_LOG" {
                cmd.env_remove(k);
            }
        }
        cmd.env("BMCERT_CONFIG", setup.path("empty.toml"))
            .env("RUST_LOG", "info");
        let mut child = cmd.spawn().unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut agent = Self {
            child,
            lines,
            metrics: String::new(),
            http01: String::new(),
            stderr,
        };
        let ready = agent.line_containing("bmcert agent: ready", Duration::from_secs(60));
        agent.metrics = ready
            .split("metrics on http://")
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .map(str::to_owned)
            .unwrap_or_default();
        agent.http01 = ready
            .split("HTTP-01 on ")
            .nth(1)
            .and_then(|rest| rest.split(';').next())
            .map(str::to_owned)
            .unwrap_or_default();
        agent
    }

    /// The agent's process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process is still running.
    pub(crate) fn running(&mut self) -> bool {
        self.child.try_wait().ok().flatten().is_none()
    }

    /// `kill -9`, as a crash or a power cut would stop it: nothing is cleaned up.
    pub(crate) fn kill9(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// The next line of standard output containing `text`, within `limit`.
    pub(crate) fn line_containing(&mut self, text: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(text) => return line,
                Ok(_) => {}
                Err(_) => panic!(
                    "the agent did not print `{text}` within {limit:?}; stderr:\n{}",
                    self.stderr_text()
                ),
            }
        }
    }

    pub(crate) fn stderr_text(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// `curl -s http://METRICS/PATH`: the status code and the body.
    pub(crate) fn get(&self, path: &str) -> (u16, String) {
        let out = Command::new("curl")
            .args(["-s", "--max-time", "10", "-w", "\n%{http_code}"])
            .arg(format!("http://{}{path}", self.metrics))
            .output()
            .expect("run curl");
        let text = String::from_utf8(out.stdout).unwrap();
        let (body, code) = text.rsplit_once('\n').unwrap();
        (code.trim().parse().unwrap(), body.to_owned())
    }

    /// Sends SIGTERM and waits (at most 30 s) for the exit status.
    pub(crate) fn terminate(mut self) -> std::process::ExitStatus {
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the agent did not stop within 30 s of SIGTERM; stderr:\n{}",
                self.stderr_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The base64 bodies of the PEM blocks of `text`, whitespace removed.
pub(crate) fn pem_bodies(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        if line.starts_with("-----BEGIN") {
            current = Some(String::new());
        } else if line.starts_with("-----END") {
            out.extend(current.take());
        } else if let Some(c) = current.as_mut() {
            c.push_str(line.trim());
        }
    }
    out
}

pub(crate) fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Polls `check` every 50 ms for at most `limit`; whether it became true.
pub(crate) fn within(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub(crate) fn reloads(log: &Path) -> usize {
    read(log).lines().count()
}

/// The value of the sample `name{labels}` in Prometheus text.
pub(crate) fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let (name, value) = line.rsplit_once(' ')?;
        (name == series).then(|| value.parse().ok())?
    })
}
