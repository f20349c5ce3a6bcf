//! `fullslack logs` and `fullslack exec` on the live release's container of an ssh stand-in
//! host: the server's own log lines come back, `--since` filters them, `--follow` keeps
//! streaming, and `exec` runs a program of the image and carries its exit status.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use super::{text, Host};

#[test]
fn logs_and_exec_reach_the_live_release() {
    let h = Host::new();
    h.build("v1", None);
    let out = h.switch("deploy", Some("v1"), &[]);
    assert!(out.status.success(), "deploy v1: {}", text(&out));
    let state = h.state().display().to_string();

    // The server logs "ready" once it listens (stdout and stderr both come back).
    let out = h
        .cli(&["logs", "--state-dir", &state, "--tail", "200"])
        .output()
        .expect("run logs");
    assert!(out.status.success(), "logs: {}", text(&out));
    assert!(text(&out).contains("ready"), "logs: {}", text(&out));

    // Nothing was logged after a time in the future.
    let out = h
        .cli(&[
            "logs",
            "--state-dir",
            &state,
            "--since",
            "2099-01-01T00:00:00Z",
        ])
        .output()
        .expect("run logs --since");
    assert!(out.status.success(), "logs --since: {}", text(&out));
    assert!(
        !text(&out).contains("ready"),
        "logs --since: {}",
        text(&out)
    );

    // --follow streams: the line arrives while the command keeps running.
    let mut follow = h
        .cli(&["logs", "--state-dir", &state, "--follow"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run logs --follow");
    let stdout = follow.stdout.take().expect("stdout");
    let stderr = follow.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    for stream in [
        Box::new(stdout) as Box<dyn std::io::Read + Send>,
        Box::new(stderr),
    ] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
    }
    let start = Instant::now();
    let mut seen = Vec::new();
    while !seen.iter().any(|l: &String| l.contains("ready")) {
        let left = Duration::from_secs(30).saturating_sub(start.elapsed());
        match rx.recv_timeout(left) {
            Ok(l) => seen.push(l),
            Err(e) => panic!("logs --follow showed no `ready` line ({e}): {seen:#?}"),
        }
    }
    assert!(
        follow.try_wait().expect("try_wait").is_none(),
        "logs --follow ended by itself"
    );
    // SIGTERM (as Ctrl-C) ends it cleanly: exit 0, its SSH connection closed.
    let term = std::process::Command::new("kill")
        .arg(follow.id().to_string())
        .status()
        .expect("kill");
    assert!(term.success());
    let start = Instant::now();
    let status = loop {
        if let Some(s) = follow.try_wait().expect("try_wait") {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "logs --follow did not end on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "logs --follow after SIGTERM: {status}");

    // exec runs a program of the image in the live container.
    let out = h
        .cli(&["exec", "--state-dir", &state])
        .args(["--", "/usr/local/bin/fullslack-chat", "--version"])
        .output()
        .expect("run exec");
    assert!(out.status.success(), "exec: {}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("fullslack"),
        "exec: {}",
        text(&out)
    );
    let out = h
        .cli(&["exec", "--state-dir", &state])
        .args(["--", "/usr/local/bin/no-such-program"])
        .output()
        .expect("run exec");
    assert_eq!(
        out.status.code(),
        Some(1),
        "exec of a missing program: {}",
        text(&out)
    );
    assert!(text(&out).contains("exited with status"), "{}", text(&out));
}
