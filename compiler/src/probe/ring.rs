//! The event ring buffer that probes (`emit`, `print`), security rules (alerts) and flow
//! events share: its two maps, and the MIR that counts a record the full buffer had no
//! room for, so `pol run` can say how many were lost (never silently).

use crate::mir::{
    helpers, BinOp, Block, BlockCall, Cond, Function, IntTy, MapDef, MapId, MapKind, Module, Op,
    Operand, PtrKind, Slot, Term, Type,
};

/// The ring buffer records go through.
pub const EVENTS_MAP: &str = "pol_events";
/// The per-CPU count of records the full ring buffer had no room for.
pub const LOST_MAP: &str = "pol_lost";
/// Ring buffer size: 256 KiB (a power of two of pages, as the kernel requires).
pub const RING_BYTES: u32 = 256 * 1024;

/// The two maps of a module's ring buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ring {
    pub ring: MapId,
    pub lost: MapId,
}

/// Adds the ring buffer ([`EVENTS_MAP`]) and its lost counter ([`LOST_MAP`]) to `m`.
pub fn add_maps(m: &mut Module) -> Ring {
    let ring = m.add_map(MapDef {
        name: EVENTS_MAP.into(),
        kind: MapKind::RingBuf,
        key_size: 0,
        value_size: 0,
        max_entries: RING_BYTES,
        flags: 0,
    });
    let lost = m.add_map(MapDef {
        name: LOST_MAP.into(),
        kind: MapKind::PercpuArray,
        key_size: 4,
        value_size: 8,
        max_entries: 1,
        flags: 0,
    });
    Ring { ring, lost }
}

/// Ends block `full` (reached when a reserve or output found no room) by adding one to
/// this CPU's lost counter, then jumping to `join`. `key` is the function's stack slot
/// for the counter's key: made on first use and shared by every call site, so a
/// function with many outputs keeps one 4-byte slot.
pub fn count_lost(f: &mut Function, full: Block, lost: MapId, key: &mut Option<Slot>, join: Block) {
    let slot = *key.get_or_insert_with(|| f.add_slot(4, 4));
    let kp = f.push(full, Op::SlotAddr(slot), Type::Ptr(PtrKind::Stack));
    f.push_void(
        full,
        Op::Store {
            ty: IntTy::U32,
            ptr: kp,
            off: 0,
            val: Operand::Imm(0),
        },
    );
    let lref = f.push(full, Op::MapRef(lost), Type::Ptr(PtrKind::Map(lost)));
    let lookup = helpers::by_name("map_lookup_elem").map_or(0, |h| h.id);
    let c = f.push(
        full,
        Op::Call(lookup, vec![lref, kp]),
        Type::Ptr(PtrKind::MapValueOrNull(lost)),
    );
    let bump = f.add_block();
    f.set_term(
        full,
        Term::Br {
            cond: Cond::Eq,
            a: c,
            b: Operand::Imm(0),
            then: BlockCall::new(join, vec![]),
            els: BlockCall::new(bump, vec![]),
        },
    );
    let old = f.push(bump, Op::Load { ptr: c, off: 0 }, Type::U64);
    let new = f.push(
        bump,
        Op::Binary(BinOp::Add, old, Operand::Imm(1)),
        Type::U64,
    );
    f.push_void(
        bump,
        Op::Store {
            ty: IntTy::U64,
            ptr: c,
            off: 0,
            val: new.into(),
        },
    );
    f.set_term(bump, Term::Jump(BlockCall::new(join, vec![])));
}
