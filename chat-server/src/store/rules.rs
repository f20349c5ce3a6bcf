//! The rules both drivers keep, computed once: how a message, a user and each event payload
//! are built from a write's inputs, how reactions toggle, how watermarks move, how stored
//! times, roles and search words are encoded, and what an undecodable row is. A driver only
//! decides where these values live (SQL rows, BSON documents); what they are is decided here,
//! so the two cannot drift apart.

use time::OffsetDateTime;

use super::{NewMessage, NewUser, StoreError, Watermark};
use crate::model::{
    ChannelKind, DeleteData, EditData, EventPayload, MemberJoinedData, MemberLeftData, Message,
    MessageId, Presence, Reaction, ReactionData, ReceiptData, ReceiptsData, Role, User, UserId,
};

/// A stored time, in milliseconds since the Unix epoch (what both drivers keep).
pub fn ms(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

/// The time `ms` stored; `None` for a value no date can have.
pub fn from_ms(v: i64) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(v) * 1_000_000).ok()
}

/// Names are unique among public and private channels only (DMs and groups repeat them).
pub fn has_unique_name(kind: ChannelKind) -> bool {
    matches!(kind, ChannelKind::Public | ChannelKind::Private)
}

/// User names are unique case-insensitively: this key is what the unique index holds.
pub fn username_key(username: &str) -> String {
    username.to_lowercase()
}

pub fn role_str(role: Role) -> &'static str {
    match role {
        Role::Owner => "owner",
        Role::Member => "member",
    }
}

pub fn parse_role(s: &str) -> Option<Role> {
    match s {
        "owner" => Some(Role::Owner),
        "member" => Some(Role::Member),
        _ => None,
    }
}

/// A stored row or document whose field does not decode: corrupt data, reported with where it
/// is, never replaced by a default.
#[derive(Debug)]
pub struct Undecodable {
    pub table: &'static str,
    pub field: &'static str,
    pub why: String,
}

impl std::fmt::Display for Undecodable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "undecodable {}.{}: {}", self.table, self.field, self.why)
    }
}

impl std::error::Error for Undecodable {}

impl From<Undecodable> for StoreError {
    fn from(e: Undecodable) -> Self {
        StoreError::Internal(e.to_string())
    }
}

pub fn undecodable(table: &'static str, field: &'static str, why: impl ToString) -> Undecodable {
    Undecodable {
        table,
        field,
        why: why.to_string(),
    }
}

/// The user a `create_user` stores, as it is answered.
pub fn new_user(u: NewUser) -> User {
    User {
        id: u.id,
        username: u.username,
        display_name: u.display_name,
        created_at: u.created_at,
        last_seen: None,
        presence: Presence::Offline,
    }
}

/// The message an `append_message` stores under `seq`: no replies, edits or reactions yet.
pub fn new_message(m: NewMessage, seq: i64) -> Message {
    Message {
        id: m.id,
        channel_id: m.channel_id,
        seq,
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
    }
}

pub fn member_joined(user_id: UserId, by: UserId) -> EventPayload {
    EventPayload::MemberJoined(MemberJoinedData { user_id, by })
}

pub fn member_left(user_id: UserId) -> EventPayload {
    EventPayload::MemberLeft(MemberLeftData { user_id })
}

pub fn edited(
    message_id: MessageId,
    text: String,
    at: OffsetDateTime,
    mentions: Vec<UserId>,
) -> EventPayload {
    EventPayload::Edit(EditData {
        message_id,
        text,
        edited_at: at,
        mentions,
    })
}

pub fn deleted(message_id: MessageId) -> EventPayload {
    EventPayload::Delete(DeleteData { message_id })
}

pub fn reacted(message_id: MessageId, emoji: String, user_id: UserId, add: bool) -> EventPayload {
    EventPayload::Reaction(ReactionData {
        message_id,
        emoji,
        user_id,
        added: add,
    })
}

/// A member's watermarks, `(delivered, read)`.
pub type Marks = (i64, i64);

/// Where `mark` moves a member's `(delivered, read)`: never back, never past the channel's
/// newest message (watermarks only point at messages: receipts about receipts would never
/// end), and reading implies delivered. `None` when nothing moves.
pub fn advance_marks(current: Marks, last_message_seq: i64, mark: Watermark) -> Option<Marks> {
    let (delivered, read) = current;
    let moved = match mark {
        Watermark::Delivered(s) => (delivered.max(s.min(last_message_seq)), read),
        Watermark::Read(s) => {
            let r = read.max(s.min(last_message_seq));
            (delivered.max(r), r)
        }
    };
    (moved != current).then_some(moved)
}

pub fn receipt(user_id: UserId, (delivered_seq, read_seq): Marks) -> EventPayload {
    EventPayload::Receipt(ReceiptData {
        user_id,
        delivered_seq,
        read_seq,
    })
}

/// The event of several members' watermarks that moved together: `receipt` for one (as it
/// always was), `receipts` for more; `None` when none moved.
pub fn receipts(mut moved: Vec<(UserId, Marks)>) -> Option<EventPayload> {
    if moved.len() <= 1 {
        let (user_id, marks) = moved.pop()?;
        return Some(receipt(user_id, marks));
    }
    let receipts = moved
        .into_iter()
        .map(|(user_id, (delivered_seq, read_seq))| ReceiptData {
            user_id,
            delivered_seq,
            read_seq,
        })
        .collect();
    Some(EventPayload::Receipts(ReceiptsData { receipts }))
}

/// Adds (`add`) or removes `user`'s `emoji` reaction in `reactions`, dropping reactions left
/// with no users; false when nothing changed (already there, or not there to remove). Both
/// drivers store the list this computes.
pub fn toggle_reaction(reactions: &mut Vec<Reaction>, emoji: &str, user: &str, add: bool) -> bool {
    let changed = match (reactions.iter_mut().find(|r| r.emoji == emoji), add) {
        (Some(r), true) if !r.user_ids.iter().any(|u| u == user) => {
            r.user_ids.push(user.into());
            true
        }
        (None, true) => {
            reactions.push(Reaction {
                emoji: emoji.to_string(),
                user_ids: vec![user.into()],
            });
            true
        }
        (Some(r), false) if r.user_ids.iter().any(|u| u == user) => {
            r.user_ids.retain(|u| u != user);
            true
        }
        _ => false,
    };
    reactions.retain(|r| !r.user_ids.is_empty());
    changed
}

/// The words a search query asks for (both drivers: every word must match, the last one as a
/// prefix). Only letters, digits, `_` and `'` make words, so what a driver builds from them
/// never carries query syntax.
pub fn search_words(query: &str) -> Vec<&str> {
    query
        .split(|c: char| !c.is_alphanumeric() && c != '_' && c != '\'')
        .filter(|w| !w.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reactions_toggle_and_empty_ones_go() {
        let mut r = Vec::new();
        assert!(toggle_reaction(&mut r, "🎉", "a", true));
        assert!(!toggle_reaction(&mut r, "🎉", "a", true), "already there");
        assert!(toggle_reaction(&mut r, "🎉", "b", true));
        assert!(toggle_reaction(&mut r, "👍", "a", true));
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].user_ids, vec!["a".to_string(), "b".to_string()]);
        assert!(
            !toggle_reaction(&mut r, "👍", "b", false),
            "not there to remove"
        );
        assert!(toggle_reaction(&mut r, "🎉", "a", false));
        assert_eq!(r[0].user_ids, vec!["b".to_string()]);
        assert!(toggle_reaction(&mut r, "👍", "a", false));
        assert_eq!(r.len(), 1, "a reaction nobody holds is dropped");
        assert!(!toggle_reaction(&mut r, "❤️", "a", false));
    }

    #[test]
    fn watermarks_move_forward_up_to_the_newest_message() {
        assert_eq!(
            advance_marks((2, 1), 5, Watermark::Delivered(9)),
            Some((5, 1))
        );
        assert_eq!(advance_marks((2, 1), 5, Watermark::Read(3)), Some((3, 3)));
        assert_eq!(advance_marks((4, 1), 5, Watermark::Read(3)), Some((4, 3)));
        assert_eq!(advance_marks((4, 3), 5, Watermark::Delivered(2)), None);
        assert_eq!(advance_marks((5, 5), 5, Watermark::Read(7)), None);
    }
}
