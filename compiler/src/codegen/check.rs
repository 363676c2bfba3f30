//! The allocation checker: runs the allocated VCode symbolically and proves that every
//! use reads the value its definition wrote. Each register and spill slot holds the
//! identity of a virtual register (or "something fixed" for ABI registers); calls wipe
//! r0–r5; at every edge, each value live into the successor must sit where the
//! allocation says. A failure is an internal error, never emitted code.

use std::collections::HashMap;

use super::regalloc::{liveness, Allocation, Loc};
use super::vcode::{Reg, Role, VCode, VInst};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Place {
    Reg(u8),
    Spill(u32),
}

const FIXED: u32 = u32::MAX;

pub fn check(vc: &VCode, alloc: &Allocation) -> Result<(), String> {
    let live_in = liveness(vc);
    let n = vc.blocks.len();
    // Spill slots keep their contents across blocks: a forward dataflow of what each
    // slot holds on every path (registers are re-established from live-in sets).
    let mut entry: Vec<Option<HashMap<u32, u32>>> = vec![None; n];
    if n > 0 {
        entry[0] = Some(HashMap::new());
    }
    // A worklist in reverse postorder: a block is run again only when what reaches it
    // changed, so chains whose blocks are numbered against the flow (a rule's test
    // blocks after the block that follows it) converge in a pass or two, not one pass
    // per chain (1,000 rules took seconds).
    let order = reverse_postorder(vc, n);
    let mut rank = vec![usize::MAX; n];
    for (i, &b) in order.iter().enumerate() {
        rank[b] = i;
    }
    let mut work: std::collections::BTreeSet<(usize, usize)> =
        order.first().map(|&b| (0, b)).into_iter().collect();
    while let Some((_, b)) = work.pop_first() {
        let Some(spills) = entry[b].clone() else {
            continue;
        };
        let (exit, _) = run_block(vc, alloc, &live_in, b, &spills);
        for s in vc.succs(b) {
            let s = s.0 as usize;
            let Some(slot) = entry.get_mut(s) else {
                continue;
            };
            let met: HashMap<u32, u32> = match slot {
                None => exit.clone(),
                Some(old) => old
                    .iter()
                    .filter(|(k, v)| exit.get(k) == Some(v))
                    .map(|(k, v)| (*k, *v))
                    .collect(),
            };
            if slot.as_ref() != Some(&met) {
                *slot = Some(met);
                work.insert((rank.get(s).copied().unwrap_or(usize::MAX), s));
            }
        }
    }
    for (b, spills) in entry.iter().enumerate() {
        let spills = spills.clone().unwrap_or_default();
        if let (_, Some(e)) = run_block(vc, alloc, &live_in, b, &spills) {
            return Err(e);
        }
    }
    Ok(())
}

/// The blocks reachable from the entry, in reverse postorder.
fn reverse_postorder(vc: &VCode, n: usize) -> Vec<usize> {
    let mut seen = vec![false; n];
    let mut post = Vec::with_capacity(n);
    // (block, successors not yet visited)
    let mut stack: Vec<(usize, Vec<usize>)> = Vec::new();
    if n > 0 {
        seen[0] = true;
        stack.push((0, vc.succs(0).iter().map(|s| s.0 as usize).collect()));
    }
    while let Some((b, rest)) = stack.last_mut() {
        match rest.pop() {
            Some(s) if s < n && !seen[s] => {
                seen[s] = true;
                let succs = vc.succs(s).iter().map(|x| x.0 as usize).collect();
                stack.push((s, succs));
            }
            Some(_) => {}
            None => {
                post.push(*b);
                stack.pop();
            }
        }
    }
    post.reverse();
    post
}

/// Runs block `b`; returns what each spill slot holds at its end, and the first error.
fn run_block(
    vc: &VCode,
    alloc: &Allocation,
    live_in: &[std::collections::BTreeSet<u32>],
    b: usize,
    spills: &HashMap<u32, u32>,
) -> (HashMap<u32, u32>, Option<String>) {
    let mut state: HashMap<Place, u32> =
        spills.iter().map(|(&k, &v)| (Place::Spill(k), v)).collect();
    let r = run_block_in(vc, alloc, live_in, b, &mut state);
    let exit = state
        .into_iter()
        .filter_map(|(p, v)| match p {
            Place::Spill(k) => Some((k, v)),
            Place::Reg(_) => None,
        })
        .collect();
    (exit, r.err())
}

fn run_block_in(
    vc: &VCode,
    alloc: &Allocation,
    live_in: &[std::collections::BTreeSet<u32>],
    b: usize,
    state: &mut HashMap<Place, u32>,
) -> Result<(), String> {
    let data = vc.blocks.get(b).ok_or("no block")?;
    let ident = |v: u32| vc.origin.get(v as usize).copied().flatten().unwrap_or(v);
    let place = |r: Reg| -> Result<Place, String> {
        match r {
            Reg::P(p) => Ok(Place::Reg(p)),
            Reg::V(v) => match alloc.get(v as usize).copied().flatten() {
                Some(Loc::Reg(p)) => Ok(Place::Reg(p)),
                Some(Loc::Spill(s)) => Ok(Place::Spill(s)),
                None => Err(format!("%{v} has no location")),
            },
        }
    };
    {
        if b == 0 {
            for k in 1..=vc.nparams {
                state.insert(Place::Reg(k), FIXED);
            }
        }
        for &v in &live_in[b] {
            let p = place(Reg::V(v))?;
            if let Some(&other) = state.get(&p) {
                if other != ident(v) {
                    return Err(format!(
                        "L{b}: %{v} and %{other} both live in {p:?} at entry"
                    ));
                }
            }
            state.insert(p, ident(v));
        }
        for (i, inst) in data.insts.iter().enumerate() {
            let at = || format!("L{b}[{i}] {inst:?}");
            let read = |state: &HashMap<Place, u32>, r: Reg| -> Result<(), String> {
                let p = place(r)?;
                let want = match r {
                    Reg::V(v) => Some(ident(v)),
                    Reg::P(_) => None,
                };
                match (state.get(&p), want) {
                    (Some(&have), Some(w)) if have == w => Ok(()),
                    (Some(_), None) => Ok(()),
                    (have, _) => Err(format!("{}: {r} reads {p:?} holding {have:?}", at())),
                }
            };
            match inst {
                VInst::Spill { slot, src, of } => {
                    read(state, *src)?;
                    if let Reg::V(v) = src {
                        if ident(*v) != *of {
                            return Err(format!("{}: spills the wrong value", at()));
                        }
                    }
                    state.insert(Place::Spill(*slot), *of);
                }
                VInst::Reload { dst, slot, of } => {
                    if state.get(&Place::Spill(*slot)) != Some(of) {
                        return Err(format!("{}: spill slot {slot} does not hold %{of}", at()));
                    }
                    state.insert(place(*dst)?, *of);
                }
                VInst::ParMove { moves, tmp } => {
                    for &(_, s) in moves {
                        read(state, s)?;
                    }
                    state.remove(&place(*tmp)?);
                    let writes: Vec<(Place, u32)> = moves
                        .iter()
                        .map(|&(d, _)| {
                            Ok((place(d)?, if let Reg::V(v) = d { ident(v) } else { FIXED }))
                        })
                        .collect::<Result<_, String>>()?;
                    for (p, v) in writes {
                        state.insert(p, v);
                    }
                }
                _ => {
                    for (r, role) in inst.operands() {
                        if matches!(role, Role::Use | Role::LateUse) {
                            read(state, r)?;
                        }
                    }
                    if inst.is_call() {
                        for k in 0..=5 {
                            state.remove(&Place::Reg(k));
                        }
                    }
                    for (r, role) in inst.operands() {
                        if role == Role::Def {
                            let v = if let Reg::V(v) = r { ident(v) } else { FIXED };
                            state.insert(place(r)?, v);
                        }
                    }
                }
            }
        }
        for s in vc.succs(b) {
            for &v in live_in.get(s.0 as usize).into_iter().flatten() {
                let p = place(Reg::V(v))?;
                if state.get(&p) != Some(&ident(v)) {
                    return Err(format!(
                        "L{b} -> {s}: %{v} is not in {p:?} (holds {:?})",
                        state.get(&p)
                    ));
                }
            }
        }
    }
    Ok(())
}
