//! Kernel tests for `pol_runtime::sys`: raw instructions through BPF_PROG_LOAD and
//! BPF_PROG_TEST_RUN, verifier logs, program info and raw map access.

mod common;

use std::os::fd::AsFd;

use common::{exit, insn, mov64_imm, program, require_kernel};
use pol_runtime::sys::{self, MapType, ProgType, SysError};

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;

fn frame(len: usize) -> Vec<u8> {
    let mut f = vec![0u8; len];
    // Ethernet: broadcast dst, some src, IPv4 ethertype.
    f[..6].copy_from_slice(&[0xff; 6]);
    f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    f
}

/// r2 = ctx->data; r3 = ctx->data_end; r0 = DROP; if data + 61 > data_end goto out;
/// r4 = byte at data + 60; r0 = PASS; out: exit. PASS exactly when the frame exceeds 60 bytes.
fn longer_than_60() -> Vec<u8> {
    program(&[
        insn(0x61, 2, 1, 0, 0), // r2 = *(u32 *)(r1 + 0)   data
        insn(0x61, 3, 1, 4, 0), // r3 = *(u32 *)(r1 + 4)   data_end
        mov64_imm(0, XDP_DROP as i32),
        insn(0x07, 2, 0, 0, 61), // r2 += 61
        insn(0x2d, 2, 3, 2, 0),  // if r2 > r3 goto +2
        insn(0x71, 4, 2, -1, 0), // r4 = *(u8 *)(r2 - 1)
        mov64_imm(0, XDP_PASS as i32),
        exit(),
    ])
}

#[test]
#[cfg_attr(
    pol_no_bpf,
    ignore = "kernel test: needs root and bpf(), unavailable at build time (CI=true runs it)"
)]
fn xdp_drop_returns_drop() {
    require_kernel();
    let prog = program(&[mov64_imm(0, XDP_DROP as i32), exit()]);
    let (fd, log) = sys::prog_load_raw(ProgType::Xdp, &prog, "GPL", 0).expect("load");
    assert!(log.is_empty(), "log level 0 gives no log: {log}");
    let pkt = frame(64);
    let run = sys::test_run(fd.as_fd(), &pkt, 1).expect("test run");
    assert_eq!(run.retval, XDP_DROP);
    assert_eq!(run.data_out, pkt, "XDP_DROP leaves the packet unchanged");

    let info = sys::prog_info(fd.as_fd()).expect("prog info");
    assert_eq!(info.xlated_insns, 2);
    assert_eq!(info.prog_type, ProgType::Xdp as u32);
    assert!(info.verified_insns >= 2, "{info:?}");
    assert!(info.id > 0);
}

#[test]
#[cfg_attr(
    pol_no_bpf,
    ignore = "kernel test: needs root and bpf(), unavailable at build time (CI=true runs it)"
)]
fn bounds_checked_read_passes_long_frames() {
    require_kernel();
    let (fd, _) = sys::prog_load_raw(ProgType::Xdp, &longer_than_60(), "GPL", 0).expect("load");
    for (len, want) in [
        (14, XDP_DROP),
        (60, XDP_DROP),
        (61, XDP_PASS),
        (1500, XDP_PASS),
    ] {
        let run = sys::test_run(fd.as_fd(), &frame(len), 3).expect("test run");
        assert_eq!(run.retval, want, "frame of {len} bytes");
        assert_eq!(run.data_out.len(), len);
    }
}

#[test]
#[cfg_attr(
    pol_no_bpf,
    ignore = "kernel test: needs root and bpf(), unavailable at build time (CI=true runs it)"
)]
fn stats_log_level_reports_processed_insns() {
    require_kernel();
    let (fd, log) = sys::prog_load_raw(ProgType::Xdp, &longer_than_60(), "GPL", 4).expect("load");
    assert!(log.contains("processed"), "log: {log}");
    let info = sys::prog_info(fd.as_fd()).expect("prog info");
    assert!(
        log.contains(&format!("processed {} insns", info.verified_insns)),
        "log: {log}"
    );
}

#[test]
#[cfg_attr(
    pol_no_bpf,
    ignore = "kernel test: needs root and bpf(), unavailable at build time (CI=true runs it)"
)]
fn sched_cls_program_runs() {
    require_kernel();
    const TC_ACT_SHOT: i32 = 2;
    let prog = program(&[mov64_imm(0, TC_ACT_SHOT), exit()]);
    let (fd, _) = sys::prog_load_raw(ProgType::SchedCls, &prog, "GPL", 0).expect("load");
    let run = sys::test_run(fd.as_fd(), &frame(60), 1).expect("test run");
    assert_eq!(run.retval, TC_ACT_SHOT as u32);
}

#[test]
#[cfg_attr(
    pol_no_bpf,
    ignore = "kernel test: needs root and bpf(), unavailable at build time (CI=true runs it)"
)]
fn uninitialised_register_is_rejected_with_log() {
    require_kernel();
    // r0 = r2; exit   (r2 was never written)
    let prog = program(&[insn(0xbf, 0, 2, 0, 0), exit()]);
    let err = sys::prog_load_raw(ProgType::Xdp, &prog, "GPL", 0).expect_err("must be rejected");
    match &err {
        SysError::Rejected { errno, log } => {
            assert_eq!(*errno, libc::EACCES);
            assert!(log.contains("R2 !read_ok"), "log: {log}");
        }
        other => panic!("expected a verifier rejection, got {other:?}"),
    }
    assert!(err.to_string().contains("R2 !read_ok"));
}

#[test]
#[cfg_attr(
    pol_no_bpf,
    ignore = "kernel test: needs root and bpf(), unavailable at build time (CI=true runs it)"
)]
fn unchecked_packet_read_is_rejected() {
    require_kernel();
    // r2 = ctx->data; r0 = *(u8 *)(r2 + 0); exit    (no data_end check)
    let prog = program(&[insn(0x61, 2, 1, 0, 0), insn(0x71, 0, 2, 0, 0), exit()]);
    let err = sys::prog_load_raw(ProgType::Xdp, &prog, "GPL", 1).expect_err("must be rejected");
    let log = err.verifier_log().expect("a verifier log");
    assert!(log.contains("invalid access to packet"), "log: {log}");
}

#[test]
fn bad_input_is_an_error_not_a_panic() {
    assert!(matches!(
        sys::prog_load_raw(ProgType::Xdp, &[0u8; 7], "GPL", 0),
        Err(SysError::BadInput(_))
    ));
    assert!(matches!(
        sys::prog_load_raw(ProgType::Xdp, &[], "GPL", 0),
        Err(SysError::BadInput(_))
    ));
    assert!(matches!(
        sys::prog_load_raw(ProgType::Xdp, &[0u8; 8], "G\0PL", 0),
        Err(SysError::BadInput(_))
    ));
}

#[test]
#[cfg_attr(
    pol_no_bpf,
    ignore = "kernel test: needs root and bpf(), unavailable at build time (CI=true runs it)"
)]
fn short_test_packet_is_explained() {
    require_kernel();
    let prog = program(&[mov64_imm(0, XDP_DROP as i32), exit()]);
    let (fd, _) = sys::prog_load_raw(ProgType::Xdp, &prog, "GPL", 0).expect("load");
    let err = sys::test_run(fd.as_fd(), &[0u8; 4], 1).expect_err("too short");
    assert!(err.to_string().contains("Ethernet header"), "{err}");
}

#[test]
#[cfg_attr(
    pol_no_bpf,
    ignore = "kernel test: needs root and bpf(), unavailable at build time (CI=true runs it)"
)]
fn raw_maps_round_trip() {
    require_kernel();
    let map = sys::map_create(MapType::Hash, 4, 8, 16, 0).expect("create");
    let fd = map.as_fd();
    for k in 1u32..=3 {
        sys::map_update(fd, &k.to_le_bytes(), &(u64::from(k) * 10).to_le_bytes(), 0)
            .expect("update");
    }
    let mut keys = Vec::new();
    let mut cur = None;
    while let Some(next) = sys::map_next_key(fd, cur.as_deref()).expect("next key") {
        keys.push(u32::from_le_bytes(
            next.clone().try_into().expect("4 bytes"),
        ));
        cur = Some(next);
    }
    keys.sort_unstable();
    assert_eq!(keys, [1, 2, 3]);
    let v = sys::map_lookup(fd, &2u32.to_le_bytes(), 8)
        .expect("lookup")
        .expect("present");
    assert_eq!(v, 20u64.to_le_bytes());
    assert_eq!(
        sys::map_lookup(fd, &9u32.to_le_bytes(), 8).expect("lookup"),
        None
    );
    assert!(sys::map_delete(fd, &2u32.to_le_bytes()).expect("delete"));
    assert!(!sys::map_delete(fd, &2u32.to_le_bytes()).expect("delete"));
    // Wrong sizes are refused before the kernel sees them.
    assert!(matches!(
        sys::map_lookup(fd, &[0u8; 2], 8),
        Err(SysError::BadInput(_))
    ));
    assert!(matches!(
        sys::map_lookup(fd, &[0u8; 4], 4),
        Err(SysError::BadInput(_))
    ));

    let info = sys::map_info(fd).expect("info");
    assert_eq!(
        (
            info.map_type,
            info.key_size,
            info.value_size,
            info.max_entries
        ),
        (1, 4, 8, 16)
    );

    let pc = sys::map_create(MapType::PerCpuArray, 4, 8, 2, 0).expect("create per-cpu");
    let len = sys::value_buf_len(&sys::map_info(pc.as_fd()).expect("info")).expect("len");
    assert_eq!(len, 8 * sys::possible_cpus().expect("cpus"));
}

#[test]
#[cfg_attr(
    pol_no_bpf,
    ignore = "kernel test: needs root and bpf(), unavailable at build time (CI=true runs it)"
)]
fn bpffs_is_mounted_after_ensure() {
    require_kernel();
    pol_runtime::ensure_bpffs().expect("bpffs");
    assert!(sys::bpffs_mounted(pol_runtime::BPFFS).expect("mounts"));
}

#[test]
#[cfg_attr(
    pol_no_bpf,
    ignore = "kernel test: needs root and bpf(), unavailable at build time (CI=true runs it)"
)]
fn long_verifier_log_grows_the_buffer() {
    require_kernel();
    // 6000 instructions at log level 2 write well over the first 64 KiB of log.
    let mut insns = vec![mov64_imm(0, XDP_PASS as i32); 6000];
    insns.push(exit());
    let (_fd, log) = sys::prog_load_raw(ProgType::Xdp, &program(&insns), "GPL", 2).expect("load");
    assert!(log.len() > 64 * 1024, "log is {} bytes", log.len());
    assert!(
        log.contains("processed 6001 insns"),
        "tail: {}",
        &log[log.len().saturating_sub(300)..]
    );
}

#[test]
#[cfg_attr(
    pol_no_bpf,
    ignore = "kernel test: needs root and bpf(), unavailable at build time (CI=true runs it)"
)]
fn built_packets_run_through_xdp() {
    require_kernel();
    use pol_runtime::packet::Packet;
    let (fd, _) = sys::prog_load_raw(ProgType::Xdp, &longer_than_60(), "GPL", 0).expect("load");
    let cases = [
        (Packet::tcp(), XDP_DROP),                  // padded to exactly 60 bytes
        (Packet::tcp().payload(&[0; 7]), XDP_PASS), // 54 + 7 = 61
        (Packet::udp().ip6().vlan(7), XDP_PASS),    // 66
        (Packet::tcp().vlan(1).truncate(30), XDP_DROP),
    ];
    for (pkt, want) in cases {
        let bytes = pkt.build().expect("packet");
        let run = sys::test_run(fd.as_fd(), &bytes, 1).expect("test run");
        assert_eq!(run.retval, want, "{} bytes", bytes.len());
    }
}

#[test]
#[cfg_attr(
    pol_no_bpf,
    ignore = "kernel test: needs root and bpf(), unavailable at build time (CI=true runs it)"
)]
fn jumbo_frames_round_trip() {
    require_kernel();
    let prog = program(&[mov64_imm(0, XDP_PASS as i32), exit()]);
    let (fd, _) = sys::prog_load_raw(ProgType::Xdp, &prog, "GPL", 0).expect("load");
    for len in [1500, 4000, 9000] {
        let pkt = frame(len);
        let run = sys::test_run(fd.as_fd(), &pkt, 1).expect("test run");
        assert_eq!(run.data_out, pkt, "{len} bytes come back unchanged");
    }
}

#[test]
#[cfg_attr(
    pol_no_bpf,
    ignore = "kernel test: needs root and bpf(), unavailable at build time (CI=true runs it)"
)]
fn batch_reads_equal_key_by_key_reads() {
    require_kernel();
    let cpus = sys::possible_cpus().expect("cpus");
    for (ty, n) in [
        (MapType::PerCpuArray, 10_000u32),
        (MapType::Array, 5000),
        (MapType::Hash, 5000),
    ] {
        let map = sys::map_create(ty, 4, 8, n, 0).expect("create");
        let info = sys::map_info(map.as_fd()).expect("info");
        let per_cpu = ty == MapType::PerCpuArray;
        for k in (0..n).step_by(7) {
            let v: Vec<u8> = if per_cpu {
                (0..cpus)
                    .flat_map(|c| (u64::from(k) * 10 + c as u64).to_le_bytes())
                    .collect()
            } else {
                u64::from(k).to_le_bytes().to_vec()
            };
            sys::map_update(map.as_fd(), &k.to_ne_bytes(), &v, 0).expect("update");
        }
        let len = sys::value_buf_len(&info).expect("len");
        let batched = sys::batch::map_lookup_batch(map.as_fd(), 4, len, 4096).expect("batch");
        let all = pol_runtime::load::raw_entries("m", map.as_fd(), &info).expect("entries");
        // Key by key, as raw_entries did before batches.
        let mut one_by_one = Vec::new();
        let mut key: Option<Vec<u8>> = None;
        while let Some(next) = sys::map_next_key(map.as_fd(), key.as_deref()).expect("next") {
            if let Some(v) = sys::map_lookup(map.as_fd(), &next, len).expect("lookup") {
                one_by_one.push((next.clone(), v));
            }
            key = Some(next);
        }
        let mut sorted = batched.clone();
        sorted.sort();
        one_by_one.sort();
        assert_eq!(sorted, one_by_one, "{ty:?}");
        assert_eq!(all.len(), one_by_one.len(), "{ty:?}");
        let expect = if ty == MapType::Hash {
            n.div_ceil(7)
        } else {
            n
        } as usize;
        assert_eq!(one_by_one.len(), expect, "{ty:?}");
    }
}
