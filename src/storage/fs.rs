//! Real files in one directory.
//!
//! Invariants: `sync_data` is fdatasync of that file; `sync_dir` is fsync of
//! the directory, which makes creations and removals durable. The directory is
//! locked (an exclusive advisory lock on its `LOCK` file) for the lifetime of
//! the `FsStorage`, so a second opener, in this or another process, fails.
//!
//! A read-only `FsStorage` (`FsStorage::open_read_only`) creates nothing and
//! opens every file without write access (O_RDONLY), its `LOCK` file
//! included, on which it takes a shared lock: readers may share the
//! directory, a writer and a reader exclude each other. Its `remove` and
//! `sync_dir` are refused, and a write or `set_len` on one of its files fails
//! in the kernel (the descriptor is not open for writing), so a bug that
//! writes fails instead of changing the disk.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{Storage, StorageFile};

/// Name of the lock file inside the directory.
pub const LOCK_FILE: &str = "LOCK";

/// A directory of real files.
pub struct FsStorage {
    dir: PathBuf,
    /// The `LOCK` file, held locked; None for a read-only storage of a
    /// directory without one (see `open_read_only`).
    _lock: Option<File>,
    read_only: bool,
}

impl std::fmt::Debug for FsStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FsStorage")
            .field("dir", &self.dir)
            .field("locked", &self._lock.is_some())
            .field("read_only", &self.read_only)
            .finish()
    }
}

impl FsStorage {
    /// Open (creating if missing) the directory and lock it. A directory
    /// locked by another `FsStorage` gives an error of kind `WouldBlock`.
    ///
    /// # Errors
    /// Kind `WouldBlock` if another `FsStorage` (in this or another process)
    /// holds the directory's lock; any I/O error creating the directory or
    /// its `LOCK` file.
    pub fn new(dir: impl AsRef<Path>) -> io::Result<FsStorage> {
        let dir = dir.as_ref().to_path_buf();
        if !dir.exists() {
            std::fs::create_dir_all(&dir)?;
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                File::open(parent)?.sync_all()?;
            }
        }
        let lock = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(dir.join(LOCK_FILE))?;
        locked(&dir, lock.try_lock())?;
        Ok(FsStorage { dir, _lock: Some(lock), read_only: false })
    }

    /// Open the existing directory `dir` read-only: nothing is ever created
    /// (not the directory, not a file, not `LOCK`), files are opened without
    /// write access, and `open` of a missing file is an error of kind
    /// `NotFound`. `remove` and `sync_dir` are refused (kind
    /// `ReadOnlyFilesystem`); writes to its files fail in the kernel.
    ///
    /// Locking: if the directory has a `LOCK` file, it is opened read-only
    /// and a shared lock is taken on it for the lifetime of the storage, so
    /// read-only storages of one directory coexist while a writer (which
    /// takes the lock exclusively) and a reader exclude each other: a
    /// directory open for writing gives `WouldBlock`, as `new` does. A
    /// directory without `LOCK` was never opened by a writer on real files
    /// (every writer creates it, and nothing removes it: a copy of the other
    /// files, say); it is not locked then, since locking would need the file
    /// created, and a writer that opens it meanwhile is not kept out.
    ///
    /// # Errors
    /// `NotFound` if `dir` does not exist, `NotADirectory` if it is not a
    /// directory; `WouldBlock` if a writer holds the lock; any I/O error.
    pub fn open_read_only(dir: impl AsRef<Path>) -> io::Result<FsStorage> {
        let dir = dir.as_ref().to_path_buf();
        if !std::fs::metadata(&dir)?.is_dir() {
            return Err(io::Error::new(io::ErrorKind::NotADirectory, format!("{} is not a directory", dir.display())));
        }
        let lock = match File::open(dir.join(LOCK_FILE)) {
            Ok(lock) => {
                locked(&dir, lock.try_lock_shared())?;
                Some(lock)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        Ok(FsStorage { dir, _lock: lock, read_only: true })
    }

    /// True for a storage opened by `open_read_only`.
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    fn file_path(&self, name: &str) -> io::Result<PathBuf> {
        if name.is_empty() || name == "." || name == ".." || name.contains('/') || name.contains('\\') {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("bad file name {name:?}")));
        }
        Ok(self.dir.join(name))
    }
}

/// The outcome of trying to lock `dir`'s `LOCK` file: a lock held elsewhere
/// is an error of kind `WouldBlock`.
fn locked(dir: &Path, r: Result<(), std::fs::TryLockError>) -> io::Result<()> {
    match r {
        Ok(()) => Ok(()),
        Err(std::fs::TryLockError::WouldBlock) => Err(io::Error::new(
            io::ErrorKind::WouldBlock,
            format!("{} is locked by another open database", dir.display()),
        )),
        Err(std::fs::TryLockError::Error(e)) => Err(e),
    }
}

struct FsFile {
    file: File,
}

impl FsStorage {
    fn refuse_read_only(&self, what: &str) -> io::Result<()> {
        match self.read_only {
            true => Err(io::Error::new(
                io::ErrorKind::ReadOnlyFilesystem,
                format!("{what} refused: {} was opened read-only", self.dir.display()),
            )),
            false => Ok(()),
        }
    }
}

impl Storage for FsStorage {
    fn open(&self, name: &str) -> io::Result<Arc<dyn StorageFile>> {
        let path = self.file_path(name)?;
        let file = match self.read_only {
            true => File::open(path)?,
            false => OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path)?,
        };
        Ok(Arc::new(FsFile { file }))
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        self.refuse_read_only("remove")?;
        std::fs::remove_file(self.file_path(name)?)
    }

    fn list(&self) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&self.dir)? {
            let entry = entry?;
            if entry.file_type()?.is_file() {
                if let Some(n) = entry.file_name().to_str() {
                    if n != LOCK_FILE {
                        names.push(n.to_string());
                    }
                }
            }
        }
        names.sort();
        Ok(names)
    }

    fn sync_dir(&self) -> io::Result<()> {
        self.refuse_read_only("sync_dir")?;
        File::open(&self.dir)?.sync_all()
    }
}

impl StorageFile for FsFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let mut done = 0;
        while done < buf.len() {
            match self.file.read_at(&mut buf[done..], offset + done as u64) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(done)
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.file.write_all_at(buf, offset)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("ariesdb-fs-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn round_trip_and_listing() {
        let dir = tmp("rt");
        let s = FsStorage::new(&dir).unwrap();
        let f = s.open("a").unwrap();
        f.write_all_at(b"hello", 10).unwrap();
        f.sync_data().unwrap();
        assert_eq!(f.len().unwrap(), 15);
        let mut buf = [0u8; 20];
        assert_eq!(f.read_at(&mut buf, 8).unwrap(), 7);
        assert_eq!(&buf[2..7], b"hello");
        f.set_len(4).unwrap();
        assert_eq!(f.len().unwrap(), 4);
        s.sync_dir().unwrap();
        assert_eq!(s.list().unwrap(), vec!["a".to_string()]);
        s.remove("a").unwrap();
        assert!(s.list().unwrap().is_empty());
        assert!(s.open("../x").is_err());
        drop(s);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn second_opener_is_refused_until_the_first_is_gone() {
        let dir = tmp("lock");
        let a = FsStorage::new(&dir).unwrap();
        let e = FsStorage::new(&dir).expect_err("second open must fail");
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        drop(a);
        FsStorage::new(&dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_read_only_storage_creates_nothing_and_cannot_write() {
        let dir = tmp("ro");
        let e = FsStorage::open_read_only(&dir).expect_err("missing directory");
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        assert!(!dir.exists(), "a read-only open created the directory");
        {
            let s = FsStorage::new(&dir).unwrap();
            s.open("a").unwrap().write_all_at(b"hello", 0).unwrap();
        }
        let ro = FsStorage::open_read_only(&dir).unwrap();
        assert!(ro.is_read_only());
        let f = ro.open("a").unwrap();
        let mut buf = [0u8; 5];
        assert_eq!(f.read_at(&mut buf, 0).unwrap(), 5);
        assert_eq!(&buf, b"hello");
        assert!(f.write_all_at(b"x", 0).is_err(), "a write through a read-only handle");
        assert!(f.set_len(1).is_err(), "set_len through a read-only handle");
        assert_eq!(ro.open("b").err().map(|e| e.kind()), Some(io::ErrorKind::NotFound));
        assert_eq!(ro.remove("a").unwrap_err().kind(), io::ErrorKind::ReadOnlyFilesystem);
        assert_eq!(ro.sync_dir().unwrap_err().kind(), io::ErrorKind::ReadOnlyFilesystem);
        assert_eq!(ro.list().unwrap(), vec!["a".to_string()]);
        assert_eq!(std::fs::read(dir.join("a")).unwrap(), b"hello");
        drop((f, ro));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn readers_share_the_lock_and_exclude_a_writer() {
        let dir = tmp("ro-lock");
        drop(FsStorage::new(&dir).unwrap());
        let r1 = FsStorage::open_read_only(&dir).unwrap();
        let r2 = FsStorage::open_read_only(&dir).unwrap();
        assert_eq!(FsStorage::new(&dir).expect_err("a writer beside readers").kind(), io::ErrorKind::WouldBlock);
        drop((r1, r2));
        let w = FsStorage::new(&dir).unwrap();
        let e = FsStorage::open_read_only(&dir).expect_err("a reader beside a writer");
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        drop(w);
        // Without a LOCK file nothing is locked, and nothing is created.
        std::fs::remove_file(dir.join(LOCK_FILE)).unwrap();
        drop(FsStorage::open_read_only(&dir).unwrap());
        assert!(!dir.join(LOCK_FILE).exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
