//! Instant restart's redo: after analysis the database opens at once, and
//! each page that may be newer in the log than on disk is redone at its
//! first load into the buffer pool (on demand), or by the background pass
//! that redoes the rest (`Db`'s redo thread), whichever comes first.
//!
//! Analysis lists, for every page of the dirty page table, the LSNs of the
//! records that change it from its `rec_lsn` on (`Analysis::page_lsns`). At a
//! page's first load the pool hands its stored bytes here
//! (`LoadRedo::redo_at_load`); its records are read back from the log and
//! replayed through the redo pass's own step (`redo::redo_change`, THE pageLSN
//! TEST), so a page redone on demand ends exactly as the classic redo pass
//! would leave it. The redo of one page touches that page only: no latch of
//! another page, no tree latch, no lock.
//!
//! Invariants:
//! - A page owes redo from the open until its redone bytes are in a frame
//!   marked dirty (or it needed no change): only then is it taken off the
//!   list (`done`), so a checkpoint's dirty page table, which takes this list
//!   first and the frames after it (`BufferPool::dirty_pages`), never misses
//!   a page whose newest version is only in the log.
//! - A page that owes redo was never in the pool since the open (the pool
//!   starts empty and every load asks here first), so no one has seen or
//!   changed it yet.
//! - Its records stay in the log: every checkpoint's dirty page table carries
//!   it with its `rec_lsn`, so truncation keeps the log from there.
//! - A failed redo leaves the page owed (and the load fails): it is never
//!   handed out stale.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use super::redo::{redo_change, Step};
use crate::buffer::{LoadRedo, LoadRedone};
use crate::error::{Error, Result};
use crate::page::META_PAGE;
use crate::types::{IdMap, Lsn, PageId};
use crate::wal::{reader, LogRecord, PagePart, Wal};

/// Records that change more than one page kept for the next loads (`recent`).
const RECENT_RECORDS: usize = 4;

/// A page's parts of consecutive records, decoded, with their LSNs, in log
/// order.
type KeptParts = Arc<[(Lsn, PagePart)]>;

/// What the redo of one page did.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    /// The first change applied (`Lsn::NONE`: none yet): the page's rec_lsn.
    first_applied: Lsn,
    redone: u64,
    skipped: u64,
    rebuilt: u64,
    /// A full image or init rebuilt stored bytes that were not all zeros.
    torn: bool,
}

impl Tally {
    /// Replay `parts`, one record's changes of `page_id`, on its bytes `buf`
    /// (`redo_change`: THE pageLSN TEST).
    fn replay<'p>(
        &mut self,
        buf: &mut [u8],
        valid: &mut bool,
        page_id: PageId,
        lsn: Lsn,
        parts: impl IntoIterator<Item = &'p PagePart>,
    ) -> Result<()> {
        let mut applied_here = false;
        for part in parts {
            let step = redo_change(buf, valid, page_id, lsn, part, applied_here)?;
            if step != Step::Skipped && self.first_applied.is_none() {
                self.first_applied = lsn;
            }
            match step {
                Step::Skipped => self.skipped += 1,
                Step::Applied => {
                    applied_here = true;
                    self.redone += 1;
                }
                Step::Rebuilt { torn } => {
                    applied_here = true;
                    self.redone += 1;
                    self.rebuilt += 1;
                    self.torn |= torn;
                }
            }
        }
        Ok(())
    }
}

/// A page the sweep redid in memory, waiting for its load.
struct Prepared {
    bytes: Box<[u8]>,
    tally: Tally,
}

/// One page's owed redo.
struct Owed {
    /// Its `rec_lsn` in the recovered dirty page table.
    rec_lsn: Lsn,
    /// The records that change it from `rec_lsn` on, in log order.
    lsns: Arc<[Lsn]>,
}

thread_local! {
    /// Set while the background pass loads pages, so its redos are counted
    /// apart from the on-demand ones.
    static IN_BACKGROUND: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Counters of the redo done after the open.
#[derive(Debug, Default)]
pub struct PendingCounters {
    /// Pages redone at their first load by a transaction, a snapshot or the
    /// engine itself (not the background pass).
    pub pages_on_demand: AtomicU64,
    /// Pages redone by the background pass.
    pub pages_in_background: AtomicU64,
    /// Page changes applied by either.
    pub redone: AtomicU64,
    /// Page changes passed over by the pageLSN test (or for a torn page
    /// whose full image comes later).
    pub skipped: AtomicU64,
    /// Torn or never-written pages rebuilt from a full image or init.
    pub pages_rebuilt: AtomicU64,
}

/// The pages that still owe redo after an instant restart.
pub struct PendingRedo {
    owed: Mutex<IdMap<PageId, Owed>>,
    /// Every page that owed redo at the open, oldest `rec_lsn` first, and
    /// how far `next_batch` has gone through it.
    order: Box<[PageId]>,
    cursor: Mutex<usize>,
    /// `owed.len()`, readable without the mutex.
    left: AtomicUsize,
    wal: Arc<Wal>,
    /// The last few records read that change more than one page (an
    /// overflow chain's, a split's), newest last: the other pages of such a
    /// record are usually loaded next, and a record may be megabytes.
    recent: Mutex<VecDeque<Arc<LogRecord>>>,
    /// Pages the background sweep redid in memory (`sweep`), each used by
    /// its next load while it still owes redo.
    prepared: Mutex<IdMap<PageId, Prepared>>,
    /// Where the log ended at the open: no record after it changes a page
    /// that owes redo (changing one loads it first).
    end: Lsn,
    /// Parts analysis kept decoded, by page, in log order (the meta page's:
    /// `Analysis::meta_parts`): redone from here, not read back.
    kept: Mutex<IdMap<PageId, KeptParts>>,
    /// When the list was made (the end of analysis).
    started: std::time::Instant,
    /// Microseconds from `started` until no page owed redo (0 before).
    finished_us: AtomicU64,
    /// What was redone since the open.
    pub counters: PendingCounters,
}

impl std::fmt::Debug for PendingRedo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingRedo").field("left", &self.left()).finish_non_exhaustive()
    }
}

impl PendingRedo {
    /// The owed redo of the dirty page table `dirty_pages` (page ->
    /// rec_lsn), with the LSNs of each page's records (`page_lsns`, in log
    /// order; those below the page's rec_lsn are dropped), read back through
    /// `wal`.
    /// `meta_parts`: the meta page's parts of the records analysis read,
    /// if it kept them, redone from memory.
    pub fn new(
        wal: Arc<Wal>,
        end: Lsn,
        dirty_pages: &IdMap<PageId, Lsn>,
        mut page_lsns: IdMap<PageId, Vec<Lsn>>,
        meta_parts: Option<Vec<(Lsn, PagePart)>>,
    ) -> PendingRedo {
        let mut kept: IdMap<PageId, KeptParts> = IdMap::default();
        if let Some(parts) = meta_parts.filter(|_| dirty_pages.contains_key(&META_PAGE)) {
            debug_assert!(parts.windows(2).all(|w| w[0].0 <= w[1].0), "the meta page's parts out of log order");
            kept.insert(META_PAGE, parts.into());
        }
        let owed: IdMap<PageId, Owed> = dirty_pages
            .iter()
            .map(|(&page_id, &rec_lsn)| {
                let mut lsns = page_lsns.remove(&page_id).unwrap_or_default();
                lsns.retain(|&l| l >= rec_lsn);
                // The sweep reads to `end` only.
                debug_assert!(lsns.last().is_none_or(|&l| l < end), "page {page_id} owes a record past the end");
                debug_assert!(lsns.windows(2).all(|w| w[0] < w[1]), "page {page_id}'s records out of log order");
                (page_id, Owed { rec_lsn, lsns: lsns.into() })
            })
            .collect();
        let mut order: Vec<(Lsn, PageId)> = owed.iter().map(|(&p, o)| (o.rec_lsn, p)).collect();
        order.sort_unstable();
        PendingRedo {
            order: order.into_iter().map(|(_, p)| p).collect(),
            cursor: Mutex::new(0),
            left: AtomicUsize::new(owed.len()),
            owed: Mutex::new(owed),
            wal,
            recent: Mutex::new(VecDeque::new()),
            kept: Mutex::new(kept),
            prepared: Mutex::new(IdMap::default()),
            end,
            started: std::time::Instant::now(),
            finished_us: AtomicU64::new(0),
            counters: Default::default(),
        }
    }

    /// Pages that still owe redo.
    pub fn left(&self) -> usize {
        self.left.load(Ordering::Acquire)
    }

    /// True if `page_id` still owes redo.
    pub fn owes(&self, page_id: PageId) -> bool {
        self.owed.lock().contains_key(&page_id)
    }

    /// Microseconds from the end of analysis until the last owed page was
    /// redone (0 while some still owe redo).
    pub fn finished_us(&self) -> u64 {
        self.finished_us.load(Ordering::Acquire)
    }

    /// Up to `n` pages that still owe redo, those with the oldest `rec_lsn`
    /// first, for the background pass.
    pub fn next_batch(&self, n: usize) -> Vec<PageId> {
        let mut cursor = self.cursor.lock();
        let mut batch = Vec::with_capacity(n);
        while batch.len() < n && *cursor < self.order.len() {
            let page_id = self.order[*cursor];
            *cursor += 1;
            if self.owed.lock().contains_key(&page_id) {
                batch.push(page_id);
            }
        }
        if batch.is_empty() && self.left() > 0 {
            // Pages whose redo failed (their loads failed) are still owed:
            // one more round over what is left, in any order.
            batch.extend(self.owed.lock().keys().take(n).copied());
        }
        batch
    }

    /// Run `f` (which loads pages) as the background pass, so the redos it
    /// causes are counted as background ones.
    pub fn as_background<T>(f: impl FnOnce() -> T) -> T {
        IN_BACKGROUND.with(|b| b.set(true));
        let r = f();
        IN_BACKGROUND.with(|b| b.set(false));
        r
    }

    /// The end of a page's redo: a page still invalid is damage the log
    /// cannot repair; else count what was done, and mark the frame dirty if
    /// anything was applied.
    fn finish(&self, page_id: PageId, valid: bool, t: Tally) -> Result<Option<LoadRedone>> {
        if !valid {
            return Err(Error::corruption(
                "data",
                format!("page {page_id} is damaged and the log holds no image of it"),
            ));
        }
        if t.torn {
            log::warn!("recovery redo: torn page {page_id} (checksum or structure failed) rebuilt from its full image");
        }
        let c = &self.counters;
        c.redone.fetch_add(t.redone, Ordering::Relaxed);
        c.skipped.fetch_add(t.skipped, Ordering::Relaxed);
        c.pages_rebuilt.fetch_add(t.rebuilt, Ordering::Relaxed);
        let who = if IN_BACKGROUND.with(|b| b.get()) { &c.pages_in_background } else { &c.pages_on_demand };
        who.fetch_add(1, Ordering::Relaxed);
        Ok(Some(LoadRedone { dirty_rec_lsn: (t.redone > 0).then_some(t.first_applied) }))
    }

    /// The background pass's sweep: redo the pages of `batch` that still
    /// owe redo in memory, by one pass over the log in order from their
    /// oldest `rec_lsn` to the end of the log at the open, instead of
    /// reading each page's records back one by one. `read_stored` reads a
    /// page's stored bytes (true: they pass their checks). Each page so
    /// redone waits for its load (`redo_at_load` takes it), which the
    /// caller makes next; a page found damaged beyond what the log repairs
    /// is left to that load, which reports it.
    ///
    /// The result is the load's own: an owed page was never in the pool
    /// since the open, so its stored bytes do not change before its load,
    /// and the sweep replays the same records (those from its `rec_lsn` on)
    /// through the same step (`redo_change`).
    ///
    /// # Errors
    /// An error of `read_stored` or of reading the log; the caller then
    /// loads the pages one by one.
    pub fn sweep(
        &self,
        batch: &[PageId],
        page_size: usize,
        read_stored: impl Fn(PageId, &mut [u8]) -> Result<bool>,
    ) -> Result<()> {
        struct Work {
            buf: Box<[u8]>,
            valid: bool,
            rec_lsn: Lsn,
            tally: Tally,
        }
        let mut work: IdMap<PageId, Work> = IdMap::default();
        for &page_id in batch {
            let Some(rec_lsn) = self.owed.lock().get(&page_id).map(|o| o.rec_lsn) else { continue };
            let mut buf = vec![0u8; page_size].into_boxed_slice();
            let valid = read_stored(page_id, &mut buf)?;
            work.insert(page_id, Work { buf, valid, rec_lsn, tally: Tally::default() });
        }
        let Some(from) = work.values().map(|w| w.rec_lsn).min() else { return Ok(()) };
        reader::scan_views(self.wal.segments(), from, Lsn::NONE, Some(self.end), |rec| {
            for page_id in rec.pages() {
                let Some(w) = work.get_mut(&page_id).filter(|w| rec.lsn >= w.rec_lsn) else { continue };
                let parts = rec.parts_of(page_id)?;
                w.tally.replay(&mut w.buf, &mut w.valid, page_id, rec.lsn, &parts)?;
            }
            Ok(())
        })?;
        // Only for pages still owed: a page loaded meanwhile is done.
        let owed = self.owed.lock();
        let mut prepared = self.prepared.lock();
        for (page_id, w) in work {
            if w.valid && owed.contains_key(&page_id) {
                prepared.insert(page_id, Prepared { bytes: w.buf, tally: w.tally });
            }
        }
        Ok(())
    }

    /// The record at `lsn`, from `recent` or from the log.
    fn record(&self, lsn: Lsn) -> Result<Arc<LogRecord>> {
        if let Some(r) = self.recent.lock().iter().find(|r| r.lsn == lsn) {
            return Ok(r.clone());
        }
        let rec = Arc::new(self.wal.read_record(lsn)?);
        if rec.body.parts().len() > 1 {
            let mut recent = self.recent.lock();
            if recent.len() == RECENT_RECORDS {
                recent.pop_front();
            }
            recent.push_back(rec.clone());
        }
        Ok(rec)
    }
}

impl LoadRedo for PendingRedo {
    fn redo_at_load(&self, page_id: PageId, buf: &mut [u8], valid: bool) -> Result<Option<LoadRedone>> {
        let lsns = match self.owed.lock().get(&page_id) {
            None => return Ok(None),
            Some(o) => o.lsns.clone(),
        };
        if let Some(p) = self.prepared.lock().remove(&page_id) {
            buf.copy_from_slice(&p.bytes);
            return self.finish(page_id, true, p.tally);
        }
        let mut valid = valid;
        let mut tally = Tally::default();
        let kept = self.kept.lock().get(&page_id).cloned();
        let kept = kept.as_deref().unwrap_or(&[]);
        let mut k = 0;
        for &lsn in lsns.iter() {
            // Kept parts cover the records from analysis's start on; those
            // before it (a rec_lsn older than the checkpoint) are read back.
            while k < kept.len() && kept[k].0 < lsn {
                k += 1;
            }
            if k < kept.len() && kept[k].0 == lsn {
                let parts = kept[k..].iter().take_while(|(l, _)| *l == lsn).map(|(_, p)| p);
                tally.replay(buf, &mut valid, page_id, lsn, parts)?;
            } else {
                let rec = self.record(lsn)?;
                let parts = rec.body.parts().iter().filter(|p| p.page_id == page_id);
                tally.replay(buf, &mut valid, page_id, lsn, parts)?;
            }
        }
        self.finish(page_id, valid, tally)
    }

    fn done(&self, page_id: PageId) {
        self.kept.lock().remove(&page_id);
        let mut owed = self.owed.lock();
        self.prepared.lock().remove(&page_id);
        if owed.remove(&page_id).is_some() {
            self.left.fetch_sub(1, Ordering::AcqRel);
            if owed.is_empty() {
                let us = (super::micros(self.started)).max(1);
                self.finished_us.store(us, Ordering::Release);
                log::info!(
                    "recovery redo: every deferred page redone, {:.1} ms after analysis ({} at their first load, \
                     {} by the background pass)",
                    super::ms(us),
                    self.counters.pages_on_demand.load(Ordering::Relaxed),
                    self.counters.pages_in_background.load(Ordering::Relaxed)
                );
            }
        }
    }

    fn owed_pages(&self) -> Vec<(PageId, Lsn)> {
        self.owed.lock().iter().map(|(&p, o)| (p, o.rec_lsn)).collect()
    }

    fn left(&self) -> usize {
        PendingRedo::left(self)
    }
}
