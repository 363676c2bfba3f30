//! A small reader of kernel BTF (/sys/kernel/btf/vmlinux): just enough to type the
//! arguments of raw tracepoints.
//!
//! Every raw tracepoint NAME has `typedef void (*btf_trace_NAME)(void *, ARGS...)`; the
//! argument names are on the proto of `__bpf_trace_NAME`, the kernel's own trampoline,
//! when BTF has it. (aya-obj's parser keeps its type table private, and the crates that
//! expose one are LGPL, hence this reader: the format is a header, a type table and a
//! string table; see the kernel's Documentation/bpf/btf.rst.)

use std::collections::HashMap;

use super::{ArgTy, TraceArg};

const MAGIC: u16 = 0xeb9f;

const KIND_INT: u8 = 1;
const KIND_PTR: u8 = 2;
const KIND_ARRAY: u8 = 3;
const KIND_STRUCT: u8 = 4;
const KIND_UNION: u8 = 5;
const KIND_ENUM: u8 = 6;
const KIND_FWD: u8 = 7;
const KIND_TYPEDEF: u8 = 8;
const KIND_VOLATILE: u8 = 9;
const KIND_CONST: u8 = 10;
const KIND_RESTRICT: u8 = 11;
const KIND_FUNC: u8 = 12;
const KIND_FUNC_PROTO: u8 = 13;
const KIND_VAR: u8 = 14;
const KIND_DATASEC: u8 = 15;
const KIND_FLOAT: u8 = 16;
const KIND_DECL_TAG: u8 = 17;
const KIND_TYPE_TAG: u8 = 18;
const KIND_ENUM64: u8 = 19;

/// One BTF type, reduced to what typing arguments needs.
#[derive(Debug, Clone, Copy)]
struct Ty {
    kind: u8,
    kind_flag: bool,
    name: u32,
    vlen: u16,
    /// `size` for INT, ENUM, STRUCT, UNION, FLOAT; `type` for the rest.
    size_or_type: u32,
    /// INT: the encoding word; ARRAY: element type.
    extra: u32,
    /// ARRAY: element count; FUNC_PROTO: index of its first parameter in `params`.
    extra2: u32,
}

/// Parsed kernel BTF: the type table and the raw tracepoints found in it.
#[derive(Debug)]
pub struct KernelBtf {
    types: Vec<Ty>,
    params: Vec<(u32, u32)>,
    strings: Vec<u8>,
    /// Raw tracepoint name -> (typedef's proto, `__bpf_trace_` function's proto if any).
    raw: HashMap<String, (u32, Option<u32>)>,
    /// Raw tracepoint name -> the type id of its `btf_trace_NAME` typedef.
    typedefs: HashMap<String, u32>,
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

impl KernelBtf {
    /// Parses a little-endian BTF blob (as /sys/kernel/btf/vmlinux is on x86_64).
    pub fn parse(data: &[u8]) -> Result<KernelBtf, String> {
        let bad = |what: &str| format!("not valid BTF: {what}");
        if u16_at(data, 0) != Some(MAGIC) {
            return Err(bad("wrong magic (or not little-endian)"));
        }
        let hdr_len = u32_at(data, 4).ok_or_else(|| bad("short header"))? as usize;
        let field = |at| u32_at(data, at).map(|v| v as usize);
        let (type_off, type_len, str_off, str_len) =
            match (field(8), field(12), field(16), field(20)) {
                (Some(a), Some(b), Some(c), Some(d)) => (a, b, c, d),
                _ => return Err(bad("short header")),
            };
        let section = |off: usize, len: usize| {
            data.get(hdr_len + off..hdr_len + off + len)
                .ok_or_else(|| bad("section out of bounds"))
        };
        let type_sec = section(type_off, type_len)?;
        let strings = section(str_off, str_len)?.to_vec();

        // Type id 0 is void.
        let mut types = vec![Ty {
            kind: 0,
            kind_flag: false,
            name: 0,
            vlen: 0,
            size_or_type: 0,
            extra: 0,
            extra2: 0,
        }];
        let mut params = Vec::new();
        let mut at = 0;
        while at < type_sec.len() {
            let word = |i: usize| u32_at(type_sec, at + 4 * i).ok_or_else(|| bad("truncated type"));
            let (name, info, size_or_type) = (word(0)?, word(1)?, word(2)?);
            let kind = ((info >> 24) & 0x1f) as u8;
            let vlen = (info & 0xffff) as u16;
            let mut ty = Ty {
                kind,
                kind_flag: info >> 31 == 1,
                name,
                vlen,
                size_or_type,
                extra: 0,
                extra2: 0,
            };
            at += 12;
            let n = usize::from(vlen);
            let extra_len = match kind {
                KIND_INT => {
                    ty.extra = u32_at(type_sec, at).ok_or_else(|| bad("truncated int"))?;
                    4
                }
                KIND_ARRAY => {
                    ty.extra = u32_at(type_sec, at).ok_or_else(|| bad("truncated array"))?;
                    ty.extra2 = u32_at(type_sec, at + 8).ok_or_else(|| bad("truncated array"))?;
                    12
                }
                KIND_STRUCT | KIND_UNION | KIND_DATASEC | KIND_ENUM64 => 12 * n,
                KIND_ENUM => 8 * n,
                KIND_FUNC_PROTO => {
                    ty.extra2 = params.len() as u32;
                    for i in 0..n {
                        let p = at + 8 * i;
                        match (u32_at(type_sec, p), u32_at(type_sec, p + 4)) {
                            (Some(pn), Some(pt)) => params.push((pn, pt)),
                            _ => return Err(bad("truncated function prototype")),
                        }
                    }
                    8 * n
                }
                KIND_VAR | KIND_DECL_TAG => 4,
                KIND_PTR | KIND_FWD | KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT
                | KIND_FUNC | KIND_FLOAT | KIND_TYPE_TAG => 0,
                k => return Err(bad(&format!("unknown type kind {k}"))),
            };
            at += extra_len;
            types.push(ty);
        }
        let mut btf = KernelBtf {
            types,
            params,
            strings,
            raw: HashMap::new(),
            typedefs: HashMap::new(),
        };
        btf.index_raw_tracepoints();
        Ok(btf)
    }

    fn index_raw_tracepoints(&mut self) {
        let mut raw = HashMap::new();
        let mut typedefs = HashMap::new();
        // Trampolines by their parameter types: an event defined from a class
        // (DEFINE_EVENT) has the class's trampoline, `__bpf_trace_CLASS`.
        let mut by_sig: HashMap<Vec<u32>, Vec<(&str, u32)>> = HashMap::new();
        for (id, ty) in self.types.iter().enumerate() {
            // Only typedefs and functions are named here: the rest need no string.
            if ty.kind != KIND_TYPEDEF && ty.kind != KIND_FUNC {
                continue;
            }
            let name = self.str(ty.name);
            if ty.kind == KIND_TYPEDEF {
                if let Some(tp) = name.strip_prefix("btf_trace_") {
                    // typedef -> PTR -> FUNC_PROTO.
                    let ptr = self.ty(ty.size_or_type);
                    if ptr.kind == KIND_PTR && self.ty(ptr.size_or_type).kind == KIND_FUNC_PROTO {
                        raw.insert(tp.to_string(), (ptr.size_or_type, None));
                        typedefs.insert(tp.to_string(), id as u32);
                    }
                }
            } else if ty.kind == KIND_FUNC {
                if let Some(class) = name.strip_prefix("__bpf_trace_") {
                    by_sig
                        .entry(self.signature(ty.size_or_type))
                        .or_default()
                        .push((class, ty.size_or_type));
                }
            }
        }
        for (tp, entry) in raw.iter_mut() {
            let Some(candidates) = by_sig.get(&self.signature(entry.0)) else {
                continue;
            };
            // The event's own trampoline, else its class: the longest shared prefix.
            let common = |c: &str| {
                c.bytes()
                    .zip(tp.bytes())
                    .take_while(|(a, b)| a == b)
                    .count()
            };
            let best = candidates
                .iter()
                .max_by_key(|(c, _)| (*c == tp.as_str(), common(c), std::cmp::Reverse(*c)));
            entry.1 = best.map(|&(_, proto)| proto);
        }
        self.raw = raw;
        self.typedefs = typedefs;
    }

    /// The parameter types of a function prototype.
    fn signature(&self, proto: u32) -> Vec<u32> {
        self.proto_params(proto).iter().map(|&(_, t)| t).collect()
    }

    fn ty(&self, id: u32) -> Ty {
        self.types
            .get(id as usize)
            .copied()
            .unwrap_or(self.types[0])
    }

    fn str(&self, off: u32) -> &str {
        let rest = self.strings.get(off as usize..).unwrap_or_default();
        let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
        std::str::from_utf8(&rest[..end]).unwrap_or("")
    }

    /// The type id of the typedef `btf_trace_NAME`: what a BTF-typed tracepoint program
    /// on NAME is loaded against (BPF_PROG_LOAD's `attach_btf_id`).
    pub fn raw_tracepoint_type_id(&self, name: &str) -> Option<u32> {
        self.typedefs.get(name).copied()
    }

    /// The type id of the kernel function `name` (a FUNC), as fentry and LSM programs
    /// name their target.
    pub fn func_id(&self, name: &str) -> Option<u32> {
        self.type_id(name, KIND_FUNC)
    }

    fn type_id(&self, name: &str, kind: u8) -> Option<u32> {
        self.types
            .iter()
            .position(|t| t.kind == kind && self.str(t.name) == name)
            .and_then(|i| u32::try_from(i).ok())
    }

    /// Names of every raw tracepoint, unsorted.
    pub fn raw_tracepoints(&self) -> impl Iterator<Item = &str> {
        self.raw.keys().map(String::as_str)
    }

    /// The arguments of raw tracepoint `name` (without the leading `void *__data`), or
    /// `None` when BTF has no `btf_trace_NAME`.
    pub fn raw_tracepoint_args(&self, name: &str) -> Option<Vec<TraceArg>> {
        let &(proto, named) = self.raw.get(name)?;
        let params = self.proto_params(proto);
        let names = named.map(|p| self.proto_params(p));
        let args = params
            .iter()
            .enumerate()
            .skip(1)
            .map(|(i, &(pname, ty))| {
                let from_func = names.and_then(|n| n.get(i)).map(|&(n, _)| self.str(n));
                let name = match from_func.or(Some(self.str(pname))) {
                    Some(n) if !n.is_empty() => n.to_string(),
                    _ => format!("arg{}", i - 1),
                };
                TraceArg {
                    name,
                    c_type: self.c_type(ty, 0),
                    ty: self.arg_ty(ty),
                    offset: 8 * (i as u32 - 1),
                    size: self.size_of(ty, 0).min(8),
                }
            })
            .collect();
        Some(args)
    }

    fn proto_params(&self, proto: u32) -> &[(u32, u32)] {
        let t = self.ty(proto);
        let start = t.extra2 as usize;
        self.params
            .get(start..start + usize::from(t.vlen))
            .unwrap_or_default()
    }

    /// Follows typedefs and qualifiers.
    fn resolve(&self, mut id: u32) -> Ty {
        for _ in 0..32 {
            let t = self.ty(id);
            match t.kind {
                KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG => {
                    id = t.size_or_type
                }
                _ => return t,
            }
        }
        self.types[0]
    }

    fn size_of(&self, id: u32, depth: u32) -> u32 {
        let t = self.resolve(id);
        match t.kind {
            KIND_INT | KIND_ENUM | KIND_ENUM64 | KIND_STRUCT | KIND_UNION | KIND_FLOAT => {
                t.size_or_type
            }
            KIND_PTR => 8,
            KIND_ARRAY if depth < 8 => t.extra2.saturating_mul(self.size_of(t.extra, depth + 1)),
            _ => 0,
        }
    }

    fn arg_ty(&self, id: u32) -> ArgTy {
        let t = self.resolve(id);
        match t.kind {
            KIND_INT => ArgTy::Int {
                bytes: t.size_or_type.min(8) as u8,
                // Encoding bit 0: signed; a bool is unsigned.
                signed: t.extra >> 24 & 1 == 1,
            },
            KIND_ENUM | KIND_ENUM64 => ArgTy::Int {
                bytes: t.size_or_type.min(8) as u8,
                signed: t.kind_flag,
            },
            KIND_PTR => {
                let pointee = self.resolve(t.size_or_type);
                let string = pointee.kind == KIND_INT
                    && pointee.size_or_type == 1
                    && self.str(pointee.name).ends_with("char");
                // `__user` survives in BTF only as a type tag (clang-built kernels).
                let user = self.has_user_tag(t.size_or_type);
                ArgTy::Ptr { user, string }
            }
            _ => ArgTy::Other,
        }
    }

    fn has_user_tag(&self, mut id: u32) -> bool {
        for _ in 0..8 {
            let t = self.ty(id);
            match t.kind {
                KIND_TYPE_TAG if self.str(t.name) == "user" => return true,
                KIND_TYPE_TAG | KIND_CONST | KIND_VOLATILE | KIND_RESTRICT => id = t.size_or_type,
                _ => return false,
            }
        }
        false
    }

    /// The type as C spells it: `struct task_struct *`, `const char *`, `bool`.
    fn c_type(&self, id: u32, depth: u32) -> String {
        if depth > 16 {
            return "...".into();
        }
        let t = self.ty(id);
        let name = self.str(t.name);
        match t.kind {
            0 => "void".into(),
            KIND_INT | KIND_TYPEDEF | KIND_FLOAT => name.into(),
            KIND_STRUCT => format!("struct {}", or_anon(name)),
            KIND_UNION => format!("union {}", or_anon(name)),
            KIND_ENUM | KIND_ENUM64 => format!("enum {}", or_anon(name)),
            KIND_FWD if t.kind_flag => format!("union {name}"),
            KIND_FWD => format!("struct {name}"),
            KIND_PTR => {
                let inner = self.ty(t.size_or_type);
                if inner.kind == KIND_FUNC_PROTO {
                    return "void (*)(...)".into();
                }
                let s = self.c_type(t.size_or_type, depth + 1);
                if s.ends_with('*') {
                    format!("{s}*")
                } else {
                    format!("{s} *")
                }
            }
            KIND_CONST => format!("const {}", self.c_type(t.size_or_type, depth + 1)),
            KIND_VOLATILE => format!("volatile {}", self.c_type(t.size_or_type, depth + 1)),
            KIND_RESTRICT | KIND_TYPE_TAG => self.c_type(t.size_or_type, depth + 1),
            KIND_ARRAY => format!("{}[{}]", self.c_type(t.extra, depth + 1), t.extra2),
            _ => "?".into(),
        }
    }
}

fn or_anon(name: &str) -> &str {
    if name.is_empty() {
        "(anon)"
    } else {
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hand-made BTF blob: int, char, bool, struct task_struct, pointers, const, and
    /// the typedef / trampoline pair of a raw tracepoint `demo(bool, task *, const char *)`.
    fn blob() -> Vec<u8> {
        let mut strings = b"\0".to_vec();
        let mut s = |n: &str| {
            let off = strings.len() as u32;
            strings.extend_from_slice(n.as_bytes());
            strings.push(0);
            off
        };
        let names = [
            s("int"),
            s("char"),
            s("_Bool"),
            s("task_struct"),
            s("btf_trace_demo"),
            s("__bpf_trace_demo"),
            s("__data"),
            s("preempt"),
            s("prev"),
            s("file"),
        ];
        let mut t = Vec::new();
        let mut ty = |name: u32, kind: u32, vlen: u32, st: u32, extra: &[u32]| {
            for w in [name, kind << 24 | vlen, st].iter().chain(extra) {
                t.extend_from_slice(&w.to_le_bytes());
            }
        };
        ty(names[0], 1, 0, 4, &[1 << 24 | 32]); // 1 int (signed)
        ty(names[1], 1, 0, 1, &[2 << 24 | 8]); // 2 char
        ty(names[2], 1, 0, 1, &[4 << 24 | 8]); // 3 _Bool
        ty(names[3], 4, 0, 64, &[]); // 4 struct task_struct
        ty(0, 2, 0, 4, &[]); // 5 struct task_struct *
        ty(0, 10, 0, 2, &[]); // 6 const char
        ty(0, 2, 0, 6, &[]); // 7 const char *
        ty(0, 2, 0, 0, &[]); // 8 void *
        ty(0, 13, 4, 0, &[0, 8, 0, 3, 0, 5, 0, 7]); // 9 proto, unnamed
        ty(0, 2, 0, 9, &[]); // 10 ptr to proto
        ty(names[4], 8, 0, 10, &[]); // 11 typedef btf_trace_demo
        let named = [names[6], 8, names[7], 3, names[8], 5, names[9], 7];
        ty(0, 13, 4, 0, &named); // 12 proto, named
        ty(names[5], 12, 0, 12, &[]); // 13 func __bpf_trace_demo
        let mut out = Vec::new();
        for w in [0x0001_eb9f_u32, 24, 0, t.len() as u32, t.len() as u32] {
            out.extend_from_slice(&w.to_le_bytes());
        }
        out.extend_from_slice(&(strings.len() as u32).to_le_bytes());
        out.extend_from_slice(&t);
        out.extend_from_slice(&strings);
        out
    }

    #[test]
    fn raw_tracepoint_arguments_from_a_small_blob() {
        let btf = KernelBtf::parse(&blob()).expect("parses");
        assert_eq!(btf.raw_tracepoints().collect::<Vec<_>>(), vec!["demo"]);
        let args = btf.raw_tracepoint_args("demo").expect("demo");
        let got: Vec<(String, String, ArgTy, u32, u32)> = args
            .into_iter()
            .map(|a| (a.name, a.c_type, a.ty, a.offset, a.size))
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    "preempt".into(),
                    "_Bool".into(),
                    ArgTy::Int {
                        bytes: 1,
                        signed: false
                    },
                    0,
                    1
                ),
                (
                    "prev".into(),
                    "struct task_struct *".into(),
                    ArgTy::Ptr {
                        user: false,
                        string: false
                    },
                    8,
                    8
                ),
                (
                    "file".into(),
                    "const char *".into(),
                    ArgTy::Ptr {
                        user: false,
                        string: true
                    },
                    16,
                    8
                ),
            ]
        );
        assert!(btf.raw_tracepoint_args("nope").is_none());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(KernelBtf::parse(b"").is_err());
        assert!(KernelBtf::parse(&[0x9f, 0xeb, 1, 0, 24, 0, 0, 0]).is_err());
        let mut b = blob();
        b.truncate(b.len() - 40);
        assert!(KernelBtf::parse(&b).is_err());
        // Every prefix of a valid blob fails cleanly or parses.
        let b = blob();
        for n in 0..b.len() {
            let _ = KernelBtf::parse(&b[..n]);
        }
    }
}
