//! MongoDB driver (official `mongodb` crate), for deployments that run several chat server
//! nodes against one database.
//!
//! Collections: `users` (unique `username_key`), `sessions` (TTL on `expires_at` plus the
//! explicit expiry check), `channels` (`last_seq`, `last_message_seq`; unique partial indexes on
//! `dm_key` and on `name_key`, which only public and private channels carry), `members`
//! (unique `(channel_id, user_id)`), `messages` (unique `(author_id, client_id)` and
//! `(channel_id, seq)`, index `(channel_id, thread_root, seq)`), `events` (unique `(channel_id,
//! seq)`), `store_nodes` (one document per running node: its heartbeat and its sessions, see
//! [`orphans`]). A channel's replay log is its message documents (each is its own `message`
//! event) merged with its other events (`events`; a `message` event stored there by a server
//! before issue 15 is a copy of a message document, and is skipped).
//!
//! Atomicity: every write runs in a multi-document transaction when the deployment supports
//! them (a replica set or a sharded cluster, detected at start-up with `hello`), so a change and
//! its event commit together or not at all; transient transaction errors (write conflicts
//! between nodes appending to the same channel) are retried with a short random backoff, for up
//! to [`txn::RETRY_FOR`]. A node that dies inside a transaction leaves it open, holding what it
//! wrote; the other nodes end it (see [`orphans`]) instead of waiting the server's 60 s.
//! Sends and watermarks go through one committer per node ([`batch`]): one transaction per
//! batch of them, a handful of commands whatever the batch's size. The other channel writes
//! take the channel's next sequence number with a `$inc` on the channel document. Either way
//! concurrent writers of one channel (nodes, or a batch and an edit) write the channel
//! document, so one of them meets a write conflict and runs again. Against a standalone
//! `mongod` (no transactions) the same steps run one after the other; each step is an atomic
//! single-document operation (`$inc` or a compare-and-set for the sequence, `$max` for
//! watermarks, a compare-and-set for reactions), but a failure between two steps can leave a
//! gap in the channel's log: run a replica set (a one-node replica set is enough) in
//! production.
//!
//! Membership: every channel write on behalf of a user reads the user's member document in the
//! write's session first (`require_member`; a batch reads all of its members at once); a
//! concurrent leave conflicts with the write (both touch the channel's sequence or the member
//! document), so one of them is retried and the write never lands after the leave. Without
//! transactions only the per-node channel lock orders them.
//!
//! Durability: writes use write concern `majority` with journaling, so a method returns only
//! after its change is on disk.
//!
//! | module | what it is |
//! | --- | --- |
//! | [`documents`] | the typed document of each collection, and its conversion to wire types |
//! | [`schema`] | the indexes |
//! | [`errors`] | driver errors → store answers (unavailable, conflict, retryable, undecodable) |
//! | [`txn`] | transactions and retries; the steps channel writes share (membership, sequence, event) |
//! | [`batch`] | group commit of sends and watermarks: the committer task, one transaction per batch |
//! | [`orphans`] | node heartbeats and recorded sessions: ending the open transactions of a crashed node |
//! | [`writes`] | the channel writes |
//! | [`reads`] | the reads that assemble channels, and the shared finds |
//! | [`search`] | regex word search |
//!
//! This file connects and maps each [`Store`] method onto them.

mod batch;
mod documents;
mod errors;
mod orphans;
mod reads;
mod schema;
mod search;
mod txn;
mod writes;

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use mongodb::{
    bson::{doc, Document},
    error::ErrorKind,
    options::{Acknowledgment, ClientOptions, WriteConcern},
    Client, Collection, Database,
};
use time::OffsetDateTime;

use self::{
    documents::{bdt, ChannelDoc, EventDoc, MemberDoc, MessageDoc, SessionDoc, UserDoc},
    errors::{classify, code_of, read_error, DUPLICATE_KEY},
    reads::all,
};
use super::{
    rules, NewChannel, NewMessage, NewUser, Page, Session, Store, StoreError, StoreResult,
    Watermark,
};
use crate::model::{
    Channel, ChannelId, Event, EventKind, EventPayload, Member, Message, Role, User, UserId,
};

/// How long to look for a usable server before answering `Unavailable`.
const SERVER_SELECTION_TIMEOUT: Duration = Duration::from_secs(3);

pub struct MongoStore {
    client: Client,
    db: Database,
    /// Whether the deployment runs multi-document transactions (replica set / sharded).
    txn: bool,
    users: Collection<UserDoc>,
    sessions: Collection<SessionDoc>,
    channels: Collection<ChannelDoc>,
    members: Collection<MemberDoc>,
    messages: Collection<MessageDoc>,
    events: Collection<EventDoc>,
    /// One lock per channel: writes of one node to one channel queue here instead of aborting
    /// each other's transactions with write conflicts (those remain only between nodes, and
    /// are retried).
    channel_locks: dashmap::DashMap<ChannelId, Arc<tokio::sync::Mutex<()>>>,
    /// With transactions: this node's heartbeat and recorded sessions, and the ending of dead
    /// nodes' transactions.
    orphans: Option<Arc<orphans::Orphans>>,
    /// Sends and watermarks, to the committer task ([`batch`]).
    queue: tokio::sync::mpsc::Sender<batch::Op>,
}

impl MongoStore {
    /// Connects (`mongodb://…` or `mongodb+srv://…`; database from the URL path, default
    /// `fullslack`), creates the indexes, and finds out whether transactions are available.
    pub async fn open(url: &str) -> StoreResult<Arc<MongoStore>> {
        let options = ClientOptions::parse(url).await.map_err(|e| match *e.kind {
            ErrorKind::InvalidArgument { .. } => {
                StoreError::Internal(format!("invalid MongoDB URL: {e}"))
            }
            _ => classify(e),
        })?;
        Self::open_with_options(options).await
    }

    /// [`MongoStore::open`] with the driver's options given (tests set a command monitor).
    pub async fn open_with_options(mut options: ClientOptions) -> StoreResult<Arc<MongoStore>> {
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
        let orphans = if txn {
            let admin = client.database("admin");
            Some(
                orphans::Orphans::start(&db, admin)
                    .await
                    .map_err(classify)?,
            )
        } else {
            None
        };
        let store = Arc::new_cyclic(|store| {
            let (queue, queued) = tokio::sync::mpsc::channel(batch::QUEUE);
            tokio::spawn(batch::committer(store.clone(), queued));
            MongoStore {
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
                orphans,
                queue,
            }
        });
        store.create_indexes().await?;
        tracing::info!(database = %db_name, transactions = txn, "store: MongoDB ready");
        Ok(store)
    }
}

/// The ids as a BSON array of strings (for `$in`).
fn id_list<T: AsRef<str>>(ids: &[T]) -> Vec<&str> {
    ids.iter().map(AsRef::as_ref).collect()
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
        let d = UserDoc {
            id: u.id.clone(),
            username: u.username.clone(),
            username_key: rules::username_key(&u.username),
            display_name: u.display_name.clone(),
            password_hash: Some(u.password_hash.clone()),
            created_at: bdt(u.created_at),
            last_seen: None,
        };
        match self.users.insert_one(d).await {
            Ok(_) => Ok(rules::new_user(u)),
            Err(e) if code_of(&e) == Some(DUPLICATE_KEY) => Err(StoreError::Conflict(format!(
                "username {:?} is taken",
                u.username
            ))),
            Err(e) => Err(classify(e)),
        }
    }

    async fn user_by_username(&self, username: &str) -> StoreResult<Option<(User, String)>> {
        let found = self
            .users
            .find_one(doc! {"username_key": rules::username_key(username)})
            .await
            .map_err(read_error("users"))?;
        Ok(found.map(UserDoc::into_user_and_hash).transpose()?)
    }

    async fn user(&self, id: &str) -> StoreResult<Option<User>> {
        let found = self
            .users
            .find_one(doc! {"_id": id})
            .await
            .map_err(read_error("users"))?;
        Ok(found.map(UserDoc::into_user).transpose()?)
    }

    async fn users(&self) -> StoreResult<Vec<User>> {
        let docs = all(
            "users",
            self.users.find(doc! {}).sort(doc! {"username_key": 1}),
        )
        .await?;
        Ok(docs
            .into_iter()
            .map(UserDoc::into_user)
            .collect::<Result<_, _>>()?)
    }

    async fn users_by_ids(&self, ids: &[UserId]) -> StoreResult<Vec<User>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let docs = all(
            "users",
            self.users
                .find(doc! {"_id": {"$in": id_list(ids)}})
                .projection(doc! {"password_hash": 0}),
        )
        .await?;
        Ok(docs
            .into_iter()
            .map(UserDoc::into_user)
            .collect::<Result<_, _>>()?)
    }

    async fn set_last_seen(&self, user_id: &str, at: OffsetDateTime) -> StoreResult<()> {
        self.users
            .update_one(doc! {"_id": user_id}, doc! {"$set": {"last_seen": bdt(at)}})
            .await
            .map_err(classify)?;
        Ok(())
    }

    async fn create_session(&self, s: Session) -> StoreResult<()> {
        let d = SessionDoc {
            id: s.id.as_str().to_string(),
            user_id: s.user_id,
            created_at: bdt(s.created_at),
            expires_at: bdt(s.expires_at),
        };
        self.sessions.insert_one(d).await.map_err(classify)?;
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
        let found = self
            .sessions
            .find_one(doc! {"_id": session_id, "expires_at": {"$gt": bdt(now)}})
            .await
            .map_err(read_error("sessions"))?;
        Ok(found.map(|d| d.user_id))
    }

    async fn delete_session(&self, session_id: &str) -> StoreResult<()> {
        self.sessions
            .delete_one(doc! {"_id": session_id})
            .await
            .map_err(classify)?;
        Ok(())
    }

    async fn create_channel(&self, nc: NewChannel) -> StoreResult<(Channel, Vec<Event>)> {
        writes::create_channel(self, nc).await
    }

    async fn memberships(&self, user_id: &str) -> StoreResult<Vec<(ChannelId, i64)>> {
        self.channel_seqs(user_id).await
    }

    async fn channel(&self, id: &str) -> StoreResult<Option<Channel>> {
        self.get_channel(id).await
    }

    async fn channels_for_user(&self, user_id: &str) -> StoreResult<Vec<Channel>> {
        self.user_channels(user_id).await
    }

    async fn public_channels(&self) -> StoreResult<Vec<Channel>> {
        self.public_channel_list().await
    }

    async fn member(&self, channel_id: &str, user_id: &str) -> StoreResult<Option<Member>> {
        let found = self
            .members
            .find_one(doc! {"channel_id": channel_id, "user_id": user_id})
            .await
            .map_err(read_error("members"))?;
        Ok(found.map(MemberDoc::into_member).transpose()?)
    }

    async fn members(&self, channel_id: &str) -> StoreResult<Vec<Member>> {
        let docs = all(
            "members",
            self.members
                .find(doc! {"channel_id": channel_id})
                .sort(doc! {"joined_at": 1, "user_id": 1}),
        )
        .await?;
        Ok(docs
            .into_iter()
            .map(MemberDoc::into_member)
            .collect::<Result<_, _>>()?)
    }

    async fn add_member(
        &self,
        channel_id: &str,
        user_id: &str,
        role: Role,
        by: &str,
    ) -> StoreResult<Option<Event>> {
        writes::add_member(self, channel_id, user_id, role, by).await
    }

    async fn remove_member(&self, channel_id: &str, user_id: &str) -> StoreResult<Option<Event>> {
        writes::remove_member(self, channel_id, user_id).await
    }

    /// Sends and watermarks are queued on their first poll, and the committer commits them in
    /// queue order ([`batch`]).
    fn writes_commit_in_poll_order(&self) -> bool {
        true
    }

    async fn append_message(&self, message: NewMessage) -> StoreResult<(Message, Option<Event>)> {
        batch::submit(&self.queue, |reply| batch::Op::Append { message, reply }).await
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
        let edit = writes::Change::Edit { text, mentions };
        writes::change_message(self, channel_id, message_id, author_id, edit, at).await
    }

    async fn delete_message(
        &self,
        channel_id: &str,
        message_id: &str,
        author_id: &str,
        at: OffsetDateTime,
    ) -> StoreResult<Event> {
        let delete = writes::Change::Delete;
        writes::change_message(self, channel_id, message_id, author_id, delete, at).await
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
        let react = writes::React {
            channel_id,
            message_id,
            user_id,
            emoji,
            add,
            at,
        };
        writes::react(self, react).await
    }

    async fn message(&self, channel_id: &str, message_id: &str) -> StoreResult<Option<Message>> {
        let found = self
            .messages
            .find_one(doc! {"_id": message_id, "channel_id": channel_id})
            .await
            .map_err(read_error("messages"))?;
        Ok(found.map(MessageDoc::into_message).transpose()?)
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
                doc! {"channel_id": channel_id, "thread_root": mongodb::bson::Bson::Null, "seq": cond},
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
        // The log is the channel's messages (each its own event) merged with its other
        // events: the first `limit` of each, both queries at once.
        let n = i64::try_from(limit).unwrap_or(i64::MAX);
        let messages = self.find_messages(
            doc! {"channel_id": channel_id, "seq": {"$gt": after}},
            doc! {"seq": 1},
            Some(n),
        );
        let others = async {
            let docs = all(
                "events",
                self.events
                    .find(doc! {
                        "channel_id": channel_id,
                        "seq": {"$gt": after},
                        // Copies of message documents, written before issue 15.
                        "kind": {"$ne": EventKind::Message.as_str()},
                    })
                    .sort(doc! {"seq": 1})
                    .limit(n),
            )
            .await?;
            docs.into_iter()
                .map(|d| EventDoc::into_event(d).map_err(StoreError::from))
                .collect::<StoreResult<Vec<Event>>>()
        };
        let (messages, others) = futures_util::try_join!(messages, others)?;
        let messages = messages.into_iter().map(|m| Event {
            channel: m.channel_id.clone(),
            seq: m.seq,
            at: m.created_at,
            payload: EventPayload::Message(m),
        });
        let mut log: Vec<Event> = messages.chain(others).collect();
        log.sort_by_key(|e| e.seq);
        log.truncate(limit);
        Ok(log)
    }

    async fn advance_watermark(
        &self,
        channel_id: &str,
        user_id: &str,
        mark: Watermark,
        emit: bool,
        at: OffsetDateTime,
    ) -> StoreResult<Option<Event>> {
        let marks = vec![(user_id.into(), mark)];
        batch::submit(&self.queue, |reply| batch::Op::Marks {
            channel_id: channel_id.into(),
            marks,
            announce: Vec::new(),
            strict: true,
            emit,
            at,
            reply,
        })
        .await
    }

    async fn advance_delivered(
        &self,
        channel_id: &str,
        marks: Vec<(UserId, i64)>,
        announce: Vec<UserId>,
        emit: bool,
        at: OffsetDateTime,
    ) -> StoreResult<Option<Event>> {
        let marks = marks
            .into_iter()
            .map(|(user_id, seq)| (user_id, Watermark::Delivered(seq)))
            .collect();
        batch::submit(&self.queue, |reply| batch::Op::Marks {
            channel_id: channel_id.into(),
            marks,
            announce,
            strict: false,
            emit,
            at,
            reply,
        })
        .await
    }

    async fn search(
        &self,
        user_id: &str,
        query: &str,
        channel_id: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<Message>> {
        let patterns = search::search_patterns(query);
        if patterns.is_empty() || limit == 0 {
            return Ok(Vec::new());
        }
        self.search_messages(user_id, patterns, channel_id, limit)
            .await
    }
}
