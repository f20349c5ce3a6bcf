//! The data model shared by the store, the REST API and the WebSocket protocol: the objects
//! and events of the `fullslack-protocol` crate (which serialize to exactly the JSON of
//! docs/protocol.md), plus the server's own id and clock helpers.

use time::OffsetDateTime;

pub use fullslack_protocol::{
    event::{
        DeleteData, EditData, Event, EventKind, EventPayload, MemberJoinedData, MemberLeftData,
        PayloadError, ReactionData, ReceiptData, ReceiptsData,
    },
    ids::{ChannelId, MessageId, SessionId, UserId},
    model::{
        Ack, Channel, ChannelKind, Member, Message, Presence, Reaction, ReceiptStatus, Role, User,
    },
};

/// A fresh UUIDv7 id of any kind (ids sort by creation time).
pub fn new_id<I: From<String>>() -> I {
    I::from(uuid::Uuid::now_v7().to_string())
}

pub fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}
