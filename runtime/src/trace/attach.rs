//! Attaching tracing programs: tracepoints, raw and BTF-typed tracepoints, uprobes,
//! perf-event sampling; and refusing, in one sentence, the kinds this kernel lacks.
//!
//! Programs come loaded in a [`ProbeObject`]; attachments are made with raw syscalls
//! ([`crate::sys::perf`]: perf_event_open plus BPF_LINK_CREATE, or
//! BPF_RAW_TRACEPOINT_OPEN). Every attachment is a set of owned fds inside [`Attached`]:
//! dropping it detaches.

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::sys::perf::{self, PerfEvent};
use crate::sys::SysError;
use crate::trace::load::ProbeObject;

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

impl ProbeAttach {
    /// How the program layout.json describes attaches; `pid` limits uprobes to one
    /// process (`pol run --pid`).
    pub fn from_layout(a: &super::layout::Attach, pid: Option<i32>) -> ProbeAttach {
        use super::layout::Attach;
        match a {
            Attach::Tracepoint { category, name } => ProbeAttach::Tracepoint {
                category: category.clone(),
                name: name.clone(),
            },
            Attach::RawTracepoint { name } => ProbeAttach::RawTracepoint { name: name.clone() },
            Attach::BtfTracepoint { name } => ProbeAttach::BtfTracepoint { name: name.clone() },
            Attach::Uprobe {
                binary,
                function,
                ret,
            } => ProbeAttach::Uprobe {
                binary: binary.into(),
                function: function.clone(),
                offset: 0,
                ret: *ret,
                pid,
            },
            Attach::Profile { hz } => ProbeAttach::Profile { hz: *hz },
        }
    }
}

/// Every program of a layout with how it attaches, in layout order (what
/// [`attach_all`] takes).
pub fn plan(layout: &super::layout::TraceLayout, pid: Option<i32>) -> Vec<(String, ProbeAttach)> {
    layout
        .probes
        .iter()
        .map(|p| (p.program.clone(), ProbeAttach::from_layout(&p.attach, pid)))
        .collect()
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

/// One program attached somewhere: its links (and perf events), closed when this is
/// dropped, which detaches it.
#[derive(Debug)]
pub struct Attached {
    program: String,
    how: ProbeAttach,
    prog_id: u32,
    /// One link per attachment (one per CPU for `profile`).
    links: Vec<OwnedFd>,
    /// The perf events the links run on, closed after them.
    events: Vec<OwnedFd>,
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

    /// Detaches now (closing the links cannot fail; dropping detaches too).
    pub fn detach(mut self) -> Result<(), AttachError> {
        self.links.clear();
        self.events.clear();
        Ok(())
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
    let btf = pol_compiler::catalog::HostCatalog::btf()
        .map_err(|e| format!("no kernel BTF at /sys/kernel/btf/vmlinux ({e})"))?;
    let id = btf
        .func_id(func)
        .ok_or_else(|| format!("kernel BTF has no function {func}"))?;
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

/// Attaches program `program` of `obj` as `how` says. Dropping the returned value
/// detaches everything it attached.
pub fn attach(
    obj: &ProbeObject,
    program: &str,
    how: &ProbeAttach,
) -> Result<Attached, AttachError> {
    supported(how)?;
    let prog = obj
        .program_fd(program)
        .map_err(|_| AttachError::NoProgram {
            program: program.into(),
        })?;
    let fail = |reason: String| AttachError::Attach {
        program: program.into(),
        target: how.to_string(),
        reason,
    };
    let sys_fail = |e: SysError| fail(e.to_string());
    let found = kind_name(obj.section(program).unwrap_or_default());
    let wanted = match how {
        ProbeAttach::Tracepoint { .. } => "tracepoint",
        ProbeAttach::RawTracepoint { .. } => "raw tracepoint",
        ProbeAttach::BtfTracepoint { .. } => "BTF tracepoint",
        ProbeAttach::Uprobe { ret: true, .. } => "uretprobe",
        ProbeAttach::Uprobe { ret: false, .. } => "uprobe",
        ProbeAttach::Profile { .. } => "perf event",
        _ => found,
    };
    if found != wanted {
        return Err(AttachError::WrongProgramType {
            program: program.into(),
            found,
            wanted: how.to_string(),
        });
    }
    let prog_id = crate::sys::prog_info(prog).map_or(0, |i| i.id);
    let mut links = Vec::new();
    let mut events = Vec::new();
    match how {
        ProbeAttach::Tracepoint { category, name } => {
            ensure_tracefs()?;
            let id_file = events_dir().join(category).join(name).join("id");
            let Ok(text) = std::fs::read_to_string(&id_file) else {
                return Err(AttachError::NoSuchTracepoint {
                    category: category.clone(),
                    name: name.clone(),
                });
            };
            let id = text
                .trim()
                .parse::<u64>()
                .map_err(|_| fail(format!("{} does not hold an event id", id_file.display())))?;
            let ev =
                perf::perf_event_open(&PerfEvent::Tracepoint { id }, None, 0).map_err(sys_fail)?;
            links.push(perf::attach_perf_event(prog, ev.as_fd()).map_err(sys_fail)?);
            events.push(ev);
        }
        ProbeAttach::RawTracepoint { name } => {
            let link = perf::raw_tracepoint_open(prog, Some(name)).map_err(|e| {
                if e.errno() == Some(libc::ENOENT) {
                    AttachError::NoSuchRawTracepoint { name: name.clone() }
                } else {
                    sys_fail(e)
                }
            })?;
            links.push(link);
        }
        ProbeAttach::BtfTracepoint { .. } => {
            // The target was named at load time (attach_btf_id).
            links.push(perf::raw_tracepoint_open(prog, None).map_err(sys_fail)?);
        }
        ProbeAttach::Uprobe {
            binary,
            function,
            offset,
            ret,
            pid,
        } => {
            if !binary.exists() {
                return Err(AttachError::NoBinary {
                    binary: binary.clone(),
                });
            }
            if let Some(pid) = pid {
                if !Path::new("/proc").join(pid.to_string()).exists() {
                    return Err(AttachError::NoProcess { pid: *pid });
                }
            }
            let at = if function.is_empty() {
                *offset
            } else {
                symbol_offset(binary, function)? + offset
            };
            let &(pmu_type, retprobe_bit) = uprobe_pmu().as_ref().map_err(|e| fail(e.clone()))?;
            let path = binary.to_str().ok_or_else(|| AttachError::NoBinary {
                binary: binary.clone(),
            })?;
            let event = PerfEvent::Uprobe {
                pmu_type,
                retprobe_bit: if *ret {
                    Some(retprobe_bit.ok_or_else(|| {
                        fail(
                            "the uprobe PMU has no retprobe bit (no uretprobes on this kernel)"
                                .into(),
                        )
                    })?)
                } else {
                    None
                },
                binary: path,
                offset: at,
            };
            // One process on any CPU, or every process (on "CPU 0": uprobes fire anywhere).
            let cpu = if pid.is_some() { -1 } else { 0 };
            let ev = perf::perf_event_open(&event, *pid, cpu).map_err(sys_fail)?;
            links.push(perf::attach_perf_event(prog, ev.as_fd()).map_err(sys_fail)?);
            events.push(ev);
        }
        ProbeAttach::Profile { hz } => {
            let max = max_sample_rate();
            if *hz == 0 || *hz > max {
                return Err(AttachError::BadFrequency { hz: *hz, max });
            }
            for cpu in online_cpus().map_err(fail)? {
                let on_cpu = |e: SysError| fail(format!("on CPU {cpu}: {e}"));
                // Pushed at once: an error on a later CPU drops (detaches) the earlier ones.
                let ev = perf::perf_event_open(&PerfEvent::CpuClock { hz: *hz }, None, cpu)
                    .map_err(on_cpu)?;
                links.push(perf::attach_perf_event(prog, ev.as_fd()).map_err(on_cpu)?);
                events.push(ev);
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
        events,
    })
}

/// Attaches every `(program, where)` in order; all or nothing: on the first error, what
/// was attached is detached before the error is returned.
pub fn attach_all(
    obj: &ProbeObject,
    list: &[(String, ProbeAttach)],
) -> Result<Vec<Attached>, AttachError> {
    // Refuse unsupported kinds before attaching anything at all.
    for (_, how) in list {
        supported(how)?;
    }
    let mut done = Vec::with_capacity(list.len());
    for (program, how) in list {
        // On `?`, `done` is dropped and its links detach.
        done.push(attach(obj, program, how)?);
    }
    Ok(done)
}

/// tracefs' `events` directory (or the debugfs path older systems mount it at).
fn events_dir() -> PathBuf {
    let main = Path::new(TRACEFS).join("events");
    let old = Path::new("/sys/kernel/debug/tracing/events");
    if !main.is_dir() && old.is_dir() {
        old.into()
    } else {
        main
    }
}

/// The uprobe PMU's type and the `config` bit that makes a probe a return probe.
fn uprobe_pmu() -> &'static Result<(u32, Option<u32>), String> {
    static ONCE: OnceLock<Result<(u32, Option<u32>), String>> = OnceLock::new();
    ONCE.get_or_init(|| {
        let dir = Path::new("/sys/bus/event_source/devices/uprobe");
        let ty = std::fs::read_to_string(dir.join("type"))
            .ok()
            .and_then(|t| t.trim().parse::<u32>().ok())
            .ok_or_else(|| {
                format!(
                    "this kernel has no uprobe PMU ({} is missing)",
                    dir.display()
                )
            })?;
        // "config:0".
        let bit = std::fs::read_to_string(dir.join("format/retprobe"))
            .ok()
            .and_then(|t| t.trim().strip_prefix("config:")?.parse::<u32>().ok());
        Ok((ty, bit))
    })
}

/// The file offset of function `symbol` in `binary` (its symbol table, or its dynamic
/// symbols when stripped), where a uprobe on it goes.
fn symbol_offset(binary: &Path, symbol: &str) -> Result<u64, AttachError> {
    use blazesym::inspect::{source::Elf, source::Source, Inspector};
    let mut elf = Elf::new(binary);
    // Symbols only: reading DWARF would cost more than the whole attach.
    elf.debug_syms = false;
    let inspector = Inspector::new();
    let found = inspector
        .lookup(&Source::Elf(elf), &[symbol])
        .map_err(|e| AttachError::Symbols {
            binary: binary.to_path_buf(),
            reason: e.to_string(),
        })?;
    let offset = found.iter().flatten().find_map(|s| s.file_offset);
    offset.ok_or_else(|| AttachError::NoSymbol {
        binary: binary.to_path_buf(),
        symbol: symbol.into(),
    })
}

/// The online CPUs (/sys/devices/system/cpu/online: `0-3,5`).
fn online_cpus() -> Result<Vec<i32>, String> {
    let file = "/sys/devices/system/cpu/online";
    let text = std::fs::read_to_string(file).map_err(|e| format!("cannot read {file}: {e}"))?;
    let mut cpus = Vec::new();
    for part in text.trim().split(',').filter(|p| !p.is_empty()) {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        match (a.parse::<i32>(), b.parse::<i32>()) {
            (Ok(a), Ok(b)) if a <= b => cpus.extend(a..=b),
            _ => {
                return Err(format!(
                    "cannot read {file}: `{}` is not a CPU list",
                    text.trim()
                ))
            }
        }
    }
    Ok(cpus)
}

/// What kind of program a section holds, as messages name it.
fn kind_name(section: &str) -> &'static str {
    match section.split('/').next().unwrap_or_default() {
        "tracepoint" | "tp" => "tracepoint",
        "raw_tp" | "raw_tracepoint" => "raw tracepoint",
        "tp_btf" => "BTF tracepoint",
        "uprobe" => "uprobe",
        "uretprobe" => "uretprobe",
        "perf_event" => "perf event",
        "kprobe" => "kprobe",
        "fentry" => "fentry",
        "fexit" => "fexit",
        "lsm" => "LSM",
        "xdp" | "xdp.frags" => "XDP",
        "classifier" | "tc" => "tc",
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
