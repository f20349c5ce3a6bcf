//! Shared helpers of the integration tests: temporary directories under
//! `$FULLSLACK_TEST_RUNTIME`, free loopback ports, child processes killed on drop, and the chat
//! server binary.
#![allow(dead_code)]

use std::io::BufRead;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A temporary directory under `$FULLSLACK_TEST_RUNTIME` (or the system's temp dir).
pub fn tempdir() -> tempfile::TempDir {
    match std::env::var_os("FULLSLACK_TEST_RUNTIME") {
        Some(root) => {
            let root = PathBuf::from(root);
            std::fs::create_dir_all(&root).expect("create FULLSLACK_TEST_RUNTIME");
            tempfile::Builder::new()
                .prefix("cli-")
                .tempdir_in(root)
                .expect("tempdir in runtime")
        }
        None => tempfile::Builder::new()
            .prefix("fullslack-cli-")
            .tempdir()
            .expect("tempdir"),
    }
}

/// A short temporary directory (unix socket paths are limited to ~100 bytes).
pub fn short_tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("fs-")
        .tempdir_in("/tmp")
        .expect("tempdir in /tmp")
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A child process killed (and reaped) when dropped.
pub struct Proc {
    pub child: Child,
    pub name: String,
}

impl Proc {
    pub fn spawn(name: &str, cmd: &mut Command) -> Proc {
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Proc {
            child,
            name: name.to_string(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until a TCP port accepts connections.
pub fn wait_for_port(port: u16, timeout: Duration) {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("nothing listens on 127.0.0.1:{port} after {timeout:?}");
}

/// Path of a system program, or None (tests then fail with a clear message).
pub fn program(path: &str) -> PathBuf {
    let p = PathBuf::from(path);
    assert!(
        p.exists(),
        "{path} is missing: run scripts/test.sh (it installs the Debian packages the tests need)"
    );
    p
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"))
}

/// The chat server binary, built if missing.
pub fn chat_server_bin() -> PathBuf {
    let bin = target_dir().join("debug/fullslack-chat");
    if !bin.exists() {
        let status = Command::new(env!("CARGO"))
            .args(["build", "-p", "fullslack-chat"])
            .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
            .status()
            .expect("run cargo build -p fullslack-chat");
        assert!(status.success(), "cargo build -p fullslack-chat failed");
    }
    bin
}

/// A running chat server on a free loopback port.
pub struct ChatServer {
    pub proc: Proc,
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
    let dir = tempdir();
    let bin = chat_server_bin();
    let mut cmd = Command::new(&bin);
    cmd.args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    // The server reads its settings from FULLSLACK_* variables and refuses unknown ones
    // (FULLSLACK_TEST_RUNTIME, FULLSLACK_PROBE_PASSWORD…): give it a clean configuration.
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("FULLSLACK_") {
            cmd.env_remove(k);
        }
    }
    cmd.envs(env.iter().copied());
    let mut proc = Proc::spawn("fullslack-chat", &mut cmd);
    let stdout = proc.child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = std::io::BufReader::new(stdout).lines();
        if let Some(Ok(line)) = lines.next() {
            let _ = tx.send(line);
        }
        // Keep draining so the server never blocks on a full pipe.
        for _ in lines {}
    });
    let line = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("chat server printed no address line");
    let base = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("unexpected first line: {line}"))
        .trim_end_matches('/')
        .to_string();
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

/// A chat server started with exactly `env` (no other FULLSLACK_* variable, no flags), its
/// stderr collected (`stderr()`), or `Err(stderr)` when it exits without listening.
pub struct EnvServer {
    pub proc: Proc,
    pub base: String,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
}

impl EnvServer {
    /// What the server logged so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

pub fn spawn_chat_server_with_env(env: &[(String, String)]) -> Result<EnvServer, String> {
    let mut cmd = Command::new(chat_server_bin());
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("FULLSLACK_") {
            cmd.env_remove(k);
        }
    }
    cmd.envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut proc = Proc::spawn("fullslack-chat", &mut cmd);
    let stdout = proc.child.stdout.take().expect("stdout");
    let stderr = proc.child.stderr.take().expect("stderr");
    let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    {
        let log = log.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if let Ok(mut l) = log.lock() {
                    l.push_str(&line);
                    l.push('\n');
                }
            }
            let _ = done_tx.send(());
        });
    }
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = std::io::BufReader::new(stdout).lines();
        let _ = tx.send(lines.next().and_then(Result::ok));
        for _ in lines {}
    });
    match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(Some(line)) => {
            let base = line
                .split_whitespace()
                .find(|w| w.starts_with("http://"))
                .unwrap_or_else(|| panic!("unexpected first line: {line}"))
                .trim_end_matches('/')
                .to_string();
            Ok(EnvServer {
                proc,
                base,
                stderr: log,
            })
        }
        // stdout closed without a line: the server exited; its stderr says why.
        Ok(None) => {
            let _ = proc.child.wait();
            let _ = done_rx.recv_timeout(Duration::from_secs(10));
            let text = log.lock().map(|s| s.clone()).unwrap_or_default();
            Err(text)
        }
        Err(_) => panic!("chat server printed no address line within 30 s"),
    }
}

/// Runs `openssl` with arguments, panicking on failure.
pub fn openssl(args: &[&str], cwd: &Path) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A test CA and a server certificate for `names` (DNS names and 127.0.0.1), written to `dir`
/// as ca.pem, fullchain.pem and privkey.pem.
pub fn make_certs(dir: &Path, names: &[&str]) {
    openssl(
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=fullslack test CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
        dir,
    );
    openssl(
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "privkey.pem",
            "-out",
            "server.csr",
            "-subj",
            "/CN=fullslack test server",
        ],
        dir,
    );
    let mut san = names.iter().map(|n| format!("DNS:{n}")).collect::<Vec<_>>();
    san.push("IP:127.0.0.1".into());
    std::fs::write(
        dir.join("ext.cnf"),
        format!(
            "subjectAltName={}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
            san.join(",")
        ),
    )
    .expect("write ext");
    openssl(
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "fullchain.pem",
            "-days",
            "30",
            "-extfile",
            "ext.cnf",
        ],
        dir,
    );
}

/// The `fullslack` binary under test.
pub fn fullslack() -> Command {
    Command::new(env!("CARGO_BIN_EXE_fullslack"))
}
