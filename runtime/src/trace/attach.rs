//! Attaching tracing programs: tracepoints, raw and BTF-typed tracepoints, uprobes,
//! perf-event sampling; and refusing, in one sentence, the kinds this kernel lacks.
//!
//! Programs come from an object aya has opened ([`aya::Ebpf`]); a program that is not
//! loaded yet is loaded here (a BTF-typed tracepoint needs its target at load time).
//! Every attachment is an owned aya link inside [`Attached`]: dropping it detaches.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use aya::programs::links::Link as _;
use aya::programs::perf_event::{
    perf_sw_ids, PerfEventLink, PerfEventScope, PerfTypeId, SamplePolicy,
};
use aya::programs::raw_trace_point::RawTracePointLink;
use aya::programs::tp_btf::BtfTracePointLink;
use aya::programs::trace_point::TracePointLink;
use aya::programs::uprobe::{UProbeError, UProbeLink};
use aya::programs::{
    BtfTracePoint, PerfEvent, ProbeKind, Program, ProgramError, RawTracePoint, TracePoint, UProbe,
};
use aya::Ebpf;

/// Where pol expects tracefs, and mounts it when it is missing.
pub const TRACEFS: &str = "/sys/kernel/tracing";

/// Where a tracing program attaches.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ProbeAttach {
    /// `tracepoint(CATEGORY.NAME)`: a tracefs event.
    Tracepoint {
        category: String,
        name: String,
    },
    /// `raw_tracepoint(NAME)`: the arguments as an array of u64.
    RawTracepoint {
        name: String,
    },
    /// A BTF-typed raw tracepoint (`tp_btf/NAME`).
    BtfTracepoint {
        name: String,
    },
    /// A function of a user-space binary (`function` empty: `offset` is the address in
    /// the file); `ret` for a uretprobe; `pid` limits it to one process.
    Uprobe {
        binary: PathBuf,
        function: String,
        offset: u64,
        ret: bool,
        pid: Option<i32>,
    },
    /// A software cpu-clock perf event at `hz` samples a second on every online CPU.
    Profile {
        hz: u64,
    },
    Kprobe {
        function: String,
        ret: bool,
    },
    Fentry {
        function: String,
        ret: bool,
    },
    Lsm {
        hook: String,
    },
}

impl std::fmt::Display for ProbeAttach {
    /// The probe as bpftrace users write it: `tracepoint:syscalls:sys_enter_openat`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProbeAttach::Tracepoint { category, name } => write!(f, "tracepoint:{category}:{name}"),
            ProbeAttach::RawTracepoint { name } => write!(f, "raw_tracepoint:{name}"),
            ProbeAttach::BtfTracepoint { name } => write!(f, "tp_btf:{name}"),
            ProbeAttach::Uprobe {
                binary,
                function,
                offset,
                ret,
                pid,
            } => {
                let kind = if *ret { "uretprobe" } else { "uprobe" };
                write!(f, "{kind}:{}:", binary.display())?;
                match (function.is_empty(), offset) {
                    (true, off) => write!(f, "{off:#x}")?,
                    (false, 0) => write!(f, "{function}")?,
                    (false, off) => write!(f, "{function}+{off:#x}")?,
                }
                match pid {
                    Some(pid) => write!(f, " (pid {pid})"),
                    None => Ok(()),
                }
            }
            ProbeAttach::Profile { hz } => write!(f, "profile:hz:{hz}"),
            ProbeAttach::Kprobe { function, ret } => {
                write!(
                    f,
                    "{}:{function}",
                    if *ret { "kretprobe" } else { "kprobe" }
                )
            }
            ProbeAttach::Fentry { function, ret } => {
                write!(f, "{}:{function}", if *ret { "fexit" } else { "fentry" })
            }
            ProbeAttach::Lsm { hook } => write!(f, "lsm:{hook}"),
        }
    }
}

/// Why a probe could not be attached: one sentence each.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    /// The running kernel lacks this kind of probe; `why` says what was tested.
    #[error("this kernel has no {lacks} ({why}): {kind} probes cannot run here")]
    Unsupported {
        kind: &'static str,
        lacks: &'static str,
        why: String,
    },
    #[error("tracepoint {category}:{name} does not exist on this kernel")]
    NoSuchTracepoint { category: String, name: String },
    #[error("raw tracepoint {name} does not exist on this kernel")]
    NoSuchRawTracepoint { name: String },
    #[error("uprobe target {} does not exist", .binary.display())]
    NoBinary { binary: PathBuf },
    #[error("{} has no symbol `{symbol}`", .binary.display())]
    NoSymbol { binary: PathBuf, symbol: String },
    #[error("cannot read the symbols of {}: {reason}", .binary.display())]
    Symbols { binary: PathBuf, reason: String },
    #[error("no process has pid {pid}, so the uprobe on it cannot be attached")]
    NoProcess { pid: i32 },
    #[error("profile frequency {hz} Hz is out of range: the kernel allows 1 to {max} Hz (/proc/sys/kernel/perf_event_max_sample_rate)")]
    BadFrequency { hz: u64, max: u64 },
    #[error("the object has no program `{program}`")]
    NoProgram { program: String },
    #[error("program `{program}` is a {found} program and cannot attach as {wanted}")]
    WrongProgramType {
        program: String,
        found: &'static str,
        wanted: String,
    },
    #[error("the kernel refused to load program `{program}`: {reason}")]
    Load { program: String, reason: String },
    #[error("cannot attach program `{program}` to {target}: {reason}")]
    Attach {
        program: String,
        target: String,
        reason: String,
    },
    #[error("{0}")]
    Tracefs(String),
}

/// One program attached somewhere: its links, detached when this is dropped.
#[derive(Debug)]
pub struct Attached {
    program: String,
    how: ProbeAttach,
    prog_id: u32,
    links: Vec<Link>,
}

/// aya's owned links, each detaching on drop.
#[derive(Debug)]
enum Link {
    Tracepoint(TracePointLink),
    Raw(RawTracePointLink),
    Btf(BtfTracePointLink),
    Uprobe(UProbeLink),
    Perf(PerfEventLink),
}

impl Attached {
    /// The program's name in the object.
    pub fn program(&self) -> &str {
        &self.program
    }

    /// Where it is attached.
    pub fn how(&self) -> &ProbeAttach {
        &self.how
    }

    /// The kernel's id of the program (as `bpftool prog` shows it).
    pub fn prog_id(&self) -> u32 {
        self.prog_id
    }

    /// How many attachments it holds (one per CPU for `profile`).
    pub fn links(&self) -> usize {
        self.links.len()
    }

    /// Detaches now, reporting the first error (dropping detaches too, silently).
    pub fn detach(mut self) -> Result<(), AttachError> {
        let mut first = None;
        for link in self.links.drain(..) {
            let r = match link {
                Link::Tracepoint(l) => l.detach(),
                Link::Raw(l) => l.detach(),
                Link::Btf(l) => l.detach(),
                Link::Uprobe(l) => l.detach(),
                Link::Perf(l) => l.detach(),
            };
            if let (Err(e), None) = (r, &first) {
                first = Some(AttachError::Attach {
                    program: self.program.clone(),
                    target: self.how.to_string(),
                    reason: format!("detaching failed: {}", error_chain(&e)),
                });
            }
        }
        first.map_or(Ok(()), Err)
    }
}

/// Whether the running kernel can run probes of this kind: `Err` says, in one sentence,
/// what it lacks and how that was tested. Callers may check before loading anything.
pub fn supported(how: &ProbeAttach) -> Result<(), AttachError> {
    match how {
        ProbeAttach::Kprobe { .. } => kprobes().clone().map_err(|why| AttachError::Unsupported {
            kind: "kprobe",
            lacks: "kprobes",
            why,
        }),
        ProbeAttach::Fentry { .. } => fentry().clone().map_err(|why| AttachError::Unsupported {
            kind: "fentry",
            lacks: "fentry programs",
            why,
        }),
        ProbeAttach::Lsm { .. } => lsm().clone().map_err(|why| AttachError::Unsupported {
            kind: "lsm",
            lacks: "BPF LSM programs",
            why,
        }),
        _ => Ok(()),
    }
}

/// kprobes need the kprobe PMU (perf_event_open) or tracefs `kprobe_events` (legacy).
fn kprobes() -> &'static Result<(), String> {
    static ONCE: OnceLock<Result<(), String>> = OnceLock::new();
    ONCE.get_or_init(|| {
        let pmu = Path::new("/sys/bus/event_source/devices/kprobe").exists();
        let events = Path::new(TRACEFS).join("kprobe_events").exists();
        if pmu || events {
            Ok(())
        } else {
            Err(format!(
                "no kprobe PMU in /sys/bus/event_source/devices and no kprobe_events in {TRACEFS}; CONFIG_KPROBES is off"
            ))
        }
    })
}

/// fentry: loading `r0 = 0; exit` as an fentry program on a kernel function.
fn fentry() -> &'static Result<(), String> {
    static ONCE: OnceLock<Result<(), String>> = OnceLock::new();
    // BPF_TRACE_FENTRY; a function every kernel has.
    ONCE.get_or_init(|| {
        probe_load(
            crate::sys::ProgType::Tracing,
            24,
            "do_sys_openat2",
            "fentry",
        )
    })
}

/// BPF LSM: `bpf` in the active LSMs, then loading `r0 = 0; exit` on `bpf_lsm_file_open`.
fn lsm() -> &'static Result<(), String> {
    static ONCE: OnceLock<Result<(), String>> = OnceLock::new();
    ONCE.get_or_init(|| {
        if let Ok(list) = std::fs::read_to_string("/sys/kernel/security/lsm") {
            if !list.trim().split(',').any(|l| l == "bpf") {
                return Err(format!(
                    "`bpf` is not among the active LSMs in /sys/kernel/security/lsm: {}",
                    list.trim()
                ));
            }
        }
        // BPF_LSM_MAC.
        probe_load(crate::sys::ProgType::Lsm, 27, "bpf_lsm_file_open", "LSM")
    })
}

fn probe_load(
    prog_type: crate::sys::ProgType,
    attach_type: u32,
    func: &str,
    what: &str,
) -> Result<(), String> {
    let btf = aya::Btf::from_sys_fs()
        .map_err(|e| format!("no kernel BTF at /sys/kernel/btf/vmlinux ({e})"))?;
    let id = btf
        .id_by_type_name_kind(func, aya_obj::btf::BtfKind::Func)
        .map_err(|_| format!("kernel BTF has no function {func}"))?;
    crate::sys::prog_load_btf_probe(prog_type, attach_type, id).map_err(|e| match e.errno() {
        Some(errno) => format!(
            "it refuses even a minimal {what} program on {func}: {}",
            std::io::Error::from_raw_os_error(errno)
        ),
        None => format!("a minimal {what} program on {func} could not be loaded: {e}"),
    })
}

/// Mounts tracefs at [`TRACEFS`] unless its events are already there. aya looks for it
/// once per process, so this runs before the first attachment.
pub fn ensure_tracefs() -> Result<(), AttachError> {
    let events = Path::new(TRACEFS).join("events");
    if events.is_dir() || Path::new("/sys/kernel/debug/tracing/events").is_dir() {
        return Ok(());
    }
    crate::sys::mount_tracefs(TRACEFS).map_err(AttachError::Tracefs)
}

/// Attaches program `program` (opened by aya from the object, loaded here if it is not
/// yet) as `how` says. Dropping the returned value detaches everything it attached.
pub fn attach(bpf: &mut Ebpf, program: &str, how: &ProbeAttach) -> Result<Attached, AttachError> {
    supported(how)?;
    ensure_tracefs()?;
    let prog = bpf
        .program_mut(program)
        .ok_or_else(|| AttachError::NoProgram {
            program: program.into(),
        })?;
    let fail = |reason: String| AttachError::Attach {
        program: program.into(),
        target: how.to_string(),
        reason,
    };
    let attach_err = |e: ProgramError| fail(error_chain(&e));
    let wrong = |found: &'static str| AttachError::WrongProgramType {
        program: program.into(),
        found,
        wanted: how.to_string(),
    };
    let found = kind_name(prog);
    let mut links = Vec::new();
    let prog_id;
    match how {
        ProbeAttach::Tracepoint { category, name } => {
            let id = Path::new(TRACEFS)
                .join("events")
                .join(category)
                .join(name)
                .join("id");
            if !id.exists() {
                return Err(AttachError::NoSuchTracepoint {
                    category: category.clone(),
                    name: name.clone(),
                });
            }
            let p: &mut TracePoint = prog.try_into().map_err(|_| wrong(found))?;
            load_once(program, p.fd().is_ok(), || p.load())?;
            prog_id = id_of(p.info());
            let l = p.attach(category, name).map_err(attach_err)?;
            links.push(Link::Tracepoint(p.take_link(l).map_err(attach_err)?));
        }
        ProbeAttach::RawTracepoint { name } => {
            let p: &mut RawTracePoint = prog.try_into().map_err(|_| wrong(found))?;
            load_once(program, p.fd().is_ok(), || p.load())?;
            prog_id = id_of(p.info());
            let l = p.attach(name).map_err(|e| {
                if errno(&e) == Some(libc::ENOENT) {
                    AttachError::NoSuchRawTracepoint { name: name.clone() }
                } else {
                    attach_err(e)
                }
            })?;
            links.push(Link::Raw(p.take_link(l).map_err(attach_err)?));
        }
        ProbeAttach::BtfTracepoint { name } => {
            let p: &mut BtfTracePoint = prog.try_into().map_err(|_| wrong(found))?;
            if p.fd().is_err() {
                let btf = aya::Btf::from_sys_fs().map_err(|e| AttachError::Load {
                    program: program.into(),
                    reason: format!("no kernel BTF at /sys/kernel/btf/vmlinux ({e})"),
                })?;
                match p.load(name, &btf) {
                    Ok(()) => {}
                    Err(ProgramError::Btf(_)) => {
                        return Err(AttachError::NoSuchRawTracepoint { name: name.clone() })
                    }
                    Err(e) => return Err(load_err(program, &e)),
                }
            }
            prog_id = id_of(p.info());
            let l = p.attach().map_err(attach_err)?;
            links.push(Link::Btf(p.take_link(l).map_err(attach_err)?));
        }
        ProbeAttach::Uprobe {
            binary,
            function,
            offset,
            ret,
            pid,
        } => {
            let p: &mut UProbe = prog.try_into().map_err(|_| wrong(found))?;
            if matches!(p.kind(), ProbeKind::URetProbe) != *ret {
                return Err(wrong(found));
            }
            if binary.is_absolute() && !binary.exists() {
                return Err(AttachError::NoBinary {
                    binary: binary.clone(),
                });
            }
            if let Some(pid) = pid {
                if !Path::new("/proc").join(pid.to_string()).exists() {
                    return Err(AttachError::NoProcess { pid: *pid });
                }
            }
            load_once(program, p.fd().is_ok(), || p.load())?;
            prog_id = id_of(p.info());
            let func = (!function.is_empty()).then_some(function.as_str());
            let l = p
                .attach(func, *offset, binary, *pid)
                .map_err(|e| uprobe_err(e, binary, function, &fail))?;
            links.push(Link::Uprobe(p.take_link(l).map_err(attach_err)?));
        }
        ProbeAttach::Profile { hz } => {
            let max = max_sample_rate();
            if *hz == 0 || *hz > max {
                return Err(AttachError::BadFrequency { hz: *hz, max });
            }
            let p: &mut PerfEvent = prog.try_into().map_err(|_| wrong(found))?;
            load_once(program, p.fd().is_ok(), || p.load())?;
            prog_id = id_of(p.info());
            let cpus = aya::util::online_cpus()
                .map_err(|(file, e)| fail(format!("cannot read {file}: {e}")))?;
            for cpu in cpus {
                let l = p
                    .attach(
                        PerfTypeId::Software,
                        perf_sw_ids::PERF_COUNT_SW_CPU_CLOCK as u64,
                        PerfEventScope::AllProcessesOneCpu { cpu },
                        SamplePolicy::Frequency(*hz),
                        false,
                    )
                    .map_err(|e| fail(format!("on CPU {cpu}: {}", error_chain(&e))))?;
                // Pushed at once: an error on a later CPU drops (detaches) the earlier ones.
                links.push(Link::Perf(p.take_link(l).map_err(attach_err)?));
            }
        }
        ProbeAttach::Kprobe { .. } | ProbeAttach::Fentry { .. } | ProbeAttach::Lsm { .. } => {
            // `supported` passed: the kernel has them, but pol does not attach them yet.
            return Err(fail("pol does not attach this kind of probe yet".into()));
        }
    }
    Ok(Attached {
        program: program.into(),
        how: how.clone(),
        prog_id,
        links,
    })
}

/// Attaches every `(program, where)` in order; all or nothing: on the first error, what
/// was attached is detached before the error is returned.
pub fn attach_all(
    bpf: &mut Ebpf,
    list: &[(String, ProbeAttach)],
) -> Result<Vec<Attached>, AttachError> {
    // Refuse unsupported kinds before attaching anything at all.
    for (_, how) in list {
        supported(how)?;
    }
    let mut done = Vec::with_capacity(list.len());
    for (program, how) in list {
        // On `?`, `done` is dropped and its links detach.
        done.push(attach(bpf, program, how)?);
    }
    Ok(done)
}

fn load_once(
    program: &str,
    loaded: bool,
    load: impl FnOnce() -> Result<(), ProgramError>,
) -> Result<(), AttachError> {
    if loaded {
        return Ok(());
    }
    load().map_err(|e| load_err(program, &e))
}

fn load_err(program: &str, e: &ProgramError) -> AttachError {
    let reason = match e {
        ProgramError::LoadError {
            io_error,
            verifier_log,
        } => format!("{io_error}; verifier log:\n{verifier_log}"),
        e => error_chain(e),
    };
    AttachError::Load {
        program: program.into(),
        reason,
    }
}

fn uprobe_err(
    e: ProgramError,
    binary: &Path,
    function: &str,
    fail: &dyn Fn(String) -> AttachError,
) -> AttachError {
    match &e {
        ProgramError::UProbeError(UProbeError::InvalidTarget { .. }) => AttachError::NoBinary {
            binary: binary.to_path_buf(),
        },
        ProgramError::UProbeError(UProbeError::SymbolError { error, .. }) => {
            let reason = error.to_string();
            if reason.contains("unknown symbol") {
                AttachError::NoSymbol {
                    binary: binary.to_path_buf(),
                    symbol: function.into(),
                }
            } else {
                AttachError::Symbols {
                    binary: binary.to_path_buf(),
                    reason,
                }
            }
        }
        _ => fail(error_chain(&e)),
    }
}

fn id_of(info: Result<aya::programs::ProgramInfo, ProgramError>) -> u32 {
    info.map(|i| i.id()).unwrap_or(0)
}

/// The errno of a failed syscall inside an aya error.
fn errno(e: &ProgramError) -> Option<i32> {
    match e {
        ProgramError::SyscallError(s) => s.io_error.raw_os_error(),
        ProgramError::IOError(io) => io.raw_os_error(),
        _ => None,
    }
}

/// An error and its sources on one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        src = s.source();
    }
    out
}

fn kind_name(p: &Program) -> &'static str {
    match p {
        Program::TracePoint(_) => "tracepoint",
        Program::RawTracePoint(_) => "raw tracepoint",
        Program::BtfTracePoint(_) => "BTF tracepoint",
        Program::UProbe(u) if matches!(u.kind(), ProbeKind::URetProbe) => "uretprobe",
        Program::UProbe(_) => "uprobe",
        Program::PerfEvent(_) => "perf event",
        Program::KProbe(_) => "kprobe",
        Program::FEntry(_) => "fentry",
        Program::FExit(_) => "fexit",
        Program::Lsm(_) => "LSM",
        Program::Xdp(_) => "XDP",
        Program::SchedClassifier(_) => "tc",
        _ => "non-tracing",
    }
}

/// The kernel's ceiling on sampling frequencies (100000 if the file cannot be read).
fn max_sample_rate() -> u64 {
    std::fs::read_to_string("/proc/sys/kernel/perf_event_max_sample_rate")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100_000)
}
