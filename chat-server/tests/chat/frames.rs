//! Bad input on the socket and the REST API gets precise errors; a retried send is stored once.

use super::*;

#[tokio::test]
async fn malformed_oversized_and_unknown_frames_get_errors_and_the_socket_keeps_working() {
    let server = TestServer::start_with(common::tempdir(), |s| {
        s.limits.max_message_len = 100;
        s.limits.max_frame_bytes = 4096;
    })
    .await;
    let alice = Client::register(&server, "alice").await;
    let ch = alice.dm(&[]).await;
    let mut a = alice.ws().await;

    a.stream.send(Message::text("{not json")).await.unwrap();
    assert_eq!(a.next().await["code"], "bad_frame");
    a.stream.send(Message::text("[]")).await.unwrap();
    assert_eq!(a.next().await["code"], "bad_frame");
    a.send(json!({"type": "teleport", "ref": "t"})).await;
    let e = a.next().await;
    assert_eq!(
        (e["code"].as_str(), e["ref"].as_str()),
        (Some("unknown_type"), Some("t"))
    );
    a.send(json!({"type": "send", "ref": "m", "channel": ch}))
        .await;
    let e = a.next().await;
    assert_eq!(
        (e["code"].as_str(), e["ref"].as_str()),
        (Some("bad_frame"), Some("m"))
    );
    a.stream
        .send(Message::binary(vec![1u8, 2, 3]))
        .await
        .unwrap();
    assert_eq!(a.next().await["code"], "binary_not_supported");
    let e = a.send_message(&ch, "long", &"x".repeat(101)).await;
    assert_eq!(e["code"], "message_too_long");
    let e = a.send_message(&ch, "empty", "   ").await;
    assert_eq!(e["code"], "bad_frame");
    // Still fine after all that.
    assert_eq!(
        a.send_message(&ch, "fine", "still here").await["type"],
        "ack"
    );
    a.send(json!({"type": "ping", "ref": "p"})).await;
    assert_eq!(a.next_where(|f| f["type"] == "pong").await["ref"], "p");

    // A frame over max_frame_bytes closes with 1009.
    a.stream
        .send(Message::text("y".repeat(10_000)))
        .await
        .unwrap();
    let c = a.next_where(|f| f["type"] == "__close").await;
    assert_eq!(c["code"], 1009);

    // Invalid UTF-8 in a text frame closes with 1007.
    let mut b = alice.ws().await;
    let raw = Frame::message(
        vec![0xff, 0xfe, 0x22],
        OpCode::Data(tokio_tungstenite::tungstenite::protocol::frame::coding::Data::Text),
        true,
    );
    b.stream.send(Message::Frame(raw)).await.unwrap();
    let c = b.next_where(|f| f["type"] == "__close").await;
    assert_eq!(c["code"], 1007);

    // Malformed REST bodies get the error shape.
    let resp = alice
        .http
        .post(format!("{}/api/channels", alice.base))
        .bearer_auth(&alice.token)
        .header("content-type", "application/json")
        .body("{\"name\": 5")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "bad_request");
    server.stop().await;
}

#[tokio::test]
async fn a_retried_send_is_stored_once() {
    let server = TestServer::start().await;
    let alice = Client::register(&server, "alice").await;
    let ch = alice.dm(&[]).await;
    let mut a = alice.ws().await;
    let first = a.send_message(&ch, "same-id", "once").await;
    let second = a.send_message(&ch, "same-id", "once").await;
    assert_eq!(first["duplicate"], false);
    assert_eq!(second["duplicate"], true);
    assert_eq!(first["seq"], second["seq"]);
    assert_eq!(first["message_id"], second["message_id"]);
    let h = alice.ok_get(&format!("/api/channels/{ch}/messages")).await;
    assert_eq!(h["messages"].as_array().unwrap().len(), 1);
    server.stop().await;
}

/// The socket's read buffer is small (an idle socket keeps it all its life): frames far larger
/// than it, up to `max_frame_bytes`, are still read whole, one after another, and small ones
/// after them.
#[tokio::test]
async fn frames_up_to_max_frame_bytes_are_read_whole() {
    let server = TestServer::start_with(common::tempdir(), |s| {
        s.limits.max_message_len = 60_000;
        s.limits.max_frame_bytes = 64 * 1024;
    })
    .await;
    let alice = Client::register(&server, "alice").await;
    let ch = alice.dm(&[]).await;
    let mut a = alice.ws().await;
    for (i, len) in [60_000, 513, 40_000, 10].into_iter().enumerate() {
        let text = "z".repeat(len);
        let ack = a.send_message(&ch, &format!("big{i}"), &text).await;
        assert_eq!(ack["type"], "ack", "{len} chars: {ack}");
        let ev = a
            .next_where(|f| f["type"] == "event" && f["data"]["client_id"] == format!("big{i}"))
            .await;
        assert_eq!(ev["data"]["text"].as_str().map(str::len), Some(len));
    }
}
