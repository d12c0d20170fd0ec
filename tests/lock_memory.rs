//! A transaction writing 1,000,000 keys keeps the lock table bounded (lock
//! escalation), measured from outside the engine: a counting global
//! allocator tracks the bytes live on the heap, and the growth between the
//! 100,000th and the 1,000,000th key must stay small. Without escalation the
//! lock table alone grows by tens of MB over that stretch.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use ariesdb::{Db, Options};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size as isize - layout.size() as isize, Ordering::Relaxed);
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const KEYS: u32 = 1_000_000;

fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

#[test]
fn a_million_key_transaction_keeps_the_lock_table_bounded() {
    let dir = std::env::temp_dir().join(format!("ariesdb-lockmem-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let db = Db::open_path_with(&dir, Options::default()).unwrap();
    let mut tx = db.begin().unwrap();
    let mut at_200k = 0;
    let mut peak = 0;
    for i in 0..KEYS {
        tx.put(format!("key{i:08}").as_bytes(), b"v").unwrap();
        if i == 200_000 {
            at_200k = live();
        }
        if i > 200_000 && i % 10_000 == 0 {
            peak = peak.max(live());
        }
    }
    let stats = db.stats();
    eprintln!(
        "heap: {at_200k} bytes live at 200k keys, peak {peak} up to 1M keys; locked_keys {}, escalations {}",
        stats.locked_keys, stats.lock_escalations
    );
    assert_eq!(stats.lock_escalations, 1, "{stats:?}");
    assert!(stats.locked_keys <= 1, "{stats:?}");
    // The buffer pool and caches are allocated by now. The log buffer and
    // its spare may still double, to at most 8 MiB each, while the log
    // writer falls behind (a loaded machine): bounded whatever the key count.
    // A lock or any other entry per key would take at least 26 bytes for
    // each of the 800k keys added, more than the 20 MiB allowed.
    let growth = peak - at_200k;
    assert!(growth < 20 << 20, "the heap grew by {growth} bytes from 200k to 1M keys");
    tx.commit().unwrap();
    let tx = db.begin().unwrap();
    assert_eq!(tx.get(format!("key{:08}", KEYS - 1).as_bytes()).unwrap(), Some(b"v".to_vec()));
    tx.commit().unwrap();
    db.close().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}
