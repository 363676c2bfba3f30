//! `pol load FILE [--name NAME]`, `pol unload NAME`, `pol status [NAME] [--json]`: policies
//! loaded for good (`pol_runtime::policies`), pinned in the host's bpffs whatever mount
//! namespace the command runs in, replaced in place by loading the same name again.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{anyhow, bail, Result};
use pol_compiler::driver::{self, Compiled};
use pol_runtime::attach::{self, AttachOptions, TcMode, XdpMode};
use pol_runtime::direct::Object;
use pol_runtime::live::Snapshot;
use pol_runtime::metrics::{self, PolicyReading, ProgramLabel};
use pol_runtime::pinroot;
use pol_runtime::policies::{self, Pinned, PolicyProgram, PolicyRecord, Store};
use serde_json::json;

#[derive(clap::Args, Debug)]
pub struct LoadArgs {
    pub file: PathBuf,
    /// The policy's name (letters, digits, `_`); defaults to the file's stem.
    #[arg(long)]
    pub name: Option<String>,
    /// Attach every filter to this interface instead of the one named in the file.
    #[arg(long, value_name = "IF")]
    pub iface: Option<String>,
    /// Attach XDP filters in generic (skb) mode instead of native-then-generic.
    #[arg(long)]
    pub xdp_generic: bool,
    /// When replacing: start counters and statistics from zero instead of carrying them.
    #[arg(long)]
    pub no_carry: bool,
    /// When replacing: drop what `pol set` added to or deleted from the sets since the
    /// policy was loaded (by default it is replayed on the new version).
    #[arg(long)]
    pub reset_sets: bool,
}

#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    /// Only this policy.
    name: Option<String>,
    /// One JSON object on stdout: `{"policies": [...]}`.
    #[arg(long)]
    json: bool,
    /// Keep running and serve every loaded policy's metrics at http://ADDR/metrics
    /// (Prometheus text format), until a signal ends it.
    #[arg(long, value_name = "ADDR")]
    metrics: Option<String>,
}

pub fn store() -> Result<(pinroot::PinRoot, Store)> {
    let root = pinroot::pin_root().map_err(|e| anyhow!("{e}"))?;
    if let Some(n) = &root.note {
        eprintln!("note: {n}");
    }
    let store = Store::new(root.path());
    Ok((root, store))
}

pub fn load(args: LoadArgs) -> Result<bool> {
    let t0 = Instant::now();
    let name = args
        .name
        .clone()
        .unwrap_or_else(|| policies::name_of(&args.file));
    policies::check_name(&name).map_err(|e| anyhow!("{e}"))?;
    let Some((c, sources)) = crate::compile_keeping_sources(&args.file)? else {
        return Ok(false);
    };
    crate::run::check_privileges()?;
    let (_root, store) = store()?;
    let _lock = lock(&store, &name)?;
    let opts = AttachOptions {
        iface: args.iface.clone(),
        xdp_mode: if args.xdp_generic {
            XdpMode::Generic
        } else {
            XdpMode::Auto
        },
        tc_mode: TcMode::Auto,
        replace: false,
    };
    if !attach::fds_can_attach(&c.spec, &opts) {
        bail!(
            "pol load keeps filters attached through pinned BPF links: XDP, and tc as TCX \
             links (kernel 6.6+); this file needs something else (probes, or tc on an older \
             kernel): use `pol run`"
        );
    }
    for (p, iface) in attach::targets(&c.spec, &opts) {
        if let Some(iface) = iface {
            if pol_runtime::sys::netlink::ifindex(&iface).is_none() {
                bail!("no interface `{iface}` here (see `ip link`); use --iface to attach filter `{p}` to another one");
            }
        }
    }
    // A loaded version whose interface (or network namespace) is gone filters nothing and
    // cannot be switched: remove it and load afresh.
    if store.record(&name).ok().flatten().is_some() {
        if let Ok(old) = Pinned::open(&store.dir(&name), &name) {
            if policies::severed(&old) {
                eprintln!(
                    "note: the loaded `{name}` lost its interface (the kernel detached it); \
                     removing it and loading afresh"
                );
                drop(old);
                let _ = store.remove(&name);
                pol_runtime::hooks::release_policy(&pol_runtime::hooks::claim_root(), &name);
            }
        }
    }
    // One filter per hook: refuse a hook a `pol run` or another policy holds.
    let mut claims = crate::run::claim_hooks(&args.file, &c, &opts, Some(&name))?;
    let digests: std::collections::BTreeMap<String, u64> = c
        .spec
        .programs
        .iter()
        .map(|p| {
            let d = policies::rule_digest(p.rules.iter().map(|r| r.text.as_str()));
            (p.name.clone(), d)
        })
        .collect();
    // A replacement shares the loaded version's counters, and its per-rule statistics
    // when the rules are the same (slot i is rule i): both versions count into one map,
    // so the switch loses no count. Sets come from the new file.
    let (shared, mut notes) = match store.record(&name).ok().flatten() {
        Some(old_rec) if !args.no_carry => {
            let mut carry: Vec<String> = c.hir.counters.iter().map(|k| k.name.clone()).collect();
            for p in &c.spec.programs {
                let same = old_rec.rule_digests.get(&p.name) == digests.get(&p.name);
                if let (true, Some(s)) = (same, &p.stats) {
                    carry.push(s.map.clone());
                }
            }
            match Pinned::open(&store.dir(&name), &name) {
                Ok(old) => policies::shared_maps(&old, &c.spec.maps, &carry),
                Err(_) => (Vec::new(), Vec::new()),
            }
        }
        _ => (Vec::new(), Vec::new()),
    };
    let new = pol_runtime::direct::Direct::load_sharing(&c, &shared)
        .map_err(|e| anyhow!(crate::run::load_error(&c, &e)))?;
    let t_loaded = t0.elapsed();
    let file = std::fs::canonicalize(&args.file)
        .unwrap_or_else(|_| args.file.clone())
        .display()
        .to_string();
    let programs: Vec<PolicyProgram> = attach::targets(&c.spec, &opts)
        .into_iter()
        .filter_map(|(p, iface)| {
            let iface = iface?;
            let ifindex = pol_runtime::sys::netlink::ifindex(&iface)?;
            Some(PolicyProgram {
                name: p,
                iface,
                ifindex,
                how: String::new(),
            })
        })
        .collect();
    let maps = new.map_names();
    match store.record(&name).map_err(|e| anyhow!("{e}"))? {
        None => {
            // Pins without a record: a load that died half-way; start afresh.
            let _ = store.remove(&name);
            let att = attach::attach_all_fds(&new, &c.spec, &opts).map_err(|e| anyhow!("{e}"))?;
            policies::pin_new(&store, &name, &new, &att.link_fds()).map_err(|e| anyhow!("{e}"))?;
            let mut programs = programs;
            for p in &mut programs {
                if let Some(a) = att.attached.iter().find(|a| a.program == p.name) {
                    p.how = a.how.clone();
                }
            }
            let record = PolicyRecord {
                name: name.clone(),
                file,
                source: sources.source,
                files: sources.files,
                programs: programs.clone(),
                maps,
                loaded_at: policies::now(),
                replaced_at: None,
                generation: 0,
                rule_digests: digests,
                last_error: None,
                set_edits: Default::default(),
            };
            if let Err(e) = store.write_record(&record) {
                let _ = store.remove(&name);
                bail!("{e}");
            }
            for cl in &mut claims {
                if let Some(p) = programs.iter().find(|p| p.name == cl.record.program) {
                    let _ = cl.attached(&p.how, false);
                }
            }
            // The pinned links keep the programs attached once `att` closes its fds.
            drop(att);
            for p in &programs {
                eprintln!("attached {} to {} ({})", p.name, p.iface, p.how);
            }
            eprintln!(
                "loaded policy `{name}` in {:.1} ms (load {:.1} ms); pinned under {}; \
                 `pol status {name}` shows it, `pol unload {name}` removes it",
                ms(t0.elapsed()),
                ms(t_loaded),
                _root.show(&store.dir(&name))
            );
        }
        Some(old_rec) => {
            let same_hooks = old_rec.programs.len() == programs.len()
                && old_rec
                    .programs
                    .iter()
                    .zip(&programs)
                    .all(|(o, n)| o.name == n.name && o.ifindex == n.ifindex);
            if !same_hooks {
                bail!(
                    "policy `{name}` is loaded with other filters or interfaces ({}); a \
                     replacement must attach the same filters to the same interfaces: \
                     `pol unload {name}` first",
                    old_rec
                        .programs
                        .iter()
                        .map(|p| format!("{} on {}", p.name, p.iface))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
            let old = Pinned::open(&store.dir(&name), &name).map_err(|e| anyhow!("{e}"))?;
            let carry: Vec<String> = shared.iter().map(|(m, _)| m.clone()).collect();
            // What `pol set` changed is part of the policy, not a counter: replayed before
            // the switch, so a value blocked at run time stays blocked across it.
            let set_edits = if args.reset_sets {
                Default::default()
            } else {
                let (kept, more) = policies::replay_set_edits(&c, &new, &old_rec.set_edits);
                notes.extend(more);
                kept
            };
            let t_switch = Instant::now();
            policies::switch(&old, &new, &name).map_err(|e| anyhow!("{e}"))?;
            let switched = t_switch.elapsed();
            policies::repin(&store, &name, &new).map_err(|e| anyhow!("{e}"))?;
            let mut programs = programs;
            for (p, o) in programs.iter_mut().zip(&old_rec.programs) {
                p.how = o.how.clone();
            }
            let record = PolicyRecord {
                name: name.clone(),
                file,
                source: sources.source,
                files: sources.files,
                programs,
                maps,
                loaded_at: old_rec.loaded_at,
                replaced_at: Some(policies::now()),
                generation: old_rec.generation + 1,
                rule_digests: digests,
                last_error: None,
                set_edits,
            };
            store.write_record(&record).map_err(|e| anyhow!("{e}"))?;
            for n in notes {
                eprintln!("note: {n}");
            }
            eprintln!(
                "replaced policy `{name}` (generation {}) in {:.1} ms (load {:.1} ms, \
                 switch {:.3} ms); counters carried: {}{}",
                record.generation,
                ms(t0.elapsed()),
                ms(t_loaded),
                ms(switched),
                if carry.is_empty() {
                    "none".to_string()
                } else {
                    carry.join(", ")
                },
                replayed(&record.set_edits)
            );
        }
    }
    Ok(true)
}

pub fn unload(name: &str) -> Result<bool> {
    policies::check_name(name).map_err(|e| anyhow!("{e}"))?;
    crate::run::check_privileges()?;
    let (_root, store) = store()?;
    let _lock = lock(&store, name)?;
    let known = store.record(name).map_err(|e| anyhow!("{e}"))?.is_some();
    if !known && !store.dir(name).exists() {
        bail!("{}", policies::PolicyError::NotLoaded(name.to_string()));
    }
    let problems = store.remove(name);
    pol_runtime::hooks::release_policy(&pol_runtime::hooks::claim_root(), name);
    for p in &problems {
        eprintln!("warning: {p}");
    }
    eprintln!("unloaded policy `{name}`");
    Ok(problems.is_empty())
}

/// `; pol set changes replayed: blocked (2 added, 1 deleted)`, or nothing.
fn replayed(edits: &std::collections::BTreeMap<String, policies::SetEdits>) -> String {
    if edits.is_empty() {
        return String::new();
    }
    let each: Vec<String> = edits
        .iter()
        .map(|(set, e)| {
            format!(
                "{set} ({} added, {} deleted)",
                e.added.len(),
                e.deleted.len()
            )
        })
        .collect();
    format!("; `pol set` changes replayed: {}", each.join(", "))
}

/// The operation lock of policy `name`, saying so when another command holds it.
pub fn lock(store: &Store, name: &str) -> Result<policies::PolicyLock> {
    store
        .lock(name, || {
            eprintln!("waiting for another pol command working on policy `{name}`...")
        })
        .map_err(|e| anyhow!("{e}"))
}

/// Compiles a loaded policy's source again, from what its record kept.
pub fn compile_record(r: &PolicyRecord) -> Option<Compiled> {
    let files = |n: &str| {
        r.files
            .get(n)
            .cloned()
            .ok_or_else(|| format!("`{n}` was not kept"))
    };
    let catalog = pol_compiler::catalog::NoCatalog;
    driver::compile_file(&r.file, &r.source, &files, &catalog).ok()
}

pub fn status(args: StatusArgs) -> Result<bool> {
    crate::run::check_privileges()?;
    let (_root, store) = store()?;
    if let Some(addr) = &args.metrics {
        return serve_metrics(store, args.name.clone(), addr);
    }
    let names = match &args.name {
        Some(n) => {
            policies::check_name(n).map_err(|e| anyhow!("{e}"))?;
            vec![n.clone()]
        }
        None => store.names(),
    };
    let mut out = Vec::new();
    for name in names {
        let Some(r) = store.record(&name).map_err(|e| anyhow!("{e}"))? else {
            if args.name.is_none() {
                // Unloaded between the listing and now (an agent, `pol unload`): gone.
                continue;
            }
            bail!("{}", policies::PolicyError::NotLoaded(name));
        };
        // One broken policy does not hide the others: it is listed with its error.
        match policy_status(&store, &r) {
            Ok(v) => out.push(v),
            Err(e) if args.name.is_none() => {
                out.push(json!({"name": r.name, "file": r.file, "error": format!("{e:#}")}))
            }
            Err(e) => return Err(e),
        }
    }
    // A closed stdout (`pol status | head`) ends the output, not in a panic.
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    let _ = if args.json {
        writeln!(stdout, "{}", json!({ "policies": out }))
    } else if out.is_empty() {
        writeln!(stdout, "no policy is loaded (`pol load FILE` loads one)")
    } else {
        out.iter().try_for_each(|p| write!(stdout, "{}", show(p)))
    };
    Ok(true)
}

/// `pol status --metrics ADDR`: serves the loaded policies' metrics, read at each scrape,
/// until INT, TERM, HUP or QUIT.
fn serve_metrics(store: Store, only: Option<String>, addr: &str) -> Result<bool> {
    use std::sync::atomic::{AtomicBool, Ordering};
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM};
    for sig in [SIGINT, SIGTERM, SIGHUP, SIGQUIT] {
        signal_hook::flag::register(sig, std::sync::Arc::clone(&stop))?;
    }
    let server = metrics::Server::start(addr, move || {
        let t = Instant::now();
        let names = match &only {
            Some(n) => vec![n.clone()],
            None => store.names(),
        };
        let readings: Vec<PolicyReading> = names
            .iter()
            .filter_map(|n| store.record(n).ok().flatten())
            .map(|r| policy_reading(&store, &r))
            .collect();
        metrics::render(&readings, t.elapsed())
    })
    .map_err(|e| anyhow!("cannot serve metrics on {addr}: {e}"))?;
    eprintln!("serving metrics on http://{}/metrics", server.addr());
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    Ok(true)
}

/// One loaded policy's metrics reading; `snapshot` is `None` when its pins cannot be read.
pub fn policy_reading(store: &Store, r: &PolicyRecord) -> PolicyReading {
    let mut out = PolicyReading {
        policy: r.name.clone(),
        ..Default::default()
    };
    let Ok(pinned) = Pinned::open(&store.dir(&r.name), &r.name) else {
        return out;
    };
    out.maps = pinned.map_sizes();
    out.programs = r
        .programs
        .iter()
        .map(|p| ProgramLabel {
            filter: p.name.clone(),
            iface: p.iface.clone(),
            attach: p.how.clone(),
            prog_id: pinned.prog_info(&p.name).map_or(0, |i| i.id),
        })
        .collect();
    out.snapshot = compile_record(r).and_then(|c| Snapshot::read(&c, &pinned).ok());
    out
}

/// One policy's state as JSON: record, program ids, map sizes, counters.
fn policy_status(store: &Store, r: &PolicyRecord) -> Result<serde_json::Value> {
    let pinned = Pinned::open(&store.dir(&r.name), &r.name).map_err(|e| anyhow!("{e}"))?;
    let programs: Vec<_> = r
        .programs
        .iter()
        .map(|p| {
            let id = pinned.prog_info(&p.name).map(|i| i.id).ok();
            let attached = pinned.link_fd(&p.name).is_some();
            json!({"name": p.name, "iface": p.iface, "how": p.how, "prog_id": id, "attached": attached})
        })
        .collect();
    let maps: Vec<_> = pinned
        .map_sizes()
        .into_iter()
        .map(|(n, info, used)| {
            json!({"name": n, "max_entries": info.max_entries, "entries": used,
                   "key_size": info.key_size, "value_size": info.value_size})
        })
        .collect();
    let counters = match compile_record(r) {
        Some(c) => Snapshot::read(&c, &pinned)
            .map(|s| s.to_json())
            .unwrap_or_else(|e| json!({ "error": e.to_string() })),
        None => json!({ "error": "the kept source no longer compiles with this pol" }),
    };
    Ok(json!({
        "name": r.name, "file": r.file, "generation": r.generation, "last_error": r.last_error,
        "loaded_at": r.loaded_at, "replaced_at": r.replaced_at,
        "programs": programs, "maps": maps, "counters": counters,
    }))
}

/// A policy's status as text.
fn show(p: &serde_json::Value) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    if let Some(e) = p["error"].as_str() {
        let _ = writeln!(
            s,
            "policy {} (from {}): {e}",
            p["name"].as_str().unwrap_or("?"),
            p["file"].as_str().unwrap_or("?")
        );
        return s;
    }
    let ago = policies::now().saturating_sub(p["loaded_at"].as_u64().unwrap_or(0));
    let _ = writeln!(
        s,
        "policy {} (from {}, loaded {ago} s ago, generation {})",
        p["name"].as_str().unwrap_or("?"),
        p["file"].as_str().unwrap_or("?"),
        p["generation"]
    );
    if let Some(e) = p["last_error"].as_str() {
        let _ = writeln!(s, "  last update FAILED, this version stays: {e}");
    }
    for prog in p["programs"].as_array().into_iter().flatten() {
        let _ = writeln!(
            s,
            "  {} on {} ({}), program id {}{}",
            prog["name"].as_str().unwrap_or("?"),
            prog["iface"].as_str().unwrap_or("?"),
            prog["how"].as_str().unwrap_or("?"),
            prog["prog_id"],
            if prog["attached"].as_bool() == Some(true) {
                ""
            } else {
                " (NOT attached: its link pin is gone)"
            }
        );
    }
    for m in p["maps"].as_array().into_iter().flatten() {
        let _ = writeln!(
            s,
            "  map {}: {} of {} entries",
            m["name"].as_str().unwrap_or("?"),
            m["entries"],
            m["max_entries"]
        );
    }
    for prog in p["counters"]["programs"].as_array().into_iter().flatten() {
        for r in prog["rules"].as_array().into_iter().flatten() {
            let _ = writeln!(
                s,
                "  {:>12}  line {:>3}: {}",
                r["packets"],
                r["line"],
                r["text"].as_str().unwrap_or("")
            );
        }
        let _ = writeln!(s, "  {:>12}  (default)", prog["default"]);
        let _ = writeln!(s, "  {:>12}  (malformed)", prog["malformed"]);
    }
    for c in p["counters"]["counts"].as_array().into_iter().flatten() {
        let _ = writeln!(
            s,
            "  {:>12}  count {}",
            c["total"],
            c["name"].as_str().unwrap_or("?")
        );
    }
    s
}

fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
