//! `GET /api/ws`: one task per connection, one loop selecting over the socket, the connection's
//! queue, its control state (which also carries server shutdown), the heartbeat and the token's
//! expiry.
//!
//! Exactly-once, in-order delivery per channel rests on one cursor per channel: the highest seq
//! this socket was sent. A live event at `cursor + 1` goes out; one at or below the cursor is a
//! duplicate and is dropped; one above `cursor + 1` means something was missed (a full queue, an
//! out-of-order publish, another node) and the gap is refilled from the store first. Nothing is
//! delivered before the client's `resume`, which sets the cursors.
//!
//! What may not be lost (revocation, joins, leaves) arrives in the connection's
//! [`crate::hub::Control`], consulted before anything is written: a revoked socket writes
//! nothing more but its close frame, and no event of a channel after the user's `member_left`
//! goes out. Sends are pipelined ([`pipeline`]): several in flight, answered in order, the
//! socket left unread while the window is full. Every write has a deadline (one heartbeat;
//! less once the server is shutting down), so a peer that stops reading cannot hold the task,
//! and a close from the server completes the closing handshake (or times out) before the
//! socket is dropped.
//!
//! | module | what it is |
//! | --- | --- |
//! | this file | the upgrade, the connection's loop, writes with deadlines, frames in, answers out |
//! | [`pipeline`] | the sends in flight: a window, answers in order, back-pressure |
//! | [`events`] | resume, refills, live events by cursor, membership changes, rechecks |
//! | [`presence`] | typing relays and `presence_subscribe` |

mod events;
mod pipeline;
mod presence;

use std::{
    collections::{HashMap, VecDeque},
    future::Future,
    ops::ControlFlow,
    sync::atomic::Ordering,
    time::Duration,
};

use axum::{
    extract::{
        ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade},
        State,
    },
    response::Response,
};
use futures_util::SinkExt;
use tokio::time::{sleep, sleep_until, Instant};
use tokio_util::sync::CancellationToken;

use crate::{
    auth::AuthUser,
    error::ApiError,
    hub::{ConnHandle, MembershipChange, Outbound},
    model::ChannelId,
    protocol::{
        parse_client_frame, AckBody, ClientFrame, ClientPresence, FrameError, Limits, ServerFrame,
    },
    AppState,
};

use self::pipeline::{Pipeline, SendRequest};

pub const CLOSE_POLICY: u16 = 1008;
pub const CLOSE_TOO_BIG: u16 = 1009;
pub const CLOSE_INVALID_DATA: u16 = 1007;
pub const CLOSE_RESTART: u16 = 1012;

/// Queued frames written per flush at most.
const OUTBOUND_BATCH: usize = 256;

/// Events fetched per store read while refilling.
const REFILL_PAGE: usize = 500;

/// Bytes read from a socket per read at most, and what its read buffer keeps while idle: every
/// socket holds one all its life, so it is small. A bigger frame still fits (up to
/// `max_frame_bytes`: the buffer grows to the frame's length once its header is read).
const READ_BUFFER: usize = 512;

/// Upper bound of the closing handshake's wait (see [`Connection::close_wait`]).
const CLOSE_WAIT_MAX: Duration = Duration::from_secs(5);

#[utoipa::path(get, path = "/api/ws", tag = "realtime", summary = "WebSocket upgrade (frames: docs/protocol.md)", responses((status = 101, description = "Switching protocols")))]
pub async fn handler(State(app): State<AppState>, who: AuthUser, ws: WebSocketUpgrade) -> Response {
    let max = app.settings.limits.max_frame_bytes;
    // Small buffers: an idle socket should cost a few KB, not tungstenite's 128 KiB default.
    ws.read_buffer_size(READ_BUFFER)
        // Frames produced in one loop turn are written together and flushed once.
        .write_buffer_size(16 * 1024)
        .max_message_size(max)
        .max_frame_size(max)
        .on_upgrade(move |socket| {
            let tracker = app.tasks.clone();
            tracker.track_future(Connection::run(app, who, socket))
        })
}

/// Why a connection ends.
#[derive(Debug)]
enum Exit {
    /// The peer is gone, or a write failed or missed its deadline: nothing more can be said.
    Gone,
    /// The peer sent its close: flush the reply tungstenite queued, then drop.
    PeerClosed,
    /// Send this close frame, then wait (bounded) for the peer's.
    Close(u16, &'static str),
}

const SESSION_ENDED: Exit = Exit::Close(CLOSE_POLICY, "session ended");

type Flow = ControlFlow<Exit>;

fn flow(r: Result<(), Exit>) -> Flow {
    match r {
        Ok(()) => ControlFlow::Continue(()),
        Err(e) => ControlFlow::Break(e),
    }
}

/// Awaits a socket write for at most `limit`, and once the server is shutting down for at most
/// `close_wait` more: a peer that does not read must hold neither its task nor the shutdown.
async fn timed<T, E>(
    write: impl Future<Output = Result<T, E>>,
    limit: Duration,
    shutdown: &CancellationToken,
    close_wait: Duration,
) -> Result<T, Exit> {
    tokio::select! {
        // The write first: when it is ready at once, no timer is ever registered.
        biased;
        r = write => r.map_err(|_| Exit::Gone),
        _ = sleep(limit) => Err(Exit::Gone),
        _ = async { shutdown.cancelled().await; sleep(close_wait).await } => Err(Exit::Gone),
    }
}

struct Connection {
    app: AppState,
    who: AuthUser,
    handle: ConnHandle,
    socket: WebSocket,
    /// Channel → highest seq sent on this socket. Empty until `resume`.
    cursors: HashMap<ChannelId, i64>,
    resumed: bool,
    last_heard: Instant,
    last_typing: HashMap<ChannelId, Instant>,
    /// Frames fed to the socket since the last flush.
    unflushed: usize,
    /// Messages written but not yet flushed: delivered once the flush succeeds. One entry per
    /// run of one channel's messages (the highest seq), not one per message.
    delivered_pending: Vec<(ChannelId, i64)>,
    /// Channel events written but not yet flushed (counted in the metrics once flushed).
    events_unflushed: u64,
    /// Membership changes taken from the control state and being applied, oldest first (the
    /// front one stays here until done, so the writes it makes see it).
    applying: VecDeque<MembershipChange>,
    /// Deadline of one write or flush: a heartbeat.
    write_timeout: Duration,
    /// How long a closing handshake (and, once shutting down, a write) may still take.
    close_wait: Duration,
    shutdown: CancellationToken,
    /// Sends in flight, answered in the order they came.
    pipeline: Pipeline,
}

fn close(code: u16, reason: &'static str) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: Utf8Bytes::from_static(reason),
    }))
}

impl Connection {
    /// Registers the connection and returns its task's future. Not an `async fn`: one keeps its
    /// arguments in its future beside what they were moved into (the socket twice), and every
    /// socket keeps that future all its life; the async block below holds the connection once.
    fn run(
        app: AppState,
        who: AuthUser,
        socket: WebSocket,
    ) -> impl Future<Output = ()> + Send + 'static {
        let (handle, mut rx, presence) = app.hub.connect(
            &who.user_id,
            &who.session_id,
            app.settings.realtime.outbound_queue,
        );
        let heartbeat = app.settings.heartbeat();
        // Short enough that a close, even one waiting on a write, fits the shutdown grace.
        let close_wait = heartbeat
            .min(Duration::from_millis(app.settings.realtime.shutdown_grace_ms) / 3)
            .min(CLOSE_WAIT_MAX);
        let mut conn = Connection {
            app: app.clone(),
            who,
            handle,
            socket,
            cursors: HashMap::new(),
            resumed: false,
            last_heard: Instant::now(),
            last_typing: HashMap::new(),
            unflushed: 0,
            delivered_pending: Vec::new(),
            events_unflushed: 0,
            applying: VecDeque::new(),
            write_timeout: heartbeat,
            close_wait,
            shutdown: app.shutdown.clone(),
            pipeline: Pipeline::default(),
        };
        async move {
            // Boxed here and below: futures awaited in this task make up the size of the task every
            // socket keeps all its life, however rarely they run.
            if let Some(p) = presence {
                Box::pin(app.local_presence_changed(&conn.who.user_id, p)).await;
            }
            let exit = match Box::pin(conn.hello()).await {
                Ok(()) => match conn.flush().await {
                    Ok(()) => conn.serve(&mut rx).await,
                    Err(e) => e,
                },
                Err(e) => e,
            };
            if matches!(exit, Exit::Close(..)) {
                // The socket still works: the sends in flight get their acks before the close.
                let _ = Box::pin(conn.answer_all()).await;
            }
            // What is still in flight completes (and is published) even with nobody to answer.
            conn.pipeline.complete().await;
            Box::pin(conn.finish(exit)).await;
            // Channels it followed, and those a join subscribed it to that it had not applied yet.
            let channels: Vec<ChannelId> = conn
                .cursors
                .keys()
                .cloned()
                .chain(conn.applying.iter().filter_map(|c| match c {
                    MembershipChange::Added { channel_id, .. } => Some(channel_id.clone()),
                    MembershipChange::Removed { .. } => None,
                }))
                .collect();
            if let Some(p) = app.hub.disconnect(&conn.handle, channels) {
                // Going offline here stores and announces the last seen (unless another node
                // still has the user).
                Box::pin(app.local_presence_changed(&conn.who.user_id, p)).await;
            }
        }
    }

    async fn hello(&mut self) -> Result<(), Exit> {
        let Ok(user) = self.app.user(&self.who.user_id).await else {
            return Err(Exit::Close(CLOSE_POLICY, "unknown user"));
        };
        let frame = ServerFrame::Hello {
            user,
            session_id: self.who.session_id.clone(),
            heartbeat_ms: self.app.settings.realtime.heartbeat_ms,
            limits: Limits {
                max_message_len: self.app.settings.limits.max_message_len,
                max_frame_bytes: self.app.settings.limits.max_frame_bytes,
            },
        };
        self.send_frame(&frame).await
    }

    /// Ends the connection as `exit` says: a close frame and the closing handshake (the peer's
    /// close, or the peer going away, or `close_wait`), so that a client reading sees the code
    /// rather than a reset connection.
    async fn finish(&mut self, exit: Exit) {
        let (limit, wait, shutdown) = (self.write_timeout, self.close_wait, self.shutdown.clone());
        match exit {
            Exit::Gone => {}
            Exit::PeerClosed => {
                let _ = timed(self.socket.flush(), wait, &shutdown, wait).await;
            }
            Exit::Close(code, reason) => {
                // Frames fed before the close go first (they were allowed when fed).
                let sent = timed(
                    self.socket.send(close(code, reason)),
                    limit.min(wait),
                    &shutdown,
                    wait,
                )
                .await;
                if sent.is_ok() {
                    // Read (and drop) what the client still sends until its close: closing with
                    // unread data would reset the connection and lose our close frame.
                    let _ = tokio::time::timeout(wait, async {
                        while let Some(Ok(m)) = self.socket.recv().await {
                            if matches!(m, Message::Close(_)) {
                                break;
                            }
                        }
                    })
                    .await;
                }
            }
        }
    }

    async fn serve(&mut self, rx: &mut crate::hub::queue::Receiver<Outbound>) -> Exit {
        let heartbeat = self.app.settings.heartbeat();
        let expiry = Instant::now()
            + Duration::from_secs(
                (self.who.expires_at - time::OffsetDateTime::now_utc())
                    .whole_seconds()
                    .max(0) as u64,
            );
        let control = self.handle.control.clone();
        // Made once: a select! turn per delivered batch should not register a new timer, nor
        // a new waiter on the control state (made again only once it fired). One timer for the
        // next heartbeat and the token's expiry, whichever comes first: every socket keeps its
        // timers all its life.
        let mut next_ping = Instant::now() + heartbeat;
        let timer = sleep_until(next_ping.min(expiry));
        let notified = control.notified();
        tokio::pin!(timer, notified);
        loop {
            // Shutting down: the hub wakes every connection through its control state (see
            // `Hub::close_all`), so no branch below waits on the server's shared token.
            if self.app.hub.is_closing() {
                return Exit::Close(CLOSE_RESTART, "server restarting: reconnect and resume");
            }
            // Whatever was recorded (revocation, joins, leaves) is applied before anything else
            // is written.
            if let Err(e) = self.apply_control_if_pending().await {
                return e;
            }
            // What applying wrote (`channel_added`, `channel_removed`, a refill) goes out now:
            // the select below may wait a whole heartbeat for its next branch.
            if let Err(e) = self.flush().await {
                return e;
            }
            // In this order, not at random: a socket that always has something to read must not
            // keep acks and queued events from being written.
            let flow = tokio::select! {
                biased;
                _ = &mut timer => {
                    // Fired at its deadline or later: the expiry, else the heartbeat is due.
                    let now = Instant::now();
                    if now >= expiry {
                        ControlFlow::Break(Exit::Close(CLOSE_POLICY, "token expired: refresh and reconnect"))
                    } else if self.last_heard.elapsed() > heartbeat * 3 {
                        ControlFlow::Break(Exit::Close(CLOSE_POLICY, "no heartbeat"))
                    } else {
                        // The next one a heartbeat from now, however late this one was.
                        next_ping = now + heartbeat;
                        timer.as_mut().reset(next_ping.min(expiry));
                        flow(self.feed(Message::Ping(Default::default())).await)
                    }
                }
                // Applied (or, shutting down, obeyed) at the top of the loop.
                _ = &mut notified => {
                    notified.set(control.notified());
                    ControlFlow::Continue(())
                }
                Some((reference, result)) = self.pipeline.next(), if !self.pipeline.is_empty() => {
                    Box::pin(self.answer(reference, result.map(AckBody::Send))).await
                }
                Some(out) = rx.recv(), if self.resumed => {
                    // Take whatever else is already queued: one flush for the whole batch.
                    let mut r = self.on_outbound(out).await;
                    let mut batch = 1;
                    while r.is_ok() && batch < OUTBOUND_BATCH {
                        match rx.try_recv() {
                            Ok(more) => r = self.on_outbound(more).await,
                            Err(_) => break,
                        }
                        batch += 1;
                    }
                    flow(r)
                }
                incoming = self.socket.recv(), if !self.pipeline.is_full() => self.on_socket(incoming).await,
            };
            if let ControlFlow::Break(e) = flow {
                return e;
            }
            if let Err(e) = self.flush().await {
                return e;
            }
            // The queue overflowed at some point: everything may be behind, and the session or
            // memberships may have changed meanwhile. The store has it all.
            if self.resumed && self.handle.lagged.swap(false, Ordering::AcqRel) {
                let r = match self.apply_control_if_pending().await {
                    Ok(()) => Box::pin(self.recheck(false)).await,
                    Err(e) => Err(e),
                };
                if let Err(e) = r {
                    return e;
                }
                if let Err(e) = self.flush().await {
                    return e;
                }
            }
        }
    }

    /// [`Connection::apply_control`] when there is something to apply: it runs rarely and its
    /// future is large, so it is boxed and only then.
    async fn apply_control_if_pending(&mut self) -> Result<(), Exit> {
        if self.handle.control.is_pending() || !self.applying.is_empty() {
            Box::pin(self.apply_control()).await
        } else {
            Ok(())
        }
    }

    /// Writes what was fed and only then counts the messages in it as delivered.
    async fn flush(&mut self) -> Result<(), Exit> {
        if self.unflushed == 0 {
            return Ok(());
        }
        let mut write = std::pin::pin!(self.socket.flush());
        // Mostly done at once; only a write that must wait gets its deadline (boxed: the
        // deadline's timers would otherwise weigh in every socket's task).
        match futures_util::poll!(write.as_mut()) {
            std::task::Poll::Ready(r) => r.map_err(|_| Exit::Gone)?,
            std::task::Poll::Pending => {
                Box::pin(timed(
                    write,
                    self.write_timeout,
                    &self.shutdown,
                    self.close_wait,
                ))
                .await?;
            }
        }
        self.unflushed = 0;
        self.app
            .metrics
            .events_delivered
            .inc_by(std::mem::take(&mut self.events_unflushed));
        if !self.delivered_pending.is_empty() {
            self.app
                .note_delivered(&self.who.user_id, self.delivered_pending.drain(..));
        }
        Ok(())
    }

    /// Queues a frame in the socket's write buffer (see [`Connection::flush`]). A revoked
    /// session's socket writes nothing more (but its close).
    async fn feed(&mut self, msg: Message) -> Result<(), Exit> {
        if self.handle.control.is_revoked() {
            return Err(SESSION_ENDED);
        }
        self.unflushed += 1;
        let mut write = std::pin::pin!(self.socket.feed(msg));
        // Feeding mostly only copies into the write buffer and is done at once: no deadline
        // (a timer, a clock read) is set up for that.
        if let std::task::Poll::Ready(r) = futures_util::poll!(write.as_mut()) {
            return r.map_err(|_| Exit::Gone);
        }
        // Boxed: see `flush`.
        Box::pin(timed(
            write,
            self.write_timeout,
            &self.shutdown,
            self.close_wait,
        ))
        .await
    }

    async fn on_socket(&mut self, incoming: Option<Result<Message, axum::Error>>) -> Flow {
        // A revoked session's frames are not acted on (a `send` is neither stored nor acked).
        if self.handle.control.is_revoked() {
            return ControlFlow::Break(SESSION_ENDED);
        }
        let msg = match incoming {
            None => return ControlFlow::Break(Exit::Gone),
            Some(Ok(m)) => m,
            Some(Err(e)) => {
                // tungstenite reports oversized and non-UTF-8 frames as errors; say which.
                let text = e.to_string();
                return ControlFlow::Break(
                    if text.contains("Space limit exceeded")
                        || text.contains("too long")
                        || text.contains("too big")
                    {
                        self.app.metrics.error("too_large");
                        Exit::Close(CLOSE_TOO_BIG, "frame larger than max_frame_bytes")
                    } else if text.to_lowercase().contains("utf-8") || text.contains("utf8") {
                        self.app.metrics.error("invalid_utf8");
                        Exit::Close(CLOSE_INVALID_DATA, "text frame is not valid UTF-8")
                    } else {
                        Exit::Gone
                    },
                );
            }
        };
        self.last_heard = Instant::now();
        match msg {
            Message::Text(text) => self.on_text(text.as_str()).await,
            Message::Binary(_) => {
                Box::pin(self.send_error(
                    None,
                    "binary_not_supported",
                    "frames are JSON text".into(),
                    None,
                ))
                .await
            }
            Message::Ping(_) | Message::Pong(_) => ControlFlow::Continue(()),
            Message::Close(_) => ControlFlow::Break(Exit::PeerClosed),
        }
    }

    async fn on_text(&mut self, text: &str) -> Flow {
        match parse_client_frame(text) {
            Ok(send @ ClientFrame::Send { .. }) => self.start_send(send),
            // Every other frame is rare next to sends, and its future large: boxed, so that it
            // does not weigh in the task every socket keeps.
            other => Box::pin(self.on_request(other)).await,
        }
    }

    /// Puts a `send` frame in the pipeline: answered in order by the `select!` in `serve`.
    fn start_send(&mut self, frame: ClientFrame) -> Flow {
        if let ClientFrame::Send {
            reference,
            channel,
            client_id,
            text,
            thread_root,
        } = frame
        {
            let req = SendRequest {
                reference,
                channel,
                client_id,
                text,
                thread_root,
            };
            self.pipeline.start(&self.app, &self.who.user_id, req);
        }
        ControlFlow::Continue(())
    }

    /// Any frame but a `send` (see [`Connection::on_text`]).
    async fn on_request(&mut self, parsed: Result<ClientFrame, FrameError>) -> Flow {
        // Answers go out in the order the frames came: the sends before this one first.
        if let ControlFlow::Break(e) = self.answer_all().await {
            return ControlFlow::Break(e);
        }
        let frame = match parsed {
            Ok(f) => f,
            Err(e) => return self.send_error(e.reference, e.code, e.message, None).await,
        };
        let user = self.who.user_id.clone();
        match frame {
            ClientFrame::Resume { channels } => self.resume(channels).await,
            ClientFrame::Ping { reference } => self.reply(&ServerFrame::Pong { reference }).await,
            // Taken by `on_text` before it gets here; started the same way if it ever does.
            send @ ClientFrame::Send { .. } => self.start_send(send),
            ClientFrame::Edit {
                reference,
                channel,
                message_id,
                text,
            } => {
                let r = self
                    .app
                    .edit_message(&user, &channel, &message_id, &text)
                    .await;
                self.answer(
                    reference,
                    r.map(|seq| AckBody::Change {
                        channel,
                        seq: Some(seq),
                    }),
                )
                .await
            }
            ClientFrame::Delete {
                reference,
                channel,
                message_id,
            } => {
                let r = self.app.delete_message(&user, &channel, &message_id).await;
                self.answer(
                    reference,
                    r.map(|seq| AckBody::Change {
                        channel,
                        seq: Some(seq),
                    }),
                )
                .await
            }
            ClientFrame::React {
                reference,
                channel,
                message_id,
                emoji,
                add,
            } => {
                let r = self
                    .app
                    .react(&user, &channel, &message_id, &emoji, add)
                    .await;
                self.answer(reference, r.map(|seq| AckBody::Change { channel, seq }))
                    .await
            }
            ClientFrame::Read {
                reference,
                channel,
                seq,
            } => {
                let r = self.app.mark_read(&user, &channel, seq).await;
                self.answer(reference, r.map(|seq| AckBody::Change { channel, seq }))
                    .await
            }
            ClientFrame::Typing { channel } => self.typing(channel).await,
            ClientFrame::Presence { status } => {
                if let Some(p) = self
                    .app
                    .hub
                    .set_away(&self.handle, status == ClientPresence::Away)
                {
                    self.app.local_presence_changed(&user, p).await;
                }
                ControlFlow::Continue(())
            }
            ClientFrame::PresenceSubscribe { user_ids } => self.presence_subscribe(user_ids).await,
        }
    }

    /// Waits for every send in flight and answers each, in order.
    async fn answer_all(&mut self) -> Flow {
        while let Some((reference, result)) = self.pipeline.next().await {
            if let ControlFlow::Break(e) = self.answer(reference, result.map(AckBody::Send)).await {
                return ControlFlow::Break(e);
            }
        }
        ControlFlow::Continue(())
    }

    async fn answer(
        &mut self,
        reference: Option<String>,
        result: Result<AckBody, ApiError>,
    ) -> Flow {
        match result {
            Ok(ack) => self.reply(&ServerFrame::Ack { reference, ack }).await,
            Err(e) => {
                self.send_error(reference, e.code(), e.to_string(), e.retry_after_ms())
                    .await
            }
        }
    }

    async fn send_error(
        &mut self,
        reference: Option<String>,
        code: &'static str,
        message: String,
        retry_after_ms: Option<u64>,
    ) -> Flow {
        self.app.metrics.error(code);
        let code = match code {
            "too_large" => "message_too_long",
            "bad_request" => "bad_frame",
            other => other,
        };
        self.reply(&ServerFrame::Error {
            reference,
            code: code.into(),
            message,
            retry_after_ms,
        })
        .await
    }

    async fn reply(&mut self, frame: &ServerFrame) -> Flow {
        flow(self.send_frame(frame).await)
    }

    async fn send_frame(&mut self, frame: &ServerFrame) -> Result<(), Exit> {
        self.feed(Message::Text(Utf8Bytes::from(frame.to_json())))
            .await
    }
}
