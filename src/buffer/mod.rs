//! The buffer pool: a fixed number of frames caching data pages, pinned while
//! in use, evicted by CLOCK, written back under the write-ahead rule.
//!
//! Frame states: EMPTY (no page) -> LOADED clean -> LOADED dirty (rec_lsn set)
//! -> written back (clean) -> evicted (EMPTY). A frame is also either valid or
//! invalid: invalid only during recovery, for a page whose stored image was torn
//! or never written and that redo has not yet rebuilt from a full image.
//!
//! Invariants:
//! - `write_page_gated` is the only code that writes a data page, and it
//!   first makes the log durable through the page's `page_lsn` (the
//!   write-ahead rule).
//! - THE TORN-PAGE RULE (`log_image_if_due`): a page is written only if its
//!   last full image (its `fpi_lsn`, or the frame's `image_lsn`) is at or
//!   after the horizon, the begin LSN of the latest checkpoint; else an
//!   image is logged first, unless a record being applied defines the page
//!   anew (`Image::Busy`: no image, and that record is made durable before
//!   the write, so redo rebuilds the page from it). Every write holds
//!   `write_gate` shared from its look at the horizon to its end, and the
//!   horizon advances only with the gate taken exclusively after it
//!   (`advance_fpi_horizon`), so a write that saw an older horizon ended
//!   before the checkpoint's data sync.
//! - The page table is split in `TABLE_SHARDS` shards by page id, each behind
//!   its own reader-writer lock, so that fetches of different pages (and hits
//!   on the same page) do not serialize on one lock.
//! - A frame's pin count is raised while its page's shard lock is held
//!   (shared is enough for a hit), by the compare-and-swap from 0 to 1 with
//!   which an eviction takes the frame (under the shard's exclusive lock),
//!   or by a hit through the frame hints, which holds no lock.
//! - A frame about to get another page is CLAIMED (the pin word's top bit,
//!   set by a compare-and-swap from exactly one pin, the evictor's, or from
//!   0 for an empty frame) until its new page is mapped. A hint hit pins
//!   first, then backs off if the frame is claimed or holds another page:
//!   so no hit ever uses a frame whose page is changing, and a claimed frame
//!   has no pinner but its claimant that counts. A hint hit may pin and
//!   dirty a clean victim between the evictor's first pin and its claim, so
//!   the evictor reads `dirty` again once the frame is CLAIMED.
//! - A frame's page id changes only while the shard of the page it gets is
//!   held exclusively and the frame is claimed.
//! - The frame hints (`hints`) map a page to the frame that held it when
//!   the hint was written: a cache of the page table that may be stale or
//!   missing, never trusted without the checks above.
//! - `rec_lsn` of a dirty frame is at or before the first log record whose
//!   effect the stored page lacks. A stored page can be torn only by a write
//!   after the last checkpoint's data sync, and such a write followed an
//!   image at or after that checkpoint's begin, inside redo's range.
//! - `log_and_apply` is the only path by which pages change in normal operation:
//!   log first, then apply, then set page_lsn.
//! - Fail-stop: every entry point (`fetch`, `fetch_new`, `flush_dirty`,
//!   `sync`, `log_and_apply`) refuses with `Error::Failed` once the database
//!   has stopped (the shared `FailStop`); an I/O error of writing or syncing
//!   the data file stops it.
//! - `meta_shape` caches the meta page's root and page count for readers
//!   (0: not known). Every change of the meta page in normal operation
//!   (`log_and_apply`) publishes the new values while the page is still
//!   latched; redo only forgets them (`forget_meta_shape`); a reader fills
//!   an unknown cache only by a compare-and-swap from 0.
//! - After an instant restart, a page that still owes redo (`LoadRedo`) is
//!   redone at its load, before the frame is published to any other fetcher,
//!   and taken off the owed list only once the frame is marked dirty; the
//!   dirty page table (`dirty_pages`) lists the owed pages too.
//! - A frame whose last change is not yet durable in the log is counted in
//!   `changed_in_epoch` for its flush epoch (`note_change`, before the change
//!   is applied), so `can_evict_without_log_flush` never undercounts them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::error::{Error, Result};
use crate::failstop::FailStop;
use crate::page::{self, PageRef, PageState};
use crate::storage::{read_full_at, StorageFile};
use crate::types::{AtomicLsn, IdMap, Lsn, PageId};
use crate::wal::{Body, PagePart, RecordHeader, Wal};

/// Redo that pages owe at their first load after an instant restart
/// (`recovery::PendingRedo`). The pool asks at every load while any is owed.
pub trait LoadRedo: Send + Sync {
    /// If `page_id` owes redo, apply it to `buf` (its stored bytes; `valid`
    /// if they passed their checks) and say what became of the page; None if
    /// it owes none. The page stays owed until `done`.
    ///
    /// # Errors
    /// `Error::Corruption` if the page is damaged and the log holds no image
    /// of it; an error reading the log.
    fn redo_at_load(&self, page_id: PageId, buf: &mut [u8], valid: bool) -> Result<Option<LoadRedone>>;
    /// `page_id` owes no more redo: its redone bytes are in a frame marked
    /// dirty, or it is about to be fully defined anew.
    fn done(&self, page_id: PageId);
    /// The pages that owe redo, with their `rec_lsn`.
    fn owed_pages(&self) -> Vec<(PageId, Lsn)>;
    /// How many pages owe redo.
    fn left(&self) -> usize;
}

/// What a page's redo at its load did (`LoadRedo::redo_at_load`): the page
/// is whole now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadRedone {
    /// Some(rec_lsn) if a change was applied: the frame is marked dirty
    /// with it.
    pub dirty_rec_lsn: Option<Lsn>,
}

/// What `log_image_if_due` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Image {
    /// The page's last image is recent enough: none logged.
    NotDue,
    /// An image was logged at this LSN.
    Logged(Lsn),
    /// A record that defines the page anew, at this LSN, is being
    /// applied: no image (it would follow that record with a state that
    /// lacks it), and none needed once that record is durable: the write
    /// flushes the log through it first (`write_page_gated`).
    Busy(Lsn),
}

/// The pages a record defines anew, listed in `BufferPool::defining` (with
/// the record's LSN) from the record's append, in the same hold of the
/// set's lock, until the record's last part for each has been applied (or
/// the record fails).
struct Defining<'a> {
    pool: &'a BufferPool,
    /// Each page with the index of the record's last part for it.
    last_part: HashMap<PageId, usize>,
}

impl<'a> Defining<'a> {
    fn new(pool: &'a BufferPool, parts: &[PagePart], defined: Vec<PageId>) -> Defining<'a> {
        let mut last_part: HashMap<PageId, usize> = defined.iter().map(|&p| (p, 0)).collect();
        for (i, part) in parts.iter().enumerate() {
            if let Some(l) = last_part.get_mut(&part.page_id) {
                *l = i;
            }
        }
        Defining { pool, last_part }
    }

    /// Append the record and list its pages, in one hold of the set's lock:
    /// a write-back (`log_image_if_due`) either logs its image before the
    /// record, or finds the page listed with the record's LSN.
    fn append(&self, header: &RecordHeader, body: &Body) -> Result<Lsn> {
        let mut set = self.pool.defining.lock();
        let lsn = self.pool.wal.append(header, body)?;
        set.extend(self.last_part.keys().map(|&p| (p, lsn)));
        Ok(lsn)
    }

    /// Part `i`, for `page`, was applied: if it was the record's last for
    /// the page, the page may be imaged again.
    fn applied(&mut self, page: PageId, i: usize) {
        if self.last_part.get(&page) == Some(&i) {
            self.last_part.remove(&page);
            self.pool.defining.lock().remove(&page);
        }
    }
}

impl Drop for Defining<'_> {
    fn drop(&mut self) {
        let mut set = self.pool.defining.lock();
        for p in self.last_part.keys() {
            set.remove(p);
        }
    }
}

/// A frame that holds no page.
const NO_PAGE: PageId = PageId(u32::MAX);

/// One frame of the pool.
pub struct Frame {
    page_id: AtomicU32,
    pin: AtomicU32,
    refbit: AtomicBool,
    dirty: AtomicBool,
    valid: AtomicBool,
    rec_lsn: AtomicU64,
    /// The latest full image of the page logged at a write-back
    /// (`BufferPool::log_image_if_due`), 0 if none since its load: the page's
    /// own `fpi_lsn` is not raised in the frame (the image is logged under a
    /// shared latch), only in the copy written to the file.
    image_lsn: AtomicU64,
    /// Flush epoch of the last change applied here in normal operation.
    changed_epoch: AtomicU64,
    /// The page bytes (empty until the frame is first loaded).
    data: RwLock<Box<[u8]>>,
}

impl Frame {
    /// The page this frame holds (`NO_PAGE`: none).
    fn page_id(&self) -> PageId {
        PageId(self.page_id.load(Ordering::Acquire))
    }
    fn set_page_id(&self, page_id: PageId) {
        self.page_id.store(page_id.get(), Ordering::Release)
    }
    /// LSN of the first change since the page was last clean (`Lsn::NONE`: clean).
    fn rec_lsn(&self) -> Lsn {
        Lsn(self.rec_lsn.load(Ordering::Acquire))
    }
    fn set_rec_lsn(&self, rec_lsn: Lsn) {
        self.rec_lsn.store(rec_lsn.get(), Ordering::Release)
    }
}

/// What CLOCK found.
enum Victim {
    /// Can be reused now.
    Clean(usize),
    /// Must be written back first.
    Dirty(usize),
}

/// Times a fetch looks for a victim again after finding every frame pinned
/// (`BufferPool::fetch_inner`): the first few after a yield, the rest after
/// a short sleep (about 3 ms in all before `BufferPoolFull`). Four yields
/// still let a reader fail about once in 3 million fetches of a 24-frame
/// pool with 20 frames pinned (`db::pool_race_tests`).
const FULL_RETRIES: usize = 64;
/// Retries after a yield before the sleeps begin.
const FULL_RETRY_YIELDS: usize = 8;

/// Shards of the page table (a power of two).
const TABLE_SHARDS: usize = 64;

/// The pin word's bit that marks a frame claimed for another page.
const CLAIMED: u32 = 1 << 31;

/// Hint slots per frame (`BufferPool::hints`).
const HINTS_PER_FRAME: usize = 4;

/// Frames one background write-back pass looks at, at most
/// (`flush_dirty_some`): a 1 GiB pool of 4 KiB pages is gone through in 16
/// passes rather than in every one.
const BACKGROUND_SCAN_FRAMES: usize = 16 << 10;
/// Pages `flush_dirty` writes back per log flush of their images.
const WRITE_BATCH: usize = 64;

/// Counters of hint hits, one per group of threads, each on its own cache
/// lines, so that readers of the same hot page do not share a counter.
const HIT_STRIPES: usize = 16;

/// A counter alone on its cache lines.
#[derive(Default)]
#[repr(align(128))]
struct Stripe(AtomicU64);

/// This thread's stripe of `HIT_STRIPES`, given out in turn.
fn hit_stripe() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static STRIPE: usize = NEXT.fetch_add(1, Ordering::Relaxed) % HIT_STRIPES;
    }
    STRIPE.with(|s| *s)
}

type PageMap = IdMap<PageId, u32>;

/// One shard of the page table: page id -> frame index, for the pages whose
/// id is congruent to the shard's index. Aligned so that two shards never
/// share a cache line.
#[repr(align(128))]
struct Shard {
    map: RwLock<PageMap>,
    /// Fetches of this shard's pages served from the pool.
    hits: AtomicU64,
}

/// Counters for stats.
#[derive(Debug, Default)]
pub struct PoolCounters {
    /// Fetches that read the page from storage.
    pub misses: AtomicU64,
    /// Frames reused for another page.
    pub evictions: AtomicU64,
    /// Pages written to storage.
    pub pages_written: AtomicU64,
    /// Full page images logged.
    pub fpis: AtomicU64,
    /// Evictions whose victim was ahead of the durable log, so that the
    /// fetching thread waited for a log flush (under the caller's latches).
    pub eviction_log_waits: AtomicU64,
}

/// The buffer pool.
pub struct BufferPool {
    file: Arc<dyn StorageFile>,
    wal: Arc<Wal>,
    page_size: usize,
    frames: Box<[Frame]>,
    /// The page table, in shards (see the invariants above).
    shards: Box<[Shard]>,
    /// CLOCK's hand (taken modulo the frame count).
    hand: AtomicUsize,
    recovery_mode: AtomicBool,
    /// The full-page-image horizon: the begin LSN of the latest checkpoint
    /// (`advance_fpi_horizon`). A page written back whose last full image is
    /// older gets one logged first.
    fpi_horizon: AtomicLsn,
    /// Held shared by every write-back from its look at `fpi_horizon` to the
    /// end of its write; taken exclusively, for an instant, when the horizon
    /// advances, so that every write that saw the older horizon has ended
    /// (and is covered by the checkpoint's data sync that follows).
    write_gate: RwLock<()>,
    /// Pages a record being logged defines anew (`Defining`).
    defining: parking_lot::Mutex<HashMap<PageId, Lsn>>,
    /// The redo pages owe after an instant restart (None: none owed).
    load_redo: RwLock<Option<Arc<dyn LoadRedo>>>,
    /// The database's fail-stop state.
    stop: Arc<FailStop>,
    /// Frames changed per flush epoch, in slots by epoch modulo 4, each
    /// `epoch << 32 | count`: the frames whose last change may not be durable
    /// are the ones counted for the epochs from `done` to `taken`.
    changed_in_epoch: [AtomicU64; 4],
    /// The meta page's root and page count, `root << 32 | page_count`
    /// (0: not known; the root is never page 0).
    meta_shape: AtomicU64,
    /// Frame hints: slot `hint_slot(page)` holds `(page + 1) << 32 | frame`
    /// (0: none), written when a page is mapped or found through the page
    /// table, cleared when it is unmapped. A hit through a hint takes no
    /// lock (see the invariants for how it is checked).
    hints: Box<[AtomicU64]>,
    /// Fetches served through a hint, in stripes.
    hint_hits: Box<[Stripe]>,
    /// Frames whose `dirty` flag is set (changed only by the flag's swaps in
    /// `set_dirty` and `clear_dirty`), so a write-back pass over a pool with
    /// no dirty frame costs nothing.
    dirty_frames: AtomicUsize,
    /// Where the next background write-back pass starts (`flush_dirty_some`).
    background_cursor: AtomicUsize,
    /// Frames a background pass looks at, at most (`BACKGROUND_SCAN_FRAMES`;
    /// fewer in tests).
    background_scan_frames: AtomicUsize,
    /// Counters.
    pub counters: PoolCounters,
    /// Tests: run by `try_claim` just before it marks a clean victim
    /// CLAIMED, with the page the victim holds; kept until it returns true.
    #[cfg(test)]
    claim_hook: parking_lot::Mutex<Option<ClaimHook>>,
}

/// A test's hook into `try_claim` (`BufferPool::set_claim_hook`).
#[cfg(test)]
pub(crate) type ClaimHook = Box<dyn FnMut(&BufferPool, PageId) -> bool + Send>;

/// `meta_shape`'s packing of a meta page's root and page count.
/// (0, "not known", for a meta page without a root).
fn pack_meta_shape(meta: &page::Meta) -> u64 {
    if meta.root.is_none() {
        return 0;
    }
    u64::from(meta.root.get()) << 32 | u64::from(meta.page_count)
}

/// A page pinned and latched for writing during `log_and_apply`.
type Latched<'a> = (PageId, PageHandle<'a>, RwLockWriteGuard<'a, Box<[u8]>>);

/// A pinned frame. Unpins on drop.
pub struct PageHandle<'a> {
    pool: &'a BufferPool,
    idx: usize,
}

impl PageHandle<'_> {
    fn frame(&self) -> &Frame {
        &self.pool.frames[self.idx]
    }
    /// Shared latch on the page bytes.
    pub fn read(&self) -> RwLockReadGuard<'_, Box<[u8]>> {
        self.frame().data.read()
    }
    /// Exclusive latch on the page bytes.
    pub fn write(&self) -> RwLockWriteGuard<'_, Box<[u8]>> {
        self.frame().data.write()
    }
    /// False for a torn or never-written page not yet rebuilt by redo.
    pub fn is_valid(&self) -> bool {
        self.frame().valid.load(Ordering::Acquire)
    }
    /// Mark rebuilt by redo.
    pub fn set_valid(&self) {
        self.frame().valid.store(true, Ordering::Release)
    }
    /// True if the page has changes not yet written.
    pub fn is_dirty(&self) -> bool {
        self.frame().dirty.load(Ordering::Acquire)
    }
    /// Mark the page dirty; `rec_lsn` is kept if it already was. Call with the
    /// page's write latch held.
    pub fn mark_dirty(&self, rec_lsn: Lsn) {
        let f = self.frame();
        if !f.dirty.load(Ordering::Acquire) {
            debug_assert!(!rec_lsn.is_none());
            f.set_rec_lsn(rec_lsn);
            self.pool.set_dirty(f);
        }
    }
}

impl Drop for PageHandle<'_> {
    fn drop(&mut self) {
        let f = self.frame();
        if !f.refbit.load(Ordering::Relaxed) {
            f.refbit.store(true, Ordering::Relaxed);
        }
        let before = f.pin.fetch_sub(1, Ordering::AcqRel);
        debug_assert!(before > 0, "unpin of an unpinned frame");
    }
}

impl BufferPool {
    /// A pool of `frames` frames over the data file, sharing the database's
    /// fail-stop state `stop`.
    pub fn new(
        file: Arc<dyn StorageFile>,
        wal: Arc<Wal>,
        page_size: usize,
        frames: usize,
        stop: Arc<FailStop>,
    ) -> BufferPool {
        assert!(u32::try_from(frames).is_ok(), "frame indices are kept as u32");
        let hint_slots = (frames * HINTS_PER_FRAME).next_power_of_two();
        let frames: Box<[Frame]> = (0..frames)
            .map(|_| Frame {
                page_id: AtomicU32::new(NO_PAGE.get()),
                pin: AtomicU32::new(0),
                refbit: AtomicBool::new(false),
                dirty: AtomicBool::new(false),
                valid: AtomicBool::new(false),
                rec_lsn: AtomicU64::new(0),
                image_lsn: AtomicU64::new(0),
                changed_epoch: AtomicU64::new(u64::MAX),
                // Allocated at the frame's first load: a pool sized for a
                // large cache costs nothing until it is used.
                data: RwLock::new(Box::default()),
            })
            .collect();
        BufferPool {
            file,
            wal,
            page_size,
            shards: (0..TABLE_SHARDS)
                .map(|_| Shard {
                    map: RwLock::new(PageMap::with_capacity_and_hasher(
                        frames.len() * 2 / TABLE_SHARDS + 1,
                        Default::default(),
                    )),
                    hits: AtomicU64::new(0),
                })
                .collect(),
            hand: AtomicUsize::new(0),
            frames,
            recovery_mode: AtomicBool::new(false),
            fpi_horizon: AtomicLsn::new(Lsn::NONE),
            write_gate: RwLock::new(()),
            defining: Default::default(),
            load_redo: RwLock::new(None),
            stop,
            changed_in_epoch: Default::default(),
            meta_shape: AtomicU64::new(0),
            hints: (0..hint_slots).map(|_| AtomicU64::new(0)).collect(),
            hint_hits: (0..HIT_STRIPES).map(|_| Stripe::default()).collect(),
            dirty_frames: AtomicUsize::new(0),
            background_cursor: AtomicUsize::new(0),
            background_scan_frames: AtomicUsize::new(BACKGROUND_SCAN_FRAMES),
            counters: PoolCounters::default(),
            #[cfg(test)]
            claim_hook: parking_lot::Mutex::new(None),
        }
    }

    /// The number of frames.
    pub fn frame_count(&self) -> usize {
        self.frames.len()
    }

    /// The page size.
    pub fn page_size(&self) -> usize {
        self.page_size
    }

    /// The log this pool obeys the write-ahead rule against.
    pub fn log(&self) -> &Wal {
        &self.wal
    }

    /// True if `pages` frames can be taken for other pages without waiting
    /// for a log flush: at least that many frames hold no change that is
    /// still ahead of the durable log (counted per flush epoch, no frame
    /// scan), or the whole log is durable. The request is capped at half the
    /// pool, so that a small pool is not flushed before every change. Only
    /// writers change frames, and they are serialized by the caller's latch,
    /// so the answer holds for the caller's operation as long as it changes
    /// fewer pages than asked for.
    pub fn can_evict_without_log_flush(&self, pages: usize) -> bool {
        let n = self.frames.len();
        let wanted = pages.clamp(1, (n / 2).max(1));
        let (taken, done) = self.wal.flush_epochs();
        let ahead: usize = (done..=taken.min(done + 1)).map(|e| self.changed_frames(e)).sum();
        n.saturating_sub(ahead) >= wanted || self.wal.durable_lsn() >= self.wal.end_lsn()
    }

    /// Frames counted as changed in flush epoch `epoch` (0 if its slot was reused).
    fn changed_frames(&self, epoch: u64) -> usize {
        let v = self.changed_in_epoch[(epoch % 4) as usize].load(Ordering::Acquire);
        if v >> 32 == epoch & 0xffff_ffff {
            (v & 0xffff_ffff) as usize
        } else {
            0
        }
    }

    /// Count frame `f` as changed in the current flush epoch, once per epoch.
    /// Read after the change's record was appended, so the epoch is never
    /// earlier than the record's (an over-count is harmless: it only flushes
    /// the log sooner).
    fn note_change(&self, f: &Frame) {
        let (taken, _) = self.wal.flush_epochs();
        if f.changed_epoch.swap(taken, Ordering::AcqRel) == taken {
            return;
        }
        let slot = &self.changed_in_epoch[(taken % 4) as usize];
        let tag = taken & 0xffff_ffff;
        // A slot still tagged with an older epoch (four flushes ago) starts over.
        let _ = slot.fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
            Some(if v >> 32 == tag { v + 1 } else { tag << 32 | 1 })
        });
    }

    /// In recovery mode a torn or never-written page is handed out as invalid
    /// instead of failing with `Error::Corruption`.
    pub fn set_recovery_mode(&self, on: bool) {
        self.recovery_mode.store(on, Ordering::Release);
    }

    /// After an instant restart: pages redo is owed to, redone at their load
    /// (or dropped from the list once none is left: `clear_load_redo`).
    /// Set before the first fetch.
    pub fn set_load_redo(&self, redo: Arc<dyn LoadRedo>) {
        debug_assert!(self.frames.iter().all(|f| f.page_id() == NO_PAGE), "set before the first fetch");
        *self.load_redo.write() = Some(redo);
    }

    /// Forget the owed redo once no page owes any.
    pub fn clear_load_redo(&self) {
        let mut r = self.load_redo.write();
        if r.as_ref().is_some_and(|r| r.left() == 0) {
            *r = None;
        }
    }

    /// Pin page `page_id`, reading it from storage if needed.
    pub fn fetch(&self, page_id: PageId) -> Result<PageHandle<'_>> {
        self.fetch_inner(page_id, true)
    }

    /// Pin a frame for page `page_id` that is about to be fully defined (an init):
    /// its stored image is not read.
    pub fn fetch_new(&self, page_id: PageId) -> Result<PageHandle<'_>> {
        self.fetch_inner(page_id, false)
    }

    /// The meta page's root and page count, if known (see `meta_shape`).
    pub fn meta_shape(&self) -> Option<(PageId, u32)> {
        match self.meta_shape.load(Ordering::Acquire) {
            0 => None,
            v => Some((PageId((v >> 32) as u32), v as u32)),
        }
    }

    /// Fill an unknown meta shape from a meta page just read (a change
    /// published meanwhile wins).
    pub fn fill_meta_shape(&self, meta: &page::Meta) {
        let v = pack_meta_shape(meta);
        let _ = self.meta_shape.compare_exchange(0, v, Ordering::AcqRel, Ordering::Acquire);
    }

    /// Forget the meta shape: redo changed the meta page.
    pub fn forget_meta_shape(&self) {
        self.meta_shape.store(0, Ordering::Release);
    }

    /// The shard of the page table that maps `page_id`.
    fn shard(&self, page_id: PageId) -> &Shard {
        &self.shards[page_id.get() as usize % TABLE_SHARDS]
    }

    /// Fetches served from the pool, summed over the shards and the hint
    /// stripes.
    pub fn hits(&self) -> u64 {
        let by_table: u64 = self.shards.iter().map(|s| s.hits.load(Ordering::Relaxed)).sum();
        by_table + self.hint_hits.iter().map(|s| s.0.load(Ordering::Relaxed)).sum::<u64>()
    }

    /// Fetches served through a hint (tests).
    #[cfg(test)]
    pub(crate) fn hint_hit_count(&self) -> u64 {
        self.hint_hits.iter().map(|s| s.0.load(Ordering::Relaxed)).sum()
    }

    /// Run `hook` at the next claims of clean victims, until it returns true
    /// (tests).
    #[cfg(test)]
    pub(crate) fn set_claim_hook(&self, hook: ClaimHook) {
        *self.claim_hook.lock() = Some(hook);
    }

    /// Is `page_id` listed as being defined anew by a record (tests)?
    #[cfg(test)]
    pub(crate) fn is_defining(&self, page_id: PageId) -> bool {
        self.defining.lock().contains_key(&page_id)
    }

    /// Write back `page_id` if it is in the pool and dirty, as a write-back
    /// of another thread would (`write_page`); takes no shard lock (tests).
    /// Written as an eviction is: tests call it from hooks that run in a
    /// thread holding the tree latch, where only an eviction's log flush is
    /// allowed (`wal::no_flush`).
    #[cfg(test)]
    pub(crate) fn write_back_for_test(&self, page_id: PageId) -> Result<bool> {
        let Some(idx) = self.frames.iter().position(|f| f.page_id() == page_id) else { return Ok(false) };
        let f = &self.frames[idx];
        f.pin.fetch_add(1, Ordering::AcqRel);
        let h = PageHandle { pool: self, idx };
        let written = h.is_dirty() && f.page_id() == page_id;
        if written {
            self.write_page(f, true)?;
        }
        Ok(written && !h.is_dirty())
    }

    /// A fetch through the frame hints only, taking no lock (tests).
    #[cfg(test)]
    pub(crate) fn fetch_by_hint(&self, page_id: PageId) -> Option<PageHandle<'_>> {
        self.hint_hit(page_id)
    }

    /// `page_id`'s slot of the frame hints (Fibonacci hashing).
    fn hint_slot(&self, page_id: PageId) -> &AtomicU64 {
        let h = u64::from(page_id.get()).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        &self.hints[(h >> 32) as usize & (self.hints.len() - 1)]
    }

    /// Note that frame `idx` holds `page_id`.
    fn set_hint(&self, page_id: PageId, idx: usize) {
        self.hint_slot(page_id).store((u64::from(page_id.get()) + 1) << 32 | idx as u64, Ordering::Release);
    }

    /// Forget the hint that frame `idx` holds `page_id`, if it is there.
    fn clear_hint(&self, page_id: PageId, idx: usize) {
        let hint = (u64::from(page_id.get()) + 1) << 32 | idx as u64;
        let _ = self.hint_slot(page_id).compare_exchange(hint, 0, Ordering::AcqRel, Ordering::Relaxed);
    }

    /// A hit through the frame hints, without a lock: the frame the hint
    /// names, pinned, if it still holds `page_id` and is not claimed. None:
    /// no hint, or a stale one (the caller looks in the page table).
    fn hint_hit(&self, page_id: PageId) -> Option<PageHandle<'_>> {
        let hint = self.hint_slot(page_id).load(Ordering::Acquire);
        if hint >> 32 != u64::from(page_id.get()) + 1 {
            return None;
        }
        let idx = (hint & 0xffff_ffff) as usize;
        let f = self.frames.get(idx)?;
        // Pin first (dropping the handle unpins): a claim made before this
        // shows in the old value; one tried after it fails on this pin.
        let before = f.pin.fetch_add(1, Ordering::AcqRel);
        let h = PageHandle { pool: self, idx };
        if before & CLAIMED != 0 || f.page_id() != page_id {
            return None;
        }
        self.hint_hits[hit_stripe()].0.fetch_add(1, Ordering::Relaxed);
        Some(h)
    }

    fn fetch_inner(&self, page_id: PageId, read: bool) -> Result<PageHandle<'_>> {
        self.stop.check()?;
        if page_id == page::MASTER_PAGE || page_id == NO_PAGE {
            return Err(Error::corruption("btree", format!("reference to page {page_id}")));
        }
        let shard = self.shard(page_id);
        // Each round either finds the page, claims a clean frame, or cleans one
        // dirty frame; the bound only guards against a pool where every frame
        // stays pinned.
        let mut full_retries = 0;
        // Loads of this page that failed in other threads while this one
        // waited: it then tries the load itself, so that it gets its own
        // error (an I/O error, or the corruption of a page redo cannot
        // rebuild), once; a second failure elsewhere is reported as I/O.
        let mut failed_loads = 0;
        for _ in 0..2 * self.frames.len() + 8 {
            if failed_loads > 1 {
                return Err(Error::Io(std::io::Error::other(format!(
                    "reading page {page_id} failed in another thread"
                ))));
            }
            if let Some(h) = self.hint_hit(page_id) {
                match self.finish_hit(h, page_id, read)? {
                    Some(h) => return Ok(h),
                    None => {
                        failed_loads += 1;
                        continue;
                    }
                }
            }
            // A hit needs the shard only shared, and only to pin the frame:
            // the shard is released before any wait for the page's latch
            // (a loader that fails takes the shard while latching the page).
            let hit = {
                let map = shard.map.read();
                map.get(&page_id).map(|&idx| {
                    let idx = idx as usize;
                    self.frames[idx].pin.fetch_add(1, Ordering::AcqRel);
                    self.set_hint(page_id, idx);
                    idx
                })
            };
            if let Some(idx) = hit {
                shard.hits.fetch_add(1, Ordering::Relaxed);
                match self.finish_hit(PageHandle { pool: self, idx }, page_id, read)? {
                    Some(h) => return Ok(h),
                    None => {
                        failed_loads += 1;
                        continue;
                    }
                }
            }
            let mut map = shard.map.write();
            if let Some(idx) = map.get(&page_id).map(|&i| i as usize) {
                // Loaded by another thread meanwhile.
                self.frames[idx].pin.fetch_add(1, Ordering::AcqRel);
                drop(map);
                shard.hits.fetch_add(1, Ordering::Relaxed);
                match self.finish_hit(PageHandle { pool: self, idx }, page_id, read)? {
                    Some(h) => return Ok(h),
                    None => {
                        failed_loads += 1;
                        continue;
                    }
                }
            }
            let victim = match self.pick_victim(page_id, &mut map) {
                // Concurrent fetchers pin and unpin frames while CLOCK
                // looks at them one by one, so "every frame pinned" is not
                // a snapshot: look again a few times before giving up.
                Err(Error::BufferPoolFull { .. }) if full_retries < FULL_RETRIES => {
                    full_retries += 1;
                    drop(map);
                    if full_retries <= FULL_RETRY_YIELDS {
                        std::thread::yield_now();
                    } else {
                        std::thread::sleep(std::time::Duration::from_micros(50));
                    }
                    continue;
                }
                r => r?,
            };
            match victim {
                Victim::Clean(idx) => return self.load(map, idx, page_id, read),
                Victim::Dirty(idx) => {
                    // Claimed (pinned) by pick_victim. Write it back without
                    // holding the shard (the write may have to wait for a
                    // log fsync), then look again.
                    drop(map);
                    let h = PageHandle { pool: self, idx };
                    if h.is_dirty() && self.write_page(&self.frames[idx], true)? {
                        self.counters.eviction_log_waits.fetch_add(1, Ordering::Relaxed);
                    }
                    drop(h);
                    self.frames[idx].refbit.store(false, Ordering::Relaxed);
                }
            }
        }
        Err(Error::BufferPoolFull { frames: self.frames.len() })
    }

    /// A pinned frame that already held the page: wait for a load in
    /// progress (the loader holds the write latch), then check it. None:
    /// that load failed (the frame no longer holds the page).
    fn finish_hit<'a>(&'a self, h: PageHandle<'a>, page_id: PageId, read: bool) -> Result<Option<PageHandle<'a>>> {
        // The common case: loaded and valid. `valid` is cleared before the
        // page is mapped and set only once its read succeeded.
        if h.is_valid() && self.frames[h.idx].page_id() == page_id {
            return Ok(Some(h));
        }
        drop(h.read());
        if self.frames[h.idx].page_id() != page_id {
            return Ok(None);
        }
        if !h.is_valid() && !read {
            // About to be fully defined: the torn contents do not matter.
            h.write().fill(0);
            h.set_valid();
        }
        if !h.is_valid() && !self.recovery_mode.load(Ordering::Acquire) {
            return Err(Error::corruption("data", format!("page {page_id} is torn or missing")));
        }
        Ok(Some(h))
    }

    /// Read `page_id` into frame `idx`, claimed (pinned once) by
    /// `pick_victim` and unmapped. The frame is mapped and latched before
    /// the shard (`map`, held exclusively) is released, so other fetchers of
    /// the page wait for the read on the latch.
    fn load<'a>(
        &'a self,
        mut map: RwLockWriteGuard<'_, PageMap>,
        idx: usize,
        page_id: PageId,
        read: bool,
    ) -> Result<PageHandle<'a>> {
        let f = &self.frames[idx];
        // Claimed; a hint hit may have pinned it meanwhile and is backing off.
        debug_assert!(f.pin.load(Ordering::Acquire) & CLAIMED != 0);
        f.set_page_id(page_id);
        self.clear_dirty(f);
        f.image_lsn.store(0, Ordering::Release);
        f.valid.store(false, Ordering::Release);
        f.set_rec_lsn(Lsn::NONE);
        // At most a pinner letting go still holds the latch (`log_and_apply`
        // unpins before it unlatches); the write latch waits for it.
        let mut d = f.data.write();
        if d.len() != self.page_size {
            debug_assert!(d.is_empty(), "a frame's bytes are a page or nothing");
            *d = vec![0u8; self.page_size].into_boxed_slice();
        }
        map.insert(page_id, idx as u32);
        // Mapped: hits may pin it now (and wait on the latch for the read).
        f.pin.fetch_and(!CLAIMED, Ordering::AcqRel);
        self.set_hint(page_id, idx);
        drop(map);
        let h = PageHandle { pool: self, idx };
        let state = if read {
            self.counters.misses.fetch_add(1, Ordering::Relaxed);
            match self.read_page(page_id, &mut d) {
                Ok(s) => s,
                Err(e) => {
                    self.unmap(page_id, idx);
                    return Err(e);
                }
            }
        } else {
            d.fill(0);
            PageState::Valid
        };
        let mut valid = state == PageState::Valid;
        let load_redo = self.load_redo.read().clone();
        if let Some(redo) = load_redo.filter(|r| r.left() > 0) {
            if !read {
                // About to be fully defined anew: what it owed is moot.
                redo.done(page_id);
            } else {
                match redo.redo_at_load(page_id, &mut d, valid) {
                    Ok(None) => {}
                    Ok(Some(redone)) => {
                        valid = true;
                        if let Some(rec_lsn) = redone.dirty_rec_lsn {
                            f.set_rec_lsn(rec_lsn);
                            self.set_dirty(f);
                            if page_id == page::META_PAGE {
                                self.forget_meta_shape();
                            }
                        }
                        // Only now, with the frame dirty, may a checkpoint
                        // miss it in the owed list (`dirty_pages`).
                        redo.done(page_id);
                    }
                    Err(e) => {
                        self.unmap(page_id, idx);
                        self.clear_dirty(f);
                        f.set_rec_lsn(Lsn::NONE);
                        return Err(e);
                    }
                }
            }
        }
        f.valid.store(valid, Ordering::Release);
        drop(d);
        if !valid && !self.recovery_mode.load(Ordering::Acquire) {
            let what = if state == PageState::Zero { "was never written" } else { "fails its checksum" };
            return Err(Error::corruption("data", format!("page {page_id} {what}")));
        }
        Ok(h)
    }

    /// Take frame `idx` (pinned and latched by the caller) off page
    /// `page_id`, whose bytes it does not hold (its load failed). Fetchers
    /// waiting for it find it gone and look again.
    fn unmap(&self, page_id: PageId, idx: usize) {
        let mut map = self.shard(page_id).map.write();
        if map.get(&page_id) == Some(&(idx as u32)) {
            map.remove(&page_id);
        }
        self.clear_hint(page_id, idx);
        self.frames[idx].set_page_id(NO_PAGE);
    }

    /// Read page `page_id`'s stored bytes into `buf`, outside the pool (for
    /// instant restart's background sweep, of pages that owe redo and so are
    /// not in the pool): true if they pass their checks.
    ///
    /// # Errors
    /// An I/O error of the read.
    pub fn read_stored(&self, page_id: PageId, buf: &mut [u8]) -> Result<bool> {
        Ok(self.read_page(page_id, buf)? == PageState::Valid)
    }

    fn read_page(&self, page_id: PageId, buf: &mut [u8]) -> Result<PageState> {
        let off = page_id.offset(self.page_size);
        let n = read_full_at(&*self.file, buf, off)?;
        buf[n..].fill(0);
        match page::verify(buf, page_id) {
            // A page can only reach storage after its last record is durable
            // (write-ahead rule), so a page LSN past the end of the log is damage.
            PageState::Valid if buf.page_lsn() >= self.wal.end_lsn() => Ok(PageState::Invalid),
            s => Ok(s),
        }
    }

    /// CLOCK: the next unpinned frame without its reference bit, pinned for
    /// the caller. A clean victim is claimed (its pin raised from 0 to 1 by a
    /// compare-and-swap) and unmapped; a dirty one stays mapped, for the
    /// caller to write back before it looks again. A dirty frame whose changes
    /// are not yet durable in the log is passed over once (writing it would
    /// need a log fsync first) and taken only if nothing better turns up.
    ///
    /// The hand is shared with concurrent evictions, so `2n + 1` turns of it
    /// need not give this caller two looks at every frame: another evictor
    /// may take each frame whose reference bit this one cleared, and set it
    /// again by its own unpin. So before it reports `BufferPoolFull`, one
    /// sweep of its own tries every frame, reference bit or not: the pool is
    /// full only if every frame is pinned (or its shard busy) then.
    ///
    /// `own` is the shard of `page_id`, held exclusively; the shard of
    /// another frame's page is only tried, never waited for, so two fetchers
    /// cannot deadlock on each other's shards. Does no I/O.
    fn pick_victim(&self, page_id: PageId, own: &mut PageMap) -> Result<Victim> {
        let n = self.frames.len();
        let durable = self.wal.durable_lsn();
        let own_shard = page_id.get() as usize % TABLE_SHARDS;
        // A dirty frame ahead of the durable log, pinned in case nothing
        // better turns up.
        let mut needs_log_flush: Option<usize> = None;
        for _ in 0..2 * n + 1 {
            let idx = self.hand.fetch_add(1, Ordering::Relaxed) % n;
            if let Some(v) = self.try_claim(idx, own_shard, own, durable, &mut needs_log_flush, true) {
                return Ok(v);
            }
        }
        if needs_log_flush.is_none() {
            for idx in 0..n {
                if let Some(v) = self.try_claim(idx, own_shard, own, durable, &mut needs_log_flush, false) {
                    return Ok(v);
                }
            }
        }
        needs_log_flush.map(Victim::Dirty).ok_or(Error::BufferPoolFull { frames: n })
    }

    /// One look of `pick_victim` at frame `idx`: the frame claimed, or None.
    /// With `refbit`, a set reference bit is cleared and the frame passed
    /// over (CLOCK's second chance).
    fn try_claim(
        &self,
        idx: usize,
        own_shard: usize,
        own: &mut PageMap,
        durable: Lsn,
        needs_log_flush: &mut Option<usize>,
        refbit: bool,
    ) -> Option<Victim> {
        let unpin_fallback = |fallback: Option<usize>| {
            if let Some(i) = fallback {
                self.frames[i].pin.fetch_sub(1, Ordering::AcqRel);
            }
        };
        let f = &self.frames[idx];
        if f.pin.load(Ordering::Acquire) > 0 || (refbit && f.refbit.swap(false, Ordering::Relaxed)) {
            return None;
        }
        let old = f.page_id();
        if old == NO_PAGE {
            // No shard to hold: the claim alone excludes other evictors.
            if f.pin.compare_exchange(0, CLAIMED | 1, Ordering::AcqRel, Ordering::Acquire).is_ok() {
                if f.page_id() == NO_PAGE {
                    unpin_fallback(needs_log_flush.take());
                    return Some(Victim::Clean(idx));
                }
                // Taken and loaded by another thread meanwhile.
                f.pin.fetch_sub(CLAIMED | 1, Ordering::AcqRel);
            }
            return None;
        }
        let mut other_guard;
        let map: &mut PageMap = if old.get() as usize % TABLE_SHARDS == own_shard {
            own
        } else {
            other_guard = self.shard(old).map.try_write()?;
            &mut other_guard
        };
        // With `old`'s shard held exclusively, no hit through the table can
        // pin the frame (a hint hit can) and its page cannot change; check
        // it still holds `old`.
        if f.page_id() != old || map.get(&old) != Some(&(idx as u32)) {
            return None;
        }
        // Claim first, then read `dirty`: a pinner that dirtied the page
        // and unpinned since the check above is seen by the claim (whose
        // compare-and-swap reads from its unpin). (Read before the claim,
        // `dirty` could be stale.) A hint hit can still pin the frame until
        // it is CLAIMED, so a clean one is checked again after that.
        if f.pin.compare_exchange(0, 1, Ordering::AcqRel, Ordering::Acquire).is_err() {
            return None;
        }
        let dirty = f.dirty.load(Ordering::Acquire) && f.valid.load(Ordering::Acquire);
        if dirty {
            // Claimed: a latch still held is being let go (`log_and_apply`
            // unpins before it unlatches); try_read does not wait for it.
            // A page that owes an image (the torn-page rule) needs a flush
            // of it too.
            let horizon = self.fpi_horizon.load();
            let (ahead, owes_image) = match f.data.try_read() {
                Some(g) => (g.page_lsn() >= durable, Self::last_image(f, &g) < horizon),
                None => (true, true),
            };
            if owes_image && self.recovery_mode.load(Ordering::Acquire) {
                // Redo may be part way through the page: an image of it
                // logged now would be out of log order (`recovery::redo`).
                f.pin.fetch_sub(1, Ordering::AcqRel);
                return None;
            }
            if ahead || owes_image {
                if needs_log_flush.is_none() {
                    *needs_log_flush = Some(idx);
                } else {
                    f.pin.fetch_sub(1, Ordering::AcqRel);
                }
                return None;
            }
        }
        #[cfg(test)]
        if !dirty {
            let hook = self.claim_hook.lock().take();
            if let Some(mut hook) = hook {
                if !hook(self, old) {
                    *self.claim_hook.lock() = Some(hook);
                }
            }
        }
        if !dirty && f.pin.compare_exchange(1, CLAIMED | 1, Ordering::AcqRel, Ordering::Acquire).is_err() {
            // A hint hit pinned it since the claim above: in use.
            f.pin.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        if !dirty && f.dirty.load(Ordering::Acquire) && f.valid.load(Ordering::Acquire) {
            // A hint hit pinned it after the first claim, changed it and let
            // go before the CLAIMED bit (which reads from its unpin): in use.
            f.pin.fetch_sub(CLAIMED | 1, Ordering::AcqRel);
            return None;
        }
        unpin_fallback(needs_log_flush.take());
        if dirty {
            return Some(Victim::Dirty(idx));
        }
        map.remove(&old);
        self.clear_hint(old, idx);
        self.counters.evictions.fetch_add(1, Ordering::Relaxed);
        Some(Victim::Clean(idx))
    }

    /// Move the full-page-image horizon to `begin` (a checkpoint's begin
    /// LSN, or at open the one recovery started from) and wait until every
    /// write-back that looked at the older horizon has ended. Call before
    /// the checkpoint syncs the data file, with no page latched: from then
    /// on a page whose last image is older than `begin` is imaged before it
    /// is written, and every earlier write is covered by that sync.
    pub fn advance_fpi_horizon(&self, begin: Lsn) {
        debug_assert!(begin >= self.fpi_horizon.load(), "the image horizon only moves forward");
        self.fpi_horizon.store(begin);
        drop(self.write_gate.write());
    }

    /// The full-page-image horizon (`advance_fpi_horizon`).
    pub fn fpi_horizon(&self) -> Lsn {
        self.fpi_horizon.load()
    }

    /// The latest full image of the page in frame `f` (bytes `g`): its own
    /// `fpi_lsn`, or a later image logged at a write-back.
    fn last_image(f: &Frame, g: &[u8]) -> Lsn {
        g.fpi_lsn().max(Lsn(f.image_lsn.load(Ordering::Acquire)))
    }

    /// THE TORN-PAGE RULE: a page about to be written back whose last full
    /// image is older than the horizon gets one logged first (`page::image_op`:
    /// the cells of a leaf or inner page as an Init, the bytes of any other),
    /// so that redo can rebuild the page if this write is torn. Call with
    /// `write_gate` held shared, `horizon` read after it was taken, and the
    /// frame pinned.
    fn log_image_if_due(&self, f: &Frame, horizon: Lsn) -> Result<Image> {
        let g = f.data.read();
        if Self::last_image(f, &g) >= horizon {
            return Ok(Image::NotDue);
        }
        // Held through the append: a record that defines the page anew is
        // either listed now, or appended after the image.
        let defining = self.defining.lock();
        if let Some(&lsn) = defining.get(&f.page_id()) {
            // Such a record is logged and not yet applied: an image of the
            // bytes now would follow it in the log with a state that lacks it.
            return Ok(Image::Busy(lsn));
        }
        let image = PagePart { page_id: f.page_id(), op: page::image_op(&g) };
        let lsn = self.wal.append(&RecordHeader::default(), &Body::Redo { parts: vec![image] })?;
        drop(defining);
        // Still latched: no change of the page lies between its bytes and
        // the image, so the image's LSN may stand as the copy's page_lsn.
        f.image_lsn.store(lsn.get(), Ordering::Release);
        self.counters.fpis.fetch_add(1, Ordering::Relaxed);
        Ok(Image::Logged(lsn))
    }

    /// Write a dirty frame back to the data file (`write_gate` taken here).
    /// Returns true if that meant waiting for a log flush. An eviction
    /// (`evicting`) may run under the caller's tree latch: its flush is the
    /// documented exception to "no log flush under the latch" (`wal::no_flush`).
    ///
    /// An eviction may hold page latches (`log_and_apply` fetches with its
    /// pages latched) that a write-back pass holding the gate waits for;
    /// a plain `read` would queue behind a checkpoint waiting for the gate
    /// exclusively (parking_lot's lock is fair), and the three would wait
    /// for each other. `read_recursive` joins the readers already there.
    fn write_page(&self, f: &Frame, evicting: bool) -> Result<bool> {
        let _gate = if evicting { self.write_gate.read_recursive() } else { self.write_gate.read() };
        let horizon = self.fpi_horizon.load();
        let image = self.log_image_if_due(f, horizon)?;
        self.write_page_gated(f, horizon, image, evicting)
    }

    /// `write_page` with `write_gate` held (`horizon` read after it was
    /// taken) and any image due already logged. THE WRITE-AHEAD RULE: the
    /// log is made durable through the page's `page_lsn` (or its later
    /// image's LSN) first.
    fn write_page_gated(&self, f: &Frame, horizon: Lsn, image: Image, evicting: bool) -> Result<bool> {
        let data = f.data.read();
        let page_id = f.page_id();
        debug_assert_eq!(data.page_id(), page_id);
        let last_image = Self::last_image(f, &data);
        // A page a record being applied defines anew needs no image: torn,
        // it is rebuilt by that record, which lies at or after the latest
        // checkpoint's begin (a checkpoint begins under the exclusive tree
        // latch, and pages change under the tree latch), once that record
        // is durable: the log is flushed through it before the write.
        let defined_by = match image {
            Image::Busy(lsn) => lsn,
            _ => Lsn::NONE,
        };
        assert!(
            last_image >= horizon || !defined_by.is_none(),
            "torn-page rule: page {page_id} written without a recent image"
        );
        // An image logged since the page's last change defines the page as
        // it is: the copy carries the image's LSN.
        let page_lsn = data.page_lsn().max(last_image);
        let flush_lsn = page_lsn.max(defined_by);
        let waited = flush_lsn >= self.wal.durable_lsn();
        if evicting {
            self.wal.flush_for_eviction(flush_lsn)?;
        } else {
            self.wal.flush_to(flush_lsn)?;
        }
        assert!(self.wal.durable_lsn() > flush_lsn, "write-ahead rule: page {page_id} ahead of the log");
        let mut copy = data.to_vec();
        page::set_page_lsn(&mut copy, page_lsn);
        page::set_fpi_lsn(&mut copy, last_image);
        page::seal(&mut copy);
        self.stopping(self.file.write_all_at(&copy, page_id.offset(self.page_size)))?;
        self.clear_dirty(f);
        f.set_rec_lsn(Lsn::NONE);
        self.counters.pages_written.fetch_add(1, Ordering::Relaxed);
        Ok(waited)
    }

    /// Set frame `f`'s dirty flag (its `rec_lsn` set first), counting it.
    fn set_dirty(&self, f: &Frame) {
        if !f.dirty.swap(true, Ordering::AcqRel) {
            self.dirty_frames.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// Clear frame `f`'s dirty flag, counting it.
    fn clear_dirty(&self, f: &Frame) {
        if f.dirty.swap(false, Ordering::AcqRel) {
            let before = self.dirty_frames.fetch_sub(1, Ordering::AcqRel);
            debug_assert!(before > 0, "more dirty flags cleared than set");
        }
    }

    /// Frames with changes not yet written back.
    pub fn dirty_frame_count(&self) -> usize {
        self.dirty_frames.load(Ordering::Acquire)
    }

    /// Frames whose dirty flag is set, counted one by one (to check
    /// `dirty_frame_count` against).
    #[cfg(test)]
    pub(crate) fn dirty_flags_set(&self) -> usize {
        self.frames.iter().filter(|f| f.dirty.load(Ordering::Acquire)).count()
    }

    /// The dirty page table: (page, rec_lsn) of every dirty frame, and of
    /// every page that owes redo after an instant restart (`LoadRedo`; a page
    /// listed twice keeps the smaller rec_lsn).
    pub fn dirty_pages(&self) -> Vec<(PageId, Lsn)> {
        // The owed list first: a page leaves it only after its frame is
        // marked dirty, so it is found in one or the other.
        let owed = self.load_redo.read().as_ref().map(|r| r.owed_pages()).unwrap_or_default();
        let mut frames = self.dirty_frames();
        if owed.is_empty() {
            return frames;
        }
        let mut all: HashMap<PageId, Lsn> = owed.into_iter().collect();
        for (p, l) in frames.drain(..) {
            let e = all.entry(p).or_insert(l);
            *e = (*e).min(l);
        }
        all.into_iter().collect()
    }

    /// (page, rec_lsn) of every dirty frame.
    fn dirty_frames(&self) -> Vec<(PageId, Lsn)> {
        // Every shard held shared: no frame changes page meanwhile.
        let _shards: Vec<_> = self.shards.iter().map(|s| s.map.read()).collect();
        // A write-back (`write_page`, which needs no tree latch) clears
        // `dirty` and then `rec_lsn`: read `rec_lsn` first, so a frame read
        // as dirty has the rec_lsn it had while dirty, never NONE (a NONE
        // would make redo start before the log). A frame whose rec_lsn reads
        // as NONE was already written back.
        self.frames
            .iter()
            .filter_map(|f| {
                let rec_lsn = f.rec_lsn();
                (!rec_lsn.is_none() && f.dirty.load(Ordering::Acquire)).then(|| (f.page_id(), rec_lsn))
            })
            .collect()
    }

    /// Write back dirty pages whose rec_lsn is below `older_than` (all of them
    /// for `Lsn::MAX`), at most `limit`. Returns how many were written.
    /// Pages go in batches of `WRITE_BATCH`: the images the batch owes
    /// (`log_image_if_due`) are logged first and made durable with one log
    /// flush, then the pages are written.
    ///
    /// # Errors
    /// `Error::Failed` once the database has stopped; an error of the log
    /// flush or the page write (an I/O error stops the database).
    pub fn flush_dirty(&self, older_than: Lsn, limit: usize) -> Result<usize> {
        Ok(self.flush_dirty_frames(older_than, limit, 0, self.frames.len())?.0)
    }

    /// `flush_dirty` for the background writer: looks at no more than
    /// `BACKGROUND_SCAN_FRAMES` frames, from where its last call stopped
    /// (wrapping around), so that a tick over a large pool whose dirty pages
    /// are all younger than `older_than` costs little.
    ///
    /// # Errors
    /// As `flush_dirty`.
    pub fn flush_dirty_some(&self, older_than: Lsn, limit: usize) -> Result<usize> {
        let n = self.frames.len();
        let start = self.background_cursor.load(Ordering::Relaxed) % n;
        let count = n.min(self.background_scan_frames.load(Ordering::Relaxed));
        let (written, looked_at) = self.flush_dirty_frames(older_than, limit, start, count)?;
        self.background_cursor.store((start + looked_at) % n, Ordering::Relaxed);
        Ok(written)
    }

    /// Let background passes look at `frames` frames at most (tests).
    #[cfg(test)]
    pub fn set_background_scan_frames(&self, frames: usize) {
        self.background_scan_frames.store(frames.max(1), Ordering::Relaxed);
    }

    /// The pass of `flush_dirty` over `count` frames from `start` (modulo
    /// the frame count): pages written, and frames looked at.
    fn flush_dirty_frames(&self, older_than: Lsn, limit: usize, start: usize, count: usize) -> Result<(usize, usize)> {
        self.stop.check()?;
        let n = self.frames.len();
        debug_assert!(count <= n);
        let mut written = 0;
        let mut batch: Vec<(usize, PageId)> = Vec::with_capacity(WRITE_BATCH.min(limit));
        let mut looked_at = 0;
        while written < limit && looked_at < count && self.dirty_frame_count() > 0 {
            let _gate = self.write_gate.read();
            let horizon = self.fpi_horizon.load();
            // The batch's images, each under its page's pin (let go before
            // the next: a small pool must keep frames to evict).
            batch.clear();
            let mut last_image = Lsn::NONE;
            while batch.len() < WRITE_BATCH.min(limit - written) && looked_at < count {
                let idx = (start + looked_at) % n;
                if let Some(h) = self.pin_if_dirty(idx, older_than, None) {
                    if let Image::Logged(lsn) = self.log_image_if_due(h.frame(), horizon)? {
                        last_image = lsn;
                    }
                    batch.push((idx, h.frame().page_id()));
                }
                looked_at += 1;
            }
            if !last_image.is_none() {
                self.wal.flush_to(last_image)?;
            }
            // The writes, of the pages still there and dirty.
            for &(idx, pid) in &batch {
                if let Some(h) = self.pin_if_dirty(idx, Lsn::MAX, Some(pid)) {
                    let image = self.log_image_if_due(h.frame(), horizon)?;
                    self.write_page_gated(h.frame(), horizon, image, false)?;
                    written += 1;
                }
            }
        }
        Ok((written, looked_at))
    }

    /// Frame `idx`, pinned, if it holds a valid dirty page (`page`, if
    /// given) whose rec_lsn is below `older_than`.
    fn pin_if_dirty(&self, idx: usize, older_than: Lsn, page: Option<PageId>) -> Option<PageHandle<'_>> {
        let f = &self.frames[idx];
        let pid = f.page_id();
        // Looked at first without the shard, so that a pass over clean
        // frames takes no lock; checked again under it.
        if pid == NO_PAGE
            || page.is_some_and(|p| p != pid)
            || !f.dirty.load(Ordering::Acquire)
            || f.rec_lsn() >= older_than
        {
            return None;
        }
        let map = self.shard(pid).map.read();
        let eligible = f.page_id() == pid
            && f.dirty.load(Ordering::Acquire)
            && f.valid.load(Ordering::Acquire)
            && f.rec_lsn() < older_than;
        if !eligible || map.get(&pid) != Some(&(idx as u32)) {
            return None;
        }
        f.pin.fetch_add(1, Ordering::AcqRel);
        Some(PageHandle { pool: self, idx })
    }

    /// Make every page written so far durable.
    ///
    /// # Errors
    /// `Error::Failed` once the database has stopped; an I/O error of the
    /// sync (which stops the database).
    pub fn sync(&self) -> Result<()> {
        self.stop.check()?;
        self.stopping(self.file.sync_data())
    }

    /// An I/O error of the data file stops the database (fail-stop).
    fn stopping<T>(&self, r: std::io::Result<T>) -> Result<T> {
        r.map_err(|e| {
            let e = Error::Io(e);
            self.stop.stop(&e);
            e
        })
    }

    /// Log a record and apply its page parts: the one path by which pages
    /// change in normal operation. A page's first change since its last
    /// write-back sets its `rec_lsn`; no image is logged here (the torn-page
    /// rule runs at write-back, `log_image_if_due`).
    pub fn log_and_apply(&self, header: &RecordHeader, body: &Body) -> Result<Lsn> {
        self.stop.check()?;
        let parts = body.parts();
        // Latch every page whose old contents matter, in part order, once each.
        let mut held: Vec<Latched<'_>> = Vec::new();
        let mut defined: Vec<PageId> = Vec::new();
        for part in parts {
            if part.op.defines_page() {
                defined.push(part.page_id);
                continue;
            }
            if defined.contains(&part.page_id) || held.iter().any(|(p, _, _)| *p == part.page_id) {
                continue;
            }
            let h = self.fetch(part.page_id)?;
            let g = self.frames[h.idx].data.write();
            held.push((part.page_id, h, g));
        }
        // The pages defined anew are latched only after the append (a record
        // may define more pages than the pool has frames): until they are
        // applied, no write-back logs an image of them (`log_image_if_due`).
        let mut defining = (!defined.is_empty()).then(|| Defining::new(self, parts, defined));
        let lsn = match &defining {
            Some(d) => d.append(header, body)?,
            None => self.wal.append(header, body)?,
        };
        for (i, part) in parts.iter().enumerate() {
            if let Some(pos) = held.iter().position(|(p, _, _)| *p == part.page_id) {
                let (_, h, g) = &mut held[pos];
                Self::apply_part(h, g, part, lsn)?;
            } else {
                let h = self.fetch_new(part.page_id)?;
                let mut g = self.frames[h.idx].data.write();
                Self::apply_part(&h, &mut g, part, lsn)?;
                // Whole: the record has no later part for the page.
                if let Some(d) = defining.as_mut() {
                    d.applied(part.page_id, i);
                }
            }
        }
        Ok(lsn)
    }

    fn apply_part(h: &PageHandle<'_>, g: &mut [u8], part: &PagePart, lsn: Lsn) -> Result<()> {
        h.pool.note_change(h.frame());
        page::apply(g, part.page_id, &part.op)?;
        if part.page_id == page::META_PAGE {
            // Published while the page is latched (and the writer holds the
            // tree latch): readers never see the page and the cache differ.
            let v = page::Meta::read(g).map_or(0, |m| pack_meta_shape(&m));
            h.pool.meta_shape.store(v, Ordering::Release);
        }
        page::set_page_lsn(g, lsn);
        if part.op.defines_page() {
            page::set_fpi_lsn(g, lsn);
        }
        debug_assert!(g.fpi_lsn() <= lsn);
        h.mark_dirty(lsn);
        Ok(())
    }
}
