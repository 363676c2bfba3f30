//! Checks `probe` blocks into the probe HIR: hooks, builtins, `where` guards and
//! aggregations, each error with the span of what is wrong.
//!
//! Codes: E0301 unknown name, E0304 duplicate name, E0401 type mismatch, E0403 operator
//! not defined for a type, E0501 unknown hook, E0502 bad hook argument, E0511 a map used
//! with two aggregations or key types, E0512 bad aggregation call, L0501 not supported yet.

use std::collections::HashMap;

use super::hir::{
    placeholders, render, ArithOp, EventDef, MapAction, Probes, Scheduled, Step, Ty, When,
};
use super::hir::{AggFunc, AggMap, Builtin, CmpOp, Expr, ExprKind, KeyField, Probe, ProbeHook};
use super::hir::{JOIN_DEFAULT, JOIN_EACH};
use crate::catalog::{ArgTy, Catalog, CatalogError, TraceArg};
use crate::diag::{suggest, Diagnostic};

/// `str(PTR)` reads up to this many bytes (bpftrace's default), `str(PTR, N)` up to N, at
/// most [`MAX_STR`]: the read lands on the 512-byte stack or in a ring buffer record.
pub const DEFAULT_STR: u32 = 64;
pub const MAX_STR: u32 = 256;
const MAX_STR_U64: u64 = MAX_STR as u64;
/// The most strings a `join` reads: 8 × 64 bytes, as much as a record field may hold.
const JOIN_MAX: u32 = 8;
const JOIN_MAX_U64: u64 = JOIN_MAX as u64;
use crate::obj::is_c_ident;
use crate::syntax::ast::{self, BinOp, Span};

/// Checks every probe of a file; never fails: returns what checked and every error.
pub fn check(probes: &[&ast::Probe], catalog: &dyn Catalog) -> (Probes, Vec<Diagnostic>) {
    let mut c = Checker {
        catalog,
        args: None,
        out: Probes::default(),
        diags: Vec::new(),
        map_index: HashMap::new(),
        var_index: HashMap::new(),
        symbols: HashMap::new(),
        anon_maps: 0,
    };
    // `interval`, `begin` and `end` probes name maps the others define: checked last.
    let mut scheduled = Vec::new();
    for (i, p) in probes.iter().enumerate() {
        if matches!(p.hook.kind.name.as_str(), "interval" | "begin" | "end") {
            scheduled.push(*p);
        } else {
            c.probe(p, i);
        }
    }
    for p in scheduled {
        c.scheduled(p);
    }
    if c.out.probes.is_empty() && !c.out.schedule.is_empty() && c.diags.is_empty() {
        let span = probes.first().map_or(0..0, |p| p.hook.span.clone());
        c.diags.push(
            Diagnostic::error("E0515", "nothing to trace: no probe attaches to the kernel", span)
                .with_label("this probe runs in `pol run` only")
                .with_help("`interval`, `begin` and `end` print maps that tracepoint, uprobe or profile probes fill"),
        );
    }
    (c.out, c.diags)
}

struct Checker<'c> {
    catalog: &'c dyn Catalog,
    /// The typed arguments of the probe being checked (`None`: no catalog to ask), and
    /// the probe's name for messages.
    args: Option<(String, Vec<TraceArg>)>,
    out: Probes,
    diags: Vec<Diagnostic>,
    /// Maps by the name a statement gives (`@count`, `@hist`, .. for anonymous ones).
    map_index: HashMap<String, usize>,
    /// Variable maps by name.
    var_index: HashMap<String, usize>,
    /// Symbols taken by probes and maps, with the span that took them.
    symbols: HashMap<String, Span>,
    anon_maps: usize,
}

impl Checker<'_> {
    fn probe(&mut self, p: &ast::Probe, index: usize) {
        let Some(hook) = self.hook(&p.hook) else {
            return;
        };
        let Some(args) = self.event_args(&hook, &p.hook) else {
            return;
        };
        self.args = args;
        // Programs are `probe_NAME` (`probe_N` when anonymous) so that a probe and the
        // map it counts into may share a name (`probe opens .. into opens`).
        let (symbol, at) = if p.name.name.is_empty() {
            (format!("probe_{index}"), p.hook.span.clone())
        } else {
            (format!("probe_{}", p.name.name), p.name.span.clone())
        };
        if !self.claim(&symbol, &at) {
            return;
        }
        let mut steps = Vec::new();
        let mut step_spans = Vec::new();
        for s in &p.body {
            match s {
                ast::Stmt::Where(e, _) => {
                    if let Some(e) = self.expr(e) {
                        if self.want(&e, Ty::Bool) {
                            steps.push(Step::Where(e));
                        }
                    }
                }
                ast::Stmt::Count { by, into, span } => {
                    if let Some(step) = self.aggregate(AggFunc::Count, None, by, into, span) {
                        steps.push(step);
                    }
                }
                ast::Stmt::Aggregate {
                    func,
                    args,
                    by,
                    into,
                    span,
                } if func.name == "print" => {
                    if let Some(step) = self.print(args, by, into, span, &p.name.name) {
                        steps.push(step);
                    }
                }
                ast::Stmt::Aggregate {
                    func,
                    args,
                    by,
                    into,
                    span,
                } => {
                    if let Some((f, value)) = self.agg_call(func, args, span) {
                        if let Some(step) = self.aggregate(f, Some(value), by, into, span) {
                            steps.push(step);
                        }
                    }
                }
                ast::Stmt::Assign {
                    map, keys, value, ..
                } => {
                    if let Some(step) = self.assign(map, keys, value) {
                        steps.push(step);
                    }
                }
                ast::Stmt::Delete { map, keys, .. } => {
                    if let Some((var, keys)) = self.var_ref(map, keys) {
                        steps.push(Step::Delete { var, keys });
                    }
                }
                ast::Stmt::Emit(e, _) => {
                    if let Some(step) = self.emit(e, &p.name.name) {
                        steps.push(step);
                    }
                }
                ast::Stmt::Command { span, .. } => {
                    self.diags.push(
                        Diagnostic::error(
                            "E0515",
                            "`print` and `clear` belong to `interval`, `begin` and `end` probes",
                            span.clone(),
                        )
                        .with_label("this probe runs in the kernel")
                        .with_help("add `probe every on interval(1s) { print MAP }`"),
                    );
                }
                ast::Stmt::When(_, span)
                | ast::Stmt::Unless(_, span)
                | ast::Stmt::Action(_, span) => {
                    self.diags.push(
                        Diagnostic::error(
                            "E0512",
                            "`when`, `unless` and `action` belong to security rules, not probes",
                            span.clone(),
                        )
                        .with_label("not a probe statement")
                        .with_help("a probe filters with `where EXPR`"),
                    );
                }
                ast::Stmt::Error(_) => {}
            }
            step_spans.resize(steps.len(), stmt_span(s));
        }
        self.out.probes.push(Probe {
            name: p.name.name.clone(),
            symbol,
            hook,
            steps,
            step_spans,
            span: p.span.clone(),
        });
    }

    /// Takes `name` as an object symbol; false (and an error) when it is taken.
    fn claim(&mut self, name: &str, span: &Span) -> bool {
        if let Some(first) = self.symbols.get(name) {
            let shown = name.strip_prefix("probe_").unwrap_or(name);
            self.diags.push(
                Diagnostic::error("E0304", format!("`{shown}` is defined twice"), span.clone())
                    .with_label("second definition")
                    .with_secondary(first.clone(), "first defined here")
                    .with_help("rename one of them"),
            );
            return false;
        }
        if !is_c_ident(name) {
            self.diags.push(
                Diagnostic::error(
                    "E0502",
                    format!("`{name}` cannot name a probe or map"),
                    span.clone(),
                )
                .with_label("letters, digits and `_` only, not starting with a digit"),
            );
            return false;
        }
        self.symbols.insert(name.to_string(), span.clone());
        true
    }

    fn not_yet(&mut self, span: &Span, what: &str) {
        self.diags.push(
            Diagnostic::error(
                "L0501",
                format!("{what} are not supported yet"),
                span.clone(),
            )
            .with_label("parsed, but this compiler cannot lower it yet"),
        );
    }

    fn hook(&mut self, h: &ast::Hook) -> Option<ProbeHook> {
        match h.kind.name.as_str() {
            "tracepoint" => {
                let arg = match h.args.as_deref() {
                    Some([a]) => a,
                    _ => {
                        self.diags.push(
                            Diagnostic::error(
                                "E0502",
                                "`tracepoint` takes one argument, `CATEGORY.NAME`",
                                h.span.clone(),
                            )
                            .with_label("expected `tracepoint(syscalls.sys_enter_openat)`"),
                        );
                        return None;
                    }
                };
                match &arg.kind {
                    ast::ExprKind::Path(p) if p.segments.len() == 2 => {
                        Some(ProbeHook::Tracepoint {
                            category: p.segments[0].name.clone(),
                            name: p.segments[1].name.clone(),
                        })
                    }
                    _ => {
                        self.diags.push(
                            Diagnostic::error(
                                "E0502",
                                "a tracepoint is named `CATEGORY.NAME`",
                                arg.span.clone(),
                            )
                            .with_label("expected a name such as `syscalls.sys_enter_openat`"),
                        );
                        None
                    }
                }
            }
            "raw_tracepoint" | "tp_btf" => {
                let name = self.one_name(h, "a kernel tracepoint name such as `sched_switch`")?;
                Some(if h.kind.name == "tp_btf" {
                    ProbeHook::BtfTracepoint { name }
                } else {
                    ProbeHook::RawTracepoint { name }
                })
            }
            "uprobe" | "uretprobe" => {
                let shape = format!("expected `{}(\"/path/to/binary\", function)`", h.kind.name);
                let (binary, function) = match h.args.as_deref() {
                    // A third argument declares the parameters (see `event_args`).
                    Some([b, f]) | Some([b, f, _]) => (b, f),
                    _ => {
                        self.diags.push(
                            Diagnostic::error(
                                "E0502",
                                format!(
                                    "`{}` takes a binary, a function and optionally its parameters",
                                    h.kind.name
                                ),
                                h.span.clone(),
                            )
                            .with_label(shape),
                        );
                        return None;
                    }
                };
                let ast::ExprKind::Str(binary) = &binary.kind else {
                    self.diags.push(
                        Diagnostic::error(
                            "E0502",
                            "the binary is a path in quotes",
                            binary.span.clone(),
                        )
                        .with_label(shape),
                    );
                    return None;
                };
                let function = match &function.kind {
                    ast::ExprKind::Path(p) if p.segments.len() == 1 => p.dotted(),
                    ast::ExprKind::Str(s) if !s.is_empty() => s.clone(),
                    _ => {
                        self.diags.push(
                            Diagnostic::error(
                                "E0502",
                                "the function is a symbol name",
                                function.span.clone(),
                            )
                            .with_label(shape),
                        );
                        return None;
                    }
                };
                Some(ProbeHook::Uprobe {
                    binary: binary.clone(),
                    function,
                    ret: h.kind.name == "uretprobe",
                })
            }
            "profile" => match h.args.as_deref() {
                Some([a]) if matches!(a.kind, ast::ExprKind::Int(1..=100_000)) => {
                    let ast::ExprKind::Int(hz) = a.kind else {
                        return None;
                    };
                    Some(ProbeHook::Profile { hz })
                }
                _ => {
                    self.diags.push(
                        Diagnostic::error(
                            "E0502",
                            "`profile` takes a frequency in Hz, 1 to 100000",
                            h.span.clone(),
                        )
                        .with_label("expected `profile(99)`"),
                    );
                    None
                }
            },
            "interval" | "begin" | "end" | "kprobe" | "kretprobe" | "fentry" | "fexit" | "lsm" => {
                self.not_yet(&h.kind.span, &format!("`{}` probes", h.kind.name));
                None
            }
            other => {
                const HOOKS: &[&str] = &[
                    "tracepoint",
                    "raw_tracepoint",
                    "tp_btf",
                    "uprobe",
                    "uretprobe",
                    "profile",
                    "interval",
                    "begin",
                    "end",
                    "kprobe",
                    "fentry",
                    "lsm",
                ];
                let mut d = Diagnostic::error(
                    "E0501",
                    format!("unknown probe hook `{other}`"),
                    h.kind.span.clone(),
                )
                .with_label("not a probe hook");
                let near = suggest::nearest(other, HOOKS.iter().copied(), 3);
                if !near.is_empty() {
                    d = d.with_help(format!("did you mean {}?", suggest::one_of(&near)));
                }
                self.diags.push(d);
                None
            }
        }
    }

    /// An `interval(DURATION)`, `begin` or `end` probe: `print` and `clear` of maps.
    fn scheduled(&mut self, p: &ast::Probe) {
        let h = &p.hook;
        let when = match (h.kind.name.as_str(), h.args.as_deref()) {
            ("begin", None) => When::Begin,
            ("end", None) => When::End,
            ("interval", Some([a])) => match a.kind {
                ast::ExprKind::Duration(ns) if ns >= 10_000_000 => When::Interval(ns),
                _ => {
                    self.diags.push(
                        Diagnostic::error(
                            "E0502",
                            "`interval` takes a duration of at least 10ms",
                            a.span.clone(),
                        )
                        .with_label("expected `1s`, `500ms`, `2m`, ..."),
                    );
                    return;
                }
            },
            (kind, _) => {
                let shape = if kind == "interval" {
                    "`interval(1s)`"
                } else {
                    "no arguments"
                };
                self.diags.push(
                    Diagnostic::error("E0502", format!("`{kind}` takes {shape}"), h.span.clone())
                        .with_label("written as `interval(1s)`, `begin`, `end`"),
                );
                return;
            }
        };
        let mut actions = Vec::new();
        let mut texts = Vec::new();
        for s in &p.body {
            match s {
                ast::Stmt::Aggregate {
                    func,
                    args,
                    by,
                    into,
                    span,
                } if func.name == "print" => {
                    if let Some(text) = self.print_text(args, by, into, span) {
                        actions.push((MapAction::Text, texts.len()));
                        texts.push(text);
                    }
                }
                ast::Stmt::Command { verb, maps, .. } => {
                    let act = match verb.name.as_str() {
                        "print" => MapAction::Print,
                        "clear" => MapAction::Clear,
                        other => {
                            let mut d = Diagnostic::error(
                                "E0512",
                                format!("unknown statement `{other}`"),
                                verb.span.clone(),
                            )
                            .with_label("not a statement");
                            let near = suggest::nearest(other, ["print", "clear"], 2);
                            if !near.is_empty() {
                                d = d
                                    .with_help(format!("did you mean {}?", suggest::one_of(&near)));
                            }
                            self.diags.push(d);
                            continue;
                        }
                    };
                    for m in maps {
                        match self.map_index.get(&m.name) {
                            Some(&i) => actions.push((act, i)),
                            None => {
                                let names: Vec<&str> = self
                                    .map_index
                                    .keys()
                                    .filter(|k| !k.starts_with('@'))
                                    .map(String::as_str)
                                    .collect();
                                let mut d = Diagnostic::error(
                                    "E0301",
                                    format!("unknown map `{}`", m.name),
                                    m.span.clone(),
                                )
                                .with_label("no aggregation fills a map of this name");
                                let near = suggest::nearest(&m.name, names.iter().copied(), 2);
                                if !near.is_empty() {
                                    d = d.with_help(format!(
                                        "did you mean {}?",
                                        suggest::one_of(&near)
                                    ));
                                }
                                self.diags.push(d);
                            }
                        }
                    }
                }
                ast::Stmt::Error(_) => {}
                other => {
                    let span = match other {
                        ast::Stmt::Where(_, s)
                        | ast::Stmt::When(_, s)
                        | ast::Stmt::Unless(_, s)
                        | ast::Stmt::Emit(_, s)
                        | ast::Stmt::Action(_, s) => s.clone(),
                        ast::Stmt::Count { span, .. }
                        | ast::Stmt::Aggregate { span, .. }
                        | ast::Stmt::Assign { span, .. }
                        | ast::Stmt::Delete { span, .. } => span.clone(),
                        _ => h.span.clone(),
                    };
                    self.diags.push(
                        Diagnostic::error(
                            "E0515",
                            format!(
                                "a `{}` probe runs in `pol run`, not in the kernel",
                                h.kind.name
                            ),
                            span,
                        )
                        .with_label("only `print MAP`, `clear MAP` and `print(\"text\")` here"),
                    );
                }
            }
        }
        self.out.schedule.push(Scheduled {
            when,
            actions,
            texts,
            span: p.span.clone(),
        });
    }

    /// The typed arguments of the hook's event from the catalog: `Some(None)` when there
    /// is no catalog to ask, `None` (after an error) when the event does not exist.
    fn event_args(
        &mut self,
        hook: &ProbeHook,
        h: &ast::Hook,
    ) -> Option<Option<(String, Vec<TraceArg>)>> {
        let (shown, found) = match hook {
            ProbeHook::Tracepoint { category, name } => (
                format!("tracepoint {category}:{name}"),
                self.catalog.tracepoint(category, name),
            ),
            ProbeHook::RawTracepoint { name } | ProbeHook::BtfTracepoint { name } => (
                format!("raw tracepoint {name}"),
                self.catalog.raw_tracepoint(name),
            ),
            ProbeHook::Uprobe { ret, function, .. } => {
                return self.uprobe_args(h, function, *ret).map(Some);
            }
            ProbeHook::Profile { .. } => {
                return Some(Some((format!("this {} probe", h.kind.name), Vec::new())))
            }
        };
        match found {
            Ok(args) => Some(Some((shown, args))),
            Err(CatalogError::Unavailable) => Some(None),
            Err(e) => {
                let at = h
                    .args
                    .as_deref()
                    .and_then(|a| a.first())
                    .map_or(h.span.clone(), |a| a.span.clone());
                let mut d = Diagnostic::error("E0513", e.to_string(), at)
                    .with_label("no such probe on this kernel");
                if let Some(near) = e.nearest() {
                    // `CATEGORY:NAME` as the language writes it.
                    d = d.with_help(format!("did you mean `{}`?", near.replacen(':', ".", 1)));
                } else {
                    d = d.with_help("`pol list PATTERN` lists the probes of this kernel");
                }
                self.diags.push(d);
                None
            }
        }
    }

    /// A uprobe's arguments: declared by its third hook argument (`"const char *path,
    /// int flags"`; a uretprobe's is the return type), else `arg0`..`arg5` / `ret`.
    fn uprobe_args(
        &mut self,
        h: &ast::Hook,
        function: &str,
        ret: bool,
    ) -> Option<(String, Vec<TraceArg>)> {
        let decl = h.args.as_deref().and_then(|a| a.get(2));
        let text = match decl.map(|d| &d.kind) {
            None => None,
            Some(ast::ExprKind::Str(t)) => Some(t.as_str()),
            Some(_) => {
                self.diags.push(
                    Diagnostic::error(
                        "E0502",
                        "the parameters are declared in quotes, as C declares them",
                        decl.map_or(h.span.clone(), |d| d.span.clone()),
                    )
                    .with_label(if ret {
                        "expected the return type, e.g. `\"int\"`"
                    } else {
                        "expected e.g. `\"const char *path, int flags\"`"
                    }),
                );
                return None;
            }
        };
        match crate::catalog::uprobe_args(text, ret) {
            Ok(args) => Some((format!("{} {function}", h.kind.name), args)),
            Err(e) => {
                self.diags.push(
                    Diagnostic::error("E0502", e, decl.map_or(h.span.clone(), |d| d.span.clone()))
                        .with_label("in this declaration"),
                );
                None
            }
        }
    }

    /// `args.NAME`: the argument's type and where it is read from.
    fn arg(&mut self, p: &ast::Path, span: &Span) -> Option<(ExprKind, Ty)> {
        let Some((shown, args)) = &self.args else {
            self.diags.push(
                Diagnostic::error(
                    "E0513",
                    "typed arguments need the probe catalog, which this compilation has not",
                    span.clone(),
                )
                .with_label("`args` comes from the kernel's tracepoint formats and BTF")
                .with_help(
                    "`pol check`, `pol build` and `pol run` read the running kernel's catalog",
                ),
            );
            return None;
        };
        let name = p.segments.get(1).map_or("", |s| s.name.as_str());
        if p.segments.len() != 2 {
            self.diags.push(
                Diagnostic::error("E0302", "an argument is named `args.NAME`", span.clone())
                    .with_label("fields of arguments are not supported yet"),
            );
            return None;
        }
        let Some(a) = args.iter().find(|a| a.name == name) else {
            let mut d = Diagnostic::error(
                "E0302",
                format!("{shown} has no argument `{name}`"),
                p.segments[1].span.clone(),
            )
            .with_label("no such argument");
            let names: Vec<&str> = args.iter().map(|a| a.name.as_str()).collect();
            let near = suggest::nearest(name, names.iter().copied(), 3);
            d = if !near.is_empty() {
                d.with_help(format!("did you mean `args.{}`?", near[0]))
            } else if names.is_empty() {
                d.with_help(format!("{shown} has no arguments"))
            } else {
                d.with_help(format!("its arguments are {}", suggest::one_of(&names)))
            };
            self.diags.push(d);
            return None;
        };
        let unusable = |what: &str| {
            Diagnostic::error(
                "L0501",
                format!("`args.{name}` ({}) is {what}, not usable yet", a.c_type),
                span.clone(),
            )
            .with_label("integers and pointers are")
        };
        match a.ty {
            ArgTy::Int { bytes, signed } if matches!(bytes, 1 | 2 | 4 | 8) => Some((
                ExprKind::Arg {
                    offset: a.offset,
                    bytes,
                    signed,
                },
                Ty::Int,
            )),
            ArgTy::Ptr { user, .. } => Some((
                ExprKind::Arg {
                    offset: a.offset,
                    bytes: 8,
                    signed: false,
                },
                Ty::Ptr { user },
            )),
            ArgTy::Array {
                string: true, len, ..
            } if (1..=MAX_STR).contains(&len) => Some((
                ExprKind::RecordStr {
                    offset: a.offset,
                    len,
                    data_loc: false,
                },
                Ty::Str(len),
            )),
            ArgTy::Array { string: true, .. } => {
                self.diags
                    .push(unusable("a character array longer than a string read"));
                None
            }
            // Read up to `str(PTR)`'s default; `str(args.NAME, N)` bounds it otherwise.
            ArgTy::DataLoc { string: true } => Some((
                ExprKind::RecordStr {
                    offset: a.offset,
                    len: DEFAULT_STR,
                    data_loc: true,
                },
                Ty::Str(DEFAULT_STR),
            )),
            ArgTy::DataLoc { string: false } => {
                self.diags.push(unusable("a `__data_loc` array of numbers"));
                None
            }
            _ => {
                self.diags.push(unusable("a structure"));
                None
            }
        }
    }

    /// `str(PTR)` / `str(PTR, N)`: a bounded string read.
    fn str_call(&mut self, args: &[ast::Expr], span: &Span) -> Option<(ExprKind, Ty)> {
        let (ptr, len) = match args {
            [p] => (p, None),
            [p, n] => (p, Some(n)),
            _ => {
                self.diags.push(
                    Diagnostic::error(
                        "E0512",
                        "`str` takes a pointer and an optional bound",
                        span.clone(),
                    )
                    .with_label("written as `str(args.filename)` or `str(args.filename, 128)`"),
                );
                return None;
            }
        };
        let len = match len {
            None => DEFAULT_STR,
            Some(n) => match n.kind {
                ast::ExprKind::Int(v @ 1..=MAX_STR_U64) => v as u32,
                _ => {
                    self.diags.push(
                        Diagnostic::error(
                            "E0514",
                            format!("a string read is bounded: its length must be an integer from 1 to {MAX_STR}"),
                            n.span.clone(),
                        )
                        .with_label("not a bound the stack can hold")
                        .with_help(format!("`str(PTR)` reads up to {DEFAULT_STR} bytes; `str(PTR, N)` up to N")),
                    );
                    return None;
                }
            },
        };
        let p = self.expr(ptr)?;
        // `str(args.NAME, N)` of a `__data_loc` string: the same read, bounded by N.
        if let ExprKind::RecordStr {
            offset,
            data_loc: true,
            ..
        } = p.kind
        {
            return Some((
                ExprKind::RecordStr {
                    offset,
                    len,
                    data_loc: true,
                },
                Ty::Str(len),
            ));
        }
        let Ty::Ptr { user } = p.ty else {
            self.diags.push(
                Diagnostic::error(
                    "E0401",
                    format!("expected a pointer, found {}", p.ty),
                    p.span.clone(),
                )
                .with_label(format!("`str` reads through a pointer; this is {}", p.ty)),
            );
            return None;
        };
        Some((
            ExprKind::StrRead {
                ptr: Box::new(p),
                user,
                len,
            },
            Ty::Str(len),
        ))
    }

    /// `join(ARRAY)` / `join(ARRAY, N)`: the strings of a NULL-terminated pointer array
    /// (`join(args.argv)`), at most N of them (default [`JOIN_DEFAULT`]).
    fn join_call(&mut self, args: &[ast::Expr], span: &Span) -> Option<(ExprKind, Ty)> {
        let (ptr, n) = match args {
            [p] => (p, None),
            [p, n] => (p, Some(n)),
            _ => {
                self.diags.push(
                    Diagnostic::error(
                        "E0512",
                        "`join` takes a pointer array and an optional count",
                        span.clone(),
                    )
                    .with_label("written as `join(args.argv)` or `join(args.argv, 4)`"),
                );
                return None;
            }
        };
        let n = match n.map(|n| &n.kind) {
            None => JOIN_DEFAULT,
            Some(ast::ExprKind::Int(v @ 1..=JOIN_MAX_U64)) => *v as u32,
            Some(_) => {
                let at = n.map_or(span.clone(), |n| n.span.clone());
                self.diags.push(
                    Diagnostic::error(
                        "E0514",
                        format!("`join` reads at most {JOIN_MAX} strings of {JOIN_EACH} bytes: the count must be an integer from 1 to {JOIN_MAX}"),
                        at,
                    )
                    .with_label("not a count the stack can hold"),
                );
                return None;
            }
        };
        let p = self.expr(ptr)?;
        let Ty::Ptr { user } = p.ty else {
            self.diags.push(
                Diagnostic::error(
                    "E0401",
                    format!("expected a pointer array, found {}", p.ty),
                    p.span.clone(),
                )
                .with_label("`join` reads the strings an array of pointers points at"),
            );
            return None;
        };
        Some((
            ExprKind::Join {
                ptr: Box::new(p),
                user,
                n,
            },
            Ty::Str(n * JOIN_EACH),
        ))
    }

    /// The single name argument of `raw_tracepoint(NAME)` / `tp_btf(NAME)`.
    fn one_name(&mut self, h: &ast::Hook, what: &str) -> Option<String> {
        match h.args.as_deref() {
            Some([a]) => match &a.kind {
                ast::ExprKind::Path(p) if p.segments.len() == 1 => Some(p.dotted()),
                _ => {
                    self.diags.push(
                        Diagnostic::error(
                            "E0502",
                            format!("`{}` takes {what}", h.kind.name),
                            a.span.clone(),
                        )
                        .with_label("not a name"),
                    );
                    None
                }
            },
            _ => {
                self.diags.push(
                    Diagnostic::error(
                        "E0502",
                        format!("`{}` takes one argument, {what}", h.kind.name),
                        h.span.clone(),
                    )
                    .with_label("one argument expected"),
                );
                None
            }
        }
    }

    /// `sum(x)`, `hist(x)`, `lhist(x, MIN, MAX, STEP)`, ...: the function and its value.
    fn agg_call(
        &mut self,
        func: &ast::Ident,
        args: &[ast::Expr],
        span: &Span,
    ) -> Option<(AggFunc, Expr)> {
        let f = match func.name.as_str() {
            "sum" => AggFunc::Sum,
            "min" => AggFunc::Min,
            "max" => AggFunc::Max,
            "avg" => AggFunc::Avg,
            "stats" => AggFunc::Stats,
            "hist" => AggFunc::Hist,
            "lhist" => AggFunc::Lhist {
                min: 0,
                max: 0,
                step: 0,
            },
            other => {
                const FUNCS: &[&str] = &["sum", "min", "max", "avg", "stats", "hist", "lhist"];
                let mut d = Diagnostic::error(
                    "E0512",
                    format!("unknown aggregation `{other}`"),
                    func.span.clone(),
                )
                .with_label("not an aggregation")
                .with_help(format!(
                    "aggregations are `count`, {}",
                    suggest::one_of(FUNCS)
                ));
                let near = suggest::nearest(other, FUNCS.iter().copied(), 2);
                if !near.is_empty() {
                    d = d.with_help(format!("did you mean {}?", suggest::one_of(&near)));
                }
                self.diags.push(d);
                return None;
            }
        };
        let want = if matches!(f, AggFunc::Lhist { .. }) {
            4
        } else {
            1
        };
        if args.len() != want {
            let shape = if want == 4 {
                "lhist(VALUE, MIN, MAX, STEP)".to_string()
            } else {
                format!("{}(VALUE)", func.name)
            };
            self.diags.push(
                Diagnostic::error(
                    "E0512",
                    format!(
                        "`{}` takes {want} argument{}",
                        func.name,
                        if want == 1 { "" } else { "s" }
                    ),
                    span.clone(),
                )
                .with_label(format!("written as `{shape}`")),
            );
            return None;
        }
        let value = self.expr(&args[0])?;
        if !self.want(&value, Ty::Int) {
            return None;
        }
        if want == 1 {
            return Some((f, value));
        }
        let mut consts = [0u64; 3];
        for (slot, a) in consts.iter_mut().zip(&args[1..]) {
            match a.kind {
                ast::ExprKind::Int(n) => *slot = n,
                _ => {
                    self.diags.push(
                        Diagnostic::error(
                            "E0512",
                            "lhist bounds must be integer literals",
                            a.span.clone(),
                        )
                        .with_label("not a constant"),
                    );
                    return None;
                }
            }
        }
        let [min, max, step] = consts;
        if step == 0 || max <= min || (max - min) / step > 1000 {
            self.diags.push(
                Diagnostic::error(
                    "E0512",
                    "lhist needs MIN < MAX and a STEP of at least 1, with at most 1000 buckets",
                    args[1].span.start..args[3].span.end,
                )
                .with_label(format!("min {min}, max {max}, step {step}")),
            );
            return None;
        }
        Some((AggFunc::Lhist { min, max, step }, value))
    }

    fn aggregate(
        &mut self,
        func: AggFunc,
        value: Option<Expr>,
        by: &[ast::Expr],
        into: &Option<ast::Ident>,
        span: &Span,
    ) -> Option<Step> {
        let keys = self.keys(by)?;
        let fields: Vec<KeyField> = keys
            .iter()
            .zip(by)
            .enumerate()
            .map(|(i, (e, written))| KeyField {
                name: match (&e.kind, &written.kind) {
                    (ExprKind::Builtin(b), _) => b.name().to_string(),
                    // `args.NAME` is shown as NAME.
                    (_, ast::ExprKind::Path(p))
                        if p.segments.len() == 2 && p.segments[0].name == "args" =>
                    {
                        p.segments[1].name.clone()
                    }
                    _ => format!("key{i}"),
                },
                ty: e.ty,
                cgroup: e.is_cgroup(),
                signed: e.is_signed(),
                joined: e.is_joined(),
            })
            .collect();
        let name = into.as_ref().map_or("", |i| i.name.as_str());
        let at = into.as_ref().map_or(span.clone(), |i| i.span.clone());
        // Anonymous statements of one aggregation share a map, as bpftrace's `@` does.
        let index_key = if name.is_empty() {
            format!("@{}", func.name())
        } else {
            name.to_string()
        };
        let map = match self.map_index.get(&index_key) {
            Some(&m) => {
                let def = &self.out.maps[m];
                let types = |f: &[KeyField]| f.iter().map(|k| k.ty).collect::<Vec<_>>();
                if def.func != func {
                    let d = Diagnostic::error(
                        "E0511",
                        format!(
                            "map `{}` holds `{}` values but is updated with `{}` here",
                            def.display,
                            def.func.name(),
                            func.name()
                        ),
                        at,
                    )
                    .with_label("a different aggregation")
                    .with_secondary(def.span.clone(), "first used here")
                    .with_help("one map holds one kind of aggregation: use another map name");
                    self.diags.push(d);
                    return None;
                }
                if types(&def.keys) != types(&fields) {
                    let show = |f: &[KeyField]| {
                        let t: Vec<String> = f
                            .iter()
                            .map(|k| match k.ty {
                                Ty::Str(_) => "string".to_string(),
                                _ => "integer".to_string(),
                            })
                            .collect();
                        format!("({})", t.join(", "))
                    };
                    let d = Diagnostic::error(
                        "E0511",
                        format!(
                            "map `{}` is keyed by {} here but by {} where it was first used",
                            def.display,
                            show(&fields),
                            show(&def.keys)
                        ),
                        at,
                    )
                    .with_label("different key types")
                    .with_secondary(def.span.clone(), "first used here")
                    .with_help("a map has one key type: use another map name");
                    self.diags.push(d);
                    return None;
                }
                m
            }
            None => {
                let (symbol, display) = if name.is_empty() {
                    let n = self.anon_maps;
                    self.anon_maps += 1;
                    let display = if n == 0 {
                        "@".to_string()
                    } else {
                        format!("@{n}")
                    };
                    (format!("anon_{n}"), display)
                } else {
                    if !self.claim(name, &at) {
                        return None;
                    }
                    (name.to_string(), format!("@{name}"))
                };
                self.map_index.insert(index_key, self.out.maps.len());
                self.out.maps.push(AggMap {
                    symbol,
                    display,
                    func,
                    keys: fields,
                    span: at,
                });
                self.out.maps.len() - 1
            }
        };
        Some(Step::Aggregate { map, keys, value })
    }

    /// Checks key expressions: integers or strings.
    fn keys(&mut self, keys: &[ast::Expr]) -> Option<Vec<Expr>> {
        let mut out = Vec::new();
        for e in keys {
            let e = self.expr(e)?;
            if matches!(e.ty, Ty::Bool | Ty::Ptr { .. }) {
                self.diags.push(
                    Diagnostic::error(
                        "E0401",
                        "a map key must be an integer or a string",
                        e.span.clone(),
                    )
                    .with_label(format!("this is {}", e.ty))
                    .with_help("a pointer's string is `str(PTR)`"),
                );
                return None;
            }
            out.push(e);
        }
        Some(out)
    }

    /// `NAME[KEYS] = VALUE`: the first assignment makes the map and fixes its key types.
    fn assign(&mut self, map: &ast::Ident, keys: &[ast::Expr], value: &ast::Expr) -> Option<Step> {
        let keys = self.keys(keys)?;
        let value = self.expr(value)?;
        if !self.want(&value, Ty::Int) {
            return None;
        }
        let var = match self.var_index.get(&map.name) {
            Some(&v) => {
                self.same_keys(map, v, &keys)?;
                v
            }
            None => {
                if self.map_index.contains_key(&map.name) {
                    self.diags.push(
                        Diagnostic::error(
                            "E0511",
                            format!(
                                "`{}` is an aggregation map: it cannot also be set",
                                map.name
                            ),
                            map.span.clone(),
                        )
                        .with_label("set here")
                        .with_help("use another name for the variable"),
                    );
                    return None;
                }
                if !self.claim(&map.name, &map.span) {
                    return None;
                }
                self.out.vars.push(super::hir::VarMap {
                    symbol: map.name.clone(),
                    keys: keys
                        .iter()
                        .enumerate()
                        .map(|(i, e)| KeyField {
                            name: format!("key{i}"),
                            ty: e.ty,
                            cgroup: false,
                            signed: e.is_signed(),
                            joined: e.is_joined(),
                        })
                        .collect(),
                    span: map.span.clone(),
                });
                let v = self.out.vars.len() - 1;
                self.var_index.insert(map.name.clone(), v);
                v
            }
        };
        Some(Step::Assign { var, keys, value })
    }

    fn same_keys(&mut self, map: &ast::Ident, v: usize, keys: &[Expr]) -> Option<()> {
        let def = &self.out.vars[v];
        let want: Vec<Ty> = def.keys.iter().map(|k| k.ty).collect();
        let have: Vec<Ty> = keys.iter().map(|k| k.ty).collect();
        let same = want.len() == have.len()
            && want
                .iter()
                .zip(&have)
                .all(|(a, b)| matches!((a, b), (Ty::Str(_), Ty::Str(_))) || a == b);
        if same {
            return Some(());
        }
        let show = |t: &[Ty]| {
            let names: Vec<&str> = t
                .iter()
                .map(|t| {
                    if matches!(t, Ty::Str(_)) {
                        "string"
                    } else {
                        "integer"
                    }
                })
                .collect();
            format!("({})", names.join(", "))
        };
        let d = Diagnostic::error(
            "E0511",
            format!(
                "`{}` is keyed by {} here but by {} where it was first set",
                map.name,
                show(&have),
                show(&want)
            ),
            map.span.clone(),
        )
        .with_label("different key types")
        .with_secondary(def.span.clone(), "first set here")
        .with_help("a map has one key type: use another name");
        self.diags.push(d);
        None
    }

    /// `NAME[KEYS]` of a variable map set somewhere before.
    fn var_ref(&mut self, map: &ast::Ident, keys: &[ast::Expr]) -> Option<(usize, Vec<Expr>)> {
        let keys = self.keys(keys)?;
        let Some(&v) = self.var_index.get(&map.name) else {
            let mut d = Diagnostic::error(
                "E0301",
                format!("unknown map `{}`", map.name),
                map.span.clone(),
            )
            .with_label("never set before this");
            if self.map_index.contains_key(&map.name) {
                d = d.with_help("aggregation maps are printed, not read: set a variable with `NAME[KEY] = VALUE`");
            } else {
                d = d.with_help(format!(
                    "set it first (earlier in the file): `{}[KEY] = VALUE`",
                    map.name
                ));
            }
            self.diags.push(d);
            return None;
        };
        self.same_keys(map, v, &keys)?;
        Some((v, keys))
    }

    /// `emit { field: expr, name, .. }`: a record of integers and strings.
    fn emit(&mut self, e: &ast::Expr, probe: &str) -> Option<Step> {
        let ast::ExprKind::Record(fields) = &e.kind else {
            self.diags.push(
                Diagnostic::error(
                    "E0512",
                    "`emit` sends a record: `emit { pid, comm, n: EXPR }`",
                    e.span.clone(),
                )
                .with_label("not a record"),
            );
            return None;
        };
        let mut defs: Vec<KeyField> = Vec::new();
        let mut values = Vec::new();
        let mut ok = true;
        for (name, value) in fields {
            if defs.iter().any(|d| d.name == name.name) {
                self.diags.push(
                    Diagnostic::error(
                        "E0304",
                        format!("field `{}` is emitted twice", name.name),
                        name.span.clone(),
                    )
                    .with_label("second field of this name"),
                );
                ok = false;
                continue;
            }
            // `{ pid }` is `{ pid: pid }`.
            let implied;
            let value = match value {
                Some(v) => v,
                None => {
                    implied = ast::Expr {
                        kind: ast::ExprKind::Path(ast::Path {
                            segments: vec![name.clone()],
                            span: name.span.clone(),
                        }),
                        span: name.span.clone(),
                    };
                    &implied
                }
            };
            let Some(v) = self.expr(value) else {
                ok = false;
                continue;
            };
            if matches!(v.ty, Ty::Bool | Ty::Ptr { .. } | Ty::Stack { .. }) {
                self.diags.push(
                    Diagnostic::error(
                        "E0401",
                        "an emitted field must be an integer or a string",
                        v.span.clone(),
                    )
                    .with_label(format!("this is {}", v.ty))
                    .with_help("a pointer's string is `str(PTR)`"),
                );
                ok = false;
                continue;
            }
            defs.push(KeyField {
                name: name.name.clone(),
                ty: v.ty,
                cgroup: v.is_cgroup(),
                signed: v.is_signed(),
                joined: v.is_joined(),
            });
            values.push(v);
        }
        if !ok {
            return None;
        }
        self.out.events.push(EventDef {
            probe: probe.to_string(),
            fields: defs,
            format: None,
            span: e.span.clone(),
        });
        Some(Step::Emit {
            event: self.out.events.len() - 1,
            fields: values,
        })
    }

    /// The format string of a `print(..)` and its span, or an error (E0512) saying how
    /// `print` is written.
    fn print_format<'a>(
        &mut self,
        args: &'a [ast::Expr],
        by: &[ast::Expr],
        into: &Option<ast::Ident>,
        span: &Span,
    ) -> Option<(&'a str, &'a [ast::Expr], usize)> {
        let bad = |msg: &str, at: Span| {
            Diagnostic::error("E0512", msg.to_string(), at)
                .with_label("not a print statement")
                .with_help("write `print(\"{} opened {}\", comm, str(args.filename))`")
        };
        if !by.is_empty() || into.is_some() {
            self.diags
                .push(bad("`print` takes no `by` or `into`", span.clone()));
            return None;
        }
        let Some((first, rest)) = args.split_first() else {
            self.diags
                .push(bad("`print` needs a format string first", span.clone()));
            return None;
        };
        let ast::ExprKind::Str(format) = &first.kind else {
            self.diags.push(bad(
                "the first argument of `print` is a format string",
                first.span.clone(),
            ));
            return None;
        };
        match placeholders(format) {
            Ok(n) => Some((format.as_str(), rest, n)),
            Err(why) => {
                self.diags.push(
                    Diagnostic::error("E0512", format!("bad format: {why}"), first.span.clone())
                        .with_label("in this format"),
                );
                None
            }
        }
    }

    /// `print("..{}..", EXPR, ..)` in a kernel probe: a record of its values sent through
    /// the ring buffer as `emit`'s are, printed by `pol run` as the formatted line.
    fn print(
        &mut self,
        args: &[ast::Expr],
        by: &[ast::Expr],
        into: &Option<ast::Ident>,
        span: &Span,
        probe: &str,
    ) -> Option<Step> {
        let (format, values, n) = self.print_format(args, by, into, span)?;
        if n != values.len() {
            self.diags.push(
                Diagnostic::error(
                    "E0512",
                    format!(
                        "the format has {n} `{{}}` but {} value{} follow{}",
                        values.len(),
                        if values.len() == 1 { "" } else { "s" },
                        if values.len() == 1 { "s" } else { "" }
                    ),
                    span.clone(),
                )
                .with_label("one value per `{}`"),
            );
            return None;
        }
        let mut defs = Vec::new();
        let mut exprs = Vec::new();
        for (i, a) in values.iter().enumerate() {
            let v = self.expr(a)?;
            if matches!(v.ty, Ty::Bool | Ty::Ptr { .. } | Ty::Stack { .. }) {
                self.diags.push(
                    Diagnostic::error(
                        "E0401",
                        "a printed value must be an integer or a string",
                        v.span.clone(),
                    )
                    .with_label(format!("this is {}", v.ty))
                    .with_help("a pointer's string is `str(PTR)`"),
                );
                return None;
            }
            defs.push(KeyField {
                name: format!("{i}"),
                ty: v.ty,
                cgroup: v.is_cgroup(),
                signed: v.is_signed(),
                joined: v.is_joined(),
            });
            exprs.push(v);
        }
        self.out.events.push(EventDef {
            probe: probe.to_string(),
            fields: defs,
            format: Some(format.to_string()),
            span: span.clone(),
        });
        Some(Step::Emit {
            event: self.out.events.len() - 1,
            fields: exprs,
        })
    }

    /// `print("text")` in a `begin`, `end` or `interval` probe: text `pol run` prints.
    fn print_text(
        &mut self,
        args: &[ast::Expr],
        by: &[ast::Expr],
        into: &Option<ast::Ident>,
        span: &Span,
    ) -> Option<String> {
        let (format, values, n) = self.print_format(args, by, into, span)?;
        if n > 0 || !values.is_empty() {
            self.diags.push(
                Diagnostic::error(
                    "E0515",
                    "a `print` here prints its text only: no event runs it, so no value fills `{}`",
                    span.clone(),
                )
                .with_label("this probe runs in `pol run`, not in the kernel")
                .with_help("print values from a kernel probe, or print a map with `print MAP`"),
            );
            return None;
        }
        Some(render(format, &[]))
    }

    fn want(&mut self, e: &Expr, want: Ty) -> bool {
        let ok = match (want, e.ty) {
            (Ty::Str(_), Ty::Str(_)) => true,
            (a, b) => a == b,
        };
        if !ok {
            self.diags.push(
                Diagnostic::error(
                    "E0401",
                    format!("expected {want}, found {}", e.ty),
                    e.span.clone(),
                )
                .with_label(format!("this is {}", e.ty)),
            );
        }
        ok
    }

    fn expr(&mut self, e: &ast::Expr) -> Option<Expr> {
        let span = e.span.clone();
        let (kind, ty) = match &e.kind {
            ast::ExprKind::Int(n) => (ExprKind::Int(*n), Ty::Int),
            ast::ExprKind::Str(s) => (ExprKind::Str(s.clone()), Ty::Str(s.len() as u32 + 1)),
            ast::ExprKind::Bool(b) => (ExprKind::Bool(*b), Ty::Bool),
            ast::ExprKind::Path(p) => {
                let name = p.dotted();
                if p.segments.len() > 1 && p.segments[0].name == "args" {
                    let (kind, ty) = self.arg(p, &span)?;
                    return Some(Expr { kind, ty, span });
                }
                match Builtin::ALL.iter().find(|(n, _)| *n == name) {
                    Some((_, b)) => (ExprKind::Builtin(*b), b.ty()),
                    None => {
                        if let Some(d) = crate::l7::unseen(&name, span.clone(), "probes") {
                            self.diags.push(d);
                            return None;
                        }
                        let mut d = Diagnostic::error(
                            "E0301",
                            format!("unknown name `{name}`"),
                            span.clone(),
                        )
                        .with_label("not a builtin of probes");
                        let near = suggest::nearest(&name, Builtin::ALL.iter().map(|(n, _)| *n), 2);
                        if !near.is_empty() {
                            d = d.with_help(format!("did you mean {}?", suggest::one_of(&near)));
                        } else {
                            let all: Vec<&str> = Builtin::ALL.iter().map(|(n, _)| *n).collect();
                            d = d.with_help(format!("probes know {}", suggest::one_of(&all)));
                        }
                        self.diags.push(d);
                        return None;
                    }
                }
            }
            ast::ExprKind::Not(a) => {
                let a = self.expr(a)?;
                if !self.want(&a, Ty::Bool) {
                    return None;
                }
                (ExprKind::Not(Box::new(a)), Ty::Bool)
            }
            ast::ExprKind::Index(p, keys) => {
                let name = ast::Ident {
                    name: p.dotted(),
                    span: p.span.clone(),
                };
                let (var, keys) = self.var_ref(&name, keys)?;
                (ExprKind::Var { var, keys }, Ty::Int)
            }
            ast::ExprKind::Binary(
                op @ (BinOp::Add | BinOp::Sub | BinOp::Mul | BinOp::Div),
                a,
                b,
            ) => {
                let a = self.expr(a);
                let b = self.expr(b);
                let (a, b) = (a?, b?);
                if !(self.want(&a, Ty::Int) & self.want(&b, Ty::Int)) {
                    return None;
                }
                let op = match op {
                    BinOp::Add => ArithOp::Add,
                    BinOp::Sub => ArithOp::Sub,
                    BinOp::Mul => ArithOp::Mul,
                    _ => ArithOp::Div,
                };
                (ExprKind::Arith(op, Box::new(a), Box::new(b)), Ty::Int)
            }
            ast::ExprKind::Binary(op @ (BinOp::And | BinOp::Or), a, b) => {
                let a = self.expr(a);
                let b = self.expr(b);
                let (a, b) = (a?, b?);
                if !(self.want(&a, Ty::Bool) & self.want(&b, Ty::Bool)) {
                    return None;
                }
                let (a, b) = (Box::new(a), Box::new(b));
                let kind = if *op == BinOp::And {
                    ExprKind::And(a, b)
                } else {
                    ExprKind::Or(a, b)
                };
                (kind, Ty::Bool)
            }
            ast::ExprKind::Binary(op, a, b) => {
                let cmp = match op {
                    BinOp::Eq => CmpOp::Eq,
                    BinOp::Ne => CmpOp::Ne,
                    BinOp::Lt => CmpOp::Lt,
                    BinOp::Le => CmpOp::Le,
                    BinOp::Gt => CmpOp::Gt,
                    BinOp::Ge => CmpOp::Ge,
                    _ => {
                        self.not_yet(&span, "this operator in probes");
                        return None;
                    }
                };
                let a = self.expr(a);
                let b = self.expr(b);
                let (a, b) = (a?, b?);
                if let Some(ptr) = [&a, &b]
                    .into_iter()
                    .find(|e| matches!(e.ty, Ty::Ptr { .. }))
                {
                    self.diags.push(
                        Diagnostic::error(
                            "E0401",
                            "a pointer cannot be compared",
                            ptr.span.clone(),
                        )
                        .with_label("this is a pointer")
                        .with_help("compare the string it points to: `str(PTR) == \"...\"`"),
                    );
                    return None;
                }
                match (a.ty, b.ty) {
                    (Ty::Int, Ty::Int) => {}
                    (Ty::Str(_), Ty::Str(_)) if matches!(cmp, CmpOp::Eq | CmpOp::Ne) => {
                        let literal_len = |e: &Expr| match &e.kind {
                            ExprKind::Str(s) => Some(s.len()),
                            _ => None,
                        };
                        if literal_len(&a).is_some() == literal_len(&b).is_some() {
                            self.not_yet(&span, "comparisons of two strings that are not both a literal and a value");
                            return None;
                        }
                    }
                    (Ty::Str(_), Ty::Str(_)) => {
                        self.diags.push(
                            Diagnostic::error(
                                "E0403",
                                "strings are compared with `==` and `!=` only",
                                span.clone(),
                            )
                            .with_label("an ordering of strings"),
                        );
                        return None;
                    }
                    (x, y) => {
                        // Blame a boolean, else a literal compared with a value, else
                        // the right-hand side.
                        let literal = |e: &Expr| {
                            matches!(
                                e.kind,
                                ExprKind::Int(_) | ExprKind::Str(_) | ExprKind::Bool(_)
                            )
                        };
                        let blame_left =
                            x == Ty::Bool || (y != Ty::Bool && literal(&a) && !literal(&b));
                        let (bad, found, expected) =
                            if blame_left { (&a, x, y) } else { (&b, y, x) };
                        self.diags.push(
                            Diagnostic::error(
                                "E0401",
                                format!("expected {expected}, found {found}"),
                                bad.span.clone(),
                            )
                            .with_label(format!("this is {found}")),
                        );
                        return None;
                    }
                }
                (ExprKind::Cmp(cmp, Box::new(a), Box::new(b)), Ty::Bool)
            }
            ast::ExprKind::Call(p, args) if p.dotted() == "str" => self.str_call(args, &span)?,
            ast::ExprKind::Call(p, args) if p.dotted() == "join" => self.join_call(args, &span)?,
            ast::ExprKind::Call(p, _) => {
                self.diags.push(
                    Diagnostic::error(
                        "E0301",
                        format!("unknown function `{}`", p.dotted()),
                        p.span.clone(),
                    )
                    .with_label("not a function of probes")
                    .with_help("probes call `str(PTR)`, `str(PTR, N)` and `join(ARRAY)`"),
                );
                return None;
            }
            ast::ExprKind::Error => return None,
            _ => {
                self.not_yet(&span, "expressions of this kind in probes");
                return None;
            }
        };
        Some(Expr { kind, ty, span })
    }
}

/// Where a statement is in the source.
fn stmt_span(s: &ast::Stmt) -> Span {
    match s {
        ast::Stmt::Where(_, span)
        | ast::Stmt::When(_, span)
        | ast::Stmt::Unless(_, span)
        | ast::Stmt::Emit(_, span)
        | ast::Stmt::Action(_, span)
        | ast::Stmt::Error(span)
        | ast::Stmt::Count { span, .. }
        | ast::Stmt::Aggregate { span, .. }
        | ast::Stmt::Assign { span, .. }
        | ast::Stmt::Command { span, .. }
        | ast::Stmt::Delete { span, .. } => span.clone(),
    }
}
