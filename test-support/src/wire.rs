//! The server's answers read as the protocol's types, for assertions on meaning rather than
//! on JSON keys: a frame that does not decode fails the test, naming the type and showing the
//! frame. The API client keeps frames as raw JSON (tests also check what is *not* protocol,
//! such as its `__close` marker); these turn one into a typed value where a test wants it.

use fullslack_protocol::{Ack, AckBody, Event, EventPayload, Message, ReceiptData, ServerFrame};
use serde::de::DeserializeOwned;
use serde_json::Value;

/// `v` as a `T`; panics with the type's name, the error and the JSON when it does not decode.
pub fn decode<T: DeserializeOwned>(v: &Value) -> T {
    serde_json::from_value(v.clone())
        .unwrap_or_else(|e| panic!("not a {}: {e}\n{v}", std::any::type_name::<T>()))
}

/// A WebSocket frame from the server.
pub fn frame(v: &Value) -> ServerFrame {
    decode(v)
}

/// The ack of a `send`; panics on any other frame (an error frame included).
pub fn send_ack(v: &Value) -> Ack {
    match frame(v) {
        ServerFrame::Ack {
            ack: AckBody::Send(ack),
            ..
        } => ack,
        other => panic!("not the ack of a send: {other:?}"),
    }
}

/// The event of an `event` frame (or of a replayed event).
pub fn event(v: &Value) -> Event {
    match frame(v) {
        ServerFrame::Event(event) => event,
        other => panic!("not an event: {other:?}"),
    }
}

/// What a `receipt` or `receipts` event frame says of `user`'s watermarks; `None` for any other
/// frame, or one that does not name `user`. (A flush of receipts says several members' in one
/// `receipts` event, a read or a lone member's move is a `receipt`: tests should not care.)
pub fn receipt_of(v: &Value, user: &str) -> Option<ReceiptData> {
    if v["type"] != "event" || !matches!(v["kind"].as_str(), Some("receipt" | "receipts")) {
        return None;
    }
    match event(v).payload {
        EventPayload::Receipt(r) => Some(r),
        EventPayload::Receipts(rs) => rs.receipts.into_iter().find(|r| r.user_id.as_str() == user),
        other => panic!("not a receipt: {other:?}"),
    }
    .filter(|r| r.user_id.as_str() == user)
}

/// The message a `message` event carries.
pub fn message(v: &Value) -> Message {
    match event(v).payload {
        EventPayload::Message(message) => message,
        other => panic!("not a message event: {other:?}"),
    }
}

/// The `code` of an `error` frame; panics on any other frame.
pub fn error_code(v: &Value) -> String {
    match frame(v) {
        ServerFrame::Error { code, .. } => code.into_owned(),
        other => panic!("not an error: {other:?}"),
    }
}
