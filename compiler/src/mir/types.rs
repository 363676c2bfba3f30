//! Value types of the MIR: integers with width and signedness, and pointer kinds.

use std::fmt;

use super::entities::{FuncId, MapId};

/// An integer type: 8, 16, 32 or 64 bits, signed or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IntTy {
    pub bits: u8,
    pub signed: bool,
}

impl IntTy {
    pub const U8: IntTy = IntTy::new(8, false);
    pub const U16: IntTy = IntTy::new(16, false);
    pub const U32: IntTy = IntTy::new(32, false);
    pub const U64: IntTy = IntTy::new(64, false);
    pub const I32: IntTy = IntTy::new(32, true);
    pub const I64: IntTy = IntTy::new(64, true);

    pub const fn new(bits: u8, signed: bool) -> Self {
        IntTy { bits, signed }
    }

    pub fn bytes(self) -> u32 {
        u32::from(self.bits) / 8
    }

    /// ALU operations and compares exist on 32 and 64 bits only; 8- and 16-bit values
    /// come from loads and are widened with `zext`/`sext` first.
    pub fn is_alu(self) -> bool {
        self.bits == 32 || self.bits == 64
    }

    /// Whether `imm` is a value of this type (for unsigned 64-bit types, any bit pattern).
    pub fn holds(self, imm: i64) -> bool {
        match (self.bits, self.signed) {
            (64, _) => true,
            (b, true) => {
                let half = 1i64 << (b - 1);
                (-half..half).contains(&imm)
            }
            // Unsigned types also take the negative spelling of their top half (`-1` for
            // `u32::MAX`), as the bit pattern is what the instruction sees.
            (b, false) => {
                let top = 1i64 << b;
                (-(top / 2)..top).contains(&imm)
            }
        }
    }

    /// The largest value of this type, as an unsigned 64-bit number.
    pub fn umax(self) -> u64 {
        match self.bits {
            64 => u64::MAX,
            b => (1u64 << b) - 1,
        }
    }

    pub fn parse(s: &str) -> Option<IntTy> {
        let (signed, rest) = match s.as_bytes().first()? {
            b'i' => (true, s.get(1..)?),
            b'u' => (false, s.get(1..)?),
            _ => return None,
        };
        let bits = match rest {
            "8" => 8,
            "16" => 16,
            "32" => 32,
            "64" => 64,
            _ => return None,
        };
        Some(IntTy::new(bits, signed))
    }
}

impl fmt::Display for IntTy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", if self.signed { 'i' } else { 'u' }, self.bits)
    }
}

/// What a pointer points at. The kernel verifier tracks the same distinctions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PtrKind {
    /// The program's context (`struct xdp_md *`, tracepoint record, `pt_regs *`, ...).
    Ctx,
    /// Into this function's stack frame (derived from a slot address).
    Stack,
    /// A parameter pointing at `n` bytes of a caller's stack (e.g. bpf_loop's context).
    StackArg(u32),
    /// Packet data (`ctx->data` plus offsets); accessible only below a checked bound.
    Packet,
    /// `ctx->data_end`.
    PacketEnd,
    /// A value of the map, non-null.
    MapValue(MapId),
    /// A `map_lookup_elem` result: null-check it before use.
    MapValueOrNull(MapId),
    /// The map itself, as helpers take it.
    Map(MapId),
    /// `n` bytes of helper-provided memory (a ring buffer record), non-null.
    Mem(u32),
    /// A `ringbuf_reserve` result: null-check it before use.
    MemOrNull(u32),
    /// A function, as `bpf_loop` takes its callback.
    Func(FuncId),
}

impl PtrKind {
    /// Nullable kinds must be compared with 0 before any other use.
    pub fn is_nullable(self) -> bool {
        matches!(self, PtrKind::MapValueOrNull(_) | PtrKind::MemOrNull(_))
    }

    /// The non-null kind a null check turns this into.
    pub fn non_null(self) -> PtrKind {
        match self {
            PtrKind::MapValueOrNull(m) => PtrKind::MapValue(m),
            PtrKind::MemOrNull(n) => PtrKind::Mem(n),
            k => k,
        }
    }
}

/// The type of an SSA value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Type {
    Int(IntTy),
    Ptr(PtrKind),
}

impl Type {
    pub const U32: Type = Type::Int(IntTy::U32);
    pub const U64: Type = Type::Int(IntTy::U64);
    pub const I64: Type = Type::Int(IntTy::I64);

    pub fn int(self) -> Option<IntTy> {
        match self {
            Type::Int(i) => Some(i),
            Type::Ptr(_) => None,
        }
    }

    pub fn ptr(self) -> Option<PtrKind> {
        match self {
            Type::Ptr(p) => Some(p),
            Type::Int(_) => None,
        }
    }

    /// Registers are 64-bit; values of up to 32 bits use 32-bit ALU and jumps.
    pub fn is_32(self) -> bool {
        matches!(self, Type::Int(i) if i.bits <= 32)
    }
}

/// A binary ALU operation. `div`, `mod` and `shr` follow the signedness of the type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    And,
    Or,
    Xor,
    Shl,
    /// Logical shift right.
    Lshr,
    /// Arithmetic shift right.
    Ashr,
}

impl BinOp {
    pub const ALL: [BinOp; 11] = [
        BinOp::Add,
        BinOp::Sub,
        BinOp::Mul,
        BinOp::Div,
        BinOp::Mod,
        BinOp::And,
        BinOp::Or,
        BinOp::Xor,
        BinOp::Shl,
        BinOp::Lshr,
        BinOp::Ashr,
    ];

    pub fn name(self) -> &'static str {
        match self {
            BinOp::Add => "add",
            BinOp::Sub => "sub",
            BinOp::Mul => "mul",
            BinOp::Div => "div",
            BinOp::Mod => "mod",
            BinOp::And => "and",
            BinOp::Or => "or",
            BinOp::Xor => "xor",
            BinOp::Shl => "shl",
            BinOp::Lshr => "lshr",
            BinOp::Ashr => "ashr",
        }
    }

    pub fn is_shift(self) -> bool {
        matches!(self, BinOp::Shl | BinOp::Lshr | BinOp::Ashr)
    }
}

/// Integer widening and narrowing; the result type says to what.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExtOp {
    Zext,
    Sext,
    Trunc,
}

impl ExtOp {
    pub fn name(self) -> &'static str {
        match self {
            ExtOp::Zext => "zext",
            ExtOp::Sext => "sext",
            ExtOp::Trunc => "trunc",
        }
    }
}

/// A branch condition. Signed and unsigned orders are explicit, as in eBPF's jumps; the
/// width (32 or 64 bits) follows the compared type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Cond {
    Eq,
    Ne,
    Ugt,
    Uge,
    Ult,
    Ule,
    Sgt,
    Sge,
    Slt,
    Sle,
}

impl Cond {
    pub const ALL: [Cond; 10] = [
        Cond::Eq,
        Cond::Ne,
        Cond::Ugt,
        Cond::Uge,
        Cond::Ult,
        Cond::Ule,
        Cond::Sgt,
        Cond::Sge,
        Cond::Slt,
        Cond::Sle,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Cond::Eq => "eq",
            Cond::Ne => "ne",
            Cond::Ugt => "ugt",
            Cond::Uge => "uge",
            Cond::Ult => "ult",
            Cond::Ule => "ule",
            Cond::Sgt => "sgt",
            Cond::Sge => "sge",
            Cond::Slt => "slt",
            Cond::Sle => "sle",
        }
    }

    /// The condition that holds exactly when this one does not.
    pub fn negate(self) -> Cond {
        match self {
            Cond::Eq => Cond::Ne,
            Cond::Ne => Cond::Eq,
            Cond::Ugt => Cond::Ule,
            Cond::Uge => Cond::Ult,
            Cond::Ult => Cond::Uge,
            Cond::Ule => Cond::Ugt,
            Cond::Sgt => Cond::Sle,
            Cond::Sge => Cond::Slt,
            Cond::Slt => Cond::Sge,
            Cond::Sle => Cond::Sgt,
        }
    }

    pub fn is_signed(self) -> bool {
        matches!(self, Cond::Sgt | Cond::Sge | Cond::Slt | Cond::Sle)
    }
}

/// Where a function is attached; `None` on a function makes it a subprogram.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Hook {
    Xdp,
    Tc,
    /// `tracepoint/CATEGORY/NAME`.
    Tracepoint {
        category: String,
        name: String,
    },
    /// `raw_tp/NAME`.
    RawTp(String),
    /// `tp_btf/NAME` (BTF-typed raw tracepoint).
    TpBtf(String),
    /// `uprobe/...`; the target is resolved at attach time.
    Uprobe(String),
    /// `uretprobe/...`: the same context (`struct pt_regs`), run when the function returns.
    Uretprobe(String),
    PerfEvent,
    /// `cgroup/NAME` (`connect4`, `connect6`, `bind4`, `bind6`): a cgroup sock_addr hook,
    /// whose context is `struct bpf_sock_addr` and whose 0 refuses the call (EPERM).
    CgroupSockAddr(String),
}

/// The program types helpers are allowed in, as a bit set over [`HookKind`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HookKind {
    Xdp,
    Tc,
    Tracepoint,
    RawTp,
    TpBtf,
    Uprobe,
    PerfEvent,
    CgroupSockAddr,
}

impl HookKind {
    pub fn bit(self) -> u8 {
        1 << (self as u8)
    }

    pub fn is_tracing(self) -> bool {
        !matches!(
            self,
            HookKind::Xdp | HookKind::Tc | HookKind::CgroupSockAddr
        )
    }
}

impl Hook {
    pub fn kind(&self) -> HookKind {
        match self {
            Hook::Xdp => HookKind::Xdp,
            Hook::Tc => HookKind::Tc,
            Hook::Tracepoint { .. } => HookKind::Tracepoint,
            Hook::RawTp(_) => HookKind::RawTp,
            Hook::TpBtf(_) => HookKind::TpBtf,
            Hook::Uprobe(_) | Hook::Uretprobe(_) => HookKind::Uprobe,
            Hook::PerfEvent => HookKind::PerfEvent,
            Hook::CgroupSockAddr(_) => HookKind::CgroupSockAddr,
        }
    }

    /// The ELF section name libbpf and aya both type correctly (shared/notes/elf-btf.md §4).
    pub fn section(&self) -> String {
        match self {
            Hook::Xdp => "xdp".into(),
            Hook::Tc => "classifier".into(),
            Hook::Tracepoint { category, name } => format!("tracepoint/{category}/{name}"),
            Hook::RawTp(n) => format!("raw_tp/{n}"),
            Hook::TpBtf(n) => format!("tp_btf/{n}"),
            Hook::Uprobe(t) if t.is_empty() => "uprobe".into(),
            Hook::Uprobe(t) => format!("uprobe/{t}"),
            Hook::Uretprobe(t) if t.is_empty() => "uretprobe".into(),
            Hook::Uretprobe(t) => format!("uretprobe/{t}"),
            Hook::PerfEvent => "perf_event".into(),
            Hook::CgroupSockAddr(n) => format!("cgroup/{n}"),
        }
    }

    /// Constant return values the kernel accepts from this hook, if it restricts them.
    pub fn return_range(&self) -> Option<(i64, i64)> {
        match self {
            // XDP_ABORTED ..= XDP_REDIRECT.
            Hook::Xdp => Some((0, 4)),
            // TC_ACT_UNSPEC ..= TC_ACT_TRAP.
            Hook::Tc => Some((-1, 8)),
            // 1 allows the call, 0 refuses it (bind's 2 and 3 are not used).
            Hook::CgroupSockAddr(_) => Some((0, 1)),
            _ => None,
        }
    }
}

/// What a load from the context at `off` of `bytes` yields for this hook, or `None` if
/// the kernel refuses that access. Layouts: `struct xdp_md`, `struct __sk_buff`, the
/// tracepoint record (checked by the kernel against the format's size only), raw
/// tracepoint and tp_btf argument arrays, `struct pt_regs`, `struct bpf_perf_event_data`.
pub fn ctx_load(kind: HookKind, off: i64, bytes: u32) -> Option<CtxField> {
    if off < 0 || bytes == 0 || off % i64::from(bytes) != 0 {
        return None;
    }
    match kind {
        HookKind::Xdp => match (off, bytes) {
            (0, 4) => Some(CtxField::Ptr(PtrKind::Packet)),
            (4, 4) => Some(CtxField::Ptr(PtrKind::PacketEnd)),
            (12 | 16 | 20, 4) => Some(CtxField::Int),
            _ => None,
        },
        HookKind::Tc => match (off, bytes) {
            (76, 4) => Some(CtxField::Ptr(PtrKind::Packet)),
            (80, 4) => Some(CtxField::Ptr(PtrKind::PacketEnd)),
            // `gso_size` (176): a GSO packet's IP length may read 0 (BIG TCP).
            (0..=72 | 176, 4) => Some(CtxField::Int),
            _ => None,
        },
        // PERF_MAX_TRACE_SIZE; the kernel checks nothing finer.
        HookKind::Tracepoint => (off + i64::from(bytes) <= 2048).then_some(CtxField::Int),
        // Up to MAX_BPF_FUNC_ARGS (12) u64 arguments.
        HookKind::RawTp | HookKind::TpBtf => (bytes == 8 && off + 8 <= 96).then_some(CtxField::Int),
        // struct pt_regs on x86_64: 21 u64; perf_event adds sample_period and addr.
        HookKind::Uprobe => (bytes == 8 && off + 8 <= 168).then_some(CtxField::Int),
        HookKind::PerfEvent => (bytes == 8 && off + 8 <= 184).then_some(CtxField::Int),
        // struct bpf_sock_addr: user_family, user_ip4, user_ip6[4], user_port, family,
        // type, protocol, msg_src_ip4, msg_src_ip6[4], as u32 words (the kernel refuses
        // user_ip4 to v6 hooks and user_ip6 to v4 hooks at load).
        HookKind::CgroupSockAddr => (bytes == 4 && off + 4 <= 60).then_some(CtxField::Int),
    }
}

/// The result of a context load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CtxField {
    /// A scalar of the loaded width.
    Int,
    /// A pointer the kernel converts the field into.
    Ptr(PtrKind),
}

/// The kinds of maps the back end declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MapKind {
    Hash,
    PercpuHash,
    Array,
    PercpuArray,
    LruHash,
    LpmTrie,
    RingBuf,
    /// Stack traces by id, filled by `get_stackid`: key 4 bytes, value 8 per frame.
    StackTrace,
}

impl MapKind {
    pub const ALL: [MapKind; 8] = [
        MapKind::Hash,
        MapKind::PercpuHash,
        MapKind::Array,
        MapKind::PercpuArray,
        MapKind::LruHash,
        MapKind::LpmTrie,
        MapKind::RingBuf,
        MapKind::StackTrace,
    ];

    pub fn name(self) -> &'static str {
        match self {
            MapKind::Hash => "hash",
            MapKind::PercpuHash => "percpu_hash",
            MapKind::Array => "array",
            MapKind::PercpuArray => "percpu_array",
            MapKind::LruHash => "lru_hash",
            MapKind::LpmTrie => "lpm_trie",
            MapKind::RingBuf => "ringbuf",
            MapKind::StackTrace => "stack_trace",
        }
    }
}
