//! Two `fullslack-chat` processes on different ports sharing one Redis and one SecantusDB
//! (MongoDB wire protocol), driven over real sockets: cross-node delivery, concurrent senders,
//! a node crash, Redis going away and coming back, the store going away. See
//! `tests/common/cluster.rs` for the process harness and `tests/common/services.rs` for Redis
//! and MongoDB.

mod common;

use std::{
    collections::{HashMap, HashSet},
    time::Duration,
};

use common::{
    cluster::{on_node, Cluster, Node, PRESENCE_TTL_SECS},
    seqs,
    services::{MongoServer, RedisServer},
    Client, Ws,
};
use serde_json::{json, Value};

/// The harness itself: Redis comes back on the same port, empty.
#[test]
fn redis_restarts_on_the_same_port() {
    let mut redis = RedisServer::start();
    let port = redis.port();
    assert_eq!(redis.url(), format!("redis://127.0.0.1:{port}/"));
    assert!(redis.is_running());
    redis.stop();
    assert!(!redis.is_running());
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "a stopped Redis refuses connections"
    );
    redis.restart();
    assert_eq!(redis.port(), port);
    assert!(redis.is_running());
}

/// The harness itself: SecantusDB comes back on the same port with the same data, also after
/// a SIGKILL (what the store-down test relies on to check every acknowledged write).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongo_restarts_on_the_same_port_and_data_after_a_kill() {
    use mongodb::bson::{doc, Document};
    let mut mongo = tokio::task::spawn_blocking(MongoServer::start)
        .await
        .unwrap();
    let url = mongo.url("harness");
    let opts = |url: &str| {
        let url = url.to_string();
        async move {
            let mut o = mongodb::options::ClientOptions::parse(&url).await.unwrap();
            o.server_selection_timeout = Some(Duration::from_secs(10));
            mongodb::Client::with_options(o).unwrap()
        }
    };
    let client = opts(&url).await;
    let coll = client.database("harness").collection::<Document>("t");
    coll.insert_one(doc! {"_id": 1, "v": "kept"}).await.unwrap();
    drop(coll);
    client.shutdown().await;

    let port = mongo.port();
    let mongo = tokio::task::spawn_blocking(move || {
        mongo.kill();
        assert!(!mongo.is_running());
        mongo.restart();
        mongo
    })
    .await
    .unwrap();
    assert_eq!(mongo.port(), port);
    let client = opts(&url).await;
    let coll = client.database("harness").collection::<Document>("t");
    let got = coll.find_one(doc! {"_id": 1}).await.unwrap();
    assert_eq!(
        got.and_then(|d| d.get_str("v").ok().map(str::to_string)),
        Some("kept".to_string()),
        "log: {}",
        std::fs::read_to_string(mongo.log_path()).unwrap_or_default()
    );
    drop(coll);
    client.shutdown().await;
    // A clean stop (SIGTERM) ends the process too.
    tokio::task::spawn_blocking(move || {
        let mut mongo = mongo;
        mongo.stop();
        assert!(!mongo.is_running());
    })
    .await
    .unwrap();
}

// ---- helpers ----------------------------------------------------------------------------------

/// Registers `username` through `node`.
async fn user_on(node: &Node, username: &str) -> Client {
    Client::register(&node.server(), username).await
}

/// Opens a socket and resumes every channel in `from` at the given seq; returns the socket and
/// the replayed events.
async fn ws_from(client: &Client, from: &[(&str, i64)]) -> (Ws, Vec<Value>) {
    let mut ws = Ws::connect(&client.ws_url, &client.token).await;
    let replay = ws
        .resume(from.iter().map(|(c, s)| (c.to_string(), *s)).collect())
        .await;
    (ws, replay)
}

/// Events of channel `ch` arriving on `ws`, appended to `seen` until `done(seen)` holds.
async fn collect_until(
    ws: &mut Ws,
    ch: &str,
    seen: &mut Vec<Value>,
    done: impl Fn(&[Value]) -> bool,
) {
    while !done(seen) {
        seen.push(
            ws.next_where(|f| f["type"] == "event" && f["channel"] == ch)
                .await,
        );
    }
}

/// Hands `ws`'s frames (its backlog first, then the socket, in arrival order) to `take` until
/// it returns true; `false` if `within` passes first. Unlike `Ws::next_where` this may wait
/// longer than the harness's 5 s per frame (a send waiting for a dead store).
async fn read_until(ws: &mut Ws, within: Duration, mut take: impl FnMut(Value) -> bool) -> bool {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    for f in ws.drain(Duration::ZERO).await {
        if take(f) {
            return true;
        }
    }
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let Ok(msg) = tokio::time::timeout_at(deadline, ws.stream.next()).await else {
            return false;
        };
        let frame = match msg.expect("socket open").expect("socket readable") {
            Message::Text(t) => serde_json::from_str(t.as_str()).expect("frames are JSON"),
            Message::Close(c) => panic!("socket closed: {c:?}"),
            _ => continue,
        };
        if take(frame) {
            return true;
        }
    }
}

/// The `client_id`s of the message events in `events`.
fn message_client_ids(events: &[Value]) -> HashSet<String> {
    events
        .iter()
        .filter(|e| e["kind"] == "message")
        .map(|e| e["data"]["client_id"].as_str().unwrap().to_string())
        .collect()
}

/// `events` are channel events numbered `after + 1, after + 2, …` with no gap and no repeat.
fn assert_gap_free(events: &[Value], after: i64, who: &str) {
    let got = seqs(events);
    let want: Vec<i64> = (after + 1..=after + got.len() as i64).collect();
    assert_eq!(
        got, want,
        "{who}: the channel's events arrive gap-free and once each"
    );
}

/// The whole message history of a channel, oldest first (paged by `after`).
async fn full_history(client: &Client, ch: &str) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::new();
    let mut after = 0;
    loop {
        let page = client
            .ok_get(&format!(
                "/api/channels/{ch}/messages?after={after}&limit=200"
            ))
            .await;
        let msgs = page["messages"].as_array().unwrap().clone();
        if let Some(last) = msgs.last() {
            after = last["seq"].as_i64().unwrap();
        }
        out.extend(msgs);
        if page["has_more"] != true {
            return out;
        }
    }
}

/// Asserts every acknowledged send (client id → ack) is in `history` with the acked seq and
/// id, and no client id is stored twice.
fn assert_acked_stored(history: &[Value], acked: &HashMap<String, Value>, who: &str) {
    let mut by_cid: HashMap<&str, Vec<&Value>> = HashMap::new();
    for m in history {
        by_cid
            .entry(m["client_id"].as_str().unwrap())
            .or_default()
            .push(m);
    }
    for (cid, stored) in &by_cid {
        assert_eq!(
            stored.len(),
            1,
            "{who}: client id {cid} stored {} times",
            stored.len()
        );
    }
    for (cid, ack) in acked {
        let m = by_cid
            .get(cid.as_str())
            .unwrap_or_else(|| panic!("{who}: acknowledged message {cid} ({ack}) is not stored"))
            [0];
        assert_eq!(m["seq"], ack["seq"], "{who}: {cid}");
        assert_eq!(m["id"], ack["message_id"], "{who}: {cid}");
    }
}

/// Sends `presence_subscribe` for `user` on `ws` and returns the status it answers with.
async fn presence_now(ws: &mut Ws, user: &str) -> String {
    ws.send(json!({"type": "presence_subscribe", "user_ids": [user]}))
        .await;
    let f = ws
        .next_where(|f| f["type"] == "presence" && f["user_id"] == user)
        .await;
    f["status"].as_str().unwrap().to_string()
}

/// Waits for a `presence` frame about `user` with `status`.
async fn presence_event(ws: &mut Ws, user: &str, status: &str) -> Value {
    ws.next_where(|f| f["type"] == "presence" && f["user_id"] == user && f["status"] == status)
        .await
}

// ---- 1. everything crosses nodes -------------------------------------------------------------

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

    // A DM opened on A shows up on B's socket, and messages cross both ways.
    let dm = alice.dm(&[&bob.id]).await;
    let added = b_ws.next_where(|f| f["type"] == "channel_added").await;
    assert_eq!(added["channel"]["id"], dm, "{added}");
    let ack = a_ws.send_message(&dm, "a-1", "hi bob, from node a").await;
    assert_eq!(ack["type"], "ack", "{ack}");
    let ev = b_ws.next_event("message").await;
    assert_eq!(ev["data"]["text"], "hi bob, from node a");
    assert_eq!(ev["data"]["author_id"], alice.id);
    assert_eq!(ev["seq"], ack["seq"]);
    let ack_b = b_ws
        .send_message(&dm, "b-1", "hello alice, from node b")
        .await;
    assert_eq!(ack_b["type"], "ack", "{ack_b}");
    let ev = a_ws
        .next_where(|f| f["kind"] == "message" && f["data"]["client_id"] == "b-1")
        .await;
    assert_eq!(ev["data"]["text"], "hello alice, from node b");
    assert_eq!(ev["seq"], ack_b["seq"]);

    // Receipts: B delivered alice's message to bob (delivered watermark), bob reads it.
    let s = ack["seq"].as_i64().unwrap();
    let delivered = a_ws
        .next_where(|f| {
            f["kind"] == "receipt"
                && f["data"]["user_id"] == bob.id
                && f["data"]["delivered_seq"].as_i64() >= Some(s)
        })
        .await;
    assert_eq!(delivered["channel"], dm);
    // Bob reads a newer message of alice's: his read watermark moves past it, on A too.
    let ack2 = a_ws.send_message(&dm, "a-2", "did you see this?").await;
    assert_eq!(ack2["type"], "ack", "{ack2}");
    let read_seq = ack2["seq"].as_i64().unwrap();
    b_ws.next_where(|f| f["kind"] == "message" && f["seq"] == read_seq)
        .await;
    b_ws.send(json!({"type": "read", "ref": "r1", "channel": dm, "seq": read_seq}))
        .await;
    let r = b_ws.next_where(|f| f["ref"] == "r1").await;
    assert_eq!(r["type"], "ack", "{r}");
    a_ws.next_where(|f| {
        f["kind"] == "receipt"
            && f["data"]["user_id"] == bob.id
            && f["data"]["read_seq"] == read_seq
    })
    .await;
    let receipts = alice
        .ok_get(&format!(
            "/api/channels/{dm}/messages/{}/receipts",
            ack2["message_id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(receipts[0]["user_id"], bob.id, "{receipts}");
    assert_eq!(receipts[0]["status"], "read", "{receipts}");

    // Typing crosses in both directions.
    a_ws.send(json!({"type": "typing", "channel": dm})).await;
    let t = b_ws.next_where(|f| f["type"] == "typing").await;
    assert_eq!(
        (&t["channel"], &t["user_id"]),
        (&json!(dm), &json!(alice.id))
    );
    b_ws.send(json!({"type": "typing", "channel": dm})).await;
    let t = a_ws.next_where(|f| f["type"] == "typing").await;
    assert_eq!(t["user_id"], bob.id);

    // A channel created on B with alice invited: she is told on A, messages cross.
    let general = bob.create_channel("general", "private", &[&alice.id]).await;
    let added = a_ws
        .next_where(|f| f["type"] == "channel_added" && f["channel"]["id"] == general)
        .await;
    assert_eq!(added["channel"]["name"], "general");
    let ack = b_ws.send_message(&general, "b-g1", "standup in 5").await;
    assert_eq!(ack["type"], "ack", "{ack}");
    let ev = a_ws
        .next_where(|f| f["kind"] == "message" && f["channel"] == general)
        .await;
    assert_eq!(ev["data"]["text"], "standup in 5");
    let ack = a_ws.send_message(&general, "a-g1", "on my way").await;
    let ev = b_ws
        .next_where(|f| f["kind"] == "message" && f["data"]["client_id"] == "a-g1")
        .await;
    assert_eq!(ev["seq"], ack["seq"]);

    // Presence changes cross: away and back.
    b_ws.send(json!({"type": "presence", "status": "away"}))
        .await;
    presence_event(&mut a_ws, &bob.id, "away").await;
    b_ws.send(json!({"type": "presence", "status": "online"}))
        .await;
    presence_event(&mut a_ws, &bob.id, "online").await;

    // Bob on both nodes: closing his session on B leaves him online (he is still on A)…
    let bob_a = on_node(&bob, &cluster.a);
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
    // …and closing the last one makes him offline, with a last-seen time.
    b2_ws.close().await;
    let off = presence_event(&mut a_ws, &bob.id, "offline").await;
    assert!(off["last_seen"].is_string(), "{off}");
}

// ---- 2. one sequence, many writers on two nodes -----------------------------------------------

/// 8 senders, 4 on each node, into one channel at once: every client sees the channel's events
/// numbered 1, 2, 3… with no gap and no repeat, all the same; every acked message is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_senders_on_both_nodes_share_one_gap_free_sequence() {
    const SENDERS: usize = 8;
    const PER_SENDER: usize = 20;
    let cluster = Cluster::start().await;
    let mut clients = Vec::new();
    for i in 0..SENDERS {
        let node = if i % 2 == 0 { &cluster.a } else { &cluster.b };
        clients.push(user_on(node, &format!("sender{i}")).await);
    }
    let others: Vec<&str> = clients[1..].iter().map(|c| c.id.as_str()).collect();
    let ch = clients[0].create_channel("busy", "private", &others).await;

    let mut tasks = tokio::task::JoinSet::new();
    for (i, client) in clients.into_iter().enumerate() {
        let ch = ch.clone();
        tasks.spawn(async move {
            // From seq 0: the replay and the live events together are the channel's full log.
            let (mut ws, mut events) = ws_from(&client, &[(&ch, 0)]).await;
            let mut acked = HashMap::new();
            for n in 0..PER_SENDER {
                let cid = format!("s{i}-{n}");
                let ack = ws
                    .send_message(&ch, &cid, &format!("message {n} from {i}"))
                    .await;
                assert_eq!(ack["type"], "ack", "sender {i}: {ack}");
                assert_eq!(ack["duplicate"], false);
                acked.insert(cid, ack);
            }
            collect_until(&mut ws, &ch, &mut events, |ev| {
                message_client_ids(ev).len() == SENDERS * PER_SENDER
            })
            .await;
            assert_gap_free(&events, 0, &format!("sender {i}"));
            (i, client, events, acked)
        });
    }
    let mut views = Vec::new();
    let mut acked = HashMap::new();
    let mut reader = None;
    while let Some(r) = tasks.join_next().await {
        let (i, client, events, a) = r.expect("sender task");
        acked.extend(a);
        views.push((i, events));
        reader.get_or_insert(client);
    }
    assert_eq!(acked.len(), SENDERS * PER_SENDER);
    let acked_seqs: HashSet<i64> = acked.values().map(|a| a["seq"].as_i64().unwrap()).collect();
    assert_eq!(
        acked_seqs.len(),
        acked.len(),
        "two sends were acked with one seq"
    );

    // All views agree event by event (each may have seen a few receipts more than another).
    let key = |e: &Value| {
        (
            e["seq"].as_i64(),
            e["kind"].clone(),
            e["data"]["id"].clone(),
        )
    };
    let (i0, first) = &views[0];
    for (i, view) in &views[1..] {
        let n = first.len().min(view.len());
        for k in 0..n {
            assert_eq!(
                key(&first[k]),
                key(&view[k]),
                "sender {i0} and sender {i} disagree at {k}"
            );
        }
    }
    // Message events carry the acked seqs.
    for e in first.iter().filter(|e| e["kind"] == "message") {
        let cid = e["data"]["client_id"].as_str().unwrap();
        assert_eq!(e["seq"], acked[cid]["seq"], "{cid}");
    }
    // The store holds each acked message once, under its acked seq, seen from either node.
    let reader = reader.unwrap();
    for node in [&cluster.a, &cluster.b] {
        let history = full_history(&on_node(&reader, node), &ch).await;
        assert_eq!(history.len(), SENDERS * PER_SENDER, "node {}", node.name);
        assert_acked_stored(&history, &acked, &format!("history via node {}", node.name));
    }
}

// ---- 3. a node crashes ------------------------------------------------------------------------

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

    let mut acked = HashMap::new();
    for n in 0..5 {
        for (ws, who) in [(&mut a_ws, "a"), (&mut b_ws, "b")] {
            let cid = format!("{who}{n}");
            let ack = ws.send_message(&ch, &cid, &format!("{who} says {n}")).await;
            assert_eq!(ack["type"], "ack", "{ack}");
            acked.insert(cid, ack);
        }
    }
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

    // Carol was only on A: she goes offline once A's presence entries expire, announced to
    // the watcher on B. Alice has a live session on B, so she stays online.
    wait_presence(
        &mut asker,
        &carol.id,
        "offline",
        Duration::from_secs(PRESENCE_TTL_SECS * 5 + 10),
    )
    .await;
    let off = presence_event(&mut watcher, &carol.id, "offline").await;
    assert!(off["last_seen"].is_string(), "{off}");
    assert_eq!(presence_now(&mut asker, &alice.id).await, "online");
}

// ---- 4. Redis goes away and comes back --------------------------------------------------------

/// Splits replayed events by channel.
fn by_channel(events: Vec<Value>) -> HashMap<String, Vec<Value>> {
    let mut out: HashMap<String, Vec<Value>> = HashMap::new();
    for e in events {
        out.entry(e["channel"].as_str().unwrap().to_string())
            .or_default()
            .push(e);
    }
    out
}

/// Stop Redis mid-conversation: each node keeps serving its own clients and says degraded;
/// once Redis is back on the same port cross-node delivery resumes and what was sent meanwhile
/// reaches the other node's clients.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_keeps_nodes_serving_locally_and_heals_afterwards() {
    let mut cluster = Cluster::start().await;
    let alice = user_on(&cluster.a, "alice").await;
    let carol = user_on(&cluster.a, "carol").await;
    let bob = user_on(&cluster.b, "bob").await;
    let dave = user_on(&cluster.b, "dave").await;
    // `general` is written on A during the outage (dave reads it on B), `random` on B (carol
    // reads it on A).
    let general = alice
        .create_channel("general", "private", &[&carol.id, &dave.id])
        .await;
    let random = bob
        .create_channel("random", "private", &[&dave.id, &carol.id])
        .await;
    let (mut alice_ws, _) = ws_from(&alice, &[]).await;
    let (mut bob_ws, _) = ws_from(&bob, &[]).await;
    let (mut carol_ws, replay) = ws_from(&carol, &[(&general, 0), (&random, 0)]).await;
    let mut carol_seen = by_channel(replay);
    let (mut dave_ws, replay) = ws_from(&dave, &[(&general, 0), (&random, 0)]).await;
    let mut dave_seen = by_channel(replay);
    let mut acked = HashMap::new();

    let send = async |ws: &mut Ws, ch: &str, cid: &str, acked: &mut HashMap<String, Value>| {
        let ack = ws.send_message(ch, cid, &format!("text of {cid}")).await;
        assert_eq!(ack["type"], "ack", "{cid}: {ack}");
        acked.insert(cid.to_string(), ack);
    };
    let has = |cids: &'static [&'static str]| {
        move |ev: &[Value]| {
            let got = message_client_ids(ev);
            cids.iter().all(|c| got.contains(*c))
        }
    };

    // Cross-node delivery before the outage.
    send(&mut alice_ws, &general, "g0", &mut acked).await;
    send(&mut bob_ws, &random, "r0", &mut acked).await;
    collect_until(
        &mut dave_ws,
        &general,
        dave_seen.entry(general.clone()).or_default(),
        has(&["g0"]),
    )
    .await;
    collect_until(
        &mut carol_ws,
        &random,
        carol_seen.entry(random.clone()).or_default(),
        has(&["r0"]),
    )
    .await;
    for node in [&cluster.a, &cluster.b] {
        let ready = node
            .wait_ready_status(200, "ready", Duration::from_secs(10))
            .await;
        assert_eq!(ready["redis"], "ok", "{ready}");
        assert_eq!(
            node.metric("fullslack_redis_up").await,
            Some(1.0),
            "node {}",
            node.name
        );
    }

    cluster.stop_redis().await;
    for node in [&cluster.a, &cluster.b] {
        let body = node
            .wait_ready_status(200, "degraded", Duration::from_secs(30))
            .await;
        assert_ne!(body["redis"], "ok", "{body}");
        assert_eq!(body["store"], "ok", "{body}");
        assert_eq!(
            node.metric("fullslack_redis_up").await,
            Some(0.0),
            "node {}",
            node.name
        );
    }
    // Each node serves its own clients: A's channel talk reaches carol on A, B's reaches dave.
    send(&mut alice_ws, &general, "g1", &mut acked).await;
    send(&mut alice_ws, &general, "g2", &mut acked).await;
    send(&mut bob_ws, &random, "r1", &mut acked).await;
    send(&mut bob_ws, &random, "r2", &mut acked).await;
    collect_until(
        &mut carol_ws,
        &general,
        carol_seen.entry(general.clone()).or_default(),
        has(&["g1", "g2"]),
    )
    .await;
    collect_until(
        &mut dave_ws,
        &random,
        dave_seen.entry(random.clone()).or_default(),
        has(&["r1", "r2"]),
    )
    .await;

    cluster.restart_redis().await;
    for node in [&cluster.a, &cluster.b] {
        let ready = node
            .wait_ready_status(200, "ready", Duration::from_secs(30))
            .await;
        assert_eq!(ready["redis"], "ok", "{ready}");
        assert_eq!(
            node.metric("fullslack_redis_up").await,
            Some(1.0),
            "node {}",
            node.name
        );
    }
    // What the other node's clients missed arrives…
    collect_until(
        &mut dave_ws,
        &general,
        dave_seen.entry(general.clone()).or_default(),
        has(&["g1", "g2"]),
    )
    .await;
    collect_until(
        &mut carol_ws,
        &random,
        carol_seen.entry(random.clone()).or_default(),
        has(&["r1", "r2"]),
    )
    .await;
    // …and live cross-node delivery is back.
    send(&mut alice_ws, &general, "g3", &mut acked).await;
    send(&mut bob_ws, &random, "r3", &mut acked).await;
    collect_until(
        &mut dave_ws,
        &general,
        dave_seen.entry(general.clone()).or_default(),
        has(&["g3"]),
    )
    .await;
    collect_until(
        &mut carol_ws,
        &random,
        carol_seen.entry(random.clone()).or_default(),
        has(&["r3"]),
    )
    .await;

    for (who, seen) in [("carol", &carol_seen), ("dave", &dave_seen)] {
        for ch in [&general, &random] {
            assert_gap_free(&seen[ch.as_str()], 0, &format!("{who} in {ch}"));
        }
    }
    let (g, r): (HashMap<_, _>, HashMap<_, _>) =
        acked.into_iter().partition(|(cid, _)| cid.starts_with('g'));
    assert_acked_stored(&full_history(&dave, &general).await, &g, "general");
    assert_acked_stored(&full_history(&carol, &random).await, &r, "random");
    // One outage, one warning per node (not one per message, and no flapping after the
    // reconnect).
    for node in [&cluster.a, &cluster.b] {
        let warnings: Vec<Value> = node
            .log_json()
            .into_iter()
            .filter(|l| l["level"] == "WARN" && l.to_string().to_lowercase().contains("redis"))
            .collect();
        assert_eq!(
            warnings.len(),
            1,
            "node {}: Redis warnings for one outage: {warnings:#?}",
            node.name
        );
    }
}

// ---- 5. the store goes away -------------------------------------------------------------------

/// Kill the MongoDB server mid-conversation: sends are refused with `unavailable` on both
/// nodes (socket and HTTP), nothing is acknowledged that is not stored; after it restarts on
/// the same data, every acknowledged message is there and refused sends retried under their
/// client ids are stored once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongo_outage_refuses_sends_and_never_acks_what_is_not_stored() {
    const BURST: usize = 3;
    /// A send to a dead store is refused after the store driver's server-selection timeout
    /// (3 s; ~4 s measured), not at once: generous for a loaded machine.
    const STORE_DOWN_ANSWER: Duration = Duration::from_secs(20);
    let mut cluster = Cluster::start().await;
    let alice = user_on(&cluster.a, "alice").await;
    let bob = user_on(&cluster.b, "bob").await;
    let ch = alice.create_channel("general", "private", &[&bob.id]).await;
    let (mut a_ws, mut alice_seen) = ws_from(&alice, &[(&ch, 0)]).await;
    let (mut b_ws, mut bob_seen) = ws_from(&bob, &[(&ch, 0)]).await;
    let mut acked = HashMap::new();
    for n in 0..3 {
        for (ws, who) in [(&mut a_ws, "a"), (&mut b_ws, "b")] {
            let cid = format!("{who}{n}");
            let ack = ws.send_message(&ch, &cid, &format!("{who} says {n}")).await;
            assert_eq!(ack["type"], "ack", "{ack}");
            acked.insert(cid, ack);
        }
    }

    // Sends in flight as the store dies: each is either acknowledged or refused.
    for n in 0..BURST {
        let cid = format!("burst{n}");
        a_ws.send(json!({"type": "send", "ref": cid, "channel": ch, "client_id": cid, "text": "racing the crash"}))
            .await;
    }
    cluster.kill_mongo().await;
    // (author's socket, client id) of every refused send, retried later.
    let mut refused: Vec<(&str, String)> = Vec::new();
    let mut answers: HashMap<String, Value> = HashMap::new();
    // They queue behind each other (one channel), each waiting out the store's server
    // selection: the bound is per answer.
    while answers.len() < BURST {
        let before = answers.len();
        let answered = read_until(&mut a_ws, STORE_DOWN_ANSWER, |f| {
            match f["type"].as_str() {
                Some("ack" | "error")
                    if f["ref"].as_str().is_some_and(|r| r.starts_with("burst")) =>
                {
                    answers.insert(f["ref"].as_str().unwrap().to_string(), f);
                }
                Some("event") if f["channel"] == ch => alice_seen.push(f),
                _ => {}
            }
            answers.len() > before
        })
        .await;
        assert!(
            answered,
            "a send in flight when the store died got no answer within {STORE_DOWN_ANSWER:?} \
             (answered so far: {answers:?})"
        );
    }
    for (cid, f) in answers {
        if f["type"] == "ack" {
            acked.insert(cid, f);
        } else {
            assert_eq!(f["code"], "unavailable", "{f}");
            refused.push(("a", cid));
        }
    }

    // While it is down nothing is acknowledged, on either node, and the error says why.
    for (ws, seen, who) in [
        (&mut a_ws, &mut alice_seen, "a"),
        (&mut b_ws, &mut bob_seen, "b"),
    ] {
        let cid = format!("down-{who}");
        ws.send(json!({"type": "send", "ref": cid, "channel": ch, "client_id": cid, "text": "while the store is down"}))
            .await;
        let mut answer = Value::Null;
        let answered = read_until(ws, STORE_DOWN_ANSWER, |f| {
            if f["type"] == "event" && f["channel"] == ch {
                seen.push(f);
                false
            } else if f["ref"] == cid {
                answer = f;
                true
            } else {
                false
            }
        })
        .await;
        assert!(
            answered,
            "node {who}: a send to a dead store got no answer within {STORE_DOWN_ANSWER:?}"
        );
        assert_eq!(answer["type"], "error", "node {who}: {answer}");
        assert_eq!(answer["code"], "unavailable", "{answer}");
        assert!(
            !answer["message"].as_str().unwrap_or_default().is_empty(),
            "{answer}"
        );
        refused.push((who, cid));
    }
    let (status, body) = tokio::time::timeout(
        STORE_DOWN_ANSWER,
        bob.post(
            &format!("/api/channels/{ch}/messages"),
            json!({"text": "over http", "client_id": "down-http"}),
        ),
    )
    .await
    .expect("an HTTP send to a dead store is answered");
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "unavailable", "{body}");
    refused.push(("b", "down-http".into()));
    for node in [&cluster.a, &cluster.b] {
        let (status, body) = node.readyz().await;
        assert_eq!(status, 503, "node {}: {body}", node.name);
    }

    cluster.restart_mongo().await;
    for node in [&cluster.a, &cluster.b] {
        node.wait_ready_status(200, "ready", Duration::from_secs(60))
            .await;
    }
    // Retried under the same client ids: stored once each (a racing one may already be).
    for (who, cid) in &refused {
        let ws = if *who == "a" { &mut a_ws } else { &mut b_ws };
        let ack = ws.send_message(&ch, cid, "retried").await;
        assert_eq!(ack["type"], "ack", "{cid}: {ack}");
        acked.insert(cid.clone(), ack);
    }
    for node in [&cluster.a, &cluster.b] {
        let reader = on_node(&alice, node);
        let history = full_history(&reader, &ch).await;
        assert_acked_stored(&history, &acked, &format!("history via node {}", node.name));
        assert_eq!(
            history.len(),
            acked.len(),
            "only acknowledged sends are stored"
        );
    }
    // Both sockets lived through it and still see one gap-free sequence with everything.
    let all: HashSet<String> = acked.keys().cloned().collect();
    for (ws, seen, who) in [
        (&mut a_ws, &mut alice_seen, "alice"),
        (&mut b_ws, &mut bob_seen, "bob"),
    ] {
        collect_until(ws, &ch, seen, |ev| message_client_ids(ev).is_superset(&all)).await;
        assert_gap_free(seen, 0, who);
    }
}
