//! The SQLite schema: the migrations in order, and how a connection is opened (WAL, FULL
//! sync for the writer) and brought up to the newest schema.

use std::path::Path;

use rusqlite::{Connection, OpenFlags};

use crate::store::{StoreError, StoreResult};

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
    // Full-text indexing in batches (issue 15): a per-row insert trigger on an FTS5 table costs
    // one index segment per message, because every job's SAVEPOINT makes FTS5 flush what is
    // pending (`fts5SavepointMethod`). Instead the writer indexes every message above
    // `fts_indexed.upto` in one statement at the end of each group commit, inside the same
    // transaction (see `writer::index_new_messages`): a message is searchable as soon as it is
    // acknowledged. Everything already in the table was indexed by the old trigger. Edits and
    // deletes of indexed rows still go through triggers; a row above the mark is not in the
    // index yet, and the batch will read its newest text.
    r#"
DROP TRIGGER messages_fts_insert;
DROP TRIGGER messages_fts_delete;
DROP TRIGGER messages_fts_update;
CREATE TABLE fts_indexed (id INTEGER PRIMARY KEY CHECK (id = 1), upto INTEGER NOT NULL);
INSERT INTO fts_indexed (id, upto) SELECT 1, COALESCE(MAX(rowid), 0) FROM messages;
CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages
WHEN old.rowid <= (SELECT upto FROM fts_indexed) BEGIN
    INSERT INTO messages_fts(messages_fts, rowid, text) VALUES ('delete', old.rowid, old.text);
END;
CREATE TRIGGER messages_fts_update AFTER UPDATE OF text ON messages
WHEN old.rowid <= (SELECT upto FROM fts_indexed) BEGIN
    INSERT INTO messages_fts(messages_fts, rowid, text) VALUES ('delete', old.rowid, old.text);
    INSERT INTO messages_fts(rowid, text) VALUES (new.rowid, new.text);
END;
"#,
    // The message row is its event (issue 15): a message's event row no longer carries a
    // second JSON copy of the message, only the message's rowid; `events_after` builds the
    // payload from the messages row. Rows written before keep their JSON (`message_rowid` NULL)
    // and still decode from it.
    "ALTER TABLE events ADD COLUMN message_rowid INTEGER;",
    // A message has no event row at all (issue 15): its row in `messages`, found by
    // `(channel_id, seq)`, is its event. Each event row of a message touched a leaf of the
    // events key per channel in every group commit; with per-channel seq order on `messages`
    // itself, `events_after` merges the two tables in seq order instead. The per-thread index
    // covers replies only (a top-level send no longer writes it). Message events written
    // before (JSON copies, or pointers to the row) go: the row answers for them, as it stands
    // now — what a message event written since migration 4 already returned. With them goes
    // migration 4's `message_rowid`, which nothing writes or reads any more.
    r#"
DROP INDEX messages_by_thread;
CREATE UNIQUE INDEX messages_by_channel ON messages(channel_id, seq);
CREATE INDEX messages_by_thread ON messages(thread_root, seq) WHERE thread_root IS NOT NULL;
DELETE FROM events WHERE kind = 'message';
ALTER TABLE events DROP COLUMN message_rowid;
"#,
];

pub(super) fn open_conn(path: &Path, write: bool) -> StoreResult<Connection> {
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
    // Room for every statement of the write path (rusqlite keeps 16 by default).
    conn.set_prepared_statement_cache_capacity(64);
    conn.execute_batch("PRAGMA foreign_keys = OFF; PRAGMA temp_store = MEMORY;")?;
    if write {
        // FULL: a commit is on disk (fsync) before its answers are released.
        conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;")?;
    }
    Ok(conn)
}

pub(super) fn migrate(conn: &mut Connection) -> StoreResult<()> {
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

#[cfg(test)]
mod tests {
    //! A database written by the schema before issue 15's writer work (migrations 1–2: per-row
    //! FTS triggers, message events as JSON copies) opens, keeps its index and its events (a
    //! message's from its row since migration 5), and indexes and reads back what comes after.

    use rusqlite::Connection;

    use super::MIGRATIONS;
    use crate::model::{new_id, now, EventPayload, Message};
    use crate::store::{rules, sqlite::SqliteStore, NewMessage, Store};

    async fn texts(store: &SqliteStore, user: &str, q: &str) -> Vec<String> {
        let found: Vec<Message> = store.search(user, q, None, 10).await.unwrap();
        found.into_iter().map(|m| m.text).collect()
    }

    #[tokio::test]
    async fn a_database_of_the_per_row_trigger_schema_upgrades_and_stays_searchable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chat.db");
        {
            // Exactly what the server before migration 3 left on disk.
            let old = Connection::open(&path).unwrap();
            for sql in &MIGRATIONS[..2] {
                old.execute_batch(sql).unwrap();
            }
            old.execute_batch(
                "PRAGMA user_version = 2;
                 INSERT INTO channels (id, kind, name, created_by, created_at, last_seq, last_message_seq)
                     VALUES ('c1', 'public', 'old', 'u1', 0, 1, 1);
                 INSERT INTO members (channel_id, user_id, role, joined_at) VALUES ('c1', 'u1', 'owner', 0);
                 INSERT INTO messages (id, channel_id, seq, author_id, client_id, text, created_at)
                     VALUES ('m1', 'c1', 1, 'u1', 'k1', 'an old banana', 0);",
            )
            .unwrap();
            let sent = Message {
                id: "m1".into(),
                channel_id: "c1".into(),
                seq: 1,
                author_id: "u1".into(),
                client_id: "k1".into(),
                text: "an old banana".into(),
                thread_root: None,
                reply_count: 0,
                created_at: rules::from_ms(0).unwrap(),
                edited_at: None,
                deleted: false,
                mentions: vec![],
                reactions: vec![],
            };
            old.execute(
                "INSERT INTO events (channel_id, seq, kind, at, data) VALUES ('c1', 1, 'message', 0, ?1)",
                [EventPayload::Message(sent).to_stored()],
            )
            .unwrap();
        }
        let store = SqliteStore::open(&path).unwrap();
        assert_eq!(texts(&store, "u1", "banana").await, ["an old banana"]);

        // An indexed row's edit still replaces its words (the update trigger).
        store
            .edit_message("c1", "m1", "u1", "an old cherry", &[], now())
            .await
            .unwrap();
        assert!(texts(&store, "u1", "banana").await.is_empty());
        assert_eq!(texts(&store, "u1", "cherry").await, ["an old cherry"]);

        // A new message is searchable once acknowledged, and so is its edit.
        let (new, _) = store
            .append_message(NewMessage {
                id: new_id(),
                channel_id: "c1".into(),
                author_id: "u1".into(),
                client_id: "k2".into(),
                text: "a new banana".into(),
                thread_root: None,
                mentions: vec![],
                created_at: now(),
            })
            .await
            .unwrap();
        assert_eq!(texts(&store, "u1", "banana").await, ["a new banana"]);
        store
            .edit_message("c1", new.id.as_str(), "u1", "a new plum", &[], now())
            .await
            .unwrap();
        assert!(texts(&store, "u1", "banana").await.is_empty());
        assert_eq!(texts(&store, "u1", "plum").await, ["a new plum"]);
        store
            .delete_message("c1", new.id.as_str(), "u1", now())
            .await
            .unwrap();
        assert!(texts(&store, "u1", "plum").await.is_empty());

        // Resume: both message events are their rows as they stand now (migration 5 dropped
        // the old one's JSON copy): the old one edited, the new one deleted (its text gone).
        // The edits and the delete are events of their own after them, in seq order.
        let events = store.events_after("c1", 0, 10).await.unwrap();
        let messages: Vec<(i64, &Message)> = events
            .iter()
            .filter_map(|e| match &e.payload {
                EventPayload::Message(m) => Some((e.seq, m)),
                _ => None,
            })
            .collect();
        assert_eq!(messages.len(), 2, "{events:?}");
        assert_eq!(
            (messages[0].0, messages[0].1.text.as_str()),
            (1, "an old cherry")
        );
        let seqs: Vec<i64> = events.iter().map(|e| e.seq).collect();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
        assert_eq!(
            seqs.len(),
            5,
            "two messages, two edits, one delete: {events:?}"
        );
        // A limit counts both kinds of rows, in seq order.
        let first_three = store.events_after("c1", 0, 3).await.unwrap();
        assert_eq!(
            first_three.iter().map(|e| e.seq).collect::<Vec<_>>(),
            seqs[..3]
        );
        assert_eq!(messages[1].0, new.seq);
        assert_eq!(messages[1].1.id, new.id);
        assert!(messages[1].1.deleted && messages[1].1.text.is_empty());

        // The index agrees with its content table (FTS5's own consistency check).
        drop(store);
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "INSERT INTO messages_fts (messages_fts, rank) VALUES ('integrity-check', 1)",
        )
        .unwrap();
    }
}
