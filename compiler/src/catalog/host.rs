//! The running kernel's catalog: tracefs format files and /sys/kernel/btf/vmlinux,
//! each read once per process.
//!
//! Raw tracepoints come from an index kept in /run/pol/catalog, made from vmlinux BTF the
//! first time a boot needs it: reading and parsing the 5 MB of BTF took most of the start
//! of a `raw_tracepoint`/`tp_btf` probe, the index takes a small file. vmlinux BTF does
//! not change while the kernel runs, and /run is emptied at boot, so an index named by
//! the boot id is never stale.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use super::dir::{list_tracepoints, read_tracepoint, unreadable};
use serde::{Deserialize, Serialize};

use super::{matches, nearest, Catalog, CatalogError, KernelBtf, ProbeEntry, TraceArg};

/// Where raw tracepoint indexes are kept (tmpfs: emptied at boot).
pub const INDEX_DIR: &str = "/run/pol/catalog";

/// Every raw tracepoint of the running kernel: its arguments and the type id a `tp_btf`
/// program is loaded against.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct RawIndex {
    /// The boot it was made in (/proc/sys/kernel/random/boot_id).
    boot: String,
    raw: HashMap<String, RawEntry>,
}

#[derive(Debug, Serialize, Deserialize)]
struct RawEntry {
    /// The type id of `btf_trace_NAME`.
    type_id: u32,
    args: Vec<TraceArg>,
}

impl RawIndex {
    fn from_btf(btf: &KernelBtf, boot: String) -> RawIndex {
        let raw = btf
            .raw_tracepoints()
            .filter_map(|name| {
                let entry = RawEntry {
                    type_id: btf.raw_tracepoint_type_id(name)?,
                    args: btf.raw_tracepoint_args(name)?,
                };
                Some((name.to_string(), entry))
            })
            .collect();
        RawIndex { boot, raw }
    }

    /// The arguments of raw tracepoint `name`.
    pub fn args(&self, name: &str) -> Option<&[TraceArg]> {
        self.raw.get(name).map(|e| e.args.as_slice())
    }

    /// The type id of `btf_trace_NAME`, which a `tp_btf` program on `name` is loaded
    /// against.
    pub fn type_id(&self, name: &str) -> Option<u32> {
        self.raw.get(name).map(|e| e.type_id)
    }

    /// Names of every raw tracepoint, unsorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.raw.keys().map(String::as_str)
    }
}

/// Where the kernel publishes its BTF.
pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

/// The host's tracepoints (tracefs, which the runtime mounts when missing) and raw
/// tracepoints (vmlinux BTF). Lookups are cached for the life of the process.
#[derive(Debug, Clone, Copy, Default)]
pub struct HostCatalog;

type TpCache = Mutex<HashMap<(String, String), Result<Vec<TraceArg>, CatalogError>>>;

impl HostCatalog {
    /// tracefs' `events` directory: /sys/kernel/tracing, or the debugfs path older
    /// systems mount it at.
    pub fn events_dir() -> PathBuf {
        let main = Path::new("/sys/kernel/tracing/events");
        let old = Path::new("/sys/kernel/debug/tracing/events");
        if !main.is_dir() && old.is_dir() {
            old.into()
        } else {
            main.into()
        }
    }

    /// The parsed vmlinux BTF, read once.
    pub fn btf() -> Result<&'static KernelBtf, CatalogError> {
        static BTF: OnceLock<Result<KernelBtf, CatalogError>> = OnceLock::new();
        BTF.get_or_init(|| {
            let path = Path::new(VMLINUX_BTF);
            let data = std::fs::read(path).map_err(|e| unreadable(path, e))?;
            KernelBtf::parse(&data).map_err(|e| unreadable(path, e))
        })
        .as_ref()
        .map_err(Clone::clone)
    }

    /// The raw tracepoint index: read from [`INDEX_DIR`] when this boot made one, else
    /// made from vmlinux BTF and written there (best effort: a run that cannot write
    /// /run still works, it just parses BTF each time).
    pub fn raw_index() -> Result<&'static RawIndex, CatalogError> {
        static INDEX: OnceLock<Result<RawIndex, CatalogError>> = OnceLock::new();
        INDEX
            .get_or_init(|| {
                let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
                    .map(|b| b.trim().to_string())
                    .unwrap_or_default();
                let file = Path::new(INDEX_DIR).join(format!("raw-{boot}.json"));
                if !boot.is_empty() {
                    let cached = std::fs::read(&file)
                        .ok()
                        .and_then(|b| serde_json::from_slice::<RawIndex>(&b).ok());
                    if let Some(index) = cached.filter(|i| i.boot == boot) {
                        return Ok(index);
                    }
                }
                let index = RawIndex::from_btf(HostCatalog::btf()?, boot.clone());
                if !boot.is_empty() {
                    let _ = write_atomically(&file, &index);
                }
                Ok(index)
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    fn tracepoints() -> &'static [(String, String)] {
        static LIST: OnceLock<Vec<(String, String)>> = OnceLock::new();
        LIST.get_or_init(|| list_tracepoints(&HostCatalog::events_dir()))
    }
}

impl Catalog for HostCatalog {
    fn kernel_types(&self) -> &dyn crate::rule::ktypes::KernelTypes {
        &crate::rule::ktypes::HostTypes
    }
    fn tracepoint(&self, category: &str, name: &str) -> Result<Vec<TraceArg>, CatalogError> {
        static CACHE: OnceLock<TpCache> = OnceLock::new();
        let cache = CACHE.get_or_init(Default::default);
        let key = (category.to_string(), name.to_string());
        if let Some(hit) = cache.lock().ok().and_then(|c| c.get(&key).cloned()) {
            return hit;
        }
        let result = read_tracepoint(&HostCatalog::events_dir(), category, name);
        if let Ok(mut c) = cache.lock() {
            c.insert(key, result.clone());
        }
        result
    }

    fn raw_tracepoint(&self, name: &str) -> Result<Vec<TraceArg>, CatalogError> {
        let index = HostCatalog::raw_index()?;
        index.args(name).map(<[TraceArg]>::to_vec).ok_or_else(|| {
            CatalogError::NoSuchRawTracepoint {
                name: name.into(),
                nearest: nearest(name, index.names()),
            }
        })
    }

    fn list(&self, pattern: &str) -> Vec<ProbeEntry> {
        let mut out: Vec<ProbeEntry> = HostCatalog::tracepoints()
            .iter()
            .map(|(category, name)| ProbeEntry::Tracepoint {
                category: category.clone(),
                name: name.clone(),
            })
            .filter(|e| matches(pattern, e))
            .collect();
        // Listing raw tracepoints parses BTF: only when the pattern can select one.
        let wants_raw = !pattern.starts_with("tracepoint:") && !pattern.starts_with("t:");
        if wants_raw {
            if let Ok(index) = HostCatalog::raw_index() {
                out.extend(
                    index
                        .names()
                        .map(|name| ProbeEntry::RawTracepoint { name: name.into() })
                        .filter(|e| matches(pattern, e)),
                );
            }
        }
        out.sort();
        out
    }
}

/// Writes `index` as JSON to `file` through a temporary file and a rename, so a reader
/// never sees half of it.
fn write_atomically(file: &Path, index: &RawIndex) -> std::io::Result<()> {
    let dir = file.parent().unwrap_or(Path::new("/"));
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".raw-{}.tmp", std::process::id()));
    let json = serde_json::to_vec(index).map_err(std::io::Error::other)?;
    std::fs::write(&tmp, json)?;
    std::fs::rename(&tmp, file).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}
