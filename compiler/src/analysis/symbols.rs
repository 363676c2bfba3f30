//! The outline of a file (document symbols) and the kind of every token (semantic tokens).

use super::docs::keyword_word;
use super::{Analysis, DefKind, Target};
use crate::syntax::ast::{FileId, FilterRule, Item, Span, Stmt, TestCase};
use crate::syntax::lexer::Tok;

/// One entry of the outline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Symbol {
    pub name: String,
    pub kind: SymbolKind,
    pub detail: Option<String>,
    /// The whole item, and the part to select (its name).
    pub span: Span,
    pub name_span: Span,
    pub children: Vec<Symbol>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SymbolKind {
    Module,
    Const,
    Set,
    Filter,
    Rule,
    Probe,
    SecurityRule,
    Test,
    Case,
}

/// A token's meaning, for highlighting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SemanticKind {
    Keyword,
    Comment,
    String,
    Number,
    Operator,
    /// A set, constant or counter.
    Variable,
    /// A packet field.
    Property,
    /// A hook.
    Function,
    Type,
    /// A module path.
    Namespace,
    /// A filter, test, probe or rule name.
    Class,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SemanticToken {
    pub span: Span,
    pub kind: SemanticKind,
    /// At a declaration.
    pub declaration: bool,
    /// A name from the standard library (read-only there).
    pub readonly: bool,
}

impl Analysis {
    /// The outline: imports, constants, sets, filters (with their rules), probes, rules,
    /// tests (with their cases).
    pub fn document_symbols(&self) -> Vec<Symbol> {
        let text = |s: &Span| squeeze_line(self.source.get(s.clone()).unwrap_or(""));
        let mut out = Vec::new();
        for item in &self.ast.items {
            let sym = match item {
                Item::Import(i) => leaf(i.path.dotted(), SymbolKind::Module, &i.span, &i.path.span),
                Item::Const(k) => leaf(
                    k.name.name.clone(),
                    SymbolKind::Const,
                    &k.span,
                    &k.name.span,
                ),
                Item::Set(s) => leaf(s.name.name.clone(), SymbolKind::Set, &s.span, &s.name.span),
                Item::Macro(m) => leaf(
                    m.name.name.clone(),
                    if m.list {
                        SymbolKind::Set
                    } else {
                        SymbolKind::Const
                    },
                    &m.span,
                    &m.name.span,
                ),
                Item::Filter(f) => {
                    // Editors refuse symbols without a name.
                    let name = if f.header_parsed {
                        f.name.name.clone()
                    } else {
                        "filter (its header does not parse)".to_string()
                    };
                    let mut s = leaf(name, SymbolKind::Filter, &f.span, &f.name.span);
                    s.detail = Some(text(&f.hook.span));
                    s.children = f
                        .rules
                        .iter()
                        .filter_map(|r| match r {
                            FilterRule::Match { span, action, .. }
                            | FilterRule::Default { span, action, .. }
                            | FilterRule::Malformed { span, action, .. }
                            | FilterRule::Option { span, action, .. } => {
                                Some(leaf(text(span), SymbolKind::Rule, span, &action.span))
                            }
                            FilterRule::Error(_) => None,
                        })
                        .collect();
                    s
                }
                Item::Probe(p) => {
                    // An anonymous probe is listed by its hook.
                    let name = if !p.header_parsed {
                        "probe (its header does not parse)".to_string()
                    } else if p.name.name.is_empty() {
                        text(&p.hook.span)
                    } else {
                        p.name.name.clone()
                    };
                    let mut s = leaf(name, SymbolKind::Probe, &p.span, &p.name.span);
                    s.detail = Some(text(&p.hook.span));
                    s.children = stmts(&p.body, &text);
                    s
                }
                Item::Rule(r) => {
                    let name = if r.header_parsed {
                        r.name.name.clone()
                    } else {
                        "rule (its header does not parse)".to_string()
                    };
                    let mut s = leaf(name, SymbolKind::SecurityRule, &r.span, &r.name.span);
                    s.detail = Some(text(&r.hook.span));
                    s.children = stmts(&r.body, &text);
                    s
                }
                Item::Test(t) => {
                    let name = if t.header_parsed {
                        t.name.clone()
                    } else {
                        "test (its header does not parse)".to_string()
                    };
                    let mut s = leaf(name, SymbolKind::Test, &t.span, &t.name_span);
                    s.detail = Some(format!("on {}", t.target.name));
                    s.children = t
                        .cases
                        .iter()
                        .filter_map(|c| match c {
                            TestCase::Packet { span, .. } => {
                                Some(leaf(text(span), SymbolKind::Case, span, span))
                            }
                            TestCase::Error(_) => None,
                        })
                        .collect();
                    s
                }
            };
            out.push(sym);
        }
        out
    }

    /// Every token with a meaning, in source order, comments included.
    pub fn semantic_tokens(&self) -> Vec<SemanticToken> {
        let mut out: Vec<SemanticToken> = Vec::new();
        let mut occ = self.occurrences.iter().peekable();
        for (l, tok, r) in &self.tokens {
            let kind = match tok {
                t if keyword_word(t).is_some() => SemanticKind::Keyword,
                Tok::Str(_) => SemanticKind::String,
                Tok::Int(_) | Tok::Ip4(_) | Tok::Ip6(_) => SemanticKind::Number,
                Tok::EqEq
                | Tok::NotEq
                | Tok::Lt
                | Tok::Le
                | Tok::Gt
                | Tok::Ge
                | Tok::Tilde
                | Tok::FatArrow
                | Tok::DotDot => SemanticKind::Operator,
                Tok::Ident(_) => {
                    while occ.peek().is_some_and(|o| o.span.end <= *l) {
                        occ.next();
                    }
                    let Some(o) = occ
                        .peek()
                        .filter(|o| o.span.start <= *l && *r <= o.span.end)
                    else {
                        continue;
                    };
                    let (kind, readonly) = match o.target {
                        Target::Field(_) => (SemanticKind::Property, false),
                        Target::Hook(_) => (SemanticKind::Function, false),
                        Target::Type(_) => (SemanticKind::Type, false),
                        Target::Def(i) => match self.defs.get(i) {
                            Some(d) => (
                                match d.kind {
                                    DefKind::Set | DefKind::Const | DefKind::Counter => {
                                        SemanticKind::Variable
                                    }
                                    DefKind::Module => SemanticKind::Namespace,
                                    _ => SemanticKind::Class,
                                },
                                d.file != FileId::Main,
                            ),
                            None => continue,
                        },
                    };
                    out.push(SemanticToken {
                        span: *l..*r,
                        kind,
                        declaration: o.is_def,
                        readonly,
                    });
                    continue;
                }
                _ => continue,
            };
            out.push(SemanticToken {
                span: *l..*r,
                kind,
                declaration: false,
                readonly: false,
            });
        }
        out.extend(self.comments.iter().map(|c| SemanticToken {
            span: c.clone(),
            kind: SemanticKind::Comment,
            declaration: false,
            readonly: false,
        }));
        out.sort_by_key(|t| t.span.start);
        out
    }
}

fn leaf(name: String, kind: SymbolKind, span: &Span, name_span: &Span) -> Symbol {
    Symbol {
        name,
        kind,
        detail: None,
        span: span.clone(),
        name_span: name_span.clone(),
        children: Vec::new(),
    }
}

fn stmts(body: &[Stmt], text: &dyn Fn(&Span) -> String) -> Vec<Symbol> {
    body.iter()
        .filter_map(|s| match s {
            Stmt::Where(_, span)
            | Stmt::When(_, span)
            | Stmt::Unless(_, span)
            | Stmt::Emit(_, span)
            | Stmt::Action(_, span)
            | Stmt::Count { span, .. }
            | Stmt::Aggregate { span, .. }
            | Stmt::Assign { span, .. }
            | Stmt::Delete { span, .. }
            | Stmt::Command { span, .. } => Some(leaf(text(span), SymbolKind::Rule, span, span)),
            Stmt::Error(_) => None,
        })
        .collect()
}

/// A rule's text on one line, cut at 80 characters.
fn squeeze_line(s: &str) -> String {
    let one = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if one.chars().count() > 80 {
        one.chars().take(77).collect::<String>() + "..."
    } else {
        one
    }
}
