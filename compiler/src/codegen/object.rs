//! A compiled module as an ELF object: programs in their hook's section, subprograms in
//! `.text`, maps with BTF, BTF FUNC for every function, `.BTF.ext` func_info. The license
//! is GPL: the probe_read helpers are GPL-only (shared/notes/elf-btf.md §6).

use crate::mir::{self, Module, Type};
use crate::obj::{self, BtfParam, BtfTy, FuncSpec, MapKind, MapReloc, MapSpec, ModuleSpec};

use super::{compile, CodegenError, Compiled};

fn map_spec(d: &mir::MapDef) -> MapSpec {
    let bytes = |n: u32| match n {
        4 => BtfTy::U32,
        8 => BtfTy::U64,
        n => BtfTy::Bytes(n.max(1)),
    };
    let kind = match d.kind {
        mir::MapKind::Hash => MapKind::Hash,
        mir::MapKind::PercpuHash => MapKind::PercpuHash,
        mir::MapKind::Array => MapKind::Array,
        mir::MapKind::PercpuArray => MapKind::PercpuArray,
        mir::MapKind::LruHash => MapKind::LruHash,
        mir::MapKind::LpmTrie => MapKind::LpmTrie,
        mir::MapKind::RingBuf => MapKind::RingBuf,
        mir::MapKind::StackTrace => MapKind::StackTrace,
    };
    let key = match d.kind {
        mir::MapKind::RingBuf => BtfTy::U32,
        // LPM keys must be structs: prefix length, then the data.
        mir::MapKind::LpmTrie => BtfTy::Struct {
            name: format!("{}_key", d.name),
            fields: vec![
                ("prefixlen".into(), BtfTy::U32),
                (
                    "data".into(),
                    BtfTy::Bytes(d.key_size.saturating_sub(4).max(1)),
                ),
            ],
        },
        _ => bytes(d.key_size),
    };
    MapSpec {
        name: d.name.clone(),
        kind,
        key,
        value: if d.kind == mir::MapKind::RingBuf {
            BtfTy::U8
        } else {
            bytes(d.value_size)
        },
        max_entries: d.max_entries,
        flags: d.flags,
    }
}

fn param(t: Type) -> BtfParam {
    match t {
        Type::Int(i) => BtfParam::Int {
            bytes: i.bytes().max(4),
            signed: i.signed,
        },
        Type::Ptr(_) => BtfParam::Ptr,
    }
}

/// The object spec of a compiled module.
pub fn module_spec(m: &Module, c: &Compiled) -> ModuleSpec {
    let name = |g: mir::FuncId| m.func(g).map_or(String::new(), |f| f.name.clone());
    let funcs = m
        .funcs
        .iter()
        .zip(&c.funcs)
        .map(|(f, cf)| FuncSpec {
            name: f.name.clone(),
            section: f.hook.as_ref().map(|h| h.section()),
            insns: cf.code.insns.clone(),
            map_relocs: cf
                .code
                .map_relocs
                .iter()
                .map(|(slot, map)| MapReloc {
                    insn_index: *slot,
                    map: map.clone(),
                })
                .collect(),
            calls: cf.code.calls.iter().map(|&(s, g)| (s, name(g))).collect(),
            func_addrs: cf
                .code
                .func_addrs
                .iter()
                .map(|&(s, g)| (s, name(g)))
                .collect(),
            params: f.params.iter().map(|&t| param(t)).collect(),
            ret: param(Type::Int(f.ret)),
            global: f.global,
            lines: Vec::new(),
        })
        .collect();
    ModuleSpec {
        license: "GPL".into(),
        funcs,
        maps: m.maps.iter().map(map_spec).collect(),
        source_file: String::new(),
    }
}

/// Verifies, compiles and writes `m` as an ELF object.
pub fn object(m: &Module) -> Result<(Vec<u8>, Compiled), CodegenError> {
    let compiled = compile(m)?;
    let bytes = obj::write_module(&module_spec(m, &compiled))?;
    Ok((bytes, compiled))
}
