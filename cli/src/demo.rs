//! `demo`: the story of a crash and its recovery.
//!
//! The parent re-executes this binary as a child (`demo-child`) that runs a
//! bank: threads transferring money between accounts in transactions, some
//! aborted, some rolled back to a savepoint, deadlock victims retried. Each
//! transfer writes a marker key `xfer:<thread>:<seq>` = `<from> <to> <amount>`,
//! and the child prints `ACK <thread> <seq>` once `commit()` has returned. Two
//! "batch" transactions stay open on purpose (a long job still running at the
//! crash). When the child has transactions open, pages written by the buffer
//! pool (steals) and a checkpoint behind it, it prints `READY`; the parent lets
//! it run a moment longer and kills it with SIGKILL. Then it reopens the
//! database (restart recovery), prints the recovery report pass by pass, and
//! checks: the total of the balances is unchanged, every acknowledged transfer
//! is there, every account's balance is exactly what the committed transfers
//! say, and nothing of an aborted transfer, a rolled-back savepoint or an open
//! batch survived.

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use ariesdb::internals::parse_segment_name;
use ariesdb::{Db, Options, Txn, DATA_FILE};

use crate::logger::LogLevel;
use crate::util::{list_files, size, CliError, LOCK_FILE};

/// Starting balance of every account.
const INITIAL: u64 = 1000;
/// Accounts `0..BATCH_ACCOUNTS` belong to the two batch transactions that
/// stay open; the transfer threads use the others.
const BATCH_ACCOUNTS: u32 = 10;
/// How many times the whole run is tried if the kill lands where recovery has
/// nothing to show (no loser or nothing redone).
const ATTEMPTS: u32 = 3;

fn opts() -> Options {
    // A small buffer pool forces steals: dirty pages of open transactions are
    // written before they commit. A small checkpoint interval gives automatic
    // checkpoints and small log segments. The classic restart shows the
    // three passes one after the other (instant restart would leave most of
    // the redo to the first reads).
    Options::default().buffer_pool_pages(64).checkpoint_interval_bytes(1 << 20).instant_restart(false)
}

fn acct(i: u32) -> Vec<u8> {
    format!("acct:{i:06}").into_bytes()
}

fn balance(tx: &mut Txn, i: u32) -> ariesdb::Result<u64> {
    let v = tx.get(acct(i))?.unwrap_or_default();
    Ok(std::str::from_utf8(&v).ok().and_then(|s| s.parse().ok()).unwrap_or(0))
}

fn set_balance(tx: &mut Txn, i: u32, b: u64) -> ariesdb::Result<()> {
    tx.put(acct(i), b.to_string().as_bytes())
}

/// xorshift64*: no dependency needed for a demo's randomness.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn say(out: &Mutex<std::io::Stdout>, line: &str) {
    let o = out.lock().unwrap_or_else(|e| e.into_inner());
    let mut l = o.lock();
    let _ = writeln!(l, "{line}");
    let _ = l.flush();
}

/// How one transfer ended.
enum Outcome {
    Committed,
    Aborted,
}

/// One transfer: debit `a`, credit `b`, write the marker. Every 7th also
/// charges a fee after a savepoint and rolls back to the savepoint; every 10th
/// aborts at the end.
fn transfer(db: &Db, w: u32, seq: u64, a: u32, b: u32, amount: u64) -> ariesdb::Result<Outcome> {
    let mut tx = db.begin()?;
    let ba = balance(&mut tx, a)?;
    let bb = balance(&mut tx, b)?;
    let amount = amount.min(ba);
    set_balance(&mut tx, a, ba - amount)?;
    set_balance(&mut tx, b, bb + amount)?;
    if seq % 7 == 3 {
        let sp = tx.savepoint()?;
        tx.put(format!("fee:{w:02}:{seq:08}").as_bytes(), b"1")?;
        set_balance(&mut tx, a, ba - amount - amount.min(1))?;
        tx.rollback_to(&sp)?;
    }
    tx.put(format!("xfer:{w:02}:{seq:08}").as_bytes(), format!("{a} {b} {amount}").as_bytes())?;
    if seq % 10 == 9 {
        tx.abort()?;
        return Ok(Outcome::Aborted);
    }
    tx.commit()?;
    Ok(Outcome::Committed)
}

/// The child: the workload that gets killed.
pub fn child(dir: &Path, accounts: u32, threads: u32) -> Result<(), CliError> {
    let out = Arc::new(Mutex::new(std::io::stdout()));
    let db = Arc::new(Db::open_path_with(dir, opts())?);
    for chunk in (0..accounts).collect::<Vec<_>>().chunks(200) {
        let mut tx = db.begin()?;
        for &i in chunk {
            set_balance(&mut tx, i, INITIAL)?;
        }
        tx.commit()?;
    }
    db.checkpoint()?;
    say(&out, &format!("SETUP {accounts}"));

    let acks = Arc::new(AtomicU64::new(0));
    let aborted = Arc::new(AtomicU64::new(0));
    let retries = Arc::new(AtomicU64::new(0));
    let batches_open = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut handles = Vec::new();

    // Two batch jobs: a few transfers among their own accounts (one of them
    // rolled back to a savepoint), then they stay open until the kill.
    for s in 0..2u32 {
        let (db, open, stop) = (db.clone(), batches_open.clone(), stop.clone());
        handles.push(std::thread::spawn(move || -> ariesdb::Result<()> {
            let base = s * (BATCH_ACCOUNTS / 2);
            let mut tx = db.begin()?;
            for k in 0..6u32 {
                let sp = tx.savepoint()?;
                let (a, b) = (base + k % 5, base + (k + 1) % 5);
                let (ba, bb) = (balance(&mut tx, a)?, balance(&mut tx, b)?);
                set_balance(&mut tx, a, ba - 10)?;
                set_balance(&mut tx, b, bb + 10)?;
                tx.put(format!("batch:{s}:{k}").as_bytes(), format!("{a} {b} 10").as_bytes())?;
                if k == 2 {
                    tx.rollback_to(&sp)?;
                }
            }
            open.fetch_add(1, Ordering::SeqCst);
            while !stop.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(20));
            }
            tx.abort()
        }));
    }

    for w in 0..threads {
        let (db, out, acks, aborted, retries, stop) =
            (db.clone(), out.clone(), acks.clone(), aborted.clone(), retries.clone(), stop.clone());
        handles.push(std::thread::spawn(move || -> ariesdb::Result<()> {
            let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (u64::from(w) + 1).wrapping_mul(0x1234_5678_9abc_def1));
            let span = u64::from(accounts - BATCH_ACCOUNTS);
            let mut seq = 0u64;
            while !stop.load(Ordering::SeqCst) {
                let a = BATCH_ACCOUNTS + rng.below(span) as u32;
                let mut b = BATCH_ACCOUNTS + rng.below(span) as u32;
                if a == b {
                    b = BATCH_ACCOUNTS + (b - BATCH_ACCOUNTS + 1) % span as u32;
                }
                let amount = 1 + rng.below(100);
                loop {
                    match transfer(&db, w, seq, a, b, amount) {
                        Ok(Outcome::Committed) => {
                            acks.fetch_add(1, Ordering::Relaxed);
                            say(&out, &format!("ACK {w} {seq}"));
                        }
                        Ok(Outcome::Aborted) => {
                            aborted.fetch_add(1, Ordering::Relaxed);
                            say(&out, &format!("ABORTED {w} {seq}"));
                        }
                        Err(e) if e.is_retryable() => {
                            retries.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                        Err(e) => return Err(e),
                    }
                    break;
                }
                seq += 1;
            }
            Ok(())
        }));
    }

    // Watch, report progress, and say READY once a crash would show every
    // part of recovery: batches open, a checkpoint taken while they are,
    // pages written by the pool, and commits since (which flush the log
    // records of the open batches too).
    let start = Instant::now();
    let mut ckpt_at_acks: Option<u64> = None;
    let mut ready = false;
    loop {
        std::thread::sleep(Duration::from_millis(100));
        let st = db.stats();
        let n = acks.load(Ordering::Relaxed);
        say(
            &out,
            &format!(
                "PROGRESS {} {} {} {} {} {}",
                n,
                aborted.load(Ordering::Relaxed),
                retries.load(Ordering::Relaxed),
                st.pages_written,
                st.checkpoints,
                batches_open.load(Ordering::SeqCst)
            ),
        );
        if ckpt_at_acks.is_none() && batches_open.load(Ordering::SeqCst) == 2 {
            db.checkpoint()?;
            ckpt_at_acks = Some(n);
        }
        if !ready && ckpt_at_acks.is_some_and(|c| n >= c + 200) && st.pages_written > 0 {
            say(&out, &format!("READY {n} {}", st.pages_written));
            ready = true;
        }
        if start.elapsed() > Duration::from_secs(120) || handles.iter().any(|h| h.is_finished()) {
            // Not killed (or a thread failed): stop rather than run forever.
            stop.store(true, Ordering::SeqCst);
            for h in handles {
                if let Ok(Err(e)) = h.join() {
                    return Err(e.into());
                }
            }
            return Err(CliError::Other("the demo workload was not killed in time".into()));
        }
    }
}

/// What the parent learned from the child's output.
#[derive(Default)]
struct Seen {
    acked: HashSet<(u32, u64)>,
    aborted: HashSet<(u32, u64)>,
    progress: [u64; 6],
    setup: bool,
    ready: bool,
}

impl Seen {
    fn take(&mut self, line: &str) {
        let f: Vec<&str> = line.split_whitespace().collect();
        let num = |i: usize| f.get(i).and_then(|s| s.parse::<u64>().ok());
        match f.first().copied() {
            Some("ACK") => {
                if let (Some(w), Some(s)) = (num(1), num(2)) {
                    self.acked.insert((w as u32, s));
                }
            }
            Some("ABORTED") => {
                if let (Some(w), Some(s)) = (num(1), num(2)) {
                    self.aborted.insert((w as u32, s));
                }
            }
            Some("PROGRESS") => {
                for i in 0..6 {
                    if let Some(v) = num(i + 1) {
                        self.progress[i] = v;
                    }
                }
            }
            Some("SETUP") => self.setup = true,
            Some("READY") => self.ready = true,
            _ => {}
        }
    }

    fn progress_line(&self, t: Duration) -> String {
        let p = &self.progress;
        format!(
            "  [{:>5.1}s] {} transfers acknowledged, {} aborted, {} retried after a deadlock, \
             {} pages written by the buffer pool, {} checkpoints, {} batch transactions open",
            t.as_secs_f64(),
            p[0],
            p[1],
            p[2],
            p[3],
            p[4],
            p[5]
        )
    }
}

/// The file that marks a directory as the demo's own, so that it may delete
/// it: a database the demo did not make is never deleted.
const DEMO_MARK: &str = "ARIESDB-DEMO";

/// Refuse a path the demo may not delete and recreate: anything but a
/// directory, a directory that holds anything but a demo database, or one in
/// use by another process. Run before the demo prints its story and again
/// before each run.
fn refuse_foreign(dir: &Path) -> Result<(), CliError> {
    if dir.exists() {
        if !dir.is_dir() {
            return Err(CliError::Other(format!(
                "{} exists and is not a directory; give the demo a new or demo directory",
                dir.display()
            )));
        }
        let files = list_files(dir)?;
        let mut foreign: Vec<String> = files
            .iter()
            .map(|(n, _)| n)
            .filter(|n| *n != DATA_FILE && *n != LOCK_FILE && *n != DEMO_MARK && parse_segment_name(n).is_none())
            .cloned()
            .collect();
        let mut subdirs: Vec<String> = std::fs::read_dir(dir)?
            .filter_map(|e| e.ok())
            .filter(|e| e.path().is_dir())
            .map(|e| format!("{}/", e.file_name().to_string_lossy()))
            .collect();
        subdirs.sort();
        foreign.extend(subdirs);
        if !foreign.is_empty() {
            return Err(CliError::Other(format!(
                "{} exists and holds files that are not an ariesdb database ({}); \
                 the demo recreates its directory, so give it a new or demo directory",
                dir.display(),
                foreign.join(", ")
            )));
        }
        let is_db = files.iter().any(|(n, _)| n == DATA_FILE || parse_segment_name(n).is_some());
        if is_db && !files.iter().any(|(n, _)| n == DEMO_MARK) {
            return Err(CliError::Other(format!(
                "{} holds an ariesdb database that the demo did not make (it has no {DEMO_MARK} file); \
                 the demo deletes and recreates its directory, so give it a new or demo directory",
                dir.display()
            )));
        }
        crate::util::ensure_not_in_use(dir)?;
    }
    Ok(())
}

/// Delete and recreate the demo's directory, refusing one that is not the
/// demo's own.
fn reset_dir(dir: &Path) -> Result<(), CliError> {
    refuse_foreign(dir)?;
    if dir.exists() {
        std::fs::remove_dir_all(dir)?;
    }
    std::fs::create_dir_all(dir)?;
    std::fs::write(
        dir.join(DEMO_MARK),
        "made by `ariesdb demo`, which may delete this directory when it runs again\n",
    )?;
    Ok(())
}

/// Run the child, kill it once it is READY (after `linger`), return what it said.
/// The child logs at `log_level` if one was given (else as `ARIESDB_LOG`
/// says, or warnings only).
fn crash_run(
    dir: &Path,
    accounts: u32,
    threads: u32,
    linger: Duration,
    log_level: Option<LogLevel>,
) -> Result<Seen, CliError> {
    reset_dir(dir)?;
    let exe = std::env::current_exe()?;
    let mut child = Command::new(exe);
    child.arg("demo-child").arg(dir).args(["--accounts", &accounts.to_string(), "--threads", &threads.to_string()]);
    if let Some(l) = log_level {
        child.args(["--log-level", &l.name()]);
    }
    let mut child = child.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn()?;
    let stdout = child.stdout.take().expect("piped");
    let (tx, rx) = mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let start = Instant::now();
    let mut seen = Seen::default();
    let mut ready_at: Option<Instant> = None;
    let mut last_progress = Instant::now();
    println!("  child process {} started: opening {}, creating {accounts} accounts", child.id(), dir.display());
    loop {
        match rx.recv_timeout(Duration::from_millis(50)) {
            Ok(line) => {
                let was_setup = seen.setup;
                seen.take(&line);
                if seen.setup && !was_setup {
                    println!(
                        "  [{:>5.1}s] {accounts} accounts of {INITIAL} each (total {}); {threads} threads start \
                         transferring, two batch jobs open long transactions",
                        start.elapsed().as_secs_f64(),
                        u64::from(accounts) * INITIAL
                    );
                }
                if seen.ready && ready_at.is_none() {
                    ready_at = Some(Instant::now());
                    println!("{}", seen.progress_line(start.elapsed()));
                    println!(
                        "  [{:>5.1}s] the child reports: transactions open, dirty pages already written \
                         (steals), a checkpoint behind them",
                        start.elapsed().as_secs_f64()
                    );
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let status = child.wait()?;
                return Err(CliError::Other(format!("the demo workload stopped by itself ({status}) before the kill")));
            }
        }
        if last_progress.elapsed() >= Duration::from_millis(250) && seen.setup {
            println!("{}", seen.progress_line(start.elapsed()));
            last_progress = Instant::now();
        }
        if ready_at.is_some_and(|t| t.elapsed() >= linger) {
            break;
        }
        if start.elapsed() > Duration::from_secs(90) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(CliError::Other("the demo workload never became ready".into()));
        }
    }
    child.kill()?;
    let status = child.wait()?;
    // Everything the child wrote to its stdout before the kill is still in the pipe.
    for line in rx.iter() {
        seen.take(&line);
    }
    let _ = reader.join();
    println!("{}", seen.progress_line(start.elapsed()));
    println!(
        "  [{:>5.1}s] SIGKILL: the child is gone ({status}) with transactions in flight; \
         {} transfers had been acknowledged",
        start.elapsed().as_secs_f64(),
        seen.acked.len()
    );
    Ok(seen)
}

fn print_files(dir: &Path) -> Result<(), CliError> {
    let files = list_files(dir)?;
    let data = files.iter().filter(|(n, _)| n == DATA_FILE).map(|f| f.1).sum::<u64>();
    let segs: Vec<&(String, u64)> = files.iter().filter(|(n, _)| parse_segment_name(n).is_some()).collect();
    let log: u64 = segs.iter().map(|f| f.1).sum();
    println!(
        "  on disk: {DATA_FILE} {}, log {} in {} segment files. The log is larger than the data: each \
         segment file is preallocated at its full size (256 KiB here) before records fill it, and no \
         segment can be removed while a transaction that began in it is open (the batch jobs began \
         at the start) or while recovery may need it.",
        size(data),
        size(log),
        segs.len()
    );
    Ok(())
}

fn row(name: &str, value: impl std::fmt::Display, what: &str) {
    println!("      {name:<20} {value:>10}   {what}");
}

fn print_report(r: &ariesdb::RecoveryReport, open_time: Duration) {
    println!();
    println!(
        "Recovery ran when the database was reopened ({:.1} ms), in the three passes of ARIES:",
        open_time.as_secs_f64() * 1000.0
    );
    println!();
    println!(
        "  1. Analysis ({:.1} ms): read the log forward from the last checkpoint to its end, to find what was \
         in flight at the crash.",
        r.analysis_us as f64 / 1000.0
    );
    row("checkpoint LSN", r.checkpoint_lsn, "the last complete checkpoint (LSN = byte position in the log)");
    row("redo start LSN", r.redo_start_lsn, "the oldest change that may be missing from the data file");
    row("end of log LSN", r.end_lsn, "where the valid records end (what follows was never written: the kill cut it)");
    let from = if r.redo_start_lsn == 0 { r.checkpoint_lsn } else { r.redo_start_lsn.min(r.checkpoint_lsn) };
    println!(
        "      {:<20} {:>10}   LSN {from} .. {}: the log recovery read ({})",
        "log range",
        "",
        r.end_lsn,
        size(r.end_lsn.saturating_sub(from))
    );
    row("records analyzed", r.records_analyzed, "log records read from the checkpoint to the end");
    row("winners", r.winners, "transactions whose commit was logged but not yet closed: kept");
    row("losers", r.losers, "transactions with no commit record: in flight at the kill, to roll back");
    row("dirty pages", r.dirty_pages, "pages whose latest changes may exist only in the log");
    println!();
    println!(
        "  2. Redo ({:.1} ms): repeat history, reapplying every logged change that the page on disk lacks.",
        r.redo_us as f64 / 1000.0
    );
    row("records applied", r.redone, "changes redone: the page's page_lsn was older than the record");
    row(
        "skipped",
        r.skipped,
        "changes already on disk (page_lsn >= the record's LSN: the page_lsn test) or page not dirty",
    );
    row(
        "torn pages rebuilt",
        r.pages_rebuilt,
        "pages never written (or half-written) before the kill, rebuilt from their first image in the log",
    );
    println!();
    println!("  3. Undo ({:.1} ms): roll the losers back, newest change first.", r.undo_us as f64 / 1000.0);
    row(
        "records undone",
        r.undone,
        "changes of losers undone, each logged as a compensation record (CLR) so a crash during undo never undoes twice",
    );
    println!();
}

/// Verify the recovered database against what the child acknowledged.
fn verify(db: &Db, accounts: u32, seen: &Seen) -> Result<Vec<String>, CliError> {
    let mut problems = Vec::new();
    let tx = db.begin()?;
    let mut balances: BTreeMap<u32, u64> = BTreeMap::new();
    for item in tx.scan(ariesdb::range(b"acct:", b"acct;"))? {
        let (k, v) = item?;
        let i: u32 = std::str::from_utf8(&k[5..]).ok().and_then(|s| s.parse().ok()).unwrap_or(u32::MAX);
        let b: u64 = std::str::from_utf8(&v).ok().and_then(|s| s.parse().ok()).unwrap_or(u64::MAX);
        balances.insert(i, b);
    }
    let mut markers: BTreeMap<(u32, u64), (u32, u32, u64)> = BTreeMap::new();
    for item in tx.scan(ariesdb::range(b"xfer:", b"xfer;"))? {
        let (k, v) = item?;
        let ks = String::from_utf8_lossy(&k);
        let mut kp = ks[5..].split(':').map(|s| s.parse::<u64>().unwrap_or(u64::MAX));
        let (w, s) = (kp.next().unwrap_or(0) as u32, kp.next().unwrap_or(0));
        let vs = String::from_utf8_lossy(&v);
        let f: Vec<u64> = vs.split(' ').map(|x| x.parse().unwrap_or(u64::MAX)).collect();
        if f.len() != 3 {
            problems.push(format!("marker {ks} has a bad value {vs:?}"));
            continue;
        }
        markers.insert((w, s), (f[0] as u32, f[1] as u32, f[2]));
    }
    let leftovers =
        tx.scan(ariesdb::range(b"batch:", b"batch;"))?.count() + tx.scan(ariesdb::range(b"fee:", b"fee;"))?.count();
    tx.commit()?;

    let total: u64 = balances.values().sum();
    let expect_total = u64::from(accounts) * INITIAL;
    println!("  {} accounts, total balance {total} (expected {expect_total})", balances.len());
    if balances.len() != accounts as usize || total != expect_total {
        problems.push(format!("the total is {total} in {} accounts, expected {expect_total}", balances.len()));
    }
    let missing: Vec<_> = seen.acked.iter().filter(|k| !markers.contains_key(k)).collect();
    println!(
        "  {} acknowledged transfers, {} missing; {} more committed just before the kill without their \
         acknowledgement reaching the parent (allowed: the commit was durable, the reply was not)",
        seen.acked.len(),
        missing.len(),
        markers.keys().filter(|k| !seen.acked.contains(k)).count()
    );
    if !missing.is_empty() {
        problems.push(format!("{} acknowledged transfers are missing, e.g. {:?}", missing.len(), missing[0]));
    }
    let resurrected = seen.aborted.iter().filter(|k| markers.contains_key(k)).count();
    println!(
        "  {} aborted transfers, {resurrected} present; {leftovers} keys left of rolled-back savepoints and \
         open batch jobs",
        seen.aborted.len()
    );
    if resurrected > 0 || leftovers > 0 {
        problems.push(format!("{resurrected} aborted transfers and {leftovers} rolled-back keys are present"));
    }
    // Replay the committed transfers: every balance must be exactly what they say.
    let mut expect: BTreeMap<u32, i64> = (0..accounts).map(|i| (i, INITIAL as i64)).collect();
    for &(a, b, amount) in markers.values() {
        *expect.entry(a).or_default() -= amount as i64;
        *expect.entry(b).or_default() += amount as i64;
    }
    let wrong = expect.iter().filter(|(i, e)| balances.get(i).map(|b| *b as i64) != Some(**e)).count();
    println!(
        "  replaying the {} surviving transfers from the initial balances gives every account's balance: \
         {wrong} accounts differ",
        markers.len()
    );
    if wrong > 0 {
        problems.push(format!("{wrong} account balances differ from the committed transfers"));
    }
    Ok(problems)
}

/// The parent: run, kill, recover, verify.
pub fn run(
    dir: &Path,
    accounts: u32,
    threads: u32,
    quick: bool,
    crash_only: bool,
    log_level: Option<LogLevel>,
) -> Result<(), CliError> {
    let accounts = if quick { accounts.min(200) } else { accounts }.max(BATCH_ACCOUNTS + 10);
    let threads = threads.max(1);
    let linger = if quick { Duration::from_millis(100) } else { Duration::from_millis(700) };
    refuse_foreign(dir)?;
    println!("ariesdb demo: a bank in {}, a crash, and its recovery", dir.display());
    println!();
    for attempt in 1..=ATTEMPTS {
        println!("Run {attempt}: the workload, in a child process that will be killed with SIGKILL");
        let seen = crash_run(dir, accounts, threads, linger, log_level)?;
        print_files(dir)?;
        if crash_only {
            println!();
            println!("Left as the crash left it: recovery is pending. These commands change nothing in it:");
            println!("  ariesdb stats {}      (recovers in memory: says what recovery will do)", dir.display());
            println!("  ariesdb waldump {}    (the log, including the losers' records)", dir.display());
            println!("  ariesdb check {}      (recovers in memory and checks)", dir.display());
            println!("  ariesdb scan {}       (recovers in memory and reads)", dir.display());
            println!("Commands that write (put, delete, checkpoint, compact, backup) run recovery on disk first.");
            return Ok(());
        }
        if log::log_enabled!(target: "ariesdb::recovery::driver", log::Level::Info) {
            println!();
            println!(
                "Reopening the database runs restart recovery. What the library logs meanwhile (on stderr; \
                 --log-level warn hides it):"
            );
        }
        let t = Instant::now();
        let db = Db::open_path_with(dir, opts())?;
        let open_time = t.elapsed();
        let r = db.recovery_report();
        print_report(&r, open_time);
        if (r.losers == 0 || r.redone == 0) && attempt < ATTEMPTS {
            println!(
                "This kill landed where recovery had little to show ({} losers, {} records redone); \
                 running the whole demo again.\n",
                r.losers, r.redone
            );
            db.close()?;
            continue;
        }
        println!("Verification of the recovered database:");
        let mut problems = verify(&db, accounts, &seen)?;
        match db.check_report() {
            Ok(c) => println!(
                "  check passed: {} keys in a tree of height {} (bound {}), {} leaf pages, {:.0}% full",
                c.keys,
                c.height,
                c.height_bound,
                c.leaves,
                c.average_fill() * 100.0
            ),
            Err(e) => problems.push(format!("check failed: {e}")),
        }
        db.close()?;
        println!();
        if problems.is_empty() {
            println!(
                "Verdict: PASS. The kill lost nothing acknowledged: {} transactions rolled back, {} changes \
                 redone, no money created or destroyed.",
                r.losers, r.redone
            );
            if r.losers == 0 || r.redone == 0 {
                println!("(After {ATTEMPTS} runs the kill still landed where recovery had little to do.)");
            }
            println!();
            println!("Look inside (these change nothing in {}):", dir.display());
            println!("  ariesdb waldump {} --summary", dir.display());
            println!("  ariesdb stats {}", dir.display());
            println!("  ariesdb scan {} --prefix acct: --limit 5", dir.display());
            println!(
                "The close after recovery cut the log to its last checkpoint; to look at the log and state \
                 recovery started from, run the demo with --crash-only, which stops after the kill."
            );
            return Ok(());
        }
        println!("Verdict: FAIL");
        for p in &problems {
            println!("  - {p}");
        }
        return Err(CliError::Other("the demo's verification failed".into()));
    }
    unreachable!("the last attempt returns")
}
