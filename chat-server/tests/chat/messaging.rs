//! Live messaging: DMs, fan-out to channel members, threads, edits, deletes and reactions.

use fullslack_protocol::{
    rest::{HistoryPage, Thread},
    Channel, ChannelKind, EventPayload, ServerFrame,
};
use fullslack_test_support::wire;

use super::*;

#[tokio::test]
async fn two_users_dm_each_other_live() {
    let server = TestServer::start().await;
    let alice = Client::register(&server, "alice").await;
    let bob = Client::register(&server, "bob").await;
    let mut bob_ws = bob.ws().await;
    let mut alice_ws = alice.ws().await;

    let dm = alice.dm(&[&bob.id]).await;
    assert_eq!(
        bob.dm(&[&alice.id]).await,
        dm,
        "the 1:1 DM is the same channel from both sides"
    );
    let added = bob_ws.next_where(|f| f["type"] == "channel_added").await;
    let ServerFrame::ChannelAdded { channel } = wire::frame(&added) else {
        panic!("not channel_added: {added}");
    };
    assert_eq!(channel.id.as_str(), dm);
    assert_eq!(channel.kind, ChannelKind::Dm);

    let ack = wire::send_ack(&alice_ws.send_message(&dm, "a-1", "hi bob").await);
    assert!(!ack.duplicate);
    let m = wire::message(&bob_ws.next_event("message").await);
    assert_eq!(m.text, "hi bob");
    assert_eq!(m.author_id.as_str(), alice.id);
    assert_eq!(m.seq, ack.seq);

    wire::send_ack(&bob_ws.send_message(&dm, "b-1", "hello alice").await);
    let m = wire::message(
        &alice_ws
            .next_where(|f| {
                f["type"] == "event" && f["kind"] == "message" && f["data"]["client_id"] == "b-1"
            })
            .await,
    );
    assert_eq!(m.text, "hello alice");

    // The other user's view: the DM is listed with an unread count.
    let chans: Vec<Channel> = wire::decode(&alice.ok_get("/api/channels").await);
    let c = chans.iter().find(|c| c.id.as_str() == dm).unwrap();
    assert_eq!(c.unread, Some(1));
    server.stop().await;
}

#[tokio::test]
async fn channel_fans_out_to_every_member_once() {
    let server = TestServer::start().await;
    let owner = Client::register(&server, "owner").await;
    let general = owner.create_channel("general", "public", &[]).await;
    let mut members = Vec::new();
    for i in 0..20 {
        let c = Client::register(&server, &format!("member{i}")).await;
        let (s, _) = c
            .post(&format!("/api/channels/{general}/join"), json!({}))
            .await;
        assert_eq!(s, 200);
        let ws = c.ws().await;
        members.push((c, ws));
    }
    let mut owner_ws = owner.ws().await;
    for i in 0..3 {
        let ack = owner_ws
            .send_message(&general, &format!("m{i}"), &format!("announcement {i}"))
            .await;
        assert_eq!(ack["type"], "ack");
    }
    for (_, ws) in &mut members {
        let mut texts = Vec::new();
        for _ in 0..3 {
            texts.push(
                ws.next_event("message").await["data"]["text"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            );
        }
        assert_eq!(
            texts,
            ["announcement 0", "announcement 1", "announcement 2"]
        );
    }
    // ...and nothing twice.
    let (_, last) = members.last_mut().unwrap();
    let extra = last.drain(Duration::from_millis(300)).await;
    assert!(extra.iter().all(|f| f["kind"] != "message"), "{extra:?}");
    server.stop().await;
}

#[tokio::test]
async fn threads_count_replies_and_stay_out_of_the_main_history() {
    let server = TestServer::start().await;
    let alice = Client::register(&server, "alice").await;
    let bob = Client::register(&server, "bob").await;
    let ch = alice.create_channel("dev", "private", &[&bob.id]).await;
    let mut a = alice.ws().await;
    let mut b = bob.ws().await;
    let root = a.send_message(&ch, "root", "shall we ship?").await;
    let root_id = root["message_id"].as_str().unwrap().to_string();
    for i in 0..2 {
        b.send(json!({"type": "send", "ref": format!("r{i}"), "channel": ch, "client_id": format!("reply{i}"), "text": format!("yes {i}"), "thread_root": root_id})).await;
        let ack = b.next_where(|f| f["type"] == "ack").await;
        assert_eq!(ack["ref"], format!("r{i}"));
    }
    let ev = a
        .next_where(|f| {
            f["type"] == "event" && f["kind"] == "message" && f["data"]["thread_root"] == root_id
        })
        .await;
    assert_eq!(ev["data"]["text"], "yes 0");

    let thread: Thread = wire::decode(
        &alice
            .ok_get(&format!("/api/channels/{ch}/messages/{root_id}/replies"))
            .await,
    );
    assert_eq!(thread.root.reply_count, 2);
    let replies: Vec<&str> = thread.replies.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(replies, ["yes 0", "yes 1"]);
    let history: HistoryPage =
        wire::decode(&alice.ok_get(&format!("/api/channels/{ch}/messages")).await);
    let texts: Vec<&str> = history.messages.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(texts, ["shall we ship?"]);

    // A reply to a message of another channel is refused.
    let other = alice.create_channel("other", "public", &[]).await;
    a.send(json!({"type": "send", "ref": "x", "channel": other, "client_id": "bad-root", "text": "?", "thread_root": root_id})).await;
    let err = a.next_where(|f| f["ref"] == "x").await;
    assert_eq!(wire::error_code(&err), "not_found");
    server.stop().await;
}

#[tokio::test]
async fn edits_deletes_and_reactions_arrive_live_and_on_resume() {
    let server = TestServer::start().await;
    let alice = Client::register(&server, "alice").await;
    let bob = Client::register(&server, "bob").await;
    let carol = Client::register(&server, "carol").await;
    let ch = alice
        .create_channel("team", "private", &[&bob.id, &carol.id])
        .await;
    let mut a = alice.ws().await;
    let mut b = bob.ws().await;
    // Carol's last position: the channel as it is now.
    let start = alice.ok_get(&format!("/api/channels/{ch}")).await["last_seq"]
        .as_i64()
        .unwrap();

    let ack = a.send_message(&ch, "m1", "helo @bob").await;
    let mid = ack["message_id"].as_str().unwrap().to_string();
    let ev = b.next_event("message").await;
    assert_eq!(
        ev["data"]["mentions"],
        json!([bob.id]),
        "mentions are resolved to user ids"
    );

    a.send(
        json!({"type": "edit", "ref": "e", "channel": ch, "message_id": mid, "text": "hello @bob"}),
    )
    .await;
    assert_eq!(a.next_where(|f| f["ref"] == "e").await["type"], "ack");
    b.send(json!({"type": "react", "ref": "r", "channel": ch, "message_id": mid, "emoji": "👍", "add": true})).await;
    assert_eq!(b.next_where(|f| f["ref"] == "r").await["type"], "ack");
    // Only the author may delete.
    b.send(json!({"type": "delete", "ref": "bd", "channel": ch, "message_id": mid}))
        .await;
    let err = b.next_where(|f| f["ref"] == "bd").await;
    assert_eq!(
        (err["type"].as_str(), err["code"].as_str()),
        (Some("error"), Some("forbidden"))
    );
    a.send(json!({"type": "delete", "ref": "d", "channel": ch, "message_id": mid}))
        .await;
    assert_eq!(a.next_where(|f| f["ref"] == "d").await["type"], "ack");

    let EventPayload::Edit(edit) = wire::event(&b.next_event("edit").await).payload else {
        panic!("not an edit");
    };
    assert_eq!(edit.text, "hello @bob");
    let EventPayload::Reaction(reaction) = wire::event(&b.next_event("reaction").await).payload
    else {
        panic!("not a reaction");
    };
    assert_eq!((reaction.emoji.as_str(), reaction.added), ("👍", true));
    let EventPayload::Delete(del) = wire::event(&b.next_event("delete").await).payload else {
        panic!("not a delete");
    };
    assert_eq!(del.message_id.as_str(), mid);

    // Carol was offline the whole time: resume gives her the same story, in order.
    let mut c = Ws::connect(&carol.ws_url, &carol.token).await;
    let replay = c.resume(HashMap::from([(ch.clone(), start)])).await;
    let kinds: Vec<&str> = replay
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .filter(|k| !k.starts_with("receipt"))
        .collect();
    assert_eq!(kinds, ["message", "edit", "reaction", "delete"]);
    let s = seqs(&replay);
    assert!(s.windows(2).all(|w| w[1] == w[0] + 1), "gap-free: {s:?}");
    assert_eq!(s[0], start + 1);

    let m: fullslack_protocol::Message = wire::decode(
        &alice
            .ok_get(&format!("/api/channels/{ch}/messages/{mid}"))
            .await,
    );
    assert_eq!((m.deleted, m.text.as_str()), (true, ""), "tombstone");
    server.stop().await;
}
