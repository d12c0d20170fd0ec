//! Errors with exit codes, key encoding, and opening a directory safely.

use std::fmt::Write as _;
use std::fs::File;
use std::path::Path;

use ariesdb::{Db, Error, Options, DATA_FILE};

/// Name of the lock file the library holds while a database is open.
pub const LOCK_FILE: &str = "LOCK";

/// An error of the tool, with its exit code.
#[derive(Debug)]
pub enum CliError {
    /// Exit 3: the directory does not exist or holds no database.
    Missing(String),
    /// Exit 4: the directory is in use by another process.
    Locked(String),
    /// Exit 5: damage.
    Damage(String),
    /// Exit 1: anything else.
    Other(String),
    /// Exit 0, quietly: stdout is a pipe whose reader has gone (`| head`).
    StdoutClosed,
}

impl CliError {
    pub fn code(&self) -> u8 {
        match self {
            CliError::Missing(_) => 3,
            CliError::Locked(_) => 4,
            CliError::Damage(_) => 5,
            CliError::Other(_) => 1,
            CliError::StdoutClosed => 0,
        }
    }

    pub fn message(&self) -> &str {
        match self {
            CliError::Missing(m) | CliError::Locked(m) | CliError::Damage(m) | CliError::Other(m) => m,
            CliError::StdoutClosed => "",
        }
    }
}

impl From<Error> for CliError {
    fn from(e: Error) -> CliError {
        match e {
            Error::Locked { path } => CliError::Locked(format!(
                "{path} is in use by another process (its LOCK file is held); close that process first"
            )),
            Error::NotFound { path, reason } => missing(Path::new(&path), reason),
            Error::Corruption { file, detail } => {
                let place = match file {
                    "data" => "the data file (data.db)",
                    "wal" => "the log (wal-*.log)",
                    "btree" => "the B+tree (data.db)",
                    other => other,
                };
                CliError::Damage(format!("damage found in {place}: {detail}"))
            }
            e => CliError::Other(e.to_string()),
        }
    }
}

impl From<std::io::Error> for CliError {
    fn from(e: std::io::Error) -> CliError {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            return CliError::StdoutClosed;
        }
        CliError::Other(format!("I/O error: {e}"))
    }
}

/// Bytes as text: printable ASCII as is, everything else escaped the way
/// Rust escapes a byte string (`\n`, `\t`, `\\`, `\"`, `\xNN`).
pub fn escape(b: &[u8]) -> String {
    b.iter().flat_map(|&c| std::ascii::escape_default(c)).map(char::from).collect()
}

/// Bytes as lowercase hex.
pub fn to_hex(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len() * 2);
    for c in b {
        let _ = write!(s, "{c:02x}");
    }
    s
}

/// Bytes for display: hex or escaped.
pub fn show(b: &[u8], hex: bool) -> String {
    if hex {
        to_hex(b)
    } else {
        escape(b)
    }
}

/// A key or value from the command line: UTF-8 text, or hex with `--hex`.
pub fn parse_bytes(s: &str, hex: bool, what: &str) -> Result<Vec<u8>, CliError> {
    if !hex {
        return Ok(s.as_bytes().to_vec());
    }
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    if !s.len().is_multiple_of(2) {
        return Err(CliError::Other(format!("{what} {s:?} is not hex: odd number of digits")));
    }
    (0..s.len())
        .step_by(2)
        .map(|i| {
            u8::from_str_radix(&s[i..i + 2], 16)
                .map_err(|_| CliError::Other(format!("{what} {s:?} is not hex: bad digits {:?}", &s[i..i + 2])))
        })
        .collect()
}

/// Exit 3, in the words of the library's `Error::NotFound`.
fn missing(dir: &Path, reason: &str) -> CliError {
    CliError::Missing(format!(
        "no ariesdb database at {}: {reason} (nothing was created; check the path)",
        dir.display()
    ))
}

/// For the commands that do not open the directory through
/// `Db::open_existing`: it must exist (`Db::open` would create it) and,
/// unless `allow_new`, hold a database.
pub fn require_db(dir: &Path, allow_new: bool) -> Result<(), CliError> {
    if !dir.exists() {
        return Err(missing(dir, "the directory does not exist"));
    }
    if !dir.is_dir() {
        return Err(missing(dir, "it is not a directory"));
    }
    if !dir.join(DATA_FILE).exists() {
        if !allow_new {
            return Err(missing(dir, "the directory holds no data.db"));
        }
        // A new database only in an empty directory: `put` into a directory
        // of other files is more likely a wrong path than a wish.
        if std::fs::read_dir(dir)?.next().is_some() {
            return Err(missing(
                dir,
                "the directory holds other files and no data.db (put creates a database only in an empty directory)",
            ));
        }
    }
    Ok(())
}

/// Open the database in `dir` for reading and writing (runs recovery if the
/// last shutdown was not clean). There must be one: `Db::open_existing`
/// creates nothing, and its `Error::NotFound` is exit 3.
pub fn open(dir: &Path) -> Result<Db, CliError> {
    Ok(Db::open_existing_with(dir, one_shot_opts())?)
}

/// Options of a command's open: the classic three passes before the open
/// returns. A one-shot command gains nothing from instant restart (its close
/// would redo the rest anyway), and so the recovery it reports at the open
/// is the whole of it.
fn one_shot_opts() -> Options {
    Options::default().instant_restart(false)
}

/// Open the database in `dir`, creating one if the directory (which must
/// exist) is empty.
pub fn open_or_create(dir: &Path) -> Result<Db, CliError> {
    require_db(dir, true)?;
    Ok(Db::open_path_with(dir, one_shot_opts())?)
}

/// Fail with exit 4 if another process holds the directory's lock. Takes the
/// lock for a moment through a read-only handle: no byte changes.
pub fn ensure_not_in_use(dir: &Path) -> Result<Option<File>, CliError> {
    let path = dir.join(LOCK_FILE);
    let Ok(f) = File::open(&path) else { return Ok(None) };
    match f.try_lock() {
        Ok(()) => Ok(Some(f)),
        Err(std::fs::TryLockError::WouldBlock) => Err(CliError::Locked(format!(
            "{} is in use by another process (its LOCK file is held); close that process first",
            dir.display()
        ))),
        Err(std::fs::TryLockError::Error(e)) => Err(e.into()),
    }
}

/// Regular files of a directory, sorted by name, with their sizes.
pub fn list_files(dir: &Path) -> Result<Vec<(String, u64)>, CliError> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let md = e.metadata()?;
        if md.is_file() {
            out.push((e.file_name().to_string_lossy().into_owned(), md.len()));
        }
    }
    out.sort();
    Ok(out)
}

/// Human-readable size.
pub fn size(bytes: u64) -> String {
    if bytes >= 10 << 20 {
        format!("{:.1} MiB", bytes as f64 / (1 << 20) as f64)
    } else if bytes >= 10 << 10 {
        format!("{:.1} KiB", bytes as f64 / 1024.0)
    } else {
        format!("{bytes} bytes")
    }
}
