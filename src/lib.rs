//! ariesdb: an embedded transactional key-value storage engine that recovers
//! by ARIES.
//!
//! ```no_run
//! use ariesdb::{Db, Options, Durability};
//! let db = Db::open("my-data")?;
//! let mut tx = db.begin()?;
//! tx.put(b"hello", b"world")?;
//! tx.commit()?;
//! let mut tx = db.begin()?;
//! assert_eq!(tx.get(b"hello")?, Some(b"world".to_vec()));
//! tx.commit()?;
//! db.close()?;
//! # Ok::<(), ariesdb::Error>(())
//! ```
//!
//! Layers, bottom to top: core types (`Lsn`, `PageId`, `TxnId`), `storage`
//! (files and the simulated disk),
//! `failstop` (the one fail-stop state the layers above share), `page`
//! (byte layouts and redo of one operation on one page), `wal` (log records,
//! writer with group commit, reader), `buffer` (the pool; the write-ahead
//! rule), `btree`, `txn` (transaction table, locks, rollback), `recovery`
//! (analysis, redo, undo, the driver that runs them, the master record, the
//! checkpointer), and the `Db` facade. See docs/design.md, section 2.
//!
//! Logging goes through the `log` facade: the open, a clean close and each
//! recovery pass at info (with a progress line every 2 s in a long redo or
//! undo), checkpoints and log truncation at debug, a torn page or log tail at
//! warn, the cause of a fail-stop and background-writer errors at error. The
//! library never installs a logger: without one nothing is printed (see
//! docs/design.md, section 13).

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
    pub use crate::wal::{decode_record, encode_record, parse_segment_name, segment_name, LSN_START};
}
