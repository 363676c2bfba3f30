//! The CFG view of a function (petgraph) and the IR's well-formedness check.
//!
//! Checked between lowering and instruction selection; a failure is a compiler bug, not a
//! user error: every block target exists, the graph has no cycle (the verifier must see
//! a bounded program), and every virtual register is defined before use in its own block.

use super::{BlockId, Function};
use petgraph::graph::{DiGraph, NodeIndex};
use std::collections::HashSet;

/// The control-flow graph: node `i` is block `i`.
pub fn graph(func: &Function) -> DiGraph<BlockId, ()> {
    let mut g = DiGraph::with_capacity(func.blocks.len(), func.blocks.len() * 2);
    for i in 0..func.blocks.len() {
        g.add_node(BlockId(i as u32));
    }
    for (i, b) in func.blocks.iter().enumerate() {
        for s in b.term.successors() {
            if (s.0 as usize) < func.blocks.len() {
                g.add_edge(NodeIndex::new(i), NodeIndex::new(s.0 as usize), ());
            }
        }
    }
    g
}

/// Checks the IR invariants; the error names the first broken one.
pub fn verify(func: &Function) -> Result<(), String> {
    let n = func.blocks.len();
    for (i, b) in func.blocks.iter().enumerate() {
        for s in b.term.successors() {
            if s.0 as usize >= n {
                return Err(format!("b{i} jumps to missing block {s}"));
            }
        }
        let mut defined = HashSet::new();
        for inst in &b.insts {
            for u in inst.uses() {
                if !defined.contains(&u) {
                    return Err(format!("b{i} uses {u} before defining it in the block"));
                }
            }
            if let Some(d) = inst.def() {
                if !defined.insert(d) {
                    return Err(format!("b{i} defines {d} twice"));
                }
            }
        }
        if let super::Term::Branch { lhs, .. } = &b.term {
            if !defined.contains(lhs) {
                return Err(format!("b{i} branches on {lhs}, which it does not define"));
            }
        }
    }
    for e in [func.entry, func.malformed] {
        if e.0 as usize >= n {
            return Err(format!("entry block {e} is missing"));
        }
    }
    // Kahn's algorithm over every block: a cycle leaves blocks with inbound edges.
    // (petgraph's `is_cyclic_directed` recurses once per block on the path and overflows
    // a thread's stack on a rule with thousands of alternatives.)
    let g = graph(func);
    let mut indeg = vec![0usize; n];
    for e in g.edge_indices() {
        if let Some((_, b)) = g.edge_endpoints(e) {
            indeg[b.index()] += 1;
        }
    }
    let mut ready: Vec<usize> = (0..n).filter(|&b| indeg[b] == 0).collect();
    let mut seen = 0;
    while let Some(b) = ready.pop() {
        seen += 1;
        for s in g.neighbors(NodeIndex::new(b)) {
            indeg[s.index()] -= 1;
            if indeg[s.index()] == 0 {
                ready.push(s.index());
            }
        }
    }
    if seen != n {
        return Err("the CFG has a cycle".into());
    }
    Ok(())
}

/// Blocks reachable from the entry or the malformed block, in a topological order that
/// prefers the lowest block id among the ready ones (Kahn's algorithm). Lowering numbers
/// blocks in source order, so rules stay in order and a rule's action follows its tests.
pub fn layout(func: &Function) -> Vec<BlockId> {
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;
    let g = graph(func);
    let mut reach = HashSet::new();
    let mut stack = vec![func.entry, func.malformed];
    while let Some(b) = stack.pop() {
        if reach.insert(b) {
            stack.extend(func.blocks[b.0 as usize].term.successors());
        }
    }
    let mut indeg = vec![0usize; func.blocks.len()];
    for e in g.edge_indices() {
        if let Some((a, b)) = g.edge_endpoints(e) {
            if reach.contains(&BlockId(a.index() as u32)) {
                indeg[b.index()] += 1;
            }
        }
    }
    let mut ready: BinaryHeap<Reverse<usize>> = reach
        .iter()
        .map(|b| b.0 as usize)
        .filter(|&b| indeg[b] == 0)
        .map(Reverse)
        .collect();
    let mut order = Vec::with_capacity(reach.len());
    while let Some(Reverse(b)) = ready.pop() {
        order.push(BlockId(b as u32));
        for s in g.neighbors(NodeIndex::new(b)) {
            indeg[s.index()] -= 1;
            if indeg[s.index()] == 0 {
                ready.push(Reverse(s.index()));
            }
        }
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::{Block, Inst, Term, VReg};

    fn func(blocks: Vec<Block>) -> Function {
        Function {
            name: "t".into(),
            blocks,
            entry: BlockId(0),
            malformed: BlockId(0),
            vregs: 1,
        }
    }

    fn block(insts: Vec<Inst>, term: Term) -> Block {
        Block {
            insts,
            term,
            rule: None,
        }
    }

    #[test]
    fn verify_finds_cycles_missing_blocks_and_undefined_registers() {
        let ok = func(vec![
            block(vec![], Term::Jump(BlockId(1))),
            block(vec![], Term::Return(2)),
        ]);
        assert_eq!(verify(&ok), Ok(()));
        let cycle = func(vec![
            block(vec![], Term::Jump(BlockId(1))),
            block(vec![], Term::Jump(BlockId(0))),
        ]);
        assert_eq!(verify(&cycle), Err("the CFG has a cycle".into()));
        let missing = func(vec![block(vec![], Term::Jump(BlockId(7)))]);
        assert!(verify(&missing).is_err_and(|e| e.contains("missing block")));
        let undefined = func(vec![block(
            vec![Inst::AndImm {
                dst: VReg(1),
                src: VReg(0),
                imm: 1,
            }],
            Term::Return(0),
        )]);
        assert!(verify(&undefined).is_err_and(|e| e.contains("before defining")));
    }

    #[test]
    fn long_chains_do_not_exhaust_the_stack() {
        let n = 200_000;
        let blocks = (0..n)
            .map(|i| {
                if i + 1 == n {
                    block(vec![], Term::Return(0))
                } else {
                    block(vec![], Term::Jump(BlockId(i + 1)))
                }
            })
            .collect();
        let f = func(blocks);
        assert_eq!(verify(&f), Ok(()));
        assert_eq!(layout(&f).len(), n as usize);
    }
}
