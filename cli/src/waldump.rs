//! `waldump`: decode the log segment files of a directory, like PostgreSQL's
//! pg_waldump. Reads the files directly (never `Db::open`), so it writes
//! nothing and works on a database that is open elsewhere or needs recovery.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::path::Path;

use ariesdb::internals::{decode_record, parse_segment_name, Lsn};

use crate::util::{list_files, require_db, size, CliError};

pub struct Filter {
    pub txn: Option<u64>,
    pub page: Option<u32>,
    pub kind: Option<String>,
    pub from: Option<u64>,
    pub to: Option<u64>,
}

const KINDS: [&str; 9] = ["Update", "Clr", "Redo", "Commit", "Abort", "End", "CkptBegin", "CkptEnd", "SegEnd"];

/// A `fmt::Write` that keeps the first word of what is written and then stops
/// the formatting (so naming a page op never formats a whole page image).
struct FirstWord(String);

impl fmt::Write for FirstWord {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for c in s.chars() {
            if c.is_alphanumeric() || c == '_' {
                self.0.push(c);
            } else {
                return Err(fmt::Error);
            }
        }
        Ok(())
    }
}

fn first_word(args: fmt::Arguments<'_>) -> String {
    let mut w = FirstWord(String::new());
    let _ = fmt::write(&mut w, args);
    w.0
}

#[derive(Default)]
struct KindTotal {
    count: u64,
    bytes: u64,
}

pub fn run(dir: &Path, f: Filter, summary_only: bool) -> Result<(), CliError> {
    require_db(dir, true)?;
    let kind_filter = match f.kind.as_deref() {
        None => None,
        Some(k) => match KINDS.iter().find(|n| n.eq_ignore_ascii_case(k)) {
            Some(n) => Some(*n),
            None => return Err(CliError::Other(format!("unknown record kind {k:?}; kinds are: {}", KINDS.join(", ")))),
        },
    };
    let segments: BTreeMap<u64, String> = list_files(dir)?
        .into_iter()
        .filter_map(|(name, _)| parse_segment_name(&name).map(|s| (s.get(), name)))
        .collect();
    if segments.is_empty() {
        return Err(CliError::Missing(format!("{} holds no log segments (wal-*.log)", dir.display())));
    }
    let mut out = std::io::stdout().lock();
    if !summary_only {
        writeln!(
            out,
            "{:>12} {:>12} {:>6} {:<9} {:>7} {:>12}  pages (id:op)",
            "LSN", "prev_lsn", "txn", "kind", "len", "undo_next"
        )?;
    }
    let mut totals: BTreeMap<&'static str, KindTotal> = BTreeMap::new();
    let (mut shown, mut read) = (0u64, 0u64);
    let mut end_note = String::new();
    let mut next_seg = segments.keys().next().copied();
    'segments: while let Some(start) = next_seg.take() {
        let name = &segments[&start];
        let data = std::fs::read(dir.join(name))?;
        let mut pos = 0usize;
        loop {
            let lsn = start + pos as u64;
            let rec = match data.get(pos..).map(|b| decode_record(b, Lsn(lsn))) {
                Some(Ok(r)) => r,
                _ => {
                    end_note = format!(
                        "end of valid records at LSN {lsn} in {name} (byte {pos} of {}); \
                         what follows is unused preallocated space or a torn tail, which is normal",
                        size(data.len() as u64)
                    );
                    break 'segments;
                }
            };
            read += 1;
            pos += rec.len as usize;
            let kind_dbg = first_word(format_args!("{:?}", rec.body.kind()));
            let kind: &'static str = KINDS.iter().find(|n| **n == kind_dbg).copied().unwrap_or("?");
            let parts = rec.body.parts();
            let keep = f.txn.is_none_or(|t| t == rec.txn_id.get())
                && f.page.is_none_or(|p| parts.iter().any(|x| x.page_id.get() == p))
                && kind_filter.is_none_or(|k| k == kind)
                && f.from.is_none_or(|l| rec.lsn.get() >= l)
                && f.to.is_none_or(|l| rec.lsn.get() < l);
            if keep {
                shown += 1;
                let t = totals.entry(kind).or_default();
                t.count += 1;
                t.bytes += u64::from(rec.len);
                if !summary_only {
                    let pages: Vec<String> = parts
                        .iter()
                        .map(|p| format!("{}:{}", p.page_id, first_word(format_args!("{:?}", p.op))))
                        .collect();
                    let undo_next = if !rec.undo_next_lsn.is_none() || kind == "Clr" {
                        rec.undo_next_lsn.to_string()
                    } else {
                        "-".into()
                    };
                    writeln!(
                        out,
                        "{:>12} {:>12} {:>6} {:<9} {:>7} {:>12}  {}",
                        rec.lsn,
                        rec.prev_lsn,
                        rec.txn_id,
                        kind,
                        rec.len,
                        undo_next,
                        pages.join(" ")
                    )?;
                }
            }
            if kind == "SegEnd" {
                // The stream continues in the segment that starts right after.
                let next = start + pos as u64;
                if segments.contains_key(&next) {
                    next_seg = Some(next);
                } else {
                    end_note = format!("the log ends at LSN {next}: no segment file starts there");
                }
                continue 'segments;
            }
            if pos >= data.len() {
                end_note = format!("end of {name} at LSN {}", start + pos as u64);
                break 'segments;
            }
        }
    }
    writeln!(out)?;
    writeln!(out, "{} records read, {} shown; {end_note}", read, shown)?;
    writeln!(out, "{:<10} {:>10} {:>12}", "kind", "records", "bytes")?;
    let (mut n, mut b) = (0, 0);
    for k in KINDS {
        if let Some(t) = totals.get(k) {
            writeln!(out, "{:<10} {:>10} {:>12}", k, t.count, t.bytes)?;
            n += t.count;
            b += t.bytes;
        }
    }
    writeln!(out, "{:<10} {:>10} {:>12}", "total", n, b)?;
    Ok(())
}
