//! Real files in one directory.
//!
//! Invariants: `sync_data` is fdatasync of that file; `sync_dir` is fsync of
//! the directory, which makes creations and removals durable. The directory is
//! locked (an exclusive advisory lock on its `LOCK` file) for the lifetime of
//! the `FsStorage`, so a second opener, in this or another process, fails.

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
    _lock: File,
}

impl FsStorage {
    /// Open (creating if missing) the directory and lock it. A directory
    /// locked by another `FsStorage` gives an error of kind `WouldBlock`.
    pub fn new(dir: impl AsRef<Path>) -> io::Result<FsStorage> {
        let dir = dir.as_ref().to_path_buf();
        if !dir.exists() {
            std::fs::create_dir_all(&dir)?;
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                File::open(parent)?.sync_all()?;
            }
        }
        let lock = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(dir.join(LOCK_FILE))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(io::Error::new(
                    io::ErrorKind::WouldBlock,
                    format!("{} is locked by another open database", dir.display()),
                ))
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(e),
        }
        Ok(FsStorage { dir, _lock: lock })
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

struct FsFile {
    file: File,
}

impl Storage for FsStorage {
    fn open(&self, name: &str) -> io::Result<Arc<dyn StorageFile>> {
        let file =
            OpenOptions::new().read(true).write(true).create(true).truncate(false).open(self.file_path(name)?)?;
        Ok(Arc::new(FsFile { file }))
    }

    fn remove(&self, name: &str) -> io::Result<()> {
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
        let e = FsStorage::new(&dir).err().expect("second open must fail");
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        drop(a);
        FsStorage::new(&dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
