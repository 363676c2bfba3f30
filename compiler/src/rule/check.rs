//! Security rules from the AST to the rule HIR: the kind after `on`, `when` conditions
//! over the kind's fields, and `action` lists (`alert(SEVERITY, "text {field}")`, `kill`).
//! Every mistake is an error at the span that holds it.

use super::hir::{
    Cond, Field, FieldTy, IntOp, Kind, MemberSet, Rule, RuleSet, SetValue, Severity, StrPat,
    INT_SET_MIN, STR_SET_MIN,
};
use crate::diag::suggest::{nearest, one_of};
use crate::diag::Diagnostic;
use crate::syntax::ast::{self, BinOp, Expr, ExprKind, Span, Stmt};

/// Checks every rule whose header parsed, with the file's lists and macros; rules with
/// errors are left out of the set.
pub fn check(
    rules: &[&ast::SecRule],
    macros: &[&ast::MacroDecl],
    source: &str,
) -> (RuleSet, Vec<Diagnostic>) {
    let mut diags = Vec::new();
    let defs = Defs::new(macros, &mut diags);
    let mut set = RuleSet::default();
    let mut seen: Vec<(&str, Span)> = Vec::new();
    for r in rules {
        if let Some((_, first)) = seen.iter().find(|(n, _)| *n == r.name.name) {
            diags.push(
                Diagnostic::error(
                    "E0304",
                    format!("rule `{}` is defined twice", r.name.name),
                    r.name.span.clone(),
                )
                .with_label("defined again here")
                .with_secondary(first.clone(), "first defined here"),
            );
            continue;
        }
        seen.push((&r.name.name, r.name.span.clone()));
        let before = diags.len();
        if let Some(rule) = check_rule(r, &defs, source, &mut diags) {
            if diags.len() == before || !diags[before..].iter().any(|d| d.is_error()) {
                set.rules.push(rule);
            }
        }
    }
    set.sets = defs.sets.take();
    diags.extend(super::analysis::analyse(&set, source));
    (set, diags)
}

fn check_rule(
    r: &ast::SecRule,
    defs: &Defs,
    source: &str,
    diags: &mut Vec<Diagnostic>,
) -> Option<Rule> {
    let kind_name = &r.hook.kind.name;
    let Some(kind) = Kind::by_name(kind_name) else {
        let names: Vec<&str> = Kind::ALL.iter().map(|k| k.name()).collect();
        let near = nearest(kind_name, names.iter().copied(), 2);
        let mut d = Diagnostic::error(
            "E0501",
            format!("no event kind `{kind_name}` for rules"),
            r.hook.kind.span.clone(),
        )
        .with_label("not an event kind");
        d = if near.is_empty() {
            d.with_help(format!("rules are on {}", one_of(&names)))
        } else {
            d.with_help(format!("did you mean {}?", one_of(&near)))
        };
        diags.push(d);
        return None;
    };
    if let Some(args) = &r.hook.args {
        diags.push(
            Diagnostic::error(
                "E0502",
                format!("`{kind_name}` takes no arguments"),
                args.first()
                    .map_or(r.hook.span.clone(), |a| a.span.start..r.hook.span.end),
            )
            .with_label("remove these")
            .with_help(format!(
                "write `rule {} on {kind_name} {{ .. }}`",
                r.name.name
            )),
        );
    }
    let mut cond = Cond::True;
    let mut severity = Severity::Warning;
    let mut message: Option<String> = None;
    let mut kill = false;
    let mut deny = false;
    let mut audit: Option<Span> = None;
    let mut actions = 0;
    let mut exceptions = Vec::new();
    for stmt in &r.body {
        match stmt {
            Stmt::When(e, _) => {
                if let Some(c) = condition(kind, defs, e, diags) {
                    cond = match cond {
                        Cond::True => c,
                        prev => Cond::And(Box::new(prev), Box::new(c)),
                    };
                }
            }
            // An exception, wherever it is written: the rule matches only when it is false.
            Stmt::Unless(e, _) => {
                if let Some(c) = condition(kind, defs, e, diags) {
                    exceptions.push(c);
                }
            }
            Stmt::Action(list, _) => {
                for a in list {
                    actions += 1;
                    match action(kind, a, source, diags) {
                        Some(Action::Kill) => kill = true,
                        Some(Action::Deny) => deny = true,
                        Some(Action::Audit) => audit = Some(a.span.clone()),
                        Some(Action::Alert(s, m)) => {
                            severity = s;
                            message = Some(m);
                        }
                        None => {}
                    }
                }
            }
            Stmt::Error(_) => {}
            other => diags.push(
                Diagnostic::error(
                    "E0536",
                    "rules hold `when CONDITION` and `action ACTIONS` only",
                    stmt_span(other),
                )
                .with_label("not a rule statement")
                .with_help("`where`, `count`, `emit` and map statements belong in probes"),
            ),
        }
    }
    if actions == 0 {
        diags.push(
            Diagnostic::error(
                "E0530",
                format!("rule `{}` has no action", r.name.name),
                r.name.span.clone(),
            )
            .with_label("does nothing when it matches")
            .with_help("add `action alert(warning, \"...\")`, `action kill` or both"),
        );
    }
    if let (Some(span), false) = (&audit, kill || deny) {
        diags.push(
            Diagnostic::warning(
                "W0538",
                format!("`audit` does nothing: rule `{}` neither kills nor denies", r.name.name),
                span.clone(),
            )
            .with_label("the rule only alerts already")
            .with_help("`action audit, kill` or `action audit, deny` starts a rule that would act in audit mode"),
        );
    }
    for c in exceptions {
        cond = Cond::And(Box::new(cond), Box::new(Cond::Not(Box::new(c))));
    }
    let header = r.span.start..r.hook.span.end;
    Some(Rule {
        name: r.name.name.clone(),
        kind,
        cond,
        severity,
        message: message.unwrap_or_else(|| r.name.name.clone()),
        kill,
        deny,
        audit: audit.is_some() && (kill || deny),
        span: r.span.clone(),
        header,
    })
}

fn stmt_span(s: &Stmt) -> Span {
    match s {
        Stmt::Where(_, s)
        | Stmt::When(_, s)
        | Stmt::Unless(_, s)
        | Stmt::Emit(_, s)
        | Stmt::Action(_, s)
        | Stmt::Error(s) => s.clone(),
        Stmt::Count { span, .. }
        | Stmt::Aggregate { span, .. }
        | Stmt::Assign { span, .. }
        | Stmt::Delete { span, .. }
        | Stmt::Command { span, .. } => span.clone(),
    }
}

enum Action {
    Kill,
    Deny,
    Audit,
    Alert(Severity, String),
}

fn action(kind: Kind, e: &Expr, source: &str, diags: &mut Vec<Diagnostic>) -> Option<Action> {
    let bad = |diags: &mut Vec<Diagnostic>, span: Span| {
        diags.push(
            Diagnostic::error("E0531", "not an action", span)
                .with_label("expected `alert(..)`, `kill`, `deny` or `audit`")
                .with_help("actions: `alert(SEVERITY, \"text with {field}s\")`, `kill` (SIGKILL to the process), `deny` (refuse a connect or bind), `audit` (start the rule in audit mode)"),
        );
        None
    };
    match &e.kind {
        ExprKind::Path(p) if p.dotted() == "kill" && kind.can_deny() => {
            diags.push(
                Diagnostic::error(
                    "E0532",
                    format!("`kill` cannot be enforced on `{}` events", kind.name()),
                    e.span.clone(),
                )
                .with_label(format!(
                    "{} cannot send signals",
                    super::lower::hook_names(kind)
                ))
                .with_help(format!(
                    "`deny` refuses the {} call (EPERM) before it happens",
                    kind.name()
                )),
            );
            None
        }
        ExprKind::Path(p) if p.dotted() == "kill" && kind == Kind::Exit => {
            diags.push(
                Diagnostic::error("E0532", "`kill` cannot act on `exit` events", e.span.clone())
                    .with_label("the process is already ending")
                    .with_help("alert on the exit, or kill at an earlier event of the process (exec, open, connect)"),
            );
            None
        }
        ExprKind::Path(p) if p.dotted() == "kill" => Some(Action::Kill),
        ExprKind::Path(p) if p.dotted() == "audit" => Some(Action::Audit),
        ExprKind::Path(p) if p.dotted() == "deny" && kind.can_deny() => Some(Action::Deny),
        ExprKind::Path(p) if p.dotted() == "deny" => {
            diags.push(
                Diagnostic::error(
                    "E0532",
                    format!(
                        "`deny` cannot be enforced on `{}` events",
                        kind.name()
                    ),
                    e.span.clone(),
                )
                .with_label(format!("{} can observe, not refuse", super::lower::hook_names(kind)))
                .with_help(match kind {
                    Kind::Exec => "this kernel has no LSM programs; `kill` stops the process before the new program runs",
                    Kind::Exit => "the process is already ending: an `exit` rule can only alert",
                    Kind::Open => "this kernel has no LSM programs; `kill` stops the process before the open returns (the open itself completes)",
                    _ => "this kernel has no LSM programs; `kill` stops the process before the call returns (the call itself completes)",
                }),
            );
            None
        }
        ExprKind::Call(p, args) if p.dotted() == "alert" => {
            let (sev, msg) = match args.as_slice() {
                [m] => (None, m),
                [s, m] => (Some(s), m),
                _ => {
                    diags.push(
                        Diagnostic::error(
                            "E0512",
                            "`alert` takes a severity and a message",
                            e.span.clone(),
                        )
                        .with_label(format!("given {} arguments", args.len()))
                        .with_help("`alert(warning, \"shell {path} started by {parent.comm}\")`"),
                    );
                    return None;
                }
            };
            let severity = match sev {
                None => Severity::Warning,
                Some(s) => match &s.kind {
                    ExprKind::Path(p) if Severity::by_name(&p.dotted()).is_some() => {
                        Severity::by_name(&p.dotted()).unwrap_or(Severity::Warning)
                    }
                    _ => {
                        let names: Vec<&str> = Severity::ALL.iter().map(|s| s.name()).collect();
                        diags.push(
                            Diagnostic::error("E0533", "not a severity", s.span.clone())
                                .with_label("expected a severity")
                                .with_help(format!("severities: {}", one_of(&names))),
                        );
                        return None;
                    }
                },
            };
            let ExprKind::Str(text) = &msg.kind else {
                diags.push(
                    Diagnostic::error("E0401", "the alert's message is a string", msg.span.clone())
                        .with_label("expected a string literal"),
                );
                return None;
            };
            check_template(kind, text, msg.span.clone(), source, diags);
            Some(Action::Alert(severity, text.clone()))
        }
        _ => bad(diags, e.span.clone()),
    }
}

/// `{field}` in a message must name a field of the kind. The span points into the
/// literal when it holds no escapes (so source offsets match the text's).
fn check_template(kind: Kind, text: &str, span: Span, source: &str, diags: &mut Vec<Diagnostic>) {
    let raw = source.get(span.start + 1..span.end.saturating_sub(1));
    let exact = raw == Some(text);
    let mut rest = text;
    let mut at = 0;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}') else {
            break;
        };
        let name = rest[open + 1..open + close].trim();
        if kind.field(name).is_none() {
            let where_ = if exact {
                let s = span.start + 1 + at + open;
                s..s + close + 1
            } else {
                span.clone()
            };
            diags.push(unknown_field(kind, name, where_));
        }
        at += open + close + 1;
        rest = &rest[open + close + 1..];
    }
}

fn unknown_field(kind: Kind, name: &str, span: Span) -> Diagnostic {
    if let Some(d) = crate::l7::unseen(name, span.clone(), &format!("`{}` events", kind.name())) {
        return d;
    }
    let names: Vec<&str> = kind.fields().iter().map(|f| f.name).collect();
    let near = nearest(name, names.iter().copied(), 3);
    let d = Diagnostic::error(
        "E0302",
        format!("`{}` events have no field `{name}`", kind.name()),
        span,
    )
    .with_label("no such field");
    if near.is_empty() {
        d.with_help(format!("fields: {}", one_of(&names)))
    } else {
        d.with_help(format!("did you mean {}?", one_of(&near)))
    }
}

fn field_of(kind: Kind, e: &Expr, diags: &mut Vec<Diagnostic>) -> Option<Field> {
    match &e.kind {
        // `argv[1]`: one argument of an exec.
        ExprKind::Index(p, idx) if p.dotted() == "argv" => {
            if kind != Kind::Exec {
                diags.push(unknown_field(kind, "argv", p.span.clone()));
                return None;
            }
            let slot = match idx.as_slice() {
                [Expr {
                    kind: ExprKind::Int(i),
                    ..
                }] => u32::try_from(*i).ok().and_then(super::hir::arg_field),
                _ => None,
            };
            if slot.is_none() {
                diags.push(
                    Diagnostic::error(
                        "E0542",
                        format!(
                            "rules see the first {} arguments: `argv[0]` to `argv[{}]`",
                            super::hir::ARGS,
                            super::hir::ARGS - 1
                        ),
                        e.span.clone(),
                    )
                    .with_label("not an argument rules can test"),
                );
            }
            slot
        }
        ExprKind::Path(p) => {
            let name = p.dotted();
            match kind.field(&name) {
                Some(f) => Some(*f),
                None => {
                    diags.push(unknown_field(kind, &name, e.span.clone()));
                    None
                }
            }
        }
        _ => {
            diags.push(
                Diagnostic::error("E0401", "expected a field of the event", e.span.clone())
                    .with_label("not a field")
                    .with_help(format!(
                        "compare a field with a value: `path == \"/bin/sh\"`, `uid == 0` ({} fields)",
                        kind.name()
                    )),
            );
            None
        }
    }
}

/// A boolean condition over one event.
fn condition(kind: Kind, defs: &Defs, e: &Expr, diags: &mut Vec<Diagnostic>) -> Option<Cond> {
    match &e.kind {
        ExprKind::Bool(true) => Some(Cond::True),
        ExprKind::Bool(false) => Some(Cond::Not(Box::new(Cond::True))),
        ExprKind::Not(a) => Some(Cond::Not(Box::new(condition(kind, defs, a, diags)?))),
        ExprKind::Binary(op @ (BinOp::And | BinOp::Or), a, b) => {
            let (x, y) = (
                condition(kind, defs, a, diags),
                condition(kind, defs, b, diags),
            );
            let (x, y) = (Box::new(x?), Box::new(y?));
            Some(if *op == BinOp::And {
                Cond::And(x, y)
            } else {
                Cond::Or(x, y)
            })
        }
        // `"--foo" in argv`: any of the first arguments is the string.
        ExprKind::Binary(BinOp::In, a, b) if matches!(&b.kind, ExprKind::Path(p) if p.dotted() == "argv") =>
        {
            if kind != Kind::Exec {
                diags.push(unknown_field(kind, "argv", b.span.clone()));
                return None;
            }
            let first = super::hir::arg_field(0)?;
            let lit = str_lit(first, a, diags)?;
            let mut out = None;
            for i in 0..super::hir::ARGS {
                let c = Cond::Str {
                    field: super::hir::arg_field(i)?,
                    pat: StrPat::Eq(lit.clone()),
                };
                out = Some(match out {
                    None => c,
                    Some(prev) => Cond::Or(Box::new(prev), Box::new(c)),
                });
            }
            out
        }
        ExprKind::Binary(op, a, b) => {
            // A value on the left: flip (`"/bin/sh" == path`).
            let (a, b, op) = match (&a.kind, op) {
                (ExprKind::Str(_) | ExprKind::Int(_), BinOp::Eq | BinOp::Ne) => (b, a, *op),
                _ => (a, b, *op),
            };
            // `flags & 0x200 != 0`: a masked integer field.
            if let ExprKind::Binary(BinOp::BitAnd, x, m) = &a.kind {
                let field = field_of(kind, x, diags)?;
                if field.ty != FieldTy::Int {
                    diags.push(
                        Diagnostic::error(
                            "E0401",
                            format!("`{}` is a string", field.name),
                            x.span.clone(),
                        )
                        .with_label("masks are for integer fields"),
                    );
                    return None;
                }
                let mask = int_lit(field, m, diags)?;
                if !matches!(op, BinOp::Eq | BinOp::Ne) {
                    diags.push(
                        Diagnostic::error(
                            "E0401",
                            "a masked field is compared with `==` or `!=`",
                            e.span.clone(),
                        )
                        .with_label("ordered compare of masked bits"),
                    );
                    return None;
                }
                let c = Cond::Int {
                    field,
                    mask: Some(mask),
                    op: IntOp::Eq,
                    value: int_lit(field, b, diags)?,
                };
                return Some(if op == BinOp::Ne {
                    Cond::Not(Box::new(c))
                } else {
                    c
                });
            }
            let field = field_of(kind, a, diags)?;
            if let FieldTy::Comms(n) = field.ty {
                // Any ancestor: `!=` is "none is", as `not ancestor.comm == ..`.
                let (op, negate) = if op == BinOp::Ne {
                    (BinOp::Eq, true)
                } else {
                    (op, false)
                };
                let any = any_slot(field, n, |f| compare(f, op, b, e, defs, diags))?;
                return Some(if negate {
                    Cond::Not(Box::new(any))
                } else {
                    any
                });
            }
            compare(field, op, b, e, defs, diags)
        }
        // A macro by name: its condition, checked for this rule's kind.
        ExprKind::Path(p) if kind.field(&p.dotted()).is_none() && defs.is_macro(&p.dotted()) => {
            defs.expand(&p.dotted(), e.span.clone(), diags, |m, diags| {
                condition(kind, defs, m, diags)
            })
        }
        // An integer field alone is true when not zero (`when write`).
        ExprKind::Path(_) => {
            let field = field_of(kind, e, diags)?;
            if field.ty != FieldTy::Int {
                diags.push(
                    Diagnostic::error(
                        "E0401",
                        format!("`{}` is not true or false", field.name),
                        e.span.clone(),
                    )
                    .with_label("a string")
                    .with_help(format!("compare it: `{} == \"..\"`", field.name)),
                );
                return None;
            }
            Some(Cond::Not(Box::new(Cond::Int {
                field,
                mask: None,
                op: IntOp::Eq,
                value: 0,
            })))
        }
        ExprKind::Call(p, args) => {
            let f = p.dotted();
            let wanted = match f.as_str() {
                "starts_with" | "startswith" => true,
                "ends_with" | "endswith" => false,
                _ => {
                    diags.push(
                        Diagnostic::error("E0301", format!("no condition function `{f}`"), p.span.clone())
                            .with_label("unknown function")
                            .with_help("conditions: `==`, `!=`, `in { .. }`, `~ \"glob\"`, `starts_with(FIELD, \"..\")`, `ends_with(FIELD, \"..\")`"),
                    );
                    return None;
                }
            };
            let [a, b] = args.as_slice() else {
                diags.push(
                    Diagnostic::error(
                        "E0512",
                        format!("`{f}` takes a field and a string"),
                        e.span.clone(),
                    )
                    .with_label(format!("given {} arguments", args.len())),
                );
                return None;
            };
            let field = field_of(kind, a, diags)?;
            if let FieldTy::Comms(n) = field.ty {
                let bytes: Vec<Option<u8>> = str_lit(slot(field, 0), b, diags)?
                    .into_iter()
                    .map(Some)
                    .collect();
                return any_slot(field, n, |f| {
                    Some(Cond::Str {
                        field: f,
                        pat: if wanted {
                            StrPat::Prefix(bytes.clone())
                        } else {
                            StrPat::Suffix(bytes.clone())
                        },
                    })
                });
            }
            let bytes = str_lit(field, b, diags)?;
            if !wanted && is_arg(field) {
                diags.push(no_arg_suffix(e.span.clone()));
                return None;
            }
            let bytes: Vec<Option<u8>> = bytes.into_iter().map(Some).collect();
            Some(Cond::Str {
                field,
                pat: if wanted {
                    StrPat::Prefix(bytes)
                } else {
                    StrPat::Suffix(bytes)
                },
            })
        }
        _ => {
            diags.push(
                Diagnostic::error("E0401", "expected a condition", e.span.clone())
                    .with_label("not true or false")
                    .with_help("compare a field: `comm == \"sh\"`, `path ~ \"/tmp/*\"`, `uid in { 0, 1000 }`"),
            );
            None
        }
    }
}

/// The string literal `e`, for a test of `field` (a string field).
fn str_lit(field: Field, e: &Expr, diags: &mut Vec<Diagnostic>) -> Option<Vec<u8>> {
    let cap = match field.ty {
        FieldTy::Str(n) => n,
        FieldTy::Int | FieldTy::Addr => {
            diags.push(
                Diagnostic::error(
                    "E0401",
                    format!(
                        "`{}` is {}",
                        field.name,
                        if field.ty == FieldTy::Int {
                            "an integer"
                        } else {
                            "an address"
                        }
                    ),
                    e.span.clone(),
                )
                .with_label("a string here")
                .with_help("string tests (`starts_with`, `~`) are for string fields"),
            );
            return None;
        }
        FieldTy::Args(_) | FieldTy::Comms(_) => {
            diags.push(not_testable(field, e.span.clone()));
            return None;
        }
    };
    match &e.kind {
        ExprKind::Str(s) => {
            if s.len() + 1 > cap as usize {
                diags.push(
                    Diagnostic::error(
                        "E0534",
                        format!(
                            "`{}` holds at most {} bytes: this test can never match",
                            field.name,
                            cap - 1
                        ),
                        e.span.clone(),
                    )
                    .with_label(format!("{} bytes", s.len())),
                );
                return None;
            }
            if s.as_bytes().contains(&0) {
                diags.push(
                    Diagnostic::error("E0401", "strings in rules cannot hold NUL", e.span.clone())
                        .with_label("has a NUL byte"),
                );
                return None;
            }
            Some(s.as_bytes().to_vec())
        }
        _ => {
            diags.push(
                Diagnostic::error(
                    "E0401",
                    format!("`{}` is a string", field.name),
                    e.span.clone(),
                )
                .with_label("expected a string literal"),
            );
            None
        }
    }
}

fn not_testable(field: Field, span: Span) -> Diagnostic {
    let d = Diagnostic::error(
        "L0501",
        format!(
            "`{}` can be printed in alerts but not tested as a whole",
            field.name
        ),
        span,
    )
    .with_label("not supported");
    if field.name == "argv" {
        d.with_help("test one argument, `argv[1] == \"-c\"`, or any of them, `\"-c\" in argv`")
    } else {
        d
    }
}

/// Whether `field` is an `argv[i]` slot.
fn is_arg(field: Field) -> bool {
    field.name.starts_with("argv[")
}

/// Slots hold an argument's first 63 bytes: its end is not known for a longer one.
fn no_arg_suffix(span: Span) -> Diagnostic {
    Diagnostic::error(
        "L0501",
        "`argv[i]` is tested by its start (`==`, `in`, `starts_with`, a glob ending in `*`), not by its end",
        span,
    )
    .with_label("a test of the argument's end")
    .with_help("an argument longer than 63 bytes keeps only its first 63 in the slot rules test")
}

fn compare(
    field: Field,
    op: BinOp,
    b: &Expr,
    whole: &Expr,
    defs: &Defs,
    diags: &mut Vec<Diagnostic>,
) -> Option<Cond> {
    if let FieldTy::Args(_) = field.ty {
        diags.push(not_testable(field, whole.span.clone()));
        return None;
    }
    match op {
        BinOp::In => {
            let elems = match &b.kind {
                ExprKind::SetLit(_)
                | ExprKind::List(_)
                // `address in 10.0.0.0/8`, `port in 1024..2047`, `comm in shells`.
                | ExprKind::Cidr4(..)
                | ExprKind::Cidr6(..)
                | ExprKind::Range(..)
                | ExprKind::Path(_) => defs.elems(b, diags)?,
                _ => {
                    diags.push(
                        Diagnostic::error("E0401", "`in` takes a list", b.span.clone())
                            .with_label("expected `{ a, b, .. }`"),
                    );
                    return None;
                }
            };
            let mut out: Option<Cond> = None;
            let mut ok = true;
            // Plain strings and integers go to a map when there are enough of them;
            // ranges and addresses stay compares.
            let mut values: Vec<SetValue> = Vec::new();
            let mut tests: Vec<Cond> = Vec::new();
            for el in elems {
                let c = match field.ty {
                    FieldTy::Int => int_elem(field, el, diags),
                    FieldTy::Addr => addr_lit(field, el, true, diags),
                    _ => str_lit(field, el, diags).map(|s| Cond::Str {
                        field,
                        pat: StrPat::Eq(s),
                    }),
                };
                match c {
                    Some(Cond::Str {
                        pat: StrPat::Eq(s), ..
                    }) => values.push(SetValue::Str(s)),
                    Some(Cond::Int {
                        op: IntOp::Eq,
                        mask: None,
                        value,
                        ..
                    }) => values.push(SetValue::Int(value)),
                    Some(c) => tests.push(c),
                    None => ok = false,
                }
            }
            if !ok {
                return None;
            }
            let min = if field.ty == FieldTy::Int {
                INT_SET_MIN
            } else {
                STR_SET_MIN
            };
            if values.len() >= min {
                let set = defs.member(field.name, values);
                tests.insert(0, Cond::Member { field, set });
            } else {
                let eqs = values.into_iter().map(|v| match v {
                    SetValue::Str(s) => Cond::Str {
                        field,
                        pat: StrPat::Eq(s),
                    },
                    SetValue::Int(value) => Cond::Int {
                        field,
                        mask: None,
                        op: IntOp::Eq,
                        value,
                    },
                });
                tests.splice(0..0, eqs);
            }
            for c in tests {
                out = Some(match out {
                    None => c,
                    Some(prev) => Cond::Or(Box::new(prev), Box::new(c)),
                });
            }
            // An empty list never matches.
            Some(out.unwrap_or(Cond::Not(Box::new(Cond::True))))
        }
        BinOp::Match => {
            let s = str_lit(field, b, diags)?;
            let pat = glob(&s, b.span.clone(), diags)?;
            if is_arg(field) && matches!(pat, StrPat::Suffix(_) | StrPat::Glob { .. }) {
                diags.push(no_arg_suffix(whole.span.clone()));
                return None;
            }
            Some(Cond::Str { field, pat })
        }
        BinOp::Eq | BinOp::Ne => {
            let c = match field.ty {
                FieldTy::Addr => addr_lit(field, b, false, diags)?,
                FieldTy::Int => Cond::Int {
                    field,
                    mask: None,
                    op: IntOp::Eq,
                    value: int_lit(field, b, diags)?,
                },
                _ => Cond::Str {
                    field,
                    pat: StrPat::Eq(str_lit(field, b, diags)?),
                },
            };
            Some(if op == BinOp::Ne {
                Cond::Not(Box::new(c))
            } else {
                c
            })
        }
        BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge => {
            if field.ty == FieldTy::Addr {
                diags.push(
                    Diagnostic::error("E0403", "addresses are not ordered", whole.span.clone())
                        .with_label(format!("`{}` is an address", field.name))
                        .with_help(
                            "test a range of addresses with a prefix: `address in 10.0.0.0/8`",
                        ),
                );
                return None;
            }
            if field.ty != FieldTy::Int {
                diags.push(
                    Diagnostic::error("E0403", "strings are not ordered", whole.span.clone())
                        .with_label(format!("`{}` is a string", field.name))
                        .with_help("test strings with `==`, `in`, `~ \"glob\"`, `starts_with` or `ends_with`"),
                );
                return None;
            }
            let op = match op {
                BinOp::Lt => IntOp::Lt,
                BinOp::Le => IntOp::Le,
                BinOp::Gt => IntOp::Gt,
                _ => IntOp::Ge,
            };
            Some(Cond::Int {
                field,
                mask: None,
                op,
                value: int_lit(field, b, diags)?,
            })
        }
        _ => {
            diags.push(
                Diagnostic::error("E0401", "not a test of a field", whole.span.clone())
                    .with_label("expected `==`, `!=`, `<`, `in`, `~`"),
            );
            None
        }
    }
}

/// One element of `FIELD in { .. }` for an integer field: a value or `LO..HI`.
fn int_elem(field: Field, e: &Expr, diags: &mut Vec<Diagnostic>) -> Option<Cond> {
    let test = |op, value| Cond::Int {
        field,
        mask: None,
        op,
        value,
    };
    match &e.kind {
        ExprKind::Range(lo, hi) => {
            let (lo, hi) = (int_lit(field, lo, diags)?, int_lit(field, hi, diags)?);
            if lo > hi {
                diags.push(
                    Diagnostic::error("E0401", "this range is empty", e.span.clone())
                        .with_label(format!("{lo} is above {hi}")),
                );
                return None;
            }
            Some(Cond::And(
                Box::new(test(IntOp::Ge, lo)),
                Box::new(test(IntOp::Le, hi)),
            ))
        }
        _ => Some(test(IntOp::Eq, int_lit(field, e, diags)?)),
    }
}

/// An address or (when `prefixes`, inside `in`) a prefix, as a test of `field`.
fn addr_lit(field: Field, e: &Expr, prefixes: bool, diags: &mut Vec<Diagnostic>) -> Option<Cond> {
    let mut bytes = [0u8; 16];
    let (v6, prefix) = match &e.kind {
        ExprKind::Ip4(a) => {
            bytes[..4].copy_from_slice(a);
            (false, 32)
        }
        ExprKind::Ip6(a) => {
            bytes = *a;
            (true, 128)
        }
        ExprKind::Cidr4(a, n) if prefixes => {
            bytes[..4].copy_from_slice(a);
            (false, *n)
        }
        ExprKind::Cidr6(a, n) if prefixes => {
            bytes = *a;
            (true, *n)
        }
        ExprKind::Cidr4(..) | ExprKind::Cidr6(..) => {
            diags.push(
                Diagnostic::error(
                    "E0401",
                    "an address is compared with an address; a prefix takes `in`",
                    e.span.clone(),
                )
                .with_label("a prefix")
                .with_help(format!("write `{} in PREFIX`", field.name)),
            );
            return None;
        }
        _ => {
            diags.push(
                Diagnostic::error(
                    "E0401",
                    format!("`{}` is an address", field.name),
                    e.span.clone(),
                )
                .with_label("expected an IPv4 or IPv6 address")
                .with_help("`address == 192.0.2.1`, `address in { 10.0.0.0/8, 2001:db8::/32 }`"),
            );
            return None;
        }
    };
    // An IPv4-mapped IPv6 address is recorded as IPv4: test it as such.
    let mapped = v6 && bytes[..10] == [0; 10] && bytes[10..12] == [0xff, 0xff] && prefix >= 96;
    if mapped {
        let v4 = [bytes[12], bytes[13], bytes[14], bytes[15]];
        bytes = [0; 16];
        bytes[..4].copy_from_slice(&v4);
        return Some(Cond::Addr {
            field,
            v6: false,
            bytes,
            prefix: prefix - 96,
        });
    }
    Some(Cond::Addr {
        field,
        v6,
        bytes,
        prefix,
    })
}

fn int_lit(field: Field, e: &Expr, diags: &mut Vec<Diagnostic>) -> Option<u64> {
    match &e.kind {
        ExprKind::Int(n) => Some(*n),
        _ => {
            diags.push(
                Diagnostic::error(
                    "E0401",
                    format!("`{}` is an integer", field.name),
                    e.span.clone(),
                )
                .with_label("expected an integer"),
            );
            None
        }
    }
}

/// Longest literal part of a glob: a compare of at most this many bytes per part.
const GLOB_MAX: usize = 128;

/// A glob with `?` (any byte) and at most one `*` (any bytes), as bounded compares.
fn glob(s: &[u8], span: Span, diags: &mut Vec<Diagnostic>) -> Option<StrPat> {
    let part =
        |b: &[u8]| -> Vec<Option<u8>> { b.iter().map(|&c| (c != b'?').then_some(c)).collect() };
    let stars = s.iter().filter(|&&c| c == b'*').count();
    if stars > 1 {
        diags.push(
            Diagnostic::error("E0535", "this glob cannot be compiled to bounded code", span)
                .with_label(format!("{stars} `*`s"))
                .with_help("a glob has at most one `*` (`/tmp/*`, `*.sh`, `/usr/*/sh`); combine globs with `and`"),
        );
        return None;
    }
    if s.len() > GLOB_MAX {
        diags.push(
            Diagnostic::error(
                "E0535",
                "this glob cannot be compiled to bounded code",
                span,
            )
            .with_label(format!("{} bytes, more than {GLOB_MAX}", s.len())),
        );
        return None;
    }
    Some(match s.iter().position(|&c| c == b'*') {
        None if !s.contains(&b'?') => StrPat::Eq(s.to_vec()),
        None => StrPat::Exact(part(s)),
        Some(0) => StrPat::Suffix(part(&s[1..])),
        Some(i) if i + 1 == s.len() => StrPat::Prefix(part(&s[..i])),
        Some(i) => StrPat::Glob {
            prefix: part(&s[..i]),
            suffix: part(&s[i + 1..]),
        },
    })
}

/// The file's `list` and `macro` declarations, by name, and the macros being expanded
/// (a macro that uses itself is an error, not an endless expansion).
pub struct Defs<'a> {
    by_name: std::collections::HashMap<&'a str, &'a ast::MacroDecl>,
    expanding: std::cell::RefCell<Vec<String>>,
    /// Lists whose declaration has errors: uses of them report nothing more.
    bad: std::collections::HashSet<&'a str>,
    /// The sets looked up in maps, each once (a list used by several rules, or by
    /// each slot of `ancestor.comm`, is one set).
    sets: std::cell::RefCell<Vec<MemberSet>>,
}

/// How deep lists may nest in lists.
const NEST_MAX: usize = 32;

impl<'a> Defs<'a> {
    /// Indexes the declarations; a name declared twice and a list holding values of more
    /// than one type are errors at their span.
    pub fn new(macros: &[&'a ast::MacroDecl], diags: &mut Vec<Diagnostic>) -> Defs<'a> {
        let mut by_name: std::collections::HashMap<&'a str, &'a ast::MacroDecl> =
            std::collections::HashMap::new();
        for m in macros {
            if let Some(first) = by_name.get(m.name.name.as_str()) {
                diags.push(
                    Diagnostic::error(
                        "E0304",
                        format!("`{}` is defined twice", m.name.name),
                        m.name.span.clone(),
                    )
                    .with_label("defined again here")
                    .with_secondary(first.name.span.clone(), "first defined here"),
                );
                continue;
            }
            by_name.insert(&m.name.name, m);
        }
        let mut defs = Defs {
            by_name,
            expanding: std::cell::RefCell::new(Vec::new()),
            bad: std::collections::HashSet::new(),
            sets: std::cell::RefCell::new(Vec::new()),
        };
        for m in macros.iter().filter(|m| m.list) {
            let before = diags.len();
            defs.check_list(m, diags);
            if diags.len() > before {
                defs.bad.insert(&m.name.name);
            }
        }
        defs
    }

    /// The index of the set of `values` (sorted, without repeats) tested on `field`.
    fn member(&self, field: &'static str, mut values: Vec<SetValue>) -> usize {
        values.sort();
        values.dedup();
        let mut sets = self.sets.borrow_mut();
        if let Some(i) = sets
            .iter()
            .position(|s| s.field == field && s.values == values)
        {
            return i;
        }
        sets.push(MemberSet { field, values });
        sets.len() - 1
    }

    fn is_macro(&self, name: &str) -> bool {
        self.by_name.get(name).is_some_and(|m| !m.list)
    }

    /// The values of `e` for `in`: a `{ .. }` literal or one value, with lists named in it
    /// (or named alone) spliced in.
    fn elems<'e>(&self, e: &'e Expr, diags: &mut Vec<Diagnostic>) -> Option<Vec<&'e Expr>>
    where
        'a: 'e,
    {
        let mut out = Vec::new();
        self.splice(e, 0, &mut out, diags).then_some(out)
    }

    fn splice<'e>(
        &self,
        e: &'e Expr,
        depth: usize,
        out: &mut Vec<&'e Expr>,
        diags: &mut Vec<Diagnostic>,
    ) -> bool
    where
        'a: 'e,
    {
        match &e.kind {
            // Every element, so each bad one is reported.
            ExprKind::SetLit(es) | ExprKind::List(es) => {
                let mut ok = true;
                for el in es {
                    ok &= self.splice(el, depth, out, diags);
                }
                ok
            }
            ExprKind::Path(p) => {
                let name = p.dotted();
                match self.by_name.get(name.as_str()).copied() {
                    Some(m) if m.list && self.bad.contains(name.as_str()) => false,
                    Some(m) if m.list && depth < NEST_MAX => {
                        self.splice(&m.value, depth + 1, out, diags)
                    }
                    Some(m) if m.list => {
                        diags.push(
                            Diagnostic::error(
                                "E0537",
                                format!("list `{name}` holds itself"),
                                e.span.clone(),
                            )
                            .with_label(format!("lists nest at most {NEST_MAX} deep")),
                        );
                        false
                    }
                    Some(_) => {
                        diags.push(
                            Diagnostic::error(
                                "E0401",
                                format!("`{name}` is a macro, not a list"),
                                e.span.clone(),
                            )
                            .with_label("a condition")
                            .with_help("`in` takes `{ a, b }` or a `list`"),
                        );
                        false
                    }
                    None => {
                        let lists: Vec<&str> = self
                            .by_name
                            .values()
                            .filter(|m| m.list)
                            .map(|m| m.name.name.as_str())
                            .collect();
                        let near = nearest(&name, lists.iter().copied(), 3);
                        let d =
                            Diagnostic::error("E0301", format!("no list `{name}`"), e.span.clone())
                                .with_label("not declared");
                        diags.push(if near.is_empty() {
                            d.with_help(format!("declare it: `list {name} = {{ .. }}`"))
                        } else {
                            d.with_help(format!("did you mean {}?", one_of(&near)))
                        });
                        false
                    }
                }
            }
            _ => {
                out.push(e);
                true
            }
        }
    }

    /// A list's values must be of one type: strings, integers (and ranges), or addresses
    /// (and prefixes).
    fn check_list(&self, m: &'a ast::MacroDecl, diags: &mut Vec<Diagnostic>) {
        if !matches!(m.value.kind, ExprKind::SetLit(_) | ExprKind::List(_)) {
            diags.push(
                Diagnostic::error("E0401", "a list is `{ a, b, .. }`", m.value.span.clone())
                    .with_label("not a list")
                    .with_help(format!("`list {} = {{ \"sh\", \"bash\" }}`", m.name.name)),
            );
            return;
        }
        let Some(elems) = self.elems(&m.value, diags) else {
            return;
        };
        let class = |e: &Expr| match &e.kind {
            ExprKind::Str(_) => Some("strings"),
            ExprKind::Int(_) | ExprKind::Range(..) => Some("integers"),
            ExprKind::Ip4(_) | ExprKind::Ip6(_) | ExprKind::Cidr4(..) | ExprKind::Cidr6(..) => {
                Some("addresses")
            }
            _ => None,
        };
        let mut first: Option<(&str, &Expr)> = None;
        for e in elems {
            match (class(e), first) {
                (None, _) => diags.push(
                    Diagnostic::error("E0401", "not a value a list can hold", e.span.clone())
                        .with_label(
                            "expected a string, an integer, a range, an address or a prefix",
                        ),
                ),
                (Some(c), None) => first = Some((c, e)),
                (Some(c), Some((f, fe))) if c != f => diags.push(
                    Diagnostic::error(
                        "E0401",
                        format!(
                            "list `{}` holds {f}, and this is not one of them",
                            m.name.name
                        ),
                        e.span.clone(),
                    )
                    .with_label(format!("not one of the {f}"))
                    .with_secondary(fe.span.clone(), format!("the list holds {f}, as this")),
                ),
                _ => {}
            }
        }
    }

    /// Checks macro `name`'s condition with `check`, refusing a macro that uses itself.
    fn expand(
        &self,
        name: &str,
        at: Span,
        diags: &mut Vec<Diagnostic>,
        check: impl FnOnce(&'a Expr, &mut Vec<Diagnostic>) -> Option<Cond>,
    ) -> Option<Cond> {
        let m = *self.by_name.get(name)?;
        if self.expanding.borrow().iter().any(|n| n == name) {
            diags.push(
                Diagnostic::error("E0537", format!("macro `{name}` uses itself"), at)
                    .with_label("expanding it again here")
                    .with_secondary(m.name.span.clone(), "declared here"),
            );
            return None;
        }
        self.expanding.borrow_mut().push(name.to_string());
        let c = check(&m.value, diags);
        self.expanding.borrow_mut().pop();
        c
    }
}

/// Slot `i` of a `Comms` field, as a string field of its own.
fn slot(field: Field, i: u32) -> Field {
    Field {
        ty: FieldTy::Str(super::hir::COMM_LEN),
        offset: field.offset + i * super::hir::COMM_LEN,
        ..field
    }
}

/// The same test of every slot of a `Comms` field, or-ed (errors once, from slot 0).
fn any_slot(field: Field, n: u32, mut test: impl FnMut(Field) -> Option<Cond>) -> Option<Cond> {
    let mut out = test(slot(field, 0))?;
    for i in 1..n {
        let c = test(slot(field, i))?;
        out = Cond::Or(Box::new(out), Box::new(c));
    }
    Some(out)
}
