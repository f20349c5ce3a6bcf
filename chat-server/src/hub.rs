//! The node's real-time routing: which live connections follow which channels and users, and
//! presence. Publishing serializes an event once and hands every subscribed connection a cheap
//! clone of the same bytes through a bounded queue. A full queue never blocks the publisher: the
//! connection is flagged as lagging and later refills what it missed from the store (the store
//! is the source of truth; the queues are only a fast path).
//!
//! What must never be dropped (the session was revoked, the user joined or left a channel, the
//! bus healed, the server is shutting down) does not travel in that queue: it is recorded in
//! the connection's [`Control`], which the connection consults before it writes anything, and
//! which wakes it.
//!
//! | module | what it is |
//! | --- | --- |
//! | this file | the hub: who follows what, publishing, presence, each connection's control state |
//! | [`queue`] | a connection's bounded outbound queue, allocated only once something is queued |
//! | [`rounds`] | big channels (and mid-sized ones while the node is busy): events queued at publish, sockets woken in rounds (a bounded coalescing delay under load) |

pub mod queue;
pub mod rounds;

use std::{
    collections::{HashMap, HashSet},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex, RwLock,
    },
};

use axum::extract::ws::Utf8Bytes;
use tokio::sync::{mpsc, Notify};

use crate::{
    metrics::Metrics,
    model::{ChannelId, Event, EventKind, EventPayload, Presence, SessionId, UserId},
    protocol::{event_frame, ServerFrame},
    topics::{channel_topic, presence_topic, user_topic, Interest},
};

pub type ConnId = u64;

/// One channel event, serialized once for every connection.
#[derive(Debug)]
pub struct Published {
    pub channel: ChannelId,
    pub seq: i64,
    pub kind: EventKind,
    /// For messages: who wrote it (its author does not count as a recipient).
    pub author_id: Option<UserId>,
    pub frame: Utf8Bytes,
    /// A message of a channel known not to track receipts (see `App::tracks_receipts`): its
    /// deliveries are not noted for delivered watermarks. Decided once per event where it is
    /// published or heard from another node (`App::mark_untracked`), not by each of 10,000
    /// sockets with a lookup of its own; `false` (look it up) where unknown.
    pub untracked: bool,
}

impl Published {
    pub fn new(event: &Event) -> Published {
        let author_id = match &event.payload {
            EventPayload::Message(message) => Some(message.author_id.clone()),
            _ => None,
        };
        Published {
            channel: event.channel.clone(),
            seq: event.seq,
            kind: event.kind(),
            author_id,
            frame: Utf8Bytes::from(event_frame(event)),
            untracked: false,
        }
    }
}

/// What a connection's queue carries.
#[derive(Debug, Clone)]
pub enum Outbound {
    Event(Arc<Published>),
    /// Frames outside any channel's sequence (typing, presence).
    Ephemeral(Utf8Bytes),
    /// Events of this channel may have been missed (a bus subscription just started): refill
    /// it from the store. Losing it to a full queue is harmless: lagging refills everything.
    Recheck(ChannelId),
}

/// A change of the user's memberships, applied by each of its connections in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MembershipChange {
    /// Joined or invited: follow the channel from `after` (exclusive, the seq before its
    /// `member_joined`).
    Added { channel_id: ChannelId, after: i64 },
    /// Left: events up to `left_seq` (its `member_left`) may still go out, nothing after.
    Removed {
        channel_id: ChannelId,
        left_seq: i64,
    },
}

/// A connection's control state: what must reach it whatever its queue holds. Writers are the
/// hub (any task); the connection reads it before every write and is woken by `notify`.
#[derive(Default)]
pub struct Control {
    revoked: AtomicBool,
    /// Re-read session, memberships and every channel from the store (the bus healed).
    recheck: AtomicBool,
    /// `changes` is not empty (a cheap check before every event written).
    dirty: AtomicBool,
    changes: Mutex<Vec<MembershipChange>>,
    notify: Notify,
}

impl Control {
    fn changes(&self) -> std::sync::MutexGuard<'_, Vec<MembershipChange>> {
        self.changes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn revoke(&self) {
        self.revoked.store(true, Ordering::Release);
        self.notify.notify_one();
    }

    pub fn is_revoked(&self) -> bool {
        self.revoked.load(Ordering::Acquire)
    }

    /// Whether anything was recorded that the connection has not taken yet (a revocation, a
    /// membership change, a recheck).
    pub fn is_pending(&self) -> bool {
        self.is_revoked()
            || self.dirty.load(Ordering::Acquire)
            || self.recheck.load(Ordering::Acquire)
    }

    fn change(&self, change: MembershipChange) {
        self.changes().push(change);
        self.dirty.store(true, Ordering::Release);
        self.notify.notify_one();
    }

    /// Wakes the connection with nothing recorded: it looks at the top of its loop (the server
    /// shutting down, [`Hub::is_closing`]).
    fn wake(&self) {
        self.notify.notify_one();
    }

    fn request_recheck(&self) {
        self.recheck.store(true, Ordering::Release);
        self.notify.notify_one();
    }

    /// Whether a full recheck was asked for since the last call.
    pub fn take_recheck(&self) -> bool {
        self.recheck.swap(false, Ordering::AcqRel)
    }

    /// The membership changes recorded since the last call, oldest first.
    pub fn take_changes(&self) -> Vec<MembershipChange> {
        if !self.dirty.swap(false, Ordering::AcqRel) {
            return Vec::new();
        }
        std::mem::take(&mut *self.changes())
    }

    /// Whether a recorded (not yet taken) leave of `channel_id` forbids writing its event `seq`.
    pub fn withholds(&self, channel_id: &str, seq: i64) -> bool {
        self.dirty.load(Ordering::Acquire)
            && self.changes().iter().any(|c| {
                matches!(c, MembershipChange::Removed { channel_id: ch, left_seq }
                    if ch == channel_id && seq > *left_seq)
            })
    }

    /// Resolves once something was recorded (at once if something was since the last wait).
    pub async fn notified(&self) {
        self.notify.notified().await;
    }
}

/// A connection as the hub lists it: one shared allocation however many maps list it (its
/// user's, each followed channel's, each watched user's), not copies of its ids in each.
#[derive(Clone)]
pub struct ConnHandle(Arc<ConnInfo>);

pub struct ConnInfo {
    pub id: ConnId,
    pub user_id: UserId,
    pub session_id: SessionId,
    tx: queue::Sender<Outbound>,
    pub lagged: AtomicBool,
    pub control: Arc<Control>,
}

impl std::ops::Deref for ConnHandle {
    type Target = ConnInfo;

    fn deref(&self) -> &ConnInfo {
        &self.0
    }
}

impl ConnHandle {
    /// Queues `out` and wakes the connection; a full queue marks it lagged.
    fn push(&self, out: Outbound, metrics: &Metrics) {
        match self.tx.try_send(out) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => self.mark_lagged(metrics),
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }

    /// Queues every item of `outs` (one lock for all) without waking the connection (a round
    /// will, see [`rounds`]); a full queue marks it lagged.
    fn push_all_quiet(&self, outs: impl Iterator<Item = Outbound>, metrics: &Metrics) {
        if let Err(mpsc::error::TrySendError::Full(())) = self.tx.try_send_all_quiet(outs) {
            self.mark_lagged(metrics);
        }
    }

    fn mark_lagged(&self, metrics: &Metrics) {
        if !self.lagged.swap(true, Ordering::AcqRel) {
            metrics.lagged.inc();
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
    channels: RwLock<HashMap<ChannelId, HashMap<ConnId, ConnHandle>>>,
    users: RwLock<HashMap<UserId, HashMap<ConnId, ConnHandle>>>,
    presence: RwLock<HashMap<UserId, UserPresence>>,
    /// Watched user → connections that asked for its presence.
    watchers: RwLock<HashMap<UserId, HashMap<ConnId, ConnHandle>>>,
    /// Watched user → the presence its watchers here were last told (to re-check it once the
    /// node's subscription to the user's presence topic is in place).
    told: RwLock<HashMap<UserId, Presence>>,
    /// With Redis: the topics this node needs, reported as the maps above gain their first or
    /// lose their last connection for a key (see [`crate::cluster`]).
    interest: Option<mpsc::UnboundedSender<Interest>>,
    /// Big channels' wake-up rounds.
    rounds: rounds::Rounds,
    /// The server is shutting down ([`Hub::close_all`]): every socket closes with 1012.
    closing: AtomicBool,
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Hub {
    /// `rounds`: the big channels' wake-up rounds ([`rounds`]), `None` for none (every publish
    /// wakes its sockets at once).
    pub fn new(
        metrics: Arc<Metrics>,
        interest: Option<mpsc::UnboundedSender<Interest>>,
        rounds: Option<rounds::RoundSettings>,
    ) -> Hub {
        Hub {
            next_id: AtomicU64::new(1),
            metrics,
            channels: RwLock::default(),
            users: RwLock::default(),
            presence: RwLock::default(),
            watchers: RwLock::default(),
            told: RwLock::default(),
            interest,
            rounds: rounds::Rounds::new(rounds),
            closing: AtomicBool::new(false),
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
    ) -> (ConnHandle, queue::Receiver<Outbound>, Option<Presence>) {
        let (tx, rx) = queue::channel(queue.max(16));
        let handle = ConnHandle(Arc::new(ConnInfo {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            user_id: user_id.into(),
            session_id: session_id.into(),
            tx,
            lagged: AtomicBool::new(false),
            control: Arc::default(),
        }));
        write(&self.users)
            .entry(user_id.into())
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

    /// Forgets a connection everywhere; returns the user's presence if it changed. `channels`
    /// are the ones it followed; channels it was subscribed to by a join it had not applied yet
    /// are found in its control state.
    pub fn disconnect(
        &self,
        handle: &ConnHandle,
        channels: impl IntoIterator<Item = ChannelId>,
    ) -> Option<Presence> {
        // Users first: once the handle is gone from there no join can subscribe it any more
        // (joins subscribe under the users lock), so the pending joins read below are all.
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
        let pending = handle
            .control
            .take_changes()
            .into_iter()
            .filter_map(|c| match c {
                MembershipChange::Added { channel_id, .. } => Some(channel_id),
                MembershipChange::Removed { .. } => None,
            });
        let channels: HashSet<ChannelId> = channels.into_iter().chain(pending).collect();
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
            .entry(channel_id.into())
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
                h.push(Outbound::Recheck(channel_id.into()), &self.metrics);
            }
        }
    }

    /// Tells every connection, through its own control state, that the server is shutting
    /// down. Why not a shared `CancellationToken` in each connection's `select!`: polling one
    /// locks its mutex (and its `Notify`'s), shared by every socket of the node, twice per
    /// socket per wake-up; 10,000 sockets woken for a message contend for it from every
    /// worker. A connection made after this call sees [`Hub::is_closing`] on its first turn.
    pub fn close_all(&self) {
        self.closing.store(true, Ordering::SeqCst);
        self.each_connection(|h| h.control.wake());
    }

    /// Whether [`Hub::close_all`] was called.
    pub fn is_closing(&self) -> bool {
        self.closing.load(Ordering::SeqCst)
    }

    /// Asks every socket to re-read its session, memberships and channels from the store.
    pub fn recheck_all(&self) {
        self.each_connection(|h| h.control.request_recheck());
    }

    /// Runs `f` for every connection of this node (under the users map's read lock).
    fn each_connection(&self, f: impl Fn(&ConnHandle)) {
        for conns in read(&self.users).values() {
            conns.values().for_each(&f);
        }
    }

    /// Whether the user has a socket on this node.
    pub fn has_user(&self, user_id: &str) -> bool {
        read(&self.users).contains_key(user_id)
    }

    /// Hands an event to every connection following its channel: woken now, or in the next
    /// round when the channel is big ([`rounds`]).
    pub fn publish(&self, event: Arc<Published>) {
        self.push_to_channel(&event.channel, None, Outbound::Event(event.clone()));
    }

    /// Queues `out` on each socket of the channel (but `except_user`'s) and wakes them now or,
    /// in a big channel, hands it to the round task (see [`rounds`]).
    fn push_to_channel(&self, channel_id: &str, except_user: Option<&str>, out: Outbound) {
        {
            let map = read(&self.channels);
            let Some(subs) = map.get(channel_id) else {
                return;
            };
            let in_round = self.rounds.applies(subs.len());
            if let Some(out) = self.rounds.hand(channel_id, out, except_user, in_round) {
                for h in subs
                    .values()
                    .filter(|h| except_user != Some(h.user_id.as_str()))
                {
                    h.push(out.clone(), &self.metrics);
                }
                return;
            }
        }
        self.metrics.fanout_held.inc();
        self.deliver_if_rounds_stopped();
    }

    /// A user joined a channel: its live connections follow the channel from `after`. They are
    /// subscribed here, synchronously, before any store read: every event stored from now on
    /// reaches them live, and what was stored since the join they refill from `after` when they
    /// apply the change (and announce the channel with `channel_added`).
    pub fn user_joined(&self, user_id: &str, channel_id: &str, after: i64) {
        // Under the users lock: a disconnecting connection either is not found or sees the
        // change in its control state (see `disconnect`).
        let users = read(&self.users);
        for h in users.get(user_id).into_iter().flat_map(|c| c.values()) {
            self.subscribe(h, channel_id);
            h.control.change(MembershipChange::Added {
                channel_id: channel_id.into(),
                after,
            });
        }
    }

    /// A user left a channel (its `member_left` has seq `left_seq`): its connections stop
    /// following it and say `channel_removed`.
    pub fn user_left(&self, user_id: &str, channel_id: &str, left_seq: i64) {
        let users = read(&self.users);
        for h in users.get(user_id).into_iter().flat_map(|c| c.values()) {
            self.unsubscribe(h.id, channel_id);
            h.control.change(MembershipChange::Removed {
                channel_id: channel_id.into(),
                left_seq,
            });
        }
    }

    /// An ephemeral frame (typing) to a channel's connections, except `except_user`'s.
    /// In a big channel it waits for the channel's next round like its events (typing in a
    /// 10,000-socket channel would otherwise wake every socket for a frame that can wait).
    pub fn ephemeral(&self, channel_id: &str, except_user: &str, frame: Utf8Bytes) {
        self.push_to_channel(channel_id, Some(except_user), Outbound::Ephemeral(frame));
    }

    /// Closes every socket of a revoked session.
    pub fn revoke_session(&self, user_id: &str, session_id: &str) {
        if let Some(conns) = read(&self.users).get(user_id) {
            for h in conns.values().filter(|h| h.session_id == session_id) {
                // Not through the queue: a revoked socket must close even when its queue is full.
                h.control.revoke();
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

    pub fn watch(&self, handle: &ConnHandle, user_ids: &[UserId]) {
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
                user_id: user_id.into(),
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
            write(&self.told).insert(user_id.into(), status);
        }
    }

    /// Records what a watcher was just told about `user_id` (its `presence_subscribe` answer).
    pub fn note_told(&self, user_id: &str, status: Presence) {
        if read(&self.watchers).contains_key(user_id) {
            write(&self.told).insert(user_id.into(), status);
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
        let entry = map.entry(user_id.into()).or_default();
        let before = entry.status();
        f(entry);
        let after = entry.status();
        if entry.conns.is_empty() {
            map.remove(user_id);
        }
        (before != after).then_some(after)
    }

    pub fn connected_users(&self) -> HashSet<UserId> {
        read(&self.users).keys().cloned().collect()
    }
}
