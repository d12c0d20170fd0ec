//! Sequential reading of the log for recovery, and the one subtle rule: telling
//! a torn tail from damage.
//!
//! After a power loss the unsynced end of the log may be partly written, in any
//! order, sector by sector. So a bad record followed by valid ones is not by
//! itself damage. It is damage when something proves the bad record had been
//! durable: a valid record (before or after it) whose `durable_lsn` is beyond
//! the bad record's LSN, or a master record that says the log was durable past
//! it. Then recovery fails with `Error::Corruption`; otherwise the log ends at
//! the bad record, and `ScanEnd::stale_until` says how far valid-looking stale
//! records reach, so the writer can erase them before appending.

use std::sync::Arc;

use super::record::*;
use super::segments::Segments;
use crate::error::{Error, Result};

use crate::storage::{read_full_at, StorageFile};
use crate::types::Lsn;

/// Where the log ends.
#[derive(Debug, Clone, Default)]
pub struct ScanEnd {
    /// LSN after the last valid record: where appending continues.
    pub end_lsn: Lsn,
    /// Start of the segment `end_lsn` falls in (== end_lsn when a new segment must begin there).
    pub cur_seg: Lsn,
    /// Valid-looking stale records in the current segment reach up to here (to be zeroed).
    pub stale_until: Lsn,
    /// Segments after the current one (stale; to be removed).
    pub stale_segments: Vec<Lsn>,
    /// Records read.
    pub records: u64,
    /// Bytes of log read.
    pub bytes: u64,
}

/// Bytes a segment reader reads at once: its memory, unless one record is
/// larger (then the window grows to that record, at most `MAX_RECORD_LEN`).
pub const READ_CHUNK: usize = 1 << 20;

/// A window over one segment file: reads it in chunks of `READ_CHUNK`, so
/// recovery's memory is bounded by the chunk (or the largest record), not by
/// the segment size.
struct SegReader {
    file: Arc<dyn StorageFile>,
    /// The file's length.
    len: u64,
    /// File offset of `win[0]`.
    win_start: u64,
    win: Vec<u8>,
}

impl SegReader {
    fn new(file: Arc<dyn StorageFile>) -> Result<SegReader> {
        let len = file.len()?;
        Ok(SegReader { file, len, win_start: 0, win: Vec::new() })
    }

    /// Up to `want` bytes at offset `off` (fewer only at the end of the file).
    fn slice(&mut self, off: u64, want: usize) -> Result<&[u8]> {
        let end = off.saturating_add(want as u64).min(self.len);
        if off >= end {
            return Ok(&[]);
        }
        let win_end = self.win_start + self.win.len() as u64;
        if off < self.win_start || end > win_end {
            let n = usize::try_from((end - off).max(READ_CHUNK as u64).min(self.len - off))
                .map_err(|_| Error::corruption("wal", "log segment larger than memory"))?;
            self.win.clear();
            self.win.resize(n, 0);
            let got = read_full_at(&*self.file, &mut self.win, off)?;
            self.win.truncate(got);
            self.win_start = off;
            if (got as u64) < end - off {
                // The file shrank under us: treat what is missing as absent.
                self.len = off + got as u64;
            }
        }
        let a = (off - self.win_start) as usize;
        let b = ((end.min(self.win_start + self.win.len() as u64)) - self.win_start) as usize;
        Ok(&self.win[a..b])
    }

    /// The file's length.
    fn len(&self) -> u64 {
        self.len
    }

    /// The record at `lsn` (in the segment starting at `seg_start`), if one is
    /// there and valid.
    fn decode_at(&mut self, seg_start: Lsn, lsn: Lsn) -> Result<Option<LogRecord>> {
        let Some(off) = lsn.checked_sub(seg_start) else { return Ok(None) };
        let Some(len) = peek_len(self.slice(off, RECORD_HEADER_LEN)?, lsn) else { return Ok(None) };
        Ok(decode_record(self.slice(off, len)?, lsn).ok())
    }
}

/// Read the log from `from` to its end, calling `visit` for every record in
/// order. `must_reach` is a lower bound on the end that the caller knows was
/// durable (from the master record): ending before it is damage. Holds one
/// segment handle at a time.
/// `known_end`, when given, is where the log is known to end (a clean close,
/// or what analysis found): the scan stops there without looking past it.
pub fn scan(
    segments: &Segments,
    from: Lsn,
    must_reach: Lsn,
    known_end: Option<Lsn>,
    mut visit: impl FnMut(&LogRecord) -> Result<()>,
) -> Result<ScanEnd> {
    let Some((first, _)) = segments.locate(from) else {
        return Err(Error::corruption("wal", format!("the log segment holding LSN {from} is missing")));
    };
    let mut seg_start = first;
    let mut data = SegReader::new(segments.file(first)?)?;
    let mut pos = from;
    let mut max_durable = must_reach;
    let mut out = ScanEnd::default();
    loop {
        if known_end == Some(pos) {
            out.end_lsn = pos;
            out.cur_seg = seg_start;
            out.stale_until = pos;
            break;
        }
        let Some(rec) = data.decode_at(seg_start, pos)? else {
            // A bad or missing record: the end of the log, unless proven damaged.
            let (proof, stale_until) = look_ahead(segments, seg_start, &mut data, pos)?;
            if let Some(q) = proof {
                return Err(Error::corruption(
                    "wal",
                    format!("record at LSN {pos} is unreadable, but the record at LSN {q} shows it had been durable"),
                ));
            }
            out.end_lsn = pos;
            out.cur_seg = seg_start;
            out.stale_until = stale_until;
            break;
        };
        out.records += 1;
        out.bytes += rec.len as u64;
        max_durable = max_durable.max(rec.durable_lsn);
        visit(&rec)?;
        pos += rec.len as u64;
        if rec.body == Body::SegEnd {
            match segments.contains(pos) {
                true => {
                    seg_start = pos;
                    data = SegReader::new(segments.file(pos)?)?;
                }
                false => {
                    // The next segment is missing: the end of the log, unless a
                    // later segment proves the log went on durably.
                    if let Some(q) = proof_in_later_segments(segments, pos - 1, pos)? {
                        return Err(Error::corruption(
                            "wal",
                            format!(
                                "the log segment starting at LSN {pos} is missing, but LSN {q} shows it was durable"
                            ),
                        ));
                    }
                    out.end_lsn = pos;
                    out.cur_seg = pos;
                    out.stale_until = pos;
                    break;
                }
            }
        }
    }
    out.stale_segments = segments.starts_after(out.cur_seg);
    if max_durable > out.end_lsn {
        return Err(Error::corruption(
            "wal",
            format!("the log ends at LSN {} but was durable up to LSN {max_durable}", out.end_lsn),
        ));
    }
    Ok(out)
}

/// True if a valid record starts at `lsn` (false past the log's segments).
pub fn record_at(segments: &Segments, lsn: Lsn) -> Result<bool> {
    let Some((start, _)) = segments.locate(lsn) else { return Ok(false) };
    let mut data = SegReader::new(segments.file(start)?)?;
    if lsn - start + RECORD_HEADER_LEN as u64 > data.len() {
        return Ok(false);
    }
    Ok(data.decode_at(start, lsn)?.is_some())
}

/// Search past a bad record at `bad` for valid records. Returns the LSN of one
/// that proves the bad record had been durable (if any), and how far the
/// valid-looking records in the current segment reach.
fn look_ahead(segments: &Segments, seg_start: Lsn, data: &mut SegReader, bad: Lsn) -> Result<(Option<Lsn>, Lsn)> {
    let mut stale_until = bad;
    let step = RECORD_ALIGN as u64;
    let end = seg_start + data.len();
    let mut q = bad + step;
    while q + RECORD_HEADER_LEN as u64 <= end {
        if peek_len(data.slice(q - seg_start, RECORD_HEADER_LEN)?, q).is_some() {
            if let Some(rec) = data.decode_at(seg_start, q)? {
                if rec.durable_lsn > bad {
                    return Ok((Some(q), stale_until));
                }
                stale_until = stale_until.max(q + rec.len as u64);
            }
        }
        q += step;
    }
    Ok((proof_in_later_segments(segments, seg_start, bad)?, stale_until))
}

/// A valid record in a segment starting after `after` whose `durable_lsn` is
/// beyond `bad`: proof that the log was durable past `bad`.
fn proof_in_later_segments(segments: &Segments, after: Lsn, bad: Lsn) -> Result<Option<Lsn>> {
    for s in segments.starts_after(after) {
        let mut d = SegReader::new(segments.file(s)?)?;
        let mut q = s;
        while q + RECORD_HEADER_LEN as u64 <= s + d.len() {
            if let Some(rec) = d.decode_at(s, q)? {
                if rec.durable_lsn > bad {
                    return Ok(Some(q));
                }
            }
            q += RECORD_ALIGN as u64;
        }
    }
    Ok(None)
}
