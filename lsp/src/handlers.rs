//! Request handlers: from protocol to an analysis query and back, one function each.

use crate::convert::{self, LineIndex};
use crate::server::Server;
use lsp_server::{ErrorCode, Request, Response, ResponseError};
use lsp_types as lsp;
use lsp_types::request::{self as req, Request as _};
use pol_compiler::analysis::{self, Analysis, Symbol};
use pol_compiler::hir::stdlib;
use pol_compiler::syntax::ast::FileId;
use std::sync::Arc;

type Result<T> = std::result::Result<T, ResponseError>;

/// Test hook: the request `pol/debugPanic` panics when this variable is set to 1.
pub const PANIC_ENV: &str = "POL_LSP_TEST_PANIC";

pub fn dispatch(s: &mut Server, r: Request) -> Response {
    match r.method.as_str() {
        req::HoverRequest::METHOD => on::<req::HoverRequest>(s, r, hover),
        req::Completion::METHOD => on::<req::Completion>(s, r, completion),
        req::GotoDefinition::METHOD => on::<req::GotoDefinition>(s, r, definition),
        req::References::METHOD => on::<req::References>(s, r, references),
        req::DocumentSymbolRequest::METHOD => on::<req::DocumentSymbolRequest>(s, r, symbols),
        req::PrepareRenameRequest::METHOD => on::<req::PrepareRenameRequest>(s, r, prepare_rename),
        req::Rename::METHOD => on::<req::Rename>(s, r, rename),
        req::Formatting::METHOD => on::<req::Formatting>(s, r, formatting),
        req::CodeActionRequest::METHOD => on::<req::CodeActionRequest>(s, r, code_actions),
        req::SemanticTokensFullRequest::METHOD => {
            on::<req::SemanticTokensFullRequest>(s, r, semantic_tokens)
        }
        "pol/debugPanic" if std::env::var(PANIC_ENV).is_ok_and(|v| v == "1") => {
            panic!("pol/debugPanic asked for a panic")
        }
        _ => Response::new_err(
            r.id,
            ErrorCode::MethodNotFound as i32,
            format!("unknown request {}", r.method),
        ),
    }
}

fn on<R: req::Request>(
    s: &mut Server,
    r: Request,
    f: fn(&mut Server, R::Params) -> Result<R::Result>,
) -> Response {
    let params = match serde_json::from_value::<R::Params>(r.params) {
        Ok(p) => p,
        Err(e) => return Response::new_err(r.id, ErrorCode::InvalidParams as i32, e.to_string()),
    };
    match f(s, params) {
        Ok(result) => Response::new_ok(r.id, result),
        Err(error) => Response {
            id: r.id,
            result: None,
            error: Some(error),
        },
    }
}

fn failed(message: impl Into<String>) -> ResponseError {
    ResponseError {
        code: ErrorCode::RequestFailed as i32,
        message: message.into(),
        data: None,
    }
}

type At = (Arc<Analysis>, Arc<LineIndex>, usize);

/// The analysis of the document and the byte offset of the position.
fn at(s: &mut Server, p: &lsp::TextDocumentPositionParams) -> Option<At> {
    let (a, idx) = s.analysis(&p.text_document.uri)?;
    let offset = idx.offset(&a.source, p.position);
    Some((a, idx, offset))
}

fn hover(s: &mut Server, p: lsp::HoverParams) -> Result<Option<lsp::Hover>> {
    let Some((a, idx, offset)) = at(s, &p.text_document_position_params) else {
        return Ok(None);
    };
    Ok(a.hover(offset).map(|h| lsp::Hover {
        contents: lsp::HoverContents::Markup(lsp::MarkupContent {
            kind: lsp::MarkupKind::Markdown,
            value: h.markdown,
        }),
        range: Some(idx.range(&a.source, &h.span)),
    }))
}

fn completion(s: &mut Server, p: lsp::CompletionParams) -> Result<Option<lsp::CompletionResponse>> {
    let Some((a, _, offset)) = at(s, &p.text_document_position) else {
        return Ok(None);
    };
    let items = a
        .completions(offset)
        .into_iter()
        .map(|c| lsp::CompletionItem {
            label: c.label,
            kind: Some(convert::completion_kind(c.kind)),
            detail: c.detail,
            documentation: c.doc.map(|d| {
                lsp::Documentation::MarkupContent(lsp::MarkupContent {
                    kind: lsp::MarkupKind::Markdown,
                    value: d,
                })
            }),
            ..Default::default()
        })
        .collect();
    Ok(Some(lsp::CompletionResponse::Array(items)))
}

fn definition(
    s: &mut Server,
    p: lsp::GotoDefinitionParams,
) -> Result<Option<lsp::GotoDefinitionResponse>> {
    let uri = p.text_document_position_params.text_document.uri.clone();
    let Some((a, idx, offset)) = at(s, &p.text_document_position_params) else {
        return Ok(None);
    };
    let Some((file, span)) = a.definition(offset) else {
        return Ok(None);
    };
    let loc = match file {
        FileId::Main => lsp::Location::new(uri, idx.range(&a.source, &span)),
        FileId::Std(m) => {
            let Some(uri) = s.std.uri(m) else {
                return Ok(None);
            };
            let text = stdlib::module(m).unwrap_or("");
            lsp::Location::new(uri.clone(), LineIndex::new(text).range(text, &span))
        }
    };
    Ok(Some(lsp::GotoDefinitionResponse::Scalar(loc)))
}

fn references(s: &mut Server, p: lsp::ReferenceParams) -> Result<Option<Vec<lsp::Location>>> {
    let uri = p.text_document_position.text_document.uri.clone();
    let Some((a, idx, offset)) = at(s, &p.text_document_position) else {
        return Ok(None);
    };
    let spans = a.references(offset, p.context.include_declaration);
    Ok(Some(
        spans
            .iter()
            .map(|sp| lsp::Location::new(uri.clone(), idx.range(&a.source, sp)))
            .collect(),
    ))
}

fn symbols(
    s: &mut Server,
    p: lsp::DocumentSymbolParams,
) -> Result<Option<lsp::DocumentSymbolResponse>> {
    let Some((a, idx)) = s.analysis(&p.text_document.uri) else {
        return Ok(None);
    };
    fn conv(a: &Analysis, idx: &LineIndex, sym: Symbol) -> lsp::DocumentSymbol {
        #[allow(deprecated)]
        lsp::DocumentSymbol {
            name: sym.name,
            detail: sym.detail,
            kind: convert::symbol_kind(sym.kind),
            tags: None,
            deprecated: None,
            range: idx.range(&a.source, &sym.span),
            selection_range: idx.range(&a.source, &sym.name_span),
            children: Some(sym.children.into_iter().map(|c| conv(a, idx, c)).collect()),
        }
    }
    let syms = a
        .document_symbols()
        .into_iter()
        .map(|sym| conv(&a, &idx, sym))
        .collect();
    Ok(Some(lsp::DocumentSymbolResponse::Nested(syms)))
}

fn prepare_rename(
    s: &mut Server,
    p: lsp::TextDocumentPositionParams,
) -> Result<Option<lsp::PrepareRenameResponse>> {
    let Some((a, idx, offset)) = at(s, &p) else {
        return Ok(None);
    };
    match a.prepare_rename(offset) {
        Ok(span) => Ok(Some(lsp::PrepareRenameResponse::Range(
            idx.range(&a.source, &span),
        ))),
        Err(e) => Err(failed(e.to_string())),
    }
}

fn rename(s: &mut Server, p: lsp::RenameParams) -> Result<Option<lsp::WorkspaceEdit>> {
    let uri = p.text_document_position.text_document.uri.clone();
    let Some((a, idx, offset)) = at(s, &p.text_document_position) else {
        return Ok(None);
    };
    let edits = a
        .rename(offset, &p.new_name)
        .map_err(|e| failed(e.to_string()))?;
    Ok(Some(workspace_edit(uri, &a, &idx, edits)))
}

fn workspace_edit(
    uri: lsp::Url,
    a: &Analysis,
    idx: &LineIndex,
    edits: Vec<analysis::TextEdit>,
) -> lsp::WorkspaceEdit {
    let edits = edits
        .into_iter()
        .map(|e| lsp::TextEdit::new(idx.range(&a.source, &e.span), e.new_text))
        .collect();
    lsp::WorkspaceEdit::new([(uri, edits)].into_iter().collect())
}

fn formatting(
    s: &mut Server,
    p: lsp::DocumentFormattingParams,
) -> Result<Option<Vec<lsp::TextEdit>>> {
    let Some(doc) = s.docs.get(&p.text_document.uri) else {
        return Ok(None);
    };
    match pol_compiler::fmt::format(&doc.text) {
        Ok(out) if out == doc.text => Ok(Some(Vec::new())),
        Ok(out) => {
            let idx = LineIndex::new(&doc.text);
            let all = idx.range(&doc.text, &(0..doc.text.len()));
            Ok(Some(vec![lsp::TextEdit::new(all, out)]))
        }
        // Nothing to format until the file parses; the diagnostics already say why.
        Err(e) => {
            eprintln!("pol lsp: not formatting {}: {e}", p.text_document.uri);
            Ok(None)
        }
    }
}

fn code_actions(
    s: &mut Server,
    p: lsp::CodeActionParams,
) -> Result<Option<lsp::CodeActionResponse>> {
    let uri = p.text_document.uri.clone();
    let Some((a, idx)) = s.analysis(&uri) else {
        return Ok(None);
    };
    let want = idx.span(&a.source, p.range);
    let mut out = Vec::new();
    for fix in a.fixes() {
        let Some(d) = a.diagnostics.get(fix.diagnostic) else {
            continue;
        };
        let span = d.primary_span();
        if span.end < want.start || span.start > want.end {
            continue;
        }
        out.push(lsp::CodeActionOrCommand::CodeAction(lsp::CodeAction {
            title: fix.title,
            kind: Some(lsp::CodeActionKind::QUICKFIX),
            diagnostics: Some(vec![convert::diagnostic(d, &uri, &a.source, &idx)]),
            edit: Some(workspace_edit(uri.clone(), &a, &idx, fix.edits)),
            is_preferred: Some(true),
            ..Default::default()
        }));
    }
    Ok(Some(out))
}

fn semantic_tokens(
    s: &mut Server,
    p: lsp::SemanticTokensParams,
) -> Result<Option<lsp::SemanticTokensResult>> {
    let Some((a, idx)) = s.analysis(&p.text_document.uri) else {
        return Ok(None);
    };
    let mut data = Vec::new();
    let (mut line, mut col) = (0u32, 0u32);
    for t in a.semantic_tokens() {
        let start = idx.position(&a.source, t.span.start);
        let end = idx.position(&a.source, t.span.end);
        if end.line != start.line {
            continue; // tokens never span lines in pol; be safe anyway
        }
        let delta_line = start.line.saturating_sub(line);
        let delta_start = if delta_line == 0 {
            start.character.saturating_sub(col)
        } else {
            start.character
        };
        let modifiers = u32::from(t.declaration) | (u32::from(t.readonly) << 1);
        data.push(lsp::SemanticToken {
            delta_line,
            delta_start,
            length: end.character.saturating_sub(start.character),
            token_type: convert::token_type(t.kind),
            token_modifiers_bitset: modifiers,
        });
        (line, col) = (start.line, start.character);
    }
    Ok(Some(lsp::SemanticTokensResult::Tokens(
        lsp::SemanticTokens {
            result_id: None,
            data,
        },
    )))
}
