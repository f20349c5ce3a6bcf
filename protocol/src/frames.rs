//! WebSocket frames (docs/protocol.md, "WebSocket"). Client frames are parsed in two steps so
//! that a frame that is not JSON, not an object, of an unknown type, or missing a field each
//! gets its own precise error code, and the frame's `ref` is echoed even when the rest is
//! wrong. Both directions serialize and deserialize: the server reads what clients write and
//! the clients (load tool, health check, tests) read what the server writes.

use std::{borrow::Cow, collections::HashMap};

use serde::{Deserialize, Serialize};

use crate::{
    event::Event,
    ids::{ChannelId, MessageId, SessionId, UserId},
    model::{Ack, Channel, Presence, User},
};

/// Most user ids one `presence_subscribe` frame may carry: each frame's work (one store read,
/// one presence lookup, one answer per id) stays bounded; a client with more users sends
/// several frames.
pub const MAX_PRESENCE_IDS: usize = 500;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientFrame {
    Resume {
        #[serde(default)]
        channels: HashMap<ChannelId, i64>,
    },
    Send {
        #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
        reference: Option<String>,
        channel: ChannelId,
        client_id: String,
        text: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        thread_root: Option<MessageId>,
    },
    Edit {
        #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
        reference: Option<String>,
        channel: ChannelId,
        message_id: MessageId,
        text: String,
    },
    Delete {
        #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
        reference: Option<String>,
        channel: ChannelId,
        message_id: MessageId,
    },
    React {
        #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
        reference: Option<String>,
        channel: ChannelId,
        message_id: MessageId,
        emoji: String,
        add: bool,
    },
    Read {
        #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
        reference: Option<String>,
        channel: ChannelId,
        seq: i64,
    },
    Typing {
        channel: ChannelId,
    },
    Presence {
        status: ClientPresence,
    },
    /// At most [`MAX_PRESENCE_IDS`] ids.
    PresenceSubscribe {
        user_ids: Vec<UserId>,
    },
    Ping {
        #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
        reference: Option<String>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientPresence {
    Online,
    Away,
}

const KNOWN_TYPES: &[&str] = &[
    "resume",
    "send",
    "edit",
    "delete",
    "react",
    "read",
    "typing",
    "presence",
    "presence_subscribe",
    "ping",
];

/// Why a text frame could not be understood.
#[derive(Debug, Clone, PartialEq)]
pub struct FrameError {
    pub reference: Option<String>,
    pub code: &'static str,
    pub message: String,
}

/// Parses one text frame.
pub fn parse_client_frame(text: &str) -> Result<ClientFrame, FrameError> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| FrameError {
        reference: None,
        code: "bad_frame",
        message: format!("not valid JSON: {e}"),
    })?;
    let obj = value.as_object().ok_or_else(|| FrameError {
        reference: None,
        code: "bad_frame",
        message: "a frame must be a JSON object".into(),
    })?;
    let reference = obj
        .get("ref")
        .and_then(|r| r.as_str())
        .map(|r| r.chars().take(64).collect());
    let ty = match obj.get("type").and_then(|t| t.as_str()) {
        Some(t) => t.to_string(),
        None => {
            return Err(FrameError {
                reference,
                code: "bad_frame",
                message: "missing string field `type`".into(),
            });
        }
    };
    if !KNOWN_TYPES.contains(&ty.as_str()) {
        let shown: String = ty.chars().take(40).collect();
        return Err(FrameError {
            reference,
            code: "unknown_type",
            message: format!("unknown frame type {shown:?}"),
        });
    }
    serde_json::from_value(value).map_err(|e| FrameError {
        reference,
        code: "bad_frame",
        message: format!("invalid `{ty}` frame: {e}"),
    })
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Limits {
    pub max_message_len: usize,
    pub max_frame_bytes: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame {
    Hello {
        user: User,
        session_id: SessionId,
        heartbeat_ms: u64,
        limits: Limits,
    },
    Resumed {
        channels: HashMap<ChannelId, i64>,
    },
    Ack {
        #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
        reference: Option<String>,
        #[serde(flatten)]
        ack: AckBody,
    },
    Typing {
        channel: ChannelId,
        user_id: UserId,
        expires_in_ms: u64,
    },
    Presence {
        user_id: UserId,
        status: Presence,
        #[serde(with = "time::serde::rfc3339::option")]
        last_seen: Option<time::OffsetDateTime>,
    },
    ChannelAdded {
        channel: Channel,
    },
    ChannelRemoved {
        channel_id: ChannelId,
    },
    Pong {
        #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
        reference: Option<String>,
    },
    Error {
        #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
        reference: Option<String>,
        code: Cow<'static, str>,
        message: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_after_ms: Option<u64>,
    },
    /// A channel event. The server writes these through [`event_frame`] (serialized once for
    /// every connection); clients read them as this variant.
    Event(Event),
}

/// An `ack`: for sends the full [`Ack`]; for other writes the channel and the event's seq.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum AckBody {
    Send(Ack),
    Change {
        channel: ChannelId,
        seq: Option<i64>,
    },
}

impl ServerFrame {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self)
            .unwrap_or_else(|_| r#"{"type":"error","code":"internal","message":"encoding"}"#.into())
    }
}

/// `{"type":"event", …event}`: the frame every channel event travels in.
pub fn event_frame(event: &Event) -> String {
    #[derive(Serialize)]
    struct EventFrame<'a> {
        #[serde(rename = "type")]
        ty: &'static str,
        #[serde(flatten)]
        event: &'a Event,
    }
    serde_json::to_string(&EventFrame { ty: "event", event }).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_of_bad_frame_has_its_own_code() {
        let e = parse_client_frame("{not json").unwrap_err();
        assert_eq!(e.code, "bad_frame");
        assert_eq!(parse_client_frame("[1,2]").unwrap_err().code, "bad_frame");
        let e = parse_client_frame(r#"{"type":"launch","ref":"r9"}"#).unwrap_err();
        assert_eq!(
            (e.code, e.reference.as_deref()),
            ("unknown_type", Some("r9"))
        );
        let e = parse_client_frame(r#"{"type":"send","ref":"r1","channel":"c"}"#).unwrap_err();
        assert_eq!((e.code, e.reference.as_deref()), ("bad_frame", Some("r1")));
        assert!(e.message.contains("client_id"), "{}", e.message);
        let e = parse_client_frame(r#"{"type":"ping","bogus":1}"#).unwrap_err();
        assert_eq!(e.code, "bad_frame");
    }

    #[test]
    fn good_frames_parse() {
        let f = parse_client_frame(
            r#"{"type":"send","ref":"a","channel":"c","client_id":"x","text":"hi"}"#,
        )
        .unwrap();
        assert!(matches!(f, ClientFrame::Send { ref text, thread_root: None, .. } if text == "hi"));
        let f = parse_client_frame(r#"{"type":"resume","channels":{"c":4}}"#).unwrap();
        assert!(matches!(f, ClientFrame::Resume { ref channels } if channels["c"] == 4));
    }

    #[test]
    fn client_frames_write_what_the_server_reads() {
        let send = ClientFrame::Send {
            reference: Some("r1".into()),
            channel: "c".into(),
            client_id: "x".into(),
            text: "hi".into(),
            thread_root: None,
        };
        let json = serde_json::to_string(&send).unwrap();
        assert_eq!(
            json,
            r#"{"type":"send","ref":"r1","channel":"c","client_id":"x","text":"hi"}"#
        );
        assert_eq!(parse_client_frame(&json).unwrap(), send);
        let ping = serde_json::to_string(&ClientFrame::Ping { reference: None }).unwrap();
        assert_eq!(ping, r#"{"type":"ping"}"#);
    }

    #[test]
    fn server_frames_read_back() {
        let ack = r#"{"type":"ack","ref":"r","channel":"c","seq":4,"message_id":"m","client_id":"x","duplicate":false}"#;
        let frame: ServerFrame = serde_json::from_str(ack).unwrap();
        assert!(matches!(frame, ServerFrame::Ack { ack: AckBody::Send(ref a), .. } if a.seq == 4));
        assert_eq!(frame.to_json(), ack);
        let change: ServerFrame =
            serde_json::from_str(r#"{"type":"ack","channel":"c","seq":null}"#).unwrap();
        assert!(matches!(
            change,
            ServerFrame::Ack {
                ack: AckBody::Change { seq: None, .. },
                ..
            }
        ));
        let err: ServerFrame = serde_json::from_str(
            r#"{"type":"error","code":"rate_limited","message":"slow","retry_after_ms":5}"#,
        )
        .unwrap();
        assert!(
            matches!(err, ServerFrame::Error { ref code, retry_after_ms: Some(5), .. } if code == "rate_limited")
        );
    }

    #[test]
    fn event_frames_read_back_as_events() {
        let event = Event {
            channel: "c".into(),
            seq: 2,
            at: time::OffsetDateTime::from_unix_timestamp(0).unwrap(),
            payload: crate::EventPayload::MemberLeft(crate::MemberLeftData {
                user_id: "u".into(),
            }),
        };
        let text = event_frame(&event);
        assert_eq!(
            text,
            r#"{"type":"event","channel":"c","seq":2,"kind":"member_left","at":"1970-01-01T00:00:00Z","data":{"user_id":"u"}}"#
        );
        let frame: ServerFrame = serde_json::from_str(&text).unwrap();
        assert_eq!(frame, ServerFrame::Event(event.clone()));
        assert_eq!(frame.to_json(), text);
    }
}
