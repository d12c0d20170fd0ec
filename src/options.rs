//! Options for opening a database.

use std::time::Duration;

use crate::error::{Error, Result};
use crate::page::{MAX_PAGE_SIZE, MIN_PAGE_SIZE};
use crate::txn::lock::DEFAULT_LOCK_TIMEOUT;

/// The smallest `wal_segment_bytes` accepted (64 KiB): below it a busy log
/// makes files, directory syncs and per-segment fsyncs by the hundreds for
/// nothing; it is also the floor of the default segment size.
pub const MIN_WAL_SEGMENT_BYTES: u64 = 64 << 10;
/// The largest `wal_segment_bytes` accepted (1 GiB).
pub const MAX_WAL_SEGMENT_BYTES: u64 = 1 << 30;
/// The smallest `buffer_pool_pages` accepted: the frames one tree change may
/// pin or dirty at once besides the pages of a long value (a leaf change, a
/// split at every level of a deep tree, the meta page). A smaller pool could
/// not hold one operation's pages, and every write would first flush the log.
pub const MIN_BUFFER_POOL_PAGES: usize = crate::btree::CHANGE_HEADROOM_PAGES;

/// When `commit()` returns relative to the log reaching stable storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Durability {
    /// `commit()` returns after the commit record is on stable storage.
    /// Concurrent committers share fsyncs (group commit).
    #[default]
    Immediate,
    /// `commit()` returns before the fsync; a crash may lose a suffix of the
    /// most recent commits, never a gap and never part of a transaction.
    Eventual,
}

/// How to open a database. A builder: every method takes and returns `Options`.
#[derive(Debug, Clone)]
pub struct Options {
    pub(crate) page_size: usize,
    pub(crate) buffer_pool_pages: usize,
    pub(crate) durability: Durability,
    pub(crate) checkpoint_interval_bytes: u64,
    pub(crate) wal_segment_bytes: Option<u64>,
    pub(crate) background_writer: bool,
    pub(crate) lock_escalation_keys: usize,
    pub(crate) long_txn_log_bytes: u64,
    pub(crate) snapshot_cap_bytes: usize,
    pub(crate) lock_timeout: Duration,
    pub(crate) transaction_attempts: u32,
    pub(crate) instant_restart: bool,
    /// Tests: the background undo after an instant restart waits until
    /// released (`RestartUndo::held`).
    #[cfg(test)]
    pub(crate) hold_restart_undo: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            page_size: 4096,
            buffer_pool_pages: 256,
            durability: Durability::Immediate,
            checkpoint_interval_bytes: 64 << 20,
            wal_segment_bytes: None,
            background_writer: true,
            lock_escalation_keys: 5000,
            long_txn_log_bytes: 64 << 20,
            snapshot_cap_bytes: 64 << 20,
            lock_timeout: DEFAULT_LOCK_TIMEOUT,
            transaction_attempts: 10,
            instant_restart: true,
            #[cfg(test)]
            hold_restart_undo: false,
        }
    }
}

impl Options {
    /// Page size of a new database (a power of two, 4096..=32768). An existing
    /// database keeps the page size it was created with.
    pub fn page_size(mut self, bytes: usize) -> Options {
        self.page_size = bytes;
        self
    }
    /// Number of pages the buffer pool caches (at least `MIN_BUFFER_POOL_PAGES`, 24).
    /// A frame's page memory is allocated when the frame first holds a page,
    /// so the pool grows to at most `pages * page_size` bytes as pages are
    /// read; at open it allocates only its bookkeeping, about 125 bytes a
    /// frame (the frame's state, its share of the page table, and 4 frame
    /// hints of 8 bytes).
    pub fn buffer_pool_pages(mut self, pages: usize) -> Options {
        self.buffer_pool_pages = pages;
        self
    }
    /// When commits are durable.
    pub fn durability(mut self, d: Durability) -> Options {
        self.durability = d;
        self
    }
    /// Log growth that triggers a fuzzy checkpoint; 0 = only on demand;
    /// otherwise at least `MIN_WAL_SEGMENT_BYTES` (64 KiB).
    pub fn checkpoint_interval_bytes(mut self, bytes: u64) -> Options {
        self.checkpoint_interval_bytes = bytes;
        self
    }
    /// Size of one log segment file (default: a quarter of the checkpoint
    /// interval, between 64 KiB and 16 MiB). Accepted: `MIN_WAL_SEGMENT_BYTES`
    /// (64 KiB) to 1 GiB; the open refuses anything else. The number of segments does not
    /// change the number of open files: at most 8 segment handles stay open
    /// (see `Db`'s Resources).
    pub fn wal_segment_bytes(mut self, bytes: u64) -> Options {
        self.wal_segment_bytes = Some(bytes);
        self
    }
    /// Run the background thread that cleans dirty pages, flushes the log for
    /// `Durability::Eventual`, and takes automatic checkpoints (default on).
    pub fn background_writer(mut self, on: bool) -> Options {
        self.background_writer = on;
        self
    }

    /// Instant restart after a crash (default on): the open returns after
    /// analysis, the first pass of ARIES restart recovery (Mohan et al., TODS
    /// 1992, section 6.1). Each page that may be newer in the log than on
    /// disk is redone when it is first read (redo on demand, as in Graefe,
    /// Guy and Sauer, *Instant Recovery with Write-Ahead Logging*, 2016), or
    /// by a background pass (with `background_writer`) that redoes the rest.
    /// The transactions the crash left open (losers) are rolled back by a
    /// background thread; until each is, the keys it changed stay locked (a
    /// transaction that needs one waits, up to `lock_timeout`) and snapshots
    /// read the values from before it (a loser of more than
    /// `lock_escalation_keys` keys locks every key). If a loser changed
    /// more keys than its versions may take memory for (about 128 bytes a
    /// key, within `snapshot_cap_bytes`), every loser is rolled back before
    /// the open returns instead.
    /// `close` finishes what is left, and `compact` the redo. Off: the
    /// classic redo and undo passes run before the open returns. Either way
    /// the database serves the same data, and a crash at any point recovers
    /// the same way. `RecoveryReport` says what was redone and undone when;
    /// `Stats::pages_redone_on_demand`, `Stats::pages_owing_redo` and
    /// `Stats::losers_owing_undo` say how far it is. A read-only open
    /// always runs the classic passes.
    pub fn instant_restart(mut self, on: bool) -> Options {
        self.instant_restart = on;
        self
    }

    /// Key locks one transaction may hold before they are traded for one
    /// lock on the whole key space (lock escalation; default 5000; 0 =
    /// never). Bounds the lock table's memory whatever the number of keys a
    /// transaction touches; the cost is that an escalated transaction blocks
    /// every other transaction that conflicts with it (all others if it wrote)
    /// until it ends. Escalation happens only when that lock is granted at
    /// once (no other transaction holds a lock then); otherwise the key locks
    /// stay and a later lock tries again, so escalation never makes a
    /// transaction wait.
    pub fn lock_escalation_keys(mut self, keys: usize) -> Options {
        self.lock_escalation_keys = keys;
        self
    }

    /// An open transaction whose first log record is more than this many
    /// bytes behind the end of the log counts in `Stats::long_txns` (default
    /// 64 MiB). Such a transaction keeps every log segment from its first
    /// record on (checkpoints cannot remove them), which costs disk, and
    /// restart recovery reads and undoes from there.
    pub fn long_txn_log_bytes(mut self, bytes: u64) -> Options {
        self.long_txn_log_bytes = bytes;
        self
    }

    /// How much the open read-only snapshots (`Db::begin_read`) may hold
    /// back, in bytes (default 64 MiB): the versions of keys changed by
    /// transactions that committed after the oldest open snapshot began,
    /// counted as key plus value plus about 48 bytes each. Values up to 256
    /// bytes are held in memory; larger ones are read back from the log,
    /// which is then kept from their record on (so the cap also bounds the
    /// log a snapshot holds back, to within the log written between). Past
    /// the cap the oldest snapshots expire: their next call returns
    /// `Error::SnapshotTooOld` (retryable: begin a new snapshot). Writers
    /// never wait for snapshots. A transaction still open keeps a version of
    /// each key it changed (about the key plus 150 bytes, plus values up to
    /// 256 bytes) until it ends, up to `lock_escalation_keys` keys; past
    /// that it keeps only the range of keys it changed, and a snapshot that
    /// must not see it fails with `Error::SnapshotTooOld` when it reads in
    /// that range.
    pub fn snapshot_cap_bytes(mut self, bytes: usize) -> Options {
        self.snapshot_cap_bytes = bytes;
        self
    }

    /// The longest a read-write transaction's call waits for key locks
    /// held by other transactions (default 10 seconds; any `Duration`, to
    /// the nanosecond, above zero; `Duration::MAX` waits without limit).
    /// A `get`, `get_for_update`, `put`, `delete` or scan step whose lock
    /// waits last longer in all fails with `Error::LockTimeout` (retryable),
    /// and its transaction is rolled back, as a deadlock victim is; counted
    /// in `Stats::lock_timeouts`. Deadlocks are still detected at once,
    /// whatever the timeout; the timeout ends the waits no cycle explains:
    /// a holder that stays open, or two conflicting transactions driven from
    /// one thread (which would otherwise hang). Read-only snapshots take no
    /// locks and never wait.
    pub fn lock_timeout(mut self, timeout: Duration) -> Options {
        self.lock_timeout = timeout;
        self
    }

    /// How many times `Db::transaction` runs a transaction that a deadlock or
    /// a lock timeout rolled back before it returns that error (default 10,
    /// at least 1; 1 runs it once and never retries).
    pub fn transaction_attempts(mut self, attempts: u32) -> Options {
        self.transaction_attempts = attempts;
        self
    }

    /// Refuse settings that make no sense, with the reason.
    ///
    /// # Errors
    /// `Error::InvalidArgument` naming the setting, its minimum and why.
    pub(crate) fn validate(&self) -> Result<()> {
        if !self.page_size.is_power_of_two() || !(MIN_PAGE_SIZE..=MAX_PAGE_SIZE).contains(&self.page_size) {
            return Err(Error::InvalidArgument(format!(
                "page_size {} must be a power of two from {MIN_PAGE_SIZE} to {MAX_PAGE_SIZE} bytes \
                 (offsets inside a page are 16-bit)",
                self.page_size
            )));
        }
        if self.checkpoint_interval_bytes != 0 && self.checkpoint_interval_bytes < MIN_WAL_SEGMENT_BYTES {
            return Err(Error::InvalidArgument(format!(
                "checkpoint_interval_bytes {} is below {} KiB (0 turns automatic checkpoints off): \
                 a checkpoint every few bytes of log would checkpoint on almost every commit",
                self.checkpoint_interval_bytes,
                MIN_WAL_SEGMENT_BYTES >> 10
            )));
        }
        if self.buffer_pool_pages < MIN_BUFFER_POOL_PAGES {
            return Err(Error::InvalidArgument(format!(
                "buffer_pool_pages {} is below the minimum of {MIN_BUFFER_POOL_PAGES}: one tree change \
                 (a leaf change with a split at every level of a deep tree, and the meta page) may pin \
                 or dirty that many frames at once",
                self.buffer_pool_pages
            )));
        }
        if self.lock_timeout.is_zero() {
            return Err(Error::InvalidArgument(
                "lock_timeout must be more than zero: a zero timeout would fail every lock wait, \
                 even one for a transaction about to commit (Duration::MAX waits without limit)"
                    .into(),
            ));
        }
        if self.transaction_attempts == 0 {
            return Err(Error::InvalidArgument(
                "transaction_attempts must be at least 1: Db::transaction runs the transaction at least once".into(),
            ));
        }
        if let Some(s) = self.wal_segment_bytes {
            if !(MIN_WAL_SEGMENT_BYTES..=MAX_WAL_SEGMENT_BYTES).contains(&s) {
                return Err(Error::InvalidArgument(format!(
                    "wal_segment_bytes {s} is outside {} KiB..=1 GiB: every segment is a file, \
                     created, sized and directory-synced when the log reaches it, and a flush \
                     syncs each segment it touches, so smaller segments only multiply files \
                     and fsyncs",
                    MIN_WAL_SEGMENT_BYTES >> 10
                )));
            }
        }
        Ok(())
    }

    pub(crate) fn segment_bytes(&self) -> u64 {
        self.wal_segment_bytes.unwrap_or_else(|| {
            if self.checkpoint_interval_bytes == 0 {
                16 << 20
            } else {
                (self.checkpoint_interval_bytes / 4).clamp(MIN_WAL_SEGMENT_BYTES, 16 << 20)
            }
        })
    }
}
