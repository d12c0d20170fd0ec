//! Changes to the tree: put and delete. Each builds the page parts of one log
//! record (the leaf change, overflow pages, and any structure change from
//! `smo`) and hands them to `BufferPool::log_and_apply`.

use super::smo::{self, Plan, SplitBias};
use super::*;
use crate::alloc::PageAllocator;
use crate::page::{PageOp, LEAF_CELL_HEADER};
use crate::txn_log::TxnCtx;
use crate::types::{Lsn, TxnId};
use crate::wal::{KeyUndo, PagePart};

/// The leaf op that puts `cell` at `slot`: over the key's cell (`Ok`, the
/// key is there) or as a new cell (`Err`, where the key goes).
fn put_op(slot: std::result::Result<usize, usize>, cell: Vec<u8>) -> PageOp {
    match slot {
        Ok(s) => PageOp::Replace { slot: s as u16, cell },
        Err(s) => PageOp::Insert { slot: s as u16, cell },
    }
}

impl BTree<'_> {
    /// Largest leaf cell with an inline value.
    fn max_inline_cell(&self) -> usize {
        page::max_cell(self.pool.page_size())
    }

    /// Log a redo-only record for `ctx` and apply it.
    pub(super) fn log_redo(&self, ctx: &mut TxnCtx, parts: Vec<PagePart>) -> Result<()> {
        ctx.log_redo(self.pool, parts)
    }

    /// Log a key change (an Update, or a CLR when compensating) and apply it.
    fn log_key_change(&self, ctx: &mut TxnCtx, parts: Vec<PagePart>, undo: KeyUndo) -> Result<()> {
        ctx.log_key_change(self.pool, parts, undo)
    }

    /// Insert or overwrite `key`: one Update (or CLR) record holding the leaf
    /// change, the value's overflow pages, and any split it causes.
    pub fn put(&self, ctx: &mut TxnCtx, key: &[u8], value: &[u8]) -> Result<()> {
        self.put_gated(ctx, key, value, |_, _| Ok(true)).map(|_| ())
    }

    /// As `put`, but first asks `gate` with what the descent found: whether
    /// the key exists, and for a key that does not, the key after it (None
    /// at the end; for an existing key, None), the one an insert's
    /// next-key lock names. If `gate` says no, nothing changes and the
    /// result is false. One descent serves both.
    pub fn put_gated(
        &self,
        ctx: &mut TxnCtx,
        key: &[u8],
        value: &[u8],
        gate: impl FnOnce(bool, Option<&[u8]>) -> Result<bool>,
    ) -> Result<bool> {
        assert!(!key.is_empty() && key.len() <= MAX_KEY_LEN && value.len() <= MAX_VALUE_LEN);
        let page_size = self.pool.page_size();
        let inline = LEAF_CELL_HEADER + key.len() + value.len() <= self.max_inline_cell();
        let cell_len = LEAF_CELL_HEADER + key.len() + if inline { value.len() } else { 4 };
        let (path, (slot, old, free, used, next)) = self.find_leaf_with(key, |g| {
            let free = page::free_space(g);
            let used = page::usable_space(page_size) - free;
            Ok(match page::search(g, key) {
                Ok(s) => (Ok(s), Some(self.old_cell(g, s)?), free, used, None),
                Err(s) => (Err(s), None, free, used, Some(NextKey::at(g, s))),
            })
        })?;
        let leaf = path.leaf();
        let next = match next {
            Some(n) => self.resolve_next(n)?,
            None => None,
        };
        if !gate(slot.is_ok(), next.as_deref())? {
            return Ok(false);
        }
        let (fits, used_after) = match &old {
            Some((_, _, old_len)) => (free + old_len >= cell_len, used + cell_len - old_len),
            None => (free >= cell_len + 2, used + cell_len + 2),
        };
        let is_root = path.nodes.len() == 1;
        let in_place = fits && (is_root || used_after >= smo::leaf_min_fill(page_size));
        if in_place && inline && old.as_ref().is_none_or(|(_, chain, _)| chain.is_empty()) {
            // No page allocated or freed: the meta page is not read.
            let mut cell = Vec::new();
            LeafCell::encode_inline(key, value, &mut cell);
            let parts = vec![PagePart { page_id: leaf, op: put_op(slot, cell) }];
            let old_value = old.map(|(v, _, _)| v);
            self.log_key_change(ctx, parts, KeyUndo { key: key.to_vec(), old: old_value })?;
            return Ok(true);
        }
        let mut alloc = PageAllocator::new(self.meta()?);
        let (cell, chain_parts) = self.leaf_cell(key, value, inline, &mut alloc)?;
        debug_assert_eq!(cell.len(), cell_len);
        let old_value = old.map(|(v, chain, _)| {
            for pid in chain {
                alloc.free(pid);
            }
            v
        });
        let mut parts = chain_parts;
        if in_place {
            parts.push(PagePart { page_id: leaf, op: put_op(slot, cell) });
            alloc.finish(&mut parts);
        } else {
            let mut plan = Plan::new(self, alloc);
            let i = plan.load(leaf, 0)?;
            let last_slot = plan.node(i).cells.len();
            plan.bias = match slot {
                Err(s) if s == last_slot && plan.node(i).link.is_none() => SplitBias::Append,
                Err(0) if path.child_pos.iter().all(|&p| p == 0) => SplitBias::Prepend,
                _ => SplitBias::Even,
            };
            match slot {
                Ok(s) => plan.node(i).replace(s, cell),
                Err(s) => plan.node(i).insert(s, cell),
            }
            plan.fix_up(&path, path.nodes.len() - 1, i)?;
            plan.finish(&mut parts);
        }
        self.log_key_change(ctx, parts, KeyUndo { key: key.to_vec(), old: old_value })?;
        Ok(true)
    }

    /// What a change of leaf cell `slot` of `g` replaces: the old value, its
    /// overflow chain (pages to free), and the cell's length.
    fn old_cell(&self, g: &[u8], slot: usize) -> Result<(Vec<u8>, Vec<PageId>, usize)> {
        let bytes = page::cell(g, slot);
        let c = LeafCell::parse(bytes);
        let chain = match c.overflow {
            Some(first) => self.overflow_chain(first, c.val_len)?,
            None => vec![],
        };
        Ok((self.read_value(&c)?, chain, bytes.len()))
    }

    /// The leaf cell for `key` and `value`, and, for a value that is not
    /// `inline`, the parts that write its overflow chain on new pages.
    fn leaf_cell(
        &self,
        key: &[u8],
        value: &[u8],
        inline: bool,
        alloc: &mut PageAllocator,
    ) -> Result<(Vec<u8>, Vec<PagePart>)> {
        let mut cell = Vec::new();
        if inline {
            LeafCell::encode_inline(key, value, &mut cell);
            return Ok((cell, Vec::new()));
        }
        let cap = page::overflow_capacity(self.pool.page_size());
        let pages: Vec<PageId> =
            (0..value.len().div_ceil(cap)).map(|_| alloc.alloc(self.pool)).collect::<Result<_>>()?;
        let mut chain_parts = Vec::with_capacity(pages.len());
        for (i, chunk) in value.chunks(cap).enumerate() {
            let next = pages.get(i + 1).copied().unwrap_or(PageId::NONE);
            chain_parts.push(PagePart { page_id: pages[i], op: PageOp::InitOverflow { next, data: chunk.to_vec() } });
        }
        assert!(!pages.is_empty(), "a value in overflow pages has at least one");
        LeafCell::encode_overflow(key, value.len(), pages[0], &mut cell);
        Ok((cell, chain_parts))
    }

    /// Remove `key`; false if it was not there (nothing is logged then). One
    /// record holds the leaf change and any merge or redistribution it causes.
    pub fn delete(&self, ctx: &mut TxnCtx, key: &[u8]) -> Result<bool> {
        self.delete_gated(ctx, key, |_, _| Ok(true)).map(|r| r == Some(true))
    }

    /// As `delete`, but first asks `gate` with what the descent found:
    /// whether the key exists, and the key after it (None at the end), the
    /// ones a delete's next-key locks name. None if `gate` says no (nothing
    /// changes), else whether the key existed. One descent serves both.
    pub fn delete_gated(
        &self,
        ctx: &mut TxnCtx,
        key: &[u8],
        gate: impl FnOnce(bool, Option<&[u8]>) -> Result<bool>,
    ) -> Result<Option<bool>> {
        let page_size = self.pool.page_size();
        // What the delete needs, read in the descent's hold of the leaf's
        // latch: the slot, old value, overflow chain and fill after, if the
        // key is there.
        let (path, (found, next)) = self.find_leaf_with(key, |g| {
            Ok(match page::search(g, key) {
                Ok(s) => {
                    let (value, chain, cell_len) = self.old_cell(g, s)?;
                    let used = page::usable_space(page_size) - page::free_space(g);
                    (Some((s, value, chain, used - cell_len - 2)), NextKey::at(g, s + 1))
                }
                Err(s) => (None, NextKey::at(g, s)),
            })
        })?;
        let leaf = path.leaf();
        let next = self.resolve_next(next)?;
        if !gate(found.is_some(), next.as_deref())? {
            return Ok(None);
        }
        let Some((slot, value, chain, used_after)) = found else { return Ok(Some(false)) };
        let in_place = path.nodes.len() == 1 || used_after >= smo::leaf_min_fill(page_size);
        if in_place && chain.is_empty() {
            // No page freed: the meta page is not read.
            let parts = vec![PagePart { page_id: leaf, op: PageOp::Delete { slot: slot as u16 } }];
            self.log_key_change(ctx, parts, KeyUndo { key: key.to_vec(), old: Some(value) })?;
            return Ok(Some(true));
        }
        let mut alloc = PageAllocator::new(self.meta()?);
        for pid in chain {
            alloc.free(pid);
        }
        let mut parts = Vec::new();
        if in_place {
            parts.push(PagePart { page_id: leaf, op: PageOp::Delete { slot: slot as u16 } });
            alloc.finish(&mut parts);
        } else {
            let mut plan = Plan::new(self, alloc);
            let i = plan.load(leaf, 0)?;
            plan.node(i).remove(slot);
            plan.fix_up(&path, path.nodes.len() - 1, i)?;
            plan.finish(&mut parts);
        }
        self.log_key_change(ctx, parts, KeyUndo { key: key.to_vec(), old: Some(value) })?;
        Ok(Some(true))
    }

    /// Log a CLR that changes nothing: the compensation found the key already
    /// as the undo wants it. Keeps the undo chain moving.
    pub fn log_empty_clr(&self, ctx: &mut TxnCtx) -> Result<()> {
        self.log_key_change(ctx, vec![], KeyUndo { key: vec![], old: None })
    }

    /// Create the meta page and an empty root leaf (a new database).
    pub fn bootstrap(&self) -> Result<()> {
        // The root leaf is the first page after the meta page.
        let root = PageId(META_PAGE.get() + 1);
        let meta = Meta { root, free_head: PageId::NONE, page_count: root.get() + 1, free_count: 0 };
        let parts = vec![
            PagePart {
                page_id: META_PAGE,
                op: PageOp::Init { ty: PageType::Meta as u8, link: PageId::NONE, aux: 0, cells: vec![] },
            },
            PagePart { page_id: META_PAGE, op: PageOp::SetMeta(meta) },
            PagePart {
                page_id: root,
                op: PageOp::Init { ty: PageType::Leaf as u8, link: PageId::NONE, aux: 0, cells: vec![] },
            },
        ];
        self.log_redo(&mut TxnCtx::new(TxnId::SYSTEM, Lsn::NONE), parts)
    }
}
