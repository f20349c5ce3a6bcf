//! The one API client of the tests: [`Client`] speaks REST with a bearer token, [`Ws`] the
//! WebSocket. Requests are written with the protocol types (`fullslack-protocol`), so a test
//! cannot send a body the server does not define by accident; answers and frames stay raw JSON
//! ([`Value`]) because the tests assert on the wire itself (docs/protocol.md is the contract).
//! Deliberately malformed requests go through [`Client::post`] and [`Ws::send`].

use std::{collections::HashMap, time::Duration};

use fullslack_protocol::{
    rest::{Credentials, DmBody, NewChannelBody, TokenResponse},
    ChannelKind, ClientFrame, UserId,
};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::{
    tungstenite::{client::IntoClientRequest, http::HeaderValue, Message},
    MaybeTlsStream, WebSocketStream,
};

/// How long a test waits for a frame it expects.
pub const WAIT: Duration = Duration::from_secs(5);

/// The password every test user has.
pub const PASSWORD: &str = "correct horse battery";

/// A server running elsewhere (another process, or an in-process server's address).
pub struct RemoteServer {
    pub base: String,
    pub addr: std::net::SocketAddr,
}

impl RemoteServer {
    /// From its base URL (`http://IP:PORT`).
    pub fn new(base: &str) -> RemoteServer {
        let addr = base
            .trim_start_matches("http://")
            .parse()
            .expect("base is http://IP:PORT");
        RemoteServer {
            base: base.to_string(),
            addr,
        }
    }
}

/// What a client needs to know about a server.
pub trait ServerAddr {
    fn base(&self) -> String;
    fn ws_url(&self) -> String;
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
            .json(&Credentials {
                username: username.into(),
                password: PASSWORD.into(),
                display_name: None,
            })
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), status, "{route} {username}");
        let body: TokenResponse = resp.json().await.unwrap();
        Client {
            http,
            base: server.base(),
            ws_url: server.ws_url(),
            token: body.token,
            id: body.user.id.into_string(),
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

    /// Every event of `channel`, in order: the replay log over REST, page by page.
    pub async fn all_events(&self, channel: &str) -> Vec<Value> {
        let mut events: Vec<Value> = Vec::new();
        loop {
            let after = events.last().map_or(0, |e| e["seq"].as_i64().unwrap());
            let page = self
                .ok_get(&format!(
                    "/api/channels/{channel}/events?after={after}&limit=1000"
                ))
                .await;
            let page = page["events"].as_array().unwrap().clone();
            if page.is_empty() {
                return events;
            }
            events.extend(page);
        }
    }

    pub async fn create_channel(&self, name: &str, kind: &str, members: &[&str]) -> String {
        let body = NewChannelBody {
            name: name.into(),
            kind: serde_json::from_value::<ChannelKind>(json!(kind)).expect("a channel kind"),
            topic: String::new(),
            member_ids: members.iter().map(|m| UserId::from(*m)).collect(),
        };
        let (s, v) = self
            .post("/api/channels", serde_json::to_value(body).unwrap())
            .await;
        assert_eq!(s, 201, "{v}");
        v["id"].as_str().unwrap().to_string()
    }

    pub async fn dm(&self, others: &[&str]) -> String {
        let body = DmBody {
            user_ids: others.iter().map(|u| UserId::from(*u)).collect(),
        };
        let (s, v) = self
            .post("/api/dms", serde_json::to_value(body).unwrap())
            .await;
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
        let channels = channels.into_iter().map(|(c, s)| (c.into(), s)).collect();
        self.send_frame(&ClientFrame::Resume { channels }).await;
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

    /// Sends any JSON as a text frame (also what no client frame allows: tests of bad frames).
    pub async fn send(&mut self, v: Value) {
        self.stream
            .send(Message::text(v.to_string()))
            .await
            .unwrap();
    }

    /// Sends a protocol frame.
    pub async fn send_frame(&mut self, frame: &ClientFrame) {
        self.send(serde_json::to_value(frame).unwrap()).await;
    }

    /// The oldest frame a `next_where` skipped, if any (without reading the socket).
    pub fn next_backlogged(&mut self) -> Option<Value> {
        self.backlog.pop_front()
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
        self.send_frame(&ClientFrame::Send {
            reference: Some(client_id.into()),
            channel: channel.into(),
            client_id: client_id.into(),
            text: text.into(),
            thread_root: None,
        })
        .await;
        self.next_where(|f| (f["type"] == "ack" || f["type"] == "error") && f["ref"] == client_id)
            .await
    }

    /// Every frame that arrives within `dur`.
    pub async fn drain(&mut self, dur: Duration) -> Vec<Value> {
        let mut out: Vec<Value> = self.backlog.drain(..).collect();
        let deadline = tokio::time::Instant::now() + dur;
        while let Ok(f) = tokio::time::timeout_at(deadline, next_json(&mut self.stream)).await {
            // Nothing follows a close frame: reading on would find the stream ended.
            let closed = f["type"] == "__close";
            out.push(f);
            if closed {
                break;
            }
        }
        out
    }

    pub async fn close(mut self) {
        let _ = self.stream.close(None).await;
    }
}

/// The next text frame as JSON; a close frame reads as `{"type": "__close", "code", "reason"}`.
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

/// The `seq` of each event.
pub fn seqs(events: &[Value]) -> Vec<i64> {
    events.iter().map(|e| e["seq"].as_i64().unwrap()).collect()
}
