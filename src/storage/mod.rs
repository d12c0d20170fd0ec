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
//! deterministic, fault-injecting one used by the crash tests.

use std::io;
use std::sync::Arc;

mod fs;
mod sim;

pub use fs::FsStorage;
pub use sim::{Fault, SimStats, SimStorage};

/// A directory of named files.
pub trait Storage: Send + Sync + 'static {
    /// Open the named file, creating it empty if it does not exist.
    fn open(&self, name: &str) -> io::Result<Arc<dyn StorageFile>>;
    /// Remove the named file.
    fn remove(&self, name: &str) -> io::Result<()>;
    /// The names of all files.
    fn list(&self) -> io::Result<Vec<String>>;
    /// Make creations and removals of files durable.
    fn sync_dir(&self) -> io::Result<()>;
}

/// One open file.
pub trait StorageFile: Send + Sync {
    /// Reads up to buf.len() bytes at offset; fewer only at end of file.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
    /// Write all of `buf` at `offset`, extending the file if needed.
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// After Ok, every byte written to this file before the call, and its length,
    /// survive power loss.
    fn sync_data(&self) -> io::Result<()>;
    /// The file's length in bytes.
    fn len(&self) -> io::Result<u64>;
    /// True when the file has no bytes.
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }
    /// Truncate or extend (with zeros) the file to `len` bytes.
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
