//! WAL checkpoints off the writer's path.
//!
//! A commit appends pages to the WAL; a checkpoint copies them back into the database file and
//! fsyncs it. SQLite's own (automatic) checkpoint runs inside the commit that crosses 1,000 WAL
//! pages, on the one write connection: every writer queued behind it waits while the database
//! file is written and synced, and the more accounts a batch touches, the more distinct pages
//! that copy writes. Here a connection of its own checkpoints instead, in the background, soon
//! after commits: `PASSIVE`, so it never waits for the writer or for a reader, and copies only
//! what no reader's snapshot still needs.
//!
//! Durability is untouched: a commit is durable once its WAL pages are synced, before any
//! checkpoint. The writer's automatic checkpoint stays, at a higher mark
//! ([`WRITER_AUTOCHECKPOINT_PAGES`]): it lets the WAL start over, and it is the backstop should
//! this one ever fall behind or fail.

use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{ConnectOptions as _, Connection as _};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// The writer's own automatic checkpoint, in WAL pages (SQLite's default is 1,000), counted from
/// the WAL's start, copied or not. Under a steady stream of batches the WAL is never wholly copied
/// when a write begins, so it does not start over until it reaches this mark (about 40 MB with
/// 4 KiB pages): then the writer's checkpoint finds all but the last few pages copied, completes
/// the copy, and the next write restarts the WAL. Should the background checkpoints fall
/// behind or fail, it does the whole copy, as SQLite would by itself.
pub(super) const WRITER_AUTOCHECKPOINT_PAGES: u32 = 10_000;

/// Least time between two checkpoints while commits keep coming, so that they sync the database
/// file at most 50 times a second. Measured (docs/benchmarks.md, "twelfth steps"): checkpoints
/// 20 ms apart or back to back served credit orders alike; 200 ms apart left each checkpoint
/// hundreds of orders' pages to copy and raised the writes' p99 by half, as the copy's larger
/// syncs held up the commits' own.
const PAUSE: Duration = Duration::from_millis(20);

/// The background checkpointer of one database; it stops when this is dropped.
pub(super) struct Checkpointer {
    /// Wakes the checkpointer: one pending wake-up is enough, however many commits sent it.
    wake: mpsc::Sender<()>,
    /// Commits so far, counted before each wake-up.
    commits: Arc<AtomicU64>,
    /// How many of those commits a finished checkpoint had copied into the database file.
    #[cfg(test)]
    copied: watch::Receiver<u64>,
}

impl Checkpointer {
    /// Opens the checkpointer's connection (read-write: it writes the database file) and starts
    /// it.
    pub(super) async fn start(options: &SqliteConnectOptions) -> Result<Self, sqlx::Error> {
        let conn = options
            .clone()
            .thread_name(|id| format!("sqlite-checkpoint-{id}"))
            .connect()
            .await?;
        let (wake, woken) = mpsc::channel(1);
        let commits = Arc::new(AtomicU64::new(0));
        let (copied_tx, _copied) = watch::channel(0);
        tokio::spawn(run(conn, woken, commits.clone(), copied_tx));
        Ok(Self {
            wake,
            commits,
            #[cfg(test)]
            copied: _copied,
        })
    }

    /// Tells the checkpointer that a commit is durable in the WAL.
    pub(super) fn committed(&self) {
        self.commits.fetch_add(1, Ordering::SeqCst);
        // When full, a wake-up is pending already, and the checkpoint it starts runs after this
        // commit: it covers it too.
        let _ = self.wake.try_send(());
    }

    /// Waits until every commit so far is in the database file, copied by a checkpoint.
    #[cfg(test)]
    pub(super) async fn caught_up(&self) {
        let commits = self.commits.load(Ordering::SeqCst);
        let mut copied = self.copied.clone();
        let _ = copied.wait_for(|&done| done >= commits).await;
    }
}

/// The checkpointer's loop: a checkpoint after commits, at most one per [`PAUSE`]; it ends when
/// the store is dropped (the wake-ups' sender with it).
async fn run(
    mut conn: SqliteConnection,
    mut woken: mpsc::Receiver<()>,
    commits: Arc<AtomicU64>,
    copied: watch::Sender<u64>,
) {
    let mut failing = false;
    while woken.recv().await.is_some() {
        // Every commit counted now is durable in the WAL: the checkpoint below starts after it.
        let covered = commits.load(Ordering::SeqCst);
        match checkpoint(&mut conn).await {
            // Another process (an `admin` command) was checkpointing: the next one catches up.
            Ok(Checkpoint::Busy) => {}
            Ok(Checkpoint::Done {
                wal_pages,
                copied_pages,
            }) => {
                if failing {
                    tracing::info!("WAL checkpoints succeed again");
                    failing = false;
                }
                metrics::counter!("storefront_sqlite_checkpoints_total").increment(1);
                metrics::gauge!("storefront_sqlite_wal_pages_behind")
                    .set((wal_pages - copied_pages) as f64);
                // A reader's snapshot can hold pages back; a later checkpoint copies them.
                if copied_pages == wal_pages {
                    copied.send_replace(covered);
                }
            }
            Err(e) => {
                // The writer's own checkpoint is the backstop: say so once, not per attempt.
                if !failing {
                    tracing::warn!(error = %e, "a WAL checkpoint failed; the writer checkpoints by itself meanwhile");
                    failing = true;
                }
            }
        }
        tokio::time::sleep(PAUSE).await;
    }
    let _ = conn.close().await;
}

/// What a passive checkpoint did.
enum Checkpoint {
    /// Another connection was checkpointing; nothing was copied.
    Busy,
    /// The WAL's pages, and how many of them are in the database file now.
    Done { wal_pages: i64, copied_pages: i64 },
}

async fn checkpoint(conn: &mut SqliteConnection) -> Result<Checkpoint, sqlx::Error> {
    let (busy, wal_pages, copied_pages): (i64, i64, i64) =
        sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)")
            .fetch_one(&mut *conn)
            .await?;
    Ok(if busy != 0 {
        Checkpoint::Busy
    } else {
        Checkpoint::Done {
            wal_pages,
            copied_pages,
        }
    })
}
