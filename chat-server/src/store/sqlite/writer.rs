//! The write path: one writer thread commits whatever is queued in one transaction (group
//! commit: one fsync for many sends), each job inside its own savepoint so a failing job does
//! not take its neighbours down; a job's answer is released only after COMMIT returned. Before
//! COMMIT, the messages the jobs inserted are added to the full-text index in one statement
//! (not one FTS5 segment per message). Reads run on a small pool of read connections on the
//! blocking thread pool.

use std::sync::atomic::Ordering;

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use super::SqliteStore;
use crate::store::{StoreError, StoreResult};

const MAX_BATCH: usize = 512;

pub(super) type Completion = Box<dyn FnOnce(Result<(), StoreError>) + Send>;
pub(super) type WriteJob = Box<dyn FnOnce(&Connection) -> Completion + Send>;

impl SqliteStore {
    /// Runs `f` in the writer's current transaction (inside a savepoint); answers after commit.
    pub(super) async fn write<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel::<StoreResult<T>>();
        let job: WriteJob = Box::new(move |conn: &Connection| {
            let result = in_savepoint(conn, f);
            Box::new(move |committed: Result<(), StoreError>| {
                let _ = tx.send(committed.and(result));
            })
        });
        self.writer
            .send(job)
            .map_err(|_| StoreError::Unavailable("writer thread stopped".into()))?;
        rx.await
            .map_err(|_| StoreError::Unavailable("the write could not be committed".into()))?
    }

    pub(super) async fn read<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        let readers = self.readers.clone();
        let i = self.next_reader.fetch_add(1, Ordering::Relaxed) % readers.len();
        tokio::task::spawn_blocking(move || {
            let conn = readers[i]
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            f(&conn)
        })
        .await
        .map_err(super::rows::internal)?
    }
}

fn in_savepoint<T>(
    conn: &Connection,
    f: impl FnOnce(&Connection) -> StoreResult<T>,
) -> StoreResult<T> {
    // Cached statements: every job pays these, so they are not parsed again each time.
    conn.prepare_cached("SAVEPOINT job")?.execute([])?;
    match f(conn) {
        Ok(v) => {
            conn.prepare_cached("RELEASE job")?.execute([])?;
            Ok(v)
        }
        Err(e) => {
            conn.prepare_cached("ROLLBACK TO job")?.execute([])?;
            conn.prepare_cached("RELEASE job")?.execute([])?;
            Err(e)
        }
    }
}

pub(super) fn writer_loop(conn: Connection, mut rx: mpsc::UnboundedReceiver<WriteJob>) {
    while let Some(first) = rx.blocking_recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        if let Err(e) = conn
            .prepare_cached("BEGIN IMMEDIATE")
            .and_then(|mut s| s.execute([]))
        {
            // Nothing ran; dropping the jobs answers every caller with `Unavailable`.
            tracing::error!(error = %e, jobs = batch.len(), "store: cannot begin a write transaction");
            drop(batch);
            continue;
        }
        let completions: Vec<Completion> = batch.into_iter().map(|job| job(&conn)).collect();
        index_new_messages(&conn);
        let committed = conn
            .prepare_cached("COMMIT")
            .and_then(|mut s| s.execute([]))
            .map(drop)
            .map_err(StoreError::from);
        if committed.is_err() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        for c in completions {
            c(committed.clone());
        }
    }
}

/// Adds the messages this transaction inserted to the full-text index, in one statement: one
/// FTS5 segment per group commit instead of one per message (see the migration in
/// [`super::schema`]). It runs before COMMIT, so what is acknowledged is searchable. If it
/// fails, only the indexing is taken back: the sends still commit, and the next group commit
/// indexes them (nothing moves the mark past an unindexed row).
fn index_new_messages(conn: &Connection) {
    let indexed = (|| -> rusqlite::Result<()> {
        conn.prepare_cached("SAVEPOINT fts")?.execute([])?;
        let run = (|| -> rusqlite::Result<()> {
            let upto: i64 = conn
                .prepare_cached("SELECT upto FROM fts_indexed")?
                .query_row([], |r| r.get(0))?;
            let newest: Option<i64> = conn
                .prepare_cached("SELECT MAX(rowid) FROM messages")?
                .query_row([], |r| r.get(0))?;
            let Some(newest) = newest.filter(|&n| n > upto) else {
                return Ok(());
            };
            conn.prepare_cached(
                "INSERT INTO messages_fts (rowid, text)
                 SELECT rowid, text FROM messages WHERE rowid > ?1 AND rowid <= ?2",
            )?
            .execute([upto, newest])?;
            conn.prepare_cached("UPDATE fts_indexed SET upto = ?1")?
                .execute([newest])?;
            Ok(())
        })();
        if run.is_err() {
            conn.prepare_cached("ROLLBACK TO fts")?.execute([])?;
        }
        conn.prepare_cached("RELEASE fts")?.execute([])?;
        run
    })();
    if let Err(e) = indexed {
        tracing::error!(error = %e, "store: cannot index new messages for search; retrying at the next commit");
    }
}
