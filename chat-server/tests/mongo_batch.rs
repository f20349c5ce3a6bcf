//! The MongoDB driver's batched message path (issue 15), against a private SecantusDB (as the
//! cluster tests start one): commands per send under concurrent load, counted with the
//! driver's command monitoring (commands, not time); duplicates answered from the unique
//! index; a log written before the batching (message events stored as copies) still reads.

#[path = "common/mod.rs"]
mod common;

use std::{
    collections::{HashMap, HashSet},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
};

use common::services::MongoServer;
use fullslack_chat::{
    model::{new_id, now, ChannelId, ChannelKind, EventKind, UserId},
    store::{mongo::MongoStore, DynStore, NewChannel, NewMessage, NewUser, Watermark},
};
use futures_util::future::join_all;
use mongodb::{
    bson::doc,
    event::{command::CommandEvent, EventHandler},
    options::ClientOptions,
};

/// Commands the store sends, by name, except the node heartbeat (`store_nodes`, on a timer:
/// not work done for a send).
#[derive(Default)]
struct Commands {
    total: AtomicUsize,
    by_name: Mutex<HashMap<String, usize>>,
}

impl Commands {
    fn count(&self) -> usize {
        self.total.load(Ordering::SeqCst)
    }
}

async fn monitored_store(url: &str) -> (DynStore, Arc<Commands>) {
    let commands = Arc::new(Commands::default());
    let mut options = ClientOptions::parse(url).await.unwrap();
    let seen = commands.clone();
    options.command_event_handler = Some(EventHandler::callback(move |ev: CommandEvent| {
        let CommandEvent::Started(started) = ev else {
            return;
        };
        if started.command.get_str(&started.command_name) == Ok("store_nodes") {
            return;
        }
        seen.total.fetch_add(1, Ordering::SeqCst);
        *seen
            .by_name
            .lock()
            .unwrap()
            .entry(started.command_name.clone())
            .or_default() += 1;
    }));
    let store: DynStore = MongoStore::open_with_options(options).await.unwrap();
    (store, commands)
}

async fn user(store: &DynStore, name: &str) -> UserId {
    store
        .create_user(NewUser {
            id: new_id(),
            username: name.into(),
            display_name: name.into(),
            password_hash: "$argon2id$fake".into(),
            created_at: now(),
        })
        .await
        .unwrap()
        .id
}

async fn channel(store: &DynStore, name: &str, members: &[UserId]) -> ChannelId {
    let (ch, _) = store
        .create_channel(NewChannel {
            id: new_id(),
            kind: ChannelKind::Private,
            name: name.into(),
            topic: String::new(),
            created_by: members[0].clone(),
            created_at: now(),
            member_ids: members[1..].to_vec(),
            dm_key: None,
        })
        .await
        .unwrap();
    ch.id
}

fn message(channel: &ChannelId, author: &UserId, client_id: &str) -> NewMessage {
    NewMessage {
        id: new_id(),
        channel_id: channel.clone(),
        author_id: author.clone(),
        client_id: client_id.into(),
        text: format!("text of {client_id}"),
        thread_root: None,
        mentions: vec![],
        created_at: now(),
    }
}

/// A send as the server makes it (`sending.rs`): the author's read watermark, then the message,
/// both queued at once. Returns `(seq, duplicate)`.
async fn send(store: &DynStore, m: NewMessage) -> (i64, bool) {
    let (channel_id, author_id) = (m.channel_id.clone(), m.author_id.clone());
    let read = store.advance_watermark(
        &channel_id,
        &author_id,
        Watermark::Read(i64::MAX),
        true,
        now(),
    );
    let append = store.append_message(m);
    let (read, stored) = tokio::join!(read, append);
    read.unwrap();
    let (msg, event) = stored.unwrap();
    (msg.seq, event.is_none())
}

/// `channels` channels of `per_channel` members each; every member is an author.
async fn setup(store: &DynStore, channels: usize, per_channel: usize) -> Vec<(ChannelId, UserId)> {
    let mut authors = Vec::new();
    for c in 0..channels {
        let mut members = Vec::new();
        for u in 0..per_channel {
            members.push(user(store, &format!("u{c}x{u}")).await);
        }
        let ch = channel(store, &format!("c{c}"), &members).await;
        authors.extend(members.into_iter().map(|m| (ch.clone(), m)));
    }
    authors
}

/// Every channel's log is gap-free from 1 and holds each message once.
async fn assert_logs(store: &DynStore, channels: &HashSet<ChannelId>, messages: usize) {
    let mut seen = 0;
    for ch in channels {
        let log = store.events_after(ch, 0, 100_000).await.unwrap();
        let seqs: Vec<i64> = log.iter().map(|e| e.seq).collect();
        let want: Vec<i64> = (1..=log.len() as i64).collect();
        assert_eq!(seqs, want, "channel {ch}: its log is gap-free");
        seen += log
            .iter()
            .filter(|e| e.kind() == EventKind::Message)
            .count();
    }
    assert_eq!(seen, messages, "every message once in the logs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_sends_cost_at_most_two_commands_each() {
    let server = MongoServer::start();
    let (store, commands) = monitored_store(&server.url("batch_commands")).await;
    // 64 concurrent sends over 8 channels of 8 authors, twice (the second round finds the
    // driver's pools warm either way; both are counted).
    let authors = setup(&store, 8, 8).await;
    let before = commands.count();
    let mut sends = 0;
    for round in 0..2 {
        let results = join_all(
            authors
                .iter()
                .map(|(ch, u)| send(&store, message(ch, u, &format!("r{round}-{u}")))),
        )
        .await;
        assert!(
            results.iter().all(|(_, dup)| !dup),
            "no send is a duplicate"
        );
        sends += results.len();
    }
    let used = commands.count() - before;
    let by_name = commands.by_name.lock().unwrap().clone();
    assert!(
        used <= 2 * sends,
        "{used} commands for {sends} sends (> 2 per send); all commands since the start: \
         {by_name:?}"
    );
    eprintln!("{used} commands for {sends} sends; all since the start: {by_name:?}");
    let channels: HashSet<ChannelId> = authors.iter().map(|(ch, _)| ch.clone()).collect();
    assert_logs(&store, &channels, sends).await;
    // The authors' read watermarks moved with their messages.
    for (ch, u) in &authors {
        let member = store.member(ch, u).await.unwrap().unwrap();
        assert!(member.read_seq > 0, "{u} in {ch}: read watermark moved");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_client_ids_are_answered_from_the_stored_message() {
    let server = MongoServer::start();
    let (store, _) = monitored_store(&server.url("batch_duplicates")).await;
    let authors = setup(&store, 4, 4).await;
    let first: Vec<(i64, bool)> = join_all(
        authors
            .iter()
            .map(|(ch, u)| send(&store, message(ch, u, &format!("a-{u}")))),
    )
    .await;
    // Each send again (a retry, under a new message id), twice in the same batch, beside
    // new sends: the retries answer `duplicate` with the first seq, the new ones are stored.
    let again = authors.iter().flat_map(|(ch, u)| {
        [
            message(ch, u, &format!("a-{u}")),
            message(ch, u, &format!("a-{u}")),
            message(ch, u, &format!("b-{u}")),
        ]
    });
    let second: Vec<(i64, bool)> = join_all(again.map(|m| send(&store, m))).await;
    for (i, (seq, dup)) in first.iter().enumerate() {
        assert!(!dup);
        assert_eq!(
            second[3 * i],
            (*seq, true),
            "a retry answers the stored message"
        );
        assert_eq!(
            second[3 * i + 1],
            (*seq, true),
            "so does its twin in the batch"
        );
        assert!(!second[3 * i + 2].1, "a new send is stored");
    }
    let channels: HashSet<ChannelId> = authors.iter().map(|(ch, _)| ch.clone()).collect();
    assert_logs(&store, &channels, 2 * authors.len()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_with_message_copies_written_before_the_batching_still_reads_once() {
    let server = MongoServer::start();
    let url = server.url("batch_old_log");
    let (store, _) = monitored_store(&url).await;
    let authors = setup(&store, 1, 2).await;
    let (ch, u) = &authors[0];
    let (seq, _) = send(&store, message(ch, u, "old")).await;
    // What the server before issue 15 also stored: the message's event as a copy.
    let stored = store.events_after(ch, seq - 1, 1).await.unwrap().remove(0);
    let client = mongodb::Client::with_uri_str(&url).await.unwrap();
    client
        .default_database()
        .unwrap()
        .collection("events")
        .insert_one(doc! {
            "channel_id": ch.as_str(),
            "seq": seq,
            "kind": "message",
            "at": mongodb::bson::DateTime::now(),
            "data": stored.payload.to_stored(),
        })
        .await
        .unwrap();
    send(&store, message(ch, u, "new")).await;
    let log = store.events_after(ch, 0, 100).await.unwrap();
    let messages: Vec<i64> = log
        .iter()
        .filter(|e| e.kind() == EventKind::Message)
        .map(|e| e.seq)
        .collect();
    assert_eq!(messages.len(), 2, "each message once: {log:?}");
    assert_eq!(messages[0], seq);
    let seqs: Vec<i64> = log.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=log.len() as i64).collect::<Vec<_>>());
    client.shutdown().await;
}
