//! Pinning BPF objects in the BPF filesystem (BPF_OBJ_PIN) and opening pins (BPF_OBJ_GET).

use std::ffi::CString;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;

use super::{bpf_call, owned_fd, ptr_u64, BpfAttr, SysError};

const BPF_OBJ_PIN: u32 = 6;
const BPF_OBJ_GET: u32 = 7;

/// `union bpf_attr` for BPF_OBJ_PIN and BPF_OBJ_GET.
#[repr(C)]
#[derive(Default)]
struct ObjAttr {
    pathname: u64,
    bpf_fd: u32,
    file_flags: u32,
    path_fd: i32,
    _pad: u32,
}
// SAFETY: plain repr(C) integers; `pathname` points at a NUL-terminated string that lives
// across the call.
unsafe impl BpfAttr for ObjAttr {}

fn c_path(path: &Path) -> Result<CString, SysError> {
    CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| SysError::BadInput(format!("the path {} contains a NUL byte", path.display())))
}

/// Pins a map, program or link fd at `path` (inside a mounted bpffs).
pub fn obj_pin(fd: BorrowedFd<'_>, path: &Path) -> Result<(), SysError> {
    let name = c_path(path)?;
    let mut attr = ObjAttr {
        pathname: ptr_u64(name.as_ptr()),
        bpf_fd: fd.as_raw_fd() as u32,
        ..Default::default()
    };
    bpf_call(BPF_OBJ_PIN, &mut attr).map(|_| ()).map_err(|e| {
        let why = match e {
            libc::EEXIST => format!("{} already exists", path.display()),
            libc::ENOENT => format!("the directory of {} does not exist", path.display()),
            libc::EPERM => format!(
                "{} is not on a BPF filesystem, or pinning needs root",
                path.display()
            ),
            _ => format!("cannot pin at {}", path.display()),
        };
        SysError::syscall_with("BPF_OBJ_PIN", e, why)
    })
}

/// Opens a pinned object; the fd is read-write.
pub fn obj_get(path: &Path) -> Result<OwnedFd, SysError> {
    let name = c_path(path)?;
    let mut attr = ObjAttr {
        pathname: ptr_u64(name.as_ptr()),
        ..Default::default()
    };
    let fd = bpf_call(BPF_OBJ_GET, &mut attr).map_err(|e| {
        let why = match e {
            libc::ENOENT => format!("nothing is pinned at {}", path.display()),
            libc::EACCES | libc::EPERM => format!(
                "opening {} needs root (CAP_BPF), or read-write access to the pin",
                path.display()
            ),
            _ => format!("cannot open the pin {}", path.display()),
        };
        SysError::syscall_with("BPF_OBJ_GET", e, why)
    })?;
    owned_fd(fd)
}
