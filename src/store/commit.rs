//! Group commit: many writers' transactions made durable by one commit.
//!
//! Every message writes the store a few times (its ingress claim, its answer, the inbox and
//! egress rows of a chat reply), and each commit is an `fsync` of the SQLite journal. Done one
//! at a time, those fsyncs and the handoffs around them bound the gateway's throughput, not the
//! work itself. [`Store::write`] therefore hands a write to one *committer* task, which runs
//! every write queued at that moment inside one `BEGIN IMMEDIATE … COMMIT` — a write of several
//! statements in its own `SAVEPOINT`, so a write that fails is rolled back alone and the others
//! stay — and answers their callers only once the shared `COMMIT` has returned. Durability is unchanged: no caller hears
//! "done" before its rows are on disk, and a failed commit fails every write in it. Latency is
//! unchanged when the store is idle (a batch of one commits at once; the committer never waits
//! to fill a batch) and under load one fsync serves everything that queued while the previous
//! one ran.
//!
//! Inside a batch the writes run one after another on one connection, so each sees the ones
//! before it, exactly as if they had committed in that order: a second claim of a key in the
//! same batch sees the first and is `Busy`.
//!
//! On PostgreSQL a write is simply its own transaction on the pool: the server already merges
//! the WAL flushes of concurrent commits (its own group commit), and several connections write
//! in parallel.

use futures_util::future::BoxFuture;
use sqlx::{AnyConnection, AnyPool, Executor};
use tokio::sync::{mpsc, oneshot};

use super::{Backend, Store, db_err};
use crate::error::{Error, Result};

/// Most writes one commit carries. A bound keeps a huge queue from building one transaction
/// that holds the write lock for long (other processes sharing the file wait for it).
const MAX_BATCH: usize = 256;

/// How many writes may wait for the committer before callers wait to queue.
const QUEUE: usize = 4_096;

/// A write waiting for the committer (type-erased over its result).
trait Job: Send {
    /// Runs the write on `conn`, inside the batch's transaction. Returns whether it succeeded
    /// (a failed write is rolled back to its savepoint) and what to tell its caller once the
    /// batch's commit is known.
    fn run<'c>(self: Box<Self>, conn: &'c mut AnyConnection) -> BoxFuture<'c, Settle>;
    /// Fails the write without running it (the batch could not start).
    fn abort(self: Box<Self>, why: String);
    /// Whether the write needs a savepoint: it runs several statements that must stand or
    /// fall together. A write of independent statements (each atomic, and a failed one
    /// changes nothing) runs without one, two statements fewer.
    fn savepoint(&self) -> bool;
}

/// A write that ran: whether it succeeded, and the answer to its caller given the commit's
/// outcome (`None` committed, `Some(why)` failed).
struct Settle {
    ok: bool,
    answer: Answer,
}

/// Tells a write's caller how it ended, given the commit's failure (`None`: committed).
type Answer = Box<dyn FnOnce(Option<&str>) + Send>;

struct Pending<T, F> {
    write: F,
    reply: oneshot::Sender<Result<T>>,
    savepoint: bool,
}

impl<T, F> Job for Pending<T, F>
where
    T: Send + 'static,
    F: for<'c> FnOnce(&'c mut AnyConnection) -> BoxFuture<'c, Result<T>> + Send + 'static,
{
    fn run<'c>(self: Box<Self>, conn: &'c mut AnyConnection) -> BoxFuture<'c, Settle> {
        let Pending { write, reply, .. } = *self;
        Box::pin(async move {
            let result = write(conn).await;
            let ok = result.is_ok();
            let answer: Answer = Box::new(move |failed: Option<&str>| {
                let result = match (failed, result) {
                    (None, result) | (Some(_), result @ Err(_)) => result,
                    (Some(why), Ok(_)) => Err(commit_failed(why)),
                };
                // The caller may have gone away (its request was cancelled); the write stands.
                let _ = reply.send(result);
            });
            Settle { ok, answer }
        })
    }

    fn abort(self: Box<Self>, why: String) {
        let _ = self.reply.send(Err(commit_failed(&why)));
    }

    fn savepoint(&self) -> bool {
        self.savepoint
    }
}

fn commit_failed(why: &str) -> Error {
    Error::Upstream(format!("store: writing failed: {why}"))
}

/// The queue to the committer task (SQLite only).
#[derive(Debug, Clone)]
pub(super) struct Committer {
    queue: mpsc::Sender<Box<dyn Job>>,
}

impl Committer {
    /// Starts the committer task over `writer` (a pool of one connection, see [`Store`]). The
    /// task ends when the last [`Committer`] (the last clone of the store) is dropped.
    pub(super) fn start(writer: AnyPool) -> Self {
        let (queue, jobs) = mpsc::channel(QUEUE);
        tokio::spawn(run(writer, jobs));
        Self { queue }
    }
}

async fn run(writer: AnyPool, mut jobs: mpsc::Receiver<Box<dyn Job>>) {
    let mut batch: Vec<Box<dyn Job>> = Vec::with_capacity(MAX_BATCH);
    while jobs.recv_many(&mut batch, MAX_BATCH).await > 0 {
        commit_batch(&writer, &mut batch).await;
        batch.clear();
    }
}

/// Runs `batch` in one transaction and answers every write in it.
async fn commit_batch(writer: &AnyPool, batch: &mut Vec<Box<dyn Job>>) {
    let mut conn = match writer.acquire().await {
        Ok(conn) => conn,
        Err(e) => return abort_all(batch, &e.to_string()),
    };
    if let Err(e) = conn.execute("BEGIN IMMEDIATE").await {
        return abort_all(batch, &e.to_string());
    }
    let mut settled = Vec::with_capacity(batch.len());
    let mut broken = None;
    for job in batch.drain(..) {
        if let Some(why) = &broken {
            job.abort(format!(
                "an earlier write of its batch broke the transaction: {why}"
            ));
            continue;
        }
        let savepoint = job.savepoint();
        if savepoint && let Err(e) = conn.execute("SAVEPOINT w").await {
            broken = Some(e.to_string());
            job.abort(e.to_string());
            continue;
        }
        let done = job.run(&mut conn).await;
        let end = match (savepoint, done.ok) {
            (true, true) => conn.execute("RELEASE w").await.map(drop),
            (true, false) => match conn.execute("ROLLBACK TO w").await {
                Ok(_) => conn.execute("RELEASE w").await.map(drop),
                Err(e) => Err(e),
            },
            (false, true) => Ok(()),
            // A failed statement changes nothing by itself, but a few errors (I/O, a full
            // disk) make SQLite roll the whole transaction back: then `BEGIN` succeeds, and
            // the writes before this one are gone, so the batch fails.
            (false, false) => match conn.execute("BEGIN IMMEDIATE").await {
                Ok(_) => Err(sqlx::Error::Protocol(
                    "SQLite rolled the transaction back after an error".into(),
                )),
                Err(_) => Ok(()),
            },
        };
        if let Err(e) = end {
            broken = Some(e.to_string());
        }
        settled.push(done);
    }
    let outcome = match broken {
        Some(why) => {
            rollback(&mut conn).await;
            Some(why)
        }
        None => match conn.execute("COMMIT").await {
            Ok(_) => None,
            Err(e) => {
                rollback(&mut conn).await;
                Some(e.to_string())
            }
        },
    };
    drop(conn);
    for done in settled {
        (done.answer)(outcome.as_deref());
    }
}

/// Rolls back the batch; a connection that cannot is closed rather than handed back to the
/// pool in the middle of a transaction.
async fn rollback(conn: &mut sqlx::pool::PoolConnection<sqlx::Any>) {
    if let Err(e) = conn.execute("ROLLBACK").await {
        tracing::warn!(error = %e, "rolling back a batch of writes failed; reconnecting");
        conn.close_on_drop();
    }
}

fn abort_all(batch: &mut Vec<Box<dyn Job>>, why: &str) {
    for job in batch.drain(..) {
        job.abort(why.to_string());
    }
}

impl Store {
    /// Runs `write` in a transaction and returns its result once that is committed (see the
    /// module docs: on SQLite, writes queued together share one commit). An `Err` from
    /// `write` rolls back what it wrote, and only that.
    ///
    /// `write` gets a connection inside the transaction; it must not use the store's pools
    /// (on SQLite that would wait for the connection it is holding).
    pub(super) async fn write<T, F>(&self, op: &'static str, write: F) -> Result<T>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut AnyConnection) -> BoxFuture<'c, Result<T>> + Send + 'static,
    {
        self.run_write(op, write, true).await
    }

    /// Like [`Store::write`], for writes whose statements are each atomic on their own and
    /// correct under concurrency without a transaction around them (a single statement, or a
    /// conditional `INSERT`/`UPDATE` that re-checks what it read), and that write nothing
    /// before a statement that fails: on PostgreSQL they run without `BEGIN`/`COMMIT`, on
    /// SQLite they join the group commit without a savepoint, two statements fewer either way.
    pub(super) async fn write_statements<T, F>(&self, op: &'static str, write: F) -> Result<T>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut AnyConnection) -> BoxFuture<'c, Result<T>> + Send + 'static,
    {
        self.run_write(op, write, false).await
    }

    async fn run_write<T, F>(&self, op: &'static str, write: F, transaction: bool) -> Result<T>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut AnyConnection) -> BoxFuture<'c, Result<T>> + Send + 'static,
    {
        match (&self.committer, self.backend) {
            (Some(committer), Backend::Sqlite) => {
                let (reply, answer) = oneshot::channel();
                committer
                    .queue
                    .send(Box::new(Pending {
                        write,
                        reply,
                        savepoint: transaction,
                    }))
                    .await
                    .map_err(|_| {
                        Error::Upstream(format!("store: {op} failed: the store is closed"))
                    })?;
                answer.await.map_err(|_| {
                    Error::Upstream(format!("store: {op} failed: the store's writer stopped"))
                })?
            }
            _ if !transaction => {
                let mut conn = self.writer.acquire().await.map_err(db_err(op))?;
                write(&mut conn).await
            }
            _ => {
                let mut tx = self.writer.begin().await.map_err(db_err(op))?;
                match write(&mut tx).await {
                    Ok(value) => {
                        tx.commit().await.map_err(db_err(op))?;
                        Ok(value)
                    }
                    Err(e) => {
                        if let Err(rollback) = tx.rollback().await {
                            tracing::debug!(error = %rollback, "rolling back a failed write");
                        }
                        Err(e)
                    }
                }
            }
        }
    }
}
