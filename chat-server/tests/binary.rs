//! The real `fullslack-chat` binary: prints its URL first, serves, and on SIGTERM closes every
//! socket with 1012 and exits cleanly.

mod common;

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    time::Duration,
};

use common::{Client, Ws};
use nix::{sys::signal::Signal, unistd::Pid};

#[tokio::test]
async fn binary_prints_its_url_and_exits_cleanly_on_sigterm() {
    let dir = common::tempdir();
    let mut child = Command::new(env!("CARGO_BIN_EXE_fullslack-chat"))
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env("FULLSLACK_RATE_LIMIT__AUTH_BURST", "100")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let base = line
        .trim()
        .strip_prefix("fullslack-chat listening on ")
        .expect("first line names the URL")
        .to_string();
    assert!(
        dir.path().join("jwt-secret").exists(),
        "local mode keeps a generated secret"
    );
    assert!(dir.path().join("fullslack.db").exists());

    let server = common::TestServer::remote(&base);
    let alice = Client::register(&server, "alice").await;
    let mut ws = Ws::connect(&alice.ws_url, &alice.token).await;
    ws.resume(Default::default()).await;

    nix::sys::signal::kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
    let close = ws.next_where(|f| f["type"] == "__close").await;
    assert_eq!(close["code"], 1012);
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success(), "{status}");
    let _ = Duration::ZERO;
}

#[test]
fn production_mode_without_a_secret_refuses_to_start() {
    let dir = common::tempdir();
    let out = Command::new(env!("CARGO_BIN_EXE_fullslack-chat"))
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env("FULLSLACK_MODE", "production")
        .env_remove("FULLSLACK_AUTH__JWT_SECRET")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("FULLSLACK_AUTH__JWT_SECRET"), "{err}");
}

#[test]
fn a_broken_config_file_is_refused_with_the_key() {
    let dir = common::tempdir();
    let cfg = dir.path().join("chat.toml");
    std::fs::write(&cfg, "[limits]\nmax_mesage_len = 10\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_fullslack-chat"))
        .arg("--config")
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("max_mesage_len"), "{err}");
}
