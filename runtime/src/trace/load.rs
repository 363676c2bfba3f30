//! Loading a compiled probe file without a loader library: its maps created and its
//! programs loaded straight from the compiler's [`ModuleSpec`] through the direct path
//! filters use ([`crate::direct`]), each with the program type its section names.
//!
//! Nothing here parses an ELF or BTF. A BTF-typed tracepoint (`tp_btf`) is loaded
//! against a vmlinux BTF type id, found in the catalog's raw tracepoint index (the
//! compiler has read it already to type the probe's arguments).

use std::os::fd::BorrowedFd;

use pol_compiler::catalog::HostCatalog;
use pol_compiler::obj::{FuncSpec, ModuleSpec};

use crate::direct::{Direct, Object, ProgLoad};
use crate::load::{Entry, LoadError, PerCpuEntry};
use crate::sys::{MapInfo, ProgType};

/// `enum bpf_attach_type` BPF_TRACE_RAW_TP: the expected attach type of tp_btf programs.
const BPF_TRACE_RAW_TP: u32 = 23;

/// Why a probe object could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TraceLoadError {
    #[error("raw tracepoint {name} does not exist on this kernel (no btf_trace_{name} in /sys/kernel/btf/vmlinux)")]
    NoSuchBtfTracepoint { name: String },
    #[error("BTF-typed tracepoints need the kernel's BTF: {0}")]
    NoKernelBtf(String),
    #[error("program `{program}` is in section `{section}`, which pol cannot load (a bug in pol)")]
    Section { program: String, section: String },
    #[error(transparent)]
    Load(#[from] LoadError),
}

/// The probes of a file, loaded (not attached): maps created empty, every program
/// verified. Dropping it closes every fd; attachments hold their own references.
#[derive(Debug)]
pub struct ProbeObject {
    direct: Direct,
    /// (program, section) of every program.
    sections: Vec<(String, String)>,
}

/// The program type, expected attach type and BTF target of a probe program, from the
/// section the compiler put it in (`Hook::section`).
fn how(f: &FuncSpec) -> Result<ProgLoad, TraceLoadError> {
    let section = f.section.as_deref().unwrap_or_default();
    let kind = section.split('/').next().unwrap_or_default();
    let plain = |prog_type| ProgLoad {
        prog_type,
        expected_attach_type: 0,
        prog_flags: 0,
        attach_btf_id: 0,
    };
    Ok(match kind {
        "tracepoint" | "tp" => plain(ProgType::TracePoint),
        "raw_tp" | "raw_tracepoint" => plain(ProgType::RawTracepoint),
        "uprobe" | "uretprobe" => plain(ProgType::Kprobe),
        "perf_event" => plain(ProgType::PerfEvent),
        // Security rules' connect and bind hooks (`cgroup/connect4`, ...).
        "cgroup" => {
            let name = section.strip_prefix("cgroup/").unwrap_or_default();
            let Some(attach) = crate::security::cgroup::attach_type(name) else {
                return Err(TraceLoadError::Section {
                    program: f.name.clone(),
                    section: section.into(),
                });
            };
            ProgLoad {
                expected_attach_type: attach as u32,
                ..plain(ProgType::CgroupSockAddr)
            }
        }
        "tp_btf" => {
            let name = section.strip_prefix("tp_btf/").unwrap_or_default();
            let index =
                HostCatalog::raw_index().map_err(|e| TraceLoadError::NoKernelBtf(e.to_string()))?;
            let id = index
                .type_id(name)
                .ok_or_else(|| TraceLoadError::NoSuchBtfTracepoint { name: name.into() })?;
            ProgLoad {
                prog_type: ProgType::Tracing,
                expected_attach_type: BPF_TRACE_RAW_TP,
                prog_flags: 0,
                attach_btf_id: id,
            }
        }
        _ => {
            return Err(TraceLoadError::Section {
                program: f.name.clone(),
                section: section.into(),
            })
        }
    })
}

impl ProbeObject {
    /// Creates the maps of `spec` and loads each of its programs. Stops at the first
    /// failure; what was created before it is freed on return.
    pub fn load(spec: &ModuleSpec) -> Result<ProbeObject, TraceLoadError> {
        // The section check and BTF lookup run first, so a missing tp_btf target is
        // reported as such rather than as a load failure.
        let mut loads = Vec::new();
        let mut sections = Vec::new();
        for f in spec.funcs.iter() {
            let Some(section) = &f.section else { continue };
            loads.push((f.name.clone(), how(f)?));
            sections.push((f.name.clone(), section.clone()));
        }
        let direct = Direct::load_module(spec, |f| {
            loads
                .iter()
                .find(|(n, _)| *n == f.name)
                .map(|(_, l)| *l)
                .ok_or_else(|| LoadError::NoProgram(f.name.clone()))
        })?;
        Ok(ProbeObject { direct, sections })
    }

    /// The section program `name` came in (`tracepoint/syscalls/sys_enter_openat`,
    /// `uretprobe`, `perf_event`, ...): what it can attach to.
    pub fn section(&self, name: &str) -> Option<&str> {
        self.sections
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, s)| s.as_str())
    }

    /// The fd of a loaded program, by name.
    pub fn program_fd(&self, name: &str) -> Result<BorrowedFd<'_>, LoadError> {
        self.direct.program_fd(name)
    }

    /// The fd of a map, by name.
    pub fn map_fd(&self, name: &str) -> Result<BorrowedFd<'_>, LoadError> {
        self.direct.map_fd(name)
    }

    /// What the kernel reports about a map.
    pub fn map_info(&self, name: &str) -> Result<MapInfo, LoadError> {
        self.direct.map_info(name)
    }

    /// Every entry of a map, per-CPU values summed (as [`crate::load::Loaded::map_entries`]).
    pub fn map_entries(&self, name: &str) -> Result<Vec<Entry>, LoadError> {
        self.direct.map_entries(name)
    }

    /// Every entry of a per-CPU map with one value per possible CPU.
    pub fn map_entries_per_cpu(&self, name: &str) -> Result<Vec<PerCpuEntry>, LoadError> {
        self.direct.map_entries_per_cpu(name)
    }

    /// Names of the programs, sorted.
    pub fn program_names(&self) -> Vec<String> {
        self.direct.program_names()
    }
}
