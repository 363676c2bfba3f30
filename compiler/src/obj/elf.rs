//! The ELF container: sections, symbols and relocations, laid out with `object`'s
//! low-level `elf::Writer`.
//!
//! Why not `object::write::Object`: it adds section symbols and chooses section flags and
//! symbol order itself, while the loaders are picky about exactly these (checklist §1, §3).
//! The low-level writer lets every header field be set as the checklist says and still
//! does the offset bookkeeping.
//!
//! Section order: NULL, program sections (in order of first use), `license`, `.maps`,
//! `.BTF`, `.rel<section>` for each program section with map loads, `.symtab`, `.strtab`,
//! `.shstrtab`. Symbols: NULL, then one GLOBAL `STT_FUNC` per program (`st_value` = byte
//! offset in its section, `st_size` = exact length), then one GLOBAL `STT_OBJECT` per map.

use object::elf;
use object::write::elf::{FileHeader, Rel, SectionHeader, SectionIndex, Sym, Writer};
use object::write::StringId;
use object::Endianness;

use super::btf::MapsBtf;
use super::{ObjError, ObjectSpec};

/// `R_BPF_64_64`: the 64-bit immediate of an `ld_imm64`.
const R_BPF_64_64: u32 = 1;
const INSN_SIZE: usize = 8;

/// Programs that share a section name, laid out one after the other.
struct Group<'s> {
    name: &'s str,
    rel_name: String,
    /// Index into `spec.programs` and byte offset in the section.
    programs: Vec<(usize, usize)>,
    code: Vec<u8>,
    /// `(byte offset in section, map index)`.
    relocs: Vec<(u64, usize)>,
}

/// The header of a `SHT_PROGBITS` section (code, `.maps`, license, BTF), for both writers.
pub(super) fn progbits(
    name: StringId,
    flags: u32,
    offset: usize,
    size: usize,
    align: u64,
) -> SectionHeader {
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

fn groups(spec: &ObjectSpec) -> Vec<Group<'_>> {
    let mut groups: Vec<Group<'_>> = Vec::new();
    for (pi, p) in spec.programs.iter().enumerate() {
        let gi = match groups.iter().position(|g| g.name == p.section) {
            Some(gi) => gi,
            None => {
                groups.push(Group {
                    name: &p.section,
                    rel_name: format!(".rel{}", p.section),
                    programs: Vec::new(),
                    code: Vec::new(),
                    relocs: Vec::new(),
                });
                groups.len() - 1
            }
        };
        let Some(g) = groups.get_mut(gi) else {
            continue;
        };
        let base = g.code.len();
        g.programs.push((pi, base));
        g.code.extend(crate::bpf::insn::encode(&p.insns));
        for r in &p.map_relocs {
            // Validated: every reloc names an existing map.
            if let Some(mi) = spec.maps.iter().position(|m| m.name == r.map) {
                g.relocs
                    .push(((base + r.insn_index * INSN_SIZE) as u64, mi));
            }
        }
    }
    groups
}

/// Lays out and writes the object. `btf` is present exactly when there are maps.
pub(crate) fn write(spec: &ObjectSpec, btf: Option<&MapsBtf>) -> Result<Vec<u8>, ObjError> {
    let groups = groups(spec);
    let license: Vec<u8> = spec.license.bytes().chain([0]).collect();
    let mut buf = Vec::new();
    let mut w = Writer::new(Endianness::Little, true, &mut buf);
    w.reserve_file_header();

    // Section indices, in header order.
    let prog_secs: Vec<(object::write::StringId, SectionIndex)> = groups
        .iter()
        .map(|g| {
            (
                w.add_section_name(g.name.as_bytes()),
                w.reserve_section_index(),
            )
        })
        .collect();
    let license_sec = (w.add_section_name(b"license"), w.reserve_section_index());
    let maps_secs = btf.map(|_| {
        let maps = (w.add_section_name(b".maps"), w.reserve_section_index());
        let btf = (w.add_section_name(b".BTF"), w.reserve_section_index());
        (maps, btf)
    });
    let rel_secs: Vec<_> = groups
        .iter()
        .zip(&prog_secs)
        .filter(|(g, _)| !g.relocs.is_empty())
        .map(|(g, &(_, target))| {
            (
                w.add_section_name(g.rel_name.as_bytes()),
                w.reserve_section_index(),
                target,
                g,
            )
        })
        .collect();
    let symtab = w.reserve_symtab_section_index();
    w.reserve_strtab_section_index();
    w.reserve_shstrtab_section_index();

    // Symbols: programs, then maps; the map symbol index is what relocations point at.
    w.reserve_null_symbol_index();
    let mut syms = Vec::new();
    for (g, &(_, sec)) in groups.iter().zip(&prog_secs) {
        for &(pi, offset) in &g.programs {
            let Some(p) = spec.programs.get(pi) else {
                continue;
            };
            let name = w.add_string(p.name.as_bytes());
            w.reserve_symbol_index(Some(sec));
            let size = (p.insns.len() * INSN_SIZE) as u64;
            syms.push((name, sec, elf::STT_FUNC, offset as u64, size));
        }
    }
    let first_map_sym = w.symbol_count();
    if let (Some(btf), Some(((_, maps_sec), _))) = (btf, maps_secs) {
        for (m, &(offset, size)) in spec.maps.iter().zip(&btf.defs) {
            let name = w.add_string(m.name.as_bytes());
            w.reserve_symbol_index(Some(maps_sec));
            syms.push((name, maps_sec, elf::STT_OBJECT, offset.into(), size.into()));
        }
    }

    // File ranges.
    let prog_offsets: Vec<usize> = groups.iter().map(|g| w.reserve(g.code.len(), 8)).collect();
    let license_offset = w.reserve(license.len(), 1);
    let maps_offsets = btf.map(|b| {
        (
            w.reserve(b.maps_size as usize, 8),
            w.reserve(b.bytes.len(), 4),
        )
    });
    w.reserve_symtab();
    w.reserve_strtab();
    let rel_offsets: Vec<usize> = rel_secs
        .iter()
        .map(|(_, _, _, g)| w.reserve_relocations(g.relocs.len(), false))
        .collect();
    w.reserve_shstrtab();
    w.reserve_section_headers();

    // Contents, in the same order.
    w.write_file_header(&FileHeader {
        os_abi: elf::ELFOSABI_NONE,
        abi_version: 0,
        e_type: elf::ET_REL,
        e_machine: elf::EM_BPF,
        e_entry: 0,
        e_flags: 0,
    })
    .map_err(|e| ObjError::Elf(e.to_string()))?;
    for g in &groups {
        w.write_align(8);
        w.write(&g.code);
    }
    w.write(&license);
    if let Some(btf) = btf {
        w.write_align(8);
        w.write(&vec![0; btf.maps_size as usize]);
        w.write_align(4);
        w.write(&btf.bytes);
    }
    w.write_null_symbol();
    for &(name, sec, kind, value, size) in &syms {
        w.write_symbol(&Sym {
            name: Some(name),
            section: Some(sec),
            st_info: (elf::STB_GLOBAL << 4) | kind,
            st_other: elf::STV_DEFAULT,
            st_shndx: 0,
            st_value: value,
            st_size: size,
        });
    }
    w.write_strtab();
    for (_, _, _, g) in &rel_secs {
        w.write_align_relocation();
        for &(r_offset, mi) in &g.relocs {
            let r_sym = first_map_sym + mi as u32;
            w.write_relocation(
                false,
                &Rel {
                    r_offset,
                    r_sym,
                    r_type: R_BPF_64_64,
                    r_addend: 0,
                },
            );
        }
    }
    w.write_shstrtab();

    // Section headers.
    w.write_null_section_header();
    for ((g, &(name, _)), &offset) in groups.iter().zip(&prog_secs).zip(&prog_offsets) {
        let flags = elf::SHF_ALLOC | elf::SHF_EXECINSTR;
        w.write_section_header(&progbits(name, flags, offset, g.code.len(), 8));
    }
    let rw = elf::SHF_ALLOC | elf::SHF_WRITE;
    w.write_section_header(&progbits(
        license_sec.0,
        rw,
        license_offset,
        license.len(),
        1,
    ));
    if let (Some(btf), Some(((maps_name, _), (btf_name, _))), Some((maps_off, btf_off))) =
        (btf, maps_secs, maps_offsets)
    {
        let maps_size = btf.maps_size as usize;
        w.write_section_header(&progbits(maps_name, rw, maps_off, maps_size, 8));
        w.write_section_header(&progbits(btf_name, 0, btf_off, btf.bytes.len(), 4));
    }
    for ((name, _, target, g), &offset) in rel_secs.iter().zip(&rel_offsets) {
        w.write_relocation_section_header(*name, *target, symtab, offset, g.relocs.len(), false);
    }
    // sh_info = index of the first non-LOCAL symbol: everything after NULL is GLOBAL.
    w.write_symtab_section_header(1);
    w.write_strtab_section_header();
    w.write_shstrtab_section_header();
    Ok(buf)
}
