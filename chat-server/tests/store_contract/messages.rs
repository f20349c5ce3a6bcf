//! Messages: sequence numbers, idempotent appends, history, threads, edits, deletes,
//! reactions, search.

use super::*;

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

    edit_react_delete_and_the_log(&s, &ch, &a, &b, &ids).await;
}

/// An edit, a reaction (twice: the second changes nothing), a delete (twice: the second is
/// refused) of message `ids[1]`, and the log holds every change in order.
async fn edit_react_delete_and_the_log(
    s: &DynStore,
    ch: &ChannelId,
    a: &UserId,
    b: &UserId,
    ids: &[Message],
) {
    let e = s
        .edit_message(ch, &ids[1].id, a, "edited", std::slice::from_ref(b), now())
        .await
        .unwrap();
    assert_eq!(e.kind(), EventKind::Edit);
    let r = s
        .react(ch, &ids[1].id, b, "🎉", true, now())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.kind(), EventKind::Reaction);
    assert!(
        s.react(ch, &ids[1].id, b, "🎉", true, now())
            .await
            .unwrap()
            .is_none(),
        "no change, no event"
    );
    let m = s.message(ch, &ids[1].id).await.unwrap().unwrap();
    assert_eq!(
        (
            m.text.as_str(),
            m.mentions.clone(),
            m.reactions[0].user_ids.clone()
        ),
        ("edited", vec![b.clone()], vec![b.clone()])
    );
    assert!(m.edited_at.is_some());
    s.delete_message(ch, &ids[1].id, a, now()).await.unwrap();
    let m = s.message(ch, &ids[1].id).await.unwrap().unwrap();
    assert!(m.deleted && m.text.is_empty() && m.reactions.is_empty());
    assert!(matches!(
        s.delete_message(ch, &ids[1].id, a, now()).await,
        Err(StoreError::NotFound(_))
    ));
    // The log holds every change in order.
    let kinds: Vec<EventKind> = s
        .events_after(ch, ids[9].seq, 100)
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
