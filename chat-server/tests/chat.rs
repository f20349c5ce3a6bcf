//! End-to-end behaviour of the chat server over real sockets (see tests/common).

mod common;

use std::{collections::HashMap, time::Duration};

use common::{seqs, Client, TestServer, Ws};
use futures_util::SinkExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::{
    protocol::frame::{coding::OpCode, Frame},
    Message,
};

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
    assert_eq!(added["channel"]["id"], dm);
    assert_eq!(added["channel"]["kind"], "dm");

    let ack = alice_ws.send_message(&dm, "a-1", "hi bob").await;
    assert_eq!(ack["type"], "ack", "{ack}");
    assert_eq!(ack["duplicate"], false);
    let ev = bob_ws.next_event("message").await;
    assert_eq!(ev["data"]["text"], "hi bob");
    assert_eq!(ev["data"]["author_id"], alice.id);
    assert_eq!(ev["seq"], ack["seq"]);

    let ack = bob_ws.send_message(&dm, "b-1", "hello alice").await;
    assert_eq!(ack["type"], "ack");
    let ev = alice_ws
        .next_where(|f| {
            f["type"] == "event" && f["kind"] == "message" && f["data"]["client_id"] == "b-1"
        })
        .await;
    assert_eq!(ev["data"]["text"], "hello alice");

    // The other user's view: the DM is listed with an unread count.
    let chans = alice.ok_get("/api/channels").await;
    let c = chans
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == dm)
        .unwrap();
    assert_eq!(c["unread"], 1);
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

    let thread = alice
        .ok_get(&format!("/api/channels/{ch}/messages/{root_id}/replies"))
        .await;
    assert_eq!(thread["root"]["reply_count"], 2);
    let replies: Vec<&str> = thread["replies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    assert_eq!(replies, ["yes 0", "yes 1"]);
    let history = alice.ok_get(&format!("/api/channels/{ch}/messages")).await;
    let texts: Vec<&str> = history["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["shall we ship?"]);

    // A reply to a message of another channel is refused.
    let other = alice.create_channel("other", "public", &[]).await;
    a.send(json!({"type": "send", "ref": "x", "channel": other, "client_id": "bad-root", "text": "?", "thread_root": root_id})).await;
    let err = a.next_where(|f| f["ref"] == "x").await;
    assert_eq!(err["type"], "error");
    assert_eq!(err["code"], "not_found");
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

    let edit = b.next_event("edit").await;
    assert_eq!(edit["data"]["text"], "hello @bob");
    let reaction = b.next_event("reaction").await;
    assert_eq!(
        (
            reaction["data"]["emoji"].as_str(),
            reaction["data"]["added"].as_bool()
        ),
        (Some("👍"), Some(true))
    );
    let del = b.next_event("delete").await;
    assert_eq!(del["data"]["message_id"], mid);

    // Carol was offline the whole time: resume gives her the same story, in order.
    let mut c = Ws::connect(&carol.ws_url, &carol.token).await;
    let replay = c.resume(HashMap::from([(ch.clone(), start)])).await;
    let kinds: Vec<&str> = replay
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .filter(|k| *k != "receipt")
        .collect();
    assert_eq!(kinds, ["message", "edit", "reaction", "delete"]);
    let s = seqs(&replay);
    assert!(s.windows(2).all(|w| w[1] == w[0] + 1), "gap-free: {s:?}");
    assert_eq!(s[0], start + 1);

    let m = alice
        .ok_get(&format!("/api/channels/{ch}/messages/{mid}"))
        .await;
    assert_eq!(
        (m["deleted"].as_bool(), m["text"].as_str()),
        (Some(true), Some("")),
        "tombstone"
    );
    server.stop().await;
}

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

    let ack = a.send_message(&dm, "m1", "did you get this?").await;
    let (seq, mid) = (
        ack["seq"].as_i64().unwrap(),
        ack["message_id"].as_str().unwrap().to_string(),
    );
    let receipts = alice
        .ok_get(&format!("/api/channels/{dm}/messages/{mid}/receipts"))
        .await;
    assert_eq!(receipts, json!([{"user_id": bob.id, "status": "sent"}]));

    // Bob's socket receives it (catch-up on connect): delivered.
    let mut b = Ws::connect(&bob.ws_url, &bob.token).await;
    let replay = b.resume(HashMap::from([(dm.clone(), 0)])).await;
    assert!(replay
        .iter()
        .any(|e| e["kind"] == "message" && e["seq"] == seq));
    let r = a
        .next_where(|f| f["kind"] == "receipt" && f["data"]["user_id"] == bob.id)
        .await;
    assert_eq!(r["data"]["delivered_seq"], seq);
    assert!(r["data"]["read_seq"].as_i64().unwrap() < seq);
    let receipts = alice
        .ok_get(&format!("/api/channels/{dm}/messages/{mid}/receipts"))
        .await;
    assert_eq!(receipts[0]["status"], "delivered");

    b.send(json!({"type": "read", "ref": "rd", "channel": dm, "seq": seq}))
        .await;
    assert_eq!(b.next_where(|f| f["ref"] == "rd").await["type"], "ack");
    let r = a
        .next_where(|f| f["kind"] == "receipt" && f["data"]["read_seq"] == seq)
        .await;
    assert_eq!(r["data"]["user_id"], bob.id);
    let receipts = alice
        .ok_get(&format!("/api/channels/{dm}/messages/{mid}/receipts"))
        .await;
    assert_eq!(receipts[0]["status"], "read");
    // Unread count for bob is now zero; reading again changes nothing (no receipt storm).
    let chans = bob.ok_get("/api/channels").await;
    assert_eq!(
        chans
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == dm)
            .unwrap()["unread"],
        0
    );
    b.send(json!({"type": "read", "ref": "rd2", "channel": dm, "seq": seq + 100}))
        .await;
    assert_eq!(
        b.next_where(|f| f["ref"] == "rd2").await["seq"],
        Value::Null
    );

    // Replying without an explicit `read` still tells alice that bob read her message.
    let ack2 = a.send_message(&dm, "m2", "and this one?").await;
    let seq2 = ack2["seq"].as_i64().unwrap();
    b.next_where(|f| f["kind"] == "message" && f["seq"] == seq2)
        .await;
    let reply = b.send_message(&dm, "b-reply", "yes, both").await;
    assert_eq!(reply["type"], "ack");
    let r = a
        .next_where(|f| f["kind"] == "receipt" && f["data"]["read_seq"] == seq2)
        .await;
    assert_eq!(r["data"]["user_id"], bob.id);
    assert!(
        r["seq"].as_i64().unwrap() < reply["seq"].as_i64().unwrap(),
        "receipt before the reply"
    );

    // In a group the members' watermarks give "seen by".
    let carol = Client::register(&server, "carol").await;
    let group = alice.dm(&[&bob.id, &carol.id]).await;
    let ack = a.send_message(&group, "g1", "group hello").await;
    let gseq = ack["seq"].as_i64().unwrap();
    b.send(json!({"type": "read", "channel": group, "seq": gseq}))
        .await;
    a.next_where(|f| {
        f["kind"] == "receipt"
            && f["channel"] == group
            && f["data"]["user_id"] == bob.id
            && f["data"]["read_seq"] == gseq
    })
    .await;
    let members = alice
        .ok_get(&format!("/api/channels/{group}/members"))
        .await;
    let seen_by: Vec<&str> = members
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["user_id"] != alice.id && m["read_seq"].as_i64().unwrap() >= gseq)
        .map(|m| m["user_id"].as_str().unwrap())
        .collect();
    assert_eq!(seen_by, [bob.id.as_str()]);
    server.stop().await;
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
async fn sends_beyond_the_rate_limit_are_refused_with_retry_after() {
    let dir = common::tempdir();
    let server = TestServer::start_with(dir, |s| {
        s.rate_limit.send_per_sec = 1;
        s.rate_limit.send_burst = 3;
    })
    .await;
    let alice = Client::register(&server, "alice").await;
    let ch = alice.dm(&[]).await;
    let mut a = alice.ws().await;
    for i in 0..3 {
        assert_eq!(
            a.send_message(&ch, &format!("ok{i}"), "within the burst")
                .await["type"],
            "ack"
        );
    }
    let err = a.send_message(&ch, "over", "one too many").await;
    assert_eq!(
        (err["type"].as_str(), err["code"].as_str()),
        (Some("error"), Some("rate_limited"))
    );
    assert!(err["retry_after_ms"].as_u64().unwrap() > 0);
    let resp = alice
        .http
        .post(format!("{}/api/channels/{ch}/messages", alice.base))
        .bearer_auth(&alice.token)
        .json(&json!({"text": "rest too", "client_id": "rest-1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);
    assert!(resp.headers().get("retry-after").is_some());
    // Nothing refused was stored.
    let h = alice.ok_get(&format!("/api/channels/{ch}/messages")).await;
    assert_eq!(h["messages"].as_array().unwrap().len(), 3);
    server.stop().await;
}

/// A sign-up or sign-in (`route`) with `password`, from `client` as a proxy would forward it
/// (`X-Forwarded-For`); the HTTP status.
async fn sign_in_from(
    server: &TestServer,
    route: &str,
    client: Option<&str>,
    username: &str,
    password: &str,
) -> u16 {
    let mut req = reqwest::Client::new()
        .post(format!("{}/api/auth/{route}", server.base))
        .json(&json!({"username": username, "password": password}));
    if let Some(ip) = client {
        req = req.header("x-forwarded-for", ip);
    }
    req.send().await.unwrap().status().as_u16()
}

// Every bucket below refills at one token a minute: no test here races a refill.

#[tokio::test]
async fn auth_attempts_are_rate_limited() {
    let dir = common::tempdir();
    let server = TestServer::start_with(dir, |s| {
        s.rate_limit.auth_per_min = 1;
        s.rate_limit.auth_burst = 3;
        s.rate_limit.auth_addr_per_min = 1;
        s.rate_limit.auth_addr_burst = 6;
    })
    .await;
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(sign_in_from(&server, "login", None, "nobody", "wrong password").await);
    }
    // Per address and name.
    assert_eq!(statuses, [401, 401, 401, 429]);
    // Per address, whatever the name (sign-ups included): 4 attempts spent, 2 left.
    let mut statuses = Vec::new();
    for name in ["n1", "n2", "n3"] {
        statuses.push(sign_in_from(&server, "login", None, name, "wrong password").await);
    }
    assert_eq!(statuses, [401, 401, 429]);
    assert_eq!(
        sign_in_from(&server, "register", None, "newbie", "long enough password").await,
        429
    );
    server.stop().await;
}

/// Issue 11 item 7: five wrong passwords from any five addresses used to lock the owner out
/// (the per-name bucket answered 429 to the right password too).
#[tokio::test]
async fn a_stranger_cannot_lock_a_user_out() {
    let dir = common::tempdir();
    let server = TestServer::start_with(dir, |s| {
        // The test client is the proxy: its X-Forwarded-For picks the client's address.
        s.trusted_proxies = fullslack_chat::proxy::TrustedProxies::parse("127.0.0.1").unwrap();
        s.rate_limit.auth_per_min = 1;
        s.rate_limit.auth_burst = 3;
        s.rate_limit.auth_addr_per_min = 1;
        s.rate_limit.auth_addr_burst = 5;
        s.rate_limit.auth_name_burst = 5;
        s.rate_limit.auth_name_max_delay_ms = 300;
    })
    .await;
    let right = "correct horse battery";
    assert_eq!(
        sign_in_from(&server, "register", Some("10.0.0.1"), "alice", right).await,
        201
    );
    // A stranger guesses from eight addresses: each gets three tries at alice, then 429.
    for a in 0..8 {
        let ip = format!("10.1.0.{a}");
        let mut statuses = Vec::new();
        for _ in 0..4 {
            statuses.push(sign_in_from(&server, "login", Some(&ip), "Alice", "guess guess").await);
        }
        assert_eq!(statuses, [401, 401, 401, 429], "from {ip}");
    }
    // The address's own budget covers other names too (4 of 5 spent).
    assert_eq!(
        sign_in_from(&server, "login", Some("10.1.0.0"), "bob", "guess guess").await,
        401
    );
    assert_eq!(
        sign_in_from(&server, "login", Some("10.1.0.0"), "carol", "guess guess").await,
        429
    );
    // 24 failures on alice from anywhere slow her sign-ins down but never refuse them: the
    // owner, from a new address, signs in with the right password.
    assert_eq!(
        sign_in_from(&server, "login", Some("192.0.2.55"), "alice", right).await,
        200
    );
    // An address that spent its own budget stays throttled, whoever uses it.
    assert_eq!(
        sign_in_from(&server, "login", Some("10.1.0.0"), "alice", right).await,
        429
    );
    server.stop().await;
}

/// Behind no configured proxy, `X-Forwarded-For` is the client's own claim: ignored, so a
/// client cannot escape its budget by inventing addresses.
#[tokio::test]
async fn forwarded_for_counts_only_from_trusted_proxies() {
    for trusted in ["", "10.0.0.0/8"] {
        let dir = common::tempdir();
        let server = TestServer::start_with(dir, |s| {
            s.trusted_proxies = fullslack_chat::proxy::TrustedProxies::parse(trusted).unwrap();
            s.rate_limit.auth_per_min = 1;
            s.rate_limit.auth_burst = 2;
        })
        .await;
        let mut statuses = Vec::new();
        for a in 0..3 {
            let ip = format!("198.51.100.{a}");
            statuses.push(sign_in_from(&server, "login", Some(&ip), "alice", "guess guess").await);
        }
        assert_eq!(statuses, [401, 401, 429], "trusted: {trusted:?}");
        server.stop().await;
    }
}

#[tokio::test]
async fn tampered_expired_missing_and_revoked_tokens_are_refused() {
    let server = TestServer::start().await;
    let alice = Client::register(&server, "alice").await;
    let http = reqwest::Client::new();
    let me = |token: Option<String>| {
        let req = http.get(format!("{}/api/me", server.base));
        let req = match token {
            Some(t) => req.bearer_auth(t),
            None => req,
        };
        async move { req.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(me(Some(alice.token.clone())).await, 200);
    assert_eq!(me(None).await, 401);
    let mut parts: Vec<String> = alice.token.split('.').map(str::to_string).collect();
    // Claim to be someone else: the signature no longer matches.
    parts[1] = parts[1].chars().rev().collect();
    assert_eq!(me(Some(parts.join("."))).await, 401);
    // Correctly signed but expired.
    let claims = json!({"sub": alice.id, "sid": "x", "iat": 1, "exp": 2});
    let expired = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(common::SECRET.as_bytes()),
    )
    .unwrap();
    assert_eq!(me(Some(expired.clone())).await, 401);

    // The WebSocket handshake refuses the same way, before any upgrade.
    for bad in [expired, "garbage".to_string()] {
        let mut req =
            tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
                server.ws_url(),
            )
            .unwrap();
        req.headers_mut()
            .insert("authorization", format!("Bearer {bad}").parse().unwrap());
        match tokio_tungstenite::connect_async(req).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                assert_eq!(resp.status(), 401);
            }
            other => panic!("expected 401, got {:?}", other.map(|_| ())),
        }
    }

    // Logout revokes the session at once, and closes its sockets.
    let mut ws = alice.ws().await;
    let (s, _) = alice.post("/api/auth/logout", json!({})).await;
    assert_eq!(s, 204);
    assert_eq!(me(Some(alice.token.clone())).await, 401);
    let closed = ws.next_where(|f| f["type"] == "__close").await;
    assert_eq!(closed["code"], 1008);
    server.stop().await;
}

#[tokio::test]
async fn non_members_see_nothing_of_private_channels_and_dms() {
    let server = TestServer::start().await;
    let alice = Client::register(&server, "alice").await;
    let bob = Client::register(&server, "bob").await;
    let mallory = Client::register(&server, "mallory").await;
    let secret = alice.create_channel("secret", "private", &[&bob.id]).await;
    let dm = alice.dm(&[&bob.id]).await;
    let mut a = alice.ws().await;
    a.send_message(&secret, "s1", "the plan is hidden").await;
    a.send_message(&dm, "d1", "just between us").await;

    let mut m = Ws::connect(&mallory.ws_url, &mallory.token).await;
    // Asking to resume someone else's channels yields nothing from them.
    let replay = m
        .resume(HashMap::from([(secret.clone(), 0), (dm.clone(), 0)]))
        .await;
    assert!(replay.is_empty(), "{replay:?}");
    for ch in [&secret, &dm] {
        for path in ["", "/messages", "/events", "/members"] {
            let (s, body) = mallory.get(&format!("/api/channels/{ch}{path}")).await;
            assert_eq!(s, 404, "{path}: {body}");
        }
        let (s, _) = mallory
            .post(&format!("/api/channels/{ch}/join"), json!({}))
            .await;
        assert_eq!(s, 404);
        let (s, _) = mallory
            .post(
                &format!("/api/channels/{ch}/members"),
                json!({"user_id": mallory.id}),
            )
            .await;
        assert_eq!(s, 404);
        let err = m.send_message(ch, &format!("m-{ch}"), "let me in").await;
        assert_eq!(
            (err["type"].as_str(), err["code"].as_str()),
            (Some("error"), Some("not_found"))
        );
        m.send(json!({"type": "typing", "channel": ch})).await;
        assert_eq!(
            m.next_where(|f| f["type"] == "error").await["code"],
            "not_found"
        );
    }
    let found = mallory.ok_get("/api/search?q=hidden").await;
    assert!(found["results"].as_array().unwrap().is_empty());
    let found = bob.ok_get("/api/search?q=hidden").await;
    assert_eq!(found["results"][0]["text"], "the plan is hidden");
    // Mallory's socket never received anything from those channels.
    let frames = m.drain(Duration::from_millis(300)).await;
    assert!(frames.iter().all(|f| f["type"] != "event"), "{frames:?}");
    server.stop().await;
}

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

#[tokio::test]
async fn history_pages_both_ways_and_search_finds_words() {
    let server = TestServer::start().await;
    let alice = Client::register(&server, "alice").await;
    let ch = alice.create_channel("log", "public", &[]).await;
    let mut a = alice.ws().await;
    for i in 0..25 {
        a.send_message(
            &ch,
            &format!("h{i}"),
            &format!("entry number {i} banana{}", i % 5),
        )
        .await;
    }
    let page = alice
        .ok_get(&format!("/api/channels/{ch}/messages?limit=10"))
        .await;
    let texts = |v: &Value| -> Vec<String> {
        v["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["text"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(texts(&page).first().unwrap(), "entry number 15 banana0");
    assert_eq!(page["has_more"], true);
    let oldest_seq = page["messages"][0]["seq"].as_i64().unwrap();
    let older = alice
        .ok_get(&format!(
            "/api/channels/{ch}/messages?before={oldest_seq}&limit=10"
        ))
        .await;
    assert_eq!(texts(&older).first().unwrap(), "entry number 5 banana0");
    let first = alice
        .ok_get(&format!("/api/channels/{ch}/messages?after=0&limit=5"))
        .await;
    assert_eq!(
        texts(&first),
        (0..5)
            .map(|i| format!("entry number {i} banana{i}"))
            .collect::<Vec<_>>()
    );
    let found = alice.ok_get("/api/search?q=banana3").await;
    assert_eq!(found["results"].as_array().unwrap().len(), 5);
    let found = alice.ok_get("/api/search?q=entry%20number%2012").await;
    assert_eq!(found["results"][0]["text"], "entry number 12 banana2");
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

#[tokio::test]
async fn operations_endpoints_answer() {
    let server = TestServer::start().await;
    let http = reqwest::Client::new();
    let get = |p: &str| http.get(format!("{}{p}", server.base)).send();
    assert_eq!(get("/healthz").await.unwrap().status(), 200);
    let ready: Value = get("/readyz").await.unwrap().json().await.unwrap();
    assert_eq!(ready["store"], "ok");
    let alice = Client::register(&server, "alice").await;
    let ch = alice.dm(&[]).await;
    let mut a = alice.ws().await;
    a.send_message(&ch, "x", "count me").await;
    let metrics = get("/metrics").await.unwrap().text().await.unwrap();
    assert!(metrics.contains("fullslack_ws_connections 1"), "{metrics}");
    assert!(
        metrics.contains("fullslack_messages_sent_total 1"),
        "{metrics}"
    );
    let doc: Value = get("/api/openapi.json")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc["paths"]["/api/channels/{id}/messages"]["post"].is_object());
    assert!(doc["components"]["schemas"]["Message"].is_object());
    server.stop().await;
}
