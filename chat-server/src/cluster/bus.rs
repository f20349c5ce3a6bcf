//! What nodes publish to each other over Redis pub/sub, and what the node receives.
//!
//! A message is `origin \n header-json \n frame`: the origin node's id (a node ignores its
//! own), a compact [`Header`], and the event's frame verbatim (serialized once, on the node
//! that stored it). Publishes go through a bounded queue to [`run_publisher`], which pipelines
//! them; what arrives is decoded into a [`BusMessage`] for the node's [`BusHandler`].

use std::{sync::Arc, time::Duration};

use axum::extract::ws::Utf8Bytes;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio::sync::mpsc;

use super::Cluster;
use crate::{
    model::{ChannelId, EventKind, Presence, SessionId, UserId},
    topics::{channel_topic, presence_topic, user_topic},
};

/// Membership changes of every channel: all nodes listen (routing and channel caches).
pub const MEMBERS_TOPIC: &str = "fullslack:members";
/// Bound on one pipelined batch of publishes.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(2);
const PUBLISH_BATCH: usize = 512;

/// The header line of a bus message (the frame, if any, follows it verbatim).
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "t")]
enum Header {
    /// A channel event; `u` is the member concerned by membership events.
    #[serde(rename = "ev")]
    Event {
        c: ChannelId,
        s: i64,
        k: EventKind,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        a: Option<UserId>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        u: Option<UserId>,
    },
    /// Typing in channel `c` by user `u` (not relayed back to `u`).
    #[serde(rename = "ty")]
    Typing { c: ChannelId, u: UserId },
    #[serde(rename = "pr")]
    Presence {
        u: UserId,
        st: Presence,
        #[serde(default, with = "time::serde::rfc3339::option")]
        ls: Option<OffsetDateTime>,
    },
    /// Session `sid` of user `u` ended: close its sockets.
    #[serde(rename = "rv")]
    Revoke { u: UserId, sid: SessionId },
}

/// The node as the transport sees it: where messages from other nodes and changes of the link
/// go. The transport knows nothing else of the node.
pub trait BusHandler: Send + Sync + 'static {
    /// A message another node published, decoded, in bus order.
    fn on_message(&self, message: BusMessage);
    /// The link came (back) up: what happened meanwhile is in the store, not on the bus.
    fn healed(&self);
    /// A channel's topic was just subscribed: events published before it took were not heard.
    fn channel_subscribed(&self, channel_id: &str);
    /// Users' presence topics were just subscribed: a change just before it took was not heard.
    fn presence_subscribed(self: Arc<Self>, users: Vec<UserId>);
}

/// A stored channel event as the bus carries it: what routing needs, and the frame the node
/// that stored it serialized, verbatim.
#[derive(Debug)]
pub struct BusEvent {
    pub channel_id: ChannelId,
    pub seq: i64,
    pub kind: EventKind,
    /// For messages: who wrote it.
    pub author_id: Option<UserId>,
    /// For membership events: the user who joined or left.
    pub member: Option<UserId>,
    pub frame: Utf8Bytes,
}

/// A message from another node.
#[derive(Debug)]
pub enum BusMessage {
    /// A stored channel event; `member` is the user a membership event concerns.
    Event(BusEvent),
    /// Someone is typing in a channel (not relayed back to `user_id`'s sockets).
    Typing {
        channel_id: ChannelId,
        user_id: UserId,
        frame: Utf8Bytes,
    },
    /// A user's status across nodes changed.
    Presence {
        user_id: UserId,
        status: Presence,
        last_seen: Option<OffsetDateTime>,
    },
    /// A session ended: close its sockets.
    Revoke {
        user_id: UserId,
        session_id: SessionId,
    },
}

impl Cluster {
    /// Queues a message for the publisher; never waits. Dropped while Redis is down (the other
    /// nodes refill from the store when it returns).
    fn enqueue(&self, topic: String, header: &Header, body: &str) {
        if !self.is_up() {
            self.metrics.redis_dropped.inc();
            return;
        }
        let Ok(header) = serde_json::to_string(header) else {
            return;
        };
        let mut payload = String::with_capacity(self.node_id.len() + header.len() + body.len() + 2);
        payload.push_str(&self.node_id);
        payload.push('\n');
        payload.push_str(&header);
        payload.push('\n');
        payload.push_str(body);
        if self.outbox.try_send((topic, payload)).is_err() {
            self.metrics.redis_dropped.inc();
        }
    }

    /// Publishes a stored event: membership changes to every node, the rest to the channel.
    pub fn publish_event(&self, ev: BusEvent) {
        let membership = matches!(ev.kind, EventKind::MemberJoined | EventKind::MemberLeft);
        let topic = if membership {
            MEMBERS_TOPIC.to_string()
        } else {
            channel_topic(&ev.channel_id)
        };
        let header = Header::Event {
            c: ev.channel_id,
            s: ev.seq,
            k: ev.kind,
            a: ev.author_id,
            u: ev.member,
        };
        self.enqueue(topic, &header, ev.frame.as_str());
    }

    pub fn publish_typing(&self, channel_id: &str, user_id: &str, frame: &str) {
        let header = Header::Typing {
            c: channel_id.into(),
            u: user_id.into(),
        };
        self.enqueue(channel_topic(channel_id), &header, frame);
    }

    pub fn publish_presence(
        &self,
        user_id: &str,
        status: Presence,
        last_seen: Option<OffsetDateTime>,
    ) {
        let header = Header::Presence {
            u: user_id.into(),
            st: status,
            ls: last_seen,
        };
        self.enqueue(presence_topic(user_id), &header, "");
    }

    pub fn publish_revoke(&self, user_id: &str, session_id: &str) {
        let header = Header::Revoke {
            u: user_id.into(),
            sid: session_id.into(),
        };
        self.enqueue(user_topic(user_id), &header, "");
    }

    /// Decodes one bus message; `None` for this node's own messages and unreadable ones.
    pub(super) fn decode(&self, payload: &[u8]) -> Option<BusMessage> {
        let text = std::str::from_utf8(payload).ok()?;
        let (origin, rest) = text.split_once('\n')?;
        if origin == self.node_id {
            return None;
        }
        let (header, body) = rest.split_once('\n').unwrap_or((rest, ""));
        let header: Header = match serde_json::from_str(header) {
            Ok(h) => h,
            Err(e) => {
                tracing::debug!(error = %e, "unreadable bus message ignored");
                return None;
            }
        };
        self.metrics.redis_received.inc();
        Some(match header {
            Header::Event { c, s, k, a, u } => BusMessage::Event(BusEvent {
                channel_id: c,
                seq: s,
                kind: k,
                author_id: a,
                member: u,
                frame: Utf8Bytes::from(body.to_string()),
            }),
            Header::Typing { c, u } => BusMessage::Typing {
                channel_id: c,
                user_id: u,
                frame: Utf8Bytes::from(body.to_string()),
            },
            Header::Presence { u, st, ls } => BusMessage::Presence {
                user_id: u,
                status: st,
                last_seen: ls,
            },
            Header::Revoke { u, sid } => BusMessage::Revoke {
                user_id: u,
                session_id: sid,
            },
        })
    }
}

/// Drains the outbox, one pipelined batch of `PUBLISH`es at a time (order kept).
pub(super) async fn run_publisher(cluster: Arc<Cluster>, mut rx: mpsc::Receiver<(String, String)>) {
    let mut batch = Vec::with_capacity(PUBLISH_BATCH);
    while rx.recv_many(&mut batch, PUBLISH_BATCH).await > 0 {
        let n = batch.len() as u64;
        if !cluster.is_up() {
            cluster.metrics.redis_dropped.inc_by(n);
            batch.clear();
            continue;
        }
        let mut pipe = redis::pipe();
        for (topic, payload) in batch.drain(..) {
            pipe.cmd("PUBLISH").arg(topic).arg(payload).ignore();
        }
        let mut conn = cluster.conn.clone();
        let mut sent = tokio::time::timeout(PUBLISH_TIMEOUT, pipe.exec_async(&mut conn)).await;
        if let Ok(Err(e)) = &sent {
            // The manager reconnects after a dropped connection: one more try on the new one.
            if e.is_connection_dropped() || e.is_io_error() {
                sent = tokio::time::timeout(PUBLISH_TIMEOUT, pipe.exec_async(&mut conn)).await;
            }
        }
        match sent {
            Ok(Ok(())) => {
                cluster.metrics.redis_published.inc_by(n);
            }
            Ok(Err(e)) => {
                cluster.metrics.redis_dropped.inc_by(n);
                tracing::debug!(error = %e, "publish to redis failed");
                if e.is_connection_dropped() || e.is_io_error() || e.is_connection_refusal() {
                    cluster.kick.notify_one();
                }
            }
            Err(_) => {
                cluster.metrics.redis_dropped.inc_by(n);
                tracing::debug!("publish to redis timed out");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip_compactly() {
        let h = Header::Event {
            c: "c1".into(),
            s: 7,
            k: EventKind::Message,
            a: Some("u1".into()),
            u: None,
        };
        let json = serde_json::to_string(&h).unwrap();
        assert_eq!(json, r#"{"t":"ev","c":"c1","s":7,"k":"message","a":"u1"}"#);
        match serde_json::from_str::<Header>(&json).unwrap() {
            Header::Event { s, k, u, .. } => {
                assert_eq!((s, k, u), (7, EventKind::Message, None));
            }
            other => panic!("wrong variant {other:?}"),
        }
        let p: Header = serde_json::from_str(r#"{"t":"pr","u":"x","st":"offline"}"#).unwrap();
        assert!(matches!(p, Header::Presence { ls: None, .. }));
    }
}
