//! A moto server (AWS API emulator) per test: its own free loopback port and its own state, so
//! tests running in parallel (nextest runs each in its own process) never see each other's
//! resources. moto lives in a venv that `scripts/moto.sh install` creates (scripts/test.sh
//! runs it; this helper runs it too, under a file lock, when the venv is missing).

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::{
    paths::{test_runtime, workspace},
    ports::free_port,
    process::ProcessGuard,
};

fn moto_server_bin() -> PathBuf {
    let bin = test_runtime().join("venv-moto/bin/moto_server");
    if !bin.exists() {
        std::fs::create_dir_all(test_runtime()).expect("create runtime dir");
        // flock: parallel tests must not build the venv at the same time.
        let status = Command::new("flock")
            .arg(test_runtime().join("moto-install.lock"))
            .arg(workspace().join("scripts/moto.sh"))
            .arg("install")
            .env("FULLSLACK_TEST_RUNTIME", test_runtime())
            .status()
            .expect("run scripts/moto.sh install");
        assert!(status.success(), "scripts/moto.sh install failed");
    }
    bin
}

/// A running moto server.
pub struct Moto {
    pub proc: ProcessGuard,
    pub url: String,
    pub port: u16,
}

impl Moto {
    /// Starts moto. `ecs_running`: what ECS services report as running tasks
    /// (`MOTO_ECS_SERVICE_RUNNING`); None leaves it unset (services never become stable).
    pub fn start(ecs_running: Option<u32>) -> Moto {
        Moto::start_with(ecs_running, &[])
    }

    /// Like [`Moto::start`], with extra environment for moto (e.g. IAM enforcement).
    pub fn start_with(ecs_running: Option<u32>, env: &[(&str, &str)]) -> Moto {
        let bin = moto_server_bin();
        let port = free_port();
        let mut cmd = Command::new(bin);
        cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        match ecs_running {
            Some(n) => cmd.env("MOTO_ECS_SERVICE_RUNNING", n.to_string()),
            None => cmd.env_remove("MOTO_ECS_SERVICE_RUNNING"),
        };
        for (k, v) in env {
            cmd.env(k, v);
        }
        let proc = ProcessGuard::spawn("moto_server", &mut cmd);
        let url = format!("http://127.0.0.1:{port}");
        let start = Instant::now();
        loop {
            if reqwest::blocking::get(format!("{url}/moto-api/"))
                .map(|r| r.status().is_success())
                .unwrap_or(false)
            {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "moto did not answer on {url} within 60 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Moto { proc, url, port }
    }

    /// Points a command at this moto with static test credentials, and nothing of the
    /// machine's own AWS configuration.
    pub fn env(&self, cmd: &mut Command) {
        for (k, _) in std::env::vars_os() {
            let k = k.to_string_lossy().to_string();
            if k.starts_with("AWS_") || k.starts_with("FULLSLACK_") {
                cmd.env_remove(k);
            }
        }
        cmd.env("AWS_ENDPOINT_URL", &self.url)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null");
    }

    /// Sets this process's environment the same way, for library calls from the test itself.
    /// Every test is its own process under nextest, so this does not leak between tests.
    pub fn env_here(&self) {
        // Called before the test builds its tokio runtime, so no other thread reads the
        // environment meanwhile.
        std::env::set_var("AWS_ENDPOINT_URL", &self.url);
        std::env::set_var("AWS_ACCESS_KEY_ID", "testing");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "testing");
        std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
        std::env::set_var("AWS_CONFIG_FILE", "/dev/null");
        std::env::set_var("AWS_SHARED_CREDENTIALS_FILE", "/dev/null");
        std::env::remove_var("AWS_PROFILE");
        std::env::remove_var("AWS_SESSION_TOKEN");
    }
}
