//! Property test against a model: random operations over several open
//! transactions, with power losses on SimStorage; after every recovery the
//! database equals the model of committed state and `check()` passes.

mod common;

use ariesdb::{Db, Savepoint, Txn};
use common::*;
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Put(u8, u16, u16),
    Delete(u8, u16),
    Get(u8, u16),
    Commit(u8),
    Abort(u8),
    Savepoint(u8),
    RollbackTo(u8),
    Checkpoint,
    Crash,
}

fn op() -> impl Strategy<Value = Op> {
    let lane = 0u8..3;
    let key = 0u16..60;
    prop_oneof![
        6 => (lane.clone(), key.clone(), prop_oneof![0u16..100, 100u16..3000, 3000u16..9000]).prop_map(|(l, k, n)| Op::Put(l, k, n)),
        4 => (lane.clone(), key.clone()).prop_map(|(l, k)| Op::Delete(l, k)),
        2 => (lane.clone(), key).prop_map(|(l, k)| Op::Get(l, k)),
        2 => lane.clone().prop_map(Op::Commit),
        1 => lane.clone().prop_map(Op::Abort),
        1 => lane.clone().prop_map(Op::Savepoint),
        1 => lane.prop_map(Op::RollbackTo),
        1 => Just(Op::Checkpoint),
        1 => Just(Op::Crash),
    ]
}

struct Lane {
    tx: Txn,
    pending: Pending,
    savepoint: Option<(Savepoint, Pending)>,
}

/// Keys of many lengths, 1 to 1024 bytes, some sharing a 1000-byte prefix,
/// so that separators, splits and merges meet every size of cell. Each
/// lane's keys begin with its own letter, so that the lanes' key ranges are
/// apart and the next-key locks of one never fall in another's range (one
/// thread drives all three: a wait would last until the lock timeout).
fn key_of(lane: u8, k: u16) -> Vec<u8> {
    let mut key = key_in_lane(lane, k);
    key[0] = b'a' + lane;
    key
}

/// A committed key after each of the first two lanes' ranges, never
/// changed: the gap lock an insert or delete of a lane's last key takes
/// falls on it.
const LANE_ENDS: [&[u8]; 2] = [b"a\xff", b"b\xff"];

fn key_in_lane(lane: u8, k: u16) -> Vec<u8> {
    if k == 59 {
        return vec![b'0' + lane];
    }
    let id = format!("{lane}{k:02}").into_bytes();
    let (prefix, len) = match k % 6 {
        0 => (0, 3),
        1 => (0, 16),
        2 => (0, 200),
        3 => (0, 1024),
        4 => (1000, 1003),
        _ => (1000, 1024),
    };
    let mut key = vec![b'p'; prefix];
    key.extend_from_slice(&id);
    key.resize(len, b'z');
    key
}

fn run(seed: u64, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let sim = new_sim(seed);
    let opts = small_opts();
    let mut db = Db::open_with(sim.clone(), opts.clone()).unwrap();
    let mut model = Model::new();
    let mut tx = db.begin().unwrap();
    for end in LANE_ENDS {
        tx.put(end, b"lane end").unwrap();
        model.insert(end.to_vec(), b"lane end".to_vec());
    }
    tx.commit().unwrap();
    let mut lanes: Vec<Option<Lane>> = vec![None, None, None];
    for op in ops {
        let lane_of = |l: u8, lanes: &mut Vec<Option<Lane>>, db: &Db| {
            if lanes[l as usize].is_none() {
                lanes[l as usize] = Some(Lane { tx: db.begin().unwrap(), pending: Pending::new(), savepoint: None });
            }
        };
        match op {
            Op::Put(l, k, n) => {
                lane_of(l, &mut lanes, &db);
                let lane = lanes[l as usize].as_mut().unwrap();
                let v: Vec<u8> = (0..n).map(|i| (i as u8).wrapping_mul(k as u8 | 1)).collect();
                lane.tx.put(key_of(l, k), &v).unwrap();
                lane.pending.insert(key_of(l, k), Some(v));
            }
            Op::Delete(l, k) => {
                lane_of(l, &mut lanes, &db);
                let lane = lanes[l as usize].as_mut().unwrap();
                let existed = lane.tx.delete(key_of(l, k)).unwrap();
                let expect = match lane.pending.get(&key_of(l, k)) {
                    Some(v) => v.is_some(),
                    None => model.contains_key(&key_of(l, k)),
                };
                prop_assert_eq!(existed, expect);
                lane.pending.insert(key_of(l, k), None);
            }
            Op::Get(l, k) => {
                lane_of(l, &mut lanes, &db);
                let lane = lanes[l as usize].as_mut().unwrap();
                let got = lane.tx.get(key_of(l, k)).unwrap();
                let expect = match lane.pending.get(&key_of(l, k)) {
                    Some(v) => v.clone(),
                    None => model.get(&key_of(l, k)).cloned(),
                };
                prop_assert_eq!(got, expect);
            }
            Op::Commit(l) => {
                if let Some(lane) = lanes[l as usize].take() {
                    lane.tx.commit().unwrap();
                    apply(&mut model, &lane.pending);
                }
            }
            Op::Abort(l) => {
                if let Some(lane) = lanes[l as usize].take() {
                    lane.tx.abort().unwrap();
                }
            }
            Op::Savepoint(l) => {
                lane_of(l, &mut lanes, &db);
                let lane = lanes[l as usize].as_mut().unwrap();
                lane.savepoint = Some((lane.tx.savepoint().unwrap(), lane.pending.clone()));
            }
            Op::RollbackTo(l) => {
                if let Some(lane) = lanes[l as usize].as_mut() {
                    if let Some((sp, pending)) = lane.savepoint.clone() {
                        lane.tx.rollback_to(&sp).unwrap();
                        lane.pending = pending;
                    }
                }
            }
            Op::Checkpoint => db.checkpoint().unwrap(),
            Op::Crash => {
                sim.power_loss();
                // The old Db and its transactions die with the power. Their
                // shutdown code (a rollback, the log flush of `Drop for Db`)
                // runs when they are dropped, but a Db is bound to the
                // simulated machine's life at open: after the power loss every
                // storage call it makes is refused, so it writes nothing into
                // its successor's files (tests/shutdown.rs checks that).
                lanes = vec![None, None, None];
                drop(db);
                db = Db::open_with(sim.clone(), opts.clone()).unwrap();
                let got = read_all(&db).unwrap();
                prop_assert_eq!(got.len(), model.len());
                prop_assert!(got == model, "recovered state differs from the model");
            }
        }
    }
    drop(lanes);
    sim.power_loss();
    drop(db);
    let db = Db::open_with(sim.clone(), opts).unwrap();
    prop_assert!(read_all(&db).unwrap() == model);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("ARIESDB_PROPTEST_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(2000),
        ..ProptestConfig::default()
    })]
    #[test]
    fn random_ops_with_crashes_match_the_model(seed in 0u64..1_000_000, ops in prop::collection::vec(op(), 1..120)) {
        run(seed, ops)?;
    }
}
