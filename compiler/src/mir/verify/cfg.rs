//! CFG facts the verifier and code generator share: predecessors, reverse post-order,
//! immediate dominators (Cooper, Harvey and Kennedy's iterative algorithm) and loops.

use crate::mir::{Block, Function};

/// Predecessors, reverse post-order and dominators of one function.
#[derive(Debug, Clone)]
pub struct Cfg {
    pub preds: Vec<Vec<Block>>,
    /// Blocks reachable from the entry, in reverse post-order.
    pub rpo: Vec<Block>,
    /// Position of each block in `rpo` (`usize::MAX` when unreachable).
    pub rpo_index: Vec<usize>,
    /// Immediate dominator; the entry's is itself, unreachable blocks have none.
    pub idom: Vec<Option<Block>>,
    /// Edges `(from, to)` whose target is on the DFS stack: loop back edges.
    pub back_edges: Vec<(Block, Block)>,
}

impl Cfg {
    pub fn new(f: &Function) -> Cfg {
        let n = f.blocks.len();
        let mut preds = vec![Vec::new(); n];
        for b in f.block_ids() {
            for s in f.succs(b) {
                if let Some(p) = preds.get_mut(s.index()) {
                    if !p.contains(&b) {
                        p.push(b);
                    }
                }
            }
        }
        // Iterative DFS for post-order and back edges.
        let mut post = Vec::with_capacity(n);
        let mut state = vec![0u8; n]; // 0 new, 1 on stack, 2 done
        let mut back_edges = Vec::new();
        let mut stack: Vec<(Block, usize)> = Vec::new();
        if n > 0 {
            stack.push((Block(0), 0));
            state[0] = 1;
        }
        while let Some(&mut (b, ref mut next)) = stack.last_mut() {
            let succs = f.succs(b);
            if let Some(&s) = succs.get(*next) {
                *next += 1;
                match state.get(s.index()) {
                    Some(0) => {
                        state[s.index()] = 1;
                        stack.push((s, 0));
                    }
                    Some(1) if !back_edges.contains(&(b, s)) => back_edges.push((b, s)),
                    _ => {}
                }
            } else {
                state[b.index()] = 2;
                post.push(b);
                stack.pop();
            }
        }
        let rpo: Vec<Block> = post.into_iter().rev().collect();
        let mut rpo_index = vec![usize::MAX; n];
        for (i, b) in rpo.iter().enumerate() {
            rpo_index[b.index()] = i;
        }
        let mut idom: Vec<Option<Block>> = vec![None; n];
        if n > 0 {
            idom[0] = Some(Block(0));
        }
        let mut changed = true;
        while changed {
            changed = false;
            for &b in rpo.iter().skip(1) {
                let mut new: Option<Block> = None;
                for &p in &preds[b.index()] {
                    if idom[p.index()].is_none() {
                        continue;
                    }
                    new = Some(match new {
                        None => p,
                        Some(cur) => intersect(&idom, &rpo_index, p, cur),
                    });
                }
                if new.is_some() && idom[b.index()] != new {
                    idom[b.index()] = new;
                    changed = true;
                }
            }
        }
        Cfg {
            preds,
            rpo,
            rpo_index,
            idom,
            back_edges,
        }
    }

    pub fn reachable(&self, b: Block) -> bool {
        self.rpo_index
            .get(b.index())
            .is_some_and(|&i| i != usize::MAX)
    }

    /// Whether `a` dominates `b` (every block dominates itself).
    pub fn dominates(&self, a: Block, b: Block) -> bool {
        let mut cur = b;
        loop {
            if cur == a {
                return true;
            }
            match self.idom.get(cur.index()).copied().flatten() {
                Some(up) if up != cur => cur = up,
                _ => return false,
            }
        }
    }

    /// Children of each block in the dominator tree.
    pub fn dom_children(&self) -> Vec<Vec<Block>> {
        let mut out = vec![Vec::new(); self.idom.len()];
        for &b in self.rpo.iter().skip(1) {
            if let Some(Some(d)) = self.idom.get(b.index()) {
                out[d.index()].push(b);
            }
        }
        out
    }
}

fn intersect(idom: &[Option<Block>], rpo_index: &[usize], a: Block, b: Block) -> Block {
    let (mut a, mut b) = (a, b);
    while a != b {
        while rpo_index[a.index()] > rpo_index[b.index()] {
            a = idom[a.index()].unwrap_or(Block(0));
        }
        while rpo_index[b.index()] > rpo_index[a.index()] {
            b = idom[b.index()].unwrap_or(Block(0));
        }
    }
    a
}
