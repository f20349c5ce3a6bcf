//! Row ↔ type mapping: the column lists the reads select and how each row decodes. A column
//! that does not decode (an unknown kind or role, bad JSON, an impossible time) is an error
//! naming the table and the column, never a default.

use std::sync::LazyLock;

use rusqlite::{types::Type, Connection, OptionalExtension, Row};
use time::OffsetDateTime;

use crate::model::{
    Channel, ChannelKind, Event, EventKind, EventPayload, Member, Message, Presence, User, UserId,
};
use crate::store::{
    rules::{self, undecodable},
    StoreError, StoreResult,
};

pub(super) fn internal(e: impl std::fmt::Display) -> StoreError {
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

/// Column `column` of `table`.`field` did not decode.
fn bad(
    column: usize,
    table: &'static str,
    field: &'static str,
    why: impl ToString,
) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        column,
        Type::Text,
        Box::new(undecodable(table, field, why)),
    )
}

/// A time column (milliseconds since the epoch).
fn time_col(
    r: &Row,
    column: usize,
    table: &'static str,
    field: &'static str,
) -> rusqlite::Result<OffsetDateTime> {
    let v: i64 = r.get(column)?;
    rules::from_ms(v).ok_or_else(|| bad(column, table, field, format!("no time is {v} ms")))
}

fn opt_time_col(
    r: &Row,
    column: usize,
    table: &'static str,
    field: &'static str,
) -> rusqlite::Result<Option<OffsetDateTime>> {
    match r.get::<_, Option<i64>>(column)? {
        None => Ok(None),
        Some(_) => time_col(r, column, table, field).map(Some),
    }
}

/// A JSON text column.
fn json_col<T: serde::de::DeserializeOwned>(
    r: &Row,
    column: usize,
    table: &'static str,
    field: &'static str,
) -> rusqlite::Result<T> {
    let text: String = r.get(column)?;
    serde_json::from_str(&text).map_err(|e| bad(column, table, field, e))
}

/// An id column, typed by what it holds.
pub(super) fn id_col<T: From<String>>(r: &Row, column: usize) -> rusqlite::Result<T> {
    r.get::<_, String>(column).map(T::from)
}

pub(super) const USER_COLS: &str = "id, username, display_name, created_at, last_seen";

pub(super) fn row_user(r: &Row) -> rusqlite::Result<User> {
    Ok(User {
        id: id_col(r, 0)?,
        username: r.get(1)?,
        display_name: r.get(2)?,
        created_at: time_col(r, 3, "users", "created_at")?,
        last_seen: opt_time_col(r, 4, "users", "last_seen")?,
        presence: Presence::Offline,
    })
}

pub(super) const CHANNEL_COLS: &str = "id, kind, name, topic, created_by, created_at, last_seq";

pub(super) fn row_channel(r: &Row) -> rusqlite::Result<Channel> {
    let kind: String = r.get(1)?;
    Ok(Channel {
        id: id_col(r, 0)?,
        kind: ChannelKind::parse(&kind)
            .ok_or_else(|| bad(1, "channels", "kind", format!("unknown kind {kind:?}")))?,
        name: r.get(2)?,
        topic: r.get(3)?,
        created_by: id_col(r, 4)?,
        created_at: time_col(r, 5, "channels", "created_at")?,
        last_seq: r.get(6)?,
        member_ids: Vec::new(),
        read_seq: None,
        unread: None,
    })
}

pub(super) const MESSAGE_COLS: &str =
    "id, channel_id, seq, author_id, client_id, text, thread_root, reply_count, created_at, edited_at, deleted, mentions, reactions";

pub(super) fn row_message(r: &Row) -> rusqlite::Result<Message> {
    row_message_at(r, 0)
}

/// A message whose [`MESSAGE_COLS`] start at column `at` (after an event's own columns).
fn row_message_at(r: &Row, at: usize) -> rusqlite::Result<Message> {
    Ok(Message {
        id: id_col(r, at)?,
        channel_id: id_col(r, at + 1)?,
        seq: r.get(at + 2)?,
        author_id: id_col(r, at + 3)?,
        client_id: r.get(at + 4)?,
        text: r.get(at + 5)?,
        thread_root: r.get::<_, Option<String>>(at + 6)?.map(Into::into),
        reply_count: r.get(at + 7)?,
        created_at: time_col(r, at + 8, "messages", "created_at")?,
        edited_at: opt_time_col(r, at + 9, "messages", "edited_at")?,
        deleted: r.get::<_, i64>(at + 10)? != 0,
        mentions: json_col(r, at + 11, "messages", "mentions")?,
        reactions: json_col(r, at + 12, "messages", "reactions")?,
    })
}

pub(super) const MEMBER_COLS: &str = "user_id, role, joined_at, read_seq, delivered_seq";

pub(super) fn row_member(r: &Row) -> rusqlite::Result<Member> {
    let role: String = r.get(1)?;
    Ok(Member {
        user_id: id_col(r, 0)?,
        role: rules::parse_role(&role)
            .ok_or_else(|| bad(1, "members", "role", format!("unknown role {role:?}")))?,
        joined_at: time_col(r, 2, "members", "joined_at")?,
        read_seq: r.get(3)?,
        delivered_seq: r.get(4)?,
    })
}

/// What [`row_event`] reads (built once): a channel's events after a seq, in seq order, with at most a
/// limit of them (parameters `?1`, `?2`, `?3`). Messages are rows of `messages` (schema
/// migration 5); every other event is a row of `events` with its payload as JSON. Both arms
/// read in `(channel_id, seq)` order from an index, so SQLite merges them and stops at the
/// limit.
pub(super) static EVENTS_AFTER_SQL: LazyLock<String> = LazyLock::new(|| {
    let message_cols = MESSAGE_COLS
        .split(", ")
        .map(|col| format!("m.{col}"))
        .collect::<Vec<_>>()
        .join(", ");
    let no_message = MESSAGE_COLS
        .split(", ")
        .map(|_| "NULL")
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "SELECT e.channel_id, e.seq, e.kind, e.at, e.data, NULL, {no_message}
         FROM events e WHERE e.channel_id = ?1 AND e.seq > ?2
         UNION ALL
         SELECT m.channel_id, m.seq, '{message}', m.created_at, '', m.rowid, {message_cols}
         FROM messages m WHERE m.channel_id = ?1 AND m.seq > ?2
         ORDER BY 2 LIMIT ?3",
        message = EventKind::Message.as_str()
    )
});

/// A stored event (a row of [`EVENTS_AFTER_SQL`]). A message event is its message row; any
/// other event decodes its JSON. One whose kind or payload does not decode is an error, never
/// a default.
pub(super) fn row_event(r: &Row) -> rusqlite::Result<Event> {
    // Column 5 is the message's rowid in the `messages` arm, NULL in the `events` arm.
    let payload = if r.get::<_, Option<i64>>(5)?.is_some() {
        EventPayload::Message(row_message_at(r, 6)?)
    } else {
        let (kind, data): (String, String) = (r.get(2)?, r.get(4)?);
        EventPayload::decode_stored(&kind, &data).map_err(|e| bad(4, "events", "data", e))?
    };
    Ok(Event {
        channel: r.get::<_, String>(0)?.into(),
        seq: r.get(1)?,
        at: time_col(r, 3, "events", "at")?,
        payload,
    })
}

// ---- reads shared by the read and the write path ---------------------------------------------

pub(super) fn get_message(
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

pub(super) fn member_ids(conn: &Connection, channel_id: &str) -> StoreResult<Vec<UserId>> {
    let mut stmt = conn.prepare_cached(
        "SELECT user_id FROM members WHERE channel_id = ?1 ORDER BY joined_at, user_id",
    )?;
    let ids = stmt
        .query_map([channel_id], |r| id_col(r, 0))?
        .collect::<Result<Vec<UserId>, _>>()?;
    Ok(ids)
}

pub(super) fn get_channel(conn: &Connection, id: &str) -> StoreResult<Option<Channel>> {
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
