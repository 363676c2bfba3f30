//! Constant values: literals, ranges, addresses and names evaluated to the values of
//! constants, set elements and comparisons.

use super::{compatible, infer, Checker, Decl};
use crate::diag::Diagnostic;
use crate::hir::values::{mac_value, net};
use crate::hir::{Ty, Value};
use crate::syntax::ast::{Expr, ExprKind};

impl Checker<'_> {
    /// Evaluates a constant expression of element type `ty` to its values. `many` allows
    /// a set literal or a named set.
    pub(super) fn values(&mut self, e: &Expr, ty: Ty, many: bool) -> Option<Vec<Value>> {
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
                Some((Decl::Names(_), _)) => {
                    self.diags.push(
                        Diagnostic::error(
                            "E0401",
                            format!("`{}` is a set of DNS names, not of {ty}", p.dotted()),
                            e.span.clone(),
                        )
                        .with_label("test it with `dns.qname in ...`"),
                    );
                    None
                }
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
            ExprKind::Mac(m) if ty == Ty::Mac => {
                let v = mac_value(m);
                Some(vec![Value::Int { lo: v, hi: v }])
            }
            ExprKind::Error => None,
            _ => {
                self.not_a_value(e, ty);
                None
            }
        }
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

    /// `e` cannot be a value of type `ty`: a type mismatch when `e` has a type of its own.
    fn not_a_value(&mut self, e: &Expr, ty: Ty) {
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
    }

    pub(super) fn int_lit(&mut self, e: &Expr, ty: Ty) -> Option<u64> {
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
                self.not_a_value(e, ty);
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
}

/// Whether an address literal of this kind can be a value of type `ty`.
fn address_fits(kind: &ExprKind, ty: Ty) -> bool {
    match kind {
        ExprKind::Ip4(_) | ExprKind::Cidr4(..) => matches!(ty, Ty::Ip4 | Ty::Ip | Ty::Cidr),
        _ => matches!(ty, Ty::Ip6 | Ty::Ip | Ty::Cidr),
    }
}
