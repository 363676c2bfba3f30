//! `pol run` of a file of security rules: compile against the running kernel, load every
//! rule program, attach them all or none (through `trace::attach`, as probes), then print
//! each alert as it arrives — aligned columns, or JSON lines with `--json` — until
//! Ctrl-C / SIGTERM / `--duration`. Attachments and the loaded object are owned fds:
//! dropping them, on any error or at the end, detaches every rule.

use std::io::Write;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use pol_compiler::diag::render_all;
use pol_compiler::driver;
use pol_runtime::security::{self, RulesLayout};
use pol_runtime::trace::attach::{self, Attached};
use pol_runtime::trace::layout::TraceLayout;
use pol_runtime::trace::load::ProbeObject;
use pol_runtime::trace::watch::{EventRing, Watch};
use pol_runtime::{pinroot, sets};
use std::path::PathBuf;

use crate::run::RunArgs;

pub fn run(args: RunArgs) -> Result<bool> {
    let t0 = Instant::now();
    let mut watch = Watch::new(args.duration.map(|s| Duration::from_secs_f64(s.max(0.0))))?;
    let Some(file) = &args.file else {
        bail!("pol run needs a FILE");
    };
    let name = file.display().to_string();
    let src =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let no_files = pol_compiler::hir::check::no_files;
    let c = match driver::compile_file(&name, &src, &no_files, &pol_compiler::catalog::HostCatalog)
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
    crate::trace_run::check_privileges("enforce rules")?;
    // The cgroup is checked before anything is loaded.
    let cgroup = if rules.cgroup.is_empty() {
        if args.cgroup.is_some() {
            say!("note: --cgroup applies to connect and bind rules; this file has none");
        }
        None
    } else {
        let path = match &args.cgroup {
            Some(p) => p.clone(),
            None => security::cgroup::default_cgroup()?,
        };
        let fd = security::cgroup::open(&path)?;
        Some((path, fd))
    };
    // The alert sink is opened before anything is loaded: a collector that is not
    // there is one sentence, nothing attached.
    let sink = Sink::open(args.alerts_to.as_deref())?;
    let bpf = ProbeObject::load(&out.spec).map_err(|e| anyhow!("cannot load the rules: {e}"))?;
    // The mode is set before anything is attached, so no event sees the other one.
    match (&rules.mode, args.audit) {
        (Some(map), true) => set_mode(&bpf, map, 0, security::MODE_AUDIT)?,
        (None, true) => say!("note: no rule kills or denies: --audit changes nothing"),
        _ => {}
    }
    // Rules that say `action audit` start in audit mode, each in its slot.
    if let Some(map) = &rules.mode {
        for (i, r) in rules.rules.iter().enumerate().filter(|(_, r)| r.audit) {
            set_mode(&bpf, map, i as u32 + 1, security::MODE_AUDIT)
                .with_context(|| format!("rule {}", r.name))?;
        }
    }
    if let Some(map) = &rules.limit {
        let fd = bpf
            .map_fd(map)
            .map_err(|_| anyhow!("internal error: no alert limit map `{map}`"))?;
        pol_runtime::sys::map_update(fd, &0u32.to_le_bytes(), &args.alert_rate.to_le_bytes(), 0)
            .map_err(|e| anyhow!("cannot set the alert rate: {e}"))?;
    }
    fill_sets(&bpf, &rules)?;
    let attached = attach_tracing(&bpf, &layout)?;
    // The process table's programs are attached: seed it with the processes already
    // running (an entry their exec or fork wrote meanwhile is newer and kept).
    if let Some(map) = &rules.procs {
        let fd = bpf
            .map_fd(map)
            .map_err(|_| anyhow!("internal error: no process table `{map}`"))?;
        for (pid, path) in security::running_programs() {
            // BPF_NOEXIST: fails, as it should, for an entry already there.
            let _ = pol_runtime::sys::map_update(fd, &pid.to_le_bytes(), &path, 1);
        }
    }
    let cgroup_links = match &cgroup {
        Some((path, fd)) => {
            let progs: Vec<(String, String)> = rules
                .cgroup
                .iter()
                .map(|c| (c.program.clone(), c.attach.clone()))
                .collect();
            let links = security::cgroup::attach(&bpf, &progs, fd.as_fd(), path)?;
            say!(
                "connect and bind rules attached to cgroup {}",
                path.display()
            );
            links
        }
        None => Vec::new(),
    };
    let pins = rules
        .mode
        .as_ref()
        .and_then(|map| pin_mode(&bpf, map, file, args.audit));
    say!(
        "attached {} rule{} in {:.1} ms; Ctrl-C to stop",
        rules.rules.len(),
        if rules.rules.len() == 1 { "" } else { "s" },
        t0.elapsed().as_secs_f64() * 1000.0
    );
    let Some(ev) = &layout.events else {
        bail!("internal error: rules without a ring buffer");
    };
    let mut ring = EventRing::open(&bpf, &ev.ring, &ev.lost)?;
    watch.watch(&ring)?;
    let rate_map = rules
        .rate
        .as_ref()
        .and_then(|m| bpf.map_fd(m).ok())
        .and_then(|fd| fd.try_clone_to_owned().ok());
    let mut printer = Printer {
        sink,
        file: name.clone(),
        json: args.json,
        header: false,
        lost: 0,
        suppressed: vec![0; rules.rules.len()],
        limit: args.alert_rate,
    };
    // Lost alerts are looked for once a second.
    let mut next_lost_check = Instant::now() + Duration::from_secs(1);
    while watch.wait(Some(next_lost_check))? {
        if !printer.drain(&mut ring, &rules) {
            break; // stdout is gone: nobody reads what we print
        }
        if Instant::now() >= next_lost_check {
            printer.report_lost(&mut ring, false);
            if let Some(m) = &rate_map {
                printer.report_suppressed(m, &rules);
            }
            next_lost_check = Instant::now() + Duration::from_secs(1);
        }
    }
    printer.drain(&mut ring, &rules);
    printer.report_lost(&mut ring, true);
    if let Some(m) = &rate_map {
        printer.report_suppressed(m, &rules);
    }
    drop(cgroup_links);
    drop(attached);
    drop(pins);
    drop(bpf);
    Ok(true)
}

/// Writes every set map's entries (before anything is attached: no event sees a set
/// half-filled).
pub(crate) fn fill_sets(bpf: &ProbeObject, rules: &RulesLayout) -> Result<()> {
    for m in &rules.sets {
        let fd = bpf
            .map_fd(&m.map)
            .map_err(|_| anyhow!("internal error: no set map `{}`", m.map))?;
        for (k, v) in m.encoded().map_err(|e| anyhow!("internal error: {e}"))? {
            pol_runtime::sys::map_update(fd, &k, &v, 0)
                .map_err(|e| anyhow!("cannot fill the `{}` list map {}: {e}", m.field, m.map))?;
        }
    }
    Ok(())
}

/// Writes slot `slot` of the audit/enforce switch of a loaded rule set (0: the file's
/// mode; a rule's index + 1: its own).
fn set_mode(bpf: &ProbeObject, map: &str, slot: u32, mode: u64) -> Result<()> {
    let fd = bpf
        .map_fd(map)
        .map_err(|_| anyhow!("internal error: no mode map `{map}`"))?;
    pol_runtime::sys::map_update(fd, &slot.to_le_bytes(), &mode.to_le_bytes(), 0)
        .map_err(|e| anyhow!("cannot set the rules' mode: {e}"))
}

/// Pins the mode map under the host's bpffs (`pol/<stem>-<pid>/`, as `pol run` pins set
/// maps) so `pol mode` can switch this run. Not being able to is a warning.
fn pin_mode(
    bpf: &ProbeObject,
    map: &str,
    file: &std::path::Path,
    audit: bool,
) -> Option<sets::Pins> {
    let root = match pinroot::pin_root() {
        Ok(r) => r,
        Err(e) => {
            say!("warning: {e}; the rules run, but `pol mode` cannot switch them");
            return None;
        }
    };
    let dir = root.path().join(sets::PIN_DIR);
    for note in sets::sweep_stale(&dir) {
        say!("note: {note}");
    }
    let fd = bpf.map_fd(map).ok()?;
    match sets::Pins::create(&dir, &sets::stem_of(file), &[(map.to_string(), fd)]) {
        Ok(p) => {
            say!(
                "mode: {} (switch with `pol mode {} {}`)",
                if audit { "audit" } else { "enforce" },
                file.display(),
                if audit { "enforce" } else { "audit" }
            );
            p
        }
        Err(e) => {
            say!("warning: {e}; the rules run, but `pol mode` cannot switch them");
            None
        }
    }
}

/// `pol mode FILE [audit|enforce] [--pid PID]`.
#[derive(clap::Args)]
pub struct ModeArgs {
    /// The rule file a `pol run` is running.
    file: PathBuf,
    /// The mode to switch to; without it, the current mode is printed.
    #[arg(value_enum)]
    mode: Option<ModeArg>,
    /// The `pol run` to switch, when several run the file.
    #[arg(long)]
    pid: Option<u32>,
    /// Show or switch this rule only (its own mode outlasts the file's switches);
    /// `follow` puts it back under the file's mode.
    #[arg(long, value_name = "NAME")]
    rule: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ModeArg {
    /// Rules that kill or deny only alert (flagged with what they would have done).
    Audit,
    /// Rules kill and deny.
    Enforce,
    /// With `--rule`: the rule acts as the file's mode says.
    Follow,
}

/// Shows or switches the audit/enforce mode of a running `pol run` of rules, through the
/// mode map it pinned: the rules read it on every event, so nothing is reloaded.
pub fn mode(args: ModeArgs) -> Result<bool> {
    let root = pinroot::pin_root().map_err(|e| anyhow!("{e}"))?;
    let dir = root.path().join(sets::PIN_DIR);
    let name = args.file.display().to_string();
    let run = sets::find_run(&dir, &name, &sets::stem_of(&args.file), args.pid)
        .map_err(|e| anyhow!("{e}"))?;
    let pin = run.join(pol_compiler::rule::lower::MODE_MAP);
    let fd = pol_runtime::sys::pin::obj_get(&pin).map_err(|e| {
        anyhow!(
            "the `pol run` of {name} has no audit/enforce switch ({}: {e}): none of its rules kills or denies",
            root.show(&pin)
        )
    })?;
    // A rule's slot is its index + 1, in the order of the file's rules.
    let slot = match &args.rule {
        None => 0u32,
        Some(rule) => {
            let src = std::fs::read_to_string(&args.file)
                .with_context(|| format!("cannot read {name}"))?;
            let (_, hir, _) = driver::front(&src);
            let names: Vec<String> = hir
                .map(|h| h.security.rules.iter().map(|r| r.name.clone()).collect())
                .unwrap_or_default();
            let i = names.iter().position(|n| n == rule).ok_or_else(|| {
                anyhow!(
                    "{name} has no rule `{rule}` (its rules: {})",
                    names.join(", ")
                )
            })?;
            i as u32 + 1
        }
    };
    if args.rule.is_none() && args.mode == Some(ModeArg::Follow) {
        bail!("`follow` is for one rule: `pol mode {name} follow --rule NAME`");
    }
    let key = slot.to_le_bytes();
    let show = |v: u64| match (slot, v) {
        (_, security::MODE_AUDIT) => "audit",
        (0, _) | (_, security::RULE_ENFORCE) => "enforce",
        _ => "follow",
    };
    match args.mode {
        None => {
            let v = pol_runtime::sys::map_lookup(fd.as_fd(), &key, 8)
                .map_err(|e| anyhow!("cannot read the mode: {e}"))?
                .and_then(|b| b.try_into().ok())
                .map_or(0, u64::from_le_bytes);
            println!("{}", show(v));
        }
        Some(m) => {
            let v = match (m, slot) {
                (ModeArg::Audit, _) => security::MODE_AUDIT,
                (ModeArg::Enforce, 0) => security::MODE_ENFORCE,
                (ModeArg::Enforce, _) => security::RULE_ENFORCE,
                (ModeArg::Follow, _) => security::RULE_FOLLOWS,
            };
            pol_runtime::sys::map_update(fd.as_fd(), &key, &v.to_le_bytes(), 0)
                .map_err(|e| anyhow!("cannot set the mode: {e}"))?;
            match &args.rule {
                Some(r) => say!("{name}: rule {r}: {}", show(v)),
                None => say!("{name}: {}", show(v)),
            }
        }
    }
    Ok(true)
}

/// Where alerts go: stdout, a file (appended), or a collector's Unix stream socket.
struct Sink {
    out: Box<dyn Write>,
    /// What it is, for messages (`stdout`, the file, `unix:PATH`).
    what: String,
    /// Whether alerts are written somewhere other than stdout (then the suppressed
    /// and lost counts go there too, in the same format).
    elsewhere: bool,
}

impl Sink {
    fn open(to: Option<&str>) -> Result<Sink> {
        let Some(to) = to else {
            return Ok(Sink {
                out: Box::new(std::io::stdout()),
                what: "stdout".into(),
                elsewhere: false,
            });
        };
        let out: Box<dyn Write> = match to.strip_prefix("unix:") {
            Some(path) => Box::new(std::os::unix::net::UnixStream::connect(path).with_context(
                || format!("cannot send alerts to {to}: no collector listens on that socket"),
            )?),
            None => Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(to)
                    .with_context(|| format!("cannot write alerts to {to}"))?,
            ),
        };
        Ok(Sink {
            out,
            what: to.to_string(),
            elsewhere: true,
        })
    }
}

struct Printer {
    sink: Sink,
    file: String,
    json: bool,
    header: bool,
    lost: u64,
    /// Alerts suppressed by the rate limit so far, per rule (as last reported).
    suppressed: Vec<u64>,
    limit: u64,
}

impl Printer {
    /// Prints every alert waiting in the ring buffer; false once stdout is gone.
    fn drain(&mut self, ring: &mut EventRing, rules: &RulesLayout) -> bool {
        let mut out = String::new();
        ring.drain(|item| {
            let Some(a) = security::decode(rules, item) else {
                return;
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
        });
        self.write(&out)
    }

    /// Writes to the sink; false once stdout is gone. A file or collector that fails
    /// is said once on stderr and replaced by stdout: the rules keep enforcing, and
    /// their alerts are not lost.
    fn write(&mut self, text: &str) -> bool {
        if text.is_empty() {
            return true;
        }
        let out = &mut self.sink.out;
        let e = match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
            Ok(()) => return true,
            Err(_) if !self.sink.elsewhere => return false,
            Err(e) => e,
        };
        say!(
            "cannot write alerts to {} any more ({e}): writing them to stdout",
            self.sink.what
        );
        self.sink = Sink {
            out: Box::new(std::io::stdout()),
            what: "stdout".into(),
            elsewhere: false,
        };
        self.write(text)
    }

    /// Says, for each rule whose count grew, how many of its alerts the rate limit
    /// suppressed (in total): a line on stderr, or `{"type":"suppressed"}` with `--json`.
    fn report_suppressed(&mut self, map: &std::os::fd::OwnedFd, rules: &RulesLayout) {
        let fd = map.as_fd();
        let Ok(len) =
            pol_runtime::sys::map_info(fd).and_then(|i| pol_runtime::sys::value_buf_len(&i))
        else {
            return;
        };
        for (i, rule) in rules.rules.iter().enumerate() {
            let key = (i as u32).to_le_bytes();
            let Ok(Some(v)) = pol_runtime::sys::map_lookup(fd, &key, len) else {
                continue;
            };
            // One 16-byte value per CPU (per-CPU values are 8-byte aligned): the
            // suppressed count is the second word.
            let total = v
                .chunks(16)
                .filter_map(|c| c.get(8..16))
                .map(|w| u64::from_le_bytes(w.try_into().unwrap_or([0; 8])))
                .fold(0u64, u64::wrapping_add);
            let Some(last) = self.suppressed.get_mut(i) else {
                continue;
            };
            if total > *last {
                *last = total;
                let line = if self.json {
                    serde_json::json!({"type": "suppressed", "rule": rule.name, "count": total, "limit": self.limit}).to_string()
                } else {
                    format!(
                        "{}: {total} alert{} suppressed (more than {} a second per CPU)",
                        rule.name,
                        if total == 1 { "" } else { "s" },
                        self.limit
                    )
                };
                if self.json || self.sink.elsewhere {
                    let line = line + "\n";
                    self.write(&line);
                } else {
                    say!("{line}");
                }
            }
        }
    }

    /// Says how many alerts the full ring buffer dropped, when that grew (never silently).
    fn report_lost(&mut self, ring: &mut EventRing, at_end: bool) {
        if let Some(total) = ring.lost_grew() {
            self.lost = total;
        } else if !(at_end && self.lost > 0) {
            return;
        }
        let total = self.lost;
        let text = format!(
            "{total} alert{} lost: the ring buffer was full",
            if total == 1 { "" } else { "s" }
        );
        say!("{text}");
        if at_end && self.json {
            let line = format!("{}\n", serde_json::json!({"type": "lost", "count": total}));
            self.write(&line);
        } else if self.sink.elsewhere && !self.json {
            self.write(&(text + "\n"));
        }
    }
}

/// Attaches every tracepoint rule program (all or nothing).
fn attach_tracing(bpf: &ProbeObject, layout: &TraceLayout) -> Result<Vec<Attached>> {
    attach::attach_all(bpf, &attach::plan(layout, None)).map_err(|e| anyhow!("{e}"))
}
