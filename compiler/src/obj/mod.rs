//! ELF object, BTF and layout.json output: the last stage, from instructions to bytes.
//!
//! The object follows `shared/notes/elf-btf.md`, the tested checklist of what libbpf 1.1,
//! iproute2 and aya 0.13 accept: one `ALLOC|EXECINSTR` section per program section name
//! (programs sharing a name are laid out one after the other, each with its own `STT_FUNC`
//! symbol), subprograms in `.text`, `.rel<section>` with `R_BPF_64_64` against each map's
//! own `STT_OBJECT` symbol, `license`, `.maps`, BTF-defined maps and functions in `.BTF`,
//! func_info in `.BTF.ext`. One writer (`module.rs`) writes every object. Everything a
//! loader would reject is rejected here first, as an [`ObjError`]. Nothing here does IO.

pub mod btf;
mod layout;
mod module;
mod validate;

pub use btf::{btf_section, dump as dump_btf, BtfParam};
pub use layout::{
    map_layout, AggFunction, AggregationLayout, EventsLayout, FieldLayout, KeyFieldLayout, Layout,
    MapActionLayout, MapLayout, ProbeAttach, ProbeLayout, ProgramLayout, RecordLayout,
    ScheduleLayout, TypeLayout, ValueWordLayout, SCHEMA,
};
pub use module::{write_module, FuncSpec, ModuleSpec};
pub use validate::{is_c_ident, is_known_section};

use serde::Serialize;

use crate::bpf::Insn;

/// Opcode of the first half of `ld_imm64` (`BPF_LD | BPF_IMM | BPF_DW`).
pub const LD_IMM64: u8 = 0x18;
/// `BPF_F_NO_PREALLOC`; the kernel demands it for LPM tries.
pub const BPF_F_NO_PREALLOC: u32 = 1;

/// Everything that goes into one object file and its layout.json.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ObjectSpec {
    pub license: String,
    pub programs: Vec<ProgramSpec>,
    pub maps: Vec<MapSpec>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProgramSpec {
    /// Symbol name, a C identifier, e.g. `edge`.
    pub name: String,
    /// ELF section: `xdp`, `classifier`, `tp/syscalls/sys_enter_openat`, ...
    pub section: String,
    /// Instruction slots; `ld_imm64` occupies two.
    pub insns: Vec<Insn>,
    pub map_relocs: Vec<MapReloc>,
    /// Where the runtime attaches the program (layout.json only).
    pub attach: AttachSpec,
    /// The source rules this program implements (layout.json only).
    pub rules: Vec<RuleInfo>,
    /// The per-CPU array counting how often each rule decided (layout.json only).
    pub stats: Option<StatsInfo>,
    /// Where the code comes from in the source (`.BTF.ext` line_info).
    #[serde(skip)]
    pub lines: Vec<SourceLine>,
}

/// One `.BTF.ext` line_info record: the instructions from slot `insn` on come from source
/// line `line` (1-based), whose text is `text`. `bpftool prog dump xlated` and the
/// verifier's log print that text above the instructions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SourceLine {
    pub insn: usize,
    pub line: u32,
    pub col: u32,
    pub text: String,
}

/// Where a program counts its decisions: `map[rule.index]` for each rule, then one slot for
/// the default and one for malformed packets. Values are per-CPU u64.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatsInfo {
    pub map: String,
    pub default_index: u32,
    pub malformed_index: u32,
}

/// A map reference: the `ld_imm64` at `insn_index` (slot of its first half) loads `map`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MapReloc {
    pub insn_index: usize,
    pub map: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AttachSpec {
    Xdp {
        iface: String,
    },
    Tc {
        iface: String,
        direction: TcDirection,
    },
    Tracepoint {
        category: String,
        name: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TcDirection {
    Ingress,
    Egress,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleInfo {
    pub index: u32,
    pub line: u32,
    pub text: String,
    /// `"pass"` or `"drop"`.
    pub verdict: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MapSpec {
    /// Symbol and BTF VAR name, a C identifier.
    pub name: String,
    pub kind: MapKind,
    /// Ignored for [`MapKind::RingBuf`].
    pub key: BtfTy,
    /// For [`MapKind::RingBuf`]: the record type written to the ring (layout.json only).
    pub value: BtfTy,
    pub max_entries: u32,
    /// `map_flags`; [`BPF_F_NO_PREALLOC`] is added for [`MapKind::LpmTrie`].
    pub flags: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MapKind {
    Hash,
    Array,
    PercpuArray,
    PercpuHash,
    LruHash,
    LpmTrie,
    /// `"ringbuf"` in layout.json, as bpftool spells it.
    #[serde(rename = "ringbuf")]
    RingBuf,
    /// Stack traces by id (`get_stackid`); BTF gives its sizes, not key/value types,
    /// which the kernel refuses for this map type.
    StackTrace,
}

impl MapKind {
    /// `enum bpf_map_type` value.
    pub fn bpf_type(self) -> u32 {
        match self {
            MapKind::Hash => 1,
            MapKind::Array => 2,
            MapKind::PercpuHash => 5,
            MapKind::PercpuArray => 6,
            MapKind::LruHash => 9,
            MapKind::LpmTrie => 11,
            MapKind::RingBuf => 27,
            MapKind::StackTrace => 7,
        }
    }
}

impl MapSpec {
    /// The `map_flags` actually written: LPM tries always get `BPF_F_NO_PREALLOC`.
    pub fn effective_flags(&self) -> u32 {
        match self.kind {
            MapKind::LpmTrie => self.flags | BPF_F_NO_PREALLOC,
            _ => self.flags,
        }
    }

    /// Key and value sizes as the kernel sees them (0 and 0 for a ring buffer).
    pub fn key_value_size(&self) -> (u32, u32) {
        match self.kind {
            MapKind::RingBuf => (0, 0),
            _ => (self.key.size(), self.value.size()),
        }
    }
}

/// A key, value or record type. Struct fields are laid out in order with natural C alignment.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub enum BtfTy {
    U8,
    U16,
    U32,
    U64,
    /// `u8[N]`.
    Bytes(u32),
    Struct {
        name: String,
        fields: Vec<(String, BtfTy)>,
    },
}

impl BtfTy {
    pub fn align(&self) -> u32 {
        match self {
            BtfTy::U8 | BtfTy::Bytes(_) => 1,
            BtfTy::U16 => 2,
            BtfTy::U32 => 4,
            BtfTy::U64 => 8,
            BtfTy::Struct { fields, .. } => {
                fields.iter().map(|(_, t)| t.align()).max().unwrap_or(1)
            }
        }
    }

    pub fn size(&self) -> u32 {
        match self {
            BtfTy::U8 => 1,
            BtfTy::U16 => 2,
            BtfTy::U32 => 4,
            BtfTy::U64 => 8,
            BtfTy::Bytes(n) => *n,
            BtfTy::Struct { .. } => {
                let (end, _) = self.field_offsets();
                round_up(end, self.align())
            }
        }
    }

    /// Byte offset of each struct field and the end of the last one (empty for non-structs).
    pub fn field_offsets(&self) -> (u32, Vec<u32>) {
        let BtfTy::Struct { fields, .. } = self else {
            return (0, Vec::new());
        };
        let mut end = 0;
        let mut offsets = Vec::with_capacity(fields.len());
        for (_, ty) in fields {
            let off = round_up(end, ty.align());
            offsets.push(off);
            end = off + ty.size();
        }
        (end, offsets)
    }
}

fn round_up(n: u32, align: u32) -> u32 {
    n.div_ceil(align) * align
}

/// Why an object could not be written. All of these are bugs in the caller (the code
/// generator), reported before any loader would see them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ObjError {
    #[error("{what} name {name:?} is not a C identifier")]
    BadName { what: &'static str, name: String },
    #[error("duplicate {what} name {name:?}")]
    Duplicate { what: &'static str, name: String },
    #[error("program {program:?}: section {section:?} is not one libbpf and aya both accept")]
    BadSection { program: String, section: String },
    #[error("program {program:?}: section {section:?} does not match its attach point {attach}")]
    AttachMismatch {
        program: String,
        section: String,
        attach: String,
    },
    #[error("program {program:?} has no instructions")]
    EmptyProgram { program: String },
    #[error("program {program:?}: relocation at slot {index} is not an ld_imm64 (0x18) with both slots present")]
    BadRelocSlot { program: String, index: usize },
    #[error("program {program:?}: line info at slot {index} is out of order, out of range or inside an ld_imm64")]
    BadLineInfo { program: String, index: usize },
    #[error("program {program:?}: two relocations at slot {index}")]
    DuplicateReloc { program: String, index: usize },
    #[error("program {program:?}: relocation against unknown map {map:?}")]
    UnknownMap { program: String, map: String },
    #[error("map {map:?}: {reason}")]
    BadMap { map: String, reason: String },
    #[error("license {0:?} contains a NUL byte")]
    BadLicense(String),
    /// An internal error from the ELF writer (a bug here, not in the caller).
    #[error("internal error writing ELF: {0}")]
    Elf(String),
}

/// Writes the ELF object (ELF64 LE, `ET_REL`, `EM_BPF`) for `spec`: checked as a filter
/// object (attach points, sections), then written by the one writer, [`write_module`],
/// each program a function of its section that takes the context and returns its verdict.
pub fn write_object(spec: &ObjectSpec) -> Result<Vec<u8>, ObjError> {
    validate::validate(spec)?;
    let funcs = spec
        .programs
        .iter()
        .map(|p| FuncSpec {
            name: p.name.clone(),
            section: Some(p.section.clone()),
            insns: p.insns.clone(),
            map_relocs: p.map_relocs.clone(),
            calls: Vec::new(),
            func_addrs: Vec::new(),
            params: vec![BtfParam::Ptr],
            ret: BtfParam::Int {
                bytes: 8,
                signed: true,
            },
            global: false,
            lines: p.lines.clone(),
        })
        .collect();
    write_module(&ModuleSpec {
        license: spec.license.clone(),
        funcs,
        maps: spec.maps.clone(),
    })
}

/// The machine-readable description of the object for the runtime (layout.json).
pub fn layout(spec: &ObjectSpec) -> Layout {
    layout::build(spec)
}
