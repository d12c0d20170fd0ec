//! `ariesdb`: the command-line tool of the ariesdb storage engine.
//!
//! A crash-and-recover demo, key-value commands, a log dump, check/stats
//! that open the directory read-only, and backup. Uses only the library's public API
//! (and `ariesdb::internals` for the log decoder). See docs/cli.md.

/// `println!` and `print!` for this crate: std's panic when stdout is gone
/// (`ariesdb check DIR | head -1` closes the pipe early). Here a closed pipe
/// ends the process quietly with status 0, as other command-line tools do,
/// and any other error of stdout with status 1.
macro_rules! println {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        if let Err(e) = writeln!(std::io::stdout(), $($t)*) {
            $crate::stdout_failed(e)
        }
    }};
}

#[allow(unused_macros)]
macro_rules! print {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        if let Err(e) = write!(std::io::stdout(), $($t)*) {
            $crate::stdout_failed(e)
        }
    }};
}

/// An LSN on the command line: decimal, or hex after `0x`.
fn parse_lsn(s: &str) -> Result<u64, String> {
    let r = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => s.parse(),
    };
    r.map_err(|e| format!("{s:?} is not an LSN (decimal, or hex after 0x): {e}"))
}

/// Stdout failed: a closed pipe is the reader's choice (exit 0), anything
/// else an error (exit 1).
fn stdout_failed(e: std::io::Error) -> ! {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        std::process::exit(0);
    }
    eprintln!("ariesdb: writing to stdout failed: {e}");
    std::process::exit(1);
}

mod demo;
mod inspect;
mod kv;
mod logger;
mod util;
mod waldump;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use logger::LogLevel;
use util::CliError;

const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  any other error (I/O, invalid argument such as a backup DEST that is
     not empty, a failed verification)
  2  usage error (unknown command or option, missing argument)
  3  the directory does not exist, or holds no ariesdb database
  4  the directory is in use by another process (its LOCK file is held)
  5  damage: a file of the database is corrupt (check found a problem, or
     recovery could not explain what is on disk)";

/// The command-line tool of ariesdb, an embedded transactional key-value
/// engine that recovers by ARIES.
#[derive(Parser)]
#[command(name = "ariesdb", version, about, long_about = None, after_help = EXIT_CODES)]
struct Cli {
    /// How much of the library's log to print on stderr (info: the open,
    /// recovery pass by pass, a clean close; debug: also checkpoints and log
    /// truncation). Default: the ARIESDB_LOG environment variable if set (a
    /// level, or filters such as ariesdb::wal=debug), else info for demo and
    /// warn for the other commands.
    #[arg(long, global = true, value_enum, value_name = "LEVEL")]
    log_level: Option<LogLevel>,
    #[command(subcommand)]
    cmd: Cmd,
}

/// Options of commands that take keys or values.
#[derive(clap::Args, Clone, Copy)]
struct Encoding {
    /// Keys and values given on the command line are hex, and are printed as hex
    /// (default: given as UTF-8 text, printed with b"..."-style escapes).
    #[arg(long)]
    hex: bool,
}

#[derive(Subcommand)]
enum Cmd {
    /// The story of a crash: a bank of accounts, threads transferring money in
    /// a child process, SIGKILL mid-flight, then recovery pass by pass and a
    /// check that no money was lost and every acknowledged transfer survived.
    ///
    /// DIR is deleted and recreated: give a directory the demo may own.
    Demo {
        /// Where to build the demo database (recreated fresh).
        #[arg(default_value = "./ariesdb-demo")]
        dir: PathBuf,
        /// Number of bank accounts (at least 20: two batch jobs hold 10 each).
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(20..))]
        accounts: u32,
        /// Transfer threads in the child process (1 to 64).
        #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=64))]
        threads: u32,
        /// A shorter run (for tests): fewer accounts and an earlier kill.
        #[arg(long)]
        quick: bool,
        /// Stop after the kill: leave DIR as the crash left it, recovery still
        /// pending, to look at with waldump, stats and check.
        #[arg(long)]
        crash_only: bool,
    },
    /// The demo's workload; run by `demo` as its child process.
    #[command(hide = true)]
    DemoChild {
        dir: PathBuf,
        #[arg(long)]
        accounts: u32,
        #[arg(long)]
        threads: u32,
    },
    /// Print the value of KEY (exit 1 with a message if there is none).
    Get {
        /// The database directory.
        dir: PathBuf,
        /// The key (text, or hex with --hex).
        key: String,
        #[command(flatten)]
        enc: Encoding,
    },
    /// Set KEY to VALUE in one committed transaction.
    Put {
        /// The database directory (must exist; a database is created in it if it has none).
        dir: PathBuf,
        /// The key (text, or hex with --hex).
        key: String,
        /// The value (text, or hex with --hex).
        value: String,
        #[command(flatten)]
        enc: Encoding,
    },
    /// Remove KEY in one committed transaction.
    Delete {
        /// The database directory.
        dir: PathBuf,
        /// The key (text, or hex with --hex).
        key: String,
        #[command(flatten)]
        enc: Encoding,
    },
    /// Print entries in key order, one per line: key, a tab, value.
    Scan {
        /// The database directory.
        dir: PathBuf,
        /// Only keys that start with P.
        #[arg(long, value_name = "P")]
        prefix: Option<String>,
        /// Only keys >= S.
        #[arg(long, value_name = "S")]
        start: Option<String>,
        /// Only keys < E.
        #[arg(long, value_name = "E")]
        end: Option<String>,
        /// Descending key order (a backward scan).
        #[arg(long)]
        reverse: bool,
        /// At most N entries (the first N in the order printed).
        #[arg(long, value_name = "N")]
        limit: Option<usize>,
        #[command(flatten)]
        enc: Encoding,
    },
    /// Dump the write-ahead log, one line per record, and a summary per kind.
    /// Reads the log segment files directly: it never opens the database and
    /// writes nothing.
    Waldump {
        /// The database directory.
        dir: PathBuf,
        /// Only records of transaction T (0: system records).
        #[arg(long, value_name = "T")]
        txn: Option<u64>,
        /// Only records that change page P.
        #[arg(long, value_name = "P")]
        page: Option<u32>,
        /// Only records of kind K (update, clr, redo, commit, abort, end, ckptbegin, ckptend, segend).
        #[arg(long, value_name = "K")]
        kind: Option<String>,
        /// Only records at LSN >= this (decimal, or hex with 0x as in segment file names).
        #[arg(long, value_name = "LSN", value_parser = parse_lsn)]
        from: Option<u64>,
        /// Only records at LSN < this (decimal, or hex with 0x).
        #[arg(long, value_name = "LSN", value_parser = parse_lsn)]
        to: Option<u64>,
        /// Print only the summary of counts and bytes per kind.
        #[arg(long)]
        summary: bool,
    },
    /// Integrity check. Opens DIR read-only (recovery runs in memory), so DIR
    /// itself is never changed. Exit 5 on damage.
    Check {
        /// The database directory.
        dir: PathBuf,
    },
    /// What is on disk: data file, pages by kind, free pages, fill, tree height,
    /// log segments, last checkpoint, and whether recovery is pending. Opens DIR
    /// read-only (recovery runs in memory), so DIR itself is never changed. Exit
    /// 5 on damage.
    Stats {
        /// The database directory.
        dir: PathBuf,
    },
    /// Take a checkpoint (opens the database: runs recovery if it is pending).
    Checkpoint {
        /// The database directory.
        dir: PathBuf,
    },
    /// Shrink the data file to the pages in use; prints its size before and after.
    Compact {
        /// The database directory.
        dir: PathBuf,
    },
    /// Copy the database into a new database at DEST, from one consistent
    /// snapshot (Db::backup, which an application calls while it runs). DEST
    /// must not exist or be an empty directory; the copy is built beside it
    /// and renamed to DEST when complete, so DEST never holds a partial copy.
    Backup {
        /// The database directory.
        dir: PathBuf,
        /// Where the copy goes: a new path, or an empty directory.
        dest: PathBuf,
    },
}

fn run(cli: Cli) -> Result<(), CliError> {
    let default = match cli.cmd {
        Cmd::Demo { .. } => log::LevelFilter::Info,
        _ => log::LevelFilter::Warn,
    };
    logger::init(cli.log_level, default);
    match cli.cmd {
        Cmd::Demo { dir, accounts, threads, quick, crash_only } => {
            demo::run(&dir, accounts, threads, quick, crash_only, cli.log_level)
        }
        Cmd::DemoChild { dir, accounts, threads } => demo::child(&dir, accounts, threads),
        Cmd::Get { dir, key, enc } => kv::get(&dir, &key, enc.hex),
        Cmd::Put { dir, key, value, enc } => kv::put(&dir, &key, &value, enc.hex),
        Cmd::Delete { dir, key, enc } => kv::delete(&dir, &key, enc.hex),
        Cmd::Scan { dir, prefix, start, end, reverse, limit, enc } => {
            kv::scan(&dir, kv::ScanArgs { prefix, start, end, reverse, limit, hex: enc.hex })
        }
        Cmd::Waldump { dir, txn, page, kind, from, to, summary } => {
            waldump::run(&dir, waldump::Filter { txn, page, kind, from, to }, summary)
        }
        Cmd::Check { dir } => inspect::check(&dir),
        Cmd::Stats { dir } => inspect::stats(&dir),
        Cmd::Checkpoint { dir } => kv::checkpoint(&dir),
        Cmd::Compact { dir } => kv::compact(&dir),
        Cmd::Backup { dir, dest } => kv::backup(&dir, &dest),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(CliError::StdoutClosed) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ariesdb: {}", e.message());
            ExitCode::from(e.code())
        }
    }
}
