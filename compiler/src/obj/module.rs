//! The ELF writer (the only one: filters come through [`super::write_object`]): program
//! sections and `.text`, BPF-to-BPF calls and callback addresses relocated against the
//! callee's FUNC symbol, BTF FUNC/FUNC_PROTO for every function and `.BTF.ext` func_info
//! (shared/notes/elf-btf.md §3, §5). Written with `object`'s low-level `elf::Writer`, not
//! `object::write::Object`: that one adds section symbols and chooses section flags and
//! symbol order itself, which the loaders are picky about (checklist §1, §3).
//!
//! Sections: NULL, program sections (in order of first use), `.text`, `license`, `.maps`
//! (if any map), `.BTF`, `.BTF.ext`, `.rel<section>` for each code section with
//! relocations, `.symtab`, `.strtab`, `.shstrtab`. Symbols: NULL, LOCAL `STT_FUNC` for
//! each static `.text` function (with the global ones they cover `.text` exactly), GLOBAL
//! `STT_FUNC` for programs and global functions,
//! GLOBAL `STT_OBJECT` for maps.

use object::elf;
use object::write::elf::{FileHeader, Rel, SectionHeader, SectionIndex, Sym, Writer};
use object::write::StringId;
use object::Endianness;

use super::btf::{self, BtfParam, FuncBtf};
use super::{is_c_ident, is_known_section, MapReloc, MapSpec, ObjError, ObjectSpec, LD_IMM64};
use crate::bpf::Insn;

/// `R_BPF_64_64`: the immediate of an `ld_imm64` (a map or a function's address).
const R_BPF_64_64: u32 = 1;
/// `R_BPF_64_32`: a BPF-to-BPF call.
const R_BPF_64_32: u32 = 10;
const INSN: usize = 8;
const CALL: u8 = 0x85;

/// The header of a `SHT_PROGBITS` section (code, `.maps`, license, BTF).
fn progbits(name: StringId, flags: u32, offset: usize, size: usize, align: u64) -> SectionHeader {
    SectionHeader {
        name: Some(name),
        sh_type: elf::SHT_PROGBITS,
        sh_flags: flags.into(),
        sh_addr: 0,
        sh_offset: offset as u64,
        sh_size: size as u64,
        sh_link: 0,
        sh_info: 0,
        sh_addralign: align,
        sh_entsize: 0,
    }
}

/// A module's object: programs and subprograms, and maps.
#[derive(Debug, Clone, PartialEq)]
pub struct ModuleSpec {
    pub license: String,
    pub funcs: Vec<FuncSpec>,
    pub maps: Vec<MapSpec>,
    /// The `.pol` file the line_info records name (`bpftool prog dump xlated linum` shows
    /// it); empty when the compiler was handed source text without a name.
    pub source_file: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FuncSpec {
    /// Symbol and BTF FUNC name.
    pub name: String,
    /// The program section, or `None` for a subprogram in `.text`.
    pub section: Option<String>,
    pub insns: Vec<Insn>,
    pub map_relocs: Vec<MapReloc>,
    /// `(slot of a pseudo call, callee name)`.
    pub calls: Vec<(usize, String)>,
    /// `(slot of an ld_imm64, function name)`: a callback address.
    pub func_addrs: Vec<(usize, String)>,
    pub params: Vec<BtfParam>,
    pub ret: BtfParam,
    /// BTF linkage global: verified on its own (subprograms only).
    pub global: bool,
    /// Source lines of the code, by first slot, in order (`.BTF.ext` line_info); the
    /// first at slot 0 when any.
    pub lines: Vec<super::SourceLine>,
}

fn validate(spec: &ModuleSpec) -> Result<(), ObjError> {
    super::validate::validate(&ObjectSpec {
        license: spec.license.clone(),
        programs: Vec::new(),
        maps: spec.maps.clone(),
    })?;
    for (i, f) in spec.funcs.iter().enumerate() {
        let program = || f.name.clone();
        if !is_c_ident(&f.name) {
            return Err(ObjError::BadName {
                what: "function",
                name: f.name.clone(),
            });
        }
        if spec.funcs.iter().take(i).any(|o| o.name == f.name)
            || spec.maps.iter().any(|m| m.name == f.name)
        {
            return Err(ObjError::Duplicate {
                what: "function",
                name: f.name.clone(),
            });
        }
        if let Some(sec) = &f.section {
            let ok = is_known_section(sec)
                || sec.starts_with("tp_btf/")
                || sec == "uprobe"
                || sec.starts_with("uprobe/")
                || sec == "uretprobe"
                || sec.starts_with("uretprobe/");
            if !ok {
                return Err(ObjError::BadSection {
                    program: program(),
                    section: sec.clone(),
                });
            }
        }
        if f.insns.is_empty() {
            return Err(ObjError::EmptyProgram { program: program() });
        }
        let ld_imm64_at = |slot: usize| {
            f.insns.get(slot).map(|i| i.code) == Some(LD_IMM64) && f.insns.get(slot + 1).is_some()
        };
        for r in &f.map_relocs {
            if !ld_imm64_at(r.insn_index) {
                return Err(ObjError::BadRelocSlot {
                    program: program(),
                    index: r.insn_index,
                });
            }
            if !spec.maps.iter().any(|m| m.name == r.map) {
                return Err(ObjError::UnknownMap {
                    program: program(),
                    map: r.map.clone(),
                });
            }
        }
        // The kernel refuses line_info out of order, past the end, or on the second
        // half of an ld_imm64 ("Invalid insn code at line_info[N].insn_off").
        let mut prev: Option<usize> = None;
        for l in &f.lines {
            // Only an ld_imm64's second half has opcode 0.
            let second_half = f.insns.get(l.insn).is_some_and(|i| i.code == 0);
            if l.insn >= f.insns.len() || prev.is_some_and(|p| p >= l.insn) || second_half {
                return Err(ObjError::BadLineInfo {
                    program: program(),
                    index: l.insn,
                });
            }
            prev = Some(l.insn);
        }
        if f.lines.first().is_some_and(|l| l.insn != 0) {
            return Err(ObjError::BadLineInfo {
                program: program(),
                index: f.lines.first().map_or(0, |l| l.insn),
            });
        }
        let subprogram = |name: &str| {
            spec.funcs
                .iter()
                .any(|g| g.name == name && g.section.is_none())
        };
        for (slot, callee) in &f.calls {
            if f.insns.get(*slot).map(|i| (i.code, i.src)) != Some((CALL, 1)) {
                return Err(ObjError::BadRelocSlot {
                    program: program(),
                    index: *slot,
                });
            }
            if !subprogram(callee) {
                return Err(ObjError::Elf(format!(
                    "{}: call of {callee:?}, not a subprogram",
                    f.name
                )));
            }
        }
        for (slot, callee) in &f.func_addrs {
            if !ld_imm64_at(*slot) {
                return Err(ObjError::BadRelocSlot {
                    program: program(),
                    index: *slot,
                });
            }
            if !subprogram(callee) {
                return Err(ObjError::Elf(format!(
                    "{}: address of {callee:?}, not a subprogram",
                    f.name
                )));
            }
        }
    }
    Ok(())
}

/// A code section: its functions (index, byte offset), bytes and relocations
/// `(byte offset, symbol key, type)`.
struct Code<'s> {
    name: &'s str,
    funcs: Vec<(usize, usize)>,
    bytes: Vec<u8>,
    relocs: Vec<(u64, Target<'s>, u32)>,
}

#[derive(Clone, Copy)]
enum Target<'s> {
    Map(&'s str),
    Func(&'s str),
}

/// Writes the ELF object for `spec`.
pub fn write_module(spec: &ModuleSpec) -> Result<Vec<u8>, ObjError> {
    validate(spec)?;
    // Code sections: programs by section name in order of first use, then `.text`.
    let mut code: Vec<Code<'_>> = Vec::new();
    let order = spec
        .funcs
        .iter()
        .enumerate()
        .filter(|(_, f)| f.section.is_some())
        .chain(
            spec.funcs
                .iter()
                .enumerate()
                .filter(|(_, f)| f.section.is_none()),
        );
    for (i, f) in order {
        let name = f.section.as_deref().unwrap_or(".text");
        let ci = match code.iter().position(|c| c.name == name) {
            Some(ci) => ci,
            None => {
                code.push(Code {
                    name,
                    funcs: Vec::new(),
                    bytes: Vec::new(),
                    relocs: Vec::new(),
                });
                code.len() - 1
            }
        };
        let Some(c) = code.get_mut(ci) else { continue };
        let base = c.bytes.len();
        c.funcs.push((i, base));
        c.bytes.extend(crate::bpf::insn::encode(&f.insns));
        let at = |slot: usize| (base + slot * INSN) as u64;
        for r in &f.map_relocs {
            c.relocs
                .push((at(r.insn_index), Target::Map(&r.map), R_BPF_64_64));
        }
        for (slot, g) in &f.calls {
            c.relocs.push((at(*slot), Target::Func(g), R_BPF_64_32));
        }
        for (slot, g) in &f.func_addrs {
            c.relocs.push((at(*slot), Target::Func(g), R_BPF_64_64));
        }
    }
    let btf_funcs: Vec<FuncBtf<'_>> = code
        .iter()
        .flat_map(|c| {
            c.funcs.iter().filter_map(move |&(i, off)| {
                spec.funcs.get(i).map(|f| FuncBtf {
                    name: &f.name,
                    section: c.name,
                    byte_off: off as u32,
                    params: &f.params,
                    ret: f.ret,
                    global: f.global,
                    lines: &f.lines,
                })
            })
        })
        .collect();
    let mbtf = btf::module_btf(&spec.maps, &btf_funcs, &spec.source_file);
    let license: Vec<u8> = spec.license.bytes().chain([0]).collect();

    let mut buf = Vec::new();
    let mut w = Writer::new(Endianness::Little, true, &mut buf);
    w.reserve_file_header();
    let code_secs: Vec<(object::write::StringId, SectionIndex)> = code
        .iter()
        .map(|c| {
            (
                w.add_section_name(c.name.as_bytes()),
                w.reserve_section_index(),
            )
        })
        .collect();
    let license_sec = (w.add_section_name(b"license"), w.reserve_section_index());
    let maps_sec =
        (!spec.maps.is_empty()).then(|| (w.add_section_name(b".maps"), w.reserve_section_index()));
    let btf_sec = (w.add_section_name(b".BTF"), w.reserve_section_index());
    // `.BTF.ext` where subprograms need func_info or there are source lines: func_info
    // without line_info makes libbpf warn "missing .BTF.ext line info for the main
    // program" about every program.
    let ext_sec = spec
        .funcs
        .iter()
        .any(|f| f.section.is_none() || !f.lines.is_empty())
        .then(|| (w.add_section_name(b".BTF.ext"), w.reserve_section_index()));
    let rel_names: Vec<String> = code.iter().map(|c| format!(".rel{}", c.name)).collect();
    let rel_secs: Vec<(object::write::StringId, SectionIndex, SectionIndex, usize)> = code
        .iter()
        .enumerate()
        .filter(|(_, c)| !c.relocs.is_empty())
        .filter_map(|(ci, _)| {
            let target = code_secs.get(ci)?.1;
            Some((
                w.add_section_name(rel_names.get(ci)?.as_bytes()),
                w.reserve_section_index(),
                target,
                ci,
            ))
        })
        .collect();
    let symtab = w.reserve_symtab_section_index();
    w.reserve_strtab_section_index();
    w.reserve_shstrtab_section_index();

    // Symbols: NULL, .text functions (LOCAL), programs (GLOBAL), maps (GLOBAL).
    w.reserve_null_symbol_index();
    struct S {
        name: object::write::StringId,
        sec: SectionIndex,
        info: u8,
        value: u64,
        size: u64,
    }
    let mut syms: Vec<S> = Vec::new();
    let mut func_sym: Vec<(&str, u32)> = Vec::new();
    // Static subprograms are LOCAL (listed first, as ELF wants); global subprograms are
    // GLOBAL, else libbpf marks their BTF static again.
    for pass_local in [true, false] {
        for (c, &(_, sec)) in code.iter().zip(&code_secs) {
            for &(i, off) in &c.funcs {
                let Some(f) = spec.funcs.get(i) else { continue };
                if (c.name == ".text" && !f.global) != pass_local {
                    continue;
                }
                let name = w.add_string(f.name.as_bytes());
                let index = w.reserve_symbol_index(Some(sec)).0;
                func_sym.push((&f.name, index));
                let bind = if pass_local {
                    elf::STB_LOCAL
                } else {
                    elf::STB_GLOBAL
                };
                syms.push(S {
                    name,
                    sec,
                    info: (bind << 4) | elf::STT_FUNC,
                    value: off as u64,
                    size: (f.insns.len() * INSN) as u64,
                });
            }
        }
    }
    let locals = spec
        .funcs
        .iter()
        .filter(|f| f.section.is_none() && !f.global)
        .count();
    let mut map_sym: Vec<(&str, u32)> = Vec::new();
    if let Some((_, maps_idx)) = maps_sec {
        for (m, &(offset, size)) in spec.maps.iter().zip(&mbtf.maps.defs) {
            let name = w.add_string(m.name.as_bytes());
            let index = w.reserve_symbol_index(Some(maps_idx)).0;
            map_sym.push((&m.name, index));
            syms.push(S {
                name,
                sec: maps_idx,
                info: (elf::STB_GLOBAL << 4) | elf::STT_OBJECT,
                value: offset.into(),
                size: size.into(),
            });
        }
    }
    let sym_of = |t: Target<'_>| -> Result<u32, ObjError> {
        let (list, name) = match t {
            Target::Map(n) => (&map_sym, n),
            Target::Func(n) => (&func_sym, n),
        };
        list.iter()
            .find(|(s, _)| *s == name)
            .map(|&(_, i)| i)
            .ok_or_else(|| ObjError::Elf(format!("no symbol for {name}")))
    };

    let code_offsets: Vec<usize> = code.iter().map(|c| w.reserve(c.bytes.len(), 8)).collect();
    let license_offset = w.reserve(license.len(), 1);
    let maps_offset = maps_sec.map(|_| w.reserve(mbtf.maps.maps_size as usize, 8));
    let btf_offset = w.reserve(mbtf.maps.bytes.len(), 4);
    let ext_offset = ext_sec.map(|_| w.reserve(mbtf.ext.len(), 4));
    w.reserve_symtab();
    w.reserve_strtab();
    let rel_offsets: Vec<usize> = rel_secs
        .iter()
        .map(|&(_, _, _, ci)| {
            w.reserve_relocations(code.get(ci).map_or(0, |c| c.relocs.len()), false)
        })
        .collect();
    w.reserve_shstrtab();
    w.reserve_section_headers();

    w.write_file_header(&FileHeader {
        os_abi: elf::ELFOSABI_NONE,
        abi_version: 0,
        e_type: elf::ET_REL,
        e_machine: elf::EM_BPF,
        e_entry: 0,
        e_flags: 0,
    })
    .map_err(|e| ObjError::Elf(e.to_string()))?;
    for c in &code {
        w.write_align(8);
        w.write(&c.bytes);
    }
    w.write(&license);
    if maps_sec.is_some() {
        w.write_align(8);
        w.write(&vec![0; mbtf.maps.maps_size as usize]);
    }
    w.write_align(4);
    w.write(&mbtf.maps.bytes);
    if ext_sec.is_some() {
        w.write_align(4);
        w.write(&mbtf.ext);
    }
    w.write_null_symbol();
    for s in &syms {
        w.write_symbol(&Sym {
            name: Some(s.name),
            section: Some(s.sec),
            st_info: s.info,
            st_other: elf::STV_DEFAULT,
            st_shndx: 0,
            st_value: s.value,
            st_size: s.size,
        });
    }
    w.write_strtab();
    for &(_, _, _, ci) in &rel_secs {
        w.write_align_relocation();
        let Some(c) = code.get(ci) else { continue };
        for &(r_offset, t, r_type) in &c.relocs {
            w.write_relocation(
                false,
                &Rel {
                    r_offset,
                    r_sym: sym_of(t)?,
                    r_type,
                    r_addend: 0,
                },
            );
        }
    }
    w.write_shstrtab();

    w.write_null_section_header();
    for ((c, &(name, _)), &offset) in code.iter().zip(&code_secs).zip(&code_offsets) {
        w.write_section_header(&progbits(
            name,
            elf::SHF_ALLOC | elf::SHF_EXECINSTR,
            offset,
            c.bytes.len(),
            8,
        ));
    }
    let rw = elf::SHF_ALLOC | elf::SHF_WRITE;
    w.write_section_header(&progbits(
        license_sec.0,
        rw,
        license_offset,
        license.len(),
        1,
    ));
    if let (Some((name, _)), Some(off)) = (maps_sec, maps_offset) {
        w.write_section_header(&progbits(name, rw, off, mbtf.maps.maps_size as usize, 8));
    }
    w.write_section_header(&progbits(
        btf_sec.0,
        0,
        btf_offset,
        mbtf.maps.bytes.len(),
        4,
    ));
    if let (Some((name, _)), Some(off)) = (ext_sec, ext_offset) {
        w.write_section_header(&progbits(name, 0, off, mbtf.ext.len(), 4));
    }
    for (&(name, _, target, ci), &offset) in rel_secs.iter().zip(&rel_offsets) {
        let n = code.get(ci).map_or(0, |c| c.relocs.len());
        w.write_relocation_section_header(name, target, symtab, offset, n, false);
    }
    w.write_symtab_section_header(1 + locals as u32);
    w.write_strtab_section_header();
    w.write_shstrtab_section_header();
    Ok(buf)
}
