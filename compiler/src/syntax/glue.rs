//! Helpers the grammar's actions call: node builders, the brace rule, error collection.
//!
//! The brace rule: `{ ... }` is parsed once as a list of elements, each either an
//! expression or `name: value`. It is a **record** when at least one element is
//! `name: value`, or when it directly follows `emit` (where `{ pid, comm }` lists fields);
//! otherwise it is a **set literal**. In a record, an element without `:` must be a bare
//! name (`pid`), which stands for `pid: pid`.

use crate::diag::Diagnostic;
use crate::syntax::ast::{BinOp, Expr, ExprKind, Ident, Span};
use crate::syntax::lexer::{Ip4Lit, Ip6Lit, LexError, Tok};
use lalrpop_util::{ErrorRecovery, ParseError};

/// State threaded through the parser: errors found so far.
#[derive(Default)]
pub struct Ctx {
    /// Syntax errors lalrpop recovered from, converted to diagnostics by `errors`.
    pub errors: Vec<ParseError<usize, Tok, LexError>>,
    /// Errors the grammar actions found themselves (e.g. a malformed record).
    pub diags: Vec<Diagnostic>,
}

/// One element of a `{ ... }` literal before the brace rule decides what it is.
pub enum BraceElem {
    Elem(Expr),
    Field(Ident, Expr),
}

impl Ctx {
    pub fn recovered(&mut self, e: ErrorRecovery<usize, Tok, LexError>) {
        self.errors.push(e.error);
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
