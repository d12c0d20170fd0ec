//! Page formats: the byte layout of every data page, and the application of one
//! physiological redo operation to one page.
//!
//! Invariants (see docs/design.md, sections 3.2 to 3.4):
//! - Every page starts with a 40-byte header: CRC32 of bytes 4..page_size, the
//!   page's own id (catches misdirected writes), `page_lsn` (LSN of the last
//!   log record applied to the page), `fpi_lsn` (LSN of the last record that
//!   fully defined the page: a full page image or an init), type, and the slot
//!   directory bounds. All integers are little-endian.
//! - A page read from storage is used only after `verify` accepted it: CRC,
//!   page id, type, and every slot offset and cell length inside the page.
//! - `apply` is the only code that changes the contents of a page; normal
//!   operation and redo both go through it, so redo repeats history exactly.
//! - This layer does no I/O.

mod master;
mod ops;
mod slotted;

pub use master::{Master, FORMAT_VERSION, MASTER_COPY_LEN};
pub use ops::{apply, image_op, PageOp};
pub use slotted::*;

use crate::error::{Error, Result};
use crate::types::{Lsn, PageId};

/// Page 0: the two copies of the master record (not a logged page).
pub const MASTER_PAGE: PageId = PageId(0);
/// Page 1: the meta page (root page id, free list, page count), a logged page.
pub const META_PAGE: PageId = PageId(1);

/// Smallest page size accepted.
pub const MIN_PAGE_SIZE: usize = 4096;
/// Largest page size accepted (offsets in a page are u16).
pub const MAX_PAGE_SIZE: usize = 32768;
/// Largest key a cell holds: three inner cells of it fit the smallest page.
pub const MAX_KEY_LEN: usize = 1024;
/// Version of the page format, stored in every page header.
pub const PAGE_FORMAT_VERSION: u8 = 1;

// The page header, little-endian, each offset derived from the field before:
//
//   0 crc u32 | 4 page_id u32 | 8 page_lsn u64 | 16 fpi_lsn u64 | 24 type u8
//  25 version u8 | 26 slot_count u16 | 28 cell_start u16 | 30 frag u16
//  32 link u32 | 36 aux u32 | 40: slot directory (slotted pages) or data
const OFF_CRC: usize = 0;
const OFF_PAGE_ID: usize = OFF_CRC + 4;
const OFF_PAGE_LSN: usize = OFF_PAGE_ID + 4;
const OFF_FPI_LSN: usize = OFF_PAGE_LSN + 8;
const OFF_TYPE: usize = OFF_FPI_LSN + 8;
const OFF_VERSION: usize = OFF_TYPE + 1;
const OFF_SLOT_COUNT: usize = OFF_VERSION + 1;
const OFF_CELL_START: usize = OFF_SLOT_COUNT + 2;
const OFF_FRAG: usize = OFF_CELL_START + 2;
const OFF_LINK: usize = OFF_FRAG + 2;
const OFF_AUX: usize = OFF_LINK + 4;
/// Size of the page header in bytes.
pub const HEADER_LEN: usize = OFF_AUX + 4;

const _: () = assert!(HEADER_LEN == 40, "the documented page header is 40 bytes");
const _: () = assert!(MIN_PAGE_SIZE <= MAX_PAGE_SIZE && MIN_PAGE_SIZE.is_power_of_two());
// Offsets inside a page (cell_start may equal the page size) are u16.
const _: () = assert!(MAX_PAGE_SIZE <= u16::MAX as usize);
// A split of an inner page needs three of the longest inner cells (with
// their 2-byte slots) to fit one page.
const _: () = assert!(3 * (INNER_CELL_HEADER + MAX_KEY_LEN + 2) <= MIN_PAGE_SIZE - HEADER_LEN);
// The largest leaf cell with a 1024-byte key and an overflow pointer fits a
// cell of a third of the smallest page.
const _: () = assert!(LEAF_CELL_HEADER + MAX_KEY_LEN + 4 <= (MIN_PAGE_SIZE - HEADER_LEN) / 3);

/// The kind of a page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum PageType {
    /// The meta page.
    Meta = 1,
    /// A B+tree leaf: cells of (key, value); `link` is the right sibling.
    Leaf = 2,
    /// A B+tree inner node: cells of (key, child); `link` is the leftmost child, `aux` the level.
    Inner = 3,
    /// A piece of a long value: `link` is the next piece, `aux` the bytes in this one.
    Overflow = 4,
    /// A page on the free list: `link` is the next free page.
    Free = 5,
}

impl PageType {
    /// Decode a page type byte.
    pub fn from_u8(b: u8) -> Option<PageType> {
        Some(match b {
            1 => PageType::Meta,
            2 => PageType::Leaf,
            3 => PageType::Inner,
            4 => PageType::Overflow,
            5 => PageType::Free,
            _ => return None,
        })
    }
}

pub(crate) fn get_u16(b: &[u8], off: usize) -> u16 {
    u16::from_le_bytes([b[off], b[off + 1]])
}
pub(crate) fn get_u32(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(b[off..off + 4].try_into().expect("4 bytes"))
}
pub(crate) fn get_u64(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(b[off..off + 8].try_into().expect("8 bytes"))
}
pub(crate) fn put_u16(b: &mut [u8], off: usize, v: u16) {
    b[off..off + 2].copy_from_slice(&v.to_le_bytes());
}
pub(crate) fn put_u32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_le_bytes());
}
pub(crate) fn put_u64(b: &mut [u8], off: usize, v: u64) {
    b[off..off + 8].copy_from_slice(&v.to_le_bytes());
}

/// Read-only header accessors over a page buffer.
pub trait PageRef {
    /// The page bytes.
    fn bytes(&self) -> &[u8];
    /// The page id stored in the header.
    fn page_id(&self) -> PageId {
        PageId(get_u32(self.bytes(), OFF_PAGE_ID))
    }
    /// LSN of the last log record applied to this page.
    fn page_lsn(&self) -> Lsn {
        Lsn(get_u64(self.bytes(), OFF_PAGE_LSN))
    }
    /// LSN of the last record that fully defined this page (image or init).
    fn fpi_lsn(&self) -> Lsn {
        Lsn(get_u64(self.bytes(), OFF_FPI_LSN))
    }
    /// The raw page type byte.
    fn page_type_raw(&self) -> u8 {
        self.bytes()[OFF_TYPE]
    }
    /// The page type (verified pages always have a valid one).
    fn page_type(&self) -> Option<PageType> {
        PageType::from_u8(self.page_type_raw())
    }
    /// Number of slots.
    fn slot_count(&self) -> usize {
        get_u16(self.bytes(), OFF_SLOT_COUNT) as usize
    }
    /// Lowest offset of cell content.
    fn cell_start(&self) -> usize {
        get_u16(self.bytes(), OFF_CELL_START) as usize
    }
    /// Bytes inside the cell area that belong to no cell.
    fn frag_bytes(&self) -> usize {
        get_u16(self.bytes(), OFF_FRAG) as usize
    }
    /// Type-dependent link: right sibling, leftmost child, next overflow or free page.
    fn link(&self) -> PageId {
        PageId(get_u32(self.bytes(), OFF_LINK))
    }
    /// Type-dependent extra field: level of an inner node, bytes in an overflow page.
    fn aux(&self) -> u32 {
        get_u32(self.bytes(), OFF_AUX)
    }
}

impl PageRef for [u8] {
    fn bytes(&self) -> &[u8] {
        self
    }
}
impl PageRef for Vec<u8> {
    fn bytes(&self) -> &[u8] {
        self
    }
}
impl PageRef for Box<[u8]> {
    fn bytes(&self) -> &[u8] {
        self
    }
}

/// Set the page LSN.
pub fn set_page_lsn(b: &mut [u8], lsn: Lsn) {
    put_u64(b, OFF_PAGE_LSN, lsn.get())
}
/// Set the LSN of the last record that fully defined the page.
pub fn set_fpi_lsn(b: &mut [u8], lsn: Lsn) {
    put_u64(b, OFF_FPI_LSN, lsn.get())
}

/// A copy of page `b` to be written as page `new_id` (a full page image for
/// relocation: the contents are kept, the header names the new page).
pub fn relocated_image(b: &[u8], new_id: PageId) -> Vec<u8> {
    let mut img = b.to_vec();
    put_u32(&mut img, OFF_PAGE_ID, new_id.get());
    img
}

/// Compute the page checksum and write it into the header. Called just before
/// the page is written to storage.
pub fn seal(b: &mut [u8]) {
    let crc = crc32fast::hash(&b[OFF_CRC + 4..]);
    put_u32(b, OFF_CRC, crc);
}

/// How a page read from storage looks.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum PageState {
    /// Checksum and structure are good.
    Valid,
    /// All zeros: never written (beyond the end of the file, or preallocated).
    Zero,
    /// Checksum, page id or structure is wrong: torn by a power loss, or damaged.
    Invalid,
}

/// Check a page image read from storage: checksum, page id, type, and that every
/// slot and cell lies inside the page. Never panics on any input of the right size.
pub fn verify(b: &[u8], expect_id: PageId) -> PageState {
    if b.iter().all(|&x| x == 0) {
        return PageState::Zero;
    }
    match check_structure(b, expect_id) {
        Ok(()) => PageState::Valid,
        Err(_) => PageState::Invalid,
    }
}

/// Like `verify`, but says what is wrong.
pub fn check_structure(b: &[u8], expect_id: PageId) -> Result<()> {
    let bad = |what: String| Err(Error::corruption("data", format!("page {expect_id}: {what}")));
    if b.len() < MIN_PAGE_SIZE || b.len() > MAX_PAGE_SIZE {
        return bad(format!("page buffer of {} bytes", b.len()));
    }
    let crc = crc32fast::hash(&b[4..]);
    if crc != get_u32(b, OFF_CRC) {
        return bad("checksum mismatch".into());
    }
    if b.page_id() != expect_id {
        return bad(format!("header names page {} (misdirected write)", b.page_id()));
    }
    if b[OFF_VERSION] != PAGE_FORMAT_VERSION {
        return bad(format!("unknown page format version {}", b[OFF_VERSION]));
    }
    let Some(ty) = b.page_type() else {
        return bad(format!("unknown page type {}", b.page_type_raw()));
    };
    if b.fpi_lsn() > b.page_lsn() {
        return bad("fpi_lsn is newer than page_lsn".into());
    }
    slotted::check_layout(b, ty).map_err(|e| Error::corruption("data", format!("page {expect_id}: {e}")))
}
