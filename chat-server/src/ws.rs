//! `GET /api/ws`: one task per connection, one loop selecting over the socket, the connection's
//! queue, the heartbeat, the token's expiry and server shutdown.
//!
//! Exactly-once, in-order delivery per channel rests on one cursor per channel: the highest seq
//! this socket was sent. A live event at `cursor + 1` goes out; one at or below the cursor is a
//! duplicate and is dropped; one above `cursor + 1` means something was missed (a full queue, an
//! out-of-order publish, another node) and the gap is refilled from the store first. Nothing is
//! delivered before the client's `resume`, which sets the cursors.

use std::{collections::HashMap, ops::ControlFlow, sync::atomic::Ordering, time::Duration};

use axum::{
    extract::{
        ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade},
        State,
    },
    response::Response,
};
use futures_util::SinkExt;
use tokio::time::{interval, sleep_until, Instant, MissedTickBehavior};

use crate::{
    auth::AuthUser,
    error::ApiError,
    hub::{ConnHandle, Outbound, Published},
    model::{EventKind, Id},
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

struct Connection {
    app: AppState,
    who: AuthUser,
    handle: ConnHandle,
    socket: WebSocket,
    /// Channel → highest seq sent on this socket. Empty until `resume`.
    cursors: HashMap<Id, i64>,
    resumed: bool,
    last_heard: Instant,
    last_typing: HashMap<Id, Instant>,
    /// Frames fed to the socket since the last flush.
    unflushed: usize,
    /// Messages written but not yet flushed: delivered once the flush succeeds.
    delivered_pending: Vec<(Id, i64)>,
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
        };
        if conn.hello().await.is_ok() && conn.flush().await.is_ok() {
            conn.serve(&mut rx).await;
        }
        let channels: Vec<Id> = conn.cursors.keys().cloned().collect();
        if let Some(p) = app.hub.disconnect(&conn.handle, channels) {
            // Going offline here stores and announces the last seen (unless another node
            // still has the user).
            app.local_presence_changed(&conn.who.user_id, p).await;
        }
    }

    async fn hello(&mut self) -> Result<(), ()> {
        let user = match self.app.user(&self.who.user_id).await {
            Ok(u) => u,
            Err(_) => {
                let _ = self.socket.send(close(CLOSE_POLICY, "unknown user")).await;
                return Err(());
            }
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

    async fn serve(&mut self, rx: &mut tokio::sync::mpsc::Receiver<Outbound>) {
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
        let shutdown = self.app.shutdown.clone();
        loop {
            let flow = tokio::select! {
                _ = shutdown.cancelled() => {
                    let _ = self.socket.send(close(CLOSE_RESTART, "server restarting: reconnect and resume")).await;
                    ControlFlow::Break(())
                }
                _ = sleep_until(expiry) => {
                    let _ = self.socket.send(close(CLOSE_POLICY, "token expired: refresh and reconnect")).await;
                    ControlFlow::Break(())
                }
                incoming = self.socket.recv() => self.on_socket(incoming).await,
                Some(out) = rx.recv(), if self.resumed => {
                    // Take whatever else is already queued: one flush for the whole batch.
                    let mut flow = self.on_outbound(out).await;
                    let mut batch = 1;
                    while flow.is_continue() && batch < OUTBOUND_BATCH {
                        match rx.try_recv() {
                            Ok(more) => flow = self.on_outbound(more).await,
                            Err(_) => break,
                        }
                        batch += 1;
                    }
                    flow
                }
                _ = ticker.tick() => {
                    if self.last_heard.elapsed() > heartbeat * 3 {
                        let _ = self.socket.send(close(CLOSE_POLICY, "no heartbeat")).await;
                        ControlFlow::Break(())
                    } else {
                        match self.socket.send(Message::Ping(Default::default())).await {
                            Ok(()) => ControlFlow::Continue(()),
                            Err(_) => ControlFlow::Break(()),
                        }
                    }
                }
            };
            if flow.is_break() || self.flush().await.is_err() {
                break;
            }
            // The queue overflowed at some point: everything may be behind. The store has it all.
            if self.resumed && self.handle.lagged.swap(false, Ordering::AcqRel) {
                let channels: Vec<Id> = self.cursors.keys().cloned().collect();
                for ch in channels {
                    if self.refill(&ch).await.is_err() || self.flush().await.is_err() {
                        return;
                    }
                }
            }
        }
    }

    /// Writes what was fed and only then counts the messages in it as delivered.
    async fn flush(&mut self) -> Result<(), ()> {
        if self.unflushed == 0 {
            return Ok(());
        }
        self.socket.flush().await.map_err(|_| ())?;
        self.unflushed = 0;
        for (channel, seq) in self.delivered_pending.drain(..) {
            self.app.note_delivered(&channel, &self.who.user_id, seq);
        }
        Ok(())
    }

    /// Queues a frame in the socket's write buffer (see [`Connection::flush`]).
    async fn feed(&mut self, msg: Message) -> Result<(), ()> {
        self.unflushed += 1;
        self.socket.feed(msg).await.map_err(|_| ())
    }

    async fn on_socket(
        &mut self,
        incoming: Option<Result<Message, axum::Error>>,
    ) -> ControlFlow<()> {
        let msg = match incoming {
            None => return ControlFlow::Break(()),
            Some(Ok(m)) => m,
            Some(Err(e)) => {
                // tungstenite reports oversized and non-UTF-8 frames as errors; say which.
                let text = e.to_string();
                let frame = if text.contains("Space limit exceeded")
                    || text.contains("too long")
                    || text.contains("too big")
                {
                    self.app.metrics.error("too_large");
                    close(CLOSE_TOO_BIG, "frame larger than max_frame_bytes")
                } else if text.to_lowercase().contains("utf-8") || text.contains("utf8") {
                    self.app.metrics.error("invalid_utf8");
                    close(CLOSE_INVALID_DATA, "text frame is not valid UTF-8")
                } else {
                    return ControlFlow::Break(());
                };
                let _ = self.socket.send(frame).await;
                return ControlFlow::Break(());
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
            Message::Close(_) => ControlFlow::Break(()),
        }
    }

    async fn on_text(&mut self, text: &str) -> ControlFlow<()> {
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
            ClientFrame::Typing { channel } => {
                self.typing(channel).await;
                ControlFlow::Continue(())
            }
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

    async fn typing(&mut self, channel: Id) {
        // At most one relay per channel per second from a socket: typing is a hint, not a stream.
        if self
            .last_typing
            .get(&channel)
            .is_some_and(|t| t.elapsed() < Duration::from_secs(1))
        {
            return;
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
            }
            Err(e) => {
                let _ = self.send_error(None, e.code(), e.to_string(), None).await;
            }
        }
    }

    /// Watches the listed users (at most `MAX_PRESENCE_IDS` per frame; more is refused whole,
    /// nothing watched) and answers each one's presence now. The frame costs one store read
    /// (every last seen at once) whatever its size; ids of no user are skipped.
    async fn presence_subscribe(&mut self, user_ids: Vec<Id>) -> ControlFlow<()> {
        use crate::protocol::MAX_PRESENCE_IDS;
        if user_ids.len() > MAX_PRESENCE_IDS {
            let message = format!(
                "presence_subscribe: at most {MAX_PRESENCE_IDS} user_ids per frame (got {}); send several frames",
                user_ids.len()
            );
            return self.send_error(None, "bad_frame", message, None).await;
        }
        let mut unique = std::collections::HashSet::new();
        let user_ids: Vec<Id> = user_ids
            .into_iter()
            .filter(|id| unique.insert(id.clone()))
            .collect();
        let mut last_seen: HashMap<Id, Option<time::OffsetDateTime>> =
            match self.app.store.users_by_ids(&user_ids).await {
                Ok(users) => users.into_iter().map(|u| (u.id, u.last_seen)).collect(),
                Err(e) => {
                    let e = ApiError::from(e);
                    return self.send_error(None, e.code(), e.to_string(), None).await;
                }
            };
        let user_ids: Vec<Id> = user_ids
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
            if self
                .reply(&ServerFrame::Presence {
                    user_id: id,
                    status,
                    last_seen,
                })
                .await
                .is_break()
            {
                return ControlFlow::Break(());
            }
        }
        ControlFlow::Continue(())
    }

    /// Sets the cursors, replays what the client missed, and starts live delivery.
    async fn resume(&mut self, requested: HashMap<Id, i64>) -> ControlFlow<()> {
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
            if self.refill(channel).await.is_err() {
                return ControlFlow::Break(());
            }
        }
        let frame = ServerFrame::Resumed {
            channels: self.cursors.clone(),
        };
        self.reply(&frame).await
    }

    /// Sends every stored event of `channel` after its cursor.
    async fn refill(&mut self, channel: &str) -> Result<(), ()> {
        loop {
            let Some(&cursor) = self.cursors.get(channel) else {
                return Ok(());
            };
            let events = match self
                .app
                .store
                .events_after(channel, cursor, REFILL_PAGE)
                .await
            {
                Ok(ev) => ev,
                // The store is down: live delivery goes on; the next event retries the gap.
                Err(_) => return Ok(()),
            };
            let n = events.len();
            for ev in events {
                let published = Published::new(&ev);
                debug_assert_eq!(published.frame.as_str(), event_frame(&ev));
                self.send_event(&published).await?;
            }
            if n < REFILL_PAGE {
                return Ok(());
            }
        }
    }

    async fn on_outbound(&mut self, out: Outbound) -> ControlFlow<()> {
        let result = match out {
            Outbound::Event(ev) => {
                let Some(&cursor) = self.cursors.get(&ev.channel) else {
                    return ControlFlow::Continue(());
                };
                if ev.seq <= cursor {
                    Ok(())
                } else if ev.seq == cursor + 1 {
                    self.send_event(&ev).await
                } else {
                    self.refill(&ev.channel).await
                }
            }
            Outbound::Ephemeral(frame) => self.feed(Message::Text(frame)).await,
            Outbound::ChannelAdded {
                channel_id,
                after,
                frame,
            } => {
                self.cursors.entry(channel_id).or_insert(after);
                self.feed(Message::Text(frame)).await
            }
            Outbound::ChannelRemoved { channel_id, frame } => {
                self.cursors.remove(&channel_id);
                self.feed(Message::Text(frame)).await
            }
            Outbound::Recheck(Some(channel)) => self.refill(&channel).await,
            Outbound::Recheck(None) => self.recheck_all().await,
            Outbound::Revoked => {
                let _ = self.socket.send(close(CLOSE_POLICY, "session ended")).await;
                Err(())
            }
        };
        if result.is_ok() {
            ControlFlow::Continue(())
        } else {
            ControlFlow::Break(())
        }
    }

    /// After an outage of the bus between nodes: a session ended elsewhere closes the socket;
    /// memberships that changed elsewhere meanwhile are applied (as `channel_added` /
    /// `channel_removed`), then every channel is refilled from the store.
    async fn recheck_all(&mut self) -> Result<(), ()> {
        // A logout on another node meanwhile could not reach this socket over the bus.
        if let Ok(None) = self
            .app
            .store
            .session_user(&self.who.session_id, time::OffsetDateTime::now_utc())
            .await
        {
            let _ = self.socket.send(close(CLOSE_POLICY, "session ended")).await;
            return Err(());
        }
        if let Ok(memberships) = self.app.store.memberships(&self.who.user_id).await {
            let current: std::collections::HashSet<&Id> =
                memberships.iter().map(|(c, _)| c).collect();
            let gone: Vec<Id> = self
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
            for (channel_id, last_seq) in &memberships {
                if self.cursors.contains_key(channel_id) {
                    continue;
                }
                let Ok(Some(mut channel)) = self.app.store.channel(channel_id).await else {
                    continue;
                };
                if let Ok(Some(m)) = self.app.store.member(channel_id, &self.who.user_id).await {
                    channel.read_seq = Some(m.read_seq);
                }
                // Like a resume without a position: live from the channel's current end.
                self.cursors.insert(channel_id.clone(), *last_seq);
                self.app.hub.subscribe(&self.handle, channel_id);
                self.send_frame(&ServerFrame::ChannelAdded { channel })
                    .await?;
            }
        }
        let channels: Vec<Id> = self.cursors.keys().cloned().collect();
        for ch in channels {
            self.refill(&ch).await?;
        }
        Ok(())
    }

    async fn send_event(&mut self, ev: &Published) -> Result<(), ()> {
        if let Some(c) = self.cursors.get(&ev.channel) {
            if ev.seq <= *c {
                return Ok(());
            }
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
        Ok(())
    }

    async fn answer(
        &mut self,
        reference: Option<String>,
        result: Result<AckBody, ApiError>,
    ) -> ControlFlow<()> {
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
    ) -> ControlFlow<()> {
        self.app.metrics.error(code);
        let code = match code {
            "too_large" => "message_too_long",
            "bad_request" => "bad_frame",
            other => other,
        };
        self.reply(&ServerFrame::Error {
            reference,
            code,
            message,
            retry_after_ms,
        })
        .await
    }

    async fn reply(&mut self, frame: &ServerFrame) -> ControlFlow<()> {
        match self.send_frame(frame).await {
            Ok(()) => ControlFlow::Continue(()),
            Err(()) => ControlFlow::Break(()),
        }
    }

    async fn send_frame(&mut self, frame: &ServerFrame) -> Result<(), ()> {
        self.feed(Message::Text(Utf8Bytes::from(frame.to_json())))
            .await
    }
}
