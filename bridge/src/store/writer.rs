//! SQLite's writer: one thread that owns the write connection, runs each write operation whole,
//! and commits the operations that arrive together in one transaction (group commit).
//!
//! Why: sqlx runs every SQLite connection on a thread of its own, so each statement of a
//! transaction is a round trip between threads, and the write lock is held across all of them. A
//! relayed message costs a few dozen statements, so the bridge spent its time waking threads while
//! every other write waited (docs/performance-history.md). Here an operation is a plain function
//! over a `rusqlite` connection: one hand-off per operation, none per statement, and under load one
//! commit for many operations.
//!
//! The operations of a batch run one after the other in one transaction, with nothing between them.
//! Should one fail, the transaction is rolled back and the batch runs again in parts: the
//! operations before the failed one together, the failed one alone (so that it leaves no trace),
//! then the rest. So an operation is a function that can run more than once; only the result of the
//! run that committed is answered. (Each operation used to run in a savepoint of its own instead,
//! which copied every page it touched into an undo journal in memory first: an eighth of this
//! thread's time, docs/performance-history.md.) Nobody is answered before the commit that holds
//! their operation succeeded: what the bridge acknowledges is durable, as before. An operation
//! whose caller went away (a client that hung up) still runs and commits, as one that committed
//! just before a crash would have: every write here is idempotent or recovered by a lease running
//! out.

use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use rusqlite::Connection;
use tokio::sync::oneshot;

use super::{Result, SqliteSync, StoreError};

/// Operations committed together at most; more wait for the next commit.
const MAX_BATCH: usize = 64;

/// Operations committed between two checkpoints at most: with some eight pages written per
/// operation, about the thousand pages at which SQLite would checkpoint on its own.
const CHECKPOINT_EVERY: usize = 128;
/// How long the log waits for a checkpoint at most when few operations come.
const CHECKPOINT_IDLE: Duration = Duration::from_secs(10);

/// Prepared statements the writer keeps: more than the relay's operations use between them.
const STATEMENT_CACHE: usize = 128;

/// An operation queued for the writer thread, with its caller waiting for the answer.
trait Operation: Send {
    /// Runs the operation inside the writer's transaction and keeps its result; says whether it
    /// succeeded. Run again after a rollback, it replaces the result it kept.
    fn run(&mut self, conn: &Connection) -> bool;
    /// Answers the caller with the result kept, or with `failed`, the error that ended the
    /// transaction holding it. Only the first call answers.
    fn answer(&mut self, failed: Option<&str>);
}

/// An [`Operation`] from a function and the channel its caller waits on.
struct Pending<T, F> {
    operation: F,
    result: Option<Result<T>>,
    caller: Option<oneshot::Sender<Result<T>>>,
}

impl<T, F> Operation for Pending<T, F>
where
    F: Fn(&Connection) -> Result<T> + Send,
    T: Send,
{
    fn run(&mut self, conn: &Connection) -> bool {
        let result = std::panic::catch_unwind(AssertUnwindSafe(|| (self.operation)(conn)))
            .unwrap_or_else(|_| Err(StoreError::Writer("a write operation panicked".into())));
        let succeeded = result.is_ok();
        self.result = Some(result);
        succeeded
    }

    fn answer(&mut self, failed: Option<&str>) {
        let Some(caller) = self.caller.take() else {
            return;
        };
        let result = match (failed, self.result.take()) {
            (Some(error), _) => Err(StoreError::Writer(format!("commit failed: {error}"))),
            (None, Some(result)) => result,
            (None, None) => Err(StoreError::Writer("the operation did not run".into())),
        };
        let _ = caller.send(result);
    }
}

type Job = Box<dyn Operation>;

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
        // Every statement the operations run stays prepared (rusqlite keeps 16 by default, fewer
        // than the relay's writes use, so they were parsed again and again).
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        plan_once(&conn)?;
        let synchronous = match sync {
            SqliteSync::Normal => "NORMAL",
            SqliteSync::Full => "FULL",
        };
        // `temp_store = MEMORY`: a statement's undo journal (SQLite keeps one for a statement
        // that may fail halfway inside a larger transaction) stays in memory, not in a file.
        conn.execute_batch(&format!(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = {synchronous}; \
             PRAGMA foreign_keys = ON; PRAGMA temp_store = MEMORY; \
             PRAGMA wal_autocheckpoint = 0;"
        ))?;
        let checkpointer = Checkpointer::start(path, synchronous)?;
        let (jobs, queue) = mpsc::channel::<Request>();
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || serve(conn, &queue, checkpointer))
            .map_err(|err| StoreError::Writer(format!("cannot start the writer thread: {err}")))?;
        Ok(Writer { jobs })
    }

    /// Runs `operation` on the writer thread inside a write transaction, and returns its result
    /// once that transaction committed. `operation` may run more than once (see the module's
    /// comment): it must do nothing but its writes on `conn`.
    pub async fn run<T, F>(&self, operation: F) -> Result<T>
    where
        F: Fn(&Connection) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        let (caller, answered) = oneshot::channel::<Result<T>>();
        let job: Job = Box::new(Pending {
            operation,
            result: None,
            caller: Some(caller),
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

/// Makes SQLite plan each prepared statement once, whatever values are bound to it later.
///
/// Without this, SQLite plans a statement with a bound `LIMIT` (such as the messages after a
/// cursor) with the value bound at the time, and so prepares it again every time a value is
/// bound — every run of a cached statement (found with `SQLITE_STMTSTATUS_REPREPARE`). The
/// bridge's statements have one good plan each, their indexes, whatever the values.
pub(super) fn plan_once(conn: &Connection) -> Result<()> {
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )?;
    Ok(())
}

/// A thread that copies the write-ahead log back into the database file (a checkpoint), so the
/// writer never stops to do it.
///
/// SQLite checkpoints on the committing connection once the log holds a thousand pages: every so
/// often one commit took the time of copying them and of an `fsync`, and every write queued
/// behind it waited (a seventh of the writer's time under load, docs/performance-history.md). A
/// checkpoint needs no write lock (`PASSIVE`), so here it runs beside the writer, on a
/// connection of its own, when the writer says enough was written or after a quiet while.
struct Checkpointer {
    wake: mpsc::SyncSender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl Checkpointer {
    /// `synchronous` as the writer's: both settings sync the log and the database at a
    /// checkpoint.
    fn start(path: &Path, synchronous: &str) -> Result<Checkpointer> {
        let conn = Connection::open(path)?;
        conn.execute_batch(&format!("PRAGMA synchronous = {synchronous};"))?;
        let (wake, woken) = mpsc::sync_channel::<()>(1);
        let thread = std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || {
                // Woken, or a quiet while passed; the writer gone ends it.
                while let Ok(()) | Err(mpsc::RecvTimeoutError::Timeout) =
                    woken.recv_timeout(CHECKPOINT_IDLE)
                {
                    // `PASSIVE` waits for nobody: it copies what no reader still needs, and the
                    // next one catches up.
                    if let Err(err) =
                        conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
                    {
                        tracing::warn!(error = %err, "the SQLite checkpoint failed");
                    }
                }
            })
            .map_err(|err| {
                StoreError::Writer(format!("cannot start the checkpoint thread: {err}"))
            })?;
        Ok(Checkpointer { wake, thread })
    }

    /// Asks for a checkpoint; one already asked for is enough.
    fn wake(&self) {
        let _ = self.wake.try_send(());
    }

    /// Ends the thread and closes its connection.
    fn stop(self) {
        drop(self.wake);
        let _ = self.thread.join();
    }
}

fn writer_gone() -> StoreError {
    StoreError::Writer("the writer thread stopped before answering".into())
}

/// The writer thread: takes what is queued, runs it in one transaction, commits, answers.
fn serve(conn: Connection, queue: &mpsc::Receiver<Request>, checkpointer: Checkpointer) {
    let mut stop = None;
    let mut since_checkpoint = 0;
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
            since_checkpoint += batch.len();
            run_batch(&conn, &mut batch);
            if since_checkpoint >= CHECKPOINT_EVERY {
                since_checkpoint = 0;
                checkpointer.wake();
            }
        }
    }
    checkpointer.stop();
    drop(conn);
    if let Some(done) = stop {
        let _ = done.send(());
    }
}

/// Runs `batch` in one transaction and answers each operation after the commit. When one fails,
/// the batch runs again in parts: those before it together, it alone, then the rest.
fn run_batch(conn: &Connection, batch: &mut [Job]) {
    match batch {
        [] => {}
        [alone] => run_alone(conn, alone),
        _ => {
            if let Err(failed) = run_together(conn, batch) {
                let (before, rest) = batch.split_at_mut(failed);
                run_batch(conn, before);
                if let Some((failed, after)) = rest.split_first_mut() {
                    run_alone(conn, failed);
                    run_batch(conn, after);
                }
            }
        }
    }
}

/// Runs `job` in a transaction of its own: committed when it succeeded, rolled back and answered
/// with its own error when not.
fn run_alone(conn: &Connection, job: &mut Job) {
    if run_together(conn, std::slice::from_mut(job)).is_err() {
        job.answer(None);
    }
}

/// Runs every operation of `batch` in one transaction, commits it and answers them all (with the
/// commit's error if it failed, or with `BEGIN`'s if none could run); or, when one fails, rolls
/// everything back, answers none and returns the failed one's index.
fn run_together(conn: &Connection, batch: &mut [Job]) -> std::result::Result<(), usize> {
    if let Err(err) = execute(conn, "BEGIN IMMEDIATE") {
        tracing::error!(error = %err, "the SQLite writer could not begin a transaction");
        let error = err.to_string();
        batch.iter_mut().for_each(|job| job.answer(Some(&error)));
        return Ok(());
    }
    if let Some(failed) = batch.iter_mut().position(|job| !job.run(conn)) {
        if let Err(err) = execute(conn, "ROLLBACK") {
            tracing::error!(error = %err, "the SQLite writer could not roll back");
        }
        return Err(failed);
    }
    let error = execute(conn, "COMMIT").err().map(|err| {
        let _ = execute(conn, "ROLLBACK");
        err.to_string()
    });
    batch
        .iter_mut()
        .for_each(|job| job.answer(error.as_deref()));
    Ok(())
}

/// Runs one statement of the writer's own (`BEGIN`, `COMMIT`, `ROLLBACK`), kept prepared.
fn execute(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// An operation inserting `value` into `t`, failing after the insert when `fail`; each run
    /// is counted in `runs`. Also returns where its answer comes.
    fn insert(
        value: i64,
        fail: bool,
        runs: &Arc<Mutex<Vec<i64>>>,
    ) -> (Job, oneshot::Receiver<Result<()>>) {
        let runs = Arc::clone(runs);
        let (caller, answered) = oneshot::channel();
        let job: Job = Box::new(Pending {
            operation: move |conn: &Connection| {
                runs.lock().unwrap().push(value);
                conn.execute("INSERT INTO t (v) VALUES (?1)", [value])?;
                if fail {
                    return Err(StoreError::Writer("refused".into()));
                }
                Ok(())
            },
            result: None,
            caller: Some(caller),
        });
        (job, answered)
    }

    /// Runs the operations `(value, fail)` as one batch; returns their answers (`Ok` or the
    /// error's text) in order.
    fn batch(
        conn: &Connection,
        operations: &[(i64, bool)],
        runs: &Arc<Mutex<Vec<i64>>>,
    ) -> Vec<String> {
        let (mut jobs, answers): (Vec<Job>, Vec<_>) = operations
            .iter()
            .map(|&(value, fail)| insert(value, fail, runs))
            .unzip();
        run_batch(conn, &mut jobs);
        operations
            .iter()
            .zip(answers)
            .map(|(&(value, _), mut answer)| match answer.try_recv() {
                Ok(Ok(())) => format!("{value}: ok"),
                Ok(Err(err)) => format!("{value}: {err}"),
                Err(_) => format!("{value}: unanswered"),
            })
            .collect()
    }

    fn stored(conn: &Connection) -> Vec<i64> {
        let mut statement = conn.prepare("SELECT v FROM t ORDER BY v").unwrap();
        let rows = statement.query_map([], |row| row.get(0)).unwrap();
        rows.map(Result::unwrap).collect()
    }

    fn table() -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (v INTEGER NOT NULL)")
            .unwrap();
        conn
    }

    #[test]
    fn a_batch_commits_together_with_each_operation_run_once() {
        let conn = table();
        let runs = Arc::default();
        let answers = batch(&conn, &[(1, false), (2, false), (3, false)], &runs);
        assert_eq!(answers, ["1: ok", "2: ok", "3: ok"]);
        assert_eq!(stored(&conn), [1, 2, 3]);
        assert_eq!(*runs.lock().unwrap(), [1, 2, 3]);
        assert!(conn.is_autocommit(), "the transaction is over");
    }

    #[test]
    fn a_failed_operation_in_a_batch_leaves_no_trace_and_the_others_commit() {
        let conn = table();
        let runs = Arc::default();
        let answers = batch(
            &conn,
            &[(1, false), (2, true), (3, false), (4, true), (5, false)],
            &runs,
        );
        assert_eq!(stored(&conn), [1, 3, 5]);
        assert_eq!(
            answers,
            [
                "1: ok",
                "2: database writer: refused",
                "3: ok",
                "4: database writer: refused",
                "5: ok"
            ]
        );
        // Together until 2 failed; 1 again, 2 alone; then 3 and 4 together until 4 failed; 3
        // again, 4 alone; 5 alone.
        assert_eq!(*runs.lock().unwrap(), [1, 2, 1, 2, 3, 4, 3, 4, 5]);
        assert!(conn.is_autocommit(), "the transaction is over");
    }

    #[test]
    fn an_operation_alone_commits_or_leaves_no_trace() {
        let conn = table();
        let runs = Arc::default();
        assert_eq!(
            batch(&conn, &[(1, true)], &runs),
            ["1: database writer: refused"]
        );
        assert!(
            conn.is_autocommit(),
            "the failed operation's transaction is over"
        );
        assert_eq!(batch(&conn, &[(2, false)], &runs), ["2: ok"]);
        assert_eq!(stored(&conn), [2]);
    }

    #[tokio::test]
    async fn the_log_is_copied_back_to_the_database_beside_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        table_at(&path);
        let writer = Writer::open(&path, SqliteSync::Normal).unwrap();
        let database_size = || std::fs::metadata(&path).unwrap().len();
        let before = database_size();
        for _ in 0..CHECKPOINT_EVERY {
            writer
                .run(|conn| {
                    conn.execute("INSERT INTO t (v) VALUES (zeroblob(4096))", [])?;
                    Ok(())
                })
                .await
                .unwrap();
        }
        // Only a checkpoint writes pages into the database file itself; the writer's commits
        // go to the log.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while database_size() < before + (CHECKPOINT_EVERY as u64) * 4096 {
            assert!(std::time::Instant::now() < deadline, "no checkpoint ran");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        writer.close().await;
    }

    fn table_at(path: &Path) {
        let conn = Connection::open(path).unwrap();
        conn.execute_batch("PRAGMA journal_mode = WAL; CREATE TABLE t (v BLOB NOT NULL)")
            .unwrap();
    }
}
