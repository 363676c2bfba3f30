//! Checks an [`ObjectSpec`] against everything the loaders or the kernel would reject
//! (checklist `shared/notes/elf-btf.md`), so a bad spec fails here with an [`ObjError`].

use super::{AttachSpec, BtfTy, MapKind, MapSpec, ObjError, ObjectSpec, ProgramSpec, LD_IMM64};

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
        "cgroup/bind4",
        "cgroup/bind6",
        "cgroup/sendmsg4",
        "cgroup/sendmsg6",
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
        MapKind::StackTrace
            if m.key.size() != 4
                || !m.value.size().is_multiple_of(8)
                || m.value.size() > 127 * 8 =>
        {
            return Err(bad(
                "stack trace maps need a 4-byte key and 8 bytes per frame, at most 127 frames",
            ));
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

pub(crate) fn validate(spec: &ObjectSpec) -> Result<(), ObjError> {
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
