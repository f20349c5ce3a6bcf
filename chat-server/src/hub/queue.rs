//! A connection's outbound queue: bounded, many senders (the hub, from any task), one receiver
//! (the connection's task), and no memory until something is queued.
//!
//! Why not `tokio::sync::mpsc`: its bounded channel allocates a block of 32 slots and a
//! cache-padded channel (~1.9 KB in all) when it is made, for every socket, even one that never
//! receives anything. Here an idle socket's queue is one small allocation; the slots grow with
//! what is queued and are given back once a burst has been drained. Same contract as the
//! tokio channel it replaces: `try_send` never waits (`Full` past the bound, `Closed` once the
//! receiver is gone), `recv` is cancel-safe (a `select!` branch may drop it at any time).

use std::{
    collections::VecDeque,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex, MutexGuard, PoisonError,
    },
};

use tokio::sync::{
    mpsc::error::{TryRecvError, TrySendError},
    Notify,
};

/// Slots kept after the queue has been drained: a burst's (up to the bound) are given back.
const KEEP_SLOTS: usize = 32;

struct Shared<T> {
    items: Mutex<VecDeque<T>>,
    bound: usize,
    /// The receiver was dropped: nothing more is queued.
    closed: AtomicBool,
    /// Wakes the receiver after a push (keeps a permit when it is not waiting).
    pushed: Notify,
}

impl<T> Shared<T> {
    fn items(&self) -> MutexGuard<'_, VecDeque<T>> {
        self.items.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A bounded queue holding at most `bound` items.
pub fn channel<T>(bound: usize) -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Shared {
        items: Mutex::new(VecDeque::new()),
        bound,
        closed: AtomicBool::new(false),
        pushed: Notify::new(),
    });
    (Sender(shared.clone()), Receiver(shared))
}

pub struct Sender<T>(Arc<Shared<T>>);

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        Sender(self.0.clone())
    }
}

impl<T> Sender<T> {
    /// Queues `item` unless the queue is full or its receiver is gone, and wakes the receiver;
    /// never waits.
    pub fn try_send(&self, item: T) -> Result<(), TrySendError<T>> {
        self.try_send_quiet(item)?;
        self.wake();
        Ok(())
    }

    /// Queues `item` like [`Sender::try_send`] without waking the receiver: a [`Sender::wake`]
    /// must follow.
    pub fn try_send_quiet(&self, item: T) -> Result<(), TrySendError<T>> {
        if self.0.closed.load(Ordering::Acquire) {
            return Err(TrySendError::Closed(item));
        }
        let mut items = self.0.items();
        if items.len() >= self.0.bound {
            return Err(TrySendError::Full(item));
        }
        items.push_back(item);
        Ok(())
    }

    /// Queues the items of `items` in order, under one lock, without waking the receiver (a
    /// [`Sender::wake`] must follow); stops at the bound (`Full`: the rest are dropped).
    pub fn try_send_all_quiet(
        &self,
        items: impl Iterator<Item = T>,
    ) -> Result<(), TrySendError<()>> {
        if self.0.closed.load(Ordering::Acquire) {
            return Err(TrySendError::Closed(()));
        }
        let mut queued = self.0.items();
        for item in items {
            if queued.len() >= self.0.bound {
                return Err(TrySendError::Full(()));
            }
            queued.push_back(item);
        }
        Ok(())
    }

    /// Wakes the receiver (it then takes whatever is queued).
    pub fn wake(&self) {
        self.0.pushed.notify_one();
    }
}

pub struct Receiver<T>(Arc<Shared<T>>);

impl<T> Receiver<T> {
    /// The oldest item, waiting for one. Never `None` (senders do not close the queue); an
    /// `Option` like tokio's receiver, so `select!` patterns stay the same.
    pub async fn recv(&mut self) -> Option<T> {
        loop {
            if let Ok(item) = self.try_recv() {
                return Some(item);
            }
            // A push between the `try_recv` above and this wait left a permit: no wake is lost.
            self.0.pushed.notified().await;
        }
    }

    /// The oldest item, if any.
    pub fn try_recv(&mut self) -> Result<T, TryRecvError> {
        let mut items = self.0.items();
        let item = items.pop_front().ok_or(TryRecvError::Empty)?;
        if items.is_empty() && items.capacity() > KEEP_SLOTS {
            *items = VecDeque::new();
        }
        Ok(item)
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        self.0.closed.store(true, Ordering::Release);
        // What was queued goes now, not when the last sender (a hub map entry) is dropped.
        std::mem::take(&mut *self.0.items());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bounded_in_order_and_closed_once_the_receiver_is_gone() {
        let (tx, mut rx) = channel(2);
        tx.try_send(1).unwrap();
        tx.clone().try_send(2).unwrap();
        assert!(matches!(tx.try_send(3), Err(TrySendError::Full(3))));
        assert_eq!(rx.recv().await, Some(1));
        assert_eq!(rx.try_recv(), Ok(2));
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
        drop(rx);
        assert!(matches!(tx.try_send(4), Err(TrySendError::Closed(4))));
    }

    #[tokio::test]
    async fn recv_waits_for_a_push_from_another_task() {
        let (tx, mut rx) = channel(4);
        let pusher = tokio::spawn(async move {
            tokio::task::yield_now().await;
            tx.try_send("late").unwrap();
        });
        assert_eq!(rx.recv().await, Some("late"));
        pusher.await.unwrap();
    }

    #[tokio::test]
    async fn a_quiet_push_waits_for_its_wake() {
        let (tx, mut rx) = channel(4);
        tx.try_send_quiet(1).unwrap();
        tx.try_send_quiet(2).unwrap();
        // Not woken: the receiver finds them when it looks, and is woken by `wake`.
        assert_eq!(rx.try_recv(), Ok(1));
        let waiter = tokio::spawn(async move {
            let first = rx.recv().await;
            let second = rx.recv().await;
            (first, second)
        });
        tokio::task::yield_now().await;
        tx.try_send_quiet(3).unwrap();
        tx.wake();
        assert_eq!(waiter.await.unwrap(), (Some(2), Some(3)));
    }

    #[tokio::test]
    async fn many_pushed_at_once_keep_their_order_up_to_the_bound() {
        let (tx, mut rx) = channel(3);
        tx.try_send(0).unwrap();
        assert!(matches!(
            tx.try_send_all_quiet([1, 2, 3].into_iter()),
            Err(TrySendError::Full(()))
        ));
        assert_eq!(
            (rx.try_recv(), rx.try_recv(), rx.try_recv()),
            (Ok(0), Ok(1), Ok(2))
        );
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
        tx.try_send_all_quiet([4, 5].into_iter()).unwrap();
        tx.wake();
        assert_eq!(rx.recv().await, Some(4));
        assert_eq!(rx.recv().await, Some(5));
        drop(rx);
        assert!(matches!(
            tx.try_send_all_quiet([6].into_iter()),
            Err(TrySendError::Closed(()))
        ));
    }

    #[tokio::test]
    async fn a_drained_burst_gives_its_slots_back() {
        let (tx, mut rx) = channel(1024);
        for i in 0..500 {
            tx.try_send(i).unwrap();
        }
        for i in 0..500 {
            assert_eq!(rx.recv().await, Some(i));
        }
        assert_eq!(rx.0.items().capacity(), 0);
    }
}
