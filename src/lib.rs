#![doc = include_str!("../README.md")]
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
