//! The master record's I/O: where recovery starts, read, validated and
//! written in this one place (the byte layout is `page::Master`).
//!
//! Invariants:
//! - A master record names a checkpoint whose end record, and every record
//!   before it, is durable: `Checkpointer` writes it only after the log is
//!   flushed through the checkpoint's end and the data file is synced.
//! - The sequence number only grows: each write is `seq + 1` of the last one
//!   read or written (asserted), so the copy written alternates and a torn
//!   write damages only the copy being written.
//! - A record read is trusted only after `validate`: a page size this build
//!   can use, and LSNs that can be a checkpoint's begin and a durable point.

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::page::{self, Master, MAX_PAGE_SIZE, MIN_PAGE_SIZE};
use crate::storage::{read_full_at, Storage, StorageFile};
use crate::types::Lsn;
use crate::wal::{LSN_START, MAX_LSN, RECORD_ALIGN};

/// The master record of one data file and its sequence number.
pub struct MasterFile {
    file: Arc<dyn StorageFile>,
    page_size: u32,
    seq: u64,
}

impl MasterFile {
    /// Read and validate the master record of `file`. A data file without one
    /// (a new database) gets its first, naming no checkpoint and
    /// `default_page_size`, written and synced before this returns.
    ///
    /// # Errors
    /// `Error::Corruption` if both copies are damaged, if the record names
    /// impossible values, or if it is missing while the log has segments
    /// (`log_exists`); `Error::InvalidArgument` for a format version this build
    /// does not open; an I/O error of reading or writing.
    pub fn open(
        storage: &dyn Storage,
        file: Arc<dyn StorageFile>,
        log_exists: bool,
        default_page_size: usize,
    ) -> Result<(MasterFile, Master)> {
        let mut head = [0u8; 2 * page::MASTER_COPY_LEN];
        read_full_at(&*file, &mut head, 0)?;
        let master = match Master::pick(&head)? {
            Some(m) => m,
            None => {
                if log_exists {
                    return Err(Error::corruption("data", "the data file has no master record, but log files exist"));
                }
                let m = Master {
                    seq: 1,
                    page_size: default_page_size as u32,
                    checkpoint_lsn: Lsn::NONE,
                    durable_lsn: Lsn::NONE,
                    version: page::FORMAT_VERSION,
                    clean_end: Lsn::NONE,
                };
                write(&*file, &m)?;
                storage.sync_dir()?;
                m
            }
        };
        validate(&master)?;
        Ok((MasterFile { file, page_size: master.page_size, seq: master.seq }, master))
    }

    /// Write the next master record, naming the checkpoint that began at
    /// `checkpoint_lsn` and the log durable through `durable_lsn`, in the
    /// current format version (open reshapes an older tree before its first
    /// checkpoint), and sync it.
    ///
    /// # Errors
    /// An I/O error of the write or the sync.
    pub fn write_next(&mut self, checkpoint_lsn: Lsn, durable_lsn: Lsn) -> Result<Master> {
        self.write_with(checkpoint_lsn, durable_lsn, Lsn::NONE)
    }

    /// Write the master record of a clean close: the log ends at `end`, all
    /// of it durable, nothing to follow until the next open rewrites the
    /// master record (`clean_end` = 0) before it appends anything.
    ///
    /// # Errors
    /// An I/O error of the write or the sync.
    pub fn write_clean(&mut self, checkpoint_lsn: Lsn, end: Lsn) -> Result<Master> {
        assert!(!end.is_none(), "a clean end is a real LSN");
        self.write_with(checkpoint_lsn, end, end)
    }

    fn write_with(&mut self, checkpoint_lsn: Lsn, durable_lsn: Lsn, clean_end: Lsn) -> Result<Master> {
        assert!(checkpoint_lsn <= durable_lsn, "a master record names a checkpoint not yet durable");
        let m = Master {
            seq: self.seq + 1,
            page_size: self.page_size,
            checkpoint_lsn,
            durable_lsn,
            version: page::FORMAT_VERSION,
            clean_end,
        };
        write(&*self.file, &m)?;
        assert!(m.seq > self.seq, "the master sequence only grows");
        self.seq = m.seq;
        Ok(m)
    }
}

fn write(file: &dyn StorageFile, m: &Master) -> Result<()> {
    file.write_all_at(&m.encode(), m.offset())?;
    file.sync_data()?;
    Ok(())
}

/// Refuse a master record whose page size or LSNs cannot be.
fn validate(master: &Master) -> Result<()> {
    let page_size = master.page_size as usize;
    if !page_size.is_power_of_two() || !(MIN_PAGE_SIZE..=MAX_PAGE_SIZE).contains(&page_size) {
        return Err(Error::corruption("data", format!("master record names page size {page_size}")));
    }
    if (!master.clean_end.is_none()
        && (master.clean_end != master.durable_lsn || master.clean_end < master.checkpoint_lsn))
        || master.durable_lsn > MAX_LSN
        || (!master.checkpoint_lsn.is_none()
            && (!(LSN_START..=MAX_LSN).contains(&master.checkpoint_lsn)
                || !master.checkpoint_lsn.get().is_multiple_of(RECORD_ALIGN as u64)))
    {
        return Err(Error::corruption("data", format!("master record names LSN {}", master.checkpoint_lsn)));
    }
    Ok(())
}
