//! Edits the analysis proposes: renaming a declaration, and quick fixes taken from the
//! checker's help lines ("did you mean `tcp.dport`?", "add `import std.net` ...").

use super::{Analysis, DefKind, Target};
use crate::syntax::ast::{FileId, Span};
use crate::syntax::lexer::{self, Tok};

/// Replace `span` of the file with `new_text`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextEdit {
    pub span: Span,
    pub new_text: String,
}

/// A quick fix for one diagnostic (`Analysis::diagnostics[diagnostic]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fix {
    pub diagnostic: usize,
    pub title: String,
    pub edits: Vec<TextEdit>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RenameError {
    /// Nothing renameable under the cursor.
    NothingHere,
    /// Declared in a standard-library module, which is read-only.
    ReadOnly(&'static str),
    /// Not a valid name, or a keyword.
    BadName(String),
    /// Another declaration already has the name.
    Taken(String),
}

impl std::fmt::Display for RenameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RenameError::NothingHere => write!(f, "no set, constant, counter or filter here"),
            RenameError::ReadOnly(m) => write!(f, "declared in `{m}`, which is read-only"),
            RenameError::BadName(n) => write!(f, "`{n}` is not a valid name"),
            RenameError::Taken(n) => write!(f, "`{n}` is already declared"),
        }
    }
}

impl std::error::Error for RenameError {}

impl Analysis {
    /// The span of the name at `offset`, if it can be renamed.
    pub fn prepare_rename(&self, offset: usize) -> Result<Span, RenameError> {
        let o = self.occurrence_at(offset).ok_or(RenameError::NothingHere)?;
        let Target::Def(i) = o.target else {
            return Err(RenameError::NothingHere);
        };
        let d = self.defs.get(i).ok_or(RenameError::NothingHere)?;
        if let FileId::Std(m) = d.file {
            return Err(RenameError::ReadOnly(m));
        }
        if !matches!(
            d.kind,
            DefKind::Set | DefKind::Const | DefKind::Counter | DefKind::Filter
        ) {
            return Err(RenameError::NothingHere);
        }
        Ok(o.span.clone())
    }

    /// The edits renaming what is under `offset` (a set, constant, counter or filter of
    /// this file) to `new_name`, at its declaration and every use.
    pub fn rename(&self, offset: usize, new_name: &str) -> Result<Vec<TextEdit>, RenameError> {
        self.prepare_rename(offset)?;
        let toks = lexer::lex(new_name).0;
        if !matches!(toks.as_slice(), [(0, Tok::Ident(n), _)] if n == new_name) {
            return Err(RenameError::BadName(new_name.to_string()));
        }
        let target = self.occurrence_at(offset).map(|o| o.target);
        let kind = match target {
            Some(Target::Def(i)) => self.defs.get(i).map(|d| d.kind),
            _ => None,
        };
        // Sets, constants and counters share one name space; filters have their own.
        let values = |k: Option<DefKind>| {
            matches!(k, Some(DefKind::Set | DefKind::Const | DefKind::Counter))
        };
        let taken = self.defs.iter().any(|d| {
            d.file == FileId::Main
                && d.name == new_name
                && (Some(d.kind) == kind || (values(Some(d.kind)) && values(kind)))
        }) || (values(kind) && self.names.contains_key(new_name));
        if taken {
            return Err(RenameError::Taken(new_name.to_string()));
        }
        Ok(self
            .references(offset, true)
            .into_iter()
            .map(|span| TextEdit {
                span,
                new_text: new_name.to_string(),
            })
            .collect())
    }

    /// Quick fixes for the diagnostics whose help names a replacement or an import.
    pub fn fixes(&self) -> Vec<Fix> {
        let mut out = Vec::new();
        for (i, d) in self.diagnostics.iter().enumerate() {
            let Some(help) = &d.help else { continue };
            if let Some(name) = quoted_after(help, "did you mean the field `")
                .or_else(|| quoted_after(help, "did you mean `"))
            {
                out.push(Fix {
                    diagnostic: i,
                    title: format!("Replace with `{name}`"),
                    edits: vec![TextEdit {
                        span: d.primary_span(),
                        new_text: name.to_string(),
                    }],
                });
            } else if let Some(module) = quoted_after(help, "add `import ") {
                out.push(Fix {
                    diagnostic: i,
                    title: format!("Add `import {module}`"),
                    edits: vec![TextEdit {
                        span: self.import_point()..self.import_point(),
                        new_text: format!("import {module}\n"),
                    }],
                });
            }
        }
        out
    }

    /// Where a new import goes: after the last import, else before the first item.
    fn import_point(&self) -> usize {
        use crate::syntax::ast::Item;
        let last_import = self.ast.items.iter().rev().find_map(|i| match i {
            Item::Import(imp) => Some(imp.span.end),
            _ => None,
        });
        match last_import {
            Some(end) => self
                .source
                .get(end..)
                .and_then(|r| r.find('\n'))
                .map_or(self.source.len(), |n| end + n + 1),
            None => self.tokens.first().map_or(0, |t| {
                self.source
                    .get(..t.0)
                    .and_then(|s| s.rfind('\n'))
                    .map_or(0, |n| n + 1)
            }),
        }
    }
}

/// The text between `prefix` and the next backquote in `help`.
fn quoted_after<'a>(help: &'a str, prefix: &str) -> Option<&'a str> {
    let rest = &help[help.find(prefix)? + prefix.len()..];
    rest.split('`').next().filter(|s| !s.is_empty())
}
