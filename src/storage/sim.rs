//! SimStorage: an in-memory disk, deterministic from a seed, that injects the
//! faults the engine must survive.
//!
//! Model, per file: `durable` bytes (what survives a power loss for sure), the
//! writes and length changes since the last successful `sync_data` (pending,
//! in order), and `current` (durable with pending applied; what reads see).
//! Per directory: the set of names that are durable; `sync_dir` makes the
//! current set durable.
//!
//! A power loss turns each file's pending changes into some mix of old and new:
//! every pending write lands, is lost, or lands partly, decided independently
//! for each 512-byte sector (so a later write can land while an earlier one is
//! lost); the length becomes the durable or the current one. Creations and
//! removals not covered by `sync_dir` may be undone. Afterwards every handle
//! opened before is dead: all its calls fail. All choices come from one
//! PRNG seeded by the seed, so a run is exactly reproducible.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::sync::Arc;

use parking_lot::Mutex;

use super::{Storage, StorageFile};

/// Sector size for torn writes.
pub const SECTOR: usize = 512;

/// Counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SimStats {
    /// Storage calls.
    pub ops: u64,
    /// read_at calls.
    pub reads: u64,
    /// write_all_at calls.
    pub writes: u64,
    /// sync_data and sync_dir calls.
    pub syncs: u64,
    /// Bytes written.
    pub bytes_written: u64,
    /// Power losses simulated.
    pub power_losses: u64,
}

/// A fault to inject.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// The call with this index (see `op_count`) and every later one fail: the
    /// machine stopped there. Cleared by `power_loss` or `process_crash`.
    CrashAtOp(u64),
    /// The call with this index fails once.
    IoErrorAtOp(u64),
    /// Every call from this index on fails (a persistent I/O error; unlike
    /// `CrashAtOp` the machine stays up, so no power loss is implied).
    IoErrorFromOp(u64),
    /// Every `sync_data` from this call index on fails; the file's unsynced
    /// writes are then either kept or dropped (as Linux may drop dirty pages
    /// after a failed fsync), by seeded coin flip.
    SyncFailsFromOp(u64),
    /// Writes or length changes that would make all files together larger
    /// than this many bytes fail (no space left on device).
    NoSpaceAbove(u64),
    /// The write at this call index lands `shift` bytes away from where it was
    /// aimed (a misdirected write: silent damage the checksums must catch).
    MisdirectedWrite {
        /// Call index of the write.
        op: u64,
        /// Bytes added to the write's offset.
        shift: u64,
    },
    /// Reads of the sector at `offset` of file `name` fail until it is rewritten.
    LatentSectorError {
        /// The file.
        name: String,
        /// Any byte offset inside the sector.
        offset: u64,
    },
}

/// One storage call, as recorded by the trace.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct TraceEntry {
    /// Call index (see `SimStorage::op_count`).
    pub op: u64,
    /// `open`, `remove`, `list`, `sync_dir`, `read`, `write`, `sync`, `len`, `set_len`.
    pub call: &'static str,
    /// The file, if the call names one.
    pub file: String,
    /// Offset (reads, writes) or length (set_len).
    pub offset: u64,
    /// Bytes read or written.
    pub len: u64,
    /// False if the call failed.
    pub ok: bool,
}

#[derive(Clone)]
enum Change {
    Write { off: u64, data: Vec<u8> },
    SetLen(u64),
}

#[derive(Clone, Default)]
struct SimFileState {
    id: u64,
    durable: Vec<u8>,
    current: Vec<u8>,
    pending: Vec<Change>,
}

struct State {
    rng: u64,
    op: u64,
    generation: u64,
    next_id: u64,
    crashed: bool,
    torn: bool,
    faults: Vec<Fault>,
    files: BTreeMap<String, SimFileState>,
    durable_names: BTreeSet<String>,
    /// Removed files whose name was durable: they may come back on power loss.
    removed: BTreeMap<String, SimFileState>,
    stats: SimStats,
    /// The last `trace_cap` calls, when tracing is on.
    trace: std::collections::VecDeque<TraceEntry>,
    trace_cap: usize,
}

impl State {
    fn next_u64(&mut self) -> u64 {
        // splitmix64
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn coin(&mut self) -> bool {
        self.next_u64() & 1 == 1
    }

    /// Count one call and apply the call-indexed faults.
    fn begin_op(&mut self, generation: Option<u64>) -> io::Result<u64> {
        let idx = self.op;
        self.op += 1;
        self.stats.ops += 1;
        if self.crashed {
            return Err(io::Error::other("simulated crash: the machine is down"));
        }
        if generation.is_some_and(|g| g != self.generation) {
            return Err(io::Error::other("stale file handle from before a simulated crash"));
        }
        for f in &self.faults {
            match f {
                Fault::CrashAtOp(n) if idx >= *n => {
                    self.crashed = true;
                    return Err(io::Error::other(format!("simulated crash at storage call {idx}")));
                }
                Fault::IoErrorAtOp(n) if idx == *n => {
                    return Err(io::Error::other(format!("simulated I/O error at storage call {idx}")));
                }
                Fault::IoErrorFromOp(n) if idx >= *n => {
                    return Err(io::Error::other(format!("simulated persistent I/O error at storage call {idx}")));
                }
                _ => {}
            }
        }
        Ok(idx)
    }

    fn record(&mut self, op: u64, call: &'static str, file: &str, offset: u64, len: u64, ok: bool) {
        if self.trace_cap == 0 {
            return;
        }
        if self.trace.len() == self.trace_cap {
            self.trace.pop_front();
        }
        self.trace.push_back(TraceEntry { op, call, file: file.to_string(), offset, len, ok });
    }

    fn total_len(&self) -> u64 {
        self.files.values().map(|f| f.current.len() as u64).sum()
    }

    fn check_space(&self, growth: u64) -> io::Result<()> {
        for f in &self.faults {
            if let Fault::NoSpaceAbove(limit) = f {
                if self.total_len() + growth > *limit {
                    return Err(io::Error::new(io::ErrorKind::StorageFull, "simulated: no space left on device"));
                }
            }
        }
        Ok(())
    }

    fn file(&mut self, name: &str, id: u64) -> io::Result<&mut SimFileState> {
        match self.files.get_mut(name) {
            Some(f) if f.id == id => Ok(f),
            _ => Err(io::Error::new(io::ErrorKind::NotFound, format!("simulated file {name} was removed"))),
        }
    }
}

fn apply_change(buf: &mut Vec<u8>, c: &Change) {
    match c {
        Change::Write { off, data } => {
            let off = *off as usize;
            if buf.len() < off + data.len() {
                buf.resize(off + data.len(), 0);
            }
            buf[off..off + data.len()].copy_from_slice(data);
        }
        Change::SetLen(n) => buf.resize(*n as usize, 0),
    }
}

/// After a power loss: each pending write lands sector by sector or not.
fn settle(st: &mut State, f: &SimFileState) -> Vec<u8> {
    if f.pending.is_empty() {
        return f.durable.clone();
    }
    if !st.torn {
        return f.durable.clone();
    }
    let len = if st.coin() { f.current.len() } else { f.durable.len() };
    let mut out = f.durable.clone();
    out.resize(len.max(out.len()), 0);
    for c in &f.pending {
        match c {
            Change::Write { off, data } => {
                let (start, end) = (*off as usize, *off as usize + data.len());
                let mut s = start / SECTOR * SECTOR;
                while s < end {
                    let e = (s + SECTOR).min(end);
                    let from = s.max(start);
                    if st.coin() {
                        if out.len() < e {
                            out.resize(e, 0);
                        }
                        out[from..e].copy_from_slice(&data[from - start..e - start]);
                    }
                    s += SECTOR;
                }
            }
            Change::SetLen(_) => {}
        }
    }
    out.truncate(len);
    out.resize(len, 0);
    out
}

impl std::fmt::Debug for SimStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimStorage")
            .field("op_count", &self.op_count())
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

/// The simulated disk. Cheap to share: clone the `Arc` you hold it in.
///
/// Open a `Db` on it with `Db::open_with`, crash it with `power_loss` (or
/// `process_crash`, or a `Fault` armed with `inject`), open it again, and
/// check what recovery kept. Every choice (which unsynced sectors land) comes
/// from the seed, so a failing seed reproduces exactly. A whole crash test of
/// an application: `examples/crash_test_your_app.rs`, docs/testing.md.
///
/// ```
/// use std::sync::Arc;
/// use ariesdb::storage::SimStorage;
/// use ariesdb::{Db, Options};
///
/// let sim = Arc::new(SimStorage::new(7)); // the seed
/// let opts = Options::default().background_writer(false);
/// let db = Db::open_with(sim.clone(), opts.clone())?;
/// let mut tx = db.begin()?;
/// tx.put("committed", "kept")?;
/// tx.commit()?; // returns once its commit record is synced
/// let mut loser = db.begin()?;
/// loser.put("uncommitted", "gone")?;
/// db.sync()?; // the loser's record reaches the disk too: recovery must undo it
///
/// sim.power_loss(); // unsynced writes are lost, torn by sector, or kept
/// drop(loser); // the old process is gone: its handles refuse every call
/// drop(db);
///
/// let db = Db::open_with(sim.clone(), opts)?; // restart recovery
/// // The loser is rolled back in the background (instant restart); until
/// // then its key stays locked, and snapshots see the state without it.
/// assert_eq!(db.recovery_report().losers, 1);
/// let snap = db.begin_read()?;
/// assert_eq!(snap.get("committed")?.as_deref(), Some(&b"kept"[..]));
/// assert_eq!(snap.get("uncommitted")?, None);
/// db.check()?;
/// # Ok::<(), ariesdb::Error>(())
/// ```
pub struct SimStorage {
    seed: u64,
    state: Arc<Mutex<State>>,
}

struct SimFile {
    name: String,
    id: u64,
    generation: u64,
    state: Arc<Mutex<State>>,
}

impl SimStorage {
    /// A new, empty disk.
    pub fn new(seed: u64) -> SimStorage {
        let state = State {
            rng: seed ^ 0x5EED_0FA1_E5DB,
            op: 0,
            generation: 0,
            next_id: 1,
            crashed: false,
            torn: true,
            faults: Vec::new(),
            files: BTreeMap::new(),
            durable_names: BTreeSet::new(),
            removed: BTreeMap::new(),
            stats: SimStats::default(),
            trace: std::collections::VecDeque::new(),
            trace_cap: 0,
        };
        SimStorage { seed, state: Arc::new(Mutex::new(state)) }
    }

    /// The seed.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Storage calls made so far; the next call has this index.
    pub fn op_count(&self) -> u64 {
        self.state.lock().op
    }

    /// Arm a fault.
    pub fn inject(&self, fault: Fault) {
        self.state.lock().faults.push(fault);
    }

    /// Disarm every fault.
    pub fn clear_faults(&self) {
        self.state.lock().faults.clear();
    }

    /// True once a `CrashAtOp` fault fired (until the next power loss or process crash).
    pub fn has_crashed(&self) -> bool {
        self.state.lock().crashed
    }

    /// Turn torn and reordered writes on power loss on (default) or off; off,
    /// a power loss drops every unsynced write whole.
    pub fn set_torn_writes(&self, on: bool) {
        self.state.lock().torn = on;
    }

    /// Simulate a power loss (see the module doc). Old handles die.
    pub fn power_loss(&self) {
        let mut st = self.state.lock();
        st.stats.power_losses += 1;
        let files = std::mem::take(&mut st.files);
        let removed = std::mem::take(&mut st.removed);
        let mut out = BTreeMap::new();
        for (name, f) in files {
            let durable_name = st.durable_names.contains(&name);
            if !durable_name && st.coin() {
                continue; // the creation is undone
            }
            let bytes = settle(&mut st, &f);
            out.insert(name, SimFileState { id: f.id, durable: bytes.clone(), current: bytes, pending: vec![] });
        }
        for (name, f) in removed {
            if !out.contains_key(&name) && st.coin() {
                let bytes = settle(&mut st, &f);
                out.insert(name, SimFileState { id: f.id, durable: bytes.clone(), current: bytes, pending: vec![] });
            }
        }
        st.durable_names = out.keys().cloned().collect();
        st.files = out;
        st.faults.retain(|f| !matches!(f, Fault::CrashAtOp(_)));
        st.crashed = false;
        st.generation += 1;
    }

    /// Simulate the process dying while the machine stays up: every write
    /// stays (still unsynced); old handles die.
    pub fn process_crash(&self) {
        let mut st = self.state.lock();
        st.faults.retain(|f| !matches!(f, Fault::CrashAtOp(_)));
        st.crashed = false;
        st.generation += 1;
    }

    /// Flip bit `bit` (0 to 7) of the byte at `byte_offset` of a file,
    /// durably (silent damage).
    ///
    /// # Errors
    /// Kind `NotFound` if there is no such file, `InvalidInput` for an offset
    /// past its end.
    pub fn flip_bit(&self, name: &str, byte_offset: u64, bit: u8) -> io::Result<()> {
        let mut st = self.state.lock();
        let f = st.files.get_mut(name).ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, name.to_string()))?;
        let i = byte_offset as usize;
        if i >= f.current.len() || i >= f.durable.len() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "offset past the end"));
        }
        f.current[i] ^= 1 << (bit % 8);
        f.durable[i] ^= 1 << (bit % 8);
        Ok(())
    }

    /// The bytes a read of the file would see now.
    pub fn file_contents(&self, name: &str) -> Option<Vec<u8>> {
        self.state.lock().files.get(name).map(|f| f.current.clone())
    }

    /// Overwrite bytes of a file durably (for damage tests).
    ///
    /// # Errors
    /// Kind `NotFound` if there is no such file.
    pub fn write_durable(&self, name: &str, offset: u64, bytes: &[u8]) -> io::Result<()> {
        let mut st = self.state.lock();
        let f = st.files.get_mut(name).ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, name.to_string()))?;
        let c = Change::Write { off: offset, data: bytes.to_vec() };
        apply_change(&mut f.durable, &c);
        apply_change(&mut f.current, &c);
        Ok(())
    }

    /// Record the last `capacity` storage calls (0 turns tracing off).
    pub fn set_trace(&self, capacity: usize) {
        let mut st = self.state.lock();
        st.trace_cap = capacity;
        st.trace.clear();
    }

    /// The recorded calls, oldest first.
    pub fn trace(&self) -> Vec<TraceEntry> {
        self.state.lock().trace.iter().cloned().collect()
    }

    /// Counters.
    pub fn stats(&self) -> SimStats {
        self.state.lock().stats.clone()
    }
}

impl SimStorage {
    fn open_in(&self, st: &mut State, name: &str) -> io::Result<Arc<dyn StorageFile>> {
        st.begin_op(None)?;
        if name.is_empty() || name.contains('/') {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "bad file name"));
        }
        let id = match st.files.get(name) {
            Some(f) => f.id,
            None => {
                let id = st.next_id;
                st.next_id += 1;
                st.files.insert(name.to_string(), SimFileState { id, ..Default::default() });
                id
            }
        };
        let generation = st.generation;
        Ok(Arc::new(SimFile { name: name.to_string(), id, generation, state: self.state.clone() }))
    }

    fn remove_in(&self, st: &mut State, name: &str) -> io::Result<()> {
        st.begin_op(None)?;
        let f = st.files.remove(name).ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, name.to_string()))?;
        if st.durable_names.contains(name) {
            st.removed.insert(name.to_string(), f);
        }
        Ok(())
    }

    fn list_in(&self, st: &mut State) -> io::Result<Vec<String>> {
        st.begin_op(None)?;
        Ok(st.files.keys().cloned().collect())
    }

    fn sync_dir_in(&self, st: &mut State) -> io::Result<()> {
        st.begin_op(None)?;
        st.stats.syncs += 1;
        st.durable_names = st.files.keys().cloned().collect();
        st.removed.clear();
        Ok(())
    }
}

impl Storage for SimStorage {
    fn open(&self, name: &str) -> io::Result<Arc<dyn StorageFile>> {
        let mut st = self.state.lock();
        let op = st.op;
        let r = self.open_in(&mut st, name);
        st.record(op, "open", name, 0, 0, r.is_ok());
        r
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        let mut st = self.state.lock();
        let op = st.op;
        let r = self.remove_in(&mut st, name);
        st.record(op, "remove", name, 0, 0, r.is_ok());
        r
    }

    fn list(&self) -> io::Result<Vec<String>> {
        let mut st = self.state.lock();
        let op = st.op;
        let r = self.list_in(&mut st);
        st.record(op, "list", "", 0, 0, r.is_ok());
        r
    }

    fn sync_dir(&self) -> io::Result<()> {
        let mut st = self.state.lock();
        let op = st.op;
        let r = self.sync_dir_in(&mut st);
        st.record(op, "sync_dir", "", 0, 0, r.is_ok());
        r
    }

    fn incarnation(&self) -> u64 {
        self.state.lock().generation
    }
}

impl SimFile {
    fn read_at_in(&self, st: &mut State, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        st.begin_op(Some(self.generation))?;
        st.stats.reads += 1;
        let end = offset + buf.len() as u64;
        for f in &st.faults {
            if let Fault::LatentSectorError { name, offset: o } = f {
                let s = o / SECTOR as u64 * SECTOR as u64;
                if *name == self.name && offset < s + SECTOR as u64 && s < end {
                    return Err(io::Error::other(format!("simulated latent sector error in {name} at {s}")));
                }
            }
        }
        let f = st.file(&self.name, self.id)?;
        let off = offset as usize;
        if off >= f.current.len() {
            return Ok(0);
        }
        let n = buf.len().min(f.current.len() - off);
        buf[..n].copy_from_slice(&f.current[off..off + n]);
        Ok(n)
    }

    fn write_in(&self, st: &mut State, buf: &[u8], offset: u64) -> io::Result<()> {
        let idx = st.begin_op(Some(self.generation))?;
        let offset = offset
            + st.faults
                .iter()
                .find_map(|f| match f {
                    Fault::MisdirectedWrite { op, shift } if *op == idx => Some(*shift),
                    _ => None,
                })
                .unwrap_or(0);
        let cur = st.file(&self.name, self.id)?.current.len() as u64;
        st.check_space((offset + buf.len() as u64).saturating_sub(cur))?;
        st.stats.writes += 1;
        st.stats.bytes_written += buf.len() as u64;
        let (name, end) = (self.name.clone(), offset + buf.len() as u64);
        st.faults.retain(|f| match f {
            Fault::LatentSectorError { name: n, offset: o } => {
                !(*n == name
                    && offset <= o / SECTOR as u64 * SECTOR as u64
                    && (o / SECTOR as u64 + 1) * SECTOR as u64 <= end)
            }
            _ => true,
        });
        let f = st.file(&self.name, self.id)?;
        let c = Change::Write { off: offset, data: buf.to_vec() };
        apply_change(&mut f.current, &c);
        f.pending.push(c);
        Ok(())
    }

    fn sync_data_in(&self, st: &mut State) -> io::Result<()> {
        let idx = st.begin_op(Some(self.generation))?;
        st.stats.syncs += 1;
        let fails = st.faults.iter().any(|f| matches!(f, Fault::SyncFailsFromOp(n) if idx >= *n));
        if fails {
            let drop_pending = st.coin();
            let f = st.file(&self.name, self.id)?;
            if drop_pending {
                f.current = f.durable.clone();
                f.pending.clear();
            }
            return Err(io::Error::other(format!("simulated fsync failure at storage call {idx}")));
        }
        let f = st.file(&self.name, self.id)?;
        f.durable = f.current.clone();
        f.pending.clear();
        Ok(())
    }

    fn len_in(&self, st: &mut State) -> io::Result<u64> {
        st.begin_op(Some(self.generation))?;
        Ok(st.file(&self.name, self.id)?.current.len() as u64)
    }

    fn set_len_in(&self, st: &mut State, len: u64) -> io::Result<()> {
        st.begin_op(Some(self.generation))?;
        let cur = st.file(&self.name, self.id)?.current.len() as u64;
        st.check_space(len.saturating_sub(cur))?;
        let f = st.file(&self.name, self.id)?;
        let c = Change::SetLen(len);
        apply_change(&mut f.current, &c);
        f.pending.push(c);
        Ok(())
    }
}

impl StorageFile for SimFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let mut st = self.state.lock();
        let op = st.op;
        let r = self.read_at_in(&mut st, buf, offset);
        st.record(op, "read", &self.name, offset, buf.len() as u64, r.is_ok());
        r
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        let mut st = self.state.lock();
        let op = st.op;
        let r = self.write_in(&mut st, buf, offset);
        st.record(op, "write", &self.name, offset, buf.len() as u64, r.is_ok());
        r
    }

    fn sync_data(&self) -> io::Result<()> {
        let mut st = self.state.lock();
        let op = st.op;
        let r = self.sync_data_in(&mut st);
        st.record(op, "sync", &self.name, 0, 0, r.is_ok());
        r
    }

    fn len(&self) -> io::Result<u64> {
        let mut st = self.state.lock();
        let op = st.op;
        let r = self.len_in(&mut st);
        st.record(op, "len", &self.name, 0, 0, r.is_ok());
        r
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let mut st = self.state.lock();
        let op = st.op;
        let r = self.set_len_in(&mut st, len);
        st.record(op, "set_len", &self.name, len, 0, r.is_ok());
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_sync(s: &SimStorage, name: &str, data: &[u8]) -> Arc<dyn StorageFile> {
        let f = s.open(name).unwrap();
        f.write_all_at(data, 0).unwrap();
        f.sync_data().unwrap();
        s.sync_dir().unwrap();
        f
    }

    #[test]
    fn synced_data_survives_and_handles_die() {
        let s = SimStorage::new(1);
        let f = write_sync(&s, "a", &[7u8; 2000]);
        s.power_loss();
        assert!(f.len().is_err(), "old handle must be dead");
        assert_eq!(s.file_contents("a").unwrap(), vec![7u8; 2000]);
    }

    #[test]
    fn unsynced_writes_may_be_lost_torn_or_reordered() {
        let (mut lost, mut kept, mut mixed, mut reordered) = (false, false, false, false);
        for seed in 0..64 {
            let s = SimStorage::new(seed);
            let f = write_sync(&s, "a", &[0u8; 4096]);
            f.write_all_at(&[1u8; 2048], 0).unwrap();
            f.write_all_at(&[2u8; 512], 3072).unwrap();
            s.power_loss();
            let c = s.file_contents("a").unwrap();
            let first: Vec<u8> = (0..4).map(|i| c[i * 512]).collect();
            lost |= c.iter().all(|&b| b == 0);
            kept |= first == vec![1; 4] && c[3072] == 2;
            mixed |= first.contains(&1) && first.contains(&0);
            reordered |= c[3072] == 2 && c[0] == 0;
        }
        assert!(lost && kept && mixed && reordered, "{lost} {kept} {mixed} {reordered}");
    }

    #[test]
    fn crash_at_op_stops_everything_until_power_loss() {
        let s = SimStorage::new(2);
        let f = s.open("a").unwrap();
        s.inject(Fault::CrashAtOp(s.op_count() + 1));
        f.write_all_at(b"x", 0).unwrap();
        assert!(f.sync_data().is_err());
        assert!(s.has_crashed());
        assert!(s.list().is_err());
        s.power_loss();
        assert!(!s.has_crashed());
        assert!(s.list().is_ok());
    }

    #[test]
    fn unsynced_creation_may_vanish_synced_does_not() {
        let mut vanished = false;
        for seed in 0..32 {
            let s = SimStorage::new(seed);
            s.open("new").unwrap().sync_data().unwrap();
            s.power_loss();
            vanished |= s.file_contents("new").is_none();
            let s = SimStorage::new(seed);
            s.open("kept").unwrap();
            s.sync_dir().unwrap();
            s.power_loss();
            assert!(s.file_contents("kept").is_some());
        }
        assert!(vanished);
    }

    #[test]
    fn same_seed_same_result() {
        let run = || {
            let s = SimStorage::new(42);
            let f = write_sync(&s, "a", &[0u8; 8192]);
            for i in 0..16u8 {
                f.write_all_at(&[i; 700], i as u64 * 500).unwrap();
            }
            s.power_loss();
            s.file_contents("a").unwrap()
        };
        assert_eq!(run(), run());
    }

    #[test]
    fn trace_and_misdirected_write() {
        let s = SimStorage::new(4);
        s.set_trace(16);
        let f = s.open("a").unwrap();
        s.inject(Fault::MisdirectedWrite { op: s.op_count(), shift: 4096 });
        f.write_all_at(b"page", 0).unwrap();
        let c = s.file_contents("a").unwrap();
        assert_eq!(&c[4096..4100], b"page");
        assert!(c[..4].iter().all(|&b| b == 0));
        let t = s.trace();
        assert_eq!(t.iter().map(|e| e.call).collect::<Vec<_>>(), vec!["open", "write"]);
        assert_eq!((t[1].offset, t[1].len, t[1].ok), (0, 4, true));
    }

    #[test]
    fn injected_faults() {
        let s = SimStorage::new(3);
        let f = write_sync(&s, "a", &[1u8; 1024]);
        s.inject(Fault::SyncFailsFromOp(s.op_count()));
        f.write_all_at(b"zz", 0).unwrap();
        assert!(f.sync_data().is_err());
        s.clear_faults();
        s.inject(Fault::NoSpaceAbove(2000));
        assert_eq!(f.write_all_at(&[0; 2000], 1024).unwrap_err().kind(), io::ErrorKind::StorageFull);
        s.clear_faults();
        s.inject(Fault::LatentSectorError { name: "a".into(), offset: 600 });
        let mut b = [0u8; 100];
        assert!(f.read_at(&mut b, 0).is_ok());
        assert!(f.read_at(&mut b, 550).is_err());
        f.write_all_at(&[5u8; 512], 512).unwrap();
        assert!(f.read_at(&mut b, 550).is_ok(), "rewriting the sector clears the error");
        s.inject(Fault::IoErrorAtOp(s.op_count()));
        assert!(f.len().is_err());
        assert!(f.len().is_ok());
        s.inject(Fault::IoErrorFromOp(s.op_count() + 1));
        assert!(f.len().is_ok());
        assert!(f.len().is_err() && f.len().is_err());
        assert!(!s.has_crashed());
        s.clear_faults();
        s.flip_bit("a", 3, 0).unwrap();
        assert_eq!(s.file_contents("a").unwrap()[3], 1 ^ 1);
    }
}
