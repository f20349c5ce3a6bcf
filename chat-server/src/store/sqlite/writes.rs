//! The write transactions: each function runs inside the writer's current transaction (see
//! [`super::writer`]) and either changes the channel together with its event, or returns an
//! error and the savepoint takes everything back. A message has no event row (its row in
//! `messages` is the event); other events carry their payload as JSON in `events`.

use rusqlite::{params, Connection, OptionalExtension};
use time::OffsetDateTime;

use super::rows::{get_channel, get_message, internal, row_message, MESSAGE_COLS};
use crate::model::{Channel, Event, EventPayload, Message, Role, UserId};
use crate::store::{
    rules::{self, ms},
    NewChannel, NewMessage, StoreError, StoreResult, Watermark,
};

/// `NotMember` unless `user_id` is a member of the channel. Runs in the write's transaction
/// (the single writer), so no leave can slip between this check and the write.
pub(super) fn require_member(
    conn: &Connection,
    channel_id: &str,
    user_id: &str,
) -> StoreResult<()> {
    let found = conn
        .prepare_cached("SELECT 1 FROM members WHERE channel_id = ?1 AND user_id = ?2")?
        .query_row([channel_id, user_id], |_| Ok(()))
        .optional()?;
    found.ok_or(StoreError::NotMember)
}

/// Takes the channel's next sequence number and records the event under it.
pub(super) fn append_event(
    conn: &Connection,
    channel_id: &str,
    at: OffsetDateTime,
    payload: EventPayload,
) -> StoreResult<Event> {
    let seq: i64 = conn
        .prepare_cached(
            "UPDATE channels SET last_seq = last_seq + 1 WHERE id = ?1 RETURNING last_seq",
        )?
        .query_row([channel_id], |r| r.get(0))
        .optional()?
        .ok_or(StoreError::NotFound("channel"))?;
    conn.prepare_cached(
        "INSERT INTO events (channel_id, seq, kind, at, data) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        channel_id,
        seq,
        payload.kind().as_str(),
        ms(at),
        payload.to_stored()
    ])?;
    Ok(Event {
        channel: channel_id.into(),
        seq,
        at,
        payload,
    })
}

/// Adds a member (false if it already is one). A new member starts having read and received
/// everything before it joined.
pub(super) fn insert_member(
    conn: &Connection,
    channel_id: &str,
    user_id: &str,
    role: Role,
    at: OffsetDateTime,
) -> StoreResult<bool> {
    let n = conn.execute(
        "INSERT OR IGNORE INTO members (channel_id, user_id, role, joined_at, read_seq, delivered_seq)
         SELECT ?1, ?2, ?3, ?4, last_message_seq, last_message_seq FROM channels WHERE id = ?1",
        params![channel_id, user_id, rules::role_str(role), ms(at)],
    )?;
    Ok(n == 1)
}

pub(super) fn create_channel(c: &Connection, nc: NewChannel) -> StoreResult<(Channel, Vec<Event>)> {
    if let Some(key) = &nc.dm_key {
        let existing: Option<String> = c
            .query_row("SELECT id FROM channels WHERE dm_key = ?1", [key], |r| {
                r.get(0)
            })
            .optional()?;
        if let Some(id) = existing {
            let ch = get_channel(c, &id)?.ok_or(StoreError::NotFound("channel"))?;
            return Ok((ch, Vec::new()));
        }
    }
    if rules::has_unique_name(nc.kind) {
        let taken: Option<String> = c
            .query_row(
                "SELECT id FROM channels WHERE name = ?1 AND kind IN ('public', 'private')",
                [&nc.name],
                |r| r.get(0),
            )
            .optional()?;
        if taken.is_some() {
            return Err(StoreError::Conflict(format!(
                "a channel named {:?} exists",
                nc.name
            )));
        }
    }
    c.execute(
        "INSERT INTO channels (id, kind, name, topic, created_by, created_at, dm_key) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![nc.id.as_str(), nc.kind.as_str(), nc.name, nc.topic, nc.created_by.as_str(), ms(nc.created_at), nc.dm_key],
    )?;
    insert_member(c, &nc.id, &nc.created_by, Role::Owner, nc.created_at)?;
    let joined = |user: &UserId| rules::member_joined(user.clone(), nc.created_by.clone());
    let mut events = vec![append_event(
        c,
        &nc.id,
        nc.created_at,
        joined(&nc.created_by),
    )?];
    for m in &nc.member_ids {
        if insert_member(c, &nc.id, m, Role::Member, nc.created_at)? {
            events.push(append_event(c, &nc.id, nc.created_at, joined(m))?);
        }
    }
    let ch = get_channel(c, &nc.id)?.ok_or(StoreError::NotFound("channel"))?;
    Ok((ch, events))
}

/// The hot path: every statement here runs once per message sent, so each is a cached
/// prepared statement and nothing is added to it. Every refusal (not a member, no such
/// thread root) is found by a read before the first change, so the job needs no savepoint
/// (it runs through [`SqliteStore::write_checked_first`](super::SqliteStore)): a send either
/// changes nothing or everything it should. The message row takes the channel's next seq, and
/// `(author_id, client_id)`'s unique index answers idempotency: no lookup before the insert.
/// A send that is stored already is answered with the stored message, also when a check would
/// now refuse it (its author left, its thread root was deleted since): a retry after a lost ack
/// sees the send it made.
pub(super) fn append_message(
    c: &Connection,
    m: NewMessage,
) -> StoreResult<(Message, Option<Event>)> {
    let mut msg = rules::new_message(m, 0);
    if let Err(refused) = check_send(c, &msg) {
        return match stored_send(c, &msg)? {
            Some(stored) => Ok((stored, None)),
            None => Err(refused),
        };
    }
    let mentions = serde_json::to_string(&msg.mentions).map_err(internal)?;
    let inserted: Option<i64> = c
        .prepare_cached(
            "INSERT INTO messages (id, channel_id, seq, author_id, client_id, text, thread_root, created_at, mentions)
             SELECT ?1, ?2, last_seq + 1, ?3, ?4, ?5, ?6, ?7, ?8 FROM channels WHERE id = ?2
             ON CONFLICT (author_id, client_id) DO NOTHING
             RETURNING seq",
        )?
        .query_row(
            params![
                msg.id.as_str(),
                msg.channel_id.as_str(),
                msg.author_id.as_str(),
                msg.client_id,
                msg.text,
                msg.thread_root.as_deref(),
                ms(msg.created_at),
                mentions,
            ],
            |r| r.get(0),
        )
        .optional()?;
    let Some(seq) = inserted else {
        // Nothing inserted: the same send is stored already (the channel exists: its member
        // was found above, in this transaction).
        return match stored_send(c, &msg)? {
            Some(stored) => Ok((stored, None)),
            None => Err(StoreError::NotMember),
        };
    };
    msg.seq = seq;
    if let Some(root) = &msg.thread_root {
        c.prepare_cached("UPDATE messages SET reply_count = reply_count + 1 WHERE id = ?1")?
            .execute([root.as_str()])?;
    }
    c.prepare_cached("UPDATE channels SET last_seq = ?2, last_message_seq = ?2 WHERE id = ?1")?
        .execute(params![msg.channel_id.as_str(), seq])?;
    // No event row: the message row is the event (the schema's migration 5).
    let payload = EventPayload::Message(msg.clone());
    // The author has obviously seen its own message.
    c.prepare_cached(
        "UPDATE members SET read_seq = MAX(read_seq, ?3), delivered_seq = MAX(delivered_seq, ?3)
         WHERE channel_id = ?1 AND user_id = ?2",
    )?
    .execute(params![
        msg.channel_id.as_str(),
        msg.author_id.as_str(),
        seq
    ])?;
    let event = Event {
        channel: msg.channel_id.clone(),
        seq,
        at: msg.created_at,
        payload,
    };
    Ok((msg, Some(event)))
}

/// The refusals of a send, all reads: its author is a member of the channel, and its thread
/// root (if any) is a live top-level message of the same channel.
fn check_send(c: &Connection, msg: &Message) -> StoreResult<()> {
    require_member(c, &msg.channel_id, &msg.author_id)?;
    if let Some(root) = &msg.thread_root {
        let found = c
            .prepare_cached(
                "SELECT 1 FROM messages
                 WHERE id = ?1 AND channel_id = ?2 AND thread_root IS NULL AND deleted = 0",
            )?
            .query_row([root.as_str(), msg.channel_id.as_str()], |_| Ok(()))
            .optional()?;
        if found.is_none() {
            return Err(StoreError::NotFound("thread root message"));
        }
    }
    Ok(())
}

/// The message this author already sent under this client id, if any.
fn stored_send(c: &Connection, msg: &Message) -> StoreResult<Option<Message>> {
    Ok(c.prepare_cached(&format!(
        "SELECT {MESSAGE_COLS} FROM messages WHERE author_id = ?1 AND client_id = ?2"
    ))?
    .query_row([msg.author_id.as_str(), &msg.client_id], row_message)
    .optional()?)
}

/// The inputs of an edit, owned (they move into the writer thread).
pub(super) struct Edit {
    pub channel_id: String,
    pub message_id: String,
    pub author_id: String,
    pub text: String,
    pub mentions: Vec<UserId>,
    pub at: OffsetDateTime,
}

pub(super) fn edit_message(c: &Connection, e: Edit) -> StoreResult<Event> {
    require_member(c, &e.channel_id, &e.author_id)?;
    let n = c.execute(
        "UPDATE messages SET text = ?3, mentions = ?4, edited_at = ?5
         WHERE id = ?1 AND channel_id = ?2 AND author_id = ?6 AND deleted = 0",
        params![
            e.message_id,
            e.channel_id,
            e.text,
            serde_json::to_string(&e.mentions).map_err(internal)?,
            ms(e.at),
            e.author_id
        ],
    )?;
    if n == 0 {
        return Err(StoreError::NotFound("message"));
    }
    let payload = rules::edited(e.message_id.into(), e.text, e.at, e.mentions);
    append_event(c, &e.channel_id, e.at, payload)
}

pub(super) fn delete_message(
    c: &Connection,
    ch: &str,
    id: String,
    author: &str,
    at: OffsetDateTime,
) -> StoreResult<Event> {
    require_member(c, ch, author)?;
    let n = c.execute(
        "UPDATE messages SET deleted = 1, text = '', reactions = '[]', mentions = '[]'
         WHERE id = ?1 AND channel_id = ?2 AND author_id = ?3 AND deleted = 0",
        [id.as_str(), ch, author],
    )?;
    if n == 0 {
        return Err(StoreError::NotFound("message"));
    }
    append_event(c, ch, at, rules::deleted(id.into()))
}

/// The inputs of a reaction change, owned (they move into the writer thread).
pub(super) struct React {
    pub channel_id: String,
    pub message_id: String,
    pub user_id: String,
    pub emoji: String,
    pub add: bool,
    pub at: OffsetDateTime,
}

pub(super) fn react(c: &Connection, r: React) -> StoreResult<Option<Event>> {
    let (ch, id, user) = (&r.channel_id, &r.message_id, &r.user_id);
    require_member(c, ch, user)?;
    let msg = get_message(c, ch, id)?.ok_or(StoreError::NotFound("message"))?;
    if msg.deleted {
        return Err(StoreError::NotFound("message"));
    }
    let mut reactions = msg.reactions;
    if !rules::toggle_reaction(&mut reactions, &r.emoji, user, r.add) {
        return Ok(None);
    }
    c.execute(
        "UPDATE messages SET reactions = ?3 WHERE id = ?1 AND channel_id = ?2",
        params![id, ch, serde_json::to_string(&reactions).map_err(internal)?],
    )?;
    let payload = rules::reacted(
        r.message_id.clone().into(),
        r.emoji,
        r.user_id.clone().into(),
        r.add,
    );
    Ok(Some(append_event(c, ch, r.at, payload)?))
}

/// [`crate::store::Store::advance_delivered`]: every member's watermark, then one event.
pub(super) fn advance_delivered(
    c: &Connection,
    ch: &str,
    marks: Vec<(UserId, i64)>,
    announce: Vec<UserId>,
    emit: bool,
    at: OffsetDateTime,
) -> StoreResult<Option<Event>> {
    // One statement per member, the channel read once: a big channel's flush carries a mark for
    // each of its members (1,000 rows every flush), and it shares the writer with the sends.
    let Some(last_message) = c
        .prepare_cached("SELECT last_message_seq FROM channels WHERE id = ?1")?
        .query_row([ch], |r| r.get::<_, i64>(0))
        .optional()?
    else {
        return Ok(None);
    };
    // `rules::advance_marks` for a delivered mark: forward only, never past the channel's newest
    // message, the read watermark unchanged. A member not found (or not moved) returns no row.
    let mut update = c.prepare_cached(
        "UPDATE members SET delivered_seq = ?3 WHERE channel_id = ?1 AND user_id = ?2 AND delivered_seq < ?3
         RETURNING read_seq",
    )?;
    let mut moved = Vec::new();
    for (user, seq) in marks {
        let delivered = seq.min(last_message);
        let read: Option<i64> = update
            .query_row(params![ch, user.as_str(), delivered], |r| r.get(0))
            .optional()?;
        if let Some(read) = read {
            moved.push((user, (delivered, read)));
        }
    }
    drop(update);
    if emit {
        let mut current = c.prepare_cached(
            "SELECT delivered_seq, read_seq FROM members WHERE channel_id = ?1 AND user_id = ?2",
        )?;
        for user in announce {
            if moved.iter().any(|(u, _)| *u == user) {
                continue;
            }
            let marks: Option<(i64, i64)> = current
                .query_row(params![ch, user.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
            if let Some(marks) = marks {
                moved.push((user, marks));
            }
        }
    }
    match rules::receipts(moved) {
        Some(payload) if emit => Ok(Some(append_event(c, ch, at, payload)?)),
        _ => Ok(None),
    }
}

pub(super) fn advance_watermark(
    c: &Connection,
    ch: &str,
    user: String,
    mark: Watermark,
    emit: bool,
    at: OffsetDateTime,
) -> StoreResult<Option<Event>> {
    let row: Option<(i64, i64, i64)> = c
        .prepare_cached(
            "SELECT m.delivered_seq, m.read_seq, c.last_message_seq FROM members m JOIN channels c ON c.id = m.channel_id
             WHERE m.channel_id = ?1 AND m.user_id = ?2",
        )?
        .query_row([ch, user.as_str()], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?;
    let Some((delivered, read, last_message)) = row else {
        // No member row (or no channel): the user is not a member.
        return Err(StoreError::NotMember);
    };
    let Some(moved) = rules::advance_marks((delivered, read), last_message, mark) else {
        return Ok(None);
    };
    c.prepare_cached("UPDATE members SET delivered_seq = ?3, read_seq = ?4 WHERE channel_id = ?1 AND user_id = ?2")?
        .execute(params![ch, user, moved.0, moved.1])?;
    if !emit {
        return Ok(None);
    }
    Ok(Some(append_event(
        c,
        ch,
        at,
        rules::receipt(user.into(), moved),
    )?))
}
