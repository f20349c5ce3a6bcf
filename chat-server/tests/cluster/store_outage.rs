//! The store (MongoDB) goes away and comes back.

use super::*;

const BURST: usize = 3;
/// A send to a dead store is refused after the store driver's server-selection timeout
/// (3 s; ~4 s measured), not at once. A batch in flight as the server died first meets a
/// transient error and runs again, waiting out a server selection or two more (its sends
/// answered ~6–9 s after the kill in a debug run under CPU load). The bound only says "never
/// hangs". (Two failures once blamed on this bound were the test dropping a frame, see
/// `read_until`.)
const STORE_DOWN_ANSWER: Duration = Duration::from_secs(45);

/// Kill the MongoDB server mid-conversation: sends are refused with `unavailable` on both
/// nodes (socket and HTTP), nothing is acknowledged that is not stored; after it restarts on
/// the same data, every acknowledged message is there and refused sends retried under their
/// client ids are stored once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongo_outage_refuses_sends_and_never_acks_what_is_not_stored() {
    let mut cluster = Cluster::start().await;
    let alice = user_on(&cluster.a, "alice").await;
    let bob = user_on(&cluster.b, "bob").await;
    let ch = alice.create_channel("general", "private", &[&bob.id]).await;
    let (mut a_ws, mut alice_seen) = ws_from(&alice, &[(&ch, 0)]).await;
    let (mut b_ws, mut bob_seen) = ws_from(&bob, &[(&ch, 0)]).await;
    let mut acked = both_say(&mut a_ws, &mut b_ws, &ch, 3).await;

    // Sends in flight as the store dies: each is either acknowledged or refused.
    for n in 0..BURST {
        let cid = format!("burst{n}");
        a_ws.send(json!({"type": "send", "ref": cid, "channel": ch, "client_id": cid, "text": "racing the crash"}))
            .await;
    }
    cluster.kill_mongo().await;
    // (author's socket, client id) of every refused send, retried later.
    let mut refused: Vec<(&str, String)> = Vec::new();
    for (cid, f) in answers_to_the_burst(&mut a_ws, &ch, &mut alice_seen).await {
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
        refused.push((who, send_refused_while_down(ws, seen, &ch, who).await));
    }
    refused.push(("b", http_send_refused_while_down(&bob, &ch).await));
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

/// The answers (ack or error, by client id) to the burst sent as the store died, the
/// channel's events read meanwhile appended to `seen`. They queue behind each other (one
/// channel), each waiting out the store's server selection: the bound is per answer.
async fn answers_to_the_burst(
    ws: &mut Ws,
    ch: &str,
    seen: &mut Vec<Value>,
) -> HashMap<String, Value> {
    let mut answers: HashMap<String, Value> = HashMap::new();
    while answers.len() < BURST {
        let before = answers.len();
        let answered = read_until(ws, STORE_DOWN_ANSWER, |f| {
            match f["type"].as_str() {
                Some("ack" | "error")
                    if f["ref"].as_str().is_some_and(|r| r.starts_with("burst")) =>
                {
                    answers.insert(f["ref"].as_str().unwrap().to_string(), f);
                }
                Some("event") if f["channel"] == ch => seen.push(f),
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
    answers
}

/// A send on node `who`'s socket while the store is down is refused as `unavailable`, with a
/// message; the channel's events read meanwhile go to `seen`. Returns its client id.
async fn send_refused_while_down(
    ws: &mut Ws,
    seen: &mut Vec<Value>,
    ch: &str,
    who: &str,
) -> String {
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
    cid
}

/// A send over HTTP while the store is down is answered 503 `unavailable`; its client id.
async fn http_send_refused_while_down(client: &Client, ch: &str) -> String {
    let (status, body) = tokio::time::timeout(
        STORE_DOWN_ANSWER,
        client.post(
            &format!("/api/channels/{ch}/messages"),
            json!({"text": "over http", "client_id": "down-http"}),
        ),
    )
    .await
    .expect("an HTTP send to a dead store is answered");
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "unavailable", "{body}");
    "down-http".into()
}
