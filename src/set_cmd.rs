//! `pol set add|del|list TARGET SET [VALUE...]`: change the contents of a named set in
//! place, through the pinned maps under /sys/fs/bpf/pol, of a running `pol run` of a file
//! or of a loaded policy (TARGET is the `.pol` file, or the policy's name).
//!
//! The file (a policy: the source its record kept) is compiled again to learn the set's
//! type and maps; values are encoded as the compiler encodes them (`pol_runtime::sets`).
//! Changes go to stdout, one line per value; the set's size and room left to stderr. A
//! policy's record notes each change, so that replacing the policy replays it.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Result};
use pol_runtime::policies::{self, PolicyLock, Store};
use pol_runtime::sets::{self, Change, LiveSet, SetError};

#[derive(clap::Subcommand, Debug)]
pub enum SetOp {
    /// Add values to a set while the filter runs.
    Add {
        /// The `.pol` file of a running `pol run`, or the name of a loaded policy.
        #[arg(value_name = "FILE|POLICY")]
        file: PathBuf,
        set: String,
        #[arg(required = true, value_name = "VALUE")]
        values: Vec<String>,
        /// The `pol run` to change, when several of this file run.
        #[arg(long)]
        pid: Option<u32>,
    },
    /// Delete values from a set while the filter runs.
    Del {
        /// The `.pol` file of a running `pol run`, or the name of a loaded policy.
        #[arg(value_name = "FILE|POLICY")]
        file: PathBuf,
        set: String,
        #[arg(required = true, value_name = "VALUE")]
        values: Vec<String>,
        #[arg(long)]
        pid: Option<u32>,
    },
    /// Print what a set holds now, one value per line.
    List {
        /// The `.pol` file of a running `pol run`, or the name of a loaded policy.
        #[arg(value_name = "FILE|POLICY")]
        file: PathBuf,
        set: String,
        #[arg(long)]
        pid: Option<u32>,
    },
}

pub fn run(op: SetOp) -> Result<bool> {
    match op {
        SetOp::Add {
            file,
            set,
            values,
            pid,
        } => change(&file, &set, &values, pid, true),
        SetOp::Del {
            file,
            set,
            values,
            pid,
        } => change(&file, &set, &values, pid, false),
        SetOp::List { file, set, pid } => list(&file, &set, pid),
    }
}

/// A set opened for a change, and where it lives.
struct Opened {
    live: LiveSet,
    /// A loaded policy: its store, name and operation lock (held while the change and its
    /// note in the record are made).
    policy: Option<(Store, String, PolicyLock)>,
}

/// Finds the set and what runs it: the `pol run` of the file (with `--pid`, or the only
/// one), else the policy loaded from that file or of that name; opens the set's maps.
fn open(target: &Path, set: &str, pid: Option<u32>) -> Result<Option<Opened>> {
    let (_root, store) = crate::policy_cmd::store()?;
    if !target.exists() {
        let name = target.display().to_string();
        if policies::check_name(&name).is_ok() && store.record(&name).ok().flatten().is_some() {
            return open_policy(store, &name, set).map(Some);
        }
        bail!(
            "`{name}` is neither a .pol file nor a loaded policy (`pol status` lists the loaded policies)"
        );
    }
    let Some(c) = crate::compile(target)? else {
        return Ok(None);
    };
    let name = target.display().to_string();
    let maps = sets::lookup(&c, &name, set).map_err(sentence)?;
    // The host's bpffs even under `ip netns exec`, where `pol run` pinned too.
    let pin_root = pol_runtime::pinroot::pin_root().map_err(|e| anyhow!("{e}"))?;
    let root = pin_root.path().join(sets::PIN_DIR);
    match sets::find_run(&root, &name, &sets::stem_of(target), pid) {
        Ok(dir) => Ok(Some(Opened {
            live: LiveSet::open(&dir, maps).map_err(sentence)?,
            policy: None,
        })),
        Err(e @ SetError::NotRunning { .. }) if pid.is_none() => {
            // No run of the file: a policy loaded from it.
            let canonical = std::fs::canonicalize(target).unwrap_or_else(|_| target.into());
            let from_it: Vec<String> = store
                .names()
                .into_iter()
                .filter(|n| {
                    store
                        .record(n)
                        .ok()
                        .flatten()
                        .is_some_and(|r| Path::new(&r.file) == canonical)
                })
                .collect();
            match from_it.as_slice() {
                [one] => open_policy(store, one, set).map(Some),
                [] => bail!("{e}; nor is a policy loaded from it (`pol load {name}`)"),
                many => bail!(
                    "no `pol run` of {name} is running, and {} policies were loaded from it ({}): name one instead of the file",
                    many.len(),
                    many.join(", ")
                ),
            }
        }
        Err(e) => Err(sentence(e)),
    }
}

/// Opens set `set` of loaded policy `name` through its pins, compiling the source its
/// record kept (the version that runs, whatever the file says now).
fn open_policy(store: Store, name: &str, set: &str) -> Result<Opened> {
    let lock = crate::policy_cmd::lock(&store, name)?;
    let record = store
        .record(name)
        .map_err(|e| anyhow!("{e}"))?
        .ok_or_else(|| anyhow!("{}", policies::PolicyError::NotLoaded(name.to_string())))?;
    let Some(c) = crate::policy_cmd::compile_record(&record) else {
        bail!("policy `{name}`: the source its record kept no longer compiles with this pol; load it again");
    };
    let maps = sets::lookup(&c, &format!("policy `{name}`"), set).map_err(sentence)?;
    let dir = store.dir(name);
    let live = LiveSet::open_with(maps, |m| dir.join(format!("map_{m}"))).map_err(sentence)?;
    Ok(Opened {
        live,
        policy: Some((store, name.to_string(), lock)),
    })
}

/// Notes the changes made to a loaded policy's set in its record, for replacements.
fn note_changes(opened: &Opened, set: &str, changes: &[Change]) -> Result<()> {
    let Some((store, name, _lock)) = &opened.policy else {
        return Ok(());
    };
    let mut record = store
        .record(name)
        .map_err(|e| anyhow!("{e}"))?
        .ok_or_else(|| anyhow!("{}", policies::PolicyError::NotLoaded(name.clone())))?;
    let edits = record.set_edits.entry(set.to_string()).or_default();
    for ch in changes {
        match ch {
            Change::Added(v) | Change::AlreadyThere(v) => edits.note(v, true),
            Change::Deleted(v) | Change::NotThere(v) => edits.note(v, false),
        }
    }
    store.write_record(&record).map_err(|e| anyhow!("{e}"))
}

fn sentence(e: SetError) -> anyhow::Error {
    anyhow::anyhow!("{e}")
}

fn change(file: &Path, set: &str, values: &[String], pid: Option<u32>, add: bool) -> Result<bool> {
    let Some(opened) = open(file, set, pid)? else {
        return Ok(false);
    };
    let live = &opened.live;
    let mut parsed = Vec::new();
    for v in values {
        match sets::parse_value(v, live.maps.elem) {
            Ok(x) => parsed.push(x),
            Err(why) => bail!(SetError::BadValue {
                value: v.clone(),
                set: set.to_string(),
                elem: live.maps.elem,
                why,
            }
            .to_string()),
        }
    }
    let changes = if add {
        live.add(&parsed)
    } else {
        live.delete(&parsed)
    }
    .map_err(sentence)?;
    note_changes(&opened, set, &changes)?;
    for ch in &changes {
        match ch {
            Change::Added(v) => println!("added {v} to {set}"),
            Change::AlreadyThere(v) => println!("{v} was already in {set}"),
            Change::Deleted(v) => println!("deleted {v} from {set}"),
            Change::NotThere(v) => println!("{v} was not in {set}"),
        }
    }
    summary(live)?;
    Ok(true)
}

fn list(file: &Path, set: &str, pid: Option<u32>) -> Result<bool> {
    let Some(opened) = open(file, set, pid)? else {
        return Ok(false);
    };
    let live = &opened.live;
    for v in live.list().map_err(sentence)? {
        println!("{}", sets::show_in(&v, live.maps.elem));
    }
    summary(live)?;
    if live.maps.ranges > 0 {
        eprintln!(
            "note: set `{set}` also has {} range{} in the file, compiled into the code (not listed)",
            live.maps.ranges,
            if live.maps.ranges == 1 { "" } else { "s" }
        );
    }
    Ok(true)
}

/// `set blocked: 12 entries (blocked_v4 10 of 74, blocked_v6 2 of 66)` on stderr.
fn summary(live: &LiveSet) -> Result<()> {
    let usage = live.usage().map_err(sentence)?;
    let parts: Vec<String> = usage
        .iter()
        .map(|(m, n, max)| format!("{m} {n} of {max}"))
        .collect();
    let total: usize = match live.maps.elem.is_int() {
        // An integer set has the same values in each of its maps.
        true => usage.iter().map(|(_, n, _)| *n).max().unwrap_or(0),
        false => usage.iter().map(|(_, n, _)| *n).sum(),
    };
    eprintln!(
        "set {}: {total} entr{} ({})",
        live.maps.set,
        if total == 1 { "y" } else { "ies" },
        parts.join(", ")
    );
    Ok(())
}
