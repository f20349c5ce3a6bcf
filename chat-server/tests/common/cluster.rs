//! Several real `fullslack-chat` processes sharing one Redis and one SecantusDB: what the seeds
//! run behind a load balancer. Each node is the `fullslack-chat` binary cargo built for the
//! tests, started with flags and `FULLSLACK_*` variables only (as a deployment would), on its
//! own free port, and killed when dropped; a failing test prints the nodes' logs. Clients reach a node through [`Node::server`] and the helpers of `common`.
#![allow(dead_code)]

use std::{path::PathBuf, process::Command, sync::Arc, time::Duration};

use fullslack_test_support::{server::spawn_chat_server, ProcessGuard};
use nix::sys::signal::Signal;
use serde_json::Value;

use super::{
    services::{MongoServer, RedisServer},
    Client, RemoteServer, ServerAddr,
};

/// How long a node may take to print its URL (it connects to MongoDB first) on a busy machine.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Presence entries of a node expire this long after its last refresh: short, so the crash test
/// sees a dead node's users go offline quickly.
pub const PRESENCE_TTL_SECS: u64 = 3;

/// What every node of a cluster is started with.
#[derive(Clone)]
pub struct NodeConfig {
    pub store_url: String,
    pub redis_url: Option<String>,
    /// Further `FULLSLACK_*` variables (name, value).
    pub env: Vec<(String, String)>,
}

impl NodeConfig {
    /// The store URL node `name` connects with: the cluster's, naming the node as the
    /// MongoDB client application (`fullslack-NAME`), so that a test can aim a SecantusDB
    /// failpoint at one node's commands.
    pub fn node_store_url(&self, name: &str) -> String {
        let sep = if self.store_url.contains('?') {
            '&'
        } else {
            '?'
        };
        format!("{}{sep}appName=fullslack-{name}", self.store_url)
    }

    fn command(&self, name: &str, data_dir: &std::path::Path) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_fullslack-chat"));
        cmd.args(["--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir);
        // Only what this harness sets: nothing from the test runner's environment leaks in.
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("FULLSLACK_") {
                cmd.env_remove(k);
            }
        }
        let mut env: Vec<(String, String)> = vec![
            ("FULLSLACK_STORE_URL".into(), self.node_store_url(name)),
            // Every node must verify the others' tokens: one shared secret.
            ("FULLSLACK_AUTH__JWT_SECRET".into(), super::SECRET.into()),
            (
                "FULLSLACK_REALTIME__PRESENCE_TTL_SECS".into(),
                PRESENCE_TTL_SECS.to_string(),
            ),
            // The tests open many sessions and send fast from one address: limits out of the way
            // (the rate-limit behaviour has its own tests).
            ("FULLSLACK_RATE_LIMIT__SEND_PER_SEC".into(), "1000".into()),
            ("FULLSLACK_RATE_LIMIT__SEND_BURST".into(), "1000".into()),
            ("FULLSLACK_RATE_LIMIT__AUTH_PER_MIN".into(), "10000".into()),
            ("FULLSLACK_RATE_LIMIT__AUTH_BURST".into(), "1000".into()),
            (
                "FULLSLACK_RATE_LIMIT__AUTH_ADDR_PER_MIN".into(),
                "10000".into(),
            ),
            (
                "FULLSLACK_RATE_LIMIT__AUTH_ADDR_BURST".into(),
                "1000".into(),
            ),
            ("FULLSLACK_REALTIME__DELIVERED_FLUSH_MS".into(), "20".into()),
            (
                "FULLSLACK_REALTIME__SHUTDOWN_GRACE_MS".into(),
                "2000".into(),
            ),
            // One JSON object a line: tests can count what a node logged (and no colour codes).
            ("FULLSLACK_LOG_FORMAT".into(), "json".into()),
        ];
        if let Some(r) = &self.redis_url {
            env.push(("FULLSLACK_REDIS_URL".into(), r.clone()));
        }
        env.extend(self.env.iter().cloned());
        cmd.envs(env);
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "info");
        }
        cmd
    }
}

/// One `fullslack-chat` process.
pub struct Node {
    pub name: String,
    pub base: String,
    pub addr: std::net::SocketAddr,
    process: ProcessGuard,
    dir: Arc<tempfile::TempDir>,
    log: PathBuf,
}

impl Node {
    /// Starts a node and waits for its first stdout line (`fullslack-chat listening on URL`).
    pub async fn start(name: &str, config: &NodeConfig) -> Node {
        let dir = super::tempdir();
        let log = dir.path().join(format!("{name}.log"));
        let command = config.command(name, &dir.path().join("data"));
        let server = match spawn_chat_server(command, &log, START_TIMEOUT).await {
            Ok(server) => server,
            Err(log) => panic!("node {name} did not start; its log:\n{log}"),
        };
        Node {
            name: name.to_string(),
            base: server.base,
            addr: server.addr,
            process: server.process,
            dir,
            log,
        }
    }

    /// The node's addresses, for `Client::register(&node.server(), …)`.
    pub fn server(&self) -> RemoteServer {
        super::TestServer::remote(&self.base)
    }

    /// Kills the process without warning (a crash: no close frames, no cleanup).
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// SIGTERM and waits for a clean exit (sockets closed with 1012).
    pub async fn terminate(&mut self) {
        if self.process.reaped() {
            return;
        }
        self.process.signal(Signal::SIGTERM);
        let status = self.process.wait_exit(Duration::from_secs(60)).await;
        assert!(
            status.is_some_and(|s| s.success()),
            "node {} exited with {status:?}",
            self.name
        );
    }

    /// What the node logged so far (stderr), for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// An HTTP client that gives up rather than hang a test on a stuck node.
    fn http() -> reqwest::Client {
        reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("http client")
    }

    /// The node's log lines so far, parsed (it logs JSON, one object a line).
    pub fn log_json(&self) -> Vec<Value> {
        self.log()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// `GET /readyz`: (status, body).
    pub async fn readyz(&self) -> (u16, Value) {
        let resp = Self::http()
            .get(format!("{}/readyz", self.base))
            .send()
            .await
            .expect("readyz answers");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// The value of an unlabelled metric in `/metrics`, if present.
    pub async fn metric(&self, name: &str) -> Option<f64> {
        let text = Self::http()
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .expect("metrics answer")
            .text()
            .await
            .unwrap();
        text.lines().find_map(|l| {
            let mut parts = l.split_whitespace();
            (parts.next() == Some(name))
                .then(|| parts.next()?.parse().ok())
                .flatten()
        })
    }

    /// Waits until `/readyz` answers `status` (e.g. `"ready"`, `"degraded"`) with HTTP `code`.
    pub async fn wait_ready_status(&self, code: u16, status: &str, within: Duration) -> Value {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let (got, body) = self.readyz().await;
            if got == code && body["status"] == status {
                return body;
            }
            if tokio::time::Instant::now() >= deadline {
                panic!(
                    "node {}: /readyz never became {code} {status:?} within {within:?}; last: {got} {body}\nlog:\n{}",
                    self.name,
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Two nodes (`a`, `b`) on one Redis and one SecantusDB database. Dropping it kills all four
/// processes.
pub struct Cluster {
    pub a: Node,
    pub b: Node,
    pub config: NodeConfig,
    // Dropped after the nodes (fields drop in order), so nodes never outlive their services.
    pub redis: RedisServer,
    pub mongo: MongoServer,
}

impl Cluster {
    /// Redis, SecantusDB, then both nodes (started concurrently).
    pub async fn start() -> Cluster {
        let (redis, mongo) = tokio::task::spawn_blocking(|| {
            let redis = RedisServer::start();
            let mongo = MongoServer::start();
            (redis, mongo)
        })
        .await
        .expect("services start");
        let config = NodeConfig {
            store_url: mongo.url("fullslack_cluster"),
            redis_url: Some(redis.url()),
            env: Vec::new(),
        };
        let (a, b) = tokio::join!(Node::start("a", &config), Node::start("b", &config));
        Cluster {
            a,
            b,
            config,
            redis,
            mongo,
        }
    }

    /// Stops Redis (blocking work off the runtime's threads).
    pub async fn stop_redis(&mut self) {
        in_blocking(&mut self.redis, RedisServer::stop).await;
    }

    pub async fn restart_redis(&mut self) {
        in_blocking(&mut self.redis, RedisServer::restart).await;
    }

    /// Kills SecantusDB (SIGKILL: a crash, and no 3.5 s clean shutdown to wait for).
    pub async fn kill_mongo(&mut self) {
        in_blocking(&mut self.mongo, MongoServer::kill).await;
    }

    /// Restarts SecantusDB on the same port and data directory.
    pub async fn restart_mongo(&mut self) {
        in_blocking(&mut self.mongo, MongoServer::restart).await;
    }

    /// Both nodes' logs, for failure messages.
    pub fn logs(&self) -> String {
        format!(
            "--- node a ---\n{}\n--- node b ---\n{}",
            self.a.log(),
            self.b.log()
        )
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // The logs live in temporary directories that go with the cluster: show them when a
        // test fails (a panic unwinds through here), whatever assertion tripped, or always
        // with `FULLSLACK_TEST_SHOW_LOGS` set (to study a flaky test's passing runs too, with
        // nextest's `--success-output final`).
        if std::thread::panicking() || std::env::var_os("FULLSLACK_TEST_SHOW_LOGS").is_some() {
            eprintln!("{}", self.logs());
        }
    }
}

/// Runs a blocking service operation without stalling the nodes' clients in this runtime
/// (tests using a [`Cluster`] run on the multi-threaded runtime).
async fn in_blocking<S>(svc: &mut S, op: fn(&mut S)) {
    tokio::task::block_in_place(|| op(svc));
}

/// A client of user `client` talking to `node` instead (same token: every node shares the
/// JWT secret). What a client does when it reconnects through the load balancer elsewhere.
pub fn on_node(client: &Client, node: &Node) -> Client {
    let server = node.server();
    Client {
        http: reqwest::Client::new(),
        base: server.base(),
        ws_url: server.ws_url(),
        token: client.token.clone(),
        id: client.id.clone(),
        username: client.username.clone(),
    }
}
