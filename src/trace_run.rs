//! `pol run` of a file of probes (or `pol run -e 'probe ...'`): compile, load every probe
//! program, attach them all or none, wait for Ctrl-C / SIGTERM / `--duration`, then print
//! every aggregation map as bpftrace does (or one JSON object per map with `--json`).
//!
//! The maps are read through the layout.json the compiler wrote (parsed back into
//! `pol_runtime::trace::layout`), never through the compiler's own types. The probes are
//! loaded from the compiler's module spec by pol's own loader (`trace::load`: no ELF or
//! BTF parsing on the way, so start-up is the compile plus a few syscalls); every
//! attachment is an fd in `Attached`: dropping them, on any error or at the end, detaches
//! every probe.

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use pol_compiler::diag::render_all;
use pol_compiler::driver;
use pol_compiler::syntax::{self, ast::Item};
use pol_runtime::trace::attach::{self, Attached, ProbeAttach};
use pol_runtime::trace::layout::TraceLayout;
use pol_runtime::trace::load::{ProbeObject, TraceLoadError};
use pol_runtime::trace::symbols::{write_flamegraph, KernelSymbols, Stack, UserSymbols};
use pol_runtime::trace::watch::{EventRing, Watch};
use pol_runtime::trace::{aggregate, events};

use crate::run::RunArgs;

pub fn run(args: RunArgs) -> Result<bool> {
    let t0 = Instant::now();
    // Signals caught from here on: Ctrl-C during the compile stops the run at its wait.
    let mut watch = Watch::new(args.duration.map(|s| Duration::from_secs_f64(s.max(0.0))))?;
    let (name, src) = match (&args.program, &args.file) {
        (Some(p), _) => ("-e".to_string(), p.clone()),
        (None, Some(f)) => (
            f.display().to_string(),
            std::fs::read_to_string(f).with_context(|| format!("cannot read {}", f.display()))?,
        ),
        (None, None) => bail!("pol run needs a FILE or -e PROGRAM"),
    };
    refuse_unsupported(&src)?;
    // The catalog reads tracefs: mount it first where it is missing.
    let _ = attach::ensure_tracefs();
    let no_files = pol_compiler::hir::check::no_files;
    let file_name = if args.program.is_some() {
        ""
    } else {
        name.as_str()
    };
    let c = match driver::compile_file(
        file_name,
        &src,
        &no_files,
        &pol_compiler::catalog::HostCatalog,
    ) {
        Ok(c) => {
            eprint!("{}", render_all(&c.warnings, &name, &src));
            c
        }
        Err(diags) => {
            eprint!("{}", render_all(&diags, &name, &src));
            let n = diags.iter().filter(|d| d.is_error()).count();
            say!("{name}: {n} error{}", if n == 1 { "" } else { "s" });
            return Ok(false);
        }
    };
    let Some(out) = &c.probes else {
        bail!("{name} has no probes");
    };
    // The runtime's view of the object: layout.json as any consumer would read it.
    let layout = TraceLayout::parse(&serde_json::to_string(&out.layout)?)
        .context("internal error: the layout does not read back")?;
    check_privileges("trace")?;
    let (bpf, attached) = load_and_attach(&out.spec, &layout, args.pid)?;
    say!(
        "attached {} probe{} in {:.1} ms; Ctrl-C to stop and print the maps",
        layout.probes.len(),
        if layout.probes.len() == 1 { "" } else { "s" },
        t0.elapsed().as_secs_f64() * 1000.0
    );
    let mut events = match &layout.events {
        Some(ev) => {
            let printer = EventPrinter::new(&bpf, ev)?;
            watch.watch(&printer.ring)?;
            Some(printer)
        }
        None => None,
    };
    // `begin` probes now; `interval` ones when due; `end` ones (or every map) at the end.
    let mut timers: Vec<(Instant, Duration, &pol_runtime::trace::layout::Schedule)> = Vec::new();
    for s in &layout.schedule {
        match (s.when.as_str(), s.every_ns) {
            ("begin", _) => run_actions(&bpf, &layout, &s.actions, args.json)?,
            ("interval", Some(ns)) => {
                let every = Duration::from_nanos(ns);
                timers.push((Instant::now() + every, every, s));
            }
            _ => {}
        }
    }
    // Lost records are looked for once a second while records flow.
    let mut next_lost_check = Instant::now() + LOST_CHECK;
    loop {
        let next_timer = timers.iter().map(|t| t.0).min();
        let until = match (&events, next_timer) {
            (Some(_), Some(t)) => Some(t.min(next_lost_check)),
            (Some(_), None) => Some(next_lost_check),
            (None, t) => t,
        };
        if !watch.wait(until)? {
            break;
        }
        if let Some(ev) = events.as_mut() {
            if !ev.drain(args.json) {
                break; // stdout is gone: nobody reads what we print
            }
            if Instant::now() >= next_lost_check {
                ev.report_lost(false);
                next_lost_check = Instant::now() + LOST_CHECK;
            }
        }
        for (due, every, s) in timers.iter_mut() {
            if Instant::now() >= *due {
                run_actions(&bpf, &layout, &s.actions, args.json)?;
                *due += *every;
            }
        }
    }
    if let Some(ev) = events.as_mut() {
        ev.drain(args.json);
        ev.report_lost(true);
        if args.json && ev.lost > 0 {
            println!("{}", serde_json::json!({"type": "lost", "count": ev.lost}));
        }
    }
    let ends: Vec<&pol_runtime::trace::layout::MapAction> = layout
        .schedule
        .iter()
        .filter(|s| s.when == "end")
        .flat_map(|s| &s.actions)
        .collect();
    let mut text = String::new();
    if layout.schedule.iter().any(|s| s.when == "end") {
        for act in ends.iter().filter(|a| a.op != "clear") {
            if let Some(t) = &act.text {
                text.push_str(&text_line(t, args.json));
            } else if let Some(a) = layout.aggregations.iter().find(|a| a.map == act.map) {
                text.push_str(&map_text(&bpf, &layout, a, args.json)?);
            }
        }
    } else {
        for a in &layout.aggregations {
            text.push_str(&map_text(&bpf, &layout, a, args.json)?);
        }
    }
    if let Some(path) = &args.flamegraph {
        flamegraph(&bpf, &layout, path)?;
    }
    // Detach before printing: the maps are read, nothing more is counted.
    drop(attached);
    drop(bpf);
    let mut stdout = std::io::stdout().lock();
    if !args.json && !text.is_empty() {
        let _ = writeln!(stdout);
    }
    let _ = stdout.write_all(text.as_bytes());
    let _ = stdout.flush();
    Ok(true)
}

/// The fd of map `name`.
fn map_fd<'a>(bpf: &'a ProbeObject, name: &str) -> Result<std::os::fd::BorrowedFd<'a>> {
    bpf.map_fd(name)
        .map_err(|_| anyhow!("internal error: map `{name}` is not in the object"))
}

/// The entries of a map, `kstack` keys resolved to kernel function names and `ustack`
/// keys to their process's (while it lives: the frames of one that has exited are
/// addresses).
fn entries(
    bpf: &ProbeObject,
    layout: &TraceLayout,
    a: &pol_runtime::trace::layout::Aggregation,
) -> Result<Vec<aggregate::Entry>> {
    let mut entries = aggregate::read(map_fd(bpf, &a.map)?, a)?;
    let kernel = a.key.iter().any(|k| k.ty == "kstack");
    let user = a.key.iter().any(|k| k.ty == "ustack");
    if let (true, Some(stacks)) = (kernel || user, layout.stacks.as_ref()) {
        let fd = map_fd(bpf, stacks)?;
        let ksyms = if kernel {
            Some(KernelSymbols::load().map_err(|e| anyhow!("kernel stacks cannot be named: {e}"))?)
        } else {
            None
        };
        let usyms = user.then(UserSymbols::new);
        let len = pol_runtime::sys::map_info(fd)
            .map(|i| i.value_size as usize)
            .unwrap_or(0);
        aggregate::resolve_stacks(&mut entries, |id, pid| {
            let key = u32::try_from(id).ok()?.to_le_bytes();
            let raw = pol_runtime::sys::map_lookup(fd, &key, len).ok()??;
            let addrs: Vec<u64> = raw
                .chunks(8)
                .map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
                .take_while(|&a| a != 0)
                .collect();
            Some(match (pid, &ksyms, &usyms) {
                (Some(pid), _, Some(u)) => u.names(pid, &addrs),
                (None, Some(k), _) => addrs.iter().map(|&a| k.name(a)).collect(),
                _ => addrs.iter().map(|a| format!("{a:#x}")).collect(),
            })
        });
    }
    Ok(entries)
}

/// One map as printed: bpftrace's text, or one JSON line.
fn map_text(
    bpf: &ProbeObject,
    layout: &TraceLayout,
    a: &pol_runtime::trace::layout::Aggregation,
    json: bool,
) -> Result<String> {
    let entries = entries(bpf, layout, a)?;
    Ok(if json {
        aggregate::to_json(a, &entries).to_string() + "\n"
    } else {
        aggregate::format(a, &entries)
    })
}

/// `--flamegraph FILE.svg`: the first map keyed by `kstack`, drawn (inferno).
fn flamegraph(bpf: &ProbeObject, layout: &TraceLayout, path: &std::path::Path) -> Result<()> {
    let Some(a) = layout
        .aggregations
        .iter()
        .find(|a| a.key.iter().any(|k| k.ty == "kstack" || k.ty == "ustack"))
    else {
        bail!("--flamegraph draws a map keyed by a stack (`count by kstack`, `count by ustack`), and this program has none");
    };
    let stacks: Vec<Stack> = entries(bpf, layout, a)?
        .into_iter()
        .map(|e| Stack {
            frames: e
                .key
                .iter()
                .find_map(|k| match k {
                    aggregate::KeyValue::Frames(f) => Some(f.clone()),
                    _ => None,
                })
                .unwrap_or_default(),
            count: e.words.get("count").copied().unwrap_or(0),
        })
        .collect();
    let file =
        std::fs::File::create(path).with_context(|| format!("cannot write {}", path.display()))?;
    write_flamegraph(&stacks, &a.display, std::io::BufWriter::new(file))?;
    say!(
        "wrote the flame graph of {} to {}",
        a.display,
        path.display()
    );
    Ok(())
}

/// The line `print("text")` prints: the text, or `{"type":"print","text":..}`.
fn text_line(text: &str, json: bool) -> String {
    if json {
        serde_json::json!({"type": "print", "text": text}).to_string() + "\n"
    } else {
        format!("{text}\n")
    }
}

/// `print` and `clear` of an `interval` or `begin` probe, in order.
fn run_actions(
    bpf: &ProbeObject,
    layout: &TraceLayout,
    actions: &[pol_runtime::trace::layout::MapAction],
    json: bool,
) -> Result<()> {
    let mut text = String::new();
    for act in actions {
        if let Some(t) = &act.text {
            text.push_str(&text_line(t, json));
            continue;
        }
        let Some(a) = layout.aggregations.iter().find(|a| a.map == act.map) else {
            continue;
        };
        if act.op == "clear" {
            aggregate::clear(map_fd(bpf, &a.map)?, a)?;
        } else {
            text.push_str(&map_text(bpf, layout, a, json)?);
        }
    }
    if !text.is_empty() {
        let mut stdout = std::io::stdout().lock();
        let _ = stdout.write_all(text.as_bytes());
        let _ = stdout.flush();
    }
    Ok(())
}

/// Hooks the language names but this kernel may lack (kprobe, fentry, LSM): refused in
/// the attach layer's one sentence before anything is compiled or loaded.
fn refuse_unsupported(src: &str) -> Result<()> {
    let (ast, _) = syntax::parse(src);
    for item in &ast.items {
        let Item::Probe(p) = item else { continue };
        let arg = p
            .hook
            .args
            .as_deref()
            .and_then(|a| a.first())
            .and_then(|e| match &e.kind {
                pol_compiler::syntax::ast::ExprKind::Path(p) => Some(p.dotted()),
                _ => None,
            })
            .unwrap_or_default();
        let how = match p.hook.kind.name.as_str() {
            k @ ("kprobe" | "kretprobe") => ProbeAttach::Kprobe {
                function: arg,
                ret: k == "kretprobe",
            },
            k @ ("fentry" | "fexit") => ProbeAttach::Fentry {
                function: arg,
                ret: k == "fexit",
            },
            "lsm" => ProbeAttach::Lsm { hook: arg },
            _ => continue,
        };
        attach::supported(&how).map_err(|e| anyhow!("{e}"))?;
    }
    Ok(())
}

/// How often lost records are looked for while records flow.
const LOST_CHECK: Duration = Duration::from_secs(1);

/// `emit` and `print` records as they arrive: columns under a header, or JSON lines.
struct EventPrinter {
    layout: pol_runtime::trace::layout::Events,
    ring: EventRing,
    /// Records lost so far, as last reported.
    lost: u64,
    /// The kind of the last record printed (a header is printed when it changes).
    last_kind: Option<usize>,
}

impl EventPrinter {
    fn new(bpf: &ProbeObject, ev: &pol_runtime::trace::layout::Events) -> Result<EventPrinter> {
        Ok(EventPrinter {
            layout: ev.clone(),
            ring: EventRing::open(bpf, &ev.ring, &ev.lost)?,
            lost: 0,
            last_kind: None,
        })
    }

    /// Prints every record waiting in the ring buffer; false once stdout is gone.
    fn drain(&mut self, json: bool) -> bool {
        let mut out = String::new();
        let (layout, last_kind) = (&self.layout, &mut self.last_kind);
        self.ring.drain(|item| {
            let Some(e) = events::decode(layout, item) else {
                return;
            };
            if e.record.format.is_some() {
                // A `print` line; the next `emit` record prints its header again.
                if json {
                    out.push_str(&events::text_json(&e).to_string());
                } else {
                    out.push_str(&events::text(&e));
                    *last_kind = None;
                }
            } else if json {
                out.push_str(&events::to_json(&e).to_string());
            } else {
                if *last_kind != Some(e.kind) {
                    out.push_str(&events::header(e.record));
                    out.push('\n');
                    *last_kind = Some(e.kind);
                }
                out.push_str(&events::line(&e));
            }
            out.push('\n');
        });
        if out.is_empty() {
            return true;
        }
        let mut stdout = std::io::stdout().lock();
        stdout.write_all(out.as_bytes()).is_ok() && stdout.flush().is_ok()
    }

    /// Says on stderr how many records the full ring buffer dropped, when that grew
    /// (or, at the end, when any were).
    fn report_lost(&mut self, at_end: bool) {
        if let Some(total) = self.ring.lost_grew() {
            self.lost = total;
        } else if !(at_end && self.lost > 0) {
            return;
        }
        let total = self.lost;
        say!(
            "{total} event{} lost: the ring buffer was full (records come faster than they are printed)",
            if total == 1 { "" } else { "s" }
        );
    }
}

/// Root, or CAP_BPF with CAP_PERFMON (or CAP_SYS_ADMIN), from /proc/self/status.
pub(crate) fn check_privileges(what: &str) -> Result<()> {
    const CAP_SYS_ADMIN: u32 = 21;
    const CAP_PERFMON: u32 = 38;
    const CAP_BPF: u32 = 39;
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return Ok(()); // no procfs: let the kernel say no
    };
    let caps = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|h| u64::from_str_radix(h.trim(), 16).ok())
        .unwrap_or(u64::MAX);
    let has = |c: u32| caps & (1u64 << c) != 0;
    if has(CAP_SYS_ADMIN) || (has(CAP_BPF) && has(CAP_PERFMON)) {
        return Ok(());
    }
    bail!("pol run needs root to {what}: it loads BPF programs and attaches them to kernel tracepoints (CAP_BPF and CAP_PERFMON); run it with sudo")
}

/// Loads the probes (pol's own loader) and attaches every one through `trace::attach`
/// (all or nothing); the returned attachments detach when dropped, before the object is.
fn load_and_attach(
    spec: &pol_compiler::obj::ModuleSpec,
    layout: &TraceLayout,
    pid: Option<i32>,
) -> Result<(ProbeObject, Vec<Attached>)> {
    let list = attach::plan(layout, pid);
    // Refuse what this kernel lacks before loading anything.
    for (program, how) in &list {
        attach::supported(how).map_err(|e| anyhow!("probe `{}`: {e}", shown(layout, program)))?;
    }
    let bpf = ProbeObject::load(spec).map_err(|e| load_error(layout, e))?;
    let attached = attach::attach_all(&bpf, &list).map_err(|e| anyhow!("{e}"))?;
    Ok((bpf, attached))
}

/// How a probe is named in messages: as written, or by its program if anonymous.
fn shown<'a>(layout: &'a TraceLayout, program: &'a str) -> &'a str {
    layout
        .probes
        .iter()
        .find(|p| p.program == program && !p.name.is_empty())
        .map_or(program, |p| p.name.as_str())
}

/// A program the kernel refused: a compiler bug (what `pol check` accepts must load), so
/// the verifier's last lines are shown for the report. Other failures say what is missing.
fn load_error(layout: &TraceLayout, e: TraceLoadError) -> anyhow::Error {
    use pol_runtime::load::LoadError;
    match e {
        TraceLoadError::Load(LoadError::Verifier {
            program,
            io_error,
            log,
        }) => {
            let tail: Vec<&str> = log
                .lines()
                .rev()
                .take(12)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            anyhow!(
                "internal error: the kernel refused probe `{}` ({io_error}); please report it with the verifier's words:\n{}",
                shown(layout, &program),
                tail.join("\n")
            )
        }
        other => anyhow!("cannot load the probes: {other}"),
    }
}
