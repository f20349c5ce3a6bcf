//! The names of what nodes exchange over the bus: one topic per channel, per user and per
//! user's presence, and the hub's interest in them. The hub reports interest as its sockets
//! come and go; the Redis transport (`cluster`) subscribes and routes by these names. Both
//! depend on this module, neither on the other's names (the hub never imports `cluster`).

pub(crate) const CHANNEL_TOPIC: &str = "fullslack:ch:";
const USER_TOPIC: &str = "fullslack:user:";
pub(crate) const PRESENCE_TOPIC: &str = "fullslack:presence:";

/// The topic of a channel's events.
pub fn channel_topic(channel_id: &str) -> String {
    format!("{CHANNEL_TOPIC}{channel_id}")
}

/// The topic of control for one user's sockets on every node (a revoked session).
pub fn user_topic(user_id: &str) -> String {
    format!("{USER_TOPIC}{user_id}")
}

/// The topic of a user's presence changes.
pub fn presence_topic(user_id: &str) -> String {
    format!("{PRESENCE_TOPIC}{user_id}")
}

/// A topic this node starts or stops needing, reported by the hub under its locks (so the
/// order of changes to one topic is kept).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Interest {
    Subscribe(String),
    Unsubscribe(String),
}
