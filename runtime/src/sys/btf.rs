//! BPF_BTF_LOAD: a program's own BTF (its FUNC types), which BPF_PROG_LOAD's func_info
//! refers to when the program calls subprograms or passes callbacks.

use std::os::fd::OwnedFd;

use super::{bpf_call, owned_fd, ptr_u64, BpfAttr, SysError};

const BPF_BTF_LOAD: u32 = 18;
/// First BTF log size, used only to explain a rejection.
const LOG_SIZE: usize = 64 * 1024;

/// `union bpf_attr` for BPF_BTF_LOAD.
#[repr(C)]
#[derive(Default)]
struct BtfLoadAttr {
    btf: u64,
    btf_log_buf: u64,
    btf_size: u32,
    btf_log_size: u32,
    btf_log_level: u32,
    btf_log_true_size: u32,
}
// SAFETY: plain repr(C) integers; pointers are set from live buffers in `btf_load`.
unsafe impl BpfAttr for BtfLoadAttr {}

/// Loads a `.BTF` blob into the kernel. A rejection is retried with a log, which the
/// error carries.
pub fn btf_load(btf: &[u8]) -> Result<OwnedFd, SysError> {
    let size = u32::try_from(btf.len()).map_err(|_| SysError::BadInput("BTF too large".into()))?;
    let mut attr = BtfLoadAttr {
        btf: ptr_u64(btf.as_ptr()),
        btf_size: size,
        ..Default::default()
    };
    match bpf_call(BPF_BTF_LOAD, &mut attr) {
        Ok(fd) => owned_fd(fd),
        Err(libc::EPERM) => Err(SysError::syscall("BPF_BTF_LOAD", libc::EPERM)),
        Err(_) => {
            let mut log = vec![0u8; LOG_SIZE];
            let mut attr = BtfLoadAttr {
                btf: ptr_u64(btf.as_ptr()),
                btf_size: size,
                btf_log_buf: ptr_u64(log.as_mut_ptr()),
                btf_log_size: LOG_SIZE as u32,
                btf_log_level: 1,
                ..Default::default()
            };
            match bpf_call(BPF_BTF_LOAD, &mut attr) {
                Ok(fd) => owned_fd(fd),
                Err(errno) => {
                    let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
                    let text = String::from_utf8_lossy(log.get(..end).unwrap_or_default());
                    Err(SysError::syscall_with(
                        "BPF_BTF_LOAD",
                        errno,
                        format!("the kernel refused the program's BTF: {}", text.trim()),
                    ))
                }
            }
        }
    }
}
