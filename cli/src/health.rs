//! `fullslack health`: `/healthz`, `/readyz`, a real WebSocket round trip as a probe user, and
//! the TLS certificate's validity.

use std::net::ToSocketAddrs;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use reqwest::{StatusCode, Url};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use crate::check::{Check, Report};
use crate::secret::Secret;

/// Name of the private channel used when the server refuses a notes-to-self DM.
pub const PROBE_CHANNEL: &str = "fullslack-health-probe";

/// What to probe and how.
#[derive(Debug, Clone)]
pub struct HealthOptions {
    /// Base URL (`https://chat.example.com`).
    pub url: Url,
    /// Probe user name.
    pub probe_user: String,
    /// Probe password; no WebSocket round trip without it.
    pub probe_password: Option<Secret>,
    /// Per-step timeout.
    pub timeout: Duration,
    /// Extra CA certificates (PEM) to trust.
    pub ca_file: Option<PathBuf>,
    /// Run the WebSocket round trip.
    pub websocket: bool,
    /// Days left under which a certificate fails.
    pub cert_min_days: i64,
}

/// Errors of one probe step (turned into failed checks).
#[derive(Debug, thiserror::Error)]
enum StepError {
    #[error("{0}")]
    Http(#[from] reqwest::Error),
    #[error("{0}")]
    Ws(Box<tokio_tungstenite::tungstenite::Error>),
    #[error("{0}")]
    Tls(#[from] crate::tls::TlsError),
    #[error("timed out after {0:?} waiting for {1}")]
    Timeout(Duration, &'static str),
    #[error("{0}")]
    Protocol(String),
}

impl From<tokio_tungstenite::tungstenite::Error> for StepError {
    fn from(e: tokio_tungstenite::tungstenite::Error) -> Self {
        StepError::Ws(Box::new(e))
    }
}

/// Runs every check.
pub async fn run(o: &HealthOptions) -> Report {
    let mut checks = Vec::new();
    let client = match http_client(o) {
        Ok(c) => c,
        Err(e) => {
            checks.push(Check::fail(
                "setup",
                o.url.as_str(),
                e.to_string(),
                "check --ca-file points at a PEM certificate",
            ));
            return Report::new(o.url.as_str(), checks);
        }
    };
    checks.push(http_check(&client, o, "/healthz", "healthz").await);
    checks.push(http_check(&client, o, "/readyz", "readyz").await);
    if o.websocket {
        checks.push(match &o.probe_password {
            None => Check::skip(
                "ws.round_trip",
                o.url.as_str(),
                "no probe password: set FULLSLACK_PROBE_PASSWORD (or --probe-password-env)",
            ),
            Some(pw) => match ws_round_trip(&client, o, pw).await {
                Ok((latency, detail)) => {
                    Check::ok("ws.round_trip", o.url.as_str(), detail).with_latency(latency)
                }
                Err(e) => Check::fail(
                    "ws.round_trip",
                    o.url.as_str(),
                    e.to_string(),
                    "check the /api/ws proxy (Upgrade/Connection headers, HTTP/1.1) and the server log",
                ),
            },
        });
    }
    if o.url.scheme() == "https" {
        checks.push(cert_check(o).await);
    }
    Report::new(o.url.as_str(), checks)
}

fn http_client(o: &HealthOptions) -> Result<reqwest::Client, StepError> {
    let mut b = reqwest::Client::builder()
        .timeout(o.timeout)
        .user_agent(concat!("fullslack-health/", env!("CARGO_PKG_VERSION")));
    if let Some(ca) = &o.ca_file {
        let pem = std::fs::read(ca).map_err(|e| {
            StepError::Protocol(format!("cannot read CA file {}: {e}", ca.display()))
        })?;
        b = b.add_root_certificate(reqwest::Certificate::from_pem(&pem)?);
    }
    Ok(b.build()?)
}

fn join(base: &Url, path: &str) -> String {
    format!("{}{}", base.as_str().trim_end_matches('/'), path)
}

async fn http_check(client: &reqwest::Client, o: &HealthOptions, path: &str, name: &str) -> Check {
    let url = join(&o.url, path);
    let started = Instant::now();
    match client.get(&url).send().await {
        Ok(resp) => {
            let status = resp.status();
            let body = resp.text().await.unwrap_or_default();
            let elapsed = started.elapsed();
            let body = body.trim().chars().take(200).collect::<String>();
            if status.is_success() {
                Check::ok(name, &url, format!("{status} {body}")).with_latency(elapsed)
            } else {
                Check::fail(
                    name,
                    &url,
                    format!("{status} {body}"),
                    if path == "/readyz" {
                        "the server is up but not ready: the body says which dependency (store, Redis) failed"
                    } else {
                        "the server answers but is not healthy: read its log"
                    },
                )
                .with_latency(elapsed)
            }
        }
        Err(e) => Check::fail(
            name,
            &url,
            format!("request failed: {e}"),
            "check the server is running, the URL and port, and that the proxy forwards to it",
        ),
    }
}

async fn auth(
    client: &reqwest::Client,
    o: &HealthOptions,
    pw: &Secret,
) -> Result<String, StepError> {
    let body = json!({"username": o.probe_user, "password": pw.expose(), "display_name": "fullslack health probe"});
    let resp = client
        .post(join(&o.url, "/api/auth/register"))
        .json(&body)
        .send()
        .await?;
    let resp = if resp.status() == StatusCode::CONFLICT {
        client
            .post(join(&o.url, "/api/auth/login"))
            .json(&json!({"username": o.probe_user, "password": pw.expose()}))
            .send()
            .await?
    } else {
        resp
    };
    let status = resp.status();
    let v: Value = resp.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        return Err(StepError::Protocol(format!(
            "probe user `{}` could not log in: {status} {}",
            o.probe_user,
            v.pointer("/error/message")
                .and_then(Value::as_str)
                .unwrap_or("")
        )));
    }
    v.get("token")
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| StepError::Protocol("auth answer has no token".into()))
}

async fn probe_channel(
    client: &reqwest::Client,
    o: &HealthOptions,
    token: &str,
) -> Result<(String, i64), StepError> {
    let resp = client
        .post(join(&o.url, "/api/dms"))
        .bearer_auth(token)
        .json(&json!({"user_ids": []}))
        .send()
        .await?;
    if resp.status().is_success() {
        let v: Value = resp.json().await?;
        if let Some(id) = v.get("id").and_then(Value::as_str) {
            return Ok((
                id.to_string(),
                v.get("last_seq").and_then(Value::as_i64).unwrap_or(0),
            ));
        }
    }
    let resp = client
        .post(join(&o.url, "/api/channels"))
        .bearer_auth(token)
        .json(&json!({"name": PROBE_CHANNEL, "kind": "private"}))
        .send()
        .await?;
    if resp.status().is_success() {
        let v: Value = resp.json().await?;
        if let Some(id) = v.get("id").and_then(Value::as_str) {
            return Ok((
                id.to_string(),
                v.get("last_seq").and_then(Value::as_i64).unwrap_or(0),
            ));
        }
    }
    let list: Value = client
        .get(join(&o.url, "/api/channels"))
        .bearer_auth(token)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    list.as_array()
        .into_iter()
        .flatten()
        .find(|c| c.get("name").and_then(Value::as_str) == Some(PROBE_CHANNEL))
        .and_then(|c| {
            Some((
                c.get("id")?.as_str()?.to_string(),
                c.get("last_seq").and_then(Value::as_i64).unwrap_or(0),
            ))
        })
        .ok_or_else(|| StepError::Protocol("could not create or find a probe channel".into()))
}

async fn ws_round_trip(
    client: &reqwest::Client,
    o: &HealthOptions,
    pw: &Secret,
) -> Result<(Duration, String), StepError> {
    let token = auth(client, o, pw).await?;
    let (channel, last_seq) = probe_channel(client, o, &token).await?;
    let mut ws_url = o.url.clone();
    let scheme = if o.url.scheme() == "https" {
        "wss"
    } else {
        "ws"
    };
    ws_url
        .set_scheme(scheme)
        .map_err(|_| StepError::Protocol("cannot build the WebSocket URL".into()))?;
    let ws_url = join(&ws_url, "/api/ws");
    let mut req = ws_url.as_str().into_client_request()?;
    let auth_value = format!("Bearer {token}")
        .parse()
        .map_err(|_| StepError::Protocol("token is not a valid header value".into()))?;
    req.headers_mut().insert("authorization", auth_value);
    let connector =
        tokio_tungstenite::Connector::Rustls(crate::tls::client_config(o.ca_file.as_deref())?);
    let (mut ws, _) = tokio::time::timeout(
        o.timeout,
        tokio_tungstenite::connect_async_tls_with_config(req, None, true, Some(connector)),
    )
    .await
    .map_err(|_| StepError::Timeout(o.timeout, "the WebSocket handshake"))??;

    let deadline = o.timeout;
    wait_for(&mut ws, deadline, "hello", |v| v["type"] == "hello").await?;
    let resume = json!({"type": "resume", "channels": {channel.clone(): last_seq}});
    ws.send(Message::text(resume.to_string())).await?;
    wait_for(&mut ws, deadline, "resumed", |v| v["type"] == "resumed").await?;

    let client_id = format!("probe-{}", uuid::Uuid::new_v4());
    let send = json!({"type": "send", "ref": "p1", "channel": channel, "client_id": client_id, "text": "health probe"});
    let started = Instant::now();
    ws.send(Message::text(send.to_string())).await?;
    let mut acked = false;
    let mut echoed = false;
    let overall = tokio::time::Instant::now() + deadline;
    while !(acked && echoed) {
        let frame = tokio::time::timeout_at(overall, ws.next())
            .await
            .map_err(|_| StepError::Timeout(deadline, "the ack and the message event"))?;
        let Some(frame) = frame else {
            return Err(StepError::Protocol("server closed the socket".into()));
        };
        let Message::Text(t) = frame? else { continue };
        let v: Value = serde_json::from_str(t.as_str()).unwrap_or(Value::Null);
        match v["type"].as_str() {
            Some("ack") if v["ref"] == "p1" => acked = true,
            Some("event")
                if v["kind"] == "message" && v["data"]["client_id"] == client_id.as_str() =>
            {
                echoed = true
            }
            Some("error") if v["ref"] == "p1" => {
                return Err(StepError::Protocol(format!(
                    "send refused: {} {}",
                    v["code"], v["message"]
                )))
            }
            _ => {}
        }
    }
    let latency = started.elapsed();
    let _ = ws.close(None).await;
    Ok((
        latency,
        format!("sent, acked and received as `{}`", o.probe_user),
    ))
}

async fn wait_for<S>(
    ws: &mut S,
    timeout: Duration,
    what: &'static str,
    pred: impl Fn(&Value) -> bool,
) -> Result<Value, StepError>
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    let until = tokio::time::Instant::now() + timeout;
    loop {
        let frame = tokio::time::timeout_at(until, ws.next())
            .await
            .map_err(|_| StepError::Timeout(timeout, what))?;
        let Some(frame) = frame else {
            return Err(StepError::Protocol(format!(
                "server closed the socket before {what}"
            )));
        };
        if let Message::Text(t) = frame? {
            let v: Value = serde_json::from_str(t.as_str()).unwrap_or(Value::Null);
            if pred(&v) {
                return Ok(v);
            }
        }
    }
}

async fn cert_check(o: &HealthOptions) -> Check {
    let host = o.url.host_str().unwrap_or_default().to_string();
    let port = o.url.port_or_known_default().unwrap_or(443);
    let addr = match (host.as_str(), port)
        .to_socket_addrs()
        .map(|mut a| a.next())
    {
        Ok(Some(a)) => a,
        _ => {
            return Check::fail(
                "tls.certificate",
                &host,
                "cannot resolve the host",
                "check DNS for the domain (`fullslack doctor`)",
            )
        }
    };
    match crate::tls::inspect(addr, &host, o.ca_file.as_deref(), o.timeout).await {
        Ok(info) => cert_verdict(&host, &info, o.cert_min_days),
        Err(e) => Check::fail(
            "tls.certificate",
            &host,
            StepError::from(e).to_string(),
            "check Nginx listens on 443 with the certificate for this name",
        ),
    }
}

/// Judges a certificate.
pub fn cert_verdict(subject: &str, info: &crate::tls::CertInfo, min_days: i64) -> Check {
    let detail = format!(
        "{} days left (expires {}), issuer {}",
        info.days_left, info.not_after, info.issuer
    );
    if info.days_left < 0 {
        return Check::fail(
            "tls.certificate",
            subject,
            format!("expired: {detail}"),
            "renew now: `fullslack cert renew --stack FILE` and reload Nginx",
        );
    }
    if let Some(err) = &info.verify_error {
        return Check::fail(
            "tls.certificate",
            subject,
            format!("not trusted ({err}); {detail}"),
            "serve the full chain (fullchain.pem) for this domain from a trusted CA (Let's Encrypt production, not staging)",
        );
    }
    if info.days_left < min_days {
        return Check::fail(
            "tls.certificate",
            subject,
            format!("expires soon: {detail}"),
            "renewal is not working: check the ACME renew timer and the HTTP-01 challenge path",
        );
    }
    Check::ok("tls.certificate", subject, format!("valid, {detail}"))
}
