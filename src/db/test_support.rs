//! What the unit tests of the `Db` facade share: small options on a
//! simulated disk, and a committed state read back as a model.

use std::collections::BTreeMap;

use super::Db;
use crate::options::Options;

/// The committed state the tests compare with: key -> value.
pub(super) type Model = BTreeMap<Vec<u8>, Vec<u8>>;

/// The smallest pool, no background thread, no automatic checkpoints,
/// 256 KiB log segments; `instant`: instant restart or the classic passes.
pub(super) fn small_opts(instant: bool) -> Options {
    Options::default()
        .buffer_pool_pages(crate::MIN_BUFFER_POOL_PAGES)
        .background_writer(false)
        .checkpoint_interval_bytes(0)
        .wal_segment_bytes(256 << 10)
        .instant_restart(instant)
}

/// Every committed pair, by a full scan in a read-write transaction.
pub(super) fn read_all_txn(db: &Db) -> crate::error::Result<Model> {
    let tx = db.begin()?;
    let mut m = Model::new();
    for item in tx.scan(..)? {
        let (key, value) = item?;
        m.insert(key, value);
    }
    tx.commit()?;
    Ok(m)
}
