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
use pol_compiler::classify::maps::{BUCKET_BYTES, BUCKET_KEY_BYTES, DESC_BYTES, ENTRY_BYTES};
use pol_compiler::classify::tuplemerge::{BucketKey, Config};
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
    /// Swap a whole new rule set into a running filter's classifier at once: the rules of
    /// RULES (one a line, `#` comments), in their order, in place of the classifier's.
    Swap {
        #[arg(value_name = "FILE|POLICY")]
        target: PathBuf,
        filter: String,
        /// A file of rules, one a line, as the filter would say them.
        rules: PathBuf,
        /// The set decides right after the rule on this line of the file (default: after
        /// the last rule, before the default).
        #[arg(long, value_name = "LINE")]
        after: Option<u32>,
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
        FilterOp::Swap {
            target,
            filter,
            rules,
            after,
            pid,
        } => swap(&target, &filter, &rules, after, pid),
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

/// The classifier variants of rules given as text (one a line), checked by the front end
/// inside the filter's header; `what` names them in errors (`RULES:LINE` or the text).
fn parse_rules(
    t: &Target,
    p: &Planned<'_>,
    lines: &[&str],
    what: &dyn Fn(usize) -> String,
) -> Result<Vec<Vec<Rule>>> {
    let start = p.filter.span.start;
    let open = t
        .source
        .get(start..)
        .and_then(|s| s.find('{'))
        .map(|i| start + i + 1)
        .ok_or_else(|| anyhow!("cannot find filter `{}` in its source", p.filter.name))?;
    let header = &t.source[start..open];
    let mut src = format!("{header}\n");
    // The byte where each rule's line starts, to name the line of an error.
    let mut starts = Vec::with_capacity(lines.len());
    for (k, l) in lines.iter().enumerate() {
        if l.contains('}') {
            bail!("{}: a rule of the filter cannot hold `}}`", what(k));
        }
        starts.push(src.len());
        src.push_str("    ");
        src.push_str(l);
        src.push('\n');
    }
    src.push_str("    default pass\n}\n");
    let (_, hir, diags) = pol_compiler::driver::front(&src);
    let line_of = |at: usize| starts.partition_point(|s| *s <= at).saturating_sub(1);
    if let Some(d) = diags.iter().find(|d| d.is_error()) {
        let at = d.labels.first().map_or(0, |l| l.span.start);
        bail!(
            "{} is not a rule of filter `{}`: {}",
            what(line_of(at)),
            p.filter.name,
            d.message
        );
    }
    let rules = hir
        .as_ref()
        .and_then(|h| h.filters.first())
        .map(|f| f.rules.as_slice())
        .unwrap_or_default();
    if rules.len() != lines.len() {
        bail!(
            "{} rules read where {} lines were given: one rule a line",
            rules.len(),
            lines.len()
        );
    }
    let mut out = Vec::with_capacity(rules.len());
    for (k, rule) in rules.iter().enumerate() {
        if !rule.action.counts.is_empty() {
            bail!(
                "{}: a rule changed without reload cannot count into counters; put it in the file and reload",
                what(k)
            );
        }
        let action = p.action_id(&rule.action)?;
        let variants = classify::hir::rules(&rule.cond, action).map_err(|why| {
            anyhow!(
                "the classifier cannot hold {}: {why}; put it in the file and reload",
                what(k)
            )
        })?;
        out.push(variants);
    }
    Ok(out)
}

/// One rule given as text.
fn parse_rule(t: &Target, p: &Planned<'_>, text: &str) -> Result<Vec<Rule>> {
    if text.contains('\n') {
        bail!("the rule must be one line of the filter, as the file would say it");
    }
    let mut v = parse_rules(t, p, &[text], &|_| format!("`{text}`"))?;
    v.pop().ok_or_else(|| anyhow!("`{text}` holds no rule"))
}

/// The classifier's three maps, opened through their pins.
struct Pinned {
    gen: OwnedFd,
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
        let buckets = get(&n.buckets)?;
        let key_size = sys::map_info(buckets.as_fd())
            .map_err(|e| anyhow!("{e}"))?
            .key_size;
        if key_size as usize != BUCKET_KEY_BYTES {
            bail!(
                "the classifier of {} has {key_size}-byte bucket keys, this pol writes \
                 {BUCKET_KEY_BYTES}: it was started by an older pol; restart it",
                t.name
            );
        }
        Ok(Pinned {
            gen: get(&n.gen)?,
            descs: get(&n.descs)?,
            buckets,
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
    fn bucket(&mut self, key: &BucketKey) -> Result<Option<[u8; BUCKET_BYTES]>, String> {
        match sys::map_lookup(self.buckets.as_fd(), key, BUCKET_BYTES) {
            Ok(Some(v)) => Ok(Some(fixed(v)?)),
            Ok(None) => Ok(None),
            Err(e) => Err(sysmsg("read", e)),
        }
    }
    fn set_bucket(&mut self, key: &BucketKey, v: &[u8; BUCKET_BYTES]) -> Result<(), String> {
        sys::map_update(self.buckets.as_fd(), key, v, 0).map_err(|e| {
            if e.errno() == Some(libc::E2BIG) {
                "the classifier's bucket map is full; reload the filter".to_string()
            } else {
                sysmsg("write", e)
            }
        })
    }
    fn del_bucket(&mut self, key: &BucketKey) -> Result<(), String> {
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
    fn gen(&mut self) -> Result<(u32, u32), String> {
        let v = sys::map_lookup(self.gen.as_fd(), &0u32.to_le_bytes(), 8)
            .map_err(|e| sysmsg("read", e))?
            .ok_or("the classifier's generation is missing")?;
        let w: [u8; 8] = fixed(v)?;
        let at = |o: usize| u32::from_le_bytes([w[o], w[o + 1], w[o + 2], w[o + 3]]);
        Ok((at(0), at(4)))
    }
    fn set_gen(&mut self, base: u32, shift: u32) -> Result<(), String> {
        let mut v = base.to_le_bytes().to_vec();
        v.extend_from_slice(&shift.to_le_bytes());
        sys::map_update(self.gen.as_fd(), &0u32.to_le_bytes(), &v, 0)
            .map_err(|e| sysmsg("write", e))
    }
    fn bucket_keys(&mut self) -> Result<Vec<BucketKey>, String> {
        let mut keys = Vec::new();
        let mut prev: Option<Vec<u8>> = None;
        while let Some(k) = sys::map_next_key(self.buckets.as_fd(), prev.as_deref())
            .map_err(|e| sysmsg("read", e))?
        {
            keys.push(fixed(k.clone())?);
            prev = Some(k);
        }
        Ok(keys)
    }
}

/// The file rule that added rules follow: the one on line `after`, else the last.
fn anchor_rule<'p>(
    t: &Target,
    p: &'p Planned<'_>,
    filter: &str,
    after: Option<u32>,
) -> Result<&'p hir::Rule> {
    match after {
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
            }),
        None => p
            .filter
            .rules
            .last()
            .ok_or_else(|| anyhow!("filter `{filter}` has no rules")),
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
    let rule = anchor_rule(&t, &p, filter, after)?;
    let variants = parse_rule(&t, &p, text)?;
    let mut pinned = Pinned::open(&t, filter)?;
    let mut ed = Editor::open(&mut pinned, Config::default()).map_err(|e| anyhow!("{e}"))?;
    // After the rule and after what was added after it before: the next free id.
    let shift = ed.shift();
    let base = u64::from(rule.index) << shift;
    let top = base + (1 << shift);
    if top > u64::from(u32::MAX) {
        bail!("rule ids after line {} do not fit the swapped-in set's ids; swap a set with the rule in it", rule.line);
    }
    let (base, top) = (base as u32, top as u32);
    let last = ed
        .added()
        .into_iter()
        .filter(|i| (base..top).contains(i))
        .max()
        .unwrap_or(base);
    if last + 1 >= top {
        bail!(
            "{} rules were already added after line {}: put them in the file and reload",
            (1u64 << shift) - 1,
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
    if ed.swapped() {
        bail!(
            "filter `{filter}` runs a rule set swapped in by `pol filter swap`: delete the rule \
             from that set and swap it in again"
        );
    }
    let (variants, id, said) = match what.trim().parse::<u32>() {
        Ok(line) => {
            let Some(rule) = p.filter.rules.iter().find(|r| r.line == line) else {
                bail!(
                    "line {line} of {} holds no rule of filter `{filter}`",
                    t.name
                );
            };
            let head =
                p.plan.classifier.as_ref().is_some_and(|c| {
                    c.ids[..c.classifier.head.min(c.ids.len())].contains(&rule.index)
                });
            match &p.plan.placement[rule.index as usize] {
                Placement::Classifier(_) if head => bail!(
                    "the rule on line {line} is code ahead of the classifier's tables (its head), \
                     not in its maps: edit the file and load it again"
                ),
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
            let variants = parse_rule(&t, &p, what)?;
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

fn swap(
    target: &Path,
    filter: &str,
    rules: &Path,
    after: Option<u32>,
    pid: Option<u32>,
) -> Result<bool> {
    let text = std::fs::read_to_string(rules)
        .map_err(|e| anyhow!("cannot read {}: {e}", rules.display()))?;
    let Some(t) = open(target, pid)? else {
        return Ok(false);
    };
    let p = planned(&t, filter)?;
    let rule = anchor_rule(&t, &p, filter, after)?;
    // Lines that hold a rule, with their line numbers in RULES.
    let mut lines = Vec::new();
    let mut numbers = Vec::new();
    for (k, l) in text.lines().enumerate() {
        let l = l.split('#').next().unwrap_or_default().trim();
        if !l.is_empty() {
            lines.push(l);
            numbers.push(k + 1);
        }
    }
    let shown = rules.display().to_string();
    let parsed = parse_rules(&t, &p, &lines, &|k| {
        format!("{shown}:{}", numbers.get(k).copied().unwrap_or(0))
    })?;
    // Ids after the rule: (index << shift) + k + 1, the shift wide enough for the set; the
    // search returns id >> shift, the rule the set follows.
    let m = parsed.len() as u64;
    let shift = (64 - (m + 1).leading_zeros()).max(PRIO_SHIFT);
    let n = p.filter.rules.len() as u64;
    if shift >= 32 || (n + 1) << shift > u64::from(u32::MAX) {
        bail!(
            "{m} rules after rule {} of {n} do not fit the classifier's 32-bit ids; swap fewer",
            rule.index
        );
    }
    let base = u32::try_from(u64::from(rule.index) << shift)?;
    let mut flat = Vec::new();
    let mut ids = Vec::new();
    for (k, vs) in parsed.iter().enumerate() {
        flat.extend_from_slice(vs);
        ids.extend(std::iter::repeat_n(base + k as u32 + 1, vs.len()));
    }
    let cfg = Config::default();
    let built = classify::tuplemerge::build(&flat, cfg).map_err(|e| {
        anyhow!("the classifier cannot hold the set of {shown}: {e} (counting variants); reload with the rules in the file instead")
    })?;
    let maps =
        classify::maps::Maps::with_ids(&built, |i| ids.get(i as usize).copied().unwrap_or(0));
    let mut pinned = Pinned::open(&t, filter)?;
    let mut ed = Editor::open(&mut pinned, cfg).map_err(|e| anyhow!("{e}"))?;
    let sw = ed.swap(&maps, shift).map_err(|e| anyhow!("{e}"))?;
    println!(
        "filter {filter}: swapped in {} rules of {shown} after line {} ({} classifier entries in {} tables)",
        parsed.len(),
        rule.line,
        sw.entries,
        built.tables.len()
    );
    Ok(true)
}
