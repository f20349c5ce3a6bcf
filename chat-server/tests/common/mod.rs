//! Test harness: the real server (`fullslack_chat::serve`) on a loopback port 0, and the
//! shared API client of `fullslack-test-support` (real HTTP and WebSocket). Nothing is mocked.
#![allow(dead_code)]

pub mod cluster;
pub mod services;

use std::{sync::Arc, time::Duration};

use fullslack_chat::{auth::SecretString, config::Settings, App, AppState};
// Each test binary includes this module and uses part of it.
#[allow(unused_imports)]
pub use fullslack_test_support::{seqs, Client, RemoteServer, ServerAddr, Ws, WAIT};
use tokio::{sync::oneshot, task::JoinHandle};

pub const SECRET: &str = "test-secret-test-secret-test-secret-0123456789";

pub fn test_settings(dir: &std::path::Path) -> Settings {
    let mut s = Settings {
        data_dir: dir.to_path_buf(),
        listen: "127.0.0.1:0".parse().unwrap(),
        ..Default::default()
    };
    s.auth.jwt_secret = Some(SecretString::from(SECRET));
    s.rate_limit.send_per_sec = 1000;
    s.rate_limit.send_burst = 1000;
    s.rate_limit.auth_per_min = 10_000;
    s.rate_limit.auth_burst = 1000;
    s.rate_limit.auth_addr_per_min = 10_000;
    s.rate_limit.auth_addr_burst = 1000;
    s.realtime.delivered_flush_ms = 20;
    s.realtime.shutdown_grace_ms = 2000;
    s
}

pub struct TestServer {
    pub base: String,
    pub addr: std::net::SocketAddr,
    pub app: AppState,
    pub dir: Arc<tempfile::TempDir>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

pub fn tempdir() -> Arc<tempfile::TempDir> {
    let base = std::env::var_os("FULLSLACK_TEST_RUNTIME")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    std::fs::create_dir_all(&base).unwrap();
    Arc::new(tempfile::tempdir_in(base).unwrap())
}

impl TestServer {
    pub async fn start() -> TestServer {
        Self::start_with(tempdir(), |_| {}).await
    }

    /// The value of the sample `name` on the server's `/metrics`.
    pub async fn metric(&self, name: &str) -> f64 {
        let text = reqwest::get(format!("{}/metrics", self.base))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in\n{text}"))
    }

    pub async fn start_with(
        dir: Arc<tempfile::TempDir>,
        tweak: impl FnOnce(&mut Settings),
    ) -> TestServer {
        let mut settings = test_settings(dir.path());
        tweak(&mut settings);
        let listener = tokio::net::TcpListener::bind(settings.listen)
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let app = App::new(settings).await.expect("app starts");
        let (tx, rx) = oneshot::channel::<()>();
        let serve_app = app.clone();
        let task = tokio::spawn(async move {
            fullslack_chat::serve(listener, serve_app, async {
                let _ = rx.await;
            })
            .await
            .unwrap();
        });
        TestServer {
            base: format!("http://{addr}"),
            addr,
            app,
            dir,
            stop: Some(tx),
            task: Some(task),
        }
    }

    /// Graceful stop (as on SIGTERM); waits until the server has drained.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(10), t)
                .await
                .expect("server stops in time")
                .unwrap();
        }
    }

    /// A handle on a server running elsewhere (another process): only its addresses.
    pub fn remote(base: &str) -> RemoteServer {
        RemoteServer::new(base)
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/api/ws", self.addr)
    }
}

impl ServerAddr for TestServer {
    fn base(&self) -> String {
        self.base.clone()
    }
    fn ws_url(&self) -> String {
        TestServer::ws_url(self)
    }
}
