//! Embedded driver: SQLite in WAL mode, one file in the data directory.
//!
//! All writes go through one writer thread that commits whatever is queued in one transaction
//! (group commit: one fsync for many sends), each job inside its own savepoint so a failing job
//! does not take its neighbours down (a send needs none: every refusal of it is found before
//! its first change). A job's answer is released only after COMMIT returned, so
//! nothing is acknowledged before it is durable. Reads use a small pool of read connections on
//! the blocking thread pool; WAL lets them run beside the writer.
//!
//! | module | what it is |
//! | --- | --- |
//! | [`schema`] | the migrations (and a test upgrading an old database), and opening a connection (WAL, sync level) |
//! | [`writer`] | the write path: the writer thread, group commit, savepoints, full-text indexing once per commit; the checkpointer thread (WAL checkpoints beside the writer, not inside a COMMIT); the read pool |
//! | [`rows`] | row ↔ type mapping; a channel's events are the `events` rows merged in seq order with its `messages` rows (a message has no event row); undecodable columns are errors |
//! | [`writes`] | the write transactions (a change and its event together; a message is its own event) |
//! | [`search`] | FTS5 search |
//!
//! This file opens the store and maps each [`Store`] method onto a read or a write.

mod rows;
mod schema;
mod search;
mod writer;
mod writes;

use std::{
    path::Path,
    sync::{atomic::AtomicUsize, Arc, Mutex},
};

use async_trait::async_trait;
use prometheus_client::registry::Registry;
use rusqlite::{params, Connection, OptionalExtension};
use time::OffsetDateTime;
use tokio::sync::mpsc;

use self::{
    rows::{
        get_channel, get_message, id_col, internal, member_ids, row_channel, row_event, row_member,
        row_message, row_user, CHANNEL_COLS, MEMBER_COLS, MESSAGE_COLS, USER_COLS,
    },
    writes::{append_event, insert_member},
};
use super::{
    rules::{self, ms},
    NewChannel, NewMessage, NewUser, Page, Session, Store, StoreError, StoreResult, Watermark,
};
use crate::model::{Channel, ChannelId, Event, Member, Message, Role, User, UserId};

const READERS: usize = 4;

pub struct SqliteStore {
    writer: mpsc::UnboundedSender<writer::WriteJob>,
    /// What the writer and the checkpointer report (`/metrics`, and the tests of [`writer`]).
    stats: Arc<writer::WriterStats>,
    readers: Arc<Vec<Mutex<Connection>>>,
    next_reader: AtomicUsize,
}

impl SqliteStore {
    pub fn open(path: &Path) -> StoreResult<SqliteStore> {
        SqliteStore::open_with(path, writer::CheckpointPolicy::default())
    }

    fn open_with(path: &Path, policy: writer::CheckpointPolicy) -> StoreResult<SqliteStore> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::Unavailable(format!("cannot create {}: {e}", dir.display()))
            })?;
        }
        let mut writer = schema::open_conn(path, true)?;
        schema::migrate(&mut writer)?;
        let readers = (0..READERS)
            .map(|_| schema::open_conn(path, false).map(Mutex::new))
            .collect::<StoreResult<Vec<_>>>()?;
        let stats = Arc::new(writer::WriterStats::default());
        let checkpointer =
            writer::Checkpointer::start(schema::open_conn(path, true)?, policy, stats.clone())
                .map_err(internal)?;
        let (tx, rx) = mpsc::unbounded_channel();
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || writer::writer_loop(writer, rx, checkpointer))
            .map_err(internal)?;
        Ok(SqliteStore {
            writer: tx,
            stats,
            readers: Arc::new(readers),
            next_reader: AtomicUsize::new(0),
        })
    }
}

#[async_trait]
impl Store for SqliteStore {
    fn register_metrics(&self, registry: &mut Registry) {
        let s = &self.stats;
        for (name, help, counter) in [
            ("sqlite_commits", "Group commits of the embedded store's writer (one fsync each)", &s.commits),
            ("sqlite_commit_writes", "Writes (sends, watermarks, ...) in those commits; divided by the commits, the group size", &s.committed_writes),
            ("sqlite_checkpoints_background", "WAL checkpoints run beside the writer", &s.background),
            ("sqlite_checkpoints_by_writer", "WAL checkpoints the writer ran itself at the log's bound", &s.inline),
        ] {
            registry.register(name, help, counter.clone());
        }
        registry.register(
            "sqlite_wal_pages",
            "Pages in the write-ahead log after the last commit",
            s.wal_pages.clone(),
        );
    }

    async fn ping(&self) -> StoreResult<()> {
        self.read(|c| {
            Ok(c.query_row("SELECT 1", [], |r| r.get::<_, i64>(0))
                .map(|_| ())?)
        })
        .await
    }

    async fn probe_write(&self) -> StoreResult<()> {
        let at = ms(crate::model::now());
        self.write(move |c| {
            c.execute(
                "INSERT INTO write_probe (id, at) VALUES (1, ?1) ON CONFLICT (id) DO UPDATE SET at = ?1",
                [at],
            )?;
            Ok(())
        })
        .await
    }

    async fn create_user(&self, u: NewUser) -> StoreResult<User> {
        self.write(move |c| {
            let n = c.execute(
                "INSERT OR IGNORE INTO users (id, username, username_key, display_name, password_hash, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![u.id.as_str(), u.username, rules::username_key(&u.username), u.display_name, u.password_hash, ms(u.created_at)],
            )?;
            if n == 0 {
                return Err(StoreError::Conflict(format!("username {:?} is taken", u.username)));
            }
            Ok(rules::new_user(u))
        })
        .await
    }

    async fn user_by_username(&self, username: &str) -> StoreResult<Option<(User, String)>> {
        let key = rules::username_key(username);
        self.read(move |c| {
            Ok(c.query_row(
                &format!("SELECT {USER_COLS}, password_hash FROM users WHERE username_key = ?1"),
                [key],
                |r| Ok((row_user(r)?, r.get::<_, String>(5)?)),
            )
            .optional()?)
        })
        .await
    }

    async fn user(&self, id: &str) -> StoreResult<Option<User>> {
        let id = id.to_string();
        self.read(move |c| {
            Ok(c.query_row(
                &format!("SELECT {USER_COLS} FROM users WHERE id = ?1"),
                [id],
                row_user,
            )
            .optional()?)
        })
        .await
    }

    async fn users(&self) -> StoreResult<Vec<User>> {
        self.read(|c| {
            let mut stmt = c.prepare(&format!(
                "SELECT {USER_COLS} FROM users ORDER BY username_key"
            ))?;
            let users = stmt
                .query_map([], row_user)?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(users)
        })
        .await
    }

    async fn users_by_ids(&self, ids: &[UserId]) -> StoreResult<Vec<User>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        // One statement over a JSON array: no limit on bound parameters, one round trip.
        let list = serde_json::to_string(ids).map_err(internal)?;
        self.read(move |c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {USER_COLS} FROM users WHERE id IN (SELECT value FROM json_each(?1))"
            ))?;
            let users = stmt
                .query_map([list], row_user)?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(users)
        })
        .await
    }

    async fn set_last_seen(&self, user_id: &str, at: OffsetDateTime) -> StoreResult<()> {
        let id = user_id.to_string();
        self.write(move |c| {
            c.execute(
                "UPDATE users SET last_seen = ?2 WHERE id = ?1",
                params![id, ms(at)],
            )?;
            Ok(())
        })
        .await
    }

    async fn create_session(&self, s: Session) -> StoreResult<()> {
        self.write(move |c| {
            c.execute(
                "INSERT INTO sessions (id, user_id, created_at, expires_at) VALUES (?1, ?2, ?3, ?4)",
                params![s.id.as_str(), s.user_id.as_str(), ms(s.created_at), ms(s.expires_at)],
            )?;
            // Expired sessions are dead weight: sweep them while we are here.
            c.execute("DELETE FROM sessions WHERE expires_at < ?1", [ms(s.created_at)])?;
            Ok(())
        })
        .await
    }

    async fn session_user(
        &self,
        session_id: &str,
        now: OffsetDateTime,
    ) -> StoreResult<Option<UserId>> {
        let id = session_id.to_string();
        self.read(move |c| {
            Ok(c.query_row(
                "SELECT user_id FROM sessions WHERE id = ?1 AND expires_at > ?2",
                params![id, ms(now)],
                |r| id_col(r, 0),
            )
            .optional()?)
        })
        .await
    }

    async fn delete_session(&self, session_id: &str) -> StoreResult<()> {
        let id = session_id.to_string();
        self.write(move |c| {
            c.execute("DELETE FROM sessions WHERE id = ?1", [id])?;
            Ok(())
        })
        .await
    }

    async fn memberships(&self, user_id: &str) -> StoreResult<Vec<(ChannelId, i64)>> {
        let uid = user_id.to_string();
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT c.id, c.last_seq FROM members m JOIN channels c ON c.id = m.channel_id WHERE m.user_id = ?1",
            )?;
            let rows = stmt.query_map([uid], |r| Ok((id_col(r, 0)?, r.get(1)?)))?.collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    async fn create_channel(&self, nc: NewChannel) -> StoreResult<(Channel, Vec<Event>)> {
        self.write(move |c| writes::create_channel(c, nc)).await
    }

    async fn channel(&self, id: &str) -> StoreResult<Option<Channel>> {
        let id = id.to_string();
        self.read(move |c| get_channel(c, &id)).await
    }

    async fn channels_for_user(&self, user_id: &str) -> StoreResult<Vec<Channel>> {
        let uid = user_id.to_string();
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT c.id, c.kind, c.name, c.topic, c.created_by, c.created_at, c.last_seq, m.read_seq
                 FROM members m JOIN channels c ON c.id = m.channel_id WHERE m.user_id = ?1 ORDER BY c.created_at",
            )?;
            let rows = stmt
                .query_map([&uid], |r| Ok((row_channel(r)?, r.get::<_, i64>(7)?)))?
                .collect::<Result<Vec<_>, _>>()?;
            let mut unread_stmt = c.prepare_cached(
                "SELECT COUNT(*) FROM messages WHERE channel_id = ?1 AND thread_root IS NULL AND seq > ?2
                 AND deleted = 0 AND author_id != ?3",
            )?;
            let mut out = Vec::with_capacity(rows.len());
            for (mut ch, read_seq) in rows {
                ch.unread = Some(unread_stmt.query_row(params![ch.id.as_str(), read_seq, uid], |r| r.get(0))?);
                ch.read_seq = Some(read_seq);
                ch.member_ids = member_ids(c, &ch.id)?;
                out.push(ch);
            }
            Ok(out)
        })
        .await
    }

    async fn public_channels(&self) -> StoreResult<Vec<Channel>> {
        self.read(|c| {
            let mut stmt = c.prepare(&format!(
                "SELECT {CHANNEL_COLS} FROM channels WHERE kind = 'public' ORDER BY name"
            ))?;
            let mut chans = stmt
                .query_map([], row_channel)?
                .collect::<Result<Vec<_>, _>>()?;
            for ch in &mut chans {
                ch.member_ids = member_ids(c, &ch.id)?;
            }
            Ok(chans)
        })
        .await
    }

    async fn member(&self, channel_id: &str, user_id: &str) -> StoreResult<Option<Member>> {
        let (ch, u) = (channel_id.to_string(), user_id.to_string());
        self.read(move |c| {
            Ok(c.query_row(
                &format!(
                    "SELECT {MEMBER_COLS} FROM members WHERE channel_id = ?1 AND user_id = ?2"
                ),
                [ch, u],
                row_member,
            )
            .optional()?)
        })
        .await
    }

    async fn members(&self, channel_id: &str) -> StoreResult<Vec<Member>> {
        let ch = channel_id.to_string();
        self.read(move |c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {MEMBER_COLS} FROM members WHERE channel_id = ?1 ORDER BY joined_at, user_id"
            ))?;
            let members = stmt.query_map([ch], row_member)?.collect::<Result<Vec<_>, _>>()?;
            Ok(members)
        })
        .await
    }

    async fn add_member(
        &self,
        channel_id: &str,
        user_id: &str,
        role: Role,
        by: &str,
    ) -> StoreResult<Option<Event>> {
        let (ch, u, by) = (channel_id.to_string(), user_id.to_string(), by.to_string());
        self.write(move |c| {
            let at = crate::model::now();
            if !insert_member(c, &ch, &u, role, at)? {
                return Ok(None);
            }
            let payload = rules::member_joined(u.into(), by.into());
            Ok(Some(append_event(c, &ch, at, payload)?))
        })
        .await
    }

    async fn remove_member(&self, channel_id: &str, user_id: &str) -> StoreResult<Option<Event>> {
        let (ch, u) = (channel_id.to_string(), user_id.to_string());
        self.write(move |c| {
            let n = c.execute(
                "DELETE FROM members WHERE channel_id = ?1 AND user_id = ?2",
                [&ch, &u],
            )?;
            if n == 0 {
                return Ok(None);
            }
            let payload = rules::member_left(u.into());
            Ok(Some(append_event(c, &ch, crate::model::now(), payload)?))
        })
        .await
    }

    /// Every write goes to the writer thread's queue on its first poll (see [`Self::write`]).
    fn writes_commit_in_poll_order(&self) -> bool {
        true
    }

    async fn append_message(&self, m: NewMessage) -> StoreResult<(Message, Option<Event>)> {
        self.write_checked_first(move |c| writes::append_message(c, m))
            .await
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
        let edit = writes::Edit {
            channel_id: channel_id.to_string(),
            message_id: message_id.to_string(),
            author_id: author_id.to_string(),
            text: text.to_string(),
            mentions: mentions.to_vec(),
            at,
        };
        self.write(move |c| writes::edit_message(c, edit)).await
    }

    async fn delete_message(
        &self,
        channel_id: &str,
        message_id: &str,
        author_id: &str,
        at: OffsetDateTime,
    ) -> StoreResult<Event> {
        let (ch, id, author) = (
            channel_id.to_string(),
            message_id.to_string(),
            author_id.to_string(),
        );
        self.write(move |c| writes::delete_message(c, &ch, id, &author, at))
            .await
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
            channel_id: channel_id.to_string(),
            message_id: message_id.to_string(),
            user_id: user_id.to_string(),
            emoji: emoji.to_string(),
            add,
            at,
        };
        self.write(move |c| writes::react(c, react)).await
    }

    async fn message(&self, channel_id: &str, message_id: &str) -> StoreResult<Option<Message>> {
        let (ch, id) = (channel_id.to_string(), message_id.to_string());
        self.read(move |c| get_message(c, &ch, &id)).await
    }

    async fn history(
        &self,
        channel_id: &str,
        page: Page,
        limit: usize,
    ) -> StoreResult<(Vec<Message>, bool)> {
        let ch = channel_id.to_string();
        self.read(move |c| {
            let fetch = (limit + 1) as i64;
            let (sql, bound) = match page {
                Page::Latest => ("seq < ?2 ORDER BY seq DESC", i64::MAX),
                Page::Before(s) => ("seq < ?2 ORDER BY seq DESC", s),
                Page::After(s) => ("seq > ?2 ORDER BY seq ASC", s),
            };
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {MESSAGE_COLS} FROM messages WHERE channel_id = ?1 AND thread_root IS NULL AND {sql} LIMIT ?3"
            ))?;
            let mut msgs = stmt.query_map(params![ch, bound, fetch], row_message)?.collect::<Result<Vec<_>, _>>()?;
            let has_more = msgs.len() > limit;
            msgs.truncate(limit);
            if !matches!(page, Page::After(_)) {
                msgs.reverse();
            }
            Ok((msgs, has_more))
        })
        .await
    }

    async fn replies(&self, channel_id: &str, root_id: &str) -> StoreResult<Vec<Message>> {
        let (ch, root) = (channel_id.to_string(), root_id.to_string());
        self.read(move |c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {MESSAGE_COLS} FROM messages WHERE channel_id = ?1 AND thread_root = ?2 ORDER BY seq"
            ))?;
            let msgs = stmt.query_map([ch, root], row_message)?.collect::<Result<Vec<_>, _>>()?;
            Ok(msgs)
        })
        .await
    }

    async fn events_after(
        &self,
        channel_id: &str,
        after: i64,
        limit: usize,
    ) -> StoreResult<Vec<Event>> {
        let ch = channel_id.to_string();
        self.read(move |c| {
            let mut stmt = c.prepare_cached(&rows::EVENTS_AFTER_SQL)?;
            let events = stmt
                .query_map(params![ch, after, limit as i64], row_event)?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(events)
        })
        .await
    }

    async fn advance_watermark(
        &self,
        channel_id: &str,
        user_id: &str,
        mark: Watermark,
        emit: bool,
        at: OffsetDateTime,
    ) -> StoreResult<Option<Event>> {
        let (ch, u) = (channel_id.to_string(), user_id.to_string());
        self.write(move |c| writes::advance_watermark(c, &ch, u, mark, emit, at))
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
        let ch = channel_id.to_string();
        self.write(move |c| writes::advance_delivered(c, &ch, marks, announce, emit, at))
            .await
    }

    async fn search(
        &self,
        user_id: &str,
        query: &str,
        channel_id: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<Message>> {
        let Some(q) = search::fts_query(query) else {
            return Ok(Vec::new());
        };
        let (u, ch) = (user_id.to_string(), channel_id.map(str::to_string));
        self.read(move |c| search::search(c, q, u, ch, limit)).await
    }
}
