//! Storage: the seam between the engine and the bytes at rest.
//!
//! The engine relies on exactly these promises and no more:
//! - `read_at` returns fewer bytes than asked only at end of file;
//! - after `sync_data` returns Ok, every byte written to the file before the call,
//!   and the file's length, survive power loss;
//! - after `sync_dir` returns Ok, every creation and removal of a file before the
//!   call survives power loss.
//!
//! Writes not covered by a successful sync may be lost, land partly (each
//! 512-byte sector independently old or new) or land out of order. Any call may
//! fail. `FsStorage` is the real-file implementation, `SimStorage` the
//! deterministic, fault-injecting one used by the crash tests, and
//! `OverlayStorage` a copy-on-write layer that keeps every change in memory
//! over another storage (how `Db::open_read_only` writes nothing).

use std::io;
use std::sync::Arc;

mod fs;
mod overlay;
mod sim;

pub use fs::FsStorage;
pub use overlay::OverlayStorage;
pub use sim::{Fault, SimStats, SimStorage, TraceEntry};

/// A directory of named files.
///
/// Every call may fail with an I/O error; the engine never retries one. An
/// error in a path that changes the database stops the `Db` (fail-stop, see
/// `Error::Failed`), and the next open recovers from what is on stable
/// storage.
pub trait Storage: Send + Sync + 'static {
    /// Open the named file, creating it empty if it does not exist. Names
    /// are plain file names (no `/`).
    ///
    /// # Errors
    /// Any I/O error of the storage (of kind `NotFound` for a storage that
    /// creates nothing, such as a read-only `FsStorage`).
    fn open(&self, name: &str) -> io::Result<Arc<dyn StorageFile>>;
    /// Remove the named file. Durable only after a later `sync_dir`.
    ///
    /// # Errors
    /// Any I/O error of the storage, such as a file that does not exist.
    fn remove(&self, name: &str) -> io::Result<()>;
    /// The names of all files.
    ///
    /// # Errors
    /// Any I/O error of the storage.
    fn list(&self) -> io::Result<Vec<String>>;
    /// Make creations and removals of files durable.
    ///
    /// # Errors
    /// Any I/O error of the storage; after an error, which creations and
    /// removals survive a power loss is unknown.
    fn sync_dir(&self) -> io::Result<()>;
    /// Which life of the machine this storage is in. It changes only when a
    /// simulated machine restarts (`SimStorage::power_loss`,
    /// `process_crash`): the process that had the storage open is then gone,
    /// and nothing it still holds may touch the disk. Real storage never
    /// restarts under a running process and keeps the default, 0.
    fn incarnation(&self) -> u64 {
        0
    }
    /// Whether the log should write zeros ahead of its end (`wal`'s
    /// `zero_ahead`): true (the default) where a file's unwritten parts are
    /// allocated on their first write, as on a file system, so that a sync
    /// after a write into them also commits the allocation; false where
    /// zeros would only take room, as in `OverlayStorage`'s memory.
    fn zero_fill_ahead(&self) -> bool {
        true
    }
}

/// The storage as one process sees it: every call is refused once the
/// storage's incarnation has moved past the one at `bind` (the simulated
/// machine restarted). `Db` holds its storage through this, so a `Db` left
/// over from before a simulated crash (dropped, or still running on another
/// thread) can never open, remove or create a file of its successor. File
/// handles of an old incarnation are refused by the storage itself.
pub(crate) struct ProcessStorage {
    inner: Arc<dyn Storage>,
    incarnation: u64,
}

impl ProcessStorage {
    /// Bind to the storage's current incarnation.
    pub(crate) fn bind(inner: Arc<dyn Storage>) -> Arc<dyn Storage> {
        let incarnation = inner.incarnation();
        Arc::new(ProcessStorage { inner, incarnation })
    }

    fn alive(&self) -> io::Result<()> {
        match self.inner.incarnation() == self.incarnation {
            true => Ok(()),
            false => Err(io::Error::other("the storage restarted since this database was opened: its process is gone")),
        }
    }
}

impl Storage for ProcessStorage {
    fn open(&self, name: &str) -> io::Result<Arc<dyn StorageFile>> {
        self.alive()?;
        self.inner.open(name)
    }
    fn remove(&self, name: &str) -> io::Result<()> {
        self.alive()?;
        self.inner.remove(name)
    }
    fn list(&self) -> io::Result<Vec<String>> {
        self.alive()?;
        self.inner.list()
    }
    fn sync_dir(&self) -> io::Result<()> {
        self.alive()?;
        self.inner.sync_dir()
    }
    fn incarnation(&self) -> u64 {
        self.incarnation
    }
    fn zero_fill_ahead(&self) -> bool {
        self.inner.zero_fill_ahead()
    }
}

/// One open file.
///
/// Offsets and lengths are in bytes. Every call may fail with an I/O error,
/// as for `Storage`.
pub trait StorageFile: Send + Sync {
    /// Reads up to `buf.len()` bytes at `offset`; fewer only at end of file.
    /// Returns how many bytes were read.
    ///
    /// # Errors
    /// Any I/O error of the storage (a bad sector, a handle of a process
    /// that a simulated crash ended).
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
    /// Write all of `buf` at `offset`, extending the file if needed. Durable
    /// only after a later `sync_data`.
    ///
    /// # Errors
    /// Any I/O error of the storage, such as a full disk; the bytes may
    /// then be written in part.
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// After Ok, every byte written to this file before the call, and its length,
    /// survive power loss.
    ///
    /// # Errors
    /// Any I/O error of the storage; after an error the written bytes may or
    /// may not be durable, so the engine never retries a sync: it stops.
    fn sync_data(&self) -> io::Result<()>;
    /// The file's length in bytes.
    ///
    /// # Errors
    /// Any I/O error of the storage.
    fn len(&self) -> io::Result<u64>;
    /// True when the file has no bytes.
    ///
    /// # Errors
    /// As `len`.
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }
    /// Truncate or extend (with zeros) the file to `len` bytes. Durable only
    /// after a later `sync_data`.
    ///
    /// # Errors
    /// Any I/O error of the storage, such as a full disk.
    fn set_len(&self, len: u64) -> io::Result<()>;
}

/// Read exactly `buf.len()` bytes at `offset`, or fewer if the file ends;
/// returns how many bytes were read. Loops over short reads.
pub(crate) fn read_full_at(file: &dyn StorageFile, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        let n = file.read_at(&mut buf[done..], offset + done as u64)?;
        if n == 0 {
            break;
        }
        done += n;
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_view_is_refused_once_the_machine_restarts() {
        for power in [true, false] {
            let sim = Arc::new(SimStorage::new(3));
            let view = ProcessStorage::bind(sim.clone());
            view.open("a").unwrap().write_all_at(b"x", 0).unwrap();
            view.sync_dir().unwrap();
            match power {
                true => sim.power_loss(),
                false => sim.process_crash(),
            }
            assert!(view.open("b").is_err(), "open after a restart");
            assert!(view.remove("a").is_err(), "remove after a restart");
            assert!(view.list().is_err() && view.sync_dir().is_err());
            // The next process binds afresh and works.
            let next = ProcessStorage::bind(sim.clone());
            assert!(next.open("b").is_ok() && next.list().unwrap().contains(&"b".to_string()));
        }
    }
}
