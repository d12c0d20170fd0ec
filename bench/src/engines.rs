//! The engines under test behind one small interface: a `Session` per thread
//! runs write and read transactions made of puts, deletes, gets and scans.

use std::ops::Bound;
use std::path::{Path, PathBuf};

use redb::ReadableDatabase;

pub type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Every engine name the runner knows, in table order.
pub const ALL: [&str; 6] = ["ariesdb", "sqlite", "redb", "ariesdb-eventual", "sqlite-normal", "redb-none"];

/// Whether the engine's commits are durable when they return.
pub fn is_durable(name: &str) -> bool {
    matches!(name, "ariesdb" | "sqlite" | "redb")
}

const REDB_TABLE: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("kv");
const PAGE_SIZE: usize = 4096;

/// How to open an engine.
#[derive(Clone, Debug)]
pub struct Config {
    pub name: String,
    pub cache_bytes: usize,
    /// Automatic checkpoints off (ariesdb `checkpoint_interval_bytes(0)`,
    /// SQLite `wal_autocheckpoint=0`); used by the W8 writer.
    pub no_checkpoints: bool,
}

pub enum Engine {
    Aries(ariesdb::Db),
    Sqlite { path: PathBuf, synchronous: &'static str, cache_kib: usize, no_checkpoints: bool },
    Redb(redb::Database, redb::Durability),
}

/// Writes inside one transaction.
pub trait Writer {
    fn put(&mut self, k: &[u8], v: &[u8]) -> Res<()>;
    fn delete(&mut self, k: &[u8]) -> Res<bool>;
}

/// Reads inside one transaction.
pub trait Reader {
    /// The value of `k` into `out`; false if absent.
    fn get(&mut self, k: &[u8], out: &mut Vec<u8>) -> Res<bool>;
    /// Up to `n` entries in key order from `start`; returns how many.
    fn scan(&mut self, start: Bound<&[u8]>, n: usize, f: &mut dyn FnMut(&[u8], &[u8])) -> Res<usize>;
}

/// One thread's handle on an engine.
pub trait Session: Send {
    fn write(&mut self, ops: &mut dyn FnMut(&mut dyn Writer) -> Res<()>) -> Res<()>;
    fn read(&mut self, ops: &mut dyn FnMut(&mut dyn Reader) -> Res<()>) -> Res<()>;
}

impl Engine {
    /// Open the engine's database in `dir` (created if needed). `fresh`: a new
    /// database, so create the table.
    pub fn open(cfg: &Config, dir: &Path, fresh: bool) -> Res<Engine> {
        std::fs::create_dir_all(dir)?;
        match cfg.name.as_str() {
            "ariesdb" | "ariesdb-eventual" => {
                let durability =
                    if cfg.name == "ariesdb" { ariesdb::Durability::Immediate } else { ariesdb::Durability::Eventual };
                let mut opts = ariesdb::Options::default()
                    .page_size(PAGE_SIZE)
                    .buffer_pool_pages((cfg.cache_bytes / PAGE_SIZE).max(8))
                    .durability(durability);
                if cfg.no_checkpoints {
                    opts = opts.checkpoint_interval_bytes(0);
                }
                Ok(Engine::Aries(ariesdb::Db::open_path_with(dir.join("db"), opts)?))
            }
            "sqlite" | "sqlite-normal" => {
                let e = Engine::Sqlite {
                    path: dir.join("kv.sqlite"),
                    synchronous: if cfg.name == "sqlite" { "FULL" } else { "NORMAL" },
                    cache_kib: cfg.cache_bytes / 1024,
                    no_checkpoints: cfg.no_checkpoints,
                };
                if fresh {
                    let c = e.sqlite_conn()?;
                    c.execute_batch("CREATE TABLE IF NOT EXISTS kv(k BLOB PRIMARY KEY, v BLOB) WITHOUT ROWID")?;
                }
                Ok(e)
            }
            "redb" | "redb-none" => {
                let durability = if cfg.name == "redb" { redb::Durability::Immediate } else { redb::Durability::None };
                let db = redb::Database::builder().set_cache_size(cfg.cache_bytes).create(dir.join("kv.redb"))?;
                if fresh {
                    // The table exists durably from the start, whatever the
                    // durability of the commits that follow.
                    let tx = db.begin_write()?;
                    tx.open_table(REDB_TABLE)?;
                    tx.commit()?;
                }
                Ok(Engine::Redb(db, durability))
            }
            other => Err(format!("unknown engine {other:?}").into()),
        }
    }

    fn sqlite_conn(&self) -> Res<rusqlite::Connection> {
        let Engine::Sqlite { path, synchronous, cache_kib, no_checkpoints } = self else { unreachable!() };
        let c = rusqlite::Connection::open(path)?;
        c.busy_timeout(std::time::Duration::from_secs(600))?;
        let mode: String = c.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(format!("SQLite refused WAL mode: {mode}").into());
        }
        c.execute_batch(&format!("PRAGMA synchronous={synchronous}; PRAGMA cache_size=-{cache_kib};"))?;
        if *no_checkpoints {
            c.execute_batch("PRAGMA wal_autocheckpoint=0;")?;
        }
        c.set_prepared_statement_cache_capacity(16);
        Ok(c)
    }

    /// A handle for one thread (SQLite: a connection of its own).
    pub fn session(&self) -> Res<Box<dyn Session + '_>> {
        Ok(match self {
            Engine::Aries(db) => Box::new(AriesSession(db)),
            Engine::Sqlite { .. } => Box::new(SqliteSession(self.sqlite_conn()?)),
            Engine::Redb(db, d) => Box::new(RedbSession(db, *d)),
        })
    }

    /// ariesdb's counters; None for the peers.
    pub fn aries_stats(&self) -> Option<ariesdb::Stats> {
        match self {
            Engine::Aries(db) => Some(db.stats()),
            _ => None,
        }
    }

    /// Clean shutdown.
    pub fn close(self) -> Res<()> {
        match self {
            Engine::Aries(db) => db.close()?,
            Engine::Sqlite { .. } => {}
            Engine::Redb(db, _) => drop(db),
        }
        Ok(())
    }
}

// ---------------------------------------------------------------- ariesdb

struct AriesSession<'a>(&'a ariesdb::Db);
struct AriesTxn(ariesdb::Txn);

impl Session for AriesSession<'_> {
    fn write(&mut self, ops: &mut dyn FnMut(&mut dyn Writer) -> Res<()>) -> Res<()> {
        let mut t = AriesTxn(self.0.begin()?);
        ops(&mut t)?;
        t.0.commit()?;
        Ok(())
    }
    /// Reads run in a read-only snapshot (`Db::begin_read`), as redb's and
    /// SQLite's readers do: no key locks.
    fn read(&mut self, ops: &mut dyn FnMut(&mut dyn Reader) -> Res<()>) -> Res<()> {
        let mut s = AriesRead(self.0.begin_read()?);
        ops(&mut s)
    }
}

struct AriesRead(ariesdb::Snapshot);

impl Reader for AriesRead {
    /// Into the caller's buffer, as the peers' readers copy into it.
    fn get(&mut self, k: &[u8], out: &mut Vec<u8>) -> Res<bool> {
        Ok(self.0.get_into(k, out)?)
    }
    fn scan(&mut self, start: Bound<&[u8]>, n: usize, f: &mut dyn FnMut(&[u8], &[u8])) -> Res<usize> {
        // Entries lent from the scan's buffer, as redb's guards lend pages.
        let mut scan = self.0.scan((start, Bound::Unbounded))?;
        let mut count = 0;
        while count < n {
            let Some((k, v)) = scan.next_entry()? else { break };
            f(k, v);
            count += 1;
        }
        Ok(count)
    }
}

impl Writer for AriesTxn {
    fn put(&mut self, k: &[u8], v: &[u8]) -> Res<()> {
        Ok(self.0.put(k, v)?)
    }
    fn delete(&mut self, k: &[u8]) -> Res<bool> {
        Ok(self.0.delete(k)?)
    }
}

// ---------------------------------------------------------------- SQLite

struct SqliteSession(rusqlite::Connection);

impl SqliteSession {
    fn txn(&mut self, begin: &str, ops: &mut dyn FnMut(&mut rusqlite::Connection) -> Res<()>) -> Res<()> {
        self.0.execute_batch(begin)?;
        match ops(&mut self.0) {
            Ok(()) => {
                self.0.execute_batch("COMMIT")?;
                Ok(())
            }
            Err(e) => {
                let _ = self.0.execute_batch("ROLLBACK");
                Err(e)
            }
        }
    }
}

impl Session for SqliteSession {
    fn write(&mut self, ops: &mut dyn FnMut(&mut dyn Writer) -> Res<()>) -> Res<()> {
        self.txn("BEGIN IMMEDIATE", &mut |c| ops(&mut SqliteTxn(c)))
    }
    fn read(&mut self, ops: &mut dyn FnMut(&mut dyn Reader) -> Res<()>) -> Res<()> {
        self.txn("BEGIN", &mut |c| ops(&mut SqliteTxn(c)))
    }
}

struct SqliteTxn<'c>(&'c mut rusqlite::Connection);

impl Writer for SqliteTxn<'_> {
    fn put(&mut self, k: &[u8], v: &[u8]) -> Res<()> {
        self.0.prepare_cached("INSERT OR REPLACE INTO kv(k, v) VALUES (?1, ?2)")?.execute((k, v))?;
        Ok(())
    }
    fn delete(&mut self, k: &[u8]) -> Res<bool> {
        Ok(self.0.prepare_cached("DELETE FROM kv WHERE k = ?1")?.execute([k])? > 0)
    }
}

impl Reader for SqliteTxn<'_> {
    fn get(&mut self, k: &[u8], out: &mut Vec<u8>) -> Res<bool> {
        let mut st = self.0.prepare_cached("SELECT v FROM kv WHERE k = ?1")?;
        let mut rows = st.query([k])?;
        match rows.next()? {
            Some(row) => {
                out.clear();
                out.extend_from_slice(row.get_ref(0)?.as_blob()?);
                Ok(true)
            }
            None => Ok(false),
        }
    }
    fn scan(&mut self, start: Bound<&[u8]>, n: usize, f: &mut dyn FnMut(&[u8], &[u8])) -> Res<usize> {
        let limit = n as i64;
        let (sql, key): (&str, Option<&[u8]>) = match start {
            Bound::Included(k) => ("SELECT k, v FROM kv WHERE k >= ?1 ORDER BY k LIMIT ?2", Some(k)),
            Bound::Excluded(k) => ("SELECT k, v FROM kv WHERE k > ?1 ORDER BY k LIMIT ?2", Some(k)),
            Bound::Unbounded => ("SELECT k, v FROM kv ORDER BY k LIMIT ?1", None),
        };
        let mut st = self.0.prepare_cached(sql)?;
        let mut rows = match key {
            Some(k) => st.query((k, limit))?,
            None => st.query([limit])?,
        };
        let mut count = 0;
        while let Some(row) = rows.next()? {
            f(row.get_ref(0)?.as_blob()?, row.get_ref(1)?.as_blob()?);
            count += 1;
        }
        Ok(count)
    }
}

// ---------------------------------------------------------------- redb

struct RedbSession<'a>(&'a redb::Database, redb::Durability);

impl Session for RedbSession<'_> {
    fn write(&mut self, ops: &mut dyn FnMut(&mut dyn Writer) -> Res<()>) -> Res<()> {
        let mut tx = self.0.begin_write()?;
        tx.set_durability(self.1)?;
        {
            let mut table = tx.open_table(REDB_TABLE)?;
            ops(&mut RedbWriter(&mut table))?;
        }
        tx.commit()?;
        Ok(())
    }
    fn read(&mut self, ops: &mut dyn FnMut(&mut dyn Reader) -> Res<()>) -> Res<()> {
        let tx = self.0.begin_read()?;
        match tx.open_table(REDB_TABLE) {
            Ok(table) => ops(&mut RedbReader(Some(table))),
            // After a crash that lost every commit the table may not exist.
            Err(redb::TableError::TableDoesNotExist(_)) => ops(&mut RedbReader(None)),
            Err(e) => Err(e.into()),
        }
    }
}

struct RedbWriter<'a, 't>(&'a mut redb::Table<'t, &'static [u8], &'static [u8]>);

impl Writer for RedbWriter<'_, '_> {
    fn put(&mut self, k: &[u8], v: &[u8]) -> Res<()> {
        self.0.insert(k, v)?;
        Ok(())
    }
    fn delete(&mut self, k: &[u8]) -> Res<bool> {
        Ok(self.0.remove(k)?.is_some())
    }
}

struct RedbReader(Option<redb::ReadOnlyTable<&'static [u8], &'static [u8]>>);

impl Reader for RedbReader {
    fn get(&mut self, k: &[u8], out: &mut Vec<u8>) -> Res<bool> {
        let Some(t) = &self.0 else { return Ok(false) };
        match t.get(k)? {
            Some(g) => {
                out.clear();
                out.extend_from_slice(g.value());
                Ok(true)
            }
            None => Ok(false),
        }
    }
    fn scan(&mut self, start: Bound<&[u8]>, n: usize, f: &mut dyn FnMut(&[u8], &[u8])) -> Res<usize> {
        let Some(t) = &self.0 else { return Ok(0) };
        let mut count = 0;
        for item in t.range::<&[u8]>((start, Bound::Unbounded))?.take(n) {
            let (k, v) = item?;
            f(k.value(), v.value());
            count += 1;
        }
        Ok(count)
    }
}
