//! Declarations: imports of standard-library modules, constants, sets and `file(..)` sets.

use super::{infer, line_starts, no_files, Checker, Decl, NameDef, NameKind, Names};
use crate::diag::Diagnostic;
use crate::hir::values::parse_element;
use crate::hir::{stdlib, Hir, SetDef, Ty, Value};
use crate::syntax::ast::{self, Expr, ExprKind, FileId, Item};
use std::collections::HashMap;

impl Checker<'_> {
    pub(super) fn import(&mut self, imp: &ast::Import) {
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
        let file = stdlib::MODULES
            .iter()
            .find(|m| **m == path)
            .map_or(FileId::Main, |m| FileId::Std(m));
        let mut sub = Checker {
            source: src,
            files: &no_files,
            line_starts: line_starts(src),
            names: HashMap::new(),
            file,
            defs: Names::new(),
            counter_index: HashMap::new(),
            filter_names: Default::default(),
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
            if let Some(def) = sub.defs.get(&name) {
                self.defs.insert(format!("{path}.{name}"), def.clone());
                self.defs.insert(format!("{short}.{name}"), def.clone());
            }
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
        let kind = match &decl {
            Decl::Const(ty, _) => NameKind::Const(*ty),
            Decl::Set(i) => self
                .hir
                .sets
                .get(*i)
                .map_or(NameKind::Poisoned, |s| NameKind::Set(s.elem)),
            Decl::Names(_) => NameKind::Set(Ty::DnsName),
            Decl::Poisoned => NameKind::Poisoned,
        };
        self.defs.insert(
            name.name.clone(),
            NameDef {
                kind,
                file: self.file,
                span: name.span.clone(),
            },
        );
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

    pub(super) fn constant(&mut self, k: &ast::ConstDecl, _prefix: &str) {
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

    pub(super) fn set(&mut self, s: &ast::SetDecl, _prefix: &str) {
        let Some(elem) = self.ty(&s.ty) else {
            return self.declare(&s.name, Decl::Poisoned);
        };
        if elem == Ty::DnsName {
            let decl = match self.name_set(s) {
                Some(i) => Decl::Names(i),
                None => Decl::Poisoned,
            };
            return self.declare(&s.name, decl);
        }
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
        // Bad lines as (line, column), never their text: the file may be anything
        // (`/etc/shadow`), and a diagnostic must not print its secrets.
        let mut bad = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let entry = line.split('#').next().unwrap_or("").trim();
            if entry.is_empty() {
                continue;
            }
            match parse_element(entry, elem) {
                Ok(v) => values.push(v),
                Err(_) => bad.push((n + 1, line.find(entry).unwrap_or(0) + 1)),
            }
        }
        if let Some((line, col)) = bad.first() {
            let more = match bad.len() {
                1 => String::new(),
                n => format!(
                    " (and {} more bad line{})",
                    n - 1,
                    if n == 2 { "" } else { "s" }
                ),
            };
            let mut help =
                "the lines themselves are not shown: the file may not be a list".to_string();
            if bad.len() > 1 {
                let lines: Vec<String> = bad.iter().take(10).map(|(l, _)| l.to_string()).collect();
                help = format!(
                    "bad lines: {}{}; {help}",
                    lines.join(", "),
                    if bad.len() > 10 { ", ..." } else { "" }
                );
            }
            let d = Diagnostic::error(
                "E0407",
                format!("{name}:{line}:{col}: expected {}{more}", expected(elem)),
                call.span.clone(),
            )
            .with_label(format!("read as a set of {elem} from here"))
            .with_help(help);
            self.diags.push(d);
            return None;
        }
        Some(values)
    }
}

/// What a line of a `file(..)` set of `elem` must hold, with an example.
fn expected(elem: Ty) -> String {
    let what = match elem {
        Ty::Ip4 => "an IPv4 address such as 192.0.2.1",
        Ty::Ip6 => "an IPv6 address such as 2001:db8::1",
        Ty::Ip => "an IPv4 or IPv6 address such as 192.0.2.1",
        Ty::Cidr => "an address or prefix such as 192.0.2.0/24 or 2001:db8::/32",
        Ty::Mac => "a MAC address such as 02:00:00:00:00:01",
        Ty::Port => "a port (0..65535) or a range such as 8000..8080",
        _ => return format!("one {elem} value per line"),
    };
    format!("{what}, one per line")
}
