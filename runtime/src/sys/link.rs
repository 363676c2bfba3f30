//! BPF links (BPF_LINK_CREATE): attaching a program fd to an interface's XDP hook or to
//! TCX ingress/egress. The link lives as long as its fd: closing it detaches the program,
//! so a process that dies (even by SIGKILL) leaves nothing attached. Also programs by id.

use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

use super::{bpf_call, owned_fd, BpfAttr, SysError};

const BPF_LINK_CREATE: u32 = 28;

/// `enum bpf_attach_type` values pol attaches with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum AttachType {
    Xdp = 37,
    TcxIngress = 46,
    TcxEgress = 47,
    /// A perf event (tracepoint, uprobe, sampling): the target is the event's fd.
    PerfEvent = 41,
    /// Cgroup sock_addr hooks: the target is the cgroup directory's fd.
    CgroupInet4Bind = 8,
    CgroupInet6Bind = 9,
    CgroupInet4Connect = 10,
    CgroupInet6Connect = 11,
    /// UDP sendmsg to an address (`cgroup/sendmsg4`, `sendmsg6`).
    CgroupUdp4Sendmsg = 14,
    CgroupUdp6Sendmsg = 15,
}

/// `union bpf_attr` for BPF_LINK_CREATE (the common part and the tcx member).
#[repr(C)]
#[derive(Default)]
struct LinkCreateAttr {
    prog_fd: u32,
    target_ifindex: u32,
    attach_type: u32,
    flags: u32,
    relative_fd: u32,
    _pad: u32,
    expected_revision: u64,
    _rest: [u64; 2],
}
// SAFETY: plain repr(C) integers, no pointers.
unsafe impl BpfAttr for LinkCreateAttr {}

/// Attaches `prog` at `ifindex` (for [`AttachType::PerfEvent`], the perf event's fd; for
/// the cgroup types, the cgroup directory's fd).
/// `flags`: for XDP the `XDP_FLAGS_*_MODE` bits, otherwise 0.
/// The errno stays available through [`SysError::errno`] (EBUSY/EEXIST: the hook is taken,
/// EOPNOTSUPP: the driver has no native XDP).
pub fn link_create(
    prog: BorrowedFd<'_>,
    ifindex: u32,
    attach_type: AttachType,
    flags: u32,
) -> Result<OwnedFd, SysError> {
    let mut attr = LinkCreateAttr {
        prog_fd: prog.as_raw_fd() as u32,
        target_ifindex: ifindex,
        attach_type: attach_type as u32,
        flags,
        ..Default::default()
    };
    let fd = bpf_call(BPF_LINK_CREATE, &mut attr).map_err(|e| {
        let why = match e {
            libc::EBUSY | libc::EEXIST => "another program holds this hook".to_string(),
            libc::EOPNOTSUPP | 524 => "the driver does not support this attach mode".to_string(),
            libc::EINVAL => "this kernel does not accept this link (too old for it?)".to_string(),
            libc::EPERM => "attaching needs root (CAP_NET_ADMIN)".to_string(),
            _ => "the kernel refused the link".to_string(),
        };
        SysError::syscall_with("BPF_LINK_CREATE", e, why)
    })?;
    owned_fd(fd)
}

const BPF_PROG_GET_FD_BY_ID: u32 = 13;

/// `union bpf_attr` for BPF_PROG_GET_FD_BY_ID.
#[repr(C)]
#[derive(Default)]
struct GetFdByIdAttr {
    id: u32,
    next_id: u32,
    open_flags: u32,
}
// SAFETY: plain repr(C) integers, no pointers.
unsafe impl BpfAttr for GetFdByIdAttr {}

/// An fd of the loaded program `id`: holding it keeps the program alive after it is
/// detached (how `pol run --replace` can put back what it replaced).
pub fn prog_fd_by_id(id: u32) -> Result<OwnedFd, SysError> {
    let mut attr = GetFdByIdAttr {
        id,
        ..Default::default()
    };
    let fd = bpf_call(BPF_PROG_GET_FD_BY_ID, &mut attr)
        .map_err(|e| SysError::syscall("BPF_PROG_GET_FD_BY_ID", e))?;
    owned_fd(fd)
}

const BPF_LINK_UPDATE: u32 = 29;
/// `BPF_F_REPLACE`: update only if the link still runs `old_prog_fd`.
const BPF_F_REPLACE: u32 = 1 << 2;

/// `union bpf_attr` for BPF_LINK_UPDATE.
#[repr(C)]
#[derive(Default)]
struct LinkUpdateAttr {
    link_fd: u32,
    new_prog_fd: u32,
    flags: u32,
    old_prog_fd: u32,
}
// SAFETY: plain repr(C) integers, no pointers.
unsafe impl BpfAttr for LinkUpdateAttr {}

/// Switches `link` to program `new` in one step: packets see either the old program or the
/// new one, never neither or both. With `old`, only if the link still runs `old` (EPERM
/// otherwise: someone else switched it).
pub fn link_update(
    link: BorrowedFd<'_>,
    new: BorrowedFd<'_>,
    old: Option<BorrowedFd<'_>>,
) -> Result<(), SysError> {
    let mut attr = LinkUpdateAttr {
        link_fd: link.as_raw_fd() as u32,
        new_prog_fd: new.as_raw_fd() as u32,
        flags: if old.is_some() { BPF_F_REPLACE } else { 0 },
        old_prog_fd: old.map_or(0, |o| o.as_raw_fd() as u32),
    };
    bpf_call(BPF_LINK_UPDATE, &mut attr)
        .map(|_| ())
        .map_err(|e| SysError::syscall("BPF_LINK_UPDATE", e))
}
