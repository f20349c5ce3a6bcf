//! The server(s) under test: either `--url` (loopback only) or a `fullslack-chat` binary that
//! the tool spawns itself with rate limits raised, then stops at the end of the run.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::cli::Common;

/// Environment the spawned server gets: limits that would otherwise throttle the load.
pub const SPAWN_ENV: &[(&str, &str)] = &[
    ("FULLSLACK_RATE_LIMIT__AUTH_PER_MIN", "100000000"),
    ("FULLSLACK_RATE_LIMIT__AUTH_BURST", "100000000"),
    ("FULLSLACK_RATE_LIMIT__SEND_PER_SEC", "100000000"),
    ("FULLSLACK_RATE_LIMIT__SEND_BURST", "100000000"),
    // Cached tokens stay valid across runs (default 1 h).
    ("FULLSLACK_AUTH__TOKEN_TTL_SECS", "604800"),
    // A 10k-member channel is created in one request (its member_ids list is ~400 KB).
    ("FULLSLACK_LIMITS__MAX_BODY_BYTES", "16777216"),
];

/// One node of the cluster under test.
#[derive(Debug, Clone)]
pub struct Node {
    /// `http://127.0.0.1:PORT` without a trailing slash.
    pub base: String,
    pub addr: SocketAddr,
    pub pid: Option<u32>,
}

pub struct Target {
    pub nodes: Vec<Node>,
    pub spawned: Option<Child>,
    /// Human notes printed with the report (e.g. the raised limits).
    pub notes: Vec<String>,
}

/// `http://HOST:PORT[/]` → address; refuses anything but loopback.
pub fn parse_loopback_url(url: &str) -> Result<(String, SocketAddr)> {
    let rest = url
        .strip_prefix("http://")
        .with_context(|| format!("{url}: only http:// URLs (plain WebSocket) are supported"))?;
    let hostport = rest.trim_end_matches('/');
    if hostport.contains('/') {
        bail!("{url}: give the server's base URL without a path");
    }
    let hostport_resolved = hostport.replace("localhost", "127.0.0.1");
    let addr: SocketAddr = hostport_resolved
        .parse()
        .with_context(|| format!("{url}: expected http://IP:PORT"))?;
    let loopback = match addr.ip() {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => v6.is_loopback(),
    };
    if !loopback {
        bail!("{url}: the load tool only targets loopback addresses");
    }
    Ok((format!("http://{hostport}"), addr))
}

impl Target {
    pub async fn resolve(c: &Common) -> Result<Target> {
        if let Some(bin) = &c.spawn {
            if !c.url.is_empty() {
                bail!("give either --spawn or --url, not both");
            }
            return spawn(bin, &c.data_dir).await;
        }
        if c.url.is_empty() {
            bail!(
                "give --url http://127.0.0.1:PORT (repeatable) or --spawn PATH_TO_fullslack-chat"
            );
        }
        let mut nodes = Vec::new();
        for (i, u) in c.url.iter().enumerate() {
            let (base, addr) = parse_loopback_url(u)?;
            nodes.push(Node {
                base,
                addr,
                pid: c.server_pid.get(i).copied(),
            });
        }
        let mut notes = Vec::new();
        if c.server_pid.is_empty() {
            notes.push("no --server-pid: server RSS and CPU not measured".into());
        }
        notes.push(
            "external server: its own rate limits apply (rate_limited errors are counted)".into(),
        );
        Ok(Target {
            nodes,
            spawned: None,
            notes,
        })
    }

    pub async fn stop(&mut self) {
        if let Some(child) = self.spawned.as_mut() {
            if let Some(pid) = child.id() {
                // SAFETY: signalling the child we spawned, by its pid.
                unsafe { libc::kill(pid as i32, libc::SIGTERM) };
            }
            if tokio::time::timeout(Duration::from_secs(10), child.wait())
                .await
                .is_err()
            {
                let _ = child.kill().await;
            }
        }
    }
}

async fn spawn(bin: &Path, data_dir: &Path) -> Result<Target> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating data dir {}", data_dir.display()))?;
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0")?;
        l.local_addr()?.port()
    };
    let log_path = data_dir.with_extension("server.log");
    let log = std::fs::File::create(&log_path)
        .with_context(|| format!("creating {}", log_path.display()))?;
    let mut cmd = Command::new(bin);
    cmd.arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--data-dir")
        .arg(data_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .kill_on_drop(true);
    for (k, v) in SPAWN_ENV {
        cmd.env(k, v);
    }
    if std::env::var_os("RUST_LOG").is_none() {
        cmd.env("RUST_LOG", "warn");
    }
    let mut child = cmd
        .spawn()
        .with_context(|| format!("spawning {}", bin.display()))?;
    let pid = child.id().context("spawned server has no pid")?;
    let stdout = child.stdout.take().context("no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let first = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
        .await
        .context("server printed nothing on stdout within 60 s")??
        .with_context(|| format!("server exited; see {}", log_path.display()))?;
    // Keep draining stdout so the server never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let url = first
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .with_context(|| format!("unexpected first line from server: {first:?}"))?;
    let (base, addr) = parse_loopback_url(url)?;
    wait_healthy(&base).await?;
    let mut notes = vec![format!(
        "spawned {} (pid {pid}) on {base}, data dir {}, log {}",
        bin.display(),
        data_dir.display(),
        log_path.display()
    )];
    notes.push(format!(
        "spawned server's limits raised for the load: {}",
        SPAWN_ENV
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ")
    ));
    Ok(Target {
        nodes: vec![Node {
            base,
            addr,
            pid: Some(pid),
        }],
        spawned: Some(child),
        notes,
    })
}

async fn wait_healthy(base: &str) -> Result<()> {
    let http = reqwest::Client::new();
    let start = Instant::now();
    loop {
        if let Ok(r) = http.get(format!("{base}/healthz")).send().await {
            if r.status().is_success() {
                return Ok(());
            }
        }
        if start.elapsed() > Duration::from_secs(30) {
            bail!("{base}/healthz did not answer 200 within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_urls() {
        let (base, addr) = parse_loopback_url("http://127.0.0.1:8080/").unwrap();
        assert_eq!(base, "http://127.0.0.1:8080");
        assert_eq!(addr.port(), 8080);
        assert!(parse_loopback_url("http://localhost:9").is_ok());
        assert!(parse_loopback_url("http://10.0.0.1:8080").is_err());
        assert!(parse_loopback_url("https://127.0.0.1:8080").is_err());
        assert!(parse_loopback_url("http://127.0.0.1:8080/api").is_err());
    }
}
