//! Channel events: one entry of a channel's replay log, as the WebSocket (`{"type": "event",
//! …}`) and `GET /api/channels/:id/events` carry it. The payload is a typed enum with one
//! variant per kind, so the stores write it and the hub reads it without digging by key, and
//! a stored event that does not decode is an error rather than a silent default.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::OffsetDateTime;
use utoipa::{
    openapi::{schema::Schema, RefOr},
    PartialSchema, ToSchema,
};

use crate::{
    ids::{ChannelId, MessageId, UserId},
    model::Message,
};

/// One entry of a channel's replay log: every visible change takes the channel's next `seq`.
/// On the wire: `{"channel", "seq", "kind", "at", "data"}`, `kind` naming the shape of `data`.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub channel: ChannelId,
    pub seq: i64,
    pub at: OffsetDateTime,
    pub payload: EventPayload,
}

impl Event {
    pub fn kind(&self) -> EventKind {
        self.payload.kind()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    Message,
    Edit,
    Delete,
    Reaction,
    Receipt,
    MemberJoined,
    MemberLeft,
    /// Several members' watermarks moved together (delivered receipts, aggregated per flush).
    Receipts,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Message => "message",
            EventKind::Edit => "edit",
            EventKind::Delete => "delete",
            EventKind::Reaction => "reaction",
            EventKind::Receipt => "receipt",
            EventKind::MemberJoined => "member_joined",
            EventKind::MemberLeft => "member_left",
            EventKind::Receipts => "receipts",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        serde_json::from_value(serde_json::Value::String(s.to_string())).ok()
    }
}

/// An event's `data`, one variant per [`EventKind`]. Serializes as the bare `data` object (the
/// kind travels beside it); decoding needs the kind, see [`EventPayload::decode`].
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum EventPayload {
    /// The whole message (a thread reply has `thread_root`).
    Message(Message),
    Edit(EditData),
    Delete(DeleteData),
    Reaction(ReactionData),
    /// That member's watermarks moved.
    Receipt(ReceiptData),
    MemberJoined(MemberJoinedData),
    MemberLeft(MemberLeftData),
    /// Those members' watermarks moved (one event for several `receipt`s).
    Receipts(ReceiptsData),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EditData {
    pub message_id: MessageId,
    pub text: String,
    #[serde(with = "time::serde::rfc3339")]
    pub edited_at: OffsetDateTime,
    pub mentions: Vec<UserId>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteData {
    pub message_id: MessageId,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReactionData {
    pub message_id: MessageId,
    pub emoji: String,
    pub user_id: UserId,
    pub added: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiptData {
    pub user_id: UserId,
    pub delivered_seq: i64,
    pub read_seq: i64,
}

/// Several members' watermarks, each as a `receipt` event's `data` would say it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiptsData {
    pub receipts: Vec<ReceiptData>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberJoinedData {
    pub user_id: UserId,
    /// Who added them (themselves when they joined a public channel).
    pub by: UserId,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberLeftData {
    pub user_id: UserId,
}

impl EventPayload {
    pub fn kind(&self) -> EventKind {
        match self {
            EventPayload::Message(_) => EventKind::Message,
            EventPayload::Edit(_) => EventKind::Edit,
            EventPayload::Delete(_) => EventKind::Delete,
            EventPayload::Reaction(_) => EventKind::Reaction,
            EventPayload::Receipt(_) => EventKind::Receipt,
            EventPayload::MemberJoined(_) => EventKind::MemberJoined,
            EventPayload::MemberLeft(_) => EventKind::MemberLeft,
            EventPayload::Receipts(_) => EventKind::Receipts,
        }
    }

    /// Reads `data` as the payload of `kind`.
    pub fn decode(kind: EventKind, data: serde_json::Value) -> Result<Self, serde_json::Error> {
        use serde_json::from_value as from;
        Ok(match kind {
            EventKind::Message => EventPayload::Message(from(data)?),
            EventKind::Edit => EventPayload::Edit(from(data)?),
            EventKind::Delete => EventPayload::Delete(from(data)?),
            EventKind::Reaction => EventPayload::Reaction(from(data)?),
            EventKind::Receipt => EventPayload::Receipt(from(data)?),
            EventKind::MemberJoined => EventPayload::MemberJoined(from(data)?),
            EventKind::MemberLeft => EventPayload::MemberLeft(from(data)?),
            EventKind::Receipts => EventPayload::Receipts(from(data)?),
        })
    }

    /// Reads a stored event: its kind's name and its `data` as JSON text (how both store
    /// drivers keep it).
    pub fn decode_stored(kind: &str, data: &str) -> Result<Self, PayloadError> {
        let kind_parsed =
            EventKind::parse(kind).ok_or_else(|| PayloadError::UnknownKind(kind.to_string()))?;
        let bad = |source| PayloadError::BadData {
            kind: kind_parsed,
            source,
        };
        let value = serde_json::from_str(data).map_err(bad)?;
        Self::decode(kind_parsed, value).map_err(bad)
    }

    /// The `data` as JSON text, as the stores keep it.
    pub fn to_stored(&self) -> String {
        serde_json::to_string(self).expect("event payloads always serialize")
    }

    /// The member an event is about (joined, left, reacted, moved a watermark): the hub routes
    /// membership changes to that user's sockets.
    pub fn subject_user(&self) -> Option<&UserId> {
        match self {
            EventPayload::Reaction(d) => Some(&d.user_id),
            EventPayload::Receipt(d) => Some(&d.user_id),
            EventPayload::MemberJoined(d) => Some(&d.user_id),
            EventPayload::MemberLeft(d) => Some(&d.user_id),
            EventPayload::Message(_)
            | EventPayload::Edit(_)
            | EventPayload::Delete(_)
            | EventPayload::Receipts(_) => None,
        }
    }
}

/// Why a stored event could not be read back.
#[derive(Debug)]
pub enum PayloadError {
    UnknownKind(String),
    BadData {
        kind: EventKind,
        source: serde_json::Error,
    },
}

impl fmt::Display for PayloadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PayloadError::UnknownKind(kind) => write!(f, "unknown event kind {kind:?}"),
            PayloadError::BadData { kind, source } => {
                write!(f, "undecodable `{}` event data: {source}", kind.as_str())
            }
        }
    }
}

impl std::error::Error for PayloadError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PayloadError::UnknownKind(_) => None,
            PayloadError::BadData { source, .. } => Some(source),
        }
    }
}

/// [`Event`] as it is read off the wire, and its documented shape: `data` stays raw until
/// `kind` says what it is.
#[derive(Deserialize, ToSchema)]
#[schema(as = Event)]
struct EventWire {
    channel: ChannelId,
    seq: i64,
    kind: EventKind,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String)]
    at: OffsetDateTime,
    #[schema(value_type = Object)]
    data: serde_json::Value,
}

/// [`Event`] as it is written: the same fields in the same order, `data` borrowed.
#[derive(Serialize)]
struct EventWireRef<'a> {
    channel: &'a ChannelId,
    seq: i64,
    kind: EventKind,
    #[serde(with = "time::serde::rfc3339")]
    at: OffsetDateTime,
    data: &'a EventPayload,
}

impl Serialize for Event {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        EventWireRef {
            channel: &self.channel,
            seq: self.seq,
            kind: self.kind(),
            at: self.at,
            data: &self.payload,
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Event {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let wire = EventWire::deserialize(deserializer)?;
        let payload =
            EventPayload::decode(wire.kind, wire.data).map_err(serde::de::Error::custom)?;
        Ok(Event {
            channel: wire.channel,
            seq: wire.seq,
            at: wire.at,
            payload,
        })
    }
}

impl PartialSchema for Event {
    fn schema() -> RefOr<Schema> {
        EventWire::schema()
    }
}

impl ToSchema for Event {
    fn name() -> std::borrow::Cow<'static, str> {
        EventWire::name()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap()
    }

    #[test]
    fn payloads_keep_the_documented_field_order() {
        let ev = Event {
            channel: "c".into(),
            seq: 3,
            at: at(),
            payload: EventPayload::Reaction(ReactionData {
                message_id: "m".into(),
                emoji: "👍".into(),
                user_id: "u".into(),
                added: true,
            }),
        };
        let json = serde_json::to_string(&ev).unwrap();
        assert_eq!(
            json,
            r#"{"channel":"c","seq":3,"kind":"reaction","at":"2023-11-14T22:13:20Z","data":{"message_id":"m","emoji":"👍","user_id":"u","added":true}}"#
        );
        let back: Event = serde_json::from_str(&json).unwrap();
        assert_eq!(back, ev);
    }

    #[test]
    fn an_undecodable_stored_event_is_an_error() {
        assert!(matches!(
            EventPayload::decode_stored("channel_updated", "{}"),
            Err(PayloadError::UnknownKind(k)) if k == "channel_updated"
        ));
        assert!(matches!(
            EventPayload::decode_stored("delete", r#"{"user_id":"u"}"#),
            Err(PayloadError::BadData {
                kind: EventKind::Delete,
                ..
            })
        ));
        let ok = EventPayload::decode_stored("member_left", r#"{"user_id":"u"}"#).unwrap();
        assert_eq!(ok.subject_user().map(UserId::as_str), Some("u"));
        assert_eq!(ok.to_stored(), r#"{"user_id":"u"}"#);
    }
}
