//! `waldump`: decode the log segment files of a directory, like PostgreSQL's
//! pg_waldump. Reads the files directly (never `Db::open`), so it writes
//! nothing and works on a database that is open elsewhere or needs recovery.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ariesdb::internals::{parse_segment_name, read_log};
use ariesdb::storage::{Storage, StorageFile};

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
    // Start LSN, length and name of every segment file.
    let segments: Vec<(u64, u64, String)> = list_files(dir)?
        .into_iter()
        .filter_map(|(name, len)| parse_segment_name(&name).map(|s| (s.get(), len, name)))
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
    let mut write_err: Option<std::io::Error> = None;
    // The library's reader, as recovery reads: it follows the segments and
    // tells a torn tail from damage.
    let (end, how, damage) = read_log(Arc::new(ReadOnlyDir(dir.to_path_buf())), |rec| {
        read += 1;
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
            if !summary_only && write_err.is_none() {
                let pages: Vec<String> =
                    parts.iter().map(|p| format!("{}:{}", p.page_id, first_word(format_args!("{:?}", p.op)))).collect();
                let undo_next = if !rec.undo_next_lsn.is_none() || kind == "Clr" {
                    rec.undo_next_lsn.to_string()
                } else {
                    "-".into()
                };
                let r = writeln!(
                    out,
                    "{:>12} {:>12} {:>6} {:<9} {:>7} {:>12}  {}",
                    rec.lsn,
                    rec.prev_lsn,
                    rec.txn_id,
                    kind,
                    rec.len,
                    undo_next,
                    pages.join(" ")
                );
                write_err = r.err();
            }
        }
        Ok(())
    })?;
    if let Some(e) = write_err {
        return Err(e.into());
    }
    writeln!(out)?;
    // The segment file the end falls in, and whether the file ends there too
    // (a segment cut to its records, as a backup leaves its log).
    let end_seg = segments.iter().filter(|(start, _, _)| *start <= end.get()).max();
    let file_ends_there = end_seg.is_some_and(|(start, len, _)| start + len == end.get());
    let place = match end_seg {
        Some((start, len, name)) => format!(" in {name} (byte {} of {})", end.get() - start, size(*len)),
        None => String::new(),
    };
    let end_note = match (damage, file_ends_there) {
        (true, _) => format!("DAMAGE: {how}"),
        (false, true) => format!("end of valid records at LSN {end}{place}, where the segment file ends"),
        (false, false) => format!(
            "end of valid records at LSN {end}{place}; what follows is unused preallocated space or a torn tail, \
             which is normal"
        ),
    };
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
    if damage {
        return Err(CliError::Damage(format!("the log is damaged: {how}")));
    }
    Ok(())
}

/// The files of a directory, read-only and without its lock: waldump reads
/// the log beside a process that has the database open. Every change is
/// refused.
struct ReadOnlyDir(PathBuf);

struct ReadOnlyFile(std::fs::File);

fn refused() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::ReadOnlyFilesystem, "waldump only reads")
}

impl Storage for ReadOnlyDir {
    fn open(&self, name: &str) -> std::io::Result<Arc<dyn StorageFile>> {
        Ok(Arc::new(ReadOnlyFile(std::fs::File::open(self.0.join(name))?)))
    }
    fn remove(&self, _: &str) -> std::io::Result<()> {
        Err(refused())
    }
    fn list(&self) -> std::io::Result<Vec<String>> {
        Ok(list_files(&self.0)
            .map_err(|e| std::io::Error::other(e.message().to_string()))?
            .into_iter()
            .map(|(n, _)| n)
            .collect())
    }
    fn sync_dir(&self) -> std::io::Result<()> {
        Err(refused())
    }
}

impl StorageFile for ReadOnlyFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
        std::os::unix::fs::FileExt::read_at(&self.0, buf, offset)
    }
    fn write_all_at(&self, _: &[u8], _: u64) -> std::io::Result<()> {
        Err(refused())
    }
    fn sync_data(&self) -> std::io::Result<()> {
        Err(refused())
    }
    fn len(&self) -> std::io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }
    fn set_len(&self, _: u64) -> std::io::Result<()> {
        Err(refused())
    }
}
