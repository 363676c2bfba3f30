//! The running kernel's catalog: tracefs format files and /sys/kernel/btf/vmlinux,
//! each read once per process.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use super::dir::{list_tracepoints, read_tracepoint, unreadable};
use super::{matches, nearest, Catalog, CatalogError, KernelBtf, ProbeEntry, TraceArg};

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
        let btf = HostCatalog::btf()?;
        btf.raw_tracepoint_args(name)
            .ok_or_else(|| CatalogError::NoSuchRawTracepoint {
                name: name.into(),
                nearest: nearest(name, btf.raw_tracepoints()),
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
            if let Ok(btf) = HostCatalog::btf() {
                out.extend(
                    btf.raw_tracepoints()
                        .map(|name| ProbeEntry::RawTracepoint { name: name.into() })
                        .filter(|e| matches(pattern, e)),
                );
            }
        }
        out.sort();
        out
    }
}
