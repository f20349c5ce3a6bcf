//! Everything crosses nodes: DMs, channels, receipts, typing, presence.

use fullslack_protocol::{EventPayload, ServerFrame};
use fullslack_test_support::wire;

use super::*;

/// A user on node A and a user on node B: DMs, a channel, receipts, typing, presence (also with
/// one user's sessions on both nodes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_on_two_nodes_see_each_other() {
    let cluster = Cluster::start().await;
    let alice = user_on(&cluster.a, "alice").await;
    let bob = user_on(&cluster.b, "bob").await;
    let mut a_ws = alice.ws().await;
    let mut b_ws = bob.ws().await;

    // Presence both ways: each sees the other online through the other node.
    assert_eq!(presence_now(&mut a_ws, &bob.id).await, "online");
    assert_eq!(presence_now(&mut b_ws, &alice.id).await, "online");

    let (dm, first_seq) = dm_messages_cross(&alice, &bob, &mut a_ws, &mut b_ws).await;
    receipts_cross(&alice, &bob, &dm, first_seq, &mut a_ws, &mut b_ws).await;
    typing_crosses(&alice, &bob, &dm, &mut a_ws, &mut b_ws).await;
    a_channel_made_on_b_crosses(&alice, &bob, &mut a_ws, &mut b_ws).await;
    presence_crosses_with_sessions_on_both_nodes(&cluster, &bob, a_ws, b_ws).await;
}

/// A DM opened on A shows up on B's socket, and messages cross both ways. Returns the DM and
/// the seq of alice's first message.
async fn dm_messages_cross(
    alice: &Client,
    bob: &Client,
    a_ws: &mut Ws,
    b_ws: &mut Ws,
) -> (String, i64) {
    let dm = alice.dm(&[&bob.id]).await;
    let added = b_ws.next_where(|f| f["type"] == "channel_added").await;
    let ServerFrame::ChannelAdded { channel } = wire::frame(&added) else {
        panic!("not channel_added: {added}");
    };
    assert_eq!(channel.id.as_str(), dm, "{added}");
    let ack = wire::send_ack(&a_ws.send_message(&dm, "a-1", "hi bob, from node a").await);
    let m = wire::message(&b_ws.next_event("message").await);
    assert_eq!(m.text, "hi bob, from node a");
    assert_eq!(m.author_id.as_str(), alice.id);
    assert_eq!(m.seq, ack.seq);
    let ack_b = wire::send_ack(
        &b_ws
            .send_message(&dm, "b-1", "hello alice, from node b")
            .await,
    );
    let m = wire::message(
        &a_ws
            .next_where(|f| f["kind"] == "message" && f["data"]["client_id"] == "b-1")
            .await,
    );
    assert_eq!(m.text, "hello alice, from node b");
    assert_eq!(m.seq, ack_b.seq);
    (dm, ack.seq)
}

/// B delivered alice's message (seq `first`) to bob (delivered watermark); bob reads a newer
/// one: his read watermark moves past it, on A too.
async fn receipts_cross(
    alice: &Client,
    bob: &Client,
    dm: &str,
    first: i64,
    a_ws: &mut Ws,
    b_ws: &mut Ws,
) {
    let delivered = a_ws
        .next_where(|f| wire::receipt_of(f, &bob.id).is_some_and(|r| r.delivered_seq >= first))
        .await;
    assert_eq!(wire::event(&delivered).channel.as_str(), dm);
    let ack2 = wire::send_ack(&a_ws.send_message(dm, "a-2", "did you see this?").await);
    let read_seq = ack2.seq;
    b_ws.next_where(|f| f["kind"] == "message" && f["seq"] == read_seq)
        .await;
    b_ws.send(json!({"type": "read", "ref": "r1", "channel": dm, "seq": read_seq}))
        .await;
    let r = b_ws.next_where(|f| f["ref"] == "r1").await;
    assert!(matches!(wire::frame(&r), ServerFrame::Ack { .. }), "{r}");
    let receipt = wire::event(
        &a_ws
            .next_where(|f| {
                f["kind"] == "receipt"
                    && f["data"]["user_id"] == bob.id
                    && f["data"]["read_seq"] == read_seq
            })
            .await,
    );
    assert!(matches!(receipt.payload, EventPayload::Receipt(_)));
    let receipts = alice
        .ok_get(&format!(
            "/api/channels/{dm}/messages/{}/receipts",
            ack2.message_id
        ))
        .await;
    let receipts: Vec<fullslack_protocol::rest::Receipt> = wire::decode(&receipts);
    assert_eq!(receipts[0].user_id.as_str(), bob.id, "{receipts:?}");
    assert_eq!(
        receipts[0].status,
        fullslack_protocol::ReceiptStatus::Read,
        "{receipts:?}"
    );
}

/// Typing crosses in both directions.
async fn typing_crosses(alice: &Client, bob: &Client, dm: &str, a_ws: &mut Ws, b_ws: &mut Ws) {
    a_ws.send(json!({"type": "typing", "channel": dm})).await;
    let t = b_ws.next_where(|f| f["type"] == "typing").await;
    let ServerFrame::Typing {
        channel, user_id, ..
    } = wire::frame(&t)
    else {
        panic!("not typing: {t}");
    };
    assert_eq!(
        (channel.as_str(), user_id.as_str()),
        (dm, alice.id.as_str())
    );
    b_ws.send(json!({"type": "typing", "channel": dm})).await;
    let t = a_ws.next_where(|f| f["type"] == "typing").await;
    let ServerFrame::Typing { user_id, .. } = wire::frame(&t) else {
        panic!("not typing: {t}");
    };
    assert_eq!(user_id.as_str(), bob.id);
}

/// A channel created on B with alice invited: she is told on A, messages cross.
async fn a_channel_made_on_b_crosses(alice: &Client, bob: &Client, a_ws: &mut Ws, b_ws: &mut Ws) {
    let general = bob.create_channel("general", "private", &[&alice.id]).await;
    let added = a_ws
        .next_where(|f| f["type"] == "channel_added" && f["channel"]["id"] == general)
        .await;
    let ServerFrame::ChannelAdded { channel } = wire::frame(&added) else {
        panic!("not channel_added: {added}");
    };
    assert_eq!(channel.name, "general");
    wire::send_ack(&b_ws.send_message(&general, "b-g1", "standup in 5").await);
    let m = wire::message(
        &a_ws
            .next_where(|f| f["kind"] == "message" && f["channel"] == general)
            .await,
    );
    assert_eq!(m.text, "standup in 5");
    let ack = wire::send_ack(&a_ws.send_message(&general, "a-g1", "on my way").await);
    let m = wire::message(
        &b_ws
            .next_where(|f| f["kind"] == "message" && f["data"]["client_id"] == "a-g1")
            .await,
    );
    assert_eq!(m.seq, ack.seq);
}

/// Presence changes cross (away and back); with bob on both nodes, closing his session on B
/// leaves him online, closing the last one makes him offline with a last-seen time.
async fn presence_crosses_with_sessions_on_both_nodes(
    cluster: &Cluster,
    bob: &Client,
    mut a_ws: Ws,
    mut b_ws: Ws,
) {
    b_ws.send(json!({"type": "presence", "status": "away"}))
        .await;
    presence_event(&mut a_ws, &bob.id, "away").await;
    b_ws.send(json!({"type": "presence", "status": "online"}))
        .await;
    presence_event(&mut a_ws, &bob.id, "online").await;

    let bob_a = on_node(bob, &cluster.a);
    let b2_ws = bob_a.ws().await;
    b_ws.close().await;
    let frames = a_ws.drain(Duration::from_secs(1)).await;
    assert!(
        !frames
            .iter()
            .any(|f| f["type"] == "presence" && f["user_id"] == bob.id && f["status"] == "offline"),
        "bob still has a session on node a: {frames:?}"
    );
    assert_eq!(presence_now(&mut a_ws, &bob.id).await, "online");
    b2_ws.close().await;
    let off = presence_event(&mut a_ws, &bob.id, "offline").await;
    let ServerFrame::Presence { last_seen, .. } = wire::frame(&off) else {
        panic!("not presence: {off}");
    };
    assert!(last_seen.is_some(), "{off}");
}
