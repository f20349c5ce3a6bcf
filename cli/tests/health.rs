//! `fullslack health` against a real chat server (and certificate checks against a real TLS
//! server).

use std::process::{Command, Stdio};
use std::time::Duration;

use fullslack_test_support::{
    certs::make_certs,
    chat_binary::{spawn_chat_server_with_env, start_chat_server},
    free_port, fullslack,
    paths::tempdir,
    wait_for_port, ProcessGuard,
};

use serde_json::Value;

fn health(args: &[&str], password: Option<&str>) -> (std::process::ExitStatus, String, String) {
    health_env(args, password.map(|p| ("FULLSLACK_PROBE_PASSWORD", p)))
}

fn health_env(
    args: &[&str],
    var: Option<(&str, &str)>,
) -> (std::process::ExitStatus, String, String) {
    let mut c = fullslack!();
    c.arg("health")
        .args(args)
        .env_remove("FULLSLACK_PROBE_PASSWORD")
        .env_remove("FULLSLACK_PROBE_TOKEN");
    if let Some((k, v)) = var {
        c.env(k, v);
    }
    let out = c.output().expect("run fullslack health");
    (
        out.status,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn check<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name} in {report:#}"))
}

fn login(base: &str, user: &str, password: &str) -> reqwest::blocking::Response {
    reqwest::blocking::Client::new()
        .post(format!("{base}/api/auth/login"))
        .json(&serde_json::json!({"username": user, "password": password}))
        .send()
        .expect("login request")
}

#[test]
fn round_trip_signs_in_pings_and_writes_nothing() {
    let chat = start_chat_server();
    let pw = "correct horse battery";
    // Without --register-probe no account is created: the round trip fails and says how.
    let (status, stdout, _) = health(&["--json", &chat.base], Some(pw));
    let report: Value = serde_json::from_str(&stdout).expect("json");
    assert_eq!(status.code(), Some(1), "{report:#}");
    let ws = check(&report, "ws.round_trip");
    assert_eq!(ws["outcome"], "fail");
    assert!(
        ws["fix"]
            .as_str()
            .expect("fix")
            .contains("--register-probe"),
        "{ws}"
    );
    assert!(
        ws["detail"].as_str().expect("detail").contains("401"),
        "{ws}"
    );

    // Set up once with --register-probe, then every run only signs in (few runs: sign-ins
    // are rate limited, 5 at once by default).
    for (run, args) in [
        (0, vec!["--json", "--register-probe", chat.base.as_str()]),
        (1, vec!["--json", chat.base.as_str()]),
    ] {
        let (status, stdout, stderr) = health(&args, Some(pw));
        let report: Value = serde_json::from_str(&stdout)
            .unwrap_or_else(|e| panic!("run {run}: not JSON ({e}): {stdout}\n{stderr}"));
        assert!(status.success(), "run {run}: {report:#}\n{stderr}");
        assert_eq!(check(&report, "healthz")["outcome"], "ok");
        assert_eq!(check(&report, "readyz")["outcome"], "ok");
        let ws = check(&report, "ws.round_trip");
        assert_eq!(ws["outcome"], "ok", "{report:#}");
        let latency = ws["latency_ms"].as_f64().expect("latency");
        assert!((0.0..10_000.0).contains(&latency), "{latency}");
    }
    // Nothing was written: the probe is in no channel and has posted nothing.
    let token = login(&chat.base, "fullslack-probe", pw)
        .json::<Value>()
        .expect("login")["token"]
        .as_str()
        .expect("token")
        .to_string();
    let channels: Value = reqwest::blocking::Client::new()
        .get(format!("{}/api/channels", chat.base))
        .bearer_auth(&token)
        .send()
        .and_then(reqwest::blocking::Response::json)
        .expect("channels");
    assert_eq!(channels, serde_json::json!([]), "the probe wrote something");

    // A token of the probe identity works without any sign-in.
    let (status, stdout, _) = health_env(
        &["--json", &chat.base],
        Some(("FULLSLACK_PROBE_TOKEN", token.as_str())),
    );
    let report: Value = serde_json::from_str(&stdout).expect("json");
    assert!(status.success(), "{report:#}");
    assert_eq!(check(&report, "ws.round_trip")["outcome"], "ok");
}

#[test]
fn human_output_and_wrong_password() {
    let chat = start_chat_server();
    let (status, stdout, _) = health(&["--register-probe", &chat.base], Some("first-password-1"));
    assert!(status.success(), "{stdout}");
    assert!(stdout.contains("ws.round_trip"), "{stdout}");
    assert!(stdout.contains("all checks passed"), "{stdout}");
    assert!(
        !stdout.contains("\x1b["),
        "no colour when stdout is not a terminal"
    );

    let (status, stdout, _) = health(&[&chat.base], Some("another-password-2"));
    assert_eq!(status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("FAIL ws.round_trip"), "{stdout}");
    assert!(stdout.contains("could not log in"), "{stdout}");
    assert!(stdout.contains("fix: "), "{stdout}");
}

#[test]
fn without_a_probe_identity_the_round_trip_is_skipped_and_not_called_a_pass() {
    let chat = start_chat_server();
    let (status, stdout, _) = health(&["--json", &chat.base], None);
    let report: Value = serde_json::from_str(&stdout).expect("json");
    assert!(status.success(), "{report:#}");
    assert_eq!(check(&report, "ws.round_trip")["outcome"], "skip");
    let (_, stdout, _) = health(&[&chat.base], None);
    assert!(!stdout.contains("all checks passed"), "{stdout}");
    assert!(stdout.contains("1 skipped (ws.round_trip)"), "{stdout}");
}

#[test]
fn a_rate_limited_sign_in_is_not_blamed_on_the_proxy() {
    let dir = tempdir();
    let env: Vec<(String, String)> = [
        ("FULLSLACK_LISTEN", "127.0.0.1:0".to_string()),
        ("FULLSLACK_DATA_DIR", dir.path().display().to_string()),
        ("FULLSLACK_RATE_LIMIT__AUTH_PER_MIN", "1".to_string()),
        ("FULLSLACK_RATE_LIMIT__AUTH_BURST", "1".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let chat = spawn_chat_server_with_env(&env).expect("server starts");
    // One sign-in a minute: within a few runs one is refused with 429, whatever the speed.
    let mut seen = None;
    for _ in 0..5 {
        let (_, stdout, _) = health(&["--json", &chat.base], Some("whatever-pass-1"));
        let report: Value = serde_json::from_str(&stdout).expect("json");
        let ws = check(&report, "ws.round_trip").clone();
        if ws["detail"].as_str().unwrap_or("").contains("429") {
            seen = Some(ws);
            break;
        }
    }
    let ws = seen.expect("no run was rate limited");
    assert_eq!(ws["outcome"], "fail");
    let fix = ws["fix"].as_str().expect("fix");
    assert!(
        fix.contains("rate limit") && !fix.contains("Upgrade"),
        "{ws}"
    );
}

#[test]
fn a_dns_failure_keeps_its_cause() {
    let (status, stdout, _) = health(
        &["--json", "--timeout", "5", "http://no-such-host.invalid"],
        None,
    );
    assert_eq!(status.code(), Some(1));
    let report: Value = serde_json::from_str(&stdout).expect("json");
    let detail = check(&report, "healthz")["detail"]
        .as_str()
        .expect("detail")
        .to_lowercase();
    assert!(
        detail.contains("dns") || detail.contains("lookup") || detail.contains("resolve"),
        "the cause is lost: {detail}"
    );
}

#[test]
fn dead_server_fails_with_a_fix() {
    let port = free_port();
    let (status, stdout, _) = health(
        &[
            "--json",
            "--timeout",
            "2",
            &format!("http://127.0.0.1:{port}"),
        ],
        Some("whatever-123"),
    );
    assert_eq!(status.code(), Some(1));
    let report: Value = serde_json::from_str(&stdout).expect("json");
    assert_eq!(report["ok"], false);
    let h = check(&report, "healthz");
    assert_eq!(h["outcome"], "fail");
    assert!(h["fix"]
        .as_str()
        .expect("fix")
        .contains("server is running"));
}

#[tokio::test]
async fn certificate_validity_and_trust_against_a_real_tls_server() {
    let dir = tempdir();
    make_certs(dir.path(), &["chat.example.test"]);
    let port = free_port();
    let _server = ProcessGuard::spawn(
        "openssl s_server",
        Command::new("openssl")
            .args(["s_server", "-quiet", "-www", "-accept"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("-cert")
            .arg(dir.path().join("fullchain.pem"))
            .arg("-key")
            .arg(dir.path().join("privkey.pem"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    wait_for_port(port, Duration::from_secs(10));
    let addr = format!("127.0.0.1:{port}").parse().expect("addr");
    let ca = dir.path().join("ca.pem");

    let trusted =
        fullslack::tls::inspect(addr, "chat.example.test", Some(&ca), Duration::from_secs(5))
            .await
            .expect("inspect");
    assert_eq!(trusted.verify_error, None);
    assert!((28..=30).contains(&trusted.days_left), "{trusted:?}");
    let verdict = fullslack::health::cert_verdict("chat.example.test", &trusted, 14);
    assert_eq!(verdict.outcome, fullslack::check::Outcome::Ok);
    // Thirty days left is not enough when the operator wants sixty.
    let soon = fullslack::health::cert_verdict("chat.example.test", &trusted, 60);
    assert_eq!(soon.outcome, fullslack::check::Outcome::Fail);
    assert!(soon.detail.contains("expires soon"));

    // Without the test CA the same certificate is untrusted, and still inspected.
    let untrusted =
        fullslack::tls::inspect(addr, "chat.example.test", None, Duration::from_secs(5))
            .await
            .expect("inspect");
    assert!(untrusted.verify_error.is_some());
    let verdict = fullslack::health::cert_verdict("chat.example.test", &untrusted, 14);
    assert_eq!(verdict.outcome, fullslack::check::Outcome::Fail);
    assert!(verdict.fix.as_deref().unwrap_or("").contains("full chain"));

    // A name the certificate does not cover is refused.
    let wrong = fullslack::tls::inspect(
        addr,
        "other.example.test",
        Some(&ca),
        Duration::from_secs(5),
    )
    .await
    .expect("inspect");
    assert!(wrong.verify_error.is_some(), "{wrong:?}");
}
