//! `bmcert agent` through the binary (issue 14, "How it is checked"): the agent deploys the
//! system certificate into a directory, an install makes the deployed pair the new one and
//! runs the reload command once, `/metrics` (read with the real curl) shows the leaf's
//! notAfter, a disabled domain's files are removed with a reload, a failing reload shows in
//! `/healthz` and the metrics, and SIGTERM stops it with exit status 0.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bmcert_test::fixtures::ChainSpec;
use common::agent::{pem_bodies, read, reloads, sample, within, AgentProcess};
use common::Setup;
use time::OffsetDateTime;

/// Writes a chain for `host` valid until `not_after` as `NAME-{cert,key,ca}.pem`.
fn bundle_files(
    setup: &Setup,
    name: &str,
    host: &str,
    not_after: OffsetDateTime,
) -> (String, String) {
    let chain = ChainSpec::new(&[host])
        .validity(
            OffsetDateTime::now_utc() - time::Duration::days(1),
            not_after,
        )
        .build();
    std::fs::write(
        setup.path(&format!("{name}-cert.pem")),
        &chain.leaf.cert_pem,
    )
    .unwrap();
    std::fs::write(setup.path(&format!("{name}-key.pem")), &chain.leaf.key_pem).unwrap();
    std::fs::write(setup.path(&format!("{name}-ca.pem")), chain.ca_pem()).unwrap();
    (chain.leaf.cert_pem, chain.leaf.key_pem)
}

#[test]
fn agent_deploys_reloads_once_serves_metrics_removes_disabled_and_stops_on_sigterm() {
    let setup = Setup::new();
    let store = "store";
    assert_eq!(setup.install(store, "system", "system").code, 0);
    assert_eq!(setup.install(store, "domain:acme.test", "acme").code, 0);
    let (deploy, domain_deploy, log) = (
        setup.path("deploy/system"),
        setup.path("deploy/acme"),
        setup.path("reloads.log"),
    );
    let reload = format!("echo reloaded >> '{}'", log.display());
    let agent = AgentProcess::start(
        &setup,
        &[
            "--store",
            store,
            "--topology",
            "topology.toml",
            "--no-renew",
            "--deploy",
            &format!("system={}", deploy.display()),
            "--deploy",
            &format!("domain:acme.test={}", domain_deploy.display()),
            "--reload",
            &reload,
            "--metrics-listen",
            "127.0.0.1:0",
        ],
    );
    assert!(
        !agent.metrics.is_empty(),
        "the ready line names the metrics address"
    );

    // Start-up: both targets deployed, one reload for the batch.
    let first = pem_bodies(&read(&setup.path("system-cert.pem")));
    assert!(
        within(Duration::from_secs(10), || {
            pem_bodies(&read(&deploy.join("fullchain.pem"))).first() == first.first()
                && reloads(&log) == 1
        }),
        "initial deploy; stderr:\n{}",
        agent.stderr_text()
    );
    assert!(domain_deploy.join("privkey.pem").exists());
    let mode = {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::metadata(deploy.join("privkey.pem"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode, 0o600, "the key is readable by its owner only");
    let (code, body) = agent.get("/healthz");
    assert_eq!((code, body.as_str()), (200, "ok\n"));

    // A new system certificate: the deployed pair becomes it, the reload runs once.
    let not_after = OffsetDateTime::from_unix_timestamp(
        (OffsetDateTime::now_utc() + time::Duration::days(47)).unix_timestamp(),
    )
    .unwrap();
    let (cert, key) = bundle_files(&setup, "new", "mail.example.test", not_after);
    assert_eq!(setup.install(store, "system", "new").code, 0);
    let (leaf, key) = (pem_bodies(&cert), pem_bodies(&key));
    assert!(
        within(Duration::from_secs(10), || {
            pem_bodies(&read(&deploy.join("fullchain.pem"))).first() == leaf.first()
                && pem_bodies(&read(&deploy.join("privkey.pem"))) == key
                && reloads(&log) == 2
        }),
        "the new pair deployed and one reload; reloads {}; stderr:\n{}",
        reloads(&log),
        agent.stderr_text()
    );
    assert_eq!(pem_bodies(&read(&deploy.join("cert.pem"))), leaf[..1]);
    // The reload ran once for the install, not once per file or per event.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(reloads(&log), 2, "one reload per batch");

    let value = within(Duration::from_secs(10), || {
        sample(
            &agent.get("/metrics").1,
            "bmcert_certificate_not_after_seconds{target=\"system\"}",
        ) == Some(not_after.unix_timestamp() as f64)
    });
    let (code, metrics) = agent.get("/metrics");
    assert!(value, "notAfter in the metrics:\n{metrics}");
    assert_eq!(code, 200);
    assert_eq!(sample(&metrics, "bmcert_store_up"), Some(1.0), "{metrics}");
    assert!(
        metrics.contains("# TYPE bmcert_renewal_failures counter"),
        "{metrics}"
    );
    assert!(
        metrics.contains("# TYPE bmcert_deploy_failures counter"),
        "{metrics}"
    );
    assert!(
        metrics.contains("# TYPE bmcert_certificate_renewal_due_seconds gauge"),
        "{metrics}"
    );

    // Disabling the domain removes its files and reloads.
    let run = setup.run(&[
        "disable",
        "--store",
        store,
        "--topology",
        "topology.toml",
        "--target",
        "domain:acme.test",
    ]);
    assert_eq!(run.code, 0, "{}", run.context());
    assert!(
        within(Duration::from_secs(10), || {
            !domain_deploy.join("fullchain.pem").exists()
                && !domain_deploy.join("live").exists()
                && reloads(&log) == 3
        }),
        "the disabled domain's files removed and one reload; stderr:\n{}",
        agent.stderr_text()
    );
    assert!(
        deploy.join("fullchain.pem").exists(),
        "the system files stay"
    );
    assert!(within(Duration::from_secs(10), || sample(
        &agent.get("/metrics").1,
        "bmcert_certificate_not_after_seconds{target=\"domain:acme.test\"}"
    )
    .is_none()));

    let status = agent.terminate();
    assert_eq!(status.code(), Some(0), "clean exit on SIGTERM");
    let stderr = read(&setup.path(&format!("agent-{}.err", std::process::id())));
    assert!(stderr.contains("agent: stopped"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn a_failing_reload_is_retried_and_shown_in_health_and_metrics() {
    let setup = Setup::new();
    let store = "store";
    assert_eq!(setup.install(store, "system", "system").code, 0);
    let deploy = setup.path("deploy/system");
    let log = setup.path("attempts.log");
    // Fails until the file `fixed` exists.
    let reload = format!(
        "echo try >> '{log}'; test -e '{fixed}' || {{ echo 'nginx: [emerg] test failure' >&2; exit 3; }}",
        log = log.display(),
        fixed = setup.path("fixed").display()
    );
    let agent = AgentProcess::start(
        &setup,
        &[
            "--store",
            store,
            "--topology",
            "topology.toml",
            "--no-renew",
            "--deploy",
            &format!("system={}", deploy.display()),
            "--reload",
            &reload,
            "--metrics-listen",
            "127.0.0.1:0",
        ],
    );
    // (Before the first sync it is 503 too, for another reason: wait for this one.)
    assert!(
        within(Duration::from_secs(10), || {
            let (code, body) = agent.get("/healthz");
            code == 503 && body.contains("reload: failing")
        }),
        "a failing reload makes /healthz 503; stderr:\n{}",
        agent.stderr_text()
    );
    let metrics = agent.get("/metrics").1;
    assert_eq!(
        sample(&metrics, "bmcert_reload_failing"),
        Some(1.0),
        "{metrics}"
    );
    assert!(
        sample(&metrics, "bmcert_reloads_total{result=\"failed\"}").unwrap_or(0.0) >= 1.0,
        "{metrics}"
    );
    assert!(
        agent.stderr_text().contains("test failure"),
        "the command's output is logged:\n{}",
        agent.stderr_text()
    );
    // Fixed: the retry (after 5 s of back-off) succeeds and health comes back.
    std::fs::write(setup.path("fixed"), "").unwrap();
    assert!(
        within(Duration::from_secs(20), || agent.get("/healthz").0 == 200),
        "the retried reload succeeds; attempts {}; stderr:\n{}",
        read(&log).lines().count(),
        agent.stderr_text()
    );
    let metrics = agent.get("/metrics").1;
    assert_eq!(
        sample(&metrics, "bmcert_reload_failing"),
        Some(0.0),
        "{metrics}"
    );
    assert_eq!(
        sample(&metrics, "bmcert_reloads_total{result=\"ok\"}"),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(agent.terminate().code(), Some(0));
}

// --- real servers reading the deployed files: postfix and nginx ----------------------------

/// The deploy root the shipped snippets name; tests replace it with their own directory.
const SHIPPED_DEPLOY_ROOT: &str = "/var/lib/bmcert/deploy";
/// The agent's HTTP-01 address the shipped nginx snippet names.
const SHIPPED_HTTP01: &str = "127.0.0.1:8402";

/// A shipped file of `dist/`, with the deploy root and the agent's address replaced.
fn shipped(file: &str, deploy_root: &Path, http01: &str) -> String {
    let text = std::fs::read_to_string(common::repo().join("dist").join(file))
        .unwrap_or_else(|e| panic!("dist/{file}: {e}"));
    assert!(
        text.contains(SHIPPED_DEPLOY_ROOT) || text.contains(SHIPPED_HTTP01),
        "dist/{file} names the documented paths"
    );
    text.replace(SHIPPED_DEPLOY_ROOT, deploy_root.to_str().unwrap())
        .replace(SHIPPED_HTTP01, http01)
}

/// The server binary `name` (from Debian `package`), or `None` after printing why the test is
/// skipped; under the test command (`BMCERT_REQUIRE_PEERS`) a missing server fails the test.
fn server(name: &str, package: &str) -> Option<PathBuf> {
    let found = ["/usr/sbin", "/usr/bin", "/sbin", "/bin"]
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.exists());
    if found.is_none() {
        let why =
            format!("{name} is not installed (Debian {package}); scripts/test-all installs it");
        if std::env::var_os(bmcert_test::peers::REQUIRE_PEERS).is_some_and(|v| !v.is_empty()) {
            panic!("{} is set and {why}", bmcert_test::peers::REQUIRE_PEERS);
        }
        eprintln!("SKIPPED: {why}");
    }
    found
}

/// The SHA-256 fingerprint `openssl x509 -fingerprint` prints for the certificate the server
/// at `port` presents (`starttls`: `-starttls smtp`), or `None` when none was read.
fn served_fingerprint(port: u16, server_name: &str, starttls: bool) -> Option<String> {
    let mut cmd = Command::new("openssl");
    cmd.args(["s_client", "-connect", &format!("127.0.0.1:{port}")])
        .args(["-servername", server_name]);
    if starttls {
        cmd.args(["-starttls", "smtp"]);
    }
    let out = cmd
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .expect("run openssl s_client");
    fingerprint_of(&out.stdout)
}

fn fingerprint_of(pem: &[u8]) -> Option<String> {
    let mut child = Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run openssl x509");
    use std::io::Write as _;
    let _ = child.stdin.take().unwrap().write_all(pem);
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    out.status
        .success()
        .then(|| {
            text.trim()
                .rsplit('=')
                .next()
                .unwrap_or_default()
                .to_owned()
        })
        .filter(|f| !f.is_empty())
}

fn file_fingerprint(path: &Path) -> Option<String> {
    fingerprint_of(&std::fs::read(path).ok()?)
}

/// Waits (at most 10 s) until something accepts connections on `port`.
fn wait_port(port: u16) -> bool {
    within(Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    })
}

/// A postfix of its own (config, queue and data directories under a temporary directory),
/// stopped when dropped.
struct Postfix {
    config: PathBuf,
    log: PathBuf,
}

impl Postfix {
    fn start(dir: &Path, port: u16, deploy_root: &Path) -> Self {
        let (config, queue, data) = (dir.join("conf"), dir.join("queue"), dir.join("data"));
        for d in [&config, &queue, &data] {
            std::fs::create_dir_all(d).unwrap();
        }
        let chown = Command::new("chown")
            .args(["postfix", data.to_str().unwrap()])
            .status()
            .unwrap();
        assert!(chown.success(), "chown postfix {}", data.display());
        // Debian's master.cf with smtpd on the test's loopback port instead of :25.
        let master = std::fs::read_to_string("/etc/postfix/master.cf")
            .expect("Debian's /etc/postfix/master.cf");
        let master: String = master
            .lines()
            .map(|l| match l.starts_with("smtp ") && l.contains(" inet ") {
                true => format!("127.0.0.1:{port} inet n - n - - smtpd"),
                false => l.to_owned(),
            })
            .collect::<Vec<_>>()
            .join("\n");
        std::fs::write(config.join("master.cf"), master + "\n").unwrap();
        let log = dir.join("maillog");
        let main = format!(
            "compatibility_level = 3.6\nqueue_directory = {queue}\ndata_directory = {data}\n\
             mail_owner = postfix\ninet_interfaces = 127.0.0.1\ninet_protocols = ipv4\n\
             myhostname = mail.example.test\nmydestination =\nsyslog_name = bmcert-test-postfix\n\
             maillog_file_prefixes = {dir}\nmaillog_file = {log}\n\n{lines}",
            queue = queue.display(),
            data = data.display(),
            dir = dir.display(),
            log = log.display(),
            lines = shipped("postfix/main.cf.bmcert", deploy_root, SHIPPED_HTTP01),
        );
        std::fs::write(config.join("main.cf"), main).unwrap();
        let postfix = Self { config, log };
        let out = postfix.command("start");
        assert!(
            out.status.success(),
            "postfix start: {}",
            postfix.log_text()
        );
        postfix
    }

    fn command(&self, what: &str) -> std::process::Output {
        Command::new("postfix")
            .arg("-c")
            .arg(&self.config)
            .arg(what)
            .output()
            .expect("run postfix")
    }

    /// `postfix -c CONFIG reload`, for the agent's --reload.
    fn reload_command(&self) -> String {
        format!("postfix -c '{}' reload", self.config.display())
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        let _ = self.command("stop");
    }
}

#[test]
fn postfix_presents_the_deployed_system_certificate_and_the_new_one_after_an_install() {
    if server("postfix", "postfix").is_none() {
        return;
    }
    let setup = Setup::new();
    let store = "store";
    assert_eq!(setup.install(store, "system", "system").code, 0);
    let root = setup.path("deploy");
    let deploy = root.join("system");
    let port = bmcert_test::peers::free_port();
    let postfix_dir = setup.path("postfix");
    std::fs::create_dir_all(&postfix_dir).unwrap();
    // The files exist before postfix starts: the agent deploys first.
    let agent_args = |reload: &str| {
        vec![
            "--store".to_owned(),
            store.to_owned(),
            "--topology".into(),
            "topology.toml".into(),
            "--no-renew".into(),
            "--deploy".into(),
            format!("system={}", deploy.display()),
            "--reload".into(),
            reload.to_owned(),
            "--metrics-listen".into(),
            "127.0.0.1:0".into(),
        ]
    };
    let reload_log = setup.path("reloads.log");
    let probe = format!("echo pending >> '{}'", reload_log.display());
    // A first agent only deploys (postfix is not running yet), then stops.
    let first = AgentProcess::start(
        &setup,
        &agent_args(&probe)
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    assert!(within(Duration::from_secs(10), || deploy
        .join("privkey.pem")
        .exists()));
    assert_eq!(first.terminate().code(), Some(0));

    let postfix = Postfix::start(&postfix_dir, port, &root);
    assert!(
        wait_port(port),
        "postfix listens on {port}: {}",
        postfix.log_text()
    );
    let system = file_fingerprint(&setup.path("system-cert.pem")).unwrap();
    assert_eq!(
        served_fingerprint(port, "mail.example.test", true).as_deref(),
        Some(system.as_str()),
        "STARTTLS presents the deployed system certificate; log:\n{}",
        postfix.log_text()
    );

    let reload = postfix.reload_command();
    let agent = AgentProcess::start(
        &setup,
        &agent_args(&reload)
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    let not_after = OffsetDateTime::now_utc() + time::Duration::days(60);
    bundle_files(&setup, "new", "mail.example.test", not_after);
    assert_eq!(setup.install(store, "system", "new").code, 0);
    let new = file_fingerprint(&setup.path("new-cert.pem")).unwrap();
    assert_ne!(new, system);
    assert!(
        within(Duration::from_secs(20), || {
            served_fingerprint(port, "mail.example.test", true).as_deref() == Some(new.as_str())
        }),
        "after the install and the agent's reload, STARTTLS presents the new certificate; agent:\n{}\npostfix:\n{}",
        agent.stderr_text(),
        postfix.log_text()
    );
    assert!(
        postfix.log_text().contains("reload"),
        "{}",
        postfix.log_text()
    );
    assert_eq!(agent.terminate().code(), Some(0));
}

/// An nginx of its own (`daemon off`, a child of the test), stopped when dropped.
struct Nginx {
    child: Child,
    config: PathBuf,
    log: PathBuf,
}

impl Nginx {
    fn start(
        dir: &Path,
        http_port: u16,
        https_port: u16,
        deploy_root: &Path,
        http01: &str,
    ) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let snippets = dir.join("snippets");
        std::fs::create_dir_all(&snippets).unwrap();
        for file in ["bmcert-acme-challenge.conf", "bmcert-ssl.conf"] {
            std::fs::write(
                snippets.join(file),
                shipped(&format!("nginx/{file}"), deploy_root, http01),
            )
            .unwrap();
        }
        let log = dir.join("error.log");
        let d = dir.display();
        let config = dir.join("nginx.conf");
        std::fs::write(
            &config,
            format!(
                "daemon off;\nmaster_process on;\nworker_processes 1;\npid {d}/nginx.pid;\n\
                 error_log {log} info;\nevents {{ worker_connections 64; }}\nhttp {{\n\
                 access_log off;\nclient_body_temp_path {d}/body;\nproxy_temp_path {d}/proxy;\n\
                 fastcgi_temp_path {d}/fastcgi;\nuwsgi_temp_path {d}/uwsgi;\nscgi_temp_path {d}/scgi;\n\
                 server {{\n listen 127.0.0.1:{http_port};\n include {d}/snippets/bmcert-acme-challenge.conf;\n location / {{ return 404; }}\n}}\n\
                 server {{\n listen 127.0.0.1:{https_port} ssl;\n include {d}/snippets/bmcert-ssl.conf;\n location / {{ return 200 \"bmcert\\n\"; }}\n}}\n}}\n",
                log = log.display(),
            ),
        )
        .unwrap();
        let child = Command::new("nginx")
            .arg("-c")
            .arg(&config)
            .arg("-e")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("run nginx");
        Self { child, config, log }
    }

    /// `nginx -c CONFIG -s reload`, for the agent's --reload.
    fn reload_command(&self) -> String {
        format!(
            "nginx -c '{}' -e '{}' -s reload",
            self.config.display(),
            self.log.display()
        )
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGQUIT: graceful stop; then make sure.
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGQUIT);
        }
        let stopped = within(Duration::from_secs(10), || {
            self.child.try_wait().ok().flatten().is_some()
        });
        if !stopped {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// nginx serves HTTPS from the deployed files and proxies the challenge path to the agent:
/// pebble validates HTTP-01 through nginx (pebble's validator connects to nginx on the
/// HTTP-01 port), and after `bmcert acme issue`, then `bmcert renew`, `openssl s_client`
/// sees the new certificate, nginx touched only through the agent's --reload. Run it under
/// `flock /tmp/bmcert-pebble.lock` when others share the pebble.
#[test]
fn nginx_validates_through_the_agent_and_serves_the_issued_then_renewed_certificate() {
    let Some(pebble) = bmcert_test::peers::Pebble::from_env() else {
        return;
    };
    if server("nginx", "nginx-light").is_none() {
        return;
    }
    let setup = Setup::new();
    let host = bmcert_test::peers::unique_name("agent-nginx");
    std::fs::write(
        setup.path("topo.toml"),
        format!("default_domain = \"example.test\"\n[system]\nurl = \"https://{host}\"\n"),
    )
    .unwrap();
    let store = "store";
    let init = setup.run(&["init", "--store", store, "--topology", "topo.toml"]);
    assert_eq!(init.code, 0, "{}", init.context());
    let root_ca = pebble.root_with_curl(&setup.path("pebble-root.pem"));
    let (directory, directory_ca) = (
        pebble.directory.clone(),
        pebble.ca_path.display().to_string(),
    );
    let ca_args = [
        "--directory",
        directory.as_str(),
        "--directory-ca",
        directory_ca.as_str(),
    ];
    let deploy_root = setup.path("deploy");
    let deploy = deploy_root.join("system");
    let http01 = format!("127.0.0.1:{}", bmcert_test::peers::free_port());
    let https = bmcert_test::peers::free_port();
    let nginx_dir = setup.path("nginx");
    let nginx_config = nginx_dir.join("nginx.conf");
    let reload = format!(
        "nginx -c '{}' -e '{}' -s reload",
        nginx_config.display(),
        nginx_dir.join("error.log").display()
    );
    let mut args: Vec<String> = [
        "--store",
        store,
        "--topology",
        "topo.toml",
        "--deploy",
        &format!("system={}", deploy.display()),
        "--reload",
        &reload,
        "--http01-listen",
        &http01,
        "--metrics-listen",
        "127.0.0.1:0",
        "--chain-ca",
        root_ca.to_str().unwrap(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(ca_args.iter().map(|s| s.to_string()));
    let agent = AgentProcess::start(&setup, &args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(
        within(Duration::from_secs(10), || deploy
            .join("privkey.pem")
            .exists()),
        "the bootstrap certificate deployed; {}",
        agent.stderr_text()
    );
    let nginx = Nginx::start(&nginx_dir, pebble.http01, https, &deploy_root, &http01);
    assert_eq!(nginx.reload_command(), reload);
    assert!(
        wait_port(https),
        "nginx listens on {https}: {}",
        nginx.log_text()
    );
    let bootstrap = file_fingerprint(&deploy.join("cert.pem")).unwrap();
    assert_eq!(
        served_fingerprint(https, &host, false).as_deref(),
        Some(bootstrap.as_str()),
        "nginx serves the deployed bootstrap certificate; {}",
        nginx.log_text()
    );

    // Issue through pebble: no --http01-listen, the agent answers through nginx.
    let accept = setup.run(&[&["acme", "accept", "--store", store][..], &ca_args].concat());
    assert_eq!(accept.code, 0, "{}", accept.context());
    let issue_args = |command: &[&'static str]| -> Vec<String> {
        let mut a: Vec<String> = command.iter().map(|s| s.to_string()).collect();
        a.extend(
            [
                "--store",
                store,
                "--topology",
                "topo.toml",
                "--target",
                "system",
                "--chain-ca",
                root_ca.to_str().unwrap(),
            ]
            .iter()
            .map(|s| s.to_string()),
        );
        a.extend(ca_args.iter().map(|s| s.to_string()));
        a
    };
    let run = |a: Vec<String>| setup.run(&a.iter().map(String::as_str).collect::<Vec<_>>());
    let issued = run(issue_args(&["acme", "issue"]));
    assert_eq!(
        issued.code,
        0,
        "issued through nginx -> agent: {}\nnginx:\n{}\nagent:\n{}",
        issued.context(),
        nginx.log_text(),
        agent.stderr_text()
    );
    let served_is_deployed_and_not = |old: &str| {
        let deployed = file_fingerprint(&deploy.join("cert.pem"));
        let served = served_fingerprint(https, &host, false);
        deployed.is_some() && served == deployed && served.as_deref() != Some(old)
    };
    assert!(
        within(Duration::from_secs(20), || served_is_deployed_and_not(
            &bootstrap
        )),
        "nginx serves the issued certificate after the agent's reload; agent:\n{}\nnginx:\n{}",
        agent.stderr_text(),
        nginx.log_text()
    );
    let issued_fp = served_fingerprint(https, &host, false).unwrap();

    // A renewal (by hand, through the same path): nginx serves the renewed one.
    let renewed = run(issue_args(&["renew"]));
    assert_eq!(renewed.code, 0, "{}", renewed.context());
    assert!(
        within(Duration::from_secs(20), || served_is_deployed_and_not(
            &issued_fp
        )),
        "nginx serves the renewed certificate; agent:\n{}\nnginx:\n{}",
        agent.stderr_text(),
        nginx.log_text()
    );
    assert_eq!(agent.get("/healthz").0, 200, "{}", agent.get("/healthz").1);
    assert_eq!(agent.terminate().code(), Some(0));
}

/// dist/bmcert-agent.service as shipped: hardened, its options the agent's, and accepted by
/// `systemd-analyze verify` (with ExecStart pointing at the binary under test).
#[test]
fn the_shipped_systemd_unit_is_hardened_and_verifies() {
    let unit = read(&common::repo().join("dist/bmcert-agent.service"));
    for line in [
        "Type=notify",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ReadWritePaths=/var/lib/bmcert",
        "ExecReload=/bin/kill -HUP $MAINPID",
    ] {
        assert!(unit.lines().any(|l| l == line), "`{line}` in the unit");
    }
    let bounding = unit
        .lines()
        .find(|l| l.starts_with("CapabilityBoundingSet="))
        .expect("a capability bounding set");
    assert!(
        !bounding.contains("CAP_NET_BIND_SERVICE") && !bounding.contains("CAP_SYS_ADMIN"),
        "it binds no port below 1024: {bounding}"
    );
    assert!(unit.lines().any(|l| l == "AmbientCapabilities="));
    // Every option of ExecStart is one of `bmcert agent`'s.
    let help = Command::new(env!("CARGO_BIN_EXE_bmcert"))
        .args(["agent", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8(help.stdout).unwrap();
    // ExecStart= and its continuation lines (ending in `\`).
    let mut exec = String::new();
    for line in unit.split("ExecStart=").nth(1).unwrap().lines() {
        exec.push_str(line.trim_end_matches('\\'));
        exec.push(' ');
        if !line.ends_with('\\') {
            break;
        }
    }
    let options: Vec<&str> = exec
        .split_whitespace()
        .filter(|w| w.starts_with("--"))
        .collect();
    assert!(options.len() >= 4, "{exec}");
    for option in options {
        assert!(
            help.contains(option),
            "{option} is an option of bmcert agent:\n{help}"
        );
    }
    let Some(analyze) = server("systemd-analyze", "systemd") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("bmcert-agent.service");
    std::fs::write(
        &copy,
        unit.replace("/usr/bin/bmcert", env!("CARGO_BIN_EXE_bmcert")),
    )
    .unwrap();
    let out = Command::new(analyze)
        .arg("verify")
        .arg(&copy)
        .output()
        .unwrap();
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "systemd-analyze verify: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
