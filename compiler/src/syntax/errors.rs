//! Turns lalrpop's parse errors into diagnostics with human token names.
//!
//! lalrpop reports expected terminals by their grammar names (`"\"pass\""`, `Ident`); here
//! they become `` `pass` `` and "a name", the expression-starting tokens collapse into
//! "an expression", and the list is ordered the way a reader scans the language.

use crate::diag::Diagnostic;
use crate::syntax::lexer::{LexError, Tok};
use lalrpop_util::ParseError;

/// Tokens that can start an expression; when all the core ones are expected, the message
/// says "an expression" instead of listing them.
const EXPR_START: &[&str] = &[
    "Ident",
    "Int",
    "Duration",
    "Str",
    "Ip4",
    "Ip6",
    "Mac",
    "Bad",
    "\"(\"",
    "\"[\"",
    "\"{\"",
    "\"true\"",
    "\"false\"",
    "\"not\"",
];

/// Comparison operators, collapsed into "a comparison operator" when all are expected.
const CMP_OPS: &[&str] = &[
    "\"==\"", "\"!=\"", "\"<\"", "\"<=\"", "\">\"", "\">=\"", "\"in\"", "\"~\"",
];

/// Arithmetic operators (probes), collapsed into "an arithmetic operator" when all are
/// expected, and listed last: rarely what a filter's author meant.
const ARITH_OPS: &[&str] = &["\"+\"", "\"-\"", "\"*\"", "\"/\""];

/// Item keywords, collapsed into "an item" when all are expected.
const ITEM_START: &[&str] = &[
    "\"import\"",
    "\"const\"",
    "\"set\"",
    "\"list\"",
    "\"macro\"",
    "\"filter\"",
    "\"probe\"",
    "\"rule\"",
    "\"test\"",
];

/// The order in which expected tokens are listed; unlisted ones come last.
const ORDER: &[&str] = &[
    "an expression",
    "a comparison operator",
    "\"..\"",
    "\"&\"",
    "\"and\"",
    "\"or\"",
    "\".\"",
    "\"(\"",
    "\"[\"",
    "\"count\"",
    "\"by\"",
    "\"into\"",
    "\"pass\"",
    "\"drop\"",
    "\"default\"",
    "\"malformed\"",
    "\"where\"",
    "\"when\"",
    "\"unless\"",
    "\"emit\"",
    "\"action\"",
    "\"packet\"",
    "Ident",
    "Int",
    "Str",
    "\"on\"",
    "\":\"",
    "\"=\"",
    "\"=>\"",
    "\",\"",
    "\"{\"",
    "\")\"",
    "\"]\"",
    "\"}\"",
    "an item",
    "an arithmetic operator",
];

/// The diagnostic for one parse error, or `None` when it only echoes a lexical error
/// already reported (the parser stumbling over a `Tok::Bad`).
pub fn parse_error(err: &ParseError<usize, Tok, LexError>, source: &str) -> Option<Diagnostic> {
    match err {
        ParseError::UnrecognizedToken {
            token: (l, tok, r),
            expected,
        } => {
            if *tok == Tok::Bad {
                return None;
            }
            let found = found_text(source, *l..*r);
            let list = expected_list(expected);
            let message = if list.is_empty() {
                format!("unexpected {found}")
            } else {
                format!("expected {list}, found {found}")
            };
            let mut d = Diagnostic::error("E0201", message, *l..*r)
                .with_label(format!("unexpected {found}"));
            if let Some(help) = help_for(tok, expected, source.get(..*l).unwrap_or("")) {
                d = d.with_help(help);
            }
            Some(d)
        }
        ParseError::UnrecognizedEof { location, expected } => {
            let list = expected_list(expected);
            let d = Diagnostic::error("E0202", "unexpected end of file", *location..*location);
            Some(if list.is_empty() {
                d.with_label("the file ends here")
            } else {
                d.with_label(format!("expected {list} here"))
            })
        }
        ParseError::ExtraToken { token: (l, _, r) } => Some(
            Diagnostic::error(
                "E0201",
                format!("unexpected {}", found_text(source, *l..*r)),
                *l..*r,
            )
            .with_label("nothing may follow here"),
        ),
        // The lexer reports its own errors and never hands lalrpop an `Err`.
        ParseError::InvalidToken { location } => Some(Diagnostic::error(
            "E0101",
            "unexpected character",
            *location..*location + 1,
        )),
        ParseError::User { .. } => None,
    }
}

/// `` `}` ``, or the first few characters of a long token.
fn found_text(source: &str, span: std::ops::Range<usize>) -> String {
    let text = source.get(span).unwrap_or("");
    let short: String = text.chars().take(24).collect();
    if short.len() < text.len() {
        format!("`{short}…`")
    } else {
        format!("`{text}`")
    }
}

/// Hints for mistakes common enough to name.
fn help_for(tok: &Tok, expected: &[String], before: &str) -> Option<&'static str> {
    let expects = |t: &str| expected.iter().any(|e| e == t);
    let after_on = before
        .trim_end()
        .strip_suffix("on")
        .is_some_and(|rest| !rest.ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_'));
    if after_on && expected.len() == 1 && expects("Ident") {
        return Some("a hook is a name with optional arguments: `xdp(\"eth0\")`, `exec`");
    }
    let is_cmp = matches!(
        tok,
        Tok::EqEq | Tok::NotEq | Tok::Lt | Tok::Le | Tok::Gt | Tok::Ge | Tok::In | Tok::Tilde
    );
    if is_cmp && expects("\"and\"") && !expects("\"==\"") {
        return Some("comparisons do not chain: write `a == b and b == c`");
    }
    if expects("\"on\"") && expected.len() == 1 {
        return Some("blocks are written `filter NAME on HOOK { ... }`, e.g. `on xdp(\"eth0\")`");
    }
    if expects("\"pass\"") && expects("\"default\"") && matches!(tok, Tok::Ident(_)) {
        return Some("each filter rule starts with `pass` or `drop`");
    }
    if expects("\"==\"") && matches!(tok, Tok::Assign) {
        return Some("compare with `==`; a single `=` only appears in declarations");
    }
    if ITEM_START.iter().all(|t| expects(t)) && expected.len() == ITEM_START.len() {
        return Some(
            "a file is made of `import`, `const`, `set`, `list`, `macro`, `filter`, \
             `probe`, `rule` and `test` items",
        );
    }
    if expects("\"=\"") && matches!(tok, Tok::EqEq) {
        return Some("declarations use a single `=`");
    }
    None
}

/// "`pass`, `drop`, `default`, `malformed` or `}`".
fn expected_list(expected: &[String]) -> String {
    let has = |t: &str| expected.iter().any(|e| e == t);
    let mut names: Vec<&str> = expected.iter().map(String::as_str).collect();
    if has("Ident") && has("Int") && has("\"(\"") {
        names.retain(|n| !EXPR_START.contains(n));
        names.push("an expression");
    }
    if CMP_OPS.iter().all(|t| has(t)) {
        names.retain(|n| !CMP_OPS.contains(n));
        names.push("a comparison operator");
    }
    if ITEM_START.iter().all(|t| has(t)) {
        names.retain(|n| !ITEM_START.contains(n));
        names.push("an item");
    }
    if ARITH_OPS.iter().all(|t| has(t)) {
        names.retain(|n| !ARITH_OPS.contains(n));
        names.push("an arithmetic operator");
    }
    names.retain(|n| *n != "Bad");
    names.sort_by_key(|n| ORDER.iter().position(|o| o == n).unwrap_or(ORDER.len()));
    names.dedup();
    let human: Vec<String> = names.iter().map(|n| human_name(n)).collect();
    join_or(&human)
}

fn human_name(terminal: &str) -> String {
    match terminal {
        "Ident" => "a name".to_owned(),
        "Int" => "an integer".to_owned(),
        "Duration" => "a duration".to_owned(),
        "Str" => "a string".to_owned(),
        "Ip4" => "an IPv4 address".to_owned(),
        "Ip6" => "an IPv6 address".to_owned(),
        "Mac" => "a MAC address".to_owned(),
        t if t.starts_with('"') && t.ends_with('"') && t.len() >= 2 => {
            format!("`{}`", &t[1..t.len() - 1])
        }
        t => t.to_owned(),
    }
}

fn join_or(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}
