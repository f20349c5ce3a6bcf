//! A node crashes: its clients resume on the other, its users go offline; a crash inside a
//! write transaction does not stall the channel on the other node.

use super::*;

/// Polls `user`'s presence through `ws` until it is `status`; panics after `within`.
async fn wait_presence(ws: &mut Ws, user: &str, status: &str, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let now = presence_now(ws, user).await;
        if now == status {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{user} still {now}, not {status}, after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// SIGKILL node A mid-conversation: its clients reconnect to B and resume from their last seq
/// with no acknowledged message lost (an unacknowledged send is retried under its client id);
/// A's users who do not come back go offline once their presence entries expire.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_nodes_clients_resume_on_the_other_and_its_users_go_offline() {
    let mut cluster = Cluster::start().await;
    let alice = user_on(&cluster.a, "alice").await; // on A, moves to B
    let carol = user_on(&cluster.a, "carol").await; // on A, never comes back
    let bob = user_on(&cluster.b, "bob").await;
    let ch = alice
        .create_channel("ops", "private", &[&bob.id, &carol.id])
        .await;
    let (mut a_ws, mut alice_seen) = ws_from(&alice, &[(&ch, 0)]).await;
    let carol_ws = carol.ws().await;
    let (mut b_ws, mut bob_seen) = ws_from(&bob, &[(&ch, 0)]).await;
    // Bob's other sessions on B: one only receives pushed presence changes, one asks.
    let mut watcher = bob.ws().await;
    let mut asker = bob.ws().await;
    assert_eq!(presence_now(&mut watcher, &carol.id).await, "online");

    let mut acked = both_say(&mut a_ws, &mut b_ws, &ch, 5).await;
    // Alice has seen part of the conversation live; that is where she will resume.
    collect_until(&mut a_ws, &ch, &mut alice_seen, |ev| {
        message_client_ids(ev).contains("b2")
    })
    .await;
    let alice_last = alice_seen.last().unwrap()["seq"].as_i64().unwrap();
    // A send in flight when the node dies: no ack reaches alice, so she will retry it.
    a_ws.send(json!({"type": "send", "ref": "a-inflight", "channel": ch, "client_id": "a-inflight", "text": "sent as a died"}))
        .await;
    cluster.a.kill();
    drop((a_ws, carol_ws));

    // B carries on.
    for n in 5..8 {
        let cid = format!("b{n}");
        let ack = b_ws.send_message(&ch, &cid, &format!("b says {n}")).await;
        assert_eq!(ack["type"], "ack", "{ack}");
        acked.insert(cid, ack);
    }

    // Alice reconnects through B with the last seq she processed.
    let alice_b = on_node(&alice, &cluster.b);
    let (mut a2_ws, replay) = ws_from(&alice_b, &[(&ch, alice_last)]).await;
    assert_gap_free(&replay, alice_last, "alice's replay on node b");
    alice_seen.extend(replay);
    let ack = a2_ws
        .send_message(&ch, "a-inflight", "sent as a died")
        .await;
    assert_eq!(ack["type"], "ack", "{ack}");
    acked.insert("a-inflight".to_string(), ack);

    let all: HashSet<String> = acked.keys().cloned().collect();
    collect_until(&mut a2_ws, &ch, &mut alice_seen, |ev| {
        message_client_ids(ev).is_superset(&all)
    })
    .await;
    assert_gap_free(&alice_seen, 0, "alice across nodes a and b");
    collect_until(&mut b_ws, &ch, &mut bob_seen, |ev| {
        message_client_ids(ev).is_superset(&all)
    })
    .await;
    assert_gap_free(&bob_seen, 0, "bob on node b");
    assert_acked_stored(
        &full_history(&alice_b, &ch).await,
        &acked,
        "history after the crash",
    );

    carol_goes_offline_alice_stays(&mut asker, &mut watcher, &carol, &alice).await;
}

/// Carol was only on A: she goes offline once A's presence entries expire, announced to the
/// watcher on B. Alice has a live session on B, so she stays online.
async fn carol_goes_offline_alice_stays(
    asker: &mut Ws,
    watcher: &mut Ws,
    carol: &Client,
    alice: &Client,
) {
    wait_presence(
        asker,
        &carol.id,
        "offline",
        Duration::from_secs(PRESENCE_TTL_SECS * 5 + 10),
    )
    .await;
    let off = presence_event(watcher, &carol.id, "offline").await;
    assert!(off["last_seen"].is_string(), "{off}");
    assert_eq!(presence_now(asker, &alice.id).await, "online");
}

/// The application name node `a` of a [`Cluster`] connects to MongoDB with.
const NODE_A_APP: &str = "fullslack-a";
/// The database a [`Cluster`]'s nodes share.
const CLUSTER_DB: &str = "fullslack_cluster";

/// Whether some other transaction holds channel `ch`'s document: a transaction of our own that
/// writes it meets `WriteConflict`. Our transaction is always aborted, never committed.
async fn channel_document_held(client: &mongodb::Client, ch: &str) -> bool {
    use mongodb::bson::{doc, Document};
    let db = client.database(CLUSTER_DB);
    let mut s = client.start_session().await.unwrap();
    s.start_transaction().await.unwrap();
    let probe = db
        .collection::<Document>("channels")
        .update_one(doc! {"_id": ch}, doc! {"$set": {"probe": 1}})
        .session(&mut s)
        .await;
    let _ = s.abort_transaction().await;
    match probe {
        Ok(r) => {
            assert_eq!(r.matched_count, 1, "channel {ch} exists");
            false
        }
        Err(e) if e.contains_label(mongodb::error::TRANSIENT_TRANSACTION_ERROR) => true,
        Err(e) => panic!("probing channel {ch}: {e}"),
    }
}

/// SIGKILL node A *inside* a write transaction on the channel (a failpoint holds its next
/// insert, which comes after it took the channel's next sequence number): the server keeps
/// that transaction open, holding the channel's document. B must still answer its next send
/// within the harness's 5 s (it ends the dead node's transaction rather than wait the server's
/// 60 s), and the channel's log stays gap-free with every acknowledged message stored once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_inside_a_write_transaction_does_not_stall_the_channel() {
    use mongodb::bson::doc;
    let mut cluster = Cluster::start().await;
    let alice = user_on(&cluster.a, "alice").await; // on A, moves to B
    let bob = user_on(&cluster.b, "bob").await;
    let ch = alice.create_channel("ops", "private", &[&bob.id]).await;
    let (mut a_ws, _) = ws_from(&alice, &[(&ch, 0)]).await;
    let (mut b_ws, mut bob_seen) = ws_from(&bob, &[(&ch, 0)]).await;
    let mut acked = both_say(&mut a_ws, &mut b_ws, &ch, 2).await;

    let client = mongodb::Client::with_uri_str(cluster.mongo.url(CLUSTER_DB))
        .await
        .unwrap();
    // A's next insert blocks (its only insert in a transaction comes after `$inc` of the
    // channel's `last_seq`: a message, or the event of a receipt A flushes meanwhile).
    client
        .database("admin")
        .run_command(doc! {
            "configureFailPoint": "failCommand",
            "mode": {"times": 1},
            "data": {
                "failCommands": ["insert"],
                "appName": NODE_A_APP,
                "blockConnection": true,
                "blockTimeMS": 30_000,
            },
        })
        .await
        .unwrap();
    a_ws.send(json!({"type": "send", "ref": "a-held", "channel": ch, "client_id": "a-held", "text": "sent as a died"}))
        .await;
    // Held for half a second on end: A is blocked in its transaction (a live transaction
    // holds the document for milliseconds).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut held_since = None;
    loop {
        let now = tokio::time::Instant::now();
        if !channel_document_held(&client, &ch).await {
            held_since = None;
        } else if now - *held_since.get_or_insert(now) >= Duration::from_millis(500) {
            break;
        }
        assert!(
            now < deadline,
            "node a never held the channel's document in a transaction"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cluster.a.kill();
    drop(a_ws);

    // B answers within the harness's wait (5 s), where the server alone would take 60 s.
    let ack = b_ws.send_message(&ch, "b-after", "after a died").await;
    assert_eq!(ack["type"], "ack", "{ack}\nnode b:\n{}", cluster.b.log());
    acked.insert("b-after".into(), ack);
    let ended = cluster
        .b
        .log_json()
        .iter()
        .any(|l| l["level"] == "WARN" && l.to_string().contains("ended its sessions"));
    assert!(
        ended,
        "node b ended a's sessions; its log:\n{}",
        cluster.b.log()
    );

    // Alice retries her unacknowledged send through B: stored once, after B's.
    let alice_b = on_node(&alice, &cluster.b);
    let (mut a2_ws, _) = ws_from(&alice_b, &[(&ch, 0)]).await;
    let ack = a2_ws.send_message(&ch, "a-held", "sent as a died").await;
    assert_eq!(ack["type"], "ack", "{ack}");
    acked.insert("a-held".into(), ack);

    let all: HashSet<String> = acked.keys().cloned().collect();
    collect_until(&mut b_ws, &ch, &mut bob_seen, |ev| {
        message_client_ids(ev).is_superset(&all)
    })
    .await;
    assert_gap_free(&bob_seen, 0, "bob on node b");
    assert_acked_stored(
        &full_history(&alice_b, &ch).await,
        &acked,
        "history after the crash",
    );
    client.shutdown().await;
}
