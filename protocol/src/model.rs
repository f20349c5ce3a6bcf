//! The JSON objects of docs/protocol.md ("Objects"): what the REST API answers and what
//! WebSocket frames and events carry. Field order is the wire order.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

use crate::ids::{ChannelId, MessageId, UserId};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Presence {
    Online,
    Away,
    Offline,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct User {
    pub id: UserId,
    pub username: String,
    pub display_name: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String)]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>)]
    pub last_seen: Option<OffsetDateTime>,
    pub presence: Presence,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ChannelKind {
    Public,
    Private,
    Dm,
    Group,
}

impl ChannelKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelKind::Public => "public",
            ChannelKind::Private => "private",
            ChannelKind::Dm => "dm",
            ChannelKind::Group => "group",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "public" => ChannelKind::Public,
            "private" => ChannelKind::Private,
            "dm" => ChannelKind::Dm,
            "group" => ChannelKind::Group,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Channel {
    pub id: ChannelId,
    pub kind: ChannelKind,
    pub name: String,
    pub topic: String,
    pub created_by: UserId,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String)]
    pub created_at: OffsetDateTime,
    pub last_seq: i64,
    pub member_ids: Vec<UserId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read_seq: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unread: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Owner,
    Member,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Member {
    pub user_id: UserId,
    pub role: Role,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String)]
    pub joined_at: OffsetDateTime,
    pub read_seq: i64,
    pub delivered_seq: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct Reaction {
    pub emoji: String,
    pub user_ids: Vec<UserId>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Message {
    pub id: MessageId,
    pub channel_id: ChannelId,
    pub seq: i64,
    pub author_id: UserId,
    pub client_id: String,
    pub text: String,
    pub thread_root: Option<MessageId>,
    pub reply_count: i64,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String)]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>)]
    pub edited_at: Option<OffsetDateTime>,
    pub deleted: bool,
    pub reactions: Vec<Reaction>,
    pub mentions: Vec<UserId>,
}

/// What a durable send answers (WS `ack` and REST `POST …/messages`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Ack {
    pub channel: ChannelId,
    pub seq: i64,
    pub message_id: MessageId,
    pub client_id: String,
    pub duplicate: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ReceiptStatus {
    Sent,
    Delivered,
    Read,
}

impl Member {
    /// WhatsApp-style status of the message with sequence `seq` for this member.
    pub fn status_of(&self, seq: i64) -> ReceiptStatus {
        if self.read_seq >= seq {
            ReceiptStatus::Read
        } else if self.delivered_seq >= seq {
            ReceiptStatus::Delivered
        } else {
            ReceiptStatus::Sent
        }
    }
}
