//! One WebSocket client: bind a loopback source address, connect, handshake with the bearer
//! token, `resume` with no channels, wait for `resumed`, then read (and maybe send) until told
//! to stop. Kept lean so one process holds 10k+ of them: small tungstenite buffers, one task.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use fullslack_protocol::{ChannelId, ClientFrame, ServerFrame};

use crate::stats::{self, counters};

/// What the clients are doing; every client watches it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Connecting,
    Sending,
    /// No new sends; keep reading so outstanding deliveries arrive.
    Draining,
    Done,
}

/// How a client sends.
pub enum SendMode {
    /// Only reads.
    None,
    /// One send per token from the rate scheduler.
    OpenLoop(mpsc::Receiver<()>),
    /// Keep this many sends unacknowledged while the phase is `Sending`.
    Closed(usize),
}

/// Everything clients share.
pub struct Shared {
    pub run: String,
    pub text: String,
    pub config: WebSocketConfig,
}

pub struct Spec {
    pub idx: usize,
    /// Index of the node `server` is (cross-node deliveries are measured apart).
    pub node: usize,
    pub server: SocketAddr,
    pub source: Ipv4Addr,
    pub token: String,
    /// Channel this client sends to, and how many sockets receive each of its messages.
    pub channel: Option<(ChannelId, u64)>,
    pub mode: SendMode,
}

pub fn ws_config(read_buffer: usize, write_buffer: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(read_buffer.max(256))
        .write_buffer_size(write_buffer)
        .max_write_buffer_size(usize::MAX)
}

async fn connect(spec: &Spec, shared: &Shared) -> Result<WebSocketStream<TcpStream>> {
    let sock = TcpSocket::new_v4()?;
    sock.bind(SocketAddr::new(spec.source.into(), 0))
        .with_context(|| format!("bind {}", spec.source))?;
    let stream = sock.connect(spec.server).await.context("tcp connect")?;
    stream.set_nodelay(true)?;
    let mut req = format!("ws://{}/api/ws", spec.server).into_client_request()?;
    req.headers_mut()
        .insert("authorization", format!("Bearer {}", spec.token).parse()?);
    let (mut ws, _) = tokio_tungstenite::client_async_with_config(req, stream, Some(shared.config))
        .await
        .context("websocket handshake")?;
    // hello → resume {} → resumed (anything else in between is ignored). Once per socket, so
    // these frames go through the protocol types; the hot path below only scans.
    let mut resumed = false;
    let mut sent_resume = false;
    while !resumed {
        let msg = ws
            .next()
            .await
            .context("closed during resume")?
            .context("read")?;
        let Message::Text(t) = msg else { continue };
        match serde_json::from_str::<ServerFrame>(&t) {
            Ok(ServerFrame::Hello { .. }) if !sent_resume => {
                let resume = ClientFrame::Resume {
                    channels: Default::default(),
                };
                ws.send(Message::text(serde_json::to_string(&resume)?))
                    .await?;
                sent_resume = true;
            }
            Ok(ServerFrame::Resumed { .. }) if sent_resume => resumed = true,
            Ok(ServerFrame::Error { .. }) => bail!("error frame during resume: {t}"),
            _ => {}
        }
    }
    Ok(ws)
}

/// Connect, report readiness on `ready`, then serve until the phase is `Done`.
pub async fn run(
    mut spec: Spec,
    shared: Arc<Shared>,
    mut phase: watch::Receiver<Phase>,
    permit: tokio::sync::OwnedSemaphorePermit,
    ready: mpsc::UnboundedSender<Result<Duration, String>>,
) {
    let t0 = Instant::now();
    let ws = tokio::time::timeout(Duration::from_secs(60), connect(&spec, &shared)).await;
    drop(permit);
    let mut ws = match ws {
        Ok(Ok(ws)) => {
            let _ = ready.send(Ok(t0.elapsed()));
            ws
        }
        Ok(Err(e)) => {
            let _ = ready.send(Err(format!("{e:#}")));
            return;
        }
        Err(_) => {
            let _ = ready.send(Err("connect+resume timed out after 60 s".into()));
            return;
        }
    };
    drop(ready);
    let c = counters();
    let mut n: u64 = 0;
    let mut inflight: usize = 0;
    let mut current = *phase.borrow();
    loop {
        // Closed loop: top up the window while sending.
        if let (SendMode::Closed(window), Some((ch, fanout))) = (&spec.mode, &spec.channel) {
            while current == Phase::Sending && inflight < *window {
                if send_one(&mut ws, &shared, (spec.idx, spec.node), ch, *fanout, &mut n)
                    .await
                    .is_err()
                {
                    c.closed.fetch_add(1, Relaxed);
                    return;
                }
                inflight += 1;
            }
        }
        let open_loop = match &mut spec.mode {
            SendMode::OpenLoop(rx) => Some(rx),
            _ => None,
        };
        tokio::select! {
            biased;
            ch = phase.changed() => {
                if ch.is_err() { return; }
                current = *phase.borrow();
                if current == Phase::Done { return; }
            }
            msg = ws.next() => match msg {
                Some(Ok(Message::Text(t))) => {
                    if stats::measuring() { c.frames_window.fetch_add(1, Relaxed); }
                    if on_frame(&t, &shared.run, spec.node) {
                        inflight = inflight.saturating_sub(1);
                    }
                }
                Some(Ok(Message::Close(_)) | Err(_)) | None => {
                    if current != Phase::Done { c.closed.fetch_add(1, Relaxed); }
                    return;
                }
                Some(Ok(_)) => {}
            },
            tick = async { match open_loop { Some(rx) => rx.recv().await, None => std::future::pending().await } } => {
                if tick.is_some() && current == Phase::Sending {
                    if let Some((ch, fanout)) = &spec.channel {
                        if send_one(&mut ws, &shared, (spec.idx, spec.node), ch, *fanout, &mut n).await.is_err() {
                            c.closed.fetch_add(1, Relaxed);
                            return;
                        }
                    }
                }
            }
        }
    }
}

async fn send_one(
    ws: &mut WebSocketStream<TcpStream>,
    shared: &Shared,
    (idx, node): (usize, usize),
    channel: &ChannelId,
    fanout: u64,
    n: &mut u64,
) -> Result<()> {
    *n += 1;
    let ts = stats::now_ns();
    let frame = serde_json::to_string(&ClientFrame::Send {
        reference: None,
        channel: channel.clone(),
        client_id: stats::make_client_id(&shared.run, idx, node, *n, ts),
        text: shared.text.clone(),
        thread_root: None,
    })?;
    let c = counters();
    c.sent.fetch_add(1, Relaxed);
    if stats::measuring() {
        c.sent_window.fetch_add(1, Relaxed);
        c.frames_window.fetch_add(1, Relaxed);
    }
    // Owed deliveries are decided by the send's own timestamp, as its deliveries are counted
    // (`in_window(ts)` in `on_frame`): a send stamped just before the window opened but
    // counted after it was owed and never "of the window", one phantom missing delivery.
    if stats::in_window(ts) {
        c.expected_window.fetch_add(fanout, Relaxed);
    }
    ws.send(Message::text(frame)).await?;
    Ok(())
}

/// Account one server frame; true if it answers one of our sends (ack or error). The hot path:
/// it scans for the two fields it needs ([`stats::str_field`]) instead of decoding a
/// [`ServerFrame`], whose message and timestamps would cost more than the server's work.
fn on_frame(t: &str, run: &str, my_node: usize) -> bool {
    let c = counters();
    match stats::str_field(t, "type") {
        Some("event") => {
            let Some(client_id) = stats::str_field(t, "client_id") else {
                // Not a message: counted only if it is a receipt (a message event always
                // carries its client_id, so a text that spells "kind" is never read here).
                if stats::measuring()
                    && matches!(stats::str_field(t, "kind"), Some("receipt" | "receipts"))
                {
                    c.receipts_window.fetch_add(1, Relaxed);
                }
                return false;
            };
            let Some((sender_node, ts)) = stats::parse_client_id(run, client_id) else {
                return false;
            };
            let now = stats::now_ns();
            c.delivered_total.fetch_add(1, Relaxed);
            if stats::measuring() {
                c.delivered_window.fetch_add(1, Relaxed);
            }
            if stats::in_window(ts) {
                c.delivered_of_window.fetch_add(1, Relaxed);
                stats::record_deliver(now.saturating_sub(ts), sender_node != my_node);
            }
            false
        }
        Some("ack") => {
            let now = stats::now_ns();
            c.acks_total.fetch_add(1, Relaxed);
            if stats::measuring() {
                c.acks_window.fetch_add(1, Relaxed);
            }
            if let Some((_, ts)) =
                stats::str_field(t, "client_id").and_then(|id| stats::parse_client_id(run, id))
            {
                if stats::in_window(ts) {
                    stats::record_ack(now.saturating_sub(ts));
                }
            }
            true
        }
        Some("error") => {
            stats::count_error(stats::str_field(t, "code").unwrap_or("unknown"));
            true
        }
        _ => false,
    }
}
