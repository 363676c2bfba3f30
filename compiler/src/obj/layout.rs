//! layout.json: what the runtime needs to attach programs and decode maps and events,
//! without parsing the object. Field order is declaration order and lists keep spec order,
//! so the output is deterministic. Bump [`SCHEMA`] on any incompatible change.

use serde::{Deserialize, Serialize};

use super::{AttachSpec, BtfTy, MapKind, MapSpec, ObjectSpec, RuleInfo, StatsInfo};

/// Version of the layout.json format.
pub const SCHEMA: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Layout {
    pub schema: u32,
    pub license: String,
    pub programs: Vec<ProgramLayout>,
    pub maps: Vec<MapLayout>,
    /// Tracing probes: each program's attach point (objects of `probe` blocks).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub probes: Vec<ProbeLayout>,
    /// How to read and print each aggregation map, from its own key and value schema.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aggregations: Vec<AggregationLayout>,
    /// The stack trace map `kstack` keys are ids in (u32 id -> u64 return addresses,
    /// innermost first, 0 after the last).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stacks: Option<String>,
    /// What `pol run` does with maps at start, at intervals and at the end.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub schedule: Vec<ScheduleLayout>,
    /// The records `emit` statements send through the ring buffer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events: Option<EventsLayout>,
}

/// An `interval`, `begin` or `end` probe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScheduleLayout {
    /// `begin`, `end` or `interval`.
    pub when: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every_ns: Option<u64>,
    pub actions: Vec<MapActionLayout>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MapActionLayout {
    /// `print` or `clear` (a map), or `text` (`print("text")`).
    pub op: String,
    /// The aggregation map (its `map` name); empty for `text`.
    pub map: String,
    /// What a `text` action prints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

/// The ring buffer of `emit` records and how to decode each.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventsLayout {
    /// The ring buffer map.
    pub ring: String,
    /// A per-CPU array (one u64 at key 0) counting records the buffer had no room for.
    pub lost: String,
    /// Record kinds: a record's first u64 (little-endian) is its index in this list.
    pub records: Vec<RecordLayout>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordLayout {
    /// The probe that emits it (empty if anonymous).
    pub probe: String,
    pub size: u32,
    /// Fields as key fields are: `u64` or `string`, with offsets in the record.
    pub fields: Vec<KeyFieldLayout>,
    /// A `print("..{}..", ..)` record: the format its fields fill, in order (`{{` and
    /// `}}` are braces); printed as that one line instead of columns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
}

/// One probe program and where it attaches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeLayout {
    /// As written in the source; empty for an anonymous probe.
    pub name: String,
    /// The program's symbol in the object.
    pub program: String,
    pub section: String,
    pub attach: ProbeAttach,
    /// Instruction slots (`ld_imm64` counts twice).
    pub insns: usize,
    /// Stack bytes of the program's frame.
    pub stack: u32,
}

/// Where a probe attaches (`kind` names the variant).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ProbeAttach {
    Tracepoint {
        category: String,
        name: String,
    },
    RawTracepoint {
        name: String,
    },
    BtfTracepoint {
        name: String,
    },
    /// `function` in `binary`; `ret` for a uretprobe.
    Uprobe {
        binary: String,
        function: String,
        ret: bool,
    },
    /// A software cpu-clock perf event at `hz` on every online CPU.
    Profile {
        hz: u64,
    },
}

/// An aggregation map: what it computes, its key fields and value words.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AggregationLayout {
    /// The map's name in `maps` and in the object.
    pub map: String,
    /// How it is printed: `@opens`, `@` for an anonymous one.
    pub display: String,
    pub function: AggFunction,
    /// Per-CPU map: each CPU's copy of a value is merged as its word's `merge` says.
    pub per_cpu: bool,
    /// Key fields in order; histograms end with the `bucket` index.
    pub key: Vec<KeyFieldLayout>,
    pub value: Vec<ValueWordLayout>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AggFunction {
    Count,
    Sum,
    Min,
    Max,
    Avg,
    Stats,
    /// Bucket 0 holds 0, bucket k ≥ 1 holds [2^(k-1), 2^k).
    Hist,
    /// Bucket 0 holds values below `min`, bucket k ≥ 1 [min + (k-1)·step, min + k·step),
    /// the last values from `max` up.
    Lhist {
        min: u64,
        max: u64,
        step: u64,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyFieldLayout {
    pub name: String,
    /// `u64` (little-endian), `i64` (the same, signed), `string` (NUL-padded bytes),
    /// `bucket` (u64 index),
    /// `kstack` (an id in the `stacks` map) or `cgroup` (a u64 cgroup v2 id, which
    /// consumers show as the cgroup's path).
    #[serde(rename = "type")]
    pub ty: String,
    pub offset: u32,
    pub size: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValueWordLayout {
    pub name: String,
    /// A little-endian u64 at this offset of the value.
    pub offset: u32,
    /// `sum`, `min` or `max` over CPUs (`min`/`max` only over CPUs whose `count` is not 0).
    pub merge: String,
}

impl AggFunction {
    /// The function's name in the language (`count`, `lhist`, ...).
    pub fn name(self) -> &'static str {
        match self {
            AggFunction::Count => "count",
            AggFunction::Sum => "sum",
            AggFunction::Min => "min",
            AggFunction::Max => "max",
            AggFunction::Avg => "avg",
            AggFunction::Stats => "stats",
            AggFunction::Hist => "hist",
            AggFunction::Lhist { .. } => "lhist",
        }
    }
}

impl Layout {
    /// A layout.json read back, as the runtime and any other consumer read it.
    pub fn parse(json: &str) -> Result<Layout, serde_json::Error> {
        serde_json::from_str(json)
    }

    /// Pretty-printed layout.json, as written next to the object. An error, not an empty
    /// layout, if serialization fails (it cannot for these plain structs today, but a
    /// runtime that loads an empty layout would see no maps and no programs).
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string_pretty(self)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProgramLayout {
    /// Symbol name: the name loaders know the program by.
    pub name: String,
    pub section: String,
    pub attach: AttachSpec,
    /// Instruction slots (`ld_imm64` counts twice).
    pub insns: usize,
    pub rules: Vec<RuleInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stats: Option<StatsInfo>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MapLayout {
    pub name: String,
    pub kind: MapKind,
    /// `None` for ring buffers.
    pub key: Option<TypeLayout>,
    /// `None` for ring buffers.
    pub value: Option<TypeLayout>,
    /// Ring buffers only: the record type the programs write.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<TypeLayout>,
    pub max_entries: u32,
    /// `map_flags` as written to the object.
    pub flags: u32,
    pub key_size: u32,
    pub value_size: u32,
}

/// A type with its size and, for structs, each field's byte offset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TypeLayout {
    /// `u8`, `u16`, `u32`, `u64`, `bytes` or `struct`.
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub size: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fields: Option<Vec<FieldLayout>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldLayout {
    pub name: String,
    pub offset: u32,
    #[serde(rename = "type")]
    pub ty: TypeLayout,
}

impl TypeLayout {
    pub fn of(ty: &BtfTy) -> Self {
        let plain = |kind: &str| TypeLayout {
            kind: kind.into(),
            name: None,
            size: ty.size(),
            fields: None,
        };
        match ty {
            BtfTy::U8 => plain("u8"),
            BtfTy::U16 => plain("u16"),
            BtfTy::U32 => plain("u32"),
            BtfTy::U64 => plain("u64"),
            BtfTy::Bytes(_) => plain("bytes"),
            BtfTy::Struct { name, fields } => {
                let (_, offsets) = ty.field_offsets();
                let fields = fields
                    .iter()
                    .zip(offsets)
                    .map(|((fname, fty), offset)| FieldLayout {
                        name: fname.clone(),
                        offset,
                        ty: TypeLayout::of(fty),
                    })
                    .collect();
                TypeLayout {
                    kind: "struct".into(),
                    name: Some(name.clone()),
                    size: ty.size(),
                    fields: Some(fields),
                }
            }
        }
    }
}

pub(crate) fn build(spec: &ObjectSpec) -> Layout {
    let programs = spec
        .programs
        .iter()
        .map(|p| ProgramLayout {
            name: p.name.clone(),
            section: p.section.clone(),
            attach: p.attach.clone(),
            insns: p.insns.len(),
            rules: p.rules.clone(),
            stats: p.stats.clone(),
        })
        .collect();
    let maps = spec.maps.iter().map(map_layout).collect();
    Layout {
        schema: SCHEMA,
        license: spec.license.clone(),
        programs,
        maps,
        probes: Vec::new(),
        aggregations: Vec::new(),
        schedule: Vec::new(),
        stacks: None,
        events: None,
    }
}

/// The layout of one map as the object declares it.
pub fn map_layout(m: &MapSpec) -> MapLayout {
    let ring = m.kind == MapKind::RingBuf;
    let (key_size, value_size) = m.key_value_size();
    MapLayout {
        name: m.name.clone(),
        kind: m.kind,
        key: (!ring).then(|| TypeLayout::of(&m.key)),
        value: (!ring).then(|| TypeLayout::of(&m.value)),
        record: ring.then(|| TypeLayout::of(&m.value)),
        max_entries: m.max_entries,
        flags: m.effective_flags(),
        key_size,
        value_size,
    }
}
