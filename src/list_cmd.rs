//! `pol list [PATTERN] [-v] [--json]`: the probes a `.pol` file can name, one per line,
//! and with `-v` (or when the pattern names one probe) the typed arguments of
//! tracepoints and raw tracepoints, as `bpftrace -lv` prints them.
//!
//! Patterns are globs: `syscalls:*open*`, `tracepoint:sched:*`, `raw_tracepoint:sched_*`,
//! `uprobe:/usr/bin/bash:read*` (function symbols of a binary).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use object::{Object, ObjectSymbol, SymbolKind};
use pol_compiler::catalog::{glob, Catalog, DirCatalog, HostCatalog, ProbeEntry, TraceArg};

#[derive(clap::Args)]
pub struct ListArgs {
    /// A glob over probe names; all probes when absent.
    pattern: Option<String>,
    /// Print the typed arguments of every tracepoint and raw tracepoint listed.
    #[arg(short, long)]
    verbose: bool,
    /// One JSON object per line: `{"probe": NAME, "args": [...]}`.
    #[arg(long)]
    json: bool,
    /// Read a directory laid out as tracefs (`events/CATEGORY/NAME/format`, plus
    /// `raw_tracepoints.json`) instead of the running kernel.
    #[arg(long, value_name = "DIR")]
    catalog: Option<PathBuf>,
}

pub fn run(args: ListArgs) -> Result<bool> {
    let pattern = args.pattern.as_deref().unwrap_or("*");
    if let Some((kind, rest)) = pattern.split_once(':') {
        if matches!(kind, "uprobe" | "uretprobe" | "u" | "ur") {
            return list_uprobes(kind, rest);
        }
    }
    let catalog: Box<dyn Catalog> = match &args.catalog {
        Some(dir) => Box::new(DirCatalog::new(dir)?),
        None => {
            // Mount tracefs if it is missing (root only; the listing says what failed).
            let _ = pol_runtime::trace::attach::ensure_tracefs();
            let events = HostCatalog::events_dir();
            std::fs::read_dir(&events).with_context(|| {
                format!(
                    "cannot list tracepoints in {} (pol list reads tracefs, which needs root)",
                    events.display()
                )
            })?;
            Box::new(HostCatalog)
        }
    };
    let entries = catalog.list(pattern);
    if entries.is_empty() {
        eprintln!("no probe matches {pattern}");
        return Ok(false);
    }
    // A pattern without wildcards names one probe: show its arguments.
    let verbose = args.verbose || args.json || !pattern.contains(['*', '?']);
    let mut out = String::new();
    for e in &entries {
        let typed = if verbose {
            Some(match e {
                ProbeEntry::Tracepoint { category, name } => catalog.tracepoint(category, name),
                ProbeEntry::RawTracepoint { name } => catalog.raw_tracepoint(name),
            })
        } else {
            None
        };
        if args.json {
            let args = match typed {
                Some(Ok(a)) => a,
                Some(Err(err)) => bail!("{e}: {err}"),
                None => Vec::new(),
            };
            let line = serde_json::json!({ "probe": e.to_string(), "args": args });
            out.push_str(&line.to_string());
            out.push('\n');
            continue;
        }
        out.push_str(&e.to_string());
        out.push('\n');
        match typed {
            Some(Ok(a)) => out.push_str(&arguments(&a)),
            Some(Err(err)) => bail!("{e}: {err}"),
            None => {}
        }
    }
    print!("{out}");
    Ok(true)
}

/// The arguments, one C declaration a line, indented.
fn arguments(args: &[TraceArg]) -> String {
    args.iter().map(|a| format!("    {}\n", a.decl())).collect()
}

/// `uprobe:BINARY:GLOB`: the function symbols of BINARY (its symbol table and dynamic
/// symbols) whose names match.
fn list_uprobes(kind: &str, rest: &str) -> Result<bool> {
    let kind = if kind.starts_with("ur") {
        "uretprobe"
    } else {
        "uprobe"
    };
    let (binary, func) = match rest.rsplit_once(':') {
        Some((b, f)) => (b, f),
        None => (rest, "*"),
    };
    let path = Path::new(binary);
    if !path.exists() {
        bail!("uprobe target {binary} does not exist");
    }
    let data = std::fs::read(path).with_context(|| format!("cannot read {binary}"))?;
    let file = object::File::parse(&*data)
        .with_context(|| format!("{binary} is not an object file pol can read symbols of"))?;
    let mut names: Vec<&str> = file
        .symbols()
        .chain(file.dynamic_symbols())
        .filter(|s| s.kind() == SymbolKind::Text && s.is_definition())
        .filter_map(|s| s.name().ok())
        // Versioned dynamic names (`read@@GLIBC_2.2.5`) attach by their plain name.
        .map(|n| n.split('@').next().unwrap_or(n))
        .filter(|n| !n.is_empty() && glob(func, n))
        .collect();
    names.sort_unstable();
    names.dedup();
    if names.is_empty() {
        eprintln!("no function of {binary} matches {func}");
        return Ok(false);
    }
    let mut out = String::new();
    for n in names {
        out.push_str(&format!("{kind}:{binary}:{n}\n"));
    }
    print!("{out}");
    Ok(true)
}
