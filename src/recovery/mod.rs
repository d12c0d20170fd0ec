//! Restart recovery, in three passes (ARIES):
//!
//! 1. Analysis, from the begin record of the checkpoint the master record names
//!    to the end of the log: rebuild the transaction table (`active_txns`) and
//!    the dirty page table (`dirty_pages`, page -> rec_lsn), and find where the
//!    log ends (a torn tail is cut; damage is an error, see `wal::reader`).
//! 2. Redo, from the smallest rec_lsn, repeating history: a page change is
//!    applied only where the page is in the dirty page table, the record is at
//!    or after its rec_lsn, and `page_lsn < lsn` (`redo_part`, THE pageLSN
//!    TEST). A torn page is rebuilt from the first full image or init of it.
//! 3. Undo of every loser together in one backward sweep, always taking the
//!    largest LSN still to undo, with CLRs (`txn::undo_step`); then END records.
//!
//! Recovery writes no master record until its closing checkpoint, so a crash
//! during recovery leads to the same recovery again, which finds the CLRs of
//! the first attempt and never undoes anything twice.

use std::collections::{BinaryHeap, HashMap, HashSet};
use std::time::Instant;

use crate::btree::{BTree, TxnCtx};
use crate::buffer::BufferPool;
use crate::error::{Error, Result};
use crate::page::{self, Lsn, PageId, PageRef};
use crate::txn::{undo_step, TxnTable};
use crate::wal::segments::Segments;
use crate::wal::{reader, AttEntry, Body, LogRecord, PagePart, RecordHeader, ScanEndInfo, TxnId, Wal};

/// What analysis found.
#[derive(Debug, Default)]
pub struct Analysis {
    /// Transactions without an END record.
    pub active_txns: HashMap<TxnId, AttEntry>,
    /// Pages that may be newer in the log than on disk.
    pub dirty_pages: HashMap<PageId, Lsn>,
    /// The next transaction id to hand out.
    pub next_txn_id: TxnId,
    /// Where the log ends.
    pub end: ScanEndInfo,
}

/// What the last open did (see `Db::recovery_report`).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Begin LSN of the checkpoint recovery started from (0: none).
    pub checkpoint_lsn: Lsn,
    /// First LSN redo looked at.
    pub redo_start_lsn: Lsn,
    /// End of the log found.
    pub end_lsn: Lsn,
    /// Log records read by analysis.
    pub records_analyzed: u64,
    /// Committed transactions that only needed an END record.
    pub winners: u64,
    /// Transactions rolled back.
    pub losers: u64,
    /// Entries of the dirty page table after analysis.
    pub dirty_pages: u64,
    /// Page changes redone.
    pub redone: u64,
    /// Page changes skipped because the page already had them.
    pub skipped: u64,
    /// Torn or never-written pages rebuilt from a full image or init.
    pub pages_rebuilt: u64,
    /// Records undone.
    pub undone: u64,
    /// Time spent in each pass, in microseconds.
    pub analysis_us: u64,
    /// Redo time.
    pub redo_us: u64,
    /// Undo time.
    pub undo_us: u64,
}

/// Pass 1.
pub fn analysis(segments: &Segments, from: Lsn, must_reach: Lsn) -> Result<Analysis> {
    let mut a = Analysis { next_txn_id: 1, ..Default::default() };
    let mut ended: HashSet<TxnId> = HashSet::new();
    let end = reader::scan(segments, from, must_reach, |rec| {
        if rec.lsn == from && rec.body != Body::CkptBegin && from != crate::wal::LSN_START {
            return Err(Error::corruption(
                "wal",
                format!("the master record names LSN {from}, which is no checkpoint"),
            ));
        }
        if rec.txn_id != 0 {
            a.next_txn_id = a.next_txn_id.max(rec.txn_id + 1);
            if rec.body == Body::End {
                a.active_txns.remove(&rec.txn_id);
                ended.insert(rec.txn_id);
            } else {
                let e = a.active_txns.entry(rec.txn_id).or_insert(AttEntry {
                    txn_id: rec.txn_id,
                    committed: false,
                    last_lsn: rec.lsn,
                    undo_next_lsn: rec.lsn,
                    first_lsn: rec.lsn,
                });
                e.last_lsn = rec.lsn;
                e.undo_next_lsn = rec.lsn;
                if rec.body == Body::Commit {
                    e.committed = true;
                }
            }
        }
        for part in rec.body.parts() {
            a.dirty_pages.entry(part.page_id).or_insert(rec.lsn);
        }
        if let Body::CkptEnd(c) = &rec.body {
            if c.begin_lsn == from {
                a.next_txn_id = a.next_txn_id.max(c.next_txn_id);
                for t in &c.active_txns {
                    if ended.contains(&t.txn_id) {
                        continue;
                    }
                    let e = a.active_txns.entry(t.txn_id).or_insert(*t);
                    e.first_lsn = e.first_lsn.min(t.first_lsn);
                    e.committed |= t.committed;
                }
                for &(p, l) in &c.dirty_pages {
                    let e = a.dirty_pages.entry(p).or_insert(l);
                    *e = (*e).min(l);
                }
            }
        }
        Ok(())
    })?;
    if end.records == 0 && from != crate::wal::LSN_START {
        return Err(Error::corruption(
            "wal",
            format!("the checkpoint at LSN {from} named by the master record is unreadable"),
        ));
    }
    a.end = end;
    Ok(a)
}

/// Redo one page change of record `rec`. THE pageLSN TEST lives here: a
/// change is applied only if the page does not have it yet (`page_lsn < lsn`).
/// A record may carry several changes to one page (a split truncates a page
/// and relinks it); `same_record` says an earlier change of this record was
/// already applied to the page, so the rest of its changes apply too.
fn redo_part(
    pool: &BufferPool,
    rec: &LogRecord,
    part: &PagePart,
    same_record: bool,
    report: &mut RecoveryReport,
) -> Result<bool> {
    let h = pool.fetch(part.page_id)?;
    let mut g = h.write();
    if !h.is_valid() {
        if !part.op.defines_page() {
            // A torn page: its full image comes later in the log.
            report.skipped += 1;
            return Ok(false);
        }
        g.fill(0);
        report.pages_rebuilt += 1;
    } else if !same_record && g.page_lsn() >= rec.lsn {
        report.skipped += 1;
        return Ok(false);
    }
    page::apply(&mut g, part.page_id, &part.op)?;
    page::set_page_lsn(&mut g, rec.lsn);
    if part.op.defines_page() {
        page::set_fpi_lsn(&mut g, rec.lsn);
        h.set_valid();
    }
    h.mark_dirty(g.fpi_lsn());
    report.redone += 1;
    Ok(true)
}

/// Pass 2.
pub fn redo(pool: &BufferPool, segments: &Segments, a: &Analysis, report: &mut RecoveryReport) -> Result<()> {
    let Some(&redo_start) = a.dirty_pages.values().min() else { return Ok(()) };
    report.redo_start_lsn = redo_start;
    pool.set_recovery_mode(true);
    let end = reader::scan(segments, redo_start, 0, |rec| {
        if rec.lsn >= a.end.end_lsn {
            return Ok(());
        }
        let mut applied: Vec<PageId> = Vec::new();
        for part in rec.body.parts() {
            match a.dirty_pages.get(&part.page_id) {
                Some(&rec_lsn) if rec.lsn >= rec_lsn => {
                    let same_record = applied.contains(&part.page_id);
                    if redo_part(pool, rec, part, same_record, report)? && !same_record {
                        applied.push(part.page_id);
                    }
                }
                _ => report.skipped += 1,
            }
        }
        Ok(())
    })?;
    if end.end_lsn != a.end.end_lsn {
        return Err(Error::corruption("wal", "the log changed between analysis and redo"));
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

/// Pass 3: roll back every loser in one backward sweep; END for every winner.
pub fn undo(
    tree: &BTree<'_>,
    wal: &Wal,
    table: &mut TxnTable,
    a: &Analysis,
    report: &mut RecoveryReport,
) -> Result<()> {
    let mut heap: BinaryHeap<(Lsn, TxnId)> = BinaryHeap::new();
    for (&id, e) in &a.active_txns {
        if e.committed {
            report.winners += 1;
            let header = RecordHeader { prev_lsn: e.last_lsn, txn_id: id, undo_next_lsn: 0 };
            wal.append(&header, &Body::End)?;
        } else {
            report.losers += 1;
            table.active_txns.insert(id, *e);
            heap.push((e.undo_next_lsn, id));
        }
    }
    while let Some((cur, id)) = heap.pop() {
        let entry = table.get_mut(id)?;
        let mut ctx = TxnCtx { txn_id: id, last_lsn: entry.last_lsn, compensating: None };
        let next = if cur == 0 { 0 } else { undo_step(tree, wal, &mut ctx, cur)? };
        report.undone += 1;
        let entry = table.get_mut(id)?;
        entry.last_lsn = ctx.last_lsn;
        if next == 0 {
            let header = RecordHeader { prev_lsn: ctx.last_lsn, txn_id: id, undo_next_lsn: 0 };
            wal.append(&header, &Body::End)?;
            table.active_txns.remove(&id);
        } else {
            heap.push((next, id));
        }
    }
    Ok(())
}

/// Time since `t` in microseconds.
pub fn micros(t: Instant) -> u64 {
    t.elapsed().as_micros() as u64
}
