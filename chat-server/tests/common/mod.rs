//! Test harness: the real server (`fullslack_chat::serve`) on a loopback port 0, real HTTP
//! (reqwest) and WebSocket (tokio-tungstenite) clients. Nothing is mocked.
#![allow(dead_code)]

pub mod cluster;
pub mod services;

use std::{collections::HashMap, sync::Arc, time::Duration};

use fullslack_chat::{auth::SecretString, config::Settings, App, AppState};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::{net::TcpStream, sync::oneshot, task::JoinHandle};
use tokio_tungstenite::{
    tungstenite::{client::IntoClientRequest, http::HeaderValue, Message},
    MaybeTlsStream, WebSocketStream,
};

pub const SECRET: &str = "test-secret-test-secret-test-secret-0123456789";
pub const WAIT: Duration = Duration::from_secs(5);

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
        let addr = base
            .trim_start_matches("http://")
            .parse()
            .expect("base is http://IP:PORT");
        RemoteServer {
            base: base.to_string(),
            addr,
        }
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/api/ws", self.addr)
    }
}

pub struct RemoteServer {
    pub base: String,
    pub addr: std::net::SocketAddr,
}

/// What a client needs to know about a server.
pub trait ServerAddr {
    fn base(&self) -> String;
    fn ws_url(&self) -> String;
}

impl ServerAddr for TestServer {
    fn base(&self) -> String {
        self.base.clone()
    }
    fn ws_url(&self) -> String {
        TestServer::ws_url(self)
    }
}

impl ServerAddr for RemoteServer {
    fn base(&self) -> String {
        self.base.clone()
    }
    fn ws_url(&self) -> String {
        format!("ws://{}/api/ws", self.addr)
    }
}

pub struct Client {
    pub http: reqwest::Client,
    pub base: String,
    pub ws_url: String,
    pub token: String,
    pub id: String,
    pub username: String,
}

impl Client {
    pub async fn register(server: &impl ServerAddr, username: &str) -> Client {
        Self::sign_in(server, "register", 201, username).await
    }

    pub async fn login(server: &impl ServerAddr, username: &str) -> Client {
        Self::sign_in(server, "login", 200, username).await
    }

    async fn sign_in(server: &impl ServerAddr, route: &str, status: u16, username: &str) -> Client {
        let http = reqwest::Client::new();
        let resp = http
            .post(format!("{}/api/auth/{route}", server.base()))
            .json(&json!({"username": username, "password": "correct horse battery"}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), status, "{route} {username}");
        let body: Value = resp.json().await.unwrap();
        Client {
            http,
            base: server.base(),
            ws_url: server.ws_url(),
            token: body["token"].as_str().unwrap().to_string(),
            id: body["user"]["id"].as_str().unwrap().to_string(),
            username: username.to_string(),
        }
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let resp = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    pub async fn ok_get(&self, path: &str) -> Value {
        let (s, v) = self.get(path).await;
        assert_eq!(s, 200, "GET {path}: {v}");
        v
    }

    pub async fn create_channel(&self, name: &str, kind: &str, members: &[&str]) -> String {
        let (s, v) = self
            .post(
                "/api/channels",
                json!({"name": name, "kind": kind, "member_ids": members}),
            )
            .await;
        assert_eq!(s, 201, "{v}");
        v["id"].as_str().unwrap().to_string()
    }

    pub async fn dm(&self, others: &[&str]) -> String {
        let (s, v) = self.post("/api/dms", json!({"user_ids": others})).await;
        assert_eq!(s, 200, "{v}");
        v["id"].as_str().unwrap().to_string()
    }

    /// Opens a socket and resumes with no positions (live from now).
    pub async fn ws(&self) -> Ws {
        let mut ws = Ws::connect(&self.ws_url, &self.token).await;
        ws.resume(HashMap::new()).await;
        ws
    }
}

pub struct Ws {
    pub stream: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pub hello: Value,
    /// Frames skipped by `next_where`, kept in arrival order for later calls.
    backlog: std::collections::VecDeque<Value>,
}

impl Ws {
    pub async fn connect(url: &str, token: &str) -> Ws {
        let mut req = url.into_client_request().unwrap();
        req.headers_mut().insert(
            "authorization",
            HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
        );
        let (mut stream, _) = tokio_tungstenite::connect_async(req)
            .await
            .expect("ws connects");
        let hello = next_json(&mut stream).await;
        assert_eq!(hello["type"], "hello", "{hello}");
        Ws {
            stream,
            hello,
            backlog: Default::default(),
        }
    }

    /// Like [`Ws::connect`], over a TCP socket whose receive buffer is `recv_buffer` bytes (set
    /// before connecting, so the advertised window stays small): a client that stops polling it
    /// soon blocks the server's writes.
    pub async fn connect_small(url: &str, token: &str, recv_buffer: u32) -> Ws {
        let mut req = url.into_client_request().unwrap();
        req.headers_mut().insert(
            "authorization",
            HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
        );
        let host = req.uri().authority().unwrap().as_str().to_string();
        let addr: std::net::SocketAddr = host.parse().expect("ws url has IP:PORT");
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.set_recv_buffer_size(recv_buffer).unwrap();
        let tcp = sock.connect(addr).await.unwrap();
        let (mut stream, _) = tokio_tungstenite::client_async(req, MaybeTlsStream::Plain(tcp))
            .await
            .expect("ws connects");
        let hello = next_json(&mut stream).await;
        assert_eq!(hello["type"], "hello", "{hello}");
        Ws {
            stream,
            hello,
            backlog: Default::default(),
        }
    }

    /// Sends `resume` and returns the events replayed before `resumed`.
    pub async fn resume(&mut self, channels: HashMap<String, i64>) -> Vec<Value> {
        self.send(json!({"type": "resume", "channels": channels}))
            .await;
        let mut events = Vec::new();
        loop {
            let f = self.next().await;
            match f["type"].as_str() {
                Some("resumed") => return events,
                Some("event") => events.push(f),
                _ => {}
            }
        }
    }

    pub async fn send(&mut self, v: Value) {
        self.stream
            .send(Message::text(v.to_string()))
            .await
            .unwrap();
    }

    pub async fn next(&mut self) -> Value {
        match self.backlog.pop_front() {
            Some(f) => f,
            None => next_json(&mut self.stream).await,
        }
    }

    /// The first frame (backlog, then socket) for which `pred` holds; frames skipped stay in
    /// the backlog in order.
    pub async fn next_where(&mut self, pred: impl Fn(&Value) -> bool) -> Value {
        if let Some(i) = self.backlog.iter().position(&pred) {
            return self.backlog.remove(i).unwrap();
        }
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let f = tokio::time::timeout_at(deadline, next_json(&mut self.stream))
                .await
                .expect("expected frame did not arrive in time");
            if pred(&f) {
                return f;
            }
            self.backlog.push_back(f);
        }
    }

    pub async fn next_event(&mut self, kind: &str) -> Value {
        self.next_where(|f| f["type"] == "event" && f["kind"] == kind)
            .await
    }

    /// Sends a message and waits for its ack.
    pub async fn send_message(&mut self, channel: &str, client_id: &str, text: &str) -> Value {
        self.send(json!({"type": "send", "ref": client_id, "channel": channel, "client_id": client_id, "text": text}))
            .await;
        self.next_where(|f| (f["type"] == "ack" || f["type"] == "error") && f["ref"] == client_id)
            .await
    }

    /// Every frame that arrives within `dur`.
    pub async fn drain(&mut self, dur: Duration) -> Vec<Value> {
        let mut out: Vec<Value> = self.backlog.drain(..).collect();
        let deadline = tokio::time::Instant::now() + dur;
        while let Ok(f) = tokio::time::timeout_at(deadline, next_json(&mut self.stream)).await {
            out.push(f);
        }
        out
    }

    pub async fn close(mut self) {
        let _ = self.stream.close(None).await;
    }
}

async fn next_json(stream: &mut WebSocketStream<MaybeTlsStream<TcpStream>>) -> Value {
    loop {
        let msg = tokio::time::timeout(WAIT, stream.next())
            .await
            .expect("no frame in time")
            .expect("socket open")
            .unwrap();
        match msg {
            Message::Text(t) => return serde_json::from_str(t.as_str()).unwrap(),
            Message::Close(c) => {
                return json!({"type": "__close", "code": c.as_ref().map(|c| u16::from(c.code)), "reason": c.map(|c| c.reason.to_string())})
            }
            _ => continue,
        }
    }
}

pub fn seqs(events: &[Value]) -> Vec<i64> {
    events.iter().map(|e| e["seq"].as_i64().unwrap()).collect()
}
