//! Name resolution and type checking of a parsed file into the HIR.
//!
//! Error codes (E03xx names, E04xx types, E05xx filters, L05xx limits):
//! E0301 unknown name, E0302 unknown field, E0303 unknown module, E0304 duplicate name,
//! E0401 type mismatch, E0402 integer out of range, E0403 operator not defined for type,
//! E0404 condition is not a boolean, E0405 bad set element, E0406 unknown type,
//! E0501 unknown hook, E0502 bad hook argument, E0503 missing default,
//! E0504 duplicate default, E0505 rule after default, E0506 count key unusable,
//! E0507 count map used with different keys, E0508 duplicate filter, E0509 test on unknown filter,
//! E0510 a test's expected count names no counter or does not fit its key, E0511 bad rate limit,
//! L0501 construct not supported yet (probe, rule, regex, L7 fields, set files).

mod conditions;
mod consts;
mod counts;
mod decls;
mod filters;
mod l7;
mod state;

use super::fields;
use super::{stdlib, Hir, Ty, Value};
use crate::diag::{suggest, Diagnostic};
use crate::syntax::ast::{self, Expr, ExprKind, FileId, Item, Span};
use std::collections::{BTreeMap, HashMap, HashSet};

/// What a name stands for.
#[derive(Debug, Clone)]
enum Decl {
    /// A constant: its type and value(s).
    Const(Ty, Vec<Value>),
    /// A named set: index into `Hir::sets`.
    Set(usize),
    /// A named set of DNS names: index into `Hir::l7.names`.
    Names(usize),
    /// A declaration that had errors: uses of it report nothing more.
    Poisoned,
}

/// A name the checker declared: what it is, and the file and span of its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameDef {
    pub kind: NameKind,
    pub file: FileId,
    pub span: Span,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameKind {
    /// A constant of this type.
    Const(Ty),
    /// A named set of elements of this type.
    Set(Ty),
    /// A declaration that had errors.
    Poisoned,
}

/// The checker's name table, keyed by the name as a use site writes it: `blocked`,
/// `std.net.rfc1918`, `net.rfc1918`. Editors resolve names through it.
pub type Names = BTreeMap<String, NameDef>;

/// Reads a file named in the source (`file("blocklist.txt")`); the caller decides where
/// names are resolved. The compiler itself never touches the file system.
pub type FileReader<'a> = &'a dyn Fn(&str) -> Result<String, String>;

/// A reader for callers that have no files: every `file(..)` is an error.
pub fn no_files(name: &str) -> Result<String, String> {
    Err(format!(
        "this compilation has no access to files (reading `{name}`)"
    ))
}

struct Checker<'a> {
    source: &'a str,
    files: FileReader<'a>,
    /// Byte offset of the start of each line, for rule line numbers.
    line_starts: Vec<usize>,
    names: HashMap<String, (Decl, Span)>,
    /// Which file this checker reads (`Main`, or a stdlib module for imports).
    file: FileId,
    /// `names` as the public table (kinds and defining files), for `check_names`.
    defs: Names,
    /// Index of each counter in `hir.counters`, and the filter names seen: lookups by
    /// name stay constant-time in files of thousands of filters.
    counter_index: HashMap<String, usize>,
    filter_names: HashSet<String>,
    hir: Hir,
    diags: Vec<Diagnostic>,
}

/// Checks a parsed file. Never fails: returns the HIR of what checked and every error.
pub fn check(file: &ast::File, source: &str) -> (Hir, Vec<Diagnostic>) {
    check_with(file, source, &no_files)
}

/// `check`, with a reader for the files that `file(..)` sets name.
pub fn check_with(file: &ast::File, source: &str, files: FileReader<'_>) -> (Hir, Vec<Diagnostic>) {
    let (hir, diags, _) = check_names(file, source, files);
    (hir, diags)
}

/// `check_with`, also returning the name table (what editors resolve names with).
pub fn check_names(
    file: &ast::File,
    source: &str,
    files: FileReader<'_>,
) -> (Hir, Vec<Diagnostic>, Names) {
    check_names_with(file, source, files, &crate::catalog::NoCatalog)
}

/// `check_names`, with the probe catalog `args.NAME` and hooks are checked against.
pub fn check_names_with(
    file: &ast::File,
    source: &str,
    files: FileReader<'_>,
    catalog: &dyn crate::catalog::Catalog,
) -> (Hir, Vec<Diagnostic>, Names) {
    let mut c = Checker {
        source,
        files,
        line_starts: line_starts(source),
        names: HashMap::new(),
        file: FileId::Main,
        defs: Names::new(),
        counter_index: HashMap::new(),
        filter_names: HashSet::new(),
        hir: Hir::default(),
        diags: Vec::new(),
    };
    // Imports and declarations first, so filters may use names declared after them.
    for item in &file.items {
        match item {
            Item::Import(imp) => c.import(imp),
            Item::Const(k) if k.name.name == "conntrack" => c.conntrack(k),
            Item::Const(k) if k.name.name == "flowlog" => c.flowlog(k),
            Item::Const(k) => c.constant(k, ""),
            Item::Set(s) => c.set(s, ""),
            _ => {}
        }
    }
    for item in &file.items {
        match item {
            Item::Filter(f) => c.filter(f),
            // Probes are checked together below: they share their maps.
            Item::Probe(_) => {}
            // Rules are checked together below.
            Item::Rule(_) => {}
            // Test blocks are run by `pol test`; they need no code.
            Item::Test(_) | Item::Import(_) | Item::Const(_) | Item::Set(_) => {}
            // Lists and macros are expanded where rules use them.
            Item::Macro(_) => {}
        }
    }
    let probes: Vec<&ast::Probe> = file
        .items
        .iter()
        .filter_map(|i| match i {
            // A probe whose header did not parse has no hook to type its body against.
            Item::Probe(p) if p.header_parsed => Some(p),
            _ => None,
        })
        .collect();
    if !probes.is_empty() {
        let (hir, diags) = crate::probe::check::check(&probes, catalog);
        c.hir.probes = hir;
        c.diags.extend(diags);
        if let Some(f) = file.items.iter().find_map(|i| match i {
            Item::Filter(f) => Some(f),
            _ => None,
        }) {
            c.diags.push(
                Diagnostic::error(
                    "L0501",
                    "a file with probes cannot hold filters yet",
                    f.name.span.clone(),
                )
                .with_label("a filter beside probes")
                .with_help("put filters and probes in separate files"),
            );
        }
    }
    let rules: Vec<&ast::SecRule> = file
        .items
        .iter()
        .filter_map(|i| match i {
            Item::Rule(r) if r.header_parsed => Some(r),
            _ => None,
        })
        .collect();
    if !rules.is_empty() {
        let macros: Vec<&ast::MacroDecl> = file
            .items
            .iter()
            .filter_map(|i| match i {
                Item::Macro(m) => Some(m),
                _ => None,
            })
            .collect();
        let (set, diags) = crate::rule::check::check(&rules, &macros, source);
        c.hir.security = set;
        c.diags.extend(diags);
        if let Some(span) = file.items.iter().find_map(|i| match i {
            Item::Filter(f) => Some(f.name.span.clone()),
            Item::Probe(p) => Some(p.hook.span.clone()),
            _ => None,
        }) {
            c.diags.push(
                Diagnostic::error(
                    "L0501",
                    "a file with rules cannot hold filters or probes yet",
                    span,
                )
                .with_label("beside rules")
                .with_help("put rules, probes and filters in separate files"),
            );
        }
    }
    for item in &file.items {
        if let Item::Test(t) = item {
            let known = !t.header_parsed
                || file
                    .items
                    .iter()
                    .any(|i| matches!(i, Item::Filter(f) if f.name.name == t.target.name));
            if !known {
                c.diags.push(
                    Diagnostic::error(
                        "E0509",
                        format!(
                            "test `{}` is on `{}`, which is not a filter of this file",
                            t.name, t.target.name
                        ),
                        t.target.span.clone(),
                    )
                    .with_label("no filter of that name"),
                );
            }
            for case in &t.cases {
                if let ast::TestCase::Packet { counts, .. } = case {
                    for count in counts {
                        c.test_count(count);
                    }
                }
            }
        }
    }
    (c.hir, c.diags, c.defs)
}

fn line_starts(source: &str) -> Vec<usize> {
    std::iter::once(0)
        .chain(source.match_indices('\n').map(|(i, _)| i + 1))
        .collect()
}

impl Checker<'_> {
    fn mismatch(&mut self, e: &Expr, expected: Ty, found: Ty) {
        self.diags.push(
            Diagnostic::error(
                "E0401",
                format!("expected {expected}, found {found}"),
                e.span.clone(),
            )
            .with_label(format!("this is {found}")),
        );
    }

    fn unknown_name(&mut self, p: &ast::Path) {
        let name = p.dotted();
        let mut d = Diagnostic::error("E0301", format!("unknown name `{name}`"), p.span.clone())
            .with_label("not declared");
        if let Some(m) = stdlib::MODULES.iter().find(|m| {
            name.starts_with(&format!("{m}."))
                || name.starts_with(&format!("{}.", m.rsplit('.').next().unwrap_or(m)))
        }) {
            d = d.with_help(format!("add `import {m}` at the top of the file"));
        } else {
            let near = fields::suggestions(&name);
            if !near.is_empty() {
                d = d.with_help(format!(
                    "did you mean the field {}?",
                    suggest::one_of(&near)
                ));
            }
        }
        self.diags.push(d);
    }
}

/// Whether a value of type `have` may be used where `want` is expected.
fn compatible(want: Ty, have: Ty) -> bool {
    want == have
        || (want.is_int() && have.is_int() && have.int_max() <= want.int_max())
        || matches!(
            (want, have),
            (Ty::Cidr, Ty::Ip4 | Ty::Ip6 | Ty::Ip) | (Ty::Ip, Ty::Ip4 | Ty::Ip6)
        )
}

/// The type of a literal, where it has one of its own.
fn infer(e: &Expr) -> Option<Ty> {
    Some(match &e.kind {
        ExprKind::Int(v) if *v <= u16::MAX as u64 => Ty::U16,
        ExprKind::Int(v) if *v <= u32::MAX as u64 => Ty::U32,
        ExprKind::Int(_) => Ty::U64,
        ExprKind::Bool(_) => Ty::Bool,
        ExprKind::Ip4(_) => Ty::Ip4,
        ExprKind::Ip6(_) => Ty::Ip6,
        ExprKind::Cidr4(..) | ExprKind::Cidr6(..) => Ty::Cidr,
        ExprKind::Mac(_) => Ty::Mac,
        ExprKind::Str(s) => Ty::Str(s.len() as u32),
        _ => return None,
    })
}
