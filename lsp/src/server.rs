//! The main loop: documents, their analyses, and the order of work.
//!
//! One thread. Messages are taken in batches: every message already queued is handled
//! before diagnostics are published, so a burst of `didChange` (fast typing) costs one
//! analysis, not one per keystroke. Requests see the text as of their place in the
//! stream; a document is analysed when a request or the publish step needs it. A panic
//! while answering a request is caught, logged on stderr and answered with an error.

use crate::convert::{self, LineIndex};
use crate::handlers;
use crate::stdfiles::StdFiles;
use crate::ServerError;
use lsp_server::{Connection, ErrorCode, Message, Notification, Request, Response};
use lsp_types as lsp;
use lsp_types::notification::Notification as _;
use pol_compiler::analysis::{self, Analysis};
use std::collections::{BTreeSet, HashMap};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

/// At most this many diagnostics are published per file: a file of garbage would
/// otherwise make messages of hundreds of megabytes that no editor can show anyway.
pub const MAX_DIAGNOSTICS: usize = 1000;

pub struct Document {
    pub text: String,
    pub version: i32,
    analysis: Option<(Arc<Analysis>, Arc<LineIndex>)>,
}

pub struct Server {
    pub docs: HashMap<lsp::Url, Document>,
    pub std: StdFiles,
    /// Documents whose diagnostics must be published again.
    dirty: BTreeSet<lsp::Url>,
    sender: crossbeam_channel::Sender<Message>,
}

pub fn capabilities() -> lsp::ServerCapabilities {
    lsp::ServerCapabilities {
        text_document_sync: Some(lsp::TextDocumentSyncCapability::Options(
            lsp::TextDocumentSyncOptions {
                open_close: Some(true),
                change: Some(lsp::TextDocumentSyncKind::INCREMENTAL),
                ..Default::default()
            },
        )),
        hover_provider: Some(lsp::HoverProviderCapability::Simple(true)),
        completion_provider: Some(lsp::CompletionOptions {
            trigger_characters: Some(vec![".".into()]),
            ..Default::default()
        }),
        definition_provider: Some(lsp::OneOf::Left(true)),
        references_provider: Some(lsp::OneOf::Left(true)),
        document_symbol_provider: Some(lsp::OneOf::Left(true)),
        rename_provider: Some(lsp::OneOf::Right(lsp::RenameOptions {
            prepare_provider: Some(true),
            work_done_progress_options: Default::default(),
        })),
        document_formatting_provider: Some(lsp::OneOf::Left(true)),
        code_action_provider: Some(lsp::CodeActionProviderCapability::Options(
            lsp::CodeActionOptions {
                code_action_kinds: Some(vec![lsp::CodeActionKind::QUICKFIX]),
                ..Default::default()
            },
        )),
        semantic_tokens_provider: Some(
            lsp::SemanticTokensServerCapabilities::SemanticTokensOptions(
                lsp::SemanticTokensOptions {
                    legend: lsp::SemanticTokensLegend {
                        token_types: convert::TOKEN_TYPES.to_vec(),
                        token_modifiers: convert::TOKEN_MODIFIERS.to_vec(),
                    },
                    full: Some(lsp::SemanticTokensFullOptions::Bool(true)),
                    range: None,
                    ..Default::default()
                },
            ),
        ),
        ..Default::default()
    }
}

pub fn run(connection: Connection) -> Result<(), ServerError> {
    let (id, _params) = connection.initialize_start()?;
    let result = lsp::InitializeResult {
        capabilities: capabilities(),
        server_info: Some(lsp::ServerInfo {
            name: "pol".into(),
            version: Some(env!("CARGO_PKG_VERSION").into()),
        }),
    };
    connection.initialize_finish(id, serde_json::to_value(result)?)?;
    let mut server = Server {
        docs: HashMap::new(),
        std: StdFiles::materialize(),
        dirty: BTreeSet::new(),
        sender: connection.sender.clone(),
    };
    // The client closing stdin ends the loop too (no orphaned servers).
    while let Ok(first) = connection.receiver.recv() {
        let mut batch = vec![first];
        batch.extend(connection.receiver.try_iter());
        for msg in batch {
            match msg {
                Message::Request(req) => {
                    if connection.handle_shutdown(&req)? {
                        return Ok(());
                    }
                    let resp = server.request(req);
                    connection.sender.send(resp.into()).ok();
                }
                Message::Notification(n) if n.method == "exit" => return Ok(()),
                Message::Notification(n) => server.notification(n),
                Message::Response(_) => {}
            }
        }
        server.publish();
    }
    Ok(())
}

impl Server {
    /// The analysis of a document, computed when its text changed since the last one.
    pub fn analysis(&mut self, uri: &lsp::Url) -> Option<(Arc<Analysis>, Arc<LineIndex>)> {
        let doc = self.docs.get_mut(uri)?;
        if doc.analysis.is_none() {
            let a = analysis::analyze(&doc.text);
            let idx = LineIndex::new(&doc.text);
            doc.analysis = Some((Arc::new(a), Arc::new(idx)));
        }
        doc.analysis.clone()
    }

    fn request(&mut self, req: Request) -> Response {
        let id = req.id.clone();
        let method = req.method.clone();
        match catch_unwind(AssertUnwindSafe(|| handlers::dispatch(self, req))) {
            Ok(resp) => resp,
            Err(panic) => {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                eprintln!("pol lsp: request {method} panicked: {what}");
                Response::new_err(
                    id,
                    ErrorCode::InternalError as i32,
                    format!("internal error in {method}: {what}"),
                )
            }
        }
    }

    fn notification(&mut self, n: Notification) {
        use lsp_types::notification::{
            DidChangeTextDocument, DidCloseTextDocument, DidOpenTextDocument,
        };
        let result = catch_unwind(AssertUnwindSafe(|| match n.method.as_str() {
            DidOpenTextDocument::METHOD => {
                if let Ok(p) = serde_json::from_value::<lsp::DidOpenTextDocumentParams>(n.params) {
                    let d = p.text_document;
                    self.docs.insert(
                        d.uri.clone(),
                        Document {
                            text: d.text,
                            version: d.version,
                            analysis: None,
                        },
                    );
                    self.dirty.insert(d.uri);
                }
            }
            DidChangeTextDocument::METHOD => {
                if let Ok(p) = serde_json::from_value::<lsp::DidChangeTextDocumentParams>(n.params)
                {
                    self.change(p);
                }
            }
            DidCloseTextDocument::METHOD => {
                if let Ok(p) = serde_json::from_value::<lsp::DidCloseTextDocumentParams>(n.params) {
                    self.docs.remove(&p.text_document.uri);
                    self.dirty.remove(&p.text_document.uri);
                    self.send_diagnostics(p.text_document.uri, Vec::new(), None);
                }
            }
            _ => {}
        }));
        if result.is_err() {
            eprintln!("pol lsp: notification {} panicked", n.method);
        }
    }

    fn change(&mut self, p: lsp::DidChangeTextDocumentParams) {
        let uri = p.text_document.uri;
        let Some(doc) = self.docs.get_mut(&uri) else {
            eprintln!("pol lsp: change to a document that is not open: {uri}");
            return;
        };
        for change in p.content_changes {
            match change.range {
                None => doc.text = change.text,
                Some(range) => {
                    // Ranges past the end are clamped: a confused client must not crash us.
                    let idx = LineIndex::new(&doc.text);
                    let span = idx.span(&doc.text, range);
                    doc.text.replace_range(span, &change.text);
                }
            }
        }
        doc.version = p.text_document.version;
        doc.analysis = None;
        self.dirty.insert(uri);
    }

    /// Publishes the diagnostics of every document changed since the last publish.
    fn publish(&mut self) {
        for uri in std::mem::take(&mut self.dirty) {
            let Some((a, idx)) = self.analysis(&uri) else {
                continue;
            };
            let Some(doc) = self.docs.get(&uri) else {
                continue;
            };
            if a.diagnostics.len() > MAX_DIAGNOSTICS {
                eprintln!(
                    "pol lsp: {uri}: publishing the first {MAX_DIAGNOSTICS} of {} diagnostics",
                    a.diagnostics.len()
                );
            }
            let diags = a
                .diagnostics
                .iter()
                .take(MAX_DIAGNOSTICS)
                .map(|d| convert::diagnostic(d, &uri, &doc.text, &idx))
                .collect();
            let version = Some(doc.version);
            self.send_diagnostics(uri, diags, version);
        }
    }

    fn send_diagnostics(
        &self,
        uri: lsp::Url,
        diagnostics: Vec<lsp::Diagnostic>,
        version: Option<i32>,
    ) {
        let params = lsp::PublishDiagnosticsParams {
            uri,
            diagnostics,
            version,
        };
        let n = Notification::new(
            lsp_types::notification::PublishDiagnostics::METHOD.into(),
            params,
        );
        self.sender.send(n.into()).ok();
    }
}
