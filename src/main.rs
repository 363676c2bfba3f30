//! `pol`: compile, check and disassemble `.pol` policies.

/// `eprintln!` that cannot panic: after SIGHUP the terminal may be gone, and a panic
/// while detaching would abort. Defined before the modules so each of them can use it.
macro_rules! say {
    ($($t:tt)*) => {{
        let _ = writeln!(std::io::stderr(), $($t)*);
    }};
}

mod agent;
mod filter_cmd;
mod fmt_cmd;
mod list_cmd;
mod policy_cmd;
mod report;
mod rule_run;
mod run;
mod set_cmd;
mod set_files;
mod test_cmd;
mod trace_run;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use pol_compiler::diag::render_all;
use pol_compiler::driver;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "pol",
    version,
    about = "Policies compiled to eBPF: packet filters, probes, security rules"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Parse, type-check and compile; print diagnostics. Exits non-zero on any error.
    Check {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Compile to an ELF object (OUT.o) and its layout (OUT.layout.json).
    Build {
        file: PathBuf,
        /// Output object; defaults to the source name with `.o`.
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Say which rules became map entries and which stayed code, and why.
        #[arg(long)]
        explain: bool,
    },
    /// List the generated instructions of a `.pol` file or a compiled `.o`.
    Disasm { file: PathBuf },
    /// Compile, load and attach a `.pol` file; show live counters until Ctrl-C, then detach.
    /// For probes: print their maps at the end, as bpftrace does.
    Run(run::RunArgs),
    /// Load a policy for good: attached through pinned BPF links until `pol unload`;
    /// loading the same name again replaces it in place, without a gap.
    Load(policy_cmd::LoadArgs),
    /// Keep the `.pol` files of a directory loaded: load what changes, keep the last good
    /// version when a file fails, unload what is removed.
    Agent(agent::AgentArgs),
    /// Detach and remove a loaded policy.
    Unload { name: String },
    /// Loaded policies: hooks, program ids, map sizes, live counters.
    Status(policy_cmd::StatusArgs),
    /// Change a named set of a running `pol run` in place: add, del, list.
    Set {
        #[command(subcommand)]
        op: set_cmd::SetOp,
    },
    /// Add or delete one rule of a running filter's classifier, without reloading it.
    Filter {
        #[command(subcommand)]
        op: filter_cmd::FilterOp,
    },
    /// Show or switch a running `pol run` of security rules between audit (alert only)
    /// and enforce (kill, deny), without reloading.
    Mode(rule_run::ModeArgs),
    /// List probes (`syscalls:*open*`, `raw_tracepoint:sched_*`, `uprobe:/bin/bash:read*`)
    /// and, for one probe or with `-v`, its typed arguments.
    List(list_cmd::ListArgs),
    /// Format files in pol's one style (`--check`: only say which files would change).
    Fmt(fmt_cmd::FmtArgs),
    /// Run the language server on stdin/stdout (editors start it).
    Lsp,
    /// Run the `test` blocks of `.pol` files through the kernel (needs root).
    Test {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

impl Cmd {
    /// Commands that attach nothing and change no state: safe to end on a closed pipe.
    fn prints_and_exits(&self) -> bool {
        matches!(
            self,
            Cmd::Check { .. }
                | Cmd::Build { .. }
                | Cmd::Disasm { .. }
                | Cmd::Status(_)
                | Cmd::List(_)
                | Cmd::Test { .. }
        )
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.cmd.prints_and_exits() {
        // `pol build ... | head`: a closed pipe ends a short command quietly, as it ends
        // `cat`, instead of a panic in `println!`. Long-running commands (run, agent,
        // load, lsp) keep SIGPIPE ignored so they always reach their own cleanup.
        // SAFETY: restoring a default disposition before any thread starts.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
    let result = match cli.cmd {
        Cmd::Check { files } => check(&files),
        Cmd::Build {
            file,
            output,
            explain,
        } => build(&file, output, explain),
        Cmd::Disasm { file } => disasm(&file),
        Cmd::Run(args) => match run::kind(&args) {
            run::RunKind::Rules => rule_run::run(args),
            run::RunKind::Probes => trace_run::run(args),
            run::RunKind::Filters => run::run(args),
        },
        Cmd::Set { op } => set_cmd::run(op),
        Cmd::Filter { op } => filter_cmd::run(op),
        Cmd::Mode(args) => rule_run::mode(args),
        Cmd::Load(args) => policy_cmd::load(args),
        Cmd::Agent(args) => agent::run(args),
        Cmd::Unload { name } => policy_cmd::unload(&name),
        Cmd::Status(args) => policy_cmd::status(args),
        Cmd::Test { files } => test_cmd::run(&files),
        Cmd::Fmt(args) => fmt_cmd::run(args),
        Cmd::List(args) => list_cmd::run(args),
        Cmd::Lsp => pol_lsp::run_stdio().map(|()| true).map_err(Into::into),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

/// Compiles one file, printing its diagnostics; `None` when it has errors.
fn compile(path: &Path) -> Result<Option<driver::Compiled>> {
    Ok(compile_keeping_sources(path)?.map(|(c, _)| c))
}

/// What a compilation read: the source and the `file(..)` sets, by the name the source
/// gives (`pol load` keeps them so `pol status` can compile the same policy again).
pub struct Sources {
    pub source: String,
    pub files: std::collections::BTreeMap<String, String>,
}

/// [`compile`], also returning what it read.
fn compile_keeping_sources(path: &Path) -> Result<Option<(driver::Compiled, Sources)>> {
    let src = read(path)?;
    let name = path.display().to_string();
    // `file("NAME")` sets are read relative to the .pol file's directory.
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let read_files = std::cell::RefCell::new(std::collections::BTreeMap::new());
    let files = |name: &str| {
        let p = dir.join(name);
        let text = set_files::read(&p).map_err(|e| format!("{}: {e}", p.display()))?;
        read_files
            .borrow_mut()
            .insert(name.to_string(), text.clone());
        Ok(text)
    };
    match driver::compile_file(&name, &src, &files, &pol_compiler::catalog::HostCatalog) {
        Ok(c) => {
            eprint!("{}", render_all(&c.warnings, &name, &src));
            let bad_tests = pol_runtime::testcase::check(&c.ast);
            if !bad_tests.is_empty() {
                eprint!("{}", render_all(&bad_tests, &name, &src));
                let n = bad_tests.len();
                eprintln!("{name}: {n} error{}", if n == 1 { "" } else { "s" });
                return Ok(None);
            }
            let sources = Sources {
                source: src,
                files: read_files.into_inner(),
            };
            Ok(Some((c, sources)))
        }
        Err(diags) => {
            eprint!("{}", render_all(&diags, &name, &src));
            let n = diags.iter().filter(|d| d.is_error()).count();
            eprintln!("{name}: {n} error{}", if n == 1 { "" } else { "s" });
            Ok(None)
        }
    }
}

fn check(files: &[PathBuf]) -> Result<bool> {
    let mut ok = true;
    for f in files {
        match compile(f)? {
            Some(c) if c.rules.is_some() => {
                let n = c.rules.as_ref().map_or(0, |r| r.rules.len());
                println!("{}: ok ({n} rule{})", f.display(), plural(n));
            }
            Some(c) if c.probes.is_some() => {
                let n = c.probes.as_ref().map_or(0, |p| p.layout.probes.len());
                println!("{}: ok ({n} probe{})", f.display(), plural(n));
            }
            Some(c) => {
                let insns: usize = c.programs.iter().map(|p| p.insns.len()).sum();
                println!(
                    "{}: ok ({} program{}, {} instructions, {} map{})",
                    f.display(),
                    c.programs.len(),
                    plural(c.programs.len()),
                    insns,
                    c.maps.len(),
                    plural(c.maps.len())
                );
            }
            None => ok = false,
        }
    }
    Ok(ok)
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

fn build(file: &Path, output: Option<PathBuf>, explain: bool) -> Result<bool> {
    let Some(c) = compile(file)? else {
        return Ok(false);
    };
    let out = output.unwrap_or_else(|| file.with_extension("o"));
    let layout_path = out.with_extension("layout.json");
    std::fs::write(&out, &c.object).with_context(|| format!("cannot write {}", out.display()))?;
    let layout = match &c.probes {
        Some(p) => p.layout.clone(),
        None => pol_compiler::obj::layout(&c.spec),
    };
    // Through a JSON value only to add security rules (a filter of 100,000 rules spent a
    // tenth of `pol build` building that value).
    let json = match &c.rules {
        Some(rules) => {
            let mut layout = serde_json::to_value(&layout)?;
            if let Some(obj) = layout.as_object_mut() {
                obj.insert("rules".into(), serde_json::to_value(rules)?);
            }
            serde_json::to_string_pretty(&layout)?
        }
        None => layout.to_json()?,
    } + "\n";
    std::fs::write(&layout_path, json)
        .with_context(|| format!("cannot write {}", layout_path.display()))?;
    match &c.probes {
        Some(p) => print!("{}", report::probes(p)),
        None => print!("{}", report::resources(&c)),
    }
    if explain {
        print!("{}", report::explain(&c));
    }
    println!(
        "wrote {} ({} bytes) and {}",
        out.display(),
        c.object.len(),
        layout_path.display()
    );
    Ok(true)
}

fn disasm(file: &Path) -> Result<bool> {
    if file.extension().is_some_and(|e| e == "pol") {
        let Some(c) = compile(file)? else {
            return Ok(false);
        };
        print!("{}", c.disassembly());
        return Ok(true);
    }
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    match report::disasm_object(&bytes) {
        Ok(text) => {
            print!("{text}");
            Ok(true)
        }
        Err(e) => bail!("{}: {e}", file.display()),
    }
}
