//! Real backing services for tests: one `redis-server` and one SecantusDB (a MongoDB
//! wire-compatible server) per test, each on its own free loopback port with its own scratch
//! directory, stoppable and restartable on the same port (and, for MongoDB, the same data) so
//! tests can take them away mid-conversation. Both are killed when dropped.
//!
//! `scripts/test.sh` installs them: `redis-server` from Debian, SecantusDB into
//! `$FULLSLACK_TEST_RUNTIME/venv-secantus` (through `scripts/secantus.sh`). When either is
//! missing the test fails and says so rather than passing without them.
//!
//! The calls block (process start-up, polling for readiness); they take well under a second
//! except `MongoServer::stop`, which waits for SecantusDB's clean shutdown (~3.5 s).
#![allow(dead_code)]

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use nix::{sys::signal::Signal, unistd::Pid};

/// How long a service may take to accept connections on a slow, shared machine.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a graceful stop may take before the process is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// The directory test tools are installed in and scratch files go to; `scripts/test.sh` sets
/// `FULLSLACK_TEST_RUNTIME`, a direct `cargo nextest run` falls back to the same default.
pub use fullslack_test_support::paths::test_runtime;

/// A port that was free a moment ago (starts retry with a new port when the service exits
/// early: another process can take it first).
pub use fullslack_test_support::free_port;

/// Why a service did not come up.
#[derive(Debug)]
enum SpawnError {
    /// The program is not installed: no retry helps.
    Missing(String),
    /// It started and exited, typically because its port was taken.
    Exited(String),
}

impl std::fmt::Display for SpawnError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SpawnError::Missing(m) | SpawnError::Exited(m) => f.write_str(m),
        }
    }
}

/// One external server process on a fixed loopback port; restarts reuse the port.
struct Service {
    name: &'static str,
    port: u16,
    log: PathBuf,
    child: Option<Child>,
}

impl Service {
    /// Spawns `cmd` (already told to listen on `self.port`) and waits until `ready` accepts
    /// it. Returns `Err` with the log when the process exits first (port taken, bad flags).
    fn spawn(&mut self, mut cmd: Command, ready: fn(u16) -> bool) -> Result<(), SpawnError> {
        assert!(self.child.is_none(), "{} is already running", self.name);
        // Appended to, so a restart keeps what the previous run said.
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open service log");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log handle"))
            .stderr(log)
            .spawn()
            .map_err(|e| {
                SpawnError::Missing(format!(
                    "cannot start {}: {e}; run scripts/test.sh, which installs it",
                    self.name
                ))
            })?;
        self.child = Some(child);
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if ready(self.port) {
                return Ok(());
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                return Err(SpawnError::Exited(format!(
                    "{} exited ({status}) before accepting connections on port {}:\n{}",
                    self.name,
                    self.port,
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                )));
            }
            if Instant::now() > deadline {
                self.kill();
                panic!(
                    "{} did not accept connections on port {} within {READY_TIMEOUT:?}:\n{}",
                    self.name,
                    self.port,
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends `signal` and waits for the process to exit, killing it after [`STOP_TIMEOUT`].
    fn signal_and_wait(&mut self, signal: Signal) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::kill(pid, signal);
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            if child.try_wait().unwrap().is_some() {
                return;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill(&mut self) {
        self.signal_and_wait(Signal::SIGKILL);
    }

    fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(c) => c.try_wait().unwrap().is_none(),
            None => false,
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.kill();
    }
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Starts a service on a fresh free port, retrying with another port when the first one was
/// taken between picking and binding.
fn start_on_free_port(
    name: &'static str,
    log: PathBuf,
    command: impl Fn(u16) -> Command,
    ready: fn(u16) -> bool,
) -> Service {
    let mut last = String::new();
    for _ in 0..5 {
        let mut svc = Service {
            name,
            port: free_port(),
            log: log.clone(),
            child: None,
        };
        match svc.spawn(command(svc.port), ready) {
            Ok(()) => return svc,
            Err(SpawnError::Missing(e)) => panic!("{e}"),
            Err(SpawnError::Exited(e)) => last = e,
        }
    }
    panic!("{name} did not start on any of 5 free ports; last attempt:\n{last}");
}

// ---- Redis ------------------------------------------------------------------------------------

/// A private `redis-server` on 127.0.0.1, no persistence.
pub struct RedisServer {
    svc: Service,
    dir: Arc<tempfile::TempDir>,
}

fn redis_command(dir: &Path, port: u16) -> Command {
    let mut cmd = Command::new("redis-server");
    // In the foreground (no --daemonize) so the test owns the process and can signal it.
    cmd.args(["--port", &port.to_string()])
        .args(["--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(dir)
        .current_dir(dir);
    cmd
}

/// Answers `PING` with `+PONG` (a bare connect succeeds before Redis has loaded).
fn redis_ready(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&addr(port), Duration::from_millis(200)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    if s.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 7];
    s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
}

impl RedisServer {
    pub fn start() -> RedisServer {
        let dir = super::tempdir();
        let d = dir.path().to_path_buf();
        let svc = start_on_free_port(
            "redis-server",
            dir.path().join("redis.log"),
            move |port| redis_command(&d, port),
            redis_ready,
        );
        RedisServer { svc, dir }
    }

    /// `redis://127.0.0.1:PORT/`
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.svc.port)
    }

    pub fn port(&self) -> u16 {
        self.svc.port
    }

    /// Stops it (SIGTERM; without persistence it exits at once). Clients see the connection
    /// close and new connections refused until [`RedisServer::restart`].
    pub fn stop(&mut self) {
        self.svc.signal_and_wait(Signal::SIGTERM);
    }

    /// Kills it without warning (SIGKILL).
    pub fn kill(&mut self) {
        self.svc.kill();
    }

    /// Starts it again on the same port (stopping it first if it still runs), empty as Redis
    /// without persistence comes back.
    pub fn restart(&mut self) {
        self.stop();
        let cmd = redis_command(self.dir.path(), self.svc.port);
        // The port was ours a moment ago; a stranger taking it in between is a real failure.
        self.svc
            .spawn(cmd, redis_ready)
            .unwrap_or_else(|e| panic!("redis-server restart: {e}"));
    }

    pub fn is_running(&mut self) -> bool {
        self.svc.is_running()
    }
}

// ---- MongoDB (SecantusDB) ---------------------------------------------------------------------

/// A private SecantusDB on 127.0.0.1 with its own data directory, which survives restarts.
pub struct MongoServer {
    svc: Service,
    dir: Arc<tempfile::TempDir>,
    bin: PathBuf,
}

fn secantus_bin() -> PathBuf {
    let bin = test_runtime().join("venv-secantus/bin/secantusd-py");
    assert!(
        bin.is_file(),
        "SecantusDB is not installed at {}: run scripts/test.sh (it installs it through \
         scripts/secantus.sh into $FULLSLACK_TEST_RUNTIME/venv-secantus)",
        bin.display()
    );
    bin
}

fn mongo_command(bin: &Path, dir: &Path, port: u16) -> Command {
    let mut cmd = Command::new(bin);
    cmd.args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .arg("--storage-path")
        .arg(dir.join("data"))
        // Acknowledged writes survive a SIGKILL, as with mongod's journaled write concern;
        // without it SecantusDB loses the last commits on a kill, and the store-down tests
        // kill it.
        .arg("--sync-on-commit")
        // `configureFailPoint`: a test holds one node inside a transaction to kill it there.
        // Loopback only, like every test service.
        .arg("--enable-test-commands")
        // It looks for ./secantusd.toml: run it where there is none.
        .current_dir(dir);
    cmd
}

fn tcp_ready(port: u16) -> bool {
    TcpStream::connect_timeout(&addr(port), Duration::from_millis(200)).is_ok()
}

impl MongoServer {
    pub fn start() -> MongoServer {
        let bin = secantus_bin();
        let dir = super::tempdir();
        let (b, d) = (bin.clone(), dir.path().to_path_buf());
        let svc = start_on_free_port(
            "secantusd-py",
            dir.path().join("secantusd.log"),
            move |port| mongo_command(&b, &d, port),
            tcp_ready,
        );
        MongoServer { svc, dir, bin }
    }

    /// `mongodb://127.0.0.1:PORT/DB`: one server, any number of databases (one per test).
    pub fn url(&self, db_name: &str) -> String {
        format!("mongodb://127.0.0.1:{}/{db_name}", self.svc.port)
    }

    pub fn port(&self) -> u16 {
        self.svc.port
    }

    /// Clean shutdown (SIGTERM; SecantusDB needs ~3.5 s to close WiredTiger).
    pub fn stop(&mut self) {
        self.svc.signal_and_wait(Signal::SIGTERM);
    }

    /// Kills it without warning (SIGKILL): what a crash looks like to the chat server.
    pub fn kill(&mut self) {
        self.svc.kill();
    }

    /// Starts it again on the same port and data directory (stopping it first if needed).
    pub fn restart(&mut self) {
        self.stop();
        let cmd = mongo_command(&self.bin, self.dir.path(), self.svc.port);
        self.svc
            .spawn(cmd, tcp_ready)
            .unwrap_or_else(|e| panic!("secantusd-py restart: {e}"));
    }

    pub fn is_running(&mut self) -> bool {
        self.svc.is_running()
    }

    /// Where its log goes (stdout and stderr), for failure messages.
    pub fn log_path(&self) -> PathBuf {
        self.svc.log.clone()
    }
}
