//! Group commit of the message path (issue 15): `append_message`, `advance_watermark` and
//! `advance_delivered` are queued to one committer task per node (a bounded queue, in the order
//! their futures are first polled), which gathers whatever is queued into one transaction per
//! batch. Self-clocked: while a transaction runs, the next batch gathers.
//!
//! A batch costs the same handful of commands whatever its size:
//! 1. `find` the batch's channel documents (`last_seq`, `last_message_seq`);
//! 2. `find` the member documents of the batch's channels and users;
//!
//!    then every op runs in queue order against that state in memory ([`plan`]): membership
//!    (`NotMember`), the channel's next seq for a message or a receipt event, watermarks
//!    ([`rules::advance_marks`], one per-member step for read and delivered marks);
//! 3. one `update` command, one statement per channel: the new `last_seq`/`last_message_seq`,
//!    compare-and-set on the `last_seq` read. Inside the transaction a concurrent writer of the
//!    channel (another node's batch, or this node's edits and reactions) meets a write
//!    conflict and one of the two transactions runs again, so seqs stay gap-free and unique
//!    across nodes (the unique index `(channel_id, seq)` on messages is the safety net);
//! 4. `insert` the messages: a message document is its own event (no copy in `events`; reads
//!    merge the two, see `MongoStore::events_after`);
//! 5. `insert` the other events (receipts), if any;
//! 6. one `update` command, one `$max` statement per member whose watermarks moved (the
//!    author's read watermark is among them: writing means having read);
//! 7. `commitTransaction`.
//!
//! A reply to a thread adds one `update` (the root's `reply_count`).
//!
//! Idempotency: no lookup before the insert. The unique index `(author_id, client_id)` answers:
//! a duplicate key aborts the transaction, the batch runs again without that send, and the send
//! is answered after the commit with the stored message (`duplicate`). A second send with the
//! same client id in the same batch is answered the same way.
//!
//! Without transactions (a standalone `mongod`) the same steps run one after the other under
//! the node's channel locks; as the module docs of [`super`] say, that is not for production.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Weak},
};

use futures_util::TryStreamExt;
use mongodb::{
    bson::{doc, Document},
    error::ErrorKind,
    ClientSession,
};
use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot};

use super::{
    documents::{ChannelSeqsDoc, EventDoc, MemberMarksDoc, MessageDoc},
    errors::{code_of, txn_read_error, Fail, DUPLICATE_KEY},
    txn::write_txn,
    MongoStore,
};
use crate::model::{ChannelId, Event, EventPayload, Message, UserId};
use crate::store::{rules, NewMessage, StoreError, StoreResult, Watermark};

/// Ops waiting for the committer; a sender waits (in order) while it is full.
pub(super) const QUEUE: usize = 4096;
/// At most this many ops in one transaction. SecantusDB's cost is mostly per document, so a
/// larger batch mainly saves the per-channel and per-member statements (one per batch each).
const MAX_BATCH: usize = 2048;

type Reply<T> = oneshot::Sender<StoreResult<T>>;

/// One queued write.
pub(super) enum Op {
    /// `append_message`.
    Append {
        message: NewMessage,
        reply: Reply<(Message, Option<Event>)>,
    },
    /// `advance_watermark` (one mark, `strict`: `NotMember` unless a member) and
    /// `advance_delivered` (several, non-members skipped; the event also says the watermarks
    /// of the members in `announce`).
    Marks {
        channel_id: ChannelId,
        marks: Vec<(UserId, Watermark)>,
        announce: Vec<UserId>,
        strict: bool,
        emit: bool,
        at: OffsetDateTime,
        reply: Reply<Option<Event>>,
    },
}

impl Op {
    fn channel_id(&self) -> &str {
        match self {
            Op::Append { message, .. } => &message.channel_id,
            Op::Marks { channel_id, .. } => channel_id,
        }
    }

    fn fail(self, e: StoreError) {
        match self {
            Op::Append { reply, .. } => drop(reply.send(Err(e))),
            Op::Marks { reply, .. } => drop(reply.send(Err(e))),
        }
    }
}

/// What became of one op in a committed batch.
// One per op of a batch, moved out at once: boxing the big variant would only add allocations.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
enum Outcome {
    Appended(Message, Event),
    Marked(Option<Event>),
    Failed(StoreError),
    /// Its `(author_id, client_id)` is taken: answered from the stored message.
    Duplicate,
}

/// Queues `op` and waits for its answer. The op is queued when this future is first polled
/// (or, with the queue full, takes its place in line then).
pub(super) async fn submit<T>(
    queue: &mpsc::Sender<Op>,
    op: impl FnOnce(Reply<T>) -> Op,
) -> StoreResult<T> {
    let (tx, rx) = oneshot::channel();
    queue
        .send(op(tx))
        .await
        .map_err(|_| StoreError::Unavailable("the store is shutting down".into()))?;
    rx.await
        .map_err(|_| StoreError::Internal("the store's committer ended".into()))?
}

/// The committer task: gathers what is queued, commits it as one batch, answers, repeats. Ends
/// when the store (which holds the queue's sender) is dropped.
pub(super) async fn committer(store: Weak<MongoStore>, mut queue: mpsc::Receiver<Op>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while queue.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let Some(store) = store.upgrade() else {
            break;
        };
        store.commit_batch(std::mem::take(&mut batch)).await;
    }
}

/// The state a batch reads (steps 1–2) and what [`plan`] decides from it.
#[derive(Default)]
struct Plan {
    outcomes: Vec<Outcome>,
    /// `(channel, last_seq read, new last_seq, new last_message_seq)`.
    channels: Vec<(ChannelId, i64, i64, i64)>,
    /// The messages to insert, each with the index of its op.
    messages: Vec<(usize, MessageDoc)>,
    events: Vec<EventDoc>,
    /// `(channel, user, delivered_seq, read_seq)` of members whose watermarks moved.
    members: Vec<(ChannelId, UserId, i64, i64)>,
}

struct ChannelState {
    read_last_seq: i64,
    last_seq: i64,
    last_message_seq: i64,
}

impl ChannelState {
    fn next_seq(&mut self) -> i64 {
        self.last_seq += 1;
        self.last_seq
    }
}

/// `(delivered_seq, read_seq)` and whether they moved.
type MemberState = ((i64, i64), bool);

/// Runs `ops` in order against the state read: pure, so the rules are testable without a
/// server. `duplicates` are ops already known to meet a duplicate key; a reply (op `i`) is
/// stored only when `roots[i]` says its thread root is there (and took the reply).
fn plan(
    ops: &[Op],
    duplicates: &HashSet<usize>,
    roots: &HashMap<usize, bool>,
    channels: Vec<ChannelSeqsDoc>,
    members: Vec<MemberMarksDoc>,
) -> Plan {
    let mut chans: HashMap<ChannelId, ChannelState> = channels
        .into_iter()
        .map(|c| {
            let state = ChannelState {
                read_last_seq: c.last_seq,
                last_seq: c.last_seq,
                last_message_seq: c.last_message_seq,
            };
            (c.id, state)
        })
        .collect();
    let mut mems: HashMap<(ChannelId, UserId), MemberState> = members
        .into_iter()
        .map(|m| {
            let marks = (m.delivered_seq, m.read_seq);
            ((m.channel_id, m.user_id), (marks, false))
        })
        .collect();
    let mut plan = Plan::default();
    let mut client_ids: HashSet<(&str, &str)> = HashSet::new();
    for (i, op) in ops.iter().enumerate() {
        let outcome = match op {
            Op::Append { message: m, .. } => {
                let key = (m.author_id.as_str(), m.client_id.as_str());
                if duplicates.contains(&i) || client_ids.contains(&key) {
                    // Any later send with this client id is a duplicate too.
                    client_ids.insert(key);
                    plan.outcomes.push(Outcome::Duplicate);
                    continue;
                }
                let member_key = (m.channel_id.clone(), m.author_id.clone());
                match (chans.get_mut(&m.channel_id), mems.get_mut(&member_key)) {
                    (Some(ch), Some((marks, moved))) => {
                        if m.thread_root.is_some() && roots.get(&i) != Some(&true) {
                            Outcome::Failed(StoreError::NotFound("thread root message"))
                        } else {
                            let seq = ch.next_seq();
                            ch.last_message_seq = seq;
                            // The author has obviously seen its own message.
                            *marks = (marks.0.max(seq), marks.1.max(seq));
                            *moved = true;
                            client_ids.insert(key);
                            let msg = rules::new_message(m.clone(), seq);
                            plan.messages.push((i, MessageDoc::from_message(&msg)));
                            let event = Event {
                                channel: msg.channel_id.clone(),
                                seq,
                                at: msg.created_at,
                                payload: EventPayload::Message(msg.clone()),
                            };
                            Outcome::Appended(msg, event)
                        }
                    }
                    _ => Outcome::Failed(StoreError::NotMember),
                }
            }
            Op::Marks {
                channel_id,
                marks,
                announce,
                strict,
                emit,
                at,
                ..
            } => match chans.get_mut(channel_id) {
                None => Outcome::Failed(StoreError::NotMember),
                Some(ch) => {
                    let mut moved = Vec::new();
                    let mut not_member = false;
                    for (user_id, mark) in marks {
                        let key = (channel_id.clone(), user_id.clone());
                        let Some((current, dirty)) = mems.get_mut(&key) else {
                            not_member |= *strict;
                            continue;
                        };
                        if let Some(m) = rules::advance_marks(*current, ch.last_message_seq, *mark)
                        {
                            *current = m;
                            *dirty = true;
                            moved.push((user_id.clone(), m));
                        }
                    }
                    for user_id in announce {
                        let key = (channel_id.clone(), user_id.clone());
                        if let Some((current, _)) = mems.get(&key) {
                            if !moved.iter().any(|(u, _)| u == user_id) {
                                moved.push((user_id.clone(), *current));
                            }
                        }
                    }
                    if not_member {
                        Outcome::Failed(StoreError::NotMember)
                    } else {
                        match rules::receipts(moved) {
                            Some(payload) if *emit => {
                                let event = Event {
                                    channel: channel_id.clone(),
                                    seq: ch.next_seq(),
                                    at: *at,
                                    payload,
                                };
                                plan.events.push(EventDoc::from_event(&event));
                                Outcome::Marked(Some(event))
                            }
                            _ => Outcome::Marked(None),
                        }
                    }
                }
            },
        };
        plan.outcomes.push(outcome);
    }
    for (id, ch) in chans {
        if ch.last_seq != ch.read_last_seq {
            plan.channels
                .push((id, ch.read_last_seq, ch.last_seq, ch.last_message_seq));
        }
    }
    for ((channel_id, user_id), ((delivered, read), dirty)) in mems {
        if dirty {
            plan.members.push((channel_id, user_id, delivered, read));
        }
    }
    plan
}

/// Reads every document of a find in the transaction's session, in one round trip (the batch
/// size covers the whole result, so no `getMore`).
async fn find_all<T>(
    collection: &'static str,
    coll: &mongodb::Collection<T>,
    filter: Document,
    s: &mut ClientSession,
) -> Result<Vec<T>, Fail>
where
    T: serde::de::DeserializeOwned + Unpin + Send + Sync,
{
    let mut cursor = coll
        .find(filter)
        .batch_size(u32::MAX >> 1)
        .session(&mut *s)
        .await
        .map_err(txn_read_error(collection))?;
    cursor
        .stream(&mut *s)
        .try_collect()
        .await
        .map_err(txn_read_error(collection))
}

/// The answer of a batched write command run through `run_command`: its write errors are in
/// the reply, not an `Err`. Returns how many documents matched.
fn write_reply(collection: &str, reply: &Document) -> Result<i64, Fail> {
    if let Ok(errors) = reply.get_array("writeErrors") {
        if !errors.is_empty() {
            return Err(Fail::Store(StoreError::Internal(format!(
                "update of {collection} failed: {errors:?}"
            ))));
        }
    }
    Ok(match reply.get("n") {
        Some(mongodb::bson::Bson::Int32(n)) => i64::from(*n),
        Some(mongodb::bson::Bson::Int64(n)) => *n,
        _ => 0,
    })
}

impl MongoStore {
    /// One `update` command with many statements (one round trip).
    async fn update_all(
        &self,
        s: &mut ClientSession,
        collection: &'static str,
        updates: Vec<Document>,
    ) -> Result<i64, Fail> {
        let mut command = doc! {"update": collection, "updates": updates, "ordered": true};
        if !self.txn {
            // Outside a transaction the command carries the durability every write has.
            command.insert("writeConcern", doc! {"w": "majority", "j": true});
        }
        let reply = self.db.run_command(command).session(&mut *s).await?;
        write_reply(collection, &reply)
    }

    /// Steps 1–6 of one attempt at a batch (the module docs). A duplicate key on a message
    /// aborts the attempt with its op's index in `duplicate_at`.
    async fn batch_attempt(
        &self,
        s: &mut ClientSession,
        ops: &[Op],
        duplicates: &HashSet<usize>,
        duplicate_at: &mut Option<usize>,
    ) -> Result<Vec<Outcome>, Fail> {
        let mut channel_ids: Vec<&str> = ops.iter().map(Op::channel_id).collect();
        channel_ids.sort_unstable();
        channel_ids.dedup();
        let mut user_ids: Vec<&str> = Vec::new();
        for op in ops {
            match op {
                Op::Append { message, .. } => user_ids.push(&message.author_id),
                Op::Marks {
                    marks, announce, ..
                } => {
                    user_ids.extend(marks.iter().map(|(u, _)| u.as_str()));
                    user_ids.extend(announce.iter().map(UserId::as_str));
                }
            }
        }
        user_ids.sort_unstable();
        user_ids.dedup();
        let channels = find_all(
            "channels",
            &self.channels.clone_with_type::<ChannelSeqsDoc>(),
            doc! {"_id": {"$in": channel_ids.clone()}},
            s,
        )
        .await?;
        // The members of these channels among these users (a superset of the pairs needed,
        // in one indexed query).
        let members = find_all(
            "members",
            &self.members.clone_with_type::<MemberMarksDoc>(),
            doc! {"channel_id": {"$in": channel_ids.clone()}, "user_id": {"$in": user_ids.clone()}},
            s,
        )
        .await?;
        let is_member: HashSet<(&str, &str)> = members
            .iter()
            .map(|m| (m.channel_id.as_str(), m.user_id.as_str()))
            .collect();
        // Replies: the root's `reply_count` (and whether there is a root to reply to); once
        // per client id (a repeat in the batch is a duplicate, see `plan`).
        let mut roots = HashMap::new();
        let mut seen: HashSet<(&str, &str)> = HashSet::new();
        for (i, op) in ops.iter().enumerate() {
            let Op::Append { message: m, .. } = op else {
                continue;
            };
            let Some(root) = &m.thread_root else {
                continue;
            };
            let first = seen.insert((m.author_id.as_str(), m.client_id.as_str()));
            if !first
                || duplicates.contains(&i)
                || !is_member.contains(&(m.channel_id.as_str(), m.author_id.as_str()))
            {
                continue;
            }
            let r = self
                .messages
                .update_one(
                    doc! {
                        "_id": root.as_str(),
                        "channel_id": m.channel_id.as_str(),
                        "thread_root": mongodb::bson::Bson::Null,
                        "deleted": false,
                    },
                    doc! {"$inc": {"reply_count": 1i64}},
                )
                .session(&mut *s)
                .await?;
            roots.insert(i, r.matched_count > 0);
        }
        let plan = plan(ops, duplicates, &roots, channels, members);

        if !plan.channels.is_empty() {
            let n = plan.channels.len() as i64;
            let updates = plan
                .channels
                .iter()
                .map(|(id, read, last_seq, last_message_seq)| {
                    // Inside a transaction the snapshot is the compare: a concurrent change to
                    // the document is a write conflict. Without one, compare `last_seq`.
                    let mut q = doc! {"_id": id.as_str()};
                    if !self.txn {
                        q.insert("last_seq", read);
                    }
                    doc! {
                        "q": q,
                        "u": {"$set": {"last_seq": last_seq, "last_message_seq": last_message_seq}},
                    }
                })
                .collect();
            if self.update_all(s, "channels", updates).await? != n {
                // Inside a transaction a concurrent writer meets a write conflict instead.
                return Err(Fail::Store(StoreError::Unavailable(
                    "a channel's sequence moved during the batch (no transactions: run a \
                     replica set)"
                        .into(),
                )));
            }
        }
        if !plan.messages.is_empty() {
            let docs = plan.messages.iter().map(|(_, d)| d);
            if let Err(e) = self.messages.insert_many(docs).session(&mut *s).await {
                if code_of(&e) == Some(DUPLICATE_KEY) {
                    if let ErrorKind::InsertMany(m) = e.kind.as_ref() {
                        let at = m.write_errors.as_ref().and_then(|w| w.first());
                        if let Some((op, _)) = at.and_then(|w| plan.messages.get(w.index)) {
                            *duplicate_at = Some(*op);
                        }
                    }
                    // Not retried as it is: the batch runs again without that send.
                    return Err(Fail::Store(StoreError::Conflict(e.to_string())));
                }
                return Err(e.into());
            }
        }
        if !plan.events.is_empty() {
            self.events
                .insert_many(&plan.events)
                .session(&mut *s)
                .await?;
        }
        if !plan.members.is_empty() {
            let updates = plan
                .members
                .iter()
                .map(|(channel_id, user_id, delivered, read)| {
                    doc! {
                        "q": {"channel_id": channel_id.as_str(), "user_id": user_id.as_str()},
                        // `$max`: never backwards, even without transactions.
                        "u": {"$max": {"delivered_seq": delivered, "read_seq": read}},
                    }
                })
                .collect();
            self.update_all(s, "members", updates).await?;
        }
        Ok(plan.outcomes)
    }

    /// Commits `ops` as one batch (again without a send that met a duplicate key, as often as
    /// needed) and answers each op.
    async fn commit_batch(self: Arc<Self>, ops: Vec<Op>) {
        // Without transactions only this node's channel locks order the batch against this
        // node's other writes (sorted: no lock-order inversion with another batch).
        let mut guards = Vec::new();
        if !self.txn {
            let mut ids: Vec<&str> = ops.iter().map(Op::channel_id).collect();
            ids.sort_unstable();
            ids.dedup();
            for id in ids {
                guards.push(self.lock_channel(id).await);
            }
        }
        let mut duplicates = HashSet::new();
        let result = loop {
            let mut duplicate_at = None;
            let store: &MongoStore = &self;
            let result = write_txn!(store, s => {
                store.batch_attempt(&mut s, &ops, &duplicates, &mut duplicate_at).await
            });
            match (result, duplicate_at) {
                (Err(_), Some(i)) if duplicates.insert(i) => continue,
                (result, _) => break result,
            }
        };
        drop(guards);
        let outcomes = match result {
            Ok(outcomes) => outcomes,
            Err(f) => {
                let e = StoreError::from(f);
                for op in ops {
                    op.fail(e.clone());
                }
                return;
            }
        };
        for (op, outcome) in ops.into_iter().zip(outcomes) {
            match (op, outcome) {
                (Op::Append { reply, .. }, Outcome::Appended(msg, ev)) => {
                    let _ = reply.send(Ok((msg, Some(ev))));
                }
                (Op::Marks { reply, .. }, Outcome::Marked(ev)) => {
                    let _ = reply.send(Ok(ev));
                }
                (Op::Append { message, reply }, Outcome::Duplicate) => {
                    // Read off the committer's path: the next batch need not wait for it.
                    let store = self.clone();
                    tokio::spawn(async move {
                        let stored = store
                            .message_by_client_id(&message.author_id, &message.client_id)
                            .await;
                        let _ = reply.send(match stored {
                            Ok(Some(msg)) => Ok((msg, None)),
                            Ok(None) => Err(StoreError::Conflict(format!(
                                "message {} exists (a duplicate id)",
                                message.id
                            ))),
                            Err(e) => Err(e),
                        });
                    });
                }
                (op, Outcome::Failed(e)) => op.fail(e),
                (op, outcome) => op.fail(StoreError::Internal(format!(
                    "batch answered an op with {outcome:?}"
                ))),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chan(id: &str, last_seq: i64, last_message_seq: i64) -> ChannelSeqsDoc {
        ChannelSeqsDoc {
            id: id.into(),
            last_seq,
            last_message_seq,
        }
    }

    fn member(channel: &str, user: &str, delivered: i64, read: i64) -> MemberMarksDoc {
        MemberMarksDoc {
            channel_id: channel.into(),
            user_id: user.into(),
            delivered_seq: delivered,
            read_seq: read,
        }
    }

    fn append(channel: &str, author: &str, client_id: &str) -> Op {
        let (reply, _) = oneshot::channel();
        Op::Append {
            message: NewMessage {
                id: crate::model::new_id(),
                channel_id: channel.into(),
                author_id: author.into(),
                client_id: client_id.into(),
                text: "hi".into(),
                thread_root: None,
                mentions: vec![],
                created_at: crate::model::now(),
            },
            reply,
        }
    }

    fn read(channel: &str, user: &str) -> Op {
        let (reply, _) = oneshot::channel();
        Op::Marks {
            channel_id: channel.into(),
            marks: vec![(user.into(), Watermark::Read(i64::MAX))],
            announce: Vec::new(),
            strict: true,
            emit: true,
            at: crate::model::now(),
            reply,
        }
    }

    fn seqs(plan: &Plan) -> Vec<Option<i64>> {
        plan.outcomes
            .iter()
            .map(|o| match o {
                Outcome::Appended(_, ev) | Outcome::Marked(Some(ev)) => Some(ev.seq),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn seqs_follow_queue_order_per_channel_and_one_write_per_channel() {
        let ops = [
            read("a", "u"),
            append("a", "u", "1"),
            append("b", "v", "1"),
            read("a", "w"),
            append("a", "u", "2"),
            append("a", "x", "1"),
        ];
        let plan = plan(
            &ops,
            &HashSet::new(),
            &HashMap::new(),
            vec![chan("a", 10, 8), chan("b", 3, 3)],
            vec![
                member("a", "u", 8, 8),
                member("a", "w", 5, 5),
                member("b", "v", 3, 3),
            ],
        );
        // u has read everything: no receipt. w's read moves to message 11: a receipt at 12.
        // x is not a member.
        assert_eq!(
            seqs(&plan),
            [None, Some(11), Some(4), Some(12), Some(13), None]
        );
        assert!(matches!(
            plan.outcomes[5],
            Outcome::Failed(StoreError::NotMember)
        ));
        let mut channels = plan.channels.clone();
        channels.sort();
        assert_eq!(channels, [("a".into(), 10, 13, 13), ("b".into(), 3, 4, 4)]);
        let mut members = plan.members.clone();
        members.sort();
        assert_eq!(
            members,
            [
                ("a".into(), "u".into(), 13, 13),
                ("a".into(), "w".into(), 11, 11),
                ("b".into(), "v".into(), 4, 4),
            ]
        );
        assert_eq!(plan.messages.len(), 3);
        assert_eq!(plan.events.len(), 1);
    }

    #[test]
    fn a_client_id_twice_in_a_batch_is_stored_once() {
        let ops = [append("a", "u", "1"), append("a", "u", "1")];
        let mut dups = HashSet::new();
        let plan1 = plan(
            &ops,
            &dups,
            &HashMap::new(),
            vec![chan("a", 0, 0)],
            vec![member("a", "u", 0, 0)],
        );
        assert!(matches!(plan1.outcomes[1], Outcome::Duplicate));
        assert_eq!(plan1.messages.len(), 1);
        // The first met a stored twin: so does the second.
        dups.insert(0);
        let plan2 = plan(
            &ops,
            &dups,
            &HashMap::new(),
            vec![chan("a", 0, 0)],
            vec![member("a", "u", 0, 0)],
        );
        assert!(matches!(plan2.outcomes[0], Outcome::Duplicate));
        assert!(matches!(plan2.outcomes[1], Outcome::Duplicate));
        assert!(plan2.messages.is_empty() && plan2.channels.is_empty());
    }
}
