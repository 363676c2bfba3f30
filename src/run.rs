//! `pol run FILE.pol`: compile, load, attach, show live counters until a signal ends it
//! (INT, TERM, HUP, QUIT or PIPE), then detach everything and print the final counts.
//!
//! Human messages go to stderr (`attached edge to veth0 (xdp native)`, `ready in 9.1 ms`);
//! stdout carries the counters: a table refreshed in place on a terminal, one line per
//! interval otherwise, or with `--json` one JSON object per line — `{"event":"attached"}`
//! once, `{"event":"counters"}` per interval and `{"event":"final"}` after detaching.
//! Cleanup does not depend on reaching the end: the [`Attachment`] guard detaches on drop,
//! also while a panic unwinds, and signals only set a flag that ends the loop. Output that
//! can no longer be written (a closed pipe, a hung-up terminal) ends the run the same way.
//! Each hook is claimed first ([`pol_runtime::hooks`]): a hook another `pol run` holds is
//! refused, and what a killed run left on it is removed.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use pol_compiler::driver::Compiled;
use pol_compiler::ir::{SRC_DEFAULT, SRC_MALFORMED, SRC_PARSER};
use pol_compiler::obj::{AttachSpec, TcDirection};
use pol_runtime::attach::{self, AttachOptions, Attachment, TcMode, XdpMode};
use pol_runtime::direct::{AnyLoaded, Object};
use pol_runtime::hooks::{self, Claim, ClaimRecord, Hook};
use pol_runtime::live::Snapshot;
use pol_runtime::load::LoadError;
use pol_runtime::metrics::{self, PolicyReading, ProgramLabel};
use pol_runtime::pinroot::{self, PinRoot};
use pol_runtime::sets::{self, Pins};
use serde_json::json;

/// What a `pol run` runs, from one parse of its file: rules when it has a rule, probes for
/// `-e` or a file with a probe, filters otherwise (also when the file cannot be read, so
/// that the filter path reports it).
pub enum RunKind {
    Rules,
    Probes,
    Filters,
}

pub fn kind(args: &RunArgs) -> RunKind {
    use pol_compiler::syntax::{self, ast::Item};
    if args.program.is_some() {
        return RunKind::Probes;
    }
    let Some(src) = args
        .file
        .as_ref()
        .and_then(|f| std::fs::read_to_string(f).ok())
    else {
        return RunKind::Filters;
    };
    let (ast, _) = syntax::parse(&src);
    if ast.items.iter().any(|i| matches!(i, Item::Rule(_))) {
        RunKind::Rules
    } else if ast.items.iter().any(|i| matches!(i, Item::Probe(_))) {
        RunKind::Probes
    } else {
        RunKind::Filters
    }
}

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// The `.pol` file (filters or probes).
    #[arg(required_unless_present = "program")]
    pub(crate) file: Option<PathBuf>,
    /// A probe program given on the command line instead of a file, as `bpftrace -e`:
    /// `pol run -e 'probe tracepoint(syscalls.sys_enter_openat) { count by comm }'`.
    #[arg(short = 'e', value_name = "PROGRAM", conflicts_with = "file")]
    pub(crate) program: Option<String>,
    /// Attach every filter to this interface instead of the one named in the file.
    #[arg(long, value_name = "IF")]
    iface: Option<String>,
    /// Print one JSON object per interval on stdout (and a final one at exit); for
    /// probes, one JSON object per map at exit.
    #[arg(long)]
    pub(crate) json: bool,
    /// Seconds between counter readings.
    #[arg(long, default_value_t = 1.0, value_name = "SECS")]
    interval: f64,
    /// Probes: write a flame graph (SVG) of the map keyed by `kstack` at the end.
    #[arg(long, value_name = "FILE.svg")]
    pub(crate) flamegraph: Option<PathBuf>,
    /// Stop by itself after this many seconds.
    #[arg(long, value_name = "SECS")]
    pub(crate) duration: Option<f64>,
    /// Probes: uprobes and uretprobes fire in this process only (as `bpftrace -p`).
    #[arg(long, value_name = "PID")]
    pub(crate) pid: Option<i32>,
    /// XDP mode: native (driver) falling back to generic (skb), or force one.
    #[arg(long, value_enum, default_value_t = XdpModeArg::Auto)]
    xdp_mode: XdpModeArg,
    /// TC attachment: TCX links where the kernel has them, or a filter under clsact.
    #[arg(long, value_enum, default_value_t = TcModeArg::Auto)]
    tc_mode: TcModeArg,
    /// Serve Prometheus metrics at http://ADDR/metrics (`127.0.0.1:9464`; port 0: any).
    #[arg(long, value_name = "ADDR")]
    metrics: Option<String>,
    /// Detach an XDP program already on the interface instead of refusing; it is put back
    /// on exit.
    #[arg(long)]
    replace: bool,
    /// Security rules: attach connect and bind rules to this cgroup v2 directory (and
    /// below) instead of the cgroup2 root (every process).
    #[arg(long, value_name = "DIR")]
    pub(crate) cgroup: Option<PathBuf>,
    /// Security rules: start in audit mode (rules that kill or deny only alert); switch a
    /// running file with `pol mode enforce FILE`.
    #[arg(long)]
    pub(crate) audit: bool,
    /// Security rules: at most this many alerts per rule, per CPU, per second; the rest
    /// are counted and reported as suppressed (kills and denials still happen). 0: no limit.
    #[arg(long, default_value_t = 100, value_name = "N")]
    pub(crate) alert_rate: u64,
    /// Security rules: write alerts (and the suppressed and lost counts) to this file
    /// (appended), or to the Unix stream socket a collector listens on (`unix:PATH`),
    /// instead of stdout; text or, with `--json`, JSON lines.
    #[arg(long, value_name = "FILE|unix:PATH")]
    pub(crate) alerts_to: Option<String>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum XdpModeArg {
    Auto,
    Native,
    Generic,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum TcModeArg {
    Auto,
    Netlink,
}

pub fn run(args: RunArgs) -> Result<bool> {
    let t0 = Instant::now();
    if !(args.interval.is_finite() && args.interval >= 0.01) {
        bail!("--interval must be at least 0.01 seconds");
    }
    let stop = Arc::new(AtomicBool::new(false));
    // Every signal that ends a process by default and can be caught: detach, then exit.
    // (SIGPIPE too: Rust ignores it, but a `kill -PIPE` or a closed pipe should end the run.)
    use signal_hook::consts::{SIGHUP, SIGINT, SIGPIPE, SIGQUIT, SIGTERM};
    for sig in [SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGPIPE] {
        signal_hook::flag::register(sig, Arc::clone(&stop))?;
    }
    let Some(file) = args.file.clone() else {
        bail!("`pol run -e` takes probes only");
    };
    let Some(compiled) = crate::compile(&file)? else {
        return Ok(false);
    };
    let t_compiled = t0.elapsed();
    check_privileges()?;
    let opts = AttachOptions {
        iface: args.iface.clone(),
        xdp_mode: match args.xdp_mode {
            XdpModeArg::Auto => XdpMode::Auto,
            XdpModeArg::Native => XdpMode::Native,
            XdpModeArg::Generic => XdpMode::Generic,
        },
        tc_mode: match args.tc_mode {
            TcModeArg::Auto => TcMode::Auto,
            TcModeArg::Netlink => TcMode::Netlink,
        },
        replace: args.replace,
    };
    // Name a missing interface before the kernel does any work.
    for (p, iface) in attach::targets(&compiled.spec, &opts) {
        let Some(iface) = iface else { continue };
        if pol_runtime::sys::netlink::ifindex(&iface).is_none() {
            bail!("no interface `{iface}` here (see `ip link`); use --iface to attach filter `{p}` to another one");
        }
    }
    if let Some(i) = &args.iface {
        for p in &compiled.hir.filters {
            eprintln!(
                "note: --iface {i} overrides the interface of filter `{}`",
                p.name
            );
        }
    }
    let pin_root = pin_root_note();
    // The direct path (no ELF, no aya) for XDP and TCX; aya for clsact TC filters.
    // POL_LOADER=aya forces aya (for comparing the two in bench/startup).
    let direct = attach::fds_can_attach(&compiled.spec, &opts)
        && std::env::var("POL_LOADER").map_or(true, |v| v != "aya");
    let loaded = if direct {
        pol_runtime::testrun::load_direct(&compiled).map(AnyLoaded::Direct)
    } else {
        pol_runtime::testrun::load(&compiled).map(AnyLoaded::Aya)
    };
    let mut loaded = match loaded {
        Ok(l) => l,
        Err(e) => bail!(load_error(&compiled, &e)),
    };
    let claims = claim_hooks(&file, &compiled, &opts, None)?;
    let pins = pin_root
        .as_ref()
        .and_then(|r| pin_sets(r, &file, &compiled, loaded.object()));
    let t_loaded = t0.elapsed();
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        live(
            &args,
            &compiled,
            &mut loaded,
            pins,
            claims,
            &opts,
            &stop,
            t0,
            t_compiled,
            t_loaded,
        )
    }));
    match outcome {
        Ok(r) => r,
        Err(_) => bail!("internal error: pol run panicked (a bug in pol); everything it attached has been detached"),
    }
}

/// Attach, show counters until stopped, detach, print the final counts.
#[allow(clippy::too_many_arguments)]
fn live(
    args: &RunArgs,
    c: &Compiled,
    loaded: &mut AnyLoaded,
    pins: Option<Pins>,
    // Dropped after `att` (parameters outlive locals): claims go once the hooks are free.
    mut claims: Vec<Claim>,
    opts: &AttachOptions,
    stop: &AtomicBool,
    t0: Instant,
    t_compiled: Duration,
    t_loaded: Duration,
) -> Result<bool> {
    let att: Attachment = match loaded {
        AnyLoaded::Direct(d) => attach::attach_all_fds(d, &c.spec, opts),
        AnyLoaded::Aya(l) => attach::attach_all(l, &c.spec, opts),
    }
    .map_err(|e| anyhow!("{e}"))?;
    let loaded = loaded.object();
    let t_attached = t0.elapsed();
    let mut flows = Flows::open(c, loaded, &att)?;
    for a in &att.attached {
        say!("attached {} to {} ({})", a.program, a.iface, a.how);
        if let Some(n) = &a.note {
            say!("note: {n}");
        }
        for c in claims.iter_mut().filter(|c| c.record.program == a.program) {
            let created = att.qdisc_created(c.record.ifindex);
            if let Err(e) = c.attached(&a.how, created) {
                say!("warning: cannot record the attachment of `{}` ({e}); should this run be killed, the next one cannot clean up after it", a.program);
            }
        }
    }
    say!(
        "ready in {:.1} ms (compile {:.1} ms, load {:.1} ms, attach {:.1} ms); Ctrl-C to stop",
        ms(t_attached),
        ms(t_compiled),
        ms(t_loaded - t_compiled),
        ms(t_attached - t_loaded)
    );
    let feed = match &args.metrics {
        Some(addr) => {
            let f = MetricsFeed::start(addr)
                .map_err(|e| anyhow!("cannot serve metrics on {addr}: {e}"))?;
            say!("serving metrics on http://{}/metrics", f.server.addr());
            Some(f)
        }
        None => None,
    };
    let mut out = std::io::stdout();
    if args.json {
        let attached: Vec<_> = att
            .attached
            .iter()
            .map(|a| json!({"program": a.program, "iface": a.iface, "how": a.how}))
            .collect();
        let mut ev = json!({"event": "attached", "ready_ms": ms(t_attached), "attached": attached});
        if let Some(f) = &feed {
            ev["metrics"] = json!(f.server.addr().to_string());
        }
        writeln!(out, "{ev}")?;
    }
    if std::env::var("POL_RUN_TEST_PANIC").is_ok_and(|v| v == "after-attach") {
        panic!("POL_RUN_TEST_PANIC=after-attach: a panic with programs attached (test hook)");
    }
    // Flow events print as lines between the counters: no redrawing in place.
    let tty = !args.json && out.is_terminal() && flows.is_none();
    let interval = Duration::from_secs_f64(args.interval);
    let deadline = args
        .duration
        .map(|d| Instant::now() + Duration::from_secs_f64(d.max(0.0)));
    let start = Instant::now();
    let mut prev: Option<(Snapshot, Instant)> = None;
    let mut shown_lines = 0usize;
    let mut next = Instant::now() + interval;
    while !stop.load(Ordering::Relaxed) && deadline.is_none_or(|d| Instant::now() < d) {
        std::thread::sleep(Duration::from_millis(20).min(interval));
        if let Some(f) = &mut flows {
            if let Err(e) = f.show(args.json, &mut out, start) {
                say!("stopping: cannot write the flow events ({e})");
                break;
            }
        }
        if let Some(f) = &feed {
            if f.want.load(Ordering::Relaxed) {
                f.publish(&reading(
                    args.file.as_deref().unwrap_or(std::path::Path::new("-")),
                    c,
                    loaded,
                    &att,
                ));
            }
        }
        if Instant::now() < next {
            continue;
        }
        next += interval;
        let snap = Snapshot::read(c, loaded)?;
        let now = Instant::now();
        if let Err(e) = show(
            args,
            tty,
            &mut out,
            &snap,
            prev.as_ref(),
            now,
            start,
            &mut shown_lines,
        ) {
            say!("stopping: cannot write the counters ({e})");
            break;
        }
        prev = Some((snap, now));
    }
    let mut problems = att.detach();
    problems.extend(pins.map(Pins::remove).unwrap_or_default());
    for p in &problems {
        say!("warning: {p}");
    }
    say!("detached");
    if let Some(f) = &mut flows {
        let _ = f.show(args.json, &mut out, start);
        let _ = f.summary(args.json, &mut out, loaded);
    }
    let snap = Snapshot::read(c, loaded)?;
    // The final counts are best effort: stdout may be what went away.
    let _ = show_final(args, tty, &mut out, &snap, start, shown_lines);
    Ok(problems.is_empty())
}

/// The metrics server of `--metrics` and what it serves: the server thread asks (`want`),
/// the run loop, which owns the maps, answers within one tick (`gen` counts answers).
struct MetricsFeed {
    want: Arc<AtomicBool>,
    gen: Arc<AtomicU64>,
    text: Arc<Mutex<String>>,
    server: metrics::Server,
}

impl MetricsFeed {
    fn start(addr: &str) -> std::io::Result<MetricsFeed> {
        let want = Arc::new(AtomicBool::new(false));
        let gen = Arc::new(AtomicU64::new(0));
        let text = Arc::new(Mutex::new(String::from("pol_up 0\n")));
        let (w, g, t) = (Arc::clone(&want), Arc::clone(&gen), Arc::clone(&text));
        let server = metrics::Server::start(addr, move || {
            let before = g.load(Ordering::Acquire);
            w.store(true, Ordering::Release);
            let end = Instant::now() + Duration::from_secs(2);
            while g.load(Ordering::Acquire) == before && Instant::now() < end {
                std::thread::sleep(Duration::from_millis(2));
            }
            t.lock().map(|s| s.clone()).unwrap_or_default()
        })?;
        Ok(MetricsFeed {
            want,
            gen,
            text,
            server,
        })
    }

    fn publish(&self, r: &(PolicyReading, Duration)) {
        let body = metrics::render(std::slice::from_ref(&r.0), r.1);
        if let Ok(mut t) = self.text.lock() {
            *t = body;
        }
        self.want.store(false, Ordering::Release);
        self.gen.fetch_add(1, Ordering::AcqRel);
    }
}

/// What `--metrics` exports about this run, and how long reading it took.
fn reading(
    file: &std::path::Path,
    c: &Compiled,
    loaded: &dyn Object,
    att: &Attachment,
) -> (PolicyReading, Duration) {
    let t = Instant::now();
    let maps = c
        .spec
        .maps
        .iter()
        .filter_map(|m| {
            let info = loaded.map_info(&m.name).ok()?;
            let used = loaded.map_entries(&m.name).map_or(0, |e| e.len());
            Some((m.name.clone(), info, used))
        })
        .collect();
    let programs = att
        .attached
        .iter()
        .map(|a| ProgramLabel {
            filter: a.program.clone(),
            iface: a.iface.clone(),
            attach: a.how.clone(),
            prog_id: loaded.prog_info(&a.program).map_or(0, |i| i.id),
        })
        .collect();
    let r = PolicyReading {
        policy: pol_runtime::sets::stem_of(file),
        snapshot: Snapshot::read(c, loaded).ok(),
        maps,
        programs,
    };
    (r, t.elapsed())
}

/// One interval's counters: a JSON line, the table redrawn in place, or a plain line.
#[allow(clippy::too_many_arguments)]
fn show(
    args: &RunArgs,
    tty: bool,
    out: &mut std::io::Stdout,
    snap: &Snapshot,
    prev: Option<&(Snapshot, Instant)>,
    now: Instant,
    start: Instant,
    shown_lines: &mut usize,
) -> std::io::Result<()> {
    {
        if args.json {
            let mut v = snap.to_json();
            v["event"] = json!("counters");
            v["t"] = json!(round3((now - start).as_secs_f64()));
            writeln!(out, "{v}")?;
        } else if tty {
            let prev_ref = prev.map(|(s, t)| (s, (now - *t).as_secs_f64()));
            let table = snap.table(prev_ref);
            // Move up over the previous table, rewrite it line by line, clear the rest.
            if *shown_lines > 0 {
                write!(out, "\x1b[{shown_lines}F")?;
            }
            for line in table.lines() {
                writeln!(out, "{line}\x1b[K")?;
            }
            write!(out, "\x1b[J")?;
            out.flush()?;
            *shown_lines = table.lines().count();
        } else {
            writeln!(out, "{:.1}s {}", (now - start).as_secs_f64(), snap.line())?;
        }
    }
    out.flush()
}

/// The final counts, after detaching.
fn show_final(
    args: &RunArgs,
    tty: bool,
    out: &mut std::io::Stdout,
    snap: &Snapshot,
    start: Instant,
    shown_lines: usize,
) -> std::io::Result<()> {
    if args.json {
        let mut v = snap.to_json();
        v["event"] = json!("final");
        v["t"] = json!(round3(start.elapsed().as_secs_f64()));
        writeln!(out, "{v}")?;
    } else {
        if tty && shown_lines > 0 {
            write!(out, "\x1b[{shown_lines}F\x1b[J")?;
        }
        writeln!(out, "final counts:")?;
        write!(out, "{}", snap.table(None))?;
    }
    out.flush()
}

/// Claims the hook of every program (refusing one another `pol run` or another loaded
/// policy holds) for this run, or for loaded policy `policy`, and reports what killed runs
/// left there and was removed.
pub fn claim_hooks(
    file: &std::path::Path,
    c: &Compiled,
    opts: &AttachOptions,
    policy: Option<&str>,
) -> Result<Vec<Claim>> {
    let mut claims = Vec::new();
    for (p, (name, iface)) in c.spec.programs.iter().zip(attach::targets(&c.spec, opts)) {
        let hook = match &p.attach {
            AttachSpec::Xdp { .. } => Hook::Xdp,
            AttachSpec::Tc {
                direction: TcDirection::Ingress,
                ..
            } => Hook::TcIngress,
            AttachSpec::Tc {
                direction: TcDirection::Egress,
                ..
            } => Hook::TcEgress,
            AttachSpec::Tracepoint { .. } => continue,
        };
        let Some(iface) = iface else { continue };
        let Some(ifindex) = pol_runtime::sys::netlink::ifindex(&iface) else {
            continue; // attach says so
        };
        let record = ClaimRecord {
            pid: 0,
            file: file.display().to_string(),
            program: name,
            iface,
            ifindex,
            hook,
            how: String::new(),
            qdisc_created: false,
            policy: policy.map(str::to_string),
        };
        let (claim, notes) =
            hooks::claim(&hooks::claim_root(), record).map_err(|e| anyhow!("{e}"))?;
        for n in notes {
            say!("note: {n}");
        }
        claims.push(claim);
    }
    Ok(claims)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Root, or CAP_BPF (or CAP_SYS_ADMIN) plus CAP_NET_ADMIN, from /proc/self/status.
pub fn check_privileges() -> Result<()> {
    const CAP_NET_ADMIN: u32 = 12;
    const CAP_SYS_ADMIN: u32 = 21;
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
    if (has(CAP_BPF) || has(CAP_SYS_ADMIN)) && has(CAP_NET_ADMIN) {
        return Ok(());
    }
    bail!(
        "pol run needs root: it loads BPF programs and attaches them to interfaces \
         (CAP_BPF and CAP_NET_ADMIN); run it with sudo"
    )
}

/// Pins the maps of the file's named sets under /sys/fs/bpf/pol/<stem>-<pid>/ for `pol set`
/// (after removing the pins of runs killed before they could). Not being able to pin is a
/// warning: the filter works, only `pol set` cannot reach it.
fn pin_sets(
    pin_root: &PinRoot,
    file: &std::path::Path,
    c: &Compiled,
    loaded: &dyn Object,
) -> Option<Pins> {
    let root = &pin_root.path().join(sets::PIN_DIR);
    for note in sets::sweep_stale(root) {
        eprintln!("note: {note}");
    }
    let mut fds = Vec::new();
    for m in sets::all_set_maps(c) {
        match loaded.map_fd(&m.name) {
            Ok(fd) => fds.push((m.name, fd)),
            Err(e) => {
                eprintln!(
                    "warning: cannot pin set map `{}` ({e}); `pol set` cannot change it",
                    m.name
                );
            }
        }
    }
    // The classifiers' maps too, for `pol filter add|del`.
    for f in &c.hir.filters {
        let n = pol_compiler::classify::datapath::Names::of_filter(&f.name);
        for m in [n.descs, n.buckets, n.entries, n.gen] {
            if let Ok(fd) = loaded.map_fd(&m) {
                fds.push((m, fd));
            }
        }
    }
    match Pins::create(root, &sets::stem_of(file), &fds) {
        Ok(Some(p)) => {
            eprintln!(
                "set maps pinned under {} (change them with `pol set add|del|list {}`)",
                pin_root.show(p.dir()),
                file.display()
            );
            Some(p)
        }
        Ok(None) => None,
        Err(e) => {
            eprintln!("warning: {e}; the filter runs, but `pol set` cannot change its sets");
            None
        }
    }
}

/// The bpffs to pin set maps in, for `pol set`: the host's even under `ip netns exec`
/// (`pol_runtime::pinroot`), mounted only when there is none. Without one the filter still
/// runs; only `pol set` cannot reach it.
fn pin_root_note() -> Option<PinRoot> {
    match pinroot::pin_root() {
        Ok(r) => {
            if let Some(n) = &r.note {
                eprintln!("note: {n}");
            }
            Some(r)
        }
        Err(e) => {
            eprintln!(
                "warning: the BPF filesystem is not mounted ({e}); pol run needs it only for \
                 `pol set` (and bpftool): `mount -t bpf bpf {}`",
                pol_runtime::BPFFS
            );
            None
        }
    }
}

/// A load error as a sentence; a verifier rejection names the `.pol` rule it comes from.
pub fn load_error(c: &Compiled, e: &LoadError) -> String {
    match e {
        LoadError::Verifier { program, log, .. } => verifier_report(c, program, log),
        LoadError::Object { message } if message.contains("EPERM") => format!(
            "{e}; loading BPF programs needs root (CAP_BPF and CAP_NET_ADMIN): run it with sudo"
        ),
        _ => format!("{e}"),
    }
}

/// Maps the instruction the verifier stopped at back to its rule through the program's marks.
pub fn verifier_report(c: &Compiled, program: &str, log: &str) -> String {
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    let insn = lines.iter().rev().find_map(|l| {
        let (n, rest) = l.split_once(": (")?;
        let _ = rest;
        n.trim().parse::<usize>().ok()
    });
    let prog_idx = c.programs.iter().position(|p| p.name == program);
    let source = match (insn, prog_idx) {
        (Some(i), Some(pi)) => {
            let src = c.programs[pi]
                .marks
                .iter()
                .take_while(|(at, _)| *at <= i)
                .last()
                .map(|(_, s)| *s);
            let what = match src {
                Some(SRC_PARSER) => "pol's packet parser".to_string(),
                Some(SRC_DEFAULT) => "the `default` of the filter".to_string(),
                Some(SRC_MALFORMED) => "the `malformed` path of the filter".to_string(),
                Some(r) => match c.spec.programs[pi].rules.iter().find(|x| x.index == r) {
                    Some(rule) => format!("the rule on line {}: `{}`", rule.line, rule.text),
                    None => format!("rule #{r}"),
                },
                None => "the program's first instructions".to_string(),
            };
            format!(" at instruction {i}, which comes from {what}")
        }
        _ => String::new(),
    };
    let tail = lines[lines.len().saturating_sub(12)..].join("\n  ");
    format!(
        "the kernel verifier rejected filter `{program}`{source}. This is a bug in pol, not \
         in your file: please report it with the .pol file. Last lines of the verifier log:\n  {tail}"
    )
}

/// The flow events (`log`) of a running file: read every poll, printed as lines.
struct Flows {
    stream: pol_runtime::flow::FlowStream,
    names: pol_runtime::flow::Names,
    clock: pol_runtime::flow::Clock,
    header: bool,
    shown: u64,
    /// The file's limit, as the summary says it ("1000 a second").
    rate: String,
}

impl Flows {
    fn open(c: &Compiled, obj: &dyn Object, att: &Attachment) -> Result<Option<Flows>> {
        let Some(stream) = pol_runtime::flow::FlowStream::open(obj).map_err(|e| anyhow!(e))? else {
            return Ok(None);
        };
        let ifaces: Vec<(u32, String)> = att
            .attached
            .iter()
            .filter_map(|a| {
                pol_runtime::sys::netlink::ifindex(&a.iface).map(|i| (i, a.iface.clone()))
            })
            .collect();
        Ok(Some(Flows {
            stream,
            names: pol_runtime::flow::Names::new(&c.hir, &ifaces),
            clock: Default::default(),
            header: false,
            shown: 0,
            rate: c.hir.flow_rate.describe(),
        }))
    }

    fn show(&mut self, json: bool, out: &mut impl Write, start: Instant) -> std::io::Result<()> {
        let events = self.stream.drain();
        if events.is_empty() {
            return Ok(());
        }
        let now = start.elapsed().as_secs_f64();
        let mut text = String::new();
        if !json && !self.header {
            text.push_str(&pol_runtime::flow::header());
            text.push('\n');
            self.header = true;
        }
        for e in &events {
            let t = self.clock.at(e, now);
            if json {
                text.push_str(&pol_runtime::flow::to_json(e, &self.names, t).to_string());
            } else {
                text.push_str(&pol_runtime::flow::line(e, &self.names, t));
            }
            text.push('\n');
        }
        self.shown += events.len() as u64;
        out.write_all(text.as_bytes())?;
        out.flush()
    }

    /// How many events were shown and how many the rate limit suppressed.
    fn summary(&self, json: bool, out: &mut impl Write, obj: &dyn Object) -> std::io::Result<()> {
        let suppressed = pol_runtime::flow::suppressed(obj);
        if json {
            let v = json!({"event": "flows", "shown": self.shown, "suppressed": suppressed});
            writeln!(out, "{v}")
        } else {
            writeln!(
                out,
                "flow events: {} shown, {suppressed} suppressed (over {})",
                self.shown, self.rate
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::verifier_report;

    #[test]
    fn verifier_rejection_names_the_rule() {
        let src = "filter f on xdp(\"eth0\") {\n    drop tcp.dport == 23\n    drop udp\n    default pass\n}\n";
        let c = pol_compiler::driver::compile(src).expect("compiles");
        let p = &c.programs[0];
        let (at, rule) = *p
            .marks
            .iter()
            .find(|(_, s)| *s == 1)
            .expect("a mark for rule 1");
        // The mark's first instruction: the rule's code may be that one instruction, with
        // the next source's code right after it.
        let log = format!("0: (b7) r0 = 0\n{at}: (61) r1 = *(u32 *)(r2 +0)\ninvalid access to packet\nprocessed 9 insns\n");
        let text = verifier_report(&c, "f", &log);
        assert_eq!(rule, 1);
        assert!(text.contains("line 3: `drop udp`"), "{text}");
        assert!(text.contains("invalid access to packet"), "{text}");
        let log = "0: (b7) r0 = 0\nR1 invalid mem access\n";
        let text = verifier_report(&c, "f", log);
        assert!(text.contains("pol's packet parser"), "{text}");
    }
}
