//! Fan-out: into a channel followed by hundreds of sockets each socket gets every event once,
//! in seq order, with no gap, and the sender every ack in the order it sent; and in a group of
//! 100 the delivered receipts come aggregated (one event per channel per flush), so a message
//! costs at most 2 × members receipt frames, not members², while every member's state still
//! arrives. A big channel whose sockets are woken in rounds keeps the same promises, and so
//! does one that goes in rounds only while the node is busy.

mod common;

use std::collections::HashMap;

use common::{Client, TestServer, Ws};
use fullslack_protocol::{frames::ClientFrame, EventPayload, ReceiptData};
use fullslack_test_support::wire;
use serde_json::Value;

/// Sockets per member (two members).
const SOCKETS_PER_MEMBER: usize = 150;
/// Messages the sender writes without waiting for answers.
const MESSAGES: usize = 30;

/// Reads a socket until it has seen every one of the sender's messages; returns all the
/// channel events it got meanwhile, in arrival order.
async fn events_until_all_messages(mut ws: Ws, channel: String) -> Vec<Value> {
    let mut events = Vec::new();
    let mut messages = 0;
    while messages < MESSAGES {
        let f = ws.next().await;
        if f["type"] == "event" && f["channel"] == channel.as_str() {
            if f["kind"] == "message" {
                messages += 1;
            }
            events.push(f);
        }
    }
    events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_big_fan_out_reaches_every_socket_once_in_order() {
    // 300 sockets: under the default threshold of wake-up rounds, each socket woken at publish.
    big_fan_out(TestServer::start().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_big_fan_out_in_wake_up_rounds_reaches_every_socket_once_in_order() {
    // The same channel woken in rounds (`hub::rounds`): events queue at publish and go out
    // together, at most one round per 50 ms; the last message still goes out by itself.
    let server = TestServer::start_with(common::tempdir(), |s| {
        s.realtime.fanout_round_sockets = 2;
        s.realtime.fanout_round_ms = 50;
    })
    .await;
    big_fan_out(server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fan_out_that_goes_in_rounds_as_the_node_gets_busy_reaches_every_socket_once_in_order() {
    // Not big enough for rounds by size, but in rounds while the node is busy: a window of
    // 2 s (long enough to hold every send of the test on any machine) is busy from 600
    // deliveries, two messages to these 300 sockets. So the first message goes out at publish
    // and the later ones wait for rounds: a channel switching ways keeps its order.
    let server = TestServer::start_with(common::tempdir(), |s| {
        s.realtime.fanout_round_sockets = 100_000;
        s.realtime.fanout_round_ms = 2_000;
        s.realtime.fanout_busy_sockets = 2;
        s.realtime.fanout_busy_deliveries_per_sec = 300;
    })
    .await;
    let app = server.app.clone();
    big_fan_out(server).await;
    // The first message went out at publish (nothing was owed before it); later events
    // (messages, and the receipt events of the flushes) waited for rounds.
    let held = app.metrics.fanout_held.get();
    assert!(
        held >= 1,
        "no event waited for a round: the node never got busy"
    );
}

async fn big_fan_out(server: TestServer) {
    let alice = Client::register(&server, "alice").await;
    let bob = Client::register(&server, "bob").await;
    let carol = Client::register(&server, "carol").await;
    let channel = alice
        .create_channel("crowd", "private", &[&bob.id, &carol.id])
        .await;
    let mut readers = Vec::new();
    for member in [&bob, &carol] {
        for _ in 0..SOCKETS_PER_MEMBER {
            let ws = member.ws().await;
            readers.push(tokio::spawn(events_until_all_messages(ws, channel.clone())));
        }
    }

    let mut sender = alice.ws().await;
    for i in 0..MESSAGES {
        sender
            .send_frame(&ClientFrame::Send {
                reference: Some(format!("r{i}")),
                channel: channel.clone().into(),
                client_id: format!("m{i}"),
                text: format!("message {i}"),
                thread_root: None,
            })
            .await;
    }
    for i in 0..MESSAGES {
        let answer = sender
            .next_where(|f| f["type"] == "ack" || f["type"] == "error")
            .await;
        assert_eq!(answer["type"], "ack", "{answer}");
        assert_eq!(answer["ref"], format!("r{i}"), "acks in send order");
    }

    let expected: Vec<String> = (0..MESSAGES).map(|i| format!("m{i}")).collect();
    for reader in readers {
        let events = reader.await.unwrap();
        let seqs = common::seqs(&events);
        assert!(
            seqs.windows(2).all(|w| w[1] == w[0] + 1),
            "every event once, in order, no gap: {seqs:?}"
        );
        let messages: Vec<&str> = events
            .iter()
            .filter(|e| e["kind"] == "message")
            .map(|e| e["data"]["client_id"].as_str().unwrap())
            .collect();
        assert_eq!(messages, expected, "every message, in send order");
    }
    server.stop().await;
}

/// Members of the group whose receipt frames are counted (the target is at 100).
const GROUP: usize = 100;
/// Messages sent into the group, one after the other.
const GROUP_MESSAGES: usize = 5;

/// The watermarks a `receipt` or `receipts` event frame says moved; empty for other frames.
fn receipts_in(frame: &Value) -> Vec<ReceiptData> {
    if frame["type"] != "event" || !matches!(frame["kind"].as_str(), Some("receipt" | "receipts")) {
        return Vec::new();
    }
    match wire::event(frame).payload {
        EventPayload::Receipt(r) => vec![r],
        EventPayload::Receipts(rs) => rs.receipts,
        other => panic!("not a receipt: {other:?}"),
    }
}

/// Sends `text` from `author` and waits until every member socket got it; returns its seq.
async fn send_and_deliver(author: &mut Ws, others: &mut [Ws], channel: &str, i: usize) -> i64 {
    let ack = author
        .send_message(channel, &format!("g{i}"), &format!("hello {i}"))
        .await;
    let seq = wire::send_ack(&ack).seq;
    for ws in others.iter_mut() {
        ws.next_where(|f| f["kind"] == "message" && f["seq"] == seq)
            .await;
    }
    seq
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_receipts_are_one_event_per_flush_not_one_per_member() {
    let server = TestServer::start_with(common::tempdir(), |s| {
        // Long enough that the few messages below share one or two flushes.
        s.realtime.delivered_flush_ms = 1000;
    })
    .await;
    let author = Client::register(&server, "author").await;
    let names: Vec<String> = (1..GROUP).map(|i| format!("member{i}")).collect();
    let others =
        futures_util::future::join_all(names.iter().map(|n| Client::register(&server, n))).await;
    let ids: Vec<&str> = others.iter().map(|c| c.id.as_str()).collect();
    let channel = author.create_channel("group", "private", &ids).await;
    let mut author_ws = author.ws().await;
    let mut sockets = Vec::new();
    for c in &others {
        sockets.push(c.ws().await);
    }

    let mut last = 0;
    for i in 0..GROUP_MESSAGES {
        last = send_and_deliver(&mut author_ws, &mut sockets, &channel, i).await;
    }

    // The author learns that every member got the last message (from the receipt events).
    let mut delivered: HashMap<String, i64> = HashMap::new();
    let mut author_frames = Vec::new();
    while ids
        .iter()
        .any(|id| delivered.get(*id).is_none_or(|s| *s < last))
    {
        let f = author_ws.next().await;
        for r in receipts_in(&f) {
            let seen = delivered.entry(r.user_id.to_string()).or_default();
            *seen = (*seen).max(r.delivered_seq);
        }
        author_frames.push(f);
    }
    let end = author_frames
        .iter()
        .filter_map(|f| f["seq"].as_i64())
        .max()
        .unwrap();

    // Every socket reads up to the same event, and the receipt frames of all are counted.
    let mut receipt_frames = author_frames
        .iter()
        .chain(author_ws.drain(std::time::Duration::ZERO).await.iter())
        .filter(|f| !receipts_in(f).is_empty())
        .count();
    for ws in &mut sockets {
        let mut frames = ws.drain(std::time::Duration::ZERO).await;
        while frames
            .iter()
            .all(|f| f["seq"].as_i64().is_none_or(|s| s < end))
        {
            frames.push(ws.next().await);
        }
        receipt_frames += frames.iter().filter(|f| !receipts_in(f).is_empty()).count();
    }
    let budget = 2 * GROUP * GROUP_MESSAGES;
    assert!(
        receipt_frames <= budget,
        "{receipt_frames} receipt frames for {GROUP_MESSAGES} messages to {GROUP} members \
         (at most {budget}: 2 x members per message)"
    );
    server.stop().await;
}
