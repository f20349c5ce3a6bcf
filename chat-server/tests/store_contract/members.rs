//! Users and members: unique names, sessions, watermarks, DMs, membership changes and the
//! membership check of every write.

use super::*;

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

/// `(user, delivered_seq, read_seq)` of each member a `receipts` event names, sorted.
fn receipts_said(ev: &Event) -> Vec<(String, i64, i64)> {
    let mut said: Vec<(String, i64, i64)> = data(ev)["receipts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let (d, rd) = (r["delivered_seq"].as_i64(), r["read_seq"].as_i64());
            (
                r["user_id"].as_str().unwrap().to_string(),
                d.unwrap(),
                rd.unwrap(),
            )
        })
        .collect();
    said.sort();
    said
}

#[tokio::test]
async fn delivered_watermarks_of_several_members_move_in_one_event() {
    let (s, _d) = fresh_store().await;
    let a = user(&s, "a").await;
    let b = user(&s, "b").await;
    let c = user(&s, "c").await;
    let stranger = user(&s, "stranger").await;
    let ch = channel(&s, &a, "c", ChannelKind::Private, &[&b, &c]).await;
    let (m, _) = s.append_message(msg(&ch, &a, "1", "x")).await.unwrap();
    let marks = |seq: i64| vec![(b.clone(), seq), (c.clone(), seq), (stranger.clone(), seq)];
    let ev = s
        .advance_delivered(&ch, marks(m.seq), vec![], true, now())
        .await
        .unwrap()
        .expect("one event for both members");
    assert_eq!(ev.kind(), EventKind::Receipts);
    let moved = receipts_said(&ev);
    let mut expected = vec![(b.to_string(), m.seq, 0), (c.to_string(), m.seq, 0)];
    expected.sort();
    assert_eq!(moved, expected, "the members' marks, not the stranger's");
    assert!(
        s.advance_delivered(&ch, marks(m.seq), vec![], true, now())
            .await
            .unwrap()
            .is_none(),
        "nothing moved: no event"
    );
    let (m2, _) = s.append_message(msg(&ch, &a, "2", "y")).await.unwrap();
    let ev = s
        .advance_delivered(&ch, vec![(b.clone(), m2.seq)], vec![], true, now())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ev.kind(), EventKind::Receipt, "one member: a plain receipt");
    assert_eq!(data(&ev)["delivered_seq"], m2.seq);
    let member = s.member(&ch, &c).await.unwrap().unwrap();
    assert_eq!((member.delivered_seq, member.read_seq), (m.seq, 0));
    // Never past the newest message (the receipt events since are not messages), never back.
    let ev = s
        .advance_delivered(&ch, vec![(c.clone(), i64::MAX)], vec![], true, now())
        .await
        .unwrap()
        .expect("moved to the newest message");
    assert_eq!(data(&ev)["delivered_seq"], m2.seq);
    assert_eq!(data(&ev)["read_seq"].as_i64(), Some(0));
    assert!(
        s.advance_delivered(&ch, vec![(c.clone(), m.seq)], vec![], true, now())
            .await
            .unwrap()
            .is_none(),
        "never backwards"
    );
}

#[tokio::test]
async fn a_flush_announces_the_watermarks_a_send_moved_silently() {
    let (s, _d) = fresh_store().await;
    let a = user(&s, "a").await;
    let b = user(&s, "b").await;
    let stranger = user(&s, "stranger").await;
    let ch = channel(&s, &a, "c", ChannelKind::Private, &[&b]).await;
    let (m, _) = s.append_message(msg(&ch, &a, "1", "x")).await.unwrap();
    let (r, _) = s.append_message(msg(&ch, &b, "2", "reply")).await.unwrap();
    // b's reply moved b's marks to it, in its own commit, without an event.
    let member = s.member(&ch, &b).await.unwrap().unwrap();
    assert_eq!((member.delivered_seq, member.read_seq), (r.seq, r.seq));
    // a's socket got the reply; b is announced as it is now (its marks did not move here);
    // a stranger to announce is skipped.
    let ev = s
        .advance_delivered(
            &ch,
            vec![(a.clone(), r.seq)],
            vec![b.clone(), stranger.clone()],
            true,
            now(),
        )
        .await
        .unwrap()
        .expect("one event for the delivery and the announcement");
    assert_eq!(ev.kind(), EventKind::Receipts);
    let said = receipts_said(&ev);
    let mut expected = vec![(a.to_string(), r.seq, m.seq), (b.to_string(), r.seq, r.seq)];
    expected.sort();
    assert_eq!(said, expected);
    // An announcement alone is an event too: one member, a plain receipt.
    let ev = s
        .advance_delivered(&ch, vec![], vec![b.clone()], true, now())
        .await
        .unwrap()
        .expect("announced");
    assert_eq!(ev.kind(), EventKind::Receipt);
    assert_eq!(
        (
            data(&ev)["user_id"].as_str(),
            data(&ev)["read_seq"].as_i64()
        ),
        (Some(b.as_str()), Some(r.seq))
    );
    // Without `emit` (a channel too big for receipts) nothing is said.
    assert!(s
        .advance_delivered(&ch, vec![], vec![b.clone()], false, now())
        .await
        .unwrap()
        .is_none());
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
    authors_who_left_and_other_members_cannot_change_a_message(&s, &ch, &a, &b, &m_b.id).await;
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

/// The author of a message who left (`b`) can no longer change it; a member (`a`) cannot
/// change someone else's message either.
async fn authors_who_left_and_other_members_cannot_change_a_message(
    s: &DynStore,
    ch: &ChannelId,
    a: &UserId,
    b: &UserId,
    mid: &MessageId,
) {
    // The author of a message who left can no longer change it.
    let edited = s.edit_message(ch, mid, b, "changed", &[], now()).await;
    assert!(matches!(edited, Err(StoreError::NotMember)), "{edited:?}");
    let deleted = s.delete_message(ch, mid, b, now()).await;
    assert!(matches!(deleted, Err(StoreError::NotMember)), "{deleted:?}");
    // A member cannot change someone else's message either.
    let edited = s.edit_message(ch, mid, a, "changed", &[], now()).await;
    assert!(matches!(edited, Err(StoreError::NotFound(_))), "{edited:?}");
    let deleted = s.delete_message(ch, mid, a, now()).await;
    assert!(
        matches!(deleted, Err(StoreError::NotFound(_))),
        "{deleted:?}"
    );
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
