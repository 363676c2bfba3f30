//! `pol set add|del|list FILE.pol SET [VALUE...]`: change the contents of a named set of a
//! running `pol run` of FILE.pol in place, through the maps it pins under /sys/fs/bpf/pol.
//!
//! The file is compiled again to learn the set's type and maps; values are encoded as the
//! compiler encodes them (`pol_runtime::sets`). Changes go to stdout, one line per value;
//! the set's size and room left to stderr.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use pol_runtime::sets::{self, Change, LiveSet, SetError};

#[derive(clap::Subcommand, Debug)]
pub enum SetOp {
    /// Add values to a set while the filter runs.
    Add {
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
        file: PathBuf,
        set: String,
        #[arg(required = true, value_name = "VALUE")]
        values: Vec<String>,
        #[arg(long)]
        pid: Option<u32>,
    },
    /// Print what a set holds now, one value per line.
    List {
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

/// Compiles the file, finds the set and the running filter, opens the set's pinned maps.
fn open(file: &Path, set: &str, pid: Option<u32>) -> Result<Option<LiveSet>> {
    let Some(c) = crate::compile(file)? else {
        return Ok(None);
    };
    let name = file.display().to_string();
    let maps = sets::lookup(&c, &name, set).map_err(sentence)?;
    // The host's bpffs even under `ip netns exec`, where `pol run` pinned too.
    let pin_root = pol_runtime::pinroot::pin_root().map_err(|e| anyhow::anyhow!("{e}"))?;
    let root = pin_root.path().join(sets::PIN_DIR);
    let dir = sets::find_run(&root, &name, &sets::stem_of(file), pid).map_err(sentence)?;
    Ok(Some(LiveSet::open(&dir, maps).map_err(sentence)?))
}

fn sentence(e: SetError) -> anyhow::Error {
    anyhow::anyhow!("{e}")
}

fn change(file: &Path, set: &str, values: &[String], pid: Option<u32>, add: bool) -> Result<bool> {
    let Some(live) = open(file, set, pid)? else {
        return Ok(false);
    };
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
    for ch in &changes {
        match ch {
            Change::Added(v) => println!("added {v} to {set}"),
            Change::AlreadyThere(v) => println!("{v} was already in {set}"),
            Change::Deleted(v) => println!("deleted {v} from {set}"),
            Change::NotThere(v) => println!("{v} was not in {set}"),
        }
    }
    summary(&live)?;
    Ok(true)
}

fn list(file: &Path, set: &str, pid: Option<u32>) -> Result<bool> {
    let Some(live) = open(file, set, pid)? else {
        return Ok(false);
    };
    for v in live.list().map_err(sentence)? {
        println!("{}", sets::show(&v));
    }
    summary(&live)?;
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
