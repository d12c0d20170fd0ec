//! Slotted pages: a slot directory of u16 offsets growing up from the header and
//! variable-length cells growing down from the end of the page.
//!
//! Invariants: slot offsets point inside [cell_start, page_size); each cell's
//! length, computed from its own first bytes, stays inside the page; deleted
//! cells leave `frag_bytes` that compaction gives back. Cells are opaque to this
//! module except for their length; `LeafCell` and `InnerCell` give them meaning.

use super::*;

/// Leaf cell flag: the value lives in an overflow chain.
pub const FLAG_OVERFLOW: u8 = 1;
/// Bytes before the key in a leaf cell: key_len u16, flags u8, val_len u32.
pub const LEAF_CELL_HEADER: usize = 7;
/// Bytes before the key in an inner cell: key_len u16, child u32.
pub const INNER_CELL_HEADER: usize = 6;

/// Length of the cell at `off`, read from the cell itself; None if it does not fit.
pub fn cell_len_at(b: &[u8], ty: PageType, off: usize) -> Option<usize> {
    let len = match ty {
        PageType::Leaf => {
            let hdr = b.get(off..off.checked_add(LEAF_CELL_HEADER)?)?;
            let key_len = get_u16(hdr, 0) as usize;
            let flags = hdr[2];
            let val_len = get_u32(hdr, 3) as usize;
            let val_here = if flags & FLAG_OVERFLOW != 0 { 4 } else { val_len };
            LEAF_CELL_HEADER + key_len + val_here
        }
        PageType::Inner => {
            let hdr = b.get(off..off.checked_add(INNER_CELL_HEADER)?)?;
            INNER_CELL_HEADER + get_u16(hdr, 0) as usize
        }
        _ => return None,
    };
    if off.checked_add(len)? <= b.len() {
        Some(len)
    } else {
        None
    }
}

/// Offset of slot `i`'s cell.
pub fn slot_offset(b: &[u8], i: usize) -> usize {
    get_u16(b, HEADER_LEN + 2 * i) as usize
}

/// The bytes of cell `i` (the page must have passed `check_layout` or been built by `apply`).
pub fn cell(b: &[u8], i: usize) -> &[u8] {
    let ty = b.page_type().expect("verified page type");
    let off = slot_offset(b, i);
    let len = cell_len_at(b, ty, off).expect("verified cell");
    &b[off..off + len]
}

/// Copies of every cell of a leaf or inner page, in slot order.
pub fn cells(b: &[u8]) -> Vec<Vec<u8>> {
    (0..b.slot_count()).map(|i| cell(b, i).to_vec()).collect()
}

/// Free bytes usable for a new cell plus its slot, counting fragments.
pub fn free_space(b: &[u8]) -> usize {
    let slots_end = HEADER_LEN + 2 * b.slot_count();
    b.cell_start().saturating_sub(slots_end) + b.frag_bytes()
}

/// Bytes available for cells and slots in an empty page.
pub fn usable_space(page_size: usize) -> usize {
    page_size - HEADER_LEN
}

/// The largest cell a page of this size accepts: a third of the usable space,
/// so that a split always leaves both halves with room.
pub fn max_cell(page_size: usize) -> usize {
    usable_space(page_size) / 3
}

/// Check the slot directory and every cell of a slotted page (or the length
/// field of an overflow page).
pub(crate) fn check_layout(b: &[u8], ty: PageType) -> std::result::Result<(), String> {
    let n = b.slot_count();
    let cell_start = b.cell_start();
    match ty {
        PageType::Leaf | PageType::Inner => {}
        PageType::Overflow => {
            if n != 0 || (b.aux() as usize) > b.len() - HEADER_LEN {
                return Err(format!("overflow page holds {} bytes", b.aux()));
            }
            return Ok(());
        }
        PageType::Meta | PageType::Free => {
            return if n == 0 { Ok(()) } else { Err("slots on a page without cells".into()) };
        }
    }
    let slots_end = HEADER_LEN + 2 * n;
    if slots_end > cell_start || cell_start > b.len() {
        return Err(format!("slot directory of {n} slots overlaps cells at {cell_start}"));
    }
    let mut used = 0usize;
    for i in 0..n {
        let off = slot_offset(b, i);
        if off < cell_start {
            return Err(format!("slot {i} points at {off}, before the cell area"));
        }
        let Some(len) = cell_len_at(b, ty, off) else {
            return Err(format!("cell {i} at {off} runs past the page end"));
        };
        let key_len = get_u16(b, off) as usize;
        if key_len == 0 {
            return Err(format!("cell {i} has an empty key"));
        }
        used += len;
    }
    if used + b.frag_bytes() > b.len() - cell_start {
        return Err("cells and fragments exceed the cell area".into());
    }
    Ok(())
}

/// Format `b` as an empty page of the given kind.
pub fn init_page(b: &mut [u8], page_id: PageId, ty: PageType, link: PageId, aux: u32) {
    b.fill(0);
    put_u32(b, OFF_PAGE_ID, page_id.get());
    b[OFF_TYPE] = ty as u8;
    b[OFF_VERSION] = PAGE_FORMAT_VERSION;
    let page_size = b.len();
    put_u16(b, OFF_CELL_START, page_size as u16);
    if page_size > u16::MAX as usize {
        unreachable!("page size is checked at open");
    }
    put_u32(b, OFF_LINK, link.get());
    put_u32(b, OFF_AUX, aux);
}

/// Set the link field.
pub fn set_link(b: &mut [u8], link: PageId) {
    put_u32(b, OFF_LINK, link.get())
}

/// Move all cells to the end of the page, removing fragments. Slot order is kept.
///
/// In place, with no page-sized scratch: the cells are moved up one by one,
/// highest offset first, so each lands at or above where it was and never
/// over a cell still to move (a cell's old end is at most the next higher
/// cell's old start, which is at most that cell's new start).
pub fn compact(b: &mut [u8]) {
    let n = b.slot_count();
    let mut order: Vec<(u16, u16)> = (0..n).map(|i| (slot_offset(b, i) as u16, i as u16)).collect();
    order.sort_unstable_by_key(|&(off, _)| std::cmp::Reverse(off));
    let mut top = b.len();
    for (off, i) in order {
        let (off, len) = (off as usize, cell(b, i as usize).len());
        top -= len;
        debug_assert!(top >= off, "compaction would move a cell down");
        b.copy_within(off..off + len, top);
        put_u16(b, HEADER_LEN + 2 * i as usize, top as u16);
    }
    put_u16(b, OFF_CELL_START, top as u16);
    put_u16(b, OFF_FRAG, 0);
}

/// Insert `c` as slot `i`, shifting later slots. The caller checked `free_space`.
pub fn insert_cell(b: &mut [u8], i: usize, c: &[u8]) {
    let n = b.slot_count();
    debug_assert!(i <= n);
    debug_assert!(free_space(b) >= c.len() + 2);
    let slots_end = HEADER_LEN + 2 * n;
    if b.cell_start() < slots_end + 2 + c.len() {
        compact(b);
    }
    let top = b.cell_start() - c.len();
    b[top..top + c.len()].copy_from_slice(c);
    let at = HEADER_LEN + 2 * i;
    b.copy_within(at..slots_end, at + 2);
    put_u16(b, at, top as u16);
    put_u16(b, OFF_SLOT_COUNT, (n + 1) as u16);
    put_u16(b, OFF_CELL_START, top as u16);
}

/// Remove slot `i`; its cell becomes fragment space.
pub fn delete_cell(b: &mut [u8], i: usize) {
    let n = b.slot_count();
    debug_assert!(i < n);
    let len = cell(b, i).len();
    let off = slot_offset(b, i);
    let at = HEADER_LEN + 2 * i;
    b.copy_within(at + 2..HEADER_LEN + 2 * n, at);
    put_u16(b, OFF_SLOT_COUNT, (n - 1) as u16);
    if off == b.cell_start() {
        put_u16(b, OFF_CELL_START, (off + len) as u16);
    } else {
        let frag = b.frag_bytes() + len;
        put_u16(b, OFF_FRAG, frag as u16);
    }
    if n == 1 {
        put_u16(b, OFF_CELL_START, b.len() as u16);
        put_u16(b, OFF_FRAG, 0);
    }
}

/// Remove slots `from..`; their cells become fragment space.
pub fn truncate_cells(b: &mut [u8], from: usize) {
    while b.slot_count() > from {
        let last = b.slot_count() - 1;
        delete_cell(b, last);
    }
}

/// The overflow data bytes of an overflow page.
pub fn overflow_data(b: &[u8]) -> &[u8] {
    &b[HEADER_LEN..HEADER_LEN + b.aux() as usize]
}

/// Bytes of value data one overflow page holds.
pub fn overflow_capacity(page_size: usize) -> usize {
    page_size - HEADER_LEN
}

/// A decoded leaf cell.
#[derive(Debug, Clone, Copy)]
pub struct LeafCell<'a> {
    /// The key.
    pub key: &'a [u8],
    /// Total value length.
    pub val_len: usize,
    /// The value, when it is stored in the cell.
    pub inline: Option<&'a [u8]>,
    /// The first overflow page, when it is not.
    pub overflow: Option<PageId>,
    /// The key and, for an inline value, the value after it: the two are
    /// adjacent in the cell, so a reader copying both copies this once.
    pub key_and_inline: &'a [u8],
}

impl<'a> LeafCell<'a> {
    /// Decode a leaf cell (bounds were checked when the page was verified).
    pub fn parse(c: &'a [u8]) -> LeafCell<'a> {
        let key_len = get_u16(c, 0) as usize;
        let flags = c[2];
        let val_len = get_u32(c, 3) as usize;
        let key = &c[LEAF_CELL_HEADER..LEAF_CELL_HEADER + key_len];
        let rest = &c[LEAF_CELL_HEADER + key_len..];
        if flags & FLAG_OVERFLOW != 0 {
            LeafCell { key, val_len, inline: None, overflow: Some(PageId(get_u32(rest, 0))), key_and_inline: key }
        } else {
            let key_and_inline = &c[LEAF_CELL_HEADER..LEAF_CELL_HEADER + key_len + val_len];
            LeafCell { key, val_len, inline: Some(&rest[..val_len]), overflow: None, key_and_inline }
        }
    }

    /// Decode the cell of slot `i` of leaf page `b` (which passed
    /// `check_layout` or was built by `apply`): as `parse(cell(b, i))`,
    /// reading the cell's header once rather than twice.
    #[inline]
    pub fn at(b: &'a [u8], i: usize) -> LeafCell<'a> {
        debug_assert_eq!(b.page_type(), Some(PageType::Leaf));
        let off = slot_offset(b, i);
        let key_len = get_u16(b, off) as usize;
        let flags = b[off + 2];
        let val_len = get_u32(b, off + 3) as usize;
        let ks = off + LEAF_CELL_HEADER;
        let key = &b[ks..ks + key_len];
        if flags & FLAG_OVERFLOW != 0 {
            let first = PageId(get_u32(b, ks + key_len));
            LeafCell { key, val_len, inline: None, overflow: Some(first), key_and_inline: key }
        } else {
            let key_and_inline = &b[ks..ks + key_len + val_len];
            LeafCell { key, val_len, inline: Some(&key_and_inline[key_len..]), overflow: None, key_and_inline }
        }
    }

    /// Where the cell of slot `i` of leaf page `b` lies, without slicing it:
    /// `(key_start, key_len, val_len, overflow)`, the value (or the first
    /// overflow page's 4 bytes) right after the key. The page must have
    /// passed `check_layout` or been built by `apply`; asserts the cell lies
    /// in the page.
    #[inline]
    pub fn span_at(b: &[u8], i: usize) -> (usize, usize, usize, bool) {
        let off = slot_offset(b, i);
        let hdr: &[u8; LEAF_CELL_HEADER] = b[off..off + LEAF_CELL_HEADER].try_into().expect("7 bytes");
        let key_len = u16::from_le_bytes([hdr[0], hdr[1]]) as usize;
        let overflow = hdr[2] & FLAG_OVERFLOW != 0;
        let val_len = u32::from_le_bytes([hdr[3], hdr[4], hdr[5], hdr[6]]) as usize;
        let ks = off + LEAF_CELL_HEADER;
        let end = ks + key_len + if overflow { 4 } else { val_len };
        assert!(end <= b.len(), "leaf cell {i} runs past its page");
        (ks, key_len, val_len, overflow)
    }

    /// Encode a leaf cell with an inline value.
    pub fn encode_inline(key: &[u8], value: &[u8], out: &mut Vec<u8>) {
        out.clear();
        out.reserve_exact(LEAF_CELL_HEADER + key.len() + value.len());
        out.extend_from_slice(&(key.len() as u16).to_le_bytes());
        out.push(0);
        out.extend_from_slice(&(value.len() as u32).to_le_bytes());
        out.extend_from_slice(key);
        out.extend_from_slice(value);
    }

    /// Encode a leaf cell whose value lives in an overflow chain.
    pub fn encode_overflow(key: &[u8], val_len: usize, first: PageId, out: &mut Vec<u8>) {
        out.clear();
        out.reserve_exact(LEAF_CELL_HEADER + key.len() + 4);
        out.extend_from_slice(&(key.len() as u16).to_le_bytes());
        out.push(FLAG_OVERFLOW);
        out.extend_from_slice(&(val_len as u32).to_le_bytes());
        out.extend_from_slice(key);
        out.extend_from_slice(&first.get().to_le_bytes());
    }
}

/// Key of cell `i` on a leaf or inner page.
pub fn cell_key(b: &[u8], i: usize) -> &[u8] {
    key_at(b, b.page_type() == Some(PageType::Leaf), i)
}

/// The key of cell `i` of a leaf (`leaf`) or inner page: the bytes
/// `cell_key` gives, without working out the whole cell's length (a page
/// that passed `check_layout` holds the whole cell; any other page at worst
/// panics on the bounds check, never reads past it).
#[inline]
fn key_at(b: &[u8], leaf: bool, i: usize) -> &[u8] {
    let off = slot_offset(b, i);
    let key_len = get_u16(b, off) as usize;
    let start = off + if leaf { LEAF_CELL_HEADER } else { INNER_CELL_HEADER };
    &b[start..start + key_len]
}

/// Child page of inner cell `i`.
pub fn inner_child(b: &[u8], i: usize) -> PageId {
    PageId(get_u32(cell(b, i), 2))
}

/// Encode an inner cell.
pub fn encode_inner(key: &[u8], child: PageId, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&(key.len() as u16).to_le_bytes());
    out.extend_from_slice(&child.get().to_le_bytes());
    out.extend_from_slice(key);
}

/// `a.cmp(b)` for byte strings, 8 bytes at a time as big-endian words and
/// inline: keys are short, and a call of the C library's memcmp for each
/// probe of a binary search costs more than the comparison itself.
#[inline]
pub fn cmp_bytes(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
    let n = a.len().min(b.len());
    let (mut ac, mut bc) = (a[..n].chunks_exact(8), b[..n].chunks_exact(8));
    for (x, y) in (&mut ac).zip(&mut bc) {
        let x = u64::from_be_bytes(x.try_into().expect("8 bytes"));
        let y = u64::from_be_bytes(y.try_into().expect("8 bytes"));
        if x != y {
            return x.cmp(&y);
        }
    }
    for (x, y) in ac.remainder().iter().zip(bc.remainder()) {
        if x != y {
            return x.cmp(y);
        }
    }
    a.len().cmp(&b.len())
}

/// Binary search for `key` among the cells: Ok(slot) if present, Err(insertion slot).
pub fn search(b: &[u8], key: &[u8]) -> std::result::Result<usize, usize> {
    let (mut lo, mut hi) = (0usize, b.slot_count());
    let leaf = b.page_type() == Some(PageType::Leaf);
    while lo < hi {
        let mid = (lo + hi) / 2;
        match cmp_bytes(key_at(b, leaf, mid), key) {
            std::cmp::Ordering::Less => lo = mid + 1,
            std::cmp::Ordering::Greater => hi = mid,
            std::cmp::Ordering::Equal => return Ok(mid),
        }
    }
    Err(lo)
}

/// The meta page fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    /// Root page of the B+tree.
    pub root: PageId,
    /// First page of the free list (0 = empty).
    pub free_head: PageId,
    /// Number of pages in use in the data file (high-water mark), including pages 0 and 1.
    pub page_count: u32,
    /// Number of pages on the free list.
    pub free_count: u32,
}

const META_MAGIC: u64 = u64::from_le_bytes(*b"ARIESMET");

impl Meta {
    /// Read the meta fields from a verified meta page.
    pub fn read(b: &[u8]) -> Result<Meta> {
        if b.page_type() != Some(PageType::Meta) || get_u64(b, HEADER_LEN) != META_MAGIC {
            return Err(Error::corruption("data", "page 1 is not a meta page"));
        }
        let m = Meta {
            root: PageId(get_u32(b, HEADER_LEN + 8)),
            free_head: PageId(get_u32(b, HEADER_LEN + 12)),
            page_count: get_u32(b, HEADER_LEN + 16),
            free_count: get_u32(b, HEADER_LEN + 20),
        };
        if m.page_count < 3
            || m.root.get() < 2
            || m.root.get() >= m.page_count
            || m.free_head.get() >= m.page_count
            || m.free_count >= m.page_count
        {
            return Err(Error::corruption("data", format!("meta page fields out of range: {m:?}")));
        }
        Ok(m)
    }

    /// The first page past the pages in use: where the file grows.
    pub fn end(&self) -> PageId {
        PageId(self.page_count)
    }

    /// True if `pid` may hold a tree, overflow or free page: past the meta
    /// page and below `end()`.
    pub fn holds(&self, pid: PageId) -> bool {
        pid > META_PAGE && pid < self.end()
    }

    /// Write the meta fields into a meta page.
    pub fn write(&self, b: &mut [u8]) {
        put_u64(b, HEADER_LEN, META_MAGIC);
        put_u32(b, HEADER_LEN + 8, self.root.get());
        put_u32(b, HEADER_LEN + 12, self.free_head.get());
        put_u32(b, HEADER_LEN + 16, self.page_count);
        put_u32(b, HEADER_LEN + 20, self.free_count);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// After any mix of inserts and deletes, compaction keeps every cell
        /// and its slot order, leaves no fragments, and packs the cells
        /// against the page's end.
        #[test]
        fn compaction_keeps_cells_in_slot_order(
            ops in proptest::collection::vec((any::<bool>(), any::<u16>(), 1usize..300), 1..120),
        ) {
            let mut b = vec![0u8; 4096];
            init_page(&mut b, PageId(3), PageType::Leaf, PageId::NONE, 0);
            let mut model: Vec<Vec<u8>> = Vec::new();
            for (n, (insert, at, len)) in ops.into_iter().enumerate() {
                if insert || model.is_empty() {
                    let mut c = Vec::new();
                    LeafCell::encode_inline(&(n as u32).to_be_bytes(), &vec![n as u8; len], &mut c);
                    if free_space(&b) < c.len() + 2 {
                        continue;
                    }
                    let i = at as usize % (model.len() + 1);
                    insert_cell(&mut b, i, &c);
                    model.insert(i, c);
                } else {
                    let i = at as usize % model.len();
                    delete_cell(&mut b, i);
                    model.remove(i);
                }
            }
            compact(&mut b);
            let cells: Vec<Vec<u8>> = (0..b.slot_count()).map(|i| cell(&b, i).to_vec()).collect();
            prop_assert_eq!(&cells, &model);
            prop_assert_eq!(b.frag_bytes(), 0);
            let total: usize = model.iter().map(|c| c.len()).sum();
            prop_assert_eq!(b.cell_start(), b.len() - total);
        }
    }

    #[test]
    fn cmp_bytes_orders_as_slices_do() {
        // Lengths 0 to 18 (across the 8-byte words), bytes varied or 0/1 only
        // (many equal prefixes).
        let words: Vec<Vec<u8>> = (0..400u32)
            .map(|i| {
                let mask = if i % 3 == 0 { 1 } else { 0xFF };
                (0..(i % 19) as usize).map(|j| ((i.wrapping_mul(2654435761) >> (j % 24)) as u8) & mask).collect()
            })
            .collect();
        for a in &words {
            for b in &words {
                assert_eq!(super::cmp_bytes(a, b), a.cmp(b), "{a:?} {b:?}");
            }
        }
    }
}
