//! Completion inside probes: tracing hooks after `on`, tracepoint names inside
//! `tracepoint(..)` (from the probe catalog: the running kernel's, or a fixture in tests),
//! the typed arguments after `args.`, and the words of a probe body.
//!
//! Like the rest of completion, the context comes from the tokens before the cursor, not
//! from the tree: half-typed probes do not parse.

use super::complete::{item, CompletionItem, CompletionKind};
use super::docs::{PROBE_HOOKS, PROBE_WORDS};
use super::Analysis;
use crate::catalog::{ArgTy, Catalog, ProbeEntry, TraceArg};
use crate::probe::hir::Builtin;
use crate::syntax::lexer::Tok;

/// The block a position is in (or in the header of): the keyword starting it.
pub(super) fn enclosing_block(a: &Analysis, offset: usize) -> Option<(usize, Tok)> {
    let mut depth = 0usize;
    let mut block = None;
    for (i, (l, t, _)) in a.tokens.iter().enumerate() {
        if *l >= offset {
            break;
        }
        match t {
            Tok::LBrace => depth += 1,
            Tok::RBrace => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    block = None;
                }
            }
            Tok::Filter | Tok::Probe | Tok::Rule | Tok::Test if depth == 0 => {
                block = Some((i, t.clone()))
            }
            _ => {}
        }
    }
    block
}

/// The hook a probe's header names, from its tokens: (`tracepoint`, `syscalls.sys_enter_read`).
fn probe_hook(a: &Analysis, probe_tok: usize) -> Option<(String, String)> {
    let toks = &a.tokens[probe_tok..];
    let open = toks.iter().position(|t| t.1 == Tok::LParen)?;
    if toks[..open].iter().any(|t| t.1 == Tok::LBrace) {
        return None;
    }
    let Some(Tok::Ident(kind)) = open.checked_sub(1).map(|i| &toks[i].1) else {
        return None;
    };
    let mut target = String::new();
    for t in &toks[open + 1..] {
        match &t.1 {
            Tok::Ident(s) => target.push_str(s),
            Tok::Dot => target.push('.'),
            _ => break,
        }
    }
    Some((kind.clone(), target))
}

impl Analysis {
    /// Completions that only make sense in a probe; `None` when `start` is not in one.
    pub(super) fn probe_completions(
        &self,
        start: usize,
        typed: &str,
        catalog: &dyn Catalog,
    ) -> Option<Vec<CompletionItem>> {
        let (probe_tok, kind) = enclosing_block(self, start)?;
        if kind != Tok::Probe {
            return None;
        }
        let prev = self.tokens.iter().rposition(|(_, _, r)| *r <= start);
        let tok = |i: Option<usize>| i.and_then(|i| self.tokens.get(i)).map(|t| &t.1);
        // `probe NAME on |` or `probe |`: the tracing hooks.
        if matches!(tok(prev), Some(Tok::On | Tok::Probe)) {
            return Some(hooks());
        }
        let in_body = self.tokens[probe_tok..]
            .iter()
            .take_while(|(l, _, _)| *l < start)
            .any(|t| t.1 == Tok::LBrace);
        // `tracepoint(|`, `raw_tracepoint(|`, `tp_btf(|` in the header: names from the
        // catalog.
        if !in_body && matches!(tok(prev), Some(Tok::LParen)) {
            if let Some(Tok::Ident(hook)) = tok(prev.and_then(|i| i.checked_sub(1))) {
                return Some(event_names(hook, typed, catalog));
            }
        }
        // `args.|`: the arguments of this probe's tracepoint.
        if let Some(rest) = typed.strip_prefix("args.") {
            if rest.contains('.') {
                return Some(Vec::new());
            }
            let Some((hook, target)) = probe_hook(self, probe_tok) else {
                return Some(Vec::new());
            };
            return Some(arg_items(&hook, &target, catalog));
        }
        if typed.contains('.') {
            return Some(Vec::new());
        }
        // A probe body: its statements, functions, builtins and `args`.
        if !in_body {
            return Some(Vec::new());
        }
        let mut out: Vec<CompletionItem> = PROBE_WORDS
            .iter()
            .map(|(w, d)| item(w, CompletionKind::Keyword, None, Some(d)))
            .collect();
        for (name, b) in Builtin::ALL {
            out.push(item(
                name,
                CompletionKind::Field,
                Some(&format!("{name}: {}", b.ty())),
                None,
            ));
        }
        out.push(item(
            "args",
            CompletionKind::Field,
            Some("the probe's arguments"),
            Some("`args.NAME`: an argument of the tracepoint, typed from its format or BTF."),
        ));
        Some(out)
    }
}

fn hooks() -> Vec<CompletionItem> {
    PROBE_HOOKS
        .iter()
        .map(|(h, d)| item(h, CompletionKind::Hook, None, Some(d)))
        .collect()
}

/// Inside `HOOK(`: categories, then events of the category typed (`syscalls.sys_`), for
/// tracepoints; names for raw and BTF-typed tracepoints.
fn event_names(hook: &str, typed: &str, catalog: &dyn Catalog) -> Vec<CompletionItem> {
    let mut out: Vec<CompletionItem> = Vec::new();
    match hook {
        "tracepoint" => match typed.split_once('.') {
            None => {
                for e in catalog.list("tracepoint:*") {
                    if let ProbeEntry::Tracepoint { category, .. } = e {
                        if out.last().is_none_or(|i| i.label != category) {
                            out.push(item(
                                &category,
                                CompletionKind::Module,
                                Some("tracepoint category"),
                                None,
                            ));
                        }
                    }
                }
            }
            Some((cat, _)) => {
                for e in catalog.list(&format!("tracepoint:{cat}:*")) {
                    if let ProbeEntry::Tracepoint { category, name } = e {
                        let detail = format!("tracepoint {category}:{name}");
                        out.push(item(&name, CompletionKind::Hook, Some(&detail), None));
                    }
                }
            }
        },
        "raw_tracepoint" | "tp_btf" => {
            for e in catalog.list("raw_tracepoint:*") {
                if let ProbeEntry::RawTracepoint { name } = e {
                    out.push(item(
                        &name,
                        CompletionKind::Hook,
                        Some("raw tracepoint"),
                        None,
                    ));
                }
            }
        }
        _ => {}
    }
    out
}

fn arg_items(hook: &str, target: &str, catalog: &dyn Catalog) -> Vec<CompletionItem> {
    let args = match hook {
        "tracepoint" => match target.split_once('.') {
            Some((cat, name)) => catalog.tracepoint(cat, name),
            None => return Vec::new(),
        },
        "raw_tracepoint" | "tp_btf" => catalog.raw_tracepoint(target),
        _ => return Vec::new(),
    };
    args.unwrap_or_default()
        .iter()
        .filter(|a| !matches!(a.ty, ArgTy::Other))
        .map(arg_item)
        .collect()
}

fn arg_item(a: &TraceArg) -> CompletionItem {
    let what = match a.ty {
        ArgTy::Int { bytes, signed } => {
            format!("{}{}", if signed { "i" } else { "u" }, 8 * u32::from(bytes))
        }
        ArgTy::Ptr { string: true, .. }
        | ArgTy::Array { string: true, .. }
        | ArgTy::DataLoc { string: true } => "string: read it with `str(..)`".into(),
        ArgTy::Ptr { .. } => "pointer".into(),
        _ => "value".into(),
    };
    item(
        &a.name,
        CompletionKind::Field,
        Some(&format!("{} ({what})", a.c_type)),
        None,
    )
}
