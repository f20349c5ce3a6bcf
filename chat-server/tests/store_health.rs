//! The real `fullslack-chat` binary when every write fails while reads still work (a full
//! disk): `/readyz` says not ready, the log holds one WARN for the outage instead of one per
//! failed write, and both recover once writes work again.
//!
//! The full disk is the process's file size limit (`RLIMIT_FSIZE`, with `SIGXFSZ` ignored so a
//! write past it fails with `EFBIG` instead of killing the process): SQLite's write-ahead log
//! cannot grow, so every commit fails, while reads keep answering. `prlimit` lifts the limit of
//! the running server afterwards. Nothing needs root.

mod common;

use std::{
    io::{BufRead, BufReader},
    os::unix::process::CommandExt,
    process::{Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use common::Client;
use nix::{
    sys::{
        resource::{setrlimit, Resource},
        signal::{signal, SigHandler, Signal},
    },
    unistd::Pid,
};
use serde_json::{json, Value};

/// The server's file size limit: room for start-up and a few writes, then nothing.
const FSIZE_LIMIT: u64 = 1 << 20;

/// Kills the server if the test fails half-way (a passing test stops it with SIGTERM).
struct KillOnDrop(u32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(Pid::from_raw(self.0 as i32), Signal::SIGKILL);
    }
}

/// The WARN lines of the server's JSON log about the store.
fn store_warnings(log: &Mutex<Vec<Value>>) -> Vec<Value> {
    log.lock()
        .unwrap()
        .iter()
        .filter(|l| {
            l["level"] == "WARN"
                && l["fields"]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("store"))
        })
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_is_not_ready_while_writes_fail_and_the_log_is_not_flooded() {
    let dir = common::tempdir();
    let (mut child, base, log) = spawn_with_a_small_file_size_limit(dir.path());
    let pid = child.id();
    let guard = KillOnDrop(pid);
    let server = common::TestServer::remote(&base);
    assert_eq!(readyz(&base).await.0, 200, "ready at start");

    let alice = Client::register(&server, "alice").await;
    let ch = alice.create_channel("general", "public", &[]).await;
    send_until_writes_fail(&alice, &ch).await;
    let failing_since = Instant::now();
    // Reads still work, and used to make readiness say "ready".
    alice.ok_get(&format!("/api/channels/{ch}/messages")).await;
    let (status, body) = readyz(&base).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status"], "not ready", "{body}");
    assert!(
        body["store"].as_str().unwrap().contains("writes failing"),
        "{body}"
    );

    // Many more failed writes: one WARN for the outage (plus at most one summary per 10 s).
    for i in 0..100 {
        let (status, _) = alice
            .post(
                &format!("/api/channels/{ch}/messages"),
                json!({"text": "x".repeat(2000), "client_id": format!("f{i}")}),
            )
            .await;
        assert_eq!(status, 503);
    }
    assert_eq!(readyz(&base).await.0, 503, "still not ready");
    let allowed = 1 + (failing_since.elapsed().as_secs() / 10) as usize + 1;
    let warnings = store_warnings(&log);
    assert!(
        !warnings.is_empty() && warnings.len() <= allowed,
        "{} store warnings for 101 failed writes (at most {allowed}): {warnings:?}",
        warnings.len()
    );

    // Room again: readiness probes with a write and comes back; so do sends.
    lift_the_limit_and_wait_until_ready(pid, &base).await;
    let (status, body) = alice
        .post(
            &format!("/api/channels/{ch}/messages"),
            json!({"text": "back", "client_id": "back"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    wait_until_the_recovery_is_logged(&log).await;

    nix::sys::signal::kill(Pid::from_raw(pid as i32), Signal::SIGTERM).unwrap();
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success(), "{status}");
    std::mem::forget(guard);
}

/// `/readyz` of the server at `base`: status and body.
async fn readyz(base: &str) -> (u16, Value) {
    let r = reqwest::get(format!("{base}/readyz")).await.unwrap();
    let status = r.status().as_u16();
    (status, r.json::<Value>().await.unwrap())
}

/// Starts the server on `dir` with [`FSIZE_LIMIT`] as its file size limit and a JSON log;
/// returns it, its base URL and its log lines as they come.
fn spawn_with_a_small_file_size_limit(
    dir: &std::path::Path,
) -> (std::process::Child, String, Arc<Mutex<Vec<Value>>>) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_fullslack-chat"));
    cmd.args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir)
        .env("FULLSLACK_LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .env("FULLSLACK_RATE_LIMIT__AUTH_BURST", "100")
        .env("FULLSLACK_RATE_LIMIT__SEND_BURST", "10000")
        .env("FULLSLACK_RATE_LIMIT__SEND_PER_SEC", "10000")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: only async-signal-safe calls (setrlimit, sigaction) between fork and exec.
    // The one unsafe block of the workspace: pre_exec is unsafe by nature.
    #[allow(unsafe_code)]
    unsafe {
        cmd.pre_exec(|| {
            signal(Signal::SIGXFSZ, SigHandler::SigIgn).map_err(std::io::Error::from)?;
            // Only the soft limit: anyone may raise it again up to the (unlimited) hard one.
            setrlimit(
                Resource::RLIMIT_FSIZE,
                FSIZE_LIMIT,
                nix::libc::RLIM_INFINITY,
            )
            .map_err(std::io::Error::from)?;
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    let log = Arc::new(Mutex::new(Vec::<Value>::new()));
    {
        let log = log.clone();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    log.lock().unwrap().push(v);
                }
            }
        });
    }
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let base = line
        .trim()
        .strip_prefix("fullslack-chat listening on ")
        .expect("first line names the URL")
        .to_string();
    (child, base, log)
}

/// Sends until the write-ahead log cannot grow any more: every write from then on fails.
async fn send_until_writes_fail(alice: &Client, ch: &str) {
    let mut sent = 0;
    loop {
        let (status, body) = alice
            .post(
                &format!("/api/channels/{ch}/messages"),
                json!({"text": "x".repeat(2000), "client_id": format!("c{sent}")}),
            )
            .await;
        if status == 503 {
            assert_eq!(body["error"]["code"], "unavailable", "{body}");
            break;
        }
        assert_eq!(status, 201, "{body}");
        sent += 1;
        assert!(sent < 5000, "the size limit never bit");
    }
}

/// Lifts the server's file size limit; it stays not ready for 5 s after the last failed
/// write, then a write probe decides.
async fn lift_the_limit_and_wait_until_ready(pid: u32, base: &str) {
    let lifted = Command::new("prlimit")
        .args(["--pid", &pid.to_string(), "--fsize=unlimited"])
        .output()
        .expect("prlimit runs");
    assert!(
        lifted.status.success(),
        "prlimit: {}",
        String::from_utf8_lossy(&lifted.stderr)
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = readyz(base).await;
        if status == 200 {
            assert_eq!(body["status"], "ready", "{body}");
            break;
        }
        assert!(Instant::now() < deadline, "never ready again: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the server logged that store writes work again.
async fn wait_until_the_recovery_is_logged(log: &Mutex<Vec<Value>>) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !log
        .lock()
        .unwrap()
        .iter()
        .any(|l| l["level"] == "INFO" && l["fields"]["message"] == "store writes work again")
    {
        assert!(Instant::now() < deadline, "the recovery is logged");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
