//! A storage that passes every call through to another and tells `LogHooks`
//! of the reads and syncs of log segments (files `wal-*`): for tests that
//! count log reads, or hold a read or an fsync at a chosen moment.

use std::io;
use std::sync::Arc;

use ariesdb::storage::{Storage, StorageFile};

/// What a test does at the reads and syncs of log segments.
pub trait LogHooks: Send + Sync + 'static {
    /// Before a read of a log segment.
    fn before_read(&self) {}
    /// After a read of `n` bytes from a log segment.
    fn after_read(&self, _n: usize) {}
    /// Before a `sync_data` of a log segment.
    fn before_sync(&self) {}
}

/// `inner`, with `hooks` at its log segments' reads and syncs.
pub struct Hooked<H> {
    pub inner: Arc<dyn Storage>,
    pub hooks: Arc<H>,
}

struct HookedFile<H> {
    inner: Arc<dyn StorageFile>,
    hooks: Arc<H>,
}

impl<H: LogHooks> Storage for Hooked<H> {
    fn open(&self, name: &str) -> io::Result<Arc<dyn StorageFile>> {
        let f = self.inner.open(name)?;
        Ok(match name.starts_with("wal-") {
            true => Arc::new(HookedFile { inner: f, hooks: self.hooks.clone() }),
            false => f,
        })
    }
    fn remove(&self, name: &str) -> io::Result<()> {
        self.inner.remove(name)
    }
    fn list(&self) -> io::Result<Vec<String>> {
        self.inner.list()
    }
    fn sync_dir(&self) -> io::Result<()> {
        self.inner.sync_dir()
    }
}

impl<H: LogHooks> StorageFile for HookedFile<H> {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.hooks.before_read();
        let n = self.inner.read_at(buf, offset)?;
        self.hooks.after_read(n);
        Ok(n)
    }
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.inner.write_all_at(buf, offset)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.hooks.before_sync();
        self.inner.sync_data()
    }
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.inner.set_len(len)
    }
}
