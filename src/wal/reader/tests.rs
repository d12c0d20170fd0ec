//! One test per way the log can end (`LogEnd`): each builds a log record by
//! record into segment files on the simulated disk, with the `durable_lsn`
//! each record would carry, damages it precisely, and checks the exact
//! variant `read_to_end` finds and what `scan` returns (Ok for the ends of a
//! sound log, `Error::Corruption` naming the proof for damage). Then the
//! erasure of the stale tail, and a log written by the real writer.

use std::sync::Arc;

use super::*;
use crate::failstop::FailStop;
use crate::storage::{SimStorage, Storage};
use crate::types::TxnId;
use crate::wal::{segment_name, Wal};

/// Length of each record these tests write (a `Commit` or a `SegEnd`).
const REC: u64 = RECORD_HEADER_LEN as u64;

/// A log written record by record into segment files, each record carrying
/// the `durable_lsn` the test gives it, every segment synced when complete.
struct TestLog {
    sim: Arc<SimStorage>,
    /// Start of the segment being written.
    seg: Lsn,
    /// Its bytes so far.
    buf: Vec<u8>,
    /// LSN of the next record.
    next: Lsn,
}

impl TestLog {
    fn new() -> TestLog {
        TestLog { sim: Arc::new(SimStorage::new(7)), seg: LSN_START, buf: Vec::new(), next: LSN_START }
    }

    /// Append a commit record appended when the log was durable up to
    /// `durable`; its LSN.
    fn rec(&mut self, durable: Lsn) -> Lsn {
        self.push(durable, &Body::Commit)
    }

    /// End the segment with a `SegEnd` record and write it; the next segment
    /// starts after it. Returns that start.
    fn seg_end(&mut self, durable: Lsn) -> Lsn {
        self.push(durable, &Body::SegEnd);
        self.write_segment();
        self.seg = self.next;
        self.next
    }

    /// Write the last segment; the disk.
    fn finish(mut self) -> Arc<SimStorage> {
        self.write_segment();
        self.sim
    }

    fn push(&mut self, durable: Lsn, body: &Body) -> Lsn {
        let lsn = self.next;
        let hdr = RecordHeader { txn_id: TxnId(1), ..Default::default() };
        self.next += encode_record(&mut self.buf, lsn, durable, &hdr, body) as u64;
        lsn
    }

    fn write_segment(&mut self) {
        let f = self.sim.open(&segment_name(self.seg)).unwrap();
        f.write_all_at(&self.buf, 0).unwrap();
        f.sync_data().unwrap();
        self.sim.sync_dir().unwrap();
        self.buf.clear();
    }
}

/// Damage the record at `lsn` of the segment starting at `seg` (one bit of
/// its `prev_lsn`, so its checksum fails).
fn flip(sim: &SimStorage, seg: Lsn, lsn: Lsn) {
    sim.flip_bit(&segment_name(seg), lsn - seg + 20, 3).unwrap();
}

/// Remove the segment starting at `seg`.
fn remove(sim: &SimStorage, seg: Lsn) {
    sim.remove(&segment_name(seg)).unwrap();
}

/// Scan the whole log: how `read_to_end` says it ended, and `scan`'s result.
fn end_of(sim: &Arc<SimStorage>, must_reach: Lsn, known_end: Option<Lsn>) -> (ScanEnd, Result<ScanEnd>) {
    let segments = Segments::discover(sim.clone()).unwrap();
    let found = read_to_end(&segments, LSN_START, must_reach, known_end, |_| Ok(())).unwrap();
    let scanned = scan(&segments, LSN_START, must_reach, known_end, |_| Ok(()));
    (found, scanned)
}

/// The log ends as `want`, a sound end, and `scan` returns it.
fn assert_sound(sim: &Arc<SimStorage>, must_reach: Lsn, known_end: Option<Lsn>, want: LogEnd) -> ScanEnd {
    assert!(!want.is_damage());
    let (found, scanned) = end_of(sim, must_reach, known_end);
    assert_eq!(found.how, want);
    assert_eq!(scanned.unwrap(), found);
    found
}

/// The log ends in the damage `want`, and `scan` reports it as corruption
/// naming every LSN of the proof.
fn assert_damage(sim: &Arc<SimStorage>, must_reach: Lsn, want: LogEnd, lsns: &[Lsn]) {
    assert!(want.is_damage());
    let (found, scanned) = end_of(sim, must_reach, None);
    assert_eq!(found.how, want);
    match scanned {
        Err(Error::Corruption { file: "wal", detail }) => {
            assert_eq!(detail, want.to_string());
            for lsn in lsns {
                assert!(detail.contains(&format!("LSN {lsn}")), "{detail} does not name LSN {lsn}");
            }
        }
        other => panic!("expected corruption for {want:?}, got {other:?}"),
    }
}

#[test]
fn known_end_stops_the_scan_there() {
    let mut log = TestLog::new();
    let a = log.rec(LSN_START);
    let b = log.rec(a + REC);
    let c = log.rec(b + REC);
    let sim = log.finish();
    let end = assert_sound(&sim, Lsn::NONE, Some(b), LogEnd::Known { end: b });
    assert_eq!((end.cur_seg, end.records, end.stale_segments.len()), (LSN_START, 1, 0));
    // A clean close: the known end is the end of what was written.
    let end = assert_sound(&sim, c + REC, Some(c + REC), LogEnd::Known { end: c + REC });
    assert_eq!((end.records, end.bytes), (3, 3 * REC));
}

#[test]
fn torn_tail_is_cut_at_the_bad_record() {
    // b, c and d were appended in one flush group after a was synced: each
    // says only a was durable. The power loss tore b; c and d landed.
    let mut log = TestLog::new();
    let a = log.rec(LSN_START);
    let b = log.rec(a + REC);
    let c = log.rec(b);
    let d = log.rec(b);
    let sim = log.finish();
    flip(&sim, LSN_START, b);
    let end = assert_sound(&sim, b, None, LogEnd::TornTail { end: b, stale_until: d + REC });
    assert_eq!((end.cur_seg, end.records, end.end_lsn()), (LSN_START, 1, b));
    assert!(c < d);
}

#[test]
fn missing_next_segment_with_no_proof_ends_at_the_boundary() {
    // The SegEnd and the next segment's first record were written by one
    // flush; the power loss undid the new segment's creation.
    let mut log = TestLog::new();
    let a = log.rec(LSN_START);
    let next = log.seg_end(a + REC);
    log.rec(a + REC);
    let sim = log.finish();
    remove(&sim, next);
    let end = assert_sound(&sim, next, None, LogEnd::SegmentBoundary { end: next });
    assert_eq!((end.cur_seg, end.records), (next, 2));
}

#[test]
fn bad_record_proven_durable_by_a_later_record_in_its_segment() {
    // c was appended after b was synced: b had been durable.
    let mut log = TestLog::new();
    let a = log.rec(LSN_START);
    let b = log.rec(a + REC);
    let c = log.rec(b + REC);
    let sim = log.finish();
    flip(&sim, LSN_START, b);
    let want = LogEnd::ProvenByLaterRecord { bad: b, proof: c, durable: b + REC };
    assert_damage(&sim, Lsn::NONE, want, &[b, c]);
}

#[test]
fn bad_record_proven_durable_by_a_record_in_a_later_segment() {
    // b and the SegEnd after it say only a was durable (stale-looking, no
    // proof in b's segment); y in the next segment was appended after both
    // were synced.
    let mut log = TestLog::new();
    let a = log.rec(LSN_START);
    let b = log.rec(a + REC);
    let next = log.seg_end(b);
    let x = log.rec(b);
    let y = log.rec(x + REC);
    let sim = log.finish();
    flip(&sim, LSN_START, b);
    let want = LogEnd::ProvenByLaterRecord { bad: b, proof: y, durable: y };
    assert_damage(&sim, Lsn::NONE, want, &[b, y]);
    assert_eq!(next, x);
}

#[test]
fn missing_segment_proven_durable_by_a_later_segment() {
    let mut log = TestLog::new();
    log.rec(LSN_START);
    let second = log.seg_end(LSN_START);
    let b = log.rec(second - REC);
    let third = log.seg_end(b + REC);
    // Appended after the second segment's SegEnd was synced.
    let c = log.rec(b + REC);
    let sim = log.finish();
    remove(&sim, second);
    assert_eq!(c, third);
    let want = LogEnd::MissingSegment { start: second, proof: c, durable: b + REC };
    assert_damage(&sim, Lsn::NONE, want, &[second, c]);
}

#[test]
fn end_before_an_earlier_records_durable_lsn_is_damage() {
    // b claims the log was durable beyond where it now ends (no honest
    // writer does that: only a valid-looking record with an impossible
    // durable_lsn), and nothing follows it.
    let mut log = TestLog::new();
    let a = log.rec(LSN_START);
    let b = log.rec(Lsn(2 * LSN_START.get()));
    let sim = log.finish();
    let want = LogEnd::ProvenByEarlierRecord { end: b + REC, proof: b, durable: Lsn(2 * LSN_START.get()) };
    assert_damage(&sim, a + REC, want, &[b + REC, b, Lsn(2 * LSN_START.get())]);
}

#[test]
fn end_before_the_master_records_durable_lsn_is_damage() {
    // The master record was written when the log was durable up to `durable`;
    // the log now ends before it (its last records lost).
    let mut log = TestLog::new();
    let a = log.rec(LSN_START);
    let b = log.rec(a + REC);
    let c = log.rec(b + REC);
    let sim = log.finish();
    flip(&sim, LSN_START, c);
    let durable = c + REC;
    assert_damage(&sim, durable, LogEnd::ProvenByMaster { end: c, durable }, &[c, durable]);
    // Reaching exactly the master's durable LSN is a sound end.
    assert_sound(&sim, c, None, LogEnd::TornTail { end: c, stale_until: c });
}

#[test]
fn missing_first_segment_is_damage() {
    let mut log = TestLog::new();
    log.rec(LSN_START);
    let second = log.seg_end(LSN_START);
    log.rec(second);
    let sim = log.finish();
    remove(&sim, LSN_START);
    assert_damage(&sim, Lsn::NONE, LogEnd::MissingStart { from: LSN_START }, &[LSN_START]);
}

#[test]
fn erase_stale_tail_zeroes_stale_records_and_removes_later_segments() {
    // b is torn; c and the SegEnd after it look valid but are stale, and so
    // is the next segment (nothing in them proves b durable).
    let mut log = TestLog::new();
    let a = log.rec(LSN_START);
    let b = log.rec(a + REC);
    log.rec(b);
    let next = log.seg_end(b);
    log.rec(b);
    let sim = log.finish();
    flip(&sim, LSN_START, b);
    let segments = Arc::new(Segments::discover(sim.clone()).unwrap());
    let end = scan(&segments, LSN_START, Lsn::NONE, None, |_| Ok(())).unwrap();
    assert_eq!(end.how, LogEnd::TornTail { end: b, stale_until: next });
    assert_eq!(end.stale_segments, vec![next]);

    segments.erase_stale_tail(&end).unwrap();
    let bytes = sim.file_contents(&segment_name(LSN_START)).unwrap();
    assert!(bytes[(b - LSN_START) as usize..(next - LSN_START) as usize].iter().all(|&x| x == 0));
    assert!(decode_record(&bytes, a).is_ok(), "the log before the end is kept");
    assert!(sim.file_contents(&segment_name(next)).is_none() && !segments.contains(next));
    assert_sound(&sim, Lsn::NONE, None, LogEnd::TornTail { end: b, stale_until: b });

    // The writer appends at the end; the log now reads through its records.
    let wal = Wal::new(sim.clone(), 1 << 16, segments, end.cur_seg, end.end_lsn(), FailStop::new());
    let hdr = RecordHeader { txn_id: TxnId(2), ..Default::default() };
    assert_eq!(wal.append(&hdr, &Body::Commit).unwrap(), b);
    let last = wal.append(&hdr, &Body::End).unwrap();
    wal.flush_all().unwrap();
    let end = assert_sound(&sim, Lsn::NONE, None, LogEnd::TornTail { end: wal.end_lsn(), stale_until: wal.end_lsn() });
    assert_eq!((end.records, wal.end_lsn()), (3, last + REC));
}

#[test]
fn records_of_the_writer_prove_only_what_was_synced() {
    let sim = Arc::new(SimStorage::new(11));
    let segments = Arc::new(Segments::load(sim.clone(), []).unwrap());
    let wal = Wal::new(sim.clone(), 1 << 16, segments, LSN_START, LSN_START, FailStop::new());
    let hdr = RecordHeader { txn_id: TxnId(1), ..Default::default() };
    let a = wal.append(&hdr, &Body::Commit).unwrap();
    wal.flush_all().unwrap();
    // One flush group: c says only a was durable, so a torn b is a torn tail.
    let b = wal.append(&hdr, &Body::Commit).unwrap();
    let c = wal.append(&hdr, &Body::Commit).unwrap();
    wal.flush_all().unwrap();
    flip(&sim, LSN_START, b);
    assert_sound(&sim, Lsn::NONE, None, LogEnd::TornTail { end: b, stale_until: c + REC });
    // d was appended after b and c were synced: now b is proven durable.
    let d = wal.append(&hdr, &Body::Commit).unwrap();
    wal.flush_all().unwrap();
    assert_damage(&sim, Lsn::NONE, LogEnd::ProvenByLaterRecord { bad: b, proof: d, durable: d }, &[b, d]);
    assert_eq!(a, LSN_START);
}
