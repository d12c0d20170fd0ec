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

/// Install the logger: `level` if given, else the filters of `ARIESDB_LOG`
/// if set, else `default`.
pub fn init(level: Option<LogLevel>, default: LevelFilter) {
    let mut b = env_logger::Builder::new();
    b.format(|buf, r| writeln!(buf, "[{:<5} {}] {}", r.level(), r.target(), r.args()));
    match (level, std::env::var(ENV)) {
        (Some(l), _) => b.filter_level(l.filter()),
        (None, Ok(spec)) if !spec.trim().is_empty() => b.parse_filters(&spec),
        _ => b.filter_level(default),
    };
    // Only fails if a logger is already set: there is none before this.
    let _ = b.try_init();
}
