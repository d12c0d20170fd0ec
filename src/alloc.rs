//! The page allocator: which pages of the data file are in use, which are
//! free, and how the file grows. It sits beside the buffer pool and knows
//! nothing of the tree; the tree asks it for pages and gives pages back.
//!
//! Every allocation and free is part of one log record: the allocator only
//! computes the page parts (a `Free` init per freed page, one `SetMeta` for the
//! meta page) that the record carries, so allocation is as atomic as the
//! change that needed it and redo repeats it exactly.
//!
//! Invariants:
//! - The free list is a chain of `Free` pages from `Meta::free_head` through
//!   their `link` fields; `Meta::free_count` is its length. A page is on the
//!   free list or reachable from the root, never both (checked by `check`).
//! - A page freed by a record and wanted again by the same record is reused
//!   directly, never written as `Free` first: a page is defined at most once
//!   per record.
//! - Pages are handed out from the free list before the file grows
//!   (`page_count` is the high-water mark).

use crate::buffer::BufferPool;
use crate::error::{Error, Result};
use crate::page::{Meta, PageOp, PageRef, PageType, META_PAGE};
use crate::types::PageId;
use crate::wal::PagePart;

fn corrupt(detail: impl std::fmt::Display) -> Error {
    Error::corruption("data", detail)
}

/// Allocation state for the page parts of one log record.
pub(crate) struct PageAllocator {
    /// The meta page as it will be after the record.
    pub meta: Meta,
    orig: Meta,
    /// Pages freed by this record, not yet on the free list.
    freed: Vec<PageId>,
}

impl PageAllocator {
    /// Start from the meta page as it is now.
    pub fn new(meta: Meta) -> PageAllocator {
        PageAllocator { meta, orig: meta, freed: Vec::new() }
    }

    /// A page for the record to define: one it freed itself, else the head of
    /// the free list, else a new page at the end of the file.
    pub fn alloc(&mut self, pool: &BufferPool) -> Result<PageId> {
        if let Some(pid) = self.freed.pop() {
            return Ok(pid);
        }
        if !self.meta.free_head.is_none() {
            let pid = self.meta.free_head;
            let h = pool.fetch(pid)?;
            let g = h.read();
            if g.page_type() != Some(PageType::Free) || self.meta.free_count == 0 {
                return Err(corrupt(format!("free list reaches page {pid} of type {:?}", g.page_type())));
            }
            let next = g.link();
            if next >= self.meta.end() {
                return Err(corrupt(format!("free list link to page {next} outside the file")));
            }
            self.meta.free_head = next;
            self.meta.free_count -= 1;
            return Ok(pid);
        }
        let pid = self.meta.end();
        self.meta.page_count = (self.meta.page_count.checked_add(1))
            .ok_or_else(|| Error::InvalidArgument("the data file reached 2^32 pages".into()))?;
        Ok(pid)
    }

    /// Give `pid` back; it reaches the free list when the record is finished.
    pub fn free(&mut self, pid: PageId) {
        debug_assert!(self.meta.holds(pid), "free of page {pid}");
        debug_assert!(!self.freed.contains(&pid), "page {pid} freed twice in one record");
        self.freed.push(pid);
    }

    /// Append the parts that put the freed pages on the free list and write
    /// the meta page, if anything changed.
    pub fn finish(mut self, parts: &mut Vec<PagePart>) {
        for pid in std::mem::take(&mut self.freed) {
            parts.push(PagePart {
                page_id: pid,
                op: PageOp::Init { ty: PageType::Free as u8, link: self.meta.free_head, aux: 0, cells: vec![] },
            });
            self.meta.free_head = pid;
            self.meta.free_count += 1;
        }
        if self.meta != self.orig {
            assert!(self.meta.holds(self.meta.root), "root outside the file");
            parts.push(PagePart { page_id: META_PAGE, op: PageOp::SetMeta(self.meta) });
        }
    }
}
