//! Helpers the grammar's actions call: node builders, the brace rule, error collection.
//!
//! The brace rule: `{ ... }` is parsed once as a list of elements, each either an
//! expression or `name: value`. It is a **record** when at least one element is
//! `name: value`, or when it directly follows `emit` (where `{ pid, comm }` lists fields);
//! otherwise it is a **set literal**. In a record, an element without `:` must be a bare
//! name (`pid`), which stands for `pid: pid`.

use crate::diag::Diagnostic;
use crate::syntax::ast::{BinOp, Expr, ExprKind, FilterRule, Ident, Span, Stmt, TestCase};
use crate::syntax::lexer::{Ip4Lit, Ip6Lit, LexError, Tok};
use lalrpop_util::{ErrorRecovery, ParseError};

/// State threaded through the parser: errors found so far.
#[derive(Default)]
pub struct Ctx {
    /// Syntax errors lalrpop recovered from, converted to diagnostics by `errors`.
    pub errors: Vec<ParseError<usize, Tok, LexError>>,
    /// Errors the grammar actions found themselves (e.g. a malformed record).
    pub diags: Vec<Diagnostic>,
    /// Starts of error nodes that begin mid-rule (see `recovered_at`).
    continuations: Vec<usize>,
    /// Byte offsets of the source's `\n`s, sorted.
    newlines: Vec<usize>,
}

/// One element of a `{ ... }` literal before the brace rule decides what it is.
pub enum BraceElem {
    Elem(Expr),
    Field(Ident, Expr),
}

impl Ctx {
    pub fn new(source: &str) -> Ctx {
        Ctx {
            newlines: source.match_indices('\n').map(|(i, _)| i).collect(),
            ..Ctx::default()
        }
    }

    /// True when a line break lies in `span`.
    fn crosses_line(&self, span: Span) -> bool {
        let first = self.newlines.partition_point(|&n| n < span.start);
        self.newlines.get(first).is_some_and(|&n| n < span.end)
    }

    pub fn recovered(&mut self, e: ErrorRecovery<usize, Tok, LexError>) {
        self.errors.push(e.error);
    }

    /// Records an error met where a rule, statement or test case should start. When the
    /// recovered span begins *at* the offending token and that token cannot start one
    /// (`drop tcp.dport = 23`: the parser took `drop tcp.dport` as a whole rule before
    /// meeting `=`), the error is the tail of the previous node; `merge_*` then turns
    /// that node and its tail into one error node, so no half rule survives. Newlines are
    /// not significant to the grammar, but here they are a hint: an error on a later line
    /// than the previous node (`tcp.dport == 22` with no action) is a node of its own.
    pub fn recovered_at(
        &mut self,
        e: ErrorRecovery<usize, Tok, LexError>,
        start: usize,
        starts_node: fn(&Tok) -> bool,
    ) {
        if let ParseError::UnrecognizedToken {
            token: (l, tok, _), ..
        } = &e.error
        {
            if *l == start && !starts_node(tok) {
                self.continuations.push(start);
            }
        }
        self.recovered(e);
    }

    pub fn merge_rules(&self, rules: Vec<FilterRule>) -> Vec<FilterRule> {
        self.merge(rules, rule_span, FilterRule::Error)
    }

    pub fn merge_stmts(&self, stmts: Vec<Stmt>) -> Vec<Stmt> {
        self.merge(stmts, stmt_span, Stmt::Error)
    }

    pub fn merge_cases(&self, cases: Vec<TestCase>) -> Vec<TestCase> {
        self.merge(cases, case_span, TestCase::Error)
    }

    /// `span` gives a node's span and whether it is an error node.
    fn merge<T>(
        &self,
        nodes: Vec<T>,
        span: fn(&T) -> (Span, bool),
        error: fn(Span) -> T,
    ) -> Vec<T> {
        let mut out: Vec<T> = Vec::with_capacity(nodes.len());
        for node in nodes {
            let (s, is_error) = span(&node);
            if is_error && self.continuations.contains(&s.start) {
                if let Some(prev) = out.last().map(|p| span(p).0) {
                    if !self.crosses_line(prev.end..s.start) {
                        out.pop();
                        out.push(error(prev.start..s.end));
                        continue;
                    }
                }
            }
            out.push(node);
        }
        out
    }

    pub fn error_expr(&mut self, e: ErrorRecovery<usize, Tok, LexError>, span: Span) -> Expr {
        self.recovered(e);
        Expr {
            kind: ExprKind::Error,
            span,
        }
    }

    /// Applies the brace rule to `{ elems }`.
    pub fn brace(&mut self, elems: Vec<BraceElem>, span: Span) -> Expr {
        let is_record = elems.iter().any(|e| matches!(e, BraceElem::Field(..)));
        let kind = if is_record {
            ExprKind::Record(self.record_fields(elems))
        } else {
            ExprKind::SetLit(
                elems
                    .into_iter()
                    .filter_map(|e| match e {
                        BraceElem::Elem(e) => Some(e),
                        BraceElem::Field(..) => None,
                    })
                    .collect(),
            )
        };
        Expr { kind, span }
    }

    /// `emit { pid, comm }`: a set literal of bare names right after `emit` is a record.
    pub fn emitted(&mut self, e: Expr) -> Expr {
        match e.kind {
            ExprKind::SetLit(elems) => {
                let elems = elems.into_iter().map(BraceElem::Elem).collect();
                Expr {
                    kind: ExprKind::Record(self.record_fields(elems)),
                    span: e.span,
                }
            }
            kind => Expr { kind, span: e.span },
        }
    }

    fn record_fields(&mut self, elems: Vec<BraceElem>) -> Vec<(Ident, Option<Expr>)> {
        let mut fields = Vec::with_capacity(elems.len());
        for elem in elems {
            match elem {
                BraceElem::Field(name, value) => fields.push((name, Some(value))),
                BraceElem::Elem(Expr {
                    kind: ExprKind::Path(p),
                    ..
                }) if p.segments.len() == 1 => {
                    fields.extend(p.segments.into_iter().map(|s| (s, None)));
                }
                BraceElem::Elem(Expr {
                    kind: ExprKind::Error,
                    ..
                }) => {}
                BraceElem::Elem(other) => self.diags.push(
                    Diagnostic::error(
                        "E0204",
                        "a record field must be `name` or `name: value`",
                        other.span,
                    )
                    .with_label("this is neither")
                    .with_help("give the field a name, e.g. `file: str(args.filename)`"),
                ),
            }
        }
        fields
    }
}

fn rule_span(r: &FilterRule) -> (Span, bool) {
    match r {
        FilterRule::Match { span, .. }
        | FilterRule::Default { span, .. }
        | FilterRule::Malformed { span, .. }
        | FilterRule::Option { span, .. } => (span.clone(), false),
        FilterRule::Error(span) => (span.clone(), true),
    }
}

fn stmt_span(s: &Stmt) -> (Span, bool) {
    match s {
        Stmt::Where(_, span)
        | Stmt::When(_, span)
        | Stmt::Unless(_, span)
        | Stmt::Emit(_, span)
        | Stmt::Action(_, span)
        | Stmt::Count { span, .. }
        | Stmt::Aggregate { span, .. }
        | Stmt::Assign { span, .. }
        | Stmt::Delete { span, .. }
        | Stmt::Command { span, .. } => (span.clone(), false),
        Stmt::Error(span) => (span.clone(), true),
    }
}

fn case_span(c: &TestCase) -> (Span, bool) {
    match c {
        TestCase::Packet { span, .. } => (span.clone(), false),
        TestCase::Error(span) => (span.clone(), true),
    }
}

pub fn starts_rule(t: &Tok) -> bool {
    matches!(
        t,
        Tok::Pass | Tok::Drop | Tok::Default | Tok::Malformed | Tok::L7
    )
}

pub fn starts_stmt(t: &Tok) -> bool {
    matches!(
        t,
        Tok::Where | Tok::When | Tok::Unless | Tok::Count | Tok::Emit | Tok::Action | Tok::Delete
    )
}

pub fn starts_case(t: &Tok) -> bool {
    matches!(t, Tok::Packet)
}

pub fn bin(op: BinOp, a: Expr, b: Expr, span: Span) -> Expr {
    Expr {
        kind: ExprKind::Binary(op, Box::new(a), Box::new(b)),
        span,
    }
}

pub fn ip4_expr(a: Ip4Lit, span: Span) -> Expr {
    let kind = match a.prefix {
        Some(p) => ExprKind::Cidr4(a.addr, p),
        None => ExprKind::Ip4(a.addr),
    };
    Expr { kind, span }
}

pub fn ip6_expr(a: Ip6Lit, span: Span) -> Expr {
    let kind = match a.prefix {
        Some(p) => ExprKind::Cidr6(a.addr, p),
        None => ExprKind::Ip6(a.addr),
    };
    Expr { kind, span }
}
