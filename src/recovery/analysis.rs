//! Pass 1, analysis: from the begin record of the checkpoint the master
//! record names to the end of the log, rebuild the transaction table
//! (`active_txns`) and the dirty page table (`dirty_pages`, page -> rec_lsn),
//! and find where the log ends (a torn tail is cut; damage is an error, see
//! `wal::reader`). Reads the log only; changes nothing.

use std::collections::HashSet;

use crate::error::{Error, Result};
use crate::page::META_PAGE;
use crate::types::{IdMap, Lsn, PageId, TxnEntry, TxnId};
use crate::wal::reader::ScanEnd;
use crate::wal::segments::Segments;
use crate::wal::{reader, Kind, PagePart};

/// What analysis found.
#[derive(Debug, Default)]
pub struct Analysis {
    /// Transactions without an END record.
    pub active_txns: IdMap<TxnId, TxnEntry>,
    /// Pages that may be newer in the log than on disk.
    pub dirty_pages: IdMap<PageId, Lsn>,
    /// For every page a record read changes, the LSNs of those records in
    /// log order (for instant restart's redo of a page at its first load).
    pub page_lsns: IdMap<PageId, Vec<Lsn>>,
    /// The meta page's parts of the records read, in log order, decoded
    /// (at most `KEPT_META_PARTS`; None past that): every allocation and
    /// free changes the meta page, so instant restart would otherwise read
    /// back a record per split to redo it (`PendingRedo::new`).
    pub meta_parts: Option<Vec<(Lsn, PagePart)>>,
    /// The next transaction id to hand out.
    pub next_txn_id: TxnId,
    /// Where the log ends.
    pub end: ScanEnd,
}

/// The most meta page parts analysis keeps (`Analysis::meta_parts`): about
/// 16 MiB of memory.
pub const KEPT_META_PARTS: usize = 1 << 18;

/// Pass 1.
pub fn analysis(segments: &Segments, from: Lsn, must_reach: Lsn, known_end: Option<Lsn>) -> Result<Analysis> {
    let mut a = Analysis { next_txn_id: TxnId::SYSTEM.next(), meta_parts: Some(Vec::new()), ..Default::default() };
    let mut ended: HashSet<TxnId> = HashSet::new();
    // (page, record) for every page a record read changes, in log order.
    let mut refs: Vec<(PageId, Lsn)> = Vec::new();
    let end = reader::scan_views(segments, from, must_reach, known_end, |rec| {
        if rec.lsn == from && rec.kind != Kind::CkptBegin && from != crate::wal::LSN_START {
            return Err(Error::corruption(
                "wal",
                format!("the master record names LSN {from}, which is no checkpoint"),
            ));
        }
        if rec.txn_id != TxnId::SYSTEM {
            a.next_txn_id = a.next_txn_id.max(rec.txn_id.next());
            if rec.kind == Kind::End {
                a.active_txns.remove(&rec.txn_id);
                ended.insert(rec.txn_id);
            } else {
                let e = a.active_txns.entry(rec.txn_id).or_insert(TxnEntry {
                    txn_id: rec.txn_id,
                    committed: false,
                    last_lsn: rec.lsn,
                    undo_next_lsn: rec.lsn,
                    first_lsn: rec.lsn,
                });
                e.last_lsn = rec.lsn;
                e.undo_next_lsn = rec.lsn;
                if rec.kind == Kind::Commit {
                    e.committed = true;
                }
            }
        }
        if let Some(kept) = a.meta_parts.as_mut().filter(|_| rec.page_ids.contains(&META_PAGE)) {
            kept.extend(rec.parts_of(META_PAGE)?.into_iter().map(|p| (rec.lsn, p)));
            if kept.len() > KEPT_META_PARTS {
                a.meta_parts = None;
            }
        }
        // Appended in log order and grouped by page after the scan: a map
        // looked up per part here cost two cache misses each (the bucket and
        // the list's last LSN), half of analysis on a log of many pages.
        refs.extend(rec.pages().map(|page_id| (page_id, rec.lsn)));
        if let Some(c) = rec.checkpoint()? {
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
    a.page_lsns = group_by_page(refs);
    for (&page_id, lsns) in &a.page_lsns {
        // First seen: its rec_lsn, unless the checkpoint gave an older one.
        let e = a.dirty_pages.entry(page_id).or_insert(lsns[0]);
        *e = (*e).min(lsns[0]);
    }
    debug_assert!(a.dirty_pages.values().all(|&rec_lsn| rec_lsn < end.end_lsn() || end.records == 0));
    debug_assert!(a.active_txns.values().all(|e| e.first_lsn <= e.last_lsn));
    a.end = end;
    Ok(a)
}

/// The LSNs of `refs` (page, record, in log order) by page, each page's in
/// log order. A counting sort over the page ids when they are dense enough
/// (at most a few times as many as the pairs, as in any real log), so that
/// every pair is placed without a lookup; a stable sort otherwise (hostile
/// page ids never size an allocation).
fn group_by_page(refs: Vec<(PageId, Lsn)>) -> IdMap<PageId, Vec<Lsn>> {
    let mut out: IdMap<PageId, Vec<Lsn>> = IdMap::default();
    let Some(max) = refs.iter().map(|r| r.0.get() as usize).max() else { return out };
    if max <= 4 * refs.len() + (1 << 16) {
        let mut start = vec![0u32; max + 2];
        for r in &refs {
            start[r.0.get() as usize + 1] += 1;
        }
        for i in 1..start.len() {
            start[i] += start[i - 1];
        }
        // Each page's slots, filled in log order.
        let mut next = start.clone();
        let mut lsns = vec![Lsn::NONE; refs.len()];
        for &(page_id, lsn) in &refs {
            let at = &mut next[page_id.get() as usize];
            lsns[*at as usize] = lsn;
            *at += 1;
        }
        out.reserve(start.windows(2).filter(|w| w[0] != w[1]).count());
        for (page, w) in start.windows(2).enumerate() {
            if w[0] != w[1] {
                out.insert(PageId(page as u32), lsns[w[0] as usize..w[1] as usize].to_vec());
            }
        }
    } else {
        let mut refs = refs;
        refs.sort_by_key(|r| r.0);
        for (page_id, lsn) in refs {
            out.entry(page_id).or_default().push(lsn);
        }
    }
    debug_assert!(out.values().all(|l| l.windows(2).all(|w| w[0] < w[1])), "a page's records out of log order");
    out
}

#[cfg(test)]
mod group_tests {
    use super::*;

    #[test]
    fn grouping_keeps_log_order_per_page_dense_or_sparse() {
        for sparse in [false, true] {
            let mut refs = Vec::new();
            let mut want: IdMap<PageId, Vec<Lsn>> = IdMap::default();
            for i in 0..5000u64 {
                let page =
                    if sparse { PageId(((i * 7919) % 13) as u32 * 100_000_000) } else { PageId((i * 31 % 97) as u32) };
                let lsn = Lsn(64 + i * 8);
                refs.push((page, lsn));
                want.entry(page).or_default().push(lsn);
            }
            assert_eq!(group_by_page(refs), want, "sparse {sparse}");
        }
        assert!(group_by_page(Vec::new()).is_empty());
    }
}
