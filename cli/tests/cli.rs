//! The `ariesdb` binary run as a real process on real temporary directories.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_ariesdb");

/// A fresh directory under the system temp dir, removed on drop.
struct Tmp(PathBuf);

impl Tmp {
    fn new(tag: &str) -> Tmp {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        let p = std::env::temp_dir().join(format!("ariesdb-cli-test-{tag}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&p).unwrap();
        Tmp(p)
    }
    fn db(&self) -> PathBuf {
        self.0.join("db")
    }
}

impl Drop for Tmp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Run the tool with `ARIESDB_LOG` unset, so its log level is the default or
/// the one `args` give.
fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).env_remove("ARIESDB_LOG").output().expect("run ariesdb")
}

fn run_in(dir: &Path, cmd: &str, rest: &[&str]) -> Output {
    let mut args = vec![cmd, dir.to_str().unwrap()];
    args.extend_from_slice(rest);
    run(&args)
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn ok(o: Output) -> String {
    assert!(
        o.status.success(),
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        stdout(&o),
        String::from_utf8_lossy(&o.stderr)
    );
    stdout(&o)
}

fn code(o: &Output) -> i32 {
    o.status.code().expect("exited normally")
}

/// Every file of a directory with its full contents.
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (e.file_name().to_string_lossy().into_owned(), std::fs::read(e.path()).unwrap())
        })
        .collect()
}

/// A database with a few keys, made and closed by the binary itself.
fn small_db(t: &Tmp) -> PathBuf {
    let db = t.db();
    std::fs::create_dir_all(&db).unwrap();
    for (k, v) in [("apple", "red"), ("apricot", "orange"), ("banana", "yellow"), ("cherry", "dark red"), ("ap", "x")] {
        ok(run_in(&db, "put", &[k, v]));
    }
    db
}

#[test]
fn put_get_scan_delete_round_trip() {
    let t = Tmp::new("kv");
    let db = small_db(&t);
    assert_eq!(ok(run_in(&db, "get", &["apple"])), "red\n");
    // Bytes that are not printable come back escaped, or as hex.
    ok(run_in(&db, "put", &["bin", "a\tb\u{1}"]));
    assert_eq!(ok(run_in(&db, "get", &["bin"])), "a\\tb\\x01\n");
    ok(run_in(&db, "put", &["--hex", "00ff", "0102"]));
    assert_eq!(ok(run_in(&db, "get", &["--hex", "00ff"])), "0102\n");
    assert_eq!(ok(run_in(&db, "get", &["--hex", "62696e"])), "61096201\n");
    let all = ok(run_in(&db, "scan", &[]));
    assert_eq!(
        all,
        "\\x00\\xff\t\\x01\\x02\nap\tx\napple\tred\napricot\torange\nbanana\tyellow\nbin\ta\\tb\\x01\ncherry\tdark red\n"
    );
    assert!(ok(run_in(&db, "delete", &["apple"])).contains("deleted"));
    let o = run_in(&db, "get", &["apple"]);
    assert_eq!(code(&o), 1);
    assert!(String::from_utf8_lossy(&o.stderr).contains("not found"));
    assert!(!ok(run_in(&db, "scan", &[])).contains("apple"));
}

#[test]
fn scan_prefix_range_reverse_limit() {
    let t = Tmp::new("scan");
    let db = small_db(&t);
    assert_eq!(ok(run_in(&db, "scan", &["--prefix", "ap"])), "ap\tx\napple\tred\napricot\torange\n");
    assert_eq!(ok(run_in(&db, "scan", &["--prefix", "ap", "--limit", "2"])), "ap\tx\napple\tred\n");
    assert_eq!(ok(run_in(&db, "scan", &["--prefix", "ap", "--reverse"])), "apricot\torange\napple\tred\nap\tx\n");
    assert_eq!(ok(run_in(&db, "scan", &["--reverse", "--limit", "2"])), "cherry\tdark red\nbanana\tyellow\n");
    assert_eq!(ok(run_in(&db, "scan", &["--start", "apr", "--end", "c"])), "apricot\torange\nbanana\tyellow\n");
    assert_eq!(ok(run_in(&db, "scan", &["--prefix", "zz"])), "");
    assert_eq!(ok(run_in(&db, "scan", &["--hex", "--prefix", "6170", "--limit", "1"])), "6170\t78\n");
    // A prefix and a range together: their intersection, either direction.
    assert_eq!(ok(run_in(&db, "scan", &["--prefix", "ap", "--start", "apple"])), "apple\tred\napricot\torange\n");
    assert_eq!(ok(run_in(&db, "scan", &["--prefix", "ap", "--end", "apr"])), "ap\tx\napple\tred\n");
    assert_eq!(ok(run_in(&db, "scan", &["--prefix", "ap", "--start", "b"])), "");
    assert_eq!(
        ok(run_in(&db, "scan", &["--reverse", "--start", "apple", "--end", "cherry"])),
        "banana\tyellow\napricot\torange\napple\tred\n"
    );
    // Reads change no byte of the directory (a read-only open).
    let before = snapshot(&db);
    ok(run_in(&db, "scan", &[]));
    ok(run_in(&db, "get", &["apple"]));
    assert!(before == snapshot(&db), "get or scan changed the directory");
}

#[test]
fn waldump_prints_records_and_summary_and_writes_nothing() {
    let t = Tmp::new("waldump");
    let db = small_db(&t);
    let before = snapshot(&db);
    let out = ok(run_in(&db, "waldump", &[]));
    assert!(out.lines().next().unwrap().contains("LSN"), "{out}");
    assert!(out.contains(" Update ") && out.contains(" Commit ") && out.contains(" CkptBegin "), "{out}");
    assert!(out.contains("end of valid records"), "{out}");
    let total = out.lines().find(|l| l.starts_with("total")).expect("summary total");
    assert!(total.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() > 0);
    // Filters and the summary alone.
    let updates = ok(run_in(&db, "waldump", &["--kind", "update"]));
    let body: Vec<&str> = updates.lines().skip(1).take_while(|l| !l.is_empty()).collect();
    assert!(!body.is_empty() && body.iter().all(|l| l.contains(" Update ")), "{updates}");
    // LSNs in decimal or in hex, as segment file names give them.
    assert_eq!(ok(run_in(&db, "waldump", &["--from", "4216"])), ok(run_in(&db, "waldump", &["--from", "0x1078"])));
    assert_eq!(code(&run_in(&db, "waldump", &["--from", "0xzz"])), 2);
    let summary = ok(run_in(&db, "waldump", &["--summary"]));
    assert!(!summary.contains("prev_lsn") && summary.contains("Update"), "{summary}");
    assert_eq!(code(&run_in(&db, "waldump", &["--kind", "nonsense"])), 1);
    assert_eq!(snapshot(&db), before, "waldump changed the directory");
}

#[test]
fn check_and_stats_change_no_byte() {
    let t = Tmp::new("inspect");
    let db = small_db(&t);
    let before = snapshot(&db);
    let c = ok(run_in(&db, "check", &[]));
    assert!(c.contains("check passed") && c.contains("keys              5"), "{c}");
    let s = ok(run_in(&db, "stats", &[]));
    assert!(s.contains("data file data.db") && s.contains("segment") && s.contains("recovery pending: no"), "{s}");
    assert_eq!(snapshot(&db), before, "check or stats changed the directory");
}

#[test]
fn missing_directory_is_exit_3_and_creates_nothing() {
    let t = Tmp::new("missing");
    let nowhere = t.0.join("no-such-dir");
    let dest = t.0.join("copy");
    let dest = dest.to_str().unwrap();
    let all = [
        vec!["get", "k"],
        vec!["put", "k", "v"],
        vec!["delete", "k"],
        vec!["scan"],
        vec!["checkpoint"],
        vec!["compact"],
        vec!["backup", dest],
        vec!["check"],
        vec!["stats"],
        vec!["waldump"],
    ];
    for args in &all {
        let o = run_in(&nowhere, args[0], &args[1..]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(code(&o), 3, "{args:?}: {err}");
        assert!(
            err.contains(&format!("no ariesdb database at {}: the directory does not exist", nowhere.display()))
                && err.contains("nothing was created"),
            "{args:?}: {err}"
        );
    }
    assert!(!nowhere.exists());
    // An existing directory without a database: 3 too, except for put (and
    // waldump, which reads whatever log is there); nothing is created in it.
    let empty = t.0.join("empty");
    std::fs::create_dir(&empty).unwrap();
    for args in all.iter().filter(|a| a[0] != "put" && a[0] != "waldump") {
        let o = run_in(&empty, args[0], &args[1..]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(code(&o), 3, "{args:?}: {err}");
        assert!(err.contains("holds no data.db"), "{args:?}: {err}");
    }
    assert_eq!(std::fs::read_dir(&empty).unwrap().count(), 0, "a refused command created a file");
    assert_eq!(
        std::fs::read_dir(&t.0).unwrap().count(),
        1,
        "a refused command created something beside the directory (a backup destination?)"
    );
    // put creates a database only in an empty directory, not among other files.
    let notes = t.0.join("notes");
    std::fs::create_dir(&notes).unwrap();
    std::fs::write(notes.join("notes.txt"), "mine").unwrap();
    let o = run_in(&notes, "put", &["k", "v"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(code(&o), 3, "{err}");
    assert!(err.contains("holds other files and no data.db"), "{err}");
    assert_eq!(std::fs::read_dir(&notes).unwrap().count(), 1, "put created a file among others");
    ok(run_in(&empty, "put", &["k", "v"]));
    assert_eq!(ok(run_in(&empty, "get", &["k"])).trim(), "v");
}

#[test]
fn backup_makes_a_copy_that_passes_check() {
    let t = Tmp::new("backup");
    let db = small_db(&t);
    let copy = t.0.join("backups").join("copy");
    let out = ok(run(&["backup", db.to_str().unwrap(), copy.to_str().unwrap()]));
    assert!(out.contains("with 5 entries") && out.contains("closed cleanly"), "{out}");
    let c = ok(run_in(&copy, "check", &[]));
    assert!(c.contains("check passed") && c.contains("keys              5"), "{c}");
    // Its log is cut to the records it needs: no preallocated space.
    let stats = ok(run_in(&copy, "stats", &[]));
    assert!(stats.contains("recovery pending: no") && !stats.contains("preallocated"), "{stats}");
    let dump = ok(run_in(&copy, "waldump", &[]));
    assert!(dump.contains("where the segment file ends"), "{dump}");
    assert_eq!(ok(run_in(&copy, "scan", &[])), ok(run_in(&db, "scan", &[])));
    assert_eq!(ok(run_in(&copy, "get", &["cherry"])), "dark red\n");
    // Only the copy beside the source: no staging directory left.
    let mut names: Vec<String> = std::fs::read_dir(t.0.join("backups"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["copy"]);
    // A destination that holds a database, or anything: exit 1, untouched.
    let before = snapshot(&copy);
    let o = run(&["backup", db.to_str().unwrap(), copy.to_str().unwrap()]);
    assert_eq!(code(&o), 1);
    assert!(String::from_utf8_lossy(&o.stderr).contains("already holds an ariesdb database"), "{o:?}");
    assert_eq!(snapshot(&copy), before);
    let notes = t.0.join("notes");
    std::fs::create_dir(&notes).unwrap();
    std::fs::write(notes.join("a.txt"), b"mine").unwrap();
    let o = run(&["backup", db.to_str().unwrap(), notes.to_str().unwrap()]);
    assert_eq!(code(&o), 1);
    assert!(String::from_utf8_lossy(&o.stderr).contains("not empty"), "{o:?}");
    assert_eq!(snapshot(&notes).len(), 1);
    // A destination under a file: an I/O error that names the destination.
    let under_file = t.0.join("plain").join("copy");
    std::fs::write(t.0.join("plain"), b"x").unwrap();
    let o = run(&["backup", db.to_str().unwrap(), under_file.to_str().unwrap()]);
    assert_eq!(code(&o), 1);
    assert!(stderr(&o).contains(&format!("backup to {} failed", under_file.display())), "{}", stderr(&o));
    // The source is in use: exit 4, as for every command that opens it.
    let open = ariesdb::Db::open_existing(&db).unwrap();
    assert_eq!(code(&run(&["backup", db.to_str().unwrap(), t.0.join("other").to_str().unwrap()])), 4);
    open.close().unwrap();
    assert!(!t.0.join("other").exists());
}

#[test]
fn directory_in_use_is_exit_4() {
    let t = Tmp::new("locked");
    let db = small_db(&t);
    let open = ariesdb::Db::open(&db).unwrap();
    for args in [vec!["get", "apple"], vec!["put", "k", "v"], vec!["check"], vec!["stats"], vec!["compact"]] {
        let o = run_in(&db, args[0], &args[1..]);
        assert_eq!(code(&o), 4, "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
        assert!(String::from_utf8_lossy(&o.stderr).contains("in use"));
    }
    open.close().unwrap();
    assert_eq!(ok(run_in(&db, "get", &["apple"])), "red\n");
    // A read-only open shares the directory with the inspections, not with writers.
    let before = snapshot(&db);
    let reader = ariesdb::Db::open_read_only(&db).unwrap();
    assert!(ok(run_in(&db, "check", &[])).contains("check passed"));
    assert!(ok(run_in(&db, "stats", &[])).contains("recovery pending: no"));
    let o = run_in(&db, "put", &["k", "v"]);
    assert_eq!(code(&o), 4, "{}", String::from_utf8_lossy(&o.stderr));
    reader.close().unwrap();
    assert_eq!(snapshot(&db), before);
}

#[test]
fn damaged_data_file_is_exit_5() {
    let t = Tmp::new("damaged");
    let db = small_db(&t);
    // Flip bytes in the middle of page 2 (the first tree page) of the closed database.
    let path = db.join("data.db");
    let mut bytes = std::fs::read(&path).unwrap();
    assert!(bytes.len() >= 3 * 4096);
    for b in &mut bytes[2 * 4096 + 200..2 * 4096 + 216] {
        *b ^= 0x5a;
    }
    std::fs::write(&path, &bytes).unwrap();
    let before = snapshot(&db);
    for args in [vec!["check"], vec!["stats"], vec!["get", "apple"]] {
        let o = run_in(&db, args[0], &args[1..]);
        assert_eq!(code(&o), 5, "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
        assert!(stderr(&o).contains("damage found in the data file (data.db)"), "{}", stderr(&o));
        // All three open read-only.
        assert_eq!(snapshot(&db), before, "{args:?} changed a damaged directory");
    }
}

#[test]
fn waldump_reports_a_damaged_log_as_exit_5() {
    let t = Tmp::new("waldamage");
    let db = small_db(&t);
    let clean = run_in(&db, "waldump", &["--summary"]);
    assert_eq!(code(&clean), 0);
    // Flip bytes early in the only segment: the later records were written
    // after it was durable, so this is damage, not a torn tail.
    let seg = std::fs::read_dir(&db)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_str().unwrap().starts_with("wal-"))
        .unwrap();
    let mut bytes = std::fs::read(&seg).unwrap();
    for b in &mut bytes[100..104] {
        *b ^= 0xff;
    }
    std::fs::write(&seg, &bytes).unwrap();
    let before = snapshot(&db);
    let o = run_in(&db, "waldump", &["--summary"]);
    let (out, err) = (String::from_utf8_lossy(&o.stdout).into_owned(), stderr(&o));
    assert_eq!(code(&o), 5, "{out}{err}");
    assert!(out.contains("DAMAGE") && err.contains("the log is damaged"), "{out}{err}");
    assert_eq!(snapshot(&db), before);
}

#[test]
fn usage_errors_are_exit_2() {
    assert_eq!(code(&run(&["frobnicate"])), 2);
    assert_eq!(code(&run(&["get"])), 2);
    assert_eq!(code(&run(&["demo", "/nonexistent/demo", "--accounts", "1"])), 2);
    assert_eq!(code(&run(&["demo", "/nonexistent/demo", "--threads", "0"])), 2);
    let help = ok(run(&["--help"]));
    for word in ["demo", "waldump", "check", "stats", "Exit codes", "read-only", "backup", "DEST"] {
        assert!(help.contains(word), "--help lacks {word}");
    }
}

#[test]
fn demo_crashes_recovers_and_passes() {
    let t = Tmp::new("demo");
    let dir = t.0.join("bank");
    let o = run(&["demo", dir.to_str().unwrap(), "--quick"]);
    let log = stderr(&o);
    let out = ok(o);
    assert!(out.contains("Verdict: PASS"), "{out}");
    // The demo prints the library's info lines: recovery pass by pass.
    for line in ["[INFO  ariesdb::recovery::driver] recovery redo done", "recovery undo done", "after recovery from"] {
        assert!(log.contains(line), "no {line:?} on stderr:\n{log}");
    }
    assert!(out.contains("SIGKILL"), "{out}");
    let field = |name: &str| -> u64 {
        let line =
            out.lines().find(|l| l.trim_start().starts_with(name)).unwrap_or_else(|| panic!("no {name}:\n{out}"));
        line.trim_start()[name.len()..].split_whitespace().next().unwrap().parse().unwrap()
    };
    assert!(field("losers") > 0, "{out}");
    assert!(field("records applied") > 0, "{out}");
    assert!(field("records undone") > 0, "{out}");
    assert!(field("records analyzed") > 0, "{out}");
    // The inspection commands work on the demo's directory and change nothing.
    let before = snapshot(&dir);
    let dump = ok(run_in(&dir, "waldump", &["--summary"]));
    assert!(dump.contains("total"), "{dump}");
    assert!(ok(run_in(&dir, "check", &[])).contains("check passed"));
    assert!(ok(run_in(&dir, "stats", &[])).contains("keys"));
    assert_eq!(snapshot(&dir), before);
    // The demo only recreates a directory that holds a database, nothing else.
    let other = t.0.join("other");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("notes.txt"), b"mine").unwrap();
    assert_eq!(code(&run(&["demo", other.to_str().unwrap(), "--quick"])), 1);
    assert!(other.join("notes.txt").exists());
    // Nor a file: refused with its name before the story starts.
    let file = other.join("notes.txt");
    let o = run(&["demo", file.to_str().unwrap(), "--quick"]);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    assert!(stderr(&o).contains("is not a directory"), "{}", stderr(&o));
    assert!(stdout(&o).is_empty(), "{}", stdout(&o));
    assert_eq!(std::fs::read(&file).unwrap(), b"mine");
    // Nor a database it did not make: a user's database is never deleted.
    let mine = small_db(&t);
    let o = run(&["demo", mine.to_str().unwrap(), "--quick"]);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    assert!(stderr(&o).contains("the demo did not make"), "{}", stderr(&o));
    assert_eq!(ok(run_in(&mine, "get", &["apple"])), "red\n");
    // Its own directory it recreates.
    assert_eq!(code(&run(&["demo", dir.to_str().unwrap(), "--quick"])), 0);
}

#[test]
fn demo_crash_only_leaves_recovery_pending_and_inspection_writes_nothing() {
    let t = Tmp::new("crash");
    let dir = t.0.join("bank");
    let out = ok(run(&["demo", dir.to_str().unwrap(), "--quick", "--crash-only"]));
    assert!(out.contains("recovery is pending"), "{out}");
    let before = snapshot(&dir);
    let stats = ok(run_in(&dir, "stats", &[]));
    assert!(stats.contains("recovery pending: yes"), "{stats}");
    assert!(ok(run_in(&dir, "check", &[])).contains("check passed"));
    let dump = ok(run_in(&dir, "waldump", &["--kind", "abort"]));
    assert!(dump.contains("records read"), "{dump}");
    assert_eq!(snapshot(&dir), before, "inspection of a crashed directory changed it");
    // Opening it runs recovery, which --log-level info shows pass by pass.
    let o = run(&["--log-level", "info", "scan", dir.to_str().unwrap(), "--limit", "1"]);
    let log = stderr(&o);
    ok(o);
    for line in ["recovery analysis done", "recovery redo done", "recovery undo done", "after recovery from"] {
        assert!(log.contains(line), "no {line:?} on stderr:\n{log}");
    }
}

#[test]
fn log_level_prints_the_library_log_on_stderr() {
    let t = Tmp::new("log");
    let db = small_db(&t);
    let d = db.to_str().unwrap();
    // The default for commands other than demo is warn: a clean open logs nothing.
    let o = run(&["get", d, "apple"]);
    assert!(o.stderr.is_empty(), "{}", stderr(&o));
    assert_eq!(ok(o), "red\n");
    // The open and the close at info, before or after the command (get
    // opens read-only).
    let o = run(&["--log-level", "info", "get", d, "apple"]);
    let log = stderr(&o);
    assert_eq!(ok(o), "red\n", "the log goes to stderr, not stdout");
    assert!(
        log.contains(&format!("[INFO  ariesdb::db] opened the database read-only in {d} after a clean close")),
        "{log}"
    );
    assert!(log.contains(&format!("closed read-only in {d}: nothing was written")), "{log}");
    let o = run(&["delete", d, "nothing", "--log-level", "info"]);
    let log = stderr(&o);
    ok(o);
    assert!(log.contains(&format!("[INFO  ariesdb::db] opened the database in {d} after a clean close")), "{log}");
    assert!(log.contains("closed cleanly"), "{log}");
    let o = run(&["checkpoint", d, "--log-level", "debug"]);
    let log = stderr(&o);
    ok(o);
    assert!(log.contains("[DEBUG ariesdb::recovery::checkpoint] checkpoint (manual)"), "{log}");
    // ARIESDB_LOG when no option is given; the option wins over it.
    let with_env = |args: &[&str]| Command::new(BIN).args(args).env("ARIESDB_LOG", "debug").output().unwrap();
    let o = with_env(&["delete", d, "nothing"]);
    assert!(stderr(&o).contains("checkpoint (end of recovery)"), "{}", stderr(&o));
    let o = with_env(&["--log-level", "off", "get", d, "apple"]);
    assert!(o.stderr.is_empty(), "{}", stderr(&o));
    // A value that is neither a level nor a filter of ariesdb's modules is
    // said, not silently read as a module name.
    let o = Command::new(BIN).args(["get", d, "apple"]).env("ARIESDB_LOG", "loud").output().unwrap();
    assert!(stderr(&o).contains("ARIESDB_LOG=\"loud\" is neither a level"), "{}", stderr(&o));
    assert_eq!(ok(o), "red\n");
    // A level that is not one is a usage error.
    let o = run(&["--log-level", "loud", "get", d, "apple"]);
    assert_eq!(code(&o), 2);
    assert!(stderr(&o).contains("possible values: error, warn, info, debug, trace, off"), "{}", stderr(&o));
}

#[test]
fn a_closed_stdout_ends_commands_quietly() {
    let t = Tmp::new("pipe");
    let db = small_db(&t);
    let d = db.to_str().unwrap();
    for args in [vec!["check", d], vec!["stats", d], vec!["scan", d], vec!["waldump", d], vec!["get", d, "apple"]] {
        let mut child = Command::new(BIN)
            .args(&args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // The reader goes away before the command writes (usually: it has
        // to open the database first), as `| head -0` would.
        drop(child.stdout.take());
        let o = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}

/// The number just before `word` in `text` ("61 counted" -> 61).
fn number_before(text: &str, word: &str) -> u64 {
    let at = text.find(word).unwrap_or_else(|| panic!("no {word:?} in:\n{text}"));
    let digits: String = text[..at]
        .trim_end()
        .chars()
        .rev()
        .take_while(char::is_ascii_digit)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    digits.parse().unwrap_or_else(|e| panic!("no number before {word:?} ({e}) in:\n{text}"))
}

#[test]
fn stats_on_a_crashed_directory_tells_pages_in_the_file_from_pages_counted() {
    let t = Tmp::new("short-file");
    let dir = t.db();
    // A crash after commits whose pages were never written back: the library
    // with the background writer off and a pool that holds every page, then
    // dropped without close(). The drop flushes the log and writes no page,
    // leaving the directory as a kill after the commits' fsyncs would.
    {
        let opts = ariesdb::Options::default().background_writer(false).buffer_pool_pages(2048);
        let db = ariesdb::Db::open_path_with(&dir, opts).unwrap();
        for batch in 0..4u32 {
            let mut tx = db.begin().unwrap();
            for i in 0..500u32 {
                tx.put(format!("key{batch}-{i:05}"), [b'v'; 100]).unwrap();
            }
            tx.commit().unwrap();
        }
        drop(db);
    }
    // Pages the file reaches, the last maybe partly (a new database's file
    // may hold only the master record at the start of page 0).
    let file_len = std::fs::metadata(dir.join("data.db")).unwrap().len();
    let file_pages = file_len.div_ceil(4096);
    let before = snapshot(&dir);

    let stats = ok(run_in(&dir, "stats", &[]));
    let counted = number_before(&stats, "counted by the meta page");
    assert!(counted > file_pages + 10, "the crash left {file_pages} pages in the file, the meta page counts {counted}");
    let header = stats.lines().find(|l| l.starts_with("data file data.db: ")).unwrap();
    let (whole, rest) = (file_len / 4096, file_len % 4096);
    if rest == 0 {
        assert!(header.ends_with(&format!(", {whole} pages of 4096 bytes")), "{header}");
    } else {
        assert!(
            header.contains(&format!(", {whole} whole pages of 4096 bytes and {rest} bytes of page {whole}")),
            "{header}"
        );
    }
    let missing = counted - file_pages;
    assert!(
        stats.contains(&format!(
            "the file's length covers {file_pages} of them; recovery is pending and will write the other {missing} from the log"
        )),
        "{stats}"
    );
    assert!(stats.contains("recovery pending: yes"), "{stats}");
    assert!(!stats.contains(&format!("{counted} in the file")), "{stats}");
    let check = ok(run_in(&dir, "check", &[]));
    assert!(check.contains(&format!("the file's length covers {file_pages} of them")), "{check}");
    assert_eq!(snapshot(&dir), before, "stats or check changed the crashed directory");

    // Recovery on disk (the checkpoint command opens for writing, then closes)
    // writes them: the file then holds every page the meta page counts.
    ok(run_in(&dir, "checkpoint", &[]));
    let stats = ok(run_in(&dir, "stats", &[]));
    assert!(stats.contains(&format!("{counted} pages of 4096 bytes")), "{stats}");
    assert!(stats.contains(&format!("{counted} in the file:")), "{stats}");
    assert!(stats.contains("recovery pending: no"), "{stats}");
}
