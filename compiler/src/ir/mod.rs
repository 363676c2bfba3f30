//! The rule IR: per filter, a control-flow graph of first-match tests over the packet
//! record, which `to_mir` lowers onto MIR (its pseudo-ops become MIR sequences there).
//!
//! Plain data with `u32` ids. Virtual registers are local to the block that defines them
//! (the only values that cross blocks are the packet record on the stack and the layer
//! flags). Blocks never form a loop. Both invariants are checked by `cfg::verify` before
//! the lowering onto MIR.

pub mod cfg;
pub mod groups;
pub mod lower;
pub mod to_mir;

use serde::Serialize;

/// Source ids of code that comes from no rule (rule indices are the others): for
/// listings (`pol disasm`) and per-rule limits.
pub const SRC_PARSER: u32 = u32::MAX - 2;
/// The shared tail of every action: count the decision, return the verdict.
pub const SRC_DECIDE: u32 = u32::MAX - 4;
pub const SRC_DEFAULT: u32 = u32::MAX - 1;
pub const SRC_MALFORMED: u32 = u32::MAX;
use std::fmt::{self, Write as _};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct VReg(pub u32);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct BlockId(pub u32);

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Inst {
    /// `dst = *(uN *)(record + off)`, zero-extended.
    LoadRecord { dst: VReg, off: i16, size: u8 },
    /// `dst = src & imm`
    AndImm { dst: VReg, src: VReg, imm: u32 },
    /// `dst = map_lookup_elem(map, record + key_off)`: a pointer, or 0 when absent.
    Lookup {
        dst: VReg,
        map: String,
        key_off: i16,
    },
    /// Adds one to `map[key]`; the key is at `record + key_off`, or the array index 0.
    Count { map: String, key_off: Option<i16> },
    /// Adds one to `map[key]` for a segment holding a request the HTTP pass read; the key
    /// is its method (a record byte), or its path or host where the pass copied them in
    /// its buffer map `buf` (`l7::http::CountKey`).
    L7Count {
        map: String,
        key: crate::l7::http::CountKey,
        buf: String,
    },
    /// Adds one to slot `index` of a per-CPU array (the program's decision statistics).
    Stat { map: String, index: u32 },
    /// Adds one to the statistics slot of the best rule found by the rule maps.
    StatBest { map: String },
    /// Starts the search for the first matching rule among the rule maps.
    InitBest { rule: u32, action: u32 },
    /// Looks the key at `record + key_off` up in a rule map; a hit with a smaller rule
    /// index than the best so far becomes the best.
    GroupLookup { map: String, key_off: i16 },
    /// `dst` = the best rule index (`action: false`) or its action id (`action: true`).
    LoadBest { dst: VReg, action: bool },
    /// Runs the filter's classifier (`classify::datapath`, maps and functions named by
    /// `datapath::Names::of_filter(filter)`) on the packet; a first match with a smaller
    /// rule index than the best so far becomes the best. `head`: the entries
    /// (`classify::maps` layout) of the rules its code tests ahead of the tables.
    Classify { filter: String, head: Vec<Vec<u8>> },
    /// `dst` = 1 when the packet is over the rate of `map` (a GCRA bucket per key, see
    /// `hir::state::RateDef`), else 0 after taking its token. The key is the record
    /// bytes `keys` (offset, length) in order; none: the one slot of an array (`rate()`).
    Rate {
        dst: VReg,
        map: String,
        keys: Vec<(i16, u8)>,
        interval_ns: u64,
        tolerance_ns: u64,
    },
    /// Tracks the packet's connection in `map` (`to_mir::state`) and keeps the result
    /// (`hir::state::CT_*` bits) for `Ct`: the first instruction of a filter of a file
    /// with connection tracking.
    CtTrack {
        map: String,
        config: crate::hir::state::CtConfig,
    },
    /// `dst` = the packet's tracking result.
    Ct { dst: VReg },
    /// Reads the segment's HTTP request line into the record's L7 window
    /// (`crate::l7::http::lower_pass`): the first instruction of a filter that tests HTTP.
    Http(Box<crate::l7::http::Pass>),
    /// Sends a flow event (`hir::state::flow_event`) for the decision of rule `rule` of
    /// filter `filter` (`None`: the best rule the rule maps found), unless over the flow
    /// event rate (then counts it as suppressed).
    Log {
        filter: u16,
        rule: Option<u32>,
        hook: u8,
        verdict: u8,
        ct: bool,
        /// The file's events limit: ns between two, and the burst.
        interval_ns: u64,
        burst: u64,
    },
    /// `dst` = the integer of `size` bytes at `off` of the filter's L7 scratch value
    /// (`l7::dns::S_*`, left by the L7 stage that runs before the rules).
    L7Load {
        dst: VReg,
        scratch: String,
        off: i16,
        size: u8,
    },
    /// `dst` = 1 when the scratch value's byte at `status` is 1 and the key the L7 stage
    /// left in `scratch` is in the LPM trie `map`.
    L7Lookup {
        dst: VReg,
        scratch: String,
        map: String,
        status: i16,
    },
}

/// Unsigned comparisons; `Set` is "any bit of the mask is set".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum BrOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Set,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Term {
    Jump(BlockId),
    /// `if lhs OP imm goto t else f`, compared on 32 bits (`wide` for 64).
    Branch {
        op: BrOp,
        wide: bool,
        lhs: VReg,
        imm: u32,
        t: BlockId,
        f: BlockId,
    },
    /// `if flags & mask goto t else f`, over the record's layer flags.
    Flags {
        mask: u32,
        t: BlockId,
        f: BlockId,
    },
    /// Ends the program with this return code.
    Return(u32),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Block {
    pub insts: Vec<Inst>,
    pub term: Term,
    /// The rule this block was lowered from (for listings); `None` for default/malformed.
    pub rule: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Function {
    pub name: String,
    /// Blocks in layout order; `entry` is where rules start after the packet parser.
    pub blocks: Vec<Block>,
    pub entry: BlockId,
    /// Where the packet parser goes for a truncated or inconsistent packet.
    pub malformed: BlockId,
    pub vregs: u32,
}

impl Term {
    pub fn successors(&self) -> Vec<BlockId> {
        match self {
            Term::Jump(b) => vec![*b],
            Term::Branch { t, f, .. } | Term::Flags { t, f, .. } => vec![*t, *f],
            Term::Return(_) => vec![],
        }
    }
}

impl Inst {
    pub fn def(&self) -> Option<VReg> {
        match self {
            Inst::LoadRecord { dst, .. }
            | Inst::AndImm { dst, .. }
            | Inst::Lookup { dst, .. }
            | Inst::LoadBest { dst, .. }
            | Inst::Rate { dst, .. }
            | Inst::L7Load { dst, .. }
            | Inst::L7Lookup { dst, .. }
            | Inst::Ct { dst } => Some(*dst),
            Inst::Count { .. }
            | Inst::L7Count { .. }
            | Inst::Stat { .. }
            | Inst::StatBest { .. }
            | Inst::InitBest { .. }
            | Inst::GroupLookup { .. }
            | Inst::Classify { .. }
            | Inst::CtTrack { .. }
            | Inst::Http(_)
            | Inst::Log { .. } => None,
        }
    }

    pub fn uses(&self) -> Vec<VReg> {
        match self {
            Inst::AndImm { src, .. } => vec![*src],
            _ => vec![],
        }
    }
}

impl fmt::Display for VReg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}", self.0)
    }
}

impl fmt::Display for BlockId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "b{}", self.0)
    }
}

impl fmt::Display for Function {
    /// The text form used by golden files.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "fn {} entry={} malformed={}",
            self.name, self.entry, self.malformed
        );
        for (i, b) in self.blocks.iter().enumerate() {
            let rule = b.rule.map(|r| format!("  ; rule {r}")).unwrap_or_default();
            let _ = writeln!(s, "b{i}:{rule}");
            for inst in &b.insts {
                let _ = match inst {
                    Inst::LoadRecord { dst, off, size } => {
                        writeln!(s, "  {dst} = load.u{} rec+{off}", size * 8)
                    }
                    Inst::AndImm { dst, src, imm } => writeln!(s, "  {dst} = and {src}, {imm:#x}"),
                    Inst::Lookup { dst, map, key_off } => {
                        writeln!(s, "  {dst} = lookup {map}, rec+{key_off}")
                    }
                    Inst::Count {
                        map,
                        key_off: Some(k),
                    } => writeln!(s, "  count {map}[rec+{k}]"),
                    Inst::Count { map, key_off: None } => writeln!(s, "  count {map}"),
                    Inst::L7Count { map, key, .. } => {
                        writeln!(s, "  count {map}[{}]", key.name())
                    }
                    Inst::Stat { map, index } => writeln!(s, "  stat {map}[{index}]"),
                    Inst::StatBest { map } => writeln!(s, "  stat {map}[best.rule]"),
                    Inst::InitBest { rule, action } => {
                        writeln!(s, "  best = rule {rule}, action {action}")
                    }
                    Inst::GroupLookup { map, key_off } => {
                        writeln!(s, "  best = min(best, {map}[rec+{key_off}])")
                    }
                    Inst::LoadBest { dst, action: false } => writeln!(s, "  {dst} = best.rule"),
                    Inst::LoadBest { dst, action: true } => writeln!(s, "  {dst} = best.action"),
                    Inst::Classify { filter, head } if head.is_empty() => {
                        writeln!(s, "  best = min(best, classify {filter})")
                    }
                    Inst::Classify { filter, head } => writeln!(
                        s,
                        "  best = min(best, classify {filter} (head of {} rules))",
                        head.len()
                    ),
                    Inst::CtTrack { map, config } => writeln!(
                        s,
                        "  ct = track {map} (size {}, full {})",
                        config.size,
                        if config.open { "open" } else { "closed" }
                    ),
                    Inst::Ct { dst } => writeln!(s, "  {dst} = ct"),
                    Inst::Http(p) => match &p.paths {
                        Some(m) => writeln!(s, "  http request line ({}, paths {m})", p.buf),
                        None => writeln!(s, "  http request line ({})", p.buf),
                    },
                    Inst::L7Load {
                        dst,
                        scratch,
                        off,
                        size,
                    } => writeln!(s, "  {dst} = load.u{} {scratch}+{off}", size * 8),
                    Inst::L7Lookup {
                        dst,
                        scratch,
                        map,
                        status,
                    } => writeln!(
                        s,
                        "  {dst} = lookup {map}, {scratch}.key if {scratch}+{status}"
                    ),
                    Inst::Log {
                        filter,
                        rule,
                        verdict,
                        ..
                    } => match rule {
                        Some(r) => writeln!(s, "  log filter {filter} rule {r} verdict {verdict}"),
                        None => writeln!(s, "  log filter {filter} rule best verdict {verdict}"),
                    },
                    Inst::Rate {
                        dst,
                        map,
                        keys,
                        interval_ns,
                        tolerance_ns,
                    } => {
                        let keys: Vec<String> =
                            keys.iter().map(|(o, n)| format!("rec+{o}:{n}")).collect();
                        writeln!(
                            s,
                            "  {dst} = rate {map}[{}] every {interval_ns}ns, tolerance {tolerance_ns}ns",
                            keys.join(", ")
                        )
                    }
                };
            }
            let _ = match &b.term {
                Term::Jump(t) => writeln!(s, "  jump {t}"),
                Term::Branch {
                    op,
                    wide,
                    lhs,
                    imm,
                    t,
                    f,
                } => {
                    let w = if *wide { "64" } else { "32" };
                    writeln!(s, "  br.{w} {lhs} {op:?} {imm:#x} ? {t} : {f}")
                }
                Term::Flags { mask, t, f } => writeln!(s, "  br flags & {mask:#x} ? {t} : {f}"),
                Term::Return(r) => writeln!(s, "  return {r}"),
            };
        }
        f.write_str(&s)
    }
}
