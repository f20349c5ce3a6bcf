//! `GET /api/ws`: one task per connection, one loop selecting over the socket, the connection's
//! queue, its control state, the heartbeat, the token's expiry and server shutdown.
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
//! goes out. Every write has a deadline (one heartbeat; less once the server is shutting down),
//! so a peer that stops reading cannot hold the task, and a close from the server completes the
//! closing handshake (or times out) before the socket is dropped.

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
use tokio::time::{interval, sleep, sleep_until, Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use crate::{
    auth::AuthUser,
    error::ApiError,
    hub::{ConnHandle, MembershipChange, Outbound, Published},
    model::{ChannelId, EventKind, UserId},
    protocol::{
        event_frame, parse_client_frame, AckBody, ClientFrame, ClientPresence, Limits, ServerFrame,
    },
    AppState,
};

pub const CLOSE_POLICY: u16 = 1008;
pub const CLOSE_TOO_BIG: u16 = 1009;
pub const CLOSE_INVALID_DATA: u16 = 1007;
pub const CLOSE_RESTART: u16 = 1012;

/// Queued frames written per flush at most.
const OUTBOUND_BATCH: usize = 256;

/// Events fetched per store read while refilling.
const REFILL_PAGE: usize = 500;

/// Upper bound of the closing handshake's wait (see [`Connection::close_wait`]).
const CLOSE_WAIT_MAX: Duration = Duration::from_secs(5);

#[utoipa::path(get, path = "/api/ws", tag = "realtime", summary = "WebSocket upgrade (frames: docs/protocol.md)", responses((status = 101, description = "Switching protocols")))]
pub async fn handler(State(app): State<AppState>, who: AuthUser, ws: WebSocketUpgrade) -> Response {
    let max = app.settings.limits.max_frame_bytes;
    // Small buffers: an idle socket should cost a few KB, not tungstenite's 128 KiB default.
    ws.read_buffer_size(4 * 1024)
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
    /// Messages written but not yet flushed: delivered once the flush succeeds.
    delivered_pending: Vec<(ChannelId, i64)>,
    /// Membership changes taken from the control state and being applied, oldest first (the
    /// front one stays here until done, so the writes it makes see it).
    applying: VecDeque<MembershipChange>,
    /// Deadline of one write or flush: a heartbeat.
    write_timeout: Duration,
    /// How long a closing handshake (and, once shutting down, a write) may still take.
    close_wait: Duration,
    shutdown: CancellationToken,
}

fn close(code: u16, reason: &'static str) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: Utf8Bytes::from_static(reason),
    }))
}

impl Connection {
    async fn run(app: AppState, who: AuthUser, socket: WebSocket) {
        let (handle, mut rx, presence) = app.hub.connect(
            &who.user_id,
            &who.session_id,
            app.settings.realtime.outbound_queue,
        );
        if let Some(p) = presence {
            app.local_presence_changed(&who.user_id, p).await;
        }
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
            applying: VecDeque::new(),
            write_timeout: heartbeat,
            close_wait,
            shutdown: app.shutdown.clone(),
        };
        let exit = match conn.hello().await {
            Ok(()) => match conn.flush().await {
                Ok(()) => conn.serve(&mut rx).await,
                Err(e) => e,
            },
            Err(e) => e,
        };
        conn.finish(exit).await;
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
            app.local_presence_changed(&conn.who.user_id, p).await;
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

    async fn serve(&mut self, rx: &mut tokio::sync::mpsc::Receiver<Outbound>) -> Exit {
        let heartbeat = self.app.settings.heartbeat();
        let mut ticker = interval(heartbeat);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        ticker.tick().await;
        let expiry = Instant::now()
            + Duration::from_secs(
                (self.who.expires_at - time::OffsetDateTime::now_utc())
                    .whole_seconds()
                    .max(0) as u64,
            );
        let shutdown = self.shutdown.clone();
        let control = self.handle.control.clone();
        loop {
            // Whatever was recorded (revocation, joins, leaves) is applied before anything else
            // is written.
            if let Err(e) = self.apply_control().await {
                return e;
            }
            // What applying wrote (`channel_added`, `channel_removed`, a refill) goes out now:
            // the select below may wait a whole heartbeat for its next branch.
            if let Err(e) = self.flush().await {
                return e;
            }
            let flow = tokio::select! {
                _ = shutdown.cancelled() => {
                    ControlFlow::Break(Exit::Close(CLOSE_RESTART, "server restarting: reconnect and resume"))
                }
                _ = sleep_until(expiry) => {
                    ControlFlow::Break(Exit::Close(CLOSE_POLICY, "token expired: refresh and reconnect"))
                }
                // Applied at the top of the loop.
                _ = control.notified() => ControlFlow::Continue(()),
                incoming = self.socket.recv() => self.on_socket(incoming).await,
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
                _ = ticker.tick() => {
                    if self.last_heard.elapsed() > heartbeat * 3 {
                        ControlFlow::Break(Exit::Close(CLOSE_POLICY, "no heartbeat"))
                    } else {
                        flow(self.feed(Message::Ping(Default::default())).await)
                    }
                }
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
                let r = match self.apply_control().await {
                    Ok(()) => self.recheck(false).await,
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

    /// Writes what was fed and only then counts the messages in it as delivered.
    async fn flush(&mut self) -> Result<(), Exit> {
        if self.unflushed == 0 {
            return Ok(());
        }
        timed(
            self.socket.flush(),
            self.write_timeout,
            &self.shutdown,
            self.close_wait,
        )
        .await?;
        self.unflushed = 0;
        for (channel, seq) in self.delivered_pending.drain(..) {
            self.app.note_delivered(&channel, &self.who.user_id, seq);
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
        timed(
            self.socket.feed(msg),
            self.write_timeout,
            &self.shutdown,
            self.close_wait,
        )
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
                self.send_error(
                    None,
                    "binary_not_supported",
                    "frames are JSON text".into(),
                    None,
                )
                .await
            }
            Message::Ping(_) | Message::Pong(_) => ControlFlow::Continue(()),
            Message::Close(_) => ControlFlow::Break(Exit::PeerClosed),
        }
    }

    async fn on_text(&mut self, text: &str) -> Flow {
        let frame = match parse_client_frame(text) {
            Ok(f) => f,
            Err(e) => return self.send_error(e.reference, e.code, e.message, None).await,
        };
        let user = self.who.user_id.clone();
        match frame {
            ClientFrame::Resume { channels } => self.resume(channels).await,
            ClientFrame::Ping { reference } => self.reply(&ServerFrame::Pong { reference }).await,
            ClientFrame::Send {
                reference,
                channel,
                client_id,
                text,
                thread_root,
            } => {
                let result = self
                    .app
                    .send_message(&user, &channel, &client_id, &text, thread_root)
                    .await;
                self.answer(reference, result.map(AckBody::Send)).await
            }
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

    async fn typing(&mut self, channel: ChannelId) -> Flow {
        // At most one relay per channel per second from a socket: typing is a hint, not a stream.
        if self
            .last_typing
            .get(&channel)
            .is_some_and(|t| t.elapsed() < Duration::from_secs(1))
        {
            return ControlFlow::Continue(());
        }
        match self.app.require_member(&self.who.user_id, &channel).await {
            Ok(_) => {
                self.last_typing.insert(channel.clone(), Instant::now());
                let frame = ServerFrame::Typing {
                    channel: channel.clone(),
                    user_id: self.who.user_id.clone(),
                    expires_in_ms: self.app.settings.realtime.typing_ttl_ms,
                };
                self.app.relay_typing(&channel, &self.who.user_id, &frame);
                ControlFlow::Continue(())
            }
            Err(e) => self.send_error(None, e.code(), e.to_string(), None).await,
        }
    }

    /// Watches the listed users (at most `MAX_PRESENCE_IDS` per frame; more is refused whole,
    /// nothing watched) and answers each one's presence now. The frame costs one store read
    /// (every last seen at once) whatever its size; ids of no user are skipped.
    async fn presence_subscribe(&mut self, user_ids: Vec<UserId>) -> Flow {
        use crate::protocol::MAX_PRESENCE_IDS;
        if user_ids.len() > MAX_PRESENCE_IDS {
            let message = format!(
                "presence_subscribe: at most {MAX_PRESENCE_IDS} user_ids per frame (got {}); send several frames",
                user_ids.len()
            );
            return self.send_error(None, "bad_frame", message, None).await;
        }
        let mut unique = std::collections::HashSet::new();
        let user_ids: Vec<UserId> = user_ids
            .into_iter()
            .filter(|id| unique.insert(id.clone()))
            .collect();
        let mut last_seen: HashMap<UserId, Option<time::OffsetDateTime>> =
            match self.app.store.users_by_ids(&user_ids).await {
                Ok(users) => users.into_iter().map(|u| (u.id, u.last_seen)).collect(),
                Err(e) => {
                    let e = ApiError::from(e);
                    return self.send_error(None, e.code(), e.to_string(), None).await;
                }
            };
        let user_ids: Vec<UserId> = user_ids
            .into_iter()
            .filter(|id| last_seen.contains_key(id))
            .collect();
        self.app.hub.watch(&self.handle, &user_ids);
        let statuses = self.app.presences(&user_ids).await;
        for (id, status) in user_ids.iter().zip(&statuses) {
            self.app.hub.note_told(id, *status);
        }
        for (id, status) in user_ids.into_iter().zip(statuses) {
            let last_seen = last_seen.remove(&id).flatten();
            if let ControlFlow::Break(e) = self
                .reply(&ServerFrame::Presence {
                    user_id: id,
                    status,
                    last_seen,
                })
                .await
            {
                return ControlFlow::Break(e);
            }
        }
        ControlFlow::Continue(())
    }

    /// Sets the cursors, replays what the client missed, and starts live delivery.
    async fn resume(&mut self, requested: HashMap<ChannelId, i64>) -> Flow {
        let memberships = match self.app.store.memberships(&self.who.user_id).await {
            Ok(m) => m,
            Err(e) => {
                let e = ApiError::from(e);
                return self.send_error(None, e.code(), e.to_string(), None).await;
            }
        };
        for (channel, last_seq) in &memberships {
            let from = requested
                .get(channel)
                .map(|s| (*s).clamp(0, *last_seq))
                .unwrap_or(*last_seq);
            let cursor = if self.resumed {
                *self.cursors.get(channel).unwrap_or(&from)
            } else {
                from
            };
            self.cursors.insert(channel.clone(), cursor.min(from));
            self.app.hub.subscribe(&self.handle, channel);
        }
        self.resumed = true;
        for (channel, _) in &memberships {
            if let Err(e) = self.refill(channel).await {
                return ControlFlow::Break(e);
            }
        }
        let frame = ServerFrame::Resumed {
            channels: self.cursors.clone(),
        };
        self.reply(&frame).await
    }

    /// Sends every stored event of `channel` after its cursor (up to the user's leave when one
    /// is pending).
    async fn refill(&mut self, channel: &str) -> Result<(), Exit> {
        loop {
            let Some(&cursor) = self.cursors.get(channel) else {
                return Ok(());
            };
            // The store is down: live delivery goes on; the next event retries the gap.
            let Ok(events) = self
                .app
                .store
                .events_after(channel, cursor, REFILL_PAGE)
                .await
            else {
                return Ok(());
            };
            let n = events.len();
            for ev in events {
                let published = Published::new(&ev);
                debug_assert_eq!(published.frame.as_str(), event_frame(&ev));
                if !self.send_event(&published).await? {
                    return Ok(());
                }
            }
            if n < REFILL_PAGE {
                return Ok(());
            }
        }
    }

    async fn on_outbound(&mut self, out: Outbound) -> Result<(), Exit> {
        match out {
            Outbound::Event(ev) => {
                // No cursor: not (or not yet) followed; a join refills from its own start.
                let Some(&cursor) = self.cursors.get(&ev.channel) else {
                    return Ok(());
                };
                if ev.seq <= cursor {
                    Ok(())
                } else if ev.seq == cursor + 1 {
                    self.send_event(&ev).await.map(|_| ())
                } else {
                    self.refill(&ev.channel).await
                }
            }
            Outbound::Ephemeral(frame) => self.feed(Message::Text(frame)).await,
            Outbound::Recheck(channel) => self.refill(&channel).await,
        }
    }

    /// Applies what the control state recorded, in order: a revoked session ends the socket; a
    /// join announces the channel (`channel_added`, read from the store now) and refills it
    /// from the join; a leave lets the channel's events up to the `member_left` out, then says
    /// `channel_removed` and follows it no more. Changes wait for the `resume` (which reads the
    /// memberships itself); one whose store read fails stays first in line for the next turn.
    async fn apply_control(&mut self) -> Result<(), Exit> {
        let control = self.handle.control.clone();
        if control.is_revoked() {
            return Err(SESSION_ENDED);
        }
        if !self.resumed {
            return Ok(());
        }
        self.applying.extend(control.take_changes());
        while let Some(change) = self.applying.front().cloned() {
            match change {
                MembershipChange::Added { channel_id, after } => {
                    let left_again = self.applying.iter().skip(1).any(|c| {
                        matches!(c, MembershipChange::Removed { channel_id: ch, .. } if *ch == channel_id)
                    });
                    if !left_again && !self.cursors.contains_key(&channel_id) {
                        let mut channel = match self.app.store.channel(&channel_id).await {
                            Ok(Some(c)) => c,
                            Ok(None) => {
                                self.applying.pop_front();
                                continue;
                            }
                            // Retried on the next turn (the next event, ping or heartbeat);
                            // meanwhile this channel's live events are refilled then.
                            Err(_) => return Ok(()),
                        };
                        if let Ok(Some(m)) =
                            self.app.store.member(&channel_id, &self.who.user_id).await
                        {
                            channel.read_seq = Some(m.read_seq);
                        }
                        self.cursors.insert(channel_id.clone(), after);
                        self.send_frame(&ServerFrame::ChannelAdded { channel })
                            .await?;
                        // What was stored between the join and the subscription is only there.
                        self.refill(&channel_id).await?;
                    }
                }
                MembershipChange::Removed {
                    channel_id,
                    left_seq,
                } => {
                    if self.cursors.get(&channel_id).is_some_and(|c| *c < left_seq) {
                        // Up to and including its own `member_left` (stops there: see
                        // `withheld`).
                        self.refill(&channel_id).await?;
                    }
                    self.cursors.remove(&channel_id);
                    self.send_frame(&ServerFrame::ChannelRemoved { channel_id })
                        .await?;
                }
            }
            self.applying.pop_front();
        }
        if control.take_recheck() {
            self.recheck(true).await?;
        }
        Ok(())
    }

    /// Re-reads from the store what the bus or the queue may have failed to bring: a session
    /// ended (possibly through another node) closes the socket; channels the user is no longer
    /// in are removed; with `add_new` (after an outage of the bus between nodes) channels joined
    /// meanwhile are added, followed from their current end like a `resume` without a position
    /// (a lagging socket leaves joins to its control state, which has their start); then every
    /// channel is refilled.
    async fn recheck(&mut self, add_new: bool) -> Result<(), Exit> {
        if let Ok(None) = self
            .app
            .store
            .session_user(&self.who.session_id, time::OffsetDateTime::now_utc())
            .await
        {
            return Err(SESSION_ENDED);
        }
        if let Ok(memberships) = self.app.store.memberships(&self.who.user_id).await {
            let current: std::collections::HashSet<&ChannelId> =
                memberships.iter().map(|(c, _)| c).collect();
            let gone: Vec<ChannelId> = self
                .cursors
                .keys()
                .filter(|c| !current.contains(c))
                .cloned()
                .collect();
            for channel_id in gone {
                self.cursors.remove(&channel_id);
                self.app.hub.unsubscribe(self.handle.id, &channel_id);
                self.send_frame(&ServerFrame::ChannelRemoved { channel_id })
                    .await?;
            }
            for (channel_id, last_seq) in memberships.iter().filter(|_| add_new) {
                if self.cursors.contains_key(channel_id) {
                    continue;
                }
                let Ok(Some(mut channel)) = self.app.store.channel(channel_id).await else {
                    continue;
                };
                if let Ok(Some(m)) = self.app.store.member(channel_id, &self.who.user_id).await {
                    channel.read_seq = Some(m.read_seq);
                }
                self.cursors.insert(channel_id.clone(), *last_seq);
                self.app.hub.subscribe(&self.handle, channel_id);
                self.send_frame(&ServerFrame::ChannelAdded { channel })
                    .await?;
            }
        }
        let channels: Vec<ChannelId> = self.cursors.keys().cloned().collect();
        for ch in channels {
            self.refill(&ch).await?;
        }
        Ok(())
    }

    /// Whether a leave not yet fully applied forbids writing event `seq` of `channel`.
    fn withheld(&self, channel: &str, seq: i64) -> bool {
        self.handle.control.withholds(channel, seq)
            || self.applying.iter().any(|c| {
                matches!(c, MembershipChange::Removed { channel_id, left_seq }
                    if channel_id == channel && seq > *left_seq)
            })
    }

    /// Writes an event unless already sent; `false` when withheld (the user left the channel
    /// before it).
    async fn send_event(&mut self, ev: &Published) -> Result<bool, Exit> {
        if let Some(c) = self.cursors.get(&ev.channel) {
            if ev.seq <= *c {
                return Ok(true);
            }
        }
        if self.withheld(&ev.channel, ev.seq) {
            return Ok(false);
        }
        self.feed(Message::Text(ev.frame.clone())).await?;
        self.cursors.insert(ev.channel.clone(), ev.seq);
        self.app.metrics.events_delivered.inc();
        if ev.kind == EventKind::Message
            && ev.author_id.as_deref() != Some(self.who.user_id.as_str())
            && self.app.receipts_enabled_cached(&ev.channel) != Some(false)
        {
            self.delivered_pending.push((ev.channel.clone(), ev.seq));
        }
        Ok(true)
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
