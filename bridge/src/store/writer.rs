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

/// Operations committed between two checkpoints at most: with some eight pages written per
/// operation, about the thousand pages at which SQLite would checkpoint on its own.
const CHECKPOINT_EVERY: usize = 128;
/// How long the log waits for a checkpoint at most when few operations come.
const CHECKPOINT_IDLE: Duration = Duration::from_secs(10);

/// Prepared statements the writer keeps: more than the relay's operations use between them.
const STATEMENT_CACHE: usize = 128;

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
        // Every statement the operations run stays prepared (rusqlite keeps 16 by default, fewer
        // than the relay's writes use, so they were parsed again and again).
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        plan_once(&conn)?;
        let synchronous = match sync {
            SqliteSync::Normal => "NORMAL",
            SqliteSync::Full => "FULL",
        };
        // `temp_store = MEMORY`: the savepoints of a large batch keep their undo pages in memory
        // instead of spilling them to a temporary file.
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
/// behind it waited (a seventh of the writer's time under load, docs/performance.md). A
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
            run_batch(&conn, batch);
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

/// Runs `batch` in one transaction, each operation in a savepoint (unless it is alone), and
/// answers each after the commit.
fn run_batch(conn: &Connection, batch: Vec<Job>) {
    if let Err(err) = execute(conn, "BEGIN IMMEDIATE") {
        // Dropping the jobs unanswered tells each caller the write did not happen.
        tracing::error!(error = %err, "the SQLite writer could not begin a transaction");
        return;
    }
    // An operation alone needs no savepoint: the transaction is its own, and one that fails is
    // rolled back whole.
    let alone = batch.len() == 1;
    let mut finishes = Vec::with_capacity(batch.len());
    let mut failed_alone = false;
    for job in batch {
        if !alone && let Err(err) = execute(conn, "SAVEPOINT operation") {
            tracing::error!(error = %err, "the SQLite writer could not set a savepoint");
            break;
        }
        let (succeeded, finish) = job(conn);
        if alone {
            failed_alone = !succeeded;
            finishes.push(finish);
            break;
        }
        let ended = if succeeded {
            execute(conn, "RELEASE operation")
        } else {
            execute(conn, "ROLLBACK TO operation").and_then(|()| execute(conn, "RELEASE operation"))
        };
        if let Err(err) = ended {
            tracing::error!(error = %err, "the SQLite writer could not end a savepoint");
            finish(Some(&err.to_string()));
            continue;
        }
        finishes.push(finish);
    }
    let end = if failed_alone { "ROLLBACK" } else { "COMMIT" };
    match execute(conn, end) {
        Ok(()) => finishes.into_iter().for_each(|finish| finish(None)),
        Err(err) => {
            let _ = execute(conn, "ROLLBACK");
            let error = err.to_string();
            finishes.into_iter().for_each(|finish| finish(Some(&error)));
        }
    }
}

/// Runs one statement of the writer's own (`BEGIN`, a savepoint, `COMMIT`), kept prepared.
fn execute(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// An operation inserting `value` into `t`, failing after the insert when `fail`; its answer
    /// (`Ok` or the error's text) lands in `answers`.
    fn insert(value: i64, fail: bool, answers: &Arc<Mutex<Vec<String>>>) -> Job {
        let answers = Arc::clone(answers);
        Box::new(move |conn: &Connection| {
            let result = conn
                .execute("INSERT INTO t (v) VALUES (?1)", [value])
                .map_err(StoreError::from)
                .and_then(|_| {
                    if fail {
                        Err(StoreError::Writer("refused".into()))
                    } else {
                        Ok(())
                    }
                });
            let succeeded = result.is_ok();
            let finish: Finish = Box::new(move |commit_error: Option<&str>| {
                let answer = match (commit_error, result) {
                    (Some(error), _) => format!("{value}: commit failed: {error}"),
                    (None, Ok(())) => format!("{value}: ok"),
                    (None, Err(err)) => format!("{value}: {err}"),
                };
                answers.lock().unwrap().push(answer);
            });
            (succeeded, finish)
        })
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
    fn a_failed_operation_in_a_batch_leaves_no_trace_and_the_others_commit() {
        let conn = table();
        let answers = Arc::default();
        let batch = vec![
            insert(1, false, &answers),
            insert(2, true, &answers),
            insert(3, false, &answers),
        ];
        run_batch(&conn, batch);
        assert_eq!(stored(&conn), [1, 3]);
        assert_eq!(
            *answers.lock().unwrap(),
            ["1: ok", "2: database writer: refused", "3: ok"]
        );
        assert!(conn.is_autocommit(), "the transaction is over");
    }

    #[test]
    fn an_operation_alone_commits_or_leaves_no_trace() {
        let conn = table();
        let answers = Arc::default();
        run_batch(&conn, vec![insert(1, true, &answers)]);
        assert!(
            conn.is_autocommit(),
            "the failed operation's transaction is over"
        );
        run_batch(&conn, vec![insert(2, false, &answers)]);
        assert_eq!(stored(&conn), [2]);
        assert_eq!(
            *answers.lock().unwrap(),
            ["1: database writer: refused", "2: ok"]
        );
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
