//! The bodies of the fuzz targets in `fuzz/`, as plain functions, so that a
//! stable `cargo test` runs them over the checked-in corpus too
//! (`tests/fuzz_corpus.rs`). Each must return normally for every input: Ok or
//! a clean error from the engine, never a panic, a hang or an unbounded
//! allocation. Not a stable API.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::codec::Reader;
use crate::page::{self, LeafCell, Meta, PageRef, PageState, PageType};
use crate::storage::{Fault, SimStorage, Storage};
use crate::types::Lsn;
use crate::wal::{decode_record, encode_record, segment_name, RecordHeader};
use crate::{Db, Durability, Options, Txn};

fn fuzz_opts() -> Options {
    Options::default()
        .buffer_pool_pages(24)
        .background_writer(false)
        .checkpoint_interval_bytes(0)
        .wal_segment_bytes(64 << 10)
}

/// Encode a set of files as one `recover` input: per file a tag (0: the data
/// file, 1: a log segment followed by its start LSN as u64), a u32 length,
/// the bytes.
pub fn encode_files(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, bytes) in files {
        if name == crate::DATA_FILE {
            out.push(0);
        } else if let Some(start) = crate::wal::parse_segment_name(name) {
            out.push(1);
            out.extend_from_slice(&start.get().to_le_bytes());
        } else {
            continue;
        }
        out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        out.extend_from_slice(bytes);
    }
    out
}

/// Decode a `recover` input into files (at most 8; lengths bounded by the input).
pub fn decode_files(input: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut r = Reader::new(input, "fuzz");
    let mut files = Vec::new();
    while files.len() < 8 {
        let Ok(tag) = r.u8() else { break };
        let name = match tag % 2 {
            0 => crate::DATA_FILE.to_string(),
            _ => match r.lsn() {
                Ok(start) => segment_name(start),
                Err(_) => break,
            },
        };
        let len = match r.u32() {
            Ok(n) => (n as usize).min(r.remaining()),
            Err(_) => break,
        };
        let Ok(bytes) = r.bytes(len) else { break };
        files.push((name, bytes.to_vec()));
    }
    files
}

/// Target `recover`: arbitrary bytes become the data file and log segments;
/// open (recovery), `check()`, a full scan, and every scanned key read back.
pub fn recover(input: &[u8]) {
    let sim = Arc::new(SimStorage::new(0));
    sim.set_torn_writes(false);
    for (name, bytes) in decode_files(input) {
        let f = sim.open(&name).expect("sim open");
        f.write_all_at(&bytes, 0).expect("sim write");
        f.sync_data().expect("sim sync");
    }
    sim.sync_dir().expect("sim sync_dir");
    let Ok(db) = Db::open_with(sim, fuzz_opts()) else { return };
    let _ = db.check();
    let Ok(tx) = db.begin() else { return };
    let Ok(scan) = tx.scan(..) else { return };
    let mut seen: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    for item in scan.take(100_000) {
        match item {
            Ok(kv) => {
                if let Some((last, _)) = seen.last() {
                    assert!(*last < kv.0, "scan out of order");
                }
                seen.push(kv);
            }
            Err(_) => return,
        }
    }
    for (k, v) in &seen {
        match tx.get(k) {
            Ok(got) => assert_eq!(got.as_ref(), Some(v), "get disagrees with scan"),
            Err(_) => return,
        }
    }
    let _ = tx.commit();
    let _ = db.close();
}

/// Target `wal_record`: decode a log record; a record that decodes encodes
/// back to the same bytes.
pub fn wal_record(input: &[u8]) {
    let Some(lsn) = input.get(8..16).map(|b| Lsn(u64::from_le_bytes(b.try_into().expect("8")))) else { return };
    let Ok(rec) = decode_record(input, lsn) else { return };
    let mut out = Vec::new();
    let header = RecordHeader { prev_lsn: rec.prev_lsn, txn_id: rec.txn_id, undo_next_lsn: rec.undo_next_lsn };
    let len = encode_record(&mut out, lsn, rec.durable_lsn, &header, &rec.body);
    assert_eq!(len, rec.len as usize);
    assert_eq!(&out[..], &input[..len], "re-encoding a decoded record changed it");
}

/// Target `page`: verify a page image; walk a valid one through every
/// accessor; then apply redo ops decoded from the rest of the input.
pub fn page(input: &[u8]) {
    const SIZE: usize = 4096;
    let mut p = vec![0u8; SIZE];
    let n = input.len().min(SIZE);
    p[..n].copy_from_slice(&input[..n]);
    let page_id = p.page_id();
    if page::verify(&p, page_id) == PageState::Valid {
        walk_page(&p);
    }
    let mut r = Reader::new(input.get(SIZE..).unwrap_or(&[]), "fuzz");
    for _ in 0..16 {
        let Ok(op) = page::PageOp::decode(&mut r) else { break };
        if page::apply(&mut p, page_id, &op).is_ok() {
            let lsn = p.page_lsn().max(p.fpi_lsn());
            page::set_page_lsn(&mut p, lsn);
            let mut sealed = p.clone();
            page::seal(&mut sealed);
            if page::verify(&sealed, page_id) == PageState::Valid {
                walk_page(&sealed);
            }
        }
    }
}

fn walk_page(p: &[u8]) {
    match p.page_type() {
        Some(PageType::Leaf) => {
            for i in 0..p.slot_count() {
                let c = LeafCell::at(p, i);
                assert!(!c.key.is_empty());
                let _ = page::search(p, c.key);
            }
        }
        Some(PageType::Inner) => {
            for i in 0..p.slot_count() {
                let _ = (page::cell_key(p, i), page::inner_child(p, i));
            }
            let _ = page::search(p, b"m");
        }
        Some(PageType::Meta) => {
            let _ = Meta::read(p);
        }
        Some(PageType::Overflow) => {
            let _ = page::overflow_data(p);
        }
        Some(PageType::Free) | None => {}
    }
    let _ = page::free_space(p);
}

/// Committed state by key, and the changes of one transaction (None: delete).
type Model = BTreeMap<Vec<u8>, Vec<u8>>;
type Pending = BTreeMap<Vec<u8>, Option<Vec<u8>>>;
/// An open transaction and its changes.
type Lane = Option<(Txn, Pending)>;

/// Target `crash_ops`: bytes drive a workload over three transactions on
/// SimStorage, a crash (power loss or process crash) at a chosen storage
/// call, then recovery; the recovered state must equal the committed state
/// (a commit in flight at the crash may be there or not, whole).
pub fn crash_ops(input: &[u8]) {
    let mut r = Reader::new(input, "fuzz");
    let seed = r.u64().unwrap_or(0);
    let crash_after = r.u16().unwrap_or(u16::MAX) as u64;
    let power = r.u8().unwrap_or(0).is_multiple_of(2);
    let sim = Arc::new(SimStorage::new(seed));
    let opts = fuzz_opts().durability(Durability::Immediate);
    let Ok(db) = Db::open_with(sim.clone(), opts.clone()) else { panic!("fresh open failed") };
    // A key between each two lanes' keys ("0:..." < "0;" < "1:..."), never
    // changed: the next-key locks one lane takes (the key after one it
    // inserts or deletes) stay in its range or land on one of these, so the
    // lanes, driven by one thread, never wait for each other.
    let mut model = Model::new();
    let mut tx = db.begin().expect("begin");
    for sep in [b"0;", b"1;"] {
        tx.put(sep, b"lane end").expect("put");
        model.insert(sep.to_vec(), b"lane end".to_vec());
    }
    tx.commit().expect("commit");
    sim.inject(Fault::CrashAtOp(sim.op_count() + crash_after));
    // Transactions still open at the crash stay open until after it: they
    // are losers for recovery, not rolled back by this process.
    let mut lanes: Vec<Lane> = vec![None, None, None];
    let (model, in_doubt) = run_until_crash(&mut r, &db, &mut lanes, model);
    if power {
        sim.power_loss();
    } else {
        sim.process_crash();
    }
    // The old Db is bound to the machine's life before the crash: dropping
    // it and its transactions writes nothing (see `storage::ProcessStorage`).
    drop(lanes);
    drop(db);
    sim.clear_faults();
    let db = Db::open_with(sim, opts).unwrap_or_else(|e| panic!("recovery failed: {e}"));
    db.check().unwrap_or_else(|e| panic!("check after recovery: {e}"));
    let tx = db.begin().expect("begin");
    let got: Model = tx.scan(..).expect("scan").map(|x| x.expect("item")).collect();
    if got != model {
        let mut with = model.clone();
        if let Some(p) = &in_doubt {
            apply(&mut with, p);
        }
        if got != with {
            let diff: Vec<String> = got
                .keys()
                .chain(with.keys())
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .filter(|k| got.get(*k) != with.get(*k))
                .map(|k| {
                    let short =
                        |v: Option<&Vec<u8>>| v.map(|v| String::from_utf8_lossy(&v[..v.len().min(12)]).into_owned());
                    format!(
                        "{:?}: got {:?}, committed {:?}",
                        String::from_utf8_lossy(&k[..k.len().min(8)]),
                        short(got.get(k)),
                        short(with.get(k))
                    )
                })
                .collect();
            panic!("recovered state is not the committed state: {}", diff.join("; "));
        }
    }
}

/// Run the workload the bytes describe on three lanes of transactions until
/// the bytes end, 400 steps, or the first failed call (the crash), from the
/// committed state `model`. Returns the committed state and the changes of
/// a commit that failed (in doubt: all there or none).
fn run_until_crash(r: &mut Reader<'_>, db: &Db, lanes: &mut [Lane], mut model: Model) -> (Model, Option<Pending>) {
    let mut in_doubt = None;
    let mut steps = 0;
    while let (Ok(op), true) = (r.u8(), steps < 400) {
        steps += 1;
        let lane = (op % 3) as usize;
        // Keys of 3 to 1004 bytes, so that splits, merges and separators of
        // every size of cell are reached.
        let kb = r.u8().unwrap_or(0);
        let mut key = format!("{lane}:{}", kb % 32).into_bytes();
        key.resize(key.len() + [0, 0, 300, 1000][(kb / 32 % 4) as usize], b'x');
        if lanes[lane].is_none() {
            match db.begin() {
                Ok(tx) => lanes[lane] = Some((tx, Pending::new())),
                Err(_) => break,
            }
        }
        let ok = match (op / 3) % 6 {
            0..=2 => {
                let (tx, pending) = lanes[lane].as_mut().expect("lane");
                let value = ((op / 3) % 6 < 2).then(|| vec![op; [0usize, 10, 100, 900, 5000][(op as usize / 18) % 5]]);
                pending.insert(key.clone(), value.clone());
                match value {
                    Some(v) => tx.put(&key, &v).is_ok(),
                    None => tx.delete(&key).is_ok(),
                }
            }
            3 => {
                let (tx, pending) = lanes[lane].take().expect("lane");
                let committed = tx.commit().is_ok();
                match committed {
                    true => apply(&mut model, &pending),
                    false => in_doubt = Some(pending),
                }
                committed
            }
            4 => lanes[lane].take().expect("lane").0.abort().is_ok(),
            _ => db.checkpoint().is_ok(),
        };
        if !ok {
            break;
        }
    }
    (model, in_doubt)
}

fn apply(model: &mut Model, pending: &Pending) {
    for (k, v) in pending {
        match v {
            Some(v) => model.insert(k.clone(), v.clone()),
            None => model.remove(k),
        };
    }
}
