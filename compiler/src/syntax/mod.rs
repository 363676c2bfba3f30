//! Tokens (logos), the lalrpop parser, and the AST with spans.
//!
//! `parse` never fails: it returns the tree and every lexical and syntax error it found.
//! Parts that did not parse are kept as `FilterRule::Error`, `Stmt::Error`,
//! `TestCase::Error` and `ExprKind::Error`; a top-level item that did not parse is left
//! out of `File::items` (its error is reported).
//!
//! # Error codes
//!
//! | code  | meaning                                          | example                        |
//! |-------|--------------------------------------------------|--------------------------------|
//! | E0101 | a character that starts no token                 | `drop tcp.dport == $22`        |
//! | E0102 | a string without its closing quote on its line   | `xdp("eth0)`                   |
//! | E0103 | an unknown escape in a string                    | `"C:\dir"`                     |
//! | E0104 | an integer that does not fit in 64 bits          | `99999999999999999999`         |
//! | E0105 | a dotted number that is not an IPv4 address      | `300.1.1.1`, `10.0.0`          |
//! | E0106 | a prefix length larger than the address          | `1.2.3.4/33`, `::/129`         |
//! | E0107 | a colon-separated literal that is not IPv6       | `2001:db8:::1`                 |
//! | E0201 | an unexpected token                              | `drop tcp.dport == }`          |
//! | E0202 | the file ends inside an item                     | `filter f on xdp {` then EOF   |
//! | E0204 | a record element that is not `name`/`name: val`  | `emit { pid, "x" }`            |
//! | E0205 | an expression nested deeper than `MAX_DEPTH`     | `not not not … x` (300 times)  |
//!
//! The same table as data is `CODES`. (E0203 is unused: lalrpop's "extra token" cannot
//! happen with this grammar and is reported as E0201.)
//!
//! # Grammar decisions
//!
//! - Newlines are not significant: a filter rule ends where the next `pass`, `drop`,
//!   `default`, `malformed` or `}` begins; statements end at the next statement keyword.
//! - `{ ... }` is a record when at least one element is `name: value` or when it directly
//!   follows `emit`; otherwise it is a set literal (see `glue`).
//! - IPv6 literals start with a hex digit or `::` and contain at least two colons
//!   (see `lexer`), so `{ src: 192.0.2.1 }` and `{ a: b }` lex as keys and values.

pub mod ast;
mod errors;
mod glue;
pub mod lexer;
pub mod print;
pub mod trivia;

lalrpop_util::lalrpop_mod!(
    #[allow(
        clippy::all,
        clippy::pedantic,
        unused_parens,
        unused_imports,
        dead_code
    )]
    grammar,
    "/pol.rs"
);

use crate::diag::Diagnostic;

/// The front end's diagnostic codes: (code, meaning, example), as in the table above.
pub const CODES: &[(&str, &str, &str)] = &[
    (
        "E0101",
        "a character that starts no token",
        "drop tcp.dport == $22",
    ),
    (
        "E0102",
        "a string without its closing quote on its line",
        "xdp(\"eth0)",
    ),
    ("E0103", "an unknown escape in a string", "\"C:\\dir\""),
    (
        "E0104",
        "an integer that does not fit in 64 bits",
        "99999999999999999999",
    ),
    (
        "E0105",
        "a dotted number that is not an IPv4 address",
        "300.1.1.1",
    ),
    (
        "E0106",
        "a prefix length larger than the address",
        "1.2.3.4/33",
    ),
    (
        "E0107",
        "a colon-separated literal that is not IPv6",
        "2001:db8:::1",
    ),
    ("E0201", "an unexpected token", "drop tcp.dport == }"),
    ("E0202", "the file ends inside an item", "filter f on xdp {"),
    (
        "E0204",
        "a record element that is not `name` or `name: value`",
        "emit { pid, \"x\" }",
    ),
    (
        "E0205",
        "an expression nested too deeply",
        "not not not ... x",
    ),
];

/// Never fails: returns the tree and every error found, in source order.
pub fn parse(source: &str) -> (ast::File, Vec<Diagnostic>) {
    let (tokens, mut diags) = lexer::lex(source);
    if let Some((span, why)) = too_deep(&tokens) {
        // Every later stage (and dropping the tree) recurses over expressions; refuse
        // instead of overflowing the stack.
        diags.push(match why {
            TooDeep::Nesting => Diagnostic::error("E0205", "expression nested too deeply", span)
                .with_label(format!(
                    "more than {MAX_DEPTH} levels of operators and brackets here"
                ))
                .with_help("split the condition, or put the values in a `set`"),
            TooDeep::Chain => Diagnostic::error(
                "L0201",
                format!("more than {MAX_CHAIN} terms joined by one operator"),
                span,
            )
            .with_label(format!("term {MAX_CHAIN} starts here"))
            .with_help(
                "put the values in a `set` (`ip.src in blocked`): a set of any size is one test",
            ),
        });
        return (ast::File { items: Vec::new() }, diags);
    }
    // A syntax error right after a bad literal is almost always its echo (an unterminated
    // string swallows the `)` that would have followed): remember where those start.
    let after_bad: Vec<usize> = tokens
        .windows(2)
        .filter(|w| matches!(w, [(_, lexer::Tok::Bad, _), _]))
        .map(|w| w[1].0)
        .chain(
            tokens
                .last()
                .filter(|t| t.1 == lexer::Tok::Bad)
                .map(|t| t.2),
        )
        .collect();
    let mut ctx = glue::Ctx::new(source);
    let result = grammar::FileParser::new().parse(&mut ctx, tokens.into_iter().map(Ok));
    let file = match result {
        Ok(file) => file,
        Err(err) => {
            // Recovery at the item level catches everything in practice; should an error
            // still escape, report it and return what we have (nothing).
            ctx.errors.push(err);
            ast::File { items: Vec::new() }
        }
    };
    diags.extend(
        ctx.errors
            .iter()
            .filter_map(|e| errors::parse_error(e, source))
            // `after_bad` is in source order: a binary search keeps huge files linear.
            .filter(|d| after_bad.binary_search(&d.primary_span().start).is_err()),
    );
    diags.extend(ctx.diags);
    diags.sort_by_key(|d| {
        let s = d.primary_span();
        (s.start, s.end)
    });
    (file, diags)
}

/// How deep an expression may nest (operators plus brackets) before `parse` refuses it.
pub const MAX_DEPTH: usize = 256;

/// How many terms one flat `a or b or ...` (or `and`) chain may have. The chain is not
/// deep for the user, but it is a left-leaning tree for the compiler's recursive stages,
/// so it has a bound of its own, far above what a hand-written rule needs.
pub const MAX_CHAIN: usize = 2048;

/// The span of the first token at which the expression tree would exceed `MAX_DEPTH` or
/// a chain `MAX_CHAIN`, and which.
///
/// An upper bound on the tree's depth, computed on tokens: each operator adds a level,
/// except that `a or b or c` is one level of `or` (the comparisons inside its terms each
/// start again from it); each bracket adds a level for what is inside it, a comma
/// restarts at the bracket's level, and item, rule and statement keywords start over.
fn too_deep(tokens: &[lexer::Spanned]) -> Option<(ast::Span, TooDeep)> {
    use lexer::Tok::*;
    /// A run of one chain operator: the operator, the depth it sits at, its terms.
    type Chain = Option<(lexer::Tok, usize, usize)>;
    let mut entry: Vec<(usize, Chain)> = Vec::new();
    let (mut depth, mut chain): (usize, Chain) = (0, None);
    for (l, tok, r) in tokens {
        match tok {
            Import | Const | Set | Filter | Probe | Rule | Test | Default | Malformed | Pass
            | Drop | Count | Where | When | Emit | Action | Packet | Delete => {
                entry.clear();
                (depth, chain) = (0, None);
            }
            LParen | LBracket | LBrace => {
                entry.push((depth, chain.take()));
                depth += 1;
            }
            RParen | RBracket | RBrace => (depth, chain) = entry.pop().unwrap_or((0, None)),
            Comma => {
                depth = entry.last().map_or(0, |e| e.0 + 1);
                chain = None;
            }
            And | Or => match &mut chain {
                Some((op, at, terms)) if op == tok => {
                    depth = *at;
                    *terms += 1;
                    if *terms >= MAX_CHAIN {
                        return Some((*l..*r, TooDeep::Chain));
                    }
                }
                _ => {
                    depth += 1;
                    chain = Some((tok.clone(), depth, 1));
                }
            },
            Not | EqEq | NotEq | Lt | Le | Gt | Ge | In | Tilde | Amp | Plus | Minus | Star
            | Slash => depth += 1,
            _ => {}
        }
        if depth > MAX_DEPTH {
            return Some((*l..*r, TooDeep::Nesting));
        }
    }
    None
}

/// What `too_deep` found.
enum TooDeep {
    Nesting,
    Chain,
}
