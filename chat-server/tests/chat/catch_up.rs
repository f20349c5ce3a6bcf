//! What a client gets after being away: resume after a reconnect or a restart, receipts, typing and presence.

use fullslack_protocol::{
    rest::Receipt, Channel, EventPayload, Member, ReceiptData, ReceiptStatus,
};
use fullslack_test_support::wire;

use super::*;

#[tokio::test]
async fn a_client_that_reconnects_gets_exactly_what_it_missed() {
    let server = TestServer::start().await;
    let alice = Client::register(&server, "alice").await;
    let bob = Client::register(&server, "bob").await;
    let carol = Client::register(&server, "carol").await;
    let ch = alice
        .create_channel("room", "private", &[&bob.id, &carol.id])
        .await;
    let mut a = alice.ws().await;
    let mut b = bob.ws().await;
    let mut c = carol.ws().await;
    a.send_message(&ch, "1", "one").await;
    let last_seen = b.next_event("message").await["seq"].as_i64().unwrap();
    b.close().await;

    // Others keep talking while bob is away.
    for i in 0..5 {
        let ack = if i % 2 == 0 {
            a.send_message(&ch, &format!("a{i}"), &format!("missed {i}"))
                .await
        } else {
            c.send_message(&ch, &format!("c{i}"), &format!("missed {i}"))
                .await
        };
        assert_eq!(ack["type"], "ack");
    }
    let mut b = Ws::connect(&bob.ws_url, &bob.token).await;
    let replay = b.resume(HashMap::from([(ch.clone(), last_seen)])).await;
    let msgs: Vec<&str> = replay
        .iter()
        .filter(|e| e["kind"] == "message")
        .map(|e| e["data"]["text"].as_str().unwrap())
        .collect();
    assert_eq!(
        msgs,
        ["missed 0", "missed 1", "missed 2", "missed 3", "missed 4"]
    );
    let s = seqs(&replay);
    assert_eq!(s[0], last_seen + 1);
    assert!(
        s.windows(2).all(|w| w[1] == w[0] + 1),
        "no gaps, no duplicates: {s:?}"
    );

    // Then live, continuing the same sequence: every frame in arrival order, each seq once.
    a.send_message(&ch, "after", "live again").await;
    let later = b.drain(Duration::from_millis(500)).await;
    let live: Vec<&Value> = later.iter().filter(|f| f["type"] == "event").collect();
    assert!(
        live.iter().any(|f| f["data"]["text"] == "live again"),
        "{later:?}"
    );
    let all: Vec<i64> = s
        .iter()
        .copied()
        .chain(live.iter().map(|f| f["seq"].as_i64().unwrap()))
        .collect();
    assert!(
        all.windows(2).all(|w| w[1] == w[0] + 1),
        "each event once, in order, no gap: {all:?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn receipts_go_sent_delivered_read() {
    let server = TestServer::start().await;
    let alice = Client::register(&server, "alice").await;
    let bob = Client::register(&server, "bob").await;
    let dm = alice.dm(&[&bob.id]).await;
    let mut a = alice.ws().await;
    let mut b = sent_delivered_read(&alice, &bob, &dm, &mut a).await;
    a_reply_tells_the_author_it_was_read(&bob, &dm, &mut a, &mut b).await;
    let carol = Client::register(&server, "carol").await;
    members_watermarks_say_seen_by(&alice, &bob, &carol, &mut a, &mut b).await;
    server.stop().await;
}

/// The receipt statuses of `mid` in `dm`, as alice asks for them.
async fn receipts_of(alice: &Client, dm: &str, mid: &str) -> Vec<Receipt> {
    wire::decode(
        &alice
            .ok_get(&format!("/api/channels/{dm}/messages/{mid}/receipts"))
            .await,
    )
}

/// Alice's message is `sent`, then `delivered` when bob's socket receives it (catch-up on
/// connect), then `read` when he says so; his unread count is zero and reading again changes
/// nothing (no receipt storm). Returns bob's socket.
async fn sent_delivered_read(alice: &Client, bob: &Client, dm: &str, a: &mut Ws) -> Ws {
    let ack = wire::send_ack(&a.send_message(dm, "m1", "did you get this?").await);
    let (seq, mid) = (ack.seq, ack.message_id.as_str());
    let receipts = alice
        .ok_get(&format!("/api/channels/{dm}/messages/{mid}/receipts"))
        .await;
    assert_eq!(receipts, json!([{"user_id": bob.id, "status": "sent"}]));

    let mut b = Ws::connect(&bob.ws_url, &bob.token).await;
    let replay = b.resume(HashMap::from([(dm.to_string(), 0)])).await;
    assert!(replay
        .iter()
        .any(|e| wire::event(e).seq == seq
            && matches!(wire::event(e).payload, EventPayload::Message(_))));
    let r = bobs(
        &a.next_where(|f| wire::receipt_of(f, &bob.id).is_some_and(|r| r.delivered_seq >= seq))
            .await,
        bob,
    );
    assert_eq!(r.delivered_seq, seq);
    assert!(r.read_seq < seq);
    assert_eq!(
        receipts_of(alice, dm, mid).await[0].status,
        ReceiptStatus::Delivered
    );

    b.send(json!({"type": "read", "ref": "rd", "channel": dm, "seq": seq}))
        .await;
    assert_eq!(b.next_where(|f| f["ref"] == "rd").await["type"], "ack");
    let r = bobs(
        &a.next_where(|f| wire::receipt_of(f, &bob.id).is_some_and(|r| r.read_seq == seq))
            .await,
        bob,
    );
    assert_eq!(r.user_id.as_str(), bob.id);
    assert_eq!(
        receipts_of(alice, dm, mid).await[0].status,
        ReceiptStatus::Read
    );
    let chans: Vec<Channel> = wire::decode(&bob.ok_get("/api/channels").await);
    let unread = chans.iter().find(|c| c.id.as_str() == dm).unwrap().unread;
    assert_eq!(unread, Some(0));
    b.send(json!({"type": "read", "ref": "rd2", "channel": dm, "seq": seq + 100}))
        .await;
    assert_eq!(
        b.next_where(|f| f["ref"] == "rd2").await["seq"],
        Value::Null
    );
    b
}

/// What a receipt frame says of bob (it may say other members' too).
fn bobs(v: &Value, bob: &Client) -> ReceiptData {
    wire::receipt_of(v, &bob.id).unwrap_or_else(|| panic!("no receipt of bob: {v}"))
}

/// Replying without an explicit `read` still tells alice that bob read her message: the
/// reply's commit moves bob's watermarks to the reply, and the next flush of receipts says so
/// (after the reply, one event for the flush's sends and deliveries).
async fn a_reply_tells_the_author_it_was_read(bob: &Client, dm: &str, a: &mut Ws, b: &mut Ws) {
    let seq2 = wire::send_ack(&a.send_message(dm, "m2", "and this one?").await).seq;
    b.next_where(|f| f["kind"] == "message" && f["seq"] == seq2)
        .await;
    let reply = wire::send_ack(&b.send_message(dm, "b-reply", "yes, both").await);
    let receipt = a
        .next_where(|f| wire::receipt_of(f, &bob.id).is_some_and(|r| r.read_seq >= seq2))
        .await;
    let r = bobs(&receipt, bob);
    assert_eq!((r.delivered_seq, r.read_seq), (reply.seq, reply.seq));
    assert!(
        wire::event(&receipt).seq > reply.seq,
        "the receipt follows the reply"
    );
}

/// In a group the members' watermarks give "seen by".
async fn members_watermarks_say_seen_by(
    alice: &Client,
    bob: &Client,
    carol: &Client,
    a: &mut Ws,
    b: &mut Ws,
) {
    let group = alice.dm(&[&bob.id, &carol.id]).await;
    let gseq = wire::send_ack(&a.send_message(&group, "g1", "group hello").await).seq;
    b.send(json!({"type": "read", "channel": group, "seq": gseq}))
        .await;
    a.next_where(|f| {
        f["channel"] == group && wire::receipt_of(f, &bob.id).is_some_and(|r| r.read_seq == gseq)
    })
    .await;
    let members: Vec<Member> = wire::decode(
        &alice
            .ok_get(&format!("/api/channels/{group}/members"))
            .await,
    );
    let seen_by: Vec<&str> = members
        .iter()
        .filter(|m| m.user_id.as_str() != alice.id && m.read_seq >= gseq)
        .map(|m| m.user_id.as_str())
        .collect();
    assert_eq!(seen_by, [bob.id.as_str()]);
}

#[tokio::test]
async fn typing_and_presence_with_several_sessions() {
    let server = TestServer::start().await;
    let alice = Client::register(&server, "alice").await;
    let bob = Client::register(&server, "bob").await;
    let dm = alice.dm(&[&bob.id]).await;
    let mut a = alice.ws().await;
    a.send(json!({"type": "presence_subscribe", "user_ids": [bob.id]}))
        .await;
    let p = a.next_where(|f| f["type"] == "presence").await;
    assert_eq!(p["status"], "offline");

    let mut b1 = bob.ws().await;
    assert_eq!(
        a.next_where(|f| f["type"] == "presence").await["status"],
        "online"
    );
    let bob2 = Client::login(&server, "bob").await;
    let mut b2 = bob2.ws().await;

    b1.send(json!({"type": "typing", "channel": dm})).await;
    let t = a.next_where(|f| f["type"] == "typing").await;
    assert_eq!(
        (t["user_id"].as_str(), t["channel"].as_str()),
        (Some(bob.id.as_str()), Some(dm.as_str()))
    );
    assert!(t["expires_in_ms"].as_u64().unwrap() > 0);

    // Away only when every session is away.
    b1.send(json!({"type": "presence", "status": "away"})).await;
    b2.send(json!({"type": "presence", "status": "away"})).await;
    assert_eq!(
        a.next_where(|f| f["type"] == "presence").await["status"],
        "away"
    );
    b2.send(json!({"type": "presence", "status": "online"}))
        .await;
    assert_eq!(
        a.next_where(|f| f["type"] == "presence").await["status"],
        "online"
    );

    // Closing one of two sessions leaves bob online; the last one makes him offline with last seen.
    b1.close().await;
    let quiet = a.drain(Duration::from_millis(300)).await;
    assert!(quiet.iter().all(|f| f["type"] != "presence"), "{quiet:?}");
    b2.close().await;
    let p = a.next_where(|f| f["type"] == "presence").await;
    assert_eq!(p["status"], "offline");
    assert!(p["last_seen"].is_string());
    let users = alice.ok_get("/api/users").await;
    let b = users
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["id"] == bob.id)
        .unwrap();
    assert_eq!(b["presence"], "offline");
    assert!(b["last_seen"].is_string());
    server.stop().await;
}

#[tokio::test]
async fn data_survives_a_restart_and_clients_resume_after_1012() {
    let dir = common::tempdir();
    let server = TestServer::start_with(dir.clone(), |_| {}).await;
    let alice = Client::register(&server, "alice").await;
    let ch = alice.create_channel("durable", "public", &[]).await;
    let mut a = alice.ws().await;
    let mut last = 0;
    for i in 0..5 {
        last = a
            .send_message(&ch, &format!("d{i}"), &format!("persist {i}"))
            .await["seq"]
            .as_i64()
            .unwrap();
    }
    // Graceful stop closes the socket with 1012 (service restart).
    let stopping = tokio::spawn(server.stop());
    let close = a.next_where(|f| f["type"] == "__close").await;
    assert_eq!(close["code"], 1012);
    stopping.await.unwrap();

    let server = TestServer::start_with(dir, |_| {}).await;
    let alice = Client::login(&server, "alice").await;
    let h = alice.ok_get(&format!("/api/channels/{ch}/messages")).await;
    assert_eq!(h["messages"].as_array().unwrap().len(), 5);
    let mut a = Ws::connect(&alice.ws_url, &alice.token).await;
    let replay = a.resume(HashMap::from([(ch.clone(), last - 2)])).await;
    assert_eq!(seqs(&replay), vec![last - 1, last]);
    let ack = a.send_message(&ch, "d5", "after restart").await;
    assert_eq!(ack["seq"], last + 1, "sequence continues where it was");
    server.stop().await;
}
