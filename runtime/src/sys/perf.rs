//! Tracing attachments without a loader library: perf events (tracepoints, uprobes,
//! software cpu-clock sampling) opened with perf_event_open(2) and linked to a program
//! with BPF_LINK_CREATE, and raw / BTF-typed tracepoints opened with
//! BPF_RAW_TRACEPOINT_OPEN. Each returns owned fds: closing them detaches.

use std::ffi::CString;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

use super::link::{link_create, AttachType};
use super::{bpf_call, owned_fd, ptr_u64, BpfAttr, SysError};

const BPF_RAW_TRACEPOINT_OPEN: u32 = 17;
const PERF_TYPE_SOFTWARE: u32 = 1;
const PERF_TYPE_TRACEPOINT: u32 = 2;
const PERF_COUNT_SW_CPU_CLOCK: u64 = 0;
/// `perf_event_attr` flag bits (the bitfield after `read_format`).
const ATTR_FREQ: u64 = 1 << 10;
const PERF_FLAG_FD_CLOEXEC: libc::c_ulong = 8;
/// `_IO('$', 0)`.
const PERF_EVENT_IOC_ENABLE: libc::c_ulong = 0x2400;

/// `struct perf_event_attr` up to `config3` (PERF_ATTR_SIZE_VER8, 136 bytes).
#[repr(C)]
#[derive(Default)]
struct PerfEventAttr {
    type_: u32,
    size: u32,
    config: u64,
    sample_period_or_freq: u64,
    sample_type: u64,
    read_format: u64,
    flags: u64,
    wakeup_events: u32,
    bp_type: u32,
    config1: u64,
    config2: u64,
    branch_sample_type: u64,
    sample_regs_user: u64,
    sample_stack_user: u32,
    clockid: i32,
    sample_regs_intr: u64,
    aux_watermark: u32,
    sample_max_stack: u16,
    reserved2: u16,
    aux_sample_size: u32,
    reserved3: u32,
    sig_data: u64,
    config3: u64,
}

/// What a perf event counts.
#[derive(Debug, Clone)]
pub enum PerfEvent<'a> {
    /// The tracefs event with this id (`events/CATEGORY/NAME/id`).
    Tracepoint { id: u64 },
    /// A uprobe through the `uprobe` PMU: `pmu_type` and `retprobe_bit` are read from
    /// /sys/bus/event_source/devices/uprobe; `offset` is a file offset in `binary`.
    Uprobe {
        pmu_type: u32,
        retprobe_bit: Option<u32>,
        binary: &'a str,
        offset: u64,
    },
    /// Software cpu-clock sampling `hz` times a second.
    CpuClock { hz: u64 },
}

/// Opens a perf event: on every CPU for `pid` (`None`: every process on `cpu`).
pub fn perf_event_open(
    event: &PerfEvent<'_>,
    pid: Option<i32>,
    cpu: i32,
) -> Result<OwnedFd, SysError> {
    let mut attr = PerfEventAttr {
        size: std::mem::size_of::<PerfEventAttr>() as u32,
        ..Default::default()
    };
    // Keeps the path alive through the call.
    let mut _path = None;
    match event {
        PerfEvent::Tracepoint { id } => {
            attr.type_ = PERF_TYPE_TRACEPOINT;
            attr.config = *id;
        }
        PerfEvent::Uprobe {
            pmu_type,
            retprobe_bit,
            binary,
            offset,
        } => {
            let path = CString::new(*binary).map_err(|_| {
                SysError::BadInput(format!("the path {binary:?} contains a NUL byte"))
            })?;
            attr.type_ = *pmu_type;
            attr.config = retprobe_bit.map_or(0, |b| 1u64 << b);
            attr.config1 = ptr_u64(path.as_ptr());
            attr.config2 = *offset;
            _path = Some(path);
        }
        PerfEvent::CpuClock { hz } => {
            attr.type_ = PERF_TYPE_SOFTWARE;
            attr.config = PERF_COUNT_SW_CPU_CLOCK;
            attr.sample_period_or_freq = *hz;
            attr.flags = ATTR_FREQ;
        }
    }
    // SAFETY: `attr` is a repr(C) perf_event_attr whose size field is its size; the path
    // pointer in config1 (uprobes) points at `_path`, alive until the call returns.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_perf_event_open,
            &attr as *const PerfEventAttr,
            pid.unwrap_or(-1) as libc::c_long,
            cpu as libc::c_long,
            -1 as libc::c_long,
            PERF_FLAG_FD_CLOEXEC,
        )
    };
    if ret < 0 {
        let errno = std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EINVAL);
        let why = match errno {
            libc::ENOENT => "the kernel has no such event".to_string(),
            libc::ESRCH => "no such process".to_string(),
            libc::EACCES | libc::EPERM => "tracing needs root (CAP_PERFMON)".to_string(),
            libc::EINVAL => "the kernel rejected the event's parameters".to_string(),
            _ => "the kernel refused the perf event".to_string(),
        };
        return Err(SysError::syscall_with("perf_event_open", errno, why));
    }
    owned_fd(ret as i64)
}

/// Runs `prog` on every occurrence of the perf event `perf` (BPF_LINK_CREATE with
/// BPF_PERF_EVENT), then enables the event. Closing the link (or the event) detaches.
pub fn attach_perf_event(prog: BorrowedFd<'_>, perf: BorrowedFd<'_>) -> Result<OwnedFd, SysError> {
    let link = link_create(prog, perf.as_raw_fd() as u32, AttachType::PerfEvent, 0)?;
    // SAFETY: an ioctl without argument on a perf event fd we own.
    let r = unsafe { libc::ioctl(perf.as_raw_fd(), PERF_EVENT_IOC_ENABLE as _, 0) };
    if r < 0 {
        let errno = std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EINVAL);
        return Err(SysError::syscall("PERF_EVENT_IOC_ENABLE", errno));
    }
    Ok(link)
}

/// `union bpf_attr` for BPF_RAW_TRACEPOINT_OPEN.
#[repr(C)]
#[derive(Default)]
struct RawTpOpenAttr {
    name: u64,
    prog_fd: u32,
    _pad: u32,
    cookie: u64,
}
// SAFETY: plain repr(C) integers; `name` points at a live C string in `raw_tracepoint_open`.
unsafe impl BpfAttr for RawTpOpenAttr {}

/// Attaches a raw tracepoint program to `name`, or a BTF-typed one (`name` `None`: the
/// target was given at load time). ENOENT: no such raw tracepoint.
pub fn raw_tracepoint_open(prog: BorrowedFd<'_>, name: Option<&str>) -> Result<OwnedFd, SysError> {
    let name = name
        .map(CString::new)
        .transpose()
        .map_err(|_| SysError::BadInput("a tracepoint name contains a NUL byte".into()))?;
    let mut attr = RawTpOpenAttr {
        name: name.as_ref().map_or(0, |n| ptr_u64(n.as_ptr())),
        prog_fd: prog.as_raw_fd() as u32,
        ..Default::default()
    };
    let fd = bpf_call(BPF_RAW_TRACEPOINT_OPEN, &mut attr)
        .map_err(|e| SysError::syscall("BPF_RAW_TRACEPOINT_OPEN", e))?;
    owned_fd(fd)
}
