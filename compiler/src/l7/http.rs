//! HTTP/1.x request lines in the kernel (issue 13 §1): the tests rules make of
//! `http.method`, `http.path` and `http.version`, their checks, and the pass that parses a
//! segment's request line before the rules (`lower_pass`). docs/l7.md says what is seen.

use super::{Bits, L7Test, PayloadCopy, StrPat};
use crate::diag::Diagnostic;
use crate::hir::{Cond, Test};
use crate::mir::build::Builder;
use crate::mir::{
    BinOp, Block, BlockCall, Cond as MCond, ExtOp, IntTy, Module, Op, Operand, PtrKind, Slot, Term,
    Type, Value,
};
use crate::packet::record::{
    F_TCP, OFF_HTTP_METHOD, OFF_HTTP_STATE, OFF_HTTP_VERSION, OFF_L7_BITS, OFF_L7_PAY_LEN,
};
use crate::syntax::ast::{BinOp as AstOp, Expr, ExprKind, Span};
use serde::Serialize;

/// The methods pol recognises, case-insensitively (`get` is `GET`); `http.method` holds
/// the index + 1. A segment starting with any other word is not an HTTP request.
pub const METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
];

/// `OFF_HTTP_STATE`: the segment does not start a request (or is no TCP payload).
pub const STATE_NONE: u8 = 0;
/// A request line was read: method, path and (when in the segment) version are set.
pub const STATE_REQUEST: u8 = 1;
/// The segment starts like a request, but pol cannot see its request line whole: cut
/// short, longer than the bounds, or a target that is not a path (`l7 incomplete`).
pub const STATE_INCOMPLETE: u8 = 2;

/// Paths (the target up to `?`) of more bytes than this are incomplete.
pub const PATH_MAX: usize = 127;
/// Host names (the Host header's value, without port) of more bytes than this are
/// incomplete.
pub const HOST_MAX: usize = 127;
/// The request line must lie in this many first bytes of the segment's payload.
pub const SCAN_MAX: u32 = 256;
/// Per-CPU buffer: the copied payload, with room for reads past it, the LPM keys of the
/// host and headers, and the keys of counts by path and host (from 1024).
pub const BUF_SIZE: u32 = 2048;
/// Where the reversed, lower-cased host name ends in the buffer (its 0 terminator's place):
/// its LPM key starts `4 + length` bytes before.
const HOST_END: i64 = 640;

/// One test of a request line. Every test is false when the segment holds no request line
/// pol could read (`STATE_REQUEST`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum HttpTest {
    /// A request line was read.
    Request,
    /// `http.method == M`: the index + 1 in `METHODS`.
    Method(u8),
    /// `http.version == "1.1"`: 10, 11, or 9 for a request line without a version.
    Version(u8),
    /// `http.path == ".."`, `http.path in { .. }` or `starts_with(http.path, "..")`: the
    /// path is (or starts with) any of these; one bit, one lookup, however many.
    Path(Vec<StrPat>),
    /// `http.host == ".."`, `in { .. }` or `ends_with(http.host, "..")`: the Host header's
    /// name, lower-cased, without port or final dot, is (or ends with) any of these. The
    /// patterns are stored reversed (`moc.elpmaxe`), so a suffix is an LPM prefix.
    Host(Vec<StrPat>),
    /// `http.header("User-Agent") == ".."`, `in { .. }`, `starts_with(..)`, or the header
    /// alone (present): each pattern is the lower-cased name, `:`, and the value
    /// (`user-agent:curl/8.0`), so one LPM trie holds every header test of a filter.
    Header(Vec<StrPat>),
}

impl HttpTest {
    /// The string test, when this is one: its field and pattern.
    pub fn string(&self) -> Option<(&'static str, &[StrPat])> {
        match self {
            HttpTest::Path(p) => Some(("http.path", p)),
            HttpTest::Host(p) => Some(("http.host", p)),
            HttpTest::Header(p) => Some(("http.header", p)),
            _ => None,
        }
    }
}

/// The test as `pol build --emit hir` prints it.
pub fn print(t: &HttpTest) -> String {
    match t {
        HttpTest::Request => "http request".into(),
        HttpTest::Method(m) => format!(
            "http.method == {}",
            METHODS.get(usize::from(*m).wrapping_sub(1)).unwrap_or(&"?")
        ),
        HttpTest::Version(v) => format!("http.version == {}.{}", v / 10, v % 10),
        HttpTest::Path(ps) => {
            let each: Vec<String> = ps
                .iter()
                .map(|p| match p {
                    StrPat::Exact(p) => format!("== {:?}", String::from_utf8_lossy(p)),
                    StrPat::Prefix(p) => format!("starts with {:?}", String::from_utf8_lossy(p)),
                })
                .collect();
            format!("http.path {}", each.join(" or "))
        }
        HttpTest::Host(ps) => {
            let each: Vec<String> = ps
                .iter()
                .map(|p| {
                    let fwd: Vec<u8> = p.bytes().iter().rev().copied().collect();
                    let s = String::from_utf8_lossy(&fwd).into_owned();
                    match p {
                        StrPat::Exact(_) => format!("== {s:?}"),
                        StrPat::Prefix(_) => format!("ends with {s:?}"),
                    }
                })
                .collect();
            format!("http.host {}", each.join(" or "))
        }
        HttpTest::Header(ps) => {
            let each: Vec<String> = ps
                .iter()
                .map(|p| {
                    let s = String::from_utf8_lossy(p.bytes()).into_owned();
                    let (name, value) = s.split_once(':').unwrap_or((&s, ""));
                    match p {
                        StrPat::Exact(_) => format!("http.header({name:?}) == {value:?}"),
                        StrPat::Prefix(_) if value.is_empty() => format!("http.header({name:?})"),
                        StrPat::Prefix(_) => format!("http.header({name:?}) starts with {value:?}"),
                    }
                })
                .collect();
            each.join(" or ")
        }
    }
}

/// What a count keyed by an HTTP field (`count by_path[http.path]`) counts by. Only
/// requests pol read are counted; the key is the method's number (`METHODS` index + 1),
/// or the path or host name zero-padded to `COUNT_KEY` bytes (the host reversed, as the
/// pass holds it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum CountKey {
    Method,
    Path,
    Host,
}

impl CountKey {
    pub fn by_name(name: &str) -> Option<CountKey> {
        match name {
            "http.method" => Some(CountKey::Method),
            "http.path" => Some(CountKey::Path),
            "http.host" => Some(CountKey::Host),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            CountKey::Method => "http.method",
            CountKey::Path => "http.path",
            CountKey::Host => "http.host",
        }
    }

    /// Where the pass leaves the key in its buffer (`None`: the method, a record byte).
    pub fn buf_off(self) -> Option<i64> {
        match self {
            CountKey::Method => None,
            CountKey::Path => Some(COUNT_PATH_AT),
            CountKey::Host => Some(COUNT_HOST_AT),
        }
    }

    /// A key of the count map as text (`pol run`): the method's name, the path, the host.
    pub fn decode(self, key: &[u8]) -> String {
        match self {
            CountKey::Method => key
                .first()
                .and_then(|&m| METHODS.get(usize::from(m).wrapping_sub(1)))
                .map_or_else(|| "?".into(), |m| (*m).into()),
            CountKey::Path | CountKey::Host => {
                let end = key.iter().position(|&c| c == 0).unwrap_or(key.len());
                let mut b = key[..end].to_vec();
                if self == CountKey::Host {
                    b.reverse();
                }
                String::from_utf8_lossy(&b).into_owned()
            }
        }
    }
}

/// Which HTTP keys the counts of `filter`'s actions use: [method, path, host].
pub fn counts_by(hir: &crate::hir::Hir, filter: &crate::hir::Filter) -> [bool; 3] {
    let mut out = [false; 3];
    let actions = filter
        .rules
        .iter()
        .map(|r| &r.action)
        .chain([&filter.default, &filter.malformed]);
    for a in actions {
        for &c in &a.counts {
            match hir.counters.get(c).and_then(|c| c.l7) {
                Some(CountKey::Method) => out[0] = true,
                Some(CountKey::Path) => out[1] = true,
                Some(CountKey::Host) => out[2] = true,
                None => {}
            }
        }
    }
    out
}

/// The key size of a count by path or host: the longest path or host pol reads, and a 0.
pub const COUNT_KEY: usize = PATH_MAX + 1;
/// Where the pass copies the path, and the host name, for counts (zero-padded).
const COUNT_PATH_AT: i64 = 1024;
const COUNT_HOST_AT: i64 = COUNT_PATH_AT + COUNT_KEY as i64;

/// Header names of more bytes than this are refused (E0558).
pub const HEADER_NAME_MAX: usize = 32;
/// Header values (after the colon and spaces, before the line end and trailing spaces) of
/// more bytes than this make the request incomplete; longer patterns are L0510.
pub const HEADER_VALUE_MAX: usize = 127;
/// At most this many distinct header names in one filter (each is one scan of the
/// request's header lines): L0513.
pub const HEADERS_MAX: usize = 4;

/// The header name of `http.header("NAME")`, lower-cased: a token of at most
/// `HEADER_NAME_MAX` bytes, not `Host` (that is `http.host`).
fn header_name(diags: &mut Vec<Diagnostic>, e: &Expr, args: &[Expr]) -> Option<String> {
    let [Expr {
        kind: ExprKind::Str(name),
        span,
    }] = args
    else {
        diags.push(err(
            "E0558",
            "`http.header` takes one string: the header's name",
            e.span.clone(),
            "expected `http.header(\"User-Agent\")`",
        ));
        return None;
    };
    let token = |c: u8| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c);
    if name.is_empty() || name.len() > HEADER_NAME_MAX || !name.bytes().all(token) {
        diags.push(
            err(
                "E0558",
                format!("`{name}` is not a header name pol reads"),
                span.clone(),
                format!("letters, digits and `-` (a token), 1 to {HEADER_NAME_MAX} bytes"),
            )
            .with_help("`http.header(\"User-Agent\")`; names match in any case"),
        );
        return None;
    }
    if name.eq_ignore_ascii_case("host") {
        diags.push(
            err(
                "E0558",
                "the Host header is `http.host`",
                span.clone(),
                "lower-cased, without its port",
            )
            .with_help("`http.host == \"example.com\"`, `ends_with(http.host, \".example.com\")`"),
        );
        return None;
    }
    Some(name.to_ascii_lowercase())
}

/// `http.header("NAME")` alone: the request has the header (any value).
pub fn header_present(diags: &mut Vec<Diagnostic>, e: &Expr, args: &[Expr]) -> Option<Cond> {
    let name = header_name(diags, e, args)?;
    Some(test(HttpTest::Header(vec![StrPat::Prefix(
        format!("{name}:").into_bytes(),
    )])))
}

/// The test of header `name` (lower-cased) against the string `s` (a prefix when
/// `prefix`): printable ASCII without leading or trailing spaces, as pol reads values.
fn header_value(
    diags: &mut Vec<Diagnostic>,
    name: &str,
    s: &str,
    span: Span,
    prefix: bool,
) -> Option<Cond> {
    let b = s.as_bytes();
    if let Some(c) = b.iter().find(|&&c| !(b' '..=b'~').contains(&c)) {
        diags.push(err(
            "E0558",
            format!("a header value pattern cannot hold {:?}", char::from(*c)),
            span,
            "pol compares printable ASCII values",
        ));
        return None;
    }
    if b.first() == Some(&b' ') || (!prefix && b.last() == Some(&b' ')) {
        diags.push(
            err(
                "E0558",
                "a header value pattern cannot start or end with a space",
                span,
                "the spaces around a value are not part of it",
            )
            .with_help("`http.header(\"User-Agent\") == \"curl/8.0\"`"),
        );
        return None;
    }
    if b.len() > HEADER_VALUE_MAX {
        diags.push(
            err(
                "L0510",
                format!("a header value of {} bytes can never match", b.len()),
                span,
                format!("pol reads header values of at most {HEADER_VALUE_MAX} bytes"),
            )
            .with_help("longer values make the request incomplete (docs/l7.md)"),
        );
        return None;
    }
    let key = format!("{name}:{s}").into_bytes();
    Some(test(HttpTest::Header(vec![if prefix {
        StrPat::Prefix(key)
    } else {
        StrPat::Exact(key)
    }])))
}

/// The HTTP fields rules can name.
pub const FIELDS: [&str; 4] = ["http.method", "http.path", "http.version", "http.host"];

fn test(t: HttpTest) -> Cond {
    Cond::Test(Test::L7(L7Test::Http(t)))
}

/// `not t`, still false without a request line.
fn negate(t: Cond) -> Cond {
    Cond::And(vec![test(HttpTest::Request), Cond::Not(Box::new(t))])
}

fn err(
    code: &'static str,
    msg: impl Into<String>,
    span: Span,
    label: impl Into<String>,
) -> Diagnostic {
    Diagnostic::error(code, msg.into(), span).with_label(label.into())
}

/// `http.header("NAME") OP rhs`: `call` is the `http.header(..)` expression.
pub fn header_compare(
    diags: &mut Vec<Diagnostic>,
    e: &Expr,
    call: &Expr,
    args: &[Expr],
    op: AstOp,
    rhs: &Expr,
) -> Option<Cond> {
    let header = header_name(diags, call, args)?;
    compare_values(diags, e, "http.header", Some(&header), op, rhs)
}

/// `FIELD OP rhs` where FIELD is `http.*` (`name`).
pub fn compare(
    diags: &mut Vec<Diagnostic>,
    e: &Expr,
    name: &str,
    name_span: Span,
    op: AstOp,
    rhs: &Expr,
) -> Option<Cond> {
    if !FIELDS.contains(&name) {
        let mut d = err(
            "E0550",
            format!("unknown HTTP field `{name}`"),
            name_span,
            "no such field",
        );
        d = d.with_help(format!(
            "HTTP fields: {}, and headers as `http.header(\"NAME\")`",
            FIELDS.join(", ")
        ));
        diags.push(d);
        return None;
    }
    compare_values(diags, e, name, None, op, rhs)
}

/// The values side of `compare`: `header` is the header's name for `http.header`.
fn compare_values(
    diags: &mut Vec<Diagnostic>,
    e: &Expr,
    name: &str,
    header: Option<&str>,
    op: AstOp,
    rhs: &Expr,
) -> Option<Cond> {
    let values: Vec<&Expr> = match (op, &rhs.kind) {
        (AstOp::In, ExprKind::SetLit(items)) => items.iter().collect(),
        (AstOp::In, _) => {
            diags.push(err(
                "E0551",
                format!("`{name} in` takes a list of strings"),
                rhs.span.clone(),
                "expected `{ \"..\", \"..\" }`",
            ));
            return None;
        }
        (AstOp::Eq | AstOp::Ne, _) => vec![rhs],
        _ => {
            diags.push(
                err(
                    "E0551",
                    format!("`{name}` is a string: compare it with `==`, `!=` or `in`"),
                    e.span.clone(),
                    "not ordered",
                )
                .with_help("prefixes: `starts_with(http.path, \"/api/\")`"),
            );
            return None;
        }
    };
    let mut tests = Vec::new();
    let mut paths = Vec::new();
    let mut hosts = Vec::new();
    let mut headers = Vec::new();
    for v in values {
        let ExprKind::Str(s) = &v.kind else {
            diags.push(err(
                "E0551",
                format!("`{name}` is compared with a string"),
                v.span.clone(),
                "expected a string such as \"GET\" or \"/api/\"",
            ));
            return None;
        };
        let one = match header {
            Some(h) => header_value(diags, h, s, v.span.clone(), false)?,
            None => value(diags, name, s, v.span.clone(), false)?,
        };
        match one {
            Cond::Test(Test::L7(L7Test::Http(HttpTest::Path(p)))) => paths.extend(p),
            Cond::Test(Test::L7(L7Test::Http(HttpTest::Host(p)))) => hosts.extend(p),
            Cond::Test(Test::L7(L7Test::Http(HttpTest::Header(p)))) => headers.extend(p),
            c => tests.push(c),
        }
    }
    type Make = fn(Vec<StrPat>) -> HttpTest;
    let groups: [(Vec<StrPat>, Make); 3] = [
        (paths, HttpTest::Path),
        (hosts, HttpTest::Host),
        (headers, HttpTest::Header),
    ];
    for (mut pats, make) in groups {
        if !pats.is_empty() {
            pats.sort();
            pats.dedup();
            tests.push(test(make(pats)));
        }
    }
    let any = if tests.len() == 1 {
        tests.pop()?
    } else {
        Cond::Or(tests)
    };
    Some(if op == AstOp::Ne { negate(any) } else { any })
}

/// `starts_with(http.path, "/api/")` or `ends_with(http.host, ".example.com")`: the one
/// field each function matches by its start or end, and its words in errors.
struct Affix {
    func: &'static str,
    field: &'static str,
    kind: &'static str,
    /// The pattern in E0552's help and in E0551's label.
    help: &'static str,
    sample: &'static str,
}

const STARTS_WITH: Affix = Affix {
    func: "starts_with",
    field: "http.path",
    kind: "prefix",
    help: "/admin",
    sample: "/api/",
};

const ENDS_WITH: Affix = Affix {
    func: "ends_with",
    field: "http.host",
    kind: "suffix",
    help: ".example.com",
    sample: ".example.com",
};

/// `ends_with(http.host, ".example.com")`.
pub fn ends_with(diags: &mut Vec<Diagnostic>, e: &Expr, args: &[Expr]) -> Option<Cond> {
    affix(diags, e, args, &ENDS_WITH)
}

/// `starts_with(http.path, "/api/")`.
pub fn starts_with(diags: &mut Vec<Diagnostic>, e: &Expr, args: &[Expr]) -> Option<Cond> {
    affix(diags, e, args, &STARTS_WITH)
}

fn affix(diags: &mut Vec<Diagnostic>, e: &Expr, args: &[Expr], a: &Affix) -> Option<Cond> {
    let [field, pat] = args else {
        diags.push(err(
            "E0512",
            format!("`{}` takes a field and a string", a.func),
            e.span.clone(),
            format!("given {} arguments", args.len()),
        ));
        return None;
    };
    let name = match &field.kind {
        ExprKind::Path(p) => p.dotted(),
        ExprKind::Call(p, hargs) if p.dotted() == "http.header" && a.func == "starts_with" => {
            let header = header_name(diags, field, hargs)?;
            let ExprKind::Str(s) = &pat.kind else {
                diags.push(err(
                    "E0551",
                    "a prefix is a string",
                    pat.span.clone(),
                    "expected a string such as \"curl/\"",
                ));
                return None;
            };
            return header_value(diags, &header, s, pat.span.clone(), true);
        }
        _ => String::new(),
    };
    if name != a.field {
        diags.push(
            err(
                "E0552",
                format!("filters test {}es of `{}` only", a.kind, a.field),
                field.span.clone(),
                format!("not a {}-matched field", a.kind),
            )
            .with_help(if a.func == "starts_with" {
                format!(
                    "`{}({}, \"{}\")`, `starts_with(http.header(\"User-Agent\"), \"curl/\")`",
                    a.func, a.field, a.help
                )
            } else {
                format!("`{}({}, \"{}\")`", a.func, a.field, a.help)
            }),
        );
        return None;
    }
    let ExprKind::Str(s) = &pat.kind else {
        diags.push(err(
            "E0551",
            format!("a {} is a string", a.kind),
            pat.span.clone(),
            format!("expected a string such as \"{}\"", a.sample),
        ));
        return None;
    };
    value(diags, &name, s, pat.span.clone(), true)
}

/// The test of `name` against the string `s` (a prefix when `prefix`).
fn value(
    diags: &mut Vec<Diagnostic>,
    name: &str,
    s: &str,
    span: Span,
    prefix: bool,
) -> Option<Cond> {
    match name {
        "http.method" => {
            let Some(i) = METHODS.iter().position(|m| m.eq_ignore_ascii_case(s)) else {
                diags.push(
                    err(
                        "E0553",
                        format!("`{s}` is not an HTTP method pol recognises"),
                        span,
                        "unknown method",
                    )
                    .with_help(format!("methods: {}", METHODS.join(", "))),
                );
                return None;
            };
            Some(test(HttpTest::Method(i as u8 + 1)))
        }
        "http.version" => {
            let v = match s {
                "1.0" | "HTTP/1.0" => 10,
                "1.1" | "HTTP/1.1" => 11,
                "0.9" | "HTTP/0.9" => 9,
                _ => {
                    diags.push(
                        err(
                            "E0553",
                            format!("`{s}` is not an HTTP/1.x version"),
                            span,
                            "unknown version",
                        )
                        .with_help(
                            "versions: \"1.0\", \"1.1\", \"0.9\" (a request line without one)",
                        ),
                    );
                    return None;
                }
            };
            Some(test(HttpTest::Version(v)))
        }
        "http.host" => {
            let lower = s.to_ascii_lowercase();
            let b = lower.as_bytes();
            let host = if prefix {
                b
            } else {
                b.strip_suffix(b".").unwrap_or(b)
            };
            if host.is_empty()
                || !host
                    .iter()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_'))
            {
                diags.push(
                    err(
                        "E0555",
                        format!("`{s}` is not a host name"),
                        span,
                        "letters, digits, `-`, `_` and `.` only (no port)",
                    )
                    .with_help("`http.host == \"api.example.com\"`, `ends_with(http.host, \".example.com\")`"),
                );
                return None;
            }
            if host.len() > HOST_MAX {
                diags.push(err(
                    "L0510",
                    format!("a host name of {} bytes can never match", host.len()),
                    span,
                    format!("pol reads host names of at most {HOST_MAX} bytes"),
                ));
                return None;
            }
            let rev: Vec<u8> = host.iter().rev().copied().collect();
            Some(test(HttpTest::Host(vec![if prefix {
                StrPat::Prefix(rev)
            } else {
                StrPat::Exact(rev)
            }])))
        }
        _ => {
            let b = s.as_bytes();
            if !prefix && b.first() != Some(&b'/') || prefix && !b.is_empty() && b[0] != b'/' {
                diags.push(
                    err(
                        "E0554",
                        "a request path starts with `/`",
                        span,
                        "pol compares the path of the request target",
                    )
                    .with_help(
                        "`http.path == \"/index.html\"`, `starts_with(http.path, \"/api/\")`",
                    ),
                );
                return None;
            }
            if let Some(c) = b.iter().find(|&&c| c <= b' ' || c == b'?' || c >= 0x7f) {
                diags.push(
                    err(
                        "E0554",
                        format!("a path pattern cannot hold {:?}", char::from(*c)),
                        span,
                        "the path ends at a space or `?`; control and non-ASCII bytes are percent-encoded",
                    ),
                );
                return None;
            }
            if b.len() > PATH_MAX {
                diags.push(
                    err(
                        "L0510",
                        format!("a path pattern of {} bytes can never match", b.len()),
                        span,
                        format!("pol reads paths of at most {PATH_MAX} bytes"),
                    )
                    .with_help("longer paths are incomplete requests (docs/l7.md)"),
                );
                return None;
            }
            let pat = if prefix {
                StrPat::Prefix(b.to_vec())
            } else {
                StrPat::Exact(b.to_vec())
            };
            Some(test(HttpTest::Path(vec![pat])))
        }
    }
}

/// More distinct string tests than `BITS_MAX` in a filter: an error at the first that
/// does not fit.
pub fn check_filter(filter: &crate::hir::Filter) -> Option<Diagnostic> {
    let bits = Bits::of_filter(filter);
    let names = header_names(&bits);
    if names.len() > HEADERS_MAX {
        let extra = names.get(HEADERS_MAX)?;
        let rule = filter.rules.iter().find(|r| {
            let mut b = Bits::default();
            b.walk(&r.cond);
            header_names(&b).contains(extra)
        })?;
        return Some(
            Diagnostic::error(
                "L0513",
                format!(
                    "filter `{}` tests more than {HEADERS_MAX} header names",
                    filter.name
                ),
                rule.span.clone(),
            )
            .with_label(format!(
                "header `{}` is the {}th",
                String::from_utf8_lossy(extra),
                HEADERS_MAX + 1
            ))
            .with_help("each header name is one scan of the request's headers; split the filter"),
        );
    }
    if bits.tests.len() <= super::BITS_MAX {
        return None;
    }
    let (field, pats) = bits.tests.get(super::BITS_MAX)?;
    let rule = filter.rules.iter().find(|r| {
        let mut b = Bits::default();
        b.walk(&r.cond);
        b.bit(field, pats).is_some()
    })?;
    Some(
        Diagnostic::error(
            "L0511",
            format!(
                "filter `{}` has more than {} distinct L7 string tests",
                filter.name,
                super::BITS_MAX
            ),
            rule.span.clone(),
        )
        .with_label(format!("test {} of {field}", super::BITS_MAX + 1))
        .with_help(
            "put strings with the same action in one test: `http.path in { \"/a\", \"/b\" }`",
        ),
    )
}

/// The header names the filter's `http.header` tests read, lower-cased, in order of
/// first appearance.
pub fn header_names(bits: &Bits) -> Vec<Vec<u8>> {
    let mut names: Vec<Vec<u8>> = Vec::new();
    for (field, pats) in &bits.tests {
        if *field != "http.header" {
            continue;
        }
        for p in pats {
            let b = p.bytes();
            let name = b[..b.iter().position(|&c| c == b':').unwrap_or(b.len())].to_vec();
            if !names.contains(&name) {
                names.push(name);
            }
        }
    }
    names
}

/// The pass as the rule IR carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Pass {
    /// The per-CPU buffer map (one entry of `BUF_SIZE` bytes).
    pub buf: String,
    /// The LPM trie of path patterns, when a rule tests the path.
    pub paths: Option<String>,
    /// The LPM trie of reversed host patterns, when a rule tests the host.
    pub hosts: Option<String>,
    /// The LPM trie of `name:value` header patterns, and the names to look for
    /// (lower-cased), when a rule tests a header.
    pub headers: Option<(String, Vec<Vec<u8>>)>,
    /// XDP (else tc).
    pub xdp: bool,
    /// A count is keyed by the path, by the host: copy them where the count reads them.
    pub count_path: bool,
    pub count_host: bool,
}

/// The buffer map's, path map's and host map's names for a filter.
pub fn map_names(filter: &str) -> (String, String, String) {
    (
        format!("{filter}_l7buf"),
        format!("{filter}_hpath"),
        format!("{filter}_hhost"),
    )
}

/// The header trie's name for a filter.
pub fn header_map(filter: &str) -> String {
    format!("{filter}_hhdr")
}

/// The header trie's key data: the name, `:`, the value, its 0 terminator, rounded up to
/// whole u32s (the BTF struct of the key is padded so).
pub const HEADER_KEY_DATA: usize = (HEADER_NAME_MAX + 1 + HEADER_VALUE_MAX + 1).div_ceil(4) * 4;

/// The LPM key's data bytes: the path, then its 0 terminator.
pub const KEY_DATA: usize = PATH_MAX + 1;

/// What `lower_pass` needs of the program.
pub struct At {
    pub ctx: Value,
    pub rec: Slot,
    /// A 16-byte slot for the buffer's key and the forget trick.
    pub scratch: Slot,
    pub flags: Value,
}

/// A u64 of the bytes of `s`, first byte lowest (as a little-endian load sees them).
fn word(s: &[u8]) -> i64 {
    let mut w = [0u8; 8];
    for (d, c) in w.iter_mut().zip(s) {
        *d = *c;
    }
    i64::from_le_bytes(w)
}

fn low_bytes(n: usize) -> i64 {
    if n >= 8 {
        -1
    } else {
        (1i64 << (8 * n)) - 1
    }
}

struct L<'a> {
    b: &'a mut Builder,
}

impl L<'_> {
    fn bin(&mut self, at: Block, op: BinOp, a: Value, x: impl Into<Operand>) -> Value {
        let ty = self.b.f.ty(a);
        self.b.f.push(at, Op::Binary(op, a, x.into()), ty)
    }
    fn br(&mut self, at: Block, cond: MCond, a: Value, x: impl Into<Operand>, t: Block, f: Block) {
        self.b.br(at, cond, a, x, t, f);
    }
    /// A bounded scan's back edge: `k + 1` goes back to `head` while under `bound`, else to `out`.
    fn next(&mut self, at: Block, k: Value, bound: i64, head: Block, out: Block) {
        let k1 = self.bin(at, BinOp::Add, k, Operand::Imm(1));
        self.b.set_term(
            at,
            Term::Br {
                cond: MCond::Ult,
                a: k1,
                b: Operand::Imm(bound),
                then: BlockCall::new(head, vec![k1]),
                els: BlockCall::new(out, vec![]),
            },
        );
    }
    fn load(&mut self, at: Block, ty: IntTy, ptr: Value, off: i16) -> Value {
        let v = self.b.f.push(at, Op::Load { ptr, off }, Type::Int(ty));
        if ty == IntTy::U64 {
            v
        } else {
            self.b.f.push(at, Op::Ext(ExtOp::Zext, v), Type::U64)
        }
    }
    fn store(&mut self, at: Block, ty: IntTy, ptr: Value, off: i16, val: impl Into<Operand>) {
        self.b.f.push_void(
            at,
            Op::Store {
                ty,
                ptr,
                off,
                val: val.into(),
            },
        );
    }
    fn rec_store(&mut self, at: Block, rec: Slot, ty: IntTy, off: i16, val: impl Into<Operand>) {
        let r = self
            .b
            .f
            .push(at, Op::SlotAddr(rec), Type::Ptr(PtrKind::Stack));
        self.store(at, ty, r, off, val);
    }
    /// Makes the kernel verifier forget what it knows of `v` (below 2^16): a spill and
    /// fill through a 2-byte piece at 2 mod 4 of a slot, which it does not track (as the
    /// packet parser's `forget`). Without it each method's path start, or each loop exit's
    /// position, would be walked through the rest of the program separately.
    fn forget(&mut self, at: Block, s: Slot, v: Value, mask: i64) -> Value {
        self.stash(at, s, 2, v);
        self.unstash(at, s, 2, mask)
    }
    /// The spill half of `forget`, at `off` (2 mod 4) of the 16-byte slot. A loop stores
    /// the values its exit needs on every iteration and the exit reads them back
    /// (`unstash`), instead of passing them: so the exits of all iterations reach the same
    /// state and the kernel verifier walks what follows once, not once per iteration.
    fn stash(&mut self, at: Block, s: Slot, off: i16, v: Value) {
        let p = self
            .b
            .f
            .push(at, Op::SlotAddr(s), Type::Ptr(PtrKind::Stack));
        self.store(at, IntTy::U16, p, off, v);
    }
    fn unstash(&mut self, at: Block, s: Slot, off: i16, mask: i64) -> Value {
        let p = self
            .b
            .f
            .push(at, Op::SlotAddr(s), Type::Ptr(PtrKind::Stack));
        let w = self.load(at, IntTy::U16, p, off);
        self.bin(at, BinOp::And, w, Operand::Imm(mask))
    }
    fn u64c(&mut self, at: Block, v: i64) -> Value {
        self.b.f.iconst(at, IntTy::U64, v)
    }
}

/// 1 when the byte `c` (below 256) is `want`, else 0, with no branch: `(c ^ want) - 1`
/// wraps (sets bit 63) only for 0.
fn is(l: &mut L<'_>, at: Block, c: Value, want: u8) -> Value {
    let x = l.bin(at, BinOp::Xor, c, Operand::Imm(i64::from(want)));
    let x = l.bin(at, BinOp::Sub, x, Operand::Imm(1));
    l.bin(at, BinOp::Lshr, x, Operand::Imm(63))
}

/// The HTTP pass: when the segment's TCP payload starts with a request line, leaves its
/// method, version and the bits of the path tests that hold in the record's L7 window,
/// and `STATE_REQUEST`; `STATE_INCOMPLETE` when it starts like one pol cannot read whole.
/// Returns the block that continues with the rules.
pub fn lower_pass(
    b: &mut Builder,
    cur: Block,
    module: &Module,
    p: &Pass,
    at: &At,
) -> Result<Block, String> {
    let buf_map = module
        .map_by_name(&p.buf)
        .ok_or_else(|| format!("map {} is not in the module", p.buf))?;
    let host_map = match &p.hosts {
        Some(n) => Some(
            module
                .map_by_name(n)
                .ok_or_else(|| format!("map {n} is not in the module"))?,
        ),
        None => None,
    };
    let header_map = match &p.headers {
        Some((n, names)) => Some((
            module
                .map_by_name(n)
                .ok_or_else(|| format!("map {n} is not in the module"))?,
            names.clone(),
        )),
        None => None,
    };
    let path_map = match &p.paths {
        Some(n) => Some(
            module
                .map_by_name(n)
                .ok_or_else(|| format!("map {n} is not in the module"))?,
        ),
        None => None,
    };
    let mut l = L { b };
    let done = l.b.add_block();
    let incomplete = l.b.add_block();
    l.rec_store(
        incomplete,
        at.rec,
        IntTy::U8,
        OFF_HTTP_STATE,
        Operand::Imm(i64::from(STATE_INCOMPLETE)),
    );
    l.b.set_term(incomplete, Term::Jump(BlockCall::new(done, vec![])));

    // TCP with a payload only.
    let tcp = l.bin(cur, BinOp::And, at.flags, Operand::Imm(i64::from(F_TCP)));
    let has_tcp = l.b.add_block();
    l.br(cur, MCond::Ne, tcp, Operand::Imm(0), has_tcp, done);
    let r =
        l.b.f
            .push(has_tcp, Op::SlotAddr(at.rec), Type::Ptr(PtrKind::Stack));
    let len = l.load(has_tcp, IntTy::U16, r, OFF_L7_PAY_LEN);
    let some = l.b.add_block();
    l.br(has_tcp, MCond::Ne, len, Operand::Imm(0), some, done);
    // The buffer: entry 0 of the per-CPU array.
    let k =
        l.b.f
            .push(some, Op::SlotAddr(at.scratch), Type::Ptr(PtrKind::Stack));
    l.store(some, IntTy::U32, k, 0, Operand::Imm(0));
    let m =
        l.b.f
            .push(some, Op::MapRef(buf_map), Type::Ptr(PtrKind::Map(buf_map)));
    let lookup = crate::mir::helpers::by_name("map_lookup_elem").map_or(1, |h| h.id);
    let buf = l.b.f.push(
        some,
        Op::Call(lookup, vec![m, k]),
        Type::Ptr(PtrKind::MapValueOrNull(buf_map)),
    );
    let got = l.b.add_block();
    l.br(some, MCond::Eq, buf, Operand::Imm(0), done, got);
    let buf = l.b.f.push(
        got,
        Op::PtrAdd(buf, Operand::Imm(0)),
        Type::Ptr(PtrKind::MapValue(buf_map)),
    );
    // A short payload reads as zeros after its end.
    l.store(got, IntTy::U64, buf, 0, Operand::Imm(0));
    l.store(got, IntTy::U64, buf, 8, Operand::Imm(0));
    let copy = PayloadCopy {
        xdp: p.xdp,
        ctx: at.ctx,
        rec: at.rec,
        buf,
        max: SCAN_MAX,
    };
    let (cur, n) = super::copy_payload(l.b, got, &copy, incomplete);
    let n = l.forget(cur, at.scratch, n, 511);
    // A loop's bound checks narrow what the verifier knows of `n` differently on each
    // iteration; code after a loop reads it afresh from here, so its exits still meet.
    l.stash(cur, at.scratch, 14, n);

    // The method: the first word, letters folded to lower case, against "get " etc.
    let w = l.load(cur, IntTy::U64, buf, 0);
    let found = l.b.add_block();
    let code_p = l.b.f.add_block_param(found, Type::U64);
    let ps4_p = l.b.f.add_block_param(found, Type::U64);
    let mut at_m = cur;
    for (i, m) in METHODS.iter().enumerate() {
        let len = m.len();
        let mut pat = m.to_ascii_lowercase().into_bytes();
        pat.push(b' ');
        let folded = l.bin(at_m, BinOp::Or, w, Operand::Imm(word(&[0x20; 8][..len])));
        let masked = l.bin(at_m, BinOp::And, folded, Operand::Imm(low_bytes(len + 1)));
        let next = l.b.add_block();
        let code = l.u64c(at_m, i as i64 + 1);
        let ps4 = l.u64c(at_m, len as i64 + 1 - 4);
        let want = l.u64c(at_m, word(&pat));
        l.b.set_term(
            at_m,
            Term::Br {
                cond: MCond::Eq,
                a: masked,
                b: want.into(),
                then: BlockCall::new(found, vec![code, ps4]),
                els: BlockCall::new(next, vec![]),
            },
        );
        at_m = next;
    }
    // No method: a segment that could be the start of one (shorter than "METHOD "), or
    // that starts with an empty line (servers skip it), is incomplete; else not HTTP.
    let first = l.bin(at_m, BinOp::And, w, Operand::Imm(0xff));
    let not_cr = l.b.add_block();
    l.br(
        at_m,
        MCond::Eq,
        first,
        Operand::Imm(i64::from(b'\r')),
        incomplete,
        not_cr,
    );
    let not_lf = l.b.add_block();
    l.br(
        not_cr,
        MCond::Eq,
        first,
        Operand::Imm(i64::from(b'\n')),
        incomplete,
        not_lf,
    );
    let short = l.b.add_block();
    l.br(not_lf, MCond::Uge, n, Operand::Imm(8), done, short);
    // n < 8: the low n bytes of each method's pattern.
    let bits = l.bin(short, BinOp::Shl, n, Operand::Imm(3));
    let one = l.u64c(short, 1);
    let nmask = l.bin(short, BinOp::Shl, one, bits);
    let nmask = l.bin(short, BinOp::Sub, nmask, Operand::Imm(1));
    let mut at_s = short;
    for m in METHODS {
        let len = m.len();
        let mut pat = m.to_ascii_lowercase().into_bytes();
        pat.push(b' ');
        let folded = l.bin(at_s, BinOp::Or, w, Operand::Imm(word(&[0x20; 8][..len])));
        let want = l.u64c(at_s, word(&pat));
        let x = l.bin(at_s, BinOp::Xor, folded, want);
        let x = l.bin(at_s, BinOp::And, x, nmask);
        let next = l.b.add_block();
        l.br(at_s, MCond::Eq, x, Operand::Imm(0), incomplete, next);
        at_s = next;
    }
    l.b.set_term(at_s, Term::Jump(BlockCall::new(done, vec![])));

    // The target: scan from the path's start to the first byte <= ' ', counting the
    // bytes before the first '?' (branch-free, so each iteration is one path).
    let cur = found;
    let code = l.forget(cur, at.scratch, code_p, 15);
    let ps4 = l.forget(cur, at.scratch, ps4_p, 7);
    let ps = l.bin(cur, BinOp::Add, ps4, Operand::Imm(4));
    let seen = l.b.var(Type::U64);
    let count = l.b.var(Type::U64);
    // `odd`: the path holds a `%` or a segment starting with `.` (see `is`), which a
    // server may decode or resolve into another path; `slash`: the last byte was `/`.
    let odd = l.b.var(Type::U64);
    let slash = l.b.var(Type::U64);
    let zero = l.u64c(cur, 0);
    l.b.def(cur, seen, zero);
    l.b.def(cur, count, zero);
    l.b.def(cur, odd, zero);
    l.b.def(cur, slash, zero);
    let head = l.b.add_block();
    let j = l.b.f.add_block_param(head, Type::U64);
    let j0 = l.u64c(cur, 0);
    // The exit reads the end, its byte and the path's length from the slot (`stash`).
    l.stash(cur, at.scratch, 10, zero);
    l.b.set_term(cur, Term::Jump(BlockCall::new(head, vec![j0])));
    let i = l.bin(head, BinOp::Add, ps, Operand::from(j));
    let i = l.bin(head, BinOp::And, i, Operand::Imm(255));
    let inside = l.b.add_block();
    l.br(head, MCond::Uge, i, n, incomplete, inside);
    let at_i = l.b.f.push(inside, Op::PtrAdd(buf, i.into()), l.b.f.ty(buf));
    let c = l.load(inside, IntTy::U8, at_i, 0);
    l.stash(inside, at.scratch, 2, i);
    l.stash(inside, at.scratch, 6, c);
    let exit = l.b.add_block();
    let body = l.b.add_block();
    l.br(
        inside,
        MCond::Ule,
        c,
        Operand::Imm(i64::from(b' ')),
        exit,
        body,
    );
    let q = is(&mut l, body, c, b'?');
    let s0 = l.b.get(body, seen);
    let s1 = l.bin(body, BinOp::Or, s0, Operand::from(q));
    l.b.def(body, seen, s1);
    let not_seen = l.bin(body, BinOp::Xor, s1, Operand::Imm(1));
    let c0 = l.b.get(body, count);
    let c1 = l.bin(body, BinOp::Add, c0, Operand::from(not_seen));
    l.b.def(body, count, c1);
    l.stash(body, at.scratch, 10, c1);
    // In the path (before any '?'): a '%', or a '.' right after a '/'.
    let pct = is(&mut l, body, c, b'%');
    let dot = is(&mut l, body, c, b'.');
    let sl0 = l.b.get(body, slash);
    let dot_seg = l.bin(body, BinOp::And, dot, Operand::from(sl0));
    let bad = l.bin(body, BinOp::Or, pct, Operand::from(dot_seg));
    let bad = l.bin(body, BinOp::And, bad, Operand::from(not_seen));
    let o0 = l.b.get(body, odd);
    let o1 = l.bin(body, BinOp::Or, o0, Operand::from(bad));
    l.b.def(body, odd, o1);
    let sl1 = is(&mut l, body, c, b'/');
    l.b.def(body, slash, sl1);
    l.next(body, j, i64::from(SCAN_MAX - 12), head, incomplete);

    // The end of the target: a space, then the version; a line end: HTTP/0.9.
    let cur = exit;
    let end = l.unstash(cur, at.scratch, 2, 255);
    let c_p = l.unstash(cur, at.scratch, 6, 255);
    let n = l.unstash(cur, at.scratch, 14, 511);
    let plen = l.unstash(cur, at.scratch, 10, 255);
    let version = l.b.var(Type::U64);
    let nine = l.u64c(cur, 9);
    l.b.def(cur, version, nine);
    let space = l.b.add_block();
    let not_space = l.b.add_block();
    l.br(
        cur,
        MCond::Eq,
        c_p,
        Operand::Imm(i64::from(b' ')),
        space,
        not_space,
    );
    let target = l.b.add_block();
    let cr_or = l.b.add_block();
    l.br(
        not_space,
        MCond::Eq,
        c_p,
        Operand::Imm(i64::from(b'\r')),
        target,
        cr_or,
    );
    l.br(
        cr_or,
        MCond::Eq,
        c_p,
        Operand::Imm(i64::from(b'\n')),
        target,
        incomplete,
    );
    // After the space: "HTTP/1.x" when its 8 bytes are in the segment.
    let zero_v = l.u64c(space, 0);
    l.b.def(space, version, zero_v);
    let vend = l.bin(space, BinOp::Add, end, Operand::Imm(9));
    let has_v = l.b.add_block();
    l.br(space, MCond::Ule, vend, n, has_v, target);
    let vat =
        l.b.f
            .push(has_v, Op::PtrAdd(buf, end.into()), l.b.f.ty(buf));
    let v = l.load(has_v, IntTy::U64, vat, 1);
    let v11 = l.b.add_block();
    let not11 = l.b.add_block();
    let want11 = l.u64c(has_v, word(b"HTTP/1.1"));
    l.br(has_v, MCond::Eq, v, want11, v11, not11);
    let eleven = l.u64c(v11, 11);
    l.b.def(v11, version, eleven);
    l.b.set_term(v11, Term::Jump(BlockCall::new(target, vec![])));
    let v10 = l.b.add_block();
    let want10 = l.u64c(not11, word(b"HTTP/1.0"));
    l.br(not11, MCond::Eq, v, want10, v10, target);
    let ten = l.u64c(v10, 10);
    l.b.def(v10, version, ten);
    l.b.set_term(v10, Term::Jump(BlockCall::new(target, vec![])));

    // The target must be a path ("/..."), of at most PATH_MAX bytes.
    let cur = target;
    let pat = l.b.f.push(cur, Op::PtrAdd(buf, ps.into()), l.b.f.ty(buf));
    let b0 = l.load(cur, IntTy::U8, pat, 0);
    let slash = l.b.add_block();
    l.br(
        cur,
        MCond::Eq,
        b0,
        Operand::Imm(i64::from(b'/')),
        slash,
        incomplete,
    );
    let fits = l.b.add_block();
    l.br(
        slash,
        MCond::Ule,
        plen,
        Operand::Imm(PATH_MAX as i64),
        fits,
        incomplete,
    );
    // A path pol would have to decode or resolve (docs/l7.md, *Normalisation*).
    let odd_v = l.b.get(fits, odd);
    let plain = l.b.add_block();
    l.br(fits, MCond::Eq, odd_v, Operand::Imm(0), plain, incomplete);
    let cur = plain;
    let plen = l.bin(cur, BinOp::And, plen, Operand::Imm(127));
    let ver = l.b.get(cur, version);
    l.rec_store(cur, at.rec, IntTy::U8, OFF_HTTP_VERSION, ver);
    l.rec_store(cur, at.rec, IntTy::U8, OFF_HTTP_METHOD, code);
    l.rec_store(
        cur,
        at.rec,
        IntTy::U8,
        OFF_HTTP_STATE,
        Operand::Imm(i64::from(STATE_REQUEST)),
    );
    if p.count_path {
        let path = l.b.f.push(cur, Op::PtrAdd(buf, ps.into()), l.b.f.ty(buf));
        copy_padded(&mut l, cur, buf, path, plen, COUNT_PATH_AT);
    }
    let cur = if host_map.is_some() || p.count_host {
        host(
            &mut l,
            cur,
            HostAt {
                buf,
                n,
                end,
                map: host_map,
                count: p.count_host,
                rec: at.rec,
                scratch: at.scratch,
                incomplete,
            },
        )
    } else {
        cur
    };
    let mut cur = cur;
    if let Some((hm, names)) = &header_map {
        for name in names {
            cur = header(
                &mut l,
                cur,
                HeaderAt {
                    buf,
                    end,
                    map: *hm,
                    rec: at.rec,
                    scratch: at.scratch,
                    incomplete,
                },
                name,
            );
        }
    }
    let Some(path_map) = path_map else {
        l.b.set_term(cur, Term::Jump(BlockCall::new(done, vec![])));
        return Ok(done);
    };
    // The LPM key sits over the method: {prefix length, path, 0} from `buf + ps - 4`.
    let key = l.b.f.push(cur, Op::PtrAdd(buf, ps4.into()), l.b.f.ty(buf));
    let kbits = l.bin(cur, BinOp::Add, plen, Operand::Imm(1));
    let kbits = l.bin(cur, BinOp::Shl, kbits, Operand::Imm(3));
    l.store(cur, IntTy::U32, key, 0, kbits);
    let endp = l.b.f.push(cur, Op::PtrAdd(key, plen.into()), l.b.f.ty(buf));
    l.store(cur, IntTy::U8, endp, 4, Operand::Imm(0));
    let cur = lookup_bits(&mut l, cur, path_map, key, at.rec);
    l.b.set_term(cur, Term::Jump(BlockCall::new(done, vec![])));
    Ok(done)
}

/// Looks `key` up in the LPM trie `map` and ORs the bits it holds into the record's;
/// returns the block that continues.
fn lookup_bits(l: &mut L<'_>, cur: Block, map: crate::mir::MapId, key: Value, rec: Slot) -> Block {
    let lookup = crate::mir::helpers::by_name("map_lookup_elem").map_or(1, |h| h.id);
    let m =
        l.b.f
            .push(cur, Op::MapRef(map), Type::Ptr(PtrKind::Map(map)));
    let hit = l.b.f.push(
        cur,
        Op::Call(lookup, vec![m, key]),
        Type::Ptr(PtrKind::MapValueOrNull(map)),
    );
    let some = l.b.add_block();
    let out = l.b.add_block();
    l.br(cur, MCond::Eq, hit, Operand::Imm(0), out, some);
    let hit = l.b.f.push(
        some,
        Op::PtrAdd(hit, Operand::Imm(0)),
        Type::Ptr(PtrKind::MapValue(map)),
    );
    let bits = l.b.f.push(some, Op::Load { ptr: hit, off: 0 }, Type::U32);
    let r =
        l.b.f
            .push(some, Op::SlotAddr(rec), Type::Ptr(PtrKind::Stack));
    let old = l.b.f.push(
        some,
        Op::Load {
            ptr: r,
            off: OFF_L7_BITS,
        },
        Type::U32,
    );
    let all = l.bin(some, BinOp::Or, bits, Operand::from(old));
    l.store(some, IntTy::U32, r, OFF_L7_BITS, all);
    l.b.set_term(some, Term::Jump(BlockCall::new(out, vec![])));
    out
}

/// What the Host header's lookup needs.
struct HostAt {
    buf: Value,
    /// Bytes copied, and where the request target ended.
    n: Value,
    end: Value,
    /// The trie of host patterns, when a rule tests the host.
    map: Option<crate::mir::MapId>,
    /// A count is keyed by the host: copy the (reversed) name to `COUNT_HOST_AT`.
    count: bool,
    rec: Slot,
    scratch: Slot,
    incomplete: Block,
}

/// Copies `len` (at most 128) bytes from `src` to `buf + dst`, zero-padded to 128 bytes:
/// 16 word copies, each masked to the bytes of the string it holds (no loop, no branch).
fn copy_padded(l: &mut L<'_>, cur: Block, buf: Value, src: Value, len: Value, dst: i64) {
    for m in 0..16i64 {
        let w = l.load(cur, IntTy::U64, src, (8 * m) as i16);
        // k = clamp(len - 8m, 0, 8): the bytes of this word that belong to the string.
        let d = l.bin(cur, BinOp::Sub, len, Operand::Imm(8 * m));
        let neg = l.bin(cur, BinOp::Lshr, d, Operand::Imm(63));
        let keep = l.bin(cur, BinOp::Sub, neg, Operand::Imm(1));
        let u = l.bin(cur, BinOp::And, d, Operand::from(keep));
        let u8_ = l.bin(cur, BinOp::Sub, u, Operand::Imm(8));
        let lt = l.bin(cur, BinOp::Lshr, u8_, Operand::Imm(63));
        let zero = l.u64c(cur, 0);
        let sel = l.bin(cur, BinOp::Sub, zero, Operand::from(lt));
        let k = l.bin(cur, BinOp::And, u8_, Operand::from(sel));
        let k = l.bin(cur, BinOp::Add, k, Operand::Imm(8));
        // ((1 << 4k) << 4k) - 1: all ones for k = 8, where one shift by 64 would not be.
        let half = l.bin(cur, BinOp::Shl, k, Operand::Imm(2));
        let one = l.u64c(cur, 1);
        let mask = l.bin(cur, BinOp::Shl, one, Operand::from(half));
        let mask = l.bin(cur, BinOp::Shl, mask, Operand::from(half));
        let mask = l.bin(cur, BinOp::Sub, mask, Operand::Imm(1));
        let w = l.bin(cur, BinOp::And, w, Operand::from(mask));
        l.store(cur, IntTy::U64, buf, (dst + 8 * m) as i16, w);
    }
}

/// Finds the Host header after the request line (`\nhost:` in any case, within the bytes
/// copied), lower-cases its name up to a port, space or line end into the buffer backwards
/// (ending at `HOST_END`), drops one final dot, and looks it up reversed: an exact name
/// is its reversed bytes and a 0, a suffix (`.example.com`) its reversed bytes alone. No
/// Host header, or one cut short or longer than `HOST_MAX`: incomplete.
fn host(l: &mut L<'_>, cur: Block, h: HostAt) -> Block {
    let head = l.b.add_block();
    let k = l.b.f.add_block_param(head, Type::U64);
    let k0 = l.u64c(cur, 0);
    l.b.set_term(cur, Term::Jump(BlockCall::new(head, vec![k0])));
    let i = l.bin(head, BinOp::Add, h.end, Operand::from(k));
    let i6 = l.bin(head, BinOp::Add, i, Operand::Imm(6));
    let inside = l.b.add_block();
    l.br(head, MCond::Ugt, i6, h.n, h.incomplete, inside);
    let i = l.bin(inside, BinOp::And, i, Operand::Imm(511));
    let at_i =
        l.b.f
            .push(inside, Op::PtrAdd(h.buf, i.into()), l.b.f.ty(h.buf));
    let w = l.load(inside, IntTy::U64, at_i, 0);
    let w = l.bin(inside, BinOp::Or, w, Operand::Imm(0x0000_0020_2020_2000));
    let w = l.bin(inside, BinOp::And, w, Operand::Imm(0xffff_ffff_ffff));
    let want = l.u64c(inside, word(b"\nhost:"));
    l.stash(inside, h.scratch, 2, i);
    let found = l.b.add_block();
    let next = l.b.add_block();
    l.br(inside, MCond::Eq, w, want, found, next);
    l.next(next, k, 250, head, h.incomplete);
    // The name starts after "\nhost:" and one optional space.
    let cur = found;
    let p = l.unstash(cur, h.scratch, 2, 255);
    let n = l.unstash(cur, h.scratch, 14, 511);
    let hs = l.bin(cur, BinOp::Add, p, Operand::Imm(6));
    let at_s =
        l.b.f
            .push(cur, Op::PtrAdd(h.buf, hs.into()), l.b.f.ty(h.buf));
    let c = l.load(cur, IntTy::U8, at_s, 0);
    let sp = is(l, cur, c, b' ');
    let hs = l.bin(cur, BinOp::Add, hs, Operand::from(sp));
    let head = l.b.add_block();
    let k = l.b.f.add_block_param(head, Type::U64);
    let k0 = l.u64c(cur, 0);
    l.b.set_term(cur, Term::Jump(BlockCall::new(head, vec![k0])));
    let idx = l.bin(head, BinOp::Add, hs, Operand::from(k));
    let inside = l.b.add_block();
    l.br(head, MCond::Uge, idx, n, h.incomplete, inside);
    let idx = l.bin(inside, BinOp::And, idx, Operand::Imm(511));
    let at_c =
        l.b.f
            .push(inside, Op::PtrAdd(h.buf, idx.into()), l.b.f.ty(h.buf));
    let c = l.load(inside, IntTy::U8, at_c, 0);
    l.stash(inside, h.scratch, 2, k);
    let exit = l.b.add_block();
    let not_end = l.b.add_block();
    l.br(
        inside,
        MCond::Ule,
        c,
        Operand::Imm(i64::from(b' ')),
        exit,
        not_end,
    );
    let body = l.b.add_block();
    l.br(
        not_end,
        MCond::Eq,
        c,
        Operand::Imm(i64::from(b':')),
        exit,
        body,
    );
    // Lower case without a branch: 0x20 when 'A' <= c <= 'Z'.
    let ge = l.bin(body, BinOp::Sub, c, Operand::Imm(i64::from(b'A')));
    let up = l.bin(body, BinOp::Sub, ge, Operand::Imm(26));
    let up = l.bin(body, BinOp::Lshr, up, Operand::Imm(63));
    let ge = l.u64c(body, i64::from(b'A') - 1);
    let ge = l.bin(body, BinOp::Sub, ge, Operand::from(c));
    let ge = l.bin(body, BinOp::Lshr, ge, Operand::Imm(63));
    let up = l.bin(body, BinOp::And, up, Operand::from(ge));
    let up = l.bin(body, BinOp::Shl, up, Operand::Imm(5));
    let lower = l.bin(body, BinOp::Or, c, Operand::from(up));
    let back = l.u64c(body, HOST_END - 1);
    let back = l.bin(body, BinOp::Sub, back, Operand::from(k));
    let back = l.bin(body, BinOp::And, back, Operand::Imm(1023));
    let at_b =
        l.b.f
            .push(body, Op::PtrAdd(h.buf, back.into()), l.b.f.ty(h.buf));
    l.store(body, IntTy::U8, at_b, 0, lower);
    l.next(body, k, HOST_MAX as i64 + 1, head, h.incomplete);
    // One final dot is dropped ("example.com." is "example.com"); nothing left: incomplete.
    let cur = exit;
    let len = l.unstash(cur, h.scratch, 2, 127);
    let some = l.b.add_block();
    l.br(cur, MCond::Ne, len, Operand::Imm(0), some, h.incomplete);
    let cur = some;
    let first = l.u64c(cur, HOST_END);
    let first = l.bin(cur, BinOp::Sub, first, Operand::from(len));
    let at_f =
        l.b.f
            .push(cur, Op::PtrAdd(h.buf, first.into()), l.b.f.ty(h.buf));
    let last = l.load(cur, IntTy::U8, at_f, 0);
    let dot = is(l, cur, last, b'.');
    let len = l.bin(cur, BinOp::Sub, len, Operand::from(dot));
    let len = l.bin(cur, BinOp::And, len, Operand::Imm(127));
    let some = l.b.add_block();
    l.br(cur, MCond::Ne, len, Operand::Imm(0), some, h.incomplete);
    let cur = some;
    // At HOST_END - 4 - len, written as a base plus a masked distance so that the
    // verifiers see the whole key inside the buffer.
    let koff = l.u64c(cur, HOST_MAX as i64);
    let koff = l.bin(cur, BinOp::Sub, koff, Operand::from(len));
    let koff = l.bin(cur, BinOp::And, koff, Operand::Imm(HOST_MAX as i64));
    let koff = l.bin(
        cur,
        BinOp::Add,
        koff,
        Operand::Imm(HOST_END - 4 - HOST_MAX as i64),
    );
    let key =
        l.b.f
            .push(cur, Op::PtrAdd(h.buf, koff.into()), l.b.f.ty(h.buf));
    let kbits = l.bin(cur, BinOp::Add, len, Operand::Imm(1));
    let kbits = l.bin(cur, BinOp::Shl, kbits, Operand::Imm(3));
    l.store(cur, IntTy::U32, key, 0, kbits);
    l.store(cur, IntTy::U8, h.buf, HOST_END as i16, Operand::Imm(0));
    if h.count {
        let name =
            l.b.f
                .push(cur, Op::PtrAdd(key, Operand::Imm(4)), l.b.f.ty(h.buf));
        copy_padded(l, cur, h.buf, name, len, COUNT_HOST_AT);
    }
    match h.map {
        Some(map) => lookup_bits(l, cur, map, key, h.rec),
        None => cur,
    }
}

/// What one header's lookup needs.
struct HeaderAt {
    buf: Value,
    /// Where the request target ended: the header lines follow.
    end: Value,
    map: crate::mir::MapId,
    rec: Slot,
    scratch: Slot,
    incomplete: Block,
}

/// Where a header's LPM key is built in the buffer: `{prefix length, name, ':', value, 0}`.
const HEADER_KEY_AT: i64 = 768;

/// Finds the first header line named `name` (lower-case; matched in any case) after the
/// request line, within the bytes copied, and looks `name:value` up in the header trie:
/// the value is what follows the colon and up to two spaces or tabs, to the line end,
/// less up to two trailing spaces or tabs. The end of the header block (an empty line)
/// before the name: the header is absent, no bit is set. Neither within the bytes copied,
/// a value cut short, longer than `HEADER_VALUE_MAX` or holding a control byte:
/// incomplete.
fn header(l: &mut L<'_>, cur: Block, h: HeaderAt, name: &[u8]) -> Block {
    let out = l.b.add_block();
    // The pattern "\nNAME:", compared 8 bytes at a time; letters are folded (`| 0x20`)
    // only where the pattern has a letter, so other bytes compare exactly.
    let mut pat = vec![b'\n'];
    pat.extend(name);
    pat.push(b':');
    let width = pat.len() as i64;
    let head = l.b.add_block();
    let k = l.b.f.add_block_param(head, Type::U64);
    let k0 = l.u64c(cur, 0);
    l.b.set_term(cur, Term::Jump(BlockCall::new(head, vec![k0])));
    let n = l.unstash(head, h.scratch, 14, 511);
    let i = l.bin(head, BinOp::Add, h.end, Operand::from(k));
    let i2 = l.bin(head, BinOp::Add, i, Operand::Imm(2));
    let inside = l.b.add_block();
    // Not even "\n\n" left in the bytes copied: the header block goes on past them.
    l.br(head, MCond::Ugt, i2, n, h.incomplete, inside);
    let i = l.bin(inside, BinOp::And, i, Operand::Imm(255));
    l.stash(inside, h.scratch, 2, i);
    let at_i =
        l.b.f
            .push(inside, Op::PtrAdd(h.buf, i.into()), l.b.f.ty(h.buf));
    let w = l.load(inside, IntTy::U64, at_i, 0);
    // An empty line ends the header block: "\n\n", or "\n\r\n" within the bytes copied.
    let w2 = l.bin(inside, BinOp::And, w, Operand::Imm(0xffff));
    let not_lflf = l.b.add_block();
    l.br(
        inside,
        MCond::Eq,
        w2,
        Operand::Imm(word(b"\n\n")),
        out,
        not_lflf,
    );
    let w3 = l.bin(not_lflf, BinOp::And, w, Operand::Imm(0xff_ffff));
    let crlf = l.b.add_block();
    let name_at = l.b.add_block();
    l.br(
        not_lflf,
        MCond::Eq,
        w3,
        Operand::Imm(word(b"\n\r\n")),
        crlf,
        name_at,
    );
    let i3 = l.bin(crlf, BinOp::Add, i, Operand::Imm(3));
    l.br(crlf, MCond::Ule, i3, n, out, name_at);
    // The name, when all of "\nNAME:" lies in the bytes copied.
    let next = l.b.add_block();
    let iw = l.bin(name_at, BinOp::Add, i, Operand::Imm(width));
    let mut at_c = l.b.add_block();
    l.br(name_at, MCond::Ule, iw, n, at_c, next);
    for (m, chunk) in pat.chunks(8).enumerate() {
        let fold: Vec<u8> = chunk
            .iter()
            .map(|c| if c.is_ascii_alphabetic() { 0x20 } else { 0 })
            .collect();
        let v = if m == 0 {
            w
        } else {
            l.load(at_c, IntTy::U64, at_i, (8 * m) as i16)
        };
        let v = l.bin(at_c, BinOp::Or, v, Operand::Imm(word(&fold)));
        let v = l.bin(at_c, BinOp::And, v, Operand::Imm(low_bytes(chunk.len())));
        let want = l.u64c(at_c, word(&chunk.to_ascii_lowercase()));
        let then = l.b.add_block();
        l.br(at_c, MCond::Eq, v, want, then, next);
        at_c = then;
    }
    let found = at_c;
    l.next(next, k, i64::from(SCAN_MAX), head, h.incomplete);
    // The value: after the colon and up to two spaces or tabs (branch-free).
    let cur = found;
    let p = l.unstash(cur, h.scratch, 2, 255);
    let mut vs = l.bin(cur, BinOp::Add, p, Operand::Imm(width));
    for _ in 0..2 {
        let at_v =
            l.b.f
                .push(cur, Op::PtrAdd(h.buf, vs.into()), l.b.f.ty(h.buf));
        let c = l.load(cur, IntTy::U8, at_v, 0);
        let sp = is(l, cur, c, b' ');
        let tab = is(l, cur, c, b'\t');
        let ws = l.bin(cur, BinOp::Or, sp, Operand::from(tab));
        vs = l.bin(cur, BinOp::Add, vs, Operand::from(ws));
        vs = l.bin(cur, BinOp::And, vs, Operand::Imm(511));
    }
    l.stash(cur, h.scratch, 6, vs);
    // Its end: the first control byte other than a tab, which must be a line end.
    let head = l.b.add_block();
    let k = l.b.f.add_block_param(head, Type::U64);
    let k0 = l.u64c(cur, 0);
    l.b.set_term(cur, Term::Jump(BlockCall::new(head, vec![k0])));
    let vs = l.unstash(head, h.scratch, 6, 511);
    let n = l.unstash(head, h.scratch, 14, 511);
    let idx = l.bin(head, BinOp::Add, vs, Operand::from(k));
    let inside = l.b.add_block();
    l.br(head, MCond::Uge, idx, n, h.incomplete, inside);
    let idx = l.bin(inside, BinOp::And, idx, Operand::Imm(511));
    let at_c =
        l.b.f
            .push(inside, Op::PtrAdd(h.buf, idx.into()), l.b.f.ty(h.buf));
    let c = l.load(inside, IntTy::U8, at_c, 0);
    l.stash(inside, h.scratch, 2, k);
    let ctl = l.b.add_block();
    let body = l.b.add_block();
    l.br(inside, MCond::Ult, c, Operand::Imm(0x20), ctl, body);
    let not_tab = l.b.add_block();
    l.br(
        ctl,
        MCond::Eq,
        c,
        Operand::Imm(i64::from(b'\t')),
        body,
        not_tab,
    );
    let not_cr = l.b.add_block();
    let exit = l.b.add_block();
    l.br(
        not_tab,
        MCond::Eq,
        c,
        Operand::Imm(i64::from(b'\r')),
        exit,
        not_cr,
    );
    l.br(
        not_cr,
        MCond::Eq,
        c,
        Operand::Imm(i64::from(b'\n')),
        exit,
        h.incomplete,
    );
    l.next(body, k, HEADER_VALUE_MAX as i64 + 3, head, h.incomplete);
    // Up to two trailing spaces or tabs are not part of the value.
    let cur = exit;
    let vs = l.unstash(cur, h.scratch, 6, 255);
    let mut len = l.unstash(cur, h.scratch, 2, 255);
    for _ in 0..2 {
        let last = l.bin(cur, BinOp::Add, vs, Operand::from(len));
        let last = l.bin(cur, BinOp::Add, last, Operand::Imm(511));
        let last = l.bin(cur, BinOp::And, last, Operand::Imm(511));
        let at_l =
            l.b.f
                .push(cur, Op::PtrAdd(h.buf, last.into()), l.b.f.ty(h.buf));
        let c = l.load(cur, IntTy::U8, at_l, 0);
        let sp = is(l, cur, c, b' ');
        let tab = is(l, cur, c, b'\t');
        let ws = l.bin(cur, BinOp::Or, sp, Operand::from(tab));
        // Only when there is a byte to drop: len > 0.
        let some = l.bin(cur, BinOp::Add, len, Operand::Imm(-1));
        let some = l.bin(cur, BinOp::Lshr, some, Operand::Imm(63));
        let some = l.bin(cur, BinOp::Xor, some, Operand::Imm(1));
        let ws = l.bin(cur, BinOp::And, ws, Operand::from(some));
        len = l.bin(cur, BinOp::Sub, len, Operand::from(ws));
    }
    let fits = l.b.add_block();
    l.br(
        cur,
        MCond::Ule,
        len,
        Operand::Imm(HEADER_VALUE_MAX as i64),
        fits,
        h.incomplete,
    );
    let cur = fits;
    let len = l.bin(cur, BinOp::And, len, Operand::Imm(127));
    // The key: the name and ':' as constants, the value copied 8 bytes at a time (bytes
    // past its end are past the prefix length, so never compared), then the 0.
    let nl = name.len() as i64;
    let key = HEADER_KEY_AT;
    for (j, c) in name.iter().chain([b':'].iter()).enumerate() {
        l.store(
            cur,
            IntTy::U8,
            h.buf,
            (key + 4 + j as i64) as i16,
            Operand::Imm(i64::from(*c)),
        );
    }
    let src =
        l.b.f
            .push(cur, Op::PtrAdd(h.buf, vs.into()), l.b.f.ty(h.buf));
    let dst = key + 4 + nl + 1;
    for m in 0..(HEADER_VALUE_MAX as i64 + 1) / 8 {
        let v = l.load(cur, IntTy::U64, src, (8 * m) as i16);
        l.store(cur, IntTy::U64, h.buf, (dst + 8 * m) as i16, v);
    }
    let endp =
        l.b.f
            .push(cur, Op::PtrAdd(h.buf, len.into()), l.b.f.ty(h.buf));
    l.store(cur, IntTy::U8, endp, dst as i16, Operand::Imm(0));
    let kbits = l.bin(cur, BinOp::Add, len, Operand::Imm(nl + 2));
    let kbits = l.bin(cur, BinOp::Shl, kbits, Operand::Imm(3));
    l.store(cur, IntTy::U32, h.buf, key as i16, kbits);
    let keyp =
        l.b.f
            .push(cur, Op::PtrAdd(h.buf, Operand::Imm(key)), l.b.f.ty(h.buf));
    let cur = lookup_bits(l, cur, h.map, keyp, h.rec);
    l.b.set_term(cur, Term::Jump(BlockCall::new(out, vec![])));
    out
}
