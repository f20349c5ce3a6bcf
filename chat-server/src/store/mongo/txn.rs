//! Transactions: every write runs as one multi-document transaction when the deployment has
//! them, retried on transient errors (write conflicts between nodes) with a short random
//! backoff, ending a dead node's orphaned transaction when the conflicts last (see
//! [`super::orphans`]); the steps every channel write shares run here in the write's session:
//! the membership check, taking the channel's next sequence number, recording an event.

use std::time::Duration;

use mongodb::{
    bson::doc, error::UNKNOWN_TRANSACTION_COMMIT_RESULT, options::ReturnDocument, ClientSession,
};
use time::OffsetDateTime;

use super::{documents::EventDoc, errors::Fail, MongoStore};
use crate::model::{Event, EventPayload};
use crate::store::StoreError;

/// How long one write keeps running its transaction again while it meets transient errors
/// (write conflicts), before it answers `Unavailable`. Longer than a crashed node's orphaned
/// transaction can hold a channel ([`super::orphans`]: about `DEAD_AFTER_MS` plus a heartbeat).
pub(super) const RETRY_FOR: Duration = Duration::from_secs(10);

/// Runs `$body` (which uses the session `$s`) as one write: inside a transaction when the
/// deployment has them, retried on transient transaction errors for up to [`RETRY_FOR`]; once
/// they last [`super::orphans::RECLAIM_AFTER`], each retry first ends the transactions of dead
/// nodes (the usual cause of a conflict that does not clear). Evaluates to
/// `Result<T, Fail>`.
macro_rules! write_txn {
    ($store:expr, $s:ident => $body:expr) => {{
        let store: &$crate::store::mongo::MongoStore = $store;
        let started = std::time::Instant::now();
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            let mut $s = match store.begin().await {
                Ok(s) => s,
                Err(e) => break Err(e),
            };
            let result: Result<_, $crate::store::mongo::errors::Fail> = async { $body }.await;
            let failed = match result {
                Ok(v) => match store.commit(&mut $s).await {
                    Ok(()) => break Ok(v),
                    Err(e) => e,
                },
                Err(e) => {
                    // Aborting needs a server too: with none reachable it would only wait out
                    // another server selection (the session aborts itself when dropped).
                    if !e.is_unreachable() {
                        store.abort(&mut $s).await;
                    }
                    e
                }
            };
            if !failed.is_transient() || started.elapsed() >= $crate::store::mongo::txn::RETRY_FOR {
                if failed.is_transient() {
                    tracing::warn!(
                        attempts = attempt,
                        error = ?failed,
                        "store: a write still met transient errors after its retry budget"
                    );
                }
                break Err(failed);
            }
            tracing::debug!(attempt, error = ?failed, "store: transient error, the write runs again");
            if started.elapsed() >= $crate::store::mongo::orphans::RECLAIM_AFTER {
                store.reclaim_orphans().await;
            }
            $crate::store::mongo::txn::backoff(attempt).await;
        }
    }};
}

pub(crate) use write_txn;

pub(super) async fn backoff(attempt: u32) {
    let cap = 2u64 << attempt.min(6);
    tokio::time::sleep(Duration::from_millis(rand::random_range(1..=cap.max(2)))).await;
}

impl MongoStore {
    pub(super) async fn lock_channel(&self, channel_id: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = self
            .channel_locks
            .entry(channel_id.into())
            .or_default()
            .clone();
        lock.lock_owned().await
    }

    pub(super) async fn begin(&self) -> Result<ClientSession, Fail> {
        let mut s = self.client.start_session().await?;
        if self.txn {
            if let Some(orphans) = &self.orphans {
                orphans.record(&s).await?;
            }
            s.start_transaction().await?;
        }
        Ok(s)
    }

    /// Ends the open transactions of nodes that stopped their heartbeats (see
    /// [`super::orphans`]).
    pub(super) async fn reclaim_orphans(&self) {
        if let Some(orphans) = &self.orphans {
            orphans.reclaim().await;
        }
    }

    pub(super) async fn commit(&self, s: &mut ClientSession) -> Result<(), Fail> {
        if !self.txn {
            return Ok(());
        }
        let mut tries = 0;
        loop {
            tries += 1;
            match s.commit_transaction().await {
                Ok(()) => return Ok(()),
                // Committing again is safe: the server answers the first commit's outcome.
                Err(e) if e.contains_label(UNKNOWN_TRANSACTION_COMMIT_RESULT) && tries < 3 => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    pub(super) async fn abort(&self, s: &mut ClientSession) {
        if self.txn {
            let _ = s.abort_transaction().await;
        }
    }

    /// Takes the channel's next sequence number (atomic `$inc`) and records the event under it.
    pub(super) async fn append_event(
        &self,
        s: &mut ClientSession,
        channel_id: &str,
        at: OffsetDateTime,
        payload: EventPayload,
    ) -> Result<Event, Fail> {
        let seq = self.next_seq(s, channel_id).await?;
        let event = Event {
            channel: channel_id.into(),
            seq,
            at,
            payload,
        };
        self.events
            .insert_one(EventDoc::from_event(&event))
            .session(&mut *s)
            .await?;
        Ok(event)
    }

    /// `$inc` of the channel's `last_seq` (not for messages: those are batched, see
    /// [`super::batch`]).
    pub(super) async fn next_seq(
        &self,
        s: &mut ClientSession,
        channel_id: &str,
    ) -> Result<i64, Fail> {
        let ch = self
            .channels
            .find_one_and_update(doc! {"_id": channel_id}, doc! {"$inc": {"last_seq": 1i64}})
            .return_document(ReturnDocument::After)
            .session(&mut *s)
            .await?
            .ok_or(StoreError::NotFound("channel"))?;
        Ok(ch.last_seq)
    }

    /// `NotMember` unless `user_id` is a member of the channel, read in the write's session.
    /// With transactions the write that follows also touches the channel document (its
    /// sequence number) or the member document, which a concurrent leave writes too: one of
    /// the two transactions meets a write conflict and runs again, and a retried write sees
    /// the leave. Without transactions only this node's channel lock orders the two.
    pub(super) async fn require_member(
        &self,
        s: &mut ClientSession,
        channel_id: &str,
        user_id: &str,
    ) -> Result<(), Fail> {
        self.members
            .clone_with_type::<mongodb::bson::Document>()
            .find_one(doc! {"channel_id": channel_id, "user_id": user_id})
            .projection(doc! {"_id": 1})
            .session(&mut *s)
            .await?
            .map(|_| ())
            .ok_or(Fail::Store(StoreError::NotMember))
    }
}
