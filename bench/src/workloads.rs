//! What the child processes run: W1-W7 on one loaded database, the W8 writer
//! that dies, and the W8 recovery. Every result is printed as one JSON line
//! on stdout; checks run outside the timers and fail the child.

use std::io::Write;
use std::ops::Bound;
use std::path::Path;
use std::time::Instant;

use crate::engines::{is_durable, Config, Engine, Res, Session};
use crate::keys::{key, value, Rng, KEY_LEN, VALUE_LEN};

/// Seed of the keys and values of W1-W7.
const SEED_LOAD: u64 = 1;
/// Seed of the random choices (which keys W4 and W5 read).
const SEED_PICK: u64 = 2;
/// Seed of the keys and values of W8.
pub const SEED_W8: u64 = 8;
/// W8 writes its pairs in this many transactions.
pub const W8_TXNS: u64 = 100;
/// Entries read per read transaction (W4: gets; W5: 10 scans of 100).
const READS_PER_TXN: u64 = 1000;
const SCAN_LEN: usize = 100;

/// Every size of the run; quick mode is a tenth of each.
#[derive(Clone, Copy, Debug)]
pub struct Sizes {
    pub n: u64,
    pub w2_txns: u64,
    pub w3_txns: u64,
    pub w3_batch: u64,
    pub w5_scans: u64,
    pub w7_threads: u64,
    pub w7_txns_per_thread: u64,
}

impl Sizes {
    pub fn new(quick: bool) -> Sizes {
        let full = Sizes {
            n: 1_000_000,
            w2_txns: 1000,
            w3_txns: 100,
            w3_batch: 1000,
            w5_scans: 10_000,
            w7_threads: 8,
            w7_txns_per_thread: 250,
        };
        if quick {
            Sizes {
                n: full.n / 10,
                w2_txns: full.w2_txns / 10,
                w3_txns: full.w3_txns / 10,
                w5_scans: full.w5_scans / 10,
                w7_txns_per_thread: full.w7_txns_per_thread / 10,
                ..full
            }
        } else {
            full
        }
    }
}

/// Print one result line for the parent.
pub fn emit(engine: &str, metric: &str, value: f64, unit: &str, extra: serde_json::Value) {
    let mut line = serde_json::json!({ "engine": engine, "metric": metric, "value": value, "unit": unit });
    if let (Some(obj), serde_json::Value::Object(more)) = (line.as_object_mut(), extra) {
        obj.extend(more);
    }
    let out = std::io::stdout();
    let mut out = out.lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn rate(engine: &str, metric: &str, ops: u64, t0: Instant, unit: &str) -> f64 {
    let secs = t0.elapsed().as_secs_f64();
    let r = ops as f64 / secs;
    emit(engine, metric, r, unit, serde_json::json!({ "ops": ops, "secs": secs }));
    eprintln!("  [{engine}] {metric}: {ops} ops in {secs:.3} s = {r:.0} {unit}");
    r
}

fn check(ok: bool, what: impl FnOnce() -> String) -> Res<()> {
    if ok {
        Ok(())
    } else {
        Err(format!("CHECK FAILED: {}", what()).into())
    }
}

/// Bytes allocated on disk by every file under `dir` (st_blocks), and the
/// sum of their lengths.
pub fn disk_bytes(dir: &Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let (mut allocated, mut apparent) = (0, 0);
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if let Ok(m) = e.metadata() {
                if m.is_dir() {
                    let (a, b) = disk_bytes(&e.path());
                    allocated += a;
                    apparent += b;
                } else {
                    allocated += m.blocks() * 512;
                    apparent += m.len();
                }
            }
        }
    }
    (allocated, apparent)
}

fn emit_disk(engine: &str, metric: &str, dir: &Path) {
    let (allocated, apparent) = disk_bytes(dir);
    emit(engine, metric, allocated as f64, "bytes", serde_json::json!({ "apparent_bytes": apparent }));
}

/// Ordered full scan in read transactions of 10,000 entries: the count, and
/// that keys strictly ascend and values have the written length.
fn full_scan_check(s: &mut dyn Session, expected: u64, when: &str) -> Res<()> {
    let mut last: Option<Vec<u8>> = None;
    let mut count = 0u64;
    let mut problem: Option<String> = None;
    loop {
        let mut prev = last.clone();
        let mut got = 0;
        s.read(&mut |r| {
            let start = match &last {
                Some(k) => Bound::Excluded(k.as_slice()),
                None => Bound::Unbounded,
            };
            got = r.scan(start, 10_000, &mut |k, v| {
                if problem.is_none() {
                    if prev.as_deref().is_some_and(|p| p >= k) {
                        problem = Some(format!("keys not strictly ascending at entry {}", count + 1));
                    } else if k.len() != KEY_LEN || v.len() != VALUE_LEN {
                        problem =
                            Some(format!("entry {} has a {}-byte key, {}-byte value", count + 1, k.len(), v.len()));
                    }
                }
                prev = Some(k.to_vec());
                count += 1;
            })?;
            Ok(())
        })?;
        last = prev;
        if got == 0 {
            break;
        }
    }
    check(problem.is_none(), || format!("full scan {when}: {}", problem.clone().unwrap_or_default()))?;
    check(count == expected, || format!("full scan {when}: {count} rows, expected {expected}"))?;
    eprintln!("  full scan {when}: {count} rows in ascending order");
    Ok(())
}

/// Read sampled keys of `seed` in `range`, each `present` or not; values
/// must equal what was written.
fn sample_check(s: &mut dyn Session, seed: u64, lo: u64, hi: u64, samples: u64, present: bool, when: &str) -> Res<()> {
    let mut rng = Rng::new(seed ^ 0x5A5A ^ lo);
    let mut bad: Option<String> = None;
    let mut buf = Vec::new();
    s.read(&mut |r| {
        for _ in 0..samples {
            let i = lo + rng.below(hi - lo);
            let found = r.get(&key(seed, i), &mut buf)?;
            if bad.is_none() && found != present {
                bad = Some(format!("key #{i} {}", if present { "missing" } else { "still present" }));
            } else if bad.is_none() && found && buf != value(seed, i) {
                bad = Some(format!("key #{i} has a wrong value"));
            }
        }
        Ok(())
    })?;
    check(bad.is_none(), || format!("sampled reads {when}: {}", bad.clone().unwrap_or_default()))
}

fn put_range(s: &mut dyn Session, seed: u64, lo: u64, hi: u64) -> Res<()> {
    s.write(&mut |w| {
        for i in lo..hi {
            w.put(&key(seed, i), &value(seed, i))?;
        }
        Ok(())
    })
}

fn reads(s: &mut dyn Session, rng: &mut Rng, n: u64, count: u64) -> Res<u64> {
    let mut found = 0;
    let mut buf = Vec::with_capacity(VALUE_LEN);
    let mut done = 0;
    while done < count {
        let batch = READS_PER_TXN.min(count - done);
        s.read(&mut |r| {
            for _ in 0..batch {
                if r.get(&key(SEED_LOAD, rng.below(n)), &mut buf)? && buf.len() == VALUE_LEN {
                    found += 1;
                }
            }
            Ok(())
        })?;
        done += batch;
    }
    Ok(found)
}

/// W1-W7 in order on one database in `dir`.
pub fn run_main(cfg: &Config, dir: &Path, sz: Sizes, wanted: &[String]) -> Res<()> {
    let name = cfg.name.as_str();
    let want = |w: &str| wanted.iter().any(|x| x == w);
    let eng = Engine::open(cfg, dir, true)?;
    let mut s = eng.session()?;
    let n = sz.n;
    let unit_commit = if is_durable(name) { "durable commits/s" } else { "commits/s (not durable)" };

    // W1: the load every later workload reads.
    let t0 = Instant::now();
    put_range(&mut *s, SEED_LOAD, 0, n)?;
    rate(name, "W1", n, t0, "puts/s");
    let mut rows = n;
    full_scan_check(&mut *s, rows, "after W1")?;
    sample_check(&mut *s, SEED_LOAD, 0, n, 10_000, true, "after W1")?;
    emit_disk(name, "disk_after_W1", dir);
    let mut next = n; // next unused key index

    if want("W2") {
        let before = eng.aries_stats();
        let t0 = Instant::now();
        for i in next..next + sz.w2_txns {
            put_range(&mut *s, SEED_LOAD, i, i + 1)?;
        }
        rate(name, "W2", sz.w2_txns, t0, unit_commit);
        fsyncs_per_commit(&eng, name, before, "W2");
        sample_check(&mut *s, SEED_LOAD, next, next + sz.w2_txns, 100, true, "after W2")?;
        next += sz.w2_txns;
        rows += sz.w2_txns;
    }
    if want("W3") {
        let t0 = Instant::now();
        for t in 0..sz.w3_txns {
            let lo = next + t * sz.w3_batch;
            put_range(&mut *s, SEED_LOAD, lo, lo + sz.w3_batch)?;
        }
        let puts = sz.w3_txns * sz.w3_batch;
        rate(name, "W3", puts, t0, "puts/s");
        sample_check(&mut *s, SEED_LOAD, next, next + puts, 1000, true, "after W3")?;
        next += puts;
        rows += puts;
    }
    if want("W4") {
        let mut rng = Rng::new(SEED_PICK);
        let t0 = Instant::now();
        let found = reads(&mut *s, &mut rng, n, n)?;
        rate(name, "W4", n, t0, "reads/s");
        check(found == n, || format!("W4 found {found} of {n} loaded keys"))?;
    }
    if want("W4x2") {
        let mut sessions = vec![eng.session()?, eng.session()?];
        let t0 = Instant::now();
        let found: Res<u64> = std::thread::scope(|scope| {
            let hs: Vec<_> = sessions
                .iter_mut()
                .enumerate()
                .map(|(t, s2)| {
                    scope.spawn(move || -> Res<u64> {
                        let mut rng = Rng::new(SEED_PICK + 100 + t as u64);
                        reads(&mut **s2, &mut rng, n, n / 2)
                    })
                })
                .collect();
            let mut total = 0;
            for h in hs {
                total += h.join().map_err(|_| "W4x2 thread panicked")??;
            }
            Ok(total)
        });
        let found = found?;
        rate(name, "W4x2", n / 2 * 2, t0, "reads/s");
        check(found == n / 2 * 2, || format!("W4x2 found {found} of {} loaded keys", n / 2 * 2))?;
        drop(sessions);
    }
    if want("W5") {
        let mut rng = Rng::new(SEED_PICK + 5);
        let scans_per_txn = READS_PER_TXN / SCAN_LEN as u64;
        let mut entries = 0u64;
        let mut short = 0u64;
        let t0 = Instant::now();
        let mut done = 0;
        while done < sz.w5_scans {
            let batch = scans_per_txn.min(sz.w5_scans - done);
            s.read(&mut |r| {
                for _ in 0..batch {
                    let k = key(SEED_LOAD, rng.below(n));
                    let got = r.scan(Bound::Included(&k), SCAN_LEN, &mut |_, v| {
                        if v.len() == VALUE_LEN {
                            entries += 1;
                        }
                    })?;
                    if got < SCAN_LEN {
                        short += 1;
                    }
                }
                Ok(())
            })?;
            done += batch;
        }
        rate(name, "W5", sz.w5_scans, t0, "scans/s");
        // Only a start among the last 100 keys may return fewer than 100.
        check(short * 1000 <= sz.w5_scans, || format!("W5: {short} of {} scans returned fewer than 100", sz.w5_scans))?;
        eprintln!("  W5 read {entries} entries ({short} short scans near the end of the key space)");
    }
    if want("W6") {
        let half = n / 2;
        let mut deleted = 0u64;
        let t0 = Instant::now();
        s.write(&mut |w| {
            for i in 0..half {
                if w.delete(&key(SEED_LOAD, i))? {
                    deleted += 1;
                }
            }
            Ok(())
        })?;
        rate(name, "W6", half, t0, "deletes/s");
        check(deleted == half, || format!("W6 deleted {deleted} of {half} keys"))?;
        rows -= half;
        full_scan_check(&mut *s, rows, "after W6")?;
        sample_check(&mut *s, SEED_LOAD, 0, half, 1000, false, "after W6 (deleted)")?;
        sample_check(&mut *s, SEED_LOAD, half, n, 1000, true, "after W6 (kept)")?;
        emit_disk(name, "disk_after_W6", dir);
    }
    if want("W7") {
        let threads = sz.w7_threads;
        let per = sz.w7_txns_per_thread;
        let mut sessions = Vec::new();
        for _ in 0..threads {
            sessions.push(eng.session()?);
        }
        let before = eng.aries_stats();
        let base = next;
        let t0 = Instant::now();
        std::thread::scope(|scope| -> Res<()> {
            let hs: Vec<_> = sessions
                .iter_mut()
                .enumerate()
                .map(|(t, s2)| {
                    scope.spawn(move || -> Res<()> {
                        let lo = base + t as u64 * per;
                        for i in lo..lo + per {
                            put_range(&mut **s2, SEED_LOAD, i, i + 1)?;
                        }
                        Ok(())
                    })
                })
                .collect();
            for h in hs {
                h.join().map_err(|_| "W7 thread panicked")??;
            }
            Ok(())
        })?;
        rate(name, "W7", threads * per, t0, unit_commit);
        fsyncs_per_commit(&eng, name, before, "W7");
        drop(sessions);
        sample_check(&mut *s, SEED_LOAD, base, base + threads * per, 200, true, "after W7")?;
    }
    drop(s);
    eng.close()
}

fn fsyncs_per_commit(eng: &Engine, name: &str, before: Option<ariesdb::Stats>, w: &str) {
    if let (Some(b), Some(a)) = (before, eng.aries_stats()) {
        let commits = a.commits - b.commits;
        let syncs = a.wal_syncs - b.wal_syncs;
        let v = syncs as f64 / commits.max(1) as f64;
        let extra =
            serde_json::json!({ "wal_syncs": syncs, "commits": commits, "wal_flushes": a.wal_flushes - b.wal_flushes });
        emit(name, &format!("fsyncs_per_commit_{w}"), v, "fsyncs/commit", extra);
        eprintln!("  [{name}] {w}: {syncs} log fsyncs for {commits} commits");
    }
}

/// W8 writer: N pairs in 100 transactions, automatic checkpoints off; prints
/// "committed T" after each commit returns, then dies without any shutdown.
pub fn run_w8_writer(cfg: &Config, dir: &Path, sz: Sizes) -> Res<()> {
    let eng = Engine::open(cfg, dir, true)?;
    let mut s = eng.session()?;
    let per = sz.n / W8_TXNS;
    for t in 0..W8_TXNS {
        put_range(&mut *s, SEED_W8, t * per, (t + 1) * per)?;
        let out = std::io::stdout();
        let mut out = out.lock();
        writeln!(out, "committed {t}")?;
        out.flush()?;
    }
    std::process::abort();
}

/// W8 recovery: time open + first read, then check what survived: whole
/// transactions only, a prefix of them, and for durable engines every
/// transaction the writer saw committed (so also the last).
pub fn run_w8_recover(cfg: &Config, dir: &Path, sz: Sizes, label: &str, committed: u64) -> Res<()> {
    let name = cfg.name.as_str();
    let per = sz.n / W8_TXNS;
    let last = committed.checked_sub(1);
    let probe = last.unwrap_or(0) * per; // first key of the last committed transaction
    let t0 = Instant::now();
    let eng = Engine::open(cfg, dir, false)?;
    let mut s = eng.session()?;
    let mut buf = Vec::new();
    let mut first_found = false;
    s.read(&mut |r| {
        first_found = r.get(&key(SEED_W8, probe), &mut buf)?;
        Ok(())
    })?;
    let secs = t0.elapsed().as_secs_f64();
    emit(name, label, secs, "s", serde_json::json!({ "first_read_found": first_found }));
    eprintln!("  [{name}] {label}: open + first read {secs:.3} s");

    // Count the surviving keys of each transaction and check their values.
    let mut present = vec![0u64; W8_TXNS as usize];
    let mut wrong = 0u64;
    for (t, p) in present.iter_mut().enumerate() {
        let lo = t as u64 * per;
        let mut i = lo;
        while i < lo + per {
            let hi = (i + READS_PER_TXN).min(lo + per);
            s.read(&mut |r| {
                for j in i..hi {
                    if r.get(&key(SEED_W8, j), &mut buf)? {
                        *p += 1;
                        if buf != value(SEED_W8, j) {
                            wrong += 1;
                        }
                    }
                }
                Ok(())
            })?;
            i = hi;
        }
    }
    let whole = present.iter().take_while(|&&c| c == per).count() as u64;
    check(wrong == 0, || format!("{label}: {wrong} recovered values differ from what was written"))?;
    check(present.iter().all(|&c| c == 0 || c == per), || {
        format!("{label}: a transaction survived in part: {present:?}")
    })?;
    check(present[whole as usize..].iter().all(|&c| c == 0), || {
        format!("{label}: the surviving transactions are not a prefix: {present:?}")
    })?;
    if is_durable(name) {
        check(whole >= committed, || {
            format!(
                "{label}: the writer saw {committed} commits return, only {whole} transactions survived \
                 (the last committed transaction is lost)"
            )
        })?;
    }
    emit(
        name,
        &format!("{label}_txns_recovered"),
        whole as f64,
        "transactions",
        serde_json::json!({ "committed": committed }),
    );
    eprintln!("  [{name}] {label}: {whole} of {committed} committed transactions recovered, values checked");
    drop(s);
    eng.close()
}
