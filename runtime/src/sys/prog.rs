//! Program commands: BPF_PROG_LOAD from raw instructions, BPF_PROG_TEST_RUN, program info.

use std::ffi::CString;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

use super::{bpf_call, obj_name, owned_fd, ptr_u64, BpfAttr, SysError};

const BPF_PROG_LOAD: u32 = 5;
const BPF_PROG_TEST_RUN: u32 = 10;
const BPF_OBJ_GET_INFO_BY_FD: u32 = 15;

/// The kernel's `enum bpf_prog_type`, for the kinds pol produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum ProgType {
    SocketFilter = 1,
    SchedCls = 3,
    SchedAct = 4,
    Kprobe = 2,
    TracePoint = 5,
    Xdp = 6,
    PerfEvent = 7,
    CgroupSkb = 8,
    RawTracepoint = 17,
    CgroupSockAddr = 18,
    Tracing = 26,
    Lsm = 29,
}

/// `union bpf_attr` for BPF_PROG_LOAD, up to `log_true_size` (kernel 6.4+).
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
    prog_btf_fd: u32,
    func_info_rec_size: u32,
    func_info: u64,
    func_info_cnt: u32,
    line_info_rec_size: u32,
    line_info: u64,
    line_info_cnt: u32,
    attach_btf_id: u32,
    attach_prog_fd: u32,
    core_relo_cnt: u32,
    fd_array: u64,
    core_relos: u64,
    core_relo_rec_size: u32,
    log_true_size: u32,
}
// SAFETY: plain repr(C) integers; pointers are set from live buffers in `prog_load`.
unsafe impl BpfAttr for ProgLoadAttr {}

/// First verifier log buffer size; it grows on ENOSPC.
const LOG_START: usize = 64 * 1024;
/// The kernel refuses log buffers above `UINT_MAX >> 2`.
const LOG_MAX: usize = (u32::MAX >> 2) as usize;

/// Loads a program from encoded instructions (8 bytes each, as in an ELF section) with
/// `expected_attach_type` 0. Returns the program fd and the verifier log (empty when
/// `log_level` is 0). A rejected program comes back as [`SysError::Rejected`] with the
/// full log; with `log_level` 0 the load is retried at level 1 to obtain it.
pub fn prog_load_raw(
    prog_type: ProgType,
    insns: &[u8],
    license: &str,
    log_level: u32,
) -> Result<(OwnedFd, String), SysError> {
    let load = Load {
        name: "",
        prog_type,
        expected_attach_type: 0,
        prog_flags: 0,
        attach_btf_id: 0,
        func_info: None,
    };
    prog_load(&load, insns, license, log_level)
}

/// Loads `r0 = 0; exit` as a program of `prog_type` attached (at load time, as fentry
/// and LSM programs are) to the kernel BTF type `attach_btf_id`: whether this kernel
/// takes such programs at all. The program is closed at once.
pub fn prog_load_btf_probe(
    prog_type: ProgType,
    expected_attach_type: u32,
    attach_btf_id: u32,
) -> Result<(), SysError> {
    const RETURN_0: [u8; 16] = [0xb7, 0, 0, 0, 0, 0, 0, 0, 0x95, 0, 0, 0, 0, 0, 0, 0];
    let load = Load {
        name: "pol_probe",
        prog_type,
        expected_attach_type,
        prog_flags: 0,
        attach_btf_id,
        func_info: None,
    };
    prog_load(&load, &RETURN_0, "GPL", 0).map(drop)
}

/// `prog_flags` bit: an XDP program that handles multi-buffer frames (section
/// `xdp.frags`), as a device with an MTU beyond one page needs.
pub const BPF_F_XDP_HAS_FRAGS: u32 = 1 << 5;

/// Loads a program named `name` (truncated to the kernel's 15 bytes) with
/// `expected_attach_type` and `prog_flags`, for the direct load path (`crate::direct`).
/// Loads without a log first; a rejection is retried with one, as in [`prog_load_raw`].
pub fn prog_load_named(
    name: &str,
    prog_type: ProgType,
    expected_attach_type: u32,
    prog_flags: u32,
    insns: &[u8],
    license: &str,
) -> Result<OwnedFd, SysError> {
    let load = Load {
        name,
        prog_type,
        expected_attach_type,
        prog_flags,
        attach_btf_id: 0,
        func_info: None,
    };
    prog_load(&load, insns, license, 0).map(|(fd, _)| fd)
}

/// Loads a program as `load` says: what the direct loader uses, BTF-typed tracing
/// programs (`attach_btf_id`) and programs that call subprograms (func_info) included.
pub fn prog_load_spec(load: &Load, insns: &[u8], license: &str) -> Result<OwnedFd, SysError> {
    prog_load(load, insns, license, 0).map(|(fd, _)| fd)
}

/// What BPF_PROG_LOAD is asked for besides the instructions.
pub struct Load<'a> {
    /// Truncated to the kernel's 15 bytes.
    pub name: &'a str,
    pub prog_type: ProgType,
    pub expected_attach_type: u32,
    pub prog_flags: u32,
    /// The vmlinux BTF type a BTF-typed tracing program (tp_btf) attaches to, or 0.
    pub attach_btf_id: u32,
    /// For a program that calls subprograms or passes callbacks: its BTF (BPF_BTF_LOAD)
    /// and one func_info record `[first instruction, FUNC type id]` per function, in
    /// instruction order. The kernel refuses such programs without them.
    pub func_info: Option<(BorrowedFd<'a>, &'a [[u32; 2]])>,
}

/// BPF_PROG_LOAD behind [`prog_load_raw`] and [`prog_load_named`].
fn prog_load(
    load: &Load,
    insns: &[u8],
    license: &str,
    log_level: u32,
) -> Result<(OwnedFd, String), SysError> {
    if insns.is_empty() || !insns.len().is_multiple_of(8) {
        return Err(SysError::BadInput(format!(
            "a program is a non-empty sequence of 8-byte instructions, got {} bytes",
            insns.len()
        )));
    }
    let insn_cnt = u32::try_from(insns.len() / 8)
        .map_err(|_| SysError::BadInput("too many instructions".into()))?;
    let license = CString::new(license)
        .map_err(|_| SysError::BadInput("the license string contains a NUL byte".into()))?;

    let mut level = log_level;
    let mut log: Vec<u8> = if level > 0 {
        vec![0; LOG_START]
    } else {
        Vec::new()
    };
    loop {
        let mut attr = ProgLoadAttr {
            prog_type: load.prog_type as u32,
            prog_flags: load.prog_flags,
            insn_cnt,
            insns: ptr_u64(insns.as_ptr()),
            license: ptr_u64(license.as_ptr()),
            log_level: level,
            log_size: log.len() as u32,
            log_buf: if log.is_empty() {
                0
            } else {
                ptr_u64(log.as_mut_ptr())
            },
            prog_name: obj_name(load.name),
            expected_attach_type: load.expected_attach_type,
            attach_btf_id: load.attach_btf_id,
            prog_btf_fd: load.func_info.map_or(0, |(btf, _)| btf.as_raw_fd() as u32),
            func_info_rec_size: if load.func_info.is_some() { 8 } else { 0 },
            func_info: load
                .func_info
                .map_or(0, |(_, records)| ptr_u64(records.as_ptr())),
            func_info_cnt: load
                .func_info
                .map_or(0, |(_, records)| records.len() as u32),
            ..Default::default()
        };
        match bpf_call(BPF_PROG_LOAD, &mut attr) {
            Ok(fd) => return Ok((owned_fd(fd)?, log_text(&log))),
            Err(libc::ENOSPC) if !log.is_empty() && log.len() < LOG_MAX => {
                let want = (attr.log_true_size as usize).max(log.len() * 4);
                log = vec![0; want.min(LOG_MAX)];
            }
            Err(errno) if level == 0 && errno != libc::EPERM => {
                // Retry with a log so the caller gets the verifier's reasons.
                level = 1;
                log = vec![0; LOG_START];
            }
            Err(errno) if !log.is_empty() && log.iter().any(|&b| b != 0) => {
                return Err(SysError::Rejected {
                    errno,
                    log: log_text(&log),
                })
            }
            Err(errno) => return Err(SysError::syscall("BPF_PROG_LOAD", errno)),
        }
    }
}

fn log_text(buf: &[u8]) -> String {
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(buf.get(..end).unwrap_or_default()).into_owned()
}

/// `union bpf_attr` for BPF_PROG_TEST_RUN.
#[repr(C)]
#[derive(Default)]
struct TestRunAttr {
    prog_fd: u32,
    retval: u32,
    data_size_in: u32,
    data_size_out: u32,
    data_in: u64,
    data_out: u64,
    repeat: u32,
    duration: u32,
    ctx_size_in: u32,
    ctx_size_out: u32,
    ctx_in: u64,
    ctx_out: u64,
    flags: u32,
    cpu: u32,
    batch_size: u32,
    _pad: u32,
}
// SAFETY: plain repr(C) integers; pointers are set from live buffers in `test_run`.
unsafe impl BpfAttr for TestRunAttr {}

/// The result of one BPF_PROG_TEST_RUN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestRun {
    /// The program's return value (e.g. XDP_DROP = 1, XDP_PASS = 2; TC_ACT_SHOT = 2).
    pub retval: u32,
    /// Mean run time per repetition, in nanoseconds.
    pub duration_ns: u32,
    /// The packet as the program left it.
    pub data_out: Vec<u8>,
}

/// Runs a packet through a loaded program `repeat` times (0 counts as 1).
/// XDP and TC programs need at least 14 bytes (an Ethernet header) of data.
pub fn test_run(prog_fd: BorrowedFd<'_>, data_in: &[u8], repeat: u32) -> Result<TestRun, SysError> {
    let size_in = u32::try_from(data_in.len())
        .map_err(|_| SysError::BadInput("test packet larger than 4 GiB".into()))?;
    // Room for programs that grow the packet (head room and tail growth).
    let mut out = vec![0u8; data_in.len() + 4096];
    loop {
        let mut attr = TestRunAttr {
            prog_fd: prog_fd.as_raw_fd() as u32,
            data_size_in: size_in,
            data_size_out: out.len() as u32,
            data_in: ptr_u64(data_in.as_ptr()),
            data_out: ptr_u64(out.as_mut_ptr()),
            repeat,
            ..Default::default()
        };
        match bpf_call(BPF_PROG_TEST_RUN, &mut attr) {
            Ok(_) => {
                out.truncate(attr.data_size_out as usize);
                return Ok(TestRun {
                    retval: attr.retval,
                    duration_ns: attr.duration,
                    data_out: out,
                });
            }
            Err(libc::ENOSPC) if (attr.data_size_out as usize) > out.len() => {
                out = vec![0u8; attr.data_size_out as usize];
            }
            Err(libc::EINVAL) if data_in.len() < 14 => {
                return Err(SysError::syscall_with(
                    "BPF_PROG_TEST_RUN",
                    libc::EINVAL,
                    format!(
                        "the packet is {} bytes; XDP and TC test runs need at least an \
                         Ethernet header (14 bytes)",
                        data_in.len()
                    ),
                ))
            }
            Err(errno) => return Err(SysError::syscall("BPF_PROG_TEST_RUN", errno)),
        }
    }
}

/// `union bpf_attr` for BPF_OBJ_GET_INFO_BY_FD.
#[repr(C)]
#[derive(Default)]
pub(crate) struct InfoAttr {
    pub bpf_fd: u32,
    pub info_len: u32,
    pub info: u64,
}
// SAFETY: plain repr(C) integers; `info` points at a live buffer of `info_len` bytes.
unsafe impl BpfAttr for InfoAttr {}

/// `struct bpf_prog_info` as of kernel 6.x (232 bytes).
#[repr(C)]
#[derive(Default)]
struct RawProgInfo {
    prog_type: u32,
    id: u32,
    tag: [u8; 8],
    jited_prog_len: u32,
    xlated_prog_len: u32,
    jited_prog_insns: u64,
    xlated_prog_insns: u64,
    load_time: u64,
    created_by_uid: u32,
    nr_map_ids: u32,
    map_ids: u64,
    name: [u8; 16],
    ifindex: u32,
    gpl_compatible: u32,
    netns_dev: u64,
    netns_ino: u64,
    nr_jited_ksyms: u32,
    nr_jited_func_lens: u32,
    jited_ksyms: u64,
    jited_func_lens: u64,
    btf_id: u32,
    func_info_rec_size: u32,
    func_info: u64,
    nr_func_info: u32,
    nr_line_info: u32,
    line_info: u64,
    jited_line_info: u64,
    nr_jited_line_info: u32,
    line_info_rec_size: u32,
    jited_line_info_rec_size: u32,
    nr_prog_tags: u32,
    prog_tags: u64,
    run_time_ns: u64,
    run_cnt: u64,
    recursion_misses: u64,
    verified_insns: u32,
    attach_btf_obj_id: u32,
    attach_btf_id: u32,
    _pad: u32,
}

/// What the kernel reports about a loaded program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgInfo {
    /// Kernel program id (as in `bpftool prog show id N`).
    pub id: u32,
    /// The name given at load (at most 15 bytes).
    pub name: String,
    /// `enum bpf_prog_type` value.
    pub prog_type: u32,
    /// Number of instructions after the verifier's rewrites.
    pub xlated_insns: u32,
    /// Size of the JIT-compiled code in bytes (0 without JIT).
    pub jited_len: u32,
    /// Instructions the verifier processed (`processed N insns`).
    pub verified_insns: u32,
    /// The program tag (hash of its instructions), as bpftool prints it.
    pub tag: [u8; 8],
}

/// Reads `bpf_prog_info` for a program fd.
pub fn prog_info(fd: BorrowedFd<'_>) -> Result<ProgInfo, SysError> {
    let mut info = RawProgInfo::default();
    let mut attr = InfoAttr {
        bpf_fd: fd.as_raw_fd() as u32,
        info_len: std::mem::size_of::<RawProgInfo>() as u32,
        info: ptr_u64(&mut info as *mut RawProgInfo),
    };
    bpf_call(BPF_OBJ_GET_INFO_BY_FD, &mut attr)
        .map_err(|e| SysError::syscall("BPF_OBJ_GET_INFO_BY_FD", e))?;
    Ok(ProgInfo {
        id: info.id,
        name: log_text(&info.name),
        prog_type: info.prog_type,
        xlated_insns: info.xlated_prog_len / 8,
        jited_len: info.jited_prog_len,
        verified_insns: info.verified_insns,
        tag: info.tag,
    })
}

pub(crate) const OBJ_GET_INFO_BY_FD: u32 = BPF_OBJ_GET_INFO_BY_FD;
