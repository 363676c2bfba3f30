//! The canonical formatter (`pol fmt`): one style, idempotent, comments kept.
//!
//! The style, as the examples are written:
//! - four spaces of indentation; one item, rule, statement or test case per line;
//! - one space around binary operators, after commas and inside `{ }` of sets and
//!   records (`{ 22, 3389 }`), none inside `[ ]` and `( )`;
//! - the `count` clauses of a filter rule start at column 52 (one space after a longer
//!   rule), so the counters of a filter line up;
//! - a set literal stays on one line when it was written on one line and fits in
//!   `WIDTH` columns; otherwise it opens a block, keeping the line grouping of its
//!   elements as written (a one-line set too long to fit is filled up to `WIDTH`);
//! - one blank line around every `filter`, `probe`, `rule` and `test`; elsewhere a run of
//!   blank lines becomes one, and none follows a `{` or precedes a `}`;
//! - literals are written as in the source (`0x1F`, `2001:DB8::1`, string escapes);
//!   parentheses are kept;
//! - comments stay where they are: on their own line at the indentation of what follows,
//!   or after the code on the same line, one space after it.
//!
//! A file with syntax errors is not formatted (there is no tree to print). Before
//! returning, the output is lexed again: should its tokens or comments differ from the
//! input's, formatting fails with an internal error instead of changing the program.

mod print;

use crate::syntax::lexer::{self, Tok};
use crate::syntax::{self, trivia};

/// Sets wider than this many columns are broken over lines.
pub const WIDTH: usize = 92;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FormatError {
    /// The file does not parse: `pol check` says why.
    Syntax { errors: usize },
    /// A formatter bug: the output would not be the same program.
    Internal(String),
}

impl std::fmt::Display for FormatError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FormatError::Syntax { errors } => write!(
                f,
                "the file has {errors} syntax error{}; fix {} first (`pol check` shows {})",
                if *errors == 1 { "" } else { "s" },
                if *errors == 1 { "it" } else { "them" },
                if *errors == 1 { "it" } else { "them" },
            ),
            FormatError::Internal(why) => write!(f, "internal formatter error: {why}"),
        }
    }
}

impl std::error::Error for FormatError {}

/// Formats a whole file in the canonical style.
pub fn format(source: &str) -> Result<String, FormatError> {
    let (file, diags) = syntax::parse(source);
    let errors = diags.iter().filter(|d| d.is_error()).count();
    if errors > 0 {
        return Err(FormatError::Syntax { errors });
    }
    let comments = trivia::comments(source);
    let out = print::print(source, &file, &comments);
    verify(source, &out)?;
    Ok(out)
}

/// The output has the input's tokens and comments, in the same order.
fn verify(before: &str, after: &str) -> Result<(), FormatError> {
    // A trailing comma before a closing bracket is not part of the canonical style.
    let toks = |s: &str| -> Vec<Tok> {
        let all: Vec<Tok> = lexer::lex(s).0.into_iter().map(|t| t.1).collect();
        let closes = |t: Option<&Tok>| matches!(t, Some(Tok::RBrace | Tok::RBracket | Tok::RParen));
        all.iter()
            .enumerate()
            .filter(|(i, t)| !(**t == Tok::Comma && closes(all.get(i + 1))))
            .map(|(_, t)| t.clone())
            .collect()
    };
    if toks(before) != toks(after) {
        return Err(FormatError::Internal(
            "the formatted text has different tokens".into(),
        ));
    }
    let comments = |s: &str| -> Vec<String> {
        trivia::comments(s)
            .into_iter()
            .map(|c| s.get(c).unwrap_or("").trim_end().to_string())
            .collect()
    };
    if comments(before) != comments(after) {
        return Err(FormatError::Internal(
            "the formatted text lost or moved a comment".into(),
        ));
    }
    Ok(())
}
