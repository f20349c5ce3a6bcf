//! The write path: one writer thread commits whatever is queued in one transaction (group
//! commit: one fsync for many sends), each job inside its own savepoint so a failing job does
//! not take its neighbours down — except a send, whose refusals all come before its first
//! change and which needs none; a job's answer is released only after COMMIT returned. Before
//! COMMIT, the messages the jobs inserted are added to the full-text index in one statement
//! (not one FTS5 segment per message). The WAL is checkpointed beside the writer, by a
//! checkpointer thread, not inside a COMMIT ([`Checkpointer`]). Reads run on a small pool of
//! read connections on the blocking thread pool.

use std::{
    cell::Cell,
    os::raw::c_int,
    sync::{
        atomic::{AtomicI32, Ordering},
        mpsc as std_mpsc, Arc,
    },
};

use prometheus_client::metrics::{counter::Counter, gauge::Gauge};
use rusqlite::{hooks::Wal, Connection};
use tokio::sync::{mpsc, oneshot};

use super::SqliteStore;
use crate::store::{StoreError, StoreResult};

const MAX_BATCH: usize = 512;

pub(super) type Completion = Box<dyn FnOnce(Result<(), StoreError>) + Send>;
pub(super) type WriteJob = Box<dyn FnOnce(&Connection) -> JobRan + Send>;

/// What running a job in the group's transaction left.
pub(super) struct JobRan {
    /// Answers the job's caller once the transaction's fate is known.
    completion: Completion,
    /// The job failed after changing something and nothing took the change back: the group's
    /// transaction holds half a job and must not commit.
    half_done: bool,
}

impl SqliteStore {
    /// Runs `f` in the writer's current transaction (inside a savepoint, so a job that fails
    /// half-way leaves nothing); answers after commit.
    pub(super) async fn write<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        self.queue_write(f, true).await
    }

    /// [`SqliteStore::write`] without the savepoint, for a job whose every refusal is found
    /// before its first change (a send: [`super::writes::append_message`]). The savepoint's
    /// statement journal copied every page a job touched a first time (~10 % of the writer's
    /// CPU under ingest, docs/benchmarks.md). Should such a job still fail after a change (an
    /// I/O error), the whole group commit is rolled back and every caller in it told so.
    pub(super) async fn write_checked_first<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        self.queue_write(f, false).await
    }

    async fn queue_write<T, F>(&self, f: F, savepoint: bool) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel::<StoreResult<T>>();
        let job: WriteJob = Box::new(move |conn: &Connection| {
            let (result, half_done) = if savepoint {
                (in_savepoint(conn, f), false)
            } else {
                let before = conn.total_changes();
                let result = f(conn);
                let half_done = result.is_err() && conn.total_changes() != before;
                (result, half_done)
            };
            JobRan {
                completion: Box::new(move |committed: Result<(), StoreError>| {
                    let _ = tx.send(committed.and(result));
                }),
                half_done,
            }
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

pub(super) fn writer_loop(
    conn: Connection,
    mut rx: mpsc::UnboundedReceiver<WriteJob>,
    mut checkpointer: Checkpointer,
) {
    checkpointer.take_over_from_commits(&conn);
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
        let mut completions: Vec<Completion> = Vec::with_capacity(batch.len());
        let mut spoiled = None;
        for job in batch {
            if spoiled.is_some() {
                // Not run: dropping it answers its caller with `Unavailable`.
                continue;
            }
            let ran = job(&conn);
            completions.push(ran.completion);
            if ran.half_done {
                spoiled = Some("a write failed half-way");
            } else if conn.is_autocommit() {
                // SQLite rolled the transaction back itself (some I/O errors do): what ran
                // before is gone, and what runs next would commit statement by statement.
                spoiled = Some("the transaction was rolled back by SQLite");
            }
        }
        let committed = match spoiled {
            None => {
                index_new_messages(&conn);
                conn.prepare_cached("COMMIT")
                    .and_then(|mut s| s.execute([]))
                    .map(drop)
                    .map_err(StoreError::from)
            }
            Some(why) => {
                tracing::error!(
                    jobs = completions.len(),
                    why,
                    "store: group commit rolled back"
                );
                Err(StoreError::Unavailable(format!(
                    "the write was rolled back with its group commit: {why}"
                )))
            }
        };
        if committed.is_err() && !conn.is_autocommit() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        let log_pages = checkpointer.note_commit(committed.is_ok(), completions.len());
        for c in completions {
            c(committed.clone());
        }
        // After the answers: a checkpoint the writer runs itself delays only the next commit.
        checkpointer.after_commit(&conn, log_pages);
    }
}

/// When the WAL is checkpointed (its pages copied into the database file, so that the log can
/// start again from its beginning).
#[derive(Clone, Copy, Debug)]
pub(super) struct CheckpointPolicy {
    /// WAL pages after a commit at which the checkpointer thread is woken.
    pub background_pages: i32,
    /// WAL pages at which the writer checkpoints itself, after answering its group commit.
    pub inline_pages: i32,
}

impl Default for CheckpointPolicy {
    fn default() -> Self {
        CheckpointPolicy {
            // SQLite's own auto-checkpoint threshold.
            background_pages: 1000,
            // ~40 MB of log at 4 KiB pages: replayed in well under a second on open.
            inline_pages: 10_000,
        }
    }
}

/// What the writer and the checkpointer report: the group commits (`/metrics`, through
/// [`super::SqliteStore`]'s `register_metrics`) and the log (the tests below wait on it).
#[derive(Debug, Default)]
pub(super) struct WriterStats {
    /// Group commits, and the writes (jobs) they held: divided, the size of a group.
    pub commits: Counter,
    pub committed_writes: Counter,
    /// Pages in the WAL after the writer's last commit.
    pub wal_pages: Gauge,
    /// Checkpoints run by the checkpointer thread, and by the writer itself.
    pub background: Counter,
    pub inline: Counter,
    /// The pages of the log the last background checkpoint found, and how many it had copied.
    pub background_log: AtomicI32,
    pub background_copied: AtomicI32,
}

thread_local! {
    /// Pages in the WAL after this thread's last commit, set by SQLite's WAL hook (a plain
    /// `fn` without state of its own; each store's writer is a thread of its own).
    static WAL_PAGES: Cell<i32> = const { Cell::new(0) };
}

fn note_wal_pages(_: &Wal, pages: c_int) -> rusqlite::Result<()> {
    WAL_PAGES.with(|p| p.set(pages));
    Ok(())
}

/// Checkpoints the WAL on a thread of its own, with its own connection. SQLite's
/// auto-checkpoint runs inside the COMMIT that takes the log past 1,000 pages, on the writer
/// thread, so every send of that group commit waited for the copy and the database file's
/// fsync: 15 % of the writer's CPU in a profile under ingest (docs/benchmarks.md, "The WAL
/// checkpoint beside the writer"). A checkpoint beside the writer does not block it (WAL lets
/// both run). But SQLite starts the log again from its beginning only when a write transaction
/// begins on a fully checkpointed log, and under unbroken load the writer has always appended
/// more by the time a checkpoint beside it ends; so at [`CheckpointPolicy::inline_pages`] the
/// writer finishes the copy itself (what is left since the last background checkpoint) before
/// its next transaction.
pub(super) struct Checkpointer {
    wake: std_mpsc::SyncSender<()>,
    policy: CheckpointPolicy,
    stats: Arc<WriterStats>,
    /// The log's pages when the checkpointer was last woken (0 once the log started again).
    woken_at: i32,
}

impl Checkpointer {
    /// Starts the checkpointer thread on `conn` (a read-write connection of its own).
    pub(super) fn start(
        conn: Connection,
        policy: CheckpointPolicy,
        stats: Arc<WriterStats>,
    ) -> std::io::Result<Checkpointer> {
        // One pending wake at most: wakes while a checkpoint runs fold into one more run.
        let (wake, woken) = std_mpsc::sync_channel::<()>(1);
        let thread_stats = stats.clone();
        std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || {
                // Ends when the writer (the only sender) is gone.
                while woken.recv().is_ok() {
                    match checkpoint(&conn) {
                        Ok((log, copied)) => {
                            thread_stats.background_log.store(log, Ordering::Relaxed);
                            thread_stats.background_copied.store(copied, Ordering::Relaxed);
                            thread_stats.background.inc();
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "store: background WAL checkpoint failed; the writer checkpoints at its bound");
                        }
                    }
                }
            })?;
        Ok(Checkpointer {
            wake,
            policy,
            stats,
            woken_at: 0,
        })
    }

    /// Turns off SQLite's checkpoint inside COMMIT on the writer's connection and has the WAL
    /// hook report the log's size instead (the pragma installs a hook of its own, so this order).
    fn take_over_from_commits(&self, conn: &Connection) {
        if let Err(e) = conn.pragma_update(None, "wal_autocheckpoint", 0) {
            tracing::warn!(error = %e, "store: cannot turn off checkpoints inside COMMIT");
        }
        conn.wal_hook(Some(note_wal_pages));
    }

    /// Counts the group commit that just returned (if it `committed`, with `writes` jobs) and
    /// returns the log's pages.
    fn note_commit(&mut self, committed: bool, writes: usize) -> i32 {
        if committed {
            self.stats.commits.inc();
            self.stats.committed_writes.inc_by(writes as u64);
        }
        let pages = WAL_PAGES.with(Cell::get);
        let before = self.stats.wal_pages.set(i64::from(pages));
        if i64::from(pages) < before {
            // The log started again from its beginning.
            self.woken_at = 0;
        }
        pages
    }

    fn after_commit(&mut self, conn: &Connection, pages: i32) {
        if pages >= self.policy.inline_pages {
            match checkpoint(conn) {
                Ok(_) => {
                    self.stats.inline.inc();
                }
                Err(e) => tracing::warn!(error = %e, "store: WAL checkpoint failed"),
            }
        } else if pages - self.woken_at >= self.policy.background_pages {
            // Once per `background_pages` new pages, as SQLite's auto-checkpoint would: each run
            // copies a page once however often it was rewritten since the last, and ends with
            // one fsync of the database file.
            self.woken_at = pages;
            let _ = self.wake.try_send(());
        }
    }
}

/// One PASSIVE checkpoint (copies what no reader still needs from the log, waits for no one);
/// returns the log's pages and how many of them are now in the database file.
fn checkpoint(conn: &Connection) -> rusqlite::Result<(i32, i32)> {
    conn.prepare_cached("PRAGMA wal_checkpoint(PASSIVE)")?
        .query_row([], |r| Ok((r.get(1)?, r.get(2)?)))
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

#[cfg(test)]
mod tests {
    //! The log stays bounded: the checkpointer thread's copy lets the writer start the log again,
    //! and under writes that never pause the writer checkpoints itself at its bound. A job
    //! without a savepoint that fails half-way takes its group commit down with it, and nothing
    //! of that group is committed.

    use std::sync::atomic::Ordering::Relaxed;

    use super::{CheckpointPolicy, WriterStats};
    use crate::model::{new_id, now};
    use crate::store::{sqlite::SqliteStore, NewUser, Store, StoreError};

    /// One commit that adds a page or two to the log: a user row of ~3 KB.
    async fn write_one(store: &SqliteStore) {
        let id: String = new_id();
        store
            .create_user(NewUser {
                username: format!("u{id}"),
                id: id.into(),
                display_name: "x".repeat(3000),
                password_hash: String::new(),
                created_at: now(),
            })
            .await
            .unwrap();
    }

    /// Waits until `cond`; the minute is only there to turn a hang into a failure.
    async fn until(stats: &WriterStats, cond: impl Fn(&WriterStats) -> bool) {
        let waiting = async {
            while !cond(stats) {
                tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            }
        };
        tokio::time::timeout(std::time::Duration::from_secs(60), waiting)
            .await
            .unwrap_or_else(|_| panic!("still waiting after a minute: {stats:?}"));
    }

    #[tokio::test]
    async fn the_log_starts_again_once_the_checkpointer_thread_copied_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chat.db");
        let policy = CheckpointPolicy {
            background_pages: 8,
            inline_pages: i32::MAX,
        };
        let store = SqliteStore::open_with(&path, policy).unwrap();
        let stats = store.stats.clone();
        // Each write is one commit; the commit that takes the log to the
        // threshold wakes the checkpointer thread, and no write follows it...
        while stats.wal_pages.get() < i64::from(policy.background_pages) {
            write_one(&store).await;
        }
        let pages = stats.wal_pages.get();
        // ...so that thread copies the whole log as that commit left it.
        until(&stats, |s| {
            s.background.get() == 1
                && i64::from(s.background_log.load(Relaxed)) == pages
                && i64::from(s.background_copied.load(Relaxed)) == pages
        })
        .await;
        // ...the next commit starts the log from its beginning.
        write_one(&store).await;
        let after = stats.wal_pages.get();
        assert!(
            after < pages,
            "the log went on from {pages} to {after} pages"
        );
        assert_eq!(stats.inline.get(), 0, "the writer did not checkpoint");
    }

    #[tokio::test]
    async fn under_writes_that_never_pause_the_writer_checkpoints_at_its_bound() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chat.db");
        let policy = CheckpointPolicy {
            // The checkpointer thread is never woken: only the writer's own bound holds the log.
            background_pages: i32::MAX,
            inline_pages: 16,
        };
        let store = SqliteStore::open_with(&path, policy).unwrap();
        let stats = store.stats.clone();
        let wal_file = || {
            std::fs::metadata(dir.path().join("chat.db-wal"))
                .unwrap()
                .len()
        };
        // The log the migrations left is as long as it is; from the writer's first restart on,
        // the bound holds it.
        let (mut previous, mut restarts, mut most, mut file_after_restart) = (0, 0, 0, 0);
        // The most pages one commit added to the log.
        let mut step = 0;
        for _ in 0..200 {
            write_one(&store).await;
            let pages = stats.wal_pages.get();
            if pages < previous {
                restarts += 1;
                if restarts == 1 {
                    file_after_restart = wal_file();
                }
            } else {
                step = step.max(pages - previous);
            }
            if restarts > 0 {
                most = most.max(pages);
            }
            previous = pages;
        }
        assert!(restarts >= 2, "the log restarted {restarts} times");
        // Below the bound plus one commit's pages (the commit that crosses it is the last one
        // before the log restarts).
        assert!(
            most < i64::from(policy.inline_pages) + step,
            "the log reached {most} pages (one commit adds at most {step})"
        );
        assert!(stats.inline.get() >= 1);
        assert_eq!(stats.background.get(), 0);
        // One write awaited at a time: 200 group commits of one write each.
        assert_eq!(
            (stats.commits.get(), stats.committed_writes.get()),
            (200, 200)
        );
        // On disk too: the file is overwritten from its start, not grown.
        assert_eq!(
            wal_file(),
            file_after_restart,
            "the WAL file grew after the log restarted"
        );
    }

    fn probe_rows(path: &std::path::Path) -> i64 {
        let conn = rusqlite::Connection::open(path).unwrap();
        conn.query_row("SELECT COUNT(*) FROM write_probe", [], |r| r.get(0))
            .unwrap()
    }

    #[tokio::test]
    async fn a_job_without_savepoint_that_fails_half_way_rolls_its_group_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chat.db");
        let store = std::sync::Arc::new(SqliteStore::open(&path).unwrap());
        // Hold the writer in a first group, so that the next two jobs queue into one group.
        // The test's runtime has one thread: a spawned task runs (up to its wait for the
        // writer's answer, its job queued) when this one yields.
        let (release, held) = std::sync::mpsc::channel::<()>();
        let (started, running) = tokio::sync::oneshot::channel::<()>();
        let holder = {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .write(move |_| {
                        let _ = started.send(());
                        held.recv().unwrap();
                        Ok(())
                    })
                    .await
            })
        };
        running.await.unwrap();
        let half = {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .write_checked_first(|c| {
                        c.execute("INSERT INTO write_probe (id, at) VALUES (1, 1)", [])?;
                        Err::<(), _>(StoreError::Internal("failed after a change".into()))
                    })
                    .await
            })
        };
        tokio::task::yield_now().await;
        let neighbour = {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .write(|c| {
                        c.execute("INSERT INTO write_probe (id, at) VALUES (1, 2)", [])?;
                        Ok(())
                    })
                    .await
            })
        };
        tokio::task::yield_now().await;
        // Both queued, in this order, while the writer was held: one group.
        release.send(()).unwrap();
        holder.await.unwrap().unwrap();
        let half = half.await.unwrap();
        let neighbour = neighbour.await.unwrap();
        assert!(matches!(half, Err(StoreError::Unavailable(_))), "{half:?}");
        assert!(
            matches!(neighbour, Err(StoreError::Unavailable(_))),
            "{neighbour:?}"
        );
        assert_eq!(
            probe_rows(&path),
            0,
            "nothing of the spoiled group was committed"
        );

        // The writer goes on: a refusal before any change spoils nothing.
        let refused = store
            .write_checked_first(|_| Err::<(), _>(StoreError::NotMember))
            .await;
        assert!(matches!(refused, Err(StoreError::NotMember)), "{refused:?}");
        store
            .write(|c| {
                c.execute("INSERT INTO write_probe (id, at) VALUES (1, 3)", [])?;
                Ok(())
            })
            .await
            .unwrap();
        assert_eq!(probe_rows(&path), 1);
    }
}
