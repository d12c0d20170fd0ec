//! The tool's logger: the library's log lines (the `log` facade) on stderr,
//! one a line: `[LEVEL target] message`.

use std::io::Write;

use clap::ValueEnum;
use log::LevelFilter;

/// The environment variable read when `--log-level` is not given: a level,
/// or env_logger's filters (`ariesdb::wal=debug,info`).
pub const ENV: &str = "ARIESDB_LOG";

/// The values of `--log-level`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
    Off,
}

impl LogLevel {
    fn filter(self) -> LevelFilter {
        match self {
            LogLevel::Error => LevelFilter::Error,
            LogLevel::Warn => LevelFilter::Warn,
            LogLevel::Info => LevelFilter::Info,
            LogLevel::Debug => LevelFilter::Debug,
            LogLevel::Trace => LevelFilter::Trace,
            LogLevel::Off => LevelFilter::Off,
        }
    }

    /// The name `--log-level` takes.
    pub fn name(self) -> String {
        self.to_possible_value().map(|v| v.get_name().to_string()).unwrap_or_default()
    }
}

/// Whether each comma-separated part of `spec` is a level or names a module
/// of ariesdb (env_logger would read any other word as a module name and
/// show nothing, which hides a typo such as `ARIESDB_LOG=loud`).
fn is_filter_spec(spec: &str) -> bool {
    spec.split(',').map(str::trim).filter(|d| !d.is_empty()).all(|d| {
        let (target, level) = match d.split_once('=') {
            Some((t, l)) => (Some(t), l),
            None if LogLevel::from_str(d, true).is_ok() => (None, d),
            None => (Some(d), "trace"),
        };
        let level_ok = LogLevel::from_str(level, true).is_ok();
        let target_ok = target.is_none_or(|t| t.trim().starts_with("ariesdb"));
        level_ok && target_ok
    })
}

/// Install the logger: `level` if given, else the filters of `ARIESDB_LOG`
/// if set, else `default`.
pub fn init(level: Option<LogLevel>, default: LevelFilter) {
    let mut b = env_logger::Builder::new();
    b.format(|buf, r| writeln!(buf, "[{:<5} {}] {}", r.level(), r.target(), r.args()));
    match (level, std::env::var(ENV)) {
        (Some(l), _) => b.filter_level(l.filter()),
        (None, Ok(spec)) if !spec.trim().is_empty() && is_filter_spec(&spec) => b.parse_filters(&spec),
        (None, Ok(spec)) if !spec.trim().is_empty() => {
            eprintln!(
                "ariesdb: {ENV}={spec:?} is neither a level (error, warn, info, debug, trace, off) nor a filter \
                 of ariesdb's modules (ariesdb::wal=debug); logging at the default level"
            );
            b.filter_level(default)
        }
        _ => b.filter_level(default),
    };
    // Only fails if a logger is already set: there is none before this.
    let _ = b.try_init();
}
