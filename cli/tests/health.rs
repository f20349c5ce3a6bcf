//! `fullslack health` against a real chat server (and certificate checks against a real TLS
//! server).

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{free_port, make_certs, tempdir, wait_for_port, Proc};
use serde_json::Value;

fn health(args: &[&str], password: Option<&str>) -> (std::process::ExitStatus, String, String) {
    let mut c = common::fullslack();
    c.arg("health")
        .args(args)
        .env_remove("FULLSLACK_PROBE_PASSWORD");
    if let Some(pw) = password {
        c.env("FULLSLACK_PROBE_PASSWORD", pw);
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

#[test]
fn healthy_server_passes_every_check_with_a_real_round_trip() {
    let chat = common::start_chat_server();
    // First run registers the probe user, the second logs in (409 on register).
    for run in 0..2 {
        let (status, stdout, stderr) =
            health(&["--json", &chat.base], Some("correct horse battery"));
        let report: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
            panic!("run {run}: not JSON ({e}): {stdout}\n{stderr}");
        });
        assert!(status.success(), "run {run}: {report:#}\n{stderr}");
        assert_eq!(report["ok"], true);
        assert_eq!(check(&report, "healthz")["outcome"], "ok");
        assert_eq!(check(&report, "readyz")["outcome"], "ok");
        let ws = check(&report, "ws.round_trip");
        assert_eq!(ws["outcome"], "ok", "{report:#}");
        let latency = ws["latency_ms"].as_f64().expect("latency");
        assert!(latency > 0.0 && latency < 10_000.0, "{latency}");
    }
    // The probe's messages really are stored: log in and read them back over REST.
    let client = reqwest::blocking::Client::new();
    let login: Value = client
        .post(format!("{}/api/auth/login", chat.base))
        .json(&serde_json::json!({"username": "fullslack-probe", "password": "correct horse battery"}))
        .send()
        .and_then(|r| r.error_for_status())
        .and_then(|r| r.json())
        .expect("login");
    let token = login["token"].as_str().expect("token");
    let channels: Value = client
        .get(format!("{}/api/channels", chat.base))
        .bearer_auth(token)
        .send()
        .and_then(|r| r.json())
        .expect("channels");
    let total: i64 = channels
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|c| c["last_seq"].as_i64())
        .sum();
    assert!(total >= 2, "two probe messages stored: {channels:#}");
}

#[test]
fn human_output_and_wrong_password() {
    let chat = common::start_chat_server();
    let (status, stdout, _) = health(&[&chat.base], Some("first-password-1"));
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
fn without_a_probe_password_the_round_trip_is_skipped() {
    let chat = common::start_chat_server();
    let (status, stdout, _) = health(&["--json", &chat.base], None);
    let report: Value = serde_json::from_str(&stdout).expect("json");
    assert!(status.success(), "{report:#}");
    assert_eq!(check(&report, "ws.round_trip")["outcome"], "skip");
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
    let _server = Proc::spawn(
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
