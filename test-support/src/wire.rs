//! The server's answers read as the protocol's types, for assertions on meaning rather than
//! on JSON keys: a frame that does not decode fails the test, naming the type and showing the
//! frame. The API client keeps frames as raw JSON (tests also check what is *not* protocol,
//! such as its `__close` marker); these turn one into a typed value where a test wants it.

use fullslack_protocol::{Ack, AckBody, Event, EventPayload, Message, ServerFrame};
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
