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
pub mod link;
mod module;
mod validate;

pub use btf::{btf_section, dump as dump_btf, funcs_btf, BtfParam};
pub use layout::{
    map_layout, AggFunction, AggregationLayout, EventsLayout, FieldLayout, KeyFieldLayout, Layout,
    MapActionLayout, MapLayout, ProbeAttach, ProbeLayout, ProgramLayout, RecordLayout,
    ScheduleLayout, TypeLayout, ValueWordLayout, SCHEMA,
};
pub use module::{write_module, FuncSpec, ModuleSpec};
pub use validate::{is_c_ident, is_known_section};
// The map descriptions this writer and layout.json take (defined beside the pipeline, not
// here, so the IR that builds them knows nothing of ELF).
pub use crate::maps::{BtfTy, MapKind, MapSpec, BPF_F_NO_PREALLOC};

use serde::{Deserialize, Serialize};

use crate::bpf::Insn;

/// Opcode of the first half of `ld_imm64` (`BPF_LD | BPF_IMM | BPF_DW`).
pub const LD_IMM64: u8 = 0x18;

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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TcDirection {
    Ingress,
    Egress,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleInfo {
    pub index: u32,
    pub line: u32,
    pub text: String,
    /// `"pass"` or `"drop"`.
    pub verdict: String,
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
    write_module(&module_of(spec)?)
}

/// The module [`write_object`] writes for `spec`: each program one function of its
/// section.
pub fn module_of(spec: &ObjectSpec) -> Result<ModuleSpec, ObjError> {
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
    Ok(ModuleSpec {
        license: spec.license.clone(),
        funcs,
        maps: spec.maps.clone(),
        source_file: String::new(),
    })
}

/// The machine-readable description of the object for the runtime (layout.json).
pub fn layout(spec: &ObjectSpec) -> Layout {
    layout::build(spec)
}
