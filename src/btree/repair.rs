//! Reshaping a tree written by an older format version (1), which could
//! leave leaves and inner pages far below the fill bounds of `smo` and inner
//! pages with one child. `Db::open` runs it once, before the checkpoint that
//! records format version 2; a crash before that checkpoint runs it again.
//! It runs single-threaded at open, without the tree latch, and flushes the
//! log between fixes when its buffer passes the threshold.
//! Each fix is one redo-only system record (the structure changes keep every
//! key and value where a search finds it), so no rollback ever undoes one.

use super::smo::Plan;
use super::*;
use crate::alloc::PageAllocator;

/// Passes over the tree before giving up (each pass fixes every page it
/// found; a fix can leave a parent to fix in the next).
const MAX_PASSES: usize = 64;

impl BTree<'_> {
    /// Fix every page below its fill bound, or with one child, bottom-up from
    /// it as a change to it would. Returns the number of records written.
    pub fn repair_shape(&self, ctx: &mut TxnCtx) -> Result<u64> {
        let mut records = 0;
        for _ in 0..MAX_PASSES {
            let walk = self.walk()?;
            if walk.violations.is_empty() {
                return Ok(records);
            }
            for v in walk.violations {
                // The page of that level that covers the same keys now (an
                // earlier fix may have merged the one found).
                let full = self.find_leaf(v.low.as_deref())?;
                let root_level = full.nodes.len() - 1;
                let Some(depth) = root_level.checked_sub(v.level as usize) else { continue };
                let path = Path { nodes: full.nodes[..=depth].to_vec(), child_pos: full.child_pos[..depth].to_vec() };
                let mut plan = Plan::new(self, PageAllocator::new(self.meta()?));
                let idx = plan.load(path.nodes[depth], v.level)?;
                plan.fix_up(&path, depth, idx)?;
                let mut parts = Vec::new();
                plan.finish(&mut parts);
                if !parts.is_empty() {
                    self.log_redo(ctx, parts)?;
                    records += 1;
                }
                // At open, before any latch exists: keep the log's buffer
                // bounded between fixes.
                self.pool.log().flush_if_over()?;
            }
        }
        Err(corrupt(format!("the tree's shape was still out of bounds after {MAX_PASSES} passes")))
    }
}
