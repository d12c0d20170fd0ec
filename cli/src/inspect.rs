//! `check` and `stats`: they must not change a byte of the directory. They
//! open it with `Db::open_read_only`, which creates and writes nothing: it
//! opens every file read-only, locks the directory shared (so no writer runs
//! meanwhile; a database open elsewhere is exit 4), and runs recovery in
//! memory, so what they report is the recovered state, and `stats` says what
//! recovery is still pending on disk.

use std::path::Path;

use ariesdb::internals::parse_segment_name;
use ariesdb::{CheckReport, Db, RecoveryReport, DATA_FILE};

use crate::util::{list_files, size, CliError};

/// What the commands say about how they looked.
const HOW: &str = "opened read-only, recovery run in memory; the directory was not changed";

/// The data file's length in pages of `page_size`: whole pages, and the
/// bytes of a last page the file reaches only partly.
fn file_pages(data_len: u64, page_size: u32) -> (u64, u64) {
    let ps = u64::from(page_size.max(1));
    (data_len / ps, data_len % ps)
}

/// `data file data.db: 48.0 KiB, 12 pages of 4096 bytes`.
fn print_data_file(data_len: u64, page_size: u32) {
    let (whole, rest) = file_pages(data_len, page_size);
    let pages = if rest == 0 {
        format!("{whole} pages of {page_size} bytes")
    } else {
        let master = if whole == 0 { " (page 0 begins with the master record)" } else { "" };
        format!("{whole} whole pages of {page_size} bytes and {rest} bytes of page {whole}{master}")
    };
    println!("data file {DATA_FILE}: {}, {pages}", size(data_len));
}

/// The tree and its pages. The page count is the meta page's (after the
/// recovery in memory); the data file on disk may hold fewer pages (after a
/// crash, pages only the log has) or more (pages past the count are unused).
fn print_tree(r: &CheckReport, data_len: u64, pending: bool) {
    println!("  keys              {}", r.keys);
    println!(
        "  tree height       {} (the bound for this many leaves and separators this long is {})",
        r.height, r.height_bound
    );
    let (whole, rest) = file_pages(data_len, r.page_size);
    let in_file = whole + u64::from(rest > 0);
    let kinds = format!(
        "{} leaf, {} inner, {} overflow, {} free, 2 header (master and meta)",
        r.leaves, r.inner, r.overflow, r.free
    );
    if in_file == r.page_count && rest == 0 {
        println!("  pages             {} in the file: {kinds}", r.page_count);
    } else {
        println!("  pages             {} counted by the meta page: {kinds}", r.page_count);
        let pad = "                    ";
        if in_file < r.page_count {
            let missing = r.page_count - in_file;
            if pending {
                println!(
                    "{pad}the file's length covers {in_file} of them; recovery is pending and will write the other \
                     {missing} from the log"
                );
            } else {
                println!(
                    "{pad}the file's length covers {in_file} of them; the other {missing} are not in the file yet"
                );
            }
        } else if in_file > r.page_count {
            println!(
                "{pad}the file's length covers {in_file} pages; the {} past the meta page's count are unused",
                in_file - r.page_count
            );
        } else {
            println!("{pad}the file's length covers all of them, page {whole} only in part ({rest} bytes)");
        }
    }
    println!(
        "  average fill      {:.1}% of the usable bytes of leaf and inner pages ({} of {} bytes)",
        r.average_fill() * 100.0,
        r.tree_bytes_used,
        r.tree_bytes_capacity
    );
}

/// The length of the data file on disk (0 if it is missing).
fn data_file_len(dir: &Path) -> Result<u64, CliError> {
    match std::fs::metadata(dir.join(DATA_FILE)) {
        Ok(m) => Ok(m.len()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(e.into()),
    }
}

pub fn check(dir: &Path) -> Result<(), CliError> {
    let db = Db::open_read_only(dir)?;
    // Read under the lock the read-only open holds: no writer changes it.
    let data_len = data_file_len(dir)?;
    let r = db.check_report()?;
    println!("{}: check passed ({HOW})", dir.display());
    print_tree(&r, data_len, is_pending(&db.recovery_report()));
    Ok(())
}

/// Whether the open found anything to recover (the last shutdown was not clean).
fn is_pending(r: &RecoveryReport) -> bool {
    !(r.losers == 0 && r.winners == 0 && r.redone == 0 && r.dirty_pages == 0)
}

fn recovery_pending(r: &RecoveryReport) -> String {
    if !is_pending(r) {
        "no: the last shutdown was clean (nothing to redo or roll back)".to_string()
    } else {
        format!(
            "yes: the last shutdown was not clean; opening it will redo {} page changes \
             ({} dirty pages), roll back {} transactions and finish {} committed ones",
            r.redone, r.dirty_pages, r.losers, r.winners
        )
    }
}

pub fn stats(dir: &Path) -> Result<(), CliError> {
    let db = Db::open_read_only(dir)?;
    // Listed under the lock the read-only open holds: no writer changes them.
    let files = list_files(dir)?;
    let rec = db.recovery_report();
    let r = db.check_report()?;
    let data_len = files.iter().find(|(n, _)| n == DATA_FILE).map_or(0, |(_, l)| *l);
    println!("{} ({HOW})", dir.display());
    println!();
    print_data_file(data_len, r.page_size);
    print_tree(&r, data_len, is_pending(&rec));
    println!();
    let segs: Vec<(u64, &String, u64)> =
        files.iter().filter_map(|(n, l)| parse_segment_name(n).map(|s| (s.get(), n, *l))).collect();
    let seg_bytes: u64 = segs.iter().map(|s| s.2).sum();
    println!("log: {} segment file{}, {} on disk", segs.len(), if segs.len() == 1 { "" } else { "s" }, size(seg_bytes));
    for (start, name, len) in &segs {
        println!("  {name}  starts at LSN {start:>10}  {}", size(*len));
    }
    if let Some((first, _, _)) = segs.first() {
        let span = rec.end_lsn.saturating_sub(*first);
        let room = if seg_bytes > span {
            "; a segment file is preallocated at its full size when the log begins it, so the log takes more \
             room than its records"
        } else {
            ""
        };
        println!("  the log holds records from LSN {first} to LSN {} ({}){room}", rec.end_lsn, size(span));
    }
    println!();
    if rec.checkpoint_lsn == 0 {
        println!("last checkpoint: none yet (recovery reads the log from its start)");
    } else {
        println!("last checkpoint: begins at LSN {} (recovery starts its analysis there)", rec.checkpoint_lsn);
    }
    println!("recovery pending: {}", recovery_pending(&rec));
    Ok(())
}
