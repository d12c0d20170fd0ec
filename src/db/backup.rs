//! Online backup (`Db::backup`): a consistent copy of a live database, read
//! from one read-only snapshot while writers go on, and written as a new
//! database (SQLite's `VACUUM INTO` does the same).
//!
//! The copy is built in a staging directory beside the destination and
//! renamed to it only once it is complete and durable, so the destination
//! never holds a partial copy, not even after a crash of the process.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::{Db, Snapshot, DATA_FILE};
use crate::error::{Error, Result};
use crate::options::{Durability, Options, MIN_WAL_SEGMENT_BYTES};
use crate::wal::{parse_segment_name, segment_name};

/// Entries per transaction of the destination, at most.
const CHUNK_ENTRIES: usize = 1000;
/// Bytes of keys and values per transaction of the destination, about (a
/// transaction ends after the entry that reaches it).
const CHUNK_BYTES: usize = 4 << 20;

/// What `Db::backup` copied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BackupReport {
    /// Entries (key and value pairs) copied: every entry the snapshot saw.
    pub entries: u64,
    /// Bytes of keys and values copied, summed (the destination's files
    /// take more: pages, the log, free space).
    pub bytes: u64,
    /// Transactions committed in the destination (one per chunk of at most
    /// 1000 entries or about 4 MiB).
    pub transactions: u64,
}

impl Db {
    /// Copy the database, as one read-only snapshot sees it, into a new
    /// database in directory `dest`, while other threads go on reading and
    /// writing: an online backup. The copy holds exactly the entries of a
    /// snapshot begun during the call (`Db::begin_read`, after `dest` was
    /// checked): every transaction whose `commit()` returned before the call,
    /// none that began committing after the copying began, each all or
    /// nothing. It is a database of its own (open it with `Db::open` or
    /// `Db::open_existing`) with this database's page size, closed cleanly
    /// (its open has nothing to recover), its tree written afresh in key
    /// order: no free pages, but not the smallest possible file either
    /// (splits cut pages in the middle, so pages end up about half to two
    /// thirds full). Its log is as small as it can be: the records of its
    /// last checkpoint (at most 64 KiB), in a segment file cut to them, which
    /// the log grows again as the copy takes writes; so the copy takes about
    /// the room of its data file.
    ///
    /// `dest` must not exist yet (its missing parent directories are
    /// created), or be an empty directory (it is replaced). The copy is
    /// written into a staging directory beside it, named
    /// `NAME.backup-partial-PID-N`, in transactions of up to 1000 entries
    /// (`Durability::Eventual`: no fsync per chunk), then closed (every page
    /// written and synced, a final checkpoint), opened and closed once more
    /// to leave its log small, and renamed to `dest`, and the rename made
    /// durable. So `dest` appears only complete: an error removes
    /// the staging directory (and parents the call created), and a crash of
    /// the process leaves at most a directory named `*.backup-partial-*`,
    /// never a partial `dest`. The destination is always on real files,
    /// whatever storage this `Db` runs on.
    ///
    /// Cost: the snapshot is held for the whole copy, so every version that
    /// writers commit meanwhile is kept for it (see
    /// `Options::snapshot_cap_bytes`). If more than the cap of changes
    /// commit before the copy ends, the backup fails with
    /// `Error::SnapshotTooOld` (retryable). It is not retried here: a retry
    /// would meet the same load; call again when writes are quieter, or
    /// raise `snapshot_cap_bytes`. Reads take the tree latch shared for one
    /// batch of 64 entries at a time, as any snapshot scan does: writers are
    /// delayed by at most one batch's read, never for the whole copy.
    ///
    /// ```
    /// # let base = std::env::temp_dir().join(format!("ariesdb-doc-backup-{}", std::process::id()));
    /// # let _ = std::fs::remove_dir_all(&base);
    /// let db = ariesdb::Db::open(base.join("live"))?;
    /// let mut tx = db.begin()?;
    /// tx.put(b"k", b"v")?;
    /// tx.commit()?;
    /// let report = db.backup(base.join("copy"))?;
    /// assert_eq!((report.entries, report.bytes), (1, 2));
    /// db.close()?;
    /// let copy = ariesdb::Db::open_existing(base.join("copy"))?;
    /// assert_eq!(copy.begin_read()?.get(b"k")?, Some(b"v".to_vec()));
    /// # copy.close()?; let _ = std::fs::remove_dir_all(&base);
    /// # Ok::<(), ariesdb::Error>(())
    /// ```
    ///
    /// # Errors
    /// `Error::InvalidArgument` if `dest` already holds a database, is a
    /// directory that is not empty, is not a directory, names no directory
    /// (`/`, `..`), or lies inside this database's own directory (for a
    /// database opened by path): nothing is created then.
    /// `Error::SnapshotTooOld` (retryable) if the snapshot expired during
    /// the copy (see above), or if it overlaps a transaction of more than
    /// `Options::lock_escalation_keys` keys that is not committed.
    /// `Error::Failed` or `Error::Closed` if this database stopped
    /// or closed; an I/O error or `Error::Corruption` from reading it (an
    /// I/O error stops it, as any read's does). An I/O error of the
    /// destination (a full disk, say) is returned as it is and does not
    /// stop this database. After any error nothing is left at `dest`.
    pub fn backup(&self, dest: impl AsRef<Path>) -> Result<BackupReport> {
        self.inner.check_ok()?;
        let dest = dest.as_ref();
        if let Some(src) = &self.inner.dir {
            if is_inside(dest, src)? {
                return Err(Error::InvalidArgument(format!(
                    "backup destination {} is inside the database's own directory {}: choose a path outside it",
                    dest.display(),
                    src.display()
                )));
            }
        }
        let target = Target::check(dest)?;
        let staging = target.make_staging()?;
        let opts = Options::default().page_size(self.inner.page_size).durability(Durability::Eventual);
        let r = (|| {
            let copy = Db::open_path_with(&staging.dir, opts.clone())?;
            let report = copy_snapshot(&self.begin_read()?, &copy)?;
            copy.close()?;
            compact_log(&staging.dir, opts)?;
            target.install(&staging.dir)?;
            Ok(report)
        })();
        match r {
            Ok(report) => {
                staging.keep();
                Ok(report)
            }
            Err(e) => Err(e), // `staging`'s drop removes what was made
        }
    }
}

/// Whether `path` (which may not exist yet) is `dir` or lies inside it,
/// comparing canonical paths: the nearest ancestor of `path` that exists,
/// canonicalized, with the rest of `path` after it.
fn is_inside(path: &Path, dir: &Path) -> Result<bool> {
    let dir = dir.canonicalize()?;
    let mut existing = path.to_path_buf();
    let mut rest = Vec::new();
    loop {
        if let Ok(c) = existing.canonicalize() {
            let full = rest.iter().rev().fold(c, |p: PathBuf, r: &std::ffi::OsString| p.join(r));
            return Ok(full.starts_with(&dir));
        }
        let Some(name) = existing.file_name() else { return Ok(false) };
        rest.push(name.to_os_string());
        if !existing.pop() {
            return Ok(false);
        }
        if existing.as_os_str().is_empty() {
            existing = PathBuf::from(".");
        }
    }
}

/// Copy every entry `snap` sees into `copy`, in chunks of transactions.
fn copy_snapshot(snap: &Snapshot, copy: &Db) -> Result<BackupReport> {
    let mut report = BackupReport::default();
    let mut scan = snap.scan::<std::ops::RangeFull>(..)?;
    let mut tx = copy.begin()?;
    let (mut entries, mut bytes) = (0usize, 0usize);
    while let Some((k, v)) = scan.next_entry()? {
        tx.put(k, v)?;
        entries += 1;
        bytes += k.len() + v.len();
        report.entries += 1;
        report.bytes += (k.len() + v.len()) as u64;
        if entries == CHUNK_ENTRIES || bytes >= CHUNK_BYTES {
            tx.commit()?;
            report.transactions += 1;
            tx = copy.begin()?;
            (entries, bytes) = (0, 0);
        }
    }
    if entries > 0 {
        tx.commit()?;
        report.transactions += 1;
    } else {
        tx.abort()?;
    }
    Ok(report)
}

/// Leave the closed copy in `dir` with as little log as it can open with:
/// the records of its last checkpoint, in a segment file cut to them.
///
/// The copy logged every entry it was given, in segments of the default
/// size, preallocated. Reopened with the smallest segments
/// (`MIN_WAL_SEGMENT_BYTES`), its log moves to a new segment as soon as the
/// one it appends to holds that much, so the checkpoint of the open begins
/// in a new segment and truncation removes the ones before it (with every
/// page written back, the checkpoint is all recovery needs). A clean close
/// then records where the log ends, and the segment holding that end is cut
/// to it: the next open reads the log only to that end (the master record
/// says so, and no record can start past a file's end), and appending
/// there writes past the end of the file, which grows it (the log rolls to a
/// new, preallocated segment once this one reaches the segment size of that
/// open). Nothing is rewritten but the file's length, after the `Db` is
/// closed: a crash meanwhile leaves at most the staging directory.
fn compact_log(dir: &Path, opts: Options) -> Result<()> {
    let db = Db::open_existing_with(dir, opts.wal_segment_bytes(MIN_WAL_SEGMENT_BYTES))?;
    let inner = db.inner.clone();
    db.close()?;
    // Nothing is appended after a close: it refuses every later call.
    let (end, durable) = (inner.wal.end_lsn(), inner.wal.durable_lsn());
    drop(inner); // the last handle: the directory's files close, its lock goes
    if durable != end {
        return Ok(()); // not a clean end: keep the log as it is
    }
    let mut holding = None;
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name();
        if let Some(start) = name.to_str().and_then(parse_segment_name) {
            if start <= end && holding.is_none_or(|s| s < start) {
                holding = Some(start);
            }
        }
    }
    if let Some(start) = holding {
        let file = std::fs::OpenOptions::new().write(true).open(dir.join(segment_name(start)))?;
        if file.metadata()?.len() > end - start {
            file.set_len(end - start)?;
            file.sync_all()?;
        }
    }
    Ok(())
}

/// Where the copy goes: `parent/name`, checked to hold nothing.
struct Target {
    parent: PathBuf,
    name: String,
    /// Parent directories that did not exist, deepest first: created for the
    /// staging directory, removed again (if still empty) on error.
    missing_parents: Vec<PathBuf>,
}

impl Target {
    /// Refuse a destination that holds anything.
    fn check(dest: &Path) -> Result<Target> {
        let refuse = |why: &str| Err(Error::InvalidArgument(format!("backup destination {}: {why}", dest.display())));
        let path = match std::fs::metadata(dest) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => dest.to_path_buf(),
            Err(e) => return Err(Error::Io(e)),
            Ok(m) if !m.is_dir() => return refuse("exists and is not a directory"),
            Ok(_) => {
                if dest.join(DATA_FILE).try_exists()? {
                    return refuse(
                        "already holds an ariesdb database; backup writes only a new database \
                         (remove it, or choose another path)",
                    );
                }
                if std::fs::read_dir(dest)?.next().is_some() {
                    return refuse("is a directory that is not empty (backup needs a new or empty directory)");
                }
                dest.canonicalize()?
            }
        };
        let Some(name) = path.file_name().and_then(|n| n.to_str()).map(str::to_string) else {
            return refuse("names no directory of its own (give a path such as backups/mydb)");
        };
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let mut missing_parents = Vec::new();
        let mut p = parent.as_path();
        while !p.as_os_str().is_empty() && !p.try_exists()? {
            missing_parents.push(p.to_path_buf());
            p = p.parent().unwrap_or(Path::new(""));
        }
        Ok(Target { parent, name, missing_parents })
    }

    /// Create a staging directory of a name nobody uses, beside the destination.
    fn make_staging(&self) -> Result<Staging> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let mut staging = Staging { dir: PathBuf::new(), missing_parents: self.missing_parents.clone(), keep: false };
        std::fs::create_dir_all(&self.parent)?;
        loop {
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let dir = self.parent.join(format!("{}.backup-partial-{}-{n}", self.name, std::process::id()));
            match std::fs::create_dir(&dir) {
                Ok(()) => {
                    staging.dir = dir;
                    return Ok(staging);
                }
                // Left by a crashed process of the same id: not ours to remove.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(Error::Io(e)),
            }
        }
    }

    /// Move the complete copy to the destination (replacing it if it is an
    /// empty directory; refused by the rename if something appeared in it
    /// meanwhile) and make the rename durable.
    fn install(&self, staging: &Path) -> Result<()> {
        let dest = self.parent.join(&self.name);
        std::fs::rename(staging, &dest).map_err(|e| {
            if dest.is_dir() {
                Error::InvalidArgument(format!(
                    "backup destination {}: could not replace it with the copy ({e}); did something \
                     appear in it during the backup?",
                    dest.display()
                ))
            } else {
                Error::Io(e)
            }
        })?;
        // A copy whose rename may not survive a crash is not reported as
        // made: take it away again.
        let synced = std::fs::File::open(&self.parent).and_then(|d| d.sync_all());
        if let Err(e) = synced {
            let _ = std::fs::remove_dir_all(&dest);
            return Err(Error::Io(e));
        }
        Ok(())
    }
}

/// The staging directory: removed on drop unless kept.
struct Staging {
    dir: PathBuf,
    missing_parents: Vec<PathBuf>,
    keep: bool,
}

impl Staging {
    fn keep(mut self) {
        self.keep = true;
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        if !self.dir.as_os_str().is_empty() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
        // Only directories this call created, and only if nothing else went
        // into them meanwhile (`remove_dir` refuses a directory that is not
        // empty).
        for p in &self.missing_parents {
            let _ = std::fs::remove_dir(p);
        }
    }
}
