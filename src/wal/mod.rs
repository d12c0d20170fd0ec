//! The write-ahead log: records appended in LSN order into a log buffer,
//! written by one flushing leader at a time into segment files, made durable
//! by `sync_data`, and read back by rollback (random access) and recovery
//! (sequential scan, see `reader`).
//!
//! Files: `record.rs` (a record's bytes), `segments.rs` (finding the segment
//! files, the cache of their handles, erasing the stale tail past the end
//! recovery found), `reader.rs` (the sequential scan and how the log ended:
//! a torn tail or damage, as `reader::LogEnd`), and this file (the writer,
//! group commit, reads for rollback, and truncation by `truncate_before`).
//!
//! Invariants:
//! - An LSN is the byte position of a record in the log stream; segment file
//!   `wal-<start>.log` holds the stream from `start` until its `SegEnd` record.
//! - `durable_lsn` only grows, and only after `sync_data` of every segment
//!   holding bytes below it returned Ok (and `sync_dir` for new segments).
//! - A log opened on existing segments appends only after recovery erased
//!   the stale tail past the end (`Segments::erase_stale_tail`).
//! - Group commit: committers wait on one condition variable while a single
//!   leader writes and syncs everything appended so far; no lock that
//!   appenders need is held across the fsync. A committing leader may first
//!   wait, holding no lock, for the committing threads its last flush served
//!   to join it (`wait_for_siblings`); other flushers wait for it meanwhile,
//!   an eviction under the tree latch included, 1 ms at most.
//! - `append` never writes or waits: callers append under the tree latch and
//!   the transaction table's mutex, where no log flush may be waited for
//!   (`no_flush`). A buffer past `BUFFER_FLUSH_BYTES` is flushed by a caller
//!   that holds neither (`flush_if_over`), and the tree latch is not granted
//!   to a change while the buffer is past it (`btree::TreeLatch`), so the
//!   buffer holds less than `BUFFER_FLUSH_BYTES` when a tree operation begins
//!   and at most that plus one operation's records (at most `MAX_RECORD_LEN`)
//!   plus the records appended outside the latch meanwhile (Commit, Abort,
//!   End, checkpoints, and full page images logged at write-back).
//! - A record appended is readable at once (`read_record`): from the append
//!   buffer, from the buffer a flush leader is writing, or from its segment;
//!   reading never waits for a flush.
//! - After any write or sync error the log stops the database (its shared
//!   `FailStop`) and nothing is retried: once the database has stopped, for
//!   this or any other cause, every append, flush and read returns
//!   `Error::Failed` (but `flush_all_at_drop`, see there).

#[cfg(test)]
mod flush_tests;
pub mod no_flush;
pub mod reader;
pub mod record;
pub mod segments;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use std::thread::ThreadId;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex, MutexGuard};

use crate::error::{Error, Result};
use crate::failstop::FailStop;

use crate::storage::{read_full_at, Storage, StorageFile};
use crate::types::Lsn;
pub use record::*;
use segments::Segments;

/// The longest a group commit leader waits for other committers to join
/// its flush (`Wal::wait_for_siblings`); it waits at most half the last
/// flush's time, within this.
pub const GROUP_WAIT_MAX: Duration = Duration::from_millis(1);
/// Leads that do not wait for other committers after a wait that none
/// joined.
const GROUP_WAIT_SKIPS: u32 = 8;
/// Committing threads a flush remembers having served, at most.
const GROUP_TRACKED: usize = 64;
/// A flush writing at most this many bytes into a segment also makes sure
/// the segment holds zeros for `ZERO_AHEAD_BYTES` past them
/// (`Wal::zero_ahead`).
const ZERO_AHEAD_WRITE_MAX: usize = 64 << 10;
/// How far ahead of a small flush a segment is zero-filled.
const ZERO_AHEAD_BYTES: u64 = 1 << 20;

/// LSN of the first record of a new database.
pub const LSN_START: Lsn = Lsn(4096);
/// No LSN read from disk may exceed this (so LSN arithmetic cannot overflow;
/// 2^62 bytes of log is beyond any real database).
pub const MAX_LSN: Lsn = Lsn(1 << 62);
/// A log buffer holding this many bytes is flushed by the next caller that
/// holds no latch (`Wal::flush_if_over`), and no tree change begins until it
/// is (`btree::TreeLatch`).
pub const BUFFER_FLUSH_BYTES: usize = 4 << 20;
/// Bytes `Wal::read_record` reads at once from a segment: a record no
/// longer than this (most are) takes one read.
const FIRST_READ: usize = 8 << 10;
/// The spare buffer keeps at most this capacity: a buffer that grew for a
/// large record (a long value) is shrunk back when it becomes the spare, so
/// the log holds at most about twice this between flushes, not its largest
/// buffer ever.
const SPARE_MAX_BYTES: usize = 2 * BUFFER_FLUSH_BYTES;

/// File name of the segment that starts at `start`.
pub fn segment_name(start: Lsn) -> String {
    format!("wal-{:016x}.log", start.get())
}

/// The start LSN of a segment file name, if it is one.
pub fn parse_segment_name(name: &str) -> Option<Lsn> {
    let hex = name.strip_prefix("wal-")?.strip_suffix(".log")?;
    if hex.len() != 16 {
        return None;
    }
    u64::from_str_radix(hex, 16).ok().map(Lsn)
}

struct AppendState {
    /// LSN the next record gets.
    next_lsn: Lsn,
    /// Encoded records for [buf_start, next_lsn) not yet handed to a flusher.
    buf: Vec<u8>,
    buf_start: Lsn,
    /// Start of the segment `next_lsn` falls in.
    cur_seg: Lsn,
    /// Segments begun by appends whose files the next flusher must create.
    pending_segs: Vec<Lsn>,
    /// A spare buffer, swapped in by the flusher (no allocation per flush).
    spare: Vec<u8>,
    /// The bytes a flush leader took from `buf` and is writing: the log from
    /// the first LSN on, read by `read_record` until they are written.
    in_flight: Option<(Lsn, Arc<Vec<u8>>)>,
}

struct FlushState {
    in_progress: bool,
    /// Committing threads waiting for the flush in progress (or about to
    /// begin): their records are appended.
    waiting: Vec<ThreadId>,
    /// Committers that started to wait, ever (what a leader waiting for its
    /// siblings counts).
    arrivals: u64,
    /// The committing threads whose records the last flush took (its
    /// leader's and its waiters' at its start).
    last_covered: Vec<ThreadId>,
    /// Leads left that skip the wait for siblings (after a wait in which
    /// none came).
    skip_waits: u32,
    /// The last flush's write and sync, in nanoseconds (0: none yet).
    last_flush_ns: u64,
}

/// Counters for stats.
#[derive(Debug, Default)]
pub struct WalCounters {
    /// fsyncs of log segments.
    pub syncs: AtomicU64,
    /// Bytes written to log segments.
    pub bytes_written: AtomicU64,
    /// Flushes done (each serves a group of committers).
    pub flushes: AtomicU64,
    /// The most bytes the append buffer held.
    pub buffer_high_water: AtomicU64,
    /// Flushes started by `flush_if_over`: the buffer had passed
    /// `BUFFER_FLUSH_BYTES`.
    pub size_flushes: AtomicU64,
    /// Flushes whose leader first waited for other committers to join
    /// (group commit, `Wal::wait_for_siblings`).
    pub group_waits: AtomicU64,
    /// Flushes waited for by a thread in a no-flush zone (holding the tree
    /// latch or the transaction table), eviction's excepted: 0 unless a bug.
    pub flushes_in_no_flush_zone: AtomicU64,
}

/// Who asks for a flush: what `flush_to_inner` allows.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Flusher {
    /// A caller outside any no-flush zone, refused once the database stopped.
    Caller,
    /// A committing transaction (`Wal::flush_commit`): as `Caller`, and
    /// counted for group commit.
    Commit,
    /// An eviction under the caller's latches (the documented exception).
    Eviction,
    /// A dropped `Db`: refused only if the log's own flush failed.
    Drop,
}

/// The write-ahead log.
pub struct Wal {
    storage: Arc<dyn Storage>,
    seg_size: u64,
    append: Mutex<AppendState>,
    flush: Mutex<FlushState>,
    flush_cv: Condvar,
    /// Signalled when a caller starts waiting for a flush (a leader waiting
    /// for its siblings watches it).
    arrival_cv: Condvar,
    /// Bounds of a group commit leader's wait (`wait_for_siblings`): 0 and
    /// `GROUP_WAIT_MAX` (tests raise the floor).
    group_wait: (Duration, Duration),
    durable_lsn: AtomicU64,
    /// `AppendState::buf`'s length, readable without the mutex.
    buffered: AtomicUsize,
    /// Flushes that have taken their bytes from the buffer (the flush epoch).
    /// A record appended while this reads `e` is durable once `flush_done`
    /// reaches `e + 1`.
    flush_taken: AtomicU64,
    /// The epoch of the last flush that completed.
    flush_done: AtomicU64,
    segments: Arc<Segments>,
    /// The database's fail-stop state, consulted at every entry point.
    stop: Arc<FailStop>,
    /// The log's own flush failed (a later flush would retry it).
    flush_failed: AtomicBool,
    /// The segment the last small flush wrote into, and up to which offset
    /// it holds written bytes or zeros (`zero_ahead`; only the flush leader
    /// touches it).
    zeroed: Mutex<(Lsn, u64)>,
    /// The storage wants zeros ahead of the log's end
    /// (`Storage::zero_fill_ahead`).
    zero_fill: bool,
    /// Counters.
    pub counters: WalCounters,
}

impl Wal {
    /// A log that appends at `end_lsn`, in the segment starting at `cur_seg`
    /// (a new segment is created if `cur_seg == end_lsn` and no file exists).
    /// `segments` are the segment files found on storage; `stop` the
    /// database's fail-stop state.
    pub fn new(
        storage: Arc<dyn Storage>,
        seg_size: u64,
        segments: Arc<Segments>,
        cur_seg: Lsn,
        end_lsn: Lsn,
        stop: Arc<FailStop>,
    ) -> Wal {
        assert!(cur_seg <= end_lsn && end_lsn.get().is_multiple_of(RECORD_ALIGN as u64));
        let pending_segs = if segments.contains(cur_seg) { vec![] } else { vec![cur_seg] };
        let zero_fill = storage.zero_fill_ahead();
        Wal {
            storage,
            seg_size,
            append: Mutex::new(AppendState {
                next_lsn: end_lsn,
                buf: Vec::with_capacity(1 << 20),
                buf_start: end_lsn,
                cur_seg,
                pending_segs,
                spare: Vec::with_capacity(1 << 20),
                in_flight: None,
            }),
            flush: Mutex::new(FlushState {
                in_progress: false,
                waiting: Vec::new(),
                arrivals: 0,
                last_covered: Vec::new(),
                skip_waits: 0,
                last_flush_ns: 0,
            }),
            flush_cv: Condvar::new(),
            arrival_cv: Condvar::new(),
            group_wait: (Duration::ZERO, GROUP_WAIT_MAX),
            durable_lsn: AtomicU64::new(end_lsn.get()),
            buffered: AtomicUsize::new(0),
            flush_taken: AtomicU64::new(0),
            flush_done: AtomicU64::new(0),
            segments,
            stop,
            flush_failed: AtomicBool::new(false),
            zeroed: Mutex::new((Lsn::NONE, 0)),
            zero_fill,
            counters: WalCounters::default(),
        }
    }

    /// Everything below this LSN is on stable storage.
    pub fn durable_lsn(&self) -> Lsn {
        Lsn(self.durable_lsn.load(Ordering::Acquire))
    }

    /// (taken, done): the flush epochs. Every record appended before
    /// `taken` was read is in epoch `taken` or earlier; every record of an epoch
    /// below `done` is durable. At most one flush runs, so `taken <= done + 1`.
    pub fn flush_epochs(&self) -> (u64, u64) {
        let done = self.flush_done.load(Ordering::Acquire);
        (self.flush_taken.load(Ordering::Acquire).max(done), done)
    }

    /// The log's segments (for a reader of old records, such as instant
    /// restart's background sweep).
    pub fn segments(&self) -> &Arc<Segments> {
        &self.segments
    }

    /// The LSN the next record will get (the end of the log).
    pub fn end_lsn(&self) -> Lsn {
        self.append.lock().next_lsn
    }

    /// Append a record; returns its LSN. Never writes or waits for I/O (see
    /// `flush_if_over` for who flushes a full buffer).
    ///
    /// # Errors
    /// `Error::Failed` once the database has stopped; `Error::TooLarge` for a
    /// record the reader would reject.
    pub fn append(&self, header: &RecordHeader, body: &Body) -> Result<Lsn> {
        self.stop.check()?;
        let mut s = self.append.lock();
        let durable = self.durable_lsn();
        if s.next_lsn - s.cur_seg >= self.seg_size {
            // Close this segment; the stream continues in a new one.
            let at = s.next_lsn;
            let len = encode_record(&mut s.buf, at, durable, &RecordHeader::default(), &Body::SegEnd);
            s.next_lsn += len as u64;
            s.cur_seg = s.next_lsn;
            let seg = s.cur_seg;
            s.pending_segs.push(seg);
        }
        let lsn = s.next_lsn;
        let len = encode_record(&mut s.buf, lsn, durable, header, body);
        if len > MAX_RECORD_LEN {
            // Cannot happen within the API limits; refuse rather than write
            // a record the reader would reject.
            let keep = s.buf.len() - len;
            s.buf.truncate(keep);
            self.buffered.store(keep, Ordering::Release);
            return Err(Error::TooLarge { what: "log record", len, max: MAX_RECORD_LEN });
        }
        s.next_lsn += len as u64;
        self.buffered.store(s.buf.len(), Ordering::Release);
        self.counters.buffer_high_water.fetch_max(s.buf.len() as u64, Ordering::Relaxed);
        Ok(lsn)
    }

    /// True if the append buffer holds `BUFFER_FLUSH_BYTES` or more: the next
    /// caller that holds no latch should flush (`flush_if_over`).
    pub fn wants_flush(&self) -> bool {
        self.buffered.load(Ordering::Acquire) >= BUFFER_FLUSH_BYTES
    }

    /// Flush everything appended so far if the buffer holds
    /// `BUFFER_FLUSH_BYTES` or more. Called by the callers that append and
    /// then release their latches (a tree change, an outcome record, an undo
    /// step of recovery, the checkpointer), never under them. Returns true if
    /// it flushed.
    ///
    /// # Errors
    /// As `flush_to`.
    pub fn flush_if_over(&self) -> Result<bool> {
        if !self.wants_flush() {
            return Ok(false);
        }
        self.counters.size_flushes.fetch_add(1, Ordering::Relaxed);
        self.flush_all()?;
        Ok(true)
    }

    /// Make the log durable at least through the record at `lsn`
    /// (`durable_lsn() > lsn` afterwards). Concurrent callers share one write
    /// and one fsync: the first becomes the leader, the others wait for it.
    ///
    /// # Errors
    /// `Error::Failed` once the database has stopped; the error of a failed
    /// write or sync (which stops the database).
    pub fn flush_to(&self, lsn: Lsn) -> Result<()> {
        self.flush_to_inner(lsn, Flusher::Caller)
    }

    /// `flush_to` for a commit (group commit): a caller that leads the
    /// flush may first wait for the committing threads the last flush
    /// served to join it (`wait_for_siblings`).
    ///
    /// # Errors
    /// As `flush_to`.
    pub fn flush_commit(&self, lsn: Lsn) -> Result<()> {
        self.flush_to_inner(lsn, Flusher::Commit)
    }

    /// `flush_to` for an eviction that must write a page ahead of the log:
    /// the one flush a thread may wait for under the tree latch (counted by
    /// the pool as `eviction_log_waits`; see `no_flush`).
    ///
    /// # Errors
    /// As `flush_to`.
    pub fn flush_for_eviction(&self, lsn: Lsn) -> Result<()> {
        self.flush_to_inner(lsn, Flusher::Eviction)
    }

    /// `flush_to` for `who`. A dropped `Db` is refused only if the log's own
    /// flush failed (a database stopped by another cause still flushes its
    /// log). A flush to wait for in a no-flush zone, eviction's excepted, is
    /// counted and fails a debug assertion.
    fn flush_to_inner(&self, lsn: Lsn, who: Flusher) -> Result<()> {
        let me = std::thread::current().id();
        if self.durable_lsn() <= lsn && who != Flusher::Eviction && no_flush::log_flush_forbidden() {
            self.counters.flushes_in_no_flush_zone.fetch_add(1, Ordering::Relaxed);
            debug_assert!(false, "log flush to LSN {lsn} under the tree latch or the transaction table");
        }
        loop {
            if self.durable_lsn() > lsn {
                return Ok(());
            }
            let mut f = self.flush.lock();
            if self.flush_failed.load(Ordering::Acquire) || who != Flusher::Drop {
                if let Some(cause) = self.stop.cause() {
                    return Err(Error::Failed { cause });
                }
            }
            if self.durable_lsn() > lsn {
                return Ok(());
            }
            if f.in_progress {
                if who == Flusher::Commit {
                    f.waiting.push(me);
                    f.arrivals += 1;
                    self.arrival_cv.notify_one();
                }
                self.flush_cv.wait(&mut f);
                if who == Flusher::Commit {
                    if let Some(i) = f.waiting.iter().position(|&t| t == me) {
                        f.waiting.swap_remove(i);
                    }
                }
                continue;
            }
            if lsn >= self.end_lsn() {
                // No record starts there: flushing cannot reach it. Only a
                // damaged page LSN can ask for this; never loop on it.
                return Err(Error::corruption("wal", format!("flush to LSN {lsn}, past the end of the log")));
            }
            f.in_progress = true;
            if who == Flusher::Commit {
                self.wait_for_siblings(&mut f, me);
            }
            // The committers whose records this flush takes: the waiting
            // ones, and this one (at most `GROUP_TRACKED`: the next leader
            // compares them with the waiting ones, pair by pair).
            let mut covered = std::mem::take(&mut f.last_covered);
            covered.clear();
            covered.extend(f.waiting.iter().take(GROUP_TRACKED - 1));
            if who == Flusher::Commit {
                covered.push(me);
            }
            f.last_covered = covered;
            drop(f);
            let t0 = Instant::now();
            let result = self.lead_flush();
            let mut f = self.flush.lock();
            f.last_flush_ns = u64::try_from(t0.elapsed().as_nanos()).unwrap_or(u64::MAX);
            f.in_progress = false;
            if let Err(e) = &result {
                self.flush_failed.store(true, Ordering::Release);
                self.stop.stop(e);
            }
            self.flush_cv.notify_all();
            drop(f);
            result?;
        }
    }

    /// Group commit's wait, by a committer `me` about to lead a flush (with
    /// `in_progress` set): if the last flush also took the records of other
    /// committing threads that are not waiting now, those threads are likely
    /// about to commit again; wait for them to join this flush, up to half
    /// the last flush's time (`GROUP_WAIT_MAX` at most), so that one sync
    /// makes them all durable. A thread alone never waits. After a wait that
    /// nobody joined, the next `GROUP_WAIT_SKIPS` leads do not wait.
    /// (PostgreSQL's `commit_delay` waits likewise, but for a fixed time and
    /// whenever enough transactions are open.)
    fn wait_for_siblings(&self, f: &mut MutexGuard<'_, FlushState>, me: ThreadId) {
        let expected = f.last_covered.iter().filter(|&&t| t != me && !f.waiting.contains(&t)).count() as u64;
        if expected == 0 {
            return;
        }
        if f.skip_waits > 0 {
            f.skip_waits -= 1;
            return;
        }
        self.counters.group_waits.fetch_add(1, Ordering::Relaxed);
        let wait = Duration::from_nanos(f.last_flush_ns / 2).clamp(self.group_wait.0, self.group_wait.1);
        let deadline = Instant::now() + wait;
        let arrivals = f.arrivals;
        while f.arrivals < arrivals + expected && !self.arrival_cv.wait_until(f, deadline).timed_out() {}
        if f.arrivals == arrivals {
            f.skip_waits = GROUP_WAIT_SKIPS;
        }
    }

    /// Set the bounds of a group commit leader's wait (tests).
    #[cfg(test)]
    fn set_group_wait(&mut self, floor: Duration, cap: Duration) {
        self.group_wait = (floor, cap);
    }

    /// Flush everything appended so far.
    pub fn flush_all(&self) -> Result<()> {
        let end = self.end_lsn();
        if end.is_none() {
            return Ok(());
        }
        self.flush_to(end - 1)
    }

    /// Flush everything appended so far, even if the database has stopped
    /// for a cause other than the log's own failure: what a dropped `Db` does
    /// to keep its acknowledged commits.
    ///
    /// # Errors
    /// `Error::Failed` if the log's own flush failed before; the error of a
    /// failed write or sync.
    pub fn flush_all_at_drop(&self) -> Result<()> {
        let end = self.end_lsn();
        if end.is_none() {
            return Ok(());
        }
        self.flush_to_inner(end - 1, Flusher::Drop)
    }

    /// The leader's work: take the buffer, write it into its segments, sync.
    /// Until the bytes are written, `read_record` reads them from the buffer
    /// taken (`AppendState::in_flight`).
    fn lead_flush(&self) -> Result<()> {
        let (bytes, start, new_segs, epoch) = {
            let mut s = self.append.lock();
            let mut spare = std::mem::take(&mut s.spare);
            spare.clear();
            let bytes = Arc::new(std::mem::replace(&mut s.buf, spare));
            self.buffered.store(0, Ordering::Release);
            let start = s.buf_start;
            s.buf_start = s.next_lsn;
            s.in_flight = Some((start, bytes.clone()));
            let epoch = self.flush_taken.fetch_add(1, Ordering::AcqRel) + 1;
            (bytes, start, std::mem::take(&mut s.pending_segs), epoch)
        };
        let end = start + bytes.len() as u64;
        let result = self.write_and_sync(&bytes, start, &new_segs);
        {
            // Give the buffer back as the next spare, shrunk back if a large
            // record made it grow beyond the usual size (unless a reader
            // still holds it).
            let mut s = self.append.lock();
            s.in_flight = None;
            if let Ok(mut b) = Arc::try_unwrap(bytes) {
                if s.spare.capacity() < b.capacity() {
                    b.clear();
                    b.shrink_to(SPARE_MAX_BYTES);
                    s.spare = b;
                }
            }
        }
        result?;
        debug_assert!(self.durable_lsn() <= end);
        self.durable_lsn.store(end.get(), Ordering::Release);
        // One flush at a time (`FlushState::in_progress`), and none after a
        // failed one, so epochs complete in order, one by one.
        debug_assert_eq!(self.flush_done.load(Ordering::Acquire) + 1, epoch);
        self.flush_done.store(epoch, Ordering::Release);
        Ok(())
    }

    /// Write `bytes` (the log from `start`) into their segments, creating the
    /// new ones first, and sync each segment as its part is written, so that
    /// at most one segment handle is held at a time (`Segments` bounds the
    /// rest). `durable_lsn` advances only after all of them returned Ok.
    fn write_and_sync(&self, bytes: &[u8], start: Lsn, new_segs: &[Lsn]) -> Result<()> {
        for &seg in new_segs {
            self.segments.create(seg, self.seg_size)?;
        }
        let mut pos = start;
        let end = start + bytes.len() as u64;
        while pos < end {
            let Some((seg_start, seg_end)) = self.segments.locate(pos) else {
                return Err(Error::corruption("wal", format!("no segment holds LSN {pos}")));
            };
            let file = self.segments.file(seg_start)?;
            let chunk_end = end.min(seg_end);
            let slice = &bytes[(pos - start) as usize..(chunk_end - start) as usize];
            file.write_all_at(slice, pos - seg_start)?;
            if self.zero_fill && slice.len() <= ZERO_AHEAD_WRITE_MAX {
                // Within the file's length: zeros never lengthen a segment.
                let file_len = self.segments.len_of(seg_start).unwrap_or(0);
                self.zero_ahead(&*file, seg_start, file_len, chunk_end - seg_start)?;
            }
            self.segments.note_written(seg_start, chunk_end - seg_start);
            self.counters.bytes_written.fetch_add(slice.len() as u64, Ordering::Relaxed);
            file.sync_data()?;
            self.counters.syncs.fetch_add(1, Ordering::Relaxed);
            pos = chunk_end;
        }
        if !new_segs.is_empty() {
            self.storage.sync_dir()?;
        }
        self.counters.flushes.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// After a small write ending at offset `written` of the segment at
    /// `seg` (whose file is `seg_len` bytes long): if less than half of `ZERO_AHEAD_BYTES`
    /// past it is known to hold zeros, write zeros up to `ZERO_AHEAD_BYTES`
    /// past it (within the segment), before the flush's sync. A segment is
    /// created sparse (`set_len`), and a write into a part the file system
    /// has not allocated yet makes the sync also commit the allocation, as an
    /// append does: with a 4 KiB block and commits of a few hundred bytes,
    /// one commit in ten or so. Zeros allocated ahead make those writes
    /// overwrites (the benchmark's disk probe: 8,751 overwrites and 4,658
    /// appends of 4 KiB with `fdatasync` per second). Large flushes (a bulk
    /// load's) skip it: they allocate whole blocks once per sync anyway. The
    /// log reader sees zeros past the end as it sees an unwritten hole: the
    /// end of the log.
    fn zero_ahead(&self, file: &dyn StorageFile, seg: Lsn, seg_len: u64, written: u64) -> Result<()> {
        let mut z = self.zeroed.lock();
        if z.0 != seg {
            *z = (seg, 0);
        }
        if z.1 >= written + ZERO_AHEAD_BYTES / 2 {
            return Ok(());
        }
        let from = z.1.max(written);
        let to = (written + ZERO_AHEAD_BYTES).min(seg_len);
        if to > from {
            file.write_all_at(&vec![0u8; (to - from) as usize], from)?;
        }
        z.1 = to.max(written);
        Ok(())
    }

    /// Read the record at `lsn` (for rollback): from the append buffer, from
    /// the buffer a flush leader is writing, or from its segment (written,
    /// durable or not). Never waits for a flush, so a rollback step may read
    /// under the tree latch.
    ///
    /// # Errors
    /// `Error::Failed` once the database has stopped; `Error::Corruption` if
    /// no valid record is there; an I/O error.
    pub fn read_record(&self, lsn: Lsn) -> Result<LogRecord> {
        self.stop.check()?;
        let in_flight = {
            let s = self.append.lock();
            if lsn >= s.buf_start {
                let off = (lsn - s.buf_start) as usize;
                return decode_record(s.buf.get(off..).unwrap_or(&[]), lsn);
            }
            s.in_flight.clone().filter(|(start, _)| lsn >= *start)
        };
        if let Some((start, bytes)) = in_flight {
            return decode_record(bytes.get((lsn - start) as usize..).unwrap_or(&[]), lsn);
        }
        // Below the buffers: a flush that completed wrote it (a failed one
        // stopped the database, refused above or by the next call).
        let Some((seg_start, _)) = self.segments.locate(lsn) else {
            return Err(Error::corruption("wal", format!("LSN {lsn} is before the oldest segment")));
        };
        let file = self.segments.file(seg_start)?;
        // One read for a record of up to `FIRST_READ` bytes (most are), a
        // second for the rest of a longer one.
        let off = lsn - seg_start;
        let mut buf = vec![0u8; FIRST_READ];
        let mut n = read_full_at(&*file, &mut buf, off)?;
        let Some(len) = peek_len(&buf[..n.min(RECORD_HEADER_LEN)], lsn) else {
            return Err(Error::corruption("wal", format!("no record at LSN {lsn}")));
        };
        if len > n && n == buf.len() {
            buf.resize(len, 0);
            n += read_full_at(&*file, &mut buf[n..], off + n as u64)?;
        }
        decode_record(&buf[..n.min(len)], lsn)
    }

    /// Remove segments that hold only records below `keep_from`. The current
    /// segment is never removed.
    pub fn truncate_before(&self, keep_from: Lsn) -> Result<usize> {
        let doomed: Vec<Lsn> = {
            let starts = self.segments.starts();
            starts.windows(2).filter(|w| w[1] <= keep_from).map(|w| w[0]).collect()
        };
        if doomed.is_empty() {
            return Ok(0);
        }
        let bytes_before = self.segments.disk_bytes();
        for &s in &doomed {
            self.segments.forget(s);
            self.storage.remove(&segment_name(s))?;
        }
        log::debug!(
            "log truncated: {} segments removed ({} bytes), the log now starts at LSN {} (needed from LSN {keep_from})",
            doomed.len(),
            bytes_before.saturating_sub(self.segments.disk_bytes()),
            self.segments.starts().first().copied().unwrap_or(keep_from)
        );
        Ok(doomed.len())
    }

    /// True if `truncate_before(keep_from)` would remove a segment (no I/O).
    pub fn would_truncate_before(&self, keep_from: Lsn) -> bool {
        self.segments.second_start().is_some_and(|s| s <= keep_from)
    }

    /// Bytes held by segment files (for the bounded-log check and stats; no I/O).
    pub fn disk_bytes(&self) -> u64 {
        self.segments.disk_bytes()
    }
}
