//! `.BTF` for BTF-defined maps (checklist §2), and a readable dump of any `.BTF` section.
//!
//! Each map is an anonymous STRUCT of pointer members (`type`, `key`, `value`,
//! `max_entries`, `map_flags`): integer attributes are a PTR to an ARRAY whose `nelems` is
//! the value, `key`/`value` a PTR to the real type. A global VAR names each map and the
//! `.maps` DATASEC lists them with their real offsets and sizes (aya trusts them).

use std::collections::HashMap;
use std::fmt::Write as _;

use super::{BtfTy, MapKind, MapSpec};

const KIND_INT: u32 = 1;
const KIND_PTR: u32 = 2;
const KIND_ARRAY: u32 = 3;
const KIND_STRUCT: u32 = 4;
const KIND_VAR: u32 = 14;
const KIND_DATASEC: u32 = 15;
const INT_SIGNED: u32 = 1;
const VAR_GLOBAL: u32 = 1;
const HDR_LEN: u32 = 24;

/// The `.BTF` section for a set of maps, and where each map's definition sits in `.maps`.
#[derive(Debug, Clone)]
pub(crate) struct MapsBtf {
    pub bytes: Vec<u8>,
    /// `(offset, size)` in `.maps` of each map, in spec order.
    pub defs: Vec<(u32, u32)>,
    pub maps_size: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Int(&'static str),
    Array { elem: u32, index: u32, nelems: u32 },
    Ptr(u32),
    Ty(BtfTy),
}

#[derive(Default)]
struct Builder {
    types: Vec<u8>,
    next_id: u32,
    strings: Vec<u8>,
    string_ids: HashMap<String, u32>,
    dedup: HashMap<Key, u32>,
}

impl Builder {
    fn new() -> Self {
        Builder {
            next_id: 1,
            strings: vec![0],
            ..Default::default()
        }
    }

    fn string(&mut self, s: &str) -> u32 {
        if s.is_empty() {
            return 0;
        }
        if let Some(&off) = self.string_ids.get(s) {
            return off;
        }
        let off = self.strings.len() as u32;
        self.strings.extend_from_slice(s.as_bytes());
        self.strings.push(0);
        self.string_ids.insert(s.to_owned(), off);
        off
    }

    /// Appends one type: header `{name_off, (kind << 24) | vlen, size_or_type}` and its data.
    fn push(&mut self, name: &str, kind: u32, vlen: u32, size_or_type: u32, data: &[u32]) -> u32 {
        let name_off = self.string(name);
        for word in [name_off, (kind << 24) | vlen, size_or_type]
            .iter()
            .chain(data)
        {
            self.types.extend_from_slice(&word.to_le_bytes());
        }
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    fn cached(&mut self, key: Key, make: impl FnOnce(&mut Self) -> u32) -> u32 {
        if let Some(&id) = self.dedup.get(&key) {
            return id;
        }
        let id = make(self);
        self.dedup.insert(key, id);
        id
    }

    fn int(&mut self, name: &'static str, size: u32, signed: bool) -> u32 {
        self.cached(Key::Int(name), |b| {
            let enc = if signed { INT_SIGNED } else { 0 };
            b.push(name, KIND_INT, 0, size, &[(enc << 24) | (size * 8)])
        })
    }

    /// `int`: element and index type of every attribute ARRAY.
    fn c_int(&mut self) -> u32 {
        self.int("int", 4, true)
    }

    fn array(&mut self, elem: u32, nelems: u32) -> u32 {
        let index = self.c_int();
        self.cached(
            Key::Array {
                elem,
                index,
                nelems,
            },
            |b| b.push("", KIND_ARRAY, 0, 0, &[elem, index, nelems]),
        )
    }

    fn ptr(&mut self, to: u32) -> u32 {
        self.cached(Key::Ptr(to), |b| b.push("", KIND_PTR, 0, to, &[]))
    }

    /// An integer map attribute: `int (*name)[value]`.
    fn attr(&mut self, value: u32) -> u32 {
        let int = self.c_int();
        let arr = self.array(int, value);
        self.ptr(arr)
    }

    fn ty(&mut self, ty: &BtfTy) -> u32 {
        if let Some(&id) = self.dedup.get(&Key::Ty(ty.clone())) {
            return id;
        }
        let id = match ty {
            BtfTy::U8 => self.int("unsigned char", 1, false),
            BtfTy::U16 => self.int("unsigned short", 2, false),
            BtfTy::U32 => self.int("unsigned int", 4, false),
            BtfTy::U64 => self.int("unsigned long long", 8, false),
            BtfTy::Bytes(n) => {
                let u8_id = self.ty(&BtfTy::U8);
                self.array(u8_id, *n)
            }
            BtfTy::Struct { name, fields } => {
                let (_, offsets) = ty.field_offsets();
                let mut data = Vec::with_capacity(fields.len() * 3);
                for ((fname, fty), off) in fields.iter().zip(offsets) {
                    let fid = self.ty(fty);
                    data.extend([self.string(fname), fid, off * 8]);
                }
                let vlen = fields.len() as u32;
                self.push(name, KIND_STRUCT, vlen, ty.size(), &data)
            }
        };
        self.dedup.insert(Key::Ty(ty.clone()), id);
        id
    }

    fn finish(self) -> Vec<u8> {
        let type_len = self.types.len() as u32;
        let mut out = Vec::with_capacity(HDR_LEN as usize + self.types.len() + self.strings.len());
        out.extend_from_slice(&0xeb9f_u16.to_le_bytes());
        out.extend_from_slice(&[1, 0]); // version 1, flags 0
        for word in [HDR_LEN, 0, type_len, type_len, self.strings.len() as u32] {
            out.extend_from_slice(&word.to_le_bytes());
        }
        out.extend_from_slice(&self.types);
        out.extend_from_slice(&self.strings);
        out
    }
}

/// Adds the map definitions and the `.maps` DATASEC to `b`; returns where each map sits
/// in `.maps` and the section's size.
fn add_maps(b: &mut Builder, maps: &[MapSpec]) -> (Vec<(u32, u32)>, u32) {
    b.c_int();
    let mut vars = Vec::with_capacity(maps.len());
    let mut defs = Vec::with_capacity(maps.len());
    let mut offset = 0;
    for m in maps {
        let mut members: Vec<(&str, u32)> = vec![("type", b.attr(m.kind.bpf_type()))];
        if m.kind == MapKind::StackTrace {
            members.push(("key_size", b.attr(m.key.size())));
            members.push(("value_size", b.attr(m.value.size())));
        } else if m.kind != MapKind::RingBuf {
            let key = b.ty(&m.key);
            members.push(("key", b.ptr(key)));
            let value = b.ty(&m.value);
            members.push(("value", b.ptr(value)));
        }
        members.push(("max_entries", b.attr(m.max_entries)));
        if m.effective_flags() != 0 {
            members.push(("map_flags", b.attr(m.effective_flags())));
        }
        let mut data = Vec::with_capacity(members.len() * 3);
        for (i, (name, ty)) in members.iter().enumerate() {
            data.extend([b.string(name), *ty, i as u32 * 64]);
        }
        let size = members.len() as u32 * 8;
        let def = b.push("", KIND_STRUCT, members.len() as u32, size, &data);
        vars.push((
            b.push(&m.name, KIND_VAR, 0, def, &[VAR_GLOBAL]),
            offset,
            size,
        ));
        defs.push((offset, size));
        offset += size;
    }
    if !maps.is_empty() {
        let entries: Vec<u32> = vars.iter().flat_map(|&(v, o, s)| [v, o, s]).collect();
        b.push(".maps", KIND_DATASEC, vars.len() as u32, offset, &entries);
    }
    (defs, offset)
}

/// A function's BTF signature: parameter types, named `a0`, `a1`, ...
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BtfParam {
    /// `void *` (the context, stack and map value pointers).
    Ptr,
    /// An integer of this many bytes.
    Int { bytes: u32, signed: bool },
}

/// `.BTF` for maps and functions, and the `.BTF.ext` listing every function.
pub(crate) struct ModuleBtf {
    pub maps: MapsBtf,
    pub ext: Vec<u8>,
}

/// One function for `.BTF` and `.BTF.ext`: name, section, instruction byte offset in the
/// section, signature, linkage.
pub(crate) struct FuncBtf<'a> {
    pub name: &'a str,
    pub section: &'a str,
    pub byte_off: u32,
    pub params: &'a [BtfParam],
    pub ret: BtfParam,
    pub global: bool,
    pub lines: &'a [super::SourceLine],
}

const KIND_FUNC: u32 = 12;
const KIND_FUNC_PROTO: u32 = 13;

/// Adds a FUNC_PROTO and a FUNC for one function to `b`; returns the FUNC's type id.
fn add_func(b: &mut Builder, name: &str, params: &[BtfParam], ret: BtfParam, global: bool) -> u32 {
    let ty = |b: &mut Builder, p: BtfParam| match p {
        BtfParam::Ptr => b.ptr(0),
        BtfParam::Int {
            bytes: 8,
            signed: true,
        } => b.int("long long", 8, true),
        BtfParam::Int { bytes: 8, .. } => b.int("unsigned long long", 8, false),
        BtfParam::Int { signed: true, .. } => b.c_int(),
        BtfParam::Int { .. } => b.int("unsigned int", 4, false),
    };
    let ret = ty(b, ret);
    let mut data = Vec::with_capacity(params.len() * 2);
    for (i, p) in params.iter().enumerate() {
        let t = ty(b, *p);
        data.extend([b.string(&format!("a{i}")), t]);
    }
    let proto = b.push("", KIND_FUNC_PROTO, params.len() as u32, ret, &data);
    b.push(name, KIND_FUNC, u32::from(global), proto, &[])
}

/// A `.BTF` blob with only the FUNC types of `funcs` (for BPF_BTF_LOAD), and each
/// function's FUNC type id, in order: what BPF_PROG_LOAD's func_info points at when a
/// loader hands the kernel instructions rather than an ELF object.
pub fn funcs_btf(funcs: &[super::FuncSpec]) -> (Vec<u8>, Vec<u32>) {
    let mut b = Builder::new();
    let ids = funcs
        .iter()
        .map(|f| add_func(&mut b, &f.name, &f.params, f.ret, f.global))
        .collect();
    (b.finish(), ids)
}

/// Builds `.BTF` with maps, then a FUNC_PROTO and FUNC per function, and `.BTF.ext` with
/// func_info and line_info grouped by section.
pub(crate) fn module_btf(maps: &[MapSpec], funcs: &[FuncBtf<'_>], file: &str) -> ModuleBtf {
    let mut b = Builder::new();
    let (defs, maps_size) = add_maps(&mut b, maps);
    let mut records: Vec<(&str, u32, u32)> = Vec::new();
    for f in funcs {
        let func = add_func(&mut b, f.name, f.params, f.ret, f.global);
        records.push((f.section, f.byte_off, func));
    }
    // func_info: rec_size, then per section {name, count, {insn byte offset, type}...}.
    let mut info: Vec<u32> = vec![8];
    let mut sections: Vec<&str> = Vec::new();
    for &(sec, _, _) in &records {
        if !sections.contains(&sec) {
            sections.push(sec);
        }
    }
    for sec in sections {
        let recs: Vec<&(&str, u32, u32)> = records.iter().filter(|r| r.0 == sec).collect();
        info.extend([b.string(sec), recs.len() as u32]);
        for r in recs {
            info.extend([r.1, r.2]);
        }
    }
    // line_info: rec_size, then per section {name, count, {insn byte offset, file name,
    // line text, line << 10 | column}...}.
    let mut lines: Vec<u32> = vec![16];
    let file = b.string(file);
    let mut line_secs: Vec<&str> = Vec::new();
    for f in funcs.iter().filter(|f| !f.lines.is_empty()) {
        if !line_secs.contains(&f.section) {
            line_secs.push(f.section);
        }
    }
    for sec in line_secs {
        let mut recs: Vec<(u32, &super::SourceLine)> = funcs
            .iter()
            .filter(|f| f.section == sec)
            .flat_map(|f| {
                f.lines
                    .iter()
                    .map(move |l| (f.byte_off + 8 * l.insn as u32, l))
            })
            .collect();
        recs.sort_by_key(|r| r.0);
        lines.extend([b.string(sec), recs.len() as u32]);
        for (off, l) in recs {
            let text = b.string(&l.text);
            lines.extend([off, file, text, (l.line << 10) | (l.col & 0x3ff)]);
        }
    }
    let func_len = 4 * info.len() as u32;
    let line_len = if lines.len() > 1 {
        4 * lines.len() as u32
    } else {
        0
    };
    let mut ext = Vec::with_capacity(32 + (func_len + line_len) as usize);
    ext.extend_from_slice(&0xeb9f_u16.to_le_bytes());
    ext.extend_from_slice(&[1, 0]);
    // hdr_len, func_info off/len, line_info off/len, core_relo off/len.
    let core = func_len + line_len;
    for w in [32, 0, func_len, func_len, line_len, core, 0] {
        ext.extend_from_slice(&w.to_le_bytes());
    }
    for w in info {
        ext.extend_from_slice(&w.to_le_bytes());
    }
    if line_len > 0 {
        for w in lines {
            ext.extend_from_slice(&w.to_le_bytes());
        }
    }
    ModuleBtf {
        maps: MapsBtf {
            bytes: b.finish(),
            defs,
            maps_size,
        },
        ext,
    }
}

/// The `.BTF` section of an ELF object, if it has one.
pub fn btf_section(elf: &[u8]) -> Option<&[u8]> {
    use object::{Object as _, ObjectSection as _};
    let file = object::File::parse(elf).ok()?;
    file.section_by_name(".BTF")?.data().ok()
}

fn word(b: &[u8], off: usize) -> Option<u32> {
    let bytes = b.get(off..off.checked_add(4)?)?;
    Some(u32::from_le_bytes(bytes.try_into().ok()?))
}

/// Renders a `.BTF` section one type per line, in the style of `bpftool btf dump`.
/// Malformed input ends the dump with an `error:` line instead of panicking.
pub fn dump(btf: &[u8]) -> String {
    let mut out = String::new();
    if let Err(e) = dump_into(btf, &mut out) {
        let _ = writeln!(out, "error: {e}");
    }
    out
}

fn dump_into(btf: &[u8], out: &mut String) -> Result<(), &'static str> {
    if btf.get(0..2) != Some(&0xeb9f_u16.to_le_bytes()[..]) {
        return Err("bad magic");
    }
    let hdr = |i: usize| word(btf, 8 + 4 * i).ok_or("truncated header");
    let hdr_len = word(btf, 4).ok_or("truncated header")? as usize;
    let (type_off, type_len, str_off, str_len) = (hdr(0)?, hdr(1)?, hdr(2)?, hdr(3)?);
    let types = btf
        .get(hdr_len + type_off as usize..hdr_len + (type_off + type_len) as usize)
        .ok_or("type section out of bounds")?;
    let strings = btf
        .get(hdr_len + str_off as usize..hdr_len + (str_off + str_len) as usize)
        .ok_or("string section out of bounds")?;
    let name = |off: u32| -> String {
        let s = strings.get(off as usize..).unwrap_or_default();
        let end = s.iter().position(|&c| c == 0).unwrap_or(s.len());
        match String::from_utf8_lossy(s.get(..end).unwrap_or_default()) {
            n if n.is_empty() => "(anon)".to_owned(),
            n => n.into_owned(),
        }
    };
    let mut pos = 0;
    let mut id = 1;
    while pos < types.len() {
        let w = |i: usize| word(types, pos + 4 * i).ok_or("truncated type");
        let (name_off, info, size) = (w(0)?, w(1)?, w(2)?);
        let (kind, vlen) = ((info >> 24) & 0x1f, (info & 0xffff) as usize);
        let n = name(name_off);
        let _ = write!(out, "[{id}] ");
        let words = match kind {
            KIND_INT => {
                let d = w(3)?;
                let enc = match d >> 24 {
                    0 => "(none)",
                    1 => "SIGNED",
                    2 => "CHAR",
                    4 => "BOOL",
                    _ => "?",
                };
                let (bits_off, bits) = ((d >> 16) & 0xff, d & 0xff);
                let _ = writeln!(
                    out,
                    "INT '{n}' size={size} bits_offset={bits_off} nr_bits={bits} encoding={enc}"
                );
                4
            }
            KIND_PTR => {
                let _ = writeln!(out, "PTR '{n}' type_id={size}");
                3
            }
            KIND_ARRAY => {
                let (t, i, ne) = (w(3)?, w(4)?, w(5)?);
                let _ = writeln!(
                    out,
                    "ARRAY '{n}' type_id={t} index_type_id={i} nr_elems={ne}"
                );
                6
            }
            KIND_STRUCT => {
                let _ = writeln!(out, "STRUCT '{n}' size={size} vlen={vlen}");
                for m in 0..vlen {
                    let (mn, mt, mo) = (w(3 + 3 * m)?, w(4 + 3 * m)?, w(5 + 3 * m)?);
                    let _ = writeln!(out, "\t'{}' type_id={mt} bits_offset={mo}", name(mn));
                }
                3 + 3 * vlen
            }
            KIND_VAR => {
                let linkage = match w(3)? {
                    0 => "static",
                    1 => "global",
                    _ => "extern",
                };
                let _ = writeln!(out, "VAR '{n}' type_id={size}, linkage={linkage}");
                4
            }
            KIND_DATASEC => {
                let _ = writeln!(out, "DATASEC '{n}' size={size} vlen={vlen}");
                for e in 0..vlen {
                    let (t, o, s) = (w(3 + 3 * e)?, w(4 + 3 * e)?, w(5 + 3 * e)?);
                    let _ = writeln!(out, "\ttype_id={t} offset={o} size={s}");
                }
                3 + 3 * vlen
            }
            KIND_FUNC => {
                let linkage = ["static", "global", "extern"]
                    .get(vlen)
                    .copied()
                    .unwrap_or("?");
                let _ = writeln!(out, "FUNC '{n}' type_id={size} linkage={linkage}");
                3
            }
            KIND_FUNC_PROTO => {
                let _ = writeln!(out, "FUNC_PROTO '{n}' ret_type_id={size} vlen={vlen}");
                for p in 0..vlen {
                    let (pn, pt) = (w(3 + 2 * p)?, w(4 + 2 * p)?);
                    let _ = writeln!(out, "\t'{}' type_id={pt}", name(pn));
                }
                3 + 2 * vlen
            }
            _ => return Err("kind not emitted by pol"),
        };
        pos += 4 * words;
        id += 1;
    }
    Ok(())
}
