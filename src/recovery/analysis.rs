//! Pass 1, analysis: from the begin record of the checkpoint the master
//! record names to the end of the log, rebuild the transaction table
//! (`active_txns`) and the dirty page table (`dirty_pages`, page -> rec_lsn),
//! and find where the log ends (a torn tail is cut; damage is an error, see
//! `wal::reader`). Reads the log only; changes nothing.

use std::collections::HashSet;

use crate::error::{Error, Result};
use crate::types::{IdMap, Lsn, PageId, TxnEntry, TxnId};
use crate::wal::reader::ScanEnd;
use crate::wal::segments::Segments;
use crate::wal::{reader, Kind};

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
    /// The next transaction id to hand out.
    pub next_txn_id: TxnId,
    /// Where the log ends.
    pub end: ScanEnd,
}

/// Pass 1.
pub fn analysis(segments: &Segments, from: Lsn, must_reach: Lsn, known_end: Option<Lsn>) -> Result<Analysis> {
    let mut a = Analysis { next_txn_id: TxnId::SYSTEM.next(), ..Default::default() };
    let mut ended: HashSet<TxnId> = HashSet::new();
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
        for &page_id in rec.page_ids {
            let lsns = a.page_lsns.entry(page_id).or_default();
            if lsns.is_empty() {
                // First seen: its rec_lsn, unless the checkpoint gave one.
                a.dirty_pages.entry(page_id).or_insert(rec.lsn);
            }
            if lsns.last() != Some(&rec.lsn) {
                lsns.push(rec.lsn);
            }
        }
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
    debug_assert!(a.dirty_pages.values().all(|&rec_lsn| rec_lsn < end.end_lsn() || end.records == 0));
    debug_assert!(a.active_txns.values().all(|e| e.first_lsn <= e.last_lsn));
    a.end = end;
    Ok(a)
}
