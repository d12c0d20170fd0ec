//! Physiological redo operations: each names one page and says what to do to
//! it in terms of slots and cells. `apply` is the single function that changes
//! page contents, used both by normal operation and by redo.
//!
//! Invariant: `apply` checks every slot number and cell against the page before
//! touching it, so a record from a damaged log gives `Error::Corruption`, never
//! a panic or a write outside the page.

use super::*;
use crate::codec::{Reader, Writer};

/// The tag byte that starts each encoded `PageOp`, one per variant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
enum OpTag {
    Init = 1,
    InitOverflow = 2,
    Image = 3,
    Insert = 4,
    Delete = 5,
    Replace = 6,
    Truncate = 7,
    SetLink = 8,
    SetMeta = 9,
}

impl OpTag {
    fn from_u8(b: u8) -> Option<OpTag> {
        const ALL: [OpTag; 9] = [
            OpTag::Init,
            OpTag::InitOverflow,
            OpTag::Image,
            OpTag::Insert,
            OpTag::Delete,
            OpTag::Replace,
            OpTag::Truncate,
            OpTag::SetLink,
            OpTag::SetMeta,
        ];
        ALL.iter().copied().find(|t| *t as u8 == b)
    }
}

/// One operation on one page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PageOp {
    /// Format the page as a fresh slotted/meta/free page with these cells (fully defines it).
    Init {
        /// Page type byte.
        ty: u8,
        /// Link field.
        link: PageId,
        /// Aux field.
        aux: u32,
        /// Cells in slot order.
        cells: Vec<Vec<u8>>,
    },
    /// Format the page as an overflow page holding `data` (fully defines it).
    InitOverflow {
        /// Next page of the chain, 0 for none.
        next: PageId,
        /// The bytes of the value held here.
        data: Vec<u8>,
    },
    /// A full page image (fully defines it): torn-page protection.
    Image(Vec<u8>),
    /// Insert a cell at a slot.
    Insert {
        /// Slot.
        slot: u16,
        /// Cell bytes.
        cell: Vec<u8>,
    },
    /// Delete the cell at a slot.
    Delete {
        /// Slot.
        slot: u16,
    },
    /// Replace the cell at a slot.
    Replace {
        /// Slot.
        slot: u16,
        /// New cell bytes.
        cell: Vec<u8>,
    },
    /// Remove slots `from..`.
    Truncate {
        /// First slot removed.
        from: u16,
    },
    /// Set the link field.
    SetLink(PageId),
    /// Set the meta page fields.
    SetMeta(Meta),
}

impl PageOp {
    /// True when the op defines the whole page, so the page's old contents do not matter.
    pub fn defines_page(&self) -> bool {
        matches!(self, PageOp::Init { .. } | PageOp::InitOverflow { .. } | PageOp::Image(_))
    }

    /// Append the encoding of the op.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            PageOp::Init { ty, link, aux, cells } => {
                out.put_u8(OpTag::Init as u8);
                out.put_u8(*ty);
                out.put_page_id(*link);
                out.put_u32(*aux);
                out.put_u32(cells.len() as u32);
                for c in cells {
                    out.put_bytes16(c);
                }
            }
            PageOp::InitOverflow { next, data } => {
                out.put_u8(OpTag::InitOverflow as u8);
                out.put_page_id(*next);
                out.put_bytes32(data);
            }
            PageOp::Image(b) => {
                out.put_u8(OpTag::Image as u8);
                out.put_bytes32(b);
            }
            PageOp::Insert { slot, cell } => {
                out.put_u8(OpTag::Insert as u8);
                out.put_u16(*slot);
                out.put_bytes16(cell);
            }
            PageOp::Delete { slot } => {
                out.put_u8(OpTag::Delete as u8);
                out.put_u16(*slot);
            }
            PageOp::Replace { slot, cell } => {
                out.put_u8(OpTag::Replace as u8);
                out.put_u16(*slot);
                out.put_bytes16(cell);
            }
            PageOp::Truncate { from } => {
                out.put_u8(OpTag::Truncate as u8);
                out.put_u16(*from);
            }
            PageOp::SetLink(l) => {
                out.put_u8(OpTag::SetLink as u8);
                out.put_page_id(*l);
            }
            PageOp::SetMeta(m) => {
                out.put_u8(OpTag::SetMeta as u8);
                out.put_page_id(m.root);
                out.put_page_id(m.free_head);
                out.put_u32(m.page_count);
                out.put_u32(m.free_count);
            }
        }
    }

    /// Decode one op.
    pub fn decode(r: &mut Reader<'_>) -> Result<PageOp> {
        let tag = r.u8()?;
        let Some(tag) = OpTag::from_u8(tag) else {
            return Err(Error::corruption("wal", format!("unknown page op {tag}")));
        };
        Ok(match tag {
            OpTag::Init => {
                let ty = r.u8()?;
                let link = r.page_id()?;
                let aux = r.u32()?;
                let n = r.count(2)?;
                let mut cells = Vec::with_capacity(n);
                for _ in 0..n {
                    cells.push(r.bytes16()?.to_vec());
                }
                PageOp::Init { ty, link, aux, cells }
            }
            OpTag::InitOverflow => PageOp::InitOverflow { next: r.page_id()?, data: r.bytes32()?.to_vec() },
            OpTag::Image => PageOp::Image(r.bytes32()?.to_vec()),
            OpTag::Insert => PageOp::Insert { slot: r.u16()?, cell: r.bytes16()?.to_vec() },
            OpTag::Delete => PageOp::Delete { slot: r.u16()? },
            OpTag::Replace => PageOp::Replace { slot: r.u16()?, cell: r.bytes16()?.to_vec() },
            OpTag::Truncate => PageOp::Truncate { from: r.u16()? },
            OpTag::SetLink => PageOp::SetLink(r.page_id()?),
            OpTag::SetMeta => PageOp::SetMeta(Meta {
                root: r.page_id()?,
                free_head: r.page_id()?,
                page_count: r.u32()?,
                free_count: r.u32()?,
            }),
        })
    }

    /// Read past one op, checking its encoding as `decode` does but building
    /// nothing (no allocation): the same fields read in the same order, so
    /// the same bytes pass and fail, with the same errors. For a log scan
    /// that wants only the page ids of a record's parts.
    pub fn skip(r: &mut Reader<'_>) -> Result<()> {
        let tag = r.u8()?;
        let Some(tag) = OpTag::from_u8(tag) else {
            return Err(Error::corruption("wal", format!("unknown page op {tag}")));
        };
        match tag {
            OpTag::Init => {
                r.u8()?;
                r.page_id()?;
                r.u32()?;
                for _ in 0..r.count(2)? {
                    r.bytes16()?;
                }
            }
            OpTag::InitOverflow => {
                r.page_id()?;
                r.bytes32()?;
            }
            OpTag::Image => {
                r.bytes32()?;
            }
            OpTag::Insert | OpTag::Replace => {
                r.u16()?;
                r.bytes16()?;
            }
            OpTag::Delete | OpTag::Truncate => {
                r.u16()?;
            }
            OpTag::SetLink => {
                r.page_id()?;
            }
            OpTag::SetMeta => {
                for _ in 0..4 {
                    r.u32()?;
                }
            }
        }
        Ok(())
    }
}

fn bad(page_id: PageId, what: impl std::fmt::Display) -> Error {
    Error::corruption("wal", format!("redo op does not fit page {page_id}: {what}"))
}

/// Check that `c` is a well-formed cell for a page of type `ty` that fits in `page_size`.
fn check_cell(page_id: PageId, ty: PageType, c: &[u8], page_size: usize) -> Result<()> {
    match cell_len_at(c, ty, 0) {
        Some(len) if len == c.len() && len > 0 && get_u16(c, 0) > 0 && len <= max_cell(page_size) => Ok(()),
        _ => Err(bad(page_id, format!("malformed cell of {} bytes", c.len()))),
    }
}

fn slotted_type(page_id: PageId, b: &[u8]) -> Result<PageType> {
    match b.page_type() {
        Some(t @ (PageType::Leaf | PageType::Inner)) => Ok(t),
        other => Err(bad(page_id, format!("cell op on a page of type {other:?}"))),
    }
}

/// `PageOp::Init`: format the page, then insert the cells in order.
fn apply_init(b: &mut [u8], page_id: PageId, ty: u8, link: PageId, aux: u32, cells: &[Vec<u8>]) -> Result<()> {
    let page_size = b.len();
    let Some(t) = PageType::from_u8(ty) else { return Err(bad(page_id, "unknown page type")) };
    let lsn = b.page_lsn();
    init_page(b, page_id, t, link, aux);
    set_page_lsn(b, lsn);
    if !cells.is_empty() {
        let t = slotted_type(page_id, b)?;
        let total: usize = cells.iter().map(|c| c.len() + 2).sum();
        if total > usable_space(page_size) {
            return Err(bad(page_id, "init cells exceed the page"));
        }
        for (i, c) in cells.iter().enumerate() {
            check_cell(page_id, t, c, page_size)?;
            insert_cell(b, i, c);
        }
    }
    debug_assert_eq!(b.slot_count(), cells.len());
    Ok(())
}

/// `PageOp::Image`: the whole page, checked as a page of `page_id` first.
fn apply_image(b: &mut [u8], page_id: PageId, img: &[u8]) -> Result<()> {
    if img.len() != b.len() {
        return Err(bad(page_id, format!("image of {} bytes", img.len())));
    }
    let mut tmp = img.to_vec();
    seal(&mut tmp);
    check_structure(&tmp, page_id).map_err(|e| bad(page_id, e))?;
    b.copy_from_slice(img);
    Ok(())
}

/// The op that logs a full image of page `b` (torn-page protection,
/// `BufferPool::log_and_apply`). A leaf or inner page is logged as the `Init`
/// that rebuilds it: its type, link, level and cells, without the free space
/// between its slots and cells or the fragments among them (about a quarter
/// of a page at the fill random inserts leave). Redo treats it as any page
/// image: it defines the page. Any other page is logged as its bytes.
pub fn image_op(b: &[u8]) -> PageOp {
    match b.page_type() {
        Some(t @ (PageType::Leaf | PageType::Inner)) => {
            PageOp::Init { ty: t as u8, link: b.link(), aux: b.aux(), cells: cells(b) }
        }
        _ => PageOp::Image(b.to_vec()),
    }
}

/// Apply `op` to page `page_id` held in `b`. Does not touch `page_lsn`; the
/// caller (the buffer pool's logged-change path or redo) sets it.
pub fn apply(b: &mut [u8], page_id: PageId, op: &PageOp) -> Result<()> {
    let page_size = b.len();
    match op {
        PageOp::Init { ty, link, aux, cells } => apply_init(b, page_id, *ty, *link, *aux, cells)?,
        PageOp::InitOverflow { next, data } => {
            if data.len() > overflow_capacity(page_size) {
                return Err(bad(page_id, "overflow data exceeds the page"));
            }
            let lsn = b.page_lsn();
            init_page(b, page_id, PageType::Overflow, *next, data.len() as u32);
            set_page_lsn(b, lsn);
            b[HEADER_LEN..HEADER_LEN + data.len()].copy_from_slice(data);
        }
        PageOp::Image(img) => apply_image(b, page_id, img)?,
        PageOp::Insert { slot, cell: c } => {
            let t = slotted_type(page_id, b)?;
            check_cell(page_id, t, c, page_size)?;
            if *slot as usize > b.slot_count() || free_space(b) < c.len() + 2 {
                return Err(bad(page_id, format!("insert at slot {slot} of {}", b.slot_count())));
            }
            insert_cell(b, *slot as usize, c);
        }
        PageOp::Delete { slot } => {
            slotted_type(page_id, b)?;
            if *slot as usize >= b.slot_count() {
                return Err(bad(page_id, format!("delete slot {slot} of {}", b.slot_count())));
            }
            delete_cell(b, *slot as usize);
        }
        PageOp::Replace { slot, cell: c } => {
            let t = slotted_type(page_id, b)?;
            check_cell(page_id, t, c, page_size)?;
            let s = *slot as usize;
            if s >= b.slot_count() || free_space(b) + cell(b, s).len() < c.len() {
                return Err(bad(page_id, format!("replace slot {slot} of {}", b.slot_count())));
            }
            delete_cell(b, s);
            insert_cell(b, s, c);
        }
        PageOp::Truncate { from } => {
            slotted_type(page_id, b)?;
            if *from as usize > b.slot_count() {
                return Err(bad(page_id, format!("truncate from {from} of {}", b.slot_count())));
            }
            truncate_cells(b, *from as usize);
        }
        PageOp::SetLink(l) => {
            if b.page_type().is_none() {
                return Err(bad(page_id, "set link on an unformatted page"));
            }
            set_link(b, *l);
        }
        PageOp::SetMeta(m) => {
            if b.page_type() != Some(PageType::Meta) {
                return Err(bad(page_id, "meta op on a page that is not the meta page"));
            }
            m.write(b);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf_cell(k: &[u8], v: &[u8]) -> Vec<u8> {
        let mut c = Vec::new();
        LeafCell::encode_inline(k, v, &mut c);
        c
    }

    #[test]
    fn insert_delete_replace_compact() {
        let mut p = vec![0u8; 4096];
        apply(&mut p, PageId(7), &PageOp::Init { ty: PageType::Leaf as u8, link: PageId::NONE, aux: 0, cells: vec![] })
            .unwrap();
        for i in 0..50u32 {
            let k = format!("key{i:04}");
            let slot = search(&p, k.as_bytes()).unwrap_err();
            apply(
                &mut p,
                PageId(7),
                &PageOp::Insert { slot: slot as u16, cell: leaf_cell(k.as_bytes(), &[i as u8; 20]) },
            )
            .unwrap();
        }
        assert_eq!(p.slot_count(), 50);
        for i in (0..50).step_by(2) {
            let k = format!("key{i:04}");
            let s = search(&p, k.as_bytes()).unwrap();
            apply(&mut p, PageId(7), &PageOp::Delete { slot: s as u16 }).unwrap();
        }
        assert_eq!(p.slot_count(), 25);
        let s = search(&p, b"key0001").unwrap();
        apply(&mut p, PageId(7), &PageOp::Replace { slot: s as u16, cell: leaf_cell(b"key0001", &[9; 300]) }).unwrap();
        let c = LeafCell::parse(cell(&p, s));
        assert_eq!(c.inline.unwrap(), &[9u8; 300][..]);
        compact(&mut p);
        seal(&mut p);
        assert_eq!(verify(&p, PageId(7)), PageState::Valid);
        assert_eq!(verify(&p, PageId(8)), PageState::Invalid);
        let keys: Vec<_> = (0..p.slot_count()).map(|i| cell_key(&p, i).to_vec()).collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
    }

    #[test]
    fn the_image_of_a_slotted_page_is_its_init_and_rebuilds_it() {
        let mut p = vec![0u8; 4096];
        apply(&mut p, PageId(7), &PageOp::Init { ty: PageType::Leaf as u8, link: PageId(9), aux: 0, cells: vec![] })
            .unwrap();
        for i in 0..20u32 {
            let k = format!("key{i:04}");
            let cell = leaf_cell(k.as_bytes(), &[i as u8; 150]);
            apply(&mut p, PageId(7), &PageOp::Insert { slot: i as u16, cell }).unwrap();
        }
        // Fragments and a gap: neither is logged.
        for s in [15u16, 3, 0] {
            apply(&mut p, PageId(7), &PageOp::Delete { slot: s }).unwrap();
        }
        let op = image_op(&p);
        let mut enc = Vec::new();
        op.encode(&mut enc);
        assert!(matches!(op, PageOp::Init { .. }), "{op:?}");
        assert!(enc.len() < 17 * 170 + 100, "{} bytes logged for 17 cells", enc.len());
        let mut rebuilt = vec![0xAAu8; 4096];
        apply(&mut rebuilt, PageId(7), &op).unwrap();
        assert_eq!(cells(&rebuilt), cells(&p));
        assert_eq!((rebuilt.page_type(), rebuilt.link(), rebuilt.aux()), (p.page_type(), p.link(), p.aux()));
        seal(&mut rebuilt);
        assert_eq!(verify(&rebuilt, PageId(7)), PageState::Valid);
        // A page that is not slotted is logged as its bytes.
        let mut meta = vec![0u8; 4096];
        apply(
            &mut meta,
            PageId(1),
            &PageOp::Init { ty: PageType::Meta as u8, link: PageId::NONE, aux: 0, cells: vec![] },
        )
        .unwrap();
        assert!(matches!(image_op(&meta), PageOp::Image(b) if b == meta));
    }

    #[test]
    fn bad_ops_are_corruption_not_panics() {
        let mut p = vec![0u8; 4096];
        apply(&mut p, PageId(3), &PageOp::Init { ty: PageType::Leaf as u8, link: PageId::NONE, aux: 0, cells: vec![] })
            .unwrap();
        assert!(apply(&mut p, PageId(3), &PageOp::Delete { slot: 0 }).is_err());
        assert!(apply(&mut p, PageId(3), &PageOp::Insert { slot: 5, cell: leaf_cell(b"a", b"b") }).is_err());
        assert!(apply(&mut p, PageId(3), &PageOp::Insert { slot: 0, cell: vec![1, 2, 3] }).is_err());
        assert!(apply(
            &mut p,
            PageId(3),
            &PageOp::SetMeta(Meta { root: PageId(2), free_head: PageId(0), page_count: 3, free_count: 0 })
        )
        .is_err());
        assert!(apply(&mut p, PageId(3), &PageOp::Image(vec![0; 10])).is_err());
        assert!(apply(&mut p, PageId(3), &PageOp::Init { ty: 99, link: PageId::NONE, aux: 0, cells: vec![] }).is_err());
    }

    #[test]
    fn verify_rejects_garbage() {
        let mut p = vec![0xAB; 4096];
        assert_eq!(verify(&p, PageId(1)), PageState::Invalid);
        p.fill(0);
        assert_eq!(verify(&p, PageId(1)), PageState::Zero);
    }

    #[test]
    fn op_encoding_round_trips() {
        let ops = vec![
            PageOp::Init { ty: 2, link: PageId(5), aux: 1, cells: vec![vec![1, 2], vec![3]] },
            PageOp::InitOverflow { next: PageId(9), data: vec![7; 100] },
            PageOp::Image(vec![1; 64]),
            PageOp::Insert { slot: 3, cell: vec![4; 12] },
            PageOp::Delete { slot: 2 },
            PageOp::Replace { slot: 1, cell: vec![5; 8] },
            PageOp::Truncate { from: 4 },
            PageOp::SetLink(PageId(77)),
            PageOp::SetMeta(Meta { root: PageId(2), free_head: PageId(0), page_count: 10, free_count: 0 }),
        ];
        for op in ops {
            let mut buf = Vec::new();
            op.encode(&mut buf);
            let mut r = Reader::new(&buf, "wal");
            assert_eq!(PageOp::decode(&mut r).unwrap(), op);
            r.finish().unwrap();
            let mut r = Reader::new(&buf, "wal");
            PageOp::skip(&mut r).unwrap();
            r.finish().unwrap();
        }
    }
}
