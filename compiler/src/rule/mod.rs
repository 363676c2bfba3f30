//! Runtime security rules (issue 12): `rule NAME on KIND { when COND action ACTIONS }`
//! blocks checked into their own HIR ([`hir`], [`check`]), lowered onto MIR ([`lower`]:
//! one BTF-typed tracepoint program per event kind holding every rule on it), compiled by
//! `codegen` like probes, and described in layout.json: the programs and the ring-buffer
//! records as probes describe theirs (so any probe consumer can attach and read them),
//! plus a `rules` section naming each rule's severity, message, actions and source span.

pub mod analysis;
pub mod check;
pub mod hir;
pub mod ktypes;
pub mod lower;
pub mod shape;

use serde::Serialize;

use crate::codegen::{self, CodegenError};
use crate::diag::Diagnostic;
use crate::obj::{
    self, EventsLayout, KeyFieldLayout, Layout, ProbeAttach, ProbeLayout, RecordLayout,
};
use hir::{FieldTy, Kind, RuleSet};
use ktypes::KernelTypes;

/// A compiled rule file: the probe-shaped output (`module`, `code`, `object`, `layout`)
/// and what alerts need to be printed.
#[derive(Debug, Clone)]
pub struct Output {
    pub probes: crate::probe::Output,
    pub rules: RulesLayout,
}

/// The `rules` section of layout.json.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RulesLayout {
    /// A record's `rule` word is an index here.
    pub rules: Vec<RuleLayout>,
    /// A record's first word is an index here (as in `events.records`).
    pub records: Vec<RuleRecordLayout>,
    /// The per-CPU array the programs build records in.
    pub scratch: String,
    /// Programs attached to a cgroup (connect and bind rules); the others are in the
    /// layout's `probes`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cgroup: Vec<CgroupProgram>,
    /// The audit/enforce switch ([`lower::MODE_MAP`]), when some rule kills or denies.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// Alerts sent and suppressed per rule ([`lower::RATE_MAP`]: per CPU, 16 bytes a
    /// rule, the suppressed count at byte 8) and the limit ([`lower::LIMIT_MAP`]).
    pub rate: String,
    pub limit: String,
    /// The hash maps of sets tested with `in` ([`lower::SetMap`]), with their entries:
    /// the loader writes them before attaching anything.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sets: Vec<SetMapLayout>,
    /// The process table ([`lower::PROCS_MAP`]: tgid -> program path) when a rule reads
    /// `parent.path`: the loader seeds it with the processes already running.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub procs: Option<String>,
}

/// A set map and its entries.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SetMapLayout {
    pub map: String,
    /// The field its key is (`path`, `comm`, `port`).
    pub field: &'static str,
    /// `string`: the key is the value's bytes, NUL-padded to `key_size`; `u64`: the
    /// value as a little-endian u64.
    pub key: &'static str,
    pub key_size: u32,
    /// Each key and its value: u64 words, one bit per set that holds the key.
    pub entries: Vec<(SetKey, Vec<u64>)>,
}

/// A key of a set map, as layout.json writes it (a JSON string or number).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum SetKey {
    Str(String),
    Int(u64),
}

/// A program of a cgroup hook.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CgroupProgram {
    pub program: String,
    /// `connect4`, `connect6`, `bind4`, `bind6`.
    pub attach: &'static str,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuleLayout {
    pub name: String,
    pub kind: &'static str,
    pub severity: &'static str,
    /// `{field}` is replaced by the record's field.
    pub message: String,
    /// `alert`, and `kill` or `deny` when the rule kills or denies.
    pub actions: Vec<&'static str>,
    /// Starts in audit mode (`action audit`): its slot of the mode map is set to audit.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub audit: bool,
    /// Byte range of `rule NAME on KIND` in the source, and its 1-based line and column.
    pub span: [usize; 2],
    pub line: usize,
    pub column: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuleRecordLayout {
    pub kind: &'static str,
    pub size: u32,
    pub fields: Vec<RuleFieldLayout>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuleFieldLayout {
    pub name: &'static str,
    /// `u64`, `cgroup`, `string` (NUL-padded) or `args` (NUL-separated, `len` bytes).
    #[serde(rename = "type")]
    pub ty: &'static str,
    pub offset: u32,
    pub size: u32,
    /// The u64 word holding the bytes read (with the NUL for strings).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub len: Option<u32>,
    /// For `addr`: the u64 word holding the family (2: IPv4 in the first 4 bytes, 10: IPv6).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub family: Option<u32>,
}

/// Lowers, compiles and describes the rules. Struct offsets come from `kt` (the running
/// kernel's BTF for `pol run`).
pub fn compile(
    set: &RuleSet,
    source: &str,
    kt: &dyn KernelTypes,
) -> Result<Output, Vec<Diagnostic>> {
    // Equality tests many rules make of one field become set lookups (the programs,
    // layout.json's sets and the loader all see the grouped set).
    let grouped = shape::group_equalities(set);
    let set = &grouped;
    let at = |kind: Kind| {
        set.rules
            .iter()
            .find(|r| r.kind == kind)
            .map_or(0..0, |r| r.header.clone())
    };
    let module = lower::lower(set, kt).map_err(|e| {
        vec![Diagnostic::error(
            "L0502",
            format!("`{}` rules cannot be compiled for this kernel: {e}", e.kind.name()),
            at(e.kind),
        )
        .with_label("needs the kernel's structure layout")
        .with_help("rules read task and exec structures at offsets from /sys/kernel/btf/vmlinux; `pol check`, `build` and `run` read it from the running kernel")]
    })?;
    let (object, code) = codegen::object::object(&module).map_err(|e| {
        let span = set.rules.first().map_or(0..0, |r| r.header.clone());
        vec![match e {
            CodegenError::StackTooLarge { bytes, .. } => Diagnostic::error(
                "L0603",
                format!("these rules need {bytes} bytes of stack, more than the kernel's 512"),
                span,
            ),
            // One program holds every rule of a kind: too many rules make it longer than
            // eBPF's 16-bit jumps reach.
            CodegenError::JumpOutOfRange { func, .. } => {
                let kind = hir::Kind::ALL
                    .into_iter()
                    .find(|k| lower::Entry::of(*k).iter().any(|e| e.symbol() == func));
                let rules = kind.map_or(0, |k| set.rules.iter().filter(|r| r.kind == k).count());
                Diagnostic::error(
                    "L0601",
                    format!(
                        "{rules} `{}` rules make one program longer than eBPF's jumps reach",
                        kind.map_or("?", |k| k.name())
                    ),
                    kind.map_or(span.clone(), at),
                )
                .with_label("the first of them")
                .with_help("put the values of rules that differ only in a value into one rule with `in` and a `list`, or split the rules into several files")
            }
            other => Diagnostic::error(
                "I0004",
                format!("internal error compiling rules: {other}"),
                span,
            ),
        }]
    })?;
    let layout = layout(set, &module, &code);
    let rules = rules_layout(set, source);
    let spec = codegen::object::module_spec(&module, &code);
    Ok(Output {
        probes: crate::probe::Output {
            module,
            code,
            object,
            spec,
            layout,
        },
        rules,
    })
}

fn field_ty(f: &hir::Field) -> &'static str {
    match f.ty {
        FieldTy::Int if f.name == "cgroup" => "cgroup",
        FieldTy::Int => "u64",
        FieldTy::Str(_) => "string",
        FieldTy::Args(_) => "args",
        FieldTy::Addr => "addr",
        FieldTy::Comms(_) => "comms",
    }
}

fn field_size(f: &hir::Field) -> u32 {
    match f.ty {
        FieldTy::Int => 8,
        FieldTy::Addr => 16,
        FieldTy::Comms(n) => 16 * n,
        FieldTy::Str(n) | FieldTy::Args(n) => n,
    }
}

/// layout.json of a rule object, as probes describe theirs.
pub fn layout(set: &RuleSet, m: &crate::mir::Module, code: &codegen::Compiled) -> Layout {
    let spec = codegen::object::module_spec(m, code);
    let kinds = set.kinds();
    let probes = lower::Entry::all(set)
        .into_iter()
        .filter(|e| e.cgroup().is_none())
        .map(|e| {
            let sym = e.symbol();
            let i = m.func_by_name(&sym).map_or(0, |f| f.index());
            let (insns, stack) = code
                .funcs
                .get(i)
                .map_or((0, 0), |f| (f.code.insns.len(), f.frame.size));
            let (section, attach) = if e.btf() {
                (
                    format!("tp_btf/{}", e.tracepoint()),
                    ProbeAttach::BtfTracepoint {
                        name: e.tracepoint().into(),
                    },
                )
            } else {
                (
                    format!("tracepoint/syscalls/{}", e.tracepoint()),
                    ProbeAttach::Tracepoint {
                        category: "syscalls".into(),
                        name: e.tracepoint().into(),
                    },
                )
            };
            ProbeLayout {
                name: sym.clone(),
                program: sym,
                section,
                attach,
                insns,
                stack,
            }
        })
        .collect();
    let records = kinds
        .iter()
        .map(|k| RecordLayout {
            probe: format!("rule_{}", k.name()),
            size: k.record_size(),
            fields: std::iter::once(KeyFieldLayout {
                name: "rule".into(),
                ty: "u64".into(),
                offset: hir::OFF_RULE,
                size: 8,
            })
            .chain(k.fields().iter().map(|f| {
                KeyFieldLayout {
                    name: f.name.into(),
                    // argv as a plain string shows argv[0] to consumers that know no `args`.
                    ty: match field_ty(f) {
                        "args" | "comms" => "string",
                        t => t,
                    }
                    .into(),
                    offset: f.offset,
                    size: field_size(f),
                }
            }))
            .collect(),
            format: None,
        })
        .collect();
    Layout {
        schema: obj::SCHEMA,
        license: spec.license.clone(),
        stacks: None,
        programs: Vec::new(),
        maps: spec.maps.iter().map(obj::map_layout).collect(),
        probes,
        aggregations: Vec::new(),
        schedule: Vec::new(),
        events: Some(EventsLayout {
            ring: crate::probe::lower::EVENTS_MAP.into(),
            lost: crate::probe::lower::LOST_MAP.into(),
            records,
        }),
    }
}

/// 1-based line and column of byte `at`.
fn line_col(source: &str, at: usize) -> (usize, usize) {
    let before = source.get(..at).unwrap_or(source);
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

pub fn rules_layout(set: &RuleSet, source: &str) -> RulesLayout {
    RulesLayout {
        rules: set
            .rules
            .iter()
            .map(|r| {
                let (line, column) = line_col(source, r.header.start);
                let mut actions = vec!["alert"];
                if r.kill {
                    actions.push("kill");
                }
                if r.deny {
                    actions.push("deny");
                }
                RuleLayout {
                    name: r.name.clone(),
                    kind: r.kind.name(),
                    severity: r.severity.name(),
                    message: r.message.clone(),
                    actions,
                    audit: r.audit,
                    span: [r.header.start, r.header.end],
                    line,
                    column,
                }
            })
            .collect(),
        records: set
            .kinds()
            .iter()
            .map(|k| RuleRecordLayout {
                kind: k.name(),
                size: k.record_size(),
                fields: k
                    .fields()
                    .iter()
                    .map(|f| RuleFieldLayout {
                        name: f.name,
                        ty: field_ty(f),
                        offset: f.offset,
                        size: field_size(f),
                        len: f.len_at,
                        family: (f.ty == FieldTy::Addr).then_some(hir::OFF_FAMILY),
                    })
                    .collect(),
            })
            .collect(),
        scratch: lower::SCRATCH_MAP.into(),
        cgroup: set
            .kinds()
            .iter()
            .flat_map(|k| lower::Entry::of(*k))
            .filter_map(|e| {
                e.cgroup().map(|attach| CgroupProgram {
                    program: e.symbol(),
                    attach,
                })
            })
            .collect(),
        mode: set
            .rules
            .iter()
            .any(|r| r.kill || r.deny)
            .then(|| lower::MODE_MAP.into()),
        rate: lower::RATE_MAP.into(),
        limit: lower::LIMIT_MAP.into(),
        procs: lower::uses_procs(set).then(|| lower::PROCS_MAP.into()),
        sets: lower::set_maps(set)
            .into_iter()
            .map(|m| SetMapLayout {
                map: m.name,
                field: m.field,
                key: if m
                    .entries
                    .iter()
                    .any(|(k, _)| matches!(k, hir::SetValue::Int(_)))
                {
                    "u64"
                } else {
                    "string"
                },
                key_size: m.key_size,
                entries: m
                    .entries
                    .into_iter()
                    .map(|(k, v)| {
                        let k = match k {
                            hir::SetValue::Str(b) => {
                                SetKey::Str(String::from_utf8_lossy(&b).into_owned())
                            }
                            hir::SetValue::Int(n) => SetKey::Int(n),
                        };
                        (k, v)
                    })
                    .collect(),
            })
            .collect(),
    }
}
