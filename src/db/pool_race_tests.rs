//! Review tests for the sharded page table: stress runs (`REVIEW_SECS` per
//! case, 4 by default) that failed before the fixes of the review commit.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Db;
use crate::error::Error;
use crate::options::Options;
use crate::page::PageRef;
use crate::storage::SimStorage;
use crate::types::{Lsn, PageId};

fn opts() -> Options {
    Options::default()
        .buffer_pool_pages(crate::MIN_BUFFER_POOL_PAGES)
        .background_writer(false)
        .checkpoint_interval_bytes(0)
}

/// The next of a xorshift sequence (Marsaglia 2003) from `x`.
fn xorshift(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

/// A database of a few hundred pages, everything written back.
fn filled() -> Db {
    let db = Db::open_with(Arc::new(SimStorage::new(7)), opts()).unwrap();
    let mut tx = db.begin().unwrap();
    for i in 0..3000u32 {
        tx.put(format!("key{i:06}").as_bytes(), [i as u8; 200]).unwrap();
    }
    tx.commit().unwrap();
    db.inner.wal.flush_all().unwrap();
    db.inner.pool.flush_dirty(Lsn::MAX, usize::MAX).unwrap();
    db
}

/// Readers only: `pinned` frames stay pinned by one thread, `threads`
/// threads fetch and unpin one page at a time. At most `pinned + threads`
/// frames are ever pinned, fewer than the pool's 24, so BufferPoolFull is
/// spurious.
fn spurious_full(pinned: usize, threads: usize, secs: u64) -> (u64, u64) {
    let db = filled();
    let inner = &db.inner;
    let page_count = inner.tree().meta().unwrap().page_count;
    assert!(page_count > 100, "{page_count}");
    let _r = inner.tree_latch.for_read(&inner.pool, &inner.wal).unwrap();
    let held: Vec<_> = (0..pinned as u32).map(|i| inner.pool.fetch(PageId(2 + 2 * i)).unwrap()).collect();
    let fulls = AtomicU64::new(0);
    let fetches = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        for t in 0..threads as u64 {
            let (fulls, fetches, stop) = (&fulls, &fetches, &stop);
            s.spawn(move || {
                let _r = inner.tree_latch.for_read(&inner.pool, &inner.wal).unwrap();
                let mut x = 0x9E37_79B9_7F4A_7C15u64.wrapping_mul(t + 1);
                while !stop.load(Ordering::Relaxed) {
                    let x = xorshift(&mut x);
                    let pid = PageId(2 + (x % u64::from(page_count - 2)) as u32);
                    fetches.fetch_add(1, Ordering::Relaxed);
                    match inner.pool.fetch(pid) {
                        Ok(h) => drop(h),
                        Err(Error::BufferPoolFull { .. }) => {
                            fulls.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => panic!("{e}"),
                    }
                }
            });
        }
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(secs) {
            std::thread::sleep(Duration::from_millis(50));
        }
        stop.store(true, Ordering::Relaxed);
    });
    drop(held);
    (fulls.into_inner(), fetches.into_inner())
}

#[test]
fn readers_get_no_spurious_buffer_pool_full() {
    let secs = std::env::var("REVIEW_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(4);
    let mut bad = Vec::new();
    for (pinned, threads) in [(16, 3), (18, 2), (20, 2)] {
        let (fulls, fetches) = spurious_full(pinned, threads, secs);
        eprintln!("pinned {pinned}, {threads} threads: {fulls} BufferPoolFull in {fetches} fetches");
        if fulls > 0 {
            bad.push(format!(
                "pinned {pinned}, {threads} threads: {fulls} spurious BufferPoolFull in {fetches} fetches"
            ));
        }
    }
    assert!(bad.is_empty(), "{bad:?}");
}

/// A checkpoint's dirty page table (taken under the tree latch) while a
/// write-back runs without it: no entry may have rec_lsn NONE (redo would
/// start at LSN 0, before the log).
#[test]
fn dirty_page_table_never_has_rec_lsn_none() {
    let secs = std::env::var("REVIEW_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(4);
    let db = Db::open_with(Arc::new(SimStorage::new(9)), opts().buffer_pool_pages(256)).unwrap();
    let inner = &db.inner;
    let stop = AtomicBool::new(false);
    let nones = AtomicU64::new(0);
    let tables = AtomicU64::new(0);
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut i = 0u32;
            while !stop.load(Ordering::Relaxed) {
                let mut tx = db.begin().unwrap();
                for _ in 0..20 {
                    i = i.wrapping_mul(1_103_515_245).wrapping_add(12345);
                    tx.put(format!("k{:05}", i % 20000).as_bytes(), [1u8; 60]).unwrap();
                }
                tx.commit().unwrap();
            }
        });
        s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                inner.pool.flush_dirty(Lsn::MAX, usize::MAX).unwrap();
            }
        });
        s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                let _w = inner.tree_latch.exclusive();
                let d = inner.pool.dirty_pages();
                tables.fetch_add(1, Ordering::Relaxed);
                if d.iter().any(|&(_, l)| l.is_none()) {
                    nones.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        std::thread::sleep(Duration::from_secs(secs));
        stop.store(true, Ordering::Relaxed);
    });
    let (nones, tables) = (nones.into_inner(), tables.into_inner());
    eprintln!("{nones} dirty page tables with rec_lsn NONE of {tables}");
    assert_eq!(nones, 0, "{nones} dirty page tables with rec_lsn NONE of {tables}");
}

/// The pool's count of dirty frames follows the flags through changes,
/// evictions of dirty frames (a pool of 24 frames), rollbacks, write-backs
/// and reloads; a write-back pass over a clean pool writes nothing.
#[test]
fn dirty_frame_count_follows_the_flags() {
    let db = filled();
    let pool = &db.inner.pool;
    assert_eq!(pool.dirty_frame_count(), 0);
    assert_eq!(pool.dirty_flags_set(), 0);
    for round in 0..6u32 {
        let mut tx = db.begin().unwrap();
        for i in (round..3000).step_by(7) {
            tx.put(format!("key{i:06}").as_bytes(), [round as u8; 150]).unwrap();
        }
        if round % 3 == 2 {
            tx.abort().unwrap();
        } else {
            tx.commit().unwrap();
        }
        assert!(pool.dirty_frame_count() > 0, "round {round}");
        assert_eq!(pool.dirty_frame_count(), pool.dirty_flags_set(), "round {round}");
        if round % 2 == 1 {
            db.inner.wal.flush_all().unwrap();
            pool.flush_dirty(Lsn::MAX, 5).unwrap();
            assert_eq!(pool.dirty_frame_count(), pool.dirty_flags_set(), "round {round}");
        }
    }
    db.inner.wal.flush_all().unwrap();
    pool.flush_dirty(Lsn::MAX, usize::MAX).unwrap();
    assert_eq!(pool.dirty_frame_count(), 0);
    assert_eq!(pool.dirty_flags_set(), 0);
    assert_eq!(pool.flush_dirty(Lsn::MAX, usize::MAX).unwrap(), 0);
    // Reads reload evicted pages clean.
    let snap = db.begin_read().unwrap();
    assert_eq!(snap.get(b"key000001").unwrap().map(|v| v.len()), Some(150));
    assert_eq!(pool.dirty_frame_count(), 0);
}

/// Readers of random pages in a pool of 24 frames, so that frames change
/// pages all the time under the hints: every fetch must return the page
/// asked for, whole (its header names it), through a hint or the table.
#[test]
fn hint_hits_never_return_another_page() {
    let secs = std::env::var("REVIEW_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(4);
    let db = filled();
    let inner = &db.inner;
    let page_count = inner.tree().meta().unwrap().page_count;
    let hint_hits = inner.pool.hint_hit_count();
    let fetches = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        for t in 0..3u64 {
            let (fetches, stop) = (&fetches, &stop);
            s.spawn(move || {
                let _r = inner.tree_latch.for_read(&inner.pool, &inner.wal).unwrap();
                let mut x = 0x2545_F491_4F6C_DD1Du64.wrapping_mul(t + 1);
                while !stop.load(Ordering::Relaxed) {
                    let x = xorshift(&mut x);
                    // Half the fetches go to 8 hot pages, so that hints hit.
                    let span = if x & 1 == 0 { 8 } else { u64::from(page_count - 2) };
                    let pid = PageId(2 + ((x >> 1) % span) as u32);
                    match inner.pool.fetch(pid) {
                        Ok(h) => {
                            let g = h.read();
                            assert_eq!(g.page_id(), pid, "fetched page {pid}, got the bytes of another");
                        }
                        Err(Error::BufferPoolFull { .. }) => {}
                        Err(e) => panic!("{e}"),
                    }
                    fetches.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        std::thread::sleep(Duration::from_secs(secs));
        stop.store(true, Ordering::Relaxed);
    });
    let hint_hits = inner.pool.hint_hit_count() - hint_hits;
    eprintln!("{} fetches, {hint_hits} through a hint", fetches.load(Ordering::Relaxed));
    assert!(hint_hits > 0, "no fetch went through a hint");
}

/// A writer that pins a clean frame through its hint after an eviction
/// pinned it (and read it clean) but before the eviction marks it CLAIMED,
/// and that changes the page and lets go in that window: the eviction must
/// not reuse the frame, or the change is lost (the page is read back from
/// storage without it, and its frame's dirty flag is simply cleared).
#[test]
fn an_eviction_keeps_a_change_made_through_a_hint_before_its_claim() {
    let db = filled();
    let pool = &db.inner.pool;
    let page_count = db.inner.tree().meta().unwrap().page_count;
    // The page changed and its bytes after the change.
    type Changed = Option<(PageId, Vec<u8>)>;
    let changed: Arc<parking_lot::Mutex<Changed>> = Arc::default();
    let c = changed.clone();
    pool.set_claim_hook(Box::new(move |pool, page| {
        // The writer, between the evictor's pin and its claim: a hit
        // through the hint (no lock, so it runs here, in the evictor's
        // thread, while the evictor holds the page's shard).
        let Some(h) = pool.fetch_by_hint(page) else {
            return false;
        };
        let mut g = h.write();
        let last = g.len() - 1;
        g[last] ^= 0xff;
        let fpi_lsn = g.fpi_lsn();
        h.mark_dirty(fpi_lsn);
        *c.lock() = Some((page, g.to_vec()));
        drop(g);
        drop(h);
        true
    }));
    // Misses that evict clean frames until the hook has run.
    for pid in 2..page_count {
        if changed.lock().is_some() {
            break;
        }
        drop(pool.fetch(PageId(pid)).unwrap());
    }
    let (page, image) = changed.lock().take().expect("no clean frame was claimed with its hint set");
    let h = pool.fetch(page).unwrap();
    let same = **h.read() == image[..];
    assert!(h.is_dirty() && same, "the change to page {page} made before the claim of its frame was lost");
    // Undo the change, so that the tree stays whole for the drop.
    let mut g = h.write();
    let last = g.len() - 1;
    g[last] ^= 0xff;
}

/// A background write-back pass looks at a bounded number of frames, from
/// where the last one stopped: passes over a part of the pool each write
/// back only the dirty pages in their part, and together, wrapping around,
/// all of them.
#[test]
fn background_passes_go_round_the_pool_a_part_at_a_time() {
    let db = filled();
    let pool = &db.inner.pool;
    let mut tx = db.begin().unwrap();
    for i in (0..3000u32).step_by(3) {
        tx.put(format!("key{i:06}").as_bytes(), [9; 200]).unwrap();
    }
    tx.commit().unwrap();
    db.inner.wal.flush_all().unwrap();
    let frames = pool.frame_count();
    let part = frames / 4 + 1;
    pool.set_background_scan_frames(part);
    let dirty = pool.dirty_frame_count();
    assert!(dirty > 8, "the puts dirtied {dirty} frames");
    let mut passes = 0;
    while pool.dirty_frame_count() > 0 {
        let before = pool.dirty_frame_count();
        let written = pool.flush_dirty_some(Lsn::MAX, usize::MAX).unwrap();
        assert!(written <= part, "a pass over {part} frames wrote {written} pages");
        assert_eq!(pool.dirty_frame_count(), before - written);
        passes += 1;
        assert!(passes <= 4, "four passes of {part} frames cover the {frames} frames");
    }
    assert!(passes >= 2, "{dirty} dirty frames in {passes} pass of {part} frames");
    // Pages younger than the bound stay dirty.
    let mut tx = db.begin().unwrap();
    tx.put(b"key000001", [1; 200]).unwrap();
    tx.commit().unwrap();
    db.inner.wal.flush_all().unwrap();
    for _ in 0..4 {
        assert_eq!(pool.flush_dirty_some(Lsn(1), usize::MAX).unwrap(), 0);
    }
    assert!(pool.dirty_frame_count() > 0);
}
