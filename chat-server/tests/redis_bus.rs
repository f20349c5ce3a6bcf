//! Two nodes in one test process sharing a real `redis-server` and a real SecantusDB (MongoDB
//! wire protocol), both started by the test (`common::services`): cross-node fan-out,
//! presence across nodes (including a crashed node's entries expiring), shared rate limits,
//! and a Redis outage: degraded but serving locally, then healing by itself.

mod common;

use std::time::Duration;

use common::{
    services::{MongoServer, RedisServer},
    tempdir, Client, TestServer, Ws,
};
use fullslack_chat::{auth::SecretString, config::Settings};
use serde_json::{json, Value};

const TTL_SECS: u64 = 3;

struct Pair {
    a: TestServer,
    b: TestServer,
    redis: RedisServer,
    _mongo: MongoServer,
}

/// Two nodes on one Redis and one database.
async fn pair(tweak: impl Fn(&mut Settings) + Copy) -> Pair {
    let redis = RedisServer::start();
    let mongo = MongoServer::start();
    let db = format!("redis_bus_{}", std::process::id());
    let configure = |s: &mut Settings| {
        s.store_url = mongo.url(&db);
        s.redis_url = Some(SecretString::from(redis.url()));
        s.realtime.presence_ttl_secs = TTL_SECS;
        tweak(s);
    };
    let a = TestServer::start_with(tempdir(), configure).await;
    let b = TestServer::start_with(tempdir(), configure).await;
    for n in [&a, &b] {
        ready(n, "ready").await;
    }
    Pair {
        a,
        b,
        redis,
        _mongo: mongo,
    }
}

async fn readyz(n: &TestServer) -> (u16, Value) {
    let r = reqwest::get(format!("{}/readyz", n.base)).await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

/// Waits (up to 15 s) until `/readyz` says `status` with HTTP 200.
async fn ready(n: &TestServer, status: &str) -> Value {
    let mut last = Value::Null;
    for _ in 0..150 {
        let (code, body) = readyz(n).await;
        if code == 200 && body["status"] == status {
            return body;
        }
        last = body;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("readyz never said {status}: {last}");
}

fn is_message(text: &str) -> impl Fn(&Value) -> bool + '_ {
    move |f: &Value| f["type"] == "event" && f["kind"] == "message" && f["data"]["text"] == text
}

/// Stopping or starting a server process blocks: keep it off the runtime's async threads.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn channel_messages_dms_typing_and_membership_cross_nodes() {
    let p = pair(|_| {}).await;
    let alice = Client::register(&p.a, "alice").await;
    let bob = Client::register(&p.b, "bob").await;
    let ch = alice.create_channel("general", "public", &[&bob.id]).await;
    let mut wa = alice.ws().await;
    let mut wb = bob.ws().await;

    // Node A → node B, in a channel.
    let ack = wa.send_message(&ch, "m1", "hello from A").await;
    assert_eq!(ack["type"], "ack", "{ack}");
    let got = wb.next_where(is_message("hello from A")).await;
    assert_eq!(got["channel"], ch.as_str());
    assert_eq!(got["seq"], ack["seq"]);

    // Node B → node A, in a DM opened on B.
    let dm = bob.dm(&[&alice.id]).await;
    let added = wa.next_where(|f| f["type"] == "channel_added").await;
    assert_eq!(added["channel"]["id"], dm.as_str(), "{added}");
    let ack = wb.send_message(&dm, "d1", "dm from B").await;
    assert_eq!(ack["type"], "ack", "{ack}");
    wa.next_where(is_message("dm from B")).await;

    // Typing crosses too (and is not echoed to the typist).
    wb.send(json!({"type": "typing", "channel": ch})).await;
    let typing = wa.next_where(|f| f["type"] == "typing").await;
    assert_eq!(typing["user_id"], bob.id.as_str());

    // Receipts: alice reading on A reaches bob's socket on B as a receipt event.
    wa.send(json!({"type": "read", "ref": "r1", "channel": dm, "seq": ack["seq"]}))
        .await;
    let read_seq = ack["seq"].as_i64();
    wb.next_where(|f| {
        f["channel"] == dm.as_str()
            && fullslack_test_support::wire::receipt_of(f, &alice.id)
                .is_some_and(|r| Some(r.read_seq) == read_seq)
    })
    .await;

    // Joining on B a channel that A has cached: A hears of the new member at once, so carol
    // may write through A right away.
    let carol = Client::register(&p.b, "carol").await;
    let (s, v) = carol
        .post(&format!("/api/channels/{ch}/join"), json!({}))
        .await;
    assert_eq!(s, 200, "{v}");
    let carol_a = Client::login(&p.a, "carol").await;
    let mut wc = carol_a.ws().await;
    let ack = wc.send_message(&ch, "c1", "carol here").await;
    assert_eq!(ack["type"], "ack", "{ack}");
    wb.next_where(is_message("carol here")).await;

    assert_eq!(p.a.metric("fullslack_redis_up").await, 1.0);
    assert!(p.a.metric("fullslack_redis_events_published_total").await >= 1.0);
    assert!(p.b.metric("fullslack_redis_events_received_total").await >= 1.0);
    let body = ready(&p.a, "ready").await;
    assert_eq!(body["redis"], "ok");

    // Signing out through node B closes the session's socket on node A.
    logout(&p.b, &alice).await;
    let closed = wa.next_where(|f| f["type"] == "__close").await;
    assert_eq!(closed["reason"], "session ended", "{closed}");
    p.a.stop().await;
    p.b.stop().await;
}

async fn logout(node: &TestServer, who: &Client) {
    let resp = reqwest::Client::new()
        .post(format!("{}/api/auth/logout", node.base))
        .bearer_auth(&who.token)
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn presence_spans_nodes_and_a_crashed_nodes_entries_expire() {
    let p = pair(|_| {}).await;
    let alice = Client::register(&p.a, "alice").await;
    let bob = Client::register(&p.b, "bob").await;
    let mut wb = bob.ws().await;
    wb.send(json!({"type": "presence_subscribe", "user_ids": [alice.id]}))
        .await;
    let first = wb.next_where(|f| f["type"] == "presence").await;
    assert_eq!(first["status"], "offline", "{first}");

    // Alice online on A: bob on B hears it.
    let wa1 = alice.ws().await;
    let on = wb.next_where(|f| f["type"] == "presence").await;
    assert_eq!(on["status"], "online", "{on}");
    // A second session on B; closing the one on A leaves her online.
    let alice_b = Client::login(&p.b, "alice").await;
    let wa2 = alice_b.ws().await;
    wa1.close().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let user = bob.ok_get(&format!("/api/users/{}", alice.id)).await;
    assert_eq!(user["presence"], "online", "{user}");
    let quiet = wb.drain(Duration::from_millis(300)).await;
    assert!(
        !quiet
            .iter()
            .any(|f| f["type"] == "presence" && f["status"] == "offline"),
        "one closed session of two must not announce offline: {quiet:?}"
    );
    // Last session gone: offline with a last-seen time.
    wa2.close().await;
    let off = wb.next_where(|f| f["type"] == "presence").await;
    assert_eq!(off["status"], "offline", "{off}");
    assert!(off["last_seen"].is_string(), "{off}");

    // A node that died without a word leaves its entry behind: write one as it would have
    // (member o:NODE, score = expiry) and watch a live node expire it and tell bob.
    let dave = Client::register(&p.a, "dave").await;
    wb.send(json!({"type": "presence_subscribe", "user_ids": [dave.id]}))
        .await;
    wb.next_where(|f| f["type"] == "presence" && f["user_id"] == dave.id.as_str())
        .await;
    let client = redis::Client::open(p.redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let expiry = now_ms + 1500;
    redis::pipe()
        .cmd("ZADD")
        .arg(format!("fullslack:pres:{}", dave.id))
        .arg(expiry)
        .arg("o:crashed-node")
        .cmd("ZADD")
        .arg("fullslack:pres-index")
        .arg(expiry)
        .arg(&dave.id)
        .exec_async(&mut conn)
        .await
        .unwrap();
    let user = bob.ok_get(&format!("/api/users/{}", dave.id)).await;
    assert_eq!(user["presence"], "online", "{user}");
    let started = std::time::Instant::now();
    let gone = wb
        .next_where(|f| f["type"] == "presence" && f["user_id"] == dave.id.as_str())
        .await;
    assert_eq!(gone["status"], "offline", "{gone}");
    assert!(gone["last_seen"].is_string(), "{gone}");
    assert!(started.elapsed() < Duration::from_secs(TTL_SECS + 2));
    let user = alice.ok_get(&format!("/api/users/{}", dave.id)).await;
    assert_eq!(user["presence"], "offline", "{user}");
    p.a.stop().await;
    p.b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rate_limits_are_shared_and_fall_back_to_local() {
    let mut p = pair(|s| {
        s.rate_limit.send_per_sec = 1;
        s.rate_limit.send_burst = 3;
    })
    .await;
    let alice = Client::register(&p.a, "alice").await;
    let alice_b = Client::login(&p.b, "alice").await;
    let ch = alice.dm(&[]).await;
    let mut wa = alice.ws().await;
    let mut wb = alice_b.ws().await;
    for (i, on_a) in [true, false, true].into_iter().enumerate() {
        let ws = if on_a { &mut wa } else { &mut wb };
        let ack = ws.send_message(&ch, &format!("s{i}"), "within burst").await;
        assert_eq!(ack["type"], "ack", "{ack}");
    }
    // The fourth send, on the other node, finds the shared bucket empty.
    let refused = wb.send_message(&ch, "s3", "over the limit").await;
    assert_eq!(refused["type"], "error", "{refused}");
    assert_eq!(refused["code"], "rate_limited", "{refused}");
    assert!(
        refused["retry_after_ms"].as_u64().unwrap() >= 1,
        "{refused}"
    );

    // Without Redis each node limits alone: B's own bucket has its burst left.
    blocking(|| p.redis.stop());
    ready(&p.b, "degraded").await;
    let ack = wb.send_message(&ch, "s4", "local bucket").await;
    assert_eq!(ack["type"], "ack", "{ack}");
    p.a.stop().await;
    p.b.stop().await;
}

/// A sign-in (`login`) with a wrong password through `node`, as a trusted proxy forwarding
/// for `client`; the status and how long the answer took.
async fn wrong_login(node: &TestServer, client: &str) -> (u16, Duration) {
    let started = std::time::Instant::now();
    let status = reqwest::Client::new()
        .post(format!("{}/api/auth/login", node.base))
        .header("x-forwarded-for", client)
        .json(&json!({"username": "alice", "password": "wrong password"}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16();
    (status, started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sign_in_throttling_is_shared_between_nodes() {
    let p = pair(|s| {
        s.trusted_proxies = fullslack_chat::proxy::TrustedProxies::parse("127.0.0.1").unwrap();
        // One token a minute: nothing here races a refill.
        s.rate_limit.auth_per_min = 1;
        s.rate_limit.auth_burst = 2;
        s.rate_limit.auth_name_burst = 1;
        s.rate_limit.auth_name_max_delay_ms = 5000;
    })
    .await;
    // Per (address, name): two attempts on A, the third on B finds the shared bucket empty.
    assert_eq!(wrong_login(&p.a, "10.0.0.1").await.0, 401);
    let second = std::time::Instant::now();
    assert_eq!(wrong_login(&p.a, "10.0.0.1").await.0, 401);
    assert_eq!(wrong_login(&p.b, "10.0.0.1").await.0, 429);
    // Per name: A's two failures (one beyond the allowance of 1, which refills in a minute)
    // hold alice's sign-ins back on B too, from a new address: slowed, not refused. The hold
    // is the 5 s cap minus the time since the second failure, which was recorded after
    // `second` and before the answer below: so 2 × took + (fourth − second) ≥ 5 s, however
    // slow the machine.
    let fourth = std::time::Instant::now();
    let (status, took) = wrong_login(&p.b, "10.0.0.2").await;
    assert_eq!(status, 401);
    assert!(
        took * 2 + (fourth - second) >= Duration::from_secs(5),
        "held back {took:?}, {:?} after the second failure",
        fourth - second
    );
    p.a.stop().await;
    p.b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_outage_degrades_serves_locally_and_heals() {
    let mut p = pair(|_| {}).await;
    let alice = Client::register(&p.a, "alice").await;
    let carol = Client::register(&p.a, "carol").await;
    let bob = Client::register(&p.b, "bob").await;
    let ch = alice
        .create_channel("ops", "public", &[&bob.id, &carol.id])
        .await;
    let mut wa = alice.ws().await;
    let mut wc = carol.ws().await;
    let mut wb = bob.ws().await;
    let bob2 = Client::login(&p.b, "bob").await;
    let mut wb2 = bob2.ws().await;
    wa.send_message(&ch, "m0", "before").await;
    wb.next_where(is_message("before")).await;

    blocking(|| p.redis.stop());
    for n in [&p.a, &p.b] {
        let body = ready(n, "degraded").await;
        assert_eq!(body["store"], "ok", "{body}");
        assert!(
            body["redis"]
                .as_str()
                .is_some_and(|e| !e.is_empty() && e != "ok"),
            "{body}"
        );
        assert_eq!(n.metric("fullslack_redis_up").await, 0.0);
    }
    // Each node keeps serving its own clients: sends are acknowledged, local fan-out works.
    let ack = wa.send_message(&ch, "m1", "during outage").await;
    assert_eq!(ack["type"], "ack", "{ack}");
    wc.next_where(is_message("during outage")).await;
    let ack = wb.send_message(&ch, "m2", "B during outage").await;
    assert_eq!(ack["type"], "ack", "{ack}");
    // A conversation opened on A meanwhile: B cannot hear of it yet. Nor of bob signing out
    // his second session through A.
    let dm = alice.dm(&[&bob.id]).await;
    logout(&p.a, &bob2).await;

    // Redis returns (empty): the nodes reconnect by themselves, and what was sent meanwhile
    // reaches the other node's sockets from the store without anyone sending again.
    blocking(|| p.redis.restart());
    for n in [&p.a, &p.b] {
        ready(n, "ready").await;
    }
    let missed = wb.next_where(is_message("during outage")).await;
    assert!(
        missed["seq"].as_i64().unwrap() < ack["seq"].as_i64().unwrap(),
        "{missed}"
    );
    wa.next_where(is_message("B during outage")).await;
    wc.next_where(is_message("B during outage")).await;
    // The ended session's socket on B closes once B can check; the DM opened during the
    // outage reaches bob's other socket, which follows it from then on.
    let closed = wb2.next_where(|f| f["type"] == "__close").await;
    assert_eq!(closed["reason"], "session ended", "{closed}");
    let added = wb
        .next_where(|f| f["type"] == "channel_added" && f["channel"]["id"] == dm.as_str())
        .await;
    assert_eq!(added["channel"]["kind"], "dm", "{added}");
    wa.send_message(&dm, "d1", "dm after the outage").await;
    wb.next_where(is_message("dm after the outage")).await;
    // And live cross-node delivery works again.
    wb.send_message(&ch, "m3", "after").await;
    wa.next_where(is_message("after")).await;
    assert_eq!(p.b.metric("fullslack_redis_up").await, 1.0);

    // Sequences on every socket are gap-free and duplicate-free.
    for (name, ws) in [("alice", &mut wa), ("bob", &mut wb), ("carol", &mut wc)] {
        let seqs = channel_seqs(ws, &ch).await;
        let mut sorted = seqs.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(seqs, sorted, "{name}: {seqs:?}");
    }
    p.a.stop().await;
    p.b.stop().await;
}

/// Seqs of `channel` in what a socket was sent (backlog and a short drain).
async fn channel_seqs(ws: &mut Ws, channel: &str) -> Vec<i64> {
    ws.drain(Duration::from_millis(300))
        .await
        .iter()
        .filter(|f| f["type"] == "event" && f["channel"] == channel)
        .filter_map(|f| f["seq"].as_i64())
        .collect::<Vec<_>>()
}

/// Polls `f` every 100 ms for up to 10 s until it returns `want`; the last value otherwise.
async fn settle<F, Fut>(want: i64, mut f: F) -> i64
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = i64>,
{
    let mut last = f().await;
    for _ in 0..100 {
        if last == want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        last = f().await;
    }
    last
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_subscriber_connection_per_node_and_only_the_channels_it_needs() {
    let p = pair(|_| {}).await;
    let alice = Client::register(&p.a, "alice").await;
    let bob = Client::register(&p.a, "bob").await;
    let carol = Client::register(&p.b, "carol").await;
    let ch = alice
        .create_channel("busy", "public", &[&bob.id, &carol.id])
        .await;
    let quiet = alice.create_channel("quiet", "private", &[&bob.id]).await;
    // Five sockets on A (two users), one on B.
    let mut on_a = Vec::new();
    for c in [&alice, &alice, &alice, &bob, &bob] {
        on_a.push(c.ws().await);
    }
    let wc = carol.ws().await;

    let client = redis::Client::open(p.redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let sub_conn = conn.clone();
    let numsub = |topic: String| {
        let mut conn = sub_conn.clone();
        async move {
            let v: Vec<(String, i64)> = redis::cmd("PUBSUB")
                .arg("NUMSUB")
                .arg(&topic)
                .query_async(&mut conn)
                .await
                .unwrap();
            v[0].1
        }
    };
    // Each node subscribes once per channel, however many of its sockets follow it; B does
    // not subscribe to a channel none of its users is in.
    let busy = format!("fullslack:ch:{ch}");
    assert_eq!(settle(2, || numsub(busy.clone())).await, 2);
    assert_eq!(numsub(format!("fullslack:ch:{quiet}")).await, 1);
    // One subscriber connection per node, not one per socket.
    let list: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query_async(&mut conn)
        .await
        .unwrap();
    let subscribers = list
        .lines()
        .filter(|l| {
            l.split(' ')
                .any(|kv| kv.strip_prefix("sub=").is_some_and(|n| n != "0"))
        })
        .count();
    assert_eq!(subscribers, 2, "{list}");
    // The last socket following the channel on B goes: B unsubscribes.
    wc.close().await;
    assert_eq!(settle(1, || numsub(busy.clone())).await, 1);
    for ws in on_a {
        ws.close().await;
    }
    assert_eq!(settle(0, || numsub(busy.clone())).await, 0);
    p.a.stop().await;
    p.b.stop().await;
}
