//! Name resolution for editors: declarations (`Def`s) and every name's `Occurrence`.
//!
//! Sets and constants resolve through the checker's name table, exactly as the checker
//! looks them up (the dotted path as written), so the editor and the compiler never
//! disagree; counters, filters and tests, which the checker keeps by name in the HIR,
//! are collected from the tree here.

use super::{docs, Analysis, Def, DefKind, Occurrence, Target};
use crate::hir::check::NameKind;
use crate::hir::{fields, stdlib};
use crate::syntax::ast::{
    self, CountClause, Expr, ExprKind, FileId, FilterRule, Item, Span, Stmt, TestCase,
};
use std::collections::HashMap;

pub(super) fn resolve(a: &mut Analysis) {
    let mut r = Resolver {
        defs: Vec::new(),
        occ: Vec::new(),
        by_site: HashMap::new(),
        local: HashMap::new(),
        counters: HashMap::new(),
        filters: HashMap::new(),
    };
    r.declare_items(a);
    r.declare_std(a);
    let items = std::mem::take(&mut a.ast.items);
    for item in &items {
        r.item(a, item);
    }
    a.ast.items = items;
    r.occ.sort_by_key(|o| (o.span.start, o.span.end));
    a.defs = r.defs;
    a.occurrences = r.occ;
}

struct Resolver {
    defs: Vec<Def>,
    occ: Vec<Occurrence>,
    /// (file, start of the name) → def, to map the checker's table onto `defs`.
    by_site: HashMap<(FileId, usize), usize>,
    /// Sets and constants of this file by name (the first of each).
    local: HashMap<String, usize>,
    /// The first `count NAME` of each counter is its declaration.
    counters: HashMap<String, usize>,
    filters: HashMap<String, usize>,
}

impl Resolver {
    fn def(&mut self, d: Def) -> usize {
        let i = self.defs.len();
        self.by_site.insert((d.file, d.span.start), i);
        self.defs.push(d);
        i
    }

    fn at(&mut self, span: Span, target: Target, is_def: bool) {
        self.occ.push(Occurrence {
            span,
            target,
            is_def,
        });
    }

    /// Declarations of this file, in order.
    fn declare_items(&mut self, a: &Analysis) {
        let src = &a.source;
        for item in &a.ast.items {
            let (name, span, kind, full, detail) = match item {
                Item::Const(k) => {
                    let detail = squeeze(src.get(k.span.clone()).unwrap_or(""));
                    (&k.name.name, &k.name.span, DefKind::Const, &k.span, detail)
                }
                Item::Set(s) => {
                    let ty = src.get(s.ty.span.clone()).unwrap_or("");
                    let detail = format!("set {}: {ty}", s.name.name);
                    (&s.name.name, &s.name.span, DefKind::Set, &s.span, detail)
                }
                // Rules' lists read as sets, macros as named values.
                Item::Macro(m) => {
                    let detail = squeeze(src.get(m.span.clone()).unwrap_or(""));
                    let kind = if m.list { DefKind::Set } else { DefKind::Const };
                    (&m.name.name, &m.name.span, kind, &m.span, detail)
                }
                Item::Filter(f) if !f.header_parsed => continue,
                Item::Filter(f) => {
                    let hook = squeeze(src.get(f.hook.span.clone()).unwrap_or(""));
                    let detail = format!("filter {} on {hook}", f.name.name);
                    (&f.name.name, &f.name.span, DefKind::Filter, &f.span, detail)
                }
                // An anonymous probe defines no name, nor does an item whose header did not
                // parse.
                Item::Probe(p) if p.name.name.is_empty() => continue,
                Item::Rule(r) if !r.header_parsed => continue,
                Item::Test(t) if !t.header_parsed => continue,
                Item::Probe(p) => {
                    let hook = squeeze(src.get(p.hook.span.clone()).unwrap_or(""));
                    let detail = format!("probe {} on {hook}", p.name.name);
                    (&p.name.name, &p.name.span, DefKind::Probe, &p.span, detail)
                }
                Item::Rule(r) => {
                    let hook = squeeze(src.get(r.hook.span.clone()).unwrap_or(""));
                    let detail = format!("rule {} on {hook}", r.name.name);
                    (&r.name.name, &r.name.span, DefKind::Rule, &r.span, detail)
                }
                Item::Test(t) => {
                    let detail = format!("test {:?} on {}", t.name, t.target.name);
                    (&t.name, &t.name_span, DefKind::Test, &t.span, detail)
                }
                Item::Import(_) => continue,
            };
            let doc = docs::doc_comment(src, &a.comments, full.start);
            let i = self.def(Def {
                name: name.clone(),
                kind,
                file: FileId::Main,
                span: span.clone(),
                full: full.clone(),
                detail,
                doc,
            });
            match kind {
                DefKind::Filter => {
                    self.filters.entry(name.clone()).or_insert(i);
                }
                DefKind::Set | DefKind::Const => {
                    self.local.entry(name.clone()).or_insert(i);
                }
                _ => {}
            }
        }
    }

    /// Declarations of imported stdlib modules (those the name table holds), and the
    /// modules themselves.
    fn declare_std(&mut self, a: &Analysis) {
        for m in stdlib::MODULES {
            let src = stdlib::module(m).unwrap_or("");
            let (ast, _) = crate::syntax::parse(src);
            let comments = crate::syntax::trivia::comments(src);
            self.def(Def {
                name: (*m).to_string(),
                kind: DefKind::Module,
                file: FileId::Std(m),
                span: 0..0,
                full: 0..src.len(),
                detail: format!("module {m}"),
                doc: {
                    let first: Vec<&str> = src
                        .lines()
                        .take_while(|l| l.starts_with('#'))
                        .map(|l| l.trim_start_matches('#').trim())
                        .collect();
                    (!first.is_empty()).then(|| first.join("\n"))
                },
            });
            let imported = a
                .names
                .values()
                .any(|d| d.file == FileId::Std(m) && d.kind != NameKind::Poisoned);
            if !imported {
                continue;
            }
            for item in &ast.items {
                let (name, kind, full) = match item {
                    Item::Set(s) => (&s.name, DefKind::Set, &s.span),
                    Item::Const(k) => (&k.name, DefKind::Const, &k.span),
                    _ => continue,
                };
                let detail = match item {
                    Item::Set(s) => {
                        format!(
                            "set {}: {}",
                            name.name,
                            src.get(s.ty.span.clone()).unwrap_or("")
                        )
                    }
                    _ => squeeze(src.get(full.clone()).unwrap_or("")),
                };
                self.def(Def {
                    name: name.name.clone(),
                    kind,
                    file: FileId::Std(m),
                    span: name.span.clone(),
                    full: full.clone(),
                    detail,
                    doc: docs::doc_comment(src, &comments, full.start),
                });
            }
        }
    }

    fn module(&self, path: &str) -> Option<usize> {
        self.defs
            .iter()
            .position(|d| d.kind == DefKind::Module && d.name == path)
    }

    fn item(&mut self, a: &Analysis, item: &Item) {
        match item {
            Item::Import(imp) => {
                if let Some(m) = self.module(&imp.path.dotted()) {
                    self.at(imp.path.span.clone(), Target::Def(m), false);
                }
            }
            Item::Const(k) => {
                self.decl_name(&k.name.span);
                if let Some(t) = &k.ty {
                    self.ty(t);
                }
                self.expr(a, &k.value);
            }
            Item::Set(s) => {
                self.decl_name(&s.name.span);
                self.ty(&s.ty);
                self.expr(a, &s.value);
            }
            Item::Macro(m) => {
                self.decl_name(&m.name.span);
                self.expr(a, &m.value);
            }
            Item::Filter(f) => {
                self.decl_name(&f.name.span);
                self.hook(a, &f.hook);
                for rule in &f.rules {
                    match rule {
                        FilterRule::Match { cond, counts, .. } => {
                            self.expr(a, cond);
                            self.counts(counts, true);
                        }
                        FilterRule::Default { counts, .. }
                        | FilterRule::Malformed { counts, .. } => self.counts(counts, true),
                        FilterRule::Option { .. } | FilterRule::Error(_) => {}
                    }
                }
            }
            Item::Probe(ast::Probe {
                name, hook, body, ..
            })
            | Item::Rule(ast::SecRule {
                name, hook, body, ..
            }) => {
                if !name.name.is_empty() {
                    self.decl_name(&name.span);
                }
                self.hook(a, hook);
                for s in body {
                    match s {
                        Stmt::Where(e, _)
                        | Stmt::When(e, _)
                        | Stmt::Unless(e, _)
                        | Stmt::Emit(e, _) => self.expr(a, e),
                        Stmt::Count { by, .. } => by.iter().for_each(|e| self.expr(a, e)),
                        Stmt::Aggregate { args, by, .. } => {
                            args.iter().chain(by).for_each(|e| self.expr(a, e))
                        }
                        Stmt::Assign { keys, value, .. } => {
                            keys.iter().chain([value]).for_each(|e| self.expr(a, e))
                        }
                        Stmt::Delete { keys, .. } => keys.iter().for_each(|e| self.expr(a, e)),
                        Stmt::Command { .. } => {}
                        Stmt::Action(es, _) => es.iter().for_each(|e| self.expr(a, e)),
                        Stmt::Error(_) => {}
                    }
                }
            }
            Item::Test(t) => {
                if t.header_parsed {
                    self.decl_name(&t.name_span);
                }
                if let Some(&f) = self.filters.get(&t.target.name) {
                    self.at(t.target.span.clone(), Target::Def(f), false);
                }
                for case in &t.cases {
                    if let TestCase::Packet { counts, .. } = case {
                        self.counts(counts, false);
                    }
                }
            }
        }
    }

    /// The name of a declaration of this file is an occurrence of itself.
    fn decl_name(&mut self, span: &Span) {
        if let Some(&i) = self.by_site.get(&(FileId::Main, span.start)) {
            self.at(span.clone(), Target::Def(i), true);
        }
    }

    fn ty(&mut self, t: &ast::TypeExpr) {
        if let Some(name) = docs::TYPES.iter().find(|(n, _)| *n == t.name.name) {
            self.at(t.name.span.clone(), Target::Type(name.0), false);
        }
    }

    fn hook(&mut self, a: &Analysis, h: &ast::Hook) {
        if let Some((name, _)) = docs::HOOKS.iter().find(|(n, _)| *n == h.kind.name) {
            self.at(h.kind.span.clone(), Target::Hook(name), false);
        }
        for arg in h.args.iter().flatten() {
            match &arg.kind {
                ExprKind::Path(p) if p.segments.len() == 1 => {
                    if let Some((name, _)) = docs::HOOKS.iter().find(|(n, _)| *n == p.dotted()) {
                        self.at(p.span.clone(), Target::Hook(name), false);
                    }
                }
                _ => self.expr(a, arg),
            }
        }
    }

    /// `declares`: a count in a filter may declare its counter (the first one does);
    /// a count in a test only refers to one.
    fn counts(&mut self, counts: &[CountClause], declares: bool) {
        for c in counts {
            let name = &c.map.name;
            match self.counters.get(name) {
                Some(&i) => self.at(c.map.span.clone(), Target::Def(i), false),
                None if declares => {
                    let i = self.def(Def {
                        name: name.clone(),
                        kind: DefKind::Counter,
                        file: FileId::Main,
                        span: c.map.span.clone(),
                        full: c.span.clone(),
                        detail: match &c.key {
                            Some(k) => match &k.kind {
                                ExprKind::Path(p) => format!("count {name}[{}]", p.dotted()),
                                _ => format!("count {name}[..]"),
                            },
                            None => format!("count {name}"),
                        },
                        doc: None,
                    });
                    self.counters.insert(name.clone(), i);
                    self.at(c.map.span.clone(), Target::Def(i), true);
                }
                None => {}
            }
            if let Some(k) = &c.key {
                self.key(k);
            }
        }
    }

    /// A count key or a test's expected key: a field, or a literal.
    fn key(&mut self, k: &Expr) {
        if let ExprKind::Path(p) = &k.kind {
            if let Some(f) = fields::lookup(&p.dotted()) {
                self.at(p.span.clone(), Target::Field(f), false);
            }
        }
    }

    fn path(&mut self, a: &Analysis, p: &ast::Path) {
        let name = p.dotted();
        if let Some(d) = a.names.get(&name) {
            if let Some(&i) = self.by_site.get(&(d.file, d.span.start)) {
                return self.at(p.span.clone(), Target::Def(i), false);
            }
        }
        // A declaration the checker rejected is still where the name leads.
        if let Some(&i) = self.local.get(&name) {
            return self.at(p.span.clone(), Target::Def(i), false);
        }
        if let Some(f) = fields::lookup(&name) {
            self.at(p.span.clone(), Target::Field(f), false);
        }
    }

    fn expr(&mut self, a: &Analysis, e: &Expr) {
        match &e.kind {
            ExprKind::Path(p) => self.path(a, p),
            ExprKind::Range(x, y) | ExprKind::Binary(_, x, y) => {
                self.expr(a, x);
                self.expr(a, y);
            }
            ExprKind::Not(x) => self.expr(a, x),
            ExprKind::SetLit(es) | ExprKind::List(es) => es.iter().for_each(|x| self.expr(a, x)),
            ExprKind::Call(_, args) | ExprKind::Index(_, args) => {
                args.iter().for_each(|x| self.expr(a, x))
            }
            ExprKind::Record(fs) => fs
                .iter()
                .filter_map(|(_, v)| v.as_ref())
                .for_each(|x| self.expr(a, x)),
            ExprKind::Int(_)
            | ExprKind::Duration(_)
            | ExprKind::Str(_)
            | ExprKind::Bool(_)
            | ExprKind::Ip4(_)
            | ExprKind::Ip6(_)
            | ExprKind::Cidr4(..)
            | ExprKind::Cidr6(..)
            | ExprKind::Mac(_)
            | ExprKind::Error => {}
        }
    }
}

/// Collapses runs of white space to one space (a declaration shown on one line).
pub(super) fn squeeze(s: &str) -> String {
    let one = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if one.chars().count() > 120 {
        one.chars().take(117).collect::<String>() + "..."
    } else {
        one
    }
}
