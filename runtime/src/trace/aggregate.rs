//! Aggregation maps read back: every key's per-CPU values merged as layout.json says,
//! then printed the way bpftrace prints its maps (`@opens[bash]: 12`, sorted by value;
//! ASCII histograms) or as one JSON object per map.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::os::fd::BorrowedFd;

use serde_json::{json, Value as Json};

use super::layout::{Aggregation, Function};
use crate::sys::{self, SysError};

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("cannot read map `{map}`: {source}")]
    Sys { map: String, source: SysError },
}

/// One key of a map.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum KeyValue {
    Int(u64),
    Str(String),
    /// A signed integer.
    Signed(i64),
    /// A cgroup v2 id, shown as the cgroup's path.
    Cgroup(u64),
    /// A `kstack` key as read: the id in the stack map (negative: no stack).
    StackId(i64),
    /// A `ustack` key as read: the stack's id and the process it was taken in.
    UserStackId {
        pid: u32,
        id: i64,
    },
    /// A stack resolved to its frames, innermost first.
    Frames(Vec<String>),
}

impl std::fmt::Display for KeyValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyValue::Int(n) => write!(f, "{n}"),
            KeyValue::Str(s) => write!(f, "{s}"),
            KeyValue::Signed(n) => write!(f, "{n}"),
            KeyValue::Cgroup(id) => match super::cgroups::path(*id) {
                Some(p) => write!(f, "{p}"),
                None => write!(f, "cgroup {id}"),
            },
            KeyValue::StackId(id) => write!(f, "stack {id}"),
            KeyValue::UserStackId { pid, id } => write!(f, "stack {id} of pid {pid}"),
            // As bpftrace prints stacks: a frame a line, indented, inside the brackets.
            KeyValue::Frames(frames) => {
                writeln!(f)?;
                for fr in frames {
                    writeln!(f, "        {fr}")?;
                }
                Ok(())
            }
        }
    }
}

/// One entry, its value words merged over CPUs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The key fields, the bucket left out.
    pub key: Vec<KeyValue>,
    pub bucket: Option<u64>,
    /// Value words by name (`count`, `sum`, `min`, `max`).
    pub words: BTreeMap<String, u64>,
}

impl Entry {
    fn word(&self, name: &str) -> u64 {
        self.words.get(name).copied().unwrap_or(0)
    }
}

/// Reads every entry of the map behind `fd`.
pub fn read(fd: BorrowedFd<'_>, a: &Aggregation) -> Result<Vec<Entry>, ReadError> {
    let err = |source| ReadError::Sys {
        map: a.map.clone(),
        source,
    };
    let info = sys::map_info(fd).map_err(err)?;
    let value_len = sys::value_buf_len(&info).map_err(err)?;
    let mut out = Vec::new();
    let mut key: Option<Vec<u8>> = None;
    // A map being updated while it is walked may repeat or skip a key: bound the walk.
    for _ in 0..=info.max_entries {
        let Some(next) = sys::map_next_key(fd, key.as_deref()).map_err(err)? else {
            break;
        };
        if let Some(value) = sys::map_lookup(fd, &next, value_len).map_err(err)? {
            // An array slot nothing wrote is all zeros: no entry, as in a hash.
            if !(is_array(&info) && value.iter().all(|&b| b == 0)) {
                out.push(decode(a, &next, &value, info.value_size as usize));
            }
        }
        key = Some(next);
    }
    Ok(out)
}

/// Arrays (an unkeyed `count`, `min`, ...: one per-CPU slot) have every slot always.
fn is_array(info: &sys::MapInfo) -> bool {
    info.map_type == sys::MapType::Array as u32 || info.map_type == sys::MapType::PerCpuArray as u32
}

/// A NUL-terminated string field (the whole field when it has no NUL).
pub fn text(raw: &[u8]) -> String {
    let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
    String::from_utf8_lossy(raw.get(..end).unwrap_or_default()).into_owned()
}

/// A `join(..)` field (layout type `strings`): chunks of
/// `pol_compiler::probe::hir::JOIN_EACH` bytes, one string each, joined with spaces up
/// to the first empty chunk (the array's NULL).
pub fn joined(raw: &[u8]) -> String {
    raw.chunks(pol_compiler::probe::hir::JOIN_EACH as usize)
        .map(text)
        .take_while(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// A cgroup in JSON: its path, or its id when no cgroup has it any more.
pub fn cgroup_json(id: u64) -> Json {
    super::cgroups::path(id).map_or(json!(id), |p| json!(p))
}

/// Replaces `kstack` and `ustack` ids by their frames: `frames(id, pid)` reads and
/// names one stack, kernel (`pid` none) or user (`None`: the id is gone from the map).
pub fn resolve_stacks(
    entries: &mut Vec<Entry>,
    mut frames: impl FnMut(i64, Option<u32>) -> Option<Vec<String>>,
) {
    for e in entries.iter_mut() {
        for k in &mut e.key {
            let (id, pid) = match *k {
                KeyValue::StackId(id) => (id, None),
                KeyValue::UserStackId { pid, id } => (id, Some(pid)),
                _ => continue,
            };
            *k = KeyValue::Frames(match id {
                id if id < 0 => vec![match pid {
                    None => "[no kernel stack]".to_string(),
                    Some(_) => "[no user stack]".to_string(),
                }],
                id => frames(id, pid).unwrap_or_else(|| vec![format!("[stack {id} lost]")]),
            });
        }
    }
    // Every "no stack" error code reads the same: one entry for them.
    let mut merged: BTreeMap<(Vec<KeyValue>, Option<u64>), Entry> = BTreeMap::new();
    for e in entries.drain(..) {
        match merged.get_mut(&(e.key.clone(), e.bucket)) {
            Some(m) => {
                for (name, v) in e.words {
                    match m.words.get_mut(&name) {
                        Some(w) if name == "min" => *w = (*w).min(v),
                        Some(w) if name == "max" => *w = (*w).max(v),
                        Some(w) => *w = w.wrapping_add(v),
                        None => {
                            m.words.insert(name, v);
                        }
                    }
                }
            }
            None => {
                merged.insert((e.key.clone(), e.bucket), e);
            }
        }
    }
    let merged: Vec<Entry> = merged.into_values().collect();
    *entries = merged;
}

/// Removes every entry of the map behind `fd` (`clear MAP`).
pub fn clear(fd: BorrowedFd<'_>, a: &Aggregation) -> Result<(), ReadError> {
    let err = |source| ReadError::Sys {
        map: a.map.clone(),
        source,
    };
    let info = sys::map_info(fd).map_err(err)?;
    let mut keys = Vec::new();
    let mut key: Option<Vec<u8>> = None;
    for _ in 0..=info.max_entries {
        let Some(next) = sys::map_next_key(fd, key.as_deref()).map_err(err)? else {
            break;
        };
        keys.push(next.clone());
        key = Some(next);
    }
    if is_array(&info) {
        // Array slots cannot be deleted: zero them.
        let zeros = vec![0u8; sys::value_buf_len(&info).map_err(err)?];
        for k in keys {
            sys::map_update(fd, &k, &zeros, 0).map_err(err)?;
        }
        return Ok(());
    }
    for k in keys {
        sys::map_delete(fd, &k).map_err(err)?;
    }
    Ok(())
}

fn u64_at(bytes: &[u8], off: usize) -> u64 {
    let mut w = [0u8; 8];
    if let Some(b) = bytes.get(off..off + 8) {
        w.copy_from_slice(b);
    }
    u64::from_le_bytes(w)
}

/// One entry from its key bytes and its value bytes (every CPU's copy, each
/// `value_size` rounded to 8 bytes, for per-CPU maps).
pub fn decode(a: &Aggregation, key: &[u8], value: &[u8], value_size: usize) -> Entry {
    let mut fields = Vec::new();
    let mut bucket = None;
    for f in &a.key {
        let (off, size) = (f.offset as usize, f.size as usize);
        match f.ty.as_str() {
            "string" => fields.push(KeyValue::Str(text(
                key.get(off..off + size).unwrap_or_default(),
            ))),
            "strings" => fields.push(KeyValue::Str(joined(
                key.get(off..off + size).unwrap_or_default(),
            ))),
            "bucket" => bucket = Some(u64_at(key, off)),
            "kstack" => fields.push(KeyValue::StackId(u64_at(key, off) as i64)),
            // The process id in the high half, the stack id (an i32) in the low.
            "ustack" => {
                let v = u64_at(key, off);
                fields.push(KeyValue::UserStackId {
                    pid: (v >> 32) as u32,
                    id: i64::from(v as u32 as i32),
                });
            }
            "cgroup" => fields.push(KeyValue::Cgroup(u64_at(key, off))),
            "i64" => fields.push(KeyValue::Signed(u64_at(key, off) as i64)),
            _ => fields.push(KeyValue::Int(u64_at(key, off))),
        }
    }
    let stride = if a.per_cpu {
        value_size.div_ceil(8) * 8
    } else {
        value.len().max(1)
    };
    let copies: Vec<&[u8]> = value.chunks(stride.max(1)).collect();
    let count_off = a
        .value
        .iter()
        .find(|w| w.name == "count")
        .map(|w| w.offset as usize);
    let mut words = BTreeMap::new();
    for w in &a.value {
        let off = w.offset as usize;
        let vals = copies.iter().map(|c| u64_at(c, off));
        let merged = match w.merge.as_str() {
            "min" | "max" => {
                // Only CPUs that saw a value hold a min and a max.
                let seen = copies
                    .iter()
                    .filter(|c| count_off.is_none_or(|co| u64_at(c, co) != 0))
                    .map(|c| u64_at(c, off));
                if w.merge == "min" {
                    seen.min().unwrap_or(0)
                } else {
                    seen.max().unwrap_or(0)
                }
            }
            _ => vals.fold(0u64, u64::wrapping_add),
        };
        words.insert(w.name.clone(), merged);
    }
    Entry {
        key: fields,
        bucket,
        words,
    }
}

/// The figure an entry is sorted and printed by.
fn scalar(f: Function, e: &Entry) -> u64 {
    match f {
        Function::Count | Function::Hist | Function::Lhist { .. } => e.word("count"),
        Function::Sum => e.word("sum"),
        Function::Min => e.word("min"),
        Function::Max => e.word("max"),
        Function::Avg | Function::Stats => e.word("sum").checked_div(e.word("count")).unwrap_or(0),
    }
}

fn key_text(key: &[KeyValue]) -> String {
    if key.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = key.iter().map(|k| k.to_string()).collect();
    format!("[{}]", parts.join(", "))
}

/// Groups histogram entries by key: each key's buckets and counts, keys in order.
fn histograms(entries: &[Entry]) -> BTreeMap<Vec<KeyValue>, BTreeMap<u64, u64>> {
    let mut out: BTreeMap<Vec<KeyValue>, BTreeMap<u64, u64>> = BTreeMap::new();
    for e in entries {
        *out.entry(e.key.clone())
            .or_default()
            .entry(e.bucket.unwrap_or(0))
            .or_default() += e.word("count");
    }
    out
}

/// `1K`, `4M`: a power of two as bpftrace labels histogram buckets.
fn size_label(n: u64) -> String {
    const UNITS: [&str; 7] = ["", "K", "M", "G", "T", "P", "E"];
    let mut v = n;
    let mut i = 0;
    while v >= 1024 && v.is_multiple_of(1024) && i + 1 < UNITS.len() {
        v /= 1024;
        i += 1;
    }
    format!("{v}{}", UNITS[i])
}

/// The label of bucket `b` of a histogram.
pub fn bucket_label(f: Function, b: u64) -> String {
    match f {
        Function::Lhist { min, max, step } => {
            let buckets = (max - min).div_ceil(step.max(1));
            if b == 0 {
                format!("(..., {min})")
            } else if b > buckets {
                format!("[{max}, ...)")
            } else {
                let lo = min + (b - 1) * step;
                format!("[{lo}, {})", (lo + step).min(max))
            }
        }
        _ => match b {
            0 => "[0]".into(),
            1 => "[1]".into(),
            b => {
                let lo = 1u64 << (b - 1).min(63);
                let hi = lo.checked_mul(2).map_or("...".to_string(), size_label);
                format!("[{}, {hi})", size_label(lo))
            }
        },
    }
}

/// Inclusive range of values bucket `b` holds, for JSON.
fn bucket_range(f: Function, b: u64) -> (Option<u64>, Option<u64>) {
    match f {
        Function::Lhist { min, max, step } => {
            let buckets = (max - min).div_ceil(step.max(1));
            if b == 0 {
                (None, min.checked_sub(1))
            } else if b > buckets {
                (Some(max), None)
            } else {
                let lo = min + (b - 1) * step;
                (Some(lo), Some((lo + step).min(max) - 1))
            }
        }
        _ => match b {
            0 => (Some(0), Some(0)),
            b => {
                let lo = 1u64 << (b - 1).min(63);
                (Some(lo), Some(lo.wrapping_mul(2).wrapping_sub(1)))
            }
        },
    }
}

const BAR: u64 = 52;

/// The map as bpftrace prints it.
pub fn format(a: &Aggregation, entries: &[Entry]) -> String {
    let mut s = String::new();
    match a.function {
        Function::Hist | Function::Lhist { .. } => {
            for (key, buckets) in histograms(entries) {
                let _ = writeln!(s, "{}{}:", a.display, key_text(&key));
                let (Some(&lo), Some(&hi)) = (buckets.keys().next(), buckets.keys().last()) else {
                    continue;
                };
                let top = buckets.values().copied().max().unwrap_or(0).max(1);
                for b in lo..=hi {
                    let n = buckets.get(&b).copied().unwrap_or(0);
                    let bar = "@".repeat((n.saturating_mul(BAR) / top) as usize);
                    let _ = writeln!(
                        s,
                        "{:<16}{:>8} |{:<52}|",
                        bucket_label(a.function, b),
                        n,
                        bar
                    );
                }
                s.push('\n');
            }
        }
        f => {
            let mut sorted: Vec<&Entry> = entries.iter().collect();
            sorted.sort_by(|x, y| scalar(f, x).cmp(&scalar(f, y)).then(x.key.cmp(&y.key)));
            for e in sorted {
                let head = format!("{}{}", a.display, key_text(&e.key));
                if f == Function::Stats {
                    let _ = writeln!(
                        s,
                        "{head}: count {}, average {}, total {}",
                        e.word("count"),
                        scalar(f, e),
                        e.word("sum")
                    );
                } else {
                    let _ = writeln!(s, "{head}: {}", scalar(f, e));
                }
            }
            s.push('\n');
        }
    }
    s
}

fn key_json(a: &Aggregation, key: &[KeyValue]) -> Json {
    let names = a
        .key
        .iter()
        .filter(|k| k.ty != "bucket")
        .map(|k| k.name.as_str());
    let obj: serde_json::Map<String, Json> = names
        .zip(key)
        .map(|(n, k)| {
            let v = match k {
                KeyValue::Int(i) => json!(i),
                KeyValue::Str(s) => json!(s),
                KeyValue::StackId(id) => json!(id),
                KeyValue::UserStackId { id, .. } => json!(id),
                KeyValue::Frames(frames) => json!(frames),
                KeyValue::Cgroup(id) => cgroup_json(*id),
                KeyValue::Signed(n) => json!(n),
            };
            (n.to_string(), v)
        })
        .collect();
    Json::Object(obj)
}

/// The map as one JSON object: `{"map": "@opens", "function": "count", "entries":
/// [{"key": {"comm": "bash"}, "value": 12}, ...]}`; histograms give each key's
/// `buckets` (`min`, `max` inclusive, `count`), stats and avg their words.
pub fn to_json(a: &Aggregation, entries: &[Entry]) -> Json {
    let f = a.function;
    let list: Vec<Json> = match f {
        Function::Hist | Function::Lhist { .. } => histograms(entries)
            .into_iter()
            .map(|(key, buckets)| {
                let buckets: Vec<Json> = buckets
                    .into_iter()
                    .map(|(b, n)| {
                        let (lo, hi) = bucket_range(f, b);
                        json!({"min": lo, "max": hi, "count": n})
                    })
                    .collect();
                json!({"key": key_json(a, &key), "buckets": buckets})
            })
            .collect(),
        _ => {
            let mut sorted: Vec<&Entry> = entries.iter().collect();
            sorted.sort_by(|x, y| scalar(f, x).cmp(&scalar(f, y)).then(x.key.cmp(&y.key)));
            sorted
                .into_iter()
                .map(|e| {
                    let value = match f {
                        Function::Stats | Function::Avg => json!({
                            "count": e.word("count"),
                            "sum": e.word("sum"),
                            "avg": scalar(f, e),
                            "min": e.word("min"),
                            "max": e.word("max"),
                        }),
                        _ => json!(scalar(f, e)),
                    };
                    json!({"key": key_json(a, &e.key), "value": value})
                })
                .collect()
        }
    };
    json!({"type": "map", "map": a.display, "function": f.name(), "entries": list})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::layout::TraceLayout;

    fn agg(function: &str, keys: &str, words: &str) -> Aggregation {
        let text = format!(
            r#"{{"schema": 1, "license": "GPL", "programs": [], "maps": [],
                "aggregations": [{{"map": "m", "display": "@m", "function": {function},
                "per_cpu": true, "key": [{keys}], "value": [{words}]}}]}}"#
        );
        let mut l = TraceLayout::parse(&text).expect("layout");
        l.aggregations.remove(0)
    }

    const COUNT: &str = r#"{"name": "count", "offset": 0, "merge": "sum"}"#;
    const STATS: &str = r#"{"name": "count", "offset": 0, "merge": "sum"},
        {"name": "sum", "offset": 8, "merge": "sum"}, {"name": "min", "offset": 16, "merge": "min"},
        {"name": "max", "offset": 24, "merge": "max"}"#;

    fn words(ws: &[u64]) -> Vec<u8> {
        ws.iter().flat_map(|w| w.to_le_bytes()).collect()
    }

    #[test]
    fn per_cpu_counts_are_summed_and_sorted_by_value() {
        let a = agg(
            r#"{"kind": "count"}"#,
            r#"{"name": "comm", "type": "string", "offset": 0, "size": 16}"#,
            COUNT,
        );
        let key = |s: &str| {
            let mut k = s.as_bytes().to_vec();
            k.resize(16, 0);
            k
        };
        let e1 = decode(&a, &key("bash"), &words(&[3, 4]), 8);
        let e2 = decode(&a, &key("cat"), &words(&[1, 0]), 8);
        assert_eq!(e1.word("count"), 7);
        assert_eq!(
            format(&a, &[e1.clone(), e2.clone()]),
            "@m[cat]: 1\n@m[bash]: 7\n\n"
        );
        let j = to_json(&a, &[e1, e2]);
        assert_eq!(j["entries"][1]["key"]["comm"], "bash");
        assert_eq!(j["entries"][1]["value"], 7);
    }

    #[test]
    fn min_and_max_skip_cpus_that_saw_nothing() {
        let a = agg(r#"{"kind": "stats"}"#, "", STATS);
        // CPU 0 saw 5 and 9, CPU 1 nothing (zeroed), CPU 2 saw 2.
        let v = [
            words(&[2, 14, 5, 9]),
            words(&[0, 0, 0, 0]),
            words(&[1, 2, 2, 2]),
        ]
        .concat();
        let e = decode(&a, &[0; 8], &v, 32);
        assert_eq!(
            (e.word("count"), e.word("sum"), e.word("min"), e.word("max")),
            (3, 16, 2, 9)
        );
        assert_eq!(format(&a, &[e]), "@m: count 3, average 5, total 16\n\n");
    }

    #[test]
    fn histograms_print_every_bucket_between_the_first_and_last() {
        let a = agg(
            r#"{"kind": "hist"}"#,
            r#"{"name": "bucket", "type": "bucket", "offset": 0, "size": 8}"#,
            COUNT,
        );
        let e = |b: u64, n: u64| decode(&a, &b.to_le_bytes(), &words(&[n]), 8);
        let text = format(&a, &[e(1, 2), e(3, 4), e(12, 1)]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "@m:");
        assert!(
            lines[1].starts_with("[1] ") && lines[1].contains("2 |@@@@@@@@@@@@@@@@@@@@@@@@@@ ")
        );
        assert!(lines[2].starts_with("[2, 4) "), "{}", lines[2]);
        assert!(lines[3].starts_with("[4, 8) ") && lines[3].contains(" 4 |@@@@"));
        assert!(lines[11].starts_with("[1K, 2K) "), "{}", lines[11]);
        assert_eq!(lines.len(), 14, "a header, 12 buckets and a blank line");
        assert_eq!(
            bucket_label(
                Function::Lhist {
                    min: 0,
                    max: 10,
                    step: 5
                },
                0
            ),
            "(..., 0)"
        );
        assert_eq!(
            bucket_label(
                Function::Lhist {
                    min: 0,
                    max: 10,
                    step: 5
                },
                2
            ),
            "[5, 10)"
        );
        assert_eq!(
            bucket_label(
                Function::Lhist {
                    min: 0,
                    max: 10,
                    step: 5
                },
                3
            ),
            "[10, ...)"
        );
    }

    #[test]
    fn stacks_resolve_to_frames_and_no_stack_errors_merge() {
        let a = agg(
            r#"{"kind": "count"}"#,
            r#"{"name": "kstack", "type": "kstack", "offset": 0, "size": 8}"#,
            COUNT,
        );
        let e = |id: i64, n: u64| decode(&a, &id.to_le_bytes(), &words(&[n]), 8);
        let mut entries = vec![e(3, 5), e(-14, 2), e(-17, 1)];
        resolve_stacks(&mut entries, |id, _| {
            (id == 3).then(|| vec!["f".into(), "g".into()])
        });
        assert_eq!(entries.len(), 2, "{entries:?}");
        let text = format(&a, &entries);
        assert_eq!(
            text,
            "@m[\n        [no kernel stack]\n]: 3\n@m[\n        f\n        g\n]: 5\n\n"
        );
        assert_eq!(
            to_json(&a, &entries)["entries"][1]["key"]["kstack"],
            json!(["f", "g"])
        );
    }
}
