//! Creating maps and loading programs *with names* and an expected attach type, for the
//! direct load path (`crate::direct`): `map_create`/`prog_load_raw` in the sibling modules
//! create nameless scratch objects for tests. Names are truncated to the kernel's 15 bytes.

use std::ffi::CString;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

use super::{bpf_call, owned_fd, ptr_u64, BpfAttr, ProgType, SysError};

const BPF_MAP_CREATE: u32 = 0;
const BPF_MAP_UPDATE_ELEM: u32 = 2;
const BPF_PROG_LOAD: u32 = 5;

/// The kernel's object name: at most 15 bytes of `[A-Za-z0-9_.]`, NUL-padded.
fn obj_name(name: &str) -> [u8; 16] {
    let mut out = [0u8; 16];
    for (o, b) in out
        .iter_mut()
        .zip(
            name.bytes()
                .filter(|b| b.is_ascii_alphanumeric() || *b == b'_' || *b == b'.'),
        )
        .take(15)
    {
        *o = b;
    }
    out
}

#[repr(C)]
#[derive(Default)]
struct MapCreateAttr {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    inner_map_fd: u32,
    numa_node: u32,
    map_name: [u8; 16],
    map_ifindex: u32,
    btf_fd: u32,
    btf_key_type_id: u32,
    btf_value_type_id: u32,
    btf_vmlinux_value_type_id: u32,
    map_extra: u64,
}
// SAFETY: plain repr(C) integers and bytes, no pointers.
unsafe impl BpfAttr for MapCreateAttr {}

/// Creates a map named `name` (without BTF). `map_type` is the raw `enum bpf_map_type`.
pub fn map_create_named(
    name: &str,
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    flags: u32,
) -> Result<OwnedFd, SysError> {
    let mut attr = MapCreateAttr {
        map_type,
        key_size,
        value_size,
        max_entries,
        map_flags: flags,
        map_name: obj_name(name),
        ..Default::default()
    };
    let fd = bpf_call(BPF_MAP_CREATE, &mut attr).map_err(|e| {
        let why = match e {
            libc::ENOMEM | libc::E2BIG => format!(
                "cannot allocate map `{name}` ({max_entries} entries of {key_size}+{value_size} bytes): \
                 the kernel ran out of memory or hit the locked-memory limit"
            ),
            libc::EPERM => "creating maps needs root (CAP_BPF)".to_string(),
            _ => format!("the kernel refused map `{name}` (type {map_type}, flags {flags:#x})"),
        };
        SysError::syscall_with("BPF_MAP_CREATE", e, why)
    })?;
    owned_fd(fd)
}

#[repr(C)]
#[derive(Default)]
struct MapElemAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}
// SAFETY: plain repr(C) integers; key/value point at live buffers of the map's sizes.
unsafe impl BpfAttr for MapElemAttr {}

/// BPF_MAP_UPDATE_ELEM without first asking the kernel for the map's sizes: the caller
/// created the map and passes `key`/`value` of exactly its key and value sizes.
pub fn map_update_sized(
    fd: BorrowedFd<'_>,
    key: &[u8],
    value: &[u8],
    flags: u64,
) -> Result<(), SysError> {
    let mut attr = MapElemAttr {
        map_fd: fd.as_raw_fd() as u32,
        key: ptr_u64(key.as_ptr()),
        value: ptr_u64(value.as_ptr()),
        flags,
        ..Default::default()
    };
    bpf_call(BPF_MAP_UPDATE_ELEM, &mut attr)
        .map(|_| ())
        .map_err(|e| SysError::syscall("BPF_MAP_UPDATE_ELEM", e))
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
// SAFETY: plain repr(C) integers; pointers are set from live buffers in `prog_load_named`.
unsafe impl BpfAttr for ProgLoadAttr {}

const LOG_START: usize = 64 * 1024;
const LOG_MAX: usize = (u32::MAX >> 2) as usize;

/// Loads a named program from encoded instructions with `expected_attach_type`, without a
/// log first; a rejection is retried with a log so the error carries the verifier's words
/// ([`SysError::Rejected`]).
pub fn prog_load_named(
    name: &str,
    prog_type: ProgType,
    expected_attach_type: u32,
    insns: &[u8],
    license: &str,
) -> Result<OwnedFd, SysError> {
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
    let mut log: Vec<u8> = Vec::new();
    loop {
        let mut attr = ProgLoadAttr {
            prog_type: prog_type as u32,
            insn_cnt,
            insns: ptr_u64(insns.as_ptr()),
            license: ptr_u64(license.as_ptr()),
            log_level: u32::from(!log.is_empty()),
            log_size: log.len() as u32,
            log_buf: if log.is_empty() {
                0
            } else {
                ptr_u64(log.as_mut_ptr())
            },
            prog_name: obj_name(name),
            expected_attach_type,
            ..Default::default()
        };
        match bpf_call(BPF_PROG_LOAD, &mut attr) {
            Ok(fd) => return owned_fd(fd),
            Err(libc::ENOSPC) if !log.is_empty() && log.len() < LOG_MAX => {
                let want = (attr.log_true_size as usize).max(log.len() * 4);
                log = vec![0; want.min(LOG_MAX)];
            }
            Err(errno) if log.is_empty() && errno != libc::EPERM => log = vec![0; LOG_START],
            Err(errno) if log.iter().any(|&b| b != 0) => {
                let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
                return Err(SysError::Rejected {
                    errno,
                    log: String::from_utf8_lossy(log.get(..end).unwrap_or_default()).into_owned(),
                });
            }
            Err(errno) => return Err(SysError::syscall("BPF_PROG_LOAD", errno)),
        }
    }
}
