//! `pol run` of a file of security rules: compile against the running kernel, load every
//! rule program, attach them all or none (through `trace::attach`, as probes), then print
//! each alert as it arrives — aligned columns, or JSON lines with `--json` — until
//! Ctrl-C / SIGTERM / `--duration`. Attachments and the loaded object are owned fds:
//! dropping them, on any error or at the end, detaches every rule.

use std::io::Write;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use aya::maps::{Map, MapData, RingBuf};
use pol_compiler::diag::render_all;
use pol_compiler::driver;
use pol_runtime::security::{self, RulesLayout};
use pol_runtime::trace::attach::{self, Attached, ProbeAttach};
use pol_runtime::trace::layout::{Attach, TraceLayout};
use pol_runtime::trace::load::ProbeObject;

use crate::run::RunArgs;

pub fn run(args: RunArgs) -> Result<bool> {
    let t0 = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    use signal_hook::consts::{SIGHUP, SIGINT, SIGPIPE, SIGQUIT, SIGTERM};
    for sig in [SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGPIPE] {
        signal_hook::flag::register(sig, Arc::clone(&stop))?;
    }
    let Some(file) = &args.file else {
        bail!("pol run needs a FILE");
    };
    let name = file.display().to_string();
    let src =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let no_files = pol_compiler::hir::check::no_files;
    let c = match driver::compile_with_catalog(&src, &no_files, &pol_compiler::catalog::HostCatalog)
    {
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
    let (Some(out), Some(rules)) = (&c.probes, &c.rules) else {
        bail!("{name} has no rules");
    };
    // The runtime's view: layout.json as any consumer would read it.
    let layout = TraceLayout::parse(&serde_json::to_string(&out.layout)?)
        .context("internal error: the layout does not read back")?;
    let rules = RulesLayout::parse(&serde_json::to_string(rules)?)
        .context("internal error: the rules layout does not read back")?;
    check_privileges()?;
    let (bpf, attached) = load_and_attach(&out.spec, &layout)?;
    say!(
        "attached {} rule{} in {:.1} ms; Ctrl-C to stop",
        rules.rules.len(),
        if rules.rules.len() == 1 { "" } else { "s" },
        t0.elapsed().as_secs_f64() * 1000.0
    );
    let deadline = args
        .duration
        .map(|s| Instant::now() + Duration::from_secs_f64(s.max(0.0)));
    let Some(ev) = &layout.events else {
        bail!("internal error: rules without a ring buffer");
    };
    // aya's ring buffer reader (memory-mapped) over the map pol created.
    let ring = bpf
        .map_fd(&ev.ring)
        .map_err(|_| anyhow!("internal error: no ring buffer `{}`", ev.ring))?
        .try_clone_to_owned()
        .context("cannot duplicate the ring buffer's fd")?;
    let ring = MapData::from_fd(ring).map_err(|e| anyhow!("ring buffer: {e}"))?;
    let mut ring =
        RingBuf::try_from(Map::RingBuf(ring)).map_err(|e| anyhow!("ring buffer: {e}"))?;
    let lost_map = bpf
        .map_fd(&ev.lost)
        .map_err(|_| anyhow!("internal error: no lost-alert counter `{}`", ev.lost))?
        .try_clone_to_owned()
        .context("cannot duplicate the lost-alert counter's fd")?;
    let mut printer = Printer {
        file: name.clone(),
        json: args.json,
        header: false,
        lost: 0,
    };
    while !stop.load(Ordering::Relaxed) && deadline.is_none_or(|d| Instant::now() < d) {
        if !printer.drain(&mut ring, &rules) {
            break; // stdout is gone: nobody reads what we print
        }
        printer.report_lost(&lost_map, false);
        std::thread::sleep(Duration::from_millis(10));
    }
    printer.drain(&mut ring, &rules);
    printer.report_lost(&lost_map, true);
    drop(attached);
    drop(bpf);
    Ok(true)
}

struct Printer {
    file: String,
    json: bool,
    header: bool,
    lost: u64,
}

impl Printer {
    /// Prints every alert waiting in the ring buffer; false once stdout is gone.
    fn drain(&mut self, ring: &mut RingBuf<aya::maps::MapData>, rules: &RulesLayout) -> bool {
        let mut out = String::new();
        while let Some(item) = ring.next() {
            let Some(a) = security::decode(rules, &item) else {
                continue;
            };
            if self.json {
                out.push_str(&security::to_json(&a, &self.file).to_string());
            } else {
                if !self.header {
                    out.push_str(&security::header());
                    out.push('\n');
                    self.header = true;
                }
                out.push_str(&security::line(&a, &self.file));
            }
            out.push('\n');
        }
        if out.is_empty() {
            return true;
        }
        let mut stdout = std::io::stdout().lock();
        stdout.write_all(out.as_bytes()).is_ok() && stdout.flush().is_ok()
    }

    /// Says how many alerts the full ring buffer dropped, when that grew (never silently).
    fn report_lost(&mut self, map: &std::os::fd::OwnedFd, at_end: bool) {
        let fd = map.as_fd();
        let total = pol_runtime::sys::map_info(fd)
            .and_then(|info| pol_runtime::sys::value_buf_len(&info))
            .and_then(|len| pol_runtime::sys::map_lookup(fd, &0u32.to_le_bytes(), len))
            .ok()
            .flatten()
            .map_or(0, |v| {
                v.chunks(8)
                    .map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
                    .fold(0u64, u64::wrapping_add)
            });
        if total > self.lost || (at_end && total > 0) {
            say!(
                "{total} alert{} lost: the ring buffer was full",
                if total == 1 { "" } else { "s" }
            );
            if at_end && self.json {
                println!("{}", serde_json::json!({"type": "lost", "count": total}));
            }
        }
        self.lost = total;
    }
}

/// Root, or CAP_BPF with CAP_PERFMON (or CAP_SYS_ADMIN), from /proc/self/status.
fn check_privileges() -> Result<()> {
    const CAP_SYS_ADMIN: u32 = 21;
    const CAP_PERFMON: u32 = 38;
    const CAP_BPF: u32 = 39;
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return Ok(());
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
    bail!("pol run needs root to enforce rules: it loads BPF programs and attaches them to kernel tracepoints (CAP_BPF and CAP_PERFMON); run it with sudo")
}

/// Loads the object and attaches every rule program (all or nothing).
fn load_and_attach(
    spec: &pol_compiler::obj::ModuleSpec,
    layout: &TraceLayout,
) -> Result<(ProbeObject, Vec<Attached>)> {
    let list: Vec<(String, ProbeAttach)> = layout
        .probes
        .iter()
        .map(|p| {
            let how = match &p.attach {
                Attach::BtfTracepoint { name } => ProbeAttach::BtfTracepoint { name: name.clone() },
                Attach::Tracepoint { category, name } => ProbeAttach::Tracepoint {
                    category: category.clone(),
                    name: name.clone(),
                },
                Attach::RawTracepoint { name } => ProbeAttach::RawTracepoint { name: name.clone() },
                other => return Err(anyhow!("internal error: rules attach as {other:?}")),
            };
            Ok((p.program.clone(), how))
        })
        .collect::<Result<_>>()?;
    let bpf = ProbeObject::load(spec).map_err(|e| anyhow!("cannot load the rules: {e}"))?;
    let attached = attach::attach_all(&bpf, &list).map_err(|e| anyhow!("{e}"))?;
    Ok((bpf, attached))
}
