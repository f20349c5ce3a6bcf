//! What the browser test runs against: the real chat server, chromedriver, and a headless
//! Chromium per user, all writing into the run's output directory.

use std::{
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use fantoccini::{Client, ClientBuilder};
use fullslack_test_support::{free_port, server::spawn_chat_server, ProcessGuard};
use serde_json::json;

use crate::{SEND_INTERVAL, WAIT};

/// A child process leading its own process group, the whole group killed (and the child
/// reaped) on drop: chromedriver's Chromium processes too, even when a failed assertion
/// skipped closing the WebDriver sessions.
pub(crate) struct ProcessGroup(Child);

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.0.id())])
            .status();
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Where this run writes its server data, browser profiles, logs and screenshots.
pub(crate) fn output_dir() -> (PathBuf, Option<tempfile::TempDir>) {
    match std::env::var_os("FULLSLACK_TEST_RUNTIME") {
        Some(root) => {
            let stamp = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis();
            let dir = PathBuf::from(root).join(format!("browser-{}-{stamp}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            (dir, None)
        }
        None => {
            let tmp = tempfile::Builder::new()
                .prefix("fullslack-browser-")
                .tempdir()
                .unwrap();
            (tmp.path().to_path_buf(), Some(tmp))
        }
    }
}

/// Starts the real chat server (its log in `dir`); returns it and its base URL.
pub(crate) async fn start_server(dir: &Path) -> (ProcessGuard, String) {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_fullslack-chat"));
    cmd.args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        // The server reads every FULLSLACK_* variable as a setting and refuses unknown ones
        // (see docs/web-client.md, known server issues): do not pass the test's own.
        .env_remove("FULLSLACK_TEST_RUNTIME")
        .env_remove("FULLSLACK_CHROME_ARGS")
        .env("FULLSLACK_RATE_LIMIT__SEND_BURST", "100")
        .env(
            "FULLSLACK_RATE_LIMIT__SEND_INTERVAL_MS",
            SEND_INTERVAL.as_millis().to_string(),
        );
    // Start-up (SQLite, the JWT secret) on a busy machine: generous, it only bounds a failure.
    let server = spawn_chat_server(cmd, &dir.join("server.log"), Duration::from_secs(60))
        .await
        .unwrap_or_else(|log| panic!("fullslack-chat did not start; its log:\n{log}"));
    (server.process, server.base)
}

/// Starts chromedriver on a free loopback port and waits until it answers.
pub(crate) async fn start_chromedriver(dir: &Path) -> (ProcessGroup, String) {
    let port = free_port();
    let log = std::fs::File::create(dir.join("chromedriver.log")).unwrap();
    let child = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .process_group(0)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start chromedriver (install Debian's chromium-driver: scripts/test.sh does)");
    let proc = ProcessGroup(child);
    let url = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let start = Instant::now();
    loop {
        if let Ok(r) = http.get(format!("{url}/status")).send().await {
            if r.status().is_success() {
                break;
            }
        }
        assert!(start.elapsed() < WAIT, "chromedriver did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (proc, url)
}

/// A headless Chromium session of `width`×`height` with its own profile directory.
pub(crate) async fn browser(driver: &str, profile: &Path, width: u32, height: u32) -> Client {
    std::fs::create_dir_all(profile).unwrap();
    let mut args = vec![
        "--headless".to_string(),
        "--no-sandbox".into(),
        "--disable-gpu".into(),
        "--disable-quic".into(),
        "--no-first-run".into(),
        "--disable-background-networking".into(),
        "--disable-component-update".into(),
        "--disable-sync".into(),
        "--disable-dev-shm-usage".into(),
        "--hide-scrollbars".into(),
        "--force-color-profile=srgb".into(),
        "--lang=en-US".into(),
        format!("--window-size={width},{height}"),
        format!("--user-data-dir={}", profile.display()),
    ];
    if let Ok(extra) = std::env::var("FULLSLACK_CHROME_ARGS") {
        args.extend(extra.split_whitespace().map(String::from));
    }
    let mut opts = json!({ "args": args });
    if Path::new("/usr/bin/chromium").exists() {
        opts["binary"] = json!("/usr/bin/chromium");
    }
    let mut caps = serde_json::Map::new();
    caps.insert("browserName".into(), json!("chrome"));
    caps.insert("goog:chromeOptions".into(), opts);
    ClientBuilder::native()
        .capabilities(caps)
        .connect(driver)
        .await
        .expect("WebDriver session")
}
