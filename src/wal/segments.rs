//! The log's segment files: finding them at open (`discover`), a bounded
//! cache of open handles, and erasing the stale tail past the end of the log
//! that recovery found (`erase_stale_tail`). Reading the log is
//! `super::reader`; appending and truncation are `super::Wal`.
//!
//! Invariants:
//! - The set of known segments (`starts`, with each file's length) is the set
//!   of `wal-*.log` files the log owns; it changes only by `create`,
//!   `forget` (by truncation) and `erase_stale_tail`.
//! - At most `SEGMENT_HANDLE_CACHE` handles are kept open, the newest
//!   segment's (the one appends go to) always among them; the others are the
//!   most recently used, and the least recently used is closed first. A
//!   caller holds a handle (an `Arc`) only for the duration of one read,
//!   write or sync, so the process holds at most the cache plus one handle
//!   per call in flight, whatever the number of segments.
//! - Lengths are kept here (set at load and create, raised by `note_written`),
//!   so `disk_bytes` needs no I/O and no open file.
//! - The stale tail is erased (zeroed and synced, later segments removed and
//!   the directory synced) before the log appends anything, so a stale record
//!   can never be read as log.

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::Mutex;

use super::reader::ScanEnd;
use super::{parse_segment_name, segment_name, LSN_START, MAX_LSN, RECORD_ALIGN};
use crate::error::{Error, Result};

use crate::storage::{Storage, StorageFile};
use crate::types::Lsn;

/// Segment handles kept open at most (the newest segment's included).
pub const SEGMENT_HANDLE_CACHE: usize = 8;

struct Cached {
    start: Lsn,
    file: Arc<dyn StorageFile>,
    last_use: u64,
}

struct State {
    /// Start LSN of every segment -> its length in bytes.
    lens: BTreeMap<Lsn, u64>,
    /// Open handles, at most `SEGMENT_HANDLE_CACHE`.
    open: Vec<Cached>,
    tick: u64,
}

/// The log's segment files.
pub struct Segments {
    storage: Arc<dyn Storage>,
    state: Mutex<State>,
}

impl Segments {
    /// The segments starting at `starts`, which exist on `storage`. Opens each
    /// once, one at a time, to learn its length; keeps none open.
    ///
    /// # Errors
    /// An I/O error of opening or measuring a file.
    pub fn load(storage: Arc<dyn Storage>, starts: impl IntoIterator<Item = Lsn>) -> Result<Segments> {
        let mut lens = BTreeMap::new();
        for s in starts {
            let len = storage.open(&segment_name(s))?.len()?;
            lens.insert(s, len);
        }
        Ok(Segments { storage, state: Mutex::new(State { lens, open: Vec::new(), tick: 0 }) })
    }

    /// The log's segments as found on `storage`: every file named like a
    /// segment, each of whose start LSN must be possible (within
    /// `LSN_START..=MAX_LSN` and aligned). Loaded as by `load`.
    ///
    /// # Errors
    /// `Error::Corruption` if a segment's name names an impossible LSN; an
    /// I/O error of listing the directory or measuring a file.
    pub fn discover(storage: Arc<dyn Storage>) -> Result<Segments> {
        let mut starts = Vec::new();
        for name in &storage.list()? {
            if let Some(start) = parse_segment_name(name) {
                if !(LSN_START..=MAX_LSN).contains(&start) || !start.get().is_multiple_of(RECORD_ALIGN as u64) {
                    return Err(Error::corruption("wal", format!("log segment {name} starts at an impossible LSN")));
                }
                starts.push(start);
            }
        }
        // Opened one at a time, kept open only through a small cache.
        Segments::load(storage, starts)
    }

    /// True if there is no segment.
    pub fn is_empty(&self) -> bool {
        self.state.lock().lens.is_empty()
    }

    /// True if a segment starts at `start`.
    pub fn contains(&self, start: Lsn) -> bool {
        self.state.lock().lens.contains_key(&start)
    }

    /// Start LSNs of all segments, ascending.
    pub fn starts(&self) -> Vec<Lsn> {
        self.state.lock().lens.keys().copied().collect()
    }

    /// Start LSN of the second segment (where the first one ends), if any.
    pub fn second_start(&self) -> Option<Lsn> {
        self.state.lock().lens.keys().nth(1).copied()
    }

    /// Start LSNs of the segments starting after `lsn`, ascending.
    pub fn starts_after(&self, lsn: Lsn) -> Vec<Lsn> {
        self.state.lock().lens.range(lsn + 1..).map(|(&s, _)| s).collect()
    }

    /// The segment holding `lsn` (the last one starting at or before it), and
    /// the start of the next segment (`u64::MAX` if none).
    pub fn locate(&self, lsn: Lsn) -> Option<(Lsn, Lsn)> {
        let st = self.state.lock();
        let (&s, _) = st.lens.range(..=lsn).next_back()?;
        let next = st.lens.range(lsn + 1..).next().map(|(&n, _)| n).unwrap_or(Lsn::MAX);
        Some((s, next))
    }

    /// The length of the segment file at `start`: as created, or as far as
    /// it has been written, whichever is more (no I/O).
    pub fn len_of(&self, start: Lsn) -> Option<u64> {
        self.state.lock().lens.get(&start).copied()
    }

    /// Bytes the segment files occupy (no I/O).
    pub fn disk_bytes(&self) -> u64 {
        self.state.lock().lens.values().sum()
    }

    /// An open handle of the segment starting at `start`, from the cache or
    /// newly opened (closing the least recently used one if the cache is full).
    /// Hold it only for the call it is needed for.
    ///
    /// # Errors
    /// `Error::Corruption` if no such segment is known; an I/O error of opening.
    pub fn file(&self, start: Lsn) -> Result<Arc<dyn StorageFile>> {
        let mut st = self.state.lock();
        if !st.lens.contains_key(&start) {
            return Err(Error::corruption("wal", format!("no log segment starts at LSN {start}")));
        }
        st.tick += 1;
        let tick = st.tick;
        if let Some(c) = st.open.iter_mut().find(|c| c.start == start) {
            c.last_use = tick;
            return Ok(c.file.clone());
        }
        // Opening under the state lock keeps the count bounded even with
        // concurrent callers; segment opens are rare (the cache absorbs the
        // current segment and recent ones).
        let file = self.storage.open(&segment_name(start))?;
        Self::insert(&mut st, start, file.clone(), tick);
        Ok(file)
    }

    /// Create the file of a new segment starting at `start`, of `len` bytes,
    /// and keep its handle open (it is the newest).
    ///
    /// # Errors
    /// An I/O error of creating or sizing the file.
    pub fn create(&self, start: Lsn, len: u64) -> Result<()> {
        let file = self.storage.open(&segment_name(start))?;
        file.set_len(len)?;
        let mut st = self.state.lock();
        st.lens.insert(start, len);
        st.tick += 1;
        let tick = st.tick;
        st.open.retain(|c| c.start != start);
        Self::insert(&mut st, start, file, tick);
        Ok(())
    }

    fn insert(st: &mut State, start: Lsn, file: Arc<dyn StorageFile>, tick: u64) {
        st.open.push(Cached { start, file, last_use: tick });
        if st.open.len() > SEGMENT_HANDLE_CACHE {
            let newest = st.lens.keys().next_back().copied();
            if let Some(i) = st
                .open
                .iter()
                .enumerate()
                .filter(|(_, c)| Some(c.start) != newest)
                .min_by_key(|(_, c)| c.last_use)
                .map(|(i, _)| i)
            {
                st.open.swap_remove(i);
            }
        }
    }

    /// Bytes were written to the segment at `start` up to offset `end`.
    pub fn note_written(&self, start: Lsn, end: u64) {
        if let Some(l) = self.state.lock().lens.get_mut(&start) {
            *l = (*l).max(end);
        }
    }

    /// Forget the segment at `start` and close its handle; the caller removes
    /// the file.
    pub fn forget(&self, start: Lsn) {
        let mut st = self.state.lock();
        st.lens.remove(&start);
        st.open.retain(|c| c.start != start);
    }

    /// Erase what lies past the end of the log that `end` describes, so it
    /// can never be read as log: zero the valid-looking stale records after
    /// the end in the current segment (up to `LogEnd::stale_until`) and sync,
    /// then remove every later segment and sync the directory. Recovery calls
    /// this once, after analysis and before the log appends anything.
    ///
    /// # Errors
    /// An I/O error of writing, syncing or removing.
    pub fn erase_stale_tail(&self, end: &ScanEnd) -> Result<()> {
        assert!(!end.how.is_damage(), "no tail is erased past damage: {}", end.how);
        let (end_lsn, stale_until) = (end.end_lsn(), end.how.stale_until());
        assert!(end.cur_seg <= end_lsn && end_lsn <= stale_until);
        if self.contains(end.cur_seg) && stale_until > end_lsn {
            let f = self.file(end.cur_seg)?;
            let zeros = vec![0u8; (stale_until - end_lsn) as usize];
            f.write_all_at(&zeros, end_lsn - end.cur_seg)?;
            f.sync_data()?;
        }
        if !end.stale_segments.is_empty() {
            for &s in &end.stale_segments {
                assert!(s > end.cur_seg, "a stale segment must lie past the end of the log");
                self.forget(s);
                self.storage.remove(&segment_name(s))?;
            }
            self.storage.sync_dir()?;
        }
        Ok(())
    }
}
