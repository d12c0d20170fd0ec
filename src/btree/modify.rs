//! Changes to the tree: put, delete, and splits. Each builds the page parts of
//! one log record and hands them to `BufferPool::log_and_apply`.

use super::*;
use crate::page::{PageOp, INNER_CELL_HEADER, LEAF_CELL_HEADER};
use crate::wal::{Body, KeyUndo, PagePart, RecordHeader, TxnId};

/// The transaction a change is logged for, and its `prev_lsn` chain.
#[derive(Debug, Clone, Copy)]
pub struct TxnCtx {
    /// The transaction.
    pub txn_id: TxnId,
    /// Its most recent record; updated by every record logged.
    pub last_lsn: u64,
    /// When set, the change is a compensation: it is logged as a CLR with this
    /// `undo_next_lsn` instead of as an Update.
    pub compensating: Option<u64>,
}

/// Page allocation within one record: pops the free list or extends the file,
/// and pushes freed pages. All allocations of a record come before its frees.
struct Alloc {
    meta: Meta,
    orig: Meta,
    freed_any: bool,
}

impl Alloc {
    fn new(meta: Meta) -> Alloc {
        Alloc { meta, orig: meta, freed_any: false }
    }

    fn alloc(&mut self, tree: &BTree<'_>) -> Result<PageId> {
        assert!(!self.freed_any, "allocations of a record come before its frees");
        if self.meta.free_head != 0 {
            let pid = self.meta.free_head;
            let h = tree.pool.fetch(pid)?;
            let g = h.read();
            if g.page_type() != Some(PageType::Free) || self.meta.free_count == 0 {
                return Err(corrupt(format!("free list reaches page {pid} of type {:?}", g.page_type())));
            }
            self.meta.free_head = g.link();
            self.meta.free_count -= 1;
            if self.meta.free_head >= self.meta.page_count {
                return Err(corrupt(format!("free list link to page {} outside the file", self.meta.free_head)));
            }
            Ok(pid)
        } else {
            let pid = self.meta.page_count;
            self.meta.page_count =
                pid.checked_add(1).ok_or_else(|| Error::InvalidArgument("the data file reached 2^32 pages".into()))?;
            Ok(pid)
        }
    }

    fn free(&mut self, pid: PageId, parts: &mut Vec<PagePart>) {
        self.freed_any = true;
        parts.push(PagePart {
            page_id: pid,
            op: PageOp::Init { ty: PageType::Free as u8, link: self.meta.free_head, aux: 0, cells: vec![] },
        });
        self.meta.free_head = pid;
        self.meta.free_count += 1;
    }

    fn finish(self, parts: &mut Vec<PagePart>) {
        if self.meta != self.orig {
            parts.push(PagePart { page_id: META_PAGE, op: PageOp::SetMeta(self.meta) });
        }
    }
}

impl BTree<'_> {
    /// Largest leaf cell with an inline value.
    fn max_inline_cell(&self) -> usize {
        page::max_cell(self.pool.page_size())
    }

    /// Log one record for `ctx` and apply it.
    fn log(&self, ctx: &mut TxnCtx, body: Body) -> Result<()> {
        let header = RecordHeader { prev_lsn: ctx.last_lsn, txn_id: ctx.txn_id, undo_next_lsn: 0 };
        ctx.last_lsn = self.pool.log_and_apply(&header, &body, self.fpi_horizon)?;
        Ok(())
    }

    /// Log a key change: an Update with its logical undo, or a CLR.
    fn log_key_change(&self, ctx: &mut TxnCtx, parts: Vec<PagePart>, undo: KeyUndo) -> Result<()> {
        match ctx.compensating {
            Some(undo_next_lsn) => {
                let header = RecordHeader { prev_lsn: ctx.last_lsn, txn_id: ctx.txn_id, undo_next_lsn };
                ctx.last_lsn = self.pool.log_and_apply(&header, &Body::Clr { parts }, self.fpi_horizon)?;
                Ok(())
            }
            None => self.log(ctx, Body::Update { parts, undo }),
        }
    }

    /// Insert or overwrite `key`.
    pub fn put(&self, ctx: &mut TxnCtx, key: &[u8], value: &[u8]) -> Result<()> {
        debug_assert!(!key.is_empty() && key.len() <= MAX_KEY_LEN && value.len() <= MAX_VALUE_LEN);
        let inline = LEAF_CELL_HEADER + key.len() + value.len() <= self.max_inline_cell();
        let cell_len = LEAF_CELL_HEADER + key.len() + if inline { value.len() } else { 4 };
        let path = loop {
            let path = self.find_leaf(Some(key))?;
            let h = self.pool.fetch(path.leaf())?;
            let g = h.read();
            let (need, avail) = match page::search(&g, key) {
                Ok(s) => (cell_len, page::free_space(&g) + page::cell(&g, s).len()),
                Err(_) => (cell_len + 2, page::free_space(&g)),
            };
            if avail >= need {
                break path;
            }
            drop(g);
            drop(h);
            self.split(ctx, &path, path.nodes.len() - 1)?;
        };
        let leaf = path.leaf();
        let h = self.pool.fetch(leaf)?;
        let (slot, old) = {
            let g = h.read();
            match page::search(&g, key) {
                Ok(s) => {
                    let c = LeafCell::parse(page::cell(&g, s));
                    let old_chain = match c.overflow {
                        Some(first) => self.overflow_chain(first, c.val_len)?,
                        None => vec![],
                    };
                    (Ok(s), Some((self.read_value(&c)?, old_chain)))
                }
                Err(s) => (Err(s), None),
            }
        };
        drop(h);
        let mut alloc = Alloc::new(self.meta()?);
        let mut parts = Vec::new();
        let mut cell = Vec::with_capacity(cell_len);
        let mut chain_parts = Vec::new();
        if inline {
            LeafCell::encode_inline(key, value, &mut cell);
        } else {
            let cap = page::overflow_capacity(self.pool.page_size());
            let pages: Vec<PageId> =
                (0..value.len().div_ceil(cap)).map(|_| alloc.alloc(self)).collect::<Result<_>>()?;
            for (i, chunk) in value.chunks(cap).enumerate() {
                let next = pages.get(i + 1).copied().unwrap_or(0);
                chain_parts
                    .push(PagePart { page_id: pages[i], op: PageOp::InitOverflow { next, data: chunk.to_vec() } });
            }
            LeafCell::encode_overflow(key, value.len(), pages[0], &mut cell);
        }
        debug_assert_eq!(cell.len(), cell_len);
        let op = match slot {
            Ok(s) => PageOp::Replace { slot: s as u16, cell },
            Err(s) => PageOp::Insert { slot: s as u16, cell },
        };
        parts.push(PagePart { page_id: leaf, op });
        parts.extend(chain_parts);
        let old_value = old.map(|(v, chain)| {
            for pid in chain {
                alloc.free(pid, &mut parts);
            }
            v
        });
        alloc.finish(&mut parts);
        self.log_key_change(ctx, parts, KeyUndo { key: key.to_vec(), old: old_value })
    }

    /// Remove `key`; false if it was not there (nothing is logged then).
    pub fn delete(&self, ctx: &mut TxnCtx, key: &[u8]) -> Result<bool> {
        let path = self.find_leaf(Some(key))?;
        let leaf = path.leaf();
        let h = self.pool.fetch(leaf)?;
        let (slot, value, chain) = {
            let g = h.read();
            let Ok(s) = page::search(&g, key) else { return Ok(false) };
            let c = LeafCell::parse(page::cell(&g, s));
            let chain = match c.overflow {
                Some(first) => self.overflow_chain(first, c.val_len)?,
                None => vec![],
            };
            (s, self.read_value(&c)?, chain)
        };
        drop(h);
        let mut alloc = Alloc::new(self.meta()?);
        let mut parts = vec![PagePart { page_id: leaf, op: PageOp::Delete { slot: slot as u16 } }];
        for pid in chain {
            alloc.free(pid, &mut parts);
        }
        alloc.finish(&mut parts);
        self.log_key_change(ctx, parts, KeyUndo { key: key.to_vec(), old: Some(value) })?;
        let empty = self.pool.fetch(leaf)?.read().slot_count() == 0;
        if empty && path.nodes.len() > 1 {
            self.reclaim_empty_leaf(ctx, &path)?;
        }
        Ok(true)
    }

    /// Give an emptied leaf's page back, as a nested top action: pull the right
    /// sibling's cells into it and free the sibling, or, for the last child of
    /// its parent, unlink it from its left sibling and free it. The only child
    /// of a parent stays.
    fn reclaim_empty_leaf(&self, ctx: &mut TxnCtx, path: &Path) -> Result<()> {
        let depth = path.nodes.len() - 1;
        let (leaf, parent, pos) = (path.leaf(), path.nodes[depth - 1], path.child_pos[depth - 1]);
        let (right, left) = {
            let h = self.pool.fetch(parent)?;
            let g = h.read();
            let n = g.slot_count();
            if pos > n || child_at(&g, pos) != leaf {
                return Err(corrupt(format!("inner page {parent} does not point at leaf {leaf} at {pos}")));
            }
            (
                if pos < n { Some(child_at(&g, pos + 1)) } else { None },
                if pos > 0 { Some(child_at(&g, pos - 1)) } else { None },
            )
        };
        let leaf_link = self.pool.fetch(leaf)?.read().link();
        let mut alloc = Alloc::new(self.meta()?);
        let mut parts = Vec::new();
        if let Some(r) = right {
            let h = self.pool.fetch(r)?;
            let g = h.read();
            if g.page_type() != Some(PageType::Leaf) || leaf_link != r {
                return Err(corrupt(format!("leaf {leaf}'s right sibling {r} is not its next leaf")));
            }
            let cells = (0..g.slot_count()).map(|i| page::cell(&g, i).to_vec()).collect();
            parts.push(PagePart {
                page_id: leaf,
                op: PageOp::Init { ty: PageType::Leaf as u8, link: g.link(), aux: 0, cells },
            });
            parts.push(PagePart { page_id: parent, op: PageOp::Delete { slot: pos as u16 } });
            alloc.free(r, &mut parts);
        } else if let Some(l) = left {
            parts.push(PagePart { page_id: l, op: PageOp::SetLink(leaf_link) });
            parts.push(PagePart { page_id: parent, op: PageOp::Delete { slot: (pos - 1) as u16 } });
            alloc.free(leaf, &mut parts);
        } else {
            return Ok(());
        }
        alloc.finish(&mut parts);
        self.log_nested_top_action(ctx, parts)
    }

    /// Log a CLR that changes nothing: the compensation found the key already
    /// as the undo wants it. Keeps the undo chain moving.
    pub fn log_empty_clr(&self, ctx: &mut TxnCtx) -> Result<()> {
        self.log_key_change(ctx, vec![], KeyUndo { key: vec![], old: None })
    }

    /// Split the node at `path.nodes[depth]`, or, if its parent has no room for
    /// one more separator, split the parent first (the caller descends again).
    /// One split is one redo-only record, a nested top action, closed by a
    /// dummy CLR whose undo_next_lsn skips it.
    pub(crate) fn split(&self, ctx: &mut TxnCtx, path: &Path, depth: usize) -> Result<()> {
        let pid = path.nodes[depth];
        let h = self.pool.fetch(pid)?;
        let g = h.read();
        let n = g.slot_count();
        let ty = g.page_type().ok_or_else(|| corrupt(format!("split of untyped page {pid}")))?;
        if n < 2 {
            return Err(corrupt(format!("page {pid} is full with {n} cells")));
        }
        // Split point: the first cell at which half the bytes are reached,
        // keeping at least one cell on each side.
        let total: usize = (0..n).map(|i| page::cell(&g, i).len() + 2).sum();
        let mut acc = 0;
        let mut mid = 1;
        for i in 0..n {
            acc += page::cell(&g, i).len() + 2;
            if acc >= total / 2 {
                mid = (i + 1).clamp(1, n - 1);
                break;
            }
        }
        let sep_key = page::cell_key(&g, mid).to_vec();
        if depth > 0 {
            let parent = self.pool.fetch(path.nodes[depth - 1])?;
            let room = page::free_space(&parent.read());
            if room < INNER_CELL_HEADER + sep_key.len() + 2 {
                drop(parent);
                drop(g);
                drop(h);
                return self.split(ctx, path, depth - 1);
            }
        }
        let mut alloc = Alloc::new(self.meta()?);
        let new_pid = alloc.alloc(self)?;
        let mut parts = Vec::new();
        match ty {
            PageType::Leaf => {
                let cells = (mid..n).map(|i| page::cell(&g, i).to_vec()).collect();
                parts.push(PagePart {
                    page_id: new_pid,
                    op: PageOp::Init { ty: PageType::Leaf as u8, link: g.link(), aux: 0, cells },
                });
                parts.push(PagePart { page_id: pid, op: PageOp::Truncate { from: mid as u16 } });
                parts.push(PagePart { page_id: pid, op: PageOp::SetLink(new_pid) });
            }
            PageType::Internal => {
                let cells = (mid + 1..n).map(|i| page::cell(&g, i).to_vec()).collect();
                let link = page::inner_child(&g, mid);
                parts.push(PagePart {
                    page_id: new_pid,
                    op: PageOp::Init { ty: PageType::Internal as u8, link, aux: g.aux(), cells },
                });
                parts.push(PagePart { page_id: pid, op: PageOp::Truncate { from: mid as u16 } });
            }
            other => return Err(corrupt(format!("split of page {pid} of type {other:?}"))),
        }
        let level = if ty == PageType::Leaf { 0 } else { g.aux() };
        drop(g);
        drop(h);
        let mut sep_cell = Vec::new();
        page::encode_inner(&sep_key, new_pid, &mut sep_cell);
        if depth == 0 {
            // Root split: a new root above the old one.
            let root = alloc.alloc(self)?;
            parts.push(PagePart {
                page_id: root,
                op: PageOp::Init { ty: PageType::Internal as u8, link: pid, aux: level + 1, cells: vec![sep_cell] },
            });
            alloc.meta.root = root;
        } else {
            let slot = path.child_pos[depth - 1];
            parts.push(PagePart {
                page_id: path.nodes[depth - 1],
                op: PageOp::Insert { slot: slot as u16, cell: sep_cell },
            });
        }
        alloc.finish(&mut parts);
        self.log_nested_top_action(ctx, parts)
    }

    /// A nested top action: the redo-only record, then a dummy CLR pointing
    /// back past it, so a rollback of the transaction never undoes it.
    fn log_nested_top_action(&self, ctx: &mut TxnCtx, parts: Vec<PagePart>) -> Result<()> {
        let before = ctx.last_lsn;
        self.log(ctx, Body::Redo { parts })?;
        let header = RecordHeader { prev_lsn: ctx.last_lsn, txn_id: ctx.txn_id, undo_next_lsn: before };
        ctx.last_lsn = self.pool.wal().append(&header, &Body::Clr { parts: vec![] })?;
        Ok(())
    }

    /// Create the meta page and an empty root leaf (a new database).
    pub fn bootstrap(&self) -> Result<()> {
        let meta = Meta { root: 2, free_head: 0, page_count: 3, free_count: 0 };
        let parts = vec![
            PagePart {
                page_id: META_PAGE,
                op: PageOp::Init { ty: PageType::Meta as u8, link: 0, aux: 0, cells: vec![] },
            },
            PagePart { page_id: META_PAGE, op: PageOp::SetMeta(meta) },
            PagePart { page_id: 2, op: PageOp::Init { ty: PageType::Leaf as u8, link: 0, aux: 0, cells: vec![] } },
        ];
        let mut ctx = TxnCtx { txn_id: 0, last_lsn: 0, compensating: None };
        self.log(&mut ctx, Body::Redo { parts })
    }
}
