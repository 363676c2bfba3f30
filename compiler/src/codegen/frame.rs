//! Frame layout: MIR stack slots (largest alignment first), then 8-byte spill slots, then
//! the scratch slot block-parameter moves use to break cycles. Offsets are below `r10`.

use crate::mir::Function;

use super::vcode::{FrameRef, VCode, VInst};

/// The kernel's per-function and per-call-chain stack limit.
pub const MAX_STACK: u32 = 512;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Distance below `r10` of each MIR slot's first byte.
    pub slot_off: Vec<u32>,
    pub spill_off: Vec<u32>,
    pub scratch_off: Option<u32>,
    /// Bytes of MIR slots, spills and scratch (with padding): the frame's size.
    pub size: u32,
    pub slot_bytes: u32,
    pub spill_bytes: u32,
}

fn round_up(n: u32, a: u32) -> u32 {
    n.div_ceil(a.max(1)) * a.max(1)
}

pub fn layout(f: &Function, vc: &VCode) -> Frame {
    let mut order: Vec<usize> = (0..f.slots.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(f.slots[i].align));
    let mut slot_off = vec![0; f.slots.len()];
    let mut cur = 0u32;
    for i in order {
        let s = f.slots[i];
        cur = round_up(cur.saturating_add(s.size), s.align);
        slot_off[i] = cur;
    }
    let slot_bytes = cur;
    cur = round_up(cur, 8);
    let mut spill_off = Vec::with_capacity(vc.spills as usize);
    for _ in 0..vc.spills {
        cur += 8;
        spill_off.push(cur);
    }
    let needs_scratch = vc
        .blocks
        .iter()
        .flat_map(|b| &b.insts)
        .any(|i| matches!(i, VInst::ParMove { moves, .. } if moves.len() > 1));
    let scratch_off = needs_scratch.then(|| {
        cur += 8;
        cur
    });
    Frame {
        slot_off,
        spill_off,
        scratch_off,
        size: cur,
        slot_bytes,
        spill_bytes: 8 * vc.spills,
    }
}

impl Frame {
    /// The offset from `r10` (negative) of a frame place.
    pub fn offset(&self, at: FrameRef) -> Option<i64> {
        match at {
            FrameRef::Slot(s, k) => self
                .slot_off
                .get(s.index())
                .map(|&o| i64::from(k) - i64::from(o)),
            FrameRef::Spill(n) => self.spill_off.get(n as usize).map(|&o| -i64::from(o)),
            FrameRef::Scratch => self.scratch_off.map(|o| -i64::from(o)),
        }
    }
}
