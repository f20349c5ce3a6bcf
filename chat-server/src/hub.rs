//! The node's real-time routing: which live connections follow which channels and users, and
//! presence. Publishing serializes an event once and hands every subscribed connection a cheap
//! clone of the same bytes through a bounded queue. A full queue never blocks the publisher: the
//! connection is flagged as lagging and later refills what it missed from the store (the store
//! is the source of truth; the queues are only a fast path).

use std::{
    collections::{HashMap, HashSet},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, RwLock,
    },
};

use axum::extract::ws::Utf8Bytes;
use tokio::sync::mpsc;

use crate::{
    cluster::{channel_topic, presence_topic, user_topic, Interest},
    metrics::Metrics,
    model::{Event, EventKind, Id, Presence},
    protocol::{event_frame, ServerFrame},
};

pub type ConnId = u64;

/// One channel event, serialized once for every connection.
#[derive(Debug)]
pub struct Published {
    pub channel: Id,
    pub seq: i64,
    pub kind: EventKind,
    /// For messages: who wrote it (its author does not count as a recipient).
    pub author_id: Option<Id>,
    pub frame: Utf8Bytes,
}

impl Published {
    pub fn new(event: &Event) -> Published {
        let author_id = match event.kind {
            EventKind::Message => event
                .data
                .get("author_id")
                .and_then(|a| a.as_str())
                .map(str::to_string),
            _ => None,
        };
        Published {
            channel: event.channel.clone(),
            seq: event.seq,
            kind: event.kind,
            author_id,
            frame: Utf8Bytes::from(event_frame(event)),
        }
    }
}

/// What a connection's queue carries.
#[derive(Debug, Clone)]
pub enum Outbound {
    Event(Arc<Published>),
    /// Frames outside any channel's sequence (typing, presence).
    Ephemeral(Utf8Bytes),
    /// The user joined a channel: follow it from `after` (exclusive).
    ChannelAdded {
        channel_id: Id,
        after: i64,
        frame: Utf8Bytes,
    },
    ChannelRemoved {
        channel_id: Id,
        frame: Utf8Bytes,
    },
    /// The session was revoked: close the socket.
    Revoked,
    /// Events may have been missed (another node's bus was away, or a subscription just
    /// started): refill this channel, or every channel, from the store.
    Recheck(Option<Id>),
}

#[derive(Clone)]
pub struct ConnHandle {
    pub id: ConnId,
    pub user_id: Id,
    pub session_id: Id,
    tx: mpsc::Sender<Outbound>,
    pub lagged: Arc<AtomicBool>,
}

impl ConnHandle {
    fn push(&self, out: Outbound, metrics: &Metrics) {
        match self.tx.try_send(out) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                if !self.lagged.swap(true, Ordering::AcqRel) {
                    metrics.lagged.inc();
                }
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }
}

#[derive(Default)]
struct UserPresence {
    /// Connection → away?
    conns: HashMap<ConnId, bool>,
}

impl UserPresence {
    fn status(&self) -> Presence {
        if self.conns.is_empty() {
            Presence::Offline
        } else if self.conns.values().all(|away| *away) {
            Presence::Away
        } else {
            Presence::Online
        }
    }
}

pub struct Hub {
    next_id: AtomicU64,
    metrics: Arc<Metrics>,
    channels: RwLock<HashMap<Id, HashMap<ConnId, ConnHandle>>>,
    users: RwLock<HashMap<Id, HashMap<ConnId, ConnHandle>>>,
    presence: RwLock<HashMap<Id, UserPresence>>,
    /// Watched user → connections that asked for its presence.
    watchers: RwLock<HashMap<Id, HashMap<ConnId, ConnHandle>>>,
    /// Watched user → the presence its watchers here were last told (to re-check it once the
    /// node's subscription to the user's presence topic is in place).
    told: RwLock<HashMap<Id, Presence>>,
    /// With Redis: the topics this node needs, reported as the maps above gain their first or
    /// lose their last connection for a key (see [`crate::cluster`]).
    interest: Option<mpsc::UnboundedSender<Interest>>,
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|p| p.into_inner())
}

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|p| p.into_inner())
}

impl Hub {
    pub fn new(metrics: Arc<Metrics>, interest: Option<mpsc::UnboundedSender<Interest>>) -> Hub {
        Hub {
            next_id: AtomicU64::new(1),
            metrics,
            channels: RwLock::default(),
            users: RwLock::default(),
            presence: RwLock::default(),
            watchers: RwLock::default(),
            told: RwLock::default(),
            interest,
        }
    }

    /// Called under the lock of the map that changed, so changes of one topic stay in order.
    fn want(&self, topic: impl FnOnce() -> String, subscribe: bool) {
        if let Some(tx) = &self.interest {
            let t = topic();
            let _ = tx.send(if subscribe {
                Interest::Subscribe(t)
            } else {
                Interest::Unsubscribe(t)
            });
        }
    }

    /// Registers a connection; returns its handle, its queue, and the user's presence if it
    /// changed (offline → online).
    pub fn connect(
        &self,
        user_id: &str,
        session_id: &str,
        queue: usize,
    ) -> (ConnHandle, mpsc::Receiver<Outbound>, Option<Presence>) {
        let (tx, rx) = mpsc::channel(queue.max(16));
        let handle = ConnHandle {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            user_id: user_id.to_string(),
            session_id: session_id.to_string(),
            tx,
            lagged: Arc::new(AtomicBool::new(false)),
        };
        write(&self.users)
            .entry(user_id.to_string())
            .or_insert_with(|| {
                self.want(|| user_topic(user_id), true);
                HashMap::new()
            })
            .insert(handle.id, handle.clone());
        let changed = self.update_presence(user_id, |p| {
            p.conns.insert(handle.id, false);
        });
        self.metrics.connections.inc();
        (handle, rx, changed)
    }

    /// Forgets a connection everywhere; returns the user's presence if it changed.
    pub fn disconnect(
        &self,
        handle: &ConnHandle,
        channels: impl IntoIterator<Item = Id>,
    ) -> Option<Presence> {
        {
            let mut map = write(&self.channels);
            for ch in channels {
                if let Some(subs) = map.get_mut(&ch) {
                    subs.remove(&handle.id);
                    if subs.is_empty() {
                        map.remove(&ch);
                        self.want(|| channel_topic(&ch), false);
                    }
                }
            }
        }
        {
            let mut users = write(&self.users);
            if let Some(conns) = users.get_mut(&handle.user_id) {
                conns.remove(&handle.id);
                if conns.is_empty() {
                    users.remove(&handle.user_id);
                    self.want(|| user_topic(&handle.user_id), false);
                }
            }
        }
        write(&self.watchers).retain(|user, conns| {
            conns.remove(&handle.id);
            let keep = !conns.is_empty();
            if !keep {
                self.want(|| presence_topic(user), false);
                write(&self.told).remove(user);
            }
            keep
        });
        self.metrics.connections.dec();
        self.update_presence(&handle.user_id, |p| {
            p.conns.remove(&handle.id);
        })
    }

    pub fn subscribe(&self, handle: &ConnHandle, channel_id: &str) {
        write(&self.channels)
            .entry(channel_id.to_string())
            .or_insert_with(|| {
                self.want(|| channel_topic(channel_id), true);
                HashMap::new()
            })
            .insert(handle.id, handle.clone());
    }

    pub fn unsubscribe(&self, conn: ConnId, channel_id: &str) {
        let mut map = write(&self.channels);
        if let Some(subs) = map.get_mut(channel_id) {
            subs.remove(&conn);
            if subs.is_empty() {
                map.remove(channel_id);
                self.want(|| channel_topic(channel_id), false);
            }
        }
    }

    /// Asks the sockets following a channel to refill it from the store.
    pub fn recheck_channel(&self, channel_id: &str) {
        if let Some(subs) = read(&self.channels).get(channel_id) {
            for h in subs.values() {
                h.push(
                    Outbound::Recheck(Some(channel_id.to_string())),
                    &self.metrics,
                );
            }
        }
    }

    /// Asks every socket to refill all its channels from the store.
    pub fn recheck_all(&self) {
        for conns in read(&self.users).values() {
            for h in conns.values() {
                h.push(Outbound::Recheck(None), &self.metrics);
            }
        }
    }

    /// Whether the user has a socket on this node.
    pub fn has_user(&self, user_id: &str) -> bool {
        read(&self.users).contains_key(user_id)
    }

    /// Hands an event to every connection following its channel.
    pub fn publish(&self, event: Arc<Published>) {
        let map = read(&self.channels);
        if let Some(subs) = map.get(&event.channel) {
            for h in subs.values() {
                h.push(Outbound::Event(event.clone()), &self.metrics);
            }
        }
    }

    /// A user joined a channel: its live connections follow the channel from `after`.
    pub fn user_joined(&self, user_id: &str, channel_id: &str, after: i64, frame: Utf8Bytes) {
        let conns: Vec<ConnHandle> = read(&self.users)
            .get(user_id)
            .map(|c| c.values().cloned().collect())
            .unwrap_or_default();
        for h in conns {
            self.subscribe(&h, channel_id);
            h.push(
                Outbound::ChannelAdded {
                    channel_id: channel_id.to_string(),
                    after,
                    frame: frame.clone(),
                },
                &self.metrics,
            );
        }
    }

    pub fn user_left(&self, user_id: &str, channel_id: &str, frame: Utf8Bytes) {
        let conns: Vec<ConnHandle> = read(&self.users)
            .get(user_id)
            .map(|c| c.values().cloned().collect())
            .unwrap_or_default();
        for h in conns {
            self.unsubscribe(h.id, channel_id);
            h.push(
                Outbound::ChannelRemoved {
                    channel_id: channel_id.to_string(),
                    frame: frame.clone(),
                },
                &self.metrics,
            );
        }
    }

    /// An ephemeral frame (typing) to a channel's connections, except `except_user`'s.
    pub fn ephemeral(&self, channel_id: &str, except_user: &str, frame: Utf8Bytes) {
        let map = read(&self.channels);
        if let Some(subs) = map.get(channel_id) {
            for h in subs.values().filter(|h| h.user_id != except_user) {
                h.push(Outbound::Ephemeral(frame.clone()), &self.metrics);
            }
        }
    }

    /// Closes every socket of a revoked session.
    pub fn revoke_session(&self, user_id: &str, session_id: &str) {
        if let Some(conns) = read(&self.users).get(user_id) {
            for h in conns.values().filter(|h| h.session_id == session_id) {
                // Bypass the queue-full path: a revoked socket must close even when lagging.
                let _ = h.tx.try_send(Outbound::Revoked);
            }
        }
    }

    pub fn presence_of(&self, user_id: &str) -> Presence {
        read(&self.presence)
            .get(user_id)
            .map(UserPresence::status)
            .unwrap_or(Presence::Offline)
    }

    pub fn set_away(&self, handle: &ConnHandle, away: bool) -> Option<Presence> {
        self.update_presence(&handle.user_id, |p| {
            if let Some(a) = p.conns.get_mut(&handle.id) {
                *a = away;
            }
        })
    }

    pub fn watch(&self, handle: &ConnHandle, user_ids: &[Id]) {
        let mut w = write(&self.watchers);
        for u in user_ids {
            w.entry(u.clone())
                .or_insert_with(|| {
                    self.want(|| presence_topic(u), true);
                    HashMap::new()
                })
                .insert(handle.id, handle.clone());
        }
    }

    /// Tells everyone watching `user_id` its new presence.
    pub fn announce_presence(
        &self,
        user_id: &str,
        status: Presence,
        last_seen: Option<time::OffsetDateTime>,
    ) {
        let frame = Utf8Bytes::from(
            ServerFrame::Presence {
                user_id: user_id.to_string(),
                status,
                last_seen,
            }
            .to_json(),
        );
        let watchers = read(&self.watchers);
        if let Some(conns) = watchers.get(user_id) {
            for h in conns.values() {
                h.push(Outbound::Ephemeral(frame.clone()), &self.metrics);
            }
            write(&self.told).insert(user_id.to_string(), status);
        }
    }

    /// Records what a watcher was just told about `user_id` (its `presence_subscribe` answer).
    pub fn note_told(&self, user_id: &str, status: Presence) {
        if read(&self.watchers).contains_key(user_id) {
            write(&self.told).insert(user_id.to_string(), status);
        }
    }

    /// What this node's watchers of `user_id` were last told, if any watch it.
    pub fn told(&self, user_id: &str) -> Option<Presence> {
        read(&self.told).get(user_id).copied()
    }

    fn update_presence(
        &self,
        user_id: &str,
        f: impl FnOnce(&mut UserPresence),
    ) -> Option<Presence> {
        let mut map = write(&self.presence);
        let entry = map.entry(user_id.to_string()).or_default();
        let before = entry.status();
        f(entry);
        let after = entry.status();
        if entry.conns.is_empty() {
            map.remove(user_id);
        }
        (before != after).then_some(after)
    }

    pub fn connected_users(&self) -> HashSet<Id> {
        read(&self.users).keys().cloned().collect()
    }
}
