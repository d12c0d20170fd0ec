//! The public facade: `Db` and `Txn`. Holds no storage logic of its own: it
//! wires the layers together (recovery and the checkpointer in `recovery`,
//! the background writer in `db/background.rs`) and enforces fail-stop.
//!
//! Invariants:
//! - Writers of the tree hold `tree_latch` exclusively; readers share it. The
//!   policy for taking it lives with it (`btree::TreeLatch`): no log fsync is
//!   waited for under it, nor under the transaction table's lock, except by
//!   an eviction when one operation dirties more pages than the latch's
//!   headroom (a value of many overflow pages on a small pool);
//!   `Stats::eviction_log_waits` counts those. A transaction's tree changes,
//!   outcome records and rollback run in the transaction layer (`TxnEnv`).
//! - After an error in any write path (I/O, corruption, out of space) the
//!   `Db` is failed: every later call, and every lock wait it interrupts,
//!   returns `Error::Failed` carrying the first cause as a `StopCause`;
//!   nothing is retried. Reopening recovers (see `StopCause` for corruption).
//!   The state is one `FailStop` shared with the log, the pool and the lock
//!   manager, which refuse at their own entry points; `guard` and
//!   `guard_read` decide which errors of the facade's calls stop it.
//! - A checkpoint takes the tree latch and the table lock only for the instant
//!   it appends its begin record and copies the two tables.

use std::ops::Bound;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use crate::btree::{compact_in_rounds, BTree, CheckReport, TreeLatch, TreeReadGuard, MAX_KEY_LEN};
use crate::buffer::BufferPool;
use crate::error::{Error, Result};
use crate::failstop::FailStop;
use crate::options::Options;
use crate::recovery::{self, CheckpointReason, Checkpointer, OpenParams, PendingRedo, RecoveryReport, Sources, Start};
use crate::storage::{FsStorage, OverlayStorage, ProcessStorage, Storage, StorageFile};
use crate::txn::lock::LockManager;
use crate::txn::versions::VersionStore;
use crate::txn::{SharedTxnTable, TxnEnv};
use crate::types::{Lsn, TxnEntry, TxnId};
use crate::wal::Wal;

mod background;
mod backup;
mod restart_undo;
mod snapshot;
mod txn;

pub use backup::BackupReport;
pub use snapshot::{Snapshot, SnapshotScan};
use txn::RolledBack;
pub use txn::{Savepoint, Scan, Txn};
#[cfg(test)]
mod fail_stop_tests;
#[cfg(test)]
mod pool_race_tests;
#[cfg(test)]
mod restart_undo_tests;
#[cfg(test)]
mod review_image_tests;
#[cfg(test)]
mod test_support;

pub use crate::recovery::DATA_FILE;
/// Pages the redo after an instant restart takes from the owed list at a time.
const REDO_BATCH: usize = 256;

/// Entries a scan reads per batch under the tree latch.
const SCAN_BATCH: usize = 64;

#[derive(Default)]
struct Counters {
    commits: AtomicU64,
    aborts: AtomicU64,
    deadlocks: AtomicU64,
    lock_timeouts: AtomicU64,
    lock_escalations: AtomicU64,
}

pub(crate) struct Inner {
    opts: Options,
    page_size: usize,
    data_file: Arc<dyn StorageFile>,
    wal: Arc<Wal>,
    pool: BufferPool,
    tree_latch: TreeLatch,
    txns: SharedTxnTable,
    locks: LockManager,
    next_txn_id: AtomicU64,
    /// The versions read-only snapshots see (`txn::versions`).
    versions: VersionStore,
    ckpt: Checkpointer,
    /// Held for the whole of a compaction: one at a time.
    compacting: Mutex<()>,
    /// Fail-stop, shared with the log, the pool and the lock manager.
    stop: Arc<FailStop>,
    closed: AtomicBool,
    bg_stop: Mutex<bool>,
    bg_cv: Condvar,
    report: RecoveryReport,
    /// After an instant restart: the pages that still owe redo (None after
    /// a classic redo pass, or when none owed any).
    pending: Option<Arc<PendingRedo>>,
    /// After an instant restart: the losers still to roll back.
    undo: restart_undo::RestartUndo,
    counters: Counters,
    /// Opened by `Db::open_read_only`: every change is refused, and the
    /// storage is an overlay that keeps what recovery wrote in memory.
    read_only: bool,
    /// Where the database is ("in DIR", "on the given storage"), for the
    /// log lines of the open and the close.
    place: String,
    /// The directory of a database opened on real files by path (`None` on
    /// a storage given to `open_with`): `backup` refuses a destination in it.
    pub(crate) dir: Option<std::path::PathBuf>,
}

/// An open database. `Send + Sync`: share it by reference or in an `Arc`.
///
/// # Resources
/// File descriptors are bounded whatever the length of the log: between
/// calls a `Db` holds at most 10 open files: the data file, the
/// directory's `LOCK` file (`FsStorage`), and a cache of at most 8 log segment
/// handles that always includes the current segment; the other segments are
/// opened on demand (a rollback or recovery reading old log) and the least
/// recently used handle is closed. While a call runs it may briefly hold one
/// more (a directory sync, or a segment handle the cache evicted while a
/// reader still used it), so at most one extra per thread inside the engine.
/// Opening reads the directory and measures each segment one file at a time.
pub struct Db {
    inner: Arc<Inner>,
    bg: Option<JoinHandle<()>>,
    /// The background redo pass after an instant restart, while it runs.
    redo_bg: Option<JoinHandle<()>>,
    /// The background undo of the losers after an instant restart.
    undo_bg: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db")
            .field("page_size", &self.inner.page_size)
            .field("stopped", &self.inner.check_ok().is_err())
            .field("background_writer", &self.bg.is_some())
            .field("read_only", &self.inner.read_only)
            .finish_non_exhaustive()
    }
}

/// Counters since the database was opened.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Transactions committed.
    pub commits: u64,
    /// Transactions rolled back (including deadlock victims and lock
    /// timeouts).
    pub aborts: u64,
    /// Deadlocks detected.
    pub deadlocks: u64,
    /// Lock waits that lasted longer than `Options::lock_timeout` (each
    /// rolled its transaction back).
    pub lock_timeouts: u64,
    /// Checkpoints completed.
    pub checkpoints: u64,
    /// fsyncs of the log.
    pub wal_syncs: u64,
    /// Log flushes (each may serve many committers).
    pub wal_flushes: u64,
    /// Log flushes whose leader, a committing transaction, first waited (at
    /// most half a flush's time, 1 ms at most) for the other threads its
    /// last flush served to commit too, so that one fsync serves them all
    /// (group commit; a thread committing alone never waits).
    pub wal_group_waits: u64,
    /// Bytes written to the log.
    pub wal_bytes_written: u64,
    /// Bytes the log segments occupy on storage.
    pub wal_disk_bytes: u64,
    /// Buffer pool hits.
    pub cache_hits: u64,
    /// Buffer pool misses (page reads).
    pub cache_misses: u64,
    /// Frames reused.
    pub evictions: u64,
    /// Data pages written.
    pub pages_written: u64,
    /// Full page images logged (before a page is written back, if its last
    /// image is older than the latest checkpoint: torn-page protection).
    pub full_page_images: u64,
    /// Page evictions that had to wait for the log to become durable before
    /// writing their victim (the write-ahead rule). The victim choice and the
    /// background writer keep this near zero; it counts the only log flushes
    /// a tree operation can wait for.
    pub eviction_log_waits: u64,
    /// The most bytes the log's append buffer held. Appends never flush; a
    /// buffer past 4 MiB is flushed by the next caller that holds no latch,
    /// and no tree change begins before, so this stays below 4 MiB plus one
    /// operation's records (a put of a long value: about the value, plus the
    /// old one it replaces) plus the small records other threads append
    /// meanwhile.
    pub wal_buffer_high_water_bytes: u64,
    /// Log flushes started because the append buffer had passed 4 MiB, each
    /// by a caller after releasing its latches.
    pub wal_size_flushes: u64,
    /// Log flushes waited for while holding the tree latch or the transaction
    /// table's lock, evictions' excepted (those are `eviction_log_waits`):
    /// always 0 (a debug build asserts it).
    pub log_flushes_under_latch: u64,
    /// Keys locked by open transactions (a transaction that escalated holds
    /// one lock on the whole key space instead of its key locks).
    pub locked_keys: u64,
    /// Lock escalations: transactions whose key locks passed
    /// `Options::lock_escalation_keys` and became one lock on the whole key
    /// space.
    pub lock_escalations: u64,
    /// Bytes of log from the first record of the oldest open transaction to
    /// the end of the log (0 if no open transaction has written): log that no
    /// checkpoint can remove while that transaction stays open. It adds to
    /// the log's bound of about twice `checkpoint_interval_bytes`, and to
    /// what restart recovery must read.
    pub log_held_by_oldest_txn_bytes: u64,
    /// Open transactions holding more than `Options::long_txn_log_bytes` of
    /// log (from their first record to the end of the log).
    pub long_txns: u64,
    /// Read-only snapshots open now.
    pub snapshots_open: u64,
    /// Keys with versions kept for snapshots or open transactions.
    pub snapshot_version_keys: u64,
    /// Bytes of committed versions held for open snapshots (capped by
    /// `Options::snapshot_cap_bytes`).
    pub snapshot_held_bytes: u64,
    /// Snapshots expired past the cap since open.
    pub snapshots_expired: u64,
    /// Pages redone at their first read after an instant restart
    /// (`Options::instant_restart`), since open.
    pub pages_redone_on_demand: u64,
    /// Pages that still owe redo after an instant restart: redone at their
    /// first read, by the background pass, or at `close`.
    pub pages_owing_redo: u64,
    /// After an instant restart: transactions the crash left open (losers)
    /// not yet rolled back by the background undo. Their keys stay locked
    /// until then (`RecoveryReport::undo_deferred_losers`).
    pub losers_owing_undo: u64,
}

impl Db {
    /// Open (or create) the database in directory `path` on real files. A
    /// missing directory is created, and a directory without a database gets
    /// a new empty one: to open only a database that exists, use
    /// `Db::open_existing`. If the last shutdown was not clean, restart
    /// recovery runs first (`Db::recovery_report` says what it did). Default
    /// options: see `Options`, and `Db::open_path_with` to change them.
    ///
    /// ```
    /// # let dir = std::env::temp_dir().join(format!("ariesdb-doc-open-{}", std::process::id()));
    /// # let _ = std::fs::remove_dir_all(&dir);
    /// let db = ariesdb::Db::open(&dir)?; // a new, empty database
    /// let mut tx = db.begin()?;
    /// tx.put("greeting", "hello")?;
    /// tx.commit()?;
    /// drop(db); // no close(): the next open recovers from the log
    ///
    /// let db = ariesdb::Db::open(&dir)?; // runs restart recovery
    /// assert_eq!(db.begin_read()?.get("greeting")?.as_deref(), Some(&b"hello"[..]));
    /// db.close()?;
    /// # let _ = std::fs::remove_dir_all(&dir);
    /// # Ok::<(), ariesdb::Error>(())
    /// ```
    ///
    /// # Errors
    /// `Error::Locked` if another `Db` has the directory open, in this or
    /// another process; an I/O error if the directory or its files cannot be
    /// created or read; then as `Db::open_with`.
    pub fn open(path: impl AsRef<Path>) -> Result<Db> {
        Db::open_path_with(path, Options::default())
    }

    /// Open (or create) the database in directory `path` with options.
    ///
    /// # Errors
    /// As `Db::open`.
    pub fn open_path_with(path: impl AsRef<Path>, opts: Options) -> Result<Db> {
        // Refused options create nothing, not even the directory.
        opts.validate()?;
        let storage = lock_dir(path.as_ref())?;
        let place = format!("in {}", path.as_ref().display());
        Db::start(Arc::new(storage), opts, false, &place, Some(path.as_ref()))
    }

    /// Open the database that already exists in directory `path`, with default
    /// options: as `Db::open`, except that a missing directory, or one that
    /// holds no database, is an error instead of a new empty database. Use it
    /// wherever a mistyped path must not quietly start an empty database.
    ///
    /// ```
    /// # let dir = std::env::temp_dir().join(format!("ariesdb-doc-existing-{}", std::process::id()));
    /// # let _ = std::fs::remove_dir_all(&dir);
    /// let err = ariesdb::Db::open_existing(&dir).expect_err("no database there");
    /// assert!(matches!(err, ariesdb::Error::NotFound { .. }));
    /// assert!(!dir.exists()); // nothing was created
    /// ariesdb::Db::open(&dir)?.close()?; // creates it
    /// ariesdb::Db::open_existing(&dir)?.close()?;
    /// # let _ = std::fs::remove_dir_all(&dir);
    /// # Ok::<(), ariesdb::Error>(())
    /// ```
    ///
    /// # Errors
    /// As `Db::open_existing_with`.
    pub fn open_existing(path: impl AsRef<Path>) -> Result<Db> {
        Db::open_existing_with(path, Options::default())
    }

    /// Open the database that already exists in directory `path`, with
    /// options (`Options::page_size` does not apply: an existing database
    /// keeps its own). Nothing is created when there is no database: not the
    /// directory, not a file in it.
    ///
    /// A database is a directory holding the data file (`DATA_FILE`,
    /// `data.db`). It is looked for before the directory is locked, and
    /// again once it is (a data file removed in between is reported, not
    /// recreated; the `LOCK` file is then left in the directory).
    ///
    /// # Errors
    /// `Error::NotFound` if `path` does not exist, is not a directory, or
    /// holds no data file; `Error::Locked` if another `Db` has it open; then
    /// as `Db::open_with` (recovery's `Error::Corruption`, I/O errors, an
    /// `Error::InvalidArgument` for options out of bounds).
    pub fn open_existing_with(path: impl AsRef<Path>, opts: Options) -> Result<Db> {
        let path = path.as_ref();
        opts.validate()?;
        require_database(path, None)?;
        let storage = lock_dir(path)?;
        require_database(path, Some(&storage))?;
        Db::start(Arc::new(storage), opts, false, &format!("in {}", path.display()), Some(path))
    }

    /// Open the database that exists in directory `path` read-only, with
    /// default options: see `Db::open_read_only_with`.
    ///
    /// ```
    /// # let dir = std::env::temp_dir().join(format!("ariesdb-doc-read-only-{}", std::process::id()));
    /// # let _ = std::fs::remove_dir_all(&dir);
    /// let db = ariesdb::Db::open_path_with(&dir, ariesdb::Options::default().background_writer(false))?;
    /// let mut tx = db.begin()?;
    /// tx.put(b"k", b"v")?;
    /// tx.commit()?;
    /// drop(db); // no close: the next open has recovery to do
    ///
    /// let ro = ariesdb::Db::open_read_only(&dir)?; // recovers in memory only
    /// assert!(ro.recovery_report().redone > 0);
    /// assert_eq!(ro.begin_read()?.get(b"k")?, Some(b"v".to_vec()));
    /// ro.check()?;
    /// assert!(matches!(ro.begin(), Err(ariesdb::Error::ReadOnly)));
    /// ro.close()?; // writes nothing: recovery is still pending on disk
    /// assert!(ariesdb::Db::open_existing(&dir)?.recovery_report().redone > 0);
    /// # let _ = std::fs::remove_dir_all(&dir);
    /// # Ok::<(), ariesdb::Error>(())
    /// ```
    ///
    /// # Errors
    /// As `Db::open_read_only_with`.
    pub fn open_read_only(path: impl AsRef<Path>) -> Result<Db> {
        Db::open_read_only_with(path, Options::default())
    }

    /// Open the database that exists in directory `path` for inspection:
    /// nothing in the directory is created, written or removed, by the open,
    /// by any call on the `Db`, by `close()` or by its drop. Every file is
    /// opened without write access (`FsStorage::open_read_only`), so a write
    /// that reached the disk would fail rather than change it.
    ///
    /// Recovery runs, in memory: after a crash the files are not a
    /// consistent database until redo and undo are applied (pages lack
    /// changes that only the log holds, and carry changes of transactions
    /// that never committed), so an inspection without them would see
    /// missing commits and report damage that recovery repairs. Here the
    /// three passes run as at any open, and what they write (pages redone and
    /// written back, CLRs and END records, the closing checkpoint, the master
    /// record) goes to an `OverlayStorage` over the files, in memory; the
    /// `Db` then serves the recovered state. `recovery_report()` says what
    /// recovery did, so what is still pending on disk: a later `Db::open`
    /// does it all again, for real.
    ///
    /// The `Db` refuses every change with `Error::ReadOnly`: `begin`,
    /// `checkpoint`, `compact` (and the helpers built on `begin`). Reads
    /// work: `begin_read`, `check`, `check_report`, `stats`,
    /// `recovery_report`, and `backup`, which copies into a new directory
    /// elsewhere. `sync` has nothing to make durable and returns Ok. There is
    /// no background writer and no automatic checkpoint
    /// (`Options::background_writer` and `checkpoint_interval_bytes` are
    /// ignored); `Options::page_size` does not apply (the database keeps its
    /// own).
    ///
    /// Memory: besides the buffer pool (`Options::buffer_pool_pages`), the
    /// overlay holds a 4 KiB block for each block recovery wrote: about the
    /// data pages redo and undo changed, plus the log recovery appended (a
    /// CLR per record undone, a few records for the checkpoint), plus one
    /// block for the master record. It grows with the work recovery had to
    /// do (a few blocks after a clean shutdown) and is freed when the `Db`
    /// is dropped. Evictions while reading may write a page recovery left
    /// dirty into it too; pages only read cost nothing.
    ///
    /// Locking: the directory's `LOCK` file is locked shared for the life of
    /// the `Db`, so read-only opens of one directory coexist, and a writer
    /// (`Db::open`, `Db::open_existing`) and a read-only open exclude each
    /// other (`Error::Locked`). A directory without a `LOCK` file (one no
    /// writer ever opened on real files, such as a copy of the other files)
    /// is opened without a lock, because locking would mean creating it; a
    /// writer that opens it meanwhile is then not kept out.
    ///
    /// # Errors
    /// `Error::NotFound` if `path` does not exist, is not a directory, or
    /// holds no data file (nothing is created); `Error::Locked` if a `Db`
    /// that can write has it open, in this or another process;
    /// `Error::Corruption` for damage recovery cannot repair (on disk
    /// nothing changes then either); `Error::InvalidArgument` for options out
    /// of bounds or a format version this build does not open; I/O errors of
    /// reading.
    pub fn open_read_only_with(path: impl AsRef<Path>, opts: Options) -> Result<Db> {
        let path = path.as_ref();
        require_database(path, None)?;
        let base = FsStorage::open_read_only(path).map_err(|e| lock_error(path, e))?;
        require_database(path, Some(&base))?;
        let overlay = OverlayStorage::new(Arc::new(base))?;
        let opts = opts.background_writer(false).checkpoint_interval_bytes(0);
        Db::start(Arc::new(overlay), opts, true, &format!("read-only in {}", path.display()), Some(path))
    }

    /// Open (or create) the database on any storage, running restart recovery
    /// if the last shutdown was not clean. With `SimStorage` this is how a test
    /// crashes a database and checks what recovery kept (see `SimStorage`).
    ///
    /// # Errors
    /// `Error::InvalidArgument` for options out of bounds (naming the setting
    /// and its range) or a format version this build does not open;
    /// `Error::Corruption` for damage recovery cannot explain by a crash (a
    /// durable log record or page unreadable, a missing log segment or data
    /// file); an I/O error of the storage.
    pub fn open_with(storage: Arc<dyn Storage>, opts: Options) -> Result<Db> {
        Db::start(storage, opts, false, "on the given storage", None)
    }

    /// Open on `storage`; `read_only` for `open_read_only_with`; `place` says
    /// where, for the log line of the open, and `dir` the directory, if any.
    fn start(storage: Arc<dyn Storage>, opts: Options, read_only: bool, place: &str, dir: Option<&Path>) -> Result<Db> {
        opts.validate()?;
        let storage = ProcessStorage::bind(storage);
        let dir = dir.map(Path::to_path_buf);
        // A read-only open redoes in memory before it returns: it has no
        // background pass, and its tools want the whole picture at once.
        let opts = if read_only { opts.instant_restart(false) } else { opts };
        let inner = Arc::new(Inner { read_only, dir, ..Inner::open(storage, opts, place)? });
        // A thread running `body` with a weak reference to the engine.
        let spawn = |name: &str, body: fn(std::sync::Weak<Inner>)| -> Result<JoinHandle<()>> {
            let weak = Arc::downgrade(&inner);
            std::thread::Builder::new().name(name.into()).spawn(move || body(weak)).map_err(Error::Io)
        };
        let bg = match inner.opts.background_writer {
            true => Some(spawn("ariesdb-writer", background::background_loop)?),
            false => None,
        };
        let redo_bg = match &inner.pending {
            Some(p) if inner.opts.background_writer && p.left() > 0 => {
                Some(spawn("ariesdb-redo", background::redo_loop)?)
            }
            _ => None,
        };
        let undo_bg = match inner.losers_left() {
            true => Some(spawn("ariesdb-undo", restart_undo::undo_loop)?),
            false => None,
        };
        Ok(Db { inner, bg, redo_bg, undo_bg })
    }

    /// Begin a read-write transaction. Many may be open at once, from many
    /// threads; they lock the keys they read and write (see `Txn`). Dropping
    /// the transaction without `commit` rolls it back.
    ///
    /// ```
    /// # let dir = std::env::temp_dir().join(format!("ariesdb-doc-begin-{}", std::process::id()));
    /// # let _ = std::fs::remove_dir_all(&dir);
    /// let db = ariesdb::Db::open(&dir)?;
    /// let mut tx = db.begin()?;
    /// tx.put("a", "1")?;
    /// tx.commit()?;
    ///
    /// let mut tx = db.begin()?;
    /// tx.put("a", "2")?;
    /// assert_eq!(tx.get("a")?.as_deref(), Some(&b"2"[..])); // its own write
    /// tx.abort()?; // or drop it: rolled back
    /// assert_eq!(db.begin_read()?.get("a")?.as_deref(), Some(&b"1"[..]));
    /// # db.close()?; let _ = std::fs::remove_dir_all(&dir);
    /// # Ok::<(), ariesdb::Error>(())
    /// ```
    ///
    /// # Errors
    /// `Error::Failed` or `Error::Closed` once the database stopped or
    /// closed; `Error::ReadOnly` on a database opened read-only.
    pub fn begin(&self) -> Result<Txn> {
        self.inner.check_writable()?;
        let id = TxnId(self.inner.next_txn_id.fetch_add(1, Ordering::Relaxed));
        self.inner.txns.lock().active_txns.insert(id, TxnEntry::new(id));
        Ok(Txn::new(self.inner.clone(), id))
    }

    /// Run `f` in a transaction and commit it, running it again (in a new
    /// transaction, after a short randomized pause: 1 ms doubling to at most
    /// 128 ms) when it was the victim of a deadlock, up to
    /// `Options::transaction_attempts` times in all (default 10). A lock
    /// timeout is returned at once: its wait already lasted
    /// `Options::lock_timeout`, and a holder that stays open that long (or
    /// another transaction driven from this same thread) would only make
    /// every attempt wait as long again. `f` may return any error type that
    /// an `ariesdb::Error` converts into; an error of `f` that is not such a
    /// rollback rolls the transaction back and is returned at once. Whether
    /// `f` returned the deadlock error or swallowed it, the transaction is
    /// retried: what counts is that it was rolled back. `f` may run more
    /// than once, so it should not have effects outside the transaction.
    ///
    /// ```
    /// # let dir = std::env::temp_dir().join(format!("ariesdb-doc-transaction-{}", std::process::id()));
    /// # let _ = std::fs::remove_dir_all(&dir);
    /// let db = ariesdb::Db::open(&dir)?;
    /// let balance = db.transaction(|tx| {
    ///     let old = tx.get_for_update("alice")?.map_or(0, |v| u64::from_le_bytes(v.try_into().unwrap()));
    ///     tx.put("alice", (old + 10).to_le_bytes())?;
    ///     Ok::<_, ariesdb::Error>(old + 10)
    /// })?;
    /// assert_eq!(balance, 10);
    /// # db.close()?; let _ = std::fs::remove_dir_all(&dir);
    /// # Ok::<(), ariesdb::Error>(())
    /// ```
    ///
    /// # Errors
    /// The error of `f` (the transaction then rolled back); `Error::Deadlock`
    /// or `Error::LockTimeout` after the last attempt; the errors of `begin`
    /// and `Txn::commit`, converted into `E`.
    pub fn transaction<T, E, F>(&self, mut f: F) -> std::result::Result<T, E>
    where
        F: FnMut(&mut Txn) -> std::result::Result<T, E>,
        E: From<Error>,
    {
        let attempts = self.inner.opts.transaction_attempts.max(1);
        let mut pause = Duration::from_millis(1);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut tx = self.begin()?;
            let out = f(&mut tx);
            let cause = match tx.rolled_back() {
                None => {
                    let v = out?;
                    tx.commit()?;
                    return Ok(v);
                }
                Some(cause) => cause,
            };
            drop(tx);
            if attempt >= attempts || matches!(cause, RolledBack::LockTimeout { .. }) {
                return match out {
                    Err(e) => Err(e),
                    Ok(_) => Err(cause.error().into()),
                };
            }
            std::thread::sleep(jitter(pause));
            pause = (pause * 2).min(Duration::from_millis(128));
        }
    }

    /// Begin a read-only snapshot: it sees every transaction whose `commit()`
    /// returned before this call, none that began committing after it
    /// returned, each all or nothing, for `get` and `scan`, however long it
    /// is held and whatever commits, splits, merges and checkpoints happen
    /// meanwhile. It takes no key locks, never waits for a transaction and
    /// never makes one wait (a read waits at most for the tree latch held
    /// for one tree operation). Many may be open at once, from many threads.
    ///
    /// Multi-version reads from before-images (see `Options::snapshot_cap_bytes`
    /// for what an old snapshot costs and when it expires).
    ///
    /// ```
    /// # let dir = std::env::temp_dir().join(format!("ariesdb-doc-snap-{}", std::process::id()));
    /// # let _ = std::fs::remove_dir_all(&dir);
    /// let db = ariesdb::Db::open(&dir)?;
    /// let mut tx = db.begin()?;
    /// tx.put(b"k", b"old")?;
    /// tx.commit()?;
    /// let snap = db.begin_read()?;
    /// let mut tx = db.begin()?;
    /// tx.put(b"k", b"new")?;
    /// tx.commit()?;
    /// assert_eq!(snap.get(b"k")?, Some(b"old".to_vec()));
    /// assert_eq!(db.begin_read()?.get(b"k")?, Some(b"new".to_vec()));
    /// # drop(snap); db.close()?; let _ = std::fs::remove_dir_all(&dir);
    /// # Ok::<(), ariesdb::Error>(())
    /// ```
    ///
    /// # Errors
    /// `Error::Failed` or `Error::Closed` once the database stopped or closed.
    pub fn begin_read(&self) -> Result<Snapshot> {
        Snapshot::begin(self.inner.clone())
    }

    /// Take a fuzzy checkpoint now; transactions keep running. It bounds the
    /// log that the next restart reads, and lets older log segments go
    /// (docs/design.md, section 6).
    ///
    /// # Errors
    /// `Error::Failed` or `Error::Closed` once the database stopped or
    /// closed; `Error::ReadOnly` on a database opened read-only; an I/O
    /// error of its writes or syncs, which stops the database.
    pub fn checkpoint(&self) -> Result<()> {
        self.inner.check_writable()?;
        let r = self.inner.checkpoint(CheckpointReason::Manual);
        self.inner.guard(r)
    }

    /// Integrity check: page checksums, B+tree order and links, overflow
    /// chains, free-space accounting, page fill and the tree's height bound.
    /// Runs under the tree latch held shared: readers go on, writers wait.
    ///
    /// # Errors
    /// As `check_report`.
    pub fn check(&self) -> Result<()> {
        self.check_report().map(|_| ())
    }

    /// Like `check`, and says what it counted.
    ///
    /// # Errors
    /// `Error::Corruption` naming the first problem found (the `Db` goes on
    /// serving what it can); `Error::Failed` or `Error::Closed` once the
    /// database stopped or closed; an I/O error reading a page, which stops
    /// the database.
    pub fn check_report(&self) -> Result<CheckReport> {
        self.inner.check_ok()?;
        let r = self.inner.read_latch().and_then(|_r| self.inner.tree().check());
        self.inner.guard_read(r)
    }

    /// Shrink the data file to the pages in use: move the pages at its end
    /// into free pages below (each move one logged, crash-safe step), write
    /// back every dirty page, take a checkpoint, and cut the file. Returns
    /// the data file's new length in pages. Transactions may stay open; the
    /// pages move in rounds of up to 4 MiB of log (one page write's worth per
    /// page moved), each under the tree latch, so other operations wait for a
    /// round and run between rounds, while the log is flushed.
    ///
    /// # Errors
    /// `Error::Corruption` if the tree fails its check (run first, under the
    /// read latch) before anything moves; the `Db` goes on working then. An
    /// I/O error of the log or data file during the moves stops the `Db`
    /// (fail-stop), and reopening recovers to a whole tree, with or without
    /// the moves already logged.
    pub fn compact(&self) -> Result<u64> {
        self.inner.check_writable()?;
        let _one_at_a_time = self.inner.compacting.lock();
        // Damage found before anything moves is reported like `check`'s,
        // without stopping the database.
        let r = self.inner.read_latch().and_then(|_r| self.inner.tree().check());
        self.inner.guard_read(r)?;
        let r = self.inner.compact();
        self.inner.guard(r)
    }

    /// What the last open's recovery did. After an instant restart the
    /// redo counts (`redone`, `skipped`, `pages_rebuilt`) and the deferred
    /// redo's progress (`pages_redone_on_demand`,
    /// `pages_redone_in_background`, `deferred_redo_us`) grow until every
    /// deferred page is redone.
    pub fn recovery_report(&self) -> RecoveryReport {
        let mut r = self.inner.report.clone();
        if let Some(p) = &self.inner.pending {
            let c = &p.counters;
            r.redone += c.redone.load(Ordering::Relaxed);
            r.skipped += c.skipped.load(Ordering::Relaxed);
            r.pages_rebuilt += c.pages_rebuilt.load(Ordering::Relaxed);
            r.pages_redone_on_demand = c.pages_on_demand.load(Ordering::Relaxed);
            r.pages_redone_in_background = c.pages_in_background.load(Ordering::Relaxed);
            r.deferred_redo_us = p.finished_us();
        }
        let u = &self.inner.undo;
        r.undone += u.steps.load(Ordering::Relaxed);
        r.undo_deferred_losers = u.deferred.load(Ordering::Relaxed);
        r.losers_rolled_back_in_background = u.in_background.load(Ordering::Relaxed);
        r.deferred_undo_us = u.finished_us.load(Ordering::Relaxed);
        r
    }

    /// Counters since open.
    pub fn stats(&self) -> Stats {
        self.inner.stats()
    }

    /// Make every commit acknowledged so far durable now (with
    /// `Durability::Eventual`, commits are otherwise durable within the
    /// background writer's next tick, at `close()`, or at the drop of the
    /// `Db`). With `Durability::Immediate` there is nothing to do. Does not
    /// write back pages or checkpoint.
    ///
    /// # Errors
    /// `Error::Failed` or `Error::Closed` if the database is stopped or closed;
    /// an I/O error of the log flush (which stops the database).
    pub fn sync(&self) -> Result<()> {
        self.inner.check_ok()?;
        if self.inner.read_only {
            return Ok(());
        }
        let r = self.inner.wal.flush_all();
        self.inner.guard(r)
    }

    /// Clean shutdown: every commit made durable, every dirty page written, a
    /// final checkpoint, and the log's end recorded, so the next open reads
    /// the log only to there and redoes nothing. After an instant restart it
    /// first finishes the background redo and the rollback of the losers
    /// (`Options::instant_restart`). A transaction still open is not waited
    /// for: the next open rolls it back (a loser), and every call on it
    /// after the close returns `Error::Closed`.
    ///
    /// # Errors
    /// The first cause if the database had stopped (`Error::Failed`); an I/O
    /// error of the final writes (the next open recovers).
    pub fn close(mut self) -> Result<()> {
        self.stop_background();
        self.inner.check_ok()?;
        if self.inner.read_only {
            // Nothing to write back: what recovery wrote is in memory only.
            self.inner.closed.store(true, Ordering::Release);
            log::info!("closed {}: nothing was written", self.inner.place);
            return Ok(());
        }
        let r = self.inner.close();
        self.inner.closed.store(true, Ordering::Release);
        self.inner.guard(r)
    }

    fn stop_background(&mut self) {
        *self.inner.bg_stop.lock() = true;
        self.inner.bg_cv.notify_all();
        if let Some(h) = self.bg.take() {
            let _ = h.join();
        }
        if let Some(h) = self.redo_bg.take() {
            let _ = h.join();
        }
        if let Some(h) = self.undo_bg.take() {
            let _ = h.join();
        }
    }
}

/// Dropping a `Db` without `close()` (a plain `drop`, an early `?` return,
/// a panic unwinding through the owner) makes every acknowledged commit
/// durable: it flushes the log, as `sync` does. It does not write back dirty
/// pages or checkpoint (that is `close()`'s job; the next open redoes from the
/// log), never panics, and reports nothing: if storage has failed, the flush
/// fails and the drop gives up quietly (then commits of `Durability::Eventual`
/// after the last durable point may be lost, exactly as after a crash).
///
/// Transactions still open at the drop are neither committed nor rolled back
/// here: they are losers, rolled back by recovery at the next open. A `Txn`
/// that outlives its `Db` keeps the engine's state, its files and, on real
/// files, the directory lock alive until it is dropped (a reopen meanwhile
/// fails with `Error::Locked`); every call on it returns `Error::Closed`, and
/// dropping it logs nothing. A transaction waiting for a key lock at the
/// drop (or at `close`) is woken with `Error::Closed`: the locks of the
/// transactions left open are no longer granted to anyone.
impl Drop for Db {
    fn drop(&mut self) {
        self.stop_background();
        let inner = &self.inner;
        let was_closed = inner.closed.swap(true, Ordering::SeqCst);
        // Lock waits end with `Error::Closed`, and no lock is granted any
        // more: the transactions left open keep the locks on the keys they
        // changed (`Txn`'s drop), so nobody may wait for those.
        inner.locks.close();
        if was_closed || inner.read_only {
            return;
        }
        log::debug!("Db dropped without close(): flushing its log; the next open recovers");
        // Pairs with the fence in `Txn::commit`: a commit that appended its
        // record after this flush read the end of the log sees `closed` and
        // flushes itself.
        std::sync::atomic::fence(Ordering::SeqCst);
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| inner.wal.flush_all_at_drop()));
    }
}

impl Inner {
    /// Recover (see `recovery::recover`), wire the layers together, and take
    /// the closing checkpoint of recovery.
    fn open(storage: Arc<dyn Storage>, opts: Options, place: &str) -> Result<Inner> {
        let started = Instant::now();
        let params = OpenParams {
            page_size: opts.page_size,
            segment_bytes: opts.segment_bytes(),
            buffer_pool_pages: opts.buffer_pool_pages,
            instant_restart: opts.instant_restart,
            escalate_keys: opts.lock_escalation_keys,
            // About 128 bytes of versions per key listed, within the cap
            // snapshots have.
            list_keys: (opts.snapshot_cap_bytes / 128).max(1),
        };
        let r = recovery::recover(storage, &params)?;
        let start = r.start;
        let inner = Inner {
            page_size: r.master.page_size as usize,
            data_file: r.data_file,
            wal: r.wal,
            pool: r.pool,
            tree_latch: TreeLatch::new(),
            txns: SharedTxnTable::new(r.txns),
            locks: LockManager::with_fail_stop(r.stop.clone(), opts.lock_timeout),
            next_txn_id: AtomicU64::new(r.next_txn_id.get()),
            versions: VersionStore::new(opts.snapshot_cap_bytes, opts.lock_escalation_keys),
            ckpt: Checkpointer::new(r.master_file, r.master.checkpoint_lsn),
            compacting: Mutex::new(()),
            stop: r.stop,
            closed: AtomicBool::new(false),
            bg_stop: Mutex::new(false),
            bg_cv: Condvar::new(),
            report: r.report,
            pending: r.pending,
            undo: restart_undo::RestartUndo::new(
                #[cfg(test)]
                opts.hold_restart_undo,
            ),
            counters: Counters::default(),
            opts,
            read_only: false,
            place: place.to_string(),
            dir: None,
        };
        inner.adopt_losers(r.losers)?;
        inner.checkpoint(CheckpointReason::Open)?;
        inner.log_open(place, start, started);
        Ok(inner)
    }

    /// The info line of an open: where, how the database was found, what
    /// recovery did.
    fn log_open(&self, place: &str, start: Start, started: Instant) {
        let r = &self.report;
        let how = match start {
            Start::Created => format!("created a new database {place}"),
            Start::Clean if r.losers == 0 => format!("opened the database {place} after a clean close"),
            Start::Clean => format!(
                "opened the database {place} after a clean close, rolling back {} transactions left open at it{}",
                r.losers,
                if self.losers_left() { " in the background" } else { "" }
            ),
            Start::Crashed if r.redo_deferred_pages > 0 || self.losers_left() => format!(
                "opened the database {place} after recovery from an unclean shutdown (instant restart: redo of {} \
                 pages deferred to their first read{}; {} losers, {} of them rolled back in the background)",
                r.redo_deferred_pages,
                if self.opts.background_writer { " and the background pass" } else { " and the close" },
                r.losers,
                self.undo.deferred.load(Ordering::Relaxed)
            ),
            Start::Crashed => format!(
                "opened the database {place} after recovery from an unclean shutdown ({} records redone, {} losers \
                 rolled back)",
                r.redone, r.losers
            ),
        };
        log::info!(
            "{how}: page size {} bytes, log ends at LSN {}; open took {:.1} ms",
            self.page_size,
            self.wal.end_lsn(),
            started.elapsed().as_secs_f64() * 1000.0
        );
    }

    fn tree(&self) -> BTree<'_> {
        BTree::new(&self.pool)
    }

    fn check_ok(&self) -> Result<()> {
        self.stop.check()?;
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        Ok(())
    }

    /// As `check_ok`, and refuses a read-only `Db` (`Error::ReadOnly`).
    fn check_writable(&self) -> Result<()> {
        self.check_ok()?;
        match self.read_only {
            true => Err(Error::ReadOnly),
            false => Ok(()),
        }
    }

    /// Stop the database because of `e`; the first cause is kept and carried
    /// by every later `Error::Failed`, the lock waiters' included (the
    /// shared `FailStop` wakes them).
    fn fail(&self, e: &Error) {
        self.stop.stop(e);
    }

    /// Fail-stop for write paths: any error except the caller's own mistakes
    /// (sizes, arguments, deadlock, lock timeout, ended transaction) stops
    /// the database.
    fn guard<T>(&self, r: Result<T>) -> Result<T> {
        if let Err(e) = &r {
            match e {
                Error::TooLarge { .. }
                | Error::InvalidArgument(_)
                | Error::Deadlock
                | Error::LockTimeout { .. }
                | Error::TxnEnded
                | Error::Closed => {}
                _ => self.fail(e),
            }
        }
        r
    }

    /// Fail-stop for read paths: I/O errors stop the database; corruption is
    /// reported but the database keeps serving what it can.
    fn guard_read<T>(&self, r: Result<T>) -> Result<T> {
        if let Err(e @ (Error::Io(_) | Error::Failed { .. })) = &r {
            self.fail(e);
        }
        r
    }

    /// Take the tree latch for reading (`TreeLatch::for_read`).
    fn read_latch(&self) -> Result<TreeReadGuard<'_>> {
        self.tree_latch.for_read(&self.pool, &self.wal)
    }

    /// The engine's parts a transaction's tree changes, outcome records and
    /// rollback use.
    fn txn_env(&self) -> TxnEnv<'_> {
        TxnEnv { latch: &self.tree_latch, pool: &self.pool, wal: &self.wal, txns: &self.txns, versions: &self.versions }
    }

    /// The engine's parts a checkpoint reads and writes.
    fn ckpt_sources(&self) -> Sources<'_> {
        Sources { env: self.txn_env(), next_txn_id: &self.next_txn_id }
    }

    fn checkpoint(&self, reason: CheckpointReason) -> Result<()> {
        self.ckpt.take(&self.ckpt_sources(), reason)
    }

    /// A checkpoint if the log has grown by `checkpoint_interval_bytes` since
    /// the last one began, or a release checkpoint if log the last one kept
    /// for an open transaction or a snapshot is no longer held
    /// (`Checkpointer::take_if_due`).
    fn checkpoint_if_due(&self) -> Result<()> {
        self.ckpt.take_if_due(&self.ckpt_sources(), self.opts.checkpoint_interval_bytes)
    }

    /// After an instant restart: redo every page that still owes redo, here
    /// and now (each by loading it into the pool), then forget the list.
    /// `close` and `compact` call this first.
    ///
    /// # Errors
    /// As a page fetch: `Error::Corruption` for a damaged page the log
    /// cannot rebuild; an I/O error.
    fn finish_redo(&self) -> Result<()> {
        let Some(p) = &self.pending else { return Ok(()) };
        while p.left() > 0 {
            for page_id in p.next_batch(REDO_BATCH) {
                drop(self.pool.fetch(page_id)?);
            }
        }
        self.pool.clear_load_redo();
        Ok(())
    }

    /// The moves and the cut of `Db::compact`; the caller holds `compacting`.
    fn compact(&self) -> Result<u64> {
        self.finish_redo()?;
        compact_in_rounds(&self.tree_latch, &self.pool, &self.wal)?;
        // No record before this checkpoint is redone after a crash, so no
        // redo can touch the pages past the new end once they are cut.
        self.pool.flush_dirty(Lsn::MAX, usize::MAX)?;
        self.checkpoint(CheckpointReason::Compact)?;
        let page_count = {
            let _w = self.tree_latch.exclusive();
            // Writers may have grown the file again since: cut at today's count.
            let page_count = self.tree().meta()?.page_count as u64;
            self.data_file.set_len(page_count * self.page_size as u64)?;
            page_count
        };
        self.data_file.sync_data()?;
        Ok(page_count)
    }

    /// Write back every dirty page, then checkpoint: with no transaction
    /// open, the checkpoint's tables are empty and the next open has nothing
    /// to redo or undo. Then record where the log ends.
    fn close(&self) -> Result<()> {
        self.finish_undo()?;
        self.finish_redo()?;
        self.pool.flush_dirty(Lsn::MAX, usize::MAX)?;
        self.checkpoint(CheckpointReason::Close)?;
        self.wal.flush_all()?;
        // Record where the log ends, so the next open reads no further. With
        // the tree latch and the table lock held nothing can be appended
        // (changes, outcome records); `closed` refuses every later call. The
        // log is flushed outside them: if an operation in flight appended
        // after the flush above, there is no clean end to record, and its
        // records are flushed after the latches are released.
        let (clean, end, open_txns) = {
            let _w = self.tree_latch.exclusive();
            let t = self.txns.lock();
            self.closed.store(true, Ordering::Release);
            let end = self.wal.end_lsn();
            let clean = self.wal.durable_lsn() == end;
            if clean {
                self.ckpt.mark_clean(end)?;
            }
            (clean, end, t.active_txns.len())
        };
        if clean && open_txns > 0 {
            log::info!(
                "closed {}: log ends at LSN {end}; {open_txns} transaction(s) left open are rolled back at the \
                 next open",
                self.place
            );
        } else if clean {
            log::info!("closed cleanly {}: log ends at LSN {end}; the next open has nothing to recover", self.place);
        } else {
            self.wal.flush_all()?;
            log::info!(
                "closed: an operation in flight appended log after the final checkpoint, so the next open reads \
                 the log to its end"
            );
        }
        Ok(())
    }

    fn stats(&self) -> Stats {
        let end = self.wal.end_lsn();
        let v = self.versions.stats();
        let held: Vec<u64> = self
            .txns
            .lock()
            .active_txns
            .values()
            .filter(|e| !e.first_lsn.is_none())
            .map(|e| end.saturating_sub(e.first_lsn))
            .collect();
        let p = &self.pool.counters;
        let w = &self.wal.counters;
        Stats {
            commits: self.counters.commits.load(Ordering::Relaxed),
            aborts: self.counters.aborts.load(Ordering::Relaxed),
            deadlocks: self.counters.deadlocks.load(Ordering::Relaxed),
            lock_timeouts: self.counters.lock_timeouts.load(Ordering::Relaxed),
            checkpoints: self.ckpt.count(),
            wal_syncs: w.syncs.load(Ordering::Relaxed),
            wal_flushes: w.flushes.load(Ordering::Relaxed),
            wal_group_waits: w.group_waits.load(Ordering::Relaxed),
            wal_bytes_written: w.bytes_written.load(Ordering::Relaxed),
            wal_disk_bytes: self.wal.disk_bytes(),
            cache_hits: self.pool.hits(),
            cache_misses: p.misses.load(Ordering::Relaxed),
            evictions: p.evictions.load(Ordering::Relaxed),
            pages_written: p.pages_written.load(Ordering::Relaxed),
            full_page_images: p.fpis.load(Ordering::Relaxed),
            eviction_log_waits: p.eviction_log_waits.load(Ordering::Relaxed),
            wal_buffer_high_water_bytes: w.buffer_high_water.load(Ordering::Relaxed),
            wal_size_flushes: w.size_flushes.load(Ordering::Relaxed),
            log_flushes_under_latch: w.flushes_in_no_flush_zone.load(Ordering::Relaxed),
            locked_keys: self.locks.len() as u64,
            lock_escalations: self.counters.lock_escalations.load(Ordering::Relaxed),
            log_held_by_oldest_txn_bytes: held.iter().copied().max().unwrap_or(0),
            long_txns: held.iter().filter(|&&h| h > self.opts.long_txn_log_bytes).count() as u64,
            snapshots_open: v.snapshots as u64,
            snapshot_version_keys: v.keys as u64,
            snapshot_held_bytes: v.kept_bytes as u64,
            snapshots_expired: v.expired,
            pages_redone_on_demand: self
                .pending
                .as_ref()
                .map_or(0, |p| p.counters.pages_on_demand.load(Ordering::Relaxed)),
            pages_owing_redo: self.pending.as_ref().map_or(0, |p| p.left() as u64),
            losers_owing_undo: self.undo.left.load(Ordering::Relaxed),
        }
    }
}

/// The directory `path` on real files, created if missing, and locked.
fn lock_dir(path: &Path) -> Result<FsStorage> {
    FsStorage::new(path).map_err(|e| lock_error(path, e))
}

/// An error of opening the directory `path`: a lock held elsewhere is
/// `Error::Locked`.
fn lock_error(path: &Path, e: std::io::Error) -> Error {
    match e.kind() {
        std::io::ErrorKind::WouldBlock => Error::Locked { path: path.display().to_string() },
        // Io errors carry no path: say which, for the common mistakes.
        std::io::ErrorKind::NotADirectory | std::io::ErrorKind::AlreadyExists => {
            Error::InvalidArgument(format!("{} is not a directory: a database is a directory of files", path.display()))
        }
        std::io::ErrorKind::PermissionDenied => {
            Error::Io(std::io::Error::new(e.kind(), format!("opening {}: {e}", path.display())))
        }
        _ => Error::Io(e),
    }
}

/// For the opens that create nothing: `path` is a directory holding the
/// data file, or `Error::NotFound`. Without `locked`, looked for on the
/// path, before the directory is locked; with it, in the storage that holds
/// the lock (the data file may have been removed in between).
fn require_database(path: &Path, locked: Option<&FsStorage>) -> Result<()> {
    let not_found = |reason| Error::NotFound { path: path.display().to_string(), reason };
    let no_data = || not_found("the directory holds no data.db");
    if let Some(storage) = locked {
        return match storage.list()?.iter().any(|n| n == DATA_FILE) {
            true => Ok(()),
            false => Err(no_data()),
        };
    }
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(not_found("the directory does not exist")),
        Err(e) => Err(Error::Io(e)),
        Ok(m) if !m.is_dir() => Err(not_found("it is not a directory")),
        Ok(_) if !path.join(DATA_FILE).try_exists()? => Err(no_data()),
        Ok(_) => Ok(()),
    }
}

/// A pause between half and all of `pause`, drawn from the clock and the
/// thread, so that transactions that collided do not retry in step.
fn jitter(pause: Duration) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos());
    let frac = (h.finish() % 1024) as u32;
    pause / 2 + pause / 2 * frac / 1024
}

fn check_key(key: &[u8]) -> Result<()> {
    if key.is_empty() {
        return Err(Error::InvalidArgument("keys must not be empty".into()));
    }
    if key.len() > MAX_KEY_LEN {
        return Err(Error::TooLarge { what: "key", len: key.len(), max: MAX_KEY_LEN });
    }
    Ok(())
}

/// A range of keys for `scan_range` and `scan_range_rev` of `Txn` and
/// `Snapshot`: the standard range types (`a..b`, `a..=b`, `a..`, `..b`,
/// `..=b`, `..`) and pairs of `Bound`, over any key type that is
/// `AsRef<[u8]>` (`&str`, `String`, `&[u8]`, `Vec<u8>`, byte string
/// literals, arrays). Each range type has one implementation, so the key
/// type is never ambiguous (`std::ops::RangeBounds` would be, for byte
/// string literals). A pair of two `Bound::Unbounded` names no key type:
/// write `..`.
pub trait KeyRange {
    /// The start and end bounds, as byte strings.
    fn key_bounds(&self) -> (Bound<&[u8]>, Bound<&[u8]>);
}

macro_rules! key_range {
    ($($t:ty => |$r:ident| $e:expr;)*) => {$(
        impl<K: AsRef<[u8]>> KeyRange for $t {
            fn key_bounds(&self) -> (Bound<&[u8]>, Bound<&[u8]>) {
                let $r = self;
                $e
            }
        }
    )*};
}

key_range! {
    std::ops::Range<K> => |r| (Bound::Included(r.start.as_ref()), Bound::Excluded(r.end.as_ref()));
    std::ops::RangeInclusive<K> => |r| (Bound::Included(r.start().as_ref()), Bound::Included(r.end().as_ref()));
    std::ops::RangeFrom<K> => |r| (Bound::Included(r.start.as_ref()), Bound::Unbounded);
    std::ops::RangeTo<K> => |r| (Bound::Unbounded, Bound::Excluded(r.end.as_ref()));
    std::ops::RangeToInclusive<K> => |r| (Bound::Unbounded, Bound::Included(r.end.as_ref()));
    (Bound<K>, Bound<K>) => |r| (r.0.as_ref().map(|k| k.as_ref()), r.1.as_ref().map(|k| k.as_ref()));
}

impl KeyRange for std::ops::RangeFull {
    fn key_bounds(&self) -> (Bound<&[u8]>, Bound<&[u8]>) {
        (Bound::Unbounded, Bound::Unbounded)
    }
}

/// The bounds of a `RangeBounds<[u8]>` (the argument of `scan`) as owned keys.
fn owned_slice_bounds<R: std::ops::RangeBounds<[u8]>>(range: &R) -> (Bound<Vec<u8>>, Bound<Vec<u8>>) {
    (range.start_bound().map(<[u8]>::to_vec), range.end_bound().map(<[u8]>::to_vec))
}

/// The bounds of `range` as owned keys.
fn owned_bounds(range: &impl KeyRange) -> (Bound<Vec<u8>>, Bound<Vec<u8>>) {
    let (lo, hi) = range.key_bounds();
    (lo.map(<[u8]>::to_vec), hi.map(<[u8]>::to_vec))
}

/// The range of the keys that start with `prefix`: from `prefix` itself
/// (included) to the first key past every key with the prefix (its last
/// byte below 0xFF incremented, what follows dropped), or to the end when
/// the prefix is empty or all 0xFF.
fn prefix_bounds(prefix: &[u8]) -> (Bound<Vec<u8>>, Bound<Vec<u8>>) {
    let lo = match prefix.is_empty() {
        true => Bound::Unbounded,
        false => Bound::Included(prefix.to_vec()),
    };
    let hi = match prefix.iter().rposition(|&b| b != 0xFF) {
        Some(i) => {
            let mut end = prefix[..=i].to_vec();
            end[i] += 1;
            Bound::Excluded(end)
        }
        None => Bound::Unbounded,
    };
    (lo, hi)
}

/// The range of the keys that start with `prefix`, for `scan_range` and
/// `scan_range_rev` of `Txn` and `Snapshot` (`scan_prefix` is the same,
/// ascending).
///
/// ```
/// use std::ops::Bound;
/// assert_eq!(
///     ariesdb::prefix_range("ab"),
///     (Bound::Included(b"ab".to_vec()), Bound::Excluded(b"ac".to_vec()))
/// );
/// // A last byte of 0xFF carries into the byte before it.
/// assert_eq!(ariesdb::prefix_range([1u8, 0xFF]).1, Bound::Excluded(vec![2u8]));
/// ```
pub fn prefix_range(prefix: impl AsRef<[u8]>) -> (Bound<Vec<u8>>, Bound<Vec<u8>>) {
    prefix_bounds(prefix.as_ref())
}

fn as_ref(b: &Bound<Vec<u8>>) -> Bound<&[u8]> {
    match b {
        Bound::Included(k) => Bound::Included(k),
        Bound::Excluded(k) => Bound::Excluded(k),
        Bound::Unbounded => Bound::Unbounded,
    }
}
