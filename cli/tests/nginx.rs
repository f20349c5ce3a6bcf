//! Nginx rendering: snapshots of each variant, a real `nginx -t` of every variant, and real
//! Nginx in front of a real chat server passing HTTP, the ACME path and WebSocket traffic.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use fullslack_test_support::{
    certs::make_certs,
    chat_binary::{start_chat_server, start_chat_server_with},
    free_port, fullslack,
    paths::{program, tempdir},
    wait_for_port, ProcessGuard,
};

use fullslack::nginx::{render_main, render_site, Color, SiteParams};
use fullslack::stack;

fn stack_params(name: &str) -> SiteParams {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("../stacks/{name}.toml"));
    let s = stack::load(&path).expect("example stack");
    SiteParams::from_stack(&s).expect("nginx params")
}

#[test]
fn snapshot_ssh_host_tls() {
    let p = stack_params("ssh-host");
    insta::assert_snapshot!("site_ssh_host", render_site(&p).expect("render"));
}

#[test]
fn snapshot_local_plain_http() {
    let p = stack_params("local");
    insta::assert_snapshot!("site_local", render_site(&p).expect("render"));
}

#[test]
fn snapshot_scaled_green_active() {
    let mut p = stack_params("ec2-scaled");
    p.active = Color::Green;
    insta::assert_snapshot!("site_ec2_scaled_green", render_site(&p).expect("render"));
}

#[test]
fn snapshot_main_config() {
    insta::assert_snapshot!(
        "main_conf",
        render_main("/srv/nginx", "/srv/nginx/site.conf", false).expect("render")
    );
}

#[test]
fn ecs_stack_has_no_nginx() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../stacks/ecs-fargate.toml");
    let s = stack::load(&path).expect("stack");
    let err = SiteParams::from_stack(&s).expect_err("ECS uses the ALB");
    assert!(err.hint().contains("ALB"));
}

#[test]
fn websocket_location_has_upgrade_and_long_timeouts() {
    let p = stack_params("ssh-host");
    let out = render_site(&p).expect("render");
    let ws = out
        .split("location = /api/ws {")
        .nth(1)
        .and_then(|s| s.split('}').next())
        .expect("ws location");
    assert!(ws.contains("proxy_http_version 1.1;"));
    assert!(ws.contains("proxy_set_header Upgrade $http_upgrade;"));
    assert!(ws.contains("proxy_set_header Connection $connection_upgrade;"));
    let timeout: u64 = ws
        .split("proxy_read_timeout ")
        .nth(1)
        .and_then(|s| s.split('s').next())
        .and_then(|s| s.parse().ok())
        .expect("read timeout");
    assert!(timeout > fullslack::nginx::SERVER_PING_SECS, "{timeout}");
    assert!(out.contains("map $http_upgrade $connection_upgrade"));
    assert!(out.contains("return 301 https://$host$request_uri;"));
    assert!(out.contains("location ^~ /.well-known/acme-challenge/"));
    assert!(out.contains("Strict-Transport-Security"));
    assert!(out.contains("ssl_protocols TLSv1.2 TLSv1.3;"));
}

/// A prefix directory with certificates, an ACME webroot and a main nginx.conf including
/// the rendered site.
struct Prefix {
    dir: tempfile::TempDir,
}

impl Prefix {
    fn new() -> Self {
        let dir = tempdir();
        std::fs::create_dir_all(dir.path().join("certs")).expect("certs dir");
        std::fs::create_dir_all(dir.path().join("acme/.well-known/acme-challenge"))
            .expect("acme dir");
        make_certs(
            &dir.path().join("certs"),
            &["chat.example.test", "localhost"],
        );
        Prefix { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn adapt(&self, p: &mut SiteParams) {
        p.cert_dir = self.path().join("certs").display().to_string();
        p.acme_root = self.path().join("acme").display().to_string();
    }

    fn write(&self, p: &SiteParams) -> PathBuf {
        let site = self.path().join("site.conf");
        std::fs::write(&site, render_site(p).expect("render site")).expect("write site");
        let main = self.path().join("nginx.conf");
        std::fs::write(
            &main,
            render_main(
                &self.path().display().to_string(),
                &site.display().to_string(),
                false,
            )
            .expect("render main"),
        )
        .expect("write main");
        main
    }

    fn nginx(&self) -> Command {
        let mut c = Command::new(program("/usr/sbin/nginx"));
        c.arg("-c")
            .arg(self.path().join("nginx.conf"))
            .arg("-p")
            .arg(format!("{}/", self.path().display()));
        c
    }

    fn test(&self) -> std::process::Output {
        self.nginx()
            .args(["-t", "-e", "stderr"])
            .output()
            .expect("run nginx -t")
    }
}

type Tweak = Box<dyn Fn(&mut SiteParams)>;

#[test]
fn every_rendered_variant_passes_nginx_t() {
    let variants: Vec<(&str, Tweak)> = vec![
        ("ssh-host", Box::new(|_| {})),
        ("ec2-single", Box::new(|_| {})),
        ("local", Box::new(|_| {})),
        ("ec2-scaled", Box::new(|p| p.active = Color::Green)),
        ("ssh-host", Box::new(|p| p.listen_v6 = None)),
        (
            "ssh-host",
            Box::new(|p| {
                p.listen_v4 = Some("127.0.0.1".into());
                p.listen_v6 = Some("::1".into());
            }),
        ),
    ];
    for (name, tweak) in variants {
        let prefix = Prefix::new();
        let mut p = stack_params(name);
        prefix.adapt(&mut p);
        p.http_port = free_port();
        p.https_port = free_port();
        tweak(&mut p);
        prefix.write(&p);
        let out = prefix.test();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && stderr.contains("test is successful"),
            "nginx -t failed for {name}: {stderr}"
        );
    }
}

#[test]
fn nginx_t_catches_a_broken_config() {
    let prefix = Prefix::new();
    let mut p = stack_params("ssh-host");
    prefix.adapt(&mut p);
    p.cert_dir = prefix.path().join("missing").display().to_string();
    prefix.write(&p);
    let out = prefix.test();
    assert!(
        !out.status.success(),
        "a missing certificate must fail nginx -t"
    );
}

#[test]
fn cli_render_writes_site_and_main_config() {
    let prefix = Prefix::new();
    let site = prefix.path().join("site.conf");
    let stack_file = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../stacks/ssh-host.toml");
    let out = fullslack!()
        .args(["nginx", "render", "--stack"])
        .arg(&stack_file)
        .arg("--cert-dir")
        .arg(prefix.path().join("certs"))
        .arg("--acme-root")
        .arg(prefix.path().join("acme"))
        .args(["--http-port", &free_port().to_string()])
        .args(["--https-port", &free_port().to_string()])
        .args(["--listen-v4", "127.0.0.1", "--no-ipv6", "--active", "green"])
        .arg("--output")
        .arg(&site)
        .arg("--main-prefix")
        .arg(prefix.path())
        .output()
        .expect("run fullslack");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&site).expect("site written");
    assert!(text.contains("proxy_pass http://fullslack_chat_ssh_green;"));
    assert!(!text.contains("[::]"));
    let t = prefix.test();
    assert!(t.status.success(), "{}", String::from_utf8_lossy(&t.stderr));
}

#[tokio::test]
async fn real_nginx_proxies_http_acme_and_websocket_to_the_chat_server() {
    let chat = start_chat_server();
    let prefix = Prefix::new();
    let mut p = stack_params("ssh-host");
    prefix.adapt(&mut p);
    p.http_port = free_port();
    p.https_port = free_port();
    p.listen_v4 = Some("127.0.0.1".into());
    p.listen_v6 = None;
    p.blue = vec![format!("127.0.0.1:{}", chat.port)];
    // Green points at a port nobody listens on: traffic must go to the active colour only.
    p.green = vec![format!("127.0.0.1:{}", free_port())];
    prefix.write(&p);
    let t = prefix.test();
    assert!(t.status.success(), "{}", String::from_utf8_lossy(&t.stderr));
    let _nginx = ProcessGuard::spawn(
        "nginx",
        prefix
            .nginx()
            .args(["-e", "stderr"])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit()),
    );
    wait_for_port(p.https_port, Duration::from_secs(10));
    wait_for_port(p.http_port, Duration::from_secs(10));

    let ca = std::fs::read(prefix.path().join("certs/ca.pem")).expect("ca");
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).expect("pem"))
        .redirect(reqwest::redirect::Policy::none())
        .resolve(
            "chat.example.test",
            format!("127.0.0.1:{}", p.https_port).parse().expect("addr"),
        )
        .build()
        .expect("client");

    http_redirects_except_the_acme_challenge(&client, &prefix, p.http_port, p.https_port).await;
    let https = format!("https://chat.example.test:{}", p.https_port);
    https_reaches_the_app_with_its_headers_once(&client, &https, &chat.base).await;
    metrics_answer_the_host_only(&https, &ca, p.https_port).await;
    health_through_nginx_passes(&prefix, p.https_port);
}

/// Plain HTTP redirects to HTTPS (keeping a port other than 443), except the ACME HTTP-01
/// challenge, served from the webroot.
async fn http_redirects_except_the_acme_challenge(
    client: &reqwest::Client,
    prefix: &Prefix,
    http_port: u16,
    https_port: u16,
) {
    let r = client
        .get(format!("http://127.0.0.1:{http_port}/api/me"))
        .header("host", "chat.example.test")
        .send()
        .await
        .expect("http");
    assert_eq!(r.status(), 301);
    // The HTTPS port is not 443 here: the redirect keeps it.
    assert_eq!(
        r.headers()["location"].to_str().expect("location"),
        format!("https://chat.example.test:{https_port}/api/me")
    );
    // …except the ACME HTTP-01 challenge, served from the webroot.
    std::fs::write(
        prefix
            .path()
            .join("acme/.well-known/acme-challenge/tok-123"),
        "tok-123.thumbprint",
    )
    .expect("token");
    let r = client
        .get(format!(
            "http://127.0.0.1:{http_port}/.well-known/acme-challenge/tok-123"
        ))
        .send()
        .await
        .expect("acme");
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.expect("body"), "tok-123.thumbprint");
}

/// HTTPS reaches the chat server (`direct`), with HSTS and security headers; the web
/// client's security headers come once each, with the app's own values.
async fn https_reaches_the_app_with_its_headers_once(
    client: &reqwest::Client,
    https: &str,
    direct: &str,
) {
    let r = client
        .get(format!("{https}/healthz"))
        .send()
        .await
        .expect("https healthz");
    assert_eq!(r.status(), 200);
    assert!(r.headers()["strict-transport-security"]
        .to_str()
        .expect("hsts")
        .contains("max-age=63072000"));
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    let body: serde_json::Value = r.json().await.expect("json");
    assert_eq!(body["status"], "ok");

    // The web client's security headers come once each, with the app's own values.
    let direct = reqwest::get(format!("{direct}/")).await.expect("direct /");
    let proxied = client
        .get(format!("{https}/"))
        .send()
        .await
        .expect("proxied /");
    assert_eq!(proxied.status(), 200);
    for h in [
        "content-security-policy",
        "referrer-policy",
        "x-frame-options",
        "x-content-type-options",
    ] {
        let values: Vec<_> = proxied.headers().get_all(h).iter().collect();
        assert_eq!(
            values.len(),
            1,
            "{h} sent {} times: {values:?}",
            values.len()
        );
        assert_eq!(Some(values[0]), direct.headers().get(h), "{h}");
    }
    assert_eq!(
        proxied
            .headers()
            .get_all("strict-transport-security")
            .iter()
            .count(),
        1
    );
}

/// /metrics answers the host itself only.
async fn metrics_answer_the_host_only(https: &str, ca: &[u8], port: u16) {
    let metrics = |from: &str| {
        let from: std::net::IpAddr = from.parse().expect("ip");
        async move {
            reqwest::Client::builder()
                .add_root_certificate(reqwest::Certificate::from_pem(ca).expect("pem"))
                .resolve(
                    "chat.example.test",
                    format!("127.0.0.1:{port}").parse().expect("addr"),
                )
                .local_address(from)
                .build()
                .expect("client")
                .get(format!("{https}/metrics"))
                .send()
                .await
                .expect("metrics")
                .status()
        }
    };
    assert_eq!(metrics("127.0.0.1").await, 200);
    assert_eq!(
        metrics("127.0.0.2").await,
        403,
        "metrics from another address"
    );
}

/// The full health check through Nginx: HTTP, a WebSocket round trip over wss, and the
/// certificate (trusted through the test CA).
fn health_through_nginx_passes(prefix: &Prefix, https_port: u16) {
    let out = fullslack!()
        .args(["health", "--json", "--ca-file"])
        .arg(prefix.path().join("certs/ca.pem"))
        .arg(format!("https://localhost:{https_port}"))
        .arg("--register-probe")
        .env("FULLSLACK_PROBE_PASSWORD", "probe-password-123")
        .output()
        .expect("run health");
    let report: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("health --json output");
    assert!(
        out.status.success(),
        "health through nginx failed: {report:#}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let names = fullslack_test_support::report::checks_with_outcome(&report, "ok");
    assert_eq!(
        names,
        ["healthz", "readyz", "ws.round_trip", "tls.certificate"]
    );
}

#[test]
fn cli_render_refuses_host_ports_that_overflow_or_point_at_nginx() {
    let dir = tempdir();
    let base = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../stacks/local.toml"),
    )
    .expect("read");
    for (port, words) in [("65500", "host_port"), ("80", "proxy to itself")] {
        let path = dir.path().join(format!("stack-{port}.toml"));
        std::fs::write(
            &path,
            base.replace("host_port = 8100", &format!("host_port = {port}")),
        )
        .expect("write");
        for args in [vec!["nginx", "render"], vec!["stack", "check"]] {
            let out = fullslack!()
                .args(&args)
                .arg("--stack")
                .arg(&path)
                .output()
                .expect("run");
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{args:?} {port}: {err}");
            assert!(!err.contains("panicked"), "{err}");
            assert!(
                err.contains("`app.host_port`") && err.contains(words),
                "{err}"
            );
        }
    }
}

#[test]
fn cli_render_creates_the_main_prefix_directory() {
    let dir = tempdir();
    let prefix = dir.path().join("new/nginx-prefix");
    let site = dir.path().join("site.conf");
    let out = fullslack!()
        .args(["nginx", "render", "--stack"])
        .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../stacks/local.toml"))
        .arg("--output")
        .arg(&site)
        .arg("--main-prefix")
        .arg(&prefix)
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(prefix.join("nginx.conf").is_file());
}

/// Issue 11 item 7: behind the rendered Nginx every client used to share Nginx's own address,
/// so the whole site had one sign-in budget. With Nginx's address in `trusted_proxies`, the
/// server counts each client by the `X-Forwarded-For` Nginx sets: two clients (127.0.0.2 and
/// 127.0.0.3) get separate budgets, and a client's own `X-Forwarded-For` buys it nothing.
#[tokio::test]
async fn behind_the_rendered_nginx_each_client_has_its_own_sign_in_budget() {
    let chat = start_chat_server_with(&[
        ("FULLSLACK_TRUSTED_PROXIES", "127.0.0.1"),
        // One token a minute: nothing here races a refill.
        ("FULLSLACK_RATE_LIMIT__AUTH_ADDR_PER_MIN", "1"),
        ("FULLSLACK_RATE_LIMIT__AUTH_ADDR_BURST", "3"),
    ]);
    let prefix = Prefix::new();
    let mut p = stack_params("local");
    prefix.adapt(&mut p);
    p.http_port = free_port();
    p.listen_v4 = Some("127.0.0.1".into());
    p.listen_v6 = None;
    p.active = Color::Blue;
    p.blue = vec![format!("127.0.0.1:{}", chat.port)];
    p.green = vec![format!("127.0.0.1:{}", free_port())];
    prefix.write(&p);
    let t = prefix.test();
    assert!(t.status.success(), "{}", String::from_utf8_lossy(&t.stderr));
    let _nginx = ProcessGuard::spawn(
        "nginx",
        prefix
            .nginx()
            .args(["-e", "stderr"])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit()),
    );
    wait_for_port(p.http_port, Duration::from_secs(10));

    let url = format!("http://127.0.0.1:{}/api/auth/login", p.http_port);
    let from = |ip: &str| {
        reqwest::Client::builder()
            .local_address(ip.parse::<std::net::IpAddr>().expect("ip"))
            .build()
            .expect("client")
    };
    let (a, b) = (from("127.0.0.2"), from("127.0.0.3"));
    let login = |c: &reqwest::Client, spoof: Option<&str>| {
        let mut req = c
            .post(&url)
            .header("host", "chat.localhost.test")
            .json(&serde_json::json!({"username": "alice", "password": "wrong password"}));
        if let Some(ip) = spoof {
            req = req.header("x-forwarded-for", ip);
        }
        async move { req.send().await.expect("login").status().as_u16() }
    };
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(login(&a, None).await);
    }
    assert_eq!(statuses, [401, 401, 401, 429], "client A through Nginx");
    // Nginx appends A's address after whatever A claims: still A's budget.
    assert_eq!(
        login(&a, Some("203.0.113.9")).await,
        429,
        "spoofed X-Forwarded-For"
    );
    // B, through the same Nginx, has its own budget.
    assert_eq!(login(&b, None).await, 401, "client B through Nginx");
}
