//! The tree's shape after a load: loads KEYS random keys of KEY_LEN bytes with
//! VALUE_LEN-byte values (a fixed seed, random order, 100,000 per transaction)
//! on real files and prints height, its bound, pages by kind, average fill and
//! the data file's size; then deletes nine keys in ten, prints the same, and
//! compacts.
//!
//! cargo run --release --example tree_shape -- [KEYS] [KEY_LEN] [VALUE_LEN] [DIR]
//! (defaults: 1000000 24 150, a temporary directory)

use ariesdb::{Db, Options};

fn arg(n: usize, default: u64) -> u64 {
    std::env::args().nth(n).and_then(|s| s.parse().ok()).unwrap_or(default)
}

/// A deterministic 64-bit generator (splitmix64).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn key(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

fn report(db: &Db, dir: &std::path::Path, what: &str) -> Result<(), Box<dyn std::error::Error>> {
    let r = db.check_report()?;
    let file = std::fs::metadata(dir.join(ariesdb::DATA_FILE))?.len();
    println!(
        "{what}: {} keys, height {} (bound {}), {} leaves, {} inner, {} overflow, {} free pages, \
         average fill {:.3}, data file {:.1} MB ({} pages)",
        r.keys,
        r.height,
        r.height_bound,
        r.leaves,
        r.inner,
        r.overflow,
        r.free,
        r.average_fill(),
        file as f64 / 1e6,
        r.page_count
    );
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (keys, key_len, value_len) = (arg(1, 1_000_000), arg(2, 24) as usize, arg(3, 150) as usize);
    let dir = std::env::args()
        .nth(4)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join(format!("ariesdb-tree-shape-{}", std::process::id())));
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    let opts = Options::default().buffer_pool_pages(64 << 10).checkpoint_interval_bytes(256 << 20);
    let db = Db::open_path_with(&dir, opts)?;
    let mut rng = Rng(42);
    let all: Vec<Vec<u8>> = (0..keys).map(|_| rng.key(key_len)).collect();
    let value = vec![0xA5u8; value_len];
    for chunk in all.chunks(100_000) {
        let mut tx = db.begin()?;
        for k in chunk {
            tx.put(k, &value)?;
        }
        tx.commit()?;
    }
    let live = keys * (7 + key_len as u64 + value_len as u64 + 2);
    println!(
        "{keys} keys of {key_len} bytes, values of {value_len}: {:.1} MB of leaf cells and slots",
        live as f64 / 1e6
    );
    report(&db, &dir, "loaded")?;
    for chunk in all.chunks(100_000) {
        let mut tx = db.begin()?;
        for (i, k) in chunk.iter().enumerate() {
            if i % 10 != 0 {
                tx.delete(k)?;
            }
        }
        tx.commit()?;
    }
    report(&db, &dir, "nine in ten deleted")?;
    db.compact()?;
    report(&db, &dir, "compacted")?;
    db.close()?;
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
