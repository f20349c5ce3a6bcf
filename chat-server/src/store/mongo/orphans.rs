//! Transactions a crashed node left open, and how the surviving nodes end them.
//!
//! A node killed inside a write transaction leaves that transaction open on the server: neither
//! mongod nor SecantusDB aborts a transaction when its connection closes (a driver may send a
//! transaction's statements over different pooled connections). The transaction keeps every
//! document it wrote, first of all the channel document whose `last_seq` it incremented, and
//! every other node's write to that channel meets `WriteConflict` (112,
//! `TransientTransactionError`) until the server reaps it: after mongod's
//! `transactionLifetimeLimitSeconds`, 60 s by default. A channel must not stall that long
//! because one node died, so:
//!
//! - every node keeps one document in `store_nodes`: a random id per process, `alive_ms` (the
//!   *server's* clock, in milliseconds, so the nodes' clocks need not agree) refreshed every
//!   [`HEARTBEAT`], and `sessions`, the ids (`lsid`) of the server sessions its write
//!   transactions run in, recorded before a session's first transaction (the driver pools
//!   server sessions, so this is a write per new pooled session, not per transaction);
//! - a write that has met transient errors for [`RECLAIM_AFTER`] asks [`Orphans::reclaim`]
//!   (at most once per [`RECLAIM_EVERY`] for the whole node) to look for nodes whose heartbeat
//!   is older than [`DEAD_AFTER_MS`], end their sessions with `killSessions` (which aborts
//!   their open transactions and releases what they held; nothing they did is committed) and
//!   delete their documents.
//!
//! A live node wrongly taken for dead (its heartbeats stalled for [`DEAD_AFTER_MS`]) loses
//! only its open transactions: their next statement or commit fails with a transient error and
//! the write runs again, as after any write conflict. Its next heartbeat recreates its document
//! and it records its sessions anew. With access control, `killSessions` ends sessions of the
//! same user only: run every node with the same database user (or grant `killAnySession`).

use std::{
    collections::HashSet,
    sync::{Arc, Mutex, Weak},
    time::{Duration, Instant},
};

use futures_util::TryStreamExt;
use mongodb::{
    bson::{doc, Bson, Document},
    ClientSession, Collection, Database,
};

/// How often a node refreshes its `alive_ms`.
pub(super) const HEARTBEAT: Duration = Duration::from_millis(500);
/// A node whose `alive_ms` is older than this (server clock) is taken for dead: four missed
/// heartbeats, so a busy node is not; a crashed node's orphaned transaction stalls its channels
/// for about this long.
pub(super) const DEAD_AFTER_MS: i64 = 2_000;
/// How long a write meets transient errors before it looks for dead nodes: conflicts between
/// live nodes clear in milliseconds.
pub(super) const RECLAIM_AFTER: Duration = Duration::from_millis(300);
/// At most one look for dead nodes per this interval per node, however many writes wait.
const RECLAIM_EVERY: Duration = Duration::from_millis(250);

/// The collection of node documents.
pub(super) const NODES: &str = "store_nodes";

/// This node's entry in `store_nodes`, and the reclaiming of dead nodes' sessions.
pub(super) struct Orphans {
    node_id: String,
    nodes: Collection<Document>,
    admin: Database,
    /// The `lsid.id` bytes of the sessions recorded in this node's document.
    recorded: Mutex<HashSet<Vec<u8>>>,
    /// When this node last looked for dead nodes.
    last_reclaim: Mutex<Option<Instant>>,
}

/// `true` when `alive_ms` is older than [`DEAD_AFTER_MS`] by the server's clock.
fn heartbeat_stale() -> Document {
    doc! {"$expr": {"$lt": [
        "$alive_ms",
        {"$subtract": [{"$toLong": "$$NOW"}, DEAD_AFTER_MS]},
    ]}}
}

impl Orphans {
    /// Creates this node's document and starts its heartbeat task (which ends once the
    /// returned handle and every clone of it are dropped).
    pub(super) async fn start(db: &Database, admin: Database) -> mongodb::error::Result<Arc<Self>> {
        let orphans = Arc::new(Orphans {
            node_id: format!("{:032x}", rand::random::<u128>()),
            nodes: db.collection(NODES),
            admin,
            recorded: Mutex::new(HashSet::new()),
            last_reclaim: Mutex::new(None),
        });
        orphans.beat().await?;
        tokio::spawn(heartbeats(Arc::downgrade(&orphans)));
        Ok(orphans)
    }

    /// Refreshes `alive_ms`; recreates the document if a peer took this node for dead and
    /// deleted it (its sessions were ended then: they are recorded again from now on).
    async fn beat(&self) -> mongodb::error::Result<()> {
        let r = self
            .nodes
            .update_one(
                doc! {"_id": self.node_id.as_str()},
                vec![doc! {"$set": {"alive_ms": {"$toLong": "$$NOW"}}}],
            )
            .upsert(true)
            .await?;
        if r.upserted_id.is_some() {
            self.recorded.lock().expect("recorded sessions").clear();
        }
        Ok(())
    }

    /// Records `session`'s id in this node's document before its first transaction, so that
    /// a peer can end it if this node dies inside that transaction.
    pub(super) async fn record(&self, session: &ClientSession) -> mongodb::error::Result<()> {
        let lsid = session.id().clone();
        let key = match lsid.get("id") {
            Some(Bson::Binary(b)) => b.bytes.clone(),
            _ => lsid.to_string().into_bytes(),
        };
        if self
            .recorded
            .lock()
            .expect("recorded sessions")
            .contains(&key)
        {
            return Ok(());
        }
        // A pipeline update: one write sets the heartbeat too, so a recreated document is
        // never without `alive_ms` (a missing one compares as older than any time).
        let r = self
            .nodes
            .update_one(
                doc! {"_id": self.node_id.as_str()},
                vec![doc! {"$set": {
                    "alive_ms": {"$toLong": "$$NOW"},
                    "sessions": {"$setUnion": [
                        {"$ifNull": ["$sessions", []]},
                        [{"$literal": lsid}],
                    ]},
                }}],
            )
            .upsert(true)
            .await?;
        let mut recorded = self.recorded.lock().expect("recorded sessions");
        if r.upserted_id.is_some() {
            recorded.clear();
        }
        recorded.insert(key);
        Ok(())
    }

    /// Ends the sessions of nodes that stopped their heartbeats, unless this node looked less
    /// than [`RECLAIM_EVERY`] ago. Failures are logged: the write that asked keeps retrying.
    pub(super) async fn reclaim(&self) {
        {
            let mut last = self.last_reclaim.lock().expect("last reclaim");
            if last.is_some_and(|t| t.elapsed() < RECLAIM_EVERY) {
                return;
            }
            *last = Some(Instant::now());
        }
        if let Err(e) = self.reclaim_dead().await {
            tracing::warn!(error = %e, "store: could not end a dead node's transactions");
        }
    }

    async fn reclaim_dead(&self) -> mongodb::error::Result<()> {
        let mut dead_filter = heartbeat_stale();
        dead_filter.insert("_id", doc! {"$ne": self.node_id.as_str()});
        let dead: Vec<Document> = self.nodes.find(dead_filter).await?.try_collect().await?;
        for node in dead {
            let Some(id) = node.get("_id").cloned() else {
                continue;
            };
            let sessions = node.get_array("sessions").cloned().unwrap_or_default();
            if !sessions.is_empty() {
                self.admin
                    .run_command(doc! {"killSessions": sessions.clone()})
                    .await?;
            }
            // Only if it is still stale: a node that was merely slow keeps its document.
            let mut this_node = heartbeat_stale();
            this_node.insert("_id", id.clone());
            self.nodes.delete_one(this_node).await?;
            tracing::warn!(
                node = id.as_str().unwrap_or_default(),
                sessions = sessions.len(),
                "store: a node stopped its heartbeats; ended its sessions and open transactions"
            );
        }
        Ok(())
    }
}

/// The heartbeat loop: ends when the store (the last strong handle) is dropped. A failed
/// heartbeat is retried at the next tick; four in a row and the peers take this node for dead
/// (which costs it its open transactions, nothing else).
async fn heartbeats(orphans: Weak<Orphans>) {
    let mut tick = tokio::time::interval(HEARTBEAT);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(orphans) = orphans.upgrade() else {
            return;
        };
        if let Err(e) = orphans.beat().await {
            tracing::debug!(error = %e, "store: node heartbeat failed");
        }
    }
}
