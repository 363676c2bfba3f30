//! Register allocation over whole functions: liveness across blocks (loops included),
//! live segments per virtual register over the linear layout (holes included), a linear scan that
//! respects fixed registers (arguments r1–r5, results r0, r1–r5 clobbered by calls), and
//! spilling to 8-byte stack slots when registers run out. Spilled values are reloaded
//! into short-lived temporaries; the scan repeats until everything fits. There is no
//! fallback register: a temporary that cannot get a register is an internal error.
//!
//! Points: instruction `g` (numbered across the layout) reads at `2g`, writes at `2g+1`.

use std::collections::{BTreeSet, HashMap};

use super::vcode::{Reg, Role, VCode, VInst};

/// Where a virtual register lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loc {
    Reg(u8),
    Spill(u32),
}

/// The allocation of every virtual register (`None`: the register does not occur).
pub type Allocation = Vec<Option<Loc>>;

/// Registers the allocator hands out, in order of preference (r10 is the frame).
const ORDER: [u8; 10] = [1, 2, 3, 4, 5, 0, 6, 7, 8, 9];

/// Live-in sets per block.
pub fn liveness(vc: &VCode) -> Vec<BTreeSet<u32>> {
    let n = vc.blocks.len();
    let mut uses = vec![BTreeSet::new(); n];
    let mut defs = vec![BTreeSet::new(); n];
    for (b, data) in vc.blocks.iter().enumerate() {
        for inst in &data.insts {
            for (r, role) in inst.operands() {
                let Reg::V(v) = r else { continue };
                match role {
                    Role::Use | Role::LateUse => {
                        if !defs[b].contains(&v) {
                            uses[b].insert(v);
                        }
                    }
                    Role::Def | Role::Clobber | Role::Scratch => {
                        defs[b].insert(v);
                    }
                }
            }
        }
    }
    let mut live_in = vec![BTreeSet::new(); n];
    let mut changed = true;
    while changed {
        changed = false;
        for b in (0..n).rev() {
            let mut out = BTreeSet::new();
            for s in vc.succs(b) {
                if let Some(li) = live_in.get(s.0 as usize) {
                    out.extend(li.iter().copied());
                }
            }
            let mut inn: BTreeSet<u32> = out.difference(&defs[b]).copied().collect();
            inn.extend(uses[b].iter().copied());
            if inn != live_in[b] {
                live_in[b] = inn;
                changed = true;
            }
        }
    }
    live_in
}

/// Live-out sets from live-in sets.
pub fn live_out(vc: &VCode, live_in: &[BTreeSet<u32>]) -> Vec<BTreeSet<u32>> {
    (0..vc.blocks.len())
        .map(|b| {
            vc.succs(b)
                .iter()
                .filter_map(|s| live_in.get(s.0 as usize))
                .flatten()
                .copied()
                .collect()
        })
        .collect()
}

struct Intervals {
    /// Live segments `(from, to)` of each virtual register, sorted and disjoint: a value
    /// is not live in the holes (e.g. between its last use in a loop body and the back
    /// edge redefining it), so other values may use its register there.
    segs: Vec<Vec<(u32, u32)>>,
    /// Occupied ranges of each physical register.
    fixed: Vec<Vec<(u32, u32)>>,
    /// A physical register a virtual one is moved from or to.
    hint: HashMap<u32, u8>,
}

fn intervals(vc: &VCode) -> Intervals {
    let live_in = liveness(vc);
    let out = live_out(vc, &live_in);
    let mut segs: Vec<Vec<(u32, u32)>> = vec![Vec::new(); vc.nvregs as usize];
    let mut fixed = vec![Vec::new(); 11];
    let mut hint = HashMap::new();
    let push = |segs: &mut Vec<Vec<(u32, u32)>>, v: u32, s: u32, e: u32| {
        if let Some(list) = segs.get_mut(v as usize) {
            list.push((s, e));
        }
    };
    let mut g0: u32 = 0;
    for (b, data) in vc.blocks.iter().enumerate() {
        let n = data.insts.len().max(1) as u32;
        let start = 2 * g0;
        let end = 2 * (g0 + n) - 1;
        // Backwards: a segment ends at the last use (or the block end if live out) and
        // starts at the definition (or the block start if live in).
        let mut open: HashMap<u32, u32> = out[b].iter().map(|&v| (v, end)).collect();
        for (k, inst) in data.insts.iter().enumerate().rev() {
            let g = g0 + k as u32;
            let ops = inst.operands();
            for &(r, role) in &ops {
                let Reg::V(v) = r else { continue };
                match role {
                    Role::Def | Role::Clobber => {
                        let e = open.remove(&v).unwrap_or(2 * g + 1);
                        push(&mut segs, v, 2 * g + 1, e.max(2 * g + 1));
                    }
                    Role::Scratch => {
                        open.remove(&v);
                        push(&mut segs, v, 2 * g, 2 * g + 1);
                    }
                    _ => {}
                }
            }
            for &(r, role) in &ops {
                let Reg::V(v) = r else { continue };
                let p = match role {
                    Role::Use => 2 * g,
                    Role::LateUse => 2 * g + 1,
                    _ => continue,
                };
                let e = open.entry(v).or_insert(p);
                *e = (*e).max(p);
            }
        }
        for (v, e) in open {
            push(&mut segs, v, start, e);
        }
        // Fixed registers, forwards: from their definition to their use, within the block.
        let mut fopen: [Option<u32>; 11] = [None; 11];
        if b == 0 {
            for k in 1..=vc.nparams.min(5) {
                fopen[k as usize] = Some(0);
            }
        }
        for (k, inst) in data.insts.iter().enumerate() {
            let g = g0 + k as u32;
            if let VInst::Mov {
                dst: Reg::V(v),
                src: Reg::P(p),
            }
            | VInst::Mov {
                dst: Reg::P(p),
                src: Reg::V(v),
            } = inst
            {
                hint.entry(*v).or_insert(*p);
            }
            let ops = inst.operands();
            for &(r, role) in &ops {
                if let (Reg::P(p), Role::Use | Role::LateUse) = (r, role) {
                    if let Some(s) = fopen.get_mut(p as usize).and_then(Option::take) {
                        fixed[p as usize].push((s, 2 * g));
                    }
                }
            }
            for &(r, role) in &ops {
                if let (Reg::P(p), Role::Def | Role::Clobber) = (r, role) {
                    fixed[p as usize].push((2 * g + 1, 2 * g + 1));
                    if role == Role::Def {
                        fopen[p as usize] = Some(2 * g + 1);
                    }
                }
            }
        }
        g0 += n;
    }
    for list in &mut segs {
        list.sort_unstable();
        let mut merged: Vec<(u32, u32)> = Vec::with_capacity(list.len());
        for &(s, e) in list.iter() {
            match merged.last_mut() {
                Some(last) if s <= last.1 + 1 => last.1 = last.1.max(e),
                _ => merged.push((s, e)),
            }
        }
        *list = merged;
    }
    Intervals { segs, fixed, hint }
}

/// Whether two sorted segment lists overlap. Starts each list at the first segment that
/// can reach the other's start (fixed-register lists span the whole function: a plain
/// merge would make the scan quadratic).
fn overlap(a: &[(u32, u32)], b: &[(u32, u32)]) -> bool {
    let (Some(a0), Some(b0)) = (a.first(), b.first()) else {
        return false;
    };
    let mut i = a.partition_point(|s| s.1 < b0.0);
    let mut j = b.partition_point(|s| s.1 < a0.0);
    while let (Some(&x), Some(&y)) = (a.get(i), b.get(j)) {
        if x.0 <= y.1 && y.0 <= x.1 {
            return true;
        }
        if x.1 < y.1 {
            i += 1;
        } else {
            j += 1;
        }
    }
    false
}

/// Allocates registers, spilling as needed; rewrites `vc` with spill code.
pub fn allocate(vc: &mut VCode) -> Result<Allocation, String> {
    let mut spilled: HashMap<u32, u32> = HashMap::new();
    for _round in 0..=vc.nvregs + 1 {
        let iv = intervals(vc);
        match scan(vc, &iv, &spilled) {
            Ok(regs) => {
                let mut alloc: Allocation = vec![None; vc.nvregs as usize];
                for (v, r) in regs.into_iter().enumerate() {
                    alloc[v] = r.map(Loc::Reg);
                }
                for (&v, &slot) in &spilled {
                    if let Some(a) = alloc.get_mut(v as usize) {
                        *a = Some(Loc::Spill(slot));
                    }
                }
                return Ok(alloc);
            }
            Err(Fail::NoRegister(v)) => {
                return Err(format!(
                    "no register for temporary %{v} and nothing left to spill"
                ))
            }
            Err(Fail::Spill(more)) => {
                let mut new = HashMap::new();
                for v in more {
                    let slot = vc.spills;
                    vc.spills += 1;
                    new.insert(v, slot);
                }
                rewrite(vc, &new);
                spilled.extend(new);
            }
        }
    }
    Err("register allocation did not converge".into())
}

/// One linear scan over segments: a register per virtual register, or the set to spill.
fn scan(vc: &VCode, iv: &Intervals, spilled: &HashMap<u32, u32>) -> Result<Vec<Option<u8>>, Fail> {
    let mut order: Vec<(u32, u32)> = iv
        .segs
        .iter()
        .enumerate()
        .filter(|(v, _)| !spilled.contains_key(&(*v as u32)))
        .filter_map(|(v, s)| s.first().map(|f| (f.0, v as u32)))
        .collect();
    order.sort();
    let segs = |v: u32| {
        iv.segs
            .get(v as usize)
            .map(Vec::as_slice)
            .unwrap_or_default()
    };
    let last = |v: u32| segs(v).last().map_or(0, |s| s.1);
    let mut assigned: Vec<Option<u8>> = vec![None; vc.nvregs as usize];
    let mut on_reg: Vec<Vec<u32>> = vec![Vec::new(); 11];
    let mut to_spill = Vec::new();
    let mut stuck: Option<u32> = None;
    let is_temp = |v: u32| vc.temps.get(v as usize).copied().unwrap_or(false);
    // What spilling a value costs: a reload per use, a store per definition.
    let mut occ = vec![0u32; vc.nvregs as usize];
    for b in &vc.blocks {
        for inst in &b.insts {
            for (r, _) in inst.operands() {
                if let Reg::V(v) = r {
                    if let Some(o) = occ.get_mut(v as usize) {
                        *o += 1;
                    }
                }
            }
        }
    }
    let cost = |v: u32| occ.get(v as usize).copied().unwrap_or(0);
    // Values moved into or from each other (block parameters and their arguments, copies):
    // the same register makes the move disappear.
    let mut partners: HashMap<u32, Vec<u32>> = HashMap::new();
    for b in &vc.blocks {
        for inst in &b.insts {
            let pairs: Vec<(Reg, Reg)> = match inst {
                VInst::Mov { dst, src } => vec![(*dst, *src)],
                VInst::ParMove { moves, .. } => moves.clone(),
                // Two-address ALU: `dst = lhs op rhs` is one instruction when they share.
                VInst::Alu { dst, lhs, .. }
                | VInst::Neg { dst, src: lhs, .. }
                | VInst::Bswap { dst, src: lhs, .. } => vec![(*dst, *lhs)],
                _ => vec![],
            };
            for (d, s) in pairs {
                if let (Reg::V(d), Reg::V(s)) = (d, s) {
                    partners.entry(d).or_default().push(s);
                    partners.entry(s).or_default().push(d);
                }
            }
        }
    }
    for (start, v) in order {
        // Values that ended before this one starts conflict with nothing from here on.
        for list in on_reg.iter_mut() {
            if list.len() > 8 {
                list.retain(|&w| last(w) >= start);
            }
        }
        let mine = segs(v);
        let fixed_ok = |r: u8| !overlap(&iv.fixed[r as usize], mine);
        let conflicts = |r: u8, on_reg: &[Vec<u32>]| -> Vec<u32> {
            on_reg[r as usize]
                .iter()
                .copied()
                .filter(|&w| overlap(segs(w), mine))
                .collect()
        };
        let hint = iv.hint.get(&v).copied();
        let mine_partners = partners.get(&v).map(Vec::as_slice).unwrap_or_default();
        let copies: Vec<u8> = mine_partners
            .iter()
            .filter_map(|&w| assigned.get(w as usize).copied().flatten())
            .collect();
        // A partner not allocated yet that lives across a call will take a callee-saved
        // register: taking one too lets the move between them disappear. Partners of
        // partners count too (a loaded port, its byte swap, the block parameter it is
        // passed to that lives across the set lookup: one register, no move).
        let saved_partner = chain(&partners, v, |a, b| !overlap(segs(a), segs(b)))
            .into_iter()
            .any(|w| assigned[w as usize].is_none() && overlap(&iv.fixed[1], segs(w)));
        let saved: &[u8] = if saved_partner { &[6, 7, 8, 9] } else { &[] };
        let pick = hint
            .into_iter()
            .chain(copies)
            .chain(saved.iter().copied())
            .chain(ORDER)
            .find(|&r| fixed_ok(r) && conflicts(r, &on_reg).is_empty());
        if let Some(r) = pick {
            assigned[v as usize] = Some(r);
            on_reg[r as usize].push(v);
            continue;
        }
        // Evict the values of the register that are cheapest to spill (fewest uses and
        // definitions; then the longest-lived), if they cost less than this one (or this
        // one is a temporary that must have a register).
        let victim = ORDER
            .iter()
            .filter(|&&r| fixed_ok(r))
            .filter_map(|&r| {
                let c = conflicts(r, &on_reg);
                (!c.iter().any(|&w| is_temp(w))).then(|| {
                    let spill: u32 = c.iter().map(|&w| cost(w)).sum();
                    let end = c.iter().map(|&w| last(w)).min().unwrap_or(0);
                    (spill, end, r, c)
                })
            })
            .min_by_key(|(spill, end, _, _)| (*spill, std::cmp::Reverse(*end)));
        let mine = (cost(v), last(v));
        match victim {
            Some((spill, end, r, c))
                if is_temp(v) || spill < mine.0 || (spill == mine.0 && end > mine.1) =>
            {
                for w in c {
                    assigned[w as usize] = None;
                    on_reg[r as usize].retain(|&x| x != w);
                    to_spill.push(w);
                }
                assigned[v as usize] = Some(r);
                on_reg[r as usize].push(v);
            }
            _ if !is_temp(v) => to_spill.push(v),
            _ => {
                stuck.get_or_insert(v);
            }
        }
    }
    match (to_spill.is_empty(), stuck) {
        (true, None) => Ok(assigned),
        (true, Some(v)) => Err(Fail::NoRegister(v)),
        (false, _) => Err(Fail::Spill(to_spill)),
    }
}

/// The values joined to `v` by moves, up to a few steps away (not `v` itself), through
/// pairs that `joinable` says could share a register (one ends where the other begins:
/// a value and its byte swap, not a pointer and the pointer 14 bytes on, both live).
fn chain(
    partners: &HashMap<u32, Vec<u32>>,
    v: u32,
    joinable: impl Fn(u32, u32) -> bool,
) -> Vec<u32> {
    let mut seen = vec![v];
    let mut at = 0;
    while let Some(&w) = seen.get(at) {
        at += 1;
        if seen.len() >= 16 {
            break;
        }
        for &p in partners.get(&w).map(Vec::as_slice).unwrap_or_default() {
            if !seen.contains(&p) && joinable(w, p) {
                seen.push(p);
            }
        }
    }
    seen.remove(0);
    seen
}

enum Fail {
    Spill(Vec<u32>),
    /// A temporary found no register and nothing could be spilled for it.
    NoRegister(u32),
}

/// Inserts reloads before uses and spills after definitions of the registers in `new`.
fn rewrite(vc: &mut VCode, new: &HashMap<u32, u32>) {
    let blocks = std::mem::take(&mut vc.blocks);
    let mut out_blocks = Vec::with_capacity(blocks.len());
    for data in blocks {
        let mir = data.mir;
        let mut out = Vec::with_capacity(data.insts.len());
        for mut inst in data.insts {
            match inst {
                VInst::Mov {
                    dst: Reg::P(p),
                    src: Reg::V(v),
                } if new.contains_key(&v) => {
                    out.push(VInst::Reload {
                        dst: Reg::P(p),
                        slot: new[&v],
                        of: v,
                    });
                    continue;
                }
                VInst::Mov {
                    dst: Reg::V(v),
                    src: Reg::P(p),
                } if new.contains_key(&v) => {
                    out.push(VInst::Spill {
                        slot: new[&v],
                        src: Reg::P(p),
                        of: v,
                    });
                    continue;
                }
                // Block parameter moves read and write spill slots directly.
                VInst::ParMove { .. } => {
                    out.push(inst);
                    continue;
                }
                _ => {}
            }
            let mut before = Vec::new();
            let mut after = Vec::new();
            let mut reloaded: HashMap<u32, Reg> = HashMap::new();
            let mut fresh = Vec::new();
            inst.map_regs(|r, role| {
                let Reg::V(v) = r else { return r };
                let Some(&slot) = new.get(&v) else { return r };
                match role {
                    Role::Use | Role::LateUse => *reloaded.entry(v).or_insert_with(|| {
                        let t = Reg::V(vc.nvregs + fresh.len() as u32);
                        fresh.push(v);
                        before.push(VInst::Reload {
                            dst: t,
                            slot,
                            of: v,
                        });
                        t
                    }),
                    Role::Def | Role::Clobber | Role::Scratch => {
                        let t = Reg::V(vc.nvregs + fresh.len() as u32);
                        fresh.push(v);
                        after.push(VInst::Spill {
                            slot,
                            src: t,
                            of: v,
                        });
                        t
                    }
                }
            });
            for v in fresh {
                let t = vc.new_vreg(true);
                if let Reg::V(t) = t {
                    vc.origin[t as usize] = Some(v);
                }
            }
            out.extend(before);
            out.push(inst);
            out.extend(after);
        }
        out_blocks.push(super::vcode::VBlockData { insts: out, mir });
    }
    vc.blocks = out_blocks;
}
