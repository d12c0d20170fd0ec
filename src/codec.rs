//! Little-endian encoding helpers with bounds-checked decoding.
//!
//! Invariant: `Reader` never panics and never allocates more than the bytes it
//! was given; every read past the end is an `Error::Corruption` naming what was
//! being decoded.

use crate::error::{Error, Result};
use crate::types::{Lsn, PageId, TxnId};

/// A cursor over bytes read from disk.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    what: &'static str,
}

impl<'a> Reader<'a> {
    /// Start reading `buf`; `what` names the file for error messages.
    #[inline]
    pub fn new(buf: &'a [u8], what: &'static str) -> Reader<'a> {
        Reader { buf, pos: 0, what }
    }
    /// Bytes not yet read.
    #[inline]
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }
    /// Take the next `n` bytes.
    #[inline]
    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8]> {
        if n > self.remaining() {
            return Err(self.past_end(n));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    /// The error of a field of `n` bytes that runs past the end (out of line:
    /// `bytes` and the readers built on it are inlined into decoders).
    #[cold]
    #[inline(never)]
    fn past_end(&self, n: usize) -> Error {
        Error::corruption(
            self.what,
            format!("field of {n} bytes at offset {} runs past the end ({} bytes)", self.pos, self.buf.len()),
        )
    }
    /// Next byte.
    #[inline]
    pub fn u8(&mut self) -> Result<u8> {
        Ok(self.bytes(1)?[0])
    }
    /// Next u16.
    #[inline]
    pub fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_le_bytes(self.bytes(2)?.try_into().expect("2")))
    }
    /// Next u32.
    #[inline]
    pub fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.bytes(4)?.try_into().expect("4")))
    }
    /// Next u64.
    #[inline]
    pub fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.bytes(8)?.try_into().expect("8")))
    }
    /// Next LSN (a u64).
    #[inline]
    pub fn lsn(&mut self) -> Result<Lsn> {
        self.u64().map(Lsn)
    }
    /// Next page id (a u32).
    #[inline]
    pub fn page_id(&mut self) -> Result<PageId> {
        self.u32().map(PageId)
    }
    /// Next transaction id (a u64).
    #[inline]
    pub fn txn_id(&mut self) -> Result<TxnId> {
        self.u64().map(TxnId)
    }
    /// A u16 length then that many bytes.
    #[inline]
    pub fn bytes16(&mut self) -> Result<&'a [u8]> {
        let n = self.u16()? as usize;
        self.bytes(n)
    }
    /// A u32 length then that many bytes (bounded by what remains, so never a huge allocation).
    #[inline]
    pub fn bytes32(&mut self) -> Result<&'a [u8]> {
        let n = self.u32()? as usize;
        self.bytes(n)
    }
    /// A count that is bounded by the bytes left, given each item takes at least `min_item` bytes.
    #[inline]
    pub fn count(&mut self, min_item: usize) -> Result<usize> {
        let n = self.u32()? as usize;
        if n.saturating_mul(min_item.max(1)) > self.remaining() {
            return Err(self.too_many(n));
        }
        Ok(n)
    }
    /// The error of a count that exceeds the bytes left (out of line, as `past_end`).
    #[cold]
    #[inline(never)]
    fn too_many(&self, n: usize) -> Error {
        Error::corruption(self.what, format!("count {n} exceeds the bytes left"))
    }
    /// Fail unless every byte was consumed (the round-trip tests check it).
    #[cfg(test)]
    pub fn finish(&self) -> Result<()> {
        if self.remaining() != 0 {
            return Err(Error::corruption(self.what, format!("{} trailing bytes", self.remaining())));
        }
        Ok(())
    }
}

/// Append-only little-endian writer.
pub trait Writer {
    /// Append a u8.
    fn put_u8(&mut self, v: u8);
    /// Append a u16.
    fn put_u16(&mut self, v: u16);
    /// Append a u32.
    fn put_u32(&mut self, v: u32);
    /// Append a u64.
    fn put_u64(&mut self, v: u64);
    /// Append an LSN (a u64).
    fn put_lsn(&mut self, v: Lsn) {
        self.put_u64(v.0)
    }
    /// Append a page id (a u32).
    fn put_page_id(&mut self, v: PageId) {
        self.put_u32(v.0)
    }
    /// Append a transaction id (a u64).
    fn put_txn_id(&mut self, v: TxnId) {
        self.put_u64(v.0)
    }
    /// Append a u16 length and the bytes.
    fn put_bytes16(&mut self, b: &[u8]);
    /// Append a u32 length and the bytes.
    fn put_bytes32(&mut self, b: &[u8]);
}

impl Writer for Vec<u8> {
    fn put_u8(&mut self, v: u8) {
        self.push(v)
    }
    fn put_u16(&mut self, v: u16) {
        self.extend_from_slice(&v.to_le_bytes())
    }
    fn put_u32(&mut self, v: u32) {
        self.extend_from_slice(&v.to_le_bytes())
    }
    fn put_u64(&mut self, v: u64) {
        self.extend_from_slice(&v.to_le_bytes())
    }
    fn put_bytes16(&mut self, b: &[u8]) {
        debug_assert!(b.len() <= u16::MAX as usize);
        self.put_u16(b.len() as u16);
        self.extend_from_slice(b)
    }
    fn put_bytes32(&mut self, b: &[u8]) {
        debug_assert!(b.len() <= u32::MAX as usize);
        self.put_u32(b.len() as u32);
        self.extend_from_slice(b)
    }
}
