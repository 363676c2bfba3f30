//! The analysis API editors use: one pure call per file text, then queries by offset.
//!
//! `analyze` runs the front end without stopping at errors (`driver::front_full`) and
//! resolves every name of the file: each use site becomes an `Occurrence` pointing at a
//! `Target` (a declaration, possibly in a standard-library module, or a packet field, hook
//! or type). Hover, completion, definition, references, rename, document symbols,
//! semantic tokens and quick fixes are all answered from that one table. Offsets are
//! bytes into the file's text; converting to editor positions is the server's job.
//!
//! Nothing here does IO: `file(..)` sets go through the caller's reader, stdlib modules
//! are compiled in.

mod complete;
mod docs;
mod edit;
mod probes;
mod resolve;
mod symbols;
#[cfg(test)]
mod tests;

pub use complete::{CompletionItem, CompletionKind};
pub use docs::{HOOKS, KEYWORDS, PROBE_HOOKS, PROBE_WORDS, TYPES};
pub use edit::{Fix, RenameError, TextEdit};
pub use symbols::{SemanticKind, SemanticToken, Symbol, SymbolKind};

use crate::diag::Diagnostic;
use crate::driver;
use crate::hir::check::{no_files, FileReader, Names};
use crate::hir::fields::Field;
use crate::hir::{stdlib, Hir};
use crate::syntax::ast::{self, FileId, Span};
use crate::syntax::lexer::{self, Spanned};
use crate::syntax::trivia;

/// Everything known about one file.
#[derive(Debug, Clone)]
pub struct Analysis {
    pub source: String,
    pub ast: ast::File,
    /// The HIR of everything that checked, even when other parts have errors.
    pub hir: Hir,
    /// Syntax and check diagnostics, sorted by position.
    pub diagnostics: Vec<Diagnostic>,
    /// The checker's name table.
    pub names: Names,
    /// Every declaration a name of this file can lead to.
    pub defs: Vec<Def>,
    /// Every resolved name in this file, in source order (declarations included).
    pub occurrences: Vec<Occurrence>,
    /// The tokens and comments of the file, for keywords and semantic tokens.
    pub tokens: Vec<Spanned>,
    pub comments: Vec<Span>,
}

/// A declaration: in this file or in a standard-library module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Def {
    pub name: String,
    pub kind: DefKind,
    pub file: FileId,
    /// The span of its name in `file` (`0..0` for a whole module).
    pub span: Span,
    /// The whole declaration in `file`.
    pub full: Span,
    /// One line saying what it is: `set blocked: cidr`, `filter edge on xdp("eth0")`.
    pub detail: String,
    /// The comment lines right above the declaration, without `#`.
    pub doc: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DefKind {
    Set,
    Const,
    Counter,
    Filter,
    Test,
    Probe,
    Rule,
    Module,
}

/// What a name stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Index into `Analysis::defs`.
    Def(usize),
    Field(&'static Field),
    /// A hook (`xdp`, `tc`) or a hook argument (`ingress`).
    Hook(&'static str),
    /// A type name (`cidr`, `port`).
    Type(&'static str),
}

/// A name in the file and what it resolves to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Occurrence {
    pub span: Span,
    pub target: Target,
    /// True at the declaration itself.
    pub is_def: bool,
}

/// Hover text (markdown) and the span it describes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hover {
    pub span: Span,
    pub markdown: String,
}

/// Analyzes a file; `file(..)` sets are reported as unreadable.
pub fn analyze(source: &str) -> Analysis {
    analyze_with(source, &no_files)
}

/// `analyze`, with a reader for the files `file(..)` sets name.
pub fn analyze_with(source: &str, files: FileReader<'_>) -> Analysis {
    let front = driver::front_full(source, files);
    let (tokens, _) = lexer::lex(source);
    let comments = trivia::comments(source);
    let mut a = Analysis {
        source: source.to_string(),
        ast: front.ast,
        hir: front.hir,
        diagnostics: front.diagnostics,
        names: front.names,
        defs: Vec::new(),
        occurrences: Vec::new(),
        tokens,
        comments,
    };
    resolve::resolve(&mut a);
    a
}

/// The text of a file: this one, or a standard-library module.
pub fn file_text(a: &Analysis, file: FileId) -> &str {
    match file {
        FileId::Main => &a.source,
        FileId::Std(m) => stdlib::module(m).unwrap_or(""),
    }
}

impl Analysis {
    /// The occurrence under `offset` (a cursor right after a name still touches it).
    pub fn occurrence_at(&self, offset: usize) -> Option<&Occurrence> {
        let i = self.occurrences.partition_point(|o| o.span.end < offset);
        let mut best: Option<&Occurrence> = None;
        for o in self.occurrences.get(i..).unwrap_or(&[]) {
            if o.span.start > offset {
                break;
            }
            if o.span.start <= offset && offset <= o.span.end {
                // Prefer the innermost (shortest) span, then the one starting at the cursor.
                if best.is_none_or(|b| o.span.len() < b.span.len() || b.span.end == offset) {
                    best = Some(o);
                }
            }
        }
        best
    }

    /// The definition of what is under `offset`: its file and the span of its name.
    pub fn definition(&self, offset: usize) -> Option<(FileId, Span)> {
        match self.occurrence_at(offset)?.target {
            Target::Def(i) => self.defs.get(i).map(|d| (d.file, d.span.clone())),
            _ => None,
        }
    }

    /// Every occurrence in this file of what is under `offset`.
    pub fn references(&self, offset: usize, include_declaration: bool) -> Vec<Span> {
        let Some(target) = self.occurrence_at(offset).map(|o| o.target) else {
            return Vec::new();
        };
        self.occurrences
            .iter()
            .filter(|o| o.target == target && (include_declaration || !o.is_def))
            .map(|o| o.span.clone())
            .collect()
    }

    /// Hover text for what is under `offset`: a name, or a keyword.
    pub fn hover(&self, offset: usize) -> Option<Hover> {
        if let Some(o) = self.occurrence_at(offset) {
            return Some(Hover {
                span: o.span.clone(),
                markdown: docs::hover_target(self, o.target),
            });
        }
        let (l, tok, r) = self
            .tokens
            .iter()
            .find(|(l, _, r)| *l <= offset && offset < *r)?;
        docs::keyword(tok).map(|text| Hover {
            span: *l..*r,
            markdown: text.to_string(),
        })
    }
}
