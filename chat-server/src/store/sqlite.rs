//! Embedded driver: SQLite in WAL mode, one file in the data directory.
//!
//! All writes go through one writer thread that commits whatever is queued in one transaction
//! (group commit: one fsync for many sends), each job inside its own savepoint so a failing job
//! does not take its neighbours down. A job's answer is released only after COMMIT returned, so
//! nothing is acknowledged before it is durable. Reads use a small pool of read connections on
//! the blocking thread pool; WAL lets them run beside the writer.

use std::{
    path::Path,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
};

use async_trait::async_trait;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension, Row};
use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot};

use super::{
    toggle_reaction, NewChannel, NewMessage, NewUser, Page, Session, Store, StoreError,
    StoreResult, Watermark,
};
use crate::model::{
    Channel, ChannelId, ChannelKind, DeleteData, EditData, Event, EventPayload, Member,
    MemberJoinedData, MemberLeftData, Message, Presence, ReactionData, ReceiptData, Role, User,
    UserId,
};

const READERS: usize = 4;
const MAX_BATCH: usize = 512;

/// Schema migrations, applied in order; `PRAGMA user_version` records how many ran.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE users (
    id TEXT PRIMARY KEY,
    username TEXT NOT NULL,
    username_key TEXT NOT NULL UNIQUE,
    display_name TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    last_seen INTEGER
);
CREATE TABLE sessions (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE TABLE channels (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    topic TEXT NOT NULL DEFAULT '',
    created_by TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    last_seq INTEGER NOT NULL DEFAULT 0,
    last_message_seq INTEGER NOT NULL DEFAULT 0,
    dm_key TEXT UNIQUE
);
CREATE UNIQUE INDEX channels_by_name ON channels(name) WHERE kind IN ('public', 'private');
CREATE TABLE members (
    channel_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    role TEXT NOT NULL,
    joined_at INTEGER NOT NULL,
    read_seq INTEGER NOT NULL DEFAULT 0,
    delivered_seq INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (channel_id, user_id)
) WITHOUT ROWID;
CREATE INDEX members_by_user ON members(user_id, channel_id);
CREATE TABLE messages (
    rowid INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    channel_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    author_id TEXT NOT NULL,
    client_id TEXT NOT NULL,
    text TEXT NOT NULL,
    thread_root TEXT,
    reply_count INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    edited_at INTEGER,
    deleted INTEGER NOT NULL DEFAULT 0,
    mentions TEXT NOT NULL DEFAULT '[]',
    reactions TEXT NOT NULL DEFAULT '[]'
);
CREATE UNIQUE INDEX messages_by_client_id ON messages(author_id, client_id);
CREATE INDEX messages_by_thread ON messages(channel_id, thread_root, seq);
CREATE TABLE events (
    channel_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    kind TEXT NOT NULL,
    at INTEGER NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (channel_id, seq)
) WITHOUT ROWID;
CREATE VIRTUAL TABLE messages_fts USING fts5(text, content='messages', content_rowid='rowid');
CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN
    INSERT INTO messages_fts(rowid, text) VALUES (new.rowid, new.text);
END;
CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN
    INSERT INTO messages_fts(messages_fts, rowid, text) VALUES ('delete', old.rowid, old.text);
END;
CREATE TRIGGER messages_fts_update AFTER UPDATE OF text ON messages BEGIN
    INSERT INTO messages_fts(messages_fts, rowid, text) VALUES ('delete', old.rowid, old.text);
    INSERT INTO messages_fts(rowid, text) VALUES (new.rowid, new.text);
END;
"#,
    // One row that readiness rewrites to find out whether writes work (`probe_write`).
    "CREATE TABLE write_probe (id INTEGER PRIMARY KEY CHECK (id = 1), at INTEGER NOT NULL);",
];

type Completion = Box<dyn FnOnce(Result<(), StoreError>) + Send>;
type WriteJob = Box<dyn FnOnce(&Connection) -> Completion + Send>;

pub struct SqliteStore {
    writer: mpsc::UnboundedSender<WriteJob>,
    readers: Arc<Vec<Mutex<Connection>>>,
    next_reader: AtomicUsize,
}

fn internal(e: impl std::fmt::Display) -> StoreError {
    StoreError::Internal(e.to_string())
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        match e {
            rusqlite::Error::SqliteFailure(f, _)
                if matches!(
                    f.code,
                    rusqlite::ErrorCode::DiskFull
                        | rusqlite::ErrorCode::CannotOpen
                        | rusqlite::ErrorCode::DatabaseBusy
                        | rusqlite::ErrorCode::DatabaseLocked
                        | rusqlite::ErrorCode::ReadOnly
                        | rusqlite::ErrorCode::SystemIoFailure
                ) =>
            {
                StoreError::Unavailable(e.to_string())
            }
            other => internal(other),
        }
    }
}

fn ms(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

fn from_ms(v: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(v) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

fn open_conn(path: &Path, write: bool) -> StoreResult<Connection> {
    let flags = if write {
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let conn = Connection::open_with_flags(path, flags)
        .map_err(|e| StoreError::Unavailable(format!("cannot open {}: {e}", path.display())))?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.execute_batch("PRAGMA foreign_keys = OFF; PRAGMA temp_store = MEMORY;")?;
    if write {
        // FULL: a commit is on disk (fsync) before its answers are released.
        conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;")?;
    }
    Ok(conn)
}

fn migrate(conn: &mut Connection) -> StoreResult<()> {
    let version: usize =
        conn.query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))? as usize;
    if version > MIGRATIONS.len() {
        return Err(StoreError::Internal(format!(
            "database schema version {version} is newer than this server ({}); upgrade the server",
            MIGRATIONS.len()
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.execute_batch(&format!("PRAGMA user_version = {}", i + 1))?;
        tx.commit()?;
    }
    Ok(())
}

impl SqliteStore {
    pub fn open(path: &Path) -> StoreResult<SqliteStore> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::Unavailable(format!("cannot create {}: {e}", dir.display()))
            })?;
        }
        let mut writer = open_conn(path, true)?;
        migrate(&mut writer)?;
        let readers = (0..READERS)
            .map(|_| open_conn(path, false).map(Mutex::new))
            .collect::<StoreResult<Vec<_>>>()?;
        let (tx, rx) = mpsc::unbounded_channel();
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || writer_loop(writer, rx))
            .map_err(internal)?;
        Ok(SqliteStore {
            writer: tx,
            readers: Arc::new(readers),
            next_reader: AtomicUsize::new(0),
        })
    }

    /// Runs `f` in the writer's current transaction (inside a savepoint); answers after commit.
    async fn write<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel::<StoreResult<T>>();
        let job: WriteJob = Box::new(move |conn: &Connection| {
            let result = in_savepoint(conn, f);
            Box::new(move |committed: Result<(), StoreError>| {
                let _ = tx.send(committed.and(result));
            })
        });
        self.writer
            .send(job)
            .map_err(|_| StoreError::Unavailable("writer thread stopped".into()))?;
        rx.await
            .map_err(|_| StoreError::Unavailable("the write could not be committed".into()))?
    }

    async fn read<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        let readers = self.readers.clone();
        let i = self.next_reader.fetch_add(1, Ordering::Relaxed) % readers.len();
        tokio::task::spawn_blocking(move || {
            let conn = readers[i]
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            f(&conn)
        })
        .await
        .map_err(internal)?
    }
}

fn in_savepoint<T>(
    conn: &Connection,
    f: impl FnOnce(&Connection) -> StoreResult<T>,
) -> StoreResult<T> {
    conn.execute_batch("SAVEPOINT job")?;
    match f(conn) {
        Ok(v) => {
            conn.execute_batch("RELEASE job")?;
            Ok(v)
        }
        Err(e) => {
            conn.execute_batch("ROLLBACK TO job; RELEASE job")?;
            Err(e)
        }
    }
}

fn writer_loop(conn: Connection, mut rx: mpsc::UnboundedReceiver<WriteJob>) {
    while let Some(first) = rx.blocking_recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
            // Nothing ran; dropping the jobs answers every caller with `Unavailable`.
            tracing::error!(error = %e, jobs = batch.len(), "store: cannot begin a write transaction");
            drop(batch);
            continue;
        }
        let completions: Vec<Completion> = batch.into_iter().map(|job| job(&conn)).collect();
        let committed = conn.execute_batch("COMMIT").map_err(StoreError::from);
        if committed.is_err() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        for c in completions {
            c(committed.clone());
        }
    }
}

// ---- row mapping ----------------------------------------------------------------------------

const USER_COLS: &str = "id, username, display_name, created_at, last_seen";

fn row_user(r: &Row) -> rusqlite::Result<User> {
    Ok(User {
        id: id_col(r, 0)?,
        username: r.get(1)?,
        display_name: r.get(2)?,
        created_at: from_ms(r.get(3)?),
        last_seen: r.get::<_, Option<i64>>(4)?.map(from_ms),
        presence: Presence::Offline,
    })
}

const CHANNEL_COLS: &str = "id, kind, name, topic, created_by, created_at, last_seq";

fn row_channel(r: &Row) -> rusqlite::Result<Channel> {
    let kind: String = r.get(1)?;
    Ok(Channel {
        id: id_col(r, 0)?,
        kind: ChannelKind::parse(&kind).unwrap_or(ChannelKind::Private),
        name: r.get(2)?,
        topic: r.get(3)?,
        created_by: id_col(r, 4)?,
        created_at: from_ms(r.get(5)?),
        last_seq: r.get(6)?,
        member_ids: Vec::new(),
        read_seq: None,
        unread: None,
    })
}

const MESSAGE_COLS: &str =
    "id, channel_id, seq, author_id, client_id, text, thread_root, reply_count, created_at, edited_at, deleted, mentions, reactions";

fn row_message(r: &Row) -> rusqlite::Result<Message> {
    let mentions: String = r.get(11)?;
    let reactions: String = r.get(12)?;
    Ok(Message {
        id: id_col(r, 0)?,
        channel_id: id_col(r, 1)?,
        seq: r.get(2)?,
        author_id: id_col(r, 3)?,
        client_id: r.get(4)?,
        text: r.get(5)?,
        thread_root: r.get::<_, Option<String>>(6)?.map(Into::into),
        reply_count: r.get(7)?,
        created_at: from_ms(r.get(8)?),
        edited_at: r.get::<_, Option<i64>>(9)?.map(from_ms),
        deleted: r.get::<_, i64>(10)? != 0,
        mentions: serde_json::from_str(&mentions).unwrap_or_default(),
        reactions: serde_json::from_str(&reactions).unwrap_or_default(),
    })
}

fn row_member(r: &Row) -> rusqlite::Result<Member> {
    let role: String = r.get(1)?;
    Ok(Member {
        user_id: id_col(r, 0)?,
        role: if role == "owner" {
            Role::Owner
        } else {
            Role::Member
        },
        joined_at: from_ms(r.get(2)?),
        read_seq: r.get(3)?,
        delivered_seq: r.get(4)?,
    })
}

/// An id column, typed by what it holds.
fn id_col<T: From<String>>(r: &Row, column: usize) -> rusqlite::Result<T> {
    r.get::<_, String>(column).map(T::from)
}

/// A stored event; one whose kind or payload does not decode is an error, never a default.
fn row_event(r: &Row) -> rusqlite::Result<Event> {
    let kind: String = r.get(2)?;
    let data: String = r.get(4)?;
    let payload = EventPayload::decode_stored(&kind, &data).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(4, rusqlite::types::Type::Text, Box::new(e))
    })?;
    Ok(Event {
        channel: r.get::<_, String>(0)?.into(),
        seq: r.get(1)?,
        at: from_ms(r.get(3)?),
        payload,
    })
}

// ---- helpers running inside a transaction ---------------------------------------------------

/// `NotMember` unless `user_id` is a member of the channel. Runs in the write's transaction
/// (the single writer), so no leave can slip between this check and the write.
fn require_member(conn: &Connection, channel_id: &str, user_id: &str) -> StoreResult<()> {
    let found = conn
        .prepare_cached("SELECT 1 FROM members WHERE channel_id = ?1 AND user_id = ?2")?
        .query_row([channel_id, user_id], |_| Ok(()))
        .optional()?;
    found.ok_or(StoreError::NotMember)
}

/// Takes the channel's next sequence number and records the event under it.
fn append_event(
    conn: &Connection,
    channel_id: &str,
    at: OffsetDateTime,
    payload: EventPayload,
) -> StoreResult<Event> {
    let seq: i64 = conn
        .query_row(
            "UPDATE channels SET last_seq = last_seq + 1 WHERE id = ?1 RETURNING last_seq",
            [channel_id],
            |r| r.get(0),
        )
        .optional()?
        .ok_or(StoreError::NotFound("channel"))?;
    conn.execute(
        "INSERT INTO events (channel_id, seq, kind, at, data) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            channel_id,
            seq,
            payload.kind().as_str(),
            ms(at),
            payload.to_stored()
        ],
    )?;
    Ok(Event {
        channel: channel_id.into(),
        seq,
        at,
        payload,
    })
}

fn get_message(
    conn: &Connection,
    channel_id: &str,
    message_id: &str,
) -> StoreResult<Option<Message>> {
    Ok(conn
        .query_row(
            &format!("SELECT {MESSAGE_COLS} FROM messages WHERE id = ?1 AND channel_id = ?2"),
            [message_id, channel_id],
            row_message,
        )
        .optional()?)
}

fn member_ids(conn: &Connection, channel_id: &str) -> StoreResult<Vec<UserId>> {
    let mut stmt = conn.prepare_cached(
        "SELECT user_id FROM members WHERE channel_id = ?1 ORDER BY joined_at, user_id",
    )?;
    let ids = stmt
        .query_map([channel_id], |r| id_col(r, 0))?
        .collect::<Result<Vec<UserId>, _>>()?;
    Ok(ids)
}

fn get_channel(conn: &Connection, id: &str) -> StoreResult<Option<Channel>> {
    let ch = conn
        .query_row(
            &format!("SELECT {CHANNEL_COLS} FROM channels WHERE id = ?1"),
            [id],
            row_channel,
        )
        .optional()?;
    match ch {
        Some(mut ch) => {
            ch.member_ids = member_ids(conn, id)?;
            Ok(Some(ch))
        }
        None => Ok(None),
    }
}

fn insert_member(
    conn: &Connection,
    channel_id: &str,
    user_id: &str,
    role: Role,
    at: OffsetDateTime,
) -> StoreResult<bool> {
    // A new member starts having read and received everything before it joined.
    let n = conn.execute(
        "INSERT OR IGNORE INTO members (channel_id, user_id, role, joined_at, read_seq, delivered_seq)
         SELECT ?1, ?2, ?3, ?4, last_message_seq, last_message_seq FROM channels WHERE id = ?1",
        params![channel_id, user_id, if role == Role::Owner { "owner" } else { "member" }, ms(at)],
    )?;
    Ok(n == 1)
}

/// Turns free text into an FTS5 query: every word must match (last one as a prefix); user
/// input never reaches FTS5's query syntax.
fn fts_query(q: &str) -> Option<String> {
    let words: Vec<String> = q
        .split(|c: char| !c.is_alphanumeric() && c != '_' && c != '\'')
        .filter(|w| !w.is_empty())
        .map(|w| format!("\"{}\"", w.replace('"', "\"\"")))
        .collect();
    if words.is_empty() {
        return None;
    }
    let mut s = words.join(" ");
    s.push('*');
    Some(s)
}

#[async_trait]
impl Store for SqliteStore {
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
            let key = u.username.to_lowercase();
            let n = c.execute(
                "INSERT OR IGNORE INTO users (id, username, username_key, display_name, password_hash, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![u.id.as_str(), u.username, key, u.display_name, u.password_hash, ms(u.created_at)],
            )?;
            if n == 0 {
                return Err(StoreError::Conflict(format!("username {:?} is taken", u.username)));
            }
            Ok(User {
                id: u.id,
                username: u.username,
                display_name: u.display_name,
                created_at: u.created_at,
                last_seen: None,
                presence: Presence::Offline,
            })
        })
        .await
    }

    async fn user_by_username(&self, username: &str) -> StoreResult<Option<(User, String)>> {
        let key = username.to_lowercase();
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
        self.write(move |c| {
            if let Some(key) = &nc.dm_key {
                let existing: Option<String> =
                    c.query_row("SELECT id FROM channels WHERE dm_key = ?1", [key], |r| r.get(0)).optional()?;
                if let Some(id) = existing {
                    return Ok((get_channel(c, &id)?.ok_or(StoreError::NotFound("channel"))?, Vec::new()));
                }
            }
            if matches!(nc.kind, ChannelKind::Public | ChannelKind::Private) {
                let taken: Option<String> = c
                    .query_row(
                        "SELECT id FROM channels WHERE name = ?1 AND kind IN ('public', 'private')",
                        [&nc.name],
                        |r| r.get(0),
                    )
                    .optional()?;
                if taken.is_some() {
                    return Err(StoreError::Conflict(format!("a channel named {:?} exists", nc.name)));
                }
            }
            c.execute(
                "INSERT INTO channels (id, kind, name, topic, created_by, created_at, dm_key) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![nc.id.as_str(), nc.kind.as_str(), nc.name, nc.topic, nc.created_by.as_str(), ms(nc.created_at), nc.dm_key],
            )?;
            insert_member(c, &nc.id, &nc.created_by, Role::Owner, nc.created_at)?;
            let mut events = vec![append_event(
                c,
                &nc.id,
                nc.created_at,
                EventPayload::MemberJoined(MemberJoinedData {
                    user_id: nc.created_by.clone(),
                    by: nc.created_by.clone(),
                }),
            )?];
            for m in &nc.member_ids {
                if insert_member(c, &nc.id, m, Role::Member, nc.created_at)? {
                    events.push(append_event(
                        c,
                        &nc.id,
                        nc.created_at,
                        EventPayload::MemberJoined(MemberJoinedData {
                            user_id: m.clone(),
                            by: nc.created_by.clone(),
                        }),
                    )?);
                }
            }
            Ok((get_channel(c, &nc.id)?.ok_or(StoreError::NotFound("channel"))?, events))
        })
        .await
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
                "SELECT user_id, role, joined_at, read_seq, delivered_seq FROM members WHERE channel_id = ?1 AND user_id = ?2",
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
            let mut stmt = c.prepare_cached(
                "SELECT user_id, role, joined_at, read_seq, delivered_seq FROM members WHERE channel_id = ?1 ORDER BY joined_at, user_id",
            )?;
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
            Ok(Some(append_event(
                c,
                &ch,
                at,
                EventPayload::MemberJoined(MemberJoinedData {
                    user_id: u.into(),
                    by: by.into(),
                }),
            )?))
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
            Ok(Some(append_event(
                c,
                &ch,
                crate::model::now(),
                EventPayload::MemberLeft(MemberLeftData { user_id: u.into() }),
            )?))
        })
        .await
    }

    async fn append_message(&self, m: NewMessage) -> StoreResult<(Message, Option<Event>)> {
        self.write(move |c| {
            let existing = c
                .query_row(
                    &format!("SELECT {MESSAGE_COLS} FROM messages WHERE author_id = ?1 AND client_id = ?2"),
                    [m.author_id.as_str(), &m.client_id],
                    row_message,
                )
                .optional()?;
            if let Some(msg) = existing {
                return Ok((msg, None));
            }
            require_member(c, &m.channel_id, &m.author_id)?;
            if let Some(root) = &m.thread_root {
                let n = c.execute(
                    "UPDATE messages SET reply_count = reply_count + 1
                     WHERE id = ?1 AND channel_id = ?2 AND thread_root IS NULL AND deleted = 0",
                    [root.as_str(), m.channel_id.as_str()],
                )?;
                if n == 0 {
                    return Err(StoreError::NotFound("thread root message"));
                }
            }
            let mut msg = Message {
                id: m.id,
                channel_id: m.channel_id,
                seq: 0,
                author_id: m.author_id,
                client_id: m.client_id,
                text: m.text,
                thread_root: m.thread_root,
                reply_count: 0,
                created_at: m.created_at,
                edited_at: None,
                deleted: false,
                reactions: Vec::new(),
                mentions: m.mentions,
            };
            // Take the seq first so the stored message and its event agree on it.
            let seq: i64 = c
                .query_row(
                    "UPDATE channels SET last_seq = last_seq + 1, last_message_seq = last_seq + 1 WHERE id = ?1 RETURNING last_seq",
                    [msg.channel_id.as_str()],
                    |r| r.get(0),
                )
                .optional()?
                .ok_or(StoreError::NotFound("channel"))?;
            msg.seq = seq;
            c.prepare_cached(
                "INSERT INTO messages (id, channel_id, seq, author_id, client_id, text, thread_root, created_at, mentions)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?
            .execute(params![
                msg.id.as_str(),
                msg.channel_id.as_str(),
                seq,
                msg.author_id.as_str(),
                msg.client_id,
                msg.text,
                msg.thread_root.as_deref(),
                ms(msg.created_at),
                serde_json::to_string(&msg.mentions).map_err(internal)?
            ])?;
            let payload = EventPayload::Message(msg.clone());
            c.prepare_cached("INSERT INTO events (channel_id, seq, kind, at, data) VALUES (?1, ?2, ?3, ?4, ?5)")?
                .execute(params![msg.channel_id.as_str(), seq, payload.kind().as_str(), ms(msg.created_at), payload.to_stored()])?;
            // The author has obviously seen its own message.
            c.prepare_cached(
                "UPDATE members SET read_seq = MAX(read_seq, ?3), delivered_seq = MAX(delivered_seq, ?3)
                 WHERE channel_id = ?1 AND user_id = ?2",
            )?
            .execute(params![msg.channel_id.as_str(), msg.author_id.as_str(), seq])?;
            let event = Event { channel: msg.channel_id.clone(), seq, at: msg.created_at, payload };
            Ok((msg, Some(event)))
        })
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
        let (ch, id, author, text, mentions) = (
            channel_id.to_string(),
            message_id.to_string(),
            author_id.to_string(),
            text.to_string(),
            mentions.to_vec(),
        );
        self.write(move |c| {
            require_member(c, &ch, &author)?;
            let n = c.execute(
                "UPDATE messages SET text = ?3, mentions = ?4, edited_at = ?5
                 WHERE id = ?1 AND channel_id = ?2 AND author_id = ?6 AND deleted = 0",
                params![
                    id,
                    ch,
                    text,
                    serde_json::to_string(&mentions).map_err(internal)?,
                    ms(at),
                    author
                ],
            )?;
            if n == 0 {
                return Err(StoreError::NotFound("message"));
            }
            append_event(
                c,
                &ch,
                at,
                EventPayload::Edit(EditData {
                    message_id: id.into(),
                    text,
                    edited_at: at,
                    mentions,
                }),
            )
        })
        .await
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
        self.write(move |c| {
            require_member(c, &ch, &author)?;
            let n = c.execute(
                "UPDATE messages SET deleted = 1, text = '', reactions = '[]', mentions = '[]'
                 WHERE id = ?1 AND channel_id = ?2 AND author_id = ?3 AND deleted = 0",
                [&id, &ch, &author],
            )?;
            if n == 0 {
                return Err(StoreError::NotFound("message"));
            }
            append_event(
                c,
                &ch,
                at,
                EventPayload::Delete(DeleteData {
                    message_id: id.into(),
                }),
            )
        })
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
        let (ch, id, user, emoji) = (
            channel_id.to_string(),
            message_id.to_string(),
            user_id.to_string(),
            emoji.to_string(),
        );
        self.write(move |c| {
            require_member(c, &ch, &user)?;
            let msg = get_message(c, &ch, &id)?.ok_or(StoreError::NotFound("message"))?;
            if msg.deleted {
                return Err(StoreError::NotFound("message"));
            }
            let mut reactions = msg.reactions;
            if !toggle_reaction(&mut reactions, &emoji, &user, add) {
                return Ok(None);
            }
            c.execute(
                "UPDATE messages SET reactions = ?3 WHERE id = ?1 AND channel_id = ?2",
                params![id, ch, serde_json::to_string(&reactions).map_err(internal)?],
            )?;
            Ok(Some(append_event(
                c,
                &ch,
                at,
                EventPayload::Reaction(ReactionData {
                    message_id: id.into(),
                    emoji,
                    user_id: user.into(),
                    added: add,
                }),
            )?))
        })
        .await
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
            let mut stmt = c.prepare_cached(
                "SELECT channel_id, seq, kind, at, data FROM events WHERE channel_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
            )?;
            let events = stmt.query_map(params![ch, after, limit as i64], row_event)?.collect::<Result<Vec<_>, _>>()?;
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
        self.write(move |c| {
            let row: Option<(i64, i64, i64)> = c
                .query_row(
                    "SELECT m.delivered_seq, m.read_seq, c.last_message_seq FROM members m JOIN channels c ON c.id = m.channel_id
                     WHERE m.channel_id = ?1 AND m.user_id = ?2",
                    [&ch, &u],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional()?;
            let Some((delivered, read, last_message)) = row else {
                // No member row (or no channel): the user is not a member.
                return Err(StoreError::NotMember);
            };
            // Watermarks only point at messages: receipts about receipts would never end.
            let (new_delivered, new_read) = match mark {
                Watermark::Delivered(s) => (delivered.max(s.min(last_message)), read),
                Watermark::Read(s) => {
                    let r = read.max(s.min(last_message));
                    (delivered.max(r), r)
                }
            };
            if (new_delivered, new_read) == (delivered, read) {
                return Ok(None);
            }
            c.prepare_cached("UPDATE members SET delivered_seq = ?3, read_seq = ?4 WHERE channel_id = ?1 AND user_id = ?2")?
                .execute(params![ch, u, new_delivered, new_read])?;
            if !emit {
                return Ok(None);
            }
            Ok(Some(append_event(
                c,
                &ch,
                at,
                EventPayload::Receipt(ReceiptData {
                    user_id: u.into(),
                    delivered_seq: new_delivered,
                    read_seq: new_read,
                }),
            )?))
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
        let Some(q) = fts_query(query) else {
            return Ok(Vec::new());
        };
        let (u, ch) = (user_id.to_string(), channel_id.map(str::to_string));
        self.read(move |c| {
            let cols = MESSAGE_COLS
                .split(", ")
                .map(|col| format!("m.{col}"))
                .collect::<Vec<_>>()
                .join(", ");
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {cols} FROM messages_fts f JOIN messages m ON m.rowid = f.rowid
                 WHERE messages_fts MATCH ?1 AND m.deleted = 0
                   AND (m.channel_id IN (SELECT channel_id FROM members WHERE user_id = ?2)
                        OR m.channel_id IN (SELECT id FROM channels WHERE kind = 'public'))
                   AND (?3 IS NULL OR m.channel_id = ?3)
                 ORDER BY m.rowid DESC LIMIT ?4"
            ))?;
            let msgs = stmt
                .query_map(params![q, u, ch, limit as i64], row_message)?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(msgs)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::fts_query;

    #[test]
    fn search_input_never_reaches_fts_syntax() {
        assert_eq!(
            fts_query("hello world").as_deref(),
            Some("\"hello\" \"world\"*")
        );
        assert_eq!(
            fts_query("a\" OR NEAR(x").as_deref(),
            Some("\"a\" \"OR\" \"NEAR\" \"x\"*")
        );
        assert_eq!(fts_query("  ** () "), None);
    }
}
