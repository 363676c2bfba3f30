//! A catalog read from a directory laid out as tracefs (`events/CATEGORY/NAME/format`)
//! plus `raw_tracepoints.json` (name -> arguments): the fixture golden tests use, so
//! they do not depend on the host's kernel.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{
    matches, nearest, nearest_tracepoint, parse_format, Catalog, CatalogError, ProbeEntry, TraceArg,
};

/// The file of a [`DirCatalog`] that holds raw tracepoints.
pub const RAW_TRACEPOINTS: &str = "raw_tracepoints.json";

/// Format files and raw tracepoint arguments under `root`.
#[derive(Debug, Clone)]
pub struct DirCatalog {
    root: PathBuf,
    raw: BTreeMap<String, Vec<TraceArg>>,
}

impl DirCatalog {
    /// Reads `root/raw_tracepoints.json` (absent: no raw tracepoints); format files are
    /// read when asked for.
    pub fn new(root: impl Into<PathBuf>) -> Result<DirCatalog, CatalogError> {
        let root = root.into();
        let path = root.join(RAW_TRACEPOINTS);
        let raw = match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text).map_err(|e| unreadable(&path, e))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(unreadable(&path, e)),
        };
        Ok(DirCatalog { root, raw })
    }
}

impl Catalog for DirCatalog {
    fn tracepoint(&self, category: &str, name: &str) -> Result<Vec<TraceArg>, CatalogError> {
        read_tracepoint(&self.root.join("events"), category, name)
    }

    fn raw_tracepoint(&self, name: &str) -> Result<Vec<TraceArg>, CatalogError> {
        self.raw
            .get(name)
            .cloned()
            .ok_or_else(|| CatalogError::NoSuchRawTracepoint {
                name: name.into(),
                nearest: nearest(name, self.raw.keys().map(String::as_str)),
            })
    }

    fn list(&self, pattern: &str) -> Vec<ProbeEntry> {
        let mut out: Vec<ProbeEntry> = list_tracepoints(&self.root.join("events"))
            .into_iter()
            .map(|(category, name)| ProbeEntry::Tracepoint { category, name })
            .chain(
                self.raw
                    .keys()
                    .map(|name| ProbeEntry::RawTracepoint { name: name.clone() }),
            )
            .filter(|e| matches(pattern, e))
            .collect();
        out.sort();
        out
    }
}

pub(super) fn unreadable(path: &Path, e: impl std::fmt::Display) -> CatalogError {
    CatalogError::Unreadable {
        path: path.display().to_string(),
        reason: e.to_string(),
    }
}

/// The arguments of `events/category/name/format`; a missing file is a missing
/// tracepoint, with the nearest existing one.
pub(super) fn read_tracepoint(
    events: &Path,
    category: &str,
    name: &str,
) -> Result<Vec<TraceArg>, CatalogError> {
    // A name with a path separator or `..` would read outside the events directory.
    let plain = |s: &str| !s.is_empty() && !s.contains('/') && s != "." && s != "..";
    let path = events.join(category).join(name).join("format");
    let text = if plain(category) && plain(name) {
        std::fs::read_to_string(&path).ok()
    } else {
        None
    };
    let Some(text) = text else {
        if !events.is_dir() {
            return Err(unreadable(
                events,
                "no such directory (is tracefs mounted at /sys/kernel/tracing?)",
            ));
        }
        let all: Vec<String> = list_tracepoints(events)
            .into_iter()
            .map(|(c, n)| format!("{c}:{n}"))
            .collect();
        return Err(CatalogError::NoSuchTracepoint {
            category: category.into(),
            name: name.into(),
            nearest: nearest_tracepoint(category, name, &all),
        });
    };
    parse_format(category, &text).map_err(|e| unreadable(&path, e))
}

/// Every `(category, name)` under `events` that has a format file, sorted.
pub(super) fn list_tracepoints(events: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let dirs = |p: &Path| -> Vec<String> {
        let Ok(rd) = std::fs::read_dir(p) else {
            return Vec::new();
        };
        rd.filter_map(Result::ok)
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| e.file_name().into_string().ok())
            .collect()
    };
    for category in dirs(events) {
        for name in dirs(&events.join(&category)) {
            if events.join(&category).join(&name).join("format").is_file() {
                out.push((category.clone(), name));
            }
        }
    }
    out.sort();
    out
}
