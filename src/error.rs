//! The one error type of the crate.
//!
//! Invariant: every error that comes from the storage layer while the engine is
//! changing state turns the `Db` into a failed `Db` (fail-stop); the variants
//! here only describe what went wrong, the policy lives in `db.rs`.

use std::fmt;

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
    /// rolled back. Retry it.
    #[error("deadlock: this transaction was rolled back; retry it")]
    Deadlock,

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
    #[error("the database at {path} is in use by another Db (lock file held)")]
    Locked {
        /// The directory.
        path: String,
    },

    /// An earlier I/O error stopped this `Db`: it refuses all further work.
    /// Drop it and open the database again; recovery brings back every
    /// acknowledged commit.
    #[error("the database stopped after an I/O error ({cause}); reopen it to recover")]
    Failed {
        /// The first error that stopped the database.
        cause: String,
    },

    /// The `Db` was closed.
    #[error("the database is closed")]
    Closed,

    /// The transaction has already ended (committed, aborted, or rolled back
    /// after a deadlock).
    #[error("the transaction has already ended")]
    TxnEnded,

    /// Every frame of the buffer pool is pinned; raise `buffer_pool_pages`.
    #[error("all {frames} buffer pool frames are pinned; raise Options::buffer_pool_pages")]
    BufferPoolFull {
        /// The number of frames in the pool.
        frames: usize,
    },
}

impl Error {
    /// True when retrying the same transaction may succeed: deadlocks. Never
    /// for I/O errors or corruption.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::Deadlock)
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
    fn retryable_only_for_deadlock() {
        assert!(Error::Deadlock.is_retryable());
        assert!(!Error::Io(std::io::Error::other("x")).is_retryable());
        assert!(!Error::corruption("wal", "bad").is_retryable());
    }
}
