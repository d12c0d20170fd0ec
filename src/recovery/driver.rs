//! The recovery driver: what opening a database does before it serves
//! anyone. Finds the log's segments, reads and validates the master record,
//! runs analysis, erases the stale records past the end of the log, redoes
//! (or, with instant restart, lists what each page owes), makes sure the
//! meta page exists, undoes the losers (or, with instant restart, lists what
//! each will change, for the engine to roll back in the background) and,
//! for a file of an
//! older format version, reshapes the tree once. The caller then takes the
//! closing checkpoint (`Checkpointer`), which writes the first master record
//! of this run.
//!
//! Invariants:
//! - Nothing is written before analysis has found the end of the log, except
//!   a new database's first master record, and, after a clean close, the
//!   master record rewritten without its clean end (same checkpoint).
//! - Stale records past the end are erased (zeroed and synced, or their
//!   segment removed; `Segments::erase_stale_tail`) before the log appends
//!   anything, so they can never be read as log.
//! - No master record naming a new checkpoint is written here: a crash
//!   during recovery leads to the same recovery again.

use std::sync::Arc;
use std::time::Instant;

use log::Level;

use super::master::MasterFile;
use super::pending::PendingRedo;
use super::undo::{prepare_background_undo, Loser};
use super::{analysis, micros, ms, redo, undo, Analysis, RecoveryReport};
use crate::btree::{BTree, TxnCtx};
use crate::buffer::BufferPool;
use crate::error::{Error, Result};
use crate::failstop::FailStop;
use crate::page::{self, Master, PageRef, META_PAGE};
use crate::storage::{Storage, StorageFile};
use crate::txn::TxnTable;
use crate::types::{IdMap, Lsn, PageId, TxnId};
use crate::wal::reader::ScanEnd;
use crate::wal::segments::Segments;
use crate::wal::{self, reader, Wal};

/// Name of the data file.
pub const DATA_FILE: &str = "data.db";

/// What recovery needs of the options (`Options` belongs to the facade,
/// above this layer).
pub struct OpenParams {
    /// Page size of a new database (an existing one keeps its own).
    pub page_size: usize,
    /// Size of a log segment.
    pub segment_bytes: u64,
    /// Frames of the buffer pool.
    pub buffer_pool_pages: usize,
    /// Instant restart: leave redo to each page's first load (and to a
    /// background pass) instead of redoing every dirty page before the open
    /// returns, and leave the losers' rollback to the caller (`Recovered::losers`).
    pub instant_restart: bool,
    /// With instant restart, a loser of more keys than this (0: no limit) is
    /// escalated: one lock on every key (`Loser`).
    pub escalate_keys: usize,
    /// With instant restart, a loser of more keys than this (0: no limit) is
    /// not listed (`Loser::unlisted`): the versions of its keys would take
    /// too much memory.
    pub list_keys: usize,
}

/// A recovered database, ready to serve once the caller has checkpointed.
pub struct Recovered {
    /// The data file.
    pub data_file: Arc<dyn StorageFile>,
    /// Its master record's I/O, for the checkpointer.
    pub master_file: MasterFile,
    /// The master record recovery started from.
    pub master: Master,
    /// The log, open for appends at the end analysis found.
    pub wal: Arc<Wal>,
    /// The buffer pool, holding the pages redo and undo changed.
    pub pool: BufferPool,
    /// The fail-stop state the log and the pool share, for the rest of the
    /// engine to share too.
    pub stop: Arc<FailStop>,
    /// The transaction table after undo (no loser is left in it).
    pub txns: TxnTable,
    /// The next transaction id to hand out.
    pub next_txn_id: TxnId,
    /// What recovery did.
    pub report: RecoveryReport,
    /// How the database was found.
    pub start: Start,
    /// After an instant restart: the pages that still owe redo (None after
    /// a classic redo pass, or when no page owed any).
    pub pending: Option<Arc<PendingRedo>>,
    /// After an instant restart: the losers, still in `txns`, that the
    /// caller must lock and roll back (empty after a classic undo pass).
    pub losers: Vec<Loser>,
}

/// Restart recovery on `storage`: the three passes and what goes with them.
///
/// # Errors
/// `Error::Corruption` for a damaged master record, log or meta page;
/// `Error::InvalidArgument` for a format version this build does not open;
/// any I/O error.
pub fn recover(storage: Arc<dyn Storage>, opts: &OpenParams) -> Result<Recovered> {
    let segments = Arc::new(Segments::discover(storage.clone())?);
    let data_file = storage.open(DATA_FILE)?;
    let (mut master_file, master) =
        MasterFile::open(&*storage, data_file.clone(), !segments.is_empty(), opts.page_size)?;
    let created = segments.is_empty() && master.checkpoint_lsn.is_none();
    let known_end = clean_end(&segments, &mut master_file, &master)?;
    let start = match (created, known_end) {
        (true, _) => Start::Created,
        (false, Some(_)) => Start::Clean,
        (false, None) => Start::Crashed,
    };
    let mut report = RecoveryReport { checkpoint_lsn: master.checkpoint_lsn.get(), ..Default::default() };

    // After a crash every pass logs at info; after a clean close at debug
    // unless analysis finds work (a transaction left open at the close); for
    // a new database at trace.
    let mut level = match start {
        Start::Crashed => Level::Info,
        Start::Clean => Level::Debug,
        Start::Created => Level::Trace,
    };
    let t = Instant::now();
    match master.checkpoint_lsn {
        c if c.is_none() => log::log!(level, "recovery analysis: reading the whole log to its end (no checkpoint)"),
        c => log::log!(level, "recovery analysis: reading the log from the checkpoint at LSN {c} to its end"),
    }
    let mut analysis = run_analysis(&segments, &master, known_end)?;
    // The log reaches at least the checkpoint the master record names.
    assert!(analysis.end.end_lsn() >= master.checkpoint_lsn, "the log ends before its checkpoint");
    report.analysis_us = micros(t);
    report.end_lsn = analysis.end.end_lsn().get();
    report.records_analyzed = analysis.end.records;
    report.dirty_pages = analysis.dirty_pages.len() as u64;
    if !analysis.active_txns.is_empty() || !analysis.dirty_pages.is_empty() {
        level = Level::Info;
    }
    log_analysis(level, &master, &analysis, &report);

    segments.erase_stale_tail(&analysis.end)?;
    let end = &analysis.end;
    let stop = FailStop::new();
    let seg_bytes = opts.segment_bytes;
    let wal =
        Arc::new(Wal::new(storage.clone(), seg_bytes, segments.clone(), end.cur_seg, end.end_lsn(), stop.clone()));
    let page_size = master.page_size as usize;
    let pool = BufferPool::new(data_file.clone(), wal.clone(), page_size, opts.buffer_pool_pages, stop.clone());
    // A page written back from here on is imaged first unless imaged since
    // the checkpoint recovery starts from.
    pool.advance_fpi_horizon(master.checkpoint_lsn);

    let t = Instant::now();
    let pending = if opts.instant_restart && !analysis.dirty_pages.is_empty() {
        let pending = defer_redo(&segments, &master, &mut analysis, &wal, &mut report)?;
        pool.set_load_redo(pending.clone());
        report.redo_us = micros(t);
        log::log!(
            level,
            "recovery redo: instant restart, {} dirty pages (log LSN {}..{}) are redone at their first load or by \
             the background pass",
            report.dirty_pages,
            report.redo_start_lsn,
            report.end_lsn
        );
        Some(pending)
    } else {
        match analysis.dirty_pages.values().min() {
            Some(from) => log::log!(
                level,
                "recovery redo: repeating history from LSN {from} to LSN {}, for {} dirty pages",
                report.end_lsn,
                report.dirty_pages
            ),
            None => log::log!(level, "recovery redo: no dirty pages, nothing to redo"),
        }
        redo(&pool, &segments, &analysis, &mut report)?;
        // Redo started at or before the checkpoint and read up to the end.
        assert!(report.redo_start_lsn <= report.end_lsn, "redo began past the end of the log: {report:?}");
        report.redo_us = micros(t);
        log::log!(
            level,
            "recovery redo done in {:.1} ms: {} records applied, {} skipped (page_lsn test: already on the page, \
             or the page not dirty), {} torn or never-written pages rebuilt from their full images",
            ms(report.redo_us),
            report.redone,
            report.skipped,
            report.pages_rebuilt
        );
        None
    };

    let tree = BTree::new(&pool);
    ensure_meta(&pool, &tree, &wal, master.checkpoint_lsn)?;

    let t = Instant::now();
    let (winners, losers) = outcomes(&analysis);
    let mut txns = TxnTable::default();
    // An older format's tree is reshaped below with no loser left.
    let background_undo = opts.instant_restart && master.version == page::FORMAT_VERSION;
    let losers = if background_undo {
        let losers =
            prepare_background_undo(&wal, &mut txns, &analysis, opts.escalate_keys, opts.list_keys, &mut report)?;
        report.undo_us = micros(t);
        if losers.is_empty() {
            log::log!(level, "recovery undo: no losers; {winners} winners got END records");
        } else {
            log::log!(
                level,
                "recovery undo: {losers} losers are rolled back in the background, their keys locked until then \
                 ({} escalated to a lock on every key); {winners} winners got END records",
                losers.iter().filter(|l| l.escalated).count(),
                losers = losers.len()
            );
        }
        losers
    } else {
        log::log!(
            level,
            "recovery undo: rolling back {losers} losers in one backward sweep; {winners} winners get END records"
        );
        undo(&tree, &wal, &mut txns, &analysis, &mut report)?;
        report.undo_us = micros(t);
        log::log!(
            level,
            "recovery undo done in {:.1} ms: {} records undone, each logged as a CLR; {} losers rolled back",
            ms(report.undo_us),
            report.undone,
            report.losers
        );
        Vec::new()
    };
    if master.version < page::FORMAT_VERSION {
        // An older version's tree may hold pages below the fill bounds:
        // reshape it once, before the checkpoint that records version 2.
        report.shape_repairs = tree.repair_shape(&mut TxnCtx::new(TxnId::SYSTEM, Lsn::NONE))?;
        log::info!(
            "format version {} upgraded: {} pages reshaped to the fill bounds",
            master.version,
            report.shape_repairs
        );
    }
    let next_txn_id = analysis.next_txn_id;
    Ok(Recovered { data_file, master_file, master, wal, pool, stop, txns, next_txn_id, report, start, pending, losers })
}

/// Instant restart: instead of the redo pass, the list of what each dirty
/// page owes (`PendingRedo`). Analysis listed the records of each page from
/// where it began; a page whose rec_lsn (from the checkpoint's dirty page
/// table) is older also needs the records between it and the checkpoint,
/// read here.
fn defer_redo(
    segments: &Segments,
    master: &Master,
    a: &mut Analysis,
    wal: &Arc<Wal>,
    report: &mut RecoveryReport,
) -> Result<Arc<PendingRedo>> {
    let redo_start = a.dirty_pages.values().copied().min().unwrap_or(Lsn::NONE);
    report.redo_start_lsn = redo_start.get();
    report.redo_deferred_pages = a.dirty_pages.len() as u64;
    let mut page_lsns = std::mem::take(&mut a.page_lsns);
    let from = analysis_start(master);
    if redo_start < from {
        let mut early: IdMap<PageId, Vec<Lsn>> = Default::default();
        reader::scan(segments, redo_start, Lsn::NONE, Some(from), |rec| {
            for part in rec.body.parts() {
                if a.dirty_pages.get(&part.page_id).is_some_and(|&rec_lsn| rec.lsn >= rec_lsn) {
                    let lsns = early.entry(part.page_id).or_default();
                    if lsns.last() != Some(&rec.lsn) {
                        lsns.push(rec.lsn);
                    }
                }
            }
            Ok(())
        })?;
        for (page_id, mut lsns) in early {
            lsns.extend(page_lsns.remove(&page_id).unwrap_or_default());
            page_lsns.insert(page_id, lsns);
        }
    }
    let end = a.end.end_lsn();
    Ok(Arc::new(PendingRedo::new(wal.clone(), end, &a.dirty_pages, page_lsns, a.meta_parts.take())))
}

/// How the database was found at open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// There was none: a new database was created.
    Created,
    /// The last close was clean: the log's end was known.
    Clean,
    /// The last run ended without a clean close (a crash, a kill, a dropped
    /// `Db`, a failed close): recovery found the end of the log.
    Crashed,
}

/// Transactions analysis found open at the end of the log: (winners, losers).
fn outcomes(a: &Analysis) -> (usize, usize) {
    let winners = a.active_txns.values().filter(|e| e.committed).count();
    (winners, a.active_txns.len() - winners)
}

/// The line that ends analysis, and a warning if a torn tail left stale log
/// to erase.
fn log_analysis(level: Level, master: &Master, a: &Analysis, report: &RecoveryReport) {
    let (winners, losers) = outcomes(a);
    log::log!(
        level,
        "recovery analysis done in {:.1} ms: log LSN {}..{} ({} records, {} bytes); {winners} winners, \
         {losers} losers, {} dirty pages",
        ms(report.analysis_us),
        analysis_start(master),
        report.end_lsn,
        a.end.records,
        a.end.bytes,
        report.dirty_pages
    );
    let end = a.end.end_lsn();
    let stale_until = a.end.how.stale_until();
    if stale_until > end || !a.end.stale_segments.is_empty() {
        log::warn!(
            "recovery: the log's tail was torn at LSN {end}: cut there, and the stale log after it erased \
             (records up to LSN {stale_until} in its segment, {} later segments)",
            a.end.stale_segments.len()
        );
    }
}

/// Where analysis starts reading: the checkpoint the master record names,
/// or the start of the log.
fn analysis_start(master: &Master) -> Lsn {
    if master.checkpoint_lsn.is_none() {
        wal::LSN_START
    } else {
        master.checkpoint_lsn
    }
}

/// Where the log ends if the last close was clean: the master record says so,
/// and no record starts there (a record there would mean something was
/// appended after the close; then the end is found the long way). The master
/// record is rewritten without the clean end at once, before anything is
/// appended, so a crash from here on never trusts it. None: not known.
fn clean_end(segments: &Segments, master_file: &mut MasterFile, master: &Master) -> Result<Option<Lsn>> {
    if master.clean_end.is_none() {
        return Ok(None);
    }
    let trusted = !reader::record_at(segments, master.clean_end)?;
    master_file.write_next(master.checkpoint_lsn, master.durable_lsn)?;
    Ok(trusted.then_some(master.clean_end))
}

/// Pass 1, from the checkpoint the master record names (or the start of the
/// log). A database without log and checkpoint has nothing to analyse.
fn run_analysis(segments: &Segments, master: &Master, known_end: Option<Lsn>) -> Result<Analysis> {
    if segments.is_empty() && master.checkpoint_lsn.is_none() {
        return Ok(Analysis { next_txn_id: TxnId::SYSTEM.next(), end: ScanEnd::empty_log(), ..Default::default() });
    }
    let from = analysis_start(master);
    let a = analysis(segments, from, master.durable_lsn, known_end)?;
    debug_assert!(a.end.end_lsn() >= from, "the log ends before the checkpoint it starts from");
    Ok(a)
}

/// A new database (or one that crashed before its first record was
/// durable) has no meta page yet: create it.
fn ensure_meta(pool: &BufferPool, tree: &BTree<'_>, wal: &Wal, checkpoint_lsn: Lsn) -> Result<()> {
    pool.set_recovery_mode(true);
    let valid = pool.fetch(META_PAGE).map(|h| h.is_valid() && h.read().page_type().is_some());
    pool.set_recovery_mode(false);
    match valid? {
        true => Ok(()),
        false if checkpoint_lsn.is_none() => {
            tree.bootstrap()?;
            wal.flush_all()
        }
        false => Err(Error::corruption("data", "the meta page (page 1) is missing or damaged")),
    }
}
