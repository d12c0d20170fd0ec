//! Sequential reading of the log for recovery, and the one subtle rule:
//! telling a torn tail from damage.
//!
//! After a power loss the unsynced end of the log may be partly written, in
//! any order, sector by sector. So a bad record followed by valid ones is not
//! by itself damage. It is damage when something proves the bad record had
//! been durable. `scan` reads to the end and describes it as one `LogEnd`:
//!
//! - the ends of a sound log: `Known` (where the caller knew it ends),
//!   `TornTail` (a bad record nothing proves durable), `SegmentBoundary` (a
//!   `SegEnd` whose next segment was never made durable);
//! - damage, each variant naming its proof: `ProvenByLaterRecord` (a valid
//!   record after the bad one, in its segment or a later one, was appended
//!   when the log was durable past it), `MissingSegment` (a later segment's
//!   record proves the missing one durable), `ProvenByEarlierRecord` (a record
//!   read before the end says the log was durable past it),
//!   `ProvenByMaster` (the master record's `durable_lsn` is past it) and
//!   `MissingStart` (no segment holds the LSN the scan must start from).
//!
//! Invariants:
//! - Damage becomes an error in one place, `LogEnd::check`: an
//!   `Error::Corruption` whose text names the LSNs and what proved it. `scan`
//!   never returns a damage variant.
//! - Reading changes nothing. The valid-looking stale records past a torn
//!   tail (`LogEnd::stale_until`) and the segments past the end
//!   (`ScanEnd::stale_segments`) are erased by `Segments::erase_stale_tail`
//!   before the log appends anything, so they can never be read as log.
//! - Memory is bounded by `READ_CHUNK` (or the largest record), and one
//!   segment handle is held at a time.
//! - `scan` and `scan_views` find the same records and the same end: both
//!   check each record with `check_record`, which accepts exactly what
//!   `decode_record` accepts; `scan` then decodes it (redo), `scan_views`
//!   hands on a `RecordView`, its header and page ids (analysis).

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use super::record::*;
use super::segments::Segments;
use super::LSN_START;
use crate::error::{Error, Result};

use crate::storage::{read_full_at, StorageFile};
use crate::types::{Lsn, PageId};

/// How the log ended, with the LSNs that prove it. The first three variants
/// end a sound log; the others are damage (`is_damage`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogEnd {
    /// The log ends at `end`, where the caller knew it ends: a clean close,
    /// the end analysis found, or `LSN_START` for a database without log.
    Known {
        /// The end.
        end: Lsn,
    },
    /// No valid record at `end` and nothing proves one was durable there: a
    /// torn tail, cut at `end`. Valid-looking stale records in the same
    /// segment reach up to `stale_until` (== `end` if there are none).
    TornTail {
        /// The first LSN without a valid record: where appending continues.
        end: Lsn,
        /// Where the stale records after `end` in its segment end.
        stale_until: Lsn,
    },
    /// A `SegEnd` record ends its segment at `end`, no segment starts there,
    /// and nothing proves one was durable: the log ends at the boundary.
    SegmentBoundary {
        /// The start of the segment that was never made durable.
        end: Lsn,
    },
    /// Damage: the record at `bad` is unreadable, but the valid record at
    /// `proof` (later in the same segment or in a later one) was appended
    /// when the log was durable up to `durable` > `bad`.
    ProvenByLaterRecord {
        /// The unreadable record.
        bad: Lsn,
        /// The record that proves it had been durable.
        proof: Lsn,
        /// That record's `durable_lsn`.
        durable: Lsn,
    },
    /// Damage: the segment starting at `start` is missing, but the valid
    /// record at `proof` in a later segment was appended when the log was
    /// durable up to `durable` > `start`.
    MissingSegment {
        /// The start of the missing segment.
        start: Lsn,
        /// The record that proves it had been durable.
        proof: Lsn,
        /// That record's `durable_lsn`.
        durable: Lsn,
    },
    /// Damage: the log ends at `end`, but the record at `proof`, read before
    /// it, says the log was durable up to `durable` > `end`. (The writer never
    /// writes a `durable_lsn` past the record's own LSN, so only a record with
    /// a valid checksum and an impossible `durable_lsn` leads here.)
    ProvenByEarlierRecord {
        /// Where the readable log ends.
        end: Lsn,
        /// The record that says it went on.
        proof: Lsn,
        /// That record's `durable_lsn`.
        durable: Lsn,
    },
    /// Damage: the log ends at `end`, but the master record says it was
    /// durable up to `durable` > `end` (the `must_reach` given to `scan`).
    ProvenByMaster {
        /// Where the readable log ends.
        end: Lsn,
        /// The master record's `durable_lsn`.
        durable: Lsn,
    },
    /// Damage: no segment holds `from`, the LSN the scan must start from (the
    /// checkpoint the master record names, or the first LSN of the log).
    MissingStart {
        /// Where the scan had to start.
        from: Lsn,
    },
}

impl LogEnd {
    /// True for the variants that prove damage.
    pub fn is_damage(&self) -> bool {
        !matches!(self, LogEnd::Known { .. } | LogEnd::TornTail { .. } | LogEnd::SegmentBoundary { .. })
    }

    /// Where the readable log ends: for a sound log, where appending
    /// continues; for damage, the first LSN that could not be read.
    pub fn end_lsn(&self) -> Lsn {
        match *self {
            LogEnd::Known { end }
            | LogEnd::TornTail { end, .. }
            | LogEnd::SegmentBoundary { end }
            | LogEnd::ProvenByEarlierRecord { end, .. }
            | LogEnd::ProvenByMaster { end, .. } => end,
            LogEnd::ProvenByLaterRecord { bad, .. } => bad,
            LogEnd::MissingSegment { start, .. } => start,
            LogEnd::MissingStart { from } => from,
        }
    }

    /// Where the valid-looking stale records after the end reach, in the
    /// segment of the end (`end_lsn` if there are none).
    pub fn stale_until(&self) -> Lsn {
        match *self {
            LogEnd::TornTail { stale_until, .. } => stale_until,
            _ => self.end_lsn(),
        }
    }

    /// The one place where log damage becomes an error.
    ///
    /// # Errors
    /// `Error::Corruption` for a damage variant, its text naming the LSNs
    /// and what proved the damage.
    pub fn check(&self) -> Result<()> {
        match self.is_damage() {
            true => Err(Error::corruption("wal", self.to_string())),
            false => Ok(()),
        }
    }
}

impl fmt::Display for LogEnd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            LogEnd::Known { end } => write!(f, "the log ends at LSN {end}, where it was known to end"),
            LogEnd::TornTail { end, stale_until } => {
                write!(f, "the log ends at LSN {end}, a torn tail (stale records up to LSN {stale_until})")
            }
            LogEnd::SegmentBoundary { end } => {
                write!(f, "the log ends at LSN {end}, where a segment that was never durable would begin")
            }
            LogEnd::ProvenByLaterRecord { bad, proof, durable } => write!(
                f,
                "record at LSN {bad} is unreadable, but the record at LSN {proof} shows it had been durable \
                 (it was appended when the log was durable up to LSN {durable})"
            ),
            LogEnd::MissingSegment { start, proof, durable } => write!(
                f,
                "the log segment starting at LSN {start} is missing, but LSN {proof} shows it was durable \
                 (the record there was appended when the log was durable up to LSN {durable})"
            ),
            LogEnd::ProvenByEarlierRecord { end, proof, durable } => write!(
                f,
                "the log ends at LSN {end} but was durable up to LSN {durable}, says the record at LSN {proof}"
            ),
            LogEnd::ProvenByMaster { end, durable } => {
                write!(f, "the log ends at LSN {end} but was durable up to LSN {durable}, says the master record")
            }
            LogEnd::MissingStart { from } => write!(f, "the log segment holding LSN {from} is missing"),
        }
    }
}

/// What a scan found: how the log ended, and where the writer goes on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanEnd {
    /// How the log ended (from `scan`, never damage).
    pub how: LogEnd,
    /// Start of the segment the end falls in (== the end when a new segment
    /// must begin there).
    pub cur_seg: Lsn,
    /// Segments after the current one (stale; to be removed).
    pub stale_segments: Vec<Lsn>,
    /// Records read.
    pub records: u64,
    /// Bytes of log read.
    pub bytes: u64,
}

impl ScanEnd {
    /// The end of a database without log: nothing read, appending starts at
    /// `LSN_START` in a new segment.
    pub fn empty_log() -> ScanEnd {
        ScanEnd::stopped(LogEnd::Known { end: LSN_START }, LSN_START)
    }

    /// A scan that read nothing and stopped with `how`, in the segment
    /// starting at `cur_seg`.
    fn stopped(how: LogEnd, cur_seg: Lsn) -> ScanEnd {
        ScanEnd { how, cur_seg, stale_segments: Vec::new(), records: 0, bytes: 0 }
    }

    /// LSN after the last valid record: where appending continues.
    pub fn end_lsn(&self) -> Lsn {
        self.how.end_lsn()
    }
}

impl Default for ScanEnd {
    fn default() -> ScanEnd {
        ScanEnd::empty_log()
    }
}

/// Bytes a segment reader reads at once: its memory, unless one record is
/// larger (then the window grows to that record, at most `MAX_RECORD_LEN`).
pub const READ_CHUNK: usize = 1 << 20;

/// A window over one segment file: reads it in chunks of `READ_CHUNK`, so
/// recovery's memory is bounded by the chunk (or the largest record), not by
/// the segment size. The buffer is kept from chunk to chunk and from segment
/// to segment (`open`): it is allocated and zeroed once, not per chunk.
struct SegReader {
    file: Arc<dyn StorageFile>,
    /// The file's length.
    len: u64,
    /// File offset of `buf[0]`.
    win_start: u64,
    /// The window is `buf[..filled]`; the bytes after it are stale.
    filled: usize,
    buf: Vec<u8>,
    /// The page ids of the last record checked (`check_record`).
    page_ids: Vec<PageId>,
}

impl SegReader {
    fn new(file: Arc<dyn StorageFile>) -> Result<SegReader> {
        let len = file.len()?;
        Ok(SegReader { file, len, win_start: 0, filled: 0, buf: Vec::new(), page_ids: Vec::new() })
    }

    /// Go on in `file`, another segment, with the same buffers.
    fn open(&mut self, file: Arc<dyn StorageFile>) -> Result<()> {
        self.len = file.len()?;
        self.file = file;
        self.win_start = 0;
        self.filled = 0;
        Ok(())
    }

    /// Up to `want` bytes at offset `off` (fewer only at the end of the file).
    fn slice(&mut self, off: u64, want: usize) -> Result<&[u8]> {
        let r = self.fill(off, want)?;
        Ok(&self.buf[r])
    }

    /// Make the window hold up to `want` bytes at offset `off` (fewer only at
    /// the end of the file); where they are in `buf`.
    #[inline]
    fn fill(&mut self, off: u64, want: usize) -> Result<Range<usize>> {
        let end = off.saturating_add(want as u64).min(self.len);
        if off >= end {
            return Ok(0..0);
        }
        if off < self.win_start || end > self.win_start + self.filled as u64 {
            self.read_window(off, end)?;
        }
        let a = (off - self.win_start) as usize;
        let b = (end.min(self.win_start + self.filled as u64) - self.win_start) as usize;
        Ok(a..b)
    }

    /// Read the window from `off`: `READ_CHUNK` bytes, or up to `end` if that
    /// is further, or to the end of the file if that is nearer.
    fn read_window(&mut self, off: u64, end: u64) -> Result<()> {
        let n = usize::try_from((end - off).max(READ_CHUNK as u64).min(self.len - off))
            .map_err(|_| Error::corruption("wal", "log segment larger than memory"))?;
        if self.buf.len() < n {
            self.buf.resize(n, 0);
        }
        self.filled = 0;
        let got = read_full_at(&*self.file, &mut self.buf[..n], off)?;
        self.filled = got;
        self.win_start = off;
        if (got as u64) < end - off {
            // The file shrank under us: treat what is missing as absent.
            self.len = off + got as u64;
        }
        Ok(())
    }

    /// The file's length.
    fn len(&self) -> u64 {
        self.len
    }

    /// The first LSN from `from` on, in steps of `RECORD_ALIGN`, where a
    /// record header could be (`peek_len`) in this segment (starting at
    /// `seg_start`), if any: the positions a search past a bad record tries,
    /// looked at in the window, not read one by one.
    fn next_header(&mut self, seg_start: Lsn, from: Lsn) -> Result<Option<Lsn>> {
        let mut q = from;
        loop {
            let r = self.fill(q - seg_start, RECORD_HEADER_LEN)?;
            if r.len() < RECORD_HEADER_LEN {
                return Ok(None);
            }
            // Every position whose header lies in the window.
            let win = &self.buf[r.start..self.filled];
            for at in (0..=win.len() - RECORD_HEADER_LEN).step_by(RECORD_ALIGN) {
                if peek_len(&win[at..], q).is_some() {
                    return Ok(Some(q));
                }
                q += RECORD_ALIGN as u64;
            }
        }
    }

    /// The record at `lsn` (in the segment starting at `seg_start`), if one is
    /// there and valid (`check_record`).
    fn record_at(&mut self, seg_start: Lsn, lsn: Lsn) -> Result<Option<RecordView<'_>>> {
        let Some(off) = lsn.checked_sub(seg_start) else { return Ok(None) };
        let Some(len) = peek_len(self.slice(off, RECORD_HEADER_LEN)?, lsn) else { return Ok(None) };
        let r = self.fill(off, len)?;
        Ok(check_record(&self.buf[r], lsn, &mut self.page_ids).ok())
    }
}

/// Read the log from `from` to its end, calling `visit` for every record in
/// order, decoded, and say how it ended. `must_reach` is where the master
/// record says the log was durable up to: ending before it is damage.
/// `known_end`, when given, is where the log is known to end (a clean close,
/// or what analysis found): the scan stops there without looking past it.
/// Holds one segment handle at a time.
///
/// # Errors
/// `Error::Corruption` for damage (see `LogEnd::check`); an error of `visit`;
/// an I/O error.
pub fn scan(
    segments: &Segments,
    from: Lsn,
    must_reach: Lsn,
    known_end: Option<Lsn>,
    mut visit: impl FnMut(&LogRecord) -> Result<()>,
) -> Result<ScanEnd> {
    scan_views(segments, from, must_reach, known_end, |rec| visit(&rec.decode()?))
}

/// `scan`, but `visit` gets each record as a `RecordView`: its header, its
/// body left undecoded but for what is asked of it. Every record is checked
/// as `scan` checks it (`check_record`), so the two find the same records
/// and the same end; this one allocates nothing per record. For analysis,
/// which needs the header, the kind and the page ids.
///
/// # Errors
/// As `scan`.
pub fn scan_views(
    segments: &Segments,
    from: Lsn,
    must_reach: Lsn,
    known_end: Option<Lsn>,
    visit: impl FnMut(&RecordView<'_>) -> Result<()>,
) -> Result<ScanEnd> {
    let end = read_to_end(segments, from, must_reach, known_end, visit)?;
    end.how.check()?;
    Ok(end)
}

/// `scan_views`, but damage is returned as its `LogEnd` variant, not as an
/// error.
fn read_to_end(
    segments: &Segments,
    from: Lsn,
    must_reach: Lsn,
    known_end: Option<Lsn>,
    mut visit: impl FnMut(&RecordView<'_>) -> Result<()>,
) -> Result<ScanEnd> {
    let Some((first, _)) = segments.locate(from) else {
        return Ok(ScanEnd::stopped(LogEnd::MissingStart { from }, from));
    };
    let mut out = ScanEnd::stopped(LogEnd::Known { end: from }, first);
    let mut data = SegReader::new(segments.file(first)?)?;
    let mut pos = from;
    // The record read that says the log was durable the furthest: (LSN, durable_lsn).
    let mut furthest: Option<(Lsn, Lsn)> = None;
    let how = loop {
        if known_end == Some(pos) {
            break LogEnd::Known { end: pos };
        }
        let Some(rec) = data.record_at(out.cur_seg, pos)? else {
            // A bad or missing record: the end of the log, unless proven damaged.
            break end_at_bad_record(segments, out.cur_seg, &mut data, pos)?;
        };
        out.records += 1;
        out.bytes += rec.len as u64;
        if rec.durable_lsn > furthest.map_or(Lsn::NONE, |(_, d)| d) {
            furthest = Some((rec.lsn, rec.durable_lsn));
        }
        visit(&rec)?;
        pos += rec.len as u64;
        if rec.kind == Kind::SegEnd {
            out.cur_seg = pos;
            if !segments.contains(pos) {
                break end_at_missing_segment(segments, pos)?;
            }
            data.open(segments.file(pos)?)?;
        }
    };
    debug_assert_eq!(how.end_lsn(), pos, "the scan ends where it stopped reading");
    out.stale_segments = segments.starts_after(out.cur_seg);
    out.how = proven_short(how, furthest, must_reach);
    Ok(out)
}

/// `how`, or the damage it hides: a sound end before where a record read
/// (`furthest`: its LSN and `durable_lsn`) or the master record
/// (`must_reach`) says the log was durable.
fn proven_short(how: LogEnd, furthest: Option<(Lsn, Lsn)>, must_reach: Lsn) -> LogEnd {
    if how.is_damage() {
        return how;
    }
    let end = how.end_lsn();
    match furthest {
        Some((proof, durable)) if durable > end => LogEnd::ProvenByEarlierRecord { end, proof, durable },
        _ if must_reach > end => LogEnd::ProvenByMaster { end, durable: must_reach },
        _ => how,
    }
}

/// For tools (`ariesdb waldump`): read the whole log on `storage`, from its
/// first segment to its end, calling `visit` for each record in order, and
/// say where and how it ended (as text), and whether that end is damage (a record that
/// a later one proves was durable, a segment the log still needed) rather
/// than the torn tail or unused space a crash leaves. The same reading
/// recovery does, without the master record (a short log that only the
/// master record proves short is not seen).
///
/// # Errors
/// An I/O error, or `visit`'s.
#[cfg(feature = "internals")]
pub fn read_log(
    storage: Arc<dyn crate::storage::Storage>,
    mut visit: impl FnMut(&LogRecord) -> Result<()>,
) -> Result<(Lsn, String, bool)> {
    let starts: Vec<Lsn> = storage.list()?.iter().filter_map(|n| super::parse_segment_name(n)).collect();
    let Some(&from) = starts.iter().min() else {
        return Ok((Lsn::NONE, "the log has no segment files".into(), false));
    };
    let segments = Segments::load(storage, starts)?;
    let end = read_to_end(&segments, from, Lsn::NONE, None, |rec| visit(&rec.decode()?))?;
    Ok((end.how.end_lsn(), end.how.to_string(), end.how.is_damage()))
}

/// True if a valid record starts at `lsn` (false past the log's segments).
pub fn record_at(segments: &Segments, lsn: Lsn) -> Result<bool> {
    let Some((start, _)) = segments.locate(lsn) else { return Ok(false) };
    let mut data = SegReader::new(segments.file(start)?)?;
    if lsn - start + RECORD_HEADER_LEN as u64 > data.len() {
        return Ok(false);
    }
    Ok(data.record_at(start, lsn)?.is_some())
}

/// The end at a bad record at `bad` (in the segment starting at
/// `seg_start`): search past it for valid records. One whose `durable_lsn`
/// is beyond `bad`, in this segment or a later one, proves damage; otherwise
/// it is a torn tail, and the valid-looking records after it in this segment
/// are stale.
fn end_at_bad_record(segments: &Segments, seg_start: Lsn, data: &mut SegReader, bad: Lsn) -> Result<LogEnd> {
    let mut stale_until = bad;
    let mut from = bad + RECORD_ALIGN as u64;
    while let Some(q) = data.next_header(seg_start, from)? {
        if let Some(rec) = data.record_at(seg_start, q)? {
            if rec.durable_lsn > bad {
                return Ok(LogEnd::ProvenByLaterRecord { bad, proof: q, durable: rec.durable_lsn });
            }
            stale_until = stale_until.max(q + rec.len as u64);
        }
        from = q + RECORD_ALIGN as u64;
    }
    Ok(match proof_in_later_segments(segments, seg_start, bad)? {
        Some((proof, durable)) => LogEnd::ProvenByLaterRecord { bad, proof, durable },
        None => LogEnd::TornTail { end: bad, stale_until },
    })
}

/// The end at `start`, where a `SegEnd` says the next segment begins and
/// there is none: damage if a later segment proves it had been durable.
fn end_at_missing_segment(segments: &Segments, start: Lsn) -> Result<LogEnd> {
    Ok(match proof_in_later_segments(segments, start - 1, start)? {
        Some((proof, durable)) => LogEnd::MissingSegment { start, proof, durable },
        None => LogEnd::SegmentBoundary { end: start },
    })
}

/// A valid record in a segment starting after `after` whose `durable_lsn` is
/// beyond `bad` (its LSN and `durable_lsn`): proof that the log was durable
/// past `bad`.
fn proof_in_later_segments(segments: &Segments, after: Lsn, bad: Lsn) -> Result<Option<(Lsn, Lsn)>> {
    for s in segments.starts_after(after) {
        let mut d = SegReader::new(segments.file(s)?)?;
        let mut from = s;
        while let Some(q) = d.next_header(s, from)? {
            if let Some(rec) = d.record_at(s, q)? {
                if rec.durable_lsn > bad {
                    return Ok(Some((q, rec.durable_lsn)));
                }
            }
            from = q + RECORD_ALIGN as u64;
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests;
