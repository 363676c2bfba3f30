//! `pol agent --policies DIR`: keeps the policies of a directory loaded (what a Kubernetes
//! ConfigMap mount gives: `*.pol` files, and the lists their `file(..)` sets read).
//!
//! It watches the directory (inotify, through the `notify` crate) and also looks at it
//! every `--interval` (a fallback, and what catches a watch that failed); when anything in
//! it changed, each `.pol` whose source or `file(..)` lists changed is loaded (`pol load`,
//! named PREFIX + the file's stem), which replaces a loaded version in place; the others
//! are left alone, so one changed file does not replace every policy. A file that fails (it does not compile, the
//! kernel refuses it) leaves the loaded version filtering: the failure is logged, counted
//! (`pol_agent_updates_total{result="failed"}`), and written to the policy's record, where
//! `pol status` shows it; the agent keeps running. A `.pol` file removed from the
//! directory is unloaded, also when it was removed while no agent ran: at start, the
//! agent takes over the loaded policies it would have loaded from this directory (their
//! record's file is in it and their name is PREFIX + its stem), and replaces only those
//! whose files differ from what was loaded. Stopping the agent leaves its policies loaded:
//! a restarted agent (a new pod) takes them over without a gap and without a reload.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, UNIX_EPOCH};

use anyhow::{anyhow, bail, Result};
use pol_runtime::metrics;
use pol_runtime::policies;

use crate::policy_cmd::{self, LoadArgs};

#[derive(clap::Args, Debug)]
pub struct AgentArgs {
    /// The directory of `.pol` files to keep loaded.
    #[arg(long, value_name = "DIR")]
    policies: PathBuf,
    /// Seconds between looks at the directory when no change was notified.
    #[arg(long, default_value_t = 1.0, value_name = "SECS")]
    interval: f64,
    /// Prefix of the policy names (several agents on one host, as in tests).
    #[arg(long, default_value = "")]
    prefix: String,
    /// Attach every filter to this interface instead of the one named in its file.
    #[arg(long, value_name = "IF")]
    iface: Option<String>,
    /// Serve the policies' and the agent's metrics at http://ADDR/metrics.
    #[arg(long, value_name = "ADDR")]
    metrics: Option<String>,
}

/// What the agent knows of one policy.
#[derive(Debug, Default, Clone)]
struct Tracked {
    /// Fingerprint of the inputs of the last attempt (successful or not).
    tried: u64,
    /// The `file(..)` lists the loaded version read, by the name its source gives.
    lists: Vec<String>,
    ok: bool,
    updates_ok: u64,
    updates_failed: u64,
}

/// Fingerprint of the directory's listing: names, sizes and modification times, following
/// symbolic links (a ConfigMap update swaps the `..data` link).
fn listing(dir: &Path) -> Result<u64> {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| anyhow!("cannot read the policy directory {}: {e}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .collect();
    entries.sort();
    for p in entries {
        let Ok(m) = std::fs::metadata(&p) else {
            continue;
        };
        p.hash(&mut h);
        m.len().hash(&mut h);
        m.modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .hash(&mut h);
    }
    Ok(h.finish())
}

/// The `.pol` files of the directory, by policy name.
fn pol_files(dir: &Path, prefix: &str) -> BTreeMap<String, PathBuf> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        // Kubernetes keeps the real files in hidden `..2024_...` directories.
        let hidden = e.file_name().to_string_lossy().starts_with('.');
        if !hidden && p.extension().is_some_and(|x| x == "pol") && p.is_file() {
            out.insert(format!("{prefix}{}", policies::name_of(&p)), p);
        }
    }
    out
}

/// Fingerprint of what a load reads: the source and the `file(..)` lists it names
/// (`lists`, as the loaded version read them; a new list comes with a source change).
fn fingerprint<'a>(source: &str, lists: impl Iterator<Item = (&'a str, Option<&'a str>)>) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    source.hash(&mut h);
    for (name, text) in lists {
        name.hash(&mut h);
        text.hash(&mut h);
    }
    h.finish()
}

/// [`fingerprint`] of a `.pol` file and its lists as they are on disk now.
fn fingerprint_on_disk(file: &Path, lists: &[String]) -> u64 {
    let source = std::fs::read_to_string(file).unwrap_or_default();
    let dir = file.parent().unwrap_or(Path::new("."));
    let texts: Vec<Option<String>> = lists
        .iter()
        .map(|n| crate::set_files::read(&dir.join(n)).ok())
        .collect();
    fingerprint(
        &source,
        lists
            .iter()
            .map(String::as_str)
            .zip(texts.iter().map(Option::as_deref)),
    )
}

/// The lists a loaded policy read and the [`fingerprint`] of what was loaded, from its
/// record (not the disk, which may have changed again meanwhile).
fn loaded(name: &str) -> Option<(Vec<String>, u64)> {
    let (_root, store) = policy_cmd::store().ok()?;
    let r = store.record(name).ok().flatten()?;
    Some(loaded_of(&r))
}

fn loaded_of(r: &policies::PolicyRecord) -> (Vec<String>, u64) {
    let fp = fingerprint(
        &r.source,
        r.files.iter().map(|(n, t)| (n.as_str(), Some(t.as_str()))),
    );
    (r.files.keys().cloned().collect(), fp)
}

pub fn run(args: AgentArgs) -> Result<bool> {
    if !(args.interval.is_finite() && args.interval >= 0.05) {
        bail!("--interval must be at least 0.05 seconds");
    }
    if !args.prefix.is_empty() {
        policies::check_name(&args.prefix).map_err(|e| anyhow!("--prefix: {e}"))?;
    }
    crate::run::check_privileges()?;
    let stop = Arc::new(AtomicBool::new(false));
    use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM};
    for sig in [SIGINT, SIGTERM, SIGHUP, SIGQUIT] {
        signal_hook::flag::register(sig, Arc::clone(&stop))?;
    }
    let tracked: Arc<Mutex<BTreeMap<String, Tracked>>> = Arc::default();
    let _server = match &args.metrics {
        Some(addr) => {
            let (root, store) = policy_cmd::store()?;
            let t = Arc::clone(&tracked);
            let s = metrics::Server::start(addr, move || {
                let _keep = &root;
                let start = Instant::now();
                let names: Vec<String> = t
                    .lock()
                    .map(|m| m.keys().cloned().collect())
                    .unwrap_or_default();
                let readings: Vec<_> = names
                    .iter()
                    .filter_map(|n| store.record(n).ok().flatten())
                    .map(|r| policy_cmd::policy_reading(&store, &r))
                    .collect();
                let mut body = metrics::render(&readings, start.elapsed());
                body.push_str(&agent_metrics(
                    &t.lock().map(|m| m.clone()).unwrap_or_default(),
                ));
                body
            })
            .map_err(|e| anyhow!("cannot serve metrics on {addr}: {e}"))?;
            eprintln!("agent: serving metrics on http://{}/metrics", s.addr());
            Some(s)
        }
        None => None,
    };
    // Changes wake the loop at once; the interval is the fallback.
    let (tx, changed) = std::sync::mpsc::channel::<()>();
    let watcher = notify::recommended_watcher(move |_: notify::Result<notify::Event>| {
        let _ = tx.send(());
    })
    .and_then(|mut w| {
        use notify::Watcher;
        w.watch(&args.policies, notify::RecursiveMode::NonRecursive)
            .map(|()| w)
    });
    let how = match &watcher {
        Ok(_) => format!("watching it, and looking every {} s", args.interval),
        Err(e) => format!("looking every {} s (cannot watch it: {e})", args.interval),
    };
    eprintln!(
        "agent: keeping the policies of {} loaded ({how})",
        args.policies.display()
    );
    adopt(&args, &tracked);
    let mut last_listing = None;
    while !stop.load(Ordering::Relaxed) {
        match listing(&args.policies) {
            Ok(l) if Some(l) != last_listing => {
                last_listing = Some(l);
                sync(&args, &tracked);
            }
            Ok(_) => {}
            Err(e) => eprintln!("agent: {e}; trying again"),
        }
        let until = Instant::now() + Duration::from_secs_f64(args.interval);
        while Instant::now() < until && !stop.load(Ordering::Relaxed) {
            if changed.recv_timeout(Duration::from_millis(20)).is_ok() {
                // One update is several events (a ConfigMap swaps a link): let it settle.
                std::thread::sleep(Duration::from_millis(20));
                while changed.try_recv().is_ok() {}
                break;
            }
        }
    }
    drop(watcher);
    eprintln!("agent: stopped; its policies stay loaded (`pol status`, `pol unload`)");
    Ok(true)
}

/// Tracks the loaded policies this agent would have loaded from its directory (record's
/// file in it, name = prefix + the file's stem), so that the first [`sync`] unloads those
/// whose file was removed while no agent ran.
fn adopt(args: &AgentArgs, tracked: &Mutex<BTreeMap<String, Tracked>>) {
    let Ok((_root, store)) = policy_cmd::store() else {
        return;
    };
    let dir = std::fs::canonicalize(&args.policies).unwrap_or_else(|_| args.policies.clone());
    let mut state = tracked.lock().map(|m| m.clone()).unwrap_or_default();
    for name in store.names() {
        let Ok(Some(r)) = store.record(&name) else {
            continue;
        };
        let file = Path::new(&r.file);
        let ours =
            file.starts_with(&dir) && name == format!("{}{}", args.prefix, policies::name_of(file));
        if ours {
            // Up to date when the files are what was loaded (and on the interface asked
            // for): the first sync then leaves it alone.
            let on_iface = args
                .iface
                .as_ref()
                .is_none_or(|i| r.programs.iter().all(|p| &p.iface == i));
            let (lists, loaded) = loaded_of(&r);
            let t = state.entry(name).or_default();
            if on_iface && loaded == fingerprint_on_disk(file, &lists) {
                t.tried = loaded;
                t.ok = true;
            }
            t.lists = lists;
        }
    }
    if let Ok(mut m) = tracked.lock() {
        *m = state;
    }
}

/// Loads what changed, unloads what is gone.
fn sync(args: &AgentArgs, tracked: &Mutex<BTreeMap<String, Tracked>>) {
    let files = pol_files(&args.policies, &args.prefix);
    let mut state = tracked.lock().map(|m| m.clone()).unwrap_or_default();
    for (name, file) in &files {
        let t = state.entry(name.clone()).or_default();
        let fp = fingerprint_on_disk(file, &t.lists);
        // A failed file is tried again on any change of the directory (what it lacked, a
        // list say, may have arrived); a loaded one only when its own inputs changed.
        if t.ok && t.tried == fp {
            continue;
        }
        t.tried = fp;
        let started = Instant::now();
        let load = LoadArgs {
            file: file.clone(),
            name: Some(name.clone()),
            iface: args.iface.clone(),
            xdp_generic: false,
            no_carry: false,
            reset_sets: false,
        };
        let outcome = match policy_cmd::load(load) {
            Ok(true) => Ok(()),
            Ok(false) => Err(format!(
                "{} does not compile (errors above)",
                file.display()
            )),
            Err(e) => Err(format!("{e:#}")),
        };
        match outcome {
            Ok(()) => {
                t.ok = true;
                t.updates_ok += 1;
                if let Some((lists, fp)) = loaded(name) {
                    t.lists = lists;
                    t.tried = fp;
                }
                eprintln!(
                    "agent: {name} is up to date with {} ({:.1} ms)",
                    file.display(),
                    started.elapsed().as_secs_f64() * 1000.0
                );
            }
            Err(why) => {
                t.ok = false;
                t.updates_failed += 1;
                eprintln!("agent: {name}: update FAILED, the loaded version (if any) stays: {why}");
                record_failure(name, &why);
            }
        }
    }
    // Policies of this agent whose file is gone.
    let gone: BTreeSet<String> = state
        .keys()
        .filter(|n| !files.contains_key(*n))
        .cloned()
        .collect();
    for name in gone {
        match policy_cmd::unload(&name) {
            Ok(_) => eprintln!("agent: {name}: its file is gone; unloaded"),
            Err(e) => eprintln!("agent: {name}: its file is gone; {e:#}"),
        }
        state.remove(&name);
    }
    if let Ok(mut m) = tracked.lock() {
        *m = state;
    }
}

/// Writes why an update failed into the loaded policy's record, for `pol status`.
fn record_failure(name: &str, why: &str) {
    let Ok((_root, store)) = policy_cmd::store() else {
        return;
    };
    let Ok(_lock) = policy_cmd::lock(&store, name) else {
        return;
    };
    if let Ok(Some(mut r)) = store.record(name) {
        r.last_error = Some(why.to_string());
        let _ = store.write_record(&r);
    }
}

/// The agent's own series: updates by result, and whether each policy is up to date.
fn agent_metrics(state: &BTreeMap<String, Tracked>) -> String {
    let mut out = String::from(
        "# HELP pol_agent_updates_total Attempts to load a changed policy file, by result.\n\
         # TYPE pol_agent_updates_total counter\n",
    );
    for (n, t) in state {
        out.push_str(&format!(
            "pol_agent_updates_total{{policy=\"{n}\",result=\"ok\"}} {}\n\
             pol_agent_updates_total{{policy=\"{n}\",result=\"failed\"}} {}\n",
            t.updates_ok, t.updates_failed
        ));
    }
    out.push_str(
        "# HELP pol_agent_policy_current 1 when the policy's file is what is loaded, 0 after a failed update.\n\
         # TYPE pol_agent_policy_current gauge\n",
    );
    for (n, t) in state {
        out.push_str(&format!(
            "pol_agent_policy_current{{policy=\"{n}\"}} {}\n",
            u8::from(t.ok)
        ));
    }
    out
}
