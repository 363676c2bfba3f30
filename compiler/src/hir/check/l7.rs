//! Conditions on DNS and TLS fields (issue 13): `dns.qname` and `tls.sni` against names
//! and wildcard suffixes, `dns.qtype`, `dns.rcode`, `dns.response`, `tls.version`, and
//! `dns` / `tls` themselves; sets of names (`set NAME: dnsname = ...`).
//!
//! Errors: E0560 a malformed name pattern, E0561 an operator or operand a DNS or TLS
//! field does not take, E0562 an unknown DNS or TLS field, E0563 an empty ALPN protocol;
//! limits: L0516 an ALPN protocol longer than the map's key, L0517 too many ALPN tests.

use super::conditions::cmp_op;
use super::{Checker, Decl};
use crate::diag::{suggest, Diagnostic};
use crate::hir::{CmpOp, Cond, Test};
use crate::l7::{self, dns, tls};
use crate::syntax::ast::{self, BinOp, Expr, ExprKind};

/// Whether the path names a DNS or TLS field (`dns`, `dns.*`, `tls`, `tls.*`).
pub(super) fn is_dns(p: &ast::Path) -> bool {
    p.segments
        .first()
        .is_some_and(|s| s.name == "dns" || s.name == "tls")
}

fn is_tls(p: &ast::Path) -> bool {
    p.segments.first().is_some_and(|s| s.name == "tls")
}

fn test(t: l7::L7Test) -> Cond {
    Cond::Test(Test::L7(t))
}

impl Checker<'_> {
    /// `dns` or `dns.response` as a condition.
    pub(super) fn dns_flag(&mut self, e: &Expr, p: &ast::Path) -> Option<Cond> {
        match p.dotted().as_str() {
            "dns" => Some(test(l7::L7Test::Dns)),
            "tls" => Some(test(l7::L7Test::Tls)),
            "dns.response" => Some(self.dns_int(dns::Field::Response, CmpOp::Eq, 1)),
            name => {
                if self.dns_field_known(p) {
                    self.diags.push(
                        Diagnostic::error(
                            "E0561",
                            format!("`{name}` is not a condition"),
                            e.span.clone(),
                        )
                        .with_label("compare it: `==`, `!=`, `in`"),
                    );
                }
                None
            }
        }
    }

    /// `dns.FIELD OP VALUE`.
    pub(super) fn dns_compare(
        &mut self,
        e: &Expr,
        op: BinOp,
        p: &ast::Path,
        rhs: &Expr,
    ) -> Option<Cond> {
        if !self.dns_field_known(p) {
            return None;
        }
        let name = p.dotted();
        if name == "dns.qname" || name == "tls.sni" {
            return self.qname(e, op, rhs, name == "tls.sni");
        }
        if name == "tls.version" {
            return self.tls_version(e, op, rhs);
        }
        if name == "tls.alpn" {
            return self.tls_alpn(e, op, rhs);
        }
        if is_tls(p) {
            self.diags.push(
                Diagnostic::error("E0561", "`tls` is a condition, not a value", e.span.clone())
                    .with_label("write `tls` alone, or test `tls.sni` or `tls.version`"),
            );
            return None;
        }
        let Some(field) = dns::Field::by_name(&name) else {
            self.diags.push(
                Diagnostic::error("E0561", "`dns` is a condition, not a value", e.span.clone())
                    .with_label("write `dns` alone, or test a field such as `dns.qname`"),
            );
            return None;
        };
        let values: Vec<&Expr> = match (&rhs.kind, op) {
            (ExprKind::SetLit(items), BinOp::In) => items.iter().collect(),
            (_, BinOp::In) => {
                self.diags.push(
                    Diagnostic::error("E0561", "expected a set of values", rhs.span.clone())
                        .with_label("write `{ 1, 28 }`"),
                );
                return None;
            }
            _ => vec![rhs],
        };
        let mut ints = Vec::new();
        for v in values {
            ints.push(self.dns_value(field, v)?);
        }
        if op == BinOp::In {
            return Some(Cond::Or(
                ints.into_iter()
                    .map(|v| self.dns_int(field, CmpOp::Eq, v))
                    .collect(),
            ));
        }
        let cmp = match cmp_op(op) {
            Some(c) => c,
            None => {
                self.diags.push(
                    Diagnostic::error(
                        "E0561",
                        format!("`{name}` is compared with `==`, `!=`, `<`, `>` or `in`"),
                        e.span.clone(),
                    )
                    .with_label("not defined for this field"),
                );
                return None;
            }
        };
        Some(self.dns_int(field, cmp, ints.first().copied().unwrap_or(0)))
    }

    /// The field's test, true only on a DNS message.
    fn dns_int(&mut self, field: dns::Field, op: CmpOp, value: u64) -> Cond {
        Cond::And(vec![
            test(l7::L7Test::Dns),
            test(l7::L7Test::DnsInt { field, op, value }),
        ])
    }

    fn dns_value(&mut self, field: dns::Field, v: &Expr) -> Option<u64> {
        let n = match &v.kind {
            ExprKind::Int(n) => Some(*n),
            ExprKind::Bool(b) if field == dns::Field::Response => Some(u64::from(*b)),
            ExprKind::Path(p) => field.named(&p.dotted()),
            ExprKind::Error => return None,
            _ => None,
        };
        match n {
            Some(n) if n <= field.max() => Some(n),
            Some(n) => {
                self.diags.push(
                    Diagnostic::error(
                        "E0561",
                        format!("{n} does not fit `{}`", field.name()),
                        v.span.clone(),
                    )
                    .with_label(format!("at most {}", field.max())),
                );
                None
            }
            None => {
                let example = match field {
                    dns::Field::QType => "a number or a type name such as `AAAA`",
                    dns::Field::RCode => "a number or a code name such as `NXDOMAIN`",
                    dns::Field::Response => "`true` or `false`",
                };
                self.diags.push(
                    Diagnostic::error(
                        "E0561",
                        format!("not a value of `{}`", field.name()),
                        v.span.clone(),
                    )
                    .with_label(format!("expected {example}")),
                );
                None
            }
        }
    }

    /// `tls.version OP VALUE` (`TLS12`, `TLS13`, or a number such as 0x0303).
    fn tls_version(&mut self, e: &Expr, op: BinOp, rhs: &Expr) -> Option<Cond> {
        let cmp = match cmp_op(op) {
            Some(c) => c,
            None => {
                self.diags.push(
                    Diagnostic::error(
                        "E0561",
                        "`tls.version` is compared with `==`, `!=`, `<` or `>`",
                        e.span.clone(),
                    )
                    .with_label("not defined for this field"),
                );
                return None;
            }
        };
        let value = match &rhs.kind {
            ExprKind::Int(n) if *n <= 0xffff => Some(*n),
            ExprKind::Path(p) => tls::version(&p.dotted()),
            ExprKind::Error => return None,
            _ => None,
        };
        let Some(value) = value else {
            self.diags.push(
                Diagnostic::error("E0561", "not a value of `tls.version`", rhs.span.clone())
                    .with_label(
                        "expected `TLS10`, `TLS11`, `TLS12`, `TLS13` or a number such as 0x0303",
                    ),
            );
            return None;
        };
        Some(Cond::And(vec![
            test(l7::L7Test::Tls),
            test(l7::L7Test::TlsVersion { op: cmp, value }),
        ]))
    }

    /// `tls.alpn == "h2"`, `!= "h2"`, `in { "h2", "http/1.1" }`: whether the client offers
    /// one of these protocols. Each distinct test is a bit of the stage's ALPN word.
    fn tls_alpn(&mut self, e: &Expr, op: BinOp, rhs: &Expr) -> Option<Cond> {
        let (items, negate): (Vec<&Expr>, bool) = match (op, &rhs.kind) {
            (BinOp::Eq, _) => (vec![rhs], false),
            (BinOp::Ne, _) => (vec![rhs], true),
            (BinOp::In, ExprKind::SetLit(items)) => (items.iter().collect(), false),
            (BinOp::In, _) => {
                self.diags.push(
                    Diagnostic::error("E0561", "expected a set of protocols", rhs.span.clone())
                        .with_label("write `{ \"h2\", \"http/1.1\" }`"),
                );
                return None;
            }
            _ => {
                self.diags.push(
                    Diagnostic::error(
                        "E0561",
                        "`tls.alpn` is compared with `==`, `!=` or `in`",
                        e.span.clone(),
                    )
                    .with_label("protocols are not ordered"),
                );
                return None;
            }
        };
        let mut protocols: Vec<Vec<u8>> = Vec::new();
        let mut ok = true;
        for item in items {
            match &item.kind {
                ExprKind::Str(p) if p.is_empty() => {
                    self.diags.push(
                        Diagnostic::error("E0563", "an empty ALPN protocol", item.span.clone())
                            .with_label("protocol names hold 1 to 255 bytes: `\"h2\"`"),
                    );
                    ok = false;
                }
                ExprKind::Str(p) if p.len() > tls::ALPN_NAME_MAX => {
                    self.diags.push(
                        Diagnostic::error(
                            "L0516",
                            format!(
                                "this protocol name is {} bytes; pol matches ALPN names of at \
                                 most {} bytes",
                                p.len(),
                                tls::ALPN_NAME_MAX
                            ),
                            item.span.clone(),
                        )
                        .with_label("too long for the ALPN map's key"),
                    );
                    ok = false;
                }
                ExprKind::Str(p) => {
                    if !protocols.iter().any(|q| q == p.as_bytes()) {
                        protocols.push(p.as_bytes().to_vec());
                    }
                }
                ExprKind::Error => ok = false,
                _ => {
                    self.diags.push(
                        Diagnostic::error(
                            "E0561",
                            "an ALPN protocol is a string",
                            item.span.clone(),
                        )
                        .with_label("write `\"h2\"` or `\"http/1.1\"`"),
                    );
                    ok = false;
                }
            }
        }
        if !ok {
            return None;
        }
        protocols.sort();
        let set = match self
            .hir
            .l7
            .alpn
            .iter()
            .position(|s| s.protocols == protocols)
        {
            Some(i) => i,
            None if self.hir.l7.alpn.len() >= tls::ALPN_TESTS_MAX => {
                self.diags.push(
                    Diagnostic::error(
                        "L0517",
                        format!(
                            "more than {} distinct `tls.alpn` tests in one file",
                            tls::ALPN_TESTS_MAX
                        ),
                        rhs.span.clone(),
                    )
                    .with_label("one test too many")
                    .with_help("test several protocols at once: `tls.alpn in { .. }` is one test"),
                );
                return None;
            }
            None => {
                self.hir.l7.alpn.push(tls::AlpnSet { protocols });
                self.hir.l7.alpn.len() - 1
            }
        };
        let t = test(l7::L7Test::TlsAlpn { set });
        Some(Cond::And(vec![
            test(l7::L7Test::Tls),
            if negate { Cond::Not(Box::new(t)) } else { t },
        ]))
    }

    fn dns_field_known(&mut self, p: &ast::Path) -> bool {
        let name = p.dotted();
        let (fields, what) = if is_tls(p) {
            (tls::FIELDS, "TLS")
        } else {
            (dns::FIELDS, "DNS")
        };
        if fields.contains(&name.as_str()) {
            return true;
        }
        let mut d = Diagnostic::error(
            "E0562",
            format!("unknown {what} field `{name}`"),
            p.span.clone(),
        )
        .with_label(format!("no such {what} field"));
        let best = fields
            .iter()
            .map(|f| suggest::edit_distance(f, &name))
            .min()
            .unwrap_or(0);
        let near: Vec<&str> = fields
            .iter()
            .copied()
            .filter(|f| best <= 3 && suggest::edit_distance(f, &name) == best)
            .collect();
        d = if near.is_empty() {
            d.with_help(format!("{what} fields: {}", fields.join(", ")))
        } else {
            d.with_help(format!("did you mean {}?", suggest::one_of(&near)))
        };
        self.diags.push(d);
        false
    }

    /// `set NAME: dnsname = { "a.example", "*.test" }` or `= file("names.txt")` (one name
    /// per line, `#` comments): its index in `Hir::l7.names`, its map named after it.
    pub(super) fn name_set(&mut self, s: &ast::SetDecl) -> Option<usize> {
        let mut patterns = Vec::new();
        let mut seen = std::collections::HashSet::new();
        match &s.value.kind {
            ExprKind::Call(p, args) if p.dotted() == "file" => {
                let name = match args.as_slice() {
                    [Expr {
                        kind: ExprKind::Str(n),
                        ..
                    }] => n.clone(),
                    _ => {
                        self.diags.push(
                            Diagnostic::error(
                                "E0408",
                                "`file` takes one string: the file's name",
                                s.value.span.clone(),
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
                                s.value.span.clone(),
                            )
                            .with_label("the set's names come from here")
                            .with_help("the name is relative to the directory of the .pol file"),
                        );
                        return None;
                    }
                };
                // Bad lines by number and column, never their text (the file may be
                // anything, and a diagnostic must not print its secrets).
                let mut bad = Vec::new();
                for (n, line) in text.lines().enumerate() {
                    let entry = line.split('#').next().unwrap_or("").trim();
                    if entry.is_empty() {
                        continue;
                    }
                    match dns::parse_pattern(entry) {
                        Ok(p) => {
                            if seen.insert(p.clone()) {
                                patterns.push(p);
                            }
                        }
                        Err(_) => bad.push((n + 1, line.find(entry).unwrap_or(0) + 1)),
                    }
                }
                if let Some((line, col)) = bad.first() {
                    let more = match bad.len() {
                        1 => String::new(),
                        n => format!(" (and {} more bad lines)", n - 1),
                    };
                    self.diags.push(
                        Diagnostic::error(
                            "E0560",
                            format!("{name}:{line}:{col}: not a DNS name pattern{more}"),
                            s.value.span.clone(),
                        )
                        .with_label("read as a set of DNS names from here")
                        .with_help(
                            "lines are names such as `example.com` or `*.example.com`: labels \
                             of 1 to 63 bytes, at most 255 bytes on the wire (the lines \
                             themselves are not shown: the file may not be a list)",
                        ),
                    );
                    return None;
                }
            }
            ExprKind::SetLit(items) => {
                let mut ok = true;
                for item in items {
                    match self.pattern(item) {
                        Some(p) => {
                            if seen.insert(p.clone()) {
                                patterns.push(p);
                            }
                        }
                        None => ok = false,
                    }
                }
                if !ok {
                    return None;
                }
            }
            ExprKind::Error => return None,
            _ => {
                self.diags.push(
                    Diagnostic::error(
                        "E0561",
                        "a set of DNS names is `{ \"a.example\", ... }` or `file(\"NAME\")`",
                        s.value.span.clone(),
                    )
                    .with_label("not a set of names"),
                );
                return None;
            }
        }
        self.hir.l7.names.push(dns::NameSet {
            map: s.name.name.clone(),
            patterns,
            span: s.span.clone(),
            declared: true,
        });
        Some(self.hir.l7.names.len() - 1)
    }

    /// One name pattern written as a string.
    fn pattern(&mut self, item: &Expr) -> Option<dns::Pattern> {
        match &item.kind {
            ExprKind::Str(s) => match dns::parse_pattern(s) {
                Ok(p) => Some(p),
                Err(msg) => {
                    self.diags.push(
                        Diagnostic::error("E0560", msg, item.span.clone())
                            .with_label("not a DNS name pattern"),
                    );
                    None
                }
            },
            ExprKind::Error => None,
            _ => {
                self.diags.push(
                    Diagnostic::error("E0561", "a DNS name is a string", item.span.clone())
                        .with_label("write `\"example.com\"` or `\"*.example.com\"`"),
                );
                None
            }
        }
    }

    /// `dns.qname == "a.example"`, `!= "*.example"`, `in { "a.example", "*.test" }`.
    fn qname(&mut self, e: &Expr, op: BinOp, rhs: &Expr, tls: bool) -> Option<Cond> {
        let (present, field) = if tls {
            (l7::L7Test::Tls, "tls.sni")
        } else {
            (l7::L7Test::Dns, "dns.qname")
        };
        let named = |set: usize| {
            if tls {
                l7::L7Test::TlsName { set }
            } else {
                l7::L7Test::DnsName { set }
            }
        };
        let (items, negate): (Vec<&Expr>, bool) = match (op, &rhs.kind) {
            (BinOp::Eq, _) => (vec![rhs], false),
            (BinOp::Ne, _) => (vec![rhs], true),
            (BinOp::In, ExprKind::SetLit(items)) => (items.iter().collect(), false),
            (BinOp::In, ExprKind::Path(p)) => match self.names.get(&p.dotted()) {
                Some((Decl::Names(set), _)) => {
                    return Some(test(named(*set)));
                }
                Some((Decl::Poisoned, _)) => return None,
                Some(_) => {
                    self.diags.push(
                        Diagnostic::error(
                            "E0401",
                            format!("`{}` is not a set of DNS names", p.dotted()),
                            rhs.span.clone(),
                        )
                        .with_label("declare it `set NAME: dnsname = { ... }`"),
                    );
                    return None;
                }
                None => {
                    self.diags.push(
                        Diagnostic::error(
                            "E0301",
                            format!("unknown set `{}`", p.dotted()),
                            rhs.span.clone(),
                        )
                        .with_label("no such set"),
                    );
                    return None;
                }
            },
            (BinOp::In, _) => {
                self.diags.push(
                    Diagnostic::error("E0561", "expected a set of names", rhs.span.clone())
                        .with_label("write `{ \"example.com\", \"*.example.org\" }`"),
                );
                return None;
            }
            _ => {
                self.diags.push(
                    Diagnostic::error(
                        "E0561",
                        format!("`{field}` is compared with `==`, `!=` or `in`"),
                        e.span.clone(),
                    )
                    .with_label("names are not ordered"),
                );
                return None;
            }
        };
        let mut patterns = Vec::new();
        let mut ok = true;
        for item in items {
            match self.pattern(item) {
                Some(p) => {
                    if !patterns.contains(&p) {
                        patterns.push(p);
                    }
                }
                None => ok = false,
            }
        }
        if !ok {
            return None;
        }
        let set = self.hir.l7.names.len();
        self.hir.l7.names.push(dns::NameSet {
            map: format!("dns_names{set}"),
            patterns,
            span: rhs.span.clone(),
            declared: false,
        });
        let name = test(named(set));
        Some(if negate {
            Cond::And(vec![test(present), Cond::Not(Box::new(name))])
        } else {
            name
        })
    }
}
