//! Options for opening a database.

use crate::error::{Error, Result};
use crate::page::{MAX_PAGE_SIZE, MIN_PAGE_SIZE};

/// When `commit()` returns relative to the log reaching stable storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
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
    /// Number of pages the buffer pool caches (at least 8).
    pub fn buffer_pool_pages(mut self, pages: usize) -> Options {
        self.buffer_pool_pages = pages;
        self
    }
    /// When commits are durable.
    pub fn durability(mut self, d: Durability) -> Options {
        self.durability = d;
        self
    }
    /// Log growth that triggers a fuzzy checkpoint; 0 = only on demand.
    pub fn checkpoint_interval_bytes(mut self, bytes: u64) -> Options {
        self.checkpoint_interval_bytes = bytes;
        self
    }
    /// Size of one log segment file (default: a quarter of the checkpoint
    /// interval, between 64 KiB and 16 MiB). The number of segments does not
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

    pub(crate) fn validate(&self) -> Result<()> {
        if !self.page_size.is_power_of_two() || !(MIN_PAGE_SIZE..=MAX_PAGE_SIZE).contains(&self.page_size) {
            return Err(Error::InvalidArgument(format!(
                "page_size {} is not a power of two in {MIN_PAGE_SIZE}..={MAX_PAGE_SIZE}",
                self.page_size
            )));
        }
        if self.buffer_pool_pages < 8 {
            return Err(Error::InvalidArgument(format!(
                "buffer_pool_pages {} is below the minimum of 8",
                self.buffer_pool_pages
            )));
        }
        if let Some(s) = self.wal_segment_bytes {
            if !(4096..=1 << 30).contains(&s) {
                return Err(Error::InvalidArgument(format!("wal_segment_bytes {s} is outside 4096..=1 GiB")));
            }
        }
        Ok(())
    }

    pub(crate) fn segment_bytes(&self) -> u64 {
        self.wal_segment_bytes.unwrap_or_else(|| {
            if self.checkpoint_interval_bytes == 0 {
                16 << 20
            } else {
                (self.checkpoint_interval_bytes / 4).clamp(64 << 10, 16 << 20)
            }
        })
    }
}
