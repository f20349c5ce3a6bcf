//! The `local` target: the same switch on this machine's Docker Engine, without SSH (the
//! runner is `sh -c` here and the health gate talks to the release's port directly).

use super::{health_through_nginx, text, Host};

#[test]
fn a_local_stack_deploys_and_switches_without_ssh() {
    let h = Host::local();
    h.build("v1", None);
    h.build("v2", None);
    let out = h.switch("deploy", Some("v1"), &[]);
    assert!(out.status.success(), "deploy v1: {}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.starts_with("localhost: v1 live on Blue (was nothing)"),
        "{stdout}"
    );
    let health = health_through_nginx(&h);
    assert!(health.status.success(), "{}", text(&health));
    // v2 as a GitHub Actions step: the host folded in a group, a row in the step summary.
    let summary = h.dir.path().join("step-summary.md");
    let out = h
        .cli(&["deploy", "--version", "v2"])
        .args(h.switch_args())
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_STEP_SUMMARY", &summary)
        .output()
        .expect("run fullslack");
    assert!(out.status.success(), "deploy v2: {}", text(&out));
    assert_eq!(h.containers(), [format!("{}-green v2", h.name)]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("::group::deploy on this machine\n") && stderr.contains("::endgroup::"),
        "{stderr}"
    );
    let md = std::fs::read_to_string(&summary).expect("step summary written");
    assert!(
        md.starts_with(&format!(
            "### ✅ deploy of stack `{}`: 1 host(s) switched",
            h.name
        )),
        "{md}"
    );
    assert!(md.contains("| localhost | `v2` | `v1` | Green |"), "{md}");
    let health = health_through_nginx(&h);
    assert!(health.status.success(), "{}", text(&health));
}
