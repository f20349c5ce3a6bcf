//! The store contract: what every `Store` driver must do. Runs against the embedded SQLite
//! driver always; a later MongoDB driver runs the same functions (selected by
//! `FULLSLACK_TEST_STORE_URL`).

use std::{collections::HashSet, sync::Arc};

use fullslack_chat::{
    model::{new_id, now, ChannelId, ChannelKind, Event, EventKind, Role, UserId},
    store::{
        self, DynStore, NewChannel, NewMessage, NewUser, Page, Session, StoreError, Watermark,
    },
};

mod common;

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

#[tokio::test]
async fn usernames_are_unique_case_insensitively_and_sessions_expire() {
    let (s, _d) = fresh_store().await;
    let id = user(&s, "Alice").await;
    let dup = s
        .create_user(NewUser {
            id: new_id(),
            username: "alice".into(),
            display_name: "x".into(),
            password_hash: "h".into(),
            created_at: now(),
        })
        .await;
    assert!(matches!(dup, Err(StoreError::Conflict(_))));
    let (u, hash) = s.user_by_username("ALICE").await.unwrap().unwrap();
    assert_eq!(
        (u.id.as_str(), hash.as_str()),
        (id.as_str(), "$argon2id$fake")
    );

    let t = now();
    s.create_session(Session {
        id: "s1".into(),
        user_id: id.clone(),
        created_at: t,
        expires_at: t + time::Duration::hours(1),
    })
    .await
    .unwrap();
    assert_eq!(s.session_user("s1", t).await.unwrap(), Some(id.clone()));
    assert_eq!(
        s.session_user("s1", t + time::Duration::hours(2))
            .await
            .unwrap(),
        None,
        "expired"
    );
    s.delete_session("s1").await.unwrap();
    assert_eq!(s.session_user("s1", t).await.unwrap(), None, "revoked");
}

#[tokio::test]
async fn concurrent_sends_get_gap_free_unique_sequence_numbers() {
    let (s, _d) = fresh_store().await;
    let a = user(&s, "a").await;
    let ch = channel(&s, &a, "busy", ChannelKind::Public, &[]).await;
    let mut tasks = Vec::new();
    for w in 0..8 {
        let (s, a, ch) = (s.clone(), a.clone(), ch.clone());
        tasks.push(tokio::spawn(async move {
            let mut seqs = Vec::new();
            for i in 0..50 {
                let (m, ev) = s
                    .append_message(msg(&ch, &a, &format!("w{w}-{i}"), "x"))
                    .await
                    .unwrap();
                assert_eq!(ev.unwrap().seq, m.seq);
                seqs.push(m.seq);
            }
            seqs
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort();
    // seq 1 is the owner's member_joined event.
    assert_eq!(all, (2..=401).collect::<Vec<i64>>());
    let events = s.events_after(&ch, 0, 1000).await.unwrap();
    assert_eq!(
        events.iter().map(|e| e.seq).collect::<Vec<_>>(),
        (1..=401).collect::<Vec<i64>>()
    );
}

#[tokio::test]
async fn appends_are_idempotent_on_client_id() {
    let (s, _d) = fresh_store().await;
    let a = user(&s, "a").await;
    let ch = channel(&s, &a, "c", ChannelKind::Private, &[]).await;
    let (m1, e1) = s
        .append_message(msg(&ch, &a, "same", "hello"))
        .await
        .unwrap();
    let (m2, e2) = s
        .append_message(msg(&ch, &a, "same", "hello"))
        .await
        .unwrap();
    assert!(e1.is_some() && e2.is_none());
    assert_eq!((m1.id, m1.seq), (m2.id, m2.seq));
    assert_eq!(s.channel(&ch).await.unwrap().unwrap().last_seq, 2);
}

#[tokio::test]
async fn history_pages_threads_edits_deletes_reactions() {
    let (s, _d) = fresh_store().await;
    let a = user(&s, "a").await;
    let b = user(&s, "b").await;
    let ch = channel(&s, &a, "c", ChannelKind::Private, &[&b]).await;
    let mut ids = Vec::new();
    for i in 0..10 {
        ids.push(
            s.append_message(msg(&ch, &a, &format!("m{i}"), &format!("text {i}")))
                .await
                .unwrap()
                .0,
        );
    }
    let mut reply = msg(&ch, &b, "r1", "a reply");
    reply.thread_root = Some(ids[0].id.clone());
    s.append_message(reply).await.unwrap();
    let mut bad = msg(&ch, &b, "r2", "reply to nothing");
    bad.thread_root = Some("missing".into());
    assert!(matches!(
        s.append_message(bad).await,
        Err(StoreError::NotFound(_))
    ));

    let (latest, more) = s.history(&ch, Page::Latest, 4).await.unwrap();
    assert_eq!(
        latest.iter().map(|m| m.text.as_str()).collect::<Vec<_>>(),
        ["text 6", "text 7", "text 8", "text 9"]
    );
    assert!(more);
    let (older, _) = s
        .history(&ch, Page::Before(latest[0].seq), 100)
        .await
        .unwrap();
    assert_eq!(older.len(), 6);
    let (newer, more) = s.history(&ch, Page::After(ids[7].seq), 100).await.unwrap();
    assert_eq!(newer.len(), 2);
    assert!(!more);
    assert_eq!(s.replies(&ch, &ids[0].id).await.unwrap().len(), 1);
    assert_eq!(
        s.message(&ch, &ids[0].id)
            .await
            .unwrap()
            .unwrap()
            .reply_count,
        1
    );

    let e = s
        .edit_message(
            &ch,
            &ids[1].id,
            &a,
            "edited",
            std::slice::from_ref(&b),
            now(),
        )
        .await
        .unwrap();
    assert_eq!(e.kind(), EventKind::Edit);
    let r = s
        .react(&ch, &ids[1].id, &b, "🎉", true, now())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.kind(), EventKind::Reaction);
    assert!(
        s.react(&ch, &ids[1].id, &b, "🎉", true, now())
            .await
            .unwrap()
            .is_none(),
        "no change, no event"
    );
    let m = s.message(&ch, &ids[1].id).await.unwrap().unwrap();
    assert_eq!(
        (
            m.text.as_str(),
            m.mentions.clone(),
            m.reactions[0].user_ids.clone()
        ),
        ("edited", vec![b.clone()], vec![b.clone()])
    );
    assert!(m.edited_at.is_some());
    s.delete_message(&ch, &ids[1].id, &a, now()).await.unwrap();
    let m = s.message(&ch, &ids[1].id).await.unwrap().unwrap();
    assert!(m.deleted && m.text.is_empty() && m.reactions.is_empty());
    assert!(matches!(
        s.delete_message(&ch, &ids[1].id, &a, now()).await,
        Err(StoreError::NotFound(_))
    ));
    // The log holds every change in order.
    let kinds: Vec<EventKind> = s
        .events_after(&ch, ids[9].seq, 100)
        .await
        .unwrap()
        .iter()
        .map(Event::kind)
        .collect();
    assert_eq!(
        kinds,
        [
            EventKind::Message,
            EventKind::Edit,
            EventKind::Reaction,
            EventKind::Delete
        ]
    );
}

#[tokio::test]
async fn watermarks_only_move_forward_and_only_to_messages() {
    let (s, _d) = fresh_store().await;
    let a = user(&s, "a").await;
    let b = user(&s, "b").await;
    let ch = channel(&s, &a, "c", ChannelKind::Private, &[&b]).await;
    let (m, _) = s.append_message(msg(&ch, &a, "1", "x")).await.unwrap();
    let ev = s
        .advance_watermark(&ch, &b, Watermark::Delivered(m.seq), true, now())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(data(&ev)["delivered_seq"], m.seq);
    assert_eq!(data(&ev)["read_seq"].as_i64().unwrap(), 0);
    // The receipt took seq m.seq + 1; reading "everything" stops at the last message.
    let ev = s
        .advance_watermark(&ch, &b, Watermark::Read(i64::MAX), true, now())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(data(&ev)["read_seq"], m.seq);
    assert!(
        s.advance_watermark(&ch, &b, Watermark::Read(1), true, now())
            .await
            .unwrap()
            .is_none(),
        "never backwards"
    );
    assert!(
        s.advance_watermark(&ch, &b, Watermark::Read(i64::MAX), true, now())
            .await
            .unwrap()
            .is_none(),
        "no receipt loop"
    );
    let member = s.member(&ch, &b).await.unwrap().unwrap();
    assert_eq!(
        (member.read_seq, member.delivered_seq, member.role),
        (m.seq, m.seq, Role::Member)
    );
    let chans = s.channels_for_user(&b).await.unwrap();
    assert_eq!(chans[0].unread, Some(0));
    s.append_message(msg(&ch, &a, "2", "y")).await.unwrap();
    assert_eq!(s.channels_for_user(&b).await.unwrap()[0].unread, Some(1));
    assert_eq!(
        s.channels_for_user(&a).await.unwrap()[0].unread,
        Some(0),
        "own messages are never unread"
    );
}

#[tokio::test]
async fn dm_keys_make_direct_messages_unique_and_membership_changes_are_logged() {
    let (s, _d) = fresh_store().await;
    let a = user(&s, "a").await;
    let b = user(&s, "b").await;
    let c = user(&s, "c").await;
    let dm = |key: &str| NewChannel {
        id: new_id(),
        kind: ChannelKind::Dm,
        name: String::new(),
        topic: String::new(),
        created_by: a.clone(),
        created_at: now(),
        member_ids: vec![b.clone()],
        dm_key: Some(key.into()),
    };
    let (first, ev) = s.create_channel(dm("k")).await.unwrap();
    let (again, ev2) = s.create_channel(dm("k")).await.unwrap();
    assert_eq!(first.id, again.id);
    assert_eq!((ev.len(), ev2.len()), (2, 0));
    let mut ids: Vec<UserId> = again.member_ids.clone();
    ids.sort();
    let mut want = vec![a.clone(), b.clone()];
    want.sort();
    assert_eq!(ids, want);

    let pub_ch = channel(&s, &a, "open", ChannelKind::Public, &[]).await;
    assert!(matches!(
        s.create_channel(NewChannel {
            id: new_id(),
            kind: ChannelKind::Private,
            name: "open".into(),
            topic: String::new(),
            created_by: a.clone(),
            created_at: now(),
            member_ids: vec![],
            dm_key: None
        })
        .await,
        Err(StoreError::Conflict(_))
    ));
    let joined = s
        .add_member(&pub_ch, &c, Role::Member, &c)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(joined.kind(), EventKind::MemberJoined);
    assert!(s
        .add_member(&pub_ch, &c, Role::Member, &c)
        .await
        .unwrap()
        .is_none());
    let left = s.remove_member(&pub_ch, &c).await.unwrap().unwrap();
    assert_eq!(
        (left.kind(), left.seq),
        (EventKind::MemberLeft, joined.seq + 1)
    );
    assert!(s.remove_member(&pub_ch, &c).await.unwrap().is_none());
    let memberships: HashSet<ChannelId> = s
        .memberships(&a)
        .await
        .unwrap()
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(
        memberships,
        HashSet::from([first.id.clone(), pub_ch.clone()])
    );
    assert_eq!(s.public_channels().await.unwrap().len(), 1);
}

#[tokio::test]
async fn search_covers_readable_channels_only() {
    let (s, _d) = fresh_store().await;
    let a = user(&s, "a").await;
    let b = user(&s, "b").await;
    let private = channel(&s, &a, "private", ChannelKind::Private, &[]).await;
    let public = channel(&s, &a, "public", ChannelKind::Public, &[]).await;
    s.append_message(msg(&private, &a, "1", "the secret rendezvous"))
        .await
        .unwrap();
    s.append_message(msg(&public, &a, "2", "the public rendezvous"))
        .await
        .unwrap();
    let (deleted, _) = s
        .append_message(msg(&public, &a, "3", "a deleted rendezvous"))
        .await
        .unwrap();
    s.delete_message(&public, &deleted.id, &a, now())
        .await
        .unwrap();
    assert_eq!(s.search(&a, "rendezvous", None, 10).await.unwrap().len(), 2);
    let for_b = s.search(&b, "rendez", None, 10).await.unwrap();
    assert_eq!(
        for_b.iter().map(|m| m.text.as_str()).collect::<Vec<_>>(),
        ["the public rendezvous"]
    );
    assert_eq!(
        s.search(&a, "rendezvous", Some(&private), 10)
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(
        s.search(&a, "\"unbalanced OR (", None, 10).await.is_ok(),
        "user input is not query syntax"
    );
}

/// Every channel write on behalf of a user checks membership in its own transaction: a
/// non-member (never joined, or just left) is refused with `NotMember` and nothing is stored,
/// whatever a node's cache believed.
#[tokio::test]
async fn non_members_cannot_write_and_nothing_is_stored() {
    let (s, _d) = fresh_store().await;
    let a = user(&s, "a").await;
    let b = user(&s, "b").await;
    let c = user(&s, "c").await;
    let ch = channel(&s, &a, "c", ChannelKind::Private, &[&b]).await;
    let (m_a, _) = s
        .append_message(msg(&ch, &a, "a1", "from a"))
        .await
        .unwrap();
    let (m_b, _) = s
        .append_message(msg(&ch, &b, "b1", "from b"))
        .await
        .unwrap();
    s.remove_member(&ch, &b).await.unwrap().unwrap();
    let before = s.events_after(&ch, 0, 1000).await.unwrap();
    let last_seq = s.channel(&ch).await.unwrap().unwrap().last_seq;

    for (who, name) in [(&c, "never a member"), (&b, "left")] {
        let sent = s.append_message(msg(&ch, who, "x1", "intruder")).await;
        assert!(
            matches!(sent, Err(StoreError::NotMember)),
            "{name}: {sent:?}"
        );
        let mut reply = msg(&ch, who, "x2", "intruding reply");
        reply.thread_root = Some(m_a.id.clone());
        let sent = s.append_message(reply).await;
        assert!(
            matches!(sent, Err(StoreError::NotMember)),
            "{name}: {sent:?}"
        );
        let reacted = s.react(&ch, &m_a.id, who, "👀", true, now()).await;
        assert!(
            matches!(reacted, Err(StoreError::NotMember)),
            "{name}: {reacted:?}"
        );
        let read = s
            .advance_watermark(&ch, who, Watermark::Read(i64::MAX), true, now())
            .await;
        assert!(
            matches!(read, Err(StoreError::NotMember)),
            "{name}: {read:?}"
        );
    }
    // The author of a message who left can no longer change it.
    let edited = s
        .edit_message(&ch, &m_b.id, &b, "changed", &[], now())
        .await;
    assert!(matches!(edited, Err(StoreError::NotMember)), "{edited:?}");
    let deleted = s.delete_message(&ch, &m_b.id, &b, now()).await;
    assert!(matches!(deleted, Err(StoreError::NotMember)), "{deleted:?}");
    // A member cannot change someone else's message either.
    let edited = s
        .edit_message(&ch, &m_b.id, &a, "changed", &[], now())
        .await;
    assert!(matches!(edited, Err(StoreError::NotFound(_))), "{edited:?}");
    let deleted = s.delete_message(&ch, &m_b.id, &a, now()).await;
    assert!(
        matches!(deleted, Err(StoreError::NotFound(_))),
        "{deleted:?}"
    );

    // Nothing of it was stored: no event, no sequence number taken, messages untouched.
    assert_eq!(
        s.events_after(&ch, 0, 1000).await.unwrap().len(),
        before.len()
    );
    assert_eq!(
        s.channel(&ch).await.unwrap().unwrap().last_seq,
        last_seq,
        "no sequence number taken"
    );
    let (history, _) = s.history(&ch, Page::Latest, 100).await.unwrap();
    assert_eq!(
        history.iter().map(|m| m.text.as_str()).collect::<Vec<_>>(),
        ["from a", "from b"]
    );
    assert!(history
        .iter()
        .all(|m| m.reactions.is_empty() && m.reply_count == 0));
    assert!(s.replies(&ch, &m_a.id).await.unwrap().is_empty());
    assert!(s.member(&ch, &c).await.unwrap().is_none());
    // Joining again makes the same writes work.
    s.add_member(&ch, &b, Role::Member, &a)
        .await
        .unwrap()
        .unwrap();
    s.append_message(msg(&ch, &b, "b2", "back")).await.unwrap();
    s.edit_message(&ch, &m_b.id, &b, "changed", &[], now())
        .await
        .unwrap();
}

#[tokio::test]
async fn users_by_ids_reads_the_existing_ones_in_one_call() {
    let (s, _d) = fresh_store().await;
    let a = user(&s, "a").await;
    let b = user(&s, "b").await;
    let _c = user(&s, "c").await;
    let at = now();
    s.set_last_seen(&b, at).await.unwrap();
    assert!(s.users_by_ids(&[]).await.unwrap().is_empty());
    let mut found = s
        .users_by_ids(&[b.clone(), "nobody".into(), a.clone(), b.clone()])
        .await
        .unwrap();
    found.sort_by(|x, y| x.username.cmp(&y.username));
    assert_eq!(
        found.iter().map(|u| u.id.as_str()).collect::<Vec<_>>(),
        [a.as_str(), b.as_str()]
    );
    assert_eq!(found[0].last_seen, None);
    let seen = found[1].last_seen.expect("b's last seen");
    assert!(
        (seen - at).abs() < time::Duration::milliseconds(2),
        "{seen} vs {at}"
    );
    s.probe_write().await.unwrap();
    s.probe_write().await.unwrap();
}
