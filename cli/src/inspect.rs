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

fn print_tree(r: &CheckReport) {
    println!("  keys              {}", r.keys);
    println!(
        "  tree height       {} (the bound for this many leaves and separators this long is {})",
        r.height, r.height_bound
    );
    println!(
        "  pages             {} in the file: {} leaf, {} inner, {} overflow, {} free, 2 header (master and meta)",
        r.page_count, r.leaves, r.inner, r.overflow, r.free
    );
    println!(
        "  average fill      {:.1}% of the usable bytes of leaf and inner pages ({} of {} bytes)",
        r.average_fill() * 100.0,
        r.tree_bytes_used,
        r.tree_bytes_capacity
    );
}

pub fn check(dir: &Path) -> Result<(), CliError> {
    let db = Db::open_read_only(dir)?;
    let r = db.check_report()?;
    println!("{}: check passed ({HOW})", dir.display());
    print_tree(&r);
    Ok(())
}

fn recovery_pending(r: &RecoveryReport) -> String {
    if r.losers == 0 && r.winners == 0 && r.redone == 0 && r.dirty_pages == 0 {
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
    let page_size = if r.page_count > 0 && data_len.is_multiple_of(r.page_count) {
        format!(", {} pages of {} bytes", r.page_count, data_len / r.page_count)
    } else {
        String::new()
    };
    println!("data file {DATA_FILE}: {}{page_size}", size(data_len));
    print_tree(&r);
    println!();
    let segs: Vec<(u64, &String, u64)> =
        files.iter().filter_map(|(n, l)| parse_segment_name(n).map(|s| (s.get(), n, *l))).collect();
    let seg_bytes: u64 = segs.iter().map(|s| s.2).sum();
    println!("log: {} segment file{}, {} on disk", segs.len(), if segs.len() == 1 { "" } else { "s" }, size(seg_bytes));
    for (start, name, len) in &segs {
        println!("  {name}  starts at LSN {start:>10}  {}", size(*len));
    }
    if let Some((first, _, _)) = segs.first() {
        println!(
            "  the log holds records from LSN {first} to LSN {} ({}); segment files are preallocated \
             at their full size, so the log takes more room than its records",
            rec.end_lsn,
            size(rec.end_lsn.saturating_sub(*first))
        );
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
