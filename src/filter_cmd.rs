//! `pol filter add|del TARGET FILTER ...`: add one rule to, or delete one rule from, the
//! classifier of a running filter without reloading it (issue 11 §4). TARGET is the
//! `.pol` file of a `pol run`, or the name of a loaded policy, as for `pol set`.
//!
//! The file (a policy: the source its record kept) is compiled again to learn the
//! filter's plan; the rule text is checked by the front end inside the filter's own header
//! (so its fields are the hook's); the change goes through the classifier's pinned maps
//! (`pol_compiler::classify::edit`), touching one bucket, its table's descriptor and the
//! stops before it. The program is not replaced: its id stays.

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Result};
use pol_compiler::classify::datapath::Names;
use pol_compiler::classify::edit::{self, Editor, Store};
use pol_compiler::classify::maps::{BUCKET_BYTES, DESC_BYTES, ENTRY_BYTES};
use pol_compiler::classify::tuplemerge::{Config, Key};
use pol_compiler::classify::{self, Rule, PRIO_SHIFT};
use pol_compiler::driver::Compiled;
use pol_compiler::hir;
use pol_compiler::ir::groups::{self, Placement};
use pol_runtime::policies::{self, PolicyLock};
use pol_runtime::{sets, sys};

#[derive(clap::Subcommand, Debug)]
pub enum FilterOp {
    /// Add a rule to a running filter's classifier, without reloading it.
    Add {
        /// The `.pol` file of a running `pol run`, or the name of a loaded policy.
        #[arg(value_name = "FILE|POLICY")]
        target: PathBuf,
        /// The filter (its name in the file).
        filter: String,
        /// The rule, as the file would say it: 'drop ip.src in 10.0.0.0/8 and tcp.dport == 22'.
        rule: String,
        /// Put it right after the rule on this line of the file (default: after the last
        /// rule, before the default).
        #[arg(long, value_name = "LINE")]
        after: Option<u32>,
        /// The `pol run` to change, when several of this file run.
        #[arg(long)]
        pid: Option<u32>,
    },
    /// Delete a rule from a running filter's classifier, without reloading it: the rule on
    /// LINE of the file, or the rule that tests exactly what RULE tests.
    Del {
        #[arg(value_name = "FILE|POLICY")]
        target: PathBuf,
        filter: String,
        #[arg(value_name = "LINE|RULE")]
        what: String,
        #[arg(long)]
        pid: Option<u32>,
    },
}

pub fn run(op: FilterOp) -> Result<bool> {
    match op {
        FilterOp::Add {
            target,
            filter,
            rule,
            after,
            pid,
        } => add(&target, &filter, &rule, after, pid),
        FilterOp::Del {
            target,
            filter,
            what,
            pid,
        } => del(&target, &filter, &what, pid),
    }
}

/// What runs the filter: the compiled file, its source, and where its maps are pinned.
struct Target {
    c: Compiled,
    source: String,
    /// For messages: the file, or `policy NAME`.
    name: String,
    /// The pin of map NAME.
    pins: Box<dyn Fn(&str) -> PathBuf>,
    _lock: Option<PolicyLock>,
}

fn open(target: &Path, pid: Option<u32>) -> Result<Option<Target>> {
    let (_root, store) = crate::policy_cmd::store()?;
    let name = target.display().to_string();
    let policy = |pname: &str| -> Result<Target> {
        let lock = crate::policy_cmd::lock(&store, pname)?;
        let record = store
            .record(pname)
            .map_err(|e| anyhow!("{e}"))?
            .ok_or_else(|| anyhow!("{}", policies::PolicyError::NotLoaded(pname.to_string())))?;
        let Some(c) = crate::policy_cmd::compile_record(&record) else {
            bail!("policy `{pname}`: the source its record kept no longer compiles with this pol; load it again");
        };
        let dir = store.dir(pname);
        Ok(Target {
            c,
            source: record.source,
            name: format!("policy `{pname}`"),
            pins: Box::new(move |m| dir.join(format!("map_{m}"))),
            _lock: Some(lock),
        })
    };
    if !target.exists() {
        if policies::check_name(&name).is_ok() && store.record(&name).ok().flatten().is_some() {
            return policy(&name).map(Some);
        }
        bail!(
            "`{name}` is neither a .pol file nor a loaded policy (`pol status` lists the loaded policies)"
        );
    }
    let Some(c) = crate::compile(target)? else {
        return Ok(None);
    };
    let source = std::fs::read_to_string(target)
        .map_err(|e| anyhow!("cannot read {}: {e}", target.display()))?;
    let pin_root = pol_runtime::pinroot::pin_root().map_err(|e| anyhow!("{e}"))?;
    let root = pin_root.path().join(sets::PIN_DIR);
    match sets::find_run(&root, &name, &sets::stem_of(target), pid) {
        Ok(dir) => Ok(Some(Target {
            c,
            source,
            name,
            pins: Box::new(move |m| dir.join(m)),
            _lock: None,
        })),
        Err(e @ sets::SetError::NotRunning { .. }) if pid.is_none() => {
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
                [one] => policy(one).map(Some),
                [] => bail!("{e}; nor is a policy loaded from it (`pol load {name}`)"),
                many => bail!(
                    "no `pol run` of {name} is running, and {} policies were loaded from it ({}): name one instead of the file",
                    many.len(),
                    many.join(", ")
                ),
            }
        }
        Err(e) => bail!("{e}"),
    }
}

/// The filter, its plan, and its action ids.
struct Planned<'a> {
    filter: &'a hir::Filter,
    plan: groups::Plan,
}

fn planned<'a>(t: &'a Target, name: &str) -> Result<Planned<'a>> {
    let Some(filter) = t.c.hir.filters.iter().find(|f| f.name == name) else {
        let names: Vec<&str> = t.c.hir.filters.iter().map(|f| f.name.as_str()).collect();
        bail!(
            "{} has no filter `{name}` (its filters: {})",
            t.name,
            names.join(", ")
        );
    };
    let plan = groups::plan(filter);
    if plan.classifier.is_none() {
        bail!(
            "filter `{name}` of {} has no classifier: rules change without reload only in a \
             filter with {} or more conjunctive rules (`pol build --explain` says where each \
             rule went); edit the file and load it again",
            t.name,
            groups::CLASSIFY_MIN
        );
    }
    Ok(Planned { filter, plan })
}

impl Planned<'_> {
    fn classified(&self) -> Result<&groups::Classified> {
        self.plan
            .classifier
            .as_ref()
            .ok_or_else(|| anyhow!("the filter has no classifier"))
    }

    /// The action id of `a`, which must be one the filter's maps already use.
    fn action_id(&self, a: &hir::Action) -> Result<u32> {
        let kinds = groups::action_kinds(self.filter, &self.plan);
        if let Some(i) = kinds.iter().position(|k| **k == *a) {
            return Ok(i as u32);
        }
        let words: Vec<&str> = kinds
            .iter()
            .filter(|k| k.counts.is_empty())
            .map(|k| verdict_word(k.verdict))
            .collect();
        bail!(
            "without reload a rule can only take an action the filter's map rules or default \
             already take: {} (with no counters)",
            words.join(", ")
        )
    }

    /// The compiled rules the classifier left out, with their ids and action ids.
    fn left_out(&self) -> Result<Vec<(u32, Rule)>> {
        let c = self.classified()?;
        let mut out = edit::left_out(&c.classifier, |k| {
            c.ids.get(k as usize).copied().unwrap_or(0) << PRIO_SHIFT
        });
        for (id, r) in out.iter_mut() {
            let index = (*id >> PRIO_SHIFT) as usize;
            if let Some(rule) = self.filter.rules.get(index) {
                r.action = self.action_id(&rule.action)?;
            }
        }
        Ok(out)
    }
}

fn verdict_word(v: pol_compiler::syntax::ast::Verdict) -> &'static str {
    pol_compiler::driver::verdict_word(v)
}

/// The classifier variants and action id of a rule given as text, checked by the front end
/// inside the filter's header.
fn parse_rule(t: &Target, p: &Planned<'_>, text: &str) -> Result<(Vec<Rule>, hir::Action)> {
    let start = p.filter.span.start;
    let open = t
        .source
        .get(start..)
        .and_then(|s| s.find('{'))
        .map(|i| start + i + 1)
        .ok_or_else(|| anyhow!("cannot find filter `{}` in its source", p.filter.name))?;
    let header = &t.source[start..open];
    if text.contains('\n') || text.contains('}') {
        bail!("the rule must be one line of the filter, as the file would say it");
    }
    let src = format!("{header}\n    {text}\n    default pass\n}}\n");
    let (_, hir, diags) = pol_compiler::driver::front(&src);
    let rule = hir
        .as_ref()
        .and_then(|h| h.filters.first())
        .and_then(|f| f.rules.first());
    let errors: Vec<String> = diags
        .iter()
        .filter(|d| d.is_error())
        .map(|d| d.message.clone())
        .collect();
    let Some(rule) = rule.filter(|_| errors.is_empty()) else {
        bail!(
            "`{text}` is not a rule of filter `{}`: {}",
            p.filter.name,
            if errors.is_empty() {
                "it holds no rule".to_string()
            } else {
                errors.join("; ")
            }
        );
    };
    if !rule.action.counts.is_empty() {
        bail!(
            "a rule added without reload cannot count into counters; put it in the file and reload"
        );
    }
    let action = p.action_id(&rule.action)?;
    let variants = classify::hir::rules(&rule.cond, action).map_err(|why| {
        anyhow!("the classifier cannot hold `{text}`: {why}; put it in the file and reload")
    })?;
    Ok((variants, rule.action.clone()))
}

/// The classifier's three maps, opened through their pins.
struct Pinned {
    descs: OwnedFd,
    buckets: OwnedFd,
    entries: OwnedFd,
    entries_max: u32,
}

impl Pinned {
    fn open(t: &Target, filter: &str) -> Result<Pinned> {
        let n = Names::of_filter(filter);
        let get = |m: &str| {
            let path = (t.pins)(m);
            sys::pin::obj_get(&path).map_err(|e| {
                anyhow!(
                    "cannot open the classifier map `{m}` of {} at {} ({e}); was it started by \
                     an older pol? restart it",
                    t.name,
                    path.display()
                )
            })
        };
        let entries = get(&n.entries)?;
        let info = sys::map_info(entries.as_fd()).map_err(|e| anyhow!("{e}"))?;
        Ok(Pinned {
            descs: get(&n.descs)?,
            buckets: get(&n.buckets)?,
            entries,
            entries_max: info.max_entries,
        })
    }
}

fn sysmsg(what: &str, e: sys::SysError) -> String {
    format!("cannot {what} the classifier's maps: {e}")
}

fn fixed<const N: usize>(v: Vec<u8>) -> Result<[u8; N], String> {
    v.try_into()
        .map_err(|_| "a classifier map's value has an unexpected size".to_string())
}

impl Store for Pinned {
    fn desc(&mut self, slot: u32) -> Result<Box<[u8; DESC_BYTES]>, String> {
        let v = sys::map_lookup(self.descs.as_fd(), &slot.to_le_bytes(), DESC_BYTES)
            .map_err(|e| sysmsg("read", e))?
            .ok_or("a classifier descriptor is missing")?;
        Ok(Box::new(fixed(v)?))
    }
    fn set_desc(&mut self, slot: u32, d: &[u8; DESC_BYTES]) -> Result<(), String> {
        sys::map_update(self.descs.as_fd(), &slot.to_le_bytes(), d, 0)
            .map_err(|e| sysmsg("write", e))
    }
    fn bucket(&mut self, key: &Key) -> Result<Option<[u8; BUCKET_BYTES]>, String> {
        match sys::map_lookup(self.buckets.as_fd(), key, BUCKET_BYTES) {
            Ok(Some(v)) => Ok(Some(fixed(v)?)),
            Ok(None) => Ok(None),
            Err(e) => Err(sysmsg("read", e)),
        }
    }
    fn set_bucket(&mut self, key: &Key, v: &[u8; BUCKET_BYTES]) -> Result<(), String> {
        sys::map_update(self.buckets.as_fd(), key, v, 0).map_err(|e| {
            if e.errno() == Some(libc::E2BIG) {
                "the classifier's bucket map is full; reload the filter".to_string()
            } else {
                sysmsg("write", e)
            }
        })
    }
    fn del_bucket(&mut self, key: &Key) -> Result<(), String> {
        sys::map_delete(self.buckets.as_fd(), key)
            .map(|_| ())
            .map_err(|e| sysmsg("write", e))
    }
    fn entry(&mut self, i: u32) -> Result<[u8; ENTRY_BYTES], String> {
        let v = sys::map_lookup(self.entries.as_fd(), &i.to_le_bytes(), ENTRY_BYTES)
            .map_err(|e| sysmsg("read", e))?
            .ok_or("a classifier entry is missing")?;
        fixed(v)
    }
    fn set_entry(&mut self, i: u32, e: &[u8; ENTRY_BYTES]) -> Result<(), String> {
        sys::map_update(self.entries.as_fd(), &i.to_le_bytes(), e, 0)
            .map_err(|e| sysmsg("write", e))
    }
    fn entries_max(&self) -> u32 {
        self.entries_max
    }
}

fn add(
    target: &Path,
    filter: &str,
    text: &str,
    after: Option<u32>,
    pid: Option<u32>,
) -> Result<bool> {
    let Some(t) = open(target, pid)? else {
        return Ok(false);
    };
    let p = planned(&t, filter)?;
    let rule = match after {
        Some(line) => p
            .filter
            .rules
            .iter()
            .find(|r| r.line == line)
            .ok_or_else(|| {
                anyhow!(
                    "line {line} of {} holds no rule of filter `{filter}`",
                    t.name
                )
            })?,
        None => p
            .filter
            .rules
            .last()
            .ok_or_else(|| anyhow!("filter `{filter}` has no rules"))?,
    };
    let (variants, _) = parse_rule(&t, &p, text)?;
    let mut pinned = Pinned::open(&t, filter)?;
    let mut ed = Editor::open(&mut pinned, Config::default()).map_err(|e| anyhow!("{e}"))?;
    // After the rule and after what was added after it before: the next free id.
    let base = rule.index << PRIO_SHIFT;
    let top = base + (1 << PRIO_SHIFT);
    let last = ed
        .added()
        .into_iter()
        .filter(|i| (base..top).contains(i))
        .max()
        .unwrap_or(base);
    if last + 1 >= top {
        bail!(
            "{} rules were already added after line {}: put them in the file and reload",
            (1 << PRIO_SHIFT) - 1,
            rule.line
        );
    }
    let written = ed
        .add(&variants, last + 1, true)
        .map_err(|e| anyhow!("{e}"))?;
    if written == 0 {
        println!(
            "filter {filter}: `{text}` is already there after line {}",
            rule.line
        );
    } else {
        println!(
            "filter {filter}: added `{text}` after line {} ({written} classifier entr{})",
            rule.line,
            if written == 1 { "y" } else { "ies" }
        );
    }
    Ok(true)
}

fn del(target: &Path, filter: &str, what: &str, pid: Option<u32>) -> Result<bool> {
    let Some(t) = open(target, pid)? else {
        return Ok(false);
    };
    let p = planned(&t, filter)?;
    let outs = p.left_out()?;
    let mut pinned = Pinned::open(&t, filter)?;
    let mut ed = Editor::open(&mut pinned, Config::default()).map_err(|e| anyhow!("{e}"))?;
    let (variants, id, said) = match what.trim().parse::<u32>() {
        Ok(line) => {
            let Some(rule) = p.filter.rules.iter().find(|r| r.line == line) else {
                bail!(
                    "line {line} of {} holds no rule of filter `{filter}`",
                    t.name
                );
            };
            match &p.plan.placement[rule.index as usize] {
                Placement::Classifier(_) => {}
                Placement::Map(_) => bail!(
                    "the rule on line {line} is in a rule map, not the classifier: change its set \
                     with `pol set`, or edit the file and load it again"
                ),
                Placement::Code(_) => bail!(
                    "the rule on line {line} is code, not in the classifier: edit the file and \
                     load it again"
                ),
            }
            let action = p.action_id(&rule.action)?;
            let variants = classify::hir::rules(&rule.cond, action)
                .map_err(|why| anyhow!("the rule on line {line}: {why}"))?;
            (variants, rule.index << PRIO_SHIFT, format!("line {line}"))
        }
        Err(_) => {
            let (variants, _) = parse_rule(&t, &p, what)?;
            let first = variants
                .first()
                .ok_or_else(|| anyhow!("`{what}` can never match"))?;
            let ids = ed.find(first).map_err(|e| anyhow!("{e}"))?;
            let Some(id) = ids.first().copied() else {
                bail!(
                    "no rule of filter `{filter}` in {} tests exactly `{what}`",
                    t.name
                );
            };
            (variants, id, format!("`{what}`"))
        }
    };
    let n = ed
        .delete(&variants, id, &outs)
        .map_err(|e| anyhow!("{e}"))?;
    if n == 0 {
        bail!("the rule ({said}) is not in the running classifier of filter `{filter}`: was it deleted already?");
    }
    println!(
        "filter {filter}: deleted {said} ({n} classifier entr{})",
        if n == 1 { "y" } else { "ies" }
    );
    Ok(true)
}
