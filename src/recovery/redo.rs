//! Pass 2, redo: from the smallest rec_lsn, repeat history. THE pageLSN TEST
//! lives in `redo_part`: a change is applied only where the page is in the
//! dirty page table, the record is at or after its rec_lsn, and
//! `page_lsn < lsn`. A torn page is rebuilt from the first full image or init
//! of it in the log.

use super::{Analysis, Progress, RecoveryReport};
use crate::buffer::BufferPool;
use crate::error::{Error, Result};
use crate::page::{self, PageRef};
use crate::types::{IdMap, Lsn, PageId};
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
    // The first change redone since the page's load sets its rec_lsn.
    h.mark_dirty(rec.lsn);
    report.redone += 1;
    Ok(true)
}

/// Pass 2. The dirty pages are redone in batches of at most half the pool,
/// oldest `rec_lsn` first, by one scan of the log from the batch's oldest
/// `rec_lsn` each (one scan when the dirty page table fits). A batch's pages
/// are whole when its scan ends and are written back before the next batch
/// (each imaged first, `BufferPool::flush_dirty`): a page part way through
/// its redo is never written with an image (an image logged now, at the end
/// of the log, would claim a state older than the records before it), and
/// the pool evicts none that would need one (`recovery_mode`).
pub fn redo(pool: &BufferPool, segments: &Segments, a: &Analysis, report: &mut RecoveryReport) -> Result<()> {
    let Some(&redo_start) = a.dirty_pages.values().min() else { return Ok(()) };
    report.redo_start_lsn = redo_start.get();
    pool.set_recovery_mode(true);
    let r = redo_batches(pool, segments, a, report);
    pool.set_recovery_mode(false);
    r
}

fn redo_batches(pool: &BufferPool, segments: &Segments, a: &Analysis, report: &mut RecoveryReport) -> Result<()> {
    let mut order: Vec<(Lsn, PageId)> = a.dirty_pages.iter().map(|(&p, &l)| (l, p)).collect();
    order.sort_unstable();
    let batch_len = (pool.frame_count() / 2).max(1);
    let batches = order.len().div_ceil(batch_len);
    let mut torn = Vec::new();
    for (i, batch) in order.chunks(batch_len).enumerate() {
        let pages: IdMap<PageId, Lsn> = batch.iter().map(|&(l, p)| (p, l)).collect();
        redo_batch(pool, segments, a, &pages, batch[0].0, i == 0, report, &mut torn)?;
        // Every page of the batch must now be whole: a torn page with no
        // image is damage.
        for &(_, pid) in batch {
            let h = pool.fetch(pid)?;
            if !h.is_valid() {
                return Err(Error::corruption(
                    "data",
                    format!("page {pid} is damaged and the log holds no image of it"),
                ));
            }
        }
        if i + 1 < batches {
            pool.flush_dirty(Lsn::MAX, usize::MAX)?;
        }
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
    Ok(())
}

/// One scan of the log from `from` to the end analysis found, redoing the
/// changes of `pages` (page -> rec_lsn). `first`: the first batch, which
/// also counts the changes of pages no batch redoes as skipped.
#[allow(clippy::too_many_arguments)]
fn redo_batch(
    pool: &BufferPool,
    segments: &Segments,
    a: &Analysis,
    pages: &IdMap<PageId, Lsn>,
    from: Lsn,
    first: bool,
    report: &mut RecoveryReport,
    torn: &mut Vec<PageId>,
) -> Result<()> {
    // Analysis found the end: redo stops there without looking past it again.
    let end_lsn = a.end.end_lsn();
    let mut prev = Lsn::NONE;
    let mut progress = Progress::new("redo", end_lsn);
    let end = reader::scan(segments, from, Lsn::NONE, Some(end_lsn), |rec| {
        if rec.lsn >= end_lsn {
            return Ok(());
        }
        // Repeating history: in log order, never before redo's start.
        assert!(rec.lsn > prev && rec.lsn >= from, "redo out of log order at LSN {}", rec.lsn);
        prev = rec.lsn;
        progress.tick(rec.lsn, rec.lsn - from, end_lsn - from);
        let mut applied: Vec<PageId> = Vec::new();
        for part in rec.body.parts() {
            match pages.get(&part.page_id) {
                Some(&rec_lsn) if rec.lsn >= rec_lsn => {
                    let same_record = applied.contains(&part.page_id);
                    if redo_part(pool, rec, part, same_record, report, torn)? && !same_record {
                        applied.push(part.page_id);
                    }
                }
                Some(_) => report.skipped += 1,
                None if first && a.dirty_pages.get(&part.page_id).is_none_or(|&l| rec.lsn < l) => report.skipped += 1,
                None => {}
            }
        }
        Ok(())
    })?;
    if end.end_lsn() != end_lsn {
        return Err(Error::corruption("wal", "the log changed between analysis and redo"));
    }
    Ok(())
}
