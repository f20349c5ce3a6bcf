//! Wake-up rounds for big channels: a bounded coalescing delay for fan-out under load.
//!
//! Why: a frame to one socket costs about as much in the kernel (one `send` on its TCP
//! socket) and in the scheduler (one task wake and poll) whether it carries one event or ten.
//! Waking each of 10,000 sockets for every message spends that per message; letting the
//! events of a busy big channel gather for a moment spends it once per round, for all of them.
//! And a publish that wakes 10,000 tasks at once overflows the worker's run queue into the
//! runtime's global queue, where the sender's own wake-up (its commit, then its ack) waits
//! behind all of them.
//!
//! How: in a channel with at least `min_sockets` sockets on this node, a publish only hands
//! the event to the round task ([`Hub::run_rounds`]), one push, and goes on to its ack: when
//! the sender queued it on 10,000 sockets itself, its ack's p99 was about twice as long
//! (measured, docs/benchmarks.md). The round task queues each handed event on the channel's sockets without
//! waking them, as soon as it can, and marks the channel; a round wakes the marked channels'
//! sockets a chunk at a time, the next chunk only once the sockets of the last one have run
//! (other tasks, the sender's among them, run in between), queuing what was handed meanwhile
//! between chunks (so a socket late in a round takes the newest events too); at most one
//! round starts per `interval`. A message after a quiet spell starts a round at once: the
//! delay is only paid under load, and bounded by `interval`. Typing frames of such a channel
//! wait for its round too. Small channels (direct messages, groups) queue and wake at
//! publish, except while the node is busy ([`Load`]: the node's publishes owe many
//! deliveries per round interval): then mid-sized ones (`busy_min_sockets`, groups of tens of
//! members) go in rounds too, where an idle node would only make them wait. A channel with
//! handed events not yet queued hands the later ones too, whatever its size or the load by
//! then, so they cannot overtake.
//!
//! Nothing about order or exactly-once changes: each socket's queue gets a channel's events
//! in publish order. A socket that follows the channel from after a publish but before the
//! event is queued gets it as well, and skips it by its cursor (as it skips any event at or
//! below it); one that stops following it in between never gets it, and needs not: a leave
//! refills up to its `member_left` from the store, a closed socket resumes.

use std::{
    collections::{HashMap, HashSet},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Mutex, MutexGuard, PoisonError,
    },
    time::{Duration, Instant},
};

use tokio::sync::Notify;

use super::{read, ConnHandle, Hub, Outbound};
use crate::model::{ChannelId, UserId};

/// Sockets woken between two yields of the round task: well under a worker's local run queue
/// (256), so a round never spills woken tasks into the runtime's global queue (the round
/// waits for each chunk to run: [`behind_what_was_woken`]).
const WAKE_CHUNK: usize = 128;

/// Settings of the rounds (see the module docs).
#[derive(Debug, Clone, Copy)]
pub struct RoundSettings {
    /// Channels with fewer sockets on this node wake them at publish (unless busy, below).
    pub min_sockets: usize,
    /// Rounds start at most this often (the bound on the coalescing delay).
    pub interval: Duration,
    /// While the node is busy, channels with at least this many sockets go in rounds too
    /// (0: never).
    pub busy_min_sockets: usize,
    /// Busy: the events published in the last `interval` (or so far in this one) owe at least
    /// this many deliveries (events × sockets).
    pub busy_deliveries: u64,
}

/// Deliveries the node's publishes owe, per window of one round interval: whether the node is
/// busy. Approximate on purpose (relaxed atomics, a racing window roll counts a few
/// deliveries in the wrong window): it only chooses between two correct ways to deliver.
struct Load {
    epoch: Instant,
    /// Start of the current window, ms since `epoch`.
    window_start: AtomicU64,
    /// Deliveries owed by the current window's publishes.
    current: AtomicU64,
    /// The window just before the current one reached the bound.
    was_busy: AtomicBool,
}

impl Load {
    fn new() -> Load {
        Load {
            epoch: Instant::now(),
            window_start: AtomicU64::new(0),
            current: AtomicU64::new(0),
            was_busy: AtomicBool::new(false),
        }
    }

    /// Counts a publish owing `deliveries`; whether the node is busy.
    fn note(&self, deliveries: usize, window: Duration, bound: u64) -> bool {
        let now = self.epoch.elapsed().as_millis() as u64;
        self.note_at(now, deliveries, window.as_millis().max(1) as u64, bound)
    }

    /// [`Load::note`] at `now` (ms since `epoch`), windows of `window` ms.
    fn note_at(&self, now: u64, deliveries: usize, window: u64, bound: u64) -> bool {
        let start = self.window_start.load(Ordering::Relaxed);
        if now >= start + window
            && self
                .window_start
                .compare_exchange(start, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            let last = self.current.swap(0, Ordering::Relaxed);
            // After a quiet spell (no publish for a whole window) the node is not busy.
            let adjacent = now < start + 2 * window;
            self.was_busy
                .store(adjacent && last >= bound, Ordering::Relaxed);
        }
        let n = deliveries as u64;
        let current = self.current.fetch_add(n, Ordering::Relaxed) + n;
        self.was_busy.load(Ordering::Relaxed) || current >= bound
    }
}

pub(super) struct Rounds {
    settings: Option<RoundSettings>,
    /// The round task runs: until it does (or once it stopped), every publish wakes at once.
    running: AtomicBool,
    /// Events handed to the round task and not yet queued on the sockets, by channel, in
    /// publish order.
    held: Mutex<HashMap<ChannelId, Vec<Held>>>,
    held_any: Notify,
    /// Channels with events queued but not yet woken for.
    marked: Mutex<HashSet<ChannelId>>,
    load: Load,
}

/// An event (or typing frame) handed to the round task.
pub(super) struct Held {
    out: Outbound,
    /// Typing: the author's sockets get no copy.
    except_user: Option<UserId>,
}

impl Held {
    fn to(&self, h: &ConnHandle) -> bool {
        self.except_user.as_ref().is_none_or(|u| *u != h.user_id)
    }
}

impl Rounds {
    pub(super) fn new(settings: Option<RoundSettings>) -> Rounds {
        Rounds {
            settings,
            running: AtomicBool::new(false),
            held: Mutex::new(HashMap::new()),
            held_any: Notify::new(),
            marked: Mutex::new(HashSet::new()),
            load: Load::new(),
        }
    }

    /// Whether a publish to a channel with `sockets` sockets here waits for a round: a big
    /// channel's always, a smaller one's while the node is busy. Counts the publish's
    /// deliveries towards the node's load.
    pub(super) fn applies(&self, sockets: usize) -> bool {
        let Some(s) = self.settings else {
            return false;
        };
        let busy = self.load.note(sockets, s.interval, s.busy_deliveries);
        let by_size = sockets >= s.min_sockets;
        let by_load = busy && s.busy_min_sockets > 0 && sockets >= s.busy_min_sockets;
        (by_size || by_load) && self.running.load(Ordering::Acquire)
    }

    /// Hands `out` to the round task for `channel`, or gives it back when the channel has
    /// nothing handed and `in_round` (its size, decided by the caller) is false: then it goes
    /// out at once. Reads no channel map: the publish calls it under the map's lock (a
    /// `None` must be followed by [`Hub::deliver_if_rounds_stopped`] once that is released).
    pub(super) fn hand(
        &self,
        channel: &str,
        out: Outbound,
        except_user: Option<&str>,
        in_round: bool,
    ) -> Option<Outbound> {
        {
            let mut held = self.held();
            // A channel with handed events hands the later ones too, whatever its size now:
            // they must not overtake.
            let list = match held.get_mut(channel) {
                Some(list) => list,
                None if in_round => held.entry(channel.into()).or_default(),
                None => return Some(out),
            };
            list.push(Held {
                out,
                except_user: except_user.map(|u| UserId::from(u.to_owned())),
            });
        }
        if self.running.load(Ordering::Acquire) {
            self.held_any.notify_one();
        }
        None
    }

    fn held(&self) -> MutexGuard<'_, HashMap<ChannelId, Vec<Held>>> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn marked(&self) -> MutexGuard<'_, HashSet<ChannelId>> {
        self.marked.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn take_held(&self) -> Vec<(ChannelId, Vec<Held>)> {
        self.held().drain().collect()
    }

    fn take_marked(&self) -> Vec<ChannelId> {
        self.marked().drain().collect()
    }
}

/// Marks the round task stopped when its future is dropped (the node shutting down) and
/// delivers and wakes what it had not; later publishes do it themselves.
struct Running<'a>(&'a Hub);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.rounds.running.store(false, Ordering::Release);
        self.0.deliver_held_now();
    }
}

impl Hub {
    /// Runs the wake-up rounds (module docs) until dropped; returns at once when they are off.
    pub async fn run_rounds(&self) {
        let Some(settings) = self.rounds.settings else {
            return;
        };
        let rounds = &self.rounds;
        rounds.running.store(true, Ordering::Release);
        let _running = Running(self);
        loop {
            // Events queued while the last round's interval ran out start this one at once.
            if rounds.marked().is_empty() {
                rounds.held_any.notified().await;
            }
            let started = tokio::time::Instant::now();
            self.round().await;
            // Until the next round may start, what is handed is queued (not woken) at once.
            let next = tokio::time::sleep_until(started + settings.interval);
            tokio::pin!(next);
            loop {
                tokio::select! {
                    biased;
                    _ = &mut next => break,
                    _ = rounds.held_any.notified() => self.queue_held(),
                }
            }
        }
    }

    /// After a publish was handed to the round task: if the task stopped after the publish
    /// looked (see `Running`), nobody else would deliver it. Not under the channel map's lock:
    /// delivering reads the map.
    pub(super) fn deliver_if_rounds_stopped(&self) {
        if !self.rounds.running.load(Ordering::Acquire) {
            self.deliver_held_now();
        }
    }

    /// Queues what was handed and wakes every marked channel's sockets at once: the round
    /// task is gone.
    fn deliver_held_now(&self) {
        self.queue_held();
        for channel in self.rounds.take_marked() {
            self.wake_now(&channel);
        }
    }

    /// One round: what was handed is queued, then every marked channel's sockets are woken,
    /// a chunk at a time (see the module docs).
    pub(super) async fn round(&self) {
        self.queue_held();
        for channel in self.rounds.take_marked() {
            self.wake_channel(&channel).await;
        }
    }

    /// Queues every handed event on its channel's sockets, without waking them, and marks
    /// the channels for the next round.
    fn queue_held(&self) {
        let handed = self.rounds.take_held();
        if handed.is_empty() {
            return;
        }
        {
            let channels = read(&self.channels);
            for (channel, held) in &handed {
                for h in channels.get(channel).into_iter().flat_map(|s| s.values()) {
                    h.push_all_quiet(
                        held.iter().filter(|e| e.to(h)).map(|e| e.out.clone()),
                        &self.metrics,
                    );
                }
            }
        }
        self.rounds
            .marked()
            .extend(handed.into_iter().map(|(channel, _)| channel));
    }

    /// Wakes every socket following `channel` at once.
    fn wake_now(&self, channel: &str) {
        if let Some(subs) = read(&self.channels).get(channel) {
            for h in subs.values() {
                h.tx.wake();
            }
        }
    }

    /// Wakes every socket following `channel`, a chunk at a time; what was handed meanwhile
    /// is queued between chunks.
    async fn wake_channel(&self, channel: &str) {
        let conns: Vec<ConnHandle> = match read(&self.channels).get(channel) {
            Some(subs) => subs.values().cloned().collect(),
            None => return,
        };
        for chunk in conns.chunks(WAKE_CHUNK) {
            for h in chunk {
                h.tx.wake();
            }
            behind_what_was_woken().await;
            self.queue_held();
        }
    }
}

/// Lets the tasks just woken run before this one goes on: the task wakes itself and returns
/// `Pending` once. A task that was woken while it ran is put at the back of its worker's local
/// run queue (tokio's multi-thread scheduler), i.e. behind the sockets of the chunk it woke.
/// Not `tokio::task::yield_now`: that one defers the task until the worker next polls its
/// I/O driver (every 61 tasks), so a round woke its next chunk while the last was still
/// queued; the queue then overflowed into the runtime's global queue, and whatever was woken
/// from another thread (a sender's commit, on its way to the ack) waited behind those sockets
/// there, 10–40 ms under a 10,000-socket fan-out (measured).
async fn behind_what_was_woken() {
    let mut woke = false;
    std::future::poll_fn(|cx| {
        if woke {
            return std::task::Poll::Ready(());
        }
        woke = true;
        cx.waker().wake_by_ref();
        std::task::Poll::Pending
    })
    .await;
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::extract::ws::Utf8Bytes;

    use super::*;
    use crate::{
        hub::{Outbound, Published},
        metrics::Metrics,
        model::EventKind,
    };

    fn hub() -> Arc<Hub> {
        hub_with_interval(Duration::from_millis(20))
    }

    fn hub_with_interval(interval: Duration) -> Arc<Hub> {
        Arc::new(Hub::new(
            Arc::new(Metrics::new()),
            None,
            Some(RoundSettings {
                min_sockets: 2,
                interval,
                busy_min_sockets: 0,
                busy_deliveries: u64::MAX,
            }),
        ))
    }

    #[test]
    fn the_node_is_busy_from_the_bound_on_and_one_window_after_it() {
        let load = Load::new();
        // Windows of 100 ms, busy from 1,000 deliveries per window.
        assert!(!load.note_at(0, 600, 100, 1000));
        assert!(
            load.note_at(50, 400, 100, 1000),
            "the bound reached in this window"
        );
        // The next window: busy because the last one was, whatever it counts itself.
        assert!(load.note_at(120, 10, 100, 1000));
        // The one after: its predecessor owed only 10.
        assert!(!load.note_at(230, 10, 100, 1000));
        assert!(load.note_at(240, 990, 100, 1000));
        // A quiet spell longer than a window in between: not busy any more.
        assert!(!load.note_at(900, 10, 100, 1000));
    }

    #[test]
    fn a_mid_sized_channel_goes_in_rounds_only_while_the_node_is_busy() {
        let rounds = Rounds::new(Some(RoundSettings {
            min_sockets: 256,
            // Long enough that the test's publishes fall in one window on any machine.
            interval: Duration::from_secs(3600),
            busy_min_sockets: 32,
            busy_deliveries: 500,
        }));
        rounds.running.store(true, Ordering::Release);
        assert!(rounds.applies(300), "big: always");
        assert!(!rounds.applies(2), "a DM: never");
        assert!(
            !rounds.applies(100),
            "a group on a quiet node (402 owed so far)"
        );
        assert!(rounds.applies(100), "502 owed: busy");
        assert!(
            !rounds.applies(31),
            "smaller than busy_min_sockets, busy or not"
        );
    }

    fn event(seq: i64) -> Arc<Published> {
        Arc::new(Published {
            channel: "big".into(),
            seq,
            kind: EventKind::Message,
            author_id: None,
            frame: Utf8Bytes::from_static("{}"),
            untracked: false,
        })
    }

    /// Socket `i` (user `u{i}`) following the big channel: its queue.
    fn following_big(hub: &Hub, i: usize) -> crate::hub::queue::Receiver<Outbound> {
        let (h, rx, _) = hub.connect(&format!("u{i}"), &format!("s{i}"), 16);
        hub.subscribe(&h, "big");
        rx
    }

    /// The round task, running once this returns.
    async fn start_rounds(hub: &Arc<Hub>) -> tokio::task::JoinHandle<()> {
        let rounds = tokio::spawn({
            let hub = hub.clone();
            async move { hub.run_rounds().await }
        });
        while !hub.rounds.running.load(Ordering::Acquire) {
            tokio::task::yield_now().await;
        }
        rounds
    }

    fn seq_of(out: Option<Outbound>) -> i64 {
        match out {
            Some(Outbound::Event(ev)) => ev.seq,
            other => panic!("not an event: {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_big_channel_is_woken_by_its_round_and_by_publish_once_rounds_stop() {
        let hub = hub();
        let (mut rx_a, mut rx_b) = (following_big(&hub, 1), following_big(&hub, 2));
        let rounds = start_rounds(&hub).await;

        // Published quietly, woken by the round.
        hub.publish(event(1));
        hub.publish(event(2));
        assert_eq!(seq_of(rx_a.recv().await), 1);
        assert_eq!(seq_of(rx_a.recv().await), 2);
        assert_eq!(seq_of(rx_b.recv().await), 1);
        assert_eq!(seq_of(rx_b.recv().await), 2);

        // A lone publish after a quiet spell goes out too (its round starts at once).
        hub.publish(event(3));
        assert_eq!(seq_of(rx_a.recv().await), 3);
        assert_eq!(seq_of(rx_b.recv().await), 3);

        // Once the round task is gone, a publish wakes the sockets itself.
        rounds.abort();
        let _ = rounds.await;
        assert!(!hub.rounds.running.load(Ordering::Acquire));
        hub.publish(event(4));
        assert_eq!(seq_of(rx_a.recv().await), 4);
        assert_eq!(seq_of(rx_b.recv().await), 4);
    }

    /// While the round task waits for its next round, a handed event is queued on the sockets
    /// at once (a socket that runs for another reason takes it), not woken for.
    #[tokio::test]
    async fn between_rounds_a_handed_event_is_queued_at_once_and_marked_for_the_next() {
        let hub = hub_with_interval(Duration::from_secs(3600));
        let (mut rx_a, mut rx_b) = (following_big(&hub, 1), following_big(&hub, 2));
        let rounds = start_rounds(&hub).await;
        // After a quiet spell: a round at once.
        hub.publish(event(1));
        assert_eq!(seq_of(rx_a.recv().await), 1);
        assert_eq!(seq_of(rx_b.recv().await), 1);
        // The next round is an hour away: queued meanwhile, and marked for it.
        hub.publish(event(2));
        while !hub.rounds.held().is_empty() {
            tokio::task::yield_now().await;
        }
        assert_eq!(seq_of(rx_a.try_recv().ok()), 2);
        assert_eq!(seq_of(rx_b.try_recv().ok()), 2);
        assert!(hub.rounds.marked().contains("big"));
        rounds.abort();
    }

    #[tokio::test]
    async fn a_held_publish_waits_for_its_round_and_the_task_s_end_delivers_it() {
        let hub = hub();
        let (mut rx_a, mut rx_b) = (following_big(&hub, 1), following_big(&hub, 2));
        // A socket waiting for its queue (one thread: it runs, and parks, at our yields).
        let waiter = tokio::spawn(async move { seq_of(rx_a.recv().await) });
        for _ in 0..3 {
            tokio::task::yield_now().await;
        }
        // As if the round task were running: the publish is held for the channel's round.
        hub.rounds.running.store(true, Ordering::Release);
        hub.publish(event(1));
        for _ in 0..3 {
            tokio::task::yield_now().await;
        }
        assert!(!waiter.is_finished(), "not woken by a publish in a round");
        assert!(rx_b.try_recv().is_err(), "nothing queued before the round");
        assert_eq!(hub.rounds.held().get("big").map(Vec::len), Some(1));
        // The task's end delivers what it had not.
        drop(Running(&hub));
        assert!(hub.rounds.held().is_empty());
        assert_eq!(waiter.await.unwrap(), 1);
        assert_eq!(seq_of(rx_b.try_recv().ok()), 1);
    }

    #[tokio::test]
    async fn a_channel_with_held_events_holds_the_next_even_once_small() {
        let hub = hub();
        let mut rx_a = following_big(&hub, 1);
        let (b, _rx_b, _) = hub.connect("u2", "s2", 16);
        hub.subscribe(&b, "big");
        hub.rounds.running.store(true, Ordering::Release);
        hub.publish(event(1));
        // Now below `min_sockets`: alone it would go out at once, ahead of event 1.
        hub.unsubscribe(b.id, "big");
        hub.publish(event(2));
        assert!(rx_a.try_recv().is_err(), "held behind event 1");
        hub.round().await;
        assert_eq!(seq_of(rx_a.try_recv().ok()), 1);
        assert_eq!(seq_of(rx_a.try_recv().ok()), 2);
        // Nothing held any more: a small channel's publish goes out at once again.
        hub.publish(event(3));
        assert_eq!(seq_of(rx_a.try_recv().ok()), 3);
    }

    /// The round task goes on (to its next chunk) only after the sockets it woke have run: on
    /// tokio's multi-thread scheduler (one worker, so nothing is stolen and the order is the
    /// scheduler's own), 200 sockets woken in chunks of 128 have all taken their event when
    /// the round returns. With `yield_now` it returned when about half had (103 once).
    #[test]
    fn a_round_goes_on_only_after_the_sockets_it_woke_ran() {
        const SOCKETS: usize = 200;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .unwrap();
        rt.block_on(async {
            let hub = hub();
            let taken = Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let waiting = Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let mut sockets = Vec::new();
            for i in 0..SOCKETS {
                let mut rx = following_big(&hub, i);
                let (taken, waiting) = (taken.clone(), waiting.clone());
                sockets.push(tokio::spawn(async move {
                    // Counted once it waits on its queue (its waker registered).
                    let mut recv = std::pin::pin!(rx.recv());
                    assert!(futures_util::poll!(recv.as_mut()).is_pending());
                    waiting.fetch_add(1, Ordering::AcqRel);
                    let seq = seq_of(recv.await);
                    taken.fetch_add(1, Ordering::AcqRel);
                    seq
                }));
            }
            // Every socket is waiting on its queue before anything is published.
            while waiting.load(Ordering::Acquire) < SOCKETS {
                tokio::task::yield_now().await;
            }
            hub.rounds.running.store(true, Ordering::Release);
            hub.publish(event(1));
            assert_eq!(taken.load(Ordering::Acquire), 0, "held for the round");
            let round = tokio::spawn({
                let (hub, taken) = (hub.clone(), taken.clone());
                async move {
                    hub.round().await;
                    taken.load(Ordering::Acquire)
                }
            });
            assert_eq!(round.await.unwrap(), SOCKETS);
            for s in sockets {
                assert_eq!(s.await.unwrap(), 1);
            }
        });
    }

    #[tokio::test]
    async fn typing_in_a_big_channel_waits_for_the_round_and_skips_its_author() {
        let hub = hub();
        let (mut rx_a, mut rx_b) = (following_big(&hub, 1), following_big(&hub, 2));
        // As if the round task were running: held for the channel's round.
        hub.rounds.running.store(true, Ordering::Release);
        hub.ephemeral("big", "u1", Utf8Bytes::from_static("typing"));
        assert!(hub.rounds.held().contains_key("big"));
        assert!(rx_b.try_recv().is_err(), "nothing queued before the round");
        hub.round().await;
        match rx_b.try_recv() {
            Ok(Outbound::Ephemeral(frame)) => assert_eq!(frame.as_str(), "typing"),
            other => panic!("not the typing frame: {other:?}"),
        }
        assert!(rx_a.try_recv().is_err(), "the author gets no copy");
    }
}
