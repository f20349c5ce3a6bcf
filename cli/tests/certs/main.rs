//! `fullslack certs` against a real ACME CA: pebble (with pebble-challtestsrv answering every
//! name with 127.0.0.1) validating HTTP-01 through a real Nginx on loopback that proxies a
//! real chat server. Issue, verify the served chain against pebble's root, `fullslack health`,
//! status, a refused second issue, a renewal made due by the stack's configuration, and a
//! challenge the CA cannot reach, which fails with the reason and leaves the old certificate
//! serving. [`operate`]: `fullslack operate` renewing a due certificate.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use fullslack::nginx::{render_main, render_site, SiteParams};
use fullslack_test_support::{
    certs::make_certs,
    chat_binary::start_chat_server,
    free_port, fullslack,
    hosts::resolving_to_loopback,
    paths::{program, short_tempdir, tempdir},
    pebble::Pebble,
    wait_for_port, ProcessGuard, Sshd,
};
use serde_json::Value;

mod operate;

const DOMAIN: &str = "chat.example.test";

/// A host on loopback: Nginx with its own prefix, certificate directory and ACME webroot,
/// in front of a chat server.
struct Host {
    dir: tempfile::TempDir,
    https_port: u16,
    _nginx: ProcessGuard,
    _chat: fullslack_test_support::chat_binary::ChatServer,
}

impl Host {
    fn cert_dir(&self) -> PathBuf {
        self.dir.path().join("certs")
    }

    fn acme_root(&self) -> PathBuf {
        self.dir.path().join("acme")
    }

    fn conf(&self) -> PathBuf {
        self.dir.path().join("nginx.conf")
    }

    fn prefix(&self) -> String {
        format!("{}/", self.dir.path().display())
    }
}

/// Starts the chat server and Nginx serving the rendered TLS site with a placeholder
/// certificate from a throwaway CA (what a host has before its first ACME certificate).
fn start_host(http_port: u16) -> Host {
    let chat = start_chat_server();
    let dir = tempdir();
    let certs = dir.path().join("certs");
    std::fs::create_dir_all(&certs).expect("certs dir");
    make_certs(&certs, &[DOMAIN]);
    let stack = fullslack::stack::parse(&stack_toml(
        "https://unused.test/dir",
        Path::new("/x"),
        None,
        None,
    ))
    .expect("stack");
    let mut p = SiteParams::from_stack(&stack).expect("site params");
    p.cert_dir = certs.display().to_string();
    p.acme_root = dir.path().join("acme").display().to_string();
    p.http_port = http_port;
    p.https_port = free_port();
    p.listen_v4 = Some("127.0.0.1".into());
    p.listen_v6 = None;
    p.blue = vec![format!("127.0.0.1:{}", chat.port)];
    p.green = vec![format!("127.0.0.1:{}", free_port())];
    let site = dir.path().join("site.conf");
    std::fs::write(&site, render_site(&p).expect("render")).expect("write site");
    let main = render_main(
        &dir.path().display().to_string(),
        &site.display().to_string(),
        false,
    )
    .expect("render main");
    std::fs::write(dir.path().join("nginx.conf"), main).expect("write main");
    let nginx = ProcessGuard::spawn(
        "nginx",
        Command::new(program("/usr/sbin/nginx"))
            .arg("-c")
            .arg(dir.path().join("nginx.conf"))
            .arg("-p")
            .arg(format!("{}/", dir.path().display()))
            .args(["-e", "stderr"])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit()),
    );
    wait_for_port(p.https_port, Duration::from_secs(10));
    wait_for_port(http_port, Duration::from_secs(10));
    Host {
        dir,
        https_port: p.https_port,
        _nginx: nginx,
        _chat: chat,
    }
}

fn stack_toml(directory: &str, ca: &Path, renew_days: Option<u32>, ssh: Option<&Sshd>) -> String {
    let renew = renew_days
        .map(|d| format!("renew_days_before = {d}\n"))
        .unwrap_or_default();
    let target = match ssh {
        None => "target = \"local\"\n".to_string(),
        Some(sshd) => format!(
            "target = \"ssh\"\n\n[ssh]\nuser = \"{}\"\nport = {}\nidentity_file = \"{}\"\nknown_hosts = \"{}\"\n\n[[hosts]]\naddress = \"127.0.0.1\"\n\n[secrets]\nFULLSLACK_AUTH__JWT_SECRET = {{ env = \"FULLSLACK_AUTH__JWT_SECRET\" }}\n",
            sshd.user,
            sshd.port,
            sshd.identity_file().display(),
            sshd.known_hosts().display(),
        ),
    };
    format!(
        r#"name = "certs-test"
domains = ["{DOMAIN}"]
{target}
[image]
name = "fullslack/chat"

[tls]
enabled = true
acme_email = "ops@example.test"
directory_url = "{directory}"
directory_ca_file = "{}"
{renew}"#,
        ca.display()
    )
}

struct Env {
    pebble: Pebble,
    host: Host,
    stack_dir: tempfile::TempDir,
    /// The host reached over SSH (an `ssh` stack) instead of this machine (`local`).
    sshd: Option<(Sshd, tempfile::TempDir)>,
}

impl Env {
    fn start() -> Env {
        Env::start_with(false)
    }

    fn start_with(over_ssh: bool) -> Env {
        let http_port = free_port();
        let pebble = Pebble::start(http_port);
        let host = start_host(http_port);
        let sshd = over_ssh.then(|| {
            let dir = short_tempdir();
            (Sshd::start(dir.path()), dir)
        });
        let env = Env {
            pebble,
            host,
            stack_dir: tempdir(),
            sshd,
        };
        env.write_stack(None);
        env
    }

    fn stack_file(&self) -> PathBuf {
        self.stack_dir.path().join("stack.toml")
    }

    fn write_stack(&self, renew_days: Option<u32>) {
        let ssh = self.sshd.as_ref().map(|(s, _)| s);
        let toml = stack_toml(
            &self.pebble.directory_url,
            &self.pebble.tls_ca(),
            renew_days,
            ssh,
        );
        std::fs::write(self.stack_file(), toml).expect("write stack");
    }

    /// `fullslack [--json] certs SUB --stack … ARGS` with this host's paths.
    fn certs(&self, sub: &str, json: bool, args: &[&str]) -> Output {
        self.certs_cmd(sub, json, args)
            .output()
            .expect("run fullslack certs")
    }

    /// `fullslack certs SUB` as a GitHub Actions step writing its summary to `summary`.
    fn certs_in_actions(&self, sub: &str, summary: &Path) -> Output {
        self.certs_cmd(sub, false, &[])
            .env("GITHUB_ACTIONS", "true")
            .env("GITHUB_STEP_SUMMARY", summary)
            .output()
            .expect("run fullslack certs")
    }

    fn certs_cmd(&self, sub: &str, json: bool, args: &[&str]) -> Command {
        let mut c = fullslack!();
        c.env_remove("GITHUB_ACTIONS")
            .env_remove("GITHUB_STEP_SUMMARY");
        if json {
            c.arg("--json");
        }
        c.args(["certs", sub, "--stack"])
            .arg(self.stack_file())
            .arg("--cert-dir")
            .arg(self.host.cert_dir())
            .arg("--acme-root")
            .arg(self.host.acme_root())
            .arg("--nginx-conf")
            .arg(self.host.conf())
            .args(["--nginx-prefix", &self.host.prefix()])
            .args([
                "--dns-server",
                &format!("127.0.0.1:{}", self.pebble.dns_port),
            ])
            .args(args);
        c
    }

    fn root_file(&self) -> PathBuf {
        let path = self.stack_dir.path().join("pebble-root.pem");
        std::fs::write(&path, self.pebble.root_pem()).expect("write root");
        path
    }

    /// The certificate Nginx serves for the domain, verified against `root`.
    fn served(&self, root: &Path) -> fullslack::tls::CertInfo {
        let addr = format!("127.0.0.1:{}", self.host.https_port)
            .parse()
            .expect("addr");
        tokio::runtime::Runtime::new()
            .expect("runtime")
            .block_on(fullslack::tls::inspect(
                addr,
                DOMAIN,
                Some(root),
                Duration::from_secs(5),
            ))
            .expect("inspect the served certificate")
    }
}

/// Pids of the worker processes of the Nginx master whose pid file is under `prefix`.
fn nginx_workers(prefix: &Path) -> Vec<String> {
    let Ok(master) = std::fs::read_to_string(prefix.join("nginx.pid")) else {
        return Vec::new();
    };
    let master = master.trim();
    std::fs::read_dir("/proc")
        .expect("/proc")
        .filter_map(Result::ok)
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        // `pid (comm) state ppid …`: the comm may hold spaces, so read after its `)`.
        .filter(|stat| {
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .is_some_and(|ppid| ppid == master)
        })
        .filter_map(|stat| stat.split_whitespace().next().map(str::to_string))
        .collect()
}

/// `nginx -s reload` returns before the master has acted on it, and until it has told the old
/// worker to stop, new connections may still reach it: run `f`, then wait until the only
/// worker (`worker_processes 1`) is one that did not exist before.
fn reloaded(env: &Env, f: impl FnOnce() -> Output) -> Output {
    let before = nginx_workers(env.host.dir.path());
    let out = f();
    if !out.status.success() {
        return out;
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let now = nginx_workers(env.host.dir.path());
        if now.len() == 1 && !before.contains(&now[0]) {
            return out;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "nginx did not replace its worker: {before:?} → {now:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn text(o: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn json(o: &Output) -> Value {
    assert!(o.status.success(), "{}", text(o));
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(o)))
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).expect("stat").permissions().mode() & 0o777
}

/// `fullslack health` for the domain, in a mount namespace whose /etc/hosts maps the domain to
/// 127.0.0.1 (the system resolver is what health uses; nothing outside the process changes).
fn health(env: &Env, root: &Path) -> Output {
    let fullslack = Path::new(env!("CARGO_BIN_EXE_fullslack"));
    resolving_to_loopback(env.stack_dir.path(), &[DOMAIN], fullslack)
        .args(["health", "--json", "--register-probe", "--ca-file"])
        .arg(root)
        .arg(format!("https://{DOMAIN}:{}", env.host.https_port))
        .env("FULLSLACK_PROBE_PASSWORD", "probe-password-123")
        .output()
        .expect("run health")
}

#[test]
fn issue_serves_a_chain_to_pebbles_root_then_status_refusal_renewal_and_a_failed_challenge() {
    let env = Env::start();
    let placeholder = env.served(&env.host.cert_dir().join("ca.pem"));
    assert_eq!(placeholder.verify_error, None, "{placeholder:?}");

    // Issue: the placeholder (not from this CA) does not block the first order.
    let out = reloaded(&env, || env.certs("issue", true, &[]));
    let issued = json(&out);
    assert_eq!(issued["action"], "issued", "{issued:#}");
    let serial = issued["certificate"]["serial"]
        .as_str()
        .expect("serial")
        .to_string();
    assert_eq!(issued["certificate"]["names"][0], DOMAIN);
    let root = env.root_file();
    let served = env.served(&root);
    assert_eq!(
        served.verify_error, None,
        "served chain does not verify against pebble's root: {served:?}"
    );
    assert_ne!(served.issuer, placeholder.issuer);
    assert_eq!(mode(&env.host.cert_dir().join("privkey.pem")), 0o600);
    // The account key is kept 0600 beside the stack file and never printed.
    let acme = env.stack_dir.path().join(".fullslack/certs-test/acme");
    let account = fullslack::certs::account::credentials_path(&acme, &env.pebble.directory_url);
    assert_eq!(mode(&account), 0o600);
    let creds: Value =
        serde_json::from_slice(&std::fs::read(&account).expect("read")).expect("json");
    let key = creds["key_pkcs8"].as_str().expect("key in credentials");
    assert!(!text(&out).contains(key));

    let h = health(&env, &root);
    assert!(
        h.status.success(),
        "health over HTTPS with pebble's root failed: {}",
        text(&h)
    );
    let report: Value = serde_json::from_slice(&h.stdout).expect("health json");
    let ok = fullslack_test_support::report::checks_with_outcome(&report, "ok");
    assert_eq!(
        ok,
        ["healthz", "readyz", "ws.round_trip", "tls.certificate"],
        "{report:#}"
    );

    status_then_second_issue_refused(&env, &serial);
    let renewed = renewal_due_by_configuration(&env, &serial, &root);
    unreachable_challenge_keeps_the_old_certificate(&env, &renewed, &root);
}

fn status_then_second_issue_refused(env: &Env, serial: &str) {
    let st = json(&env.certs("status", true, &[]));
    let d = &st["domains"][0];
    assert_eq!(d["domain"], DOMAIN, "{st:#}");
    assert_eq!(d["covered"], true, "{st:#}");
    let c = &d["certificate"];
    assert_eq!(c["serial"], serial, "{st:#}");
    assert!(c["days_left"].as_i64().expect("days") > 1, "{st:#}");
    assert_eq!(c["due"], false, "{st:#}");
    assert!(
        ["ari", "third_of_lifetime"].contains(&c["window_source"].as_str().expect("source")),
        "{st:#}"
    );
    assert_eq!(c["next_renewal_due"], c["window_start"], "{st:#}");
    // In GitHub Actions the same status is a table in the step summary.
    let summary = env.stack_dir.path().join("step-summary.md");
    let out = env.certs_in_actions("status", &summary);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let md = std::fs::read_to_string(&summary).expect("step summary written");
    assert!(md.starts_with("### Certificates of stack `"), "{md}");
    assert!(
        md.contains(&format!("| {DOMAIN} | ")) && md.contains(&format!("| `{serial}` |")),
        "{md}"
    );

    let again = env.certs("issue", false, &[]);
    assert!(
        !again.status.success(),
        "a second issue was not refused: {}",
        text(&again)
    );
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(
        err.contains("not due for renewal until"),
        "{}",
        text(&again)
    );
    assert!(err.contains("--force"), "{}", text(&again));

    let renew = env.certs("renew", true, &[]);
    assert_eq!(json(&renew)["action"], "not_due", "{}", text(&renew));
}

/// `tls.renew_days_before` longer than the lifetime makes the certificate due now.
fn renewal_due_by_configuration(env: &Env, old: &str, root: &Path) -> String {
    env.write_stack(Some(100_000));
    let st = json(&env.certs("status", true, &[]));
    assert_eq!(st["domains"][0]["certificate"]["due"], true, "{st:#}");
    assert_eq!(
        st["domains"][0]["certificate"]["window_source"], "configured",
        "{st:#}"
    );
    let out = reloaded(env, || env.certs("renew", true, &[]));
    let renewed = json(&out);
    assert_eq!(renewed["action"], "renewed", "{renewed:#}");
    let serial = renewed["certificate"]["serial"]
        .as_str()
        .expect("serial")
        .to_string();
    assert_ne!(serial, old);
    let served = env.served(root);
    assert_eq!(served.verify_error, None, "{served:?}");
    let st = json(&env.certs("status", true, &[]));
    assert_eq!(
        st["domains"][0]["certificate"]["serial"],
        serial.as_str(),
        "{st:#}"
    );
    env.write_stack(None);
    serial
}

/// The domain now points where nothing listens: the CA cannot connect, the command says
/// why and what to fix, the order log counts the failure, the old certificate keeps serving.
fn unreachable_challenge_keeps_the_old_certificate(env: &Env, serial: &str, root: &Path) {
    let before = env.served(root);
    env.pebble.set_a(DOMAIN, "127.0.0.2");
    let out = env.certs("issue", false, &["--force", "--skip-checks"]);
    env.pebble.clear_a(DOMAIN);
    assert!(!out.status.success(), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("could not reach the host on port 80"),
        "{}",
        text(&out)
    );
    assert!(err.contains("open port 80"), "{}", text(&out));
    let after = env.served(root);
    assert_eq!(after.verify_error, None, "{after:?}");
    assert_eq!(
        (after.subject, after.not_after),
        (before.subject, before.not_after)
    );
    let st = json(&env.certs("status", true, &[]));
    assert_eq!(st["domains"][0]["certificate"]["serial"], serial, "{st:#}");
    let log = std::fs::read_to_string(
        env.stack_dir
            .path()
            .join(".fullslack/certs-test/acme/orders.jsonl"),
    )
    .expect("order log");
    let last: Value = serde_json::from_str(log.lines().last().expect("a line")).expect("json");
    assert_eq!(last["outcome"], "failed", "{log}");
    // The tokens of the failed order were removed from the webroot.
    let left = std::fs::read_dir(env.host.acme_root().join(".well-known/acme-challenge"))
        .map(Iterator::count)
        .unwrap_or(0);
    assert_eq!(left, 0);
}

/// A CAA record that forbids the CA: `doctor`'s check stops the order before the CA sees it
/// (no account, nothing in the order log), with the fix, and the old certificate stays.
#[test]
fn dns_checks_that_would_fail_validation_stop_the_order_before_the_ca() {
    let env = Env::start();
    let placeholder = env.served(&env.host.cert_dir().join("ca.pem"));
    env.pebble.dns(
        "add-caa",
        serde_json::json!({"host": DOMAIN, "policies": [{"tag": "issue", "value": "other-ca.example"}]}),
    );
    let out = env.certs("issue", false, &[]);
    assert!(!out.status.success(), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("nothing was ordered"), "{}", text(&out));
    assert!(err.contains("dns.caa"), "{}", text(&out));
    let acme = env.stack_dir.path().join(".fullslack/certs-test/acme");
    assert!(!acme.join("orders.jsonl").exists());
    let account = fullslack::certs::account::credentials_path(&acme, &env.pebble.directory_url);
    assert!(!account.exists());
    let after = env.served(&env.host.cert_dir().join("ca.pem"));
    assert_eq!(after.verify_error, None, "{after:?}");
    assert_eq!(after.not_after, placeholder.not_after);
}

/// An `ssh` stack: the same issue, with tokens, chain and key placed through the SSH runner
/// (a private sshd on loopback reaching this machine as the host).
#[test]
fn issue_over_ssh_installs_through_the_ssh_runner() {
    let env = Env::start_with(true);
    let out = reloaded(&env, || env.certs("issue", true, &[]));
    let issued = json(&out);
    assert_eq!(issued["action"], "issued", "{issued:#}");
    let host = issued["hosts"][0].as_str().expect("host");
    assert!(
        host.contains("@127.0.0.1:"),
        "installed over SSH, not locally: {issued:#}"
    );
    let root = env.root_file();
    let served = env.served(&root);
    assert_eq!(served.verify_error, None, "{served:?}");
    assert_eq!(mode(&env.host.cert_dir().join("privkey.pem")), 0o600);
    let st = json(&env.certs("status", true, &[]));
    assert_eq!(
        st["domains"][0]["certificate"]["serial"], issued["certificate"]["serial"],
        "{st:#}"
    );
}
