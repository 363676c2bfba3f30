//! tracefs `events/CATEGORY/NAME/format` files into typed arguments.
//!
//! A field line reads `field:DECL; offset:N; size:N; signed:0|1;`. The record layout is
//! what the kernel writes, so offsets and sizes are taken as given (syscall arguments are
//! 8 bytes whatever their C type); the C type decides strings, pointers and signedness.

use super::{ArgTy, TraceArg};

/// The arguments of tracepoint `category:name` from its format file `text`, without the
/// `common_*` fields. Fields whose type pol cannot use yet are kept as [`ArgTy::Other`];
/// an error is a line that is not a field line at all.
pub fn parse_format(category: &str, text: &str) -> Result<Vec<TraceArg>, String> {
    let mut args = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        let Some(rest) = line.strip_prefix("field:") else {
            continue;
        };
        let field = parse_field(rest).map_err(|why| format!("line {}: {why}: {line}", i + 1))?;
        if field.name.starts_with("common_") {
            continue;
        }
        args.push(typed(category, field));
    }
    Ok(args)
}

/// One field line, split.
struct Field {
    name: String,
    /// The declaration without the name: `const char *`, `char[16]`.
    c_type: String,
    /// The base type, without array dimensions.
    base: String,
    array: Option<u32>,
    data_loc: bool,
    offset: u32,
    size: u32,
    signed: bool,
}

fn parse_field(rest: &str) -> Result<Field, &'static str> {
    let mut parts = rest.split(';').map(str::trim);
    let decl = parts.next().ok_or("no declaration")?;
    let mut num = |key: &str| -> Result<u32, &'static str> {
        parts
            .next()
            .and_then(|p| p.strip_prefix(key))
            .and_then(|v| v.trim().parse().ok())
            .ok_or("missing offset, size or signed")
    };
    let offset = num("offset:")?;
    let size = num("size:")?;
    let signed = num("signed:")? != 0;

    let (data_loc, decl) = match decl
        .strip_prefix("__data_loc ")
        .or_else(|| decl.strip_prefix("__rel_loc "))
    {
        Some(d) => (true, d.trim()),
        None => (false, decl),
    };
    // `TYPE NAME`, `TYPE NAME[N]`, or for __data_loc `TYPE[] NAME`.
    let (head, dims) = match decl.find('[') {
        Some(i) if !data_loc => (decl[..i].trim_end(), &decl[i..]),
        _ => (decl, ""),
    };
    let split = head
        .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .ok_or("no name in the declaration")?;
    let name = &head[split + 1..];
    let base = head[..=split].trim();
    if name.is_empty() || base.is_empty() {
        return Err("no name in the declaration");
    }
    let array = match dims {
        "" => None,
        d => {
            // One dimension `[N]`; anything else is not a plain array.
            let n = d
                .strip_prefix('[')
                .and_then(|d| d.strip_suffix(']'))
                .and_then(|n| n.trim().parse().ok());
            Some(n.unwrap_or(u32::MAX))
        }
    };
    let mut c_type = base.to_string();
    if data_loc {
        c_type = format!("__data_loc {base}");
    } else if !dims.is_empty() {
        c_type.push_str(dims);
    }
    Ok(Field {
        name: name.to_string(),
        c_type,
        base: base.trim_end_matches("[]").trim().to_string(),
        array,
        data_loc,
        offset,
        size,
        signed,
    })
}

fn typed(category: &str, f: Field) -> TraceArg {
    let char_base = is_char(&f.base);
    let ty = if f.data_loc {
        ArgTy::DataLoc { string: char_base }
    } else if let Some(len) = f.array {
        match u8::try_from(if len == 0 { 0 } else { f.size / len.max(1) }) {
            Ok(elem) if len != u32::MAX && (len == 0 || f.size.is_multiple_of(len)) => {
                ArgTy::Array {
                    elem_bytes: if len == 0 {
                        int_bytes(&f.base).unwrap_or(0)
                    } else {
                        elem
                    },
                    len,
                    string: char_base,
                }
            }
            _ => ArgTy::Other,
        }
    } else if f.base.ends_with('*') {
        let pointee = f.base.trim_end_matches('*').trim();
        ArgTy::Ptr {
            // Pointers in syscall records are the syscall's arguments: user memory.
            user: category == "syscalls",
            string: is_char(pointee) && !pointee.contains('*'),
        }
    } else if matches!(f.size, 1 | 2 | 4 | 8) && !is_aggregate(&f.base) {
        ArgTy::Int {
            bytes: f.size as u8,
            signed: f.signed || signed_c_type(&f.base),
        }
    } else {
        ArgTy::Other
    };
    TraceArg {
        name: f.name,
        c_type: f.c_type,
        ty,
        offset: f.offset,
        size: f.size,
    }
}

pub(super) fn strip_qualifiers(t: &str) -> String {
    t.split_whitespace()
        .filter(|w| !matches!(*w, "const" | "volatile"))
        .collect::<Vec<_>>()
        .join(" ")
}

pub(super) fn is_char(t: &str) -> bool {
    matches!(strip_qualifiers(t).as_str(), "char" | "signed char")
}

fn is_aggregate(t: &str) -> bool {
    let t = strip_qualifiers(t);
    t.starts_with("struct ") || t.starts_with("union ")
}

/// C types that are signed even where the record stores them widened as unsigned
/// (syscall arguments: `int dfd` is `size:8; signed:0`).
pub(super) fn signed_c_type(t: &str) -> bool {
    let t = strip_qualifiers(t);
    matches!(
        t.as_str(),
        "int"
            | "long"
            | "short"
            | "long long"
            | "signed char"
            | "signed"
            | "signed int"
            | "long int"
            | "short int"
            | "pid_t"
            | "ssize_t"
            | "loff_t"
            | "off_t"
            | "s8"
            | "s16"
            | "s32"
            | "s64"
            | "__s8"
            | "__s16"
            | "__s32"
            | "__s64"
            | "clockid_t"
            | "key_serial_t"
            | "time64_t"
            | "ktime_t"
    )
}

/// Element size of a zero-length array, from its type name.
pub(super) fn int_bytes(t: &str) -> Option<u8> {
    let t = strip_qualifiers(t);
    Some(match t.as_str() {
        "char" | "signed char" | "unsigned char" | "u8" | "__u8" | "s8" | "__s8" | "bool"
        | "_Bool" | "uint8_t" | "int8_t" => 1,
        "short" | "unsigned short" | "u16" | "__u16" | "s16" | "__s16" | "uint16_t" | "int16_t" => {
            2
        }
        "int" | "unsigned int" | "unsigned" | "u32" | "__u32" | "s32" | "__s32" | "uint32_t"
        | "int32_t" | "pid_t" | "uid_t" | "gid_t" | "mode_t" => 4,
        "long" | "unsigned long" | "u64" | "__u64" | "s64" | "__s64" | "long long"
        | "unsigned long long" | "uint64_t" | "int64_t" | "size_t" | "ssize_t" | "off_t"
        | "uintptr_t" | "intptr_t" => 8,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPENAT: &str = "name: sys_enter_openat
ID: 640
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:int __syscall_nr;\toffset:8;\tsize:4;\tsigned:1;
\tfield:int dfd;\toffset:16;\tsize:8;\tsigned:0;
\tfield:const char * filename;\toffset:24;\tsize:8;\tsigned:0;
\tfield:int flags;\toffset:32;\tsize:8;\tsigned:0;
\tfield:umode_t mode;\toffset:40;\tsize:8;\tsigned:0;

print fmt: \"dfd: 0x%08lx\", ((unsigned long)(REC->dfd))
";

    fn arg(name: &str, c_type: &str, ty: ArgTy, offset: u32, size: u32) -> TraceArg {
        TraceArg {
            name: name.into(),
            c_type: c_type.into(),
            ty,
            offset,
            size,
        }
    }

    #[test]
    fn syscall_record_with_a_user_string() {
        let args = parse_format("syscalls", OPENAT).expect("parses");
        let int = |bytes, signed| ArgTy::Int { bytes, signed };
        assert_eq!(
            args,
            vec![
                arg("__syscall_nr", "int", int(4, true), 8, 4),
                arg("dfd", "int", int(8, true), 16, 8),
                arg(
                    "filename",
                    "const char *",
                    ArgTy::Ptr {
                        user: true,
                        string: true
                    },
                    24,
                    8
                ),
                arg("flags", "int", int(8, true), 32, 8),
                arg("mode", "umode_t", int(8, false), 40, 8),
            ]
        );
    }

    #[test]
    fn arrays_data_loc_and_structs() {
        let text = "format:
\tfield:__data_loc char[] filename;\toffset:8;\tsize:4;\tsigned:0;
\tfield:char comm[16];\toffset:12;\tsize:16;\tsigned:0;
\tfield:__u8 saddr[4];\toffset:28;\tsize:4;\tsigned:0;
\tfield:unsigned long args[6];\toffset:32;\tsize:48;\tsigned:0;
\tfield:void * skbaddr;\toffset:80;\tsize:8;\tsigned:0;
\tfield:struct foo bar;\toffset:88;\tsize:24;\tsigned:0;
\tfield:__data_loc u8[] buf;\toffset:112;\tsize:4;\tsigned:0;
";
        let args = parse_format("sched", text).expect("parses");
        let tys: Vec<(&str, &str, ArgTy)> = args
            .iter()
            .map(|a| (a.name.as_str(), a.c_type.as_str(), a.ty))
            .collect();
        assert_eq!(
            tys,
            vec![
                (
                    "filename",
                    "__data_loc char[]",
                    ArgTy::DataLoc { string: true }
                ),
                (
                    "comm",
                    "char[16]",
                    ArgTy::Array {
                        elem_bytes: 1,
                        len: 16,
                        string: true
                    }
                ),
                (
                    "saddr",
                    "__u8[4]",
                    ArgTy::Array {
                        elem_bytes: 1,
                        len: 4,
                        string: false
                    }
                ),
                (
                    "args",
                    "unsigned long[6]",
                    ArgTy::Array {
                        elem_bytes: 8,
                        len: 6,
                        string: false
                    }
                ),
                (
                    "skbaddr",
                    "void *",
                    ArgTy::Ptr {
                        user: false,
                        string: false
                    }
                ),
                ("bar", "struct foo", ArgTy::Other),
                ("buf", "__data_loc u8[]", ArgTy::DataLoc { string: false }),
            ]
        );
    }

    #[test]
    fn a_broken_field_line_is_an_error_naming_it() {
        let e = parse_format(
            "x",
            "format:\n\tfield:int;\toffset:8;\tsize:4;\tsigned:1;\n",
        )
        .expect_err("no name");
        assert!(e.starts_with("line 2: no name"), "{e}");
        let e = parse_format("x", "\tfield:int a;\toffset:8;\n").expect_err("no size");
        assert!(e.contains("missing offset, size or signed"), "{e}");
    }
}
