//! Append-only rows that many callers write at once and that nothing else in their transaction
//! depends on — quotes, governance audit records. Each caller still returns only once its row is
//! durable, but the rows that arrive while one batch is being written go together into the next:
//! one transaction and one multi-row statement for all of them, instead of a transaction (and on
//! PostgreSQL an fsync, on SQLite a savepoint's round trips) each.
//!
//! There is no background task: the caller that finds no batch being written becomes the writer
//! and, in a task of its own (so its client going away interrupts nothing), writes batches until
//! the queue is empty.

use std::future::Future;
use std::sync::{Arc, Mutex};
use storefront_app::ports::{StoreError, StoreResult};
use storefront_domain::agent::AuditEvent;
use storefront_domain::quote::Quote;
use tokio::sync::oneshot;

/// Rows one statement writes at most (13 columns × 64 stays far below both databases' limits
/// on bound parameters), so a waiting caller's batch is bounded too.
pub(crate) const MAX_ROWS_PER_BATCH: usize = 64;

/// The queues of one store.
#[derive(Default)]
pub(crate) struct Appends {
    pub(crate) quotes: Arc<AppendQueue<Quote>>,
    pub(crate) audit: Arc<AppendQueue<AuditEvent>>,
}

pub(crate) struct AppendQueue<T> {
    pending: Mutex<Pending<T>>,
}

impl<T> Default for AppendQueue<T> {
    fn default() -> Self {
        Self {
            pending: Mutex::new(Pending {
                rows: Vec::new(),
                writing: false,
            }),
        }
    }
}

struct Pending<T> {
    rows: Vec<(T, oneshot::Sender<StoreResult<()>>)>,
    /// Whether a writer is at work (it takes what is queued when it finishes a batch).
    writing: bool,
}

impl<T> AppendQueue<T> {
    fn lock(&self) -> std::sync::MutexGuard<'_, Pending<T>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl<T: Clone + Send + Sync + 'static> AppendQueue<T> {
    /// Queues `row` and waits until it is durable. `write` writes a batch in one transaction;
    /// if a batch fails, each of its rows is written alone, so one bad row fails only itself.
    pub(crate) async fn append<W, F>(self: &Arc<Self>, row: T, write: W) -> StoreResult<()>
    where
        W: Fn(Arc<Vec<T>>) -> F + Send + Sync + 'static,
        F: Future<Output = StoreResult<()>> + Send + 'static,
    {
        let (tell, hear) = oneshot::channel();
        let lead = {
            let mut pending = self.lock();
            pending.rows.push((row, tell));
            !std::mem::replace(&mut pending.writing, true)
        };
        if lead {
            let queue = self.clone();
            tokio::spawn(async move { queue.write_all(write).await });
        }
        hear.await.unwrap_or_else(|_| {
            Err(StoreError::Backend(
                "the batch holding this row ended without an outcome".into(),
            ))
        })
    }

    async fn write_all<W, F>(&self, write: W)
    where
        W: Fn(Arc<Vec<T>>) -> F,
        F: Future<Output = StoreResult<()>>,
    {
        // Should the writer panic (or its task be dropped), the queue must not stay "being
        // written" forever: the guard fails what is queued and lets the next caller write.
        let mut writer = WriterGuard {
            queue: self,
            finished: false,
        };
        loop {
            let batch: Vec<_> = {
                let mut pending = self.lock();
                if pending.rows.is_empty() {
                    // Handed over under the lock: a caller queueing from here on becomes the
                    // next writer, and its row is none of this guard's business.
                    pending.writing = false;
                    writer.finished = true;
                    return;
                }
                let n = pending.rows.len().min(MAX_ROWS_PER_BATCH);
                pending.rows.drain(..n).collect()
            };
            let (rows, waiters): (Vec<T>, Vec<_>) = batch.into_iter().unzip();
            let rows = Arc::new(rows);
            metrics::counter!("storefront_append_batches_total").increment(1);
            metrics::counter!("storefront_append_rows_total").increment(rows.len() as u64);
            if write(rows.clone()).await.is_ok() {
                for waiter in waiters {
                    let _ = waiter.send(Ok(()));
                }
                continue;
            }
            for (row, waiter) in rows.iter().zip(waiters) {
                let _ = waiter.send(write(Arc::new(vec![row.clone()])).await);
            }
        }
    }
}

/// Ends a writer's turn that did not finish (a panic, its task dropped): what is queued is
/// answered with an error and the next caller writes. A writer that finished has already handed
/// the queue over, and may have a successor by the time this is dropped: it touches nothing.
/// (It once looked at `writing` instead, and so could clear the row of a caller that had just
/// become the next writer: that caller got "ended without an outcome".)
struct WriterGuard<'a, T> {
    queue: &'a AppendQueue<T>,
    finished: bool,
}

impl<T> Drop for WriterGuard<'_, T> {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let mut pending = self.queue.lock();
        // Dropping the senders answers the callers with an error.
        pending.rows.clear();
        pending.writing = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Written = std::pin::Pin<Box<dyn Future<Output = StoreResult<()>> + Send>>;

    /// A writer that records batch sizes and refuses any batch holding the row 13.
    fn recorder(
        batches: Arc<Mutex<Vec<usize>>>,
        gate: Arc<tokio::sync::Semaphore>,
    ) -> impl Fn(Arc<Vec<u32>>) -> Written + Send + Sync + 'static {
        move |rows: Arc<Vec<u32>>| {
            let batches = batches.clone();
            let gate = gate.clone();
            Box::pin(async move {
                let _permit = gate.acquire().await.expect("open");
                batches.lock().unwrap().push(rows.len());
                if rows.contains(&13) {
                    Err(StoreError::Backend("13 is refused".into()))
                } else {
                    Ok(())
                }
            })
        }
    }

    #[tokio::test]
    async fn rows_arriving_during_a_write_share_the_next_batch_and_a_bad_row_fails_alone() {
        let queue = Arc::new(AppendQueue::<u32>::default());
        let batches = Arc::new(Mutex::new(Vec::new()));
        // The first batch is held until the others have queued behind it.
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let first = {
            let (queue, write) = (queue.clone(), recorder(batches.clone(), gate.clone()));
            tokio::spawn(async move { queue.append(1, write).await })
        };
        // The writer has taken row 1 and waits at the gate.
        while !{
            let pending = queue.lock();
            pending.writing && pending.rows.is_empty()
        } {
            tokio::task::yield_now().await;
        }
        let mut later = Vec::new();
        for row in [2, 13, 4] {
            let (queue, write) = (queue.clone(), recorder(batches.clone(), gate.clone()));
            later.push(tokio::spawn(async move { queue.append(row, write).await }));
        }
        while queue.lock().rows.len() < 3 {
            tokio::task::yield_now().await;
        }
        gate.add_permits(100);
        assert!(first.await.unwrap().is_ok());
        let answers: Vec<_> = futures_join(later).await;
        assert!(answers[0].is_ok());
        assert!(answers[1].is_err(), "the refused row fails");
        assert!(answers[2].is_ok(), "its batch-mates still land");
        // One batch of 1, one of the three queued behind it (refused), then each alone.
        assert_eq!(*batches.lock().unwrap(), vec![1, 3, 1, 1, 1]);
        assert!(!queue.lock().writing);
    }

    #[tokio::test]
    async fn a_finished_writer_leaves_the_next_writers_row_alone() {
        let queue = Arc::new(AppendQueue::<u32>::default());
        let batches = Arc::new(Mutex::new(Vec::new()));
        let gate = Arc::new(tokio::sync::Semaphore::new(100));
        // A writer that has just handed the queue over (found it empty, marked it free) ...
        let finished = WriterGuard {
            queue: &*queue,
            finished: true,
        };
        // ... when a caller queues a row and becomes the next writer, before that writer's
        // guard is dropped.
        let (tell, mut hear) = oneshot::channel();
        {
            let mut pending = queue.lock();
            pending.rows.push((7, tell));
            pending.writing = true;
        }
        drop(finished);
        assert!(
            matches!(hear.try_recv(), Err(oneshot::error::TryRecvError::Empty)),
            "the row is still waiting for its writer, not failed"
        );
        queue
            .write_all(recorder(batches.clone(), gate.clone()))
            .await;
        assert!(hear.await.expect("an answer").is_ok());
        assert_eq!(*batches.lock().unwrap(), vec![1]);

        // A writer that did not finish (it panicked) fails what is queued and frees the queue.
        let (tell, hear) = oneshot::channel();
        {
            let mut pending = queue.lock();
            pending.rows.push((8, tell));
            pending.writing = true;
        }
        drop(WriterGuard {
            queue: &*queue,
            finished: false,
        });
        assert!(hear.await.is_err(), "its caller hears that the batch ended");
        assert!(!queue.lock().writing);
    }

    async fn futures_join(
        handles: Vec<tokio::task::JoinHandle<StoreResult<()>>>,
    ) -> Vec<StoreResult<()>> {
        let mut out = Vec::new();
        for h in handles {
            out.push(h.await.unwrap());
        }
        out
    }
}
