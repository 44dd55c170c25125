//! The HTTP-01 listener degrades gracefully when it runs out of file descriptors (issue 13):
//! run as its own process with `ulimit -n 128` and flooded with 200 idle connections, it
//! does not spin on `accept` errors (its CPU time over two seconds is measured from
//! /proc/PID/stat), and it answers the token once the idle connections are gone.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The listener process; killed and reaped when dropped.
struct Listener(Child);

impl Drop for Listener {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// utime + stime of a process, in clock ticks (fields 14 and 15 of /proc/PID/stat).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // The command name (field 2) is in parentheses and may hold spaces: split after it.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    // rest starts at field 3 (state): utime is field 14, stime field 15.
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

fn clock_ticks_per_second() -> u64 {
    let out = Command::new("getconf").arg("CLK_TCK").output().unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

fn get(addr: SocketAddr, path: &str) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: mail.example.test\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
}

#[cfg(target_os = "linux")]
#[test]
fn out_of_descriptors_it_backs_off_instead_of_spinning_and_answers_afterwards() {
    let bin = bmcert_test::bins::example_binary("bmcert-acme", "http01_listener", &[]);
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(r#"ulimit -n 128 && exec "$0" "$@""#)
        .arg(&bin)
        .args(["tok_en-1", "tok_en-1.thumbprint"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let listener = Listener(child);
    let addr: SocketAddr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .parse()
        .unwrap();
    let pid = listener.0.id();

    // 200 idle connections: more than the 128 descriptors the listener may open.
    let idle: Vec<TcpStream> = (0..200)
        .map(|_| TcpStream::connect(addr).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(500));

    let hz = clock_ticks_per_second();
    let (t0, c0) = (Instant::now(), cpu_ticks(pid));
    std::thread::sleep(Duration::from_secs(2));
    let (elapsed, used) = (t0.elapsed(), cpu_ticks(pid) - c0);
    let share = used as f64 / hz as f64 / elapsed.as_secs_f64();
    eprintln!(
        "listener CPU with 200 idle connections and ulimit -n 128: {used} ticks in {:.2} s = {:.1} %",
        elapsed.as_secs_f64(),
        share * 100.0
    );
    // A loop that retries accept at once uses a whole core (~100 %); backing off uses ~0.
    assert!(
        share < 0.05,
        "the listener used {:.1} % of a CPU while out of descriptors",
        share * 100.0
    );

    // The idle connections go away; the token is answered once descriptors are free again.
    drop(idle);
    let answer = get(addr, "/.well-known/acme-challenge/tok_en-1");
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(answer.ends_with("\r\n\r\ntok_en-1.thumbprint"), "{answer}");
    let other = get(addr, "/.well-known/acme-challenge/unknown");
    assert!(other.starts_with("HTTP/1.1 404 Not Found\r\n"), "{other}");
}
