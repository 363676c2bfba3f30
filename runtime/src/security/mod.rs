//! Security rules at run time: the `rules` section of layout.json read back ([`RulesLayout`]),
//! and alerts decoded from the ring-buffer records the rule programs send ([`decode`]),
//! printed as aligned text ([`header`], [`line`]) or JSON lines ([`to_json`]).
//!
//! Rule programs attach and stream through the same machinery as probes
//! (`trace::attach`, the `pol_events` ring buffer); only the reading of a record as an
//! alert is specific to rules.

pub mod cgroup;

use serde::Deserialize;
use serde_json::{json, Value as Json};

/// The `rules` section of layout.json.
#[derive(Debug, Clone, Deserialize)]
pub struct RulesLayout {
    pub rules: Vec<RuleInfo>,
    pub records: Vec<RecordInfo>,
    pub scratch: String,
    /// Programs attached to a cgroup (connect and bind rules).
    #[serde(default)]
    pub cgroup: Vec<CgroupProgramInfo>,
    /// The audit/enforce switch map, when some rule kills or denies.
    #[serde(default)]
    pub mode: Option<String>,
    /// Per-rule alert rate state (per CPU, 16 bytes a rule: suppressed count at byte 8)
    /// and the limit map (one u64: alerts per rule per CPU per second; 0 none).
    #[serde(default)]
    pub rate: Option<String>,
    #[serde(default)]
    pub limit: Option<String>,
    /// Hash maps of sets tested with `in`, with the entries to write before attaching.
    #[serde(default)]
    pub sets: Vec<SetMapInfo>,
    /// The process table (tgid -> program path) when a rule reads `parent.path`.
    #[serde(default)]
    pub procs: Option<String>,
}

/// Bytes of a process table value (the path, NUL-padded).
pub const PROC_PATH: usize = 256;

/// The processes running now and the program each runs (`/proc/PID/exe`, cut to 255
/// bytes), to seed the process table with those started before the rules: kernel
/// threads and processes gone meanwhile have no `exe` and are left out.
pub fn running_programs() -> Vec<(u32, Vec<u8>)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| {
        let e = e.ok()?;
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let exe = std::fs::read_link(e.path().join("exe")).ok()?;
        let mut path = std::os::unix::ffi::OsStrExt::as_bytes(exe.as_os_str()).to_vec();
        path.truncate(PROC_PATH - 1);
        path.resize(PROC_PATH, 0);
        Some((pid, path))
    })
    .collect()
}

/// A set map (`pol_rule_in_FIELD`): keys are a field's values, values one bit per set.
#[derive(Debug, Clone, Deserialize)]
pub struct SetMapInfo {
    pub map: String,
    pub field: String,
    /// `string` (NUL-padded to `key_size`) or `u64`.
    pub key: String,
    pub key_size: u32,
    pub entries: Vec<(SetKeyInfo, Vec<u64>)>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum SetKeyInfo {
    Str(String),
    Int(u64),
}

/// A map entry's key and value bytes.
pub type KeyValue = (Vec<u8>, Vec<u8>);

impl SetMapInfo {
    /// Each entry as the key and value bytes the map takes; `Err` names an entry that
    /// does not fit its key.
    pub fn encoded(&self) -> Result<Vec<KeyValue>, String> {
        let size = self.key_size as usize;
        self.entries
            .iter()
            .map(|(k, words)| {
                let key = match k {
                    SetKeyInfo::Str(s) if s.len() < size => {
                        let mut b = s.as_bytes().to_vec();
                        b.resize(size, 0);
                        b
                    }
                    SetKeyInfo::Int(n) if size == 8 => n.to_le_bytes().to_vec(),
                    _ => {
                        return Err(format!(
                            "{}: a key that does not fit {size} bytes",
                            self.map
                        ))
                    }
                };
                let value = words.iter().flat_map(|w| w.to_le_bytes()).collect();
                Ok((key, value))
            })
            .collect()
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct CgroupProgramInfo {
    pub program: String,
    /// `connect4`, `connect6`, `bind4`, `bind6`.
    pub attach: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RuleInfo {
    pub name: String,
    pub kind: String,
    pub severity: String,
    pub message: String,
    pub actions: Vec<String>,
    /// Starts in audit mode whatever the file's mode.
    #[serde(default)]
    pub audit: bool,
    pub span: [usize; 2],
    pub line: usize,
    pub column: usize,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RecordInfo {
    pub kind: String,
    pub size: u32,
    pub fields: Vec<FieldInfo>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct FieldInfo {
    pub name: String,
    /// `u64`, `cgroup`, `string` or `args`.
    #[serde(rename = "type")]
    pub ty: String,
    pub offset: u32,
    pub size: u32,
    #[serde(default)]
    pub len: Option<u32>,
    /// For `addr`: the word holding the family (2: IPv4 in the first 4 bytes, else IPv6).
    #[serde(default)]
    pub family: Option<u32>,
}

impl RulesLayout {
    pub fn parse(json: &str) -> Result<RulesLayout, serde_json::Error> {
        serde_json::from_str(json)
    }
}

/// Record words before the fields (see the compiler's `rule::hir`).
const OFF_RULE: usize = 8;
const OFF_FLAGS: usize = 16;
const FLAG_KILLED: u64 = 1;
const FLAG_DENIED: u64 = 2;
const FLAG_AUDIT: u64 = 4;

/// The values of the mode map (`pol_rule_mode`).
pub const MODE_ENFORCE: u64 = 0;
pub const MODE_AUDIT: u64 = 1;
/// A rule's slot (its index + 1): 0 follows the file, [`MODE_AUDIT`], or this.
pub const RULE_FOLLOWS: u64 = 0;
pub const RULE_ENFORCE: u64 = 2;

/// A field's value in an alert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Int(u64),
    Str(String),
    /// A cgroup v2 id (shown as its path when it can be found).
    Cgroup(u64),
    Args(Vec<String>),
    Addr(std::net::IpAddr),
}

impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Int(n) => write!(f, "{n}"),
            Value::Str(s) => f.write_str(s),
            Value::Cgroup(id) => match crate::trace::cgroups::path(*id) {
                Some(p) => f.write_str(&p),
                None => write!(f, "{id}"),
            },
            Value::Args(a) => f.write_str(&a.join(" ")),
            Value::Addr(a) => write!(f, "{a}"),
        }
    }
}

/// One alert: the rule that matched, what was done, and the event's fields.
#[derive(Debug, Clone)]
pub struct Alert<'a> {
    pub rule: &'a RuleInfo,
    pub killed: bool,
    pub denied: bool,
    /// The rule kills or denies, but the rules ran in audit mode: only alerted.
    pub audit: bool,
    pub fields: Vec<(&'a str, Value)>,
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    let mut w = [0u8; 8];
    if let Some(s) = b.get(off..off + 8) {
        w.copy_from_slice(s);
    }
    u64::from_le_bytes(w)
}

fn text(raw: &[u8]) -> String {
    let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
    String::from_utf8_lossy(raw.get(..end).unwrap_or_default()).into_owned()
}

/// Decodes one record; `None` for a kind or rule the layout does not list, or a short
/// record.
pub fn decode<'a>(layout: &'a RulesLayout, bytes: &[u8]) -> Option<Alert<'a>> {
    let kind = usize::try_from(u64_at(bytes, 0)).ok()?;
    let rec = layout.records.get(kind)?;
    if bytes.len() < rec.size as usize {
        return None;
    }
    let rule = layout
        .rules
        .get(usize::try_from(u64_at(bytes, OFF_RULE)).ok()?)?;
    let fields = rec
        .fields
        .iter()
        .map(|f| {
            let (off, size) = (f.offset as usize, f.size as usize);
            let raw = bytes.get(off..off + size).unwrap_or_default();
            let v = match f.ty.as_str() {
                "string" => Value::Str(text(raw)),
                "args" => {
                    let n = f.len.map_or(size, |at| u64_at(bytes, at as usize) as usize);
                    let used = raw.get(..n.min(size)).unwrap_or_default();
                    Value::Args(
                        used.split(|&b| b == 0)
                            .filter(|a| !a.is_empty())
                            .map(|a| String::from_utf8_lossy(a).into_owned())
                            .collect(),
                    )
                }
                "cgroup" => Value::Cgroup(u64_at(bytes, off)),
                "comms" => {
                    Value::Args(raw.chunks(16).map(text).filter(|s| !s.is_empty()).collect())
                }
                "addr" => {
                    let mut a = [0u8; 16];
                    if let Some(r) = raw.get(..16) {
                        a.copy_from_slice(r);
                    }
                    let v4 = f.family.is_some_and(|at| u64_at(bytes, at as usize) == 2);
                    Value::Addr(if v4 {
                        std::net::IpAddr::from([a[0], a[1], a[2], a[3]])
                    } else {
                        std::net::IpAddr::from(a)
                    })
                }
                _ => Value::Int(u64_at(bytes, off)),
            };
            (f.name.as_str(), v)
        })
        .collect();
    let flags = u64_at(bytes, OFF_FLAGS);
    Some(Alert {
        rule,
        killed: flags & FLAG_KILLED != 0,
        denied: flags & FLAG_DENIED != 0,
        audit: flags & FLAG_AUDIT != 0,
        fields,
    })
}

impl Alert<'_> {
    pub fn field(&self, name: &str) -> Option<&Value> {
        self.fields.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    /// The rule's message with `{field}` replaced by the event's values.
    pub fn message(&self) -> String {
        let mut out = String::new();
        let mut rest = self.rule.message.as_str();
        while let Some(open) = rest.find('{') {
            out.push_str(&rest[..open]);
            let after = &rest[open + 1..];
            match after.find('}') {
                Some(close) => {
                    let name = after[..close].trim();
                    match self.field(name) {
                        Some(v) => out.push_str(&v.to_string()),
                        None => {
                            out.push('{');
                            out.push_str(&after[..=close]);
                        }
                    }
                    rest = &after[close + 1..];
                }
                None => {
                    out.push_str(&rest[open..]);
                    rest = "";
                }
            }
        }
        out.push_str(rest);
        out
    }

    /// What was done: `kill` (SIGKILL sent), `deny` (the call refused), `audit` (the rule
    /// kills or denies, but the rules run in audit mode), else `alert`.
    pub fn action(&self) -> &'static str {
        if self.killed {
            "kill"
        } else if self.denied {
            "deny"
        } else if self.audit {
            "audit"
        } else {
            "alert"
        }
    }

    /// In audit mode, what the rule would have done (`kill`, `deny`).
    pub fn would(&self) -> Vec<&str> {
        if !self.audit {
            return Vec::new();
        }
        self.rule
            .actions
            .iter()
            .map(String::as_str)
            .filter(|a| *a != "alert")
            .collect()
    }
}

/// The column header of [`line`].
pub fn header() -> String {
    format!(
        "{:<8} {:<24} {:<6} {:>7} {:<16} {:<20} MESSAGE",
        "SEVERITY", "RULE", "ACTION", "PID", "COMM", "SOURCE"
    )
}

/// One alert as a line of columns: severity, rule, action, pid, comm, `FILE:LINE:COL`,
/// then the message.
pub fn line(a: &Alert<'_>, file: &str) -> String {
    let pid = a.field("pid").map(|v| v.to_string()).unwrap_or_default();
    let comm = a.field("comm").map(|v| v.to_string()).unwrap_or_default();
    let src = format!("{file}:{}:{}", a.rule.line, a.rule.column);
    format!(
        "{:<8} {:<24} {:<6} {:>7} {:<16} {:<20} {}",
        a.rule.severity,
        a.rule.name,
        a.action(),
        pid,
        comm,
        src,
        a.message()
    )
}

/// One alert as a JSON object: `{"type":"alert","rule":..,"severity":..,"action":..,
/// "message":..,"source":{file,line,column,span},"event":{kind, FIELD: VALUE, ..}}`.
pub fn to_json(a: &Alert<'_>, file: &str) -> Json {
    let mut ev = serde_json::Map::new();
    ev.insert("kind".into(), json!(a.rule.kind));
    for (name, v) in &a.fields {
        let v = match v {
            Value::Int(n) => json!(n),
            Value::Str(s) => json!(s),
            Value::Cgroup(id) => crate::trace::aggregate::cgroup_json(*id),
            Value::Args(args) => json!(args),
            Value::Addr(a) => json!(a.to_string()),
        };
        ev.insert((*name).to_string(), v);
    }
    let mut out = json!({
        "type": "alert",
        "rule": a.rule.name,
        "severity": a.rule.severity,
        "action": a.action(),
        "message": a.message(),
        "source": {
            "file": file,
            "line": a.rule.line,
            "column": a.rule.column,
            "span": a.rule.span,
        },
        "event": Json::Object(ev),
    });
    if a.audit {
        out["would"] = json!(a.would());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout() -> RulesLayout {
        RulesLayout::parse(
            r#"{"scratch": "s", "rules": [{"name": "shell", "kind": "exec", "severity": "critical",
                "message": "{comm} ran {argv} (parent {parent.comm}) {nope}", "actions": ["alert", "kill"],
                "span": [0, 19], "line": 3, "column": 1}],
              "records": [{"kind": "exec", "size": 96, "fields": [
                {"name": "pid", "type": "u64", "offset": 24, "size": 8},
                {"name": "comm", "type": "string", "offset": 32, "size": 16},
                {"name": "parent.comm", "type": "string", "offset": 48, "size": 16},
                {"name": "argv", "type": "args", "offset": 64, "size": 32, "len": 88}]}]}"#,
        )
        .expect("layout")
    }

    #[test]
    fn records_decode_into_alerts_with_their_rule_and_message() {
        let l = layout();
        let mut rec = vec![0u8; 96];
        rec[16] = 1; // killed
        rec[24..32].copy_from_slice(&42u64.to_le_bytes());
        rec[32..34].copy_from_slice(b"sh");
        rec[48..53].copy_from_slice(b"nginx");
        rec[64..75].copy_from_slice(b"sh\0-c\0true\0");
        rec[88..96].copy_from_slice(&11u64.to_le_bytes());
        let a = decode(&l, &rec).expect("decodes");
        assert!(a.killed);
        assert_eq!(a.message(), "sh ran sh -c true (parent nginx) {nope}");
        assert_eq!(
            line(&a, "r.pol"),
            "critical shell                    kill        42 sh               r.pol:3:1            sh ran sh -c true (parent nginx) {nope}"
        );
        let j = to_json(&a, "r.pol");
        assert_eq!(j["event"]["argv"], json!(["sh", "-c", "true"]));
        assert_eq!(j["action"], "kill");
        assert_eq!(j["source"]["line"], 3);
        rec[8] = 1;
        assert!(decode(&l, &rec).is_none(), "an unknown rule");
        rec[8] = 0;
        assert!(decode(&l, &rec[..40]).is_none(), "a short record");
    }

    #[test]
    fn set_map_entries_encode_as_padded_strings_and_u64s() {
        let m: SetMapInfo = serde_json::from_str(
            r#"{"map": "pol_rule_in_path", "field": "path", "key": "string", "key_size": 16,
                "entries": [["/bin/sh", [5]], [22, [1, 2]]]}"#,
        )
        .expect("parses");
        let e = m.encoded();
        assert!(e.is_err(), "an integer key is 8 bytes, not 16: {e:?}");
        let m = SetMapInfo {
            entries: m.entries[..1].to_vec(),
            key_size: 8,
            ..m
        };
        assert_eq!(
            m.encoded().expect("encodes"),
            [(b"/bin/sh\0".to_vec(), 5u64.to_le_bytes().to_vec())]
        );
        let long = SetMapInfo {
            entries: vec![(SetKeyInfo::Str("/usr/bin".into()), vec![1])],
            ..m.clone()
        };
        assert!(long.encoded().is_err(), "no room for the NUL");
        let ports = SetMapInfo {
            entries: vec![(SetKeyInfo::Int(443), vec![1, 0])],
            ..m
        };
        let got = ports.encoded().expect("encodes");
        assert_eq!(got[0].0, 443u64.to_le_bytes());
        assert_eq!(got[0].1.len(), 16);
    }
}
