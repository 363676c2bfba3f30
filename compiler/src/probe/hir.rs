//! The typed HIR of probes: hooks, `where` guards and aggregations over typed
//! expressions, and the aggregation maps they update. Lowering (`probe::lower`) reads it.

use crate::syntax::ast::Span;
use serde::Serialize;

/// Every probe of a file and the aggregation maps they share.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct Probes {
    pub probes: Vec<Probe>,
    pub maps: Vec<AggMap>,
    /// Record kinds `emit` sends through the ring buffer; a record's first word is its
    /// index here.
    pub events: Vec<EventDef>,
    /// Maps set by `NAME[KEYS] = VALUE` (per-thread variables are keyed by `tid`).
    pub vars: Vec<VarMap>,
    /// `interval`, `begin` and `end` probes: run by `pol run` itself, not the kernel.
    pub schedule: Vec<Scheduled>,
}

/// A probe `pol run` runs in user space: when, and what it does with which maps.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Scheduled {
    pub when: When,
    /// In order: print or clear the aggregation map `maps[map]`, or print `texts[i]`.
    pub actions: Vec<(MapAction, usize)>,
    /// What `print("text")` statements print.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub texts: Vec<String>,
    pub span: Span,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum When {
    Begin,
    End,
    /// Every this many nanoseconds.
    Interval(u64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum MapAction {
    Print,
    Clear,
    /// `print("text")`: the index is into `Scheduled::texts`.
    Text,
}

/// A map of u64 values set, read and deleted by statements (not printed at the end).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VarMap {
    pub symbol: String,
    pub keys: Vec<KeyField>,
    /// The first assignment.
    pub span: Span,
}

impl VarMap {
    pub fn key_layout(&self) -> (Vec<u32>, u32) {
        let mut off = 0;
        let mut offs = Vec::new();
        for k in &self.keys {
            offs.push(off);
            off += k.size();
        }
        (offs, off.max(8))
    }
}

/// The record one `emit` statement sends: an id word, then its fields.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EventDef {
    /// The probe's name as written (empty if anonymous).
    pub probe: String,
    pub fields: Vec<KeyField>,
    /// `print("..{}..", ..)`: the format its fields fill, printed as one line of text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    pub span: Span,
}

/// How many `{}` a `print` format has, or why it is not a format (a lone `{` or `}`;
/// `{{` and `}}` are literal braces).
pub fn placeholders(format: &str) -> Result<usize, String> {
    let mut n = 0;
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, chars.peek()) {
            ('{', Some('{')) | ('}', Some('}')) => {
                chars.next();
            }
            ('{', Some('}')) => {
                chars.next();
                n += 1;
            }
            ('{', _) => return Err("a `{` opens `{}` (write `{{` for a brace)".into()),
            ('}', _) => return Err("a `}` without its `{` (write `}}` for a brace)".into()),
            _ => {}
        }
    }
    Ok(n)
}

/// `format` with each `{}` replaced by the next of `values` (as [`placeholders`] counts
/// them; missing values print as nothing).
pub fn render(format: &str, values: &[String]) -> String {
    let mut out = String::with_capacity(format.len());
    let mut next = values.iter();
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, chars.peek()) {
            ('{', Some('{')) | ('}', Some('}')) => {
                chars.next();
                out.push(c);
            }
            ('{', Some('}')) => {
                chars.next();
                out.push_str(next.next().map_or("", String::as_str));
            }
            _ => out.push(c),
        }
    }
    out
}

impl EventDef {
    /// Offsets of the fields (after the 8-byte id) and the record's size.
    pub fn layout(&self) -> (Vec<u32>, u32) {
        let mut off = 8;
        let mut offs = Vec::new();
        for f in &self.fields {
            offs.push(off);
            off += f.size();
        }
        (offs, off)
    }
}

impl Probes {
    pub fn is_empty(&self) -> bool {
        self.probes.is_empty() && self.schedule.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Probe {
    /// The name as written; empty for an anonymous probe.
    pub name: String,
    /// The program's symbol: `probe_NAME`, or `probe_N` for the N-th probe if anonymous.
    pub symbol: String,
    pub hook: ProbeHook,
    /// In source order: a `where` guards every step after it.
    pub steps: Vec<Step>,
    /// The statement each step comes from (parallel to `steps`).
    pub step_spans: Vec<Span>,
    pub span: Span,
}

/// Where a probe attaches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum ProbeHook {
    Tracepoint {
        category: String,
        name: String,
    },
    /// A raw tracepoint (arguments as an array of u64).
    RawTracepoint {
        name: String,
    },
    /// A BTF-typed raw tracepoint.
    BtfTracepoint {
        name: String,
    },
    /// A function of a user-space binary; `ret`: when it returns.
    Uprobe {
        binary: String,
        function: String,
        ret: bool,
    },
    /// CPU sampling: a software cpu-clock event `hz` times a second on every CPU.
    Profile {
        hz: u64,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Step {
    /// The steps after it run only when this holds.
    Where(Expr),
    /// Update `maps[map]` at the key made of `keys` (one per key field, in order) with
    /// `value` (absent for `count`).
    Aggregate {
        map: usize,
        keys: Vec<Expr>,
        value: Option<Expr>,
    },
    /// Send `events[event]` with these field values through the ring buffer.
    Emit { event: usize, fields: Vec<Expr> },
    /// `vars[var][keys] = value`.
    Assign {
        var: usize,
        keys: Vec<Expr>,
        value: Expr,
    },
    /// Remove `vars[var][keys]`.
    Delete { var: usize, keys: Vec<Expr> },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Expr {
    pub kind: ExprKind,
    pub ty: Ty,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum ExprKind {
    Int(u64),
    Str(String),
    Bool(bool),
    Builtin(Builtin),
    Cmp(CmpOp, Box<Expr>, Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    /// `vars[var][keys]`; when the entry is absent the probe stops here.
    Var {
        var: usize,
        keys: Vec<Expr>,
    },
    /// An argument of the probe's event: `bytes` at `offset` of the context (a tracepoint
    /// record, or a raw tracepoint's u64 array), widened to u64.
    Arg {
        offset: u32,
        bytes: u8,
        signed: bool,
    },
    /// `str(ptr, len)`: the NUL-terminated string `ptr` points at, at most `len` bytes
    /// with the NUL, from user or kernel memory.
    StrRead {
        ptr: Box<Expr>,
        user: bool,
        len: u32,
    },
    /// A string inside a tracepoint record: the `char` array of `len` bytes at `offset`,
    /// or (`data_loc`) the NUL-terminated data the `__data_loc` u32 at `offset` locates
    /// (`offset | length << 16`), at most `len` bytes.
    RecordStr {
        offset: u32,
        len: u32,
        data_loc: bool,
    },
    /// `join(ptr, n)`: the strings of a NULL-terminated array of `n` pointers at most
    /// (execve's `argv`), each up to [`JOIN_EACH`] bytes in its own chunk; user space
    /// joins the chunks with spaces up to the first empty one.
    Join {
        ptr: Box<Expr>,
        user: bool,
        n: u32,
    },
    /// Wrapping u64 arithmetic; `x / 0` is 0 (eBPF's rule).
    Arith(ArithOp, Box<Expr>, Box<Expr>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ArithOp {
    Add,
    Sub,
    Mul,
    Div,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// Types of probe expressions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Ty {
    /// An unsigned 64-bit integer (narrower values are widened).
    Int,
    /// A NUL-padded string of at most this many bytes (the NUL included).
    Str(u32),
    Bool,
    /// A pointer argument: only `str(..)` reads through it.
    Ptr {
        user: bool,
    },
    /// `kstack` / `ustack` (`user`): a stack, a map key only (an id in the stack map;
    /// a user stack's key also holds its process id, to name its frames).
    Stack {
        user: bool,
    },
}

impl std::fmt::Display for Ty {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ty::Int => write!(f, "an integer"),
            Ty::Str(_) => write!(f, "a string"),
            Ty::Bool => write!(f, "a boolean"),
            Ty::Ptr { .. } => write!(f, "a pointer"),
            Ty::Stack { .. } => write!(f, "a stack"),
        }
    }
}

/// Values every probe can read about the current task and moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Builtin {
    /// Process id (the kernel's tgid).
    Pid,
    /// Thread id (the kernel's pid).
    Tid,
    Uid,
    Gid,
    /// The task's command name (16 bytes).
    Comm,
    /// The cgroup v2 id.
    Cgroup,
    Cpu,
    /// Monotonic time in nanoseconds.
    Nsecs,
    /// The kernel stack (a map key: `count by kstack`).
    Kstack,
    /// The user stack (a map key: `count by ustack`).
    Ustack,
}

impl Builtin {
    pub const ALL: [(&'static str, Builtin); 10] = [
        ("pid", Builtin::Pid),
        ("tid", Builtin::Tid),
        ("uid", Builtin::Uid),
        ("gid", Builtin::Gid),
        ("comm", Builtin::Comm),
        ("cgroup", Builtin::Cgroup),
        ("cpu", Builtin::Cpu),
        ("nsecs", Builtin::Nsecs),
        ("kstack", Builtin::Kstack),
        ("ustack", Builtin::Ustack),
    ];

    pub fn name(self) -> &'static str {
        Builtin::ALL
            .iter()
            .find(|(_, b)| *b == self)
            .map_or("?", |(n, _)| n)
    }

    pub fn ty(self) -> Ty {
        match self {
            Builtin::Comm => Ty::Str(COMM_LEN),
            Builtin::Kstack => Ty::Stack { user: false },
            Builtin::Ustack => Ty::Stack { user: true },
            _ => Ty::Int,
        }
    }
}

/// `TASK_COMM_LEN`.
pub const COMM_LEN: u32 = 16;

/// Bytes of each string of a `join(..)` (its chunk, NUL included).
pub const JOIN_EACH: u32 = 64;
/// Strings a `join(ARRAY)` reads when no count is given.
pub const JOIN_DEFAULT: u32 = 6;

/// An aggregation map: one entry per distinct key, updated by every statement naming it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AggMap {
    /// The map's symbol in the object.
    pub symbol: String,
    /// As printed: `@opens`, or `@` for an anonymous one.
    pub display: String,
    pub func: AggFunc,
    pub keys: Vec<KeyField>,
    /// The first statement that named it.
    pub span: Span,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum AggFunc {
    Count,
    Sum,
    Min,
    Max,
    Avg,
    Stats,
    /// Power-of-two buckets.
    Hist,
    /// Linear buckets of `step` from `min` to `max`.
    Lhist {
        min: u64,
        max: u64,
        step: u64,
    },
}

impl AggFunc {
    pub fn name(self) -> &'static str {
        match self {
            AggFunc::Count => "count",
            AggFunc::Sum => "sum",
            AggFunc::Min => "min",
            AggFunc::Max => "max",
            AggFunc::Avg => "avg",
            AggFunc::Stats => "stats",
            AggFunc::Hist => "hist",
            AggFunc::Lhist { .. } => "lhist",
        }
    }

    /// Whether the map's key ends with a bucket index.
    pub fn bucketed(self) -> bool {
        matches!(self, AggFunc::Hist | AggFunc::Lhist { .. })
    }

    /// The value's u64 words: name and how per-CPU copies merge.
    pub fn value_words(self) -> &'static [(&'static str, Merge)] {
        match self {
            AggFunc::Count | AggFunc::Hist | AggFunc::Lhist { .. } => &[("count", Merge::Sum)],
            AggFunc::Sum => &[("sum", Merge::Sum)],
            AggFunc::Min | AggFunc::Max | AggFunc::Avg | AggFunc::Stats => &[
                ("count", Merge::Sum),
                ("sum", Merge::Sum),
                ("min", Merge::Min),
                ("max", Merge::Max),
            ],
        }
    }
}

/// How the per-CPU copies of a value word combine when read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Merge {
    Sum,
    /// The least over CPUs whose `count` is not zero.
    Min,
    Max,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyField {
    /// As printed in JSON: the builtin's name, the argument's (`args.NAME`), or `key0`,
    /// `key1`, ...
    pub name: String,
    pub ty: Ty,
    /// The `cgroup` builtin: user space shows the cgroup's path, not its id.
    pub cgroup: bool,
    /// A signed argument (or arithmetic on one): shown as a signed number.
    pub signed: bool,
    /// A `join(..)`: chunks of [`JOIN_EACH`] bytes, shown joined with spaces.
    pub joined: bool,
}

impl Expr {
    /// Whether the value is signed: a signed argument, or arithmetic on one. Comparisons
    /// of signed values are signed (`args.ret < 0`).
    pub fn is_signed(&self) -> bool {
        match &self.kind {
            ExprKind::Arg { signed, .. } => *signed,
            ExprKind::Arith(_, a, b) => a.is_signed() || b.is_signed(),
            _ => false,
        }
    }

    /// Whether this is a `join(..)` of strings.
    pub fn is_joined(&self) -> bool {
        matches!(self.kind, ExprKind::Join { .. })
    }

    /// Whether this is the `cgroup` builtin.
    pub fn is_cgroup(&self) -> bool {
        matches!(self.kind, ExprKind::Builtin(Builtin::Cgroup))
    }
}

impl KeyField {
    /// Bytes in the key: integers take 8, strings their length rounded to 8.
    pub fn size(&self) -> u32 {
        match self.ty {
            Ty::Str(n) => n.div_ceil(8) * 8,
            Ty::Int | Ty::Bool | Ty::Ptr { .. } | Ty::Stack { .. } => 8,
        }
    }
}

impl AggMap {
    /// Offsets of the key fields (then the bucket, for histograms) and the key's size.
    pub fn key_layout(&self) -> (Vec<u32>, u32) {
        let mut off = 0;
        let mut offs = Vec::new();
        for k in &self.keys {
            offs.push(off);
            off += k.size();
        }
        if self.func.bucketed() {
            offs.push(off);
            off += 8;
        }
        // A map key cannot be empty: a plain `count` is keyed by one zero word.
        (offs, off.max(8))
    }

    pub fn value_size(&self) -> u32 {
        self.func.value_words().len() as u32 * 8
    }

    /// Whether the map is one per-CPU array slot rather than a per-CPU hash: no key, and
    /// a value whose first word counts events, so a slot never written (all zeros) reads
    /// as no entry. A lookup in an array is an index, not a hash and compare.
    pub fn is_array(&self) -> bool {
        self.keys.is_empty()
            && matches!(
                self.func,
                AggFunc::Count | AggFunc::Min | AggFunc::Max | AggFunc::Avg | AggFunc::Stats
            )
    }
}
