//! The writer's flushing: `append` never writes, a full buffer is flushed by
//! `flush_if_over`, a record taken by a flush leader is read without waiting
//! for its write, and a flush in a no-flush zone is caught (eviction's
//! excepted).

use std::io;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

use super::no_flush::NoLogFlush;
use super::segments::Segments;
use super::*;
use crate::failstop::FailStop;
use crate::page::PageOp;
use crate::storage::{SimStorage, Storage, StorageFile};
use crate::types::{PageId, TxnId};

/// Storage whose log writes wait while the gate is closed.
struct Gated {
    sim: Arc<SimStorage>,
    gate: Arc<Gate>,
}

#[derive(Default)]
struct Gate {
    /// (closed, writers waiting)
    state: Mutex<(bool, usize)>,
    cv: Condvar,
}

struct GatedFile {
    file: Arc<dyn StorageFile>,
    gate: Arc<Gate>,
}

impl Gate {
    fn set_closed(&self, closed: bool) {
        self.state.lock().0 = closed;
        self.cv.notify_all();
    }
    fn pass(&self) {
        let mut s = self.state.lock();
        s.1 += 1;
        self.cv.notify_all();
        while s.0 {
            self.cv.wait(&mut s);
        }
        s.1 -= 1;
    }
    fn wait_for_writer(&self) {
        let mut s = self.state.lock();
        while s.1 == 0 {
            self.cv.wait(&mut s);
        }
    }
}

impl Storage for Gated {
    fn open(&self, name: &str) -> io::Result<Arc<dyn StorageFile>> {
        let file = self.sim.open(name)?;
        Ok(Arc::new(GatedFile { file, gate: self.gate.clone() }))
    }
    fn remove(&self, name: &str) -> io::Result<()> {
        self.sim.remove(name)
    }
    fn list(&self) -> io::Result<Vec<String>> {
        self.sim.list()
    }
    fn sync_dir(&self) -> io::Result<()> {
        self.sim.sync_dir()
    }
}

impl StorageFile for GatedFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.file.read_at(buf, offset)
    }
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.gate.pass();
        self.file.write_all_at(buf, offset)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.file.sync_data()
    }
    fn len(&self) -> io::Result<u64> {
        self.file.len()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }
}

fn new_wal(storage: Arc<dyn Storage>) -> Wal {
    let segments = Arc::new(Segments::discover(storage.clone()).unwrap());
    Wal::new(storage, 64 << 20, segments, LSN_START, LSN_START, FailStop::new())
}

/// A redo-only record of about `bytes` bytes.
fn record(wal: &Wal, bytes: usize) -> Lsn {
    let part =
        PagePart { page_id: PageId(7), op: PageOp::InitOverflow { next: PageId::NONE, data: vec![0xab; bytes] } };
    wal.append(
        &RecordHeader { prev_lsn: Lsn::NONE, txn_id: TxnId(1), undo_next_lsn: Lsn::NONE },
        &Body::Redo { parts: vec![part] },
    )
    .unwrap()
}

#[test]
fn append_never_writes_and_a_full_buffer_is_flushed_by_flush_if_over() {
    let sim = Arc::new(SimStorage::new(1));
    let wal = new_wal(sim.clone());
    let writes = sim.stats().writes;
    for _ in 0..20 {
        record(&wal, 512 << 10);
    }
    // 10 MiB appended: nothing written, the buffer holds it all.
    assert_eq!(sim.stats().writes, writes);
    assert!(wal.wants_flush());
    assert!(wal.counters.buffer_high_water.load(Ordering::Relaxed) >= 10 << 20);
    assert!(wal.flush_if_over().unwrap());
    assert_eq!(wal.durable_lsn(), wal.end_lsn());
    assert!(!wal.wants_flush());
    assert!(!wal.flush_if_over().unwrap());
    assert_eq!(wal.counters.size_flushes.load(Ordering::Relaxed), 1);
}

#[test]
fn a_record_taken_by_a_flush_leader_is_read_before_it_is_written() {
    let sim = Arc::new(SimStorage::new(2));
    let gate = Arc::new(Gate::default());
    let wal = Arc::new(new_wal(Arc::new(Gated { sim, gate: gate.clone() })));
    let first = record(&wal, 100);
    let lsn = record(&wal, 3000);
    gate.set_closed(true);
    let leader = {
        let wal = wal.clone();
        std::thread::spawn(move || wal.flush_all())
    };
    // The leader took the buffer and waits to write it.
    gate.wait_for_writer();
    assert!(wal.durable_lsn() <= first);
    let (tx, rx) = mpsc::channel();
    {
        let wal = wal.clone();
        std::thread::spawn(move || {
            let _ = tx.send((wal.read_record(first), wal.read_record(lsn)));
        });
    }
    let (a, b) = rx.recv_timeout(Duration::from_secs(20)).expect("the read waited for the flush");
    assert_eq!(a.unwrap().lsn, first);
    assert_eq!(b.unwrap().lsn, lsn);
    gate.set_closed(false);
    leader.join().unwrap().unwrap();
    // Written now: read from its segment.
    assert_eq!(wal.read_record(lsn).unwrap().lsn, lsn);
}

#[test]
fn a_flush_in_a_no_flush_zone_is_caught_but_an_eviction_s_is_not() {
    let wal = new_wal(Arc::new(SimStorage::new(3)));
    let lsn = record(&wal, 100);
    let r = {
        let _zone = NoLogFlush::enter();
        // Nothing to wait for: not a flush.
        wal.flush_to(wal.durable_lsn() - 1).unwrap();
        // A debug build asserts; any build counts.
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| wal.flush_to(lsn)))
    };
    assert_eq!(r.is_err(), cfg!(debug_assertions));
    assert_eq!(wal.counters.flushes_in_no_flush_zone.load(Ordering::Relaxed), 1);
    let lsn = record(&wal, 100);
    {
        let _zone = NoLogFlush::enter();
        wal.flush_for_eviction(lsn).unwrap();
    }
    assert!(wal.durable_lsn() > lsn);
    assert_eq!(wal.counters.flushes_in_no_flush_zone.load(Ordering::Relaxed), 1);
}

/// A log whose group commit leaders wait `wait` for their siblings, however
/// fast the last flush was (SimStorage's are microseconds).
fn group_wal(seed: u64, wait: Duration) -> Arc<Wal> {
    let mut wal = new_wal(Arc::new(SimStorage::new(seed)));
    wal.set_group_wait(wait, wait);
    Arc::new(wal)
}

#[test]
fn a_commit_leader_waits_for_the_committer_its_last_flush_served() {
    let wal = group_wal(4, Duration::from_secs(20));
    // This thread commits once: the flush serves it alone.
    let first = record(&wal, 100);
    wal.flush_commit(first).unwrap();
    let syncs = wal.counters.syncs.load(Ordering::Relaxed);
    // Another thread commits and leads the next flush: it waits for this one.
    let other = {
        let wal = wal.clone();
        std::thread::spawn(move || {
            let lsn = record(&wal, 100);
            wal.flush_commit(lsn).unwrap();
            lsn
        })
    };
    let t0 = std::time::Instant::now();
    while wal.counters.group_waits.load(Ordering::Relaxed) == 0 {
        assert!(t0.elapsed() < Duration::from_secs(20), "the other thread led a flush without waiting");
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(wal.counters.syncs.load(Ordering::Relaxed), syncs, "the leader synced before its sibling came");
    let mine = record(&wal, 100);
    wal.flush_commit(mine).unwrap();
    let theirs = other.join().unwrap();
    assert!(wal.durable_lsn() > mine.max(theirs));
    // One sync made both commits durable.
    assert_eq!(wal.counters.syncs.load(Ordering::Relaxed), syncs + 1);
    assert_eq!(wal.counters.group_waits.load(Ordering::Relaxed), 1);
}

#[test]
fn a_thread_committing_alone_never_waits() {
    let wal = group_wal(5, Duration::from_secs(20));
    let syncs = wal.counters.syncs.load(Ordering::Relaxed);
    for _ in 0..20 {
        let lsn = record(&wal, 100);
        wal.flush_commit(lsn).unwrap();
        assert!(wal.durable_lsn() > lsn);
    }
    assert_eq!(wal.counters.group_waits.load(Ordering::Relaxed), 0);
    assert_eq!(wal.counters.syncs.load(Ordering::Relaxed), syncs + 20);
    // Nor do flushes other than commits, from any thread.
    let other = {
        let wal = wal.clone();
        std::thread::spawn(move || {
            record(&wal, 100);
            wal.flush_all().unwrap()
        })
    };
    other.join().unwrap();
    assert_eq!(wal.counters.group_waits.load(Ordering::Relaxed), 0);
}

#[test]
fn a_wait_that_nobody_joins_ends_and_the_next_leads_skip_it() {
    let wal = group_wal(6, Duration::from_millis(30));
    // Another thread commits once and never again.
    {
        let wal = wal.clone();
        std::thread::spawn(move || wal.flush_commit(record(&wal, 100)).unwrap()).join().unwrap();
    }
    let lsn = record(&wal, 100);
    wal.flush_commit(lsn).unwrap();
    assert!(wal.durable_lsn() > lsn);
    assert_eq!(wal.counters.group_waits.load(Ordering::Relaxed), 1);
    // Each lead by a new thread expects the thread served before it, which
    // never comes back: the next GROUP_WAIT_SKIPS leads skip the wait.
    let commit_in_new_thread = || {
        let wal = wal.clone();
        std::thread::spawn(move || {
            let lsn = record(&wal, 100);
            wal.flush_commit(lsn).unwrap();
            assert!(wal.durable_lsn() > lsn);
        })
        .join()
        .unwrap()
    };
    for _ in 0..GROUP_WAIT_SKIPS {
        commit_in_new_thread();
    }
    assert_eq!(wal.counters.group_waits.load(Ordering::Relaxed), 1);
    // Then one waits again.
    commit_in_new_thread();
    assert_eq!(wal.counters.group_waits.load(Ordering::Relaxed), 2);
}

/// Small flushes zero-fill the segment ahead of the log's end, 1 MiB at a
/// time, refilled once less than half of it is left, never past the file's
/// length and never over a written byte; a large flush does not; the log
/// reads back whole.
#[test]
fn small_flushes_zero_fill_the_segment_ahead_and_large_ones_do_not() {
    let sim = Arc::new(SimStorage::new(3));
    let seg_size = 4u64 << 20;
    let segments = Arc::new(Segments::discover(sim.clone()).unwrap());
    let wal = Wal::new(sim.clone(), seg_size, segments, LSN_START, LSN_START, FailStop::new());
    sim.set_trace(100_000);
    let zero_writes = |sim: &SimStorage| -> Vec<(u64, u64)> {
        let t = sim.trace();
        t.iter().filter(|e| e.call == "write" && e.len > 100_000).map(|e| (e.offset, e.len)).collect()
    };
    // Small commits of about 400 bytes: the first zero-fills 1 MiB ahead.
    let mut lsns = Vec::new();
    for _ in 0..10 {
        lsns.push(record(&wal, 400));
        wal.flush_all().unwrap();
    }
    let first = zero_writes(&sim);
    assert_eq!(first.len(), 1, "{first:?}");
    let written = wal.end_lsn() - LSN_START;
    assert!(first[0].0 < written.min(4096) + 1024 && first[0].0 + first[0].1 > written + (1 << 19), "{first:?}");
    // Past half of it, the next small flush fills ahead again.
    while wal.end_lsn() - LSN_START < (1 << 19) + 8192 {
        lsns.push(record(&wal, 400));
        wal.flush_all().unwrap();
    }
    let second = zero_writes(&sim);
    assert_eq!(second.len(), 2, "{second:?}");
    assert!(second[1].0 >= first[0].0 + first[0].1 - 1, "zeros over written bytes: {second:?}");
    // A large flush (a bulk load's) writes no zeros.
    record(&wal, 200 << 10);
    wal.flush_all().unwrap();
    let big = zero_writes(&sim);
    assert!(big.iter().filter(|&&(_, len)| len > 150 << 10 && len < 250 << 10).count() == 1, "{big:?}");
    assert_eq!(big.len(), 3, "only the large flush's own write: {big:?}");
    // Up to the segment's end, never past it.
    while wal.end_lsn() - LSN_START < seg_size - (300 << 10) {
        record(&wal, 64 << 10);
        wal.flush_all().unwrap();
    }
    for _ in 0..20 {
        record(&wal, 400);
        wal.flush_all().unwrap();
    }
    let seg = segment_name(LSN_START);
    assert_eq!(sim.file_contents(&seg).unwrap().len() as u64, seg_size, "a segment keeps its length");
    for lsn in lsns {
        assert!(matches!(wal.read_record(lsn).unwrap().body, Body::Redo { .. }));
    }
}
