//! `fullslack health`: `/healthz`, `/readyz`, a real WebSocket round trip as a probe user, and
//! the TLS certificate's validity.

use std::net::ToSocketAddrs;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use fullslack_protocol::{
    rest::{Credentials, ErrorBody, TokenResponse},
    ClientFrame, ServerFrame,
};
use futures_util::{SinkExt, StreamExt};
use reqwest::{StatusCode, Url};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use crate::check::{Check, Report};
use crate::secret::{ExposeSecret, SecretString};

/// The environment variable the probe account's password is read from by default (`health`,
/// `deploy`'s health gate, the workflows `init --ci github` writes).
pub const PROBE_PASSWORD_ENV: &str = "FULLSLACK_PROBE_PASSWORD";

/// What to probe and how.
#[derive(Debug, Clone)]
pub struct HealthOptions {
    /// Base URL (`https://chat.example.com`).
    pub url: Url,
    /// Probe user name.
    pub probe_user: String,
    /// Probe password (signs in, never registers unless `register_probe`).
    pub probe_password: Option<SecretString>,
    /// A token of the probe identity: used as is, no sign-in at all.
    pub probe_token: Option<SecretString>,
    /// Register the probe account first (once, when setting up monitoring).
    pub register_probe: bool,
    /// Per-step timeout.
    pub timeout: Duration,
    /// Extra CA certificates (PEM) to trust.
    pub ca_file: Option<PathBuf>,
    /// Run the WebSocket round trip.
    pub websocket: bool,
    /// Days left under which a certificate fails.
    pub cert_min_days: i64,
}

/// Errors of one probe step (turned into failed checks). Each keeps its cause chain in the
/// text (`… : invalid peer certificate: Expired`, `… : failed to lookup address`).
#[derive(Debug, thiserror::Error)]
enum StepError {
    #[error("{}", chain(.0))]
    Http(#[from] reqwest::Error),
    #[error("{}", chain(.0.as_ref()))]
    Ws(Box<tokio_tungstenite::tungstenite::Error>),
    #[error("{}", chain(.0))]
    Tls(#[from] crate::tls::TlsError),
    #[error("timed out after {0:?} waiting for {1}")]
    Timeout(Duration, &'static str),
    #[error("{0}")]
    Protocol(String),
    /// The server (or a proxy) answered 429.
    #[error("rate limited (429) at {what}{}", .retry_after.map(|s| format!(", retry after {s} s")).unwrap_or_default())]
    RateLimited {
        what: &'static str,
        retry_after: Option<u64>,
    },
    /// The probe identity was refused (401).
    #[error("{0}")]
    Refused(String),
}

/// An error and its sources, `: `-joined, without repeating a source its parent already shows.
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let t = s.to_string();
        if !out.contains(&t) {
            out.push_str(": ");
            out.push_str(&t);
        }
        cur = s.source();
    }
    out
}

impl StepError {
    /// The fix for a failed round trip: the proxy only when the proxy is the likely cause.
    fn fix(&self) -> String {
        match self {
            StepError::RateLimited { .. } => "the server's rate limit answered, not the proxy: wait and rerun (sign-ins are limited per address and user, default 10/min; a probe token via FULLSLACK_PROBE_TOKEN needs no sign-in)".into(),
            StepError::Refused(_) => "create the probe account once (`fullslack health URL --register-probe`, or sign up in the web client) and give its password in FULLSLACK_PROBE_PASSWORD, or a fresh token in FULLSLACK_PROBE_TOKEN".into(),
            StepError::Tls(_) => "check the certificate Nginx serves for this name (`fullslack doctor`)".into(),
            StepError::Http(e) if e.is_connect() || e.is_timeout() => "check the server is running, the URL and port, and that the proxy forwards to it".into(),
            _ => "check the /api/ws proxy (Upgrade/Connection headers, HTTP/1.1) and the server log".into(),
        }
    }
}

fn retry_after(h: &reqwest::header::HeaderMap) -> Option<u64> {
    h.get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
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
        checks.push(if o.probe_token.is_none() && o.probe_password.is_none() {
            Check::skip(
                "ws.round_trip",
                o.url.as_str(),
                "no probe identity: set FULLSLACK_PROBE_TOKEN (a token) or FULLSLACK_PROBE_PASSWORD (the probe account's password)",
            )
        } else {
            match ws_round_trip(&client, o).await {
                Ok((latency, detail)) => {
                    Check::ok("ws.round_trip", o.url.as_str(), detail).with_latency(latency)
                }
                Err(e) => Check::fail("ws.round_trip", o.url.as_str(), e.to_string(), e.fix()),
            }
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
            format!("request failed: {}", chain(&e)),
            if e.is_connect() && chain(&e).to_lowercase().contains("certificate") {
                "the TLS handshake failed: check the certificate Nginx serves (`fullslack doctor`)"
            } else {
                "check the server is running, the URL and port, and that the proxy forwards to it"
            },
        ),
    }
}

/// Signs the probe in (registering it first only with `--register-probe`): its token.
async fn sign_in(
    client: &reqwest::Client,
    o: &HealthOptions,
    pw: &SecretString,
) -> Result<String, StepError> {
    if o.register_probe {
        let body = Credentials {
            username: o.probe_user.clone(),
            password: pw.expose_secret().to_string(),
            display_name: Some("fullslack health probe".into()),
        };
        let resp = client
            .post(join(&o.url, "/api/auth/register"))
            .json(&body)
            .send()
            .await?;
        if resp.status().is_success() {
            return token_of(resp, o).await;
        }
        if resp.status() == StatusCode::TOO_MANY_REQUESTS {
            return Err(StepError::RateLimited {
                what: "registration",
                retry_after: retry_after(resp.headers()),
            });
        }
        // 409: it exists already; sign in below.
    }
    let resp = client
        .post(join(&o.url, "/api/auth/login"))
        .json(&Credentials {
            username: o.probe_user.clone(),
            password: pw.expose_secret().to_string(),
            display_name: None,
        })
        .send()
        .await?;
    token_of(resp, o).await
}

async fn token_of(resp: reqwest::Response, o: &HealthOptions) -> Result<String, StepError> {
    let status = resp.status();
    if status == StatusCode::TOO_MANY_REQUESTS {
        return Err(StepError::RateLimited {
            what: "sign-in",
            retry_after: retry_after(resp.headers()),
        });
    }
    let body = resp.bytes().await.unwrap_or_default();
    let reason = serde_json::from_slice::<ErrorBody>(&body)
        .map(|e| e.error.message)
        .unwrap_or_default();
    if status == StatusCode::UNAUTHORIZED {
        return Err(StepError::Refused(format!(
            "probe user `{}` could not log in: {status} {reason} (no such account, or another password)",
            o.probe_user
        )));
    }
    if !status.is_success() {
        return Err(StepError::Protocol(format!(
            "probe user `{}` could not log in: {status} {reason}",
            o.probe_user
        )));
    }
    serde_json::from_slice::<TokenResponse>(&body)
        .map(|answer| answer.token)
        .map_err(|_| StepError::Protocol("auth answer has no token".into()))
}

/// An authenticated WebSocket round trip that writes nothing: connect with the probe's token,
/// wait for `hello`, then `ping` → `pong` (docs/protocol.md). No account is created and no
/// message is posted; a session this run signed in is ended again.
async fn ws_round_trip(
    client: &reqwest::Client,
    o: &HealthOptions,
) -> Result<(Duration, String), StepError> {
    let (token, signed_in) = match (&o.probe_token, &o.probe_password) {
        (Some(t), _) => (t.expose_secret().to_string(), false),
        (None, Some(pw)) => (sign_in(client, o, pw).await?, true),
        (None, None) => return Err(StepError::Protocol("no probe identity".into())),
    };
    let result = ping_pong(o, &token).await;
    if signed_in {
        // Best effort: a failed logout leaves one session that expires by itself.
        let _ = client
            .post(join(&o.url, "/api/auth/logout"))
            .bearer_auth(&token)
            .send()
            .await;
    }
    result
}

async fn ping_pong(o: &HealthOptions, token: &str) -> Result<(Duration, String), StepError> {
    use tokio_tungstenite::tungstenite::Error as WsError;
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
    let connected = tokio::time::timeout(
        o.timeout,
        tokio_tungstenite::connect_async_tls_with_config(req, None, true, Some(connector)),
    )
    .await
    .map_err(|_| StepError::Timeout(o.timeout, "the WebSocket handshake"))?;
    let (mut ws, _) = match connected {
        Ok(c) => c,
        Err(WsError::Http(resp)) if resp.status().as_u16() == 429 => {
            return Err(StepError::RateLimited {
                what: "the WebSocket handshake",
                retry_after: resp
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse().ok()),
            })
        }
        Err(WsError::Http(resp)) if resp.status().as_u16() == 401 => {
            return Err(StepError::Refused(format!(
                "the WebSocket handshake refused the probe's token (401): expired or revoked{}",
                if o.probe_token.is_some() {
                    " (FULLSLACK_PROBE_TOKEN)"
                } else {
                    ""
                }
            )))
        }
        Err(e) => return Err(e.into()),
    };

    let deadline = o.timeout;
    let hello = wait_for(&mut ws, deadline, "hello", |f| {
        matches!(f, ServerFrame::Hello { .. })
    })
    .await?;
    let user = match hello {
        ServerFrame::Hello { user, .. } => user.username,
        _ => o.probe_user.clone(),
    };
    let started = Instant::now();
    let ping = ClientFrame::Ping {
        reference: Some(PING_REF.into()),
    };
    let ping = serde_json::to_string(&ping)
        .map_err(|e| StepError::Protocol(format!("cannot encode the ping frame: {e}")))?;
    ws.send(Message::text(ping)).await?;
    wait_for(
        &mut ws,
        deadline,
        "pong",
        |f| matches!(f, ServerFrame::Pong { reference: Some(r) } if r == PING_REF),
    )
    .await?;
    let latency = started.elapsed();
    let _ = ws.close(None).await;
    Ok((
        latency,
        format!("signed in as `{user}`, hello and ping/pong over /api/ws (nothing written)"),
    ))
}

/// The `ref` of the probe's ping, echoed by its `pong`.
const PING_REF: &str = "fullslack-health";

/// The first server frame that `pred` accepts (frames that are not protocol frames are
/// skipped like any other).
async fn wait_for<S>(
    ws: &mut S,
    timeout: Duration,
    what: &'static str,
    pred: impl Fn(&ServerFrame) -> bool,
) -> Result<ServerFrame, StepError>
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
            match serde_json::from_str::<ServerFrame>(t.as_str()) {
                Ok(frame) if pred(&frame) => return Ok(frame),
                _ => {}
            }
        }
    }
}

async fn cert_check(o: &HealthOptions) -> Check {
    let host = o.url.host_str().unwrap_or_default().to_string();
    let port = o.url.port_or_known_default().unwrap_or(443);
    let Ok(Some(addr)) = (host.as_str(), port)
        .to_socket_addrs()
        .map(|mut a| a.next())
    else {
        return Check::fail(
            "tls.certificate",
            &host,
            "cannot resolve the host",
            "check DNS for the domain (`fullslack doctor`)",
        );
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
            "renew now and reload Nginx: replace fullchain.pem and privkey.pem in the cert directory (e.g. `certbot renew`; `fullslack` does not issue certificates yet)",
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
