//! Tokens: a logos scanner plus a pass that validates literals and reports lexical errors.
//!
//! logos only recognises the *shape* of literals (permissive regexes); `lex` then decodes
//! them (integers, escapes, IPv4/IPv6 addresses and prefixes) so that every error points at
//! the exact bytes at fault. A literal that fails to decode becomes `Tok::Bad`, which the
//! grammar accepts wherever an expression may stand, so one bad address is one diagnostic.
//!
//! IPv6 rule: a candidate must start with a hex digit or `::`, contain at least two colons
//! and no whitespace. So `{ a: b }` and `{ src: 192.0.2.1 }` lex as name, colon, value,
//! while `dead::beef` and `2001:db8::/32` are addresses.

use crate::diag::Diagnostic;
use crate::syntax::ast::Span;
use logos::Logos;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// An IPv4 address with an optional `/prefix`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ip4Lit {
    pub addr: [u8; 4],
    pub prefix: Option<u8>,
}

/// An IPv6 address with an optional `/prefix`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ip6Lit {
    pub addr: [u8; 16],
    pub prefix: Option<u8>,
}

/// A MAC address's six bytes, first on the wire first.
pub type MacLit = [u8; 6];

/// Raised by logos for input no token matches.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LexError;

#[derive(Logos, Debug, Clone, PartialEq)]
#[logos(error = LexError)]
#[logos(skip r"[ \t\r\n\f]+")]
#[logos(skip r"#[^\n]*")]
#[logos(skip r"//[^\n]*")]
pub enum Tok {
    #[token("import")]
    Import,
    #[token("const")]
    Const,
    #[token("set")]
    Set,
    #[token("list")]
    List,
    #[token("macro")]
    Macro,
    #[token("unless")]
    Unless,
    #[token("filter")]
    Filter,
    #[token("probe")]
    Probe,
    #[token("rule")]
    Rule,
    #[token("test")]
    Test,
    #[token("on")]
    On,
    #[token("default")]
    Default,
    #[token("malformed")]
    Malformed,
    #[token("l7")]
    L7,
    #[token("pass")]
    Pass,
    #[token("drop")]
    Drop,
    #[token("count")]
    Count,
    #[token("by")]
    By,
    #[token("into")]
    Into,
    #[token("where")]
    Where,
    #[token("when")]
    When,
    #[token("delete")]
    Delete,
    /// `log` after a filter rule's counts: flow events (docs/stateful.md).
    #[token("log")]
    Log,
    #[token("emit")]
    Emit,
    #[token("action")]
    Action,
    #[token("packet")]
    Packet,
    #[token("and")]
    And,
    #[token("or")]
    Or,
    #[token("not")]
    Not,
    #[token("in")]
    In,
    #[token("true")]
    True,
    #[token("false")]
    False,

    #[token("(")]
    LParen,
    #[token(")")]
    RParen,
    #[token("{")]
    LBrace,
    #[token("}")]
    RBrace,
    #[token("[")]
    LBracket,
    #[token("]")]
    RBracket,
    #[token(",")]
    Comma,
    #[token(":")]
    Colon,
    #[token(".")]
    Dot,
    #[token("..")]
    DotDot,
    #[token("=")]
    Assign,
    #[token("=>")]
    FatArrow,
    #[token("==")]
    EqEq,
    #[token("!=")]
    NotEq,
    #[token("<")]
    Lt,
    #[token("<=")]
    Le,
    #[token(">")]
    Gt,
    #[token(">=")]
    Ge,
    #[token("~")]
    Tilde,
    #[token("&")]
    Amp,
    #[token("+")]
    Plus,
    #[token("-")]
    Minus,
    #[token("*")]
    Star,
    #[token("/")]
    Slash,

    #[regex("[A-Za-z_][A-Za-z0-9_]*", |lex| lex.slice().to_owned())]
    Ident(String),

    // Raw shapes, decoded by `lex` into the parser-facing variants below.
    #[regex("[0-9]+")]
    RawDec,
    #[regex("0[xX][0-9a-fA-F]+")]
    RawHex,
    /// `500ms`, `1s`: a duration (probes' `interval(..)`).
    #[regex("[0-9]+(ns|us|ms|s|m|h)")]
    RawDuration,
    #[regex(r#""([^"\\\n]|\\[^\n])*""#)]
    RawStr,
    #[regex(r#""([^"\\\n]|\\[^\n])*\\?"#)]
    RawUnterminated,
    #[regex(r"[0-9]+(\.[0-9]+)+(/[0-9]+)?")]
    RawIp4,
    /// Never produced by logos: `lex` grows a name, number or `:` into it (`ip6_extent`).
    RawIp6,

    // Parser-facing literal tokens, produced by `lex`.
    Int(u64),
    /// A duration in nanoseconds.
    Duration(u64),
    Str(String),
    Ip4(Ip4Lit),
    Ip6(Ip6Lit),
    /// A MAC address, `02:00:00:00:00:01`: six groups of two hex digits (never a valid
    /// IPv6 address, which has eight groups or a `::`).
    Mac(MacLit),
    /// A literal that did not decode; its error is already reported.
    Bad,
}

/// A token with its byte span, as lalrpop wants it.
pub type Spanned = (usize, Tok, usize);

/// Splits `source` into tokens; errors are reported and never stop the scan.
pub fn lex(source: &str) -> (Vec<Spanned>, Vec<Diagnostic>) {
    let mut toks = Vec::new();
    let mut diags: Vec<Diagnostic> = Vec::new();
    // Start and end of a run of unexpected characters, reported as one error.
    let mut bad_run: Option<Span> = None;
    let mut lexer = Tok::lexer(source);
    while let Some(result) = lexer.next() {
        let mut span = lexer.span();
        let mut result = result;
        if matches!(
            result,
            Ok(Tok::Ident(_) | Tok::RawDec | Tok::RawHex | Tok::Colon)
        ) {
            if let Some(end) = ip6_extent(source, span.start).filter(|&e| e > span.end) {
                lexer.bump(end - span.end);
                span.end = end;
                result = Ok(Tok::RawIp6);
            }
        }
        let text = &source[span.clone()];
        let tok = match result {
            Err(LexError) => {
                let end = next_boundary(source, span.end.max(span.start + 1));
                bad_run = match bad_run.take() {
                    Some(run) if run.end == span.start => Some(run.start..end),
                    Some(run) => {
                        diags.push(unexpected_chars(source, run));
                        Some(span.start..end)
                    }
                    None => Some(span.start..end),
                };
                continue;
            }
            Ok(tok) => tok,
        };
        if let Some(run) = bad_run.take() {
            diags.push(unexpected_chars(source, run));
        }
        let tok = match tok {
            Tok::RawDec => decode_int(text, 10, &span, &mut diags),
            Tok::RawHex => decode_int(&text[2..], 16, &span, &mut diags),
            Tok::RawDuration => decode_duration(text, &span, &mut diags),
            Tok::RawStr => decode_str(text, span.start, &mut diags),
            Tok::RawUnterminated => {
                diags.push(
                    Diagnostic::error("E0102", "unterminated string", span.clone())
                        .with_label("this string has no closing `\"`")
                        .with_help("strings end on the line they start; close it with `\"`"),
                );
                Tok::Bad
            }
            Tok::RawIp4 => decode_ip4(text, &span, &mut diags),
            Tok::RawIp6 => match mac(text) {
                Some(m) => Tok::Mac(m),
                None => decode_ip6(text, &span, &mut diags),
            },
            other => other,
        };
        toks.push((span.start, tok, span.end));
    }
    if let Some(run) = bad_run.take() {
        diags.push(unexpected_chars(source, run));
    }
    (toks, diags)
}

/// `500ms` as nanoseconds; one that overflows u64 is an error.
fn decode_duration(text: &str, span: &Span, diags: &mut Vec<Diagnostic>) -> Tok {
    let digits = text.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit: u64 = match &text[digits.len()..] {
        "ns" => 1,
        "us" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        _ => 3_600_000_000_000,
    };
    match digits.parse::<u64>().ok().and_then(|n| n.checked_mul(unit)) {
        Some(ns) => Tok::Duration(ns),
        None => {
            diags.push(
                Diagnostic::error("E0103", "duration out of range", span.clone())
                    .with_label("more nanoseconds than 64 bits hold"),
            );
            Tok::Bad
        }
    }
}

/// Where an IPv6 literal starting at `start` ends, if one does: it must start with a hex
/// digit or `::`, consist of hex digits, `:` and `.` (for `::ffff:1.2.3.4`), contain at
/// least two colons, and may end in `/digits`. A `..` ends it (`::1..::9` is a range).
/// logos cannot express this without confusing `dead:` (a record key) for an address.
fn ip6_extent(source: &str, start: usize) -> Option<usize> {
    let bytes = source.as_bytes().get(start..)?;
    if !(bytes.first()?.is_ascii_hexdigit() || bytes.starts_with(b"::")) {
        return None;
    }
    let mut end = 0;
    let mut colons = 0;
    while let Some(&b) = bytes.get(end) {
        match b {
            b':' => colons += 1,
            b'.' if bytes.get(end + 1) == Some(&b'.') => break,
            b'.' => {}
            b if b.is_ascii_hexdigit() => {}
            _ => break,
        }
        end += 1;
    }
    while end > 0 && bytes.get(end - 1) == Some(&b'.') {
        end -= 1;
    }
    if colons < 2 {
        return None;
    }
    if bytes.get(end) == Some(&b'/') {
        let digits = bytes
            .get(end + 1..)
            .map_or(0, |r| r.iter().take_while(|b| b.is_ascii_digit()).count());
        if digits > 0 {
            end += 1 + digits;
        }
    }
    Some(start + end)
}

/// The first char boundary at or after `i` (logos may split a multi-byte character).
fn next_boundary(source: &str, mut i: usize) -> usize {
    while i < source.len() && !source.is_char_boundary(i) {
        i += 1;
    }
    i.min(source.len())
}

fn unexpected_chars(source: &str, span: Span) -> Diagnostic {
    let text = source.get(span.clone()).unwrap_or("");
    let what = if text.chars().count() == 1 {
        format!("unexpected character `{}`", text.escape_debug())
    } else {
        format!("unexpected characters `{}`", text.escape_debug())
    };
    let d = Diagnostic::error("E0101", what, span).with_label("not part of any token");
    if text.contains(['“', '”', '‘', '’']) {
        d.with_help("strings use straight double quotes: `\"...\"`")
    } else if text.chars().any(|c| c.is_alphabetic()) {
        d.with_help("names use ASCII letters, digits and `_`")
    } else {
        d
    }
}

fn decode_int(digits: &str, radix: u32, span: &Span, diags: &mut Vec<Diagnostic>) -> Tok {
    match u64::from_str_radix(digits, radix) {
        Ok(n) => Tok::Int(n),
        Err(_) => {
            diags.push(
                Diagnostic::error("E0104", "integer literal too large", span.clone())
                    .with_label("does not fit in 64 bits")
                    .with_help("the largest integer is 18446744073709551615 (0xffffffffffffffff)"),
            );
            Tok::Bad
        }
    }
}

fn decode_str(text: &str, start: usize, diags: &mut Vec<Diagnostic>) -> Tok {
    let inner = &text[1..text.len() - 1];
    let mut out = String::with_capacity(inner.len());
    let mut ok = true;
    let mut chars = inner.char_indices();
    while let Some((i, c)) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some((_, '"')) => out.push('"'),
            Some((_, '\\')) => out.push('\\'),
            Some((_, 'n')) => out.push('\n'),
            Some((_, 't')) => out.push('\t'),
            Some((j, other)) => {
                let at = start + 1 + i;
                let end = start + 1 + j + other.len_utf8();
                diags.push(
                    Diagnostic::error(
                        "E0103",
                        format!("unknown escape `\\{}` in string", other.escape_debug()),
                        at..end,
                    )
                    .with_label("unknown escape")
                    .with_help("the escapes are `\\\"`, `\\\\`, `\\n` and `\\t`"),
                );
                ok = false;
            }
            // The lexer's regex never ends a string on a lone backslash.
            None => ok = false,
        }
    }
    if ok {
        Tok::Str(out)
    } else {
        Tok::Bad
    }
}

/// Splits `addr/prefix`; the prefix span is returned for precise errors.
fn split_prefix<'a>(text: &'a str, span: &Span) -> (&'a str, Option<(&'a str, Span)>) {
    match text.split_once('/') {
        Some((addr, prefix)) => {
            let at = span.start + addr.len();
            (addr, Some((prefix, at..span.end)))
        }
        None => (text, None),
    }
}

/// Decodes a prefix length; `None` (and an error) when it exceeds `max`.
fn decode_prefix(
    prefix: Option<(&str, Span)>,
    max: u8,
    family: &str,
    diags: &mut Vec<Diagnostic>,
) -> Result<Option<u8>, ()> {
    let Some((digits, span)) = prefix else {
        return Ok(None);
    };
    match digits.parse::<u8>() {
        Ok(n) if n <= max => Ok(Some(n)),
        _ => {
            diags.push(
                Diagnostic::error(
                    "E0106",
                    format!("{family} prefix length `/{digits}` is out of range"),
                    span,
                )
                .with_label(format!("must be at most /{max}")),
            );
            Err(())
        }
    }
}

fn decode_ip4(text: &str, span: &Span, diags: &mut Vec<Diagnostic>) -> Tok {
    let (addr, prefix) = split_prefix(text, span);
    let addr_span = span.start..span.start + addr.len();
    let parsed = Ipv4Addr::from_str(addr);
    let prefix = decode_prefix(prefix, 32, "IPv4", diags);
    match (parsed, prefix) {
        (Ok(a), Ok(prefix)) => Tok::Ip4(Ip4Lit {
            addr: a.octets(),
            prefix,
        }),
        (Err(_), _) => {
            let why = ip4_problem(addr);
            diags.push(
                Diagnostic::error("E0105", format!("invalid IPv4 address `{addr}`"), addr_span)
                    .with_label(why),
            );
            Tok::Bad
        }
        (Ok(_), Err(())) => Tok::Bad,
    }
}

/// Says what is wrong with a dotted-number literal that is not an IPv4 address.
fn ip4_problem(addr: &str) -> String {
    let parts: Vec<&str> = addr.split('.').collect();
    if parts.len() != 4 {
        return format!("an IPv4 address has 4 parts, this has {}", parts.len());
    }
    if let Some(p) = parts
        .iter()
        .find(|p| p.parse::<u64>().map_or(true, |n| n > 255))
    {
        return format!("`{p}` is larger than 255");
    }
    "parts must not have leading zeros".to_owned()
}

/// `text` as a MAC address: exactly six `:`-separated groups of two hex digits.
pub fn mac(text: &str) -> Option<MacLit> {
    let mut out = [0u8; 6];
    let mut groups = text.split(':');
    for byte in &mut out {
        let g = groups.next()?;
        if g.len() != 2 {
            return None;
        }
        *byte = u8::from_str_radix(g, 16).ok()?;
    }
    groups.next().is_none().then_some(out)
}

/// Whether a literal that is no IPv6 address was meant as a MAC address: no `::`, no `.`
/// or `/`, every group one or two hex digits (`02:00:00:00:01`, `2:0:0:0:0:1`).
fn looks_like_mac(text: &str) -> bool {
    !text.contains("::")
        && text
            .split(':')
            .all(|g| (1..=2).contains(&g.len()) && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn decode_ip6(text: &str, span: &Span, diags: &mut Vec<Diagnostic>) -> Tok {
    let (addr, prefix) = split_prefix(text, span);
    let addr_span = span.start..span.start + addr.len();
    let parsed = Ipv6Addr::from_str(addr);
    let prefix = decode_prefix(prefix, 128, "IPv6", diags);
    match (parsed, prefix) {
        (Ok(a), Ok(prefix)) => Tok::Ip6(Ip6Lit {
            addr: a.octets(),
            prefix,
        }),
        (Err(_), _) if looks_like_mac(text) => {
            diags.push(
                Diagnostic::error(
                    "E0107",
                    format!("invalid MAC address `{text}`"),
                    span.clone(),
                )
                .with_label("not a valid MAC address")
                .with_help("write six groups of two hex digits: `02:00:00:00:00:01`"),
            );
            Tok::Bad
        }
        (Err(_), _) => {
            diags.push(
                Diagnostic::error("E0107", format!("invalid IPv6 address `{addr}`"), addr_span)
                    .with_label("not a valid IPv6 address")
                    .with_help(
                        "write 8 groups of up to 4 hex digits separated by `:`, \
                         with at most one `::`",
                    ),
            );
            Tok::Bad
        }
        (Ok(_), Err(())) => Tok::Bad,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(src: &str) -> Vec<Tok> {
        let (toks, diags) = lex(src);
        assert!(diags.is_empty(), "{diags:?}");
        toks.into_iter().map(|(_, t, _)| t).collect()
    }

    #[test]
    fn ranges_paths_and_record_keys() {
        assert_eq!(kinds("1..5"), vec![Tok::Int(1), Tok::DotDot, Tok::Int(5)]);
        assert_eq!(
            kinds("tcp.dport==22"),
            vec![
                Tok::Ident("tcp".into()),
                Tok::Dot,
                Tok::Ident("dport".into()),
                Tok::EqEq,
                Tok::Int(22)
            ]
        );
        assert_eq!(
            kinds("{ dead: beef }"),
            vec![
                Tok::LBrace,
                Tok::Ident("dead".into()),
                Tok::Colon,
                Tok::Ident("beef".into()),
                Tok::RBrace
            ]
        );
        assert!(matches!(
            kinds("a:1")[..],
            [Tok::Ident(_), Tok::Colon, Tok::Int(1)]
        ));
        assert!(matches!(
            kinds("src: ::1")[..],
            [Tok::Ident(_), Tok::Colon, Tok::Ip6(_)]
        ));
        assert!(matches!(
            kinds("{ a:1, b: dead:beef }")[..],
            [
                Tok::LBrace,
                Tok::Ident(_),
                Tok::Colon,
                Tok::Int(1),
                Tok::Comma,
                Tok::Ident(_),
                Tok::Colon,
                Tok::Ident(_),
                Tok::Colon,
                Tok::Ident(_),
                Tok::RBrace
            ]
        ));
    }

    #[test]
    fn addresses() {
        assert!(matches!(kinds("::")[..], [Tok::Ip6(_)]));
        assert!(matches!(kinds("::ffff:1.2.3.4")[..], [Tok::Ip6(_)]));
        assert!(matches!(
            kinds("dead::beef/64")[..],
            [Tok::Ip6(Ip6Lit {
                prefix: Some(64),
                ..
            })]
        ));
        assert!(matches!(
            kinds("1.2.3.4..1.2.3.9")[..],
            [Tok::Ip4(_), Tok::DotDot, Tok::Ip4(_)]
        ));
        assert!(matches!(
            kinds("::1..::9")[..],
            [Tok::Ip6(_), Tok::DotDot, Tok::Ip6(_)]
        ));
        assert!(matches!(kinds("2001:db8::1")[..], [Tok::Ip6(_)]));
        assert_eq!(
            kinds("02:00:00:00:0a:FF"),
            vec![Tok::Mac([2, 0, 0, 0, 10, 255])]
        );
        // Not six groups of two digits: IPv6 candidates (and errors) as before.
        assert!(matches!(kinds("2:0:0:0:0:1:0:0")[..], [Tok::Ip6(_)]));
        assert!(!lex("02:00:00:00:00").1.is_empty());
        assert!(!lex("02:00:00:00:00:01:02").1.is_empty());
        let (_, d) = lex("2:0:0:0:0:1");
        assert_eq!(d[0].message, "invalid MAC address `2:0:0:0:0:1`");
        let (_, d) = lex("2001:db8:1");
        assert_eq!(d[0].message, "invalid IPv6 address `2001:db8:1`");
        assert!(matches!(
            kinds("6000..6063")[..],
            [Tok::Int(6000), Tok::DotDot, Tok::Int(6063)]
        ));
        assert_eq!(kinds("0x1F"), vec![Tok::Int(31)]);
    }
}

#[cfg(test)]
mod edge_tests {
    use super::*;

    /// Tokens (by debug name) and error codes with their spans.
    fn scan(src: &str) -> (Vec<Tok>, Vec<(&'static str, Span)>) {
        let (toks, diags) = lex(src);
        (
            toks.into_iter().map(|(_, t, _)| t).collect(),
            diags.iter().map(|d| (d.code, d.primary_span())).collect(),
        )
    }

    #[test]
    fn partial_addresses() {
        // `/` is division (probes): a prefix cut short is the parser's error, not the lexer's.
        let (toks, errs) = scan("10.0.0.0/ x");
        assert!(
            matches!(toks[..], [Tok::Ip4(_), Tok::Slash, Tok::Ident(_)]),
            "{toks:?}"
        );
        assert!(errs.is_empty());
        let (toks, errs) = scan("1.2.");
        assert!(matches!(toks[..], [Tok::Bad, Tok::Dot]), "{toks:?}");
        assert_eq!(errs, vec![("E0105", 0..3)]);
        let (toks, errs) = scan("1.");
        assert_eq!(toks, vec![Tok::Int(1), Tok::Dot]);
        assert!(errs.is_empty());
    }

    #[test]
    fn strings() {
        let (toks, errs) = scan(r#""a\"b\\c\n\t" "open\"#);
        assert_eq!(toks, vec![Tok::Str("a\"b\\c\n\t".into()), Tok::Bad]);
        assert_eq!(errs, vec![("E0102", 14..20)]);
        let (toks, errs) = scan("\"line\nnext");
        assert_eq!(toks, vec![Tok::Bad, Tok::Ident("next".into())]);
        assert_eq!(errs, vec![("E0102", 0..5)]);
        let (_, errs) = scan(r#""a\qb""#);
        assert_eq!(errs, vec![("E0103", 2..4)]);
    }

    #[test]
    fn error_spans_are_exact() {
        assert_eq!(scan("x 300.1.1.1 y").1, vec![("E0105", 2..11)]);
        assert_eq!(scan("1.2.3.4/33").1, vec![("E0106", 7..10)]);
        assert_eq!(scan("a 2001:db8:::1 b").1, vec![("E0107", 2..14)]);
        assert_eq!(scan("99999999999999999999").1, vec![("E0104", 0..20)]);
        assert_eq!(scan("a é b").1, vec![("E0101", 2..4)]);
    }
}
