//! A deploy killed mid-way (issue 14, test 5, second half): the `fullslack deploy` process
//! and its SSH connection are SIGKILLed while the new release is in its health gate. The live
//! release keeps serving; the lock stays behind with a heartbeat that stops; the next deploy,
//! without `--break-lock`, finds the heartbeat older than `--lock-stale-after`, takes the lock
//! over saying whose it was, replaces the half-started container and converges.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{health_through_nginx, text, Host};

/// Polls `cond` until it holds; panics with `what` after a minute.
fn wait_for(what: &str, cond: impl Fn() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < Duration::from_secs(60), "{what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Pids of the processes whose command line names `needle` (this test's own key file, so
/// only the SSH client processes of this test's deploys).
fn pids_naming(needle: &str) -> Vec<String> {
    let out = Command::new("pgrep")
        .args(["-f", needle])
        .output()
        .expect("pgrep");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

#[test]
fn a_killed_deploy_leaves_the_live_release_serving_and_the_next_deploy_recovers() {
    let h = Host::new();
    h.build("v1", None);
    h.build("v2", None);
    let out = h.switch("deploy", Some("v1"), &[]);
    assert!(out.status.success(), "v1: {}", text(&out));

    // v2 with a probe password the host does not know: it stays in its health gate (the
    // deadline is far), which is where it is killed.
    let mut deploy = h
        .cli(&["deploy", "--version", "v2"])
        .args(h.switch_args())
        .args(["--health-deadline", "300", "--lock-stale-after", "2"])
        .env("FULLSLACK_PROBE_PASSWORD", "not the probe's password")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start deploy");
    let lock = h.state().join(format!("locks/{}.lock", h.name));
    let green = format!("{}-green v2", h.name);
    wait_for("the deploy never started v2 under its lock", || {
        lock.join("heartbeat").exists() && h.containers().contains(&green)
    });
    // The laptop closes: the deploy and its SSH connection die at once.
    deploy.kill().expect("SIGKILL the deploy");
    deploy.wait().expect("reap the deploy");
    let key = h.sshd.identity_file().display().to_string();
    for pid in pids_naming(&key) {
        let _ = Command::new("kill").args(["-KILL", &pid]).status();
    }

    assert!(lock.exists(), "the killed deploy's lock stays behind");
    let out = health_through_nginx(&h);
    assert!(out.status.success(), "v1 keeps serving: {}", text(&out));
    assert_eq!(
        h.containers(),
        [format!("{}-blue v1", h.name), green.clone()],
        "the half-started v2 is there, without traffic"
    );

    // The next deploy waits for the lock, sees its heartbeat stop and takes it over.
    let out = h.switch(
        "deploy",
        Some("v2"),
        &["--lock-wait", "60", "--lock-stale-after", "2"],
    );
    assert!(out.status.success(), "recovering deploy: {}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("has had no heartbeat for"), "{err}");
    assert!(err.contains("taking the lock over"), "{err}");
    assert!(err.contains("(deploy v2)"), "names the dead deploy: {err}");
    assert!(
        err.contains(&format!(
            "removing {}-green, left by an interrupted deploy",
            h.name
        )),
        "{err}"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("v2 live on Green (was v1)"), "{stdout}");
    assert_eq!(h.containers(), [green]);
    assert!(!lock.exists(), "the lock is released");
    let out = health_through_nginx(&h);
    assert!(out.status.success(), "v2 serves: {}", text(&out));
}
