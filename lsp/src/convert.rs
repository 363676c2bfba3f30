//! Positions and the compiler's data in protocol terms: byte offsets to UTF-16 line and
//! column (what LSP clients count by default), diagnostics, symbol and token kinds.

use lsp_types as lsp;
use pol_compiler::analysis::{CompletionKind, SemanticKind, SymbolKind};
use pol_compiler::diag::{Diagnostic, Severity};
use std::ops::Range;

/// Line starts of a text, to convert between byte offsets and LSP positions.
#[derive(Debug, Clone)]
pub struct LineIndex {
    starts: Vec<usize>,
    len: usize,
}

impl LineIndex {
    pub fn new(text: &str) -> LineIndex {
        let starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        LineIndex {
            starts,
            len: text.len(),
        }
    }

    /// The position of a byte offset (clamped to the text, floored to a character).
    pub fn position(&self, text: &str, offset: usize) -> lsp::Position {
        let mut offset = offset.min(self.len);
        while offset > 0 && !text.is_char_boundary(offset) {
            offset -= 1;
        }
        let line = self.starts.partition_point(|&s| s <= offset) - 1;
        let start = self.starts.get(line).copied().unwrap_or(0);
        let col: usize = text
            .get(start..offset)
            .unwrap_or("")
            .chars()
            .map(char::len_utf16)
            .sum();
        lsp::Position::new(line as u32, col as u32)
    }

    /// The byte offset of a position; lines and columns past the end are clamped.
    pub fn offset(&self, text: &str, pos: lsp::Position) -> usize {
        let Some(&start) = self.starts.get(pos.line as usize) else {
            return self.len;
        };
        let line_end = self
            .starts
            .get(pos.line as usize + 1)
            .map_or(self.len, |&n| n - 1);
        let mut col = 0usize;
        for (i, c) in text.get(start..line_end).unwrap_or("").char_indices() {
            if col >= pos.character as usize {
                return start + i;
            }
            col += c.len_utf16();
        }
        line_end
    }

    pub fn range(&self, text: &str, span: &Range<usize>) -> lsp::Range {
        lsp::Range::new(
            self.position(text, span.start),
            self.position(text, span.end),
        )
    }

    /// A protocol range as an ordered byte range.
    pub fn span(&self, text: &str, range: lsp::Range) -> Range<usize> {
        let (a, b) = (self.offset(text, range.start), self.offset(text, range.end));
        a.min(b)..a.max(b)
    }
}

pub fn diagnostic(
    d: &Diagnostic,
    uri: &lsp::Url,
    text: &str,
    index: &LineIndex,
) -> lsp::Diagnostic {
    let mut message = d.message.clone();
    if let Some(help) = &d.help {
        message.push_str("\nhelp: ");
        message.push_str(help);
    }
    let related: Vec<lsp::DiagnosticRelatedInformation> = d
        .labels
        .iter()
        .skip(1)
        .map(|l| lsp::DiagnosticRelatedInformation {
            location: lsp::Location::new(uri.clone(), index.range(text, &l.span)),
            message: l.message.clone(),
        })
        .collect();
    lsp::Diagnostic {
        range: index.range(text, &d.primary_span()),
        severity: Some(match d.severity {
            Severity::Error => lsp::DiagnosticSeverity::ERROR,
            Severity::Warning => lsp::DiagnosticSeverity::WARNING,
        }),
        code: Some(lsp::NumberOrString::String(d.code.to_string())),
        source: Some("pol".into()),
        message,
        related_information: (!related.is_empty()).then_some(related),
        ..Default::default()
    }
}

pub fn completion_kind(k: CompletionKind) -> lsp::CompletionItemKind {
    match k {
        CompletionKind::Keyword => lsp::CompletionItemKind::KEYWORD,
        CompletionKind::Field => lsp::CompletionItemKind::FIELD,
        CompletionKind::Set => lsp::CompletionItemKind::VARIABLE,
        CompletionKind::Const => lsp::CompletionItemKind::CONSTANT,
        CompletionKind::Counter => lsp::CompletionItemKind::VARIABLE,
        CompletionKind::Filter => lsp::CompletionItemKind::CLASS,
        CompletionKind::Module => lsp::CompletionItemKind::MODULE,
        CompletionKind::Hook => lsp::CompletionItemKind::FUNCTION,
        CompletionKind::Type => lsp::CompletionItemKind::TYPE_PARAMETER,
    }
}

pub fn symbol_kind(k: SymbolKind) -> lsp::SymbolKind {
    match k {
        SymbolKind::Module => lsp::SymbolKind::MODULE,
        SymbolKind::Const => lsp::SymbolKind::CONSTANT,
        SymbolKind::Set => lsp::SymbolKind::ARRAY,
        SymbolKind::Filter => lsp::SymbolKind::CLASS,
        SymbolKind::Rule => lsp::SymbolKind::FIELD,
        SymbolKind::Probe | SymbolKind::SecurityRule => lsp::SymbolKind::FUNCTION,
        SymbolKind::Test => lsp::SymbolKind::METHOD,
        SymbolKind::Case => lsp::SymbolKind::EVENT,
    }
}

/// The token types the server announces, in legend order.
pub const TOKEN_TYPES: &[lsp::SemanticTokenType] = &[
    lsp::SemanticTokenType::KEYWORD,
    lsp::SemanticTokenType::COMMENT,
    lsp::SemanticTokenType::STRING,
    lsp::SemanticTokenType::NUMBER,
    lsp::SemanticTokenType::OPERATOR,
    lsp::SemanticTokenType::VARIABLE,
    lsp::SemanticTokenType::PROPERTY,
    lsp::SemanticTokenType::FUNCTION,
    lsp::SemanticTokenType::TYPE,
    lsp::SemanticTokenType::NAMESPACE,
    lsp::SemanticTokenType::CLASS,
];

pub const TOKEN_MODIFIERS: &[lsp::SemanticTokenModifier] = &[
    lsp::SemanticTokenModifier::DECLARATION,
    lsp::SemanticTokenModifier::READONLY,
];

pub fn token_type(k: SemanticKind) -> u32 {
    match k {
        SemanticKind::Keyword => 0,
        SemanticKind::Comment => 1,
        SemanticKind::String => 2,
        SemanticKind::Number => 3,
        SemanticKind::Operator => 4,
        SemanticKind::Variable => 5,
        SemanticKind::Property => 6,
        SemanticKind::Function => 7,
        SemanticKind::Type => 8,
        SemanticKind::Namespace => 9,
        SemanticKind::Class => 10,
    }
}

#[cfg(test)]
mod tests {
    use super::LineIndex;
    use lsp_types::Position;

    #[test]
    fn utf16_columns_after_non_ascii() {
        // `é` is one UTF-16 unit (2 bytes), `🔥` two units (4 bytes).
        let text = "# é🔥\ndrop \"🔥\" tcp.dport\n";
        let idx = LineIndex::new(text);
        let off = text.find("tcp").expect("tcp");
        let pos = idx.position(text, off);
        assert_eq!(pos, Position::new(1, 10));
        assert_eq!(idx.offset(text, pos), off);
        let after_emoji = text.find("🔥").expect("emoji") + 4;
        assert_eq!(idx.position(text, after_emoji), Position::new(0, 5));
        assert_eq!(idx.offset(text, Position::new(0, 5)), after_emoji);
    }

    #[test]
    fn out_of_range_positions_are_clamped() {
        let text = "ab\ncd";
        let idx = LineIndex::new(text);
        assert_eq!(idx.offset(text, Position::new(0, 99)), 2);
        assert_eq!(idx.offset(text, Position::new(7, 0)), text.len());
        // The middle of a surrogate pair lands after the character.
        let text = "🔥x";
        let idx = LineIndex::new(text);
        assert_eq!(idx.offset(text, Position::new(0, 1)), 4);
        assert_eq!(idx.position(text, 2), Position::new(0, 0));
    }
}
