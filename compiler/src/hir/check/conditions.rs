//! Conditions of rules: packet fields, comparisons, set membership and address tests.

use super::{compatible, Checker, Decl};
use crate::diag::{suggest, Diagnostic};
use crate::hir::fields::{self, Field, Slot};
use crate::hir::{CmpOp, Cond, Test, Ty, Value};
use crate::packet::record::{F_TCP, F_UDP, PAYLOAD_TEST_MAX, PAYLOAD_WINDOW_MAX};
use crate::syntax::ast::{self, BinOp, Expr, ExprKind};

impl Checker<'_> {
    pub(super) fn field(&mut self, p: &ast::Path) -> Option<&'static Field> {
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
        if head == "http" {
            self.diags.push(
                Diagnostic::error(
                    "L0512",
                    format!("`{name}` cannot be used here"),
                    p.span.clone(),
                )
                .with_label("an HTTP field is compared, or keys a count")
                .with_help("compare it (`http.method == \"GET\"`, `starts_with(http.path, \"/api/\")`), or count by it (`count by_path[http.path]`)"),
            );
            return None;
        }
        if matches!(head, "dns" | "tls") {
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
        let near = fields::suggestions(&name);
        if !near.is_empty() {
            d = d.with_help(format!("did you mean {}?", suggest::one_of(&near)));
        }
        self.diags.push(d);
        None
    }

    pub(super) fn cond(&mut self, e: &Expr) -> Option<Cond> {
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
            ExprKind::Path(p) if super::l7::is_dns(p) => self.dns_flag(e, p),
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
                    Slot::Eq { value, .. } => Some(Cond::Test(Test::Int {
                        field: f,
                        op: CmpOp::Eq,
                        value,
                    })),
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
            ExprKind::Binary(BinOp::BitAnd, ..) => {
                self.diags.push(
                    Diagnostic::error("E0404", "a masked field is not a condition", e.span.clone())
                        .with_label(
                            "compare it: `tcp.flags & 0x12 == 0x02`, or `!= 0` for any bit",
                        ),
                );
                None
            }
            ExprKind::Binary(op, lhs, rhs) => self.compare(e, *op, lhs, rhs),
            ExprKind::Call(p, args) if p.dotted() == "starts_with" => {
                crate::l7::http::starts_with(&mut self.diags, e, args)
            }
            ExprKind::Call(p, args) if p.dotted() == "ends_with" => {
                crate::l7::http::ends_with(&mut self.diags, e, args)
            }
            ExprKind::Call(p, args) if p.dotted() == "http.header" => {
                crate::l7::http::header_present(&mut self.diags, e, args)
            }
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
        if let ExprKind::Binary(BinOp::BitAnd, field, mask) = &lhs.kind {
            return self.masked(op, field, mask, rhs);
        }
        if let ExprKind::Index(p, keys) = &lhs.kind {
            return self.payload(e, op, p, keys, rhs);
        }
        if let ExprKind::Call(p, args) = &lhs.kind {
            if p.dotted() == "rate" {
                return self.rate(e, op, args, rhs);
            }
            if p.dotted() == "http.header" {
                return crate::l7::http::header_compare(&mut self.diags, e, lhs, args, op, rhs);
            }
        }
        if let ExprKind::Path(p) = &lhs.kind {
            if super::l7::is_dns(p) {
                return self.dns_compare(e, op, p, rhs);
            }
            if Self::is_ct(p) {
                return self.ct(e, op, p, rhs);
            }
            if p.segments.first().is_some_and(|s| s.name == "http") {
                let name = p.dotted();
                return crate::l7::http::compare(
                    &mut self.diags,
                    e,
                    &name,
                    p.span.clone(),
                    op,
                    rhs,
                );
            }
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
        // `in` was handled above, `~` at the start: the rest are orderings.
        let cmp = cmp_op(op).unwrap_or(CmpOp::Ge);
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
        if ty == Ty::Mac {
            if !matches!(cmp, CmpOp::Eq | CmpOp::Ne) {
                self.diags.push(
                    Diagnostic::error(
                        "E0403",
                        format!(
                            "MAC addresses are not ordered: `{}` cannot be compared with `<` or `>`",
                            f.name
                        ),
                        e.span.clone(),
                    )
                    .with_label("use `==`, `!=` or `in { ... }`"),
                );
                return None;
            }
            let Some(&Value::Int { lo, .. }) = self.values(rhs, Ty::Mac, false)?.first() else {
                return None;
            };
            return Some(Cond::Test(Test::Int {
                field: f,
                op: cmp,
                value: lo,
            }));
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

    /// `payload[A..B] == "GET "`, `tcp.payload[0..2] != 0x1603`, `udp.payload[4] == 1`:
    /// bytes `A` up to (not including) `B` of the L4 payload, or the one byte `A`, compared
    /// with a string of exactly that many bytes or an integer that fits them (big-endian).
    fn payload(
        &mut self,
        e: &Expr,
        op: BinOp,
        p: &ast::Path,
        keys: &[Expr],
        rhs: &Expr,
    ) -> Option<Cond> {
        let name = p.dotted();
        let layer = match name.as_str() {
            "payload" => F_TCP | F_UDP,
            "tcp.payload" => F_TCP,
            "udp.payload" => F_UDP,
            _ => {
                self.diags.push(
                    Diagnostic::error("E0302", format!("`{name}[..]` is not a packet field"), p.span.clone())
                        .with_label("only the payload can be indexed")
                        .with_help("bytes of the L4 payload: `payload[0..4]`, `tcp.payload[..]`, `udp.payload[..]`"),
                );
                return None;
            }
        };
        let [key] = keys else {
            self.diags.push(
                Diagnostic::error(
                    "E0403",
                    "a payload slice takes one index or range",
                    e.span.clone(),
                )
                .with_label("write `payload[0..4]` or `payload[3]`"),
            );
            return None;
        };
        let max = u64::from(PAYLOAD_WINDOW_MAX);
        let bound = |c: &mut Self, x: &Expr| -> Option<u64> {
            match x.kind {
                ExprKind::Int(v) => Some(v),
                _ => {
                    c.diags.push(
                        Diagnostic::error(
                            "E0405",
                            "a payload offset is an integer literal",
                            x.span.clone(),
                        )
                        .with_label("expected a number"),
                    );
                    None
                }
            }
        };
        let (start, end) = match &key.kind {
            ExprKind::Range(a, b) => (bound(self, a)?, bound(self, b)?),
            _ => {
                let a = bound(self, key)?;
                (a, a.saturating_add(1))
            }
        };
        if start >= end {
            self.diags.push(
                Diagnostic::error(
                    "E0405",
                    format!("empty payload slice: {start}..{end} holds no byte"),
                    key.span.clone(),
                )
                .with_label("`A..B` is bytes A up to, not including, B")
                .with_help(format!(
                    "one byte: `payload[{start}]`; four: `payload[{start}..{}]`",
                    start.saturating_add(4)
                )),
            );
            return None;
        }
        if end > max || (end - start) as usize > PAYLOAD_TEST_MAX {
            self.diags.push(
                Diagnostic::error(
                    "L0502",
                    format!(
                        "payload slice {start}..{end} is out of reach: filters read the first {max} bytes of the payload, at most {PAYLOAD_TEST_MAX} per test"
                    ),
                    key.span.clone(),
                )
                .with_label("past what the parser copies"),
            );
            return None;
        }
        let eq = match op {
            BinOp::Eq => true,
            BinOp::Ne => false,
            _ => {
                self.diags.push(
                    Diagnostic::error(
                        "E0403",
                        "payload bytes are compared with `==` or `!=`",
                        e.span.clone(),
                    )
                    .with_label("not ordered"),
                );
                return None;
            }
        };
        let len = (end - start) as usize;
        let mut bytes = [0u8; PAYLOAD_TEST_MAX];
        match &rhs.kind {
            ExprKind::Str(s) if s.len() == len => bytes[..len].copy_from_slice(s.as_bytes()),
            ExprKind::Str(s) => {
                self.diags.push(
                    Diagnostic::error(
                        "E0401",
                        format!(
                            "`{name}[{start}..{end}]` is {len} byte{}, this string {}",
                            if len == 1 { "" } else { "s" },
                            s.len()
                        ),
                        rhs.span.clone(),
                    )
                    .with_label("a different length never matches")
                    .with_help(format!(
                        "compare `{name}[{start}..{}]`",
                        start + s.len() as u64
                    )),
                );
                return None;
            }
            ExprKind::Int(v) if len <= 8 && (len == 8 || *v >> (8 * len) == 0) => {
                bytes[..len].copy_from_slice(&v.to_be_bytes()[8 - len..]);
            }
            ExprKind::Int(v) => {
                self.diags.push(
                    Diagnostic::error(
                        "E0402",
                        format!(
                            "{v} does not fit in {len} byte{}",
                            if len == 1 { "" } else { "s" }
                        ),
                        rhs.span.clone(),
                    )
                    .with_label("too large for the slice")
                    .with_help("compare longer slices with a string"),
                );
                return None;
            }
            ExprKind::Error => return None,
            _ => {
                self.diags.push(
                    Diagnostic::error(
                        "E0401",
                        "payload bytes are compared with a string or an integer",
                        rhs.span.clone(),
                    )
                    .with_label("expected `\"GET \"` or `0x1603`"),
                );
                return None;
            }
        }
        Some(Cond::Test(Test::Payload {
            layer,
            start: start as u8,
            len: len as u8,
            bytes,
            eq,
        }))
    }

    /// `field & mask OP value`: an integer field, a mask and a value that fit it.
    fn masked(&mut self, op: BinOp, field: &Expr, mask: &Expr, rhs: &Expr) -> Option<Cond> {
        let ExprKind::Path(p) = &field.kind else {
            self.diags.push(
                Diagnostic::error("E0403", "`&` applies to a packet field", field.span.clone())
                    .with_label("expected a field such as `tcp.flags`"),
            );
            return None;
        };
        let f = self.field(p)?;
        if !matches!(f.slot, Slot::Int { .. }) || !f.ty.is_int() {
            self.diags.push(
                Diagnostic::error(
                    "E0403",
                    format!(
                        "`{}` (type `{}`) is not an integer field: only integers can be masked",
                        f.name, f.ty
                    ),
                    field.span.clone(),
                )
                .with_label("not an integer field"),
            );
            return None;
        }
        let Some(cmp) = cmp_op(op) else {
            self.diags.push(
                Diagnostic::error(
                    "E0403",
                    "a masked field is compared with `==`, `!=`, `<`, `<=`, `>` or `>=`",
                    rhs.span.clone(),
                )
                .with_label("compare with one value"),
            );
            return None;
        };
        let mask = self.int_lit(mask, f.ty)?;
        let value = self.int_lit(rhs, f.ty)?;
        Some(Cond::Test(Test::Masked {
            field: f,
            mask: mask as u32,
            op: cmp,
            value,
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
        // The family is the field's type (`arp.spa` is IPv4 without the IPv4 layer).
        let fits = |v: &Value| match (v, f.ty) {
            (Value::Net { .. }, Ty::Ip) => true,
            (Value::Net { v6, .. }, Ty::Ip6) => *v6,
            (Value::Net { v6, .. }, Ty::Ip4) => !*v6,
            _ => false,
        };
        if !vals.is_empty() && !vals.iter().any(fits) {
            let fam = if f.ty == Ty::Ip4 { "IPv4" } else { "IPv6" };
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

/// The comparison a binary operator is, if it is one (`in`, `~`, `and`, `or`, `&` are not).
pub(super) fn cmp_op(op: BinOp) -> Option<CmpOp> {
    Some(match op {
        BinOp::Eq => CmpOp::Eq,
        BinOp::Ne => CmpOp::Ne,
        BinOp::Lt => CmpOp::Lt,
        BinOp::Le => CmpOp::Le,
        BinOp::Gt => CmpOp::Gt,
        BinOp::Ge => CmpOp::Ge,
        _ => return None,
    })
}
