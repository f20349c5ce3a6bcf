//! The documents of each collection, typed: a field is named once here (serde), and
//! `Collection<T>` reads and writes them. Converting a document into the wire type is where a
//! stored value that cannot be one (a time out of range, a missing password hash) becomes an
//! error naming the collection and the field; a document that does not deserialize at all is
//! reported by [`super::errors::read_error`] with its collection.

use mongodb::bson::DateTime as BsonDateTime;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::model::{
    Channel, ChannelId, ChannelKind, Event, EventPayload, Member, Message, MessageId, Presence,
    Reaction, Role, User, UserId,
};
use crate::store::rules::{self, undecodable, Undecodable};

pub(super) fn bdt(t: OffsetDateTime) -> BsonDateTime {
    BsonDateTime::from_millis(rules::ms(t))
}

fn time(
    d: BsonDateTime,
    collection: &'static str,
    field: &'static str,
) -> Result<OffsetDateTime, Undecodable> {
    let v = d.timestamp_millis();
    rules::from_ms(v).ok_or_else(|| undecodable(collection, field, format!("no time is {v} ms")))
}

fn opt_time(
    d: Option<BsonDateTime>,
    collection: &'static str,
    field: &'static str,
) -> Result<Option<OffsetDateTime>, Undecodable> {
    d.map(|d| time(d, collection, field)).transpose()
}

/// `users`: unique `username_key` (the lower-cased name).
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct UserDoc {
    #[serde(rename = "_id")]
    pub id: UserId,
    pub username: String,
    pub username_key: String,
    pub display_name: String,
    /// Absent only where a read projects it away (listing users never loads hashes).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub password_hash: Option<String>,
    pub created_at: BsonDateTime,
    pub last_seen: Option<BsonDateTime>,
}

impl UserDoc {
    pub fn into_user(self) -> Result<User, Undecodable> {
        Ok(User {
            id: self.id,
            username: self.username,
            display_name: self.display_name,
            created_at: time(self.created_at, "users", "created_at")?,
            last_seen: opt_time(self.last_seen, "users", "last_seen")?,
            presence: Presence::Offline,
        })
    }

    /// The user and its password hash (which this read must have loaded).
    pub fn into_user_and_hash(mut self) -> Result<(User, String), Undecodable> {
        let hash = self
            .password_hash
            .take()
            .ok_or_else(|| undecodable("users", "password_hash", "missing"))?;
        Ok((self.into_user()?, hash))
    }
}

/// `sessions`: TTL index on `expires_at`.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct SessionDoc {
    #[serde(rename = "_id")]
    pub id: String,
    pub user_id: UserId,
    pub created_at: BsonDateTime,
    pub expires_at: BsonDateTime,
}

/// `channels`: the sequence counters live here (`$inc` takes the next one).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct ChannelDoc {
    #[serde(rename = "_id")]
    pub id: ChannelId,
    pub kind: ChannelKind,
    pub name: String,
    pub topic: String,
    pub created_by: UserId,
    pub created_at: BsonDateTime,
    pub last_seq: i64,
    pub last_message_seq: i64,
    /// Only 1:1 and self DMs carry it (unique partial index).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub dm_key: Option<String>,
    /// Only public and private channels carry it (unique partial index: names are unique
    /// among those only).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub name_key: Option<String>,
}

impl ChannelDoc {
    /// The channel, without members (read separately).
    pub fn into_channel(self) -> Result<Channel, Undecodable> {
        Ok(Channel {
            id: self.id,
            kind: self.kind,
            name: self.name,
            topic: self.topic,
            created_by: self.created_by,
            created_at: time(self.created_at, "channels", "created_at")?,
            last_seq: self.last_seq,
            member_ids: Vec::new(),
            read_seq: None,
            unread: None,
        })
    }
}

/// A channel's id and sequence (the `memberships` projection).
#[derive(Debug, Deserialize)]
pub(super) struct ChannelSeqDoc {
    #[serde(rename = "_id")]
    pub id: ChannelId,
    pub last_seq: i64,
}

/// A channel's sequence counters (what a batch of sends reads, see [`super::batch`]).
#[derive(Debug, Deserialize)]
pub(super) struct ChannelSeqsDoc {
    #[serde(rename = "_id")]
    pub id: ChannelId,
    pub last_seq: i64,
    pub last_message_seq: i64,
}

/// Just an `_id` (projections that list channels).
#[derive(Debug, Deserialize)]
pub(super) struct ChannelIdDoc {
    #[serde(rename = "_id")]
    pub id: ChannelId,
}

/// `members`: unique `(channel_id, user_id)`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct MemberDoc {
    pub channel_id: ChannelId,
    pub user_id: UserId,
    pub role: Role,
    pub joined_at: BsonDateTime,
    pub read_seq: i64,
    pub delivered_seq: i64,
}

impl MemberDoc {
    /// A new member: `seen` is the channel's newest message (it starts having read and
    /// received everything before it joined).
    pub fn new(channel_id: &str, user_id: &str, role: Role, at: OffsetDateTime, seen: i64) -> Self {
        MemberDoc {
            channel_id: channel_id.into(),
            user_id: user_id.into(),
            role,
            joined_at: bdt(at),
            read_seq: seen,
            delivered_seq: seen,
        }
    }

    pub fn into_member(self) -> Result<Member, Undecodable> {
        Ok(Member {
            user_id: self.user_id,
            role: self.role,
            joined_at: time(self.joined_at, "members", "joined_at")?,
            read_seq: self.read_seq,
            delivered_seq: self.delivered_seq,
        })
    }
}

/// A member's watermarks (what a batch of sends reads, see [`super::batch`]).
#[derive(Debug, Deserialize)]
pub(super) struct MemberMarksDoc {
    pub channel_id: ChannelId,
    pub user_id: UserId,
    pub read_seq: i64,
    pub delivered_seq: i64,
}

/// One field of a member document (the projections that list ids).
#[derive(Debug, Deserialize)]
pub(super) struct MemberUserDoc {
    pub user_id: UserId,
}

#[derive(Debug, Deserialize)]
pub(super) struct MemberChannelDoc {
    pub channel_id: ChannelId,
}

/// `messages`: unique `(author_id, client_id)` (it answers repeated sends), unique
/// `(channel_id, seq)`, index `(channel_id, thread_root, seq)`. A message document is also its
/// `message` event in the channel's replay log (no copy in `events` since issue 15).
/// `thread_root` and `edited_at` are stored as null when absent (queries match on null).
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct MessageDoc {
    #[serde(rename = "_id")]
    pub id: MessageId,
    pub channel_id: ChannelId,
    pub seq: i64,
    pub author_id: UserId,
    pub client_id: String,
    pub text: String,
    pub thread_root: Option<MessageId>,
    pub reply_count: i64,
    pub created_at: BsonDateTime,
    pub edited_at: Option<BsonDateTime>,
    pub deleted: bool,
    pub reactions: Vec<Reaction>,
    pub mentions: Vec<UserId>,
}

impl MessageDoc {
    pub fn from_message(m: &Message) -> Self {
        MessageDoc {
            id: m.id.clone(),
            channel_id: m.channel_id.clone(),
            seq: m.seq,
            author_id: m.author_id.clone(),
            client_id: m.client_id.clone(),
            text: m.text.clone(),
            thread_root: m.thread_root.clone(),
            reply_count: m.reply_count,
            created_at: bdt(m.created_at),
            edited_at: m.edited_at.map(bdt),
            deleted: m.deleted,
            reactions: m.reactions.clone(),
            mentions: m.mentions.clone(),
        }
    }

    pub fn into_message(self) -> Result<Message, Undecodable> {
        Ok(Message {
            id: self.id,
            channel_id: self.channel_id,
            seq: self.seq,
            author_id: self.author_id,
            client_id: self.client_id,
            text: self.text,
            thread_root: self.thread_root,
            reply_count: self.reply_count,
            created_at: time(self.created_at, "messages", "created_at")?,
            edited_at: opt_time(self.edited_at, "messages", "edited_at")?,
            deleted: self.deleted,
            reactions: self.reactions,
            mentions: self.mentions,
        })
    }
}

/// `events`: unique `(channel_id, seq)`; every event but messages (those are their message
/// documents; `message` events written before issue 15 are copies the reads skip). The payload
/// is stored as JSON text: it round-trips exactly (numbers stay numbers).
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct EventDoc {
    pub channel_id: ChannelId,
    pub seq: i64,
    pub kind: String,
    pub at: BsonDateTime,
    pub data: String,
}

impl EventDoc {
    pub fn from_event(e: &Event) -> Self {
        EventDoc {
            channel_id: e.channel.clone(),
            seq: e.seq,
            kind: e.kind().as_str().to_string(),
            at: bdt(e.at),
            data: e.payload.to_stored(),
        }
    }

    /// A stored event; one whose kind or payload does not decode is an error, never a default.
    pub fn into_event(self) -> Result<Event, Undecodable> {
        Ok(Event {
            payload: EventPayload::decode_stored(&self.kind, &self.data)
                .map_err(|e| undecodable("events", "data", e))?,
            channel: self.channel_id,
            seq: self.seq,
            at: time(self.at, "events", "at")?,
        })
    }
}
