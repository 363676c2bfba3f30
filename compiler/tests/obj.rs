//! Tests for `obj`: objects parsed back with aya-obj and `object`, loaded by bpftool and
//! attached by iproute2 (root only; a skip is a failure when `CI=true`), layout.json and
//! BTF snapshots, and every `ObjError`.

use std::path::{Path, PathBuf};
use std::process::Command;

use aya_obj::maps::Map;
use aya_obj::{Object, ProgramSection};
use object::read::elf::{ElfFile64, FileHeader as _, SectionHeader as _};
use object::{elf, Endianness, Object as _, ObjectSection as _, ObjectSymbol as _};
use pol_compiler::bpf::Insn;
use pol_compiler::obj::{
    btf_section, dump_btf, layout, write_object, AttachSpec, BtfTy, MapKind, MapReloc, MapSpec,
    ObjError, ObjectSpec, ProgramSpec, RuleInfo, TcDirection,
};

// ---- instruction helpers -------------------------------------------------------------

fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        dst,
        src,
        off,
        imm,
    }
}
fn mov_imm(dst: u8, imm: i32) -> Insn {
    insn(0xb7, dst, 0, 0, imm)
}
fn mov_reg(dst: u8, src: u8) -> Insn {
    insn(0xbf, dst, src, 0, 0)
}
fn add_imm(dst: u8, imm: i32) -> Insn {
    insn(0x07, dst, 0, 0, imm)
}
/// `*(u32 *)(r10 + off) = imm`
fn st_w(off: i16, imm: i32) -> Insn {
    insn(0x62, 10, 0, off, imm)
}
fn call(helper: i32) -> Insn {
    insn(0x85, 0, 0, 0, helper)
}
fn jeq_imm(dst: u8, imm: i32, off: i16) -> Insn {
    insn(0x15, dst, 0, off, imm)
}
fn exit() -> Insn {
    insn(0x95, 0, 0, 0, 0)
}
/// `ld_imm64 dst = map` (src_reg 1 = BPF_PSEUDO_MAP_FD); two slots, the second all zero.
fn ld_map(dst: u8) -> [Insn; 2] {
    [insn(0x18, dst, 1, 0, 0), insn(0, 0, 0, 0, 0)]
}
/// `r2 = r10 + off; call map_lookup_elem` after `r1` holds the map.
fn lookup(off: i32) -> [Insn; 3] {
    [mov_reg(2, 10), add_imm(2, off), call(1)]
}

fn reloc(insn_index: usize, map: &str) -> MapReloc {
    MapReloc {
        insn_index,
        map: map.into(),
    }
}

fn field(name: &str, ty: BtfTy) -> (String, BtfTy) {
    (name.into(), ty)
}

// ---- the spec under test -------------------------------------------------------------

const XDP_PASS: i32 = 2;

fn xdp(name: &str, insns: Vec<Insn>, map_relocs: Vec<MapReloc>) -> ProgramSpec {
    ProgramSpec {
        name: name.into(),
        section: "xdp".into(),
        insns,
        map_relocs,
        attach: AttachSpec::Xdp {
            iface: "eth0".into(),
        },
        rules: vec![],
        stats: None,
        lines: Vec::new(),
    }
}

fn spec() -> ObjectSpec {
    let pass_all = xdp("pass_all", vec![mov_imm(0, XDP_PASS), exit()], vec![]);

    let mut insns = vec![st_w(-8, 7)];
    insns.extend(ld_map(1)); // slot 1
    insns.extend(lookup(-8));
    insns.extend([
        jeq_imm(0, 0, 2),
        mov_imm(1, 1),
        insn(0xdb, 0, 1, 0, 0), // lock *(u64 *)(r0 + 0) += r1
        mov_imm(0, XDP_PASS),
        exit(),
    ]);
    let mut count = xdp("count", insns, vec![reloc(1, "counts")]);
    count.rules = vec![
        RuleInfo {
            index: 0,
            line: 3,
            text: "drop tcp.dport == 23".into(),
            verdict: "drop".into(),
        },
        RuleInfo {
            index: 1,
            line: 4,
            text: "default pass".into(),
            verdict: "pass".into(),
        },
    ];

    let mut insns = vec![st_w(-8, 32), st_w(-4, 0x0100_000a)];
    insns.extend(ld_map(1)); // slot 2
    insns.extend(lookup(-8));
    insns.push(st_w(-12, 0));
    insns.extend(ld_map(1)); // slot 8
    insns.extend(lookup(-12));
    insns.extend([mov_imm(0, 0), exit()]);
    let tc_filter = ProgramSpec {
        name: "tc_filter".into(),
        section: "classifier".into(),
        insns,
        map_relocs: vec![reloc(2, "trie"), reloc(8, "config")],
        attach: AttachSpec::Tc {
            iface: "eth0".into(),
            direction: TcDirection::Ingress,
        },
        rules: vec![],
        stats: None,
        lines: Vec::new(),
    };

    let mut insns = ld_map(1).to_vec(); // slot 0
    insns.extend([
        mov_imm(2, 16),
        mov_imm(3, 0),
        call(131), // ringbuf_reserve
        jeq_imm(0, 0, 3),
        mov_reg(1, 0),
        mov_imm(2, 0),
        call(132), // ringbuf_submit
        mov_imm(0, 0),
        exit(),
    ]);
    let trace_getpid = ProgramSpec {
        name: "trace_getpid".into(),
        section: "tp/syscalls/sys_enter_getpid".into(),
        insns,
        map_relocs: vec![reloc(0, "events")],
        attach: AttachSpec::Tracepoint {
            category: "syscalls".into(),
            name: "sys_enter_getpid".into(),
        },
        rules: vec![],
        stats: None,
        lines: Vec::new(),
    };

    let map = |name: &str, kind, key, value, max_entries| MapSpec {
        name: name.into(),
        kind,
        key,
        value,
        max_entries,
        flags: 0,
    };
    let lpm_key = BtfTy::Struct {
        name: "lpm_v4".into(),
        fields: vec![
            field("prefixlen", BtfTy::U32),
            field("addr", BtfTy::Bytes(4)),
        ],
    };
    let counter = BtfTy::Struct {
        name: "counter".into(),
        fields: vec![field("packets", BtfTy::U64), field("bytes", BtfTy::U64)],
    };
    let event = BtfTy::Struct {
        name: "event".into(),
        fields: vec![
            field("pid", BtfTy::U32),
            field("flag", BtfTy::U8),
            field("ts", BtfTy::U64),
        ],
    };
    ObjectSpec {
        license: "GPL".into(),
        // pass_all and count share the `xdp` section, with tc_filter between them in the spec.
        programs: vec![pass_all, tc_filter, count, trace_getpid],
        maps: vec![
            map("counts", MapKind::Hash, BtfTy::U32, BtfTy::U64, 1024),
            map("config", MapKind::Array, BtfTy::U32, BtfTy::U64, 16),
            map("trie", MapKind::LpmTrie, lpm_key, BtfTy::U8, 256),
            map("stats", MapKind::PercpuArray, BtfTy::U32, counter, 4),
            map("events", MapKind::RingBuf, BtfTy::U8, event, 4096),
        ],
    }
}

fn map_less_spec() -> ObjectSpec {
    ObjectSpec {
        license: "GPL".into(),
        programs: vec![xdp("pass_all", vec![mov_imm(0, XDP_PASS), exit()], vec![])],
        maps: vec![],
    }
}

fn object_bytes() -> Vec<u8> {
    write_object(&spec()).expect("test spec is valid")
}

// ---- parsed back with aya-obj ---------------------------------------------------------

#[test]
fn aya_obj_sees_programs_maps_and_relocations() {
    let spec = spec();
    let bytes = object_bytes();
    let mut obj = Object::parse(&bytes).expect("aya-obj parses the object");
    assert_eq!(obj.license.to_str(), Ok("GPL"));
    assert!(obj.btf.is_some());

    let mut names: Vec<_> = obj.programs.keys().cloned().collect();
    names.sort();
    assert_eq!(names, ["count", "pass_all", "tc_filter", "trace_getpid"]);
    let section = |n: &str| obj.programs.get(n).map(|p| p.section.clone());
    assert!(matches!(
        section("pass_all"),
        Some(ProgramSection::Xdp { frags: false, .. })
    ));
    assert!(matches!(
        section("count"),
        Some(ProgramSection::Xdp { frags: false, .. })
    ));
    assert!(matches!(
        section("tc_filter"),
        Some(ProgramSection::SchedClassifier)
    ));
    assert!(matches!(
        section("trace_getpid"),
        Some(ProgramSection::TracePoint)
    ));

    // Same section for both xdp programs, one after the other, instructions intact.
    let pa = obj.programs.get("pass_all").expect("pass_all");
    let co = obj.programs.get("count").expect("count");
    assert_eq!(pa.section_index, co.section_index);
    for p in &spec.programs {
        let prog = obj.programs.get(&p.name).expect("program");
        let f = obj.functions.get(&prog.function_key()).expect("function");
        assert_eq!(f.name, p.name);
        let expected_offset = if p.name == "count" { 16 } else { 0 };
        assert_eq!(f.section_offset, expected_offset, "{}", p.name);
        let got: Vec<_> = f
            .instructions
            .iter()
            .map(|i| (i.code, i.dst_reg(), i.src_reg(), i.off, i.imm))
            .collect();
        let want: Vec<_> = p
            .insns
            .iter()
            .map(|i| (i.code, i.dst, i.src, i.off, i.imm))
            .collect();
        assert_eq!(got, want, "{}", p.name);
    }

    // (type, key_size, value_size, max_entries, flags)
    let expect = [
        ("counts", 1, 4, 8, 1024, 0),
        ("config", 2, 4, 8, 16, 0),
        ("trie", 11, 8, 1, 256, 1),
        ("stats", 6, 4, 16, 4, 0),
        ("events", 27, 0, 0, 4096, 0),
    ];
    assert_eq!(obj.maps.len(), expect.len());
    for (name, ty, ks, vs, max, flags) in expect {
        let m = obj.maps.get(name).unwrap_or_else(|| panic!("map {name}"));
        let Map::Btf(b) = m else {
            panic!("{name} is not a BTF map")
        };
        let got = (
            m.map_type(),
            m.key_size(),
            m.value_size(),
            m.max_entries(),
            m.map_flags(),
        );
        assert_eq!(got, (ty, ks, vs, max, flags), "{name}");
        let typed = name != "events";
        assert_eq!(b.def.btf_key_type_id != 0, typed, "{name} key type");
        assert_eq!(b.def.btf_value_type_id != 0, typed, "{name} value type");
    }

    // Relocations: give each map a fake fd and check each ld_imm64 got the right one.
    let fds: Vec<(String, i32, Map)> = spec
        .maps
        .iter()
        .enumerate()
        .map(|(i, m)| (m.name.clone(), 100 + i as i32, obj.maps[&m.name].clone()))
        .collect();
    obj.relocate_maps(
        fds.iter().map(|(n, fd, m)| (n.as_str(), *fd, m)),
        &Default::default(), // aya-obj's own HashSet type: no text sections
    )
    .expect("map relocations apply");
    for p in &spec.programs {
        let key = obj.programs[&p.name].function_key();
        let f = &obj.functions[&key];
        let loads: Vec<_> = f
            .instructions
            .iter()
            .enumerate()
            .filter(|(_, i)| i.code == 0x18 && i.imm >= 100)
            .map(|(slot, i)| (slot, i.imm))
            .collect();
        let want: Vec<_> = p
            .map_relocs
            .iter()
            .map(|r| {
                let fd = fds.iter().find(|(n, ..)| *n == r.map).map(|(_, fd, _)| *fd);
                (r.insn_index, fd.expect("map fd"))
            })
            .collect();
        let mut want = want;
        want.sort();
        assert_eq!(loads, want, "{}", p.name);
    }
}

#[test]
fn map_less_object_has_no_maps_section() {
    let bytes = write_object(&map_less_spec()).expect("valid");
    let file = object::File::parse(&*bytes).expect("ELF");
    let names: Vec<_> = file
        .sections()
        .filter_map(|s| s.name().ok().map(str::to_owned))
        .collect();
    // `.BTF` still types the program (a FUNC); no `.maps`, and no `.BTF.ext` without
    // subprograms.
    assert_eq!(
        names,
        ["xdp", "license", ".BTF", ".symtab", ".strtab", ".shstrtab"]
    );
    let obj = Object::parse(&bytes).expect("aya-obj parses");
    assert!(obj.maps.is_empty());
    assert_eq!(obj.programs.len(), 1);
}

// ---- the ELF details of the checklist, read with `object` -----------------------------

#[test]
fn elf_headers_follow_the_checklist() {
    let bytes = object_bytes();
    let file = ElfFile64::<Endianness>::parse(&*bytes).expect("ELF64");
    let hdr = file.elf_header();
    let e = Endianness::Little;
    assert_eq!(file.endian(), e);
    assert_eq!(
        (hdr.e_type(e), hdr.e_machine(e), hdr.e_phnum(e)),
        (elf::ET_REL, elf::EM_BPF, 0)
    );

    let sections = file.elf_section_table();
    let symtab_index = sections
        .iter()
        .position(|s| s.sh_type(e) == elf::SHT_SYMTAB)
        .expect("symtab");
    let mut seen = Vec::new();
    for s in file.sections() {
        let h = s.elf_section_header();
        let name = s.name().expect("name").to_owned();
        let flags = h.sh_flags(e);
        let exec = u64::from(elf::SHF_ALLOC | elf::SHF_EXECINSTR);
        match name.as_str() {
            "xdp" | "classifier" | "tp/syscalls/sys_enter_getpid" => {
                assert_eq!(flags & exec, exec, "{name} flags");
                assert_eq!(h.sh_type(e), elf::SHT_PROGBITS);
            }
            ".relxdp" | ".relclassifier" | ".reltp/syscalls/sys_enter_getpid" => {
                assert_eq!(h.sh_type(e), elf::SHT_REL, "{name} must be REL, not RELA");
                assert_eq!(h.sh_entsize(e), 16);
                assert_eq!(h.sh_link(e) as usize, symtab_index, "{name} sh_link");
                let target = sections.section(object::SectionIndex(h.sh_info(e) as usize));
                let target = target.expect("target");
                assert_eq!(
                    sections.section_name(e, target).ok(),
                    name.strip_prefix(".rel").map(str::as_bytes)
                );
            }
            "license" => assert_eq!(s.data().expect("data"), b"GPL\0"),
            ".maps" => {
                assert!(s.data().expect("data").iter().all(|&b| b == 0));
                assert_eq!(s.size(), 8 * (4 + 4 + 5 + 4 + 2));
            }
            _ => {}
        }
        seen.push(name);
    }
    assert_eq!(
        seen,
        [
            "xdp",
            "classifier",
            "tp/syscalls/sys_enter_getpid",
            "license",
            ".maps",
            ".BTF",
            ".relxdp",
            ".relclassifier",
            ".reltp/syscalls/sys_enter_getpid",
            ".symtab",
            ".strtab",
            ".shstrtab"
        ]
    );

    let syms: Vec<_> = file
        .symbols()
        .map(|s| {
            let sec = s
                .section_index()
                .and_then(|i| file.section_by_index(i).ok());
            let sec = sec
                .and_then(|s| s.name().ok().map(str::to_owned))
                .unwrap_or_default();
            let raw = s.elf_symbol();
            let (bind, kind) = (raw.st_info >> 4, raw.st_info & 0xf);
            (
                s.name().expect("name").to_owned(),
                sec,
                bind,
                kind,
                s.address(),
                s.size(),
            )
        })
        .collect();
    let g = elf::STB_GLOBAL;
    let (func, obj) = (elf::STT_FUNC, elf::STT_OBJECT);
    let want = [
        ("pass_all", "xdp", g, func, 0, 16),
        ("count", "xdp", g, func, 16, 11 * 8),
        ("tc_filter", "classifier", g, func, 0, 15 * 8),
        (
            "trace_getpid",
            "tp/syscalls/sys_enter_getpid",
            g,
            func,
            0,
            11 * 8,
        ),
        ("counts", ".maps", g, obj, 0, 32),
        ("config", ".maps", g, obj, 32, 32),
        ("trie", ".maps", g, obj, 64, 40),
        ("stats", ".maps", g, obj, 104, 32),
        ("events", ".maps", g, obj, 136, 16),
    ];
    let want: Vec<_> = want
        .iter()
        .map(|&(n, s, b, k, a, z)| (n.to_owned(), s.to_owned(), b, k, a, z))
        .collect();
    assert_eq!(syms, want);

    // Relocations: section-relative offsets (count starts 16 bytes into `xdp`).
    let relocs: Vec<(String, u64, String)> = file
        .sections()
        .flat_map(|s| {
            let sec = s.name().expect("name").to_owned();
            s.relocations().map(move |(off, r)| (sec.clone(), off, r))
        })
        .map(|(sec, off, r)| {
            let object::RelocationTarget::Symbol(i) = r.target() else {
                panic!("not a symbol")
            };
            let name = file
                .symbol_by_index(i)
                .and_then(|s| s.name().map(str::to_owned));
            assert_eq!(
                r.flags(),
                object::RelocationFlags::Elf { r_type: 1 },
                "R_BPF_64_64"
            );
            (sec, off, name.expect("symbol"))
        })
        .collect();
    let want = [
        ("xdp", 16 + 8, "counts"),
        ("classifier", 2 * 8, "trie"),
        ("classifier", 8 * 8, "config"),
        ("tp/syscalls/sys_enter_getpid", 0, "events"),
    ];
    let want: Vec<_> = want
        .iter()
        .map(|&(s, o, n)| (s.to_owned(), o, n.to_owned()))
        .collect();
    assert_eq!(relocs, want);
}

#[test]
fn output_is_deterministic() {
    assert_eq!(object_bytes(), object_bytes());
    let a = serde_json::to_string(&layout(&spec())).expect("json");
    assert_eq!(a, serde_json::to_string(&layout(&spec())).expect("json"));
}

// ---- snapshots -----------------------------------------------------------------------

macro_rules! snapshot {
    ($name:expr, $value:expr) => {
        insta::with_settings!({snapshot_path => "../../tests/snapshots", prepend_module_to_snapshot => false}, {
            insta::assert_snapshot!($name, $value);
        })
    };
}

#[test]
fn layout_json_snapshot() {
    let json = layout(&spec()).to_json().expect("layout.json serializes");
    snapshot!("obj_layout_json", json);
}

#[test]
fn btf_dump_snapshot() {
    let bytes = object_bytes();
    let btf = btf_section(&bytes).expect(".BTF section");
    snapshot!("obj_btf_dump", dump_btf(btf));
}

#[test]
fn btf_dump_reports_garbage() {
    assert_eq!(dump_btf(b"nope"), "error: bad magic\n");
    let bytes = object_bytes();
    let btf = btf_section(&bytes).expect(".BTF section");
    assert!(dump_btf(&btf[..40]).ends_with("error: type section out of bounds\n"));
}

// ---- errors --------------------------------------------------------------------------

fn err(f: impl FnOnce(&mut ObjectSpec)) -> ObjError {
    let mut s = spec();
    f(&mut s);
    write_object(&s).expect_err("spec should be rejected")
}

#[test]
fn errors_for_bad_names_and_duplicates() {
    let e = err(|s| s.programs[0].name = "pass-all".into());
    assert_eq!(
        e,
        ObjError::BadName {
            what: "program",
            name: "pass-all".into()
        }
    );
    let e = err(|s| s.maps[0].name = "1counts".into());
    assert_eq!(
        e,
        ObjError::BadName {
            what: "map",
            name: "1counts".into()
        }
    );
    let e = err(|s| {
        s.maps[2].key = BtfTy::Struct {
            name: "k".into(),
            fields: vec![field("a b", BtfTy::U32)],
        }
    });
    assert_eq!(
        e,
        ObjError::BadName {
            what: "field",
            name: "a b".into()
        }
    );
    let e = err(|s| s.programs[1].name = "pass_all".into());
    assert_eq!(
        e,
        ObjError::Duplicate {
            what: "program",
            name: "pass_all".into()
        }
    );
    let e = err(|s| s.maps[1].name = "counts".into());
    assert_eq!(
        e,
        ObjError::Duplicate {
            what: "map",
            name: "counts".into()
        }
    );
    let e = err(|s| s.programs[0].name = "stats".into());
    assert_eq!(
        e,
        ObjError::Duplicate {
            what: "program",
            name: "stats".into()
        }
    );
    let e = err(|s| s.license = "GPL\0x".into());
    assert_eq!(e, ObjError::BadLicense("GPL\0x".into()));
}

#[test]
fn errors_for_sections_and_programs() {
    let e = err(|s| s.programs[0].section = "xdp/foo".into());
    assert!(
        matches!(e, ObjError::BadSection { ref section, .. } if section == "xdp/foo"),
        "{e:?}"
    );
    let e = err(|s| s.programs[1].section = "tc".into());
    assert!(matches!(e, ObjError::BadSection { .. }), "{e:?}");
    let e = err(|s| s.programs[1].section = "xdp".into());
    assert!(matches!(e, ObjError::AttachMismatch { ref program, .. } if program == "tc_filter"));
    let e = err(|s| s.programs[3].section = "tp/syscalls/sys_enter_read".into());
    assert!(matches!(e, ObjError::AttachMismatch { .. }), "{e:?}");
    let e = err(|s| s.programs[0].insns.clear());
    assert_eq!(
        e,
        ObjError::EmptyProgram {
            program: "pass_all".into()
        }
    );
}

#[test]
fn errors_for_relocations() {
    let bad_slot = |index| ObjError::BadRelocSlot {
        program: "count".into(),
        index,
    };
    // Slot 2 is the second half of the ld_imm64, slot 0 a store.
    assert_eq!(
        err(|s| s.programs[2].map_relocs[0].insn_index = 2),
        bad_slot(2)
    );
    assert_eq!(
        err(|s| s.programs[2].map_relocs[0].insn_index = 0),
        bad_slot(0)
    );
    assert_eq!(
        err(|s| s.programs[2].map_relocs[0].insn_index = 99),
        bad_slot(99)
    );
    // An 0x18 in the last slot has no second half.
    let e = err(|s| {
        s.programs[0].insns.push(insn(0x18, 1, 0, 0, 0));
        s.programs[0].map_relocs.push(reloc(2, "counts"));
    });
    assert_eq!(
        e,
        ObjError::BadRelocSlot {
            program: "pass_all".into(),
            index: 2
        }
    );
    let e = err(|s| s.programs[2].map_relocs.push(reloc(1, "config")));
    assert_eq!(
        e,
        ObjError::DuplicateReloc {
            program: "count".into(),
            index: 1
        }
    );
    let e = err(|s| s.programs[2].map_relocs[0].map = "nope".into());
    assert_eq!(
        e,
        ObjError::UnknownMap {
            program: "count".into(),
            map: "nope".into()
        }
    );
}

#[test]
fn errors_for_maps() {
    let bad = |e: ObjError, map: &str| {
        assert!(
            matches!(e, ObjError::BadMap { map: ref m, .. } if m == map),
            "{e:?}"
        );
    };
    bad(err(|s| s.maps[2].key = BtfTy::U64), "trie");
    bad(err(|s| s.maps[1].key = BtfTy::U64), "config");
    bad(err(|s| s.maps[3].key = BtfTy::U8), "stats");
    bad(err(|s| s.maps[4].max_entries = 5000), "events");
    bad(err(|s| s.maps[4].max_entries = 1024), "events");
    bad(err(|s| s.maps[0].max_entries = 0), "counts");
    bad(err(|s| s.maps[0].value = BtfTy::Bytes(0)), "counts");
    let empty = BtfTy::Struct {
        name: "empty".into(),
        fields: vec![],
    };
    bad(err(|s| s.maps[0].value = empty), "counts");
    // The LPM flag is added, not demanded; other flags are kept.
    let mut s = spec();
    s.maps[2].flags = 0x10;
    let bytes = write_object(&s).expect("valid");
    let obj = Object::parse(&bytes).expect("parses");
    assert_eq!(obj.maps["trie"].map_flags(), 0x11);
}

// ---- the kernel: bpftool and iproute2 ------------------------------------------------

/// Why the kernel tests cannot run here, if they cannot.
fn kernel_unavailable() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .map(str::split_whitespace);
    if uid.and_then(|mut f| f.nth(1)) != Some("0") {
        return Some("not root".into());
    }
    for tool in [["bpftool", "version"], ["ip", "-V"], ["tc", "-V"]] {
        let ok = Command::new(tool[0])
            .arg(tool[1])
            .output()
            .is_ok_and(|o| o.status.success());
        if !ok {
            return Some(format!("{} is not installed", tool[0]));
        }
    }
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    if !mounts
        .lines()
        .any(|l| l.split_whitespace().nth(2) == Some("bpf"))
    {
        return Some("bpffs is not mounted (mount -t bpf bpf /sys/fs/bpf)".into());
    }
    None
}

/// Returns true when the kernel tests should run; a skip panics when `CI=true`.
fn kernel_ready(test: &str) -> bool {
    let Some(reason) = kernel_unavailable() else {
        return true;
    };
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{test}: cannot run kernel test in CI: {reason}");
    }
    eprintln!("{test}: skipped: {reason}");
    false
}

/// Removes a file or directory tree when dropped.
struct RemovePath(PathBuf);
impl Drop for RemovePath {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0).or_else(|_| std::fs::remove_file(&self.0));
    }
}

/// Deletes a network namespace when dropped.
struct Netns(String);
impl Netns {
    fn new(name: String) -> Self {
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        run("ip", &["netns", "add", &name]);
        Netns(name)
    }
}
impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}

fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd).args(args).output().expect("spawn");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{cmd} {} failed:\n{text}",
        args.join(" ")
    );
    text
}

fn write_temp(tag: &str, bytes: &[u8]) -> RemovePath {
    let path = std::env::temp_dir().join(format!("pol_objtest_{}_{tag}.o", std::process::id()));
    std::fs::write(&path, bytes).expect("write object");
    RemovePath(path)
}

fn loadall(tag: &str, obj: &Path) -> Vec<String> {
    let pins = format!("/sys/fs/bpf/pol_objtest_{}_{tag}", std::process::id());
    let pins = RemovePath(PathBuf::from(pins));
    let (obj, dir) = (obj.to_string_lossy(), pins.0.to_string_lossy());
    let out = run("bpftool", &["prog", "loadall", &obj, &dir]);
    // libbpf drops BTF the kernel rejects and loads anyway; that must not happen.
    assert!(!out.contains("BTF"), "bpftool complained about BTF:\n{out}");
    let mut pinned: Vec<String> = std::fs::read_dir(&pins.0)
        .expect("pin dir")
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect();
    pinned.sort();
    for prog in &pinned {
        let info = bpftool_json(&["prog", "show", "pinned", &format!("{dir}/{prog}")]);
        let map_ids = info["map_ids"].as_array().cloned().unwrap_or_default();
        for id in map_ids {
            let map = bpftool_json(&["map", "show", "id", &id.to_string()]);
            // The kernel accepted our BTF: every typed map carries it (a ring buffer has
            // no key or value type, so libbpf creates it without BTF).
            let btf_id = map["btf_id"].as_u64().unwrap_or(0);
            let typed = map["bytes_key"].as_u64() != Some(0);
            assert_eq!(btf_id > 0, typed, "{prog}: map BTF: {map}");
        }
    }
    pinned
}

fn bpftool_json(args: &[&str]) -> serde_json::Value {
    let args: Vec<&str> = ["-j"].into_iter().chain(args.iter().copied()).collect();
    serde_json::from_str(&run("bpftool", &args)).expect("bpftool JSON")
}

#[test]
fn bpftool_loads_every_program() {
    if !kernel_ready("bpftool_loads_every_program") {
        return;
    }
    let obj = write_temp("full", &object_bytes());
    assert_eq!(
        loadall("full", &obj.0),
        ["count", "pass_all", "tc_filter", "trace_getpid"]
    );
    let bare = write_temp("bare", &write_object(&map_less_spec()).expect("valid"));
    assert_eq!(loadall("bare", &bare.0), ["pass_all"]);
}

#[test]
fn iproute2_attaches_xdp_and_tc() {
    if !kernel_ready("iproute2_attaches_xdp_and_tc") {
        return;
    }
    let obj = write_temp("ip", &object_bytes());
    let obj_path = obj.0.to_string_lossy().into_owned();
    let ns = Netns::new(format!("polobj{}", std::process::id()));
    let n = ns.0.as_str();
    run(
        "ip",
        &[
            "-n", n, "link", "add", "v0", "type", "veth", "peer", "name", "v1",
        ],
    );
    run(
        "ip",
        &[
            "-n",
            n,
            "link",
            "set",
            "dev",
            "v0",
            "xdpgeneric",
            "obj",
            &obj_path,
            "sec",
            "xdp",
        ],
    );
    let show = run("ip", &["-n", n, "link", "show", "v0"]);
    assert!(show.contains("prog/xdp"), "no XDP program on v0:\n{show}");
    run("tc", &["-n", n, "qdisc", "add", "dev", "v0", "clsact"]);
    let filter = [
        "-n", n, "filter", "add", "dev", "v0", "ingress", "bpf", "da", "obj",
    ];
    let filter: Vec<&str> = filter
        .iter()
        .copied()
        .chain([obj_path.as_str(), "sec", "classifier"])
        .collect();
    run("tc", &filter);
    let shown = run("tc", &["-n", n, "filter", "show", "dev", "v0", "ingress"]);
    assert!(
        shown.contains("direct-action"),
        "no TC filter on v0:\n{shown}"
    );
}
