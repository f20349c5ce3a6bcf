//! `fullslack operate` renewing a due certificate through `certs renew`: pebble issues one,
//! the stack's `tls.renew_days_before` (longer than its lifetime) makes it due, and one
//! `operate --once` round reports the days left and renews it.

use super::{json, reloaded, text, Env, DOMAIN};
use serde_json::Value;

#[test]
fn operate_renews_a_due_certificate() {
    let env = Env::start();
    let issued = json(&reloaded(&env, || env.certs("issue", true, &[])));
    assert_eq!(issued["action"], "issued", "{issued:#}");
    let old = issued["certificate"]["serial"]
        .as_str()
        .expect("serial")
        .to_string();
    env.write_stack(Some(100_000));

    // The host has no release deployed (this stack only has a certificate), so the round
    // fails its `release` check and exits 1; the certificate part is what is looked at.
    let state = fullslack_test_support::paths::tempdir();
    let out = fullslack_test_support::fullslack!()
        .env_remove("GITHUB_ACTIONS")
        .env_remove("GITHUB_STEP_SUMMARY")
        .args([
            "--json",
            "operate",
            "--once",
            "--skip-cert-checks",
            "--stack",
        ])
        .arg(env.stack_file())
        .arg("--state-dir")
        .arg(state.path())
        .arg("--cert-dir")
        .arg(env.host.cert_dir())
        .arg("--acme-root")
        .arg(env.host.acme_root())
        .arg("--nginx-conf")
        .arg(env.host.conf())
        .args(["--nginx-prefix", &env.host.prefix()])
        .output()
        .expect("run fullslack operate");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("every line is JSON"))
        .collect();
    let cert = lines
        .iter()
        .find(|v| v["kind"] == "check" && v["name"] == "tls.certificate")
        .unwrap_or_else(|| panic!("no certificate check: {}", text(&out)));
    assert_eq!(cert["subject"], DOMAIN, "{cert}");
    assert_eq!(cert["outcome"], "ok", "{cert}");
    assert!(
        cert["detail"]
            .as_str()
            .is_some_and(|d| d.contains("days left") && d.ends_with("due now")),
        "{cert}"
    );
    let renew = lines
        .iter()
        .find(|v| v["kind"] == "action" && v["action"] == "renew")
        .unwrap_or_else(|| panic!("no renewal: {}", text(&out)));
    assert_eq!(renew["ok"], true, "{renew}");
    let st = json(&env.certs("status", true, &[]));
    let serial = st["domains"][0]["certificate"]["serial"]
        .as_str()
        .expect("serial");
    assert_ne!(serial, old, "the certificate was not replaced: {st:#}");
    assert!(
        renew["detail"].as_str().is_some_and(|d| d.contains(serial)),
        "{renew}"
    );
}
