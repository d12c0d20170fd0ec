//! Mixed concurrency over a small hot key space: 2 to 4 threads each run a
//! seeded random mix of read-write transactions (transfers read with
//! `get_for_update` or `get`, plain puts and deletes with savepoints, keys
//! moved by scans and by reads for update, audits scanning everything twice),
//! explicit aborts, checkpoints, and read-only snapshots, some held across
//! later operations.
//!
//! What is checked, whatever the interleaving:
//! - every snapshot reads exactly the committed state at its begin (by key,
//!   by scan and by reverse scan, whole and in sub-ranges), tracked by the test
//!   from acknowledged commits;
//! - read-write histories are serializable in commit order: every value a
//!   committed transaction read (point reads, deletes' answers, and the keys
//!   and values its scans returned) equals the committed state just before it
//!   in that order, with its own earlier writes on top;
//! - invariants: the total of the balances and the number of slot keys never
//!   change, in every audit scan, every snapshot and the final state; a range
//!   scanned twice in one transaction gives the same entries;
//! - after the threads finish, the database equals the model and `check()`
//!   passes; no lock, version or snapshot is left.
//!
//! Commit order: a transaction takes a ticket (the next number) after its
//! last lock and before `commit()`, which releases its locks. Two transactions
//! that conflict take their tickets in the order of their conflict, so ticket
//! order is a serialization order under strict two-phase locking; the test
//! applies commits to its model in ticket order. A shared `RwLock` (the commit
//! gate) is held for reading around ticket, `commit()` and bookkeeping, and
//! for writing around `begin_read()` and the copy of the model: the copy is
//! then exactly the acknowledged state at the snapshot's begin. The gate
//! serializes the test's bookkeeping with snapshot begins, not the engine's
//! commits with each other.
//!
//! Seeds and length: `ARIESDB_MIX_SEED` (first seed, 0), `ARIESDB_MIX_SEEDS`
//! (how many, 4), `ARIESDB_MIX_ROUNDS` (operations per thread, 1500). Seed `s`
//! runs `2 + s % 3` threads. A failure prints the seed and the command that
//! reruns it.

mod common;

use std::ops::{Bound, RangeBounds};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError, RwLock};
use std::time::{Duration, Instant};

use ariesdb::{Db, Durability, Error, Options, Snapshot, Txn};
use common::{new_sim, read_all, Model, Pending};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const ACCOUNTS: u32 = 8;
const START_BALANCE: u64 = 1000;
const TOTAL: u64 = ACCOUNTS as u64 * START_BALANCE;
const FREE: u32 = 8;
const SLOTS: u32 = 16;
const TOKENS: usize = 6;

fn acct(i: u32) -> Vec<u8> {
    format!("a{i:02}").into_bytes()
}

fn free(i: u32) -> Vec<u8> {
    format!("f{i:02}").into_bytes()
}

fn slot(i: u32) -> Vec<u8> {
    format!("s{i:02}").into_bytes()
}

fn is_acct(k: &[u8]) -> bool {
    k.first() == Some(&b'a')
}

fn is_slot(k: &[u8]) -> bool {
    k.first() == Some(&b's')
}

/// Every key the workload writes, and a few it never does.
fn universe() -> Vec<Vec<u8>> {
    let mut keys: Vec<Vec<u8>> = (0..ACCOUNTS).map(acct).collect();
    keys.extend((0..FREE).map(free));
    keys.extend((0..SLOTS).map(slot));
    keys.extend([b"0".to_vec(), b"a".to_vec(), b"a99".to_vec(), b"f03x".to_vec(), b"s".to_vec(), b"zz".to_vec()]);
    keys
}

/// A balance and a filler of `pad` bytes, so that before-images are
/// sometimes longer than the 256 bytes the version store copies.
fn balance_value(balance: u64, pad: usize) -> Vec<u8> {
    let mut v = balance.to_le_bytes().to_vec();
    v.extend((0..pad).map(|i| (balance as usize + i) as u8));
    v
}

fn balance_of(v: &[u8]) -> u64 {
    u64::from_le_bytes(v[..8].try_into().expect("a balance is 8 bytes and a filler"))
}

/// A free key's value: mostly short, sometimes past 256 bytes, sometimes in
/// overflow pages.
fn free_value(r: &mut StdRng) -> Vec<u8> {
    let len = match r.gen_range(0..100) {
        0..=69 => r.gen_range(0..100),
        70..=89 => r.gen_range(200..700),
        _ => r.gen_range(1500..5000),
    };
    let b: u8 = r.gen();
    (0..len).map(|i| b.wrapping_add(i as u8)).collect()
}

fn show(k: &[u8]) -> String {
    String::from_utf8_lossy(k).into_owned()
}

fn show_value(v: Option<&Vec<u8>>) -> String {
    match v {
        None => "absent".into(),
        Some(v) if v.len() >= 8 => format!("{} bytes, first 8 as u64 {}", v.len(), balance_of(v)),
        Some(v) => format!("{} bytes {:?}", v.len(), v),
    }
}

fn show_entries(e: &[(Vec<u8>, Vec<u8>)]) -> String {
    let keys: Vec<String> = e.iter().map(|(k, v)| format!("{}({}b)", show(k), v.len())).collect();
    format!("[{}]", keys.join(" "))
}

/// What differs between two lists of entries: keys only in `got`, only in
/// `want`, and with other values.
fn diff(got: &[(Vec<u8>, Vec<u8>)], want: &[(Vec<u8>, Vec<u8>)]) -> String {
    let g: Model = got.iter().cloned().collect();
    let w: Model = want.iter().cloned().collect();
    let extra: Vec<String> = g.keys().filter(|k| !w.contains_key(*k)).map(|k| show(k)).collect();
    let missing: Vec<String> = w.keys().filter(|k| !g.contains_key(*k)).map(|k| show(k)).collect();
    let changed: Vec<String> = g
        .iter()
        .filter_map(|(k, v)| w.get(k).filter(|x| *x != v).map(|x| (k, v, x)))
        .map(|(k, v, x)| format!("{} ({} instead of {})", show(k), show_value(Some(v)), show_value(Some(x))))
        .collect();
    let order = if g.len() == got.len() && got.iter().map(|e| &e.0).eq(g.keys()) { "" } else { "; not in order" };
    format!("extra {extra:?}, missing {missing:?}, different {changed:?}{order}")
}

/// Entries in key order (or in a scan's order).
type Entries = Vec<(Vec<u8>, Vec<u8>)>;

type KeyRange = (Bound<Vec<u8>>, Bound<Vec<u8>>);

fn show_range(r: &KeyRange) -> String {
    let lo = match &r.0 {
        Bound::Included(k) => format!("[{}", show(k)),
        Bound::Excluded(k) => format!("({}", show(k)),
        Bound::Unbounded => "(-inf".into(),
    };
    let hi = match &r.1 {
        Bound::Included(k) => format!("{}]", show(k)),
        Bound::Excluded(k) => format!("{})", show(k)),
        Bound::Unbounded => "+inf)".into(),
    };
    format!("{lo}, {hi}")
}

fn bounds(r: &KeyRange) -> (Bound<&[u8]>, Bound<&[u8]>) {
    (r.0.as_ref().map(|k| k.as_slice()), r.1.as_ref().map(|k| k.as_slice()))
}

/// A random range over the key space, never reversed (BTreeMap refuses those).
fn random_range(r: &mut StdRng) -> KeyRange {
    let keys = universe();
    let mut a = keys[r.gen_range(0..keys.len())].clone();
    let mut b = keys[r.gen_range(0..keys.len())].clone();
    if a > b {
        std::mem::swap(&mut a, &mut b);
    }
    let lo = match r.gen_range(0..5) {
        0 => Bound::Unbounded,
        1 | 2 => Bound::Included(a.clone()),
        _ => Bound::Excluded(a.clone()),
    };
    let hi = match r.gen_range(0..5) {
        0 => Bound::Unbounded,
        1 | 2 => Bound::Included(b.clone()),
        _ => Bound::Excluded(b.clone()),
    };
    if a == b && matches!((&lo, &hi), (Bound::Excluded(_), Bound::Excluded(_))) {
        return (Bound::Included(a), Bound::Included(b));
    }
    (lo, hi)
}

/// The entries of `model` in `range` with `overlay` (a transaction's own
/// writes) on top, ascending.
fn expected_range(model: &Model, overlay: &Pending, range: &KeyRange) -> Entries {
    let b = bounds(range);
    let mut m: Model = model.range::<[u8], _>(b).map(|(k, v)| (k.clone(), v.clone())).collect();
    for (k, v) in overlay {
        if b.contains(k.as_slice()) {
            match v {
                Some(v) => m.insert(k.clone(), v.clone()),
                None => m.remove(k),
            };
        }
    }
    m.into_iter().collect()
}

/// What a read-write transaction read that its own writes did not decide:
/// checked against the committed state just before it in commit order.
enum Read {
    Get {
        key: Vec<u8>,
        got: Option<Vec<u8>>,
    },
    Exists {
        key: Vec<u8>,
        got: bool,
    },
    /// `range` is what the scan covered (narrowed to the last key returned if
    /// it stopped early), `got` ascending, `overlay` the transaction's own
    /// writes at the time.
    Scan {
        range: KeyRange,
        overlay: Pending,
        got: Entries,
    },
}

/// A read-write transaction with what it wrote and read.
struct Tx {
    tx: Txn,
    kind: &'static str,
    pending: Pending,
    reads: Vec<Read>,
}

impl Tx {
    fn get(&mut self, key: &[u8], for_update: bool) -> Result<Option<Vec<u8>>, Error> {
        let got = if for_update { self.tx.get_for_update(key)? } else { self.tx.get(key)? };
        match self.pending.get(key) {
            Some(own) => assert!(
                got == *own,
                "{}: a read of {} after its own write gave {}, wrote {}",
                self.kind,
                show(key),
                show_value(got.as_ref()),
                show_value(own.as_ref())
            ),
            None => self.reads.push(Read::Get { key: key.to_vec(), got: got.clone() }),
        }
        Ok(got)
    }

    fn put(&mut self, key: &[u8], value: Vec<u8>) -> Result<(), Error> {
        self.tx.put(key, &value)?;
        self.pending.insert(key.to_vec(), Some(value));
        Ok(())
    }

    fn delete(&mut self, key: &[u8]) -> Result<bool, Error> {
        let existed = self.tx.delete(key)?;
        match self.pending.get(key) {
            Some(own) => {
                assert_eq!(existed, own.is_some(), "{}: a delete of {} after its own write", self.kind, show(key))
            }
            None => self.reads.push(Read::Exists { key: key.to_vec(), got: existed }),
        }
        self.pending.insert(key.to_vec(), None);
        Ok(existed)
    }

    /// Scan `range` (descending if `rev`), stopping after `limit` entries.
    /// Returns the entries in scan order.
    fn scan(&mut self, range: KeyRange, rev: bool, limit: Option<usize>) -> Result<Entries, Error> {
        let mut got = Vec::new();
        {
            let it = if rev { self.tx.scan_rev(bounds(&range))? } else { self.tx.scan(bounds(&range))? };
            for item in it {
                got.push(item?);
                if limit == Some(got.len()) {
                    break;
                }
            }
        }
        let b = bounds(&range);
        for w in got.windows(2) {
            assert!(
                (w[0].0 < w[1].0) != rev,
                "{}: scan (reverse: {rev}) out of order: {}",
                self.kind,
                show_entries(&got)
            );
        }
        for (k, _) in &got {
            assert!(
                b.contains(k.as_slice()),
                "{}: scan returned {} outside {}",
                self.kind,
                show(k),
                show_range(&range)
            );
        }
        let covered = match (got.last(), limit == Some(got.len())) {
            (Some((last, _)), true) if !rev => (range.0.clone(), Bound::Included(last.clone())),
            (Some((last, _)), true) => (Bound::Included(last.clone()), range.1.clone()),
            _ => range,
        };
        let mut asc = got.clone();
        if rev {
            asc.reverse();
        }
        self.reads.push(Read::Scan { range: covered, overlay: self.pending.clone(), got: asc });
        Ok(got)
    }
}

/// A committed transaction waiting to be applied to the model in ticket order.
struct Committed {
    thread: usize,
    kind: &'static str,
    writes: Pending,
    reads: Vec<Read>,
}

struct Book {
    model: Model,
    /// The next ticket to apply.
    applied: u64,
    waiting: std::collections::BTreeMap<u64, Committed>,
    reads_checked: u64,
    /// Commits acknowledged before an earlier ticket's: applied later, in
    /// ticket order.
    out_of_order: u64,
}

struct Shared {
    /// Read: ticket + commit() + bookkeeping. Write: begin_read() + model copy.
    gate: RwLock<()>,
    next_ticket: AtomicU64,
    book: Mutex<Book>,
    failed: AtomicBool,
}

/// Sets `failed` if dropped while panicking, so the other threads stop.
struct FailFlag<'a>(&'a AtomicBool);

impl Drop for FailFlag<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.store(true, Ordering::SeqCst);
        }
    }
}

impl Shared {
    fn book(&self) -> MutexGuard<'_, Book> {
        self.book.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Commit `tx` and apply it (and any earlier tickets now complete) to the
    /// model, checking each one's reads first.
    fn commit(&self, thread: usize, tx: Tx) {
        let _gate = self.gate.read().unwrap_or_else(PoisonError::into_inner);
        let _flag = FailFlag(&self.failed);
        let ticket = self.next_ticket.fetch_add(1, Ordering::SeqCst);
        let Tx { tx, kind, pending, reads } = tx;
        if let Err(e) = tx.commit() {
            panic!("thread {thread}: commit of a {kind} failed: {e}");
        }
        let mut book = self.book();
        if ticket != book.applied {
            book.out_of_order += 1;
        }
        book.waiting.insert(ticket, Committed { thread, kind, writes: pending, reads });
        loop {
            let next = book.applied;
            let Some(c) = book.waiting.remove(&next) else { break };
            if let Err(msg) = validate(&book.model, &c) {
                panic!(
                    "not serializable in commit order: transaction {next} (thread {}, {}) read {msg}",
                    c.thread, c.kind
                );
            }
            book.reads_checked += c.reads.len() as u64;
            common::apply(&mut book.model, &c.writes);
            book.applied += 1;
        }
    }

    /// A snapshot and the acknowledged state at its begin; None once another
    /// thread failed.
    fn begin_read(&self, db: &Db) -> Option<(Snapshot, Model, u64)> {
        let _gate = self.gate.write().unwrap_or_else(PoisonError::into_inner);
        if self.failed.load(Ordering::SeqCst) {
            return None;
        }
        let book = self.book();
        let issued = self.next_ticket.load(Ordering::SeqCst);
        assert_eq!(book.applied, issued, "with the gate held every commit is acknowledged and applied");
        let snap = db.begin_read().unwrap_or_else(|e| panic!("begin_read: {e}"));
        Some((snap, book.model.clone(), issued))
    }
}

/// Check a committed transaction's reads against `model`, the state just
/// before it in commit order.
fn validate(model: &Model, c: &Committed) -> Result<(), String> {
    for r in &c.reads {
        match r {
            Read::Get { key, got } => {
                if model.get(key) != got.as_ref() {
                    return Err(format!(
                        "{}: {}, but the state before it holds {}",
                        show(key),
                        show_value(got.as_ref()),
                        show_value(model.get(key))
                    ));
                }
            }
            Read::Exists { key, got } => {
                if model.contains_key(key) != *got {
                    return Err(format!(
                        "{} as {} (a delete), but the state before it holds {}",
                        show(key),
                        if *got { "present" } else { "absent" },
                        show_value(model.get(key))
                    ));
                }
            }
            Read::Scan { range, overlay, got } => {
                let want = expected_range(model, overlay, range);
                if want != *got {
                    return Err(format!(
                        "a scan of {} returning {}, but the state before it (with its own writes) holds {}: {}",
                        show_range(range),
                        show_entries(got),
                        show_entries(&want),
                        diff(got, &want)
                    ));
                }
            }
        }
    }
    Ok(())
}

/// The invariants of a whole state: every account there, the total, the
/// number of slot keys.
fn check_invariants(entries: &[(Vec<u8>, Vec<u8>)], ctx: &str) {
    let ctx = &format!("{ctx} {}", show_entries(entries));
    let accounts: Vec<&Vec<u8>> = entries.iter().filter(|(k, _)| is_acct(k)).map(|(_, v)| v).collect();
    assert_eq!(accounts.len(), ACCOUNTS as usize, "{ctx}: accounts missing");
    let total: u64 = accounts.iter().map(|v| balance_of(v)).sum();
    assert_eq!(total, TOTAL, "{ctx}: the total of the balances changed");
    let slots = entries.iter().filter(|(k, _)| is_slot(k)).count();
    assert_eq!(slots, TOKENS, "{ctx}: the number of slot keys changed");
}

/// Everything a snapshot can be asked, against `expect`; reads are spread
/// out with yields so that writers commit in between.
fn check_snapshot(snap: &Snapshot, expect: &Model, r: &mut StdRng, ctx: &str) {
    let want: Entries = expect.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    let got: Entries =
        snap.scan(..).unwrap_or_else(|e| panic!("{ctx}: scan: {e}")).map(|x| x.expect("snapshot scan")).collect();
    assert!(
        got == want,
        "{ctx}: scan gave {}, the state at its begin is {}: {}",
        show_entries(&got),
        show_entries(&want),
        diff(&got, &want)
    );
    check_invariants(&got, ctx);
    std::thread::yield_now();
    for key in universe() {
        let got = snap.get(&key).unwrap_or_else(|e| panic!("{ctx}: get: {e}"));
        assert!(
            got.as_ref() == expect.get(&key),
            "{ctx}: get {} gave {}, the state at its begin holds {}",
            show(&key),
            show_value(got.as_ref()),
            show_value(expect.get(&key))
        );
    }
    std::thread::yield_now();
    let mut back: Entries =
        snap.scan_rev(..).unwrap_or_else(|e| panic!("{ctx}: scan_rev: {e}")).map(|x| x.expect("scan_rev")).collect();
    back.reverse();
    assert!(
        back == want,
        "{ctx}: reverse scan gave {} (reversed), the state at its begin is {}: {}",
        show_entries(&back),
        show_entries(&want),
        diff(&back, &want)
    );
    for _ in 0..2 {
        let range = random_range(r);
        let want = expected_range(expect, &Pending::new(), &range);
        let got: Entries = snap.scan(bounds(&range)).unwrap().map(|x| x.unwrap()).collect();
        assert!(
            got == want,
            "{ctx}: scan of {} gave {}, want {}: {}",
            show_range(&range),
            show_entries(&got),
            show_entries(&want),
            diff(&got, &want)
        );
        std::thread::yield_now();
        let mut back: Entries = snap.scan_rev(bounds(&range)).unwrap().map(|x| x.unwrap()).collect();
        back.reverse();
        assert!(
            back == want,
            "{ctx}: reverse scan of {} gave {} (reversed), want {}: {}",
            show_range(&range),
            show_entries(&back),
            show_entries(&want),
            diff(&back, &want)
        );
    }
}

#[derive(Clone, Copy, Debug)]
enum Op {
    TransferForUpdate,
    TransferWithGet,
    FreeWrites,
    MoveByScan,
    MoveFirstAfter,
    MoveForUpdate,
    Audit,
}

/// Sometimes let the other threads run while this transaction holds its
/// locks (the application's work between read and write).
fn pause(r: &mut StdRng) {
    if r.gen_bool(0.3) {
        std::thread::yield_now();
    }
}

/// Two distinct indexes below `n`.
fn two(r: &mut StdRng, n: u32) -> (u32, u32) {
    let a = r.gen_range(0..n);
    (a, (a + r.gen_range(1..n)) % n)
}

fn token(r: &mut StdRng) -> Vec<u8> {
    format!("token-{}", r.gen::<u32>()).into_bytes()
}

/// One attempt at `op` in `tx`; randomness from `r`, which every attempt of
/// one operation restarts from the same seed.
fn body(op: Op, tx: &mut Tx, r: &mut StdRng) -> Result<(), Error> {
    match op {
        Op::TransferForUpdate | Op::TransferWithGet => {
            let for_update = matches!(op, Op::TransferForUpdate);
            let (from, to) = two(r, ACCOUNTS);
            let (lo, hi) = (from.min(to), from.max(to));
            let lo_balance = balance_of(&tx.get(&acct(lo), for_update)?.expect("an account exists"));
            let hi_balance = balance_of(&tx.get(&acct(hi), for_update)?.expect("an account exists"));
            pause(r);
            let (fb, tb) = if from == lo { (lo_balance, hi_balance) } else { (hi_balance, lo_balance) };
            let amount = r.gen_range(0..=fb.min(60));
            tx.put(&acct(from), balance_value(fb - amount, r.gen_range(0..400)))?;
            tx.put(&acct(to), balance_value(tb + amount, r.gen_range(0..40)))?;
            if r.gen_bool(0.3) {
                tx.put(&free(r.gen_range(0..FREE)), free_value(r))?;
            }
        }
        Op::FreeWrites => {
            let n = r.gen_range(1..=4);
            let mut saved = None;
            for i in 0..n {
                if i > 0 && saved.is_none() && r.gen_bool(0.3) {
                    saved = Some((tx.tx.savepoint()?, tx.pending.clone()));
                }
                let k = free(r.gen_range(0..FREE));
                pause(r);
                if r.gen_bool(0.6) {
                    tx.put(&k, free_value(r))?;
                } else {
                    tx.delete(&k)?;
                }
            }
            if let Some((sp, pending)) = saved {
                if r.gen_bool(0.5) {
                    tx.tx.rollback_to(&sp)?;
                    tx.pending = pending;
                }
            }
        }
        Op::MoveByScan => {
            // Scan all slots, move a present one to an absent one the scan saw.
            let range = (Bound::Included(b"s".to_vec()), Bound::Excluded(b"t".to_vec()));
            let rev = r.gen_bool(0.5);
            let seen = tx.scan(range, rev, None)?;
            assert_eq!(
                seen.len(),
                TOKENS,
                "{}: a read-write scan of the slots (reverse: {rev}) gave {}",
                tx.kind,
                show_entries(&seen)
            );
            let present: Vec<&Vec<u8>> = seen.iter().map(|(k, _)| k).collect();
            let absent: Vec<Vec<u8>> = (0..SLOTS).map(slot).filter(|k| !present.contains(&k)).collect();
            pause(r);
            let victim = present[r.gen_range(0..present.len())].clone();
            let dest = absent[r.gen_range(0..absent.len())].clone();
            let existed = tx.delete(&victim)?;
            assert!(
                existed,
                "{}: {} was in this transaction's scan but its delete found nothing",
                tx.kind,
                show(&victim)
            );
            let there = tx.get(&dest, true)?;
            assert!(
                there.is_none(),
                "{}: {} was absent from this transaction's scan but a read found it",
                tx.kind,
                show(&dest)
            );
            tx.put(&dest, token(r))?;
        }
        Op::MoveFirstAfter => {
            // The first slot key at or after a random point (a scan stopped
            // early), moved to a random slot if that one is free.
            let from = slot(r.gen_range(0..SLOTS));
            let rev = r.gen_bool(0.3);
            let range = if rev {
                (Bound::Included(b"s".to_vec()), Bound::Included(from))
            } else {
                (Bound::Included(from), Bound::Excluded(b"t".to_vec()))
            };
            let first = tx.scan(range, rev, Some(1))?;
            let Some((victim, _)) = first.into_iter().next() else { return Ok(()) };
            pause(r);
            let dest = slot(r.gen_range(0..SLOTS));
            if dest == victim || tx.get(&dest, true)?.is_some() {
                return Ok(());
            }
            let existed = tx.delete(&victim)?;
            assert!(
                existed,
                "{}: {} was returned by this transaction's scan but its delete found nothing",
                tx.kind,
                show(&victim)
            );
            tx.put(&dest, token(r))?;
        }
        Op::MoveForUpdate => {
            let (i, j) = two(r, SLOTS);
            let (lo, hi) = (slot(i.min(j)), slot(i.max(j)));
            let a = tx.get(&lo, true)?;
            let b = tx.get(&hi, true)?;
            pause(r);
            match (a.is_some(), b.is_some()) {
                (true, false) => {
                    tx.delete(&lo)?;
                    tx.put(&hi, token(r))?;
                }
                (false, true) => {
                    tx.delete(&hi)?;
                    tx.put(&lo, token(r))?;
                }
                _ => {}
            }
        }
        Op::Audit => {
            // Everything, or the accounts and the slots apart, each scanned
            // twice (once each way or both the same way): the same entries.
            let ranges: Vec<KeyRange> = if r.gen_bool(0.5) {
                vec![(Bound::Unbounded, Bound::Unbounded)]
            } else {
                vec![
                    (Bound::Included(b"a".to_vec()), Bound::Excluded(b"b".to_vec())),
                    (Bound::Included(b"s".to_vec()), Bound::Unbounded),
                ]
            };
            let mut all = Vec::new();
            for range in ranges {
                let rev1 = r.gen_bool(0.5);
                let mut first = tx.scan(range.clone(), rev1, None)?;
                if r.gen_bool(0.5) {
                    let key = universe()[r.gen_range(0..universe().len())].clone();
                    tx.get(&key, false)?;
                }
                pause(r);
                let rev2 = r.gen_bool(0.5);
                let mut second = tx.scan(range.clone(), rev2, None)?;
                if rev1 {
                    first.reverse();
                }
                if rev2 {
                    second.reverse();
                }
                assert!(
                    first == second,
                    "{}: one range scanned twice in one transaction: {} then {}: {}",
                    tx.kind,
                    show_entries(&first),
                    show_entries(&second),
                    diff(&second, &first)
                );
                all.extend(first);
            }
            check_invariants(&all, "a read-write audit scan");
            if r.gen_bool(0.3) {
                let total: u64 = all.iter().filter(|(k, _)| is_acct(k)).map(|(_, v)| balance_of(v)).sum();
                tx.put(&free(r.gen_range(0..FREE)), format!("audited {total}").into_bytes())?;
            }
        }
    }
    Ok(())
}

#[derive(Debug, Default)]
struct Counts {
    committed: u64,
    aborted: u64,
    deadlocks: u64,
    lock_timeouts: u64,
    snapshots_checked: u64,
    /// Snapshot checks during which some commit happened after their begin.
    snapshots_overtaken: u64,
}

impl Counts {
    fn add(&mut self, o: &Counts) {
        self.committed += o.committed;
        self.aborted += o.aborted;
        self.deadlocks += o.deadlocks;
        self.lock_timeouts += o.lock_timeouts;
        self.snapshots_checked += o.snapshots_checked;
        self.snapshots_overtaken += o.snapshots_overtaken;
    }
}

/// Run `op` until an attempt gets through without a retryable error; then
/// commit it, or roll it back if `abort`.
fn run_op(db: &Db, sh: &Shared, thread: usize, op: Op, op_seed: u64, abort: bool, counts: &mut Counts) {
    for attempt in 0u64.. {
        assert!(attempt < 10_000, "thread {thread}: {op:?} retried 10,000 times");
        let mut r = StdRng::seed_from_u64(op_seed);
        let kind = match op {
            Op::TransferForUpdate => "transfer (get_for_update)",
            Op::TransferWithGet => "transfer (get)",
            Op::FreeWrites => "puts and deletes",
            Op::MoveByScan => "move after a scan of all slots",
            Op::MoveFirstAfter => "move of the first slot key found",
            Op::MoveForUpdate => "move (get_for_update)",
            Op::Audit => "audit",
        };
        let mut tx = Tx { tx: db.begin().expect("begin"), kind, pending: Pending::new(), reads: Vec::new() };
        match body(op, &mut tx, &mut r) {
            Ok(()) if abort => {
                if r.gen_bool(0.5) {
                    tx.tx.abort().expect("abort");
                } else {
                    drop(tx);
                }
                counts.aborted += 1;
                return;
            }
            Ok(()) => {
                sh.commit(thread, tx);
                counts.committed += 1;
                return;
            }
            Err(e) if e.is_retryable() => {
                match e {
                    Error::Deadlock => counts.deadlocks += 1,
                    Error::LockTimeout { .. } => counts.lock_timeouts += 1,
                    other => panic!("thread {thread}: {kind}: unexpected retryable error {other}"),
                }
                drop(tx);
                let mut backoff = StdRng::seed_from_u64(op_seed ^ (attempt + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
                std::thread::sleep(Duration::from_micros(backoff.gen_range(0..300)));
            }
            Err(e) => panic!("thread {thread}: {kind}: {e}"),
        }
    }
}

/// Begin a snapshot and check it at once; first re-check the one this thread
/// holds, and maybe keep the new one for later.
fn snapshot_op(
    db: &Db,
    sh: &Shared,
    thread: usize,
    r: &mut StdRng,
    held: &mut Option<(Snapshot, Model, u64, u64)>,
    counts: &mut Counts,
) {
    if let Some((snap, model, at, n)) = held.take() {
        check_snapshot(&snap, &model, r, &format!("thread {thread}: snapshot {n}, held since ticket {at}"));
        counts.snapshots_checked += 1;
        if sh.next_ticket.load(Ordering::SeqCst) > at {
            counts.snapshots_overtaken += 1;
        }
        if r.gen_bool(0.5) {
            *held = Some((snap, model, at, n));
            return;
        }
    }
    let Some((snap, model, at)) = sh.begin_read(db) else { return };
    let n = counts.snapshots_checked;
    check_snapshot(&snap, &model, r, &format!("thread {thread}: snapshot {n}, begun at ticket {at}"));
    counts.snapshots_checked += 1;
    if sh.next_ticket.load(Ordering::SeqCst) > at {
        counts.snapshots_overtaken += 1;
    }
    if r.gen_bool(0.5) {
        *held = Some((snap, model, at, n));
    }
}

fn worker(db: &Db, sh: &Shared, seed: u64, thread: usize, rounds: u64) -> Counts {
    let _flag = FailFlag(&sh.failed);
    let mut r = StdRng::seed_from_u64(seed.wrapping_mul(1_000_003).wrapping_add(thread as u64));
    let mut counts = Counts::default();
    let mut held = None;
    for _ in 0..rounds {
        if sh.failed.load(Ordering::SeqCst) {
            break;
        }
        let op = match r.gen_range(0..100) {
            0..=19 => Op::TransferForUpdate,
            20..=24 => Op::TransferWithGet,
            25..=39 => Op::FreeWrites,
            40..=47 => Op::MoveByScan,
            48..=53 => Op::MoveFirstAfter,
            54..=61 => Op::MoveForUpdate,
            62..=71 => Op::Audit,
            72..=97 => {
                snapshot_op(db, sh, thread, &mut r, &mut held, &mut counts);
                continue;
            }
            _ => {
                db.checkpoint().expect("checkpoint");
                continue;
            }
        };
        let op_seed: u64 = r.gen();
        let abort = r.gen_bool(0.1);
        run_op(db, sh, thread, op, op_seed, abort, &mut counts);
    }
    if let Some((snap, model, at, n)) = held.take() {
        if !sh.failed.load(Ordering::SeqCst) {
            check_snapshot(
                &snap,
                &model,
                &mut r,
                &format!("thread {thread}: snapshot {n}, held to the end since ticket {at}"),
            );
            counts.snapshots_checked += 1;
        }
    }
    counts
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<String>().cloned().or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default()
}

/// One seeded run; panics on any violation.
fn run(seed: u64, threads: usize, rounds: u64) -> Counts {
    let durability = if seed.is_multiple_of(2) { Durability::Immediate } else { Durability::Eventual };
    let opts = Options::default()
        .buffer_pool_pages(64)
        .wal_segment_bytes(64 << 10)
        .checkpoint_interval_bytes(256 << 10)
        .durability(durability)
        .lock_timeout(Duration::from_secs(5));
    let db = Db::open_with(new_sim(seed), opts).expect("open");
    let mut r = StdRng::seed_from_u64(seed);
    let mut model = Model::new();
    for i in 0..ACCOUNTS {
        model.insert(acct(i), balance_value(START_BALANCE, r.gen_range(0..400)));
    }
    for i in 0..FREE {
        if r.gen_bool(0.5) {
            model.insert(free(i), free_value(&mut r));
        }
    }
    let mut slots: Vec<u32> = (0..SLOTS).collect();
    for _ in 0..TOKENS {
        let s = slots.remove(r.gen_range(0..slots.len()));
        model.insert(slot(s), token(&mut r));
    }
    let mut tx = db.begin().unwrap();
    for (k, v) in &model {
        tx.put(k, v).unwrap();
    }
    tx.commit().unwrap();
    let sh = Shared {
        gate: RwLock::new(()),
        next_ticket: AtomicU64::new(0),
        book: Mutex::new(Book { model, applied: 0, waiting: Default::default(), reads_checked: 0, out_of_order: 0 }),
        failed: AtomicBool::new(false),
    };
    let mut total = Counts::default();
    let mut failures = Vec::new();
    std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads)
            .map(|t| {
                let (db, sh) = (&db, &sh);
                std::thread::Builder::new()
                    .name(format!("mix-{t}"))
                    .spawn_scoped(s, move || worker(db, sh, seed, t, rounds))
                    .expect("spawn")
            })
            .collect();
        for (t, h) in hs.into_iter().enumerate() {
            match h.join() {
                Ok(c) => total.add(&c),
                Err(p) => failures.push(format!("[thread {t} panicked] {}", panic_message(&*p))),
            }
        }
    });
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    let book = sh.book();
    assert_eq!(book.applied, sh.next_ticket.load(Ordering::SeqCst), "every ticket applied");
    assert!(book.waiting.is_empty());
    let stats = db.stats();
    assert_eq!(stats.commits, 1 + total.committed, "commits counted by the engine");
    assert_eq!(stats.deadlocks, total.deadlocks, "deadlocks counted by the engine");
    assert_eq!(stats.lock_timeouts, total.lock_timeouts, "lock timeouts counted by the engine");
    assert_eq!(stats.snapshots_open, 0);
    assert_eq!(stats.snapshot_version_keys, 0, "versions left with no snapshot open");
    assert_eq!(stats.locked_keys, 0, "locks left with no transaction open");
    let state = read_all(&db).expect("read back and check()");
    let entries: Entries = state.clone().into_iter().collect();
    check_invariants(&entries, "the final state");
    let want: Entries = book.model.clone().into_iter().collect();
    assert!(state == book.model, "the final state differs from the model: {}", diff(&entries, &want));
    eprintln!(
        "seed {seed}: {} reads of committed transactions checked; {} commits acknowledged ahead of an earlier ticket",
        book.reads_checked, book.out_of_order
    );
    drop(book);
    db.close().expect("close");
    total
}

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|s| s.parse().ok()).unwrap_or(default)
}

#[test]
fn snapshots_scans_and_reads_for_update_over_hot_keys_stay_serializable() {
    let first = env("ARIESDB_MIX_SEED", 0);
    let seeds = env("ARIESDB_MIX_SEEDS", 4);
    let rounds = env("ARIESDB_MIX_ROUNDS", 1500);
    let mut all = Counts::default();
    for seed in first..first + seeds {
        let threads = 2 + (seed % 3) as usize;
        let t0 = Instant::now();
        match std::panic::catch_unwind(|| run(seed, threads, rounds)) {
            Ok(c) => {
                eprintln!("seed {seed}: {threads} threads x {rounds} rounds in {:?}: {c:?}", t0.elapsed());
                assert!(c.committed > 0, "seed {seed}: nothing committed");
                all.add(&c);
            }
            Err(p) => panic!(
                "mixed concurrency failed at seed {seed} ({threads} threads, {rounds} rounds): {}\n\
                 reproduce: ARIESDB_MIX_SEED={seed} ARIESDB_MIX_SEEDS=1 ARIESDB_MIX_ROUNDS={rounds} cargo test --test mixed_concurrency",
                panic_message(&*p)
            ),
        }
    }
    assert!(all.snapshots_checked > 0, "no snapshot checked");
    assert!(all.snapshots_overtaken > 0, "no snapshot was overtaken by a commit: the checks proved nothing");
}
