//! Kernel tests for `pol_runtime::load`: objects written by `pol_compiler::obj`, loaded
//! through aya, run by program name, maps read back generically.

mod common;

use common::require_kernel;
use pol_compiler::bpf::Insn;
use pol_compiler::obj::{
    write_object, AttachSpec, BtfTy, MapKind, MapReloc, MapSpec, ObjectSpec, ProgramSpec,
    TcDirection,
};
use pol_runtime::direct::Object as _;
use pol_runtime::load::{LoadError, Loaded};

const XDP_DROP: i32 = 1;
const XDP_PASS: i32 = 2;
const TC_ACT_SHOT: i32 = 2;

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
fn exit() -> Insn {
    insn(0x95, 0, 0, 0, 0)
}

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

fn map(name: &str, kind: MapKind, key: BtfTy, value: BtfTy, max_entries: u32) -> MapSpec {
    MapSpec {
        name: name.into(),
        kind,
        key,
        value,
        max_entries,
        flags: 0,
    }
}

/// `count`: hits[0] += 1 (per-CPU array), then PASS.
fn count_program() -> ProgramSpec {
    let insns = vec![
        insn(0x62, 10, 0, -4, 0), // *(u32 *)(r10 - 4) = 0
        insn(0x18, 1, 1, 0, 0),   // r1 = map hits (ld_imm64, slot 1)
        insn(0, 0, 0, 0, 0),      //
        insn(0xbf, 2, 10, 0, 0),  // r2 = r10
        insn(0x07, 2, 0, 0, -4),  // r2 += -4
        insn(0x85, 0, 0, 0, 1),   // call map_lookup_elem
        insn(0x15, 0, 0, 3, 0),   // if r0 == 0 goto +3
        insn(0x79, 1, 0, 0, 0),   // r1 = *(u64 *)(r0 + 0)
        insn(0x07, 1, 0, 0, 1),   // r1 += 1
        insn(0x7b, 0, 1, 0, 0),   // *(u64 *)(r0 + 0) = r1
        mov_imm(0, XDP_PASS),
        exit(),
    ];
    xdp(
        "count",
        insns,
        vec![MapReloc {
            insn_index: 1,
            map: "hits".into(),
        }],
    )
}

fn spec() -> ObjectSpec {
    let shot = ProgramSpec {
        name: "shot".into(),
        section: "classifier".into(),
        insns: vec![mov_imm(0, TC_ACT_SHOT), exit()],
        map_relocs: vec![],
        attach: AttachSpec::Tc {
            iface: "eth0".into(),
            direction: TcDirection::Ingress,
        },
        rules: vec![],
        stats: None,
        lines: Vec::new(),
    };
    let lpm_key = BtfTy::Struct {
        name: "lpm4".into(),
        fields: vec![
            ("prefixlen".into(), BtfTy::U32),
            ("addr".into(), BtfTy::Bytes(4)),
        ],
    };
    ObjectSpec {
        license: "GPL".into(),
        programs: vec![
            xdp("drop_all", vec![mov_imm(0, XDP_DROP), exit()], vec![]),
            shot,
            count_program(),
        ],
        maps: vec![
            map("hits", MapKind::PercpuArray, BtfTy::U32, BtfTy::U64, 1),
            map("ports", MapKind::Hash, BtfTy::U32, BtfTy::U64, 16),
            map("nets", MapKind::LpmTrie, lpm_key, BtfTy::U32, 16),
            map("events", MapKind::RingBuf, BtfTy::U32, BtfTy::U64, 4096),
        ],
    }
}

fn load(spec: &ObjectSpec) -> Result<Loaded, LoadError> {
    let elf = write_object(spec).expect("the object writer accepts the spec");
    Loaded::from_bytes(&elf)
}

fn frame() -> Vec<u8> {
    let mut f = vec![0u8; 64];
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    f
}

#[test]
#[cfg_attr(
    pol_no_bpf,
    ignore = "kernel test: needs root and bpf(), unavailable at build time (CI=true runs it)"
)]
fn programs_run_by_name() {
    require_kernel();
    let loaded = load(&spec()).expect("load");
    assert_eq!(loaded.program_names(), ["count", "drop_all", "shot"]);
    assert_eq!(loaded.map_names(), ["events", "hits", "nets", "ports"]);
    let run = loaded.test_run("drop_all", &frame(), 1).expect("run");
    assert_eq!(run.retval, XDP_DROP as u32);
    let run = loaded.test_run("shot", &frame(), 1).expect("run");
    assert_eq!(run.retval, TC_ACT_SHOT as u32);
    assert!(loaded.verified_insns("count").expect("info") >= 10);
    assert_eq!(loaded.prog_info("drop_all").expect("info").xlated_insns, 2);
    assert!(matches!(
        loaded.test_run("nope", &frame(), 1),
        Err(LoadError::NoProgram(_))
    ));
}

#[test]
#[cfg_attr(
    pol_no_bpf,
    ignore = "kernel test: needs root and bpf(), unavailable at build time (CI=true runs it)"
)]
fn per_cpu_counters_are_summed() {
    require_kernel();
    let loaded = load(&spec()).expect("load");
    let zero = 0u32.to_le_bytes().to_vec();
    let entries = loaded.map_entries("hits").expect("entries");
    assert_eq!(entries, [(zero.clone(), 0u64.to_le_bytes().to_vec())]);

    let run = loaded.test_run("count", &frame(), 5).expect("run");
    assert_eq!(run.retval, XDP_PASS as u32);
    loaded.test_run("count", &frame(), 3).expect("run");
    let entries = loaded.map_entries("hits").expect("entries");
    assert_eq!(entries, [(zero, 8u64.to_le_bytes().to_vec())]);

    let per_cpu = loaded.map_entries_per_cpu("hits").expect("per cpu");
    let [(_, values)] = per_cpu.as_slice() else {
        panic!("one key expected: {per_cpu:?}");
    };
    assert_eq!(
        values.len(),
        pol_runtime::sys::possible_cpus().expect("cpus")
    );
    let total: u64 = values
        .iter()
        .map(|v| u64::from_le_bytes(v.as_slice().try_into().expect("8 bytes")))
        .sum();
    assert_eq!(total, 8);
}

#[test]
#[cfg_attr(
    pol_no_bpf,
    ignore = "kernel test: needs root and bpf(), unavailable at build time (CI=true runs it)"
)]
fn hash_and_lpm_entries_read_back() {
    require_kernel();
    let loaded = load(&spec()).expect("load");
    for port in [443u32, 22, 80] {
        loaded
            .map_update(
                "ports",
                &port.to_le_bytes(),
                &u64::from(port * 2).to_le_bytes(),
            )
            .expect("update");
    }
    let entries = loaded.map_entries("ports").expect("entries");
    let mut got: Vec<(u32, u64)> = entries
        .iter()
        .map(|(k, v)| {
            let k = u32::from_le_bytes(k.as_slice().try_into().expect("4 bytes"));
            let v = u64::from_le_bytes(v.as_slice().try_into().expect("8 bytes"));
            (k, v)
        })
        .collect();
    got.sort_unstable();
    assert_eq!(got, [(22, 44), (80, 160), (443, 886)]);

    // 10.0.0.0/8 -> 1, 192.0.2.0/24 -> 2
    let key = |len: u32, addr: [u8; 4]| [len.to_le_bytes(), addr].concat();
    loaded
        .map_update("nets", &key(8, [10, 0, 0, 0]), &1u32.to_le_bytes())
        .expect("update");
    loaded
        .map_update("nets", &key(24, [192, 0, 2, 0]), &2u32.to_le_bytes())
        .expect("update");
    let mut entries = loaded.map_entries("nets").expect("entries");
    entries.sort();
    assert_eq!(
        entries,
        [
            (key(8, [10, 0, 0, 0]), 1u32.to_le_bytes().to_vec()),
            (key(24, [192, 0, 2, 0]), 2u32.to_le_bytes().to_vec()),
        ]
    );
    let info = loaded.map_info("nets").expect("info");
    assert_eq!((info.key_size, info.value_size, info.flags & 1), (8, 4, 1));
}

#[test]
#[cfg_attr(
    pol_no_bpf,
    ignore = "kernel test: needs root and bpf(), unavailable at build time (CI=true runs it)"
)]
fn unreadable_maps_and_bad_input_are_errors() {
    require_kernel();
    let loaded = load(&spec()).expect("load");
    assert!(matches!(
        loaded.map_entries("events"),
        Err(LoadError::UnsupportedMap { .. })
    ));
    assert!(matches!(
        loaded.map_entries("nope"),
        Err(LoadError::NoMap(_))
    ));
    assert!(matches!(
        loaded.map_entries_per_cpu("ports"),
        Err(LoadError::UnsupportedMap { .. })
    ));
    // A key of the wrong size is refused before the kernel sees it.
    assert!(loaded.map_update("ports", &[1, 2], &[0; 8]).is_err());
    // Not an ELF object at all.
    let err = Loaded::from_bytes(b"not an object").expect_err("garbage");
    assert!(matches!(err, LoadError::Object { .. }), "{err:?}");
}

#[test]
#[cfg_attr(
    pol_no_bpf,
    ignore = "kernel test: needs root and bpf(), unavailable at build time (CI=true runs it)"
)]
fn verifier_rejection_carries_the_log() {
    require_kernel();
    let bad = ObjectSpec {
        license: "GPL".into(),
        programs: vec![xdp("bad", vec![insn(0xbf, 0, 2, 0, 0), exit()], vec![])],
        maps: vec![],
    };
    let err = load(&bad).expect_err("the verifier must reject r0 = r2");
    match &err {
        LoadError::Verifier { program, log, .. } => {
            assert_eq!(program, "bad");
            assert!(log.contains("R2 !read_ok"), "log: {log}");
        }
        other => panic!("expected a verifier rejection, got {other:?}"),
    }
    assert!(err.to_string().contains("R2 !read_ok"));
    assert_eq!(
        err.verifier_log().map(|l| l.contains("R2 !read_ok")),
        Some(true)
    );
}
