//! The probe catalog: which tracepoints and raw tracepoints exist and the typed
//! arguments a program on each can read, from tracefs `format` files and vmlinux BTF.
//!
//! The compiler does no IO of its own: the caller passes a [`Catalog`]. [`HostCatalog`]
//! reads the running kernel (tracefs, /sys/kernel/btf/vmlinux), [`DirCatalog`] a fixture
//! directory (hermetic golden tests), [`NoCatalog`] nothing.

mod btf;
mod dir;
mod format;
mod host;
mod uprobe;

use serde::{Deserialize, Serialize};

pub use btf::KernelBtf;
pub use dir::DirCatalog;
pub use format::parse_format;
pub use host::HostCatalog;
pub use uprobe::uprobe_args;

/// One argument of a tracepoint (a field of its record) or raw tracepoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceArg {
    pub name: String,
    /// The C type as the kernel declares it, without the name: `const char *`,
    /// `char[16]`, `__data_loc char[]`, `struct task_struct *`.
    pub c_type: String,
    pub ty: ArgTy,
    /// Byte offset in the tracepoint record, or 8 × index in a raw tracepoint's u64 array.
    pub offset: u32,
    /// Bytes the value occupies (a raw tracepoint's argument is widened to 8 in its slot).
    pub size: u32,
}

impl TraceArg {
    /// The C declaration, as `bpftrace -lv` prints it: `char comm[16]`, `const char * filename`.
    pub fn decl(&self) -> String {
        match self.c_type.find('[') {
            Some(i) if !self.c_type.starts_with("__data_loc") => {
                format!("{} {}{}", &self.c_type[..i], self.name, &self.c_type[i..])
            }
            _ => format!("{} {}", self.c_type, self.name),
        }
    }
}

/// What a program can do with an argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ArgTy {
    /// Integers, also enums, bool, pid_t, size_t, ...
    Int { bytes: u8, signed: bool },
    /// A pointer; `user` when it points into user memory (syscall arguments), `string`
    /// when it points at `char`.
    Ptr { user: bool, string: bool },
    /// An array inside the record: `char comm[16]` is a string.
    Array {
        elem_bytes: u8,
        len: u32,
        string: bool,
    },
    /// `__data_loc TYPE[]`: a u32 in the record, `offset | len << 16`, locating the data
    /// in the same record.
    DataLoc { string: bool },
    /// Structs and everything else: listed, not usable yet.
    Other,
}

/// A probe `pol list` prints.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ProbeEntry {
    Tracepoint { category: String, name: String },
    RawTracepoint { name: String },
}

impl std::fmt::Display for ProbeEntry {
    /// `tracepoint:CATEGORY:NAME`, `raw_tracepoint:NAME`, as bpftrace names them.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProbeEntry::Tracepoint { category, name } => write!(f, "tracepoint:{category}:{name}"),
            ProbeEntry::RawTracepoint { name } => write!(f, "raw_tracepoint:{name}"),
        }
    }
}

/// Why a lookup failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CatalogError {
    /// `nearest` is the closest existing one, as `CATEGORY:NAME`.
    #[error("tracepoint {category}:{name} does not exist on this kernel")]
    NoSuchTracepoint {
        category: String,
        name: String,
        nearest: Option<String>,
    },
    #[error("raw tracepoint {name} does not exist on this kernel")]
    NoSuchRawTracepoint {
        name: String,
        nearest: Option<String>,
    },
    #[error("cannot read {path}: {reason}")]
    Unreadable { path: String, reason: String },
    #[error("no probe catalog available")]
    Unavailable,
}

impl CatalogError {
    /// The nearest existing probe, for a "did you mean" help line.
    pub fn nearest(&self) -> Option<&str> {
        match self {
            CatalogError::NoSuchTracepoint { nearest, .. }
            | CatalogError::NoSuchRawTracepoint { nearest, .. } => nearest.as_deref(),
            _ => None,
        }
    }
}

/// Where probe types come from.
pub trait Catalog {
    /// Arguments a program on `tracepoint(category.name)` can read (offsets in the
    /// tracepoint's record; the common_* fields are left out).
    fn tracepoint(&self, category: &str, name: &str) -> Result<Vec<TraceArg>, CatalogError>;
    /// Arguments of a raw / BTF-typed tracepoint, from vmlinux BTF (`btf_trace_NAME`):
    /// the i-th argument at offset 8*i of the u64 array.
    fn raw_tracepoint(&self, name: &str) -> Result<Vec<TraceArg>, CatalogError>;
    /// Probes whose name matches a glob (`syscalls:*open*`, `*`), for `pol list`,
    /// sorted. See [`matches`] for how a pattern meets a name.
    fn list(&self, pattern: &str) -> Vec<ProbeEntry>;
    /// Kernel structure layouts (security rules read task and exec structures); none by
    /// default.
    fn kernel_types(&self) -> &dyn crate::rule::ktypes::KernelTypes {
        &crate::rule::ktypes::NoTypes
    }
}

/// Every lookup fails with "no probe catalog available".
#[derive(Debug, Clone, Copy, Default)]
pub struct NoCatalog;

impl Catalog for NoCatalog {
    fn tracepoint(&self, _: &str, _: &str) -> Result<Vec<TraceArg>, CatalogError> {
        Err(CatalogError::Unavailable)
    }
    fn raw_tracepoint(&self, _: &str) -> Result<Vec<TraceArg>, CatalogError> {
        Err(CatalogError::Unavailable)
    }
    fn list(&self, _: &str) -> Vec<ProbeEntry> {
        Vec::new()
    }
}

/// Whether `pattern` selects `entry`. A pattern with a kind prefix (`tracepoint:` or
/// `t:`, `raw_tracepoint:` or `rawtracepoint:` or `rt:`) is matched against the rest of
/// the name (`CATEGORY:NAME` or `NAME`); one without is matched against the full name
/// and against the name without its kind, so `syscalls:*open*`, `sched_*` and
/// `tracepoint:sched:*` all work. Empty selects everything.
pub fn matches(pattern: &str, entry: &ProbeEntry) -> bool {
    let short = match entry {
        ProbeEntry::Tracepoint { category, name } => format!("{category}:{name}"),
        ProbeEntry::RawTracepoint { name } => name.clone(),
    };
    let is_tp = matches!(entry, ProbeEntry::Tracepoint { .. });
    if pattern.is_empty() {
        return true;
    }
    if let Some((kind, rest)) = pattern.split_once(':') {
        let kind_tp = matches!(kind, "tracepoint" | "t");
        let kind_raw = matches!(kind, "raw_tracepoint" | "rawtracepoint" | "rt");
        if kind_tp || kind_raw {
            return kind_tp == is_tp && glob(rest, &short);
        }
    }
    glob(pattern, &entry.to_string()) || glob(pattern, &short)
}

/// Shell-style glob: `*` any run of characters, `?` one character, the rest literal.
pub fn glob(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    // Classic backtracking over the last `*`: linear for patterns with one star.
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ti));
                pi += 1;
            }
            Some(&c) if c == '?' || c == t[ti] => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    pi = sp + 1;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// The closest of `candidates` to `name` (a few edits at most), for "did you mean".
fn nearest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<String> {
    crate::diag::suggest::nearest(name, candidates, 3)
        .first()
        .map(|s| s.to_string())
}

/// The nearest tracepoint to `category:name` among `all` (`CATEGORY:NAME` strings):
/// within the same category when it exists, else among every tracepoint.
fn nearest_tracepoint(category: &str, name: &str, all: &[String]) -> Option<String> {
    let prefix = format!("{category}:");
    let same: Vec<&str> = all.iter().filter_map(|s| s.strip_prefix(&prefix)).collect();
    if !same.is_empty() {
        return nearest(name, same).map(|n| format!("{category}:{n}"));
    }
    nearest(
        &format!("{category}:{name}"),
        all.iter().map(String::as_str),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp(c: &str, n: &str) -> ProbeEntry {
        ProbeEntry::Tracepoint {
            category: c.into(),
            name: n.into(),
        }
    }

    #[test]
    fn globs() {
        assert!(glob("*", ""));
        assert!(glob("sys_enter_*", "sys_enter_openat"));
        assert!(glob("*open*", "sys_enter_openat"));
        assert!(glob("sys_?nter_openat", "sys_enter_openat"));
        assert!(!glob("*open", "sys_enter_openat"));
        assert!(!glob("sys_enter_", "sys_enter_openat"));
        assert!(glob("a*b*c", "aXbYbZc"));
        assert!(!glob("a*b*c", "aXbYbZ"));
    }

    #[test]
    fn patterns_meet_names_with_or_without_their_kind() {
        let openat = tp("syscalls", "sys_enter_openat");
        let raw = ProbeEntry::RawTracepoint {
            name: "sched_switch".into(),
        };
        assert!(matches("syscalls:*open*", &openat));
        assert!(matches("tracepoint:syscalls:*", &openat));
        assert!(matches("t:syscalls:sys_enter_openat", &openat));
        assert!(matches("tracepoint:*", &openat));
        assert!(!matches("raw_tracepoint:*", &openat));
        assert!(matches("raw_tracepoint:sched_*", &raw));
        assert!(matches("sched_*", &raw));
        assert!(!matches("tracepoint:sched_*", &raw));
        assert!(matches("*", &raw) && matches("", &openat));
        assert!(!matches("sched:*", &openat));
    }

    #[test]
    fn nearest_tracepoint_prefers_the_same_category() {
        let all = vec![
            "syscalls:sys_enter_openat".to_string(),
            "syscalls:sys_enter_open".to_string(),
            "sched:sched_switch".to_string(),
        ];
        assert_eq!(
            nearest_tracepoint("syscalls", "sys_enter_opnat", &all).as_deref(),
            Some("syscalls:sys_enter_openat")
        );
        assert_eq!(
            nearest_tracepoint("shed", "sched_switch", &all).as_deref(),
            Some("sched:sched_switch")
        );
        assert_eq!(nearest_tracepoint("net", "xyz", &all), None);
    }

    #[test]
    fn declarations_print_as_in_c() {
        let arg = |c_type: &str, name: &str| TraceArg {
            name: name.into(),
            c_type: c_type.into(),
            ty: ArgTy::Other,
            offset: 0,
            size: 0,
        };
        assert_eq!(arg("char[16]", "comm").decl(), "char comm[16]");
        assert_eq!(
            arg("const char *", "filename").decl(),
            "const char * filename"
        );
        assert_eq!(
            arg("__data_loc char[]", "filename").decl(),
            "__data_loc char[] filename"
        );
    }
}
