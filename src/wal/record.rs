//! Log records and their byte encoding.
//!
//! Every record is a 56-byte header followed by a body, padded to a multiple of
//! 8 bytes. The header carries a CRC32 of everything after the CRC field, the
//! total length, the record's own LSN (its byte position in the log stream, so
//! a stale record at another place never passes), `prev_lsn` of the same
//! transaction, the transaction id, `durable_lsn` (how far the log was known to
//! be on stable storage when the record was appended, used by the reader to
//! tell a torn tail from damage), `undo_next_lsn` (CLRs only) and the kind.
//! See docs/design.md, section 3.5 ("Log records").

use crate::codec::{Reader, Writer};
use crate::error::{Error, Result};
use crate::page::PageOp;
use crate::types::{Lsn, PageId, TxnEntry, TxnId};

/// Size of the record header.
pub const RECORD_HEADER_LEN: usize = 56;
/// Records are aligned to this many bytes.
pub const RECORD_ALIGN: usize = 8;
/// The largest record accepted by the reader: a 16 MiB value in the redo part
/// (overflow pages), and 16 MiB of old value in the undo part, plus overhead.
pub const MAX_RECORD_LEN: usize = 40 << 20;

/// Record kinds as stored on disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// A change by a transaction: redo parts and a logical undo.
    Update = 1,
    /// Compensation log record: redo parts, and `undo_next_lsn`.
    Clr = 2,
    /// Redo-only page changes: a structure modification (nested top action) or a full page image.
    Redo = 3,
    /// The transaction committed.
    Commit = 4,
    /// The transaction began to roll back.
    Abort = 5,
    /// The transaction is finished (after commit or rollback).
    End = 6,
    /// A fuzzy checkpoint begins.
    CkptBegin = 7,
    /// A fuzzy checkpoint ends: the transaction table and dirty page table.
    CkptEnd = 8,
    /// The rest of this log segment is unused; the log continues in the next one.
    SegEnd = 9,
}

impl Kind {
    fn from_u8(b: u8) -> Option<Kind> {
        Some(match b {
            1 => Kind::Update,
            2 => Kind::Clr,
            3 => Kind::Redo,
            4 => Kind::Commit,
            5 => Kind::Abort,
            6 => Kind::End,
            7 => Kind::CkptBegin,
            8 => Kind::CkptEnd,
            9 => Kind::SegEnd,
            _ => return None,
        })
    }
}

/// One change to one page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PagePart {
    /// The page.
    pub page_id: PageId,
    /// What to do to it.
    pub op: PageOp,
}

/// Logical undo of a key operation: put the key back to `old` (None: remove it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyUndo {
    /// The key.
    pub key: Vec<u8>,
    /// The value before the change, if the key existed.
    pub old: Option<Vec<u8>>,
}

/// The body of a checkpoint end record.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CheckpointData {
    /// LSN of the matching begin record.
    pub begin_lsn: Lsn,
    /// Next transaction id to hand out.
    pub next_txn_id: TxnId,
    /// Active transactions at the begin record.
    pub active_txns: Vec<TxnEntry>,
    /// Dirty pages at the begin record, with their rec_lsn.
    pub dirty_pages: Vec<(PageId, Lsn)>,
}

/// A record's kind-specific content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// See `Kind::Update`.
    Update {
        /// Physiological redo.
        parts: Vec<PagePart>,
        /// Logical undo.
        undo: KeyUndo,
    },
    /// See `Kind::Clr`.
    Clr {
        /// Physiological redo of the compensation (empty for a dummy CLR).
        parts: Vec<PagePart>,
    },
    /// See `Kind::Redo`.
    Redo {
        /// The page changes.
        parts: Vec<PagePart>,
    },
    /// Commit.
    Commit,
    /// Abort.
    Abort,
    /// End.
    End,
    /// Checkpoint begin.
    CkptBegin,
    /// Checkpoint end.
    CkptEnd(CheckpointData),
    /// Segment end.
    SegEnd,
}

impl Body {
    /// The record kind.
    pub fn kind(&self) -> Kind {
        match self {
            Body::Update { .. } => Kind::Update,
            Body::Clr { .. } => Kind::Clr,
            Body::Redo { .. } => Kind::Redo,
            Body::Commit => Kind::Commit,
            Body::Abort => Kind::Abort,
            Body::End => Kind::End,
            Body::CkptBegin => Kind::CkptBegin,
            Body::CkptEnd(_) => Kind::CkptEnd,
            Body::SegEnd => Kind::SegEnd,
        }
    }

    /// The page changes this record carries (empty for most kinds).
    pub fn parts(&self) -> &[PagePart] {
        match self {
            Body::Update { parts, .. } | Body::Clr { parts } | Body::Redo { parts } => parts,
            _ => &[],
        }
    }
}

/// A decoded record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    /// Where the record lives.
    pub lsn: Lsn,
    /// Total encoded length.
    pub len: u32,
    /// Previous record of the same transaction (0: none).
    pub prev_lsn: Lsn,
    /// The transaction (0: system).
    pub txn_id: TxnId,
    /// The log was durable up to here when this record was appended.
    pub durable_lsn: Lsn,
    /// For CLRs: the next record of the transaction to undo.
    pub undo_next_lsn: Lsn,
    /// Kind-specific content.
    pub body: Body,
}

/// The header fields a writer supplies; the log assigns `lsn` and `durable_lsn`.
#[derive(Debug, Clone, Copy, Default)]
pub struct RecordHeader {
    /// Previous record of the same transaction.
    pub prev_lsn: Lsn,
    /// The transaction.
    pub txn_id: TxnId,
    /// For CLRs.
    pub undo_next_lsn: Lsn,
}

fn encode_parts(parts: &[PagePart], out: &mut Vec<u8>) {
    out.put_u32(parts.len() as u32);
    for p in parts {
        out.put_page_id(p.page_id);
        p.op.encode(out);
    }
}

fn decode_parts(r: &mut Reader<'_>) -> Result<Vec<PagePart>> {
    let n = r.count(5)?;
    let mut parts = Vec::with_capacity(n);
    for _ in 0..n {
        let page_id = r.page_id()?;
        let op = PageOp::decode(r)?;
        parts.push(PagePart { page_id, op });
    }
    Ok(parts)
}

/// `decode_parts` without building them (the same reads, the same errors),
/// but for their page ids, appended to `page_ids`.
fn check_parts(r: &mut Reader<'_>, page_ids: &mut Vec<PageId>) -> Result<()> {
    for _ in 0..r.count(5)? {
        page_ids.push(r.page_id()?);
        PageOp::skip(r)?;
    }
    Ok(())
}

/// Encode a body (without header) into `out`.
pub fn encode_body(body: &Body, out: &mut Vec<u8>) {
    match body {
        Body::Update { parts, undo } => {
            encode_parts(parts, out);
            out.put_bytes16(&undo.key);
            match &undo.old {
                Some(v) => {
                    out.put_u8(1);
                    out.put_bytes32(v);
                }
                None => out.put_u8(0),
            }
        }
        Body::Clr { parts } | Body::Redo { parts } => encode_parts(parts, out),
        Body::CkptEnd(c) => {
            out.put_lsn(c.begin_lsn);
            out.put_txn_id(c.next_txn_id);
            out.put_u32(c.active_txns.len() as u32);
            for t in &c.active_txns {
                out.put_txn_id(t.txn_id);
                out.put_u8(t.committed as u8);
                out.put_lsn(t.last_lsn);
                out.put_lsn(t.undo_next_lsn);
                out.put_lsn(t.first_lsn);
            }
            out.put_u32(c.dirty_pages.len() as u32);
            for (p, l) in &c.dirty_pages {
                out.put_page_id(*p);
                out.put_lsn(*l);
            }
        }
        Body::Commit | Body::Abort | Body::End | Body::CkptBegin | Body::SegEnd => {}
    }
}

fn decode_body(kind: Kind, r: &mut Reader<'_>) -> Result<Body> {
    Ok(match kind {
        Kind::Update => {
            let parts = decode_parts(r)?;
            let key = r.bytes16()?.to_vec();
            let old = match undo_flag(r)? {
                false => None,
                true => Some(r.bytes32()?.to_vec()),
            };
            Body::Update { parts, undo: KeyUndo { key, old } }
        }
        Kind::Clr => Body::Clr { parts: decode_parts(r)? },
        Kind::Redo => Body::Redo { parts: decode_parts(r)? },
        Kind::Commit => Body::Commit,
        Kind::Abort => Body::Abort,
        Kind::End => Body::End,
        Kind::CkptBegin => Body::CkptBegin,
        Kind::SegEnd => Body::SegEnd,
        Kind::CkptEnd => Body::CkptEnd(decode_checkpoint(r)?),
    })
}

/// `decode_body` without building it (but for a checkpoint end, rare, which
/// is decoded and dropped): the same reads in the same order, so the same
/// bodies pass and fail, with the same errors. The page ids of its parts
/// are appended to `page_ids`.
fn check_body(kind: Kind, r: &mut Reader<'_>, page_ids: &mut Vec<PageId>) -> Result<()> {
    match kind {
        Kind::Update => {
            check_parts(r, page_ids)?;
            r.bytes16()?;
            if undo_flag(r)? {
                r.bytes32()?;
            }
        }
        Kind::Clr | Kind::Redo => check_parts(r, page_ids)?,
        Kind::CkptEnd => {
            decode_checkpoint(r)?;
        }
        Kind::Commit | Kind::Abort | Kind::End | Kind::CkptBegin | Kind::SegEnd => {}
    }
    Ok(())
}

/// The flag before an update's old value: whether there is one.
#[inline]
fn undo_flag(r: &mut Reader<'_>) -> Result<bool> {
    match r.u8()? {
        0 => Ok(false),
        1 => Ok(true),
        b => Err(Error::corruption("wal", format!("bad undo flag {b}"))),
    }
}

fn decode_checkpoint(r: &mut Reader<'_>) -> Result<CheckpointData> {
    let begin_lsn = r.lsn()?;
    let next_txn_id = r.txn_id()?;
    let n = r.count(33)?;
    let mut active_txns = Vec::with_capacity(n);
    for _ in 0..n {
        let txn_id = r.txn_id()?;
        let committed = r.u8()? != 0;
        active_txns.push(TxnEntry {
            txn_id,
            committed,
            last_lsn: r.lsn()?,
            undo_next_lsn: r.lsn()?,
            first_lsn: r.lsn()?,
        });
    }
    let n = r.count(12)?;
    let mut dirty_pages = Vec::with_capacity(n);
    for _ in 0..n {
        dirty_pages.push((r.page_id()?, r.lsn()?));
    }
    Ok(CheckpointData { begin_lsn, next_txn_id, active_txns, dirty_pages })
}

/// Round a length up to the record alignment.
pub fn aligned(len: usize) -> usize {
    len.div_ceil(RECORD_ALIGN) * RECORD_ALIGN
}

/// Append a complete record to `out`: header, body, padding, CRC.
/// Returns the encoded length.
pub fn encode_record(out: &mut Vec<u8>, lsn: Lsn, durable_lsn: Lsn, header: &RecordHeader, body: &Body) -> usize {
    let start = out.len();
    out.resize(start + RECORD_HEADER_LEN, 0);
    encode_body(body, out);
    let len = aligned(out.len() - start);
    out.resize(start + len, 0);
    let h = &mut out[start..start + RECORD_HEADER_LEN];
    h[4..8].copy_from_slice(&(len as u32).to_le_bytes());
    h[8..16].copy_from_slice(&lsn.get().to_le_bytes());
    h[16..24].copy_from_slice(&header.prev_lsn.get().to_le_bytes());
    h[24..32].copy_from_slice(&header.txn_id.get().to_le_bytes());
    h[32..40].copy_from_slice(&durable_lsn.get().to_le_bytes());
    h[40..48].copy_from_slice(&header.undo_next_lsn.get().to_le_bytes());
    h[48] = body.kind() as u8;
    let crc = crc32fast::hash(&out[start + 4..start + len]);
    out[start..start + 4].copy_from_slice(&crc.to_le_bytes());
    len
}

/// The length field of a record header, if the header could be a record at
/// `lsn` (stored LSN matches, length sane). Used to scan and to find the end.
pub fn peek_len(h: &[u8], lsn: Lsn) -> Option<usize> {
    if h.len() < RECORD_HEADER_LEN {
        return None;
    }
    let len = u32::from_le_bytes(h[4..8].try_into().ok()?) as usize;
    let stored = u64::from_le_bytes(h[8..16].try_into().ok()?);
    if stored != lsn.get() || !(RECORD_HEADER_LEN..=MAX_RECORD_LEN).contains(&len) || !len.is_multiple_of(RECORD_ALIGN)
    {
        return None;
    }
    Some(len)
}

/// A record whose checksum and header were checked, its body not yet: the
/// header fields, and the body's bytes (padding included) for
/// `check_record` to check or `decode_record` to decode (so a view that only
/// `check_record` hands out). Errors say what is wrong; the caller decides
/// whether that is a torn tail or damage.
fn frame(buf: &[u8], lsn: Lsn) -> Result<RecordView<'_>> {
    let Some(len) = peek_len(buf, lsn) else {
        return Err(Error::corruption("wal", format!("no valid record header at LSN {lsn}")));
    };
    if buf.len() < len {
        return Err(Error::corruption("wal", format!("record at LSN {lsn} is cut short")));
    }
    let rec = &buf[..len];
    let crc = u32::from_le_bytes(rec[0..4].try_into().expect("4"));
    if crc != crc32fast::hash(&rec[4..]) {
        return Err(Error::corruption("wal", format!("checksum mismatch in record at LSN {lsn}")));
    }
    let u64_at = |o: usize| u64::from_le_bytes(rec[o..o + 8].try_into().expect("8"));
    if rec[49..RECORD_HEADER_LEN].iter().any(|&b| b != 0) {
        return Err(Error::corruption("wal", format!("record at LSN {lsn} has non-zero reserved header bytes")));
    }
    let Some(kind) = Kind::from_u8(rec[48]) else {
        return Err(Error::corruption("wal", format!("unknown record kind {} at LSN {lsn}", rec[48])));
    };
    Ok(RecordView {
        lsn,
        len: len as u32,
        prev_lsn: Lsn(u64_at(16)),
        txn_id: TxnId(u64_at(24)),
        durable_lsn: Lsn(u64_at(32)),
        undo_next_lsn: Lsn(u64_at(40)),
        kind,
        page_ids: &[],
        body: &rec[RECORD_HEADER_LEN..],
    })
}

/// After the body of `rec` was read from `r`: no trailing bytes but the
/// padding, and no pointer forward.
fn check_tail(rec: &RecordView<'_>, r: &mut Reader<'_>) -> Result<()> {
    let lsn = rec.lsn;
    if r.remaining() >= RECORD_ALIGN || r.bytes(r.remaining())?.iter().any(|&b| b != 0) {
        return Err(Error::corruption("wal", format!("record at LSN {lsn} has trailing bytes")));
    }
    if rec.prev_lsn >= lsn || rec.undo_next_lsn >= lsn {
        return Err(Error::corruption("wal", format!("record at LSN {lsn} points forward")));
    }
    Ok(())
}

/// Decode the record that starts `buf` and is expected at `lsn`. `buf` must hold
/// at least the whole record. Errors say what is wrong; the caller decides
/// whether that is a torn tail or damage.
pub fn decode_record(buf: &[u8], lsn: Lsn) -> Result<LogRecord> {
    let rec = frame(buf, lsn)?;
    let mut r = Reader::new(rec.body, "wal");
    let body = decode_body(rec.kind, &mut r)?;
    check_tail(&rec, &mut r)?;
    Ok(rec.with_body(body))
}

/// Check the record that starts `buf` and is expected at `lsn` exactly as
/// `decode_record` does (the checksum, the header, every count and length
/// in the body against the bytes there, the padding, the back pointers: the
/// same records pass, with the same errors), but decode only its header and
/// the page ids of its parts, into `page_ids` (cleared first; a buffer the
/// caller keeps from record to record, so checking allocates nothing, but
/// for a checkpoint end). The rest of the body stays in place, read on
/// demand (`RecordView`).
pub fn check_record<'a>(buf: &'a [u8], lsn: Lsn, page_ids: &'a mut Vec<PageId>) -> Result<RecordView<'a>> {
    let mut rec = frame(buf, lsn)?;
    let mut r = Reader::new(rec.body, "wal");
    page_ids.clear();
    check_body(rec.kind, &mut r, page_ids)?;
    check_tail(&rec, &mut r)?;
    rec.page_ids = page_ids;
    Ok(rec)
}

/// A record checked by `check_record`: the header and the page ids of its
/// parts decoded, the rest of the body in place, read on demand. What
/// analysis reads of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordView<'a> {
    /// Where the record lives.
    pub lsn: Lsn,
    /// Total encoded length.
    pub len: u32,
    /// Previous record of the same transaction (0: none).
    pub prev_lsn: Lsn,
    /// The transaction (0: system).
    pub txn_id: TxnId,
    /// The log was durable up to here when this record was appended.
    pub durable_lsn: Lsn,
    /// For CLRs: the next record of the transaction to undo.
    pub undo_next_lsn: Lsn,
    /// The record kind.
    pub kind: Kind,
    /// The pages the record's parts change, in order (the page ids of
    /// `Body::parts`).
    pub page_ids: &'a [PageId],
    /// The bytes after the header, padding included.
    body: &'a [u8],
}

impl RecordView<'_> {
    /// The pages the record changes, each once, in the order of their first
    /// part. A record's parts come grouped by page (a structure change may
    /// log hundreds of one-cell ops on one page), so a repeat of the part
    /// before is skipped without searching all earlier ones.
    pub fn pages(&self) -> impl Iterator<Item = PageId> + '_ {
        let ids = self.page_ids;
        ids.iter().enumerate().filter_map(move |(i, &page_id)| {
            let repeat = i > 0 && ids[i - 1] == page_id || ids[..i].contains(&page_id);
            (!repeat).then_some(page_id)
        })
    }

    /// A checkpoint end's content (None for another kind).
    ///
    /// # Errors
    /// None for a view `check_record` returned (it decoded the same bytes).
    pub fn checkpoint(&self) -> Result<Option<CheckpointData>> {
        match self.kind {
            Kind::CkptEnd => decode_checkpoint(&mut Reader::new(self.body, "wal")).map(Some),
            _ => Ok(None),
        }
    }

    /// The parts of the record that change page `page_id`, decoded (the
    /// others skipped), in order; none for a record without parts.
    ///
    /// # Errors
    /// None for a view `check_record` returned (it read the same bytes the
    /// same way).
    pub fn parts_of(&self, page_id: PageId) -> Result<Vec<PagePart>> {
        let mut out = Vec::new();
        if !matches!(self.kind, Kind::Update | Kind::Clr | Kind::Redo) || !self.page_ids.contains(&page_id) {
            return Ok(out);
        }
        let r = &mut Reader::new(self.body, "wal");
        for _ in 0..r.count(5)? {
            match r.page_id()? {
                id if id == page_id => out.push(PagePart { page_id, op: PageOp::decode(r)? }),
                _ => PageOp::skip(r)?,
            }
        }
        Ok(out)
    }

    /// The whole record, decoded, as `decode_record` gives it.
    ///
    /// # Errors
    /// None for a view `check_record` returned (it read the same bytes the
    /// same way).
    pub fn decode(&self) -> Result<LogRecord> {
        Ok(self.with_body(decode_body(self.kind, &mut Reader::new(self.body, "wal"))?))
    }

    fn with_body(&self, body: Body) -> LogRecord {
        LogRecord {
            lsn: self.lsn,
            len: self.len,
            prev_lsn: self.prev_lsn,
            txn_id: self.txn_id,
            durable_lsn: self.durable_lsn,
            undo_next_lsn: self.undo_next_lsn,
            body,
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_records_pages_are_listed_once_each_in_first_part_order() {
        let ids: Vec<PageId> = [3, 3, 3, 5, 3, 7, 7, 5].into_iter().map(PageId).collect();
        let view = RecordView {
            lsn: Lsn(4096),
            len: 0,
            prev_lsn: Lsn::NONE,
            txn_id: TxnId(1),
            durable_lsn: Lsn::NONE,
            undo_next_lsn: Lsn::NONE,
            kind: Kind::Update,
            page_ids: &ids,
            body: &[],
        };
        assert_eq!(view.pages().collect::<Vec<_>>(), vec![PageId(3), PageId(5), PageId(7)]);
    }

    use super::*;
    use crate::page::Meta;

    #[test]
    fn round_trip_every_kind() {
        let bodies = vec![
            Body::Update {
                parts: vec![PagePart { page_id: PageId(4), op: PageOp::Delete { slot: 1 } }],
                undo: KeyUndo { key: b"k".to_vec(), old: Some(b"v".to_vec()) },
            },
            Body::Clr { parts: vec![] },
            Body::Redo {
                parts: vec![PagePart {
                    page_id: PageId(1),
                    op: PageOp::SetMeta(Meta { root: PageId(2), free_head: PageId(0), page_count: 3, free_count: 0 }),
                }],
            },
            Body::Commit,
            Body::Abort,
            Body::End,
            Body::CkptBegin,
            Body::CkptEnd(CheckpointData {
                begin_lsn: Lsn(100),
                next_txn_id: TxnId(9),
                active_txns: vec![TxnEntry {
                    txn_id: TxnId(3),
                    committed: false,
                    last_lsn: Lsn(90),
                    undo_next_lsn: Lsn(90),
                    first_lsn: Lsn(10),
                }],
                dirty_pages: vec![(PageId(5), Lsn(40))],
            }),
            Body::SegEnd,
        ];
        for body in bodies {
            let mut buf = Vec::new();
            let hdr = RecordHeader { prev_lsn: Lsn(8), txn_id: TxnId(3), undo_next_lsn: Lsn::NONE };
            let len = encode_record(&mut buf, Lsn(4096), Lsn(100), &hdr, &body);
            assert_eq!(len, buf.len());
            assert_eq!(len % RECORD_ALIGN, 0);
            let rec = decode_record(&buf, Lsn(4096)).unwrap();
            assert_eq!(rec.body, body);
            assert_eq!(rec.prev_lsn, Lsn(8));
            assert_eq!(rec.durable_lsn, Lsn(100));
            // The same bytes at another place are not a record.
            assert!(decode_record(&buf, Lsn(4104)).is_err());
            // Any flipped bit is caught.
            for i in 0..len {
                let mut bad = buf.clone();
                bad[i] ^= 0x10;
                assert!(decode_record(&bad, Lsn(4096)).is_err(), "flip at {i} undetected");
            }
        }
    }

    #[test]
    fn short_and_garbage_buffers_are_errors() {
        assert!(decode_record(&[], Lsn(8)).is_err());
        assert!(decode_record(&[0xff; 100], Lsn(8)).is_err());
        let mut buf = Vec::new();
        encode_record(&mut buf, Lsn(64), Lsn(0), &RecordHeader::default(), &Body::Commit);
        assert!(decode_record(&buf[..buf.len() - 8], Lsn(64)).is_err());
    }

    /// A record of every kind, and of every page op, some with several parts.
    fn every_body() -> Vec<Body> {
        let meta = Meta { root: PageId(2), free_head: PageId(0), page_count: 3, free_count: 0 };
        let ops = vec![
            PageOp::Init { ty: 2, link: PageId(5), aux: 1, cells: vec![vec![1, 2], vec![3], vec![]] },
            PageOp::InitOverflow { next: PageId(9), data: vec![7; 40] },
            PageOp::Image(vec![1; 64]),
            PageOp::Insert { slot: 3, cell: vec![4; 12] },
            PageOp::Delete { slot: 2 },
            PageOp::Replace { slot: 1, cell: vec![5; 8] },
            PageOp::Truncate { from: 4 },
            PageOp::SetLink(PageId(77)),
            PageOp::SetMeta(meta),
        ];
        let all: Vec<PagePart> =
            ops.iter().enumerate().map(|(i, op)| PagePart { page_id: PageId(10 + i as u32), op: op.clone() }).collect();
        let mut bodies = vec![
            Body::Update { parts: all.clone(), undo: KeyUndo { key: b"key".to_vec(), old: Some(b"old".to_vec()) } },
            Body::Update { parts: all[3..4].to_vec(), undo: KeyUndo { key: b"k".to_vec(), old: None } },
            Body::Clr { parts: vec![] },
            Body::Clr { parts: all[4..6].to_vec() },
            Body::Redo { parts: all.clone() },
            Body::Commit,
            Body::Abort,
            Body::End,
            Body::CkptBegin,
            Body::CkptEnd(CheckpointData {
                begin_lsn: Lsn(100),
                next_txn_id: TxnId(9),
                active_txns: vec![TxnEntry {
                    txn_id: TxnId(3),
                    committed: true,
                    last_lsn: Lsn(90),
                    undo_next_lsn: Lsn(90),
                    first_lsn: Lsn(10),
                }],
                dirty_pages: vec![(PageId(5), Lsn(40)), (PageId(6), Lsn(48))],
            }),
            Body::SegEnd,
        ];
        bodies.extend(all.into_iter().map(|p| Body::Redo { parts: vec![p] }));
        bodies
    }

    /// `check_record` and `decode_record` agree on `buf` at `lsn`: both
    /// accept it, with the same header, page ids, checkpoint and decoded
    /// record, or both reject it with the same error. Whether they accepted.
    fn agree(buf: &[u8], lsn: Lsn) -> bool {
        let mut ids = vec![PageId(99)];
        match (decode_record(buf, lsn), check_record(buf, lsn, &mut ids)) {
            (Ok(rec), Ok(view)) => {
                assert_eq!((view.lsn, view.len, view.kind), (rec.lsn, rec.len, rec.body.kind()));
                assert_eq!((view.prev_lsn, view.txn_id), (rec.prev_lsn, rec.txn_id));
                assert_eq!((view.durable_lsn, view.undo_next_lsn), (rec.durable_lsn, rec.undo_next_lsn));
                let want: Vec<PageId> = rec.body.parts().iter().map(|p| p.page_id).collect();
                assert_eq!(view.page_ids, &want[..]);
                let ckpt = match &rec.body {
                    Body::CkptEnd(c) => Some(c.clone()),
                    _ => None,
                };
                assert_eq!(view.checkpoint().unwrap(), ckpt);
                assert_eq!(view.decode().unwrap(), rec);
                for &id in view.page_ids.iter().chain([&PageId(12345)]) {
                    let want: Vec<PagePart> = rec.body.parts().iter().filter(|p| p.page_id == id).cloned().collect();
                    assert_eq!(view.parts_of(id).unwrap(), want, "the parts of page {id}");
                }
                true
            }
            (Err(a), Err(b)) => {
                assert_eq!(a.to_string(), b.to_string());
                false
            }
            (a, b) => panic!("decode_record and check_record disagree at LSN {lsn}: {a:?} / {b:?}"),
        }
    }

    /// Set the checksum of the record at the start of `buf` to match its
    /// bytes, so that a change to them reaches the body's checks.
    fn reseal(buf: &mut [u8]) {
        let len = u32::from_le_bytes(buf[4..8].try_into().unwrap()) as usize;
        if (RECORD_HEADER_LEN..=buf.len()).contains(&len) {
            let crc = crc32fast::hash(&buf[4..len]);
            buf[..4].copy_from_slice(&crc.to_le_bytes());
        }
    }

    /// Every byte of `buf` changed to each of a few values, its checksum
    /// fixed: each must be judged alike by `check_record` and
    /// `decode_record`. How many were accepted.
    fn agree_on_mutations(buf: &[u8], lsn: Lsn) -> usize {
        let mut accepted = 0;
        for i in 4..buf.len() {
            for v in [buf[i] ^ 1, buf[i] ^ 0x80, 0, 1, 2, 0x7f, 0xff] {
                let mut m = buf.to_vec();
                m[i] = v;
                reseal(&mut m);
                accepted += agree(&m, lsn) as usize;
            }
        }
        accepted
    }

    #[test]
    fn check_record_agrees_with_decode_record() {
        let lsn = Lsn(4096);
        let hdr = RecordHeader { prev_lsn: Lsn(8), txn_id: TxnId(3), undo_next_lsn: Lsn(16) };
        let mut accepted = 0;
        for body in every_body() {
            let mut buf = Vec::new();
            let len = encode_record(&mut buf, lsn, Lsn(100), &hdr, &body);
            assert!(agree(&buf, lsn));
            assert!(!agree(&buf, lsn + 8));
            // Cut short, and cut with a length field to match.
            for cut in (0..len).step_by(RECORD_ALIGN) {
                assert!(!agree(&buf[..cut], lsn));
                let mut m = buf[..cut.max(RECORD_HEADER_LEN)].to_vec();
                let cut_len = m.len() as u32;
                m[4..8].copy_from_slice(&cut_len.to_le_bytes());
                reseal(&mut m);
                agree(&m, lsn);
            }
            accepted += agree_on_mutations(&buf, lsn);
        }
        // Some changes leave a valid record (another slot, another length
        // within what is there): the checks were reached, not only the CRC.
        assert!(accepted > 100, "only {accepted} mutations accepted");
    }

    /// The checked-in fuzz inputs for log records (fuzz/corpus/wal_record,
    /// fuzz/regressions/wal_record; none in a packaged crate), and each with
    /// every byte changed and its checksum fixed.
    #[test]
    fn check_record_agrees_with_decode_record_on_the_fuzz_corpus() {
        for dir in ["fuzz/corpus/wal_record", "fuzz/regressions/wal_record"] {
            let d = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
            let Ok(entries) = std::fs::read_dir(&d) else { continue };
            for e in entries {
                let input = std::fs::read(e.unwrap().path()).unwrap();
                let Some(lsn) = input.get(8..16).map(|b| Lsn(u64::from_le_bytes(b.try_into().unwrap()))) else {
                    continue;
                };
                agree(&input, lsn);
                if input.len() <= 4096 {
                    agree_on_mutations(&input, lsn);
                }
            }
        }
    }
}
