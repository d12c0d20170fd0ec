//! get, put, delete, scan, checkpoint, compact, backup: each opens the
//! database, does one transaction or one operation, and closes it cleanly.
//! All but put open only a database that exists (`Db::open_existing`).

use std::io::Write;
use std::ops::Bound;
use std::path::Path;

use ariesdb::DATA_FILE;

use crate::util::{open, open_or_create, parse_bytes, show, size, CliError};

pub fn get(dir: &Path, key: &str, hex: bool) -> Result<(), CliError> {
    let key = parse_bytes(key, hex, "key")?;
    let db = open(dir)?;
    let tx = db.begin()?;
    let v = tx.get(&key)?;
    tx.commit()?;
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

/// The smallest key greater than every key starting with `p` (None: no bound).
fn prefix_end(p: &[u8]) -> Option<Vec<u8>> {
    let mut e = p.to_vec();
    while let Some(last) = e.pop() {
        if last < 0xff {
            e.push(last + 1);
            return Some(e);
        }
    }
    None
}

pub fn scan(dir: &Path, a: ScanArgs) -> Result<(), CliError> {
    let mut start: Option<Vec<u8>> = a.start.as_deref().map(|s| parse_bytes(s, a.hex, "start")).transpose()?;
    let mut end: Option<Vec<u8>> = a.end.as_deref().map(|s| parse_bytes(s, a.hex, "end")).transpose()?;
    if let Some(p) = a.prefix.as_deref() {
        let p = parse_bytes(p, a.hex, "prefix")?;
        if start.as_ref().is_none_or(|s| *s < p) {
            start = Some(p.clone());
        }
        if let Some(pe) = prefix_end(&p) {
            if end.as_ref().is_none_or(|e| *e > pe) {
                end = Some(pe);
            }
        }
    }
    let db = open(dir)?;
    let mut rows: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    {
        let tx = db.begin()?;
        let empty = matches!((&start, &end), (Some(s), Some(e)) if s >= e);
        if !empty {
            let lo = start.as_deref().map_or(Bound::Unbounded, Bound::Included);
            let hi = end.as_deref().map_or(Bound::Unbounded, Bound::Excluded);
            let scan = tx.scan::<(Bound<&[u8]>, Bound<&[u8]>)>((lo, hi))?;
            // Forward with a limit: stop early. Reverse: the library has no
            // backward scan yet, so read the range and reverse it.
            let take = if a.reverse { usize::MAX } else { a.limit.unwrap_or(usize::MAX) };
            for item in scan.take(take) {
                rows.push(item?);
            }
        }
        tx.commit()?;
    }
    db.close()?;
    if a.reverse {
        rows.reverse();
        rows.truncate(a.limit.unwrap_or(usize::MAX));
    }
    let mut out = std::io::stdout().lock();
    for (k, v) in &rows {
        writeln!(out, "{}\t{}", show(k, a.hex), show(v, a.hex))?;
    }
    Ok(())
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
    let r = db.backup(dest)?;
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
