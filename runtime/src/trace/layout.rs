//! The probe parts of layout.json, read back as the runtime sees them: the runtime
//! decodes maps from these types, never from the compiler's HIR.

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
pub struct TraceLayout {
    #[serde(default)]
    pub probes: Vec<Probe>,
    #[serde(default)]
    pub aggregations: Vec<Aggregation>,
    #[serde(default)]
    pub events: Option<Events>,
    #[serde(default)]
    pub schedule: Vec<Schedule>,
    /// The stack trace map of `kstack` keys.
    #[serde(default)]
    pub stacks: Option<String>,
}

/// An `interval`, `begin` or `end` probe: what to do with which maps.
#[derive(Debug, Clone, Deserialize)]
pub struct Schedule {
    /// `begin`, `end` or `interval`.
    pub when: String,
    #[serde(default)]
    pub every_ns: Option<u64>,
    pub actions: Vec<MapAction>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct MapAction {
    /// `print` or `clear` (a map), or `text`.
    pub op: String,
    pub map: String,
    /// What a `text` action prints.
    #[serde(default)]
    pub text: Option<String>,
}

/// The ring buffer of `emit` records.
#[derive(Debug, Clone, Deserialize)]
pub struct Events {
    pub ring: String,
    pub lost: String,
    /// A record's first u64 is its index here.
    pub records: Vec<Record>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Record {
    pub probe: String,
    pub size: u32,
    pub fields: Vec<KeyField>,
    /// A `print` record: the format its fields fill (`{}` each, `{{`/`}}` braces).
    #[serde(default)]
    pub format: Option<String>,
}

impl TraceLayout {
    pub fn parse(json: &str) -> Result<TraceLayout, serde_json::Error> {
        serde_json::from_str(json)
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct Probe {
    pub name: String,
    pub program: String,
    pub attach: Attach,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Attach {
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
    Uprobe {
        binary: String,
        function: String,
        ret: bool,
    },
    Profile {
        hz: u64,
    },
}

#[derive(Debug, Clone, Deserialize)]
pub struct Aggregation {
    pub map: String,
    pub display: String,
    pub function: Function,
    pub per_cpu: bool,
    pub key: Vec<KeyField>,
    pub value: Vec<ValueWord>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Function {
    Count,
    Sum,
    Min,
    Max,
    Avg,
    Stats,
    Hist,
    Lhist { min: u64, max: u64, step: u64 },
}

impl Function {
    pub fn name(self) -> &'static str {
        match self {
            Function::Count => "count",
            Function::Sum => "sum",
            Function::Min => "min",
            Function::Max => "max",
            Function::Avg => "avg",
            Function::Stats => "stats",
            Function::Hist => "hist",
            Function::Lhist { .. } => "lhist",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct KeyField {
    pub name: String,
    /// `u64`, `string` or `bucket`.
    #[serde(rename = "type")]
    pub ty: String,
    pub offset: u32,
    pub size: u32,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ValueWord {
    pub name: String,
    pub offset: u32,
    /// `sum`, `min` or `max`.
    pub merge: String,
}
