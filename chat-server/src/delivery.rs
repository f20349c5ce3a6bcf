//! Delivery: what the store recorded goes to this node's sockets and to the other nodes.
//!
//! [`App::publish`] serializes a stored event once and routes it here ([`App::route`], also
//! the entry of events from other nodes), then hands it to the Redis transport. Sockets
//! report what they delivered ([`App::note_delivered`]), sends that their author's watermarks
//! moved ([`App::note_sent`]); [`App::flush_delivered`] stores the delivered watermarks in
//! batches and publishes one receipt event per channel per flush, which also says where the
//! authors' watermarks are. What other nodes publish arrives through the node's
//! [`BusHandler`].

use std::{collections::HashMap, sync::Arc};

use axum::extract::ws::Utf8Bytes;

use crate::{
    cluster::{BusEvent, BusHandler, BusMessage},
    hub::Published,
    model::{now, ChannelId, Event, EventKind, UserId},
    protocol::ServerFrame,
    App,
};

/// The receipt work a flush owes one member of one channel.
#[derive(Debug, Default, Clone, Copy)]
pub struct Owed {
    /// The highest seq written to one of the member's sockets (0: none since the last flush).
    delivered: i64,
    /// A send of the member moved its watermarks (the message's commit moves them, silently).
    announce: bool,
}

impl App {
    /// Publishes the event if there is one; its seq.
    pub async fn publish_if_any(&self, event: Option<Event>) -> Option<i64> {
        Some(self.publish_seq(event?).await)
    }

    /// Publishes the event; its seq.
    pub async fn publish_seq(&self, event: Event) -> i64 {
        let seq = event.seq;
        self.publish(event).await;
        seq
    }

    pub async fn publish_all(&self, events: Vec<Event>) {
        for ev in events {
            self.publish(ev).await;
        }
    }

    /// Delivers a stored event to this node's connections, then hands it to the other nodes
    /// (with Redis). The event is serialized once, here.
    pub async fn publish(&self, event: Event) {
        let member = event.payload.subject_user().cloned();
        let published = Arc::new(self.mark_untracked(Published::new(&event)));
        let cluster = self.cluster.as_ref().map(|c| (c, published.clone()));
        self.route(published, member.clone());
        if let Some((c, published)) = cluster {
            c.publish_event(bus_event(&published, member));
        }
    }

    /// Marks a message of a channel that does not track receipts, once for all the sockets
    /// it goes to (each would otherwise look the channel up per delivery).
    fn mark_untracked(&self, mut published: Published) -> Published {
        published.untracked = published.kind == EventKind::Message
            && self.receipts_enabled_cached(&published.channel) == Some(false);
        published
    }

    /// Routes an event (stored here or on another node) to this node's connections, keeping
    /// membership routing and the channel cache current. Synchronous on purpose: a joiner's
    /// sockets are subscribed before the `member_joined` goes out and before any later event of
    /// the channel is routed, and a leaver's stop before anything after its `member_left`.
    pub fn route(&self, published: Arc<Published>, member: Option<UserId>) {
        let channel = published.channel.clone();
        match (published.kind, member) {
            (EventKind::MemberJoined, Some(user)) => {
                self.invalidate_channel(&channel);
                // The sockets read the channel for their `channel_added` themselves, and refill
                // from the join: nothing stored meanwhile can slip between.
                self.hub.user_joined(&user, &channel, published.seq - 1);
                self.hub.publish(published);
            }
            (EventKind::MemberLeft, Some(user)) => {
                self.invalidate_channel(&channel);
                let left_seq = published.seq;
                self.hub.publish(published);
                self.hub.user_left(&user, &channel, left_seq);
            }
            _ => self.hub.publish(published),
        }
    }

    /// Remembers that each `(channel, seq)` reached one of `user_id`'s sockets (one lock for
    /// them all); flushed in batches.
    pub fn note_delivered(
        &self,
        user_id: &str,
        delivered: impl IntoIterator<Item = (ChannelId, i64)>,
    ) {
        let mut pending = self
            .delivered
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for (channel_id, seq) in delivered {
            let owed = pending.entry((channel_id, user_id.into())).or_default();
            owed.delivered = owed.delivered.max(seq);
        }
    }

    /// Remembers that a send moved its author's watermarks in a channel that tracks receipts:
    /// the channel's next flush says so in its one receipt event, instead of a receipt event
    /// per message (in a group of n members each would cost n frames).
    pub fn note_sent(&self, channel_id: &str, user_id: &str) {
        self.delivered
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry((channel_id.into(), user_id.into()))
            .or_default()
            .announce = true;
    }

    /// Writes pending delivered watermarks, one store write per channel, and publishes the one
    /// receipt event each produces (not one per member: in a group of n members a message
    /// would otherwise cost n receipt events, each sent to n sockets), which also announces
    /// the watermarks of the channel's authors since the last flush.
    pub async fn flush_delivered(&self) {
        type Marks = Vec<(UserId, i64)>;
        let mut by_channel: HashMap<ChannelId, (Marks, Vec<UserId>)> = HashMap::new();
        {
            let mut p = self
                .delivered
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            for ((channel, user), owed) in p.drain() {
                let (marks, announce) = by_channel.entry(channel).or_default();
                if owed.announce {
                    announce.push(user.clone());
                }
                if owed.delivered > 0 {
                    marks.push((user, owed.delivered));
                }
            }
        }
        for (channel, (marks, announce)) in by_channel {
            let emit = match self.channel_meta(&channel).await {
                Ok(meta) => self.tracks_receipts(&meta),
                Err(_) => continue,
            };
            match self
                .store
                .advance_delivered(&channel, marks, announce, emit, now())
                .await
            {
                Ok(Some(ev)) => self.publish(ev).await,
                Ok(None) => {}
                Err(e) => tracing::debug!(error = %e, "delivered watermarks not stored"),
            }
        }
    }

    /// Typing goes to this node's sockets and to the other nodes.
    pub fn relay_typing(&self, channel_id: &str, user_id: &str, frame: &ServerFrame) {
        let frame = Utf8Bytes::from(frame.to_json());
        if let Some(c) = &self.cluster {
            c.publish_typing(channel_id, user_id, frame.as_str());
        }
        self.hub.ephemeral(channel_id, user_id, frame);
    }

    /// Closes a session's sockets on every node.
    pub fn revoke_everywhere(&self, user_id: &str, session_id: &str) {
        self.hub.revoke_session(user_id, session_id);
        if let Some(c) = &self.cluster {
            c.publish_revoke(user_id, session_id);
        }
    }
}

/// What the other nodes hear of an event this node stored (the frame is shared, not copied).
fn bus_event(published: &Published, member: Option<UserId>) -> BusEvent {
    BusEvent {
        channel_id: published.channel.clone(),
        seq: published.seq,
        kind: published.kind,
        author_id: published.author_id.clone(),
        member,
        frame: published.frame.clone(),
    }
}

/// The node as the Redis transport sees it.
impl BusHandler for App {
    fn on_message(&self, message: BusMessage) {
        match message {
            BusMessage::Event(ev) => {
                let published = Arc::new(self.mark_untracked(Published {
                    channel: ev.channel_id,
                    seq: ev.seq,
                    kind: ev.kind,
                    author_id: ev.author_id,
                    frame: ev.frame,
                    untracked: false,
                }));
                // In bus order: a membership change is applied before the channel's next event.
                self.route(published, ev.member);
            }
            BusMessage::Typing {
                channel_id,
                user_id,
                frame,
            } => self.hub.ephemeral(&channel_id, &user_id, frame),
            BusMessage::Presence {
                user_id,
                status,
                last_seen,
            } => self.hub.announce_presence(&user_id, status, last_seen),
            BusMessage::Revoke {
                user_id,
                session_id,
            } => self.hub.revoke_session(&user_id, &session_id),
        }
    }

    fn healed(&self) {
        // Memberships may have changed on other nodes while we could not hear about it.
        self.channel_cache.clear();
        if let Some(c) = &self.cluster {
            c.request_presence_refresh();
        }
        self.hub.recheck_all();
    }

    fn channel_subscribed(&self, channel_id: &str) {
        self.hub.recheck_channel(channel_id);
    }

    fn presence_subscribed(self: Arc<Self>, users: Vec<UserId>) {
        // Compared with what the watchers were told, once the subscriptions are in place.
        tokio::spawn(async move { self.presence_resync(users).await });
    }
}
