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
    ("FULLSLACK_RATE_LIMIT__AUTH_ADDR_PER_MIN", "100000000"),
    ("FULLSLACK_RATE_LIMIT__AUTH_ADDR_BURST", "100000000"),
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
    /// Servers this tool started (stopped with SIGTERM at the end of the run).
    pub spawned: Vec<Child>,
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
            return spawn_nodes(bin, c).await;
        }
        if c.nodes != 1 || c.store_url.is_some() || c.redis_url.is_some() {
            bail!("--nodes, --store-url and --redis-url configure spawned servers: use them with --spawn");
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
            spawned: Vec::new(),
            notes,
        })
    }

    pub async fn stop(&mut self) {
        for child in &self.spawned {
            if let Some(pid) = child.id() {
                let pid = nix::unistd::Pid::from_raw(pid as i32);
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            }
        }
        for child in &mut self.spawned {
            if tokio::time::timeout(Duration::from_secs(10), child.wait())
                .await
                .is_err()
            {
                let _ = child.kill().await;
            }
        }
    }
}

/// One JWT secret for every node of a spawned cluster (a token issued by node 0 must work on
/// node 1), kept in the data dir so cached bench users stay logged in across runs.
fn cluster_secret(data_dir: &Path) -> Result<String> {
    let path = data_dir.join("cluster-jwt-secret");
    if let Ok(s) = std::fs::read_to_string(&path) {
        if s.trim().len() >= 32 {
            return Ok(s.trim().to_string());
        }
    }
    let mut bytes = [0u8; 32];
    std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut bytes)?;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    std::fs::write(&path, &hex).with_context(|| format!("writing {}", path.display()))?;
    Ok(hex)
}

async fn spawn_nodes(bin: &Path, c: &Common) -> Result<Target> {
    if c.nodes == 0 {
        bail!("--nodes must be at least 1");
    }
    if c.nodes > 1 {
        let shared_store = c
            .store_url
            .as_deref()
            .is_some_and(|u| u.starts_with("mongodb://") || u.starts_with("mongodb+srv://"));
        if !shared_store || c.redis_url.is_none() {
            bail!("--nodes {} needs --store-url mongodb://… and --redis-url redis://… so the nodes share a store and fan out over Redis", c.nodes);
        }
    }
    std::fs::create_dir_all(&c.data_dir)
        .with_context(|| format!("creating data dir {}", c.data_dir.display()))?;
    let mut env: Vec<(String, String)> = SPAWN_ENV
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    if let Some(u) = &c.store_url {
        env.push(("FULLSLACK_STORE_URL".into(), u.clone()));
    }
    if let Some(u) = &c.redis_url {
        env.push(("FULLSLACK_REDIS_URL".into(), u.clone()));
    }
    if c.nodes > 1 {
        env.push((
            "FULLSLACK_AUTH__JWT_SECRET".into(),
            cluster_secret(&c.data_dir)?,
        ));
    }
    let mut target = Target {
        nodes: Vec::new(),
        spawned: Vec::new(),
        notes: Vec::new(),
    };
    for i in 0..c.nodes {
        // One node keeps the historical layout (data dir = --data-dir); a cluster gets node-N.
        let dir = if c.nodes == 1 {
            c.data_dir.clone()
        } else {
            c.data_dir.join(format!("node-{i}"))
        };
        let (node, child, note) = spawn_one(bin, &dir, &env).await?;
        target.nodes.push(node);
        target.spawned.push(child);
        target.notes.push(note);
    }
    let shown: Vec<String> = env
        .iter()
        .filter(|(k, _)| !k.contains("SECRET"))
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    target.notes.push(format!(
        "spawned server's settings for the load: {}",
        shown.join(" ")
    ));
    Ok(target)
}

async fn spawn_one(
    bin: &Path,
    data_dir: &Path,
    env: &[(String, String)],
) -> Result<(Node, Child, String)> {
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
    for (k, v) in env {
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
    let note = format!(
        "spawned {} (pid {pid}) on {base}, data dir {}, log {}",
        bin.display(),
        data_dir.display(),
        log_path.display()
    );
    Ok((
        Node {
            base,
            addr,
            pid: Some(pid),
        },
        child,
        note,
    ))
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
