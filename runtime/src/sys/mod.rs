//! Raw `bpf(2)` and `mount(2)` calls: the only module in pol with `unsafe`.
//!
//! Every `bpf()` call goes through [`bpf_call`], which takes one of the `#[repr(C)]`
//! attribute structs declared in the submodules. Errors carry the errno and a sentence
//! saying what it most likely means; verifier rejections carry the log word for word.

pub mod batch;
mod btf;
pub mod epoll;
mod fs;
pub mod link;
mod map;
pub mod netlink;
pub mod perf;
pub mod pin;
mod prog;

use std::os::fd::{FromRawFd, OwnedFd};

pub use btf::btf_load;
pub use fs::{bpffs_mounted, mount_bpffs, mount_tracefs};
pub use map::{
    map_create, map_create_named, map_delete, map_info, map_lookup, map_next_key, map_update,
    map_update_sized, possible_cpus, value_buf_len, MapInfo, MapType,
};
pub use prog::{
    prog_info, prog_load_btf_probe, prog_load_named, prog_load_raw, prog_load_spec, test_run, Load,
    ProgInfo, ProgType, TestRun, BPF_F_XDP_HAS_FRAGS,
};

/// Maps and programs *with names* (and programs with an expected attach type), for the
/// direct load path; the same functions as at the top of this module, under the path
/// callers outside the runtime use.
pub mod create {
    pub use super::map::{map_create_named, map_update_sized};
    pub use super::prog::prog_load_named;
}

/// An error from a `bpf()` call or from input that cannot be passed to one.
#[derive(Debug, thiserror::Error)]
pub enum SysError {
    /// The syscall failed; `explanation` says what the errno most likely means here.
    #[error("{op} failed: {explanation} ({})", errno_text(*.errno))]
    Syscall {
        op: &'static str,
        errno: i32,
        explanation: String,
    },
    /// The kernel verifier rejected a program; `log` is the verifier log as the kernel wrote it.
    #[error("the kernel verifier rejected the program ({}):\n{log}", errno_text(*.errno))]
    Rejected { errno: i32, log: String },
    /// The caller passed something the kernel cannot take (odd instruction bytes, a NUL in
    /// the license, a key of the wrong size, ...).
    #[error("invalid input: {0}")]
    BadInput(String),
}

impl SysError {
    /// The errno behind this error, if it came from the kernel.
    pub fn errno(&self) -> Option<i32> {
        match self {
            SysError::Syscall { errno, .. } | SysError::Rejected { errno, .. } => Some(*errno),
            SysError::BadInput(_) => None,
        }
    }

    /// The verifier log, when the kernel rejected a program.
    pub fn verifier_log(&self) -> Option<&str> {
        match self {
            SysError::Rejected { log, .. } => Some(log),
            _ => None,
        }
    }

    pub(crate) fn syscall(op: &'static str, errno: i32) -> Self {
        SysError::Syscall {
            op,
            errno,
            explanation: explain(errno).to_string(),
        }
    }

    pub(crate) fn syscall_with(op: &'static str, errno: i32, explanation: String) -> Self {
        SysError::Syscall {
            op,
            errno,
            explanation,
        }
    }
}

/// `strerror`-like text plus the symbolic name, e.g. "Operation not permitted, EPERM".
fn errno_text(errno: i32) -> String {
    let text = std::io::Error::from_raw_os_error(errno).to_string();
    match errno_name(errno) {
        Some(name) => format!("{name}: {text}"),
        None => text,
    }
}

fn errno_name(errno: i32) -> Option<&'static str> {
    Some(match errno {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::E2BIG => "E2BIG",
        libc::EBADF => "EBADF",
        libc::EAGAIN => "EAGAIN",
        libc::ENOMEM => "ENOMEM",
        libc::EACCES => "EACCES",
        libc::EFAULT => "EFAULT",
        libc::EBUSY => "EBUSY",
        libc::EEXIST => "EEXIST",
        libc::EINVAL => "EINVAL",
        libc::ENOSPC => "ENOSPC",
        libc::ERANGE => "ERANGE",
        libc::ENOSYS => "ENOSYS",
        libc::ENOTSUP => "ENOTSUPP",
        _ => return None,
    })
}

/// What an errno from `bpf()` most likely means, as a sentence.
fn explain(errno: i32) -> &'static str {
    match errno {
        libc::EPERM => "this needs root or CAP_BPF + CAP_NET_ADMIN",
        libc::EACCES => "the kernel refused access (the verifier or an LSM said no)",
        libc::ENOSYS => "this kernel has no bpf() syscall (CONFIG_BPF_SYSCALL is off)",
        libc::EINVAL => "the kernel rejected the arguments (unsupported type, size or flag)",
        libc::E2BIG => "the program or attribute is larger than this kernel accepts",
        libc::ENOMEM => "the kernel ran out of memory (or hit the locked-memory limit)",
        libc::EBADF => "the file descriptor is not a BPF object of the expected kind",
        libc::ENOENT => "no such element",
        libc::EEXIST => "the element already exists",
        libc::ENOTSUP | 524 => "this kernel does not support the operation for this type",
        _ => "the kernel returned an error",
    }
}

/// Marker for the `#[repr(C)]` attribute structs that may be handed to `bpf()`.
///
/// # Safety
/// Implementors must be `#[repr(C)]`, contain only integers and byte arrays, and every
/// pointer-valued field (stored as `u64`) must point at memory that outlives the call
/// and is large enough for the size stored next to it.
pub(crate) unsafe trait BpfAttr {}

/// The one entry point for `bpf(2)`. Returns the non-negative result or the errno.
pub(crate) fn bpf_call<A: BpfAttr>(cmd: u32, attr: &mut A) -> Result<i64, i32> {
    let size = std::mem::size_of::<A>() as u32;
    // SAFETY: `A: BpfAttr` guarantees a plain `#[repr(C)]` struct whose embedded pointers
    // are valid for the sizes next to them; the kernel reads and writes at most `size` bytes.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd as libc::c_long,
            attr as *mut A as *mut libc::c_void,
            size as libc::c_long,
        )
    };
    if ret < 0 {
        Err(std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EINVAL))
    } else {
        Ok(ret)
    }
}

/// Wraps a file descriptor number that `bpf()` just returned.
pub(crate) fn owned_fd(raw: i64) -> Result<OwnedFd, SysError> {
    let fd = i32::try_from(raw)
        .map_err(|_| SysError::BadInput(format!("bpf() returned {raw}, not a file descriptor")))?;
    // SAFETY: the kernel just created this descriptor for us and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The kernel's object name: at most 15 bytes of `[A-Za-z0-9_.]`, NUL-padded.
pub(crate) fn obj_name(name: &str) -> [u8; 16] {
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

/// A pointer as the kernel's `__aligned_u64`.
pub(crate) fn ptr_u64<T>(p: *const T) -> u64 {
    p as usize as u64
}

/// Waits until every BPF program run that started before now has finished. Programs run
/// inside RCU read-side sections, and `membarrier(MEMBARRIER_CMD_GLOBAL)` returns after an
/// RCU grace period (`synchronize_rcu`); where it is unavailable, a pause long enough for a
/// packet's run on a loaded machine.
pub fn wait_for_running_programs() {
    const MEMBARRIER_CMD_GLOBAL: libc::c_long = 1;
    // SAFETY: membarrier takes no pointers; a failure only means we pause instead.
    let r = unsafe { libc::syscall(libc::SYS_membarrier, MEMBARRIER_CMD_GLOBAL, 0, 0) };
    if r != 0 {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Checks that this process can load BPF programs by loading `r0 = 0; exit` as XDP.
/// On failure, the error is a sentence saying why and what to do.
pub fn bpf_available() -> Result<(), String> {
    // r0 = 0 (XDP_ABORTED); exit
    const TRIVIAL: [u8; 16] = [0xb7, 0, 0, 0, 0, 0, 0, 0, 0x95, 0, 0, 0, 0, 0, 0, 0];
    match prog_load_raw(ProgType::Xdp, &TRIVIAL, "GPL", 0) {
        Ok(_) => Ok(()),
        Err(e) => {
            // SAFETY: geteuid has no preconditions and cannot fail.
            let euid = unsafe { libc::geteuid() };
            let who = if euid == 0 {
                "running as root".to_string()
            } else {
                format!("running as uid {euid}, not root")
            };
            Err(format!(
                "cannot load BPF programs ({who}): {e}; pol's kernel features need root \
                 (or CAP_BPF + CAP_NET_ADMIN) on a kernel with bpf() enabled"
            ))
        }
    }
}
