//! ariesdb-bench: ariesdb, SQLite and redb side by side on the workloads of
//! docs/benchmarks.md. The parent process measures the disk, then runs each
//! engine in child processes of its own (this same binary, re-executed with
//! an internal subcommand), reads their JSON lines and peak RSS, and prints
//! one Markdown table. Any failed check makes the exit status non-zero.

mod engines;
mod keys;
mod report;
mod workloads;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use engines::{Config, Res};
use workloads::Sizes;

const WORKLOADS: [&str; 10] = ["W1", "W2", "W3", "W4", "W4x2", "W5", "W6", "W7", "W8", "W8c"];

const USAGE: &str = "\
usage: ariesdb-bench [--quick] [--engines a,b,c] [--workloads W1,W2,...] [--dir DIR]
                     [--cache-mib MIB] [--json FILE] [--json-stdout] [--keep]

  --quick        a tenth of every size (100,000 pairs instead of 1,000,000)
  --engines      any of ariesdb,sqlite,redb,ariesdb-eventual,sqlite-normal,redb-none (default: all)
  --workloads    any of W1,W2,W3,W4,W4x2,W5,W6,W7,W8,W8c (default: all; W2-W7 need the W1 load, which
                 always runs before them)
  --dir DIR      make the run's fresh directory inside DIR, which must exist (default: ./bench-data, made if
                 missing); removed at the end
  --cache-mib    cache budget of every engine in MiB (default 1024)
  --json FILE    also write every result as one JSON object per line to FILE
  --json-stdout  also print the JSON lines on stdout, after the table
  --keep         keep the data directories";

#[derive(Clone, Debug)]
struct Args {
    quick: bool,
    engines: Vec<String>,
    workloads: Vec<String>,
    dir: Option<PathBuf>,
    cache_mib: usize,
    json: Option<PathBuf>,
    json_stdout: bool,
    keep: bool,
    // child-only
    engine: String,
    committed: u64,
    label: String,
}

fn parse_args(argv: &[String]) -> Res<Args> {
    let mut a = Args {
        quick: false,
        engines: engines::ALL.iter().map(|s| s.to_string()).collect(),
        workloads: WORKLOADS.iter().map(|s| s.to_string()).collect(),
        dir: None,
        cache_mib: 1024,
        json: None,
        json_stdout: false,
        keep: false,
        engine: String::new(),
        committed: 0,
        label: String::new(),
    };
    let mut it = argv.iter();
    while let Some(arg) = it.next() {
        let mut val = || it.next().cloned().ok_or_else(|| format!("{arg} needs a value\n{USAGE}"));
        match arg.as_str() {
            "--quick" => a.quick = true,
            "--json-stdout" => a.json_stdout = true,
            "--keep" => a.keep = true,
            "--engines" => a.engines = val()?.split(',').map(|s| s.trim().to_string()).collect(),
            "--workloads" => a.workloads = val()?.split(',').map(|s| s.trim().to_string()).collect(),
            "--dir" => a.dir = Some(PathBuf::from(val()?)),
            "--cache-mib" => {
                let v = val()?;
                a.cache_mib = match v.parse() {
                    Ok(n) if n > 0 => n,
                    _ => return Err(format!("--cache-mib needs a whole number of MiB above 0, not {v:?}").into()),
                };
            }
            "--json" => a.json = Some(PathBuf::from(val()?)),
            "--engine" => a.engine = val()?,
            "--committed" => a.committed = val()?.parse()?,
            "--label" => a.label = val()?,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?}\n{USAGE}").into()),
        }
    }
    for (i, e) in a.engines.iter().enumerate() {
        if !engines::ALL.contains(&e.as_str()) {
            return Err(format!("unknown engine {e:?}; known: {}", engines::ALL.join(",")).into());
        }
        if a.engines[..i].contains(e) {
            return Err(format!("engine {e:?} named twice in --engines").into());
        }
    }
    for (i, w) in a.workloads.iter().enumerate() {
        if !WORKLOADS.contains(&w.as_str()) {
            return Err(format!("unknown workload {w:?}; known: {}", WORKLOADS.join(",")).into());
        }
        if a.workloads[..i].contains(w) {
            return Err(format!("workload {w:?} named twice in --workloads").into());
        }
    }
    Ok(a)
}

fn main() {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let (sub, rest) = match argv.first().map(String::as_str) {
        Some(s @ ("child" | "w8-writer" | "w8-recover")) => (s.to_string(), &argv[1..]),
        _ => (String::new(), &argv[..]),
    };
    let args = match parse_args(rest) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(64);
        }
    };
    let r = match sub.as_str() {
        "" => parent(&args),
        _ => child(&sub, &args),
    };
    if let Err(e) = r {
        eprintln!("ariesdb-bench{}{sub}: {e}", if sub.is_empty() { "" } else { " " });
        std::process::exit(if e.to_string().starts_with("CHECK FAILED") { 2 } else { 3 });
    }
}

fn child(sub: &str, a: &Args) -> Res<()> {
    let dir = a.dir.clone().ok_or("a child needs --dir")?;
    let sz = Sizes::new(a.quick);
    let cfg = Config { name: a.engine.clone(), cache_bytes: a.cache_mib << 20, no_checkpoints: sub == "w8-writer" };
    match sub {
        "child" => workloads::run_main(&cfg, &dir, sz, &a.workloads),
        "w8-writer" => workloads::run_w8_writer(&cfg, &dir, sz),
        "w8-recover" => workloads::run_w8_recover(&cfg, &dir, sz, &a.label, a.committed),
        _ => unreachable!(),
    }
}

/// What one child process left: its JSON lines, its other stdout lines, how
/// it ended, and its peak RSS.
struct ChildRun {
    json: Vec<serde_json::Value>,
    lines: Vec<String>,
    status: libc::c_int,
    maxrss_bytes: u64,
}

impl ChildRun {
    fn exited_ok(&self) -> bool {
        libc::WIFEXITED(self.status) && libc::WEXITSTATUS(self.status) == 0
    }
    fn describe(&self) -> String {
        if libc::WIFEXITED(self.status) {
            format!("exit status {}", libc::WEXITSTATUS(self.status))
        } else if libc::WIFSIGNALED(self.status) {
            format!("killed by signal {}", libc::WTERMSIG(self.status))
        } else {
            format!("wait status {}", self.status)
        }
    }
}

/// Run this binary as a child, reading its stdout; wait4 gives its own
/// rusage, so the peak RSS is the child's alone.
fn run_child(args: &[String]) -> Res<ChildRun> {
    let exe = std::env::current_exe()?;
    let mut child = Command::new(exe).args(args).stdin(Stdio::null()).stdout(Stdio::piped()).spawn()?;
    let pid = child.id() as libc::pid_t;
    let stdout = child.stdout.take().ok_or("no child stdout")?;
    let mut json = Vec::new();
    let mut lines = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        if line.starts_with('{') {
            json.push(serde_json::from_str(&line)?);
        } else {
            lines.push(line);
        }
    }
    let mut status: libc::c_int = 0;
    // SAFETY: an all-zero rusage is a valid value for the kernel to fill in.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: pid is our own child, not yet reaped (std's Child is never
        // waited on); status and ru point to live locals.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
        if r == pid {
            break;
        }
        let err = std::io::Error::last_os_error();
        if err.kind() != std::io::ErrorKind::Interrupted {
            return Err(format!("wait4: {err}").into());
        }
    }
    // Linux reports ru_maxrss in KiB.
    Ok(ChildRun { json, lines, status, maxrss_bytes: ru.ru_maxrss as u64 * 1024 })
}

/// 4 KiB writes followed by fdatasync, for `secs`: in place (the same block
/// each time), then appended.
fn disk_probe(dir: &Path, secs: f64) -> Res<(f64, f64)> {
    let block = vec![0xA5u8; 4096];
    let path = dir.join("probe-in-place");
    let f = std::fs::OpenOptions::new().create(true).truncate(true).read(true).write(true).open(&path)?;
    f.write_all_at(&block, 0)?;
    f.sync_all()?;
    let t0 = Instant::now();
    let mut n = 0u64;
    while t0.elapsed().as_secs_f64() < secs {
        f.write_all_at(&block, 0)?;
        f.sync_data()?;
        n += 1;
    }
    let in_place = n as f64 / t0.elapsed().as_secs_f64();
    drop(f);
    std::fs::remove_file(&path)?;

    let path = dir.join("probe-append");
    let mut f = std::fs::OpenOptions::new().create(true).truncate(true).write(true).open(&path)?;
    f.sync_all()?;
    let t0 = Instant::now();
    let mut n = 0u64;
    while t0.elapsed().as_secs_f64() < secs {
        f.write_all(&block)?;
        f.sync_data()?;
        n += 1;
    }
    let append = n as f64 / t0.elapsed().as_secs_f64();
    drop(f);
    std::fs::remove_file(&path)?;
    Ok((in_place, append))
}

/// Push every file under `dir` out of the page cache: fsync it, then
/// posix_fadvise(DONTNEED). (Writing /proc/sys/vm/drop_caches needs a
/// privilege the runner does not assume.)
fn evict(dir: &Path) -> Res<u64> {
    use std::os::fd::AsRawFd;
    let mut files = 0;
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let p = e.path();
        if e.file_type()?.is_dir() {
            files += evict(&p)?;
            continue;
        }
        let f = std::fs::File::open(&p)?;
        f.sync_all()?;
        // SAFETY: a valid open descriptor; the call only advises the kernel.
        let r = unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
        if r != 0 {
            return Err(format!("posix_fadvise({}): error {r}", p.display()).into());
        }
        files += 1;
    }
    Ok(files)
}

fn sync_all_disks() {
    // SAFETY: sync(2) takes no arguments and cannot fail.
    unsafe { libc::sync() };
}

fn parent(a: &Args) -> Res<()> {
    let sz = Sizes::new(a.quick);
    let base = a.dir.clone().unwrap_or_else(|| PathBuf::from("bench-data"));
    let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
    let run_dir = base.join(format!("run-{stamp}-{}", std::process::id()));
    // --dir names a directory that exists (a typo should not make a tree of
    // new ones); the default ./bench-data is made if missing.
    if a.dir.is_some() && !base.is_dir() {
        return Err(format!("--dir {}: no such directory", base.display()).into());
    }
    std::fs::create_dir_all(&run_dir)?;
    let run_dir = run_dir.canonicalize()?;
    eprintln!(
        "ariesdb-bench: {} mode, {} pairs, cache {} MiB per engine, engines {}, data in {}",
        if a.quick { "quick" } else { "full" },
        sz.n,
        a.cache_mib,
        a.engines.join(","),
        run_dir.display()
    );
    let result = parent_in(a, sz, &run_dir);
    if a.keep {
        eprintln!("data kept in {}", run_dir.display());
    } else {
        let _ = std::fs::remove_dir_all(&run_dir);
        // Remove the default parent too when this run made it and left it empty.
        if a.dir.is_none() {
            let _ = std::fs::remove_dir(&base);
        }
    }
    let failures = result?;
    if !failures.is_empty() {
        eprintln!("\nariesdb-bench: {} FAILURE(S):", failures.len());
        for f in &failures {
            eprintln!("  - {f}");
        }
        std::process::exit(1);
    }
    Ok(())
}

/// Returns the failures (checks or errors); the table is printed regardless.
fn parent_in(a: &Args, sz: Sizes, run_dir: &Path) -> Res<Vec<String>> {
    let t_run = Instant::now();
    let mut results: Vec<serde_json::Value> = Vec::new();
    let mut failures: Vec<String> = Vec::new();
    let want = |w: &str| a.workloads.iter().any(|x| x == w);
    let common = |engine: &str, dir: &Path| -> Vec<String> {
        let mut v = vec![
            "--engine".into(),
            engine.into(),
            "--dir".into(),
            dir.display().to_string(),
            "--cache-mib".into(),
            a.cache_mib.to_string(),
            "--workloads".into(),
            a.workloads.join(","),
        ];
        if a.quick {
            v.push("--quick".into());
        }
        v
    };

    let probe_secs = if a.quick { 0.5 } else { 2.0 };
    let (in_place, append) = disk_probe(run_dir, probe_secs)?;
    eprintln!("disk: 4 KiB in place + fdatasync {in_place:.0}/s; 4 KiB appended + fdatasync {append:.0}/s");
    results.push(serde_json::json!({"engine": "disk", "metric": "fdatasync_in_place_4k", "value": in_place, "unit": "ops/s", "secs": probe_secs}));
    results.push(serde_json::json!({"engine": "disk", "metric": "fdatasync_append_4k", "value": append, "unit": "ops/s", "secs": probe_secs}));

    results.push(serde_json::json!({"engine": "disk", "metric": "probe_secs", "value": probe_secs, "unit": "s"}));

    for engine in &a.engines {
        // The shared disk's speed drifts: measure it again right before each
        // engine, and quote that engine's W2 against it.
        let (ip, ap) = disk_probe(run_dir, probe_secs / 2.0)?;
        eprintln!("[{engine}] disk: 4 KiB in place + fdatasync {ip:.0}/s; appended + fdatasync {ap:.0}/s");
        results.push(serde_json::json!({"engine": engine, "metric": "fdatasync_in_place_4k_before", "value": ip, "unit": "ops/s"}));
        results.push(
            serde_json::json!({"engine": engine, "metric": "fdatasync_append_4k_before", "value": ap, "unit": "ops/s"}),
        );
        let main_wanted = ["W1", "W2", "W3", "W4", "W4x2", "W5", "W6", "W7"].iter().any(|w| want(w));
        if main_wanted {
            eprintln!("[{engine}] W1-W7 in one child process");
            let dir = run_dir.join(format!("{engine}-main"));
            let mut args = vec!["child".to_string()];
            args.extend(common(engine, &dir));
            let run = run_child(&args)?;
            results.extend(run.json.iter().cloned());
            results.push(rss_line(engine, "peak_rss_main", &run));
            if !run.exited_ok() {
                failures.push(format!("{engine} W1-W7: child failed ({}); see its message above", run.describe()));
            }
            let _ = std::fs::remove_dir_all(&dir);
            sync_all_disks();
        }
        for label in ["W8", "W8c"] {
            if !want(label) {
                continue;
            }
            match w8(engine, label, run_dir, &common, &mut results) {
                Ok(None) => {}
                Ok(Some(f)) => failures.push(f),
                Err(e) => failures.push(format!("{engine} {label}: {e}")),
            }
            sync_all_disks();
        }
    }
    let elapsed = t_run.elapsed();
    results
        .push(serde_json::json!({"engine": "run", "metric": "wall_time", "value": elapsed.as_secs_f64(), "unit": "s",
        "pairs": sz.n, "quick": a.quick, "cache_mib": a.cache_mib}));

    let table = report::table(&results, &a.engines, &a.workloads, a.quick, sz.n, a.cache_mib);
    println!("{table}");
    eprintln!("run took {:.0} s", elapsed.as_secs_f64());
    let lines: Vec<String> = results.iter().map(|v| v.to_string()).collect();
    if let Some(p) = &a.json {
        let mut f = std::fs::File::create(p)?;
        for l in &lines {
            writeln!(f, "{l}")?;
        }
    }
    if a.json_stdout {
        println!();
        for l in &lines {
            println!("{l}");
        }
    }
    Ok(failures)
}

fn rss_line(engine: &str, metric: &str, run: &ChildRun) -> serde_json::Value {
    serde_json::json!({"engine": engine, "metric": metric, "value": run.maxrss_bytes as f64, "unit": "bytes"})
}

/// One W8 or W8c: a writer child that commits and aborts, then (W8c) the
/// files evicted, then a recovery child. Some(message) on a failure.
fn w8(
    engine: &str,
    label: &str,
    run_dir: &Path,
    common: &dyn Fn(&str, &Path) -> Vec<String>,
    results: &mut Vec<serde_json::Value>,
) -> Res<Option<String>> {
    eprintln!("[{engine}] {label}: writer child (dies by abort), then recovery child");
    let dir = run_dir.join(format!("{engine}-{}", label.to_lowercase()));
    let mut args = vec!["w8-writer".to_string()];
    args.extend(common(engine, &dir));
    let t0 = Instant::now();
    let writer = run_child(&args)?;
    let write_secs = t0.elapsed().as_secs_f64();
    let committed = writer.lines.iter().filter(|l| l.starts_with("committed ")).count() as u64;
    let mut rss = rss_line(engine, &format!("peak_rss_{}_writer", label), &writer);
    rss["write_secs"] = write_secs.into();
    rss["committed"] = committed.into();
    results.push(rss);
    let aborted = libc::WIFSIGNALED(writer.status) && libc::WTERMSIG(writer.status) == libc::SIGABRT;
    if !aborted {
        return Ok(Some(format!("{engine} {label}: the writer did not die by abort ({})", writer.describe())));
    }
    eprintln!("  [{engine}] {label}: writer committed {committed} transactions in {write_secs:.1} s, then aborted");
    if label == "W8c" {
        let files = evict(&dir)?;
        eprintln!("  [{engine}] W8c: {files} files fsynced and evicted from the page cache");
    }
    let mut args = vec!["w8-recover".to_string()];
    args.extend(common(engine, &dir));
    args.extend(["--label".to_string(), label.to_string(), "--committed".to_string(), committed.to_string()]);
    let rec = run_child(&args)?;
    results.extend(rec.json.iter().cloned());
    results.push(rss_line(engine, &format!("peak_rss_{}_recover", label), &rec));
    let _ = std::fs::remove_dir_all(&dir);
    if !rec.exited_ok() {
        return Ok(Some(format!(
            "{engine} {label}: recovery child failed ({}); see its message above",
            rec.describe()
        )));
    }
    Ok(None)
}

/// Results looked up by (engine, metric).
pub fn index(results: &[serde_json::Value]) -> BTreeMap<(String, String), f64> {
    let mut m = BTreeMap::new();
    for v in results {
        if let (Some(e), Some(k), Some(x)) = (v["engine"].as_str(), v["metric"].as_str(), v["value"].as_f64()) {
            m.insert((e.to_string(), k.to_string()), x);
            if let Some(ap) = v["apparent_bytes"].as_f64() {
                m.insert((e.to_string(), format!("{k}_apparent")), ap);
            }
        }
    }
    m
}
