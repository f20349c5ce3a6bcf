//! The chat server as a separate process for tests outside its crate (the CLI's: health,
//! nginx, container environment), where `CARGO_BIN_EXE_fullslack-chat` is not known: the
//! binary is found in the target directory (built when missing) and started with a clean
//! `FULLSLACK_*` environment, so the test runner's own settings never leak into it.

use std::{
    io::{BufRead, BufReader, Read},
    path::PathBuf,
    process::{Command, Stdio},
    sync::{mpsc, Arc, Mutex},
    time::Duration,
};

use crate::{paths, process::ProcessGuard, server::base_url};

/// How long the binary may take to print its address on a busy machine.
const START_TIMEOUT: Duration = Duration::from_secs(30);

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| paths::workspace().join("target"), PathBuf::from)
}

/// The chat server binary, built if missing.
pub fn chat_server_bin() -> PathBuf {
    let bin = target_dir().join("debug/fullslack-chat");
    if !bin.exists() {
        let status = Command::new(env!("CARGO"))
            .args(["build", "-p", "fullslack-chat"])
            .current_dir(paths::workspace())
            .status()
            .expect("run cargo build -p fullslack-chat");
        assert!(status.success(), "cargo build -p fullslack-chat failed");
    }
    bin
}

/// `fullslack-chat` with no `FULLSLACK_*` variable of the test's environment: the server
/// refuses unknown ones (`FULLSLACK_TEST_RUNTIME`, `FULLSLACK_PROBE_PASSWORD`…).
fn clean_command() -> Command {
    let mut cmd = Command::new(chat_server_bin());
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("FULLSLACK_") {
            cmd.env_remove(k);
        }
    }
    cmd
}

/// Reads the first line of `out` on a thread (then keeps draining, so the process never
/// blocks on a full pipe); the line arrives on the returned channel, `None` at end of file.
fn first_line(out: impl Read + Send + 'static) -> mpsc::Receiver<Option<String>> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(out).lines();
        let _ = tx.send(lines.next().and_then(Result::ok));
        for _ in lines {}
    });
    rx
}

/// The base URL in the first line, panicking when the server said something else.
fn expect_base(line: &str) -> String {
    base_url(line).unwrap_or_else(|| panic!("unexpected first line: {line}"))
}

/// A running chat server on a free loopback port, its data in a temporary directory.
pub struct ChatServer {
    pub proc: ProcessGuard,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    pub port: u16,
    _dir: tempfile::TempDir,
}

/// Starts `fullslack-chat --listen 127.0.0.1:0 --data-dir DIR` and reads its address from the
/// first stdout line.
pub fn start_chat_server() -> ChatServer {
    start_chat_server_with(&[])
}

/// [`start_chat_server`] with settings in the environment (`FULLSLACK_…`).
pub fn start_chat_server_with(env: &[(&str, &str)]) -> ChatServer {
    let dir = paths::tempdir();
    let mut cmd = clean_command();
    cmd.args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start fullslack-chat: {e}"));
    let stdout = child.stdout.take().expect("stdout is piped");
    let proc = ProcessGuard::new(child);
    let line = first_line(stdout)
        .recv_timeout(START_TIMEOUT)
        .ok()
        .flatten()
        .expect("chat server printed no address line");
    let base = expect_base(&line);
    let port = base
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port in address");
    ChatServer {
        proc,
        base,
        port,
        _dir: dir,
    }
}

/// A chat server started with exactly the given environment (no flags), its stderr collected.
pub struct EnvServer {
    pub proc: ProcessGuard,
    pub base: String,
    stderr: Arc<Mutex<String>>,
}

impl EnvServer {
    /// What the server logged so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

/// Collects `err`'s lines into the returned log on a thread; the receiver hears when it ended.
fn collect_log(err: impl Read + Send + 'static) -> (Arc<Mutex<String>>, mpsc::Receiver<()>) {
    let log = Arc::new(Mutex::new(String::new()));
    let (done_tx, done_rx) = mpsc::channel();
    let sink = log.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            if let Ok(mut l) = sink.lock() {
                l.push_str(&line);
                l.push('\n');
            }
        }
        let _ = done_tx.send(());
    });
    (log, done_rx)
}

/// Starts the server with exactly `env`; `Err(stderr)` when it exits without listening.
pub fn spawn_chat_server_with_env(env: &[(String, String)]) -> Result<EnvServer, String> {
    let mut cmd = clean_command();
    cmd.envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start fullslack-chat: {e}"));
    let stdout = child.stdout.take().expect("stdout is piped");
    let stderr = child.stderr.take().expect("stderr is piped");
    let mut proc = ProcessGuard::new(child);
    let (log, log_done) = collect_log(stderr);
    match first_line(stdout).recv_timeout(START_TIMEOUT) {
        Ok(Some(line)) => Ok(EnvServer {
            proc,
            base: expect_base(&line),
            stderr: log,
        }),
        // stdout closed without a line: the server exited; its stderr says why.
        Ok(None) => {
            proc.wait();
            let _ = log_done.recv_timeout(Duration::from_secs(10));
            let text = log.lock().map(|s| s.clone()).unwrap_or_default();
            Err(text)
        }
        Err(_) => panic!("chat server printed no address line within 30 s"),
    }
}
