//! MongoDB driver (official `mongodb` crate), for deployments that run several chat server
//! nodes against one database.
//!
//! Collections: `users` (unique `username_key`), `sessions` (TTL on `expires_at` plus the
//! explicit expiry check), `channels` (`last_seq`, `last_message_seq`; unique partial indexes on
//! `dm_key` and on `name_key`, which only public and private channels carry), `members`
//! (unique `(channel_id, user_id)`), `messages` (unique `(author_id, client_id)`, index
//! `(channel_id, thread_root, seq)`), `events` (unique `(channel_id, seq)`).
//!
//! Atomicity: every write runs in a multi-document transaction when the deployment supports
//! them (a replica set or a sharded cluster, detected at start-up with `hello`), so a change and
//! its event commit together or not at all; transient transaction errors (write conflicts
//! between nodes appending to the same channel) are retried with a short random backoff. The
//! channel's next sequence number comes from a `$inc` on the channel document, which also
//! serialises concurrent writers of one channel. Against a standalone `mongod` (no
//! transactions) the same steps run one after the other; each step is an atomic single-document
//! operation (`$inc` for the sequence, `$max` for watermarks, a compare-and-set for reactions),
//! but a failure between two steps can leave a gap in the channel's log: run a replica set (a
//! one-node replica set is enough) in production.
//!
//! Membership: every channel write on behalf of a user reads the user's member document in the
//! write's session first (`require_member`); a concurrent leave conflicts with the write (both
//! touch the channel's sequence or the member document), so one of them is retried and the
//! write never lands after the leave. Without transactions only the per-node channel lock
//! orders them.
//!
//! Durability: writes use write concern `majority` with journaling, so a method returns only
//! after its change is on disk.

use std::{future::IntoFuture, sync::Arc, time::Duration};

use async_trait::async_trait;
use futures_util::TryStreamExt;
use mongodb::{
    bson::{doc, Bson, DateTime as BsonDateTime, Document},
    error::{
        Error as MongoError, ErrorKind, WriteFailure, TRANSIENT_TRANSACTION_ERROR,
        UNKNOWN_TRANSACTION_COMMIT_RESULT,
    },
    options::{Acknowledgment, ClientOptions, IndexOptions, ReturnDocument, WriteConcern},
    Client, ClientSession, Collection, Cursor, Database, IndexModel,
};
use time::OffsetDateTime;

use super::{
    rules::toggle_reaction, NewChannel, NewMessage, NewUser, Page, Session, Store, StoreError,
    StoreResult, Watermark,
};
use crate::model::{
    Channel, ChannelId, ChannelKind, DeleteData, EditData, Event, EventPayload, Member,
    MemberJoinedData, MemberLeftData, Message, Presence, Reaction, ReactionData, ReceiptData, Role,
    User, UserId,
};

/// How long to look for a usable server before answering `Unavailable`.
const SERVER_SELECTION_TIMEOUT: Duration = Duration::from_secs(3);
/// Attempts of one write transaction that keeps hitting transient errors (write conflicts).
const MAX_ATTEMPTS: u32 = 100;

/// Server error codes that mean "this node cannot take the write now" (stepping down, shutting
/// down, network trouble between nodes): nothing was stored.
const UNAVAILABLE_CODES: &[i32] = &[
    6, 7, 89, 91, 189, 262, 9001, 10107, 11600, 11602, 13435, 13436,
];
const DUPLICATE_KEY: i32 = 11000;
const WRITE_CONFLICT: i32 = 112;

pub struct MongoStore {
    client: Client,
    db: Database,
    /// Whether the deployment runs multi-document transactions (replica set / sharded).
    txn: bool,
    users: Collection<Document>,
    sessions: Collection<Document>,
    channels: Collection<Document>,
    members: Collection<Document>,
    messages: Collection<Document>,
    events: Collection<Document>,
    /// One lock per channel: writes of one node to one channel queue here instead of aborting
    /// each other's transactions with write conflicts (those remain only between nodes, and
    /// are retried).
    channel_locks: dashmap::DashMap<ChannelId, Arc<tokio::sync::Mutex<()>>>,
}

// ---- errors -------------------------------------------------------------------------------

/// A failed step inside a write: either a store-level answer or a driver error that may still
/// be retried (transient transaction errors) or mapped (duplicate keys).
#[derive(Debug)]
enum Fail {
    Store(StoreError),
    Db(MongoError),
}

impl From<MongoError> for Fail {
    fn from(e: MongoError) -> Self {
        Fail::Db(e)
    }
}

impl From<StoreError> for Fail {
    fn from(e: StoreError) -> Self {
        Fail::Store(e)
    }
}

impl From<Fail> for StoreError {
    fn from(f: Fail) -> Self {
        match f {
            Fail::Store(e) => e,
            Fail::Db(e) => classify(e),
        }
    }
}

impl Fail {
    fn is_duplicate_key(&self) -> bool {
        matches!(self, Fail::Db(e) if code_of(e) == Some(DUPLICATE_KEY))
    }

    /// Worth running the transaction again. The driver labels "no server reachable" inside a
    /// transaction as transient too; retrying that (each try waits out server selection) kept
    /// a send unanswered for minutes while the database was down, so it is refused at once.
    fn is_transient(&self) -> bool {
        !self.is_unreachable()
            && matches!(self, Fail::Db(e) if e.contains_label(TRANSIENT_TRANSACTION_ERROR)
                || code_of(e) == Some(WRITE_CONFLICT))
    }

    /// No server could be selected: the database is down or cut off.
    fn is_unreachable(&self) -> bool {
        matches!(self, Fail::Db(e) if matches!(e.kind.as_ref(), ErrorKind::ServerSelection { .. }))
    }
}

fn code_of(e: &MongoError) -> Option<i32> {
    match e.kind.as_ref() {
        ErrorKind::Command(c) => Some(c.code),
        ErrorKind::Write(WriteFailure::WriteError(w)) => Some(w.code),
        ErrorKind::Write(WriteFailure::WriteConcernError(w)) => Some(w.code),
        ErrorKind::InsertMany(m) => m
            .write_errors
            .as_ref()
            .and_then(|errs| errs.first().map(|w| w.code))
            .or_else(|| m.write_concern_error.as_ref().map(|w| w.code)),
        _ => None,
    }
}

/// Network and server-selection trouble → `Unavailable` (the caller acknowledges nothing);
/// duplicate keys → `Conflict`; anything else → `Internal`.
fn classify(e: MongoError) -> StoreError {
    let code = code_of(&e);
    let unavailable = matches!(
        e.kind.as_ref(),
        ErrorKind::Io(_)
            | ErrorKind::ServerSelection { .. }
            | ErrorKind::ConnectionPoolCleared { .. }
            | ErrorKind::DnsResolve { .. }
            | ErrorKind::Shutdown
    ) || e.contains_label(TRANSIENT_TRANSACTION_ERROR)
        || e.contains_label(UNKNOWN_TRANSACTION_COMMIT_RESULT)
        || e.contains_label("RetryableWriteError")
        || code.is_some_and(|c| UNAVAILABLE_CODES.contains(&c));
    if unavailable {
        StoreError::Unavailable(e.to_string())
    } else if code == Some(DUPLICATE_KEY) {
        StoreError::Conflict(e.to_string())
    } else {
        StoreError::Internal(e.to_string())
    }
}

// ---- document mapping ---------------------------------------------------------------------

fn ms(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

fn bdt(t: OffsetDateTime) -> BsonDateTime {
    BsonDateTime::from_millis(ms(t))
}

fn from_bdt(d: BsonDateTime) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(d.timestamp_millis()) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

fn get_s<T: From<String>>(d: &Document, k: &str) -> T {
    T::from(d.get_str(k).unwrap_or_default().to_string())
}

fn get_opt_s<T: From<String>>(d: &Document, k: &str) -> Option<T> {
    d.get_str(k).ok().map(|v| T::from(v.to_string()))
}

fn get_i(d: &Document, k: &str) -> i64 {
    match d.get(k) {
        Some(Bson::Int64(v)) => *v,
        Some(Bson::Int32(v)) => i64::from(*v),
        Some(Bson::Double(v)) => *v as i64,
        _ => 0,
    }
}

fn get_t(d: &Document, k: &str) -> OffsetDateTime {
    d.get_datetime(k)
        .map(|v| from_bdt(*v))
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

fn get_opt_t(d: &Document, k: &str) -> Option<OffsetDateTime> {
    d.get_datetime(k).ok().map(|v| from_bdt(*v))
}

fn get_strs<T: From<String>>(d: &Document, k: &str) -> Vec<T> {
    d.get_array(k)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(|v| T::from(v.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

fn strs<T: AsRef<str>>(v: &[T]) -> Bson {
    Bson::Array(
        v.iter()
            .map(|s| Bson::String(s.as_ref().to_string()))
            .collect(),
    )
}

fn reactions_bson(rs: &[Reaction]) -> Bson {
    Bson::Array(
        rs.iter()
            .map(|r| Bson::Document(doc! {"emoji": &r.emoji, "user_ids": strs(&r.user_ids)}))
            .collect(),
    )
}

fn doc_user(d: &Document) -> User {
    User {
        id: get_s(d, "_id"),
        username: get_s(d, "username"),
        display_name: get_s(d, "display_name"),
        created_at: get_t(d, "created_at"),
        last_seen: get_opt_t(d, "last_seen"),
        presence: Presence::Offline,
    }
}

fn doc_channel(d: &Document) -> Channel {
    Channel {
        id: get_s(d, "_id"),
        kind: ChannelKind::parse(d.get_str("kind").unwrap_or_default())
            .unwrap_or(ChannelKind::Private),
        name: get_s(d, "name"),
        topic: get_s(d, "topic"),
        created_by: get_s(d, "created_by"),
        created_at: get_t(d, "created_at"),
        last_seq: get_i(d, "last_seq"),
        member_ids: Vec::new(),
        read_seq: None,
        unread: None,
    }
}

fn role_str(role: Role) -> &'static str {
    if role == Role::Owner {
        "owner"
    } else {
        "member"
    }
}

fn doc_member(d: &Document) -> Member {
    Member {
        user_id: get_s(d, "user_id"),
        role: if d.get_str("role") == Ok("owner") {
            Role::Owner
        } else {
            Role::Member
        },
        joined_at: get_t(d, "joined_at"),
        read_seq: get_i(d, "read_seq"),
        delivered_seq: get_i(d, "delivered_seq"),
    }
}

fn member_doc(
    channel_id: &str,
    user_id: &str,
    role: Role,
    at: OffsetDateTime,
    seen: i64,
) -> Document {
    doc! {
        "channel_id": channel_id,
        "user_id": user_id,
        "role": role_str(role),
        "joined_at": bdt(at),
        "read_seq": seen,
        "delivered_seq": seen,
    }
}

fn doc_message(d: &Document) -> Message {
    let reactions = d
        .get_array("reactions")
        .map(|a| {
            a.iter()
                .filter_map(Bson::as_document)
                .map(|r| Reaction {
                    emoji: get_s(r, "emoji"),
                    user_ids: get_strs(r, "user_ids"),
                })
                .collect()
        })
        .unwrap_or_default();
    Message {
        id: get_s(d, "_id"),
        channel_id: get_s(d, "channel_id"),
        seq: get_i(d, "seq"),
        author_id: get_s(d, "author_id"),
        client_id: get_s(d, "client_id"),
        text: get_s(d, "text"),
        thread_root: get_opt_s(d, "thread_root"),
        reply_count: get_i(d, "reply_count"),
        created_at: get_t(d, "created_at"),
        edited_at: get_opt_t(d, "edited_at"),
        deleted: d.get_bool("deleted").unwrap_or(false),
        reactions,
        mentions: get_strs(d, "mentions"),
    }
}

fn message_doc(m: &Message) -> Document {
    doc! {
        "_id": m.id.as_str(),
        "channel_id": m.channel_id.as_str(),
        "seq": m.seq,
        "author_id": m.author_id.as_str(),
        "client_id": &m.client_id,
        "text": &m.text,
        "thread_root": m.thread_root.as_deref().map_or(Bson::Null, |r| Bson::String(r.to_string())),
        "reply_count": m.reply_count,
        "created_at": bdt(m.created_at),
        "edited_at": Bson::Null,
        "deleted": m.deleted,
        "reactions": reactions_bson(&m.reactions),
        "mentions": strs(&m.mentions),
    }
}

/// A stored event; one whose kind or payload does not decode is an error, never a default.
fn doc_event(d: &Document) -> StoreResult<Event> {
    Ok(Event {
        channel: get_s(d, "channel_id"),
        seq: get_i(d, "seq"),
        at: get_t(d, "at"),
        // The payload is stored as JSON text: it round-trips exactly (numbers stay numbers).
        payload: EventPayload::decode_stored(
            d.get_str("kind").unwrap_or_default(),
            d.get_str("data").unwrap_or_default(),
        )?,
    })
}

fn event_doc(e: &Event) -> Document {
    doc! {
        "channel_id": e.channel.as_str(),
        "seq": e.seq,
        "kind": e.kind().as_str(),
        "at": bdt(e.at),
        "data": e.payload.to_stored(),
    }
}

/// The search words of `query` (the same split as the SQLite driver's FTS query): every word
/// must occur at a word start, case-insensitively; all but the last as whole words, the last
/// as a prefix. Each word goes through `regex::escape`-style quoting, so user input is never
/// pattern syntax.
fn search_patterns(query: &str) -> Vec<String> {
    let words: Vec<&str> = query
        .split(|c: char| !c.is_alphanumeric() && c != '_' && c != '\'')
        .filter(|w| !w.is_empty())
        .collect();
    let n = words.len();
    words
        .into_iter()
        .enumerate()
        .map(|(i, w)| {
            let escaped = escape_regex(w);
            if i + 1 == n {
                format!(r"(^|[^\w']){escaped}")
            } else {
                format!(r"(^|[^\w']){escaped}($|[^\w'])")
            }
        })
        .collect()
}

/// Quotes every regex metacharacter (words only hold letters, digits, `_` and `'`, but quote
/// anyway so a change of the split can never open the pattern syntax).
fn escape_regex(w: &str) -> String {
    let mut out = String::with_capacity(w.len());
    for c in w.chars() {
        if r"\.+*?()|[]{}^$#&-~".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

// ---- transactions -------------------------------------------------------------------------

/// Runs `$body` (which uses the session `$s`) as one write: inside a transaction when the
/// deployment has them, retried on transient transaction errors. Evaluates to
/// `Result<T, Fail>`.
macro_rules! write_txn {
    ($store:expr, $s:ident => $body:expr) => {{
        let store: &MongoStore = $store;
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            let mut $s = match store.begin().await {
                Ok(s) => s,
                Err(e) => break Err(e),
            };
            let result: Result<_, Fail> = async { $body }.await;
            match result {
                Ok(v) => match store.commit(&mut $s).await {
                    Ok(()) => break Ok(v),
                    Err(e) if e.is_transient() && attempt < MAX_ATTEMPTS => {
                        backoff(attempt).await;
                    }
                    Err(e) => break Err(e),
                },
                Err(e) => {
                    // Aborting needs a server too: with none reachable it would only wait out
                    // another server selection (the session aborts itself when dropped).
                    if !e.is_unreachable() {
                        store.abort(&mut $s).await;
                    }
                    if e.is_transient() && attempt < MAX_ATTEMPTS {
                        backoff(attempt).await;
                    } else {
                        break Err(e);
                    }
                }
            }
        }
    }};
}

async fn backoff(attempt: u32) {
    let cap = 2u64 << attempt.min(6);
    tokio::time::sleep(Duration::from_millis(rand::random_range(1..=cap.max(2)))).await;
}

/// Runs a `find` and reads every document its cursor returns.
async fn all_docs(
    find: impl IntoFuture<Output = mongodb::error::Result<Cursor<Document>>>,
) -> StoreResult<Vec<Document>> {
    find.await
        .map_err(classify)?
        .try_collect()
        .await
        .map_err(classify)
}

impl MongoStore {
    /// Connects (`mongodb://…` or `mongodb+srv://…`; database from the URL path, default
    /// `fullslack`), creates the indexes, and finds out whether transactions are available.
    pub async fn open(url: &str) -> StoreResult<MongoStore> {
        let mut options = ClientOptions::parse(url).await.map_err(|e| match *e.kind {
            ErrorKind::InvalidArgument { .. } => {
                StoreError::Internal(format!("invalid MongoDB URL: {e}"))
            }
            _ => classify(e),
        })?;
        if options.server_selection_timeout.is_none() {
            options.server_selection_timeout = Some(SERVER_SELECTION_TIMEOUT);
        }
        if options.connect_timeout.is_none() {
            options.connect_timeout = Some(SERVER_SELECTION_TIMEOUT);
        }
        if options.write_concern.is_none() {
            options.write_concern = Some(
                WriteConcern::builder()
                    .w(Acknowledgment::Majority)
                    .journal(true)
                    .build(),
            );
        }
        if options.app_name.is_none() {
            options.app_name = Some("fullslack-chat".into());
        }
        let db_name = options
            .default_database
            .clone()
            .unwrap_or_else(|| "fullslack".into());
        let client = Client::with_options(options).map_err(classify)?;
        let db = client.database(&db_name);
        let hello = db.run_command(doc! {"hello": 1}).await.map_err(classify)?;
        let txn = hello.get_str("setName").is_ok() || hello.get_str("msg") == Ok("isdbgrid");
        let store = MongoStore {
            users: db.collection("users"),
            sessions: db.collection("sessions"),
            channels: db.collection("channels"),
            members: db.collection("members"),
            messages: db.collection("messages"),
            events: db.collection("events"),
            client,
            db,
            txn,
            channel_locks: dashmap::DashMap::new(),
        };
        store.create_indexes().await?;
        tracing::info!(database = %db_name, transactions = txn, "store: MongoDB ready");
        Ok(store)
    }

    async fn create_indexes(&self) -> StoreResult<()> {
        fn unique() -> IndexOptions {
            IndexOptions::builder().unique(true).build()
        }
        let specs: Vec<(&Collection<Document>, IndexModel)> = vec![
            (
                &self.users,
                IndexModel::builder()
                    .keys(doc! {"username_key": 1})
                    .options(unique())
                    .build(),
            ),
            (
                &self.sessions,
                IndexModel::builder()
                    .keys(doc! {"expires_at": 1})
                    .options(
                        IndexOptions::builder()
                            .expire_after(Duration::from_secs(0))
                            .build(),
                    )
                    .build(),
            ),
            (
                &self.channels,
                IndexModel::builder()
                    .keys(doc! {"dm_key": 1})
                    .options(
                        IndexOptions::builder()
                            .unique(true)
                            .partial_filter_expression(doc! {"dm_key": {"$type": "string"}})
                            .build(),
                    )
                    .build(),
            ),
            (
                &self.channels,
                IndexModel::builder()
                    .keys(doc! {"name_key": 1})
                    .options(
                        IndexOptions::builder()
                            .unique(true)
                            .partial_filter_expression(doc! {"name_key": {"$type": "string"}})
                            .build(),
                    )
                    .build(),
            ),
            (
                &self.channels,
                IndexModel::builder()
                    .keys(doc! {"kind": 1, "name": 1})
                    .build(),
            ),
            (
                &self.members,
                IndexModel::builder()
                    .keys(doc! {"channel_id": 1, "user_id": 1})
                    .options(unique())
                    .build(),
            ),
            (
                &self.members,
                IndexModel::builder().keys(doc! {"user_id": 1}).build(),
            ),
            (
                &self.messages,
                IndexModel::builder()
                    .keys(doc! {"author_id": 1, "client_id": 1})
                    .options(unique())
                    .build(),
            ),
            (
                &self.messages,
                IndexModel::builder()
                    .keys(doc! {"channel_id": 1, "thread_root": 1, "seq": 1})
                    .build(),
            ),
            (
                &self.events,
                IndexModel::builder()
                    .keys(doc! {"channel_id": 1, "seq": 1})
                    .options(unique())
                    .build(),
            ),
        ];
        // No text index: SecantusDB has none and `$text` cannot match word prefixes, which
        // search needs (see `search`).
        for (coll, model) in specs {
            coll.create_index(model).await.map_err(classify)?;
        }
        Ok(())
    }

    async fn lock_channel(&self, channel_id: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = self
            .channel_locks
            .entry(channel_id.into())
            .or_default()
            .clone();
        lock.lock_owned().await
    }

    async fn begin(&self) -> Result<ClientSession, Fail> {
        let mut s = self.client.start_session().await?;
        if self.txn {
            s.start_transaction().await?;
        }
        Ok(s)
    }

    async fn commit(&self, s: &mut ClientSession) -> Result<(), Fail> {
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

    async fn abort(&self, s: &mut ClientSession) {
        if self.txn {
            let _ = s.abort_transaction().await;
        }
    }

    /// Takes the channel's next sequence number (atomic `$inc`) and records the event under it.
    async fn append_event(
        &self,
        s: &mut ClientSession,
        channel_id: &str,
        at: OffsetDateTime,
        payload: EventPayload,
    ) -> Result<Event, Fail> {
        let seq = self.next_seq(s, channel_id, false).await?;
        let event = Event {
            channel: channel_id.into(),
            seq,
            at,
            payload,
        };
        self.events
            .insert_one(event_doc(&event))
            .session(&mut *s)
            .await?;
        Ok(event)
    }

    /// `$inc` of the channel's `last_seq`; for messages also moves `last_message_seq` to it.
    async fn next_seq(
        &self,
        s: &mut ClientSession,
        channel_id: &str,
        message: bool,
    ) -> Result<i64, Fail> {
        let ch = self
            .channels
            .find_one_and_update(doc! {"_id": channel_id}, doc! {"$inc": {"last_seq": 1i64}})
            .return_document(ReturnDocument::After)
            .session(&mut *s)
            .await?
            .ok_or(StoreError::NotFound("channel"))?;
        let seq = get_i(&ch, "last_seq");
        if message {
            self.channels
                .update_one(
                    doc! {"_id": channel_id},
                    doc! {"$max": {"last_message_seq": seq}},
                )
                .session(&mut *s)
                .await?;
        }
        Ok(seq)
    }

    /// `NotMember` unless `user_id` is a member of the channel, read in the write's session.
    /// With transactions the write that follows also touches the channel document (its
    /// sequence number) or the member document, which a concurrent leave writes too: one of
    /// the two transactions meets a write conflict and runs again, and a retried write sees
    /// the leave. Without transactions only this node's channel lock orders the two.
    async fn require_member(
        &self,
        s: &mut ClientSession,
        channel_id: &str,
        user_id: &str,
    ) -> Result<(), Fail> {
        self.members
            .find_one(doc! {"channel_id": channel_id, "user_id": user_id})
            .projection(doc! {"_id": 1})
            .session(&mut *s)
            .await?
            .map(|_| ())
            .ok_or(Fail::Store(StoreError::NotMember))
    }

    async fn member_ids(&self, channel_id: &str) -> StoreResult<Vec<UserId>> {
        let docs = all_docs(
            self.members
                .find(doc! {"channel_id": channel_id})
                .sort(doc! {"joined_at": 1, "user_id": 1})
                .projection(doc! {"user_id": 1}),
        )
        .await?;
        Ok(docs.iter().map(|d| get_s(d, "user_id")).collect())
    }

    async fn get_channel(&self, id: &str) -> StoreResult<Option<Channel>> {
        let Some(d) = self
            .channels
            .find_one(doc! {"_id": id})
            .await
            .map_err(classify)?
        else {
            return Ok(None);
        };
        let mut ch = doc_channel(&d);
        ch.member_ids = self.member_ids(id).await?;
        Ok(Some(ch))
    }

    async fn find_messages(
        &self,
        filter: Document,
        sort: Document,
        limit: Option<i64>,
    ) -> StoreResult<Vec<Message>> {
        let mut find = self.messages.find(filter).sort(sort);
        if let Some(l) = limit {
            find = find.limit(l);
        }
        let docs = all_docs(find).await?;
        Ok(docs.iter().map(doc_message).collect())
    }

    async fn message_by_client_id(
        &self,
        author_id: &str,
        client_id: &str,
    ) -> StoreResult<Option<Message>> {
        Ok(self
            .messages
            .find_one(doc! {"author_id": author_id, "client_id": client_id})
            .await
            .map_err(classify)?
            .map(|d| doc_message(&d)))
    }
}

#[async_trait]
impl Store for MongoStore {
    async fn ping(&self) -> StoreResult<()> {
        self.db
            .run_command(doc! {"ping": 1})
            .await
            .map_err(classify)?;
        Ok(())
    }

    async fn probe_write(&self) -> StoreResult<()> {
        // Upsert of one document: journaled with the default write concern, like every write.
        self.db
            .collection::<Document>("write_probe")
            .update_one(
                doc! {"_id": "probe"},
                doc! {"$set": {"at": bdt(crate::model::now())}},
            )
            .upsert(true)
            .await
            .map_err(classify)?;
        Ok(())
    }

    async fn create_user(&self, u: NewUser) -> StoreResult<User> {
        let d = doc! {
            "_id": u.id.as_str(),
            "username": &u.username,
            "username_key": u.username.to_lowercase(),
            "display_name": &u.display_name,
            "password_hash": &u.password_hash,
            "created_at": bdt(u.created_at),
            "last_seen": Bson::Null,
        };
        match self.users.insert_one(d).await {
            Ok(_) => Ok(User {
                id: u.id,
                username: u.username,
                display_name: u.display_name,
                created_at: u.created_at,
                last_seen: None,
                presence: Presence::Offline,
            }),
            Err(e) if code_of(&e) == Some(DUPLICATE_KEY) => Err(StoreError::Conflict(format!(
                "username {:?} is taken",
                u.username
            ))),
            Err(e) => Err(classify(e)),
        }
    }

    async fn user_by_username(&self, username: &str) -> StoreResult<Option<(User, String)>> {
        Ok(self
            .users
            .find_one(doc! {"username_key": username.to_lowercase()})
            .await
            .map_err(classify)?
            .map(|d| (doc_user(&d), get_s(&d, "password_hash"))))
    }

    async fn user(&self, id: &str) -> StoreResult<Option<User>> {
        Ok(self
            .users
            .find_one(doc! {"_id": id})
            .await
            .map_err(classify)?
            .map(|d| doc_user(&d)))
    }

    async fn users(&self) -> StoreResult<Vec<User>> {
        let docs: Vec<Document> =
            all_docs(self.users.find(doc! {}).sort(doc! {"username_key": 1})).await?;
        Ok(docs.iter().map(doc_user).collect())
    }

    async fn users_by_ids(&self, ids: &[UserId]) -> StoreResult<Vec<User>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let docs = all_docs(
            self.users
                .find(doc! {"_id": {"$in": strs(ids)}})
                .projection(doc! {"password_hash": 0}),
        )
        .await?;
        Ok(docs.iter().map(doc_user).collect())
    }

    async fn set_last_seen(&self, user_id: &str, at: OffsetDateTime) -> StoreResult<()> {
        self.users
            .update_one(doc! {"_id": user_id}, doc! {"$set": {"last_seen": bdt(at)}})
            .await
            .map_err(classify)?;
        Ok(())
    }

    async fn create_session(&self, s: Session) -> StoreResult<()> {
        self.sessions
            .insert_one(doc! {
                "_id": s.id.as_str(),
                "user_id": s.user_id.as_str(),
                "created_at": bdt(s.created_at),
                "expires_at": bdt(s.expires_at),
            })
            .await
            .map_err(classify)?;
        // The TTL index removes expired sessions eventually; sweep now like the SQLite driver.
        self.sessions
            .delete_many(doc! {"expires_at": {"$lt": bdt(s.created_at)}})
            .await
            .map_err(classify)?;
        Ok(())
    }

    async fn session_user(
        &self,
        session_id: &str,
        now: OffsetDateTime,
    ) -> StoreResult<Option<UserId>> {
        Ok(self
            .sessions
            .find_one(doc! {"_id": session_id, "expires_at": {"$gt": bdt(now)}})
            .await
            .map_err(classify)?
            .map(|d| get_s(&d, "user_id")))
    }

    async fn delete_session(&self, session_id: &str) -> StoreResult<()> {
        self.sessions
            .delete_one(doc! {"_id": session_id})
            .await
            .map_err(classify)?;
        Ok(())
    }

    async fn create_channel(&self, nc: NewChannel) -> StoreResult<(Channel, Vec<Event>)> {
        if let Some(key) = &nc.dm_key {
            if let Some(d) = self
                .channels
                .find_one(doc! {"dm_key": key})
                .await
                .map_err(classify)?
            {
                let id: String = get_s(&d, "_id");
                let ch = self
                    .get_channel(&id)
                    .await?
                    .ok_or(StoreError::NotFound("channel"))?;
                return Ok((ch, Vec::new()));
            }
        }
        let named = matches!(nc.kind, ChannelKind::Public | ChannelKind::Private);
        // Creator first (owner), then each other member once.
        let mut member_ids: Vec<UserId> = vec![nc.created_by.clone()];
        for m in &nc.member_ids {
            if !member_ids.contains(m) {
                member_ids.push(m.clone());
            }
        }
        let events: Vec<Event> = member_ids
            .iter()
            .enumerate()
            .map(|(i, m)| Event {
                channel: nc.id.clone(),
                seq: i as i64 + 1,
                at: nc.created_at,
                payload: EventPayload::MemberJoined(MemberJoinedData {
                    user_id: m.clone(),
                    by: nc.created_by.clone(),
                }),
            })
            .collect();
        let mut channel_doc = doc! {
            "_id": nc.id.as_str(),
            "kind": nc.kind.as_str(),
            "name": &nc.name,
            "topic": &nc.topic,
            "created_by": nc.created_by.as_str(),
            "created_at": bdt(nc.created_at),
            "last_seq": events.len() as i64,
            "last_message_seq": 0i64,
        };
        if let Some(key) = &nc.dm_key {
            channel_doc.insert("dm_key", key);
        }
        if named {
            channel_doc.insert("name_key", &nc.name);
        }
        let member_docs: Vec<Document> = member_ids
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let role = if i == 0 { Role::Owner } else { Role::Member };
                member_doc(&nc.id, m, role, nc.created_at, 0)
            })
            .collect();
        let event_docs: Vec<Document> = events.iter().map(event_doc).collect();
        let result = write_txn!(self, s => {
            self.channels.insert_one(channel_doc.clone()).session(&mut s).await?;
            self.members.insert_many(member_docs.clone()).session(&mut s).await?;
            self.events.insert_many(event_docs.clone()).session(&mut s).await?;
            Ok::<_, Fail>(())
        });
        match result {
            Ok(()) => {}
            Err(f) if f.is_duplicate_key() => {
                // A concurrent create with the same DM key won: answer with its channel.
                if let Some(key) = &nc.dm_key {
                    if let Some(d) = self
                        .channels
                        .find_one(doc! {"dm_key": key})
                        .await
                        .map_err(classify)?
                    {
                        let ch = self
                            .get_channel(&get_s::<String>(&d, "_id"))
                            .await?
                            .ok_or(StoreError::NotFound("channel"))?;
                        return Ok((ch, Vec::new()));
                    }
                }
                return Err(StoreError::Conflict(format!(
                    "a channel named {:?} exists",
                    nc.name
                )));
            }
            Err(f) => return Err(f.into()),
        }
        let channel = Channel {
            id: nc.id,
            kind: nc.kind,
            name: nc.name,
            topic: nc.topic,
            created_by: nc.created_by,
            created_at: nc.created_at,
            last_seq: events.len() as i64,
            member_ids,
            read_seq: None,
            unread: None,
        };
        Ok((channel, events))
    }

    async fn memberships(&self, user_id: &str) -> StoreResult<Vec<(ChannelId, i64)>> {
        let ids = self.member_channel_ids(user_id).await?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let docs = all_docs(
            self.channels
                .find(doc! {"_id": {"$in": strs(&ids)}})
                .projection(doc! {"last_seq": 1}),
        )
        .await?;
        Ok(docs
            .iter()
            .map(|d| (get_s(d, "_id"), get_i(d, "last_seq")))
            .collect())
    }

    async fn channel(&self, id: &str) -> StoreResult<Option<Channel>> {
        self.get_channel(id).await
    }

    async fn channels_for_user(&self, user_id: &str) -> StoreResult<Vec<Channel>> {
        let memberships: Vec<Document> =
            all_docs(self.members.find(doc! {"user_id": user_id})).await?;
        if memberships.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<ChannelId> = memberships.iter().map(|d| get_s(d, "channel_id")).collect();
        let docs = all_docs(
            self.channels
                .find(doc! {"_id": {"$in": strs(&ids)}})
                .sort(doc! {"created_at": 1, "_id": 1}),
        )
        .await?;
        let mut out = Vec::with_capacity(docs.len());
        for d in &docs {
            let mut ch = doc_channel(d);
            let read_seq = memberships
                .iter()
                .find(|m| get_s::<ChannelId>(m, "channel_id") == ch.id)
                .map(|m| get_i(m, "read_seq"))
                .unwrap_or(0);
            let unread = self
                .messages
                .count_documents(doc! {
                    "channel_id": ch.id.as_str(),
                    "thread_root": Bson::Null,
                    "seq": {"$gt": read_seq},
                    "deleted": false,
                    "author_id": {"$ne": user_id},
                })
                .await
                .map_err(classify)?;
            ch.unread = Some(unread as i64);
            ch.read_seq = Some(read_seq);
            ch.member_ids = self.member_ids(&ch.id).await?;
            out.push(ch);
        }
        Ok(out)
    }

    async fn public_channels(&self) -> StoreResult<Vec<Channel>> {
        let docs = all_docs(
            self.channels
                .find(doc! {"kind": "public"})
                .sort(doc! {"name": 1}),
        )
        .await?;
        let mut out = Vec::with_capacity(docs.len());
        for d in &docs {
            let mut ch = doc_channel(d);
            ch.member_ids = self.member_ids(&ch.id).await?;
            out.push(ch);
        }
        Ok(out)
    }

    async fn member(&self, channel_id: &str, user_id: &str) -> StoreResult<Option<Member>> {
        Ok(self
            .members
            .find_one(doc! {"channel_id": channel_id, "user_id": user_id})
            .await
            .map_err(classify)?
            .map(|d| doc_member(&d)))
    }

    async fn members(&self, channel_id: &str) -> StoreResult<Vec<Member>> {
        let docs = all_docs(
            self.members
                .find(doc! {"channel_id": channel_id})
                .sort(doc! {"joined_at": 1, "user_id": 1}),
        )
        .await?;
        Ok(docs.iter().map(doc_member).collect())
    }

    async fn add_member(
        &self,
        channel_id: &str,
        user_id: &str,
        role: Role,
        by: &str,
    ) -> StoreResult<Option<Event>> {
        let _guard = self.lock_channel(channel_id).await;
        let result = write_txn!(self, s => {
            let filter = doc! {"channel_id": channel_id, "user_id": user_id};
            if self.members.find_one(filter).session(&mut s).await?.is_some() {
                return Ok::<_, Fail>(None);
            }
            // Like the SQLite driver: no channel, no member (and no error).
            let Some(ch) = self
                .channels
                .find_one(doc! {"_id": channel_id})
                .session(&mut s)
                .await?
            else {
                return Ok(None);
            };
            // A new member starts having read and received everything before it joined.
            let seen = get_i(&ch, "last_message_seq");
            let at = crate::model::now();
            self.members
                .insert_one(member_doc(channel_id, user_id, role, at, seen))
                .session(&mut s)
                .await?;
            let ev = self
                .append_event(
                    &mut s,
                    channel_id,
                    at,
                    EventPayload::MemberJoined(MemberJoinedData {
                        user_id: user_id.into(),
                        by: by.into(),
                    }),
                )
                .await?;
            Ok(Some(ev))
        });
        match result {
            // A concurrent add of the same member won.
            Err(f) if f.is_duplicate_key() => Ok(None),
            other => other.map_err(StoreError::from),
        }
    }

    async fn remove_member(&self, channel_id: &str, user_id: &str) -> StoreResult<Option<Event>> {
        let _guard = self.lock_channel(channel_id).await;
        write_txn!(self, s => {
            let r = self
                .members
                .delete_one(doc! {"channel_id": channel_id, "user_id": user_id})
                .session(&mut s)
                .await?;
            if r.deleted_count == 0 {
                return Ok::<_, Fail>(None);
            }
            let ev = self
                .append_event(
                    &mut s,
                    channel_id,
                    crate::model::now(),
                    EventPayload::MemberLeft(MemberLeftData {
                        user_id: user_id.into(),
                    }),
                )
                .await?;
            Ok(Some(ev))
        })
        .map_err(StoreError::from)
    }

    async fn append_message(&self, m: NewMessage) -> StoreResult<(Message, Option<Event>)> {
        if let Some(msg) = self
            .message_by_client_id(&m.author_id, &m.client_id)
            .await?
        {
            return Ok((msg, None));
        }
        let _guard = self.lock_channel(&m.channel_id).await;
        let result = write_txn!(self, s => {
            self.require_member(&mut s, &m.channel_id, &m.author_id).await?;
            if let Some(root) = &m.thread_root {
                let r = self
                    .messages
                    .update_one(
                        doc! {
                            "_id": root.as_str(),
                            "channel_id": m.channel_id.as_str(),
                            "thread_root": Bson::Null,
                            "deleted": false,
                        },
                        doc! {"$inc": {"reply_count": 1i64}},
                    )
                    .session(&mut s)
                    .await?;
                if r.matched_count == 0 {
                    return Err(Fail::Store(StoreError::NotFound("thread root message")));
                }
            }
            // Take the seq first so the stored message and its event agree on it.
            let seq = self.next_seq(&mut s, &m.channel_id, true).await?;
            let msg = Message {
                id: m.id.clone(),
                channel_id: m.channel_id.clone(),
                seq,
                author_id: m.author_id.clone(),
                client_id: m.client_id.clone(),
                text: m.text.clone(),
                thread_root: m.thread_root.clone(),
                reply_count: 0,
                created_at: m.created_at,
                edited_at: None,
                deleted: false,
                reactions: Vec::new(),
                mentions: m.mentions.clone(),
            };
            self.messages
                .insert_one(message_doc(&msg))
                .session(&mut s)
                .await?;
            let event = Event {
                channel: msg.channel_id.clone(),
                seq,
                at: msg.created_at,
                payload: EventPayload::Message(msg.clone()),
            };
            self.events
                .insert_one(event_doc(&event))
                .session(&mut s)
                .await?;
            // The author has obviously seen its own message.
            self.members
                .update_one(
                    doc! {"channel_id": msg.channel_id.as_str(), "user_id": msg.author_id.as_str()},
                    doc! {"$max": {"read_seq": seq, "delivered_seq": seq}},
                )
                .session(&mut s)
                .await?;
            Ok::<_, Fail>((msg, Some(event)))
        });
        match result {
            Err(f) if f.is_duplicate_key() => {
                // A concurrent send with the same (author_id, client_id) won: answer with it.
                match self
                    .message_by_client_id(&m.author_id, &m.client_id)
                    .await?
                {
                    Some(msg) => Ok((msg, None)),
                    None => Err(f.into()),
                }
            }
            other => other.map_err(StoreError::from),
        }
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
        let _guard = self.lock_channel(channel_id).await;
        write_txn!(self, s => {
            self.require_member(&mut s, channel_id, author_id).await?;
            let r = self
                .messages
                .update_one(
                    doc! {"_id": message_id, "channel_id": channel_id, "author_id": author_id, "deleted": false},
                    doc! {"$set": {"text": text, "mentions": strs(mentions), "edited_at": bdt(at)}},
                )
                .session(&mut s)
                .await?;
            if r.matched_count == 0 {
                return Err(Fail::Store(StoreError::NotFound("message")));
            }
            self.append_event(
                &mut s,
                channel_id,
                at,
                EventPayload::Edit(EditData {
                    message_id: message_id.into(),
                    text: text.to_string(),
                    edited_at: at,
                    mentions: mentions.to_vec(),
                }),
            )
            .await
        })
        .map_err(StoreError::from)
    }

    async fn delete_message(
        &self,
        channel_id: &str,
        message_id: &str,
        author_id: &str,
        at: OffsetDateTime,
    ) -> StoreResult<Event> {
        let _guard = self.lock_channel(channel_id).await;
        write_txn!(self, s => {
            self.require_member(&mut s, channel_id, author_id).await?;
            let r = self
                .messages
                .update_one(
                    doc! {"_id": message_id, "channel_id": channel_id, "author_id": author_id, "deleted": false},
                    doc! {"$set": {"deleted": true, "text": "", "reactions": [], "mentions": []}},
                )
                .session(&mut s)
                .await?;
            if r.matched_count == 0 {
                return Err(Fail::Store(StoreError::NotFound("message")));
            }
            self.append_event(
                &mut s,
                channel_id,
                at,
                EventPayload::Delete(DeleteData {
                    message_id: message_id.into(),
                }),
            )
            .await
        })
        .map_err(StoreError::from)
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
        let user = user_id.to_string();
        let _guard = self.lock_channel(channel_id).await;
        write_txn!(self, s => {
            self.require_member(&mut s, channel_id, &user).await?;
            // Compare-and-set on the reaction list: a concurrent change makes the update match
            // nothing, and the loop reads again (needed without transactions; harmless with).
            loop {
                let d = self
                    .messages
                    .find_one(doc! {"_id": message_id, "channel_id": channel_id})
                    .session(&mut s)
                    .await?
                    .ok_or(StoreError::NotFound("message"))?;
                let msg = doc_message(&d);
                if msg.deleted {
                    return Err(Fail::Store(StoreError::NotFound("message")));
                }
                let before = d.get("reactions").cloned().unwrap_or(Bson::Array(Vec::new()));
                let mut reactions = msg.reactions;
                if !toggle_reaction(&mut reactions, emoji, &user, add) {
                    return Ok::<_, Fail>(None);
                }
                let r = self
                    .messages
                    .update_one(
                        doc! {"_id": message_id, "channel_id": channel_id, "deleted": false, "reactions": before},
                        doc! {"$set": {"reactions": reactions_bson(&reactions)}},
                    )
                    .session(&mut s)
                    .await?;
                if r.matched_count == 0 {
                    continue;
                }
                let ev = self
                    .append_event(
                        &mut s,
                        channel_id,
                        at,
                        EventPayload::Reaction(ReactionData {
                            message_id: message_id.into(),
                            emoji: emoji.to_string(),
                            user_id: user.as_str().into(),
                            added: add,
                        }),
                    )
                    .await?;
                return Ok(Some(ev));
            }
        })
        .map_err(StoreError::from)
    }

    async fn message(&self, channel_id: &str, message_id: &str) -> StoreResult<Option<Message>> {
        Ok(self
            .messages
            .find_one(doc! {"_id": message_id, "channel_id": channel_id})
            .await
            .map_err(classify)?
            .map(|d| doc_message(&d)))
    }

    async fn history(
        &self,
        channel_id: &str,
        page: Page,
        limit: usize,
    ) -> StoreResult<(Vec<Message>, bool)> {
        let (cond, order) = match page {
            Page::Latest => (doc! {"$lt": i64::MAX}, -1),
            Page::Before(s) => (doc! {"$lt": s}, -1),
            Page::After(s) => (doc! {"$gt": s}, 1),
        };
        let mut msgs = self
            .find_messages(
                doc! {"channel_id": channel_id, "thread_root": Bson::Null, "seq": cond},
                doc! {"seq": order},
                Some(limit as i64 + 1),
            )
            .await?;
        let has_more = msgs.len() > limit;
        msgs.truncate(limit);
        if order < 0 {
            msgs.reverse();
        }
        Ok((msgs, has_more))
    }

    async fn replies(&self, channel_id: &str, root_id: &str) -> StoreResult<Vec<Message>> {
        self.find_messages(
            doc! {"channel_id": channel_id, "thread_root": root_id},
            doc! {"seq": 1},
            None,
        )
        .await
    }

    async fn events_after(
        &self,
        channel_id: &str,
        after: i64,
        limit: usize,
    ) -> StoreResult<Vec<Event>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let docs = all_docs(
            self.events
                .find(doc! {"channel_id": channel_id, "seq": {"$gt": after}})
                .sort(doc! {"seq": 1})
                .limit(limit as i64),
        )
        .await?;
        docs.iter().map(doc_event).collect()
    }

    async fn advance_watermark(
        &self,
        channel_id: &str,
        user_id: &str,
        mark: Watermark,
        emit: bool,
        at: OffsetDateTime,
    ) -> StoreResult<Option<Event>> {
        let _guard = self.lock_channel(channel_id).await;
        write_txn!(self, s => {
            let filter = doc! {"channel_id": channel_id, "user_id": user_id};
            let member = self
                .members
                .find_one(filter.clone())
                .session(&mut s)
                .await?
                .ok_or(StoreError::NotMember)?;
            let ch = self
                .channels
                .find_one(doc! {"_id": channel_id})
                .session(&mut s)
                .await?
                .ok_or(StoreError::NotMember)?;
            let (delivered, read) = (get_i(&member, "delivered_seq"), get_i(&member, "read_seq"));
            let last_message = get_i(&ch, "last_message_seq");
            // Watermarks only point at messages: receipts about receipts would never end.
            let (new_delivered, new_read) = match mark {
                Watermark::Delivered(s) => (delivered.max(s.min(last_message)), read),
                Watermark::Read(s) => {
                    let r = read.max(s.min(last_message));
                    (delivered.max(r), r)
                }
            };
            if (new_delivered, new_read) == (delivered, read) {
                return Ok::<_, Fail>(None);
            }
            // `$max`: never backwards, even against a concurrent writer without transactions.
            self.members
                .update_one(
                    filter,
                    doc! {"$max": {"delivered_seq": new_delivered, "read_seq": new_read}},
                )
                .session(&mut s)
                .await?;
            if !emit {
                return Ok(None);
            }
            let ev = self
                .append_event(
                    &mut s,
                    channel_id,
                    at,
                    EventPayload::Receipt(ReceiptData {
                        user_id: user_id.into(),
                        delivered_seq: new_delivered,
                        read_seq: new_read,
                    }),
                )
                .await?;
            Ok(Some(ev))
        })
        .map_err(StoreError::from)
    }

    /// `$text` is not used: it matches whole (stemmed) words only, while search must match the
    /// last word as a prefix (search as you type), and SecantusDB (the test stand-in) has no text
    /// indexes at all. Instead every word is a case-insensitive regex anchored at a word start,
    /// built from escaped words (user input is never pattern syntax), over the readable channels
    /// only (the `channel_id` part of the filter uses an index).
    async fn search(
        &self,
        user_id: &str,
        query: &str,
        channel_id: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<Message>> {
        let patterns = search_patterns(query);
        if patterns.is_empty() || limit == 0 {
            return Ok(Vec::new());
        }
        let mut readable = self.member_channel_ids(user_id).await?;
        let public = all_docs(
            self.channels
                .find(doc! {"kind": "public"})
                .projection(doc! {"_id": 1}),
        )
        .await?;
        for d in &public {
            let id = get_s(d, "_id");
            if !readable.contains(&id) {
                readable.push(id);
            }
        }
        if let Some(ch) = channel_id {
            readable.retain(|id| id == ch);
        }
        if readable.is_empty() {
            return Ok(Vec::new());
        }
        let words: Vec<Bson> = patterns
            .into_iter()
            .map(|p| Bson::Document(doc! {"text": {"$regex": p, "$options": "i"}}))
            .collect();
        // Ids are UUIDv7 strings: newest first is descending `_id`.
        self.find_messages(
            doc! {
                "channel_id": {"$in": strs(&readable)},
                "deleted": false,
                "$and": words,
            },
            doc! {"_id": -1},
            Some(limit as i64),
        )
        .await
    }
}

impl MongoStore {
    async fn member_channel_ids(&self, user_id: &str) -> StoreResult<Vec<ChannelId>> {
        let docs = all_docs(
            self.members
                .find(doc! {"user_id": user_id})
                .projection(doc! {"channel_id": 1}),
        )
        .await?;
        Ok(docs.iter().map(|d| get_s(d, "channel_id")).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::search_patterns;

    #[test]
    fn search_input_never_reaches_regex_syntax() {
        assert_eq!(
            search_patterns("hello world"),
            [r"(^|[^\w'])hello($|[^\w'])", r"(^|[^\w'])world"]
        );
        assert_eq!(
            search_patterns("a\" OR (x.*"),
            [
                r"(^|[^\w'])a($|[^\w'])",
                r"(^|[^\w'])OR($|[^\w'])",
                r"(^|[^\w'])x"
            ]
        );
        assert!(search_patterns("  ** () ").is_empty());
    }
}
