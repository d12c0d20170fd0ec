//! A copy-on-write overlay: a storage that reads through to another one and
//! keeps every change in memory, so the storage under it is never written.
//! `Db::open_read_only` runs recovery over one laid on a read-only
//! `FsStorage`.
//!
//! Invariants:
//! - The base is only read: `open` of a file it has, `read_at`, `len` and,
//!   once at creation, `list`. Writes, `set_len`, creations and removals
//!   change the overlay's state only; `sync_data` and `sync_dir` do nothing
//!   and succeed (nothing is meant to survive the overlay).
//! - Per file, the bytes are: below `base_visible`, the base's, except in
//!   the 4 KiB blocks written since (`blocks`, each a whole copy of its
//!   block); from `base_visible` to `len`, the blocks written, zeros
//!   elsewhere. `base_visible <= len`: a shrink lowers both, a growth only
//!   `len`, and a shrink zeroes the tail of the block it cuts, so bytes cut
//!   and grown again read as zeros, as on a real file.
//! - A name's state lives in the overlay from its first `open` until its
//!   `remove`, so every handle of a name sees the same bytes. The base file
//!   is open only while a handle of it is: the overlay holds no descriptor of
//!   its own besides the base's, so a `Db`'s bound on open files holds.
//! - Memory: one block (4 KiB plus a map entry) per block written, kept
//!   until its file is cut below it or removed; nothing for reads or for
//!   a file grown by `set_len`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io;
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

use super::{read_full_at, Storage, StorageFile};

/// The unit of copy-on-write, in bytes.
const BLOCK: u64 = 4096;

/// A storage that reads through to `base` and keeps every change in memory.
///
/// Every write, `set_len`, creation and removal changes only the overlay:
/// the base is only read (opened, listed, measured, read), so a base opened
/// read-only (`FsStorage::open_read_only`) is never written, and a write that
/// reached it would fail there instead. `sync_data` and `sync_dir` succeed
/// and do nothing. Removed files vanish from `list` and `open` of a removed
/// or unknown name creates a file in memory only. Which files the base has
/// is listed once, when the overlay is made: the base must not change under
/// it (hold its lock).
///
/// Memory grows by a 4 KiB block for each block written (the first write to
/// a block of a base file copies that block), until the file is cut below it
/// or removed; see `memory_bytes`. Reads cost nothing.
///
/// ```
/// use std::sync::Arc;
/// use ariesdb::storage::{OverlayStorage, SimStorage, Storage};
///
/// let base = Arc::new(SimStorage::new(1));
/// base.open("f")?.write_all_at(b"base", 0)?;
/// let overlay = OverlayStorage::new(base.clone())?;
/// overlay.open("f")?.write_all_at(b"BA", 0)?;
/// let mut buf = [0u8; 4];
/// overlay.open("f")?.read_at(&mut buf, 0)?;
/// assert_eq!(&buf, b"BAse");
/// base.open("f")?.read_at(&mut buf, 0)?;
/// assert_eq!(&buf, b"base"); // the base is unchanged
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct OverlayStorage {
    base: Arc<dyn Storage>,
    dir: Mutex<Dir>,
}

impl std::fmt::Debug for OverlayStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OverlayStorage").field("memory_bytes", &self.memory_bytes()).finish_non_exhaustive()
    }
}

struct Dir {
    /// The base's files, as listed when the overlay was made.
    base_names: BTreeSet<String>,
    /// Base files removed through the overlay: hidden from `list` and `open`.
    removed: BTreeSet<String>,
    /// The state of every file opened or created since, until removed.
    files: HashMap<String, Arc<FileState>>,
}

struct FileState {
    name: String,
    /// The file exists in the base (and was not removed before this state).
    from_base: bool,
    data: RwLock<Data>,
}

struct Data {
    /// The file's length.
    len: u64,
    /// Bytes below this come from the base unless their block is in
    /// `blocks`; at most `len`.
    base_visible: u64,
    /// Blocks written, by index (offset / BLOCK), each BLOCK bytes.
    blocks: BTreeMap<u64, Box<[u8]>>,
}

/// One handle: the shared state of its name, and the base file while bytes
/// of it are visible.
struct OverlayFile {
    state: Arc<FileState>,
    base: Option<Arc<dyn StorageFile>>,
}

impl OverlayStorage {
    /// An overlay on `base`, which is listed now.
    ///
    /// # Errors
    /// An I/O error of listing the base.
    pub fn new(base: Arc<dyn Storage>) -> io::Result<OverlayStorage> {
        let base_names = base.list()?.into_iter().collect();
        let dir = Dir { base_names, removed: BTreeSet::new(), files: HashMap::new() };
        Ok(OverlayStorage { base, dir: Mutex::new(dir) })
    }

    /// Bytes of memory the blocks written hold now (4 KiB per block; the
    /// maps' own small overhead aside).
    pub fn memory_bytes(&self) -> u64 {
        let dir = self.dir.lock();
        dir.files.values().map(|f| f.data.read().blocks.len() as u64 * BLOCK).sum()
    }
}

impl Storage for OverlayStorage {
    fn open(&self, name: &str) -> io::Result<Arc<dyn StorageFile>> {
        let mut dir = self.dir.lock();
        let state = match dir.files.get(name) {
            Some(s) => s.clone(),
            None => {
                let from_base = dir.base_names.contains(name) && !dir.removed.contains(name);
                let (base, len) = match from_base {
                    true => {
                        let f = self.base.open(name)?;
                        let len = f.len()?;
                        (Some(f), len)
                    }
                    false => (None, 0),
                };
                let data = RwLock::new(Data { len, base_visible: len, blocks: BTreeMap::new() });
                let state = Arc::new(FileState { name: name.to_string(), from_base, data });
                dir.files.insert(name.to_string(), state.clone());
                return Ok(Arc::new(OverlayFile { state, base }));
            }
        };
        drop(dir);
        let base = match state.from_base && state.data.read().base_visible > 0 {
            true => Some(self.base.open(&state.name)?),
            false => None,
        };
        Ok(Arc::new(OverlayFile { state, base }))
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        let mut dir = self.dir.lock();
        let in_base = dir.base_names.contains(name) && !dir.removed.contains(name);
        let state = dir.files.remove(name);
        if in_base {
            dir.removed.insert(name.to_string());
        }
        match state.is_some() || in_base {
            true => Ok(()),
            false => Err(io::Error::new(io::ErrorKind::NotFound, format!("no file {name:?} to remove"))),
        }
    }

    fn list(&self) -> io::Result<Vec<String>> {
        let dir = self.dir.lock();
        let mut names: BTreeSet<&String> = dir.base_names.difference(&dir.removed).collect();
        names.extend(dir.files.keys());
        Ok(names.into_iter().cloned().collect())
    }

    fn sync_dir(&self) -> io::Result<()> {
        Ok(())
    }

    fn incarnation(&self) -> u64 {
        self.base.incarnation()
    }

    /// False: zeros written ahead of the log would be held in memory.
    fn zero_fill_ahead(&self) -> bool {
        false
    }
}

impl OverlayFile {
    /// Fill `out` with the bytes at `pos` that no written block covers: the
    /// base's below `base_visible`, zeros from there.
    fn read_unwritten(&self, d: &Data, out: &mut [u8], pos: u64) -> io::Result<()> {
        out.fill(0);
        let from_base = d.base_visible.saturating_sub(pos).min(out.len() as u64) as usize;
        if from_base == 0 {
            return Ok(());
        }
        let base = self.base.as_ref().ok_or_else(|| io::Error::other("overlay: a base file without its handle"))?;
        let n = read_full_at(&**base, &mut out[..from_base], pos)?;
        if n < from_base {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "overlay: the base file {:?} ends at {} bytes, below the {} it had (it changed underneath)",
                    self.state.name,
                    pos + n as u64,
                    d.base_visible
                ),
            ));
        }
        Ok(())
    }
}

impl StorageFile for OverlayFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let d = self.state.data.read();
        if offset >= d.len {
            return Ok(0);
        }
        let n = (d.len - offset).min(buf.len() as u64) as usize;
        let mut done = 0usize;
        while done < n {
            let pos = offset + done as u64;
            let (idx, at) = (pos / BLOCK, (pos % BLOCK) as usize);
            if let Some(b) = d.blocks.get(&idx) {
                let take = (BLOCK as usize - at).min(n - done);
                buf[done..done + take].copy_from_slice(&b[at..at + take]);
                done += take;
            } else {
                // One read for the run of unwritten blocks up to the next written one.
                let run_end = d.blocks.range(idx..).next().map_or(u64::MAX, |(&i, _)| i.saturating_mul(BLOCK));
                let take = (run_end - pos).min((n - done) as u64) as usize;
                self.read_unwritten(&d, &mut buf[done..done + take], pos)?;
                done += take;
            }
        }
        Ok(n)
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        let end = offset
            .checked_add(buf.len() as u64)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "overlay: a write past the largest offset"))?;
        let mut d = self.state.data.write();
        let mut done = 0usize;
        while done < buf.len() {
            let pos = offset + done as u64;
            let (idx, at) = (pos / BLOCK, (pos % BLOCK) as usize);
            let take = (BLOCK as usize - at).min(buf.len() - done);
            if !d.blocks.contains_key(&idx) {
                let mut block = vec![0u8; BLOCK as usize].into_boxed_slice();
                if take < BLOCK as usize {
                    // A partial write keeps the block's other bytes: copy them
                    // first, as far as the file reaches.
                    let start = idx * BLOCK;
                    let have = d.len.saturating_sub(start).min(BLOCK) as usize;
                    self.read_unwritten(&d, &mut block[..have], start)?;
                }
                d.blocks.insert(idx, block);
            }
            if let Some(b) = d.blocks.get_mut(&idx) {
                b[at..at + take].copy_from_slice(&buf[done..done + take]);
            }
            done += take;
        }
        d.len = d.len.max(end);
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        Ok(())
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.state.data.read().len)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let mut d = self.state.data.write();
        if len < d.len {
            d.base_visible = d.base_visible.min(len);
            let _cut = d.blocks.split_off(&len.div_ceil(BLOCK));
            if let Some(b) = d.blocks.get_mut(&(len / BLOCK)) {
                b[(len % BLOCK) as usize..].fill(0);
            }
        }
        d.len = len;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::SimStorage;

    fn base_with(files: &[(&str, &[u8])]) -> Arc<SimStorage> {
        let base = Arc::new(SimStorage::new(7));
        for (name, bytes) in files {
            let f = base.open(name).unwrap();
            f.write_all_at(bytes, 0).unwrap();
            f.sync_data().unwrap();
        }
        base.sync_dir().unwrap();
        base
    }

    fn read(f: &dyn StorageFile, offset: u64, len: usize) -> Vec<u8> {
        let mut buf = vec![0xEEu8; len];
        let n = f.read_at(&mut buf, offset).unwrap();
        buf.truncate(n);
        buf
    }

    fn pattern(len: usize, seed: u8) -> Vec<u8> {
        (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
    }

    /// Every file of the base with its bytes.
    fn contents(base: &SimStorage) -> Vec<(String, Vec<u8>)> {
        base.list().unwrap().into_iter().map(|n| (n.clone(), base.file_contents(&n).unwrap())).collect()
    }

    #[test]
    fn reads_see_writes_and_the_base_is_unchanged() {
        let orig = pattern(3 * 4096 + 100, 1);
        let base = base_with(&[("a", &orig)]);
        let before = contents(&base);
        let ov = OverlayStorage::new(base.clone()).unwrap();
        let f = ov.open("a").unwrap();
        assert_eq!(f.len().unwrap(), orig.len() as u64);
        assert_eq!(read(&*f, 0, 20_000), orig);
        // Partial writes inside one block, across a block boundary, and past the end.
        let mut model = orig.clone();
        for (off, len, seed) in [(10usize, 5usize, 9u8), (4090, 20, 3), (3 * 4096 + 90, 30, 5), (2 * 4096, 4096, 7)] {
            let bytes = pattern(len, seed);
            f.write_all_at(&bytes, off as u64).unwrap();
            if model.len() < off + len {
                model.resize(off + len, 0);
            }
            model[off..off + len].copy_from_slice(&bytes);
        }
        assert_eq!(f.len().unwrap(), model.len() as u64);
        assert_eq!(read(&*f, 0, 20_000), model);
        for (off, len) in [(0, 1), (4095, 2), (4100, 9000), (3 * 4096 + 95, 100)] {
            assert_eq!(read(&*f, off as u64, len), model[off.min(model.len())..(off + len).min(model.len())]);
        }
        // Another handle of the same name sees the same bytes.
        assert_eq!(read(&*ov.open("a").unwrap(), 0, 20_000), model);
        assert_eq!(ov.memory_bytes(), 4 * 4096, "blocks 0, 1, 2 and 3 were written");
        f.sync_data().unwrap();
        ov.sync_dir().unwrap();
        assert_eq!(contents(&base), before, "the base changed");
    }

    #[test]
    fn set_len_shrinks_and_grows_with_zeros() {
        let orig = pattern(3 * 4096, 2);
        let base = base_with(&[("a", &orig)]);
        let before = contents(&base);
        let ov = OverlayStorage::new(base.clone()).unwrap();
        let f = ov.open("a").unwrap();
        f.write_all_at(b"xyz", 5000).unwrap();
        f.set_len(5001).unwrap();
        assert_eq!(f.len().unwrap(), 5001);
        f.set_len(2 * 4096 + 10).unwrap();
        let mut model = orig[..5001].to_vec();
        model[5000] = b'x';
        model.resize(2 * 4096 + 10, 0);
        assert_eq!(read(&*f, 0, 20_000), model, "bytes cut and grown again read as zeros");
        // Cut into an unwritten base block: the base's bytes past the cut are gone too.
        f.set_len(100).unwrap();
        f.set_len(4096 + 1).unwrap();
        let mut model = orig[..100].to_vec();
        model.resize(4096 + 1, 0);
        assert_eq!(read(&*f, 0, 20_000), model);
        // A partial write in the grown region keeps the zeros around it.
        f.write_all_at(b"q", 200).unwrap();
        model[200] = b'q';
        assert_eq!(read(&*f, 0, 20_000), model);
        f.set_len(0).unwrap();
        assert_eq!(read(&*f, 0, 10), b"");
        assert_eq!(ov.memory_bytes(), 0, "a file cut to nothing holds no block");
        // Growing a file holds no memory.
        f.set_len(1 << 30).unwrap();
        assert_eq!(f.len().unwrap(), 1 << 30);
        assert_eq!(read(&*f, (1 << 30) - 3, 10), [0, 0, 0]);
        assert_eq!(ov.memory_bytes(), 0);
        assert_eq!(contents(&base), before);
    }

    #[test]
    fn create_remove_and_list_stay_in_memory() {
        let base = base_with(&[("a", b"aaa"), ("b", b"bbb")]);
        let before = contents(&base);
        let ov = OverlayStorage::new(base.clone()).unwrap();
        assert_eq!(ov.list().unwrap(), ["a", "b"]);
        let c = ov.open("c").unwrap();
        assert!(c.is_empty().unwrap());
        c.write_all_at(b"new", 2).unwrap();
        assert_eq!(read(&*c, 0, 10), b"\0\0new");
        assert_eq!(ov.list().unwrap(), ["a", "b", "c"]);
        ov.remove("a").unwrap();
        assert_eq!(ov.list().unwrap(), ["b", "c"]);
        // A removed base file opens again as a new, empty one.
        assert!(ov.open("a").unwrap().is_empty().unwrap());
        assert_eq!(ov.list().unwrap(), ["a", "b", "c"]);
        ov.remove("a").unwrap();
        ov.remove("c").unwrap();
        assert_eq!(ov.remove("c").unwrap_err().kind(), io::ErrorKind::NotFound);
        assert_eq!(ov.remove("zzz").unwrap_err().kind(), io::ErrorKind::NotFound);
        assert_eq!(ov.list().unwrap(), ["b"]);
        assert_eq!(read(&*ov.open("b").unwrap(), 0, 10), b"bbb");
        assert_eq!(contents(&base), before, "the base changed");
        assert_eq!(base.list().unwrap(), ["a", "b"]);
    }

    #[test]
    fn a_base_file_that_shrank_underneath_is_an_error_not_zeros() {
        let base = base_with(&[("a", &pattern(8192, 4))]);
        let ov = OverlayStorage::new(base.clone()).unwrap();
        let f = ov.open("a").unwrap();
        base.open("a").unwrap().set_len(100).unwrap();
        let mut buf = [0u8; 200];
        assert_eq!(f.read_at(&mut buf, 0).unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
        assert_eq!(f.write_all_at(b"x", 4096 + 1).unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
        assert!(f.write_all_at(&[1u8; 10], u64::MAX - 3).is_err(), "an offset past u64");
    }

    #[test]
    fn random_writes_cuts_and_reads_match_a_plain_model() {
        use rand::{Rng, SeedableRng};
        for seed in 0..20u64 {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let orig = pattern(rng.gen_range(0..5 * 4096), seed as u8);
            let base = base_with(&[("f", &orig)]);
            let ov = OverlayStorage::new(base.clone()).unwrap();
            let f = ov.open("f").unwrap();
            let mut model = orig.clone();
            for step in 0..200 {
                match rng.gen_range(0..10) {
                    0..=5 => {
                        let off = rng.gen_range(0..6 * 4096);
                        let bytes = pattern(rng.gen_range(1..9000), rng.gen());
                        f.write_all_at(&bytes, off as u64).unwrap();
                        model.resize(model.len().max(off + bytes.len()), 0);
                        model[off..off + bytes.len()].copy_from_slice(&bytes);
                    }
                    6 | 7 => {
                        let len = rng.gen_range(0..7 * 4096);
                        f.set_len(len as u64).unwrap();
                        model.resize(len, 0);
                    }
                    _ => {
                        // A fresh handle must see the same bytes.
                        let g = ov.open("f").unwrap();
                        assert_eq!(read(&*g, 0, 8 * 4096), model, "seed {seed} step {step}");
                    }
                }
                let off = rng.gen_range(0..8 * 4096);
                let len = rng.gen_range(0..9000);
                let want = &model[off.min(model.len())..(off + len).min(model.len())];
                assert_eq!(read(&*f, off as u64, len), want, "seed {seed} step {step}");
            }
            assert_eq!(base.file_contents("f").unwrap(), orig, "seed {seed}: the base changed");
        }
    }
}
