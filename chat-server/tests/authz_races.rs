//! Authorization under races, against the real server over real sockets: a send fired together
//! with its author's leave is either stored before the author's `member_left` or refused; no
//! message from a non-member is ever stored (docs/protocol.md, "Authorization").

mod common;

use common::{Client, TestServer};
use serde_json::{json, Value};

const TRIALS: usize = 200;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_send_racing_its_authors_leave_is_never_stored_after_the_leave() {
    let server = TestServer::start().await;
    let alice = Client::register(&server, "alice").await;
    let bob = Client::register(&server, "bob").await;
    let channel = alice.create_channel("secret", "private", &[]).await;
    let mut ws = bob.ws().await;
    let mut acked = Vec::new();
    let mut refused = 0;
    for trial in 0..TRIALS {
        let (status, body) = alice
            .post(
                &format!("/api/channels/{channel}/members"),
                json!({"user_id": bob.id}),
            )
            .await;
        assert_eq!(status, 204, "invite: {body}");
        // Bob's socket follows the channel once it says so: the send below is then judged by
        // a node that has every reason to believe bob is a member.
        ws.next_where(|f| f["type"] == "channel_added" && f["channel"]["id"] == channel)
            .await;
        let client_id = format!("race-{trial}");
        let frame = json!({"type": "send", "ref": client_id, "channel": channel,
                           "client_id": client_id, "text": format!("trial {trial}")});
        let leave = {
            let (http, url, token) = (
                bob.http.clone(),
                format!("{}/api/channels/{channel}/leave", bob.base),
                bob.token.clone(),
            );
            async move { http.post(url).bearer_auth(token).send().await.unwrap() }
        };
        // Both fired within a millisecond; which one goes first alternates.
        let left = if trial % 2 == 0 {
            let leaving = tokio::spawn(leave);
            ws.send(frame).await;
            leaving.await.unwrap()
        } else {
            ws.send(frame).await;
            tokio::spawn(leave).await.unwrap()
        };
        assert_eq!(left.status(), 204, "leave in trial {trial}");
        let answer = ws
            .next_where(|f| (f["type"] == "ack" || f["type"] == "error") && f["ref"] == client_id)
            .await;
        if answer["type"] == "ack" {
            acked.push((client_id, answer["seq"].as_i64().unwrap()));
        } else {
            // A private channel one is not in does not exist, as for every non-member.
            assert_eq!(answer["code"], "not_found", "trial {trial}: {answer}");
            refused += 1;
        }
        ws.next_where(|f| f["type"] == "channel_removed" && f["channel_id"] == channel)
            .await;
    }

    // Walk the log: bob's membership as the log tells it, and everything bob wrote.
    let (stored, violations) = walk_the_log(&alice.all_events(&channel).await, &bob.id);
    assert!(
        violations.is_empty(),
        "{} of {TRIALS} trials stored something from bob after his member_left (acked {}, refused {refused}): {:?}",
        violations.len(),
        acked.len(),
        violations.iter().take(3).collect::<Vec<_>>()
    );
    // What was acknowledged is exactly what was stored; what was refused left no trace.
    assert_eq!(stored, acked, "acks and stored messages agree");
    assert_eq!(acked.len() + refused, TRIALS);
    ws.close().await;
    server.stop().await;
}

/// Everything `user` wrote in `events` (client id and seq of each message), and the events
/// of theirs stored while the log says they were not a member.
fn walk_the_log(events: &[Value], user: &str) -> (Vec<(String, i64)>, Vec<Value>) {
    let mut member = false;
    let mut violations = Vec::new();
    let mut stored = Vec::new();
    for e in events {
        let data = &e["data"];
        match e["kind"].as_str().unwrap() {
            "member_joined" if data["user_id"] == user => member = true,
            "member_left" if data["user_id"] == user => member = false,
            "message" if data["author_id"] == user => {
                stored.push((
                    data["client_id"].as_str().unwrap().to_string(),
                    e["seq"].as_i64().unwrap(),
                ));
                if !member {
                    violations.push(e.clone());
                }
            }
            "receipt" | "receipts"
                if !member && fullslack_test_support::wire::receipt_of(e, user).is_some() =>
            {
                violations.push(e.clone());
            }
            _ => {}
        }
    }
    (stored, violations)
}
