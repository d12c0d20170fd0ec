//! The one error type of the crate.
//!
//! Invariant: every error that comes from the storage layer while the engine is
//! changing state turns the `Db` into a failed `Db` (fail-stop); the variants
//! here only describe what went wrong, the policy lives in `db.rs`.

use std::fmt;
use std::time::Duration;

/// Everything that can go wrong in ariesdb.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A read, write or sync of a file failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),

    /// On-disk state that no crash can explain: a checksum that does not match
    /// outside the torn tail of the log, a length or offset out of range, a
    /// missing file, a broken B+tree link.
    #[error("corruption in {file}: {detail}")]
    Corruption {
        /// The file or structure where the damage was found (`data`, `wal`, `btree`, ...).
        file: &'static str,
        /// What was wrong, with the page id or LSN where it was found.
        detail: String,
    },

    /// This transaction was chosen as the victim of a deadlock and has been
    /// rolled back. Retry it: `Db::transaction` does, and `Error::is_retryable`
    /// shows a retry loop of your own. Deadlocks are found when a lock wait
    /// would close a cycle in the waits-for graph; the transaction whose
    /// request closes it is the victim.
    #[error("deadlock: this transaction was rolled back; retry it")]
    Deadlock,

    /// A lock wait lasted longer than `Options::lock_timeout`: another
    /// transaction held a conflicting lock all that time (perhaps one driven
    /// from the same thread, which can never release it meanwhile). This
    /// transaction has been rolled back, as a deadlock victim is. Retry it;
    /// if transactions are expected to hold locks that long, raise the timeout.
    #[error(
        "lock wait timed out after {waited:?} (Options::lock_timeout): this transaction was rolled back; \
         retry it, or raise lock_timeout if other transactions hold their locks that long"
    )]
    LockTimeout {
        /// How long the call waited before it gave up (at least the timeout).
        waited: Duration,
    },

    /// A key or value is larger than the limits.
    #[error("{what} is {len} bytes; the limit is {max}")]
    TooLarge {
        /// `"key"` or `"value"`.
        what: &'static str,
        /// The length given.
        len: usize,
        /// The largest length accepted.
        max: usize,
    },

    /// An argument is outside what the engine accepts (an empty key, a page
    /// size that is not a power of two, a savepoint of another transaction).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// The directory is already open by another `Db`, in this or another process.
    #[error(
        "the database at {path} is in use by another Db, or by a transaction that outlived its Db (lock file held)"
    )]
    Locked {
        /// The directory.
        path: String,
    },

    /// An earlier error stopped this `Db` (fail-stop): it refuses all further
    /// work. `cause` is the first error that stopped it, typed; its message
    /// says what to do (after an I/O error or a full disk: drop the `Db` and
    /// open the database again, recovery brings back every acknowledged
    /// commit; after corruption: see `StopCause::Corruption`).
    #[error("the database stopped: {cause}")]
    Failed {
        /// The first error that stopped the database.
        cause: StopCause,
    },

    /// `Db::open_existing` found no database at `path`: the directory does
    /// not exist, is not a directory, or holds no data file. Nothing was
    /// created. Check the path; `Db::open` creates a new database.
    #[error("no ariesdb database at {path}: {reason} (nothing was created; check the path, or use Db::open to create a database)")]
    NotFound {
        /// The directory asked for.
        path: String,
        /// What is missing: `"the directory does not exist"`, `"it is not a
        /// directory"`, or `"the directory holds no data.db"`.
        reason: &'static str,
    },

    /// The `Db` was opened read-only (`Db::open_read_only`) and refuses every
    /// change: `begin`, `checkpoint`, `compact`. Reads (`begin_read`,
    /// `check`, `stats`, `backup`) work. Open the database with `Db::open`
    /// or `Db::open_existing` to change it.
    #[error(
        "the database was opened read-only (Db::open_read_only) and cannot be changed; \
         open it with Db::open_existing to write"
    )]
    ReadOnly,

    /// The `Db` was closed.
    #[error("the database is closed")]
    Closed,

    /// The transaction has already ended (committed, aborted, or rolled back
    /// after a deadlock).
    #[error("the transaction has already ended")]
    TxnEnded,

    /// This read-only snapshot needs versions that are not kept (`cause`
    /// says which): memory and the log stay bounded and writers never wait
    /// instead. Begin a new snapshot and retry.
    #[error("the snapshot can no longer be read: {cause}; begin a new snapshot")]
    SnapshotTooOld {
        /// Why the versions it needs are gone.
        cause: SnapshotTooOld,
    },

    /// Every frame of the buffer pool is pinned; raise `buffer_pool_pages`.
    #[error("all {frames} buffer pool frames are pinned; raise Options::buffer_pool_pages")]
    BufferPoolFull {
        /// The number of frames in the pool.
        frames: usize,
    },
}

/// Why a `Db` stopped: the first error that stopped it, carried by every
/// later `Error::Failed` (including the one a transaction waiting for a lock
/// gets when the stop wakes it).
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopCause {
    /// A read, write or sync of a file failed. Nothing was retried (after a
    /// failed sync the data may or may not be on disk). Drop the `Db` and
    /// open the database again: recovery decides from what is on stable
    /// storage and brings back every acknowledged commit.
    Io {
        /// The kind of the I/O error.
        kind: std::io::ErrorKind,
        /// Its message.
        message: String,
    },
    /// The storage is full (a write or a file extension failed for lack of
    /// space). Free space, then reopen: recovery brings back every
    /// acknowledged commit.
    OutOfSpace {
        /// The message of the I/O error.
        message: String,
    },
    /// Damage that no crash can explain was found while changing the
    /// database. Reopening runs recovery, which rebuilds torn pages from the
    /// log and cuts a torn log tail, but cannot repair other damage: if the
    /// damage is on stable storage, the open or `Db::check` reports it again
    /// (`Error::Corruption`) and the database must be restored from a copy;
    /// if it came from a transient bad read, the reopen succeeds and
    /// `Db::check` passes.
    Corruption {
        /// The file or structure where the damage was found (`data`, `wal`, `btree`, ...).
        file: &'static str,
        /// What was wrong, with the page id or LSN where it was found.
        detail: String,
    },
    /// Any other error in a write path (such as every buffer pool frame being
    /// pinned). Reopen the database to recover.
    Other {
        /// The error's message.
        message: String,
    },
}

impl StopCause {
    /// The stop cause an error gives when it stops a `Db`.
    pub fn from_error(e: &Error) -> StopCause {
        match e {
            Error::Io(io) => StopCause::from_io(io),
            Error::Corruption { file, detail } => StopCause::Corruption { file, detail: detail.clone() },
            Error::Failed { cause } => cause.clone(),
            other => StopCause::Other { message: other.to_string() },
        }
    }

    /// The stop cause of an I/O error: out of space for "no space left on
    /// device" (and a disk quota), otherwise I/O with its kind.
    pub fn from_io(e: &std::io::Error) -> StopCause {
        const ENOSPC: i32 = 28;
        const EDQUOT: i32 = 122;
        let no_space = matches!(e.kind(), std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded)
            || matches!(e.raw_os_error(), Some(ENOSPC | EDQUOT));
        if no_space {
            StopCause::OutOfSpace { message: e.to_string() }
        } else {
            StopCause::Io { kind: e.kind(), message: e.to_string() }
        }
    }
}

impl fmt::Display for StopCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StopCause::Io { kind, message } => write!(
                f,
                "I/O error ({kind}): {message}; drop the Db and open the database again: \
                 recovery brings back every acknowledged commit"
            ),
            StopCause::OutOfSpace { message } => write!(
                f,
                "out of space: {message}; free space, then open the database again: \
                 recovery brings back every acknowledged commit"
            ),
            StopCause::Corruption { file, detail } => write!(
                f,
                "corruption in {file}: {detail}; reopening runs recovery, which repairs torn pages \
                 and a torn log tail but no other damage: if the open or Db::check reports \
                 corruption again, restore the database from a copy"
            ),
            StopCause::Other { message } => {
                write!(f, "{message}; open the database again to recover")
            }
        }
    }
}

/// Why a read-only snapshot can no longer be read (`Error::SnapshotTooOld`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SnapshotTooOld {
    /// It was held while more than `cap_bytes` of versions committed after
    /// its begin piled up for it (`Options::snapshot_cap_bytes`).
    CapReached {
        /// The cap, in bytes.
        cap_bytes: usize,
    },
    /// It reads keys in the range of a transaction it must not see (still
    /// open, or committed after its begin) that changed more than
    /// `escalation_keys` keys (`Options::lock_escalation_keys`): such a
    /// transaction keeps no versions of its keys.
    LargeTransaction {
        /// The number of keys past which a transaction keeps no versions.
        escalation_keys: usize,
    },
}

impl fmt::Display for SnapshotTooOld {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SnapshotTooOld::CapReached { cap_bytes } => write!(
                f,
                "more than snapshot_cap_bytes ({cap_bytes} bytes) of changes committed since it began and were kept for it"
            ),
            SnapshotTooOld::LargeTransaction { escalation_keys } => write!(
                f,
                "it reads keys that a transaction it must not see changed, and that transaction changed more than \
                 lock_escalation_keys ({escalation_keys}) keys, so it kept no older versions"
            ),
        }
    }
}

impl Error {
    /// True when retrying may succeed: a deadlock or a lock wait that timed
    /// out (retry the transaction), an expired snapshot (begin a new one).
    /// Never for I/O errors or corruption.
    ///
    /// A retry loop, for when `Db::transaction` does not fit (say, to count
    /// attempts or to log them). Two threads write the same two keys in
    /// opposite orders; once each holds its first key, the second request
    /// closes a cycle, its transaction is rolled back with `Error::Deadlock`,
    /// and it runs again:
    ///
    /// ```
    /// use ariesdb::{Db, Error};
    /// use std::sync::Barrier;
    /// # let dir = std::env::temp_dir().join(format!("ariesdb-doc-retry-{}", std::process::id()));
    /// # let _ = std::fs::remove_dir_all(&dir);
    /// let db = Db::open(&dir)?;
    /// let mut tx = db.begin()?;
    /// tx.put("x", "0")?;
    /// tx.put("y", "0")?;
    /// tx.commit()?;
    ///
    /// let both_hold_one = Barrier::new(2);
    /// // Runs the transaction until it commits; returns how many attempts it took.
    /// let write_both = |first: &str, second: &str| -> Result<u32, Error> {
    ///     let mut attempt = 0;
    ///     loop {
    ///         attempt += 1;
    ///         let result = (|| -> Result<(), Error> {
    ///             let mut tx = db.begin()?;
    ///             tx.put(first, "1")?;
    ///             if attempt == 1 {
    ///                 both_hold_one.wait();
    ///             }
    ///             tx.put(second, "1")?; // one of the two threads gets Error::Deadlock here
    ///             tx.commit()
    ///         })();
    ///         match result {
    ///             Ok(()) => return Ok(attempt),
    ///             // The transaction was rolled back: run it again, a few times at most.
    ///             Err(e) if e.is_retryable() && attempt < 10 => continue,
    ///             Err(e) => return Err(e),
    ///         }
    ///     }
    /// };
    /// let (a, b) = std::thread::scope(|s| {
    ///     let a = s.spawn(|| write_both("x", "y"));
    ///     let b = s.spawn(|| write_both("y", "x"));
    ///     (a.join().unwrap(), b.join().unwrap())
    /// });
    /// assert_eq!(a? + b?, 3); // the victim ran twice
    /// assert_eq!(db.stats().deadlocks, 1);
    /// # db.close()?; let _ = std::fs::remove_dir_all(&dir);
    /// # Ok::<(), ariesdb::Error>(())
    /// ```
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::Deadlock | Error::LockTimeout { .. } | Error::SnapshotTooOld { .. })
    }

    /// Shorthand for a corruption error.
    pub(crate) fn corruption(file: &'static str, detail: impl fmt::Display) -> Error {
        Error::Corruption { file, detail: detail.to_string() }
    }
}

/// The result type of the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retryable_only_for_deadlocks_and_lock_timeouts() {
        assert!(Error::Deadlock.is_retryable());
        let timeout = Error::LockTimeout { waited: Duration::from_millis(250) };
        assert!(timeout.is_retryable());
        assert!(timeout.to_string().contains("250ms") && timeout.to_string().contains("retry"), "{timeout}");
        assert!(!Error::Io(std::io::Error::other("x")).is_retryable());
        assert!(!Error::corruption("wal", "bad").is_retryable());
        assert!(!Error::ReadOnly.is_retryable());
        assert!(Error::ReadOnly.to_string().contains("opened read-only"), "{}", Error::ReadOnly);
    }

    #[test]
    fn stop_causes_are_typed() {
        let full = std::io::Error::new(std::io::ErrorKind::StorageFull, "disk full");
        assert!(matches!(StopCause::from_error(&Error::Io(full)), StopCause::OutOfSpace { .. }));
        let enospc = std::io::Error::from_raw_os_error(28);
        assert!(matches!(StopCause::from_io(&enospc), StopCause::OutOfSpace { .. }));
        let eio = std::io::Error::other("bad sector");
        assert!(matches!(
            StopCause::from_error(&Error::Io(eio)),
            StopCause::Io { kind: std::io::ErrorKind::Other, .. }
        ));
        let c = StopCause::from_error(&Error::corruption("btree", "loop"));
        assert_eq!(c, StopCause::Corruption { file: "btree", detail: "loop".into() });
        let failed = Error::Failed { cause: c.clone() };
        assert_eq!(StopCause::from_error(&failed), c);
        assert!(failed.to_string().contains("corruption in btree: loop"), "{failed}");
        assert!(!failed.to_string().contains("I/O error"), "{failed}");
    }
}
