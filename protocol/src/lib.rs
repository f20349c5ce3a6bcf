//! fullslack-protocol: the one definition of the chat's wire protocol (docs/protocol.md is its
//! prose contract). The server, the load tool, `fullslack health` and the tests all speak
//! through these types, so a frame or payload is spelled once. No I/O here: only serde types
//! whose JSON is exactly what the web client reads.
//!
//! Module map:
//!
//! | module | what it is |
//! | --- | --- |
//! | [`ids`] | newtype ids ([`UserId`], [`ChannelId`], [`MessageId`], [`SessionId`]), plain strings on the wire |
//! | [`model`] | the JSON objects: [`User`], [`Channel`], [`Message`], [`Member`], [`Ack`] … |
//! | [`event`] | a channel's replay log entry [`Event`] and its typed [`EventPayload`], one variant per kind |
//! | [`frames`] | WebSocket frames: [`ClientFrame`] (with its two-step parse) and [`ServerFrame`] |
//! | [`rest`] | REST request and answer bodies, query strings and the error body |
//! | [`settings`] | the environment variable names the server reads its settings from (for the deploy tool) |

pub mod event;
pub mod frames;
pub mod ids;
pub mod model;
pub mod rest;
pub mod settings;

pub use event::{
    DeleteData, EditData, Event, EventKind, EventPayload, MemberJoinedData, MemberLeftData,
    PayloadError, ReactionData, ReceiptData, ReceiptsData,
};
pub use frames::{
    event_frame, parse_client_frame, AckBody, ClientFrame, ClientPresence, FrameError, Limits,
    ServerFrame, MAX_PRESENCE_IDS,
};
pub use ids::{ChannelId, MessageId, SessionId, UserId};
pub use model::{
    Ack, Channel, ChannelKind, Member, Message, Presence, Reaction, ReceiptStatus, Role, User,
};
