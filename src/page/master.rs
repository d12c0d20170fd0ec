//! The master record: where recovery starts. Two copies live in page 0 of the
//! data file, at byte 0 and byte 512, each inside one 512-byte sector, each
//! with its own CRC32. Copy `seq % 2` is rewritten (and synced) each time, so a
//! torn write can damage at most the copy being written; the other still holds
//! the previous checkpoint. Readers take the valid copy with the highest `seq`.

use super::{get_u32, get_u64, put_u32, put_u64};
use crate::error::{Error, Result};
use crate::types::Lsn;

/// Bytes of one copy (one sector).
pub const MASTER_COPY_LEN: usize = 512;
const MAGIC: u64 = u64::from_le_bytes(*b"ARIESDB\0");
/// Version of the on-disk format as a whole. 2: the B+tree keeps the shape
/// bounds of docs/design.md section 5.1 (byte layouts as in 1). A version 1
/// file is upgraded at open: its tree is reshaped (`BTree::repair_shape`) and
/// the next master record says 2. A newer version is refused.
pub const FORMAT_VERSION: u32 = 2;
/// Version 2 also gives the master record its `clean_end` (bytes 40..48, zero
/// in version 1 records).
/// The oldest version this build opens.
pub const OLDEST_FORMAT_VERSION: u32 = 1;
const CRC_OFF: usize = 48;

/// The master record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Master {
    /// Incremented on every write.
    pub seq: u64,
    /// Page size of the data file.
    pub page_size: u32,
    /// Begin LSN of the last complete checkpoint; 0 when none has completed.
    pub checkpoint_lsn: Lsn,
    /// The log was durable up to here when this record was written.
    pub durable_lsn: Lsn,
    /// Format version of the database (see `FORMAT_VERSION`); written as
    /// `FORMAT_VERSION` once the database is upgraded.
    pub version: u32,
    /// Written by a clean close: the log ends exactly here, every record
    /// before it durable and nothing after it, so the next open reads the
    /// log only up to here. 0: not known (any other master record).
    pub clean_end: Lsn,
}

impl Master {
    /// Encode one copy.
    pub fn encode(&self) -> [u8; MASTER_COPY_LEN] {
        let mut b = [0u8; MASTER_COPY_LEN];
        put_u64(&mut b, 0, MAGIC);
        put_u32(&mut b, 8, self.version);
        put_u32(&mut b, 12, self.page_size);
        put_u64(&mut b, 16, self.seq);
        put_u64(&mut b, 24, self.checkpoint_lsn.get());
        put_u64(&mut b, 32, self.durable_lsn.get());
        put_u64(&mut b, 40, self.clean_end.get());
        let crc = crc32fast::hash(&b[..CRC_OFF]);
        put_u32(&mut b, CRC_OFF, crc);
        b
    }

    /// Decode one copy; None if it is not a valid copy (a version this build
    /// does not know is decoded, and refused by `pick`).
    pub fn decode(b: &[u8]) -> Option<Master> {
        if b.len() < MASTER_COPY_LEN || get_u64(b, 0) != MAGIC {
            return None;
        }
        if crc32fast::hash(&b[..CRC_OFF]) != get_u32(b, CRC_OFF) {
            return None;
        }
        Some(Master {
            seq: get_u64(b, 16),
            page_size: get_u32(b, 12),
            checkpoint_lsn: Lsn(get_u64(b, 24)),
            durable_lsn: Lsn(get_u64(b, 32)),
            version: get_u32(b, 8),
            clean_end: Lsn(get_u64(b, 40)),
        })
    }

    /// Byte offset of the copy this record is written to.
    pub fn offset(&self) -> u64 {
        (self.seq % 2) * MASTER_COPY_LEN as u64
    }

    /// Pick the newest valid copy from the first 1024 bytes of the data file.
    /// Ok(None) when both are absent (all zero); Err when bytes are there but
    /// neither copy is valid.
    pub fn pick(first_bytes: &[u8]) -> Result<Option<Master>> {
        let a = first_bytes.get(..MASTER_COPY_LEN).and_then(Master::decode);
        let b = first_bytes.get(MASTER_COPY_LEN..2 * MASTER_COPY_LEN).and_then(Master::decode);
        let newest = match (a, b) {
            (Some(x), Some(y)) => Some(if x.seq >= y.seq { x } else { y }),
            (Some(x), None) | (None, Some(x)) => Some(x),
            (None, None) if first_bytes.iter().all(|&x| x == 0) => None,
            (None, None) => return Err(Error::corruption("data", "both copies of the master record are damaged")),
        };
        if let Some(m) = newest {
            if !(OLDEST_FORMAT_VERSION..=FORMAT_VERSION).contains(&m.version) {
                return Err(Error::InvalidArgument(format!(
                    "the database has format version {}; this build opens versions {OLDEST_FORMAT_VERSION} to \
                     {FORMAT_VERSION} (a newer ariesdb wrote it)",
                    m.version
                )));
            }
        }
        Ok(newest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newest_valid_copy_wins() {
        let m1 = Master {
            seq: 1,
            page_size: 4096,
            checkpoint_lsn: Lsn(100),
            durable_lsn: Lsn(200),
            version: FORMAT_VERSION,
            clean_end: Lsn(0),
        };
        let m2 = Master { seq: 2, ..m1 };
        let mut buf = vec![0u8; 1024];
        buf[m1.offset() as usize..][..512].copy_from_slice(&m1.encode());
        buf[m2.offset() as usize..][..512].copy_from_slice(&m2.encode());
        assert_eq!(Master::pick(&buf).unwrap(), Some(m2));
        buf[m2.offset() as usize + 20] ^= 1;
        assert_eq!(Master::pick(&buf).unwrap(), Some(m1));
        buf[m1.offset() as usize + 20] ^= 1;
        assert!(Master::pick(&buf).is_err());
        assert_eq!(Master::pick(&[0u8; 1024]).unwrap(), None);
    }

    #[test]
    fn versions_old_and_new() {
        let old = Master {
            seq: 3,
            page_size: 4096,
            checkpoint_lsn: Lsn(100),
            durable_lsn: Lsn(200),
            version: 1,
            clean_end: Lsn(0),
        };
        let mut buf = vec![0u8; 1024];
        buf[old.offset() as usize..][..512].copy_from_slice(&old.encode());
        assert_eq!(Master::pick(&buf).unwrap().map(|m| m.version), Some(1));
        let newer = Master { seq: 4, version: FORMAT_VERSION + 1, ..old };
        buf[newer.offset() as usize..][..512].copy_from_slice(&newer.encode());
        let e = Master::pick(&buf).unwrap_err();
        assert!(e.to_string().contains("format version"), "{e}");
    }
}
