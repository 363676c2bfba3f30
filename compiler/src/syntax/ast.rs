//! The abstract syntax tree: what the parser returns, every node with its byte span.
//!
//! The tree covers all four kinds of top-level blocks (`filter`, `probe`, `rule`, `test`)
//! even where later stages do not lower them yet. Nodes that failed to parse are kept as
//! `ExprKind::Error` / `Stmt::Error` so that later stages can skip them without new errors.

use serde::Serialize;

/// Byte offsets into the source file, half-open.
pub type Span = std::ops::Range<usize>;

/// Which source a span is in: the file being compiled, or a standard-library module
/// (by its dotted path, `std.net`), so that a name can lead to its definition there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum FileId {
    Main,
    Std(&'static str),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Ident {
    pub name: String,
    pub span: Span,
}

/// A dotted name: `tcp.dport`, `std.net.rfc1918`, `blocked`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Path {
    pub segments: Vec<Ident>,
    pub span: Span,
}

impl Path {
    /// `a.b.c` as one string.
    pub fn dotted(&self) -> String {
        self.segments
            .iter()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>()
            .join(".")
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct File {
    pub items: Vec<Item>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Item {
    Import(Import),
    Const(ConstDecl),
    Set(SetDecl),
    /// `list NAME = { .. }` or `macro NAME = CONDITION` (security rules).
    Macro(MacroDecl),
    Filter(Filter),
    Probe(Probe),
    Rule(SecRule),
    Test(TestBlock),
}

/// `import std.net`
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Import {
    pub path: Path,
    pub span: Span,
}

/// A type as written: `port`, `cidr`, `u16`, `str<16>`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TypeExpr {
    pub name: Ident,
    /// The `N` of `str<N>` / `bytes<N>`.
    pub param: Option<u64>,
    pub span: Span,
}

/// `const ssh: port = 22` (the type is optional).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConstDecl {
    pub name: Ident,
    pub ty: Option<TypeExpr>,
    pub value: Expr,
    pub span: Span,
}

/// `set blocked: cidr = { 10.0.0.0/8, 192.0.2.1 }` or `= file("blocklist.txt")`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SetDecl {
    pub name: Ident,
    pub ty: TypeExpr,
    /// A `SetLit`, a `Call` (`file(..)`), or a path to another set.
    pub value: Expr,
    pub span: Span,
}

/// `list shells = { "sh", "bash" }` (`list` true) or `macro shell = comm in shells`: named
/// values and conditions security rules reuse, as in Falco.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MacroDecl {
    pub list: bool,
    pub name: Ident,
    pub value: Expr,
    pub span: Span,
}

/// `xdp("eth0")`, `tc("eth0", ingress)`, `tracepoint(syscalls.sys_enter_openat)`, `exec`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Hook {
    pub kind: Ident,
    /// `None` when written without parentheses (`on exec`).
    pub args: Option<Vec<Expr>>,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Filter {
    pub name: Ident,
    pub hook: Hook,
    pub rules: Vec<FilterRule>,
    /// False when the header did not parse (its error is reported): `name` and `hook` are
    /// then empty placeholders and only the rules mean something.
    pub header_parsed: bool,
    pub span: Span,
}

/// The empty name of an item whose header did not parse, or of an anonymous probe.
pub fn empty_ident(at: usize) -> Ident {
    Ident {
        name: String::new(),
        span: at..at,
    }
}

/// The empty hook of an item whose header did not parse.
fn empty_hook(at: usize) -> Hook {
    Hook {
        kind: empty_ident(at),
        args: None,
        span: at..at,
    }
}

impl Filter {
    /// A filter whose header did not parse, starting at `at`.
    pub fn recovered(at: usize, rules: Vec<FilterRule>, span: Span) -> Filter {
        Filter {
            hook: empty_hook(at),
            name: empty_ident(at),
            rules,
            header_parsed: false,
            span,
        }
    }
}

impl Probe {
    /// A probe whose header did not parse, starting at `at`.
    pub fn recovered(at: usize, body: Vec<Stmt>, span: Span) -> Probe {
        Probe {
            name: empty_ident(at),
            hook: empty_hook(at),
            body,
            header_parsed: false,
            span,
        }
    }
}

impl SecRule {
    /// A security rule whose header did not parse, starting at `at`.
    pub fn recovered(at: usize, body: Vec<Stmt>, span: Span) -> SecRule {
        SecRule {
            name: empty_ident(at),
            hook: empty_hook(at),
            body,
            header_parsed: false,
            span,
        }
    }
}

impl TestBlock {
    /// A test block whose header did not parse, starting at `at`.
    pub fn recovered(at: usize, cases: Vec<TestCase>, span: Span) -> TestBlock {
        TestBlock {
            name: String::new(),
            name_span: at..at,
            target: empty_ident(at),
            cases,
            header_parsed: false,
            span,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Verdict {
    Pass,
    Drop,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Action {
    pub verdict: Verdict,
    pub span: Span,
    /// `log` after the rule's counts: a flow event per decided packet (docs/stateful.md).
    pub log: Option<Ident>,
}

/// One line of a filter.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum FilterRule {
    /// `drop tcp.dport == 23 count drops[ip.src]`
    Match {
        action: Action,
        cond: Expr,
        counts: Vec<CountClause>,
        span: Span,
    },
    /// `default pass count passed`
    Default {
        action: Action,
        counts: Vec<CountClause>,
        span: Span,
    },
    /// `malformed pass`: what happens to truncated or inconsistent packets (default: drop).
    Malformed {
        action: Action,
        counts: Vec<CountClause>,
        span: Span,
    },
    /// A filter option: `l7 incomplete drop` (`words` are `l7`, `incomplete`).
    Option {
        words: Vec<Ident>,
        action: Action,
        span: Span,
    },
    /// A line that did not parse; its error is already reported.
    Error(Span),
}

/// `count NAME` or `count NAME[KEY]`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CountClause {
    pub map: Ident,
    pub key: Option<Expr>,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Expr {
    pub kind: ExprKind,
    pub span: Span,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum BinOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    In,
    /// `~`: regular-expression match (parsed; not lowered yet).
    Match,
    /// `&`: bitwise and of an integer field and a mask (`tcp.flags & 0x12 == 0x02`).
    BitAnd,
    /// `+`, `-`, `*`, `/`: integer arithmetic (probes).
    Add,
    Sub,
    Mul,
    Div,
    And,
    Or,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum ExprKind {
    Int(u64),
    /// `500ms`, `1s`: nanoseconds.
    Duration(u64),
    Str(String),
    Bool(bool),
    /// `192.0.2.1`
    Ip4([u8; 4]),
    /// `2001:db8::1`
    Ip6([u8; 16]),
    /// `10.0.0.0/8`
    Cidr4([u8; 4], u8),
    /// `2001:db8::/32`
    Cidr6([u8; 16], u8),
    /// `02:00:00:00:00:01`
    Mac([u8; 6]),
    /// A name: a field (`tcp.dport`), a constant, a set, a keyword argument (`ingress`).
    Path(Path),
    /// `1024..2047` (inclusive on both ends).
    Range(Box<Expr>, Box<Expr>),
    /// `{ a, b, c }`
    SetLit(Vec<Expr>),
    /// `[ a, b ]` (used by test packets, e.g. `vlan: [100, 200]`).
    List(Vec<Expr>),
    Binary(BinOp, Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    /// `str(args.filename)`, `file("blocklist.txt")`, `alert("…")`.
    Call(Path, Vec<Expr>),
    /// A map entry: `start[tid]`.
    Index(Path, Vec<Expr>),
    /// `{ pid, comm, file: str(args.filename) }`: a field written alone is `(name, None)`.
    Record(Vec<(Ident, Option<Expr>)>),
    /// Did not parse; its error is already reported.
    Error,
}

/// `probe NAME on HOOK { stmts }`, or `probe HOOK { stmts }` (anonymous: `name` is
/// empty, with an empty span at the start of the probe).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Probe {
    pub name: Ident,
    pub hook: Hook,
    pub body: Vec<Stmt>,
    /// False when the header did not parse (see [`Filter::header_parsed`]).
    pub header_parsed: bool,
    pub span: Span,
}

/// `rule NAME on HOOK { stmts }` (security rules)
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SecRule {
    pub name: Ident,
    pub hook: Hook,
    pub body: Vec<Stmt>,
    /// False when the header did not parse (see [`Filter::header_parsed`]).
    pub header_parsed: bool,
    pub span: Span,
}

/// Statements of probes and security rules.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Stmt {
    /// `where EXPR`
    Where(Expr, Span),
    /// `when EXPR`
    When(Expr, Span),
    /// `unless EXPR` (security rules: an exception; the rule matches only when it is false)
    Unless(Expr, Span),
    /// `count by EXPR, EXPR into NAME` (`by` and `into` parts optional)
    Count {
        by: Vec<Expr>,
        into: Option<Ident>,
        span: Span,
    },
    /// `FUNC(ARGS) by EXPR, .. into NAME`: `sum`, `min`, `max`, `avg`, `stats`, `hist`,
    /// `lhist` (`by` and `into` optional).
    Aggregate {
        func: Ident,
        args: Vec<Expr>,
        by: Vec<Expr>,
        into: Option<Ident>,
        span: Span,
    },
    /// `emit EXPR`
    Emit(Expr, Span),
    /// `action kill, alert("…")`
    Action(Vec<Expr>, Span),
    /// `start[tid] = nsecs`
    Assign {
        map: Ident,
        keys: Vec<Expr>,
        value: Expr,
        span: Span,
    },
    /// `print opens, bytes`, `clear opens`: what `pol run` does with maps in
    /// `interval`, `begin` and `end` probes.
    Command {
        verb: Ident,
        maps: Vec<Ident>,
        span: Span,
    },
    /// `delete start[tid]`
    Delete {
        map: Ident,
        keys: Vec<Expr>,
        span: Span,
    },
    Error(Span),
}

/// `test "name" on FILTER { cases }`
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TestBlock {
    pub name: String,
    pub name_span: Span,
    pub target: Ident,
    pub cases: Vec<TestCase>,
    /// False when the header did not parse (see [`Filter::header_parsed`]).
    pub header_parsed: bool,
    pub span: Span,
}

/// `packet tcp { src: 192.0.2.1, dport: 23, vlan: [100] } => drop count telnet`
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum TestCase {
    Packet {
        /// The layers named after `packet`: `tcp`, `udp`, `icmp`, `ip6 tcp`, ...
        layers: Vec<Ident>,
        fields: Vec<(Ident, Expr)>,
        expect: Action,
        /// `=> drop count telnet count by_src[192.0.2.1]`: counters this packet must
        /// increase by exactly one (the entry of that key, for keyed counters).
        counts: Vec<CountClause>,
        span: Span,
    },
    Error(Span),
}
