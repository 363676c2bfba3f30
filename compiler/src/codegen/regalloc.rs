//! Register allocation over whole functions: liveness across blocks (loops included),
//! one live interval per virtual register over the linear layout, a linear scan that
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
    /// `(start, end)` per virtual register.
    range: Vec<Option<(u32, u32)>>,
    /// Occupied ranges of each physical register.
    fixed: Vec<Vec<(u32, u32)>>,
    /// A physical register a virtual one is moved from or to.
    hint: HashMap<u32, u8>,
}

fn intervals(vc: &VCode) -> Intervals {
    let live_in = liveness(vc);
    let out = live_out(vc, &live_in);
    let mut range: Vec<Option<(u32, u32)>> = vec![None; vc.nvregs as usize];
    let mut fixed = vec![Vec::new(); 11];
    let mut hint = HashMap::new();
    let mut extend = |v: u32, p: u32| {
        if let Some(slot) = range.get_mut(v as usize) {
            *slot = Some(match *slot {
                None => (p, p),
                Some((s, e)) => (s.min(p), e.max(p)),
            });
        }
    };
    let mut g: u32 = 0;
    for (b, data) in vc.blocks.iter().enumerate() {
        let start = 2 * g;
        let end = 2 * (g + data.insts.len().max(1) as u32) - 1;
        for &v in &live_in[b] {
            extend(v, start);
        }
        for &v in &out[b] {
            extend(v, end);
        }
        let mut open: [Option<u32>; 11] = [None; 11];
        if b == 0 {
            for k in 1..=vc.nparams.min(5) {
                open[k as usize] = Some(0);
            }
        }
        for inst in &data.insts {
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
                match (r, role) {
                    (Reg::V(v), Role::Use) => extend(v, 2 * g),
                    (Reg::V(v), Role::Scratch) => {
                        extend(v, 2 * g);
                        extend(v, 2 * g + 1);
                    }
                    (Reg::V(v), _) => extend(v, 2 * g + 1),
                    (Reg::P(p), Role::Use | Role::LateUse) => {
                        if let Some(s) = open.get_mut(p as usize).and_then(Option::take) {
                            fixed[p as usize].push((s, 2 * g));
                        }
                    }
                    _ => {}
                }
            }
            for &(r, role) in &ops {
                if let (Reg::P(p), Role::Def | Role::Clobber) = (r, role) {
                    fixed[p as usize].push((2 * g + 1, 2 * g + 1));
                    if role == Role::Def {
                        open[p as usize] = Some(2 * g + 1);
                    }
                }
            }
            g += 1;
        }
        if data.insts.is_empty() {
            g += 1;
        }
    }
    Intervals { range, fixed, hint }
}

fn overlaps(a: (u32, u32), b: (u32, u32)) -> bool {
    a.0 <= b.1 && b.0 <= a.1
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

/// One linear scan: a register per interval, or the set of registers to spill.
fn scan(vc: &VCode, iv: &Intervals, spilled: &HashMap<u32, u32>) -> Result<Vec<Option<u8>>, Fail> {
    let mut order: Vec<(u32, u32, u32)> = iv
        .range
        .iter()
        .enumerate()
        .filter(|(v, _)| !spilled.contains_key(&(*v as u32)))
        .filter_map(|(v, r)| r.map(|(s, e)| (s, e, v as u32)))
        .collect();
    order.sort();
    let mut assigned: Vec<Option<u8>> = vec![None; vc.nvregs as usize];
    // (end, vreg, reg)
    let mut active: Vec<(u32, u32, u8)> = Vec::new();
    let mut to_spill = Vec::new();
    let mut stuck: Option<u32> = None;
    let is_temp = |v: u32| vc.temps.get(v as usize).copied().unwrap_or(false);
    let free_of_fixed =
        |r: u8, span: (u32, u32)| iv.fixed[r as usize].iter().all(|&f| !overlaps(f, span));
    for (s, e, v) in order {
        active.retain(|&(end, _, _)| end >= s);
        let busy = |r: u8, active: &[(u32, u32, u8)]| active.iter().any(|&(_, _, ar)| ar == r);
        let hint = iv.hint.get(&v).copied();
        let pick = hint
            .into_iter()
            .chain(ORDER)
            .find(|&r| !busy(r, &active) && free_of_fixed(r, (s, e)));
        if let Some(r) = pick {
            assigned[v as usize] = Some(r);
            active.push((e, v, r));
            continue;
        }
        // Spill whichever of this interval and the spillable active ones ends last.
        let victim = active
            .iter()
            .enumerate()
            .filter(|(_, &(_, av, ar))| !is_temp(av) && free_of_fixed(ar, (s, e)))
            .max_by_key(|(_, &(end, _, _))| end)
            .map(|(i, &a)| (i, a));
        match victim {
            Some((i, (end, av, ar))) if is_temp(v) || end > e => {
                active.remove(i);
                assigned[av as usize] = None;
                to_spill.push(av);
                assigned[v as usize] = Some(ar);
                active.push((e, v, ar));
                continue;
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
        out_blocks.push(super::vcode::VBlockData { insts: out });
    }
    vc.blocks = out_blocks;
}
