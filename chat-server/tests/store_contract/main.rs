//! The store contract: what every `Store` driver must do. Runs against the embedded SQLite
//! driver always; a later MongoDB driver runs the same functions (selected by
//! `FULLSLACK_TEST_STORE_URL`).
//!
//! One test binary (`store_contract`) in modules: [`messages`] (sequence numbers, idempotent
//! appends, history, threads, edits, reactions, search) and [`members`] (users, sessions,
//! watermarks, DMs, membership and its checks); the helpers they share are here.

use std::{collections::HashSet, sync::Arc};

use fullslack_chat::{
    model::{
        new_id, now, ChannelId, ChannelKind, Event, EventKind, Message, MessageId, Role, UserId,
    },
    store::{
        self, DynStore, NewChannel, NewMessage, NewUser, Page, Session, StoreError, Watermark,
    },
};

#[path = "../common/mod.rs"]
mod common;

mod members;
mod messages;

async fn fresh_store() -> (DynStore, Arc<tempfile::TempDir>) {
    let dir = common::tempdir();
    let mut url = std::env::var("FULLSLACK_TEST_STORE_URL").unwrap_or_else(|_| "sqlite".into());
    if url.starts_with("mongodb://") || url.starts_with("mongodb+srv://") {
        // Every test gets its own database: `…/NAME?opts` → `…/NAME_<unique>?opts`.
        let unique: String = new_id::<String>().chars().filter(|c| *c != '-').collect();
        let suffix = &unique[unique.len() - 16..];
        let (base, query) = match url.find('?') {
            Some(i) => (url[..i].to_string(), url[i..].to_string()),
            None => (url.clone(), String::new()),
        };
        let hosts_start = base.find("://").map_or(0, |i| i + 3);
        let (hosts, db) = match base[hosts_start..].find('/') {
            Some(i) => (
                base[..hosts_start + i].to_string(),
                base[hosts_start + i + 1..].to_string(),
            ),
            None => (base.clone(), String::new()),
        };
        let db = if db.is_empty() { "fullslack_test" } else { &db };
        url = format!("{hosts}/{db}_{suffix}{query}");
    }
    (
        store::open(&url, dir.path()).await.expect("store opens"),
        dir,
    )
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

async fn channel(
    store: &DynStore,
    owner: &str,
    name: &str,
    kind: ChannelKind,
    members: &[&str],
) -> ChannelId {
    let (ch, events) = store
        .create_channel(NewChannel {
            id: new_id(),
            kind,
            name: name.into(),
            topic: String::new(),
            created_by: owner.into(),
            created_at: now(),
            member_ids: members.iter().map(|m| UserId::from(*m)).collect(),
            dm_key: None,
        })
        .await
        .unwrap();
    assert_eq!(
        events.len(),
        1 + members.len(),
        "one member_joined per member"
    );
    ch.id
}

/// An event's `data` as the wire carries it.
fn data(ev: &Event) -> serde_json::Value {
    serde_json::to_value(&ev.payload).unwrap()
}

fn msg(channel: &str, author: &str, client_id: &str, text: &str) -> NewMessage {
    NewMessage {
        id: new_id(),
        channel_id: channel.into(),
        author_id: author.into(),
        client_id: client_id.into(),
        text: text.into(),
        thread_root: None,
        mentions: vec![],
        created_at: now(),
    }
}
