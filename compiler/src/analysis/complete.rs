//! Completion: what may be written at an offset, from the tokens before it.
//!
//! The context is read from the text, not the tree, because the tree of half-typed code
//! is an error node: the dotted name being typed (`tcp.d`), the token before it (`import`,
//! `on`, `:`, `count`, `=>`) and whether the cursor is inside a block.

use super::docs::{HOOKS, KEYWORDS, TYPES};
use super::{Analysis, DefKind};
use crate::catalog::{Catalog, HostCatalog};
use crate::hir::check::NameKind;
use crate::hir::fields;
use crate::hir::stdlib;
use crate::syntax::ast::FileId;
use crate::syntax::lexer::Tok;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompletionItem {
    pub label: String,
    pub kind: CompletionKind,
    pub detail: Option<String>,
    pub doc: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompletionKind {
    Keyword,
    Field,
    Set,
    Const,
    Counter,
    Filter,
    Module,
    Hook,
    Type,
}

const TOP_KEYWORDS: &[&str] = &["import", "const", "set", "filter", "probe", "rule", "test"];
const RULE_KEYWORDS: &[&str] = &[
    "pass",
    "drop",
    "default",
    "malformed",
    "count",
    "and",
    "or",
    "not",
    "in",
    "true",
    "false",
];

impl Analysis {
    /// What may be written at `offset`, with probe names and arguments from this host's
    /// kernel ([`HostCatalog`]).
    pub fn completions(&self, offset: usize) -> Vec<CompletionItem> {
        self.completions_in(offset, &HostCatalog)
    }

    /// [`Analysis::completions`] with probe names and arguments from `catalog`.
    pub fn completions_in(&self, offset: usize, catalog: &dyn Catalog) -> Vec<CompletionItem> {
        let offset = floor_boundary(&self.source, offset);
        let before = self.source.get(..offset).unwrap_or("");
        let typed_len = before
            .bytes()
            .rev()
            .take_while(|b| b.is_ascii_alphanumeric() || *b == b'_' || *b == b'.')
            .count();
        let start = offset - typed_len;
        let typed = before.get(start..).unwrap_or("");
        if self
            .comments
            .iter()
            .any(|c| c.start < offset && offset <= c.end)
        {
            return Vec::new();
        }
        if let Some(items) = self.probe_completions(start, typed, catalog) {
            return items;
        }
        // The dotted name so far: complete its next segment.
        if let Some((qualifier, _)) = typed.rsplit_once('.') {
            return self.qualified(qualifier);
        }
        let prev = self
            .tokens
            .iter()
            .rposition(|(_, _, r)| *r <= start)
            .map(|i| (i, &self.tokens[i].1));
        match prev {
            Some((_, Tok::Import)) => modules(),
            Some((i, Tok::On)) => {
                let is_test = i
                    .checked_sub(2)
                    .and_then(|j| self.tokens.get(j))
                    .is_some_and(|t| t.1 == Tok::Test);
                if is_test {
                    self.defs_of(DefKind::Filter, CompletionKind::Filter)
                } else {
                    HOOKS
                        .iter()
                        .take(2)
                        .map(|(h, d)| item(h, CompletionKind::Hook, None, Some(d)))
                        .collect()
                }
            }
            Some((_, Tok::Colon)) if self.in_declaration_type(start) => TYPES
                .iter()
                .map(|(t, d)| item(t, CompletionKind::Type, None, Some(d)))
                .collect(),
            Some((_, Tok::Count)) => self.defs_of(DefKind::Counter, CompletionKind::Counter),
            Some((_, Tok::FatArrow)) => ["pass", "drop"].iter().map(|k| keyword(k)).collect(),
            _ if self.depth_at(start) == 0 => TOP_KEYWORDS.iter().map(|k| keyword(k)).collect(),
            _ => {
                let mut out: Vec<CompletionItem> =
                    RULE_KEYWORDS.iter().map(|k| keyword(k)).collect();
                out.extend(self.defs_of(DefKind::Set, CompletionKind::Set));
                out.extend(self.defs_of(DefKind::Const, CompletionKind::Const));
                // Fields without a dot (`tcp`, `ip4`) and the heads of dotted ones.
                let mut heads: Vec<&str> = Vec::new();
                for f in fields::all() {
                    match f.name.split_once('.') {
                        None => out.push(field_item(f.name, f)),
                        Some((head, _)) if !heads.contains(&head) => heads.push(head),
                        Some(_) => {}
                    }
                }
                for h in heads {
                    if !out.iter().any(|i| i.label == h) {
                        out.push(item(h, CompletionKind::Field, Some("packet fields"), None));
                    }
                }
                // Imported modules, by their short and long names.
                for m in stdlib::MODULES {
                    if self.names.values().any(|d| d.file == FileId::Std(m)) {
                        let short = m.rsplit('.').next().unwrap_or(m);
                        out.push(item(short, CompletionKind::Module, Some(m), None));
                        if !out.iter().any(|i| i.label == "std") {
                            out.push(item("std", CompletionKind::Module, None, None));
                        }
                    }
                }
                out
            }
        }
    }

    /// Completions after `qualifier.`: fields, imported names, modules.
    fn qualified(&self, qualifier: &str) -> Vec<CompletionItem> {
        let dotted = format!("{qualifier}.");
        let mut out: Vec<CompletionItem> = Vec::new();
        let push = |it: CompletionItem, out: &mut Vec<CompletionItem>| {
            if !out.iter().any(|o| o.label == it.label) {
                out.push(it);
            }
        };
        for f in fields::all() {
            if let Some(rest) = f.name.strip_prefix(&dotted) {
                let seg = rest.split('.').next().unwrap_or(rest);
                push(field_item(seg, f), &mut out);
            }
        }
        for (name, def) in &self.names {
            if let Some(rest) = name.strip_prefix(&dotted) {
                if rest.contains('.') {
                    continue;
                }
                let kind = match def.kind {
                    NameKind::Set(_) => CompletionKind::Set,
                    _ => CompletionKind::Const,
                };
                let d = self
                    .defs
                    .iter()
                    .find(|d| d.file == def.file && d.span == def.span);
                push(
                    item(
                        rest,
                        kind,
                        d.map(|d| d.detail.as_str()),
                        d.and_then(|d| d.doc.as_deref()),
                    ),
                    &mut out,
                );
            }
        }
        for m in stdlib::MODULES {
            if let Some(rest) = m.strip_prefix(&dotted) {
                push(item(rest, CompletionKind::Module, Some(m), None), &mut out);
            }
        }
        out
    }

    fn defs_of(&self, kind: DefKind, as_kind: CompletionKind) -> Vec<CompletionItem> {
        let mut out: Vec<CompletionItem> = Vec::new();
        for d in self
            .defs
            .iter()
            .filter(|d| d.kind == kind && d.file == FileId::Main)
        {
            if !out.iter().any(|o| o.label == d.name) {
                out.push(item(&d.name, as_kind, Some(&d.detail), d.doc.as_deref()));
            }
        }
        out
    }

    /// True when the `:` before `start` is that of `set NAME:` or `const NAME:`.
    fn in_declaration_type(&self, start: usize) -> bool {
        let i = self.tokens.iter().rposition(|(_, _, r)| *r <= start);
        i.and_then(|i| i.checked_sub(2))
            .and_then(|j| self.tokens.get(j))
            .is_some_and(|t| matches!(t.1, Tok::Set | Tok::Const))
    }

    /// How many `{` are open before `offset`.
    fn depth_at(&self, offset: usize) -> usize {
        let mut depth = 0usize;
        for (l, t, _) in &self.tokens {
            if *l >= offset {
                break;
            }
            match t {
                Tok::LBrace => depth += 1,
                Tok::RBrace => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
        depth
    }
}

pub(super) fn item(
    label: &str,
    kind: CompletionKind,
    detail: Option<&str>,
    doc: Option<&str>,
) -> CompletionItem {
    CompletionItem {
        label: label.to_string(),
        kind,
        detail: detail.map(str::to_string),
        doc: doc.map(str::to_string),
    }
}

fn keyword(k: &str) -> CompletionItem {
    let doc = KEYWORDS.iter().find(|(w, _)| *w == k).map(|(_, d)| *d);
    item(k, CompletionKind::Keyword, None, doc)
}

fn field_item(label: &str, f: &crate::hir::fields::Field) -> CompletionItem {
    item(
        label,
        CompletionKind::Field,
        Some(&format!("{}: {}", f.name, f.ty)),
        Some(f.doc),
    )
}

fn modules() -> Vec<CompletionItem> {
    stdlib::MODULES
        .iter()
        .map(|m| item(m, CompletionKind::Module, None, None))
        .collect()
}

/// The char boundary at or before `i` (an editor may send any offset).
pub(super) fn floor_boundary(s: &str, mut i: usize) -> usize {
    i = i.min(s.len());
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}
