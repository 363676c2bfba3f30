//! The AST as indented text, one node per line with its span: the golden form of parsing.
//!
//! ```text
//! Filter edge @0..60
//!   Hook xdp @15..26
//!     Str "eth0" @19..25
//!   Match drop @33..58
//! ```

use crate::syntax::ast::*;

/// Prints `file` as an indented tree.
pub fn dump(file: &File) -> String {
    let mut p = Printer::default();
    for item in &file.items {
        p.item(item);
    }
    p.out
}

/// Prints one expression as an indented tree.
pub fn dump_expr(e: &Expr) -> String {
    let mut p = Printer::default();
    p.expr(e);
    p.out
}

#[derive(Default)]
struct Printer {
    out: String,
    depth: usize,
}

fn span(s: &Span) -> String {
    format!("@{}..{}", s.start, s.end)
}

fn ty(t: &TypeExpr) -> String {
    match t.param {
        Some(n) => format!("{}<{}>", t.name.name, n),
        None => t.name.name.clone(),
    }
}

fn verdict(a: &Action) -> String {
    let v = match a.verdict {
        Verdict::Pass => "pass",
        Verdict::Drop => "drop",
    };
    match &a.log {
        Some(w) => format!("{v} +{}", w.name),
        None => v.to_string(),
    }
}

impl Printer {
    fn line(&mut self, text: impl AsRef<str>) {
        for _ in 0..self.depth {
            self.out.push_str("  ");
        }
        self.out.push_str(text.as_ref());
        self.out.push('\n');
    }

    fn nested(&mut self, f: impl FnOnce(&mut Self)) {
        self.depth += 1;
        f(self);
        self.depth -= 1;
    }

    fn item(&mut self, item: &Item) {
        match item {
            Item::Import(i) => self.line(format!("Import {} {}", i.path.dotted(), span(&i.span))),
            Item::Const(c) => {
                let t =
                    c.ty.as_ref()
                        .map(|t| format!(": {}", ty(t)))
                        .unwrap_or_default();
                self.line(format!("Const {}{} {}", c.name.name, t, span(&c.span)));
                self.nested(|p| p.expr(&c.value));
            }
            Item::Set(s) => {
                self.line(format!(
                    "Set {}: {} {}",
                    s.name.name,
                    ty(&s.ty),
                    span(&s.span)
                ));
                self.nested(|p| p.expr(&s.value));
            }
            Item::Macro(m) => {
                let kw = if m.list { "List" } else { "Macro" };
                self.line(format!("{kw} {} {}", m.name.name, span(&m.span)));
                self.nested(|p| p.expr(&m.value));
            }
            Item::Filter(f) if !f.header_parsed => {
                self.line(format!("Filter (header did not parse) {}", span(&f.span)));
                self.nested(|p| f.rules.iter().for_each(|r| p.rule(r)));
            }
            Item::Filter(f) => {
                self.line(format!("Filter {} {}", f.name.name, span(&f.span)));
                self.nested(|p| {
                    p.hook(&f.hook);
                    f.rules.iter().for_each(|r| p.rule(r));
                });
            }
            Item::Probe(b) if !b.header_parsed => {
                self.line(format!("Probe (header did not parse) {}", span(&b.span)));
                self.nested(|p| b.body.iter().for_each(|s| p.stmt(s)));
            }
            Item::Rule(b) if !b.header_parsed => {
                self.line(format!("Rule (header did not parse) {}", span(&b.span)));
                self.nested(|p| b.body.iter().for_each(|s| p.stmt(s)));
            }
            Item::Test(t) if !t.header_parsed => {
                self.line(format!("Test (header did not parse) {}", span(&t.span)));
                self.nested(|p| t.cases.iter().for_each(|c| p.case(c)));
            }
            Item::Probe(b) => {
                self.line(format!("Probe {} {}", b.name.name, span(&b.span)));
                self.nested(|p| {
                    p.hook(&b.hook);
                    b.body.iter().for_each(|s| p.stmt(s));
                });
            }
            Item::Rule(b) => {
                self.line(format!("Rule {} {}", b.name.name, span(&b.span)));
                self.nested(|p| {
                    p.hook(&b.hook);
                    b.body.iter().for_each(|s| p.stmt(s));
                });
            }
            Item::Test(t) => {
                self.line(format!(
                    "Test {:?} on {} {}",
                    t.name,
                    t.target.name,
                    span(&t.span)
                ));
                self.nested(|p| t.cases.iter().for_each(|c| p.case(c)));
            }
        }
    }

    fn hook(&mut self, h: &Hook) {
        let parens = if h.args.is_some() { "()" } else { "" };
        self.line(format!("Hook {}{} {}", h.kind.name, parens, span(&h.span)));
        if let Some(args) = &h.args {
            self.nested(|p| args.iter().for_each(|a| p.expr(a)));
        }
    }

    fn counts(&mut self, counts: &[CountClause]) {
        for c in counts {
            self.line(format!("Count {} {}", c.map.name, span(&c.span)));
            if let Some(k) = &c.key {
                self.nested(|p| p.expr(k));
            }
        }
    }

    fn rule(&mut self, r: &FilterRule) {
        match r {
            FilterRule::Match {
                action,
                cond,
                counts,
                span: s,
            } => {
                self.line(format!("Match {} {}", verdict(action), span(s)));
                self.nested(|p| {
                    p.expr(cond);
                    p.counts(counts);
                });
            }
            FilterRule::Default {
                action,
                counts,
                span: s,
            } => {
                self.line(format!("Default {} {}", verdict(action), span(s)));
                self.nested(|p| p.counts(counts));
            }
            FilterRule::Malformed {
                action,
                counts,
                span: s,
            } => {
                self.line(format!("Malformed {} {}", verdict(action), span(s)));
                self.nested(|p| p.counts(counts));
            }
            FilterRule::Option {
                words,
                action,
                span: s,
            } => {
                let w: Vec<&str> = words.iter().map(|w| w.name.as_str()).collect();
                self.line(format!(
                    "Option {} {} {}",
                    w.join(" "),
                    verdict(action),
                    span(s)
                ));
            }
            FilterRule::Error(s) => self.line(format!("ErrorRule {}", span(s))),
        }
    }

    fn stmt(&mut self, s: &Stmt) {
        match s {
            Stmt::Where(e, sp) | Stmt::When(e, sp) | Stmt::Unless(e, sp) | Stmt::Emit(e, sp) => {
                let kw = match s {
                    Stmt::Where(..) => "Where",
                    Stmt::When(..) => "When",
                    Stmt::Unless(..) => "Unless",
                    _ => "Emit",
                };
                self.line(format!("{kw} {}", span(sp)));
                self.nested(|p| p.expr(e));
            }
            Stmt::Count { by, into, span: sp } => {
                match into {
                    Some(into) => self.line(format!("CountInto {} {}", into.name, span(sp))),
                    None => self.line(format!("Count {}", span(sp))),
                }
                self.nested(|p| by.iter().for_each(|e| p.expr(e)));
            }
            Stmt::Aggregate {
                func,
                args,
                by,
                into,
                span: sp,
            } => {
                let into = into.as_ref().map_or("", |i| i.name.as_str());
                self.line(format!("Aggregate {} {into} {}", func.name, span(sp)));
                self.nested(|p| args.iter().chain(by).for_each(|e| p.expr(e)));
            }
            Stmt::Action(es, sp) => {
                self.line(format!("Action {}", span(sp)));
                self.nested(|p| es.iter().for_each(|e| p.expr(e)));
            }
            Stmt::Assign {
                map,
                keys,
                value,
                span: sp,
            } => {
                self.line(format!("Assign {} {}", map.name, span(sp)));
                self.nested(|p| keys.iter().chain([value]).for_each(|e| p.expr(e)));
            }
            Stmt::Command {
                verb,
                maps,
                span: sp,
            } => {
                let names: Vec<&str> = maps.iter().map(|m| m.name.as_str()).collect();
                self.line(format!(
                    "Command {} {} {}",
                    verb.name,
                    names.join(","),
                    span(sp)
                ));
            }
            Stmt::Delete {
                map,
                keys,
                span: sp,
            } => {
                self.line(format!("Delete {} {}", map.name, span(sp)));
                self.nested(|p| keys.iter().for_each(|e| p.expr(e)));
            }
            Stmt::Error(sp) => self.line(format!("ErrorStmt {}", span(sp))),
        }
    }

    fn case(&mut self, c: &TestCase) {
        match c {
            TestCase::Packet {
                layers,
                fields,
                expect,
                counts,
                span: s,
            } => {
                let layers: Vec<&str> = layers.iter().map(|l| l.name.as_str()).collect();
                self.line(format!(
                    "Packet {} => {} {}",
                    layers.join(" "),
                    verdict(expect),
                    span(s)
                ));
                self.nested(|p| {
                    for (name, value) in fields {
                        p.line(format!("Field {} {}", name.name, span(&name.span)));
                        p.nested(|p| p.expr(value));
                    }
                    p.counts(counts);
                });
            }
            TestCase::Error(s) => self.line(format!("ErrorCase {}", span(s))),
        }
    }

    fn expr(&mut self, e: &Expr) {
        let at = span(&e.span);
        match &e.kind {
            ExprKind::Int(n) => self.line(format!("Int {n} {at}")),
            ExprKind::Duration(ns) => self.line(format!("Duration {ns}ns {at}")),
            ExprKind::Str(s) => self.line(format!("Str {s:?} {at}")),
            ExprKind::Bool(b) => self.line(format!("Bool {b} {at}")),
            ExprKind::Ip4(a) => {
                let a = std::net::Ipv4Addr::from(*a);
                self.line(format!("Ip4 {a} {at}"));
            }
            ExprKind::Ip6(a) => {
                let a = std::net::Ipv6Addr::from(*a);
                self.line(format!("Ip6 {a} {at}"));
            }
            ExprKind::Mac(m) => {
                let m: Vec<String> = m.iter().map(|b| format!("{b:02x}")).collect();
                self.line(format!("Mac {} {at}", m.join(":")));
            }
            ExprKind::Cidr4(a, n) => {
                let a = std::net::Ipv4Addr::from(*a);
                self.line(format!("Cidr4 {a}/{n} {at}"));
            }
            ExprKind::Cidr6(a, n) => {
                let a = std::net::Ipv6Addr::from(*a);
                self.line(format!("Cidr6 {a}/{n} {at}"));
            }
            ExprKind::Path(p) => self.line(format!("Path {} {at}", p.dotted())),
            ExprKind::Range(a, b) => {
                self.line(format!("Range {at}"));
                self.nested(|p| {
                    p.expr(a);
                    p.expr(b);
                });
            }
            ExprKind::SetLit(es) => {
                self.line(format!("SetLit {at}"));
                self.nested(|p| es.iter().for_each(|e| p.expr(e)));
            }
            ExprKind::List(es) => {
                self.line(format!("List {at}"));
                self.nested(|p| es.iter().for_each(|e| p.expr(e)));
            }
            ExprKind::Binary(op, a, b) => {
                self.line(format!("Binary {op:?} {at}"));
                self.nested(|p| {
                    p.expr(a);
                    p.expr(b);
                });
            }
            ExprKind::Not(a) => {
                self.line(format!("Not {at}"));
                self.nested(|p| p.expr(a));
            }
            ExprKind::Call(f, args) => {
                self.line(format!("Call {} {at}", f.dotted()));
                self.nested(|p| args.iter().for_each(|e| p.expr(e)));
            }
            ExprKind::Index(m, keys) => {
                self.line(format!("Index {} {at}", m.dotted()));
                self.nested(|p| keys.iter().for_each(|e| p.expr(e)));
            }
            ExprKind::Record(fields) => {
                self.line(format!("Record {at}"));
                self.nested(|p| {
                    for (name, value) in fields {
                        p.line(format!("Field {} {}", name.name, span(&name.span)));
                        if let Some(v) = value {
                            p.nested(|p| p.expr(v));
                        }
                    }
                });
            }
            ExprKind::Error => self.line(format!("Error {at}")),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn prints_nested_expressions() {
        let (file, diags) = crate::syntax::parse("const x = not a == 1 and b");
        assert!(diags.is_empty());
        let text = super::dump(&file);
        assert_eq!(
            text,
            "Const x @0..26\n  Binary And @10..26\n    Not @10..20\n      Binary Eq @14..20\n        Path a @14..15\n        Int 1 @19..20\n    Path b @25..26\n"
        );
    }
}
