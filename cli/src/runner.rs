//! Runners execute [`Cmd`] values: locally through `sh -c`, over SSH (openssh, native mux), or
//! by recording them (`--dry-run`, tests). Besides single commands, a runner streams bytes into a
//! command (a `docker save` of this machine into `docker load` on the host: no registry) and
//! makes a port on the host's loopback reachable from here (SSH port forwarding), so that the
//! deploy's health gate talks to a new release before Nginx sends it any traffic. A command can
//! also run attached to this process's stdout and stderr (`logs --follow`, `exec`), its output
//! shown as it comes.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Mutex;

use tokio::io::{AsyncRead, AsyncWriteExt};

use crate::commands::Cmd;

/// What a command produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// Exit status (-1 when killed by a signal).
    pub status: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Output {
    /// Whether the command exited 0.
    pub fn success(&self) -> bool {
        self.status == 0
    }
}

/// Errors of the runner boundary.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The command could not be started.
    #[error("cannot start `{cmd}` on {host}: {source}")]
    Spawn {
        /// Where.
        host: String,
        /// Redacted command.
        cmd: String,
        /// Cause.
        source: std::io::Error,
    },
    /// The SSH connection failed.
    #[error("ssh to {host} failed: {source}")]
    Ssh {
        /// Where.
        host: String,
        /// Cause.
        source: openssh::Error,
    },
    /// The command ran and failed.
    #[error("`{cmd}` failed on {host} with exit status {status}: {stderr}")]
    Failed {
        /// Where.
        host: String,
        /// Redacted command.
        cmd: String,
        /// Exit status.
        status: i32,
        /// Its standard error, trimmed.
        stderr: String,
    },
}

impl RunError {
    /// `cmd` ran on `host` and exited non-zero with `out`.
    pub fn failed(host: String, cmd: &Cmd, out: &Output) -> RunError {
        RunError::Failed {
            host,
            cmd: cmd.to_string(),
            status: out.status,
            stderr: out.stderr.trim().to_string(),
        }
    }

    /// How to fix it.
    pub fn hint(&self) -> &'static str {
        match self {
            RunError::Spawn { .. } => "check that the program is installed on that host",
            RunError::Ssh { .. } => {
                "check `ssh -p PORT USER@HOST true` works: host key in known_hosts, key loaded, port open"
            }
            RunError::Failed { .. } => "read the command's error above; rerun with -v for the full log",
        }
    }
}

/// Executes commands somewhere.
pub trait Runner: Send + Sync {
    /// Host label for messages.
    fn host(&self) -> String;

    /// Runs one command and returns its output, whatever its exit status.
    fn run(&self, cmd: &Cmd) -> impl std::future::Future<Output = Result<Output, RunError>> + Send;

    /// Runs one command with its standard input streamed from `input` (which may be far larger
    /// than memory); its output and how many bytes were sent.
    fn run_streaming<I: AsyncRead + Unpin + Send>(
        &self,
        cmd: &Cmd,
        input: I,
    ) -> impl std::future::Future<Output = Result<(Output, u64), RunError>> + Send;

    /// Runs one command with its stdout and stderr going straight to this process's (shown as
    /// they come, never held in memory: `docker logs --follow`); stdin is empty. Its exit
    /// status (-1 when killed by a signal).
    fn run_attached(
        &self,
        cmd: &Cmd,
    ) -> impl std::future::Future<Output = Result<i32, RunError>> + Send;

    /// A port on this machine's loopback that reaches `port` on the host's loopback (the same
    /// port locally; an SSH local forward, open until the connection closes, over SSH).
    fn reach(&self, port: u16) -> impl std::future::Future<Output = Result<u16, RunError>> + Send;

    /// Runs one command and fails on a non-zero exit status.
    fn check(
        &self,
        cmd: &Cmd,
    ) -> impl std::future::Future<Output = Result<Output, RunError>> + Send {
        async move {
            let out = self.run(cmd).await?;
            if out.success() {
                Ok(out)
            } else {
                Err(RunError::failed(self.host(), cmd, &out))
            }
        }
    }
}

/// Runs on this machine through `sh -c`.
#[derive(Debug, Default, Clone)]
pub struct LocalRunner;

impl Runner for LocalRunner {
    fn host(&self) -> String {
        "localhost".into()
    }

    async fn run(&self, cmd: &Cmd) -> Result<Output, RunError> {
        tracing::debug!(host = "localhost", cmd = %cmd, "run");
        let spawn_err = |source| RunError::Spawn {
            host: "localhost".into(),
            cmd: cmd.to_string(),
            source,
        };
        let mut child = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(cmd.to_shell())
            .stdin(if cmd.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(spawn_err)?;
        if let (Some(data), Some(mut stdin)) = (&cmd.stdin, child.stdin.take()) {
            stdin.write_all(data.bytes()).await.map_err(spawn_err)?;
            drop(stdin);
        }
        let out = child.wait_with_output().await.map_err(spawn_err)?;
        Ok(Output {
            status: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }

    async fn run_streaming<I: AsyncRead + Unpin + Send>(
        &self,
        cmd: &Cmd,
        mut input: I,
    ) -> Result<(Output, u64), RunError> {
        tracing::debug!(host = "localhost", cmd = %cmd, "run, stdin streamed");
        let spawn_err = |source| RunError::Spawn {
            host: "localhost".into(),
            cmd: cmd.to_string(),
            source,
        };
        let mut child = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(cmd.to_shell())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(spawn_err)?;
        let mut stdin = child.stdin.take().ok_or_else(|| spawn_err(no_pipe()))?;
        let sent = tokio::io::copy(&mut input, &mut stdin)
            .await
            .map_err(spawn_err)?;
        stdin.shutdown().await.map_err(spawn_err)?;
        drop(stdin);
        let out = child.wait_with_output().await.map_err(spawn_err)?;
        Ok((output_of(&out.status, &out.stdout, &out.stderr), sent))
    }

    async fn run_attached(&self, cmd: &Cmd) -> Result<i32, RunError> {
        tracing::debug!(host = "localhost", cmd = %cmd, "run, attached");
        let status = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(cmd.to_shell())
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .status()
            .await
            .map_err(|source| RunError::Spawn {
                host: "localhost".into(),
                cmd: cmd.to_string(),
                source,
            })?;
        Ok(status.code().unwrap_or(-1))
    }

    async fn reach(&self, port: u16) -> Result<u16, RunError> {
        Ok(port)
    }
}

fn no_pipe() -> std::io::Error {
    std::io::Error::other("the child has no stdin pipe")
}

fn output_of(status: &std::process::ExitStatus, stdout: &[u8], stderr: &[u8]) -> Output {
    Output {
        status: status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(stdout).into_owned(),
        stderr: String::from_utf8_lossy(stderr).into_owned(),
    }
}

/// Records commands instead of running them; every command "succeeds" with empty output.
#[derive(Debug, Default)]
pub struct RecordingRunner {
    host: String,
    recorded: Mutex<Vec<Cmd>>,
}

impl RecordingRunner {
    /// A recorder labelled with a host name.
    pub fn new(host: impl Into<String>) -> Self {
        Self {
            host: host.into(),
            recorded: Mutex::new(Vec::new()),
        }
    }

    /// The commands recorded so far.
    pub fn commands(&self) -> Vec<Cmd> {
        self.recorded
            .lock()
            .map(|v| v.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }
}

impl Runner for RecordingRunner {
    fn host(&self) -> String {
        self.host.clone()
    }

    async fn run(&self, cmd: &Cmd) -> Result<Output, RunError> {
        match self.recorded.lock() {
            Ok(mut v) => v.push(cmd.clone()),
            Err(p) => p.into_inner().push(cmd.clone()),
        }
        Ok(Output {
            status: 0,
            stdout: String::new(),
            stderr: String::new(),
        })
    }

    async fn run_streaming<I: AsyncRead + Unpin + Send>(
        &self,
        cmd: &Cmd,
        mut input: I,
    ) -> Result<(Output, u64), RunError> {
        let sent = tokio::io::copy(&mut input, &mut tokio::io::sink())
            .await
            .map_err(|source| RunError::Spawn {
                host: self.host.clone(),
                cmd: cmd.to_string(),
                source,
            })?;
        Ok((self.run(cmd).await?, sent))
    }

    async fn run_attached(&self, cmd: &Cmd) -> Result<i32, RunError> {
        Ok(self.run(cmd).await?.status)
    }

    async fn reach(&self, port: u16) -> Result<u16, RunError> {
        Ok(port)
    }
}

/// How to reach a host over SSH.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshTarget {
    /// Host name or address.
    pub host: String,
    /// Port.
    pub port: u16,
    /// User.
    pub user: String,
    /// Private key.
    pub identity_file: Option<PathBuf>,
    /// Known-hosts file (strict checking against it).
    pub known_hosts: Option<PathBuf>,
    /// ssh_config file (`ssh -F`).
    pub config_file: Option<PathBuf>,
    /// Directory for the control socket (short path).
    pub control_dir: Option<PathBuf>,
    /// Connect timeout.
    pub connect_timeout: std::time::Duration,
}

impl SshTarget {
    /// A target with defaults.
    pub fn new(host: impl Into<String>, user: impl Into<String>, port: u16) -> Self {
        Self {
            host: host.into(),
            port,
            user: user.into(),
            identity_file: None,
            known_hosts: None,
            config_file: None,
            control_dir: None,
            connect_timeout: std::time::Duration::from_secs(10),
        }
    }
}

/// Runs commands on a host over one multiplexed SSH connection.
pub struct SshRunner {
    label: String,
    session: openssh::Session,
}

impl SshRunner {
    /// Connects (strict host key checking).
    pub async fn connect(t: &SshTarget) -> Result<Self, RunError> {
        let label = format!("{}@{}:{}", t.user, t.host, t.port);
        let mut b = openssh::SessionBuilder::default();
        b.user(t.user.clone())
            .port(t.port)
            .known_hosts_check(openssh::KnownHosts::Strict)
            .connect_timeout(t.connect_timeout)
            .server_alive_interval(std::time::Duration::from_secs(15));
        if let Some(k) = &t.identity_file {
            b.keyfile(k);
        }
        if let Some(k) = &t.known_hosts {
            b.user_known_hosts_file(k);
        }
        if let Some(f) = &t.config_file {
            b.config_file(f);
        }
        if let Some(d) = &t.control_dir {
            b.control_directory(d);
        }
        let session = b
            .connect_mux(&t.host)
            .await
            .map_err(|source| RunError::Ssh {
                host: label.clone(),
                source,
            })?;
        Ok(Self { label, session })
    }

    /// Closes the connection.
    pub async fn close(self) -> Result<(), RunError> {
        let label = self.label;
        self.session.close().await.map_err(|source| RunError::Ssh {
            host: label,
            source,
        })
    }
}

impl Runner for SshRunner {
    fn host(&self) -> String {
        self.label.clone()
    }

    async fn run(&self, cmd: &Cmd) -> Result<Output, RunError> {
        tracing::debug!(host = %self.label, cmd = %cmd, "run");
        let ssh_err = |source| RunError::Ssh {
            host: self.label.clone(),
            source,
        };
        let mut c = self.session.raw_command(cmd.to_shell());
        c.stdout(openssh::Stdio::piped())
            .stderr(openssh::Stdio::piped());
        if cmd.stdin.is_some() {
            c.stdin(openssh::Stdio::piped());
        } else {
            c.stdin(openssh::Stdio::null());
        }
        let mut child = c.spawn().await.map_err(ssh_err)?;
        if let (Some(data), Some(mut stdin)) = (&cmd.stdin, child.stdin().take()) {
            stdin
                .write_all(data.bytes())
                .await
                .map_err(|source| RunError::Spawn {
                    host: self.label.clone(),
                    cmd: cmd.to_string(),
                    source,
                })?;
            drop(stdin);
        }
        let out = child.wait_with_output().await.map_err(ssh_err)?;
        Ok(Output {
            status: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }

    async fn run_streaming<I: AsyncRead + Unpin + Send>(
        &self,
        cmd: &Cmd,
        mut input: I,
    ) -> Result<(Output, u64), RunError> {
        tracing::debug!(host = %self.label, cmd = %cmd, "run, stdin streamed");
        let ssh_err = |source| RunError::Ssh {
            host: self.label.clone(),
            source,
        };
        let io_err = |source| RunError::Spawn {
            host: self.label.clone(),
            cmd: cmd.to_string(),
            source,
        };
        let mut c = self.session.raw_command(cmd.to_shell());
        c.stdout(openssh::Stdio::piped())
            .stderr(openssh::Stdio::piped())
            .stdin(openssh::Stdio::piped());
        let mut child = c.spawn().await.map_err(ssh_err)?;
        let mut stdin = child.stdin().take().ok_or_else(|| io_err(no_pipe()))?;
        let sent = tokio::io::copy(&mut input, &mut stdin)
            .await
            .map_err(io_err)?;
        stdin.shutdown().await.map_err(io_err)?;
        drop(stdin);
        let out = child.wait_with_output().await.map_err(ssh_err)?;
        Ok((output_of(&out.status, &out.stdout, &out.stderr), sent))
    }

    async fn run_attached(&self, cmd: &Cmd) -> Result<i32, RunError> {
        tracing::debug!(host = %self.label, cmd = %cmd, "run, attached");
        let ssh_err = |source| RunError::Ssh {
            host: self.label.clone(),
            source,
        };
        let mut c = self.session.raw_command(cmd.to_shell());
        c.stdout(openssh::Stdio::inherit())
            .stderr(openssh::Stdio::inherit())
            .stdin(openssh::Stdio::null());
        let status = c.status().await.map_err(ssh_err)?;
        Ok(status.code().unwrap_or(-1))
    }

    async fn reach(&self, port: u16) -> Result<u16, RunError> {
        let local = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .map_err(|source| RunError::Spawn {
                host: "localhost".into(),
                cmd: "bind a free loopback port".into(),
                source,
            })?;
        let lo = std::net::Ipv4Addr::LOCALHOST;
        self.session
            .request_port_forward(
                openssh::ForwardType::Local,
                std::net::SocketAddr::from((lo, local)),
                std::net::SocketAddr::from((lo, port)),
            )
            .await
            .map_err(|source| RunError::Ssh {
                host: self.label.clone(),
                source,
            })?;
        Ok(local)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::{files, Cmd};

    #[tokio::test]
    async fn local_runner_passes_hostile_values_verbatim() {
        let hostile = "it's $(echo pwned) `id` ; rm -rf / && \"q\" \\ *\nline2";
        let out = LocalRunner
            .check(&Cmd::new("printf").args(["%s", hostile]))
            .await
            .expect("printf runs");
        assert_eq!(out.stdout, hostile);
    }

    #[tokio::test]
    async fn local_runner_writes_files_atomically_with_stdin() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("a b").join("it's.conf");
        let p = path.to_str().expect("utf-8 path");
        LocalRunner
            .check(&files::write(p, "hello $(x)\n", 0o640))
            .await
            .expect("write runs");
        assert_eq!(
            std::fs::read_to_string(&path).expect("read"),
            "hello $(x)\n"
        );
        let out = LocalRunner.check(&files::read(p)).await.expect("cat");
        assert_eq!(out.stdout, "hello $(x)\n");
    }

    #[tokio::test]
    async fn failure_carries_status_and_stderr() {
        let err = LocalRunner
            .check(&Cmd::new("sh").args(["-c", "echo nope >&2; exit 3"]))
            .await
            .expect_err("must fail");
        match err {
            RunError::Failed { status, stderr, .. } => {
                assert_eq!(status, 3);
                assert_eq!(stderr, "nope");
            }
            other => panic!("unexpected {other}"),
        }
    }

    #[tokio::test]
    async fn recording_runner_records_in_order() {
        let r = RecordingRunner::new("web-1");
        r.check(&Cmd::new("a")).await.expect("ok");
        r.check(&Cmd::new("b").arg("c d")).await.expect("ok");
        let lines: Vec<String> = r
            .commands()
            .iter()
            .map(super::super::commands::Cmd::to_shell)
            .collect();
        assert_eq!(lines, vec!["a".to_string(), "b 'c d'".to_string()]);
    }
}
