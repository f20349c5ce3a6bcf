//! Pipelined sends: a socket that writes many `send` frames without waiting gets every answer
//! in the order it sent them, with seqs in that order too; and a crash (SIGKILL of the real
//! binary) in the middle of such a load loses no acknowledged message: after a restart on the
//! same data, each one is in the store, is delivered exactly once, in order, on resume, and a
//! client's retry of it is answered as a duplicate with the same seq.

mod common;

use std::{
    collections::{HashMap, HashSet},
    path::Path,
    process::Command,
    time::Duration,
};

use common::{Client, Ws, WAIT};
use fullslack_test_support::{
    server::{spawn_chat_server, SpawnedServer},
    RemoteServer,
};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::{client::IntoClientRequest, http::HeaderValue, Message};

/// Sends written before reading anything: more than the server's window of sends in flight, so
/// the server also has to stop reading and resume (back-pressure).
const SENDS: usize = 400;
/// Acks to see before the kill: the crash comes with sends acked, in flight and unread.
const ACKED_BEFORE_KILL: usize = 40;

async fn start(data: &Path, log: &Path) -> SpawnedServer {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_fullslack-chat"));
    cmd.args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .env("FULLSLACK_RATE_LIMIT__SEND_PER_SEC", "100000")
        .env("FULLSLACK_RATE_LIMIT__SEND_BURST", "100000")
        .env("FULLSLACK_RATE_LIMIT__AUTH_BURST", "100");
    match spawn_chat_server(cmd, log, Duration::from_secs(30)).await {
        Ok(server) => server,
        Err(log) => panic!("fullslack-chat did not start; its log:\n{log}"),
    }
}

fn send_frame(channel: &str, i: usize) -> Message {
    let id = format!("c{i}");
    Message::text(
        json!({"type": "send", "ref": id, "channel": channel, "client_id": id, "text": format!("message {i}")})
            .to_string(),
    )
}

type Reader = futures_util::stream::SplitStream<
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
>;

/// A socket that resumes and then writes every send at once from a task of its own (so it
/// never waits for an answer), and the side that reads the answers.
async fn pipelined_socket(client: &Client, channel: &str) -> Reader {
    let mut req = client.ws_url.as_str().into_client_request().unwrap();
    req.headers_mut().insert(
        "authorization",
        HeaderValue::from_str(&format!("Bearer {}", client.token)).unwrap(),
    );
    let (stream, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    let (mut sink, reader) = stream.split();
    let channel = channel.to_string();
    tokio::spawn(async move {
        let resume = json!({"type": "resume", "channels": {}}).to_string();
        sink.feed(Message::text(resume)).await.unwrap();
        for i in 0..SENDS {
            // Fails once the server is killed: the rest is simply not sent.
            if sink.feed(send_frame(&channel, i)).await.is_err() {
                return;
            }
        }
        let _ = sink.flush().await;
        // Kept open (not dropped) until the reader is done with the socket.
        std::future::pending::<()>().await;
    });
    reader
}

/// The next ack or error; `None` once the socket is gone.
async fn next_answer(reader: &mut Reader) -> Option<Value> {
    loop {
        let msg = tokio::time::timeout(WAIT, reader.next())
            .await
            .expect("an answer in time")?
            .ok()?;
        let Message::Text(t) = msg else { continue };
        let frame: Value = serde_json::from_str(t.as_str()).unwrap();
        if frame["type"] == "ack" || frame["type"] == "error" {
            return Some(frame);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_sends_are_answered_in_order_and_survive_sigkill() {
    let dir = common::tempdir();
    let data = dir.path().join("data");
    let mut server = start(&data, &dir.path().join("first.log")).await;
    let remote = RemoteServer::new(&server.base);
    let alice = Client::register(&remote, "alice").await;
    let bob = Client::register(&remote, "bob").await;
    let channel = alice
        .create_channel("pipeline", "private", &[&bob.id])
        .await;

    let mut reader = pipelined_socket(&alice, &channel).await;
    // Answers come in the order the sends were written, their seqs rising in that order.
    let mut acked: HashMap<String, i64> = HashMap::new();
    let mut last_seq = 0;
    for i in 0..ACKED_BEFORE_KILL {
        let answer = next_answer(&mut reader).await.expect("socket open");
        assert_eq!(answer["type"], "ack", "{answer}");
        assert_eq!(answer["ref"], format!("c{i}"), "answers in request order");
        assert_eq!(answer["duplicate"], false, "{answer}");
        let seq = answer["seq"].as_i64().unwrap();
        assert!(
            seq > last_seq,
            "seqs follow the send order: {seq} after {last_seq}"
        );
        last_seq = seq;
        acked.insert(format!("c{i}"), seq);
    }
    // A crash under load: no shutdown, no flush, sends in flight and unread.
    server.process.kill();
    // Whatever else was acked before the socket died counts as acknowledged too.
    while let Some(f) = next_answer(&mut reader).await {
        if f["type"] == "ack" {
            let seq = f["seq"].as_i64().unwrap();
            acked.insert(f["ref"].as_str().unwrap().to_string(), seq);
        }
    }
    assert!(acked.len() >= ACKED_BEFORE_KILL);

    let server = start(&data, &dir.path().join("second.log")).await;
    let remote = RemoteServer::new(&server.base);
    let alice = Client::login(&remote, "alice").await;
    let bob = Client::login(&remote, "bob").await;

    // In the store: every acknowledged message, at the seq its ack gave.
    let (status, page) = bob
        .get(&format!(
            "/api/channels/{channel}/events?after=0&limit=1000"
        ))
        .await;
    assert_eq!(status, 200, "{page}");
    let stored: HashMap<String, i64> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "message")
        .map(|e| {
            let m = &e["data"];
            (
                m["client_id"].as_str().unwrap().to_string(),
                e["seq"].as_i64().unwrap(),
            )
        })
        .collect();
    for (client_id, seq) in &acked {
        assert_eq!(
            stored.get(client_id),
            Some(seq),
            "acked {client_id} stored at its seq"
        );
    }

    // Delivered on resume from the start: every stored event once, in order, no gaps.
    let mut bob_ws = Ws::connect(&bob.ws_url, &bob.token).await;
    let replayed = bob_ws.resume(HashMap::from([(channel.clone(), 0)])).await;
    let seqs = common::seqs(&replayed);
    assert_eq!(
        seqs,
        (1..=seqs.len() as i64).collect::<Vec<_>>(),
        "gap-free, in order"
    );
    let delivered: HashSet<&str> = replayed
        .iter()
        .filter(|e| e["kind"] == "message")
        .map(|e| e["data"]["client_id"].as_str().unwrap())
        .collect();
    for client_id in acked.keys() {
        assert!(
            delivered.contains(client_id.as_str()),
            "{client_id} delivered on resume"
        );
    }

    // The client resends everything it sent (it cannot know what the crash took): what was
    // acked answers as a duplicate with the same seq; the rest is stored now, once.
    let mut reader = pipelined_socket(&alice, &channel).await;
    for i in 0..SENDS {
        let answer = next_answer(&mut reader).await.expect("socket open");
        let id = format!("c{i}");
        assert_eq!(answer["type"], "ack", "{answer}");
        assert_eq!(answer["ref"], id, "answers in request order");
        if let Some(seq) = acked.get(&id) {
            assert_eq!(answer["duplicate"], true, "{answer}");
            assert_eq!(answer["seq"], *seq, "{answer}");
        }
    }
    // Bob, live, gets each new message after what he had: every send once, all in order.
    let all = events_until_every_send(&mut bob_ws, &channel, replayed).await;
    let seqs = common::seqs(&all);
    assert_eq!(
        seqs,
        (1..=seqs.len() as i64).collect::<Vec<_>>(),
        "exactly once, in order"
    );
}

/// Reads `channel`'s events after `seen` until a message of every send is among them.
async fn events_until_every_send(ws: &mut Ws, channel: &str, mut seen: Vec<Value>) -> Vec<Value> {
    let client_ids = |events: &[Value]| {
        events
            .iter()
            .filter(|e| e["kind"] == "message")
            .map(|e| {
                e["data"]["client_id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string()
            })
            .collect::<HashSet<String>>()
            .len()
    };
    while client_ids(&seen) < SENDS {
        let ev = ws
            .next_where(|f| f["type"] == "event" && f["channel"] == channel)
            .await;
        seen.push(ev);
    }
    seen
}
