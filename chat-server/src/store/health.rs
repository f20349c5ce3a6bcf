//! Store health as the node sees it: [`Watched`] wraps the driver and records every outcome in
//! a [`StoreHealth`], which
//! - tells readiness whether writes work: a node whose reads still answer but whose writes all
//!   fail (a full disk) is not ready. `/readyz` answers from the last failure for
//!   [`PROBE_AFTER`], then probes with a tiny write: on a nearly full disk a tiny write can pass
//!   while real ones (a message with its event and indexes) fail, so a probe must not overrule
//!   fresh failures of real writes;
//! - logs an outage without flooding: the first `Unavailable` is one WARN, later ones are
//!   counted and summed up in one WARN at most every [`LOG_EVERY`], and the first successful
//!   write after them logs one INFO with the total.
//!
//! An outage starts with any `Unavailable` answer (read or write) and ends only with a
//! successful write: on a full disk reads keep working, so they say nothing about writes.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use async_trait::async_trait;
use time::OffsetDateTime;

use super::{
    DynStore, NewChannel, NewMessage, NewUser, Page, Session, Store, StoreError, StoreResult,
    Watermark,
};
use crate::model::{Channel, ChannelId, Event, Member, Message, Role, User, UserId};

/// At most one summary WARN per this interval while the store keeps failing.
pub const LOG_EVERY: Duration = Duration::from_secs(10);

/// How long after the last failed write readiness says "not ready" without probing.
pub const PROBE_AFTER: Duration = Duration::from_secs(5);

/// What to log for one failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogAction {
    /// The first failure of an outage: log it.
    First,
    /// `LOG_EVERY` has passed since the last line: log a summary of this many failures
    /// (this one included).
    Summary(u64),
    /// Counted, not logged.
    Quiet,
}

/// The outage state behind the log limit and readiness (pure: time comes from the caller).
#[derive(Debug, Default)]
pub struct Outage {
    /// The last `Unavailable` answer and when, while no write has succeeded after it.
    failing: Option<(String, Instant)>,
    last_log: Option<Instant>,
    since_log: u64,
    total: u64,
}

impl Outage {
    pub fn failed(&mut self, error: &str, now: Instant) -> LogAction {
        self.failing = Some((error.to_string(), now));
        self.total += 1;
        match self.last_log {
            None => {
                self.last_log = Some(now);
                self.since_log = 0;
                LogAction::First
            }
            Some(t) if now.saturating_duration_since(t) >= LOG_EVERY => {
                let n = self.since_log + 1;
                self.last_log = Some(now);
                self.since_log = 0;
                LogAction::Summary(n)
            }
            Some(_) => {
                self.since_log += 1;
                LogAction::Quiet
            }
        }
    }

    /// A write succeeded: the outage (if any) is over; how many failures it had.
    pub fn write_succeeded(&mut self) -> Option<u64> {
        self.failing.take()?;
        let total = self.total;
        *self = Outage::default();
        Some(total)
    }

    /// The last error while writes are failing, and when it happened.
    pub fn failing(&self) -> Option<(&str, Instant)> {
        self.failing.as_ref().map(|(e, at)| (e.as_str(), *at))
    }
}

/// Shared by the [`Watched`] store and readiness.
#[derive(Debug, Default)]
pub struct StoreHealth {
    outage: Mutex<Outage>,
}

impl StoreHealth {
    fn lock(&self) -> std::sync::MutexGuard<'_, Outage> {
        self.outage
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records an answer of the store; `write` for operations that change it.
    pub fn record<T>(&self, result: &StoreResult<T>, write: bool) {
        match result {
            Err(StoreError::Unavailable(reason)) => {
                let action = self.lock().failed(reason, Instant::now());
                match action {
                    LogAction::First => {
                        tracing::warn!(%reason, "store unavailable: nothing was written (further failures are summed up every {}s)", LOG_EVERY.as_secs());
                    }
                    LogAction::Summary(n) => {
                        tracing::warn!(failures = n, last = %reason, "store still unavailable");
                    }
                    LogAction::Quiet => {}
                }
            }
            Ok(_) if write => {
                if let Some(total) = self.lock().write_succeeded() {
                    tracing::info!(failures = total, "store writes work again");
                }
            }
            // Conflicts, not-found and the like are answers: the store is working.
            _ => {}
        }
    }

    /// The last error while writes are failing and when it happened; `None` when they work
    /// (as far as known).
    pub fn failing(&self) -> Option<(String, Instant)> {
        self.lock().failing().map(|(e, at)| (e.to_string(), at))
    }
}

/// The store every part of the node uses: the driver, with each outcome recorded.
pub struct Watched {
    inner: DynStore,
    health: Arc<StoreHealth>,
}

impl Watched {
    pub fn new(inner: DynStore, health: Arc<StoreHealth>) -> Watched {
        Watched { inner, health }
    }

    fn read<T>(&self, r: StoreResult<T>) -> StoreResult<T> {
        self.health.record(&r, false);
        r
    }

    fn write<T>(&self, r: StoreResult<T>) -> StoreResult<T> {
        self.health.record(&r, true);
        r
    }

    /// A write that may find nothing to change (`Ok(None)`: already a member, watermark
    /// already there, …): such an answer wrote nothing to disk, so it says nothing about
    /// whether writes work (it would end every outage between two failed sends).
    fn write_opt<T>(&self, r: StoreResult<Option<T>>) -> StoreResult<Option<T>> {
        let wrote = !matches!(r, Ok(None));
        self.health.record(&r, wrote);
        r
    }
}

#[async_trait]
impl Store for Watched {
    fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        self.inner.register_metrics(registry);
    }
    async fn ping(&self) -> StoreResult<()> {
        self.read(self.inner.ping().await)
    }
    async fn probe_write(&self) -> StoreResult<()> {
        self.write(self.inner.probe_write().await)
    }
    async fn create_user(&self, user: NewUser) -> StoreResult<User> {
        self.write(self.inner.create_user(user).await)
    }
    async fn user_by_username(&self, username: &str) -> StoreResult<Option<(User, String)>> {
        self.read(self.inner.user_by_username(username).await)
    }
    async fn user(&self, id: &str) -> StoreResult<Option<User>> {
        self.read(self.inner.user(id).await)
    }
    async fn users(&self) -> StoreResult<Vec<User>> {
        self.read(self.inner.users().await)
    }
    async fn users_by_ids(&self, ids: &[UserId]) -> StoreResult<Vec<User>> {
        self.read(self.inner.users_by_ids(ids).await)
    }
    async fn set_last_seen(&self, user_id: &str, at: OffsetDateTime) -> StoreResult<()> {
        self.write(self.inner.set_last_seen(user_id, at).await)
    }
    async fn create_session(&self, session: Session) -> StoreResult<()> {
        self.write(self.inner.create_session(session).await)
    }
    async fn session_user(
        &self,
        session_id: &str,
        now: OffsetDateTime,
    ) -> StoreResult<Option<UserId>> {
        self.read(self.inner.session_user(session_id, now).await)
    }
    async fn delete_session(&self, session_id: &str) -> StoreResult<()> {
        self.write(self.inner.delete_session(session_id).await)
    }
    async fn create_channel(&self, channel: NewChannel) -> StoreResult<(Channel, Vec<Event>)> {
        self.write(self.inner.create_channel(channel).await)
    }
    async fn memberships(&self, user_id: &str) -> StoreResult<Vec<(ChannelId, i64)>> {
        self.read(self.inner.memberships(user_id).await)
    }
    async fn channel(&self, id: &str) -> StoreResult<Option<Channel>> {
        self.read(self.inner.channel(id).await)
    }
    async fn channels_for_user(&self, user_id: &str) -> StoreResult<Vec<Channel>> {
        self.read(self.inner.channels_for_user(user_id).await)
    }
    async fn public_channels(&self) -> StoreResult<Vec<Channel>> {
        self.read(self.inner.public_channels().await)
    }
    async fn member(&self, channel_id: &str, user_id: &str) -> StoreResult<Option<Member>> {
        self.read(self.inner.member(channel_id, user_id).await)
    }
    async fn members(&self, channel_id: &str) -> StoreResult<Vec<Member>> {
        self.read(self.inner.members(channel_id).await)
    }
    async fn add_member(
        &self,
        channel_id: &str,
        user_id: &str,
        role: Role,
        by: &str,
    ) -> StoreResult<Option<Event>> {
        self.write_opt(self.inner.add_member(channel_id, user_id, role, by).await)
    }
    async fn remove_member(&self, channel_id: &str, user_id: &str) -> StoreResult<Option<Event>> {
        self.write_opt(self.inner.remove_member(channel_id, user_id).await)
    }
    fn writes_commit_in_poll_order(&self) -> bool {
        self.inner.writes_commit_in_poll_order()
    }
    async fn append_message(&self, message: NewMessage) -> StoreResult<(Message, Option<Event>)> {
        let r = self.inner.append_message(message).await;
        // A duplicate (no event) was answered from what is stored: nothing written.
        let wrote = !matches!(r, Ok((_, None)));
        self.health.record(&r, wrote);
        r
    }
    async fn edit_message(
        &self,
        channel_id: &str,
        message_id: &str,
        author_id: &str,
        text: &str,
        mentions: &[UserId],
        at: OffsetDateTime,
    ) -> StoreResult<Event> {
        self.write(
            self.inner
                .edit_message(channel_id, message_id, author_id, text, mentions, at)
                .await,
        )
    }
    async fn delete_message(
        &self,
        channel_id: &str,
        message_id: &str,
        author_id: &str,
        at: OffsetDateTime,
    ) -> StoreResult<Event> {
        self.write(
            self.inner
                .delete_message(channel_id, message_id, author_id, at)
                .await,
        )
    }
    async fn react(
        &self,
        channel_id: &str,
        message_id: &str,
        user_id: &str,
        emoji: &str,
        add: bool,
        at: OffsetDateTime,
    ) -> StoreResult<Option<Event>> {
        self.write_opt(
            self.inner
                .react(channel_id, message_id, user_id, emoji, add, at)
                .await,
        )
    }
    async fn message(&self, channel_id: &str, message_id: &str) -> StoreResult<Option<Message>> {
        self.read(self.inner.message(channel_id, message_id).await)
    }
    async fn history(
        &self,
        channel_id: &str,
        page: Page,
        limit: usize,
    ) -> StoreResult<(Vec<Message>, bool)> {
        self.read(self.inner.history(channel_id, page, limit).await)
    }
    async fn replies(&self, channel_id: &str, root_id: &str) -> StoreResult<Vec<Message>> {
        self.read(self.inner.replies(channel_id, root_id).await)
    }
    async fn events_after(
        &self,
        channel_id: &str,
        after: i64,
        limit: usize,
    ) -> StoreResult<Vec<Event>> {
        self.read(self.inner.events_after(channel_id, after, limit).await)
    }
    async fn advance_watermark(
        &self,
        channel_id: &str,
        user_id: &str,
        mark: Watermark,
        emit: bool,
        at: OffsetDateTime,
    ) -> StoreResult<Option<Event>> {
        // `Ok(None)` also when the watermark moved without a receipt (`emit` off): counted
        // as no write, which only delays the end of an outage to the next real write.
        self.write_opt(
            self.inner
                .advance_watermark(channel_id, user_id, mark, emit, at)
                .await,
        )
    }
    async fn advance_delivered(
        &self,
        channel_id: &str,
        marks: Vec<(UserId, i64)>,
        announce: Vec<UserId>,
        emit: bool,
        at: OffsetDateTime,
    ) -> StoreResult<Option<Event>> {
        // As `advance_watermark`: `Ok(None)` counts as no write.
        self.write_opt(
            self.inner
                .advance_delivered(channel_id, marks, announce, emit, at)
                .await,
        )
    }
    async fn search(
        &self,
        user_id: &str,
        query: &str,
        channel_id: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<Message>> {
        self.read(self.inner.search(user_id, query, channel_id, limit).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outage_logs_once_then_summaries_at_most_every_interval() {
        let t0 = Instant::now();
        let mut o = Outage::default();
        assert_eq!(o.failing(), None);
        assert_eq!(o.failed("disk full", t0), LogAction::First);
        // A thousand failures within the interval: not one line more.
        for i in 1..=1000u64 {
            let at = t0 + LOG_EVERY * (i as u32) / 1001;
            assert_eq!(o.failed("disk full", at), LogAction::Quiet, "{i}");
        }
        assert_eq!(o.failing().map(|f| f.0), Some("disk full"));
        assert_eq!(
            o.failed("disk full", t0 + LOG_EVERY),
            LogAction::Summary(1001)
        );
        assert_eq!(
            o.failed("disk full", t0 + LOG_EVERY + Duration::from_secs(1)),
            LogAction::Quiet
        );
        assert_eq!(
            o.failed("disk full", t0 + LOG_EVERY * 2),
            LogAction::Summary(2)
        );
        assert_eq!(o.write_succeeded(), Some(1004), "one INFO with the total");
        assert_eq!(o.failing(), None);
        assert_eq!(o.write_succeeded(), None, "no outage, nothing to say");
        // The next outage starts with a WARN of its own.
        assert_eq!(
            o.failed("again", t0 + LOG_EVERY * 2 + Duration::from_millis(1)),
            LogAction::First
        );
    }
}
