//! The store: one trait, the source of truth for accounts, channels, messages and every
//! channel's replay log. Drivers: [`sqlite`] (embedded default) and [`mongo`]
//! (`mongodb://…`); `tests/store_contract.rs` is the contract both must pass. [`health`]
//! wraps the driver the node uses: readiness while writes fail, and a rate-limited outage log.
//! [`rules`] holds what both drivers compute (message and event construction, watermark
//! arithmetic, reactions, stored encodings, undecodable-row errors), so they cannot drift.
//!
//! | module | what it is |
//! | --- | --- |
//! | [`sqlite`] | embedded driver: `schema` (migrations), `writer` (group commit), `rows` (row ↔ type), `writes`, `search` |
//! | [`mongo`] | MongoDB driver: `documents` (typed collection documents), `schema` (indexes), `errors`, `txn` (transactions), `batch` (group commit of sends and watermarks), `writes`, `reads`, `search` |
//! | [`rules`] | the rules both drivers share |
//! | [`health`] | the health-tracking wrapper the node uses |
//!
//! Rules every driver keeps:
//! - each visible change to a channel appends one [`Event`] with the channel's next sequence
//!   number, atomically with the change itself (no gaps, no duplicates, even under concurrency);
//! - a method returns only after its change is durable;
//! - `append_message` is idempotent on `(author_id, client_id)`;
//! - every write to a channel on behalf of a user (`append_message`, `edit_message`,
//!   `delete_message`, `react`, `advance_watermark`) checks that the user is a member inside
//!   the same transaction as the write, and answers [`StoreError::NotMember`] with nothing
//!   stored otherwise: a node's cached membership can be stale (a leave on this or another
//!   node), the store's cannot.

pub mod health;
pub mod mongo;
pub mod rules;
pub mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::model::{
    Channel, ChannelId, ChannelKind, Event, Member, Message, MessageId, Role, SessionId, User,
    UserId,
};

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("{0}")]
    Conflict(String),
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The acting user is not a member of the channel (checked in the write's transaction).
    #[error("not a member of the channel")]
    NotMember,
    /// The backing service cannot be reached or refused the write: nothing was stored.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("store error: {0}")]
    Internal(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

#[derive(Debug, Clone)]
pub struct NewUser {
    pub id: UserId,
    pub username: String,
    pub display_name: String,
    pub password_hash: String,
    pub created_at: OffsetDateTime,
}

#[derive(Debug, Clone)]
pub struct Session {
    pub id: SessionId,
    pub user_id: UserId,
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
}

#[derive(Debug, Clone)]
pub struct NewChannel {
    pub id: ChannelId,
    pub kind: ChannelKind,
    pub name: String,
    pub topic: String,
    pub created_by: UserId,
    pub created_at: OffsetDateTime,
    /// Members besides the creator (who becomes owner).
    pub member_ids: Vec<UserId>,
    /// For 1:1 and self DMs: a key that makes creation idempotent.
    pub dm_key: Option<String>,
}

#[derive(Debug, Clone)]
pub struct NewMessage {
    pub id: MessageId,
    pub channel_id: ChannelId,
    pub author_id: UserId,
    pub client_id: String,
    pub text: String,
    pub thread_root: Option<MessageId>,
    pub mentions: Vec<UserId>,
    pub created_at: OffsetDateTime,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Page {
    /// The newest messages.
    Latest,
    /// Messages with a smaller seq (older).
    Before(i64),
    /// Messages with a larger seq (newer).
    After(i64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Watermark {
    Delivered(i64),
    Read(i64),
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Registers the driver's own metrics, if it has any (the embedded store: its group
    /// commits and WAL checkpoints).
    fn register_metrics(&self, _registry: &mut prometheus_client::registry::Registry) {}
    /// Cheap round trip for readiness.
    async fn ping(&self) -> StoreResult<()>;
    /// One tiny durable write (readiness asks it while writes are failing, e.g. a full disk,
    /// to find out whether they work again).
    async fn probe_write(&self) -> StoreResult<()>;

    async fn create_user(&self, user: NewUser) -> StoreResult<User>;
    /// The user and its password hash, by case-insensitive name.
    async fn user_by_username(&self, username: &str) -> StoreResult<Option<(User, String)>>;
    async fn user(&self, id: &str) -> StoreResult<Option<User>>;
    async fn users(&self) -> StoreResult<Vec<User>>;
    /// The users among `ids` that exist, in any order, in one round trip.
    async fn users_by_ids(&self, ids: &[UserId]) -> StoreResult<Vec<User>>;
    async fn set_last_seen(&self, user_id: &str, at: OffsetDateTime) -> StoreResult<()>;

    async fn create_session(&self, session: Session) -> StoreResult<()>;
    /// The session's user if the session exists and has not expired.
    async fn session_user(
        &self,
        session_id: &str,
        now: OffsetDateTime,
    ) -> StoreResult<Option<UserId>>;
    async fn delete_session(&self, session_id: &str) -> StoreResult<()>;

    /// Creates the channel with its members (or returns the existing one with the same
    /// `dm_key`, and no events).
    async fn create_channel(&self, channel: NewChannel) -> StoreResult<(Channel, Vec<Event>)>;
    /// The user's channels and each one's current sequence (cheap: used at every connect).
    async fn memberships(&self, user_id: &str) -> StoreResult<Vec<(ChannelId, i64)>>;
    async fn channel(&self, id: &str) -> StoreResult<Option<Channel>>;
    /// The user's channels with `read_seq` and `unread`.
    async fn channels_for_user(&self, user_id: &str) -> StoreResult<Vec<Channel>>;
    async fn public_channels(&self) -> StoreResult<Vec<Channel>>;

    async fn member(&self, channel_id: &str, user_id: &str) -> StoreResult<Option<Member>>;
    async fn members(&self, channel_id: &str) -> StoreResult<Vec<Member>>;
    /// Adds a member; `None` if already a member.
    async fn add_member(
        &self,
        channel_id: &str,
        user_id: &str,
        role: Role,
        by: &str,
    ) -> StoreResult<Option<Event>>;
    /// Removes a member; `None` if not a member.
    async fn remove_member(&self, channel_id: &str, user_id: &str) -> StoreResult<Option<Event>>;

    /// Whether a write is queued the moment its future is first polled, and writes commit in
    /// the order they were queued (the SQLite driver's single writer). Then a connection may
    /// start its next send once the previous one is queued, without waiting for its commit,
    /// and the two still take their seqs in the order they were sent. `false` (the default):
    /// the next send starts only after the previous one answered.
    fn writes_commit_in_poll_order(&self) -> bool {
        false
    }

    /// Stores a message and its event. A repeated `(author_id, client_id)` returns the stored
    /// message and no event. `NotMember` (nothing stored) unless the author is a member.
    async fn append_message(&self, message: NewMessage) -> StoreResult<(Message, Option<Event>)>;
    /// Replaces the text of `author_id`'s message. `NotMember` unless the author is a member;
    /// `NotFound` for a message that is missing, deleted or someone else's.
    async fn edit_message(
        &self,
        channel_id: &str,
        message_id: &str,
        author_id: &str,
        text: &str,
        mentions: &[UserId],
        at: OffsetDateTime,
    ) -> StoreResult<Event>;
    /// Turns `author_id`'s message into a tombstone; the same checks as `edit_message`.
    async fn delete_message(
        &self,
        channel_id: &str,
        message_id: &str,
        author_id: &str,
        at: OffsetDateTime,
    ) -> StoreResult<Event>;
    /// Adds or removes a reaction; `None` when nothing changed. `NotMember` unless `user_id`
    /// is a member.
    async fn react(
        &self,
        channel_id: &str,
        message_id: &str,
        user_id: &str,
        emoji: &str,
        add: bool,
        at: OffsetDateTime,
    ) -> StoreResult<Option<Event>>;

    async fn message(&self, channel_id: &str, message_id: &str) -> StoreResult<Option<Message>>;
    /// Top-level messages, oldest first, and whether more exist beyond the page.
    async fn history(
        &self,
        channel_id: &str,
        page: Page,
        limit: usize,
    ) -> StoreResult<(Vec<Message>, bool)>;
    async fn replies(&self, channel_id: &str, root_id: &str) -> StoreResult<Vec<Message>>;
    /// The replay log: events with `seq > after`, in order, at most `limit`.
    async fn events_after(
        &self,
        channel_id: &str,
        after: i64,
        limit: usize,
    ) -> StoreResult<Vec<Event>>;

    /// Moves a member's watermark forward (never back, never past the channel's newest
    /// message; reading implies delivered). Returns the `receipt` event when `emit` is set and
    /// something moved. `NotMember` unless `user_id` is a member.
    async fn advance_watermark(
        &self,
        channel_id: &str,
        user_id: &str,
        mark: Watermark,
        emit: bool,
        at: OffsetDateTime,
    ) -> StoreResult<Option<Event>>;

    /// Moves several members' delivered watermarks in one write, each as
    /// [`Store::advance_watermark`] would (a user who is not a member is skipped). With `emit`,
    /// one event says every watermark that moved: a `receipt` when only one did, `receipts`
    /// when several did (one event per channel per flush, not one per member). The event also
    /// says the watermarks of the members in `announce`, as they are now, moved here or not:
    /// a send moves its author's watermarks without an event of its own (in the message's
    /// commit), and the channel's next flush says so.
    async fn advance_delivered(
        &self,
        channel_id: &str,
        marks: Vec<(UserId, i64)>,
        announce: Vec<UserId>,
        emit: bool,
        at: OffsetDateTime,
    ) -> StoreResult<Option<Event>>;

    /// Full-text search over non-deleted messages of channels `user_id` can read (its channels
    /// and public ones), newest first.
    async fn search(
        &self,
        user_id: &str,
        query: &str,
        channel_id: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<Message>>;
}

pub type DynStore = Arc<dyn Store>;

/// Opens the driver named by a store URL.
pub async fn open(url: &str, data_dir: &std::path::Path) -> StoreResult<DynStore> {
    match url {
        "sqlite" => Ok(Arc::new(sqlite::SqliteStore::open(
            &data_dir.join("fullslack.db"),
        )?)),
        u if u.starts_with("sqlite:") => Ok(Arc::new(sqlite::SqliteStore::open(
            std::path::Path::new(&u[7..]),
        )?)),
        u if u.starts_with("mongodb://") || u.starts_with("mongodb+srv://") => {
            Ok(mongo::MongoStore::open(u).await?)
        }
        other => Err(StoreError::Internal(format!(
            "unsupported store URL {other:?}: use `sqlite`, `sqlite:PATH` or `mongodb://…`"
        ))),
    }
}
