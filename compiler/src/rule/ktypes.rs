//! Offsets of the kernel structure members rules read (`task_struct.real_parent`,
//! `mm_struct.arg_start`, ...), from vmlinux BTF.
//!
//! Rules walk kernel structures with `probe_read_kernel` at offsets known when the
//! rule file is compiled, on the machine it runs on (no CO-RE relocations: pol writes
//! its own objects). The catalog's BTF reader keeps only what tracepoint arguments need,
//! so this one keeps structure members: the format is a header, a type table and a
//! string table (the kernel's Documentation/bpf/btf.rst).

use std::collections::HashMap;

/// Where member offsets come from: the running kernel ([`HostTypes`]) or a fixed table
/// (hermetic tests).
pub trait KernelTypes {
    /// Byte offset and size of `strukt.member` (members of anonymous structures and
    /// unions inside it are found too), or `None` when BTF has no such member.
    fn member(&self, strukt: &str, member: &str) -> Option<Member>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Member {
    pub offset: u32,
    pub size: u32,
}

/// Offsets from a fixed table: `("task_struct", "comm") -> (offset, size)`.
#[derive(Debug, Clone, Default)]
pub struct TableTypes(pub HashMap<(String, String), Member>);

impl TableTypes {
    /// The members rules read, at the offsets of a 6.18 x86_64 kernel (used by golden
    /// tests; `pol` itself reads the running kernel's).
    pub fn fixture() -> TableTypes {
        let rows: &[(&str, &str, u32, u32)] = &[
            ("task_struct", "real_parent", 2520, 8),
            ("linux_binprm", "file", 64, 8),
            ("file", "f_path", 64, 16),
            ("path", "mnt", 0, 8),
            ("path", "dentry", 8, 8),
            ("dentry", "d_hash", 8, 16),
            ("hlist_bl_node", "pprev", 8, 8),
            ("vfsmount", "mnt_flags", 16, 4),
            ("vfsmount", "mnt_sb", 8, 8),
            ("super_block", "s_flags", 80, 8),
            ("task_struct", "tgid", 2508, 4),
            ("task_struct", "comm", 3008, 16),
            ("task_struct", "cred", 2992, 8),
            ("task_struct", "mm", 2304, 8),
            ("cred", "uid", 8, 4),
            ("cred", "gid", 12, 4),
            ("cred", "euid", 24, 4),
            ("mm_struct", "arg_start", 376, 8),
            ("mm_struct", "arg_end", 384, 8),
            ("linux_binprm", "filename", 96, 8),
        ];
        TableTypes(
            rows.iter()
                .map(|&(s, m, offset, size)| ((s.into(), m.into()), Member { offset, size }))
                .collect(),
        )
    }
}

impl KernelTypes for TableTypes {
    fn member(&self, strukt: &str, member: &str) -> Option<Member> {
        self.0
            .get(&(strukt.to_string(), member.to_string()))
            .copied()
    }
}

/// No kernel types at all: every lookup fails (compiling without a kernel).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoTypes;

impl KernelTypes for NoTypes {
    fn member(&self, _: &str, _: &str) -> Option<Member> {
        None
    }
}

/// The running kernel's BTF (/sys/kernel/btf/vmlinux), read once per process.
#[derive(Debug, Clone, Copy, Default)]
pub struct HostTypes;

impl HostTypes {
    pub const PATH: &'static str = "/sys/kernel/btf/vmlinux";

    fn btf() -> Option<&'static Structs> {
        static BTF: std::sync::OnceLock<Option<Structs>> = std::sync::OnceLock::new();
        BTF.get_or_init(|| {
            let data = std::fs::read(Self::PATH).ok()?;
            Structs::parse(&data).ok()
        })
        .as_ref()
    }
}

impl KernelTypes for HostTypes {
    fn member(&self, strukt: &str, member: &str) -> Option<Member> {
        Self::btf()?.member(strukt, member)
    }
}

const KIND_INT: u8 = 1;
const KIND_PTR: u8 = 2;
const KIND_ARRAY: u8 = 3;
const KIND_STRUCT: u8 = 4;
const KIND_UNION: u8 = 5;
const KIND_ENUM: u8 = 6;
const KIND_TYPEDEF: u8 = 8;
const KIND_VOLATILE: u8 = 9;
const KIND_CONST: u8 = 10;
const KIND_RESTRICT: u8 = 11;
const KIND_FUNC_PROTO: u8 = 13;
const KIND_VAR: u8 = 14;
const KIND_DATASEC: u8 = 15;
const KIND_DECL_TAG: u8 = 17;
const KIND_TYPE_TAG: u8 = 18;
const KIND_ENUM64: u8 = 19;

#[derive(Debug, Clone)]
struct Ty {
    kind: u8,
    name: u32,
    size_or_type: u32,
    /// ARRAY: (element type, count).
    array: (u32, u32),
    /// STRUCT/UNION: (name, type, bit offset).
    members: Vec<(u32, u32, u32)>,
}

/// Structure layouts of a BTF blob.
#[derive(Debug)]
pub struct Structs {
    types: Vec<Ty>,
    strings: Vec<u8>,
    by_name: HashMap<String, u32>,
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

impl Structs {
    /// Parses a little-endian BTF blob.
    pub fn parse(data: &[u8]) -> Result<Structs, String> {
        let bad = |what: &str| format!("not valid BTF: {what}");
        if data.get(0..2) != Some(&[0x9f, 0xeb]) {
            return Err(bad("wrong magic"));
        }
        let hdr = u32_at(data, 4).ok_or_else(|| bad("short header"))? as usize;
        let f = |at| {
            u32_at(data, at)
                .map(|v| v as usize)
                .ok_or_else(|| bad("short header"))
        };
        let (toff, tlen, soff, slen) = (f(8)?, f(12)?, f(16)?, f(20)?);
        let tsec = data
            .get(hdr + toff..hdr + toff + tlen)
            .ok_or_else(|| bad("types out of bounds"))?;
        let strings = data
            .get(hdr + soff..hdr + soff + slen)
            .ok_or_else(|| bad("strings out of bounds"))?
            .to_vec();
        let mut types = vec![Ty {
            kind: 0,
            name: 0,
            size_or_type: 0,
            array: (0, 0),
            members: Vec::new(),
        }];
        let mut at = 0;
        while at < tsec.len() {
            let w = |i: usize| u32_at(tsec, at + 4 * i).ok_or_else(|| bad("truncated type"));
            let (name, info, st) = (w(0)?, w(1)?, w(2)?);
            let kind = ((info >> 24) & 0x1f) as u8;
            let bitfields = info >> 31 == 1;
            let n = (info & 0xffff) as usize;
            at += 12;
            let mut ty = Ty {
                kind,
                name,
                size_or_type: st,
                array: (0, 0),
                members: Vec::new(),
            };
            let extra = match kind {
                KIND_INT | KIND_VAR | KIND_DECL_TAG => 4,
                KIND_ARRAY => {
                    let e = u32_at(tsec, at).ok_or_else(|| bad("truncated array"))?;
                    let c = u32_at(tsec, at + 8).ok_or_else(|| bad("truncated array"))?;
                    ty.array = (e, c);
                    12
                }
                KIND_STRUCT | KIND_UNION => {
                    for i in 0..n {
                        let p = at + 12 * i;
                        let (Some(mn), Some(mt), Some(mo)) =
                            (u32_at(tsec, p), u32_at(tsec, p + 4), u32_at(tsec, p + 8))
                        else {
                            return Err(bad("truncated structure"));
                        };
                        let bits = if bitfields { mo & 0xff_ffff } else { mo };
                        ty.members.push((mn, mt, bits));
                    }
                    12 * n
                }
                KIND_DATASEC | KIND_ENUM64 => 12 * n,
                KIND_ENUM => 8 * n,
                KIND_FUNC_PROTO => 8 * n,
                k if k <= KIND_TYPE_TAG || k == 16 => 0,
                k => return Err(bad(&format!("unknown type kind {k}"))),
            };
            at += extra;
            types.push(ty);
        }
        let mut s = Structs {
            types,
            strings,
            by_name: HashMap::new(),
        };
        for (i, t) in s.types.iter().enumerate() {
            if t.kind == KIND_STRUCT && !t.members.is_empty() {
                let name = s.str(t.name).to_string();
                s.by_name.entry(name).or_insert(i as u32);
            }
        }
        Ok(s)
    }

    fn str(&self, off: u32) -> &str {
        let rest = self.strings.get(off as usize..).unwrap_or_default();
        let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
        std::str::from_utf8(&rest[..end]).unwrap_or("")
    }

    fn ty(&self, id: u32) -> Option<&Ty> {
        self.types.get(id as usize)
    }

    /// Follows typedefs and qualifiers.
    fn resolve(&self, mut id: u32) -> Option<&Ty> {
        for _ in 0..32 {
            let t = self.ty(id)?;
            match t.kind {
                KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG => {
                    id = t.size_or_type
                }
                _ => return Some(t),
            }
        }
        None
    }

    fn size(&self, id: u32) -> Option<u32> {
        let t = self.resolve(id)?;
        match t.kind {
            KIND_INT | KIND_STRUCT | KIND_UNION | KIND_ENUM | KIND_ENUM64 => Some(t.size_or_type),
            KIND_PTR => Some(8),
            KIND_ARRAY => Some(self.size(t.array.0)? * t.array.1),
            _ => None,
        }
    }

    /// `strukt.member`, looking into anonymous members.
    pub fn member(&self, strukt: &str, member: &str) -> Option<Member> {
        let id = *self.by_name.get(strukt)?;
        self.find(id, member, 0)
    }

    fn find(&self, id: u32, member: &str, base_bits: u32) -> Option<Member> {
        let t = self.resolve(id)?;
        if t.kind != KIND_STRUCT && t.kind != KIND_UNION {
            return None;
        }
        for &(name, ty, bits) in &t.members {
            let n = self.str(name);
            if n == member {
                return Some(Member {
                    offset: (base_bits + bits) / 8,
                    size: self.size(ty)?,
                });
            }
            if n.is_empty() {
                if let Some(m) = self.find(ty, member, base_bits + bits) {
                    return Some(m);
                }
            }
        }
        None
    }
}
