//! A real forward proxy on loopback: Debian's `tinyproxy`, started by the test that needs it
//! with a configuration of its own (a free loopback port, its log in the test's directory,
//! optionally `BasicAuth`), and stopped when the guard drops.
//!
//! The binary is `BMCERT_TINYPROXY_BIN`, else `/usr/bin/tinyproxy` (`scripts/test-all`
//! installs the package). When neither exists the test is skipped with a message, and fails
//! under `BMCERT_REQUIRE_PEERS` ([`crate::peers::REQUIRE_PEERS`]).

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)] // test helpers fail loudly

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::peers::{free_port, or_skip, Missing};

/// The variable naming the tinyproxy binary.
pub const TINYPROXY_BIN: &str = "BMCERT_TINYPROXY_BIN";
const DEFAULT_BIN: &str = "/usr/bin/tinyproxy";

/// A running tinyproxy; killed and reaped on drop.
#[derive(Debug)]
pub struct Tinyproxy {
    child: Child,
    /// Where it listens (127.0.0.1).
    pub addr: SocketAddr,
    /// Its log file (`LogLevel Connect`: one `Request ...: CONNECT host:port` line per tunnel).
    pub log: PathBuf,
}

/// The binary, or which variable would name it.
pub fn tinyproxy_bin() -> Result<PathBuf, Missing> {
    let bin = std::env::var_os(TINYPROXY_BIN)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_BIN));
    if bin.is_file() {
        Ok(bin)
    } else {
        Err(Missing {
            variable: TINYPROXY_BIN,
            peer: "tinyproxy (Debian package tinyproxy)",
        })
    }
}

impl Tinyproxy {
    /// Starts tinyproxy in `dir` (its configuration and log go there) on a free loopback
    /// port, requiring `basic_auth` (user, password) when given; waits (bounded, 10 s) until
    /// it accepts connections. `None` after printing why when tinyproxy is not installed.
    pub fn start(dir: &Path, basic_auth: Option<(&str, &str)>) -> Option<Self> {
        let bin = or_skip(tinyproxy_bin())?;
        let port = free_port();
        let log = dir.join("tinyproxy.log");
        let conf = dir.join("tinyproxy.conf");
        let mut text = format!(
            "Port {port}\nListen 127.0.0.1\nTimeout 30\nLogFile \"{}\"\nLogLevel Connect\nMaxClients 20\nAllow 127.0.0.1\n",
            log.display()
        );
        if let Some((user, password)) = basic_auth {
            text.push_str(&format!("BasicAuth {user} {password}\n"));
        }
        std::fs::write(&conf, text).unwrap();
        let child = Command::new(&bin)
            .arg("-d")
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let mut proxy = Self {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if TcpStream::connect_timeout(&proxy.addr, Duration::from_millis(200)).is_ok() {
                return Some(proxy);
            }
            if let Ok(Some(status)) = proxy.child.try_wait() {
                panic!(
                    "tinyproxy exited ({status}) before listening on {}: {}",
                    proxy.addr,
                    proxy.log_text()
                );
            }
            assert!(
                Instant::now() < deadline,
                "tinyproxy does not listen on {} after 10 s",
                proxy.addr
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The log so far (empty when not written yet).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The `CONNECT host:port` requests of the log, in order.
    pub fn connects(&self) -> Vec<String> {
        self.log_text()
            .lines()
            .filter_map(|l| l.split_once("): CONNECT ").map(|(_, rest)| rest))
            .filter_map(|rest| rest.split_whitespace().next())
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for Tinyproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
