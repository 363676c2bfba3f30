//! Name resolution and type checking of a parsed file into the HIR.
//!
//! Error codes (E03xx names, E04xx types, E05xx filters, L05xx limits):
//! E0301 unknown name, E0302 unknown field, E0303 unknown module, E0304 duplicate name,
//! E0401 type mismatch, E0402 integer out of range, E0403 operator not defined for type,
//! E0404 condition is not a boolean, E0405 bad set element, E0406 unknown type,
//! E0501 unknown hook, E0502 bad hook argument, E0503 missing default,
//! E0504 duplicate default, E0505 rule after default, E0506 count key unusable,
//! E0507 count map used with different keys, E0508 duplicate filter, E0509 test on unknown filter,
//! E0510 a test's expected count names no counter or does not fit its key,
//! L0501 construct not supported yet (probe, rule, regex, L7 fields, set files).

use super::fields::{self, Field, Slot};
use super::values::{net, parse_element};
use super::{
    stdlib, Action, CmpOp, Cond, CounterDef, Filter, Hir, Hook, Rule, SetDef, Test, Ty, Value,
};
use crate::bpf::record::{F_IP4, F_IP6};
use crate::diag::Diagnostic;
use crate::syntax::ast::{self, BinOp, Expr, ExprKind, FilterRule, Item, Span, Verdict};
use std::collections::HashMap;

/// What a name stands for.
#[derive(Debug, Clone)]
enum Decl {
    /// A constant: its type and value(s).
    Const(Ty, Vec<Value>),
    /// A named set: index into `Hir::sets`.
    Set(usize),
    /// A declaration that had errors: uses of it report nothing more.
    Poisoned,
}

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
    hir: Hir,
    diags: Vec<Diagnostic>,
}

/// Checks a parsed file. Never fails: returns the HIR of what checked and every error.
pub fn check(file: &ast::File, source: &str) -> (Hir, Vec<Diagnostic>) {
    check_with(file, source, &no_files)
}

/// `check`, with a reader for the files that `file(..)` sets name.
pub fn check_with(file: &ast::File, source: &str, files: FileReader<'_>) -> (Hir, Vec<Diagnostic>) {
    let mut c = Checker {
        source,
        files,
        line_starts: line_starts(source),
        names: HashMap::new(),
        hir: Hir::default(),
        diags: Vec::new(),
    };
    // Imports and declarations first, so filters may use names declared after them.
    for item in &file.items {
        match item {
            Item::Import(imp) => c.import(imp),
            Item::Const(k) => c.constant(k, ""),
            Item::Set(s) => c.set(s, ""),
            _ => {}
        }
    }
    for item in &file.items {
        match item {
            Item::Filter(f) => c.filter(f),
            Item::Probe(p) => c.diags.push(not_yet(p.span.clone(), "probes")),
            Item::Rule(r) => c.diags.push(not_yet(r.span.clone(), "security rules")),
            // Test blocks are run by `pol test`; they need no code.
            Item::Test(_) | Item::Import(_) | Item::Const(_) | Item::Set(_) => {}
        }
    }
    for item in &file.items {
        if let Item::Test(t) = item {
            let known = file
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
    (c.hir, c.diags)
}

fn line_starts(source: &str) -> Vec<usize> {
    std::iter::once(0)
        .chain(source.match_indices('\n').map(|(i, _)| i + 1))
        .collect()
}

fn not_yet(span: Span, what: &str) -> Diagnostic {
    Diagnostic::error("L0501", format!("{what} are not supported yet"), span)
        .with_label("parsed, but this compiler cannot lower it yet")
        .with_help("filters (`filter NAME on xdp(..)` / `tc(..)`) are supported today")
}

impl Checker<'_> {
    fn import(&mut self, imp: &ast::Import) {
        let path = imp.path.dotted();
        let Some(src) = stdlib::module(&path) else {
            let mut d = Diagnostic::error(
                "E0303",
                format!("unknown module `{path}`"),
                imp.path.span.clone(),
            )
            .with_label("no such module");
            d = d.with_help(format!(
                "the standard library has: {}",
                stdlib::MODULES.join(", ")
            ));
            self.diags.push(d);
            return;
        };
        let (ast, diags) = crate::syntax::parse(src);
        if crate::diag::has_errors(&diags) {
            self.diags.push(Diagnostic::error(
                "I0001",
                format!("internal error: stdlib module `{path}` does not parse"),
                imp.span.clone(),
            ));
            return;
        }
        // Declarations of a module are checked against its own text, then renamed.
        let short = path.rsplit('.').next().unwrap_or(&path).to_string();
        let mut sub = Checker {
            source: src,
            files: &no_files,
            line_starts: line_starts(src),
            names: HashMap::new(),
            hir: Hir::default(),
            diags: Vec::new(),
        };
        for item in &ast.items {
            match item {
                Item::Const(k) => sub.constant(k, ""),
                Item::Set(s) => sub.set(s, ""),
                _ => {}
            }
        }
        if crate::diag::has_errors(&sub.diags) {
            self.diags.push(Diagnostic::error(
                "I0001",
                format!("internal error: stdlib module `{path}` does not check"),
                imp.span.clone(),
            ));
            return;
        }
        // Sorted, so that sets (and the maps made of them) come out in a stable order.
        let mut decls: Vec<_> = sub.names.into_iter().collect();
        decls.sort_by(|a, b| a.0.cmp(&b.0));
        for (name, (decl, _)) in decls {
            let decl = match decl {
                Decl::Set(i) => {
                    let mut set = sub.hir.sets[i].clone();
                    set.name = format!("{short}_{}", set.name);
                    set.span = imp.span.clone();
                    self.hir.sets.push(set);
                    Decl::Set(self.hir.sets.len() - 1)
                }
                other => other,
            };
            self.names
                .insert(format!("{path}.{name}"), (decl.clone(), imp.span.clone()));
            self.names
                .insert(format!("{short}.{name}"), (decl, imp.span.clone()));
        }
    }

    fn declare(&mut self, name: &ast::Ident, decl: Decl) {
        if let Some((_, prev)) = self.names.get(&name.name) {
            let d = Diagnostic::error(
                "E0304",
                format!("`{}` is declared twice", name.name),
                name.span.clone(),
            )
            .with_label("declared again here")
            .with_secondary(prev.clone(), "first declared here");
            self.diags.push(d);
            return;
        }
        self.names
            .insert(name.name.clone(), (decl, name.span.clone()));
    }

    fn ty(&mut self, t: &ast::TypeExpr) -> Option<Ty> {
        let ty = Ty::from_name(&t.name.name, t.param);
        if ty.is_none() {
            self.diags.push(
                Diagnostic::error(
                    "E0406",
                    format!("unknown type `{}`", t.name.name),
                    t.span.clone(),
                )
                .with_label("not a type")
                .with_help(
                    "types are bool, u8, u16, u32, u64, port, ip4, ip6, ip, cidr, str<N>, bytes<N>",
                ),
            );
        }
        ty
    }

    fn constant(&mut self, k: &ast::ConstDecl, _prefix: &str) {
        let ty = match &k.ty {
            Some(t) => match self.ty(t) {
                Some(t) => t,
                None => return,
            },
            None => match infer(&k.value) {
                Some(t) => t,
                None => {
                    self.diags.push(
                        Diagnostic::error(
                            "E0401",
                            "cannot tell the type of this constant",
                            k.value.span.clone(),
                        )
                        .with_label("write its type: `const NAME: TYPE = ...`"),
                    );
                    return;
                }
            },
        };
        match self.values(&k.value, ty, false) {
            Some(v) => self.declare(&k.name, Decl::Const(ty, v)),
            None => self.declare(&k.name, Decl::Poisoned),
        }
    }

    fn set(&mut self, s: &ast::SetDecl, _prefix: &str) {
        let Some(elem) = self.ty(&s.ty) else {
            return self.declare(&s.name, Decl::Poisoned);
        };
        let values = match &s.value.kind {
            ExprKind::Call(p, args) if p.dotted() == "file" => {
                match self.file_set(&s.value, args, elem) {
                    Some(v) => v,
                    None => return self.declare(&s.name, Decl::Poisoned),
                }
            }
            _ => match self.values(&s.value, elem, true) {
                Some(v) => v,
                None => return self.declare(&s.name, Decl::Poisoned),
            },
        };
        self.hir.sets.push(SetDef {
            name: s.name.name.clone(),
            elem,
            values,
            span: s.span.clone(),
        });
        let i = self.hir.sets.len() - 1;
        self.declare(&s.name, Decl::Set(i));
    }

    /// Evaluates a constant expression of element type `ty` to its values. `many` allows
    /// a set literal or a named set.
    fn values(&mut self, e: &Expr, ty: Ty, many: bool) -> Option<Vec<Value>> {
        match &e.kind {
            ExprKind::SetLit(items) if many => {
                let mut out = Vec::new();
                let mut ok = true;
                for it in items {
                    match self.values(it, ty, false) {
                        Some(v) => out.extend(v),
                        None => ok = false,
                    }
                }
                ok.then_some(out)
            }
            ExprKind::Path(p) => match self.names.get(&p.dotted()).cloned() {
                Some((Decl::Const(cty, v), _)) => {
                    if compatible(ty, cty) {
                        Some(v)
                    } else {
                        self.mismatch(e, ty, cty);
                        None
                    }
                }
                Some((Decl::Set(i), _)) if many => {
                    let set = &self.hir.sets[i];
                    if compatible(ty, set.elem) {
                        Some(set.values.clone())
                    } else {
                        let (elem, name) = (set.elem, set.name.clone());
                        self.diags.push(
                            Diagnostic::error(
                                "E0401",
                                format!("set `{name}` holds {elem}, not {ty}"),
                                e.span.clone(),
                            )
                            .with_label(format!("a set of {elem}")),
                        );
                        None
                    }
                }
                Some((Decl::Poisoned, _)) => None,
                Some((Decl::Set(_), _)) => {
                    self.diags.push(
                        Diagnostic::error(
                            "E0405",
                            "a set cannot be an element of a set",
                            e.span.clone(),
                        )
                        .with_label("this is a set"),
                    );
                    None
                }
                None => {
                    self.unknown_name(p);
                    None
                }
            },
            ExprKind::Range(lo, hi) if ty.is_int() => {
                let lo_v = self.int_lit(lo, ty)?;
                let hi_v = self.int_lit(hi, ty)?;
                if lo_v > hi_v {
                    self.diags.push(
                        Diagnostic::error(
                            "E0405",
                            format!("empty range: {lo_v} is greater than {hi_v}"),
                            e.span.clone(),
                        )
                        .with_label("this range holds nothing"),
                    );
                    return None;
                }
                Some(vec![Value::Int { lo: lo_v, hi: hi_v }])
            }
            ExprKind::Int(_) if ty.is_int() => {
                let v = self.int_lit(e, ty)?;
                Some(vec![Value::Int { lo: v, hi: v }])
            }
            ExprKind::Bool(b) if ty == Ty::Bool => Some(vec![Value::Int {
                lo: *b as u64,
                hi: *b as u64,
            }]),
            ExprKind::Ip4(_) | ExprKind::Cidr4(..) | ExprKind::Ip6(_) | ExprKind::Cidr6(..)
                if address_fits(&e.kind, ty) =>
            {
                let (v6, addr, prefix) = match e.kind {
                    ExprKind::Ip4(a) => (false, a.to_vec(), 32),
                    ExprKind::Cidr4(a, p) => (false, a.to_vec(), p),
                    ExprKind::Ip6(a) => (true, a.to_vec(), 128),
                    ExprKind::Cidr6(a, p) => (true, a.to_vec(), p),
                    _ => return None,
                };
                let full = if v6 { 128 } else { 32 };
                if prefix != full && ty != Ty::Cidr {
                    return self.prefix_in_addr(e, ty);
                }
                let mut bytes = [0u8; 16];
                bytes[..addr.len()].copy_from_slice(&addr);
                Some(vec![net(v6, bytes, prefix)])
            }
            ExprKind::Error => None,
            _ => {
                match infer(e) {
                    Some(found) => self.mismatch(e, ty, found),
                    None => self.diags.push(
                        Diagnostic::error(
                            "E0405",
                            format!("expected a {ty} value here"),
                            e.span.clone(),
                        )
                        .with_label("not a constant value"),
                    ),
                }
                None
            }
        }
    }

    /// `=> drop count NAME[KEY]` in a test: the counter exists and the key fits it.
    fn test_count(&mut self, count: &ast::CountClause) {
        let Some(counter) = self.hir.counters.iter().find(|k| k.name == count.map.name) else {
            let mut d = Diagnostic::error(
                "E0510",
                format!("no filter of this file counts into `{}`", count.map.name),
                count.map.span.clone(),
            )
            .with_label("unknown counter");
            if let Some(k) = self
                .hir
                .counters
                .iter()
                .find(|k| fields::edit_distance(&k.name, &count.map.name) <= 2)
            {
                d = d.with_help(format!("did you mean `{}`?", k.name));
            }
            self.diags.push(d);
            return;
        };
        match (counter.key, &count.key) {
            (None, None) => {}
            (Some(f), Some(k)) => {
                let ty = if f.ty.is_addr() { Ty::Ip } else { f.ty };
                if self.values(k, ty, false).is_none() {
                    return;
                }
                let fam_ok = !matches!(
                    (f.ty, &k.kind),
                    (Ty::Ip4, ExprKind::Ip6(_)) | (Ty::Ip6, ExprKind::Ip4(_))
                );
                if !fam_ok {
                    self.diags.push(
                        Diagnostic::error(
                            "E0510",
                            format!("`{}` is keyed by `{}` ({})", count.map.name, f.name, f.ty),
                            k.span.clone(),
                        )
                        .with_label("wrong address family"),
                    );
                }
            }
            (Some(f), None) => self.diags.push(
                Diagnostic::error(
                    "E0510",
                    format!(
                        "`{}` counts per `{}`: say which entry",
                        count.map.name, f.name
                    ),
                    count.span.clone(),
                )
                .with_label(format!("write `count {}[VALUE]`", count.map.name)),
            ),
            (None, Some(k)) => self.diags.push(
                Diagnostic::error(
                    "E0510",
                    format!("`{}` is a plain counter, without keys", count.map.name),
                    k.span.clone(),
                )
                .with_label("remove the key"),
            ),
        }
    }

    /// The values of `file("NAME")`: one element per line, `#` starts a comment.
    fn file_set(&mut self, call: &Expr, args: &[Expr], elem: Ty) -> Option<Vec<Value>> {
        let name = match args {
            [Expr {
                kind: ExprKind::Str(n),
                ..
            }] => n.clone(),
            _ => {
                self.diags.push(
                    Diagnostic::error(
                        "E0408",
                        "`file` takes one string: the file's name",
                        call.span.clone(),
                    )
                    .with_label("expected `file(\"NAME\")`"),
                );
                return None;
            }
        };
        let text = match (self.files)(&name) {
            Ok(t) => t,
            Err(why) => {
                self.diags.push(
                    Diagnostic::error(
                        "E0408",
                        format!("cannot read `{name}`: {why}"),
                        call.span.clone(),
                    )
                    .with_label("the set's elements come from here")
                    .with_help("the name is relative to the directory of the .pol file"),
                );
                return None;
            }
        };
        let mut values = Vec::new();
        let mut bad = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let entry = line.split('#').next().unwrap_or("").trim();
            if entry.is_empty() {
                continue;
            }
            match parse_element(entry, elem) {
                Ok(v) => values.push(v),
                Err(why) => {
                    let col = line.find(entry).unwrap_or(0) + 1;
                    bad.push(format!("{name}:{}:{col}: `{entry}` {why}", n + 1));
                }
            }
        }
        if let Some(first) = bad.first() {
            let more = match bad.len() {
                1 => String::new(),
                n => format!(
                    " (and {} more bad line{})",
                    n - 1,
                    if n == 2 { "" } else { "s" }
                ),
            };
            let mut d = Diagnostic::error("E0407", format!("{first}{more}"), call.span.clone())
                .with_label(format!("read as a set of {elem} from here"));
            if bad.len() > 1 {
                d = d.with_help(bad.iter().take(10).cloned().collect::<Vec<_>>().join("\n"));
            }
            self.diags.push(d);
            return None;
        }
        Some(values)
    }

    fn prefix_in_addr(&mut self, e: &Expr, ty: Ty) -> Option<Vec<Value>> {
        self.diags.push(
            Diagnostic::error(
                "E0401",
                format!("a prefix is not a single {ty} address"),
                e.span.clone(),
            )
            .with_label("this is a prefix")
            .with_help("declare the set as `cidr` to hold prefixes"),
        );
        None
    }

    fn int_lit(&mut self, e: &Expr, ty: Ty) -> Option<u64> {
        let v = match &e.kind {
            ExprKind::Int(v) => *v,
            ExprKind::Path(_) => match self.values(e, ty, false)?.first() {
                Some(Value::Int { lo, hi }) if lo == hi => *lo,
                _ => {
                    self.diags.push(
                        Diagnostic::error("E0405", "expected a single integer", e.span.clone())
                            .with_label("not a single integer"),
                    );
                    return None;
                }
            },
            ExprKind::Error => return None,
            _ => {
                let found = infer(e);
                match found {
                    Some(f) => self.mismatch(e, ty, f),
                    None => self.diags.push(
                        Diagnostic::error(
                            "E0405",
                            format!("expected a {ty} value here"),
                            e.span.clone(),
                        )
                        .with_label("not a constant value"),
                    ),
                }
                return None;
            }
        };
        let max = ty.int_max().unwrap_or(u64::MAX);
        if v > max {
            self.diags.push(
                Diagnostic::error("E0402", format!("{v} does not fit in {ty}"), e.span.clone())
                    .with_label(format!("the largest {ty} is {max}")),
            );
            return None;
        }
        Some(v)
    }

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
        } else if let Some(f) = fields::suggest(&name) {
            d = d.with_help(format!("did you mean the field `{f}`?"));
        }
        self.diags.push(d);
    }

    fn filter(&mut self, f: &ast::Filter) {
        if self.hir.filters.iter().any(|g| g.name == f.name.name) {
            self.diags.push(
                Diagnostic::error(
                    "E0508",
                    format!("filter `{}` is declared twice", f.name.name),
                    f.name.span.clone(),
                )
                .with_label("second filter of that name"),
            );
            return;
        }
        let hook = self.hook(&f.hook);
        let mut rules = Vec::new();
        let mut default: Option<(Action, Span)> = None;
        let mut malformed = None;
        for r in &f.rules {
            match r {
                FilterRule::Match {
                    action,
                    cond,
                    counts,
                    span,
                } => {
                    if let Some((_, dspan)) = &default {
                        self.diags.push(
                            Diagnostic::error(
                                "E0505",
                                "this rule comes after `default` and is never reached",
                                span.clone(),
                            )
                            .with_label("unreachable")
                            .with_secondary(
                                dspan.clone(),
                                "every packet that gets here stops at this default",
                            ),
                        );
                        continue;
                    }
                    let c = self.cond(cond);
                    let a = self.action(action.verdict, counts, false);
                    if let (Some(cond), Some(action)) = (c, a) {
                        let line = self.line_starts.partition_point(|&s| s <= span.start) as u32;
                        let text = self
                            .source
                            .get(span.clone())
                            .unwrap_or("")
                            .split_whitespace()
                            .collect::<Vec<_>>()
                            .join(" ");
                        rules.push(Rule {
                            index: rules.len() as u32,
                            cond,
                            action,
                            span: span.clone(),
                            line,
                            text,
                        });
                    }
                }
                FilterRule::Default {
                    action,
                    counts,
                    span,
                } => {
                    if let Some((_, prev)) = &default {
                        self.diags.push(
                            Diagnostic::error("E0504", "a filter has one `default`", span.clone())
                                .with_label("second default")
                                .with_secondary(prev.clone(), "first default here"),
                        );
                        continue;
                    }
                    if let Some(a) = self.action(action.verdict, counts, false) {
                        default = Some((a, span.clone()));
                    }
                }
                FilterRule::Malformed { action, counts, .. } => {
                    malformed = self.action(action.verdict, counts, true);
                }
                FilterRule::Error(_) => {}
            }
        }
        let Some((default, _)) = default else {
            self.diags.push(
                Diagnostic::error(
                    "E0503",
                    format!("filter `{}` has no `default`", f.name.name),
                    f.name.span.clone(),
                )
                .with_label("what happens to a packet no rule matches?")
                .with_help("end the filter with `default pass` or `default drop`"),
            );
            return;
        };
        let Some(hook) = hook else { return };
        self.hir.filters.push(Filter {
            name: f.name.name.clone(),
            hook,
            rules,
            default,
            malformed: malformed.unwrap_or(Action {
                verdict: Verdict::Drop,
                counts: vec![],
            }),
            span: f.span.clone(),
        });
    }

    fn hook(&mut self, h: &ast::Hook) -> Option<Hook> {
        let args = h.args.as_deref().unwrap_or(&[]);
        let iface = |c: &mut Self| -> Option<String> {
            match args.first().map(|a| &a.kind) {
                Some(ExprKind::Str(s)) if valid_iface(s) => Some(s.clone()),
                Some(ExprKind::Str(s)) => {
                    c.diags.push(
                        Diagnostic::error(
                            "E0502",
                            format!("`{s}` is not a valid interface name"),
                            args[0].span.clone(),
                        )
                        .with_label("1 to 15 characters, no `/`, `:` or white space"),
                    );
                    None
                }
                _ => {
                    c.diags.push(
                        Diagnostic::error(
                            "E0502",
                            format!("`{}` needs an interface name", h.kind.name),
                            h.span.clone(),
                        )
                        .with_label("missing interface")
                        .with_help(format!(
                            "write `{}(\"eth0\"{})`",
                            h.kind.name,
                            if h.kind.name == "tc" { ", ingress" } else { "" }
                        )),
                    );
                    None
                }
            }
        };
        match h.kind.name.as_str() {
            "xdp" => {
                let i = iface(self)?;
                if let Some(extra) = args.get(1) {
                    self.diags.push(
                        Diagnostic::error(
                            "E0502",
                            "`xdp` takes one argument, the interface",
                            extra.span.clone(),
                        )
                        .with_label("unexpected argument"),
                    );
                    return None;
                }
                Some(Hook::Xdp { iface: i })
            }
            "tc" => {
                let i = iface(self)?;
                let dir = match args.get(1).map(|a| &a.kind) {
                    Some(ExprKind::Path(p)) if p.dotted() == "ingress" => true,
                    Some(ExprKind::Path(p)) if p.dotted() == "egress" => false,
                    Some(_) => {
                        self.diags.push(
                            Diagnostic::error(
                                "E0502",
                                "the direction of `tc` is `ingress` or `egress`",
                                args[1].span.clone(),
                            )
                            .with_label("not a direction"),
                        );
                        return None;
                    }
                    None => {
                        self.diags.push(
                            Diagnostic::error("E0502", "`tc` needs a direction", h.span.clone())
                                .with_label("missing `ingress` or `egress`")
                                .with_help(format!("write `tc(\"{i}\", ingress)`")),
                        );
                        return None;
                    }
                };
                Some(Hook::Tc {
                    iface: i,
                    ingress: dir,
                })
            }
            other => {
                self.diags.push(
                    Diagnostic::error(
                        "E0501",
                        format!("a filter cannot attach to `{other}`"),
                        h.kind.span.clone(),
                    )
                    .with_label("unknown hook for a filter")
                    .with_help(
                        "filters attach to `xdp(\"IFACE\")` or `tc(\"IFACE\", ingress|egress)`",
                    ),
                );
                None
            }
        }
    }

    fn action(
        &mut self,
        verdict: Verdict,
        counts: &[ast::CountClause],
        malformed: bool,
    ) -> Option<Action> {
        let mut out = Vec::new();
        let mut ok = true;
        for c in counts {
            let key = match &c.key {
                None => None,
                Some(k) => {
                    let field = match &k.kind {
                        ExprKind::Path(p) => self.field(p),
                        _ => None,
                    };
                    match field {
                        Some(f) if malformed => {
                            self.diags.push(
                                Diagnostic::error(
                                    "E0506",
                                    format!("`{}` cannot key a count of malformed packets", f.name),
                                    k.span.clone(),
                                )
                                .with_label("a malformed packet's fields were not parsed")
                                .with_help("count malformed packets with a plain `count NAME`"),
                            );
                            ok = false;
                            continue;
                        }
                        Some(f) if matches!(f.slot, Slot::Int { .. } | Slot::Addr { .. }) => {
                            Some(f)
                        }
                        Some(f) => {
                            self.diags.push(
                                Diagnostic::error(
                                    "E0506",
                                    format!("`{}` cannot key a count", f.name),
                                    k.span.clone(),
                                )
                                .with_label(format!("a {} field", f.ty))
                                .with_help("count by an address, port or integer field"),
                            );
                            ok = false;
                            continue;
                        }
                        None => {
                            if !matches!(k.kind, ExprKind::Path(_)) {
                                self.diags.push(
                                    Diagnostic::error(
                                        "E0506",
                                        "a count is keyed by a packet field",
                                        k.span.clone(),
                                    )
                                    .with_label("not a field"),
                                );
                            }
                            ok = false;
                            continue;
                        }
                    }
                }
            };
            match self.hir.counters.iter().position(|d| d.name == c.map.name) {
                Some(i)
                    if self.hir.counters[i].key.map(|f| f.slot) != key.map(|f| f.slot)
                        || self.hir.counters[i].key.map(|f| f.ty) != key.map(|f| f.ty) =>
                {
                    let prev = &self.hir.counters[i];
                    let say = |k: Option<&Field>| {
                        k.map(|f| format!("keyed by `{}`", f.name))
                            .unwrap_or_else(|| "without a key".into())
                    };
                    let d = Diagnostic::error(
                        "E0507",
                        format!("count `{}` is used with different keys", c.map.name),
                        c.span.clone(),
                    )
                    .with_label(say(key))
                    .with_secondary(prev.span.clone(), say(prev.key));
                    self.diags.push(d);
                    ok = false;
                }
                Some(i) => out.push(i),
                None => {
                    if self.names.contains_key(&c.map.name) {
                        self.diags.push(
                            Diagnostic::error(
                                "E0304",
                                format!("`{}` is already a set or constant", c.map.name),
                                c.map.span.clone(),
                            )
                            .with_label("pick another name for this count"),
                        );
                        ok = false;
                        continue;
                    }
                    self.hir.counters.push(CounterDef {
                        name: c.map.name.clone(),
                        key,
                        span: c.span.clone(),
                    });
                    out.push(self.hir.counters.len() - 1);
                }
            }
        }
        ok.then_some(Action {
            verdict,
            counts: out,
        })
    }

    fn field(&mut self, p: &ast::Path) -> Option<&'static Field> {
        let name = p.dotted();
        if let Some(f) = fields::lookup(&name) {
            return Some(f);
        }
        if self.names.contains_key(&name) {
            self.diags.push(
                Diagnostic::error(
                    "E0302",
                    format!("`{name}` is a set or constant, not a packet field"),
                    p.span.clone(),
                )
                .with_label("expected a field such as `ip.src` or `tcp.dport`"),
            );
            return None;
        }
        let head = p.segments.first().map(|s| s.name.as_str()).unwrap_or("");
        if matches!(head, "http" | "dns" | "tls") {
            self.diags.push(
                Diagnostic::error(
                    "L0501",
                    format!("L7 fields (`{head}.*`) are not supported yet"),
                    p.span.clone(),
                )
                .with_label("filters test L2–L4 fields today"),
            );
            return None;
        }
        let mut d = Diagnostic::error("E0302", format!("unknown field `{name}`"), p.span.clone())
            .with_label("no such packet field");
        if let Some(s) = fields::suggest(&name) {
            d = d.with_help(format!("did you mean `{s}`?"));
        }
        self.diags.push(d);
        None
    }

    fn cond(&mut self, e: &Expr) -> Option<Cond> {
        match &e.kind {
            ExprKind::Binary(BinOp::And, a, b) | ExprKind::Binary(BinOp::Or, a, b) => {
                let (x, y) = (self.cond(a), self.cond(b));
                let (x, y) = (x?, y?);
                Some(if matches!(e.kind, ExprKind::Binary(BinOp::And, ..)) {
                    Cond::And(vec![x, y])
                } else {
                    Cond::Or(vec![x, y])
                })
            }
            ExprKind::Not(a) => Some(Cond::Not(Box::new(self.cond(a)?))),
            ExprKind::Bool(b) => Some(Cond::Const(*b)),
            ExprKind::Path(p) => {
                if let Some((Decl::Const(Ty::Bool, v), _)) = self.names.get(&p.dotted()) {
                    return Some(Cond::Const(matches!(
                        v.first(),
                        Some(Value::Int { lo: 1, .. })
                    )));
                }
                let f = self.field(p)?;
                match f.slot {
                    Slot::Flag(bit) => Some(Cond::Test(Test::Layer(bit))),
                    Slot::Bits { mask, .. } => Some(Cond::Test(Test::Bits { field: f, mask })),
                    _ => {
                        self.diags.push(
                            Diagnostic::error(
                                "E0404",
                                format!("`{}` is a {}, not a condition", f.name, f.ty),
                                e.span.clone(),
                            )
                            .with_label("compare it: `==`, `!=`, `<`, `in`"),
                        );
                        None
                    }
                }
            }
            ExprKind::Binary(op, lhs, rhs) => self.compare(e, *op, lhs, rhs),
            ExprKind::Error => None,
            _ => {
                self.diags.push(
                    Diagnostic::error("E0404", "this is not a condition", e.span.clone())
                        .with_label("expected a test of a packet field, e.g. `tcp.dport == 22`"),
                );
                None
            }
        }
    }

    fn compare(&mut self, e: &Expr, op: BinOp, lhs: &Expr, rhs: &Expr) -> Option<Cond> {
        if op == BinOp::Match {
            self.diags.push(
                Diagnostic::error(
                    "L0501",
                    "regular-expression matches (`~`) are not supported yet",
                    e.span.clone(),
                )
                .with_label("needs L7 parsing"),
            );
            return None;
        }
        let ExprKind::Path(p) = &lhs.kind else {
            let mut d = Diagnostic::error(
                "E0403",
                "a comparison starts with a packet field",
                lhs.span.clone(),
            )
            .with_label("expected a field such as `tcp.dport`");
            if matches!(rhs.kind, ExprKind::Path(_)) {
                d = d.with_help("swap the two sides: `FIELD == VALUE`");
            }
            self.diags.push(d);
            return None;
        };
        let f = self.field(p)?;
        let ty = f.ty;
        if op == BinOp::In {
            return self.membership(f, rhs);
        }
        let cmp = match op {
            BinOp::Eq => CmpOp::Eq,
            BinOp::Ne => CmpOp::Ne,
            BinOp::Lt => CmpOp::Lt,
            BinOp::Le => CmpOp::Le,
            BinOp::Gt => CmpOp::Gt,
            _ => CmpOp::Ge,
        };
        if ty.is_addr() {
            if !matches!(cmp, CmpOp::Eq | CmpOp::Ne) {
                self.diags.push(
                    Diagnostic::error(
                        "E0403",
                        format!(
                            "addresses are not ordered: `{}` cannot be compared with `<` or `>`",
                            f.name
                        ),
                        e.span.clone(),
                    )
                    .with_label("use `==`, `!=` or `in PREFIX`"),
                );
                return None;
            }
            let vals = self.values(rhs, Ty::Cidr, false)?;
            let c = self.net_tests(f, &vals, rhs)?;
            return Some(if cmp == CmpOp::Ne {
                negate_in_layer(f, c)
            } else {
                c
            });
        }
        if ty == Ty::Bool {
            let v = self.values(rhs, Ty::Bool, false)?;
            let want = matches!(v.first(), Some(Value::Int { lo: 1, .. })) == (cmp == CmpOp::Eq);
            if !matches!(cmp, CmpOp::Eq | CmpOp::Ne) {
                self.diags.push(
                    Diagnostic::error(
                        "E0403",
                        "booleans are compared with `==` or `!=`",
                        e.span.clone(),
                    )
                    .with_label("not ordered"),
                );
                return None;
            }
            let t = self.cond(lhs)?;
            return Some(if want { t } else { negate_in_layer(f, t) });
        }
        let v = self.int_lit(rhs, ty)?;
        Some(Cond::Test(Test::Int {
            field: f,
            op: cmp,
            value: v,
        }))
    }

    fn membership(&mut self, f: &'static Field, rhs: &Expr) -> Option<Cond> {
        let elem = if f.ty.is_addr() { Ty::Cidr } else { f.ty };
        if let ExprKind::Path(p) = &rhs.kind {
            if let Some((Decl::Poisoned, _)) = self.names.get(&p.dotted()) {
                return None;
            }
            if let Some((Decl::Set(i), _)) = self.names.get(&p.dotted()).cloned() {
                let set_elem = self.hir.sets[i].elem;
                if !compatible(elem, set_elem) {
                    self.diags.push(
                        Diagnostic::error(
                            "E0401",
                            format!(
                                "`{}` is {}, but set `{}` holds {}",
                                f.name,
                                f.ty,
                                p.dotted(),
                                set_elem
                            ),
                            rhs.span.clone(),
                        )
                        .with_label(format!("a set of {set_elem}")),
                    );
                    return None;
                }
                return Some(Cond::Test(Test::InSet { field: f, set: i }));
            }
        }
        if f.ty == Ty::Bool {
            self.diags.push(
                Diagnostic::error(
                    "E0403",
                    format!("`in` is not defined for {}", f.ty),
                    rhs.span.clone(),
                )
                .with_label("not a set of booleans"),
            );
            return None;
        }
        let many = matches!(rhs.kind, ExprKind::SetLit(_));
        let vals = self.values(rhs, elem, many)?;
        if f.ty.is_addr() {
            return self.net_tests(f, &vals, rhs);
        }
        let tests = vals
            .iter()
            .map(|v| match *v {
                Value::Int { lo, hi } if lo == hi => Cond::Test(Test::Int {
                    field: f,
                    op: CmpOp::Eq,
                    value: lo,
                }),
                Value::Int { lo, hi } => Cond::And(vec![
                    Cond::Test(Test::Int {
                        field: f,
                        op: CmpOp::Ge,
                        value: lo,
                    }),
                    Cond::Test(Test::Int {
                        field: f,
                        op: CmpOp::Le,
                        value: hi,
                    }),
                ]),
                Value::Net { .. } => Cond::Const(false),
            })
            .collect();
        Some(Cond::Or(tests))
    }

    /// Tests of an address field against prefixes; prefixes of a family the field cannot
    /// hold are an error when none fits, else silently never match.
    fn net_tests(&mut self, f: &'static Field, vals: &[Value], at: &Expr) -> Option<Cond> {
        let fits = |v: &Value| match (v, f.layer) {
            (Value::Net { v6: true, .. }, l) => l & F_IP6 != 0,
            (Value::Net { v6: false, .. }, l) => l & F_IP4 != 0,
            _ => false,
        };
        if !vals.is_empty() && !vals.iter().any(fits) {
            let fam = if f.layer & F_IP4 != 0 { "IPv4" } else { "IPv6" };
            self.diags.push(
                Diagnostic::error(
                    "E0401",
                    format!(
                        "`{}` is an {fam} address; nothing here can match it",
                        f.name
                    ),
                    at.span.clone(),
                )
                .with_label("wrong address family"),
            );
            return None;
        }
        Some(Cond::Or(
            vals.iter()
                .filter(|v| fits(v))
                .map(|v| Cond::Test(Test::Net { field: f, net: *v }))
                .collect(),
        ))
    }
}

/// `not (field test)` that still requires the field's layer: `tcp.dport != 22` is false for
/// UDP, as in nftables.
fn negate_in_layer(f: &Field, c: Cond) -> Cond {
    let not = Cond::Not(Box::new(c));
    if f.always_present() {
        not
    } else {
        Cond::And(vec![Cond::Test(Test::Layer(f.layer)), not])
    }
}

/// Whether an address literal of this kind can be a value of type `ty`.
fn address_fits(kind: &ExprKind, ty: Ty) -> bool {
    match kind {
        ExprKind::Ip4(_) | ExprKind::Cidr4(..) => matches!(ty, Ty::Ip4 | Ty::Ip | Ty::Cidr),
        _ => matches!(ty, Ty::Ip6 | Ty::Ip | Ty::Cidr),
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
        ExprKind::Str(s) => Ty::Str(s.len() as u32),
        _ => return None,
    })
}

fn valid_iface(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 15
        && !s.chars().any(|c| c == '/' || c == ':' || c.is_whitespace())
        && s != "."
        && s != ".."
}
