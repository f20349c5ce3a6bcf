//! The channel writes other than sends and watermarks (those are batched, see
//! [`super::batch`]): each runs under the node's channel lock as one transaction (see
//! [`super::txn`]) that changes the channel's documents together with its event.

use mongodb::bson::{doc, to_bson};
use time::OffsetDateTime;

use super::{
    documents::{bdt, ChannelDoc, EventDoc, MemberDoc},
    errors::{txn_read_error, Fail},
    txn::write_txn,
    MongoStore,
};
use crate::model::{Channel, Event, Role, UserId};
use crate::store::{rules, NewChannel, StoreError, StoreResult};

/// The documents a new channel starts with: the channel, its members (creator first, as
/// owner, then each other member once) and one `member_joined` event per member.
struct NewChannelDocs {
    channel: ChannelDoc,
    members: Vec<MemberDoc>,
    events: Vec<Event>,
}

fn new_channel_docs(nc: &NewChannel) -> NewChannelDocs {
    let mut member_ids: Vec<UserId> = vec![nc.created_by.clone()];
    for m in &nc.member_ids {
        if !member_ids.contains(m) {
            member_ids.push(m.clone());
        }
    }
    let events: Vec<Event> = member_ids
        .iter()
        .enumerate()
        .map(|(i, m)| Event {
            channel: nc.id.clone(),
            seq: i as i64 + 1,
            at: nc.created_at,
            payload: rules::member_joined(m.clone(), nc.created_by.clone()),
        })
        .collect();
    let channel = ChannelDoc {
        id: nc.id.clone(),
        kind: nc.kind,
        name: nc.name.clone(),
        topic: nc.topic.clone(),
        created_by: nc.created_by.clone(),
        created_at: bdt(nc.created_at),
        last_seq: events.len() as i64,
        last_message_seq: 0,
        dm_key: nc.dm_key.clone(),
        name_key: rules::has_unique_name(nc.kind).then(|| nc.name.clone()),
    };
    let members = member_ids
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let role = if i == 0 { Role::Owner } else { Role::Member };
            MemberDoc::new(&nc.id, m, role, nc.created_at, 0)
        })
        .collect();
    NewChannelDocs {
        channel,
        members,
        events,
    }
}

pub(super) async fn create_channel(
    store: &MongoStore,
    nc: NewChannel,
) -> StoreResult<(Channel, Vec<Event>)> {
    if let Some(key) = &nc.dm_key {
        if let Some(ch) = store.channel_by_dm_key(key).await? {
            return Ok((ch, Vec::new()));
        }
    }
    let docs = new_channel_docs(&nc);
    let event_docs: Vec<EventDoc> = docs.events.iter().map(EventDoc::from_event).collect();
    let result = write_txn!(store, s => {
        store.channels.insert_one(&docs.channel).session(&mut s).await?;
        store.members.insert_many(&docs.members).session(&mut s).await?;
        store.events.insert_many(&event_docs).session(&mut s).await?;
        Ok::<_, Fail>(())
    });
    match result {
        Ok(()) => {}
        Err(f) if f.is_duplicate_key() => {
            // A concurrent create with the same DM key won: answer with its channel.
            if let Some(key) = &nc.dm_key {
                if let Some(ch) = store.channel_by_dm_key(key).await? {
                    return Ok((ch, Vec::new()));
                }
            }
            return Err(StoreError::Conflict(format!(
                "a channel named {:?} exists",
                nc.name
            )));
        }
        Err(f) => return Err(f.into()),
    }
    let channel = Channel {
        id: nc.id,
        kind: nc.kind,
        name: nc.name,
        topic: nc.topic,
        created_by: nc.created_by,
        created_at: nc.created_at,
        last_seq: docs.events.len() as i64,
        member_ids: docs.members.into_iter().map(|m| m.user_id).collect(),
        read_seq: None,
        unread: None,
    };
    Ok((channel, docs.events))
}

pub(super) async fn add_member(
    store: &MongoStore,
    channel_id: &str,
    user_id: &str,
    role: Role,
    by: &str,
) -> StoreResult<Option<Event>> {
    let _guard = store.lock_channel(channel_id).await;
    let result = write_txn!(store, s => {
        let filter = doc! {"channel_id": channel_id, "user_id": user_id};
        let existing = store.members.find_one(filter).session(&mut s).await;
        if existing.map_err(txn_read_error("members"))?.is_some() {
            return Ok::<_, Fail>(None);
        }
        // Like the SQLite driver: no channel, no member (and no error).
        let Some(ch) = store
            .channels
            .find_one(doc! {"_id": channel_id})
            .session(&mut s)
            .await
            .map_err(txn_read_error("channels"))?
        else {
            return Ok(None);
        };
        // A new member starts having read and received everything before it joined.
        let at = crate::model::now();
        let member = MemberDoc::new(channel_id, user_id, role, at, ch.last_message_seq);
        store.members.insert_one(member).session(&mut s).await?;
        let payload = rules::member_joined(user_id.into(), by.into());
        let ev = store.append_event(&mut s, channel_id, at, payload).await?;
        Ok(Some(ev))
    });
    match result {
        // A concurrent add of the same member won.
        Err(f) if f.is_duplicate_key() => Ok(None),
        other => other.map_err(StoreError::from),
    }
}

pub(super) async fn remove_member(
    store: &MongoStore,
    channel_id: &str,
    user_id: &str,
) -> StoreResult<Option<Event>> {
    let _guard = store.lock_channel(channel_id).await;
    write_txn!(store, s => {
        let r = store
            .members
            .delete_one(doc! {"channel_id": channel_id, "user_id": user_id})
            .session(&mut s)
            .await?;
        if r.deleted_count == 0 {
            return Ok::<_, Fail>(None);
        }
        let payload = rules::member_left(user_id.into());
        let ev = store
            .append_event(&mut s, channel_id, crate::model::now(), payload)
            .await?;
        Ok(Some(ev))
    })
    .map_err(StoreError::from)
}

/// Replaces the text of the author's message (`edit`), or turns it into a tombstone.
pub(super) enum Change<'a> {
    Edit {
        text: &'a str,
        mentions: &'a [UserId],
    },
    Delete,
}

pub(super) async fn change_message(
    store: &MongoStore,
    channel_id: &str,
    message_id: &str,
    author_id: &str,
    change: Change<'_>,
    at: OffsetDateTime,
) -> StoreResult<Event> {
    let (set, payload) = match change {
        Change::Edit { text, mentions } => (
            doc! {"text": text, "mentions": to_bson(mentions).map_err(internal)?, "edited_at": bdt(at)},
            rules::edited(message_id.into(), text.to_string(), at, mentions.to_vec()),
        ),
        Change::Delete => (
            doc! {"deleted": true, "text": "", "reactions": [], "mentions": []},
            rules::deleted(message_id.into()),
        ),
    };
    let _guard = store.lock_channel(channel_id).await;
    write_txn!(store, s => {
        store.require_member(&mut s, channel_id, author_id).await?;
        let r = store
            .messages
            .update_one(
                doc! {"_id": message_id, "channel_id": channel_id, "author_id": author_id, "deleted": false},
                doc! {"$set": set.clone()},
            )
            .session(&mut s)
            .await?;
        if r.matched_count == 0 {
            return Err(Fail::Store(StoreError::NotFound("message")));
        }
        store.append_event(&mut s, channel_id, at, payload.clone()).await
    })
    .map_err(StoreError::from)
}

fn internal(e: impl std::fmt::Display) -> StoreError {
    StoreError::Internal(e.to_string())
}

/// Inputs of a reaction change.
pub(super) struct React<'a> {
    pub channel_id: &'a str,
    pub message_id: &'a str,
    pub user_id: &'a str,
    pub emoji: &'a str,
    pub add: bool,
    pub at: OffsetDateTime,
}

pub(super) async fn react(store: &MongoStore, r: React<'_>) -> StoreResult<Option<Event>> {
    let React {
        channel_id,
        message_id,
        user_id,
        emoji,
        add,
        at,
    } = r;
    let _guard = store.lock_channel(channel_id).await;
    write_txn!(store, s => {
        store.require_member(&mut s, channel_id, user_id).await?;
        // Compare-and-set on the reaction list: a concurrent change makes the update match
        // nothing, and the loop reads again (needed without transactions; harmless with).
        loop {
            let msg = store
                .messages
                .find_one(doc! {"_id": message_id, "channel_id": channel_id})
                .session(&mut s)
                .await
                .map_err(txn_read_error("messages"))?
                .ok_or(StoreError::NotFound("message"))?
                .into_message()
                .map_err(StoreError::from)?;
            if msg.deleted {
                return Err(Fail::Store(StoreError::NotFound("message")));
            }
            let before = to_bson(&msg.reactions).map_err(internal)?;
            let mut reactions = msg.reactions;
            if !rules::toggle_reaction(&mut reactions, emoji, user_id, add) {
                return Ok::<_, Fail>(None);
            }
            let r = store
                .messages
                .update_one(
                    doc! {"_id": message_id, "channel_id": channel_id, "deleted": false, "reactions": before},
                    doc! {"$set": {"reactions": to_bson(&reactions).map_err(internal)?}},
                )
                .session(&mut s)
                .await?;
            if r.matched_count == 0 {
                continue;
            }
            let payload = rules::reacted(message_id.into(), emoji.to_string(), user_id.into(), add);
            let ev = store.append_event(&mut s, channel_id, at, payload).await?;
            return Ok(Some(ev));
        }
    })
    .map_err(StoreError::from)
}
