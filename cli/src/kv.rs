//! get, put, delete, scan, checkpoint, compact, backup: each opens the
//! database, does one transaction or one operation, and closes it cleanly.
//! get and scan read a snapshot of a read-only open (`Db::open_read_only`:
//! recovery in memory, nothing written); the others open for writing, and
//! all but put only a database that exists (`Db::open_existing`).

use std::io::Write;
use std::ops::Bound;
use std::path::Path;

use ariesdb::{Db, DATA_FILE};

use crate::util::{open, open_or_create, parse_bytes, show, size, CliError};

pub fn get(dir: &Path, key: &str, hex: bool) -> Result<(), CliError> {
    let key = parse_bytes(key, hex, "key")?;
    let db = Db::open_read_only(dir)?;
    let v = db.begin_read()?.get(&key)?;
    db.close()?;
    match v {
        Some(v) => {
            println!("{}", show(&v, hex));
            Ok(())
        }
        None => Err(CliError::Other(format!("key {} not found", show(&key, hex)))),
    }
}

pub fn put(dir: &Path, key: &str, value: &str, hex: bool) -> Result<(), CliError> {
    let key = parse_bytes(key, hex, "key")?;
    let value = parse_bytes(value, hex, "value")?;
    let db = open_or_create(dir)?;
    let mut tx = db.begin()?;
    tx.put(&key, &value)?;
    tx.commit()?;
    db.close()?;
    Ok(())
}

pub fn delete(dir: &Path, key: &str, hex: bool) -> Result<(), CliError> {
    let key = parse_bytes(key, hex, "key")?;
    let db = open(dir)?;
    let mut tx = db.begin()?;
    let existed = tx.delete(&key)?;
    tx.commit()?;
    db.close()?;
    if existed {
        println!("deleted {}", show(&key, hex));
    } else {
        println!("{} was not there", show(&key, hex));
    }
    Ok(())
}

pub struct ScanArgs {
    pub prefix: Option<String>,
    pub start: Option<String>,
    pub end: Option<String>,
    pub reverse: bool,
    pub limit: Option<usize>,
    pub hex: bool,
}

pub fn scan(dir: &Path, a: ScanArgs) -> Result<(), CliError> {
    let start: Option<Vec<u8>> = a.start.as_deref().map(|s| parse_bytes(s, a.hex, "start")).transpose()?;
    let end: Option<Vec<u8>> = a.end.as_deref().map(|s| parse_bytes(s, a.hex, "end")).transpose()?;
    let mut lo = start.map_or(Bound::Unbounded, Bound::Included);
    let mut hi = end.map_or(Bound::Unbounded, Bound::Excluded);
    if let Some(p) = a.prefix.as_deref() {
        // The intersection of the given range and the prefix's.
        let (plo, phi) = ariesdb::prefix_range(parse_bytes(p, a.hex, "prefix")?);
        lo = later_start(lo, plo);
        hi = earlier_end(hi, phi);
    }
    let db = Db::open_read_only(dir)?;
    {
        let snap = db.begin_read()?;
        let mut scan = match a.reverse {
            false => snap.scan_range((lo, hi))?,
            true => snap.scan_range_rev((lo, hi))?,
        };
        let mut out = std::io::stdout().lock();
        let mut left = a.limit.unwrap_or(usize::MAX);
        while left > 0 {
            let Some((k, v)) = scan.next_entry()? else { break };
            writeln!(out, "{}\t{}", show(k, a.hex), show(v, a.hex))?;
            left -= 1;
        }
    }
    db.close()?;
    Ok(())
}

/// The later of two start bounds (Included(k) starts before Excluded(k)).
fn later_start(a: Bound<Vec<u8>>, b: Bound<Vec<u8>>) -> Bound<Vec<u8>> {
    match (&a, &b) {
        (Bound::Unbounded, _) => b,
        (_, Bound::Unbounded) => a,
        (Bound::Included(x) | Bound::Excluded(x), Bound::Included(y) | Bound::Excluded(y)) => {
            match x.cmp(y).then((matches!(a, Bound::Excluded(_))).cmp(&matches!(b, Bound::Excluded(_)))) {
                std::cmp::Ordering::Less => b,
                _ => a,
            }
        }
    }
}

/// The earlier of two end bounds (Excluded(k) ends before Included(k)).
fn earlier_end(a: Bound<Vec<u8>>, b: Bound<Vec<u8>>) -> Bound<Vec<u8>> {
    match (&a, &b) {
        (Bound::Unbounded, _) => b,
        (_, Bound::Unbounded) => a,
        (Bound::Included(x) | Bound::Excluded(x), Bound::Included(y) | Bound::Excluded(y)) => {
            match x.cmp(y).then((matches!(b, Bound::Excluded(_))).cmp(&matches!(a, Bound::Excluded(_)))) {
                std::cmp::Ordering::Greater => b,
                _ => a,
            }
        }
    }
}

pub fn checkpoint(dir: &Path) -> Result<(), CliError> {
    let db = open(dir)?;
    let r = db.recovery_report();
    if r.losers > 0 || r.redone > 0 {
        println!("opening ran recovery: {} page changes redone, {} transactions rolled back", r.redone, r.losers);
    }
    db.checkpoint()?;
    db.close()?;
    println!("checkpoint taken (the log before it is no longer needed for recovery)");
    Ok(())
}

pub fn compact(dir: &Path) -> Result<(), CliError> {
    let before = std::fs::metadata(dir.join(DATA_FILE)).map(|m| m.len()).unwrap_or(0);
    let db = open(dir)?;
    let pages = db.compact()?;
    db.close()?;
    let after = std::fs::metadata(dir.join(DATA_FILE))?.len();
    println!("{DATA_FILE}: {} before, {} after ({pages} pages)", size(before), size(after));
    Ok(())
}

pub fn backup(dir: &Path, dest: &Path) -> Result<(), CliError> {
    let db = open(dir)?;
    // The library's I/O errors name no path; say which side failed.
    let r = db.backup(dest).map_err(|e| match e {
        ariesdb::Error::Io(e) => CliError::Other(format!("backup to {} failed: I/O error: {e}", dest.display())),
        e => e.into(),
    })?;
    db.close()?;
    println!(
        "{}: a copy of {} with {} entries ({} of keys and values, {} transactions); it was closed cleanly",
        dest.display(),
        dir.display(),
        r.entries,
        size(r.bytes),
        r.transactions
    );
    Ok(())
}
