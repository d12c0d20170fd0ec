//! Pass 2, redo: from the smallest rec_lsn, repeat history. THE pageLSN TEST
//! lives in `redo_part`: a change is applied only where the page is in the
//! dirty page table, the record is at or after its rec_lsn, and
//! `page_lsn < lsn`. A torn page is rebuilt from the first full image or init
//! of it in the log.

use super::{Analysis, Progress, RecoveryReport};
use crate::buffer::BufferPool;
use crate::error::{Error, Result};
use crate::page::{self, PageRef};
use crate::types::{Lsn, PageId};
use crate::wal::segments::Segments;
use crate::wal::{reader, LogRecord, PagePart};

/// What redo did with one page change (`redo_change`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// Passed over: the page already had it, or the page is torn and a later
    /// full image rebuilds it.
    Skipped,
    /// Applied to a valid page.
    Applied,
    /// The page was rebuilt from this change (a full image or an init);
    /// `torn`: its stored bytes were not all zeros (torn or damaged, rather
    /// than never written).
    Rebuilt {
        /// The stored bytes were not all zeros.
        torn: bool,
    },
}

/// Redo one page change `part` of the record at `lsn` on page `page_id`,
/// whose bytes are `g` (`valid`: they passed their checks; set once a full
/// image or init rebuilt them). THE pageLSN TEST lives here: a change is
/// applied only if the page does not have it yet (`page_lsn < lsn`). A
/// record may carry several changes to one page (a split truncates a page
/// and relinks it); `same_record` says an earlier change of this record was
/// already applied to the page, so the rest of its changes apply too.
/// Both the redo pass (`redo`) and the redo of a page at its first load
/// after an instant restart (`PendingRedo`) go through here.
pub(crate) fn redo_change(
    g: &mut [u8],
    valid: &mut bool,
    page_id: PageId,
    lsn: Lsn,
    part: &PagePart,
    same_record: bool,
) -> Result<Step> {
    let mut step = Step::Applied;
    if !*valid {
        if !part.op.defines_page() {
            // A torn page: its full image comes later in the log.
            return Ok(Step::Skipped);
        }
        // All zeros: never written (a new page); anything else was torn.
        let torn = g.iter().any(|&b| b != 0);
        g.fill(0);
        step = Step::Rebuilt { torn };
    } else if !same_record && g.page_lsn() >= lsn {
        return Ok(Step::Skipped);
    }
    // Never at or below the page's LSN, except for the second change of one
    // record to one page (or a page rebuilt from scratch).
    debug_assert!(same_record || !*valid || part.op.defines_page() || g.page_lsn() < lsn);
    page::apply(g, page_id, &part.op)?;
    page::set_page_lsn(g, lsn);
    debug_assert!(g.page_lsn() == lsn && g.fpi_lsn() <= lsn);
    if part.op.defines_page() {
        page::set_fpi_lsn(g, lsn);
        *valid = true;
    }
    Ok(step)
}

/// Redo one page change of record `rec` in the pool (the redo pass).
fn redo_part(
    pool: &BufferPool,
    rec: &LogRecord,
    part: &PagePart,
    same_record: bool,
    report: &mut RecoveryReport,
    torn: &mut Vec<PageId>,
) -> Result<bool> {
    let h = pool.fetch(part.page_id)?;
    let mut g = h.write();
    let mut valid = h.is_valid();
    match redo_change(&mut g, &mut valid, part.page_id, rec.lsn, part, same_record)? {
        Step::Skipped => {
            report.skipped += 1;
            return Ok(false);
        }
        Step::Applied => {}
        Step::Rebuilt { torn: was_torn } => {
            if was_torn {
                torn.push(part.page_id);
            }
            report.pages_rebuilt += 1;
        }
    }
    if part.page_id == page::META_PAGE {
        pool.forget_meta_shape();
    }
    if valid {
        h.set_valid();
    }
    h.mark_dirty(g.fpi_lsn());
    report.redone += 1;
    Ok(true)
}

/// Pass 2.
pub fn redo(pool: &BufferPool, segments: &Segments, a: &Analysis, report: &mut RecoveryReport) -> Result<()> {
    let Some(&redo_start) = a.dirty_pages.values().min() else { return Ok(()) };
    report.redo_start_lsn = redo_start.get();
    pool.set_recovery_mode(true);
    // Analysis found the end: redo stops there without looking past it again.
    let end_lsn = a.end.end_lsn();
    let mut prev = Lsn::NONE;
    let mut progress = Progress::new("redo", end_lsn);
    let mut torn = Vec::new();
    let end = reader::scan(segments, redo_start, Lsn::NONE, Some(end_lsn), |rec| {
        if rec.lsn >= end_lsn {
            return Ok(());
        }
        // Repeating history: in log order, never before redo's start.
        assert!(rec.lsn > prev && rec.lsn >= redo_start, "redo out of log order at LSN {}", rec.lsn);
        prev = rec.lsn;
        progress.tick(rec.lsn, rec.lsn - redo_start, end_lsn - redo_start);
        let mut applied: Vec<PageId> = Vec::new();
        for part in rec.body.parts() {
            match a.dirty_pages.get(&part.page_id) {
                Some(&rec_lsn) if rec.lsn >= rec_lsn => {
                    let same_record = applied.contains(&part.page_id);
                    if redo_part(pool, rec, part, same_record, report, &mut torn)? && !same_record {
                        applied.push(part.page_id);
                    }
                }
                _ => report.skipped += 1,
            }
        }
        Ok(())
    })?;
    if end.end_lsn() != end_lsn {
        return Err(Error::corruption("wal", "the log changed between analysis and redo"));
    }
    if !torn.is_empty() {
        let shown: Vec<String> = torn.iter().take(8).map(|p| p.to_string()).collect();
        log::warn!(
            "recovery redo: {} torn pages (checksum or structure failed) rebuilt from their full images in the \
             log: pages {}{}",
            torn.len(),
            shown.join(", "),
            if torn.len() > shown.len() { ", ..." } else { "" }
        );
    }
    // Every dirty page must now be whole: a torn page with no image is damage.
    for &pid in a.dirty_pages.keys() {
        let h = pool.fetch(pid)?;
        if !h.is_valid() {
            pool.set_recovery_mode(false);
            return Err(Error::corruption("data", format!("page {pid} is damaged and the log holds no image of it")));
        }
    }
    pool.set_recovery_mode(false);
    Ok(())
}
