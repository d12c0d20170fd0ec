//! An embedded transactional key-value storage engine that recovers by ARIES.
//!
//! An application links ariesdb, opens a directory, and reads and writes
//! byte-string keys in transactions; there is no server and no SQL.
//! Durability and atomicity come from ARIES (Mohan et al., ACM TODS 1992): a
//! write-ahead log of physiological redo and logical undo records, steal and
//! no-force buffer management, fuzzy checkpoints, and restart recovery in
//! three passes (analysis, redo that repeats history, undo that writes
//! compensation log records).
//!
//! # Quick start
//!
//! ```
//! use ariesdb::{Db, Error};
//!
//! # fn main() -> Result<(), Error> {
//! # let dir = std::env::temp_dir().join(format!("ariesdb-doc-root-{}", std::process::id()));
//! # let _ = std::fs::remove_dir_all(&dir);
//! let db = Db::open(&dir)?; // creates the directory and an empty database if needed
//!
//! // A read-write transaction: durable once commit returns.
//! let mut tx = db.begin()?;
//! tx.put("alice", "100")?; // keys and values: &str, &[u8], Vec<u8>, arrays, ...
//! tx.put("bob", "50")?;
//! tx.commit()?;
//!
//! // A transaction that Db::transaction commits, and runs again if a
//! // deadlock chose it as the victim.
//! db.transaction(|tx| {
//!     tx.delete("bob")?;
//!     tx.put("carol", "50")
//! })?;
//!
//! // A read-only snapshot: the committed state at its begin, without locks.
//! let snap = db.begin_read()?;
//! let keys: Vec<Vec<u8>> = snap.scan(..)?.map(|e| e.map(|(k, _)| k)).collect::<Result<_, _>>()?;
//! assert_eq!(keys, [b"alice".to_vec(), b"carol".to_vec()]);
//! drop(snap);
//!
//! db.close()?; // clean shutdown: the next open has nothing to recover
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok(())
//! # }
//! ```
//!
//! # The main types
//!
//! - [`Db`]: an open database. [`Db::open`] (creating it if needed),
//!   [`Db::open_existing`] (never creating), [`Db::open_read_only`] (for
//!   inspection: recovery in memory, nothing written), [`Db::open_with`] (on
//!   any [`storage::Storage`]); [`Db::begin`], [`Db::begin_read`],
//!   [`Db::transaction`], [`Db::backup`], [`Db::check`], [`Db::compact`],
//!   [`Db::close`].
//! - [`Txn`]: a read-write transaction with key locks, [`Savepoint`]s and
//!   serializable scans ([`Scan`], [`KeyRange`], [`prefix_range`]).
//! - [`Snapshot`]: a read-only snapshot ([`SnapshotScan`]).
//! - [`Options`] and [`Durability`]: page size, buffer pool, durability,
//!   checkpoints, lock timeout, snapshot cap.
//! - [`Error`] (with [`Error::is_retryable`]), [`StopCause`],
//!   [`SnapshotTooOld`].
//! - Reports: [`Stats`], [`RecoveryReport`], [`CheckReport`],
//!   [`BackupReport`].
//! - [`storage`]: the files underneath: [`storage::FsStorage`] (real files),
//!   [`storage::SimStorage`] (a simulated disk that loses, tears and reorders
//!   unsynced writes and injects faults, deterministically from a seed, to
//!   crash-test an application), [`storage::OverlayStorage`].
//!
//! # Guarantees
//!
//! - Durability: under [`Durability::Immediate`] (the default) a commit
//!   returns after its commit record is on stable storage, and concurrent
//!   committers share one log fsync; under [`Durability::Eventual`] it
//!   returns before, and a crash may lose a suffix of the latest commits
//!   (never a gap). A transaction is never half there.
//! - Recovery: after a process kill, a power loss, an I/O error or a full
//!   disk, the next open brings back every commit that was durable (under
//!   [`Durability::Immediate`], every acknowledged one) and rolls back every
//!   transaction that did not commit. Torn data pages are rebuilt from
//!   full page images in the log; damage no crash explains is
//!   [`Error::Corruption`].
//! - Isolation: strict two-phase locking with next-key locking makes
//!   read-write transactions, scans included, serializable. A deadlock
//!   ([`Error::Deadlock`]) or a lock wait past [`Options::lock_timeout`]
//!   ([`Error::LockTimeout`]) rolls the transaction back; both are retryable.
//!   Snapshots never wait and never make a writer wait; one held past
//!   [`Options::snapshot_cap_bytes`] of later changes expires with
//!   [`Error::SnapshotTooOld`].
//! - Fail-stop: after an error while changing the database, every later call
//!   returns [`Error::Failed`] with the first cause; reopening recovers.
//! - Shutdown: [`Db::close`] writes everything back and reports errors; a
//!   dropped [`Db`] flushes the log, so no acknowledged commit is lost.
//!
//! README.md has the full table of what survives what, the limits and the
//! command-line tool; `docs/design.md` (formats, the recovery algorithm, the
//! invariants and where the code enforces them), `docs/testing.md` (the
//! fault model and the crash tests) and `docs/benchmarks.md` come in the
//! source package beside it.
#![doc(test(attr(deny(warnings))))]
#![deny(unsafe_code)]
#![warn(missing_docs)]

mod alloc;
mod btree;
mod buffer;
mod codec;
mod db;
pub mod error;
mod failstop;
#[doc(hidden)]
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
mod options;
mod page;
mod recovery;
pub mod storage;
mod txn;
mod txn_log;
mod types;
mod wal;

use std::ops::Bound;

pub use btree::{CheckReport, MAX_KEY_LEN, MAX_VALUE_LEN};
pub use db::{
    prefix_range, BackupReport, Db, KeyRange, Savepoint, Scan, Snapshot, SnapshotScan, Stats, Txn, DATA_FILE,
};
pub use error::{Error, Result, SnapshotTooOld, StopCause};
pub use options::{Durability, Options, MAX_WAL_SEGMENT_BYTES, MIN_BUFFER_POOL_PAGES, MIN_WAL_SEGMENT_BYTES};
pub use recovery::RecoveryReport;

/// README.md's examples, run by `cargo test --doc` (the crate's front page
/// above is its own text: README's links to the files beside it would not
/// resolve in rustdoc).
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

/// The half-open key range `[start, end)`, for `Txn::scan`.
pub fn range<'a>(start: &'a [u8], end: &'a [u8]) -> (Bound<&'a [u8]>, Bound<&'a [u8]>) {
    (Bound::Included(start), Bound::Excluded(end))
}

/// Internals exposed for the fuzz targets and the command-line tool (the
/// `internals` feature); not a stable API.
#[cfg(feature = "internals")]
#[doc(hidden)]
pub mod internals {
    pub use crate::page::{verify, PageState};
    pub use crate::types::{Lsn, PageId, TxnId};
    pub use crate::wal::reader::read_log;
    pub use crate::wal::{decode_record, encode_record, parse_segment_name, segment_name, LogRecord, LSN_START};
}
