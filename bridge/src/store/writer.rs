//! SQLite's writer: one thread that owns the write connection, runs each write operation whole,
//! and commits the operations that arrive together in one transaction (group commit).
//!
//! Why: sqlx runs every SQLite connection on a thread of its own, so each statement of a
//! transaction is a round trip between threads, and the write lock is held across all of them. A
//! relayed message costs a few dozen statements, so the bridge spent its time waking threads
//! while every other write waited (docs/performance.md). Here an operation is a plain function
//! over a `rusqlite` connection: one hand-off per operation, none per statement, and under load
//! one commit for many operations.
//!
//! Each operation runs inside a savepoint, so one that fails leaves no trace while the others of
//! its batch commit. Nobody is answered before the commit that holds their operation succeeded:
//! what the bridge acknowledges is durable, as before. An operation whose caller went away (a
//! client that hung up) still runs and commits, as one that committed just before a crash would
//! have: every write here is idempotent or recovered by a lease running out.

use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use rusqlite::Connection;
use tokio::sync::oneshot;

use super::{Result, SqliteSync, StoreError};

/// Operations committed together at most; more wait for the next commit.
const MAX_BATCH: usize = 64;

/// What a finished operation does once its batch is committed (or failed to commit).
type Finish = Box<dyn FnOnce(Option<&str>) + Send>;
/// An operation: runs on the writer thread, says whether it succeeded, and how to answer.
type Job = Box<dyn FnOnce(&Connection) -> (bool, Finish) + Send>;

/// What the writer thread is asked.
enum Request {
    Run(Job),
    /// Finish what came before, close the connection, and answer.
    Stop(oneshot::Sender<()>),
}

/// A handle to the writer thread. Cheap to clone; the thread ends on [`Writer::close`] or when
/// the last handle is gone.
#[derive(Clone)]
pub(crate) struct Writer {
    jobs: mpsc::Sender<Request>,
}

impl Writer {
    /// Opens the database file at `path` (already migrated) and starts the writer thread.
    pub fn open(path: &Path, sync: SqliteSync) -> Result<Writer> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(Duration::from_secs(10))?;
        let synchronous = match sync {
            SqliteSync::Normal => "NORMAL",
            SqliteSync::Full => "FULL",
        };
        conn.execute_batch(&format!(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = {synchronous}; \
             PRAGMA foreign_keys = ON;"
        ))?;
        let (jobs, queue) = mpsc::channel::<Request>();
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || serve(conn, &queue))
            .map_err(|err| StoreError::Writer(format!("cannot start the writer thread: {err}")))?;
        Ok(Writer { jobs })
    }

    /// Runs `operation` on the writer thread inside a write transaction, and returns its result
    /// once that transaction committed.
    pub async fn run<T, F>(&self, operation: F) -> Result<T>
    where
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        let (answer, answered) = oneshot::channel::<Result<T>>();
        let job: Job = Box::new(move |conn: &Connection| {
            let result = std::panic::catch_unwind(AssertUnwindSafe(|| operation(conn)))
                .unwrap_or_else(|_| Err(StoreError::Writer("a write operation panicked".into())));
            let succeeded = result.is_ok();
            let finish: Finish = Box::new(move |commit_error: Option<&str>| {
                let result = match commit_error {
                    Some(error) => Err(StoreError::Writer(format!("commit failed: {error}"))),
                    None => result,
                };
                let _ = answer.send(result);
            });
            (succeeded, finish)
        });
        self.jobs
            .send(Request::Run(job))
            .map_err(|_| writer_gone())?;
        answered.await.map_err(|_| writer_gone())?
    }

    /// Lets the writer finish what was asked before, then closes its connection. Later writes
    /// fail.
    pub async fn close(&self) {
        let (done, closed) = oneshot::channel();
        if self.jobs.send(Request::Stop(done)).is_ok() {
            let _ = closed.await;
        }
    }
}

fn writer_gone() -> StoreError {
    StoreError::Writer("the writer thread stopped before answering".into())
}

/// The writer thread: takes what is queued, runs it in one transaction, commits, answers.
fn serve(conn: Connection, queue: &mpsc::Receiver<Request>) {
    let mut stop = None;
    while stop.is_none() {
        let Ok(first) = queue.recv() else { break };
        let mut batch = Vec::new();
        let mut next = Some(first);
        while let Some(request) = next.take() {
            match request {
                Request::Run(job) => batch.push(job),
                Request::Stop(done) => {
                    stop = Some(done);
                    break;
                }
            }
            if batch.len() < MAX_BATCH {
                next = queue.try_recv().ok();
            }
        }
        if !batch.is_empty() {
            run_batch(&conn, batch);
        }
    }
    drop(conn);
    if let Some(done) = stop {
        let _ = done.send(());
    }
}

/// Runs `batch` in one transaction, each operation in a savepoint, and answers each after the
/// commit.
fn run_batch(conn: &Connection, batch: Vec<Job>) {
    if let Err(err) = conn.execute_batch("BEGIN IMMEDIATE") {
        // Dropping the jobs unanswered tells each caller the write did not happen.
        tracing::error!(error = %err, "the SQLite writer could not begin a transaction");
        return;
    }
    let mut finishes = Vec::with_capacity(batch.len());
    for job in batch {
        if let Err(err) = conn.execute_batch("SAVEPOINT operation") {
            tracing::error!(error = %err, "the SQLite writer could not set a savepoint");
            break;
        }
        let (succeeded, finish) = job(conn);
        let end = if succeeded {
            "RELEASE operation"
        } else {
            "ROLLBACK TO operation; RELEASE operation"
        };
        if let Err(err) = conn.execute_batch(end) {
            tracing::error!(error = %err, "the SQLite writer could not end a savepoint");
            finish(Some(&err.to_string()));
            continue;
        }
        finishes.push(finish);
    }
    match conn.execute_batch("COMMIT") {
        Ok(()) => finishes.into_iter().for_each(|finish| finish(None)),
        Err(err) => {
            let _ = conn.execute_batch("ROLLBACK");
            let error = err.to_string();
            finishes.into_iter().for_each(|finish| finish(Some(&error)));
        }
    }
}
