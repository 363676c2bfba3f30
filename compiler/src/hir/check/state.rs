//! Stateful tests: `rate(KEY, ..., burst(B), size(N)) > N/UNIT` (docs/stateful.md).

use super::Checker;
use crate::diag::Diagnostic;
use crate::hir::fields::Slot;
use crate::hir::state::{RateDef, RATE_SIZE_DEFAULT, RATE_SIZE_MAX};
use crate::hir::{Cond, Test};
use crate::syntax::ast::{BinOp, Expr, ExprKind};

const SEC: u64 = 1_000_000_000;

fn rate_error(msg: impl Into<String>, e: &Expr, label: &str) -> Diagnostic {
    Diagnostic::error("E0511", msg, e.span.clone()).with_label(label.to_string())
}

impl Checker<'_> {
    /// `rate(ARGS) OP RHS`.
    pub(super) fn rate(&mut self, e: &Expr, op: BinOp, args: &[Expr], rhs: &Expr) -> Option<Cond> {
        let over = match op {
            BinOp::Gt | BinOp::Ge => true,
            BinOp::Lt | BinOp::Le => false,
            _ => {
                self.diags.push(
                    Diagnostic::error(
                        "E0403",
                        "a rate is compared with `>` (over the rate) or `<=` (within it)",
                        e.span.clone(),
                    )
                    .with_label("not `>`, `>=`, `<` or `<=`")
                    .with_help("write `rate(ip.src) > 100/s`"),
                );
                return None;
            }
        };
        let mut keys = Vec::new();
        let mut burst = None;
        let mut size = None;
        let mut ok = true;
        for a in args {
            match &a.kind {
                ExprKind::Path(p) => {
                    let Some(f) = self.field(p) else {
                        ok = false;
                        continue;
                    };
                    if !matches!(f.slot, Slot::Int { .. } | Slot::Addr { .. }) {
                        self.diags.push(
                            rate_error(
                                format!("`{}` cannot key a rate: it is a {}", f.name, f.ty),
                                a,
                                "not an address or integer field",
                            )
                            .with_help(
                                "key rates by addresses or ports: `rate(ip.src, tcp.dport)`",
                            ),
                        );
                        ok = false;
                    } else if keys
                        .iter()
                        .any(|k: &&crate::hir::fields::Field| k.name == f.name)
                    {
                        self.diags.push(rate_error(
                            format!("`{}` is a key twice", f.name),
                            a,
                            "repeated key",
                        ));
                        ok = false;
                    } else {
                        keys.push(f);
                    }
                }
                ExprKind::Call(p, inner) if matches!(p.dotted().as_str(), "burst" | "size") => {
                    let name = p.dotted();
                    let v = match inner.as_slice() {
                        [Expr {
                            kind: ExprKind::Int(v),
                            ..
                        }] if *v > 0 => *v,
                        _ => {
                            self.diags.push(rate_error(
                                format!("`{name}(..)` takes one positive integer"),
                                a,
                                "expected e.g. `burst(200)` or `size(10000)`",
                            ));
                            ok = false;
                            continue;
                        }
                    };
                    let slot = if name == "burst" {
                        &mut burst
                    } else {
                        &mut size
                    };
                    if slot.replace(v).is_some() {
                        self.diags.push(rate_error(
                            format!("`{name}(..)` is given twice"),
                            a,
                            "repeated",
                        ));
                        ok = false;
                    }
                }
                ExprKind::Error => ok = false,
                _ => {
                    self.diags.push(
                        rate_error("a rate is keyed by packet fields", a, "not a field")
                            .with_help("`rate(ip.src)`, `rate(ip.src, tcp.dport)`, `rate()`; options `burst(N)`, `size(N)`"),
                    );
                    ok = false;
                }
            }
        }
        let per_sec = self.rate_value(rhs);
        let size = match size {
            Some(n) if n > u64::from(RATE_SIZE_MAX) => {
                self.diags.push(rate_error(
                    format!("a rate table holds at most {RATE_SIZE_MAX} keys"),
                    e,
                    "`size(..)` too large",
                ));
                return None;
            }
            Some(n) if keys.is_empty() => {
                let _ = n;
                self.diags.push(rate_error(
                    "`rate()` without keys has one bucket: `size(..)` means nothing here",
                    e,
                    "remove `size(..)`",
                ));
                return None;
            }
            Some(n) => n as u32,
            None => RATE_SIZE_DEFAULT,
        };
        let (count, per_ns) = per_sec?;
        if !ok {
            return None;
        }
        let interval_ns = per_ns / count;
        if interval_ns == 0 {
            self.diags.push(rate_error(
                "this rate is more than one packet per nanosecond",
                rhs,
                "too fast to limit",
            ));
            return None;
        }
        // By default the whole count of one period may come at once (`100/s`: 100).
        let burst = burst.unwrap_or(count);
        let index = self.hir.rates.len();
        self.hir.rates.push(RateDef {
            map: format!("pol_rate{index}"),
            keys,
            interval_ns,
            burst,
            size,
            span: e.span.clone(),
        });
        Some(Cond::Test(Test::Rate { rate: index, over }))
    }

    /// `N/s`, `N/m`, `N/h` or `N/DURATION` (`5/10s`): the count and the period in ns.
    fn rate_value(&mut self, rhs: &Expr) -> Option<(u64, u64)> {
        let bad = |c: &mut Self| {
            c.diags.push(
                rate_error(
                    "a rate is a count per time unit",
                    rhs,
                    "expected `N/s`, `N/m`, `N/h` or `N/10s`",
                )
                .with_help("e.g. `rate(ip.src) > 100/s`"),
            );
            None
        };
        let ExprKind::Binary(BinOp::Div, n, unit) = &rhs.kind else {
            return bad(self);
        };
        let ExprKind::Int(count) = n.kind else {
            return bad(self);
        };
        let per = match &unit.kind {
            ExprKind::Path(p) => match p.dotted().as_str() {
                "s" => SEC,
                "m" => 60 * SEC,
                "h" => 3600 * SEC,
                _ => return bad(self),
            },
            ExprKind::Duration(ns) => *ns,
            _ => return bad(self),
        };
        if count == 0 {
            self.diags.push(rate_error(
                "a rate of 0 lets nothing through",
                rhs,
                "use a positive count, or a rule without `rate`",
            ));
            return None;
        }
        Some((count, per))
    }
}
