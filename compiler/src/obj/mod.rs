//! ELF object, BTF and layout.json output: the last stage, from instructions to bytes.
//!
//! The object follows `shared/notes/elf-btf.md`, the tested checklist of what libbpf 1.1,
//! iproute2 and aya 0.13 accept: one `ALLOC|EXECINSTR` section per program section name
//! (programs sharing a name are laid out one after the other, each with its own `STT_FUNC`
//! symbol), `.rel<section>` with `R_BPF_64_64` against each map's own `STT_OBJECT` symbol,
//! `license`, `.maps` and BTF-defined maps in `.BTF`. Everything a loader would reject is
//! rejected here first, as an [`ObjError`]. Nothing here does IO.

mod btf;
mod elf;
mod layout;

pub use btf::{btf_section, dump as dump_btf};
pub use layout::{FieldLayout, Layout, MapLayout, ProgramLayout, TypeLayout};

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

/// Writes the ELF object (ELF64 LE, `ET_REL`, `EM_BPF`) for `spec`.
pub fn write_object(spec: &ObjectSpec) -> Result<Vec<u8>, ObjError> {
    validate(spec)?;
    let btf = if spec.maps.is_empty() {
        None
    } else {
        Some(btf::maps_btf(&spec.maps))
    };
    elf::write(spec, btf.as_ref())
}

/// The machine-readable description of the object for the runtime (layout.json).
pub fn layout(spec: &ObjectSpec) -> Layout {
    layout::build(spec)
}

/// `[A-Za-z_][A-Za-z0-9_]*`: what BTF demands of STRUCT, member and VAR names.
pub fn is_c_ident(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Whether both libbpf 1.1 and aya 0.13 type a program section of this name (checklist §4):
/// one unknown name fails the whole object in both.
pub fn is_known_section(s: &str) -> bool {
    const EXACT: &[&str] = &[
        "xdp",
        "xdp.frags",
        "classifier",
        "perf_event",
        "socket",
        "cgroup_skb/ingress",
        "cgroup_skb/egress",
        "cgroup/connect4",
        "cgroup/connect6",
    ];
    let two_parts = |rest: &str| {
        let mut parts = rest.split('/');
        let ok = |p: Option<&str>| p.is_some_and(|p| !p.is_empty() && is_c_ident(p));
        ok(parts.next()) && ok(parts.next()) && parts.next().is_none()
    };
    let one_part = |rest: &str| is_c_ident(rest);
    EXACT.contains(&s)
        || s.strip_prefix("tp/").is_some_and(two_parts)
        || s.strip_prefix("tracepoint/").is_some_and(two_parts)
        || s.strip_prefix("raw_tp/").is_some_and(one_part)
        || s.strip_prefix("raw_tracepoint/").is_some_and(one_part)
}

fn attach_matches(section: &str, attach: &AttachSpec) -> bool {
    match attach {
        AttachSpec::Xdp { .. } => section == "xdp" || section == "xdp.frags",
        AttachSpec::Tc { .. } => section == "classifier",
        AttachSpec::Tracepoint { category, name } => {
            let cn = format!("{category}/{name}");
            section.strip_prefix("tp/") == Some(&cn)
                || section.strip_prefix("tracepoint/") == Some(&cn)
        }
    }
}

fn check_ty(map: &str, ty: &BtfTy) -> Result<(), ObjError> {
    let bad = |reason: String| ObjError::BadMap {
        map: map.to_owned(),
        reason,
    };
    match ty {
        BtfTy::Bytes(0) => Err(bad("zero-length byte array".into())),
        BtfTy::Struct { name, fields } => {
            if !is_c_ident(name) {
                return Err(ObjError::BadName {
                    what: "struct",
                    name: name.clone(),
                });
            }
            if fields.is_empty() {
                return Err(bad(format!("struct {name} has no fields")));
            }
            for (i, (field, fty)) in fields.iter().enumerate() {
                if !is_c_ident(field) {
                    return Err(ObjError::BadName {
                        what: "field",
                        name: field.clone(),
                    });
                }
                if fields.iter().take(i).any(|(f, _)| f == field) {
                    return Err(ObjError::Duplicate {
                        what: "field",
                        name: field.clone(),
                    });
                }
                check_ty(map, fty)?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

fn check_map(m: &MapSpec) -> Result<(), ObjError> {
    let bad = |reason: &str| ObjError::BadMap {
        map: m.name.clone(),
        reason: reason.to_owned(),
    };
    if !is_c_ident(&m.name) {
        return Err(ObjError::BadName {
            what: "map",
            name: m.name.clone(),
        });
    }
    if m.max_entries == 0 {
        return Err(bad("max_entries is 0"));
    }
    check_ty(&m.name, &m.value)?;
    match m.kind {
        MapKind::RingBuf => {
            // The kernel wants a power of two and a multiple of the page size; 4096 is the
            // smallest page size of the architectures pol targets.
            if !m.max_entries.is_power_of_two() || m.max_entries < 4096 {
                return Err(bad(
                    "ring buffer size must be a power of two of at least 4096",
                ));
            }
            return Ok(());
        }
        MapKind::Array | MapKind::PercpuArray if m.key != BtfTy::U32 => {
            return Err(bad("array maps need a u32 key"));
        }
        MapKind::LpmTrie if !matches!(m.key, BtfTy::Struct { .. }) => {
            // A non-struct key makes libbpf retry without BTF and aya fail with EINVAL.
            return Err(bad(
                "LPM trie keys must be structs (u32 prefixlen, then data)",
            ));
        }
        _ => {}
    }
    check_ty(&m.name, &m.key)
}

fn check_program(p: &ProgramSpec, maps: &[MapSpec]) -> Result<(), ObjError> {
    let program = || p.name.clone();
    if !is_c_ident(&p.name) {
        return Err(ObjError::BadName {
            what: "program",
            name: p.name.clone(),
        });
    }
    if !is_known_section(&p.section) {
        return Err(ObjError::BadSection {
            program: program(),
            section: p.section.clone(),
        });
    }
    if !attach_matches(&p.section, &p.attach) {
        return Err(ObjError::AttachMismatch {
            program: program(),
            section: p.section.clone(),
            attach: format!("{:?}", p.attach),
        });
    }
    if p.insns.is_empty() {
        return Err(ObjError::EmptyProgram { program: program() });
    }
    for (i, r) in p.map_relocs.iter().enumerate() {
        let first = p.insns.get(r.insn_index);
        if first.map(|i| i.code) != Some(LD_IMM64) || p.insns.get(r.insn_index + 1).is_none() {
            return Err(ObjError::BadRelocSlot {
                program: program(),
                index: r.insn_index,
            });
        }
        if p.map_relocs
            .iter()
            .take(i)
            .any(|o| o.insn_index == r.insn_index)
        {
            return Err(ObjError::DuplicateReloc {
                program: program(),
                index: r.insn_index,
            });
        }
        if !maps.iter().any(|m| m.name == r.map) {
            return Err(ObjError::UnknownMap {
                program: program(),
                map: r.map.clone(),
            });
        }
    }
    Ok(())
}

fn validate(spec: &ObjectSpec) -> Result<(), ObjError> {
    if spec.license.contains('\0') {
        return Err(ObjError::BadLicense(spec.license.clone()));
    }
    for (i, m) in spec.maps.iter().enumerate() {
        check_map(m)?;
        if spec.maps.iter().take(i).any(|o| o.name == m.name) {
            return Err(ObjError::Duplicate {
                what: "map",
                name: m.name.clone(),
            });
        }
    }
    for (i, p) in spec.programs.iter().enumerate() {
        check_program(p, &spec.maps)?;
        // Programs and maps share the symbol table.
        let clash = spec.programs.iter().take(i).any(|o| o.name == p.name)
            || spec.maps.iter().any(|m| m.name == p.name);
        if clash {
            return Err(ObjError::Duplicate {
                what: "program",
                name: p.name.clone(),
            });
        }
    }
    Ok(())
}
