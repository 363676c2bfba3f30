//! Arguments of uprobes and uretprobes: a user-space function's parameters, read from
//! the registers the x86-64 System V calling convention puts them in (the program's
//! context is the `struct pt_regs` of the probed thread).
//!
//! Binaries rarely carry their types (Debian's libc has no DWARF or BTF), so the probe
//! declares them: `uprobe("/bin/bash", readline, "const char *prompt")` gives
//! `args.prompt`, a user string pointer; `uretprobe(libc, malloc, "void *")` types
//! `args.ret`. Without a declaration a uprobe has `args.arg0` .. `args.arg5` and a
//! uretprobe `args.ret`, all `u64`.

use super::format::{int_bytes, is_char, signed_c_type, strip_qualifiers};
use super::{ArgTy, TraceArg};

/// Offsets in x86-64 `struct pt_regs` of the registers holding arguments 0 to 5
/// (rdi, rsi, rdx, rcx, r8, r9), and of rax, the return value.
const ARG_REGS: [u32; 6] = [112, 104, 96, 88, 72, 64];
const RET_REG: u32 = 80;

/// The arguments a uprobe (`ret`: a uretprobe) may read, from the declaration `decl`
/// (`None`: the untyped defaults). An error names what does not parse.
pub fn uprobe_args(decl: Option<&str>, ret: bool) -> Result<Vec<TraceArg>, String> {
    let Some(decl) = decl else {
        return Ok(if ret {
            vec![reg(
                "ret",
                "u64",
                ArgTy::Int {
                    bytes: 8,
                    signed: false,
                },
                RET_REG,
                8,
            )]
        } else {
            ARG_REGS
                .iter()
                .enumerate()
                .map(|(i, &r)| {
                    let ty = ArgTy::Int {
                        bytes: 8,
                        signed: false,
                    };
                    reg(&format!("arg{i}"), "u64", ty, r, 8)
                })
                .collect()
        });
    };
    if ret {
        let c_type = decl.trim();
        let (ty, size) = classify(c_type).ok_or_else(|| {
            format!("`{c_type}` is not a return type pol can read (an integer or a pointer)")
        })?;
        return Ok(vec![reg("ret", c_type, ty, RET_REG, size)]);
    }
    let params: Vec<&str> = decl
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty() && *p != "void")
        .collect();
    if params.len() > ARG_REGS.len() {
        return Err(format!(
            "{} parameters declared: pol reads the first {} (the ones passed in registers)",
            params.len(),
            ARG_REGS.len()
        ));
    }
    params
        .iter()
        .zip(ARG_REGS)
        .map(|(p, r)| {
            // The name is the last identifier: `const char *path`, `unsigned long n`.
            let split = p
                .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .map_or(0, |i| i + 1);
            let (c_type, name) = (p[..split].trim(), &p[split..]);
            if name.is_empty() || c_type.is_empty() || name.starts_with(|c: char| c.is_ascii_digit())
            {
                return Err(format!("`{p}` is not a parameter: write a C type and a name, as in `const char *path`"));
            }
            let (ty, size) = classify(c_type).ok_or_else(|| {
                format!("`{c_type}` (parameter `{name}`) is not a type pol can read: integers and pointers are")
            })?;
            Ok(reg(name, c_type, ty, r, size))
        })
        .collect()
}

fn reg(name: &str, c_type: &str, ty: ArgTy, offset: u32, size: u32) -> TraceArg {
    TraceArg {
        name: name.to_string(),
        c_type: c_type.to_string(),
        ty,
        offset,
        size,
    }
}

/// A parameter type's use and size: integers at their width (read from the low bytes of
/// the register), pointers as user pointers (`char *` a string).
fn classify(c_type: &str) -> Option<(ArgTy, u32)> {
    let t = strip_qualifiers(c_type);
    if let Some(pointee) = t.strip_suffix('*') {
        let pointee = pointee.trim();
        let ty = ArgTy::Ptr {
            user: true,
            string: is_char(pointee) && !pointee.contains('*'),
        };
        return Some((ty, 8));
    }
    let bytes = int_bytes(&t)?;
    let signed = signed_c_type(&t)
        || matches!(
            t.as_str(),
            "char" | "int8_t" | "int16_t" | "int32_t" | "int64_t"
        );
    Some((ArgTy::Int { bytes, signed }, u32::from(bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declared_parameters_are_typed_and_read_from_their_registers() {
        let args = uprobe_args(Some("const char *path, int flags, unsigned long n"), false)
            .expect("parses");
        let got: Vec<(&str, ArgTy, u32)> = args
            .iter()
            .map(|a| (a.name.as_str(), a.ty, a.offset))
            .collect();
        assert_eq!(
            got,
            [
                (
                    "path",
                    ArgTy::Ptr {
                        user: true,
                        string: true
                    },
                    112
                ),
                (
                    "flags",
                    ArgTy::Int {
                        bytes: 4,
                        signed: true
                    },
                    104
                ),
                (
                    "n",
                    ArgTy::Int {
                        bytes: 8,
                        signed: false
                    },
                    96
                ),
            ]
        );
        let ret = uprobe_args(Some("void *"), true).expect("parses");
        assert_eq!(ret[0].name, "ret");
        assert_eq!(
            ret[0].ty,
            ArgTy::Ptr {
                user: true,
                string: false
            }
        );
    }

    #[test]
    fn undeclared_ones_are_six_words_or_the_return_value() {
        let args = uprobe_args(None, false).expect("defaults");
        assert_eq!(args.len(), 6);
        assert_eq!((args[5].name.as_str(), args[5].offset), ("arg5", 64));
        let ret = uprobe_args(None, true).expect("defaults");
        assert_eq!((ret[0].name.as_str(), ret[0].offset), ("ret", 80));
    }

    #[test]
    fn what_cannot_be_read_is_named() {
        let e = uprobe_args(Some("struct stat st"), false).expect_err("a struct");
        assert!(e.contains("`struct stat` (parameter `st`)"), "{e}");
        let e = uprobe_args(Some("int"), false).expect_err("no name");
        assert!(e.contains("`int` is not a parameter"), "{e}");
        let e = uprobe_args(
            Some("int a, int b, int c, int d, int e, int f, int g"),
            false,
        )
        .expect_err("seven");
        assert!(e.contains("7 parameters"), "{e}");
    }
}
